/* SPDX-License-Identifier: MIT */
/*
 * ring.h - the bounded lock-free MPMC ring of chunk refs (inline fast path).
 *
 * Each cell is one 64-bit word {seq, ref} changed only by cmpxchg. For a
 * position p and capacity N (power of two), the cell of p reads:
 *
 *   seq == p        empty, ready for the producer of position p
 *   seq == p + 1    full, holds the message published at p
 *   seq == p + N    consumed, ready for the producer of p + N
 *
 * A producer publishes by cmpxchg {p, 0} -> {p + 1, ref}; a consumer takes
 * by cmpxchg {p + 1, ref} -> {p + N, 0}. That single cmpxchg is the whole
 * publish (or take), so a process killed at any instruction leaves a cell
 * untouched or complete. This is what the usual Vyukov ring (reserve a
 * position with a cmpxchg on tail, then write the cell) cannot give: a
 * producer killed between its reservation and its cell store leaves a hole
 * that blocks every consumer for ever.
 *
 * tail and head are only hints of where the next free/full cell is: the
 * cells are the truth. The process that fills (takes) the cell of p moves
 * the hint from p to p + 1 with a cmpxchg; whoever finds the cell at the
 * hint already done moves it along (helping), so a dead process never
 * stalls the others. A hint only moves forward (a plain store could be
 * replayed by a process stopped between its load and its store, setting
 * the hint back arbitrarily far), and is never ahead of the cells: only a
 * position whose cell was filled (taken) is ever passed.
 *
 * Cache lines. Position p lives in cell ring_cell_index(p): consecutive
 * positions are spread over different cache lines (8 cells per line, a
 * line holds positions p, p + N/8, p + 2N/8, ...), so a producer filling
 * position p and a consumer taking p - 1 do not fight over one line. This
 * mapping is part of the arena protocol: changing it changes
 * SHMBUS_LAYOUT_VERSION.
 *
 * Cost per operation, when the other side last touched the cell: one cache
 * line transfer. The producer knows what an empty cell holds ({p, 0}), so
 * it cmpxchg()s without loading first (a load then a cmpxchg is two
 * transfers: shared, then exclusive). The consumer must load to learn the
 * ref; it hands the ref to a prefetch callback before its cmpxchg so the
 * chunk's lines travel while the cell's ownership does.
 *
 * Sequences are 32-bit and compared modulo 2^32: a process stopped for
 * exactly k * 2^32 positions between its load of a cell and its cmpxchg
 * could succeed on a cell of a later lap (the cell then holds its message
 * at a position that was legitimately empty; ordering, not integrity, is
 * what is at risk). Capacities are capped at 2^24.
 *
 * Full and empty are exact at the moment of the cell load, not hints.
 *
 * Garbage. A cell can only ever hold a sequence of its own residue class:
 * the cell of p holds p or p + 1 modulo N (ring_cell_garbage()). A peer
 * that wrote anything else left a cell no producer or consumer would ever
 * move on: a producer fills it with its message as if it were empty, a
 * consumer retires it as consumed ({p + N, 0}) and says so (-EBADMSG: the
 * caller counts it corrupt). A garbage sequence of the right class, or a
 * hint ahead of the cells, is what only the daemon can see (repair.c).
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
#include "shmbus/layout.h"

#define RING_SPIN_MAX	(1u << 20)

struct ring {
	struct shmbus_cell *cells;
	uint64_t *tail;			/* &queue->tail, producers' line */
	uint64_t *head;			/* &queue->head, consumers' line */
	uint32_t mask;			/* capacity - 1 */
	uint32_t line_shift;		/* log2(capacity / 8), 0 = no spread */
};

/* Fill the capacity-derived fields of @r. */
static inline void ring_geometry(struct ring *r, uint32_t cap)
{
	r->mask = cap - 1;
	r->line_shift = cap >= 16 ? (uint32_t)__builtin_ctz(cap / 8) : 0;
}

/*
 * The cell of position @pos: with L = N / 8 lines, position i = pos % N
 * goes to line i % L, word i / L. Rings under 16 cells are not spread.
 */
static inline uint32_t ring_cell_index(const struct ring *r, uint64_t pos)
{
	uint32_t i = (uint32_t)pos & r->mask;

	if (!r->line_shift)
		return i;
	return ((i & ((1u << r->line_shift) - 1)) << 3) | (i >> r->line_shift);
}

static inline struct shmbus_cell *ring_cell(const struct ring *r, uint64_t pos)
{
	return &r->cells[ring_cell_index(r, pos)];
}

/* Can @v never be a state of the cell of @pos (its sequence outside the
 * cell's residue class, see above)? Capacity 2 has no such value. */
static inline bool ring_cell_garbage(const struct ring *r, uint64_t pos,
				     uint64_t v)
{
	return ((SHMBUS_CELL_SEQ(v) - (uint32_t)pos) & r->mask) > 1;
}

/*
 * Move a hint from @pos to @pos + 1 if it still says @pos. The cmpxchg
 * follows the cell's on a line that is ours (the store buffer is already
 * drained), so it costs a few cycles.
 */
static inline void ring_hint_advance(uint64_t *hint, uint64_t pos)
{
	uint64_t p = pos;

	if (READ_ONCE(*hint) == pos)
		atomic_cmpxchg(hint, &p, pos + 1);
}

/* After finding the cell of @pos already done: help, then go on from the
 * hint if it is further along, else from the next position. */
static inline uint64_t ring_hint_skip(uint64_t *hint, uint64_t pos)
{
	uint64_t h;

	ring_hint_advance(hint, pos);
	h = READ_ONCE(*hint);
	return h > pos ? h : pos + 1;
}

/*
 * Ask for the cell line the next enqueue will use, with intent to write,
 * so its transfer overlaps with writing the chunk instead of stalling the
 * cmpxchg. (Not for consumers: prefetching the next cell for writing
 * steals it from the producer about to fill it.)
 */
static inline void ring_prefetch_tail(const struct ring *r)
{
	__builtin_prefetch(ring_cell(r, READ_ONCE(*r->tail)), 1, 3);
}

/*
 * Publish ref. Returns 0, or -ENOBUFS when the ring is full.
 *
 * Ordering: [RING] the successful cmpxchg on the cell is SEQ_CST, hence a
 * release: everything the producer wrote into the chunk before (header,
 * payload) is visible to a consumer whose acquire load / cmpxchg of this
 * cell sees the new value (ring_dequeue_pf(), ring_peek_head(), the
 * daemon's history_copy()). It is also the first half of the sleep/wake
 * Dekker pair [WAKE]: the caller then reads queue->sleep_mask after
 * smp_mb__after_atomic() (pairs with seat_arm() in wake.c).
 */
static inline int ring_enqueue(struct ring *r, uint32_t ref)
{
	uint64_t pos = READ_ONCE(*r->tail);

	for (uint32_t n = 0; n < RING_SPIN_MAX; n++) {
		struct shmbus_cell *cell = ring_cell(r, pos);
		/* what an empty cell for pos holds; on failure the cmpxchg
		 * returns what it does hold */
		uint64_t v = SHMBUS_CELL(pos, 0);
		int32_t dif;

		if (atomic_cmpxchg(&cell->v, &v, SHMBUS_CELL(pos + 1, ref)) ||
		    /* empty but with a stray ref, or no state of this cell
		     * at all (a peer's garbage): take it */
		    ((SHMBUS_CELL_SEQ(v) == (uint32_t)pos ||
		      ring_cell_garbage(r, pos, v)) &&
		     atomic_cmpxchg(&cell->v, &v, SHMBUS_CELL(pos + 1, ref)))) {
			ring_hint_advance(r->tail, pos);
			return 0;
		}
		dif = (int32_t)(SHMBUS_CELL_SEQ(v) - (uint32_t)pos);
		if (dif < 0) {
			/* seq == p - N + 1: the previous lap's message is
			 * still there. tail never runs ahead of the cells,
			 * so this is a true full. */
			return -ENOBUFS;
		}
		if (dif > 0) {
			/* cell already filled (or consumed) for pos: tail
			 * is behind; help it forward */
			pos = ring_hint_skip(r->tail, pos);
		} else {
			pos = READ_ONCE(*r->tail);
		}
	}
	return -EUCLEAN;
}

/*
 * Could ring_enqueue() succeed now? Load-only, for a producer waiting on a
 * full ring: polling with ring_enqueue() itself would take the cell line
 * exclusively on every try and slow down the consumer it waits for.
 */
static inline int ring_has_room(struct ring *r)
{
	uint64_t pos = READ_ONCE(*r->tail);
	uint64_t v = READ_ONCE(ring_cell(r, pos)->v);

	return (int32_t)(SHMBUS_CELL_SEQ(v) - (uint32_t)pos) >= 0;
}

static inline void ring_no_prefetch(const void *ctx, uint32_t ref)
{
	(void)ctx;
	(void)ref;
}

/*
 * Take one ref. Returns 0 and *ref, -EAGAIN when the ring is empty, or
 * -EBADMSG: the cell at the head held garbage (ring_cell_garbage()) and
 * was retired; nothing was taken, the caller counts it and may go on.
 * @prefetch(ctx, ref) is called for a ref we are about to claim (it may be
 * claimed by another consumer instead; the callback must only prefetch).
 *
 * Ordering: [RING] the acquire load and the SEQ_CST cmpxchg of the cell
 * pair with the producer's cmpxchg in ring_enqueue(): the chunk contents
 * are visible once we own the ref.
 */
static inline int ring_dequeue_pf(struct ring *r, uint32_t *ref,
				  void (*prefetch)(const void *, uint32_t),
				  const void *ctx)
{
	uint64_t pos = READ_ONCE(*r->head);

	for (uint32_t n = 0; n < RING_SPIN_MAX; n++) {
		struct shmbus_cell *cell = ring_cell(r, pos);
		uint64_t v = smp_load_acquire(&cell->v);
		int32_t dif = (int32_t)(SHMBUS_CELL_SEQ(v) - (uint32_t)(pos + 1));

		if (__builtin_expect(ring_cell_garbage(r, pos, v), 0)) {
			/* retired as consumed for pos: producers of pos
			 * see it done and go on, as consumers do */
			if (atomic_cmpxchg(&cell->v, &v,
					   SHMBUS_CELL(pos + r->mask + 1, 0))) {
				ring_hint_advance(r->head, pos);
				return -EBADMSG;
			}
			continue;	/* changed under us: look again */
		}
		if (dif == 0) {
			prefetch(ctx, SHMBUS_CELL_REF(v));
			if (atomic_cmpxchg(&cell->v, &v,
					   SHMBUS_CELL(pos + r->mask + 1, 0))) {
				ring_hint_advance(r->head, pos);
				*ref = SHMBUS_CELL_REF(v);
				return 0;
			}
			pos = READ_ONCE(*r->head);
		} else if (dif < 0) {
			/* seq == p: nothing published at p yet */
			return -EAGAIN;
		} else {
			/* taken but head not moved yet: help, look further */
			pos = ring_hint_skip(r->head, pos);
		}
	}
	return -EUCLEAN;
}

/* ring_dequeue_pf() without a prefetch, looking past retired garbage. */
static inline int ring_dequeue(struct ring *r, uint32_t *ref)
{
	int err = -EBADMSG;

	for (uint32_t n = 0; n <= r->mask && err == -EBADMSG; n++)
		err = ring_dequeue_pf(r, ref, ring_no_prefetch, NULL);
	return err == -EBADMSG ? -EAGAIN : err;
}

/*
 * Is there a message at head? A load-only peek used after announcing sleep
 * ([WAKE]: the caller's fetch_or + smp_mb__after_atomic() orders it after
 * the announcement; pairs with the producer's cell cmpxchg then sleep_mask
 * load). May report non-empty for a message another consumer takes next.
 */
static inline int ring_peek_nonempty(struct ring *r)
{
	uint64_t pos = READ_ONCE(*r->head);

	for (uint32_t n = 0; n <= r->mask; n++) {
		uint64_t v = READ_ONCE(ring_cell(r, pos)->v);
		int32_t dif = (int32_t)(SHMBUS_CELL_SEQ(v) - (uint32_t)(pos + 1));

		if (dif == 0)
			return 1;
		if (dif < 0)
			return 0;
		pos++;		/* consumed but head not yet advanced */
	}
	return 0;
}

/*
 * The oldest message: its position and cell value, for a conditional take
 * with ring_take_at() (the daemon expiring messages at the head). Returns
 * 1 if found, 0 if the ring is empty.
 */
static inline int ring_peek_head(struct ring *r, uint64_t *pos, uint64_t *val)
{
	uint64_t p = READ_ONCE(*r->head);

	for (uint32_t n = 0; n <= r->mask; n++, p++) {
		/* [RING] the chunk the caller reads next is the message's */
		uint64_t v = smp_load_acquire(&ring_cell(r, p)->v);
		int32_t dif = (int32_t)(SHMBUS_CELL_SEQ(v) - (uint32_t)(p + 1));

		if (dif == 0) {
			*pos = p;
			*val = v;
			return 1;
		}
		if (dif < 0)
			return 0;
		/* taken, head not moved past it (a member took it without):
		 * help, as consumers do, or a head a ring's length behind
		 * would hide every message from this scan for good */
		ring_hint_advance(r->head, p);
	}
	return 0;
}

/*
 * Take the message at @pos if its cell still holds @val. The cell's
 * sequence only moves forward, so success means the message stayed in the
 * ring since @val was read (what the caller read of its chunk meanwhile
 * was stable). Returns 0 or -EAGAIN.
 */
static inline int ring_take_at(struct ring *r, uint64_t pos, uint64_t val)
{
	if (!atomic_cmpxchg(&ring_cell(r, pos)->v, &val,
			    SHMBUS_CELL(pos + r->mask + 1, 0)))
		return -EAGAIN;
	ring_hint_advance(r->head, pos);
	return 0;
}

/* Initialise @r's cells for lap 0 (the daemon, at declare). */
static inline void ring_init_cells(struct ring *r)
{
	for (uint64_t p = 0; p <= r->mask; p++)
		ring_cell(r, p)->v = SHMBUS_CELL(p, 0);
}

/* Does cell index @i hold a message (seq == p + 1 for its position p)?
 * For the daemon's sweep of a deleted ring. */
static inline int ring_cell_full(const struct ring *r, uint32_t i, uint64_t v)
{
	uint32_t p = SHMBUS_CELL_SEQ(v) - 1;

	return ring_cell_index(r, p) == i;
}

/* Approximate depth for statistics: tail and head are hints. */
static inline uint64_t ring_depth_hint(uint64_t tail, uint64_t head)
{
	return tail >= head ? tail - head : 0;
}

#endif /* SHMBUS_RING_H */
