/* SPDX-License-Identifier: MIT */
/*
 * room.h - producers that sleep for room in a full ring, and the takers
 * that wake them (layout.h, queue line 4; [ROOM] in barrier.h).
 *
 * A producer that found the ring full spins a little, then: reads
 * room_seq, sets room_wait (xchg, SEQ_CST), issues
 * membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED), looks at the ring once
 * more and, still full, sleeps on the futex room_seq (overflow.c).
 * Whoever gives a cell of one of the queue's rings back (a store) then
 * loads room_wait: set, it clears it, bumps room_seq and wakes every
 * sleeper (room_wake()). A store then a load may be reordered, and a
 * fence per message on the taker's path is what its runs save; so the
 * fence is the sleeping producer's: the membarrier makes every running
 * thread of every registered process execute a full barrier. A taker's
 * load of room_wait after that barrier sees the flag (set before the
 * membarrier); a load before it has its store, which precedes it, made
 * visible by it, so the producer's last look sees the room. Every process
 * registers when it maps an arena (arena_map()); one that could not (a
 * kernel without the command) fences for itself after each store (struct
 * arena's room_fence). And room_seq, read before room_wait was set, makes
 * a futex wait that starts after the bump return at once. A producer
 * killed while it waits leaves room_wait set: the next taker clears it,
 * one futex call for nothing. A member that clears it makes sleepers
 * wait out their nap (overflow.c ROOM_NAP_NS), never for ever.
 */
#ifndef SHMBUS_ROOM_H
#define SHMBUS_ROOM_H

#include "internal.h"

/* Out of line: clear room_wait, bump room_seq, wake the sleepers (if
 * room_wait was set: another taker may have done it). */
SHMBUS_PRIVATE_API
void room_wake(struct shmbus_queue *q);

/* Register this process for the producers' membarrier (once; every
 * process does when it maps an arena: arena_map()). True if it is: its
 * takers need no fence of their own (struct arena's room_fence false). */
SHMBUS_PRIVATE_API
bool room_fence_init(void);

/* A producer about to sleep for room, after setting room_wait: make the
 * takers' stores before their loads of room_wait visible ([ROOM]). */
SHMBUS_PRIVATE_API
void room_fence_takers(void);

/* A cell of one of @q's rings (in arena @a) was just given back: wake
 * producers waiting for room, if any. A load on the taker's path. */
static inline void room_made(const struct arena *a, struct shmbus_queue *q)
{
	/* [ROOM] the cell given back before the load of room_wait: by the
	 * sleeping producer's membarrier, or our own fence */
	if (unlikely(a->room_fence))
		smp_mb();
	else
		barrier();
	if (unlikely(READ_ONCE(q->room_wait)))
		room_wake(q);
}

#endif /* SHMBUS_ROOM_H */
