/* SPDX-License-Identifier: MIT */
/*
 * lane.h - a ring of chunk refs with ONE producer and competing consumers
 * that claim runs of messages (inline fast path).
 *
 * This is the lane of docs/decisions.md, "Ring per queue, not per
 * producer": what a queue is to give each of its producers, so that a
 * publish is plain stores and a consumer takes up to a run of messages
 * with one cmpxchg. Queues do not use lanes yet; tools/bench/ring-ceiling
 * measures this code against the queue ring (ring.h) and an SPSC ring.
 *
 * Cells are ring.h's 64-bit {seq, ref} words; for a position p and
 * capacity N (a power of two), the cell of p reads:
 *
 *   seq == p        empty, ready for the producer's position p
 *   seq == p + 1    full, holds the message published at p
 *   seq == p + N    consumed: empty for p + N
 *
 * Consecutive positions are adjacent cells (not spread as in ring.h):
 * the producer writes them in order and a claim reads a run of them, so
 * eight publishes or eight claimed messages share one line transfer.
 *
 * The producer. A lane has one, so its position is its own count (a
 * process-local variable; a new owner of an empty lane starts at
 * *head). Publishing is one release store of the cell: the chunk written
 * before is visible to whoever sees the cell full ([RING], as the
 * cmpxchg of ring_enqueue() gives). A store is never half done, so a
 * producer killed at any instruction has published or not; nothing it
 * leaves blocks a consumer. Room comes from the cells themselves: claims
 * finish in any order when consumers compete, so no single index says
 * how far the lane is free.
 *
 * Consumers. *head counts the positions claimed, and only moves by
 * cmpxchg. A consumer reads the full cells from head on (a run of at
 * most max), tells its caller the run it is about to claim (the caller
 * notes it where the daemon finds it: if the consumer dies between its
 * claim and its use of the refs, the daemon finishes the claim,
 * lane_finish()), then claims the whole run with ONE cmpxchg of head.
 * Success means head did not move since it was read, so nobody claimed
 * those cells meanwhile and they still hold what was read (the producer
 * never overwrites a full cell). The claimer then marks each cell
 * consumed with a release store (lane_consumed()), which is what gives
 * the cell back to the producer: until then the producer does not reuse
 * it, so the consumer may still read it.
 *
 * Cost: the producer's stores, and for each run the consumer's reads of
 * the run's lines, one cmpxchg and the marking stores: no locked
 * instruction per message on either side. (The sleep/wake fence a plain
 * store publish lacks is the caller's: see decisions.md.)
 *
 * Garbage. A cell can only hold a sequence of its own residue class (p,
 * p + 1 modulo N). The producer fills a cell holding anything else as if
 * it were empty (it is the lane's only writer of full cells); a consumer
 * finding one at head claims that position alone and retires it as
 * consumed (-EBADMSG: the caller counts it corrupt). A head a member set
 * ahead or behind the cells makes the lane look empty from there on (its
 * messages are spoiled, the daemon's to repair); nothing here reads or
 * writes outside the cells, and every loop is bounded.
 */
#ifndef SHMBUS_LANE_H
#define SHMBUS_LANE_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "barrier.h"
#include "shmbus/layout.h"

#define LANE_RUN_MAX	32u	/* the longest run one claim takes */
#define LANE_SPIN_MAX	(1u << 20)

struct lane {
	struct shmbus_cell *cells;
	uint64_t *head;			/* consumers' line: positions claimed */
	uint32_t mask;			/* capacity - 1 */
};

static inline struct shmbus_cell *lane_cell(const struct lane *l,
					    uint64_t pos)
{
	return &l->cells[(uint32_t)pos & l->mask];
}

/* Can @v never be a state of the cell of @pos? (Capacity 2: no value.) */
static inline bool lane_cell_garbage(const struct lane *l, uint64_t pos,
				     uint64_t v)
{
	return ((SHMBUS_CELL_SEQ(v) - (uint32_t)pos) & l->mask) > 1;
}

/* Lap 0, and head 0 (the daemon, when it makes the lane). */
static inline void lane_init(struct lane *l)
{
	for (uint64_t p = 0; p <= l->mask; p++)
		lane_cell(l, p)->v = SHMBUS_CELL(p, 0);
	*l->head = 0;
}

/*
 * Producer: how many positions from @pos on are free to publish at, up
 * to the end of @pos's cache line (the line came with the first load, so
 * the rest of it costs nothing); 0 if the cell of @pos is still full or
 * claimed and not yet consumed. The acquire pairs with the consumer's
 * release in lane_consumed(): its reads of the old cell are done before
 * we overwrite it.
 */
static inline uint32_t lane_room(const struct lane *l, uint64_t pos)
{
	const uint32_t per_line = 64 / sizeof(struct shmbus_cell);
	uint32_t n = 0;

	do {
		uint64_t v = smp_load_acquire(&lane_cell(l, pos + n)->v);

		if (SHMBUS_CELL_SEQ(v) != (uint32_t)(pos + n) &&
		    !lane_cell_garbage(l, pos + n, v))
			break;
		n++;
	} while (n <= l->mask && (pos + n) % per_line);
	return n;
}

/* Producer: publish @ref at @pos, whose cell lane_room() found free. */
static inline void lane_publish(struct lane *l, uint64_t pos, uint32_t ref)
{
	/* [RING] release: the chunk written before is visible with it */
	smp_store_release(&lane_cell(l, pos)->v, SHMBUS_CELL(pos + 1, ref));
}

/*
 * Consumer: claim a run of up to @max (at most LANE_RUN_MAX) messages
 * from head: their refs into @refs, the first position into *@from.
 * @note(@ctx, from, n, refs) is called with the run before the claiming
 * cmpxchg (it may be called again for another run if a competing
 * consumer claims first; only the last call before a success counts).
 * Returns the number claimed, 0 if the lane is empty at head, -EBADMSG
 * (a garbage cell at head, claimed alone and retired: nothing to use;
 * the caller counts it and may go on), or -EUCLEAN (no progress in
 * LANE_SPIN_MAX tries: a peer keeps changing head). The caller then
 * uses the refs and gives the cells back with lane_consumed().
 */
static inline int lane_claim(struct lane *l, uint32_t *refs, uint32_t max,
			     uint64_t *from,
			     void (*note)(void *, uint64_t, uint32_t,
					  const uint32_t *),
			     void *ctx)
{
	*from = 0;
	if (max > LANE_RUN_MAX)
		max = LANE_RUN_MAX;
	for (uint32_t tries = 0; tries < LANE_SPIN_MAX; tries++) {
		uint64_t h = READ_ONCE(*l->head);
		uint32_t m;

		for (m = 0; m < max && m <= l->mask; m++) {
			/* [RING] pairs with the producer's release store */
			uint64_t v = smp_load_acquire(&lane_cell(l, h + m)->v);

			if (SHMBUS_CELL_SEQ(v) == (uint32_t)(h + m + 1)) {
				refs[m] = SHMBUS_CELL_REF(v);
				continue;
			}
			if (!m && lane_cell_garbage(l, h, v)) {
				/* retire it: claim its position alone */
				if (!atomic_cmpxchg(l->head, &h, h + 1))
					goto again;
				/* release: as lane_consumed() */
				smp_store_release(&lane_cell(l, h)->v,
						  SHMBUS_CELL(h + l->mask + 1,
							      0));
				return -EBADMSG;
			}
			break;
		}
		if (!m)
			return 0;
		note(ctx, h, m, refs);
		/* SEQ_CST: the caller's note is visible before the claim
		 * (the daemon reads head, then the notes, then the cells) */
		if (atomic_cmpxchg(l->head, &h, h + m)) {
			*from = h;
			return (int)m;
		}
again:
		cpu_relax();
	}
	return -EUCLEAN;
}

/* Consumer: give the @n cells claimed from @from back to the producer,
 * once their refs are copied out. */
static inline void lane_consumed(struct lane *l, uint64_t from, uint32_t n)
{
	/* release: our reads of the cells (and of what the caller copied
	 * out of them) are done before the producer, whose acquire in
	 * lane_room() sees the mark, writes the cell again */
	for (uint32_t k = 0; k < n; k++)
		smp_store_release(&lane_cell(l, from + k)->v,
				  SHMBUS_CELL(from + k + l->mask + 1, 0));
}

/*
 * The daemon, for a consumer that died: finish its claim of @n positions
 * from @from (the run it noted), whose cmpxchg it cannot tell succeeded.
 * A position head has passed whose cell is still full for it was claimed
 * and never given back: by the dead consumer if no live one noted it too
 * (the caller's to know), since a live claimer gives its cells back right
 * after its claim. Each such cell is retired with a cmpxchg (a live
 * consumer's lane_consumed() racing with us leaves the same value) and
 * its ref reported in @refs, for the caller to put back into the queue.
 * Returns how many.
 */
static inline uint32_t lane_finish(struct lane *l, uint64_t from, uint32_t n,
				   uint32_t *refs)
{
	uint64_t h = READ_ONCE(*l->head);
	uint32_t got = 0;

	if (n > LANE_RUN_MAX)
		n = LANE_RUN_MAX;
	for (uint32_t k = 0; k < n; k++) {
		uint64_t p = from + k, v = READ_ONCE(lane_cell(l, p)->v);

		if (p >= h || SHMBUS_CELL_SEQ(v) != (uint32_t)(p + 1))
			continue;
		if (atomic_cmpxchg(&lane_cell(l, p)->v, &v,
				   SHMBUS_CELL(p + l->mask + 1, 0)))
			refs[got++] = SHMBUS_CELL_REF(v);
	}
	return got;
}

/* Messages at head on, for statistics and a consumer about to sleep: 1
 * if the cell at head is full. */
static inline bool lane_nonempty(const struct lane *l)
{
	uint64_t h = READ_ONCE(*l->head);

	return SHMBUS_CELL_SEQ(READ_ONCE(lane_cell(l, h)->v)) ==
	       (uint32_t)(h + 1);
}

#endif /* SHMBUS_LANE_H */
