// SPDX-License-Identifier: MIT
/*
 * test_semantics.c - delivery semantics across processes: leases (ack,
 * nack, extend, reject, -ESTALE), lease expiry of a stopped consumer,
 * retries with exponential backoff into a dead-letter queue, TTL (at take,
 * and by the daemon when nobody receives), delayed messages waking a
 * blocked consumer, prefetch, auto-ack, batches.
 *
 * Times are measured and checked against lower bounds (a delay is never
 * cut short) and generous upper bounds (the daemon's 10 ms tick, a loaded
 * CI machine): never a race against a tight deadline.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shmbus.h"
#include "helpers.h"

#define BUS	"sem"
#define MS	1000000LL
#define SLACK	(1500 * MS)	/* upper-bound slack for a loaded machine */

static struct shmbus *open_bus(void)
{
	return t_open_bus(BUS);
}

static void info(struct shmbus *bus, const char *q, struct shmbus_queue_info *qi)
{
	assert_int_equal(shmbus__queue_info(bus, q, qi), 0);
}


static void test_ack_nack_extend(void **state)
{
	struct shmbus *bus = open_bus();
	SHMBUS_OPTS(shmbus_queue_opts, qo, .lease_ns = 400 * MS);
	struct shmbus_producer *p;
	struct shmbus_consumer *c;
	struct shmbus_queue_info qi;
	struct shmbus_msg m, copy;
	int64_t t0;

	(void)state;
	assert_int_equal(shmbus__queue_declare(bus, "work", &qo), 1);
	info(bus, "work", &qi);
	assert_int_equal(qi.lease_ns, 400 * MS);
	p = shmbus_producer__new(bus, "work", NULL);
	c = shmbus_consumer__new(bus, "work", NULL);
	assert_non_null(p);
	assert_non_null(c);
	for (int i = 0; i < 3; i++)
		t_publish_int(p, i, NULL);

	/* ack: gone; the same delivery again is stale */
	assert_int_equal(t_recv_int(c, &m, 0), 0);
	assert_int_equal(m.delivery_count, 1);
	copy = m;
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	assert_int_equal(shmbus_consumer__ack(c, &copy), -ESTALE);
	assert_int_equal(shmbus_consumer__nack(c, &copy, 0), -ESTALE);

	/* nack now: back at the end of the queue, delivery count 2 */
	assert_int_equal(t_recv_int(c, &m, 0), 1);
	assert_int_equal(shmbus_consumer__nack(c, &m, 0), 0);
	assert_int_equal(t_recv_int(c, &m, 0), 2);
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	assert_int_equal(t_recv_int(c, &m, 0), 1);
	assert_int_equal(m.delivery_count, 2);

	/* extend: held for 3 lease periods, never taken back (a 350 ms
	 * margin for a descheduled test process) */
	t0 = t_now_ns();
	while (t_now_ns() - t0 < 1200 * MS) {
		usleep(50000);
		assert_int_equal(shmbus_consumer__extend(c, &m, 0), 0);
	}
	info(bus, "work", &qi);
	assert_int_equal(qi.in_flight, 1);
	assert_int_equal(qi.stat[SHMBUS_STAT_LEASE_EXPIRED], 0);
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	assert_int_equal(shmbus_consumer__try_receive(c, &m), -EAGAIN);

	info(bus, "work", &qi);
	assert_int_equal(qi.stat[SHMBUS_STAT_PUBLISHED], 3);
	assert_int_equal(qi.stat[SHMBUS_STAT_DELIVERED], 4);
	assert_int_equal(qi.stat[SHMBUS_STAT_ACKED], 3);
	assert_int_equal(qi.stat[SHMBUS_STAT_NACKED], 1);
	assert_int_equal(qi.stat[SHMBUS_STAT_REDELIVERED], 1);
	assert_int_equal(qi.in_flight, 0);
	assert_int_equal(qi.depth, 0);
	shmbus_consumer__free(c);
	shmbus_producer__free(p);
	shmbus__close(bus);
}

/*
 * A consumer stopped (SIGSTOP) past its lease: the daemon takes the
 * message back, another consumer gets it; the resumed consumer's ack is
 * refused and removes nothing.
 */
static void test_lease_expiry_sigstop(void **state)
{
	struct shmbus *bus = open_bus();
	SHMBUS_OPTS(shmbus_queue_opts, qo, .lease_ns = 200 * MS);
	struct shmbus_producer *p;
	struct shmbus_consumer *c;
	struct shmbus_queue_info qi;
	struct shmbus_msg m;
	int ready[2], go[2];
	int64_t t0, dt;
	pid_t kid;
	char x;

	(void)state;
	assert_int_equal(shmbus__queue_declare(bus, "stall", &qo), 1);
	p = shmbus_producer__new(bus, "stall", NULL);
	assert_non_null(p);
	t_publish_int(p, 42, NULL);
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(go), 0);
	if (!(kid = fork())) {
		struct shmbus *b = open_bus();
		struct shmbus_consumer *k = shmbus_consumer__new(b, "stall", NULL);
		struct shmbus_msg v;
		int err;

		CHILD_CHECK(k, "consumer");
		CHILD_CHECK(!shmbus_consumer__try_receive(k, &v), "receive");
		CHILD_CHECK(write(ready[1], "r", 1) == 1, "ready");
		CHILD_CHECK(read(go[0], &x, 1) == 1, "go");
		/* resumed after the lease ran out: refused */
		err = shmbus_consumer__ack(k, &v);
		CHILD_CHECK(err == -ESTALE, "late ack returned %d", err);
		/* and the entry is usable again */
		err = shmbus_consumer__try_receive(k, &v);
		CHILD_CHECK(err == -EAGAIN, "receive after: %d", err);
		_exit(0);
	}
	assert_int_equal(read(ready[0], &x, 1), 1);
	t0 = t_now_ns();
	kill(kid, SIGSTOP);
	c = shmbus_consumer__new(bus, "stall", NULL);
	assert_non_null(c);
	assert_int_equal(t_recv_int(c, &m, 5000 * MS), 42);
	dt = t_now_ns() - t0;
	print_message("redelivered %.1f ms after the stop (lease 200 ms)\n",
		      dt / 1e6);
	assert_true(dt >= 150 * MS);	/* the lease began before t0 */
	assert_true(dt < 200 * MS + SLACK);
	assert_int_equal(m.delivery_count, 2);
	kill(kid, SIGCONT);
	assert_int_equal(write(go[1], "g", 1), 1);
	assert_int_equal(t_wait(kid, 5000), 0);
	/* the late ack removed nothing: ours is the live lease */
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	info(bus, "stall", &qi);
	assert_int_equal(qi.stat[SHMBUS_STAT_LEASE_EXPIRED], 1);
	assert_int_equal(qi.stat[SHMBUS_STAT_ACKED], 1);
	assert_int_equal(qi.stat[SHMBUS_STAT_REDELIVERED], 1);
	assert_int_equal(qi.depth, 0);
	shmbus_consumer__free(c);
	shmbus_producer__free(p);
	shmbus__close(bus);
}

/*
 * A poison message: every delivery fails (nack with the queue's backoff).
 * Delivered exactly max_deliveries times with the delays 50, 100, 200 ms
 * between them, then in the DLQ with its reason, source and count.
 */
static void test_poison_backoff_dlq(void **state)
{
	struct shmbus *bus = open_bus();
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_deliveries = 4,
		    .backoff_init_ns = 50 * MS, .backoff_mult_milli = 2000,
		    .backoff_max_ns = 1000 * MS,
		    .dead_letter_queue = "poison.dlq");
	struct shmbus_producer *p;
	struct shmbus_consumer *c, *d;
	struct shmbus_queue_info qi, di;
	struct shmbus_msg m;
	int64_t t[4];

	(void)state;
	/* the DLQ must exist first */
	assert_int_equal(shmbus__queue_declare(bus, "poison", &qo), -ENOENT);
	assert_int_equal(shmbus__queue_declare(bus, "poison.dlq", NULL), 1);
	assert_int_equal(shmbus__queue_declare(bus, "poison", &qo), 1);
	info(bus, "poison", &qi);
	assert_string_equal(qi.dead_letter_queue, "poison.dlq");
	assert_int_equal(qi.max_deliveries, 4);
	p = shmbus_producer__new(bus, "poison", NULL);
	c = shmbus_consumer__new(bus, "poison", NULL);
	d = shmbus_consumer__new(bus, "poison.dlq", NULL);
	assert_non_null(p);
	assert_non_null(c);
	assert_non_null(d);
	t_publish_int(p, 7, NULL);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(t_recv_int(c, &m, 5000 * MS), 7);
		t[i] = t_now_ns();
		assert_int_equal(m.delivery_count, (uint32_t)i + 1);
		assert_int_equal(shmbus_consumer__nack(c, &m, SHMBUS_NACK_BACKOFF), 0);
	}
	for (int i = 1; i < 4; i++) {
		int64_t want = (50 * MS) << (i - 1), got = t[i] - t[i - 1];

		print_message("retry %d after %.1f ms (backoff %lld ms)\n", i,
			      got / 1e6, (long long)(want / MS));
		assert_true(got >= want - 5 * MS);
		assert_true(got < want + SLACK);
	}
	/* not a fifth time: in the DLQ, with why, whence and how often */
	assert_int_equal(t_recv_int(d, &m, 5000 * MS), 7);
	assert_int_equal(m.dl_reason, SHMBUS_DL_MAX_DELIVERIES);
	assert_int_equal(m.dl_src, qi.id + 1);
	assert_int_equal(m.dl_count, 4);
	assert_int_equal(m.delivery_count, 1);
	assert_int_equal(shmbus_consumer__ack(d, &m), 0);
	assert_int_equal(shmbus_consumer__try_receive(c, &m), -EAGAIN);

	/* reject: straight to the DLQ */
	t_publish_int(p, 8, NULL);
	assert_int_equal(t_recv_int(c, &m, 0), 8);
	assert_int_equal(shmbus_consumer__reject(c, &m), 0);
	assert_int_equal(t_recv_int(d, &m, 5000 * MS), 8);
	assert_int_equal(m.dl_reason, SHMBUS_DL_REJECTED);
	assert_int_equal(m.dl_count, 1);
	assert_int_equal(shmbus_consumer__ack(d, &m), 0);

	info(bus, "poison", &qi);
	info(bus, "poison.dlq", &di);
	assert_int_equal(qi.stat[SHMBUS_STAT_DELIVERED], 5);
	assert_int_equal(qi.stat[SHMBUS_STAT_NACKED], 4);
	assert_int_equal(qi.stat[SHMBUS_STAT_REDELIVERED], 3);
	assert_int_equal(qi.stat[SHMBUS_STAT_DEADLETTERED], 2);
	assert_int_equal(qi.stat[SHMBUS_STAT_DROPPED], 0);
	assert_int_equal(di.stat[SHMBUS_STAT_ACKED], 2);
	shmbus_consumer__free(d);
	shmbus_consumer__free(c);
	shmbus_producer__free(p);
	shmbus__close(bus);
}

/* Expired messages are never delivered: dropped or dead-lettered. */
static void test_ttl(void **state)
{
	struct shmbus *bus = open_bus();
	SHMBUS_OPTS(shmbus_queue_opts, q1, .ttl_ns = 100 * MS);
	SHMBUS_OPTS(shmbus_queue_opts, q2, .ttl_ns = 100 * MS,
		    .flags = SHMBUS_QUEUE_EXPIRE_TO_DLQ,
		    .dead_letter_queue = "ttl.dlq");
	SHMBUS_OPTS(shmbus_pub_opts, short_ttl, .ttl_ns = 50 * MS);
	struct shmbus_producer *p;
	struct shmbus_consumer *c;
	struct shmbus_queue_info qi;
	struct shmbus_msg m;

	(void)state;
	assert_int_equal(shmbus__queue_declare(bus, "ttl.drop", &q1), 1);
	assert_int_equal(shmbus__queue_declare(bus, "ttl.dlq", NULL), 1);
	assert_int_equal(shmbus__queue_declare(bus, "ttl.keep", &q2), 1);

	/* nobody receives: the daemon expires them anyway, counted */
	p = shmbus_producer__new(bus, "ttl.drop", NULL);
	assert_non_null(p);
	for (int i = 0; i < 5; i++)
		t_publish_int(p, i, NULL);
	shmbus_producer__free(p);
	p = shmbus_producer__new(bus, "ttl.keep", NULL);
	assert_non_null(p);
	for (int i = 0; i < 3; i++)
		t_publish_int(p, i, NULL);
	shmbus_producer__free(p);
	for (int i = 0; i < 300; i++) {
		info(bus, "ttl.drop", &qi);
		if (qi.stat[SHMBUS_STAT_EXPIRED] == 5)
			break;
		usleep(10000);
	}
	assert_int_equal(qi.stat[SHMBUS_STAT_EXPIRED], 5);
	assert_int_equal(qi.stat[SHMBUS_STAT_DROPPED], 5);
	assert_int_equal(qi.depth, 0);
	c = shmbus_consumer__new(bus, "ttl.dlq", NULL);
	assert_non_null(c);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(t_recv_int(c, &m, 5000 * MS), i);
		assert_int_equal(m.dl_reason, SHMBUS_DL_EXPIRED);
		assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	}
	shmbus_consumer__free(c);
	info(bus, "ttl.keep", &qi);
	assert_int_equal(qi.stat[SHMBUS_STAT_EXPIRED], 3);
	assert_int_equal(qi.stat[SHMBUS_STAT_DEADLETTERED], 3);

	/* per message, behind a message without one: skipped at take */
	assert_int_equal(shmbus__queue_declare(bus, "ttl.msg", NULL), 1);
	p = shmbus_producer__new(bus, "ttl.msg", NULL);
	c = shmbus_consumer__new(bus, "ttl.msg", NULL);
	assert_non_null(p);
	assert_non_null(c);
	t_publish_int(p, 1, NULL);
	t_publish_int(p, 2, &short_ttl);
	t_publish_int(p, 3, NULL);
	usleep(100000);
	assert_int_equal(t_recv_int(c, &m, 0), 1);
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	assert_int_equal(t_recv_int(c, &m, 0), 3);
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	info(bus, "ttl.msg", &qi);
	assert_int_equal(qi.stat[SHMBUS_STAT_EXPIRED], 1);
	assert_int_equal(qi.stat[SHMBUS_STAT_DROPPED], 1);
	assert_int_equal(qi.stat[SHMBUS_STAT_DELIVERED], 2);
	shmbus_consumer__free(c);
	shmbus_producer__free(p);
	shmbus__close(bus);
}

/* Delayed publish and nack with delay wake a consumer already blocked. */
static void test_delay(void **state)
{
	struct shmbus *bus = open_bus();
	SHMBUS_OPTS(shmbus_pub_opts, later, .delay_ns = 200 * MS);
	struct shmbus_producer *p;
	struct shmbus_consumer *c;
	struct shmbus_msg m;
	int64_t t0, dt;

	(void)state;
	assert_int_equal(shmbus__queue_declare(bus, "later", NULL), 1);
	p = shmbus_producer__new(bus, "later", NULL);
	c = shmbus_consumer__new(bus, "later", NULL);
	assert_non_null(p);
	assert_non_null(c);
	t0 = t_now_ns();
	t_publish_int(p, 5, &later);
	/* invisible until due */
	assert_int_equal(shmbus_consumer__try_receive(c, &m), -EAGAIN);
	assert_int_equal(t_recv_int(c, &m, 5000 * MS), 5);
	dt = t_now_ns() - t0;
	print_message("delayed publish (200 ms) seen after %.1f ms\n", dt / 1e6);
	assert_true(dt >= 200 * MS);
	assert_true(dt < 200 * MS + SLACK);
	t0 = t_now_ns();
	assert_int_equal(shmbus_consumer__nack(c, &m, 150 * MS), 0);
	assert_int_equal(shmbus_consumer__try_receive(c, &m), -EAGAIN);
	assert_int_equal(t_recv_int(c, &m, 5000 * MS), 5);
	dt = t_now_ns() - t0;
	print_message("nack with 150 ms delay redelivered after %.1f ms\n",
		      dt / 1e6);
	assert_true(dt >= 150 * MS);
	assert_true(dt < 150 * MS + SLACK);
	assert_int_equal(m.delivery_count, 2);
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	shmbus_consumer__free(c);
	shmbus_producer__free(p);
	shmbus__close(bus);
}

static void test_prefetch_autoack_batch(void **state)
{
	struct shmbus *bus = open_bus();
	SHMBUS_OPTS(shmbus_consumer_opts, two, .prefetch = 2);
	SHMBUS_OPTS(shmbus_consumer_opts, aa, .flags = SHMBUS_CONSUMER_AUTO_ACK);
	struct shmbus_producer *p;
	struct shmbus_consumer *c;
	struct shmbus_queue_info qi;
	struct shmbus_msg m[8], x;
	struct iovec iov[8];
	int v[8];

	(void)state;
	assert_int_equal(shmbus__queue_declare(bus, "pf", NULL), 1);
	p = shmbus_producer__new(bus, "pf", NULL);
	assert_non_null(p);
	for (int i = 0; i < 8; i++) {
		v[i] = i;
		iov[i].iov_base = &v[i];
		iov[i].iov_len = sizeof(int);
	}
	assert_int_equal(shmbus_producer__publish_batch(p, iov, 8, NULL), 8);

	/* prefetch 2: a third receive waits for an ack */
	c = shmbus_consumer__new(bus, "pf", &two);
	assert_non_null(c);
	assert_int_equal(t_recv_int(c, &m[0], 0), 0);
	assert_int_equal(t_recv_int(c, &m[1], 0), 1);
	assert_int_equal(shmbus_consumer__try_receive(c, &x), -ENOBUFS);
	assert_int_equal(shmbus_consumer__ack(c, &m[0]), 0);
	assert_int_equal(t_recv_int(c, &m[0], 0), 2);
	assert_int_equal(shmbus_consumer__ack_batch(c, m, 2), 2);
	shmbus_consumer__free(c);

	/* batch receive and batch ack */
	c = shmbus_consumer__new(bus, "pf", NULL);
	assert_non_null(c);
	assert_int_equal(shmbus_consumer__receive_batch(c, m, 3, 0), 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(*(const int *)m[i].data, 3 + i);
	assert_int_equal(shmbus_consumer__ack_batch(c, m, 3), 3);
	shmbus_consumer__free(c);

	/* auto-ack: nothing to ack, nack refused, release frees */
	c = shmbus_consumer__new(bus, "pf", &aa);
	assert_non_null(c);
	assert_int_equal(t_recv_int(c, &m[0], 0), 6);
	assert_int_equal(shmbus_consumer__nack(c, &m[0], 0), -EINVAL);
	info(bus, "pf", &qi);
	assert_int_equal(qi.in_flight, 1);
	shmbus_consumer__release(c, &m[0]);
	assert_int_equal(t_recv_int(c, &m[0], 0), 7);
	shmbus_consumer__release(c, &m[0]);
	info(bus, "pf", &qi);
	assert_int_equal(qi.in_flight, 0);
	assert_int_equal(qi.depth, 0);
	assert_int_equal(qi.stat[SHMBUS_STAT_ACKED], 8);
	shmbus_consumer__free(c);
	shmbus_producer__free(p);
	shmbus__close(bus);
}

/*
 * Batches settle each message once: an ack_batch over messages of which
 * one was acked already and one is a stale copy acks the rest (and counts
 * them once each); leases of a receive_batch, which share one deadline,
 * still expire and come back; an auto-ack view released through a copy
 * is not released twice; a consumer does not settle another's message,
 * although a word of its table matches that message's.
 */
static void test_batch_settle(void **state)
{
	struct shmbus *bus = open_bus();
	SHMBUS_OPTS(shmbus_queue_opts, qo, .lease_ns = 60 * MS);
	SHMBUS_OPTS(shmbus_consumer_opts, aa, .flags = SHMBUS_CONSUMER_AUTO_ACK);
	struct shmbus_producer *p;
	struct shmbus_consumer *c;
	struct shmbus_queue_info qi;
	struct shmbus_msg m[6], x;
	int64_t t0;
	int got;

	(void)state;
	assert_int_equal(shmbus__queue_declare(bus, "bs", &qo), 1);
	p = shmbus_producer__new(bus, "bs", NULL);
	c = shmbus_consumer__new(bus, "bs", NULL);
	assert_non_null(p);
	assert_non_null(c);
	for (int i = 0; i < 6; i++)
		assert_int_equal(shmbus_producer__publish(p, &i, sizeof(i),
							  NULL), 0);
	assert_int_equal(shmbus_consumer__receive_batch(c, m, 6, 0), 6);
	for (int i = 0; i < 6; i++)
		assert_int_equal(*(const int *)m[i].data, i);
	assert_int_equal(shmbus_consumer__ack(c, &m[1]), 0);
	x = m[2];
	assert_int_equal(shmbus_consumer__ack(c, &x), 0);
	/* m[1] is done (no data), m[2] a copy of what x settled */
	assert_int_equal(shmbus_consumer__ack_batch(c, m, 6), 4);
	info(bus, "bs", &qi);
	assert_int_equal(qi.in_flight, 0);
	assert_int_equal(qi.stat[SHMBUS_STAT_ACKED], 6);

	/* a batch's leases (60 ms) expire together and come back */
	for (int i = 0; i < 3; i++)
		assert_int_equal(shmbus_producer__publish(p, &i, sizeof(i),
							  NULL), 0);
	assert_int_equal(shmbus_consumer__receive_batch(c, m, 3, 0), 3);
	t0 = t_now_ns();
	got = 0;
	while (got < 3) {
		int r = shmbus_consumer__receive_batch(c, &m[3],
						       1, 2000 * MS);

		assert_int_equal(r, 1);
		assert_int_equal(m[3].delivery_count, 2);
		assert_int_equal(shmbus_consumer__ack(c, &m[3]), 0);
		got++;
	}
	print_message("3 leases of one batch expired and came back after "
		      "%.1f ms\n", (t_now_ns() - t0) / 1e6);
	/* a deadline is read from the coarse clock, a tick behind at most */
	assert_true(t_now_ns() - t0 >= 50 * MS);
	/* the first batch's entries are stale: the daemon took them */
	assert_int_equal(shmbus_consumer__ack_batch(c, m, 3), 0);
	info(bus, "bs", &qi);
	assert_int_equal(qi.stat[SHMBUS_STAT_ACKED], 9);
	assert_int_equal(qi.stat[SHMBUS_STAT_REDELIVERED], 3);
	shmbus_consumer__free(c);

	/* auto-ack: a view released, then its copy: once */
	c = shmbus_consumer__new(bus, "bs", &aa);
	assert_non_null(c);
	assert_int_equal(shmbus_producer__publish(p, &got, sizeof(got), NULL),
			 0);
	assert_int_equal(shmbus_consumer__receive_view(c, &m[0], 0), 0);
	x = m[0];
	shmbus_consumer__release(c, &m[0]);
	assert_int_equal(shmbus_consumer__ack(c, &x), -ESTALE);
	info(bus, "bs", &qi);
	assert_int_equal(qi.stat[SHMBUS_STAT_ACKED], 10);
	assert_int_equal(qi.in_flight, 0);
	assert_int_equal(qi.depth, 0);
	shmbus_consumer__free(c);

	/* A's message, with the entry and word of B's (fresh tables hold
	 * the same words): B settles nothing of A's, and nothing of its own */
	{
		struct shmbus_consumer *a = shmbus_consumer__new(bus, "bs", NULL);
		struct shmbus_consumer *b = shmbus_consumer__new(bus, "bs", NULL);
		struct shmbus_msg ma, mb, xa;

		assert_non_null(a);
		assert_non_null(b);
		for (int i = 0; i < 2; i++)
			assert_int_equal(shmbus_producer__publish(p, &i,
								  sizeof(i),
								  NULL), 0);
		assert_int_equal(shmbus_consumer__receive_view(a, &ma, 0), 0);
		assert_int_equal(shmbus_consumer__receive_view(b, &mb, 0), 0);
		xa = ma;
		xa.__lease = mb.__lease;
		xa.__word = mb.__word;
		assert_int_equal(shmbus_consumer__ack(b, &xa), -ESTALE);
		xa.data = ma.data;
		assert_int_equal(shmbus_consumer__ack_batch(b, &xa, 1), 0);
		xa.data = ma.data;
		assert_int_equal(shmbus_consumer__extend(b, &xa, 0), -ESTALE);
		info(bus, "bs", &qi);
		assert_int_equal(qi.in_flight, 2);
		assert_int_equal(shmbus_consumer__ack(a, &ma), 0);
		assert_int_equal(shmbus_consumer__ack(b, &mb), 0);
		info(bus, "bs", &qi);
		assert_int_equal(qi.in_flight, 0);
		assert_int_equal(qi.stat[SHMBUS_STAT_ACKED], 12);
		shmbus_consumer__free(a);
		shmbus_consumer__free(b);
	}
	shmbus_producer__free(p);
	shmbus__close(bus);
}

/*
 * A consumer killed holding N leased messages (on a fresh bus, so that
 * chunk 0 is among them): all N are back at once, none lost, each
 * delivered a second time.
 */
static void test_killed_holding_n(void **state)
{
	enum { N = 40 };
	struct shmbus *bus = t_open_bus("sem.fresh");
	struct shmbus_producer *p;
	struct shmbus_consumer *c;
	struct shmbus_queue_info qi;
	struct shmbus_msg m;
	int ready[2], seen[N] = { 0 };
	pid_t kid;
	char x;

	(void)state;
	assert_int_equal(shmbus__queue_declare(bus, "n", NULL), 1);
	p = shmbus_producer__new(bus, "n", NULL);
	assert_non_null(p);
	for (int i = 0; i < N; i++)
		t_publish_int(p, i, NULL);
	assert_int_equal(pipe(ready), 0);
	if (!(kid = fork())) {
		struct shmbus *b = t_open_bus("sem.fresh");
		struct shmbus_consumer *k = shmbus_consumer__new(b, "n", NULL);
		struct shmbus_msg v[N];

		CHILD_CHECK(k, "consumer");
		CHILD_CHECK(shmbus_consumer__receive_batch(k, v, N, 0) == N,
			    "batch");
		CHILD_CHECK(write(ready[1], "r", 1) == 1, "ready");
		pause();
		_exit(0);
	}
	assert_int_equal(read(ready[0], &x, 1), 1);
	info(bus, "n", &qi);
	assert_int_equal(qi.in_flight, N);
	assert_int_equal(qi.depth, 0);
	kill(kid, SIGKILL);
	assert_int_equal(t_wait(kid, 5000), 128 + SIGKILL);
	c = shmbus_consumer__new(bus, "n", NULL);
	assert_non_null(c);
	for (int i = 0; i < N; i++) {
		int v = t_recv_int(c, &m, 5000 * MS);

		assert_true(v >= 0 && v < N);
		assert_int_equal(m.delivery_count, 2);
		seen[v]++;
		assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	}
	for (int i = 0; i < N; i++)
		assert_int_equal(seen[i], 1);
	assert_int_equal(shmbus_consumer__try_receive(c, &m), -EAGAIN);
	info(bus, "n", &qi);
	assert_int_equal(qi.stat[SHMBUS_STAT_REDELIVERED], N);
	shmbus_consumer__free(c);
	shmbus_producer__free(p);
	shmbus__close(bus);
}

/*
 * Idempotency keys: a retried publish with the same id inside the window
 * is accepted and dropped (counted); after the window it is new again;
 * a publish that failed does not use up its id. Two processes racing
 * with the same 2,000 ids deliver each id once.
 */
static void test_dedup(void **state)
{
	enum { IDS = 2000 };
	struct shmbus *bus = open_bus();
	SHMBUS_OPTS(shmbus_queue_opts, qo, .dedup_window_ns = 300 * MS,
		    .max_len = 4096);
	SHMBUS_OPTS(shmbus_queue_opts, small, .dedup_window_ns = 60000 * MS,
		    .max_len = 2);
	SHMBUS_OPTS(shmbus_queue_opts, race, .dedup_window_ns = 60000 * MS,
		    .max_len = 4096);
	SHMBUS_OPTS(shmbus_pub_opts, k1, .dedup_id = "order-1");
	struct shmbus_producer *p;
	struct shmbus_consumer *c;
	struct shmbus_queue_info qi;
	struct shmbus_msg m;
	static uint8_t seen[IDS];
	pid_t kids[2];
	int n = 0;

	(void)state;
	assert_int_equal(shmbus__queue_declare(bus, "idem", &qo), 1);
	assert_int_equal(shmbus__queue_declare(bus, "idem.race", &race), 1);
	info(bus, "idem", &qi);
	assert_int_equal(qi.dedup_window_ns, 300 * MS);
	p = shmbus_producer__new(bus, "idem", NULL);
	c = shmbus_consumer__new(bus, "idem", NULL);
	assert_non_null(p);
	assert_non_null(c);
	t_publish_int(p, 1, &k1);
	t_publish_int(p, 1, &k1);		/* the retry */
	t_publish_int(p, 2, NULL);
	assert_int_equal(t_recv_int(c, &m, 0), 1);
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	assert_int_equal(t_recv_int(c, &m, 0), 2);
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	assert_int_equal(shmbus_consumer__try_receive(c, &m), -EAGAIN);
	info(bus, "idem", &qi);
	assert_int_equal(qi.stat[SHMBUS_STAT_DUPLICATES], 1);
	assert_int_equal(qi.stat[SHMBUS_STAT_PUBLISHED], 2);
	usleep(350000);			/* the window passed */
	t_publish_int(p, 3, &k1);
	assert_int_equal(t_recv_int(c, &m, 0), 3);
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);

	/* racing producers: each id delivered once (a long window: the
	 * two may start far apart on a loaded machine) */
	shmbus_consumer__free(c);
	c = shmbus_consumer__new(bus, "idem.race", NULL);
	assert_non_null(c);
	for (int k = 0; k < 2; k++) {
		if (!(kids[k] = fork())) {
			struct shmbus *b = open_bus();
			struct shmbus_producer *pp =
				shmbus_producer__new(b, "idem.race", NULL);

			CHILD_CHECK(pp, "producer");
			for (int i = 0; i < IDS; i++) {
				char id[32];
				SHMBUS_OPTS(shmbus_pub_opts, po, .dedup_id = id,
					    .timeout_ns = -1);

				snprintf(id, sizeof(id), "race-%d", i);
				CHILD_CHECK(!shmbus_producer__publish(pp, &i,
						sizeof(i), &po), "publish");
			}
			_exit(0);
		}
	}
	for (int k = 0; k < 2; k++)
		assert_int_equal(t_wait(kids[k], 30000), 0);
	while (shmbus_consumer__try_receive(c, &m) == 0) {
		int v = *(const int *)m.data;

		assert_true(v >= 0 && v < IDS);
		seen[v]++;
		n++;
		assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	}
	assert_int_equal(n, IDS);
	for (int i = 0; i < IDS; i++)
		assert_int_equal(seen[i], 1);
	/* the exited producers' counters are folded in by the daemon when
	 * it sees their connections close: give it a moment */
	for (int i = 0; i < 500; i++) {
		info(bus, "idem.race", &qi);
		if (qi.stat[SHMBUS_STAT_DUPLICATES] == IDS)
			break;
		usleep(2000);
	}
	assert_int_equal(qi.stat[SHMBUS_STAT_DUPLICATES], IDS);
	shmbus_consumer__free(c);
	shmbus_producer__free(p);

	/* a failed publish (queue full) leaves its id unused */
	assert_int_equal(shmbus__queue_declare(bus, "idem.small", &small), 1);
	p = shmbus_producer__new(bus, "idem.small", NULL);
	c = shmbus_consumer__new(bus, "idem.small", NULL);
	t_publish_int(p, 1, NULL);
	t_publish_int(p, 2, NULL);
	assert_int_equal(shmbus_producer__publish(p, &n, sizeof(n), &k1),
			 -ENOBUFS);
	assert_int_equal(t_recv_int(c, &m, 0), 1);
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	t_publish_int(p, 9, &k1);
	assert_int_equal(t_recv_int(c, &m, 0), 2);
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	assert_int_equal(t_recv_int(c, &m, 0), 9);
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	shmbus_consumer__free(c);
	shmbus_producer__free(p);

	/* no window, no dedup: refused, not silently ignored */
	assert_int_equal(shmbus__queue_declare(bus, "idem.none", NULL), 1);
	p = shmbus_producer__new(bus, "idem.none", NULL);
	assert_int_equal(shmbus_producer__publish(p, &n, sizeof(n), &k1),
			 -EOPNOTSUPP);
	shmbus_producer__free(p);
	shmbus__close(bus);
}

/* Full queue policies: reject at once; drop the oldest (to the DLQ). */
static void test_overflow(void **state)
{
	struct shmbus *bus = open_bus();
	SHMBUS_OPTS(shmbus_queue_opts, rej, .max_len = 2,
		    .overflow = SHMBUS_OVERFLOW_REJECT);
	SHMBUS_OPTS(shmbus_queue_opts, drop, .max_len = 2,
		    .overflow = SHMBUS_OVERFLOW_DROP_OLDEST,
		    .dead_letter_queue = "ovf.dlq");
	SHMBUS_OPTS(shmbus_queue_opts, drop_nodlq, .max_len = 2,
		    .overflow = SHMBUS_OVERFLOW_DROP_OLDEST);
	SHMBUS_OPTS(shmbus_pub_opts, wait, .timeout_ns = 2000 * MS);
	struct shmbus_producer *p;
	struct shmbus_consumer *c, *d;
	struct shmbus_queue_info qi;
	struct shmbus_msg m;
	int64_t t0;

	(void)state;
	assert_int_equal(shmbus__queue_declare(bus, "ovf.reject", &rej), 1);
	p = shmbus_producer__new(bus, "ovf.reject", NULL);
	t_publish_int(p, 1, NULL);
	t_publish_int(p, 2, NULL);
	t0 = t_now_ns();
	assert_int_equal(shmbus_producer__publish(p, &t0, sizeof(t0), &wait),
			 -ENOBUFS);
	assert_true(t_now_ns() - t0 < 1000 * MS);	/* did not wait 2 s */
	info(bus, "ovf.reject", &qi);
	assert_int_equal(qi.overflow, SHMBUS_OVERFLOW_REJECT);
	assert_int_equal(qi.stat[SHMBUS_STAT_FULL], 1);
	shmbus_producer__free(p);

	assert_int_equal(shmbus__queue_declare(bus, "ovf.dlq", NULL), 1);
	assert_int_equal(shmbus__queue_declare(bus, "ovf.drop", &drop), 1);
	p = shmbus_producer__new(bus, "ovf.drop", NULL);
	c = shmbus_consumer__new(bus, "ovf.drop", NULL);
	d = shmbus_consumer__new(bus, "ovf.dlq", NULL);
	for (int i = 0; i < 5; i++)
		t_publish_int(p, i, NULL);	/* never fails */
	assert_int_equal(t_recv_int(c, &m, 0), 3);
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	assert_int_equal(t_recv_int(c, &m, 0), 4);
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(t_recv_int(d, &m, 5000 * MS), i);
		assert_int_equal(m.dl_reason, SHMBUS_DL_OVERFLOW);
		assert_int_equal(shmbus_consumer__ack(d, &m), 0);
	}
	info(bus, "ovf.drop", &qi);
	assert_int_equal(qi.stat[SHMBUS_STAT_DEADLETTERED], 3);
	assert_int_equal(qi.stat[SHMBUS_STAT_PUBLISHED], 5);
	shmbus_consumer__free(d);
	shmbus_consumer__free(c);
	shmbus_producer__free(p);

	assert_int_equal(shmbus__queue_declare(bus, "ovf.gone", &drop_nodlq), 1);
	p = shmbus_producer__new(bus, "ovf.gone", NULL);
	for (int i = 0; i < 5; i++)
		t_publish_int(p, i, NULL);
	info(bus, "ovf.gone", &qi);
	assert_int_equal(qi.stat[SHMBUS_STAT_DROPPED], 3);
	assert_int_equal(qi.depth, 2);
	shmbus_producer__free(p);
	shmbus__close(bus);
}

/* Attributes: set at publish, read in place, carried through a topic,
 * a loan and a dead-letter (which adds the dlq.* marks), refused when
 * malformed or too big. */
static void test_attrs(void **state)
{
	struct shmbus *bus = open_bus();
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_deliveries = 1,
		    .dead_letter_queue = "attrs.dlq");
	static char big[SHMBUS_ATTR_BYTES];
	struct shmbus_attr a[2] = {
		{ .key = "content-type", .value = "application/json",
		  .value_len = 16 },
		{ .key = "trace-id", .value = "abc123", .value_len = 6 },
	};
	struct shmbus_attr bad = { .key = "", .value = "x", .value_len = 1 };
	struct shmbus_attr huge = { .key = "k", .value = big,
				    .value_len = sizeof(big) };
	SHMBUS_OPTS(shmbus_pub_opts, po, .attrs = a, .nr_attrs = 2);
	SHMBUS_OPTS(shmbus_pub_opts, pbad, .attrs = &bad, .nr_attrs = 1);
	SHMBUS_OPTS(shmbus_pub_opts, phuge, .attrs = &huge, .nr_attrs = 1);
	struct shmbus_producer *p;
	struct shmbus_consumer *c, *d;
	struct shmbus_msg m;
	const void *v;
	size_t vl, kl;
	const char *k;
	uint32_t it = 0;
	void *loan;

	(void)state;
	assert_int_equal(shmbus__queue_declare(bus, "attrs.dlq", NULL), 1);
	assert_int_equal(shmbus__queue_declare(bus, "attrs", &qo), 1);
	p = shmbus_producer__new(bus, "attrs", NULL);
	c = shmbus_consumer__new(bus, "attrs", NULL);
	d = shmbus_consumer__new(bus, "attrs.dlq", NULL);
	assert_int_equal(shmbus_producer__publish(p, "{}", 2, &pbad), -EINVAL);
	assert_int_equal(shmbus_producer__publish(p, "{}", 2, &phuge), -E2BIG);
	assert_int_equal(shmbus_producer__publish(p, "{}", 2, &po), 0);
	assert_int_equal(shmbus_consumer__receive_view(c, &m, 0), 0);
	assert_int_equal(m.len, 2);
	assert_int_equal(shmbus_msg__attr(&m, "trace-id", &v, &vl), 0);
	assert_int_equal(vl, 6);
	assert_memory_equal(v, "abc123", 6);
	assert_int_equal(shmbus_msg__attr(&m, "nope", &v, &vl), -ENOENT);
	assert_int_equal(shmbus_msg__attr_next(&m, &it, &k, &kl, &v, &vl), 1);
	assert_int_equal(kl, 12);
	assert_memory_equal(k, "content-type", 12);
	assert_int_equal(shmbus_msg__attr_next(&m, &it, &k, &kl, &v, &vl), 1);
	assert_int_equal(shmbus_msg__attr_next(&m, &it, &k, &kl, &v, &vl), 0);
	/* fails once (max_deliveries 1): dead-lettered with its own
	 * attributes and the bus's marks */
	assert_int_equal(shmbus_consumer__nack(c, &m, 0), 0);
	assert_int_equal(shmbus_consumer__receive_view(d, &m, 5000 * MS), 0);
	assert_int_equal(shmbus_msg__attr(&m, "content-type", &v, &vl), 0);
	assert_int_equal(shmbus_msg__attr(&m, "dlq.reason", &v, &vl), 0);
	assert_int_equal(vl, 14);
	assert_memory_equal(v, "max-deliveries", 14);
	assert_int_equal(shmbus_msg__attr(&m, "dlq.source", &v, &vl), 0);
	assert_memory_equal(v, "attrs", 5);
	assert_int_equal(shmbus_msg__attr(&m, "dlq.deliveries", &v, &vl), 0);
	assert_memory_equal(v, "1", 1);
	assert_int_equal(shmbus_consumer__ack(d, &m), 0);
	/* zero-copy publish with attributes */
	loan = shmbus_producer__loan(p, 64, 0);
	assert_non_null(loan);
	memcpy(loan, "loaned", 6);
	assert_int_equal(shmbus_producer__commit(p, loan, 6, &po), 0);
	assert_int_equal(shmbus_consumer__receive_view(c, &m, 0), 0);
	assert_memory_equal(m.data, "loaned", 6);
	assert_int_equal(shmbus_msg__attr(&m, "content-type", &v, &vl), 0);
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	shmbus_consumer__free(d);
	shmbus_consumer__free(c);
	shmbus_producer__free(p);
	shmbus__close(bus);
}

/* Priorities: higher levels first; a blocked consumer is woken by any
 * level; a retried message keeps its level. */
static void test_priorities(void **state)
{
	struct shmbus *bus = open_bus();
	SHMBUS_OPTS(shmbus_queue_opts, qo, .priorities = 3);
	SHMBUS_OPTS(shmbus_pub_opts, hi, .priority = 2);
	SHMBUS_OPTS(shmbus_pub_opts, mid, .priority = 1);
	SHMBUS_OPTS(shmbus_pub_opts, bad, .priority = 3);
	struct shmbus_producer *p;
	struct shmbus_consumer *c;
	struct shmbus_queue_info qi;
	struct shmbus_msg m;
	const int order[] = { 20, 21, 10, 1, 2, 3 };
	pid_t kid;

	(void)state;
	assert_int_equal(shmbus__queue_declare(bus, "prio", &qo), 1);
	p = shmbus_producer__new(bus, "prio", NULL);
	c = shmbus_consumer__new(bus, "prio", NULL);
	assert_int_equal(shmbus_producer__publish(p, "x", 1, &bad), -EINVAL);
	t_publish_int(p, 1, NULL);
	t_publish_int(p, 2, NULL);
	t_publish_int(p, 10, &mid);
	t_publish_int(p, 20, &hi);
	t_publish_int(p, 3, NULL);
	t_publish_int(p, 21, &hi);
	info(bus, "prio", &qi);
	assert_int_equal(qi.priorities, 3);
	assert_int_equal(qi.depth, 6);
	for (unsigned i = 0; i < 6; i++) {
		assert_int_equal(t_recv_int(c, &m, 0), order[i]);
		if (i == 0) {
			/* a retry stays at its level: first again */
			assert_int_equal(m.priority, 2);
			assert_int_equal(shmbus_consumer__nack(c, &m, 0), 0);
			assert_int_equal(t_recv_int(c, &m, 0), 21);
			assert_int_equal(shmbus_consumer__nack(c, &m, 0), 0);
			assert_int_equal(t_recv_int(c, &m, 0), 20);
		}
		assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	}
	/* a consumer asleep wakes for a high-priority message */
	if (!(kid = fork())) {
		struct shmbus *b = open_bus();
		struct shmbus_producer *pp = shmbus_producer__new(b, "prio", NULL);
		int v = 99;

		CHILD_CHECK(pp, "producer");
		usleep(100000);
		CHILD_CHECK(!shmbus_producer__publish(pp, &v, sizeof(v), &hi),
			    "publish");
		_exit(0);
	}
	assert_int_equal(t_recv_int(c, &m, 5000 * MS), 99);
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	assert_int_equal(t_wait(kid, 5000), 0);
	shmbus_consumer__free(c);
	shmbus_producer__free(p);
	shmbus__close(bus);
}

/* Declare rules for the new settings. */
static void test_declare_semantics(void **state)
{
	struct shmbus *bus = open_bus();
	SHMBUS_OPTS(shmbus_queue_opts, a, .lease_ns = 5000 * MS,
		    .max_deliveries = 3);
	SHMBUS_OPTS(shmbus_queue_opts, b, .lease_ns = 6000 * MS,
		    .max_deliveries = 3);
	SHMBUS_OPTS(shmbus_queue_opts, selfdlq, .dead_letter_queue = "d1");
	SHMBUS_OPTS(shmbus_queue_opts, nodlq, .flags = SHMBUS_QUEUE_EXPIRE_TO_DLQ);
	SHMBUS_OPTS(shmbus_queue_opts, badlease, .lease_ns = 1000);
	SHMBUS_OPTS(shmbus_queue_opts, badmult, .backoff_init_ns = MS,
		    .backoff_mult_milli = 500);

	(void)state;
	assert_int_equal(shmbus__queue_declare(bus, "d1", &a), 1);
	assert_int_equal(shmbus__queue_declare(bus, "d1", &a), 0);
	assert_int_equal(shmbus__queue_declare(bus, "d1", &b), -EEXIST);
	assert_int_equal(shmbus__queue_declare(bus, "d1", &selfdlq), -EINVAL);
	assert_int_equal(shmbus__queue_declare(bus, "d2", &nodlq), -EINVAL);
	assert_int_equal(shmbus__queue_declare(bus, "d2", &badlease), -EINVAL);
	assert_int_equal(shmbus__queue_declare(bus, "d2", &badmult), -EINVAL);
	shmbus__close(bus);
}

/*
 * A publish of an id whose publish is under way waits for its outcome:
 * a child's publish of "k" blocks on a full queue (its key pending); ours
 * of "k" gets -EBUSY at its timeout, with a reason; once the child's
 * message is in, ours is its duplicate.
 */
static void test_dedup_pending(void **state)
{
	struct shmbus *bus = open_bus();
	SHMBUS_OPTS(shmbus_queue_opts, qo, .dedup_window_ns = 60000 * MS,
		    .max_len = 2);
	SHMBUS_OPTS(shmbus_pub_opts, now, .dedup_id = "k");
	SHMBUS_OPTS(shmbus_pub_opts, wait, .dedup_id = "k",
		    .timeout_ns = 50 * MS);
	struct shmbus_producer *p;
	struct shmbus_consumer *c;
	struct shmbus_queue_info qi;
	struct shmbus_msg m;
	int err, full = 0, x = 0, y = 0;
	pid_t kid;

	(void)state;
	assert_int_equal(shmbus__queue_declare(bus, "idem.pending", &qo), 1);
	p = shmbus_producer__new(bus, "idem.pending", NULL);
	assert_non_null(p);
	while (shmbus_producer__publish(p, "f", 2, NULL) == 0)
		full++;
	if (!(kid = fork())) {
		struct shmbus *b = open_bus();
		struct shmbus_producer *kp =
			shmbus_producer__new(b, "idem.pending", NULL);
		SHMBUS_OPTS(shmbus_pub_opts, po, .dedup_id = "k",
			    .timeout_ns = 10000 * MS);

		CHILD_CHECK(kp, "producer");
		CHILD_CHECK(!shmbus_producer__publish(kp, "x", 2, &po),
			    "publish");
		_exit(0);
	}
	/* until the child's claim is there: before it, ours claims the key
	 * itself and fails on the full queue, leaving it free again */
	for (int i = 0; i < 5000; i++) {
		err = shmbus_producer__publish(p, "y", 2, &now);
		if (err != -ENOBUFS)
			break;
		usleep(1000);
	}
	assert_int_equal(err, -EBUSY);
	assert_int_equal(shmbus_producer__publish(p, "y", 2, &wait), -EBUSY);
	assert_non_null(strstr(shmbus_errmsg(), "dedup"));
	c = shmbus_consumer__new(bus, "idem.pending", NULL);
	assert_non_null(c);
	assert_int_equal(shmbus_consumer__receive_view(c, &m, 1000 * MS), 0);
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);	/* room */
	assert_int_equal(t_wait(kid, 10000), 0);
	assert_int_equal(shmbus_producer__publish(p, "y", 2, &wait), 0);
	while (shmbus_consumer__receive_view(c, &m, 100 * MS) == 0) {
		x += !strcmp(m.data, "x");
		y += !strcmp(m.data, "y");
		assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	}
	assert_int_equal(x, 1);
	assert_int_equal(y, 0);
	shmbus_consumer__free(c);
	shmbus_producer__free(p);
	info(bus, "idem.pending", &qi);
	assert_int_equal(qi.stat[SHMBUS_STAT_DUPLICATES], 1);
	assert_true(full >= 1);
	shmbus__close(bus);
}

/*
 * Runs. 128 messages wait; consumer A receives 17 one at a time, and its
 * 17th receive (16 claims in a row found a message, and 64 or more wait)
 * claims a run of 32: A takes one of it and then stops receiving (still
 * attached). Its run does
 * not hold the queue: within RUN_HOLD_NS (20 ms) and a tick the daemon
 * gives the 31 back, a producer blocked on the full queue of 128 (whose
 * oldest cells A's run held) goes on, and consumer B gets every other
 * message: sent / received / lost / duplicated, and the longest publish.
 * Then A, stopped (SIGSTOP) in the middle of a run it claimed, resumed
 * after B took everything: it finds its claim taken back and receives
 * nothing twice.
 */
static void test_runs_held_too_long(void **state)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_len = 128);
	SHMBUS_OPTS(shmbus_pub_opts, po, .timeout_ns = 2000 * MS);
	struct shmbus *bus = open_bus();
	unsigned *seen = t_shared(2000 * sizeof(unsigned));
	unsigned *a_got = t_shared(sizeof(unsigned));
	struct shmbus_producer *p;
	struct shmbus_consumer *a, *b;
	struct shmbus_queue_info qi;
	struct shmbus_msg m;
	unsigned sent = 0, got = 0, dup = 0;
	int64_t worst = 0, t0;
	int ready[2], go[2];
	pid_t kid;
	char x;

	(void)state;
	assert_true(shmbus__queue_declare(bus, "runs", &qo) >= 0);
	p = shmbus_producer__new(bus, "runs", NULL);
	a = shmbus_consumer__new(bus, "runs", NULL);
	b = shmbus_consumer__new(bus, "runs", NULL);
	assert_non_null(p);
	assert_non_null(a);
	assert_non_null(b);
	for (; sent < 128; sent++)
		assert_int_equal(shmbus_producer__publish(p, &sent,
							  sizeof(sent), &po), 0);
	for (unsigned i = 0; i < 17; i++) {
		assert_int_equal(shmbus_consumer__try_receive(a, &m), 0);
		assert_int_equal(*(const unsigned *)m.data, i);
		seen[i]++;
		assert_int_equal(shmbus_consumer__ack(a, &m), 0);
	}
	info(bus, "runs", &qi);
	assert_int_equal(qi.depth, 111);	/* 31 of them in A's run */
	/* A idles; the producer fills the queue and waits for room, B
	 * takes what it can */
	for (; sent < 1000; sent++) {
		t0 = t_now_ns();
		assert_int_equal(shmbus_producer__publish(p, &sent,
							  sizeof(sent), &po), 0);
		if (t_now_ns() - t0 > worst)
			worst = t_now_ns() - t0;
		while (shmbus_consumer__try_receive(b, &m) == 0) {
			unsigned i = *(const unsigned *)m.data;

			assert_true(i < 1000);
			dup += seen[i]++ != 0;
			got++;
			assert_int_equal(shmbus_consumer__ack(b, &m), 0);
		}
	}
	while (shmbus_consumer__receive_view(b, &m, 200 * MS) == 0) {
		dup += seen[*(const unsigned *)m.data]++ != 0;
		got++;
		assert_int_equal(shmbus_consumer__ack(b, &m), 0);
	}
	print_message("idle holder of a run: sent %u received %u lost %u "
		      "duplicated %u; the longest publish %.1f ms\n", sent,
		      got + 17 - dup, sent - (got + 17 - dup), dup, worst / 1e6);
	assert_int_equal(got + 17, 1000);
	/* the producer waited for A's run to be given back, once */
	assert_true(worst >= 15 * MS);
	assert_int_equal(dup, 0);
	for (unsigned i = 0; i < 1000; i++)
		assert_int_equal(seen[i], 1);
	shmbus_consumer__free(a);

	/* a holder stopped in the middle of its run */
	memset(seen, 0, 2000 * sizeof(unsigned));
	for (; sent < 1100; sent++)
		assert_int_equal(shmbus_producer__publish(p, &sent,
							  sizeof(sent), &po), 0);
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(go), 0);
	if (!(kid = fork())) {
		struct shmbus *kb = open_bus();
		struct shmbus_consumer *k = shmbus_consumer__new(kb, "runs",
								 NULL);
		struct shmbus_msg km;

		CHILD_CHECK(k, "consumer");
		for (int i = 0; i < 17; i++) {	/* the 17th claims a run */
			CHILD_CHECK(!shmbus_consumer__try_receive(k, &km),
				    "recv");
			seen[*(const unsigned *)km.data]++;
			(*a_got)++;
			CHILD_CHECK(!shmbus_consumer__ack(k, &km), "ack");
		}
		CHILD_CHECK(write(ready[1], "r", 1) == 1, "ready");
		CHILD_CHECK(read(go[0], &x, 1) == 1, "go");
		/* resumed: what it claimed was taken back and taken */
		while (shmbus_consumer__try_receive(k, &km) == 0) {
			seen[*(const unsigned *)km.data]++;
			(*a_got)++;
			CHILD_CHECK(!shmbus_consumer__ack(k, &km), "ack");
		}
		_exit(0);
	}
	assert_int_equal(read(ready[0], &x, 1), 1);
	kill(kid, SIGSTOP);
	got = 0;
	while (shmbus_consumer__receive_view(b, &m, 500 * MS) == 0) {
		seen[*(const unsigned *)m.data]++;
		got++;
		assert_int_equal(shmbus_consumer__ack(b, &m), 0);
	}
	kill(kid, SIGCONT);
	assert_int_equal(write(go[1], "g", 1), 1);
	assert_int_equal(t_wait(kid, 5000), 0);
	dup = 0;
	for (unsigned i = 1000; i < 1100; i++)
		dup += seen[i] > 1;
	print_message("run holder stopped, resumed: sent 100 received %u "
		      "(it %u, the other %u) duplicated %u\n", got + *a_got,
		      *a_got, got, dup);
	for (unsigned i = 1000; i < 1100; i++)
		assert_int_equal(seen[i], 1);
	assert_int_equal(*a_got, 17);
	shmbus_consumer__free(b);
	shmbus_producer__free(p);
	shmbus__close(bus);
}

/*
 * A queue that drops its oldest when full takes one message at a time:
 * with a consumer receiving from a full queue, each publish still
 * succeeds and drops exactly one.
 */
static void test_runs_drop_oldest(void **state)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_len = 128,
		    .overflow = SHMBUS_OVERFLOW_DROP_OLDEST);
	struct shmbus *bus = open_bus();
	struct shmbus_queue_info qi;
	struct shmbus_producer *p;
	struct shmbus_consumer *c;
	struct shmbus_msg m;

	(void)state;
	assert_true(shmbus__queue_declare(bus, "runsdrop", &qo) >= 0);
	p = shmbus_producer__new(bus, "runsdrop", NULL);
	c = shmbus_consumer__new(bus, "runsdrop", NULL);
	assert_non_null(p);
	assert_non_null(c);
	for (unsigned i = 0; i < 128; i++)
		assert_int_equal(shmbus_producer__publish(p, &i, sizeof(i),
							  NULL), 0);
	assert_int_equal(shmbus_consumer__try_receive(c, &m), 0);
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	for (unsigned i = 128; i < 132; i++)
		assert_int_equal(shmbus_producer__publish(p, &i, sizeof(i),
							  NULL), 0);
	info(bus, "runsdrop", &qi);
	print_message("drop-oldest with a consumer: 132 published, %llu "
		      "dropped, depth %llu\n",
		      (unsigned long long)qi.stat[SHMBUS_STAT_DROPPED],
		      (unsigned long long)qi.depth);
	assert_int_equal(qi.stat[SHMBUS_STAT_DROPPED], 3);
	assert_int_equal(qi.depth, 128);
	shmbus_consumer__free(c);
	shmbus_producer__free(p);
	shmbus__close(bus);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ack_nack_extend),
		cmocka_unit_test(test_lease_expiry_sigstop),
		cmocka_unit_test(test_poison_backoff_dlq),
		cmocka_unit_test(test_ttl),
		cmocka_unit_test(test_delay),
		cmocka_unit_test(test_prefetch_autoack_batch),
		cmocka_unit_test(test_batch_settle),
		cmocka_unit_test(test_killed_holding_n),
		cmocka_unit_test(test_dedup),
		cmocka_unit_test(test_dedup_pending),
		cmocka_unit_test(test_overflow),
		cmocka_unit_test(test_runs_held_too_long),
		cmocka_unit_test(test_runs_drop_oldest),
		cmocka_unit_test(test_attrs),
		cmocka_unit_test(test_priorities),
		cmocka_unit_test(test_declare_semantics),
	};

	return T_RUN_WITH_DAEMON("semantics", tests);
}
