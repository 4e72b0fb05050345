// SPDX-License-Identifier: MIT
/*
 * pool.c - the shared side of chunk pools (the per-slot cache is inline in
 * pool.h).
 *
 * Each size class keeps its free chunks as a Treiber stack of magazines:
 * a magazine is up to 16 free chunks, headed by one of them, whose payload
 * holds the indices of the others (struct pool_mag). links[m] (a side
 * array, links[i] = next magazine head + 1) chains the heads. The head
 * word carries a 32-bit tag bumped by every successful cmpxchg, which
 * defeats ABA. One cmpxchg moves up to 16 chunks, and the reader of a
 * magazine touches two cache lines (its link and its contents) instead of
 * walking 16 dependent links.
 *
 * A popped magazine's contents are read only after the cmpxchg that made
 * it ours; a pusher writes them before the cmpxchg that publishes it.
 *
 * Crash safety: a process killed at any instruction never makes a chunk
 * reachable twice (no double free): a magazine is either on the list or
 * owned by one process. A refill copies the magazine into the cache before
 * its cmpxchg and publishes the count right after; a spill takes the count
 * down before its cmpxchg. What a kill can still leave is a magazine that
 * is in no list and no cache, in a window of two or three instructions
 * (up to 16 chunks); see docs/design.md.
 *
 * Hostile peers: every index read from a link, a magazine, a cache or a
 * ring is range-checked; a bad one is -EUCLEAN or dropped, never an access
 * outside the pool.
 */
#include <string.h>

#include "pool.h"
#include "ring.h"

#define HEAD_IDX(h)	((uint32_t)(h))		/* index + 1, 0 = empty */
#define HEAD_TAG(h)	((uint32_t)((h) >> 32))
#define HEAD(tag, i1)	(((uint64_t)(tag) << 32) | (uint32_t)(i1))

static struct pool_mag *mag_of(const struct pool_view *pv, uint32_t m)
{
	return (struct pool_mag *)(pv->base + (uint64_t)m * pv->chunk_size +
				   SHMBUS_CHUNK_HDR);
}

/*
 * Pop one magazine: its head chunk into *m, the other indices into @dst
 * (returns how many), or -ENOMEM (empty), -EUCLEAN. The contents are
 * copied before the cmpxchg and mean nothing if it fails (the magazine was
 * not ours): that way nothing but the caller's next store separates "on
 * the list" from "in the caller's cache".
 */
static int mag_pop(const struct arena *a, unsigned pi, uint32_t *dst,
		   uint32_t *m_out)
{
	const struct pool_view *pv = &a->pool[pi];
	struct shmbus_pool *pd = pv->desc;
	uint32_t nr = pv->nr_chunks, m, next, n, k;
	unsigned spins = 0;
	uint64_t h;

	for (;;) {
		struct pool_mag *mag;

		/* [FREELIST] acquire pairs with the release cmpxchg in
		 * pool_push_global(): the link and magazine written before
		 * a push are visible once we see its head */
		h = smp_load_acquire(&pd->free_head);
		if (!HEAD_IDX(h))
			return -ENOMEM;
		m = HEAD_IDX(h) - 1;
		if (m >= nr)
			return -EUCLEAN;
		next = READ_ONCE(pv->links[m]);
		mag = mag_of(pv, m);
		n = MIN(READ_ONCE(mag->n), POOL_MAG_MAX - 1);
		k = 0;
		for (uint32_t j = 0; j < n; j++) {
			uint32_t x = READ_ONCE(mag->idx[j]);

			if (x < nr)	/* a peer's garbage is dropped */
				dst[k++] = x;
		}
		if (next <= nr &&
		    atomic_cmpxchg(&pd->free_head, &h,
				   HEAD(HEAD_TAG(h) + 1, next)))
			break;
		/* a link we read may have been rewritten by a racing
		 * pop/push; only an unchanged head proves corruption */
		if ((next > nr && READ_ONCE(pd->free_head) == h) ||
		    ++spins > RING_SPIN_MAX)
			return -EUCLEAN;
	}
	atomic_sub_relaxed(&pd->free_count, k + 1);
	*m_out = m;
	return (int)k;
}

int pool_pop_global(const struct arena *a, unsigned pi,
		    uint32_t idx[POOL_MAG_MAX])
{
	int k = mag_pop(a, pi, idx + 1, &idx[0]);

	if (k < 0)
		return k == -ENOMEM ? 0 : k;
	return k + 1;
}

/* Push the chain of magazines from @first to @last (linked, and filled,
 * already; @last's link is set here) holding @n chunks. */
static void push_chain(const struct pool_view *pv, uint32_t first,
		       uint32_t last, unsigned n)
{
	struct shmbus_pool *pd = pv->desc;
	uint64_t h = READ_ONCE(pd->free_head), nh;

	do {
		WRITE_ONCE(pv->links[last], HEAD_IDX(h));
		nh = HEAD(HEAD_TAG(h) + 1, first + 1);
		/* [FREELIST] SEQ_CST cmpxchg = release for the magazines
		 * and links above; pairs with the acquire load in
		 * mag_pop() */
	} while (!atomic_cmpxchg(&pd->free_head, &h, nh));
	atomic_add_relaxed(&pd->free_count, n);
}

void pool_push_global(const struct arena *a, unsigned pi,
		      const uint32_t *idx, unsigned n)
{
	const struct pool_view *pv = &a->pool[pi];

	while (n) {
		unsigned k = MIN(n, POOL_MAG_MAX);
		uint32_t m = idx[0];
		struct pool_mag *mag = mag_of(pv, m);

		mag->n = k - 1;
		for (unsigned j = 1; j < k; j++)
			mag->idx[j - 1] = idx[j];
		push_chain(pv, m, m, k);
		idx += k;
		n -= k;
	}
}

/* Refill: pop a magazine straight into the (empty) cache. */
int __pool_alloc(const struct arena *a, struct shmbus_slot *slot,
		 unsigned pi, uint32_t owner, uint32_t *ref)
{
	const struct pool_view *pv = &a->pool[pi];
	uint32_t tmp[POOL_MAG_MAX - 1], *dst, m;
	bool direct = slot && pv->cache_max >= POOL_MAG_MAX - 1;
	int k;

	if (slot && slot->cache[pi].count > SHMBUS_SLOT_CACHE)
		WRITE_ONCE(slot->cache[pi].count, 0);	/* corrupt: start over */
	dst = direct ? slot->cache[pi].ref : tmp;
	k = mag_pop(a, pi, dst, &m);
	if (k < 0)
		return k;
	/* ours: m goes to the caller, the rest to the cache */
	chunk_own(pool_chunk(a, pi, m), owner);
	if (direct) {
		/* [CACHE] release: pairs with the acquire in
		 * pool_drain_slot() */
		smp_store_release(&slot->cache[pi].count, (uint32_t)k);
	} else {
		/* small cache or none: keep what fits, give back the rest */
		uint32_t keep = 0;

		if (slot && pv->cache_max) {
			keep = MIN((uint32_t)k, pv->cache_max);
			memcpy(slot->cache[pi].ref, tmp, keep * sizeof(uint32_t));
			/* [CACHE] */
			smp_store_release(&slot->cache[pi].count, keep);
		}
		pool_push_global(a, pi, tmp + keep, k - keep);
	}
	*ref = SHMBUS_REF(pi, m);
	return 0;
}

void __pool_free(const struct arena *a, struct shmbus_slot *slot,
		 unsigned pi, uint32_t idx)
{
	const struct pool_view *pv = &a->pool[pi];
	uint32_t spill[POOL_MAG_MAX];
	unsigned s = 0;

	spill[s++] = idx;
	if (slot && pv->cache_max) {
		__typeof__(slot->cache[0]) *c = &slot->cache[pi];
		uint32_t n = MIN(c->count, pv->cache_max);
		/* the newest half (plus this one) goes back as a magazine */
		uint32_t k = MIN((pv->cache_max + 1) / 2, POOL_MAG_MAX - 1);

		for (uint32_t j = n - k; j < n; j++)
			if (c->ref[j] < pv->nr_chunks)
				spill[s++] = c->ref[j];
		/* [CACHE] out of the cache before on the list: a kill in
		 * between loses them, it never lists them twice */
		smp_store_release(&c->count, n - k);
	}
	chunk_set(pool_chunk(a, pi, idx), SHMBUS_CHUNK_FREE, 0);
	pool_push_global(a, pi, spill, s);
}

unsigned pool_drain_slot(const struct arena *a, struct shmbus_slot *slot)
{
	unsigned total = 0;

	for (unsigned pi = 0; pi < a->nr_pools; pi++) {
		__typeof__(slot->cache[0]) *c = &slot->cache[pi];
		/* [CACHE] the refs below the count are in place */
		uint32_t n = smp_load_acquire(&c->count), k = 0;
		uint32_t tmp[SHMBUS_SLOT_CACHE];

		if (n > SHMBUS_SLOT_CACHE)
			n = SHMBUS_SLOT_CACHE;
		for (uint32_t j = 0; j < n; j++) {
			uint32_t x = c->ref[j];

			if (x >= a->pool[pi].nr_chunks)
				continue;
			/* a kill between alloc's marking and its count store
			 * leaves a cached chunk marked LOANED: FREE it here,
			 * so that pool_reclaim_owned() does not free it too */
			chunk_set(pool_chunk(a, pi, x), SHMBUS_CHUNK_FREE, 0);
			tmp[k++] = x;
		}
		WRITE_ONCE(c->count, 0);
		pool_push_global(a, pi, tmp, k);
		total += k;
	}
	return total;
}

int chunk_unshare(const struct arena *a, struct shmbus_slot *slot,
		  uint32_t ref, uint32_t owner, uint32_t *nref)
{
	struct shmbus_chunk *c = chunk_at(a, ref), *n;
	uint64_t size, o;
	int pi;

	if (!c)
		return -EINVAL;
	size = ALIGN_UP((uint64_t)READ_ONCE(c->len), 8) + READ_ONCE(c->attr_len);
	if (size > a->pool[SHMBUS_REF_POOL(ref)].payload_max)
		return -EBADMSG;
	pi = pool_for_size(a, size);
	if (pi < 0)
		return pi;
	for (; pi < (int)a->nr_pools; pi++)
		if (pool_alloc(a, slot, pi, owner, nref) == 0)
			break;
	if (pi == (int)a->nr_pools)
		return -ENOMEM;
	n = chunk_at(a, *nref);
	if (!n)
		return -EUCLEAN;
	o = READ_ONCE(n->owner);
	memcpy(n, c, SHMBUS_CHUNK_HDR + size);
	n->owner = o;
	n->refcnt = 0;
	n->delivery_count = 1;
	chunk_unref(a, slot, ref);
	return 0;
}

unsigned pool_reclaim_owned(const struct arena *a, uint32_t slot_idx)
{
	unsigned total = 0;

	for (unsigned pi = 0; pi < a->nr_pools; pi++) {
		const struct pool_view *pv = &a->pool[pi];

		for (uint32_t i = 0; i < pv->nr_chunks; i++) {
			struct shmbus_chunk *c = (struct shmbus_chunk *)
				(pv->base + (uint64_t)i * pv->chunk_size);
			uint64_t o = READ_ONCE(c->owner);
			uint32_t st = SHMBUS_OWNER_STATE(o);

			if (SHMBUS_OWNER_SLOT(o) != slot_idx ||
			    (st != SHMBUS_CHUNK_LOANED &&
			     st != SHMBUS_CHUNK_HELD))
				continue;
			/* cmpxchg on the exact word: nobody else may own a
			 * chunk the dead slot owns, but be sure */
			if (!atomic_cmpxchg(&c->owner, &o,
					    SHMBUS_OWNER(SHMBUS_OWNER_GEN(o),
							 SHMBUS_CHUNK_FREE, 0)))
				continue;
			pool_push_global(a, pi, &i, 1);
			total++;
		}
	}
	return total;
}

/* Chunks [from, to) as magazines of 16 consecutive chunks, chained in
 * order, the last link 0. Returns the last magazine's first chunk. */
static uint32_t format_range(uint8_t *chunks, uint32_t *links,
			     uint32_t chunk_size, uint32_t from, uint32_t to)
{
	uint32_t m = from, last = from;

	for (; m < to; m += POOL_MAG_MAX) {
		struct pool_mag *mag = (struct pool_mag *)
			(chunks + (uint64_t)m * chunk_size + SHMBUS_CHUNK_HDR);
		uint32_t k = MIN(POOL_MAG_MAX, to - m);

		mag->n = k - 1;
		for (uint32_t j = 1; j < k; j++)
			mag->idx[j - 1] = m + j;
		links[m] = m + POOL_MAG_MAX < to ? m + POOL_MAG_MAX + 1 : 0;
		last = m;
	}
	return last;
}

void pool_format(uint8_t *base, const struct shmbus_pool *pd, uint32_t from,
		 uint32_t to)
{
	format_range(base + pd->base_off, (uint32_t *)(base + pd->links_off),
		     pd->chunk_size, from, to);
}

void pool_grow(const struct arena *a, unsigned pi, uint32_t from, uint32_t to)
{
	const struct pool_view *pv = &a->pool[pi];
	uint32_t last;

	if (from >= to)
		return;
	last = format_range(pv->base, pv->links, pv->chunk_size, from, to);
	/* the whole chain in one push: its last link takes the head */
	push_chain(pv, from, last, to - from);
}
