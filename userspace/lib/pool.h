/* SPDX-License-Identifier: MIT */
/*
 * pool.h - chunk pools: lock-free allocation and free of fixed-size chunks,
 * one pool per size class, with a small per-slot cache in front of each
 * pool's shared free list (see pool.c).
 */
#ifndef SHMBUS_POOL_H
#define SHMBUS_POOL_H

#include "internal.h"

/*
 * Allocate one chunk of pool @pi for the owner of @slot (NULL: no cache,
 * e.g. the daemon). Returns 0 and *ref, -ENOMEM when the pool is empty,
 * -EUCLEAN when the free list or cache holds an out-of-range index.
 * The chunk's header is not touched.
 */
int pool_alloc(const struct arena *a, struct shmbus_slot *slot, unsigned pi,
	       uint32_t *ref);

/*
 * Free chunk @ref (already marked SHMBUS_CHUNK_FREE by the caller) into the
 * owner's cache, spilling half of a full cache to the shared list. An
 * out-of-range ref is ignored (and reported by the caller).
 */
void pool_free(const struct arena *a, struct shmbus_slot *slot, uint32_t ref);

/* Shared free list, batch operations on chunk indices of pool @pi. */
int pool_pop_global(const struct arena *a, unsigned pi, uint32_t *idx,
		    unsigned n);
void pool_push_global(const struct arena *a, unsigned pi,
		      const uint32_t *idx, unsigned n);

/* Return every chunk cached in @slot to the shared lists. Returns count.
 * Only when the slot's owner can no longer run (detached or dead). */
unsigned pool_drain_slot(const struct arena *a, struct shmbus_slot *slot);

/*
 * Free every chunk LOANED to or HELD by slot @slot_idx. Returns count.
 * Only when that slot's owner can no longer run.
 */
unsigned pool_reclaim_owned(const struct arena *a, uint32_t slot_idx);

/* Smallest pool whose payload fits @size bytes, or -EMSGSIZE. */
static inline int pool_for_size(const struct arena *a, size_t size)
{
	for (unsigned i = 0; i < a->nr_pools; i++)
		if (size <= a->pool[i].payload_max)
			return (int)i;
	return -EMSGSIZE;
}

#endif /* SHMBUS_POOL_H */
