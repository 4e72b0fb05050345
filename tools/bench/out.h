/* SPDX-License-Identifier: MIT */
/*
 * out.h - a benchmark's report for machines, on stdout: one JSON
 * document, or CSV with a header line and one line per measured row.
 * The text report is each program's own; these are the other formats of
 * --format. Rows have the same fields in both (docs/benchmarks.md):
 *
 *   benchmark, transport, mode, size, unit, median, min, max, reps,
 *   spread_warning, ratio, goal, met
 *
 * A measurement row has the repetitions' values (reps) and their
 * summary; a ratio row has a ratio, and, when it is measured against a
 * goal, the goal and whether it was met. What a row does not have is
 * null in JSON and empty in CSV.
 */
#ifndef SHMBUS_BENCH_OUT_H
#define SHMBUS_BENCH_OUT_H

#include <stdbool.h>
#include <stddef.h>

enum out_format { OUT_TEXT, OUT_JSON, OUT_CSV };

/* "text", "json" or "csv"; -1 for anything else. */
int out_format_arg(const char *arg);

/* A yes/no field that may also not apply (null, empty). */
enum out_tri { OUT_NA = -1, OUT_NO = 0, OUT_YES = 1 };

struct out_row {
	const char *bench;
	const char *transport;
	const char *mode;
	size_t size;			/* message bytes */
	const char *unit;
	const double *reps;		/* each repetition's value; NULL: none */
	unsigned nreps;
	enum out_tri spread;		/* OUT_NA: not a number to check */
	double ratio;			/* NAN: not a ratio row */
	const char *goal;		/* NULL: no goal */
	enum out_tri met;
};

/*
 * The document: out_begin(), then the facts (JSON only: CSV has the rows
 * alone) as objects of strings and numbers, then the rows, then
 * out_end(). Objects do not nest.
 */
void out_begin(enum out_format f);
void out_object(const char *name);
void out_str(const char *key, const char *val);
void out_num(const char *key, double val);
void out_bool(const char *key, bool val);
void out_strv(const char *key, const char *const *v, unsigned n);
void out_numv(const char *key, const double *v, unsigned n);
void out_object_end(void);
void out_row(const struct out_row *r);
void out_end(void);

#endif /* SHMBUS_BENCH_OUT_H */
