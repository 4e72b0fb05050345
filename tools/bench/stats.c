// SPDX-License-Identifier: MIT
/*
 * stats.c - the statistics of the results: nearest-rank percentiles of
 * the round-trip samples a measurement left in shared memory, and the
 * median over repetitions of each statistic of a cell (max: the largest
 * seen), through reps.c; and whether a cell's repetitions disagree.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

_Static_assert(MAX_REPS <= REPS_MAX, "reps.c summarizes REPS_MAX at most");

/* Nearest-rank percentile of sorted @v, in us. */
static double pct_us(const uint64_t *v, uint64_t n, double q)
{
	uint64_t rank = (uint64_t)ceil(q * (double)n);

	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return (double)v[rank - 1] / 1000.0;
}

/* The round trips the last measurement left in shared memory (sorted in
 * place). */
struct rtt_stat rtt_from_samples(void)
{
	uint64_t n = sh->nsamples;
	struct rtt_stat s;

	if (!n)
		die("no RTT samples came back");
	qsort(sh->samples, n, sizeof(sh->samples[0]), cmp_u64);
	s.p50 = pct_us(sh->samples, n, 0.50);
	s.p99 = pct_us(sh->samples, n, 0.99);
	s.p999 = pct_us(sh->samples, n, 0.999);
	s.max = (double)sh->samples[n - 1] / 1000.0;
	return s;
}

static double median(const double *v, unsigned n)
{
	return reps_summary(v, n).median;
}

/* Median over repetitions of each percentile; max is the largest seen. */
struct rtt_stat cell_rtt(const struct cell *c)
{
	double v[4][MAX_REPS];
	struct rtt_stat s = { NAN, NAN, NAN, NAN };

	if (!c->nrtt)
		return s;
	for (unsigned i = 0; i < c->nrtt; i++) {
		v[0][i] = c->rtt[i].p50;
		v[1][i] = c->rtt[i].p99;
		v[2][i] = c->rtt[i].p999;
		v[3][i] = c->rtt[i].max;
	}
	s.p50 = median(v[0], c->nrtt);
	s.p99 = median(v[1], c->nrtt);
	s.p999 = median(v[2], c->nrtt);
	s.max = reps_summary(v[3], c->nrtt).max;
	return s;
}

/* Median over repetitions of the throughput, msg/s. */
double cell_tput(const struct cell *c)
{
	return median(c->tput, c->ntput);
}

unsigned cell_p50s(const struct cell *c, double *v)
{
	for (unsigned i = 0; i < c->nrtt; i++)
		v[i] = c->rtt[i].p50;
	return c->nrtt;
}

bool cell_rtt_spread(const struct cell *c)
{
	double v[MAX_REPS];

	return reps_spread(v, cell_p50s(c, v));
}

bool cell_tput_spread(const struct cell *c)
{
	return reps_spread(c->tput, c->ntput);
}

/* The reported p50 round trip of one row at one size, us. */
double p50_of(int si, enum tp tp, enum mode m)
{
	return cell_rtt(&cells[si][tp][m]).p50;
}
