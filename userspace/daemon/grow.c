// SPDX-License-Identifier: MIT
/*
 * grow.c - pools that grow.
 *
 * An arena is laid out for the most each pool may hold (its count when
 * made, times the bus's growth), but only the chunks a pool has (nr_live
 * of them, and their free-list links) are backed: fallocate()d, charged
 * to the daemon's memory cgroup, the memory budget and the owner's bytes
 * quota. The rest of each pool's area, the reserve, is holes in the memfd
 * and costs nothing but address space.
 *
 * The tick looks at each pool's shared free list. Under an eighth of the
 * pool's chunks there, the pool doubles (up to its most) if the step is
 * admitted as a bus of that size would be: --bus-max for the bus's total,
 * --memory-max for all arenas, the room of the daemon's memory cgroup
 * and of the host, and the owner's bytes quota. A refusal is logged once
 * (until it changes), and tried again a second later; the publishers
 * wait meanwhile, as for a bus of fixed size. After a step, durable
 * queues whose messages wait on disk for chunks (a recovery's) load them
 * at once.
 *
 * A step, in this order: back the new chunks and links; raise the
 * daemon's own count (its view's nr_chunks, its repair copy, the fd
 * store's record); raise nr_live; push the chunks onto the free list as
 * one chain. A daemon killed between the steps has counted chunks nobody
 * was given (they come back when the pools are rebuilt, at the next idle
 * moment), never given out chunks it does not count.
 *
 * Who trusts which count: members bound a ref by the pool's most, fixed
 * at creation; they never read nr_live but to show it. The daemon bounds
 * every ref by its own count and restores nr_live from its copy when a
 * member changes it (repair.c). A hostile member can make a consumer read
 * a ref in the reserve, which faults in a page of the hole, charged to
 * the reader's own memory cgroup; the fd it holds already lets it punch
 * holes anywhere in the arena, which costs the same. A daemon that adopts
 * the bus takes nr_live as the member left it (bounded by the most) and
 * backs every chunk under it before it touches one (pools_take()).
 */
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <string.h>

#include "shmbusd.h"
#include "pool.h"

/* a refused step is tried again after */
#define GROW_RETRY_NS		NSEC_PER_SEC
/* grow when the shared free list holds less than 1/GROW_LOW of the pool */
#define GROW_LOW		8u

/* Back chunks [from, to) of pool @pi, and their links. 0 or -errno. */
static int back(const struct dbus *b, unsigned pi, uint32_t from, uint32_t to)
{
	const struct pool_view *pv = &b->arena.pool[pi];
	uint64_t links = (uint64_t)((uint8_t *)pv->links - b->arena.base);
	uint64_t base = (uint64_t)(pv->base - b->arena.base);

	if (from >= to)
		return 0;
	if (fallocate(b->fd, 0, (off_t)(links + (uint64_t)from * 4),
		      (off_t)(to - from) * 4) < 0 ||
	    fallocate(b->fd, 0, (off_t)(base + (uint64_t)from * pv->chunk_size),
		      (off_t)((uint64_t)(to - from) * pv->chunk_size)) < 0)
		return -errno;
	return 0;
}

int arena_back(int fd, const struct arena_params *ap)
{
	uint64_t r[ARENA_RANGES_MAX][2];
	unsigned n = arena_backed_ranges(ap, r);

	for (unsigned i = 0; i < n; i++)
		if (r[i][1] > r[i][0] &&
		    fallocate(fd, 0, (off_t)r[i][0],
			      (off_t)(r[i][1] - r[i][0])) < 0)
			return -errno;
	return 0;
}

/* The daemon's count of pool @pi is @n: its view, its repair copy, the
 * fd store's record, then the arena's word. */
static void count_set(struct dbus *b, unsigned pi, uint32_t n)
{
	uint8_t *copy = b->pool_copy[pi] + offsetof(struct shmbus_pool,
						    nr_live);

	b->arena.pool[pi].nr_chunks = n;
	if (!(b->arena.sb->features_incompat & SHMBUS_FEAT_INCOMPAT_GROW))
		return;		/* an arena whose pools never grow */
	memcpy(copy, &n, sizeof(n));
	fdstore_pool_count(b, pi);
	WRITE_ONCE(b->arena.pool[pi].desc->nr_live, n);
}

/* Bytes of @b that are backed (all but the reserve of its pools) with
 * pool @pi at @n chunks and the others as the daemon counts them. */
static uint64_t committed(const struct dbus *b, unsigned pi, uint32_t n)
{
	const struct arena *a = &b->arena;
	uint64_t r[ARENA_RANGES_MAX][2];
	unsigned k = 0;

	r[k][0] = 0;
	r[k++][1] = (uint64_t)((uint8_t *)a->pool[0].links - a->base);
	for (unsigned i = 0; i < a->nr_pools; i++) {
		const struct pool_view *pv = &a->pool[i];
		uint64_t live = i == pi ? n : pv->nr_chunks;

		r[k][0] = (uint64_t)((uint8_t *)pv->links - a->base);
		r[k][1] = r[k][0] + live * 4;
		k++;
		r[k][0] = (uint64_t)(pv->base - a->base);
		r[k][1] = r[k][0] + live * pv->chunk_size;
		k++;
	}
	return arena_backed_span((const uint64_t (*)[2])r, k);
}

int pools_take(struct dbus *b, char *why, size_t len)
{
	for (unsigned i = 0; i < b->arena.nr_pools; i++) {
		struct pool_view *pv = &b->arena.pool[i];
		uint32_t n = pool_desc_live(pv->desc);
		int err;

		/* pool_desc_live() bounds it by the descriptor's most, which
		 * the validated view holds; bound by the view's, in case a
		 * member changed the descriptor since */
		n = MIN(n, pv->nr_max);
		err = back(b, i, 0, n);
		if (err) {
			snprintf(why, len, "cannot back pool %u's %u chunks: %s",
				 i, n, strerror(-err));
			return err;
		}
		count_set(b, i, n);
	}
	b->committed = committed(b, 0, b->arena.pool[0].nr_chunks);
	return 0;
}

/* Grow pool @pi of @b to @n chunks, if admitted. 0 or -errno (@why). */
static int grow(struct daemon *d, struct dbus *b, unsigned pi, uint32_t n,
		char *why, size_t len)
{
	struct pool_view *pv = &b->arena.pool[pi];
	uint32_t old = pv->nr_chunks;
	uint64_t add = committed(b, pi, n) - b->committed;
	int err;

	err = memory_admit_more(d, b->committed, add, why, len);
	if (err)
		return err;
	err = quota_charge_quiet(b->owner_uid, Q_BYTES, add);
	if (err) {
		snprintf(why, len, "%s", quota_why());
		return err;
	}
	err = back(b, pi, old, n);
	if (err) {
		snprintf(why, len, "backing its chunks: %s", strerror(-err));
		quota_release(b->owner_uid, Q_BYTES, add);
		return err;
	}
	b->committed += add;
	count_set(b, pi, n);
	pool_grow(&b->arena, pi, old, n);
	return 0;
}

int64_t pools_tick(struct daemon *d, struct dbus *b, int64_t now)
{
	int64_t next = INT64_MAX;

	for (unsigned pi = 0; pi < b->arena.nr_pools; pi++) {
		const struct pool_view *pv = &b->arena.pool[pi];
		uint32_t live = pv->nr_chunks, n;
		uint64_t free = READ_ONCE(pv->desc->free_count);
		char why[256] = "";
		int err;

		if (live >= pv->nr_max || free * GROW_LOW >= live)
			continue;
		if (now < b->grow_retry[pi]) {
			next = MIN(next, b->grow_retry[pi]);
			continue;
		}
		n = (uint32_t)MIN((uint64_t)live * 2, (uint64_t)pv->nr_max);
		err = grow(d, b, pi, n, why, sizeof(why));
		if (!err) {
			log_info("bus %u:%s: pool %u (%u-byte payloads) grew "
				 "from %u to %u chunks of at most %u: %llu "
				 "bytes backed", b->owner_uid, b->name, pi,
				 pv->payload_max, live, n, pv->nr_max,
				 (unsigned long long)b->committed);
			b->grow_err[pi] = 0;
			/* messages that wait for chunks (a recovery's, on
			 * disk) come in at the next tick, right away */
			durable_room(b, now);
			next = now;
			continue;
		}
		if (err != b->grow_err[pi])
			log_warn("bus %u:%s: pool %u (%u-byte payloads) cannot "
				 "grow past %u chunks: %s", b->owner_uid,
				 b->name, pi, pv->payload_max, live, why);
		b->grow_err[pi] = err;
		b->grow_retry[pi] = now + GROW_RETRY_NS;
		next = MIN(next, b->grow_retry[pi]);
	}
	return next;
}
