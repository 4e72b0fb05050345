// SPDX-License-Identifier: MIT
/*
 * rpc.c - request-reply across the bridge, both ways.
 *
 * Ours to the broker: an out route publishes a local request (a message
 * with a reply-to) with AMQP reply_to = our broker reply queue and a
 * correlation-id that names the requester (corr.h: its reply queue id
 * and generation, its correlation id, under a MAC). An AMQP RPC server
 * echoes the correlation-id; the route BR_RPC_REPLIES_IN consumes our
 * broker reply queue and hands each reply to shmbus__reply(), which
 * checks the generation: no table, nothing to lose at a restart but the
 * key (see below).
 *
 * The broker's to us: an in route publishes a delivery that has an AMQP
 * reply_to as a local request whose reply comes to our local reply queue
 * with a correlation id of ours, the index of a slot in a fixed table
 * that keeps the delivery's reply_to and correlation-id until a deadline.
 * The out route BR_RPC_REPLIES_OUT consumes the local reply queue and
 * publishes each reply to the default exchange with routing key =
 * reply_to, the slot freed once the broker confirmed it. A full table
 * holds the in route's requests back (as a full local queue does); a
 * slot past its deadline is freed and counted; a reply without its slot
 * (late, or a duplicate after the first was confirmed) is dropped and
 * counted.
 *
 * The key of the MAC is random per process: a reply to a request
 * forwarded before a restart of the bridge fails the MAC, and its
 * requester times out, as it would have with the bridge down.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "bridge.h"
#include "corr.h"

#define RPC_BITS	12
#define RPC_SLOTS	(1u << RPC_BITS)	/* requests waiting at most */
#define RPC_TIMEOUT_MS	30000

struct pending {
	uint64_t corr;		/* ours; 0 = free */
	int64_t deadline_ms;
	char reply_to[BR_NAME_MAX];
	char corr_id[sizeof(((struct br_msg *)0)->correlation_id)];
};

struct rpc_stats {
	uint64_t requests_out;	/* local requests published to the broker */
	uint64_t replies_in;	/* replies handed to local requesters */
	uint64_t undeliverable;	/* ... whose requester was gone or full */
	uint64_t garbled;	/* replies with a correlation-id not ours */
	uint64_t requests_in;	/* broker requests published locally */
	uint64_t replies_out;	/* replies to them the broker confirmed */
	uint64_t late;		/* replies that found no slot */
	uint64_t expired;	/* slots freed at their deadline */
};

static struct {
	bool on;
	const struct br_conf *conf;
	uint8_t key[BR_CORR_KEY];
	pthread_mutex_t lock;	/* the table */
	struct pending *tab;
	uint64_t seq;
	unsigned cursor;
	struct rpc_stats st;
} rpc = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void count(uint64_t *c, int64_t n)
{
	atomic_add_relaxed(c, (uint64_t)n);
}

static uint32_t fnv(uint32_t h, const char *s)
{
	while (*s)
		h = (h ^ (uint8_t)*s++) * 16777619u;
	return h;
}

static void add_route(struct br_conf *c, const struct br_route *r)
{
	for (unsigned i = 0; i < c->nr_routes; i++)
		if (!strcmp(c->routes[i].name, r->name)) {
			fprintf(stderr, "shmbus-bridge: the route name '%s' is "
				"the bridge's own (reply-queue = none frees "
				"it)\n", r->name);
			exit(2);
		}
	if (c->nr_routes == BR_MAX_ROUTES) {
		fprintf(stderr, "shmbus-bridge: more than %d routes with the "
			"reply routes (reply-queue = none: none)\n",
			BR_MAX_ROUTES);
		exit(2);
	}
	c->routes[c->nr_routes] = *r;
	/* replies are signed and verified as the requests are */
	c->routes[c->nr_routes++].sign = c->sign;
}

void br_rpc_conf(struct br_conf *c)
{
	bool any_out = false, any_in = false;
	struct br_route r;

	if (!strcmp(c->reply_queue, "none"))
		return;
	if (!c->reply_timeout_ms)
		c->reply_timeout_ms = RPC_TIMEOUT_MS;
	for (unsigned i = 0; i < c->nr_routes; i++) {
		any_out |= c->routes[i].dir == BR_OUT;
		any_in |= c->routes[i].dir == BR_IN;
	}
	if (!c->reply_queue[0]) {
		const char *bus = c->bus[0] ? c->bus : getenv("SHMBUS_BUS");
		char host[128] = "";

		if (gethostname(host, sizeof(host) - 1) || !host[0])
			strcpy(host, "localhost");
		snprintf(c->reply_queue, sizeof(c->reply_queue),
			 "shmbus.reply.%s.%s", host, bus && *bus ? bus :
			 "default");
	}
	if (!c->local_reply_queue[0])
		snprintf(c->local_reply_queue, sizeof(c->local_reply_queue),
			 "_bridge.reply.%08x",
			 fnv(fnv(2166136261u, c->url), c->reply_queue));
	if (any_out) {
		memset(&r, 0, sizeof(r));
		strcpy(r.name, "rpc.replies.in");
		r.dir = BR_IN;
		r.rpc = BR_RPC_REPLIES_IN;
		r.window = 64;
		r.declare = BR_DECLARE_CLASSIC;
		strcpy(r.queue, c->reply_queue);
		add_route(c, &r);
	}
	if (any_in) {
		memset(&r, 0, sizeof(r));
		strcpy(r.name, "rpc.replies.out");
		r.dir = BR_OUT;
		r.rpc = BR_RPC_REPLIES_OUT;
		r.window = 64;
		strcpy(r.from_queue, c->local_reply_queue);
		add_route(c, &r);
	}
}

int br_rpc_setup(const struct br_conf *c, struct shmbus *bus)
{
	size_t got = 0;
	int err;

	if (!strcmp(c->reply_queue, "none"))
		return 0;
	while (got < sizeof(rpc.key)) {
		ssize_t n = getrandom(rpc.key + got, sizeof(rpc.key) - got, 0);

		if (n < 0 && errno != EINTR) {
			perror("shmbus-bridge: getrandom");
			return -1;
		}
		got += n > 0 ? (size_t)n : 0;
	}
	/* our correlation ids start at random: a reply to a bridge that
	 * ran before us finds no slot */
	if (getrandom(&rpc.seq, sizeof(rpc.seq), 0) != sizeof(rpc.seq))
		rpc.seq = (uint64_t)getpid() << 24;
	rpc.seq &= (1ull << 40) - 1;
	rpc.tab = calloc(RPC_SLOTS, sizeof(*rpc.tab));
	if (!rpc.tab) {
		fputs("shmbus-bridge: out of memory\n", stderr);
		return -1;
	}
	for (unsigned i = 0; i < c->nr_routes; i++) {
		/* room for a reply to every slot: the table is the bound */
		SHMBUS_OPTS(shmbus_queue_opts, qo, .max_len = RPC_SLOTS);

		if (c->routes[i].rpc != BR_RPC_REPLIES_OUT)
			continue;
		err = shmbus__queue_declare(bus, c->local_reply_queue, &qo);
		if (err == -EEXIST)	/* declared by the user, differently:
					 * used as it is */
			err = 0;
		if (err < 0) {
			fprintf(stderr, "shmbus-bridge: cannot declare the "
				"local reply queue '%s': %s\n",
				c->local_reply_queue, strerror(-err));
			return -1;
		}
	}
	rpc.conf = c;
	rpc.on = true;
	return 0;
}

/* The slot of @corr, if it is still waiting (lock held). */
static struct pending *find(uint64_t corr, int64_t now)
{
	struct pending *e = &rpc.tab[corr & (RPC_SLOTS - 1)];

	if (!corr || e->corr != corr)
		return NULL;
	if (e->deadline_ms <= now) {
		e->corr = 0;
		count(&rpc.st.expired, 1);
		return NULL;
	}
	return e;
}

int br_rpc_request(const struct br_msg *m, struct shmbus_pub_opts *po,
		   uint64_t *corr)
{
	int64_t now = br_now_ms(), deadline;
	struct pending *e = NULL;
	unsigned idx = 0;

	*corr = 0;
	if (!rpc.on || !m->reply_to[0])
		return 0;
	deadline = now + rpc.conf->reply_timeout_ms;
	/* the requester's own expiration, if it is sooner */
	if (m->expiration_ms >= 0 && now + m->expiration_ms < deadline)
		deadline = now + m->expiration_ms;
	pthread_mutex_lock(&rpc.lock);
	for (unsigned i = 0; i < RPC_SLOTS; i++) {
		idx = (rpc.cursor + i) & (RPC_SLOTS - 1);
		e = &rpc.tab[idx];
		if (e->corr && e->deadline_ms <= now) {
			e->corr = 0;
			count(&rpc.st.expired, 1);
		}
		if (!e->corr)
			break;
		e = NULL;
	}
	if (!e) {
		pthread_mutex_unlock(&rpc.lock);
		return -ENOBUFS;
	}
	rpc.cursor = idx + 1;
	e->corr = (++rpc.seq << RPC_BITS) | idx;
	e->deadline_ms = deadline;
	snprintf(e->reply_to, sizeof(e->reply_to), "%s", m->reply_to);
	snprintf(e->corr_id, sizeof(e->corr_id), "%s", m->correlation_id);
	*corr = e->corr;
	pthread_mutex_unlock(&rpc.lock);
	po->reply_to = rpc.conf->local_reply_queue;
	po->corr_id = *corr;
	count(&rpc.st.requests_in, 1);
	return 0;
}

void br_rpc_forget(uint64_t corr)
{
	struct pending *e = &rpc.tab[corr & (RPC_SLOTS - 1)];

	pthread_mutex_lock(&rpc.lock);
	if (corr && e->corr == corr) {
		e->corr = 0;
		count(&rpc.st.requests_in, -1);
	}
	pthread_mutex_unlock(&rpc.lock);
}

int br_rpc_outbound(const struct br_worker *w, const struct shmbus_msg *m,
		    struct br_msg *bm, char *buf, size_t cap, const char **key)
{
	char corr[BR_CORR_MAX];
	struct pending *e;

	if (!rpc.on)
		return 0;
	if (w->route->rpc == BR_RPC_REPLIES_OUT) {
		pthread_mutex_lock(&rpc.lock);
		e = find(m->corr_id, br_now_ms());
		if (e) {
			snprintf(buf, cap, "%s", e->reply_to);
			snprintf(bm->correlation_id, sizeof(bm->correlation_id),
				 "%s", e->corr_id);
		}
		pthread_mutex_unlock(&rpc.lock);
		if (!e) {
			count(&rpc.st.late, 1);
			return 1;
		}
		*key = buf;
		bm->reply_to[0] = '\0';
		return 0;
	}
	if (!m->reply_to)
		return 0;
	br_corr_encode(corr, rpc.key, m->reply_to, m->__reply_gen, m->corr_id);
	snprintf(bm->correlation_id, sizeof(bm->correlation_id), "%s", corr);
	snprintf(bm->reply_to, sizeof(bm->reply_to), "%s",
		 rpc.conf->reply_queue);
	count(&rpc.st.requests_out, 1);
	return 0;
}

void br_rpc_confirmed(const struct br_worker *w, const struct shmbus_msg *m)
{
	struct pending *e;

	if (!rpc.on || w->route->rpc != BR_RPC_REPLIES_OUT)
		return;
	pthread_mutex_lock(&rpc.lock);
	e = &rpc.tab[m->corr_id & (RPC_SLOTS - 1)];
	if (m->corr_id && e->corr == m->corr_id) {
		e->corr = 0;
		count(&rpc.st.replies_out, 1);
	}
	pthread_mutex_unlock(&rpc.lock);
}

/* The error status an AMQP reply carries in its SHMBUS_REPLY_STATUS_ATTR
 * header (an RPC server's, or another bridge's from a local error
 * reply): > 0, 0 for a plain reply, EBADMSG for a header that is not a
 * positive number (as shmbus__request() takes a garbled status). */
static int32_t reply_status(const struct br_msg *m)
{
	size_t n = strlen(SHMBUS_REPLY_STATUS_ATTR);

	for (unsigned i = 0; i < m->nr_headers; i++) {
		const struct br_kv *h = &m->headers[i];
		char num[12];
		long st;
		char *end;

		if (h->klen != n || memcmp(h->key, SHMBUS_REPLY_STATUS_ATTR, n))
			continue;
		if (!h->vlen || h->vlen >= sizeof(num) ||
		    memchr(h->val, '\0', h->vlen))
			return EBADMSG;
		memcpy(num, h->val, h->vlen);
		num[h->vlen] = '\0';
		st = strtol(num, &end, 10);
		if (*end || num[0] < '1' || num[0] > '9' || st > INT32_MAX)
			return EBADMSG;
		return (int32_t)st;
	}
	return 0;
}

int br_rpc_deliver(struct br_worker *w, const struct br_msg *m)
{
	static bool logged;
	struct shmbus_msg req;
	uint32_t qid1, gen;
	int32_t status;
	uint64_t corr;
	int err;

	if (!br_corr_decode(m->correlation_id, strlen(m->correlation_id),
			    rpc.key, &qid1, &gen, &corr)) {
		if (!READ_ONCE(logged))
			br_log(w, "a reply with a correlation-id this bridge "
			       "did not make: dropped (counted as garbled)");
		WRITE_ONCE(logged, true);
		count(&rpc.st.garbled, 1);
		return 0;
	}
	memset(&req, 0, sizeof(req));
	req.reply_to = qid1;
	req.__reply_gen = gen;
	req.corr_id = corr;
	status = reply_status(m);
	err = status ? shmbus__reply_error(w->bus, &req, status, m->body,
					   m->len)
		     : shmbus__reply(w->bus, &req, m->body, m->len);
	switch (err) {
	case 0:
		count(&rpc.st.replies_in, 1);
		return 0;
	case -ENOMEM:		/* no free chunk now */
	case -EUSERS:		/* no participant slot now */
	case -ENOTCONN:		/* the daemon is restarting */
	case -ECONNRESET:
		return err;
	default:
		/* the requester is gone (-ENOENT), its reply queue is
		 * full of late replies (-ENOBUFS), the reply is too large
		 * for it (-EMSGSIZE): it would fail the same locally */
		count(&rpc.st.undeliverable, 1);
		return 0;
	}
}

void br_rpc_print(void)
{
	const struct rpc_stats *s = &rpc.st;

	if (!rpc.on)
		return;
	fprintf(stderr, "bridge: rpc requests-out %llu replies-in %llu "
		"undeliverable %llu garbled %llu requests-in %llu replies-out "
		"%llu late %llu expired %llu\n",
		(unsigned long long)READ_ONCE(s->requests_out),
		(unsigned long long)READ_ONCE(s->replies_in),
		(unsigned long long)READ_ONCE(s->undeliverable),
		(unsigned long long)READ_ONCE(s->garbled),
		(unsigned long long)READ_ONCE(s->requests_in),
		(unsigned long long)READ_ONCE(s->replies_out),
		(unsigned long long)READ_ONCE(s->late),
		(unsigned long long)READ_ONCE(s->expired));
}
