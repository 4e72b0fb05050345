/* SPDX-License-Identifier: MIT */
/*
 * journal.h - the write-ahead journal of a durable queue (journal.c).
 *
 * The daemon's event loop is the only writer. It appends a PUB record per
 * message it accepts, a SETTLE record when the message is gone (acked,
 * expired, dead-lettered), a STATE record when its delivery count, due
 * time or lease changes. Replaying the records at open rebuilds the index
 * of the live messages. A separate thread makes them durable
 * (journal_sync_*: group commit) without any lock in the journal.
 *
 * ON-DISK FORMAT, version 1
 * =========================
 *
 * A journal is a directory, one per durable queue. It holds segment files
 * named by the sequence number of their first record, 16 lowercase hex
 * digits and ".seg" ("%016" PRIx64 ".seg"). Every other file in the
 * directory is ignored (the daemon keeps the queue's configuration
 * there). All integers are little-endian.
 *
 * Segment header, 64 bytes:
 *
 *	[0, 8)	  magic "shmbusJS"
 *	[8, 12)	  u32 version, 1
 *	[12, 16)  u32 header size, 64
 *	[16, 24)  u64 first_seq: the sequence number of the segment's first
 *		  record, the number its name spells
 *	[24, 32)  u64 created: CLOCK_REALTIME ns
 *	[32, 60)  reserved, zero
 *	[60, 64)  u32 crc32c of bytes [0, 60)
 *
 * Records follow the header back to back, each starting 8-byte aligned:
 *
 *	[0, 4)	  u32 magic 0x524a4253 ("SBJR" as bytes)
 *	[4, 8)	  u32 crc32c of bytes [8, len) of the record
 *	[8, 12)	  u32 len: the whole record, this header and the padding
 *		  included; a multiple of 8, 24 <= len <= 1 MiB + 4 KiB, and
 *		  exactly what its type and body lengths make it (below)
 *	[12, 14)  u16 type
 *	[14, 16)  u16 flags, 0 (reserved)
 *	[16, 24)  u64 seq: +1 per record, across segments; never reused
 *	[24, len) body, then zeros up to len
 *
 * J_PUB (1), a message, len = 112 + ALIGN8(len) + ALIGN8(attr_len):
 *
 *	[24] u64 id	    [32] u64 order	[40] u64 pub_rt
 *	[48] u64 expires_rt [56] u64 due_rt	[64] u64 corr_id
 *	[72] u64 dedup_key  [80] u32 delivery_count
 *	[84] u32 mflags	    [88] u32 prio	[92] u32 dl_reason
 *	[96] u32 dl_count   [100] u32 len	[104] u32 attr_len
 *	[108] u32 pad, 0
 *	[112] len payload bytes, zeros to 8, attr_len attribute bytes, zeros
 *	to 8.
 *
 * J_SETTLE (2), the message is gone, len = 40:
 *	[24] u64 id	    [32] u32 reason	[36] u32 pad, 0
 *
 * J_STATE (3), the message's delivery state changed, len = 48:
 *	[24] u64 id	    [32] u64 due_rt	[40] u32 delivery_count
 *	[44] u32 mflags
 *
 * Times are CLOCK_REALTIME ns (they must mean something after a reboot);
 * 0 means none. mflags: JM_LEASED, JM_CHECKSUM below.
 *
 * Replay, in sequence order, builds the index of live messages:
 *  - PUB inserts its id; when the id is already live it replaces the
 *    message's state and where its bytes are (a copy-forward, or the same
 *    message journaled again, is idempotent) and the entry keeps the
 *    smaller of the two orders;
 *  - SETTLE removes its id;
 *  - STATE updates delivery_count, due_rt and mflags of a live id;
 *  - a record of an id that is not live (settled, or whose PUB was in a
 *    deleted segment) is ignored.
 *
 * A segment is deleted only when it is the oldest, none of its PUBs is
 * live any more, the records that made them so are durable and the dedup
 * keys it carries are out of their window; the directory is fsync'ed
 * after every unlink. So a segment never outlives, after a crash, the
 * segment that settles its messages; and a record whose PUB is gone is
 * always one to ignore.
 *
 * Recovery at open (each finding logged with file name and offset):
 *  - a segment whose header is bad is skipped whole (corrupt), unless it
 *    is the last one and shorter than 64 bytes: a torn creation, removed;
 *  - a record that does not validate (magic, len, crc, type, body
 *    lengths, or a seq not above the one before it) is corrupt: the scan
 *    goes on 8 bytes at a time to the next record that does; with none
 *    left in the last segment, the rest is a torn tail and is truncated;
 *  - a segment whose first_seq does not follow the last seq seen is a gap
 *    (records missing): counted and logged, everything else is kept.
 * Appends continue after the last record of the last segment.
 */
#ifndef SHMBUS_JOURNAL_H
#define SHMBUS_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#define JOURNAL_VERSION		1
#define JOURNAL_HDR_SIZE	64
#define JOURNAL_REC_HDR		24
#define JOURNAL_REC_MAX		((1u << 20) + 4096)
#define JOURNAL_SEG_MIN		(64ull << 10)
#define JOURNAL_SEG_DEFAULT	(64ull << 20)

enum { J_PUB = 1, J_SETTLE = 2, J_STATE = 3 };

#define JM_LEASED	0x1u	/* it was leased (delivered) when the record was written */
#define JM_CHECKSUM	0x2u	/* the message carried a CRC32C (re-stamped at recovery) */

/* A message as the journal keeps it. */
struct jmsg {
	uint64_t id;		/* the key: unique per journal */
	uint64_t order;		/* queue position: 0 on journal_pub = the record's seq */
	uint64_t pub_rt, expires_rt, due_rt;
	uint64_t corr_id, dedup_key;
	uint32_t delivery_count, mflags, prio, dl_reason, dl_count;
	uint32_t len, attr_len;
	const void *payload, *attrs;	/* journal_each_live: valid during fn */
};

/* A live message in the index. */
struct jent {
	uint64_t id, order;
	uint64_t expires_rt, due_rt, pub_rt, dedup_key;
	uint32_t delivery_count, mflags;
	uint64_t user;		/* the caller's; 0 initially, kept by the journal */
};

struct journal_cfg {
	uint64_t segment_bytes;	/* roll over past this; 0 = 64 MiB; at least 64 KiB */
	uint64_t dedup_window_ns; /* a PUB's dedup key is kept this long after pub_rt */
	const char *name;	/* for log lines, e.g. "bus/queue" */
};

struct journal_stats {
	uint64_t bytes;		/* on disk, all segments */
	uint32_t segments;
	uint64_t live;		/* messages in the index */
	uint64_t replayed;	/* records read at open */
	uint64_t corrupt;	/* records (or segments) skipped as corrupt at open */
	uint64_t corrupt_bytes;	/* bytes they took */
	uint64_t torn_bytes;	/* bytes truncated from the tail at open */
	uint64_t missing;	/* sequence gaps between segments at open */
	uint64_t open_ns;	/* how long open (the replay) took */
	uint64_t written, synced; /* positions: journal_written(), journal_synced() */
	uint64_t deleted_segments; /* by journal_gc() */
	uint64_t compacted;	/* messages copied forward by journal_gc() */
};

struct journal;

/*
 * Open (creating @dir 0700 if absent) and replay the journal in @dir.
 * 0, or -errno with @why saying what failed. Everything found on disk is
 * made durable before it returns: written == synced.
 */
int journal_open(const char *dir, const struct journal_cfg *cfg,
		 struct journal **out, char *why, size_t why_len);
/* Close without flushing: records still buffered are dropped. */
void journal_close(struct journal *j);
void journal_stats(const struct journal *j, struct journal_stats *st);

/*
 * Appends. They go to a buffer in memory and change the index at once;
 * nothing reaches the disk until journal_flush().
 * journal_pub: 0; -EMSGSIZE when the record would exceed JOURNAL_REC_MAX;
 * -ENOMEM. m->order is set to the record's seq when 0.
 * journal_settle, journal_state: 0, or -ENOENT (nothing written) when @id
 * is not live.
 */
int journal_pub(struct journal *j, struct jmsg *m);
int journal_settle(struct journal *j, uint64_t id, uint32_t reason);
int journal_state(struct journal *j, uint64_t id, uint32_t delivery_count,
		  uint64_t due_rt, uint32_t mflags);

/*
 * Write the buffered records to the active segment, first rolling over to
 * a new segment when the active one has reached segment_bytes. 0, or
 * -errno (ENOSPC, EDQUOT, EFBIG, EIO are the expected ones): then nothing
 * of the buffer counts as written - a partial write is truncated away -
 * and the index changes the buffered records made are undone, newest
 * first (an undo log kept per record): their PUBs are no longer live,
 * their SETTLEs live again, their STATEs reverted. Their seqs are reused.
 * The journal stays usable: a later flush may succeed once there is room
 * (not after a failed sync, below).
 */
int journal_flush(struct journal *j);
/* The byte position after the last record flushed: counts across
 * segments, never decreases. */
uint64_t journal_written(const struct journal *j);

/*
 * Group commit from another thread, without locks in the journal:
 *   loop thread:  journal_sync_begin(j, &s);	dup()s the fds of the
 *		   segments written past journal_synced() (and the
 *		   directory's, when a segment is new), notes the position
 *   sync thread:  err = journal_sync_run(&s);	fdatasync()s them; touches
 *		   nothing of the journal
 *   loop thread:  journal_sync_end(j, &s, err); on 0 synced = s.pos;
 *		   closes the dups either way
 * More than JSYNC_FDS unsynced segments take several rounds: s.pos stops
 * at the end of the last one included.
 * A failed sync is final: a failed fdatasync() may have dropped the dirty
 * pages and a retry would succeed with nothing written, so synced never
 * moves again and journal_flush() fails with that error from then on.
 */
#define JSYNC_FDS	8
struct jsync {
	int fds[JSYNC_FDS];
	unsigned nfds;
	int dirfd;		/* -1: no new directory entry to make durable */
	uint64_t pos;
};
void journal_sync_begin(struct journal *j, struct jsync *s);
int journal_sync_run(struct jsync *s);
void journal_sync_end(struct journal *j, struct jsync *s, int err);
uint64_t journal_synced(const struct journal *j);

/* The live entry of @id, or NULL. */
struct jent *journal_find(struct journal *j, uint64_t id);
/*
 * Live entries in ascending `order` (equal orders: oldest record first).
 * To settle the entry one is on, fetch n = journal_next(j, e) first.
 */
struct jent *journal_first(struct journal *j);
struct jent *journal_next(struct journal *j, struct jent *e);
/*
 * Every live message in order, its payload and attributes read back, for
 * recovery. fn may settle or change the entry it is given, nothing else;
 * a nonzero return stops the walk and is returned. A record that cannot be
 * read back is logged, counted corrupt and skipped. 0, or -ENOMEM.
 */
int journal_each_live(struct journal *j,
		      int (*fn)(void *arg, const struct jent *e,
				const struct jmsg *m),
		      void *arg);
/* journal_each_live() of the entries whose user is 0 alone (the others are
 * not read back): what a caller has not placed yet. */
int journal_each_unplaced(struct journal *j,
			  int (*fn)(void *arg, const struct jent *e,
				    const struct jmsg *m),
			  void *arg);
/*
 * The dedup keys of the PUBs seen (at open or flushed since, live or
 * settled) that are still in their window at @now_rt: fn(arg, key, end)
 * with end = pub_rt + dedup_window_ns.
 */
void journal_each_key(struct journal *j, uint64_t now_rt,
		      void (*fn)(void *arg, uint64_t key, uint64_t expires_rt),
		      void *arg);

/*
 * Housekeeping, every ~100 ms. Deletes head segments none of whose PUBs
 * is live, once what settled them is synced and their dedup keys are out
 * of the window at @now_rt, oldest first, fsync'ing the directory after
 * each unlink. Then compaction: when the oldest segment is not the active
 * one, is synced, and its live messages take under a quarter of it, it
 * copies them forward (a PUB of the same id and order with the current
 * state), at most about @budget bytes per call, and flushes; the segment
 * goes in a later call, once the copies are synced. Returns the number of
 * segments deleted, or -errno of a failed flush or directory fsync.
 */
int journal_gc(struct journal *j, uint64_t now_rt, uint64_t budget);

/* The queue is deleted: remove every file in @dir, then @dir. 0 or -errno. */
int journal_destroy(const char *dir);

#endif
