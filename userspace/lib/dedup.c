// SPDX-License-Identifier: MIT
/*
 * dedup.c - idempotency keys: a publish with a dedup id records the id's
 * hash in the queue's dedup table (made by the daemon, shared by every
 * producer of the queue) and is dropped, counted, if the same id was
 * published within the queue's window. The table protocol is
 * struct shmbus_dedup's in shmbus/layout.h; in short:
 *
 *   claim      the message's chunk is filled (its header names the key)
 *              and QUEUED or LOANED by us; a cmpxchg puts the key into a
 *              free entry, a cmpxchg of its state from what it was to
 *              PENDING(our slot, gen) makes the entry ours
 *   publish    the ring cmpxchg (or the daemon taking a delayed message)
 *   seen       a cmpxchg of the state from PENDING to the expiry time:
 *              only now does the key count as seen
 *   abandon    the publish failed: PENDING -> FORGOTTEN, before the chunk
 *              is freed
 *
 * A key found PENDING is being published (or its producer died and the
 * daemon has not settled it yet): a publish of the same key waits for the
 * outcome, as its timeout allows, and never drops itself on a pending
 * key. The daemon settles a dead producer's PENDING entries from its
 * chunks (daemon dedup.c): a chunk of the key still in the dead slot's
 * hands means the message never went in (FORGOTTEN), otherwise it did
 * (seen). A key whose claim stopped half way (key written, state not) is
 * free to take, by the same key or another: the half-done claimer's state
 * cmpxchg then fails and it looks again.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
	/* a test's kill points (secure: a set-uid program ignores it) */
	p->failpoint = secure_getenv("SHMBUS_FAILPOINT");
}

void dedup_failpoint(const struct shmbus_producer *p, const char *name)
{
	if (!strcmp(p->failpoint, name))
		kill(getpid(), SIGKILL);
}

uint64_t dedup_key_of(const char *id)
{
	uint64_t h = 0xcbf29ce484222325ULL;	/* FNV-1a, never 0 */

	for (; *id; id++)
		h = (h ^ (uint8_t)*id) * 0x100000001b3ULL;
	return h ? h : 1;
}

/* Does state @x say "seen" at @now? */
static bool dedup_live(uint64_t x, int64_t now)
{
	return !(x & SHMBUS_DEDUP_PENDING) && x > SHMBUS_DEDUP_FORGOTTEN &&
	       (int64_t)x > now;
}

static uint64_t dedup_mine(const struct shmbus_producer *p)
{
	return SHMBUS_DEDUP_PEND(p->at.slot_idx, p->at.slot_gen);
}

/* A claim gives up after this many lost races (then: -EBUSY, or wait). */
#define DEDUP_RACES	64

int dedup_claim(struct shmbus_producer *p, uint64_t key,
		struct shmbus_dedup **out)
{
	uint64_t mine = dedup_mine(p);
	int64_t now = now_ns();

	*out = NULL;
	for (unsigned race = 0; race < DEDUP_RACES; race++) {
		struct shmbus_dedup *fe = NULL;
		uint64_t fk = 0, fx = 0;
		bool again = false;

		for (uint32_t n = 0; n < SHMBUS_DEDUP_PROBE; n++) {
			struct shmbus_dedup *e =
				&p->dedup[(key + n) & p->dedup_mask];
			/* [DEDUP] acquire: the key an owner wrote before it
			 * made the state PENDING or seen (pairs with the
			 * cmpxchgs below, dedup_commit() and the daemon's
			 * dedup_settle()) */
			uint64_t x = smp_load_acquire(&e->expires);
			uint64_t k = READ_ONCE(e->key);

			if (k == key) {
				if (x & SHMBUS_DEDUP_PENDING)
					return DEDUP_BUSY;
				if (dedup_live(x, now))
					return DEDUP_DUP;
				/* empty state (a claim half done, maybe
				 * dead), forgotten, expired: take it over */
				if (atomic_cmpxchg(&e->expires, &x, mine)) {
					*out = e;
					return DEDUP_GO;
				}
				again = true;
				break;
			}
			/* the first free entry; look on for our key */
			if (fe || (x & SHMBUS_DEDUP_PENDING) ||
			    (k && dedup_live(x, now)))
				continue;
			fe = e;
			fk = k;
			fx = x;
		}
		if (again)
			continue;
		if (!fe)
			return DEDUP_GO;	/* no room: accepted without dedup */
		if (!atomic_cmpxchg(&fe->key, &fk, key))
			continue;
		if (unlikely(p->failpoint))
			dedup_failpoint(p, "dedup-key");
		if (!atomic_cmpxchg(&fe->expires, &fx, mine))
			continue;	/* broken or taken over: look again */
		/* ours; one who moved the key between our two cmpxchgs lost
		 * the second: the key is ours to set */
		WRITE_ONCE(fe->key, key);
		*out = fe;
		return DEDUP_GO;
	}
	return DEDUP_BUSY;
}

void dedup_commit(struct shmbus_producer *p, struct shmbus_dedup *e)
{
	uint64_t x = dedup_mine(p);

	/* [DEDUP] seen only now, the message in the queue (a SEQ_CST
	 * cmpxchg: a release; pairs with the acquire in dedup_claim()). If
	 * the entry is no longer ours, the daemon settled it already. */
	atomic_cmpxchg(&e->expires, &x,
		       (uint64_t)(now_ns() + p->dedup_window));
}

void dedup_abandon(struct shmbus_producer *p, struct shmbus_dedup *e)
{
	uint64_t x = dedup_mine(p);

	atomic_cmpxchg(&e->expires, &x, SHMBUS_DEDUP_FORGOTTEN);
}
