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
#include "room.h"

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

/* ---- claims left behind -------------------------------------------------- */

/*
 * A claimer that dies between its claim of a position (the cmpxchg of a
 * ring's head) and its mark of the cell leaves the cell full behind the
 * head: its message is still there, but no consumer will take it and no
 * producer may reuse the cell (ring.h). Such cells are found here: full
 * for a position the head has passed, not in the noted claim of an
 * attached consumer (a consumer takes its run's messages over many calls,
 * and notes the run in its slot first), and still holding the same value
 * after a grace period (everyone else claims and marks a single position
 * within one epoch section). Each is then retired, and its message put
 * back into its queue as a redelivery.
 *
 * Looked for in the queue of a slot that is released while it may hold a
 * claim (a consumer with a run noted, any slot that died; a topic's
 * producer in every queue: it drops the oldest of its subscriptions), in
 * every queue when a bus is adopted (its dead daemon's own claims), and
 * in a queue whose head the daemon set back (repair.c).
 */
struct claims {
	struct defer_head head;
	uint32_t n, cap;
	struct left {
		uint32_t qid, qgen, level;
		uint64_t pos, v;
	} c[];
};

/* The noted claims of attached consumers of @qid (CLAIMS_ALL: of every
 * queue), for claim_noted(). */
struct notes {
	uint32_t n;
	struct note {
		uint32_t qid, level, count;
		uint64_t from;
	} e[];
};

static struct notes *notes_of(const struct dbus *b, uint32_t qid,
			      uint32_t skip)
{
	const struct arena *a = &b->arena;
	struct notes *ns = calloc(1, sizeof(*ns) +
				     a->max_slots * sizeof(ns->e[0]));

	if (!ns)
		return NULL;
	for (uint32_t si = 0; si < a->max_slots; si++) {
		const struct dslot *ds = &b->slots[si];
		const struct shmbus_slot *s = &a->slots[si];
		uint32_t n;

		if (!ds->conn_id || ds->role != SHMBUS_ROLE_CONSUMER ||
		    (qid != CLAIMS_ALL && ds->qid != qid) || si == skip)
			continue;
		n = READ_ONCE(s->claim_n);
		if (!n)
			continue;
		ns->e[ns->n++] = (struct note){
			.qid = ds->qid,
			.level = READ_ONCE(s->claim_level),
			.count = n,
			.from = READ_ONCE(s->claim_from),
		};
	}
	return ns;
}

static bool claim_noted(const struct notes *ns, uint32_t qid, uint32_t level,
			uint64_t pos)
{
	for (uint32_t k = 0; k < ns->n; k++)
		if (ns->e[k].qid == qid && ns->e[k].level == level &&
		    pos - ns->e[k].from < ns->e[k].count)
			return true;
	return false;
}

/* Position of full cell @v at index @i if the head @h has passed it
 * (within the lap behind it), in *@pos. */
static bool behind_head(const struct ring *r, uint32_t i, uint64_t v,
			uint64_t h, uint64_t *pos)
{
	uint32_t d;

	if (!ring_cell_full(r, i, v))
		return false;
	d = (uint32_t)h - (SHMBUS_CELL_SEQ(v) - 1);
	if (!d || d > r->mask + 1)
		return false;
	*pos = h - d;
	return true;
}

/* Cells one sweep takes on at most: a member that forges full cells
 * behind heads makes the daemon allocate no more than this (32 bytes
 * each) per sweep; what is beyond it the next sweep finds. */
#define CLAIMS_MAX	(1u << 16)

static bool claims_add(struct claims **cp, const struct left *l)
{
	struct claims *c = *cp;

	if (c->n == CLAIMS_MAX)
		return false;
	if (c->n == c->cap) {
		uint32_t cap = c->cap ? 2 * c->cap : 64;
		struct claims *t = realloc(c, sizeof(*c) + cap * sizeof(c->c[0]));

		if (!t)
			return false;
		t->cap = cap;
		*cp = c = t;
	}
	c->c[c->n++] = *l;
	return true;
}

static int left_cmp(const void *x, const void *y)
{
	const struct left *a = x, *b = y;

	return a->pos < b->pos ? -1 : a->pos > b->pos;
}

static void claims_scan_queue(const struct dbus *b, uint32_t qid,
			      const struct notes *ns, struct claims **cp)
{
	const struct dqueue *dq = &b->queues[qid];

	for (uint32_t l = 0; l < dq->nr_prio; l++) {
		uint32_t first = (*cp)->n;
		struct ring r;
		uint64_t h, pos;

		dqueue_ring_level(b, dq, l, &r);
		h = READ_ONCE(*r.head);
		for (uint32_t i = 0; i <= r.mask; i++) {
			uint64_t v = READ_ONCE(r.cells[i].v);

			if (!behind_head(&r, i, v, h, &pos) ||
			    claim_noted(ns, qid, l, pos))
				continue;
			if (!claims_add(cp, &(struct left){ qid, dq->gen, l,
							    pos, v }))
				return;
		}
		/* put back in the order they were published */
		qsort(&(*cp)->c[first], (*cp)->n - first, sizeof((*cp)->c[0]),
		      left_cmp);
	}
}

/* Message @ref of queue @qid (live at @qgen), whose cell we just retired:
 * back into the queue as a redelivery. */
static void left_requeue(struct dbus *b, uint32_t qid, uint32_t qgen,
			 uint32_t ref)
{
	const struct dqueue *dq = &b->queues[qid];
	struct shmbus_chunk *c = chunk_at(&b->arena, ref);
	uint64_t o;

	if (!c) {
		fold(b, qid, SHMBUS_CTR_CORRUPT, 1);
		return;
	}
	o = READ_ONCE(c->owner);
	if (chunk_shared(c)) {
		/* a topic's history drops its oldest: so be it; a
		 * subscription gets its reference back */
		if (dq->kind == DQ_TOPIC)
			chunk_drop(b, ref);
		else
			redeliver(b, qid, qgen, ref, false);
		return;
	}
	if (SHMBUS_OWNER_STATE(o) != SHMBUS_CHUNK_QUEUED) {
		fold(b, qid, SHMBUS_CTR_CORRUPT, 1);
		return;		/* not a message: a peer's garbage */
	}
	if (dq->kind == DQ_INTAKE &&
	    SHMBUS_OWNER_SLOT(o) == SHMBUS_OWNER_DAEMON &&
	    READ_ONCE(c->hold_gen) == SHMBUS_OWNER_GEN(o)) {
		/* the dead daemon was moving it into its queue */
		qid = READ_ONCE(c->hold_qid);
		qgen = READ_ONCE(c->hold_qgen);
	}
	hold_note(c, SHMBUS_OWNER_GEN(o), qid, qgen, now_ns());
	if (!atomic_cmpxchg(&c->owner, &o,
			    SHMBUS_OWNER(SHMBUS_OWNER_GEN(o), SHMBUS_CHUNK_TIMED,
					 SHMBUS_OWNER_DAEMON)))
		return;		/* someone else's now */
	redeliver(b, qid, qgen, ref, false);	/* drops it if gone */
}

/* Retire the full cell @v of position @pos of @r (queue @qid at @qgen)
 * and put its message back. True if the cell still held @v. */
static bool left_retire(struct dbus *b, struct ring *r, uint32_t qid,
			uint32_t qgen, uint64_t pos, uint64_t v)
{
	if (!atomic_cmpxchg(&ring_cell(r, pos)->v, &v,
			    SHMBUS_CELL(pos + r->mask + 1, 0)))
		return false;
	room_made(&b->arena, &b->arena.queues[qid]);
	left_requeue(b, qid, qgen, SHMBUS_CELL_REF(v));
	return true;
}

/* The cell @l names is still left: retire it and put its message back.
 * True if it was. */
static bool claim_finish(struct dbus *b, const struct left *l,
			 const struct notes *ns)
{
	const struct dqueue *dq = &b->queues[l->qid];
	uint64_t pos;
	struct ring r;

	if (!dqueue_is(b, l->qid, l->qgen) || l->level >= dq->nr_prio)
		return false;
	dqueue_ring_level(b, dq, l->level, &r);
	if (!behind_head(&r, ring_cell_index(&r, l->pos), l->v,
			 READ_ONCE(*r.head), &pos) || pos != l->pos ||
	    claim_noted(ns, l->qid, l->level, l->pos))
		return false;
	return left_retire(b, &r, l->qid, l->qgen, l->pos, l->v);
}

static void claims_done(struct dbus *b, struct defer_head *h, bool gp_over)
{
	struct claims *c = container_of(h, struct claims, head);
	struct notes *ns;
	unsigned put = 0;

	if (!gp_over)
		goto out;
	ns = notes_of(b, CLAIMS_ALL, UINT32_MAX);
	if (!ns)
		goto out;	/* no memory: the next look finds them */
	for (uint32_t k = 0; k < c->n; k++)
		put += claim_finish(b, &c->c[k], ns);
	free(ns);
	if (put)
		log_info("bus '%s': %u messages a gone claimer had taken from "
			 "the head of a ring and not marked put back", b->name,
			 put);
out:
	free(c);
}

void claims_sweep(struct dbus *b, uint32_t qid)
{
	struct claims *c = calloc(1, sizeof(*c));
	struct notes *ns;

	if (!c)
		return;
	ns = notes_of(b, qid, UINT32_MAX);
	if (!ns) {
		free(c);
		return;
	}
	for (uint32_t q = 0; q < b->arena.max_queues; q++) {
		const struct dqueue *dq = &b->queues[q];

		if ((qid == CLAIMS_ALL || q == qid) && dq->live && !dq->damaged)
			claims_scan_queue(b, q, ns, &c);
	}
	free(ns);
	if (!c->n) {
		free(c);
		return;
	}
	defer(b, &c->head, claims_done);
}

/*
 * Give back what is left of consumer slot @si's noted run {@level,
 * @from, @n}: the cells still full hold the messages it has not taken, a
 * suffix of the run (it takes in order). If nobody claimed after it, the
 * head is set back to the first of them (they keep their place), else
 * each is retired and its message redelivered. Positions another
 * consumer noted are left alone (a note of a claim that failed names the
 * winner's run). Safe while the consumer still runs: it takes each
 * message with a cmpxchg of its cell, so exactly one of us has it.
 */
static void run_give_back(struct dbus *b, uint32_t si, uint32_t level,
			  uint64_t from, uint32_t n)
{
	const struct dslot *ds = &b->slots[si];
	const struct dqueue *dq = &b->queues[ds->qid];
	struct notes *ns;
	bool others = false;
	uint32_t k, j;
	struct ring r;
	uint64_t h;

	if (!dqueue_is(b, ds->qid, ds->qgen) || level >= dq->nr_prio ||
	    dq->damaged)
		return;
	dqueue_ring_level(b, dq, level, &r);
	if (n > RING_RUN_MAX)
		n = RING_RUN_MAX;
	if (n > r.mask + 1)
		n = r.mask + 1;
	for (k = 0; k < n; k++)
		if (SHMBUS_CELL_SEQ(READ_ONCE(ring_cell(&r, from + k)->v)) ==
		    (uint32_t)(from + k + 1))
			break;
	if (k == n)
		return;		/* all taken: nothing to give back */
	ns = notes_of(b, ds->qid, si);
	if (!ns) {
		claims_sweep(b, ds->qid);	/* no memory: later */
		return;
	}
	for (j = 0; j < n; j++)
		others |= claim_noted(ns, ds->qid, level, from + j);
	for (j = k; j < n; j++)
		if (SHMBUS_CELL_SEQ(READ_ONCE(ring_cell(&r, from + j)->v)) !=
		    (uint32_t)(from + j + 1))
			break;
	h = from + n;
	if (j == n && !others &&
	    atomic_cmpxchg(r.head, &h, from + k)) {
		/* nobody claimed after it: the positions are unclaimed
		 * again, and keep their place in the queue */
		dq_wake(b, ds->qid);
	} else if (!others) {
		for (j = k; j < n; j++) {
			uint64_t v = READ_ONCE(ring_cell(&r, from + j)->v);
			uint64_t pos;

			if (behind_head(&r, ring_cell_index(&r, from + j), v,
					READ_ONCE(*r.head), &pos) &&
			    pos == from + j)
				left_retire(b, &r, ds->qid, ds->qgen, pos, v);
		}
	}
	free(ns);
}

void claims_release(struct dbus *b, uint32_t si)
{
	struct shmbus_slot *s = &b->arena.slots[si];
	uint32_t n = READ_ONCE(s->claim_n), level = READ_ONCE(s->claim_level);
	uint64_t from = READ_ONCE(s->claim_from);

	b->slots[si].run_n = 0;
	if (!n)
		return;
	WRITE_ONCE(s->claim_n, 0);
	run_give_back(b, si, level, from, n);
}

void claims_held(struct dbus *b, uint32_t si, int64_t now)
{
	struct shmbus_slot *s = &b->arena.slots[si];
	struct dslot *ds = &b->slots[si];
	uint32_t n = READ_ONCE(s->claim_n), level = READ_ONCE(s->claim_level);
	uint64_t from = READ_ONCE(s->claim_from);

	if (n != ds->run_n || from != ds->run_from) {
		/* a new run (or none): held since now */
		ds->run_n = n;
		ds->run_from = from;
		ds->run_since = now;
		return;
	}
	if (!n || now - ds->run_since < RUN_HOLD_NS)
		return;
	/* held too long: an idle consumer's run would keep its messages
	 * from the others and its cells from the producers */
	if (READ_ONCE(s->claim_from) == from)
		WRITE_ONCE(s->claim_n, 0);
	ds->run_n = 0;
	run_give_back(b, si, level, from, n);
}
