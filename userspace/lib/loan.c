// SPDX-License-Identifier: MIT
/*
 * loan.c - zero-copy publishes: loan a chunk (the caller writes the
 * message into the arena itself), then commit it into the queue, or
 * cancel it. A failed commit leaves the buffer loaned to the caller.
 */
#include "producer.h"

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
	if ((err = check_pid_fast(at->bus))) {
		errno = -err;
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
	/* a loan in our hands names no dedup key of a past life: the daemon
	 * settles a dead producer's keys by the chunks it holds */
	c->dedup_key = 0;
	return chunk_payload(c);
}

/*
 * Claim dedup key @key of loaned chunk @ref, filled (dedup.c), waiting for
 * a publish of the same key under way as @opts' timeout allows. 0: go
 * ahead (*@e the claim, or NULL); 1: a duplicate, the chunk freed;
 * -EBUSY: still under way (the chunk stays the caller's).
 */
static int commit_claim(struct shmbus_producer *p, uint32_t ref,
			uint64_t key, const struct shmbus_pub_opts *opts,
			struct shmbus_dedup **e)
{
	struct pub_wait w = pub_wait_of(OPTS_GET(opts, timeout_ns, 0));
	unsigned round = 0;

	for (;;) {
		int r = dedup_claim(p, key, e);

		if (r == DEDUP_GO) {
			if (unlikely(p->failpoint))
				dedup_failpoint(p, "dedup-pending");
			return 0;
		}
		if (r == DEDUP_DUP) {
			slot_count(p->at.slot, SHMBUS_CTR_DUPLICATE, 1);
			pool_free(&p->at.bus->arena, p->at.slot, ref);
			return 1;
		}
		if (pub_wait_over(&w)) {
			errmsg_set("dedup id still being published by another "
				   "publish (or by a producer that died, until "
				   "the daemon settles it)");
			return -EBUSY;
		}
		backoff_wait(round++);
	}
}

SHMBUS_API int shmbus_producer__commit(struct shmbus_producer *p, void *buf,
				       size_t len,
				       const struct shmbus_pub_opts *opts)
{
	struct attachment *at = &p->at;
	int64_t ts = pub_time(p);
	struct shmbus_dedup *e = NULL;
	struct shmbus_chunk *c;
	uint64_t key;
	uint32_t ref;
	int err;

	if ((err = check_pub_opts(opts) ?: check_pid_fast(at->bus)))
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
	if (unlikely(err))
		return err;
	if (unlikely(OPTS_GET(opts, delay_ns, 0) > 0) && p->topic)
		return -EOPNOTSUPP;
	{
		struct pub_hdr h = pub_hdr_of(p, opts, ts);

		h.dedup_key = key;
		if (unlikely(OPTS_GET(opts, reply_to, NULL)) &&
		    (err = pub_reply_to(at->bus, opts->reply_to, &h)))
			return err;	/* still loaned */
		chunk_fill(at, c, (uint32_t)len, &h);
	}
	if (unlikely(key)) {
		err = commit_claim(p, ref, key, opts, &e);
		if (err)
			return err > 0 ? 0 : err;
	}
	if (unlikely(OPTS_GET(opts, delay_ns, 0) > 0)) {
		err = hand_to_daemon(at, ref, OPTS_GET(opts, delay_ns, 0));
		if (err) {	/* still the caller's */
			if (e)
				dedup_abandon(p, e);
			chunk_set(c, SHMBUS_CHUNK_LOANED, at->slot_idx);
		} else if (e) {
			dedup_commit(p, e);
		}
		return confirm_after(p, err);
	}
	epoch_enter(&at->bus->arena, at->slot);
	if (unlikely(err = attachment_check(at))) {
		epoch_exit(at->slot);
		if (e)
			dedup_abandon(p, e);
		return err;
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
		/* the key first: the daemon settles a dead producer's keys
		 * from the chunks it still holds */
		if (e)
			dedup_abandon(p, e);
		/* still the caller's: it may retry or cancel */
		chunk_set(c, SHMBUS_CHUNK_LOANED, at->slot_idx);
		if (err == -ENOBUFS)
			slot_count(at->slot, SHMBUS_CTR_FULL, 1);
		epoch_exit(at->slot);
		return err;
	}
	if (unlikely(e)) {
		if (unlikely(p->failpoint))
			dedup_failpoint(p, "dedup-queued");
		dedup_commit(p, e);
	}
	slot_count(at->slot, SHMBUS_CTR_PUBLISHED, 1);
	wake_after(at, 1);
	epoch_exit(at->slot);
	return confirm_after(p, 0);
}

SHMBUS_API void shmbus_producer__cancel(struct shmbus_producer *p, void *buf)
{
	struct shmbus_chunk *c;
	uint32_t ref;

	if (!p || !buf || check_pid_fast(p->at.bus))
		return;
	c = loaned_chunk(&p->at, buf, &ref);
	if (c)
		pool_free(&p->at.bus->arena, p->at.slot, ref);
}
