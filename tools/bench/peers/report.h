/* SPDX-License-Identifier: MIT */
/*
 * report.h - what report.c keeps for plot.c: the rows in table order,
 * their names, and the thinned round trips of each row's first
 * repetition.
 */
#ifndef SHMBUS_BENCH_PEERS_REPORT_H
#define SHMBUS_BENCH_PEERS_REPORT_H

#define CDF_PTS		1001	/* quantiles 0, 0.001, ..., 1 */

extern double cdf_us[NR_SIZES][NR_TP][NR_MODES][CDF_PTS];
extern bool cdf_have[NR_SIZES][NR_TP][NR_MODES];
extern const enum tp row_order[];
extern const unsigned nr_rows;

bool is_peer(enum tp tp);
const char *row_name(enum tp tp, enum mode m);

#endif /* SHMBUS_BENCH_PEERS_REPORT_H */
