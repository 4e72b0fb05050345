// SPDX-License-Identifier: MIT
/*
 * control.c - the client side of the daemon's control calls on queues and
 * topics (declare, delete, unsubscribe), and the queries the arena
 * answers alone (queue info and list, pool info).
 */
#include <string.h>

#include "bus.h"
#include "probes.h"
#include "pool.h"

/*
 * Start a request that names a queue: zero @req (whose first field is the
 * name) and set the name. Returns 0, -EINVAL, or -ECHILD after fork.
 */
int queue_request(const struct shmbus *bus, void *req, size_t len,
		  const char *name)
{
	int err;

	if (!bus)
		return -EINVAL;
	if ((err = check_pid(bus)))
		return err;
	memset(req, 0, len);
	return name_set(req, name, "queue");
}

SHMBUS_API int shmbus__queue_declare(struct shmbus *bus, const char *name,
				     const struct shmbus_queue_opts *opts)
{
	struct sbc_queue_declare req;
	struct sbc_queue_declare_reply rep;
	int err;

	if (!OPTS_VALID(opts, shmbus_queue_opts))
		return -EINVAL;
	if ((err = queue_request(bus, &req, sizeof(req), name)))
		return err;
	req.max_len = OPTS_GET(opts, max_len, 0);
	req.msg_size = OPTS_GET(opts, msg_size, 0);
	req.max_consumers = OPTS_GET(opts, max_consumers, 0);
	{
		uint32_t f = OPTS_GET(opts, flags, 0);

		if (f & ~(SHMBUS_QUEUE_EXPIRE_TO_DLQ | SHMBUS_QUEUE_CHECKSUM |
			  SHMBUS_QUEUE_DURABLE))
			return -EINVAL;
		req.flags = (f & SHMBUS_QUEUE_EXPIRE_TO_DLQ
			     ? SBC_QUEUE_EXPIRE_DLQ : 0) |
			    (f & SHMBUS_QUEUE_CHECKSUM ? SBC_QUEUE_CHECKSUM : 0) |
			    (f & SHMBUS_QUEUE_DURABLE ? SBC_QUEUE_DURABLE : 0);
		req.sync = OPTS_GET(opts, sync, 0);
		if (OPTS_GET(opts, sync_interval_ns, 0) < 0 ||
		    req.sync > SHMBUS_SYNC_NEVER ||
		    (!(f & SHMBUS_QUEUE_DURABLE) &&
		     (req.sync || OPTS_GET(opts, sync_interval_ns, 0))))
			return -EINVAL;
		req.sync_interval_ns =
			(uint64_t)OPTS_GET(opts, sync_interval_ns, 0);
	}
	{
		int64_t lease = OPTS_GET(opts, lease_ns, 0),
			ttl = OPTS_GET(opts, ttl_ns, 0),
			bi = OPTS_GET(opts, backoff_init_ns, 0),
			bm = OPTS_GET(opts, backoff_max_ns, 0);
		const char *dlq = OPTS_GET(opts, dead_letter_queue, NULL);

		if (lease < 0 || ttl < 0 || bi < 0 || bm < 0)
			return -EINVAL;
		req.lease_ns = (uint64_t)lease;
		req.ttl_ns = (uint64_t)ttl;
		req.backoff_init_ns = (uint64_t)bi;
		req.backoff_max_ns = (uint64_t)bm;
		req.backoff_mult_milli = OPTS_GET(opts, backoff_mult_milli, 0);
		req.max_deliveries = OPTS_GET(opts, max_deliveries, 0);
		if (OPTS_GET(opts, dedup_window_ns, 0) < 0)
			return -EINVAL;
		req.dedup_window_ns = (uint64_t)OPTS_GET(opts, dedup_window_ns, 0);
		req.overflow = OPTS_GET(opts, overflow, 0);
		req.priorities = OPTS_GET(opts, priorities, 0);
		if (req.priorities > SHMBUS_MAX_PRIO)
			return -EINVAL;
		if (req.overflow > SHMBUS_OVERFLOW_DROP_OLDEST)
			return -EINVAL;
		if (dlq && name_set(req.dlq, dlq, "dead-letter queue"))
			return -EINVAL;
	}
	err = client_call_flags(&bus->conn, CALL_RETRY, SBC_QUEUE_DECLARE,
				&req, sizeof(req), &rep, sizeof(rep), NULL,
				NULL);
	if (err == -EEXIST && !*shmbus_errmsg()) {
		/* say which settings differ (0 = the daemon's default); a
		 * daemon's reason (another owner, private) says it better */
		int qid = arena_find_queue(&bus->arena, req.name);
		const struct shmbus_queue *q = queue_at(&bus->arena, qid);

		if (q)
			pr_warn("queue '%s' exists with other settings (the "
				"daemon's log says which); it has max_len %u, "
				"msg_size %u, max_consumers %u", req.name,
				READ_ONCE(q->max_len), READ_ONCE(q->msg_size),
				READ_ONCE(q->nr_seats));
	}
	if (err)
		return err;
	/* the bus's name last: a tracer keeping names current (the
	 * monitor's map "names") needs it beside the ids */
	SHMBUS_PROBE5(queue_declare, bus->arena.bus_id, rep.qid, req.name,
		      rep.created, bus->arena.sb->name);
	return rep.created ? 1 : 0;
}

SHMBUS_API int shmbus__topic_declare(struct shmbus *bus, const char *name,
				     const struct shmbus_topic_opts *opts)
{
	struct sbc_queue_declare req;
	struct sbc_queue_declare_reply rep;
	int err;

	if (!OPTS_VALID(opts, shmbus_topic_opts))
		return -EINVAL;
	if ((err = queue_request(bus, &req, sizeof(req), name)))
		return err;
	/* no empty token: no pattern could name it (pattern_check()) */
	if (strstr(req.name, "..") || req.name[strlen(req.name) - 1] == '.') {
		errmsg_set("invalid topic name: dot-separated tokens that are "
			   "not empty");
		return -EINVAL;
	}
	if (OPTS_GET(opts, flags, 0) & ~SHMBUS_QUEUE_CHECKSUM)
		return -EINVAL;
	req.flags = SBC_QUEUE_TOPIC |
		    (OPTS_GET(opts, flags, 0) & SHMBUS_QUEUE_CHECKSUM
		     ? SBC_QUEUE_CHECKSUM : 0);
	req.msg_size = OPTS_GET(opts, msg_size, 0);
	req.max_len = OPTS_GET(opts, history, 0);
	if (req.max_len > SHMBUS_RING_MAX_CAP)
		return -EINVAL;
	err = client_call_flags(&bus->conn, CALL_RETRY, SBC_QUEUE_DECLARE,
				&req, sizeof(req), &rep, sizeof(rep), NULL,
				NULL);
	if (err)
		return err;
	return rep.created ? 1 : 0;
}

SHMBUS_API int shmbus__unsubscribe(struct shmbus *bus, const char *pattern,
				   const char *group)
{
	struct sbc_unsubscribe req;
	int err;

	if (!bus || !pattern || !group)
		return -EINVAL;
	if ((err = check_pid(bus)))
		return err;
	memset(&req, 0, sizeof(req));
	if (name_set(req.group, group, "group"))
		return -EINVAL;
	if (strlen(pattern) >= SHMBUS_NAME_MAX) {
		errmsg_set("topic pattern of 64 bytes or more");
		return -EINVAL;
	}
	strcpy(req.pattern, pattern);
	if (pattern_check(req.pattern))
		return -EINVAL;
	return client_call_flags(&bus->conn, CALL_WAIT, SBC_UNSUBSCRIBE, &req,
				 sizeof(req), NULL, 0, NULL, NULL);
}

SHMBUS_API int shmbus__queue_delete(struct shmbus *bus, const char *name)
{
	struct sbc_queue_delete req;
	int qid, err;

	if ((err = queue_request(bus, &req, sizeof(req), name)))
		return err;
	qid = arena_find_queue(&bus->arena, req.name);
	err = client_call_flags(&bus->conn, CALL_WAIT, SBC_QUEUE_DELETE, &req,
				sizeof(req), NULL, 0, NULL, NULL);
	if (!err)
		SHMBUS_PROBE4(queue_delete, bus->arena.bus_id, qid,
			      req.name, bus->arena.sb->name);
	return err;
}

/* shmbus_queue_info.stat[] is the arena's counters, index for index */
_Static_assert((int)SHMBUS_STAT_PUBLISHED == (int)SHMBUS_CTR_PUBLISHED &&
	       (int)SHMBUS_STAT_DELIVERED == (int)SHMBUS_CTR_DELIVERED &&
	       (int)SHMBUS_STAT_ACKED == (int)SHMBUS_CTR_ACKED &&
	       (int)SHMBUS_STAT_NACKED == (int)SHMBUS_CTR_NACKED &&
	       (int)SHMBUS_STAT_REDELIVERED == (int)SHMBUS_CTR_REDELIVERED &&
	       (int)SHMBUS_STAT_DEADLETTERED == (int)SHMBUS_CTR_DEADLETTERED &&
	       (int)SHMBUS_STAT_EXPIRED == (int)SHMBUS_CTR_EXPIRED &&
	       (int)SHMBUS_STAT_DROPPED == (int)SHMBUS_CTR_DROPPED &&
	       (int)SHMBUS_STAT_FULL == (int)SHMBUS_CTR_FULL &&
	       (int)SHMBUS_STAT_NOMEM == (int)SHMBUS_CTR_NOMEM &&
	       (int)SHMBUS_STAT_CORRUPT == (int)SHMBUS_CTR_CORRUPT &&
	       (int)SHMBUS_STAT_WAKEUPS == (int)SHMBUS_CTR_WAKEUPS &&
	       (int)SHMBUS_STAT_SLEEPS == (int)SHMBUS_CTR_SLEEPS &&
	       (int)SHMBUS_STAT_RECLAIMED == (int)SHMBUS_CTR_RECLAIMED &&
	       (int)SHMBUS_STAT_LEASE_EXPIRED == (int)SHMBUS_CTR_LEASE_EXPIRED &&
	       (int)SHMBUS_STAT_DUPLICATES == (int)SHMBUS_CTR_DUPLICATE &&
	       (int)SHMBUS_STAT__MAX == (int)SHMBUS_NR_COUNTERS &&
	       (int)SHMBUS_DL_MAX_DELIVERIES == (int)SHMBUS_DLR_MAX_DELIVERIES &&
	       (int)SHMBUS_DL_EXPIRED == (int)SHMBUS_DLR_EXPIRED &&
	       (int)SHMBUS_DL_REJECTED == (int)SHMBUS_DLR_REJECTED &&
	       (int)SHMBUS_DL_OVERFLOW == (int)SHMBUS_DLR_OVERFLOW &&
	       (int)SHMBUS_DL_CHECKSUM == (int)SHMBUS_DLR_CHECKSUM &&
	       (int)SHMBUS_QUEUE_EXPIRE_TO_DLQ == (int)SBC_QUEUE_EXPIRE_DLQ,
	       "public statistics and arena counters disagree");

/* A persistent queue's producers are its intake's: their counts (and
 * the dedup window, which is the intake's table) are the queue's. */
static void intake_counters(const struct arena *a,
			    const struct shmbus_queue *q,
			    struct shmbus_queue_info *info)
{
	const struct shmbus_queue *iq;
	uint64_t ctr[SHMBUS_NR_COUNTERS];
	uint32_t i = READ_ONCE(q->intake), g, np = 0;
	static const unsigned producer_side[] = {
		SHMBUS_CTR_PUBLISHED, SHMBUS_CTR_FULL, SHMBUS_CTR_NOMEM,
		SHMBUS_CTR_DUPLICATE, SHMBUS_CTR_WAKEUPS,
	};

	if (!(READ_ONCE(q->flags) & SHMBUS_QF_PERSISTENT) || !i ||
	    !(iq = queue_at(a, i - 1)) ||
	    !(READ_ONCE(iq->flags) & SHMBUS_QF_INTAKE))
		return;
	g = smp_load_acquire(&iq->gen);	/* [QGEN] */
	if (!SHMBUS_QGEN_LIVE(g))
		return;
	arena_queue_counters(a, i - 1, g, ctr, &np, NULL, NULL);
	info->producers += np;
	for (unsigned k = 0; k < sizeof(producer_side) / sizeof(producer_side[0]); k++)
		info->stat[producer_side[k]] += ctr[producer_side[k]];
	/* messages in the intake wait too: journaled in a moment */
	info->depth += MIN(ring_depth_hint(READ_ONCE(iq->tail),
					   READ_ONCE(iq->head)),
			   (uint64_t)READ_ONCE(iq->ring_cap));
	if (READ_ONCE(iq->dedup_cap))
		info->dedup_window_ns = (int64_t)READ_ONCE(iq->dedup_window_ns);
}

SHMBUS_API int shmbus__queue_journal(struct shmbus *bus, const char *name,
				     struct shmbus_journal_info *info)
{
	struct shmbus_journal_info ji = { .sz = sizeof(ji) };
	const struct shmbus_queue *q, *iq;
	uint32_t g, i;
	int qid;

	if (!bus || !name || !info || !OPTS_VALID(info, shmbus_journal_info))
		return -EINVAL;
	qid = arena_find_queue(&bus->arena, name);
	if (qid < 0)
		return qid;
	q = &bus->arena.queues[qid];
	g = smp_load_acquire(&q->gen);	/* [QGEN] */
	i = READ_ONCE(q->intake);
	if (!(READ_ONCE(q->flags) & SHMBUS_QF_PERSISTENT) || !i ||
	    !(iq = queue_at(&bus->arena, i - 1)) ||
	    !(READ_ONCE(iq->flags) & SHMBUS_QF_INTAKE))
		return -ENODATA;
	ji.sync = READ_ONCE(iq->sync);
	ji.sync_interval_ns = (int64_t)READ_ONCE(iq->j_interval_ns);
	ji.segments = READ_ONCE(iq->j_segments);
	ji.bytes = READ_ONCE(iq->j_bytes);
	ji.live = READ_ONCE(iq->j_live);
	ji.written = READ_ONCE(iq->j_written);
	ji.syncs = READ_ONCE(iq->j_syncs);
	ji.failed = READ_ONCE(iq->j_failed);
	ji.replayed = READ_ONCE(iq->j_replayed);
	ji.corrupt = READ_ONCE(iq->j_corrupt);
	/* [QDEL] a queue deleted while we read is gone */
	smp_rmb();
	if (READ_ONCE(q->gen) != g)
		return -ENOENT;
	opts_copy_out(info, &ji, sizeof(ji));
	return 0;
}

SHMBUS_API int shmbus__bus_journal(struct shmbus *bus,
				   struct shmbus_bus_journal_info *info)
{
	struct shmbus_bus_journal_info bj = { .sz = sizeof(bj) };
	const struct shmbus_sb *sb;

	if (!bus || !info || !OPTS_VALID(info, shmbus_bus_journal_info))
		return -EINVAL;
	sb = bus->arena.sb;
	/* the daemon's own numbers, each read once: a snapshot taken while
	 * a sync is counted may be one sync apart between them */
	bj.syncs = READ_ONCE(sb->syncs);
	bj.sync_ns = READ_ONCE(sb->sync_ns);
	for (unsigned i = 0; i < SHMBUS_SYNC_HIST_BUCKETS; i++)
		bj.sync_hist[i] = READ_ONCE(sb->sync_hist[i]);
	bj.recovery_ns = READ_ONCE(sb->recovery_ns);
	bj.recovered = READ_ONCE(sb->recovered);
	opts_copy_out(info, &bj, sizeof(bj));
	return 0;
}

static int fill_info(const struct arena *a, uint32_t qid,
		     struct shmbus_queue_info *info)
{
	const struct shmbus_queue *q = &a->queues[qid];
	/* [QGEN] the fields read below are this gen's or newer */
	uint32_t g = smp_load_acquire(&q->gen);
	uint64_t ctr[SHMBUS_NR_COUNTERS];

	if (!SHMBUS_QGEN_LIVE(g))
		return -ENOENT;
	memset(info, 0, sizeof(*info));
	if (READ_ONCE(q->flags) & SHMBUS_QF_INTAKE)
		return -ENOENT;		/* listed as its queue */
	memcpy(info->name, q->name, sizeof(info->name));
	info->name[sizeof(info->name) - 1] = '\0';
	info->id = qid;
	info->capacity = READ_ONCE(q->ring_cap);
	info->max_len = READ_ONCE(q->max_len);
	info->msg_size = READ_ONCE(q->msg_size);
	info->max_consumers = READ_ONCE(q->nr_seats);
	info->depth = ring_depth_hint(READ_ONCE(q->tail), READ_ONCE(q->head));
	if (info->depth > info->capacity)
		info->depth = info->capacity;
	{
		uint32_t np = READ_ONCE(q->nr_prio);

		for (uint32_t l = 1; l < np && l < SHMBUS_MAX_PRIO; l++)
			info->depth += MIN(ring_depth_hint(
				READ_ONCE(q->prio_tail[l - 1]),
				READ_ONCE(q->prio_head[l - 1])),
				(uint64_t)info->capacity);
	}
	/* claimed by consumers, not taken yet: still waiting */
	info->depth += arena_queue_claimed(a, qid, g);
	info->lease_ns = (int64_t)READ_ONCE(q->lease_ns);
	info->ttl_ns = (int64_t)READ_ONCE(q->ttl_ns);
	info->backoff_init_ns = (int64_t)READ_ONCE(q->backoff_init_ns);
	info->backoff_max_ns = (int64_t)READ_ONCE(q->backoff_max_ns);
	info->backoff_mult_milli = READ_ONCE(q->backoff_mult_milli);
	info->max_deliveries = READ_ONCE(q->max_deliveries);
	{
		uint32_t f = READ_ONCE(q->flags);

		info->kind = f & SHMBUS_QF_TOPIC ? SHMBUS_TOPIC
			     : f & SHMBUS_QF_SUB ? SHMBUS_SUBSCRIPTION
						 : SHMBUS_QUEUE;
		info->history = READ_ONCE(q->history);
		info->overflow = READ_ONCE(q->overflow);
		info->priorities = READ_ONCE(q->nr_prio);
		info->sub_dropped = READ_ONCE(q->sub_dropped);
	}
	info->dedup_window_ns = READ_ONCE(q->dedup_cap)
				? (int64_t)READ_ONCE(q->dedup_window_ns) : 0;
	{
		uint32_t f = READ_ONCE(q->flags);

		info->flags = (f & SHMBUS_QF_EXPIRE_DLQ
			       ? SHMBUS_QUEUE_EXPIRE_TO_DLQ : 0) |
			      (f & SHMBUS_QF_CHECKSUM
			       ? SHMBUS_QUEUE_CHECKSUM : 0) |
			      (f & SHMBUS_QF_DAMAGED
			       ? SHMBUS_QUEUE_DAMAGED : 0) |
			      (f & SHMBUS_QF_PERSISTENT
			       ? SHMBUS_QUEUE_DURABLE : 0);
	}
	{
		uint32_t d = READ_ONCE(q->dlq_qid);
		const struct shmbus_queue *dq = d ? queue_at(a, d - 1) : NULL;

		/* the name, if the DLQ is still the queue it was */
		if (dq && READ_ONCE(dq->gen) == READ_ONCE(q->dlq_gen)) {
			memcpy(info->dead_letter_queue, dq->name,
			       sizeof(info->dead_letter_queue));
			info->dead_letter_queue[63] = '\0';
		}
	}
	arena_queue_counters(a, qid, g, ctr, &info->producers,
			     &info->consumers, &info->in_flight);
	for (unsigned i = 0; i < SHMBUS_NR_COUNTERS && i < SHMBUS_STAT__MAX; i++)
		info->stat[i] = ctr[i];
	intake_counters(a, q, info);
	/* [QDEL] pairs with the daemon's gen bump at delete: a queue
	 * deleted while we read is reported as gone */
	smp_rmb();
	return READ_ONCE(q->gen) == g ? 0 : -ENOENT;
}

SHMBUS_API int shmbus__queue_info(struct shmbus *bus, const char *name,
				  struct shmbus_queue_info *info)
{
	int qid;

	if (!bus || !name || !info)
		return -EINVAL;
	qid = arena_find_queue(&bus->arena, name);
	if (qid < 0)
		return qid;
	return fill_info(&bus->arena, qid, info);
}

/* The chunks of the classes that hold a @msg_size-byte message (an
 * allocation takes the smallest that fits, then larger ones), and how
 * many of them are free. */
static void fit(const struct shmbus *bus, uint32_t msg_size,
		struct shmbus_queue_gauges *g)
{
	for (unsigned i = 0; i < bus->arena.nr_pools; i++) {
		struct shmbus_pool_info pi;

		if (shmbus__pool_info(bus, i, &pi) || pi.payload < msg_size)
			continue;
		/* what the pools may grow to: room the bus makes on demand */
		g->fit += pi.chunks_max;
		g->fit_free += (uint64_t)pi.free + pi.cached +
			       (pi.chunks_max - pi.chunks);
	}
	/* read while chunks move between free lists and caches */
	g->fit_free = MIN(g->fit_free, g->fit);
}

SHMBUS_API int shmbus__queue_gauges(struct shmbus *bus, const char *name,
				    struct shmbus_queue_gauges *gauges)
{
	struct shmbus_queue_gauges g = { .sz = sizeof(g) };
	const struct shmbus_queue *q;
	uint32_t gen, intake;
	int qid;

	if (!bus || !name || !gauges ||
	    !OPTS_VALID(gauges, shmbus_queue_gauges))
		return -EINVAL;
	qid = arena_find_queue(&bus->arena, name);
	if (qid < 0)
		return qid;
	q = &bus->arena.queues[qid];
	gen = smp_load_acquire(&q->gen);	/* [QGEN] */
	g.delayed = READ_ONCE(q->timed);
	fit(bus, READ_ONCE(q->msg_size), &g);
	/* a persistent queue's producers are bound to its intake */
	intake = (READ_ONCE(q->flags) & SHMBUS_QF_PERSISTENT) ?
		 READ_ONCE(q->intake) : 0;
	for (uint32_t i = 0; i < bus->arena.max_slots; i++) {
		const struct shmbus_slot *sl = &bus->arena.slots[i];
		uint32_t sq;

		/* [SLOT] */
		if (smp_load_acquire(&sl->state) != SHMBUS_SLOT_ACTIVE ||
		    READ_ONCE(sl->role) != SHMBUS_ROLE_PRODUCER ||
		    !READ_ONCE(sl->blocked))
			continue;
		sq = READ_ONCE(sl->qid);
		if (sq == (uint32_t)qid || (intake && sq == intake - 1))
			g.blocked_producers++;
	}
	/* [QDEL] a queue deleted while we read is gone */
	smp_rmb();
	if (READ_ONCE(q->gen) != gen)
		return -ENOENT;
	opts_copy_out(gauges, &g, sizeof(g));
	return 0;
}

SHMBUS_API int shmbus__queue_list(struct shmbus *bus,
				  struct shmbus_queue_info *out, unsigned max)
{
	struct shmbus_queue_info tmp;
	unsigned n = 0;

	if (!bus || (max && !out))
		return -EINVAL;
	for (uint32_t qid = 0; qid < bus->arena.max_queues; qid++) {
		if (fill_info(&bus->arena, qid, n < max ? &out[n] : &tmp))
			continue;
		n++;
	}
	return (int)n;
}

SHMBUS_API int shmbus__pool_count(const struct shmbus *bus)
{
	return bus ? (int)bus->arena.nr_pools : -EINVAL;
}

SHMBUS_API int shmbus__pool_info(const struct shmbus *bus, unsigned i,
				 struct shmbus_pool_info *info)
{
	const struct arena *a;
	uint64_t cached = 0;

	if (!bus || !info)
		return -EINVAL;
	a = &bus->arena;
	if (i >= a->nr_pools)
		return -ENOENT;
	memset(info, 0, sizeof(*info));
	info->payload = a->pool[i].payload_max;
	info->chunk_size = a->pool[i].chunk_size;
	info->chunks_max = a->pool[i].nr_max;
	info->chunks = info->chunks_max;
	if (a->grows) {
		/* the daemon's count, which it keeps there */
		uint32_t live = READ_ONCE(a->pool[i].desc->nr_live);

		if (live && live < info->chunks_max)
			info->chunks = live;
	}
	info->free = (uint32_t)MIN(READ_ONCE(a->pool[i].desc->free_count),
				   (uint64_t)info->chunks);
	for (uint32_t s = 0; s < a->max_slots; s++) {
		/* [SLOT] */
		if (smp_load_acquire(&a->slots[s].state) != SHMBUS_SLOT_ACTIVE)
			continue;
		cached += MIN(READ_ONCE(a->slots[s].cache[i].count),
			      SHMBUS_SLOT_CACHE);
	}
	info->cached = (uint32_t)MIN(cached, (uint64_t)info->chunks);
	return 0;
}
