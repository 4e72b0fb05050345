// SPDX-License-Identifier: MIT
/*
 * timers.c - chunks the daemon holds until they are due: delayed
 * publishes, nacks with a delay, redeliveries waiting out their backoff,
 * and messages waiting for room in a full ring. One min-heap per bus, by
 * due time; each entry names its queue by (qid, gen), so a queue deleted
 * meanwhile is noticed when the timer fires.
 *
 * While the daemon holds a chunk it is TIMED, owned by SHMBUS_OWNER_DAEMON,
 * and its hold record (layout.h) says where and when it goes: the heap is
 * the daemon's index of those records, which a daemon that adopts the bus
 * rebuilds from the chunks (adopt_held()).
 */
#include <stdlib.h>

#include "shmbusd.h"
#include "pool.h"

static void heap_swap(struct timer *h, size_t i, size_t j)
{
	struct timer t = h[i];

	h[i] = h[j];
	h[j] = t;
}

static void heap_up(struct timer *h, size_t i)
{
	while (i && h[(i - 1) / 2].due > h[i].due) {
		heap_swap(h, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void heap_down(struct timer *h, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, m = i;

		if (l < n && h[l].due < h[m].due)
			m = l;
		if (l + 1 < n && h[l + 1].due < h[m].due)
			m = l + 1;
		if (m == i)
			return;
		heap_swap(h, i, m);
		i = m;
	}
}

/* Queue @qid holds @d more (or fewer) timers: its count, and the arena's
 * copy for readers (stat, metrics). */
static void timed_add(struct dbus *b, uint32_t qid, int d)
{
	struct dqueue *dq;

	if (qid >= b->arena.max_queues)
		return;
	dq = &b->queues[qid];
	if (d < 0 && dq->timed < (uint64_t)-d)
		dq->timed = 0;
	else
		dq->timed += (uint64_t)(int64_t)d;
	WRITE_ONCE(b->arena.queues[qid].timed, dq->timed);
}

static void heap_remove(struct dbus *b, size_t i)
{
	struct timer *h = b->timers;

	timed_add(b, h[i].qid, -1);
	h[i] = h[--b->nr_timers];
	if (i < b->nr_timers) {
		heap_up(h, i);
		heap_down(h, b->nr_timers, i);
	}
}

void hold_note(struct shmbus_chunk *c, uint32_t gen, uint32_t qid,
	       uint32_t qgen, int64_t due)
{
	/* no ordering: only a later daemon reads it, after this one died */
	WRITE_ONCE(c->hold_qid, qid);
	WRITE_ONCE(c->hold_qgen, qgen);
	WRITE_ONCE(c->hold_due, (uint64_t)due);
	WRITE_ONCE(c->hold_gen, gen);
}

void timer_add(struct dbus *b, uint32_t qid, uint32_t qgen, uint32_t ref,
	       int64_t due)
{
	struct shmbus_chunk *c = chunk_at(&b->arena, ref);

	if (c && !chunk_shared(c))
		hold_note(c, SHMBUS_OWNER_GEN(READ_ONCE(c->owner)), qid, qgen,
			  due);
	if (b->nr_timers == b->timers_cap) {
		size_t cap = b->timers_cap ? 2 * b->timers_cap : 256;
		struct timer *h = realloc(b->timers, cap * sizeof(*h));

		if (!h) {
			/* cannot hold it: drop it, loudly and counted */
			log_err("bus '%s': out of memory for a timer; message "
				"dropped", b->name);
			fold(b, qid, SHMBUS_CTR_DROPPED, 1);
			chunk_drop(b, ref);
			return;
		}
		b->timers = h;
		b->timers_cap = cap;
	}
	b->timers[b->nr_timers] = (struct timer){ due, qid, qgen, ref };
	heap_up(b->timers, b->nr_timers++);
	timed_add(b, qid, 1);
}

void timers_drop(struct dbus *b, uint32_t qid)
{
	size_t i = 0;

	while (i < b->nr_timers) {
		if (qid != UINT32_MAX && b->timers[i].qid != qid) {
			i++;
			continue;
		}
		if (qid != UINT32_MAX)
			chunk_drop(b, b->timers[i].ref);
		heap_remove(b, i);
	}
}

void timers_mark(const struct dbus *b, uint8_t *bits, const uint64_t *pool_base)
{
	for (size_t i = 0; i < b->nr_timers; i++) {
		uint32_t ref = b->timers[i].ref, pi = SHMBUS_REF_POOL(ref);
		uint64_t bit;

		if (!chunk_at(&b->arena, ref))
			continue;
		bit = pool_base[pi] + SHMBUS_REF_IDX(ref);
		bits[bit / 8] |= 1u << (bit % 8);
	}
}

static bool expired(const struct shmbus_chunk *c, int64_t now)
{
	uint64_t e = READ_ONCE(c->expires_ns);

	return e && (uint64_t)now >= e;
}

/* Timer @t is due: into the ring (unless it expired meanwhile). */
static void timer_fire(struct dbus *b, const struct timer *t, int64_t now)
{
	struct shmbus_chunk *c = chunk_at(&b->arena, t->ref);

	if (!c)
		return;
	if (!dqueue_is(b, t->qid, t->qgen)) {
		chunk_drop(b, t->ref);
		return;
	}
	if (expired(c, now)) {
		dead_letter(b, t->qid, t->ref, SHMBUS_DLR_EXPIRED);
		return;
	}
	if (!ring_put(b, t->qid, t->ref))
		timer_add(b, t->qid, t->qgen, t->ref, now + RETRY_FULL_NS);
}

int64_t timers_run(struct dbus *b, int64_t now)
{
	while (b->nr_timers && b->timers[0].due <= now) {
		struct timer t = b->timers[0];

		heap_remove(b, 0);
		timer_fire(b, &t, now);
	}
	return b->nr_timers ? b->timers[0].due : INT64_MAX;
}
