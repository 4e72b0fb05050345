// SPDX-License-Identifier: MIT
/*
 * test_bpf.c - the BPF side end to end: `shmbus monitor start` loads the
 * CO-RE programs and attaches them to the USDT probes of libshmbus.so and
 * shmbusd in every process; known traffic (10,000 published, 9,000
 * acked, 1,000 dead-lettered) runs in other processes; the pinned map,
 * read through libbpf and through `bpftool -j map dump pinned`, holds
 * exactly those counts, which equal the arena's own (shmbus stat); stop
 * removes everything.
 *
 * Needs root, bpffs, BTF and bpftool; skips otherwise, fails under
 * CI=true.
 */
#include <bpf/bpf.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "shmbus.h"
#include "shmbus_bpf.h"
#include "helpers.h"

#define BUS	"bpf"
#define N	10000

static char cli[PATH_MAX], pin_dir[128];
static char bpftool_out[1 << 16], metrics_out[1 << 18];

/*
 * Check @text is valid Prometheus text exposition: comments are HELP or
 * TYPE, every sample's family was TYPEd first, names and labels are well
 * formed, values are numbers; histogram buckets never decrease and the
 * +Inf bucket equals _count. Returns the value of @want (a whole sample
 * name with labels), or -1.
 */
static double check_prometheus(char *text, const char *want)
{
	char typed[16][64];
	int ntyped = 0;
	double found = -1, last_bucket = -1;
	char *save = NULL, *line;

	for (line = strtok_r(text, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		char name[128], rest[512], fam[128];
		double v;
		int known = 0;

		if (line[0] == '#') {
			char kw[8], n[64], ty[16];

			assert_true(sscanf(line, "# %7s %63s", kw, n) == 2);
			assert_true(!strcmp(kw, "HELP") || !strcmp(kw, "TYPE"));
			if (!strcmp(kw, "TYPE")) {
				assert_int_equal(sscanf(line, "# TYPE %*s %15s", ty), 1);
				assert_true(!strcmp(ty, "counter") ||
					    !strcmp(ty, "gauge") ||
					    !strcmp(ty, "histogram"));
				assert_true(ntyped < 16);
				snprintf(typed[ntyped++], 64, "%s", n);
			}
			continue;
		}
		assert_int_equal(sscanf(line, "%127[a-zA-Z0-9_:]%511[^\n]", name,
					rest), 2);
		/* labels, then one space and a number */
		{
			char *sp = strrchr(rest, ' '), *end;

			assert_non_null(sp);
			v = strtod(sp + 1, &end);
			assert_true(*end == '\0');
			*sp = '\0';
			assert_true(rest[0] == '{' && rest[strlen(rest) - 1] == '}');
		}
		snprintf(fam, sizeof(fam), "%s", name);
		for (const char *suf[] = { "_bucket", "_sum", "_count" }, **s = suf;
		     s < suf + 3; s++) {
			size_t l = strlen(fam), k = strlen(*s);

			if (l > k && !strcmp(fam + l - k, *s) &&
			    !strncmp(fam, "shmbus_latency_seconds", 22))
				fam[l - k] = '\0';
		}
		for (int i = 0; i < ntyped; i++)
			known |= !strcmp(typed[i], fam);
		assert_true(known);
		if (strstr(name, "_bucket")) {
			if (strstr(rest, "le=\"2e-09\""))
				last_bucket = -1;	/* a new series */
			assert_true(v >= last_bucket);
			last_bucket = v;
		}
		if (strstr(name, "_count") && strstr(name, "latency"))
			assert_true(v == last_bucket);	/* == +Inf */
		{
			char whole[640];

			snprintf(whole, sizeof(whole), "%s%s", name, rest);
			if (!strcmp(whole, want))
				found = v;
		}
	}
	return found;
}

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
	char cmd[PATH_MAX * 2];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void test_monitor_counts(void **state)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_len = 16384,
		    .dead_letter_queue = "bpf.dlq");
	struct shmbus_queue_info qi;
	struct shmbus_qstats v;
	struct shmbus_hist h[2];
	int hfd, hlookup = 0;
	struct shmbus *bus;
	char json[PATH_MAX];
	pid_t prod, cons;
	__u32 key;
	FILE *f;
	int fd;

	(void)state;
	if (geteuid() != 0)
		SKIP_OR_FAIL("needs root to load BPF programs");
	if (access("/sys/kernel/btf/vmlinux", R_OK))
		SKIP_OR_FAIL("the kernel has no BTF");
	if (run("command -v bpftool >/dev/null"))
		SKIP_OR_FAIL("no bpftool");
	/* the CLI beside the tests' build directory */
	{
		ssize_t n = readlink("/proc/self/exe", cli, sizeof(cli) - 16);

		assert_true(n > 0);
		cli[n] = '\0';
		*strrchr(cli, '/') = '\0';		/* BUILD/tests */
		*strrchr(cli, '/') = '\0';		/* BUILD */
		strcat(cli, "/shmbus");
	}
	snprintf(pin_dir, sizeof(pin_dir), "/sys/fs/bpf/shmbus-test-%d",
		 (int)getpid());
	bus = t_open_bus(BUS);	/* the daemon runs before the probes */
	assert_int_equal(shmbus__queue_declare(bus, "bpf.dlq", NULL), 1);
	assert_int_equal(shmbus__queue_declare(bus, "bpf.q", &qo), 1);
	assert_int_equal(run("%s monitor start --pin-dir %s", cli, pin_dir), 0);

	if (!(prod = fork())) {
		struct shmbus *b = t_open_bus(BUS);
		struct shmbus_producer *p = shmbus_producer__new(b, "bpf.q", NULL);
		SHMBUS_OPTS(shmbus_pub_opts, po, .timeout_ns = -1);

		CHILD_CHECK(p, "producer");
		for (int i = 0; i < N; i++)
			CHILD_CHECK(!shmbus_producer__publish(p, &i, sizeof(i),
							      &po), "publish");
		shmbus_producer__free(p);
		_exit(0);
	}
	if (!(cons = fork())) {
		struct shmbus *b = t_open_bus(BUS);
		struct shmbus_consumer *c = shmbus_consumer__new(b, "bpf.q", NULL);

		CHILD_CHECK(c, "consumer");
		for (int i = 0; i < N; i++) {
			struct shmbus_msg m;

			CHILD_CHECK(!shmbus_consumer__receive_view(c, &m,
						10000000000LL), "receive");
			if (*(const int *)m.data % 10 == 9)
				CHILD_CHECK(!shmbus_consumer__reject(c, &m),
					    "reject");
			else
				CHILD_CHECK(!shmbus_consumer__ack(c, &m), "ack");
		}
		shmbus_consumer__free(c);
		_exit(0);
	}
	assert_int_equal(t_wait(prod, 60000), 0);
	assert_int_equal(t_wait(cons, 60000), 0);
	assert_int_equal(shmbus__queue_info(bus, "bpf.q", &qi), 0);

	/* through libbpf, and through bpftool as an operator would; then
	 * stop before any check can fail and leave the probes attached */
	{
		char path[256];
		int lookup;

		snprintf(path, sizeof(path), "%s/qstats", pin_dir);
		fd = bpf_obj_get(path);
		key = qi.id;
		lookup = fd >= 0 ? bpf_map_lookup_elem(fd, &key, &v) : -1;
		if (fd >= 0)
			close(fd);
		snprintf(path, sizeof(path), "%s/hist", pin_dir);
		hfd = bpf_obj_get(path);
		for (unsigned k = 0; hfd >= 0 && k < 2; k++) {
			struct shmbus_hist_key hk = { .qid = qi.id, .kind = k };

			hlookup |= bpf_map_lookup_elem(hfd, &hk, &h[k]);
		}
		if (hfd >= 0)
			close(hfd);
		snprintf(json, sizeof(json),
			 "bpftool -j map dump pinned %s/qstats", pin_dir);
		f = popen(json, "r");
		assert_non_null(f);
		bpftool_out[fread(bpftool_out, 1, sizeof(bpftool_out) - 1, f)] = 0;
		assert_int_equal(pclose(f), 0);
		snprintf(json, sizeof(json), "%s metrics --pin-dir %s", cli,
			 pin_dir);
		f = popen(json, "r");
		assert_non_null(f);
		metrics_out[fread(metrics_out, 1, sizeof(metrics_out) - 1, f)] = 0;
		assert_int_equal(pclose(f), 0);
		assert_int_equal(run("%s monitor stop --pin-dir %s >/dev/null",
				     cli, pin_dir), 0);
		assert_true(fd >= 0);
		assert_int_equal(lookup, 0);
		assert_true(hfd >= 0);
		assert_int_equal(hlookup, 0);
	}
	/* one latency per event: publish -> first delivery for each
	 * message, delivery -> ack for each ack; the buckets add up */
	assert_int_equal(h[SHMBUS_HIST_PUB_DELIVER].count, N);
	assert_int_equal(h[SHMBUS_HIST_DELIVER_ACK].count, N - N / 10);
	for (unsigned k = 0; k < 2; k++) {
		unsigned long long sum = 0;

		for (unsigned b = 0; b < SHMBUS_HIST_BUCKETS; b++)
			sum += h[k].buckets[b];
		assert_int_equal(sum, h[k].count);
	}
	print_message("bpf: published %llu delivered %llu acked %llu "
		      "dead-lettered %llu; arena: %llu %llu %llu %llu\n",
		      v.published, v.delivered, v.acked, v.dead_lettered,
		      (unsigned long long)qi.stat[SHMBUS_STAT_PUBLISHED],
		      (unsigned long long)qi.stat[SHMBUS_STAT_DELIVERED],
		      (unsigned long long)qi.stat[SHMBUS_STAT_ACKED],
		      (unsigned long long)qi.stat[SHMBUS_STAT_DEADLETTERED]);
	assert_int_equal(v.published, N);
	assert_int_equal(v.delivered, N);
	assert_int_equal(v.acked, N - N / 10);
	assert_int_equal(v.dead_lettered, N / 10);
	assert_int_equal(v.published, qi.stat[SHMBUS_STAT_PUBLISHED]);
	assert_int_equal(v.delivered, qi.stat[SHMBUS_STAT_DELIVERED]);
	assert_int_equal(v.acked, qi.stat[SHMBUS_STAT_ACKED]);
	assert_int_equal(v.dead_lettered, qi.stat[SHMBUS_STAT_DEADLETTERED]);

	{
		char want[96];

		snprintf(want, sizeof(want), "\"published\":%d", N);
		assert_non_null(strstr(bpftool_out, want));
		snprintf(want, sizeof(want), "\"dead_lettered\":%d", N / 10);
		assert_non_null(strstr(bpftool_out, want));
	}
	{
		struct stat st;

		assert_int_equal(stat(pin_dir, &st), -1);	/* all gone */
	}
	/* shmbus metrics: valid Prometheus text, the same numbers */
	{
		char want[96];

		snprintf(want, sizeof(want), "shmbus_published_total{qid=\"%u\"}",
			 qi.id);
		assert_true(check_prometheus(metrics_out, want) == N);
	}
	shmbus__close(bus);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_monitor_counts),
	};

	return T_RUN_WITH_DAEMON("bpf", tests);
}
