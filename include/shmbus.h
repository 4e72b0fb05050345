/* SPDX-License-Identifier: MIT */
/*
 * shmbus.h - public API of libshmbus, a shared-memory message bus.
 *
 * Model: a bus is one shared-memory arena managed by the shmbusd daemon
 * (started on demand). Queues live in the arena; producers publish into a
 * queue and competing consumers receive from it, without system calls while
 * consumers are awake. A consumer that blocks is woken through its eventfd.
 *
 * Conventions (as liburing and libbpf):
 *  - Functions returning int return >= 0 on success and a negative errno
 *    on failure. Constructors return NULL and set errno.
 *  - Option structs carry their size in their first field; declare them
 *    with SHMBUS_OPTS() so that fields you do not set are zero. A NULL
 *    opts pointer means all defaults.
 *  - Handles are opaque. struct shmbus (the bus) may be used from several
 *    threads. A producer or consumer handle is used by one thread at a
 *    time, like an io_uring. After fork(), the child must open its own bus.
 *  - Timeouts are in nanoseconds: < 0 waits for ever, 0 never waits.
 */
#ifndef SHMBUS_H
#define SHMBUS_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SHMBUS_VERSION_MAJOR	0
#define SHMBUS_VERSION_MINOR	7
#define SHMBUS_VERSION_PATCH	0

#ifndef SHMBUS_API
#define SHMBUS_API __attribute__((visibility("default")))
#endif

/*
 * Declare an options struct with its size set and every other field zero,
 * then the given fields: SHMBUS_OPTS(shmbus_queue_opts, o, .max_len = 64);
 */
#define SHMBUS_OPTS(TYPE, NAME, ...)					\
	struct TYPE NAME = ({						\
		memset(&NAME, 0, sizeof(struct TYPE));			\
		(struct TYPE){						\
			.sz = sizeof(struct TYPE),			\
			__VA_ARGS__					\
		};							\
	})

struct shmbus;
struct shmbus_producer;
struct shmbus_consumer;

/* Library version as "MAJOR.MINOR.PATCH". */
SHMBUS_API const char *shmbus_version(void);

/*
 * Diagnostics. The library explains refusals (a bad arena, a protocol
 * error, a permission check) through a print callback, as libbpf does.
 * The default prints warnings to stderr; pass NULL to silence. Returns the
 * previous callback.
 */
enum shmbus_print_level {
	SHMBUS_WARN,
	SHMBUS_INFO,
	SHMBUS_DEBUG,
};
typedef int (*shmbus_print_fn_t)(enum shmbus_print_level level,
				 const char *fmt, va_list ap);
SHMBUS_API shmbus_print_fn_t shmbus_set_print(shmbus_print_fn_t fn);

/*
 * Why the most recent failed call of this thread failed, as text, when
 * the daemon or the library gave a reason (which quota, which policy rule,
 * which name is invalid); "" when the failure had none. Like dlerror(),
 * per thread; read it right after a call returned an error: a later
 * failed control call replaces it, and a call that fails before talking
 * to the daemon without explaining itself may leave an older text. The
 * string stays valid until this thread's next call into the library.
 */
SHMBUS_API const char *shmbus_errmsg(void);

/* ------------------------------------------------------------------ */
/* Bus                                                                */
/* ------------------------------------------------------------------ */

#define SHMBUS_OPEN_NOCREATE	0x1u	/* fail with -ENOENT if absent */
#define SHMBUS_OPEN_EXCL	0x2u	/* fail with -EEXIST if present */
#define SHMBUS_OPEN_RDONLY	0x4u	/* map read-only: list/stat only */
#define SHMBUS_OPEN_NOSTART	0x8u	/* never start the daemon */
#define SHMBUS_OPEN_OWNER	0x10u	/* the bus of owner_uid, not the
					 * caller's own; never created */

struct shmbus_pool_spec {
	uint32_t payload;	/* largest payload of the class, bytes */
	uint32_t count;		/* chunks in the class (one that may grow
				 * rounds it up to fill whole pages) */
};

struct shmbus_open_opts {
	size_t sz;
	/* daemon socket; default $SHMBUS_SOCKET, else /run/shmbus/shmbusd.sock
	 * for root, else $XDG_RUNTIME_DIR/shmbus/shmbusd.sock, else
	 * /tmp/shmbus-$UID/shmbusd.sock */
	const char *socket_path;
	uint32_t flags;		/* SHMBUS_OPEN_* */
	/* The rest applies only when this call creates the bus. A geometry
	 * field left at 0 takes the daemon's default: the value below
	 * unless its configuration (bus-queues, bus-slots, bus-ring-size,
	 * bus-pools in shmbusd.conf) says otherwise. */
	uint32_t mode;		/* permission bits for owner/group/other;
				 * 0 = 0600. r = may consume, w = may produce */
	uint32_t max_queues;	/* 0 = 64 */
	uint32_t max_slots;	/* producer+consumer handles; 0 = 256 */
	uint64_t ring_bytes;	/* ring storage; 0 = 1 MiB */
	uint32_t nr_pools;	/* 0 = default classes: 256 B x 8192,
				 * 4 KiB x 2048, 64 KiB x 64 */
	/* Each pool starts with its count of chunks and grows while the
	 * bus runs out of them, up to count x pool_growth (memory is
	 * taken only as it grows; the daemon's --bus-max, memory budget
	 * and the owner's bytes quota still bound it). 0 = the daemon's
	 * default (bus-pool-growth, 8), 1 = pools of fixed size,
	 * at most 1024. */
	uint32_t pool_growth;
	struct shmbus_pool_spec pools[8];
	int connect_timeout_ms;	/* daemon start, connect(), HELLO and
				 * BUS_OPEN replies; 0 = 5000 */
	uint32_t owner_uid;	/* with SHMBUS_OPEN_OWNER: whose bus */
};

/*
 * Open (and by default create) the bus called @name (NULL: $SHMBUS_BUS or
 * "default"), connecting to the daemon and starting it if its socket is
 * absent. The arena is mapped into the caller and validated.
 *
 * Bus names are per owner: every uid has its own namespace, and @name is
 * the caller's own bus of that name. To join another user's bus, say
 * whose: SHMBUS_OPEN_OWNER with opts->owner_uid. Such a bus is never
 * created (ENOENT if it does not exist), and opening it needs the
 * permission its mode bits, or the daemon's policy, give the caller.
 *
 * Returns a bus handle, or NULL with errno:
 *   EINVAL        bad name or options
 *   ENOENT        NOCREATE (or OWNER, another uid) and no such bus
 *   EEXIST        EXCL and the bus exists
 *   EACCES        the bus's owner/group/mode or the daemon's policy
 *                 refuse the caller (shmbus_errmsg() says which rule)
 *   ENOMEM        the daemon's memory cgroup or the host has not the room
 *                 for the arena (nothing was allocated)
 *   EDQUOT        the arena is over the daemon's --bus-max or would bring
 *                 all arenas over --memory-max; or the caller's uid is at
 *                 its buses, bytes or conns quota (shmbus_errmsg() says
 *                 which)
 *   ECONNREFUSED  no daemon could be reached or started (with NOSTART:
 *                 none listens at the socket; no shmbusd to start:
 *                 at once, shmbus_errmsg() says where it looked; one
 *                 that refused to start, a bad configuration file:
 *                 at once, shmbus_errmsg() has what it said)
 *   ETIMEDOUT     connect_timeout_ms passed: a full listen backlog, or no
 *                 answer to HELLO or BUS_OPEN (shmbus_errmsg() says which)
 *   EPROTO        the daemon spoke a protocol we do not understand
 *   EINPROGRESS   the daemon was restarted and running processes hold
 *                 the bus without having rejoined it yet, for all of
 *                 connect_timeout_ms
 *   EBADMSG, EUCLEAN, EPROTONOSUPPORT, EOPNOTSUPP  the arena is invalid
 *
 * The handle outlives its daemon: producers and consumers go on without
 * it, and a thread of the handle rejoins the next daemon (starting it
 * unless NOSTART) as soon as it can. Meanwhile control calls wait for
 * that up to connect_timeout_ms, then fail with ENOTCONN; one the dead
 * daemon did not answer fails with ECONNRESET (declares are sent again).
 */
SHMBUS_API struct shmbus *shmbus__open(const char *name,
				       const struct shmbus_open_opts *opts);

/*
 * Close the bus: unmap, disconnect. Producers and consumers of this bus
 * must have been freed first. NULL is a no-op.
 */
SHMBUS_API void shmbus__close(struct shmbus *bus);

/* The bus name. */
SHMBUS_API const char *shmbus__name(const struct shmbus *bus);

/* The bus id: random per bus, never 0; a bus a restarted daemon adopts
 * keeps it, a new bus of the same name gets another.
 * The first argument of every USDT probe and part of every BPF map key
 * (docs/probes.md). */
SHMBUS_API uint32_t shmbus__id(const struct shmbus *bus);

/* A bus as shmbus__info() describes it. */
struct shmbus_info {
	char	 name[64];
	uint32_t id;		/* shmbus__id() */
	uint32_t owner_uid;	/* the owner: its namespace holds the name */
	uint32_t owner_gid;
	uint32_t mode;		/* 0..0777: r = may consume, w = may produce */
	uint64_t arena_size;	/* bytes mapped: the arena, with the reserve
				 * its pools may grow into (not memory
				 * until they do) */
	uint32_t max_queues;
	uint32_t max_slots;	/* producer + consumer handles */
	uint32_t nr_pools;
	uint32_t rdonly;	/* this handle is read-only */
};

/*
 * Describe @bus into @info. Owner, group and mode are the daemon's
 * record, sent when the bus was opened (the arena's copy is writable by
 * every member and only informative); the rest is the arena's validated
 * geometry. Returns 0, or -EINVAL.
 */
SHMBUS_API int shmbus__info(const struct shmbus *bus, struct shmbus_info *info);

/* A bus as shmbus__bus_list() describes it. */
struct shmbus_bus_entry {
	char	 name[64];
	uint32_t owner_uid;
	uint32_t owner_gid;
	uint32_t mode;
	uint32_t id;		/* shmbus__id() */
	uint64_t arena_size;	/* bytes of memory it holds (its arena
				 * but for the reserve its pools have not
				 * grown into) */
	uint64_t created_ns;	/* CLOCK_REALTIME */
	uint32_t members;	/* processes bound to it */
	uint32_t queues;	/* queues, topics and subscriptions */
	uint32_t durable;	/* of them persistent */
	uint32_t __pad;
};

/*
 * The buses of the daemon @opts names (its socket_path and
 * connect_timeout_ms; NULL: the default socket) that the caller may
 * open (root: all of them), up to @cap of them into @out, newest first.
 * Never starts a daemon and opens no bus. Returns how many there are
 * (more than @cap if they did not fit), or -ECONNREFUSED (no daemon),
 * -ETIMEDOUT, -EPROTO, -EINVAL.
 */
SHMBUS_API int shmbus__bus_list(const struct shmbus_open_opts *opts,
				struct shmbus_bus_entry *out, unsigned cap);

/* shmbus__bus_delete() flags */
#define SHMBUS_BUS_DELETE_FORCE	0x1u	/* detach its members first */

/*
 * Delete the caller's bus @name (with SHMBUS_OPEN_OWNER in @opts:
 * opts->owner_uid's, which only root may), freeing its memory, its
 * queues and their messages, and its persistent queues' journals. A bus
 * that processes are bound to is refused (-EBUSY, shmbus_errmsg() names
 * some of their pids) unless SHMBUS_BUS_DELETE_FORCE: then their handles
 * find their queues deleted (-EIDRM), and their bus handles lose their
 * connection (control calls -EIDRM: "the bus was deleted"). Their
 * mappings stay valid until they close them. Starts the daemon as
 * shmbus__open() does (a persistent bus is on disk until one runs).
 * @was (may be NULL) gets its name, owner, and what it had: members,
 * queues, arena_size. Returns 0, -ENOENT, -EBUSY, -EACCES (not its
 * owner), -EINPROGRESS (held by processes that have not rejoined a
 * restarted daemon), or a connection error as shmbus__open()'s.
 */
SHMBUS_API int shmbus__bus_delete(const char *name, uint32_t flags,
				  const struct shmbus_open_opts *opts,
				  struct shmbus_bus_entry *was);

/* How publishers on this handle wake sleeping consumers: "kmod" (one
 * ioctl to the shmbus kernel module for a publish that wakes two or more
 * seats, topic fan-out included; an eventfd write for one) or "eventfd"
 * (a write per sleeper). $SHMBUS_KMOD=auto|off|required
 * chooses at open; docs/kernel.md. */
SHMBUS_API const char *shmbus__wake_backend(const struct shmbus *bus);

/* ------------------------------------------------------------------ */
/* Queues                                                             */
/* ------------------------------------------------------------------ */

/* What publish does when the queue is full (shmbus_queue_opts.overflow). */
enum shmbus_overflow {
	SHMBUS_OVERFLOW_BLOCK = 0,	/* wait up to the publish's timeout,
					 * then -ENOBUFS (counted "full") */
	SHMBUS_OVERFLOW_REJECT = 1,	/* -ENOBUFS at once, whatever the
					 * timeout (counted "full") */
	SHMBUS_OVERFLOW_DROP_OLDEST = 2,/* the publish succeeds; the oldest
					 * message goes to the dead-letter
					 * queue (reason overflow) or, with
					 * none, is dropped; counted */
};

/* Queue flags. */
#define SHMBUS_QUEUE_EXPIRE_TO_DLQ	0x1u	/* expired messages go to the
						 * dead-letter queue (default:
						 * dropped, counted) */
/* Every message carries a CRC32C of its payload, attributes, lengths,
 * correlation id and reply-to, computed at publish (at commit for a loan)
 * and verified at receive: a message that fails is never returned; it is
 * counted (SHMBUS_STAT_CORRUPT) and goes to the dead-letter queue with
 * reason SHMBUS_DL_CHECKSUM, or is dropped (counted) without one. It
 * detects accidents and stray writes, not a bus member who recomputes it
 * (docs/semantics.md). */
#define SHMBUS_QUEUE_CHECKSUM		0x2u
/* A persistent queue: the daemon journals every message on disk before it
 * enters the queue, and the queue, its settings and its unsettled messages
 * come back after the daemon, every process or the machine went down
 * (docs/semantics.md, "Persistent queues"). Publishes are confirmed as
 * shmbus_queue_opts.sync says. Needs a daemon with a state directory; its
 * dead-letter queue, if any, must be persistent too. Not with priorities
 * above 1, overflow drop-oldest, or a msg_size one journal record cannot
 * hold (about 1 MiB: -EMSGSIZE). */
#define SHMBUS_QUEUE_DURABLE		0x4u
/* shmbus_queue_info.flags only: the daemon quarantined the queue (its ring
 * was damaged beyond repair). Attaching fails with -EUCLEAN; receive and
 * publish on handles attached before return -EUCLEAN (a sleeping consumer
 * is woken with it). Delete the queue and declare it again. */
#define SHMBUS_QUEUE_DAMAGED		0x80000000u

struct shmbus_queue_opts {
	size_t sz;
	uint32_t max_len;	/* capacity, rounded up to a power of two;
				 * 0 = 1024; 2..16M */
	uint32_t msg_size;	/* largest payload; 0 = 4096 */
	uint32_t max_consumers;	/* concurrent consumer handles; 0 = 16;
				 * 1..128 */
	uint32_t flags;		/* SHMBUS_QUEUE_* */
	/* Delivery semantics (docs/semantics.md). */
	int64_t lease_ns;	/* visibility timeout of a received message;
				 * 0 = 30 s; >= 1 ms */
	int64_t ttl_ns;		/* message time to live; 0 = none */
	uint32_t max_deliveries;/* then dead-letter; 0 = unlimited */
	uint32_t backoff_mult_milli; /* redelivery delay multiplier x1000;
				 * 0 = 2000 (doubling) */
	int64_t backoff_init_ns;/* delay before the 2nd delivery after a
				 * nack or an expired lease; 0 = none */
	int64_t backoff_max_ns;	/* cap; 0 = 10 x backoff_init_ns */
	const char *dead_letter_queue;	/* existing queue, or NULL */
	int64_t dedup_window_ns;/* publishes with a dedup_id seen within
				 * this window are dropped; 0 = no dedup */
	uint32_t overflow;	/* enum shmbus_overflow */
	uint32_t priorities;	/* priority levels, 1..4; 0 = 1 */
	/* SHMBUS_QUEUE_DURABLE: when a publish is confirmed */
	uint32_t sync;		/* enum shmbus_sync; 0 = always */
	uint32_t __pad;
	int64_t sync_interval_ns;/* SHMBUS_SYNC_BATCH: at most this long
				 * between syncs; 0 = 2 ms; 100 us..1 s */
};

/* When the daemon confirms a publish to a persistent queue. */
enum shmbus_sync {
	SHMBUS_SYNC_ALWAYS = 0,	/* once the message is on stable storage
				 * (fdatasync); every batch the daemon
				 * writes is synced at once, so publishers
				 * that wait together share one sync */
	SHMBUS_SYNC_BATCH = 1,	/* the same, with one sync per
				 * sync_interval_ns at most (group commit) */
	SHMBUS_SYNC_NEVER = 2,	/* once written to the page cache: survives
				 * the death of any process, not a power
				 * cut */
};

/*
 * Declare queue @name. Declaring an existing queue with the same settings
 * succeeds (returns 0); with different settings it fails with -EEXIST and
 * shmbus_errmsg() names each setting that differs, with the queue's value
 * and the declare's ("queue 'q' exists with other settings: max-len 8
 * (this declare: 16)").
 *
 * Names (of buses, queues, topics, groups) are 1 to 63 bytes of
 * A-Z a-z 0-9 . _ - and do not start with '.'; any other is -EINVAL, and
 * shmbus_errmsg() states the rule. A topic name's dot-separated tokens
 * are not empty; a topic pattern is such a name whose tokens may be "*"
 * (any one token) or, last, ">" (one or more).
 *
 * Returns 1 if created, 0 if it existed, or:
 *   -EINVAL  bad name or options; -EMSGSIZE  msg_size larger than the
 *   largest pool class; -ENOSPC  directory or ring storage full;
 *   -EACCES  caller is not the bus owner (or root); -EPERM read-only bus;
 *   -EDQUOT  the caller's uid is at its queues or seats quota (every
 *   max_consumers seat counts; shmbus_errmsg() says which);
 *   -ENOTCONN/-ECONNRESET  the daemon is gone.
 */
SHMBUS_API int shmbus__queue_declare(struct shmbus *bus, const char *name,
				     const struct shmbus_queue_opts *opts);

/*
 * Delete queue @name. Messages in it are freed. Producers and consumers
 * bound to it get -EIDRM from then on (a blocked consumer wakes up with
 * -EIDRM); free them. The memory is reused only after every attached
 * process has left its current operation (a cross-process grace period).
 *
 * Returns 0, or -ENOENT, -EACCES, -EPERM, -ENOTCONN/-ECONNRESET.
 */
SHMBUS_API int shmbus__queue_delete(struct shmbus *bus, const char *name);

/* Statistics of one queue (see enum shmbus_stat). */
enum shmbus_stat {
	SHMBUS_STAT_PUBLISHED	= 0,
	SHMBUS_STAT_DELIVERED	= 1,
	SHMBUS_STAT_ACKED	= 2,
	SHMBUS_STAT_NACKED	= 3,
	SHMBUS_STAT_REDELIVERED	= 4,
	SHMBUS_STAT_DEADLETTERED = 5,
	SHMBUS_STAT_EXPIRED	= 6,
	SHMBUS_STAT_DROPPED	= 7,
	SHMBUS_STAT_FULL	= 8,	/* publishes refused: queue full */
	SHMBUS_STAT_NOMEM	= 9,	/* loans refused: pool empty */
	SHMBUS_STAT_CORRUPT	= 10,	/* bad refs/headers skipped */
	SHMBUS_STAT_WAKEUPS	= 11,	/* eventfd writes by producers */
	SHMBUS_STAT_SLEEPS	= 12,	/* times a consumer blocked */
	SHMBUS_STAT_RECLAIMED	= 13,	/* chunks reclaimed from dead handles */
	SHMBUS_STAT_LEASE_EXPIRED = 14,	/* leases taken back by the daemon */
	SHMBUS_STAT_DUPLICATES	= 15,	/* publishes dropped: same dedup id */
	SHMBUS_STAT__MAX	= 16,
};

/* What a directory entry is (shmbus_queue_info.kind). */
enum shmbus_kind {
	SHMBUS_QUEUE = 0,
	SHMBUS_TOPIC = 1,
	SHMBUS_SUBSCRIPTION = 2,	/* named "PATTERN#GROUP" */
};

struct shmbus_queue_info {
	char	 name[64];
	uint32_t id;
	uint32_t capacity;	/* ring slots */
	uint32_t max_len;	/* as declared */
	uint32_t msg_size;
	uint32_t max_consumers;
	uint32_t consumers;	/* attached consumer handles */
	uint32_t producers;	/* attached producer handles */
	uint32_t max_deliveries;
	uint64_t depth;		/* messages waiting (approximate) */
	uint64_t in_flight;	/* delivered, not yet acked or released */
	int64_t lease_ns;
	int64_t ttl_ns;
	int64_t backoff_init_ns;
	int64_t backoff_max_ns;
	uint32_t backoff_mult_milli;
	uint32_t flags;		/* SHMBUS_QUEUE_* */
	char	 dead_letter_queue[64];	/* "" = none */
	int64_t dedup_window_ns;
	uint32_t kind;		/* enum shmbus_kind */
	uint32_t history;	/* topic */
	uint32_t overflow;	/* enum shmbus_overflow */
	uint32_t priorities;
	uint64_t sub_dropped;	/* subscription: dropped by publishers */
	uint64_t stat[SHMBUS_STAT__MAX];
};

/*
 * Fill @info for queue @name from the arena (no daemon round trip).
 * Returns 0, -ENOENT, -EINVAL.
 */
SHMBUS_API int shmbus__queue_info(struct shmbus *bus, const char *name,
				  struct shmbus_queue_info *info);

/*
 * List up to @max queues into @out (may be NULL with max 0 to count).
 * Returns the number of queues on the bus (which may exceed @max).
 */
SHMBUS_API int shmbus__queue_list(struct shmbus *bus,
				  struct shmbus_queue_info *out, unsigned max);

/* The journal of a persistent queue (shmbus__queue_journal()). */
struct shmbus_journal_info {
	size_t sz;
	uint32_t sync;		/* enum shmbus_sync */
	uint32_t segments;	/* segment files on disk */
	int64_t sync_interval_ns;
	uint64_t bytes;		/* on disk */
	uint64_t live;		/* messages journaled and not yet settled */
	uint64_t written;	/* records written since the daemon opened it */
	uint64_t syncs;		/* fdatasyncs since then */
	uint64_t failed;	/* publishes that could not be journaled */
	uint64_t replayed;	/* records read when the daemon opened it */
	uint64_t corrupt;	/* records it skipped then as corrupt */
};

/* What a queue holds besides its ring, as shmbus__queue_gauges() reads
 * it from the arena, where the daemon keeps it. */
struct shmbus_queue_gauges {
	size_t sz;
	uint64_t delayed;	/* messages the daemon holds until they are
				 * due: publishes with a delay, nacks with a
				 * delay, redeliveries waiting out their
				 * backoff, messages waiting for room in the
				 * full ring. Not in depth. */
	uint32_t blocked_producers;	/* producer handles whose publish
				 * waits now for room in this queue (or a
				 * free chunk in the bus's pools) */
	uint32_t __pad;
	/* Messages of the queue's largest size (msg_size) the bus can hold
	 * at once: the chunks every pool class whose payload is at least
	 * msg_size may grow to (shmbus__pool_info() chunks_max). A queue
	 * whose capacity is above it never fills with such messages: a
	 * publisher waits for a free chunk first (ENOMEM after its
	 * timeout). Shared by every queue of the bus. */
	uint64_t fit;
	uint64_t fit_free;	/* of them free now (free lists, the caches
				 * of attached handles) or still to come
				 * from growth */
};

/*
 * Fill @gauges (its sz set; SHMBUS_OPTS() declares it) for queue @name.
 * Returns 0, -ENOENT (no such queue), -EINVAL.
 */
SHMBUS_API int shmbus__queue_gauges(struct shmbus *bus, const char *name,
				    struct shmbus_queue_gauges *gauges);

/*
 * Fill @info (its sz set; SHMBUS_OPTS() declares it) for persistent queue
 * @name from the arena, where the daemon keeps these numbers. Returns 0,
 * -ENOENT (no such queue), -ENODATA (the queue is not persistent),
 * -EINVAL.
 */
SHMBUS_API int shmbus__queue_journal(struct shmbus *bus, const char *name,
				     struct shmbus_journal_info *info);

/* The journal syncs of a bus, all its persistent queues together, and
 * its last recovery (shmbus__bus_journal()). */
#define SHMBUS_SYNC_HIST_BUCKETS	16

struct shmbus_bus_journal_info {
	size_t sz;
	uint64_t syncs;		/* fdatasyncs since the bus was created */
	uint64_t sync_ns;	/* their total time */
	/* sync_hist[i]: syncs that took [2^i, 2^(i+1)) microseconds;
	 * bucket 0 also those under 1 us, the last one everything from
	 * 2^15 us (32.768 ms) */
	uint64_t sync_hist[SHMBUS_SYNC_HIST_BUCKETS];
	uint64_t recovery_ns;	/* the daemon rebuilding the bus's persistent
				 * queues from their journals; 0 = never */
	uint64_t recovered;	/* messages it put back then */
};

/*
 * Fill @info (its sz set; SHMBUS_OPTS() declares it) from the arena, where
 * the daemon keeps these numbers (all 0 on a bus without persistent
 * queues). Returns 0 or -EINVAL.
 */
SHMBUS_API int shmbus__bus_journal(struct shmbus *bus,
				   struct shmbus_bus_journal_info *info);

/*
 * Redrive: move up to @max messages (0 = all waiting) from dead-letter
 * queue @dlq back to the queue each came from, or to queue @to if not
 * NULL. Each is copied (payload, correlation id) as a new message and
 * then acked in the DLQ: never lost, at worst (a crash in between) in both.
 * Returns how many moved (>= 0), or -ENOENT (no such queue, or a message's
 * source queue is gone: it stays in the DLQ), -EDESTADDRREQ (a message
 * has no source: published to the DLQ directly; give @to), -ENOBUFS (a
 * target is full), or another receive or publish error, when none moved.
 */
SHMBUS_API int shmbus__redrive(struct shmbus *bus, const char *dlq,
			       const char *to, unsigned max);

/* ------------------------------------------------------------------ */
/* Topics (pub/sub)                                                   */
/* ------------------------------------------------------------------ */

struct shmbus_topic_opts {
	size_t sz;
	uint32_t msg_size;	/* largest payload; 0 = 4096 */
	uint32_t history;	/* keep the last N messages for subscribers
				 * that ask for them (SHMBUS_SUB_HISTORY);
				 * 0 = none */
	uint32_t flags;		/* SHMBUS_QUEUE_CHECKSUM: each message is
				 * checksummed once at publish and verified
				 * by every subscription's consumers */
};

/*
 * Declare topic @name (a dot-separated name such as "orders.created").
 * Publish to it with a producer (shmbus_producer__new on the topic's
 * name): each message goes, as one shared chunk, into every subscription
 * whose pattern matches. Returns 1 created, 0 existed, or the errors of
 * shmbus__queue_declare (-EEXIST: a queue of that name, or other
 * settings). Delete it with shmbus__queue_delete().
 */
SHMBUS_API int shmbus__topic_declare(struct shmbus *bus, const char *name,
				     const struct shmbus_topic_opts *opts);

/* Subscription flags. */
#define SHMBUS_SUB_DURABLE	0x1u	/* keep the subscription (and its
					 * messages) while no consumer is
					 * attached; needs a group */
#define SHMBUS_SUB_DROP_OLDEST	0x2u	/* slow subscriber: a publisher
					 * finding it full drops its oldest
					 * message (counted); default: the
					 * publisher waits (its timeout) */
#define SHMBUS_SUB_HISTORY	0x4u	/* a new subscription starts with
					 * the history of matching topics */
/* A persistent subscription: durable (it implies SHMBUS_SUB_DURABLE, and
 * needs a group) and journaled on disk like a SHMBUS_QUEUE_DURABLE queue:
 * it and its messages come back after a restart or a reboot. Each message
 * enters it as a copy of its own (its own id); publishers to the topic get
 * no confirms from it (confirms are for durable queues). Not with
 * SHMBUS_SUB_DROP_OLDEST. */
#define SHMBUS_SUB_PERSISTENT	0x8u

struct shmbus_sub_opts {
	size_t sz;
	const char *group;	/* consumer group: consumers of the same
				 * (pattern, group) compete, every group gets
				 * every message; NULL = an exclusive,
				 * ephemeral subscription of this consumer */
	uint32_t flags;		/* SHMBUS_SUB_* */
	uint32_t max_len;	/* new subscription's capacity; 0 = 1024 */
	uint32_t max_consumers;	/* new subscription; 0 = 16 */
	uint32_t consumer_flags;/* SHMBUS_CONSUMER_* for this consumer */
	uint32_t prefetch;	/* as in shmbus_consumer_opts */
	uint32_t __pad;
	int64_t lease_ns;	/* new subscription's lease; 0 = 30 s */
	int64_t spin_ns;	/* as in shmbus_consumer_opts */
	/* new SHMBUS_SUB_PERSISTENT subscription: as shmbus_queue_opts */
	uint32_t sync;		/* enum shmbus_sync; 0 = always */
	uint32_t __pad2;
	int64_t sync_interval_ns;
};

/*
 * Subscribe: a consumer of the subscription (@pattern, @opts->group),
 * created if it does not exist. @pattern is a topic name, or tokens where
 * "*" matches one token and a final ">" one or more ("orders.*",
 * "orders.>"); it also matches topics declared later. Everything a
 * consumer does works on it (leases, acks, DLQ of its own: none).
 * An ephemeral subscription is deleted when its last consumer goes; a
 * durable one when shmbus__unsubscribe() says so.
 * Returns NULL with errno EINVAL (bad pattern or group), ENAMETOOLONG
 * (pattern + group over 62 bytes), EACCES, EUSERS, ENOSPC, EDQUOT (a new
 * subscription over the caller's queues or seats quota), ...
 */
SHMBUS_API struct shmbus_consumer *
shmbus_consumer__subscribe(struct shmbus *bus, const char *pattern,
			   const struct shmbus_sub_opts *opts);

/* Delete subscription (@pattern, @group) and its messages. */
SHMBUS_API int shmbus__unsubscribe(struct shmbus *bus, const char *pattern,
				   const char *group);

/* Chunk pools (size classes) of the bus, for monitoring. */
struct shmbus_pool_info {
	uint32_t payload;	/* largest payload of the class, bytes */
	uint32_t chunk_size;	/* bytes per chunk, header included */
	uint32_t chunks;	/* chunks in the class now */
	uint32_t free;		/* on the shared free list */
	uint32_t cached;	/* free, in attached handles' caches */
	uint32_t chunks_max;	/* the most it may grow to (= chunks: it
				 * does not grow) */
};

/* Number of pools of the bus (>= 1). */
SHMBUS_API int shmbus__pool_count(const struct shmbus *bus);

/*
 * Fill @info for pool @i (0-based, smallest payload first) from the arena.
 * Chunks not free and not cached are in queues or held by handles.
 * Returns 0, -ENOENT (no such pool), -EINVAL.
 */
SHMBUS_API int shmbus__pool_info(const struct shmbus *bus, unsigned i,
				 struct shmbus_pool_info *info);

/* ------------------------------------------------------------------ */
/* Producers                                                          */
/* ------------------------------------------------------------------ */

/*
 * Stamp every message with its publish time (CLOCK_MONOTONIC ns, seen by
 * consumers as shmbus_msg.ts_ns; 0 when not stamped). Off by default: the
 * clock read costs about 40 ns per message on a VM, a quarter of a 64-byte
 * round trip there.
 */
#define SHMBUS_PRODUCER_TIMESTAMP	0x1u
/*
 * Publishes to a persistent queue return once the message is in the
 * queue's intake, without waiting for its confirm: call
 * shmbus_producer__confirm_wait() after a batch. Without it, every
 * publish (and every publish_batch, once at its end) waits for the confirm
 * of what it published.
 */
#define SHMBUS_PRODUCER_ASYNC_CONFIRM	0x2u

struct shmbus_producer_opts {
	size_t sz;
	uint32_t flags;		/* SHMBUS_PRODUCER_* */
	uint32_t __pad;
	/* persistent queue, without SHMBUS_PRODUCER_ASYNC_CONFIRM: how long
	 * a publish waits for its confirm (then -ETIMEDOUT, the message
	 * published but not confirmed); 0 = 30 s, < 0 = for ever */
	int64_t confirm_timeout_ns;
};

/*
 * Attach a producer to queue @queue (which must exist). Returns a handle,
 * or NULL with errno ENOENT, EACCES (no w permission), EUSERS (no free
 * participant slot), EAGAIN (a member holds the bus's grace periods up
 * and the released slots' sweeps wait for them; retry), EINVAL,
 * ENOTCONN/ECONNRESET, ECHILD (bus opened by the parent before fork).
 */
SHMBUS_API struct shmbus_producer *
shmbus_producer__new(struct shmbus *bus, const char *queue,
		     const struct shmbus_producer_opts *opts);

/*
 * Detach and free. Outstanding loans become invalid. NULL is a no-op.
 * In a forked child, frees only the child's copy (the parent's handle is
 * untouched).
 */
SHMBUS_API void shmbus_producer__free(struct shmbus_producer *p);

/*
 * A message attribute (a header): a key and a value, like AMQP headers or
 * SQS message attributes. Keys are 1..255 bytes; a message carries at most
 * SHMBUS_ATTR_BYTES bytes of attributes (4 bytes per attribute plus the
 * keys and values). Values are bytes; strings are stored without their NUL.
 */
struct shmbus_attr {
	const char *key;	/* NUL-terminated */
	const void *value;
	uint32_t value_len;
	uint32_t __pad;
};

#define SHMBUS_ATTR_BYTES	1024u

/* Per-message options; NULL means defaults. */
struct shmbus_pub_opts {
	size_t sz;
	int64_t timeout_ns;	/* wait while the queue is full or the pool
				 * is empty; default 0 (fail at once) */
	uint64_t corr_id;	/* correlation id carried in the header */
	int64_t ttl_ns;		/* expire this long after publish; 0 = the
				 * queue's TTL; < 0 = never */
	int64_t delay_ns;	/* invisible until this long after publish
				 * (held by the daemon); 0 = none */
	const char *dedup_id;	/* idempotency key: a second publish with
				 * the same id within the queue's dedup
				 * window returns 0 but is dropped (counted
				 * in SHMBUS_STAT_DUPLICATES); an id counts
				 * once its message is in the queue, and a
				 * publish of it meanwhile waits (up to
				 * timeout_ns, then -EBUSY); NULL = none */
	const struct shmbus_attr *attrs;	/* headers, or NULL */
	uint32_t nr_attrs;
	uint32_t priority;	/* 0 (default) .. the queue's priorities - 1;
				 * higher is delivered first */
	/* Make the message a request whose replies go to this queue
	 * (a queue of the same bus that is neither a topic nor durable),
	 * with corr_id as their correlation id: what shmbus__request()
	 * does with its private reply queue, for a program that waits
	 * for its replies in its own way (shmbus-bridge's in routes). The
	 * queue is named here and resolved at the publish (-ENOENT if it
	 * does not exist, -EINVAL if it cannot take replies); a reply to a
	 * queue deleted since goes nowhere, also when its id serves
	 * another queue by then. NULL = none. */
	const char *reply_to;
	uint32_t flags;		/* SHMBUS_PUB_* */
	uint32_t __pad;
};

/*
 * More publishes of this producer follow at once: the wake-up of
 * consumers sleeping on the queue waits for the next publish without
 * this flag, or for shmbus_producer__flush(), and then wakes as many of
 * them as messages were published meanwhile (up to the sleepers), with
 * one eventfd write each, not one per message. A publish that has to
 * wait for room, memory or its confirm, or fails, and
 * shmbus_producer__confirm_wait(), wake them first. Meant for a
 * program that forwards bursts, each message with its own attributes
 * (shmbus-bridge's in routes); publish_batch does the same for messages
 * that share their options. A producer that dies before its flush is
 * one that died between a publish and its wake-up: the daemon, releasing
 * its slot, wakes the queue's sleepers. Ignored on a topic, whose
 * subscribers are woken at each publish.
 */
#define SHMBUS_PUB_MORE		0x1u

/*
 * Copy @len bytes into a new message and publish it.
 *
 * Returns 0, or:
 *   -EMSGSIZE  len > the queue's msg_size
 *   -ENOBUFS   queue full (after the timeout, if any); a full queue or an
 *              empty pool never gives -ETIMEDOUT: the cause is returned
 *   -ENOMEM    no free chunk of a fitting size (after the timeout)
 *   -EIDRM     the queue was deleted
 *   -EUCLEAN   the arena is corrupt (a peer wrote garbage)
 *   -EBUSY     dedup_id: a publish of the same id is still under way (or
 *              its producer died and the daemon has not settled it yet)
 *              when the timeout ends
 *   -EOPNOTSUPP dedup_id on a queue without a dedup window
 *   -ENOENT    reply_to names no queue
 *   -ETIMEDOUT persistent queue: the confirm did not come within
 *              confirm_timeout_ns; the message was published and may
 *              still be confirmed
 *   -ENOSPC, -EDQUOT, -EIO, ...  persistent queue: the daemon could not
 *              journal a message of this producer; it was dropped
 *   -EINVAL    bad arguments or options
 * On any other error nothing was published and nothing leaked.
 * Messages of one producer are received in publish order.
 */
SHMBUS_API int shmbus_producer__publish(struct shmbus_producer *p,
					const void *data, size_t len,
					const struct shmbus_pub_opts *opts);

/*
 * Publish @n messages (iov[i] each). Stops at the first failure.
 * Returns the number published (> 0), or the error of the first message.
 * At most one wake-up per sleeping consumer, sent after the batch.
 */
SHMBUS_API int shmbus_producer__publish_batch(struct shmbus_producer *p,
					      const struct iovec *iov,
					      unsigned n,
					      const struct shmbus_pub_opts *opts);

/*
 * Wake the consumers that the producer's publishes with SHMBUS_PUB_MORE
 * did not wake yet (nothing if there are none). Returns the number of
 * sleeping consumers woken, or -EIDRM (the queue was deleted) or -EUCLEAN
 * (it was damaged beyond repair), as a publish would.
 */
SHMBUS_API int shmbus_producer__flush(struct shmbus_producer *p);

/*
 * Wait up to @timeout_ns until every message this producer published so
 * far to its persistent queue is confirmed: journaled as the queue's sync
 * policy promises (on stable storage for always and batch). For a queue
 * that is not persistent, returns 0 at once. Returns 0, or:
 *   -ETIMEDOUT  not all confirmed yet (the daemon is slow, dead, or being
 *               restarted; the messages are in the intake and a daemon
 *               journals them when it runs)
 *   -ENOSPC, -EDQUOT, -EIO, -EFBIG ...  the daemon could not journal at
 *               least one of them since the last call (it was dropped, not
 *               delivered): the error of the last such failure
 *   -EIDRM      the queue was deleted
 */
SHMBUS_API int shmbus_producer__confirm_wait(struct shmbus_producer *p,
					     int64_t timeout_ns);

/*
 * Zero-copy publish, step 1: loan a buffer of at least @size bytes inside
 * the arena. Write the message into it, then shmbus_producer__commit() it
 * or shmbus_producer__cancel() it. Returns the buffer, or NULL with errno
 * EMSGSIZE, ENOMEM (pool empty after @timeout_ns), EIDRM, EUCLEAN.
 */
SHMBUS_API void *shmbus_producer__loan(struct shmbus_producer *p,
				       size_t size, int64_t timeout_ns);

/*
 * Zero-copy publish, step 2: publish the first @len bytes of a loaned
 * buffer. On success the buffer belongs to the bus (a duplicate dedup_id
 * included: dropped, 0); on error (-ENOBUFS queue full, -EIDRM, -EBUSY as
 * for publish) it stays loaned to the caller, who may retry or cancel.
 * -EINVAL: @buf is not a buffer loaned by this producer, or @len
 * exceeds it.
 */
SHMBUS_API int shmbus_producer__commit(struct shmbus_producer *p, void *buf,
				       size_t len,
				       const struct shmbus_pub_opts *opts);

/* Give a loaned buffer back unpublished. */
SHMBUS_API void shmbus_producer__cancel(struct shmbus_producer *p, void *buf);

/* ------------------------------------------------------------------ */
/* Consumers                                                          */
/* ------------------------------------------------------------------ */

/*
 * Auto-ack (at-most-once): a message counts as acked once received; a view
 * stays readable until released, and a consumer that dies loses what it
 * received. Default (no flag): every receive takes a lease (at-least-once):
 * ack, nack, extend or reject it; if the consumer dies, or the lease runs
 * out, the message is delivered again.
 */
#define SHMBUS_CONSUMER_AUTO_ACK	0x1u

struct shmbus_consumer_opts {
	size_t sz;
	int64_t spin_ns;	/* busy-poll this long before blocking;
				 * 0 = default 50 us; < 0 = never spin */
	uint32_t flags;		/* SHMBUS_CONSUMER_* */
	uint32_t prefetch;	/* max messages received and not yet acked
				 * or released; 0 = 256 (the maximum).
				 * From a backlog of 64 or more, after
				 * 16 receives in a row found one, a
				 * receive claims a run of 32 (within
				 * this bound) that the next receives
				 * take: under 32, messages are claimed
				 * one at a time */
	int64_t lease_ns;	/* override the queue's lease; 0 = queue's */
};

/*
 * Attach a consumer to queue @queue (competing with the queue's other
 * consumers: each message goes to one of them). Returns a handle, or NULL
 * with errno ENOENT, EACCES (no r permission), EUSERS (max_consumers or
 * slots exhausted), EMFILE/ENFILE (the daemon could not make the seat's
 * eventfd: it makes one when a consumer first takes a seat), EAGAIN (as
 * for producers), EINVAL, ENOTCONN/ECONNRESET, ECHILD.
 */
SHMBUS_API struct shmbus_consumer *
shmbus_consumer__new(struct shmbus *bus, const char *queue,
		     const struct shmbus_consumer_opts *opts);

/*
 * Detach and free. Views not yet released are freed. NULL is a no-op.
 * In a forked child, frees only the child's copy (the parent's handle is
 * untouched).
 */
SHMBUS_API void shmbus_consumer__free(struct shmbus_consumer *c);

/* Why a message was dead-lettered (shmbus_msg.dl_reason). */
enum shmbus_dl_reason {
	SHMBUS_DL_NONE = 0,
	SHMBUS_DL_MAX_DELIVERIES = 1,
	SHMBUS_DL_EXPIRED = 2,
	SHMBUS_DL_REJECTED = 3,
	SHMBUS_DL_OVERFLOW = 4,
	SHMBUS_DL_CHECKSUM = 5,	/* its checksum did not match */
};

/*
 * A received message, viewed in place in the arena. Valid until it is
 * acked, nacked, rejected or released; read-only. The fields named
 * with two leading underscores are the library's (the delivery it
 * belongs to); the others are the caller's to read. A field added later
 * goes at the end (priority did), so that the offsets of the fields
 * before it never change.
 */
struct shmbus_msg {
	const void *data;
	uint32_t len;
	uint32_t flags;
	uint64_t id;		/* bus-unique */
	uint64_t ts_ns;		/* publish time, CLOCK_MONOTONIC; 0 unless the
				 * producer set SHMBUS_PRODUCER_TIMESTAMP */
	uint64_t corr_id;
	uint32_t delivery_count;/* 1 on the first delivery */
	/* a dead-lettered message (in a DLQ): why, from where, and how
	 * often it was delivered there; 0 otherwise */
	uint32_t dl_reason;	/* enum shmbus_dl_reason */
	uint32_t dl_src;	/* source queue id + 1 */
	uint32_t dl_count;	/* deliveries in the source queue */
	uint32_t reply_to;	/* a request: reply queue id + 1, else 0 */
	uint32_t __reply_gen;	/* library's: the reply queue's generation */
	uint64_t __word;	/* library's: the delivery entry's word */
	uint32_t __ref;		/* library's: the chunk */
	uint32_t __lease;	/* library's: the delivery entry */
	const void *__attrs;	/* library's: see shmbus_msg__attr() */
	uint32_t __attr_len;	/* library's */
	uint32_t priority;	/* public: the level it was published at */
	/* public: published to a topic: the topic's id + 1 (its name:
	 * shmbus_msg__topic()); 0 for a queue's message, or when not known
	 * (come back from a persistent subscription's journal) */
	uint32_t topic;
	uint32_t __topic_gen;	/* library's */
	/* public: when its TTL runs out, CLOCK_MONOTONIC ns (the clock of
	 * this machine); 0 = never. A message is never received after it:
	 * what is left is expires_ns minus now. */
	uint64_t expires_ns;
};

/*
 * Attributes of a received message, read in place (no copy; valid as long
 * as the view). shmbus_msg__attr() finds @key: 0 and *value, *len, or
 * -ENOENT. shmbus_msg__attr_next() iterates: start with *it = 0; returns 1
 * and the next attribute (key not NUL-terminated: @klen bytes), or 0 at
 * the end, or -EBADMSG if the block is malformed.
 *
 * A dead-lettered message has three attributes added by the bus (when
 * room is left in its chunk; the same facts are always in dl_reason,
 * dl_src and dl_count): "dlq.reason" (max-deliveries, expired, rejected,
 * overflow, checksum), "dlq.source" (the source queue's name), "dlq.deliveries".
 */
SHMBUS_API int shmbus_msg__attr(const struct shmbus_msg *msg, const char *key,
				const void **value, size_t *len);
SHMBUS_API int shmbus_msg__attr_next(const struct shmbus_msg *msg,
				     uint32_t *it, const char **key,
				     size_t *klen, const void **value,
				     size_t *vlen);

/*
 * The name of the topic @msg (received by @c) was published to, into
 * @buf of @cap bytes (64 always do): its length, or -ENOENT when @msg
 * was not published to a topic (a queue's message), its topic is not
 * known (a persistent subscription's message that came back from the
 * journal after a restart: topic ids are an arena's) or was deleted
 * since, -ENAMETOOLONG when @cap is too small, -EINVAL.
 */
SHMBUS_API int shmbus_msg__topic(const struct shmbus_consumer *c,
				 const struct shmbus_msg *msg, char *buf,
				 size_t cap);

/*
 * Receive one message as a zero-copy view, waiting up to @timeout_ns:
 * spin for the consumer's spin budget, then block on the eventfd.
 *
 * A corrupt message (a peer wrote garbage: its header fails validation)
 * is never returned: it is dropped, counted (SHMBUS_STAT_CORRUPT), and the
 * receive looks on for a real one within the same timeout.
 *
 * Returns 0 and fills @msg, or:
 *   -EAGAIN     nothing arrived (timeout 0)
 *   -ETIMEDOUT  nothing arrived within the timeout
 *   -ENOBUFS    the consumer holds its prefetch of messages: ack or
 *               release one first
 *   -EINTR      a signal interrupted the wait
 *   -EIDRM      the queue was deleted
 *   -EUCLEAN    the ring is corrupt
 */
SHMBUS_API int shmbus_consumer__receive_view(struct shmbus_consumer *c,
					     struct shmbus_msg *msg,
					     int64_t timeout_ns);

/* shmbus_consumer__receive_view() with timeout 0: never blocks. */
SHMBUS_API int shmbus_consumer__try_receive(struct shmbus_consumer *c,
					    struct shmbus_msg *msg);

/*
 * End a delivery. In auto-ack mode: give the view's memory back. With
 * leases: the same as shmbus_consumer__ack() (errors ignored). A second
 * release of the same message is a no-op.
 */
SHMBUS_API void shmbus_consumer__release(struct shmbus_consumer *c,
					 struct shmbus_msg *msg);

/*
 * Leases (consumers without SHMBUS_CONSUMER_AUTO_ACK). Every call below
 * ends the view (except extend) and returns 0, or:
 *   -ESTALE   the lease is gone: it expired and the daemon took the
 *             message back for redelivery (or the message was already
 *             acked); nothing was changed
 *   -EINVAL   not a message this consumer holds under a lease
 *   -ENOTCONN the daemon is unreachable: the message was requeued at
 *             once instead (nack with delay, reject)
 */

/* Done with it: the message is removed from the queue. */
SHMBUS_API int shmbus_consumer__ack(struct shmbus_consumer *c,
				    struct shmbus_msg *msg);

/* Ack @n messages; returns how many were acked (stale ones, ones already
 * acked and other consumers' messages are skipped). */
SHMBUS_API int shmbus_consumer__ack_batch(struct shmbus_consumer *c,
					  struct shmbus_msg *msgs, unsigned n);

/*
 * Give it back for redelivery: at once (@delay_ns 0), after @delay_ns
 * (held by the daemon meanwhile), or after the queue's backoff for its
 * delivery count (SHMBUS_NACK_BACKOFF). A message that has reached the
 * queue's max_deliveries goes to the dead-letter queue instead.
 */
#define SHMBUS_NACK_BACKOFF	(-1)
SHMBUS_API int shmbus_consumer__nack(struct shmbus_consumer *c,
				     struct shmbus_msg *msg, int64_t delay_ns);

/* Renew the lease: it now runs out @lease_ns from now (0 = the
 * consumer's lease). The view stays valid. */
SHMBUS_API int shmbus_consumer__extend(struct shmbus_consumer *c,
				       struct shmbus_msg *msg,
				       int64_t lease_ns);

/* Send it straight to the dead-letter queue (reason "rejected"), or drop
 * it (counted) if the queue has none. */
SHMBUS_API int shmbus_consumer__reject(struct shmbus_consumer *c,
				       struct shmbus_msg *msg);

/*
 * Receive one message by copy into @buf and end its delivery (with a
 * lease: ack it; so a copying receive is at-most-once: use receive_view
 * and ack for at-least-once). Returns its length (>= 0), or
 * the errors of receive_view, or -EMSGSIZE when @cap is too small: the
 * message is kept and returned by the next receive call, nothing is lost;
 * shmbus_consumer__pending_len() tells the size needed.
 */
SHMBUS_API ssize_t shmbus_consumer__receive(struct shmbus_consumer *c,
					    void *buf, size_t cap,
					    int64_t timeout_ns);

/* Length of a message kept after -EMSGSIZE, or -ENOENT. */
SHMBUS_API ssize_t shmbus_consumer__pending_len(struct shmbus_consumer *c);

/*
 * Receive up to @n views, waiting up to @timeout_ns for the first one only.
 * Returns the number received (> 0) or the error of receive_view. Corrupt
 * messages are skipped as by receive_view. The messages it takes share
 * one lease deadline (one clock read).
 */
SHMBUS_API int shmbus_consumer__receive_batch(struct shmbus_consumer *c,
					      struct shmbus_msg *msgs,
					      unsigned n, int64_t timeout_ns);

/* ------------------------------------------------------------------ */
/* Request-reply                                                      */
/* ------------------------------------------------------------------ */

/*
 * Send @len bytes to @queue as a request and wait up to @timeout_ns for
 * the reply, copied into @reply (@cap bytes). The bus handle gets a
 * private reply queue on first use (deleted with the handle, or by the
 * daemon when the process dies); each request carries that queue as
 * reply-to and a fresh correlation id, and only the reply with that id is
 * returned: a reply that arrives after its request timed out is dropped
 * and counted (stat dropped of the reply queue). One request at a time per
 * bus handle (calls from several threads are serialised).
 *
 * Returns the reply's length (>= 0), or:
 *   -EREMOTEIO     the replier answered with an error status
 *                  (shmbus_consumer__reply_error()): its explanation is
 *                  in @reply, as much as fits; shmbus__request_opts()
 *                  also gives the status and the explanation's length
 *   -EHOSTUNREACH  no consumer is attached to @queue ("no responders"):
 *                  nothing was sent
 *   -ETIMEDOUT     no reply in time
 *   -EMSGSIZE      the reply is larger than @cap (it is dropped)
 *   -ENOENT, -EACCES, -ENOBUFS ... as for publish and receive
 */
SHMBUS_API ssize_t shmbus__request(struct shmbus *bus, const char *queue,
				   const void *body, size_t len, void *reply,
				   size_t cap, int64_t timeout_ns);

struct shmbus_request_opts {
	size_t sz;
	int64_t timeout_ns;	/* in: as shmbus__request()'s; 0 = do not
				 * wait, < 0 = for ever */
	int32_t status;		/* out: 0, or an error reply's status */
	uint32_t __pad;
	size_t reply_len;	/* out: the reply's length, also of an error
				 * reply's explanation (copied up to @cap) */
};

/*
 * shmbus__request() with options: the same, and the reply's status and
 * length in @opts (which must not be NULL: its sz is checked as every
 * opts struct's).
 */
SHMBUS_API ssize_t shmbus__request_opts(struct shmbus *bus, const char *queue,
					const void *body, size_t len,
					void *reply, size_t cap,
					struct shmbus_request_opts *opts);

/*
 * Reply to request @req (received by @c) with @len bytes: published to
 * the request's reply queue with its correlation id. Does not ack @req.
 * Returns 0, -EINVAL (@req is not a request), -ENOENT (the requester is
 * gone), or a publish error.
 */
SHMBUS_API int shmbus_consumer__reply(struct shmbus_consumer *c,
				      const struct shmbus_msg *req,
				      const void *data, size_t len);

/*
 * Reply to a request from any handle of its bus, with no consumer and
 * no held message: only @req->reply_to, @req->__reply_gen and
 * @req->corr_id are read, so a program may copy those three out of a
 * request into a zeroed struct shmbus_msg, ack the request, and reply
 * later (shmbus-bridge carries them to another host and back in an AMQP
 * correlation-id). The reply queue's generation is checked: a requester
 * that is gone, or a queue id that serves another queue by now, gets
 * nothing (-ENOENT). Returns as shmbus_consumer__reply(). Thread-safe.
 */
SHMBUS_API int shmbus__reply(struct shmbus *bus, const struct shmbus_msg *req,
			     const void *data, size_t len);

/*
 * The attribute that marks an error reply: its status as decimal text
 * ("2"). shmbus_consumer__reply_error() sets it; shmbus-bridge carries
 * it as an AMQP header of the same name, both ways.
 */
#define SHMBUS_REPLY_STATUS_ATTR	"reply.status"

/*
 * Answer request @req with an error: @status (> 0, the application's
 * code; serve's handlers give an errno) and @len bytes that explain it
 * (text, or nothing). The requester's shmbus__request() returns
 * -EREMOTEIO at once with the explanation, and shmbus__request_opts()
 * the status. Returns as shmbus_consumer__reply(), and -EINVAL for a
 * status <= 0. Does not ack @req.
 */
SHMBUS_API int shmbus_consumer__reply_error(struct shmbus_consumer *c,
					    const struct shmbus_msg *req,
					    int32_t status, const void *data,
					    size_t len);
/* The same from any handle of its bus, as shmbus__reply(). */
SHMBUS_API int shmbus__reply_error(struct shmbus *bus,
				   const struct shmbus_msg *req,
				   int32_t status, const void *data, size_t len);

/*
 * The error status a received reply carries (SHMBUS_REPLY_STATUS_ATTR):
 * > 0, 0 for a plain reply, -EBADMSG if the attribute is not a positive
 * decimal number. For a program that takes replies from a queue of its
 * own (shmbus_pub_opts.reply_to).
 */
SHMBUS_API int32_t shmbus_msg__reply_status(const struct shmbus_msg *msg);

/*
 * A request handler for shmbus_consumer__serve(): write the reply into
 * @reply (@cap bytes: 65536; a reply longer than the reply queue's
 * msg_size is not delivered) and return its length; or return a negative errno to fail the request: the requester
 * gets an error reply at once, status the errno (-EREMOTEIO from
 * shmbus__request()), explained by the NUL-terminated text the handler
 * left in @reply (serve empties it before the call), or strerror's text
 * when it left none. The request itself is then rejected (to the
 * queue's dead-letter queue, or dropped and counted), not retried: its
 * requester has its answer.
 */
typedef ssize_t (*shmbus_handler_fn)(void *ctx, const struct shmbus_msg *req,
				     void *reply, size_t cap);

/*
 * Serve requests: receive, call @fn, reply, ack; until @max requests were
 * answered (0 = no limit; an error reply is an answer) or nothing arrived
 * for @idle_timeout_ns (< 0 = wait for ever). Messages without a reply-to
 * are acked unanswered. Returns the number answered, or a receive error
 * other than -ETIMEDOUT.
 */
SHMBUS_API int shmbus_consumer__serve(struct shmbus_consumer *c,
				      shmbus_handler_fn fn, void *ctx,
				      unsigned max, int64_t idle_timeout_ns);

/*
 * Event-loop integration. shmbus_consumer__fd() is the consumer's eventfd:
 * add it to epoll (EPOLLIN) or io_uring. Before waiting, call
 * shmbus_consumer__arm(): it returns 1 if messages are already waiting
 * (receive them; do not wait), or 0 if armed: the fd becomes readable when
 * a message arrives. Then receive until -EAGAIN and arm again. Returns
 * -EIDRM if the queue was deleted. While the daemon is down, a producer
 * that attached before this consumer's seat existed cannot write the fd
 * (docs/semantics.md, "When the daemon is gone"): bound the wait with a
 * timeout and arm again; a blocking receive does this by itself.
 */
SHMBUS_API int shmbus_consumer__fd(const struct shmbus_consumer *c);
SHMBUS_API int shmbus_consumer__arm(struct shmbus_consumer *c);

#ifdef __cplusplus
}
#endif

#endif /* SHMBUS_H */
