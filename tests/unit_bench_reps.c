// SPDX-License-Identifier: MIT
/*
 * unit_bench_reps.c - the benchmark's summary of repetitions
 * (tools/bench/reps.c): median, least and largest of synthetic values,
 * and the spread warning, which flags repetitions more than 2x apart and
 * nothing else: not 2x exactly, not a single value, not values it cannot
 * divide.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../tools/bench/reps.h"

static void summary(void **state)
{
	static const double odd[] = { 3.0, 1.0, 2.0 };
	static const double even[] = { 4.0, 1.0, 3.0, 2.0 };
	struct reps r;

	(void)state;
	r = reps_summary(odd, 3);
	assert_int_equal(r.n, 3);
	assert_true(r.median == 2.0 && r.min == 1.0 && r.max == 3.0);
	r = reps_summary(even, 4);
	assert_true(r.median == 2.5 && r.min == 1.0 && r.max == 4.0);
	r = reps_summary(odd, 1);
	assert_true(r.median == 3.0 && r.min == 3.0 && r.max == 3.0);
	r = reps_summary(NULL, 0);
	assert_int_equal(r.n, 0);
	assert_true(isnan(r.median) && isnan(r.min) && isnan(r.max));
	/* the input is left as it was: its order is the run's order */
	assert_true(odd[0] == 3.0 && odd[1] == 1.0 && odd[2] == 2.0);
}

/* More than 2x apart: the run of this VM whose vCPUs moved. */
static void spread_over_2x(void **state)
{
	static const double rtt[] = { 0.22, 0.61, 0.25 };	/* 2.77x */
	static const double tput[] = { 4.32e6, 10.24e6, 9.0e6 };	/* 2.37x */
	static const double just[] = { 1.0, 2.0001 };

	(void)state;
	assert_true(reps_spread(rtt, 3));
	assert_true(reps_spread(tput, 3));
	assert_true(reps_spread(just, 2));
}

/* At most 2x apart, or nothing to compare. */
static void spread_within_2x(void **state)
{
	static const double steady[] = { 0.35, 0.37, 0.35 };	/* 1.06x */
	static const double exactly[] = { 1.0, 2.0 };
	static const double wide_one[] = { 100.0 };
	static const double zero[] = { 0.0, 5.0 };
	static const double negative[] = { -1.0, 5.0 };
	const double with_nan[] = { NAN, 1.0, 5.0 };
	const double with_inf[] = { 1.0, INFINITY };

	(void)state;
	assert_false(reps_spread(steady, 3));
	assert_false(reps_spread(exactly, 2));
	assert_false(reps_spread(wide_one, 1));
	assert_false(reps_spread(NULL, 0));
	assert_false(reps_spread(zero, 2));
	assert_false(reps_spread(negative, 2));
	assert_false(reps_spread(with_nan, 3));
	assert_false(reps_spread(with_inf, 2));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(summary),
		cmocka_unit_test(spread_over_2x),
		cmocka_unit_test(spread_within_2x),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
