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
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client.h"
#include "internal.h"

#ifndef SHMBUS_DAEMON_PATH
#define SHMBUS_DAEMON_PATH "/usr/local/bin/shmbusd"
#endif

int shmbus_socket_path(char *buf, size_t len)
{
	/* secure_getenv: a set-uid program must not be steered by these */
	const char *env = secure_getenv("SHMBUS_SOCKET");
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

static bool executable(const char *p)
{
	return p && *p && access(p, X_OK) == 0;
}

/* $SHMBUS_DAEMON, then shmbusd beside our own executable, then the
 * installed path, then $PATH. */
static const char *daemon_binary(char *buf, size_t len)
{
	const char *env = secure_getenv("SHMBUS_DAEMON");
	ssize_t n;

	if (executable(env))
		return env;
	n = readlink("/proc/self/exe", buf, len - 16);
	if (n > 0) {
		char *slash;

		buf[n] = '\0';
		slash = strrchr(buf, '/');
		if (slash) {
			strcpy(slash + 1, "shmbusd");
			if (executable(buf))
				return buf;
		}
	}
	if (executable(SHMBUS_DAEMON_PATH))
		return SHMBUS_DAEMON_PATH;
	return "shmbusd";
}

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

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
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
		return -err;
	}
	/* the spawned process exits once the daemon listens (or lost the
	 * race to another one): reap it, nothing stays our child */
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
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

/*
 * A unix connect() waits, while the listener's backlog is full, for as
 * long as SO_SNDTIMEO allows (unbounded by default) and then fails with
 * EAGAIN; a non-blocking one fails at once, with no way to poll for room.
 * So the socket gets the time left until @deadline as its send timeout.
 */
static int try_connect(const char *path, int64_t deadline)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	send_timeout(fd, ms_left(deadline));
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
 * truncate under us.
 */
static int daemon_trusted(int fd, const char *path)
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
	return 0;
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

int client_connect(struct client *c, const char *path, int timeout_ms,
		   bool autostart)
{
	int64_t deadline = now_ns() + (int64_t)timeout_ms * NSEC_PER_MSEC;
	int64_t respawn = 0;
	int fd, err;

	c->fd = -1;
	c->seq = 0;
	c->deadline = deadline;
	c->timeout_ms = timeout_ms;
	pthread_mutex_init(&c->lock, NULL);
	for (;;) {
		fd = try_connect(path, deadline);
		if (fd >= 0) {
			c->fd = fd;
			c->broken = false;
			err = daemon_trusted(fd, path);
			if (!err)
				err = hello(c);
			if (!err)
				return 0;
			client_close(c);
			if (err == -ETIMEDOUT)
				errmsg_set("the daemon at %s did not answer "
					   "HELLO within %d ms", path,
					   timeout_ms);
			/* a daemon on its way out accepted, then closed */
			if (err != -ECONNRESET || !autostart)
				return err;
		} else if (fd == -EAGAIN || fd == -EINTR) {
			/* the backlog is full: wait on, up to the deadline */
			if (now_ns() >= deadline) {
				errmsg_set("the daemon at %s did not accept "
					   "the connection within %d ms (its "
					   "listen backlog is full)", path,
					   timeout_ms);
				return -ETIMEDOUT;
			}
			continue;
		} else if ((fd != -ENOENT && fd != -ECONNREFUSED) || !autostart) {
			return fd;
		}
		if (now_ns() >= deadline)
			return -ECONNREFUSED;
		/* Start one. If it finds another daemon holding the lock,
		 * it exits and we wait for that one to listen; if that one
		 * was on its way out, starting again later wins the lock. */
		if (now_ns() >= respawn) {
			spawn_daemon(path);
			respawn = now_ns() + 250 * NSEC_PER_MSEC;
			continue;
		}
		usleep(2000);
	}
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

static int exchange(struct client *c, unsigned type, const void *req,
		    size_t reqlen, void *rep, size_t replen, int *fds,
		    unsigned *nfds)
{
	union {
		struct sbc_hdr h;
		uint8_t b[SBC_FRAME_MAX];
	} out, in;
	union {
		struct cmsghdr align;
		uint8_t b[CMSG_SPACE(sizeof(int) * SBC_MAX_FDS)];
	} cbuf;
	struct iovec iov = { .iov_base = in.b, .iov_len = sizeof(in.b) };
	struct msghdr mh = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = cbuf.b, .msg_controllen = sizeof(cbuf.b),
	};
	struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
	unsigned got, stored = 0, cap = nfds ? *nfds : 0;
	uint32_t seq = ++c->seq;
	ssize_t n;
	int r;

	if (nfds)
		*nfds = 0;
	if (sizeof(struct sbc_hdr) + reqlen > SBC_FRAME_MAX)
		return -EINVAL;
	memset(&out.h, 0, sizeof(out.h));
	out.h.magic = SBC_MAGIC;
	out.h.version = SBC_VERSION;
	out.h.type = type;
	out.h.len = sizeof(out.h) + reqlen;
	out.h.seq = seq;
	memcpy(out.b + sizeof(out.h), req, reqlen);
	n = send(c->fd, out.b, out.h.len, MSG_NOSIGNAL);
	if (n < 0 && errno == EAGAIN && c->deadline)
		return -ETIMEDOUT;	/* SO_SNDTIMEO: nothing was sent */
	if (n != (ssize_t)out.h.len)
		return n < 0 && errno != EPIPE ? -errno : -ECONNRESET;

	do {
		r = poll(&pfd, 1, c->deadline ? (int)MIN(ms_left(c->deadline),
							 SBC_REPLY_TIMEOUT_MS)
					      : SBC_REPLY_TIMEOUT_MS);
	} while (r < 0 && errno == EINTR);
	if (r == 0)
		return -ETIMEDOUT;
	if (r < 0)
		return -errno;
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

int client_call(struct client *c, unsigned type, const void *req,
		size_t reqlen, void *rep, size_t replen, int *fds,
		unsigned *nfds)
{
	int err;

	pthread_mutex_lock(&c->lock);
	if (c->fd < 0 || c->broken) {
		pthread_mutex_unlock(&c->lock);
		return -ENOTCONN;
	}
	err = exchange(c, type, req, reqlen, rep, replen, fds, nfds);
	if (err == -ECONNRESET) {
		close(c->fd);		/* the daemon is gone */
		c->fd = -1;
	} else if (err == -EPROTO || err == -ETIMEDOUT) {
		/* The stream is out of step: never use it again, but keep it
		 * open. Closing it would tell the daemon we died, and it
		 * would reclaim the slots our handles are still using. */
		c->broken = true;
	}
	pthread_mutex_unlock(&c->lock);
	return err;
}
