// SPDX-License-Identifier: MIT
/*
 * test_bridge_flows.c - two hosts on one machine: two daemons on sockets
 * of their own (host A, host B), bridged through one private RabbitMQ
 * (tests/rmq.h), an out route on A and an in route on B:
 *  - queue: A's queue -> exchange -> a quorum queue the in route declares
 *    -> B's queue: each message exactly once, in order, its payload, its
 *    attributes and correlation id intact;
 *  - topics: A's topics through a persistent subscription, routing key
 *    {topic} (the topic each message was published to), into B's topics
 *    ({key}): two consumer groups on B each get every message, the
 *    consumers of a group compete, and each message is on its topic;
 *  - dead letters both ways: A's DLQ arrives on B with its dlq.*
 *    attributes; RabbitMQ's dead letters (rejected, expired) arrive on B
 *    with dlq.* from x-death; a message B can never take is rejected to
 *    the AMQP dead-letter exchange and counted;
 *  - TTL: what is left of a local TTL becomes the AMQP expiration, an
 *    AMQP expiration a local TTL: a message that expired on the way is
 *    not delivered on B, a live one is, with its deadline;
 *  - dedup: the same AMQP message-id twice is taken once by a B queue
 *    with a dedup window;
 *  - delivery counts: x-delivery-count out (deliveries before) and in
 *    (after a requeue in a quorum queue);
 *  - the in route's bridge killed -9 mid-stream, again and again, into a
 *    local queue and into a durable one (acked at the broker once
 *    journaled): lost 0;
 *  - a slow consumer of a small B queue: the AMQP queue keeps the
 *    backlog, the bridge's memory stays bounded, nothing is lost;
 *  - the two-way bridge of docs/bridge.md ("Two hosts"), its commands
 *    run as written there: A's outbox is B's inbox, and back.
 */
#include "shmbus.h"
#include "helpers.h"
#include "rmq.h"

#define BUS	"flows"
#define EX	"flows.ex"	/* direct */
#define TEX	"flows.topic"	/* topic */
#define DLX	"flows.dlx"	/* direct: dead letters of AMQP queues */
#define SEC	1000000000ll

static struct rmq broker;
static char why[PATH_MAX + 64];	/* why there is no broker */
static char bridge_bin[PATH_MAX], cli_bin[PATH_MAX], url[128];
static char sock_a[160], sock_b[160];
static pid_t daemon_a, daemon_b;
static pid_t kids[64];		/* bridges started, for a failed test */
static int nr_kids;

static void need_broker(void)
{
	if (why[0])
		SKIP_OR_FAIL("%.200s", why);
}

#if RMQ_HAVE_CLIENT
/* ---- hosts ------------------------------------------------------ */

static struct shmbus *host(const char *sock)
{
	SHMBUS_OPTS(shmbus_open_opts, o, .socket_path = sock,
		    .flags = SHMBUS_OPEN_NOSTART);
	struct shmbus *bus = shmbus__open(BUS, &o);

	if (!bus)
		fail_msg("open %s on %s: %s", BUS, sock, strerror(errno));
	return bus;
}

static void declare_q(struct shmbus *bus, const char *name,
		      const struct shmbus_queue_opts *qo)
{
	int err = shmbus__queue_declare(bus, name, qo);

	if (err < 0)
		fail_msg("declare %s: %s", name, strerror(-err));
}

static uint64_t stat_of(struct shmbus *bus, const char *q, int which)
{
	struct shmbus_queue_info qi;

	assert_int_equal(shmbus__queue_info(bus, q, &qi), 0);
	return qi.stat[which];
}

/* Message @i of a flow: 16..1000 bytes, its index first, then bytes made
 * from it; its FNV hash checks it whole. */
static size_t payload(int i, unsigned char *buf)
{
	size_t len = 16 + (size_t)(i * 37 % 985);
	uint32_t x = 2463534242u ^ (uint32_t)i;

	memcpy(buf, &i, sizeof(i));
	for (size_t k = sizeof(i); k < len; k++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		buf[k] = (unsigned char)x;
	}
	return len;
}

/* The index of a received payload, its bytes checked. */
static int check_payload(const void *data, size_t len)
{
	unsigned char want[1024];
	int i;

	assert_true(len >= sizeof(i) && len <= sizeof(want));
	memcpy(&i, data, sizeof(i));
	assert_true(i >= 0);
	assert_int_equal(payload(i, want), len);
	assert_int_equal(t_fnv(data, len), t_fnv(want, len));
	return i;
}

/* An attribute of @m as text ("" if absent). */
static const char *attr(const struct shmbus_msg *m, const char *key)
{
	static char buf[256];
	const void *v;
	size_t n;

	if (shmbus_msg__attr(m, key, &v, &n))
		return "";
	assert_true(n < sizeof(buf));
	memcpy(buf, v, n);
	buf[n] = '\0';
	return buf;
}

/* ---- bridges ---------------------------------------------------- */

/* shmbus-bridge on @sock's bus with @args (NULL-terminated), its stderr
 * in t_dir/@log. */
static pid_t bridge(const char *sock, const char *log,
		    const char *const *args)
{
	const char *argv[32] = { bridge_bin, "--bus", BUS, "--amqp", url };
	char err[PATH_MAX];
	int n = 5;
	pid_t test = getpid(), pid;

	for (int i = 0; args[i]; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	snprintf(err, sizeof(err), "%s/%s", t_dir, log);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid) {
		if (nr_kids < 64)
			kids[nr_kids++] = pid;
		return pid;
	}
	prctl(PR_SET_PDEATHSIG, SIGKILL);	/* no bridge outlives us */
	if (getppid() != test || !freopen(err, "a", stderr))
		_exit(127);
	setenv("SHMBUS_SOCKET", sock, 1);
	execv(bridge_bin, (char **)argv);
	_exit(127);
}

/* SIGTERM a bridge: it exits 0; its last counters line. */
static const char *stop_bridge(pid_t pid, const char *log)
{
	char err[PATH_MAX];

	snprintf(err, sizeof(err), "%s/%s", t_dir, log);
	return rmq_stop_bridge(pid, err, "bridge: forwarded");
}

/* User plus system CPU time of @pid, in ms. */
static long cpu_ms(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut = 0, st = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	assert_non_null(f);
	assert_non_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	p = strrchr(buf, ')');
	assert_non_null(p);
	assert_int_equal(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u "
				"%*u %*u %lu %lu", &ut, &st), 2);
	return (long)((ut + st) * 1000 / sysconf(_SC_CLK_TCK));
}

static long vm_rss_kb(pid_t pid)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* ---- the broker ------------------------------------------------- */

static amqp_connection_state_t amqp(void)
{
	amqp_connection_state_t c = rmq_connect(&broker);

	assert_non_null(c);
	return c;
}

/* Declare durable queue @q (quorum or classic, a DLX and its key, or
 * not) and bind it to @ex with @key (if @ex). */
static void aq_declare(const char *q, bool quorum, const char *dlx,
		       const char *dlx_key, const char *ex, const char *key)
{
	amqp_connection_state_t c = amqp();
	amqp_table_entry_t e[3];
	amqp_table_t t = { 0, e };

	if (quorum) {
		e[t.num_entries].key = amqp_cstring_bytes("x-queue-type");
		e[t.num_entries].value.kind = AMQP_FIELD_KIND_UTF8;
		e[t.num_entries++].value.value.bytes =
			amqp_cstring_bytes("quorum");
	}
	if (dlx) {
		e[t.num_entries].key = amqp_cstring_bytes("x-dead-letter-exchange");
		e[t.num_entries].value.kind = AMQP_FIELD_KIND_UTF8;
		e[t.num_entries++].value.value.bytes = amqp_cstring_bytes(dlx);
		e[t.num_entries].key =
			amqp_cstring_bytes("x-dead-letter-routing-key");
		e[t.num_entries].value.kind = AMQP_FIELD_KIND_UTF8;
		e[t.num_entries++].value.value.bytes =
			amqp_cstring_bytes(dlx_key);
	}
	amqp_queue_declare(c, RMQ_CH, amqp_cstring_bytes(q), 0, 1, 0, 0, t);
	rmq_rpc_ok(c, "queue.declare");
	if (ex) {
		amqp_queue_bind(c, RMQ_CH, amqp_cstring_bytes(q),
				amqp_cstring_bytes(ex), amqp_cstring_bytes(key),
				amqp_empty_table);
		rmq_rpc_ok(c, "queue.bind");
	}
	rmq_close(c);
}

/* Messages ready in @q (and its consumers in *@consumers), or -1 if it
 * does not exist (a passive declare that fails closes the channel: a
 * connection of its own). */
static long aq_count(const char *q, long *consumers)
{
	amqp_connection_state_t c = amqp();
	amqp_queue_declare_ok_t *ok;
	long n = -1;

	ok = amqp_queue_declare(c, RMQ_CH, amqp_cstring_bytes(q), 1, 0, 0, 0,
				amqp_empty_table);
	if (ok && amqp_get_rpc_reply(c).reply_type == AMQP_RESPONSE_NORMAL) {
		n = ok->message_count;
		if (consumers)
			*consumers = ok->consumer_count;
		rmq_close(c);
	} else {
		amqp_destroy_connection(c);
	}
	return n;
}

static long aq_ready(const char *q)
{
	return aq_count(q, NULL);
}

/* Wait until @q exists with @n ready (-1: any), up to 60 s: a quorum
 * queue takes 10000 publishes in seconds, but under a sanitizer on a
 * loaded 2-CPU machine it once needed more than 20. */
static void aq_wait(const char *q, long n)
{
	long r = -1;

	for (int i = 0; i < 1200; i++) {
		r = aq_ready(q);
		if (r >= 0 && (n < 0 || r == n))
			return;
		usleep(50000);
	}
	fail_msg("AMQP queue %s: %ld ready, not %ld", q, r, n);
}

/* Wait until an in route consumes @q: it declared and bound it before
 * (a message routed before the bind would be dropped). */
static void aq_wait_consumed(const char *q)
{
	long consumers = 0;

	for (int i = 0; i < 400; i++) {
		if (aq_count(q, &consumers) >= 0 && consumers > 0)
			return;
		usleep(50000);
	}
	fail_msg("AMQP queue %s: no consumer", q);
}

/* Publish to @ex/@key, persistent, with a message-id (or none), an
 * expiration in ms (or none, < 0). Not waited for: the bulk publishers
 * put @c in confirm mode and wait for all (rmq_wait_confirmed); the
 * others wait for the queue's count. */
static void aq_publish(amqp_connection_state_t c, const char *ex,
		       const char *key, const void *body, size_t len,
		       const char *msgid, long expiration_ms)
{
	amqp_basic_properties_t p = {
		._flags = AMQP_BASIC_DELIVERY_MODE_FLAG,
		.delivery_mode = 2,
	};
	char exp[24];

	if (msgid) {
		p._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
		p.message_id = amqp_cstring_bytes(msgid);
	}
	if (expiration_ms >= 0) {
		snprintf(exp, sizeof(exp), "%ld", expiration_ms);
		p._flags |= AMQP_BASIC_EXPIRATION_FLAG;
		p.expiration = amqp_cstring_bytes(exp);
	}
	assert_int_equal(amqp_basic_publish(c, RMQ_CH, amqp_cstring_bytes(ex),
					    amqp_cstring_bytes(key), 0, 0, &p,
					    (amqp_bytes_t){ len, (void *)body }),
			 0);
}

/* basic.get one message of @q into @msg (destroy it): its delivery tag,
 * or 0 if @q is empty. */
static uint64_t aq_get(amqp_connection_state_t c, const char *q,
		       amqp_message_t *msg)
{
	amqp_rpc_reply_t r = amqp_basic_get(c, RMQ_CH, amqp_cstring_bytes(q),
					    0);
	uint64_t tag;

	assert_int_equal(r.reply_type, AMQP_RESPONSE_NORMAL);
	if (r.reply.id != AMQP_BASIC_GET_OK_METHOD)
		return 0;
	tag = ((amqp_basic_get_ok_t *)r.reply.decoded)->delivery_tag;
	r = amqp_read_message(c, RMQ_CH, msg, 0);
	assert_int_equal(r.reply_type, AMQP_RESPONSE_NORMAL);
	return tag;
}

/* A header of @p as text in @buf ("" if absent); numbers printed. */
static const char *aq_header(const amqp_basic_properties_t *p,
			     const char *key, char *buf, size_t cap)
{
	buf[0] = '\0';
	if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG))
		return buf;
	for (int i = 0; i < p->headers.num_entries; i++) {
		const amqp_table_entry_t *e = &p->headers.entries[i];

		if (e->key.len != strlen(key) ||
		    memcmp(e->key.bytes, key, e->key.len))
			continue;
		switch (e->value.kind) {
		case AMQP_FIELD_KIND_UTF8:
		case AMQP_FIELD_KIND_BYTES:
			snprintf(buf, cap, "%.*s",
				 (int)e->value.value.bytes.len,
				 (char *)e->value.value.bytes.bytes);
			break;
		case AMQP_FIELD_KIND_I64:
			snprintf(buf, cap, "%lld",
				 (long long)e->value.value.i64);
			break;
		case AMQP_FIELD_KIND_I32:
			snprintf(buf, cap, "%d", e->value.value.i32);
			break;
		default:
			snprintf(buf, cap, "?kind %d", e->value.kind);
		}
	}
	return buf;
}

/* ---- the tests -------------------------------------------------- */

#define NQ	500

static void test_queue(void **state)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_len = 1024);
	struct shmbus *a, *b;
	struct shmbus_producer *p;
	struct shmbus_consumer *c;
	struct shmbus_msg m;
	unsigned char buf[1024];
	const char *in_args[] = { "--queue", "flows.q", "--declare", "quorum",
				  "--bind", EX ":q", "--to", "qb", NULL };
	const char *out_args[] = { "--from", "qa", "--exchange", EX,
				   "--routing-key", "q", NULL };
	pid_t in, out;

	need_broker();
	a = host(sock_a);
	b = host(sock_b);
	declare_q(a, "qa", &qo);
	declare_q(b, "qb", &qo);
	in = bridge(sock_b, "q-in.err", in_args);
	aq_wait_consumed("flows.q");
	p = shmbus_producer__new(a, "qa", NULL);
	assert_non_null(p);
	for (int i = 0; i < NQ; i++) {
		char seq[16];
		struct shmbus_attr at[2] = {
			{ .key = "seq", .value = seq },
			{ .key = "kind", .value = "flow", .value_len = 4 },
		};
		SHMBUS_OPTS(shmbus_pub_opts, po, .corr_id = 1000 + i,
			    .attrs = at, .nr_attrs = 2);

		at[0].value_len = (uint32_t)snprintf(seq, sizeof(seq), "%d", i);
		assert_int_equal(shmbus_producer__publish(p, buf,
							  payload(i, buf),
							  &po), 0);
	}
	shmbus_producer__free(p);
	out = bridge(sock_a, "q-out.err", out_args);
	c = shmbus_consumer__new(b, "qb", NULL);
	assert_non_null(c);
	for (int i = 0; i < NQ; i++) {
		char seq[16];

		assert_int_equal(shmbus_consumer__receive_view(c, &m, 20 * SEC),
				 0);
		/* exactly once, in order */
		assert_int_equal(check_payload(m.data, m.len), i);
		assert_int_equal(m.corr_id, 1000 + i);
		snprintf(seq, sizeof(seq), "%d", i);
		assert_string_equal(attr(&m, "seq"), seq);
		assert_string_equal(attr(&m, "kind"), "flow");
		assert_int_equal(m.delivery_count, 1);
		assert_int_equal(m.expires_ns, 0);
		assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	}
	assert_int_equal(shmbus_consumer__receive_view(c, &m, SEC / 2),
			 -ETIMEDOUT);
	shmbus_consumer__free(c);
	assert_string_equal(stop_bridge(out, "q-out.err"), "bridge: forwarded "
			    "500 confirmed 500 nacked 0 reconnects 0\n");
	assert_string_equal(stop_bridge(in, "q-in.err"), "bridge: forwarded "
			    "500 confirmed 500 nacked 0 reconnects 0\n");
	print_message("queue A -> quorum queue -> B: sent %d received %d "
		      "lost 0 duplicated 0, in order\n", NQ, NQ);
	shmbus__close(a);
	shmbus__close(b);
}

#define NT	200

static void test_topics(void **state)
{
	static const char *const topics[] = { "orders.created", "orders.paid" };
	struct shmbus *a, *b;
	struct shmbus_producer *p[2];
	struct shmbus_consumer *c[4];
	struct shmbus_queue_info qi;
	unsigned char buf[1024];
	int seen[2][NT] = { { 0 } }, got[4] = { 0 }, missing = 2 * NT;
	const char *in_args[] = { "--queue", "flows.t", "--declare", "classic",
				  "--bind", TEX ":orders.#", "--to-topic",
				  "{key}", NULL };
	const char *out_args[] = { "--from-topic", "orders.*", "--group",
				   "bridge", "--exchange", TEX,
				   "--routing-key", "{topic}", NULL };
	int64_t end;
	pid_t in, out;

	need_broker();
	a = host(sock_a);
	b = host(sock_b);
	for (int t = 0; t < 2; t++)
		assert_true(shmbus__topic_declare(a, topics[t], NULL) >= 0);
	/* B: two groups of two competing consumers, there before any
	 * message (a topic keeps nothing for a subscription to come) */
	for (int k = 0; k < 4; k++) {
		SHMBUS_OPTS(shmbus_sub_opts, so, .group = k < 2 ? "g1" : "g2",
			    .flags = SHMBUS_SUB_DURABLE);

		c[k] = shmbus_consumer__subscribe(b, "orders.*", &so);
		assert_non_null(c[k]);
	}
	in = bridge(sock_b, "t-in.err", in_args);
	aq_wait_consumed("flows.t");
	out = bridge(sock_a, "t-out.err", out_args);
	/* the out route's persistent subscription, before the publishes */
	for (int i = 0; i < 2000 &&
	     shmbus__queue_info(a, "orders.*#bridge", &qi); i++)
		usleep(5000);
	assert_int_equal(shmbus__queue_info(a, "orders.*#bridge", &qi), 0);
	for (int t = 0; t < 2; t++) {
		p[t] = shmbus_producer__new(a, topics[t], NULL);
		assert_non_null(p[t]);
	}
	for (int i = 0; i < NT; i++) {
		SHMBUS_OPTS(shmbus_pub_opts, po, .timeout_ns = 5 * SEC);

		assert_int_equal(shmbus_producer__publish(p[i % 2], buf,
							  payload(i, buf),
							  &po), 0);
	}
	end = t_now_ns() + 30 * SEC;
	while (missing && t_now_ns() < end) {
		bool any = false;

		/* one at a time from each: the two of a group compete */
		for (int k = 0; k < 4; k++) {
			struct shmbus_msg m;
			char name[64];
			int i;

			if (shmbus_consumer__try_receive(c[k], &m))
				continue;
			any = true;
			i = check_payload(m.data, m.len);
			assert_true(i < NT);
			/* on B, in the topic it was published to on A */
			assert_true(shmbus_msg__topic(c[k], &m, name,
						      sizeof(name)) > 0);
			assert_string_equal(name, topics[i % 2]);
			if (!seen[k / 2][i]++)
				missing--;
			got[k]++;
			assert_int_equal(shmbus_consumer__ack(c[k], &m), 0);
		}
		if (!any)
			usleep(2000);
	}
	stop_bridge(out, "t-out.err");
	stop_bridge(in, "t-in.err");
	print_message("topics A -> {topic} -> {key} -> B: sent %d; group g1 "
		      "%d + %d, group g2 %d + %d\n", NT, got[0], got[1],
		      got[2], got[3]);
	/* every message once in each group, spread over its consumers */
	for (int g = 0; g < 2; g++)
		for (int i = 0; i < NT; i++)
			assert_int_equal(seen[g][i], 1);
	for (int k = 0; k < 4; k++)
		assert_true(got[k] > 0);
	assert_int_equal(got[0] + got[1], NT);
	assert_int_equal(got[2] + got[3], NT);
	for (int k = 0; k < 4; k++)
		shmbus_consumer__free(c[k]);
	for (int t = 0; t < 2; t++)
		shmbus_producer__free(p[t]);
	shmbus__close(a);
	shmbus__close(b);
}

/* A dead letter of A's DLQ, and of RabbitMQ's DLX, on B. */
static void test_dlq(void **state)
{
	SHMBUS_OPTS(shmbus_queue_opts, dq);
	SHMBUS_OPTS(shmbus_queue_opts, wq, .max_deliveries = 1,
		    .dead_letter_queue = "wa.dlq");
	SHMBUS_OPTS(shmbus_queue_opts, small, .msg_size = 256);
	struct shmbus *a, *b;
	struct shmbus_producer *p;
	struct shmbus_consumer *c;
	struct shmbus_msg m;
	amqp_connection_state_t ac;
	amqp_message_t am;
	unsigned char buf[1024];
	char hb[64];
	const char *out_args[] = { "--from", "wa.dlq", "--exchange", EX,
				   "--routing-key", "dlq", NULL };
	const char *in_a[] = { "--queue", "flows.dlqa", "--to", "dla", NULL };
	const char *in_b[] = { "--queue", "flows.dead", "--to", "dlb", NULL };
	const char *in_c[] = { "--queue", "flows.big", "--declare", "classic",
			       "--dead-letter-exchange", DLX,
			       "--dead-letter-routing-key", "big", "--to",
			       "small", NULL };
	const char *counters;
	uint64_t tag;
	pid_t out, in;
	int i;

	need_broker();
	a = host(sock_a);
	b = host(sock_b);

	/* (a) A: message 0 rejected, message 1 over max_deliveries */
	declare_q(a, "wa.dlq", &dq);
	declare_q(a, "wa", &wq);
	declare_q(b, "dla", &dq);
	p = shmbus_producer__new(a, "wa", NULL);
	assert_non_null(p);
	for (i = 0; i < 2; i++)
		assert_int_equal(shmbus_producer__publish(p, buf,
							  payload(i, buf),
							  NULL), 0);
	shmbus_producer__free(p);
	c = shmbus_consumer__new(a, "wa", NULL);
	assert_non_null(c);
	assert_int_equal(shmbus_consumer__receive_view(c, &m, SEC), 0);
	assert_int_equal(shmbus_consumer__reject(c, &m), 0);
	assert_int_equal(shmbus_consumer__receive_view(c, &m, SEC), 0);
	assert_int_equal(shmbus_consumer__nack(c, &m, 0), 0);
	shmbus_consumer__free(c);
	aq_declare("flows.dlqa", false, NULL, NULL, EX, "dlq");
	out = bridge(sock_a, "dlq-out.err", out_args);
	in = bridge(sock_b, "dlq-in.err", in_a);
	c = shmbus_consumer__new(b, "dla", NULL);
	assert_non_null(c);
	for (int k = 0; k < 2; k++) {
		assert_int_equal(shmbus_consumer__receive_view(c, &m, 20 * SEC),
				 0);
		i = check_payload(m.data, m.len);
		assert_string_equal(attr(&m, "dlq.reason"),
				    i ? "max-deliveries" : "rejected");
		assert_string_equal(attr(&m, "dlq.source"), "wa");
		assert_string_equal(attr(&m, "dlq.deliveries"), "1");
		/* a message of B's own queue, not one of B's dead letters */
		assert_int_equal(m.dl_reason, 0);
		print_message("A's dead letter %d on B: dlq.reason %s\n", i,
			      attr(&m, "dlq.reason"));
		assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	}
	shmbus_consumer__free(c);
	stop_bridge(out, "dlq-out.err");
	stop_bridge(in, "dlq-in.err");

	/* (b) RabbitMQ: message 2 expires in flows.src, message 3 is
	 * rejected there; both dead-lettered to flows.dead */
	aq_declare("flows.src", false, DLX, "dead", NULL, NULL);
	aq_declare("flows.dead", false, NULL, NULL, DLX, "dead");
	declare_q(b, "dlb", &dq);
	ac = amqp();
	aq_publish(ac, "", "flows.src", buf, payload(2, buf), "m2", 50);
	usleep(300000);
	aq_publish(ac, "", "flows.src", buf, payload(3, buf), "m3", -1);
	tag = aq_get(ac, "flows.src", &am);
	assert_true(tag);
	assert_int_equal(check_payload(am.body.bytes, am.body.len), 3);
	amqp_destroy_message(&am);
	assert_int_equal(amqp_basic_reject(ac, RMQ_CH, tag, 0), 0);
	aq_wait("flows.dead", 2);
	in = bridge(sock_b, "dlq-in2.err", in_b);
	c = shmbus_consumer__new(b, "dlb", NULL);
	assert_non_null(c);
	for (int k = 0; k < 2; k++) {
		assert_int_equal(shmbus_consumer__receive_view(c, &m, 20 * SEC),
				 0);
		i = check_payload(m.data, m.len);
		assert_string_equal(attr(&m, "dlq.reason"),
				    i == 2 ? "expired" : "rejected");
		assert_string_equal(attr(&m, "dlq.source"), "flows.src");
		assert_string_equal(attr(&m, "dlq.deliveries"), "1");
		print_message("RabbitMQ's dead letter %d on B: dlq.reason "
			      "%s\n", i, attr(&m, "dlq.reason"));
		assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	}
	shmbus_consumer__free(c);
	stop_bridge(in, "dlq-in2.err");

	/* (c) message 7 (over 256 bytes) can never go into "small": the in
	 * route rejects it to the queue's DLX, counted; 4 and 6 pass */
	aq_declare("flows.bigdead", false, NULL, NULL, DLX, "big");
	declare_q(b, "small", &small);
	in = bridge(sock_b, "dlq-in3.err", in_c);
	aq_wait_consumed("flows.big");
	for (int k = 0; k < 3; k++) {
		size_t len;

		i = (int[]){ 4, 7, 6 }[k];
		len = payload(i, buf);
		assert_true(i == 7 ? len > 256 : len <= 256);
		aq_publish(ac, "", "flows.big", buf, len, NULL, -1);
	}
	c = shmbus_consumer__new(b, "small", NULL);
	assert_non_null(c);
	for (int k = 4; k < 7; k += 2) {
		assert_int_equal(shmbus_consumer__receive_view(c, &m, 20 * SEC),
				 0);
		assert_int_equal(check_payload(m.data, m.len), k);
		assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	}
	shmbus_consumer__free(c);
	aq_wait("flows.bigdead", 1);
	tag = aq_get(ac, "flows.bigdead", &am);
	assert_true(tag);
	assert_int_equal(check_payload(am.body.bytes, am.body.len), 7);
	assert_true(am.properties._flags & AMQP_BASIC_HEADERS_FLAG);
	assert_string_equal(aq_header(&am.properties, "x-first-death-reason",
				      hb, sizeof(hb)), "rejected");
	amqp_destroy_message(&am);
	amqp_basic_ack(ac, RMQ_CH, tag, 0);
	counters = stop_bridge(in, "dlq-in3.err");
	print_message("too large for B: rejected to the DLX (%s); %s",
		      hb, counters);
	assert_string_equal(counters, "bridge: forwarded 2 confirmed 2 "
			    "nacked 1 reconnects 0\n");
	rmq_close(ac);
	shmbus__close(a);
	shmbus__close(b);
}

/* TTL -> expiration -> TTL; an expiration -> TTL. */
static void test_ttl(void **state)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo);
	struct shmbus *a, *b;
	struct shmbus_producer *p;
	struct shmbus_consumer *c;
	struct shmbus_msg m;
	amqp_connection_state_t ac;
	unsigned char buf[1024];
	const char *out_args[] = { "--from", "ta", "--exchange", EX,
				   "--routing-key", "ttl", NULL };
	const char *in_args[] = { "--queue", "flows.ttl", "--to", "tb", NULL };
	int64_t left, t0;
	pid_t out, in;

	need_broker();
	a = host(sock_a);
	b = host(sock_b);
	declare_q(a, "ta", &qo);
	declare_q(b, "tb", &qo);
	aq_declare("flows.ttl", false, NULL, NULL, EX, "ttl");
	/* A: message 0 lives 1.5 s, message 1 a minute */
	out = bridge(sock_a, "ttl-out.err", out_args);
	p = shmbus_producer__new(a, "ta", NULL);
	assert_non_null(p);
	for (int i = 0; i < 2; i++) {
		SHMBUS_OPTS(shmbus_pub_opts, po,
			    .ttl_ns = i ? 60 * SEC : 3 * SEC / 2);

		assert_int_equal(shmbus_producer__publish(p, buf,
							  payload(i, buf),
							  &po), 0);
	}
	t0 = t_now_ns();
	shmbus_producer__free(p);
	aq_wait("flows.ttl", 2);
	stop_bridge(out, "ttl-out.err");
	/* message 0 expires in the AMQP queue */
	while (t_now_ns() < t0 + 2 * SEC)
		usleep(10000);
	in = bridge(sock_b, "ttl-in.err", in_args);
	c = shmbus_consumer__new(b, "tb", NULL);
	assert_non_null(c);
	assert_int_equal(shmbus_consumer__receive_view(c, &m, 20 * SEC), 0);
	assert_int_equal(check_payload(m.data, m.len), 1);
	left = (int64_t)m.expires_ns - t_now_ns();
	print_message("TTL: the expired one not delivered on B; the live one "
		      "is, %.1f s left of 60\n", left / 1e9);
	assert_true(left > 50 * SEC && left <= 60 * SEC);
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	assert_int_equal(shmbus_consumer__receive_view(c, &m, SEC), -ETIMEDOUT);
	/* an AMQP expiration of 300 ms: gone on B after 700 ms; one of
	 * 60 s is there */
	ac = amqp();
	aq_publish(ac, "", "flows.ttl", buf, payload(2, buf), NULL, 300);
	aq_publish(ac, "", "flows.ttl", buf, payload(3, buf), NULL, 60000);
	rmq_close(ac);
	aq_wait("flows.ttl", 0);
	usleep(700000);
	assert_int_equal(shmbus_consumer__receive_view(c, &m, 5 * SEC), 0);
	assert_int_equal(check_payload(m.data, m.len), 3);
	assert_true(m.expires_ns > (uint64_t)t_now_ns());
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	assert_int_equal(shmbus_consumer__receive_view(c, &m, SEC / 2),
			 -ETIMEDOUT);
	shmbus_consumer__free(c);
	stop_bridge(in, "ttl-in.err");
	shmbus__close(a);
	shmbus__close(b);
}

static void test_dedup(void **state)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .dedup_window_ns = 60 * SEC);
	const char *in_args[] = { "--queue", "flows.dedup", "--declare",
				  "classic", "--to", "db", NULL };
	struct shmbus *b;
	struct shmbus_consumer *c;
	struct shmbus_msg m;
	amqp_connection_state_t ac;
	unsigned char buf[1024];
	pid_t in;

	need_broker();
	b = host(sock_b);
	declare_q(b, "db", &qo);
	in = bridge(sock_b, "dedup-in.err", in_args);
	aq_wait_consumed("flows.dedup");
	ac = amqp();
	aq_publish(ac, "", "flows.dedup", buf, payload(0, buf), "id-0", -1);
	aq_publish(ac, "", "flows.dedup", buf, payload(0, buf), "id-0", -1);
	aq_publish(ac, "", "flows.dedup", buf, payload(1, buf), "id-1", -1);
	rmq_close(ac);
	c = shmbus_consumer__new(b, "db", NULL);
	assert_non_null(c);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(shmbus_consumer__receive_view(c, &m, 20 * SEC),
				 0);
		assert_int_equal(check_payload(m.data, m.len), i);
		assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	}
	assert_int_equal(shmbus_consumer__receive_view(c, &m, SEC),
			 -ETIMEDOUT);
	shmbus_consumer__free(c);
	stop_bridge(in, "dedup-in.err");
	print_message("dedup: 3 AMQP messages, 2 message-ids: B took 2, "
		      "dropped %llu\n", (unsigned long long)
		      stat_of(b, "db", SHMBUS_STAT_DUPLICATES));
	assert_int_equal(stat_of(b, "db", SHMBUS_STAT_DUPLICATES), 1);
	shmbus__close(b);
}

static void test_delivery_count(void **state)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo);
	const char *out_args[] = { "--from", "dca", "--exchange", EX,
				   "--routing-key", "dc", NULL };
	const char *in_args[] = { "--queue", "flows.dcq", "--to", "dcb", NULL };
	struct shmbus *a, *b;
	struct shmbus_producer *p;
	struct shmbus_consumer *c;
	struct shmbus_msg m;
	amqp_connection_state_t ac;
	amqp_message_t am;
	unsigned char buf[1024];
	char hb[64];
	uint64_t tag;
	pid_t out, in;

	need_broker();
	a = host(sock_a);
	b = host(sock_b);
	/* out: message 0 delivered once on A and given back, then
	 * forwarded (its second delivery), message 1 at its first */
	declare_q(a, "dca", &qo);
	aq_declare("flows.dc", false, NULL, NULL, EX, "dc");
	p = shmbus_producer__new(a, "dca", NULL);
	assert_non_null(p);
	for (int i = 0; i < 2; i++)
		assert_int_equal(shmbus_producer__publish(p, buf,
							  payload(i, buf),
							  NULL), 0);
	shmbus_producer__free(p);
	c = shmbus_consumer__new(a, "dca", NULL);
	assert_non_null(c);
	assert_int_equal(shmbus_consumer__receive_view(c, &m, SEC), 0);
	assert_int_equal(check_payload(m.data, m.len), 0);
	assert_int_equal(shmbus_consumer__nack(c, &m, 0), 0);
	shmbus_consumer__free(c);
	out = bridge(sock_a, "dc-out.err", out_args);
	aq_wait("flows.dc", 2);
	stop_bridge(out, "dc-out.err");
	ac = amqp();
	for (int k = 0; k < 2; k++) {
		int i;

		tag = aq_get(ac, "flows.dc", &am);
		assert_true(tag);
		i = check_payload(am.body.bytes, am.body.len);
		aq_header(&am.properties, "x-delivery-count", hb, sizeof(hb));
		print_message("out: message %d, x-delivery-count '%s'\n", i,
			      hb);
		assert_string_equal(hb, i == 0 ? "1" : "");
		amqp_destroy_message(&am);
		amqp_basic_ack(ac, RMQ_CH, tag, 0);
	}
	/* in: a quorum queue's message requeued once */
	declare_q(b, "dcb", &qo);
	aq_declare("flows.dcq", true, NULL, NULL, NULL, NULL);
	aq_publish(ac, "", "flows.dcq", buf, payload(2, buf), NULL, -1);
	aq_wait("flows.dcq", 1);
	tag = aq_get(ac, "flows.dcq", &am);
	assert_true(tag);
	amqp_destroy_message(&am);
	assert_int_equal(amqp_basic_nack(ac, RMQ_CH, tag, 0, 1), 0);
	rmq_close(ac);
	aq_wait("flows.dcq", 1);
	in = bridge(sock_b, "dc-in.err", in_args);
	c = shmbus_consumer__new(b, "dcb", NULL);
	assert_non_null(c);
	assert_int_equal(shmbus_consumer__receive_view(c, &m, 20 * SEC), 0);
	assert_int_equal(check_payload(m.data, m.len), 2);
	print_message("in: after a requeue in a quorum queue, "
		      "x-delivery-count '%s'\n", attr(&m, "x-delivery-count"));
	assert_string_equal(attr(&m, "x-delivery-count"), "1");
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	shmbus_consumer__free(c);
	stop_bridge(in, "dc-in.err");
	shmbus__close(a);
	shmbus__close(b);
}

#define NK	10000
#define KILLS	5

/* What B's consumer saw, shared with the child that consumes. */
struct kill_seen {
	char queue[16];
	long got;
	int stop;
	int bad;
	int seen[NK];
};

/* The child: take from ks->queue until told to stop and 1 s was quiet. */
static void kill_consumer(struct kill_seen *ks)
{
	SHMBUS_OPTS(shmbus_open_opts, o, .socket_path = sock_b,
		    .flags = SHMBUS_OPEN_NOSTART);
	struct shmbus *b = shmbus__open(BUS, &o);
	struct shmbus_consumer *c = b ? shmbus_consumer__new(b, ks->queue, NULL)
				      : NULL;

	CHILD_CHECK(c, "consumer of %s: %s", ks->queue, strerror(errno));
	for (;;) {
		unsigned char want[1024];
		struct shmbus_msg m;
		int i, err = shmbus_consumer__receive_view(c, &m, SEC);

		if (err == -ETIMEDOUT && READ_ONCE(ks->stop))
			break;
		if (err == -ETIMEDOUT)
			continue;
		CHILD_CHECK(!err, "receive: %s", strerror(-err));
		memcpy(&i, m.data, sizeof(i));
		if (i < 0 || i >= NK || m.len != payload(i, want) ||
		    memcmp(m.data, want, m.len))
			WRITE_ONCE(ks->bad, ks->bad + 1);
		else
			WRITE_ONCE(ks->seen[i], ks->seen[i] + 1);
		CHILD_CHECK(!shmbus_consumer__ack(c, &m), "ack");
		WRITE_ONCE(ks->got, ks->got + 1);
	}
	shmbus_consumer__free(c);
	shmbus__close(b);
	_exit(0);
}

/*
 * @nk messages from AMQP queue @aq (quorum) into local queue @lq (durable:
 * journaled, the broker's acks after the daemon's confirms), the in
 * route killed -9 KILLS times mid-stream, a consumer taking them all the
 * while: lost 0.
 */
static void kill9_in(const char *aq, const char *lq, bool durable, int nk)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_len = 1024,
		    .flags = durable ? SHMBUS_QUEUE_DURABLE : 0,
		    .sync = durable ? SHMBUS_SYNC_BATCH : 0);
	const char *in_args[] = { "--queue", aq, "--declare", "quorum",
				  "--to", lq, NULL };
	struct kill_seen *ks = t_shared(sizeof(*ks));
	struct shmbus *b;
	amqp_connection_state_t ac;
	unsigned char buf[1024];
	long lost = 0, dup = 0, at[KILLS];
	pid_t in, kid;

	need_broker();
	b = host(sock_b);
	declare_q(b, lq, &qo);
	aq_declare(aq, true, NULL, NULL, NULL, NULL);
	snprintf(ks->queue, sizeof(ks->queue), "%s", lq);
	ac = amqp();
	rmq_confirm_select(ac);
	for (int i = 0; i < nk; i++) {
		char id[16];

		snprintf(id, sizeof(id), "k%d", i);
		aq_publish(ac, "", aq, buf, payload(i, buf), id, -1);
	}
	rmq_wait_confirmed(ac, (uint64_t)nk);
	rmq_close(ac);
	aq_wait(aq, nk);
	fflush(NULL);
	kid = fork();
	assert_true(kid >= 0);
	if (!kid) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		kill_consumer(ks);
	}
	if (nr_kids < 64)
		kids[nr_kids++] = kid;
	srandom(getpid());
	for (int k = 0; k < KILLS; k++) {
		long before = k ? at[k - 1] : 0;

		in = bridge(sock_b, "kill-in.err", in_args);
		/* mid-stream: once it forwards, within 10 ms (at tens of
		 * thousands a second, five kills must not outlast nk) */
		for (int w = 0; w < 2000 && READ_ONCE(ks->got) <= before; w++)
			usleep(5000);
		usleep(random() % 10000);
		kill(in, SIGKILL);
		assert_int_equal(t_wait(in, 10000), 128 + SIGKILL);
		at[k] = READ_ONCE(ks->got);
	}
	print_message("at the kills B's consumer had taken:");
	for (int k = 0; k < KILLS; k++)
		print_message(" %ld", at[k]);
	print_message("\n");
	for (int k = 1; k < KILLS; k++)
		assert_true(at[k] > at[k - 1]);	/* each forwarded */
	assert_true(at[KILLS - 1] < nk);	/* mid-stream */
	in = bridge(sock_b, "kill-in.err", in_args);
	for (int w = 0; w < 6000; w++) {
		bool all = true;

		for (int i = 0; i < nk && all; i++)
			all = READ_ONCE(ks->seen[i]);
		if (all)
			break;
		usleep(10000);
	}
	WRITE_ONCE(ks->stop, 1);
	assert_int_equal(t_wait(kid, 30000), 0);
	stop_bridge(in, "kill-in.err");
	for (int i = 0; i < nk; i++) {
		lost += !ks->seen[i];
		dup += ks->seen[i] > 1 ? ks->seen[i] - 1 : 0;
	}
	print_message("in route kill -9 x%d, %s local queue: sent %d "
		      "received %ld lost %ld duplicated %ld\n", KILLS,
		      durable ? "a durable" : "a", nk, ks->got, lost, dup);
	assert_int_equal(ks->bad, 0);
	assert_int_equal(lost, 0);
	assert_int_equal(aq_ready(aq), 0);
	munmap(ks, sizeof(*ks));
	shmbus__close(b);
}

static void test_kill9_in(void **state)
{
	kill9_in("flows.kill", "kb", false, NK);
}

static void test_kill9_in_durable(void **state)
{
	kill9_in("flows.killd", "kbd", true, NK);
}

#define NS	2000

static void test_slow_consumer(void **state)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_len = 16);
	const char *in_args[] = { "--queue", "flows.slow", "--to", "slow",
				  NULL };
	struct shmbus *b;
	struct shmbus_consumer *c;
	amqp_connection_state_t ac;
	unsigned char buf[1024];
	long rss0, rss1, cpu0, cpu1, ready[4];
	int64_t t0, t1;
	int nr = 0;
	pid_t in;

	need_broker();
	b = host(sock_b);
	declare_q(b, "slow", &qo);
	aq_declare("flows.slow", false, NULL, NULL, NULL, NULL);
	ac = amqp();
	rmq_confirm_select(ac);
	for (int i = 0; i < NS; i++)
		aq_publish(ac, "", "flows.slow", buf, payload(i, buf), NULL, -1);
	rmq_wait_confirmed(ac, NS);
	rmq_close(ac);
	aq_wait("flows.slow", NS);
	in = bridge(sock_b, "slow-in.err", in_args);
	usleep(500000);
	rss0 = vm_rss_kb(in);
	cpu0 = cpu_ms(in);
	t0 = t_now_ns();
	c = shmbus_consumer__new(b, "slow", NULL);
	assert_non_null(c);
	for (int i = 0; i < NS; i++) {
		struct shmbus_msg m;

		assert_int_equal(shmbus_consumer__receive_view(c, &m, 20 * SEC),
				 0);
		assert_int_equal(check_payload(m.data, m.len), i);
		assert_int_equal(shmbus_consumer__ack(c, &m), 0);
		if (i % 500 == 250) {
			/* the broker holds what the bridge and B do not:
			 * the rest but the queue (16) and the window (64) */
			ready[nr] = aq_ready("flows.slow");
			assert_true(ready[nr] >= NS - i - 1 - 16 - 64 - 1);
			nr++;
		}
		usleep(2000);
	}
	rss1 = vm_rss_kb(in);
	cpu1 = cpu_ms(in);
	t1 = t_now_ns();
	shmbus_consumer__free(c);
	print_message("slow consumer: AMQP ready %ld %ld %ld %ld at 250, 750, "
		      "1250, 1750 taken; bridge VmRSS %ld kB -> %ld kB; sent "
		      "%d received %d lost 0\n", ready[0], ready[1], ready[2],
		      ready[3], rss0, rss1, NS, NS);
	print_message("slow consumer: the bridge used %ld ms of CPU in %.1f s "
		      "(waiting on a full queue)\n", cpu1 - cpu0,
		      (t1 - t0) / 1e9);
	assert_true(rss1 - rss0 < 4096);
	/* it waits, it does not spin: under a quarter of a CPU */
	assert_true((cpu1 - cpu0) * 4 * 1000000 < t1 - t0);
	stop_bridge(in, "slow-in.err");
	shmbus__close(b);
}

/* Run the shmbus command with @args (NULL-terminated) on @sock: its
 * exit status. */
static int cli(const char *sock, const char *const *args)
{
	const char *argv[32] = { cli_bin, "--socket", sock, "--bus", BUS };
	int n = 5;
	pid_t pid;

	for (int i = 0; args[i]; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (!pid) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execv(cli_bin, (char **)argv);
		_exit(127);
	}
	return t_wait(pid, 20000);
}

/* docs/bridge.md, "Two hosts": its commands, with this broker's URL. */
static void test_two_way(void **state)
{
	const char *decl_out[] = { "queue", "declare", "outbox", NULL };
	const char *decl_in[] = { "queue", "declare", "inbox", NULL };
	const char *bridge_a[] = { "bridge", "--amqp", url,
		"--from", "outbox", "--exchange", "amq.direct",
		"--routing-key", "to-b", "--queue", "to-a", "--declare",
		"quorum", "--bind", "amq.direct:to-a", "--to", "inbox", NULL };
	const char *bridge_b[] = { "bridge", "--amqp", url,
		"--from", "outbox", "--exchange", "amq.direct",
		"--routing-key", "to-a", "--queue", "to-b", "--declare",
		"quorum", "--bind", "amq.direct:to-b", "--to", "inbox", NULL };
	const char *pub_a[] = { "pub", "outbox", "hello", NULL };
	const char *pub_b[] = { "pub", "outbox", "world", NULL };
	const char *socks[2] = { sock_a, sock_b };
	const char *const *bargs[2] = { bridge_a, bridge_b };
	const char *logs[2] = { "two-a.err", "two-b.err" };
	pid_t pid[2];

	need_broker();
	for (int h = 0; h < 2; h++) {
		char **argv = calloc(32, sizeof(char *));
		char err[PATH_MAX];
		int n = 0;

		assert_int_equal(cli(socks[h], decl_out), 0);
		assert_int_equal(cli(socks[h], decl_in), 0);
		assert_non_null(argv);
		argv[n++] = cli_bin;
		argv[n++] = (char *)"--socket";
		argv[n++] = (char *)socks[h];
		argv[n++] = (char *)"--bus";
		argv[n++] = (char *)BUS;
		for (int i = 0; bargs[h][i]; i++)
			argv[n++] = (char *)bargs[h][i];
		snprintf(err, sizeof(err), "%s/%s", t_dir, logs[h]);
		fflush(NULL);
		pid[h] = fork();
		assert_true(pid[h] >= 0);
		if (pid[h] && nr_kids < 64)
			kids[nr_kids++] = pid[h];
		if (!pid[h]) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (!freopen(err, "a", stderr))
				_exit(127);
			execv(cli_bin, argv);
			_exit(127);
		}
		free(argv);
	}
	aq_wait_consumed("to-a");
	aq_wait_consumed("to-b");
	assert_int_equal(cli(sock_a, pub_a), 0);
	assert_int_equal(cli(sock_b, pub_b), 0);
	for (int h = 0; h < 2; h++) {
		struct shmbus *bus = host(socks[h]);
		struct shmbus_consumer *c = shmbus_consumer__new(bus, "inbox",
								 NULL);
		struct shmbus_msg m;
		const char *want = h ? "hello" : "world";

		assert_non_null(c);
		assert_int_equal(shmbus_consumer__receive_view(c, &m, 20 * SEC),
				 0);
		assert_int_equal(m.len, strlen(want));
		assert_memory_equal(m.data, want, m.len);
		assert_int_equal(shmbus_consumer__ack(c, &m), 0);
		shmbus_consumer__free(c);
		shmbus__close(bus);
	}
	for (int h = 0; h < 2; h++)
		print_message("two-way, host %c: %s", 'A' + h,
			      stop_bridge(pid[h], logs[h]));
}
#endif

int main(void)
{
	const struct CMUnitTest tests[] = {
#if RMQ_HAVE_CLIENT
		cmocka_unit_test(test_queue),
		cmocka_unit_test(test_topics),
		cmocka_unit_test(test_dlq),
		cmocka_unit_test(test_ttl),
		cmocka_unit_test(test_dedup),
		cmocka_unit_test(test_delivery_count),
		cmocka_unit_test(test_kill9_in),
		cmocka_unit_test(test_kill9_in_durable),
		cmocka_unit_test(test_slow_consumer),
		cmocka_unit_test(test_two_way),
#endif
	};
	char state[PATH_MAX];
	int rc;

	t_env_setup();
	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	if (rmq_start(&broker, why, sizeof(why)) < 0)
		rmq_stop(&broker, true);
	/* two hosts: a daemon each, its own socket and state directory
	 * (persistent subscriptions need one) */
	snprintf(sock_a, sizeof(sock_a), "%s/a.sock", t_dir);
	snprintf(sock_b, sizeof(sock_b), "%s/b.sock", t_dir);
	snprintf(state, sizeof(state), "%s/a.state", t_dir);
	daemon_a = mkdir(state, 0700) ? 0 :
		   t_daemon_start_state(sock_a, state, NULL);
	snprintf(state, sizeof(state), "%s/b.state", t_dir);
	daemon_b = mkdir(state, 0700) ? 0 :
		   t_daemon_start_state(sock_b, state, NULL);
	if (!daemon_a || !daemon_b)
		snprintf(why, sizeof(why), "the two daemons did not start");
#if RMQ_HAVE_CLIENT
	if (!why[0]) {
		amqp_connection_state_t c = rmq_connect(&broker);
		ssize_t n = readlink("/proc/self/exe", bridge_bin,
				     sizeof(bridge_bin) - 32);

		/* build/bin/shmbus-bridge, beside build/tests/ */
		if (n <= 0 || !c) {
			snprintf(why, sizeof(why), "no broker connection");
		} else {
			bridge_bin[n] = '\0';
			*strrchr(bridge_bin, '/') = '\0';
			*strrchr(bridge_bin, '/') = '\0';
			strcat(bridge_bin, "/bin/shmbus-bridge");
			snprintf(cli_bin, sizeof(cli_bin), "%.*s/shmbus",
				 (int)(strlen(bridge_bin) - 14), bridge_bin);
			snprintf(url, sizeof(url), "amqp://guest:guest@"
				 "127.0.0.1:%d", broker.amqp_port);
			amqp_exchange_declare(c, RMQ_CH, amqp_cstring_bytes(EX),
					      amqp_cstring_bytes("direct"), 0,
					      1, 0, 0, amqp_empty_table);
			amqp_exchange_declare(c, RMQ_CH,
					      amqp_cstring_bytes(TEX),
					      amqp_cstring_bytes("topic"), 0,
					      1, 0, 0, amqp_empty_table);
			amqp_exchange_declare(c, RMQ_CH,
					      amqp_cstring_bytes(DLX),
					      amqp_cstring_bytes("direct"), 0,
					      1, 0, 0, amqp_empty_table);
			if (amqp_get_rpc_reply(c).reply_type !=
			    AMQP_RESPONSE_NORMAL)
				snprintf(why, sizeof(why), "exchange.declare");
			rmq_close(c);
		}
	}
#else
	snprintf(why, sizeof(why), "no <amqp.h> (librabbitmq-dev)");
#endif
	rc = cmocka_run_group_tests_name("bridge_flows", tests, NULL, NULL);
	rmq_finish(&broker, rc, kids, nr_kids, t_dir);
	t_daemon_kill_pid(daemon_a);
	t_daemon_kill_pid(daemon_b);
	t_env_teardown();
	return rc;
}
