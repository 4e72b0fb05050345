// SPDX-License-Identifier: MIT
/*
 * test_wake.c - sleeping and waking, across processes:
 *  - lost wake-up stress: a 2-slot queue, blocking consumers, 200,000
 *    messages; a lost wake-up shows as a consumer timing out;
 *  - no thundering herd: one message wakes one of eight sleepers;
 *  - epoll: the consumer fd is readable exactly when messages wait;
 *  - timeouts, EINTR, and a deleted queue waking its sleepers (-EIDRM);
 *  - a wake-up that goes to a consumer which then does not take the
 *    message (stopped, killed, or detaching) reaches another sleeper
 *    while the producer lives on;
 *  - SHMBUS_PUB_MORE: a burst wakes a sleeper once, at its last publish
 *    or at the flush; the lost wake-up stress with bursts of 16 into a
 *    2-slot queue (every burst waits for room, owing wake-ups); and a
 *    producer killed -9 while it owes them: the daemon wakes the
 *    consumer as it releases the dead producer's slot.
 */
#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>

#include "shmbus.h"
#include "shmbus/layout.h"
#include "helpers.h"

#define BUS	"wake"

static struct shmbus *open_bus(void)
{
	return t_open_bus(BUS);
}

static void declare(const char *q, uint32_t max_len, uint32_t consumers)
{
	struct shmbus *bus = open_bus();
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_len = max_len, .msg_size = 64,
		    .max_consumers = consumers);

	assert_true(shmbus__queue_declare(bus, q, &qo) >= 0);
	shmbus__close(bus);
}

static void info(const char *q, struct shmbus_queue_info *qi)
{
	struct shmbus *bus = open_bus();

	assert_int_equal(shmbus__queue_info(bus, q, qi), 0);
	shmbus__close(bus);
}

struct counts {
	uint64_t received;
	uint64_t bad;
};

/*
 * Consume until the producer's stop message (UINT64_MAX). A lost wake-up
 * shows as a receive that waits out its timeout: at the timeout the
 * receive looks once more and would find the message, so measure instead
 * of waiting for -ETIMEDOUT. The producer never pauses for long.
 */
static void stress_consumer(const char *q, int64_t spin, uint64_t total,
			    struct counts *cnt)
{
	struct shmbus *bus = open_bus();
	SHMBUS_OPTS(shmbus_consumer_opts, co, .spin_ns = spin);
	struct shmbus_consumer *c = shmbus_consumer__new(bus, q, &co);

	CHILD_CHECK(c, "consumer: %s", strerror(errno));
	for (;;) {
		uint64_t v;
		int64_t t0 = t_now_ns();
		ssize_t n = shmbus_consumer__receive(c, &v, sizeof(v),
						     10LL * 1000000000);

		CHILD_CHECK(n != -ETIMEDOUT && t_now_ns() - t0 < 5000000000LL,
			    "lost wake-up: blocked %.1f s with %llu of %llu "
			    "received", (t_now_ns() - t0) / 1e9,
			    (unsigned long long)cnt->received,
			    (unsigned long long)total);
		CHILD_CHECK(n == sizeof(v), "receive: %zd", n);
		if (v == UINT64_MAX)
			break;
		if (v >= total)
			atomic_add_relaxed(&cnt->bad, 1);
		atomic_fetch_add(&cnt->received, 1);
	}
	shmbus_consumer__free(c);
	shmbus__close(bus);
	_exit(0);
}

/* @burst > 1: every message but each burst's last with SHMBUS_PUB_MORE */
static void stress_producer(const char *q, uint64_t total, unsigned burst)
{
	struct shmbus *bus = open_bus();
	struct shmbus_producer *p = shmbus_producer__new(bus, q, NULL);
	SHMBUS_OPTS(shmbus_pub_opts, po, .timeout_ns = -1);

	CHILD_CHECK(p, "producer: %s", strerror(errno));
	for (uint64_t i = 0; i < total; i++) {
		int err;

		po.flags = burst > 1 && i % burst != burst - 1 ?
			   SHMBUS_PUB_MORE : 0;
		err = shmbus_producer__publish(p, &i, sizeof(i), &po);

		CHILD_CHECK(!err, "publish: %s", strerror(-err));
		/* now and then let the consumers fall asleep */
		if (i % 1024 == 0)
			usleep(50);
	}
	po.flags = 0;
	for (int k = 0; k < 2; k++) {
		uint64_t stop = UINT64_MAX;

		CHILD_CHECK(!shmbus_producer__publish(p, &stop, sizeof(stop), &po),
			    "publish stop");
	}
	shmbus_producer__free(p);
	shmbus__close(bus);
	_exit(0);
}

static void run_stress(const char *q, int64_t spin, unsigned burst)
{
	uint64_t total = t_scaled(200000);
	struct counts *cnt = t_shared(sizeof(*cnt));
	struct shmbus_queue_info qi;
	pid_t c1, c2, p;

	declare(q, 2, 4);
	if (!(c1 = fork()))
		stress_consumer(q, spin, total, cnt);
	if (!(c2 = fork()))
		stress_consumer(q, spin, total, cnt);
	if (!(p = fork()))
		stress_producer(q, total, burst);
	assert_int_equal(t_wait(p, 300000), 0);
	assert_int_equal(t_wait(c1, 300000), 0);
	assert_int_equal(t_wait(c2, 300000), 0);
	assert_int_equal(cnt->received, total);
	assert_int_equal(cnt->bad, 0);
	info(q, &qi);
	assert_int_equal(qi.stat[SHMBUS_STAT_PUBLISHED], total + 2);
	assert_int_equal(qi.stat[SHMBUS_STAT_DELIVERED], total + 2);
	assert_int_equal(qi.capacity, 2);
	/* at most one eventfd write per message, none when nobody slept */
	assert_true(qi.stat[SHMBUS_STAT_WAKEUPS] <= total + 2);
	print_message("%llu messages, %llu sleeps, %llu wake-ups sent\n",
		      (unsigned long long)total,
		      (unsigned long long)qi.stat[SHMBUS_STAT_SLEEPS],
		      (unsigned long long)qi.stat[SHMBUS_STAT_WAKEUPS]);
}

/* Consumers that block at once: every message races a sleeper. */
static void test_lost_wakeup_block(void **state)
{
	(void)state;
	run_stress("stress.block", -1, 1);
}

/* Consumers that spin 2 us first: the race moves into arm/re-check. */
static void test_lost_wakeup_spin(void **state)
{
	(void)state;
	run_stress("stress.spin", 2000, 1);
}

/*
 * Producers sleeping for room: two producers (timeout for ever) and two
 * consumers through a 2-slot queue, 100,000 messages. Each consumer now
 * and then pauses 5 ms so that both producers fall asleep; a lost wake-up
 * would leave a producer asleep for its whole nap (100 ms) with room in
 * the ring, which shows as a publish that long.
 */
#define MIN_T(a, b)	((a) < (b) ? (a) : (b))

struct room_counts {
	uint64_t received, bad, slow_publishes;
	int64_t worst_ns;
};

static void room_producer(const char *q, uint64_t from, uint64_t n,
			  struct room_counts *cnt)
{
	struct shmbus *bus = open_bus();
	struct shmbus_producer *p = shmbus_producer__new(bus, q, NULL);
	SHMBUS_OPTS(shmbus_pub_opts, po, .timeout_ns = -1);
	int64_t worst = 0;

	CHILD_CHECK(p, "producer: %s", strerror(errno));
	for (uint64_t i = from; i < from + n; i++) {
		int64_t t0 = t_now_ns(), dt;
		int err = shmbus_producer__publish(p, &i, sizeof(i), &po);

		CHILD_CHECK(!err, "publish: %s", strerror(-err));
		dt = t_now_ns() - t0;
		if (dt > worst)
			worst = dt;
		if (dt >= 90 * 1000000LL)
			atomic_fetch_add(&cnt->slow_publishes, 1);
	}
	if (worst > READ_ONCE(cnt->worst_ns))
		WRITE_ONCE(cnt->worst_ns, worst);
	shmbus_producer__free(p);
	shmbus__close(bus);
	_exit(0);
}

static void room_consumer(const char *q, uint64_t total,
			  struct room_counts *cnt)
{
	struct shmbus *bus = open_bus();
	struct shmbus_consumer *c = shmbus_consumer__new(bus, q, NULL);

	CHILD_CHECK(c, "consumer: %s", strerror(errno));
	for (uint64_t k = 0;; k++) {
		uint64_t v;
		ssize_t n = shmbus_consumer__receive(c, &v, sizeof(v),
						     2LL * 1000000000);

		if (n == -ETIMEDOUT)
			break;		/* the producers are done */
		CHILD_CHECK(n == sizeof(v), "receive: %zd", n);
		if (v >= total)
			atomic_add_relaxed(&cnt->bad, 1);
		atomic_fetch_add(&cnt->received, 1);
		/* now and then long enough for both producers to go from
		 * spinning and yielding to sleeping */
		if (k % 997 == 0)
			usleep(5000);
	}
	shmbus_consumer__free(c);
	shmbus__close(bus);
	_exit(0);
}

static void test_room_stress(void **state)
{
	uint64_t total = t_scaled(100000);
	struct room_counts *cnt = t_shared(sizeof(*cnt));
	pid_t kids[4];

	(void)state;
	declare("room", 2, 4);
	for (int i = 0; i < 2; i++)
		if (!(kids[i] = fork()))
			room_consumer("room", total, cnt);
	for (int i = 0; i < 2; i++)
		if (!(kids[2 + i] = fork()))
			room_producer("room", i * (total / 2), total / 2, cnt);
	for (int i = 0; i < 4; i++)
		assert_int_equal(t_wait(kids[3 - i], 300000), 0);
	print_message("producers sleeping for room: sent %llu received %llu "
		      "lost %llu duplicated %llu corrupt %llu; publishes of "
		      "90 ms or more %llu, the slowest %.2f ms\n",
		      (unsigned long long)total,
		      (unsigned long long)cnt->received,
		      (unsigned long long)(total - MIN_T(cnt->received, total)),
		      (unsigned long long)(cnt->received > total ?
					   cnt->received - total : 0),
		      (unsigned long long)cnt->bad,
		      (unsigned long long)cnt->slow_publishes,
		      cnt->worst_ns / 1e6);
	assert_int_equal(cnt->received, total);
	assert_int_equal(cnt->bad, 0);
	assert_int_equal(cnt->slow_publishes, 0);
}

/*
 * A producer waiting on a full queue sleeps: 500 ms of waiting cost it
 * next to no CPU time, a consumer's take wakes it at once, and a delete
 * wakes it with -EIDRM.
 */
static void test_room_sleeps(void **state)
{
	struct shmbus *bus;
	struct shmbus_consumer *c;
	struct shmbus_msg m;
	struct rusage ru0, ru1;
	int64_t cpu_ns, t0;
	uint64_t v = 1;
	pid_t kid;
	int ready[2];
	char x;

	(void)state;
	declare("roomful", 2, 1);
	bus = open_bus();
	{
		struct shmbus_producer *p = shmbus_producer__new(bus, "roomful",
								 NULL);

		assert_non_null(p);
		assert_int_equal(shmbus_producer__publish(p, &v, sizeof(v),
							  NULL), 0);
		assert_int_equal(shmbus_producer__publish(p, &v, sizeof(v),
							  NULL), 0);
		shmbus_producer__free(p);
	}
	/* on its own: it waits out its timeout, asleep */
	getrusage(RUSAGE_SELF, &ru0);
	{
		struct shmbus_producer *p = shmbus_producer__new(bus, "roomful",
								 NULL);
		SHMBUS_OPTS(shmbus_pub_opts, po, .timeout_ns = 500000000);

		assert_non_null(p);
		t0 = t_now_ns();
		assert_int_equal(shmbus_producer__publish(p, &v, sizeof(v),
							  &po), -ENOBUFS);
		assert_true(t_now_ns() - t0 >= 500000000);
		shmbus_producer__free(p);
	}
	getrusage(RUSAGE_SELF, &ru1);
	cpu_ns = (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec +
		  ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) * 1000000000LL +
		 (ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec +
		  ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) * 1000LL;
	print_message("500 ms waiting for room: %.2f ms of CPU\n",
		      cpu_ns / 1e6);
	assert_true(cpu_ns < 50 * 1000000LL);

	/* a take wakes it; a delete wakes the next with -EIDRM */
	assert_int_equal(pipe(ready), 0);
	if (!(kid = fork())) {
		struct shmbus *b = open_bus();
		struct shmbus_producer *p = shmbus_producer__new(b, "roomful",
								 NULL);
		SHMBUS_OPTS(shmbus_pub_opts, po, .timeout_ns = -1);

		CHILD_CHECK(p, "producer: %s", strerror(errno));
		CHILD_CHECK(write(ready[1], "r", 1) == 1, "ready");
		CHILD_CHECK(!shmbus_producer__publish(p, &v, sizeof(v), &po),
			    "woken by a take");
		CHILD_CHECK(shmbus_producer__publish(p, &v, sizeof(v), &po) ==
			    -EIDRM, "woken by the delete");
		_exit(0);
	}
	assert_int_equal(read(ready[0], &x, 1), 1);
	usleep(300000);			/* asleep by now */
	c = shmbus_consumer__new(bus, "roomful", NULL);
	assert_non_null(c);
	assert_int_equal(shmbus_consumer__receive_view(c, &m, 0), 0);
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	usleep(300000);			/* its second publish asleep */
	t0 = t_now_ns();
	assert_int_equal(shmbus__queue_delete(bus, "roomful"), 0);
	assert_int_equal(t_wait(kid, 5000), 0);
	print_message("a sleeping producer saw the delete after %.2f ms\n",
		      (t_now_ns() - t0) / 1e6);
	shmbus_consumer__free(c);
	shmbus__close(bus);
	close(ready[0]);
	close(ready[1]);
}

/* Eight consumers asleep; one message wakes exactly one of them. */
static void test_no_herd(void **state)
{
	struct counts *cnt = t_shared(sizeof(*cnt));
	struct shmbus_queue_info qi;
	struct shmbus *bus;
	struct shmbus_producer *p;
	pid_t kids[8];
	int got = 0, timedout = 0;

	(void)state;
	declare("herd", 16, 8);
	for (int i = 0; i < 8; i++) {
		if (!(kids[i] = fork())) {
			struct shmbus *b = open_bus();
			SHMBUS_OPTS(shmbus_consumer_opts, co, .spin_ns = -1);
			struct shmbus_consumer *c =
				shmbus_consumer__new(b, "herd", &co);
			uint64_t v;
			ssize_t n;

			CHILD_CHECK(c, "consumer: %s", strerror(errno));
			atomic_fetch_add(&cnt->bad, 1);
			n = shmbus_consumer__receive(c, &v, sizeof(v),
						     1500 * 1000000LL);
			shmbus_consumer__free(c);
			_exit(n == sizeof(v) ? 10 : n == -ETIMEDOUT ? 11 : 12);
		}
	}
	/* all eight attached; give them time to block */
	while (smp_load_acquire(&cnt->bad) < 8)
		usleep(1000);
	usleep(300000);
	bus = open_bus();
	p = shmbus_producer__new(bus, "herd", NULL);
	assert_non_null(p);
	assert_int_equal(shmbus_producer__publish(p, &(uint64_t){ 7 }, sizeof(uint64_t), NULL), 0);
	for (int i = 0; i < 8; i++) {
		int rc = t_wait(kids[i], 10000);

		got += rc == 10;
		timedout += rc == 11;
	}
	assert_int_equal(got, 1);
	assert_int_equal(timedout, 7);
	assert_int_equal(shmbus__queue_info(bus, "herd", &qi), 0);
	assert_int_equal(qi.stat[SHMBUS_STAT_WAKEUPS], 1);
	shmbus_producer__free(p);
	shmbus__close(bus);
}

/* epoll: readable when messages wait, never readable spuriously. */
static void test_epoll(void **state)
{
	struct shmbus *bus;
	struct shmbus_consumer *c;
	struct epoll_event ev = { .events = EPOLLIN }, out;
	const int total = 2000;
	int ep, received = 0, wakeups = 0;
	pid_t prod;

	(void)state;
	declare("epoll", 64, 2);
	bus = open_bus();
	c = shmbus_consumer__new(bus, "epoll", NULL);
	assert_non_null(c);
	ep = epoll_create1(0);
	assert_true(shmbus_consumer__fd(c) >= 0);
	assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, shmbus_consumer__fd(c), &ev), 0);

	/* nothing published: armed and not readable */
	assert_int_equal(shmbus_consumer__arm(c), 0);
	assert_int_equal(epoll_wait(ep, &out, 1, 100), 0);

	if (!(prod = fork())) {
		struct shmbus *b = open_bus();
		struct shmbus_producer *p = shmbus_producer__new(b, "epoll", NULL);
		SHMBUS_OPTS(shmbus_pub_opts, po, .timeout_ns = -1);

		CHILD_CHECK(p, "producer: %s", strerror(errno));
		for (int i = 0; i < total; i++) {
			CHILD_CHECK(!shmbus_producer__publish(p, &i, sizeof(i), &po),
				    "publish");
			if (i % 50 == 49)
				usleep(2000);	/* bursts */
		}
		shmbus_producer__free(p);
		_exit(0);
	}
	while (received < total) {
		struct shmbus_msg m;
		int r = shmbus_consumer__arm(c);

		assert_true(r >= 0);
		if (r == 0) {
			int n = epoll_wait(ep, &out, 1, 5000);

			assert_int_equal(n, 1);	/* 0 = missed wake-up */
			wakeups++;
		}
		while (shmbus_consumer__try_receive(c, &m) == 0) {
			assert_int_equal(*(const int *)m.data, received);
			received++;
			shmbus_consumer__release(c, &m);
		}
	}
	assert_int_equal(t_wait(prod, 30000), 0);
	/* all drained: arming leaves the fd quiet */
	assert_int_equal(shmbus_consumer__arm(c), 0);
	assert_int_equal(epoll_wait(ep, &out, 1, 200), 0);
	print_message("%d messages over %d epoll wake-ups\n", received, wakeups);
	close(ep);
	shmbus_consumer__free(c);
	shmbus__close(bus);
}

static void on_usr1(int sig)
{
	(void)sig;
}

static void test_timeouts_and_eintr(void **state)
{
	struct shmbus *bus;
	struct shmbus_consumer *c;
	struct shmbus_msg m;
	int64_t t0, dt;
	int ready[2];
	pid_t kid;
	char x;

	(void)state;
	declare("timeouts", 4, 2);
	bus = open_bus();
	c = shmbus_consumer__new(bus, "timeouts", NULL);
	assert_non_null(c);
	t0 = t_now_ns();
	assert_int_equal(shmbus_consumer__try_receive(c, &m), -EAGAIN);
	assert_int_equal(shmbus_consumer__receive_view(c, &m, 0), -EAGAIN);
	dt = t_now_ns() - t0;
	assert_true(dt < 50000000);
	t0 = t_now_ns();
	assert_int_equal(shmbus_consumer__receive_view(c, &m, 100000000), -ETIMEDOUT);
	dt = t_now_ns() - t0;
	assert_true(dt >= 100000000);
	assert_true(dt < 2000000000);

	/* a signal ends an unbounded wait with -EINTR */
	assert_int_equal(pipe(ready), 0);
	if (!(kid = fork())) {
		struct sigaction sa = { .sa_handler = on_usr1 };	/* no SA_RESTART */
		struct shmbus *b = open_bus();
		SHMBUS_OPTS(shmbus_consumer_opts, co, .spin_ns = -1);
		struct shmbus_consumer *k = shmbus_consumer__new(b, "timeouts", &co);
		struct shmbus_msg km;

		CHILD_CHECK(k, "consumer");
		sigaction(SIGUSR1, &sa, NULL);
		/* the handler is in place before the parent may signal */
		CHILD_CHECK(write(ready[1], "r", 1) == 1, "ready");
		_exit(shmbus_consumer__receive_view(k, &km, -1) == -EINTR ? 0 : 1);
	}
	assert_int_equal(read(ready[0], &x, 1), 1);
	/* signal until it is out: a signal that lands just before the
	 * child blocks is handled and lost, the next one interrupts */
	{
		int st = -1;

		for (int i = 0; i < 100; i++) {
			usleep(50000);
			kill(kid, SIGUSR1);
			if (waitpid(kid, &st, WNOHANG) == kid)
				break;
		}
		if (st == -1)
			assert_int_equal(t_wait(kid, 5000), 0);
		else
			assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	shmbus_consumer__free(c);
	shmbus__close(bus);
}

/* A consumer blocked for ever wakes within moments of one publish. */
static void test_blocked_then_woken(void **state)
{
	struct shmbus *bus;
	struct shmbus_producer *p;
	uint64_t *woke = t_shared(sizeof(uint64_t));
	pid_t kid;
	int64_t sent;

	(void)state;
	declare("late", 4, 2);
	if (!(kid = fork())) {
		struct shmbus *b = open_bus();
		SHMBUS_OPTS(shmbus_consumer_opts, co, .spin_ns = -1);
		struct shmbus_consumer *k = shmbus_consumer__new(b, "late", &co);
		uint64_t v;

		CHILD_CHECK(k, "consumer");
		CHILD_CHECK(shmbus_consumer__receive(k, &v, sizeof(v), -1) ==
			    sizeof(v), "receive");
		*woke = t_now_ns();
		_exit(v == 42 ? 0 : 1);
	}
	usleep(300000);
	bus = open_bus();
	p = shmbus_producer__new(bus, "late", NULL);
	assert_non_null(p);
	sent = t_now_ns();
	assert_int_equal(shmbus_producer__publish(p, &(uint64_t){ 42 }, 8, NULL), 0);
	assert_int_equal(t_wait(kid, 5000), 0);
	print_message("woken %.1f us after the publish\n", (*woke - sent) / 1e3);
	shmbus_producer__free(p);
	shmbus__close(bus);
}

/* Deleting a queue wakes its blocked consumers with -EIDRM; its
 * producers get -EIDRM; the name can be declared again. */
static void test_delete_wakes(void **state)
{
	struct shmbus *bus;
	struct shmbus_producer *p;
	struct shmbus_consumer *c2;
	struct shmbus_msg m;
	pid_t kid;
	int err = 0;

	(void)state;
	declare("doomed", 8, 2);
	if (!(kid = fork())) {
		struct shmbus *b = open_bus();
		SHMBUS_OPTS(shmbus_consumer_opts, co, .spin_ns = -1);
		struct shmbus_consumer *k = shmbus_consumer__new(b, "doomed", &co);
		struct shmbus_msg km;

		CHILD_CHECK(k, "consumer");
		_exit(shmbus_consumer__receive_view(k, &km, -1) == -EIDRM ? 0 : 1);
	}
	bus = open_bus();
	p = shmbus_producer__new(bus, "doomed", NULL);
	assert_non_null(p);
	usleep(300000);		/* let the child block */
	assert_int_equal(shmbus__queue_delete(bus, "doomed"), 0);
	assert_int_equal(t_wait(kid, 5000), 0);
	assert_int_equal(shmbus_producer__publish(p, "y", 1, NULL), -EIDRM);
	assert_null(shmbus_producer__loan(p, 1, 0));
	assert_int_equal(errno, EIDRM);
	assert_int_equal(shmbus__queue_delete(bus, "doomed"), -ENOENT);
	/* declare again: a new queue, the old handle stays dead */
	for (int i = 0; i < 500; i++) {
		SHMBUS_OPTS(shmbus_queue_opts, qo, .max_len = 8, .msg_size = 64);

		err = shmbus__queue_declare(bus, "doomed", &qo);
		if (err != -ENOSPC)
			break;
		usleep(2000);
	}
	assert_int_equal(err, 1);
	c2 = shmbus_consumer__new(bus, "doomed", NULL);
	assert_non_null(c2);
	assert_int_equal(shmbus_producer__publish(p, "z", 1, NULL), -EIDRM);
	assert_int_equal(shmbus_consumer__try_receive(c2, &m), -EAGAIN);
	shmbus_consumer__free(c2);
	shmbus_producer__free(p);
	shmbus__close(bus);
}

/* A token nobody claimed (the daemon's kick after a producer died) is
 * drained by arm(): the fd is readable only for a new wake-up. */
static void test_epoll_unclaimed_token(void **state)
{
	struct epoll_event ev = { .events = EPOLLIN }, out;
	struct shmbus *bus;
	struct shmbus_consumer *c;
	int ep;
	pid_t kid;

	(void)state;
	declare("kicked", 16, 2);
	bus = open_bus();
	c = shmbus_consumer__new(bus, "kicked", NULL);
	assert_non_null(c);
	ep = epoll_create1(0);
	assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, shmbus_consumer__fd(c), &ev), 0);
	assert_int_equal(shmbus_consumer__arm(c), 0);
	/* a producer attaches and dies: the daemon kicks every seat */
	if (!(kid = fork())) {
		struct shmbus *b = open_bus();

		CHILD_CHECK(shmbus_producer__new(b, "kicked", NULL), "producer");
		pause();
		_exit(0);
	}
	usleep(200000);
	kill(kid, SIGKILL);
	assert_int_equal(t_wait(kid, 5000), 128 + SIGKILL);
	assert_int_equal(epoll_wait(ep, &out, 1, 2000), 1);	/* the kick */
	/* nothing to receive; arming again must leave the fd quiet */
	{
		struct shmbus_msg m;

		assert_int_equal(shmbus_consumer__try_receive(c, &m), -EAGAIN);
	}
	assert_int_equal(shmbus_consumer__arm(c), 0);
	assert_int_equal(epoll_wait(ep, &out, 1, 200), 0);
	close(ep);
	shmbus_consumer__free(c);
	shmbus__close(bus);
}

/* A forked child freeing an inherited consumer leaves the parent's
 * consumer working (its sleep announcement and slot untouched). */
static void test_fork_child_frees(void **state)
{
	struct epoll_event ev = { .events = EPOLLIN }, out;
	struct shmbus *bus;
	struct shmbus_consumer *c;
	struct shmbus_producer *p;
	int ep;
	pid_t kid;

	(void)state;
	declare("inherit", 16, 2);
	bus = open_bus();
	c = shmbus_consumer__new(bus, "inherit", NULL);
	p = shmbus_producer__new(bus, "inherit", NULL);
	assert_non_null(c);
	assert_non_null(p);
	ep = epoll_create1(0);
	assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, shmbus_consumer__fd(c), &ev), 0);
	assert_int_equal(shmbus_consumer__arm(c), 0);
	if (!(kid = fork())) {
		shmbus_consumer__free(c);
		shmbus_producer__free(p);
		shmbus__close(bus);
		_exit(0);
	}
	assert_int_equal(t_wait(kid, 5000), 0);
	assert_int_equal(shmbus_producer__publish(p, "hi", 2, NULL), 0);
	assert_int_equal(epoll_wait(ep, &out, 1, 2000), 1);
	close(ep);
	shmbus_producer__free(p);
	shmbus_consumer__free(c);
	shmbus__close(bus);
}

/* The sleep mask of queue @q, read from our own mapping of the arena. */
static uint64_t sleep_mask_of(const char *q)
{
	const uint8_t *base = t_arena_mapping(BUS);
	const struct shmbus_sb *sb = (const struct shmbus_sb *)base;

	assert_non_null(base);
	for (uint32_t i = 0; i < sb->max_queues; i++) {
		const struct shmbus_queue *d =
			(const struct shmbus_queue *)(base + sb->qdir_off) + i;

		if ((READ_ONCE(d->gen) & 1) && !strcmp(d->name, q))
			return READ_ONCE(d->sleep_mask[0]);
	}
	fail_msg("queue %s not in the arena", q);
	return 0;
}

/* Wait until queue @q's sleep mask is @want. */
static void wait_mask(const char *q, uint64_t want)
{
	for (int i = 0; i < 5000 && sleep_mask_of(q) != want; i++)
		usleep(1000);
	assert_int_equal(sleep_mask_of(q), want);
}

enum wake_fate { FATE_STOPPED, FATE_KILLED, FATE_DETACHED };

struct passed_on {
	int64_t pub_ns, recv_ns;	/* the publish; B's receive */
	uint64_t a_received, b_received;
	uint32_t detach;		/* A: leave now */
};

/*
 * Consumer A (seat 0) sleeps, consumer B (seat 1) sleeps, a producer that
 * stays alive publishes one message: its wake-up goes to A (a fresh
 * thread wakes the lowest seat first), which then does not take it
 * (@fate). B must receive it, in well under its 10 s timeout.
 */
static void run_passed_on(const char *q, enum wake_fate fate)
{
	static const char *names[] = { "stopped", "killed", "detached" };
	struct passed_on *sh = t_shared(sizeof(*sh));
	pid_t a, b, prod;
	int rc_b, rc_a;
	int64_t lat;

	declare(q, 16, 4);
	/* keep the bus open here: sleep_mask_of() reads our mapping */
	struct shmbus *bus = open_bus();

	if (!(a = fork())) {
		struct shmbus *ab = open_bus();
		SHMBUS_OPTS(shmbus_consumer_opts, co, .spin_ns = -1);
		struct shmbus_consumer *c = shmbus_consumer__new(ab, q, &co);
		uint64_t v;

		CHILD_CHECK(c, "consumer A: %s", strerror(errno));
		if (fate != FATE_DETACHED) {
			if (shmbus_consumer__receive(c, &v, sizeof(v),
						     10000 * 1000000LL) ==
			    sizeof(v))
				atomic_fetch_add(&sh->a_received, 1);
			_exit(0);
		}
		/* an epoll user: armed, then it leaves without receiving */
		CHILD_CHECK(shmbus_consumer__arm(c) == 0, "arm");
		while (!smp_load_acquire(&sh->detach))
			usleep(1000);
		shmbus_consumer__free(c);
		shmbus__close(ab);
		_exit(0);
	}
	wait_mask(q, 1);		/* A asleep on seat 0 */
	if (fate != FATE_DETACHED)
		kill(a, SIGSTOP);	/* killed: stopped first, as seen */
	if (!(b = fork())) {
		struct shmbus *bb = open_bus();
		SHMBUS_OPTS(shmbus_consumer_opts, co, .spin_ns = -1);
		struct shmbus_consumer *c = shmbus_consumer__new(bb, q, &co);
		uint64_t v;
		ssize_t n;

		CHILD_CHECK(c, "consumer B: %s", strerror(errno));
		n = shmbus_consumer__receive(c, &v, sizeof(v),
					     10000 * 1000000LL);
		if (n == sizeof(v)) {
			sh->recv_ns = t_now_ns();
			atomic_fetch_add(&sh->b_received, 1);
		}
		shmbus_consumer__free(c);
		_exit(n == sizeof(v) ? 10 : n == -ETIMEDOUT ? 11 : 12);
	}
	wait_mask(q, 3);		/* and B on seat 1 */
	if (!(prod = fork())) {
		struct shmbus *pb = open_bus();
		struct shmbus_producer *p = shmbus_producer__new(pb, q, NULL);

		CHILD_CHECK(p, "producer: %s", strerror(errno));
		sh->pub_ns = t_now_ns();
		CHILD_CHECK(shmbus_producer__publish(p, &(uint64_t){ 42 },
						     sizeof(uint64_t), NULL) == 0,
			    "publish");
		pause();	/* long-lived: its death would kick every seat */
		_exit(0);
	}
	/* the wake-up went to A: its bit is gone, and it cannot re-arm */
	for (int i = 0; i < 5000 && (sleep_mask_of(q) & 1); i++)
		usleep(1000);
	assert_int_equal(sleep_mask_of(q) & 1, 0);
	if (fate == FATE_KILLED)
		kill(a, SIGKILL);
	if (fate == FATE_DETACHED)
		smp_store_release(&sh->detach, 1);
	rc_b = t_wait(b, 15000);
	lat = sh->b_received ? sh->recv_ns - sh->pub_ns : -1;
	kill(prod, SIGKILL);
	t_wait(prod, 5000);
	if (fate == FATE_STOPPED)
		kill(a, SIGKILL);
	rc_a = t_wait(a, 5000);
	print_message("A %s: sent 1, received %llu (B %llu, A %llu), lost %d, "
		      "duplicated %d; B had it %lld ms after the publish\n",
		      names[fate],
		      (unsigned long long)(sh->a_received + sh->b_received),
		      (unsigned long long)sh->b_received,
		      (unsigned long long)sh->a_received,
		      sh->a_received + sh->b_received == 0,
		      sh->a_received + sh->b_received > 1,
		      (long long)(lat / 1000000));
	assert_int_equal(rc_b, 10);
	assert_int_equal(sh->b_received, 1);
	assert_int_equal(sh->a_received, 0);
	/* a liveness bound, not a benchmark: the daemon's stall check
	 * acts after 100 ms, a death or detach passes it on at once */
	assert_true(lat >= 0 && lat < 2000 * 1000000LL);
	assert_int_equal(rc_a, fate == FATE_DETACHED ? 0 : 128 + SIGKILL);
	shmbus__close(bus);
	munmap(sh, sizeof(*sh));
}

/* A stopped (SIGSTOP) after its wake-up was sent. */
static void test_wake_stopped_consumer(void **state)
{
	(void)state;
	run_passed_on("pass.stop", FATE_STOPPED);
}

/* A stopped, then killed -9 with the wake-up in its eventfd. */
static void test_wake_killed_consumer(void **state)
{
	(void)state;
	run_passed_on("pass.kill", FATE_KILLED);
}

/* A frees its consumer with the wake-up unclaimed. */
static void test_wake_detached_consumer(void **state)
{
	(void)state;
	run_passed_on("pass.detach", FATE_DETACHED);
}

/* The stress with bursts of 16 owed wake-ups into 2 slots. */
static void test_more_stress(void **state)
{
	(void)state;
	run_stress("stress.more", -1, 16);
}

/* A consumer asleep on @q (blocking at once); its receive count and the
 * time of its first message in @sh. */
struct more_sh {
	uint64_t got;
	int64_t first_ns;
};

static pid_t sleeper(const char *q, struct more_sh *sh, unsigned n)
{
	pid_t kid = fork();

	assert_true(kid >= 0);
	if (!kid) {
		struct shmbus *b = open_bus();
		SHMBUS_OPTS(shmbus_consumer_opts, co, .spin_ns = -1);
		struct shmbus_consumer *k = shmbus_consumer__new(b, q, &co);
		uint64_t v;

		CHILD_CHECK(k, "consumer");
		for (unsigned i = 0; i < n; i++) {
			CHILD_CHECK(shmbus_consumer__receive(k, &v, sizeof(v),
							     -1) == sizeof(v),
				    "receive");
			if (!i)
				sh->first_ns = t_now_ns();
			atomic_fetch_add(&sh->got, 1);
		}
		_exit(0);
	}
	return kid;
}

/* Until @q's consumer sleeps. */
static void wait_asleep(const char *q)
{
	struct shmbus_queue_info qi;

	for (int i = 0; i < 500; i++) {
		info(q, &qi);
		if (qi.stat[SHMBUS_STAT_SLEEPS] >= 1)
			return;
		usleep(10000);
	}
	fail_msg("the consumer of %s never slept", q);
}

/* Nine publishes with SHMBUS_PUB_MORE wake nobody; the tenth, without,
 * wakes the sleeper once and it takes all ten. Then a burst closed by
 * shmbus_producer__flush(). */
static void test_more_one_wakeup(void **state)
{
	struct more_sh *sh = t_shared(sizeof(*sh));
	SHMBUS_OPTS(shmbus_pub_opts, po, .flags = SHMBUS_PUB_MORE);
	struct shmbus_queue_info qi;
	struct shmbus_producer *p;
	struct shmbus *bus;
	pid_t kid;

	(void)state;
	declare("more", 64, 2);
	kid = sleeper("more", sh, 20);
	wait_asleep("more");
	bus = open_bus();
	p = shmbus_producer__new(bus, "more", NULL);
	assert_non_null(p);
	for (uint64_t i = 0; i < 9; i++)
		assert_int_equal(shmbus_producer__publish(p, &i, 8, &po), 0);
	usleep(50000);
	info("more", &qi);
	assert_int_equal(qi.stat[SHMBUS_STAT_WAKEUPS], 0);
	assert_int_equal(READ_ONCE(sh->got), 0);
	assert_int_equal(shmbus_producer__publish(p, &(uint64_t){ 9 }, 8, NULL),
			 0);
	for (int i = 0; i < 500 && READ_ONCE(sh->got) < 10; i++)
		usleep(2000);
	info("more", &qi);
	print_message("a burst of 10: %llu received, %llu wake-ups\n",
		      (unsigned long long)READ_ONCE(sh->got),
		      (unsigned long long)qi.stat[SHMBUS_STAT_WAKEUPS]);
	assert_int_equal(READ_ONCE(sh->got), 10);
	assert_int_equal(qi.stat[SHMBUS_STAT_WAKEUPS], 1);
	/* asleep again; a burst of ten all with the flag, then flush */
	for (int i = 0; i < 500; i++) {
		info("more", &qi);
		if (qi.stat[SHMBUS_STAT_SLEEPS] >= 2)
			break;
		usleep(10000);
	}
	assert_true(qi.stat[SHMBUS_STAT_SLEEPS] >= 2);
	for (uint64_t i = 0; i < 10; i++)
		assert_int_equal(shmbus_producer__publish(p, &i, 8, &po), 0);
	usleep(50000);
	assert_int_equal(READ_ONCE(sh->got), 10);
	assert_int_equal(shmbus_producer__flush(p), 1);
	assert_int_equal(shmbus_producer__flush(p), 0);	/* owes nothing */
	assert_int_equal(t_wait(kid, 5000), 0);
	info("more", &qi);
	assert_int_equal(qi.stat[SHMBUS_STAT_WAKEUPS], 2);
	/* an unknown flag is refused, with attributes too; so is a
	 * negative delay */
	po.flags = 0x80;
	assert_int_equal(shmbus_producer__publish(p, &(uint64_t){ 0 }, 8, &po),
			 -EINVAL);
	po.attrs = &(struct shmbus_attr){ .key = "k", .value = "v",
					  .value_len = 1 };
	po.nr_attrs = 1;
	assert_int_equal(shmbus_producer__publish(p, &(uint64_t){ 0 }, 8, &po),
			 -EINVAL);
	po.flags = 0;
	po.delay_ns = -1;
	assert_int_equal(shmbus_producer__publish(p, &(uint64_t){ 0 }, 8, &po),
			 -EINVAL);
	shmbus_producer__free(p);
	shmbus__close(bus);
}

/* A producer killed -9 owing the wake-up of five messages: the daemon,
 * releasing its slot, wakes the sleeper (the tick's stall check, 100 ms,
 * would too). */
static void test_more_killed(void **state)
{
	struct more_sh *sh = t_shared(sizeof(*sh));
	int64_t *sent = t_shared(sizeof(*sent));
	pid_t kid, pub;

	(void)state;
	declare("more.kill", 64, 2);
	kid = sleeper("more.kill", sh, 5);
	wait_asleep("more.kill");
	pub = fork();
	assert_true(pub >= 0);
	if (!pub) {
		struct shmbus *b = open_bus();
		struct shmbus_producer *p = shmbus_producer__new(b, "more.kill",
								 NULL);
		SHMBUS_OPTS(shmbus_pub_opts, po, .flags = SHMBUS_PUB_MORE);

		CHILD_CHECK(p, "producer");
		for (uint64_t i = 0; i < 5; i++)
			CHILD_CHECK(!shmbus_producer__publish(p, &i, 8, &po),
				    "publish");
		*sent = t_now_ns();
		raise(SIGKILL);
		_exit(1);
	}
	assert_int_equal(t_wait(pub, 5000), 128 + SIGKILL);
	assert_int_equal(t_wait(kid, 5000), 0);
	print_message("killed owing 5 wake-ups: sent 5 received %llu lost %llu "
		      "duplicated 0; woken %.0f ms after\n",
		      (unsigned long long)READ_ONCE(sh->got),
		      (unsigned long long)(5 - READ_ONCE(sh->got)),
		      (sh->first_ns - *sent) / 1e6);
	assert_int_equal(READ_ONCE(sh->got), 5);
	/* a liveness bound, not a benchmark */
	assert_true(sh->first_ns - *sent < 2000 * 1000000LL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lost_wakeup_block),
		cmocka_unit_test(test_lost_wakeup_spin),
		cmocka_unit_test(test_room_stress),
		cmocka_unit_test(test_room_sleeps),
		cmocka_unit_test(test_no_herd),
		cmocka_unit_test(test_epoll),
		cmocka_unit_test(test_epoll_unclaimed_token),
		cmocka_unit_test(test_fork_child_frees),
		cmocka_unit_test(test_timeouts_and_eintr),
		cmocka_unit_test(test_blocked_then_woken),
		cmocka_unit_test(test_delete_wakes),
		cmocka_unit_test(test_wake_stopped_consumer),
		cmocka_unit_test(test_wake_killed_consumer),
		cmocka_unit_test(test_wake_detached_consumer),
		cmocka_unit_test(test_more_one_wakeup),
		cmocka_unit_test(test_more_stress),
		cmocka_unit_test(test_more_killed),
	};

	return T_RUN_WITH_DAEMON("wake", tests);
}
