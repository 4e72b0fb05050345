// SPDX-License-Identifier: MIT
/*
 * semantics.c - the report on what shmbus's semantics cost at 64 B, next
 * to the raw ring of the same run: ack mode against auto-ack (from the
 * matrix's busy-poll throughput), topic fan-out to 1, 2, 4 and 8
 * subscribers (fanout.c) and request-reply round trips (reqrep.c). Runs
 * only when the matrix measured what it compares against.
 */
#include <stdint.h>
#include <stdio.h>

#include "bench.h"

static const unsigned fan_subs[] = { 1, 2, 4, 8 };

/* After the matrix and its report, from the matrix's 64 B busy rows. */
void run_semantics(void)
{
	double raw = cell_tput(&cells[0][TP_RAW][MODE_BUSY]);
	double raw_rtt = p50_of(0, TP_RAW, MODE_BUSY);
	double sb_rtt = p50_of(0, TP_SHMBUS, MODE_BUSY);
	double ack = cell_tput(&cells[0][TP_ACK][MODE_BUSY]);
	double aa = cell_tput(&cells[0][TP_SHMBUS][MODE_BUSY]);
	struct rtt_stat rr;
	double mean;

	if (!cfg.size_on[0] || !cfg.tp_on[TP_RAW] || !cfg.tp_on[TP_SHMBUS] ||
	    !cfg.tp_on[TP_ACK] || !cfg.mode_on[MODE_BUSY])
		return;
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
	for (unsigned i = 0; i < sizeof(fan_subs) / sizeof(fan_subs[0]); i++) {
		double pr, dr;

		run_fanout(fan_subs[i], &pr, &dr);
		printf("  %4u %13.2fM %15.2fM %14.0f %11.2fx\n", fan_subs[i],
		       pr / 1e6, dr / 1e6, 1e9 / pr, pr / raw);
		fflush(stdout);
	}
	run_reqrep(cfg.rtt_busy, &rr, &mean);
	printf("request-reply round trip (shmbus__request against a replier "
	       "process, busy):\n");
	printf("  p50 %.2f us, p99 %.2f us, mean %.2f us; raw ring RTT p50 "
	       "%.2f us (%.2fx); shmbus RTT p50 %.2f us (%.2fx)\n\n",
	       rr.p50, rr.p99, mean, raw_rtt, rr.p50 / raw_rtt, sb_rtt,
	       rr.p50 / sb_rtt);
}
