// SPDX-License-Identifier: MIT
/*
 * probes.c - the USDT semaphores (probes.h). In the ".probes" section,
 * where tracers expect them; written only by the kernel.
 */
#include "probes.h"

#ifndef SHMBUS_NO_PROBES
#define SHMBUS_PROBE_SEM_DEFINE(name) \
	unsigned short shmbus_##name##_semaphore \
		__attribute__((section(".probes"), used));
SHMBUS_PROBES(SHMBUS_PROBE_SEM_DEFINE)
#endif
