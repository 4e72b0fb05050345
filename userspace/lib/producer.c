// SPDX-License-Identifier: MIT
/*
 * producer.c - publishing: copy and zero-copy (loan, commit, cancel),
 * single and batched.
 *
 * A publish is: take a chunk (slot cache, else the pool's shared list),
 * write header and payload, then one cmpxchg on a ring cell makes the
 * message visible (ring.h), then one load of the queue's sleep mask
 * decides whether a consumer needs an eventfd write (wake.h). A process
 * killed anywhere in this sequence leaves no half-written message in the
 * ring and blocks no other producer: before the cmpxchg the chunk is only
 * ours, after it the message is complete.
 */
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "epoch.h"
#include "pool.h"
#include "attr.h"
#include "probes.h"

struct shmbus_producer {
	struct attachment at;
	bool stamp;		/* SHMBUS_PRODUCER_TIMESTAMP */
	int64_t ttl_ns;		/* the queue's TTL, 0 = none */
	bool topic;		/* a topic: publishes fan out */
	struct shmbus_dedup *dedup;	/* the queue's dedup table, or NULL */
	uint32_t dedup_mask;
	int64_t dedup_window;
};

/*
 * The publish time, if asked for. Read first thing in a publish: the
 * vDSO's rdtscp waits for loads in flight, so reading it after writing the
 * chunk would also wait for the chunk's cache misses.
 */
static inline int64_t pub_time(const struct shmbus_producer *p)
{
	return p->stamp ? now_ns() : 0;
}

static void dedup_bind(struct shmbus_producer *p);

SHMBUS_API struct shmbus_producer *
shmbus_producer__new(struct shmbus *bus, const char *queue,
		     const struct shmbus_producer_opts *opts)
{
	struct shmbus_producer *p;
	int err;

	if (!bus || !queue || !OPTS_VALID(opts, shmbus_producer_opts) ||
	    (OPTS_GET(opts, flags, 0) & ~SHMBUS_PRODUCER_TIMESTAMP)) {
		errno = EINVAL;
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		errno = ENOMEM;
		return NULL;
	}
	p->stamp = OPTS_GET(opts, flags, 0) & SHMBUS_PRODUCER_TIMESTAMP;
	err = attach(bus, queue, SHMBUS_KIND_PRODUCER, &p->at);
	if (err) {
		free(p);
		errno = -err;
		return NULL;
	}
	p->ttl_ns = (int64_t)READ_ONCE(p->at.q->ttl_ns);
	if (p->ttl_ns < 0)
		p->ttl_ns = 0;		/* a peer's garbage */
	dedup_bind(p);
	p->topic = READ_ONCE(p->at.q->flags) & SHMBUS_QF_TOPIC;
	p->at.overflow = READ_ONCE(p->at.q->overflow);
	if (p->at.overflow > SHMBUS_OVERFLOW_DROP_OLDEST)
		p->at.overflow = SHMBUS_OVERFLOW_BLOCK;	/* a peer's garbage */
	return p;
}

SHMBUS_API void shmbus_producer__free(struct shmbus_producer *p)
{
	if (!p)
		return;
	detach(&p->at);
	free(p);
}

/*
 * The queue's dedup table, if it has one that lies inside the ring area
 * (the descriptor is the daemon's, but any peer could have scribbled on
 * it: a bad one just means no dedup).
 */
static void dedup_bind(struct shmbus_producer *p)
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
static __attribute__((noinline)) bool dedup_seen(struct shmbus_producer *p,
						 uint64_t key)
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

/* A publish that recorded @key failed: forget the key again. */
static void dedup_forget(struct shmbus_producer *p, uint64_t key)
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

/*
 * Dedup step of a publish with @opts: 0 = go ahead (*key set if recorded),
 * 1 = a duplicate (drop, counted), -EOPNOTSUPP = the queue has no window.
 */
static inline int dedup_check(struct shmbus_producer *p,
			      const struct shmbus_pub_opts *opts,
			      uint64_t *key)
{
	const char *id = OPTS_GET(opts, dedup_id, NULL);

	*key = 0;
	if (likely(!id))
		return 0;
	if (!p->dedup)
		return -EOPNOTSUPP;
	*key = dedup_key_of(id);
	if (!dedup_seen(p, *key))
		return 0;
	slot_count(p->at.slot, SHMBUS_CTR_DUPLICATE, 1);
	return 1;
}

/* A chunk of the smallest class that fits, else of a larger class. */
static inline int alloc_chunk(struct attachment *at, size_t size,
			      uint32_t *ref)
{
	const struct arena *a = &at->bus->arena;
	int pi = pool_for_size(a, size);

	if (pi < 0)
		return pi;
	for (; pi < (int)a->nr_pools; pi++) {
		int err = pool_alloc(a, at->slot, pi,
				     (SHMBUS_CHUNK_LOANED << 16) | at->slot_idx,
				     ref);

		if (err != -ENOMEM)
			return err;
	}
	return -ENOMEM;
}

/* What a publish writes into every header besides the payload. */
struct pub_hdr {
	uint64_t corr_id;
	uint32_t reply_to;	/* qid + 1, 0 = none */
	uint32_t reply_gen;
	int64_t ts;		/* publish time, 0 = not stamped */
	uint64_t expires;	/* CLOCK_MONOTONIC, 0 = never */
	const struct shmbus_attr *attrs;	/* checked by check_pub_opts */
	uint32_t nr_attrs, attr_size;
	uint32_t prio;		/* priority level, checked < nr_prio */
};

/* Chunk bytes a message needs: the payload, then its attributes at the
 * next 8-byte boundary. */
static inline size_t msg_bytes(size_t len, const struct pub_hdr *h)
{
	return likely(!h->attr_size) ? len : ALIGN_UP(len, 8) + h->attr_size;
}

/*
 * The header fields of a publish with @opts. The TTL costs a clock read
 * only when there is one.
 */
static inline struct pub_hdr pub_hdr_of(const struct shmbus_producer *p,
					const struct shmbus_pub_opts *opts,
					int64_t ts)
{
	int64_t ttl = OPTS_GET(opts, ttl_ns, 0);
	struct pub_hdr h = { .corr_id = OPTS_GET(opts, corr_id, 0), .ts = ts };

	h.prio = OPTS_GET(opts, priority, 0);
	h.attrs = OPTS_GET(opts, attrs, NULL);
	h.nr_attrs = OPTS_GET(opts, nr_attrs, 0);
	if (unlikely(h.nr_attrs) && attr_size(h.attrs, h.nr_attrs, &h.attr_size))
		h.nr_attrs = h.attr_size = 0;	/* refused by check_pub_opts */
	if (ttl == 0)
		ttl = p->ttl_ns;
	if (unlikely(ttl > 0)) {
		int64_t now = ts ? ts : now_ns();

		if (__builtin_add_overflow(now, ttl, &now))
			now = INT64_MAX;
		h.expires = (uint64_t)now;
	}
	return h;
}

static inline void chunk_fill(struct attachment *at, struct shmbus_chunk *c,
			      uint32_t len, const struct pub_hdr *h)
{
	/* plain stores: the chunk is ours alone until the ring cmpxchg,
	 * which is the release that publishes them */
	c->len = len;
	c->attr_len = (uint16_t)h->attr_size;
	if (unlikely(h->attr_size))
		attr_encode(chunk_payload(c) + ALIGN_UP(len, 8), h->attrs,
			    h->nr_attrs);
	c->flags = 0;
	c->id = slot_next_id(at->bus, at->slot);
	c->ts_pub = (uint64_t)h->ts;
	c->corr_id = h->corr_id;
	c->reply_to = h->reply_to;
	c->reply_gen = h->reply_gen;
	c->delivery_count = 0;
	c->expires_ns = h->expires;
	c->not_before_ns = 0;
	c->dl_reason = 0;
	c->dl_src_qid = 0;
	c->dl_count = 0;
	c->prio = h->prio;
}

static inline int check_pub_opts(const struct shmbus_pub_opts *opts)
{
	uint32_t size;

	if (unlikely(!OPTS_VALID(opts, shmbus_pub_opts)))
		return -EINVAL;
	if (unlikely(OPTS_GET(opts, nr_attrs, 0)))
		return attr_size(opts->attrs, opts->nr_attrs, &size) ?: 0;
	return OPTS_GET(opts, delay_ns, 0) < 0 ? -EINVAL : 0;
}

/*
 * How long a publish may wait for room or memory. The deadline is computed
 * on the first wait only: a publish that does not wait reads no clock.
 */
struct pub_wait {
	int64_t timeout;	/* ns; 0 never waits, < 0 waits for ever */
	int64_t deadline;	/* 0 until first needed */
};

static inline struct pub_wait pub_wait_of(int64_t timeout_ns)
{
	return (struct pub_wait){ .timeout = timeout_ns };
}

static bool pub_wait_over(struct pub_wait *w)
{
	if (w->timeout == 0)
		return true;
	if (w->timeout < 0)
		return false;
	if (!w->deadline)
		w->deadline = deadline_of(w->timeout);
	return now_ns() >= w->deadline;
}

/*
 * Out of line: the ring was full; wait for room as @w allows. Called
 * inside an epoch section; leaves and re-enters it while waiting so that a
 * queue delete is never held up by a producer waiting on a full queue.
 */
static __attribute__((noinline)) int
enqueue_slow(struct attachment *at, struct ring *r, uint32_t ref,
	     struct pub_wait *w)
{
	const struct arena *a = &at->bus->arena;
	unsigned round = 0;
	int err = -ENOBUFS;

	for (;;) {
		if (pub_wait_over(w))
			return err;
		/* wait with loads only, then try again */
		do {
			epoch_exit(at->slot);
			backoff_wait(round++);
			epoch_enter(a, at->slot);
			if (!attachment_live(at))
				return -EIDRM;
		} while (!ring_has_room(r) && !pub_wait_over(w));
		err = ring_enqueue(r, ref);
		if (err != -ENOBUFS)
			return err;
	}
}

static void wake_sub(struct attachment *at, struct shmbus_queue *sq,
		     uint32_t qid, uint32_t gen, struct wake_batch *b);

/*
 * Dead-letter chunk @old (ours, HELD) from our queue with reason
 * overflow: into the DLQ's ring if the queue has a live one with room,
 * else dropped. Counted either way. Inside an epoch section (the DLQ's
 * ring cannot be reclaimed under us).
 */
static void overflow_out(struct attachment *at, uint32_t old)
{
	const struct arena *a = &at->bus->arena;
	struct shmbus_chunk *c = chunk_at(a, old);
	uint32_t d = READ_ONCE(at->q->dlq_qid), dgen = READ_ONCE(at->q->dlq_gen);
	struct shmbus_queue *dq = d ? queue_at(a, d - 1) : NULL;
	struct ring r;

	if (dq && READ_ONCE(dq->gen) == dgen && SHMBUS_QGEN_LIVE(dgen) &&
	    !arena_queue_ring(a, dq, &r)) {
		char src[SHMBUS_NAME_MAX];

		memcpy(src, at->q->name, sizeof(src));
		src[sizeof(src) - 1] = '\0';
		attr_dead_letter(c, a->pool[SHMBUS_REF_POOL(old)].payload_max,
				 SHMBUS_DLR_OVERFLOW, src, c->delivery_count);
		c->dl_reason = SHMBUS_DLR_OVERFLOW;
		c->dl_src_qid = at->qid + 1;
		c->dl_count = c->delivery_count;
		c->delivery_count = 0;
		c->expires_ns = 0;
		chunk_own(c, (SHMBUS_CHUNK_QUEUED << 16) | at->slot_idx);
		if (ring_enqueue(&r, old) == 0) {
			wake_sub(at, dq, d - 1, dgen, NULL);
			slot_count(at->slot, SHMBUS_CTR_DEADLETTERED, 1);
			SHMBUS_PROBE4(dead_letter, at_bus(at), at->qid, c->id,
				      SHMBUS_DLR_OVERFLOW);
			return;
		}
		chunk_set(c, SHMBUS_CHUNK_HELD, at->slot_idx);
	}
	SHMBUS_PROBE3(drop, at_bus(at), at->qid, c->id);
	pool_free(a, at->slot, old);
	slot_count(at->slot, SHMBUS_CTR_DROPPED, 1);
}

/*
 * A message a producer took from a ring to drop it: a private chunk is
 * claimed as a consumer would claim it (a dead consumer's recovery may
 * race us for it: true if we won, it is ours, HELD); a topic message
 * (SHARED) needs no claim, our reference came with the ring cell.
 */
static bool claim_dropped(struct attachment *at, uint32_t old)
{
	struct shmbus_chunk *c = chunk_at(&at->bus->arena, old);
	uint64_t o;

	if (!c)
		return false;
	o = READ_ONCE(c->owner);
	if (SHMBUS_OWNER_STATE(o) == SHMBUS_CHUNK_SHARED)
		return true;
	return SHMBUS_OWNER_STATE(o) == SHMBUS_CHUNK_QUEUED &&
	       atomic_cmpxchg(&c->owner, &o,
			      SHMBUS_OWNER(SHMBUS_OWNER_GEN(o), SHMBUS_CHUNK_HELD,
					   at->slot_idx));
}

/*
 * Out of line: the ring is full and the queue's policy is drop-oldest.
 * Take the oldest message (claiming it as a consumer would: a dead
 * consumer's recovery may race us for it), dead-letter or drop it, and
 * try again.
 */
static __attribute__((noinline)) int
enqueue_drop_oldest(struct attachment *at, struct ring *r, uint32_t ref)
{
	for (int n = 0; n < 16; n++) {
		uint32_t old;

		if (ring_dequeue(r, &old) == 0 && claim_dropped(at, old))
			overflow_out(at, old);
		if (ring_enqueue(r, ref) == 0)
			return 0;
	}
	return -ENOBUFS;
}

/* The ring of priority level @prio (checked against nr_prio). */
static inline struct ring *level_ring(struct attachment *at, uint32_t prio)
{
	return likely(!prio) ? &at->ring : &at->prio[prio - 1];
}

/* Enqueue @ref at priority @prio, as the queue's overflow policy and @w
 * allow (inside an epoch section). */
static inline int enqueue_wait(struct attachment *at, uint32_t prio,
			       uint32_t ref, struct pub_wait *w)
{
	struct ring *r = level_ring(at, prio);
	int err = ring_enqueue(r, ref);

	if (likely(err != -ENOBUFS))
		return err;
	if (at->overflow == SHMBUS_OVERFLOW_DROP_OLDEST)
		return enqueue_drop_oldest(at, r, ref);
	if (w->timeout == 0 || at->overflow == SHMBUS_OVERFLOW_REJECT)
		return err;
	return enqueue_slow(at, r, ref, w);
}

/*
 * Out of line: the pools were empty; wait as @w allows. With @in_epoch,
 * leaves the caller's epoch section while it waits.
 */
static __attribute__((noinline)) int
alloc_slow(struct attachment *at, size_t size, uint32_t *ref,
	   struct pub_wait *w, bool in_epoch)
{
	unsigned round = 0;
	int err = -ENOMEM;

	for (;;) {
		if (pub_wait_over(w))
			return err;
		if (in_epoch)
			epoch_exit(at->slot);
		backoff_wait(round++);
		if (in_epoch)
			epoch_enter(&at->bus->arena, at->slot);
		if (!attachment_live(at))
			return -EIDRM;
		err = alloc_chunk(at, size, ref);
		if (err != -ENOMEM)
			return err;
	}
}

/* Take a chunk, waiting while the pools are empty as @w allows. */
static inline int alloc_wait(struct attachment *at, size_t size,
			     uint32_t *ref, struct pub_wait *w, bool in_epoch)
{
	int err = alloc_chunk(at, size, ref);

	if (likely(err != -ENOMEM) || w->timeout == 0)
		return err;
	return alloc_slow(at, size, ref, w, in_epoch);
}

/* A chunk holding @data and the header fields @h, ours in *@ref (queue
 * and topic publishes alike); inside an epoch section. 0 or -errno. */
static inline int chunk_for(struct attachment *at, const void *data,
			    size_t len, const struct pub_hdr *h,
			    struct pub_wait *w, uint32_t *ref)
{
	struct shmbus_chunk *c;
	int err;

	err = alloc_wait(at, msg_bytes(len, h), ref, w, true);
	if (unlikely(err)) {
		if (err == -ENOMEM)
			slot_count(at->slot, SHMBUS_CTR_NOMEM, 1);
		return err;
	}
	c = chunk_at(&at->bus->arena, *ref);
	memcpy(chunk_payload(c), data, len);
	chunk_fill(at, c, (uint32_t)len, h);
	return 0;
}

/* One message; inside an epoch section. Returns 0 or -errno. */
static inline int publish_one(struct attachment *at, const void *data,
			      size_t len, const struct pub_hdr *h,
			      struct pub_wait *w)
{
	const struct arena *a = &at->bus->arena;
	struct shmbus_chunk *c;
	uint32_t ref;
	uint64_t id;
	int64_t pts;
	int err;

	if (unlikely(len > at->msg_size))
		return -EMSGSIZE;
	/* the cell's transfer overlaps with writing the chunk */
	ring_prefetch_tail(&at->ring);
	err = chunk_for(at, data, len, h, w, &ref);
	if (unlikely(err))
		return err;
	c = chunk_at(a, ref);
	/* QUEUED inside our epoch section: an orphan sweep's grace period
	 * then covers the whole window until the ring cmpxchg */
	chunk_set(c, SHMBUS_CHUNK_QUEUED, at->slot_idx);
	/* For the probe, read before the message becomes visible: the time
	 * (a consumer may deliver it before our probe fires) and the id
	 * (the chunk may be gone once it is in the ring). pts != 0 is also
	 * "the probe is on" (now_ns() is never 0): one semaphore test, and
	 * nothing else, when nobody traces */
	pts = 0;
	id = 0;
	if (SHMBUS_PROBE_ON(publish)) {
		pts = now_ns();
		id = c->id;
	}
	err = enqueue_wait(at, h->prio, ref, w);
	if (unlikely(err)) {
		pool_free(&at->bus->arena, at->slot, ref);
		if (err == -ENOBUFS)
			slot_count(at->slot, SHMBUS_CTR_FULL, 1);
		return err;
	}
	slot_count(at->slot, SHMBUS_CTR_PUBLISHED, 1);
	SHMBUS_PROBE6_IF(pts, publish, at_bus(at), at->qid, id, len,
			 ring_depth_hint(READ_ONCE(at->q->tail),
					 READ_ONCE(at->q->head)), pts);
	return 0;
}

static inline void wake_after(struct attachment *at, unsigned n)
{
	unsigned w = wake_after_publish(&at->bus->wakes, at->q, at->qid,
					at->qgen, n);

	if (w)
		slot_count(at->slot, SHMBUS_CTR_WAKEUPS, w);
}

/*
 * A delayed publish: the filled chunk goes to the daemon, which holds it
 * (state TIMED) and puts it into the queue when the delay is over. Costs a
 * round trip to the daemon; nothing is published if the daemon refuses.
 */
static __attribute__((noinline)) int
hand_to_daemon(struct attachment *at, uint32_t ref, int64_t delay_ns)
{
	struct shmbus_chunk *c = chunk_at(&at->bus->arena, ref);
	struct sbc_dispose req = {
		.slot = at->slot_idx,
		.slot_gen = at->slot_gen,
		.ref = ref,
		.action = SBC_DISPOSE_DELAY,
		.owner = chunk_set(c, SHMBUS_CHUNK_LOANED, at->slot_idx),
		.delay_ns = delay_ns,
	};
	int err;

	err = client_call(&at->bus->conn, SBC_DISPOSE, &req, sizeof(req),
			  NULL, 0, NULL, NULL);
	if (err)
		return err;
	slot_count(at->slot, SHMBUS_CTR_PUBLISHED, 1);
	return 0;
}

static __attribute__((noinline)) int
publish_delayed(struct shmbus_producer *p, const void *data, size_t len,
		const struct pub_hdr *h, int64_t delay_ns, struct pub_wait *w)
{
	struct attachment *at = &p->at;
	uint32_t ref;
	int err;

	if (len > at->msg_size)
		return -EMSGSIZE;
	if (!attachment_live(at))
		return -EIDRM;
	err = alloc_wait(at, msg_bytes(len, h), &ref, w, false);
	if (err) {
		if (err == -ENOMEM)
			slot_count(at->slot, SHMBUS_CTR_NOMEM, 1);
		return err;
	}
	memcpy(chunk_payload(chunk_at(&at->bus->arena, ref)), data, len);
	chunk_fill(at, chunk_at(&at->bus->arena, ref), (uint32_t)len, h);
	err = hand_to_daemon(at, ref, delay_ns);
	if (err)
		pool_free(&at->bus->arena, at->slot, ref);
	return err;
}

/* ---- topics ------------------------------------------------------- */

/*
 * Wake one sleeping consumer of subscription (qid, gen). Its seat fds are
 * fetched from the daemon the first time this process needs them (a
 * sleeper is the only reason to): a bit is cleared only once we can
 * write the eventfd, so no wake-up is lost to a missing fd (the module
 * backend falls back to it for a seat it does not know). With @b, the
 * wake-up waits in @b for the caller's flush.
 */
static void wake_sub(struct attachment *at, struct shmbus_queue *sq,
		     uint32_t qid, uint32_t gen, struct wake_batch *b)
{
	struct wake_table *t = &at->bus->wakes;
	uint64_t any = 0;
	unsigned n;

	smp_mb__after_atomic();
	for (unsigned w = 0; w < SHMBUS_SEAT_WORDS; w++)
		any |= READ_ONCE(sq->sleep_mask[w]);
	if (likely(!any))
		return;
	if (unlikely(!wake_table_has(t, qid, gen))) {
		struct sbc_seats req = { .qid = qid, .gen = gen };
		struct sbc_seats_reply rep;
		int fds[SBC_MAX_FDS];
		unsigned nfds = SBC_MAX_FDS;

		if (client_call(&at->bus->conn, SBC_SEATS, &req, sizeof(req),
				&rep, sizeof(rep), fds, &nfds) ||
		    nfds != rep.nr_seats) {
			for (unsigned i = 0; i < nfds; i++)
				close(fds[i]);
			return;		/* the daemon wakes nobody else */
		}
		if (wake_table_install(t, qid, gen, fds, nfds))
			return;
	}
	n = __wake_sleepers(t, sq, qid, gen, 1, b);
	if (n)
		slot_count(at->slot, SHMBUS_CTR_WAKEUPS, n);
}

/*
 * Subscription ring @r is full. Drop-oldest: take its oldest message and
 * drop our reference to it (counted in the subscription), then retry.
 * Otherwise wait for room as @w allows, without leaving the epoch section
 * (we are walking a fan-out array it protects). 0, or -ENOBUFS.
 */
static __attribute__((noinline)) int
sub_full(struct attachment *at, struct shmbus_queue *sq, uint32_t gen,
	 struct ring *r, uint32_t ref, struct pub_wait *w)
{
	const struct arena *a = &at->bus->arena;
	unsigned round = 0;

	if (READ_ONCE(sq->flags) & SHMBUS_QF_DROP_OLDEST) {
		for (int n = 0; n < 8; n++) {
			uint32_t old;

			if (ring_dequeue(r, &old) == 0) {
				if (claim_dropped(at, old))
					chunk_unref(a, at->slot, old);
				atomic_fetch_add(&sq->sub_dropped, 1);
				SHMBUS_PROBE3(drop, a->bus_id,
					      (uint32_t)(sq - a->queues), old);
			}
			if (ring_enqueue(r, ref) == 0)
				return 0;
		}
		return -ENOBUFS;
	}
	for (;;) {
		if (pub_wait_over(w) || READ_ONCE(sq->gen) != gen)
			return -ENOBUFS;
		backoff_wait(round++);
		if (ring_has_room(r) && ring_enqueue(r, ref) == 0)
			return 0;
	}
}

/* The topic's fan-out array, bounds-checked; NULL with *n 0 if none. */
static const struct shmbus_fanout *fanout_of(const struct arena *a,
					     const struct shmbus_queue *q,
					     uint32_t *n)
{
	/* acquire: pairs with the daemon's release store of a new array */
	uint64_t word = smp_load_acquire(&q->fanout);
	uint64_t off = a->ring_off + (word >> 16) * SHMBUS_RING_UNIT;
	uint64_t end = a->ring_off + a->ring_units * SHMBUS_RING_UNIT;

	*n = (uint32_t)(word & 0xffff);
	if (!*n || (word >> 16) >= a->ring_units ||
	    *n * sizeof(struct shmbus_fanout) > end - off) {
		*n = 0;
		return NULL;
	}
	return (const struct shmbus_fanout *)(a->base + off);
}

/*
 * Publish one message to a topic, inside an epoch section: one chunk,
 * SHARED, one reference per subscription ring it enters (and one for
 * the history), plus ours while we fan out. A subscription that stays
 * full (blocking policy, timeout over) misses it: counted there, and the
 * publish returns -ENOBUFS after delivering to all the others.
 */
static int topic_fanout(struct attachment *at, uint32_t ref,
			struct pub_wait *w);

static __attribute__((noinline)) int
topic_publish_one(struct attachment *at, const void *data, size_t len,
		  const struct pub_hdr *h, struct pub_wait *w)
{
	uint32_t ref;
	int err;

	if (len > at->msg_size)
		return -EMSGSIZE;
	err = chunk_for(at, data, len, h, w, &ref);
	return err ? err : topic_fanout(at, ref, w);
}

/* Fan chunk @ref (filled, ours) out to the topic's subscriptions. */
static int topic_fanout(struct attachment *at, uint32_t ref,
			struct pub_wait *w)
{
	const struct arena *a = &at->bus->arena;
	struct shmbus_chunk *c = chunk_at(a, ref);
	const struct shmbus_fanout *fo;
	struct wake_batch wb;
	uint32_t n;
	int err, ret = 0;

	c->refcnt = 1;				/* ours, while fanning out */
	/* SHARED before the first ring sees it: consumers leave the owner
	 * word alone, and no orphan sweep takes it for a lost publish */
	chunk_set(c, SHMBUS_CHUNK_SHARED, 0);
	if (READ_ONCE(at->q->history)) {
		uint32_t old;

		atomic_fetch_add(&c->refcnt, 1);
		while (ring_enqueue(&at->ring, ref) == -ENOBUFS) {
			if (ring_dequeue(&at->ring, &old) == 0)
				chunk_unref(a, at->slot, old);
		}
	}
	fo = fanout_of(a, at->q, &n);
	wb.n = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t qid = READ_ONCE(fo[i].qid), gen = READ_ONCE(fo[i].gen);
		struct shmbus_queue *sq = queue_at(a, qid);
		struct ring r;

		/* a subscription deleted since the array was made */
		if (!sq || READ_ONCE(sq->gen) != gen ||
		    !(READ_ONCE(sq->flags) & SHMBUS_QF_SUB) ||
		    arena_queue_ring(a, sq, &r))
			continue;
		atomic_fetch_add(&c->refcnt, 1);
		err = ring_enqueue(&r, ref);
		if (unlikely(err == -ENOBUFS))
			err = sub_full(at, sq, gen, &r, ref, w);
		if (unlikely(err)) {
			atomic_fetch_sub(&c->refcnt, 1);
			atomic_fetch_add(&sq->sub_dropped, 1);
			ret = -ENOBUFS;
			continue;
		}
		wake_sub(at, sq, qid, gen, &wb);
	}
	/* every sleeping subscriber at once: one ioctl with the module */
	wake_batch_flush(&at->bus->wakes, &wb);
	chunk_unref(a, at->slot, ref);		/* ours */
	slot_count(at->slot, SHMBUS_CTR_PUBLISHED, 1);
	return ret;
}

SHMBUS_API int shmbus_producer__publish(struct shmbus_producer *p,
					const void *data, size_t len,
					const struct shmbus_pub_opts *opts)
{
	struct attachment *at = &p->at;
	int64_t ts = pub_time(p);
	struct pub_hdr h;
	struct pub_wait w;
	uint64_t key;
	int err;

	if (unlikely(!data && len))
		return -EINVAL;
	if (unlikely(err = check_pub_opts(opts)))
		return err;
	if (unlikely(OPTS_GET(opts, priority, 0) >= p->at.nr_prio))
		return -EINVAL;
	err = dedup_check(p, opts, &key);
	if (unlikely(err))
		return err < 0 ? err : 0;
	w = pub_wait_of(OPTS_GET(opts, timeout_ns, 0));
	h = pub_hdr_of(p, opts, ts);
	if (unlikely(OPTS_GET(opts, delay_ns, 0) > 0)) {
		if (p->topic)
			return -EOPNOTSUPP;
		err = publish_delayed(p, data, len, &h,
				      OPTS_GET(opts, delay_ns, 0), &w);
		if (err && key)
			dedup_forget(p, key);
		return err;
	}
	epoch_enter(&at->bus->arena, at->slot);
	if (unlikely(!attachment_live(at))) {
		epoch_exit(at->slot);
		return -EIDRM;
	}
	err = likely(!p->topic) ? publish_one(at, data, len, &h, &w)
				: topic_publish_one(at, data, len, &h, &w);
	if (likely(!err))
		wake_after(at, 1);
	epoch_exit(at->slot);
	if (unlikely(err && key))
		dedup_forget(p, key);
	return err;
}

SHMBUS_API int shmbus_producer__publish_batch(struct shmbus_producer *p,
					      const struct iovec *iov,
					      unsigned n,
					      const struct shmbus_pub_opts *opts)
{
	struct attachment *at = &p->at;
	int64_t ts = pub_time(p);	/* one time for the whole batch */
	struct pub_wait w = pub_wait_of(OPTS_GET(opts, timeout_ns, 0));
	struct pub_hdr h;
	unsigned done = 0;
	int err = 0;

	if (!iov || !n || check_pub_opts(opts) ||
	    OPTS_GET(opts, priority, 0) >= p->at.nr_prio ||
	    OPTS_GET(opts, dedup_id, NULL))	/* one id for many messages */
		return -EINVAL;
	h = pub_hdr_of(p, opts, ts);
	if (unlikely(OPTS_GET(opts, delay_ns, 0) > 0)) {
		if (p->topic)
			return -EOPNOTSUPP;
		for (; done < n; done++) {
			if (!iov[done].iov_base && iov[done].iov_len)
				return done ? (int)done : -EINVAL;
			err = publish_delayed(p, iov[done].iov_base,
					      iov[done].iov_len, &h,
					      OPTS_GET(opts, delay_ns, 0), &w);
			if (err)
				break;
		}
		return done ? (int)done : err;
	}
	epoch_enter(&at->bus->arena, at->slot);
	if (unlikely(!attachment_live(at))) {
		epoch_exit(at->slot);
		return -EIDRM;
	}
	for (; done < n; done++) {
		if (!iov[done].iov_base && iov[done].iov_len) {
			err = -EINVAL;
			break;
		}
		err = !p->topic ? publish_one(at, iov[done].iov_base,
					      iov[done].iov_len, &h, &w)
				: topic_publish_one(at, iov[done].iov_base,
						    iov[done].iov_len, &h, &w);
		if (err)
			break;
	}
	if (done)
		wake_after(at, done);
	epoch_exit(at->slot);
	return done ? (int)done : err;
}

/*
 * Map a loaned buffer pointer back to its chunk: it must be exactly the
 * payload start of a chunk LOANED to this producer's slot.
 */
static struct shmbus_chunk *loaned_chunk(struct attachment *at, void *buf,
					 uint32_t *ref)
{
	const struct arena *a = &at->bus->arena;
	uint8_t *b = buf;

	for (unsigned pi = 0; pi < a->nr_pools; pi++) {
		const struct pool_view *pv = &a->pool[pi];
		uint8_t *lo = pv->base + SHMBUS_CHUNK_HDR;
		uint64_t off, idx;
		struct shmbus_chunk *c;

		if (b < lo || b >= pv->base + (uint64_t)pv->nr_chunks *
					      pv->chunk_size)
			continue;
		off = (uint64_t)(b - lo);
		if (off % pv->chunk_size)
			return NULL;
		idx = off / pv->chunk_size;
		c = (struct shmbus_chunk *)(pv->base + idx * pv->chunk_size);
		uint64_t o = READ_ONCE(c->owner);

		if (SHMBUS_OWNER_STATE(o) != SHMBUS_CHUNK_LOANED ||
		    SHMBUS_OWNER_SLOT(o) != at->slot_idx)
			return NULL;
		*ref = SHMBUS_REF(pi, (uint32_t)idx);
		return c;
	}
	return NULL;
}

SHMBUS_API void *shmbus_producer__loan(struct shmbus_producer *p,
				       size_t size, int64_t timeout_ns)
{
	struct attachment *at = &p->at;
	struct shmbus_chunk *c;
	uint32_t ref;
	int err;

	if (size > at->msg_size) {
		errno = EMSGSIZE;
		return NULL;
	}
	if (!attachment_live(at)) {
		errno = EIDRM;
		return NULL;
	}
	{
		struct pub_wait w = pub_wait_of(timeout_ns);

		err = alloc_wait(at, size, &ref, &w, false);
	}
	if (err) {
		if (err == -ENOMEM)
			slot_count(at->slot, SHMBUS_CTR_NOMEM, 1);
		errno = -err;
		return NULL;
	}
	c = chunk_at(&at->bus->arena, ref);
	return chunk_payload(c);
}

SHMBUS_API int shmbus_producer__commit(struct shmbus_producer *p, void *buf,
				       size_t len,
				       const struct shmbus_pub_opts *opts)
{
	struct attachment *at = &p->at;
	int64_t ts = pub_time(p);
	struct shmbus_chunk *c;
	uint64_t key;
	uint32_t ref;
	int err;

	if ((err = check_pub_opts(opts)))
		return err;
	if (OPTS_GET(opts, priority, 0) >= at->nr_prio)
		return -EINVAL;
	c = loaned_chunk(at, buf, &ref);
	if (!c || len > at->msg_size ||
	    len > at->bus->arena.pool[SHMBUS_REF_POOL(ref)].payload_max)
		return -EINVAL;
	if (OPTS_GET(opts, nr_attrs, 0)) {
		uint32_t as = 0;

		attr_size(opts->attrs, opts->nr_attrs, &as);
		/* the loan was sized for the payload alone */
		if (ALIGN_UP((uint64_t)len, 8) + as >
		    at->bus->arena.pool[SHMBUS_REF_POOL(ref)].payload_max)
			return -EMSGSIZE;
	}
	err = dedup_check(p, opts, &key);
	if (unlikely(err)) {
		if (err < 0)
			return err;
		pool_free(&at->bus->arena, at->slot, ref);	/* dropped */
		return 0;
	}
	{
		struct pub_hdr h = pub_hdr_of(p, opts, ts);

		if (unlikely(OPTS_GET(opts, delay_ns, 0) > 0)) {
			if (p->topic)
				return -EOPNOTSUPP;
			chunk_fill(at, c, (uint32_t)len, &h);
			err = hand_to_daemon(at, ref,
					     OPTS_GET(opts, delay_ns, 0));
			if (err) {	/* still the caller's */
				chunk_set(c, SHMBUS_CHUNK_LOANED, at->slot_idx);
				if (key)
					dedup_forget(p, key);
			}
			return err;
		}
		chunk_fill(at, c, (uint32_t)len, &h);
	}
	epoch_enter(&at->bus->arena, at->slot);
	if (unlikely(!attachment_live(at))) {
		epoch_exit(at->slot);
		if (key)
			dedup_forget(p, key);
		return -EIDRM;
	}
	/* QUEUED inside the section (see publish_one) */
	chunk_set(c, SHMBUS_CHUNK_QUEUED, at->slot_idx);
	if (unlikely(p->topic)) {
		struct pub_wait w = pub_wait_of(OPTS_GET(opts, timeout_ns, 0));

		/* the chunk is the bus's from here on, delivered or not */
		err = topic_fanout(at, ref, &w);
		epoch_exit(at->slot);
		return err;
	}
	{
		struct pub_wait w = pub_wait_of(OPTS_GET(opts, timeout_ns, 0));

		err = enqueue_wait(at, OPTS_GET(opts, priority, 0), ref, &w);
	}
	if (unlikely(err)) {
		/* still the caller's: it may retry or cancel */
		chunk_set(c, SHMBUS_CHUNK_LOANED, at->slot_idx);
		if (err == -ENOBUFS)
			slot_count(at->slot, SHMBUS_CTR_FULL, 1);
		epoch_exit(at->slot);
		if (key)
			dedup_forget(p, key);
		return err;
	}
	slot_count(at->slot, SHMBUS_CTR_PUBLISHED, 1);
	wake_after(at, 1);
	epoch_exit(at->slot);
	return 0;
}

SHMBUS_API void shmbus_producer__cancel(struct shmbus_producer *p, void *buf)
{
	struct shmbus_chunk *c;
	uint32_t ref;

	if (!p || !buf)
		return;
	c = loaned_chunk(&p->at, buf, &ref);
	if (c)
		pool_free(&p->at.bus->arena, p->at.slot, ref);
}

int producer_publish_rr(struct shmbus_producer *p, const void *data,
			size_t len, uint64_t corr_id, uint32_t reply_to,
			uint32_t reply_gen, int64_t timeout_ns)
{
	struct attachment *at = &p->at;
	struct pub_hdr h = { .corr_id = corr_id, .reply_to = reply_to,
			     .reply_gen = reply_gen, .ts = pub_time(p) };
	struct pub_wait w = pub_wait_of(timeout_ns);
	int err;

	if (p->ttl_ns)
		h.expires = (uint64_t)(now_ns() + p->ttl_ns);
	epoch_enter(&at->bus->arena, at->slot);
	if (unlikely(!attachment_live(at))) {
		epoch_exit(at->slot);
		return -EIDRM;
	}
	err = publish_one(at, data, len, &h, &w);
	if (!err)
		wake_after(at, 1);
	epoch_exit(at->slot);
	return err;
}

uint32_t producer_qid(const struct shmbus_producer *p)
{
	return p->at.qid;
}
