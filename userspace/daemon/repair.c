// SPDX-License-Identifier: MIT
/*
 * repair.c - what the daemon puts back after a bus member scribbled on the
 * arena, and the queues it quarantines when it cannot.
 *
 * The daemon's records are authoritative (shmbusd.h): the geometry it
 * formatted the arena with, each queue's settings and ring. What a reader
 * must find in the arena is restored from them:
 *
 *   - the superblock's constant lines (identity, name, geometry: what an
 *     opener validates) from the copy taken right after formatting, before
 *     the arena fd left the daemon; magic last, released ([MAGIC]), as
 *     arena_format() writes it; the padding and reserved bytes zero; the
 *     daemon's pid;
 *   - each pool descriptor's constant line;
 *   - each queue descriptor's constant fields (dqueue_image()), gen last
 *     with a release ([QGEN]); a free descriptor's gen.
 *
 * Checked when a client opens the bus (the superblock and pool
 * descriptors: what an opener validates), when one attaches (the queue
 * descriptors too: what an attacher checks), so a new client never meets
 * a damage the daemon could have mended; and every REPAIR_EVERY_NS in the
 * tick while clients are attached (everything, and the rings). A
 * read-only client that only lists or counts (shmbus stat) may see what a
 * member wrote into a descriptor since: it escapes what it prints. Only words that
 * differ are written (WRITE_ONCE: readers load them with READ_ONCE).
 * The mutable lines (id blocks, epoch, directory generation) are left
 * alone: any value there is one a reader can live with.
 *
 * Rings: a producer or consumer retires a cell that cannot be a state of
 * its position (ring.h, ring_cell_garbage()), and passes a head set back
 * over consumed cells. What no client can tell is a tail hint ahead of
 * its cells (its cell more than a lap behind it: impossible while the
 * hint only moves forward and never passes an empty cell), or a head
 * ahead of every position ever filled (the cell of the position before
 * it still waits for that position, or an older one: the position a head
 * passed was claimed, so its cell was full). The daemon looks for both
 * and rebuilds from the cells, which are the truth, when they form one
 * consistent window of capacity positions: the tail from the newest
 * filled position; the head, only if it is ahead of that, set back to it
 * (no claim can have been made past what was filled), after which the
 * full cells it had passed are put back into the queue by a claim sweep
 * (reclaim.c) as redeliveries. When the cells are no window
 * (REPAIR_STRIKES checks in a row), the queue is quarantined: marked
 * damaged in the record and the descriptor, its handles get -EUCLEAN (a
 * sleeping consumer is woken), attaches are refused, the daemon puts
 * nothing more into it; deleting it and declaring it again gives it a
 * fresh ring. Other queues go on. Every CLAIMS_EVERY_NS, the rings are
 * also searched for cells left full behind their heads by a claimer that
 * is gone (a safety net: the daemon looks for those whenever a slot that
 * may hold a claim is released).
 */
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include "shmbusd.h"

#define REPAIR_EVERY_NS		(100 * NSEC_PER_MSEC)
#define REPAIR_STRIKES		3
#define CLAIMS_EVERY_NS		(10 * NSEC_PER_SEC)

/* Bytes of the superblock the daemon keeps a copy of: lines 0-3. */
#define SB_CONST_BYTES		offsetof(struct shmbus_sb, id_next)

_Static_assert(SB_CONST_BYTES == 256 && sizeof(((struct dbus *)0)->sb_copy) ==
	       SB_CONST_BYTES, "the superblock's constant lines");

void repair_record(struct dbus *b)
{
	memcpy(b->sb_copy, b->arena.base, SB_CONST_BYTES);
	for (unsigned i = 0; i < b->arena.nr_pools; i++)
		memcpy(b->pool_copy[i], b->arena.pool[i].desc, 64);
}

/* Make the words at @dst (8-byte aligned, in the arena) the @bytes at
 * @src (a copy of any alignment); how many differed. */
static unsigned put_words(void *dst, const void *src, size_t bytes)
{
	uint64_t *d = dst;
	unsigned n = 0;

	for (size_t i = 0; i < bytes / 8; i++) {
		uint64_t s;

		memcpy(&s, (const uint8_t *)src + 8 * i, sizeof(s));
		if (READ_ONCE(d[i]) != s) {
			WRITE_ONCE(d[i], s);
			n++;
		}
	}
	return n;
}

static unsigned zero_words(void *dst, size_t bytes)
{
	uint64_t *d = dst;
	unsigned n = 0;

	for (size_t i = 0; i < bytes / 8; i++) {
		if (READ_ONCE(d[i])) {
			WRITE_ONCE(d[i], 0);
			n++;
		}
	}
	return n;
}

/* The superblock and pool descriptors: words rewritten. */
static unsigned sb_repair(struct dbus *b)
{
	uint8_t *base = b->arena.base;
	struct shmbus_sb *sb = b->arena.sb;
	uint64_t magic;
	unsigned n;

	memcpy(&magic, b->sb_copy, sizeof(magic));
	n = put_words(base + 8, b->sb_copy + 8, SB_CONST_BYTES - 8);
	n += zero_words(sb->__pad4, sizeof(sb->__pad4));
	n += zero_words(sb->__pad5b, sizeof(sb->__pad5b));
	n += zero_words(sb->__rsvd, sizeof(sb->__rsvd));
	if (READ_ONCE(sb->daemon_pid) != (uint32_t)getpid()) {
		WRITE_ONCE(sb->daemon_pid, (uint32_t)getpid());
		n++;
	}
	for (unsigned i = 0; i < b->arena.nr_pools; i++)
		n += put_words(b->arena.pool[i].desc, b->pool_copy[i], 64);
	if (READ_ONCE(sb->magic) != magic) {
		/* [MAGIC] release, last: pairs with the acquire in
		 * snapshot_validate(); an opener that sees it sees the
		 * geometry rewritten above */
		smp_store_release(&sb->magic, magic);
		n++;
	}
	return n;
}

/* Queue descriptor @qid: words rewritten. */
static unsigned queue_repair(struct dbus *b, uint32_t qid)
{
	const struct dqueue *dq = &b->queues[qid];
	struct shmbus_queue *q = &b->arena.queues[qid];
	struct shmbus_queue img;
	unsigned n = 0;

	if (dq->reclaim_pending)
		return 0;	/* deleting: gen even, DELETING set, the
				 * ring waits for its grace period */
	memset(&img, 0, sizeof(img));
	dqueue_image(b, dq, &img);
	if (dq->live) {
		if (READ_ONCE(q->flags) != img.flags) {
			WRITE_ONCE(q->flags, img.flags);
			n++;
		}
		/* lines 0 (after gen and flags), 1 (name), 2 (settings) */
		n += put_words((uint8_t *)q + 8, (uint8_t *)&img + 8,
			       offsetof(struct shmbus_queue, tail) - 8);
		n += put_words(&q->dedup_off, &img.dedup_off,
			       offsetof(struct shmbus_queue, __pad13b) -
			       offsetof(struct shmbus_queue, dedup_off));
		if (dq->kind != DQ_INTAKE &&
		    READ_ONCE(q->history) != img.history) {
			WRITE_ONCE(q->history, img.history);
			n++;
		}
	}
	if (READ_ONCE(q->gen) != dq->gen) {
		/* [QGEN] release: the fields above are visible to whoever
		 * acquires this gen (arena_find_queue(), fill_info()) */
		smp_store_release(&q->gen, dq->gen);
		n++;
	}
	return n;
}

/* ---- rings --------------------------------------------------------------- */

/* The position cell @i of @r holds (a full cell's, or the one an empty
 * cell waits for), in *@p; false if @v is no state of cell @i. */
static bool cell_position(const struct ring *r, uint32_t i, uint64_t v,
			  uint32_t *p)
{
	uint32_t seq = SHMBUS_CELL_SEQ(v);

	if (ring_cell_index(r, seq - 1) == i) {
		*p = seq - 1;
		return true;
	}
	if (ring_cell_index(r, seq) == i && !SHMBUS_CELL_REF(v)) {
		*p = seq;
		return true;
	}
	return false;
}

/*
 * Is a hint of @r ahead of its cells? The tail hint's cell more than a lap
 * behind the tail; or the cell of the position before the head still
 * waiting for that position, or holding an older one: the head passes
 * only positions claimed, whose cells were full (ring.h).
 */
static bool hints_ahead(const struct ring *r)
{
	uint64_t h = READ_ONCE(*r->head), t = READ_ONCE(*r->tail);
	uint32_t hi = ring_cell_index(r, h - 1);
	uint64_t hv = READ_ONCE(r->cells[hi].v);
	uint64_t tv = READ_ONCE(ring_cell(r, t)->v);
	uint32_t p;

	if (cell_position(r, hi, hv, &p)) {
		int32_t d = (int32_t)(p - (uint32_t)(h - 1));

		if (d < 0 || (d == 0 && !ring_cell_full(r, hi, hv)))
			return true;
	}
	if (cell_position(r, ring_cell_index(r, t), tv, &p) &&
	    (int32_t)(p - (uint32_t)t) < -(int32_t)(r->mask + 1))
		return true;
	return false;
}

/*
 * Rebuild the hints of @r from its cells: every cell that holds a state of
 * its own must name a position in one window of capacity positions, the
 * full ones before the empty ones. True if they do: the tail is rewritten
 * (the position after the newest filled one), and the head set back to it
 * if it was ahead (*@head_back then says so).
 */
static bool hints_rebuild(struct ring *r, bool *head_back)
{
	bool any = false, full = false, empty = false;
	int32_t lo = 0, hi = 0, full_hi = 0, empty_lo = 0;
	uint32_t base = 0, p;
	uint64_t head, next;

	*head_back = false;
	for (uint32_t i = 0; i <= r->mask; i++) {
		uint64_t v = READ_ONCE(r->cells[i].v);
		bool is_full = ring_cell_full(r, i, v);
		int32_t d;

		if (!cell_position(r, i, v, &p))
			continue;	/* garbage: clients retire it */
		if (!any) {
			base = p;
			any = true;
		}
		d = (int32_t)(p - base);
		lo = MIN(lo, d);
		hi = MAX(hi, d);
		if (is_full) {
			full_hi = full ? MAX(full_hi, d) : d;
			full = true;
		} else {
			empty_lo = empty ? MIN(empty_lo, d) : d;
			empty = true;
		}
	}
	if (!any || (int64_t)hi - lo > (int64_t)r->mask ||
	    (full && empty && full_hi >= empty_lo))
		return false;
	/* the position the next publish fills, in the head's 64-bit
	 * numbering (the window is within a lap of it, or the head is
	 * garbage and set to it) */
	head = READ_ONCE(*r->head);
	p = base + (uint32_t)(full ? full_hi + 1 : empty_lo);
	next = head + (uint64_t)(int64_t)(int32_t)(p - (uint32_t)head);
	/* plain store: the hint was garbage; a producer racing with us
	 * moves it on from whatever it finds (it may lag, never lead) */
	WRITE_ONCE(*r->tail, next);
	if ((int64_t)(head - next) > 0 && atomic_cmpxchg(r->head, &head, next))
		*head_back = true;
	return true;
}

/* Quarantine queue @qid: its ring cannot be put right. */
static void quarantine(struct dbus *b, uint32_t qid)
{
	struct dqueue *dq = &b->queues[qid];
	struct shmbus_queue img;

	dq->damaged = true;
	memset(&img, 0, sizeof(img));
	dqueue_image(b, dq, &img);
	WRITE_ONCE(b->arena.queues[qid].flags, img.flags);
	/* every consumer wakes and finds it damaged (-EUCLEAN) */
	seats_kick(dq, true);
	timers_drop(b, qid);
	b->quarantined++;
	log_err("bus '%s': queue '%s' quarantined: its ring is damaged beyond "
		"repair (hints and cells disagree); its handles get EUCLEAN, "
		"attaches are refused; delete it and declare it again",
		b->name, dq->name);
}

/* The rings of live queue @qid: 1 if hints were rebuilt, else 0. */
static unsigned rings_check(struct dbus *b, uint32_t qid)
{
	struct dqueue *dq = &b->queues[qid];
	bool bad = false, rebuilt = false, back = false;
	struct ring r;

	for (uint32_t l = 0; l < dq->nr_prio; l++) {
		bool head_back;

		dqueue_ring_level(b, dq, l, &r);
		if (!hints_ahead(&r))
			continue;
		if (hints_rebuild(&r, &head_back)) {
			rebuilt = true;
			back |= head_back;
			log_warn("bus '%s': queue '%s': ring hints ahead of the "
				 "cells; rebuilt from the cells", b->name,
				 dq->name);
		} else {
			bad = true;
		}
	}
	if (back)
		claims_sweep(b, qid);	/* what the head had passed */
	if (rebuilt)
		seats_kick(dq, false);	/* sleepers look again */
	dq->strikes = bad ? dq->strikes + 1 : 0;
	if (dq->strikes >= REPAIR_STRIKES)
		quarantine(b, qid);
	return rebuilt;
}

unsigned bus_repair(struct dbus *b, unsigned what)
{
	unsigned n = sb_repair(b), words = n, fixed = 0;

	for (uint32_t qid = 0; what && qid < b->arena.max_queues; qid++) {
		unsigned w = queue_repair(b, qid);

		words += w;
		fixed += w != 0;
		if ((what & REPAIR_RINGS) && b->queues[qid].live &&
		    !b->queues[qid].damaged)
			fixed += rings_check(b, qid);
	}
	if (n || fixed) {
		b->repairs++;
		if (n)
			log_warn("bus '%s': superblock or pool descriptors "
				 "damaged; %u words rewritten from the daemon's "
				 "records", b->name, n);
		if (fixed)
			log_warn("bus '%s': %u queue descriptors or rings "
				 "repaired (%u words)", b->name, fixed,
				 words - n);
	}
	if (READ_ONCE(b->arena.sb->repairs) != b->repairs)
		WRITE_ONCE(b->arena.sb->repairs, b->repairs);
	return n + fixed;
}

int64_t repair_tick(struct dbus *b, int64_t now)
{
	bool attached = false;

	if (now < b->repair_next)
		return b->repair_next;
	for (uint32_t si = 0; si < b->arena.max_slots && !attached; si++)
		attached = b->slots[si].conn_id != 0;
	/* an idle bus is checked when a client opens it or attaches */
	if (attached)
		bus_repair(b, REPAIR_QUEUES | REPAIR_RINGS);
	if (attached && now >= b->claims_next) {
		claims_sweep(b, CLAIMS_ALL);
		b->claims_next = now + CLAIMS_EVERY_NS;
	}
	b->repair_next = now + REPAIR_EVERY_NS;
	return b->repair_next;
}
