// SPDX-License-Identifier: MIT
/*
 * test_bridge_hostile.c - the bridge fed what a hostile broker client (or
 * a hostile configuration line) sends, against a real RabbitMQ
 * (tests/rmq.h):
 *  - long message ids and correlation ids (up to AMQP's 255 bytes), and
 *    ids with NUL bytes: two messages that differ only after byte 63, or
 *    after a NUL, are two messages (the local dedup window keeps both),
 *    and a long correlation id arrives whole;
 *  - routing keys that would make a local name of to-topic = t.{key}
 *    that is not a topic the route may publish to: the name of a local
 *    queue, a name over 63 bytes, a key with a NUL: each is dead-lettered
 *    at the broker, nothing reaches the queue nor a truncated name;
 *  - bodies larger than every local pool, while the local queue is full:
 *    rejected at once, not held in memory (the bridge's peak RSS stays
 *    far below the window's worth of them);
 *  - headers of every AMQP field kind, 10,000 of them, a 100 KB value,
 *    x-death and x-delivery-count of odd shapes, odd reply_to values:
 *    delivered, no crash (run it under AddressSanitizer too);
 *  - a configuration line longer than the parser's buffer is an error,
 *    not two lines (the tail of a comment would be a setting).
 * Each prints: sent N received N lost N duplicated N.
 */
#include "shmbus.h"
#include "helpers.h"
#include "rmq.h"

#include <sys/prctl.h>

#define BUS	"hostile"
#define DLX	"hostile.dlx"	/* direct: the in routes' dead letters */
#define FAN	"hostile.fan"	/* fanout: any routing key reaches the queue */
#define SEC	1000000000ll

static struct rmq broker;
static char why[PATH_MAX + 64];	/* why there is no broker */
static char bridge_bin[PATH_MAX], url[128];
static pid_t kids[16];
static int nr_kids;

static void need_broker(void)
{
	if (why[0])
		SKIP_OR_FAIL("%.200s", why);
}

/* The bridge with @args, its stderr in the test's directory as @log. */
static pid_t bridge(const char *log, const char *const *args)
{
	const char *argv[40] = { bridge_bin, "--bus", BUS, "--amqp", url };
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
		if (nr_kids < 16)
			kids[nr_kids++] = pid;
		return pid;
	}
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != test || !freopen(err, "a", stderr))
		_exit(127);
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

/* Lines of @log that contain @what. */
static int log_lines(const char *log, const char *what)
{
	char path[PATH_MAX], line[1024];
	int n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", t_dir, log);
	f = fopen(path, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, what) != NULL;
	fclose(f);
	return n;
}

#if RMQ_HAVE_CLIENT
static amqp_connection_state_t amqp(void)
{
	amqp_connection_state_t c = rmq_connect(&broker);

	assert_non_null(c);
	return c;
}

/* Messages ready in @q and its consumers, or -1 if it does not exist. */
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

/* Wait up to @ms until @q has @n ready: what it has. */
static long aq_wait(const char *q, long n, int ms)
{
	long r = -1;

	for (int i = 0; i < ms / 50; i++) {
		r = aq_count(q, NULL);
		if (r == n)
			break;
		usleep(50000);
	}
	return r;
}

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

/* A durable queue @q bound to DLX with key @key (the dead letters). */
static void dead_queue(const char *q, const char *key)
{
	amqp_connection_state_t c = amqp();

	amqp_queue_declare(c, RMQ_CH, amqp_cstring_bytes(q), 0, 1, 0, 0,
			   amqp_empty_table);
	rmq_rpc_ok(c, "queue.declare");
	amqp_queue_bind(c, RMQ_CH, amqp_cstring_bytes(q),
			amqp_cstring_bytes(DLX), amqp_cstring_bytes(key),
			amqp_empty_table);
	rmq_rpc_ok(c, "queue.bind");
	rmq_close(c);
}

/* Publish @body with properties @p to @ex / @key (bytes: NULs allowed). */
static void publish(amqp_connection_state_t c, const char *ex,
		    amqp_bytes_t key, amqp_basic_properties_t *p,
		    const void *body, size_t len)
{
	p->_flags |= AMQP_BASIC_DELIVERY_MODE_FLAG;
	p->delivery_mode = 2;
	assert_int_equal(amqp_basic_publish(c, RMQ_CH, amqp_cstring_bytes(ex),
					    key, 0, 0, p,
					    (amqp_bytes_t){ len, (void *)body }),
			 0);
}

/* An attribute of @m ("" if absent), its length in *@n. */
static const char *attr(const struct shmbus_msg *m, const char *key,
			size_t *n)
{
	static char buf[512];
	const void *v;
	size_t len;

	if (shmbus_msg__attr(m, key, &v, &len) || len >= sizeof(buf))
		len = 0;
	else
		memcpy(buf, v, len);
	buf[len] = '\0';
	*n = len;
	return buf;
}

/* ---- ids ------------------------------------------------------------ */

static void test_long_ids(void **state)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_len = 64,
		    .dedup_window_ns = 60 * SEC);
	const char *args[] = { "--queue", "hostile.ids", "--declare",
			       "classic", "--to", "ids", NULL };
	char id[4][256], corr[201], body[8];
	size_t idlen[4];
	struct shmbus *bus = t_open_bus(BUS);
	struct shmbus_consumer *c;
	amqp_connection_state_t a;
	int seen[4] = { 0 }, got = 0, dup = 0, lost = 0;
	bool corr_ok = false;
	struct shmbus_msg m;
	pid_t pid;

	need_broker();
	assert_true(shmbus__queue_declare(bus, "ids", &qo) >= 0);
	/* two ids alike in their first 200 bytes, two alike up to a NUL */
	memset(id[0], 'a', 254);
	memcpy(id[1], id[0], 254);
	id[0][254] = '1';
	id[1][254] = '2';
	idlen[0] = idlen[1] = 255;
	memcpy(id[2], "x\0y", 3);
	memcpy(id[3], "x\0z", 3);
	idlen[2] = idlen[3] = 3;
	memset(corr, 'c', 200);
	corr[200] = '\0';
	pid = bridge("ids.err", args);
	aq_wait_consumed("hostile.ids");
	a = amqp();
	for (int i = 0; i < 4; i++) {
		amqp_basic_properties_t p = {
			._flags = AMQP_BASIC_MESSAGE_ID_FLAG |
				  AMQP_BASIC_CORRELATION_ID_FLAG,
			.message_id = { idlen[i], id[i] },
			.correlation_id = amqp_cstring_bytes(corr),
		};

		snprintf(body, sizeof(body), "%d", i);
		publish(a, "", amqp_cstring_bytes("hostile.ids"), &p, body,
			strlen(body));
	}
	rmq_close(a);
	c = shmbus_consumer__new(bus, "ids", NULL);
	assert_non_null(c);
	for (int64_t end = t_now_ns() + 10 * SEC; t_now_ns() < end;) {
		size_t n;

		if (shmbus_consumer__receive_view(c, &m, 200000000) < 0)
			continue;
		assert_true(m.len == 1 && *(char *)m.data >= '0' &&
			    *(char *)m.data <= '3');
		seen[*(char *)m.data - '0']++;
		got++;
		corr_ok = !strcmp(attr(&m, "amqp.correlation-id", &n), corr);
		shmbus_consumer__ack(c, &m);
		if (got == 4)
			break;
	}
	shmbus_consumer__free(c);
	stop_bridge(pid, "ids.err");
	for (int i = 0; i < 4; i++) {
		lost += !seen[i];
		dup += seen[i] > 1 ? seen[i] - 1 : 0;
	}
	print_message("long ids: sent 4 received %d lost %d duplicated %d\n",
		      got, lost, dup);
	assert_int_equal(lost, 0);
	assert_true(corr_ok);
	shmbus__close(bus);
}

/* ---- routing keys into local names -------------------------------- */

static void test_key_names(void **state)
{
	const char *args[] = { "--queue", "hostile.keys", "--declare",
			       "classic", "--dead-letter-exchange", DLX,
			       "--dead-letter-routing-key", "keys",
			       "--bind", FAN, "--to-topic", "t.{key}", NULL };
	char longkey[101], trunc[64];
	amqp_bytes_t keys[4];
	struct shmbus *bus = t_open_bus(BUS);
	struct shmbus_queue_info qi;
	amqp_connection_state_t a;
	long dead;
	pid_t pid;

	need_broker();
	/* a plain local queue a key may name: "t.secret" */
	assert_true(shmbus__queue_declare(bus, "t.secret", NULL) >= 0);
	dead_queue("hostile.keys.dead", "keys");
	memset(longkey, 'k', 100);
	longkey[100] = '\0';
	keys[0] = amqp_cstring_bytes("secret");
	keys[1] = amqp_cstring_bytes(longkey);
	keys[2] = (amqp_bytes_t){ 7, "ok\0evil" };
	keys[3] = amqp_cstring_bytes("good");
	pid = bridge("keys.err", args);
	aq_wait_consumed("hostile.keys");
	a = amqp();
	for (int i = 0; i < 4; i++) {
		amqp_basic_properties_t p = { 0 };

		publish(a, FAN, keys[i], &p, "k", 1);
	}
	rmq_close(a);
	dead = aq_wait("hostile.keys.dead", 3, 10000);
	/* "good" went in: t.good was declared as a topic */
	for (int i = 0; i < 100 &&
	     shmbus__queue_info(bus, "t.good", &qi); i++)
		usleep(50000);
	print_message("routing keys: sent 4 delivered %d dead-lettered %ld; "
		      "%s", !shmbus__queue_info(bus, "t.good", &qi), dead,
		      stop_bridge(pid, "keys.err"));
	assert_int_equal(shmbus__queue_info(bus, "t.secret", &qi), 0);
	assert_int_equal(qi.depth, 0);
	snprintf(trunc, sizeof(trunc), "t.%.61s", longkey);
	assert_int_equal(shmbus__queue_info(bus, trunc, &qi), -ENOENT);
	assert_int_equal(shmbus__queue_info(bus, "t.ok", &qi), -ENOENT);
	assert_int_equal(shmbus__queue_info(bus, "t.good", &qi), 0);
	assert_int_equal(qi.kind, SHMBUS_TOPIC);
	assert_int_equal(dead, 3);
	/* said, not once a message */
	assert_true(log_lines("keys.err", "cannot be published") <= 1);
	shmbus__close(bus);
}

/* ---- bodies larger than any pool ------------------------------------ */

static long vm_hwm_kb(pid_t pid)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

#define NBIG	200
#define BIG	(1 << 20)

static void test_big_bodies(void **state)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_len = 4);
	const char *args[] = { "--queue", "hostile.big", "--declare",
			       "classic", "--dead-letter-exchange", DLX,
			       "--dead-letter-routing-key", "big", "--to",
			       "big", "--prefetch", "256", NULL };
	struct shmbus *bus = t_open_bus(BUS);
	struct shmbus_producer *pr;
	struct shmbus_consumer *c;
	amqp_connection_state_t a;
	char *body = malloc(BIG);
	struct shmbus_msg m;
	long dead, hwm;
	int got = 0, nfill = 0;
	pid_t pid;

	need_broker();
	assert_non_null(body);
	memset(body, 'b', BIG);
	assert_true(shmbus__queue_declare(bus, "big", &qo) >= 0);
	dead_queue("hostile.big.dead", "big");
	/* the local queue is full: what comes waits in the bridge */
	pr = shmbus_producer__new(bus, "big", NULL);
	assert_non_null(pr);
	while (shmbus_producer__publish(pr, "0", 1, NULL) == 0)
		nfill++;
	assert_true(nfill > 0);
	pid = bridge("big.err", args);
	aq_wait_consumed("hostile.big");
	a = amqp();
	{
		amqp_basic_properties_t p = { 0 };

		publish(a, "", amqp_cstring_bytes("hostile.big"), &p, "1", 1);
	}
	for (int i = 0; i < NBIG; i++) {
		amqp_basic_properties_t p = { 0 };

		publish(a, "", amqp_cstring_bytes("hostile.big"), &p, body,
			BIG);
	}
	rmq_close(a);
	dead = aq_wait("hostile.big.dead", NBIG, 20000);
	hwm = vm_hwm_kb(pid);
	/* the queue drains: the small one behind them goes in */
	c = shmbus_consumer__new(bus, "big", NULL);
	assert_non_null(c);
	for (int64_t end = t_now_ns() + 10 * SEC; got < nfill + 1 &&
	     t_now_ns() < end;)
		if (shmbus_consumer__receive_view(c, &m, 200000000) == 0) {
			got++;
			shmbus_consumer__ack(c, &m);
		}
	shmbus_consumer__free(c);
	shmbus_producer__free(pr);
	print_message("bodies over every pool: sent %d received %d "
		      "dead-lettered %ld lost %ld duplicated 0; peak RSS %ld "
		      "KiB; %s", NBIG + 1, got - nfill, dead,
		      (NBIG - dead) + (got < nfill + 1), hwm,
		      stop_bridge(pid, "big.err"));
	assert_int_equal(got, nfill + 1);
	assert_int_equal(dead, NBIG);
	/* a window of them would be 200 MiB: the bridge holds a few at a
	 * time (9-15 MiB of peak RSS, ASan included). ThreadSanitizer's
	 * shadow and allocator add several times what the bridge touches,
	 * and how much varies from run to run (50 and 94 MiB seen), while
	 * a window under it would take more than 600 MiB. */
#ifdef __SANITIZE_THREAD__
	assert_true(hwm < 256 * 1024);
#else
	assert_true(hwm < 64 * 1024);
#endif
	free(body);
	shmbus__close(bus);
}

/* ---- headers and properties of every shape -------------------------- */

#define NHDR	10000

static void test_odd_headers(void **state)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_len = 64);
	const char *args[] = { "--queue", "hostile.hdr", "--declare",
			       "classic", "--to", "hdr", NULL };
	static amqp_table_entry_t many[NHDR];
	static char keys[NHDR][8];
	amqp_table_entry_t inner[2], odd[16], xd[2];
	amqp_field_value_t arr[3];
	struct shmbus *bus = t_open_bus(BUS);
	struct shmbus_consumer *c;
	amqp_connection_state_t a;
	char *huge = malloc(100000), rto[256], body[8];
	int sent = 0, got = 0, seen[8] = { 0 }, lost = 0, dup = 0;
	struct shmbus_msg m;
	pid_t pid;
	int k = 0;

	need_broker();
	assert_non_null(huge);
	memset(huge, 'h', 100000);
	assert_true(shmbus__queue_declare(bus, "hdr", &qo) >= 0);
	/* every kind of field, nested */
	inner[0] = (amqp_table_entry_t){ amqp_cstring_bytes("in"),
		{ .kind = AMQP_FIELD_KIND_UTF8,
		  .value.bytes = amqp_cstring_bytes("v") } };
	inner[1] = (amqp_table_entry_t){ amqp_cstring_bytes("n"),
		{ .kind = AMQP_FIELD_KIND_VOID } };
	arr[0] = (amqp_field_value_t){ .kind = AMQP_FIELD_KIND_TABLE,
				       .value.table = { 2, inner } };
	arr[1] = (amqp_field_value_t){ .kind = AMQP_FIELD_KIND_F64,
				       .value.f64 = 1.5 };
	arr[2] = (amqp_field_value_t){ .kind = AMQP_FIELD_KIND_UTF8,
				       .value.bytes = amqp_cstring_bytes("s") };
#define ODD(key_, ...) odd[k++] = (amqp_table_entry_t){			\
		amqp_cstring_bytes(key_), { __VA_ARGS__ } }
	ODD("tbl", .kind = AMQP_FIELD_KIND_TABLE, .value.table = { 2, inner });
	ODD("arr", .kind = AMQP_FIELD_KIND_ARRAY, .value.array = { 3, arr });
	ODD("f32", .kind = AMQP_FIELD_KIND_F32, .value.f32 = 0.5f);
	ODD("f64", .kind = AMQP_FIELD_KIND_F64, .value.f64 = -1e300);
	ODD("dec", .kind = AMQP_FIELD_KIND_DECIMAL,
	    .value.decimal = { 2, 12345 });
	ODD("void", .kind = AMQP_FIELD_KIND_VOID);
	ODD("i64", .kind = AMQP_FIELD_KIND_I64, .value.i64 = INT64_MIN);
	ODD("ts", .kind = AMQP_FIELD_KIND_TIMESTAMP, .value.u64 = UINT64_MAX);
	ODD("bool", .kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1);
	ODD("bytes", .kind = AMQP_FIELD_KIND_BYTES,
	    .value.bytes = { 5, "a\0b\0c" });
	ODD("", .kind = AMQP_FIELD_KIND_UTF8,
	    .value.bytes = amqp_cstring_bytes("empty key"));
	/* x-death of odd shapes: a table where an array goes, then an
	 * array of a string and a table of tables */
	ODD("x-death", .kind = AMQP_FIELD_KIND_TABLE,
	    .value.table = { 2, inner });
	xd[0] = (amqp_table_entry_t){ amqp_cstring_bytes("reason"),
		{ .kind = AMQP_FIELD_KIND_TABLE, .value.table = { 2, inner } } };
	xd[1] = (amqp_table_entry_t){ amqp_cstring_bytes("count"),
		{ .kind = AMQP_FIELD_KIND_F64, .value.f64 = 1e200 } };
	arr[0] = (amqp_field_value_t){ .kind = AMQP_FIELD_KIND_TABLE,
				       .value.table = { 2, xd } };
	ODD("x-death", .kind = AMQP_FIELD_KIND_ARRAY,
	    .value.array = { 3, arr });
	ODD("x-delivery-count", .kind = AMQP_FIELD_KIND_UTF8,
	    .value.bytes = amqp_cstring_bytes("-99999999999999999999"));
	ODD("x-delivery-count", .kind = AMQP_FIELD_KIND_TABLE,
	    .value.table = { 2, inner });
#undef ODD
	for (int i = 0; i < NHDR; i++) {
		snprintf(keys[i], sizeof(keys[i]), "h%05d", i);
		many[i] = (amqp_table_entry_t){ amqp_cstring_bytes(keys[i]),
			{ .kind = AMQP_FIELD_KIND_VOID } };
	}
	memset(rto, 'r', 255);
	rto[255] = '\0';
	pid = bridge("hdr.err", args);
	aq_wait_consumed("hostile.hdr");
	a = amqp();
	for (int i = 0; i < 5; i++) {
		amqp_table_entry_t big = { amqp_cstring_bytes("big"),
			{ .kind = AMQP_FIELD_KIND_UTF8,
			  .value.bytes = { 100000, huge } } };
		amqp_basic_properties_t p = { ._flags = AMQP_BASIC_HEADERS_FLAG };

		switch (i) {
		case 0:
			p.headers = (amqp_table_t){ k, odd };
			break;
		case 1:
			p.headers = (amqp_table_t){ NHDR, many };
			break;
		case 2:
			p.headers = (amqp_table_t){ 1, &big };
			break;
		case 3:	/* a request whose reply_to is 255 bytes */
			p._flags |= AMQP_BASIC_REPLY_TO_FLAG |
				    AMQP_BASIC_CORRELATION_ID_FLAG;
			p.reply_to = amqp_cstring_bytes(rto);
			p.correlation_id = (amqp_bytes_t){ 3, "a\0b" };
			break;
		case 4:	/* one with a NUL in it, and an empty body */
			p._flags |= AMQP_BASIC_REPLY_TO_FLAG;
			p.reply_to = (amqp_bytes_t){ 3, "q\0q" };
			break;
		}
		snprintf(body, sizeof(body), "%d", i);
		publish(a, "", amqp_cstring_bytes("hostile.hdr"), &p, body,
			i == 4 ? 0 : strlen(body));
		sent++;
	}
	rmq_close(a);
	c = shmbus_consumer__new(bus, "hdr", NULL);
	assert_non_null(c);
	for (int64_t end = t_now_ns() + 10 * SEC; got < sent &&
	     t_now_ns() < end;) {
		if (shmbus_consumer__receive_view(c, &m, 200000000) < 0)
			continue;
		got++;
		if (!m.len)
			seen[4]++;
		else if (m.len == 1 && *(char *)m.data >= '0' &&
			 *(char *)m.data < '4')
			seen[*(char *)m.data - '0']++;
		shmbus_consumer__ack(c, &m);
	}
	shmbus_consumer__free(c);
	for (int i = 0; i < sent; i++) {
		lost += !seen[i];
		dup += seen[i] > 1 ? seen[i] - 1 : 0;
	}
	print_message("odd headers: sent %d received %d lost %d duplicated "
		      "%d; %s", sent, got, lost, dup,
		      stop_bridge(pid, "hdr.err"));
	assert_int_equal(lost, 0);
	free(huge);
	shmbus__close(bus);
}
#endif

/* ---- the configuration file ----------------------------------------- */

static void test_conf_long_line(void **state)
{
	char path[PATH_MAX], log[] = "conf.err";
	const char *args[] = { "--config", path, NULL };
	FILE *f;
	int st;
	pid_t pid;

	(void)state;
	snprintf(path, sizeof(path), "%s/long.conf", t_dir);
	f = fopen(path, "w");
	assert_non_null(f);
	/* a comment whose tail, past any fixed buffer, reads as a setting */
	fputs("[out r]\nfrom = q\nexchange = ex\n#", f);
	for (int i = 0; i < 1 << 20; i++)
		fputc('x', f);
	fputs("routing-key = stolen\n", f);
	assert_int_equal(fclose(f), 0);
	if (!bridge_bin[0])
		SKIP_OR_FAIL("no bridge binary");
	pid = bridge(log, args);
	st = t_wait(pid, 20000);
	if (st != 2)
		kill(pid, SIGKILL);
	print_message("a 1 MiB configuration line: exit %d\n", st);
	assert_int_equal(st, 2);
	assert_int_equal(log_lines(log, "too long"), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_conf_long_line),
#if RMQ_HAVE_CLIENT
		cmocka_unit_test(test_long_ids),
		cmocka_unit_test(test_key_names),
		cmocka_unit_test(test_big_bodies),
		cmocka_unit_test(test_odd_headers),
#endif
	};
	ssize_t n;
	int rc;

	t_env_setup();
	n = readlink("/proc/self/exe", bridge_bin, sizeof(bridge_bin) - 32);
	if (n > 0) {
		/* build/bin/shmbus-bridge, beside build/tests/ */
		bridge_bin[n] = '\0';
		*strrchr(bridge_bin, '/') = '\0';
		*strrchr(bridge_bin, '/') = '\0';
		strcat(bridge_bin, "/bin/shmbus-bridge");
	} else {
		bridge_bin[0] = '\0';
	}
	if (rmq_start(&broker, why, sizeof(why)) < 0)
		rmq_stop(&broker, true);
#if RMQ_HAVE_CLIENT
	if (!why[0]) {
		amqp_connection_state_t c = rmq_connect(&broker);

		snprintf(url, sizeof(url), "amqp://guest:guest@127.0.0.1:%d",
			 broker.amqp_port);
		if (!c) {
			snprintf(why, sizeof(why), "cannot connect");
		} else {
			amqp_exchange_declare(c, RMQ_CH, amqp_cstring_bytes(DLX),
					      amqp_cstring_bytes("direct"), 0,
					      1, 0, 0, amqp_empty_table);
			amqp_exchange_declare(c, RMQ_CH, amqp_cstring_bytes(FAN),
					      amqp_cstring_bytes("fanout"), 0,
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
	rc = cmocka_run_group_tests_name("bridge_hostile", tests, NULL, NULL);
	rmq_finish(&broker, rc, kids, nr_kids, t_dir);
	t_env_teardown();
	return rc;
}
