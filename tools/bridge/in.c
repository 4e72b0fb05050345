// SPDX-License-Identifier: MIT
/*
 * in.c - an in route: a broker queue forwarded into a local queue or
 * topic, at least once.
 *
 * The broker has at most the route's window of deliveries out to us
 * (basic.qos). Each is copied, published locally, and acked at the broker
 * only once the local publish succeeded and, for a durable local queue,
 * was confirmed (shmbus_producer__confirm_wait): one ack with "multiple"
 * covers every delivery up to the last one published. A local queue that
 * is full holds the copies here (the broker then sends no more: that is
 * the back-pressure) and the route keeps reading its link meanwhile,
 * trying the queue again after a wait that doubles up to IN_FULL_MAX_MS. A
 * delivery the bus can never take (too large, not allowed) is rejected
 * without requeue: the broker dead-letters it if the queue has a
 * dead-letter exchange. A lost link, or a bridge killed -9, leaves the
 * unacked deliveries to the broker, which delivers them again: the
 * message id, used as the local dedup id, drops the copies a local queue
 * with a dedup window has already seen.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge.h"

#define IN_TARGETS	16	/* local topics kept attached (to-topic) */
#define IN_FULL_MAX_MS	32	/* a full local queue is tried this often */

struct target {
	char name[BR_LOCAL_MAX];
	struct shmbus_producer *p;
	bool used;		/* published since the last confirm */
};

struct in {
	struct br_worker *w;
	const struct br_route *r;
	struct br_link *l;
	struct br_msg *pend;	/* copied deliveries: a ring of window */
	unsigned head, n;
	uint64_t last_tag;	/* the last delivery published locally */
	bool unacked;		/* published locally, not yet acked there */
	uint64_t unacked_n;	/* how many */
	int64_t unacked_ns;	/* when the first of them was published */
	bool no_dedup;		/* the local queue has no dedup window */
	bool logged_drop;
	bool logged_large;
	int64_t next_lag;	/* when to look at the broker queue again */
	int full_ms;		/* the next wait while the local side is full */
	unsigned nt;
	struct target t[IN_TARGETS];
};

static void count(uint64_t *c, uint64_t n)
{
	atomic_add_relaxed(c, n);
}

/* The local name a delivery goes to: to, or to-topic with {key} put in.
 * 0, or -ENAMETOOLONG: it does not fit (cut, it would name another). */
static int local_name(const struct in *in, const struct br_msg *m,
		      char *buf, size_t cap)
{
	const char *t = in->r->to_queue[0] ? in->r->to_queue : in->r->to_topic;
	size_t n = 0;

	while (*t && n + 1 < cap) {
		if (!strncmp(t, "{key}", 5)) {
			size_t k = strlen(m->routing_key);

			if (n + k >= cap) {
				buf[n] = '\0';
				return -ENAMETOOLONG;
			}
			memcpy(buf + n, m->routing_key, k);
			n += k;
			t += 5;
			continue;
		}
		buf[n++] = *t++;
	}
	buf[n] = '\0';
	return *t ? -ENAMETOOLONG : 0;
}

/* A producer of @name (a topic is declared if it does not exist), or
 * NULL and errno. */
static struct target *target(struct in *in, const char *name)
{
	SHMBUS_OPTS(shmbus_producer_opts, po,
		    .flags = SHMBUS_PRODUCER_ASYNC_CONFIRM);
	struct shmbus *bus = in->w->bus;
	struct shmbus_producer *p;
	struct target *t;

	for (unsigned i = 0; i < in->nt; i++)
		if (!strcmp(in->t[i].name, name))
			return &in->t[i];
	p = shmbus_producer__new(bus, name, &po);
	if (!p && errno == ENOENT && in->r->to_topic[0]) {
		int err = shmbus__topic_declare(bus, name, NULL);

		if (err < 0) {
			errno = -err;
			return NULL;
		}
		p = shmbus_producer__new(bus, name, &po);
	}
	if (!p)
		return NULL;
	if (in->r->to_topic[0]) {
		/* {key} may name a queue, or a subscription's: not ours */
		struct shmbus_queue_info qi;

		if (shmbus__queue_info(bus, name, &qi) ||
		    qi.kind != SHMBUS_TOPIC) {
			shmbus_producer__free(p);
			errno = EEXIST;
			return NULL;
		}
	}
	if (in->nt == IN_TARGETS) {
		/* evict one that has nothing waiting for a confirm */
		unsigned v = 0;

		while (v < IN_TARGETS && in->t[v].used)
			v++;
		if (v == IN_TARGETS) {
			shmbus_producer__free(p);
			errno = EAGAIN;
			return NULL;
		}
		shmbus_producer__free(in->t[v].p);
		in->t[v] = in->t[--in->nt];
	}
	t = &in->t[in->nt++];
	snprintf(t->name, sizeof(t->name), "%s", name);
	t->p = p;
	t->used = false;
	return t;
}

/* Publish @m locally: 0, or the publish's error. */
/* @more: other copies follow at once (their consumers' wake-up waits
 * for the last: publish_pending()). */
static int publish_local(struct in *in, struct target *t,
			 const struct br_msg *m, bool more)
{
	struct shmbus_attr a[BR_MAX_HEADERS + 4];
	SHMBUS_OPTS(shmbus_pub_opts, po);
	uint32_t n = 0, bytes = 0;
	uint64_t rcorr;
	char dc[16];
	char *end;
	int err;

	/* the bridge's own attributes first, then the headers up to the
	 * bus's budget; the headers that do not fit are left off */
	if (m->correlation_id[0]) {
		errno = 0;
		po.corr_id = strtoull(m->correlation_id, &end, 10);
		if (errno || *end || !po.corr_id) {
			/* not a number: as an attribute (at most 127 B) */
			po.corr_id = 0;
			a[n] = (struct shmbus_attr){
				.key = "amqp.correlation-id",
				.value = m->correlation_id,
				.value_len = (uint32_t)strlen(m->correlation_id) };
			bytes += 4 + 19 + a[n++].value_len;
		}
	}
	if (m->delivery_count > 1 || m->redelivered) {
		/* deliveries before this one, as RabbitMQ's header says;
		 * a redelivery of unknown count: at least one */
		int k = snprintf(dc, sizeof(dc), "%u", m->delivery_count > 1 ?
				 m->delivery_count - 1 : 1);

		a[n++] = (struct shmbus_attr){ .key = "x-delivery-count",
					       .value = dc,
					       .value_len = (uint32_t)k };
		bytes += 4 + 16 + (uint32_t)k;
	}
	for (unsigned i = 0; i < m->nr_headers; i++) {
		const struct br_kv *h = &m->headers[i];
		uint32_t cost = 4 + (uint32_t)(h->klen + h->vlen);

		if (!h->klen || h->klen > 255 || bytes + cost > SHMBUS_ATTR_BYTES)
			continue;
		a[n++] = (struct shmbus_attr){ .key = h->key, .value = h->val,
					       .value_len = (uint32_t)h->vlen };
		bytes += cost;
	}
	po.attrs = n ? a : NULL;
	po.nr_attrs = n;
	if (m->expiration_ms >= 0)	/* "0": now or never, as AMQP says */
		po.ttl_ns = !m->expiration_ms ? 1 :
			    m->expiration_ms < INT64_MAX / 1000000 ?
			    m->expiration_ms * 1000000 : INT64_MAX;
	if (m->message_id[0] && !in->no_dedup)
		po.dedup_id = m->message_id;
	po.flags = more ? SHMBUS_PUB_MORE : 0;
	/* a request (AMQP reply_to): its reply comes to us first */
	if ((err = br_rpc_request(m, &po, &rcorr)))
		return err;
	err = shmbus_producer__publish(t->p, m->body, m->len, &po);
	if (err == -EOPNOTSUPP && po.dedup_id) {
		in->no_dedup = true;	/* no dedup window: publish as is */
		po.dedup_id = NULL;
		err = shmbus_producer__publish(t->p, m->body, m->len, &po);
	}
	if (err && rcorr)
		br_rpc_forget(rcorr);
	return err;
}

static void pop(struct in *in)
{
	free((void *)in->pend[in->head].body);
	in->head = (in->head + 1) % in->r->window;
	in->n--;
	WRITE_ONCE(in->w->stats.inflight, in->n);
}

/*
 * Publish the copies, oldest first, until one does not go in now. 1 if
 * all went, 0 if the local side is full, -1 if the link broke, -2 if
 * the local queue is gone.
 */
static int publish_some(struct in *in)
{
	while (in->n) {
		struct br_msg *m = &in->pend[in->head];
		char name[BR_LOCAL_MAX];
		struct target *t;
		int err;

		if (in->r->rpc == BR_RPC_REPLIES_IN) {
			/* a reply to one of our requesters */
			strcpy(name, "(reply)");
			t = NULL;
			err = br_rpc_deliver(in->w, m);
		} else {
			t = NULL;
			err = local_name(in, m, name, sizeof(name));
			if (!err)
				t = target(in, name);
			if (t)
				err = publish_local(in, t, m, in->n > 1);
			else if (!err)
				err = -errno;
		}
		switch (err) {
		case 0:
			if (t)
				t->used = true;
			in->last_tag = m->tag;
			in->unacked = true;
			if (!in->unacked_n++)
				in->unacked_ns = br_now_ns();
			count(&in->w->stats.forwarded, 1);
			BR_PROBE_FORWARD(in->w, 1);
			pop(in);
			continue;
		case -ENOBUFS:	/* full */
		case -ENOMEM:	/* no free chunk now */
		case -EBUSY:	/* the same dedup id is under way */
		case -EAGAIN:	/* every topic producer awaits a confirm */
		case -EUSERS:	/* no participant slot now */
			return 0;
		case -EIDRM:
		case -ENOENT:
			br_log(in->w, "local '%s': %s", name, strerror(-err));
			return -2;
		case -ENOTCONN:
		case -ECONNRESET:
			return 0;	/* the daemon is restarting */
		default:
			/* it can never go in: the broker dead-letters it
			 * (reason rejected) if its queue has a DLX */
			if (!in->logged_drop)
				br_log(in->w, "a message for '%s' cannot be "
				       "published here (%s): rejected to the "
				       "broker", name, err == -EEXIST ?
				       "a queue, not a topic" : strerror(-err));
			in->logged_drop = true;
			if (in->w->broker->settle(in->l, m->tag, false,
						  BR_DROP) < 0)
				return -1;
			count(&in->w->stats.nacked, 1);
			pop(in);
			continue;
		}
	}
	return 1;
}

/*
 * publish_some(), its result, and then every target flushed. A burst is
 * published with SHMBUS_PUB_MORE but for its last message, and every
 * target is flushed after it: a sleeping local consumer is woken once
 * per burst, not once per message (an eventfd write and a context
 * switch each).
 */
static int publish_pending(struct in *in)
{
	int rc = publish_some(in);

	for (unsigned i = 0; i < in->nt; i++)
		shmbus_producer__flush(in->t[i].p);
	return rc;
}

/* Ack at the broker everything published here, once the local confirms
 * came. 0, 1 if confirms are still outstanding, -1 if the link broke. */
static int ack_published(struct in *in, int64_t wait_ns)
{
	if (!in->unacked)
		return 0;
	for (unsigned i = 0; i < in->nt; i++) {
		int err;

		if (!in->t[i].used)
			continue;
		err = shmbus_producer__confirm_wait(in->t[i].p, wait_ns);
		if (err == -ETIMEDOUT)
			return 1;
		if (err) {
			/* at least one was not journaled (and not
			 * delivered): have the broker send them all again */
			br_log(in->w, "local confirm: %s: the broker will "
			       "deliver again", strerror(-err));
			return -1;
		}
		in->t[i].used = false;
	}
	if (in->w->broker->settle(in->l, in->last_tag, true, BR_ACK) < 0)
		return -1;
	in->unacked = false;
	in->w->progress = true;
	count(&in->w->stats.confirmed, in->unacked_n);
	BR_PROBE_CONFIRM(in->w, in->unacked_n, br_now_ns() - in->unacked_ns);
	in->unacked_n = 0;
	return 0;
}

/* The link is gone: what it delivered and was not acked, the broker
 * delivers again; the copies here go. */
static void drop_link(struct in *in)
{
	while (in->n)
		pop(in);
	in->unacked = false;
	in->unacked_n = 0;
	for (unsigned i = 0; i < in->nt; i++)
		in->t[i].used = false;
	in->w->broker->close(in->l);
	in->l = NULL;
}

/*
 * A delivery that failed verification (@why: -ENOMSG unsigned, -EBADMSG
 * wrong) is not delivered: it goes into the local queue's dead-letter
 * queue (dlq.reason "signature") and is acked at the broker, or, when
 * the local side has no dead-letter queue (or it stays full), it is
 * rejected there without requeue (the broker's dead-letter exchange
 * takes it, if the queue has one). @m is the copy, freed here. 0, or -1
 * when the link broke.
 */
static int reject_forged(struct in *in, struct br_msg *m, int why)
{
	uint64_t n = READ_ONCE(in->w->stats.rejected) + 1;
	char name[BR_LOCAL_MAX], id[sizeof(m->message_id)];
	int err;

	count(&in->w->stats.rejected, 1);
	/* the sender's text: no control characters into the log */
	for (size_t i = 0; i < sizeof(id); i++)
		id[i] = m->message_id[i] && (m->message_id[i] < ' ' ||
			m->message_id[i] == 127) ? '?' : m->message_id[i];
	err = local_name(in, m, name, sizeof(name));
	if (!err)
		err = br_dead_letter(in->w->bus, name, m, "signature");
	if (n <= 32 || !(n % 1000))
		br_log(in->w, "message '%s' %s: %s (%llu so far)",
		       id, why == -ENOMSG ? "is not signed" :
		       "has a wrong signature", err ? "rejected to the broker"
		       : "dead-lettered here", (unsigned long long)n);
	free((void *)m->body);
	if (err == -ETIMEDOUT)
		return -1;	/* not confirmed: have it delivered again */
	return in->w->broker->settle(in->l, m->tag, false,
				     err ? BR_DROP : BR_ACK);
}

/* Take one event within @timeout_ms: 1, 0 if none came, or -1 when the
 * link is lost. */
static int poll_link(struct in *in, int timeout_ms)
{
	struct br_event ev;
	struct br_msg *m;
	int r = in->w->broker->next(in->l, &ev, timeout_ms), err;

	if (r <= 0)
		return r;
	if (ev.kind != BR_EV_DELIVERY)
		return 1;
	if (ev.msg.redelivered)
		count(&in->w->stats.redelivered, 1);
	if (ev.msg.too_large) {
		/* larger than any chunk here: it can never go in */
		if (!in->logged_large)
			br_log(in->w, "a message of %zu bytes is larger than "
			       "the bus takes: rejected to the broker",
			       ev.msg.len);
		in->logged_large = true;
		count(&in->w->stats.nacked, 1);
		return in->w->broker->settle(in->l, ev.tag, false,
					     BR_DROP) < 0 ? -1 : 1;
	}
	m = &in->pend[(in->head + in->n) % in->r->window];
	if (in->n == in->r->window || br_msg_copy(m, &ev.msg)) {
		/* over the prefetch (a broker that ignores it), or no
		 * memory: the broker keeps it */
		return in->w->broker->settle(in->l, ev.tag, false,
					     BR_REQUEUE) < 0 ? -1 : 1;
	}
	if (in->r->sign.len && (err = br_verify(&in->r->sign, m)))
		return reject_forged(in, m, err) < 0 ? -1 : 1;
	in->n++;
	WRITE_ONCE(in->w->stats.inflight, in->n);
	return 1;
}

/* Once a second, how many messages wait in the broker queue (a passive
 * declare): the route's lag. 0, or -1 when the link is lost. */
static int update_lag(struct in *in)
{
	int64_t now = br_now_ms();
	uint64_t n;

	if (now < in->next_lag)
		return 0;
	in->next_lag = now + BR_STATS_MS;
	if (in->w->broker->depth(in->l, &n) < 0)
		return -1;
	WRITE_ONCE(in->w->stats.lag, n);
	return 0;
}

void *br_in_run(void *arg)
{
	struct br_worker *w = arg;
	struct in in = { .w = w, .r = w->route, .full_ms = 1 };
	bool quiet = false;

	in.pend = calloc(in.r->window, sizeof(*in.pend));
	if (!in.pend) {
		br_log(w, "out of memory");
		WRITE_ONCE(w->rc, 1);
		return NULL;
	}
	in.l = br_connect(w, true);
	while (in.l && !br_stopping()) {
		int pub = publish_pending(&in), rc = 0;

		if (pub == -2) {
			WRITE_ONCE(w->rc, 1);
			break;
		}
		if (pub < 0)
			rc = -1;
		/* ack what went in, one basic.ack for many: when half the
		 * broker's window is used, when the link had nothing more
		 * for a millisecond, or when the local side is full. An
		 * ack per delivery costs the broker more than the delivery. */
		if (!rc && in.unacked && (quiet || !pub ||
					  in.unacked_n >= in.r->window / 2))
			rc = ack_published(&in, 0) < 0 ? -1 : 0;
		if (!rc) {
			int tmo = in.unacked ? 1 : 50;	/* local confirms */

			/* the local side is full: try again after a wait
			 * that doubles up to IN_FULL_MAX_MS; the broker
			 * sends no more meanwhile (its window is here) */
			if (!pub) {
				tmo = in.full_ms;
				if (in.full_ms < IN_FULL_MAX_MS)
					in.full_ms *= 2;
			} else {
				in.full_ms = 1;
			}
			rc = poll_link(&in, tmo);
			quiet = !rc;
			/* and what else the link holds now, up to an ack's
			 * worth: published in one go, they wake a sleeping
			 * local consumer once */
			while (rc > 0 && pub &&
			       in.n + in.unacked_n < in.r->window / 2)
				rc = poll_link(&in, 0);
		}
		if (rc >= 0)
			rc = update_lag(&in);
		if (rc < 0) {
			drop_link(&in);
			in.l = br_connect(w, false);
		}
	}
	/* a stop: ack what is confirmed here within the drain time */
	if (in.l) {
		int64_t end = br_now_ms() + BR_DRAIN_MS;

		while (in.unacked && br_now_ms() < end &&
		       ack_published(&in, 100 * 1000000LL) == 1)
			;
		w->broker->goodbye(in.l);
		drop_link(&in);
	}
	for (unsigned i = 0; i < in.nt; i++)
		shmbus_producer__free(in.t[i].p);
	free(in.pend);
	return NULL;
}
