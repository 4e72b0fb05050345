// SPDX-License-Identifier: MIT
/*
 * deliver.c - the daemon's part of delivery: what must happen when nobody
 * is calling receive, or when the process that should have acted is dead.
 *
 *   lease expiry     every DELIVER_TICK_NS, the delivery tables of live
 *                    consumers (struct shmbus_lease); an expired lease is
 *                    won with a cmpxchg on its word (the consumer's late
 *                    ack then fails -ESTALE) and the message redelivered
 *   consumer death   its table, at once (leases_release)
 *   redelivery       at once, or after the queue's backoff for the
 *                    message's delivery count; at max_deliveries, the DLQ
 *   dead-lettering   reason and source queue in the chunk header, then
 *                    into the DLQ's ring; no DLQ (or a full one): dropped
 *   TTL              messages at the head of a ring whose TTL passed are
 *                    taken (a cmpxchg on the exact cell) and expired, so
 *                    an expired message is counted even if nobody receives;
 *                    consumers also skip expired messages they take
 *   delays           delayed publishes and nacks wait in a timer heap
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
#include "pool.h"
#include "attr.h"
#include "probes.h"
#include "ring.h"

#define DELIVER_TICK_NS		(10 * NSEC_PER_MSEC)
#define RETRY_FULL_NS		(5 * NSEC_PER_MSEC)
#define TTL_SCAN_MAX		256	/* expired messages per queue per tick */

extern struct dbus *buses;

/* ---- the timer heap ------------------------------------------------- */

struct timer {
	int64_t due;
	struct dbus *bus;
	uint32_t qid, qgen, ref;
};

static struct timer *heap;
static size_t heap_n, heap_cap;

static void heap_swap(size_t i, size_t j)
{
	struct timer t = heap[i];

	heap[i] = heap[j];
	heap[j] = t;
}

static void heap_up(size_t i)
{
	while (i && heap[(i - 1) / 2].due > heap[i].due) {
		heap_swap(i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void heap_down(size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, m = i;

		if (l < heap_n && heap[l].due < heap[m].due)
			m = l;
		if (l + 1 < heap_n && heap[l + 1].due < heap[m].due)
			m = l + 1;
		if (m == i)
			return;
		heap_swap(i, m);
		i = m;
	}
}

static void heap_remove(size_t i)
{
	heap[i] = heap[--heap_n];
	if (i < heap_n) {
		heap_up(i);
		heap_down(i);
	}
}

static struct shmbus_queue *arena_q(const struct dbus *b, uint32_t qid)
{
	return &b->arena.queues[qid];
}

/* Add to a queue's folded counter (the daemon's own counts). */
static void fold(struct dbus *b, uint32_t qid, unsigned ctr, uint64_t n)
{
	struct shmbus_queue *q = arena_q(b, qid);

	if (qid < b->arena.max_queues && b->queues[qid].live)
		WRITE_ONCE(q->folded[ctr], q->folded[ctr] + n);
}

/* Free a chunk the daemon holds. */
static void chunk_drop(struct dbus *b, uint32_t ref)
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

/*
 * A topic message about to be retried or dead-lettered becomes a private
 * copy we hold (TIMED), so its delivery count and dead-letter marks are
 * its own. Without memory it stays shared (retried without a count).
 */
static uint32_t unshare(struct dbus *b, uint32_t ref)
{
	struct shmbus_chunk *c = chunk_at(&b->arena, ref);
	uint32_t nref;

	if (!c || !chunk_shared(c))
		return ref;
	if (chunk_unshare(&b->arena, NULL, ref,
			  (SHMBUS_CHUNK_TIMED << 16) | SHMBUS_OWNER_DAEMON,
			  &nref))
		return ref;
	return nref;
}

static void timer_add(struct dbus *b, uint32_t qid, uint32_t qgen,
		      uint32_t ref, int64_t due)
{
	if (heap_n == heap_cap) {
		size_t cap = heap_cap ? 2 * heap_cap : 256;
		struct timer *h = realloc(heap, cap * sizeof(*h));

		if (!h) {
			/* cannot hold it: drop it, loudly and counted */
			log_err("bus '%s': out of memory for a timer; message "
				"dropped", b->name);
			fold(b, qid, SHMBUS_CTR_DROPPED, 1);
			chunk_drop(b, ref);
			return;
		}
		heap = h;
		heap_cap = cap;
	}
	heap[heap_n] = (struct timer){ due, b, qid, qgen, ref };
	heap_up(heap_n++);
}

void timers_drop(struct dbus *b, uint32_t qid)
{
	size_t i = 0;

	while (i < heap_n) {
		if (heap[i].bus != b || (qid != UINT32_MAX && heap[i].qid != qid)) {
			i++;
			continue;
		}
		if (qid != UINT32_MAX)
			chunk_drop(b, heap[i].ref);
		heap_remove(i);
	}
}

void timers_mark(const struct dbus *b, uint8_t *bits, const uint64_t *pool_base)
{
	for (size_t i = 0; i < heap_n; i++) {
		uint32_t ref = heap[i].ref, pi = SHMBUS_REF_POOL(ref);
		uint64_t bit;

		if (heap[i].bus != b || !chunk_at(&b->arena, ref))
			continue;
		bit = pool_base[pi] + SHMBUS_REF_IDX(ref);
		bits[bit / 8] |= 1u << (bit % 8);
	}
}

/* ---- moving chunks the daemon holds ---------------------------------- */

/*
 * Wake one sleeping consumer of @qid, as a producer does (wake.h): our
 * ring cmpxchg was SEQ_CST; a full fence, then the mask.
 */
static void dq_wake(struct dbus *b, uint32_t qid)
{
	static const uint64_t one = 1;
	struct shmbus_queue *q = arena_q(b, qid);
	const struct dqueue *dq = &b->queues[qid];

	smp_mb__after_atomic();
	for (uint32_t w = 0; w < SHMBUS_SEAT_WORDS; w++) {
		uint64_t m = READ_ONCE(q->sleep_mask[w]);

		while (m) {
			uint64_t bit = m & -m;
			uint32_t seat = w * 64 + (uint32_t)__builtin_ctzll(m);

			m &= ~bit;
			if (!(atomic_fetch_and(&q->sleep_mask[w], ~bit) & bit))
				continue;
			if (seat < dq->nr_seats && dq->seat_fds &&
			    write(dq->seat_fds[seat], &one, sizeof(one)) < 0)
				log_warn("seat %u eventfd write: %s", seat,
					 strerror(errno));
			return;
		}
	}
}

/* Put @ref (ours, TIMED) into the ring of live queue @qid. False if full. */
static bool ring_put(struct dbus *b, uint32_t qid, uint32_t ref)
{
	struct shmbus_chunk *c = chunk_at(&b->arena, ref);
	uint32_t gen = SHMBUS_OWNER_GEN(READ_ONCE(c->owner)) + 1;
	const struct dqueue *dq = &b->queues[qid];
	uint32_t level = MIN(READ_ONCE(c->prio), dq->nr_prio - 1);
	struct ring r;

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
	/* a new generation: no sweep can mistake it for its past self */
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
 * Dead-letter @ref (ours) from queue @qid: into its DLQ with the reason,
 * or dropped if it has none, the DLQ is gone, or the DLQ is full. Counted
 * on the source queue either way.
 */
static void dead_letter(struct dbus *b, uint32_t qid, uint32_t ref,
			uint32_t reason)
{
	const struct dqueue *dq = &b->queues[qid];
	struct shmbus_chunk *c = chunk_at(&b->arena, ref);

	if (reason == SHMBUS_DLR_EXPIRED)
		fold(b, qid, SHMBUS_CTR_EXPIRED, 1);
	if ((reason != SHMBUS_DLR_EXPIRED || dq->expire_dlq) &&
	    dq->dlq_qid != UINT32_MAX &&
	    dqueue_is(b, dq->dlq_qid, dq->dlq_gen) &&
	    (ref = unshare(b, ref), !chunk_shared(c = chunk_at(&b->arena, ref)))) {
		WRITE_ONCE(c->dl_reason, reason);
		WRITE_ONCE(c->dl_src_qid, qid + 1);
		attr_dead_letter(c, b->arena.pool[SHMBUS_REF_POOL(ref)].payload_max,
				 reason, dq->name, READ_ONCE(c->delivery_count));
		/* the DLQ counts its own deliveries from 0 again */
		WRITE_ONCE(c->dl_count, READ_ONCE(c->delivery_count));
		WRITE_ONCE(c->delivery_count, 0);
		WRITE_ONCE(c->expires_ns, 0);	/* it is kept, not re-expired */
		if (ring_put(b, dq->dlq_qid, ref)) {
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

static bool expired(const struct shmbus_chunk *c, int64_t now)
{
	uint64_t e = READ_ONCE(c->expires_ns);

	return e && (uint64_t)now >= e;
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
	ref = unshare(b, ref);
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

/* A timer is due: into the ring (unless it expired meanwhile). */
static void timer_fire(const struct timer *t, int64_t now)
{
	struct shmbus_chunk *c = chunk_at(&t->bus->arena, t->ref);

	if (!c)
		return;
	if (!dqueue_is(t->bus, t->qid, t->qgen)) {
		chunk_drop(t->bus, t->ref);
		return;
	}
	if (expired(c, now)) {
		dead_letter(t->bus, t->qid, t->ref, SHMBUS_DLR_EXPIRED);
		return;
	}
	if (!ring_put(t->bus, t->qid, t->ref))
		timer_add(t->bus, t->qid, t->qgen, t->ref, now + RETRY_FULL_NS);
}

static int64_t timers_run(int64_t now)
{
	while (heap_n && heap[0].due <= now) {
		struct timer t = heap[0];

		heap_remove(0);
		timer_fire(&t, now);
	}
	return heap_n ? heap[0].due : INT64_MAX;
}

/* ---- SBC_DISPOSE ------------------------------------------------------ */

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
	if (req->__pad ||
	    (req->action == SBC_DISPOSE_DELAY && req->delay_ns < 0) ||
	    (req->action == SBC_DISPOSE_DEADLETTER &&
	     (req->reason < SHMBUS_DLR_MAX_DELIVERIES ||
	      req->reason > SHMBUS_DLR_OVERFLOW)) ||
	    req->action < SBC_DISPOSE_DELAY ||
	    req->action > SBC_DISPOSE_DEADLETTER)
		return -EINVAL;
	c = chunk_at(a, req->ref);
	st = SHMBUS_OWNER_STATE(o);
	if (!c || SHMBUS_OWNER_SLOT(o) != req->slot ||
	    !(st == SHMBUS_CHUNK_HELD ||
	      (st == SHMBUS_CHUNK_LOANED && req->action == SBC_DISPOSE_DELAY &&
	       ds->kind == SHMBUS_KIND_PRODUCER)))
		return -EINVAL;
	/* the chunk is ours from here on, or it was not what they said */
	if (!atomic_cmpxchg(&c->owner, &o,
			    SHMBUS_OWNER(SHMBUS_OWNER_GEN(o), SHMBUS_CHUNK_TIMED,
					 SHMBUS_OWNER_DAEMON)))
		return -ESTALE;
	if (!dqueue_is(b, ds->qid, ds->qgen)) {
		chunk_drop(b, req->ref);
		return -EIDRM;
	}
	switch (req->action) {
	case SBC_DISPOSE_DELAY:
		if (st == SHMBUS_CHUNK_HELD) {
			const struct dqueue *dq = &b->queues[ds->qid];

			if (dq->max_deliveries &&
			    READ_ONCE(c->delivery_count) >= dq->max_deliveries) {
				dead_letter(b, ds->qid, req->ref,
					    SHMBUS_DLR_MAX_DELIVERIES);
				break;
			}
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
	return 0;
}

/* ---- delivery tables -------------------------------------------------- */

/*
 * Take chunk @ref away from consumer slot @si, which holds it (HELD): a
 * cmpxchg on the exact owner word. False if it does not hold it.
 */
static bool take_from(struct dbus *b, uint32_t si, uint32_t ref)
{
	struct shmbus_chunk *c = chunk_at(&b->arena, ref);
	uint64_t o;

	if (!c)
		return false;
	o = READ_ONCE(c->owner);
	if (SHMBUS_OWNER_STATE(o) == SHMBUS_CHUNK_SHARED)
		return true;	/* the entry names our reference */
	if (SHMBUS_OWNER_STATE(o) != SHMBUS_CHUNK_HELD ||
	    SHMBUS_OWNER_SLOT(o) != si)
		return false;
	return atomic_cmpxchg(&c->owner, &o,
			      SHMBUS_OWNER(SHMBUS_OWNER_GEN(o),
					   SHMBUS_CHUNK_TIMED,
					   SHMBUS_OWNER_DAEMON));
}

void leases_reset(struct shmbus_slot *s)
{
	s->lease_hi = 0;
	for (uint32_t e = 0; e < SHMBUS_LEASE_MAX; e++) {
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
			}
		}
	}
	leases_reset(s);
	if (back || freed)
		log_info("bus '%s': consumer slot %u (pid %d) gone: %u leased "
			 "messages requeued, %u auto-ack views freed", b->name,
			 si, (int)ds->pid, back, freed);
	return n;
}

/* Expired leases of live consumer slot @si. */
static void leases_scan(struct dbus *b, uint32_t si, int64_t now)
{
	struct shmbus_slot *s = &b->arena.slots[si];
	const struct dslot *ds = &b->slots[si];
	uint32_t hi = MIN(READ_ONCE(s->lease_hi), SHMBUS_LEASE_MAX);

	for (uint32_t e = 0; e < hi; e++) {
		struct shmbus_lease *le = &s->lease[e];
		/* pairs with the consumer's release store of word (take) and
		 * the cmpxchg of extend: deadline is at least as new */
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

int64_t deliver_tick(int64_t now)
{
	int64_t next = timers_run(now);

	for (struct dbus *b = buses; b; b = b->next) {
		bool attached = false;

		for (uint32_t si = 0; si < b->arena.max_slots; si++) {
			const struct dslot *ds = &b->slots[si];

			if (!ds->conn_id)
				continue;
			attached = true;
			if (ds->kind == SHMBUS_KIND_CONSUMER)
				leases_scan(b, si, now);
		}
		for (uint32_t qid = 0; qid < b->arena.max_queues; qid++)
			if (b->queues[qid].live)
				next = MIN(next, ttl_scan(b, qid, now));
		/* leases and TTLs appear without telling us: look again
		 * while anyone is attached */
		if (attached)
			next = MIN(next, now + DELIVER_TICK_NS);
	}
	next = MIN(next, timers_run(now_ns()));
	return next < now ? now : next;
}
