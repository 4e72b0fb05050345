// SPDX-License-Identifier: MIT
/*
 * test_topics.c - pub/sub across processes: consumer groups (every group
 * gets every message, consumers of a group compete), fan-out to 8
 * subscriber processes, wildcards, durable and ephemeral subscriptions,
 * slow subscribers (drop-oldest never stalls the others; blocking times
 * out and is counted), history for late joiners, retries of a shared
 * message as a private copy, a subscriber killed holding leases, and
 * subscribing and unsubscribing while publishers publish (the RCU fan-out
 * sets), the topic a received message names. Every test ends with every
 * chunk back in the pools.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shmbus.h"
#include "shmbus/layout.h"
#include "helpers.h"

#define BUS	"topics"
#define MS	1000000LL

static struct shmbus *open_bus(void)
{
	return t_open_bus(BUS);
}

/* Where the chunks that are out are (for a failing test's log). */
static void dump_out(void)
{
	const uint8_t *base = t_arena_mapping(BUS);
	const struct shmbus_sb *sb = (const void *)base;

	if (!base)
		return;
	for (uint32_t pi = 0; pi < sb->nr_pools; pi++) {
		const struct shmbus_pool *pd = (const void *)(base + sb->pool_off +
						pi * sb->pool_size);

		for (uint32_t i = 0; i < pd->nr_chunks; i++) {
			const struct shmbus_chunk *c = (const void *)(base +
				pd->base_off + (uint64_t)i * pd->chunk_size);
			uint64_t o = c->owner;

			if (SHMBUS_OWNER_STATE(o) != SHMBUS_CHUNK_FREE)
				print_message("chunk %u/%u: state %u slot %u "
					      "refcnt %u dc %u len %u\n", pi, i,
					      SHMBUS_OWNER_STATE(o),
					      SHMBUS_OWNER_SLOT(o), c->refcnt,
					      c->delivery_count, c->len);
		}
	}
}

/* Every chunk comes back (the daemon may still be settling a detach). */
static void assert_no_t_chunks_out(struct shmbus *bus)
{
	uint32_t out = t_chunks_out(bus);

	for (int i = 0; i < 500 && out; i++) {
		usleep(2000);
		out = t_chunks_out(bus);
	}
	if (out)
		dump_out();
	assert_int_equal(out, 0);
}

static struct shmbus_consumer *sub(struct shmbus *bus, const char *pattern,
				   const char *group, uint32_t flags)
{
	SHMBUS_OPTS(shmbus_sub_opts, so, .group = group, .flags = flags);
	struct shmbus_consumer *c = shmbus_consumer__subscribe(bus, pattern, &so);

	assert_non_null(c);
	return c;
}

/* Drain @c; returns how many; checks each value is < @n, counts them. */
static int drain(struct shmbus_consumer *c, int *seen, int n)
{
	struct shmbus_msg m;
	int got = 0;

	while (shmbus_consumer__try_receive(c, &m) == 0) {
		int v = *(const int *)m.data;

		assert_true(v >= 0 && v < n);
		seen[v]++;
		got++;
		assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	}
	return got;
}

static void publish_n(struct shmbus_producer *p, int from, int n)
{
	for (int i = from; i < from + n; i++)
		assert_int_equal(shmbus_producer__publish(p, &i, sizeof(i), NULL), 0);
}

/* Three groups each get every order; a group's two consumers share. */
static void test_groups(void **state)
{
	enum { N = 1000 };
	struct shmbus *bus = open_bus();
	static int inv[N], bill[N], mail[N];
	struct shmbus_consumer *ci, *cb1, *cb2, *cm;
	struct shmbus_producer *p;
	int b1, b2;

	(void)state;
	assert_int_equal(shmbus__topic_declare(bus, "order.created", NULL), 1);
	assert_int_equal(shmbus__topic_declare(bus, "order.created", NULL), 0);
	/* a topic is not a queue */
	assert_int_equal(shmbus__queue_declare(bus, "order.created", NULL),
			 -EEXIST);
	assert_null(shmbus_consumer__new(bus, "order.created", NULL));
	ci = sub(bus, "order.created", "inventory", 0);
	cb1 = sub(bus, "order.created", "billing", 0);
	cb2 = sub(bus, "order.created", "billing", 0);
	cm = sub(bus, "order.created", "email", 0);
	p = shmbus_producer__new(bus, "order.created", NULL);
	assert_non_null(p);
	for (int i = 0; i < N; i++) {
		assert_int_equal(shmbus_producer__publish(p, &i, sizeof(i), NULL), 0);
		/* interleave the two billing consumers */
		if (i % 2 == 0)
			drain(cb1, bill, N);
		else
			drain(cb2, bill, N);
	}
	assert_int_equal(drain(ci, inv, N), N);
	assert_int_equal(drain(cm, mail, N), N);
	b1 = drain(cb1, bill, N);
	b2 = drain(cb2, bill, N);
	(void)b1;
	(void)b2;
	for (int i = 0; i < N; i++) {
		assert_int_equal(inv[i], 1);
		assert_int_equal(bill[i], 1);
		assert_int_equal(mail[i], 1);
	}
	shmbus_consumer__free(ci);
	shmbus_consumer__free(cb1);
	shmbus_consumer__free(cb2);
	shmbus_consumer__free(cm);
	shmbus_producer__free(p);
	assert_no_t_chunks_out(bus);
	assert_int_equal(shmbus__queue_delete(bus, "order.created"), 0);
	shmbus__close(bus);
}

/* Eight subscriber processes: every message once per subscription, in
 * order. */
static void test_fanout_8(void **state)
{
	const int n = (int)t_scaled(50000);
	struct shmbus *bus = open_bus();
	struct shmbus_producer *p;
	int ready[2], go[2];
	pid_t kids[8];
	char x;

	(void)state;
	assert_int_equal(shmbus__topic_declare(bus, "ticks", NULL), 1);
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(go), 0);
	for (int k = 0; k < 8; k++) {
		if (!(kids[k] = fork())) {
			struct shmbus *b = open_bus();
			SHMBUS_OPTS(shmbus_sub_opts, so, .max_len = 4096);
			struct shmbus_consumer *c =
				shmbus_consumer__subscribe(b, "ticks", &so);
			int next = 0;

			CHILD_CHECK(c, "subscribe: %s", strerror(errno));
			CHILD_CHECK(write(ready[1], "r", 1) == 1, "ready");
			while (next < n) {
				struct shmbus_msg m;
				int err = shmbus_consumer__receive_view(c, &m,
							10000 * MS);

				CHILD_CHECK(!err, "receive: %s", strerror(-err));
				CHILD_CHECK(*(const int *)m.data == next,
					    "got %d, want %d",
					    *(const int *)m.data, next);
				CHILD_CHECK(m.delivery_count == 1, "dc");
				next++;
				shmbus_consumer__ack(c, &m);
			}
			shmbus_consumer__free(c);
			_exit(0);
		}
	}
	for (int k = 0; k < 8; k++)
		assert_int_equal(read(ready[0], &x, 1), 1);
	p = shmbus_producer__new(bus, "ticks", NULL);
	assert_non_null(p);
	for (int i = 0; i < n; i++) {
		SHMBUS_OPTS(shmbus_pub_opts, po, .timeout_ns = 10000 * MS);

		assert_int_equal(shmbus_producer__publish(p, &i, sizeof(i), &po), 0);
	}
	for (int k = 0; k < 8; k++)
		assert_int_equal(t_wait(kids[k], 60000), 0);
	shmbus_producer__free(p);
	assert_no_t_chunks_out(bus);
	print_message("%d messages to 8 subscriber processes, each once\n", n);
	shmbus__close(bus);
}

static void test_wildcards(void **state)
{
	struct shmbus *bus = open_bus();
	struct shmbus_consumer *star, *tail, *eu, *exact;
	struct shmbus_producer *pc, *pp, *pe, *pl;
	struct shmbus_msg m;

	(void)state;
	assert_int_equal(shmbus__topic_declare(bus, "orders.created", NULL), 1);
	assert_int_equal(shmbus__topic_declare(bus, "orders.paid", NULL), 1);
	star = sub(bus, "orders.*", "w", 0);
	tail = sub(bus, "orders.>", "w", 0);
	exact = sub(bus, "orders.paid", "w", 0);
	eu = sub(bus, "orders.eu.*", "w", 0);
	/* declared after the subscriptions: matched all the same */
	assert_int_equal(shmbus__topic_declare(bus, "orders.eu.created", NULL), 1);
	pc = shmbus_producer__new(bus, "orders.created", NULL);
	pp = shmbus_producer__new(bus, "orders.paid", NULL);
	pe = shmbus_producer__new(bus, "orders.eu.created", NULL);
	assert_non_null(pc);
	assert_non_null(pp);
	assert_non_null(pe);
	publish_n(pc, 1, 1);
	publish_n(pp, 2, 1);
	publish_n(pe, 3, 1);
	assert_int_equal(t_recv_int(star, &m, 0), 1);
	assert_int_equal(shmbus_consumer__ack(star, &m), 0);
	assert_int_equal(t_recv_int(star, &m, 0), 2);
	assert_int_equal(shmbus_consumer__ack(star, &m), 0);
	assert_int_equal(shmbus_consumer__try_receive(star, &m), -EAGAIN);
	for (int i = 1; i <= 3; i++) {
		assert_int_equal(t_recv_int(tail, &m, 0), i);
		assert_int_equal(shmbus_consumer__ack(tail, &m), 0);
	}
	assert_int_equal(t_recv_int(exact, &m, 0), 2);
	assert_int_equal(shmbus_consumer__ack(exact, &m), 0);
	assert_int_equal(t_recv_int(eu, &m, 0), 3);
	assert_int_equal(shmbus_consumer__ack(eu, &m), 0);
	assert_int_equal(shmbus_consumer__try_receive(eu, &m), -EAGAIN);
	/* bad patterns */
	assert_null(shmbus_consumer__subscribe(bus, "orders.>.x", NULL));
	assert_null(shmbus_consumer__subscribe(bus, "orders.a*", NULL));
	assert_null(shmbus_consumer__subscribe(bus, "", NULL));
	/* no subscriber: published, delivered nowhere */
	assert_int_equal(shmbus__topic_declare(bus, "lonely", NULL), 1);
	pl = shmbus_producer__new(bus, "lonely", NULL);
	publish_n(pl, 0, 10);
	shmbus_producer__free(pl);
	shmbus_producer__free(pc);
	shmbus_producer__free(pp);
	shmbus_producer__free(pe);
	shmbus_consumer__free(star);
	shmbus_consumer__free(tail);
	shmbus_consumer__free(exact);
	shmbus_consumer__free(eu);
	assert_no_t_chunks_out(bus);
	shmbus__close(bus);
}

/* A received message names its topic (a retry's copy too), a queue's
 * message none, a topic deleted since none; and carries its TTL's end. */
static void test_topic_name(void **state)
{
	struct shmbus *bus = open_bus();
	SHMBUS_OPTS(shmbus_pub_opts, ttl, .ttl_ns = 10000 * MS);
	struct shmbus_producer *pa, *pb, *pq;
	struct shmbus_consumer *s, *q;
	struct shmbus_msg m;
	char name[64];
	int64_t now;

	(void)state;
	assert_int_equal(shmbus__topic_declare(bus, "names.a", NULL), 1);
	assert_int_equal(shmbus__topic_declare(bus, "names.b", NULL), 1);
	assert_true(shmbus__queue_declare(bus, "names.q", NULL) >= 0);
	s = sub(bus, "names.*", "n", SHMBUS_SUB_DURABLE);
	q = shmbus_consumer__new(bus, "names.q", NULL);
	pa = shmbus_producer__new(bus, "names.a", NULL);
	pb = shmbus_producer__new(bus, "names.b", NULL);
	pq = shmbus_producer__new(bus, "names.q", NULL);
	assert_non_null(q);
	assert_non_null(pa);
	assert_non_null(pb);
	assert_non_null(pq);
	publish_n(pa, 1, 1);
	publish_n(pb, 2, 1);
	assert_int_equal(t_recv_int(s, &m, 0), 1);
	assert_int_not_equal(m.topic, 0);
	assert_int_equal(shmbus_msg__topic(s, &m, name, sizeof(name)), 7);
	assert_string_equal(name, "names.a");
	assert_int_equal(shmbus_msg__topic(s, &m, name, 7), -ENAMETOOLONG);
	assert_int_equal(m.expires_ns, 0);
	/* the retry is a private copy: it keeps its topic */
	assert_int_equal(shmbus_consumer__nack(s, &m, 0), 0);
	assert_int_equal(t_recv_int(s, &m, 0), 2);
	assert_int_equal(shmbus_msg__topic(s, &m, name, sizeof(name)), 7);
	assert_string_equal(name, "names.b");
	assert_int_equal(shmbus_consumer__ack(s, &m), 0);
	assert_int_equal(t_recv_int(s, &m, 0), 1);
	assert_int_equal(m.delivery_count, 2);
	assert_int_equal(shmbus_msg__topic(s, &m, name, sizeof(name)), 7);
	assert_string_equal(name, "names.a");
	assert_int_equal(shmbus_consumer__ack(s, &m), 0);
	/* a queue's message: no topic; its TTL's end */
	now = t_now_ns();
	assert_int_equal(shmbus_producer__publish(pq, &now, sizeof(int), &ttl),
			 0);
	assert_int_equal(shmbus_consumer__receive_view(q, &m, 0), 0);
	assert_int_equal(m.topic, 0);
	assert_int_equal(shmbus_msg__topic(q, &m, name, sizeof(name)),
			 -ENOENT);
	assert_true(m.expires_ns > (uint64_t)now &&
		    m.expires_ns <= (uint64_t)t_now_ns() + 10000 * MS);
	assert_int_equal(shmbus_consumer__ack(q, &m), 0);
	/* a topic deleted (and declared again) since: not named */
	publish_n(pa, 3, 1);
	shmbus_producer__free(pa);
	assert_int_equal(shmbus__queue_delete(bus, "names.a"), 0);
	assert_int_equal(shmbus__topic_declare(bus, "names.a", NULL), 1);
	assert_int_equal(t_recv_int(s, &m, 0), 3);
	assert_int_equal(shmbus_msg__topic(s, &m, name, sizeof(name)),
			 -ENOENT);
	assert_int_equal(shmbus_consumer__ack(s, &m), 0);
	shmbus_producer__free(pb);
	shmbus_producer__free(pq);
	shmbus_consumer__free(s);
	shmbus_consumer__free(q);
	assert_int_equal(shmbus__unsubscribe(bus, "names.*", "n"), 0);
	assert_no_t_chunks_out(bus);
	shmbus__close(bus);
}

static int count_subs(struct shmbus *bus, const char *prefix)
{
	struct shmbus_queue_info qi[64];
	int n = shmbus__queue_list(bus, qi, 64), k = 0;

	for (int i = 0; i < n; i++)
		k += qi[i].kind == SHMBUS_SUBSCRIPTION &&
		     !strncmp(qi[i].name, prefix, strlen(prefix));
	return k;
}

static void test_durable_ephemeral(void **state)
{
	struct shmbus *bus = open_bus();
	struct shmbus_consumer *c;
	struct shmbus_producer *p;
	struct shmbus_msg m;
	int seen[10] = { 0 };

	(void)state;
	assert_int_equal(shmbus__topic_declare(bus, "audit", NULL), 1);
	p = shmbus_producer__new(bus, "audit", NULL);
	assert_non_null(p);
	/* durable: keeps its messages while nobody is attached */
	c = sub(bus, "audit", "archive", SHMBUS_SUB_DURABLE);
	shmbus_consumer__free(c);
	publish_n(p, 0, 5);
	c = sub(bus, "audit", "archive", SHMBUS_SUB_DURABLE);
	assert_int_equal(drain(c, seen, 10), 5);
	shmbus_consumer__free(c);
	assert_int_equal(count_subs(bus, "audit#archive"), 1);
	assert_int_equal(shmbus__unsubscribe(bus, "audit", "archive"), 0);
	assert_int_equal(shmbus__unsubscribe(bus, "audit", "archive"), -ENOENT);
	/* ephemeral (exclusive, and a group without DURABLE): gone with
	 * their last consumer */
	c = sub(bus, "audit", NULL, 0);
	assert_int_equal(count_subs(bus, "audit#~"), 1);
	publish_n(p, 5, 2);
	assert_int_equal(t_recv_int(c, &m, 0), 5);
	shmbus_consumer__free(c);	/* holding a lease: fine */
	for (int i = 0; i < 500 && count_subs(bus, "audit#"); i++)
		usleep(2000);
	assert_int_equal(count_subs(bus, "audit#"), 0);
	c = sub(bus, "audit", "temp", 0);
	shmbus_consumer__free(c);
	assert_int_equal(count_subs(bus, "audit#temp"), 0);
	assert_int_equal(count_subs(bus, "audit#"), 0);
	publish_n(p, 7, 3);		/* goes nowhere */
	shmbus_producer__free(p);
	assert_no_t_chunks_out(bus);
	shmbus__close(bus);
}

static void test_slow_subscribers(void **state)
{
	struct shmbus *bus = open_bus();
	SHMBUS_OPTS(shmbus_sub_opts, slow, .group = "slow", .max_len = 8,
		    .flags = SHMBUS_SUB_DROP_OLDEST);
	SHMBUS_OPTS(shmbus_sub_opts, blk, .group = "blocking", .max_len = 4);
	SHMBUS_OPTS(shmbus_pub_opts, wait50, .timeout_ns = 50 * MS);
	struct shmbus_consumer *s, *f, *b;
	struct shmbus_queue_info qi;
	struct shmbus_producer *p;
	struct shmbus_msg m;
	static int seen[200];

	(void)state;
	assert_int_equal(shmbus__topic_declare(bus, "prices", NULL), 1);
	s = shmbus_consumer__subscribe(bus, "prices", &slow);
	assert_non_null(s);
	f = sub(bus, "prices", "fast", 0);
	p = shmbus_producer__new(bus, "prices", NULL);
	/* the slow one never reads: the publisher never waits, the fast
	 * one gets everything */
	for (int i = 0; i < 100; i++) {
		int64_t t0 = t_now_ns();

		assert_int_equal(shmbus_producer__publish(p, &i, sizeof(i), NULL), 0);
		assert_true(t_now_ns() - t0 < 1000 * MS);
		drain(f, seen, 200);
	}
	for (int i = 0; i < 100; i++)
		assert_int_equal(seen[i], 1);
	assert_int_equal(shmbus__queue_info(bus, "prices#slow", &qi), 0);
	assert_int_equal(qi.kind, SHMBUS_SUBSCRIPTION);
	assert_int_equal(qi.depth, 8);
	assert_int_equal(qi.sub_dropped, 92);
	for (int i = 92; i < 100; i++) {	/* the newest 8 */
		assert_int_equal(t_recv_int(s, &m, 0), i);
		assert_int_equal(shmbus_consumer__ack(s, &m), 0);
	}
	/* blocking policy: waits, then misses it (counted), -ENOBUFS;
	 * the others still get it */
	b = shmbus_consumer__subscribe(bus, "prices", &blk);
	assert_non_null(b);
	for (int i = 100; i < 104; i++)
		assert_int_equal(shmbus_producer__publish(p, &i, sizeof(i), NULL), 0);
	{
		int v = 104;
		int64_t t0 = t_now_ns();

		assert_int_equal(shmbus_producer__publish(p, &v, sizeof(v),
							  &wait50), -ENOBUFS);
		assert_true(t_now_ns() - t0 >= 45 * MS);
	}
	assert_int_equal(shmbus__queue_info(bus, "prices#blocking", &qi), 0);
	assert_int_equal(qi.sub_dropped, 1);
	assert_int_equal(drain(f, seen, 200), 5);
	assert_int_equal(seen[104], 1);
	shmbus_consumer__free(b);
	shmbus_consumer__free(s);
	shmbus_consumer__free(f);
	shmbus_producer__free(p);
	assert_no_t_chunks_out(bus);
	shmbus__close(bus);
}

static void test_history(void **state)
{
	struct shmbus *bus = open_bus();
	SHMBUS_OPTS(shmbus_topic_opts, to, .history = 5);
	struct shmbus_consumer *late, *none;
	struct shmbus_producer *p;
	struct shmbus_msg m;

	(void)state;
	assert_int_equal(shmbus__topic_declare(bus, "weather", &to), 1);
	p = shmbus_producer__new(bus, "weather", NULL);
	assert_non_null(p);
	publish_n(p, 0, 10);
	late = sub(bus, "weather", "late", SHMBUS_SUB_HISTORY);
	none = sub(bus, "weather", "fresh", 0);
	publish_n(p, 10, 1);
	for (int i = 5; i <= 10; i++) {
		assert_int_equal(t_recv_int(late, &m, 0), i);
		assert_int_equal(shmbus_consumer__ack(late, &m), 0);
	}
	assert_int_equal(t_recv_int(none, &m, 0), 10);
	assert_int_equal(shmbus_consumer__ack(none, &m), 0);
	shmbus_consumer__free(late);
	shmbus_consumer__free(none);
	shmbus_producer__free(p);
	/* the history ring (5 rounded up to 8) holds 8 chunks until the
	 * topic goes; late joiners get the newest 5 */
	assert_int_equal(t_chunks_out(bus), 8);
	assert_int_equal(shmbus__queue_delete(bus, "weather"), 0);
	assert_no_t_chunks_out(bus);
	shmbus__close(bus);
}

/*
 * A nack in one group retries a private copy there (delivery count 2);
 * the other group's delivery is untouched. A subscriber killed holding
 * leases: its group's other consumer gets them.
 */
static void test_retry_and_death(void **state)
{
	struct shmbus *bus = open_bus();
	struct shmbus_consumer *a, *b, *a2;
	struct shmbus_producer *p;
	struct shmbus_msg ma, mb;
	int ready[2], seen[10] = { 0 };
	pid_t kid;
	char x;

	(void)state;
	assert_int_equal(shmbus__topic_declare(bus, "jobs", NULL), 1);
	a = sub(bus, "jobs", "a", SHMBUS_SUB_DURABLE);
	b = sub(bus, "jobs", "b", 0);
	p = shmbus_producer__new(bus, "jobs", NULL);
	publish_n(p, 0, 1);
	assert_int_equal(t_recv_int(a, &ma, 0), 0);
	assert_int_equal(t_recv_int(b, &mb, 0), 0);
	assert_int_equal(shmbus_consumer__nack(a, &ma, 0), 0);
	assert_int_equal(t_recv_int(a, &ma, 0), 0);
	assert_int_equal(ma.delivery_count, 2);
	assert_int_equal(mb.delivery_count, 1);
	assert_int_equal(*(const int *)mb.data, 0);	/* still intact */
	assert_int_equal(shmbus_consumer__ack(a, &ma), 0);
	assert_int_equal(shmbus_consumer__ack(b, &mb), 0);

	/* a consumer of group a killed with 3 leases */
	assert_int_equal(pipe(ready), 0);
	if (!(kid = fork())) {
		struct shmbus *bb = open_bus();
		SHMBUS_OPTS(shmbus_sub_opts, so, .group = "a",
			    .flags = SHMBUS_SUB_DURABLE);
		struct shmbus_consumer *k =
			shmbus_consumer__subscribe(bb, "jobs", &so);
		struct shmbus_msg v[3];

		CHILD_CHECK(k, "subscribe");
		CHILD_CHECK(write(ready[1], "r", 1) == 1, "ready");
		for (int i = 0; i < 3; i++)
			CHILD_CHECK(!shmbus_consumer__receive_view(k, &v[i],
					5000 * MS), "receive");
		CHILD_CHECK(write(ready[1], "r", 1) == 1, "ready");
		pause();
		_exit(0);
	}
	assert_int_equal(read(ready[0], &x, 1), 1);
	shmbus_consumer__free(a);	/* the child alone in group a */
	publish_n(p, 1, 3);
	assert_int_equal(read(ready[0], &x, 1), 1);
	kill(kid, SIGKILL);
	assert_int_equal(t_wait(kid, 5000), 128 + SIGKILL);
	a2 = sub(bus, "jobs", "a", SHMBUS_SUB_DURABLE);
	for (int i = 0; i < 3; i++) {
		int v = t_recv_int(a2, &ma, 5000 * MS);

		assert_true(v >= 1 && v <= 3);
		seen[v]++;
		assert_int_equal(ma.delivery_count, 2);
		assert_int_equal(shmbus_consumer__ack(a2, &ma), 0);
	}
	for (int i = 1; i <= 3; i++)
		assert_int_equal(seen[i], 1);
	assert_int_equal(drain(b, seen, 10), 3);
	shmbus_consumer__free(a2);
	shmbus_consumer__free(b);
	shmbus_producer__free(p);
	assert_int_equal(shmbus__unsubscribe(bus, "jobs", "a"), 0);
	assert_no_t_chunks_out(bus);
	shmbus__close(bus);
}

/*
 * Subscriptions come and go (other processes, in a loop) while two
 * publishers publish: nothing crashes, every message a subscription
 * received is intact, and when all is over every chunk is back.
 */
static void test_churn(void **state)
{
	struct shmbus *bus = open_bus();
	pid_t pubs[2], subs[2];
	int64_t end = t_now_ns() + (int64_t)t_scaled(1500) * MS;

	(void)state;
	assert_int_equal(shmbus__topic_declare(bus, "churn.a", NULL), 1);
	assert_int_equal(shmbus__topic_declare(bus, "churn.b", NULL), 1);
	for (int k = 0; k < 2; k++) {
		if (!(pubs[k] = fork())) {
			struct shmbus *b = open_bus();
			struct shmbus_producer *p = shmbus_producer__new(b,
					k ? "churn.b" : "churn.a", NULL);
			SHMBUS_OPTS(shmbus_pub_opts, po, .timeout_ns = MS);
			int i = 0;

			CHILD_CHECK(p, "producer");
			while (t_now_ns() < end) {
				int err = shmbus_producer__publish(p, &i,
							sizeof(i), &po);

				CHILD_CHECK(!err || err == -ENOBUFS,
					    "publish: %s", strerror(-err));
				i++;
			}
			shmbus_producer__free(p);
			_exit(0);
		}
	}
	for (int k = 0; k < 2; k++) {
		if (!(subs[k] = fork())) {
			struct shmbus *b = open_bus();
			unsigned rounds = 0;

			while (t_now_ns() < end) {
				SHMBUS_OPTS(shmbus_sub_opts, so,
					    .max_len = 64,
					    .flags = rounds % 2 ?
						SHMBUS_SUB_DROP_OLDEST : 0);
				struct shmbus_consumer *c =
					shmbus_consumer__subscribe(b,
						k ? "churn.*" : "churn.>", &so);
				struct shmbus_msg m;

				CHILD_CHECK(c, "subscribe: %s", strerror(errno));
				for (int i = 0; i < 50; i++) {
					if (shmbus_consumer__try_receive(c, &m))
						continue;
					CHILD_CHECK(m.len == sizeof(int),
						    "bad length");
					if (i % 3)
						shmbus_consumer__ack(c, &m);
				}
				/* freed holding some leases */
				shmbus_consumer__free(c);
				rounds++;
			}
			_exit(0);
		}
	}
	for (int k = 0; k < 2; k++) {
		assert_int_equal(t_wait(pubs[k], 30000), 0);
		assert_int_equal(t_wait(subs[k], 30000), 0);
	}
	assert_int_equal(count_subs(bus, "churn"), 0);
	assert_no_t_chunks_out(bus);
	shmbus__close(bus);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_groups),
		cmocka_unit_test(test_fanout_8),
		cmocka_unit_test(test_wildcards),
		cmocka_unit_test(test_topic_name),
		cmocka_unit_test(test_durable_ephemeral),
		cmocka_unit_test(test_slow_subscribers),
		cmocka_unit_test(test_history),
		cmocka_unit_test(test_retry_and_death),
		cmocka_unit_test(test_churn),
	};

	return T_RUN_WITH_DAEMON("topics", tests);
}
