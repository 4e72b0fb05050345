/* SPDX-License-Identifier: MIT */
/*
 * shmbus_bpf.h - the structures the BPF programs (bpf/) and userspace
 * (shmbus monitor, tests) share: map keys and values. No includes, only
 * fixed-width builtin types, so that both a BPF object built against
 * vmlinux.h and userspace C can include it. Fields are named for
 * `bpftool map dump`, which prints them through the map's BTF.
 */
#ifndef SHMBUS_BPF_H
#define SHMBUS_BPF_H

/* Map "qstats": key = queue id (probes' qid). */
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

#define SHMBUS_BPF_PIN_DIR	"/sys/fs/bpf/shmbus"

#endif /* SHMBUS_BPF_H */
