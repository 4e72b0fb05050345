// SPDX-License-Identifier: MIT
/*
 * report.c - what shmbus-bench-peers prints on stdout, in Markdown: the
 * machine and the run's parameters, then per message size and mode a
 * table of every row - median [min-max] of the repetitions of p50, p99
 * and p99.9 round trip and of one-way throughput, and each row's ratio
 * to the "shmbus" row of the same mode - and a finding: whether shmbus
 * is ahead of every peer on latency and throughput, and which peers are
 * not behind it. The raw ring is not a peer there: it is the floor (no
 * library, no daemon, one fixed pair of processes), reported beside.
 *
 * It also keeps the round trips of each row's first repetition, thinned
 * to CDF_PTS quantiles, for plot.c's CDF.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "report.h"

double cdf_us[NR_SIZES][NR_TP][NR_MODES][CDF_PTS];
bool cdf_have[NR_SIZES][NR_TP][NR_MODES];

/* the rows in the order of the tables: shmbus first, then the peers */
const enum tp row_order[] = {
	TP_SHMBUS, TP_DEFAULT, TP_LOAN, TP_ACK, TP_RAW, TP_PIPE, TP_UDS,
	TP_ZMQ, TP_REDIS, TP_IOX,
};
const unsigned nr_rows = sizeof(row_order) / sizeof(row_order[0]);

bool is_peer(enum tp tp)
{
	return tp == TP_PIPE || tp == TP_UDS || tp == TP_ZMQ ||
	       tp == TP_REDIS || tp == TP_IOX;
}

/* Called by run.c with the samples sorted in sh->samples. */
void peers_keep_samples(int si, enum tp tp, enum mode m, unsigned rep)
{
	uint64_t n = sh->nsamples;

	if (rep || !n)
		return;
	for (unsigned k = 0; k < CDF_PTS; k++) {
		/* quantile k / (CDF_PTS - 1): the last point is the max */
		uint64_t i = (uint64_t)((double)k / (CDF_PTS - 1) *
					(double)(n - 1));

		cdf_us[si][tp][m][k] = (double)sh->samples[i] / 1000.0;
	}
	cdf_have[si][tp][m] = true;
}

void peers_print_machine(void)
{
	char cpu[160], kern[160], date[64], nproc[16];

	printf("# shmbus-bench-peers\n\n");
	printf("- CPU: %s (%s CPUs)\n",
	       bench_cmd_line(cpu, sizeof(cpu),
			      "lscpu | sed -n 's/^Model name: *//p'"),
	       bench_cmd_line(nproc, sizeof(nproc), "nproc"));
	printf("- kernel: %s\n",
	       bench_cmd_line(kern, sizeof(kern), "uname -srm"));
	printf("- date: %s\n",
	       bench_cmd_line(date, sizeof(date),
			      "date -u '+%Y-%m-%d %H:%M UTC'"));
	printf("- %u repetitions%s, interleaved; round trips: %llu (busy), "
	       "%llu (block); one-way messages: %llu (64 B), %llu (4 KiB); "
	       "CPUs 0 and 1\n",
	       cfg.reps, cfg.quick ? " (--quick)" : "",
	       (unsigned long long)cfg.rtt_busy,
	       (unsigned long long)cfg.rtt_block,
	       (unsigned long long)cfg.tput[0],
	       (unsigned long long)cfg.tput[1]);
	printf("- each cell: median [min-max] of the repetitions; "
	       "\"x shmbus\": the row's median over the shmbus row's "
	       "(p50: above 1 is slower than shmbus; msg/s: below 1 is "
	       "slower)\n\n");
}

static struct reps rtt_reps(const struct cell *c, int which)
{
	double v[MAX_REPS];

	for (unsigned i = 0; i < c->nrtt; i++)
		v[i] = which == 0 ? c->rtt[i].p50 :
		       which == 1 ? c->rtt[i].p99 : c->rtt[i].p999;
	return reps_summary(v, c->nrtt);
}

static void fmt_us(char *buf, size_t len, struct reps r)
{
	int d = r.median < 10 ? 2 : r.median < 100 ? 1 : 0;

	snprintf(buf, len, "%.*f [%.*f-%.*f]", d, r.median, d, r.min, d,
		 r.max);
}

static void fmt_k(char *buf, size_t len, struct reps r)
{
	double k = 1000;

	snprintf(buf, len, "%.1f [%.1f-%.1f]", r.median / k, r.min / k,
		 r.max / k);
}

static void fmt_ratio(char *buf, size_t len, double v, double ref)
{
	if (!(v > 0) || !(ref > 0))
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%.2f", v / ref);
}

const char *row_name(enum tp tp, enum mode m)
{
	if (tp == TP_SHMBUS)
		return m == MODE_BUSY ? "shmbus busy" : "shmbus blocking";
	if (tp == TP_LOAN)
		return "shmbus zero-copy (loan)";
	if (tp == TP_ACK)
		return "shmbus acked";
	if (tp == TP_DEFAULT)
		return "shmbus default (spin 50 us, sleep)";
	if (tp == TP_UDS)
		return "unix socketpair";
	if (tp == TP_ZMQ)
		return "zeromq ipc";
	if (tp == TP_REDIS)
		return "redis pub/sub";
	return transports[tp].name;
}

static void finding(int si, enum mode m)
{
	const struct cell *ref = &cells[si][TP_SHMBUS][m];
	double rp50 = rtt_reps(ref, 0).median, rtput = cell_tput(ref);
	char lat[512] = "", tput[512] = "";
	size_t nl = 0, nt = 0;
	unsigned npeers = 0;

	if (!ref->nrtt)
		return;
	for (unsigned i = 0; i < nr_rows; i++) {
		enum tp tp = row_order[i];
		const struct cell *c = &cells[si][tp][m];
		double p50, t;

		if (!is_peer(tp) || !c->nrtt)
			continue;
		npeers++;
		p50 = rtt_reps(c, 0).median;
		t = cell_tput(c);
		if (p50 <= rp50 && nl < sizeof(lat))
			nl += (size_t)snprintf(lat + nl, sizeof(lat) - nl,
				"%s%s %.2fx", nl ? ", " : "", row_name(tp, m),
				p50 / rp50);
		if (t >= rtput && nt < sizeof(tput))
			nt += (size_t)snprintf(tput + nt, sizeof(tput) - nt,
				"%s%s %.2fx", nt ? ", " : "", row_name(tp, m),
				t / rtput);
	}
	if (!npeers) {
		printf("Finding, %zu B %s: no peer measured.\n\n", sizes[si],
		       mode_names[m]);
		return;
	}
	printf("Finding, %zu B %s: shmbus ahead of every peer on p50 round "
	       "trip: %s%s%s; on throughput: %s%s%s.",
	       sizes[si], mode_names[m], nl ? "no (" : "yes", lat,
	       nl ? ")" : "", nt ? "no (" : "yes", tput, nt ? ")" : "");
	if (cells[si][TP_RAW][m].nrtt)
		printf(" The raw ring (the floor, not a peer): p50 %.2fx, "
		       "msg/s %.2fx of shmbus.",
		       rtt_reps(&cells[si][TP_RAW][m], 0).median / rp50,
		       cell_tput(&cells[si][TP_RAW][m]) / rtput);
	printf("\n\n");
}

static void print_peers_table(int si, enum mode m)
{
	const struct cell *ref = &cells[si][TP_SHMBUS][m];
	double rp50 = rtt_reps(ref, 0).median, rtput = cell_tput(ref);

	printf("### %zu B, %s\n\n", sizes[si],
	       m == MODE_BUSY ? "busy-poll" : "blocking");
	printf("| transport | p50 us | p99 us | p99.9 us | k msg/s | "
	       "p50 x shmbus | msg/s x shmbus |\n");
	printf("|---|---:|---:|---:|---:|---:|---:|\n");
	for (unsigned i = 0; i < nr_rows; i++) {
		enum tp tp = row_order[i];
		const struct cell *c = &cells[si][tp][m];
		char p50[48], p99[48], p999[48], t[64], r1[16], r2[16];

		if (!cfg.tp_on[tp])
			continue;
		if (!row_runs(tp, m)) {
			printf("| %s | n/a (%s) | | | | | |\n", row_name(tp, m),
			       tp == TP_DEFAULT ? "spins, then sleeps: "
			       "with the blocking rows" : "no busy-poll mode");
			continue;
		}
		fmt_us(p50, sizeof(p50), rtt_reps(c, 0));
		fmt_us(p99, sizeof(p99), rtt_reps(c, 1));
		fmt_us(p999, sizeof(p999), rtt_reps(c, 2));
		fmt_k(t, sizeof(t), reps_summary(c->tput, c->ntput));
		fmt_ratio(r1, sizeof(r1), rtt_reps(c, 0).median, rp50);
		fmt_ratio(r2, sizeof(r2), cell_tput(c), rtput);
		printf("| %s | %s | %s | %s | %s | %s | %s |\n",
		       row_name(tp, m), p50, p99, p999, t, r1, r2);
	}
	printf("\n");
	finding(si, m);
}

void peers_print_tables(void)
{
	for (int si = 0; si < NR_SIZES; si++)
		for (int m = 0; m < NR_MODES; m++)
			if (cfg.size_on[si] && cfg.mode_on[m])
				print_peers_table(si, (enum mode)m);
}
