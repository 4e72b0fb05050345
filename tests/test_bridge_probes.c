// SPDX-License-Identifier: MIT
/*
 * test_bridge_probes.c - the bridge's USDT probes, bridge_forward and
 * bridge_confirm, counted by the BPF programs of `shmbus monitor` in the
 * pinned map "bridge": a bridge with an out route and an in route moves
 * 500 messages each way through a private RabbitMQ (tests/rmq.h), and
 * the map's rows of its pid hold exactly the forwarded and confirmed
 * counts the bridge prints when it stops, with a confirm latency each;
 * `bpftool map dump` names the routes; `shmbus metrics` shows the
 * confirm latencies of the running bridge as histograms.
 *
 * Needs root and a kernel with BTF and uprobes; skips otherwise (fails
 * under CI=true).
 */
#include <bpf/bpf.h>

#include "shmbus.h"
#include "shmbus_bpf.h"
#include "helpers.h"
#include "rmq.h"

#define BUS	"bprobes"
#define LQ	"out"
#define LIN	"in"
#define EX	"bprobes.ex"
#define AQ	"bprobes.q"
#define IQ	"bprobes.in"
#define N	500

static struct rmq broker;
static char why[PATH_MAX + 64];
static char cli[PATH_MAX], pin_dir[128], err_path[PATH_MAX];

#if RMQ_HAVE_CLIENT
static int run(const char *fmt, ...)
{
	char cmd[PATH_MAX * 2];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

static void declare_all(void)
{
	amqp_connection_state_t c = rmq_connect(&broker);
	struct shmbus *bus = t_open_bus(BUS);

	assert_true(shmbus__queue_declare(bus, LQ, NULL) >= 0);
	assert_true(shmbus__queue_declare(bus, LIN, NULL) >= 0);
	shmbus__close(bus);
	assert_non_null(c);
	amqp_exchange_declare(c, RMQ_CH, amqp_cstring_bytes(EX),
			      amqp_cstring_bytes("fanout"), 0, 1, 0, 0,
			      amqp_empty_table);
	rmq_rpc_ok(c, "exchange.declare");
	amqp_queue_declare(c, RMQ_CH, amqp_cstring_bytes(AQ), 0, 1, 0, 0,
			   amqp_empty_table);
	rmq_rpc_ok(c, "queue.declare");
	amqp_queue_bind(c, RMQ_CH, amqp_cstring_bytes(AQ),
			amqp_cstring_bytes(EX), amqp_empty_bytes,
			amqp_empty_table);
	rmq_rpc_ok(c, "queue.bind");
	amqp_queue_declare(c, RMQ_CH, amqp_cstring_bytes(IQ), 0, 1, 0, 0,
			   amqp_empty_table);
	rmq_rpc_ok(c, "queue.declare");
	/* N messages for the in route */
	for (int i = 0; i < N; i++)
		assert_int_equal(amqp_basic_publish(c, RMQ_CH, amqp_empty_bytes,
						    amqp_cstring_bytes(IQ), 0,
						    0, NULL,
						    amqp_cstring_bytes("in")),
				 0);
	rmq_close(c);
}

static uint32_t ready(const char *q)
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

static uint64_t depth(const char *q)
{
	struct shmbus *bus = t_open_bus(BUS);
	struct shmbus_queue_info qi;

	assert_int_equal(shmbus__queue_info(bus, q, &qi), 0);
	shmbus__close(bus);
	return qi.depth;
}

/* From the bridge's stop line "bridge: route NAME (DIR): forwarded F
 * confirmed C ...": F and C of route @name. */
static void route_counts(const char *name, unsigned long long *fwd,
			 unsigned long long *conf)
{
	char line[512], want[128];
	FILE *f = fopen(err_path, "r");

	assert_non_null(f);
	snprintf(want, sizeof(want), "bridge: route %s (", name);
	*fwd = *conf = ~0ULL;
	while (fgets(line, sizeof(line), f)) {
		const char *p = strstr(line, "): forwarded ");

		if (strncmp(line, want, strlen(want)) || !p)
			continue;
		assert_int_equal(sscanf(p, "): forwarded %llu confirmed %llu",
					fwd, conf), 2);
	}
	fclose(f);
	assert_true(*fwd != ~0ULL);
}

static void test_probe_counts(void **state)
{
	char conf[PATH_MAX], out[65536];
	unsigned long long fwd[2], cnf[2];
	struct shmbus_bridge_key k, next;
	struct shmbus_bridge_stats v;
	bool seen[2] = { false, false };
	int64_t end;
	FILE *f;
	pid_t pid;
	int fd;

	(void)state;
	if (why[0])
		SKIP_OR_FAIL("%.200s", why);
	snprintf(pin_dir, sizeof(pin_dir), "/sys/fs/bpf/shmbus-bprobes-%d",
		 (int)getpid());
	/* --pid: this build's files only, not another run's */
	if (run("%s monitor start --pin-dir %s --pid %d", cli, pin_dir,
		(int)getpid()))
		SKIP_OR_FAIL("shmbus monitor start failed (root, BTF?)");
	declare_all();
	snprintf(conf, sizeof(conf), "%s/bridge.conf", t_dir);
	f = fopen(conf, "w");
	assert_non_null(f);
	fprintf(f, "amqp = amqp://guest:guest@127.0.0.1:%d\n"
		"reply-queue = none\n\n"
		"[out o1]\nfrom = %s\nexchange = %s\n\n"
		"[in i1]\nqueue = %s\nto = %s\n", broker.amqp_port, LQ, EX, IQ,
		LIN);
	assert_int_equal(fclose(f), 0);
	snprintf(err_path, sizeof(err_path), "%s/bridge.err", t_dir);
	pid = fork();
	assert_true(pid >= 0);
	if (!pid) {
		if (!freopen(err_path, "w", stderr))
			_exit(127);
		execl(cli, cli, "--bus", BUS, "bridge", "--config", conf,
		      (char *)NULL);
		_exit(127);
	}
	{
		struct shmbus *bus = t_open_bus(BUS);
		struct shmbus_producer *p = shmbus_producer__new(bus, LQ, NULL);

		assert_non_null(p);
		for (int i = 0; i < N; i++)
			assert_int_equal(shmbus_producer__publish(p, "out", 3,
								  NULL), 0);
		shmbus_producer__free(p);
		shmbus__close(bus);
	}
	end = t_now_ns() + 20000000000ll;
	while ((ready(AQ) < N || depth(LIN) < N) && t_now_ns() < end)
		usleep(50000);
	assert_int_equal(ready(AQ), N);
	assert_int_equal(depth(LIN), N);
	/* the running bridge's confirm latencies in shmbus metrics */
	{
		char cmd[PATH_MAX * 2];
		FILE *p;
		size_t n;

		snprintf(cmd, sizeof(cmd), "%s --bus %s metrics --pin-dir %s",
			 cli, BUS, pin_dir);
		p = popen(cmd, "r");
		assert_non_null(p);
		n = fread(out, 1, sizeof(out) - 1, p);
		out[n] = '\0';
		pclose(p);
		assert_non_null(strstr(out, "shmbus_bridge_confirm_seconds_count"
				       "{bus=\"" BUS "\",route=\"o1\",dir=\"out\""));
		assert_non_null(strstr(out, "shmbus_bridge_confirm_seconds_count"
				       "{bus=\"" BUS "\",route=\"i1\",dir=\"in\""));
	}
	kill(pid, SIGTERM);
	assert_int_equal(t_wait(pid, 20000), 0);
	route_counts("o1", &fwd[0], &cnf[0]);
	route_counts("i1", &fwd[1], &cnf[1]);

	/* the map's rows of this bridge */
	snprintf(conf, sizeof(conf), "%s/bridge", pin_dir);
	fd = bpf_obj_get(conf);
	assert_true(fd >= 0);
	for (void *prev = NULL; !bpf_map_get_next_key(fd, prev, &next);
	     prev = &k) {
		k = next;
		if (k.pid != (unsigned)pid ||
		    bpf_map_lookup_elem(fd, &k, &v))
			continue;
		assert_true(k.dir <= 1);
		assert_string_equal(k.route, k.dir ? "i1" : "o1");
		print_message("probes of %s (%s): forwarded %llu confirmed %llu "
			      "in %llu confirms, mean latency %.1f us; the "
			      "bridge says forwarded %llu confirmed %llu\n",
			      k.route, k.dir ? "in" : "out", v.forwarded,
			      v.confirmed, v.confirms, v.confirms ?
			      v.latency_ns / 1e3 / v.confirms : 0.0,
			      fwd[k.dir], cnf[k.dir]);
		assert_int_equal(v.forwarded, fwd[k.dir]);
		assert_int_equal(v.confirmed, cnf[k.dir]);
		assert_int_equal(v.confirmed, N);
		assert_true(v.confirms >= 1 && v.latency_ns > 0);
		seen[k.dir] = true;
	}
	close(fd);
	assert_true(seen[0] && seen[1]);
	/* bpftool shows the rows by their fields (BTF) */
	{
		char cmd[PATH_MAX];
		FILE *p;
		size_t n;

		snprintf(cmd, sizeof(cmd), "bpftool -j map dump pinned %s/bridge "
			 "| tr -d ' '", pin_dir);
		p = popen(cmd, "r");
		assert_non_null(p);
		n = fread(out, 1, sizeof(out) - 1, p);
		out[n] = '\0';
		pclose(p);
		assert_non_null(strstr(out, "\"route\":\"o1\""));
		assert_non_null(strstr(out, "\"route\":\"i1\""));
	}
	assert_int_equal(run("%s monitor stop --pin-dir %s >/dev/null", cli,
			     pin_dir), 0);
	pin_dir[0] = '\0';
}
#endif

int main(void)
{
	const struct CMUnitTest tests[] = {
#if RMQ_HAVE_CLIENT
		cmocka_unit_test(test_probe_counts),
#endif
	};
	int rc;

	t_env_setup();
	if (geteuid() != 0)
		snprintf(why, sizeof(why), "needs root (BPF)");
	else if (rmq_start(&broker, why, sizeof(why)) < 0)
		rmq_stop(&broker, true);
#if RMQ_HAVE_CLIENT
	{
		ssize_t n = readlink("/proc/self/exe", cli, sizeof(cli) - 16);

		if (n > 0) {
			cli[n] = '\0';
			*strrchr(cli, '/') = '\0';
			*strrchr(cli, '/') = '\0';
			strcat(cli, "/bin/shmbus");
		}
	}
#else
	snprintf(why, sizeof(why), "no <amqp.h> (librabbitmq-dev)");
#endif
	rc = cmocka_run_group_tests_name("bridge_probes", tests, NULL, NULL);
	if (pin_dir[0])	/* a failed test: detach, unpin */
		run("%s monitor stop --pin-dir %s >/dev/null 2>&1", cli,
		    pin_dir);
	rmq_stop(&broker, rc != 0);
	if (rc) {
		char cmd[PATH_MAX + 32];

		snprintf(cmd, sizeof(cmd), "cat %s >&2", err_path);
		if (system(cmd)) {}
	}
	t_env_teardown();
	return rc;
}
