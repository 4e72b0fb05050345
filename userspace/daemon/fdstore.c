// SPDX-License-Identifier: MIT
/*
 * fdstore.c - the service manager's side of a restart: the notify socket
 * and the file descriptor store (systemd's sd_notify(3) and
 * sd_listen_fds(3) protocols, spoken directly: docs/decisions.md).
 *
 * With $NOTIFY_SOCKET set (and not --daemonize: the library's autostart
 * daemonizes, and a client's own service must not hear from it), the
 * daemon says READY=1 once it listens, and hands the service manager a
 * copy of every arena it creates or adopts (FDSTORE=1, FDNAME=arena-<bus
 * id in 8 hex digits>) and, once, its state memfd (FDNAME=state). The
 * manager keeps them across a restart of the service (FileDescriptorStore
 * Max= in the unit) and passes them back to the next daemon as
 * LISTEN_FDS, named in LISTEN_FDNAMES.
 *
 * The state memfd holds what the next daemon must not take from an arena
 * that every member can write: per bus its id and the daemon's trusted
 * copies of the superblock's constant lines and of each pool descriptor's
 * (struct dbus sb_copy, pool_copy; repair.c). It is sealed against
 * shrinking and growing, so that mapping it never faults, and it is
 * written in place: the copy in the store is the same memory. A record is
 * filled before its bus id is stored (release), so a daemon killed in
 * the middle leaves a free record, never a torn one.
 *
 *	struct state_hdr			64 bytes
 *	struct state_rec[nr_recs]		832 bytes each
 *
 * What comes back is checked as if anyone could have sent it: the state
 * memfd (magic, version, sizes, seals, owner; a bad one is logged and
 * replaced), each record (its superblock copy names the same bus), each
 * arena (adopt.c: a sealed memfd of this daemon's making). An fd of a name
 * it does not know is logged and closed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "shmbusd.h"

#define LISTEN_FDS_START	3
#define LISTEN_FDS_MAX		65536	/* systemd's own cap on the store */

#define STATE_MAGIC		0x54537375626d6873ULL	/* "shmbusST" LE */
#define STATE_VERSION		1u
#define STATE_SB_BYTES		256u	/* the superblock's constant lines */
#define STATE_BUSES_MAX		4096u	/* records in a new state memfd */

struct state_hdr {
	uint64_t magic;		/* STATE_MAGIC */
	uint32_t version;	/* STATE_VERSION */
	uint32_t hdr_size;	/* sizeof(struct state_hdr) */
	uint32_t rec_size;	/* sizeof(struct state_rec) */
	uint32_t nr_recs;	/* records after the header */
	uint32_t sb_bytes;	/* STATE_SB_BYTES */
	uint32_t max_pools;	/* SHMBUS_MAX_POOLS */
	uint8_t __pad[32];
};

struct state_rec {
	uint32_t bus_id;	/* 0: free; stored last, with a release */
	uint32_t nr_pools;	/* pool copies that are valid */
	uint8_t __pad[56];
	uint8_t sb[STATE_SB_BYTES];
	uint8_t pool[SHMBUS_MAX_POOLS][64];
};

_Static_assert(sizeof(struct state_hdr) == 64, "state header");
_Static_assert(sizeof(struct state_rec) == 832, "state record");
_Static_assert(sizeof(((struct dbus *)0)->sb_copy) == STATE_SB_BYTES &&
	       sizeof(((struct dbus *)0)->pool_copy) ==
	       sizeof(((struct state_rec *)0)->pool), "the repair copies");

static int notify_fd = -1;
static struct sockaddr_un notify_sa;
static socklen_t notify_len;

static struct state_hdr *state;	/* mapped, NULL: none */
static size_t state_size;
static int state_fd = -1;

/* What the service manager passed (LISTEN_FDS), until fdstore_start(). */
struct passed {
	int fd;			/* -1 once taken */
	char name[256];
};
static struct passed *passed;
static unsigned nr_passed;
static bool adopting;		/* an arena from the store: it is there */

/* ---- the notify socket --------------------------------------------------- */

/*
 * $NOTIFY_SOCKET: an AF_UNIX datagram socket, by path or (leading '@')
 * abstract name. Other kinds (vsock: for a VM's manager) are not ours to
 * speak; the daemon runs on without notifying.
 */
static int notify_open(void)
{
	const char *e = getenv("NOTIFY_SOCKET");
	size_t len;
	int fd;

	if (!e || !*e)
		return 0;
	len = strlen(e);
	if ((e[0] != '/' && e[0] != '@') || len >= sizeof(notify_sa.sun_path)) {
		log_warn("NOTIFY_SOCKET=%s: not an AF_UNIX socket path; the "
			 "service manager is not notified", e);
		return -EAFNOSUPPORT;
	}
	memset(&notify_sa, 0, sizeof(notify_sa));
	notify_sa.sun_family = AF_UNIX;
	memcpy(notify_sa.sun_path, e, len);
	if (e[0] == '@')
		notify_sa.sun_path[0] = '\0';
	/* a path's length counts its NUL, an abstract name's does not */
	notify_len = offsetof(struct sockaddr_un, sun_path) + len +
		     (e[0] == '/');
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_warn("notify socket: %s", strerror(errno));
		return -errno;
	}
	notify_fd = fd;
	log_info("service manager notifications to %s", e);
	return 0;
}

/* Send @msg with @fd (-1: none) to the service manager: 0 or -errno. */
static int notify_send(const char *msg, int fd)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov = { .iov_base = (void *)msg, .iov_len = strlen(msg) };
	struct msghdr mh = {
		.msg_name = &notify_sa, .msg_namelen = notify_len,
		.msg_iov = &iov, .msg_iovlen = 1,
	};

	if (notify_fd < 0)
		return -ENOTCONN;
	if (fd >= 0) {
		struct cmsghdr *c;

		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.buf;
		mh.msg_controllen = sizeof(ctl.buf);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	if (sendmsg(notify_fd, &mh, MSG_NOSIGNAL) < 0) {
		int err = -errno;

		log_warn("service manager: cannot send \"%.*s\": %s",
			 (int)strcspn(msg, "\n"), msg, strerror(-err));
		return err;
	}
	return 0;
}

/* Drop every fd stored under @name (one refused, or a bad state). */
static void store_remove(const char *name)
{
	char msg[300];

	snprintf(msg, sizeof(msg), "FDSTORE_REMOVE=1\nFDNAME=%s", name);
	notify_send(msg, -1);
}

static bool ready_sent;

/* "READY=1\n" once, then "STATUS=serving N buses" (systemctl status),
 * as the buses come and go */
static void send_status(const struct daemon *d, bool ready)
{
	char msg[128];
	unsigned n = 0;

	for (const struct dbus *b = d->buses; b; b = b->next)
		n++;
	snprintf(msg, sizeof(msg), "%sSTATUS=serving %u bus%s",
		 ready ? "READY=1\n" : "", n, n == 1 ? "" : "es");
	notify_send(msg, -1);
}

void fdstore_ready(const struct daemon *d)
{
	send_status(d, true);
	ready_sent = true;
}

void fdstore_status(const struct daemon *d)
{
	/* before READY=1 the count goes with it */
	if (ready_sent && notify_fd >= 0)
		send_status(d, false);
}

void fdstore_stopping(void)
{
	notify_send("STOPPING=1", -1);
}

/* ---- the state memfd ----------------------------------------------------- */

static size_t state_bytes(uint32_t nr_recs)
{
	return sizeof(struct state_hdr) + (size_t)nr_recs *
	       sizeof(struct state_rec);
}

static struct state_rec *state_rec(uint32_t i)
{
	return (struct state_rec *)((uint8_t *)state + sizeof(*state)) + i;
}

/*
 * Is the memfd @fd a state memfd this daemon's kind can use? 0 with it
 * mapped into state, or -errno with @why saying what is wrong.
 */
static int state_map(int fd, char *why, size_t len)
{
	const unsigned want = F_SEAL_SHRINK | F_SEAL_GROW;
	struct state_hdr h;
	struct stat st;
	void *mem;
	int seals;

	if (fstat(fd, &st) < 0) {
		snprintf(why, len, "fstat: %s", strerror(errno));
		return -errno;
	}
	seals = fcntl(fd, F_GET_SEALS);
	if (!S_ISREG(st.st_mode) || seals < 0 || (seals & want) != want) {
		snprintf(why, len, "not a memfd sealed against resizing");
		return -EBADF;
	}
	if (st.st_uid != geteuid()) {
		snprintf(why, len, "owned by uid %u, not the daemon's",
			 (unsigned)st.st_uid);
		return -EACCES;
	}
	if (pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h)) {
		snprintf(why, len, "%lld bytes: no header",
			 (long long)st.st_size);
		return -EBADMSG;
	}
	if (h.magic != STATE_MAGIC || h.version != STATE_VERSION) {
		snprintf(why, len, "magic %#llx version %u, want %#llx "
			 "version %u", (unsigned long long)h.magic, h.version,
			 STATE_MAGIC, STATE_VERSION);
		return -EBADMSG;
	}
	if (h.hdr_size != sizeof(struct state_hdr) ||
	    h.rec_size != sizeof(struct state_rec) ||
	    h.sb_bytes != STATE_SB_BYTES || h.max_pools != SHMBUS_MAX_POOLS ||
	    h.nr_recs < 1 || h.nr_recs > LISTEN_FDS_MAX ||
	    (uint64_t)st.st_size != state_bytes(h.nr_recs)) {
		snprintf(why, len, "sizes differ from this daemon's (header "
			 "%u, record %u, %u records in %lld bytes)",
			 h.hdr_size, h.rec_size, h.nr_recs,
			 (long long)st.st_size);
		return -EBADMSG;
	}
	mem = mmap(NULL, st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (mem == MAP_FAILED) {
		snprintf(why, len, "mmap: %s", strerror(errno));
		return -errno;
	}
	state = mem;
	state_size = st.st_size;
	state_fd = fd;
	return 0;
}

/* A new state memfd, stored with the service manager: 0 or -errno. */
static int state_create(void)
{
	const uint32_t nr = STATE_BUSES_MAX;
	struct state_hdr *h;
	size_t size = state_bytes(nr);
	int fd, err;

	fd = memfd_create("shmbusd-state", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	/* sparse: a page is only taken when a record on it is written */
	if (ftruncate(fd, size) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW |
				   F_SEAL_SEAL) < 0)
		goto fail;
	h = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (h == MAP_FAILED)
		goto fail;
	h->version = STATE_VERSION;
	h->hdr_size = sizeof(*h);
	h->rec_size = sizeof(struct state_rec);
	h->nr_recs = nr;
	h->sb_bytes = STATE_SB_BYTES;
	h->max_pools = SHMBUS_MAX_POOLS;
	h->magic = STATE_MAGIC;
	state = h;
	state_size = size;
	state_fd = fd;
	notify_send("FDSTORE=1\nFDNAME=state", fd);
	return 0;
fail:
	err = -errno;
	close(fd);
	return err;
}

/* The record of bus @id, or NULL. */
static struct state_rec *state_find(uint32_t id)
{
	for (uint32_t i = 0; state && id && i < state->nr_recs; i++)
		if (READ_ONCE(state_rec(i)->bus_id) == id)
			return state_rec(i);
	return NULL;
}

/* Free the records of buses the daemon does not have (their arena was
 * not passed back, or was refused). */
static void state_prune(const struct daemon *d)
{
	for (uint32_t i = 0; state && i < state->nr_recs; i++) {
		struct state_rec *r = state_rec(i);
		const struct dbus *b = d->buses;

		while (b && b->arena.bus_id != r->bus_id)
			b = b->next;
		if (r->bus_id && !b)
			WRITE_ONCE(r->bus_id, 0);
	}
}

/* Record @b's copies (a bus created or adopted now). */
static void state_put(const struct dbus *b)
{
	struct state_rec *r = NULL;

	if (!state || state_find(b->arena.bus_id))
		return;
	for (uint32_t i = 0; i < state->nr_recs && !r; i++)
		if (!state_rec(i)->bus_id)
			r = state_rec(i);
	if (!r) {
		log_warn("bus '%s': the state memfd is full (%u buses); a "
			 "daemon that adopts it from the fd store trusts its "
			 "validated superblock", b->name, state->nr_recs);
		return;
	}
	r->nr_pools = b->arena.nr_pools;
	memcpy(r->sb, b->sb_copy, sizeof(r->sb));
	memcpy(r->pool, b->pool_copy, sizeof(r->pool));
	/* the copies before the id: a daemon killed in between leaves a
	 * free record, never a torn one */
	smp_store_release(&r->bus_id, b->arena.bus_id);
}

void fdstore_pool_count(const struct dbus *b, unsigned pi)
{
	const size_t at = offsetof(struct shmbus_pool, nr_live);
	struct state_rec *r = state ? state_find(b->arena.bus_id) : NULL;
	uint32_t n;

	if (!r || pi >= r->nr_pools)
		return;
	memcpy(&n, b->pool_copy[pi] + at, sizeof(n));
	/* one aligned word: a daemon killed here leaves the old count or
	 * the new one */
	WRITE_ONCE(*(uint32_t *)(r->pool[pi] + at), n);
}

/* ---- what the service manager passed ------------------------------------- */

/* Is @fd a listening AF_UNIX SOCK_SEQPACKET socket (socket activation)? */
static bool is_listener(int fd)
{
	int dom = 0, type = 0, acc = 0;
	socklen_t l = sizeof(int);

	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &l) < 0)
		return false;
	l = sizeof(int);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) < 0)
		return false;
	l = sizeof(int);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &l) < 0)
		return false;
	return dom == AF_UNIX && type == SOCK_SEQPACKET && acc;
}

/* The @i-th colon-separated name of @names, or "unknown". */
static void name_of(const char *names, unsigned i, char *out, size_t len)
{
	const char *p = names;

	snprintf(out, len, "unknown");
	for (unsigned k = 0; p && k < i; k++) {
		p = strchr(p, ':');
		if (p)
			p++;
	}
	if (p && *p && *p != ':')
		snprintf(out, len, "%.*s", (int)strcspn(p, ":"), p);
}

int fdstore_take(void)
{
	const char *pid_s = getenv("LISTEN_PID"), *n_s = getenv("LISTEN_FDS");
	const char *names = getenv("LISTEN_FDNAMES");
	unsigned long pid, n;
	int listener = -1;
	char *end;

	if (!pid_s || !n_s)
		return -1;
	errno = 0;
	pid = strtoul(pid_s, &end, 10);
	if (errno || *end || pid != (unsigned long)getpid())
		return -1;	/* meant for another process */
	n = strtoul(n_s, &end, 10);
	if (errno || *end || n > LISTEN_FDS_MAX)
		return -1;
	passed = calloc(n ? n : 1, sizeof(*passed));
	if (!passed)
		return -1;
	for (unsigned i = 0; i < n; i++) {
		int fd = LISTEN_FDS_START + (int)i;
		int fl = fcntl(fd, F_GETFD);

		if (fl < 0)
			continue;	/* said, but not there */
		/* ours alone: nothing the daemon starts inherits them */
		fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
		if (listener < 0 && is_listener(fd)) {
			listener = fd;
			continue;
		}
		passed[nr_passed].fd = fd;
		name_of(names, i, passed[nr_passed].name,
			sizeof(passed[nr_passed].name));
		nr_passed++;
	}
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return listener;
}

/* The passed state memfd: used if valid, else logged, dropped from the
 * store and replaced (by fdstore_start()). */
static void take_state(struct passed *p)
{
	char why[160];
	int err;

	if (state) {
		log_warn("fd store: a second \"state\" fd (%d) closed", p->fd);
		close(p->fd);
		p->fd = -1;
		return;
	}
	err = state_map(p->fd, why, sizeof(why));
	if (err) {
		log_warn("fd store: state memfd ignored: %s", why);
		close(p->fd);
		store_remove("state");
	} else {
		log_info("fd store: state memfd of %u records taken",
			 state->nr_recs);
	}
	p->fd = -1;
}

/* The bus id in an fd name "arena-<8 hex digits>", or 0. */
static uint32_t arena_id(const char *name)
{
	if (strncmp(name, "arena-", 6) || strlen(name) != 14 ||
	    strspn(name + 6, "0123456789abcdef") != 8)
		return 0;
	return (uint32_t)strtoul(name + 6, NULL, 16);
}

/*
 * The record of bus @id, its superblock lines in *@sb: NULL if there is
 * none, or if what it holds cannot be that bus's (logged, freed).
 */
static const struct state_rec *record_of(uint32_t id, struct shmbus_sb *sb)
{
	struct state_rec *r = state_find(id);

	if (!r)
		return NULL;
	memset(sb, 0, sizeof(*sb));
	memcpy(sb, r->sb, STATE_SB_BYTES);
	if (sb->magic == SHMBUS_MAGIC && sb->version == SHMBUS_LAYOUT_VERSION &&
	    sb->bus_id == id && sb->nr_pools == r->nr_pools &&
	    r->nr_pools >= 1 && r->nr_pools <= SHMBUS_MAX_POOLS &&
	    sb->pool_off >= SHMBUS_SB_SIZE && sb->pool_off < sb->arena_size &&
	    r->nr_pools * sizeof(struct shmbus_pool) <=
	    sb->arena_size - sb->pool_off) {
		sb->name[SHMBUS_NAME_MAX - 1] = '\0';
		return r;
	}
	log_warn("fd store: the state memfd's record of bus %08x is not a "
		 "superblock of this layout with that id; ignored", id);
	WRITE_ONCE(r->bus_id, 0);
	return NULL;
}

/* The bus id a daemon's arena memfd name gives ("/memfd:shmbus:INSTANCE:
 * UID:GID:MODE:BUSID:NAME", bus.c arena_memfd_name()), or 0. */
static uint32_t memfd_bus_id(const char *link)
{
	const char *p = link + 14;

	if (strncmp(link, "/memfd:shmbus:", 14))
		return 0;
	for (int i = 0; i < 4 && p; i++) {
		p = strchr(p, ':');
		p = p ? p + 1 : NULL;
	}
	if (!p || strspn(p, "0123456789abcdef") != 8 || p[8] != ':')
		return 0;
	return (uint32_t)strtoul(p, NULL, 16);
}

/*
 * Is @fd a sealed memfd of the daemon's uid whose name says it is the
 * arena of bus @id, of @size bytes? (bus_adopt() checks it in full; this
 * is so that nothing else is written to.)
 */
static bool arena_like(int fd, uint32_t id, uint64_t size)
{
	const int want = F_SEAL_SHRINK | F_SEAL_GROW;
	char link[256];
	struct stat st;

	if (fd_link(0, fd, link, sizeof(link)))
		return false;
	return memfd_bus_id(link) == id && fstat(fd, &st) == 0 &&
	       S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
	       (uint64_t)st.st_size == size &&
	       (fcntl(fd, F_GET_SEALS) & want) == want;
}

/*
 * Before adoption, put record @r's lines (superblock @sb) back into the
 * arena in @fd: a member may have rewritten its geometry while no daemon
 * was watching, and bus_adopt() maps the arena by what it finds there.
 * repair.c does the writing (changed words only, magic last with a
 * release), on a record that holds only the mapping and the copies.
 */
static void arena_restore(int fd, const struct state_rec *r,
			  const struct shmbus_sb *sb)
{
	struct dbus *t;
	uint8_t *base;
	unsigned n;

	if (!arena_like(fd, sb->bus_id, sb->arena_size))
		return;		/* bus_adopt() will say what it is */
	t = calloc(1, sizeof(*t));
	if (!t)
		return;
	base = mmap(NULL, sb->arena_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		    fd, 0);
	if (base == MAP_FAILED) {
		free(t);
		return;
	}
	t->arena.base = base;
	t->arena.size = sb->arena_size;
	t->arena.sb = (struct shmbus_sb *)base;
	t->arena.nr_pools = r->nr_pools;
	for (unsigned i = 0; i < r->nr_pools; i++)
		t->arena.pool[i].desc =
			(struct shmbus_pool *)(base + sb->pool_off) + i;
	memcpy(t->sb_copy, r->sb, sizeof(t->sb_copy));
	memcpy(t->pool_copy, r->pool, sizeof(t->pool_copy));
	memcpy(t->name, sb->name, sizeof(t->name));
	t->repairs = READ_ONCE(t->arena.sb->repairs);
	/* ours now: not a damage to report */
	WRITE_ONCE(t->arena.sb->daemon_pid, (uint32_t)getpid());
	n = bus_repair(t, 0);
	munmap(base, sb->arena_size);
	free(t);
	if (n)
		log_warn("fd store: arena-%08x: superblock or pool descriptors "
			 "restored from the state memfd before adoption",
			 sb->bus_id);
}

/* An arena passed back: adopted, its record's copies made the daemon's,
 * or refused (logged, dropped from the store and the state). */
static void take_arena(struct daemon *d, struct passed *p)
{
	uint32_t id = arena_id(p->name);
	const struct state_rec *r;
	struct shmbus_sb sb;
	struct dbus *b;
	char why[256] = "";
	int err;

	r = record_of(id, &sb);
	if (r)
		arena_restore(p->fd, r, &sb);
	adopting = true;
	err = bus_adopt(d, p->fd, "fd store", &b, why, sizeof(why));
	adopting = false;
	close(p->fd);
	p->fd = -1;
	if (err) {
		/* bus_adopt() logged why */
		log_warn("fd store: %s refused; removed from the store",
			 p->name);
		store_remove(p->name);
		if (r)
			WRITE_ONCE(state_find(id)->bus_id, 0);
		return;
	}
	if (b->arena.bus_id != id) {
		/* stored under another name: stored again under its own */
		log_warn("fd store: %s holds bus %08x", p->name,
			 b->arena.bus_id);
		store_remove(p->name);
		b->fd_stored = false;
		fdstore_bus(d, b);
		return;
	}
	b->fd_stored = true;
	if (r && (b->arena.size != sb.arena_size ||
		  b->arena.nr_pools != r->nr_pools ||
		  strncmp(b->name, sb.name, SHMBUS_NAME_MAX))) {
		log_warn("fd store: %s: the state memfd's record is not this "
			 "arena's; not used", p->name);
		r = NULL;
	}
	if (r) {
		memcpy(b->sb_copy, r->sb, sizeof(b->sb_copy));
		memcpy(b->pool_copy, r->pool, sizeof(b->pool_copy));
		bus_repair(b, 0);
	}
	state_put(b);
	log_info("fd store: %s is bus %u:%s; %s", p->name, b->owner_uid,
		 b->name, r ? "its repair copies are the state memfd's" :
		 "no record in the state memfd: the copies are of its "
		 "validated superblock");
}

void fdstore_start(struct daemon *d, bool notify)
{
	if (notify)
		notify_open();
	unsetenv("NOTIFY_SOCKET");
	if (nr_passed)
		log_info("service manager passed %u fds", nr_passed);
	for (unsigned i = 0; i < nr_passed; i++)
		if (!strcmp(passed[i].name, "state"))
			take_state(&passed[i]);
	if (!state && notify_fd >= 0) {
		int err = state_create();

		if (err)
			log_warn("state memfd: %s; the fd store keeps arenas "
				 "only", strerror(-err));
	}
	for (unsigned i = 0; i < nr_passed; i++)
		if (passed[i].fd >= 0 && !strncmp(passed[i].name, "arena-", 6))
			take_arena(d, &passed[i]);
	for (unsigned i = 0; i < nr_passed; i++) {
		if (passed[i].fd < 0)
			continue;
		log_warn("fd store: fd %d named \"%s\" is of no kind this "
			 "daemon knows; closed", passed[i].fd, passed[i].name);
		close(passed[i].fd);
	}
	state_prune(d);
	free(passed);
	passed = NULL;
	nr_passed = 0;
}

void fdstore_bus(struct daemon *d, struct dbus *b)
{
	char msg[64];

	if (notify_fd < 0 || b->fd_stored)
		return;
	if (adopting) {
		/* passed back from the store, where it still is; recorded
		 * once its copies are settled (take_arena()) */
		b->fd_stored = true;
		return;
	}
	snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=arena-%08x",
		 b->arena.bus_id);
	if (notify_send(msg, b->fd))
		return;
	b->fd_stored = true;
	state_put(b);
}

void fdstore_bus_gone(const struct daemon *d, struct dbus *b)
{
	char name[32];

	if (notify_fd < 0 || !b->fd_stored)
		return;
	snprintf(name, sizeof(name), "arena-%08x", b->arena.bus_id);
	store_remove(name);
	b->fd_stored = false;
	state_prune(d);		/* @b is no longer among d's buses */
}

void fdstore_close(void)
{
	if (state)
		munmap(state, state_size);
	state = NULL;
	if (state_fd >= 0)
		close(state_fd);
	state_fd = -1;
	if (notify_fd >= 0)
		close(notify_fd);
	notify_fd = -1;
}
