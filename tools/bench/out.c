// SPDX-License-Identifier: MIT
/*
 * out.c - the JSON and CSV reports (out.h). JSON: one object, its facts
 * one member a line and its rows one object a line, so that a diff of two
 * runs reads row by row. CSV: RFC 4180, a field quoted when it holds a
 * comma, a quote or a line break; a row's repetitions are one field,
 * their values joined by ';', so that every line has the same fields.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "out.h"
#include "reps.h"

static enum out_format fmt;
static bool first;			/* no member yet at this level */
static bool in_object;
static bool rows_open;			/* JSON: "rows": [ is out */

static const char *const csv_fields[] = {
	"benchmark", "transport", "mode", "size", "unit", "median", "min",
	"max", "reps", "spread_warning", "ratio", "goal", "met",
};

int out_format_arg(const char *arg)
{
	if (!strcmp(arg, "text"))
		return OUT_TEXT;
	if (!strcmp(arg, "json"))
		return OUT_JSON;
	if (!strcmp(arg, "csv"))
		return OUT_CSV;
	return -1;
}

/* ---- JSON --------------------------------------------------------- */

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

/* JSON has no NaN or infinity: a number not measured is null. */
static void json_num(double v)
{
	if (isfinite(v))
		printf("%.10g", v);
	else
		printf("null");
}

static void json_array(const double *v, unsigned n)
{
	putchar('[');
	for (unsigned i = 0; i < n; i++) {
		printf("%s", i ? ", " : "");
		json_num(v[i]);
	}
	putchar(']');
}

static void json_tri(enum out_tri t)
{
	printf("%s", t == OUT_NA ? "null" : t ? "true" : "false");
}

/* The separator before a member, and its key. */
static void json_key(const char *key)
{
	printf("%s\n%s", first ? "" : ",", in_object ? "    " : "  ");
	first = false;
	json_str(key);
	printf(": ");
}

void out_begin(enum out_format f)
{
	fmt = f;
	if (fmt == OUT_CSV) {
		for (size_t i = 0; i < sizeof(csv_fields) / sizeof(*csv_fields);
		     i++)
			printf("%s%s", i ? "," : "", csv_fields[i]);
		putchar('\n');
		return;
	}
	putchar('{');
	first = true;
}

void out_object(const char *name)
{
	if (fmt != OUT_JSON)
		return;
	json_key(name);
	putchar('{');
	first = true;
	in_object = true;
}

void out_object_end(void)
{
	if (fmt != OUT_JSON)
		return;
	printf("\n  }");
	in_object = false;
}

void out_str(const char *key, const char *val)
{
	if (fmt != OUT_JSON)
		return;
	json_key(key);
	json_str(val);
}

void out_num(const char *key, double val)
{
	if (fmt != OUT_JSON)
		return;
	json_key(key);
	json_num(val);
}

void out_bool(const char *key, bool val)
{
	if (fmt != OUT_JSON)
		return;
	json_key(key);
	printf("%s", val ? "true" : "false");
}

void out_strv(const char *key, const char *const *v, unsigned n)
{
	if (fmt != OUT_JSON)
		return;
	json_key(key);
	putchar('[');
	for (unsigned i = 0; i < n; i++) {
		printf("%s", i ? ", " : "");
		json_str(v[i]);
	}
	putchar(']');
}

void out_numv(const char *key, const double *v, unsigned n)
{
	if (fmt != OUT_JSON)
		return;
	json_key(key);
	json_array(v, n);
}

/* A string member of a row; NULL is null. */
static void json_row_str(const char *key, const char *val)
{
	printf(", \"%s\": ", key);
	if (val)
		json_str(val);
	else
		printf("null");
}

static void json_row_num(const char *key, double val)
{
	printf(", \"%s\": ", key);
	json_num(val);
}

static void json_row(const struct out_row *r, bool first_row,
		     double median, double min, double max)
{
	printf("%s\n    {\"benchmark\": ", first_row ? "" : ",");
	json_str(r->bench);
	json_row_str("transport", r->transport);
	json_row_str("mode", r->mode);
	printf(", \"size\": %zu", r->size);
	json_row_str("unit", r->unit);
	json_row_num("median", median);
	json_row_num("min", min);
	json_row_num("max", max);
	printf(", \"reps\": ");
	json_array(r->reps, r->reps ? r->nreps : 0);
	printf(", \"spread_warning\": ");
	json_tri(r->spread);
	json_row_num("ratio", r->ratio);
	json_row_str("goal", r->goal);
	printf(", \"met\": ");
	json_tri(r->met);
	putchar('}');
}

/* ---- CSV ---------------------------------------------------------- */

static void csv_str(const char *s)
{
	if (!s)
		return;
	if (!strpbrk(s, ",\"\r\n")) {
		printf("%s", s);
		return;
	}
	putchar('"');
	for (; *s; s++) {
		if (*s == '"')
			putchar('"');
		putchar(*s);
	}
	putchar('"');
}

static void csv_num(double v)
{
	if (isfinite(v))
		printf("%.10g", v);
}

static void csv_tri(enum out_tri t)
{
	if (t != OUT_NA)
		printf("%s", t ? "true" : "false");
}

static void csv_row(const struct out_row *r, double median, double min,
		    double max)
{
	csv_str(r->bench);
	putchar(',');
	csv_str(r->transport);
	putchar(',');
	csv_str(r->mode);
	printf(",%zu,", r->size);
	csv_str(r->unit);
	putchar(',');
	csv_num(median);
	putchar(',');
	csv_num(min);
	putchar(',');
	csv_num(max);
	putchar(',');
	for (unsigned i = 0; r->reps && i < r->nreps; i++) {
		if (i)
			putchar(';');
		csv_num(r->reps[i]);
	}
	putchar(',');
	csv_tri(r->spread);
	putchar(',');
	csv_num(r->ratio);
	putchar(',');
	csv_str(r->goal);
	putchar(',');
	csv_tri(r->met);
	putchar('\n');
}

/* ---- rows --------------------------------------------------------- */

void out_row(const struct out_row *r)
{
	struct reps s = reps_summary(r->reps, r->reps ? r->nreps : 0);

	if (fmt == OUT_CSV) {
		csv_row(r, s.median, s.min, s.max);
		return;
	}
	if (!rows_open) {
		json_key("rows");
		putchar('[');
	}
	json_row(r, !rows_open, s.median, s.min, s.max);
	rows_open = true;
}

void out_end(void)
{
	if (fmt == OUT_JSON) {
		if (!rows_open) {
			json_key("rows");
			putchar('[');
		}
		printf("%s]\n}\n", rows_open ? "\n  " : "");
	}
	fflush(stdout);
}
