/* SPDX-License-Identifier: MIT */
/*
 * probes.h - USDT probes (provider "shmbus") with semaphores.
 *
 * Each probe has a semaphore, a counter the kernel increments while a
 * uprobe is attached to it (perf_event_open with ref_ctr_offset, which is
 * what bpftrace and libbpf's USDT support do). A probe site tests it
 * first: with nobody attached, a probe costs one load of a read-mostly
 * word and a predicted branch, and its arguments are never computed.
 * docs/probes.md lists every probe and its arguments.
 */
#ifndef SHMBUS_PROBES_H
#define SHMBUS_PROBES_H

#include <stdint.h>

#include "barrier.h"
#include "private.h"

/*
 * The daemon's probes (dead-letters and drops it performs, the syncs of
 * its journals), fired here in the library it links, so that attaching to
 * libshmbus.so covers the daemon too. A call on a rare path; the
 * semaphore test is inside.
 */
SHMBUS_PRIVATE_API
void probe_dead_letter(uint32_t bus, uint32_t qid, uint64_t id,
		       uint32_t reason);
SHMBUS_PRIVATE_API
void probe_drop(uint32_t bus, uint32_t qid, uint64_t id);
/* A journal sync of durable queue @qid finished: @bytes it made durable,
 * @ns it took, @err 0 or -errno. */
SHMBUS_PRIVATE_API
void probe_journal_sync(uint32_t bus, uint32_t qid, uint64_t bytes,
			int64_t ns, int err);

#ifdef SHMBUS_NO_PROBES
/* a build without probes (make PROBES=0), for measuring what they cost */
#define SHMBUS_PROBES(X)
#define SHMBUS_PROBE_ON(name)	0
/* the arguments are "used" in dead code: no warnings, no instructions */
static inline void shmbus_probe_none(int unused, ...)
{
	(void)unused;
}
#define SHMBUS_PROBE_NONE(...) \
	do { if (0) shmbus_probe_none(0, __VA_ARGS__); } while (0)
#define SHMBUS_PROBE1(name, ...)	SHMBUS_PROBE_NONE(__VA_ARGS__)
#define SHMBUS_PROBE2(name, ...)	SHMBUS_PROBE_NONE(__VA_ARGS__)
#define SHMBUS_PROBE3(name, ...)	SHMBUS_PROBE_NONE(__VA_ARGS__)
#define SHMBUS_PROBE4(name, ...)	SHMBUS_PROBE_NONE(__VA_ARGS__)
#define SHMBUS_PROBE5(name, ...)	SHMBUS_PROBE_NONE(__VA_ARGS__)
#define SHMBUS_PROBE6(name, ...)	SHMBUS_PROBE_NONE(__VA_ARGS__)
#define SHMBUS_PROBE6_IF(cond, name, ...) SHMBUS_PROBE_NONE(cond, __VA_ARGS__)
#else
#define _SDT_HAS_SEMAPHORES 1
/* Arguments in registers or constants only: the default ("nor") lets the
 * compiler name a memory operand, and an indexed one ("8@(%r15,%r9)")
 * is more than libbpf's USDT support (and most tracers) can read. */
#define STAP_SDT_ARG_CONSTRAINT nr
#include <sys/sdt.h>

#define SHMBUS_PROBES(X)	\
	X(queue_declare)	\
	X(queue_delete)		\
	X(publish)		\
	X(deliver)		\
	X(ack)			\
	X(nack)			\
	X(redeliver)		\
	X(dead_letter)		\
	X(expire)		\
	X(drop)			\
	X(checksum)		\
	X(sleep)		\
	X(wake_sent)		\
	X(wake_recv)		\
	X(pub_blocked)		\
	X(journal_sync)

/* hidden: a site tests its semaphore with one RIP-relative compare, not
 * an address load first (tracers find it through the stapsdt note) */
#define SHMBUS_PROBE_SEM_DECLARE(name) \
	extern unsigned short shmbus_##name##_semaphore \
		__attribute__((visibility("hidden")));
SHMBUS_PROBES(SHMBUS_PROBE_SEM_DECLARE)

/* Is anyone attached to probe @name? A plain read, not READ_ONCE: the
 * compiler then tests the semaphore in place (cmpw $0, sym(%rip); jne),
 * one fused compare-and-branch instead of a load, a test and a branch,
 * which took the unattached cost from 2-3% to about 1% of the shortest
 * publish+receive+ack loop (docs/benchmarks.md). The kernel changes it
 * under us; any call in between (a sleep, a syscall) makes the compiler
 * read it again, and within one call a stale value only means one event
 * more or less around an attach or detach. */
#define SHMBUS_PROBE_ON(name) \
	__builtin_expect(shmbus_##name##_semaphore != 0, 0)

#define SHMBUS_PROBE1(name, a) \
	do { if (SHMBUS_PROBE_ON(name)) STAP_PROBE1(shmbus, name, a); } while (0)
#define SHMBUS_PROBE2(name, a, b) \
	do { if (SHMBUS_PROBE_ON(name)) STAP_PROBE2(shmbus, name, a, b); } while (0)
#define SHMBUS_PROBE3(name, a, b, c) \
	do { if (SHMBUS_PROBE_ON(name)) STAP_PROBE3(shmbus, name, a, b, c); } while (0)
#define SHMBUS_PROBE4(name, a, b, c, d) \
	do { if (SHMBUS_PROBE_ON(name)) \
		STAP_PROBE4(shmbus, name, a, b, c, d); } while (0)
#define SHMBUS_PROBE5(name, a, b, c, d, e) \
	do { if (SHMBUS_PROBE_ON(name)) \
		STAP_PROBE5(shmbus, name, a, b, c, d, e); } while (0)
#define SHMBUS_PROBE6(name, a, b, c, d, e, f) \
	do { if (SHMBUS_PROBE_ON(name)) \
		STAP_PROBE6(shmbus, name, a, b, c, d, e, f); } while (0)
/* when the caller already tested SHMBUS_PROBE_ON(name) into @cond: one
 * semaphore load per site, not two, on the hottest path (publish) */
#define SHMBUS_PROBE6_IF(cond, name, a, b, c, d, e, f) \
	do { if (__builtin_expect(!!(cond), 0)) \
		STAP_PROBE6(shmbus, name, a, b, c, d, e, f); } while (0)
#endif /* SHMBUS_NO_PROBES */

#endif /* SHMBUS_PROBES_H */
