/* SPDX-License-Identifier: MIT */
/*
 * internal.h - what libshmbus's files share, and shmbusd with them (it
 * links libshmbus.so and uses the internals private.h exports): logging,
 * time, option checks, the process-local view of a mapped arena.
 */
#ifndef SHMBUS_INTERNAL_H
#define SHMBUS_INTERNAL_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "shmbus.h"
#include "shmbus/layout.h"
#include "barrier.h"
#include "private.h"

#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
/* The struct of type @type whose member @member @ptr points to. */
#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))
#define ALIGN_UP(x, a)	(((x) + (a) - 1) & ~((__typeof__(x))(a) - 1))
#define likely(x)	__builtin_expect(!!(x), 1)
#define unlikely(x)	__builtin_expect(!!(x), 0)
/* Each argument evaluated once: MIN(READ_ONCE(x), cap) of a word a peer
 * may change must not read it twice (the second read could be garbage
 * the comparison never saw). */
#define MIN(a, b)	({ __typeof__(a) _mn_a = (a); __typeof__(b) _mn_b = (b); \
			   _mn_a < _mn_b ? _mn_a : _mn_b; })
#define MAX(a, b)	({ __typeof__(a) _mx_a = (a); __typeof__(b) _mx_b = (b); \
			   _mx_a > _mx_b ? _mx_a : _mx_b; })

#define NSEC_PER_SEC	1000000000LL
#define NSEC_PER_MSEC	1000000LL
#define NSEC_PER_USEC	1000LL

/* ---- diagnostics (util.c) ---------------------------------------- */

void shmbus_pr(enum shmbus_print_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
#define pr_warn(fmt, ...)  shmbus_pr(SHMBUS_WARN, "libshmbus: " fmt "\n", ##__VA_ARGS__)
#define pr_info(fmt, ...)  shmbus_pr(SHMBUS_INFO, "libshmbus: " fmt "\n", ##__VA_ARGS__)
#define pr_debug(fmt, ...) shmbus_pr(SHMBUS_DEBUG, "libshmbus: " fmt "\n", ##__VA_ARGS__)

/* Set the text shmbus_errmsg() returns in this thread: the reason of a
 * failure the caller is about to return ("" clears it). */
void errmsg_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* proto_name_set() for a @what name ("queue", "bus", "group"); a bad
 * one also sets shmbus_errmsg() to what a name may be. Returns 0 or
 * -EINVAL. */
int name_set(char dst[SHMBUS_NAME_MAX], const char *src, const char *what);

/* The same for a topic pattern already in @pattern. */
int pattern_check(const char pattern[SHMBUS_NAME_MAX]);

/* ---- time --------------------------------------------------------- */

static inline int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * NSEC_PER_SEC + ts.tv_nsec;
}

/* CLOCK_MONOTONIC at tick resolution (<= 4 ms behind), a few ns: for
 * lease deadlines, which the daemon checks every few ms anyway. */
static inline int64_t coarse_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return ts.tv_sec * NSEC_PER_SEC + ts.tv_nsec;
}

static inline int64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec * NSEC_PER_SEC + ts.tv_nsec;
}

/* Deadline for a timeout: < 0 -> INT64_MAX (never), else now + t. */
static inline int64_t deadline_of(int64_t timeout_ns)
{
	int64_t now, d;

	if (timeout_ns < 0)
		return INT64_MAX;
	now = now_ns();
	return __builtin_add_overflow(now, timeout_ns, &d) ? INT64_MAX : d;
}

/*
 * Back off while waiting for a peer to make room (full queue, empty pool):
 * spin, then yield for a few ms, then sleep 10 us growing to 1 ms. @round
 * counts calls.
 */
void backoff_wait(unsigned round);

/* ---- options (util.c) -------------------------------------------- */

/*
 * libbpf's OPTS_VALID: an options struct from a newer caller may be larger
 * than we know; its bytes beyond @known must be zero. NULL is valid.
 */
bool opts_valid(const void *opts, size_t user_sz, size_t known,
		const char *type);
#define OPTS_VALID(opts, type)						\
	(!(opts) || (opts)->sz == sizeof(struct type) ||		\
	 opts_valid((opts), (opts)->sz,					\
		    offsetofend(struct type, type##__last_field), #type))
/*
 * Copy the struct @full (of @full_sz bytes, a size_t sz first) out to the
 * caller's @out: as much as its struct holds (an older caller's is
 * smaller), its sz kept.
 */
static inline void opts_copy_out(void *out, const void *full, size_t full_sz)
{
	size_t user_sz = *(const size_t *)out;

	memcpy((uint8_t *)out + sizeof(size_t),
	       (const uint8_t *)full + sizeof(size_t),
	       (user_sz < full_sz ? user_sz : full_sz) - sizeof(size_t));
}
/* The last field this library version knows, per options struct. */
#define shmbus_open_opts__last_field		owner_uid
#define shmbus_queue_opts__last_field		sync_interval_ns
#define shmbus_producer_opts__last_field	confirm_timeout_ns
#define shmbus_consumer_opts__last_field	lease_ns
#define shmbus_queue_gauges__last_field		fit_free
#define shmbus_pub_opts__last_field		reply_to
#define shmbus_topic_opts__last_field		history
#define shmbus_sub_opts__last_field		sync_interval_ns
#define shmbus_journal_info__last_field		corrupt
#define shmbus_bus_journal_info__last_field	recovered
#define shmbus_request_opts__last_field		reply_len
#define offsetofend(TYPE, FIELD) \
	(offsetof(TYPE, FIELD) + sizeof(((TYPE *)0)->FIELD))
/* Read a field if the caller's struct is large enough to have it. */
#define OPTS_HAS(opts, field) \
	((opts) && (opts)->sz >= offsetofend(__typeof__(*(opts)), field))
#define OPTS_GET(opts, field, fallback) \
	(OPTS_HAS(opts, field) ? (opts)->field : (fallback))

/* ---- process identity (util.c) ----------------------------------- */

/* Start time of @pid (clock ticks since boot, /proc/pid/stat field 22),
 * or 0 if the process does not exist or is a zombie. */
SHMBUS_PRIVATE_API
uint64_t pid_start_time(int pid);

/* ---- the arena (arena.c) ----------------------------------------- */

struct pool_view {
	struct shmbus_pool *desc;	/* shared: free list lives here */
	uint8_t *base;			/* chunk 0 */
	uint32_t *links;		/* free-list links */
	uint32_t chunk_size;		/* validated copies of K fields */
	uint32_t payload_max;
	uint32_t nr_chunks;		/* refs below it are in range: a
					 * member's view, the pool's most;
					 * the daemon's, the chunks it has
					 * backed (its own count, never the
					 * arena's nr_live) */
	uint32_t nr_max;		/* the descriptor's nr_chunks */
	uint32_t cache_max;
};

/*
 * Process-local view of a mapped arena. Geometry is copied out of the
 * superblock once it has been validated, and only the copies are used: a
 * peer that scribbles on the superblock later cannot steer us outside the
 * mapping.
 */
struct arena {
	uint8_t *base;
	uint64_t size;
	int fd;
	bool rdonly;
	struct shmbus_sb *sb;
	struct shmbus_queue *queues;
	uint32_t max_queues;
	struct shmbus_slot *slots;
	uint32_t max_slots;
	uint32_t nr_pools;
	struct pool_view pool[SHMBUS_MAX_POOLS];
	bool reader_fence;		/* SHMBUS_FEAT_COMPAT_READER_FENCE */
	bool room_fence;		/* [ROOM]: this process could not
					 * register for the producers'
					 * membarrier; its takers fence
					 * (room.h) */
	bool grows;			/* SHMBUS_FEAT_INCOMPAT_GROW */
	uint64_t *ringmap;
	uint64_t ring_off;		/* arena offset of the ring area */
	uint64_t ring_units;
	uint32_t bus_id;		/* sb->bus_id: probes' first argument */
};

/* Creation parameters (the daemon fills them from BUS_OPEN). */
struct arena_params {
	char name[SHMBUS_NAME_MAX];
	uint32_t uid, gid, mode;
	uint32_t max_queues;
	uint32_t max_slots;
	uint64_t ring_bytes;
	uint32_t nr_pools;
	/* a pool has count chunks when made and may grow to max; max 0 =
	 * count x grow (at most SHMBUS_CHUNK_MAX - 1) */
	struct { uint32_t payload, count, max; } pools[SHMBUS_MAX_POOLS];
	/* 1 = pools of fixed size, 0 = ARENA_DEF_GROW.
	 * arena_params_check() lowers it until the reserve fits in 64 GiB */
	uint32_t grow;
	uint32_t bus_id;	/* 0 = arena_format() picks one */
};

#define ARENA_DEF_QUEUES	64u
#define ARENA_DEF_SLOTS		256u
#define ARENA_DEF_RING_BYTES	(1u << 20)
#define ARENA_DEF_GROW		8u
#define ARENA_GROW_MAX		1024u

/* The most chunks pool @i of @p may hold (checked params). */
SHMBUS_PRIVATE_API
uint32_t arena_pool_max(const struct arena_params *p, unsigned i);

/* The chunks a pool of @chunk_size bytes a chunk, whose chunk 0 is at a
 * page, has when it has @n or more: as many as the pages of @n hold
 * whole, at most @max. A pool that may grow has a page-fit count, so that
 * what its pages hold is what it has. */
SHMBUS_PRIVATE_API
uint32_t pool_page_fit(uint32_t n, uint32_t chunk_size, uint32_t max);

/* The chunks pool @i of @p has when made: its count, page-fit when it may
 * grow (checked params). */
SHMBUS_PRIVATE_API
uint32_t arena_pool_start(const struct arena_params *p, unsigned i);

/* The byte ranges [start, end) of the arena of @p that are backed when it
 * is made, in order: everything before the first pool's links, then each
 * pool's links and chunks for its count (checked params). Returns how
 * many. */
#define ARENA_RANGES_MAX	(1 + 2 * SHMBUS_MAX_POOLS)
SHMBUS_PRIVATE_API
unsigned arena_backed_ranges(const struct arena_params *p,
			     uint64_t r[ARENA_RANGES_MAX][2]);

/* The bytes that backing the @n byte ranges @r ([start, end), in order of
 * start) takes: whole pages, each counted once. */
SHMBUS_PRIVATE_API
uint64_t arena_backed_span(const uint64_t (*r)[2], unsigned n);

/* Bytes of the arena of @p that are backed when it is made: all but the
 * reserve of its pools (checked params), in whole pages. */
SHMBUS_PRIVATE_API
uint64_t arena_backed_for(const struct arena_params *p);

/* Fill defaults for zero fields and check ranges. 0 or -EINVAL (+ why). */
SHMBUS_PRIVATE_API
int arena_params_check(struct arena_params *p, char *why, size_t whylen);

/* Bytes the arena needs for @p (checked params). */
SHMBUS_PRIVATE_API
uint64_t arena_size_for(const struct arena_params *p);

/* Write a fresh arena for @p into zeroed memory @base of @size bytes. */
SHMBUS_PRIVATE_API
int arena_format(void *base, uint64_t size, const struct arena_params *p);

/*
 * Validate an arena image: every superblock field, every region in bounds
 * and disjoint, every pool descriptor. Returns 0, or -EBADMSG (not a
 * shmbus arena), -EPROTONOSUPPORT (layout version), -EOPNOTSUPP (unknown
 * incompat feature), -EUCLEAN (inconsistent geometry); @why says what.
 */
int arena_validate(const void *base, uint64_t size, char *why, size_t whylen);

/* mmap @fd (its whole size), validate, fill @a. Takes no ownership of fd. */
SHMBUS_PRIVATE_API
int arena_map(struct arena *a, int fd, bool rdonly);
SHMBUS_PRIVATE_API
void arena_unmap(struct arena *a);

static inline struct shmbus_chunk *chunk_at(const struct arena *a,
					    uint32_t ref)
{
	uint32_t p = SHMBUS_REF_POOL(ref), i = SHMBUS_REF_IDX(ref);

	if (unlikely(p >= a->nr_pools || i >= a->pool[p].nr_chunks))
		return NULL;
	return (struct shmbus_chunk *)(a->pool[p].base +
				       (uint64_t)i * a->pool[p].chunk_size);
}

/* The id of the message in chunk @ref (0 for a bad ref): for probes. */
static inline uint64_t chunk_id(const struct arena *a, uint32_t ref)
{
	const struct shmbus_chunk *c = chunk_at(a, ref);

	return c ? READ_ONCE(c->id) : 0;
}

/* The payload is at a fixed offset: a consumer can fetch it in parallel
 * with the header, before it knows the lengths. */
static inline uint8_t *chunk_payload(struct shmbus_chunk *c)
{
	return (uint8_t *)c + SHMBUS_CHUNK_HDR;
}

/*
 * CRC32C (crc32c.c): crc32c() uses the SSE4.2 instruction when the CPU
 * has it (crc32c_hw_available()), else the table (crc32c_sw()); the same
 * result either way. @crc is the previous result, 0 to start.
 */
SHMBUS_PRIVATE_API
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);
SHMBUS_PRIVATE_API
uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len);
SHMBUS_PRIVATE_API
uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t len);
SHMBUS_PRIVATE_API
bool crc32c_hw_available(void);

/*
 * The checksum of the message in @c with lengths @len and @attr_len (the
 * caller's checked copies): its header fields len, attr_len, corr_id and
 * reply_to, then payload, then attributes (crc32c.c says the byte order).
 * Stored in c->checksum by the publisher (SHMBUS_CF_CHECKSUM), verified
 * by the consumer.
 */
SHMBUS_PRIVATE_API
uint32_t chunk_checksum(const struct shmbus_chunk *c, uint32_t len,
			uint32_t attr_len);

static inline struct shmbus_queue *queue_at(const struct arena *a, uint32_t qid)
{
	return qid < a->max_queues ? &a->queues[qid] : NULL;
}

static inline struct shmbus_slot *slot_at(const struct arena *a, uint32_t i)
{
	return i < a->max_slots ? &a->slots[i] : NULL;
}

/* Find a live queue by name; returns qid or -ENOENT. */
int arena_find_queue(const struct arena *a, const char *name);

struct ring;
/*
 * Bind @r to the ring of queue @q, validating ring_off/ring_cap against the
 * ring area. Returns 0 or -EUCLEAN.
 */
int arena_queue_ring(const struct arena *a, const struct shmbus_queue *q,
		     struct ring *r);
/* Messages attached consumers of queue @qid (live at @gen) claimed from
 * its rings and have not taken yet (ring.h): still waiting, though head
 * has passed them. */
uint64_t arena_queue_claimed(const struct arena *a, uint32_t qid,
			     uint32_t gen);
/* Priority level @level's ring of @q (level 0 = arena_queue_ring). */
int arena_queue_ring_level(const struct arena *a,
			   const struct shmbus_queue *q, uint32_t level,
			   struct ring *r);

/*
 * Sum a queue's counters: folded totals plus every ACTIVE slot bound to
 * (qid, gen). Also counts attached producers and consumers.
 */
void arena_queue_counters(const struct arena *a, uint32_t qid, uint32_t gen,
			  uint64_t out[SHMBUS_NR_COUNTERS],
			  uint32_t *producers, uint32_t *consumers,
			  uint64_t *in_flight);

/* Slot counter bump: only the owner writes its slot (no atomics). */
static inline void slot_count(struct shmbus_slot *s, unsigned ctr, uint64_t n)
{
	WRITE_ONCE(s->ctr[ctr], READ_ONCE(s->ctr[ctr]) + n);
}

#endif /* SHMBUS_INTERNAL_H */
