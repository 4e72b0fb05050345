// SPDX-License-Identifier: MIT
/*
 * bus.c - the bus handle: opening a bus (check the options, connect to the
 * daemon, map the arena it sends, choose the wake backend), closing it,
 * and what the handle tells about itself. Queue and topic control is in
 * control.c, attaching producers and consumers in attach.c.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/ioctl.h>

#include "bus.h"

/*
 * This process's pid, which the data path checks handles against. glibc
 * does not cache getpid() (each call is a system call, too dear for every
 * publish and receive). A fork() child learns its own from the atfork
 * handler, registered when the library is loaded so that it runs before
 * the handlers of the application's, which may free inherited handles;
 * a child made without the handlers (a raw clone(), _Fork()) learns it at
 * its first exact check (every control call, free and close makes one)
 * or open.
 */
static pid_t self_pid;

static void self_note(pid_t me)
{
	if (READ_ONCE(self_pid) != me)
		WRITE_ONCE(self_pid, me);
}

static void self_forked(void)
{
	WRITE_ONCE(self_pid, getpid());
}

__attribute__((constructor)) static void self_init(void)
{
	self_forked();
	pthread_atfork(NULL, NULL, self_forked);
}

int check_pid(const struct shmbus *bus)
{
	pid_t me = getpid();

	self_note(me);
	return bus->pid == me ? 0 : -ECHILD;
}

int check_pid_fast(const struct shmbus *bus)
{
	return likely(bus->pid == READ_ONCE(self_pid)) ? 0 : -ECHILD;
}

static const char *bus_name_or_default(const char *name)
{
	const char *env;

	if (name)
		return name;
	env = getenv("SHMBUS_BUS");
	return env && *env ? env : "default";
}

/*
 * The kernel module, as $SHMBUS_KMOD says: "auto" (the default) uses
 * /dev/shmbus when it is there and works, "off" never, "required" fails
 * the open without it. With it, publishers wake seats with one ioctl and
 * this handle's death reaches the daemon through the module (@cookie, the
 * daemon's name for our connection; 0 when the daemon does not watch).
 * Read-only handles wake nobody and use neither. docs/kernel.md.
 */
static int kmod_open(struct shmbus *bus, uint64_t cookie)
{
	const char *mode = secure_getenv("SHMBUS_KMOD");
	struct shmbus_kmod_version v = { 0 };
	bool required = mode && !strcmp(mode, "required");
	int kfd, err;

	if (mode && *mode && !required && strcmp(mode, "auto") &&
	    strcmp(mode, "off")) {
		pr_warn("SHMBUS_KMOD=%s: want auto, off or required", mode);
		return -EINVAL;
	}
	if ((mode && !strcmp(mode, "off")) || bus->rdonly)
		return 0;
	kfd = open(SHMBUS_KMOD_DEV, O_RDWR | O_CLOEXEC);
	if (kfd < 0) {
		err = -errno;
		if (!required)
			return 0;
		pr_warn("SHMBUS_KMOD=required: %s: %s", SHMBUS_KMOD_DEV,
			strerror(-err));
		return err == -ENOENT ? -ENODEV : err;
	}
	if (ioctl(kfd, SHMBUS_IOC_VERSION, &v) || v.abi != SHMBUS_KMOD_ABI) {
		err = -EPROTO;
		goto fail;
	}
	if (cookie) {
		struct shmbus_kmod_attach at = {
			.arena_fd = bus->arena_fd,
			.cookie = cookie,
		};

		if (ioctl(kfd, SHMBUS_IOC_ATTACH, &at)) {
			err = -errno;
			goto fail;
		}
	}
	bus->wakes.kfd = kfd;
	return 0;
fail:
	close(kfd);
	if (!required)
		return 0;
	pr_warn("SHMBUS_KMOD=required: %s: %s (module ABI %u, ours %u)",
		SHMBUS_KMOD_DEV, strerror(-err), v.abi, SHMBUS_KMOD_ABI);
	return err;
}

/* Check @opts and fill the BUS_OPEN request for bus @name. 0 or -EINVAL. */
static int open_request(struct sbc_bus_open *req, const char *name,
			const struct shmbus_open_opts *opts)
{
	uint32_t flags;

	if (!OPTS_VALID(opts, shmbus_open_opts))
		return -EINVAL;
	memset(req, 0, sizeof(*req));
	if (name_set(req->name, bus_name_or_default(name), "bus"))
		return -EINVAL;
	flags = OPTS_GET(opts, flags, 0);
	if (flags & ~(SHMBUS_OPEN_NOCREATE | SHMBUS_OPEN_EXCL |
		      SHMBUS_OPEN_RDONLY | SHMBUS_OPEN_NOSTART |
		      SHMBUS_OPEN_OWNER))
		return -EINVAL;
	req->flags = (flags & SHMBUS_OPEN_NOCREATE ? 0 : SBC_OPEN_CREATE) |
		     (flags & SHMBUS_OPEN_EXCL ? SBC_OPEN_EXCL : 0) |
		     (flags & SHMBUS_OPEN_RDONLY ? SBC_OPEN_RDONLY : 0) |
		     (flags & SHMBUS_OPEN_OWNER ? SBC_OPEN_OWNER : 0);
	/* the daemon creates a bus only in the caller's own namespace */
	if (flags & SHMBUS_OPEN_OWNER)
		req->owner_uid = OPTS_GET(opts, owner_uid, 0);
	else if (OPTS_GET(opts, owner_uid, 0))
		return -EINVAL;
	req->mode = OPTS_GET(opts, mode, 0);
	req->max_queues = OPTS_GET(opts, max_queues, 0);
	req->max_slots = OPTS_GET(opts, max_slots, 0);
	req->ring_bytes = OPTS_GET(opts, ring_bytes, 0);
	req->nr_pools = OPTS_GET(opts, nr_pools, 0);
	if (req->nr_pools > SHMBUS_MAX_POOLS)
		return -EINVAL;
	for (unsigned i = 0; i < req->nr_pools; i++) {
		req->pools[i].payload = opts->pools[i].payload;
		req->pools[i].count = opts->pools[i].count;
	}
	req->grow = OPTS_GET(opts, pool_growth, 0);
	return 0;
}

int client_connect_opts(struct client *c,
			const struct shmbus_open_opts *opts, bool autostart)
{
	const char *sock = OPTS_GET(opts, socket_path, NULL);
	int timeout = OPTS_GET(opts, connect_timeout_ms, 0);
	char path[108];
	int err;

	if (timeout <= 0)
		timeout = 5000;
	if (!sock) {
		err = shmbus_socket_path(path, sizeof(path));
		if (err)
			return err;
		sock = path;
	}
	if (OPTS_GET(opts, flags, 0) & SHMBUS_OPEN_NOSTART)
		autostart = false;
	err = client_connect(c, sock, timeout, autostart);
	if (err)
		pr_warn("cannot reach shmbusd at %s: %s", sock, strerror(-err));
	return err;
}

/*
 * BUS_OPEN. A restarted daemon answers -EINPROGRESS while running
 * processes hold the bus and have not rejoined yet (it must not make a
 * second bus of that name): ask again, with backoff, up to the connect
 * timeout. A daemon may close a connection that stays in its handshake
 * that long: then dial again.
 */
static int open_call(struct shmbus *bus, const struct sbc_bus_open *req,
		     struct sbc_bus_open_reply *rep, int *fd)
{
	int64_t deadline = bus->conn.deadline;
	unsigned ms = 5, nfds;
	bool held = false;
	int err;

	for (;;) {
		nfds = 1;
		err = client_call(&bus->conn, SBC_BUS_OPEN, req, sizeof(*req),
				  rep, sizeof(*rep), fd, &nfds);
		if (!err && nfds != 1)
			err = -EPROTO;
		if (err == -ECONNRESET && held) {
			int64_t left = (deadline - now_ns()) / NSEC_PER_MSEC;
			bool autostart = bus->conn.autostart;
			char path[sizeof(bus->conn.path)];

			if (left <= 0)
				break;
			strcpy(path, bus->conn.path);
			client_fini(&bus->conn);
			err = client_connect(&bus->conn, path, (int)left,
					     autostart);
			if (err)
				return err;
			continue;
		}
		if (err != -EINPROGRESS)
			return err;
		held = true;
		if (now_ns() + (int64_t)ms * NSEC_PER_MSEC >= deadline)
			break;
		usleep(ms * 1000);
		ms = MIN(ms * 2, 200u);
	}
	errmsg_set("bus '%s' is held by running processes that have not "
		   "rejoined the restarted daemon", req->name);
	return -EINPROGRESS;
}

/*
 * Ask the daemon for the bus (BUS_OPEN) and map the arena whose fd comes
 * with the answer: the mapping in bus->arena, the fd in bus->arena_fd.
 * *@cookie is the daemon's name for our connection (kmod_open()), *@token
 * its conn_token (REJOIN names it to a later daemon).
 */
static int open_map(struct shmbus *bus, const struct sbc_bus_open *req,
		    uint64_t *cookie, uint64_t *token)
{
	struct sbc_bus_open_reply rep;
	int fd = -1, err;

	err = open_call(bus, req, &rep, &fd);
	client_handshake_done(&bus->conn);
	if (err == -ETIMEDOUT)
		errmsg_set("the daemon did not answer the open of bus '%s' "
			   "within %d ms", req->name, bus->conn.timeout_ms);
	if (err)
		return err;
	bus->rdonly = rep.rdonly;
	bus->owner_uid = rep.owner_uid;
	bus->owner_gid = rep.owner_gid;
	bus->mode = rep.mode;
	err = arena_map(&bus->arena, fd, bus->rdonly);
	if (err) {
		close(fd);
		return err;
	}
	bus->conn.deleted = &bus->arena.sb->deleted;
	bus->arena_fd = fd;
	*cookie = rep.kmod_cookie;
	*token = rep.conn_token;
	return 0;
}

/*
 * The wake backend: the table of the queues' seat eventfds, and the
 * kernel module where $SHMBUS_KMOD and /dev/shmbus allow (kmod_open()).
 */
static int open_wakes(struct shmbus *bus, uint64_t cookie)
{
	int err = wake_table_init(&bus->wakes, bus->arena.max_queues);

	if (err)
		return err;
	bus->wakes.bus_id = bus->arena.bus_id;
	bus->wakes.arena_fd = bus->arena_fd;
	bus->wakes.refresh = bus->rdonly ? NULL : seats_fetch;
	err = kmod_open(bus, cookie);
	if (err)
		wake_table_fini(&bus->wakes);
	return err;
}

SHMBUS_API struct shmbus *shmbus__open(const char *name,
				       const struct shmbus_open_opts *opts)
{
	struct sbc_bus_open req;
	struct shmbus *bus;
	uint64_t cookie, token;
	int err;

	err = open_request(&req, name, opts);
	if (err) {
		errno = -err;
		return NULL;
	}
	bus = calloc(1, sizeof(*bus));
	if (!bus) {
		errno = ENOMEM;
		return NULL;
	}
	bus->arena_fd = -1;
	bus->hup_fd = -1;
	bus->pid = getpid();
	self_note(bus->pid);
	pthread_mutex_init(&bus->reply_lock, NULL);
	memcpy(bus->name, req.name, sizeof(bus->name));
	err = client_connect_opts(&bus->conn, opts, true);
	if (err)
		goto fail_conn;
	err = open_map(bus, &req, &cookie, &token);
	if (err)
		goto fail_conn;
	err = open_wakes(bus, cookie);
	if (err)
		goto fail_map;
	/* without it sleepers do not notice the daemon's death: they still
	 * work, as they did before (woken by producers holding their fd) */
	bus->hup_fd = fcntl(bus->conn.fd, F_DUPFD_CLOEXEC, 3);
	rejoin_start(bus, token);
	return bus;

fail_map:
	arena_unmap(&bus->arena);
	close(bus->arena_fd);
fail_conn:
	client_fini(&bus->conn);
	pthread_mutex_destroy(&bus->reply_lock);
	free(bus);
	errno = -err;
	return NULL;
}

SHMBUS_API void shmbus__close(struct shmbus *bus)
{
	if (!bus)
		return;
	/* first: the watcher uses everything below */
	rejoin_stop(bus);
	if (bus->rr)
		reqrep_free(bus);
	reply_cache_free(bus->replies);
	pthread_mutex_destroy(&bus->reply_lock);
	wake_table_fini(&bus->wakes);
	arena_unmap(&bus->arena);
	if (bus->arena_fd >= 0)
		close(bus->arena_fd);
	client_fini(&bus->conn);
	if (bus->hup_fd >= 0)
		close(bus->hup_fd);	/* the socket's last fd: EOF */
	/* after the socket: the daemon sees the EOF first, the death
	 * record (same meaning) second */
	if (bus->wakes.kfd >= 0)
		close(bus->wakes.kfd);
	free(bus);
}

SHMBUS_API const char *shmbus__wake_backend(const struct shmbus *bus)
{
	return bus->wakes.kfd >= 0 ? "kmod" : "eventfd";
}

SHMBUS_API const char *shmbus__name(const struct shmbus *bus)
{
	return bus->name;
}

SHMBUS_API uint32_t shmbus__id(const struct shmbus *bus)
{
	return bus->arena.bus_id;
}

SHMBUS_API int shmbus__info(const struct shmbus *bus, struct shmbus_info *info)
{
	if (!bus || !info)
		return -EINVAL;
	memset(info, 0, sizeof(*info));
	memcpy(info->name, bus->name, sizeof(info->name));
	info->id = bus->arena.bus_id;
	info->owner_uid = bus->owner_uid;
	info->owner_gid = bus->owner_gid;
	info->mode = bus->mode;
	info->arena_size = bus->arena.size;
	info->max_queues = bus->arena.max_queues;
	info->max_slots = bus->arena.max_slots;
	info->nr_pools = bus->arena.nr_pools;
	info->rdonly = bus->rdonly;
	return 0;
}
