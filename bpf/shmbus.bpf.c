// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * shmbus.bpf.c - per-queue counters from libshmbus's USDT probes
 * (docs/probes.md), in the map "qstats" pinned under /sys/fs/bpf/shmbus/
 * by `shmbus monitor start`. CO-RE: built against the running kernel's
 * vmlinux.h; the programs read only their probe arguments.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/usdt.bpf.h>

#include "shmbus_bpf.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct shmbus_qstats);
} qstats SEC(".maps");

static __always_inline struct shmbus_qstats *stats(__u32 qid)
{
	struct shmbus_qstats *s = bpf_map_lookup_elem(&qstats, &qid);

	if (!s) {
		struct shmbus_qstats zero = {};

		bpf_map_update_elem(&qstats, &qid, &zero, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&qstats, &qid);
	}
	return s;
}

#define COUNT(qid, field)						\
	do {								\
		struct shmbus_qstats *s = stats(qid);			\
									\
		if (s)							\
			__sync_fetch_and_add(&s->field, 1);		\
	} while (0)

SEC("usdt")
int BPF_USDT(publish, __u32 qid, __u64 id, __u64 len, __u64 depth, __u64 ts)
{
	struct shmbus_qstats *s = stats(qid);

	if (s) {
		__sync_fetch_and_add(&s->published, 1);
		s->depth = depth;
	}
	return 0;
}

SEC("usdt")
int BPF_USDT(deliver, __u32 qid, __u64 id, __u32 dc, __u64 depth, __u64 ts)
{
	struct shmbus_qstats *s = stats(qid);

	if (s) {
		__sync_fetch_and_add(&s->delivered, 1);
		s->depth = depth;
	}
	return 0;
}

SEC("usdt")
int BPF_USDT(ack, __u32 qid, __u64 id, __u64 ts)
{
	COUNT(qid, acked);
	return 0;
}

SEC("usdt")
int BPF_USDT(nack, __u32 qid, __u64 id, __s64 delay)
{
	COUNT(qid, nacked);
	return 0;
}

SEC("usdt")
int BPF_USDT(redeliver, __u32 qid, __u64 id, __u32 dc)
{
	COUNT(qid, redelivered);
	return 0;
}

SEC("usdt")
int BPF_USDT(dead_letter, __u32 qid, __u64 id, __u32 reason)
{
	COUNT(qid, dead_lettered);
	return 0;
}

SEC("usdt")
int BPF_USDT(expire, __u32 qid, __u32 ref)
{
	COUNT(qid, expired);
	return 0;
}

SEC("usdt")
int BPF_USDT(drop, __u32 qid, __u64 id)
{
	COUNT(qid, dropped);
	return 0;
}

SEC("usdt")
int BPF_USDT(wake_sent, __u32 qid, __u32 seat, __u64 ts)
{
	COUNT(qid, wakeups);
	return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
