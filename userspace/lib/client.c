// SPDX-License-Identifier: MIT
/*
 * client.c - connect to shmbusd (starting it if needed) and exchange
 * control frames with it. Never on the data path.
 *
 * Starting the daemon: the library spawns `shmbusd --daemonize` and waits
 * for that process to exit; the daemon takes an flock on its lock file,
 * binds and listens, then forks into the background and lets the spawned
 * process exit. A daemon that loses the lock race exits at once. So any
 * number of clients racing at start end with exactly one daemon, and each
 * of them just retries connect() until it is listening.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client.h"
#include "internal.h"

#ifndef SHMBUS_DAEMON_PATH
#define SHMBUS_DAEMON_PATH "/usr/local/bin/shmbusd"
#endif

static int socket_path(char *buf, size_t len, bool use_env)
{
	/* secure_getenv: a set-uid program must not be steered by these */
	const char *env = use_env ? secure_getenv("SHMBUS_SOCKET") : NULL;
	const char *xdg = secure_getenv("XDG_RUNTIME_DIR");
	int n;

	if (env && *env)
		n = snprintf(buf, len, "%s", env);
	else if (geteuid() == 0)
		n = snprintf(buf, len, "/run/shmbus/shmbusd.sock");
	else if (xdg && xdg[0] == '/')
		n = snprintf(buf, len, "%s/shmbus/shmbusd.sock", xdg);
	else
		n = snprintf(buf, len, "/tmp/shmbus-%u/shmbusd.sock",
			     (unsigned)geteuid());
	if (n < 0 || (size_t)n >= len ||
	    (size_t)n >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return -ENAMETOOLONG;
	return 0;
}

int shmbus_socket_path(char *buf, size_t len)
{
	return socket_path(buf, len, true);
}

int shmbus_default_socket_path(char *buf, size_t len)
{
	return socket_path(buf, len, false);
}

static bool executable(const char *p)
{
	return p && *p && access(p, X_OK) == 0;
}

/* shmbusd in the directory of @file (a path), then in ../bin from it,
 * into @buf: true if one is there. */
static bool daemon_near(const char *file, char *buf, size_t len)
{
	const char *slash = strrchr(file, '/');
	size_t dir;

	if (!slash)
		return false;
	dir = (size_t)(slash - file) + 1;
	if (dir + sizeof("../bin/shmbusd") > len)
		return false;
	memmove(buf, file, dir);
	strcpy(buf + dir, "shmbusd");
	if (executable(buf))
		return true;
	strcpy(buf + dir, "../bin/shmbusd");
	return executable(buf);
}

/*
 * $SHMBUS_DAEMON, then shmbusd beside our own executable, then beside
 * this library (in its directory or ../bin: a program linked against a
 * build tree or another prefix starts that tree's daemon), then the
 * installed path, then $PATH.
 */
static const char *daemon_binary(char *buf, size_t len)
{
	const char *env = secure_getenv("SHMBUS_DAEMON");
	char exe[PATH_MAX];
	Dl_info di;
	ssize_t n;

	if (executable(env))
		return env;
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		if (daemon_near(exe, buf, len))
			return buf;
	}
	if (dladdr((void *)daemon_binary, &di) && di.dli_fname &&
	    di.dli_fname[0] == '/' && daemon_near(di.dli_fname, buf, len))
		return buf;
	if (executable(SHMBUS_DAEMON_PATH))
		return SHMBUS_DAEMON_PATH;
	return "shmbusd";
}

/* Start shmbusd for @sock: 0 once it listens (or another one won the
 * race), 1 when it exited non-zero (what it wrote first is in
 * shmbus_errmsg()), or -errno when it could not be run. */
static int spawn_daemon(const char *sock)
{
	char binbuf[PATH_MAX];
	const char *bin = daemon_binary(binbuf, sizeof(binbuf));
	char *argv[] = { "shmbusd", "--daemonize", "--socket", (char *)sock,
			 NULL };
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, all;
	pid_t pid;
	int err, status;
	/* its stderr: what it says when it refuses to start (a bad option
	 * or configuration file) is the caller's error; a memfd, which a
	 * daemon that runs on never fills up as it would a pipe */
	int efd = memfd_create("shmbusd-stderr", MFD_CLOEXEC);

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	if (efd >= 0)
		posix_spawn_file_actions_adddup2(&fa, efd, 2);
	else
		posix_spawn_file_actions_addopen(&fa, 2, "/dev/null",
						 O_WRONLY, 0);
	posix_spawnattr_init(&at);
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &all);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID |
				      POSIX_SPAWN_SETSIGMASK |
				      POSIX_SPAWN_SETSIGDEF);
	err = strchr(bin, '/') ?
		posix_spawn(&pid, bin, &fa, &at, argv, environ) :
		posix_spawnp(&pid, bin, &fa, &at, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	if (err) {
		pr_warn("cannot start the daemon %s: %s", bin, strerror(err));
		if (efd >= 0)
			close(efd);
		return -err;
	}
	/* the spawned process exits once the daemon listens (or lost the
	 * race to another one): reap it, nothing stays our child */
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (efd >= 0 && WIFEXITED(status) && WEXITSTATUS(status) != 0) {
		char msg[256];
		ssize_t n = pread(efd, msg, sizeof(msg) - 1, 0);

		msg[n > 0 ? n : 0] = '\0';
		msg[strcspn(msg, "\n")] = '\0';
		close(efd);
		errmsg_set("%s exited %d: %s", bin, WEXITSTATUS(status),
			   msg[0] ? msg : "(it said nothing)");
		return 1;
	}
	if (efd >= 0)
		close(efd);
	pr_debug("started %s for %s", bin, sock);
	return 0;
}

/* Bound blocking sends (and connect()) on @fd to @ms; 0 = unbounded. */
static void send_timeout(int fd, int64_t ms)
{
	struct timeval tv = { .tv_sec = ms / 1000,
			      .tv_usec = ms % 1000 * 1000 };

	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* Milliseconds left until @deadline, at least 1. */
static int64_t ms_left(int64_t deadline)
{
	int64_t ms = (deadline - now_ns()) / NSEC_PER_MSEC;

	return ms > 0 ? ms : 1;
}

/* Wait @ms, or less if @abort_fd (-1: none) becomes readable: then
 * -ECANCELED. */
static int pause_ms(int abort_fd, int ms)
{
	struct pollfd pfd = { .fd = abort_fd, .events = POLLIN };

	if (abort_fd < 0) {
		usleep(ms * 1000);
		return 0;
	}
	return poll(&pfd, 1, ms) > 0 ? -ECANCELED : 0;
}

/*
 * A unix connect() waits, while the listener's backlog is full, for as
 * long as SO_SNDTIMEO allows (unbounded by default) and then fails with
 * EAGAIN; a non-blocking one fails at once, with no way to poll for room.
 * So the socket gets the time left until @deadline as its send timeout,
 * at most @cap_ms (0: no cap), after which the caller may try again.
 */
static int try_connect(const char *path, int64_t deadline, int64_t cap_ms)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int64_t ms = ms_left(deadline);
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	send_timeout(fd, cap_ms && ms > cap_ms ? cap_ms : ms);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

/*
 * Only a daemon running as root or as ourselves may hand us an arena: a
 * squatter on a shared directory could otherwise give us a file it can
 * truncate under us. Its pid, for client_daemon_exited(), in *@pid.
 */
static int daemon_trusted(int fd, const char *path, pid_t *pid)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		return -errno;
	if (cr.uid != 0 && cr.uid != geteuid()) {
		pr_warn("%s is served by uid %u (pid %d), neither root nor us; "
			"refusing it", path, (unsigned)cr.uid, (int)cr.pid);
		return -EPERM;
	}
	*pid = cr.pid;
	return 0;
}

/* A pidfd of the daemon (pid 0: not in our pid namespace), or -1. A pid
 * reused between the connect and here would only make us wait for the
 * wrong process's exit after a hang-up, and then give up. */
static int daemon_pidfd(pid_t pid)
{
#ifdef SYS_pidfd_open
	if (pid > 0)
		return (int)syscall(SYS_pidfd_open, pid, 0);
#endif
	return -1;
}

static int hello(struct client *c)
{
	struct sbc_hello req = { .version_min = SBC_VERSION,
				 .version_max = SBC_VERSION };
	struct sbc_hello_reply rep;
	int err;

	err = client_call(c, SBC_HELLO, &req, sizeof(req), &rep, sizeof(rep),
			  NULL, NULL);
	if (err)
		return err;
	if (rep.version != SBC_VERSION ||
	    rep.layout_version != SHMBUS_LAYOUT_VERSION) {
		pr_warn("daemon speaks protocol %u / layout %u, we need %u / %u",
			rep.version, rep.layout_version, SBC_VERSION,
			SHMBUS_LAYOUT_VERSION);
		return -EPROTO;
	}
	return 0;
}

static int client_init(struct client *c, const char *path, int timeout_ms,
		       bool autostart, int abort_fd)
{
	pthread_condattr_t ca;

	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->dpidfd = -1;
	c->abort_fd = abort_fd;
	c->timeout_ms = timeout_ms;
	c->autostart = autostart;
	pthread_mutex_init(&c->lock, NULL);
	/* waits are bounded on the monotonic clock, like every deadline */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (strlen(path) >= sizeof(c->path))
		return -ENAMETOOLONG;
	strcpy(c->path, path);
	return 0;
}

/* Connect to c->path and say HELLO, within c->timeout_ms (the handshake
 * deadline then stays on the connection). */
static int dial(struct client *c)
{
	int64_t deadline = now_ns() + (int64_t)c->timeout_ms * NSEC_PER_MSEC;
	/* an abortable dial waits for a full backlog in short steps */
	int64_t cap = c->abort_fd >= 0 ? 100 : 0;
	int64_t respawn = 0;
	const char *path = c->path;
	pid_t pid = 0;
	int fd, err;

	c->deadline = deadline;
	for (;;) {
		fd = try_connect(path, deadline, cap);
		if (fd >= 0) {
			c->fd = fd;
			c->seq = 0;
			c->broken = false;
			c->down = false;
			err = daemon_trusted(fd, path, &pid);
			if (!err)
				err = hello(c);
			if (!err) {
				c->dpidfd = daemon_pidfd(pid);
				return 0;
			}
			client_close(c);
			if (err == -ETIMEDOUT)
				errmsg_set("the daemon at %s did not answer "
					   "HELLO within %d ms", path,
					   c->timeout_ms);
			/* a daemon on its way out accepted, then closed */
			if (err != -ECONNRESET || !c->autostart)
				return err;
		} else if (fd == -EAGAIN || fd == -EINTR) {
			/* the backlog is full: wait on, up to the deadline */
			if (now_ns() >= deadline) {
				errmsg_set("the daemon at %s did not accept "
					   "the connection within %d ms (its "
					   "listen backlog is full)", path,
					   c->timeout_ms);
				return -ETIMEDOUT;
			}
			if (pause_ms(c->abort_fd, 0))
				return -ECANCELED;
			continue;
		} else if (fd != -ENOENT && fd != -ECONNREFUSED) {
			return fd;
		} else if (!c->autostart) {
			/* nothing listens there, and we may not start one:
			 * one error for both, as documented */
			errmsg_set("no daemon at %s", path);
			return -ECONNREFUSED;
		}
		if (now_ns() >= deadline)
			return -ECONNREFUSED;
		/* Start one. If it finds another daemon holding the lock,
		 * it exits and we wait for that one to listen; if that one
		 * was on its way out, starting again later wins the lock. */
		if (now_ns() >= respawn) {
			err = spawn_daemon(path);
			if (err > 0) {
				/* it ran, and refused to start: say why */
				char why[400];

				snprintf(why, sizeof(why), "%s", shmbus_errmsg());
				errmsg_set("no daemon at %s, and the one started "
					   "refused: %s", path, why);
				return -ECONNREFUSED;
			}
			if (err) {
				/* no program to start: waiting cannot help */
				errmsg_set("no daemon at %s, and shmbusd cannot be "
					   "started: %s (looked for $SHMBUS_DAEMON, "
					   "shmbusd beside the program and beside "
					   "libshmbus, in ../bin from each, "
					   SHMBUS_DAEMON_PATH ", and in $PATH)",
					   path, strerror(-err));
				return -ECONNREFUSED;
			}
			respawn = now_ns() + 250 * NSEC_PER_MSEC;
			continue;
		}
		if (pause_ms(c->abort_fd, 2))
			return -ECANCELED;
	}
}

int client_connect(struct client *c, const char *path, int timeout_ms,
		   bool autostart)
{
	int err = client_init(c, path, timeout_ms, autostart, -1);

	return err ?: dial(c);
}

int client_dial(const struct client *c, struct client *nc, int abort_fd)
{
	int err = client_init(nc, c->path, c->timeout_ms, c->autostart,
			      abort_fd);

	/* a reset keeps the fd: only client_swap() or client_fini() may
	 * close a connection that REJOIN gave our slots to */
	nc->rejoin = true;
	if (!err)
		err = dial(nc);
	if (err)
		client_fini(nc);
	return err;
}

void client_handshake_done(struct client *c)
{
	pthread_mutex_lock(&c->lock);
	c->deadline = 0;
	if (c->fd >= 0)
		send_timeout(c->fd, 0);
	pthread_mutex_unlock(&c->lock);
}

void client_close(struct client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	if (c->dpidfd >= 0)
		close(c->dpidfd);
	c->dpidfd = -1;
}

void client_fini(struct client *c)
{
	client_close(c);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
}

/*
 * The body of a failing reply: empty, or a reason (proto.h), which
 * becomes shmbus_errmsg(). Returns 0, or -EPROTO if it is neither.
 */
static int reason_take(const uint8_t *body, size_t len)
{
	if (!len) {
		errmsg_set("%s", "");
		return 0;
	}
	if (len > SBC_REASON_MAX || strnlen((const char *)body, len) != len - 1)
		return -EPROTO;
	errmsg_set("%s", (const char *)body);
	return 0;
}

/* Send request @type (@req, @reqlen) with @ngive fds of @give. 0 or
 * -errno: -EPIPE when the daemon is gone (it never saw the request). */
static int send_request(struct client *c, unsigned type, uint32_t seq,
			const void *req, size_t reqlen, const int *give,
			unsigned ngive)
{
	union {
		struct sbc_hdr h;
		uint8_t b[SBC_FRAME_MAX];
	} out;
	union proto_cbuf cbuf;
	struct iovec iov = { .iov_base = out.b };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	if (sizeof(struct sbc_hdr) + reqlen > SBC_FRAME_MAX ||
	    ngive > SBC_MAX_FDS)
		return -EINVAL;
	memset(&out.h, 0, sizeof(out.h));
	out.h.magic = SBC_MAGIC;
	out.h.version = SBC_VERSION;
	out.h.type = type;
	out.h.len = sizeof(out.h) + reqlen;
	out.h.seq = seq;
	memcpy(out.b + sizeof(out.h), req, reqlen);
	iov.iov_len = out.h.len;
	proto_give_fds(&mh, &cbuf, give, ngive);
	do {
		n = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n < 0 && errno == EAGAIN && c->deadline)
		return -ETIMEDOUT;	/* SO_SNDTIMEO: nothing was sent */
	if (n != (ssize_t)out.h.len)
		return n < 0 && errno != EPIPE && errno != ECONNRESET
		       ? -errno : -EPIPE;
	return 0;
}

/* Wait for the reply to be readable: 0, -ETIMEDOUT, -ECANCELED. */
static int wait_reply(struct client *c)
{
	struct pollfd pfd[2] = {
		{ .fd = c->fd, .events = POLLIN },
		{ .fd = c->abort_fd, .events = POLLIN },
	};
	int r;

	do {
		r = poll(pfd, c->abort_fd >= 0 ? 2 : 1,
			 c->deadline ? (int)MIN(ms_left(c->deadline),
						SBC_REPLY_TIMEOUT_MS)
				     : SBC_REPLY_TIMEOUT_MS);
	} while (r < 0 && errno == EINTR);
	if (r == 0)
		return -ETIMEDOUT;
	if (r < 0)
		return -errno;
	if (!pfd[0].revents)
		return -ECANCELED;
	return 0;
}

static int exchange(struct client *c, unsigned type, const void *req,
		    size_t reqlen, const int *give, unsigned ngive,
		    void *rep, size_t replen, int *fds, unsigned *nfds)
{
	union {
		struct sbc_hdr h;
		uint8_t b[SBC_FRAME_MAX];
	} in;
	union proto_cbuf cbuf;
	struct iovec iov = { .iov_base = in.b, .iov_len = sizeof(in.b) };
	struct msghdr mh = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = cbuf.b, .msg_controllen = sizeof(cbuf.b),
	};
	unsigned got, stored = 0, cap = nfds ? *nfds : 0;
	uint32_t seq = ++c->seq;
	ssize_t n;
	int r;

	if (nfds)
		*nfds = 0;
	r = send_request(c, type, seq, req, reqlen, give, ngive);
	if (!r)
		r = wait_reply(c);
	if (r)
		return r;
	do {
		n = recvmsg(c->fd, &mh, MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == ECONNRESET ? -ECONNRESET : -errno;
	if (n == 0)
		return -ECONNRESET;
	if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		proto_take_fds(&mh, NULL, 0, NULL);
		pr_warn("daemon reply truncated");
		return -EPROTO;
	}
	got = proto_take_fds(&mh, fds, cap, &stored);
	if ((size_t)n < sizeof(in.h) || in.h.magic != SBC_MAGIC ||
	    in.h.version != SBC_VERSION || in.h.type != type ||
	    in.h.seq != seq || in.h.len != (uint32_t)n || in.h.nfds != got) {
		pr_warn("malformed reply from the daemon");
		goto proto_err;
	}
	if (in.h.status) {
		if (in.h.status > 0 || in.h.status < -4095 || stored ||
		    reason_take(in.b + sizeof(in.h), n - sizeof(in.h)))
			goto proto_err;
		return in.h.status;
	}
	if (n - sizeof(in.h) != replen) {
		pr_warn("reply of type %u has %zd bytes, expected %zu", type,
			n - (ssize_t)sizeof(in.h), replen);
		goto proto_err;
	}
	if (replen)
		memcpy(rep, in.b + sizeof(in.h), replen);
	if (nfds)
		*nfds = stored;
	return 0;

proto_err:
	for (unsigned i = 0; i < stored; i++)
		close(fds[i]);
	return -EPROTO;
}

/* The connection died under a call. With a watcher, it swaps the socket
 * out (client_swap()); without one, nothing will: close it now. */
static void conn_lost(struct client *c)
{
	if (c->rejoin) {
		c->down = true;
		return;
	}
	client_close(c);
}

/* Why there is no connection, for shmbus_errmsg(). */
static void errmsg_gone(const struct client *c)
{
	if (c->why[0])
		errmsg_set("%s", c->why);
	else
		errmsg_set("no connection to the daemon at %s", c->path);
}

/*
 * Under c->lock: wait until the connection is usable, if @flags allow
 * (CALL_WAIT) and a reconnection may come, up to *@deadline (set on the
 * first wait). 0 or -ENOTCONN.
 */
static int conn_usable(struct client *c, unsigned flags, int64_t *deadline)
{
	while (c->fd < 0 || c->down || c->broken) {
		struct timespec ts;

		if (c->deleted && READ_ONCE(*c->deleted)) {
			errmsg_set("the bus was deleted (shmbus bus delete "
				   "--force)");
			return -EIDRM;
		}

		/* out of step, the daemon alive: nothing will mend it */
		if (!c->down && c->fd >= 0) {
			errmsg_set("the connection to the daemon at %s is out "
				   "of step (an earlier reply was malformed "
				   "or late)", c->path);
			return -ENOTCONN;
		}
		if (!c->rejoin || !(flags & (CALL_WAIT | CALL_RETRY))) {
			errmsg_gone(c);
			return -ENOTCONN;
		}
		if (!*deadline)
			*deadline = now_ns() +
				    (int64_t)c->timeout_ms * NSEC_PER_MSEC;
		if (now_ns() >= *deadline) {
			errmsg_set("the daemon at %s is gone and no new one "
				   "took the bus back within %d ms (still "
				   "trying)", c->path, c->timeout_ms);
			return -ENOTCONN;
		}
		ts.tv_sec = *deadline / NSEC_PER_SEC;
		ts.tv_nsec = *deadline % NSEC_PER_SEC;
		pthread_cond_timedwait(&c->cond, &c->lock, &ts);
	}
	return 0;
}

int client_call_flags(struct client *c, unsigned flags, unsigned type,
		      const void *req, size_t reqlen, void *rep,
		      size_t replen, int *fds, unsigned *nfds)
{
	int64_t deadline = 0;
	bool resent = false;
	unsigned cap = nfds ? *nfds : 0;
	int err;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		err = conn_usable(c, flags, &deadline);
		if (err)
			break;
		if (nfds)
			*nfds = cap;
		err = exchange(c, type, req, reqlen, NULL, 0, rep, replen, fds,
			       nfds);
		if (err == -EPROTO || err == -ETIMEDOUT) {
			/* The stream is out of step: never use it again, but
			 * keep it open. Closing it would tell the daemon we
			 * died, and it would reclaim the slots our handles
			 * are still using. */
			c->broken = true;
			break;
		}
		if (err == -EPIPE) {
			/* gone before the request went out: the next daemon
			 * may have it, whatever it is */
			conn_lost(c);
			err = -ECONNRESET;
			if (flags & (CALL_WAIT | CALL_RETRY) && c->rejoin)
				continue;
			errmsg_gone(c);
			break;
		}
		if (err != -ECONNRESET)
			break;
		conn_lost(c);		/* the daemon is gone */
		if (!(flags & CALL_RETRY) || resent || !c->rejoin) {
			errmsg_set("the daemon at %s went away before it "
				   "answered; the request may or may not have "
				   "been done", c->path);
			break;
		}
		resent = true;
	}
	/* the connection went because the bus did (closed by its delete) */
	if ((err == -ECONNRESET || err == -ENOTCONN) && c->deleted &&
	    READ_ONCE(*c->deleted)) {
		errmsg_set("the bus was deleted (shmbus bus delete --force)");
		err = -EIDRM;
	}
	pthread_mutex_unlock(&c->lock);
	return err;
}

int client_call(struct client *c, unsigned type, const void *req,
		size_t reqlen, void *rep, size_t replen, int *fds,
		unsigned *nfds)
{
	return client_call_flags(c, 0, type, req, reqlen, rep, replen, fds,
				 nfds);
}

int client_call_give(struct client *c, unsigned type, const void *req,
		     size_t reqlen, const int *give, unsigned ngive,
		     void *rep, size_t replen)
{
	int err;

	pthread_mutex_lock(&c->lock);
	err = c->fd < 0 || c->down || c->broken
	      ? -ENOTCONN
	      : exchange(c, type, req, reqlen, give, ngive, rep, replen, NULL,
			 NULL);
	if (err == -EPIPE)
		err = -ECONNRESET;
	if (err == -ECONNRESET)
		conn_lost(c);
	else if (err == -EPROTO || err == -ETIMEDOUT)
		c->broken = true;
	pthread_mutex_unlock(&c->lock);
	return err;
}

int client_daemon_exited(struct client *c, int abort_fd)
{
	struct pollfd pfd[2] = {
		{ .fd = c->dpidfd, .events = POLLIN },
		{ .fd = abort_fd, .events = POLLIN },
	};
	int r;

	/* only this thread ever replaces dpidfd (client_swap()) */
	if (c->dpidfd < 0)
		return 1;
	do {
		r = poll(pfd, 2, c->timeout_ms);
	} while (r < 0 && errno == EINTR);
	if (r > 0 && pfd[1].revents)
		return -ECANCELED;
	/* a pidfd is readable once its process has exited */
	return r > 0 && pfd[0].revents ? 1 : 0;
}

void client_down(struct client *c)
{
	pthread_mutex_lock(&c->lock);
	c->down = true;
	pthread_mutex_unlock(&c->lock);
}

void client_swap(struct client *c, struct client *nc, int hup_fd,
		 bool broken)
{
	int old;

	pthread_mutex_lock(&c->lock);
	old = c->fd;
	c->fd = nc->fd;
	c->seq = nc->seq;
	c->deadline = 0;
	send_timeout(c->fd, 0);
	if (c->dpidfd >= 0)
		close(c->dpidfd);
	c->dpidfd = nc->dpidfd;
	/* Sleepers poll this number for the daemon's hang-up. One polling
	 * the old socket has seen its hang-up already (that is why we are
	 * here); one that polls from now on watches the new daemon. dup3
	 * replaces the file atomically: no moment with no file there. */
	if (hup_fd >= 0 && dup3(c->fd, hup_fd, O_CLOEXEC) < 0)
		pr_warn("cannot watch the new daemon's socket: %s",
			strerror(errno));
	if (old >= 0)
		close(old);
	c->down = false;
	c->broken = broken;
	c->why[0] = '\0';
	WRITE_ONCE(c->gen, c->gen + 1);
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	nc->fd = -1;
	nc->dpidfd = -1;
	client_fini(nc);
}

bool client_is_down(struct client *c)
{
	bool down;

	pthread_mutex_lock(&c->lock);
	down = c->down && c->rejoin;
	pthread_mutex_unlock(&c->lock);
	return down;
}

void client_give_up(struct client *c, const char *why)
{
	pthread_mutex_lock(&c->lock);
	c->rejoin = false;
	c->down = true;		/* the socket is dead either way */
	snprintf(c->why, sizeof(c->why), "%s", why);
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}
