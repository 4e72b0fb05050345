// SPDX-License-Identifier: MIT
/*
 * reclaim.c - chunks a killed process leaves in flight.
 *
 * Most of what a dead slot held is plainly its own and comes back at once
 * (busmgr.c: its cache, its LOANED and HELD chunks). Two windows remain
 * where a chunk belongs to nobody and no list holds it:
 *
 *  - a producer killed after filling a chunk (state QUEUED, slot = its
 *    slot) and before the ring cmpxchg that publishes it;
 *  - a consumer killed after the ring cmpxchg that took a chunk and before
 *    marking it HELD (it recorded the ref in slot->taking first).
 *
 * Such a chunk is QUEUED and in no ring. But so, for an instant, is a
 * chunk a live consumer has just taken (it marks it HELD right after, in
 * the same epoch section). Hence a sweep: note the candidates and the exact
 * owner word of each, drop those found in a ring, wait for a grace period
 * (every section that was running has ended, so a live taker has marked
 * its chunk HELD), then free each candidate whose owner word is still the
 * one noted, with a cmpxchg. The word carries the chunk's generation, so a
 * chunk freed and reused meanwhile never matches (no ABA). Only the dead
 * can publish a candidate into a ring, so none appears in a ring later.
 *
 * What neither catches: a kill within two or three instructions of a
 * magazine moving between a slot cache and a pool's shared list (pool.c)
 * loses up to 16 free chunks. Those come back when the bus goes idle (no
 * handle attached): then every chunk that no ring references is free, and
 * pools_rebuild() relinks the free lists from that fact alone.
 */
#include <stdlib.h>
#include <string.h>

#include "shmbusd.h"
#include "epoch.h"
#include "pool.h"
#include "ring.h"

struct sweep {
	struct sweep *next;
	struct dbus *bus;
	uint64_t gp;		/* grace period target */
	uint32_t qid, qgen;	/* the dead slot's queue, for counting */
	uint32_t n;
	struct cand {
		uint32_t ref;
		uint64_t owner;
	} c[];
};

static struct sweep *sweeps;

/* One bit per chunk of the bus: set for refs sitting in a full ring cell. */
static uint8_t *refs_in_rings(const struct dbus *b, uint64_t *base_of_pool)
{
	const struct arena *a = &b->arena;
	uint64_t total = 0;
	uint8_t *bits;

	for (unsigned pi = 0; pi < a->nr_pools; pi++) {
		base_of_pool[pi] = total;
		total += a->pool[pi].nr_chunks;
	}
	bits = calloc(total / 8 + 1, 1);
	if (!bits)
		return NULL;
	for (uint32_t qid = 0; qid < a->max_queues; qid++) {
		const struct shmbus_queue *q = &a->queues[qid];
		struct ring r;

		if (!SHMBUS_QGEN_LIVE(q->gen) && !b->queues[qid].reclaim_pending)
			continue;
		if (arena_queue_ring(a, q, &r))
			continue;
		for (uint32_t i = 0; i <= r.mask; i++) {
			uint64_t v = READ_ONCE(r.cells[i].v);
			uint32_t ref = SHMBUS_CELL_REF(v), pi, ci;

			if (!ring_cell_full(&r, i, v))
				continue;
			pi = SHMBUS_REF_POOL(ref);
			ci = SHMBUS_REF_IDX(ref);
			if (pi >= a->nr_pools || ci >= a->pool[pi].nr_chunks)
				continue;
			bits[(base_of_pool[pi] + ci) / 8] |=
				1u << ((base_of_pool[pi] + ci) % 8);
		}
	}
	return bits;
}

bool pools_rebuild(struct dbus *b)
{
	const struct arena *a = &b->arena;
	uint64_t pool_base[SHMBUS_MAX_POOLS], expect = 0, have = 0, lost;
	uint8_t *inring;

	for (uint32_t s = 0; s < a->max_slots; s++)
		if (b->slot_conn[s])
			return false;		/* not idle */
	for (struct sweep *sw = sweeps; sw; sw = sw->next)
		if (sw->bus == b)
			return false;		/* a sweep still owns some */
	inring = refs_in_rings(b, pool_base);
	if (!inring)
		return false;
	for (unsigned pi = 0; pi < a->nr_pools; pi++) {
		for (uint32_t i = 0; i < a->pool[pi].nr_chunks; i++) {
			uint64_t bit = pool_base[pi] + i;

			if (!(inring[bit / 8] & (1u << (bit % 8))))
				expect++;
		}
		have += READ_ONCE(a->pool[pi].desc->free_count);
	}
	if (have >= expect) {
		free(inring);
		return false;			/* nothing missing */
	}
	lost = expect - have;
	/* Nobody is attached: nothing but us touches the pools. Every chunk
	 * outside the rings is free; relink them all. */
	for (unsigned pi = 0; pi < a->nr_pools; pi++) {
		struct shmbus_pool *pd = a->pool[pi].desc;
		uint32_t mag[POOL_MAG_MAX], n = 0;

		pd->free_head = (pd->free_head & ~0xffffffffULL) + (1ULL << 32);
		pd->free_count = 0;
		for (uint32_t i = 0; i < a->pool[pi].nr_chunks; i++) {
			uint64_t bit = pool_base[pi] + i;

			if (inring[bit / 8] & (1u << (bit % 8)))
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
	log_info("bus '%s': idle; relinked the free lists, %llu lost chunks "
		 "recovered", b->name, (unsigned long long)lost);
	return true;
}

static bool add_cand(struct sweep *sw, uint32_t cap, uint32_t ref,
		     uint64_t owner)
{
	if (sw->n == cap)
		return false;
	sw->c[sw->n].ref = ref;
	sw->c[sw->n].owner = owner;
	sw->n++;
	return true;
}

bool sweep_start(struct dbus *b, uint32_t si, uint32_t taking)
{
	const struct arena *a = &b->arena;
	const struct shmbus_slot *s = &a->slots[si];
	uint64_t pool_base[SHMBUS_MAX_POOLS];
	const uint32_t cap = 1024;
	struct sweep *sw;
	uint8_t *inring;
	uint32_t kept = 0;

	sw = calloc(1, sizeof(*sw) + cap * sizeof(sw->c[0]));
	if (!sw)
		return false;
	sw->bus = b;
	sw->qid = s->qid;
	sw->qgen = s->qgen;
	/* the dead producer's filled but unpublished chunks */
	for (unsigned pi = 0; pi < a->nr_pools; pi++) {
		for (uint32_t i = 0; i < a->pool[pi].nr_chunks; i++) {
			uint64_t o = READ_ONCE(pool_chunk(a, pi, i)->owner);

			if (SHMBUS_OWNER_STATE(o) == SHMBUS_CHUNK_QUEUED &&
			    SHMBUS_OWNER_SLOT(o) == si)
				add_cand(sw, cap, SHMBUS_REF(pi, i), o);
		}
	}
	/* the dead consumer's half-taken chunk */
	if (taking) {
		struct shmbus_chunk *c = chunk_at(a, taking - 1);
		uint64_t o = c ? READ_ONCE(c->owner) : 0;

		if (c && SHMBUS_OWNER_STATE(o) == SHMBUS_CHUNK_QUEUED)
			add_cand(sw, cap, taking - 1, o);
	}
	if (!sw->n) {
		free(sw);
		return false;
	}
	/* those in a ring are published messages, not orphans */
	inring = refs_in_rings(b, pool_base);
	if (!inring) {
		free(sw);
		return false;
	}
	for (uint32_t k = 0; k < sw->n; k++) {
		uint32_t ref = sw->c[k].ref;
		uint64_t bit = pool_base[SHMBUS_REF_POOL(ref)] + SHMBUS_REF_IDX(ref);

		if (!(inring[bit / 8] & (1u << (bit % 8))))
			sw->c[kept++] = sw->c[k];
	}
	free(inring);
	sw->n = kept;
	if (!sw->n) {
		free(sw);
		return false;
	}
	sw->gp = epoch_gp_start(a);
	sw->next = sweeps;
	sweeps = sw;
	log_debug("bus '%s': sweeping %u possible orphans of slot %u", b->name,
		  sw->n, si);
	return true;
}

static void sweep_finish(struct sweep *sw)
{
	const struct arena *a = &sw->bus->arena;
	struct shmbus_queue *q = queue_at(a, sw->qid);
	unsigned freed = 0;

	for (uint32_t k = 0; k < sw->n; k++) {
		struct shmbus_chunk *c = chunk_at(a, sw->c[k].ref);
		uint64_t o = sw->c[k].owner;
		uint32_t idx = SHMBUS_REF_IDX(sw->c[k].ref);

		if (!c || !atomic_cmpxchg(&c->owner, &o,
					  SHMBUS_OWNER(SHMBUS_OWNER_GEN(o),
						       SHMBUS_CHUNK_FREE, 0)))
			continue;	/* someone owns it: not an orphan */
		pool_push_global(a, SHMBUS_REF_POOL(sw->c[k].ref), &idx, 1);
		freed++;
	}
	if (freed && q && q->gen == sw->qgen)
		WRITE_ONCE(q->folded[SHMBUS_CTR_RECLAIMED],
			   q->folded[SHMBUS_CTR_RECLAIMED] + freed);
	if (freed)
		log_info("bus '%s': %u orphaned chunks reclaimed",
			 sw->bus->name, freed);
}

bool sweep_tick(void)
{
	struct sweep **pp = &sweeps;
	bool pending = false;

	while (*pp) {
		struct sweep *sw = *pp;

		if (!epoch_gp_done(&sw->bus->arena, sw->gp)) {
			pending = true;
			pp = &sw->next;
			continue;
		}
		sweep_finish(sw);
		*pp = sw->next;
		{
			struct dbus *b = sw->bus;

			free(sw);
			pools_rebuild(b);
		}
	}
	return pending;
}

void sweeps_drop(const struct dbus *b)
{
	struct sweep **pp = &sweeps;

	while (*pp) {
		struct sweep *sw = *pp;

		if (sw->bus == b) {
			*pp = sw->next;
			free(sw);
		} else {
			pp = &sw->next;
		}
	}
}
