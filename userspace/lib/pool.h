/* SPDX-License-Identifier: MIT */
/*
 * pool.h - chunk pools: lock-free allocation and free of fixed-size chunks,
 * one pool per size class. The common case is inline: a slot (one handle,
 * one thread) takes from and returns to its own cache in its slot; the
 * cache refills from and spills to the pool's shared list of magazines
 * out of line (pool.c).
 */
#ifndef SHMBUS_POOL_H
#define SHMBUS_POOL_H

#include "internal.h"

/* Chunks moved per shared-list operation (a magazine). */
#define POOL_MAG_MAX	16u

/*
 * A magazine lives in the payload of its first chunk while it is on the
 * shared list: the other chunks' indices. 64 bytes: the smallest payload.
 */
struct pool_mag {
	uint32_t n;			/* indices that follow, 0..15 */
	uint32_t idx[POOL_MAG_MAX - 1];
};

/*
 * Shared list. pool_pop_global() takes one magazine: up to POOL_MAG_MAX
 * chunk indices into @idx; returns how many (0 = pool empty) or -EUCLEAN.
 * pool_push_global() gives back @n indices as magazines.
 */
int pool_pop_global(const struct arena *a, unsigned pi,
		    uint32_t idx[POOL_MAG_MAX]);
SHMBUS_PRIVATE_API
void pool_push_global(const struct arena *a, unsigned pi,
		      const uint32_t *idx, unsigned n);

/* Out of line: refill an empty cache (or serve a cacheless pool). */
SHMBUS_PRIVATE_API
int __pool_alloc(const struct arena *a, struct shmbus_slot *slot,
		 unsigned pi, uint32_t owner, uint32_t *ref);
/* Out of line: spill a full cache, or free to a cacheless pool. */
SHMBUS_PRIVATE_API
void __pool_free(const struct arena *a, struct shmbus_slot *slot,
		 unsigned pi, uint32_t idx);

static inline struct shmbus_chunk *pool_chunk(const struct arena *a,
					      unsigned pi, uint32_t i)
{
	return (struct shmbus_chunk *)(a->pool[pi].base +
				       (uint64_t)i * a->pool[pi].chunk_size);
}

/* Make @c owned by @owner ((state << 16) | slot): a new generation, so
 * that whoever noted the old word sees the chunk was freed and reused
 * ([SEQ]: the daemon's history_copy; the orphan sweeps' cmpxchg). */
static inline void chunk_own(struct shmbus_chunk *c, uint32_t owner)
{
	uint32_t gen = SHMBUS_OWNER_GEN(READ_ONCE(c->owner)) + 1;

	WRITE_ONCE(c->owner, ((uint64_t)gen << 32) | owner);
}

/* Set @c's state and slot, same generation; returns the new word. */
static inline uint64_t chunk_set(struct shmbus_chunk *c, uint32_t state,
				 uint32_t slot)
{
	uint64_t o = SHMBUS_OWNER(SHMBUS_OWNER_GEN(READ_ONCE(c->owner)),
				  state, slot);

	WRITE_ONCE(c->owner, o);
	return o;
}

/*
 * Allocate one chunk of pool @pi for the owner of @slot (NULL: no cache,
 * e.g. the daemon), and mark it owned by @owner ((state << 16) | slot)
 * with a new generation. Returns 0 and *ref, -ENOMEM when the pool is
 * empty, -EUCLEAN when the shared list or the cache holds an out-of-range
 * index.
 *
 * Crash safety: the chunk is marked before the cache count lets go of it,
 * so a kill in between leaves it both cached and owned, which the daemon's
 * reclaim tells apart (it drains the cache first, marking FREE); it is
 * never lost and never reachable twice.
 */
static inline int pool_alloc(const struct arena *a, struct shmbus_slot *slot,
			     unsigned pi, uint32_t owner, uint32_t *ref)
{
	if (likely(slot != NULL)) {
		__typeof__(slot->cache[0]) *c = &slot->cache[pi];
		uint32_t n = c->count;

		if (likely(n - 1 < SHMBUS_SLOT_CACHE)) {
			uint32_t i = c->ref[n - 1];

			if (unlikely(i >= a->pool[pi].nr_chunks))
				return -EUCLEAN;
			chunk_own(pool_chunk(a, pi, i), owner);
			WRITE_ONCE(c->count, n - 1);
			*ref = SHMBUS_REF(pi, i);
			return 0;
		}
	}
	return __pool_alloc(a, slot, pi, owner, ref);
}

/*
 * Free chunk @ref (owned by the caller) into its cache and mark it FREE.
 * An out-of-range ref is ignored (and reported by the caller). Crash
 * safety: cached first, marked FREE after (see pool_alloc).
 */
static inline void pool_free(const struct arena *a, struct shmbus_slot *slot,
			     uint32_t ref)
{
	unsigned pi = SHMBUS_REF_POOL(ref);
	uint32_t i = SHMBUS_REF_IDX(ref);

	if (unlikely(pi >= a->nr_pools || i >= a->pool[pi].nr_chunks))
		return;
	if (likely(slot != NULL)) {
		__typeof__(slot->cache[0]) *c = &slot->cache[pi];
		uint32_t n = c->count;

		if (likely(n < a->pool[pi].cache_max)) {
			c->ref[n] = i;
			/* [CACHE] release: the ref is in place before the
			 * count says so (pool_drain_slot(), when the daemon
			 * drains the caches of dead owners) */
			smp_store_release(&c->count, n + 1);
			chunk_set(pool_chunk(a, pi, i), SHMBUS_CHUNK_FREE, 0);
			return;
		}
	}
	__pool_free(a, slot, pi, i);
}

/*
 * Drop a reference to chunk @ref: a SHARED chunk (a topic message) is
 * freed by its last reference, any other chunk at once.
 */
static inline void chunk_unref(const struct arena *a, struct shmbus_slot *slot,
			       uint32_t ref)
{
	struct shmbus_chunk *c = chunk_at(a, ref);

	if (!c)
		return;
	if (SHMBUS_OWNER_STATE(READ_ONCE(c->owner)) == SHMBUS_CHUNK_SHARED &&
	    atomic_fetch_sub(&c->refcnt, 1) != 1)
		return;
	pool_free(a, slot, ref);
}

static inline bool chunk_shared(const struct shmbus_chunk *c)
{
	return SHMBUS_OWNER_STATE(READ_ONCE(c->owner)) == SHMBUS_CHUNK_SHARED;
}

/*
 * A private copy of SHARED chunk @ref (header, payload, attributes), owned
 * by @owner ((state << 16) | slot), delivery count 1; the reference to
 * @ref is dropped. Returns 0 and *nref, or -ENOMEM (nothing changed).
 */
SHMBUS_PRIVATE_API
int chunk_unshare(const struct arena *a, struct shmbus_slot *slot,
		  uint32_t ref, uint32_t owner, uint32_t *nref);

/* Return every chunk cached in @slot to the shared lists. Returns count.
 * Only when the slot's owner can no longer run (detached or dead). */
SHMBUS_PRIVATE_API
unsigned pool_drain_slot(const struct arena *a, struct shmbus_slot *slot);

/*
 * Free every chunk LOANED to or HELD by slot @slot_idx. Returns count.
 * Only when that slot's owner can no longer run, after pool_drain_slot().
 */
SHMBUS_PRIVATE_API
unsigned pool_reclaim_owned(const struct arena *a, uint32_t slot_idx);

/* Format chunks [@from, @to) of pool @pd in the arena at @base as its
 * shared list: every one free, in magazines, the last linking to none. */
void pool_format(uint8_t *base, const struct shmbus_pool *pd, uint32_t from,
		 uint32_t to);

/*
 * Put chunks [@from, @to) of pool @pi (backed, never used, zero headers:
 * FREE) on its shared list, while every process may be popping and
 * pushing: formatted as magazines, then pushed as one chain with one
 * cmpxchg. The daemon's, when it grows a pool; @a's view must already
 * bound refs at @to or above.
 */
SHMBUS_PRIVATE_API
void pool_grow(const struct arena *a, unsigned pi, uint32_t from, uint32_t to);

/* Smallest pool whose payload fits @size bytes, or -EMSGSIZE. */
static inline int pool_for_size(const struct arena *a, size_t size)
{
	for (unsigned i = 0; i < a->nr_pools; i++)
		if (size <= a->pool[i].payload_max)
			return (int)i;
	return -EMSGSIZE;
}

#endif /* SHMBUS_POOL_H */
