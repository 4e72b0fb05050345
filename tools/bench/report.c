// SPDX-License-Identifier: MIT
/*
 * report.c - what the run prints besides progress: the machine facts and
 * the counts (stdout, first), one table per message size with the ratios
 * to the raw ring and to the pipe, the targets and whether they were met,
 * and on stderr what the shmbus queues counted over the run.
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

void print_machine(void)
{
	char cpu[128], cs[64], date[64];
	struct utsname u;
	time_t now = time(NULL);

	read_line("/proc/cpuinfo", "model name", cpu, sizeof(cpu));
	read_line("/sys/devices/system/clocksource/clocksource0/"
		  "current_clocksource", NULL, cs, sizeof(cs));
	if (uname(&u) < 0)
		snprintf(u.release, sizeof(u.release), "unknown");
	strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S %Z",
		 localtime(&now));
	printf("shmbus-bench (libshmbus %s)\n", shmbus_version());
	printf("  cpu:         %s\n", cpu);
	printf("  nproc:       %ld\n", sysconf(_SC_NPROCESSORS_ONLN));
	printf("  kernel:      %s\n", u.release);
	printf("  clocksource: %s\n", cs);
	printf("  date:        %s\n", date);
	printf("  pinning:     sender/pinger CPU 0, receiver/ponger CPU 1\n");
	printf("  counts:      RTT %" PRIu64 " trips busy, %" PRIu64
	       " block; one-way %" PRIu64 " x 64 B, %" PRIu64
	       " x 4096 B; +10%% warm-up\n",
	       cfg.rtt_busy, cfg.rtt_block, cfg.tput[0], cfg.tput[1]);
	printf("  repetitions: %u, interleaved; median of each statistic "
	       "(max: largest seen)\n", cfg.reps);
	printf("  ratios:      p50/raw, tput/raw: to the raw ring in the same "
	       "mode;\n");
	printf("               p50/pipe, tput/pipe: to pipe (blocking, its "
	       "only mode)\n\n");
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
	printf("%-12s %-5s %8.2f %8.2f %8.2f %9.1f %9s %8.1f %7s %8s %8s %9s\n",
	       transports[tp].name, mode_names[m], s.p50, s.p99, s.p999,
	       s.max, rate, tp_rate * (double)sizes[si] / 1e6, r1, r2, r3,
	       r4);
}

void print_table(int si)
{
	printf("== %zu B messages ==\n", sizes[si]);
	printf("%-12s %-5s %8s %8s %8s %9s %9s %8s %7s %8s %8s %9s\n",
	       "transport", "mode", "p50 us", "p99 us", "p99.9 us", "max us",
	       "msg/s", "MB/s", "p50/raw", "p50/pipe", "tput/raw",
	       "tput/pipe");
	for (int tp = 0; tp < NR_TP; tp++) {
		for (int m = 0; m < NR_MODES; m++) {
			if (!cfg.tp_on[tp] || !cfg.mode_on[m])
				continue;
			if (row_runs(tp, m))
				print_row(si, tp, m);
			else
				print_na_row(tp, m);
		}
	}
	printf("\n");
}

static void print_target(const char *what, double ratio, double limit,
			 bool at_most, bool pct)
{
	const char *verdict;

	if (isnan(ratio)) {
		printf("  %-50s %8s  NOT MEASURED\n", what, "-");
		return;
	}
	verdict = (at_most ? ratio <= limit : ratio >= limit) ? "MET"
							      : "MISSED";
	if (pct)
		printf("  %-50s %7.0f%%  %s\n", what, ratio * 100, verdict);
	else
		printf("  %-50s %7.2fx  %s\n", what, ratio, verdict);
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

/* What the per-message CRC32C costs: "shmbus crc" against "shmbus" (the
 * same copy publish and view receive on unchecksummed queues), measured
 * in the same run. */
void print_checksum_cost(void)
{
	if (!cfg.tp_on[TP_SUM] || !cfg.tp_on[TP_SHMBUS])
		return;
	printf("== checksum cost (shmbus crc / shmbus, same run) ==\n");
	printf("%-8s %-5s %12s %12s\n", "size", "mode", "p50 ratio",
	       "tput ratio");
	for (int si = 0; si < NR_SIZES; si++) {
		for (int m = 0; m < NR_MODES; m++) {
			char r1[16], r2[16];

			if (!cfg.size_on[si] || !row_runs(TP_SUM, m))
				continue;
			fmt_ratio(r1, sizeof(r1),
				  cell_rtt(&cells[si][TP_SUM][m]).p50,
				  cell_rtt(&cells[si][TP_SHMBUS][m]).p50);
			fmt_ratio(r2, sizeof(r2),
				  cell_tput(&cells[si][TP_SUM][m]),
				  cell_tput(&cells[si][TP_SHMBUS][m]));
			printf("%-8zu %-5s %12s %12s\n", sizes[si],
			       mode_names[m], r1, r2);
		}
	}
	printf("\n");
}

void print_targets(void)
{
	char what[96];

	printf("== targets (shmbus = copy publish, view receive) ==\n");
	for (int si = 0; si < NR_SIZES; si++) {
		if (!cfg.size_on[si])
			continue;
		snprintf(what, sizeof(what),
			 "%zu B busy-poll RTT p50 <= 1.3x raw ring", sizes[si]);
		print_target(what, p50_of(si, TP_SHMBUS, MODE_BUSY) /
				   p50_of(si, TP_RAW, MODE_BUSY), 1.3, true,
			     false);
		snprintf(what, sizeof(what),
			 "%zu B blocking RTT p50 <= pipe", sizes[si]);
		print_target(what, p50_of(si, TP_SHMBUS, MODE_BLOCK) /
				   p50_of(si, TP_PIPE, MODE_BLOCK), 1.0, true,
			     false);
	}
	if (cfg.size_on[0])
		print_target("64 B busy-poll throughput >= 50% of raw ring",
			     cell_tput(&cells[0][TP_SHMBUS][MODE_BUSY]) /
			     cell_tput(&cells[0][TP_RAW][MODE_BUSY]), 0.5,
			     false, true);
}
