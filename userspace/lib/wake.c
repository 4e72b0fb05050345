// SPDX-License-Identifier: MIT
/*
 * wake.c - the slow half of wake-ups: the per-bus eventfd table (liburcu-bp
 * protects it inside the process, so an eventfd is closed only once no
 * producer thread can still be writing to it), waking sleepers, and a
 * consumer's arm / sleep / disarm. The protocol is in wake.h.
 */
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <urcu-bp.h>

#include "wake.h"
#include "probes.h"

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void register_atfork(void)
{
	/* keep liburcu-bp's registry consistent in forked children */
	pthread_atfork(urcu_bp_before_fork, urcu_bp_after_fork_parent,
		       urcu_bp_after_fork_child);
}

int wake_table_init(struct wake_table *t, uint32_t n)
{
	pthread_once(&atfork_once, register_atfork);
	t->sets = calloc(n, sizeof(*t->sets));
	if (!t->sets)
		return -ENOMEM;
	t->n = n;
	t->kfd = -1;
	t->arena_fd = -1;
	pthread_mutex_init(&t->lock, NULL);
	return 0;
}

static void close_fds(int *fds, uint32_t nr)
{
	for (uint32_t i = 0; i < nr; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

static void wake_set_free(struct wake_set *ws)
{
	if (!ws)
		return;
	close_fds(ws->fds, ws->nr);
	free(ws);
}

void wake_table_fini(struct wake_table *t)
{
	if (!t->sets)
		return;
	/* the caller guarantees no producer of this bus is running */
	for (uint32_t i = 0; i < t->n; i++)
		wake_set_free(t->sets[i]);
	free(t->sets);
	t->sets = NULL;
	pthread_mutex_destroy(&t->lock);
}

/* Does @map name exactly @nfds seats, all below @nr_seats? */
static bool seat_map_ok(const uint64_t *map, uint32_t nfds, uint32_t nr_seats)
{
	unsigned n = 0;

	if (nr_seats < 1 || nr_seats > SHMBUS_MAX_SEATS)
		return false;
	for (uint32_t w = 0; w < SHMBUS_SEAT_WORDS; w++) {
		uint64_t valid = nr_seats >= (w + 1) * 64 ? ~0ULL :
				 nr_seats <= w * 64 ? 0 :
				 (1ULL << (nr_seats - w * 64)) - 1;

		if (map[w] & ~valid)
			return false;
		n += __builtin_popcountll(map[w]);
	}
	return n == nfds;
}

int wake_table_install(struct wake_table *t, uint32_t qid, uint32_t qgen,
		       int *fds, uint32_t nfds, const uint64_t *map,
		       uint32_t nr_seats, uint32_t epoch)
{
	struct wake_set *ws, *old;
	unsigned k = 0;

	if (qid >= t->n || !seat_map_ok(map, nfds, nr_seats)) {
		close_fds(fds, nfds);
		return qid >= t->n ? -EINVAL : -EPROTO;
	}
	pthread_mutex_lock(&t->lock);
	old = t->sets[qid];
	if (old && old->qgen == qgen && old->nr == nr_seats) {
		/* the same queue: add the seats we lacked */
		for (uint32_t i = 0; i < nr_seats; i++) {
			if (!(map[i / 64] & (1ULL << (i % 64))))
				continue;
			if (old->fds[i] >= 0) {
				close(fds[k++]);
				continue;
			}
			/* [SEATFD] release: the fd is in our table before
			 * its number is (pairs with the acquire loads in
			 * claim_seats() and wake_seat()) */
			smp_store_release(&old->fds[i], fds[k++]);
		}
		if (epoch > old->epoch)
			WRITE_ONCE(old->epoch, epoch);
		pthread_mutex_unlock(&t->lock);
		return 0;
	}
	ws = malloc(sizeof(*ws) + nr_seats * sizeof(int));
	if (!ws) {
		pthread_mutex_unlock(&t->lock);
		close_fds(fds, nfds);
		return -ENOMEM;
	}
	ws->qgen = qgen;
	ws->nr = nr_seats;
	ws->epoch = epoch;
	for (uint32_t i = 0; i < nr_seats; i++)
		ws->fds[i] = map[i / 64] & (1ULL << (i % 64)) ? fds[k++] : -1;
	/* publish: rcu_set_pointer is a release (pairs with the
	 * rcu_dereference in wake_seat) */
	urcu_bp_set_pointer(&t->sets[qid], ws);
	pthread_mutex_unlock(&t->lock);
	if (old) {
		/* a producer thread may be in write(old->fds[i]) */
		urcu_bp_synchronize_rcu();
		wake_set_free(old);
	}
	return 0;
}

static bool wake_seat(struct wake_table *t, uint32_t qid, uint32_t qgen,
		      uint32_t seat)
{
	static const uint64_t one = 1;
	struct wake_set *ws;
	bool ok = false;

	if (qid >= t->n)
		return false;
	urcu_bp_read_lock();
	ws = urcu_bp_dereference(t->sets[qid]);
	if (ws && ws->qgen == qgen && seat < ws->nr) {
		/* [SEATFD] acquire: pairs with the release in
		 * wake_table_install() */
		int fd = smp_load_acquire(&ws->fds[seat]);

		/* a blocking eventfd write only blocks at a counter of
		 * 2^64 - 2 tokens; ours never exceeds a few */
		ok = fd >= 0 && write(fd, &one, sizeof(one)) == sizeof(one);
	}
	urcu_bp_read_unlock();
	return ok;
}

/* Rotate so that sleepers are woken round-robin, not lowest seat first. */
static inline uint64_t rotr64(uint64_t v, unsigned r)
{
	r &= 63;
	return r ? (v >> r) | (v << (64 - r)) : v;
}

unsigned wake_batch_flush(struct wake_table *t, struct wake_batch *b)
{
	unsigned woken = 0;
	bool kmod = false;
	int64_t ts;

	if (!b->n)
		return 0;
	/* the probe's time is taken before the tokens go: a woken consumer
	 * may run (and fire wake_recv) before our wake_sent fires */
	ts = SHMBUS_PROBE_ON(wake_sent) ? now_ns() : 0;
	/* one seat: a write is one syscall too, and a cheaper one (the
	 * ioctl also looks the registration up); the module pays from two */
	if (t->kfd >= 0 && b->n > 1) {
		struct shmbus_kmod_wake w = {
			.arena_fd = t->arena_fd,
			.count = b->n,
			.targets = (uintptr_t)b->t,
		};

		for (unsigned i = 0; i < b->n; i++)
			b->t[i].woken = 0;
		kmod = ioctl(t->kfd, SHMBUS_IOC_WAKE, &w) >= 0;
	}
	for (unsigned i = 0; i < b->n; i++) {
		const struct shmbus_kmod_target *tg = &b->t[i];

		/* a seat the module does not know: the eventfd itself */
		if ((kmod && tg->woken) ||
		    wake_seat(t, tg->qid, tg->gen, tg->seat)) {
			woken++;
			SHMBUS_PROBE4(wake_sent, t->bus_id, tg->qid, tg->seat,
				      ts);
		}
	}
	b->n = 0;
	return woken;
}

/* Does set @ws (read-locked) hold the eventfd of @seat of gen @qgen? */
static bool set_has_seat(const struct wake_set *ws, uint32_t qgen,
			 uint32_t seat)
{
	/* [SEATFD] acquire: pairs with the release in wake_table_install() */
	return ws && ws->qgen == qgen && seat < ws->nr &&
	       smp_load_acquire(&ws->fds[seat]) >= 0;
}

/*
 * Claim up to @n sleeping seats of @q whose eventfds we hold, into @b
 * (flushed when full). A sleeper whose eventfd we lack is left alone and
 * reported in *@missing. @r: where the round-robin starts.
 */
static unsigned claim_seats(struct wake_table *t, struct shmbus_queue *q,
			    uint32_t qid, uint32_t qgen, unsigned n,
			    struct wake_batch *b, unsigned r, bool *missing)
{
	unsigned claimed = 0;
	struct wake_set *ws;

	*missing = false;
	urcu_bp_read_lock();
	ws = qid < t->n ? urcu_bp_dereference(t->sets[qid]) : NULL;
	for (unsigned k = 0; k < SHMBUS_SEAT_WORDS && claimed < n; k++) {
		unsigned w = (k + r / 64) % SHMBUS_SEAT_WORDS;
		uint64_t m = READ_ONCE(q->sleep_mask[w]);

		while (m && claimed < n) {
			/* the first set bit at or after position r % 64 */
			uint64_t bit = rotr64(m, r) & -rotr64(m, r);
			uint32_t seat;

			bit = rotr64(bit, 64 - (r & 63));
			seat = w * 64 + __builtin_ctzll(bit);
			if (!set_has_seat(ws, qgen, seat)) {
				/* no fd, no claim: a bit is cleared only by
				 * whoever can write the eventfd */
				*missing = true;
				m &= ~bit;
				continue;
			}
			/* Take the right to wake this seat: only the one
			 * who clears the bit writes (pairs with the
			 * fetch_and in seat_disarm, which then counts our
			 * claim) */
			uint64_t old = atomic_fetch_and(&q->sleep_mask[w], ~bit);

			if (old & bit) {
				if (b->n == WAKE_BATCH_MAX)
					wake_batch_flush(t, b);
				b->t[b->n++] = (struct shmbus_kmod_target){
					.qid = qid, .gen = qgen, .seat = seat,
				};
				claimed++;
			}
			m = old & ~bit;
		}
	}
	urcu_bp_read_unlock();
	return claimed;
}

/*
 * A sleeper's eventfd is missing ([SEATFD]). True if the daemon made
 * eventfds since the ones we hold: fetch them. False: the bit is no
 * sleeper's (a member scribbled it) and stays, unclaimed; clearing it
 * could race with a consumer taking that seat now.
 */
static bool seats_stale(struct wake_table *t, struct shmbus_queue *q,
			uint32_t qid, uint32_t qgen)
{
	struct wake_set *ws;
	uint32_t epoch;
	bool stale;

	/* [SEATFD] acquire fence after our loads of sleep_mask: a sleeper's
	 * bit came after the daemon's epoch store (wake.h) */
	smp_rmb();
	epoch = READ_ONCE(q->seat_epoch);
	urcu_bp_read_lock();
	ws = qid < t->n ? urcu_bp_dereference(t->sets[qid]) : NULL;
	stale = !ws || ws->qgen != qgen || READ_ONCE(ws->epoch) != epoch;
	urcu_bp_read_unlock();
	return stale;
}

unsigned __wake_sleepers(struct wake_table *t, struct shmbus_queue *q,
			 uint32_t qid, uint32_t qgen, unsigned n,
			 struct wake_batch *b)
{
	static __thread unsigned rr;	/* per-thread round-robin start */
	unsigned claimed, r = rr++;
	struct wake_batch local;
	bool missing;

	if (!b) {
		local.n = 0;
		b = &local;
	}
	claimed = claim_seats(t, q, qid, qgen, n, b, r, &missing);
	if (unlikely(missing) && claimed < n && seats_stale(t, q, qid, qgen) &&
	    t->refresh && t->refresh(t, qid, qgen) == 0)
		claimed += claim_seats(t, q, qid, qgen, n - claimed, b, r,
				       &missing);
	if (b == &local)
		wake_batch_flush(t, b);
	return claimed;
}

void seat_refresh(struct seat *s)
{
	if (s->armed && !(READ_ONCE(*s->word) & s->bit))
		s->armed = false;
}

int seat_arm(struct seat *s, struct ring *r)
{
	seat_refresh(s);
	if (!s->armed) {
		atomic_fetch_or(s->word, s->bit);
		s->armed = true;
	}
	/* [WAKE] pairs with smp_mb__after_atomic() in wake_after_publish(),
	 * wake_sub() and the daemon's dq_wake(): they see our bit, or we
	 * see their message */
	smp_mb__after_atomic();
	if (ring_peek_nonempty(r)) {
		seat_disarm(s);
		return 1;
	}
	return 0;
}

bool seat_disarm(struct seat *s)
{
	bool claimed;

	if (!s->armed)
		return false;
	/* if a producer cleared it first, its token is ours to drain later
	 * (pairs with the fetch_and in __wake_sleepers) */
	claimed = !(atomic_fetch_and(s->word, ~s->bit) & s->bit);
	s->armed = false;
	return claimed;
}

/* Drain the eventfd: one read() takes every token. */
static int read_tokens(struct seat *s)
{
	uint64_t v;
	ssize_t n = read(s->fd, &v, sizeof(v));

	if (n == sizeof(v))
		return 0;
	return n < 0 ? -errno : -EIO;
}

int seat_sleep(struct seat *s, int64_t deadline, int hup_fd)
{
	struct pollfd pfd[2] = {
		{ .fd = s->fd, .events = POLLIN },
		/* only a hang-up: a reply to another thread's request is
		 * not ours to wake for */
		{ .fd = hup_fd, .events = POLLRDHUP },
	};
	struct timespec ts, *tsp = NULL;
	int n;

	if (deadline == INT64_MAX && hup_fd < 0)
		/* one syscall: the blocking read both waits and drains */
		return read_tokens(s);
	if (deadline != INT64_MAX) {
		int64_t left = deadline - now_ns();

		if (left < 0)
			left = 0;
		ts.tv_sec = left / NSEC_PER_SEC;
		ts.tv_nsec = left % NSEC_PER_SEC;
		tsp = &ts;
	}
	n = ppoll(pfd, hup_fd < 0 ? 1 : 2, tsp, NULL);
	if (n < 0)
		return -errno;
	if (n == 0)
		return -ETIMEDOUT;
	if (pfd[0].revents)
		return read_tokens(s);
	return -ENOTCONN;
}

void seat_drain(struct seat *s)
{
	struct pollfd pfd = { .fd = s->fd, .events = POLLIN };

	/* Any token, accounted for or not: producers' (a claim we saw or
	 * one still in flight), the daemon's kicks, a previous holder's.
	 * Left in the fd, it would keep a level-triggered epoll spinning. */
	if (poll(&pfd, 1, 0) == 1)
		read_tokens(s);
}

void seat_kmod_register(struct wake_table *t, uint32_t qid, uint32_t gen,
			uint32_t seat, int fd)
{
	struct shmbus_kmod_reg r = {
		.arena_fd = t->arena_fd, .event_fd = fd,
		.qid = qid, .gen = gen, .seat = seat,
	};

	if (t->kfd >= 0 && ioctl(t->kfd, SHMBUS_IOC_REGISTER, &r))
		pr_debug("kmod: register seat %u of queue %u: %s", seat, qid,
			 strerror(errno));
}

void seat_kmod_unregister(struct wake_table *t, uint32_t qid, uint32_t gen,
			  uint32_t seat)
{
	struct shmbus_kmod_reg r = {
		.arena_fd = t->arena_fd, .event_fd = -1,
		.qid = qid, .gen = gen, .seat = seat,
	};

	if (t->kfd >= 0)
		(void)ioctl(t->kfd, SHMBUS_IOC_UNREGISTER, &r);
}
