// SPDX-License-Identifier: MIT
/*
 * main.c - shmbus-bench-scale: how the cost of shmbus grows with the
 * work, as five sweeps, each on a bus of its own geometry:
 *
 *   queues     1..64 queues, one producer round-robin over them and one
 *              consumer taking from all (queues.c)
 *   consumers  1..16 competing consumers on one queue: msg/s, and p50
 *              and p99 publish-to-receive latency (queues.c)
 *   fanout     a topic with 1..64 subscribers: publishes/s and the cost
 *              per delivered message (fanout.c)
 *   sizes      8 B..1 MiB messages: msg/s, MB/s and round trip (sizes.c)
 *   depth      a backlog of 1..1M messages: fill and drain cost per
 *              message as the working set leaves the caches (depth.c)
 *
 * This file owns the process: the options, the private daemon (through
 * ../daemon.c: libshmbus starts it on a socket in a temporary directory
 * when the first bus is opened, and it is stopped and its files removed
 * at exit), the order of the sweeps and the report. The other parts:
 *   scale.h     what they share
 *   kids.c      shared memory, pinned children, the bus of a sweep
 *   report.c    the sweeps' columns, Markdown tables, gnuplot plots
 *
 * CPUs: the machine this was written for has two. Senders are pinned to
 * CPU 0 and receivers to CPU 1. Where there are two processes they
 * busy-poll, as shmbus-bench's busy rows do; where there are more (the
 * consumers and fan-out sweeps), CPU 1 is oversubscribed and the
 * receivers block as soon as they find nothing (docs/decisions.md).
 *
 * Every message carries its sequence number and a pattern derived from
 * it (../bench.h fill/verify); every receiver checks every byte, the
 * order where there is one, and that nothing is lost or delivered twice.
 * Any of those failing fails the run (exit status 1). The tables go to
 * stdout, progress to stderr.
 */
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "scale.h"

/* what ../proc.c's --size helper reads; this program has no --size */
const size_t sizes[NR_SIZES] = { 64, 4096 };

struct scale_cfg scfg = {
	.reps = 3,
	.plots = "build/bench-scale",
};

static bool run_ok;			/* the daemon's log is not needed */

static void (*const sweep_fn[NR_SWEEPS])(struct sweep *) = {
	[SW_QUEUES] = sweep_queues,
	[SW_CONSUMERS] = sweep_consumers,
	[SW_FANOUT] = sweep_fanout,
	[SW_SIZES] = sweep_sizes,
	[SW_DEPTH] = sweep_depth,
};

static void usage(FILE *f)
{
	fprintf(f,
"usage: shmbus-bench-scale [--quick] [--reps N] [--only LIST]\n"
"                          [--plots DIR | --no-plots]\n"
"\n"
"How shmbus's cost grows with the work: five sweeps, each a Markdown\n"
"table on stdout (median [min-max] of the repetitions) and a PNG plot.\n"
"Senders on CPU 0, receivers on CPU 1. Progress goes to stderr; the exit\n"
"status is 0 unless a message was lost, corrupt or out of order, or\n"
"something failed.\n"
"\n"
"  --quick        fewer messages, smaller top ends (sizes to 64 KiB,\n"
"                 depth to 16K): a smoke test\n"
"  --reps N       repetitions of each point (3; 1-%d)\n"
"  --only LIST    comma-separated sweeps: queues, consumers, fanout,\n"
"                 sizes, depth (default: all)\n"
"  --plots DIR    where the PNGs and their data go (build/bench-scale;\n"
"                 needs gnuplot)\n"
"  --no-plots     tables only\n"
"  --help         this text\n"
"\n"
"Uses a private shmbusd on a temporary socket unless SHMBUS_SOCKET is set.\n",
		S_MAX_REPS);
}

static void parse_only(const char *arg)
{
	char *copy = strdup(arg), *save = NULL, *tok;

	if (!copy)
		die("out of memory");
	for (tok = strtok_r(copy, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		int i;

		for (i = 0; i < NR_SWEEPS; i++)
			if (!strcmp(tok, sweeps[i].key))
				break;
		if (i == NR_SWEEPS) {
			usage(stderr);
			die("--only: unknown sweep '%s'", tok);
		}
		scfg.on[i] = true;
	}
	free(copy);
}

static void parse_args(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "quick", no_argument, NULL, 'q' },
		{ "reps", required_argument, NULL, 'r' },
		{ "only", required_argument, NULL, 'o' },
		{ "plots", required_argument, NULL, 'p' },
		{ "no-plots", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool only = false;
	char *end;
	long v;
	int opt;

	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'q':
			scfg.quick = true;
			break;
		case 'r':
			v = strtol(optarg, &end, 10);
			if (*end || v < 1 || v > S_MAX_REPS)
				die("--reps: want 1..%d", S_MAX_REPS);
			scfg.reps = (unsigned)v;
			break;
		case 'o':
			only = true;
			parse_only(optarg);
			break;
		case 'p':
			scfg.plots = optarg;
			break;
		case 'n':
			scfg.plots = NULL;
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
	for (int i = 0; i < NR_SWEEPS; i++)
		scfg.on[i] |= !only;
}

/* atexit: runs in the parent only (children always _exit). */
static void cleanup(void)
{
	if (!in_parent())
		return;
	s_kill_all();
	if (sbus) {
		shmbus__close(sbus);
		sbus = NULL;
	}
	teardown_bus(run_ok);
}

static void fatal_signal(int sig)
{
	/* only async-signal-safe calls: stop the processes, leave the
	 * files (the daemon removes its socket) */
	s_kill_all();
	signal_daemon();
	_exit(128 + sig);
}

static void setup_signals(void)
{
	struct sigaction sa = { .sa_handler = fatal_signal };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

int main(int argc, char **argv)
{
	int plot_failed = 0;

	bench_main_pid = getpid();
	parse_args(argc, argv);
	bench_check_cpus();
	setup_signals();
	/* the consumers sweep's per-message arrays, the sizes sweep's
	 * round trips */
	s_map(scfg.quick ? 22000 : 220000, 22000);
	if (atexit(cleanup))
		die("atexit failed");
	setup_socket();
	/* starts our daemon and finds its pid (../daemon.c); its bus is
	 * not used, each sweep makes its own */
	setup_bus();
	fprintf(stderr, "shmbus-bench-scale: daemon on %s\n", bus_socket());
	s_print_machine();
	for (int i = 0; i < NR_SWEEPS; i++) {
		if (!scfg.on[i])
			continue;
		fprintf(stderr, "shmbus-bench-scale: sweep %s\n",
			sweeps[i].key);
		sweep_fn[i](&sweeps[i]);
		s_print_table(&sweeps[i]);
		if (scfg.plots && s_plot(&sweeps[i]))
			plot_failed = 1;
	}
	if (plot_failed)
		die("plots failed (tables above are complete)");
	run_ok = true;
	return 0;
}
