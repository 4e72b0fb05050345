// SPDX-License-Identifier: MIT
/*
 * scale.h - what the parts of shmbus-bench-scale share: the sweeps, the
 * options, the memory shared with the children, the children themselves
 * (kids.c), one sweep's results (struct sweep) and the report (report.c).
 * What the program measures, and how, is told at the top of main.c.
 */
#ifndef SHMBUS_BENCH_SCALE_H
#define SHMBUS_BENCH_SCALE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "../bench.h"

#define S_MAX_REPS		REPS_MAX
#define S_MAX_POINTS		16	/* x values of one sweep */
#define S_MAX_COLS		5	/* measured values of one point */
#define S_MAX_KIDS		72	/* 64 subscribers and a publisher */
#define S_KID_TIMEOUT_S		120	/* one measurement, per child */
#define S_STOP			UINT64_MAX	/* first word of a stop message */

enum sweep_id { SW_QUEUES, SW_CONSUMERS, SW_FANOUT, SW_SIZES, SW_DEPTH,
		NR_SWEEPS };

struct scale_cfg {
	bool quick;
	unsigned reps;
	bool on[NR_SWEEPS];
	const char *plots;		/* NULL: no plots */
};

extern struct scale_cfg scfg;			/* main.c */

/*
 * Shared with the children (MAP_SHARED before fork). The arrays after
 * the header are per message sequence number: set up by the parent
 * before each measurement (s_arrays()).
 */
struct scale_sh {
	uint32_t ready;			/* children attached */
	uint32_t __pad;
	uint64_t t_start;		/* the producer's first publish */
	uint64_t t_pub_end;		/* after its last publish */
	uint64_t t_end[S_MAX_KIDS];	/* each receiver's last receive */
	uint64_t v[8];			/* a child's figures (depth, sizes) */
};

extern struct scale_sh *ssh;			/* kids.c */
extern uint32_t *s_seen;	/* per seq: deliveries (1, never 2) */
extern uint64_t *s_lat;		/* per seq: publish to receive, ns */
extern uint64_t *s_recv;	/* per seq: receive time, ns */
extern uint64_t *s_samples;	/* round trips, ns */

/* ------------------------------------------------------------------ */
/* Children (kids.c)                                                  */
/* ------------------------------------------------------------------ */

/* Map the shared memory for up to @nseq sequence numbers and @nsamples
 * round trips (once, at start). */
void s_map(uint64_t nseq, uint64_t nsamples);
/* Clear the header and the first @nseq entries of each array. */
void s_reset(uint64_t nseq);

/* Fork a child pinned to @cpu that opens its own handle on bus @bus
 * (the global sbus), runs @fn(@arg) and exits 0; a child that fails
 * die()s (exit 1) or times out (S_KID_TIMEOUT_S, exit 124). */
void s_spawn(const char *label, int cpu, void (*fn)(long), long arg);
/* Wait for every child; die() naming the first that failed. */
void s_wait_all(void);
/* Stop every child we still have (at exit, after a failure). */
void s_kill_all(void);

/* The bus of the sweep that runs: the parent's handle, then each
 * child's own. */
extern struct shmbus *sbus;
extern char sbus_name[32];

/* Create bus @name with @o (it must not exist: a leftover of an earlier
 * run of ours is deleted first) as sbus; s_bus_done() deletes it. */
void s_bus_open(const char *name, const struct shmbus_open_opts *o);
void s_bus_done(void);
void s_declare(const char *q, uint32_t max_len, uint32_t msg_size,
	       uint32_t max_consumers);

/* Wait (sleeping) until @n children have attached. */
void s_wait_ready(uint32_t n);
/* A child: it has attached. */
void s_ready(void);

/* ------------------------------------------------------------------ */
/* Results and the report (report.c)                                  */
/* ------------------------------------------------------------------ */

struct col {
	const char *name;		/* table head */
	const char *unit;		/* plot axis */
	const char *fmt;		/* printf of one value / div; NULL:
					 * bytes, the same in every repetition */
	double div;			/* 0: 1 */
	bool plot;
	bool y2;			/* the plot's right axis */
	bool nospread;			/* counts near 0: no 2x flag */
};

struct sweep {
	const char *key;		/* --only name, file names */
	const char *title;
	const char *xname;		/* table head and plot axis */
	const char *note;		/* under the table */
	unsigned ncols;
	struct col cols[S_MAX_COLS];
	bool ylog, y2log;
	unsigned npoints;
	uint64_t x[S_MAX_POINTS];
	unsigned n[S_MAX_POINTS];	/* repetitions done */
	double v[S_MAX_POINTS][S_MAX_COLS][S_MAX_REPS];
};

extern struct sweep sweeps[NR_SWEEPS];		/* report.c */

/* The repetition @rep of point @pi of @sw: @vals (ncols of them). */
void s_result(struct sweep *sw, unsigned pi, const double *vals);
void s_print_machine(void);
void s_print_table(const struct sweep *sw);
/* The sweep's data file and PNG in scfg.plots: 0, or -1 (said why). */
int s_plot(const struct sweep *sw);

/* ------------------------------------------------------------------ */
/* The sweeps                                                         */
/* ------------------------------------------------------------------ */

void sweep_queues(struct sweep *sw);
void sweep_consumers(struct sweep *sw);
void sweep_fanout(struct sweep *sw);
void sweep_sizes(struct sweep *sw);
void sweep_depth(struct sweep *sw);

/* sort @v (n of them) and return its @q quantile (0..1) */
uint64_t s_quantile(uint64_t *v, uint64_t n, double q);

#endif /* SHMBUS_BENCH_SCALE_H */
