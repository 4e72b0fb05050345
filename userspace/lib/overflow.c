// SPDX-License-Identifier: MIT
/*
 * overflow.c - what a publish does when its ring is full or the pools are
 * empty, as the queue's overflow policy and the caller's timeout say:
 * wait with back-off (leaving the epoch section meanwhile), or take the
 * oldest message out of the ring to make room and dead-letter it (to the
 * queue's DLQ) or drop it, counted either way. All out of line: the
 * publish fast path only tests for the case (producer.h).
 */
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "producer.h"
#include "probes.h"
#include "room.h"

/* a producer waiting for room spins and yields (backoff_wait()) this
 * many rounds, a few milliseconds, then sleeps: a consumer that is
 * running makes room within microseconds, and sleeping earlier cost a
 * fifth of the 64 B throughput (docs/benchmarks.md) */
#define ROOM_SPIN	(64 + 2048)
/* ... on its futex, this long at most before it looks again on its own
 * (what a member that clears room_wait costs the sleepers) */
#define ROOM_NAP_NS	(100 * NSEC_PER_MSEC)

bool pub_wait_over(struct pub_wait *w)
{
	if (w->timeout == 0)
		return true;
	if (w->timeout < 0)
		return false;
	if (!w->deadline)
		w->deadline = deadline_of(w->timeout);
	return now_ns() >= w->deadline;
}

void room_wake(struct shmbus_queue *q)
{
	if (!atomic_xchg(&q->room_wait, 0))
		return;		/* another taker woke them */
	atomic_fetch_add(&q->room_seq, 1);
	/* a shared futex: the arena is a MAP_SHARED memfd */
	syscall(SYS_futex, &q->room_seq, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/*
 * Sleep until a message leaves a ring of our queue, the nap is over, or
 * @w's deadline passes ([ROOM], room.h). Called inside the epoch section,
 * whose ring it looks at once more; sleeps outside it (the descriptor is
 * in the directory, which lives as long as the arena).
 */
static void room_sleep(struct attachment *at, struct ring *r,
		       struct pub_wait *w)
{
	struct shmbus_queue *q = at->q;
	uint32_t seq = READ_ONCE(q->room_seq);
	int64_t nap = ROOM_NAP_NS;
	struct timespec ts;
	bool full;

	/* [ROOM] the flag up, and the takers' stores made visible, before
	 * the last look (and before the check of the queue's gen, which a
	 * delete changes before it wakes us) */
	(void)atomic_xchg(&q->room_wait, 1);
	room_fence_takers();
	full = !ring_has_room(r) && attachment_live(at);
	epoch_exit(at->slot);
	if (full && w->timeout > 0) {
		if (!w->deadline)
			w->deadline = deadline_of(w->timeout);
		nap = MIN(nap, w->deadline - now_ns());
	}
	if (full && nap > 0) {
		ts.tv_sec = nap / NSEC_PER_SEC;
		ts.tv_nsec = nap % NSEC_PER_SEC;
		/* EAGAIN (room_seq moved), EINTR, ETIMEDOUT: look again */
		syscall(SYS_futex, &q->room_seq, FUTEX_WAIT, seq, &ts, NULL, 0);
	}
	epoch_enter(&at->bus->arena, at->slot);
}

/*
 * Out of line: the ring was full; wait for room as @w allows: spins and
 * yields a few milliseconds, then sleeps on the queue's room futex until
 * a taker makes room.
 * Called inside an epoch section; leaves and re-enters it while waiting
 * so that a queue delete is never held up by a producer waiting on a full
 * queue.
 */
static int enqueue_waiting(struct attachment *at, struct ring *r, uint32_t ref,
			struct pub_wait *w)
{
	const struct arena *a = &at->bus->arena;
	unsigned round = 0;
	int err = -ENOBUFS;

	/* the consumers that would make room may sleep unwoken */
	wake_owed(at);
	for (;;) {
		if (pub_wait_over(w))
			return err;
		/* wait, then try again */
		do {
			if (round < ROOM_SPIN) {
				epoch_exit(at->slot);
				backoff_wait(round++);
				epoch_enter(a, at->slot);
			} else {
				room_sleep(at, r, w);
			}
			if (!attachment_live(at))
				return -EIDRM;
		} while (!ring_has_room(r) && !pub_wait_over(w));
		err = ring_enqueue(r, ref);
		if (err != -ENOBUFS)
			return err;
	}
}

/*
 * Dead-letter chunk @old (ours, HELD) from our queue with reason
 * overflow: into the DLQ's ring if the queue has a live one with room,
 * else dropped. Counted either way. Inside an epoch section (the DLQ's
 * ring cannot be reclaimed under us).
 */
static void overflow_out(struct attachment *at, uint32_t old)
{
	const struct arena *a = &at->bus->arena;
	struct shmbus_chunk *c = chunk_at(a, old);
	uint32_t d = READ_ONCE(at->q->dlq_qid), dgen = READ_ONCE(at->q->dlq_gen);
	struct shmbus_queue *dq = d ? queue_at(a, d - 1) : NULL;
	struct ring r;

	if (dq && READ_ONCE(dq->gen) == dgen && SHMBUS_QGEN_LIVE(dgen) &&
	    !arena_queue_ring(a, dq, &r)) {
		char src[SHMBUS_NAME_MAX];

		memcpy(src, at->q->name, sizeof(src));
		src[sizeof(src) - 1] = '\0';
		attr_dead_letter(c, a->pool[SHMBUS_REF_POOL(old)].payload_max,
				 SHMBUS_DLR_OVERFLOW, src, c->delivery_count);
		c->dl_reason = SHMBUS_DLR_OVERFLOW;
		c->dl_src_qid = at->qid + 1;
		c->dl_count = c->delivery_count;
		c->delivery_count = 0;
		c->expires_ns = 0;
		chunk_own(c, (SHMBUS_CHUNK_QUEUED << 16) | at->slot_idx);
		if (ring_enqueue(&r, old) == 0) {
			wake_sub(at, dq, d - 1, dgen, NULL);
			slot_count(at->slot, SHMBUS_CTR_DEADLETTERED, 1);
			SHMBUS_PROBE4(dead_letter, at_bus(at), at->qid, c->id,
				      SHMBUS_DLR_OVERFLOW);
			return;
		}
		chunk_set(c, SHMBUS_CHUNK_HELD, at->slot_idx);
	}
	SHMBUS_PROBE3(drop, at_bus(at), at->qid, c->id);
	pool_free(a, at->slot, old);
	slot_count(at->slot, SHMBUS_CTR_DROPPED, 1);
}

/*
 * A message a producer took from a ring to drop it: a private chunk is
 * claimed as a consumer would claim it (a dead consumer's recovery may
 * race us for it: true if we won, it is ours, HELD); a topic message
 * (SHARED) needs no claim, our reference came with the ring cell.
 */
bool claim_dropped(struct attachment *at, uint32_t old)
{
	struct shmbus_chunk *c = chunk_at(&at->bus->arena, old);
	uint64_t o;

	if (!c)
		return false;
	o = READ_ONCE(c->owner);
	if (SHMBUS_OWNER_STATE(o) == SHMBUS_CHUNK_SHARED)
		return true;
	return SHMBUS_OWNER_STATE(o) == SHMBUS_CHUNK_QUEUED &&
	       atomic_cmpxchg(&c->owner, &o,
			      SHMBUS_OWNER(SHMBUS_OWNER_GEN(o), SHMBUS_CHUNK_HELD,
					   at->slot_idx));
}

/*
 * Out of line: the ring is full and the queue's policy is drop-oldest.
 * Take the oldest message (claiming it as a consumer would: a dead
 * consumer's recovery may race us for it), dead-letter or drop it, and
 * try again.
 */
int enqueue_drop_oldest(struct attachment *at, struct ring *r, uint32_t ref)
{
	for (int n = 0; n < 16; n++) {
		uint32_t old;

		if (ring_dequeue(r, &old) == 0 && claim_dropped(at, old))
			overflow_out(at, old);
		if (ring_enqueue(r, ref) == 0)
			return 0;
	}
	return -ENOBUFS;
}

/*
 * Out of line: the pools were empty; wait as @w allows. With @in_epoch,
 * leaves the caller's epoch section while it waits.
 */
static int alloc_waiting(struct attachment *at, size_t size, uint32_t *ref,
		      struct pub_wait *w, bool in_epoch)
{
	unsigned round = 0;
	int err = -ENOMEM;

	/* the consumers that would free chunks may sleep unwoken */
	wake_owed(at);
	for (;;) {
		if (pub_wait_over(w))
			return err;
		if (in_epoch)
			epoch_exit(at->slot);
		backoff_wait(round++);
		if (in_epoch)
			epoch_enter(&at->bus->arena, at->slot);
		if (!attachment_live(at))
			return -EIDRM;
		err = alloc_chunk(at, size, ref);
		if (err != -ENOMEM)
			return err;
	}
}

/*
 * A publish starts waiting for room in queue @qid (@why: PUB_BLOCKED_*):
 * its slot says so while it waits (counted by shmbus__queue_gauges()),
 * and the pub_blocked probe fires. Returns the start time for
 * pub_blocked_end(): 0 when nobody traces (no clock read).
 */
int64_t pub_blocked_begin(struct attachment *at, uint32_t qid, uint32_t why)
{
	int64_t t = 0;

	WRITE_ONCE(at->slot->blocked, 1);
	if (SHMBUS_PROBE_ON(pub_blocked)) {
		t = now_ns();
		SHMBUS_PROBE6(pub_blocked, at_bus(at), qid, why, 1, (int64_t)0,
			      0);
	}
	return t;
}

/* ... and stops, after waiting since @t (0: untraced then), with @err
 * (0 it went in, or why not). */
void pub_blocked_end(struct attachment *at, uint32_t qid, uint32_t why,
		     int64_t t, int err)
{
	WRITE_ONCE(at->slot->blocked, 0);
	if (SHMBUS_PROBE_ON(pub_blocked))
		SHMBUS_PROBE6(pub_blocked, at_bus(at), qid, why, 0,
			      t ? now_ns() - t : (int64_t)-1, err);
}

int enqueue_slow(struct attachment *at, struct ring *r, uint32_t ref,
		 struct pub_wait *w)
{
	int64_t t;
	int err;

	if (w->timeout == 0)
		return enqueue_waiting(at, r, ref, w);
	t = pub_blocked_begin(at, at->qid, PUB_BLOCKED_FULL);
	err = enqueue_waiting(at, r, ref, w);
	pub_blocked_end(at, at->qid, PUB_BLOCKED_FULL, t, err);
	return err;
}

int alloc_slow(struct attachment *at, size_t size, uint32_t *ref,
	       struct pub_wait *w, bool in_epoch)
{
	int64_t t;
	int err;

	if (w->timeout == 0)
		return alloc_waiting(at, size, ref, w, in_epoch);
	t = pub_blocked_begin(at, at->qid, PUB_BLOCKED_NOMEM);
	err = alloc_waiting(at, size, ref, w, in_epoch);
	pub_blocked_end(at, at->qid, PUB_BLOCKED_NOMEM, t, err);
	return err;
}
