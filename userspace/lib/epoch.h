/* SPDX-License-Identifier: MIT */
/*
 * epoch.h - cross-process RCU over the arena (read side inline).
 *
 * liburcu's grace periods stop at the process boundary, so the arena has
 * its own: each participant slot publishes, while it is inside a read-side
 * section, the global epoch it saw on entry (slot->rcu_epoch = epoch<<1|1),
 * and 0 outside. The daemon, to reuse memory that readers may still be
 * looking at (a deleted queue's ring), bumps sb->gp_epoch, issues
 * membarrier(MEMBARRIER_CMD_GLOBAL) and waits until every live slot is
 * outside a section or inside one that began after the bump (epoch.c).
 *
 * The membarrier is what lets the read side go without a fence, exactly as
 * liburcu's "memb" flavour: either the daemon's scan sees the reader's
 * epoch store, or the reader's loads after that store see the update the
 * daemon made before the membarrier.
 *
 * Sections are short and never block: a consumer leaves its section
 * before it sleeps.
 */
#ifndef SHMBUS_EPOCH_H
#define SHMBUS_EPOCH_H

#include "internal.h"

static inline void epoch_enter(const struct arena *a, struct shmbus_slot *s)
{
	/* [EPOCH] acquire pairs with the release store in
	 * epoch_gp_start(): a reader that sees the new epoch also sees the
	 * update before it */
	uint64_t e = smp_load_acquire(&a->sb->gp_epoch);

	WRITE_ONCE(s->rcu_epoch, (e << 1) | 1);
	/* [MEMB] No fence: the daemon's membarrier(GLOBAL) in
	 * epoch_gp_start() supplies it; unless the arena says membarrier was
	 * missing, then we pay for one here. */
	if (unlikely(a->reader_fence))
		smp_mb();
	else
		barrier();
}

static inline void epoch_exit(struct shmbus_slot *s)
{
	/* [QUIESCE] release: every access of the section is done before
	 * the daemon can see us quiescent (pairs with the acquire in
	 * epoch_gp_done()) */
	smp_store_release(&s->rcu_epoch, 0);
}

/*
 * Grace periods (daemon side). epoch_gp_start() bumps the epoch and issues
 * the membarrier; it returns the target epoch. epoch_gp_done() returns true
 * once no attached slot is still in a section that began before the target
 * epoch. Which slots are attached is the caller's knowledge (@attached;
 * the daemon's own records): the arena's slot states and pids are only
 * for readers, and a peer could forge them. Poll it.
 */
SHMBUS_PRIVATE_API
uint64_t epoch_gp_start(const struct arena *a);
/* Does this kernel have membarrier(MEMBARRIER_CMD_GLOBAL)? (probed once) */
bool epoch_membarrier_ok(void);
SHMBUS_PRIVATE_API
bool epoch_gp_done(const struct arena *a, uint64_t target,
		   bool (*attached)(void *ctx, uint32_t slot), void *ctx);

#endif /* SHMBUS_EPOCH_H */
