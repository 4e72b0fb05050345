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
 * The work is one pass over the table and one over the chunks per dead
 * producer, and one pass over the table per sweep, whatever a member wrote
 * into the arena: a producer has one key PENDING at most, and more are
 * forgotten at once (DEDUP_PEND_MAX).
 *
 * The slot's gen is in the PENDING word, so a later owner of the slot
 * number is never mistaken for the dead one. Every change is a cmpxchg on
 * the exact PENDING word seen: a producer's own commit or abandon (it was
 * not dead after all: a detach by another thread) wins or loses cleanly.
 */
#include <stdlib.h>

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

/*
 * The most PENDING entries a live producer slot can have: one. A producer
 * handle publishes from one thread at a time (shmbus.h), a child refuses
 * an inherited handle, and each publish or commit claims at most one key
 * (a batch takes no dedup id) and settles it before it returns. More
 * entries PENDING for one slot were written by a member into the table:
 * they are forgotten at once, so that the work on a dead producer's keys
 * stays one pass over the table and one over the chunks, whatever the
 * arena says.
 */
#define DEDUP_PEND_MAX	1u

/* Entry @i, seen in state @pend with key @key (0: any key), becomes @to. */
static bool dedup_set_one(struct shmbus_dedup *t, uint32_t i, uint64_t pend,
			  uint64_t key, uint64_t to)
{
	uint64_t x = pend;

	if (key && READ_ONCE(t[i].key) != key)
		return false;
	/* [DEDUP] a SEQ_CST cmpxchg, so a release: pairs with the acquire in
	 * the library's dedup_claim() */
	return atomic_cmpxchg(&t[i].expires, &x, to);
}

/* Entries in state @pend (any key) become @to: one pass over the table. */
static unsigned dedup_set_all(struct shmbus_dedup *t, uint32_t cap,
			      uint64_t pend, uint64_t to)
{
	unsigned n = 0;

	for (uint32_t i = 0; i < cap; i++)
		if (READ_ONCE(t[i].expires) == pend)
			n += dedup_set_one(t, i, pend, 0, to);
	return n;
}

void dedup_dead_producer(struct dbus *b, uint32_t si)
{
	const struct arena *a = &b->arena;
	const struct dslot *ds = &b->slots[si];
	uint64_t pend = SHMBUS_DEDUP_PEND(si, ds->gen);
	uint64_t key[DEDUP_PEND_MAX] = { 0 };
	uint32_t at[DEDUP_PEND_MAX] = { 0 };
	unsigned n = 0, forged = 0;
	struct shmbus_dedup *t;
	uint32_t cap;

	t = dedup_table(b, ds->qid, ds->qgen, &cap);
	if (!t)
		return;
	/* one pass over the table: the slot's PENDING entries */
	for (uint32_t i = 0; i < cap; i++) {
		uint64_t k;

		if (READ_ONCE(t[i].expires) != pend)
			continue;
		k = READ_ONCE(t[i].key);
		if (n < DEDUP_PEND_MAX) {
			key[n] = k;
			at[n++] = i;
		} else {
			forged += dedup_set_one(t, i, pend, 0,
						SHMBUS_DEDUP_FORGOTTEN);
		}
	}
	if (forged)
		log_warn("bus '%s': slot %u died with more dedup keys pending "
			 "than a producer can have: %u forgotten", b->name,
			 si, forged);
	if (!n)
		return;
	/* one pass over the chunks: those still LOANED by the slot */
	for (unsigned pi = 0; pi < a->nr_pools; pi++) {
		for (uint32_t i = 0; i < a->pool[pi].nr_chunks; i++) {
			const struct shmbus_chunk *c = pool_chunk(a, pi, i);
			uint64_t o = READ_ONCE(c->owner), k;

			if (SHMBUS_OWNER_SLOT(o) != si ||
			    SHMBUS_OWNER_STATE(o) != SHMBUS_CHUNK_LOANED)
				continue;
			k = READ_ONCE(c->dedup_key);
			for (unsigned j = 0; k && j < n; j++) {
				if (key[j] != k ||
				    !dedup_set_one(t, at[j], pend, k,
						   SHMBUS_DEDUP_FORGOTTEN))
					continue;
				log_debug("bus '%s': slot %u died before its "
					  "message of dedup key %016llx went "
					  "in: key forgotten", b->name, si,
					  (unsigned long long)k);
			}
		}
	}
}

static int key_cmp(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;

	return a < b ? -1 : a > b;
}

void dedup_orphans(struct dbus *b, uint32_t qid, uint32_t qgen, uint32_t si,
		   uint32_t gen, uint64_t *keys, unsigned nkeys)
{
	uint64_t pend = SHMBUS_DEDUP_PEND(si, gen);
	struct shmbus_dedup *t;
	uint32_t cap;

	t = nkeys ? dedup_table(b, qid, qgen, &cap) : NULL;
	if (!t)
		return;
	qsort(keys, nkeys, sizeof(keys[0]), key_cmp);
	/* one pass over the table, whatever the number of keys */
	for (uint32_t i = 0; i < cap; i++) {
		uint64_t k;

		if (READ_ONCE(t[i].expires) != pend)
			continue;
		k = READ_ONCE(t[i].key);
		if (k && bsearch(&k, keys, nkeys, sizeof(keys[0]), key_cmp))
			dedup_set_one(t, i, pend, k, SHMBUS_DEDUP_FORGOTTEN);
	}
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
	n = dedup_set_all(t, cap, SHMBUS_DEDUP_PEND(si, gen),
			  (uint64_t)now_ns() + b->queues[qid].dedup_window_ns);
	if (n)
		log_debug("bus '%s': slot %u died after its message went in: "
			  "%u dedup keys seen", b->name, si, n);
}
