// SPDX-License-Identifier: MIT
/*
 * dbench.h - what the parts of shmbus-bench-durable share: the
 * configuration, the memory shared with the producer and consumer
 * processes, one measured cell, and each part's entry points. What the
 * program measures, and how, is told at the top of main.c. The payload
 * (fill/verify), now_ns() and the read/write loops are shmbus-bench's
 * (../bench.h), so that both benchmarks write and read every byte alike.
 */
#ifndef SHMBUS_DBENCH_H
#define SHMBUS_DBENCH_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "../bench.h"

#define D_BUS			"dbench"
#define D_RECOVERY_BUS		"dbench-recovery"
#define D_NR_BATCH		3
#define D_MAX_LAT		(1u << 20)	/* batch latencies kept */
#define D_KID_TIMEOUT_S		120		/* per cell, per process */
#define D_MAX_PROD		16		/* producers of one cell */
#define D_PROD_SHIFT		40		/* seq = producer << 40 | n */

extern const unsigned d_batches[D_NR_BATCH];	/* 1, 16, 256 */

/* What one cell runs on. */
enum d_kind {
	D_MEMORY,		/* an in-memory queue: the baseline */
	D_ALWAYS,		/* durable, SHMBUS_SYNC_ALWAYS */
	D_BATCH,		/* durable, SHMBUS_SYNC_BATCH, default interval */
	D_NEVER,		/* durable, SHMBUS_SYNC_NEVER */
	D_RABBIT,		/* RabbitMQ: persistent messages, confirms */
	D_NR_KIND,
};

extern const char *const d_kind_names[D_NR_KIND];

struct dconfig {
	double seconds;		/* measured time of one cell */
	double warm_s;		/* before it, not measured */
	uint64_t recovery_msgs;
	uint32_t max_len;	/* of a cell's queue */
	unsigned producers;	/* producer processes per cell (group
				 * commit shares a sync between them) */
	bool rabbit;		/* run RabbitMQ too */
	bool recovery;
	bool disk;		/* the write()/fdatasync baseline */
	bool size_on[NR_SIZES];
	char dir[256];		/* the state directory's parent, on disk */
};

extern struct dconfig dcfg;
extern bool d_anomalies;		/* a message lost, twice or late */
extern bool d_run_ok;			/* the daemon's log is not needed */

/* Shared with the producer and consumer of a cell (MAP_SHARED). */
struct dshared {
	uint32_t ready;		/* start barrier: all attached */
	uint32_t done;		/* producers that published their last batch */
	uint64_t total;		/* messages published, warm-up included */
	uint64_t counted;	/* messages in the measured time, all */
	uint64_t elapsed_ns;	/* the measured time (the longest producer's) */
	uint64_t received;	/* by the consumer */
	uint64_t drain_ns;	/* consumer: start to last message */
	/* recovery: CLOCK_MONOTONIC times, and what the consumer saw */
	uint64_t t_open, t_first, t_all;
	uint64_t live, replayed, dups, disorder;
	uint64_t nlat;
	uint64_t lat[D_MAX_LAT];/* per batch: first publish to confirm, ns */
};

extern struct dshared *dsh;

/* One measured cell: a kind, a batch size, a payload size. */
struct dcell {
	bool ran;
	double rate;		/* confirmed msg/s */
	double p50_us, p99_us;	/* batch confirm latency */
	double drain_rate;	/* the consumer's msg/s */
	double per_sync;	/* journal records per fdatasync; 0: none */
	uint64_t lost, dups, disorder;	/* what the consumer saw */
};

extern struct dcell dcells[D_NR_KIND][D_NR_BATCH][NR_SIZES];

/* main.c */
void d_cell_from_shared(struct dcell *c);
/* A producer's end of cell: its @counted messages in @elapsed_ns, @total
 * in all; its batch latencies went in with d_lat(). */
void d_producer_done(uint64_t counted, uint64_t total, uint64_t elapsed_ns);
void d_lat(uint64_t ns);
pid_t d_fork(const char *what);
void d_wait_kids(pid_t *kids, int n, const char *label);
void d_start_line(void);
void d_kid_timeout(const char *label);

/* daemon.c: a private shmbusd with a state directory */
void d_daemon_start(void);
void d_daemon_kill9(void);
void d_daemon_stop(void);
pid_t d_daemon_pid(void);
const char *d_state_dir(void);
const char *d_daemon_log(void);
void d_daemon_cleanup(void);
struct shmbus *d_bus_open(const char *name, bool create);

/* sbq.c: shmbus cells, on the parent's handle of the bench bus */
extern struct shmbus *d_bus;
void d_run_shmbus(enum d_kind k, unsigned bi, int si);

/* rabbit.c: RabbitMQ's cells, on the private server of ../rabbit/
 * (main.c sets d_rabbit_done after the last one) */
extern bool d_rabbit_done;
void d_run_rabbit(unsigned bi, int si);

/* recovery.c */
void d_run_recovery(void);

/* disk.c: a process that writes the records itself */
void d_run_disk(void);

#endif /* SHMBUS_DBENCH_H */
