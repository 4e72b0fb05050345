// SPDX-License-Identifier: MIT
/*
 * main.c - shmbus-bench-peers: shmbus against the IPC systems people
 * compare it with - a pipe, a Unix stream socketpair, the raw shared-
 * memory ring of shmbus-bench, ZeroMQ (ipc://), Redis pub/sub (a Unix
 * socket) and iceoryx - in one run: ping-pong round trip (p50, p99,
 * p99.9) and one-way throughput, 64 B and 4 KiB messages, two processes
 * pinned to CPU 0 and CPU 1.
 *
 * It is shmbus-bench's measurement (child.c, run.c, stats.c and the
 * transports) compiled again with SHMBUS_BENCH_PEERS, which adds the
 * peers' rows (peers.h); the same fairness rules hold for every row:
 * every message is fully written by the sender and fully read and
 * checked by the receiver, and a lost, wrong or reordered message fails
 * the run. The repetitions are interleaved: repetition 1 of every row,
 * then repetition 2, and so on, per message size.
 *
 * Modes: "busy" polls without sleeping; "block" sleeps in the kernel when
 * nothing is there. A peer without a busy-poll mode (pipe, socketpair,
 * ZeroMQ, Redis) has no busy row (n/a in the tables). "shmbus default"
 * (shmbus_default.c) is the consumer a program gets without options: it
 * spins 50 us and then sleeps, and is shown with the blocking rows.
 *
 * This file: options, setup (CPUs, signals, shared memory, the bus, the
 * servers: redis-server, iox-roudi), the order of the run, the cleanup.
 * report.c prints the Markdown tables and findings on stdout, plot.c
 * writes the PNGs (gnuplot); progress goes to stderr. Exit status 0
 * unless the run failed: shmbus behind a peer is a finding.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

const size_t sizes[NR_SIZES] = { 64, 4096 };
const char *const mode_names[NR_MODES] = { "busy", "block" };

/* Fewer messages than shmbus-bench's: Redis and the blocking rows take
 * ~10x longer per message than shmbus busy, and there are twice the rows.
 * --quick divides by 10 again. */
struct config cfg = {
	.reps = 3,
	.rtt_busy = 50000,
	.rtt_block = 10000,
	.tput = { 500000, 100000 },
};

struct shared *sh;
size_t sh_max_samples;
char peers_dir[PATH_MAX];
static char plots_dir[PATH_MAX];
static bool run_ok;

static void usage(FILE *f)
{
	fprintf(f,
"usage: shmbus-bench-peers [--quick] [--reps N] [--only LIST]\n"
"                          [--size 64|4096] [--mode busy|block] [--plots DIR]\n"
"\n"
"Round trip (ping-pong) and one-way throughput of shmbus against a pipe,\n"
"a Unix socketpair, a raw shared-memory ring, ZeroMQ (ipc://), Redis\n"
"pub/sub (private redis-server, Unix socket) and iceoryx (private\n"
"iox-roudi), between two processes pinned to CPU 0 and CPU 1. Markdown\n"
"tables on stdout, progress on stderr, PNG plots (gnuplot) in DIR.\n"
"\n"
"  --quick        10x fewer messages (a few seconds per row)\n"
"  --reps N       repetitions, interleaved; median [min-max] (3; 1-%d)\n"
"  --only LIST    comma-separated: shmbus (busy, default, blocking, loan,\n"
"                 ack), raw, pipe, uds, zmq, redis, iceoryx (default: all)\n"
"  --size S       only 64 or 4096 byte messages\n"
"  --mode M       only busy (busy-poll) or block (blocking)\n"
"  --plots DIR    where the PNGs go (default: bench-peers beside bin/,\n"
"                 build/bench-peers in the build tree); - for none\n"
"  --help         this text\n",
		MAX_REPS);
}

static void parse_only(const char *arg)
{
	static const struct { const char *name; enum tp tp[4]; int n; } m[] = {
		{ "shmbus", { TP_SHMBUS, TP_DEFAULT, TP_LOAN, TP_ACK }, 4 },
		{ "raw", { TP_RAW }, 1 },
		{ "pipe", { TP_PIPE }, 1 },
		{ "uds", { TP_UDS }, 1 },
		{ "zmq", { TP_ZMQ }, 1 },
		{ "redis", { TP_REDIS }, 1 },
		{ "iceoryx", { TP_IOX }, 1 },
	};
	char *copy = strdup(arg), *save = NULL, *tok;

	if (!copy)
		die("out of memory");
	for (tok = strtok_r(copy, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		size_t i;

		for (i = 0; i < sizeof(m) / sizeof(m[0]); i++)
			if (!strcmp(tok, m[i].name))
				break;
		if (i == sizeof(m) / sizeof(m[0])) {
			usage(stderr);
			die("--only: unknown transport '%s'", tok);
		}
		for (int j = 0; j < m[i].n; j++)
			cfg.tp_on[m[i].tp[j]] = true;
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
		{ "plots", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool only = false, size = false, mode = false;
	int opt;

	bench_exe_path(plots_dir, sizeof(plots_dir), "../bench-peers");
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (matrix_opt(opt, optarg, &size, &mode))
			continue;
		switch (opt) {
		case 'o':
			only = true;
			parse_only(optarg);
			break;
		case 'p':
			snprintf(plots_dir, sizeof(plots_dir), "%s", optarg);
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
	/* the checksummed queues are shmbus-bench's business */
	for (int i = 0; i < NR_TP; i++)
		cfg.tp_on[i] |= !only && i != TP_SUM;
	for (int i = 0; i < NR_SIZES; i++)
		cfg.size_on[i] |= !size;
	for (int i = 0; i < NR_MODES; i++)
		cfg.mode_on[i] |= !mode;
}

/* ------------------------------------------------------------------ */
/* Servers                                                            */
/* ------------------------------------------------------------------ */

pid_t peers_spawn(const char *name, const char *const argv[],
		  const char *log)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (!pid) {
		int fd = open(log ? log : "/dev/null",
			      O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

		/* a server must not outlive us, even after SIGKILL */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != bench_main_pid)
			_exit(1);
		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		/* neither CPU is its own: it runs where the scheduler puts it */
		execvp(argv[0], (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	fprintf(stderr, "shmbus-bench-peers: %s started, pid %d\n", name,
		(int)pid);
	return pid;
}

int peers_wait_ready(pid_t pid, const char *name, bool (*ready)(void),
		     int secs, const char *log)
{
	uint64_t end = now_ns() + (uint64_t)secs * 1000000000ull;
	int st;

	while (!ready()) {
		if (waitpid(pid, &st, WNOHANG) == pid) {
			fprintf(stderr, "shmbus-bench-peers: %s exited at "
				"start (log: %s)\n", name, log);
			return -ECHILD;
		}
		if (now_ns() > end) {
			fprintf(stderr, "shmbus-bench-peers: %s not ready "
				"within %d s (log: %s)\n", name, secs, log);
			return -ETIMEDOUT;
		}
		usleep(2000);
	}
	return 0;
}

static void start_servers(void)
{
	int err;

	if (cfg.tp_on[TP_REDIS] && (err = rd_start()))
		die("redis-server: %s", strerror(-err));
	if (cfg.tp_on[TP_IOX] && (err = ix_start()))
		die("iox-roudi: %s (another RouDi running?)", strerror(-err));
}

/* ------------------------------------------------------------------ */
/* Setup and cleanup                                                  */
/* ------------------------------------------------------------------ */

/* atexit, also after SIGINT, SIGTERM, SIGHUP (bench_at_exit): runs in
 * the parent only (children always _exit). */
static void cleanup(void)
{
	sigset_t set;

	if (!in_parent())
		return;
	/* a signal now would exit() inside exit(), and leave the rest
	 * (the daemon, the servers) running */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	kill_kids();
	reap_kids();
	if (ix_stop())
		run_ok = false;
	rd_stop();
	if (peers_dir[0]) {
		if (run_ok)
			bench_rm_rf(peers_dir);
		else
			fprintf(stderr, "shmbus-bench-peers: servers' logs "
				"kept in %s\n", peers_dir);
		peers_dir[0] = '\0';
	}
	teardown_bus(run_ok);
}

static void setup(void)
{
	struct sigaction sa = { .sa_handler = parent_alarm,
				.sa_flags = SA_RESTART };
	const char *tmp = getenv("TMPDIR");

	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGALRM, &sa, NULL) < 0)
		die("sigaction: %s", strerror(errno));
	sh_max_samples = cfg.rtt_busy > cfg.rtt_block ? cfg.rtt_busy
						       : cfg.rtt_block;
	sh = map_shared(sizeof(*sh) + sh_max_samples * sizeof(uint64_t));
	raw_map_rings();
	bench_at_exit(cleanup);
	if (bench_mkdtemp(peers_dir, sizeof(peers_dir),
			  tmp && *tmp ? tmp : "/tmp") < 0)
		die("mkdtemp: %s", strerror(errno));
	/* the test reads this line to check that the directory went */
	fprintf(stderr, "shmbus-bench-peers: files in %s\n", peers_dir);
	setup_socket();
	setup_bus();
	start_servers();
}

int main(int argc, char **argv)
{
	int err = 0;

	bench_main_pid = getpid();
	parse_args(argc, argv);
	bench_check_cpus();
	setup();
	rtt_samples_hook = peers_keep_samples;
	peers_print_machine();
	fflush(stdout);
	for (int si = 0; si < NR_SIZES; si++)
		if (cfg.size_on[si])
			run_size(si);
	peers_print_tables();
	fflush(stdout);
	if (strcmp(plots_dir, "-"))
		err = peers_plot(plots_dir);
	run_ok = !err;
	return err ? 1 : 0;
}
