// SPDX-License-Identifier: MIT
/*
 * dedup.c - idempotency keys: a publish with a dedup id records the id's
 * hash in the queue's dedup table (made by the daemon, shared by every
 * producer of the queue) and is dropped, counted, if the same id was
 * published within the queue's window. The table protocol is
 * struct shmbus_dedup's in shmbus/layout.h.
 */
#include "producer.h"

/*
 * The queue's dedup table, if it has one that lies inside the ring area
 * (the descriptor is the daemon's, but any peer could have scribbled on
 * it: a bad one just means no dedup).
 */
void dedup_bind(struct shmbus_producer *p)
{
	const struct arena *a = &p->at.bus->arena;
	const struct shmbus_queue *q = p->at.q;
	uint32_t cap = READ_ONCE(q->dedup_cap);
	uint64_t off = READ_ONCE(q->dedup_off);
	uint64_t end = a->ring_off + a->ring_units * SHMBUS_RING_UNIT;

	if (!cap || (cap & (cap - 1)) || off < a->ring_off || off > end ||
	    (uint64_t)cap * sizeof(struct shmbus_dedup) > end - off ||
	    off % sizeof(struct shmbus_dedup))
		return;
	p->dedup = (struct shmbus_dedup *)(a->base + off);
	p->dedup_mask = cap - 1;
	p->dedup_window = (int64_t)READ_ONCE(q->dedup_window_ns);
}

/* FNV-1a, never 0 (0 marks an empty table entry). */
static uint64_t dedup_key_of(const char *id)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *id; id++)
		h = (h ^ (uint8_t)*id) * 0x100000001b3ULL;
	return h ? h : 1;
}

/*
 * Has @key been published within the window? If not, record it (and the
 * publish goes ahead). Lock-free: the shmbus_dedup protocol in the layout.
 */
static bool dedup_seen(struct shmbus_producer *p, uint64_t key)
{
	int64_t now = now_ns();

	for (uint32_t n = 0; n < SHMBUS_DEDUP_PROBE; n++) {
		struct shmbus_dedup *e = &p->dedup[(key + n) & p->dedup_mask];
		uint64_t k = READ_ONCE(e->key), x;

		for (;;) {
			x = READ_ONCE(e->expires);
			if (k == key)
				return x == 0 || (int64_t)x > now;
			if (k && (x == 0 || (int64_t)x > now))
				break;		/* someone else's live key */
			/* empty or expired: claim it */
			if (atomic_cmpxchg(&e->key, &k, key)) {
				WRITE_ONCE(e->expires, (uint64_t)(now +
					   p->dedup_window));
				return false;
			}
			/* k now holds what beat us: look again */
		}
	}
	return false;	/* no room in reach: accepted without dedup */
}

uint64_t dedup_record(struct shmbus_producer *p, const char *id)
{
	uint64_t key = dedup_key_of(id);

	if (!dedup_seen(p, key))
		return key;
	slot_count(p->at.slot, SHMBUS_CTR_DUPLICATE, 1);
	return 0;
}

void dedup_forget(struct shmbus_producer *p, uint64_t key)
{
	for (uint32_t n = 0; n < SHMBUS_DEDUP_PROBE; n++) {
		struct shmbus_dedup *e = &p->dedup[(key + n) & p->dedup_mask];
		uint64_t k = key;

		if (READ_ONCE(e->key) == key) {
			WRITE_ONCE(e->expires, 1);	/* long expired */
			atomic_cmpxchg(&e->key, &k, 0);
			return;
		}
	}
}
