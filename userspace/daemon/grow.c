// SPDX-License-Identifier: MIT
/*
 * grow.c - pools that grow.
 *
 * An arena is laid out for the most each pool may hold (its count when
 * made, times the bus's growth), but only the chunks a pool has (and
 * their free-list links) are backed: fallocate()d, charged to the
 * daemon's memory cgroup, the memory budget and the owner's bytes quota.
 * The rest of each pool's area, the reserve, is holes in the memfd and
 * costs nothing but address space.
 *
 * The tick looks at each pool's shared free list. Under an eighth of the
 * pool's chunks there, the pool doubles (up to its most), or grows by the
 * largest step down to 16 chunks that is admitted as a bus of that size
 * would be (each count page-fit: chunk 0 is at a page, and a count ends
 * where its last page does, so what the pages hold is what the pool has): --bus-max for the bus's total, --memory-max for all arenas,
 * the room of the daemon's memory cgroup and of the host, and the owner's
 * bytes quota. A refusal is logged once (until it changes), and tried
 * again a second later; the publishers wait meanwhile, as for a bus of
 * fixed size. After a step, durable queues whose messages wait on disk
 * for chunks (a recovery's) load them at once.
 *
 * A step, in this order: back the new chunks and links; write their pages
 * (MADV_POPULATE_WRITE: the memfd then holds them as data, which is how
 * the next daemon counts them); raise the daemon's own count (its view's
 * nr_chunks, its repair copy, the fd store's record) and nr_live; push the
 * chunks onto the free list as one chain. A daemon killed between the
 * steps has counted chunks nobody was given (they come back when the
 * pools are rebuilt, which is when no handle is attached), never given
 * out chunks it does not count.
 *
 * Who trusts which count: members bound a ref by the pool's most, fixed
 * at creation and validated at open; they read nr_live only to show it.
 * The daemon bounds every ref by its own count and restores nr_live from
 * its copy when a member changes it (repair.c). A daemon that adopts the
 * bus does not read nr_live at all: it counts, per pool, the chunks whose
 * pages (and whose links' pages) the memfd holds as data, from the pool's
 * first chunk to the first hole (lseek SEEK_HOLE; a page fallocate()d but
 * never written is a hole to it, which is why a step writes its pages),
 * so it never counts a chunk that is not backed and never backs anything
 * itself (pools_take()).
 * A member can fault pages of the reserve in (on its own memory cgroup's
 * account), which makes the next daemon count chunks that were never on
 * a free list (capacity lost until the pools are rebuilt), or punch a
 * hole under the count, which spoils messages as zeroing them would; the
 * fd every member holds gives it both powers already. Whether the arena's
 * pools grow at all is the validated superblock's feature bit, never the
 * live one.
 */
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shmbusd.h"
#include "pool.h"

/* a refused step is tried again after */
#define GROW_RETRY_NS		NSEC_PER_SEC
/* grow when the shared free list holds less than 1/GROW_LOW of the pool */
#define GROW_LOW		8u
/* the smallest step tried when a doubling is refused */
#define GROW_STEP_MIN		16u

static uint64_t links_off(const struct dbus *b, unsigned pi)
{
	return (uint64_t)((uint8_t *)b->arena.pool[pi].links - b->arena.base);
}

static uint64_t chunks_off(const struct dbus *b, unsigned pi)
{
	return (uint64_t)(b->arena.pool[pi].base - b->arena.base);
}

/* Back chunks [from, to) of pool @pi, and their links. 0 or -errno. */
static int back(const struct dbus *b, unsigned pi, uint32_t from, uint32_t to)
{
	uint32_t cs = b->arena.pool[pi].chunk_size;

	if (from >= to)
		return 0;
	if (fallocate(b->fd, 0, (off_t)(links_off(b, pi) + (uint64_t)from * 4),
		      (off_t)(to - from) * 4) < 0 ||
	    fallocate(b->fd, 0, (off_t)(chunks_off(b, pi) + (uint64_t)from * cs),
		      (off_t)((uint64_t)(to - from) * cs)) < 0)
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

/* Write-fault the pages of arena bytes [off, off + len) (backed) in the
 * daemon's mapping, changing no byte: a backed page that was never
 * written is a hole to lseek(SEEK_HOLE), a written one is data. */
static void populate(const struct dbus *b, uint64_t off, uint64_t len)
{
	uint64_t lo = off & ~4095ULL, hi = ALIGN_UP(off + len, 4096);
	uint8_t *base = b->arena.base;

	if (!len || !madvise(base + lo, hi - lo, MADV_POPULATE_WRITE))
		return;
	/* a kernel before 5.14: touch each page at a byte of the range
	 * (zero, and no member writes it yet) */
	for (uint64_t p = lo; p < hi; p += 4096) {
		uint64_t at = MAX(p, off);

		WRITE_ONCE(base[at], READ_ONCE(base[at]));
	}
}

static void populate_pool(const struct dbus *b, unsigned pi, uint32_t from,
			  uint32_t to)
{
	uint32_t cs = b->arena.pool[pi].chunk_size;

	if (from >= to)
		return;
	populate(b, links_off(b, pi) + (uint64_t)from * 4,
		 (uint64_t)(to - from) * 4);
	populate(b, chunks_off(b, pi) + (uint64_t)from * cs,
		 (uint64_t)(to - from) * cs);
}

/* How many of pool @pi's chunks, from the first, the memfd holds as data,
 * links included (at most the pool's most). */
static uint32_t counted(const struct dbus *b, unsigned pi)
{
	const struct pool_view *pv = &b->arena.pool[pi];
	off_t lh = lseek(b->fd, (off_t)links_off(b, pi), SEEK_HOLE);
	off_t ch = lseek(b->fd, (off_t)chunks_off(b, pi), SEEK_HOLE);
	uint64_t nl, nc;

	if (lh < 0 || ch < 0)
		return 0;
	nl = ((uint64_t)lh - links_off(b, pi)) / 4;
	nc = ((uint64_t)ch - chunks_off(b, pi)) / pv->chunk_size;
	nc = MIN(nc, nl);
	return (uint32_t)MIN(nc, (uint64_t)pv->nr_max);
}

/* The daemon's count of pool @pi is @n: its view, its repair copy, the
 * fd store's record, then the arena's word. */
static void count_set(struct dbus *b, unsigned pi, uint32_t n)
{
	uint8_t *copy = b->pool_copy[pi] + offsetof(struct shmbus_pool,
						    nr_live);

	b->arena.pool[pi].nr_chunks = n;
	if (!b->arena.grows)
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
	r[k++][1] = links_off(b, 0);
	for (unsigned i = 0; i < a->nr_pools; i++) {
		const struct pool_view *pv = &a->pool[i];
		uint64_t live = i == pi ? n : pv->nr_chunks;

		r[k][0] = links_off(b, i);
		r[k][1] = r[k][0] + live * 4;
		k++;
		r[k][0] = chunks_off(b, i);
		r[k][1] = r[k][0] + live * pv->chunk_size;
		k++;
	}
	return arena_backed_span((const uint64_t (*)[2])r, k);
}

void pools_take(struct dbus *b, bool made)
{
	for (unsigned i = 0; i < b->arena.nr_pools; i++) {
		struct pool_view *pv = &b->arena.pool[i];
		uint32_t n = pv->nr_max;

		if (b->arena.grows && made) {
			/* formatted just now with its count */
			n = MIN(READ_ONCE(pv->desc->nr_live), pv->nr_max);
			populate_pool(b, i, 0, n);
		} else if (b->arena.grows) {
			n = MAX(counted(b, i), 1u);
		}
		count_set(b, i, n);
	}
	b->committed = committed(b, 0, b->arena.pool[0].nr_chunks);
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
	populate_pool(b, pi, old, n);
	b->committed += add;
	count_set(b, pi, n);
	pool_grow(&b->arena, pi, old, n);
	return 0;
}

/* Grow pool @pi: doubled, or by the largest step an admission allows,
 * down to GROW_STEP_MIN chunks. The size reached, or 0 (@err, @why). */
static uint32_t grow_some(struct daemon *d, struct dbus *b, unsigned pi,
			  int *err, char *why, size_t len)
{
	const struct pool_view *pv = &b->arena.pool[pi];
	uint32_t live = pv->nr_chunks, n;
	uint32_t step = (uint32_t)MIN((uint64_t)MAX(live, GROW_STEP_MIN),
				      (uint64_t)(pv->nr_max - live));

	for (;;) {
		/* whole pages: what they hold is what the pool has */
		n = pool_page_fit(live + step, pv->chunk_size, pv->nr_max);
		*err = grow(d, b, pi, n, why, len);
		if (!*err)
			return n;
		if ((*err != -EDQUOT && *err != -ENOMEM) ||
		    step <= GROW_STEP_MIN)
			return 0;
		step /= 2;
	}
}

int64_t pools_tick(struct daemon *d, struct dbus *b, int64_t now)
{
	int64_t next = INT64_MAX;

	if (!b->arena.grows)
		return next;
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
		n = grow_some(d, b, pi, &err, why, sizeof(why));
		if (n) {
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
