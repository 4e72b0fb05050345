/* SPDX-License-Identifier: MIT */
/*
 * ring.h - the bounded lock-free MPMC ring of chunk refs (inline fast path).
 *
 * Each cell is one 64-bit word {seq, ref} changed only by cmpxchg. For a
 * position p and capacity N (power of two), the cell p & (N-1) reads:
 *
 *   seq == p        empty, ready for the producer of position p
 *   seq == p + 1    full, holds the message published at p
 *   seq == p + N    consumed, ready for the producer of p + N
 *
 * A producer publishes by cmpxchg {p, x} -> {p + 1, ref}; a consumer takes
 * by cmpxchg {p + 1, ref} -> {p + N, 0}. That single cmpxchg is the whole
 * publish (or take), so a process killed at any instruction leaves a cell
 * untouched or complete. This is what the usual Vyukov ring (reserve a
 * position with a cmpxchg on tail, then write the cell) cannot give: a
 * producer killed between its reservation and its cell store leaves a hole
 * that blocks every consumer for ever.
 *
 * tail and head are only hints of where the next free/full cell is; they
 * are advanced by cmpxchg(p -> p + 1) by whoever finds the cell at p
 * already done (helping), so a dead process never stalls the others.
 *
 * Sequences are 32-bit and compared modulo 2^32: a process stopped for
 * exactly k * 2^32 positions between its load of a cell and its cmpxchg
 * could succeed on a cell of a later lap (the cell then holds its message
 * at a position that was legitimately empty; ordering, not integrity, is
 * what is at risk). Capacities are capped at 2^24.
 *
 * Full and empty are exact at the moment of the cell load, not hints.
 *
 * Every loop is bounded: each retry means another process made progress,
 * so RING_SPIN_MAX consecutive retries only happen when a hostile peer has
 * written cells that never settle; we then give up with -EUCLEAN instead of
 * livelocking.
 */
#ifndef SHMBUS_RING_H
#define SHMBUS_RING_H

#include <errno.h>
#include <stdint.h>

#include "barrier.h"
#include "shmbus_layout.h"

#define RING_SPIN_MAX	(1u << 20)

struct ring {
	struct shmbus_cell *cells;
	uint64_t *tail;			/* &queue->tail, producers' line */
	uint64_t *head;			/* &queue->head, consumers' line */
	uint32_t mask;			/* capacity - 1 */
};

/*
 * Publish ref. Returns 0, or -ENOBUFS when the ring is full.
 *
 * Ordering: the successful cmpxchg on the cell is SEQ_CST, hence a release:
 * everything the producer wrote into the chunk before (header, payload) is
 * visible to a consumer whose acquire load / cmpxchg of this cell sees the
 * new value (pairs with ring_dequeue()). It is also the first half of the
 * sleep/wake Dekker pair: the caller then reads queue->sleep_mask after
 * smp_mb__after_atomic() (pairs with wake_prepare_sleep()).
 */
static inline int ring_enqueue(struct ring *r, uint32_t ref)
{
	uint64_t pos = READ_ONCE(*r->tail);

	for (uint32_t n = 0; n < RING_SPIN_MAX; n++) {
		struct shmbus_cell *cell = &r->cells[pos & r->mask];
		/* relaxed: the cmpxchg below validates what we read */
		uint64_t v = READ_ONCE(cell->v);
		int32_t dif = (int32_t)(SHMBUS_CELL_SEQ(v) - (uint32_t)pos);

		if (dif == 0) {
			if (atomic_cmpxchg(&cell->v, &v,
					   SHMBUS_CELL(pos + 1, ref))) {
				uint64_t p = pos;
				/* tail is a hint; failure means someone helped */
				atomic_cmpxchg(r->tail, &p, pos + 1);
				return 0;
			}
			/* lost the cell to another producer: move on */
		} else if (dif < 0) {
			/* seq == p - N + 1: the previous lap's message is
			 * still there. tail never runs ahead of the cells,
			 * so this is a true full. */
			return -ENOBUFS;
		} else {
			/* cell already filled (or consumed) for pos: tail
			 * is behind; help it forward and retry */
			uint64_t p = pos;
			atomic_cmpxchg(r->tail, &p, pos + 1);
		}
		pos = READ_ONCE(*r->tail);
	}
	return -EUCLEAN;
}

/*
 * Take one ref. Returns 0 and *ref, or -EAGAIN when the ring is empty.
 *
 * Ordering: the acquire load and the SEQ_CST cmpxchg of the cell pair with
 * the producer's cmpxchg in ring_enqueue(): the chunk contents are visible
 * once we own the ref.
 */
static inline int ring_dequeue(struct ring *r, uint32_t *ref)
{
	uint64_t pos = READ_ONCE(*r->head);

	for (uint32_t n = 0; n < RING_SPIN_MAX; n++) {
		struct shmbus_cell *cell = &r->cells[pos & r->mask];
		uint64_t v = smp_load_acquire(&cell->v);
		int32_t dif = (int32_t)(SHMBUS_CELL_SEQ(v) - (uint32_t)(pos + 1));

		if (dif == 0) {
			if (atomic_cmpxchg(&cell->v, &v,
					   SHMBUS_CELL(pos + r->mask + 1, 0))) {
				uint64_t p = pos;
				atomic_cmpxchg(r->head, &p, pos + 1);
				*ref = SHMBUS_CELL_REF(v);
				return 0;
			}
		} else if (dif < 0) {
			/* seq == p: nothing published at p yet */
			return -EAGAIN;
		} else {
			uint64_t p = pos;
			atomic_cmpxchg(r->head, &p, pos + 1);
		}
		pos = READ_ONCE(*r->head);
	}
	return -EUCLEAN;
}

/*
 * Is there a message at head? A load-only peek used after announcing sleep
 * (the caller's fetch_or + smp_mb__after_atomic() orders it after the
 * announcement; pairs with the producer's cell cmpxchg then sleep_mask
 * load). May report non-empty for a message another consumer takes next.
 */
static inline int ring_peek_nonempty(struct ring *r)
{
	uint64_t pos = READ_ONCE(*r->head);

	for (uint32_t n = 0; n <= r->mask; n++) {
		uint64_t v = READ_ONCE(r->cells[pos & r->mask].v);
		int32_t dif = (int32_t)(SHMBUS_CELL_SEQ(v) - (uint32_t)(pos + 1));

		if (dif == 0)
			return 1;
		if (dif < 0)
			return 0;
		pos++;		/* consumed but head not yet advanced */
	}
	return 0;
}

/* Approximate depth for statistics: tail and head are hints. */
static inline uint64_t ring_depth_hint(uint64_t tail, uint64_t head)
{
	return tail >= head ? tail - head : 0;
}

#endif /* SHMBUS_RING_H */
