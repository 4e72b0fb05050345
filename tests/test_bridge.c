// SPDX-License-Identifier: MIT
/*
 * test_bridge.c - shmbus bridge against a real RabbitMQ (tests/rmq.h):
 *  - messages published to a local queue arrive in a durable AMQP queue
 *    bound to the exchange, each payload intact, with its message id and
 *    correlation id; the password comes from --credentials (the URL's is
 *    wrong); a SIGTERM stops the bridge with its counters;
 *  - the bridge killed -9 mid-stream, again and again, and restarted:
 *    every message reaches the broker (lost 0), duplicates counted;
 *  - the broker killed -9 under a running bridge and restarted: the
 *    bridge gives back what was in flight, reconnects and goes on (lost
 *    0: what the broker confirmed was on its disk);
 *  - the same with the bridge idle: it reconnects and forwards what
 *    comes after;
 *  - --start-daemon false (as the systemd unit runs it) with no daemon:
 *    exit 1 with the reason, and no daemon started.
 */
#include "shmbus.h"
#include "helpers.h"
#include "rmq.h"

#define BUS	"bridgetest"
#define LQ	"out"
#define EX	"bridge.ex"
#define AQ	"bridge.q"
#define KEY	"k"
#define N1	1000
#define N2	5000
#define KILLS	6
#define N3	20000
#define N4	500

static struct rmq broker;
static char why[PATH_MAX + 64];	/* why there is no broker */
static char cli[PATH_MAX], creds[PATH_MAX + 16], url[128];

static void need_broker(void)
{
	if (why[0])
		SKIP_OR_FAIL("%.200s", why);
}

/* build/bin/shmbus, beside build/tests/ */
static void find_cli(void)
{
	ssize_t n = readlink("/proc/self/exe", cli, sizeof(cli) - 16);

	assert_true(n > 0);
	cli[n] = '\0';
	*strrchr(cli, '/') = '\0';
	*strrchr(cli, '/') = '\0';
	strcat(cli, "/bin/shmbus");
}

#if RMQ_HAVE_CLIENT
/* The bridge, its stderr in the test's directory (bridge.err). */
static pid_t spawn_bridge(void)
{
	char err[PATH_MAX];
	pid_t pid;

	snprintf(err, sizeof(err), "%s/bridge.err", t_dir);
	pid = fork();
	assert_true(pid >= 0);
	if (pid)
		return pid;
	if (!freopen(err, "a", stderr))
		_exit(127);
	execl(cli, cli, "--bus", BUS, "bridge", "--amqp", url, "--from", LQ,
	      "--exchange", EX, "--routing-key", KEY, "--credentials", creds,
	      "--prefetch", "64", (char *)NULL);
	_exit(127);
}

/* A durable exchange and queue, bound; a local queue with a short lease
 * so that what a killed bridge held comes back soon. */
static void declare_all(void)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_len = 32768,
		    .lease_ns = 1000000000);
	amqp_connection_state_t c = rmq_connect(&broker);
	struct shmbus *bus = t_open_bus(BUS);

	assert_true(shmbus__queue_declare(bus, LQ, &qo) >= 0);
	shmbus__close(bus);
	assert_non_null(c);
	amqp_exchange_declare(c, RMQ_CH, amqp_cstring_bytes(EX),
			      amqp_cstring_bytes("direct"), 0, 1, 0, 0,
			      amqp_empty_table);
	rmq_rpc_ok(c, "exchange.declare");
	amqp_queue_declare(c, RMQ_CH, amqp_cstring_bytes(AQ), 0, 1, 0, 0,
			   amqp_empty_table);
	rmq_rpc_ok(c, "queue.declare");
	amqp_queue_bind(c, RMQ_CH, amqp_cstring_bytes(AQ),
			amqp_cstring_bytes(EX), amqp_cstring_bytes(KEY),
			amqp_empty_table);
	rmq_rpc_ok(c, "queue.bind");
	rmq_close(c);
}

/* Messages [first, first + n): payload "m<i>", correlation id i + 1. */
static void publish_local(int first, int n)
{
	SHMBUS_OPTS(shmbus_producer_opts, po);
	struct shmbus *bus = t_open_bus(BUS);
	struct shmbus_producer *p = shmbus_producer__new(bus, LQ, &po);
	char body[32];

	assert_non_null(p);
	for (int i = first; i < first + n; i++) {
		SHMBUS_OPTS(shmbus_pub_opts, o, .corr_id = i + 1,
			    .timeout_ns = 5000000000ll);

		snprintf(body, sizeof(body), "m%d", i);
		assert_int_equal(shmbus_producer__publish(p, body,
					strlen(body), &o), 0);
	}
	shmbus_producer__free(p);
	shmbus__close(bus);
}

/* Index of a delivery from the bridge, checked: payload, ids. */
static int check_delivery(const amqp_envelope_t *e, int first, int n)
{
	const amqp_basic_properties_t *p = &e->message.properties;
	char body[32], corr[32];
	int i;

	assert_true(e->message.body.len < sizeof(body));
	memcpy(body, e->message.body.bytes, e->message.body.len);
	body[e->message.body.len] = '\0';
	assert_int_equal(sscanf(body, "m%d", &i), 1);
	assert_true(i >= first && i < first + n);
	assert_true(p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG);
	assert_true(p->_flags & AMQP_BASIC_DELIVERY_MODE_FLAG);
	assert_int_equal(p->delivery_mode, 2);
	assert_true(p->_flags & AMQP_BASIC_CORRELATION_ID_FLAG);
	snprintf(corr, sizeof(corr), "%d", i + 1);
	assert_int_equal(p->correlation_id.len, strlen(corr));
	assert_memory_equal(p->correlation_id.bytes, corr, strlen(corr));
	return i;
}

/* Consume from AQ into seen[] until @quiet_ms pass with nothing, or,
 * once each of [first, first + n) was seen, 1 s (the duplicates still
 * on their way); returns how many were received. */
static long consume(amqp_connection_state_t c, int *seen, int first, int n,
		    int quiet_ms)
{
	long got = 0;
	int missing = n;

	for (;;) {
		int ms = missing ? quiet_ms : 1000;
		struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
		amqp_envelope_t e;
		amqp_rpc_reply_t r;
		int i;

		amqp_maybe_release_buffers(c);
		r = amqp_consume_message(c, &e, &tv, 0);
		if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
		    r.library_error == AMQP_STATUS_TIMEOUT)
			break;
		assert_int_equal(r.reply_type, AMQP_RESPONSE_NORMAL);
		i = check_delivery(&e, first, n);
		if (!seen[i - first]++)
			missing--;
		got++;
		amqp_destroy_envelope(&e);
	}
	return got;
}

/* Messages ready in AQ now (a passive declare). */
static uint32_t ready_in_aq(void)
{
	amqp_connection_state_t c = rmq_connect(&broker);
	amqp_queue_declare_ok_t *ok;
	uint32_t n;

	assert_non_null(c);
	ok = amqp_queue_declare(c, RMQ_CH, amqp_cstring_bytes(AQ), 1, 0, 0, 0,
				amqp_empty_table);
	rmq_rpc_ok(c, "queue.declare passive");
	n = ok->message_count;
	rmq_close(c);
	return n;
}

static amqp_connection_state_t consumer(void)
{
	amqp_connection_state_t c = rmq_connect(&broker);

	assert_non_null(c);
	amqp_basic_consume(c, RMQ_CH, amqp_cstring_bytes(AQ), amqp_empty_bytes,
			   0, 1, 0, amqp_empty_table);
	rmq_rpc_ok(c, "basic.consume");
	return c;
}

/* Stop a bridge with SIGTERM: exit 0 and its counters on stderr;
 * returns its last line of them. */
static const char *stop_bridge(pid_t pid)
{
	char err[PATH_MAX];

	snprintf(err, sizeof(err), "%s/bridge.err", t_dir);
	return rmq_stop_bridge(pid, err, "bridge: forwarded");
}

static void test_forward(void **state)
{
	amqp_connection_state_t c;
	int *seen = calloc(N1, sizeof(int));
	pid_t pid;
	long got;

	need_broker();
	assert_non_null(seen);
	publish_local(0, N1);
	pid = spawn_bridge();
	c = consumer();
	got = consume(c, seen, 0, N1, 20000);
	assert_string_equal(stop_bridge(pid), "bridge: forwarded 1000 "
			    "confirmed 1000 nacked 0 reconnects 0\n");
	rmq_close(c);
	print_message("forward: sent %d received %ld\n", N1, got);
	/* nothing broke: each exactly once */
	for (int i = 0; i < N1; i++)
		assert_int_equal(seen[i], 1);
	assert_int_equal(got, N1);
	free(seen);
}

static void test_kill9(void **state)
{
	amqp_connection_state_t c;
	int *seen = calloc(N2, sizeof(int));
	long got, lost = 0, dup = 0;
	uint32_t ready[KILLS];
	pid_t pid;

	need_broker();
	assert_non_null(seen);
	publish_local(N1, N2);
	srandom(getpid());
	for (int k = 0; k < KILLS; k++) {
		pid = spawn_bridge();
		usleep(20000 + random() % 60000);
		kill(pid, SIGKILL);
		assert_int_equal(t_wait(pid, 10000), 128 + SIGKILL);
		ready[k] = ready_in_aq();
	}
	print_message("at the kills the broker had:");
	for (int k = 0; k < KILLS; k++)
		print_message(" %u", ready[k]);
	print_message("\n");
	/* the kills came mid-stream: not all was there at the first */
	assert_true(ready[0] < N2);
	/* the last one runs until the broker has all of them */
	pid = spawn_bridge();
	c = consumer();
	got = consume(c, seen, N1, N2, 20000);
	stop_bridge(pid);
	rmq_close(c);
	for (int i = 0; i < N2; i++) {
		lost += !seen[i];
		dup += seen[i] > 1 ? seen[i] - 1 : 0;
	}
	print_message("kill -9 x%d: sent %d received %ld lost %ld "
		      "duplicated %ld\n", KILLS, N2, got, lost, dup);
	assert_int_equal(lost, 0);
	free(seen);
}

static void test_broker_restart(void **state)
{
	const int first = N1 + N2;
	amqp_connection_state_t c;
	int *seen = calloc(N3, sizeof(int));
	long got, lost = 0, dup = 0;
	unsigned long reconnects = 0;
	const char *counters;
	uint32_t ready;
	pid_t pid;

	need_broker();
	assert_non_null(seen);
	pid = spawn_bridge();
	publish_local(first, N3);
	/* kill the broker once the bridge is connected and forwarding: a
	 * slow start (sanitizers, a loaded CI) must not let the kill come
	 * before the bridge's first connection, which is then no restart */
	for (int i = 0; (ready = ready_in_aq()) == 0 && i < 1500; i++)
		usleep(10000);
	assert_true(ready > 0);
	assert_int_equal(rmq_restart(&broker, SIGKILL), 0);
	c = consumer();
	got = consume(c, seen, first, N3, 20000);
	counters = stop_bridge(pid);
	rmq_close(c);
	for (int i = 0; i < N3; i++) {
		lost += !seen[i];
		dup += seen[i] > 1 ? seen[i] - 1 : 0;
	}
	print_message("broker kill -9 at %u: sent %d received %ld lost %ld "
		      "duplicated %ld; %s", ready, N3, got, lost, dup,
		      counters);
	assert_int_equal(lost, 0);
	assert_int_equal(sscanf(counters, "bridge: forwarded %*u confirmed "
				"%*u nacked %*u reconnects %lu", &reconnects),
			 1);
	assert_true(reconnects >= 1);
	free(seen);
}

static void test_idle_restart(void **state)
{
	const int first = N1 + N2 + N3;
	amqp_connection_state_t c;
	int seen[N4] = { 0 };
	unsigned long reconnects = 0;
	const char *counters;
	long got;
	pid_t pid;

	need_broker();
	pid = spawn_bridge();
	usleep(300000);
	assert_int_equal(rmq_restart(&broker, SIGKILL), 0);
	publish_local(first, N4);
	c = consumer();
	got = consume(c, seen, first, N4, 20000);
	counters = stop_bridge(pid);
	rmq_close(c);
	print_message("idle bridge, broker kill -9: sent %d received %ld; %s",
		      N4, got, counters);
	for (int i = 0; i < N4; i++)
		assert_true(seen[i] >= 1);
	assert_int_equal(sscanf(counters, "bridge: forwarded %*u confirmed "
				"%*u nacked %*u reconnects %lu", &reconnects),
			 1);
	assert_true(reconnects >= 1);
}
#endif

static void test_no_start(void **state)
{
	char sock[PATH_MAX], err[PATH_MAX], line[512], all[2048] = "";
	struct stat st;
	FILE *f;
	pid_t pid;
	int rc;

	(void)state;
	snprintf(sock, sizeof(sock), "%s/nobody.sock", t_dir);
	snprintf(err, sizeof(err), "%s/nostart.err", t_dir);
	pid = fork();
	assert_true(pid >= 0);
	if (!pid) {
		setenv("SHMBUS_SOCKET", sock, 1);
		if (!freopen(err, "w", stderr))
			_exit(127);
		execl(cli, cli, "--bus", BUS, "bridge", "--amqp",
		      "amqp://127.0.0.1:1", "--from", LQ, "--exchange", EX,
		      "--start-daemon", "false", (char *)NULL);
		_exit(127);
	}
	rc = t_wait(pid, 20000);
	f = fopen(err, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		if (strlen(all) + strlen(line) < sizeof(all))
			strcat(all, line);
	fclose(f);
	print_message("--start-daemon false, no daemon: exit %d:\n%s", rc,
		      all);
	assert_int_equal(rc, 1);
	assert_non_null(strstr(all, "shmbus-bridge: cannot open bus"));
	/* nothing listens there, nor was started to */
	usleep(300000);
	assert_int_not_equal(stat(sock, &st), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_start),
#if RMQ_HAVE_CLIENT
		cmocka_unit_test(test_forward),
		cmocka_unit_test(test_kill9),
		cmocka_unit_test(test_broker_restart),
		cmocka_unit_test(test_idle_restart),
#endif
	};
	int rc;
	FILE *f;

	t_env_setup();
	find_cli();
	if (rmq_start(&broker, why, sizeof(why)) < 0)
		rmq_stop(&broker, true);
#if RMQ_HAVE_CLIENT
	if (!why[0]) {
		/* a wrong password in the URL: the file's must be used */
		snprintf(url, sizeof(url), "amqp://guest:wrong@127.0.0.1:%d",
			 broker.amqp_port);
		snprintf(creds, sizeof(creds), "%s/creds", t_dir);
		f = fopen(creds, "w");
		/* only ours to read: the bridge refuses it otherwise */
		if (!f || fchmod(fileno(f), 0600) ||
		    fputs("guest:guest\n", f) < 0 || fclose(f))
			snprintf(why, sizeof(why), "cannot write %s", creds);
		else
			declare_all();
	}
#else
	(void)f;
	snprintf(why, sizeof(why), "no <amqp.h> (librabbitmq-dev)");
#endif
	rc = cmocka_run_group_tests_name("bridge", tests, NULL, NULL);
	rmq_stop(&broker, rc != 0);
	if (rc) {
		char cmd[PATH_MAX];

		snprintf(cmd, sizeof(cmd), "cat %s/bridge.err >&2", t_dir);
		if (system(cmd)) {}
	}
	t_env_teardown();
	return rc;
}
