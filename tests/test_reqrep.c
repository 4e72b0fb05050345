// SPDX-License-Identifier: MIT
/*
 * test_reqrep.c - request-reply between processes: "no responders" at
 * once, 100,000 round trips each answered with its own reply, a timeout
 * whose late reply is dropped and counted, the private reply queue going
 * away with the requester, a handler's error answered at once with its
 * status and the request dead-lettered; a
 * request published with a reply queue of the caller's (pub_opts
 * reply_to) answered by shmbus__reply() from a copy of its reply fields,
 * never into a queue that took the reply queue's place.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shmbus.h"
#include "helpers.h"

#define BUS	"rr"
#define MS	1000000LL

static struct shmbus *open_bus(void)
{
	return t_open_bus(BUS);
}

/* The price service: "price N" -> "N=<N*3>"; "slow N" waits 300 ms. */
static ssize_t price(void *ctx, const struct shmbus_msg *req, void *reply,
		     size_t cap)
{
	char in[64];
	unsigned long n;

	(void)ctx;
	if (req->len >= sizeof(in))
		return -EINVAL;
	memcpy(in, req->data, req->len);
	in[req->len] = '\0';
	if (sscanf(in, "nope %lu", &n) == 1) {
		snprintf(reply, cap, "no item %lu", n);
		return -ENOENT;		/* an error reply, explained */
	}
	if (sscanf(in, "slow %lu", &n) == 1)
		usleep(300000);
	else if (sscanf(in, "price %lu", &n) != 1)
		return -EINVAL;		/* an error reply: strerror's */
	return snprintf(reply, cap, "%lu=%lu", n, n * 3);
}

static pid_t start_server(const char *queue, unsigned max, int ready_fd)
{
	pid_t kid = fork();

	if (!kid) {
		struct shmbus *b = open_bus();
		struct shmbus_consumer *c = shmbus_consumer__new(b, queue, NULL);
		int n;

		CHILD_CHECK(c, "replier");
		CHILD_CHECK(write(ready_fd, "r", 1) == 1, "ready");
		n = shmbus_consumer__serve(c, price, NULL, max, 3000 * MS);
		CHILD_CHECK(n >= 0, "serve: %s", strerror(-n));
		shmbus_consumer__free(c);
		shmbus__close(b);
		_exit(0);
	}
	return kid;
}

static void test_no_responders(void **state)
{
	struct shmbus *bus = open_bus();
	char r[64];
	int64_t t0;

	(void)state;
	assert_int_equal(shmbus__queue_declare(bus, "nobody", NULL), 1);
	t0 = t_now_ns();
	assert_int_equal(shmbus__request(bus, "nobody", "x", 1, r, sizeof(r),
					 5000 * MS), -EHOSTUNREACH);
	assert_true(t_now_ns() - t0 < 1000 * MS);	/* at once */
	assert_int_equal(shmbus__request(bus, "no.such.queue", "x", 1, r,
					 sizeof(r), MS), -ENOENT);
	shmbus__close(bus);
}

static void test_round_trips(void **state)
{
	const unsigned n = (unsigned)t_scaled(100000);
	struct shmbus *bus = open_bus();
	unsigned bad = 0;
	int ready[2];
	int64_t t0;
	pid_t srv;
	char x;

	(void)state;
	assert_int_equal(shmbus__queue_declare(bus, "price", NULL), 1);
	assert_int_equal(pipe(ready), 0);
	srv = start_server("price", n, ready[1]);
	assert_int_equal(read(ready[0], &x, 1), 1);
	t0 = t_now_ns();
	for (unsigned i = 0; i < n; i++) {
		char req[32], rep[64], want[64];
		ssize_t len;

		snprintf(req, sizeof(req), "price %u", i);
		len = shmbus__request(bus, "price", req, strlen(req), rep,
				      sizeof(rep) - 1, 5000 * MS);
		assert_true(len > 0);
		rep[len] = '\0';
		snprintf(want, sizeof(want), "%u=%lu", i, (unsigned long)i * 3);
		bad += strcmp(rep, want) != 0;
	}
	print_message("%u round trips, %.2f us each, %u mismatched\n", n,
		      (t_now_ns() - t0) / 1e3 / n, bad);
	assert_int_equal(bad, 0);
	assert_int_equal(t_wait(srv, 10000), 0);
	shmbus__close(bus);
}

/*
 * A request times out; its reply arrives later, while the next request
 * waits, and is dropped (counted); the next request gets its own reply.
 * A bad request is refused by the handler: the requester gets an error
 * reply at once, explained by strerror's text.
 */
static void test_timeout_late_reply(void **state)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_deliveries = 1);
	struct shmbus *bus = open_bus();
	struct shmbus_queue_info qi[16];
	char rep[64];
	int ready[2], nq;
	uint64_t dropped = 0;
	int64_t t0;
	ssize_t len;
	pid_t srv;
	char x;

	(void)state;
	assert_int_equal(shmbus__queue_declare(bus, "quote", &qo), 1);
	assert_int_equal(pipe(ready), 0);
	srv = start_server("quote", 4, ready[1]);
	assert_int_equal(read(ready[0], &x, 1), 1);
	len = shmbus__request(bus, "quote", "slow 1", 6, rep, sizeof(rep),
			      100 * MS);
	assert_int_equal(len, -ETIMEDOUT);
	len = shmbus__request(bus, "quote", "price 2", 7, rep, sizeof(rep),
			      5000 * MS);
	assert_int_equal(len, 3);
	assert_memory_equal(rep, "2=6", 3);
	/* not a price: the handler refuses, the requester knows at once */
	t0 = t_now_ns();
	len = shmbus__request(bus, "quote", "bogus", 5, rep, sizeof(rep),
			      5000 * MS);
	assert_int_equal(len, -EREMOTEIO);
	assert_true(t_now_ns() - t0 < 1000 * MS);
	assert_memory_equal(rep, strerror(EINVAL), strlen(strerror(EINVAL)));
	len = shmbus__request(bus, "quote", "price 4", 7, rep, sizeof(rep),
			      5000 * MS);
	assert_int_equal(len, 4);
	assert_memory_equal(rep, "4=12", 4);
	assert_int_equal(t_wait(srv, 10000), 0);
	/* the late reply was counted on our reply queue */
	nq = shmbus__queue_list(bus, qi, 16);
	for (int i = 0; i < nq; i++)
		if (!strncmp(qi[i].name, "_reply.", 7))
			dropped += qi[i].stat[SHMBUS_STAT_DROPPED];
	assert_int_equal(dropped, 1);
	shmbus__close(bus);
}

/* The reply queue is private: it goes away with the requester. */
static void test_reply_queue_cleanup(void **state)
{
	struct shmbus *bus = open_bus();
	struct shmbus_queue_info qi[16];
	int ready[2], nq, replies = 0;
	pid_t srv, req;
	char x;

	(void)state;
	assert_int_equal(shmbus__queue_declare(bus, "echo", NULL), 1);
	assert_int_equal(pipe(ready), 0);
	srv = start_server("echo", 1, ready[1]);
	assert_int_equal(read(ready[0], &x, 1), 1);
	if (!(req = fork())) {
		struct shmbus *b = open_bus();
		char rep[64];

		CHILD_CHECK(shmbus__request(b, "echo", "price 1", 7, rep,
					    sizeof(rep), 5000 * MS) == 3,
			    "request");
		pause();	/* killed holding its reply queue */
		_exit(0);
	}
	assert_int_equal(t_wait(srv, 10000), 0);
	nq = shmbus__queue_list(bus, qi, 16);
	for (int i = 0; i < nq; i++)
		replies += !strncmp(qi[i].name, "_reply.", 7);
	assert_int_equal(replies, 1);
	kill(req, SIGKILL);
	assert_int_equal(t_wait(req, 5000), 128 + SIGKILL);
	for (int k = 0; k < 500 && replies; k++) {
		usleep(2000);
		replies = 0;
		nq = shmbus__queue_list(bus, qi, 16);
		for (int i = 0; i < nq; i++)
			replies += !strncmp(qi[i].name, "_reply.", 7);
	}
	assert_int_equal(replies, 0);
	shmbus__close(bus);
}

/*
 * A requester times out and exits; its reply queue's id is reused by a
 * new queue before the slow reply comes: the reply must not land there
 * (reply-to carries the queue's generation).
 */
static void test_reply_to_reused_id(void **state)
{
	struct shmbus *bus = open_bus();
	struct shmbus_queue_info qi[32];
	int ready[2], n;
	pid_t srv, req;
	char x;

	(void)state;
	assert_int_equal(shmbus__queue_declare(bus, "slowq", NULL), 1);
	assert_int_equal(pipe(ready), 0);
	srv = start_server("slowq", 1, ready[1]);
	assert_int_equal(read(ready[0], &x, 1), 1);
	if (!(req = fork())) {
		struct shmbus *b = open_bus();
		char rep[64];

		CHILD_CHECK(shmbus__request(b, "slowq", "slow 1", 6, rep,
					    sizeof(rep), 50 * MS) == -ETIMEDOUT,
			    "request");
		_exit(0);	/* its reply queue goes with it */
	}
	assert_int_equal(t_wait(req, 5000), 0);
	usleep(50000);		/* reclaimed after a grace period */
	for (int i = 0; i < 8; i++) {
		char name[32];

		snprintf(name, sizeof(name), "reuse.%d", i);
		assert_int_equal(shmbus__queue_declare(bus, name, NULL), 1);
	}
	assert_int_equal(t_wait(srv, 10000), 0);	/* it has replied */
	n = shmbus__queue_list(bus, qi, 32);
	for (int i = 0; i < n; i++)
		if (!strncmp(qi[i].name, "reuse.", 6))
			assert_int_equal(qi[i].stat[SHMBUS_STAT_PUBLISHED], 0);
	shmbus__close(bus);
}

/*
 * pub_opts reply_to names a queue of ours; the replier copies the three
 * reply fields, acks, and replies later through shmbus__reply(). A copy
 * kept past its reply queue's deletion reaches nothing, also not the
 * queue declared under the same name (and perhaps id) since.
 */
static void test_reply_from_copy(void **state)
{
	SHMBUS_OPTS(shmbus_pub_opts, po, .corr_id = 77, .reply_to = "mine");
	struct shmbus *bus = open_bus();
	struct shmbus_producer *p;
	struct shmbus_consumer *c, *rc;
	struct shmbus_queue_info qi;
	struct shmbus_msg m, copy;

	(void)state;
	assert_int_equal(shmbus__queue_declare(bus, "svc.copy", NULL), 1);
	assert_int_equal(shmbus__queue_declare(bus, "mine", NULL), 1);
	assert_int_equal(shmbus__topic_declare(bus, "a.topic", NULL), 1);
	p = shmbus_producer__new(bus, "svc.copy", NULL);
	c = shmbus_consumer__new(bus, "svc.copy", NULL);
	assert_non_null(p);
	assert_non_null(c);
	assert_int_equal(shmbus_producer__publish(p, "q", 1, &po), 0);
	po.reply_to = "no.such";
	assert_int_equal(shmbus_producer__publish(p, "q", 1, &po), -ENOENT);
	po.reply_to = "a.topic";
	assert_int_equal(shmbus_producer__publish(p, "q", 1, &po), -EINVAL);
	assert_int_equal(shmbus_consumer__receive_view(c, &m, 1000 * MS), 0);
	assert_int_not_equal(m.reply_to, 0);
	assert_int_equal(m.corr_id, 77);
	memset(&copy, 0, sizeof(copy));
	copy.reply_to = m.reply_to;
	copy.__reply_gen = m.__reply_gen;
	copy.corr_id = m.corr_id;
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	assert_int_equal(shmbus__reply(bus, &copy, "ok", 2), 0);
	rc = shmbus_consumer__new(bus, "mine", NULL);
	assert_non_null(rc);
	assert_int_equal(shmbus_consumer__receive_view(rc, &m, 1000 * MS), 0);
	assert_int_equal(m.len, 2);
	assert_memory_equal(m.data, "ok", 2);
	assert_int_equal(m.corr_id, 77);
	assert_int_equal(m.reply_to, 0);
	assert_int_equal(shmbus_consumer__ack(rc, &m), 0);
	shmbus_consumer__free(rc);
	/* gone, and its name declared again */
	assert_int_equal(shmbus__queue_delete(bus, "mine"), 0);
	assert_int_equal(shmbus__reply(bus, &copy, "ok", 2), -ENOENT);
	usleep(50000);
	assert_int_equal(shmbus__queue_declare(bus, "mine", NULL), 1);
	assert_int_equal(shmbus__reply(bus, &copy, "ok", 2), -ENOENT);
	assert_int_equal(shmbus__queue_info(bus, "mine", &qi), 0);
	assert_int_equal(qi.stat[SHMBUS_STAT_PUBLISHED], 0);
	copy.reply_to = 0;
	assert_int_equal(shmbus__reply(bus, &copy, "ok", 2), -EINVAL);
	shmbus_consumer__free(c);
	shmbus_producer__free(p);
	shmbus__close(bus);
}

/*
 * A handler that fails a request answers it with an error status: the
 * requester gets -EREMOTEIO at once, the status and the explanation
 * (also when it does not fit its buffer); the request goes to the DLQ.
 * An error reply sent by hand carries its status in an attribute that
 * shmbus_msg__reply_status() reads, and a garbled one is told apart.
 */
static void test_error_reply(void **state)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .dead_letter_queue = "errq.dlq");
	SHMBUS_OPTS(shmbus_request_opts, ro, .timeout_ns = 5000 * MS);
	SHMBUS_OPTS(shmbus_pub_opts, po, .corr_id = 9, .reply_to = "errq.mine");
	struct shmbus_attr bad = { .key = SHMBUS_REPLY_STATUS_ATTR,
				   .value = "x1", .value_len = 2 };
	struct shmbus *bus = open_bus();
	struct shmbus_consumer *c, *mine;
	struct shmbus_producer *p;
	struct shmbus_queue_info qi;
	struct shmbus_msg m;
	char rep[64], x;
	int ready[2];
	ssize_t len;
	int64_t t0;
	pid_t srv;

	(void)state;
	assert_int_equal(shmbus__queue_declare(bus, "errq.dlq", NULL), 1);
	assert_int_equal(shmbus__queue_declare(bus, "errq", &qo), 1);
	assert_int_equal(pipe(ready), 0);
	srv = start_server("errq", 3, ready[1]);
	assert_int_equal(read(ready[0], &x, 1), 1);
	t0 = t_now_ns();
	len = shmbus__request_opts(bus, "errq", "nope 7", 6, rep, sizeof(rep),
				   &ro);
	print_message("error reply after %.1f ms: status %d, '%.*s'\n",
		      (t_now_ns() - t0) / 1e6, ro.status, (int)ro.reply_len,
		      rep);
	assert_int_equal(len, -EREMOTEIO);
	assert_true(t_now_ns() - t0 < 1000 * MS);
	assert_int_equal(ro.status, ENOENT);
	assert_int_equal(ro.reply_len, 9);
	assert_memory_equal(rep, "no item 7", 9);
	/* a buffer too small: as much as fits, the whole length told */
	memset(rep, 0, sizeof(rep));
	len = shmbus__request_opts(bus, "errq", "nope 12", 7, rep, 3, &ro);
	assert_int_equal(len, -EREMOTEIO);
	assert_int_equal(ro.reply_len, 10);
	assert_memory_equal(rep, "no \0", 4);
	/* and a plain reply clears the status */
	len = shmbus__request_opts(bus, "errq", "price 3", 7, rep, sizeof(rep),
				   &ro);
	assert_int_equal(len, 3);
	assert_int_equal(ro.status, 0);
	assert_int_equal(ro.reply_len, 3);
	assert_memory_equal(rep, "3=9", 3);
	assert_int_equal(t_wait(srv, 10000), 0);
	/* the failed ones were rejected to the DLQ, the good one acked */
	assert_int_equal(shmbus__queue_info(bus, "errq.dlq", &qi), 0);
	assert_int_equal(qi.depth, 2);
	assert_int_equal(shmbus__queue_info(bus, "errq", &qi), 0);
	assert_int_equal(qi.stat[SHMBUS_STAT_ACKED], 1);

	/* by hand: a request of our own, answered with status 42 */
	assert_int_equal(shmbus__queue_declare(bus, "errq.mine", NULL), 1);
	p = shmbus_producer__new(bus, "errq", NULL);
	c = shmbus_consumer__new(bus, "errq", NULL);
	mine = shmbus_consumer__new(bus, "errq.mine", NULL);
	assert_non_null(p);
	assert_non_null(c);
	assert_non_null(mine);
	assert_int_equal(shmbus_producer__publish(p, "q", 1, &po), 0);
	assert_int_equal(shmbus_consumer__receive_view(c, &m, 1000 * MS), 0);
	assert_int_equal(shmbus_consumer__reply_error(c, &m, 0, "z", 1),
			 -EINVAL);
	assert_int_equal(shmbus_consumer__reply_error(c, &m, -1, "z", 1),
			 -EINVAL);
	assert_int_equal(shmbus__reply_error(bus, &m, 0, "z", 1), -EINVAL);
	assert_int_equal(shmbus_consumer__reply_error(c, &m, 42, "why", 3), 0);
	assert_int_equal(shmbus__reply(bus, &m, "fine", 4), 0);
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	assert_int_equal(shmbus_consumer__receive_view(mine, &m, 1000 * MS), 0);
	assert_int_equal(shmbus_msg__reply_status(&m), 42);
	assert_int_equal(m.corr_id, 9);
	assert_memory_equal(m.data, "why", 3);
	assert_int_equal(shmbus_consumer__ack(mine, &m), 0);
	assert_int_equal(shmbus_consumer__receive_view(mine, &m, 1000 * MS), 0);
	assert_int_equal(shmbus_msg__reply_status(&m), 0);
	assert_int_equal(shmbus_consumer__ack(mine, &m), 0);
	/* a status attribute that is no number, or one with a NUL in it */
	po.attrs = &bad;
	po.nr_attrs = 1;
	po.reply_to = NULL;
	shmbus_producer__free(p);
	p = shmbus_producer__new(bus, "errq.mine", NULL);
	assert_non_null(p);
	assert_int_equal(shmbus_producer__publish(p, "q", 1, &po), 0);
	assert_int_equal(shmbus_consumer__receive_view(mine, &m, 1000 * MS), 0);
	assert_int_equal(shmbus_msg__reply_status(&m), -EBADMSG);
	assert_int_equal(shmbus_consumer__ack(mine, &m), 0);
	bad.value = "1\0x";
	bad.value_len = 3;
	assert_int_equal(shmbus_producer__publish(p, "q", 1, &po), 0);
	assert_int_equal(shmbus_consumer__receive_view(mine, &m, 1000 * MS), 0);
	assert_int_equal(shmbus_msg__reply_status(&m), -EBADMSG);
	assert_int_equal(shmbus_consumer__ack(mine, &m), 0);
	shmbus_consumer__free(mine);
	shmbus_consumer__free(c);
	shmbus_producer__free(p);
	shmbus__close(bus);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_responders),
		cmocka_unit_test(test_round_trips),
		cmocka_unit_test(test_timeout_late_reply),
		cmocka_unit_test(test_reply_queue_cleanup),
		cmocka_unit_test(test_reply_to_reused_id),
		cmocka_unit_test(test_reply_from_copy),
		cmocka_unit_test(test_error_reply),
	};

	return T_RUN_WITH_DAEMON("reqrep", tests);
}
