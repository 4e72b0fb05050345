// SPDX-License-Identifier: MIT
/*
 * reps.c - the summary of a measurement's repetitions (reps.h).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reps.h"

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

struct reps reps_summary(const double *v, unsigned n)
{
	double s[REPS_MAX];
	struct reps r = { 0, NAN, NAN, NAN };

	if (!n)
		return r;
	if (n > REPS_MAX)
		n = REPS_MAX;
	memcpy(s, v, n * sizeof(*v));
	qsort(s, n, sizeof(*s), cmp_double);
	r.n = n;
	r.median = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
	r.min = s[0];
	r.max = s[n - 1];
	return r;
}

bool reps_spread(const double *v, unsigned n)
{
	double lo = INFINITY, hi = 0;

	if (n < 2)
		return false;
	for (unsigned i = 0; i < n; i++) {
		/* !(x > 0) is also true for a NAN */
		if (!(v[i] > 0) || !isfinite(v[i]))
			return false;
		lo = fmin(lo, v[i]);
		hi = fmax(hi, v[i]);
	}
	return hi / lo > REPS_SPREAD_LIMIT;
}
