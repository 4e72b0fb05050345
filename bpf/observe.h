/* SPDX-License-Identifier: MIT */
/*
 * observe.h - one snapshot of a bus for `shmbus metrics` and `shmbus top`:
 * the arena's own counters (any reader of the bus) joined, by (bus id,
 * queue id), with the BPF maps `shmbus monitor` pinned (root), when they
 * are there.
 */
#ifndef SHMBUS_OBSERVE_H
#define SHMBUS_OBSERVE_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "shmbus.h"
#include "shmbus_bpf.h"

struct obs_row {
	uint32_t bus, qid;
	char bus_name[96];		/* its label (OWNER:NAME: 31 + 1 +
					 * 63 bytes); "" when only BPF knows
					 * the row */
	char name[64];			/* queue name, "" likewise */
	bool arena;			/* info is valid */
	struct shmbus_queue_info info;
	struct shmbus_queue_gauges g;	/* with info */
	bool journal;			/* ji is valid: a durable queue */
	struct shmbus_journal_info ji;
	bool bpf;			/* q is valid */
	struct shmbus_qstats q;
	bool has_hist[SHMBUS_LAT__MAX];
	struct shmbus_hist hist[SHMBUS_LAT__MAX];
};

/* A bus read, for what it has besides its queues' rows. */
struct obs_bus {
	uint32_t id;
	char name[96];			/* its label: NAME, or OWNER:NAME for
					 * another user's bus */
	struct shmbus_bus_journal_info bj;	/* its syncs, its recovery */
	int nr_pools;
	struct shmbus_pool_info pools[8];
};

struct obs {
	struct obs_row *rows;
	int n;
	struct obs_bus *buses;		/* every bus read, in order */
	int nr_buses;
	bool bus;			/* a bus was read: the next three are
					 * the first one's */
	uint32_t bus_id;
	char bus_name[96];
	struct shmbus_bus_journal_info bj;
	bool bpf;			/* the pinned maps could be read */
	char bpf_why[PATH_MAX + 64];		/* why not, when !bpf */
};

/* Snapshot @bus (may be NULL: BPF rows only) and the maps pinned under
 * @pin_dir. Returns 0 or -ENOMEM. */
int obs_snapshot(struct shmbus *bus, const char *pin_dir, struct obs *o);
/* The same for @n buses (none: BPF rows only), each labelled
 * @labels[i] (NULL: its name). Returns 0 or -ENOMEM. */
int obs_snapshot_many(struct shmbus *const *buses, const char *const *labels,
		      int n, const char *pin_dir, struct obs *o);
void obs_free(struct obs *o);

/* The row of (bus, qid) in @o, or NULL. */
const struct obs_row *obs_find(const struct obs *o, uint32_t bus,
			       uint32_t qid);

/* The @q quantile (0..1) of @h, in ns, interpolating inside the log2
 * bucket; NAN when @h is empty. */
double hist_quantile(const struct shmbus_hist *h, double q);

/* @now minus @then, bucket by bucket (an interval's histogram). */
void hist_delta(struct shmbus_hist *out, const struct shmbus_hist *now,
		const struct shmbus_hist *then);

#endif /* SHMBUS_OBSERVE_H */
