// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * shmbus.bpf.c - per-queue counters and latency histograms from
 * libshmbus's USDT probes (docs/probes.md), the daemon's journal syncs
 * included: the maps "qstats", "hist" and "names",
 * pinned under /sys/fs/bpf/shmbus/ by `shmbus monitor start` (the loader
 * is monitor.c), and the LRU maps that pair a publish with its first
 * delivery, a delivery with its ack, and a wake-up's write with its
 * wakening. CO-RE: built against the running kernel's vmlinux.h; the
 * programs read only their probe arguments.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/usdt.bpf.h>

#include "shmbus_bpf.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct shmbus_qkey);
	__type(value, struct shmbus_qstats);
} qstats SEC(".maps");

/* A message: ids are unique on their bus only. */
struct msg_key {
	__u64 id;
	__u32 bus;
	__u32 __pad;
};

/* When each message was delivered, when each seat was woken: the starts
 * of the latencies. LRU: a message never acked must not hold an entry for
 * ever. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct msg_key);
	__type(value, __u64);
} dlv_ts SEC(".maps");

/* A consumer seat: wake-ups pair by it. */
struct seat_key {
	__u32 bus;
	__u32 qid;
	__u32 seat;
};

/* The first of two racing probes: when, and which side it was (1: the
 * delivery, or the woken consumer). */
struct first_seen {
	__u64 ts;
	__u64 by_deliver;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct seat_key);
	__type(value, struct first_seen);
} wake_ts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096 * SHMBUS_LAT__MAX);
	__type(key, struct shmbus_hist_key);
	__type(value, struct shmbus_hist);
} hist SEC(".maps");

static const struct shmbus_hist zero_hist;

static __always_inline __u32 log2_u64(__u64 v)
{
	__u32 r = 0, s;

	s = (v > 0xffffffffULL) << 5; v >>= s; r |= s;
	s = (v > 0xffffULL) << 4; v >>= s; r |= s;
	s = (v > 0xffULL) << 3; v >>= s; r |= s;
	s = (v > 0xfULL) << 2; v >>= s; r |= s;
	s = (v > 0x3ULL) << 1; v >>= s; r |= s;
	r |= (__u32)(v >> 1);
	return r;
}

static __always_inline void record(__u32 bus, __u32 qid, __u32 latency,
				   __u64 start, __u64 end)
{
	struct shmbus_hist_key k = { .bus = bus, .qid = qid,
				     .latency = latency };
	struct shmbus_hist *h;
	__u64 d = end > start ? end - start : 0;
	__u32 b = log2_u64(d);

	h = bpf_map_lookup_elem(&hist, &k);
	if (!h) {
		/* a new row from the zeroed global: 528 bytes is more than
		 * the BPF stack takes */
		bpf_map_update_elem(&hist, &k, &zero_hist, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&hist, &k);
		if (!h)
			return;
	}
	__sync_fetch_and_add(&h->count, 1);
	__sync_fetch_and_add(&h->sum_ns, d);
	if (b < SHMBUS_HIST_BUCKETS)
		__sync_fetch_and_add(&h->buckets[b], 1);
}

static __always_inline struct shmbus_qstats *stats(__u32 bus, __u32 qid)
{
	struct shmbus_qkey k = { .bus = bus, .qid = qid };
	struct shmbus_qstats *s = bpf_map_lookup_elem(&qstats, &k);

	if (!s) {
		struct shmbus_qstats zero = {};

		bpf_map_update_elem(&qstats, &k, &zero, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&qstats, &k);
	}
	return s;
}

/* publish -> first delivery: the two probes race (a consumer may deliver
 * a message before its publisher's probe runs, on another CPU). Whichever
 * inserts first (BPF_NOEXIST: one wins) leaves its time; the other finds
 * it and records the latency. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct msg_key);
	__type(value, struct first_seen);
} pub_dlv SEC(".maps");

static __always_inline void meet(__u32 bus, __u32 qid, __u64 id, __u64 ts,
				 __u64 deliver)
{
	struct first_seen mine = { .ts = ts, .by_deliver = deliver }, *other;
	struct msg_key k = { .id = id, .bus = bus };

	if (bpf_map_update_elem(&pub_dlv, &k, &mine, BPF_NOEXIST) == 0)
		return;			/* first: the other side records */
	other = bpf_map_lookup_elem(&pub_dlv, &k);
	if (!other || other->by_deliver == deliver)
		return;
	if (deliver)
		record(bus, qid, SHMBUS_LAT_PUB_DELIVER, other->ts, ts);
	else
		record(bus, qid, SHMBUS_LAT_PUB_DELIVER, ts, other->ts);
	bpf_map_delete_elem(&pub_dlv, &k);
}

#define COUNT(bus, qid, field)						\
	do {								\
		struct shmbus_qstats *s = stats(bus, qid);		\
									\
		if (s)							\
			__sync_fetch_and_add(&s->field, 1);		\
	} while (0)

SEC("usdt")
int BPF_USDT(publish, __u32 bus, __u32 qid, __u64 id, __u64 len, __u64 depth,
	     __u64 ts)
{
	struct shmbus_qstats *s = stats(bus, qid);

	if (s) {
		__sync_fetch_and_add(&s->published, 1);
		s->depth = depth;
	}
	meet(bus, qid, id, ts, 0);
	return 0;
}

SEC("usdt")
int BPF_USDT(deliver, __u32 bus, __u32 qid, __u64 id, __u32 dc, __u64 depth,
	     __u64 ts)
{
	struct shmbus_qstats *s = stats(bus, qid);
	struct msg_key k = { .id = id, .bus = bus };

	if (s) {
		__sync_fetch_and_add(&s->delivered, 1);
		s->depth = depth;
	}
	if (dc == 1)		/* the first delivery only */
		meet(bus, qid, id, ts, 1);
	bpf_map_update_elem(&dlv_ts, &k, &ts, BPF_ANY);
	return 0;
}

SEC("usdt")
int BPF_USDT(ack, __u32 bus, __u32 qid, __u64 id, __u64 ts)
{
	struct msg_key k = { .id = id, .bus = bus };
	__u64 *start = bpf_map_lookup_elem(&dlv_ts, &k);

	COUNT(bus, qid, acked);
	if (start) {
		record(bus, qid, SHMBUS_LAT_DELIVER_ACK, *start, ts);
		bpf_map_delete_elem(&dlv_ts, &k);
	}
	return 0;
}

SEC("usdt")
int BPF_USDT(nack, __u32 bus, __u32 qid, __u64 id, __s64 delay)
{
	COUNT(bus, qid, nacked);
	return 0;
}

SEC("usdt")
int BPF_USDT(redeliver, __u32 bus, __u32 qid, __u64 id, __u32 dc)
{
	COUNT(bus, qid, redelivered);
	return 0;
}

SEC("usdt")
int BPF_USDT(dead_letter, __u32 bus, __u32 qid, __u64 id, __u32 reason)
{
	COUNT(bus, qid, dead_lettered);
	return 0;
}

SEC("usdt")
int BPF_USDT(expire, __u32 bus, __u32 qid, __u64 id)
{
	COUNT(bus, qid, expired);
	return 0;
}

SEC("usdt")
int BPF_USDT(drop, __u32 bus, __u32 qid, __u64 id)
{
	COUNT(bus, qid, dropped);
	return 0;
}

/*
 * eventfd write -> woken consumer runs, by (bus, qid, seat). The two
 * probes race as publish and delivery do: the woken consumer may fire
 * wake_recv before the waker's wake_sent (whose time was taken before
 * the write). So whichever comes first leaves its time and the other
 * records. A true pair always has sent <= received; an entry that breaks
 * that, or one from the same side, is stale (a token nobody waited for, a
 * wake-up by the daemon) and is replaced.
 */
static __always_inline void wake_meet(__u32 bus, __u32 qid, __u32 seat,
				      __u64 ts, __u64 recv)
{
	struct seat_key k = { .bus = bus, .qid = qid, .seat = seat };
	struct first_seen mine = { .ts = ts, .by_deliver = recv }, *other;
	__u64 sent, got;

	if (bpf_map_update_elem(&wake_ts, &k, &mine, BPF_NOEXIST) == 0)
		return;
	other = bpf_map_lookup_elem(&wake_ts, &k);
	if (!other)
		return;
	sent = recv ? other->ts : ts;
	got = recv ? ts : other->ts;
	if (other->by_deliver == recv || sent > got) {
		bpf_map_update_elem(&wake_ts, &k, &mine, BPF_ANY);
		return;
	}
	record(bus, qid, SHMBUS_LAT_WAKEUP, sent, got);
	bpf_map_delete_elem(&wake_ts, &k);
}

SEC("usdt")
int BPF_USDT(wake_sent, __u32 bus, __u32 qid, __u32 seat, __u64 ts)
{
	COUNT(bus, qid, wakeups);
	wake_meet(bus, qid, seat, ts, 0);
	return 0;
}

SEC("usdt")
int BPF_USDT(wake_recv, __u32 bus, __u32 qid, __u32 seat, __u64 ts)
{
	wake_meet(bus, qid, seat, ts, 1);
	return 0;
}

/* A journal sync: its latency is an argument (the daemon's sync thread
 * timed it), nothing to pair. Failed syncs count too: they took as
 * long. */
SEC("usdt")
int BPF_USDT(journal_sync, __u32 bus, __u32 qid, __u64 bytes, __s64 ns,
	     __s32 err)
{
	record(bus, qid, SHMBUS_LAT_JOURNAL_SYNC, 0, ns > 0 ? (__u64)ns : 0);
	return 0;
}

/* ---- names ------------------------------------------------------------
 * The monitor fills "names" from the arenas it finds at start (kind
 * SHMBUS_EVENT_SEEN, BPF_NOEXIST: never over what a probe wrote); these
 * two keep it current after. */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct shmbus_qkey);
	__type(value, struct shmbus_names);
} names SEC(".maps");

static __always_inline void name_row(__u32 bus, __u32 qid, void *queue,
				     void *bus_name,
				     enum shmbus_event_kind kind)
{
	struct shmbus_qkey k = { .bus = bus, .qid = qid };
	struct shmbus_names n = { .kind = kind };

	bpf_probe_read_user_str(n.bus, sizeof(n.bus), bus_name);
	bpf_probe_read_user_str(n.queue, sizeof(n.queue), queue);
	bpf_map_update_elem(&names, &k, &n, BPF_ANY);
}

SEC("usdt")
int BPF_USDT(queue_declare, __u32 bus, __u32 qid, void *name, __s32 created,
	     void *bus_name)
{
	name_row(bus, qid, name, bus_name, SHMBUS_EVENT_DECLARED);
	return 0;
}

/* qid is -ENOENT when the deleter did not find the queue in its arena:
 * no row to name */
SEC("usdt")
int BPF_USDT(queue_delete, __u32 bus, __s32 qid, void *name, void *bus_name)
{
	if (qid >= 0)
		name_row(bus, qid, name, bus_name, SHMBUS_EVENT_DELETED);
	return 0;
}

/* ---- shmbus-bridge --------------------------------------------------- */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct shmbus_bridge_key);
	__type(value, struct shmbus_bridge_stats);
} bridge SEC(".maps");

static const struct shmbus_bridge_stats zero_bridge;

static __always_inline struct shmbus_bridge_stats *bridge_row(void *route,
							       __s32 dir)
{
	struct shmbus_bridge_key k = {};
	struct shmbus_bridge_stats *s;

	k.pid = bpf_get_current_pid_tgid() >> 32;
	k.dir = dir;
	bpf_probe_read_user_str(k.route, sizeof(k.route), route);
	s = bpf_map_lookup_elem(&bridge, &k);
	if (!s) {
		bpf_map_update_elem(&bridge, &k, &zero_bridge, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&bridge, &k);
	}
	return s;
}

SEC("usdt")
int BPF_USDT(bridge_forward, void *route, __s32 dir, __u64 count)
{
	struct shmbus_bridge_stats *s = bridge_row(route, dir);

	if (s)
		__sync_fetch_and_add(&s->forwarded, count);
	return 0;
}

SEC("usdt")
int BPF_USDT(bridge_confirm, void *route, __s32 dir, __u64 count, __s64 ns)
{
	struct shmbus_bridge_stats *s = bridge_row(route, dir);
	__u64 d = ns > 0 ? (__u64)ns : 0;
	__u32 b = log2_u64(d);

	if (!s)
		return 0;
	__sync_fetch_and_add(&s->confirmed, count);
	__sync_fetch_and_add(&s->confirms, 1);
	__sync_fetch_and_add(&s->latency_ns, d);
	if (b < SHMBUS_HIST_BUCKETS)
		__sync_fetch_and_add(&s->buckets[b], 1);
	return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
