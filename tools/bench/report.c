// SPDX-License-Identifier: MIT
/*
 * report.c - what the run prints besides progress: the machine facts and
 * the counts (stdout, first), one table per message size with the ratios
 * to the raw ring and to the pipe, the checksum's cost, the goals and
 * whether they are met yet; in text, or as rows for machines (out.c).
 * On stderr in every format: the numbers whose repetitions disagree by
 * more than REPS_SPREAD_LIMIT, and what the shmbus queues counted over
 * the run.
 */
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

static void read_line(const char *path, const char *key, char *buf,
		      size_t len)
{
	char line[512];
	FILE *f = fopen(path, "r");
	size_t n;

	snprintf(buf, len, "unknown");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *v = line;

		if (key) {
			if (strncmp(line, key, strlen(key)))
				continue;
			v = strchr(line, ':');
			if (!v)
				continue;
			v += 1 + strspn(v + 1, " \t");
		}
		n = strcspn(v, "\n");
		if (n >= len)
			n = len - 1;
		memcpy(buf, v, n);
		buf[n] = '\0';
		break;
	}
	fclose(f);
}

/* What the report says of the machine and the run, once. */
struct facts {
	char cpu[128], clocksource[64], date[64], iso_date[32];
	struct utsname u;
	long nproc;
};

static void get_facts(struct facts *f)
{
	time_t now = time(NULL);
	struct tm tm;

	read_line("/proc/cpuinfo", "model name", f->cpu, sizeof(f->cpu));
	read_line("/sys/devices/system/clocksource/clocksource0/"
		  "current_clocksource", NULL, f->clocksource,
		  sizeof(f->clocksource));
	if (uname(&f->u) < 0)
		snprintf(f->u.release, sizeof(f->u.release), "unknown");
	f->nproc = sysconf(_SC_NPROCESSORS_ONLN);
	strftime(f->date, sizeof(f->date), "%Y-%m-%d %H:%M:%S %Z",
		 localtime_r(&now, &tm));
	strftime(f->iso_date, sizeof(f->iso_date), "%Y-%m-%dT%H:%M:%SZ",
		 gmtime_r(&now, &tm));
}

static void facts_text(FILE *out, const struct facts *f)
{
	fprintf(out, "shmbus-bench (libshmbus %s)\n", shmbus_version());
	fprintf(out, "  cpu:         %s\n", f->cpu);
	fprintf(out, "  nproc:       %ld\n", f->nproc);
	fprintf(out, "  kernel:      %s\n", f->u.release);
	fprintf(out, "  clocksource: %s\n", f->clocksource);
	fprintf(out, "  date:        %s\n", f->date);
	fprintf(out, "  pinning:     sender/pinger CPU 0, receiver/ponger "
		"CPU 1\n");
	fprintf(out, "  counts:      RTT %" PRIu64 " trips busy, %" PRIu64
		" block; one-way %" PRIu64 " x 64 B, %" PRIu64
		" x 4096 B; +10%% warm-up\n",
		cfg.rtt_busy, cfg.rtt_block, cfg.tput[0], cfg.tput[1]);
	fprintf(out, "  repetitions: %u, interleaved; median of each statistic "
		"(max: largest seen)\n", cfg.reps);
	fprintf(out, "  ratios:      p50/raw, tput/raw: to the raw ring in the "
		"same mode;\n");
	fprintf(out, "               p50/pipe, tput/pipe: to pipe (blocking, "
		"its only mode)\n\n");
}

/* The names of what is on among @n, in @v: how many. */
static unsigned names_on(const char **v, const char *const *names,
			 const bool *on, unsigned n)
{
	unsigned k = 0;

	for (unsigned i = 0; i < n; i++)
		if (on[i])
			v[k++] = names[i];
	return k;
}

static void facts_json(const struct facts *f)
{
	const char *all[NR_TP], *tps[NR_TP], *modes[NR_MODES];
	double sz[NR_SIZES];
	unsigned nsz = 0;

	for (int i = 0; i < NR_TP; i++)
		all[i] = transports[i].name;
	for (int si = 0; si < NR_SIZES; si++)
		if (cfg.size_on[si])
			sz[nsz++] = (double)sizes[si];
	out_str("program", "shmbus-bench");
	out_str("version", shmbus_version());
	out_object("machine");
	out_str("cpu", f->cpu);
	out_num("nproc", (double)f->nproc);
	out_str("kernel", f->u.release);
	out_str("machine", f->u.machine);
	out_str("clocksource", f->clocksource);
	out_str("date", f->iso_date);
	out_object_end();
	out_object("parameters");
	out_bool("quick", cfg.quick);
	out_num("repetitions", cfg.reps);
	out_num("rtt_trips_busy", (double)cfg.rtt_busy);
	out_num("rtt_trips_block", (double)cfg.rtt_block);
	out_num("one_way_msgs_64", (double)cfg.tput[0]);
	out_num("one_way_msgs_4096", (double)cfg.tput[1]);
	out_num("warm_up_fraction", 0.1);
	out_strv("transports", tps, names_on(tps, all, cfg.tp_on, NR_TP));
	out_strv("modes", modes, names_on(modes, mode_names, cfg.mode_on,
					  NR_MODES));
	out_numv("sizes", sz, nsz);
	out_num("sender_cpu", 0);
	out_num("receiver_cpu", 1);
	out_num("spread_limit", REPS_SPREAD_LIMIT);
	out_object_end();
}

/* First on stdout: the facts, in the report's format. CSV has only rows:
 * its facts go to stderr, as text. */
void print_machine(void)
{
	struct facts f;

	get_facts(&f);
	if (cfg.format == OUT_TEXT) {
		facts_text(stdout, &f);
		return;
	}
	out_begin(cfg.format);
	if (cfg.format == OUT_JSON)
		facts_json(&f);
	else
		facts_text(stderr, &f);
}

/* After everything else. */
void print_end(void)
{
	if (cfg.format != OUT_TEXT)
		out_end();
}

static void fmt_ratio(char *buf, size_t len, double num, double den)
{
	double r = num / den;

	if (isnan(num) || isnan(den) || den <= 0)
		snprintf(buf, len, "-");
	else if (r >= 10)
		snprintf(buf, len, "%.1f", r);
	else if (r >= 0.1)
		snprintf(buf, len, "%.2f", r);
	else
		snprintf(buf, len, "%.3f", r);
}

static void fmt_rate(char *buf, size_t len, double r)
{
	if (isnan(r))
		snprintf(buf, len, "-");
	else if (r >= 1e6)
		snprintf(buf, len, "%.2fM", r / 1e6);
	else
		snprintf(buf, len, "%.1fk", r / 1e3);
}

static void print_na_row(enum tp tp, enum mode m)
{
	printf("%-12s %-5s %8s %8s %8s %9s %9s %8s %7s %8s %8s %9s\n",
	       transports[tp].name, mode_names[m], "n/a", "n/a", "n/a",
	       "n/a", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a");
}

/* The marker of a number whose repetitions disagree: it takes the place
 * of the space after the number, so a table without one reads as it
 * always did. */
static char mark(bool spread)
{
	return spread ? '!' : ' ';
}

static void print_row(int si, enum tp tp, enum mode m)
{
	const struct cell *c = &cells[si][tp][m];
	const struct cell *raw = &cells[si][TP_RAW][m];
	const struct cell *pipe = &cells[si][TP_PIPE][MODE_BLOCK];
	struct rtt_stat s = cell_rtt(c);
	double tp_rate = cell_tput(c);
	char rate[16], r1[16], r2[16], r3[16], r4[16];

	fmt_rate(rate, sizeof(rate), tp_rate);
	fmt_ratio(r1, sizeof(r1), s.p50, cell_rtt(raw).p50);
	fmt_ratio(r2, sizeof(r2), s.p50, cell_rtt(pipe).p50);
	fmt_ratio(r3, sizeof(r3), tp_rate, cell_tput(raw));
	fmt_ratio(r4, sizeof(r4), tp_rate, cell_tput(pipe));
	printf("%-12s %-5s %8.2f%c%8.2f %8.2f %9.1f %9s%c%8.1f %7s %8s %8s "
	       "%9s\n", transports[tp].name, mode_names[m], s.p50,
	       mark(cell_rtt_spread(c)), s.p99, s.p999, s.max, rate,
	       mark(cell_tput_spread(c)),
	       tp_rate * (double)sizes[si] / 1e6, r1, r2, r3, r4);
}

static void footnote(bool any)
{
	if (any)
		printf("! repetitions more than %.0fx apart (max/min; of a "
		       "ratio: in either number): this VM's vCPU placement "
		       "moves, so only ratios within one run mean anything\n",
		       REPS_SPREAD_LIMIT);
}

static void print_table_text(int si)
{
	bool any = false;

	printf("== %zu B messages ==\n", sizes[si]);
	printf("%-12s %-5s %8s %8s %8s %9s %9s %8s %7s %8s %8s %9s\n",
	       "transport", "mode", "p50 us", "p99 us", "p99.9 us", "max us",
	       "msg/s", "MB/s", "p50/raw", "p50/pipe", "tput/raw",
	       "tput/pipe");
	for (int tp = 0; tp < NR_TP; tp++) {
		for (int m = 0; m < NR_MODES; m++) {
			const struct cell *c = &cells[si][tp][m];

			if (!cfg.tp_on[tp] || !cfg.mode_on[m])
				continue;
			if (!row_runs(tp, m)) {
				print_na_row(tp, m);
				continue;
			}
			print_row(si, tp, m);
			any |= cell_rtt_spread(c) || cell_tput_spread(c);
		}
	}
	footnote(any);
	printf("\n");
}

static enum out_tri tri(bool b)
{
	return b ? OUT_YES : OUT_NO;
}

/* One row of the matrix: its percentiles and its throughput, each with
 * every repetition. */
static void emit_cell(int si, enum tp tp, enum mode m)
{
	static const char *const names[4] = {
		"rtt_p50", "rtt_p99", "rtt_p999", "rtt_max",
	};
	const struct cell *c = &cells[si][tp][m];
	double v[4][MAX_REPS];
	struct out_row r = {
		.transport = transports[tp].name, .mode = mode_names[m],
		.size = sizes[si], .unit = "us", .nreps = c->nrtt,
		.ratio = NAN, .met = OUT_NA,
	};

	for (unsigned i = 0; i < c->nrtt; i++) {
		v[0][i] = c->rtt[i].p50;
		v[1][i] = c->rtt[i].p99;
		v[2][i] = c->rtt[i].p999;
		v[3][i] = c->rtt[i].max;
	}
	for (int k = 0; k < 4; k++) {
		r.bench = names[k];
		r.reps = v[k];
		r.spread = k ? OUT_NA : tri(cell_rtt_spread(c));
		out_row(&r);
	}
	r.bench = "throughput";
	r.unit = "msg/s";
	r.reps = c->tput;
	r.nreps = c->ntput;
	r.spread = tri(cell_tput_spread(c));
	out_row(&r);
}

/* On stderr, in every format: a number whose repetitions disagree. */
static void warn_spread(int si, enum tp tp, enum mode m)
{
	const struct cell *c = &cells[si][tp][m];
	double v[MAX_REPS];
	struct reps s;
	char lo[16], hi[16];

	if (cell_rtt_spread(c)) {
		s = reps_summary(v, cell_p50s(c, v));
		fprintf(stderr, "shmbus-bench: warning: %s %s %zu B RTT p50: "
			"repetitions from %.2f to %.2f us (%.2fx)\n",
			transports[tp].name, mode_names[m], sizes[si], s.min,
			s.max, s.max / s.min);
	}
	if (cell_tput_spread(c)) {
		s = reps_summary(c->tput, c->ntput);
		fmt_rate(lo, sizeof(lo), s.min);
		fmt_rate(hi, sizeof(hi), s.max);
		fprintf(stderr, "shmbus-bench: warning: %s %s %zu B one-way: "
			"repetitions from %s to %s msg/s (%.2fx)\n",
			transports[tp].name, mode_names[m], sizes[si], lo, hi,
			s.max / s.min);
	}
}

void print_table(int si)
{
	for (int tp = 0; tp < NR_TP; tp++) {
		for (int m = 0; m < NR_MODES; m++) {
			if (!row_runs(tp, m))
				continue;
			warn_spread(si, tp, m);
			if (cfg.format != OUT_TEXT)
				emit_cell(si, tp, m);
		}
	}
	if (cfg.format == OUT_TEXT)
		print_table_text(si);
}

/* Diagnostics on stderr: what the shmbus queues counted over the run. */
void print_queue_stats(void)
{
	struct shmbus_queue_info qi;

	for (int c = 0; c < NR_CHAN; c++) {
		if (shmbus__queue_info(bench_bus, queue_names[c], &qi))
			continue;
		fprintf(stderr, "shmbus-bench: queue '%s': published %" PRIu64
			", delivered %" PRIu64 ", full %" PRIu64 ", nomem %"
			PRIu64 ", corrupt %" PRIu64 ", wakeups %" PRIu64
			", sleeps %" PRIu64 "\n", queue_names[c],
			qi.stat[SHMBUS_STAT_PUBLISHED],
			qi.stat[SHMBUS_STAT_DELIVERED],
			qi.stat[SHMBUS_STAT_FULL], qi.stat[SHMBUS_STAT_NOMEM],
			qi.stat[SHMBUS_STAT_CORRUPT],
			qi.stat[SHMBUS_STAT_WAKEUPS],
			qi.stat[SHMBUS_STAT_SLEEPS]);
	}
}

/* What a ratio divides: a row's median p50 round trip or throughput. */
static double row_value(int si, enum tp tp, enum mode m, bool rtt)
{
	return rtt ? p50_of(si, tp, m) : cell_tput(&cells[si][tp][m]);
}

/* The median of the repetitions' p99.9 round trips. */
static double p999_of(int si, enum tp tp, enum mode m)
{
	const struct cell *c = &cells[si][tp][m];

	return c->nrtt ? cell_rtt(c).p999 : NAN;
}

static bool row_spread(int si, enum tp tp, enum mode m, bool rtt)
{
	const struct cell *c = &cells[si][tp][m];

	return rtt ? cell_rtt_spread(c) : cell_tput_spread(c);
}

/* A ratio row for machines: no repetitions, a spread warning when either
 * number it divides has one (OUT_NA: not checked). */
static void emit_ratio(const char *bench, enum tp tp, enum mode m, int si,
		       double ratio, enum out_tri spread, const char *goal,
		       enum out_tri met)
{
	struct out_row r = {
		.bench = bench, .transport = transports[tp].name,
		.mode = mode_names[m], .size = sizes[si], .unit = "ratio",
		.spread = spread, .ratio = ratio, .goal = goal,
		.met = met,
	};

	out_row(&r);
}

/* What the per-message CRC32C costs: "shmbus crc" against "shmbus" (the
 * same copy publish and view receive on unchecksummed queues), measured
 * in the same run. */
void print_checksum_cost(void)
{
	bool text = cfg.format == OUT_TEXT, any = false;

	if (!cfg.tp_on[TP_SUM] || !cfg.tp_on[TP_SHMBUS])
		return;
	if (text) {
		printf("== checksum cost (shmbus crc / shmbus, same run) ==\n");
		printf("%-8s %-5s %12s %12s\n", "size", "mode", "p50 ratio",
		       "tput ratio");
	}
	for (int si = 0; si < NR_SIZES; si++) {
		for (int m = 0; m < NR_MODES; m++) {
			double r[2];
			bool sp[2];
			char t[2][16];

			if (!cfg.size_on[si] || !row_runs(TP_SUM, m))
				continue;
			for (int k = 0; k < 2; k++) {
				bool rtt = !k;
				double num = row_value(si, TP_SUM, m, rtt);
				double den = row_value(si, TP_SHMBUS, m, rtt);

				r[k] = num / den;
				fmt_ratio(t[k], sizeof(t[k]), num, den);
				sp[k] = row_spread(si, TP_SUM, m, rtt) ||
					row_spread(si, TP_SHMBUS, m, rtt);
				any |= sp[k];
			}
			if (text) {
				printf("%-8zu %-5s %12s%c%12s%s\n", sizes[si],
				       mode_names[m], t[0], mark(sp[0]), t[1],
				       sp[1] ? "!" : "");
				continue;
			}
			emit_ratio("rtt_p50_vs_shmbus", TP_SUM, m, si, r[0],
				   tri(sp[0]), NULL, OUT_NA);
			emit_ratio("throughput_vs_shmbus", TP_SUM, m, si, r[1],
				   tri(sp[1]), NULL, OUT_NA);
		}
	}
	if (text) {
		footnote(any);
		printf("\n");
	}
}

/*
 * What shmbus aims at, against the raw ring, the pipe and its own modes
 * in the same run. A goal not met yet is reported as such, never as a
 * failure: the exit status says whether the run worked, not how fast it
 * was.
 */
enum metric { G_P50, G_P999, G_TPUT };

struct goal {
	const char *bench;		/* its row's name for machines */
	const char *what;		/* after the size */
	const char *goal;
	enum tp tp;			/* the measured row */
	enum mode mode;
	enum metric metric;
	enum tp base;			/* what it is divided by */
	double limit;
	bool at_most;
	bool pct;			/* shown in per cent */
	int size;			/* an index of sizes[], or -1: all */
};

static const struct goal goals[] = {
	{ "rtt_p50_vs_raw", "busy-poll RTT p50", "<= 1.3x raw ring",
	  TP_SHMBUS, MODE_BUSY, G_P50, TP_RAW, 1.3, true, false, -1 },
	{ "rtt_p50_vs_pipe", "blocking RTT p50", "<= pipe",
	  TP_SHMBUS, MODE_BLOCK, G_P50, TP_PIPE, 1.0, true, false, -1 },
	{ "rtt_p999_vs_pipe", "blocking RTT p99.9", "<= 2x pipe",
	  TP_SHMBUS, MODE_BLOCK, G_P999, TP_PIPE, 2.0, true, false, -1 },
	{ "throughput_vs_raw", "busy-poll throughput", ">= 70% of raw ring",
	  TP_SHMBUS, MODE_BUSY, G_TPUT, TP_RAW, 0.7, false, true, 0 },
	{ "throughput_vs_auto_ack", "acked throughput", ">= 60% of auto-ack",
	  TP_ACK, MODE_BUSY, G_TPUT, TP_SHMBUS, 0.6, false, true, 0 },
	{ "throughput_vs_raw", "zero-copy throughput", ">= raw ring",
	  TP_LOAN, MODE_BUSY, G_TPUT, TP_RAW, 1.0, false, true, 1 },
};

static double goal_value(const struct goal *g, int si, enum tp tp)
{
	if (g->metric == G_P999)
		return p999_of(si, tp, g->mode);
	return row_value(si, tp, g->mode, g->metric == G_P50);
}

static bool goal_met(const struct goal *g, double ratio)
{
	return g->at_most ? ratio <= g->limit : ratio >= g->limit;
}

static void print_goal_line(const char *what, const struct goal *g,
			    double ratio, bool spread)
{
	char val[16];

	if (isnan(ratio)) {
		printf("%-30s %-20s %9s  %s\n", what, g->goal, "-",
		       "not measured");
		return;
	}
	if (g->pct)
		snprintf(val, sizeof(val), "%.0f%%", ratio * 100);
	else
		snprintf(val, sizeof(val), "%.2fx", ratio);
	printf("%-30s %-20s %9s%c %s\n", what, g->goal, val, mark(spread),
	       goal_met(g, ratio) ? "met" : "not yet");
}

static void print_goal(const struct goal *g, int si, double ratio,
		       bool spread)
{
	char what[64];

	snprintf(what, sizeof(what), "%zu B %s", sizes[si], g->what);
	print_goal_line(what, g, ratio, spread);
}

static void emit_goal(const struct goal *g, int si, double ratio,
		      bool spread)
{
	enum out_tri met = OUT_NA;

	if (!isnan(ratio))
		met = tri(goal_met(g, ratio));
	/* the tails are not checked for spread */
	emit_ratio(g->bench, g->tp, g->mode, si, ratio,
		   g->metric == G_P999 ? OUT_NA : tri(spread), g->goal, met);
}

/*
 * The goals of the semantics report (semantics.c), each measured once:
 * request-reply against the ping-pong, and the cost per delivered
 * message of a topic with 8 subscribers against one with 1.
 */
static const struct goal sem_goals[] = {
	{ "reqrep_rtt_p50_vs_rtt_p50", "request-reply RTT p50",
	  "<= 1.5x ping-pong", TP_SHMBUS, MODE_BUSY, G_P50, TP_SHMBUS, 1.5,
	  true, false, 0 },
	{ "fanout8_cost_vs_fanout1", "fan-out 8, per delivery",
	  "<= 2x 1 subscriber", TP_SHMBUS, NR_MODES, G_TPUT, TP_SHMBUS, 2.0,
	  true, false, 0 },
};

static void sem_goal(const struct goal *g, double ratio)
{
	char what[64];

	if (cfg.format == OUT_TEXT) {
		snprintf(what, sizeof(what), "64 B %s", g->what);
		print_goal_line(what, g, ratio, false);
		return;
	}
	{
		struct out_row r = {
			.bench = g->bench,
			.transport = g->mode == NR_MODES ?
				     "shmbus topic 8 subscribers" :
				     "shmbus request",
			.mode = g->mode == NR_MODES ? "spin-block" : "busy",
			.size = 64, .unit = "ratio", .spread = OUT_NA,
			.ratio = ratio, .goal = g->goal,
			.met = isnan(ratio) ? OUT_NA : tri(goal_met(g, ratio)),
		};

		out_row(&r);
	}
}

void print_goals(void)
{
	bool text = cfg.format == OUT_TEXT, any = false;

	if (text) {
		printf("== goals (shmbus = copy publish, view receive; "
		       "not met yet is not a failure) ==\n");
		printf("%-30s %-20s %9s  %s\n", "measure", "goal", "measured",
		       "status");
	}
	for (int si = 0; si < NR_SIZES; si++) {
		for (size_t i = 0; i < sizeof(goals) / sizeof(*goals); i++) {
			const struct goal *g = &goals[i];
			double ratio;
			bool spread;

			if (!cfg.size_on[si] || (g->size >= 0 && g->size != si))
				continue;
			ratio = goal_value(g, si, g->tp) /
				goal_value(g, si, g->base);
			/* the tails are not checked for spread */
			spread = g->metric != G_P999 &&
				 (row_spread(si, g->tp, g->mode,
					     g->metric == G_P50) ||
				  row_spread(si, g->base, g->mode,
					     g->metric == G_P50));
			any |= spread && !isnan(ratio);
			if (text)
				print_goal(g, si, ratio, spread);
			else
				emit_goal(g, si, ratio, spread);
		}
	}
	if (cfg.size_on[0]) {
		/* NAN: not measured (the run left out what they need) */
		sem_goal(&sem_goals[0], sem.measured ?
			 sem.reqrep_p50 / sem.rtt_p50 : NAN);
		sem_goal(&sem_goals[1], sem.measured ?
			 sem.fan1_delivery / sem.fan8_delivery : NAN);
	}
	if (text) {
		footnote(any);
		printf("\n");
	}
}
