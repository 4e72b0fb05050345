// SPDX-License-Identifier: MIT
/*
 * consumer.c - receiving: zero-copy views and copies, single and batched,
 * non-blocking, spinning, and blocking on the seat's eventfd; plus the
 * epoll integration (fd + arm).
 *
 * A receive takes a ref from the ring with one cmpxchg (ring.h), marks the
 * chunk HELD by our slot and validates its header against the chunk size
 * before handing out a view: a peer that wrote garbage costs one -EBADMSG
 * (counted), never an access outside the chunk.
 */
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus.h"
#include "epoch.h"
#include "pool.h"
#include "probes.h"

#define DEFAULT_SPIN_NS		(50 * NSEC_PER_USEC)
#define SPIN_CLOCK_EVERY	64	/* ring checks between clock reads */

struct shmbus_consumer {
	struct attachment at;
	struct seat seat;
	int64_t spin_ns;
	int64_t lease_ns;
	bool auto_ack;
	bool stash_valid;		/* a message kept after -EMSGSIZE */
	uint32_t prefetch;		/* delivery entries we may use */
	uint32_t nfree;
	uint32_t expired;		/* ref of an expired message to hand
					 * to the daemon (take() -> -ETIME) */
	uint16_t free[SHMBUS_LEASE_MAX];	/* free entry indices */
	struct shmbus_msg stash;
	void *replies;			/* reqrep.c: reply producers */
	unsigned replies_next;		/* round-robin eviction */
};

/*
 * A consumer handle: @sub is a SUBSCRIBE request, or NULL to attach to
 * queue @queue.
 */
static struct shmbus_consumer *
consumer_new(struct shmbus *bus, const char *queue,
	     const struct sbc_subscribe *sub, uint32_t flags,
	     uint32_t prefetch, int64_t spin, int64_t lease)
{
	struct shmbus_consumer *c;
	int err;

	if ((flags & ~SHMBUS_CONSUMER_AUTO_ACK) ||
	    prefetch > SHMBUS_LEASE_MAX || lease < 0 ||
	    (lease && lease < NSEC_PER_MSEC)) {
		errno = EINVAL;
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		errno = ENOMEM;
		return NULL;
	}
	c->spin_ns = spin == 0 ? DEFAULT_SPIN_NS : spin < 0 ? 0 : spin;
	c->auto_ack = flags & SHMBUS_CONSUMER_AUTO_ACK;
	c->prefetch = prefetch ? prefetch : SHMBUS_LEASE_MAX;
	if (!sub)
		err = attach(bus, queue, SHMBUS_KIND_CONSUMER, &c->at);
	else if (bus->rdonly)
		err = -EPERM;
	else
		err = check_pid(bus) ?: attach_call(bus, SBC_SUBSCRIBE, sub,
						    sizeof(*sub),
						    SHMBUS_KIND_CONSUMER,
						    sub->pattern, &c->at);
	if (err) {
		free(c);
		errno = -err;
		return NULL;
	}
	c->lease_ns = lease ? lease : (int64_t)READ_ONCE(c->at.q->lease_ns);
	if (c->lease_ns < NSEC_PER_MSEC)
		c->lease_ns = 30 * NSEC_PER_SEC;	/* a peer's garbage */
	/* entry 0 is used first: the daemon scans [0, lease_hi) */
	for (uint32_t i = 0; i < c->prefetch; i++)
		c->free[i] = (uint16_t)(c->prefetch - 1 - i);
	c->nfree = c->prefetch;
	c->seat.word = &c->at.q->sleep_mask[c->at.seat / 64];
	c->seat.bit = 1ULL << (c->at.seat % 64);
	c->seat.fd = c->at.seat_fd;
	/* tokens a previous holder of this seat left behind */
	seat_drain(&c->seat);
	/* with the module, publishers wake us through it; if it refuses,
	 * they find no registration and write our eventfd themselves */
	seat_kmod_register(&bus->wakes, c->at.qid, c->at.qgen, c->at.seat,
			   c->seat.fd);
	return c;
}

SHMBUS_API struct shmbus_consumer *
shmbus_consumer__new(struct shmbus *bus, const char *queue,
		     const struct shmbus_consumer_opts *opts)
{
	if (!bus || !queue || !OPTS_VALID(opts, shmbus_consumer_opts)) {
		errno = EINVAL;
		return NULL;
	}
	return consumer_new(bus, queue, NULL, OPTS_GET(opts, flags, 0),
			    OPTS_GET(opts, prefetch, 0),
			    OPTS_GET(opts, spin_ns, 0),
			    OPTS_GET(opts, lease_ns, 0));
}

SHMBUS_API struct shmbus_consumer *
shmbus_consumer__subscribe(struct shmbus *bus, const char *pattern,
			   const struct shmbus_sub_opts *opts)
{
	const char *group = OPTS_GET(opts, group, NULL);
	struct sbc_subscribe req;
	uint32_t f = OPTS_GET(opts, flags, 0);

	memset(&req, 0, sizeof(req));
	if (!bus || !pattern || !OPTS_VALID(opts, shmbus_sub_opts) ||
	    strlen(pattern) >= SHMBUS_NAME_MAX ||
	    (f & ~(SHMBUS_SUB_DURABLE | SHMBUS_SUB_DROP_OLDEST |
		   SHMBUS_SUB_HISTORY)) ||
	    ((f & SHMBUS_SUB_DURABLE) && !group) ||
	    (group && proto_name_set(req.group, group)) ||
	    OPTS_GET(opts, lease_ns, 0) < 0) {
		errno = EINVAL;
		return NULL;
	}
	strcpy(req.pattern, pattern);
	if (proto_pattern_valid(req.pattern)) {
		errno = EINVAL;
		return NULL;
	}
	req.flags = (f & SHMBUS_SUB_DURABLE ? SBC_SUB_DURABLE : 0) |
		    (f & SHMBUS_SUB_DROP_OLDEST ? SBC_SUB_DROP_OLDEST : 0) |
		    (f & SHMBUS_SUB_HISTORY ? SBC_SUB_HISTORY : 0);
	req.max_len = OPTS_GET(opts, max_len, 0);
	req.max_consumers = OPTS_GET(opts, max_consumers, 0);
	req.lease_ns = (uint64_t)OPTS_GET(opts, lease_ns, 0);
	return consumer_new(bus, pattern, &req,
			    OPTS_GET(opts, consumer_flags, 0),
			    OPTS_GET(opts, prefetch, 0),
			    OPTS_GET(opts, spin_ns, 0), 0);
}

/*
 * Withdraw our sleep announcement, in an epoch section: if the queue was
 * deleted, its descriptor (and mask) may belong to another queue by now,
 * and the daemon cleared our bit anyway.
 */
static void disarm(struct shmbus_consumer *c)
{
	struct attachment *at = &c->at;

	if (!c->seat.armed)
		return;
	epoch_enter(&at->bus->arena, at->slot);
	if (likely(attachment_live(at)))
		seat_disarm(&c->seat);
	else
		c->seat.armed = false;
	epoch_exit(at->slot);
}

SHMBUS_API void shmbus_consumer__free(struct shmbus_consumer *c)
{
	if (!c)
		return;
	/* in a forked child the seat and the stash are the parent's */
	if (check_pid(c->at.bus) == 0) {
		disarm(c);
		if (c->stash_valid)
			shmbus_consumer__release(c, &c->stash);
		seat_kmod_unregister(&c->at.bus->wakes, c->at.qid,
				     c->at.qgen, c->at.seat);
	}
	reply_cache_free(c->replies);
	/* leases still held are returned to the queue by the daemon when
	 * it releases the slot, exactly as if we had died */
	detach(&c->at);
	free(c);
}

struct claim {
	const struct arena *a;
	struct shmbus_lease *le;
};

/*
 * Called with the ref we are about to claim, before the claiming cmpxchg
 * takes the ring cell: note it in our delivery entry (so that if we are
 * killed right after the cmpxchg the daemon still finds the message: see
 * the lease protocol in shmbus/layout.h), and start moving the chunk: the
 * header with intent to write, the first payload line to read.
 */
static inline void claim_hook(const void *ctx, uint32_t ref)
{
	const struct claim *cl = ctx;
	struct shmbus_chunk *ch = chunk_at(cl->a, ref);

	WRITE_ONCE(cl->le->ref, ref);
	if (ch) {
		__builtin_prefetch(ch, 1, 3);
		__builtin_prefetch(chunk_payload(ch), 0, 3);
	}
}

/* Find entries the daemon took back (expired leases) and reuse them. */
static __attribute__((noinline)) bool lease_recycle(struct shmbus_consumer *c)
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
 * A message whose TTL passed, taken from the ring and HELD by us: drop it
 * here (counted) unless the queue sends expired messages to its DLQ, which
 * the daemon does (out of the epoch section: see expire_pending()).
 */
static inline bool expire_local(struct attachment *at, uint32_t ref)
{
	if (READ_ONCE(at->q->flags) & SHMBUS_QF_EXPIRE_DLQ &&
	    READ_ONCE(at->q->dlq_qid))
		return false;
	SHMBUS_PROBE3(expire, at_bus(at), at->qid, ref);
	SHMBUS_PROBE3(drop, at_bus(at), at->qid, ref);
	chunk_unref(&at->bus->arena, at->slot, ref);
	slot_count(at->slot, SHMBUS_CTR_EXPIRED, 1);
	slot_count(at->slot, SHMBUS_CTR_DROPPED, 1);
	return true;
}

/*
 * Take one message. Inside an epoch section. Returns 0, -EAGAIN (empty),
 * -ENOBUFS (prefetch reached), -EBADMSG, -EUCLEAN, or -ETIME: an expired
 * message is in c->expired for expire_pending().
 */
static inline int take(struct shmbus_consumer *c, struct shmbus_msg *msg)
{
	struct attachment *at = &c->at;
	const struct arena *a = &at->bus->arena;
	struct shmbus_lease *le;
	struct shmbus_chunk *ch;
	uint32_t ref, len, al, dc, e;
	uint64_t o, w;
	uint64_t exp;
	bool shared = false;
	int err;

again:
	shared = false;
	if (unlikely(!c->nfree) && !lease_recycle(c))
		return -ENOBUFS;
	e = c->free[c->nfree - 1];
	le = &at->slot->lease[e];
	if (unlikely(at->nr_prio > 1)) {
		/* the highest level with a message first */
		err = -EAGAIN;
		for (uint32_t l = at->nr_prio - 1; l > 0 && err == -EAGAIN; l--)
			err = ring_dequeue_pf(&at->prio[l - 1], &ref, claim_hook,
					      &(struct claim){ a, le });
		if (err == -EAGAIN)
			err = ring_dequeue_pf(&at->ring, &ref, claim_hook,
					      &(struct claim){ a, le });
	} else {
		err = ring_dequeue_pf(&at->ring, &ref,
				      claim_hook, &(struct claim){ a, le });
	}
	if (err)
		return err;
	ch = chunk_at(a, ref);
	if (unlikely(!ch)) {
		slot_count(at->slot, SHMBUS_CTR_CORRUPT, 1);
		return -EBADMSG;
	}
	/*
	 * Mark it HELD by us with a cmpxchg: the daemon, recovering a
	 * consumer that died right after its ring cmpxchg, may claim the
	 * same chunk (reclaim.c); exactly one of us wins.
	 */
	o = READ_ONCE(ch->owner);
	if (SHMBUS_OWNER_STATE(o) == SHMBUS_CHUNK_SHARED) {
		/* a topic message: our reference came with the ring cell;
		 * the delivery entry alone says who has it */
		shared = true;
	} else if (unlikely(SHMBUS_OWNER_STATE(o) != SHMBUS_CHUNK_QUEUED)) {
		slot_count(at->slot, SHMBUS_CTR_CORRUPT, 1);
		return -EBADMSG;	/* not a message: a peer's garbage */
	} else if (unlikely(!atomic_cmpxchg(&ch->owner, &o,
					    SHMBUS_OWNER(SHMBUS_OWNER_GEN(o),
							 SHMBUS_CHUNK_HELD,
							 at->slot_idx)))) {
		goto again;		/* the daemon's now */
	}
	/* read once, validate, and use only these copies */
	len = READ_ONCE(ch->len);
	al = READ_ONCE(ch->attr_len);
	/* 64-bit: a 32-bit ALIGN_UP of len ~ 4 GiB would wrap to 0 */
	if (unlikely(ALIGN_UP((uint64_t)len, 8) + al >
		     a->pool[SHMBUS_REF_POOL(ref)].payload_max)) {
		chunk_unref(a, at->slot, ref);
		slot_count(at->slot, SHMBUS_CTR_CORRUPT, 1);
		return -EBADMSG;
	}
	exp = READ_ONCE(ch->expires_ns);
	if (unlikely(exp) && (uint64_t)now_ns() >= exp) {
		if (expire_local(at, ref))
			goto again;
		c->expired = ref;
		return -ETIME;
	}
	if (shared) {
		dc = 1;		/* shared: first delivery; a retry is a copy */
	} else {
		dc = READ_ONCE(ch->delivery_count) + 1;
		WRITE_ONCE(ch->delivery_count, dc);
		if (dc > 1) {
			slot_count(at->slot, SHMBUS_CTR_REDELIVERED, 1);
			SHMBUS_PROBE4(redeliver, at_bus(at), at->qid,
				      READ_ONCE(ch->id), dc);
		}
	}
	/* record the delivery: deadline first, then the word (release;
	 * pairs with the daemon's acquire load of word in its lease scan) */
	c->nfree--;
	if (e >= at->slot->lease_hi)
		WRITE_ONCE(at->slot->lease_hi, e + 1);
	WRITE_ONCE(le->ref, ref);
	w = SHMBUS_LEASE_WORD(SHMBUS_LEASE_SEQ(READ_ONCE(le->word)) + 1,
			      c->auto_ack ? SHMBUS_LEASE_VIEW
					  : SHMBUS_LEASE_HELD);
	if (!c->auto_ack)
		WRITE_ONCE(le->deadline, (uint64_t)(coarse_ns() + c->lease_ns));
	smp_store_release(&le->word, w);

	msg->data = chunk_payload(ch);
	msg->len = len;
	msg->flags = READ_ONCE(ch->flags);
	msg->id = READ_ONCE(ch->id);
	msg->ts_ns = READ_ONCE(ch->ts_pub);
	msg->corr_id = READ_ONCE(ch->corr_id);
	msg->delivery_count = dc;
	msg->dl_reason = READ_ONCE(ch->dl_reason);
	msg->dl_src = READ_ONCE(ch->dl_src_qid);
	msg->dl_count = msg->dl_reason ? READ_ONCE(ch->dl_count) : 0;
	msg->reply_to = READ_ONCE(ch->reply_to);
	msg->__attrs = chunk_payload(ch) + ALIGN_UP(len, 8);
	msg->__attr_len = al;
	msg->priority = READ_ONCE(ch->prio);
	msg->__reply_gen = READ_ONCE(ch->reply_gen);
	msg->__ref = ref;
	msg->__word = w;
	msg->__lease = e + 1;
	slot_count(at->slot, SHMBUS_CTR_DELIVERED, 1);
	SHMBUS_PROBE6(deliver, at_bus(at), at->qid, msg->id, dc,
		      ring_depth_hint(READ_ONCE(at->q->tail),
				      READ_ONCE(at->q->head)), now_ns());
	return 0;
}

static int dispose(struct shmbus_consumer *c, uint32_t ref, uint32_t action,
		   int64_t delay_ns, uint32_t reason);

/*
 * A topic message we are about to retry, dead-letter or hand over gets a
 * private copy first (its own delivery count and dead-letter marks; the
 * other subscriptions' references are untouched). Returns 0 (*ref is now
 * a chunk HELD by us alone) or -ENOMEM (*ref is still the shared one).
 */
static int make_private(struct shmbus_consumer *c, uint32_t *ref)
{
	struct attachment *at = &c->at;
	struct shmbus_chunk *ch = chunk_at(&at->bus->arena, *ref);

	if (!ch || !chunk_shared(ch))
		return 0;
	return chunk_unshare(&at->bus->arena, at->slot, *ref,
			     (SHMBUS_CHUNK_HELD << 16) | at->slot_idx, ref);
}

/* Hand the expired message take() left us to the daemon (for the DLQ). */
static __attribute__((noinline)) void expire_pending(struct shmbus_consumer *c)
{
	uint32_t ref = c->expired;

	c->expired = 0;
	if (make_private(c, &ref) ||
	    dispose(c, ref, SBC_DISPOSE_DEADLETTER, 0, SHMBUS_DLR_EXPIRED)) {
		/* no memory for a copy, or no daemon: drop it, counted */
		chunk_unref(&c->at.bus->arena, c->at.slot, ref);
		slot_count(c->at.slot, SHMBUS_CTR_EXPIRED, 1);
		slot_count(c->at.slot, SHMBUS_CTR_DROPPED, 1);
	}
}

static inline int try_take(struct shmbus_consumer *c, struct shmbus_msg *msg)
{
	struct attachment *at = &c->at;
	int err;

	for (;;) {
		epoch_enter(&at->bus->arena, at->slot);
		err = likely(attachment_live(at)) ? take(c, msg) : -EIDRM;
		epoch_exit(at->slot);
		if (likely(err != -ETIME))
			return err;
		expire_pending(c);
	}
}

/* Announce sleep and re-check. 1: a message is there; 0: armed. */
static int arm(struct shmbus_consumer *c)
{
	struct attachment *at = &c->at;
	int r;

	epoch_enter(&at->bus->arena, at->slot);
	r = likely(attachment_live(at)) ? seat_arm(&c->seat, &at->ring) : -EIDRM;
	if (unlikely(r == 0 && at->nr_prio > 1)) {
		/* armed, and the fence of seat_arm() is behind us: the other
		 * levels are checked as level 0 was */
		for (uint32_t l = 1; l < at->nr_prio; l++) {
			if (ring_peek_nonempty(&at->prio[l - 1])) {
				seat_disarm(&c->seat);
				r = 1;
				break;
			}
		}
	}
	epoch_exit(at->slot);
	return r;
}

SHMBUS_API int shmbus_consumer__receive_view(struct shmbus_consumer *c,
					     struct shmbus_msg *msg,
					     int64_t timeout_ns)
{
	int64_t deadline, spin_until, t;
	unsigned spins = 0;
	int err;

	if (!c || !msg)
		return -EINVAL;
	if (c->stash_valid) {
		*msg = c->stash;
		c->stash_valid = false;
		return 0;
	}
	err = try_take(c, msg);
	if (likely(err != -EAGAIN) || timeout_ns == 0)
		return err;

	t = now_ns();
	deadline = deadline_of(timeout_ns);
	spin_until = c->spin_ns >= INT64_MAX - t ? INT64_MAX : t + c->spin_ns;
	for (;;) {
		err = try_take(c, msg);
		if (err != -EAGAIN)
			return err;
		/* read the clock only every SPIN_CLOCK_EVERY empty checks */
		if (c->spin_ns && ++spins % SPIN_CLOCK_EVERY) {
			cpu_relax();
			continue;
		}
		t = now_ns();
		if (t >= deadline)
			return -ETIMEDOUT;
		if (t < spin_until) {
			cpu_relax();
			continue;
		}
		/* spin budget spent: announce, re-check, block */
		err = arm(c);
		if (err < 0)
			return err;
		if (err == 1)
			continue;
		slot_count(c->at.slot, SHMBUS_CTR_SLEEPS, 1);
		SHMBUS_PROBE4(sleep, at_bus(&c->at), c->at.qid, c->at.seat,
			      now_ns());
		err = seat_sleep(&c->seat, deadline);
		if (!err)
			SHMBUS_PROBE4(wake_recv, at_bus(&c->at), c->at.qid,
				      c->at.seat, now_ns());
		disarm(c);
		if (err == -ETIMEDOUT) {
			/* one last look: it may have landed at the end */
			err = try_take(c, msg);
			return err == -EAGAIN ? -ETIMEDOUT : err;
		}
		if (err)
			return err;
		/* woken: spin again briefly before sleeping again */
		t = now_ns();
		spin_until = c->spin_ns >= INT64_MAX - t ? INT64_MAX
							 : t + c->spin_ns;
	}
}

SHMBUS_API int shmbus_consumer__try_receive(struct shmbus_consumer *c,
					    struct shmbus_msg *msg)
{
	return shmbus_consumer__receive_view(c, msg, 0);
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
	if (likely(atomic_cmpxchg(&s->lease[e].word, &cur,
				  SHMBUS_LEASE_WORD(SHMBUS_LEASE_SEQ(w) + 1,
						    SHMBUS_LEASE_EMPTY)))) {
		c->free[c->nfree++] = (uint16_t)e;
		msg->data = NULL;
		return 0;
	}
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

/*
 * Hand a chunk we hold to the daemon (SBC_DISPOSE). If the daemon cannot
 * take it, put it back into the queue ourselves (waiting up to a second
 * for room): a message is never lost for want of a daemon. Returns the
 * daemon's answer.
 */
static int dispose(struct shmbus_consumer *c, uint32_t ref, uint32_t action,
		   int64_t delay_ns, uint32_t reason)
{
	struct attachment *at = &c->at;
	struct shmbus_chunk *ch;
	struct sbc_dispose req;
	int err, e2;

	if (make_private(c, &ref)) {
		err = -ENOMEM;		/* no memory for a copy */
		goto local;
	}
	ch = chunk_at(&at->bus->arena, ref);
	req = (struct sbc_dispose){
		.slot = at->slot_idx,
		.slot_gen = at->slot_gen,
		.ref = ref,
		.action = action,
		.owner = READ_ONCE(ch->owner),
		.delay_ns = delay_ns,
		.reason = reason,
	};
	err = client_call(&at->bus->conn, SBC_DISPOSE, &req, sizeof(req),
			  NULL, 0, NULL, NULL);
	if (!err)
		return 0;
local:
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

SHMBUS_API int shmbus_consumer__ack(struct shmbus_consumer *c,
				    struct shmbus_msg *msg)
{
	uint32_t ref;
	int err;

	if (!c || !msg)
		return -EINVAL;
	ref = msg->__ref;
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

SHMBUS_API int shmbus_consumer__ack_batch(struct shmbus_consumer *c,
					  struct shmbus_msg *msgs, unsigned n)
{
	int done = 0;

	if (!c || (!msgs && n))
		return -EINVAL;
	for (unsigned i = 0; i < n; i++)
		done += shmbus_consumer__ack(c, &msgs[i]) == 0;
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
	e = msg->__lease - 1;
	w = msg->__word;
	if (e >= c->prefetch || SHMBUS_LEASE_STATE(w) != SHMBUS_LEASE_HELD)
		return -EINVAL;
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

SHMBUS_API ssize_t shmbus_consumer__receive(struct shmbus_consumer *c,
					    void *buf, size_t cap,
					    int64_t timeout_ns)
{
	struct shmbus_msg m;
	int err;

	if (!c || (!buf && cap))
		return -EINVAL;
	err = shmbus_consumer__receive_view(c, &m, timeout_ns);
	if (err)
		return err;
	if (m.len > cap) {
		c->stash = m;
		c->stash_valid = true;
		return -EMSGSIZE;
	}
	memcpy(buf, m.data, m.len);
	shmbus_consumer__release(c, &m);
	return m.len;
}

SHMBUS_API ssize_t shmbus_consumer__pending_len(struct shmbus_consumer *c)
{
	return c && c->stash_valid ? (ssize_t)c->stash.len : -ENOENT;
}

SHMBUS_API int shmbus_consumer__receive_batch(struct shmbus_consumer *c,
					      struct shmbus_msg *msgs,
					      unsigned n, int64_t timeout_ns)
{
	struct attachment *at;
	unsigned got;
	int err;

	if (!c || !msgs || !n)
		return -EINVAL;
	err = shmbus_consumer__receive_view(c, &msgs[0], timeout_ns);
	if (err)
		return err;
	at = &c->at;
	got = 1;
	epoch_enter(&at->bus->arena, at->slot);
	if (likely(attachment_live(at))) {
		while (got < n && (err = take(c, &msgs[got])) == 0)
			got++;
	}
	epoch_exit(at->slot);
	if (err == -ETIME)
		expire_pending(c);
	return (int)got;
}

SHMBUS_API int shmbus_consumer__fd(const struct shmbus_consumer *c)
{
	return c ? c->seat.fd : -EINVAL;
}

SHMBUS_API int shmbus_consumer__arm(struct shmbus_consumer *c)
{
	if (!c)
		return -EINVAL;
	if (c->stash_valid)
		return 1;
	seat_drain(&c->seat);
	return arm(c);	/* seat_arm() notices a bit a producer took */
}

void consumer_count(struct shmbus_consumer *c, unsigned ctr)
{
	slot_count(c->at.slot, ctr, 1);
}

uint32_t consumer_qid(const struct shmbus_consumer *c)
{
	return c->at.qid;
}

struct shmbus *consumer_bus(const struct shmbus_consumer *c)
{
	return c->at.bus;
}

void **consumer_reply_cache(struct shmbus_consumer *c)
{
	return &c->replies;
}

unsigned c_rr_next(struct shmbus_consumer *c)
{
	return c->replies_next++;
}
