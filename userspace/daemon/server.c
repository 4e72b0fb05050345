// SPDX-License-Identifier: MIT
/*
 * server.c - the daemon's event loop: accept connections, read one frame
 * at a time, validate every field (proto.h), dispatch to busmgr.c, reply
 * (with fds as SCM_RIGHTS), and notice closed connections at once.
 *
 * A client that sends anything malformed gets an error reply and its
 * connection closed; nothing it sends can stop the loop, and a client that
 * does not read its replies is dropped rather than waited for.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "shmbusd.h"

struct conn {
	struct conn *next;
	int fd;
	struct peer peer;
	bool hello;
	bool rdonly;
	unsigned perms;
	struct dbus *bus;
	uint64_t kmod_cookie;	/* its name in death records */
};

static struct conn *conns;
static uint32_t next_conn_id = 1;
static int epfd = -1, sigfd = -1, tfd = -1, listen_fd = -1;
static bool listen_paused;	/* out of fds: stop accepting for a while */
static bool stopping;
static int64_t timer_when = INT64_MAX;	/* armed for, INT64_MAX = off */

/* epoll data: listener, signals, timer, or a connection pointer */
#define TAG_LISTEN	((void *)1)
#define TAG_SIGNAL	((void *)2)
#define TAG_TIMER	((void *)3)
#define TAG_KMOD	((void *)4)

/* Arm the one-shot timer for CLOCK_MONOTONIC time @when (INT64_MAX: off). */
static void timer_at(int64_t when)
{
	struct itimerspec its = { 0 };

	if (when == timer_when)
		return;
	if (when != INT64_MAX) {
		/* 0 would disarm it: the earliest time is 1 ns */
		when = MAX(when, 1);
		its.it_value.tv_sec = when / NSEC_PER_SEC;
		its.it_value.tv_nsec = when % NSEC_PER_SEC;
	}
	timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
	timer_when = when;
}

/* The periodic work: reclamation, deliveries. Returns when to come back. */
static int64_t tick(void)
{
	int64_t now = now_ns(), next = deliver_tick(now);

	if (reclaim_tick())
		next = MIN(next, now + 2 * NSEC_PER_MSEC);
	return next;
}

static void conn_close(struct conn *c)
{
	struct conn **pp;

	for (pp = &conns; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	log_debug("connection %u (pid %d) closed", c->peer.conn_id,
		  c->peer.pid);
	/* On shutdown the clients live on and keep their slots: the arena
	 * is theirs until they exit. */
	if (!stopping)
		conn_gone(c->peer.conn_id);
	free(c);
	if (listen_paused) {
		/* an fd came free: accept again */
		struct epoll_event ev = { .events = EPOLLIN,
					  .data.ptr = TAG_LISTEN };

		if (epoll_ctl(epfd, EPOLL_CTL_ADD, listen_fd, &ev) == 0)
			listen_paused = false;
	}
}

/* The module's death records: each closes its connection, as its EOF
 * would (whichever comes second finds nothing left to do). Called after
 * an epoll batch, never inside one: the batch may still hold an event
 * of a connection this frees. */
static void kmod_deaths(void)
{
	uint64_t cookies[32];
	uint32_t pids[32];
	int n;

	while ((n = kmod_read(cookies, pids, 32)) > 0) {
		for (int i = 0; i < n; i++) {
			struct conn *c;

			for (c = conns; c; c = c->next)
				if (c->kmod_cookie == cookies[i])
					break;
			/* its EOF may have come first: nothing left to do */
			log_debug("kernel module: pid %u died (%s)", pids[i],
				  c ? "closing its connection" :
				      "connection already closed");
			if (c)
				conn_close(c);
		}
	}
	if (n < 0)
		log_warn("kernel module: read: %s", strerror(-n));
}

static void accept_all(int lfd)
{
	for (;;) {
		struct ucred cr;
		socklen_t len = sizeof(cr);
		struct epoll_event ev = { .events = EPOLLIN };
		struct conn *c;
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE) {
				/* level-triggered: the pending connection would
				 * wake us for ever; listen again once a
				 * connection closes */
				log_warn("accept: %s; not accepting until a "
					 "connection closes", strerror(errno));
				epoll_ctl(epfd, EPOLL_CTL_DEL, lfd, NULL);
				listen_paused = true;
			} else if (errno != EAGAIN && errno != EINTR) {
				log_warn("accept: %s", strerror(errno));
			}
			return;
		}
		c = calloc(1, sizeof(*c));
		if (!c || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0) {
			log_warn("new connection: %s", c ? strerror(errno)
							   : "out of memory");
			free(c);
			close(fd);
			continue;
		}
		c->fd = fd;
		c->kmod_cookie = kmod_cookie();
		c->peer.conn_id = next_conn_id++;
		if (!next_conn_id)
			next_conn_id = 1;
		c->peer.pid = cr.pid;
		c->peer.uid = cr.uid;
		c->peer.gid = cr.gid;
		c->peer.start_time = pid_start_time(cr.pid);
		len = sizeof(c->peer.groups);
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, c->peer.groups,
			       &len) == 0)
			c->peer.ngroups = len / sizeof(gid_t);
		ev.data.ptr = c;
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			free(c);
			continue;
		}
		c->next = conns;
		conns = c;
		log_debug("connection %u from pid %d uid %u", c->peer.conn_id,
			  cr.pid, cr.uid);
	}
}

/* Send a reply; false if the connection must be dropped. */
static bool reply(struct conn *c, const struct sbc_hdr *req, int status,
		  const void *body, size_t blen, const int *fds, unsigned nfds)
{
	union {
		struct sbc_hdr h;
		uint8_t b[SBC_FRAME_MAX];
	} out;
	union {
		struct cmsghdr align;
		uint8_t b[CMSG_SPACE(sizeof(int) * SBC_MAX_FDS)];
	} cbuf;
	struct iovec iov = { .iov_base = out.b };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (status)
		blen = nfds = 0;
	memset(&out.h, 0, sizeof(out.h));
	out.h.magic = SBC_MAGIC;
	out.h.version = SBC_VERSION;
	out.h.type = req ? req->type : 0;
	out.h.seq = req ? req->seq : 0;
	out.h.status = status;
	out.h.nfds = nfds;
	out.h.len = sizeof(out.h) + blen;
	if (blen)
		memcpy(out.b + sizeof(out.h), body, blen);
	iov.iov_len = out.h.len;
	if (nfds) {
		struct cmsghdr *cm;

		memset(cbuf.b, 0, sizeof(cbuf.b));
		mh.msg_control = cbuf.b;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
	}
	if (sendmsg(c->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) !=
	    (ssize_t)out.h.len) {
		log_info("connection %u (pid %d): reply not sent (%s); dropping",
			 c->peer.conn_id, c->peer.pid, strerror(errno));
		return false;
	}
	return true;
}

/*
 * Common checks of a request that names a queue of the connection's bus:
 * a bad name is a protocol error, the rest are plain refusals.
 */
static int queue_request_ok(const struct conn *c, const char *name,
			    bool *fatal)
{
	if (proto_name_valid(name)) {
		*fatal = true;
		return -EINVAL;
	}
	if (!c->bus)
		return -EBADFD;
	if (c->rdonly)
		return -EPERM;
	return 0;
}

/*
 * Handle one validated request. Returns the status; fills the reply body
 * and fds. *fatal says the connection must close after the reply.
 */
static int dispatch(struct conn *c, const struct sbc_hdr *h, const void *body,
		    void *rep, size_t *replen, int **fds, unsigned *nfds,
		    bool *fatal)
{
	*replen = sbc_rep_body_size(h->type);
	if (!c->hello && h->type != SBC_HELLO) {
		*fatal = true;
		return -EPROTO;
	}
	switch (h->type) {
	case SBC_HELLO: {
		const struct sbc_hello *q = body;
		struct sbc_hello_reply *r = rep;

		if (c->hello) {
			*fatal = true;
			return -EPROTO;
		}
		if (q->version_min > SBC_VERSION || q->version_max < SBC_VERSION ||
		    q->version_min > q->version_max) {
			*fatal = true;
			return -EPROTONOSUPPORT;
		}
		c->hello = true;
		r->version = SBC_VERSION;
		r->layout_version = SHMBUS_LAYOUT_VERSION;
		return 0;
	}
	case SBC_BUS_OPEN: {
		const struct sbc_bus_open *q = body;
		struct sbc_bus_open_reply *r = rep;
		bool created;
		int err;

		if (c->bus || proto_name_valid(q->name) ||
		    (q->flags & ~SBC_OPEN__ALL) || q->__pad ||
		    q->nr_pools > SHMBUS_MAX_POOLS ||
		    !proto_all_zero(&q->pools[q->nr_pools],
				    (SHMBUS_MAX_POOLS - q->nr_pools) *
				    sizeof(q->pools[0]))) {
			*fatal = true;
			return -EINVAL;
		}
		err = bus_open(q, &c->peer, &c->bus, &created);
		if (err)
			return err;
		c->rdonly = q->flags & SBC_OPEN_RDONLY;
		c->perms = bus_perms(c->bus, &c->peer);
		r->arena_size = c->bus->arena.size;
		r->created = created;
		r->rdonly = c->rdonly;
		r->kmod_cookie = c->rdonly ? 0 : c->kmod_cookie;
		*fds = c->rdonly ? &c->bus->ro_fd : &c->bus->fd;
		*nfds = 1;
		return 0;
	}
	case SBC_QUEUE_DECLARE: {
		const struct sbc_queue_declare *q = body;
		int err = queue_request_ok(c, q->name, fatal);

		return err ? err : queue_declare(c->bus, &c->peer, q, rep);
	}
	case SBC_QUEUE_DELETE: {
		const struct sbc_queue_delete *q = body;
		int err = queue_request_ok(c, q->name, fatal);

		if (!err)
			err = queue_delete(c->bus, &c->peer, q);
		if (!err)
			server_want_tick();
		return err;
	}
	case SBC_ATTACH: {
		const struct sbc_attach *q = body;
		int err = queue_request_ok(c, q->name, fatal);

		if (!err && q->__pad) {
			*fatal = true;
			err = -EINVAL;
		}
		if (!err)
			err = slot_attach(c->bus, &c->peer, c->perms, q, rep,
					  fds, nfds);
		if (!err)
			server_want_tick();	/* leases and TTLs to watch */
		return err;
	}
	case SBC_DETACH:
		if (!c->bus)
			return -EBADFD;
		return slot_detach(c->bus, &c->peer, body);
	case SBC_DISPOSE:
		if (!c->bus)
			return -EBADFD;
		if (c->rdonly)
			return -EPERM;
		return dispose_request(c->bus, &c->peer, body);
	case SBC_SUBSCRIBE: {
		const struct sbc_subscribe *q = body;
		int err;

		if (proto_pattern_valid(q->pattern) ||
		    (!proto_all_zero(q->group, sizeof(q->group)) &&
		     proto_name_valid(q->group)) ||
		    (q->flags & ~SBC_SUB__ALL) || q->__pad ||
		    q->max_len > SHMBUS_RING_MAX_CAP ||
		    q->max_consumers > SHMBUS_MAX_SEATS) {
			*fatal = true;
			return -EINVAL;
		}
		if (!c->bus)
			return -EBADFD;
		if (c->rdonly)
			return -EPERM;
		err = subscribe(c->bus, &c->peer, c->perms, q, rep, fds, nfds);
		if (!err)
			server_want_tick();
		return err;
	}
	case SBC_UNSUBSCRIBE: {
		const struct sbc_unsubscribe *q = body;

		if (proto_pattern_valid(q->pattern) ||
		    proto_name_valid(q->group)) {
			*fatal = true;
			return -EINVAL;
		}
		if (!c->bus)
			return -EBADFD;
		if (c->rdonly)
			return -EPERM;
		if (!(c->perms & 4))
			return -EACCES;
		return unsubscribe(c->bus, &c->peer, q);
	}
	case SBC_SEATS:
		if (!c->bus)
			return -EBADFD;
		if (c->rdonly)
			return -EPERM;
		return seats_request(c->bus, c->perms, body, rep, fds, nfds);
	}
	*fatal = true;
	return -EPROTO;
}

/* Read and answer one frame. Returns false when @c was closed. */
static bool conn_read(struct conn *c)
{
	union {
		struct sbc_hdr h;
		uint8_t b[SBC_FRAME_MAX];
	} in;
	union {
		struct cmsghdr align;
		uint8_t b[CMSG_SPACE(sizeof(int) * 8)];
	} cbuf;
	uint8_t rep[SBC_FRAME_MAX];
	struct iovec iov = { .iov_base = in.b, .iov_len = sizeof(in.b) };
	struct msghdr mh = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = cbuf.b, .msg_controllen = sizeof(cbuf.b),
	};
	const struct sbc_hdr *h = NULL;
	size_t replen = 0;
	unsigned nfds = 0;
	int *fds = NULL, status;
	bool fatal = false;
	long want;
	ssize_t n;

	n = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return true;
	if (n <= 0) {
		conn_close(c);
		return false;
	}
	memset(rep, 0, sizeof(rep));
	/* clients must not send fds: close any that came */
	if (proto_take_fds(&mh, NULL, 0, NULL) || (mh.msg_flags & MSG_CTRUNC)) {
		status = -EPROTO;
		fatal = true;
		log_info("connection %u (pid %d): sent file descriptors",
			 c->peer.conn_id, c->peer.pid);
		goto out;
	}
	if (mh.msg_flags & MSG_TRUNC) {
		status = -EMSGSIZE;
		fatal = true;
		log_info("connection %u (pid %d): frame larger than %u bytes",
			 c->peer.conn_id, c->peer.pid, SBC_FRAME_MAX);
		goto out;
	}
	if ((size_t)n < sizeof(in.h)) {
		status = -EPROTO;
		fatal = true;
		log_info("connection %u (pid %d): truncated frame (%zd bytes)",
			 c->peer.conn_id, c->peer.pid, n);
		goto out;
	}
	h = &in.h;
	want = sbc_req_body_size(h->type);
	if (h->magic != SBC_MAGIC || h->len != (uint32_t)n || h->status ||
	    h->nfds || want < 0 || (size_t)n != sizeof(in.h) + (size_t)want) {
		status = -EPROTO;
		fatal = true;
		log_info("connection %u (pid %d): malformed frame (type %u, "
			 "%zd bytes)", c->peer.conn_id, c->peer.pid, h->type, n);
		if (want < 0)
			h = NULL;	/* unknown type: do not echo it */
		goto out;
	}
	if (h->version != SBC_VERSION) {
		status = -EPROTONOSUPPORT;
		fatal = true;
		goto out;
	}
	status = dispatch(c, h, in.b + sizeof(in.h), rep, &replen, &fds, &nfds,
			  &fatal);
	if (fatal)
		log_info("connection %u (pid %d): invalid request (type %u): %s",
			 c->peer.conn_id, c->peer.pid, h->type, strerror(-status));
out:
	if (!reply(c, h, status, rep, replen, fds, nfds) || fatal) {
		conn_close(c);
		return false;
	}
	return true;
}

void server_want_tick(void)
{
	timer_at(now_ns());
}

void server_stop(void)
{
	stopping = true;
}

int server_run(int lfd)
{
	struct epoll_event ev = { .events = EPOLLIN };
	sigset_t mask;

	epfd = epoll_create1(EPOLL_CLOEXEC);
	tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (epfd < 0 || tfd < 0 || sigfd < 0) {
		log_err("event loop setup: %s", strerror(errno));
		return -1;
	}
	listen_fd = lfd;
	ev.data.ptr = TAG_LISTEN;
	epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
	ev.data.ptr = TAG_SIGNAL;
	epoll_ctl(epfd, EPOLL_CTL_ADD, sigfd, &ev);
	ev.data.ptr = TAG_TIMER;
	epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &ev);
	if (kmod_fd() >= 0) {
		ev.data.ptr = TAG_KMOD;
		epoll_ctl(epfd, EPOLL_CTL_ADD, kmod_fd(), &ev);
	}

	while (!stopping) {
		struct epoll_event evs[64];
		int n = epoll_wait(epfd, evs, 64, -1);
		bool deaths = false;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_err("epoll_wait: %s", strerror(errno));
			return -1;
		}
		for (int i = 0; i < n; i++) {
			void *tag = evs[i].data.ptr;

			if (tag == TAG_LISTEN) {
				accept_all(lfd);
			} else if (tag == TAG_SIGNAL) {
				struct signalfd_siginfo si;

				while (read(sigfd, &si, sizeof(si)) == sizeof(si)) {
					log_info("signal %u: shutting down",
						 si.ssi_signo);
					stopping = true;
				}
			} else if (tag == TAG_TIMER) {
				uint64_t ticks;

				if (read(tfd, &ticks, sizeof(ticks)) < 0 &&
				    errno != EAGAIN)
					log_warn("timerfd: %s", strerror(errno));
				timer_when = INT64_MAX;	/* it fired */
				timer_at(tick());
			} else if (tag == TAG_KMOD) {
				deaths = true;
			} else {
				conn_read(tag);
			}
		}
		if (deaths)
			kmod_deaths();
	}
	while (conns)
		conn_close(conns);
	close(epfd);
	close(tfd);
	close(sigfd);
	return 0;
}
