/* SPDX-License-Identifier: MIT */
/*
 * reps.h - the repetitions of one measurement, summarized: median, least
 * and largest, and whether they disagree too much to be trusted alone.
 * No state and no other part of the benchmark, so that a unit test
 * (tests/unit_bench_reps.c) can link it by itself.
 */
#ifndef SHMBUS_BENCH_REPS_H
#define SHMBUS_BENCH_REPS_H

#include <stdbool.h>

/*
 * Repetitions whose largest is more than this times their least are
 * flagged: on a VM whose vCPUs the hypervisor moves, two runs of the same
 * code differ by 2-3x (docs/benchmarks.md), so such a number says more
 * about the placement than about the code.
 */
#define REPS_SPREAD_LIMIT	2.0

/* the most repetitions of one measurement (shmbus-bench's MAX_REPS,
 * shmbus-bench-bridge's B_MAX_REPS are at most this) */
#define REPS_MAX		16

struct reps {
	unsigned n;
	double median, min, max;	/* NAN when n is 0 */
};

/* Of the first @n (at most REPS_MAX) values of @v. */
struct reps reps_summary(const double *v, unsigned n);

/* max/min > REPS_SPREAD_LIMIT; false for fewer than two values, and for
 * values that are not all positive (no ratio to take). */
bool reps_spread(const double *v, unsigned n);

#endif /* SHMBUS_BENCH_REPS_H */
