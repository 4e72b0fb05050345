// SPDX-License-Identifier: MIT
/*
 * consumer.c - the consumer handle (attaching to a queue, subscribing to
 * topics) and receiving: zero-copy views and copies, single and batched,
 * non-blocking, spinning, and blocking on the seat's eventfd; plus the
 * epoll integration (fd + arm). Settling what was received is lease.c's.
 *
 * A receive takes a ref from the ring with one cmpxchg (ring.h), marks the
 * chunk HELD by our slot and validates its header against the chunk size
 * before handing out a view. A ring entry that fails (a peer wrote
 * garbage) is dropped, counted (SHMBUS_STAT_CORRUPT), and the receive
 * looks on: it costs the consumer the skip, never an error, never an
 * access outside the chunk.
 */
#include <stdlib.h>
#include <string.h>

#include "consumer.h"
#include "epoch.h"
#include "pool.h"
#include "probes.h"
#include "room.h"

#define DEFAULT_SPIN_NS		(50 * NSEC_PER_USEC)
#define SPIN_CLOCK_EVERY	64	/* ring checks between clock reads */

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
		err = attach(bus, queue, SHMBUS_ROLE_CONSUMER, &c->at);
	else if (bus->rdonly)
		err = -EPERM;
	else
		err = check_pid(bus) ?: attach_call(bus, SBC_SUBSCRIBE, sub,
						    sizeof(*sub),
						    SHMBUS_ROLE_CONSUMER,
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
		   SHMBUS_SUB_HISTORY | SHMBUS_SUB_PERSISTENT)) ||
	    ((f & (SHMBUS_SUB_DURABLE | SHMBUS_SUB_PERSISTENT)) && !group) ||
	    ((f & SHMBUS_SUB_PERSISTENT) && (f & SHMBUS_SUB_DROP_OLDEST)) ||
	    OPTS_GET(opts, sync, 0) > SHMBUS_SYNC_NEVER ||
	    OPTS_GET(opts, sync_interval_ns, 0) < 0 ||
	    (!(f & SHMBUS_SUB_PERSISTENT) &&
	     (OPTS_GET(opts, sync, 0) || OPTS_GET(opts, sync_interval_ns, 0))) ||
	    (group && name_set(req.group, group, "group")) ||
	    OPTS_GET(opts, lease_ns, 0) < 0) {
		errno = EINVAL;
		return NULL;
	}
	strcpy(req.pattern, pattern);
	if (pattern_check(req.pattern)) {
		errno = EINVAL;
		return NULL;
	}
	req.flags = (f & (SHMBUS_SUB_DURABLE | SHMBUS_SUB_PERSISTENT)
		     ? SBC_SUB_DURABLE : 0) |
		    (f & SHMBUS_SUB_DROP_OLDEST ? SBC_SUB_DROP_OLDEST : 0) |
		    (f & SHMBUS_SUB_HISTORY ? SBC_SUB_HISTORY : 0) |
		    (f & SHMBUS_SUB_PERSISTENT ? SBC_SUB_PERSISTENT : 0);
	req.sync = OPTS_GET(opts, sync, 0);
	req.sync_interval_ns = (uint64_t)OPTS_GET(opts, sync_interval_ns, 0);
	req.max_len = OPTS_GET(opts, max_len, 0);
	req.max_consumers = OPTS_GET(opts, max_consumers, 0);
	req.lease_ns = (uint64_t)OPTS_GET(opts, lease_ns, 0);
	return consumer_new(bus, pattern, &req,
			    OPTS_GET(opts, consumer_flags, 0),
			    OPTS_GET(opts, prefetch, 0),
			    OPTS_GET(opts, spin_ns, 0), 0);
}

/* Is a message waiting in any of @at's rings? Inside an epoch section. */
static bool any_waiting(struct attachment *at)
{
	if (ring_peek_nonempty(&at->ring))
		return true;
	for (uint32_t l = 1; l < at->nr_prio; l++)
		if (ring_peek_nonempty(&at->prio[l - 1]))
			return true;
	return false;
}

/*
 * Withdraw our sleep announcement, in an epoch section: if the queue was
 * deleted, its descriptor (and mask) may belong to another queue by now,
 * and the daemon cleared our bit anyway. With @pass_on (we are leaving):
 * if a producer had claimed our bit, the wake-up it paid for was meant for
 * a message we will not take; hand it to another sleeper.
 */
static void disarm(struct shmbus_consumer *c, bool pass_on)
{
	struct attachment *at = &c->at;

	if (!c->seat.armed)
		return;
	epoch_enter(&at->bus->arena, at->slot);
	if (likely(attachment_live(at))) {
		if (seat_disarm(&c->seat) && pass_on && any_waiting(at)) {
			/* [WAKE] the message we saw, then the mask: a
			 * consumer arming after our load sees it itself
			 * (pairs with seat_arm()) */
			smp_mb();
			__wake_sleepers(&at->bus->wakes, at->q, at->qid,
					at->qgen, 1, NULL);
		}
	} else {
		c->seat.armed = false;
	}
	epoch_exit(at->slot);
}

SHMBUS_API void shmbus_consumer__free(struct shmbus_consumer *c)
{
	if (!c)
		return;
	/* in a forked child the seat and the stash are the parent's */
	if (check_pid(c->at.bus) == 0) {
		disarm(c, true);
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

/*
 * The note of a claim: the run the next cmpxchg of the level's head may
 * claim, in our slot, where the daemon looks when we are gone (ring.h).
 * The cmpxchg that follows orders these stores before the claim.
 */
struct run_note {
	struct shmbus_slot *slot;
	uint32_t level;
};

static void run_note(void *ctx, uint64_t from, uint32_t n,
		     const uint32_t *refs)
{
	const struct run_note *rn = ctx;

	(void)refs;
	WRITE_ONCE(rn->slot->claim_level, rn->level);
	WRITE_ONCE(rn->slot->claim_from, from);
	WRITE_ONCE(rn->slot->claim_n, n);
}

/*
 * Claim a run from @r (level @level) of up to @max messages into c->run.
 * The run's chunks start moving now, the header's first line with intent
 * to write (we mark it HELD), its second line (the topic, dead-letter
 * and priority fields a receive copies out) and the first payload line
 * to read: their transfers overlap instead of following one another,
 * and one message after another. Returns ring_claim()'s.
 */
static __always_inline int run_claim(struct shmbus_consumer *c,
				     const struct arena *a, struct ring *r,
				     uint32_t level, uint32_t max)
{
	struct run_note rn = { c->at.slot, level };
	uint64_t from;
	int n = ring_claim(r, c->run, max, &from, run_note, &rn);

	if (n <= 0)
		return n;
	/* the run's cell lines for writing: each take is a cmpxchg */
	for (int k = 0; k < n; k += 8)
		__builtin_prefetch(ring_cell(r, from + k), 1, 3);
	if ((from + n - 1) / 8 != (from + ((n - 1) & ~7u)) / 8)
		__builtin_prefetch(ring_cell(r, from + n - 1), 1, 3);
	for (int k = 0; k < n; k++) {
		struct shmbus_chunk *ch = chunk_at(a, c->run[k]);

		if (ch) {
			__builtin_prefetch(ch, 1, 3);
			__builtin_prefetch((const char *)ch + SHMBUS_CACHELINE,
					   0, 3);
			__builtin_prefetch(chunk_payload(ch), 0, 3);
		}
	}
	c->run_ring = r;
	c->run_from = from;
	c->run_n = (uint32_t)n;
	c->run_i = 0;
	return n;
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
	/* (the ids are read only when a probe is attached) */
	SHMBUS_PROBE3(expire, at_bus(at), at->qid,
		      chunk_id(&at->bus->arena, ref));
	SHMBUS_PROBE3(drop, at_bus(at), at->qid,
		      chunk_id(&at->bus->arena, ref));
	chunk_unref(&at->bus->arena, at->slot, ref);
	slot_count(at->slot, SHMBUS_CTR_EXPIRED, 1);
	slot_count(at->slot, SHMBUS_CTR_DROPPED, 1);
	return true;
}

/*
 * Does the message in @ch (@ref; lengths @len, @al checked) carry the
 * checksum of what it holds? On a checksummed queue every message must;
 * elsewhere, one that says it has one (a checksummed topic's) is checked.
 * A failure is counted (corrupt) and probed here.
 */
static __attribute__((noinline)) bool
checksum_ok(struct attachment *at, const struct shmbus_chunk *ch,
	    uint32_t len, uint32_t al)
{
	uint32_t stored = READ_ONCE(ch->checksum);
	uint32_t sum = chunk_checksum(ch, len, al);

	if (likely(sum == stored &&
		   (READ_ONCE(ch->flags) & SHMBUS_CF_CHECKSUM)))
		return true;
	slot_count(at->slot, SHMBUS_CTR_CORRUPT, 1);
	SHMBUS_PROBE5(checksum, at_bus(at), at->qid, READ_ONCE(ch->id),
		      stored, sum);
	return false;
}

/*
 * How long a run to claim: RING_RUN_MAX when twice that many messages
 * wait (looked at only after RUN_STREAK claims in a row found a
 * message), we have the delivery entries for it and the queue does not
 * drop its oldest when full, else one. A run is for a
 * backlog: it then leaves at least as many to competing consumers as it
 * takes, and a queue that keeps up is served one message at a time, as
 * if there were no runs.
 */
#define RUN_STREAK	16	/* claims in a row before a run is tried */

static __always_inline uint32_t run_len(const struct shmbus_consumer *c)
{
	const struct shmbus_queue *q = c->at.q;

	/* the look at head + 63 is a line no one else needs now: only
	 * after a streak of takes that never found the ring empty */
	if (c->streak < RUN_STREAK || c->nfree < RING_RUN_MAX ||
	    !ring_deep(&c->at.ring, 2 * RING_RUN_MAX))
		return 1;
	/* a publisher that drops the oldest drops it at head: the oldest
	 * must not sit in a run behind it */
	if (READ_ONCE(q->overflow) == SHMBUS_OVERFLOW_DROP_OLDEST ||
	    (READ_ONCE(q->flags) & SHMBUS_QF_DROP_OLDEST))
		return 1;
	return RING_RUN_MAX;
}

/*
 * take(), step 1: the next ref of our run, claiming a run first if it is
 * spent: from the highest priority level with a message, one message at
 * a time when there are levels (a run would hold back a more urgent
 * message published meanwhile), else up to RING_RUN_MAX, as many as we
 * have free delivery entries. The ref is noted in delivery entry @le
 * before its cell is given back, so that if we are killed between that
 * and marking the chunk HELD, the daemon finds the message in our table.
 * 0 and *@from the ring it came from, -EAGAIN (every level empty),
 * -EBADMSG (a garbage cell retired) or -EUCLEAN.
 */
static __always_inline int take_ref(struct shmbus_consumer *c,
				    const struct arena *a,
				    struct shmbus_lease *le, uint32_t *ref,
				    struct ring **from)
{
	struct attachment *at = &c->at;
	int n;

	/* Our slot released (the daemon closed our connection): what we
	 * claimed is the daemon's to put back (a take of ours would lose
	 * its cmpxchg to the daemon's, or win it before); we take nothing
	 * more from the rings. */
	if (unlikely(READ_ONCE(at->slot->state) != SHMBUS_SLOT_ACTIVE ||
		     READ_ONCE(at->slot->gen) != at->slot_gen)) {
		c->run_i = c->run_n;
		return -EAGAIN;
	}
	for (uint32_t tries = 0; tries <= RING_RUN_MAX; tries++) {
		if (c->run_i == c->run_n) {
			n = 0;
			if (unlikely(at->nr_prio > 1)) {
				for (uint32_t l = at->nr_prio - 1; l > 0 && !n; l--)
					n = run_claim(c, a, &at->prio[l - 1], l, 1);
				if (!n)
					n = run_claim(c, a, &at->ring, 0, 1);
			} else {
				n = run_claim(c, a, &at->ring, 0, run_len(c));
			}
			c->streak = n > 0 ? c->streak + (c->streak < RUN_STREAK)
					  : 0;
			if (n <= 0) {
				/* no claim of ours is pending: the note
				 * names none */
				if (READ_ONCE(at->slot->claim_n))
					WRITE_ONCE(at->slot->claim_n, 0);
				return n ? n : -EAGAIN;
			}
		}
		*from = c->run_ring;
		*ref = c->run[c->run_i];
		WRITE_ONCE(le->ref, *ref);
		if (likely(ring_consumed(c->run_ring, c->run_from + c->run_i++,
					 *ref)))
			return 0;
		/* taken back (a run held too long, a head set back): not
		 * ours; the next */
	}
	return -EAGAIN;
}

/*
 * A large message is read by the caller as soon as take() returns, and
 * its lines were written on the producer's core. Ask for them all at once
 * (run_claim() asked for the first), so their transfers overlap instead
 * of following the caller's reads one miss at a time; and ask for the
 * next message, already published and so final (the next of our run, or
 * the one at @r's head), towards our L2 while the caller reads this one.
 * A raw ring gets both from the hardware prefetcher, whose streams follow
 * its consecutive slots; chunks come off free lists in no order it could
 * follow. Small messages are left alone: one line is all they have, and
 * run_claim() asked for it. Up to PREFETCH_MAX bytes of each: past that,
 * the caller's own sequential reads keep the hardware prefetcher going.
 */
#define PREFETCH_MIN	256u
#define PREFETCH_MAX	4096u

static __always_inline void payload_prefetch(const struct shmbus_consumer *c,
					     const struct arena *a,
					     struct ring *r,
					     struct shmbus_chunk *ch,
					     uint32_t len)
{
	const uint8_t *d = chunk_payload(ch), *nd;
	struct shmbus_chunk *next;
	uint32_t n, ref;

	if (likely(len < PREFETCH_MIN))
		return;
	for (uint32_t o = SHMBUS_CACHELINE; o < MIN(len, PREFETCH_MAX);
	     o += SHMBUS_CACHELINE)
		__builtin_prefetch(d + o, 0, 3);
	if (c->run_i < c->run_n) {
		ref = c->run[c->run_i];
	} else {
		uint64_t pos = READ_ONCE(*r->head);
		uint64_t v = READ_ONCE(ring_cell(r, pos)->v);

		if (SHMBUS_CELL_SEQ(v) != (uint32_t)(pos + 1))
			return;
		ref = SHMBUS_CELL_REF(v);
	}
	next = chunk_at(a, ref);	/* range-checked */
	if (!next)
		return;
	nd = (const uint8_t *)next;
	n = MIN(a->pool[SHMBUS_REF_POOL(ref)].payload_max, PREFETCH_MAX) +
	    SHMBUS_CHUNK_HDR;
	for (uint32_t o = 0; o < n; o += SHMBUS_CACHELINE)
		__builtin_prefetch(nd + o, 0, 1);
}

/*
 * take(), step 2: claim the message in chunk @ch. Returns 0 (ours now:
 * HELD, or *@shared, a topic message), -EAGAIN (the daemon's now) or
 * -EBADMSG (not a message).
 */
static __always_inline int take_claim(struct attachment *at,
				      struct shmbus_chunk *ch, bool *shared)
{
	/*
	 * Mark it HELD by us with a cmpxchg: the daemon, recovering a
	 * consumer that died right after its ring cmpxchg, may claim the
	 * same chunk (reclaim.c); exactly one of us wins.
	 */
	uint64_t o = READ_ONCE(ch->owner);

	if (SHMBUS_OWNER_STATE(o) == SHMBUS_CHUNK_SHARED) {
		/* a topic message: our reference came with the ring cell;
		 * the delivery entry alone says who has it */
		*shared = true;
		return 0;
	}
	if (unlikely(SHMBUS_OWNER_STATE(o) != SHMBUS_CHUNK_QUEUED))
		return -EBADMSG;	/* not a message: a peer's garbage */
	if (unlikely(!atomic_cmpxchg(&ch->owner, &o,
				     SHMBUS_OWNER(SHMBUS_OWNER_GEN(o),
						  SHMBUS_CHUNK_HELD,
						  at->slot_idx))))
		return -EAGAIN;		/* the daemon's now */
	return 0;
}

/* take(), step 3: count the delivery in the message's header. */
static __always_inline uint32_t take_count(struct attachment *at,
					   struct shmbus_chunk *ch, bool shared)
{
	uint32_t dc;

	if (shared)
		return 1;	/* shared: first delivery; a retry is a copy */
	dc = READ_ONCE(ch->delivery_count) + 1;
	WRITE_ONCE(ch->delivery_count, dc);
	if (dc > 1) {
		slot_count(at->slot, SHMBUS_CTR_REDELIVERED, 1);
		SHMBUS_PROBE4(redeliver, at_bus(at), at->qid,
			      READ_ONCE(ch->id), dc);
	}
	return dc;
}

/*
 * take(), step 4: record the delivery of @ref in entry @e (@le), leased
 * or, in auto-ack mode, a view. A lease's deadline is *@dl, read from the
 * coarse clock by the first message of a receive that needs one (0: not
 * yet), so that a batch reads the clock once. Returns the entry's new
 * word.
 */
static __always_inline uint64_t take_record(struct shmbus_consumer *c,
					    uint32_t e,
					    struct shmbus_lease *le,
					    uint32_t ref, int64_t *dl)
{
	struct attachment *at = &c->at;
	uint64_t w;

	/* record the delivery: deadline first, then the word ([LEASE]
	 * release; pairs with the daemon's acquire load of word in
	 * leases_expire()) */
	c->nfree--;
	if (e >= at->slot->lease_hi)
		WRITE_ONCE(at->slot->lease_hi, e + 1);
	WRITE_ONCE(le->ref, ref);
	w = SHMBUS_LEASE_WORD(SHMBUS_LEASE_SEQ(READ_ONCE(le->word)) + 1,
			      c->auto_ack ? SHMBUS_LEASE_VIEW
					  : SHMBUS_LEASE_HELD);
	if (!c->auto_ack) {
		if (!*dl)
			*dl = coarse_ns() + c->lease_ns;
		WRITE_ONCE(le->deadline, (uint64_t)*dl);
	}
	smp_store_release(&le->word, w);
	return w;
}

/*
 * take(), step 5: fill the view of the message in @ch (@ref, delivered
 * as entry @e with word @w) from its header; @len and @al are the checked
 * copies of its lengths.
 */
static __always_inline void take_view(struct shmbus_msg *msg,
				      struct shmbus_chunk *ch, uint32_t ref,
				      uint32_t len, uint32_t al, uint32_t dc,
				      uint64_t w, uint32_t e)
{
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
	msg->topic = READ_ONCE(ch->qid);
	msg->__topic_gen = msg->topic ? READ_ONCE(ch->topic_gen) : 0;
	msg->expires_ns = READ_ONCE(ch->expires_ns);
	msg->__reply_gen = READ_ONCE(ch->reply_gen);
	msg->__ref = ref;
	msg->__word = w;
	msg->__lease = e + 1;
}

/*
 * A ring entry taken out of the ring without giving a message (a peer's
 * garbage, an expired message, a claim the daemon won): may the caller
 * look on? Up to a ring's worth of them (every level's) per call. False:
 * a peer refills the rings as fast as we drain them; the caller returns
 * -EBADMSG so that its caller can read the clock.
 */
static inline bool take_budget(const struct attachment *at, uint32_t *spent)
{
	return ++*spent <= (at->ring.mask + 1) * at->nr_prio;
}

/*
 * Take one message; a lease's deadline from *@dl (take_record()). Inside
 * an epoch section. Returns 0, -EAGAIN (empty),
 * -ENOBUFS (prefetch reached), -EUCLEAN, -ETIME (an expired message is in
 * c->expired, or one whose checksum failed in c->bad_sum, for
 * expire_pending()), or -EBADMSG: a ring's worth of entries
 * taken without a message (take_budget()); nothing was received.
 */
static inline int take(struct shmbus_consumer *c, struct shmbus_msg *msg,
			int64_t *dl)
{
	struct attachment *at = &c->at;
	const struct arena *a = &at->bus->arena;
	struct shmbus_lease *le;
	struct shmbus_chunk *ch;
	uint32_t ref, len, al, dc, e;
	uint64_t exp, w;
	uint32_t spent = 0;
	struct ring *from;
	bool shared;
	int err;

again:
	shared = false;
	if (unlikely(!c->nfree) && !lease_recycle(c))
		return -ENOBUFS;
	e = c->free[c->nfree - 1];
	le = &at->slot->lease[e];
	err = take_ref(c, a, le, &ref, &from);
	if (unlikely(err)) {
		if (err == -EBADMSG) {
			room_made(a, at->q);
			goto corrupt;	/* a garbage cell, retired */
		}
		return err;
	}
	room_made(a, at->q);
	ch = chunk_at(a, ref);
	if (unlikely(!ch))
		goto corrupt;
	err = take_claim(at, ch, &shared);
	if (unlikely(err)) {
		if (err == -EAGAIN)
			goto look_on;		/* the daemon's now */
		goto corrupt;
	}
	/* read once, validate, and use only these copies */
	len = READ_ONCE(ch->len);
	al = READ_ONCE(ch->attr_len);
	/* 64-bit: a 32-bit ALIGN_UP of len ~ 4 GiB would wrap to 0 */
	if (unlikely(ALIGN_UP((uint64_t)len, 8) + al >
		     a->pool[SHMBUS_REF_POOL(ref)].payload_max)) {
		chunk_unref(a, at->slot, ref);
		goto corrupt;
	}
	payload_prefetch(c, a, from, ch, len);
	if (unlikely(at->checksum ||
		     (READ_ONCE(ch->flags) & SHMBUS_CF_CHECKSUM)) &&
	    !checksum_ok(at, ch, len, al)) {
		c->bad_sum = ref;	/* for the DLQ, out of the section */
		return -ETIME;
	}
	exp = READ_ONCE(ch->expires_ns);
	if (unlikely(exp) && (uint64_t)now_ns() >= exp) {
		if (expire_local(at, ref))
			goto look_on;
		c->expired = ref;
		return -ETIME;
	}
	dc = take_count(at, ch, shared);
	w = take_record(c, e, le, ref, dl);
	take_view(msg, ch, ref, len, al, dc, w, e);
	slot_count(at->slot, SHMBUS_CTR_DELIVERED, 1);
	SHMBUS_PROBE6(deliver, at_bus(at), at->qid, msg->id, dc,
		      ring_depth_hint(READ_ONCE(at->q->tail),
				      READ_ONCE(at->q->head)), now_ns());
	return 0;

corrupt:
	slot_count(at->slot, SHMBUS_CTR_CORRUPT, 1);
look_on:
	if (take_budget(at, &spent))
		goto again;
	return -EBADMSG;
}

/*
 * Hand the message take() left us, expired (c->expired) or with a wrong
 * checksum (c->bad_sum), to the daemon for the DLQ (which drops it,
 * counted, when the queue has none). Never back into the queue: if the
 * daemon cannot take it (no memory for a copy, no daemon), we drop it,
 * counted, ourselves; hence dispose_call(), not dispose().
 */
static __attribute__((noinline)) void expire_pending(struct shmbus_consumer *c)
{
	bool bad_sum = c->bad_sum;
	uint32_t ref = bad_sum ? c->bad_sum : c->expired;

	if (bad_sum)
		c->bad_sum = 0;
	else
		c->expired = 0;
	if (dispose_call(c, &ref, SBC_DISPOSE_DEADLETTER, 0,
			 bad_sum ? SHMBUS_DLR_CHECKSUM : SHMBUS_DLR_EXPIRED)) {
		chunk_unref(&c->at.bus->arena, c->at.slot, ref);
		if (!bad_sum)
			slot_count(c->at.slot, SHMBUS_CTR_EXPIRED, 1);
		slot_count(c->at.slot, SHMBUS_CTR_DROPPED, 1);
	}
}

/*
 * Until when a blocked receive sleeps. While the daemon lives, @deadline.
 * Without it, a producer that attached before our seat's eventfd was made
 * and never fetched it (it fetches through the daemon) cannot wake us, so
 * we look again every DAEMONLESS_LOOK_NS: a message waits that long at
 * most, and an idle consumer costs a wake-up per period, only then.
 */
#define DAEMONLESS_LOOK_NS	(20 * NSEC_PER_MSEC)

static int64_t sleep_until(const struct shmbus_consumer *c, int64_t deadline)
{
	int64_t t;

	if (!c->daemon_gone)
		return deadline;
	t = now_ns() + DAEMONLESS_LOOK_NS;
	return t < deadline ? t : deadline;
}

/*
 * Before a sleep: the connection (bus->conn.gen) whose hang-up the sleep
 * watches, in *@gen. The gen is read before the sleep polls hup_fd, so a
 * hang-up seen is one of that connection or a later one. A consumer that
 * saw the hang-up of a connection the watcher has since replaced
 * (rejoin.c) watches hup_fd again: it is the new daemon's socket.
 */
static void daemon_look(struct shmbus_consumer *c, uint32_t *gen)
{
	*gen = READ_ONCE(c->at.bus->conn.gen);
	if (c->daemon_gone && c->gone_gen != *gen)
		c->daemon_gone = false;
}

static inline int try_take(struct shmbus_consumer *c, struct shmbus_msg *msg,
			    int64_t *dl)
{
	struct attachment *at = &c->at;
	uint32_t spent = 0;
	int err;

	for (;;) {
		epoch_enter(&at->bus->arena, at->slot);
		err = attachment_check(at) ?: take(c, msg, dl);
		epoch_exit(at->slot);
		if (likely(err != -ETIME))
			return err;
		expire_pending(c);
		/* expired messages handed to the daemon count too */
		if (!take_budget(at, &spent))
			return -EBADMSG;
	}
}

/*
 * Did try_take() find nothing to receive? The rings were empty (-EAGAIN),
 * or a peer filled them with what is not a message (garbage, expired
 * messages) as fast as take() drained it (-EBADMSG): either way a receive
 * waits on, or says -EAGAIN.
 */
static inline bool took_nothing(int err)
{
	return err == -EAGAIN || err == -EBADMSG;
}

/* Announce sleep and re-check. 1: a message is there; 0: armed. */
static int arm(struct shmbus_consumer *c)
{
	struct attachment *at = &c->at;
	int r;

	if (c->run_i < c->run_n)
		return 1;	/* claimed, not taken yet */
	epoch_enter(&at->bus->arena, at->slot);
	r = attachment_check(at) ?: seat_arm(&c->seat, &at->ring);
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

/*
 * Wait for a message until @deadline (absolute, now_ns(); INT64_MAX: no
 * end): spin c->spin_ns, then sleep on the seat. The clock is read only
 * every SPIN_CLOCK_EVERY empty checks, so a message that lands within
 * them costs no clock read at all; the spin budget starts at the first.
 */
static int receive_wait(struct shmbus_consumer *c, struct shmbus_msg *msg,
			int64_t deadline, int64_t *dl)
{
	int64_t spin_until = 0, t;	/* 0: the budget has not started */
	unsigned spins = 0;
	uint32_t gen;
	int err;

	for (;;) {
		err = try_take(c, msg, dl);
		if (!took_nothing(err))
			return err;
		/* read the clock only every SPIN_CLOCK_EVERY empty checks,
		 * and after every ring's worth of garbage skipped */
		if (err == -EAGAIN && c->spin_ns && ++spins % SPIN_CLOCK_EVERY) {
			cpu_relax();
			continue;
		}
		t = now_ns();
		if (t >= deadline)
			return -ETIMEDOUT;
		if (!spin_until)
			spin_until = c->spin_ns >= INT64_MAX - t ? INT64_MAX
								 : t + c->spin_ns;
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
		daemon_look(c, &gen);
		err = seat_sleep(&c->seat, sleep_until(c, deadline),
				 c->daemon_gone ? -1 : c->at.bus->hup_fd);
		if (!err)
			SHMBUS_PROBE4(wake_recv, at_bus(&c->at), c->at.qid,
				      c->at.seat, now_ns());
		if (err == -ENOTCONN) {
			c->daemon_gone = true;
			c->gone_gen = gen;
		}
		/* returning an error (-EINTR) takes nothing: a wake-up we
		 * were given goes on to another sleeper */
		disarm(c, err && err != -ETIMEDOUT && err != -ENOTCONN);
		if (err == -ENOTCONN ||
		    (err == -ETIMEDOUT && now_ns() < deadline))
			continue;	/* no daemon: look again ourselves */
		if (err == -ETIMEDOUT) {
			/* one last look: it may have landed at the end */
			err = try_take(c, msg, dl);
			return took_nothing(err) ? -ETIMEDOUT : err;
		}
		if (err)
			return err;
		/* woken: spin again briefly before sleeping again */
		spin_until = 0;
	}
}

/*
 * receive_view(), waiting @timeout_ns (0: not at all, negative: no end)
 * or, if @deadline is not 0, until that absolute now_ns(); the lease
 * deadline of a receive_batch() in *@dl. The clock is read only to wait.
 */
static int receive(struct shmbus_consumer *c, struct shmbus_msg *msg,
		   int64_t timeout_ns, int64_t deadline, int64_t *dl)
{
	int err;

	if (!c || !msg)
		return -EINVAL;
	if ((err = check_pid_fast(c->at.bus)))
		return err;
	if (c->stash_valid) {
		*msg = c->stash;
		c->stash_valid = false;
		return 0;
	}
	err = try_take(c, msg, dl);
	if (likely(!err))
		return 0;
	if (!took_nothing(err))
		return err;
	if (!deadline) {
		if (timeout_ns == 0)
			return -EAGAIN;
		deadline = deadline_of(timeout_ns);
	}
	return receive_wait(c, msg, deadline, dl);
}

int consumer_receive_until(struct shmbus_consumer *c, struct shmbus_msg *msg,
			   int64_t deadline)
{
	int64_t dl = 0;

	return receive(c, msg, 0, deadline ?: 1, &dl);
}

SHMBUS_API int shmbus_consumer__receive_view(struct shmbus_consumer *c,
					     struct shmbus_msg *msg,
					     int64_t timeout_ns)
{
	int64_t dl = 0;

	return receive(c, msg, timeout_ns, 0, &dl);
}

SHMBUS_API int shmbus_consumer__try_receive(struct shmbus_consumer *c,
					    struct shmbus_msg *msg)
{
	return shmbus_consumer__receive_view(c, msg, 0);
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
	int64_t dl = 0;		/* one deadline (clock read) for the batch */
	unsigned got;
	int err;

	if (!c || !msgs || !n)
		return -EINVAL;
	err = receive(c, &msgs[0], timeout_ns, 0, &dl);
	if (err)
		return err;
	at = &c->at;
	got = 1;
	epoch_enter(&at->bus->arena, at->slot);
	if (likely(attachment_live(at))) {
		while (got < n && (err = take(c, &msgs[got], &dl)) == 0)
			got++;
	}
	epoch_exit(at->slot);
	if (err == -ETIME)
		expire_pending(c);
	return (int)got;
}

SHMBUS_API int shmbus_msg__topic(const struct shmbus_consumer *c,
				 const struct shmbus_msg *msg, char *buf,
				 size_t cap)
{
	const struct shmbus_queue *q;
	char name[SHMBUS_NAME_MAX];
	size_t n;
	uint32_t g;

	if (!c || !msg || !buf)
		return -EINVAL;
	if (!msg->topic)
		return -ENOENT;
	q = queue_at(&c->at.bus->arena, msg->topic - 1);
	if (!q)
		return -ENOENT;
	g = smp_load_acquire(&q->gen);		/* [QGEN] */
	memcpy(name, q->name, sizeof(name));
	name[sizeof(name) - 1] = '\0';
	smp_rmb();				/* [QDEL] then re-check */
	/* the topic it was published to, not one that took its id since */
	if (!SHMBUS_QGEN_LIVE(g) || g != msg->__topic_gen ||
	    READ_ONCE(q->gen) != g)
		return -ENOENT;
	n = strlen(name);
	if (n >= cap)
		return -ENAMETOOLONG;
	memcpy(buf, name, n + 1);
	return (int)n;
}

SHMBUS_API int shmbus_consumer__fd(const struct shmbus_consumer *c)
{
	return c ? c->seat.fd : -EINVAL;
}

SHMBUS_API int shmbus_consumer__arm(struct shmbus_consumer *c)
{
	if (!c)
		return -EINVAL;
	if (check_pid_fast(c->at.bus))
		return -ECHILD;
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
