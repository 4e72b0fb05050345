// SPDX-License-Identifier: MIT
/*
 * main.c - shmbus-bench: ping-pong round trip and one-way throughput of
 * shmbus against a pipe, a Unix stream socketpair and a minimal raw SPSC
 * shared-memory ring, between two processes pinned to CPU 0 and CPU 1.
 *
 * This file owns the process: the options, the setup (CPUs, signals,
 * shared memory, the bus), the order of the runs and of the report, the
 * cleanup at exit, and die(). The other parts:
 *   bench.h             what the parts share, and the payload (fill/verify)
 *   transport.c         the table of transports, the fds they prepare
 *   transport_raw.c     the raw SPSC shared-memory ring
 *   transport_shmbus.c  shmbus: copy or loan/commit publish, view receive
 *   transport_fd.c      pipe and Unix stream socketpair
 *   child.c             the two child roles: pinger/ponger and
 *                       producer/consumer
 *   run.c               one measurement (fork, time out, collect) and the
 *                       matrix of them that fills the results
 *   stats.c             percentiles and medians of the results
 *   report.c            machine facts, tables and goals on stdout
 *   out.c               the same for machines: JSON or CSV (--format)
 *   reps.c              median, min, max and spread of repetitions
 *   daemon.c            the bus and the private shmbusd it starts and stops
 *   semantics.c         ack vs auto-ack, fan-out and request-reply report
 *   fanout.c            topic fan-out to N subscriber processes
 *   reqrep.c            request-reply round trips against a replier
 * The report goes to stdout (text, JSON or CSV); progress and warnings
 * go to stderr. The exit status says whether the run worked (0) or not:
 * a goal not met is a finding, not an error.
 *
 * Fairness: every message is fully written by the sender (a pattern that
 * depends on its sequence number, built in a local buffer and then handed
 * to the transport, or built in place for shmbus loan/commit) and fully
 * read by the receiver (every byte summed and checked, in place where the
 * transport allows it, as shmbus views and the raw ring do). A wrong,
 * lost or reordered message is an error.
 *
 * Modes: "busy" polls without ever sleeping (shmbus spin_ns = INT64_MAX);
 * "block" sleeps in the kernel as soon as nothing is there (shmbus
 * spin_ns = -1; the raw ring sleeps on an eventfd at once). A sender that
 * finds a queue full waits: shmbus publishes with timeout -1, the raw ring
 * spins (busy) or backs off as libshmbus does (block), pipes and sockets
 * block in write().
 */
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench.h"

const size_t sizes[NR_SIZES] = { 64, 4096 };
const char *const mode_names[NR_MODES] = { "busy", "block" };

struct config cfg = {
	.reps = 3,
	.rtt_busy = 100000,
	.rtt_block = 20000,
	.tput = { 2000000, 200000 },
};

struct shared *sh;
size_t sh_max_samples;
static bool run_ok;			/* the daemon's log is not needed */

/* ------------------------------------------------------------------ */
/* Small helpers                                                      */
/* ------------------------------------------------------------------ */

/* ------------------------------------------------------------------ */
/* Options                                                            */
/* ------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f,
"usage: shmbus-bench [--quick] [--reps N] [--only LIST] [--size 64|4096]\n"
"                    [--mode busy|block] [--format text|json|csv]\n"
"\n"
"Round trip (ping-pong) and one-way throughput of shmbus, a pipe, a Unix\n"
"stream socketpair and a raw shared-memory ring, between two processes\n"
"pinned to CPU 0 and CPU 1. The report goes to stdout, progress and\n"
"warnings to stderr; exit status 0 unless the run failed (goals not met\n"
"do not count).\n"
"\n"
"  --quick        10x fewer messages (smoke test)\n"
"  --reps N       repetitions per measurement, median reported (3; 1-%d)\n"
"  --only LIST    comma-separated transports: shmbus (copy, ack, loan,\n"
"                 and copy on checksummed queues: crc),\n"
"                 raw, pipe, uds (default: all)\n"
"  --size S       only 64 or 4096 byte messages\n"
"  --mode M       only busy (busy-poll) or block (blocking)\n"
"  --format F     text (tables, the default), json (one document) or csv\n"
"                 (a header line, then one line per measured row)\n"
"  --help         this text\n"
"\n"
"Uses a private shmbusd on a temporary socket unless SHMBUS_SOCKET is set.\n",
		MAX_REPS);
}

static void parse_only(const char *arg)
{
	char *copy = strdup(arg), *save = NULL, *tok;

	if (!copy)
		die("out of memory");
	for (tok = strtok_r(copy, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		if (!strcmp(tok, "shmbus")) {
			cfg.tp_on[TP_SHMBUS] = cfg.tp_on[TP_LOAN] = true;
			cfg.tp_on[TP_ACK] = cfg.tp_on[TP_SUM] = true;
		} else if (!strcmp(tok, "raw")) {
			cfg.tp_on[TP_RAW] = true;
		} else if (!strcmp(tok, "pipe")) {
			cfg.tp_on[TP_PIPE] = true;
		} else if (!strcmp(tok, "uds")) {
			cfg.tp_on[TP_UDS] = true;
		} else {
			usage(stderr);
			die("--only: unknown transport '%s'", tok);
		}
	}
	free(copy);
}

static void parse_args(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "quick", no_argument, NULL, 'q' },
		{ "reps", required_argument, NULL, 'r' },
		{ "only", required_argument, NULL, 'o' },
		{ "size", required_argument, NULL, 's' },
		{ "mode", required_argument, NULL, 'm' },
		{ "format", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool only = false, size = false, mode = false;
	long v;
	int opt;

	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (matrix_opt(opt, optarg, &size, &mode))
			continue;
		switch (opt) {
		case 'o':
			only = true;
			parse_only(optarg);
			break;
		case 'f':
			v = out_format_arg(optarg);
			if (v < 0)
				die("--format: want text, json or csv");
			cfg.format = (enum out_format)v;
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
	for (int i = 0; i < NR_TP; i++)
		cfg.tp_on[i] |= !only;
	for (int i = 0; i < NR_SIZES; i++)
		cfg.size_on[i] |= !size;
	for (int i = 0; i < NR_MODES; i++)
		cfg.mode_on[i] |= !mode;
}

/* ------------------------------------------------------------------ */
/* Setup and cleanup                                                  */
/* ------------------------------------------------------------------ */

/* atexit: runs in the parent only (children always _exit). */
static void cleanup(void)
{
	if (!in_parent())
		return;
	kill_kids();
	reap_kids();
	teardown_bus(run_ok);
}

static void fatal_signal(int sig)
{
	/* only async-signal-safe calls: leave the files, stop processes */
	kill_kids();
	signal_daemon();
	_exit(128 + sig);
}

static void setup_signals(void)
{
	struct sigaction sa = { .sa_handler = parent_alarm,
				.sa_flags = SA_RESTART };

	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGALRM, &sa, NULL) < 0)
		die("sigaction: %s", strerror(errno));
	sa.sa_handler = fatal_signal;
	sa.sa_flags = 0;
	if (sigaction(SIGINT, &sa, NULL) < 0 ||
	    sigaction(SIGTERM, &sa, NULL) < 0 ||
	    sigaction(SIGHUP, &sa, NULL) < 0)
		die("sigaction: %s", strerror(errno));
	signal(SIGPIPE, SIG_IGN);
}

static void setup_memory(void)
{
	uint64_t most = cfg.rtt_busy > cfg.rtt_block ? cfg.rtt_busy
						     : cfg.rtt_block;

	sh_max_samples = most;
	sh = map_shared(sizeof(*sh) + sh_max_samples * sizeof(uint64_t));
	raw_map_rings();
}

int main(int argc, char **argv)
{
	bench_main_pid = getpid();
	parse_args(argc, argv);
	bench_check_cpus();
	setup_signals();
	setup_memory();
	if (atexit(cleanup))
		die("atexit failed");
	setup_socket();
	setup_bus();
	print_machine();
	fflush(stdout);
	fprintf(stderr, "shmbus-bench: bus '%s' on %s\n", BUS_NAME,
		bus_socket());
	for (int si = 0; si < NR_SIZES; si++)
		if (cfg.size_on[si])
			run_size(si);
	for (int si = 0; si < NR_SIZES; si++)
		if (cfg.size_on[si])
			print_table(si);
	print_checksum_cost();
	run_semantics();
	print_goals();
	print_end();
	print_queue_stats();
	run_ok = true;
	return 0;
}
