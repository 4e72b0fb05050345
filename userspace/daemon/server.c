// SPDX-License-Identifier: MIT
/*
 * server.c - the daemon's event loop: accept connections, read one frame
 * at a time, check its header (proto.h), hand the request to dispatch.c,
 * reply (with fds as SCM_RIGHTS), notice closed connections at once, and
 * dead processes through a pidfd of each connection's process (and the
 * kernel module's death records, when there is one), and run the periodic
 * work of every bus when it is due.
 *
 * A connection belongs to the process that connected: when that process
 * exits, the connection is closed and everything its handles held is
 * released, even if a child it forked (without exec) still holds the
 * socket. The pidfd, taken when the connection has opened a bus (a
 * pending one holds nothing, and costs one fd), comes from SO_PEERPIDFD
 * (the process at connect time, no pid reuse race); on kernels without
 * it from pidfd_open() of the peer's pid, checked against the start time
 * read at accept.
 *
 * A client that sends anything malformed gets an error reply and its
 * connection closed; nothing it sends can stop the loop, and a client that
 * does not read its replies is dropped rather than waited for.
 *
 * Connections in their handshake (accepted, no bus opened yet: HELLO and
 * BUS_OPEN) are "pending", kept in accept order. One that has not opened
 * a bus within --handshake-timeout is closed. The daemon never stops
 * accepting for them: each time the listening socket is readable it
 * accepts until the backlog is empty, so the listen backlog cannot be
 * held by anyone. A uid may have at most --max-pending-uid pending
 * connections (root and the daemon's own uid: no such limit); one more
 * is closed as soon as it is accepted. At most --max-pending exist in
 * all: at that limit, the oldest pending connection of the uid that has
 * the most of them (the new one counted, which wins a tie) is closed to
 * make room, so one uid's many connections push out its own, not another
 * uid's handshake. So idle connections hold neither the backlog nor more
 * than --max-pending of the daemon's fds, and those for at most the
 * timeout.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "shmbusd.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD	77	/* Linux 6.5 */
#endif

struct conn {
	struct conn *next;
	int fd;
	bool charged;		/* counts against its uid's conns quota */
	int pidfd;		/* the connecting process, or -1 */
	struct session s;
	bool pending;		/* no bus opened yet: in the pending FIFO */
	bool ghost;		/* a dead daemon's connection: no socket,
				 * only a pidfd (server_ghost()) */
	bool doomed;		/* to be closed after this epoll batch */
	int64_t since;		/* accepted at (CLOCK_MONOTONIC) */
	struct conn *pnext;	/* pending FIFO, oldest first */
};

/* Connections over their uid's quota we still keep, to say why. */
#define REFUSED_MAX	8

static struct daemon *dmn;	/* server_run()'s */
static struct conn *conns;
static struct conn *pend_head, *pend_tail;	/* pending, in accept order */
static unsigned nr_pending, nr_doomed;
static uint32_t next_conn_id = 1;
static int epfd = -1, sigfd = -1, tfd = -1, listen_fd = -1;
static bool listen_paused;	/* out of fds: stop accepting for a while */
static bool listening;		/* listen_fd is in the epoll set */
static bool stopping;
static bool members_changed;	/* a connection bound or closed: save the
				 * registry after this batch */
static int64_t timer_when = INT64_MAX;	/* armed for, INT64_MAX = off */

/* epoll data: listener, signals, timer, or a connection pointer */
#define TAG_LISTEN	((void *)1)
#define TAG_SIGNAL	((void *)2)
#define TAG_TIMER	((void *)3)
#define TAG_KMOD	((void *)4)
#define TAG_DURABLE	((void *)5)
/* a connection's pidfd: its conn_id under this bit (a pointer never has
 * it), so that an event still in a batch never names a freed conn */
#define TAG_PIDFD	(1ULL << 63)

/* The epoll set, made by whichever needs it first: server_run(), or an
 * adoption at start that watches the processes of ghost connections. */
static int loop_fd(void)
{
	if (epfd < 0)
		epfd = epoll_create1(EPOLL_CLOEXEC);
	return epfd;
}

/* A fresh conn_id (never 0). */
static uint32_t conn_id_next(void)
{
	uint32_t id = next_conn_id++;

	if (!next_conn_id)
		next_conn_id = 1;
	return id;
}

/* A connection's token: random, never 0. */
static uint64_t token_new(void)
{
	static uint64_t fallback;
	uint64_t t = 0;

	if (getrandom(&t, sizeof(t), GRND_NONBLOCK) != sizeof(t))
		t = (uint64_t)now_ns() * 0x9e3779b97f4a7c15ULL ^
		    ((uint64_t)getpid() << 32) ^ ++fallback;
	return t ? t : 1;
}

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

/* Accept again, or stop, as listen_paused says. */
static void listen_update(void)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = TAG_LISTEN };
	bool want = !listen_paused;

	if (want == listening)
		return;
	if (epoll_ctl(epfd, want ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, listen_fd,
		      want ? &ev : NULL) == 0)
		listening = want;
}

/* Pending connections per uid: one entry per uid that has any. */
struct upend {
	uid_t uid;
	unsigned n;
};
static struct upend *upend;
static unsigned nr_upend, upend_cap;

static struct upend *upend_find(uid_t uid)
{
	for (unsigned i = 0; i < nr_upend; i++)
		if (upend[i].uid == uid)
			return &upend[i];
	return NULL;
}

static unsigned upend_count(uid_t uid)
{
	struct upend *u = upend_find(uid);

	return u ? u->n : 0;
}

static bool upend_add(uid_t uid)
{
	struct upend *u = upend_find(uid);

	if (!u) {
		if (nr_upend == upend_cap) {
			unsigned cap = upend_cap ? 2 * upend_cap : 16;
			struct upend *p = realloc(upend, cap * sizeof(*p));

			if (!p)
				return false;
			upend = p;
			upend_cap = cap;
		}
		u = &upend[nr_upend++];
		u->uid = uid;
		u->n = 0;
	}
	u->n++;
	return true;
}

static void upend_del(uid_t uid)
{
	struct upend *u = upend_find(uid);

	if (u && !--u->n)
		*u = upend[--nr_upend];
}

static void pending_del(struct conn *c)
{
	struct conn **pp, *prev = NULL;

	if (!c->pending)
		return;
	for (pp = &pend_head; *pp; prev = *pp, pp = &(*pp)->pnext) {
		if (*pp == c) {
			*pp = c->pnext;
			if (pend_tail == c)
				pend_tail = prev;
			break;
		}
	}
	c->pending = false;
	c->pnext = NULL;
	nr_pending--;
	upend_del(c->s.peer.uid);
}

/* Close @c once the current epoll batch is done (the batch may still
 * hold an event of it); from now on it is neither read nor pending. */
static void conn_doom(struct conn *c, const char *why)
{
	if (c->doomed)
		return;
	log_info("connection %u (pid %d uid %u): %s; closing",
		 c->s.peer.conn_id, c->s.peer.pid, c->s.peer.uid, why);
	pending_del(c);
	c->doomed = true;
	nr_doomed++;
}

/* Pending connections past the handshake timeout are doomed. Returns
 * when to come back. */
static int64_t pending_tick(int64_t now)
{
	int64_t next = INT64_MAX;

	while (pend_head && now >= pend_head->since + dmn->handshake_ns)
		conn_doom(pend_head, "no bus opened within the handshake "
			  "timeout");
	if (pend_head)
		next = pend_head->since + dmn->handshake_ns;
	return next;
}

/* The periodic work of every bus: deliveries, then what waits for a
 * grace period; and handshakes that took too long. Returns when to come
 * back. */
static int64_t tick(void)
{
	int64_t now = now_ns(), next = pending_tick(now);

	for (struct dbus *b = dmn->buses; b; b = b->next) {
		next = MIN(next, deliver_tick(b, now));
		next = MIN(next, durable_tick(b, now));
		next = MIN(next, pools_tick(dmn, b, now));
		/* at most every 100 ms, while clients are attached (the
		 * tick runs every few ms then) */
		repair_tick(b, now);
		if (defer_tick(b, now))
			next = MIN(next, now + 2 * NSEC_PER_MSEC);
	}
	return next;
}

/* The supplementary groups of the peer on @fd into @p: 0, or -1 with
 * errno. More than fit inline (LDAP users) go to the heap. */
static int peer_groups(int fd, struct peer *p)
{
	socklen_t len = sizeof(p->groups_inline);

	p->groups = p->groups_inline;
	if (!getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, p->groups, &len)) {
		p->ngroups = len / sizeof(gid_t);
		return 0;
	}
	if (errno != ERANGE)
		return -1;
	/* len is now the size the kernel needs (NGROUPS_MAX at most) */
	p->groups = malloc(len);
	if (!p->groups ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, p->groups, &len)) {
		free(p->groups);
		p->groups = p->groups_inline;
		return -1;
	}
	p->ngroups = len / sizeof(gid_t);
	return 0;
}

static void peer_groups_free(struct peer *p)
{
	if (p->groups != p->groups_inline)
		free(p->groups);
	p->groups = p->groups_inline;
	p->ngroups = 0;
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
	pending_del(c);
	if (c->doomed)
		nr_doomed--;
	if (c->fd >= 0) {
		epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
	}
	if (c->charged)
		quota_release(c->s.peer.uid, Q_CONNS, 1);
	if (c->pidfd >= 0)
		close(c->pidfd);	/* leaves the epoll set with it */
	log_debug("connection %u (pid %d) closed", c->s.peer.conn_id,
		  c->s.peer.pid);
	/* On shutdown the clients live on and keep their slots: the arena
	 * is theirs until they exit. */
	if (!stopping)
		buses_conn_gone(dmn, c->s.peer.conn_id);
	members_changed |= c->s.bus != NULL;
	peer_groups_free(&c->s.peer);
	free(c);
	/* an fd came free: accept again */
	listen_paused = false;
	listen_update();
}

/* Close the connections doomed during the last epoll batch. */
static void close_doomed(void)
{
	struct conn *c = conns;

	while (nr_doomed && c) {
		struct conn *next = c->next;

		if (c->doomed)
			conn_close(c);
		c = next;
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
				if (c->s.kmod_cookie == cookies[i])
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

/*
 * Make room for one more pending connection, of @uid, at --max-pending:
 * close the oldest pending connection of the uid that has the most of
 * them, the new one counted (its uid wins a tie; if it has none pending,
 * all have one and the oldest goes). Its socket is closed now (the fd
 * is free for the new one, and the client sees EOF at once); its conn
 * stays, doomed, until the epoll batch ends, as the batch may hold an
 * event of it.
 */
static void pending_evict(uid_t uid)
{
	unsigned most = upend_count(uid) + 1;
	uid_t victim = uid;
	struct conn *c;

	for (unsigned i = 0; i < nr_upend; i++) {
		if (upend[i].n > most) {
			most = upend[i].n;
			victim = upend[i].uid;
		}
	}
	for (c = pend_head; c && c->s.peer.uid != victim; c = c->pnext)
		;
	if (!c)
		c = pend_head;
	if (!c)
		return;
	conn_doom(c, "handshake not done, and the pending connections are "
		  "at --max-pending (its uid has the most of them)");
	epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	if (c->charged) {
		quota_release(c->s.peer.uid, Q_CONNS, 1);
		c->charged = false;
	}
}

/*
 * Charge new connection @c to its uid. Over quota, it is kept only to
 * answer its first frame with -EDQUOT and the reason (the client sees
 * why, not a bare EOF), at most REFUSED_MAX of them per uid; beyond
 * that, false: close it at once.
 */
static bool conn_charge(struct conn *c)
{
	unsigned refused = 0;

	quota_why_clear();
	if (!quota_charge(c->s.peer.uid, c->s.peer.pid, Q_CONNS, 1)) {
		c->charged = true;
		return true;
	}
	for (struct conn *o = conns; o; o = o->next)
		refused += o->s.refused && o->s.peer.uid == c->s.peer.uid;
	c->s.refused = true;
	return refused < REFUSED_MAX;
}

/* The connections whose process exited (@ids, from their pidfds' events
 * of one batch): each is closed, as its EOF would close it. Called after
 * the batch, as kmod_deaths(). */
static void pidfd_deaths(const uint32_t *ids, int n)
{
	for (int i = 0; i < n; i++) {
		struct conn *c;

		for (c = conns; c; c = c->next)
			if (c->s.peer.conn_id == ids[i])
				break;
		if (!c)
			continue;	/* its EOF came first */
		log_debug("connection %u: pid %d exited; closing it (a child "
			  "may still hold the socket)", c->s.peer.conn_id,
			  c->s.peer.pid);
		conn_close(c);
	}
}

/*
 * A pidfd of @c's process, watched by the loop: SO_PEERPIDFD, else
 * pidfd_open() of the pid if that pid still has the start time read at
 * accept. Without one (an old kernel), the connection ends at its EOF
 * only.
 */
static void pidfd_watch(struct conn *c)
{
	struct epoll_event ev = { .events = EPOLLIN };
	socklen_t len = sizeof(c->pidfd);
	int fd;

	c->pidfd = -1;
	if (getsockopt(c->fd, SOL_SOCKET, SO_PEERPIDFD, &fd, &len) < 0) {
		fd = (int)syscall(SYS_pidfd_open, c->s.peer.pid, 0);
		if (fd >= 0 && (!c->s.peer.start_time ||
				pid_start_time(c->s.peer.pid) !=
				c->s.peer.start_time)) {
			close(fd);	/* gone, and maybe reused */
			fd = -1;
		}
		if (fd < 0) {
			log_debug("connection %u: no pidfd for pid %d: %s",
				  c->s.peer.conn_id, c->s.peer.pid,
				  strerror(errno));
			return;
		}
	}
	ev.data.u64 = TAG_PIDFD | c->s.peer.conn_id;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		log_warn("connection %u: watching pid %d: %s",
			 c->s.peer.conn_id, c->s.peer.pid, strerror(errno));
		close(fd);
		return;
	}
	c->pidfd = fd;
}

/* ---- ghosts: the connections of a daemon that died -------------------- */

/* The ghost of @token on bus @b: a token names one connection of one bus
 * (a member of two buses knows a token of each, and can write either into
 * the other's slots). */
static struct conn *ghost_find(const struct dbus *b, uint64_t token)
{
	for (struct conn *c = conns; c; c = c->next)
		if (c->ghost && c->s.bus == b && c->s.peer.token == token)
			return c;
	return NULL;
}

/* Is @pid (pinned by a pidfd the caller holds) the process that started at
 * @start_time (0: unknown, any live process of that pid)? */
static bool same_process(pid_t pid, uint64_t start_time)
{
	uint64_t now = pid_start_time(pid);

	return now && (!start_time || now == start_time);
}

/* The last bus whose ghosts went over its owner's quota (logged once). */
static const struct dbus *ghost_warned;

uint32_t server_ghost(struct dbus *b, uint64_t token, pid_t pid,
		      uint64_t start_time)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct conn *c = ghost_find(b, token);
	int fd;

	if (c)
		return c->s.peer.pid == pid && c->s.peer.start_time == start_time
		       ? c->s.peer.conn_id : 0;
	if (!token || pid <= 0)
		return 0;
	/* the pidfd first: from then on that pid is this process, and its
	 * start time tells whether it is the one the slot names */
	fd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (fd < 0)
		return 0;
	if (!same_process(pid, start_time) || loop_fd() < 0) {
		close(fd);
		return 0;
	}
	/*
	 * A ghost holds a pidfd, and the slots it is made from are the
	 * arena's, which every member writes: one token per slot, each
	 * naming some live process, would be a pidfd per slot of every
	 * bus. Each is charged to the bus owner's conns quota, as the
	 * connections its members make are to theirs; over it, the slot is
	 * released as a dead process's.
	 */
	quota_why_clear();
	if (quota_charge(b->owner_uid, pid, Q_CONNS, 1)) {
		if (ghost_warned != b)
			log_warn("bus %u:%s: the slots of pid %d and of more "
				 "connections are released: %s", b->owner_uid,
				 b->name, pid, quota_why());
		ghost_warned = b;
		close(fd);
		return 0;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		log_err("out of memory for the connection of pid %d", pid);
		quota_release(b->owner_uid, Q_CONNS, 1);
		close(fd);
		return 0;
	}
	c->fd = -1;
	c->ghost = true;
	c->charged = true;
	c->s.peer.uid = b->owner_uid;	/* whom it is charged to */
	c->s.peer.gid = b->owner_gid;
	c->s.peer.conn_id = conn_id_next();
	c->s.peer.token = token;
	c->s.peer.pid = pid;
	c->s.peer.start_time = start_time;
	c->s.peer.groups = c->s.peer.groups_inline;
	c->s.bus = b;
	ev.data.u64 = TAG_PIDFD | c->s.peer.conn_id;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		log_warn("watching pid %d: %s", pid, strerror(errno));
		quota_release(b->owner_uid, Q_CONNS, 1);
		close(fd);
		free(c);
		return 0;
	}
	c->pidfd = fd;
	c->next = conns;
	conns = c;
	members_changed = true;
	log_debug("connection %u: pid %d, of the previous daemon, until it "
		  "rejoins or exits", c->s.peer.conn_id, pid);
	return c->s.peer.conn_id;
}

void server_each_member(member_fn *fn, void *ctx)
{
	for (struct conn *c = conns; c; c = c->next)
		if (c->s.bus && !c->doomed)
			fn(ctx, c->s.bus, c->s.peer.pid, c->s.peer.start_time);
}

unsigned server_bus_members(const struct dbus *b, pid_t *pids, unsigned cap)
{
	unsigned n = 0;

	for (struct conn *c = conns; c; c = c->next) {
		if (c->s.bus != b || c->doomed)
			continue;
		if (n < cap)
			pids[n] = c->s.peer.pid;
		n++;
	}
	return n;
}

void server_bus_evict(const struct dbus *b, const char *why)
{
	for (struct conn *c = conns; c; c = c->next) {
		if (c->s.bus != b)
			continue;
		conn_doom(c, why);
		c->s.bus = NULL;
		members_changed = true;
	}
}

uint32_t server_ghost_take(const struct dbus *b, uint64_t token,
			   const struct peer *p)
{
	struct conn *c = ghost_find(b, token), **pp;
	uint32_t id;

	if (!c)
		return 0;
	if (c->s.peer.pid != p->pid || !p->start_time ||
	    (c->s.peer.start_time && c->s.peer.start_time != p->start_time)) {
		log_info("pid %d uid %u names the connection of pid %d of the "
			 "previous daemon: not its own; ignored", p->pid,
			 p->uid, c->s.peer.pid);
		return 0;
	}
	for (pp = &conns; *pp != c; pp = &(*pp)->next)
		;
	*pp = c->next;
	id = c->s.peer.conn_id;
	if (c->charged)
		quota_release(c->s.peer.uid, Q_CONNS, 1);
	close(c->pidfd);	/* leaves the epoll set; an event of it
				 * still in this batch finds no conn */
	free(c);
	return id;
}

/* Accepted per readiness of the listening socket at most; more wait for
 * the next epoll_wait(), which returns at once (level-triggered), after
 * the other events and the doomed connections' close. */
#define ACCEPT_BATCH	1024

/*
 * Accept until the backlog is empty (or ACCEPT_BATCH): never leave
 * connections queued in the kernel for a flood to fill the backlog with.
 */
static void accept_all(int lfd)
{
	for (unsigned k = 0; k < ACCEPT_BATCH; k++) {
		struct ucred cr;
		socklen_t len = sizeof(cr);
		struct epoll_event ev = { .events = EPOLLIN };
		struct conn *c;
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE) {
				/* level-triggered: the queued connection
				 * would wake us for ever; listen again once
				 * a connection closes */
				log_warn("accept: %s; not accepting until a "
					 "connection closes", strerror(errno));
				listen_paused = true;
				listen_update();
			} else if (errno != EAGAIN && errno != EINTR &&
				   errno != ECONNABORTED) {
				log_warn("accept: %s", strerror(errno));
			}
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0) {
			log_warn("new connection: %s", strerror(errno));
			close(fd);
			continue;
		}
		/* over its uid's pending limit: closed at once, before it
		 * costs anything but this accept */
		if (!quota_exempt(cr.uid) &&
		    upend_count(cr.uid) >= dmn->max_pending_uid) {
			close(fd);
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (!c || !upend_add(cr.uid)) {
			log_warn("new connection: out of memory");
			free(c);
			close(fd);
			continue;
		}
		upend_del(cr.uid);	/* counted again below, when pending */
		c->fd = fd;
		c->pidfd = -1;
		c->s.kmod_cookie = kmod_cookie();
		c->s.peer.conn_id = conn_id_next();
		c->s.peer.token = token_new();
		c->s.peer.pid = cr.pid;
		c->s.peer.uid = cr.uid;
		c->s.peer.gid = cr.gid;
		c->s.peer.start_time = pid_start_time(cr.pid);
		if (peer_groups(fd, &c->s.peer)) {
			/* without its groups a group rule could not refuse
			 * it: refuse the connection instead */
			log_warn("connection from pid %d uid %u: its groups: %s",
				 cr.pid, cr.uid, strerror(errno));
			close(fd);
			free(c);
			continue;
		}
		if (!conn_charge(c)) {
			peer_groups_free(&c->s.peer);
			close(fd);
			free(c);
			continue;
		}
		if (nr_pending >= dmn->max_pending)
			pending_evict(cr.uid);
		ev.data.ptr = c;
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			if (c->charged)
				quota_release(cr.uid, Q_CONNS, 1);
			peer_groups_free(&c->s.peer);
			close(fd);
			free(c);
			continue;
		}
		c->next = conns;
		conns = c;
		c->since = now_ns();
		c->pending = true;
		if (pend_tail)
			pend_tail->pnext = c;
		else
			pend_head = c;
		pend_tail = c;
		nr_pending++;
		upend_add(cr.uid);	/* cannot fail: room was made above */
		timer_at(MIN(timer_when, c->since + dmn->handshake_ns));
		log_debug("connection %u from pid %d uid %u", c->s.peer.conn_id,
			  cr.pid, cr.uid);
	}
}

/* Send a reply on @fd; false if the connection must be dropped. */
static bool reply(int fd, const struct session *s, const struct sbc_hdr *req,
		  int status, const void *body, size_t blen, const int *fds,
		  unsigned nfds)
{
	union {
		struct sbc_hdr h;
		uint8_t b[SBC_FRAME_MAX];
	} out;
	union proto_cbuf cbuf;
	struct iovec iov = { .iov_base = out.b };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (status) {
		/* a refusal carries its reason, if any (proto.h) */
		blen = body && *(const char *)body ?
		       strnlen(body, SBC_REASON_MAX - 1) + 1 : 0;
		nfds = 0;
	}
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
	proto_give_fds(&mh, &cbuf, fds, nfds);
	if (sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) !=
	    (ssize_t)out.h.len) {
		log_info("connection %u (pid %d): reply not sent (%s); dropping",
			 s->peer.conn_id, s->peer.pid, strerror(errno));
		return false;
	}
	return true;
}

/*
 * Is the frame of @n bytes in @h, received with @mh, a well-formed
 * request? 0, or the status of the protocol error (logged; *echo false
 * when the type is unknown and must not be echoed).
 */
static int frame_check(const struct session *s, struct msghdr *mh,
		       const struct sbc_hdr *h, ssize_t n, unsigned nfds,
		       bool *echo)
{
	long want;

	if (mh->msg_flags & MSG_CTRUNC) {
		log_info("connection %u (pid %d): sent more than %u file "
			 "descriptors", s->peer.conn_id, s->peer.pid,
			 SBC_MAX_FDS);
		return -EPROTO;
	}
	if (mh->msg_flags & MSG_TRUNC) {
		log_info("connection %u (pid %d): frame larger than %u bytes",
			 s->peer.conn_id, s->peer.pid, SBC_FRAME_MAX);
		return -EMSGSIZE;
	}
	if ((size_t)n < sizeof(*h)) {
		log_info("connection %u (pid %d): truncated frame (%zd bytes)",
			 s->peer.conn_id, s->peer.pid, n);
		return -EPROTO;
	}
	/* fds only with the types that carry them (proto.h) */
	if (nfds && (!request_takes_fds(h->type) ||
		     (h->nfds && h->nfds != nfds))) {
		log_info("connection %u (pid %d): sent file descriptors with "
			 "a frame of type %u", s->peer.conn_id, s->peer.pid,
			 h->type);
		return -EPROTO;
	}
	*echo = true;
	want = request_body_size(h->type);
	if (h->magic != SBC_MAGIC || h->len != (uint32_t)n || h->status ||
	    (h->nfds && h->nfds != nfds) || want < 0 ||
	    (size_t)n != sizeof(*h) + (size_t)want) {
		log_info("connection %u (pid %d): malformed frame (type %u, "
			 "%zd bytes)", s->peer.conn_id, s->peer.pid,
			 h->type, n);
		*echo = want >= 0;	/* unknown type: do not echo it */
		return -EPROTO;
	}
	if (h->version != SBC_VERSION)
		return -EPROTONOSUPPORT;
	return 0;
}

bool session_read(struct daemon *d, int fd, struct session *s)
{
	union {
		struct sbc_hdr h;
		uint8_t b[SBC_FRAME_MAX];
	} in;
	union proto_cbuf cbuf;
	int in_fds[SBC_MAX_FDS];
	unsigned nin = 0, total;
	uint8_t rep[SBC_FRAME_MAX];
	struct iovec iov = { .iov_base = in.b, .iov_len = sizeof(in.b) };
	struct msghdr mh = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = cbuf.b, .msg_controllen = sizeof(cbuf.b),
	};
	struct request r = { .d = d, .s = s, .rep = rep };
	bool echo = false;
	int status;
	ssize_t n;

	n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return true;
	if (n <= 0)
		return false;
	memset(rep, 0, sizeof(rep));
	total = proto_take_fds(&mh, in_fds, SBC_MAX_FDS, &nin);
	status = frame_check(s, &mh, &in.h, n, total, &echo);
	if (status) {
		r.fatal = true;
	} else if (s->refused) {
		/* over the conns quota: say so, close */
		status = -EDQUOT;
		req_reason(&r, "quota: conns %llu of %llu for uid %u",
			   (unsigned long long)quota_use(s->peer.uid, Q_CONNS),
			   (unsigned long long)quota_limit(Q_CONNS),
			   s->peer.uid);
		r.fatal = true;
	} else {
		r.hdr = &in.h;
		r.body = in.b + sizeof(in.h);
		r.in_fds = in_fds;
		r.in_nfds = nin;
		status = dispatch(&r);
		if (r.fatal)
			log_info("connection %u (pid %d): invalid request "
				 "(type %u): %s", s->peer.conn_id,
				 s->peer.pid, in.h.type, strerror(-status));
	}
	/* those the handler did not keep */
	for (unsigned i = 0; i < nin; i++)
		if (in_fds[i] >= 0)
			close(in_fds[i]);
	return reply(fd, s, echo ? &in.h : NULL, status,
		     status ? (const void *)r.reason : rep, r.rep_len, r.fds,
		     r.nfds) && !r.fatal;
}

/* Read and answer one frame. Returns false when @c was closed. */
static bool conn_read(struct conn *c)
{
	if (!session_read(dmn, c->fd, &c->s)) {
		conn_close(c);
		return false;
	}
	if (c->pending && c->s.bus) {
		pending_del(c);		/* handshake done */
		pidfd_watch(c);		/* from now on it may hold slots */
		members_changed = true;
	}
	return true;
}

void server_want_tick(void)
{
	timer_at(now_ns());
}

void server_want_tick_at(int64_t when)
{
	if (when < timer_when)
		timer_at(when);
}

void server_conn_evict(uint32_t conn_id, const char *why)
{
	for (struct conn *c = conns; c; c = c->next)
		if (c->s.peer.conn_id == conn_id) {
			conn_doom(c, why);	/* closed after this batch */
			return;
		}
}

void server_stop(void)
{
	stopping = true;
}

int server_run(struct daemon *d, int lfd)
{
	struct epoll_event ev = { .events = EPOLLIN };
	sigset_t mask;

	loop_fd();
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
	dmn = d;
	listen_fd = lfd;
	listen_update();
	ev.data.ptr = TAG_SIGNAL;
	epoll_ctl(epfd, EPOLL_CTL_ADD, sigfd, &ev);
	ev.data.ptr = TAG_TIMER;
	epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &ev);
	if (kmod_fd() >= 0) {
		ev.data.ptr = TAG_KMOD;
		epoll_ctl(epfd, EPOLL_CTL_ADD, kmod_fd(), &ev);
	}
	if (durable_fd() >= 0) {
		ev.data.ptr = TAG_DURABLE;
		epoll_ctl(epfd, EPOLL_CTL_ADD, durable_fd(), &ev);
	}
	/* a first tick: what the start left to do (buses recovered or
	 * adopted before the timer existed) is looked at before any
	 * client comes */
	timer_when = INT64_MAX;
	timer_at(now_ns());

	while (!stopping) {
		struct epoll_event evs[64];
		int n = epoll_wait(epfd, evs, 64, -1);
		uint32_t exited[64];
		bool deaths = false;
		int nexited = 0;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_err("epoll_wait: %s", strerror(errno));
			return -1;
		}
		for (int i = 0; i < n; i++) {
			void *tag = evs[i].data.ptr;

			if (evs[i].data.u64 & TAG_PIDFD) {
				exited[nexited++] = (uint32_t)evs[i].data.u64;
			} else if (tag == TAG_LISTEN) {
				accept_all(lfd);
			} else if (tag == TAG_SIGNAL) {
				struct signalfd_siginfo si;

				while (read(sigfd, &si, sizeof(si)) == sizeof(si)) {
					if (si.ssi_signo == SIGHUP) {
						log_info("SIGHUP: rereading the policy");
						daemon_policy_reload(dmn);
						continue;
					}
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
			} else if (tag == TAG_DURABLE) {
				durable_run(dmn);
			} else if (!((struct conn *)tag)->doomed) {
				conn_read(tag);
			}
		}
		close_doomed();
		if (deaths)
			kmod_deaths();
		pidfd_deaths(exited, nexited);
		if (members_changed) {
			members_changed = false;
			adopt_registry_save(dmn);
		}
	}
	while (conns)
		conn_close(conns);
	close(epfd);
	close(tfd);
	close(sigfd);
	return 0;
}
