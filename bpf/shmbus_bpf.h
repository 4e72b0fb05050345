/* SPDX-License-Identifier: MIT */
/*
 * shmbus_bpf.h - the structures the BPF programs (shmbus.bpf.c) and user
 * space (the loader and map reader beside them, tests, anyone reading the
 * pinned maps) share: map keys and values. Installed as <shmbus/bpf.h>.
 * No includes, only builtin types, so that both a BPF object built
 * against vmlinux.h and user-space C can include it. Fields are named
 * for `bpftool map dump`, which prints them through the map's BTF.
 */
#ifndef SHMBUS_BPF_H
#define SHMBUS_BPF_H

/* Queues are named by (bus, qid): every probe's first two arguments. The
 * bus id is random per bus (shmbus stat --format json shows it), so two
 * buses' queue 3 are two rows. */
struct shmbus_qkey {
	unsigned int bus;
	unsigned int qid;
};

/* Map "qstats": key = struct shmbus_qkey. */
struct shmbus_qstats {
	unsigned long long published;
	unsigned long long delivered;
	unsigned long long acked;
	unsigned long long nacked;
	unsigned long long redelivered;
	unsigned long long dead_lettered;
	unsigned long long expired;
	unsigned long long dropped;
	unsigned long long wakeups;
	unsigned long long depth;	/* as last seen by publish/deliver */
};

/* Map "hist": log2 latency histograms in nanoseconds, per queue and
 * latency measured. Bucket b counts latencies in [2^b, 2^(b+1)) ns
 * (bucket 0: < 2 ns). */
enum shmbus_latency {
	SHMBUS_LAT_PUB_DELIVER = 0,	/* publish -> first delivery */
	SHMBUS_LAT_DELIVER_ACK = 1,	/* delivery -> ack */
	SHMBUS_LAT_WAKEUP = 2,		/* eventfd write -> consumer runs */
	SHMBUS_LAT_JOURNAL_SYNC = 3,	/* a durable queue's journal sync
					 * (the daemon's fdatasync) */
	SHMBUS_LAT__MAX = 4,
};

struct shmbus_hist_key {
	unsigned int bus;
	unsigned int qid;
	unsigned int latency;		/* enum shmbus_latency */
};

#define SHMBUS_HIST_BUCKETS	64

struct shmbus_hist {
	unsigned long long count;
	unsigned long long sum_ns;
	unsigned long long buckets[SHMBUS_HIST_BUCKETS];
};

/* Map "bridge": the routes of shmbus-bridge, from its probes
 * bridge_forward and bridge_confirm, per bridge process and route. */
struct shmbus_bridge_key {
	unsigned int pid;		/* the bridge's process */
	unsigned int dir;		/* 0 out, 1 in */
	char route[64];			/* its name */
};

struct shmbus_bridge_stats {
	unsigned long long forwarded;	/* messages published across */
	unsigned long long confirmed;	/* settled after the other side
					 * took them */
	unsigned long long confirms;	/* confirm events (each settles
					 * one or more messages) */
	unsigned long long latency_ns;	/* sum over the confirm events:
					 * forward -> confirm of the oldest
					 * message each settled */
	unsigned long long buckets[SHMBUS_HIST_BUCKETS];	/* of those
					 * latencies, log2 ns as "hist" */
};

/* Map "names": key = struct shmbus_qkey, the names of the bus and the
 * queue, for reading the other maps by name (bpftool map dump). A row
 * comes from the bus's arena when the monitor started, or from the
 * queue_declare and queue_delete probes after; kind says which. A deleted
 * queue keeps its row (its counters stay in "qstats") until its id is
 * declared again. */
enum shmbus_event_kind {
	SHMBUS_EVENT_SEEN = 0,		/* in the bus's arena at start */
	SHMBUS_EVENT_DECLARED = 1,	/* probe queue_declare */
	SHMBUS_EVENT_DELETED = 2,	/* probe queue_delete */
};

struct shmbus_names {
	char bus[64];			/* NUL-terminated */
	char queue[64];			/* NUL-terminated */
	enum shmbus_event_kind kind;	/* the last event that named it */
};

#define SHMBUS_BPF_PIN_DIR	"/sys/fs/bpf/shmbus"

#endif /* SHMBUS_BPF_H */
