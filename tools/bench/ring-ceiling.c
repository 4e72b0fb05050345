// SPDX-License-Identifier: MIT
/*
 * ring-ceiling.c - the throughput ceiling of each candidate ring protocol
 * for a queue made of single-producer lanes, against the SPSC ring it has
 * to approach.
 *
 * Two processes share anonymous memory (mapped before fork): a producer
 * pinned to CPU 0 moves N 32-bit refs through a 1024-slot ring to a
 * consumer pinned to CPU 1; both busy-poll. Nothing else is on the path
 * (no pool, no leases, no wake-ups), so what is left is what the protocol
 * costs: which cache lines travel, and whether a locked instruction makes
 * the misses of consecutive messages wait for each other.
 *
 * Variants (the memory ordering of each is told at its code):
 *
 *   a    the queue ring, userspace/lib/ring.h itself: each publish is
 *        one cmpxchg on a {seq, ref} cell; a consumer claims runs of up
 *        to 32 with one cmpxchg of head and takes each message with a
 *        cmpxchg of its cell;
 *   b    a lane: the producer publishes with one release store of the
 *        cell {pos + 1, ref} and keeps a cached view of the consumers'
 *        head; a consumer takes each cell with a cmpxchg, so consumers
 *        can still compete; cells of consecutive positions are adjacent;
 *   bs   b with cells spread over cache lines, as layout 4 spread them;
 *   c8, c32   a lane whose consumer notes the range it is about to claim
 *        in its own record, claims a run of up to 8 (32) full cells with
 *        ONE cmpxchg on the lane's head, then marks each cell consumed
 *        with a release store; the producer learns room from the cells;
 *   d    SPSC: plain stores on both sides and cached indices, as the raw
 *        ring of shmbus-bench (transport_raw.c) but moving refs: the
 *        baseline every ratio is taken against;
 *   e    SPSC with no index at all: c's cells and producer, but one
 *        consumer that marks each cell consumed with a store and never
 *        claims; what c would be without its claim (not crash-safe with
 *        competing consumers, it has no way to compete);
 *   raw  (payload mode only) the raw ring itself: 64 B inline in the slot.
 *
 * Two modes: refs only (the ring alone), and refs naming 64 B chunks of a
 * chunk array that the producer writes and the consumer reads and checks,
 * so that the payload's cache misses are in the measurement as they are
 * in a real publish. Chunks are handed out in a fixed shuffled order, as a
 * pool recycles them in no order a hardware prefetcher could follow.
 *
 * Every ref is checked on arrival (exactly once, in order); the payload
 * too. A failure or a hang exits non-zero.
 *
 * Each variant runs REPS times, the variants interleaved (and rotated) so
 * that all of them see the same machine; the table gives the median, the
 * range, and the ratio of medians to d (and to raw) of the same run.
 * Absolute numbers move 2-3x between runs on a VM; the ratios are the
 * result.
 *
 *   ring-ceiling [N [REPS]]     default 20000000 refs, 5 repetitions
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "barrier.h"
#include "lane.h"		/* variant c is the library's lane */
#include "ring.h"		/* variant a is the library's own ring */

#define SLOTS		1024u
#define MASK		(SLOTS - 1)
#define NCHUNK		4096u	/* > 2 * SLOTS: see ref_of() */
#define LINE		64
#define CELLS_PER_LINE	(LINE / sizeof(struct shmbus_cell))
#define MAX_REPS	15

/* One chunk: one cache line of payload, as a 64 B message's data. */
struct chunk {
	uint64_t w[8];
} __attribute__((aligned(LINE)));

/* The raw ring's slot: a length then the payload inline (72 B, so two
 * lines apart), exactly as transport_raw.c lays it out. */
struct raw_slot {
	uint64_t len;
	uint64_t w[8];
} __attribute__((aligned(LINE)));

/*
 * A consumer's claim record (variant c): the range [from, to) it is about
 * to claim, written before the claim, so that a daemon finding the
 * consumer dead can tell which cells it may have owned.
 */
struct claim {
	uint64_t from;
	uint64_t to;
};

/*
 * Everything the two children share. Indices that the two sides write sit
 * on lines of their own: tail is written by the producer only, head by
 * consumers only (plus the record, a consumer's own line).
 */
struct shared {
	struct {
		uint32_t ready;		/* children pinned and waiting */
		uint32_t go;		/* the parent's start signal */
		uint64_t t0_ns;		/* producer: first message */
		uint64_t t1_ns;		/* consumer: last message */
		uint64_t bad_at;	/* consumer: first wrong message */
	} ctl __attribute__((aligned(LINE)));
	uint64_t tail __attribute__((aligned(LINE)));
	uint64_t head __attribute__((aligned(LINE)));
	struct claim rec __attribute__((aligned(LINE)));
	struct shmbus_cell cells[SLOTS] __attribute__((aligned(LINE)));
	uint32_t refs[SLOTS] __attribute__((aligned(LINE)));
	struct raw_slot slots[SLOTS];
	uint32_t perm[NCHUNK] __attribute__((aligned(LINE)));
	struct chunk chunks[NCHUNK];
};

/* One measurement's parameters, the same in both children. */
struct job {
	struct shared *s;
	uint64_t n;
	bool payload;
	bool spread;		/* b: cells spread over lines, as layout 4 did */
	unsigned int run;	/* c: the longest run one claim takes */
};

enum kind { K_MPMC, K_LANE, K_CLAIM, K_SPSC, K_CELLS, K_RAW };

struct variant {
	const char *name;
	const char *what;
	enum kind kind;
	bool spread;
	unsigned int run;
	bool payload_only;
};

static const struct variant variants[] = {
	{ "a", "MPMC ring.h: cmpxchg publish, claims of <= 32, cmpxchg take", K_MPMC, false, 0, false },
	{ "b", "lane: store publish, cmpxchg take", K_LANE, false, 0, false },
	{ "bs", "lane b, cells spread over lines", K_LANE, true, 0, false },
	{ "c8", "lane: claim runs of <= 8, one cmpxchg", K_CLAIM, false, 8, false },
	{ "c32", "lane: claim runs of <= 32, one cmpxchg", K_CLAIM, false, 32, false },
	{ "d", "SPSC refs, stores both sides (baseline)", K_SPSC, false, 0, false },
	{ "e", "SPSC refs, emptiness in the cells, no index", K_CELLS, false, 0, false },
	{ "raw", "raw SPSC ring, 64 B inline", K_RAW, false, 0, true },
};

#define NR_VARIANTS	(sizeof(variants) / sizeof(variants[0]))
#define VAR_SPSC	5
#define VAR_RAW		7

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------ */
/* Payload                                                            */
/* ------------------------------------------------------------------ */

/*
 * The ref of message i. With a payload, chunk perm[i % NCHUNK]: the
 * producer writes it again only at i + NCHUNK, when the ring's room has
 * told it that the consumer took message i + NCHUNK - SLOTS, which the
 * consumer only does after it has read chunk i (it works in order), so a
 * chunk is never rewritten under its reader.
 */
static inline uint32_t ref_of(const struct job *j, uint64_t i)
{
	return j->payload ? j->s->perm[i % NCHUNK] : (uint32_t)i;
}

/* Producer: the message body, before the publish that releases it. */
static inline void payload_write(uint64_t *w, uint64_t i)
{
	for (unsigned int k = 0; k < 8; k++)
		w[k] = i + k;
}

/* Consumer: every word of the body, in one sum. */
static inline bool payload_ok(const uint64_t *w, uint64_t i)
{
	uint64_t sum = 0;

	for (unsigned int k = 0; k < 8; k++)
		sum += w[k];
	return w[0] == i && sum == 8 * i + 28;
}

/* Consumer: is @ref the ref of message @i, with its payload? */
static inline bool consume(const struct job *j, uint64_t i, uint32_t ref)
{
	if (ref != ref_of(j, i))
		return false;
	return !j->payload || payload_ok(j->s->chunks[ref].w, i);
}

/* Ask for a chunk's line as soon as its ref is known, as the library's
 * consumer does before its claim: the line travels meanwhile. */
static inline void chunk_prefetch(const struct job *j, uint32_t ref)
{
	if (j->payload)
		__builtin_prefetch(&j->s->chunks[ref], 0, 3);
}

/* ------------------------------------------------------------------ */
/* a: the MPMC ring of ring.h, called as the library calls it         */
/* ------------------------------------------------------------------ */

static struct ring ring_of(struct shared *s)
{
	struct ring r = { .cells = s->cells, .tail = &s->tail, .head = &s->head };

	ring_geometry(&r, SLOTS);
	return r;
}

/*
 * As publish does: prefetch the cell for writing, write the chunk, then
 * the cmpxchg that publishes ([RING]: it releases the chunk). On a full
 * ring, poll with loads only (ring_has_room) so as not to steal the cell
 * line from the consumer we wait for.
 */
static int prod_mpmc(const struct job *j)
{
	struct ring r = ring_of(j->s);

	for (uint64_t i = 0; i < j->n; i++) {
		uint32_t ref = ref_of(j, i);
		int err;

		ring_prefetch_tail(&r);
		if (j->payload)
			payload_write(j->s->chunks[ref].w, i);
		while ((err = ring_enqueue(&r, ref)) == -ENOBUFS) {
			while (!ring_has_room(&r))
				cpu_relax();
		}
		if (err)
			return err;
	}
	return 0;
}

/* As receive does: claim a run of up to RING_RUN_MAX, start every
 * chunk's line moving, then take each message with a cmpxchg of its
 * cell. */
static int cons_mpmc(const struct job *j)
{
	struct ring r = ring_of(j->s);

	for (uint64_t i = 0; i < j->n;) {
		uint32_t refs[RING_RUN_MAX];
		uint64_t from;
		int n = ring_claim(&r, refs, RING_RUN_MAX, &from, NULL, NULL);

		if (n == 0) {
			cpu_relax();
			continue;
		}
		if (n < 0)
			return n;
		for (int k = 0; k < n; k++)
			chunk_prefetch(j, refs[k]);
		for (int k = 0; k < n; k++, i++) {
			if (!ring_consumed(&r, from + k, refs[k]))
				return -EBADMSG;	/* nobody takes back */
			if (!consume(j, i, refs[k])) {
				WRITE_ONCE(j->s->ctl.bad_at, i);
				return -EBADMSG;
			}
		}
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Lanes (b, c): one producer, cells {seq, ref} encoded as in ring.h  */
/* ------------------------------------------------------------------ */

/*
 * The cell of @pos. A lane's producer fills consecutive positions with
 * plain stores, so adjacent cells let eight publishes share one line
 * transfer; @spread uses the mapping of layout 4 instead (one line per
 * position), to see what that costs once the producer no longer locks.
 */
static inline struct shmbus_cell *b_cell(struct shared *s, uint64_t pos,
					    bool spread)
{
	if (spread) {
		/* layout 4's mapping: with L = N / 8 lines, position i
		 * on line i % L, word i / L */
		uint32_t i = (uint32_t)pos & MASK, lines = SLOTS / 8;

		return &s->cells[(i % lines) * 8 + i / lines];
	}
	return &s->cells[pos & MASK];
}

/* Lap 0: the cell of p empty for p, as ring_init_cells() makes it. */
static void b_init(struct shared *s, bool spread)
{
	for (uint64_t p = 0; p < SLOTS; p++)
		b_cell(s, p, spread)->v = SHMBUS_CELL(p, 0);
}

/*
 * Raise a hint to @pos, never lower it: a plain store could be replayed
 * late by a process stopped between its load and its store and set the
 * hint back. Each failed cmpxchg means another consumer raised it.
 */
static inline void hint_raise(uint64_t *hint, uint64_t pos)
{
	uint64_t h = READ_ONCE(*hint);

	while (h < pos && !atomic_cmpxchg(hint, &h, pos))
		;
}

/*
 * b, producer. The lane has one producer, so its position is its own (a
 * new producer of a dead one's lane finds it from the cells). Publishing
 * is one release store of the cell: everything written into the chunk
 * before is visible to whoever sees the new cell ([RING], as the cmpxchg
 * of ring_enqueue() gives). A store cannot be half done, so a producer
 * killed at any instruction has published or not.
 *
 * Room: every position below head has been taken (head only passes taken
 * cells, below), so positions below head + SLOTS are free. The producer
 * reads head only when its cached view is spent; the acquire pairs with
 * the consumers' cmpxchgs (cell, then head), so their loads of the old
 * cell are done before we overwrite it.
 */
static int prod_lane(const struct job *j)
{
	struct shared *s = j->s;
	uint64_t room = 0;

	for (uint64_t i = 0; i < j->n; i++) {
		uint32_t ref = ref_of(j, i);

		while (i == room) {
			room = smp_load_acquire(&s->head) + SLOTS;
			if (i == room)
				cpu_relax();
		}
		if (j->payload)
			payload_write(s->chunks[ref].w, i);
		smp_store_release(&b_cell(s, i, j->spread)->v,
				  SHMBUS_CELL(i + 1, ref));
	}
	return 0;
}

/*
 * b, consumer: a take is one cmpxchg {pos + 1, ref} -> {pos + N, 0}, as in
 * ring.h, so several consumers can compete for a lane and one killed at
 * any instruction has taken a message or not (the library stores the ref
 * in its lease entry before, as today). head is a hint raised once per
 * line of cells, not per take: it only passes cells seen taken, so the
 * producer may trust it; it lags by at most 7, which costs the producer
 * 7 cells of room and spares one locked instruction per message.
 */
static int cons_lane(const struct job *j)
{
	struct shared *s = j->s;
	uint64_t pos = READ_ONCE(s->head);

	for (uint64_t i = 0; i < j->n;) {
		struct shmbus_cell *c = b_cell(s, pos, j->spread);
		/* [RING] pairs with the producer's release store */
		uint64_t v = smp_load_acquire(&c->v);
		int32_t dif = (int32_t)(SHMBUS_CELL_SEQ(v) - (uint32_t)(pos + 1));
		uint32_t ref;

		if (dif < 0) {		/* nothing published at pos yet */
			cpu_relax();
			continue;
		}
		if (dif > 0) {		/* another consumer took it */
			pos++;
			continue;
		}
		ref = SHMBUS_CELL_REF(v);
		chunk_prefetch(j, ref);
		if (!atomic_cmpxchg(&c->v, &v, SHMBUS_CELL(pos + SLOTS, 0)))
			continue;	/* lost it to another consumer */
		pos++;
		if (!(pos % CELLS_PER_LINE))
			hint_raise(&s->head, pos);
		if (!consume(j, i, ref)) {
			WRITE_ONCE(s->ctl.bad_at, i);
			return -EBADMSG;
		}
		i++;
	}
	return 0;
}

/*
 * c: the lane of the library, userspace/lib/lane.h, called as the
 * library is to call it (its comment tells the protocol and its memory
 * ordering). The producer publishes with release stores and learns room
 * from the cells, a line at a time; a consumer claims a run of up to
 * j->run full cells with one cmpxchg of head, noting the run in its
 * record first, then gives the cells back (release stores) and reads the
 * payloads.
 */
static struct lane lane_of(struct shared *s)
{
	return (struct lane){ .cells = s->cells, .head = &s->head,
			      .mask = MASK };
}

static int prod_claim(const struct job *j)
{
	struct lane l = lane_of(j->s);
	uint32_t room = 0;

	for (uint64_t i = 0; i < j->n; i++) {
		uint32_t ref = ref_of(j, i);

		while (!room) {
			room = lane_room(&l, i);
			if (!room)
				cpu_relax();
		}
		if (j->payload)
			payload_write(j->s->chunks[ref].w, i);
		lane_publish(&l, i, ref);
		room--;
	}
	return 0;
}

/* lane_claim()'s note: the run into our record, and its chunks asked
 * for while the claim's cmpxchg travels. */
struct claim_ctx {
	const struct job *j;
};

static void claim_note(void *ctx, uint64_t from, uint32_t n,
		       const uint32_t *refs)
{
	const struct job *j = ((struct claim_ctx *)ctx)->j;

	for (uint32_t k = 0; k < n; k++)
		chunk_prefetch(j, refs[k]);
	WRITE_ONCE(j->s->rec.from, from);
	WRITE_ONCE(j->s->rec.to, from + n);
}

static int cons_claim(const struct job *j)
{
	struct lane l = lane_of(j->s);
	struct claim_ctx cc = { j };
	uint32_t refs[LANE_RUN_MAX];

	for (uint64_t i = 0; i < j->n;) {
		uint64_t from;
		int m = lane_claim(&l, refs, j->run, &from, claim_note, &cc);

		if (m <= 0) {
			if (m < 0)
				return m;	/* no garbage here */
			cpu_relax();
			continue;
		}
		lane_consumed(&l, from, (uint32_t)m);
		for (int k = 0; k < m; k++, i++) {
			if (!consume(j, i, refs[k])) {
				WRITE_ONCE(j->s->ctl.bad_at, i);
				return -EBADMSG;
			}
		}
	}
	return 0;
}

/*
 * e, consumer: the only one, so no claim: each cell is taken by reading
 * it and marking it consumed with a release store (the producer, c's,
 * learns room from the marks). Neither side ever reads an index the
 * other writes per message; the cells carry both directions.
 */
static int cons_cells(const struct job *j)
{
	struct shared *s = j->s;

	for (uint64_t i = 0; i < j->n; i++) {
		struct shmbus_cell *c = &s->cells[i & MASK];
		uint64_t v;
		uint32_t ref;

		/* [RING] pairs with the producer's release store */
		while (SHMBUS_CELL_SEQ(v = smp_load_acquire(&c->v)) !=
		       (uint32_t)(i + 1))
			cpu_relax();
		ref = SHMBUS_CELL_REF(v);
		smp_store_release(&c->v, SHMBUS_CELL(i + SLOTS, 0));
		if (!consume(j, i, ref)) {
			WRITE_ONCE(s->ctl.bad_at, i);
			return -EBADMSG;
		}
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* d and raw: SPSC, plain stores both sides, cached indices           */
/* ------------------------------------------------------------------ */

/*
 * tail counts what the producer published, head what the consumer is
 * done with; each side reloads the other's index only when its cached
 * copy is spent. The release of an index publishes (or frees) the slots
 * below it; the acquire of the other side pairs with it. This is the raw
 * ring of shmbus-bench; it is neither multi-consumer nor crash-safe.
 */
static inline void spsc_wait_room(struct shared *s, uint64_t i, uint64_t *room)
{
	while (i == *room) {
		*room = smp_load_acquire(&s->head) + SLOTS;
		if (i == *room)
			cpu_relax();
	}
}

static inline void spsc_wait_data(struct shared *s, uint64_t i, uint64_t *avail)
{
	while (i == *avail) {
		*avail = smp_load_acquire(&s->tail);
		if (i == *avail)
			cpu_relax();
	}
}

static int prod_spsc(const struct job *j)
{
	struct shared *s = j->s;
	uint64_t room = 0;

	for (uint64_t i = 0; i < j->n; i++) {
		uint32_t ref = ref_of(j, i);

		spsc_wait_room(s, i, &room);
		if (j->payload)
			payload_write(s->chunks[ref].w, i);
		s->refs[i & MASK] = ref;
		smp_store_release(&s->tail, i + 1);
	}
	return 0;
}

/* The ref is ours once read, so the slot is freed before the payload is
 * read, as c frees its cells. */
static int cons_spsc(const struct job *j)
{
	struct shared *s = j->s;
	uint64_t avail = 0;

	for (uint64_t i = 0; i < j->n; i++) {
		uint32_t ref;

		spsc_wait_data(s, i, &avail);
		ref = s->refs[i & MASK];
		smp_store_release(&s->head, i + 1);
		if (!consume(j, i, ref)) {
			WRITE_ONCE(s->ctl.bad_at, i);
			return -EBADMSG;
		}
	}
	return 0;
}

static int prod_raw(const struct job *j)
{
	struct shared *s = j->s;
	uint64_t room = 0;

	for (uint64_t i = 0; i < j->n; i++) {
		struct raw_slot *sl = &s->slots[i & MASK];

		spsc_wait_room(s, i, &room);
		payload_write(sl->w, i);
		sl->len = sizeof(sl->w);
		smp_store_release(&s->tail, i + 1);
	}
	return 0;
}

/* The payload is in the slot: the slot is freed after it is read. */
static int cons_raw(const struct job *j)
{
	struct shared *s = j->s;
	uint64_t avail = 0;

	for (uint64_t i = 0; i < j->n; i++) {
		const struct raw_slot *sl = &s->slots[i & MASK];
		bool ok;

		spsc_wait_data(s, i, &avail);
		ok = sl->len == sizeof(sl->w) && payload_ok(sl->w, i);
		smp_store_release(&s->head, i + 1);
		if (!ok) {
			WRITE_ONCE(s->ctl.bad_at, i);
			return -EBADMSG;
		}
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Running one measurement                                            */
/* ------------------------------------------------------------------ */

/* The parent, before forking: lap 0 of whichever ring is measured. */
static void reset(struct shared *s, const struct variant *v)
{
	WRITE_ONCE(s->ctl.ready, 0);
	WRITE_ONCE(s->ctl.go, 0);
	s->ctl.t0_ns = 0;
	s->ctl.t1_ns = 0;
	s->ctl.bad_at = UINT64_MAX;
	s->tail = 0;
	s->head = 0;
	s->rec.from = 0;
	s->rec.to = 0;
	if (v->kind == K_MPMC) {
		struct ring r = ring_of(s);

		ring_init_cells(&r);
	} else {
		b_init(s, v->spread);
	}
}

static void pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		perror("ring-ceiling: sched_setaffinity");
}

/*
 * A child: pin, say ready, wait for the parent's go (yielding: the
 * parent needs a CPU to give it), run one side. The producer stamps the
 * start, the consumer the end.
 */
static void child(const struct job *j, const struct variant *v, bool prod)
{
	struct shared *s = j->s;
	int err;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	pin(prod ? 0 : 1);
	atomic_fetch_add(&s->ctl.ready, 1);
	while (!smp_load_acquire(&s->ctl.go))
		sched_yield();
	if (prod)
		WRITE_ONCE(s->ctl.t0_ns, now_ns());
	switch (v->kind) {
	case K_MPMC:
		err = prod ? prod_mpmc(j) : cons_mpmc(j);
		break;
	case K_LANE:
		err = prod ? prod_lane(j) : cons_lane(j);
		break;
	case K_CLAIM:
		err = prod ? prod_claim(j) : cons_claim(j);
		break;
	case K_SPSC:
		err = prod ? prod_spsc(j) : cons_spsc(j);
		break;
	case K_CELLS:
		err = prod ? prod_claim(j) : cons_cells(j);
		break;
	default:
		err = prod ? prod_raw(j) : cons_raw(j);
		break;
	}
	if (!prod)
		WRITE_ONCE(s->ctl.t1_ns, now_ns());
	_exit(err ? 2 : 0);
}

static volatile sig_atomic_t timed_out;

static void on_alarm(int sig)
{
	(void)sig;
	timed_out = 1;
}

/*
 * One measurement: fork both sides, start them together, wait (with a
 * deadline: a protocol bug shows as a hang). Returns Mops/s, or a
 * negative number after saying what went wrong.
 */
static double measure(struct shared *s, const struct variant *v, bool payload,
		      uint64_t n)
{
	struct job j = {
		.s = s, .n = n, .payload = payload, .spread = v->spread,
		.run = v->run,
	};
	pid_t pid[2];
	int status[2] = { 0, 0 }, left = 2;

	reset(s, v);
	for (int k = 0; k < 2; k++) {
		pid[k] = fork();
		if (pid[k] < 0) {
			perror("ring-ceiling: fork");
			if (k)
				kill(pid[0], SIGKILL);
			return -1;
		}
		if (!pid[k])
			child(&j, v, k == 0);
	}
	while (READ_ONCE(s->ctl.ready) < 2)
		usleep(100);
	timed_out = 0;
	alarm(60 + (unsigned int)(n / 200000));
	smp_store_release(&s->ctl.go, 1);
	while (left) {
		int st;
		pid_t p = waitpid(-1, &st, 0);

		if (p < 0 && errno == EINTR && timed_out) {
			fprintf(stderr, "ring-ceiling: %s hangs, killing it\n",
				v->name);
			for (int k = 0; k < 2; k++)
				if (pid[k])
					kill(pid[k], SIGKILL);
			timed_out = 0;
			status[0] = 1;
			continue;
		}
		if (p < 0)
			break;
		for (int k = 0; k < 2; k++) {
			if (p == pid[k]) {
				status[k] |= st;
				pid[k] = 0;
				left--;
			}
		}
		/* a consumer that failed leaves its producer waiting */
		if (st && pid[0])
			kill(pid[0], SIGKILL);
	}
	alarm(0);
	if (status[0] || status[1]) {
		uint64_t bad = READ_ONCE(s->ctl.bad_at);

		fprintf(stderr, "ring-ceiling: %s (%s) failed", v->name,
			payload ? "payload" : "refs");
		if (bad != UINT64_MAX)
			fprintf(stderr, ": message %llu arrived wrong",
				(unsigned long long)bad);
		fprintf(stderr, "\n");
		return -1;
	}
	return (double)n * 1e3 / (double)(s->ctl.t1_ns - s->ctl.t0_ns);
}

/* ------------------------------------------------------------------ */
/* Report                                                             */
/* ------------------------------------------------------------------ */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(const double *x, int n, double *lo, double *hi)
{
	double v[MAX_REPS];

	memcpy(v, x, n * sizeof(*x));
	qsort(v, n, sizeof(*v), cmp_double);
	*lo = v[0];
	*hi = v[n - 1];
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void table(const char *title, double res[][MAX_REPS], int reps,
		  bool payload)
{
	double med[NR_VARIANTS], lo, hi;

	for (unsigned int v = 0; v < NR_VARIANTS; v++)
		if (payload || !variants[v].payload_only)
			med[v] = median(res[v], reps, &lo, &hi);
	printf("\n%s\n\n", title);
	printf("| variant | protocol | Mops/s | min-max | vs d |%s\n",
	       payload ? " vs raw |" : "");
	printf("|---|---|---:|---:|---:|%s\n", payload ? "---:|" : "");
	for (unsigned int v = 0; v < NR_VARIANTS; v++) {
		if (!payload && variants[v].payload_only)
			continue;
		median(res[v], reps, &lo, &hi);
		printf("| %s | %s | %.2f | %.2f-%.2f | %.0f%% |", variants[v].name,
		       variants[v].what, med[v], lo, hi,
		       100 * med[v] / med[VAR_SPSC]);
		if (payload)
			printf(" %.0f%% |", 100 * med[v] / med[VAR_RAW]);
		printf("\n");
	}
}

int main(int argc, char **argv)
{
	uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 0) : 20000000;
	int reps = argc > 2 ? atoi(argv[2]) : 5;
	static double res[2][NR_VARIANTS][MAX_REPS];
	struct sigaction sa = { .sa_handler = on_alarm };
	struct shared *s;
	uint64_t x = 0x9e3779b97f4a7c15ull;

	if (argc > 3 || !n || n > UINT32_MAX || reps < 1 || reps > MAX_REPS) {
		fprintf(stderr, "usage: ring-ceiling [N (1..2^32-1) [REPS (1..%d)]]\n",
			MAX_REPS);
		return 2;
	}
	/* no SA_RESTART: the alarm must interrupt waitpid() */
	sigaction(SIGALRM, &sa, NULL);
	s = mmap(NULL, sizeof(*s), PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (s == MAP_FAILED) {
		perror("ring-ceiling: mmap");
		return 1;
	}
	memset(s, 0, sizeof(*s));
	/* the chunks in a fixed shuffled order (Fisher-Yates, xorshift64) */
	for (uint32_t k = 0; k < NCHUNK; k++)
		s->perm[k] = k;
	for (uint32_t k = NCHUNK - 1; k > 0; k--) {
		uint32_t r, t;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		r = (uint32_t)(x % (k + 1));
		t = s->perm[k];
		s->perm[k] = s->perm[r];
		s->perm[r] = t;
	}

	printf("ring-ceiling: %llu refs per measurement, %u-slot ring, %u chunks of 64 B, median of %d, producer on CPU 0, consumer on CPU 1\n",
	       (unsigned long long)n, SLOTS, NCHUNK, reps);
	fflush(stdout);
	for (int r = 0; r < reps; r++) {
		/* rotate the order so no variant always runs first */
		for (unsigned int k = 0; k < 2 * NR_VARIANTS; k++) {
			unsigned int idx = (k + r * 3) % (2 * NR_VARIANTS);
			unsigned int v = idx % NR_VARIANTS;
			bool payload = idx >= NR_VARIANTS;
			double mops;

			if (!payload && variants[v].payload_only)
				continue;
			mops = measure(s, &variants[v], payload, n);
			if (mops < 0)
				return 1;
			res[payload][v][r] = mops;
		}
		fprintf(stderr, "ring-ceiling: repetition %d of %d done\n",
			r + 1, reps);
	}
	table("Refs only (the ring alone), Mops/s", res[0], reps, false);
	table("Each ref names a 64 B chunk the producer writes and the consumer reads, Mops/s",
	      res[1], reps, true);
	return 0;
}
