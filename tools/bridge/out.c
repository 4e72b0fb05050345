// SPDX-License-Identifier: MIT
/*
 * out.c - an out route: a local queue (or a topic pattern, through a
 * persistent subscription) forwarded to a broker, at least once.
 *
 * Each local message is received under a lease (up to the route's window
 * at a time), published persistent on a link in confirm mode, and acked
 * locally only when the broker's confirm covers its tag. A broker nack,
 * or a link that is lost, nacks the local messages in flight: the queue
 * delivers them again, to us after the reconnect or to another consumer.
 * A bridge killed -9 loses nothing either: its leases run out and the
 * queue redelivers. The price of both is a duplicate at the broker when
 * a confirm was lost on the way; the message id is the same at every
 * delivery, for a consumer there that wants to drop them.
 *
 * A broker that is slow to confirm (blocked by a resource alarm, a disk
 * that lags) must not make the local leases run out under messages it
 * has taken: those would be delivered again, duplicates. So the leases of
 * the messages in flight are extended when half of them has passed. And
 * while the broker says it blocks publishers (connection.blocked), the
 * route publishes nothing more: the messages stay in the local queue.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge.h"

struct out {
	struct br_worker *w;
	const struct br_route *r;
	struct shmbus_consumer *c;
	struct br_link *l;
	struct shmbus_msg *fl;	/* in flight: a ring of r->window */
	uint64_t *tags;		/* the broker's tag of each */
	int64_t *leased;	/* when its lease was taken or extended, ms */
	int64_t *sent;		/* when it was published, ns */
	bool *done;		/* settled already (a confirm of it alone
				 * came before the older ones'): it leaves
				 * the ring once the older ones have */
	unsigned head, n;	/* oldest in flight, how many */
	bool idle;		/* the last fill found nothing */
	bool logged_topic;	/* said that a topic was not known */
	bool blocked;		/* the broker blocks publishing */
	int64_t lease_ms;	/* the local queue's lease, 0 = unknown */
	int64_t next_extend;	/* when to look at the leases again */
};

static struct shmbus_msg *oldest(struct out *o)
{
	return &o->fl[o->head];
}

static void pop(struct out *o)
{
	o->head = (o->head + 1) % o->r->window;
	o->n--;
	WRITE_ONCE(o->w->stats.inflight, o->n);
}

/* Ack (@ok) or nack the local message in ring slot @i. */
static void settle_one(struct out *o, unsigned i, bool ok)
{
	struct br_stats *st = &o->w->stats;

	if (ok) {
		br_rpc_confirmed(o->w, &o->fl[i]);
		/* -ESTALE: the lease ran out meanwhile and the queue will
		 * deliver it again (a duplicate) */
		shmbus_consumer__ack(o->c, &o->fl[i]);
		atomic_add_relaxed(&st->confirmed, 1);
		o->w->progress = true;
	} else {
		shmbus_consumer__nack(o->c, &o->fl[i], SHMBUS_NACK_BACKOFF);
		atomic_add_relaxed(&st->nacked, 1);
	}
	o->done[i] = true;
}

/*
 * The broker settled tags up to @tag (@multiple) or @tag alone: ack
 * (@ok) or nack those local messages. A channel's confirms usually come
 * in order, but RabbitMQ may confirm a message alone before older ones
 * (it says so; seen under a memory alarm): that one is settled at once
 * and leaves the ring with them. A single tag that is not in flight is a
 * protocol error.
 */
static int settle(struct out *o, uint64_t tag, bool multiple, bool ok)
{
	int64_t first = o->n ? o->sent[o->head] : 0;
	uint64_t acked = 0;
	bool found = false;

	for (unsigned k = 0; k < o->n; k++) {
		unsigned i = (o->head + k) % o->r->window;

		if (o->tags[i] > tag)
			break;
		if (o->done[i] || (!multiple && o->tags[i] != tag))
			continue;
		settle_one(o, i, ok);
		acked += ok;
		found = true;
	}
	if (!found && !multiple) {
		br_log(o->w, "a confirm of a tag not in flight (tag %llu, "
		       "oldest in flight %llu of %u): connecting again",
		       (unsigned long long)tag,
		       o->n ? (unsigned long long)o->tags[o->head] : 0ULL,
		       o->n);
		return -1;
	}
	while (o->n && o->done[o->head])
		pop(o);
	if (acked)
		BR_PROBE_CONFIRM(o->w, acked, br_now_ns() - first);
	return 0;
}

static void set_blocked(struct out *o, bool blocked)
{
	struct br_stats *st = &o->w->stats;

	if (blocked && !o->blocked)
		atomic_add_relaxed(&st->blocks, 1);
	o->blocked = blocked;
	WRITE_ONCE(st->blocked, blocked);
}

/* The link is gone: give every message in flight back (counted with the
 * broker's nacks: "nacked" is what went back to the queue). */
static void drop_link(struct out *o)
{
	while (o->n) {
		if (!o->done[o->head]) {
			shmbus_consumer__nack(o->c, oldest(o), 0);
			atomic_add_relaxed(&o->w->stats.nacked, 1);
		}
		pop(o);
	}
	o->w->broker->close(o->l);
	o->l = NULL;
	/* a new connection starts unblocked; the broker says it again */
	set_blocked(o, false);
}

/* Take one event within @timeout_ms and act on it: 0, or -1 when the
 * link is lost. */
static int poll_link(struct out *o, int timeout_ms)
{
	struct br_event ev;
	int r = o->w->broker->next(o->l, &ev, timeout_ms);

	if (r <= 0)
		return r;
	switch (ev.kind) {
	case BR_EV_ACK:
		return settle(o, ev.tag, ev.multiple, true);
	case BR_EV_NACK:
		return settle(o, ev.tag, ev.multiple, false);
	case BR_EV_BLOCKED:
		set_blocked(o, true);
		return 0;
	case BR_EV_UNBLOCKED:
		set_blocked(o, false);
		return 0;
	default:
		return 0;
	}
}

/*
 * The routing key of @m: the route's, with {queue} and {topic} put in.
 * {topic} is the topic @m was published to; for a message whose topic is
 * not known (it came back from the subscription's journal after a daemon
 * restart) it is the route's pattern, and said once.
 */
static const char *routing_key(struct out *o, const struct shmbus_msg *m,
			       char *buf, size_t cap)
{
	const char *t = o->r->key, *src = o->r->from_queue[0] ?
		o->r->from_queue : o->r->from_topic;
	char topic[BR_LOCAL_MAX];
	size_t n = 0;

	if (!strchr(t, '{'))
		return t;
	while (*t && n + 1 < cap) {
		const char *v = NULL;
		size_t k;

		if (!strncmp(t, "{queue}", 7)) {
			v = src;
		} else if (!strncmp(t, "{topic}", 7)) {
			v = src;
			if (o->r->from_topic[0] &&
			    shmbus_msg__topic(o->c, m, topic,
					      sizeof(topic)) > 0)
				v = topic;
			else if (o->r->from_topic[0] && !o->logged_topic) {
				br_log(o->w, "a message of unknown topic: "
				       "{topic} is the pattern '%s'", src);
				o->logged_topic = true;
			}
		}
		if (!v) {
			buf[n++] = *t++;
			continue;
		}
		k = strlen(v);
		if (n + k >= cap)
			break;
		memcpy(buf + n, v, k);
		n += k;
		t += 7;
	}
	buf[n] = '\0';
	return buf;
}

/* Take what the local queue has, up to the window, and publish it. 0,
 * -1: the link broke; -2: the local queue is gone. */
static int fill(struct out *o)
{
	const struct br_route *r = o->r;
	struct br_stats *st = &o->w->stats;

	while (o->n < r->window && !br_stopping()) {
		unsigned i = (o->head + o->n) % r->window;
		struct shmbus_msg *m = &o->fl[i];
		/* block only with nothing in flight: confirms come first */
		int64_t tmo = o->n ? 0 : 100000000;
		int rc = shmbus_consumer__receive_view(o->c, m, tmo);
		struct br_msg bm;
		char key[BR_NAME_MAX], sig[BR_SIG_LEN + 1];
		const char *rk;

		o->idle = rc == -EAGAIN || rc == -ETIMEDOUT;
		if (o->idle || rc == -EINTR || rc == -ENOBUFS)
			return 0;
		if (rc < 0) {
			br_log(o->w, "receive: %s", strerror(-rc));
			return -2;
		}
		o->n++;
		o->done[i] = false;
		o->leased[i] = br_now_ms();
		WRITE_ONCE(st->inflight, o->n);
		if (m->delivery_count > 1)
			atomic_add_relaxed(&st->redelivered, 1);
		br_from_shmbus(&bm, m);
		rk = routing_key(o, m, key, sizeof(key));
		if (br_rpc_outbound(o->w, m, &bm, key, sizeof(key), &rk)) {
			/* a reply nobody waits for any more */
			shmbus_consumer__ack(o->c, m);
			o->n--;
			WRITE_ONCE(st->inflight, o->n);
			continue;
		}
		if (r->sign.len)
			br_sign(&r->sign, &bm, sig);
		if (o->w->broker->publish(o->l, r->exchange, rk, &bm,
					  &o->tags[i]) < 0)
			return -1;
		o->sent[i] = br_now_ns();
		atomic_add_relaxed(&st->forwarded, 1);
		BR_PROBE_FORWARD(o->w, 1);
	}
	return 0;
}

/* Extend the leases of the messages in flight that are half run out:
 * the broker has them, and may confirm them late. */
static void extend_leases(struct out *o)
{
	int64_t now = br_now_ms();

	if (!o->lease_ms || now < o->next_extend)
		return;
	o->next_extend = now + o->lease_ms / 4;
	for (unsigned k = 0; k < o->n; k++) {
		unsigned i = (o->head + k) % o->r->window;

		if (o->done[i] || now - o->leased[i] < o->lease_ms / 2)
			continue;
		/* -ESTALE: it ran out already; the confirm's ack says so */
		if (shmbus_consumer__extend(o->c, &o->fl[i], 0) == 0) {
			o->leased[i] = now;
			atomic_add_relaxed(&o->w->stats.extended, 1);
		}
	}
}

/* The lease of the route's local queue or subscription, in ms. */
static int64_t lease_of(struct out *o)
{
	const struct br_route *r = o->r;
	struct shmbus_queue_info qi;
	char name[2 * BR_LOCAL_MAX];

	if (r->from_queue[0])
		snprintf(name, sizeof(name), "%s", r->from_queue);
	else
		snprintf(name, sizeof(name), "%s#%s", r->from_topic, r->group);
	if (shmbus__queue_info(o->w->bus, name, &qi) || qi.lease_ns <= 0)
		return 0;
	return qi.lease_ns / 1000000 > 4 ? qi.lease_ns / 1000000 : 4;
}

/* At a stop: wait a while for the confirms of what is in flight. */
static void drain(struct out *o)
{
	int64_t end = br_now_ms() + BR_DRAIN_MS;

	while (o->l && o->n && br_now_ms() < end) {
		extend_leases(o);
		if (poll_link(o, 100) < 0)
			break;
	}
}

static struct shmbus_consumer *local_source(struct br_worker *w)
{
	const struct br_route *r = w->route;

	if (r->from_queue[0]) {
		SHMBUS_OPTS(shmbus_consumer_opts, co, .prefetch = r->window);

		return shmbus_consumer__new(w->bus, r->from_queue, &co);
	} else {
		SHMBUS_OPTS(shmbus_sub_opts, so, .group = r->group,
			    .flags = SHMBUS_SUB_PERSISTENT,
			    .prefetch = r->window);

		return shmbus_consumer__subscribe(w->bus, r->from_topic, &so);
	}
}

void *br_out_run(void *arg)
{
	struct br_worker *w = arg;
	struct out o = { .w = w, .r = w->route };

	o.fl = calloc(o.r->window, sizeof(*o.fl));
	o.tags = calloc(o.r->window, sizeof(*o.tags));
	o.leased = calloc(o.r->window, sizeof(*o.leased));
	o.sent = calloc(o.r->window, sizeof(*o.sent));
	o.done = calloc(o.r->window, sizeof(*o.done));
	o.c = local_source(w);
	if (!o.fl || !o.tags || !o.leased || !o.sent || !o.done || !o.c) {
		br_log(w, "cannot consume from '%s': %s",
		       o.r->from_queue[0] ? o.r->from_queue : o.r->from_topic,
		       strerror(o.c ? ENOMEM : errno));
		WRITE_ONCE(w->rc, 1);
		goto out;
	}
	o.lease_ms = lease_of(&o);
	o.l = br_connect(w, true);
	while (o.l && !br_stopping()) {
		/* blocked: publish nothing, read the link for the unblock */
		int rc = o.blocked ? 0 : fill(&o);

		if (rc == -2) {
			WRITE_ONCE(w->rc, 1);
			break;
		}
		/* with more to send, only take the events already here;
		 * with the window full, wait for one; with the queue empty,
		 * wait for either side, so that a message that comes
		 * meanwhile is sent at once, not after the confirms. An
		 * idle route reads its link too (heartbeats, a broker that
		 * went away). */
		if (!rc && o.idle && !o.blocked && o.n < o.r->window) {
			if (!shmbus_consumer__arm(o.c))
				w->broker->wait(o.l, shmbus_consumer__fd(o.c),
						50);
			rc = poll_link(&o, 0);
		} else if (!rc) {
			rc = poll_link(&o, o.n < o.r->window && !o.idle &&
				       !o.blocked ? 0 : 50);
		}
		extend_leases(&o);
		if (rc < 0) {
			drop_link(&o);
			o.l = br_connect(w, false);
		}
	}
	drain(&o);
	if (o.l) {
		w->broker->goodbye(o.l);
		drop_link(&o);
	}
out:
	shmbus_consumer__free(o.c);
	free(o.fl);
	free(o.tags);
	free(o.leased);
	free(o.sent);
	free(o.done);
	return NULL;
}
