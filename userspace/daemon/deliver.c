// SPDX-License-Identifier: MIT
/*
 * deliver.c - the daemon's part of delivery: what must happen when nobody
 * is calling receive, or when the process that should have acted is dead.
 *
 *   redelivery       at once, or after the queue's backoff for the
 *                    message's delivery count (timers.c); at
 *                    max_deliveries, the DLQ
 *   dead-lettering   reason and source queue in the chunk header, then
 *                    into the DLQ's ring; no DLQ (or a full one): dropped
 *   TTL              messages at the head of a ring whose TTL passed are
 *                    taken (a cmpxchg on the exact cell) and expired, so
 *                    an expired message is counted even if nobody receives;
 *                    consumers also skip expired messages they take
 *   hand-overs       SBC_DISPOSE: a client gives the daemon a chunk to
 *                    delay, retry or dead-letter
 *   the tick         per bus: timers, lease expiry (lease.c), TTL, and
 *                    wake-ups that did not lead to a receive (a message
 *                    waiting at the same head for WAKE_STALL_NS while
 *                    a consumer sleeps wakes the sleepers)
 *
 * While the daemon holds a chunk it is TIMED, owned by SHMBUS_OWNER_DAEMON.
 * Everything here is decided from the daemon's own records (queue
 * settings, slot owners); what is read from the arena (table entries,
 * refs, cells) is validated and used only to find chunks, and every change
 * of a chunk's owner is a cmpxchg on the exact word seen.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmbusd.h"
#include "room.h"
#include "pool.h"
#include "attr.h"
#include "probes.h"
#include "ring.h"

#define DELIVER_TICK_NS		(10 * NSEC_PER_MSEC)
#define TTL_SCAN_MAX		256	/* expired messages per queue per tick */
#define WAKE_STALL_NS		(100 * NSEC_PER_MSEC)

static struct shmbus_queue *arena_q(const struct dbus *b, uint32_t qid)
{
	return &b->arena.queues[qid];
}

/* Add to a queue's folded counter (the daemon's own counts). */
void fold(struct dbus *b, uint32_t qid, unsigned ctr, uint64_t n)
{
	struct shmbus_queue *q = arena_q(b, qid);

	if (qid < b->arena.max_queues && b->queues[qid].live)
		WRITE_ONCE(q->folded[ctr], q->folded[ctr] + n);
}

/* Free a chunk the daemon holds. */
void chunk_drop(struct dbus *b, uint32_t ref)
{
	struct shmbus_chunk *c = chunk_at(&b->arena, ref);
	uint32_t idx = SHMBUS_REF_IDX(ref);

	if (!c)
		return;
	if (chunk_shared(c)) {
		chunk_unref(&b->arena, NULL, ref);	/* our reference */
		return;
	}
	chunk_set(c, SHMBUS_CHUNK_FREE, 0);
	pool_push_global(&b->arena, SHMBUS_REF_POOL(ref), &idx, 1);
}

/* ---- moving chunks the daemon holds ---------------------------------- */

/*
 * A topic message about to be retried or dead-lettered becomes a private
 * copy we hold (TIMED), so its delivery count and dead-letter marks are
 * its own. Without memory it stays shared (retried without a count).
 */
static uint32_t unshare(struct dbus *b, uint32_t qid, uint32_t qgen,
			uint32_t ref)
{
	struct shmbus_chunk *c = chunk_at(&b->arena, ref);
	int64_t now = now_ns();
	uint32_t nref;

	if (!c || !chunk_shared(c))
		return ref;
	/* the copy takes the header as it is: a daemon killed before the
	 * copy's own record below still finds the queue in it (the hold
	 * fields are the daemon's alone, in a shared chunk too) */
	hold_note(c, 0, qid, qgen, now);
	if (chunk_unshare(&b->arena, NULL, ref,
			  (SHMBUS_CHUNK_TIMED << 16) | SHMBUS_OWNER_DAEMON,
			  &nref))
		return ref;
	c = chunk_at(&b->arena, nref);
	hold_note(c, SHMBUS_OWNER_GEN(READ_ONCE(c->owner)), qid, qgen, now);
	return nref;
}

/*
 * Claim up to @n sleeping seats of @qid and write their eventfds, as a
 * producer does (wake.h). The caller has ordered its evidence of a
 * waiting message before this (the [WAKE] fence). Returns the number
 * woken.
 */
static unsigned dq_wake_n(struct dbus *b, uint32_t qid, unsigned n)
{
	static const uint64_t one = 1;
	struct shmbus_queue *q = arena_q(b, qid);
	const struct dqueue *dq = &b->queues[qid];
	unsigned woken = 0;

	for (uint32_t w = 0; w < SHMBUS_SEAT_WORDS && woken < n; w++) {
		uint64_t m = READ_ONCE(q->sleep_mask[w]);

		while (m && woken < n) {
			uint64_t bit = m & -m;
			uint32_t seat = w * 64 + (uint32_t)__builtin_ctzll(m);

			m &= ~bit;
			/* no eventfd made: no consumer ever took that seat,
			 * the bit is not a sleeper's */
			if (seat >= dq->nr_seats || !dq->seat_fds ||
			    dq->seat_fds[seat] < 0)
				continue;
			/* only the one who clears the bit writes (pairs
			 * with the fetch_and in seat_disarm) */
			if (!(atomic_fetch_and(&q->sleep_mask[w], ~bit) & bit))
				continue;
			woken++;
			if (write(dq->seat_fds[seat], &one, sizeof(one)) < 0)
				log_warn("seat %u eventfd write: %s", seat,
					 strerror(errno));
		}
	}
	return woken;
}

/*
 * Wake one sleeping consumer of @qid, as a producer does (wake.h): our
 * ring cmpxchg (a cell's, or a head set back) was SEQ_CST; a full fence,
 * then the mask.
 */
void dq_wake(struct dbus *b, uint32_t qid)
{
	/* [WAKE] after our ring cmpxchg, as a producer: pairs with
	 * seat_arm() */
	smp_mb__after_atomic();
	dq_wake_n(b, qid, 1);
}

/*
 * The head positions of @dq's rings that hold a message, summed into
 * *@heads; the number of messages waiting (at least 1 when any ring has
 * one), or 0.
 */
static uint64_t dq_waiting(struct dbus *b, const struct dqueue *dq,
			   uint64_t *heads)
{
	uint64_t n = 0, sum = 0;

	for (uint32_t l = 0; l < dq->nr_prio; l++) {
		uint64_t pos, v;
		struct ring r;

		dqueue_ring_level(b, dq, l, &r);
		if (!ring_peek_head(&r, &pos, &v))
			continue;
		sum += pos << (2 * l);
		n += MAX(ring_depth_hint(READ_ONCE(*r.tail), pos), (uint64_t)1);
	}
	if (heads)
		*heads = sum;
	return n;
}

void queue_pass_wake(struct dbus *b, uint32_t qid)
{
	const struct dqueue *dq = &b->queues[qid];

	if (!dq->live || dq->kind == DQ_TOPIC || !dq_waiting(b, dq, NULL))
		return;
	/* [WAKE] the message we saw, then the mask: a consumer arming
	 * after our load sees the message itself (pairs with seat_arm()) */
	smp_mb();
	dq_wake_n(b, qid, 1);
}

/*
 * A message of @qid has waited WAKE_STALL_NS at the same head position
 * while consumers sleep: the consumer its wake-up went to is not taking
 * it (stopped, or it returned from receive without taking). Wake as many
 * sleepers as messages wait. Runs from the tick, which runs while anyone
 * is attached (and a sleeper is attached).
 */
static void wake_stalled(struct dbus *b, uint32_t qid, int64_t now)
{
	struct dqueue *dq = &b->queues[qid];
	struct shmbus_queue *q = arena_q(b, qid);
	uint64_t any = 0, heads, n;

	if (dq->kind == DQ_TOPIC)
		return;		/* its ring is history; no consumers */
	for (uint32_t w = 0; w < SHMBUS_SEAT_WORDS; w++)
		any |= READ_ONCE(q->sleep_mask[w]);
	n = any ? dq_waiting(b, dq, &heads) : 0;
	if (!n) {
		dq->stall_since = 0;
		return;
	}
	if (!dq->stall_since || heads != dq->stall_head) {
		dq->stall_since = now;	/* moving, or a new wait */
		dq->stall_head = heads;
		return;
	}
	if (now - dq->stall_since < WAKE_STALL_NS)
		return;
	/* [WAKE] as queue_pass_wake(): the message, then the mask */
	smp_mb();
	n = dq_wake_n(b, qid, (unsigned)MIN(n, SHMBUS_MAX_SEATS));
	if (n)
		log_debug("bus '%s': queue '%s': a message waited %lld ms "
			  "while consumers slept; woke %u more", b->name,
			  dq->name, (long long)((now - dq->stall_since) /
						NSEC_PER_MSEC), (unsigned)n);
	dq->stall_since = now;	/* give them the bound again */
}

/* Put @ref (ours, TIMED) into the ring of live queue @qid. False if full.
 * A quarantined queue takes nothing: the chunk is dropped, counted. */
bool ring_put(struct dbus *b, uint32_t qid, uint32_t ref)
{
	struct shmbus_chunk *c = chunk_at(&b->arena, ref);
	uint32_t gen = SHMBUS_OWNER_GEN(READ_ONCE(c->owner)) + 1;
	const struct dqueue *dq = &b->queues[qid];
	uint32_t level = MIN(READ_ONCE(c->prio), dq->nr_prio - 1);
	struct ring r;

	if (dq->damaged) {
		/* quarantined (repair.c): it takes nothing more */
		fold(b, qid, SHMBUS_CTR_DROPPED, 1);
		chunk_drop(b, ref);
		return true;
	}
	/* back at the priority it was published with (clamped: a DLQ may
	 * have fewer levels) */
	dqueue_ring_level(b, dq, level, &r);
	if (chunk_shared(c)) {
		/* a topic message we could not copy: its reference moves */
		if (ring_enqueue(&r, ref))
			return false;
		dq_wake(b, qid);
		return true;
	}
	/* a new generation: no sweep can mistake it for its past self; its
	 * hold record first, so that a daemon killed before the enqueue
	 * leaves a chunk the next one requeues (adopt_held()) */
	hold_note(c, gen, qid, dq->gen, now_ns());
	WRITE_ONCE(c->owner, SHMBUS_OWNER(gen, SHMBUS_CHUNK_QUEUED,
					  SHMBUS_OWNER_DAEMON));
	if (ring_enqueue(&r, ref)) {
		WRITE_ONCE(c->owner, SHMBUS_OWNER(gen, SHMBUS_CHUNK_TIMED,
						  SHMBUS_OWNER_DAEMON));
		return false;
	}
	dq_wake(b, qid);
	return true;
}

/*
 * The checksum of @c (ours), after we added dead-letter attributes: a
 * checksummed message, or any message entering checksummed queue @qid,
 * gets one over what it holds now. A message dead-lettered because its
 * checksum failed is sealed as it was found: the DLQ delivers the damaged
 * bytes, marked with reason checksum, for inspection.
 */
static void reseal(struct dbus *b, uint32_t qid, uint32_t ref)
{
	struct shmbus_chunk *c = chunk_at(&b->arena, ref);
	uint32_t len = READ_ONCE(c->len), al = READ_ONCE(c->attr_len);

	if (!(READ_ONCE(c->flags) & SHMBUS_CF_CHECKSUM) &&
	    !b->queues[qid].checksum)
		return;
	/* garbage lengths: consumers skip it as corrupt, sealed or not */
	if (ALIGN_UP((uint64_t)len, 8) + al >
	    b->arena.pool[SHMBUS_REF_POOL(ref)].payload_max)
		return;
	WRITE_ONCE(c->checksum, chunk_checksum(c, len, al));
	WRITE_ONCE(c->flags, READ_ONCE(c->flags) | SHMBUS_CF_CHECKSUM);
}

/*
 * Dead-letter @ref (ours) from queue @qid: into its DLQ with the reason,
 * or dropped if it has none, the DLQ is gone, or the DLQ is full. Counted
 * on the source queue either way.
 */
void dead_letter(struct dbus *b, uint32_t qid, uint32_t ref, uint32_t reason)
{
	const struct dqueue *dq = &b->queues[qid];
	struct shmbus_chunk *c = chunk_at(&b->arena, ref);

	if (reason == SHMBUS_DLR_EXPIRED)
		fold(b, qid, SHMBUS_CTR_EXPIRED, 1);
	if ((reason != SHMBUS_DLR_EXPIRED || dq->expire_dlq) &&
	    dq->dlq_qid != UINT32_MAX &&
	    dqueue_is(b, dq->dlq_qid, dq->dlq_gen) &&
	    !b->queues[dq->dlq_qid].damaged &&
	    (ref = unshare(b, qid, dq->gen, ref),
	     !chunk_shared(c = chunk_at(&b->arena, ref)))) {
		uint32_t dlq = dq->dlq_qid;

		WRITE_ONCE(c->dl_reason, reason);
		WRITE_ONCE(c->dl_src_qid, qid + 1);
		attr_dead_letter(c, b->arena.pool[SHMBUS_REF_POOL(ref)].payload_max,
				 reason, dq->name, READ_ONCE(c->delivery_count));
		/* the DLQ counts its own deliveries from 0 again */
		WRITE_ONCE(c->dl_count, READ_ONCE(c->delivery_count));
		WRITE_ONCE(c->delivery_count, 0);
		WRITE_ONCE(c->expires_ns, 0);	/* it is kept, not re-expired */
		reseal(b, dlq, ref);
		/* a persistent DLQ journals it before the queue forgets it;
		 * failing that, it is dropped (counted) */
		if (durable_dead_letter(b, qid, dlq, ref) == 0 &&
		    ring_put(b, dlq, ref)) {
			durable_left(b, qid, ref, reason);
			fold(b, qid, SHMBUS_CTR_DEADLETTERED, 1);
			probe_dead_letter(b->arena.bus_id, qid,
					  READ_ONCE(c->id), reason);
			return;
		}
		log_info("bus '%s': dead-letter queue '%s' full; message of "
			 "'%s' dropped", b->name, b->queues[dq->dlq_qid].name,
			 dq->name);
	}
	fold(b, qid, SHMBUS_CTR_DROPPED, 1);
	probe_drop(b->arena.bus_id, qid, READ_ONCE(c->id));
	durable_left(b, qid, ref, reason);
	chunk_drop(b, ref);
}

/* The delay before delivery number @dc + 1, after @dc failed ones. */
static int64_t backoff_for(const struct dqueue *dq, uint32_t dc)
{
	double d = (double)dq->backoff_init_ns;

	if (!dq->backoff_init_ns)
		return 0;
	for (uint32_t i = 1; i < dc && d < (double)dq->backoff_max_ns; i++)
		d *= dq->backoff_mult_milli / 1000.0;
	return d > (double)dq->backoff_max_ns ? (int64_t)dq->backoff_max_ns
					      : (int64_t)d;
}

void redeliver(struct dbus *b, uint32_t qid, uint32_t qgen, uint32_t ref,
	       bool backoff)
{
	const struct dqueue *dq = &b->queues[qid];
	struct shmbus_chunk *c = chunk_at(&b->arena, ref);
	int64_t delay;
	uint32_t dc;

	if (!c)
		return;
	if (!dqueue_is(b, qid, qgen)) {
		chunk_drop(b, ref);		/* the queue is gone */
		return;
	}
	ref = unshare(b, qid, qgen, ref);
	c = chunk_at(&b->arena, ref);
	dc = READ_ONCE(c->delivery_count);
	if (dq->max_deliveries && dc >= dq->max_deliveries) {
		dead_letter(b, qid, ref, SHMBUS_DLR_MAX_DELIVERIES);
		return;
	}
	delay = backoff ? backoff_for(dq, dc) : 0;
	if (!delay && ring_put(b, qid, ref))
		return;
	timer_add(b, qid, qgen, ref, now_ns() + (delay ? delay : RETRY_FULL_NS));
	server_want_tick();
}

/* ---- SBC_DISPOSE ------------------------------------------------------ */

/* Is SBC_DISPOSE @req well formed? */
static bool dispose_valid(const struct sbc_dispose *req)
{
	return !req->__pad &&
	       !(req->action == SBC_DISPOSE_DELAY && req->delay_ns < 0) &&
	       !(req->action == SBC_DISPOSE_DEADLETTER &&
		 (req->reason < SHMBUS_DLR_MAX_DELIVERIES ||
		  req->reason > SHMBUS_DLR_CHECKSUM)) &&
	       req->action >= SBC_DISPOSE_DELAY &&
	       req->action <= SBC_DISPOSE_DEADLETTER;
}

/* What the client asked for chunk @req->ref, now ours (TIMED); @st is
 * the state it had. */
static void dispose_act(struct dbus *b, const struct dslot *ds,
			const struct sbc_dispose *req, uint32_t st)
{
	struct shmbus_chunk *c = chunk_at(&b->arena, req->ref);
	const struct dqueue *dq = &b->queues[ds->qid];

	switch (req->action) {
	case SBC_DISPOSE_DELAY:
		/* a delayed publish to a persistent queue: journaled first */
		if (st == SHMBUS_CHUNK_LOANED &&
		    durable_delayed(b, ds, req->slot, req->ref, req->delay_ns))
			break;
		/* a nack with a delay counts as a failed delivery */
		if (st == SHMBUS_CHUNK_HELD && dq->max_deliveries &&
		    READ_ONCE(c->delivery_count) >= dq->max_deliveries) {
			dead_letter(b, ds->qid, req->ref,
				    SHMBUS_DLR_MAX_DELIVERIES);
			break;
		}
		timer_add(b, ds->qid, ds->qgen, req->ref,
			  now_ns() + req->delay_ns);
		server_want_tick();
		break;
	case SBC_DISPOSE_RETRY:
		redeliver(b, ds->qid, ds->qgen, req->ref, true);
		break;
	case SBC_DISPOSE_DEADLETTER:
		dead_letter(b, ds->qid, req->ref, req->reason);
		break;
	}
}

int dispose_request(struct dbus *b, const struct peer *p,
		    const struct sbc_dispose *req)
{
	const struct arena *a = &b->arena;
	const struct dslot *ds;
	struct shmbus_chunk *c;
	uint64_t o = req->owner;
	uint32_t st;

	if (req->slot >= a->max_slots)
		return -EINVAL;
	ds = &b->slots[req->slot];
	if (ds->conn_id != p->conn_id || ds->gen != req->slot_gen)
		return -ESRCH;
	if (!dispose_valid(req))
		return -EINVAL;
	c = chunk_at(a, req->ref);
	st = SHMBUS_OWNER_STATE(o);
	/* a consumer hands over what it holds; a producer only delays a
	 * publish of a chunk it has on loan */
	if (!c || SHMBUS_OWNER_SLOT(o) != req->slot ||
	    !(st == SHMBUS_CHUNK_HELD ||
	      (st == SHMBUS_CHUNK_LOANED && req->action == SBC_DISPOSE_DELAY &&
	       ds->role == SHMBUS_ROLE_PRODUCER)))
		return -EINVAL;
	/* the chunk is ours from here on, or it was not what they said */
	hold_note(c, SHMBUS_OWNER_GEN(o), ds->qid, ds->qgen, now_ns());
	if (!atomic_cmpxchg(&c->owner, &o,
			    SHMBUS_OWNER(SHMBUS_OWNER_GEN(o), SHMBUS_CHUNK_TIMED,
					 SHMBUS_OWNER_DAEMON)))
		return -ESTALE;
	if (!dqueue_is(b, ds->qid, ds->qgen)) {
		chunk_drop(b, req->ref);
		return -EIDRM;
	}
	dispose_act(b, ds, req, st);
	return 0;
}

/* ---- TTL and the tick -------------------------------------------------- */

/*
 * Expire messages at the head of queue @qid whose TTL passed (nobody may
 * be receiving). Returns the head's expiry time if it has one.
 */
static int64_t ttl_scan_level(struct dbus *b, uint32_t qid, uint32_t level,
			      int64_t now)
{
	struct dqueue *dq = &b->queues[qid];
	struct ring r;

	dqueue_ring_level(b, dq, level, &r);
	for (int n = 0; n < TTL_SCAN_MAX; n++) {
		uint64_t pos, v, o, e;
		struct shmbus_chunk *c;
		uint32_t ref;

		if (!ring_peek_head(&r, &pos, &v))
			return INT64_MAX;
		ref = SHMBUS_CELL_REF(v);
		c = chunk_at(&b->arena, ref);
		if (!c)
			return INT64_MAX;	/* garbage: consumers count it */
		e = READ_ONCE(c->expires_ns);
		o = READ_ONCE(c->owner);
		if (!e || (uint64_t)now < e)
			return e ? (int64_t)e : INT64_MAX;
		/* still there, so the header we read was the message's */
		if (ring_take_at(&r, pos, v))
			continue;
		room_made(&b->arena, &b->arena.queues[qid]);
		if (SHMBUS_OWNER_STATE(o) == SHMBUS_CHUNK_QUEUED)
			hold_note(c, SHMBUS_OWNER_GEN(o), qid, dq->gen, now);
		if (SHMBUS_OWNER_STATE(o) != SHMBUS_CHUNK_SHARED &&
		    (SHMBUS_OWNER_STATE(o) != SHMBUS_CHUNK_QUEUED ||
		     !atomic_cmpxchg(&c->owner, &o,
				     SHMBUS_OWNER(SHMBUS_OWNER_GEN(o),
						  SHMBUS_CHUNK_TIMED,
						  SHMBUS_OWNER_DAEMON))))
			continue;	/* a peer's garbage: leave it */
		dead_letter(b, qid, ref, SHMBUS_DLR_EXPIRED);
	}
	return now;	/* more to do: come back soon */
}

static int64_t ttl_scan(struct dbus *b, uint32_t qid, int64_t now)
{
	int64_t next = INT64_MAX;

	for (uint32_t l = 0; l < b->queues[qid].nr_prio; l++)
		next = MIN(next, ttl_scan_level(b, qid, l, now));
	return next;
}

int64_t deliver_tick(struct dbus *b, int64_t now)
{
	int64_t next = timers_run(b, now);
	bool attached = false;

	for (uint32_t si = 0; si < b->arena.max_slots; si++) {
		const struct dslot *ds = &b->slots[si];

		if (!ds->conn_id)
			continue;
		attached = true;
		if (ds->role == SHMBUS_ROLE_CONSUMER) {
			leases_expire(b, si, now);
			claims_held(b, si, now);
		}
	}
	for (uint32_t qid = 0; qid < b->arena.max_queues; qid++) {
		if (!b->queues[qid].live || b->queues[qid].damaged)
			continue;
		/* an intake's messages expire in their queue, journaled */
		if (b->queues[qid].kind != DQ_INTAKE)
			next = MIN(next, ttl_scan(b, qid, now));
		if (attached)
			wake_stalled(b, qid, now);
	}
	/* leases and TTLs appear without telling us: look again while
	 * anyone is attached */
	if (attached)
		next = MIN(next, now + DELIVER_TICK_NS);
	next = MIN(next, timers_run(b, now_ns()));
	return next < now ? now : next;
}

