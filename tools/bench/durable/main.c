// SPDX-License-Identifier: MIT
/*
 * main.c - shmbus-bench-durable: what persistent queues cost.
 *
 *   1. Confirmed publish throughput and confirm latency of a durable
 *      queue, for each sync policy (always, batch at the default interval,
 *      never), batches of 1, 16 and 256 messages, 64 B and 4 KiB, against
 *      an in-memory queue of the same bus in the same run (sbq.c).
 *   2. RabbitMQ on the same machine, a private rabbitmq-server: persistent
 *      messages to a durable queue with publisher confirms, the same
 *      batches and sizes, a consumer that acks each message (rabbit.c).
 *   3. Recovery: 1 M small messages journaled, the daemon and its clients
 *      killed with SIGKILL, a new daemon started: how long until the bus
 *      is back, and until a consumer has them all (recovery.c).
 *   4. What a process that wrote the journal itself would see: write() of
 *      one 64 B record per message to a file, without and with fdatasync
 *      every 1, 16 or 256 records (disk.c).
 *
 * One cell is a producer process (--producers N: N of them, each waiting
 * for its own confirms, so that one sync can cover several) and a
 * consumer process, not pinned: on a
 * machine with two CPUs the daemon, which journals, syncs and moves every
 * message, needs one too. Each cell runs dcfg.warm_s unmeasured, then
 * dcfg.seconds measured; the state directory is a new directory under
 * --dir (default /var/tmp), which must be on a real disk. Every message
 * is written whole by the producer and checked whole, in order, by the
 * consumer. Tables go to stdout, progress to stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dbench.h"
#include "barrier.h"
#include "../rabbit/rabbit.h"

const size_t sizes[NR_SIZES] = { 64, 4096 };
const unsigned d_batches[D_NR_BATCH] = { 1, 16, 256 };
const char *const d_kind_names[D_NR_KIND] = {
	"memory", "always", "batch", "never", "rabbitmq",
};

struct dconfig dcfg = {
	.seconds = 2.0,
	.warm_s = 0.3,
	.recovery_msgs = 1000000,
	.max_len = 1024,
	.producers = 1,
	.rabbit = true,
	.recovery = true,
	.disk = true,
	.dir = "/var/tmp",
};

bool d_run_ok;
bool d_rabbit_done;
bool d_anomalies;
struct dshared *dsh;
struct dcell dcells[D_NR_KIND][D_NR_BATCH][NR_SIZES];

/* ------------------------------------------------------------------ */
/* Processes                                                          */
/* ------------------------------------------------------------------ */

static void kid_alarm(int sig)
{
	static const char msg[] = "shmbus-bench-durable: a cell's process "
				  "timed out\n";
	ssize_t n = write(STDERR_FILENO, msg, sizeof(msg) - 1);

	(void)n;
	_exit(124);
}

/* A child of a cell: it dies after D_KID_TIMEOUT_S whatever it waits
 * for, and never runs the parent's atexit cleanup. */
pid_t d_fork(const char *what)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		die("%s: fork: %s", what, strerror(errno));
	if (!pid) {
		signal(SIGALRM, kid_alarm);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		alarm(D_KID_TIMEOUT_S);
	}
	return pid;
}

/* Wait for @n children, by pid (the daemon and the RabbitMQ processes
 * are children too, and not ours to reap here); the first that fails
 * takes the others with it. */
void d_wait_kids(pid_t *kids, int n, const char *label)
{
	int left = n, failed = 0;

	while (left) {
		for (int i = 0; i < n; i++) {
			int st;

			if (kids[i] <= 0 ||
			    waitpid(kids[i], &st, WNOHANG) != kids[i])
				continue;
			kids[i] = 0;
			left--;
			if (WIFEXITED(st) && !WEXITSTATUS(st))
				continue;
			failed = st;
			for (int j = 0; j < n; j++)
				if (kids[j] > 0)
					kill(kids[j], SIGKILL);
		}
		if (left)
			usleep(1000);
	}
	if (failed)
		die("%s: a process failed (status 0x%x)", label, failed);
}

void d_start_line(void)
{
	atomic_fetch_add(&dsh->ready, 1);
	while (smp_load_acquire(&dsh->ready) < dcfg.producers + 1)
		usleep(100);
}

/* ------------------------------------------------------------------ */
/* Results                                                            */
/* ------------------------------------------------------------------ */

void d_lat(uint64_t ns)
{
	uint64_t k = atomic_fetch_add(&dsh->nlat, 1);

	if (k < D_MAX_LAT)
		dsh->lat[k] = ns;
}

void d_producer_done(uint64_t counted, uint64_t total, uint64_t elapsed_ns)
{
	uint64_t e = READ_ONCE(dsh->elapsed_ns);

	atomic_fetch_add(&dsh->counted, counted);
	atomic_fetch_add(&dsh->total, total);
	while (elapsed_ns > e && !atomic_cmpxchg(&dsh->elapsed_ns, &e,
						 elapsed_ns))
		;
	/* [DONE] the counts before done: pairs with the consumer's acquire */
	smp_mb();
	atomic_fetch_add(&dsh->done, 1);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double pct_us(const uint64_t *v, uint64_t n, double q)
{
	uint64_t rank = (uint64_t)ceil(q * (double)n);

	rank = rank < 1 ? 1 : rank > n ? n : rank;
	return (double)v[rank - 1] / 1000.0;
}

/* What the producer and consumer of a cell left in shared memory. */
void d_cell_from_shared(struct dcell *c)
{
	if (dsh->nlat > D_MAX_LAT)
		dsh->nlat = D_MAX_LAT;
	if (!dsh->nlat || !dsh->elapsed_ns)
		die("a cell measured nothing");
	qsort(dsh->lat, dsh->nlat, sizeof(dsh->lat[0]), cmp_u64);
	c->ran = true;
	c->rate = (double)dsh->counted * 1e9 / (double)dsh->elapsed_ns;
	c->p50_us = pct_us(dsh->lat, dsh->nlat, 0.50);
	c->p99_us = pct_us(dsh->lat, dsh->nlat, 0.99);
	c->drain_rate = dsh->drain_ns ?
		(double)dsh->received * 1e9 / (double)dsh->drain_ns : 0;
	c->lost = dsh->total - dsh->received;
	c->dups = dsh->dups;
	c->disorder = dsh->disorder;
	if (c->lost || c->dups || c->disorder) {
		d_anomalies = true;
		fprintf(stderr, "shmbus-bench-durable: FAILED: sent %llu "
			"received %llu lost %llu duplicated %llu out of order "
			"%llu\n", (unsigned long long)dsh->total,
			(unsigned long long)dsh->received,
			(unsigned long long)c->lost,
			(unsigned long long)c->dups,
			(unsigned long long)c->disorder);
	}
}

static void shell_line(const char *label, const char *cmd)
{
	char line[256];

	printf("%-14s %s\n", label, bench_cmd_line(line, sizeof(line), cmd));
}

static void print_facts(void)
{
	char cmd[512];
	struct utsname u;

	uname(&u);
	printf("shmbus-bench-durable %s\n", shmbus_version());
	printf("%-14s %s %s %s\n", "kernel", u.sysname, u.release, u.machine);
	shell_line("cpu", "grep -m1 'model name' /proc/cpuinfo | "
		   "sed 's/.*: //'");
	printf("%-14s %ld online\n", "cpus", sysconf(_SC_NPROCESSORS_ONLN));
	printf("%-14s gcc %s\n", "compiler", __VERSION__);
	snprintf(cmd, sizeof(cmd), "findmnt -n -o SOURCE,FSTYPE,OPTIONS "
		 "--target '%s'", dcfg.dir);
	shell_line("state dir fs", cmd);
	snprintf(cmd, sizeof(cmd), "lsblk -n -d -o NAME,MODEL,SIZE,ROTA "
		 "\"$(findmnt -n -o SOURCE --target '%s')\" 2>/dev/null | "
		 "tr -s ' '", dcfg.dir);
	shell_line("state dir disk", cmd);
	printf("%-14s %s\n", "state dir", dcfg.dir);
	printf("%-14s %.1f s measured after %.1f s warm-up, per cell; %u "
	       "producer process%s, each waiting for its own confirms\n",
	       "cells", dcfg.seconds, dcfg.warm_s, dcfg.producers,
	       dcfg.producers == 1 ? "" : "es");
	printf("\n");
}

static double ratio(double a, double b)
{
	return a > 0 && b > 0 ? a / b : NAN;
}

static void print_size(int si)
{
	printf("%zu B messages: confirmed publish throughput, confirm latency "
	       "per batch (first publish to confirm)\n", sizes[si]);
	printf("%-10s %5s %12s %10s %10s %9s %9s %9s\n", "queue", "batch",
	       "msg/s", "p50 us", "p99 us", "of memory", "x rabbit",
	       "rec/sync");
	for (int k = 0; k < D_NR_KIND; k++) {
		for (unsigned bi = 0; bi < D_NR_BATCH; bi++) {
			const struct dcell *c = &dcells[k][bi][si];
			const struct dcell *m = &dcells[D_MEMORY][bi][si];
			const struct dcell *r = &dcells[D_RABBIT][bi][si];

			if (!c->ran)
				continue;
			printf("%-10s %5u %12.0f %10.1f %10.1f %8.2f%% %9.2f "
			       "%9.1f", d_kind_names[k], d_batches[bi],
			       c->rate, c->p50_us, c->p99_us,
			       100.0 * ratio(c->rate, m->rate),
			       ratio(c->rate, r->rate), c->per_sync);
			if (c->lost || c->dups || c->disorder)
				printf("  FAILED: lost %llu duplicated %llu "
				       "out of order %llu",
				       (unsigned long long)c->lost,
				       (unsigned long long)c->dups,
				       (unsigned long long)c->disorder);
			printf("\n");
		}
	}
	printf("\n");
}

/* The project's goal: durable shmbus with group commit at ten times
 * RabbitMQ's confirmed throughput, batch for batch. A goal not met yet is
 * a finding: the exit status is only for what went wrong. */
static void print_goal(void)
{
	if (!dcfg.rabbit)
		return;
	/* both policies commit in groups: always syncs what accumulated
	 * while the last sync ran, batch at most once per interval */
	printf("goal: durable with group commit (sync always or batch) >= 10x "
	       "RabbitMQ confirmed msg/s, %u producer%s\n", dcfg.producers,
	       dcfg.producers == 1 ? "" : "s");
	for (int si = 0; si < NR_SIZES; si++) {
		for (unsigned bi = 0; bi < D_NR_BATCH; bi++) {
			const struct dcell *b = &dcells[D_BATCH][bi][si];
			const struct dcell *a = &dcells[D_ALWAYS][bi][si];
			const struct dcell *r = &dcells[D_RABBIT][bi][si];
			double x = ratio(b->rate, r->rate),
			       y = ratio(a->rate, r->rate);

			if (!b->ran || !r->ran)
				continue;
			printf("  %4zu B batch %3u: batch %.2fx, always %.2fx "
			       "-> %s\n", sizes[si], d_batches[bi], x, y,
			       x >= 10 || y >= 10 ? "met" : "not yet");
		}
	}
	printf("\n");
}

/* ------------------------------------------------------------------ */
/* Options, setup, order                                              */
/* ------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f,
"usage: shmbus-bench-durable [--seconds S] [--quick] [--size 64|4096]\n"
"                            [--dir DIR] [--no-rabbitmq] [--no-recovery]\n"
"                            [--no-disk] [--recovery-msgs N]\n"
"                            [--max-len N] [--producers N]\n"
"\n"
"Persistent queues: confirmed publish throughput and confirm latency per\n"
"sync policy and batch size against an in-memory queue and RabbitMQ,\n"
"recovery after SIGKILL, and a process writing its own records.\n"
"\n"
"  --seconds S       measured time per cell (2)\n"
"  --quick           0.3 s per cell, 100000 messages to recover\n"
"  --size S          only 64 or 4096 byte messages\n"
"  --dir DIR         the state directory goes in a new directory here,\n"
"                    which must be on a disk, not tmpfs (/var/tmp)\n"
"  --no-rabbitmq     skip RabbitMQ\n"
"  --no-recovery     skip the recovery run\n"
"  --no-disk         skip the write()/fdatasync baseline\n"
"  --producers N     producer processes per cell, each waiting for its own\n"
"                    confirms (1; 1..16): group commit shares a sync\n"
"  --recovery-msgs N messages to recover (1000000)\n"
"  --max-len N       capacity of a cell's queue (1024; 256..4096)\n");
}

static void parse_args(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "seconds", required_argument, NULL, 't' },
		{ "quick", no_argument, NULL, 'q' },
		{ "size", required_argument, NULL, 's' },
		{ "dir", required_argument, NULL, 'd' },
		{ "no-rabbitmq", no_argument, NULL, 'R' },
		{ "no-recovery", no_argument, NULL, 'C' },
		{ "no-disk", no_argument, NULL, 'D' },
		{ "recovery-msgs", required_argument, NULL, 'n' },
		{ "max-len", required_argument, NULL, 'l' },
		{ "producers", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool size = false;
	int opt;

	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 't':
			dcfg.seconds = atof(optarg);
			if (!(dcfg.seconds >= 0.1 && dcfg.seconds <= 60))
				die("--seconds: want 0.1..60");
			break;
		case 'q':
			dcfg.seconds = 0.3;
			dcfg.warm_s = 0.1;
			dcfg.recovery_msgs = 100000;
			break;
		case 's':
			size = true;
			dcfg.size_on[bench_size_arg(optarg)] = true;
			break;
		case 'd':
			if (optarg[0] != '/' || strlen(optarg) > 200)
				die("--dir: want an absolute path");
			snprintf(dcfg.dir, sizeof(dcfg.dir), "%s", optarg);
			break;
		case 'R':
			dcfg.rabbit = false;
			break;
		case 'C':
			dcfg.recovery = false;
			break;
		case 'D':
			dcfg.disk = false;
			break;
		case 'n':
			dcfg.recovery_msgs = strtoull(optarg, NULL, 10);
			if (dcfg.recovery_msgs < 1000 ||
			    dcfg.recovery_msgs > 4000000)
				die("--recovery-msgs: want 1000..4000000");
			break;
		case 'l':
			dcfg.max_len = (uint32_t)strtoul(optarg, NULL, 10);
			if (dcfg.max_len < 256 || dcfg.max_len > 4096)
				die("--max-len: want 256..4096");
			break;
		case 'p':
			dcfg.producers = (unsigned)strtoul(optarg, NULL, 10);
			if (dcfg.producers < 1 || dcfg.producers > D_MAX_PROD)
				die("--producers: want 1..%u", D_MAX_PROD);
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
		dcfg.size_on[i] |= !size;
}

static void cleanup(void)
{
	if (!in_parent())
		return;
	if (d_bus) {
		shmbus__close(d_bus);
		d_bus = NULL;
	}
	/* its files stay when the run ended before its cells were done
	 * (an exit from die()) */
	rabbit_stop(!d_rabbit_done);
	d_daemon_cleanup();
}

static void setup(void)
{
	dsh = mmap(NULL, sizeof(*dsh), PROT_READ | PROT_WRITE,
		   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (dsh == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	bench_at_exit(cleanup);
}

static void run_cells(void)
{
	static const enum d_kind order[] = { D_MEMORY, D_ALWAYS, D_BATCH,
					     D_NEVER };

	d_bus = d_bus_open(D_BUS, true);
	for (int si = 0; si < NR_SIZES; si++) {
		if (!dcfg.size_on[si])
			continue;
		fprintf(stderr, "%zu B messages\n", sizes[si]);
		for (unsigned bi = 0; bi < D_NR_BATCH; bi++)
			for (size_t i = 0; i < sizeof(order) / sizeof(*order);
			     i++)
				d_run_shmbus(order[i], bi, si);
	}
	shmbus__close(d_bus);
	d_bus = NULL;
}

static void run_rabbit_cells(void)
{
	if (!dcfg.rabbit)
		return;
	if (rabbit_start(dcfg.dir) < 0) {
		fprintf(stderr, "shmbus-bench-durable: RabbitMQ not measured\n");
		dcfg.rabbit = false;
		return;
	}
	for (int si = 0; si < NR_SIZES; si++) {
		if (!dcfg.size_on[si])
			continue;
		for (unsigned bi = 0; bi < D_NR_BATCH; bi++)
			d_run_rabbit(bi, si);
	}
	d_rabbit_done = true;
	rabbit_stop(false);
}

int main(int argc, char **argv)
{
	bench_main_pid = getpid();
	parse_args(argc, argv);
	setup();
	print_facts();
	fflush(stdout);
	d_daemon_start();
	if (dcfg.disk)
		d_run_disk();
	run_cells();
	run_rabbit_cells();
	if (dcfg.rabbit)
		printf("%-14s %s\n\n", "rabbitmq", rabbit_version());
	for (int si = 0; si < NR_SIZES; si++)
		if (dcfg.size_on[si])
			print_size(si);
	print_goal();
	fflush(stdout);
	if (dcfg.recovery)
		d_run_recovery();
	d_run_ok = !d_anomalies;
	return d_anomalies;
}
