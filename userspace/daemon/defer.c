// SPDX-License-Identifier: MIT
/*
 * defer.c - freeing after a grace period: the daemon's call_rcu().
 *
 * Other processes read parts of the arena the daemon reuses (a deleted
 * queue's ring and dedup table, a topic's superseded fan-out array, chunks
 * a killed process may have left half-handled) inside read-side sections
 * (epoch.h). Before reusing them, the daemon unlinks them, starts a grace
 * period of the bus and waits until every process attached to the bus has
 * left the sections it was in. defer() is that wait for every such case:
 * the callback runs from defer_tick(), which the event loop calls while
 * anything is pending (at least every 2 ms).
 *
 * Which slots are attached is the daemon's knowledge (slot_attached), not
 * the arena's: a peer cannot hold reclamation up by forging slot states,
 * only by staying inside a section, which it can only do while it lives
 * and is attached.
 */
#include "shmbusd.h"
#include "epoch.h"

void defer(struct dbus *b, struct defer_head *h, defer_fn *fn)
{
	h->fn = fn;
	h->next = NULL;
	/* the caller's unlinking is done: readers that start after this
	 * cannot find what @h frees */
	h->gp = epoch_gp_start(&b->arena);
	*b->deferred_tail = h;		/* bus_record() set it up */
	b->deferred_tail = &h->next;
	server_want_tick();
}

bool defer_tick(struct dbus *b)
{
	struct defer_head **pp = &b->deferred;

	while (*pp) {
		struct defer_head *h = *pp;

		/* each target on its own: gp_epoch lives in the arena, so
		 * targets need not grow in list order */
		if (!epoch_gp_done(&b->arena, h->gp, slot_attached, b)) {
			pp = &h->next;
			continue;
		}
		*pp = h->next;
		if (!h->next)
			b->deferred_tail = pp;
		h->fn(b, h, true);	/* may free h, and may defer again */
	}
	return b->deferred != NULL;
}

void defer_drop(struct dbus *b)
{
	while (b->deferred) {
		struct defer_head *h = b->deferred;

		b->deferred = h->next;
		h->fn(b, h, false);
	}
	b->deferred_tail = &b->deferred;
}
