// SPDX-License-Identifier: MIT
/*
 * semantics.c - the report on what shmbus's semantics cost at 64 B, next
 * to the raw ring of the same run: ack mode against auto-ack (from the
 * matrix's busy-poll throughput), topic fan-out to 1, 2, 4 and 8
 * subscribers (fanout.c) and request-reply round trips (reqrep.c). Runs
 * only when the matrix measured what it compares against. Each of these
 * is measured once: their rows for machines have one repetition.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "bench.h"

static const unsigned fan_subs[] = { 1, 2, 4, 8 };

struct sem_results sem;

/* A row of one measurement, 64 B. */
static void emit_one(const char *bench, const char *transport,
		     const char *mode, const char *unit, double v)
{
	struct out_row r = {
		.bench = bench, .transport = transport, .mode = mode,
		.size = 64, .unit = unit, .reps = &v, .nreps = 1,
		.spread = OUT_NA, .ratio = NAN, .met = OUT_NA,
	};

	out_row(&r);
}

/* The ack line and the head of the fan-out table. */
static void head_text(double raw, double aa, double ack)
{
	printf("== semantics, 64 B, next to the raw ring of this run ==\n");
	printf("ack mode vs auto-ack, busy-poll throughput:\n");
	printf("  raw ring %.2fM msg/s; shmbus auto-ack %.2fM (%.0f%%); "
	       "shmbus ack %.2fM (%.0f%% of raw, %.0f%% of auto-ack)\n",
	       raw / 1e6, aa / 1e6, 100 * aa / raw, ack / 1e6,
	       100 * ack / raw, 100 * ack / aa);
	printf("topic fan-out (one publisher, N subscriber processes, "
	       "%u messages):\n", FAN_MSGS);
	printf("  %4s %14s %16s %14s %12s\n", "subs", "publishes/s",
	       "deliveries/s", "ns/publish", "vs raw ring");
}

static void run_fanouts(double raw)
{
	bool text = cfg.format == OUT_TEXT;

	for (unsigned i = 0; i < sizeof(fan_subs) / sizeof(fan_subs[0]); i++) {
		char tp[40];
		double pr, dr;

		run_fanout(fan_subs[i], &pr, &dr);
		if (fan_subs[i] == 1)
			sem.fan1_delivery = dr;
		if (fan_subs[i] == 8)
			sem.fan8_delivery = dr;
		if (text) {
			printf("  %4u %13.2fM %15.2fM %14.0f %11.2fx\n",
			       fan_subs[i], pr / 1e6, dr / 1e6, 1e9 / pr,
			       pr / raw);
			fflush(stdout);
			continue;
		}
		/* the default spin (50 us), then blocking */
		snprintf(tp, sizeof(tp), "shmbus topic %u subscriber%s",
			 fan_subs[i], fan_subs[i] == 1 ? "" : "s");
		emit_one("fanout_publish", tp, "spin-block", "msg/s", pr);
		emit_one("fanout_delivery", tp, "spin-block", "msg/s", dr);
	}
}

static void run_reqreps(double raw_rtt, double sb_rtt)
{
	struct rtt_stat rr, pp;
	double mean;

	run_reqrep(cfg.rtt_busy, &rr, &pp, &mean);
	sem.reqrep_p50 = rr.p50;
	sem.rtt_p50 = pp.p50;
	if (cfg.format != OUT_TEXT) {
		emit_one("reqrep_rtt_p50", "shmbus request", "busy", "us",
			 rr.p50);
		emit_one("reqrep_rtt_p99", "shmbus request", "busy", "us",
			 rr.p99);
		emit_one("reqrep_rtt_mean", "shmbus request", "busy", "us",
			 mean);
		emit_one("reqrep_pingpong_rtt_p50", "shmbus request", "busy",
			 "us", pp.p50);
		return;
	}
	printf("request-reply round trip (shmbus__request against a replier "
	       "process, busy,\nin blocks alternating with ping-pongs through "
	       "the same replier):\n");
	printf("  p50 %.2f us, p99 %.2f us, mean %.2f us; the ping-pongs "
	       "p50 %.2f us (%.2fx);\n  raw ring RTT p50 %.2f us (%.2fx); "
	       "the matrix's shmbus RTT p50 %.2f us (%.2fx)\n\n",
	       rr.p50, rr.p99, mean, pp.p50, rr.p50 / pp.p50, raw_rtt,
	       rr.p50 / raw_rtt, sb_rtt, rr.p50 / sb_rtt);
}

/* After the matrix and its report, from the matrix's 64 B busy rows. */
void run_semantics(void)
{
	double raw = cell_tput(&cells[0][TP_RAW][MODE_BUSY]);
	double ack = cell_tput(&cells[0][TP_ACK][MODE_BUSY]);
	double aa = cell_tput(&cells[0][TP_SHMBUS][MODE_BUSY]);

	if (!cfg.size_on[0] || !cfg.tp_on[TP_RAW] || !cfg.tp_on[TP_SHMBUS] ||
	    !cfg.tp_on[TP_ACK] || !cfg.mode_on[MODE_BUSY])
		return;
	/* (ack against auto-ack is a goal row for machines: report.c) */
	if (cfg.format == OUT_TEXT)
		head_text(raw, aa, ack);
	run_fanouts(raw);
	run_reqreps(p50_of(0, TP_RAW, MODE_BUSY),
		    p50_of(0, TP_SHMBUS, MODE_BUSY));
	sem.measured = true;
}
