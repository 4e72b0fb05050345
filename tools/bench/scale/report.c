// SPDX-License-Identifier: MIT
/*
 * report.c - what each sweep reports (its columns), the repetitions it
 * collected, the Markdown tables on stdout (median [min-max] of the
 * repetitions) and one PNG plot per sweep, drawn by gnuplot from a data
 * file beside it (x, then median, min and max of each plotted column),
 * with a logarithmic x axis.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "scale.h"

struct sweep sweeps[NR_SWEEPS] = {
	[SW_QUEUES] = {
		.key = "queues",
		.title = "Queues: one producer round-robin over N queues, "
			 "one consumer taking from all (64 B, busy-poll)",
		.xname = "queues",
		.ncols = 2,
		.cols = {
			{ "msg/s", "msg/s", "%.2fM", 1e6, false, false },
			{ "ns/msg", "ns per message", "%.1f", 1, true, false },
		},
	},
	[SW_CONSUMERS] = {
		.key = "consumers",
		.title = "Competing consumers on one queue (64 B; consumers "
			 "block when idle, all on CPU 1)",
		.xname = "consumers",
		.note = "msg/s: the producer publishing as fast as it can; "
			"p50/p99: publish timestamp to receive, one message "
			"every 50 us on the drained queue; wake-ups: the "
			"producer's eventfd writes to sleeping consumers "
			"per 1000 messages of the msg/s run.",
		.ncols = 4,
		.cols = {
			{ "msg/s", "msg/s (millions)", "%.3fM", 1e6, true,
			  false },
			{ "p50 us", "latency, us", "%.1f", 1, true, true },
			{ "p99 us", "latency, us", "%.1f", 1, true, true },
			{ "wake-ups/1k msg", "", "%.1f", 1, false, false,
			  true },
		},
		.y2log = true,
	},
	[SW_FANOUT] = {
		.key = "fanout",
		.title = "Topic fan-out to N subscribers (64 B; subscribers "
			 "block when idle, all on CPU 1)",
		.xname = "subscribers",
		.note = "ns/publish: the publisher's time per message; "
			"ns/delivery: the whole run (until the last subscriber "
			"has every message) over N x messages; wake-ups: the "
			"publisher's eventfd writes to sleeping subscribers.",
		.ncols = 5,
		.cols = {
			{ "publishes/s", "publishes/s", "%.0fk", 1e3, false,
			  false },
			{ "deliveries/s", "deliveries/s", "%.2fM", 1e6, false,
			  false },
			{ "ns/publish", "ns", "%.0f", 1, true, false },
			{ "ns/delivery", "ns", "%.0f", 1, true, false },
			{ "wake-ups/publish", "", "%.2f", 1, false, false,
			  true },
		},
		.ylog = true,
	},
	[SW_SIZES] = {
		.key = "sizes",
		.title = "Message size (copy publish, read in place; "
			 "busy-poll, CPU 0 -> CPU 1)",
		.xname = "bytes",
		.note = "MB = 10^6 bytes.",
		.ncols = 3,
		.cols = {
			{ "msg/s", "msg/s", "%.1fk", 1e3, false, false },
			{ "MB/s", "MB/s", "%.0f", 1, true, false },
			{ "RTT p50 us", "RTT p50, us", "%.2f", 1, true, true },
		},
		.ylog = true,
		.y2log = true,
	},
	[SW_DEPTH] = {
		.key = "depth",
		.title = "Backlog depth: fill a queue to D messages, drain it "
			 "(64 B, one process on CPU 0)",
		.xname = "depth",
		.note = "first fill: the first fill of a run (the pool grows "
			"where D is beyond what it held); fill and drain: the "
			"later cycles. Working set: D x (chunk + ring cell).",
		.ncols = 4,
		.cols = {
			{ "first fill ns/msg", "ns per message", "%.0f", 1,
			  true, false },
			{ "fill ns/msg", "ns per message", "%.1f", 1, true,
			  false },
			{ "drain ns/msg", "ns per message", "%.1f", 1, true,
			  false },
			{ "working set", "bytes", NULL, 1, false, false },
		},
		.ylog = true,
	},
};

void s_result(struct sweep *sw, unsigned pi, const double *vals)
{
	unsigned r = sw->n[pi];

	if (r >= S_MAX_REPS)
		return;
	for (unsigned c = 0; c < sw->ncols; c++)
		sw->v[pi][c][r] = vals[c];
	sw->n[pi] = r + 1;
}

void s_print_machine(void)
{
	char cpu[160], kern[160], date[80];

	bench_cmd_line(cpu, sizeof(cpu),
		       "sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo");
	bench_cmd_line(kern, sizeof(kern), "uname -r");
	bench_cmd_line(date, sizeof(date), "date -u '+%Y-%m-%d %H:%M UTC'");
	printf("# shmbus-bench-scale %s\n\n", shmbus_version());
	printf("- CPU: %s, %ld CPUs online\n", cpu,
	       sysconf(_SC_NPROCESSORS_ONLN));
	printf("- kernel %s, %s\n", kern, date);
	printf("- %u repetition%s%s; each cell: median [min-max]; "
	       "a ! marks repetitions more than %.0fx apart\n",
	       scfg.reps, scfg.reps == 1 ? "" : "s",
	       scfg.quick ? " (--quick: fewer messages, smaller top ends)" :
			    "", REPS_SPREAD_LIMIT);
	printf("- absolute numbers on a VM swing 2-3x between runs: compare "
	       "the rows of one run\n\n");
}

/* @x as a short label: 1024 -> 1K, 1048576 -> 1M */
static const char *x_label(char *buf, size_t len, uint64_t x)
{
	if (x >= 1048576 && !(x % 1048576))
		snprintf(buf, len, "%lluM", (unsigned long long)(x >> 20));
	else if (x >= 1024 && !(x % 1024))
		snprintf(buf, len, "%lluK", (unsigned long long)(x >> 10));
	else
		snprintf(buf, len, "%llu", (unsigned long long)x);
	return buf;
}

static void cell(const struct col *c, const double *v, unsigned n)
{
	struct reps r = reps_summary(v, n);
	double d = c->div ? c->div : 1;
	char a[32], b[32], m[32];

	if (!c->fmt) {
		/* a size that every repetition shares */
		if (r.median >= 1 << 20)
			printf(" %.1f MiB |", r.median / (1 << 20));
		else if (r.median >= 1 << 10)
			printf(" %.1f KiB |", r.median / (1 << 10));
		else
			printf(" %.0f B |", r.median);
		return;
	}

	snprintf(m, sizeof(m), c->fmt, r.median / d);
	if (n < 2) {
		printf(" %s |", m);
		return;
	}
	snprintf(a, sizeof(a), c->fmt, r.min / d);
	snprintf(b, sizeof(b), c->fmt, r.max / d);
	printf(" %s [%s-%s]%s |", m, a, b,
	       !c->nospread && reps_spread(v, n) ? " !" : "");
}

void s_print_table(const struct sweep *sw)
{
	char xl[32];

	printf("### %s\n\n| %s |", sw->title, sw->xname);
	for (unsigned c = 0; c < sw->ncols; c++)
		printf(" %s |", sw->cols[c].name);
	printf("\n|---:|");
	for (unsigned c = 0; c < sw->ncols; c++)
		printf("---:|");
	printf("\n");
	for (unsigned pi = 0; pi < sw->npoints; pi++) {
		printf("| %s |", x_label(xl, sizeof(xl), sw->x[pi]));
		for (unsigned c = 0; c < sw->ncols; c++)
			cell(&sw->cols[c], sw->v[pi][c], sw->n[pi]);
		printf("\n");
	}
	if (sw->note)
		printf("\n%s\n", sw->note);
	printf("\n");
	fflush(stdout);
}

static int write_data(const struct sweep *sw, const char *path)
{
	FILE *f = fopen(path, "w");

	if (!f) {
		fprintf(stderr, "shmbus-bench-scale: %s: %s\n", path,
			strerror(errno));
		return -1;
	}
	fprintf(f, "# %s\n# %s", sw->title, sw->xname);
	for (unsigned c = 0; c < sw->ncols; c++)
		fprintf(f, "\t%s (median min max)", sw->cols[c].name);
	fprintf(f, "\n");
	for (unsigned pi = 0; pi < sw->npoints; pi++) {
		fprintf(f, "%llu", (unsigned long long)sw->x[pi]);
		for (unsigned c = 0; c < sw->ncols; c++) {
			struct reps r = reps_summary(sw->v[pi][c], sw->n[pi]);
			double d = sw->cols[c].div ? sw->cols[c].div : 1;

			fprintf(f, "\t%g\t%g\t%g", r.median / d, r.min / d,
				r.max / d);
		}
		fprintf(f, "\n");
	}
	return fclose(f) ? -1 : 0;
}

/* The plot's script, to gnuplot's stdin. */
static void write_script(FILE *g, const struct sweep *sw, const char *dat,
			 const char *png)
{
	const char *y1 = NULL, *y2 = NULL;
	bool first = true;
	char xl[32];

	for (unsigned c = 0; c < sw->ncols; c++) {
		if (!sw->cols[c].plot)
			continue;
		if (sw->cols[c].y2)
			y2 = y2 ? y2 : sw->cols[c].unit;
		else
			y1 = y1 ? y1 : sw->cols[c].unit;
	}
	fprintf(g, "set terminal png size 640,400 font ',9'\n");
	fprintf(g, "set output '%s'\n", png);
	fprintf(g, "set title \"%s\" font ',9'\n", sw->title);
	fprintf(g, "set logscale x 2\nset grid\nset key below\n");
	fprintf(g, "set xlabel '%s'\nset ylabel '%s'\n", sw->xname,
		y1 ? y1 : "");
	if (sw->ylog)
		fprintf(g, "set logscale y\n");
	if (y2) {
		fprintf(g, "set y2label '%s'\nset y2tics\nset ytics nomirror\n",
			y2);
		if (sw->y2log)
			fprintf(g, "set logscale y2\n");
	}
	/* a margin on both sides: a point on the border loses its tic */
	if (sw->npoints)
		fprintf(g, "set xrange [%g:%g]\n", (double)sw->x[0] / 1.5,
			(double)sw->x[sw->npoints - 1] * 1.5);
	fprintf(g, "set xtics (");
	for (unsigned pi = 0; pi < sw->npoints; pi++)
		fprintf(g, "%s\"%s\" %llu", pi ? ", " : "",
			x_label(xl, sizeof(xl), sw->x[pi]),
			(unsigned long long)sw->x[pi]);
	fprintf(g, ")\nplot ");
	for (unsigned c = 0; c < sw->ncols; c++) {
		unsigned col = 2 + 3 * c;

		if (!sw->cols[c].plot)
			continue;
		fprintf(g, "%s'%s' using 1:%u:%u:%u with yerrorlines lw 2 "
			"title '%s%s' axes x1y%d", first ? "" : ", ", dat, col,
			col + 1, col + 2, sw->cols[c].name,
			y2 ? (sw->cols[c].y2 ? " (right)" : " (left)") : "",
			sw->cols[c].y2 ? 2 : 1);
		first = false;
	}
	fprintf(g, "\n");
}

int s_plot(const struct sweep *sw)
{
	char dat[4096], png[4096];
	FILE *g;
	int st;

	if (mkdir(scfg.plots, 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "shmbus-bench-scale: mkdir %s: %s\n",
			scfg.plots, strerror(errno));
		return -1;
	}
	snprintf(dat, sizeof(dat), "%s/%s.dat", scfg.plots, sw->key);
	snprintf(png, sizeof(png), "%s/%s.png", scfg.plots, sw->key);
	if (write_data(sw, dat))
		return -1;
	fflush(NULL);
	g = popen("gnuplot", "w");
	if (!g) {
		fprintf(stderr, "shmbus-bench-scale: gnuplot: %s\n",
			strerror(errno));
		return -1;
	}
	write_script(g, sw, dat, png);
	st = pclose(g);
	if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st)) {
		fprintf(stderr, "shmbus-bench-scale: gnuplot failed for %s "
			"(is gnuplot-nox installed? make deps)\n", png);
		return -1;
	}
	fprintf(stderr, "shmbus-bench-scale: plot %s\n", png);
	return 0;
}
