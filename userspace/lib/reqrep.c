// SPDX-License-Identifier: MIT
/*
 * reqrep.c - request-reply over queues, as NATS and AMQP RPC do it.
 *
 * A requester's bus handle owns one private reply queue ("_reply.PID.N.TAG",
 * declared with SBC_QUEUE_PRIVATE: the daemon deletes it when the
 * connection that declared it closes, so a dead requester leaves nothing
 * behind). A request is an ordinary message with reply_to = that queue
 * and a fresh correlation id; the reply is an ordinary message with the
 * same correlation id in the reply queue. Replies to requests that timed
 * out arrive later with an old id: they are dropped and counted.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "consumer.h"
#include "producer.h"

#define RR_TARGETS	8	/* request queues kept attached per bus */
#define RR_REPLY_LEN	64	/* reply queue capacity */
#define REPLY_CACHE	16	/* reply queues kept attached per replier */

struct rr_target {
	char name[SHMBUS_NAME_MAX];
	struct shmbus_producer *p;
};

struct reqrep {
	pthread_mutex_t lock;
	char name[SHMBUS_NAME_MAX];	/* our reply queue */
	struct shmbus_consumer *c;
	uint32_t qid, qgen;
	uint64_t next_corr;
	unsigned nt;
	struct rr_target t[RR_TARGETS];
};

static unsigned long rr_seq;	/* reply queue names, per process */

static int reqrep_init(struct shmbus *bus)
{
	SHMBUS_OPTS(shmbus_consumer_opts, co, .flags = SHMBUS_CONSUMER_AUTO_ACK);
	struct sbc_queue_declare req;
	struct sbc_queue_declare_reply rep;
	struct reqrep *rr;
	uint32_t tag;
	int err;

	rr = calloc(1, sizeof(*rr));
	if (!rr)
		return -ENOMEM;
	/* a random tag: another member cannot take our name before us
	 * (the daemon refuses a name that exists, never joins it) */
	if (getrandom(&tag, sizeof(tag), GRND_NONBLOCK) != sizeof(tag))
		tag = (uint32_t)now_ns();
	snprintf(rr->name, sizeof(rr->name), "_reply.%d.%lu.%08x",
		 (int)getpid(), atomic_fetch_add_relaxed(&rr_seq, 1), tag);
	memset(&req, 0, sizeof(req));
	memcpy(req.name, rr->name, sizeof(req.name));
	req.max_len = RR_REPLY_LEN;
	req.max_consumers = 1;
	req.flags = SBC_QUEUE_PRIVATE;
	err = client_call_flags(&bus->conn, CALL_RETRY, SBC_QUEUE_DECLARE,
				&req, sizeof(req), &rep, sizeof(rep), NULL,
				NULL);
	if (err)
		goto fail;
	rr->c = shmbus_consumer__new(bus, rr->name, &co);
	if (!rr->c) {
		err = -errno;
		goto fail;
	}
	rr->qid = consumer_qid(rr->c) + 1;
	rr->qgen = rep.gen;
	rr->next_corr = ((uint64_t)getpid() << 32) | 1;
	pthread_mutex_init(&rr->lock, NULL);
	bus->rr = rr;
	return 0;
fail:
	free(rr);
	return err;
}

void reqrep_free(struct shmbus *bus)
{
	struct reqrep *rr = bus->rr;

	bus->rr = NULL;
	for (unsigned i = 0; i < rr->nt; i++)
		shmbus_producer__free(rr->t[i].p);
	shmbus_consumer__free(rr->c);
	if (check_pid(bus) == 0)
		shmbus__queue_delete(bus, rr->name);
	pthread_mutex_destroy(&rr->lock);
	free(rr);
}

static struct shmbus_producer *target(struct shmbus *bus, struct reqrep *rr,
				      const char *queue, int *err)
{
	struct shmbus_producer *p;
	unsigned i;

	for (i = 0; i < rr->nt; i++)
		if (!strncmp(rr->t[i].name, queue, SHMBUS_NAME_MAX))
			return rr->t[i].p;
	p = shmbus_producer__new(bus, queue, NULL);
	if (!p) {
		*err = -errno;
		return NULL;
	}
	if (rr->nt == RR_TARGETS) {	/* evict the oldest */
		shmbus_producer__free(rr->t[0].p);
		memmove(&rr->t[0], &rr->t[1], (RR_TARGETS - 1) * sizeof(rr->t[0]));
		rr->nt--;
	}
	snprintf(rr->t[rr->nt].name, SHMBUS_NAME_MAX, "%s", queue);
	rr->t[rr->nt].p = p;
	rr->nt++;
	return p;
}

/* Does any consumer hold a seat on queue @qid? (the daemon's seat map;
 * seats are handed out from the first word on, so one load, mostly) */
static bool has_consumers(const struct arena *a, uint32_t qid)
{
	const struct shmbus_queue *q = queue_at(a, qid);

	for (unsigned w = 0; q && w < SHMBUS_SEAT_WORDS; w++)
		if (READ_ONCE(q->seat_used[w]))
			return true;
	return false;
}

/* Copy reply @m out as shmbus__request_opts() returns it. */
static ssize_t take_reply(const struct shmbus_msg *m, void *reply,
			  size_t cap, struct shmbus_request_opts *o)
{
	int32_t st = shmbus_msg__reply_status(m);

	o->reply_len = m->len;
	if (st) {		/* an error reply, or a garbled status */
		o->status = st > 0 ? st : EBADMSG;
		memcpy(reply, m->data, MIN((size_t)m->len, cap));
		return -EREMOTEIO;
	}
	if (m->len > cap)
		return -EMSGSIZE;
	memcpy(reply, m->data, m->len);
	return m->len;
}

static ssize_t request(struct shmbus *bus, const char *queue,
		       const void *body, size_t len, void *reply, size_t cap,
		       struct shmbus_request_opts *o)
{
	struct shmbus_producer *p;
	struct reqrep *rr;
	int64_t deadline;
	uint64_t corr;
	ssize_t ret;
	int err = 0;

	if (!bus || !queue || (!body && len) || (!reply && cap))
		return -EINVAL;
	if ((err = check_pid_fast(bus)))
		return err;
	if (!bus->rr) {
		static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;

		if ((err = check_pid(bus)))	/* it declares a queue */
			return err;
		pthread_mutex_lock(&init_lock);
		err = bus->rr ? 0 : reqrep_init(bus);
		pthread_mutex_unlock(&init_lock);
		if (err)
			return err;
	}
	rr = bus->rr;
	deadline = deadline_of(o->timeout_ns);
	pthread_mutex_lock(&rr->lock);
	p = target(bus, rr, queue, &err);
	if (!p) {
		ret = err;
		goto out;
	}
	if (!has_consumers(&bus->arena, producer_qid(p))) {
		ret = -EHOSTUNREACH;	/* no responders */
		goto out;
	}
	corr = rr->next_corr++;
	ret = producer_publish_rr(p, body, len, corr, rr->qid, rr->qgen,
				  o->timeout_ns, NULL, 0);
	if (ret)
		goto out;
	for (;;) {
		struct shmbus_msg m;

		/* one clock read for the whole request: the deadline */
		err = consumer_receive_until(rr->c, &m, deadline);
		if (err) {
			ret = err == -EAGAIN ? -ETIMEDOUT : err;
			break;
		}
		if (m.corr_id != corr) {
			/* the reply to a request that gave up waiting */
			consumer_count(rr->c, SHMBUS_CTR_DROPPED);
			shmbus_consumer__release(rr->c, &m);
			continue;
		}
		ret = take_reply(&m, reply, cap, o);
		shmbus_consumer__release(rr->c, &m);
		break;
	}
out:
	pthread_mutex_unlock(&rr->lock);
	return ret;
}

SHMBUS_API ssize_t shmbus__request(struct shmbus *bus, const char *queue,
				   const void *body, size_t len, void *reply,
				   size_t cap, int64_t timeout_ns)
{
	struct shmbus_request_opts o = { .sz = sizeof(o),
					 .timeout_ns = timeout_ns };

	return request(bus, queue, body, len, reply, cap, &o);
}

SHMBUS_API ssize_t shmbus__request_opts(struct shmbus *bus, const char *queue,
					const void *body, size_t len,
					void *reply, size_t cap,
					struct shmbus_request_opts *opts)
{
	struct shmbus_request_opts o = { .sz = sizeof(o) };
	ssize_t ret;

	if (!opts || !OPTS_VALID(opts, shmbus_request_opts))
		return -EINVAL;
	o.timeout_ns = OPTS_GET(opts, timeout_ns, 0);
	ret = request(bus, queue, body, len, reply, cap, &o);
	opts_copy_out(opts, &o, sizeof(o));
	return ret;
}

SHMBUS_API int32_t shmbus_msg__reply_status(const struct shmbus_msg *msg)
{
	char num[12];
	const void *v;
	size_t len;
	long st;
	char *end;

	if (shmbus_msg__attr(msg, SHMBUS_REPLY_STATUS_ATTR, &v, &len))
		return 0;
	if (!len || len >= sizeof(num) || memchr(v, '\0', len))
		return -EBADMSG;
	memcpy(num, v, len);
	num[len] = '\0';
	st = strtol(num, &end, 10);
	if (*end || num[0] < '1' || num[0] > '9' || st > INT32_MAX)
		return -EBADMSG;
	return (int32_t)st;
}

/* ---- the replier's side ------------------------------------------------ */

struct reply_cache {
	uint32_t qid, qgen;
	struct shmbus_producer *p;
};

void reply_cache_free(void *cache)
{
	struct reply_cache *rc = cache;

	if (!rc)
		return;
	for (unsigned i = 0; i < REPLY_CACHE; i++)
		shmbus_producer__free(rc[i].p);
	free(rc);
}

/* Is cache entry @e still the live queue it was attached to? */
static bool entry_live(const struct arena *a, const struct reply_cache *e)
{
	const struct shmbus_queue *q = queue_at(a, e->qid - 1);

	return e->p && q && READ_ONCE(q->gen) == e->qgen;
}

/*
 * A producer for reply queue @qid1 (qid + 1) of generation @want: a
 * replier keeps the last REPLY_CACHE reply queues attached in *@cachep
 * (attaching costs a round trip to the daemon), replacing gone ones
 * first, else entry @next.
 */
static struct shmbus_producer *reply_producer(struct shmbus *bus,
					      void **cachep, unsigned next,
					      uint32_t qid1, uint32_t want,
					      int *err)
{
	const struct shmbus_queue *q = queue_at(&bus->arena, qid1 - 1);
	struct reply_cache *rc = *cachep, *victim;
	char name[SHMBUS_NAME_MAX];
	uint32_t g;

	if (!q) {
		*err = -EINVAL;
		return NULL;
	}
	if (!rc) {
		rc = calloc(REPLY_CACHE, sizeof(*rc));
		if (!rc) {
			*err = -ENOMEM;
			return NULL;
		}
		*cachep = rc;
	}
	g = smp_load_acquire(&q->gen);		/* [QGEN] */
	if (!SHMBUS_QGEN_LIVE(g) || g != want) {
		/* the requester is gone (its queue id may serve another
		 * queue by now) */
		*err = -ENOENT;
		return NULL;
	}
	for (unsigned i = 0; i < REPLY_CACHE; i++)
		if (rc[i].p && rc[i].qid == qid1 && rc[i].qgen == g)
			return rc[i].p;
	memcpy(name, q->name, sizeof(name));
	name[sizeof(name) - 1] = '\0';
	smp_rmb();				/* [QDEL] then re-check */
	if (READ_ONCE(q->gen) != g) {
		*err = -ENOENT;
		return NULL;
	}
	victim = &rc[next % REPLY_CACHE];
	for (unsigned i = 0; i < REPLY_CACHE; i++) {
		if (!entry_live(&bus->arena, &rc[i])) {
			victim = &rc[i];
			break;
		}
	}
	shmbus_producer__free(victim->p);
	victim->p = shmbus_producer__new(bus, name, NULL);
	if (!victim->p) {
		*err = -errno;
		return NULL;
	}
	if (producer_qid(victim->p) != qid1 - 1 ||
	    READ_ONCE(q->gen) != want) {
		/* the name moved on between our look and the attach */
		shmbus_producer__free(victim->p);
		victim->p = NULL;
		*err = -ENOENT;
		return NULL;
	}
	victim->qid = qid1;
	victim->qgen = g;
	return victim->p;
}

/* Publish the reply to @req: plain (@status 0), or an error reply. */
static int reply_with(struct shmbus_producer *p, const struct shmbus_msg *req,
		      const void *data, size_t len, int32_t status)
{
	char num[12];
	struct shmbus_attr a = { .key = SHMBUS_REPLY_STATUS_ATTR,
				 .value = num };
	int err;

	if (status)
		a.value_len = (uint32_t)snprintf(num, sizeof(num), "%d",
						 status);
	err = producer_publish_rr(p, data, len, req->corr_id, 0, 0, 0, &a,
				  status ? 1 : 0);
	return err == -EIDRM ? -ENOENT : err;
}

static int consumer_reply(struct shmbus_consumer *c,
			  const struct shmbus_msg *req, int32_t status,
			  const void *data, size_t len)
{
	struct shmbus_producer *p;
	int err = 0;

	if (!c || !req || !req->reply_to || (!data && len) || status < 0)
		return -EINVAL;
	p = reply_producer(consumer_bus(c), consumer_reply_cache(c),
			   c_rr_next(c), req->reply_to, req->__reply_gen,
			   &err);
	return p ? reply_with(p, req, data, len, status) : err;
}

SHMBUS_API int shmbus_consumer__reply(struct shmbus_consumer *c,
				      const struct shmbus_msg *req,
				      const void *data, size_t len)
{
	return consumer_reply(c, req, 0, data, len);
}

SHMBUS_API int shmbus_consumer__reply_error(struct shmbus_consumer *c,
					    const struct shmbus_msg *req,
					    int32_t status, const void *data,
					    size_t len)
{
	return status > 0 ? consumer_reply(c, req, status, data, len) : -EINVAL;
}

static int bus_reply(struct shmbus *bus, const struct shmbus_msg *req,
		     int32_t status, const void *data, size_t len)
{
	struct shmbus_producer *p;
	int err = 0;

	if (!bus || !req || !req->reply_to || (!data && len) || status < 0)
		return -EINVAL;
	if ((err = check_pid_fast(bus)))
		return err;
	pthread_mutex_lock(&bus->reply_lock);
	p = reply_producer(bus, &bus->replies, bus->replies_next++,
			   req->reply_to, req->__reply_gen, &err);
	if (p)
		err = reply_with(p, req, data, len, status);
	pthread_mutex_unlock(&bus->reply_lock);
	return err;
}

SHMBUS_API int shmbus__reply(struct shmbus *bus, const struct shmbus_msg *req,
			     const void *data, size_t len)
{
	return bus_reply(bus, req, 0, data, len);
}

SHMBUS_API int shmbus__reply_error(struct shmbus *bus,
				   const struct shmbus_msg *req,
				   int32_t status, const void *data, size_t len)
{
	return status > 0 ? bus_reply(bus, req, status, data, len) : -EINVAL;
}

int pub_reply_to(const struct shmbus *bus, const char *name,
		 struct pub_hdr *h)
{
	const struct shmbus_queue *q;
	uint32_t g;
	int qid;

	if (strnlen(name, SHMBUS_NAME_MAX) >= SHMBUS_NAME_MAX)
		return -EINVAL;
	qid = arena_find_queue(&bus->arena, name);
	if (qid < 0)
		return qid;
	q = queue_at(&bus->arena, (uint32_t)qid);
	g = smp_load_acquire(&q->gen);		/* [QGEN] */
	if (!SHMBUS_QGEN_LIVE(g) || strncmp(q->name, name, SHMBUS_NAME_MAX))
		return -ENOENT;
	/* a reply goes into the queue's own ring: a topic fans out, a
	 * durable queue takes its messages through its intake */
	if (READ_ONCE(q->flags) & (SHMBUS_QF_TOPIC | SHMBUS_QF_PERSISTENT))
		return -EINVAL;
	smp_rmb();				/* [QDEL] then re-check */
	if (READ_ONCE(q->gen) != g)
		return -ENOENT;
	h->reply_to = (uint32_t)qid + 1;
	h->reply_gen = g;
	return 0;
}

/* A handler failed request @m with @err: answer with that status and
 * the text it left in @buf, or strerror's. 0 if answered. */
static int serve_error(struct shmbus_consumer *c, const struct shmbus_msg *m,
		       int err, char *buf, size_t cap)
{
	size_t len;
	int r;

	buf[cap - 1] = '\0';
	if (!buf[0])
		snprintf(buf, cap, "%s", strerror(err));
	/* an explanation larger than the reply queue takes is cut: the
	 * status gets there in any case */
	for (len = strlen(buf);; len /= 2) {
		r = shmbus_consumer__reply_error(c, m, err > 0 ? err : EIO,
						 buf, len);
		if (r != -EMSGSIZE || !len)
			return r;
	}
}

SHMBUS_API int shmbus_consumer__serve(struct shmbus_consumer *c,
				      shmbus_handler_fn fn, void *ctx,
				      unsigned max, int64_t idle_timeout_ns)
{
	char *buf;
	size_t cap = 65536;
	unsigned done = 0;
	int err = 0;

	if (!c || !fn)
		return -EINVAL;
	buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	while (!max || done < max) {
		struct shmbus_msg m;
		ssize_t n;

		err = shmbus_consumer__receive_view(c, &m, idle_timeout_ns);
		if (err == -ETIMEDOUT || err == -EAGAIN) {
			err = 0;
			break;
		}
		if (err)
			break;
		if (!m.reply_to) {
			shmbus_consumer__release(c, &m);
			continue;
		}
		buf[0] = '\0';
		n = fn(ctx, &m, buf, cap);
		if (n < 0) {
			/* answered (a requester that went away has no one
			 * to answer), then out of the way: not retried */
			done += !serve_error(c, &m, (int)-n, buf, cap);
			if (shmbus_consumer__reject(c, &m))
				shmbus_consumer__release(c, &m);
			continue;
		}
		/* a requester that went away has no one to answer */
		(void)shmbus_consumer__reply(c, &m, buf, (size_t)MIN((size_t)n, cap));
		shmbus_consumer__release(c, &m);
		done++;
	}
	free(buf);
	return err ? err : (int)done;
}
