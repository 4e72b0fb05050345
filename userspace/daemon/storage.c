// SPDX-License-Identifier: MIT
/*
 * storage.c - the ring area of an arena: the storage of rings, dedup
 * tables and fan-out arrays, in SHMBUS_RING_UNIT units handed out first
 * fit from the daemon's bitmap. The bitmap is mirrored into the arena for
 * readers (stat, tests); the daemon reads the arena's copy back only when
 * it adopts the bus (adopt.c), to find what its predecessor was waiting
 * to free.
 */
#include <stdlib.h>

#include "shmbusd.h"

bool units_used(const struct dbus *b, uint64_t u)
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
		run = units_used(b, u) ? 0 : run + 1;
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

/* Units readers may still be looking at: freed after a grace period. */
struct retired {
	struct defer_head head;
	uint64_t first, units;
};

static void retired_free(struct dbus *b, struct defer_head *h, bool gp_over)
{
	struct retired *r = container_of(h, struct retired, head);

	if (gp_over)
		units_mark(b, r->first, r->units, false);
	free(r);
}

void units_retire(struct dbus *b, uint64_t first, uint64_t n)
{
	struct retired *r;

	if (!n)
		return;
	r = calloc(1, sizeof(*r));
	if (!r) {
		/* leak the units rather than free them under a reader */
		log_err("bus '%s': out of memory retiring %llu ring units",
			b->name, (unsigned long long)n);
		return;
	}
	r->first = first;
	r->units = n;
	defer(b, &r->head, retired_free);
}
