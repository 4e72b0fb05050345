// SPDX-License-Identifier: MIT
/*
 * fanout.c - topics: a message published to a topic is one SHARED chunk
 * with a reference per subscription ring it enters. Reading the topic's
 * fan-out array (the daemon's list of live subscriptions), enqueueing into
 * each subscription, a full subscription's policy (drop its oldest, or
 * wait), and waking subscribers, batched into one flush.
 */
#include "producer.h"
#include "probes.h"

/*
 * Wake one sleeping consumer of subscription (qid, gen). Its seat fds are
 * fetched from the daemon the first time this process needs them (a
 * sleeper is the only reason to; __wake_sleepers() does it): a bit is
 * cleared only once we can write the eventfd, so no wake-up is lost to a
 * missing fd (the module backend falls back to it for a seat it does not
 * know). With @b, the wake-up waits in @b for the caller's flush.
 */
void wake_sub(struct attachment *at, struct shmbus_queue *sq, uint32_t qid,
	      uint32_t gen, struct wake_batch *b)
{
	uint64_t any = 0;
	unsigned n;

	/* [WAKE] after the ring cmpxchg: pairs with seat_arm() */
	smp_mb__after_atomic();
	for (unsigned w = 0; w < SHMBUS_SEAT_WORDS; w++)
		any |= READ_ONCE(sq->sleep_mask[w]);
	if (likely(!any))
		return;
	n = __wake_sleepers(&at->bus->wakes, sq, qid, gen, 1, b);
	if (n)
		slot_count(at->slot, SHMBUS_CTR_WAKEUPS, n);
}

/*
 * Subscription ring @r is full. Drop-oldest: take its oldest message and
 * drop our reference to it (counted in the subscription), then retry.
 * Otherwise wait for room as @w allows, without leaving the epoch section
 * (we are walking a fan-out array it protects). 0, or -ENOBUFS.
 */
static __attribute__((noinline)) int
sub_full(struct attachment *at, struct shmbus_queue *sq, uint32_t gen,
	 struct ring *r, uint32_t ref, struct pub_wait *w)
{
	const struct arena *a = &at->bus->arena;
	uint32_t qid = (uint32_t)(sq - a->queues);
	unsigned round = 0;
	int64_t t = 0;
	int err = 0;

	if (READ_ONCE(sq->flags) & SHMBUS_QF_DROP_OLDEST) {
		for (int n = 0; n < 8; n++) {
			uint32_t old;

			if (ring_dequeue(r, &old) == 0) {
				/* our reference came with the cell: the id
				 * is the message's until we drop it */
				SHMBUS_PROBE3(drop, a->bus_id, qid,
					      chunk_id(a, old));
				if (claim_dropped(at, old))
					chunk_unref(a, at->slot, old);
				atomic_fetch_add(&sq->sub_dropped, 1);
			}
			if (ring_enqueue(r, ref) == 0)
				return 0;
		}
		return -ENOBUFS;
	}
	if (w->timeout)
		t = pub_blocked_begin(at, qid, PUB_BLOCKED_FULL);
	for (;;) {
		if (pub_wait_over(w) || READ_ONCE(sq->gen) != gen) {
			err = -ENOBUFS;
			break;
		}
		backoff_wait(round++);
		if (ring_has_room(r) && ring_enqueue(r, ref) == 0)
			break;
	}
	if (w->timeout)
		pub_blocked_end(at, qid, PUB_BLOCKED_FULL, t, err);
	return err;
}

/*
 * A persistent subscription: the fan-out array names its intake (the
 * daemon journals what enters it, then moves it into the subscription).
 * It gets a private copy of shared chunk @ref, with an id of its own (the
 * id is its journal's key, and the copy a message of its own there),
 * QUEUED in our name until it is in the intake: a publisher killed in
 * between leaves an orphan its sweep frees. 0, or -ENOBUFS (full: the
 * subscription misses it, counted) or -ENOMEM (no chunk for the copy).
 */
static __attribute__((noinline)) int
fanout_persistent(struct attachment *at, struct shmbus_queue *iq,
		  uint32_t qid, uint32_t gen, struct ring *r, uint32_t ref,
		  struct pub_wait *w, struct wake_batch *wb)
{
	const struct arena *a = &at->bus->arena;
	struct shmbus_chunk *c = chunk_at(a, ref), *n;
	uint32_t nref;
	int err;

	atomic_fetch_add(&c->refcnt, 1);	/* chunk_unshare drops it */
	err = chunk_unshare(a, at->slot, ref,
			    (SHMBUS_CHUNK_QUEUED << 16) | at->slot_idx, &nref);
	if (err) {
		atomic_fetch_sub(&c->refcnt, 1);
		return err;
	}
	n = chunk_at(a, nref);
	n->delivery_count = 0;
	n->id = slot_next_id(at->bus, at->slot);
	err = ring_enqueue(r, nref);
	if (unlikely(err == -ENOBUFS))
		err = sub_full(at, iq, gen, r, nref, w);
	if (err) {
		pool_free(a, at->slot, nref);
		return err;
	}
	wake_sub(at, iq, qid, gen, wb);
	return 0;
}

/* The topic's fan-out array, bounds-checked; NULL with *n 0 if none. */
static const struct shmbus_fanout *fanout_of(const struct arena *a,
					     const struct shmbus_queue *q,
					     uint32_t *n)
{
	/* [FANOUT] acquire: pairs with the daemon's release store of a new
	 * array in fanout_set(): the array's entries are visible */
	uint64_t word = smp_load_acquire(&q->fanout);
	uint64_t off = a->ring_off + (word >> 16) * SHMBUS_RING_UNIT;
	uint64_t end = a->ring_off + a->ring_units * SHMBUS_RING_UNIT;

	*n = (uint32_t)(word & 0xffff);
	if (!*n || (word >> 16) >= a->ring_units ||
	    *n * sizeof(struct shmbus_fanout) > end - off) {
		*n = 0;
		return NULL;
	}
	return (const struct shmbus_fanout *)(a->base + off);
}

/*
 * Publish one message to a topic, inside an epoch section: one chunk,
 * SHARED, one reference per subscription ring it enters (and one for
 * the history), plus ours while we fan out. A subscription that stays
 * full (blocking policy, timeout over) misses it: counted there, and the
 * publish returns -ENOBUFS after delivering to all the others.
 */
int topic_publish_one(struct attachment *at, const void *data, size_t len,
		      const struct pub_hdr *h, struct pub_wait *w)
{
	uint32_t ref;
	int err;

	if (len > at->msg_size)
		return -EMSGSIZE;
	err = chunk_for(at, data, len, h, w, &ref, true);
	return err ? err : topic_fanout(at, ref, w);
}

/* Fan chunk @ref (filled, ours) out to the topic's subscriptions. */
int topic_fanout(struct attachment *at, uint32_t ref, struct pub_wait *w)
{
	const struct arena *a = &at->bus->arena;
	struct shmbus_chunk *c = chunk_at(a, ref);
	const struct shmbus_fanout *fo;
	struct wake_batch wb;
	uint32_t n;
	int err, ret = 0;

	c->refcnt = 1;				/* ours, while fanning out */
	c->qid = at->qid + 1;			/* shmbus_msg__topic() */
	c->topic_gen = at->qgen;
	/* SHARED before the first ring sees it: consumers leave the owner
	 * word alone, and no orphan sweep takes it for a lost publish */
	chunk_set(c, SHMBUS_CHUNK_SHARED, 0);
	if (READ_ONCE(at->q->history)) {
		uint32_t old;
		int tries = 0;

		/* a full history drops its oldest; a ring that stays full
		 * with nothing to take is a peer's garbage (or 8 lost races
		 * in a row): the message stays out of the history, rather
		 * than the publish spinning for ever */
		atomic_fetch_add(&c->refcnt, 1);
		while ((err = ring_enqueue(&at->ring, ref)) == -ENOBUFS &&
		       tries++ < 8) {
			if (ring_dequeue(&at->ring, &old) == 0)
				chunk_unref(a, at->slot, old);
		}
		if (err)
			atomic_fetch_sub(&c->refcnt, 1);
	}
	fo = fanout_of(a, at->q, &n);
	wb.n = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t qid = READ_ONCE(fo[i].qid), gen = READ_ONCE(fo[i].gen);
		struct shmbus_queue *sq = queue_at(a, qid);
		uint32_t f;
		struct ring r;

		/* a subscription deleted since the array was made */
		if (!sq || READ_ONCE(sq->gen) != gen ||
		    !((f = READ_ONCE(sq->flags)) &
		      (SHMBUS_QF_SUB | SHMBUS_QF_INTAKE)) ||
		    arena_queue_ring(a, sq, &r))
			continue;
		if (unlikely(f & SHMBUS_QF_INTAKE)) {
			/* a persistent subscription's intake; a miss is
			 * counted in the subscription (the intake's line 14
			 * is its journal numbers) */
			struct shmbus_queue *ps;

			if (fanout_persistent(at, sq, qid, gen, &r, ref, w,
					      &wb)) {
				ps = queue_at(a, READ_ONCE(sq->intake) - 1);
				if (ps && (READ_ONCE(ps->flags) & SHMBUS_QF_SUB))
					atomic_fetch_add(&ps->sub_dropped, 1);
				ret = -ENOBUFS;
			}
			continue;
		}
		atomic_fetch_add(&c->refcnt, 1);
		err = ring_enqueue(&r, ref);
		if (unlikely(err == -ENOBUFS))
			err = sub_full(at, sq, gen, &r, ref, w);
		if (unlikely(err)) {
			atomic_fetch_sub(&c->refcnt, 1);
			atomic_fetch_add(&sq->sub_dropped, 1);
			ret = -ENOBUFS;
			continue;
		}
		wake_sub(at, sq, qid, gen, &wb);
	}
	/* every sleeping subscriber at once: one ioctl with the module */
	wake_batch_flush(&at->bus->wakes, &wb);
	chunk_unref(a, at->slot, ref);		/* ours */
	slot_count(at->slot, SHMBUS_CTR_PUBLISHED, 1);
	return ret;
}
