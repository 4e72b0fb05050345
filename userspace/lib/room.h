/* SPDX-License-Identifier: MIT */
/*
 * room.h - producers that sleep for room in a full ring, and the takers
 * that wake them (layout.h, queue line 4; [ROOM] in barrier.h).
 *
 * A producer that found the ring full spins a little, then: reads
 * room_seq, sets room_wait (xchg, SEQ_CST), looks at the ring once more
 * and, still full, sleeps on the futex room_seq (overflow.c). Whoever
 * gives a cell of one of the queue's rings back (a store, or a cmpxchg)
 * then issues a full fence and loads room_wait: set, it clears it, bumps
 * room_seq and wakes every sleeper (room_wake()). No wake-up is lost: of
 * the producer's xchg and the taker's fence, whichever is later in the
 * single total order sees the other's effect (the ring has room again /
 * room_wait is set); and room_seq, read before room_wait was set, makes
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

/* A cell of one of @q's rings was just given back: wake producers
 * waiting for room, if any. A fence and a load on the taker's path: the
 * store that gave the cell back is no locked instruction. */
static inline void room_made(struct shmbus_queue *q)
{
	/* [ROOM] the cell given back before the load of room_wait */
	smp_mb();
	if (unlikely(READ_ONCE(q->room_wait)))
		room_wake(q);
}

#endif /* SHMBUS_ROOM_H */
