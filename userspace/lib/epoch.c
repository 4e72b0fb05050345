// SPDX-License-Identifier: MIT
/*
 * epoch.c - the grace-period side of the arena's cross-process RCU
 * (see epoch.h for the read side and the argument).
 */
#include <linux/membarrier.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "epoch.h"
#include "room.h"

bool epoch_membarrier_ok(void)
{
	static int supported = -1;	/* probed once; racing probes agree */

	if (READ_ONCE(supported) < 0) {
		long mask = syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);

		WRITE_ONCE(supported,
			   mask > 0 && (mask & MEMBARRIER_CMD_GLOBAL));
	}
	return READ_ONCE(supported);
}

static int membarrier_global(void)
{
	if (!epoch_membarrier_ok())
		return -ENOSYS;
	return syscall(__NR_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) ? -errno : 0;
}

uint64_t epoch_gp_start(const struct arena *a)
{
	uint64_t e = READ_ONCE(a->sb->gp_epoch) + 1;

	/* [EPOCH] release: the updates the caller made (e.g. a queue's gen
	 * bump) are visible to a reader that sees epoch e (pairs with the
	 * acquire in epoch_enter()) */
	smp_store_release(&a->sb->gp_epoch, e);
	smp_mb();
	/* [MEMB] Make every running thread of every process execute a full
	 * barrier: after this, a reader's epoch store that our scan cannot
	 * see is ordered before that reader's loads of our update. Arenas
	 * created without membarrier carry READER_FENCE, and their readers
	 * fence on entry themselves (epoch_enter). */
	membarrier_global();
	return e;
}

bool epoch_gp_done(const struct arena *a, uint64_t target,
		   bool (*attached)(void *ctx, uint32_t slot), void *ctx)
{
	for (uint32_t i = 0; i < a->max_slots; i++) {
		uint64_t v;

		if (!attached(ctx, i))
			continue;
		/* [QUIESCE] acquire pairs with the release in epoch_exit() */
		v = smp_load_acquire(&a->slots[i].rcu_epoch);
		if (!(v & 1) || (v >> 1) >= target)
			continue;
		return false;
	}
	return true;
}

/* ---- [ROOM]: the fence of producers sleeping for room (room.h) -------- */

static bool room_registered;
static bool room_expedited;	/* the kernel has GLOBAL_EXPEDITED */

static void room_register(void)
{
	long mask = syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);

	if (mask <= 0 || !(mask & MEMBARRIER_CMD_GLOBAL_EXPEDITED) ||
	    !(mask & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED))
		return;
	WRITE_ONCE(room_expedited, true);
	if (!syscall(__NR_membarrier,
		     MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0))
		WRITE_ONCE(room_registered, true);
}

bool room_fence_init(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, room_register);
	return READ_ONCE(room_registered);
}

void room_fence_takers(void)
{
	room_fence_init();
	if (READ_ONCE(room_expedited))
		syscall(__NR_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0);
}
