// SPDX-License-Identifier: MIT
/*
 * lease.c - the daemon's side of leases: the deliveries a consumer holds,
 * as its delivery table in the arena records them (struct shmbus_lease:
 * the lease protocol in shmbus/layout.h).
 *
 *   expiry           every tick, the tables of live consumers; an expired
 *                    lease is won with a cmpxchg on its word (the
 *                    consumer's late ack then fails -ESTALE) and the
 *                    message redelivered after its backoff
 *   consumer death   its table, at once: leased messages go back to the
 *                    queue, auto-ack views are freed, and refs it may
 *                    have been taking are handed to a sweep (reclaim.c)
 *
 * The table is the consumer's to write: every entry read is validated,
 * and a chunk changes hands only by a cmpxchg on its exact owner word.
 */
#include "shmbusd.h"
#include "pool.h"

/*
 * Take chunk @ref away from consumer slot @si, which holds it (HELD): a
 * cmpxchg on the exact owner word. False if it does not hold it.
 */
static bool take_from(struct dbus *b, uint32_t si, uint32_t ref)
{
	struct shmbus_chunk *c = chunk_at(&b->arena, ref);
	const struct dslot *ds = &b->slots[si];
	uint64_t o;

	if (!c)
		return false;
	o = READ_ONCE(c->owner);
	if (SHMBUS_OWNER_STATE(o) == SHMBUS_CHUNK_SHARED)
		return true;	/* the entry names our reference */
	if (SHMBUS_OWNER_STATE(o) != SHMBUS_CHUNK_HELD ||
	    SHMBUS_OWNER_SLOT(o) != si)
		return false;
	hold_note(c, SHMBUS_OWNER_GEN(o), ds->qid, ds->qgen, now_ns());
	return atomic_cmpxchg(&c->owner, &o,
			      SHMBUS_OWNER(SHMBUS_OWNER_GEN(o),
					   SHMBUS_CHUNK_TIMED,
					   SHMBUS_OWNER_DAEMON));
}

void leases_reset(struct shmbus_slot *s)
{
	leases_reset_but(s, NULL);
}

void leases_reset_but(struct shmbus_slot *s, const uint64_t *keep)
{
	if (!keep)
		s->lease_hi = 0;
	for (uint32_t e = 0; e < SHMBUS_LEASE_MAX; e++) {
		if (keep && (keep[e / 64] & (1ULL << (e % 64))))
			continue;
		s->lease[e].word = SHMBUS_LEASE_WORD(
			SHMBUS_LEASE_SEQ(s->lease[e].word) + 1,
			SHMBUS_LEASE_EMPTY);
		s->lease[e].ref = SHMBUS_LEASE_NOREF;
		s->lease[e].deadline = 0;
	}
}

unsigned leases_release(struct dbus *b, uint32_t si, uint32_t *cand)
{
	struct shmbus_slot *s = &b->arena.slots[si];
	const struct dslot *ds = &b->slots[si];
	uint64_t kept[SHMBUS_LEASE_MAX / 64] = { 0 };
	unsigned n = 0, back = 0, freed = 0;

	/*
	 * Pass 1, deliveries the table records. Pass 2, entries that name a
	 * chunk without recording a delivery: the consumer was killed
	 * between its ring cmpxchg and its table word. A chunk it holds
	 * (HELD) goes back at once; one still QUEUED may be in its window
	 * or a stale name (a sweep decides after a grace period).
	 */
	for (int pass = 1; pass <= 2; pass++) {
		for (uint32_t e = 0; e < SHMBUS_LEASE_MAX; e++) {
			struct shmbus_lease *le = &s->lease[e];
			uint64_t w = READ_ONCE(le->word);
			uint32_t st = SHMBUS_LEASE_STATE(w);
			uint32_t ref = READ_ONCE(le->ref);
			struct shmbus_chunk *c = chunk_at(&b->arena, ref);
			bool recorded = st == SHMBUS_LEASE_HELD ||
					st == SHMBUS_LEASE_VIEW;

			if (!c || recorded != (pass == 1))
				continue;
			/* a stale entry may name a topic message long since
			 * acked: only a recorded delivery owns a reference */
			if ((pass == 1 || !chunk_shared(c)) &&
			    take_from(b, si, ref)) {
				if (st == SHMBUS_LEASE_VIEW) {
					chunk_drop(b, ref);	/* auto-ack */
					freed++;
				} else {
					redeliver(b, ds->qid, ds->qgen, ref,
						  false);
					back++;
				}
			} else if (pass == 2 && SHMBUS_OWNER_STATE(
					   READ_ONCE(c->owner)) ==
					   SHMBUS_CHUNK_QUEUED) {
				cand[n++] = ref;
				kept[e / 64] |= 1ULL << (e % 64);
			}
		}
	}
	/* the candidates' entries stay until their sweep is over
	 * (slot_swept()): the names a later daemon would look for again */
	leases_reset_but(s, kept);
	if (back || freed)
		log_info("bus '%s': consumer slot %u (pid %d) gone: %u leased "
			 "messages requeued, %u auto-ack views freed", b->name,
			 si, (int)ds->pid, back, freed);
	return n;
}

/* Expired leases of live consumer slot @si: taken back, redelivered. */
void leases_expire(struct dbus *b, uint32_t si, int64_t now)
{
	struct shmbus_slot *s = &b->arena.slots[si];
	const struct dslot *ds = &b->slots[si];
	uint32_t hi = MIN(READ_ONCE(s->lease_hi), SHMBUS_LEASE_MAX);

	for (uint32_t e = 0; e < hi; e++) {
		struct shmbus_lease *le = &s->lease[e];
		/* [LEASE] pairs with the consumer's release store of word
		 * when it records a delivery (consumer.c) and the cmpxchg
		 * of extend: deadline is at least as new */
		uint64_t w = smp_load_acquire(&le->word);
		uint32_t ref;

		if (SHMBUS_LEASE_STATE(w) != SHMBUS_LEASE_HELD ||
		    (int64_t)READ_ONCE(le->deadline) > now)
			continue;
		ref = READ_ONCE(le->ref);
		/* the consumer's ack, nack or extend competes for the same
		 * word: whoever changes it first wins */
		if (!atomic_cmpxchg(&le->word, &w,
				    SHMBUS_LEASE_WORD(SHMBUS_LEASE_SEQ(w) + 1,
						      SHMBUS_LEASE_TAKEN)))
			continue;
		if (!take_from(b, si, ref)) {
			log_warn("bus '%s': slot %u: expired lease names chunk "
				 "%#x it does not hold; ignored", b->name, si,
				 ref);
			continue;
		}
		fold(b, ds->qid, SHMBUS_CTR_LEASE_EXPIRED, 1);
		redeliver(b, ds->qid, ds->qgen, ref, true);
	}
}
