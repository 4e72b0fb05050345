// SPDX-License-Identifier: MIT
/*
 * pool.c - chunk pools.
 *
 * Each size class keeps its free chunks on a Treiber stack whose links live
 * in a side array (links[i] = next index + 1), so that freeing a chunk
 * never writes to the chunk itself. The head word carries a 32-bit tag
 * bumped by every successful cmpxchg, which defeats ABA. Pops and pushes
 * move batches: a slot (one producer or consumer handle) keeps up to
 * cache_max chunk indices of each class in its own slot in the arena, so
 * in steady state a message costs no shared-line traffic for allocation.
 *
 * Crash safety: a process killed at any instruction never makes a chunk
 * reachable twice (no double free): caches are updated after the chunk's
 * state says FREE and before it says LOANED, so the worst case is one
 * chunk that is in no list (a leak of one chunk per kill, in a window of a
 * few instructions). docs/design.md discusses reclaiming those.
 *
 * Hostile peers: every index read from a link, a cache or a ring is
 * range-checked; a bad one is -EUCLEAN, never an access outside the pool.
 */
#include <string.h>

#include "pool.h"
#include "ring.h"

#define HEAD_IDX(h)	((uint32_t)(h))		/* index + 1, 0 = empty */
#define HEAD_TAG(h)	((uint32_t)((h) >> 32))
#define HEAD(tag, i1)	(((uint64_t)(tag) << 32) | (uint32_t)(i1))

int pool_pop_global(const struct arena *a, unsigned pi, uint32_t *idx,
		    unsigned n)
{
	const struct pool_view *pv = &a->pool[pi];
	struct shmbus_pool *pd = pv->desc;
	uint32_t nr = pv->nr_chunks;
	unsigned spins = 0;

	for (;;) {
		/* acquire pairs with the release cmpxchg in
		 * pool_push_global(): the links written before a push are
		 * visible once we see its head */
		uint64_t h = smp_load_acquire(&pd->free_head);
		uint32_t cur, next;
		unsigned k = 0;
		bool bad = false;

		if (!HEAD_IDX(h))
			return 0;
		cur = HEAD_IDX(h) - 1;
		if (cur >= nr)
			return -EUCLEAN;
		idx[k++] = cur;
		for (;;) {
			next = READ_ONCE(pv->links[cur]);
			if (next > nr) {
				bad = true;
				break;
			}
			if (k == n || !next)
				break;
			cur = next - 1;
			idx[k++] = cur;
		}
		if (bad) {
			/* a link we read may have been rewritten by a racing
			 * pop/push; only an unchanged head proves corruption */
			if (READ_ONCE(pd->free_head) == h ||
			    ++spins > RING_SPIN_MAX)
				return -EUCLEAN;
			continue;
		}
		if (atomic_cmpxchg(&pd->free_head, &h,
				   HEAD(HEAD_TAG(h) + 1, next))) {
			__atomic_fetch_sub(&pd->free_count, k,
					   __ATOMIC_RELAXED);
			return (int)k;
		}
		if (++spins > RING_SPIN_MAX)
			return -EUCLEAN;
	}
}

void pool_push_global(const struct arena *a, unsigned pi,
		      const uint32_t *idx, unsigned n)
{
	const struct pool_view *pv = &a->pool[pi];
	struct shmbus_pool *pd = pv->desc;
	uint64_t h, nh;

	if (!n)
		return;
	for (unsigned i = 0; i + 1 < n; i++)
		WRITE_ONCE(pv->links[idx[i]], idx[i + 1] + 1);
	h = READ_ONCE(pd->free_head);
	do {
		WRITE_ONCE(pv->links[idx[n - 1]], HEAD_IDX(h));
		nh = HEAD(HEAD_TAG(h) + 1, idx[0] + 1);
		/* SEQ_CST cmpxchg = release for the links above; pairs with
		 * the acquire load in pool_pop_global() */
	} while (!atomic_cmpxchg(&pd->free_head, &h, nh));
	__atomic_fetch_add(&pd->free_count, n, __ATOMIC_RELAXED);
}

int pool_alloc(const struct arena *a, struct shmbus_slot *slot, unsigned pi,
	       uint32_t *ref)
{
	const struct pool_view *pv = &a->pool[pi];
	uint32_t tmp[SHMBUS_SLOT_CACHE + 1];
	uint32_t n, want;
	int got;

	if (slot && pv->cache_max) {
		__typeof__(slot->cache[0]) *c = &slot->cache[pi];

		n = c->count;
		if (likely(n > 0 && n <= SHMBUS_SLOT_CACHE)) {
			uint32_t i = c->ref[n - 1];

			/* count first: a kill here leaks i, never reuses it */
			WRITE_ONCE(c->count, n - 1);
			if (unlikely(i >= pv->nr_chunks))
				return -EUCLEAN;
			*ref = SHMBUS_REF(pi, i);
			return 0;
		}
		if (n > SHMBUS_SLOT_CACHE)	/* corrupt: start over */
			WRITE_ONCE(c->count, 0);
		want = pv->cache_max / 2 + 1;
		got = pool_pop_global(a, pi, tmp, want);
		if (got <= 0)
			return got ? got : -ENOMEM;
		for (int k = 1; k < got; k++)
			c->ref[k - 1] = tmp[k];
		/* release: the refs above are in place before the count
		 * says so (the daemon drains caches of dead owners) */
		smp_store_release(&c->count, (uint32_t)got - 1);
		*ref = SHMBUS_REF(pi, tmp[0]);
		return 0;
	}
	got = pool_pop_global(a, pi, tmp, 1);
	if (got <= 0)
		return got ? got : -ENOMEM;
	*ref = SHMBUS_REF(pi, tmp[0]);
	return 0;
}

void pool_free(const struct arena *a, struct shmbus_slot *slot, uint32_t ref)
{
	unsigned pi = SHMBUS_REF_POOL(ref);
	uint32_t i = SHMBUS_REF_IDX(ref);
	const struct pool_view *pv;

	if (pi >= a->nr_pools || i >= a->pool[pi].nr_chunks)
		return;
	pv = &a->pool[pi];
	if (slot && pv->cache_max) {
		__typeof__(slot->cache[0]) *c = &slot->cache[pi];
		uint32_t n = c->count;

		if (n > SHMBUS_SLOT_CACHE)
			n = 0;
		if (n < pv->cache_max) {
			c->ref[n] = i;
			smp_store_release(&c->count, n + 1);
			return;
		}
		/* full: spill the older half plus this one */
		uint32_t half = pv->cache_max / 2, spill[SHMBUS_SLOT_CACHE + 1];
		unsigned k = 0;

		for (uint32_t j = 0; j < half; j++) {
			uint32_t x = c->ref[j];

			if (x < pv->nr_chunks)
				spill[k++] = x;
		}
		spill[k++] = i;
		memmove(c->ref, c->ref + half, (n - half) * sizeof(c->ref[0]));
		smp_store_release(&c->count, n - half);
		pool_push_global(a, pi, spill, k);
		return;
	}
	pool_push_global(a, pi, &i, 1);
}

unsigned pool_drain_slot(const struct arena *a, struct shmbus_slot *slot)
{
	unsigned total = 0;

	for (unsigned pi = 0; pi < a->nr_pools; pi++) {
		__typeof__(slot->cache[0]) *c = &slot->cache[pi];
		uint32_t n = smp_load_acquire(&c->count), k = 0;
		uint32_t tmp[SHMBUS_SLOT_CACHE];

		if (n > SHMBUS_SLOT_CACHE)
			n = SHMBUS_SLOT_CACHE;
		for (uint32_t j = 0; j < n; j++)
			if (c->ref[j] < a->pool[pi].nr_chunks)
				tmp[k++] = c->ref[j];
		WRITE_ONCE(c->count, 0);
		pool_push_global(a, pi, tmp, k);
		total += k;
	}
	return total;
}

unsigned pool_reclaim_owned(const struct arena *a, uint32_t slot_idx)
{
	unsigned total = 0;

	for (unsigned pi = 0; pi < a->nr_pools; pi++) {
		const struct pool_view *pv = &a->pool[pi];

		for (uint32_t i = 0; i < pv->nr_chunks; i++) {
			struct shmbus_chunk *c = (struct shmbus_chunk *)
				(pv->base + (uint64_t)i * pv->chunk_size);
			uint32_t o = READ_ONCE(c->owner);
			uint32_t st = SHMBUS_CHUNK_STATE(o);

			if (SHMBUS_CHUNK_SLOT(o) != slot_idx ||
			    (st != SHMBUS_CHUNK_LOANED &&
			     st != SHMBUS_CHUNK_HELD))
				continue;
			/* cmpxchg: only one reclaimer, and nobody else may
			 * own a chunk the dead slot owns */
			if (!atomic_cmpxchg(&c->owner, &o,
					    SHMBUS_CHUNK_OWNER(SHMBUS_CHUNK_FREE, 0)))
				continue;
			pool_push_global(a, pi, &i, 1);
			total++;
		}
	}
	return total;
}
