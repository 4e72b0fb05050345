// SPDX-License-Identifier: MIT
/*
 * publish.c - copy publishes, single and batched (shmbus_producer__publish,
 * __publish_batch, and the request-reply publish), and delayed publishes,
 * which hand the filled chunk to the daemon.
 *
 * A publish is: take a chunk (slot cache, else the pool's shared list),
 * write header and payload, then one cmpxchg on a ring cell makes the
 * message visible (ring.h), then one load of the queue's sleep mask
 * decides whether a consumer needs an eventfd write (wake.h). A process
 * killed anywhere in this sequence leaves no half-written message in the
 * ring and blocks no other producer: before the cmpxchg the chunk is only
 * ours, after it the message is complete.
 */
#include "producer.h"
#include "probes.h"

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
	err = chunk_for(at, data, len, h, w, &ref, true);
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

/*
 * A delayed publish: the filled chunk goes to the daemon, which holds it
 * (state TIMED) and puts it into the queue when the delay is over. Costs a
 * round trip to the daemon; nothing is published if the daemon refuses.
 */
__attribute__((noinline)) int
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
	err = chunk_for(at, data, len, h, w, &ref, false);
	if (err)
		return err;
	err = hand_to_daemon(at, ref, delay_ns);
	if (err)
		pool_free(&at->bus->arena, at->slot, ref);
	return err;
}

/*
 * A publish with a dedup key (dedup.c): the chunk is filled first (its
 * header names the key), then the key is claimed, then the message goes
 * into the ring (or to the daemon, delayed), and only then does the key
 * count as seen. A publish of the same key under way (or died, until the
 * daemon settles it) is waited for as @w allows: -EBUSY after that.
 * Returns 0, 1 for a duplicate (dropped), or -errno.
 */
static __attribute__((noinline)) int
publish_dedup(struct shmbus_producer *p, const void *data, size_t len,
	      const struct pub_hdr *h, int64_t delay_ns, struct pub_wait *w,
	      bool more)
{
	struct attachment *at = &p->at;
	const struct arena *a = &at->bus->arena;
	bool in_epoch = !delay_ns;	/* a hand-over is a round trip */
	unsigned round = 0;
	int64_t pts = 0;
	uint64_t id = 0;

	if (len > at->msg_size)
		return -EMSGSIZE;
	for (;;) {
		struct shmbus_dedup *e;
		uint32_t ref;
		int r, err;

		if (in_epoch)
			epoch_enter(a, at->slot);
		if (!attachment_live(at)) {
			err = -EIDRM;
			goto out;
		}
		err = chunk_for(at, data, len, h, w, &ref, in_epoch);
		if (err)
			goto out;
		if (in_epoch)
			chunk_set(chunk_at(a, ref), SHMBUS_CHUNK_QUEUED,
				  at->slot_idx);
		r = dedup_claim(p, h->dedup_key, &e);
		if (r != DEDUP_GO) {
			pool_free(a, at->slot, ref);
			if (in_epoch)
				epoch_exit(at->slot);
			if (r == DEDUP_DUP) {
				slot_count(at->slot, SHMBUS_CTR_DUPLICATE, 1);
				return 1;	/* dropped: nothing to confirm */
			}
			if (pub_wait_over(w)) {
				errmsg_set("dedup id still being published by "
					   "another publish (or by a producer "
					   "that died, until the daemon "
					   "settles it)");
				return -EBUSY;
			}
			wake_owed(at);
			backoff_wait(round++);
			continue;
		}
		if (unlikely(p->failpoint))
			dedup_failpoint(p, "dedup-pending");
		/* for the probe, as publish_one() */
		if (in_epoch && SHMBUS_PROBE_ON(publish)) {
			pts = now_ns();
			id = chunk_at(a, ref)->id;
		}
		err = in_epoch ? enqueue_wait(at, h->prio, ref, w)
			       : hand_to_daemon(at, ref, delay_ns);
		if (err) {
			/* forgotten before the chunk goes: the daemon reads
			 * a dead producer's chunks to settle its keys */
			if (e)
				dedup_abandon(p, e);
			pool_free(a, at->slot, ref);
			if (err == -ENOBUFS)
				slot_count(at->slot, SHMBUS_CTR_FULL, 1);
			goto out;
		}
		if (unlikely(p->failpoint))
			dedup_failpoint(p, "dedup-queued");
		if (e)
			dedup_commit(p, e);
		if (in_epoch) {
			slot_count(at->slot, SHMBUS_CTR_PUBLISHED, 1);
			SHMBUS_PROBE6_IF(pts, publish, at_bus(at), at->qid, id,
					 len, ring_depth_hint(
						READ_ONCE(at->q->tail),
						READ_ONCE(at->q->head)), pts);
			wake_or_defer(at, 1, more);
		}
out:
		if (in_epoch)
			epoch_exit(at->slot);
		return err;
	}
}

/* A priority the queue has no level for: -EINVAL, saying which it has. */
static int __attribute__((cold)) prio_out_of_range(const struct shmbus_producer *p,
						  uint32_t prio)
{
	errmsg_set("priority %u out of range: the queue has %u level%s "
		   "(0..%u)", prio, p->at.nr_prio, p->at.nr_prio == 1 ? "" : "s",
		   p->at.nr_prio - 1);
	return -EINVAL;
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
	bool more;
	int err;

	if (unlikely(!data && len))
		return -EINVAL;
	if (unlikely(err = check_pub_opts(opts) ?: check_pid_fast(at->bus)))
		return err;
	more = unlikely(OPTS_GET(opts, flags, 0) & SHMBUS_PUB_MORE) &&
	       !p->topic;
	if (unlikely(OPTS_GET(opts, priority, 0) >= p->at.nr_prio))
		return prio_out_of_range(p, OPTS_GET(opts, priority, 0));
	err = dedup_check(p, opts, &key);
	if (unlikely(err))
		return err;
	w = pub_wait_of(OPTS_GET(opts, timeout_ns, 0));
	h = pub_hdr_of(p, opts, ts);
	if (unlikely(OPTS_GET(opts, reply_to, NULL)) &&
	    (err = pub_reply_to(at->bus, opts->reply_to, &h)))
		return err;
	if (unlikely(OPTS_GET(opts, delay_ns, 0) > 0) && p->topic)
		return -EOPNOTSUPP;
	if (unlikely(key)) {
		h.dedup_key = key;
		err = publish_dedup(p, data, len, &h,
				    MAX(OPTS_GET(opts, delay_ns, 0), 0), &w,
				    more);
		if (err < 0 || (err > 0 && !more))
			wake_owed(at);
		return err > 0 ? 0 : confirm_after(p, err);
	}
	if (unlikely(OPTS_GET(opts, delay_ns, 0) > 0)) {
		wake_owed(at);
		return confirm_after(p, publish_delayed(p, data, len, &h,
						OPTS_GET(opts, delay_ns, 0), &w));
	}
	epoch_enter(&at->bus->arena, at->slot);
	if (unlikely(err = attachment_check(at))) {
		epoch_exit(at->slot);
		return err;
	}
	err = likely(!p->topic) ? publish_one(at, data, len, &h, &w)
				: topic_publish_one(at, data, len, &h, &w);
	if (likely(!err))
		wake_or_defer(at, 1, more);
	else
		wake_owed(at);
	epoch_exit(at->slot);
	return confirm_after(p, err);
}

/*
 * A batch into a persistent queue's intake: message by message (each
 * one's id noted for the confirm), then one wait for the confirm of all.
 */
static __attribute__((noinline)) int
publish_batch_durable(struct shmbus_producer *p, const struct iovec *iov,
		      unsigned n, const struct shmbus_pub_opts *opts)
{
	bool async = p->async_confirm;
	unsigned done = 0;
	int err = 0;

	p->async_confirm = true;
	for (; done < n; done++) {
		if (!iov[done].iov_base && iov[done].iov_len) {
			err = -EINVAL;
			break;
		}
		err = shmbus_producer__publish(p, iov[done].iov_base,
					       iov[done].iov_len, opts);
		if (err)
			break;
	}
	p->async_confirm = async;
	if (!done)
		return err;
	if (!async && (err = confirm_wait(p, p->confirm_timeout)))
		return err;
	return (int)done;
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
	    OPTS_GET(opts, dedup_id, NULL))	/* one id for many messages */
		return -EINVAL;
	if (OPTS_GET(opts, priority, 0) >= p->at.nr_prio)
		return prio_out_of_range(p, OPTS_GET(opts, priority, 0));
	if ((err = check_pid_fast(at->bus)))
		return err;
	if (unlikely(p->durable))
		return publish_batch_durable(p, iov, n, opts);
	h = pub_hdr_of(p, opts, ts);
	if (unlikely(OPTS_GET(opts, reply_to, NULL)) &&
	    (err = pub_reply_to(at->bus, opts->reply_to, &h)))
		return err;
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
	if (unlikely(err = attachment_check(at))) {
		epoch_exit(at->slot);
		return err;
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

int producer_publish_rr(struct shmbus_producer *p, const void *data,
			size_t len, uint64_t corr_id, uint32_t reply_to,
			uint32_t reply_gen, int64_t timeout_ns,
			const struct shmbus_attr *attrs, uint32_t nr_attrs)
{
	struct attachment *at = &p->at;
	struct pub_hdr h = { .corr_id = corr_id, .reply_to = reply_to,
			     .reply_gen = reply_gen, .ts = pub_time(p),
			     .attrs = attrs, .nr_attrs = nr_attrs };
	struct pub_wait w = pub_wait_of(timeout_ns);
	int err;

	if (nr_attrs && (err = attr_size(attrs, nr_attrs, &h.attr_size)))
		return err;
	if ((err = check_pid_fast(at->bus)))
		return err;

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
	return confirm_after(p, err);
}
