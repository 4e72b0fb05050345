/* SPDX-License-Identifier: MIT */
/*
 * ring.h - the bounded lock-free MPMC ring of chunk refs (inline fast path).
 *
 * Each cell is one 64-bit word {seq, ref}. For a position p and capacity N
 * (power of two), the cell of p (cell p % N) reads:
 *
 *   seq == p        empty, ready for the producer of position p
 *   seq == p + 1    full, holds the message published at p
 *   seq == p + N    consumed, ready for the producer of p + N
 *
 * Producers. A producer publishes by cmpxchg {p, 0} -> {p + 1, ref}. That
 * single cmpxchg is the whole publish, so a process killed at any
 * instruction leaves the cell untouched or complete. This is what the
 * usual Vyukov ring (reserve a position with a cmpxchg on tail, then write
 * the cell) cannot give: a producer killed between its reservation and its
 * cell store leaves a hole that blocks every consumer for ever. tail is
 * only a hint of where the next free cell is: the process that fills the
 * cell of p moves it from p to p + 1 with a cmpxchg; whoever finds the
 * cell at the hint already filled moves it along (helping), so a dead
 * producer never stalls the others. The hint only moves forward and never
 * passes an empty cell. Cells fill in position order.
 *
 * Consumers claim. head counts the positions claimed and only moves by
 * cmpxchg. A consumer reads the full cells from head on (a run of up to
 * its max), notes the run where the daemon finds it (its slot: a consumer
 * that dies with a claim is finished by the daemon), then claims the whole
 * run with ONE cmpxchg of head. Success means head did not move since it
 * was read, so nobody claimed those positions meanwhile, and their cells
 * still hold what was read (no producer overwrites a full cell). The claim
 * reserves them: the claimer takes each message with a cmpxchg of its
 * cell from full to consumed (ring_consumed()), which is what gives the
 * cell back to the producers; until then the cell stays full and no
 * producer reuses it. A claim can be taken back (the daemon does when a
 * run is held too long, or its claimer is gone): by retiring the cell
 * with the same cmpxchg, or by setting the head back over positions whose
 * cells are untouched; either way exactly one cmpxchg takes each message,
 * and a claimer that finds its cell changed skips it. Takers of a single
 * position (the daemon expiring the oldest message, a publisher dropping
 * it) claim it the same way and take it at once.
 *
 * Cost per run: the reads of the run's cells (eight to a line), one
 * cmpxchg of head, and a cmpxchg per message on a line the claim brought
 * in. Consecutive positions are adjacent cells: a producer filling
 * position p and a consumer taking p - 1 may share a line, but runs make
 * both sides touch a line eight messages at a time.
 * The cell mapping is part of the arena protocol: changing it changes
 * SHMBUS_LAYOUT_VERSION.
 *
 * A claimer that dies between its claim and its takes leaves full cells
 * behind head that no one will take: they hold their refs, so nothing is
 * lost, but producers cannot reuse them. The daemon finds them (cells full
 * for a position head has passed, not in the noted claim of an attached
 * consumer, still so after a grace period: claim and take of a single
 * position happen in one epoch section, and a consumer's run is noted),
 * retires them and puts their messages back (reclaim.c).
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
 * consumer finding it at head claims that position alone and retires it as
 * consumed ({p + N, 0}) and says so (-EBADMSG: the caller counts it
 * corrupt). A head found behind its cells (the cell at head consumed for
 * that position) is moved on by whoever finds it so; one ahead of every
 * cell ever filled is what only the daemon can see (repair.c).
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

#define RING_RUN_MAX	32u	/* the longest run one claim takes */

struct ring {
	struct shmbus_cell *cells;
	uint64_t *tail;			/* &queue->tail, producers' line */
	uint64_t *head;			/* &queue->head, consumers' line */
	uint32_t mask;			/* capacity - 1 */
};

/* Fill the capacity-derived fields of @r. */
static inline void ring_geometry(struct ring *r, uint32_t cap)
{
	r->mask = cap - 1;
}

/* The cell of position @pos: cell pos % N. */
static inline uint32_t ring_cell_index(const struct ring *r, uint64_t pos)
{
	return (uint32_t)pos & r->mask;
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
 * cell sees the new value (ring_claim(), ring_peek_head(), the
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

/* Code a test runs between a garbage cell's claim and its retiring, to
 * make a producer fill the cell there (unit_ring); nothing otherwise. */
#ifndef RING_RETIRE_WINDOW
#define RING_RETIRE_WINDOW(r, pos)	do { } while (0)
#endif

/*
 * Retire garbage @v in the cell of @pos, a position we just claimed: a
 * cmpxchg to consumed, not a store, since a producer fills a garbage cell
 * as if it were empty and may have done so meanwhile. True if retired.
 */
static inline bool ring_retire(struct ring *r, uint64_t pos, uint64_t v)
{
	return atomic_cmpxchg(&ring_cell(r, pos)->v, &v,
			      SHMBUS_CELL(pos + r->mask + 1, 0));
}

/*
 * Consumer: claim a run of up to @max (1..RING_RUN_MAX) messages from
 * head: their refs into @refs, the first position into *@from. @note(ctx,
 * from, n, refs), if given, is called with the run before the claiming
 * cmpxchg
 * (again for another run if a competing consumer claims first; only the
 * last call before a success counts). Returns the number claimed, 0 if
 * the ring is empty at head, -EBADMSG (a garbage cell at head, claimed
 * alone and retired: nothing to use; the caller counts it and may go on),
 * or -EUCLEAN (no progress in RING_SPIN_MAX tries: a peer keeps changing
 * head or the cells). The caller then takes each message and gives its
 * cell back with ring_consumed().
 *
 * Ordering: [RING] the acquire loads of the cells pair with the
 * producer's cmpxchg in ring_enqueue(): the chunks are visible once we
 * own the refs. The SEQ_CST cmpxchg of head makes the note visible
 * before the claim (the daemon reads head, then the notes, then cells).
 */
static inline int ring_claim(struct ring *r, uint32_t *refs, uint32_t max,
			     uint64_t *from,
			     void (*note)(void *, uint64_t, uint32_t,
					  const uint32_t *),
			     void *ctx)
{
	*from = 0;
	if (max > RING_RUN_MAX)
		max = RING_RUN_MAX;
	for (uint32_t tries = 0; tries < RING_SPIN_MAX; tries++) {
		uint64_t h = READ_ONCE(*r->head);
		uint32_t m;

		for (m = 0; m < max && m <= r->mask; m++) {
			uint64_t v = smp_load_acquire(&ring_cell(r, h + m)->v);
			int32_t dif = (int32_t)(SHMBUS_CELL_SEQ(v) -
						(uint32_t)(h + m + 1));

			if (dif == 0) {
				refs[m] = SHMBUS_CELL_REF(v);
				continue;
			}
			if (m)
				break;
			if (__builtin_expect(ring_cell_garbage(r, h, v), 0)) {
				/* retire it: claim its position alone; then
				 * producers of h see it consumed */
				if (!atomic_cmpxchg(r->head, &h, h + 1))
					goto again;
				RING_RETIRE_WINDOW(r, h);
				if (ring_retire(r, h, v))
					return -EBADMSG;
				/* a producer filled it meanwhile (it fills
				 * garbage as empty): ours, a claim of one */
				v = smp_load_acquire(&ring_cell(r, h)->v);
				if (SHMBUS_CELL_SEQ(v) != (uint32_t)(h + 1))
					return -EBADMSG;
				refs[0] = SHMBUS_CELL_REF(v);
				if (note)
					note(ctx, h, 1, refs);
				*from = h;
				return 1;
			}
			if (dif < 0)
				return 0;	/* nothing published at h yet */
			/* consumed for h (or a later lap) while head says
			 * h: a head set back; pass it, as its claimer
			 * would have */
			atomic_cmpxchg(r->head, &h, h + 1);
			goto again;
		}
		if (note)
			note(ctx, h, m, refs);
		if (atomic_cmpxchg(r->head, &h, h + m)) {
			*from = h;
			return (int)m;
		}
again:
		cpu_relax();
	}
	return -EUCLEAN;
}

/* Are @n messages or more waiting at head? (Cells fill in position
 * order, so the last of them being full says so.) A hint for how long a
 * run to claim: it may be stale by the time the caller claims. */
static inline bool ring_deep(const struct ring *r, uint32_t n)
{
	uint64_t p = READ_ONCE(*r->head) + n - 1;

	return n <= r->mask + 1 &&
	       SHMBUS_CELL_SEQ(READ_ONCE(ring_cell(r, p)->v)) ==
	       (uint32_t)(p + 1);
}

/*
 * Consumer: take the message @ref claimed at @pos, giving its cell back
 * to the producers: cmpxchg {pos + 1, ref} -> {pos + N, 0}. False if the
 * cell no longer holds it: the claim was taken back (the daemon retired
 * the cell, or set the head back and another claimer took it first), and
 * the message is not ours. A claim is a reservation; this cmpxchg is the
 * take, so a claimer stopped for any time after its claim never gives
 * back a cell that holds another message by now. SEQ_CST: our reads of
 * the cell and of what the caller copied out of it are done before a
 * producer fills it again.
 */
static inline bool ring_consumed(struct ring *r, uint64_t pos, uint32_t ref)
{
	uint64_t v = SHMBUS_CELL(pos + 1, ref);

	return atomic_cmpxchg(&ring_cell(r, pos)->v, &v,
			      SHMBUS_CELL(pos + r->mask + 1, 0));
}

/*
 * Take the message at head: claim one position and give its cell back at
 * once. Returns 0 and *ref, -EAGAIN when the ring is empty, -EBADMSG (a
 * garbage cell retired; nothing taken) or -EUCLEAN. For takers of the
 * oldest message outside a consumer's receive (a publisher dropping it,
 * the daemon): they claim and take in one epoch section, so a claim they
 * die in is finished by the daemon without a note. A claim taken back
 * under us (its cmpxchg fails) is looked past.
 */
static inline int ring_take_one(struct ring *r, uint32_t *ref)
{
	for (uint32_t tries = 0; tries < RING_SPIN_MAX; tries++) {
		uint64_t from;
		int n = ring_claim(r, ref, 1, &from, NULL, NULL);

		if (n != 1)
			return n ? n : -EAGAIN;
		if (ring_consumed(r, from, *ref))
			return 0;
		/* taken back under us: another look */
	}
	return -EUCLEAN;
}

/* ring_take_one(), looking past retired garbage. */
static inline int ring_dequeue(struct ring *r, uint32_t *ref)
{
	int err = -EBADMSG;

	for (uint32_t n = 0; n <= r->mask && err == -EBADMSG; n++)
		err = ring_take_one(r, ref);
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
		pos++;		/* consumed, head set back: look further */
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
	for (uint32_t n = 0; n <= r->mask; n++) {
		uint64_t p = READ_ONCE(*r->head);
		/* [RING] the chunk the caller reads next is the message's */
		uint64_t v = smp_load_acquire(&ring_cell(r, p)->v);
		int32_t dif = (int32_t)(SHMBUS_CELL_SEQ(v) - (uint32_t)(p + 1));

		if (dif == 0) {
			*pos = p;
			*val = v;
			return 1;
		}
		if (dif < 0 && !ring_cell_garbage(r, p, v))
			return 0;
		if (ring_cell_garbage(r, p, v)) {
			/* retire it, as a consumer would (if a producer
			 * filled it meanwhile, the claim sweep puts that
			 * message back) */
			if (atomic_cmpxchg(r->head, &p, p + 1)) {
				RING_RETIRE_WINDOW(r, p);
				ring_retire(r, p, v);
			}
			continue;
		}
		/* consumed, head set back: pass it, as consumers do, or a
		 * head a ring's length behind would hide every message from
		 * this scan for good */
		atomic_cmpxchg(r->head, &p, p + 1);
	}
	return 0;
}

/*
 * Take the message at @pos if it is still the oldest and its cell still
 * holds @val: claim @pos alone, then give the cell back. The cell's
 * sequence only moves forward and only a claimer of @pos changes a full
 * cell, so success means the message stayed in the ring since @val was
 * read (what the caller read of its chunk meanwhile was stable). Returns
 * 0 or -EAGAIN.
 */
static inline int ring_take_at(struct ring *r, uint64_t pos, uint64_t val)
{
	uint64_t h = pos;

	if (READ_ONCE(ring_cell(r, pos)->v) != val ||
	    !atomic_cmpxchg(r->head, &h, pos + 1) ||
	    !ring_consumed(r, pos, SHMBUS_CELL_REF(val)))
		return -EAGAIN;
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
