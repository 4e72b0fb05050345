// SPDX-License-Identifier: MIT
/*
 * reclaim.c - chunks a killed process leaves in flight.
 *
 * Most of what a dead slot held is plainly its own and comes back at once
 * (slot.c: its cache, its LOANED and HELD chunks). One more window is
 * closed here: a producer killed after filling a chunk (state QUEUED, its
 * slot in the owner word) and before the ring cmpxchg that publishes it
 * leaves a chunk that is QUEUED and in no ring, owned by nobody.
 *
 * A sweep finds such chunks: candidates are QUEUED chunks whose owner word
 * names the dead slot and that no ring references; note each one's exact
 * owner word; wait for a grace period (defer.c; a live consumer that had just taken
 * one from a ring, and not yet marked it HELD, has done so by then: taking
 * and marking happen in one epoch section); then free each candidate whose
 * owner word is still the one noted, with a cmpxchg. The word carries the
 * chunk's generation, so a chunk freed and reused meanwhile never matches
 * (no ABA). Only the dead producer could put a candidate into a ring, so
 * none can appear in one later.
 *
 * A consumer's death opens the same window twice. A consumer killed while
 * putting a nacked message back (QUEUED with its slot, in no ring) and one
 * killed between its ring cmpxchg and marking the chunk HELD (QUEUED with
 * the producer's slot, in no ring; its delivery table names it, since the
 * ref is noted there before the ring cmpxchg) leave a message nobody will
 * deliver. Those candidates are requeued, not freed, after the grace
 * period, and only if they are still in no ring then (a producer may have
 * been publishing a chunk a stale table entry names) and the daemon wins a
 * cmpxchg on the owner word against a consumer that may be marking it.
 *
 * A dead producer's dedup keys still PENDING are settled here too
 * (dedup.c): one whose chunk the sweep frees never went in; the others
 * did, once the sweep is over.
 *
 * Not covered: a kill within two or three
 * instructions of a magazine moving between a slot cache and a pool's
 * shared list (up to 16 free chunks). Such chunks are owned by nobody; they
 * come back when the bus goes idle (no handle attached): then every chunk
 * no ring references is free, and pools_rebuild() relinks the free lists
 * from that fact alone.
 */
#include <stdlib.h>
#include <string.h>

#include "shmbusd.h"
#include "epoch.h"
#include "pool.h"
#include "ring.h"

/* candidates of one sweep, at most: a slot fills or requeues one chunk at
 * a time (a handful), plus a consumer's lease table entries */
#define SWEEP_MAX	(16 + SHMBUS_LEASE_MAX)

struct sweep {
	struct defer_head head;	/* waiting for a grace period */
	uint32_t qid, qgen;	/* the dead slot's queue */
	uint32_t slot, slot_gen;	/* the dead slot (its dedup keys) */
	bool requeue;		/* a consumer's: requeue, do not free */
	bool by_hold;		/* a dead daemon's: each to the queue its
				 * hold record names (adopt_held()) */
	uint32_t n;
	struct cand {
		uint32_t ref;
		uint64_t owner;
	} c[];
};

/*
 * One bit per chunk of the bus, set for refs sitting in a full ring cell
 * of a live or not yet reclaimed queue, and for chunks the daemon holds.
 * Ring geometry comes from the daemon's records; only the cells are read
 * from the arena, and every ref is range-checked.
 */
static uint8_t *refs_in_rings(const struct dbus *b, uint64_t *pool_base)
{
	const struct arena *a = &b->arena;
	uint64_t total = 0;
	uint8_t *bits;

	for (unsigned pi = 0; pi < a->nr_pools; pi++) {
		pool_base[pi] = total;
		total += a->pool[pi].nr_chunks;
	}
	bits = calloc(total / 8 + 1, 1);
	if (!bits)
		return NULL;
	for (uint32_t qid = 0; qid < a->max_queues; qid++) {
		const struct dqueue *dq = &b->queues[qid];
		struct ring r;

		if (!dq->live && !dq->reclaim_pending)
			continue;
		for (uint32_t l = 0; l < dq->nr_prio; l++) {
			dqueue_ring_level(b, dq, l, &r);
			for (uint32_t i = 0; i <= r.mask; i++) {
				uint64_t v = READ_ONCE(r.cells[i].v);
				uint32_t ref = SHMBUS_CELL_REF(v), pi, ci;

				if (!ring_cell_full(&r, i, v))
					continue;
				pi = SHMBUS_REF_POOL(ref);
				ci = SHMBUS_REF_IDX(ref);
				if (pi >= a->nr_pools || ci >= a->pool[pi].nr_chunks)
					continue;
				bits[(pool_base[pi] + ci) / 8] |=
					1u << ((pool_base[pi] + ci) % 8);
			}
		}
	}
	timers_mark(b, bits, pool_base);
	return bits;
}

static bool bit_set(const uint8_t *bits, uint64_t bit)
{
	return bits[bit / 8] & (1u << (bit % 8));
}

bool pools_rebuild(struct dbus *b)
{
	const struct arena *a = &b->arena;
	uint64_t pool_base[SHMBUS_MAX_POOLS], expect = 0, have = 0, lost;
	uint8_t *inring;

	for (uint32_t s = 0; s < a->max_slots; s++)
		if (b->slots[s].conn_id)
			return false;		/* not idle */
	if (b->sweeps)
		return false;		/* a sweep still owns some */
	inring = refs_in_rings(b, pool_base);
	if (!inring)
		return false;
	for (unsigned pi = 0; pi < a->nr_pools; pi++) {
		for (uint32_t i = 0; i < a->pool[pi].nr_chunks; i++)
			expect += !bit_set(inring, pool_base[pi] + i);
		have += READ_ONCE(a->pool[pi].desc->free_count);
	}
	if (have == expect) {
		free(inring);
		return false;			/* nothing missing */
	}
	lost = have < expect ? expect - have : 0;
	/* Nobody is attached: nothing but us touches the pools. Every chunk
	 * outside the rings is free; relink them all. */
	for (unsigned pi = 0; pi < a->nr_pools; pi++) {
		struct shmbus_pool *pd = a->pool[pi].desc;
		uint32_t mag[POOL_MAG_MAX], n = 0;

		pd->free_head = (pd->free_head & ~0xffffffffULL) + (1ULL << 32);
		pd->free_count = 0;
		for (uint32_t i = 0; i < a->pool[pi].nr_chunks; i++) {
			if (bit_set(inring, pool_base[pi] + i))
				continue;
			chunk_set(pool_chunk(a, pi, i), SHMBUS_CHUNK_FREE, 0);
			mag[n++] = i;
			if (n == POOL_MAG_MAX) {
				pool_push_global(a, pi, mag, n);
				n = 0;
			}
		}
		pool_push_global(a, pi, mag, n);
	}
	free(inring);
	log_info("bus '%s': idle; relinked the free lists (%llu lost chunks "
		 "recovered)", b->name, (unsigned long long)lost);
	return true;
}

static bool sweep_add(struct sweep *sw, uint32_t ref, uint64_t o)
{
	for (uint32_t k = 0; k < sw->n; k++)
		if (sw->c[k].ref == ref)
			return true;
	if (sw->n == SWEEP_MAX)
		return false;	/* garbage owners: the idle relink will
				 * sort them out */
	sw->c[sw->n].ref = ref;
	sw->c[sw->n].owner = o;
	sw->n++;
	return true;
}

/* Candidates of dead slot @si: QUEUED chunks it owns that no ring
 * holds, then the QUEUED chunks of @cand (its delivery table) no ring
 * holds, as many as @sw has room for. */
static void sweep_collect(const struct dbus *b, uint32_t si,
			  const uint32_t *cand, unsigned ncand,
			  const uint8_t *inring, const uint64_t *pool_base,
			  struct sweep *sw)
{
	const struct arena *a = &b->arena;

	for (unsigned pi = 0; pi < a->nr_pools; pi++) {
		for (uint32_t i = 0; i < a->pool[pi].nr_chunks; i++) {
			uint64_t o = READ_ONCE(pool_chunk(a, pi, i)->owner);

			if (SHMBUS_OWNER_STATE(o) != SHMBUS_CHUNK_QUEUED ||
			    SHMBUS_OWNER_SLOT(o) != si ||
			    bit_set(inring, pool_base[pi] + i))
				continue;
			if (!sweep_add(sw, SHMBUS_REF(pi, i), o))
				return;
		}
	}
	for (unsigned k = 0; k < ncand; k++) {
		uint32_t ref = cand[k], pi = SHMBUS_REF_POOL(ref);
		struct shmbus_chunk *c = chunk_at(a, ref);
		uint64_t o;

		if (!c || bit_set(inring, pool_base[pi] + SHMBUS_REF_IDX(ref)))
			continue;
		o = READ_ONCE(c->owner);
		if (SHMBUS_OWNER_STATE(o) == SHMBUS_CHUNK_QUEUED &&
		    !sweep_add(sw, ref, o))
			break;
	}
}

static void sweep_finish(struct dbus *b, struct defer_head *h, bool gp_over);

bool sweep_start(struct dbus *b, uint32_t si, const uint32_t *cand,
		 unsigned ncand)
{
	const struct dslot *ds = &b->slots[si];
	bool producer = ds->role == SHMBUS_ROLE_PRODUCER;
	uint64_t pool_base[SHMBUS_MAX_POOLS];
	struct sweep *sw;
	uint8_t *inring;

	/* filter by the rings first, so that a producer with many queued
	 * messages does not crowd its orphan out */
	inring = refs_in_rings(b, pool_base);
	if (!inring)
		goto settle;
	/* a slot fills or requeues one chunk at a time: a handful of
	 * candidates, plus the consumer's table entries */
	sw = calloc(1, sizeof(*sw) + SWEEP_MAX * sizeof(sw->c[0]));
	if (sw)
		sweep_collect(b, si, cand, ncand, inring, pool_base, sw);
	free(inring);
	if (!sw)
		goto settle;
	if (!sw->n) {
		free(sw);
		goto settle;
	}
	/* keep what was found, not the room for the most there could be */
	{
		struct sweep *t = realloc(sw, sizeof(*sw) +
					  sw->n * sizeof(sw->c[0]));

		if (t)
			sw = t;
	}
	sw->qid = ds->qid;
	sw->qgen = ds->qgen;
	sw->slot = si;
	sw->slot_gen = ds->gen;
	sw->requeue = !producer;
	b->sweeps++;
	log_debug("bus '%s': sweeping %u possible orphans of slot %u", b->name,
		  sw->n, si);
	defer(b, &sw->head, sweep_finish);
	return true;
settle:
	/* no orphan to wait for: a producer's pending keys went in */
	if (producer)
		dedup_settle(b, ds->qid, ds->qgen, si, ds->gen);
	return false;
}

/* Candidate @k of @sw, still an orphan after the grace period: requeued
 * (a consumer's) or freed (a producer's). True if it was. */
static bool sweep_one(struct dbus *b, const struct sweep *sw, uint32_t k,
		      const uint8_t *inring, const uint64_t *pool_base,
		      uint64_t *keys, unsigned *nkeys)
{
	const struct arena *a = &b->arena;
	uint32_t ref = sw->c[k].ref, idx = SHMBUS_REF_IDX(ref);
	struct shmbus_chunk *c = chunk_at(a, ref);
	uint64_t o = sw->c[k].owner;

	if (!c)
		return false;
	if (sw->requeue) {
		uint32_t qid = sw->qid, qgen = sw->qgen;

		if (bit_set(inring, pool_base[SHMBUS_REF_POOL(ref)] + idx))
			return false;
		if (!sw->by_hold) {
			hold_note(c, SHMBUS_OWNER_GEN(o), qid, qgen, now_ns());
		} else if (READ_ONCE(c->hold_gen) == SHMBUS_OWNER_GEN(o)) {
			qid = READ_ONCE(c->hold_qid);
			qgen = READ_ONCE(c->hold_qgen);
		} else {
			qid = UINT32_MAX;	/* no record: dropped below */
		}
		if (!atomic_cmpxchg(&c->owner, &o,
				    SHMBUS_OWNER(SHMBUS_OWNER_GEN(o),
						 SHMBUS_CHUNK_TIMED,
						 SHMBUS_OWNER_DAEMON)))
			return false;
		if (!dqueue_is(b, qid, qgen))
			log_warn("bus '%s': a message the previous daemon was "
				 "putting into a queue that is gone (or not "
				 "named) is dropped", b->name);
		redeliver(b, qid, qgen, ref, false);	/* drops it if gone */
		return true;
	}
	if (!atomic_cmpxchg(&c->owner, &o,
			    SHMBUS_OWNER(SHMBUS_OWNER_GEN(o),
					 SHMBUS_CHUNK_FREE, 0)))
		return false;	/* someone owns it: not an orphan */
	/* its message never went in: nor did its dedup key (settled with
	 * the others, in one pass over the table) */
	keys[*nkeys] = READ_ONCE(c->dedup_key);
	*nkeys += keys[*nkeys] != 0;
	pool_push_global(a, SHMBUS_REF_POOL(ref), &idx, 1);
	return true;
}

/* The grace period of sweep @h is over (defer.c): whatever is still an
 * orphan is one. */
static void sweep_finish(struct dbus *b, struct defer_head *h, bool gp_over)
{
	struct sweep *sw = container_of(h, struct sweep, head);
	uint64_t pool_base[SHMBUS_MAX_POOLS];
	uint64_t keys[SWEEP_MAX];
	uint8_t *inring = NULL;
	unsigned freed = 0, nkeys = 0;

	b->sweeps--;
	if (!gp_over)
		goto out;	/* the bus is going away */
	if (sw->requeue) {
		/* producers that were publishing a candidate have put it
		 * into a ring by now: look again */
		inring = refs_in_rings(b, pool_base);
		if (!inring)
			goto out;	/* no memory: leave them */
	}
	for (uint32_t k = 0; k < sw->n; k++)
		freed += sweep_one(b, sw, k, inring, pool_base, keys, &nkeys);
	free(inring);
	if (sw->by_hold) {
		if (freed)
			log_info("bus '%s': %u messages the previous daemon was "
				 "moving requeued", b->name, freed);
		goto out;
	}
	dedup_orphans(b, sw->qid, sw->qgen, sw->slot, sw->slot_gen, keys,
		      nkeys);
	if (!sw->requeue)
		dedup_settle(b, sw->qid, sw->qgen, sw->slot, sw->slot_gen);
	if (freed && dqueue_is(b, sw->qid, sw->qgen)) {
		struct shmbus_queue *q = &b->arena.queues[sw->qid];

		WRITE_ONCE(q->folded[SHMBUS_CTR_RECLAIMED],
			   q->folded[SHMBUS_CTR_RECLAIMED] + freed);
	}
	if (freed)
		log_info("bus '%s': %u orphaned chunks %s", b->name, freed,
			 sw->requeue ? "requeued" : "reclaimed");
out:
	/* a consumer's slot, kept DEAD with its table for a daemon that
	 * would have to do this again, is free now */
	if (gp_over && sw->requeue && !sw->by_hold)
		slot_swept(b, sw->slot, sw->slot_gen);
	free(sw);
	if (gp_over)
		pools_rebuild(b);
}

/* ---- a dead daemon's chunks ------------------------------------------- */

/* Chunk @ref (TIMED, the dead daemon's): back on its timer, by its hold
 * record; dropped if its queue is gone (as a delete would have). True if
 * it was re-armed. */
static bool held_rearm(struct dbus *b, uint32_t ref, uint64_t o)
{
	struct shmbus_chunk *c = chunk_at(&b->arena, ref);
	uint32_t qid = READ_ONCE(c->hold_qid), qgen = READ_ONCE(c->hold_qgen);
	int64_t due = (int64_t)READ_ONCE(c->hold_due);

	if (!dqueue_is(b, qid, qgen)) {
		if (READ_ONCE(c->hold_gen) != SHMBUS_OWNER_GEN(o))
			log_warn("bus '%s': a message the previous daemon held "
				 "has no hold record; dropped", b->name);
		chunk_drop(b, ref);
		return false;
	}
	/* an old record (a daemon killed between taking the chunk and
	 * writing it) still names a live queue of this bus: at least once */
	if (READ_ONCE(c->hold_gen) != SHMBUS_OWNER_GEN(o))
		due = 0;
	timer_add(b, qid, qgen, ref, due);
	return true;
}

unsigned adopt_held(struct dbus *b)
{
	const struct arena *a = &b->arena;
	uint64_t pool_base[SHMBUS_MAX_POOLS];
	unsigned armed = 0;
	struct sweep *sw;
	uint8_t *inring;

	for (unsigned pi = 0; pi < a->nr_pools; pi++) {
		for (uint32_t i = 0; i < a->pool[pi].nr_chunks; i++) {
			uint64_t o = READ_ONCE(pool_chunk(a, pi, i)->owner);

			if (SHMBUS_OWNER_SLOT(o) == SHMBUS_OWNER_DAEMON &&
			    SHMBUS_OWNER_STATE(o) == SHMBUS_CHUNK_TIMED)
				armed += held_rearm(b, SHMBUS_REF(pi, i), o);
		}
	}
	/* the ones it was putting into a ring: QUEUED, ours, in no ring
	 * (after the timers above are marked) */
	inring = refs_in_rings(b, pool_base);
	sw = calloc(1, sizeof(*sw) + SWEEP_MAX * sizeof(sw->c[0]));
	if (!inring || !sw) {
		log_err("bus '%s': out of memory looking for messages the "
			"previous daemon was moving", b->name);
		free(inring);
		free(sw);
		return armed;
	}
	sweep_collect(b, SHMBUS_OWNER_DAEMON, NULL, 0, inring, pool_base, sw);
	free(inring);
	if (!sw->n) {
		free(sw);
		return armed;
	}
	sw->requeue = true;
	sw->by_hold = true;
	sw->qid = UINT32_MAX;
	sw->slot = SHMBUS_OWNER_DAEMON;
	b->sweeps++;
	defer(b, &sw->head, sweep_finish);
	return armed;
}
