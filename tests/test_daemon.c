// SPDX-License-Identifier: MIT
/*
 * test_daemon.c - the control plane:
 *  - eight clients starting at once end with exactly one daemon;
 *  - kill -9 of the daemon does not stop producers and consumers;
 *  - malformed, truncated, oversized frames and frames with fds get an
 *    error reply and a closed connection, and the daemon serves on;
 *  - declare semantics (same settings ok, conflicts refused), limits;
 *  - permissions from SO_PEERCRED (root only: runs as nobody);
 *  - shmbusd.conf: settings from the file, flags over them, every kind
 *    of bad file refused with its line, a user's own default file.
 * Memory limits at bus creation are in test_resources.c.
 */
#include <grp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "shmbus.h"
#include "helpers.h"
#include "proto.h"
#include "shmbus/layout.h"

/* ---- autostart race --------------------------------------------- */

static void test_autostart_race(void **state)
{
	int go[2];
	pid_t kids[8];

	(void)state;
	assert_int_equal(t_count_daemons(), 0);
	assert_int_equal(pipe(go), 0);
	for (int i = 0; i < 8; i++) {
		if (!(kids[i] = fork())) {
			struct shmbus *bus;
			char c;
			int err;

			close(go[1]);
			CHILD_CHECK(read(go[0], &c, 1) == 0, "barrier");
			bus = shmbus__open("race", NULL);
			CHILD_CHECK(bus, "open: %s", strerror(errno));
			err = shmbus__queue_declare(bus, "race.q", NULL);
			CHILD_CHECK(err == 0 || err == 1, "declare: %d", err);
			shmbus__close(bus);
			_exit(err);	/* 1 = created, 0 = existed */
		}
	}
	close(go[0]);
	close(go[1]);	/* all eight start now */
	{
		int created = 0;

		for (int i = 0; i < 8; i++) {
			int rc = t_wait(kids[i], 20000);

			assert_true(rc == 0 || rc == 1);
			created += rc;
		}
		assert_int_equal(created, 1);
	}
	assert_int_equal(t_count_daemons(), 1);
	assert_true(t_daemon_pid() > 0);
}

/* ---- daemon killed while traffic flows ---------------------------- */

static void test_daemon_killed(void **state)
{
	const uint64_t total = t_scaled(300000);
	uint64_t *progress = t_shared(sizeof(uint64_t));
	struct shmbus *bus;
	pid_t cons, prod, dpid;

	(void)state;
	bus = shmbus__open("survive", NULL);
	assert_non_null(bus);
	assert_int_equal(shmbus__queue_declare(bus, "flow", NULL), 1);
	shmbus__close(bus);
	if (!(cons = fork())) {
		struct shmbus *b = shmbus__open("survive", NULL);
		struct shmbus_consumer *c = shmbus_consumer__new(b, "flow", NULL);

		CHILD_CHECK(c, "consumer: %s", strerror(errno));
		for (uint64_t i = 0; i < total; i++) {
			uint64_t v;
			ssize_t n = shmbus_consumer__receive(c, &v, sizeof(v),
							     10LL * 1000000000);

			CHILD_CHECK(n == sizeof(v), "receive %llu: %zd",
				    (unsigned long long)i, n);
			CHILD_CHECK(v == i, "got %llu expected %llu",
				    (unsigned long long)v, (unsigned long long)i);
			WRITE_ONCE(*progress, i);
		}
		shmbus_consumer__free(c);
		shmbus__close(b);
		_exit(0);
	}
	if (!(prod = fork())) {
		struct shmbus *b = shmbus__open("survive", NULL);
		struct shmbus_producer *p = shmbus_producer__new(b, "flow", NULL);
		SHMBUS_OPTS(shmbus_pub_opts, po, .timeout_ns = -1);

		CHILD_CHECK(p, "producer: %s", strerror(errno));
		for (uint64_t i = 0; i < total; i++) {
			CHILD_CHECK(!shmbus_producer__publish(p, &i, sizeof(i), &po),
				    "publish");
			if (i % 4096 == 0)
				usleep(1000);	/* keep it flowing a while */
		}
		shmbus_producer__free(p);
		shmbus__close(b);
		_exit(0);
	}
	while (READ_ONCE(*progress) < total / 10)
		usleep(1000);
	dpid = t_daemon_pid();
	assert_true(dpid > 0);
	assert_int_equal(kill(dpid, SIGKILL), 0);
	for (int i = 0; i < 100 && t_pid_running(dpid); i++)
		usleep(10000);
	assert_false(t_pid_running(dpid));
	assert_true(READ_ONCE(*progress) < total - 1);
	assert_int_equal(t_wait(prod, 60000), 0);
	assert_int_equal(t_wait(cons, 60000), 0);
}

/*
 * A handle that never starts the daemon (its watcher would start one
 * after a kill, and rejoin it), on a daemon that runs now.
 */
static struct shmbus *open_nostart(const char *name)
{
	SHMBUS_OPTS(shmbus_open_opts, o, .flags = SHMBUS_OPEN_NOSTART);
	struct shmbus *b = shmbus__open(name, NULL);

	if (b)
		shmbus__close(b);
	return shmbus__open(name, &o);
}

/*
 * A consumer that meets an expired message bound for the DLQ while no
 * daemon runs drops it, counted, once: the chunk is freed, and not also
 * put back in the queue.
 */
static void test_expired_without_daemon(void **state)
{
	SHMBUS_OPTS(shmbus_pub_opts, ttl, .ttl_ns = 20 * 1000000LL);
	SHMBUS_OPTS(shmbus_queue_opts, to_dlq,
		    .flags = SHMBUS_QUEUE_EXPIRE_TO_DLQ,
		    .dead_letter_queue = "e.dlq");
	struct shmbus *bus = open_nostart("expiry");
	struct shmbus_queue_info qi;
	struct shmbus_producer *p;
	struct shmbus_consumer *c;
	struct shmbus_msg m;
	const int n = 64;
	int got = 0, dup = 0;

	(void)state;
	assert_non_null(bus);
	assert_int_equal(shmbus__queue_declare(bus, "e.dlq", NULL), 1);
	assert_int_equal(shmbus__queue_declare(bus, "e", &to_dlq), 1);
	p = shmbus_producer__new(bus, "e", NULL);
	c = shmbus_consumer__new(bus, "e", NULL);
	assert_non_null(p);
	assert_non_null(c);
	t_publish_int(p, -1, &ttl);
	t_kill_daemon();
	usleep(50000);
	assert_int_equal(shmbus_consumer__receive_view(c, &m, 0), -EAGAIN);
	for (int i = 0; i < n; i++)
		t_publish_int(p, i, NULL);
	for (int i = 0; i < n; i++) {
		int v = t_recv_int(c, &m, 0);

		got++;
		if (v != i)
			dup++;
		assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	}
	assert_int_equal(shmbus_consumer__receive_view(c, &m, 0), -EAGAIN);
	assert_int_equal(shmbus__queue_info(bus, "e", &qi), 0);
	printf("expired without a daemon: sent %d received %d expired %llu "
	       "dropped %llu corrupt %llu lost %d duplicated %d\n", n + 1, got,
	       (unsigned long long)qi.stat[SHMBUS_STAT_EXPIRED],
	       (unsigned long long)qi.stat[SHMBUS_STAT_DROPPED],
	       (unsigned long long)qi.stat[SHMBUS_STAT_CORRUPT], n - got, dup);
	assert_int_equal(dup, 0);
	assert_int_equal(qi.stat[SHMBUS_STAT_EXPIRED], 1);
	assert_int_equal(qi.stat[SHMBUS_STAT_DROPPED], 1);
	assert_int_equal(qi.stat[SHMBUS_STAT_CORRUPT], 0);
	shmbus_consumer__free(c);
	shmbus_producer__free(p);
	shmbus__close(bus);
}

/*
 * A producer that attached before a consumer's seat existed, and never
 * fetched its eventfd while the daemon lived, cannot wake that consumer
 * once the daemon is gone: the consumer, having seen the daemon hang up,
 * looks again every few ms. The message waits ~20 ms, not the timeout.
 */
static void test_wake_without_daemon(void **state)
{
	int64_t *took = t_shared(sizeof(int64_t));
	struct shmbus_producer *p;
	struct shmbus *bus;
	int ready[2], go[2];
	int64_t t0;
	char c;
	pid_t kid;

	(void)state;
	bus = open_nostart("late");
	assert_non_null(bus);
	assert_int_equal(shmbus__queue_declare(bus, "w", NULL), 1);
	p = shmbus_producer__new(bus, "w", NULL);	/* no seat made yet */
	assert_non_null(p);
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(go), 0);
	kid = fork();
	if (!kid) {
		struct shmbus *b = open_nostart("late");
		struct shmbus_consumer *cs = shmbus_consumer__new(b, "w", NULL);
		char buf[8];
		ssize_t n;

		CHILD_CHECK(cs, "consumer: %s", strerror(errno));
		CHILD_CHECK(write(ready[1], "r", 1) == 1, "ready");
		CHILD_CHECK(read(go[0], &c, 1) == 1, "go");
		n = shmbus_consumer__receive(cs, buf, sizeof(buf),
					     5LL * 1000000000);
		CHILD_CHECK(n == 1, "receive: %zd", n);
		WRITE_ONCE(*took, t_now_ns());
		_exit(0);
	}
	assert_int_equal(read(ready[0], &c, 1), 1);
	t_kill_daemon();
	assert_int_equal(write(go[1], "g", 1), 1);
	usleep(200000);		/* the consumer is asleep by now */
	t0 = t_now_ns();
	assert_int_equal(shmbus_producer__publish(p, "x", 1, NULL), 0);
	assert_int_equal(t_wait(kid, 10000), 0);
	printf("woken without a daemon: sent 1 received 1 lost 0, "
	       "%.1f ms after the publish\n", (READ_ONCE(*took) - t0) / 1e6);
	assert_true(READ_ONCE(*took) - t0 < 1000000000LL);
	shmbus_producer__free(p);
	shmbus__close(bus);
}

/* ---- malformed control frames ------------------------------------- */

static int raw_connect(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	strcpy(sa.sun_path, t_sock);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static void frame(struct sbc_hdr *h, unsigned type, size_t body, uint32_t seq)
{
	memset(h, 0, sizeof(*h));
	h->magic = SBC_MAGIC;
	h->version = SBC_VERSION;
	h->type = type;
	h->len = sizeof(*h) + body;
	h->seq = seq;
}

/* Read the reply: returns its status (or 1 if none), then expects EOF. */
static int reply_then_eof(int fd, bool expect_eof)
{
	uint8_t buf[SBC_FRAME_MAX];
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	struct sbc_hdr h;
	ssize_t n;

	assert_int_equal(poll(&pfd, 1, 5000), 1);
	n = recv(fd, buf, sizeof(buf), 0);
	if (n < (ssize_t)sizeof(h))
		return 1;
	memcpy(&h, buf, sizeof(h));
	assert_int_equal(h.magic, SBC_MAGIC);
	assert_int_equal(h.len, (uint32_t)n);
	if (expect_eof) {
		assert_int_equal(poll(&pfd, 1, 5000), 1);
		assert_int_equal(recv(fd, buf, sizeof(buf), 0), 0);
	}
	return h.status;
}

/* A BUS_OPEN request for bus "frames" (CREATE), to send or to spoil. */
static void bus_open_frame(struct sbc_hdr *h, struct sbc_bus_open *b,
			   uint32_t seq)
{
	frame(h, SBC_BUS_OPEN, sizeof(*b), seq);
	memset(b, 0, sizeof(*b));
	strcpy(b->name, "frames");
	b->flags = SBC_OPEN_CREATE;
}

static void hello(int fd)
{
	struct {
		struct sbc_hdr h;
		struct sbc_hello b;
	} f;

	frame(&f.h, SBC_HELLO, sizeof(f.b), 1);
	f.b.version_min = f.b.version_max = SBC_VERSION;
	assert_int_equal(send(fd, &f, sizeof(f), 0), sizeof(f));
	assert_int_equal(reply_then_eof(fd, false), 0);
}

/* A legitimate client still gets full service. */
static void still_serving(void)
{
	struct shmbus *bus = shmbus__open("frames", NULL);
	struct shmbus_producer *p;
	struct shmbus_consumer *c;
	char buf[16];

	assert_non_null(bus);
	assert_true(shmbus__queue_declare(bus, "ok", NULL) >= 0);
	p = shmbus_producer__new(bus, "ok", NULL);
	c = shmbus_consumer__new(bus, "ok", NULL);
	assert_non_null(p);
	assert_non_null(c);
	assert_int_equal(shmbus_producer__publish(p, "ping", 4, NULL), 0);
	assert_int_equal(shmbus_consumer__receive(c, buf, sizeof(buf), 1000000000), 4);
	shmbus_consumer__free(c);
	shmbus_producer__free(p);
	shmbus__close(bus);
}

static void test_malformed_frames(void **state)
{
	uint8_t big[2 * SBC_FRAME_MAX];
	struct {
		struct sbc_hdr h;
		struct sbc_bus_open b;
	} bo;
	struct {
		struct sbc_hdr h;
		struct sbc_hello b;
	} he;
	int fd, st;

	(void)state;
	still_serving();	/* starts the daemon */

	/* shorter than a header */
	fd = raw_connect();
	assert_int_equal(send(fd, "abc", 3, 0), 3);
	assert_int_equal(reply_then_eof(fd, true), -EPROTO);
	close(fd);

	/* bad magic */
	fd = raw_connect();
	frame(&he.h, SBC_HELLO, sizeof(he.b), 1);
	he.h.magic = 0xdeadbeef;
	he.b.version_min = he.b.version_max = SBC_VERSION;
	send(fd, &he, sizeof(he), 0);
	assert_int_equal(reply_then_eof(fd, true), -EPROTO);
	close(fd);

	/* length field disagrees with the packet */
	fd = raw_connect();
	frame(&he.h, SBC_HELLO, sizeof(he.b), 1);
	he.h.len += 4;
	send(fd, &he, sizeof(he), 0);
	assert_int_equal(reply_then_eof(fd, true), -EPROTO);
	close(fd);

	/* truncated body: a HELLO header with half a body */
	fd = raw_connect();
	frame(&he.h, SBC_HELLO, sizeof(he.b), 1);
	he.h.len = sizeof(he.h) + 4;
	send(fd, &he, sizeof(he.h) + 4, 0);
	assert_int_equal(reply_then_eof(fd, true), -EPROTO);
	close(fd);

	/* unknown type */
	fd = raw_connect();
	frame(&he.h, 99, sizeof(he.b), 1);
	send(fd, &he, sizeof(he), 0);
	assert_int_equal(reply_then_eof(fd, true), -EPROTO);
	close(fd);

	/* unsupported protocol version range */
	fd = raw_connect();
	frame(&he.h, SBC_HELLO, sizeof(he.b), 1);
	he.h.magic = SBC_MAGIC;
	he.b.version_min = SBC_VERSION + 1;
	he.b.version_max = SBC_VERSION + 5;
	send(fd, &he, sizeof(he), 0);
	assert_int_equal(reply_then_eof(fd, true), -EPROTONOSUPPORT);
	close(fd);

	/* a request before HELLO */
	fd = raw_connect();
	bus_open_frame(&bo.h, &bo.b, 1);
	send(fd, &bo, sizeof(bo), 0);
	assert_int_equal(reply_then_eof(fd, true), -EPROTO);
	close(fd);

	/* oversized frame */
	fd = raw_connect();
	hello(fd);
	memset(big, 0, sizeof(big));
	frame((struct sbc_hdr *)big, SBC_BUS_OPEN, sizeof(big) - sizeof(struct sbc_hdr), 2);
	send(fd, big, sizeof(big), 0);
	assert_int_equal(reply_then_eof(fd, true), -EMSGSIZE);
	close(fd);

	/* a name without its NUL, and junk after a NUL */
	fd = raw_connect();
	hello(fd);
	bus_open_frame(&bo.h, &bo.b, 2);
	memset(&bo.b, 'a', sizeof(bo.b.name));
	send(fd, &bo, sizeof(bo), 0);
	assert_int_equal(reply_then_eof(fd, true), -EINVAL);
	close(fd);

	/* an owner without SBC_OPEN_OWNER */
	fd = raw_connect();
	hello(fd);
	bus_open_frame(&bo.h, &bo.b, 2);
	bo.b.owner_uid = 1;
	send(fd, &bo, sizeof(bo), 0);
	assert_int_equal(reply_then_eof(fd, true), -EINVAL);
	close(fd);

	/* a status field set in a request */
	fd = raw_connect();
	frame(&he.h, SBC_HELLO, sizeof(he.b), 1);
	he.h.status = -5;
	he.b.version_min = he.b.version_max = SBC_VERSION;
	send(fd, &he, sizeof(he), 0);
	assert_int_equal(reply_then_eof(fd, true), -EPROTO);
	close(fd);

	/* file descriptors from a client */
	fd = raw_connect();
	{
		union {
			struct cmsghdr a;
			uint8_t b[CMSG_SPACE(sizeof(int))];
		} cb;
		struct iovec iov = { .iov_base = &he, .iov_len = sizeof(he) };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
				     .msg_control = cb.b,
				     .msg_controllen = sizeof(cb.b) };
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
		int sent = 0;

		frame(&he.h, SBC_HELLO, sizeof(he.b), 1);
		he.b.version_min = he.b.version_max = SBC_VERSION;
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &sent, sizeof(int));	/* our stdin */
		assert_int_equal(sendmsg(fd, &mh, 0), sizeof(he));
		assert_int_equal(reply_then_eof(fd, true), -EPROTO);
	}
	close(fd);

	/* HELLO twice */
	fd = raw_connect();
	hello(fd);
	frame(&he.h, SBC_HELLO, sizeof(he.b), 2);
	he.b.version_min = he.b.version_max = SBC_VERSION;
	send(fd, &he, sizeof(he), 0);
	assert_int_equal(reply_then_eof(fd, true), -EPROTO);
	close(fd);

	/* random garbage of every length */
	for (int len = 1; len < 300; len += 7) {
		uint8_t junk[300];

		for (int i = 0; i < len; i++)
			junk[i] = (uint8_t)(i * 131 + len);
		fd = raw_connect();
		send(fd, junk, len, 0);
		st = reply_then_eof(fd, true);
		assert_true(st < 0);
		close(fd);
	}

	/* a well-formed but unauthorised-state request: DETACH of a slot
	 * we never had is an error reply, and the connection stays open */
	fd = raw_connect();
	hello(fd);
	bus_open_frame(&bo.h, &bo.b, 2);
	send(fd, &bo, sizeof(bo), 0);
	{
		uint8_t buf[SBC_FRAME_MAX];
		struct {
			struct sbc_hdr h;
			struct sbc_detach b;
		} de;

		assert_true(recv(fd, buf, sizeof(buf), 0) > 0);	/* + an fd */
		frame(&de.h, SBC_DETACH, sizeof(de.b), 3);
		de.b.slot = 7;
		de.b.slot_gen = 12345;
		send(fd, &de, sizeof(de), 0);
		assert_int_equal(reply_then_eof(fd, false), -ESRCH);
	}
	close(fd);

	still_serving();
}

/* ---- declare semantics and limits -------------------------------- */

static void test_declare_rules(void **state)
{
	struct shmbus *bus;
	SHMBUS_OPTS(shmbus_queue_opts, a, .max_len = 100, .msg_size = 200,
		    .max_consumers = 2);
	SHMBUS_OPTS(shmbus_queue_opts, b, .max_len = 100, .msg_size = 300,
		    .max_consumers = 2);
	SHMBUS_OPTS(shmbus_queue_opts, huge, .msg_size = 1u << 24);
	SHMBUS_OPTS(shmbus_queue_opts, zero_cons, .max_consumers = 200);
	struct shmbus_queue_info qi;
	struct shmbus_consumer *c1, *c2;
	struct shmbus_producer *p;
	char buf[400];

	(void)state;
	bus = shmbus__open("rules", NULL);
	assert_non_null(bus);
	assert_int_equal(shmbus__queue_declare(bus, "q1", &a), 1);
	assert_int_equal(shmbus__queue_declare(bus, "q1", &a), 0);
	assert_int_equal(shmbus__queue_declare(bus, "q1", &b), -EEXIST);
	assert_int_equal(shmbus__queue_declare(bus, "bad/name", &a), -EINVAL);
	assert_int_equal(shmbus__queue_declare(bus, "q2", &huge), -EMSGSIZE);
	assert_int_equal(shmbus__queue_declare(bus, "q3", &zero_cons), -EINVAL);
	assert_int_equal(shmbus__queue_info(bus, "q1", &qi), 0);
	assert_int_equal(qi.capacity, 128);	/* rounded up */
	assert_int_equal(qi.max_len, 100);
	assert_int_equal(qi.msg_size, 200);
	assert_int_equal(qi.max_consumers, 2);
	assert_int_equal(shmbus__queue_info(bus, "nope", &qi), -ENOENT);
	assert_null(shmbus_producer__new(bus, "nope", NULL));
	assert_int_equal(errno, ENOENT);

	/* max_consumers is enforced; a freed seat is reusable */
	c1 = shmbus_consumer__new(bus, "q1", NULL);
	c2 = shmbus_consumer__new(bus, "q1", NULL);
	assert_non_null(c1);
	assert_non_null(c2);
	assert_null(shmbus_consumer__new(bus, "q1", NULL));
	assert_int_equal(errno, EUSERS);
	shmbus_consumer__free(c2);
	c2 = shmbus_consumer__new(bus, "q1", NULL);
	assert_non_null(c2);

	/* msg_size is enforced; -EMSGSIZE on receive keeps the message */
	p = shmbus_producer__new(bus, "q1", NULL);
	assert_non_null(p);
	assert_int_equal(shmbus_producer__publish(p, buf, 201, NULL), -EMSGSIZE);
	memset(buf, 'x', 150);
	assert_int_equal(shmbus_producer__publish(p, buf, 150, NULL), 0);
	assert_int_equal(shmbus_consumer__receive(c1, buf, 10, 0), -EMSGSIZE);
	assert_int_equal(shmbus_consumer__pending_len(c1), 150);
	assert_int_equal(shmbus_consumer__receive(c1, buf, sizeof(buf), 0), 150);
	assert_int_equal(shmbus_consumer__pending_len(c1), -ENOENT);

	/* a full queue refuses, counted */
	for (int i = 0; i < 128; i++)
		assert_int_equal(shmbus_producer__publish(p, buf, 1, NULL), 0);
	assert_int_equal(shmbus_producer__publish(p, buf, 1, NULL), -ENOBUFS);
	{
		SHMBUS_OPTS(shmbus_pub_opts, wait, .timeout_ns = 20000000);
		int64_t t0 = t_now_ns();

		assert_int_equal(shmbus_producer__publish(p, buf, 1, &wait), -ENOBUFS);
		assert_true(t_now_ns() - t0 >= 20000000);
	}
	assert_int_equal(shmbus__queue_info(bus, "q1", &qi), 0);
	assert_int_equal(qi.stat[SHMBUS_STAT_FULL], 2);
	assert_int_equal(qi.depth, 128);
	assert_int_equal(qi.producers, 1);
	assert_int_equal(qi.consumers, 2);

	/* zero-copy: loan, cancel, foreign pointers refused */
	{
		void *l = shmbus_producer__loan(p, 64, 0);

		assert_non_null(l);
		assert_int_equal(shmbus_producer__commit(p, (char *)l + 8, 1, NULL),
				 -EINVAL);
		assert_int_equal(shmbus_producer__commit(p, buf, 1, NULL), -EINVAL);
		assert_int_equal(shmbus_producer__commit(p, l, 1, NULL), -ENOBUFS);
		shmbus_producer__cancel(p, l);
		assert_int_equal(shmbus_producer__commit(p, l, 1, NULL), -EINVAL);
		assert_null(shmbus_producer__loan(p, 201, 0));
		assert_int_equal(errno, EMSGSIZE);
	}
	shmbus_producer__free(p);
	shmbus_consumer__free(c1);
	shmbus_consumer__free(c2);

	/* options from a "newer" caller: unknown trailing bytes refused */
	{
		struct {
			struct shmbus_queue_opts o;
			uint64_t future;
		} ext;

		memset(&ext, 0, sizeof(ext));
		ext.o.sz = sizeof(ext);
		assert_int_equal(shmbus__queue_declare(bus, "q4", &ext.o), 1);
		ext.future = 1;
		assert_int_equal(shmbus__queue_declare(bus, "q5", &ext.o), -EINVAL);
	}
	/* read-only opens cannot produce or declare */
	{
		SHMBUS_OPTS(shmbus_open_opts, ro, .flags = SHMBUS_OPEN_RDONLY);
		struct shmbus *rb = shmbus__open("rules", &ro);

		assert_non_null(rb);
		assert_null(shmbus_producer__new(rb, "q1", NULL));
		assert_int_equal(errno, EPERM);
		assert_int_equal(shmbus__queue_declare(rb, "q9", NULL), -EPERM);
		/* the daemon's reason reaches this thread */
		assert_string_equal(shmbus_errmsg(),
				    "bus 'rules' was opened read-only");
		assert_true(shmbus__queue_list(rb, NULL, 0) >= 2);
		shmbus__close(rb);
	}
	/* NOCREATE / EXCL */
	{
		SHMBUS_OPTS(shmbus_open_opts, nc, .flags = SHMBUS_OPEN_NOCREATE);
		SHMBUS_OPTS(shmbus_open_opts, ex, .flags = SHMBUS_OPEN_EXCL);

		assert_null(shmbus__open("absent", &nc));
		assert_int_equal(errno, ENOENT);
		assert_null(shmbus__open("rules", &ex));
		assert_int_equal(errno, EEXIST);
	}
	shmbus__close(bus);
}

/* Publish timestamps are opt-in; ids are unique and increasing. */
static void test_timestamps_and_ids(void **state)
{
	SHMBUS_OPTS(shmbus_producer_opts, stamped,
		    .flags = SHMBUS_PRODUCER_TIMESTAMP);
	SHMBUS_OPTS(shmbus_producer_opts, bad, .flags = 0x80);
	struct shmbus *bus = shmbus__open("stamps", NULL);
	struct shmbus_producer *plain, *ts;
	struct shmbus_consumer *c;
	struct shmbus_msg m1, m2;
	int64_t before, after;

	(void)state;
	assert_non_null(bus);
	assert_true(shmbus__queue_declare(bus, "t", NULL) >= 0);
	assert_null(shmbus_producer__new(bus, "t", &bad));
	assert_int_equal(errno, EINVAL);
	plain = shmbus_producer__new(bus, "t", NULL);
	ts = shmbus_producer__new(bus, "t", &stamped);
	c = shmbus_consumer__new(bus, "t", NULL);
	assert_non_null(plain);
	assert_non_null(ts);
	assert_non_null(c);
	assert_int_equal(shmbus_producer__publish(plain, "a", 1, NULL), 0);
	before = t_now_ns();
	assert_int_equal(shmbus_producer__publish(ts, "b", 1, NULL), 0);
	after = t_now_ns();
	assert_int_equal(shmbus_consumer__try_receive(c, &m1), 0);
	assert_int_equal(shmbus_consumer__try_receive(c, &m2), 0);
	assert_int_equal(m1.ts_ns, 0);
	assert_true((int64_t)m2.ts_ns >= before && (int64_t)m2.ts_ns <= after);
	assert_true(m1.id != 0 && m2.id != 0 && m1.id != m2.id);
	shmbus_consumer__release(c, &m1);
	shmbus_consumer__release(c, &m2);
	/* a batch shares one timestamp */
	{
		struct iovec iov[3] = { { "x", 1 }, { "y", 1 }, { "z", 1 } };
		struct shmbus_msg mb[3];

		assert_int_equal(shmbus_producer__publish_batch(ts, iov, 3, NULL), 3);
		assert_int_equal(shmbus_consumer__receive_batch(c, mb, 3, 0), 3);
		assert_true(mb[0].ts_ns && mb[0].ts_ns == mb[2].ts_ns);
		assert_true(mb[0].id < mb[1].id && mb[1].id < mb[2].id);
		for (int i = 0; i < 3; i++)
			shmbus_consumer__release(c, &mb[i]);
	}
	shmbus_consumer__free(c);
	shmbus_producer__free(ts);
	shmbus_producer__free(plain);
	shmbus__close(bus);
}

/* ---- permissions (root only) -------------------------------------- */

static int as_nobody(const char *bus_name, int what)
{
	pid_t kid = fork();

	if (!kid) {
		/* root's bus: named by its owner */
		SHMBUS_OPTS(shmbus_open_opts, ro, .flags = SHMBUS_OPEN_RDONLY |
						     SHMBUS_OPEN_NOCREATE |
						     SHMBUS_OPEN_OWNER);
		SHMBUS_OPTS(shmbus_open_opts, rw, .flags = SHMBUS_OPEN_NOCREATE |
						     SHMBUS_OPEN_OWNER);
		struct shmbus *b;

		shmbus_set_print(NULL);
		if (setgroups(0, NULL) || setgid(65534) || setuid(65534))
			_exit(99);
		b = shmbus__open(bus_name, what == 0 ? &ro : &rw);
		if (!b)
			_exit(errno == EACCES ? 13 : 98);
		if (what == 1) {
			struct shmbus_producer *p = shmbus_producer__new(b, "pq", NULL);

			_exit(p ? 0 : errno == EACCES ? 13 : 97);
		}
		if (what == 2) {
			struct shmbus_consumer *c = shmbus_consumer__new(b, "pq", NULL);

			_exit(c ? 0 : errno == EACCES ? 13 : 97);
		}
		if (what == 3)
			_exit(shmbus__queue_declare(b, "theirs", NULL) == -EACCES ? 13 : 96);
		if (what == 4) {
			/* hostile: make ourselves owner in the superblock */
			struct shmbus_sb *sb = t_arena_mapping(bus_name);

			if (!sb)
				_exit(95);
			sb->owner_uid = 65534;
			sb->owner_gid = 65534;
			sb->mode = 0777;
			_exit(shmbus__queue_declare(b, "theirs", NULL) == -EACCES &&
			      shmbus__queue_delete(b, "pq") == -EACCES ? 13 : 94);
		}
		_exit(0);
	}
	return t_wait(kid, 10000);
}

static void test_permissions(void **state)
{
	SHMBUS_OPTS(shmbus_open_opts, priv, .mode = 0600);
	SHMBUS_OPTS(shmbus_open_opts, pub, .mode = 0644);
	SHMBUS_OPTS(shmbus_open_opts, open_rw, .mode = 0666);
	struct shmbus *b1, *b2, *b3;

	(void)state;
	if (geteuid() != 0)
		SKIP_OR_FAIL("needs root to run a client as another user");
	chmod(t_dir, 0755);	/* let "nobody" reach the socket */
	b1 = shmbus__open("private", &priv);
	b2 = shmbus__open("public", &pub);
	assert_non_null(b1);
	assert_non_null(b2);
	assert_true(shmbus__queue_declare(b1, "pq", NULL) >= 0);
	assert_true(shmbus__queue_declare(b2, "pq", NULL) >= 0);
	assert_int_equal(as_nobody("private", 0), 13);	/* no r */
	assert_int_equal(as_nobody("public", 0), 0);	/* r for others */
	assert_int_equal(as_nobody("public", 1), 13);	/* no w: no producer */
	assert_int_equal(as_nobody("public", 2), 0);	/* r: consumer */
	assert_int_equal(as_nobody("public", 3), 13);	/* not the owner */
	/* a writer cannot promote itself by rewriting the superblock: the
	 * daemon decides from its own record */
	b3 = shmbus__open("open", &open_rw);
	assert_non_null(b3);
	assert_true(shmbus__queue_declare(b3, "pq", NULL) >= 0);
	assert_int_equal(as_nobody("open", 4), 13);
	assert_int_equal(shmbus__queue_declare(b3, "mine", NULL), 1);
	chmod(t_dir, 0700);
	shmbus__close(b1);
	shmbus__close(b2);
	shmbus__close(b3);
}


/* ---- the configuration file --------------------------------------- */

/* Write @text to @path with @mode. */
static void put_file(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, mode), 0);
}

/*
 * Run shmbusd with @args (NULL-terminated) in the foreground as @uid (0:
 * ourselves), with XDG_CONFIG_HOME=@xdg if given; its exit status, its
 * stderr in @err. A daemon that starts (no error) is killed after 1 s
 * and gives 1000.
 */
static int run_daemon(uid_t uid, const char *xdg, const char *const *args,
		      char *err, size_t len)
{
	char path[PATH_MAX];
	const char *argv[16] = { "shmbusd" };
	int fd, rc;
	ssize_t n;
	pid_t pid;

	snprintf(path, sizeof(path), "%s/stderr", t_dir);
	for (int i = 0; args[i] && i < 14; i++)
		argv[i + 1] = args[i];
	pid = fork();
	assert_true(pid >= 0);
	if (!pid) {
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0666);
		if (fd < 0 || dup2(fd, 2) < 0)
			_exit(126);
		if (xdg)
			setenv("XDG_CONFIG_HOME", xdg, 1);
		if (uid && (setgroups(0, NULL) || setgid(uid) || setuid(uid)))
			_exit(126);
		execv(t_daemon_path(), (char **)argv);
		_exit(127);
	}
	rc = t_wait(pid, 1000);
	if (rc == -1)		/* still running after 1 s (now killed) */
		rc = 1000;
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	n = read(fd, err, len - 1);
	err[n > 0 ? n : 0] = '\0';
	close(fd);
	printf("  shmbusd %s ... -> %d: %s", args[0], rc,
	       *err ? err : "(nothing on stderr)\n");
	return rc;
}

static void test_config(void **state)
{
	char conf[PATH_MAX], sock[108], st[PATH_MAX], err[2048];
	char xdg[PATH_MAX], user_conf[PATH_MAX + 32], big[6000];
	char logpath[128];
	struct shmbus_pool_info pi;
	struct shmbus_info info;
	struct shmbus *bus;
	pid_t pid;

	(void)state;
	snprintf(conf, sizeof(conf), "%s/shmbusd.conf", t_dir);
	snprintf(sock, sizeof(sock), "%s/conf.sock", t_dir);
	snprintf(st, sizeof(st), "%s/conf-state", t_dir);

	/* the file's settings make the buses; a flag overrides a line */
	put_file(conf,
		 "# a comment\n"
		 "\n"
		 "  bus-queues = 8\n"
		 "bus-slots=16\n"
		 "bus-pools = 128:100, 1K:10\n"
		 "bus-ring-size = 64K\n"
		 "quota = buses=5\n"
		 "quota = conns=50\n"
		 "log-level = debug\n", 0644);
	{
		const char *extra[] = { "--config", conf, "--bus-queues", "9",
					NULL };
		SHMBUS_OPTS(shmbus_open_opts, o, .socket_path = sock);
		SHMBUS_OPTS(shmbus_open_opts, own, .socket_path = sock,
			    .max_queues = 3);

		pid = t_daemon_start_state(sock, st, extra);
		assert_true(pid > 0);
		bus = shmbus__open("conf", &o);
		assert_non_null(bus);
		assert_int_equal(shmbus__info(bus, &info), 0);
		printf("  a bus made by default: %u queues, %u slots, %u pools\n",
		       info.max_queues, info.max_slots, info.nr_pools);
		assert_int_equal(info.max_queues, 9);	/* the flag */
		assert_int_equal(info.max_slots, 16);	/* the file */
		assert_int_equal(info.nr_pools, 2);
		assert_int_equal(shmbus__pool_info(bus, 0, &pi), 0);
		assert_int_equal(pi.payload, 128);
		/* 100, rounded up to whole pages as a pool that may grow
		 * is (256-byte chunks: 16 a page) */
		assert_int_equal(pi.chunks, 112);
		assert_int_equal(shmbus__pool_info(bus, 1, &pi), 0);
		assert_int_equal(pi.payload, 1024);
		shmbus__close(bus);
		/* what a creator asks for still wins over the defaults */
		bus = shmbus__open("own", &own);
		assert_non_null(bus);
		assert_int_equal(shmbus__info(bus, &info), 0);
		assert_int_equal(info.max_queues, 3);
		assert_int_equal(info.max_slots, 16);
		shmbus__close(bus);
		assert_true(t_daemon_kill_pid(pid));
		/* log-level = debug took */
		snprintf(logpath, sizeof(logpath), "%s.log", sock);
		{
			FILE *f = fopen(logpath, "r");
			char line[512];
			bool debug = false;

			assert_non_null(f);
			while (fgets(line, sizeof(line), f))
				debug |= strstr(line, " debug: ") != NULL;
			fclose(f);
			assert_true(debug);
		}
	}

	/* each bad file is an error at start, with its line: exit 2 */
	{
		static const struct { const char *text, *says; } bad[] = {
			{ "bus-queues = 8\nbogus = 1\n",
			  ":2: unknown setting 'bogus'" },
			{ "memory-max = 8x\n", ":1: memory-max: '8x'" },
			{ "bus-pools = 4K:10,256:5\n", ":1: bus-pools:" },
			{ "log = relative.log\n", "want an absolute path" },
			{ "segment-size = 1K\n", "at least 64K" },
			{ "log-level = loud\n", "want error, warn, info" },
			{ "bus-max = 1M\nbus-pools = 64K:100\n",
			  "over bus-max" },
			{ "bus-slots = 8\nbus-slots = 9\n",
			  ":2: bus-slots: given twice (first at line 1)" },
			{ "daemonize = 1\n", "unknown setting 'daemonize'" },
			{ "just words\n", ":1: want 'name = value'" },
		};
		const char *args[] = { "--config", conf, "--socket", sock,
				       NULL };

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			put_file(conf, bad[i].text, 0644);
			assert_int_equal(run_daemon(0, NULL, args, err,
						    sizeof(err)), 2);
			assert_non_null(strstr(err, bad[i].says));
		}
		memset(big, 'x', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		memcpy(big, "log = /", 7);
		put_file(conf, big, 0644);
		assert_int_equal(run_daemon(0, NULL, args, err, sizeof(err)),
				 2);
		assert_non_null(strstr(err, ":1: line longer than 4096"));
		/* a file others may write is not taken */
		put_file(conf, "bus-queues = 8\n", 0664);
		assert_int_equal(run_daemon(0, NULL, args, err, sizeof(err)),
				 2);
		assert_non_null(strstr(err, "only its owner may write it"));
		/* a named file must exist */
		unlink(conf);
		assert_int_equal(run_daemon(0, NULL, args, err, sizeof(err)),
				 2);
		assert_non_null(strstr(err, "No such file"));
	}

	/* a user's daemon reads the user's own file by default; with
	 * --no-config it does not */
	if (geteuid() != 0) {
		SKIP_OR_FAIL("needs root to run a daemon as another user");
		return;
	}
	chmod(t_dir, 0755);
	snprintf(xdg, sizeof(xdg), "%s/xdg", t_dir);
	assert_int_equal(mkdir(xdg, 0755), 0);
	snprintf(user_conf, sizeof(user_conf), "%s/shmbus", xdg);
	assert_int_equal(mkdir(user_conf, 0755), 0);
	strcat(user_conf, "/shmbusd.conf");
	put_file(user_conf, "bogus-for-nobody = 1\n", 0644);
	assert_int_equal(chown(user_conf, 65534, 65534), 0);
	snprintf(sock, sizeof(sock), "%s/nobody", t_dir);
	assert_int_equal(mkdir(sock, 0700), 0);
	assert_int_equal(chown(sock, 65534, 65534), 0);
	snprintf(st, sizeof(st), "%s/state", sock);
	strcat(sock, "/d.sock");
	{
		const char *args[] = { "--socket", sock, NULL };
		const char *none[] = { "--socket", sock, "--state-dir", st,
				       "--no-config", NULL };

		assert_int_equal(run_daemon(65534, xdg, args, err,
					    sizeof(err)), 2);
		assert_non_null(strstr(err, "unknown setting "
					    "'bogus-for-nobody'"));
		/* a program of that user whose open starts the daemon is
		 * told why it did not start */
		{
			pid_t kid = fork();

			assert_true(kid >= 0);
			if (!kid) {
				SHMBUS_OPTS(shmbus_open_opts, o,
					    .socket_path = sock);
				struct shmbus *b;

				setenv("XDG_CONFIG_HOME", xdg, 1);
				if (setgroups(0, NULL) || setgid(65534) ||
				    setuid(65534))
					_exit(3);
				b = shmbus__open("cfg", &o);
				printf("  open as uid 65534: %s (%s)\n",
				       b ? "opened" : strerror(errno),
				       shmbus_errmsg());
				fflush(stdout);
				_exit(!b && errno == ECONNREFUSED &&
				      strstr(shmbus_errmsg(), "exited 2: ") &&
				      strstr(shmbus_errmsg(),
					     "unknown setting 'bogus-for-nobody'")
				      ? 0 : 1);
			}
			assert_int_equal(t_wait(kid, 20000), 0);
		}
		/* owned by another user (neither root nor nobody) */
		assert_int_equal(chown(user_conf, 1, 1), 0);
		assert_int_equal(run_daemon(65534, xdg, args, err,
					    sizeof(err)), 2);
		assert_non_null(strstr(err, "owned by uid 1,"));
		assert_int_equal(run_daemon(65534, xdg, none, err,
					    sizeof(err)), 1000);
	}
	chmod(t_dir, 0700);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_autostart_race),
		cmocka_unit_test(test_daemon_killed),
		cmocka_unit_test(test_expired_without_daemon),
		cmocka_unit_test(test_wake_without_daemon),
		cmocka_unit_test(test_malformed_frames),
		cmocka_unit_test(test_declare_rules),
		cmocka_unit_test(test_timestamps_and_ids),
		cmocka_unit_test(test_permissions),
		cmocka_unit_test(test_config),
	};

	return T_RUN_WITH_DAEMON("daemon", tests);
}
