/* SPDX-License-Identifier: MIT */
/*
 * producer.h - what the producer's files share: the handle, the header
 * fields and the wait budget of a publish, the inline steps of the publish
 * fast path (check the options, take a chunk, fill it, enqueue it, wake a
 * sleeper), and the out-of-line paths each file provides to the others.
 *
 *   producer.c  the handle: new, free, binding to the queue
 *   publish.c   copy publishes, single and batched; delayed publishes
 *   loan.c      zero-copy publishes: loan, commit, cancel
 *   dedup.c     idempotency keys
 *   fanout.c    topics: one message into every subscription's ring
 *   overflow.c  a full ring or empty pools: wait, drop the oldest,
 *               dead-letter
 */
#ifndef SHMBUS_PRODUCER_H
#define SHMBUS_PRODUCER_H

#include <string.h>

#include "bus.h"
#include "epoch.h"
#include "pool.h"
#include "attr.h"

struct shmbus_producer {
	struct attachment at;
	bool stamp;		/* SHMBUS_PRODUCER_TIMESTAMP */
	int64_t ttl_ns;		/* the queue's TTL, 0 = none */
	bool topic;		/* a topic: publishes fan out */
	struct shmbus_dedup *dedup;	/* the queue's dedup table, or NULL */
	uint32_t dedup_mask;
	int64_t dedup_window;
	const char *failpoint;		/* $SHMBUS_FAILPOINT, or NULL */
	/* a persistent queue: we are bound to its intake (confirm.c) */
	bool durable;
	bool async_confirm;		/* SHMBUS_PRODUCER_ASYNC_CONFIRM */
	int64_t confirm_timeout;	/* a publish's own wait */
	uint64_t confirm_target;	/* our last id in the intake */
	uint32_t failed_seen;		/* slot failed count we reported */
};

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
	uint64_t dedup_key;	/* the publish's dedup key, 0 = none */
};

/*
 * How long a publish may wait for room or memory. The deadline is computed
 * on the first wait only: a publish that does not wait reads no clock.
 */
struct pub_wait {
	int64_t timeout;	/* ns; 0 never waits, < 0 waits for ever */
	int64_t deadline;	/* 0 until first needed */
};

/* ---- producer.c ---------------------------------------------------- */

uint32_t producer_qid(const struct shmbus_producer *p);

/* ---- publish.c ----------------------------------------------------- */

/* Publish with a reply-to queue (qid + 1) and a correlation id, and
 * @nr_attrs attributes. */
int producer_publish_rr(struct shmbus_producer *p, const void *data,
			size_t len, uint64_t corr_id, uint32_t reply_to,
			uint32_t reply_gen, int64_t timeout_ns,
			const struct shmbus_attr *attrs, uint32_t nr_attrs);

/* ---- reqrep.c ------------------------------------------------------ */

/*
 * The pub_opts reply_to @name as h->reply_to (its qid + 1) and
 * h->reply_gen: 0, -ENOENT (no such queue), -EINVAL (a topic or a durable
 * queue: a reply could not go there).
 */
int pub_reply_to(const struct shmbus *bus, const char *name,
		 struct pub_hdr *h);

/*
 * A delayed publish: the filled chunk @ref goes to the daemon, which holds
 * it (state TIMED) and puts it into the queue when @delay_ns is over.
 * 0 or -errno; on error the chunk is still ours.
 */
int hand_to_daemon(struct attachment *at, uint32_t ref, int64_t delay_ns);

/* ---- confirm.c ----------------------------------------------------- */

/* Wait up to @timeout_ns until the daemon confirmed p->confirm_target. */
int confirm_wait(struct shmbus_producer *p, int64_t timeout_ns);

/*
 * After a publish that returned @err (>= 0: it went in): a producer of a
 * persistent queue notes its last id and, unless its confirms are
 * asynchronous, waits for the confirm. One predictable branch for every
 * other producer.
 */
static inline int confirm_after(struct shmbus_producer *p, int err)
{
	int c;

	if (likely(!p->durable) || err < 0)
		return err;
	/* our last id: the slot's id block is ours alone (O) */
	p->confirm_target = READ_ONCE(p->at.slot->id_next) - 1;
	if (p->async_confirm)
		return err;
	c = confirm_wait(p, p->confirm_timeout);
	return c ? c : err;
}

/* ---- dedup.c ------------------------------------------------------- */

/* Bind the queue's dedup table, if it has a sound one (else no dedup). */
void dedup_bind(struct shmbus_producer *p);

/* The table key of idempotency key @id (never 0). */
uint64_t dedup_key_of(const char *id);

enum { DEDUP_GO, DEDUP_DUP, DEDUP_BUSY };

/*
 * Claim @key for a publish whose chunk is filled and ours (its header
 * names the key). DEDUP_GO: publish it; *@e is the entry now PENDING for
 * us (to commit or abandon), or NULL (no room in reach: no dedup).
 * DEDUP_DUP: seen within the window, drop it. DEDUP_BUSY: another publish
 * of the key is under way (or died and awaits the daemon): wait, retry.
 */
int dedup_claim(struct shmbus_producer *p, uint64_t key,
		struct shmbus_dedup **e);

/* The message of the claim @e is in the queue: the key counts as seen. */
void dedup_commit(struct shmbus_producer *p, struct shmbus_dedup *e);

/* The publish of the claim @e failed: forget the key. Before the chunk
 * is freed (the daemon reads a dead producer's chunks to settle). */
void dedup_abandon(struct shmbus_producer *p, struct shmbus_dedup *e);

/* $SHMBUS_FAILPOINT names kill point @name: die here, as kill -9 would.
 * For the crash tests; only on publishes with a dedup id. */
void dedup_failpoint(const struct shmbus_producer *p, const char *name);

/* ---- fanout.c ------------------------------------------------------ */

/*
 * Publish one message to a topic, inside an epoch section. 0, or -ENOBUFS
 * if a subscription stayed full and missed it, or the error of taking a
 * chunk.
 */
int topic_publish_one(struct attachment *at, const void *data, size_t len,
		      const struct pub_hdr *h, struct pub_wait *w);

/* Fan chunk @ref (filled, ours) out to the topic's subscriptions. */
int topic_fanout(struct attachment *at, uint32_t ref, struct pub_wait *w);

/*
 * Wake one sleeping consumer of subscription (qid, gen); with @b, the
 * wake-up waits in @b for the caller's flush.
 */
void wake_sub(struct attachment *at, struct shmbus_queue *sq, uint32_t qid,
	      uint32_t gen, struct wake_batch *b);

/* ---- overflow.c ---------------------------------------------------- */

/* Is the wait @w allows over? Reads the clock only for a finite timeout. */
bool pub_wait_over(struct pub_wait *w);

/*
 * The ring was full; wait for room as @w allows. Called inside an epoch
 * section, which it leaves while it waits.
 */
int enqueue_slow(struct attachment *at, struct ring *r, uint32_t ref,
		 struct pub_wait *w);

/* Why a publish waits (the pub_blocked probe's third argument). */
enum {
	PUB_BLOCKED_FULL = 1,	/* the queue (or a subscription) is full */
	PUB_BLOCKED_NOMEM = 2,	/* the bus's pools have no free chunk */
};

/*
 * A publish starts waiting for room in queue @qid: its slot's blocked
 * word, and the probe. Returns the start time for pub_blocked_end() (0
 * when untraced).
 */
int64_t pub_blocked_begin(struct attachment *at, uint32_t qid, uint32_t why);
void pub_blocked_end(struct attachment *at, uint32_t qid, uint32_t why,
		     int64_t t, int err);

/* The ring is full and the queue's policy is drop-oldest: make room. */
int enqueue_drop_oldest(struct attachment *at, struct ring *r, uint32_t ref);

/*
 * The pools were empty; wait as @w allows. With @in_epoch, leaves the
 * caller's epoch section while it waits.
 */
int alloc_slow(struct attachment *at, size_t size, uint32_t *ref,
	       struct pub_wait *w, bool in_epoch);

/*
 * Claim message @old, taken from a ring to drop it: true if it is ours
 * (HELD, or a topic message's reference).
 */
bool claim_dropped(struct attachment *at, uint32_t old);

/* ---- the publish fast path (inline) -------------------------------- */

/*
 * The publish time, if asked for. Read first thing in a publish: the
 * vDSO's rdtscp waits for loads in flight, so reading it after writing the
 * chunk would also wait for the chunk's cache misses.
 */
static inline int64_t pub_time(const struct shmbus_producer *p)
{
	return p->stamp ? now_ns() : 0;
}

/*
 * The dedup key of a publish with @opts: 0 = none (*key 0) or the key,
 * -EOPNOTSUPP = the queue has no window.
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
	return 0;
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
	c->qid = 0;			/* topic_fanout() names its topic */
	c->prio = h->prio;
	if (unlikely(h->dedup_key))	/* header line 1: only then */
		c->dedup_key = h->dedup_key;
	if (unlikely(at->checksum)) {
		/* last: over the header fields above and the payload (for
		 * a loan, the caller wrote it before its commit) */
		c->flags = SHMBUS_CF_CHECKSUM;
		c->checksum = chunk_checksum(c, len, h->attr_size);
	}
}

static inline int check_pub_opts(const struct shmbus_pub_opts *opts)
{
	uint32_t size;

	if (unlikely(!OPTS_VALID(opts, shmbus_pub_opts)))
		return -EINVAL;
	if (unlikely(OPTS_GET(opts, flags, 0) & ~SHMBUS_PUB_MORE) ||
	    unlikely(OPTS_GET(opts, delay_ns, 0) < 0))
		return -EINVAL;
	if (unlikely(OPTS_GET(opts, nr_attrs, 0)))
		return attr_size(opts->attrs, opts->nr_attrs, &size);
	return 0;
}

static inline struct pub_wait pub_wait_of(int64_t timeout_ns)
{
	return (struct pub_wait){ .timeout = timeout_ns };
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

/* Take a chunk, waiting while the pools are empty as @w allows. */
static inline int alloc_wait(struct attachment *at, size_t size,
			     uint32_t *ref, struct pub_wait *w, bool in_epoch)
{
	int err = alloc_chunk(at, size, ref);

	if (likely(err != -ENOMEM) || w->timeout == 0)
		return err;
	return alloc_slow(at, size, ref, w, in_epoch);
}

/*
 * A chunk holding @data and the header fields @h, ours in *@ref (queue,
 * topic and delayed publishes alike); @in_epoch as for alloc_wait().
 * 0 or -errno. Always inline: it is the middle of the publish fast path,
 * and publish.c also calls it from the delayed path.
 */
static __always_inline int chunk_for(struct attachment *at, const void *data,
				     size_t len, const struct pub_hdr *h,
				     struct pub_wait *w, uint32_t *ref,
				     bool in_epoch)
{
	struct shmbus_chunk *c;
	int err;

	err = alloc_wait(at, msg_bytes(len, h), ref, w, in_epoch);
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

/* After @n messages entered the queue: wake sleeping consumers, for
 * them and for those whose wake-up SHMBUS_PUB_MORE deferred. Returns the
 * number woken. */
static inline unsigned wake_after(struct attachment *at, unsigned n)
{
	unsigned w;

	n += at->deferred;
	at->deferred = 0;
	if (!n)
		return 0;
	w = wake_after_publish(&at->bus->wakes, at->q, at->qid, at->qgen, n);
	if (w)
		slot_count(at->slot, SHMBUS_CTR_WAKEUPS, w);
	return w;
}

/* wake_after(), or with @more (SHMBUS_PUB_MORE) owe it: the ring
 * cmpxchg's order is kept by the fence wake_after() will have. */
static inline void wake_or_defer(struct attachment *at, unsigned n,
				 bool more)
{
	if (more)
		at->deferred += n;
	else
		wake_after(at, n);
}

/* Before a publish waits for room or memory, or returns an error: the
 * wake-ups it owes, since the consumers it would wait for sleep. */
static inline void wake_owed(struct attachment *at)
{
	if (unlikely(at->deferred))
		wake_after(at, 0);
}

#endif /* SHMBUS_PRODUCER_H */
