// SPDX-License-Identifier: MIT
/*
 * dedup.c - the dedup keys a dead producer left PENDING (the table
 * protocol is struct shmbus_dedup's in shmbus/layout.h). A producer claims
 * a key with its message's chunk filled and in its hands (the chunk's
 * header names the key), then puts the message into the ring (or hands
 * it to us, delayed), then marks the key seen. Killed in between, it
 * leaves the entry PENDING(slot, gen), and a retry of the key waits for
 * us. We settle it from the dead slot's chunks:
 *
 *   a LOANED chunk of the slot with the key     never went in: FORGOTTEN
 *                                               (before slot.c frees it)
 *   a QUEUED chunk of the slot with the key,    never went in: FORGOTTEN
 *   in no ring after the orphan sweep's grace   (reclaim.c, as it frees it)
 *   period
 *   anything else                               went in (in a ring,
 *                                               taken, or ours, delayed):
 *                                               seen for the window, from
 *                                               the end of the sweep
 *
 * The slot's gen is in the PENDING word, so a later owner of the slot
 * number is never mistaken for the dead one. Every change is a cmpxchg on
 * the exact PENDING word seen: a producer's own commit or abandon (it was
 * not dead after all: a detach by another thread) wins or loses cleanly.
 */
#include "shmbusd.h"
#include "pool.h"

/* The dedup table of live queue (qid, qgen), or NULL. */
static struct shmbus_dedup *dedup_table(const struct dbus *b, uint32_t qid,
					uint32_t qgen, uint32_t *cap)
{
	const struct dqueue *dq = &b->queues[qid];

	if (!dqueue_is(b, qid, qgen) || !dq->dedup_cap || !dq->dedup_units)
		return NULL;
	*cap = dq->dedup_cap;
	return unit_addr(b, dq->dedup_first);
}

/* Entries in state @pend (with key @key, or any key if 0) become @to. */
static unsigned dedup_set(struct shmbus_dedup *t, uint32_t cap, uint64_t pend,
			  uint64_t key, uint64_t to)
{
	unsigned n = 0;

	for (uint32_t i = 0; i < cap; i++) {
		uint64_t x = READ_ONCE(t[i].expires);

		if (x != pend || (key && READ_ONCE(t[i].key) != key))
			continue;
		/* [DEDUP] a SEQ_CST cmpxchg, so a release: pairs with the
		 * acquire in the library's dedup_claim() */
		n += atomic_cmpxchg(&t[i].expires, &x, to);
	}
	return n;
}

void dedup_dead_producer(struct dbus *b, uint32_t si)
{
	const struct arena *a = &b->arena;
	const struct dslot *ds = &b->slots[si];
	uint64_t pend = SHMBUS_DEDUP_PEND(si, ds->gen);
	struct shmbus_dedup *t;
	uint32_t cap;
	bool any = false;

	t = dedup_table(b, ds->qid, ds->qgen, &cap);
	if (!t)
		return;
	for (uint32_t i = 0; i < cap && !any; i++)
		any = READ_ONCE(t[i].expires) == pend;
	if (!any)
		return;
	for (unsigned pi = 0; pi < a->nr_pools; pi++) {
		for (uint32_t i = 0; i < a->pool[pi].nr_chunks; i++) {
			const struct shmbus_chunk *c = pool_chunk(a, pi, i);
			uint64_t o = READ_ONCE(c->owner), k;

			if (SHMBUS_OWNER_SLOT(o) != si ||
			    SHMBUS_OWNER_STATE(o) != SHMBUS_CHUNK_LOANED)
				continue;
			k = READ_ONCE(c->dedup_key);
			if (k && dedup_set(t, cap, pend, k,
					   SHMBUS_DEDUP_FORGOTTEN))
				log_debug("bus '%s': slot %u died before its "
					  "message of dedup key %016llx went "
					  "in: key forgotten", b->name, si,
					  (unsigned long long)k);
		}
	}
}

void dedup_orphan(struct dbus *b, uint32_t qid, uint32_t qgen, uint32_t si,
		  uint32_t gen, uint64_t key)
{
	struct shmbus_dedup *t;
	uint32_t cap;

	t = key ? dedup_table(b, qid, qgen, &cap) : NULL;
	if (t)
		dedup_set(t, cap, SHMBUS_DEDUP_PEND(si, gen), key,
			  SHMBUS_DEDUP_FORGOTTEN);
}

void dedup_settle(struct dbus *b, uint32_t qid, uint32_t qgen, uint32_t si,
		  uint32_t gen)
{
	struct shmbus_dedup *t;
	uint32_t cap;
	unsigned n;

	t = dedup_table(b, qid, qgen, &cap);
	if (!t)
		return;
	n = dedup_set(t, cap, SHMBUS_DEDUP_PEND(si, gen), 0,
		      (uint64_t)now_ns() + b->queues[qid].dedup_window_ns);
	if (n)
		log_debug("bus '%s': slot %u died after its message went in: "
			  "%u dedup keys seen", b->name, si, n);
}
