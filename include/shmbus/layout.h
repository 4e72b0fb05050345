/* SPDX-License-Identifier: MIT */
/*
 * shmbus/layout.h - the shared-memory arena: this header IS the protocol.
 *
 * Every process attached to a bus maps the same arena (a sealed memfd, see
 * docs/decisions.md) at a different address, so everything in it is named
 * by offsets from the arena base and by indices, never by pointers. A value
 * read from the arena is untrusted: it is bounds-checked before use; a bad
 * structure is refused (-EBADMSG, -EUCLEAN), a bad message is skipped and
 * counted, and neither is ever a wild access.
 *
 * Arena map (all offsets in the superblock, all regions 64-byte aligned,
 * non-overlapping, inside arena_size; validated by every opener):
 *
 *   +-------------------+ 0
 *   | superblock        |   struct shmbus_sb, 4 KiB
 *   | queue directory   |   max_queues  x struct shmbus_queue
 *   | participant slots |   max_slots   x struct shmbus_slot
 *   | pool descriptors  |   nr_pools    x struct shmbus_pool
 *   | ring unit bitmap  |   1 bit per 64-byte ring unit (daemon only)
 *   | ring area         |   rings of struct shmbus_cell, 64-byte units
 *   | chunk area        |   per pool: free-list links, then
 *   |                   |   nr_chunks x chunk_size (the first
 *   |                   |   nr_live backed, the rest reserved)
 *   +-------------------+ arena_size
 *
 * Writers, in one word each (details on every field):
 *   D  = the daemon only (control plane), under its single thread.
 *   P  = producers (any attached process, many at once).
 *   C  = consumers (any attached process, many at once).
 *   O  = the owner of a participant slot only (one thread).
 *   K  = constant once the arena fd has been handed out.
 *
 * Which calls may run concurrently (all lock-free, no lock is ever held
 * across anything a peer can die in):
 *
 *   | call                     | concurrent with                        |
 *   |--------------------------|----------------------------------------|
 *   | publish (any producer)   | publish, receive, release, declare,    |
 *   |                          | delete (publish fails -EIDRM after)    |
 *   | receive (any consumer)   | everything above                       |
 *   | pool alloc / free        | alloc / free from every process        |
 *   | declare / delete queue   | only one at a time (daemon thread)     |
 *   | slot attach / detach     | only one at a time (daemon thread)     |
 *   | stat / list (readers)    | everything; values are a snapshot that |
 *   |                          | may be torn across fields, never within|
 *
 * Layout rules: fixed-width types, explicit padding, sizes and offsets
 * pinned by _Static_assert below; producer- and consumer-written fields live
 * on separate cache lines. A change that moves a field bumps
 * SHMBUS_LAYOUT_VERSION; a change that only adds an optional feature uses
 * a feature bit.
 */
#ifndef SHMBUS_LAYOUT_H
#define SHMBUS_LAYOUT_H

#include <stdint.h>
#include <stddef.h>

#define SHMBUS_MAGIC		0x31737562626d6873ULL	/* "shmbbus1" LE */
#define SHMBUS_LAYOUT_VERSION	5u

#define SHMBUS_CACHELINE	64u
#define SHMBUS_SB_SIZE		4096u
#define SHMBUS_NAME_MAX		64u	/* bytes including the NUL */
#define SHMBUS_MAX_POOLS	8u
#define SHMBUS_MAX_QUEUES	4096u
#define SHMBUS_MAX_SLOTS	4096u
#define SHMBUS_MAX_SEATS	128u	/* consumers per queue (eventfds) */
#define SHMBUS_SEAT_WORDS	(SHMBUS_MAX_SEATS / 64u)
#define SHMBUS_SLOT_CACHE	31u	/* cached chunk refs per pool per slot */
#define SHMBUS_NR_COUNTERS	16u
#define SHMBUS_RING_UNIT	64u	/* ring area allocation unit, bytes */
#define SHMBUS_RING_MAX_CAP	(1u << 24)
#define SHMBUS_CHUNK_HDR	128u	/* struct shmbus_chunk */
#define SHMBUS_CHUNK_IDX_BITS	28u
#define SHMBUS_CHUNK_MAX	(1u << SHMBUS_CHUNK_IDX_BITS)
#define SHMBUS_LEASE_MAX	256u	/* deliveries in flight per consumer */
#define SHMBUS_OWNER_DAEMON	0xffffu	/* owner slot of daemon-held chunks */

/* Feature bits. An opener refuses unknown incompat bits (-EOPNOTSUPP). */
/* Pools grow: a pool descriptor's nr_chunks is the most it may hold and
 * nr_live how many it has; the chunks above nr_live (and their links) are
 * holes in the memfd until the daemon grows the pool. A daemon that did
 * not know this would walk the holes and back them all. */
#define SHMBUS_FEAT_INCOMPAT_GROW	0x1ULL
#define SHMBUS_FEAT_INCOMPAT_KNOWN	0x1ULL
/* Readers must issue a full fence on RCU section entry: the daemon found
 * no membarrier(MEMBARRIER_CMD_GLOBAL) when it created the arena. */
#define SHMBUS_FEAT_COMPAT_READER_FENCE	0x1ULL
/* The arena may hold persistent queues: intake entries in the directory
 * (SHMBUS_QF_INTAKE), the confirm line of each slot, the journal line of
 * the superblock. Set by every daemon that knows them; an arena without
 * it has none (all those fields are zero). */
#define SHMBUS_FEAT_COMPAT_DURABLE	0x2ULL
#define SHMBUS_FEAT_COMPAT_KNOWN	0x3ULL

/*
 * Superblock, at offset 0. Lines 0-3 are K (written by the daemon before
 * the arena fd leaves it). The lines after them are shared mutable state,
 * one concern per cache line.
 */
struct shmbus_sb {
	/* --- K: identity --------------------------------------------- */
	uint64_t magic;			/* SHMBUS_MAGIC */
	uint32_t version;		/* SHMBUS_LAYOUT_VERSION */
	uint32_t sb_size;		/* sizeof(struct shmbus_sb) */
	uint64_t features_compat;
	uint64_t features_incompat;
	uint64_t arena_size;		/* bytes mapped by every opener */
	uint64_t created_ns;		/* CLOCK_REALTIME at creation */
	uint32_t owner_uid;		/* bus owner, group, mode (0..0777) */
	uint32_t owner_gid;
	uint32_t mode;
	uint32_t bus_id;		/* random, nonzero: names the bus in
					 * USDT probes and BPF map keys */
	/* --- K: name ------------------------------------------------- */
	char	 name[SHMBUS_NAME_MAX];	/* NUL-terminated */
	/* --- K: geometry (validated by every opener) ---------------- */
	uint64_t qdir_off;
	uint32_t max_queues;
	uint32_t queue_size;		/* sizeof(struct shmbus_queue) */
	uint64_t slot_off;
	uint32_t max_slots;
	uint32_t slot_size;		/* sizeof(struct shmbus_slot) */
	uint64_t pool_off;
	uint32_t nr_pools;
	uint32_t pool_size;		/* sizeof(struct shmbus_pool) */
	uint64_t ringmap_off;		/* bitmap, ring_units bits, D only */
	uint64_t ring_off;
	uint64_t ring_units;		/* ring area = ring_units * 64 B */
	uint64_t chunk_off;
	uint64_t chunk_bytes;		/* whole chunk area */
	uint8_t	 __rsvd0[32];
	/* --- line 4: message id blocks --------------------------------
	 * P: fetch_add by a producer slot that used up its id block. No
	 * ordering needed: ids only have to be unique.
	 */
	uint64_t id_next __attribute__((aligned(64)));
	uint8_t	 __pad4[56];
	/* --- line 5: cross-process RCU ----------------------------------
	 * gp_epoch: D writes (grace period start), every reader loads it on
	 * section entry. dir_gen: D bumps on every declare/delete, after the
	 * descriptor is written; readers of the directory (list, stat) use
	 * it as a change hint only.
	 */
	uint64_t gp_epoch __attribute__((aligned(64)));
	uint64_t dir_gen;
	uint32_t daemon_pid;		/* D: informational */
	uint32_t repairs;		/* D: times the daemon rewrote damaged
					 * constant parts of the arena from its
					 * records (informational) */
	uint32_t adoptions;		/* D: times a restarted daemon took the
					 * bus over (informational) */
	uint32_t deleted;		/* D: 1 once the bus was deleted (its
					 * members were detached); no daemon
					 * adopts it again, and a handle
					 * whose connection is gone reports
					 * -EIDRM */
	uint8_t	 __pad5b[32];
	/* --- lines 6-7: the journals of persistent queues (D writes,
	 * readers use READ_ONCE; informational). sync_hist[i] counts the
	 * journal syncs (fdatasync) of this bus that took [2^i, 2^(i+1))
	 * microseconds (bucket 0 also below 1 us, bucket 15 everything from
	 * 32.768 ms); recovery_ns and recovered: how long the daemon took to
	 * rebuild the bus's persistent queues from their journals when it
	 * recreated the bus, and how many messages it put back.
	 */
	uint64_t sync_hist[16] __attribute__((aligned(64)));
	/* --- line 8 */
	uint64_t recovery_ns __attribute__((aligned(64)));
	uint64_t recovered;
	uint64_t syncs;			/* fdatasyncs done, all queues */
	uint64_t sync_ns;		/* their total time */
	uint8_t	 __pad8[32];
	uint8_t	 __rsvd[SHMBUS_SB_SIZE - 9 * 64];
};

/*
 * Counters. A participant slot counts what its owner did (O writes, no
 * atomics, no shared cache line); a queue's total is the sum over its live
 * slots plus the queue's folded[] totals, into which the daemon adds a slot's
 * counts when the slot is freed.
 */
enum {
	SHMBUS_CTR_PUBLISHED	= 0,	/* accepted by publish */
	SHMBUS_CTR_DELIVERED	= 1,	/* handed to a consumer */
	SHMBUS_CTR_ACKED	= 2,	/* acked, or released in auto-ack */
	SHMBUS_CTR_NACKED	= 3,	/* nacked by a consumer */
	SHMBUS_CTR_REDELIVERED	= 4,	/* handed out again: delivery > 1 */
	SHMBUS_CTR_DEADLETTERED	= 5,	/* moved to the dead-letter queue */
	SHMBUS_CTR_EXPIRED	= 6,	/* hit their TTL */
	SHMBUS_CTR_DROPPED	= 7,	/* discarded: no DLQ, or DLQ full */
	SHMBUS_CTR_FULL		= 8,	/* publish refused: ring full */
	SHMBUS_CTR_NOMEM	= 9,	/* loan refused: pool empty */
	SHMBUS_CTR_CORRUPT	= 10,	/* bad ref or header seen and skipped */
	SHMBUS_CTR_WAKEUPS	= 11,	/* eventfd writes sent (producer) */
	SHMBUS_CTR_SLEEPS	= 12,	/* times a consumer blocked */
	SHMBUS_CTR_RECLAIMED	= 13,	/* chunks reclaimed from dead slots */
	SHMBUS_CTR_LEASE_EXPIRED = 14,	/* leases the daemon took back */
	SHMBUS_CTR_DUPLICATE	= 15,	/* publishes dropped as duplicates */
};

/*
 * A delivery in flight: one entry per message a consumer received and has
 * not yet acked, nacked, rejected or released. The table lives in the
 * consumer's slot; it is how the daemon finds what a dead or stalled
 * consumer held.
 *
 * word = (seq << 8) | state. Every change of word is a cmpxchg that also
 * bumps seq, and each side acts only on the change it won:
 *   take:     EMPTY(s)  -> HELD(s+1) or VIEW(s+1)   O (release store)
 *   ack etc.: HELD(s+1) -> EMPTY(s+2)               O (cmpxchg)
 *   release:  VIEW(s+1) -> EMPTY(s+2)               O (cmpxchg)
 *   extend:   HELD(s+1) -> HELD(s+2)                O (cmpxchg)
 *   expiry:   HELD(s+1) -> TAKEN(s+2)               D (cmpxchg)
 *   recycle:  TAKEN(s)  -> EMPTY(s+1)               O (the daemon is done)
 * So a consumer's ack and the daemon's expiry can never both win: the
 * loser sees another word (the consumer gets -ESTALE). A VIEW is a
 * cmpxchg too: the daemon empties the whole table of a live owner whose
 * connection it closed, and may give the slot to another consumer. O
 * changes an entry only when it names the message's chunk (ref). deadline is O's:
 * written before the cmpxchg that publishes it; D reads word (acquire),
 * then deadline. ref is written by O before the ring cmpxchg that takes
 * the message (the claim hook), so a consumer killed between taking and
 * recording still names the message here.
 */
enum {
	SHMBUS_LEASE_EMPTY	= 0,
	SHMBUS_LEASE_HELD	= 1,	/* leased: ack, nack, extend, reject */
	SHMBUS_LEASE_VIEW	= 2,	/* auto-ack view until release */
	SHMBUS_LEASE_TAKEN	= 3,	/* the daemon took it back */
};

#define SHMBUS_LEASE_NOREF		0xffffffffu	/* ref of an unused entry */
#define SHMBUS_LEASE_WORD(seq, st)	(((uint64_t)(seq) << 8) | (st))
#define SHMBUS_LEASE_SEQ(w)		((w) >> 8)
#define SHMBUS_LEASE_STATE(w)		((uint32_t)(w) & 0xffu)

struct shmbus_lease {
	uint64_t word;
	uint64_t deadline;		/* CLOCK_MONOTONIC ns */
	uint32_t ref;			/* chunk ref, SHMBUS_LEASE_NOREF */
	uint32_t __pad[3];
};

/* Slot states (struct shmbus_slot.state). */
enum {
	SHMBUS_SLOT_FREE	= 0,
	SHMBUS_SLOT_ACTIVE	= 1,
	SHMBUS_SLOT_DEAD	= 2,	/* owner gone, daemon reclaiming */
};

/* Slot roles (struct shmbus_slot.role). */
enum {
	SHMBUS_ROLE_PRODUCER	= 1,
	SHMBUS_ROLE_CONSUMER	= 2,
};

/*
 * Participant slot: one per producer or consumer handle (one thread at a
 * time uses a handle). Allocated and freed by the daemon; the daemon frees
 * a slot when its owner detaches or its connection closes (kill -9), after
 * folding its counters into the queue and returning its cached chunks.
 */
struct shmbus_slot {
	/* --- line 0: identity. D writes before replying to the owner, or
	 * after the owner is gone; everyone else reads. state is written
	 * last with a release store (pairs with the acquire in stat and in
	 * the grace-period scan).
	 */
	uint32_t state;			/* SHMBUS_SLOT_* */
	uint32_t gen;			/* bumped each time the slot is reused */
	uint32_t pid;			/* owner pid (SO_PEERCRED) */
	uint32_t role;			/* SHMBUS_ROLE_* */
	uint64_t start_time;		/* owner start time, /proc/pid/stat
					 * field 22: defeats pid reuse */
	uint32_t qid;			/* queue this handle is bound to */
	uint32_t qgen;			/* the queue's gen at attach */
	uint32_t seat;			/* consumer seat, or UINT32_MAX */
	uint32_t __pad0;
	uint64_t conn_token;		/* the owning connection's token
					 * (sbc_bus_open_reply): which of its
					 * owner's connections a daemon that
					 * adopts the bus hands the slot back
					 * to when that connection rejoins */
	uint8_t	 __pad0b[16];
	/* --- line 1: RCU read side. O writes (gp_epoch << 1 | 1) on section
	 * entry and 0 on exit; D reads it in synchronize (see epoch.c).
	 */
	uint64_t rcu_epoch __attribute__((aligned(64)));
	uint8_t	 __pad1[56];
	/* --- line 2: message id block. O only. */
	uint64_t id_next __attribute__((aligned(64)));
	uint64_t id_end;
	/* O, informational (stat): 1 while a publish of this handle waits
	 * for room in a full ring or for a free chunk, else 0. A handle
	 * whose owner died is reclaimed, so a stale 1 is never counted. */
	uint32_t blocked;
	uint8_t	 __pad2[44];
	/* --- lines 3-4: counters. O writes with WRITE_ONCE; readers use
	 * READ_ONCE (64-bit aligned: never torn). */
	uint64_t ctr[SHMBUS_NR_COUNTERS] __attribute__((aligned(64)));
	/* --- lines 5-20: chunk caches, one per pool. O only while the
	 * slot is ACTIVE; D drains them after the owner is gone.
	 * count is stored after ref[] is filled, so a dead owner leaves at
	 * worst one chunk missing from the cache, never a garbage ref.
	 */
	struct {
		uint32_t count;
		uint32_t ref[SHMBUS_SLOT_CACHE];
	} cache[SHMBUS_MAX_POOLS] __attribute__((aligned(64)));
	/* --- line 21: confirms of publishes to persistent queues. D
	 * writes, O reads (shmbus_producer__confirm_wait). confirmed: every
	 * message this slot published with an id <= confirmed is journaled
	 * as its queue's sync policy promises, or failed; written with a
	 * release after failed and failed_err, so a reader that sees it
	 * sees the failures before it. failed counts the publishes the
	 * daemon could not journal (the message was dropped), failed_err
	 * is the last one's -errno.
	 * A producer that waits sleeps on a futex: cseq is the futex word,
	 * D bumps it after each change of confirmed; O sets waiting (then a
	 * full fence, then checks confirmed again) before FUTEX_WAIT on the
	 * cseq it read first; D, after its bump and a full fence, reads
	 * waiting and, if set, clears it and FUTEX_WAKEs. Either the
	 * producer sees the new confirmed or the daemon sees it waiting; a
	 * bump between the producer's read of cseq and its wait makes the
	 * wait return at once.
	 */
	uint64_t confirmed __attribute__((aligned(64)));
	uint32_t failed;
	int32_t	 failed_err;
	uint32_t cseq;			/* D: futex word */
	uint32_t waiting;		/* O sets, D clears */
	uint8_t	 __pad21[40];
	/* --- line 22: the consumer's claim (ring.h ring_claim()). O
	 * writes {level, from, n} before the cmpxchg of the level's head
	 * that claims positions [from, from + n); their cells stay full
	 * until O takes each message (a cmpxchg of the cell to consumed),
	 * so while the slot is attached the daemon's claim sweep leaves
	 * them to it. When the slot is released, or the same run has been
	 * noted for RUN_HOLD_NS (20 ms), D gives back what is still full
	 * (clearing n): it sets the head back over it when nobody claimed
	 * after it, else retires the cells and redelivers; O's take of a
	 * cell D has taken back fails its cmpxchg. A claim that failed
	 * (another consumer was first) is overwritten by the next one, or
	 * cleared (n = 0) once the consumer finds the ring empty. */
	uint32_t claim_level __attribute__((aligned(64)));
	uint32_t claim_n;
	uint64_t claim_from;
	uint8_t	 __pad22[48];
	uint8_t	 __rsvd[2048 - 7 * 64 - SHMBUS_MAX_POOLS * 128];
	/* --- line 32: delivery table header. O writes. lease_hi: entries
	 * [0, lease_hi) may be in use (only grows while the slot lives). */
	uint32_t lease_hi __attribute__((aligned(64)));
	uint32_t __pad32[15];
	/* --- lines 33-160: deliveries in flight (see struct shmbus_lease) */
	struct shmbus_lease lease[SHMBUS_LEASE_MAX];
};

/* Queue states are encoded in gen: odd = live, even = free or deleting. */
#define SHMBUS_QGEN_LIVE(g)	(((g) & 1u) != 0)

/* Queue flags (struct shmbus_queue.flags). */
#define SHMBUS_QF_DELETING	0x1u	/* delete in progress (D) */
#define SHMBUS_QF_EXPIRE_DLQ	0x2u	/* expired messages go to the DLQ
					 * (else they are dropped) */
#define SHMBUS_QF_TOPIC		0x4u	/* a topic: publishes fan out to the
					 * subscriptions in its fan-out set;
					 * its ring is the history */
#define SHMBUS_QF_SUB		0x8u	/* a topic subscription */
#define SHMBUS_QF_DROP_OLDEST	0x10u	/* subscription: a publisher that
					 * finds it full drops its oldest */
#define SHMBUS_QF_CHECKSUM	0x20u	/* publishers store a CRC32C in each
					 * message, consumers verify it */
#define SHMBUS_QF_DAMAGED	0x40u	/* quarantined: the daemon found the
					 * ring beyond repair; attaches are
					 * refused, receive and publish get
					 * -EUCLEAN, until it is deleted and
					 * declared again */
#define SHMBUS_QF_DURABLE	0x80u	/* subscription: stays without
					 * consumers */
#define SHMBUS_QF_PERSISTENT	0x100u	/* queue: journaled on disk by the
					 * daemon (survives a reboot); its
					 * producers publish into its intake */
#define SHMBUS_QF_INTAKE	0x200u	/* the intake of a persistent queue
					 * (same name): producers of that
					 * queue are bound to it, the daemon
					 * is its only consumer and moves
					 * each message, once journaled,
					 * into the queue. Not listed. */

/*
 * Queue descriptor, in the directory at qdir_off + qid * queue_size.
 * A queue is one lock-free MPMC ring of chunk refs plus its wake-up seats.
 */
struct shmbus_queue {
	/* --- line 0: control. D writes at declare and delete; P/C read.
	 * gen is written last at declare with a release store; a handle
	 * remembers the gen it attached with and compares on every call
	 * (a mismatch means the queue was deleted: -EIDRM).
	 */
	uint32_t gen;
	uint32_t flags;			/* SHMBUS_QF_* */
	uint32_t ring_cap;		/* power of two, 2..SHMBUS_RING_MAX_CAP */
	uint32_t max_len;		/* as declared; ring_cap = roundup */
	uint64_t ring_off;		/* arena offset of ring_cap cells */
	uint32_t msg_size;		/* max payload bytes */
	uint32_t nr_seats;		/* consumer seats, 1..SHMBUS_MAX_SEATS */
	uint64_t created_ns;		/* CLOCK_REALTIME */
	uint32_t seat_epoch;		/* seat eventfds D has made; D bumps it
					 * when a consumer first takes a seat */
	uint32_t __pad0a;
	uint64_t owner_token;		/* private (reply) queue: the token of
					 * the connection it belongs to (slot
					 * conn_token); 0 = not private */
	uint32_t intake;		/* persistent queue: its intake's
					 * qid + 1; intake: its queue's qid
					 * + 1; else 0 */
	uint32_t sync;			/* persistent queue and its intake:
					 * SHMBUS_JSYNC_* */
	/* --- line 1: name. D writes before gen. */
	char	 name[SHMBUS_NAME_MAX];
	/* --- line 2: semantics. D writes before gen at declare; every
	 * field is also in the daemon's record, which is what it acts on.
	 */
	uint64_t lease_ns;		/* visibility timeout, > 0 */
	uint64_t ttl_ns;		/* 0 = messages never expire */
	uint64_t backoff_init_ns;	/* 0 = redeliver at once */
	uint64_t backoff_max_ns;
	uint32_t backoff_mult_milli;	/* 1000 = constant delay */
	uint32_t max_deliveries;	/* 0 = unlimited */
	uint32_t dlq_qid;		/* qid + 1, 0 = none */
	uint32_t overflow;		/* 0 block, 1 reject, 2 drop oldest */
	uint32_t nr_prio;		/* priority levels, 1..4: level k's
					 * ring follows level k-1's */
	uint32_t dlq_gen;		/* gen of dlq_qid at declare */
	/* --- line 3: producer side. P: tail is a hint, advanced by
	 * cmpxchg by the producer that filled the cell or by any producer
	 * that finds it filled (see ring.h). */
	uint64_t tail __attribute__((aligned(64)));
	uint8_t	 __pad3[56];
	/* --- line 4: consumer side. C: head, the positions claimed:
	 * only ever moved forward, by cmpxchg, by a claimer that found the
	 * cells of the positions it passes full (see ring.h); D moves it
	 * the same way, and back only when it is ahead of every position
	 * ever filled (repair). */
	uint64_t head __attribute__((aligned(64)));
	/* Producers that sleep for room in a full ring ([ROOM] in
	 * barrier.h): a producer reads room_seq, sets room_wait (xchg),
	 * looks at the ring once more and sleeps on the futex room_seq
	 * until it changes. Whoever takes a message out of one of the
	 * queue's rings (C; D expiring, moving an intake, deleting) loads
	 * room_wait after its cell cmpxchg and, only when it is set,
	 * clears it (xchg), bumps room_seq and wakes every sleeper, which
	 * look again (and set it again if still full). On this line: a
	 * load of a line the consumer writes anyway. */
	uint32_t room_wait;
	uint32_t room_seq;
	uint8_t	 __pad4[48];
	/* --- line 5: sleepers. C sets its seat's bit (fetch_or) when it is
	 * about to block and clears it when it cancels; P clears a bit
	 * (fetch_and) to take the right to wake that seat. See wake.c. */
	uint64_t sleep_mask[SHMBUS_SEAT_WORDS] __attribute__((aligned(64)));
	uint8_t	 __pad5[64 - 8 * SHMBUS_SEAT_WORDS];
	/* --- lines 6-10: seats. D only: which seats are in use and by
	 * which slot (slot index + 1, 0 = free). */
	uint64_t seat_used[SHMBUS_SEAT_WORDS] __attribute__((aligned(64)));
	uint16_t seat_slot[SHMBUS_MAX_SEATS];
	uint8_t	 __pad6[64 - 8 * SHMBUS_SEAT_WORDS];
	/* --- lines 11-12: counters folded in from freed slots. D only. */
	uint64_t folded[SHMBUS_NR_COUNTERS] __attribute__((aligned(64)));
	/* --- line 13: the dedup table (D writes before gen at declare;
	 * dedup_cap 0 = none), dedup_cap struct shmbus_dedup entries at
	 * arena offset dedup_off, in the ring area. */
	uint64_t dedup_off __attribute__((aligned(64)));
	uint32_t dedup_cap;		/* power of two, or 0 */
	uint32_t __pad13;
	uint64_t dedup_window_ns;
	/* D, informational: messages of this queue the daemon holds until
	 * they are due (a publish's delay, a nack's delay, a redelivery's
	 * backoff, a wait for room in the full ring); 0 from a daemon that
	 * does not keep it */
	uint64_t timed;
	uint8_t	 __pad13b[32];
	/* --- line 14: topics.
	 * fanout (topic): (unit << 16) | n: n struct shmbus_fanout entries
	 * at ring unit `unit` (arena offset ring_off + unit * 64). D
	 * replaces the array and release-stores the word; publishers load
	 * it (acquire) inside their epoch section, so the old array is
	 * reused only after a grace period (cross-process RCU).
	 * history (topic): keep the last `history` messages in the ring.
	 * sub_dropped (subscription): messages publishers dropped for it
	 * (drop-oldest, or a blocking publish that timed out); P, atomic.
	 */
	union {
		struct {
			uint64_t fanout __attribute__((aligned(64)));
			uint64_t sub_dropped;
			uint32_t history;
			uint32_t __pad14;
			uint8_t	 __pad14b[40];
		};
		/* intake: its queue's journal, D writes (informational):
		 * bytes and segments on disk, messages not yet settled
		 * (j_live), records replayed and skipped as corrupt when
		 * the journal was last opened, syncs done, and messages
		 * whose publish could not be journaled (j_failed) */
		struct {
			uint64_t j_bytes;
			uint64_t j_live;
			uint32_t j_segments;
			uint32_t j_failed;
			uint64_t j_replayed;
			uint64_t j_corrupt;
			uint64_t j_syncs;
			uint64_t j_written;	/* records written */
			uint64_t j_interval_ns;	/* SHMBUS_JSYNC_BATCH */
		};
	};
	/* --- line 15: tail hints and heads of priority levels 1..3 (level
	 * 0 uses tail and head above). One line for both sides: priority
	 * lanes are for the few urgent messages, not the bulk. */
	uint64_t prio_tail[3] __attribute__((aligned(64)));
	uint64_t prio_head[3];
	uint8_t	 __pad15[16];
};

#define SHMBUS_MAX_PRIO		4u

/* An entry of a topic's fan-out set: a subscription queue. */
struct shmbus_fanout {
	uint32_t qid;
	uint32_t gen;			/* the subscription's gen (live) */
};

#define SHMBUS_FANOUT_MAX	0xffffu

/*
 * Dedup table entry: a key and its state. An open-addressed table probed
 * SHMBUS_DEDUP_PROBE entries from key % cap: when none is free, the
 * publish is accepted without dedup (the window is best effort beyond the
 * table's capacity). expires, the state:
 *
 *   0                   empty, or a claim half done (key written, state
 *                       not yet): free to take, by anyone
 *   SHMBUS_DEDUP_PEND(slot, gen)
 *                       the key's message is being published by that
 *                       producer slot: its chunk is filled (chunk
 *                       dedup_key) and not yet in the queue, or just put
 *                       there; not seen yet, and not free
 *   SHMBUS_DEDUP_FORGOTTEN, or a time <= now
 *                       free (a failed publish, an expired key)
 *   a time > now        seen: a publish of the key until then is dropped
 *
 * P, publishing key K with its chunk filled and its own: cmpxchg key of a
 * free entry to K, cmpxchg its state from the value seen to PENDING (an
 * entry already holding K in a free state is taken with the second
 * cmpxchg alone); then the ring cmpxchg (or the daemon takes a delayed
 * message); then cmpxchg PENDING -> now + window (release). A failed
 * publish: PENDING -> FORGOTTEN, before the chunk is freed. A publish
 * finding K PENDING waits for the outcome. D settles the PENDING entries
 * of a dead producer slot from its chunks: a chunk with dedup_key K still
 * in the slot's hands (LOANED, or QUEUED in no ring after the orphan
 * sweep's grace period) means the message never went in: FORGOTTEN;
 * otherwise it did: now + window.
 */
struct shmbus_dedup {
	uint64_t key;			/* 0 = empty */
	uint64_t expires;		/* the state, above */
};

#define SHMBUS_DEDUP_PENDING	(1ULL << 63)
#define SHMBUS_DEDUP_PEND(slot, gen) \
	(SHMBUS_DEDUP_PENDING | ((uint64_t)((gen) & 0x7fffffffu) << 32) | \
	 (uint64_t)(slot))
#define SHMBUS_DEDUP_FORGOTTEN	1ULL
#define SHMBUS_DEDUP_PROBE	16u

/*
 * Pool descriptor: one size class of chunks.
 */
struct shmbus_pool {
	/* --- line 0: K, but for nr_live (D) */
	uint32_t chunk_size;		/* bytes, multiple of 64, >= 192 */
	uint32_t payload_max;		/* chunk_size - SHMBUS_CHUNK_HDR */
	uint32_t nr_chunks;		/* 1..SHMBUS_CHUNK_MAX: the most the
					 * pool may hold; its area is
					 * reserved for that many */
	uint32_t cache_max;		/* per-slot cache depth used */
	uint64_t base_off;		/* arena offset of chunk 0 */
	uint64_t links_off;		/* arena offset of uint32_t
					 * links[nr_chunks]: the next
					 * magazine (first chunk + 1) */
	/* D: chunks 0..nr_live-1 are backed and have been on the free
	 * list; the rest of the area (chunks and links) are holes in the
	 * memfd. Only grows, and only while the daemon holds the bus: it
	 * backs, writes and formats the next chunks, raises nr_live, then
	 * pushes them onto the free list. Chunk 0 is at a page and nr_live
	 * ends where a page does (or at nr_chunks). Means nothing without
	 * SHMBUS_FEAT_INCOMPAT_GROW (then all nr_chunks are there; 0 in an
	 * arena made before pools grew). Informative: members never bound
	 * a ref by it (a ref up to nr_chunks is in range, a hostile one in
	 * the reserve touches a hole in pages of the toucher's own); the
	 * daemon bounds by its own count, restored over this word if a
	 * member changes it, and a daemon that adopts the arena counts the
	 * pages the memfd holds instead of reading it. */
	uint32_t nr_live;
	uint8_t	 __pad0[28];
	/* --- line 1: the shared free list, a Treiber stack of magazines.
	 * A magazine is up to 16 free chunks; while on the list, the payload
	 * of its first chunk m holds { u32 n; u32 idx[15]; } (the other
	 * chunks) and links[m] the next magazine's first chunk + 1.
	 * free_head = (aba_tag << 32) | (m + 1); 0 low half = empty.
	 * P/C pop and push whole magazines with cmpxchg; the tag defeats ABA.
	 * free_count is a relaxed statistic of chunks on this list (not in
	 * slot caches).
	 */
	uint64_t free_head __attribute__((aligned(64)));
	uint64_t free_count;
	uint8_t	 __pad1[48];
};

/*
 * Chunk header: the first 128 bytes of every chunk. A chunk ref (what the
 * rings carry) is (pool << 28) | index.
 *
 * Line 0 is written by the producer before publish and read by the
 * consumer after it dequeued the ref (the ring cell cmpxchg is the release
 * the consumer's acquire pairs with). Line 1 holds lifecycle fields that
 * most messages never touch.
 */
struct shmbus_chunk {
	/* --- line 0 ---------------------------------------------------- */
	uint32_t len;			/* payload bytes */
	uint16_t attr_len;		/* attribute bytes after the payload */
	uint16_t flags;			/* SHMBUS_CF_* */
	uint64_t owner;			/* SHMBUS_OWNER(gen, state, slot) */
	uint64_t id;			/* bus-unique message id */
	uint64_t ts_pub;		/* CLOCK_MONOTONIC ns at publish */
	uint64_t corr_id;		/* correlation id, 0 = none */
	uint32_t reply_to;		/* qid + 1, 0 = none */
	uint32_t delivery_count;
	uint64_t expires_ns;		/* CLOCK_MONOTONIC, 0 = never */
	uint64_t not_before_ns;		/* CLOCK_MONOTONIC, 0 = now */
	/* --- line 1 ---------------------------------------------------- */
	uint32_t qid;			/* a topic's message: the topic's
					 * qid + 1 (P writes it before the
					 * fan-out), else 0 */
	uint32_t refcnt;		/* SHARED: references (atomic) */
	uint32_t dl_reason;		/* SHMBUS_DLR_*: why it was dead-lettered */
	uint32_t dl_src_qid;		/* dead-lettered from this qid + 1 */
	uint32_t dl_count;		/* its delivery count there */
	uint32_t reply_gen;		/* gen of the reply_to queue: a reply
					 * never lands in a queue that reused
					 * a gone requester's id */
	uint64_t dedup_key;		/* its publish's dedup key, 0 = none
					 * (struct shmbus_dedup) */
	uint32_t checksum;		/* with SHMBUS_CF_CHECKSUM: CRC32C of
					 * len, attr_len, corr_id, reply_to,
					 * payload, attributes (crc32c.c).
					 * P writes it last before the ring
					 * cmpxchg (publish, or commit of a
					 * loan; a topic message once for
					 * all subscriptions); D rewrites it
					 * after adding dead-letter
					 * attributes; C verifies it */
	uint32_t prio;			/* priority level it was published at */
	/* D: while the chunk is TIMED, where and when it goes: queue
	 * (hold_qid, hold_qgen) at hold_due (CLOCK_MONOTONIC). Written
	 * before the daemon makes it TIMED and whenever it re-arms it;
	 * hold_gen is the owner gen it was written for, so a record left
	 * from an earlier allocation is never taken for this one. A
	 * daemon that adopts the bus re-arms every TIMED chunk from it. */
	uint64_t hold_due;
	uint32_t hold_qid;
	uint32_t hold_qgen;
	uint32_t hold_gen;
	uint32_t topic_gen;		/* with qid: the topic's gen, so that
					 * a reused qid names no other */
	/* the payload at offset SHMBUS_CHUNK_HDR (len bytes), then the
	 * attributes at SHMBUS_CHUNK_HDR + ALIGN(len, 8) (attr_len bytes) */
};

/* Sync policies of persistent queues (struct shmbus_queue.sync). */
enum {
	SHMBUS_JSYNC_ALWAYS	= 0,	/* confirmed once fdatasync'ed, every
					 * batch the daemon writes synced at
					 * once */
	SHMBUS_JSYNC_BATCH	= 1,	/* the same, one sync per interval */
	SHMBUS_JSYNC_NEVER	= 2,	/* confirmed once written (page cache) */
};

/* Chunk flags (struct shmbus_chunk.flags). */
#define SHMBUS_CF_CHECKSUM	0x1u	/* checksum holds the message's CRC32C */

/*
 * Attributes: attr_len bytes at SHMBUS_CHUNK_HDR + ALIGN(len, 8), a
 * sequence of records { u8 key_len (1..255); u8 pad; u16 value_len;
 * key bytes; value bytes }, packed, nothing after the last. Readers
 * validate every record against attr_len.
 */
#define SHMBUS_ATTR_REC_HDR	4u

/* Dead-letter reasons (struct shmbus_chunk.dl_reason). */
enum {
	SHMBUS_DLR_NONE		= 0,
	SHMBUS_DLR_MAX_DELIVERIES = 1,
	SHMBUS_DLR_EXPIRED	= 2,
	SHMBUS_DLR_REJECTED	= 3,
	SHMBUS_DLR_OVERFLOW	= 4,	/* dropped as the oldest of a full queue */
	SHMBUS_DLR_CHECKSUM	= 5,	/* its CRC32C did not match */
};

/*
 * Chunk ownership, struct shmbus_chunk.owner: one 64-bit word
 * (gen << 32) | (state << 16) | slot. gen is bumped each time the chunk is
 * allocated, so the daemon's reclaim of a dead process's chunks (a
 * cmpxchg on the exact word it saw) can never hit a later use of the same
 * chunk (no ABA). Who writes it: the allocating slot (LOANED, QUEUED), the
 * consuming slot (HELD), the freeing slot (FREE), the daemon (FREE, for
 * chunks of dead slots only, by cmpxchg).
 */
enum {
	SHMBUS_CHUNK_FREE	= 0,	/* on a free list or in a slot cache */
	SHMBUS_CHUNK_LOANED	= 1,	/* a producer is writing it */
	SHMBUS_CHUNK_QUEUED	= 2,	/* in a ring, or being published or
					 * taken (in an epoch section) */
	SHMBUS_CHUNK_HELD	= 3,	/* delivered: in a consumer's lease
					 * table (struct shmbus_lease) */
	SHMBUS_CHUNK_TIMED	= 4,	/* the daemon holds it: delayed,
					 * backing off or being moved;
					 * slot SHMBUS_OWNER_DAEMON */
	SHMBUS_CHUNK_SHARED	= 5,	/* a topic message in one or more
					 * subscriptions: refcnt references
					 * (rings, deliveries, the history,
					 * a publisher fanning out); the
					 * last one to drop it frees it */
};

#define SHMBUS_OWNER(gen, state, slot) \
	(((uint64_t)(gen) << 32) | ((uint32_t)(state) << 16) | (uint32_t)(slot))
#define SHMBUS_OWNER_GEN(o)	((uint32_t)((o) >> 32))
#define SHMBUS_OWNER_STATE(o)	(((uint32_t)(o) >> 16) & 0xffffu)
#define SHMBUS_OWNER_SLOT(o)	((uint32_t)(o) & 0xffffu)

#define SHMBUS_REF(pool, idx)	(((uint32_t)(pool) << SHMBUS_CHUNK_IDX_BITS) | (idx))
#define SHMBUS_REF_POOL(ref)	((ref) >> SHMBUS_CHUNK_IDX_BITS)
#define SHMBUS_REF_IDX(ref)	((ref) & (SHMBUS_CHUNK_MAX - 1u))

/*
 * A ring cell. Low 32 bits: sequence; high 32 bits: chunk ref.
 * For position p (64-bit, monotonic) and capacity N, the cell of p is
 * cell p % N (consecutive positions are adjacent: a claim reads a run of
 * them a line at a time), and holds seq == p with ref 0 (empty, ready for
 * the producer of p), seq == p + 1 (full, holds the message of p), or
 * seq == p + N with ref 0 (consumed, ready for p + N).
 * Producers fill a cell with a 64-bit cmpxchg, so a process killed at any
 * instruction leaves it untouched or complete: there is no
 * reserved-but-unwritten state. Consumers claim positions from the ring's
 * head (a counter of positions claimed, moved only by cmpxchg, after the
 * claimer noted the run in its slot) and then take each claimed message
 * with a cmpxchg of its cell to consumed. A claimed cell is still full
 * until it is taken, so a producer never reuses it early; a claim can be
 * taken back by the daemon (a run held too long, a claimer gone), and a
 * cell left full behind the head by a claimer that died is finished by
 * the daemon (ring.h).
 */
struct shmbus_cell {
	uint64_t v;
};

#define SHMBUS_CELL(seq, ref)	(((uint64_t)(ref) << 32) | (uint32_t)(seq))
#define SHMBUS_CELL_SEQ(v)	((uint32_t)(v))
#define SHMBUS_CELL_REF(v)	((uint32_t)((v) >> 32))

/* Pin the layout: any change here is a protocol change. */
#ifdef __cplusplus
#define SHMBUS__ASSERT(c, m)	static_assert(c, m)
#else
#define SHMBUS__ASSERT(c, m)	_Static_assert(c, m)
#endif
SHMBUS__ASSERT(sizeof(struct shmbus_sb) == SHMBUS_SB_SIZE, "sb size");
SHMBUS__ASSERT(offsetof(struct shmbus_sb, name) == 64, "sb name");
SHMBUS__ASSERT(offsetof(struct shmbus_sb, qdir_off) == 128, "sb geometry");
SHMBUS__ASSERT(offsetof(struct shmbus_sb, id_next) == 256, "sb id line");
SHMBUS__ASSERT(offsetof(struct shmbus_sb, gp_epoch) == 320, "sb rcu line");
SHMBUS__ASSERT(offsetof(struct shmbus_sb, sync_hist) == 384, "sb journal");
SHMBUS__ASSERT(offsetof(struct shmbus_sb, recovery_ns) == 512, "sb recovery");
SHMBUS__ASSERT(sizeof(struct shmbus_slot) == 2048 + 64 + 32 * SHMBUS_LEASE_MAX,
	       "slot size");
SHMBUS__ASSERT(offsetof(struct shmbus_slot, lease_hi) == 2048, "slot leases");
SHMBUS__ASSERT(sizeof(struct shmbus_lease) == 32, "lease");
SHMBUS__ASSERT(offsetof(struct shmbus_slot, rcu_epoch) == 64, "slot rcu");
SHMBUS__ASSERT(offsetof(struct shmbus_slot, id_next) == 128, "slot ids");
SHMBUS__ASSERT(offsetof(struct shmbus_slot, ctr) == 192, "slot ctrs");
SHMBUS__ASSERT(offsetof(struct shmbus_slot, cache) == 320, "slot cache");
SHMBUS__ASSERT(offsetof(struct shmbus_slot, confirmed) == 1344, "slot confirms");
SHMBUS__ASSERT(offsetof(struct shmbus_slot, claim_level) == 1408, "slot claim");
SHMBUS__ASSERT(sizeof(struct shmbus_queue) == 1024, "queue size");
SHMBUS__ASSERT(offsetof(struct shmbus_queue, name) == 64, "queue name");
SHMBUS__ASSERT(offsetof(struct shmbus_queue, lease_ns) == 128, "queue cfg");
SHMBUS__ASSERT(offsetof(struct shmbus_queue, tail) == 192, "queue tail");
SHMBUS__ASSERT(offsetof(struct shmbus_queue, head) == 256, "queue head");
SHMBUS__ASSERT(offsetof(struct shmbus_queue, sleep_mask) == 320, "sleep");
SHMBUS__ASSERT(offsetof(struct shmbus_queue, seat_used) == 384, "seats");
SHMBUS__ASSERT(offsetof(struct shmbus_queue, folded) == 704, "folded");
SHMBUS__ASSERT(offsetof(struct shmbus_queue, dedup_off) == 832, "dedup");
SHMBUS__ASSERT(offsetof(struct shmbus_queue, fanout) == 896, "fanout");
SHMBUS__ASSERT(offsetof(struct shmbus_queue, j_bytes) == 896, "journal line");
SHMBUS__ASSERT(offsetof(struct shmbus_queue, intake) == 56, "intake");
SHMBUS__ASSERT(offsetof(struct shmbus_queue, prio_tail) == 960, "prio");
SHMBUS__ASSERT(sizeof(struct shmbus_pool) == 128, "pool size");
SHMBUS__ASSERT(offsetof(struct shmbus_pool, free_head) == 64, "free head");
SHMBUS__ASSERT(sizeof(struct shmbus_chunk) == SHMBUS_CHUNK_HDR, "chunk hdr");
SHMBUS__ASSERT(offsetof(struct shmbus_chunk, owner) == 8, "chunk owner");
SHMBUS__ASSERT(offsetof(struct shmbus_chunk, qid) == 64, "chunk l1");
SHMBUS__ASSERT(sizeof(struct shmbus_cell) == 8, "cell");

#endif /* SHMBUS_LAYOUT_H */
