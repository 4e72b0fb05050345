// SPDX-License-Identifier: MIT
/*
 * lease.c - settling a delivery: ack, ack_batch, nack, extend, reject and
 * release, and the delivery-table bookkeeping they share: winning the
 * delivery entry from the daemon's expiry (the lease protocol in
 * shmbus/layout.h), reusing entries the daemon took back, putting a
 * message back into the ring, handing one to the daemon.
 */
#include <string.h>

#include "consumer.h"
#include "epoch.h"
#include "pool.h"
#include "probes.h"

/* Find entries the daemon took back (expired leases) and reuse them. */
bool lease_recycle(struct shmbus_consumer *c)
{
	struct shmbus_slot *s = c->at.slot;

	for (uint32_t e = 0; e < c->prefetch; e++) {
		uint64_t w = READ_ONCE(s->lease[e].word);

		if (SHMBUS_LEASE_STATE(w) != SHMBUS_LEASE_TAKEN)
			continue;
		/* the daemon is done with a TAKEN entry: it is ours again */
		WRITE_ONCE(s->lease[e].word,
			   SHMBUS_LEASE_WORD(SHMBUS_LEASE_SEQ(w) + 1,
					     SHMBUS_LEASE_EMPTY));
		c->free[c->nfree++] = (uint16_t)e;
	}
	return c->nfree != 0;
}

/*
 * A topic message we are about to retry, dead-letter or hand over gets a
 * private copy first (its own delivery count and dead-letter marks; the
 * other subscriptions' references are untouched). Returns 0 (*ref is now
 * a chunk HELD by us alone) or -ENOMEM (*ref is still the shared one).
 */
int make_private(struct shmbus_consumer *c, uint32_t *ref)
{
	struct attachment *at = &c->at;
	struct shmbus_chunk *ch = chunk_at(&at->bus->arena, *ref);

	if (!ch || !chunk_shared(ch))
		return 0;
	return chunk_unshare(&at->bus->arena, at->slot, *ref,
			     (SHMBUS_CHUNK_HELD << 16) | at->slot_idx, ref);
}

/*
 * Does our delivery entry @e name chunk @ref? A message another consumer
 * received may carry a word that matches one of our table's (both tables
 * count from the same start), never with the chunk our entry names while
 * that entry is live. The ref sits on the line of the word we are about
 * to change: no other line is touched.
 */
static inline bool entry_names(const struct shmbus_consumer *c, uint32_t e,
			       uint32_t ref)
{
	return READ_ONCE(c->at.slot->lease[e].ref) == ref;
}

/*
 * Win the delivery entry of @msg (the lease protocol in shmbus/layout.h):
 * from then on the chunk is ours alone to dispose of. Returns 0, -EINVAL
 * (not a delivery of ours), or -ESTALE (the daemon took the lease back, or
 * the message was already acked).
 */
static int lease_end(struct shmbus_consumer *c, struct shmbus_msg *msg)
{
	struct shmbus_slot *s = c->at.slot;
	uint32_t e = msg->__lease - 1;
	uint64_t w = msg->__word, cur = w;

	if (!msg->data || e >= c->prefetch || !chunk_at(&c->at.bus->arena,
							msg->__ref))
		return -EINVAL;
	if (unlikely(check_pid_fast(c->at.bus)))
		return -ECHILD;
	if (unlikely(!entry_names(c, e, msg->__ref)))
		goto stale;	/* not ours: leave the entry be */
	/*
	 * A cmpxchg, for a view too: the daemon also empties the table of a
	 * live owner whose connection it closed (and may give the slot to
	 * another consumer), so only a word still ours may change.
	 */
	if (likely(atomic_cmpxchg(&s->lease[e].word, &cur,
				  SHMBUS_LEASE_WORD(SHMBUS_LEASE_SEQ(w) + 1,
						    SHMBUS_LEASE_EMPTY)))) {
		c->free[c->nfree++] = (uint16_t)e;
		msg->data = NULL;
		return 0;
	}
stale:
	cur = READ_ONCE(s->lease[e].word);
	if (SHMBUS_LEASE_STATE(cur) == SHMBUS_LEASE_TAKEN &&
	    SHMBUS_LEASE_SEQ(cur) == SHMBUS_LEASE_SEQ(w) + 1) {
		/* expired: the daemon requeued it; the entry is ours again */
		WRITE_ONCE(s->lease[e].word,
			   SHMBUS_LEASE_WORD(SHMBUS_LEASE_SEQ(cur) + 1,
					     SHMBUS_LEASE_EMPTY));
		c->free[c->nfree++] = (uint16_t)e;
		msg->data = NULL;
	}
	return -ESTALE;
}

/* Put a chunk we hold straight back into our queue's ring (in an epoch
 * section). A new generation: no sweep can mistake it for what it was. */
static int requeue_local(struct shmbus_consumer *c, uint32_t ref)
{
	struct attachment *at = &c->at;
	const struct arena *a = &at->bus->arena;
	struct shmbus_chunk *ch = chunk_at(a, ref);
	int err;

	epoch_enter(a, at->slot);
	if (!attachment_live(at)) {
		epoch_exit(at->slot);
		chunk_unref(a, at->slot, ref);	/* the queue is gone */
		return -EIDRM;
	}
	if (!chunk_shared(ch))
		chunk_own(ch, (SHMBUS_CHUNK_QUEUED << 16) | at->slot_idx);
	{
		uint32_t l = READ_ONCE(ch->prio);

		/* back at its own priority level */
		err = ring_enqueue(l && l < at->nr_prio ? &at->prio[l - 1]
							: &at->ring, ref);
	}
	if (likely(!err)) {
		unsigned n = wake_after_publish(&at->bus->wakes, at->q, at->qid,
						at->qgen, 1);

		if (n)
			slot_count(at->slot, SHMBUS_CTR_WAKEUPS, n);
	} else if (!chunk_shared(ch)) {
		chunk_set(ch, SHMBUS_CHUNK_HELD, at->slot_idx);
	}
	epoch_exit(at->slot);
	return err;
}

/* Hand chunk *@ref to the daemon (consumer.h): the request alone. */
int dispose_call(struct shmbus_consumer *c, uint32_t *ref, uint32_t action,
		 int64_t delay_ns, uint32_t reason)
{
	struct attachment *at = &c->at;
	struct shmbus_chunk *ch;
	struct sbc_dispose req;

	if (make_private(c, ref))
		return -ENOMEM;		/* no memory for a copy */
	ch = chunk_at(&at->bus->arena, *ref);
	req = (struct sbc_dispose){
		.slot = at->slot_idx,
		.slot_gen = at->slot_gen,
		.ref = *ref,
		.action = action,
		.owner = READ_ONCE(ch->owner),
		.delay_ns = delay_ns,
		.reason = reason,
	};
	return client_call(&at->bus->conn, SBC_DISPOSE, &req, sizeof(req),
			   NULL, 0, NULL, NULL);
}

int dispose(struct shmbus_consumer *c, uint32_t ref, uint32_t action,
	    int64_t delay_ns, uint32_t reason)
{
	struct attachment *at = &c->at;
	int err, e2;

	err = dispose_call(c, &ref, action, delay_ns, reason);
	if (!err)
		return 0;
	pr_warn("queue %u: the daemon did not take message %u (%s); "
		"requeued it at once", at->qid, ref, strerror(-err));
	for (unsigned round = 0; round < 1000; round++) {
		e2 = requeue_local(c, ref);
		if (e2 != -ENOBUFS)
			return err;
		backoff_wait(round);
	}
	chunk_unref(&at->bus->arena, at->slot, ref);
	slot_count(at->slot, SHMBUS_CTR_DROPPED, 1);
	return err;
}

/* Ack @msg: its entry, then at once its chunk. */
static __always_inline int ack_one(struct shmbus_consumer *c,
				   struct shmbus_msg *msg)
{
	uint32_t ref = msg->__ref;
	int err;

	err = lease_end(c, msg);
	if (err)
		return err;
	SHMBUS_PROBE4(ack, at_bus(&c->at), c->at.qid, msg->id,
		      now_ns());
	/* the entry is ours: nobody else touches the chunk now (or, a
	 * topic message, our reference to it) */
	chunk_unref(&c->at.bus->arena, c->at.slot, ref);
	slot_count(c->at.slot, SHMBUS_CTR_ACKED, 1);
	return 0;
}

SHMBUS_API int shmbus_consumer__ack(struct shmbus_consumer *c,
				    struct shmbus_msg *msg)
{
	if (!c || !msg)
		return -EINVAL;
	return ack_one(c, msg);
}

/*
 * Message by message, each entry and then at once its chunk (ack_one()):
 * a process killed in the middle leaves no chunk whose entry says settled
 * while it is still ours (the daemon would hand it out again).
 */
SHMBUS_API int shmbus_consumer__ack_batch(struct shmbus_consumer *c,
					  struct shmbus_msg *msgs, unsigned n)
{
	int done = 0;

	if (!c || (!msgs && n))
		return -EINVAL;
	for (unsigned i = 0; i < n; i++)
		done += ack_one(c, &msgs[i]) == 0;
	return done;
}

SHMBUS_API void shmbus_consumer__release(struct shmbus_consumer *c,
					 struct shmbus_msg *msg)
{
	if (c && msg && msg->data)
		(void)shmbus_consumer__ack(c, msg);
}

SHMBUS_API int shmbus_consumer__nack(struct shmbus_consumer *c,
				     struct shmbus_msg *msg, int64_t delay_ns)
{
	struct shmbus_queue *q;
	uint32_t ref, dc, max;
	int err;

	if (!c || !msg || (delay_ns < 0 && delay_ns != SHMBUS_NACK_BACKOFF) ||
	    c->auto_ack)
		return -EINVAL;
	ref = msg->__ref;
	dc = msg->delivery_count;
	err = lease_end(c, msg);
	if (err)
		return err;
	slot_count(c->at.slot, SHMBUS_CTR_NACKED, 1);
	SHMBUS_PROBE4(nack, at_bus(&c->at), c->at.qid, msg->id,
		      delay_ns);
	q = c->at.q;
	max = READ_ONCE(q->max_deliveries);
	if (delay_ns == SHMBUS_NACK_BACKOFF)
		delay_ns = READ_ONCE(q->backoff_init_ns) ? -1 : 0;
	/* a topic message is retried as a private copy (a failed copy is
	 * retried shared, without a delivery count) */
	(void)make_private(c, &ref);
	/* the common case needs no daemon: back into the ring at once */
	if (delay_ns == 0 && (!max || dc < max)) {
		err = requeue_local(c, ref);
		if (err != -ENOBUFS)
			return err == -EIDRM ? 0 : err;
		/* full: the daemon holds it until there is room */
	}
	if (delay_ns < 0)
		return dispose(c, ref, SBC_DISPOSE_RETRY, 0, 0);
	return dispose(c, ref, SBC_DISPOSE_DELAY, delay_ns, 0);
}

SHMBUS_API int shmbus_consumer__extend(struct shmbus_consumer *c,
				       struct shmbus_msg *msg,
				       int64_t lease_ns)
{
	struct shmbus_lease *le;
	uint32_t e;
	uint64_t w, cur, nw;

	if (!c || !msg || !msg->data || lease_ns < 0 || c->auto_ack)
		return -EINVAL;
	if (check_pid_fast(c->at.bus))
		return -ECHILD;
	e = msg->__lease - 1;
	w = msg->__word;
	if (e >= c->prefetch || SHMBUS_LEASE_STATE(w) != SHMBUS_LEASE_HELD ||
	    !chunk_at(&c->at.bus->arena, msg->__ref))
		return -EINVAL;
	if (!entry_names(c, e, msg->__ref))
		return -ESTALE;		/* not ours */
	le = &c->at.slot->lease[e];
	/* the deadline first, then the cmpxchg that makes it ours: if the
	 * daemon's expiry cmpxchg wins instead, the deadline we wrote is
	 * in an entry nobody reads any more */
	WRITE_ONCE(le->deadline, (uint64_t)(coarse_ns() +
				  (lease_ns ? lease_ns : c->lease_ns)));
	cur = w;
	nw = SHMBUS_LEASE_WORD(SHMBUS_LEASE_SEQ(w) + 1, SHMBUS_LEASE_HELD);
	if (!atomic_cmpxchg(&le->word, &cur, nw))
		return -ESTALE;
	msg->__word = nw;
	return 0;
}

SHMBUS_API int shmbus_consumer__reject(struct shmbus_consumer *c,
				       struct shmbus_msg *msg)
{
	uint32_t ref;
	int err;

	if (!c || !msg || c->auto_ack)
		return -EINVAL;
	ref = msg->__ref;
	err = lease_end(c, msg);
	if (err)
		return err;
	return dispose(c, ref, SBC_DISPOSE_DEADLETTER, 0, SHMBUS_DLR_REJECTED);
}
