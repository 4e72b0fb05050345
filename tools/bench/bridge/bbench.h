/* SPDX-License-Identifier: MIT */
/*
 * bbench.h - what the parts of shmbus-bench-bridge share: the
 * configuration, the names on both sides, one repetition's result, and
 * the entry points of cells.c. What the program measures, and how, is
 * told at the top of main.c.
 */
#ifndef SHMBUS_BBENCH_H
#define SHMBUS_BBENCH_H

#include <stdbool.h>
#include <stdint.h>

#include "../bench.h"

#define B_BUS		"bbench"
#define B_MAX_REPS	15
#define B_EXCHANGE	"amq.direct"	/* every AMQP queue is bound to it
					 * with its own name as the key */

enum b_dir { B_OUT, B_IN, B_NR_DIR };
enum b_kind { B_PLAIN, B_BRIDGE, B_NR_KIND };

struct bconfig {
	unsigned reps;		/* of each cell, interleaved */
	uint64_t msgs[NR_SIZES];/* per throughput repetition */
	unsigned lat_msgs;	/* per latency repetition */
	unsigned window;	/* the bridge's prefetch = the plain clients'
				 * confirm window and prefetch */
	bool size_on[NR_SIZES];
	bool dir_on[B_NR_DIR];
	char dir[256];		/* RabbitMQ's files go under it */
};

extern struct bconfig bcfg;

/* One throughput repetition: msg/s, and CPU time per message of the
 * broker, of our plain client or local side, and of the bridge. */
struct b_tput {
	double rate;
	double broker_us, client_us, bridge_us;
};

/* One latency repetition: percentiles of its messages, us. */
struct b_lat {
	double p50, p99;
};

/* cells.c */
void b_setup(void);			/* daemon, broker, bus, queues */
void b_teardown(bool ok);		/* what b_setup started, by pid */
struct b_tput b_tput(enum b_dir d, enum b_kind k, int si);
/* Latency of one repetition: the plain path (AMQP publish -> AMQP
 * consumer) with @k B_PLAIN, else through the bridge in direction @d. */
struct b_lat b_latency(enum b_dir d, enum b_kind k, int si);

#endif /* SHMBUS_BBENCH_H */
