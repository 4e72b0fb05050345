// SPDX-License-Identifier: MIT
/*
 * test_bridge_sec.c - the bridge's security against a real RabbitMQ
 * (tests/rmq.h) with a TLS listener, certificates made here with the
 * openssl command:
 *  - messages flow over amqps:// with the broker's certificate checked
 *    against the test's CA;
 *  - a bridge given another CA, or a URL whose host name the
 *    certificate does not carry, refuses the broker: it says why on
 *    stderr, retries with backoff, forwards nothing and loses nothing
 *    (the right settings afterwards forward all of it);
 *  - a broker that requires a client certificate: refused without one,
 *    messages flow with one;
 *  - a credentials file, a signing key or a TLS key that other users may
 *    read is refused, as is a short key;
 *  - a password in the URL: a warning, and it is in no log line and not
 *    in /proc/PID/cmdline;
 *  - signed messages local -> broker -> local arrive intact; signatures
 *    checked here by an implementation of docs/bridge.md's format; a
 *    message changed in the broker (its body, a header), or one without
 *    a signature, is not delivered but dead-lettered (dlq.reason
 *    signature) and counted; without a local dead-letter queue it is
 *    rejected to the broker, whose dead-letter exchange takes it.
 */
#include "shmbus.h"
#include "helpers.h"
#include "rmq.h"

#include <openssl/evp.h>

#define BUS	"sectest"
#define EX	"sec.ex"
#define TLSQ	"sec.tls"	/* AMQP: what the TLS flows fill */
#define HOLDQ	"sec.hold"	/* AMQP: signed messages, to be tampered */
#define INQ	"sec.in"	/* AMQP: what the verifying in route reads */
#define INQ2	"sec.in2"	/* AMQP: an in route without a local DLQ */
#define DLX	"sec.dlx"	/* AMQP: INQ2's dead-letter exchange */
#define DLQ2	"sec.dlq2"	/* AMQP: bound to DLX */
#define N_TLS	200
#define N_SIG	300
#define N_TAMP	200
#define N_UNSIGNED 10

static struct rmq broker;
static char why[PATH_MAX + 64];
static char bridge[PATH_MAX], creds[128], key[128];
static char tls[96];	/* the certificates' directory */
static char plain_url[128];
static int tls_port;

static pid_t spawned[16];	/* bridges that may still run */

/* SIGKILL what a failed test left running. */
static void reap_bridges(void)
{
	for (unsigned i = 0; i < sizeof(spawned) / sizeof(spawned[0]); i++)
		if (spawned[i] > 0) {
			kill(spawned[i], SIGKILL);
			waitpid(spawned[i], NULL, 0);
			spawned[i] = 0;
		}
}

static void need_broker(void)
{
	reap_bridges();
	if (why[0])
		SKIP_OR_FAIL("%.200s", why);
}

#if RMQ_HAVE_CLIENT
/* build/bin/shmbus-bridge, beside build/tests/ */
static void find_bridge(void)
{
	ssize_t n = readlink("/proc/self/exe", bridge, sizeof(bridge) - 32);

	assert_true(n > 0);
	bridge[n] = '\0';
	*strrchr(bridge, '/') = '\0';
	*strrchr(bridge, '/') = '\0';
	strcat(bridge, "/bin/shmbus-bridge");
}

static int write_file(const char *path, const void *p, size_t n, int mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0)
		return -1;
	if (write(fd, p, n) != (ssize_t)n || fchmod(fd, mode)) {
		close(fd);
		return -1;
	}
	return close(fd);
}

/* A CA, a second CA, a server certificate for DNS:localhost and a
 * client certificate, all from the first CA; P-256 keys, mode 600. */
static int make_certs(void)
{
	static const char script[] =
		"set -e; cd '%s'\n"
		"key() { openssl genpkey -algorithm EC -pkeyopt "
		"ec_paramgen_curve:P-256 -out $1 2>/dev/null; chmod 600 $1; }\n"
		"ca() { key $1.key; openssl req -x509 -new -key $1.key "
		"-out $1.pem -days 2 -subj /CN=$1 -addext "
		"basicConstraints=critical,CA:TRUE -addext "
		"keyUsage=critical,keyCertSign,cRLSign; }\n"
		"leaf() { key $1.key; openssl req -new -key $1.key -out $1.csr "
		"-subj /CN=$2; printf '%%s\\n' \"$3\" "
		"basicConstraints=CA:FALSE > $1.ext; openssl x509 -req "
		"-in $1.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
		"-out $1.pem -days 2 -extfile $1.ext 2>/dev/null; }\n"
		"ca ca; ca ca2\n"
		"leaf server localhost 'subjectAltName=DNS:localhost'\n"
		"leaf client shmbus-bridge 'extendedKeyUsage=clientAuth'\n";
	char cmd[sizeof(script) + PATH_MAX];

	snprintf(tls, sizeof(tls), "%s/tls", t_dir);
	if (mkdir(tls, 0700))
		return -1;
	snprintf(cmd, sizeof(cmd), script, tls);
	return system(cmd) ? -1 : 0;
}

static void tls_conf(char *buf, size_t len, bool require_client)
{
	char ca[128], cert[128], k[128];

	snprintf(ca, sizeof(ca), "%s/ca.pem", tls);
	snprintf(cert, sizeof(cert), "%s/server.pem", tls);
	snprintf(k, sizeof(k), "%s/server.key", tls);
	rmq_tls_conf(buf, len, tls_port, ca, cert, k, require_client);
}

/* The TLS listener takes connections (it starts with the node). */
static bool tls_listening(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons(tls_port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

	for (int i = 0; i < 200; i++) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		bool ok = !connect(fd, (struct sockaddr *)&sa, sizeof(sa));

		close(fd);
		if (ok)
			return true;
		usleep(50000);
	}
	return false;
}

/* The bridge with @args (NULL-terminated) after --bus, its stderr in
 * the test's directory as @err (a new file). */
static pid_t spawn(const char *err, const char *const *args)
{
	char path[PATH_MAX + 64];
	const char *argv[32] = { bridge, "--bus", BUS };
	unsigned n = 3;
	pid_t pid;

	while (*args && n < 31)
		argv[n++] = *args++;
	argv[n] = NULL;
	snprintf(path, sizeof(path), "%s/%s", t_dir, err);
	unlink(path);
	pid = fork();
	assert_true(pid >= 0);
	if (pid) {
		for (unsigned i = 0; i < sizeof(spawned) / sizeof(spawned[0]);
		     i++)
			if (spawned[i] <= 0) {
				spawned[i] = pid;
				break;
			}
		return pid;
	}
	/* no bridge outlives a test killed by its timeout */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (!freopen(path, "a", stderr))
		_exit(127);
	execv(bridge, (char *const *)argv);
	_exit(127);
}

static void forget(pid_t pid)
{
	for (unsigned i = 0; i < sizeof(spawned) / sizeof(spawned[0]); i++)
		if (spawned[i] == pid)
			spawned[i] = 0;
}

/* The text of @err in the test's directory (static). */
static const char *err_text(const char *err)
{
	static char text[65536];
	char path[PATH_MAX + 64];
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "%s/%s", t_dir, err);
	f = fopen(path, "r");
	assert_non_null(f);
	n = fread(text, 1, sizeof(text) - 1, f);
	text[n] = '\0';
	fclose(f);
	return text;
}

/* Lines of @text that start with @start and hold @needle. */
static unsigned count_lines(const char *text, const char *start,
			    const char *needle)
{
	unsigned n = 0;

	for (const char *p = text; *p; ) {
		const char *e = strchr(p, '\n');
		size_t len = e ? (size_t)(e - p) : strlen(p);

		if (!strncmp(p, start, strlen(start)) &&
		    memmem(p, len, needle, strlen(needle)))
			n++;
		p += len + (e != NULL);
	}
	return n;
}

/* The first line of @text that holds @needle (for the figures). */
static const char *line_of(const char *text, const char *needle)
{
	static char line[512];
	const char *p = strstr(text, needle), *b, *e;

	if (!p)
		return "(none)";
	for (b = p; b > text && b[-1] != '\n'; b--)
		;
	e = strchr(p, '\n');
	snprintf(line, sizeof(line), "%.*s", (int)(e ? e - b : (long)strlen(b)),
		 b);
	return line;
}

/* SIGTERM: exit 0; the counters line "bridge: forwarded ..." (static). */
static const char *stop_bridge(pid_t pid, const char *err)
{
	static char last[1024];
	char path[PATH_MAX + 64];
	const char *line;

	forget(pid);
	snprintf(path, sizeof(path), "%s/%s", t_dir, err);
	line = rmq_stop_bridge(pid, path, "bridge: forwarded");
	assert_true(line[0]);
	snprintf(last, sizeof(last), "%.*s", (int)strcspn(line, "\n"), line);
	return last;
}

static void declare_all(void)
{
	static const char *const aq[][2] = {
		{ TLSQ, "tls" }, { HOLDQ, "hold" }, { INQ, NULL },
		{ "sec.transit", "sig" },
	};
	static const char *const lq[] = { "tls", "sa", "sb.dlq", "sb", "ta",
		"nodlq" };
	amqp_table_entry_t dlx_arg = {
		.key = amqp_cstring_bytes("x-dead-letter-exchange"),
		.value = { .kind = AMQP_FIELD_KIND_UTF8,
			   .value.bytes = amqp_cstring_bytes(DLX) },
	};
	amqp_connection_state_t c = rmq_connect(&broker);
	struct shmbus *bus = t_open_bus(BUS);

	for (unsigned i = 0; i < sizeof(lq) / sizeof(lq[0]); i++) {
		SHMBUS_OPTS(shmbus_queue_opts, qo, .max_len = 4096,
			    .dead_letter_queue = !strcmp(lq[i], "sb") ?
			    "sb.dlq" : NULL);

		assert_true(shmbus__queue_declare(bus, lq[i], &qo) >= 0);
	}
	shmbus__close(bus);
	assert_non_null(c);
	amqp_exchange_declare(c, RMQ_CH, amqp_cstring_bytes(EX),
			      amqp_cstring_bytes("direct"), 0, 1, 0, 0,
			      amqp_empty_table);
	rmq_rpc_ok(c, "exchange.declare");
	/* INQ2 dead-letters into DLQ2 through DLX */
	amqp_exchange_declare(c, RMQ_CH, amqp_cstring_bytes(DLX),
			      amqp_cstring_bytes("fanout"), 0, 1, 0, 0,
			      amqp_empty_table);
	rmq_rpc_ok(c, "exchange.declare");
	amqp_queue_declare(c, RMQ_CH, amqp_cstring_bytes(DLQ2), 0, 1, 0, 0,
			   amqp_empty_table);
	rmq_rpc_ok(c, "queue.declare");
	amqp_queue_bind(c, RMQ_CH, amqp_cstring_bytes(DLQ2),
			amqp_cstring_bytes(DLX), amqp_empty_bytes,
			amqp_empty_table);
	rmq_rpc_ok(c, "queue.bind");
	amqp_queue_declare(c, RMQ_CH, amqp_cstring_bytes(INQ2), 0, 1, 0, 0,
			   (amqp_table_t){ 1, &dlx_arg });
	rmq_rpc_ok(c, "queue.declare");
	for (unsigned i = 0; i < sizeof(aq) / sizeof(aq[0]); i++) {
		amqp_queue_declare(c, RMQ_CH, amqp_cstring_bytes(aq[i][0]), 0,
				   1, 0, 0, amqp_empty_table);
		rmq_rpc_ok(c, "queue.declare");
		if (!aq[i][1])
			continue;
		amqp_queue_bind(c, RMQ_CH, amqp_cstring_bytes(aq[i][0]),
				amqp_cstring_bytes(EX),
				amqp_cstring_bytes(aq[i][1]), amqp_empty_table);
		rmq_rpc_ok(c, "queue.bind");
	}
	rmq_close(c);
}

/* Messages [first, first + n) into local queue @q: payload "<p><i>",
 * correlation id i + 1, attributes k1 = "v<i>" and "trace" = "t". */
static void publish_local(const char *q, char p, int first, int n)
{
	SHMBUS_OPTS(shmbus_producer_opts, po);
	struct shmbus *bus = t_open_bus(BUS);
	struct shmbus_producer *pr = shmbus_producer__new(bus, q, &po);
	char body[32], v[32];

	assert_non_null(pr);
	for (int i = first; i < first + n; i++) {
		struct shmbus_attr a[2] = {
			{ .key = "k1", .value = v },
			{ .key = "trace", .value = "t", .value_len = 1 },
		};
		SHMBUS_OPTS(shmbus_pub_opts, o, .corr_id = i + 1,
			    .timeout_ns = 5000000000ll, .attrs = a,
			    .nr_attrs = 2);

		snprintf(body, sizeof(body), "%c%d", p, i);
		a[0].value_len = (uint32_t)snprintf(v, sizeof(v), "v%d", i);
		assert_int_equal(shmbus_producer__publish(pr, body,
					strlen(body), &o), 0);
	}
	shmbus_producer__free(pr);
	shmbus__close(bus);
}

static uint64_t local_depth(const char *q)
{
	struct shmbus *bus = t_open_bus(BUS);
	struct shmbus_queue_info qi;

	assert_int_equal(shmbus__queue_info(bus, q, &qi), 0);
	shmbus__close(bus);
	return qi.depth + qi.in_flight;
}

static uint32_t ready_in(const char *q)
{
	amqp_connection_state_t c = rmq_connect(&broker);
	amqp_queue_declare_ok_t *ok;
	uint32_t n;

	assert_non_null(c);
	ok = amqp_queue_declare(c, RMQ_CH, amqp_cstring_bytes(q), 1, 0, 0, 0,
				amqp_empty_table);
	rmq_rpc_ok(c, "queue.declare passive");
	n = ok->message_count;
	rmq_close(c);
	return n;
}

static amqp_connection_state_t consumer(const char *q, bool no_ack)
{
	amqp_connection_state_t c = rmq_connect(&broker);

	assert_non_null(c);
	amqp_basic_consume(c, RMQ_CH, amqp_cstring_bytes(q), amqp_empty_bytes,
			   0, no_ack, 0, amqp_empty_table);
	rmq_rpc_ok(c, "basic.consume");
	return c;
}

/* Consume "<p><i>" payloads from AMQP queue @q into seen[] until all of
 * [first, first + n) came and 1 s more passed, or @quiet_ms of nothing;
 * returns how many came. */
static long consume_amqp(const char *q, int *seen, int first, int n,
			 int quiet_ms)
{
	amqp_connection_state_t c = consumer(q, true);
	int missing = n;
	long got = 0;

	for (;;) {
		int ms = missing ? quiet_ms : 1000;
		struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
		amqp_envelope_t e;
		amqp_rpc_reply_t r;
		char body[32];
		int i;

		amqp_maybe_release_buffers(c);
		r = amqp_consume_message(c, &e, &tv, 0);
		if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
		    r.library_error == AMQP_STATUS_TIMEOUT)
			break;
		assert_int_equal(r.reply_type, AMQP_RESPONSE_NORMAL);
		assert_true(e.message.body.len < sizeof(body));
		memcpy(body, e.message.body.bytes, e.message.body.len);
		body[e.message.body.len] = '\0';
		assert_int_equal(sscanf(body, "%*c%d", &i), 1);
		assert_true(i >= first && i < first + n);
		if (!seen[i - first]++)
			missing--;
		got++;
		amqp_destroy_envelope(&e);
	}
	rmq_close(c);
	return got;
}

static void tally(const int *seen, int n, long *lost, long *dup)
{
	*lost = *dup = 0;
	for (int i = 0; i < n; i++) {
		*lost += !seen[i];
		*dup += seen[i] > 1 ? seen[i] - 1 : 0;
	}
}

static void url_tls(char *buf, size_t len, const char *host)
{
	snprintf(buf, len, "amqps://%s:%d", host, tls_port);
}

static void test_tls_flow(void **state)
{
	char url[128], ca[128];
	const char *args[] = { "--amqp", url, "--tls-ca", ca, "--credentials",
		creds, "--from", "tls", "--exchange", EX, "--routing-key",
		"tls", NULL };
	int seen[N_TLS] = { 0 };
	long got, lost, dup;
	const char *counters;
	pid_t pid;

	need_broker();
	url_tls(url, sizeof(url), "localhost");
	snprintf(ca, sizeof(ca), "%s/ca.pem", tls);
	publish_local("tls", 'm', 0, N_TLS);
	pid = spawn("tls.err", args);
	got = consume_amqp(TLSQ, seen, 0, N_TLS, 20000);
	counters = stop_bridge(pid, "tls.err");
	tally(seen, N_TLS, &lost, &dup);
	print_message("amqps, CA checked: sent %d received %ld lost %ld "
		      "duplicated %ld; %s\n", N_TLS, got, lost, dup, counters);
	assert_int_equal(lost, 0);
	assert_string_equal(counters, "bridge: forwarded 200 confirmed 200 "
			    "nacked 0 reconnects 0");
}

/*
 * A bridge whose TLS check fails (@url, @ca): it says why (@reason) at
 * each try, tries again with backoff, and neither forwards nor loses
 * anything; the right settings then forward every message.
 */
static void refused(const char *what, const char *url, const char *ca,
		    const char *reason, int first)
{
	const int n = 100;
	char good_url[128], good_ca[128];
	const char *bad_args[] = { "--amqp", url, "--tls-ca", ca,
		"--credentials", creds, "--from", "tls", "--exchange", EX,
		"--routing-key", "tls", NULL };
	const char *good_args[] = { "--amqp", good_url, "--tls-ca", good_ca,
		"--credentials", creds, "--from", "tls", "--exchange", EX,
		"--routing-key", "tls", NULL };
	int seen[100] = { 0 };
	const char *counters, *text;
	unsigned tries;
	long got, lost, dup;
	pid_t pid;

	url_tls(good_url, sizeof(good_url), "localhost");
	snprintf(good_ca, sizeof(good_ca), "%s/ca.pem", tls);
	publish_local("tls", 'm', first, n);
	pid = spawn("refused.err", bad_args);
	sleep(3);
	counters = stop_bridge(pid, "refused.err");
	text = err_text("refused.err");
	/* the out route's tries (the bridge's reply route tries too) */
	tries = count_lines(text, "shmbus-bridge: out: cannot connect",
			    reason);
	print_message("%s: %u tries in 3 s, each: %s\n", what, tries,
		      line_of(text, "shmbus-bridge: out: cannot connect"));
	/* 100 ms doubling, with jitter: 3 to 6 tries in 3 s */
	assert_true(tries >= 3 && tries <= 8);
	assert_string_equal(counters, "bridge: forwarded 0 confirmed 0 "
			    "nacked 0 reconnects 0");
	assert_int_equal(ready_in(TLSQ), 0);
	assert_int_equal(local_depth("tls"), n);
	pid = spawn("refused2.err", good_args);
	got = consume_amqp(TLSQ, seen, first, n, 20000);
	counters = stop_bridge(pid, "refused2.err");
	tally(seen, n, &lost, &dup);
	print_message("%s, then the right settings: sent %d received %ld "
		      "lost %ld duplicated %ld\n", what, n, got, lost, dup);
	assert_int_equal(lost, 0);
}

static void test_tls_wrong_ca(void **state)
{
	char url[128], ca2[128];

	need_broker();
	url_tls(url, sizeof(url), "localhost");
	snprintf(ca2, sizeof(ca2), "%s/ca2.pem", tls);
	refused("another CA", url, ca2, "SSL peer cert verification failed",
		1000);
}

static void test_tls_wrong_name(void **state)
{
	char url[128], ca[128];

	need_broker();
	/* the certificate names DNS:localhost, not 127.0.0.1 */
	url_tls(url, sizeof(url), "127.0.0.1");
	snprintf(ca, sizeof(ca), "%s/ca.pem", tls);
	refused("a certificate for another name", url, ca,
		"SSL hostname verification failed", 2000);
}

static void test_mutual_tls(void **state)
{
	const int n = 100, first = 3000;
	char conf[2048], url[128], ca[128], cert[128],
	     ckey[128];
	const char *no_cert[] = { "--amqp", url, "--tls-ca", ca,
		"--credentials", creds, "--from", "tls", "--exchange", EX,
		"--routing-key", "tls", NULL };
	const char *with_cert[] = { "--amqp", url, "--tls-ca", ca,
		"--tls-cert", cert, "--tls-key", ckey, "--credentials", creds,
		"--from", "tls", "--exchange", EX, "--routing-key", "tls",
		NULL };
	int seen[100] = { 0 };
	const char *counters, *text;
	long got, lost, dup;
	pid_t pid;

	need_broker();
	url_tls(url, sizeof(url), "localhost");
	snprintf(ca, sizeof(ca), "%s/ca.pem", tls);
	snprintf(cert, sizeof(cert), "%s/client.pem", tls);
	snprintf(ckey, sizeof(ckey), "%s/client.key", tls);
	tls_conf(conf, sizeof(conf), true);
	assert_int_equal(rmq_configure(&broker, conf), 0);
	assert_int_equal(rmq_restart(&broker, SIGTERM), 0);
	assert_true(tls_listening());
	publish_local("tls", 'm', first, n);

	pid = spawn("mtls0.err", no_cert);
	sleep(2);
	counters = stop_bridge(pid, "mtls0.err");
	text = err_text("mtls0.err");
	print_message("no client certificate: %s\n",
		      line_of(text, "shmbus-bridge: out:"));
	assert_non_null(strstr(text, "shmbus-bridge: out:"));
	assert_string_equal(counters, "bridge: forwarded 0 confirmed 0 "
			    "nacked 0 reconnects 0");
	assert_int_equal(ready_in(TLSQ), 0);

	pid = spawn("mtls1.err", with_cert);
	got = consume_amqp(TLSQ, seen, first, n, 20000);
	counters = stop_bridge(pid, "mtls1.err");
	tally(seen, n, &lost, &dup);
	print_message("client certificate required and given: sent %d "
		      "received %ld lost %ld duplicated %ld; %s\n", n, got,
		      lost, dup, counters);
	assert_int_equal(lost, 0);
}

/* The bridge with @args exits 2 at once and says @msg on stderr. */
static void refuses_to_start(const char *what, const char *const *args,
			     const char *msg)
{
	pid_t pid = spawn("start.err", args);
	const char *text;

	forget(pid);
	assert_int_equal(t_wait(pid, 10000), 2);
	text = err_text("start.err");
	print_message("%s: %s", what, text);
	assert_non_null(strstr(text, msg));
}

static void test_file_modes(void **state)
{
	char open_creds[128], open_key[128],
	     short_key[128], open_tls_key[128], k[64];
	const char *a1[] = { "--amqp", plain_url, "--credentials", open_creds,
		"--from", "sa", "--exchange", EX, NULL };
	const char *a2[] = { "--amqp", plain_url, "--credentials", creds,
		"--sign-key", open_key, "--from", "sa", "--exchange", EX,
		NULL };
	const char *a3[] = { "--amqp", plain_url, "--credentials", creds,
		"--sign-key", short_key, "--from", "sa", "--exchange", EX,
		NULL };
	const char *a4[] = { "--amqp", plain_url, "--credentials", creds,
		"--tls-cert", "x.pem", "--tls-key", open_tls_key, "--from",
		"sa", "--exchange", EX, NULL };

	need_broker();
	memset(k, 'k', sizeof(k));
	snprintf(open_creds, sizeof(open_creds), "%s/creds.644", t_dir);
	snprintf(open_key, sizeof(open_key), "%s/key.640", t_dir);
	snprintf(short_key, sizeof(short_key), "%s/key.short", t_dir);
	snprintf(open_tls_key, sizeof(open_tls_key), "%s/tls.key.604", t_dir);
	assert_int_equal(write_file(open_creds, "guest:guest\n", 12, 0644), 0);
	assert_int_equal(write_file(open_key, k, sizeof(k), 0640), 0);
	assert_int_equal(write_file(short_key, k, 31, 0600), 0);
	assert_int_equal(write_file(open_tls_key, k, 8, 0604), 0);
	refuses_to_start("credentials 0644", a1,
			 "may be read or written by other users (mode 0644)");
	refuses_to_start("sign-key 0640", a2,
			 "may be read or written by other users (mode 0640)");
	refuses_to_start("sign-key of 31 bytes", a3,
			 "31 bytes, at least 32 needed");
	refuses_to_start("tls-key 0604", a4,
			 "may be read or written by other users (mode 0604)");
}

static void test_password_hidden(void **state)
{
	static const char pw[] = "Pw-Sekrit-1";
	char url[160], bad_url[160], cmdline[4096], path[64];
	const char *a1[] = { "--amqp", url, "--from", "sa", "--exchange", EX,
		NULL };
	const char *a2[] = { "--amqp", bad_url, "--from", "sa", "--exchange",
		EX, NULL };
	const char *text;
	ssize_t n;
	pid_t pid;
	int fd;

	need_broker();
	/* a wrong password: the login fails, and says so */
	snprintf(url, sizeof(url), "amqp://guest:%s@127.0.0.1:%d", pw,
		 broker.amqp_port);
	pid = spawn("pw.err", a1);
	usleep(1500000);
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	n = read(fd, cmdline, sizeof(cmdline) - 1);
	close(fd);
	assert_true(n > 0);
	for (ssize_t i = 0; i < n; i++)
		if (!cmdline[i])
			cmdline[i] = ' ';
	cmdline[n] = '\0';
	stop_bridge(pid, "pw.err");
	text = err_text("pw.err");
	print_message("cmdline: %s\n", cmdline);
	print_message("%s\n", line_of(text, "warning"));
	print_message("%s\n", line_of(text, "login to"));
	assert_null(strstr(cmdline, pw));
	assert_non_null(strstr(cmdline, "guest:***********@"));
	assert_null(strstr(text, pw));
	assert_non_null(strstr(text, "warning: the broker URL holds a "
			       "password"));
	assert_non_null(strstr(text, "login to 127.0.0.1"));

	/* a URL refused at start: shown without its password */
	snprintf(bad_url, sizeof(bad_url), "amqp://guest:%s@127.0.0.1:x%d",
		 pw, broker.amqp_port);
	pid = spawn("pw2.err", a2);
	forget(pid);
	assert_int_equal(t_wait(pid, 10000), 2);
	text = err_text("pw2.err");
	print_message("%s", text);
	assert_null(strstr(text, pw));
	assert_non_null(strstr(text, "guest:****@"));
}

/* ---- signatures ------------------------------------------------------ */

static unsigned char sign_key[48];

/* docs/bridge.md's encoding, written from the text: a length (8 bytes
 * big-endian) and the bytes, for each field. */
static void field(unsigned char *buf, size_t *at, const void *p, size_t n)
{
	for (int i = 0; i < 8; i++)
		buf[(*at)++] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
	memcpy(buf + *at, p, n);
	*at += n;
}

static void prop(unsigned char *buf, size_t *at,
		 const amqp_basic_properties_t *p, amqp_flags_t flag,
		 amqp_bytes_t v)
{
	if (p->_flags & flag)
		field(buf, at, v.bytes, v.len);
	else
		field(buf, at, "", 0);
}

static int entry_cmp(const void *pa, const void *pb)
{
	const amqp_table_entry_t *a = *(amqp_table_entry_t *const *)pa;
	const amqp_table_entry_t *b = *(amqp_table_entry_t *const *)pb;
	size_t n = a->key.len < b->key.len ? a->key.len : b->key.len;
	int c = memcmp(a->key.bytes, b->key.bytes, n);

	if (c || a->key.len != b->key.len)
		return c ? c : a->key.len < b->key.len ? -1 : 1;
	n = a->value.value.bytes.len < b->value.value.bytes.len ?
	    a->value.value.bytes.len : b->value.value.bytes.len;
	c = memcmp(a->value.value.bytes.bytes, b->value.value.bytes.bytes, n);
	return c ? c : a->value.value.bytes.len < b->value.value.bytes.len ?
	       -1 : a->value.value.bytes.len > b->value.value.bytes.len;
}

/* Whether @e carries a good signature, checked as another program
 * would, from the AMQP message alone. */
static bool signature_ok(const amqp_envelope_t *e)
{
	const amqp_basic_properties_t *p = &e->message.properties;
	const amqp_table_entry_t *h[64];
	unsigned char buf[16384], mac[32];
	char hex[65] = "";
	const char *sig = NULL;
	size_t at = 0, maclen = 0;
	unsigned nh = 0;

	field(buf, &at, "shmbus-hmac-sha256-v1", 21);
	prop(buf, &at, p, AMQP_BASIC_MESSAGE_ID_FLAG, p->message_id);
	prop(buf, &at, p, AMQP_BASIC_CORRELATION_ID_FLAG, p->correlation_id);
	prop(buf, &at, p, AMQP_BASIC_REPLY_TO_FLAG, p->reply_to);
	prop(buf, &at, p, AMQP_BASIC_EXPIRATION_FLAG, p->expiration);
	for (int i = 0; (p->_flags & AMQP_BASIC_HEADERS_FLAG) &&
	     i < p->headers.num_entries; i++) {
		const amqp_table_entry_t *t = &p->headers.entries[i];

		if (t->key.len == 18 &&
		    !memcmp(t->key.bytes, "x-shmbus-signature", 18)) {
			sig = t->value.value.bytes.bytes;
			assert_int_equal(t->value.value.bytes.len, 67);
			continue;
		}
		if ((t->key.len >= 2 && !memcmp(t->key.bytes, "x-", 2)) ||
		    (t->key.len >= 4 && !memcmp(t->key.bytes, "dlq.", 4)))
			continue;
		assert_int_equal(t->value.kind, AMQP_FIELD_KIND_UTF8);
		h[nh++] = t;
	}
	qsort(h, nh, sizeof(h[0]), entry_cmp);
	for (int i = 0; i < 8; i++)
		buf[at++] = (unsigned char)((uint64_t)nh >> (56 - 8 * i));
	for (unsigned i = 0; i < nh; i++) {
		field(buf, &at, h[i]->key.bytes, h[i]->key.len);
		field(buf, &at, h[i]->value.value.bytes.bytes,
		      h[i]->value.value.bytes.len);
	}
	field(buf, &at, e->message.body.bytes, e->message.body.len);
	assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL,
				  sign_key, sizeof(sign_key), buf, at, mac,
				  sizeof(mac), &maclen));
	for (int i = 0; i < 32; i++)
		sprintf(hex + 2 * i, "%02x", mac[i]);
	return sig && !memcmp(sig, "v1=", 3) && !memcmp(sig + 3, hex, 64);
}

/* Receive from local queue @q into seen[] ("<p><i>" payloads, i in
 * [first, first + n)) until @quiet_ms of nothing; checks the attributes
 * of each (@dlq: dlq.reason "signature"); returns how many came. */
static long drain_local(const char *q, int *seen, int first, int n,
			bool dlq, int quiet_ms)
{
	SHMBUS_OPTS(shmbus_consumer_opts, co);
	struct shmbus *bus = t_open_bus(BUS);
	struct shmbus_consumer *c = shmbus_consumer__new(bus, q, &co);
	long got = 0;

	assert_non_null(c);
	for (;;) {
		struct shmbus_msg m;
		const void *v;
		size_t len;
		char body[32];
		int i, rc;

		rc = shmbus_consumer__receive_view(c, &m,
					(int64_t)quiet_ms * 1000000);
		if (rc == -ETIMEDOUT || rc == -EAGAIN)
			break;
		assert_int_equal(rc, 0);
		assert_true(m.len < sizeof(body));
		memcpy(body, m.data, m.len);
		body[m.len] = '\0';
		assert_int_equal(sscanf(body, "%*c%d", &i), 1);
		assert_true(i >= first && i < first + n);
		seen[i - first]++;
		got++;
		if (dlq) {
			assert_int_equal(shmbus_msg__attr(&m, "dlq.reason", &v,
							  &len), 0);
			assert_int_equal(len, 9);
			assert_memory_equal(v, "signature", 9);
		} else {
			char want[32];

			/* intact, and the signature is not passed on */
			assert_int_equal(body[0], 's');
			assert_int_equal(shmbus_msg__attr(&m, "k1", &v, &len),
					 0);
			snprintf(want, sizeof(want), "v%d", i);
			assert_int_equal(len, strlen(want));
			assert_memory_equal(v, want, len);
			assert_int_equal(shmbus_msg__attr(&m,
					"x-shmbus-signature", &v, &len),
					-ENOENT);
			assert_int_equal(m.corr_id, (uint64_t)i + 1);
		}
		assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	}
	shmbus_consumer__free(c);
	shmbus__close(bus);
	return got;
}

static void write_conf(const char *name, const char *text)
{
	char path[PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/%s", t_dir, name);
	assert_int_equal(write_file(path, text, strlen(text), 0600), 0);
}

/* Signed local -> broker -> local, in one bridge: all intact. */
static void test_signed_flow(void **state)
{
	char conf[1024], path[128];
	const char *args[] = { "--config", path, NULL };
	int seen[N_SIG] = { 0 };
	const char *counters;
	long got, lost, dup;
	pid_t pid;

	need_broker();
	snprintf(conf, sizeof(conf),
		 "amqp = %s\ncredentials = %s\nsign-key = %s\n"
		 "[out s-out]\nfrom = sa\nexchange = " EX "\nrouting-key = sig\n"
		 "[in s-in]\nqueue = sec.transit\nto = sb\n", plain_url, creds,
		 key);
	write_conf("signed.conf", conf);
	snprintf(path, sizeof(path), "%s/signed.conf", t_dir);
	publish_local("sa", 's', 0, N_SIG);
	pid = spawn("signed.err", args);
	got = drain_local("sb", seen, 0, N_SIG, false, 3000);
	counters = stop_bridge(pid, "signed.err");
	tally(seen, N_SIG, &lost, &dup);
	print_message("signed A -> broker -> B: sent %d received %ld lost %ld "
		      "duplicated %ld; %s; %s\n", N_SIG, got, lost, dup,
		      counters, line_of(err_text("signed.err"),
					"bridge: signature"));
	assert_int_equal(lost, 0);
	assert_non_null(strstr(err_text("signed.err"),
			       "bridge: signature rejected 0"));
}

/* Move every message of AMQP queue HOLDQ to INQ, each signature checked
 * here; every tenth changed on the way (by turns one byte of the body, a
 * header's value). Returns how many were changed; sets tampered[]. */
static int tamper(int first, int n, bool *tampered)
{
	amqp_connection_state_t c = consumer(HOLDQ, false);
	int moved = 0, changed = 0;

	while (moved < n) {
		struct timeval tv = { 20, 0 };
		amqp_envelope_t e;
		amqp_basic_properties_t p;
		amqp_table_entry_t h[64];
		amqp_rpc_reply_t r;
		char body[32];
		int i;

		amqp_maybe_release_buffers(c);
		r = amqp_consume_message(c, &e, &tv, 0);
		assert_int_equal(r.reply_type, AMQP_RESPONSE_NORMAL);
		assert_true(signature_ok(&e));
		assert_true(e.message.body.len < sizeof(body));
		memcpy(body, e.message.body.bytes, e.message.body.len);
		body[e.message.body.len] = '\0';
		assert_int_equal(sscanf(body, "s%d", &i), 1);
		assert_true(i >= first && i < first + n);
		p = e.message.properties;
		memcpy(h, p.headers.entries,
		       p.headers.num_entries * sizeof(h[0]));
		p.headers.entries = h;
		if (i % 10 == 0) {
			tampered[i - first] = true;
			changed++;
			if (i % 20 == 0) {
				body[0] = 't';	/* one byte of the body */
			} else {
				for (int k = 0; k < p.headers.num_entries; k++)
					if (h[k].key.len == 2 &&
					    !memcmp(h[k].key.bytes, "k1", 2))
						h[k].value.value.bytes =
						amqp_cstring_bytes("v-forged");
			}
		}
		amqp_basic_publish(c, RMQ_CH, amqp_empty_bytes,
				   amqp_cstring_bytes(INQ), 0, 0, &p,
				   (amqp_bytes_t){ e.message.body.len, body });
		amqp_basic_ack(c, RMQ_CH, e.delivery_tag, 0);
		amqp_destroy_envelope(&e);
		moved++;
	}
	rmq_close(c);
	return changed;
}

/* Messages without a signature, straight into AMQP queue @q: "u<i>". */
static void publish_unsigned(const char *q, int first, int n)
{
	amqp_connection_state_t c = rmq_connect(&broker);

	assert_non_null(c);
	for (int i = first; i < first + n; i++) {
		amqp_basic_properties_t p = {
			._flags = AMQP_BASIC_DELIVERY_MODE_FLAG,
			.delivery_mode = 2,
		};
		char body[32];

		snprintf(body, sizeof(body), "u%d", i);
		assert_int_equal(amqp_basic_publish(c, RMQ_CH,
				 amqp_empty_bytes, amqp_cstring_bytes(q), 0,
				 0, &p, amqp_cstring_bytes(body)), 0);
	}
	rmq_close(c);
}

/* The "rejected" of the running bridge's route as `shmbus stat --format
 * json` shows it once it reaches @want (its file is written each second),
 * or the last seen, or -1. */
static long stat_rejected(long want)
{
	char cmd[PATH_MAX + 64], out[8192];
	long v = -1;

	snprintf(cmd, sizeof(cmd), "%.*s/shmbus --bus " BUS
		 " stat --format json", (int)(strrchr(bridge, '/') - bridge),
		 bridge);
	for (int i = 0; i < 40 && v != want; i++) {
		FILE *p = popen(cmd, "r");
		size_t n = p ? fread(out, 1, sizeof(out) - 1, p) : 0;
		const char *r;

		if (p)
			pclose(p);
		out[n] = '\0';
		r = strstr(out, "\"rejected\":");
		if (r)
			v = strtol(r + 11, NULL, 10);
		if (v != want)
			usleep(100000);
	}
	return v;
}

static void test_tampered(void **state)
{
	const int first = 10000, total = N_TAMP + N_UNSIGNED;
	char conf[1024], path[128];
	const char *args[] = { "--config", path, NULL };
	bool tampered[N_TAMP] = { false };
	int seen[N_TAMP + N_UNSIGNED] = { 0 }, dead[N_TAMP + N_UNSIGNED] = { 0 };
	unsigned long rejected = 99999;
	long got, got_dlq, lost = 0, dup = 0, wrong = 0;
	int changed;
	const char *counters, *text;
	pid_t pid;

	need_broker();
	/* out only: the signed messages wait in HOLDQ */
	snprintf(conf, sizeof(conf),
		 "amqp = %s\ncredentials = %s\nsign-key = %s\n"
		 "[out t]\nfrom = ta\nexchange = " EX "\nrouting-key = hold\n",
		 plain_url, creds, key);
	write_conf("tamper-out.conf", conf);
	snprintf(path, sizeof(path), "%s/tamper-out.conf", t_dir);
	publish_local("ta", 's', first, N_TAMP);
	pid = spawn("tamper-out.err", args);
	publish_unsigned(INQ, first + N_TAMP, N_UNSIGNED);
	changed = tamper(first, N_TAMP, tampered);
	stop_bridge(pid, "tamper-out.err");

	/* in only, verifying: into sb, whose dead-letter queue is sb.dlq */
	snprintf(conf, sizeof(conf),
		 "amqp = %s\ncredentials = %s\n"
		 "[in t]\nqueue = " INQ "\nto = sb\nsign-key = %s\n",
		 plain_url, creds, key);
	write_conf("tamper-in.conf", conf);
	snprintf(path, sizeof(path), "%s/tamper-in.conf", t_dir);
	pid = spawn("tamper-in.err", args);
	got = drain_local("sb", seen, first, total, false, 3000);
	got_dlq = drain_local("sb.dlq", dead, first, total, true, 1000);
	/* shmbus stat shows them while the bridge runs */
	assert_int_equal(stat_rejected(changed + N_UNSIGNED),
			 changed + N_UNSIGNED);
	counters = stop_bridge(pid, "tamper-in.err");
	text = err_text("tamper-in.err");
	assert_int_equal(sscanf(line_of(text, "bridge: signature rejected"),
				"bridge: signature rejected %lu", &rejected), 1);
	for (int i = 0; i < total; i++) {
		bool bad = i >= N_TAMP || tampered[i];

		lost += !seen[i] && !dead[i];
		dup += seen[i] + dead[i] > 1 ? seen[i] + dead[i] - 1 : 0;
		/* delivered only if intact, dead-lettered only if not */
		wrong += bad ? seen[i] != 0 : dead[i] != 0;
	}
	print_message("signed %d, %d changed in the broker, %d unsigned: sent "
		      "%d received %ld rejected %lu (dead-lettered %ld) lost "
		      "%ld duplicated %ld misrouted %ld; %s\n", N_TAMP,
		      changed, N_UNSIGNED, total, got, rejected, got_dlq, lost,
		      dup, wrong, counters);
	print_message("%s\n", line_of(text, "is not signed"));
	print_message("%s\n", line_of(text, "has a wrong signature"));
	assert_non_null(strstr(text, "is not signed: dead-lettered here"));
	assert_non_null(strstr(text, "has a wrong signature: dead-lettered "
			       "here"));
	assert_int_equal(lost, 0);
	assert_int_equal(wrong, 0);
	assert_int_equal(got, N_TAMP - changed);
	assert_int_equal(rejected, changed + N_UNSIGNED);
	assert_int_equal(got_dlq, changed + N_UNSIGNED);
	assert_int_equal(ready_in(INQ), 0);
}

/* Unsigned messages into an in route whose local queue has no
 * dead-letter queue: rejected at the broker, whose dead-letter exchange
 * takes them (x-death reason "rejected"). */
static void test_unsigned_to_broker_dlx(void **state)
{
	const int first = 20000, n = 20;
	char conf[1024], path[PATH_MAX + 32];
	const char *args[] = { "--config", path, NULL };
	int seen[20] = { 0 }, dead[20] = { 0 };
	unsigned long rejected = 99999;
	long got, got_dlq, lost, dup;
	const char *counters, *text;
	pid_t pid;

	need_broker();
	snprintf(conf, sizeof(conf),
		 "amqp = %s\ncredentials = %s\nsign-key = %s\n"
		 "reply-queue = none\n"
		 "[in u]\nqueue = " INQ2 "\nto = nodlq\n", plain_url, creds,
		 key);
	write_conf("unsigned.conf", conf);
	snprintf(path, sizeof(path), "%s/unsigned.conf", t_dir);
	publish_unsigned(INQ2, first, n);
	pid = spawn("unsigned.err", args);
	got_dlq = consume_amqp(DLQ2, dead, first, n, 20000);
	got = drain_local("nodlq", seen, first, n, false, 500);
	counters = stop_bridge(pid, "unsigned.err");
	text = err_text("unsigned.err");
	assert_int_equal(sscanf(line_of(text, "bridge: signature rejected"),
				"bridge: signature rejected %lu", &rejected), 1);
	tally(dead, n, &lost, &dup);
	print_message("unsigned into a route without a local DLQ: sent %d "
		      "received %ld rejected %lu (in the broker's DLQ %ld) "
		      "lost %ld duplicated %ld; %s\n", n, got, rejected,
		      got_dlq, lost, dup, counters);
	print_message("%s\n", line_of(text, "is not signed"));
	assert_int_equal(got, 0);
	assert_int_equal(lost, 0);
	assert_int_equal(rejected, n);
	assert_non_null(strstr(text, "is not signed: rejected to the broker"));
	assert_int_equal(ready_in(INQ2), 0);
}
#endif

int main(void)
{
	const struct CMUnitTest tests[] = {
#if RMQ_HAVE_CLIENT
		cmocka_unit_test(test_tls_flow),
		cmocka_unit_test(test_tls_wrong_ca),
		cmocka_unit_test(test_tls_wrong_name),
		cmocka_unit_test(test_file_modes),
		cmocka_unit_test(test_password_hidden),
		cmocka_unit_test(test_signed_flow),
		cmocka_unit_test(test_tampered),
		cmocka_unit_test(test_unsigned_to_broker_dlx),
		/* last: it restarts the broker requiring client certificates */
		cmocka_unit_test(test_mutual_tls),
#endif
	};
	char conf[2048];
	int rc;

	t_env_setup();
#if RMQ_HAVE_CLIENT
	find_bridge();
	tls_port = rmq_free_port();
	if (access("/usr/bin/openssl", X_OK))
		snprintf(why, sizeof(why), "no openssl command (make deps)");
	else if (make_certs())
		snprintf(why, sizeof(why), "openssl could not make the "
			 "certificates in %s/tls", t_dir);
	if (!why[0]) {
		tls_conf(conf, sizeof(conf), false);
		if (rmq_start_conf(&broker, conf, why, sizeof(why)) < 0)
			rmq_stop(&broker, true);
		else if (!tls_listening())
			snprintf(why, sizeof(why), "no TLS listener on port %d",
				 tls_port);
	}
	if (!why[0]) {
		snprintf(plain_url, sizeof(plain_url), "amqp://127.0.0.1:%d",
			 broker.amqp_port);
		snprintf(creds, sizeof(creds), "%s/creds", t_dir);
		snprintf(key, sizeof(key), "%s/sign.key", t_dir);
		for (unsigned i = 0; i < sizeof(sign_key); i++)
			sign_key[i] = (unsigned char)(i * 37 + 11);
		if (write_file(creds, "guest:guest\n", 12, 0600) ||
		    write_file(key, sign_key, sizeof(sign_key), 0600))
			snprintf(why, sizeof(why), "cannot write in %s", t_dir);
		else
			declare_all();
	}
#else
	(void)conf;
	snprintf(why, sizeof(why), "no <amqp.h> (librabbitmq-dev)");
#endif
	rc = cmocka_run_group_tests_name("bridge_sec", tests, NULL, NULL);
#if RMQ_HAVE_CLIENT
	reap_bridges();
#endif
	rmq_stop(&broker, rc != 0);
	t_env_teardown();
	return rc;
}
