// SPDX-License-Identifier: MIT
/*
 * rejoin.c - a bus handle outlives its daemon. A watcher thread per
 * handle waits for the control socket's hang-up; when the daemon has
 * exited (not merely closed our connection), it dials the next one
 * (starting it unless NOSTART), with backoff, and says REJOIN with the
 * arena it maps and its old connection's token, then SEATS_GIVE with
 * the seat eventfds of each queue in the wake table, then the DETACHes
 * it owes, and swaps the new socket in (client_swap(), which also puts
 * it on hup_fd's number). Control calls meanwhile wait (CALL_WAIT) or
 * fail at once; the data path never waits (docs/decisions.md).
 */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "bus.h"

/* Backoff between attempts: REJOIN_FIRST_MS doubling to REJOIN_MAX_MS,
 * each +-25% so that the clients of a restarted daemon spread out. */
#define REJOIN_FIRST_MS		10u
#define REJOIN_MAX_MS		1000u
/* the watcher's stack: it formats messages and holds two frames */
#define REJOIN_STACK		(256 * 1024)

static unsigned jitter(unsigned ms, unsigned *seed)
{
	return ms - ms / 4 + (unsigned)rand_r(seed) % (ms / 2 + 1);
}

/* Wait for the daemon's hang-up on hup_fd. False: asked to stop. */
static bool wait_hangup(struct shmbus *bus)
{
	struct pollfd pfd[2] = {
		{ .fd = bus->hup_fd, .events = POLLRDHUP },
		{ .fd = bus->rj.stop_fd, .events = POLLIN },
	};
	int r;

	do {
		r = poll(pfd, 2, -1);
	} while (r < 0 && errno == EINTR);
	return r > 0 && !pfd[1].revents;
}

/* Did the arena's queue @qid still have gen @qgen? */
static bool queue_is(const struct shmbus *bus, uint32_t qid, uint32_t qgen)
{
	return READ_ONCE(bus->arena.queues[qid].gen) == qgen;
}

/*
 * SEATS_GIVE the eventfds we hold for queue @qid over @nc. The table's
 * lock keeps the set (and so its fds) from being replaced and closed
 * while they are in flight. 0, or the transport's -errno; the daemon's
 * refusal of one queue (deleted meanwhile) is only logged.
 */
static int seats_give(struct shmbus *bus, struct client *nc, uint32_t qid)
{
	struct wake_table *t = &bus->wakes;
	struct sbc_seats_give req = { .qid = qid };
	int fds[SBC_MAX_FDS];
	unsigned n = 0;
	struct wake_set *ws;
	int err;

	pthread_mutex_lock(&t->lock);
	ws = t->sets[qid];
	if (!ws || !queue_is(bus, qid, ws->qgen)) {
		pthread_mutex_unlock(&t->lock);
		return 0;
	}
	req.gen = ws->qgen;
	for (uint32_t i = 0; i < ws->nr && i < SBC_MAX_FDS; i++) {
		int fd = READ_ONCE(ws->fds[i]);

		if (fd < 0)
			continue;
		req.seat_map[i / 64] |= 1ULL << (i % 64);
		fds[n++] = fd;
	}
	err = n ? client_call_give(nc, SBC_SEATS_GIVE, &req, sizeof(req),
				   fds, n, NULL, 0) : 0;
	pthread_mutex_unlock(&t->lock);
	if (err == -ECONNRESET || err == -ETIMEDOUT || err == -ECANCELED ||
	    err == -ENOTCONN)
		return err;
	if (err)
		pr_debug("bus '%s': the daemon refused the seats of queue %u: "
			 "%s", bus->name, qid, strerror(-err));
	return 0;
}

/* Send the DETACHes owed over @nc, forgetting those answered. Under
 * rj->lock. */
static int detaches_pay(struct shmbus *bus, struct client *nc)
{
	struct rejoin *rj = &bus->rj;
	int err;

	while (rj->nr_owed) {
		struct sbc_detach *d = &rj->owed[rj->nr_owed - 1];

		/* -ESRCH: the slot was not handed to us, or is gone */
		err = client_call_give(nc, SBC_DETACH, d, sizeof(*d), NULL, 0,
				       NULL, 0);
		if (err == -ECONNRESET || err == -ETIMEDOUT ||
		    err == -ECANCELED || err == -ENOTCONN)
			return err;
		rj->nr_owed--;
	}
	return 0;
}

/* REJOIN over @nc: the arena and our old token. 0 or -errno. */
static int rejoin_call(struct shmbus *bus, struct client *nc)
{
	struct sbc_rejoin req = {
		.owner_uid = bus->owner_uid,
		.flags = bus->rdonly ? SBC_REJOIN_RDONLY : 0,
		.token = bus->rj.token,
	};
	struct sbc_bus_open_reply rep;
	int err;

	memcpy(req.name, bus->name, sizeof(req.name));
	err = client_call_give(nc, SBC_REJOIN, &req, sizeof(req),
			       &bus->arena_fd, 1, &rep, sizeof(rep));
	if (err)
		return err;
	/* the daemon's record of the bus must be the one we opened */
	if (rep.arena_size != bus->arena.size ||
	    !rep.rdonly != !bus->rdonly || rep.owner_uid != bus->owner_uid) {
		errmsg_set("the daemon's record of bus '%s' is not the arena "
			   "we map", bus->name);
		return -EPROTO;
	}
	bus->rj.token = rep.conn_token;
	return 0;
}

/*
 * Worth another attempt? Reaching a daemon is, whatever went wrong but
 * a protocol we do not speak: no socket yet, a full backlog, a daemon on
 * its way out or a squatter on the socket. Once a daemon answers REJOIN,
 * only its transport errors and a quota on connections are: a REJOIN
 * refused for what it is (not this daemon's arena, another layout,
 * policy), or by a daemon that does not know the frame, stays refused.
 */
static bool transient(int err, bool reached)
{
	switch (err) {
	case -EPROTO: case -ENAMETOOLONG:
		return false;
	case -ECONNRESET: case -ETIMEDOUT: case -EAGAIN: case -EDQUOT:
	case -ENOMEM:
		return true;
	default:
		return !reached;
	}
}

/* SEATS_GIVE every queue's eventfds over @c: 0 or a transport -errno. */
static int seats_give_all(struct shmbus *bus, struct client *c)
{
	int err = 0;

	for (uint32_t qid = 0; !err && qid < bus->wakes.n; qid++)
		err = seats_give(bus, c, qid);
	return err;
}

/*
 * After a REJOIN over @nc: give the seats and pay the DETACHes owed,
 * then swap @nc in. The daemon has handed our slots to @nc, and its EOF
 * would tell the daemon we died: from here on @nc is never closed but
 * with the handle, so the swap happens whatever fails. A stop (close, or
 * fork()) that cut it short leaves rj->unsettled for the next watcher;
 * a connection that failed meanwhile hangs up, and the next round does
 * it all again; a reply that came too late leaves the stream out of
 * step, and the handle's calls refuse it until then.
 */
static void settle_and_swap(struct shmbus *bus, struct client *nc)
{
	struct rejoin *rj = &bus->rj;
	int err = seats_give_all(bus, nc);

	/* a DETACH owed from now on is paid here, or sees the new gen */
	pthread_mutex_lock(&rj->lock);
	if (!err)
		err = detaches_pay(bus, nc);
	client_swap(&bus->conn, nc, bus->hup_fd, err == -ETIMEDOUT);
	pthread_mutex_unlock(&rj->lock);
	rj->unsettled = err == -ECANCELED;
}

/* A watcher started again after a fork() finishes, over the handle's
 * connection, what the one stopped for it began. */
static void settle(struct shmbus *bus)
{
	struct rejoin *rj = &bus->rj;
	int err = seats_give_all(bus, &bus->conn);

	if (!err) {
		pthread_mutex_lock(&rj->lock);
		err = detaches_pay(bus, &bus->conn);
		pthread_mutex_unlock(&rj->lock);
	}
	rj->unsettled = err == -ECANCELED;
}

/*
 * One attempt: dial, REJOIN, then settle_and_swap(). The new socket is
 * this thread's alone until the swap. 0 or -errno; *@again says whether
 * another attempt may do better.
 */
static int rejoin_once(struct shmbus *bus, bool *again)
{
	struct client nc;
	int err;

	errmsg_set("%s", "");
	err = client_dial(&bus->conn, &nc, bus->rj.stop_fd);
	if (err) {
		*again = transient(err, false);
		return err;
	}
	/* The REJOIN's answer is awaited whatever stops us: abandoned, the
	 * connection would be closed right after the daemon handed it our
	 * slots, and they would be released under our handles. */
	nc.abort_fd = -1;
	err = rejoin_call(bus, &nc);
	nc.abort_fd = bus->rj.stop_fd;
	if (err == -ETIMEDOUT) {
		/* maybe adopted: keep it, out of step (settle_and_swap()) */
		client_swap(&bus->conn, &nc, bus->hup_fd, true);
		pr_warn("bus '%s': the daemon at %s did not answer REJOIN "
			"within %d ms", bus->name, bus->conn.path,
			SBC_REPLY_TIMEOUT_MS);
		return 0;
	}
	if (err) {
		*again = transient(err, true);
		client_fini(&nc);
		return err;
	}
	client_handshake_done(&nc);
	settle_and_swap(bus, &nc);
	pr_info("bus '%s' rejoined the daemon at %s", bus->name,
		bus->conn.path);
	return 0;
}

/* Rejoin until it worked (1), or until stopped (0) or refused (-1). */
static int rejoin_loop(struct shmbus *bus)
{
	unsigned seed = (unsigned)now_ns() ^ (unsigned)getpid();
	unsigned ms = REJOIN_FIRST_MS;
	int err, last = 0;
	bool again;

	for (;;) {
		err = rejoin_once(bus, &again);
		if (!err)
			return 1;
		if (err == -ECANCELED)
			return 0;
		if (!again) {
			char why[512];	/* client_give_up() keeps 200 */

			snprintf(why, sizeof(why), "the daemon at %s refused "
				 "to take bus '%s' back: %s%s%s",
				 bus->conn.path, bus->name, strerror(-err),
				 *shmbus_errmsg() ? ": " : "",
				 shmbus_errmsg());
			pr_warn("%s", why);
			client_give_up(&bus->conn, why);
			return -1;
		}
		if (err != last)
			pr_debug("bus '%s': rejoin: %s; trying again",
				 bus->name, strerror(-err));
		last = err;
		if (poll(&(struct pollfd){ .fd = bus->rj.stop_fd,
					   .events = POLLIN },
			 1, (int)jitter(ms, &seed)) > 0)
			return 0;
		ms = MIN(ms * 2, REJOIN_MAX_MS);
	}
}

/*
 * The watcher. Stopped (stop_fd) it returns, to be started again after a
 * fork() where it left off; rj->done says it is done for good: the
 * daemon closed us and lives on, or refused our REJOIN.
 */
static void *watch(void *arg)
{
	struct shmbus *bus = arg;
	struct rejoin *rj = &bus->rj;
	int r;

	if (rj->unsettled)
		settle(bus);
	/* stopped while the daemon was gone: go on rejoining */
	if (client_is_down(&bus->conn)) {
		r = rejoin_loop(bus);
		if (r <= 0)
			goto out;
	}
	while (wait_hangup(bus)) {
		/* the daemon deleted the bus, then closed us: nothing to
		 * rejoin, whether it lives on or not */
		r = READ_ONCE(bus->arena.sb->deleted) ? 0 :
		    client_daemon_exited(&bus->conn, rj->stop_fd);
		if (r < 0)
			return NULL;
		if (!r) {
			/* it closed us and lives on: its log says why */
			client_give_up(&bus->conn,
				       READ_ONCE(bus->arena.sb->deleted)
				       ? "the bus was deleted (shmbus bus "
					 "delete --force)"
				       : "the daemon closed this bus handle's "
					 "connection (its log says why)");
			rj->done = true;
			return NULL;
		}
		client_down(&bus->conn);
		r = rejoin_loop(bus);
		if (r <= 0)
			goto out;
	}
	return NULL;
out:
	rj->done = r < 0;
	return NULL;
}

/* ---- the watcher's thread, and fork() ------------------------------ */

/*
 * The handles of this process that have a watcher. fork() stops their
 * threads first and starts them again in the parent: the child then
 * inherits no lock a watcher held, and a process that forks has no
 * thread of ours at that moment (ThreadSanitizer supports no thread
 * creation in the child of a multi-threaded fork()).
 */
static pthread_mutex_t watched_lock = PTHREAD_MUTEX_INITIALIZER;
static struct shmbus *watched;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static bool thread_start(struct shmbus *bus)
{
	struct rejoin *rj = &bus->rj;
	sigset_t all, old;
	pthread_attr_t at;
	int err;

	pthread_attr_init(&at);
	pthread_attr_setstacksize(&at, REJOIN_STACK);
	/* the caller's signals are for the caller's threads */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&rj->thread, &at, watch, bus);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&at);
	if (err) {
		pr_warn("bus '%s': no watcher thread (%s): it will not rejoin "
			"a restarted daemon", bus->name, strerror(err));
		return false;
	}
	pthread_setname_np(rj->thread, "shmbus-rejoin");
	rj->running = true;
	return true;
}

static void thread_stop(struct shmbus *bus)
{
	struct rejoin *rj = &bus->rj;
	uint64_t v = 1;

	if (!rj->running)
		return;
	if (write(rj->stop_fd, &v, sizeof(v)) != sizeof(v))
		pr_warn("cannot stop the watcher of bus '%s': %s", bus->name,
			strerror(errno));
	pthread_join(rj->thread, NULL);
	rj->running = false;
	/* drained: a watcher started again must not stop at once */
	if (read(rj->stop_fd, &v, sizeof(v)) != sizeof(v))
		pr_debug("bus '%s': stop_fd: %s", bus->name, strerror(errno));
}

static void fork_prepare(void)
{
	pthread_mutex_lock(&watched_lock);
	for (struct shmbus *b = watched; b; b = b->rj.next)
		thread_stop(b);
}

static void fork_parent(void)
{
	for (struct shmbus *b = watched; b; b = b->rj.next)
		if (!b->rj.done && !thread_start(b))
			client_give_up(&b->conn, "no watcher thread after "
				       "fork()");
	pthread_mutex_unlock(&watched_lock);
}

static void fork_child(void)
{
	/* the handles are the parent's (check_pid()): none watched here */
	for (struct shmbus *b = watched; b; b = b->rj.next)
		b->rj.listed = false;
	watched = NULL;
	pthread_mutex_unlock(&watched_lock);
}

static void register_atfork(void)
{
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

void rejoin_start(struct shmbus *bus, uint64_t token)
{
	struct rejoin *rj = &bus->rj;

	rj->token = token;
	rj->stop_fd = -1;
	pthread_mutex_init(&rj->lock, NULL);
	if (bus->hup_fd < 0)
		return;
	rj->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (rj->stop_fd < 0)
		return;
	pthread_once(&atfork_once, register_atfork);
	bus->conn.rejoin = true;
	pthread_mutex_lock(&watched_lock);
	if (thread_start(bus)) {
		rj->enabled = true;
		rj->listed = true;
		rj->next = watched;
		rj->pprev = &watched;
		if (watched)
			watched->rj.pprev = &rj->next;
		watched = bus;
	} else {
		bus->conn.rejoin = false;
	}
	pthread_mutex_unlock(&watched_lock);
}

void rejoin_stop(struct shmbus *bus)
{
	struct rejoin *rj = &bus->rj;

	/* a forked child's copy has no thread, and is in no list */
	if (rj->listed && bus->pid == getpid()) {
		pthread_mutex_lock(&watched_lock);
		thread_stop(bus);
		*rj->pprev = rj->next;
		if (rj->next)
			rj->next->rj.pprev = rj->pprev;
		rj->listed = false;
		pthread_mutex_unlock(&watched_lock);
	}
	rj->running = false;
	rj->enabled = false;
	if (rj->stop_fd >= 0)
		close(rj->stop_fd);
	rj->stop_fd = -1;
	free(rj->owed);
	rj->owed = NULL;
	rj->nr_owed = rj->cap_owed = 0;
	pthread_mutex_destroy(&rj->lock);
}

bool rejoin_owe_detach(struct shmbus *bus, const struct sbc_detach *req,
		       uint32_t gen)
{
	struct rejoin *rj = &bus->rj;

	if (!rj->enabled)
		return true;
	/* the lock orders us with settle_and_swap()'s payment and swap:
	 * owed before them, paid by them; after them, the gen has moved */
	pthread_mutex_lock(&rj->lock);
	if (READ_ONCE(bus->conn.gen) != gen) {
		pthread_mutex_unlock(&rj->lock);
		return false;
	}
	if (rj->nr_owed == rj->cap_owed) {
		uint32_t cap = rj->cap_owed ? rj->cap_owed * 2 : 8;
		struct sbc_detach *o = realloc(rj->owed, cap * sizeof(*o));

		if (!o) {
			/* the slot stays ours until the handle closes */
			pthread_mutex_unlock(&rj->lock);
			return true;
		}
		rj->owed = o;
		rj->cap_owed = cap;
	}
	rj->owed[rj->nr_owed++] = *req;
	pthread_mutex_unlock(&rj->lock);
	return true;
}
