// SPDX-License-Identifier: MIT
/*
 * test_bpf.c - the BPF side end to end: `shmbus monitor start` loads the
 * CO-RE programs and attaches them to the USDT probes of libshmbus.so in
 * every process (shmbusd's included: it links the library); known traffic (10,000 published, 9,000
 * acked, 1,000 dead-lettered) runs in other processes; the pinned map,
 * read through libbpf and through `bpftool -j map dump pinned`, holds
 * exactly those counts, which equal the arena's own (shmbus stat); the
 * histograms hold one latency per event, wake-ups included; `shmbus
 * metrics`, on stdout and over HTTP, is valid Prometheus text with the
 * same numbers; `shmbus top` draws them; stop removes everything.
 * The daemon's journal syncs (a durable queue, a daemon with a state
 * directory): one latency each in the histogram, exactly the count and
 * total time the bus's superblock holds, in metrics too.
 *
 * Needs root, bpffs, BTF and bpftool; skips otherwise, fails under
 * CI=true. test_top_tty (no root needed) drives `shmbus top` through a
 * pseudo-terminal and quits it with q.
 */
#include <bpf/bpf.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pty.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "shmbus.h"
#include "shmbus_bpf.h"
#include "helpers.h"

#define BUS	"bpf"
#define N	10000

static char cli[PATH_MAX], pin_dir[128];
static char bpftool_out[1 << 16], metrics_out[1 << 18], http_out[1 << 18];
static char top_out[1 << 16], stat_out[1 << 16];

/*
 * Check @text is valid Prometheus text exposition: HELP and TYPE comments
 * are well formed, every sample's family was TYPEd first, names and labels are well
 * formed, values are numbers; histogram buckets never decrease and the
 * +Inf bucket equals _count, in every histogram. Returns the value of @want (a whole sample
 * name with labels), or -1.
 */
static double check_prometheus(char *text, const char *want)
{
	char typed[40][64], hists[8][64], series[640] = "";
	int ntyped = 0, nhists = 0;
	double found = -1, last_bucket = -1;
	char *save = NULL, *line;

	for (line = strtok_r(text, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		char name[128], rest[512], fam[128];
		double v;
		int known = 0;

		if (line[0] == '#') {
			char kw[8], n[64], ty[16];

			if (sscanf(line, "# %7s %63s", kw, n) != 2 ||
			    (strcmp(kw, "HELP") && strcmp(kw, "TYPE")))
				continue;	/* another comment */
			if (!strcmp(kw, "TYPE")) {
				assert_int_equal(sscanf(line, "# TYPE %*s %15s", ty), 1);
				assert_true(!strcmp(ty, "counter") ||
					    !strcmp(ty, "gauge") ||
					    !strcmp(ty, "histogram"));
				assert_true(ntyped < 40);
				snprintf(typed[ntyped++], 64, "%s", n);
				if (!strcmp(ty, "histogram")) {
					assert_true(nhists < 8);
					snprintf(hists[nhists++], 64, "%s", n);
				}
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

			if (l <= k || strcmp(fam + l - k, *s))
				continue;
			for (int i = 0; i < nhists; i++)
				if (!strncmp(fam, hists[i], l - k) &&
				    !hists[i][l - k])
					fam[l - k] = '\0';
		}
		for (int i = 0; i < ntyped; i++)
			known |= !strcmp(typed[i], fam);
		assert_true(known);
		if (strstr(name, "_bucket")) {
			/* a series: the name and the labels but le */
			char now[640], *le;

			snprintf(now, sizeof(now), "%s%s", name, rest);
			le = strstr(now, "le=\"");
			assert_non_null(le);
			*le = '\0';
			if (strcmp(now, series))
				last_bucket = -1;	/* a new series */
			snprintf(series, sizeof(series), "%s", now);
			assert_true(v >= last_bucket);
			last_bucket = v;
		}
		if (strstr(name, "_count") && strcmp(fam, name))
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

static int64_t t_now_ms_(void)
{
	return t_now_ns() / 1000000;
}

/* GET @path from 127.0.0.1:@port; the whole response into @buf. */
static int http_get(int port, const char *path, char *buf, size_t len)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons(port) };
	char req[256];
	size_t got = 0;
	ssize_t n;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		close(fd);
		return -errno;
	}
	n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: x\r\n\r\n",
		     path);
	assert_int_equal(write(fd, req, n), n);
	while (got < len - 1 && (n = read(fd, buf + got, len - 1 - got)) > 0)
		got += n;
	buf[got] = '\0';
	close(fd);
	return 0;
}

/* `shmbus metrics --listen 127.0.0.1:0` in the background: its pid, and
 * the port it printed. */
static pid_t metrics_server(int *port)
{
	int pfd[2];
	char line[256];
	ssize_t n, got = 0;
	pid_t pid;

	assert_int_equal(pipe(pfd), 0);
	if (!(pid = fork())) {
		dup2(pfd[1], 1);
		close(pfd[0]);
		execl(cli, cli, "--bus", BUS, "metrics", "--listen",
		      "127.0.0.1:0", "--pin-dir", pin_dir, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	while (got < (ssize_t)sizeof(line) - 1 && !strchr(line, '\n')) {
		n = read(pfd[0], line + got, sizeof(line) - 1 - got);
		if (n <= 0)
			break;
		got += n;
		line[got] = '\0';
	}
	close(pfd[0]);
	assert_int_equal(sscanf(line, "serving http://127.0.0.1:%d/metrics",
				port), 1);
	return pid;
}

static void test_monitor_counts(void **state)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_len = 16384,
		    .dead_letter_queue = "bpf.dlq");
	struct shmbus_queue_info qi, wqi, dqi;
	struct shmbus_qstats v, wv, dv;
	struct shmbus_hist h[2], wh;
	struct shmbus_qkey key;
	int hfd, hlookup = 0, port, lookup = 0;
	struct shmbus *bus;
	char json[PATH_MAX], want[160];
	pid_t prod, cons, srv;
	FILE *f;
	int fd;

	(void)state;
	t_need_bpf();
	snprintf(pin_dir, sizeof(pin_dir), "/sys/fs/bpf/shmbus-test-%d",
		 (int)getpid());
	bus = t_open_bus(BUS);	/* the daemon runs before the probes */
	assert_int_equal(shmbus__queue_declare(bus, "bpf.dlq", NULL), 1);
	assert_int_equal(shmbus__queue_declare(bus, "bpf.q", &qo), 1);
	assert_int_equal(shmbus__queue_declare(bus, "bpf.wake", NULL), 1);
	assert_int_equal(shmbus__queue_declare(bus, "bpf.depth", NULL), 1);
	/* --pid: our processes' files only (the build's), not another
	 * run's on this machine */
	assert_int_equal(t_run("%s monitor start --pin-dir %s --pid %d "
			     ">/dev/null", cli, pin_dir, (int)getpid()), 0);

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

	/* wake-ups: a consumer asleep on its eventfd, woken W times, one
	 * message each, the publisher pausing until it is asleep again */
#define W 100
	if (!(cons = fork())) {
		struct shmbus *b = t_open_bus(BUS);
		struct shmbus_consumer *c = shmbus_consumer__new(b, "bpf.wake",
								 NULL);

		CHILD_CHECK(c, "consumer");
		for (int i = 0; i < W; i++) {
			struct shmbus_msg m;

			CHILD_CHECK(!shmbus_consumer__receive_view(c, &m,
						10000000000LL), "receive");
			CHILD_CHECK(!shmbus_consumer__ack(c, &m), "ack");
		}
		shmbus_consumer__free(c);
		_exit(0);
	}
	{
		struct shmbus_producer *p = shmbus_producer__new(bus, "bpf.wake",
								 NULL);
		struct shmbus_queue_info w;

		assert_non_null(p);
		for (int i = 0; i < W; i++) {
			/* asleep: its sleeps counter is one ahead of the
			 * wake-ups so far */
			for (int t = 0; t < 5000; t++) {
				assert_int_equal(shmbus__queue_info(bus,
						"bpf.wake", &w), 0);
				if (w.stat[SHMBUS_STAT_SLEEPS] > (uint64_t)i)
					break;
				usleep(1000);
			}
			usleep(2000);	/* into the kernel, not just armed */
			assert_int_equal(shmbus_producer__publish(p, &i,
							sizeof(i), NULL), 0);
		}
		shmbus_producer__free(p);
	}
	assert_int_equal(t_wait(cons, 60000), 0);

	/* depth: 5 waiting, nobody receiving */
	{
		struct shmbus_producer *p = shmbus_producer__new(bus,
							"bpf.depth", NULL);

		assert_non_null(p);
		for (int i = 0; i < 5; i++)
			assert_int_equal(shmbus_producer__publish(p, &i,
							sizeof(i), NULL), 0);
		shmbus_producer__free(p);
	}
	assert_int_equal(shmbus__queue_info(bus, "bpf.q", &qi), 0);
	assert_int_equal(shmbus__queue_info(bus, "bpf.wake", &wqi), 0);
	assert_int_equal(shmbus__queue_info(bus, "bpf.depth", &dqi), 0);

	/* through libbpf, bpftool, shmbus metrics (stdout and HTTP), top
	 * and stat, as an operator would; then stop before any check can
	 * fail and leave the probes attached */
	{
		char path[256];
		struct shmbus_hist_key hk = { .bus = shmbus__id(bus),
					      .latency = SHMBUS_LAT_WAKEUP };

		snprintf(path, sizeof(path), "%s/qstats", pin_dir);
		fd = bpf_obj_get(path);
		key.bus = shmbus__id(bus);
		key.qid = qi.id;
		lookup |= fd >= 0 ? bpf_map_lookup_elem(fd, &key, &v) : -1;
		key.qid = wqi.id;
		lookup |= fd >= 0 ? bpf_map_lookup_elem(fd, &key, &wv) : -1;
		key.qid = dqi.id;
		lookup |= fd >= 0 ? bpf_map_lookup_elem(fd, &key, &dv) : -1;
		if (fd >= 0)
			close(fd);
		snprintf(path, sizeof(path), "%s/hist", pin_dir);
		hfd = bpf_obj_get(path);
		for (unsigned k = 0; hfd >= 0 && k < 2; k++) {
			struct shmbus_hist_key hq = { .bus = shmbus__id(bus),
						      .qid = qi.id, .latency = k };

			hlookup |= bpf_map_lookup_elem(hfd, &hq, &h[k]);
		}
		hk.qid = wqi.id;
		if (hfd >= 0)
			hlookup |= bpf_map_lookup_elem(hfd, &hk, &wh);
		if (hfd >= 0)
			close(hfd);
		snprintf(json, sizeof(json),
			 "bpftool -j map dump pinned %s/qstats", pin_dir);
		f = popen(json, "r");
		assert_non_null(f);
		bpftool_out[fread(bpftool_out, 1, sizeof(bpftool_out) - 1, f)] = 0;
		assert_int_equal(pclose(f), 0);
		assert_int_equal(t_capture(metrics_out, sizeof(metrics_out),
					 "%s --bus %s metrics --pin-dir %s", cli,
					 BUS, pin_dir), 0);
		srv = metrics_server(&port);
		assert_int_equal(http_get(port, "/metrics", http_out,
					  sizeof(http_out)), 0);
		assert_int_equal(t_capture(top_out, sizeof(top_out),
					 "%s --bus %s top -n 2 --interval 0.2 "
					 "--pin-dir %s", cli, BUS, pin_dir), 0);
		assert_int_equal(t_capture(stat_out, sizeof(stat_out),
					 "%s --bus %s stat --format json", cli,
					 BUS), 0);
		assert_int_equal(t_run("%s monitor stop --pin-dir %s >/dev/null",
				     cli, pin_dir), 0);
		assert_true(fd >= 0);
		assert_int_equal(lookup, 0);
		assert_true(hfd >= 0);
		assert_int_equal(hlookup, 0);
	}
	/* one latency per event: publish -> first delivery for each
	 * message, delivery -> ack for each ack; the buckets add up */
	assert_int_equal(h[SHMBUS_LAT_PUB_DELIVER].count, N);
	assert_int_equal(h[SHMBUS_LAT_DELIVER_ACK].count, N - N / 10);
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

	/* wake-ups: every one counted, in the arena and in BPF, and one
	 * eventfd-write -> running latency each */
	print_message("wake-ups: bpf %llu, arena %llu, histogram %llu "
		      "(sum %.1f us each)\n", wv.wakeups,
		      (unsigned long long)wqi.stat[SHMBUS_STAT_WAKEUPS],
		      wh.count, wh.count ? wh.sum_ns / 1e3 / wh.count : 0.0);
	assert_int_equal(wv.wakeups, W);
	assert_int_equal(wv.wakeups, wqi.stat[SHMBUS_STAT_WAKEUPS]);
	assert_int_equal(wh.count, W);

	/* depth as the last publish saw it, as shmbus stat shows it */
	assert_int_equal(dqi.depth, 5);
	assert_int_equal(dv.depth, 5);
	snprintf(want, sizeof(want), "\"name\":\"bpf.depth\",\"kind\":\"queue\","
		 "\"id\":%u,\"depth\":5,", dqi.id);
	assert_non_null(strstr(stat_out, want));
	snprintf(want, sizeof(want), "\"bus_id\":%u,", shmbus__id(bus));
	assert_non_null(strstr(stat_out, want));

	snprintf(want, sizeof(want), "\"published\":%d", N);
	assert_non_null(strstr(bpftool_out, want));
	snprintf(want, sizeof(want), "\"dead_lettered\":%d", N / 10);
	assert_non_null(strstr(bpftool_out, want));
	snprintf(want, sizeof(want), "\"bus\":%u,\"qid\":%u", shmbus__id(bus),
		 qi.id);
	assert_non_null(strstr(bpftool_out, want));
	{
		struct stat st;

		assert_int_equal(stat(pin_dir, &st), -1);	/* all gone */
	}

	/* shmbus metrics: valid Prometheus text, the same numbers, on
	 * stdout and over HTTP */
	{
		char *body = strstr(http_out, "\r\n\r\n");

		assert_non_null(strstr(http_out, "HTTP/1.0 200 OK\r\n"));
		assert_non_null(strstr(http_out, "Content-Type: text/plain; "
				       "version=0.0.4"));
		assert_non_null(body);
		/* each sample, with the value it must have */
		static const struct {
			const char *sample;
			double value;
		} want_samples[] = {
			{ "shmbus_published_total{bus=\"" BUS "\","
			  "queue=\"bpf.q\"}", N },
			{ "shmbus_dead_lettered_total{bus=\"" BUS "\","
			  "queue=\"bpf.q\"}", N / 10 },
			{ "shmbus_depth{bus=\"" BUS "\",queue=\"bpf.depth\"}", 5 },
			{ "shmbus_latency_seconds_count{bus=\"" BUS "\","
			  "queue=\"bpf.q\",latency=\"publish_deliver\"}", N },
			{ "shmbus_latency_seconds_count{bus=\"" BUS "\","
			  "queue=\"bpf.wake\",latency=\"wakeup\"}", W },
		};
		static char copy[sizeof(metrics_out)];

		for (int k = 0; k < 2; k++) {
			const char *text = k ? body + 4 : metrics_out;

			for (size_t i = 0; i < sizeof(want_samples) /
					       sizeof(want_samples[0]); i++) {
				/* check_prometheus cuts its input up */
				snprintf(copy, sizeof(copy), "%s", text);
				if (check_prometheus(copy, want_samples[i].sample) !=
				    want_samples[i].value)
					fail_msg("%s: %s is not %g", k ? "HTTP" :
						 "stdout", want_samples[i].sample,
						 want_samples[i].value);
			}
		}
	}
	assert_int_equal(http_get(port, "/nope", http_out, sizeof(http_out)), 0);
	assert_non_null(strstr(http_out, "HTTP/1.0 404 "));
	kill(srv, SIGTERM);
	(void)t_wait(srv, 10000);	/* reap it; its status is SIGTERM */

	/* shmbus top, two frames: the queues, the latencies of the first
	 * (everything so far), rates of 0 in the second (no traffic) */
	{
		char *second = strstr(top_out, "\n\nshmbus top");
		char name[64], depth[16], infl[16], pub[16], p50[16];
		char *line;

		assert_non_null(strstr(top_out, "shmbus top - bus " BUS));
		assert_non_null(second);
		line = strstr(top_out, "\nbpf.q ");
		assert_non_null(line);
		assert_true(line < second);
		assert_int_equal(sscanf(line + 1, "%63s %15s %15s %15s %*s %*s "
					"%*s %15s", name, depth, infl, pub, p50),
				 5);
		assert_string_equal(pub, "-");		/* no rate yet */
		assert_true(strcmp(p50, "-") != 0);	/* a latency */
		line = strstr(top_out, "\nbpf.wake ");
		assert_non_null(line);
		/* the 12th column, WAKEp99, holds a latency */
		assert_int_equal(sscanf(line + 1, "%*s %*s %*s %*s %*s %*s %*s "
					"%*s %*s %*s %*s %15s", p50), 1);
		assert_true(strcmp(p50, "-") != 0);
		line = strstr(second, "\nbpf.depth ");
		assert_non_null(line);
		assert_int_equal(sscanf(line + 1, "%63s %15s %15s %15s", name,
					depth, infl, pub), 4);
		assert_string_equal(depth, "5");
		assert_string_equal(pub, "0");
	}
	shmbus__close(bus);
}

/* `shmbus top` on a terminal: it draws on the alternate screen, q quits
 * it at once, and the terminal is given back. */
static void test_top_tty(void **state)
{
	struct shmbus *bus = t_open_bus(BUS);
	char buf[1 << 14];
	size_t got = 0;
	int master, st;
	pid_t pid;
	int64_t t0;

	(void)state;
	assert_int_equal(shmbus__queue_declare(bus, "bpf.tty", NULL) >= 0, 1);
	pid = forkpty(&master, NULL, NULL,
		      &(struct winsize){ .ws_row = 30, .ws_col = 120 });
	assert_true(pid >= 0);
	if (!pid) {
		execl(cli, cli, "--bus", BUS, "top", "--pin-dir",
		      "/nonexistent", (char *)NULL);
		_exit(127);
	}
	/* wait for a frame with our queue in it */
	t0 = t_now_ms_();
	while (!strstr(buf, "bpf.tty") && t_now_ms_() - t0 < 10000) {
		struct pollfd p = { .fd = master, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 100) != 1)
			continue;
		n = read(master, buf + got, sizeof(buf) - 1 - got);
		if (n <= 0)
			break;
		got += n;
		buf[got] = '\0';
	}
	assert_non_null(strstr(buf, "\033[?1049h"));	/* alternate screen */
	assert_non_null(strstr(buf, "bpf.tty"));
	assert_non_null(strstr(buf, "latencies: off"));
	t0 = t_now_ms_();
	assert_int_equal(write(master, "q", 1), 1);
	/* drain until it exits: a full pty would block it */
	for (;;) {
		struct pollfd p = { .fd = master, .events = POLLIN };
		ssize_t n;

		if (waitpid(pid, &st, WNOHANG) == pid)
			break;
		assert_true(t_now_ms_() - t0 < 3000);
		if (poll(&p, 1, 50) == 1) {
			n = read(master, buf + got, sizeof(buf) - 1 - got);
			if (n > 0) {
				got += n;
				buf[got] = '\0';
			}
			if (got > sizeof(buf) / 2) {
				memmove(buf, buf + got / 2, got - got / 2);
				got -= got / 2;
			}
		}
	}
	print_message("top quit %lld ms after q\n",
		      (long long)(t_now_ms_() - t0));
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	close(master);
	shmbus__close(bus);
}

/* journal_sync: the monitor attached, publishes to a durable queue that
 * each wait for their sync; the histogram holds one latency per sync,
 * the superblock's count and total time to the nanosecond. */
static void test_journal_sync_hist(void **state)
{
	enum { J = 50 };
	SHMBUS_OPTS(shmbus_queue_opts, qo, .flags = SHMBUS_QUEUE_DURABLE);
	SHMBUS_OPTS(shmbus_bus_journal_info, bj);
	struct shmbus_hist_key hk = { .latency = SHMBUS_LAT_JOURNAL_SYNC };
	struct shmbus_hist h;
	struct shmbus_queue_info qi;
	struct shmbus_producer *p;
	struct shmbus *bus;
	char sock[96], dir[96], path[256], want[256];
	unsigned long long sum = 0;
	int hfd, lookup;
	pid_t pid;

	(void)state;
	if (geteuid() != 0)
		SKIP_OR_FAIL("needs root to load BPF programs");
	if (access("/sys/kernel/btf/vmlinux", R_OK))
		SKIP_OR_FAIL("the kernel has no BTF");
	snprintf(pin_dir, sizeof(pin_dir), "/sys/fs/bpf/shmbus-test-%d",
		 (int)getpid());
	snprintf(sock, sizeof(sock), "%s/dur.sock", t_dir);
	snprintf(dir, sizeof(dir), "%s/state", t_dir);
	pid = t_daemon_start_state(sock, dir, NULL);
	assert_true(pid > 0);
	{
		SHMBUS_OPTS(shmbus_open_opts, o, .socket_path = sock,
			    .flags = SHMBUS_OPEN_NOSTART);

		bus = shmbus__open("bpfdur", &o);
	}
	assert_non_null(bus);
	/* --pid: our processes' files only (the build's), not another
	 * run's on this machine */
	assert_int_equal(t_run("%s monitor start --pin-dir %s --pid %d "
			     ">/dev/null", cli, pin_dir, (int)getpid()), 0);
	assert_int_equal(shmbus__queue_declare(bus, "bpf.dur", &qo), 1);
	assert_int_equal(shmbus__queue_info(bus, "bpf.dur", &qi), 0);
	p = shmbus_producer__new(bus, "bpf.dur", NULL);
	assert_non_null(p);
	for (int i = 0; i < J; i++)
		assert_int_equal(shmbus_producer__publish(p, &i, sizeof(i),
							  NULL), 0);
	shmbus_producer__free(p);
	usleep(200000);		/* nothing more to sync */
	hk.bus = shmbus__id(bus);
	hk.qid = qi.id;
	snprintf(path, sizeof(path), "%s/hist", pin_dir);
	hfd = bpf_obj_get(path);
	lookup = hfd >= 0 ? bpf_map_lookup_elem(hfd, &hk, &h) : -1;
	if (hfd >= 0)
		close(hfd);
	assert_int_equal(t_capture(metrics_out, sizeof(metrics_out),
				 "%s --socket %s --bus bpfdur metrics "
				 "--pin-dir %s", cli, sock, pin_dir), 0);
	assert_int_equal(t_run("%s monitor stop --pin-dir %s >/dev/null", cli,
			     pin_dir), 0);
	assert_int_equal(lookup, 0);
	assert_int_equal(shmbus__bus_journal(bus, &bj), 0);
	for (unsigned b = 0; b < SHMBUS_HIST_BUCKETS; b++)
		sum += h.buckets[b];
	print_message("journal syncs: bpf %llu (%.1f us each), superblock "
		      "%llu\n", h.count, h.count ? h.sum_ns / 1e3 / h.count : 0.0,
		      (unsigned long long)bj.syncs);
	assert_true(bj.syncs >= J);
	assert_int_equal(h.count, bj.syncs);
	assert_int_equal(sum, h.count);
	assert_int_equal(h.sum_ns, bj.sync_ns);
	/* metrics: the BPF histogram and the arena's, the same count */
	memcpy(http_out, metrics_out, sizeof(http_out));
	snprintf(want, sizeof(want), "shmbus_latency_seconds_count{bus="
		 "\"bpfdur\",queue=\"bpf.dur\",latency=\"journal_sync\"}");
	assert_true(check_prometheus(metrics_out, want) == (double)h.count);
	assert_true(check_prometheus(http_out, "shmbus_journal_sync_seconds_"
				     "count{bus=\"bpfdur\"}") ==
		    (double)bj.syncs);
	shmbus__close(bus);
	kill(pid, SIGTERM);
	for (int i = 0; i < 10000 && t_pid_running(pid); i++)
		usleep(1000);
}

static void find_cli(void)
{
	ssize_t n = readlink("/proc/self/exe", cli, sizeof(cli) - 16);

	/* the CLI of the tests' build directory: BUILD/tests/x -> BUILD/bin */
	if (n <= 0)
		abort();
	cli[n] = '\0';
	*strrchr(cli, '/') = '\0';
	*strrchr(cli, '/') = '\0';
	strcat(cli, "/bin/shmbus");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_monitor_counts),
		cmocka_unit_test(test_journal_sync_hist),
		cmocka_unit_test(test_top_tty),
	};

	find_cli();

	return T_RUN_WITH_DAEMON("bpf", tests);
}
