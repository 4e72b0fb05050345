// SPDX-License-Identifier: MIT
/*
 * test_durable.c - durable queues with real daemons, real processes and a
 * real state directory: what a restart brings back (cold, after every
 * process died, and adopted, with clients alive), in order, with its
 * delivery counts, TTLs, delays, dedup keys and dead letters; journals
 * torn and corrupted on disk; a full disk; and kill -9 of the daemon and
 * every client at random moments, a hundred times per sync policy, with
 * the figure printed: sent, confirmed, received, lost, duplicated,
 * corrupt. 0 lost (of the confirmed) is the bar; duplicates are allowed
 * (at least once) and counted.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <shmbus.h>
#include "helpers.h"

#define MS		1000000LL
#define NSEC_PER_SEC_T	1000000000LL
#define BUS		"dur"

static char state[PATH_MAX];

/* ---- the daemon ------------------------------------------------------- */

/* A daemon on t_sock with the test's state directory (and up to two
 * @extra arguments); its pid once it listens. */
static pid_t daemon_start_args(const char *extra, const char *extra2)
{
	const char *const e[] = { extra, extra2, NULL };
	pid_t pid = t_daemon_start_state(t_sock, state, e);

	if (!pid)
		fail_msg("no daemon on %s", t_sock);
	return pid;
}

static pid_t daemon_start(void)
{
	return daemon_start_args(NULL, NULL);
}

static void daemon_kill(pid_t pid)
{
	assert_true(t_daemon_kill_pid(pid));
}

/* A bus of our own, never starting a daemon (that one would not know
 * the state directory). */
static struct shmbus *bus_open(void)
{
	SHMBUS_OPTS(shmbus_open_opts, o, .flags = SHMBUS_OPEN_NOSTART,
		    .connect_timeout_ms = 5000);
	struct shmbus *bus = shmbus__open(BUS, &o);

	if (!bus)
		fail_msg("open %s: %s (%s)", BUS, strerror(errno),
			 shmbus_errmsg());
	return bus;
}

/* bus_open() for a forked child: a failure ends the child (a cmocka
 * failure there would run the test program's teardown in the child,
 * which kills the daemon and removes the test's directory under the
 * parent). The kill -9 loop's daemons die under opens now and then. */
static struct shmbus *child_bus_open(void)
{
	SHMBUS_OPTS(shmbus_open_opts, o, .flags = SHMBUS_OPEN_NOSTART,
		    .connect_timeout_ms = 5000);
	struct shmbus *bus = shmbus__open(BUS, &o);

	if (!bus)
		_exit(2);
	return bus;
}

static void declare(struct shmbus *bus, const char *name,
		    const struct shmbus_queue_opts *qo)
{
	int r = shmbus__queue_declare(bus, name, qo);

	if (r < 0)
		fail_msg("declare %s: %s (%s)", name, strerror(-r),
			 shmbus_errmsg());
}

static struct shmbus_journal_info journal(struct shmbus *bus, const char *q)
{
	struct shmbus_journal_info ji = { .sz = sizeof(ji) };

	assert_int_equal(shmbus__queue_journal(bus, q, &ji), 0);
	return ji;
}

/* Wait until queue @q's journal holds @live unsettled messages (the
 * daemon finds acks at its tick). */
static void wait_live(struct shmbus *bus, const char *q, uint64_t live)
{
	struct shmbus_journal_info ji;

	for (int i = 0; i < 3000; i++) {
		ji = journal(bus, q);
		if (ji.live == live)
			return;
		usleep(1000);
	}
	fail_msg("queue %s: %llu live in the journal, expected %llu", q,
		 (unsigned long long)ji.live, (unsigned long long)live);
}

static void setup_state(void)
{
	snprintf(state, sizeof(state), "%s/state", t_dir);
}

/* ---- messages -------------------------------------------------------- */

struct body {
	uint64_t seq;
	uint32_t sum;
	uint32_t pad;
};

static struct body body_of(uint64_t seq)
{
	struct body b = { .seq = seq };

	b.sum = t_fnv(&b.seq, sizeof(b.seq));
	return b;
}

static bool body_ok(const struct shmbus_msg *m, uint64_t *seq)
{
	struct body b;

	if (m->len != sizeof(b))
		return false;
	memcpy(&b, m->data, sizeof(b));
	*seq = b.seq;
	return b.sum == t_fnv(&b.seq, sizeof(b.seq));
}

/* Publish seqs [from, to) and wait for their confirm. */
static void publish_range(struct shmbus_producer *p, uint64_t from,
			  uint64_t to)
{
	for (uint64_t s = from; s < to; s++) {
		struct body b = body_of(s);
		int r = shmbus_producer__publish(p, &b, sizeof(b), NULL);

		if (r)
			fail_msg("publish %llu: %s", (unsigned long long)s,
				 strerror(-r));
	}
	assert_int_equal(shmbus_producer__confirm_wait(p, 10 * NSEC_PER_SEC_T),
			 0);
}

/* ---- the tests --------------------------------------------------------- */

/*
 * Publish 200, ack the first 80, receive 20 more without acking them,
 * then kill -9 the daemon and close every client: a cold start brings
 * back the 120 not acked, in order, the 20 that were leased counted as
 * delivered once already.
 */
static void test_cold_recovery(void **st)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .flags = SHMBUS_QUEUE_DURABLE,
		    .max_len = 1024);
	SHMBUS_OPTS(shmbus_producer_opts, po,
		    .flags = SHMBUS_PRODUCER_ASYNC_CONFIRM);
	struct shmbus_consumer *c;
	struct shmbus_producer *p;
	struct shmbus_msg m[20];
	struct shmbus *bus;
	pid_t d;
	uint64_t seq = 0, expect = 80;
	int n = 0, redelivered = 0;

	(void)st;
	d = daemon_start();
	bus = bus_open();
	declare(bus, "cold", &qo);
	/* a queue may have the name of the bus's own state file */
	declare(bus, "bus.conf", &qo);
	p = shmbus_producer__new(bus, "cold", &po);
	assert_non_null(p);
	publish_range(p, 0, 200);
	assert_int_equal(journal(bus, "cold").live, 200);
	c = shmbus_consumer__new(bus, "cold", NULL);
	assert_non_null(c);
	for (int i = 0; i < 80; i++) {
		assert_int_equal(shmbus_consumer__receive_view(c, &m[0], 2000 * MS),
				 0);
		assert_true(body_ok(&m[0], &seq));
		assert_int_equal(seq, (uint64_t)i);
		assert_int_equal(shmbus_consumer__ack(c, &m[0]), 0);
	}
	for (int i = 0; i < 20; i++)
		assert_int_equal(shmbus_consumer__receive_view(c, &m[i], 2000 * MS),
				 0);
	wait_live(bus, "cold", 120);
	usleep(50 * 1000);	/* the tick notes the leases */
	daemon_kill(d);
	shmbus_consumer__free(c);
	shmbus_producer__free(p);
	shmbus__close(bus);

	d = daemon_start();
	bus = bus_open();
	assert_int_equal(journal(bus, "cold").live, 120);
	assert_int_equal(journal(bus, "bus.conf").live, 0);
	c = shmbus_consumer__new(bus, "cold", NULL);
	assert_non_null(c);
	while (shmbus_consumer__receive_view(c, &m[0], 500 * MS) == 0) {
		assert_true(body_ok(&m[0], &seq));
		assert_int_equal(seq, expect);
		expect++;
		if (seq < 100 && m[0].delivery_count >= 2)
			redelivered++;
		assert_int_equal(shmbus_consumer__ack(c, &m[0]), 0);
		n++;
	}
	printf("cold start: %d of 120 back in order, %d of the 20 leased "
	       "at the kill counted as redelivered\n", n, redelivered);
	assert_int_equal(n, 120);
	assert_int_equal(redelivered, 20);
	wait_live(bus, "cold", 0);
	shmbus_consumer__free(c);
	shmbus__close(bus);
	daemon_kill(d);
}

/*
 * A cold start of a bus whose pool had grown: it is made again with the
 * count it had when its queue was declared (64 chunks), and the daemon
 * grows it as recovery runs out of chunks, so all 450 messages are back
 * in the queue at once, before any client attaches, and come out in
 * order.
 */
static void test_cold_recovery_grows(void **st)
{
	SHMBUS_OPTS(shmbus_open_opts, oo, .flags = SHMBUS_OPEN_NOSTART,
		    .nr_pools = 1, .pools = { { 64, 64 } }, .pool_growth = 8);
	SHMBUS_OPTS(shmbus_queue_opts, qo, .flags = SHMBUS_QUEUE_DURABLE,
		    .max_len = 1024, .msg_size = 64);
	SHMBUS_OPTS(shmbus_pub_opts, wait, .timeout_ns = 10 * NSEC_PER_SEC_T);
	const int sent = 450;
	struct shmbus_queue_info qi;
	struct shmbus_pool_info pi;
	struct shmbus_consumer *c;
	struct shmbus_producer *p;
	struct shmbus_msg m;
	struct shmbus *bus;
	uint64_t seq = 0, expect = 0;
	int received = 0, corrupt = 0, dup = 0, i;
	pid_t d;

	(void)st;
	d = daemon_start();
	bus = shmbus__open("durgrow", &oo);
	assert_non_null(bus);
	declare(bus, "g", &qo);
	p = shmbus_producer__new(bus, "g", NULL);
	assert_non_null(p);
	for (int s = 0; s < sent; s++) {
		struct body b = body_of((uint64_t)s);

		assert_int_equal(shmbus_producer__publish(p, &b, sizeof(b),
							  &wait), 0);
	}
	assert_int_equal(shmbus_producer__confirm_wait(p, 10 * NSEC_PER_SEC_T),
			 0);
	assert_int_equal(shmbus__pool_info(bus, 0, &pi), 0);
	assert_true(pi.chunks > 64);
	daemon_kill(d);
	shmbus_producer__free(p);
	shmbus__close(bus);

	d = daemon_start();
	bus = shmbus__open("durgrow", &oo);
	assert_non_null(bus);
	for (i = 0; i < 2000; i++) {
		assert_int_equal(shmbus__queue_info(bus, "g", &qi), 0);
		if (qi.depth == (uint64_t)sent)
			break;
		usleep(1000);
	}
	assert_int_equal(shmbus__pool_info(bus, 0, &pi), 0);
	printf("cold start of a grown pool: %llu of %d in the queue after %d "
	       "ms, the pool at %u of %u chunks\n",
	       (unsigned long long)qi.depth, sent, i, pi.chunks, pi.chunks_max);
	assert_int_equal(qi.depth, sent);
	c = shmbus_consumer__new(bus, "g", NULL);
	assert_non_null(c);
	while (shmbus_consumer__receive_view(c, &m, 500 * MS) == 0) {
		if (!body_ok(&m, &seq))
			corrupt++;
		else if (seq < expect)
			dup++;		/* again, or out of order */
		else if (seq != expect)
			corrupt++;	/* out of order */
		else
			received++;
		if (seq >= expect)
			expect = seq + 1;
		assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	}
	printf("sent %d received %d lost %d duplicated %d corrupt %d\n",
	       sent, received, sent - received, dup, corrupt);
	assert_int_equal(received, sent);
	assert_int_equal(dup + corrupt, 0);
	shmbus_consumer__free(c);
	shmbus__close(bus);
	daemon_kill(d);
}

/*
 * The daemon dies while its clients live: the next one adopts the bus and
 * reattaches the journal; producers go on, their confirms come from the
 * new daemon, and a cold start after that still has exactly what was not
 * acked.
 */
static void test_adopted(void **st)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .flags = SHMBUS_QUEUE_DURABLE,
		    .sync = SHMBUS_SYNC_BATCH);
	SHMBUS_OPTS(shmbus_producer_opts, po,
		    .flags = SHMBUS_PRODUCER_ASYNC_CONFIRM);
	struct shmbus_consumer *c;
	struct shmbus_producer *p;
	struct shmbus_msg m;
	struct shmbus *bus;
	uint64_t seq, expect = 0;
	pid_t d;
	int n = 0;

	(void)st;
	d = daemon_start();
	bus = bus_open();
	declare(bus, "adopt", &qo);
	p = shmbus_producer__new(bus, "adopt", &po);
	assert_non_null(p);
	c = shmbus_consumer__new(bus, "adopt", NULL);
	assert_non_null(c);
	publish_range(p, 0, 100);
	for (int i = 0; i < 30; i++) {
		assert_int_equal(shmbus_consumer__receive_view(c, &m, 2000 * MS), 0);
		assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	}
	daemon_kill(d);
	/* in the intake while no daemon runs: journaled by the next one */
	for (uint64_t s = 100; s < 150; s++) {
		struct body b = body_of(s);

		assert_int_equal(shmbus_producer__publish(p, &b, sizeof(b), NULL),
				 0);
	}
	d = daemon_start();
	assert_int_equal(shmbus_producer__confirm_wait(p, 10 * NSEC_PER_SEC_T), 0);
	publish_range(p, 150, 200);
	for (int i = 0; i < 20; i++) {
		assert_int_equal(shmbus_consumer__receive_view(c, &m, 2000 * MS), 0);
		assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	}
	wait_live(bus, "adopt", 150);
	daemon_kill(d);
	shmbus_consumer__free(c);
	shmbus_producer__free(p);
	shmbus__close(bus);

	d = daemon_start();
	bus = bus_open();
	c = shmbus_consumer__new(bus, "adopt", NULL);
	assert_non_null(c);
	expect = 50;
	while (shmbus_consumer__receive_view(c, &m, 500 * MS) == 0) {
		assert_true(body_ok(&m, &seq));
		assert_int_equal(seq, expect);
		expect++;
		assert_int_equal(shmbus_consumer__ack(c, &m), 0);
		n++;
	}
	printf("adopted, then a cold start: %d of 150 back, in order\n", n);
	assert_int_equal(n, 150);
	shmbus_consumer__free(c);
	shmbus__close(bus);
	daemon_kill(d);
}

/*
 * What a message carries comes back with it: attributes, correlation id,
 * the rest of its TTL (one that ran out while no daemon ran is not
 * delivered), a delay still to run, a dedup key still in its window, and
 * a dead letter in a durable dead-letter queue.
 */
static void test_semantics_survive(void **st)
{
	SHMBUS_OPTS(shmbus_queue_opts, dlqo, .flags = SHMBUS_QUEUE_DURABLE);
	SHMBUS_OPTS(shmbus_queue_opts, qo, .flags = SHMBUS_QUEUE_DURABLE,
		    .max_deliveries = 1, .dead_letter_queue = "sem.dlq",
		    .dedup_window_ns = 60 * NSEC_PER_SEC_T);
	struct shmbus_attr at = { .key = "k", .value = "v1", .value_len = 2 };
	SHMBUS_OPTS(shmbus_pub_opts, with_attr, .attrs = &at, .nr_attrs = 1,
		    .corr_id = 77);
	SHMBUS_OPTS(shmbus_pub_opts, short_ttl, .ttl_ns = 200 * MS);
	SHMBUS_OPTS(shmbus_pub_opts, long_ttl, .ttl_ns = 60 * NSEC_PER_SEC_T);
	SHMBUS_OPTS(shmbus_pub_opts, delayed, .delay_ns = 1500 * MS);
	SHMBUS_OPTS(shmbus_pub_opts, keyed, .dedup_id = "order-42");
	struct shmbus_consumer *c;
	struct shmbus_producer *p;
	struct shmbus_msg m;
	struct shmbus *bus;
	const void *v;
	size_t vl;
	int64_t t0;
	pid_t d;

	(void)st;
	d = daemon_start();
	bus = bus_open();
	declare(bus, "sem.dlq", &dlqo);
	declare(bus, "sem", &qo);
	p = shmbus_producer__new(bus, "sem", NULL);
	assert_non_null(p);
	assert_int_equal(shmbus_producer__publish(p, "poison", 6, NULL), 0);
	c = shmbus_consumer__new(bus, "sem", NULL);
	assert_non_null(c);
	assert_int_equal(shmbus_consumer__receive_view(c, &m, 2000 * MS), 0);
	assert_int_equal(shmbus_consumer__nack(c, &m, 0), 0);	/* -> DLQ */
	assert_int_equal(shmbus_producer__publish(p, "attr", 4, &with_attr), 0);
	assert_int_equal(shmbus_producer__publish(p, "short", 5, &short_ttl), 0);
	assert_int_equal(shmbus_producer__publish(p, "long", 4, &long_ttl), 0);
	assert_int_equal(shmbus_producer__publish(p, "keyed", 5, &keyed), 0);
	assert_int_equal(shmbus_producer__publish(p, "delayed", 7, &delayed), 0);
	t0 = t_now_ns();
	/* an idle queue with a message held writes nothing more: the
	 * daemon's walk records changes, not every look (20 ticks) */
	{
		uint64_t w1, w2;

		/* the daemon has settled everything above first: the
		 * nacked one dead-lettered, five waiting (on a loaded
		 * machine that once came inside the window below) */
		wait_live(bus, "sem.dlq", 1);
		wait_live(bus, "sem", 5);
		usleep(100 * 1000);
		w1 = journal(bus, "sem").bytes;
		usleep(200 * 1000);
		w2 = journal(bus, "sem").bytes;
		printf("idle: %llu journal bytes, then %llu more in 200 ms\n",
		       (unsigned long long)w1, (unsigned long long)(w2 - w1));
		assert_int_equal(w2, w1);
	}
	shmbus_consumer__free(c);
	shmbus_producer__free(p);
	shmbus__close(bus);
	daemon_kill(d);
	usleep(300 * 1000);	/* the short TTL runs out meanwhile */

	d = daemon_start();
	bus = bus_open();
	p = shmbus_producer__new(bus, "sem", NULL);
	assert_non_null(p);
	/* the key is still seen: dropped, counted as a duplicate */
	assert_int_equal(shmbus_producer__publish(p, "keyed2", 6, &keyed), 0);
	c = shmbus_consumer__new(bus, "sem", NULL);
	assert_non_null(c);
	assert_int_equal(shmbus_consumer__receive_view(c, &m, 2000 * MS), 0);
	assert_int_equal(m.len, 4);
	assert_memory_equal(m.data, "attr", 4);
	assert_int_equal(m.corr_id, 77);
	assert_int_equal(shmbus_msg__attr(&m, "k", &v, &vl), 0);
	assert_int_equal(vl, 2);
	assert_memory_equal(v, "v1", 2);
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	assert_int_equal(shmbus_consumer__receive_view(c, &m, 2000 * MS), 0);
	assert_memory_equal(m.data, "long", 4);	/* "short" expired */
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	assert_int_equal(shmbus_consumer__receive_view(c, &m, 2000 * MS), 0);
	assert_int_equal(m.len, 5);
	assert_memory_equal(m.data, "keyed", 5);
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	assert_int_equal(shmbus_consumer__receive_view(c, &m, 3000 * MS), 0);
	assert_int_equal(m.len, 7);
	assert_memory_equal(m.data, "delayed", 7);
	printf("delayed message: due 1500 ms after its publish, delivered "
	       "after %lld ms across a restart\n",
	       (long long)((t_now_ns() - t0) / MS));
	assert_true(t_now_ns() - t0 >= 1400 * MS);
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	assert_int_equal(shmbus_consumer__receive_view(c, &m, 300 * MS),
			 -ETIMEDOUT);
	shmbus_consumer__free(c);
	c = shmbus_consumer__new(bus, "sem.dlq", NULL);
	assert_non_null(c);
	assert_int_equal(shmbus_consumer__receive_view(c, &m, 2000 * MS), 0);
	assert_int_equal(m.len, 6);
	assert_memory_equal(m.data, "poison", 6);
	assert_int_equal(m.dl_reason, SHMBUS_DL_MAX_DELIVERIES);
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	shmbus_consumer__free(c);
	shmbus_producer__free(p);
	shmbus__close(bus);
	daemon_kill(d);
}

/*
 * A persistent subscription keeps what its topic sent it across a cold
 * restart (the topic is declared again, as publishers do); a durable
 * subscription in memory beside it does not, and nothing else changes for
 * it while the daemon lives.
 */
static void test_persistent_subscription(void **st)
{
	SHMBUS_OPTS(shmbus_sub_opts, pso, .group = "keep",
		    .flags = SHMBUS_SUB_PERSISTENT);
	SHMBUS_OPTS(shmbus_sub_opts, mso, .group = "mem",
		    .flags = SHMBUS_SUB_DURABLE);
	struct shmbus_consumer *c, *cm;
	struct shmbus_producer *p;
	struct shmbus_msg m;
	struct shmbus *bus;
	uint64_t seq, expect = 10;
	int n = 0, nm = 0;
	pid_t d;

	(void)st;
	d = daemon_start();
	bus = bus_open();
	assert_true(shmbus__topic_declare(bus, "t.orders", NULL) >= 0);
	c = shmbus_consumer__subscribe(bus, "t.*", &pso);
	if (!c)
		fail_msg("subscribe: %s (%s)", strerror(errno), shmbus_errmsg());
	cm = shmbus_consumer__subscribe(bus, "t.*", &mso);
	assert_non_null(cm);
	p = shmbus_producer__new(bus, "t.orders", NULL);
	assert_non_null(p);
	for (uint64_t s = 0; s < 50; s++) {
		struct body b = body_of(s);

		assert_int_equal(shmbus_producer__publish(p, &b, sizeof(b), NULL),
				 0);
	}
	/* the in-memory subscription has them at once */
	while (shmbus_consumer__receive_view(cm, &m, 200 * MS) == 0) {
		assert_true(body_ok(&m, &seq));
		assert_int_equal(seq, (uint64_t)nm);
		shmbus_consumer__ack(cm, &m);
		nm++;
	}
	assert_int_equal(nm, 50);
	for (int i = 0; i < 10; i++) {
		assert_int_equal(shmbus_consumer__receive_view(c, &m, 2000 * MS), 0);
		assert_true(body_ok(&m, &seq));
		assert_int_equal(seq, (uint64_t)i);
		assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	}
	wait_live(bus, "t.*#keep", 40);
	shmbus_consumer__free(c);
	shmbus_consumer__free(cm);
	shmbus_producer__free(p);
	shmbus__close(bus);
	daemon_kill(d);

	d = daemon_start();
	bus = bus_open();
	assert_true(shmbus__topic_declare(bus, "t.orders", NULL) >= 0);
	c = shmbus_consumer__subscribe(bus, "t.*", &pso);
	assert_non_null(c);
	p = shmbus_producer__new(bus, "t.orders", NULL);
	assert_non_null(p);
	{
		struct body b = body_of(50);

		assert_int_equal(shmbus_producer__publish(p, &b, sizeof(b), NULL),
				 0);
	}
	while (shmbus_consumer__receive_view(c, &m, 500 * MS) == 0) {
		assert_true(body_ok(&m, &seq));
		assert_int_equal(seq, expect);
		expect++;
		assert_int_equal(shmbus_consumer__ack(c, &m), 0);
		n++;
	}
	printf("persistent subscription: %d of 40 back after a cold start, "
	       "then the new one; the in-memory one had %d and is gone\n",
	       n - 1, nm);
	assert_int_equal(n, 41);
	cm = shmbus_consumer__subscribe(bus, "t.*", &mso);
	assert_non_null(cm);	/* a new, empty one */
	assert_int_equal(shmbus_consumer__receive_view(cm, &m, 100 * MS),
			 -ETIMEDOUT);
	shmbus_consumer__free(cm);
	shmbus_consumer__free(c);
	shmbus_producer__free(p);
	shmbus__close(bus);
	daemon_kill(d);
}

/*
 * One producer's messages come out in publish order when the queue is
 * full most of the time: the daemon takes from the intake only what the
 * queue has room for, so the producer sees it full and waits.
 */
static void test_order_full_queue(void **st)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .flags = SHMBUS_QUEUE_DURABLE,
		    .sync = SHMBUS_SYNC_NEVER, .max_len = 16);
	SHMBUS_OPTS(shmbus_producer_opts, po,
		    .flags = SHMBUS_PRODUCER_ASYNC_CONFIRM);
	SHMBUS_OPTS(shmbus_pub_opts, wait, .timeout_ns = 10 * NSEC_PER_SEC_T);
	struct shmbus *bus;
	uint64_t expect = 0, seq = 0, late = 0;
	int64_t t0 = t_now_ns();
	pid_t d, pub;

	(void)st;
	d = daemon_start();
	bus = bus_open();
	declare(bus, "order", &qo);
	pub = fork();
	if (!pub) {
		struct shmbus *pb = child_bus_open();
		struct shmbus_producer *p = shmbus_producer__new(pb, "order", &po);

		for (uint64_t i = 0; p && i < 3000; i++) {
			struct body b = body_of(i);

			if (shmbus_producer__publish(p, &b, sizeof(b), &wait))
				_exit(4);
		}
		_exit(p && !shmbus_producer__confirm_wait(p,
				10 * NSEC_PER_SEC_T) ? 0 : 3);
	}
	{
		struct shmbus_consumer *c = shmbus_consumer__new(bus, "order",
								 NULL);
		struct shmbus_msg m;

		assert_non_null(c);
		while (expect < 3000 &&
		       shmbus_consumer__receive_view(c, &m, 3000 * MS) == 0) {
			assert_true(body_ok(&m, &seq));
			if (seq != expect)
				late++;
			expect = seq + 1;
			assert_int_equal(shmbus_consumer__ack(c, &m), 0);
			if (seq % 64 == 0)
				usleep(1000);	/* slower than the producer */
		}
		shmbus_consumer__free(c);
	}
	assert_int_equal(t_wait(pub, 20000), 0);
	printf("3000 messages through a 16-slot durable queue in %lld ms: "
	       "%llu out of order\n", (long long)((t_now_ns() - t0) / MS),
	       (unsigned long long)late);
	assert_int_equal(expect, 3000);
	assert_int_equal(late, 0);
	shmbus__close(bus);
	daemon_kill(d);
}

/*
 * A full durable queue (sync always) with its backlog full and a
 * publisher waiting: the daemon retries the backlog every millisecond,
 * and once it is journaled nothing is left to sync. A second with the
 * publisher blocked costs a handful of syncs, not hundreds (each retry
 * once re-armed the messages' hold a little later, a journal record and
 * a sync each time); then the messages all arrive, in order.
 */
static void test_blocked_syncs(void **st)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .flags = SHMBUS_QUEUE_DURABLE,
		    .max_len = 8);
	SHMBUS_OPTS(shmbus_queue_gauges, g);
	SHMBUS_OPTS(shmbus_bus_journal_info, bj0);
	SHMBUS_OPTS(shmbus_bus_journal_info, bj1);
	SHMBUS_OPTS(shmbus_pub_opts, wait, .timeout_ns = 20 * NSEC_PER_SEC_T);
	struct shmbus_consumer *c;
	struct shmbus_msg m;
	struct shmbus *bus;
	uint64_t seq = 0, expect = 0;
	pid_t d, pub;

	(void)st;
	d = daemon_start();
	bus = bus_open();
	declare(bus, "blk", &qo);
	pub = fork();
	if (!pub) {
		SHMBUS_OPTS(shmbus_producer_opts, po,
			    .flags = SHMBUS_PRODUCER_ASYNC_CONFIRM);
		struct shmbus *pb = child_bus_open();
		struct shmbus_producer *p = shmbus_producer__new(pb, "blk", &po);

		/* confirms later: the intake fills, then the publish waits */
		for (uint64_t i = 0; p && i < 400; i++) {
			struct body b = body_of(i);

			if (shmbus_producer__publish(p, &b, sizeof(b), &wait))
				_exit(4);
		}
		_exit(p && !shmbus_producer__confirm_wait(p,
				10 * NSEC_PER_SEC_T) ? 0 : 3);
	}
	for (int i = 0; i < 5000; i++) {
		assert_int_equal(shmbus__queue_gauges(bus, "blk", &g), 0);
		if (g.blocked_producers)
			break;
		usleep(1000);
	}
	assert_int_equal(g.blocked_producers, 1);
	usleep(200000);		/* what was written meanwhile is synced */
	assert_int_equal(shmbus__bus_journal(bus, &bj0), 0);
	usleep(1000000);
	assert_int_equal(shmbus__bus_journal(bus, &bj1), 0);
	printf("a publisher blocked 1 s on a full durable queue: %llu syncs "
	       "(%llu before)\n",
	       (unsigned long long)(bj1.syncs - bj0.syncs),
	       (unsigned long long)bj0.syncs);
	assert_true(bj1.syncs - bj0.syncs <= 5);
	c = shmbus_consumer__new(bus, "blk", NULL);
	assert_non_null(c);
	while (expect < 400 &&
	       shmbus_consumer__receive_view(c, &m, 5000 * MS) == 0) {
		assert_true(body_ok(&m, &seq));
		assert_int_equal(seq, expect);
		expect++;
		assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	}
	assert_int_equal(expect, 400);
	assert_int_equal(t_wait(pub, 20000), 0);
	shmbus_consumer__free(c);
	shmbus__close(bus);
	daemon_kill(d);
}

/*
 * More unsynced segments than one sync takes (it covers at most 8 files):
 * 300 messages of 3000 bytes written into 12 segments of 64 KiB within
 * one batch interval, then nothing more. Every one is confirmed: the sync
 * that stopped short is followed by another, not left for a next write
 * that never comes.
 */
static void test_sync_many_segments(void **st)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .flags = SHMBUS_QUEUE_DURABLE,
		    .sync = SHMBUS_SYNC_BATCH, .sync_interval_ns = NSEC_PER_SEC_T,
		    .max_len = 4096, .msg_size = 3000);
	SHMBUS_OPTS(shmbus_producer_opts, po,
		    .flags = SHMBUS_PRODUCER_ASYNC_CONFIRM);
	static char body[3000];
	struct shmbus_producer *p;
	struct shmbus *bus;
	int64_t t0;
	pid_t d;
	int err;

	(void)st;
	d = daemon_start_args("--segment-size", "64K");
	bus = bus_open();
	declare(bus, "segs", &qo);
	p = shmbus_producer__new(bus, "segs", &po);
	assert_non_null(p);
	t0 = t_now_ns();
	/* 12 flushes of 75 KB, each rolling a segment of its own, all
	 * within the interval after the first sync */
	for (int i = 0; i < 300; i++) {
		assert_int_equal(shmbus_producer__publish(p, body, sizeof(body),
							  NULL), 0);
		if (i % 25 == 24)
			usleep(20000);
	}
	err = shmbus_producer__confirm_wait(p, 10 * NSEC_PER_SEC_T);
	usleep(300000);		/* the journal's numbers, as of now */
	printf("300 x 3000 bytes into 64 KiB segments (%u of them, %llu "
	       "bytes, %llu written): confirmed in %lld ms: %s\n",
	       journal(bus, "segs").segments,
	       (unsigned long long)journal(bus, "segs").bytes,
	       (unsigned long long)journal(bus, "segs").written,
	       (long long)((t_now_ns() - t0) / MS), strerror(-err));
	assert_int_equal(err, 0);
	assert_true(journal(bus, "segs").segments > 8);
	shmbus_producer__free(p);
	shmbus__close(bus);
	daemon_kill(d);
}

/* Is the state directory's entry for bus @name of our uid there? */
static bool bus_dir_exists(const char *name)
{
	char dir[PATH_MAX + 80];
	struct stat st;

	snprintf(dir, sizeof(dir), "%s/%u/%s", state, (unsigned)geteuid(),
		 name);
	return !stat(dir, &st);
}

/*
 * A bus with durable queues, deleted: its state directory goes (journals,
 * bus.conf), and a restarted daemon does not make it again. Likewise a
 * bus whose last durable queue was deleted, the bus itself kept: no
 * bus.conf stays behind to bring it back empty after a restart.
 */
static void test_bus_delete_durable(void **st)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .flags = SHMBUS_QUEUE_DURABLE);
	SHMBUS_OPTS(shmbus_open_opts, oo, .socket_path = t_sock,
		    .flags = SHMBUS_OPEN_NOSTART);
	struct shmbus_bus_entry e[16];
	struct shmbus_producer *p;
	struct shmbus *bus, *kept;
	pid_t d;
	int v = 1, n;

	(void)st;
	d = daemon_start();
	bus = bus_open();
	declare(bus, "dq", &qo);
	declare(bus, "plain", NULL);
	p = shmbus_producer__new(bus, "dq", NULL);
	assert_non_null(p);
	assert_int_equal(shmbus_producer__publish(p, &v, sizeof(v), NULL), 0);
	shmbus_producer__free(p);
	kept = shmbus__open("dur.kept", &oo);
	assert_non_null(kept);
	declare(kept, "kq", &qo);
	assert_true(bus_dir_exists(BUS));
	assert_true(bus_dir_exists("dur.kept"));
	/* the last durable queue of dur.kept goes: its directory too */
	assert_int_equal(shmbus__queue_delete(kept, "kq"), 0);
	assert_false(bus_dir_exists("dur.kept"));
	shmbus__close(kept);
	shmbus__close(bus);
	assert_int_equal(shmbus__bus_delete(BUS, 0, &oo, NULL), 0);
	assert_false(bus_dir_exists(BUS));
	daemon_kill(d);
	d = daemon_start();
	n = shmbus__bus_list(&oo, e, 16);
	assert_true(n >= 0);
	for (int i = 0; i < n && i < 16; i++) {
		print_message("after the restart: bus %s\n", e[i].name);
		assert_string_not_equal(e[i].name, BUS);
		assert_string_not_equal(e[i].name, "dur.kept");
	}
	daemon_kill(d);
}

/*
 * Segments go once everything in them is settled: 5000 messages through
 * 64 KiB segments, all acked, leave the journal a segment or two.
 */
static void test_segments_deleted(void **st)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .flags = SHMBUS_QUEUE_DURABLE,
		    .sync = SHMBUS_SYNC_BATCH, .max_len = 8192);
	SHMBUS_OPTS(shmbus_producer_opts, po,
		    .flags = SHMBUS_PRODUCER_ASYNC_CONFIRM);
	struct shmbus_journal_info ji, top = { 0 };
	struct shmbus_consumer *c;
	struct shmbus_producer *p;
	struct shmbus_msg m;
	struct shmbus *bus;
	char buf[200] = { 0 };
	int n = 0;
	pid_t d;

	(void)st;
	d = daemon_start_args("--segment-size", "64K");
	bus = bus_open();
	declare(bus, "seg", &qo);
	p = shmbus_producer__new(bus, "seg", &po);
	c = shmbus_consumer__new(bus, "seg", NULL);
	assert_non_null(p);
	assert_non_null(c);
	for (int round = 0; round < 10; round++) {
		for (int i = 0; i < 500; i++)
			assert_int_equal(shmbus_producer__publish(p, buf,
						sizeof(buf), NULL), 0);
		assert_int_equal(shmbus_producer__confirm_wait(p,
				 10 * NSEC_PER_SEC_T), 0);
		ji = journal(bus, "seg");
		if (ji.segments > top.segments)
			top = ji;
		while (shmbus_consumer__receive_view(c, &m, 100 * MS) == 0) {
			assert_int_equal(shmbus_consumer__ack(c, &m), 0);
			n++;
		}
	}
	assert_int_equal(n, 5000);
	wait_live(bus, "seg", 0);
	for (int i = 0; i < 3000; i++) {
		ji = journal(bus, "seg");
		if (ji.segments <= 2)
			break;
		usleep(1000);
	}
	printf("5000 messages through 64 KiB segments: at most %u segments "
	       "(%llu bytes) at a time, %u (%llu bytes) once all were acked\n",
	       top.segments, (unsigned long long)top.bytes, ji.segments,
	       (unsigned long long)ji.bytes);
	assert_true(ji.segments <= 2);
	shmbus_consumer__free(c);
	shmbus_producer__free(p);
	shmbus__close(bus);
	daemon_kill(d);
}

/* ---- journals damaged on disk -------------------------------------------- */

/* The segment files of queue @q, sorted, into @out (at most @max). */
static int segments(const char *q, char out[][PATH_MAX], int max)
{
	char cmd[PATH_MAX * 2];
	FILE *f;
	int n = 0;

	snprintf(cmd, sizeof(cmd), "ls %s/0/%s/queues/%s/*.seg 2>/dev/null | sort",
		 state, BUS, q);
	f = popen(cmd, "r");
	assert_non_null(f);
	while (n < max && fgets(out[n], PATH_MAX, f)) {
		out[n][strcspn(out[n], "\n")] = '\0';
		n++;
	}
	pclose(f);
	return n;
}

static void file_poke(const char *path, off_t off, const void *buf, size_t n)
{
	int fd = open(path, O_WRONLY);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, buf, n, off), (ssize_t)n);
	close(fd);
}

static off_t file_size(const char *path)
{
	struct stat sb;

	assert_int_equal(stat(path, &sb), 0);
	return sb.st_size;
}

/*
 * Four segments of 2000 messages of 200 bytes each (64 KiB segments),
 * then, with everything stopped: a bit flipped in the second segment, a
 * zero-filled 4 KiB block in the third, the fourth (last) cut in the
 * middle of a record, and (on a copy) the second segment removed. The
 * daemon starts, keeps every intact message, counts and logs the rest.
 */
static void test_damaged_journal(void **st)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .flags = SHMBUS_QUEUE_DURABLE,
		    .sync = SHMBUS_SYNC_NEVER, .max_len = 4096);
	SHMBUS_OPTS(shmbus_producer_opts, po,
		    .flags = SHMBUS_PRODUCER_ASYNC_CONFIRM);
	char seg[16][PATH_MAX], buf[200], cmd[4 * PATH_MAX + 32];
	struct shmbus_journal_info ji;
	struct shmbus_consumer *c;
	struct shmbus_producer *p;
	struct shmbus_msg m;
	struct shmbus *bus;
	uint8_t zero[4096] = { 0 }, byte;
	int nseg, n = 0, bad = 0;
	off_t sz;
	pid_t d;

	(void)st;
	d = daemon_start_args("--segment-size", "64K");
	bus = bus_open();
	declare(bus, "torn", &qo);
	p = shmbus_producer__new(bus, "torn", &po);
	assert_non_null(p);
	for (int i = 0; i < 1000; i++) {
		memset(buf, 'a' + i % 26, sizeof(buf));
		memcpy(buf, &i, sizeof(i));
		assert_int_equal(shmbus_producer__publish(p, buf, sizeof(buf),
							  NULL), 0);
		/* one write per 50: the journal rolls between writes */
		if (i % 50 == 49)
			assert_int_equal(shmbus_producer__confirm_wait(p,
					 10 * NSEC_PER_SEC_T), 0);
	}
	shmbus_producer__free(p);
	shmbus__close(bus);
	daemon_kill(d);
	nseg = segments("torn", seg, 16);
	printf("journal: %d segments\n", nseg);
	assert_true(nseg >= 4);
	/* a bit in the middle of segment 2 */
	sz = file_size(seg[1]);
	{
		int fd = open(seg[1], O_RDONLY);

		assert_int_equal(pread(fd, &byte, 1, sz / 2), 1);
		close(fd);
	}
	byte ^= 0x10;
	file_poke(seg[1], sz / 2, &byte, 1);
	/* a zero block in segment 3 */
	file_poke(seg[2], 8192, zero, sizeof(zero));
	/* the last one torn in the middle of a record */
	sz = file_size(seg[nseg - 1]);
	assert_int_equal(truncate(seg[nseg - 1], sz - 100), 0);
	/* the same, for the missing segment below */
	snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s.copy'", state, state);
	assert_int_equal(system(cmd), 0);

	d = daemon_start_args("--segment-size", "64K");
	bus = bus_open();
	ji = journal(bus, "torn");
	printf("after damage: replayed %llu records, %llu corrupt, %llu live\n",
	       (unsigned long long)ji.replayed, (unsigned long long)ji.corrupt,
	       (unsigned long long)ji.live);
	assert_true(ji.corrupt >= 2);
	c = shmbus_consumer__new(bus, "torn", NULL);
	assert_non_null(c);
	while (shmbus_consumer__receive_view(c, &m, 300 * MS) == 0) {
		int i;

		memcpy(&i, m.data, sizeof(i));
		if (m.len != sizeof(buf) || ((const char *)m.data)[100] !=
		    'a' + i % 26)
			bad++;
		n++;
		shmbus_consumer__release(c, &m);
	}
	printf("after damage: %d of 1000 messages back (%llu lost with the "
	       "damaged records), %d corrupt\n", n,
	       (unsigned long long)(1000 - n), bad);
	assert_int_equal(bad, 0);
	/* a flipped bit and a zero block cost a few records; the tail one */
	assert_true(n >= 1000 - 60 && n < 1000);
	shmbus_consumer__free(c);
	shmbus__close(bus);
	daemon_kill(d);

	/* the damaged journal again, and a segment missing in the middle */
	snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mv '%s.copy' '%s'", state,
		 state, state);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(unlink(seg[1]), 0);
	d = daemon_start_args("--segment-size", "64K");
	bus = bus_open();
	ji = journal(bus, "torn");
	printf("and segment 2 of %d removed: %llu live of %d\n", nseg,
	       (unsigned long long)ji.live, n);
	assert_true(ji.live > 0 && ji.live < (uint64_t)n);
	shmbus__close(bus);
	daemon_kill(d);
}

/*
 * The state directory on a 1 MiB tmpfs: publishing until it is full
 * fails with ENOSPC (the confirm says so), the daemon lives, and what was
 * confirmed before is all there after a restart.
 */
static void test_full_disk(void **st)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .flags = SHMBUS_QUEUE_DURABLE,
		    .max_len = 8192, .msg_size = 4096);
	SHMBUS_OPTS(shmbus_producer_opts, po,
		    .flags = SHMBUS_PRODUCER_ASYNC_CONFIRM);
	char buf[3000];
	struct shmbus_consumer *c;
	struct shmbus_producer *p;
	struct shmbus_msg m;
	struct shmbus *bus;
	uint64_t confirmed = 0, seq;
	int err = 0, n = 0;
	pid_t d;

	(void)st;
	assert_int_equal(mkdir(state, 0700), 0);
	if (mount("tmpfs", state, "tmpfs", 0, "size=1m,mode=0700")) {
		SKIP_OR_FAIL("mount tmpfs: %s", strerror(errno));
		return;
	}
	d = daemon_start();
	bus = bus_open();
	declare(bus, "full", &qo);
	p = shmbus_producer__new(bus, "full", &po);
	assert_non_null(p);
	for (uint64_t s = 0; s < 2000 && !err; s++) {
		memset(buf, (int)(s & 0xff), sizeof(buf));
		memcpy(buf, &s, sizeof(s));
		err = shmbus_producer__publish(p, buf, sizeof(buf), NULL);
		if (!err)
			err = shmbus_producer__confirm_wait(p, 5 * NSEC_PER_SEC_T);
		if (!err)
			confirmed = s + 1;
	}
	printf("full disk: %llu confirmed, then %s\n",
	       (unsigned long long)confirmed, strerror(-err));
	assert_int_equal(err, -ENOSPC);
	assert_true(t_pid_running(d));
	shmbus_producer__free(p);
	shmbus__close(bus);
	daemon_kill(d);

	d = daemon_start();
	bus = bus_open();
	c = shmbus_consumer__new(bus, "full", NULL);
	assert_non_null(c);
	while (shmbus_consumer__receive_view(c, &m, 300 * MS) == 0) {
		assert_int_equal(m.len, sizeof(buf));
		memcpy(&seq, m.data, sizeof(seq));
		assert_int_equal(seq, (uint64_t)n);
		assert_int_equal(((const uint8_t *)m.data)[2999],
				 (uint8_t)(seq & 0xff));
		shmbus_consumer__release(c, &m);
		n++;
	}
	printf("full disk, after a restart: %d back of %llu confirmed, lost "
	       "%lld\n", n, (unsigned long long)confirmed,
	       (long long)confirmed - n);
	assert_true((uint64_t)n >= confirmed);
	shmbus_consumer__free(c);
	shmbus__close(bus);
	daemon_kill(d);
	umount2(state, MNT_DETACH);
	rmdir(state);
}

/*
 * A queue.conf with settings a declare would refuse (sync 9) keeps its
 * queue from coming back, and nothing else: the daemon starts, logs it,
 * keeps the journal; with the file mended, the message is back.
 */
static void test_bad_queue_conf(void **st)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .flags = SHMBUS_QUEUE_DURABLE);
	char conf[PATH_MAX + 64], cmd[4 * PATH_MAX];
	struct shmbus_queue_info qi;
	struct shmbus_producer *p;
	struct shmbus *bus;
	pid_t d;

	(void)st;
	d = daemon_start();
	bus = bus_open();
	declare(bus, "conf", &qo);
	p = shmbus_producer__new(bus, "conf", NULL);
	assert_non_null(p);
	assert_int_equal(shmbus_producer__publish(p, "kept", 4, NULL), 0);
	shmbus_producer__free(p);
	shmbus__close(bus);
	daemon_kill(d);
	snprintf(conf, sizeof(conf), "%s/0/%s/queues/conf/queue.conf", state,
		 BUS);
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s.good' && sed -i 's/^sync 0$/"
		 "sync 9/' '%s'", conf, conf, conf);
	assert_int_equal(system(cmd), 0);
	d = daemon_start();
	bus = bus_open();
	assert_int_equal(shmbus__queue_info(bus, "conf", &qi), -ENOENT);
	shmbus__close(bus);
	daemon_kill(d);
	snprintf(cmd, sizeof(cmd), "mv '%s.good' '%s'", conf, conf);
	assert_int_equal(system(cmd), 0);
	d = daemon_start();
	bus = bus_open();
	assert_int_equal(journal(bus, "conf").live, 1);
	printf("a queue.conf with sync 9: the queue stays away, the daemon "
	       "starts; mended: 1 message back\n");
	shmbus__close(bus);
	daemon_kill(d);
}

/* ---- kill -9 of everything, a hundred times ------------------------------- */

#define CRASH_MAX	(1u << 20)

struct crash {
	uint64_t sent;		/* publishes attempted (seqs below taken) */
	uint64_t confirmed;	/* how many were confirmed */
	uint8_t conf[CRASH_MAX];	/* confirmed: a publisher's confirm_wait
					 * returned 0 after it */
	uint8_t seen[CRASH_MAX];	/* times received */
	uint16_t iter[CRASH_MAX];	/* the round it was sent in */
	int round;
	uint64_t corrupt;
	uint64_t received;
};

static void publisher(struct crash *cr, uint64_t from)
{
	SHMBUS_OPTS(shmbus_producer_opts, po,
		    .flags = SHMBUS_PRODUCER_ASYNC_CONFIRM);
	SHMBUS_OPTS(shmbus_pub_opts, wait, .timeout_ns = 2 * NSEC_PER_SEC_T);
	struct shmbus *bus = child_bus_open();
	struct shmbus_producer *p = shmbus_producer__new(bus, "crash", &po);
	uint64_t s = from;

	if (!p)
		_exit(3);
	for (;;) {
		uint64_t end = s + 1 + (uint64_t)(rand() % 32), first = s;

		for (; s < end && s < CRASH_MAX; s++) {
			struct body b = body_of(s);

			cr->iter[s] = (uint16_t)cr->round;
			smp_store_release(&cr->sent, s + 1);
			if (shmbus_producer__publish(p, &b, sizeof(b), &wait))
				_exit(4);
		}
		if (shmbus_producer__confirm_wait(p, 5 * NSEC_PER_SEC_T))
			_exit(5);
		/* only what this process published and saw confirmed: what
		 * the round before sent after its last confirm was not */
		for (uint64_t k = first; k < s; k++)
			WRITE_ONCE(cr->conf[k], 1);
		atomic_fetch_add(&cr->confirmed, s - first);
		if (s >= CRASH_MAX)
			_exit(0);
	}
}

static void consumer(struct crash *cr, int64_t idle_ms)
{
	struct shmbus *bus = child_bus_open();
	struct shmbus_consumer *c = shmbus_consumer__new(bus, "crash", NULL);
	struct shmbus_msg m;
	uint64_t seq;

	if (!c)
		_exit(3);
	while (shmbus_consumer__receive_view(c, &m, idle_ms * MS) == 0) {
		if (!body_ok(&m, &seq) || seq >= CRASH_MAX) {
			atomic_fetch_add(&cr->corrupt, 1);
		} else {
			atomic_fetch_add(&cr->seen[seq], 1);
			atomic_fetch_add(&cr->received, 1);
		}
		if (rand() % 8 == 0)
			shmbus_consumer__nack(c, &m, 0);	/* again */
		else
			shmbus_consumer__ack(c, &m);
	}
	_exit(0);
}

static void crash_loop(int sync, const char *name)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .flags = SHMBUS_QUEUE_DURABLE,
		    .sync = (uint32_t)sync, .max_len = 8192);
	struct crash *cr = t_shared(sizeof(*cr));
	int iters = (int)t_scaled(100);
	uint64_t lost = 0, dup = 0, distinct = 0;
	struct shmbus *bus;
	pid_t d;

	d = daemon_start();
	bus = bus_open();
	declare(bus, "crash", &qo);
	shmbus__close(bus);
	srand((unsigned)getpid());
	for (int it = 0; it < iters; it++) {
		pid_t pub, con;

		cr->round = it;
		pub = fork();
		if (!pub) {
			srand((unsigned)getpid());
			publisher(cr, cr->sent);
		}
		con = fork();
		if (!con) {
			srand((unsigned)getpid() ^ 0x5a5a);
			consumer(cr, 10000);
		}
		usleep((useconds_t)(20000 + rand() % 130000));
		/* every process, in a random order */
		switch (rand() % 3) {
		case 0:
			kill(d, SIGKILL);
			kill(pub, SIGKILL);
			kill(con, SIGKILL);
			break;
		case 1:
			kill(pub, SIGKILL);
			kill(con, SIGKILL);
			kill(d, SIGKILL);
			break;
		default:
			kill(con, SIGKILL);
			kill(d, SIGKILL);
			kill(pub, SIGKILL);
			break;
		}
		t_wait(pub, 5000);
		t_wait(con, 5000);
		daemon_kill(d);
		d = daemon_start();
	}
	/* the rest, with nothing killed */
	{
		pid_t con = fork();

		if (!con)
			consumer(cr, 1500);
		assert_int_equal(t_wait(con, 60000), 0);
	}
	for (uint64_t s = 0; s < cr->sent; s++) {
		distinct += cr->seen[s] > 0;
		dup += cr->seen[s] > 1 ? cr->seen[s] - 1u : 0;
		if (cr->conf[s] && !cr->seen[s] && lost++ < 10)
			printf("lost: seq %llu, sent in round %u\n",
			       (unsigned long long)s, cr->iter[s]);
	}
	printf("kill -9 loop, sync %s, %d iterations: sent %llu, confirmed "
	       "%llu, received %llu (%llu distinct), lost %llu, duplicated "
	       "%llu, corrupt %llu\n", name, iters,
	       (unsigned long long)cr->sent, (unsigned long long)cr->confirmed,
	       (unsigned long long)cr->received, (unsigned long long)distinct,
	       (unsigned long long)lost, (unsigned long long)dup,
	       (unsigned long long)cr->corrupt);
	assert_int_equal(lost, 0);
	assert_int_equal(cr->corrupt, 0);
	assert_true(cr->confirmed > 0);
	daemon_kill(d);
	munmap(cr, sizeof(*cr));
}

static void test_crash_always(void **st)
{
	(void)st;
	crash_loop(SHMBUS_SYNC_ALWAYS, "always");
}

static void test_crash_batch(void **st)
{
	(void)st;
	crash_loop(SHMBUS_SYNC_BATCH, "batch");
}

/*
 * SHMBUS_PUB_MORE into a durable queue, whose intake the daemon
 * consumes: 20 publishes that each wait for their own confirm, and 20
 * then one confirm_wait, all return confirmed (a wait for a confirm pays
 * the wake-ups the producer owes first), and all 40 arrive in order.
 */
static void test_more_confirms(void **st)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .flags = SHMBUS_QUEUE_DURABLE,
		    .sync = SHMBUS_SYNC_NEVER, .max_len = 1024);
	SHMBUS_OPTS(shmbus_producer_opts, ao,
		    .flags = SHMBUS_PRODUCER_ASYNC_CONFIRM);
	SHMBUS_OPTS(shmbus_pub_opts, more, .flags = SHMBUS_PUB_MORE);
	struct shmbus_producer *p, *a;
	struct shmbus_consumer *c;
	struct shmbus_msg m;
	struct shmbus *bus;
	int64_t t0, sync_ns, async_ns;
	int got = 0;
	pid_t d;

	(void)st;
	d = daemon_start();
	bus = bus_open();
	declare(bus, "more", &qo);
	p = shmbus_producer__new(bus, "more", NULL);
	a = shmbus_producer__new(bus, "more", &ao);
	assert_non_null(p);
	assert_non_null(a);
	t0 = t_now_ns();
	for (uint64_t i = 0; i < 20; i++)
		assert_int_equal(shmbus_producer__publish(p, &i, 8, &more), 0);
	sync_ns = t_now_ns() - t0;
	t0 = t_now_ns();
	for (uint64_t i = 20; i < 40; i++)
		assert_int_equal(shmbus_producer__publish(a, &i, 8, &more), 0);
	assert_int_equal(shmbus_producer__confirm_wait(a, 5000000000ll), 0);
	async_ns = t_now_ns() - t0;
	c = shmbus_consumer__new(bus, "more", NULL);
	assert_non_null(c);
	while (got < 40 && shmbus_consumer__receive_view(c, &m, 2000000000ll) == 0) {
		assert_int_equal(*(const uint64_t *)m.data, (uint64_t)got);
		assert_int_equal(shmbus_consumer__ack(c, &m), 0);
		got++;
	}
	printf("SHMBUS_PUB_MORE, durable: sent 40 confirmed 40 received %d "
	       "lost %d; 20 publishes each confirmed in %.1f ms, 20 then "
	       "confirm_wait in %.1f ms\n", got, 40 - got, sync_ns / 1e6,
	       async_ns / 1e6);
	assert_int_equal(got, 40);
	/* a liveness bound, not a benchmark */
	assert_true(sync_ns < 1500 * 1000000ll);
	shmbus_consumer__free(c);
	shmbus_producer__free(a);
	shmbus_producer__free(p);
	shmbus__close(bus);
	daemon_kill(d);
}

/* Each test in a fresh state directory. */
static int fresh(void **st)
{
	char cmd[PATH_MAX + 16];
	pid_t left = t_daemon_pid();

	(void)st;
	/* the daemon of a test that failed before it stopped it: each
	 * test starts its own, on a state directory of its own */
	if (left > 0 && t_pid_running(left))
		t_daemon_kill_pid(left);
	umount2(state, MNT_DETACH);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", state);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_cold_recovery, fresh),
		cmocka_unit_test_setup(test_cold_recovery_grows, fresh),
		cmocka_unit_test_setup(test_adopted, fresh),
		cmocka_unit_test_setup(test_semantics_survive, fresh),
		cmocka_unit_test_setup(test_persistent_subscription, fresh),
		cmocka_unit_test_setup(test_segments_deleted, fresh),
		cmocka_unit_test_setup(test_order_full_queue, fresh),
		cmocka_unit_test_setup(test_blocked_syncs, fresh),
		cmocka_unit_test_setup(test_bus_delete_durable, fresh),
		cmocka_unit_test_setup(test_sync_many_segments, fresh),
		cmocka_unit_test_setup(test_damaged_journal, fresh),
		cmocka_unit_test_setup(test_full_disk, fresh),
		cmocka_unit_test_setup(test_bad_queue_conf, fresh),
		cmocka_unit_test_setup(test_crash_always, fresh),
		cmocka_unit_test_setup(test_crash_batch, fresh),
		cmocka_unit_test_setup(test_more_confirms, fresh),
	};
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	t_env_setup();
	setup_state();
	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	rc = cmocka_run_group_tests_name("durable", tests, NULL, NULL);
	if (!getenv("SHMBUS_TEST_KEEP"))
		fresh(NULL);
	t_env_teardown();
	return rc;
}
