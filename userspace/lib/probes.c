// SPDX-License-Identifier: MIT
/*
 * probes.c - the USDT semaphores (probes.h). In the ".probes" section,
 * where tracers expect them; written only by the kernel. And the probes
 * the daemon fires through the library.
 */
#include "probes.h"

#ifndef SHMBUS_NO_PROBES
#define SHMBUS_PROBE_SEM_DEFINE(name) \
	unsigned short shmbus_##name##_semaphore \
		__attribute__((section(".probes"), used));
SHMBUS_PROBES(SHMBUS_PROBE_SEM_DEFINE)
#endif

void probe_dead_letter(uint32_t bus, uint32_t qid, uint64_t id,
		       uint32_t reason)
{
	SHMBUS_PROBE4(dead_letter, bus, qid, id, reason);
}

void probe_drop(uint32_t bus, uint32_t qid, uint64_t id)
{
	SHMBUS_PROBE3(drop, bus, qid, id);
}

void probe_journal_sync(uint32_t bus, uint32_t qid, uint64_t bytes,
			int64_t ns, int err)
{
	SHMBUS_PROBE5(journal_sync, bus, qid, bytes, ns, err);
}
