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
 * and is attached. How long it may do that is bounded (defer_watch): a
 * slot seen in the same section, holding a grace period, for
 * GP_HOLD_MAX_NS gets its connection closed, which releases the slot as
 * the connection's EOF would; a released slot no longer counts.
 */
#include <stdio.h>

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

/*
 * Time the sections that hold a grace period up: every attached slot in a
 * section that began before target @max (the newest still waited for).
 * A section is timed from the tick that first saw it (its rcu_epoch value
 * under the slot's gen); a new section, a new owner of the slot, or the
 * slot leaving its section starts over. A healthy section lasts well under
 * a microsecond and a descheduled process resumes within milliseconds:
 * GP_HOLD_MAX_NS in one section means the process is stopped, traced or
 * hostile (rcu_epoch is in the arena, any member can write its own), and
 * every bus member's memory reuse, and the quota charges released by it,
 * would wait for it. Its connection is closed. Only readers of the bus
 * are affected: the rest of the bus goes on.
 */
static void defer_watch(struct dbus *b, uint64_t max, int64_t now)
{
	for (uint32_t i = 0; i < b->arena.max_slots; i++) {
		struct dslot *ds = &b->slots[i];
		char why[256];
		uint64_t v;

		if (!ds->conn_id)
			continue;
		/* only looked at: the grace period itself is epoch_gp_done's */
		v = READ_ONCE(b->arena.slots[i].rcu_epoch);
		if (!(v & 1) || (v >> 1) >= max) {
			ds->held = 0;
			continue;
		}
		if (ds->held != v || ds->held_gen != ds->gen) {
			ds->held = v;
			ds->held_gen = ds->gen;
			ds->held_since = now;
			continue;
		}
		if (now - ds->held_since < GP_HOLD_MAX_NS)
			continue;
		snprintf(why, sizeof(why), "its slot %u of bus %u:%s stayed in one "
			 "read-side section for %lld ms, holding the bus's "
			 "grace periods", i, b->owner_uid, b->name,
			 (long long)((now - ds->held_since) / NSEC_PER_MSEC));
		log_warn("%s", why);
		server_conn_evict(ds->conn_id, why);
		ds->held = 0;
	}
}

bool defer_tick(struct dbus *b, int64_t now)
{
	struct defer_head **pp = &b->deferred;
	uint64_t held = 0;

	while (*pp) {
		struct defer_head *h = *pp;

		/* each target on its own: gp_epoch lives in the arena, so
		 * targets need not grow in list order */
		if (!epoch_gp_done(&b->arena, h->gp, slot_attached, b)) {
			held = MAX(held, h->gp);
			pp = &h->next;
			continue;
		}
		*pp = h->next;
		if (!h->next)
			b->deferred_tail = pp;
		h->fn(b, h, true);	/* may free h, and may defer again */
	}
	if (held)
		defer_watch(b, held, now);
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
