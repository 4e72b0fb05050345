// SPDX-License-Identifier: MIT
/*
 * storage.c - the ring area of an arena: the storage of rings, dedup
 * tables and fan-out arrays, in SHMBUS_RING_UNIT units handed out first
 * fit from the daemon's bitmap. The bitmap is mirrored into the arena for
 * readers (stat, tests); the daemon never reads the arena's copy back.
 */
#include "shmbusd.h"

static bool unit_used(const struct dbus *b, uint64_t u)
{
	return b->ringmap[u / 64] & (1ULL << (u % 64));
}

void units_mark(const struct dbus *b, uint64_t first, uint64_t n, bool used)
{
	for (uint64_t u = first; u < first + n; u++) {
		if (used)
			b->ringmap[u / 64] |= 1ULL << (u % 64);
		else
			b->ringmap[u / 64] &= ~(1ULL << (u % 64));
		WRITE_ONCE(b->arena.ringmap[u / 64], b->ringmap[u / 64]);
	}
}

int64_t units_alloc(const struct dbus *b, uint64_t n)
{
	uint64_t run = 0;

	for (uint64_t u = 0; u < b->arena.ring_units; u++) {
		run = unit_used(b, u) ? 0 : run + 1;
		if (run == n) {
			units_mark(b, u + 1 - n, n, true);
			return (int64_t)(u + 1 - n);
		}
	}
	return -ENOSPC;
}

uint64_t units_for(uint64_t bytes)
{
	return (bytes + SHMBUS_RING_UNIT - 1) / SHMBUS_RING_UNIT;
}

void *unit_addr(const struct dbus *b, uint64_t u)
{
	return b->arena.base + b->arena.ring_off + u * SHMBUS_RING_UNIT;
}
