// SPDX-License-Identifier: MIT
/*
 * arena.c - the arena's geometry: creation parameters, formatting a fresh
 * arena, validating one we did not create, mapping it, and the read-only
 * walks over it (directory lookup, counters).
 *
 * Validation works on a private copy of the superblock and pool
 * descriptors, and the process then uses only those copies: a peer that
 * rewrites the superblock after we validated it cannot move our view of
 * the regions.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "room.h"
#include "epoch.h"
#include "pool.h"
#include "proto.h"
#include "ring.h"

#define WHY(...) do { if (why) snprintf(why, whylen, __VA_ARGS__); } while (0)

static const struct { uint32_t payload, count; } default_pools[] = {
	{ 256, 8192 },
	{ 4096, 2048 },
	{ 65536, 64 },
};

static uint32_t chunk_size_for(uint32_t payload)
{
	return ALIGN_UP(SHMBUS_CHUNK_HDR + payload, SHMBUS_CACHELINE);
}

/*
 * Per-slot cache depth: small enough that every slot hoarding a full cache
 * still leaves half of the pool on the shared list.
 */
static uint32_t cache_max_for(uint32_t count, uint32_t max_slots)
{
	return MIN(count / (2 * max_slots), SHMBUS_SLOT_CACHE);
}

int arena_params_check(struct arena_params *p, char *why, size_t whylen)
{
	if (proto_name_valid(p->name)) {
		WHY("invalid bus name");
		return -EINVAL;
	}
	if (p->mode == 0)
		p->mode = 0600;
	if (p->mode & ~0777u) {
		WHY("mode %o has bits outside 0777", p->mode);
		return -EINVAL;
	}
	if (!p->max_queues)
		p->max_queues = ARENA_DEF_QUEUES;
	if (!p->max_slots)
		p->max_slots = ARENA_DEF_SLOTS;
	if (!p->ring_bytes)
		p->ring_bytes = ARENA_DEF_RING_BYTES;
	if (p->max_queues > SHMBUS_MAX_QUEUES) {
		WHY("max_queues %u > %u", p->max_queues, SHMBUS_MAX_QUEUES);
		return -EINVAL;
	}
	if (p->max_slots > SHMBUS_MAX_SLOTS) {
		WHY("max_slots %u > %u", p->max_slots, SHMBUS_MAX_SLOTS);
		return -EINVAL;
	}
	if (p->ring_bytes < 4096 || p->ring_bytes > (1ULL << 30)) {
		WHY("ring_bytes %llu outside 4 KiB..1 GiB",
		    (unsigned long long)p->ring_bytes);
		return -EINVAL;
	}
	if (!p->nr_pools) {
		p->nr_pools = ARRAY_SIZE(default_pools);
		for (unsigned i = 0; i < p->nr_pools; i++) {
			p->pools[i].payload = default_pools[i].payload;
			p->pools[i].count = default_pools[i].count;
		}
	}
	if (p->nr_pools > SHMBUS_MAX_POOLS) {
		WHY("nr_pools %u > %u", p->nr_pools, SHMBUS_MAX_POOLS);
		return -EINVAL;
	}
	for (unsigned i = 0; i < p->nr_pools; i++) {
		uint32_t pl = p->pools[i].payload, n = p->pools[i].count;

		if (pl < 64 || pl > (16u << 20)) {
			WHY("pool %u payload %u outside 64..16M", i, pl);
			return -EINVAL;
		}
		if (n < 1 || n >= SHMBUS_CHUNK_MAX) {
			WHY("pool %u count %u outside 1..2^28-1", i, n);
			return -EINVAL;
		}
		if (i && pl <= p->pools[i - 1].payload) {
			WHY("pool payloads must increase (pool %u)", i);
			return -EINVAL;
		}
	}
	if (!p->grow)
		p->grow = ARENA_DEF_GROW;
	if (p->grow > ARENA_GROW_MAX) {
		WHY("pool growth %u > %u", p->grow, ARENA_GROW_MAX);
		return -EINVAL;
	}
	/* the reserve is address space, not memory, but the arena's size
	 * is capped: growth gives way first */
	for (unsigned i = 0; i < p->nr_pools; i++)
		if (p->pools[i].max && p->pools[i].max < p->pools[i].count) {
			WHY("pool %u max %u < its count %u", i,
			    p->pools[i].max, p->pools[i].count);
			return -EINVAL;
		}
	while (p->grow > 1 && arena_size_for(p) > (64ULL << 30))
		p->grow /= 2;
	if (arena_size_for(p) > (64ULL << 30)) {
		WHY("arena of %llu bytes is larger than 64 GiB",
		    (unsigned long long)arena_size_for(p));
		return -EINVAL;
	}
	return 0;
}

uint32_t pool_page_fit(uint32_t n, uint32_t chunk_size, uint32_t max)
{
	uint64_t end = ALIGN_UP((uint64_t)n * chunk_size, 4096);

	return (uint32_t)MIN(end / chunk_size, (uint64_t)max);
}

uint32_t arena_pool_start(const struct arena_params *p, unsigned i)
{
	uint32_t max = arena_pool_max(p, i), n = p->pools[i].count;

	if (max == n)
		return n;
	return pool_page_fit(n, chunk_size_for(p->pools[i].payload), max);
}

uint32_t arena_pool_max(const struct arena_params *p, unsigned i)
{
	uint64_t n = (uint64_t)p->pools[i].count * (p->grow ? p->grow : 1);

	if (p->pools[i].max)
		n = MAX(p->pools[i].max, p->pools[i].count);
	return (uint32_t)MIN(n, (uint64_t)SHMBUS_CHUNK_MAX - 1);
}


struct geom {
	uint64_t qdir_off, slot_off, pool_off, ringmap_off, ring_off;
	uint64_t ring_units, chunk_off, chunk_bytes, size;
	uint64_t links_off[SHMBUS_MAX_POOLS], base_off[SHMBUS_MAX_POOLS];
};

/* A bus's identity in probes and BPF map keys: random, so that two buses
 * (or one bus before and after a daemon restart) never share a row; never
 * 0, which reads as "no bus". */
static uint32_t new_bus_id(void)
{
	uint32_t id = 0;

	if (getrandom(&id, sizeof(id), GRND_NONBLOCK) != sizeof(id))
		id = (uint32_t)((uint64_t)now_ns() * 0x9e3779b97f4a7c15ULL >> 32) ^
		     (uint32_t)getpid();
	return id ? id : 1;
}

static void geometry(const struct arena_params *p, struct geom *g)
{
	uint64_t off = SHMBUS_SB_SIZE;

	g->qdir_off = off;
	off += (uint64_t)p->max_queues * sizeof(struct shmbus_queue);
	g->slot_off = off;
	off += (uint64_t)p->max_slots * sizeof(struct shmbus_slot);
	g->pool_off = off;
	off += ALIGN_UP((uint64_t)p->nr_pools * sizeof(struct shmbus_pool), 64);
	g->ring_units = (p->ring_bytes + SHMBUS_RING_UNIT - 1) / SHMBUS_RING_UNIT;
	g->ringmap_off = off;
	off += ALIGN_UP((g->ring_units + 63) / 64 * 8, 64);
	g->ring_off = off;
	off += g->ring_units * SHMBUS_RING_UNIT;
	g->chunk_off = off;
	for (unsigned i = 0; i < p->nr_pools; i++) {
		uint32_t max = arena_pool_max(p, i);

		g->links_off[i] = off;
		off += ALIGN_UP((uint64_t)max * 4, 64);
		/* chunk 0 at a page: a pool that grows is counted in the
		 * pages it has (daemon grow.c) */
		off = ALIGN_UP(off, 4096);
		g->base_off[i] = off;
		off += (uint64_t)max * chunk_size_for(p->pools[i].payload);
	}
	g->chunk_bytes = off - g->chunk_off;
	g->size = ALIGN_UP(off, 4096);
}

uint64_t arena_size_for(const struct arena_params *p)
{
	struct geom g;

	geometry(p, &g);
	return g.size;
}

uint64_t arena_backed_span(const uint64_t (*r)[2], unsigned n)
{
	uint64_t sum = 0, end = 0;

	for (unsigned i = 0; i < n; i++) {
		uint64_t lo = r[i][0] & ~4095ULL, hi = ALIGN_UP(r[i][1], 4096);

		if (r[i][1] <= r[i][0])
			continue;
		lo = MAX(lo, end);
		if (hi > lo)
			sum += hi - lo;
		end = MAX(end, hi);
	}
	return sum;
}

unsigned arena_backed_ranges(const struct arena_params *p,
			     uint64_t r[ARENA_RANGES_MAX][2])
{
	struct geom g;
	unsigned n = 0;

	geometry(p, &g);
	r[n][0] = 0;
	r[n++][1] = g.links_off[0];
	for (unsigned i = 0; i < p->nr_pools; i++) {
		uint64_t count = arena_pool_start(p, i);

		r[n][0] = g.links_off[i];
		r[n++][1] = g.links_off[i] + count * 4;
		r[n][0] = g.base_off[i];
		r[n++][1] = g.base_off[i] +
			    count * chunk_size_for(p->pools[i].payload);
	}
	return n;
}

uint64_t arena_backed_for(const struct arena_params *p)
{
	uint64_t r[ARENA_RANGES_MAX][2];
	unsigned n = arena_backed_ranges(p, r);

	return arena_backed_span((const uint64_t (*)[2])r, n);
}

int arena_format(void *base, uint64_t size, const struct arena_params *p)
{
	struct shmbus_sb *sb = base;
	struct geom g;

	geometry(p, &g);
	if (size < g.size)
		return -EINVAL;

	sb->version = SHMBUS_LAYOUT_VERSION;
	sb->sb_size = sizeof(*sb);
	sb->features_compat = SHMBUS_FEAT_COMPAT_DURABLE |
			      (epoch_membarrier_ok() ? 0 :
			       SHMBUS_FEAT_COMPAT_READER_FENCE);
	sb->features_incompat = 0;
	for (unsigned i = 0; i < p->nr_pools; i++)
		if (arena_pool_max(p, i) > p->pools[i].count)
			sb->features_incompat = SHMBUS_FEAT_INCOMPAT_GROW;
	sb->arena_size = size;
	sb->created_ns = (uint64_t)realtime_ns();
	sb->bus_id = p->bus_id ? p->bus_id : new_bus_id();
	sb->owner_uid = p->uid;
	sb->owner_gid = p->gid;
	sb->mode = p->mode;
	memcpy(sb->name, p->name, sizeof(sb->name));
	sb->qdir_off = g.qdir_off;
	sb->max_queues = p->max_queues;
	sb->queue_size = sizeof(struct shmbus_queue);
	sb->slot_off = g.slot_off;
	sb->max_slots = p->max_slots;
	sb->slot_size = sizeof(struct shmbus_slot);
	sb->pool_off = g.pool_off;
	sb->nr_pools = p->nr_pools;
	sb->pool_size = sizeof(struct shmbus_pool);
	sb->ringmap_off = g.ringmap_off;
	sb->ring_off = g.ring_off;
	sb->ring_units = g.ring_units;
	sb->chunk_off = g.chunk_off;
	sb->chunk_bytes = g.chunk_bytes;
	sb->id_next = 1;
	sb->gp_epoch = 1;

	for (unsigned i = 0; i < p->nr_pools; i++) {
		struct shmbus_pool *pd = (struct shmbus_pool *)
			((uint8_t *)base + g.pool_off) + i;
		uint32_t n = arena_pool_start(p, i);

		pd->chunk_size = chunk_size_for(p->pools[i].payload);
		pd->payload_max = pd->chunk_size - SHMBUS_CHUNK_HDR;
		pd->nr_chunks = arena_pool_max(p, i);
		pd->nr_live = n;
		pd->cache_max = cache_max_for(n, p->max_slots);
		pd->base_off = g.base_off[i];
		pd->links_off = g.links_off[i];
		pool_format(base, pd, 0, n);
		pd->free_head = 1;	/* tag 0, magazine at chunk 0 */
		pd->free_count = n;
	}
	for (unsigned i = 0; i < p->max_slots; i++) {
		struct shmbus_slot *s = (struct shmbus_slot *)
			((uint8_t *)base + g.slot_off) + i;
		s->seat = UINT32_MAX;
	}
	/* [MAGIC] magic last, released: an arena is recognisable only once
	 * complete (pairs with the acquire in snapshot_validate()) */
	smp_store_release(&sb->magic, SHMBUS_MAGIC);
	return 0;
}

/* [off, off + len) inside [lo, hi), 64-byte aligned, no overflow. */
static bool region_ok(uint64_t off, uint64_t len, uint64_t lo, uint64_t hi)
{
	uint64_t end;

	if (off % SHMBUS_CACHELINE)
		return false;
	if (__builtin_add_overflow(off, len, &end))
		return false;
	return off >= lo && end <= hi;
}

static bool mul_ok(uint64_t a, uint64_t b, uint64_t *r)
{
	return !__builtin_mul_overflow(a, b, r);
}

/* Validate copies: @sb and @pools are private to the caller. */
static int validate_copy(const struct shmbus_sb *sb,
			 const struct shmbus_pool *pools, uint64_t size,
			 char *why, size_t whylen)
{
	uint64_t qlen, slen, plen, mlen, rlen, end;

	if (sb->magic != SHMBUS_MAGIC) {
		WHY("bad magic %#llx: not a shmbus arena",
		    (unsigned long long)sb->magic);
		return -EBADMSG;
	}
	if (sb->version != SHMBUS_LAYOUT_VERSION) {
		WHY("layout version %u, this library speaks %u",
		    sb->version, SHMBUS_LAYOUT_VERSION);
		return -EPROTONOSUPPORT;
	}
	if (sb->features_incompat & ~SHMBUS_FEAT_INCOMPAT_KNOWN) {
		WHY("unknown incompatible features %#llx",
		    (unsigned long long)sb->features_incompat);
		return -EOPNOTSUPP;
	}
	if (sb->sb_size != sizeof(struct shmbus_sb) ||
	    sb->queue_size != sizeof(struct shmbus_queue) ||
	    sb->slot_size != sizeof(struct shmbus_slot) ||
	    sb->pool_size != sizeof(struct shmbus_pool)) {
		WHY("structure sizes differ from this library's");
		return -EUCLEAN;
	}
	if (sb->arena_size != size) {
		WHY("arena_size %llu but the mapping has %llu bytes",
		    (unsigned long long)sb->arena_size,
		    (unsigned long long)size);
		return -EUCLEAN;
	}
	if (proto_name_valid(sb->name)) {
		WHY("invalid bus name in superblock");
		return -EUCLEAN;
	}
	if (sb->mode & ~0777u) {
		WHY("mode %#o out of range", sb->mode);
		return -EUCLEAN;
	}
	if (sb->max_queues < 1 || sb->max_queues > SHMBUS_MAX_QUEUES ||
	    sb->max_slots < 1 || sb->max_slots > SHMBUS_MAX_SLOTS ||
	    sb->nr_pools < 1 || sb->nr_pools > SHMBUS_MAX_POOLS ||
	    sb->ring_units < 1 || sb->ring_units > (1ULL << 30) / 64) {
		WHY("counts out of range (queues %u slots %u pools %u)",
		    sb->max_queues, sb->max_slots, sb->nr_pools);
		return -EUCLEAN;
	}
	qlen = (uint64_t)sb->max_queues * sizeof(struct shmbus_queue);
	slen = (uint64_t)sb->max_slots * sizeof(struct shmbus_slot);
	plen = (uint64_t)sb->nr_pools * sizeof(struct shmbus_pool);
	mlen = (sb->ring_units + 63) / 64 * 8;
	rlen = sb->ring_units * SHMBUS_RING_UNIT;
	/* regions in canonical order, each ending before the next begins */
	if (!region_ok(sb->qdir_off, qlen, SHMBUS_SB_SIZE, size) ||
	    !region_ok(sb->slot_off, slen, sb->qdir_off + qlen, size) ||
	    !region_ok(sb->pool_off, plen, sb->slot_off + slen, size) ||
	    !region_ok(sb->ringmap_off, mlen, sb->pool_off + plen, size) ||
	    !region_ok(sb->ring_off, rlen, sb->ringmap_off + mlen, size) ||
	    !region_ok(sb->chunk_off, sb->chunk_bytes, sb->ring_off + rlen,
		       size)) {
		WHY("regions overlap or lie outside the arena");
		return -EUCLEAN;
	}
	end = sb->chunk_off;
	for (unsigned i = 0; i < sb->nr_pools; i++) {
		const struct shmbus_pool *p = &pools[i];
		uint64_t clen, llen;

		if (p->chunk_size % SHMBUS_CACHELINE ||
		    p->chunk_size < SHMBUS_CHUNK_HDR + 64 ||
		    p->payload_max != p->chunk_size - SHMBUS_CHUNK_HDR ||
		    p->nr_chunks < 1 || p->nr_chunks >= SHMBUS_CHUNK_MAX ||
		    p->cache_max > SHMBUS_SLOT_CACHE) {
			WHY("pool %u descriptor invalid", i);
			return -EUCLEAN;
		}
		if (i && p->payload_max <= pools[i - 1].payload_max) {
			WHY("pool %u not larger than pool %u", i, i - 1);
			return -EUCLEAN;
		}
		llen = (uint64_t)p->nr_chunks * 4;
		if (!mul_ok(p->nr_chunks, p->chunk_size, &clen) ||
		    !region_ok(p->links_off, llen, end,
			       sb->chunk_off + sb->chunk_bytes) ||
		    !region_ok(p->base_off, clen, p->links_off + llen,
			       sb->chunk_off + sb->chunk_bytes)) {
			WHY("pool %u chunks outside the chunk area or "
			    "overlapping another pool", i);
			return -EUCLEAN;
		}
		end = p->base_off + clen;
	}
	return 0;
}

static int snapshot_validate(const uint8_t *base, uint64_t size,
			     struct shmbus_sb *sb,
			     struct shmbus_pool pools[SHMBUS_MAX_POOLS],
			     char *why, size_t whylen)
{
	uint64_t magic;

	if (size < SHMBUS_SB_SIZE) {
		WHY("%llu bytes is too small for a superblock",
		    (unsigned long long)size);
		return -EBADMSG;
	}
	/* [MAGIC] magic before anything else: the acquire pairs with the
	 * release store of magic in arena_format(), so the superblock
	 * copied after it is the complete one */
	magic = smp_load_acquire((const uint64_t *)base);
	memcpy(sb, base, sizeof(*sb));
	sb->magic = magic;	/* the value checked, whatever is there now */
	if (sb->magic == SHMBUS_MAGIC && sb->nr_pools >= 1 &&
	    sb->nr_pools <= SHMBUS_MAX_POOLS &&
	    region_ok(sb->pool_off, sb->nr_pools * sizeof(*pools),
		      SHMBUS_SB_SIZE, size))
		memcpy(pools, base + sb->pool_off,
		       sb->nr_pools * sizeof(*pools));
	else
		memset(pools, 0, SHMBUS_MAX_POOLS * sizeof(*pools));
	return validate_copy(sb, pools, size, why, whylen);
}

int arena_validate(const void *base, uint64_t size, char *why, size_t whylen)
{
	struct shmbus_pool pools[SHMBUS_MAX_POOLS];
	struct shmbus_sb sb;

	return snapshot_validate(base, size, &sb, pools, why, whylen);
}

int arena_map(struct arena *a, int fd, bool rdonly)
{
	struct shmbus_pool pools[SHMBUS_MAX_POOLS];
	struct shmbus_sb sb;
	char why[160] = "";
	struct stat st;
	void *base;
	int err;

	memset(a, 0, sizeof(*a));
	a->fd = -1;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode) || st.st_size < SHMBUS_SB_SIZE) {
		pr_warn("arena: fd is not a shmbus arena (%lld bytes)",
			(long long)st.st_size);
		return -EBADMSG;
	}
	base = mmap(NULL, st.st_size, PROT_READ | (rdonly ? 0 : PROT_WRITE),
		    MAP_SHARED, fd, 0);
	if (base == MAP_FAILED)
		return -errno;
	err = snapshot_validate(base, st.st_size, &sb, pools, why, sizeof(why));
	if (err) {
		pr_warn("arena: refusing arena: %s", why);
		munmap(base, st.st_size);
		return err;
	}
	a->base = base;
	a->size = st.st_size;
	a->fd = fd;
	a->rdonly = rdonly;
	a->sb = base;
	a->queues = (struct shmbus_queue *)(a->base + sb.qdir_off);
	a->max_queues = sb.max_queues;
	a->slots = (struct shmbus_slot *)(a->base + sb.slot_off);
	a->max_slots = sb.max_slots;
	a->nr_pools = sb.nr_pools;
	for (unsigned i = 0; i < sb.nr_pools; i++) {
		struct pool_view *pv = &a->pool[i];

		pv->desc = (struct shmbus_pool *)(a->base + sb.pool_off) + i;
		pv->base = a->base + pools[i].base_off;
		pv->links = (uint32_t *)(a->base + pools[i].links_off);
		pv->chunk_size = pools[i].chunk_size;
		pv->payload_max = pools[i].payload_max;
		pv->nr_chunks = pools[i].nr_chunks;
		pv->nr_max = pools[i].nr_chunks;
		pv->cache_max = pools[i].cache_max;
	}
	a->reader_fence = sb.features_compat & SHMBUS_FEAT_COMPAT_READER_FENCE;
	/* [ROOM] registered before we can take from any of its rings */
	a->room_fence = !room_fence_init();
	a->grows = sb.features_incompat & SHMBUS_FEAT_INCOMPAT_GROW;
	a->ringmap = (uint64_t *)(a->base + sb.ringmap_off);
	a->ring_off = sb.ring_off;
	a->ring_units = sb.ring_units;
	a->bus_id = sb.bus_id;
	return 0;
}

void arena_unmap(struct arena *a)
{
	if (a->base)
		munmap(a->base, a->size);
	a->base = NULL;
}

int arena_queue_ring_level(const struct arena *a,
			   const struct shmbus_queue *q, uint32_t level,
			   struct ring *r)
{
	uint32_t cap = READ_ONCE(q->ring_cap);
	uint64_t off = READ_ONCE(q->ring_off);
	uint64_t area_end = a->ring_off + a->ring_units * SHMBUS_RING_UNIT;
	uint64_t bytes = (uint64_t)cap * sizeof(struct shmbus_cell);

	if (cap < 2 || cap > SHMBUS_RING_MAX_CAP || (cap & (cap - 1)) ||
	    level >= SHMBUS_MAX_PRIO)
		return -EUCLEAN;
	/* level k's ring starts k rings of whole units further */
	off += level * ALIGN_UP(bytes, (uint64_t)SHMBUS_RING_UNIT);
	if (!region_ok(off, bytes, a->ring_off, area_end))
		return -EUCLEAN;
	r->cells = (struct shmbus_cell *)(a->base + off);
	r->tail = level ? (uint64_t *)&q->prio_tail[level - 1]
			: (uint64_t *)&q->tail;
	r->head = level ? (uint64_t *)&q->prio_head[level - 1]
			: (uint64_t *)&q->head;
	ring_geometry(r, cap);
	return 0;
}

uint64_t arena_queue_claimed(const struct arena *a, uint32_t qid,
			     uint32_t gen)
{
	const struct shmbus_queue *q = &a->queues[qid];
	uint64_t n = 0;

	for (uint32_t s = 0; s < a->max_slots; s++) {
		const struct shmbus_slot *sl = &a->slots[s];
		uint32_t cnt, lvl;
		uint64_t from;
		struct ring r;

		/* [SLOT] as arena_queue_counters() */
		if (smp_load_acquire(&sl->state) != SHMBUS_SLOT_ACTIVE ||
		    READ_ONCE(sl->qid) != qid || READ_ONCE(sl->qgen) != gen ||
		    READ_ONCE(sl->role) != SHMBUS_ROLE_CONSUMER)
			continue;
		cnt = MIN(READ_ONCE(sl->claim_n), RING_RUN_MAX);
		lvl = READ_ONCE(sl->claim_level);
		from = READ_ONCE(sl->claim_from);
		if (!cnt || arena_queue_ring_level(a, q, lvl, &r))
			continue;
		for (uint32_t k = 0; k < cnt && k <= r.mask; k++)
			n += SHMBUS_CELL_SEQ(READ_ONCE(ring_cell(&r, from + k)->v)) ==
			     (uint32_t)(from + k + 1);
	}
	return n;
}

int arena_queue_ring(const struct arena *a, const struct shmbus_queue *q,
		     struct ring *r)
{
	return arena_queue_ring_level(a, q, 0, r);
}

int arena_find_queue(const struct arena *a, const char *name)
{
	for (uint32_t i = 0; i < a->max_queues; i++) {
		const struct shmbus_queue *q = &a->queues[i];
		/* [QGEN] pairs with the daemon's release store of gen at
		 * declare (dqueue_publish): the name written before it is
		 * visible */
		uint32_t g = smp_load_acquire(&q->gen);

		if (!SHMBUS_QGEN_LIVE(g))
			continue;
		/* a persistent queue's intake has its name: found through
		 * the queue (the daemon binds its producers to it) */
		if (READ_ONCE(q->flags) & SHMBUS_QF_INTAKE)
			continue;
		if (strncmp(q->name, name, SHMBUS_NAME_MAX) == 0) {
			/* [QDEL] the name we compared is this gen's */
			smp_rmb();
			if (READ_ONCE(q->gen) == g)
				return (int)i;
		}
	}
	return -ENOENT;
}

void arena_queue_counters(const struct arena *a, uint32_t qid, uint32_t gen,
			  uint64_t out[SHMBUS_NR_COUNTERS],
			  uint32_t *producers, uint32_t *consumers,
			  uint64_t *in_flight)
{
	const struct shmbus_queue *q = &a->queues[qid];
	uint32_t np = 0, nc = 0;
	uint64_t fl = 0;

	for (unsigned i = 0; i < SHMBUS_NR_COUNTERS; i++)
		out[i] = READ_ONCE(q->folded[i]);
	for (uint32_t s = 0; s < a->max_slots; s++) {
		const struct shmbus_slot *sl = &a->slots[s];

		/* [SLOT] pairs with the daemon's release store of state at
		 * attach (slot_fill): identity fields are valid once ACTIVE
		 * is seen */
		if (smp_load_acquire(&sl->state) != SHMBUS_SLOT_ACTIVE)
			continue;
		if (READ_ONCE(sl->qid) != qid || READ_ONCE(sl->qgen) != gen)
			continue;
		if (READ_ONCE(sl->role) == SHMBUS_ROLE_PRODUCER) {
			np++;
		} else {
			uint32_t hi = MIN(READ_ONCE(sl->lease_hi),
					  SHMBUS_LEASE_MAX);

			nc++;
			for (uint32_t e = 0; e < hi; e++) {
				uint32_t st = SHMBUS_LEASE_STATE(
					READ_ONCE(sl->lease[e].word));

				fl += st == SHMBUS_LEASE_HELD ||
				      st == SHMBUS_LEASE_VIEW;
			}
		}
		for (unsigned i = 0; i < SHMBUS_NR_COUNTERS; i++)
			out[i] += READ_ONCE(sl->ctr[i]);
	}
	if (in_flight)
		*in_flight = fl;
	if (producers)
		*producers = np;
	if (consumers)
		*consumers = nc;
}
