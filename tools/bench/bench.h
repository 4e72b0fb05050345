// SPDX-License-Identifier: MIT
/*
 * bench.h - what the parts of shmbus-bench share: the limits, the
 * configuration, one measurement (struct run), the memory shared with the
 * children (struct shared), one end of a channel (struct end) and the
 * transport interface, the results (struct cell), the payload that makes
 * the comparison fair (fill/verify), and each part's entry points. What
 * the benchmark measures, and how, is told at the top of main.c.
 */
#ifndef SHMBUS_BENCH_H
#define SHMBUS_BENCH_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shmbus.h"
#include "out.h"
#include "reps.h"

#define BUS_NAME		"bench"
#define MAX_MSG			4096u
#define RING_SLOTS		1024u	/* raw ring = shmbus max_len */
#define NR_CHAN			2	/* 0: ping / one-way, 1: pong */
#define MAX_REPS		15	/* <= REPS_MAX */
#define CHILD_TIMEOUT_S		60	/* per measurement, per child */
#define PARENT_TIMEOUT_S	75
#define CACHELINE		64
#define FAN_MSGS		200000u	/* messages of one fan-out run */

/* ------------------------------------------------------------------ */
/* Configuration                                                      */
/* ------------------------------------------------------------------ */

/* shmbus-bench-peers compiles these files again with SHMBUS_BENCH_PEERS
 * (tools/bench/peers/): the other IPC systems are rows of its own, and
 * shmbus-bench needs none of their libraries. */
enum tp {
	TP_RAW, TP_SHMBUS, TP_ACK, TP_LOAN, TP_SUM, TP_PIPE, TP_UDS,
#ifdef SHMBUS_BENCH_PEERS
	TP_DEFAULT, TP_ZMQ, TP_REDIS, TP_IOX,
#endif
	NR_TP
};
enum mode { MODE_BUSY, MODE_BLOCK, NR_MODES };

#define NR_SIZES	2

extern const size_t sizes[NR_SIZES];		/* 64, 4096 (main.c) */
extern const char *const mode_names[NR_MODES];	/* main.c */

struct config {
	enum out_format format;
	bool quick;
	unsigned reps;
	uint64_t rtt_busy;		/* round trips, busy-poll modes */
	uint64_t rtt_block;		/* round trips, blocking modes */
	uint64_t tput[NR_SIZES];	/* one-way messages per size */
	bool tp_on[NR_TP];
	bool size_on[NR_SIZES];
	bool mode_on[NR_MODES];
};

extern struct config cfg;			/* the options (main.c) */

/* One measurement, as the children see it. */
struct run {
	enum tp tp;
	enum mode mode;
	size_t size;
	bool rtt;			/* else one-way throughput */
	uint64_t warm;			/* not measured */
	uint64_t count;			/* measured */
	char label[64];
};

/* Shared with the children (MAP_SHARED before fork). */
struct shared {
	uint32_t ready;			/* start barrier */
	uint64_t elapsed_ns;		/* throughput: consumer's time */
	uint64_t nsamples;
	uint64_t samples[];		/* RTT, ns */
};

extern struct shared *sh;			/* main.c */
extern size_t sh_max_samples;			/* main.c */

/* The bus the shmbus measurements use: the parent's handle, then each
 * child's own (daemon.c), and the queue of each channel. */
extern struct shmbus *bench_bus;
extern const char *const queue_names[NR_CHAN];
/* the same channels on queues declared with SHMBUS_QUEUE_CHECKSUM */
extern const char *const sum_queue_names[NR_CHAN];

/* ------------------------------------------------------------------ */
/* Small helpers (in_parent, die, map_shared, directories, a daemon: */
/* proc.c; each program's main() sets bench_main_pid first)          */
/* ------------------------------------------------------------------ */

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

extern pid_t bench_main_pid;
bool in_parent(void);

/* Print and exit: exit() (cleanup) in the parent, _exit() in a child. */
__attribute__((format(printf, 1, 2), noreturn))
void die(const char *fmt, ...);

void *map_shared(size_t len);

/* A new directory PROGRAM.XXXXXX in @parent: 0, or -1 and errno. */
int bench_mkdtemp(char *buf, size_t len, const char *parent);
void bench_rm_rf(const char *path);
/* Program @name beside this one. */
void bench_exe_path(char *buf, size_t len, const char *name);
/* A private shmbusd, our child, listening on @sock; stopped with
 * bench_reap(pid, SIGTERM). */
pid_t bench_daemon_start(const char *sock, const char *state_dir,
			 const char *log);
void bench_reap(pid_t pid, int sig);
/* Has @pid exited: gone, or a zombie its parent has not reaped yet? */
bool bench_pid_gone(pid_t pid);
/* The pinning every benchmark uses: CPU 0 and CPU 1 allowed, or die(). */
void bench_check_cpus(void);
/* --size's argument: the index of 64 or 4096 in sizes[], or die(). */
int bench_size_arg(const char *arg);
/* The first line of what shell command @cmd prints ("?" if none). */
const char *bench_cmd_line(char *buf, size_t len, const char *cmd);
/* @cleanup at exit(), which SIGINT, SIGTERM and SIGHUP then call too. */
void bench_at_exit(void (*cleanup)(void));

/* ------------------------------------------------------------------ */
/* Payload: written whole by the sender, read whole by the receiver   */
/* ------------------------------------------------------------------ */

/* Word i (8 bytes at offset 8 * i) holds seq + 8 * i. */
static inline void fill(void *buf, size_t len, uint64_t seq)
{
	unsigned char *p = buf;

	for (size_t off = 0; off < len; off += 8) {
		uint64_t v = seq + off;

		memcpy(p + off, &v, sizeof(v));
	}
}

/* Sum every word; 0 if the message is the one sent as @seq. */
static inline int verify(const void *buf, size_t len, uint64_t seq)
{
	const unsigned char *p = buf;
	uint64_t n = len / 8, sum = 0, first;

	for (size_t off = 0; off < len; off += 8) {
		uint64_t v;

		memcpy(&v, p + off, sizeof(v));
		sum += v;
	}
	memcpy(&first, p, sizeof(first));
	if (first != seq || sum != n * seq + 4 * n * (n - 1))
		return -EBADMSG;
	return 0;
}

static inline int write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static inline int read_full(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EPIPE;	/* the peer is gone */
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Transport interface (transport.c and transport_*.c)                */
/* ------------------------------------------------------------------ */

struct raw_ring;

/* One direction of one channel, as one child holds it. */
struct end {
	size_t size;
	bool block;
	bool tx;
	int fd;				/* pipe, socket, raw eventfd */
	struct raw_ring *ring;
	uint64_t pos;			/* raw: our index */
	uint64_t cached;		/* raw: last seen index of the peer */
	struct shmbus_producer *prod;
	struct shmbus_consumer *cons;
	void *buf;			/* local message buffer */
	void *priv;			/* a peer's own state (peers/) */
};

struct transport {
	const char *name;
	bool has_busy;			/* busy-poll mode is meaningful */
	/* parent, before fork: make @nchan channels */
	int (*prepare)(const struct run *r, int nchan);
	/* child, once */
	int (*child_init)(void);
	void (*child_fini)(void);
	int (*open)(struct end *e, int chan);
	void (*close)(struct end *e);
	int (*send)(struct end *e, uint64_t seq);
	int (*recv)(struct end *e, uint64_t seq);
};

/* transport.c: the table, and the fds that prepare() makes */
extern const struct transport transports[NR_TP];
void prep_fd_add(int fd);
void prep_fds_close(void);
void prep_fds_keep(const struct end *a, const struct end *b);
int no_child_init(void);
void no_child_fini(void);
void no_close(struct end *e);

/* transport_raw.c: a minimal raw SPSC shared-memory ring */
void raw_map_rings(void);
int raw_prepare(const struct run *r, int nchan);
int raw_open(struct end *e, int chan);
int raw_send(struct end *e, uint64_t seq);
int raw_recv(struct end *e, uint64_t seq);

/* transport_shmbus.c: copy publish or loan/commit; view receive */
int sb_prepare(const struct run *r, int nchan);
int sb_child_init(void);
void sb_child_fini(void);
int sb_open(struct end *e, int chan);
int sb_open_ack(struct end *e, int chan);
int sb_sum_prepare(const struct run *r, int nchan);
int sb_open_sum(struct end *e, int chan);
void sb_close(struct end *e);
int sb_send(struct end *e, uint64_t seq);
int sb_loan_send(struct end *e, uint64_t seq);
int sb_recv(struct end *e, uint64_t seq);

/* transport_fd.c: pipe and Unix stream socketpair */
int pipe_prepare(const struct run *r, int nchan);
int uds_prepare(const struct run *r, int nchan);
int fd_open(struct end *e, int chan);
int fd_send(struct end *e, uint64_t seq);
int fd_recv(struct end *e, uint64_t seq);

#ifdef SHMBUS_BENCH_PEERS
#include "peers/peers.h"	/* the peers' operations */
#endif

/* ------------------------------------------------------------------ */
/* Children (child.c) and the parent's measurements (run.c)           */
/* ------------------------------------------------------------------ */

void pin_cpu(int cpu);
__attribute__((noreturn))
void child_main(const struct run *r, int role);

void kill_kids(void);
void reap_kids(void);
void parent_alarm(int sig);
/* If set, called after each round-trip measurement with its samples
 * still in sh->samples, sorted (shmbus-bench-peers' CDF plots). */
extern void (*rtt_samples_hook)(int si, enum tp tp, enum mode m,
				unsigned rep);
bool row_runs(enum tp tp, enum mode m);
void run_size(int si);
/*
 * One of the options that shape the matrix (getopt_long's @opt 'q', 'r',
 * 's' or 'm', with @arg): --quick, --reps N, --size S (*@size set) and
 * --mode M (*@mode set), into cfg; die() on a bad value. False if @opt is
 * none of them.
 */
bool matrix_opt(int opt, const char *arg, bool *size, bool *mode);

/* ------------------------------------------------------------------ */
/* Results and statistics (stats.c)                                   */
/* ------------------------------------------------------------------ */

struct rtt_stat {
	double p50, p99, p999, max;	/* us */
};

/* Results of one row (transport x mode) at one size, per repetition. */
struct cell {
	unsigned nrtt, ntput;
	struct rtt_stat rtt[MAX_REPS];
	double tput[MAX_REPS];		/* msg/s */
};

extern struct cell cells[NR_SIZES][NR_TP][NR_MODES];	/* run.c */

struct rtt_stat rtt_from_samples(void);
struct rtt_stat cell_rtt(const struct cell *c);
double cell_tput(const struct cell *c);
double p50_of(int si, enum tp tp, enum mode m);
/* Each repetition's p50 round trip (us), in @v of MAX_REPS: how many. */
unsigned cell_p50s(const struct cell *c, double *v);
/* The repetitions of the p50 round trip, or of the throughput, disagree
 * by more than REPS_SPREAD_LIMIT. The tails (p99 and above) are not
 * checked: one preemption moves them by more than that. */
bool cell_rtt_spread(const struct cell *c);
bool cell_tput_spread(const struct cell *c);

/* ------------------------------------------------------------------ */
/* The bus and its private daemon (daemon.c)                          */
/* ------------------------------------------------------------------ */

void setup_socket(void);
void setup_bus(void);
const char *bus_socket(void);
void signal_daemon(void);
void teardown_bus(bool run_ok);

/* ------------------------------------------------------------------ */
/* Report (report.c) and the semantics runs                           */
/* ------------------------------------------------------------------ */

void print_machine(void);
void print_table(int si);
void print_checksum_cost(void);
void print_goals(void);
void print_queue_stats(void);
void print_end(void);

void run_fanout(unsigned nsub, double *pub_rate, double *deliv_rate);
void run_reqrep(uint64_t n, struct rtt_stat *req, struct rtt_stat *pp,
		double *mean_us);
void run_semantics(void);

/* What run_semantics() measured, for the goals (report.c). */
struct sem_results {
	bool measured;
	double rtt_p50;			/* shmbus busy ping-pong, 64 B, us,
					 * alternating with the requests */
	double reqrep_p50;		/* request-reply, us */
	double fan1_delivery;		/* deliveries/s, 1 subscriber */
	double fan8_delivery;		/* deliveries/s, 8 subscribers */
};

extern struct sem_results sem;

#endif /* SHMBUS_BENCH_H */
