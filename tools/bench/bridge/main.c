// SPDX-License-Identifier: MIT
/*
 * main.c - shmbus-bench-bridge: what the RabbitMQ bridge (shmbus-bridge)
 * costs against the broker's own speed, as a user sees it.
 *
 *   Throughput, 64 B and 4 KiB messages, both directions:
 *     out  local queue -> bridge -> RabbitMQ queue, against a plain
 *          librabbitmq publisher (persistent messages, publisher
 *          confirms, a confirm window as large as the bridge's prefetch);
 *          timed from the first publish to the last confirm (for the
 *          bridge: to its local ack of the last message, which follows
 *          the broker's confirm);
 *     in   RabbitMQ queue -> bridge -> local queue, against a plain
 *          librabbitmq consumer with the same prefetch that acks with
 *          "multiple" each half window, as the bridge does; the queue is
 *          preloaded and the time runs from the first delivery to the
 *          last.
 *   Latency, one message at a time, publish to arrival: a plain AMQP
 *   publisher and consumer, against the same through the bridge out
 *   (the publisher is local) and in (the consumer is local).
 *
 * One private RabbitMQ (../rabbit/) and one private shmbusd for the whole
 * run; a bridge process per repetition, with one route. The cells of a
 * size and direction run interleaved, plain and bridge in turn (A B A B
 * ...), so that a load that comes and goes on the machine hits both
 * alike; each table gives the median and [min-max] of the repetitions,
 * and the bridge's cost as the median of the pairs' ratios. Every
 * message is written whole and checked whole, in order, at its
 * destination; the counts are checked at both ends (an AMQP queue is
 * purged after each repetition and must have held exactly what was
 * sent). Tables go to stdout (Markdown), progress to stderr.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "bbench.h"
#include "../rabbit/rabbit.h"

const size_t sizes[NR_SIZES] = { 64, 4096 };

struct bconfig bcfg = {
	.reps = 5,
	.msgs = { 20000, 10000 },
	.lat_msgs = 200,
	.window = 64,
	.dir = "/var/tmp",
};

static const char *const dir_names[B_NR_DIR] = {
	"out: local queue -> bridge -> RabbitMQ",
	"in: RabbitMQ -> bridge -> local queue",
};

static bool run_ok;
static struct b_tput tput[NR_SIZES][B_NR_DIR][B_NR_KIND][B_MAX_REPS];
static struct b_lat lat[NR_SIZES][3][B_MAX_REPS];	/* plain, out, in */
static char load_start[64], load_end[64];

/* ------------------------------------------------------------------ */
/* Statistics of the repetitions                                      */
/* ------------------------------------------------------------------ */

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

struct mm {
	double med, min, max;
};

static struct mm summary(const double *v, unsigned n)
{
	double s[B_MAX_REPS];

	memcpy(s, v, n * sizeof(*s));
	qsort(s, n, sizeof(*s), cmp_d);
	return (struct mm){ n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2,
			    s[0], s[n - 1] };
}

/* ------------------------------------------------------------------ */
/* Output                                                             */
/* ------------------------------------------------------------------ */

static void shell_line(const char *label, const char *cmd)
{
	char line[256];

	printf("| %s | %s |\n", label, bench_cmd_line(line, sizeof(line), cmd));
}

static void print_facts(void)
{
	struct utsname u;

	uname(&u);
	printf("# shmbus-bench-bridge %s\n\n", shmbus_version());
	printf("| | |\n|---|---|\n");
	printf("| kernel | %s %s %s |\n", u.sysname, u.release, u.machine);
	shell_line("cpu", "grep -m1 'model name' /proc/cpuinfo | "
		   "sed 's/.*: //'");
	printf("| cpus | %ld online |\n", sysconf(_SC_NPROCESSORS_ONLN));
	shell_line("memory", "awk '/MemTotal/ { printf \"%.1f GiB\", "
		   "$2 / 1048576 }' /proc/meminfo");
	printf("| rabbitmq | %s |\n", rabbit_version());
	printf("| load (/proc/loadavg) | at start %s; at end %s |\n",
	       load_start, load_end);
	printf("| runs | %u of each cell, interleaved; %llu (64 B) and %llu "
	       "(4 KiB) messages per throughput run, %u per latency run; "
	       "prefetch and confirm window %u |\n\n", bcfg.reps,
	       (unsigned long long)bcfg.msgs[0],
	       (unsigned long long)bcfg.msgs[1], bcfg.lat_msgs, bcfg.window);
}

/* A field of every repetition of a throughput cell. */
static struct mm tput_field(int si, int d, int k, size_t off)
{
	double v[B_MAX_REPS];

	for (unsigned i = 0; i < bcfg.reps; i++)
		v[i] = *(const double *)((const char *)&tput[si][d][k][i] + off);
	return summary(v, bcfg.reps);
}

static void print_tput_row(int si, int d)
{
	const size_t rate = offsetof(struct b_tput, rate);
	struct mm a = tput_field(si, d, B_PLAIN, rate);
	struct mm b = tput_field(si, d, B_BRIDGE, rate);
	double cost[B_MAX_REPS];
	struct mm c;

	/* pair by pair: a run and the one after it saw about the same
	 * machine */
	for (unsigned i = 0; i < bcfg.reps; i++)
		cost[i] = 100.0 * (1.0 - tput[si][d][B_BRIDGE][i].rate /
				   tput[si][d][B_PLAIN][i].rate);
	c = summary(cost, bcfg.reps);
	printf("| %zu B | %s | %.0f [%.0f-%.0f] | %.0f [%.0f-%.0f] | %.1f%% "
	       "[%.1f..%.1f] | %s |\n", sizes[si], dir_names[d], a.med, a.min,
	       a.max, b.med, b.min, b.max, c.med, c.min, c.max,
	       c.med <= 10.0 ? "met" : "not yet");
}

/* Where the time goes: CPU time per message, medians of the runs. */
static void print_cpu_row(int si, int d)
{
	const size_t bu = offsetof(struct b_tput, broker_us),
		     cu = offsetof(struct b_tput, client_us),
		     gu = offsetof(struct b_tput, bridge_us);

	printf("| %zu B | %s | %.1f | %.1f | %.1f | %.1f | %.1f |\n",
	       sizes[si], d == B_OUT ? "out" : "in",
	       tput_field(si, d, B_PLAIN, bu).med,
	       tput_field(si, d, B_BRIDGE, bu).med,
	       tput_field(si, d, B_PLAIN, cu).med,
	       tput_field(si, d, B_BRIDGE, cu).med,
	       tput_field(si, d, B_BRIDGE, gu).med);
}

static void print_tput(void)
{
	printf("## Throughput, msg/s: median [min-max]\n\n");
	printf("| size | path | plain librabbitmq client | bridge | "
	       "bridge cost | goal: cost <= 10%% |\n");
	printf("|---|---|---:|---:|---:|---|\n");
	for (int si = 0; si < NR_SIZES; si++)
		for (int d = 0; d < B_NR_DIR; d++)
			if (bcfg.size_on[si] && bcfg.dir_on[d])
				print_tput_row(si, d);
	printf("\nbridge cost: 1 - bridge / plain of each interleaved pair "
	       "of runs, median [min..max]; negative: the bridge was "
	       "faster.\n\n");
	printf("## CPU time per message, us (median of the runs)\n\n");
	printf("| size | path | broker, plain | broker, bridge | plain "
	       "client | local side | bridge process |\n");
	printf("|---|---|---:|---:|---:|---:|---:|\n");
	for (int si = 0; si < NR_SIZES; si++)
		for (int d = 0; d < B_NR_DIR; d++)
			if (bcfg.size_on[si] && bcfg.dir_on[d])
				print_cpu_row(si, d);
	printf("\nbroker: the Erlang VM's time on CPU over the timed part "
	       "(all its threads' schedstat); plain client and local side: "
	       "this program's (the AMQP client, or the local producer or "
	       "consumer); bridge process: its whole life over the messages "
	       "it forwarded.\n\n");
}

static void print_lat(void)
{
	static const char *const path[3] = {
		"plain: AMQP publish -> RabbitMQ -> AMQP consumer",
		"out: local publish -> bridge -> RabbitMQ -> AMQP consumer",
		"in: AMQP publish -> RabbitMQ -> bridge -> local consumer",
	};

	printf("## Latency, one message at a time, publish to arrival, us: "
	       "median [min-max] of the runs' percentiles\n\n");
	printf("| size | path | p50 | p99 | added p50 |\n");
	printf("|---|---|---:|---:|---:|\n");
	for (int si = 0; si < NR_SIZES; si++) {
		struct mm base = { 0 };

		if (!bcfg.size_on[si])
			continue;
		for (int k = 0; k < 3; k++) {
			double v50[B_MAX_REPS], v99[B_MAX_REPS];
			struct mm m50, m99;

			if (k && !bcfg.dir_on[k - 1])
				continue;
			for (unsigned i = 0; i < bcfg.reps; i++) {
				v50[i] = lat[si][k][i].p50;
				v99[i] = lat[si][k][i].p99;
			}
			m50 = summary(v50, bcfg.reps);
			m99 = summary(v99, bcfg.reps);
			if (!k)
				base = m50;
			printf("| %zu B | %s | %.0f [%.0f-%.0f] | %.0f [%.0f-%.0f] "
			       "| ", sizes[si], path[k], m50.med, m50.min,
			       m50.max, m99.med, m99.min, m99.max);
			if (k)
				printf("%+.0f |\n", m50.med - base.med);
			else
				printf("- |\n");
		}
	}
	printf("\n");
}

/* ------------------------------------------------------------------ */
/* Options, order                                                     */
/* ------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f,
"usage: shmbus-bench-bridge [--reps N] [--messages N] [--lat-messages N]\n"
"                           [--prefetch N] [--size 64|4096] [--quick]\n"
"                           [--direction out|in] [--dir DIR]\n"
"\n"
"The RabbitMQ bridge (shmbus-bridge) against plain librabbitmq clients\n"
"of a private RabbitMQ: throughput out (local queue -> RabbitMQ) and in\n"
"(RabbitMQ -> local queue), and latency, interleaved repetitions.\n"
"\n"
"  --reps N          repetitions of each cell (5; 1..%d)\n"
"  --messages N      per throughput run (20000 of 64 B, 10000 of 4 KiB)\n"
"  --lat-messages N  per latency run (200)\n"
"  --prefetch N      the bridge's prefetch, the plain publisher's confirm\n"
"                    window and the plain consumer's prefetch (64)\n"
"  --size S          only 64 or 4096 byte messages\n"
"  --direction D     only out or in (the plain path's latency runs too)\n"
"  --quick           3 repetitions of 3000 messages, 100 for latency\n"
"  --dir DIR         RabbitMQ's files go in a new directory here (/var/tmp)\n",
		B_MAX_REPS);
}

static unsigned long num(const char *opt, const char *v, unsigned long lo,
			 unsigned long hi)
{
	char *end;
	unsigned long n;

	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno || *end || n < lo || n > hi)
		die("--%s: want %lu..%lu", opt, lo, hi);
	return n;
}

static void parse_args(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "reps", required_argument, NULL, 'r' },
		{ "messages", required_argument, NULL, 'n' },
		{ "lat-messages", required_argument, NULL, 'l' },
		{ "prefetch", required_argument, NULL, 'p' },
		{ "size", required_argument, NULL, 's' },
		{ "quick", no_argument, NULL, 'q' },
		{ "direction", required_argument, NULL, 'D' },
		{ "dir", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool size = false, dir = false;
	int opt;

	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'r':
			bcfg.reps = (unsigned)num("reps", optarg, 1,
						  B_MAX_REPS);
			break;
		case 'n':
			bcfg.msgs[0] = bcfg.msgs[1] =
				num("messages", optarg, 100, 10000000);
			break;
		case 'l':
			bcfg.lat_msgs = (unsigned)num("lat-messages", optarg,
						      10, 100000);
			break;
		case 'p':
			bcfg.window = (unsigned)num("prefetch", optarg, 2,
						    1024);
			break;
		case 's':
			size = true;
			bcfg.size_on[bench_size_arg(optarg)] = true;
			break;
		case 'D':
			dir = true;
			if (!strcmp(optarg, "out"))
				bcfg.dir_on[B_OUT] = true;
			else if (!strcmp(optarg, "in"))
				bcfg.dir_on[B_IN] = true;
			else
				die("--direction: want out or in");
			break;
		case 'q':
			bcfg.reps = 3;
			bcfg.msgs[0] = bcfg.msgs[1] = 3000;
			bcfg.lat_msgs = 100;
			break;
		case 'd':
			if (optarg[0] != '/' || strlen(optarg) > 200)
				die("--dir: want an absolute path");
			snprintf(bcfg.dir, sizeof(bcfg.dir), "%s", optarg);
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind != argc) {
		usage(stderr);
		die("unexpected argument '%s'", argv[optind]);
	}
	for (int i = 0; i < NR_SIZES; i++)
		bcfg.size_on[i] |= !size;
	for (int i = 0; i < B_NR_DIR; i++)
		bcfg.dir_on[i] |= !dir;
}

static void cleanup(void)
{
	if (in_parent())
		b_teardown(run_ok);
}

static const char *const kind_names[B_NR_KIND] = { "plain", "bridge" };

static void run_tput(int si)
{
	for (int d = 0; d < B_NR_DIR; d++) {
		if (!bcfg.dir_on[d])
			continue;
		for (unsigned i = 0; i < bcfg.reps; i++) {
			for (int k = 0; k < B_NR_KIND; k++) {
				struct b_tput r = b_tput(d, k, si);

				tput[si][d][k][i] = r;
				fprintf(stderr, "  %4zu B %-3s %-6s run %u/%u: "
					"%8.0f msg/s  cpu us/msg: broker "
					"%5.1f here %5.1f bridge %5.1f\n",
					sizes[si], d == B_OUT ? "out" : "in",
					kind_names[k], i + 1, bcfg.reps,
					r.rate, r.broker_us, r.client_us,
					r.bridge_us);
			}
		}
	}
}

static void run_lat(int si)
{
	static const char *const names[3] = { "plain", "out", "in" };

	for (unsigned i = 0; i < bcfg.reps; i++) {
		for (int k = 0; k < 3; k++) {
			struct b_lat l;

			if (k && !bcfg.dir_on[k - 1])
				continue;
			l = b_latency(k == 2 ? B_IN : B_OUT,
				      k ? B_BRIDGE : B_PLAIN, si);

			lat[si][k][i] = l;
			fprintf(stderr, "  %4zu B latency %-5s run %u/%u: p50 "
				"%6.0f us  p99 %6.0f us\n", sizes[si],
				names[k], i + 1, bcfg.reps, l.p50, l.p99);
		}
	}
}

int main(int argc, char **argv)
{
	bench_main_pid = getpid();
	parse_args(argc, argv);
	bench_at_exit(cleanup);
	bench_cmd_line(load_start, sizeof(load_start), "cat /proc/loadavg");
	fprintf(stderr, "shmbus-bench-bridge: starting shmbusd and RabbitMQ "
		"(load %s)\n", load_start);
	b_setup();
	for (int si = 0; si < NR_SIZES; si++) {
		if (!bcfg.size_on[si])
			continue;
		fprintf(stderr, "%zu B messages: throughput\n", sizes[si]);
		run_tput(si);
		fprintf(stderr, "%zu B messages: latency\n", sizes[si]);
		run_lat(si);
	}
	bench_cmd_line(load_end, sizeof(load_end), "cat /proc/loadavg");
	print_facts();
	print_tput();
	print_lat();
	fflush(stdout);
	run_ok = true;
	return 0;
}
