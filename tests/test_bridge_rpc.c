// SPDX-License-Identifier: MIT
/*
 * test_bridge_rpc.c - request-reply across two hosts: two daemons on
 * their own sockets (host A, host B), each with a bridge to one private
 * RabbitMQ (tests/rmq.h):
 *  - 200 requests from A answered by a service on B (it reverses the
 *    payload), each reply matched by its payload; a request it fails
 *    reaches A as an error reply with its status;
 *  - a plain librabbitmq RPC client calls the service on B (reply via
 *    AMQP reply_to), and a client on A calls a plain librabbitmq RPC
 *    server (which echoes the correlation-id);
 *  - a service slower than its requester's timeout: the late reply is
 *    dropped and counted by the requester, not taken by its next
 *    request; a service slower than B's reply-timeout: B drops the
 *    reply and counts it;
 *  - the correlation-id encoding (tools/bridge/corr.h) on its own, and
 *    forged or garbled correlation ids sent to A's reply queue: dropped
 *    and counted, the bridge lives on, no queue gets them.
 */
#include <ctype.h>

#include "shmbus.h"
#include "helpers.h"
#include "rmq.h"

#include "../tools/bridge/corr.h"

#define BUS	"rpc"
#define EX	"rpc.ex"
#define SVCQ	"svc.amqp"	/* the broker queue of the service on B */
#define PLAINQ	"plain.q"	/* the plain AMQP server's queue */
#define AREPLY	"a.replies"	/* A's reply queue on the broker */
#define MS	1000000LL
#define N1	200
#define N2	50

static struct rmq broker;
static char why[PATH_MAX + 64];
static char bridge[PATH_MAX], creds[PATH_MAX + 16], url[128];
static char b_sock[160];
static pid_t svc_pid, bridge_a, bridge_b;

static void need_broker(void)
{
	if (why[0])
		SKIP_OR_FAIL("%.200s", why);
}

/* Reverse @n bytes of @s into @d. */
static void reverse(char *d, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		d[i] = s[n - 1 - i];
}

/* The corr.h checks need no broker. */
static void test_corr_encoding(void **state)
{
	uint8_t key[BR_CORR_KEY], other[BR_CORR_KEY];
	char enc[BR_CORR_MAX], bad[BR_CORR_MAX + 8];
	uint32_t q, g;
	uint64_t c;
	size_t n;

	(void)state;
	for (unsigned i = 0; i < sizeof(key); i++) {
		key[i] = (uint8_t)(i * 7 + 1);
		other[i] = key[i];
	}
	other[5] ^= 1;
	br_corr_encode(enc, key, 7, 3, 42);
	assert_true(br_corr_decode(enc, strlen(enc), key, &q, &g, &c));
	assert_int_equal(q, 7);
	assert_int_equal(g, 3);
	assert_int_equal(c, 42);
	br_corr_encode(enc, key, UINT32_MAX, UINT32_MAX, UINT64_MAX);
	assert_true(br_corr_decode(enc, strlen(enc), key, &q, &g, &c));
	assert_int_equal(q, UINT32_MAX);
	assert_int_equal(g, UINT32_MAX);
	assert_true(c == UINT64_MAX);
	/* another bridge's key */
	assert_false(br_corr_decode(enc, strlen(enc), other, &q, &g, &c));
	/* every byte changed, every length cut, fails */
	n = strlen(enc);
	for (size_t i = 0; i < n; i++) {
		for (int d = 1; d < 256; d += 37) {
			memcpy(bad, enc, n + 1);
			bad[i] = (char)(bad[i] + d);
			assert_false(br_corr_decode(bad, n, key, &q, &g, &c));
		}
		assert_false(br_corr_decode(enc, i, key, &q, &g, &c));
	}
	/* a trailing byte, a NUL inside */
	snprintf(bad, sizeof(bad), "%sx", enc);
	assert_false(br_corr_decode(bad, n + 1, key, &q, &g, &c));
	memcpy(bad, enc, n + 1);
	bad[9] = '\0';
	assert_false(br_corr_decode(bad, n, key, &q, &g, &c));
	/* the forms a forger would try, MAC or not */
	{
		static const char *const forged[] = {
			"", "shmbus:", "shmbus:1.2.3", "shmbus:1.2.3.",
			"shmbus:0.1.1.0000000000000000",
			"shmbus:01.1.1.0000000000000000",
			"shmbus:-1.1.1.0000000000000000",
			"shmbus:+1.1.1.0000000000000000",
			"shmbus:4294967296.1.1.0000000000000000",
			"shmbus:1.1.18446744073709551616.0000000000000000",
			"shmbus:1.1.1.00000000000000000",
			"shmbus:1..1.0000000000000000",
			"SHMBUS:1.1.1.0000000000000000",
			"42",
		};

		for (unsigned i = 0; i < sizeof(forged) / sizeof(forged[0]); i++)
			assert_false(br_corr_decode(forged[i], strlen(forged[i]),
						    key, &q, &g, &c));
	}
	print_message("corr: %s decodes; %zu bytes each changed and every "
		      "cut refused\n", enc, n);
}

#if RMQ_HAVE_CLIENT
static struct shmbus *open_a(void)
{
	return t_open_bus(BUS);
}

static struct shmbus *open_b(void)
{
	SHMBUS_OPTS(shmbus_open_opts, oo, .socket_path = b_sock);
	struct shmbus *bus = shmbus__open(BUS, &oo);

	if (!bus) {
		fprintf(stderr, "open %s on %s: %s\n", BUS, b_sock,
			strerror(errno));
		_exit(2);
	}
	return bus;
}

/* The service on B: the payload reversed; "slow:MS" answers "slow"
 * after MS ms; "fail:N" fails with status N, explained "failed N". */
static ssize_t svc(void *ctx, const struct shmbus_msg *req, void *reply,
		   size_t cap)
{
	char in[64];
	int ms;

	(void)ctx;
	if (req->len >= sizeof(in) || req->len > cap)
		return -EINVAL;
	memcpy(in, req->data, req->len);
	in[req->len] = '\0';
	if (sscanf(in, "fail:%d", &ms) == 1) {
		snprintf(reply, cap, "failed %d", ms);
		return -ms;
	}
	if (sscanf(in, "slow:%d", &ms) == 1) {
		usleep((useconds_t)ms * 1000);
		memcpy(reply, "slow", 4);
		return 4;
	}
	reverse(reply, in, req->len);
	return req->len;
}

static pid_t start_service(void)
{
	pid_t kid = fork();

	assert_true(kid >= 0);
	if (!kid) {
		struct shmbus *b = open_b();
		struct shmbus_consumer *c = shmbus_consumer__new(b, "svc", NULL);

		CHILD_CHECK(c, "service");
		for (;;)
			shmbus_consumer__serve(c, svc, NULL, 0, -1);
	}
	return kid;
}

/* A bridge for the daemon on @sock with configuration @conf; stderr
 * into the test's directory as @name.err. */
static pid_t spawn_bridge(const char *name, const char *sock,
			  const char *conf)
{
	char path[PATH_MAX], err[PATH_MAX];
	pid_t pid;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s.conf", t_dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "amqp = %s\ncredentials = %s\nbus = %s\n%s", url, creds,
		BUS, conf);
	assert_int_equal(fclose(f), 0);
	snprintf(err, sizeof(err), "%s/%s.err", t_dir, name);
	pid = fork();
	assert_true(pid >= 0);
	if (pid)
		return pid;
	setenv("SHMBUS_SOCKET", sock, 1);
	if (!freopen(err, "a", stderr))
		_exit(127);
	execl(bridge, bridge, "--config", path, (char *)NULL);
	_exit(127);
}

/* SIGTERM a bridge: exit 0, and its "bridge: rpc" counters line. */
static const char *stop_bridge(pid_t pid, const char *name)
{
	char err[PATH_MAX];

	snprintf(err, sizeof(err), "%s/%s.err", t_dir, name);
	return rmq_stop_bridge(pid, err, "bridge: rpc ");
}

struct rpc_counters {
	unsigned long req_out, rep_in, undeliverable, garbled, req_in,
		      rep_out, late, expired;
};

static void parse_counters(const char *line, struct rpc_counters *k)
{
	assert_int_equal(sscanf(line, "bridge: rpc requests-out %lu "
				"replies-in %lu undeliverable %lu garbled %lu "
				"requests-in %lu replies-out %lu late %lu "
				"expired %lu", &k->req_out, &k->rep_in,
				&k->undeliverable, &k->garbled, &k->req_in,
				&k->rep_out, &k->late, &k->expired), 8);
}

/* The broker side of the tests: an exchange, the service's queue bound
 * to it, the plain server's queue, A's reply queue. */
static void declare_broker(void)
{
	amqp_connection_state_t c = rmq_connect(&broker);
	static const char *const q[][2] = {
		{ SVCQ, "svc" }, { PLAINQ, "plain" }, { AREPLY, NULL },
	};

	assert_non_null(c);
	amqp_exchange_declare(c, RMQ_CH, amqp_cstring_bytes(EX),
			      amqp_cstring_bytes("direct"), 0, 1, 0, 0,
			      amqp_empty_table);
	rmq_rpc_ok(c, "exchange.declare");
	for (unsigned i = 0; i < 3; i++) {
		amqp_queue_declare(c, RMQ_CH, amqp_cstring_bytes(q[i][0]), 0,
				   1, 0, 0, amqp_empty_table);
		rmq_rpc_ok(c, "queue.declare");
		if (!q[i][1])
			continue;
		amqp_queue_bind(c, RMQ_CH, amqp_cstring_bytes(q[i][0]),
				amqp_cstring_bytes(EX),
				amqp_cstring_bytes(q[i][1]), amqp_empty_table);
		rmq_rpc_ok(c, "queue.bind");
	}
	rmq_close(c);
}

/* Until the bridge consumes local queue @name on @bus (its out route is
 * up, so a request finds a responder). */
static void wait_consumer(struct shmbus *bus, const char *name)
{
	struct shmbus_queue_info qi;

	for (int i = 0; i < 2000; i++) {
		if (!shmbus__queue_info(bus, name, &qi) && qi.consumers)
			return;
		usleep(5000);
	}
	fail_msg("nobody consumes %s", name);
}

/* The dropped count of A's requester reply queue (the one "_reply."
 * queue of this process's bus handle). */
static uint64_t reply_queue_dropped(struct shmbus *bus)
{
	struct shmbus_queue_info qi[64];
	int n = shmbus__queue_list(bus, qi, 64);
	uint64_t d = 0;

	for (int i = 0; i < n; i++)
		if (!strncmp(qi[i].name, "_reply.", 7))
			d += qi[i].stat[SHMBUS_STAT_DROPPED];
	return d;
}

/* 200 requests from A, answered on B. */
static void test_a_to_b(void **state)
{
	struct shmbus *a;
	long answered = 0, lost = 0, wrong = 0;
	int64_t t0;

	(void)state;
	need_broker();
	a = open_a();
	wait_consumer(a, "svc");
	t0 = t_now_ns();
	for (int i = 0; i < N1; i++) {
		char req[32], want[32], rep[64];
		int n = snprintf(req, sizeof(req), "req-%d-abcdef", i);
		ssize_t got = shmbus__request(a, "svc", req, (size_t)n, rep,
					      sizeof(rep), 10000 * MS);

		if (got < 0) {
			lost++;
			continue;
		}
		reverse(want, req, (size_t)n);
		if (got == n && !memcmp(rep, want, (size_t)n))
			answered++;
		else
			wrong++;
	}
	print_message("A -> B: sent %d answered %ld lost %ld wrong %ld late "
		      "%llu, %.2f ms per round trip\n", N1, answered, lost,
		      wrong, (unsigned long long)reply_queue_dropped(a),
		      (double)(t_now_ns() - t0) / N1 / 1e6);
	assert_int_equal(answered, N1);
	/* an error reply crosses both bridges: its status as an AMQP
	 * header, back into the reply's attribute on A */
	{
		SHMBUS_OPTS(shmbus_request_opts, ro, .timeout_ns = 10000 * MS);
		char rep[64];
		ssize_t got = shmbus__request_opts(a, "svc", "fail:13", 7, rep,
						   sizeof(rep), &ro);

		print_message("A -> B, a failing request: %zd, status %d, "
			      "'%.*s'\n", got, ro.status, (int)ro.reply_len,
			      rep);
		assert_int_equal(got, -EREMOTEIO);
		assert_int_equal(ro.status, 13);
		assert_int_equal(ro.reply_len, 9);
		assert_memory_equal(rep, "failed 13", 9);
	}
	shmbus__close(a);
}

/* A plain AMQP RPC client calls the service on B. */
static void test_plain_client_to_b(void **state)
{
	amqp_connection_state_t c;
	amqp_queue_declare_ok_t *ok;
	amqp_bytes_t rq;
	int seen[N2] = { 0 };
	long answered = 0, wrong = 0;

	(void)state;
	need_broker();
	c = rmq_connect(&broker);
	assert_non_null(c);
	/* a server-named, exclusive reply queue, as RPC clients do */
	ok = amqp_queue_declare(c, RMQ_CH, amqp_empty_bytes, 0, 0, 1, 1,
				amqp_empty_table);
	rmq_rpc_ok(c, "queue.declare");
	rq = amqp_bytes_malloc_dup(ok->queue);
	amqp_basic_consume(c, RMQ_CH, rq, amqp_empty_bytes, 0, 1, 1,
			   amqp_empty_table);
	rmq_rpc_ok(c, "basic.consume");
	for (int i = 0; i < N2; i++) {
		char body[32], corr[32];
		amqp_basic_properties_t p = {
			._flags = AMQP_BASIC_REPLY_TO_FLAG |
				  AMQP_BASIC_CORRELATION_ID_FLAG,
			.reply_to = rq,
		};

		snprintf(body, sizeof(body), "plain-%d", i);
		snprintf(corr, sizeof(corr), "client-%d", i);
		p.correlation_id = amqp_cstring_bytes(corr);
		assert_int_equal(amqp_basic_publish(c, RMQ_CH,
						    amqp_cstring_bytes(EX),
						    amqp_cstring_bytes("svc"),
						    0, 0, &p,
						    amqp_cstring_bytes(body)), 0);
	}
	while (answered + wrong < N2) {
		struct timeval tv = { 10, 0 };
		amqp_envelope_t e;
		amqp_rpc_reply_t r;
		char body[32], want[32], corr[48];
		int i;

		amqp_maybe_release_buffers(c);
		r = amqp_consume_message(c, &e, &tv, 0);
		if (r.reply_type != AMQP_RESPONSE_NORMAL)
			break;
		snprintf(corr, sizeof(corr), "%.*s",
			 (int)e.message.properties.correlation_id.len,
			 (char *)e.message.properties.correlation_id.bytes);
		if (sscanf(corr, "client-%d", &i) == 1 && i >= 0 && i < N2 &&
		    !seen[i]++) {
			snprintf(body, sizeof(body), "plain-%d", i);
			reverse(want, body, strlen(body));
			if (e.message.body.len == strlen(body) &&
			    !memcmp(e.message.body.bytes, want, strlen(body)))
				answered++;
			else
				wrong++;
		} else {
			wrong++;
		}
		amqp_destroy_envelope(&e);
	}
	print_message("plain AMQP client -> B: sent %d answered %ld lost %ld "
		      "wrong %ld\n", N2, answered, N2 - answered - wrong, wrong);
	assert_int_equal(answered, N2);
	amqp_bytes_free(rq);
	rmq_close(c);
}

/* A plain AMQP RPC server: @n requests from PLAINQ answered with the
 * body upper-cased, to reply_to, the correlation-id echoed. */
static pid_t start_plain_server(int n)
{
	pid_t kid = fork();

	assert_true(kid >= 0);
	if (kid)
		return kid;
	{
		amqp_connection_state_t c = rmq_connect(&broker);

		CHILD_CHECK(c, "connect");
		amqp_basic_consume(c, RMQ_CH, amqp_cstring_bytes(PLAINQ),
				   amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
		for (int done = 0; done < n;) {
			struct timeval tv = { 20, 0 };
			amqp_basic_properties_t *q, p = { 0 };
			amqp_envelope_t e;
			amqp_rpc_reply_t r;
			char up[64];
			size_t len;

			amqp_maybe_release_buffers(c);
			r = amqp_consume_message(c, &e, &tv, 0);
			CHILD_CHECK(r.reply_type == AMQP_RESPONSE_NORMAL,
				    "plain server: consume");
			q = &e.message.properties;
			len = e.message.body.len < sizeof(up) ?
			      e.message.body.len : sizeof(up);
			for (size_t i = 0; i < len; i++)
				up[i] = (char)toupper(
					((char *)e.message.body.bytes)[i]);
			CHILD_CHECK(q->_flags & AMQP_BASIC_REPLY_TO_FLAG,
				    "plain server: no reply_to");
			if (q->_flags & AMQP_BASIC_CORRELATION_ID_FLAG) {
				p._flags = AMQP_BASIC_CORRELATION_ID_FLAG;
				p.correlation_id = q->correlation_id;
			}
			CHILD_CHECK(!amqp_basic_publish(c, RMQ_CH,
					amqp_empty_bytes, q->reply_to, 0, 0,
					&p, (amqp_bytes_t){ len, up }),
				    "plain server: publish");
			amqp_basic_ack(c, RMQ_CH, e.delivery_tag, 0);
			amqp_destroy_envelope(&e);
			done++;
		}
		rmq_close(c);
		_exit(0);
	}
}

/* A client on A calls the plain AMQP server. */
static void test_a_to_plain_server(void **state)
{
	struct shmbus *a;
	long answered = 0, lost = 0, wrong = 0;
	pid_t srv;

	(void)state;
	need_broker();
	srv = start_plain_server(N2);
	a = open_a();
	wait_consumer(a, "plainsvc");
	for (int i = 0; i < N2; i++) {
		char req[32], want[32], rep[64];
		int n = snprintf(req, sizeof(req), "hello-%d", i);
		ssize_t got = shmbus__request(a, "plainsvc", req, (size_t)n,
					      rep, sizeof(rep), 10000 * MS);

		snprintf(want, sizeof(want), "HELLO-%d", i);
		if (got < 0)
			lost++;
		else if (got == n && !memcmp(rep, want, (size_t)n))
			answered++;
		else
			wrong++;
	}
	print_message("A -> plain AMQP server: sent %d answered %ld lost %ld "
		      "wrong %ld\n", N2, answered, lost, wrong);
	assert_int_equal(answered, N2);
	assert_int_equal(t_wait(srv, 10000), 0);
	shmbus__close(a);
}

/*
 * A service slower than its requester's timeout: the late reply reaches
 * A and is dropped by the requester (counted in its reply queue), and
 * the next request gets its own reply. Then one slower than B's
 * reply-timeout (2 s): B drops the reply (late, counted at the stop).
 */
static void test_late_replies(void **state)
{
	struct shmbus *a;
	uint64_t dropped0, dropped = 0;
	char rep[64];
	ssize_t got;

	(void)state;
	need_broker();
	a = open_a();
	wait_consumer(a, "svc");
	dropped0 = reply_queue_dropped(a);
	assert_int_equal(shmbus__request(a, "svc", "slow:1500", 9, rep,
					 sizeof(rep), 500 * MS), -ETIMEDOUT);
	got = shmbus__request(a, "svc", "next", 4, rep, sizeof(rep),
			      10000 * MS);
	assert_int_equal(got, 4);
	assert_memory_equal(rep, "txen", 4);	/* not "slow" */
	dropped = reply_queue_dropped(a) - dropped0;
	print_message("late at A: sent 2 answered 1 late %llu\n",
		      (unsigned long long)dropped);
	assert_int_equal(dropped, 1);
	/* past B's reply-timeout: B drops it, A's requester times out */
	assert_int_equal(shmbus__request(a, "svc", "slow:2500", 9, rep,
					 sizeof(rep), 4000 * MS), -ETIMEDOUT);
	got = shmbus__request(a, "svc", "again", 5, rep, sizeof(rep),
			      10000 * MS);
	assert_int_equal(got, 5);
	assert_memory_equal(rep, "niaga", 5);
	assert_int_equal(reply_queue_dropped(a) - dropped0, 1);
	shmbus__close(a);
}

/*
 * Forged and garbled correlation ids published straight to A's reply
 * queue: each dropped and counted, none lands in a queue of A (one
 * aimed at the ids of a real queue with guessed generations), and the
 * bridge still answers after them.
 */
static unsigned long forged_sent;

static void test_forged_replies(void **state)
{
	static const char *const ids[] = {
		NULL, "", "shmbus:", "shmbus:1.1.1", "garbage",
		"shmbus:1.1.1.0000000000000000",
		"shmbus:99999999999999999999.1.1.0000000000000000",
		"shmbus:-5.1.1.0000000000000000",
		"shmbus:1.1.1.0000000000000000extra",
	};
	SHMBUS_OPTS(shmbus_queue_opts, qo);
	struct shmbus_queue_info qi;
	amqp_connection_state_t c;
	struct shmbus *a;
	char rep[64], id[300];
	ssize_t got;

	(void)state;
	need_broker();
	a = open_a();
	assert_true(shmbus__queue_declare(a, "victim", &qo) >= 0);
	assert_int_equal(shmbus__queue_info(a, "victim", &qi), 0);
	c = rmq_connect(&broker);
	assert_non_null(c);
	for (unsigned i = 0; i < sizeof(ids) / sizeof(ids[0]) + 40; i++) {
		amqp_basic_properties_t p = { 0 };

		if (i < sizeof(ids) / sizeof(ids[0])) {
			if (ids[i]) {
				p._flags = AMQP_BASIC_CORRELATION_ID_FLAG;
				p.correlation_id = amqp_cstring_bytes(ids[i]);
			}
		} else if (i < sizeof(ids) / sizeof(ids[0]) + 32) {
			/* the victim's id, generations 0..31, a MAC made up */
			snprintf(id, sizeof(id), "shmbus:%u.%u.1.%016x",
				 qi.id + 1, i % 32, i * 2654435761u);
			p._flags = AMQP_BASIC_CORRELATION_ID_FLAG;
			p.correlation_id = amqp_cstring_bytes(id);
		} else {
			/* long, and bytes that are not text */
			memset(id, 'A' + (int)i % 26, sizeof(id) - 1);
			id[sizeof(id) - 1] = '\0';
			memcpy(id, "shmbus:", 7);
			id[20] = (char)0xff;
			p._flags = AMQP_BASIC_CORRELATION_ID_FLAG;
			p.correlation_id = (amqp_bytes_t){ i % 2 ? 255 : 30, id };
			if (i % 3 == 0)
				id[12] = '\0';
		}
		assert_int_equal(amqp_basic_publish(c, RMQ_CH, amqp_empty_bytes,
						    amqp_cstring_bytes(AREPLY),
						    0, 0, &p,
						    amqp_cstring_bytes("forged")),
				 0);
		forged_sent++;
	}
	rmq_close(c);
	/* the bridge lives, and answers */
	usleep(500000);
	assert_int_equal(kill(bridge_a, 0), 0);
	wait_consumer(a, "svc");
	got = shmbus__request(a, "svc", "after", 5, rep, sizeof(rep),
			      10000 * MS);
	assert_int_equal(got, 5);
	assert_memory_equal(rep, "retfa", 5);
	assert_int_equal(shmbus__queue_info(a, "victim", &qi), 0);
	assert_int_equal(qi.stat[SHMBUS_STAT_PUBLISHED], 0);
	print_message("forged: sent %lu, the victim queue got %llu\n",
		      forged_sent,
		      (unsigned long long)qi.stat[SHMBUS_STAT_PUBLISHED]);
	shmbus__close(a);
}

/* The bridges' counters at their stop. */
static void test_counters(void **state)
{
	struct rpc_counters ka, kb;

	(void)state;
	need_broker();
	parse_counters(stop_bridge(bridge_a, "a"), &ka);
	parse_counters(stop_bridge(bridge_b, "b"), &kb);
	bridge_a = bridge_b = 0;
	print_message("A: requests-out %lu replies-in %lu undeliverable %lu "
		      "garbled %lu\n", ka.req_out, ka.rep_in, ka.undeliverable,
		      ka.garbled);
	print_message("B: requests-in %lu replies-out %lu late %lu expired "
		      "%lu\n", kb.req_in, kb.rep_out, kb.late, kb.expired);
	/* every forged reply was garbled, none delivered */
	assert_int_equal(ka.garbled, forged_sent);
	assert_true(ka.rep_in >= N1 + N2 + 4);
	assert_true(ka.req_out >= N1 + N2 + 5);
	/* the one slower than B's reply-timeout */
	assert_true(kb.late >= 1);
	assert_true(kb.expired >= 1);
	assert_true(kb.rep_out >= N1 + N2 + 3);
}
#endif

static int setup_hosts(void)
{
#if RMQ_HAVE_CLIENT
	ssize_t n = readlink("/proc/self/exe", bridge, sizeof(bridge) - 32);
	struct shmbus *a, *b;
	FILE *f;

	if (n <= 0)
		return -1;
	bridge[n] = '\0';
	*strrchr(bridge, '/') = '\0';
	*strrchr(bridge, '/') = '\0';
	strcat(bridge, "/bin/shmbus-bridge");
	snprintf(url, sizeof(url), "amqp://127.0.0.1:%d", broker.amqp_port);
	snprintf(creds, sizeof(creds), "%s/creds", t_dir);
	f = fopen(creds, "w");
	/* only ours to read: the bridge refuses it otherwise */
	if (!f || fchmod(fileno(f), 0600) ||
	    fputs("guest:guest\n", f) < 0 || fclose(f))
		return -1;
	snprintf(b_sock, sizeof(b_sock), "%s/b.sock", t_dir);
	declare_broker();
	/* host A: the requests' local queues, forwarded by A's out routes;
	 * host B: the service's queue, fed by B's in route */
	a = open_a();
	b = open_b();
	if (shmbus__queue_declare(a, "svc", NULL) < 0 ||
	    shmbus__queue_declare(a, "plainsvc", NULL) < 0 ||
	    shmbus__queue_declare(b, "svc", NULL) < 0)
		return -1;
	shmbus__close(a);
	shmbus__close(b);
	svc_pid = start_service();
	bridge_a = spawn_bridge("a", t_sock,
		"reply-queue = " AREPLY "\n"
		"[out svc]\nfrom = svc\nexchange = " EX "\nrouting-key = svc\n"
		"[out plain]\nfrom = plainsvc\nexchange = " EX "\n"
		"routing-key = plain\n");
	bridge_b = spawn_bridge("b", b_sock,
		"reply-queue = b.replies\nreply-timeout = 2\n"
		"[in svc]\nqueue = " SVCQ "\ndeclare = classic\n"
		"bind = " EX ":svc\nto = svc\n");
	return 0;
#else
	return -1;
#endif
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_corr_encoding),
#if RMQ_HAVE_CLIENT
		cmocka_unit_test(test_a_to_b),
		cmocka_unit_test(test_plain_client_to_b),
		cmocka_unit_test(test_a_to_plain_server),
		cmocka_unit_test(test_late_replies),
		cmocka_unit_test(test_forged_replies),
		cmocka_unit_test(test_counters),
#endif
	};
	int rc;

	t_env_setup();
	if (rmq_start(&broker, why, sizeof(why)) < 0)
		rmq_stop(&broker, true);
#if !RMQ_HAVE_CLIENT
	snprintf(why, sizeof(why), "no <amqp.h> (librabbitmq-dev)");
#endif
	if (!why[0] && setup_hosts())
		snprintf(why, sizeof(why), "cannot set up the two hosts");
	rc = cmocka_run_group_tests_name("bridge_rpc", tests, NULL, NULL);
	if (bridge_a > 0) {
		kill(bridge_a, SIGKILL);
		t_wait(bridge_a, 5000);
	}
	if (bridge_b > 0) {
		kill(bridge_b, SIGKILL);
		t_wait(bridge_b, 5000);
	}
	if (svc_pid > 0) {
		kill(svc_pid, SIGKILL);
		t_wait(svc_pid, 5000);
	}
	rmq_stop(&broker, rc != 0);
	if (rc) {
		char cmd[PATH_MAX];

		snprintf(cmd, sizeof(cmd), "cat %s/a.err %s/b.err >&2", t_dir,
			 t_dir);
		if (system(cmd)) {}
	}
	t_env_teardown();
	return rc;
}
