// SPDX-License-Identifier: MIT
/*
 * unit_ring.c - the MPMC ring on its own: empty, full, wrap-around,
 * helping a stale tail, a head set back, claims of runs and what a claim
 * holds, garbage, peek, take-at, and multi-threaded exactly-once runs
 * (consumers taking one at a time, and consumers claiming runs).
 */
#include <pthread.h>
#include <stdint.h>

/* A producer that fills a garbage cell right after a consumer claimed
 * it, before it is retired (test_retire_race): ref fill_ref if set. */
static uint32_t fill_ref;
struct ring;
static void fill_window(struct ring *r, uint64_t pos);
#define RING_RETIRE_WINDOW(r, pos)	fill_window(r, pos)

#include "helpers.h"
#include "ring.h"

static void fill_window(struct ring *r, uint64_t pos)
{
	if (fill_ref) {
		/* the tail hint stays at the garbage cell: fill it */
		assert_int_equal(READ_ONCE(*r->tail), pos);
		assert_int_equal(ring_enqueue(r, fill_ref), 0);
		fill_ref = 0;
	}
}

struct tring {
	struct ring r;
	struct shmbus_cell *cells;
	uint64_t tail, head;
};

static void tring_init(struct tring *t, uint32_t cap)
{
	t->cells = calloc(cap, sizeof(*t->cells));
	assert_non_null(t->cells);
	t->tail = t->head = 0;
	t->r.cells = t->cells;
	t->r.tail = &t->tail;
	t->r.head = &t->head;
	ring_geometry(&t->r, cap);
	ring_init_cells(&t->r);
}

/* Positions map onto cells one to one, consecutive positions on
 * consecutive cells (a claim reads a run a line at a time). */
static void test_cell_map(void **state)
{
	(void)state;
	for (uint32_t cap = 2; cap <= 4096; cap *= 2) {
		struct tring t;

		tring_init(&t, cap);
		for (uint64_t p = 0; p < cap; p++) {
			uint32_t i = ring_cell_index(&t.r, p);

			assert_int_equal(i, p);
			assert_int_equal(ring_cell_index(&t.r, p + cap), i);
			/* the daemon's sweep recognises full cells */
			assert_true(ring_cell_full(&t.r, i, SHMBUS_CELL(p + 1, 5)));
			assert_false(ring_cell_full(&t.r, i, SHMBUS_CELL(p, 0)));
			assert_false(ring_cell_full(&t.r, i, SHMBUS_CELL(p + cap, 0)));
		}
		free(t.cells);
	}
}

struct noted {
	uint64_t from;
	uint32_t n, calls;
};

static void note_run(void *ctx, uint64_t from, uint32_t n,
		     const uint32_t *refs)
{
	struct noted *nd = ctx;

	(void)refs;
	nd->from = from;
	nd->n = n;
	nd->calls++;
}

/*
 * A claim takes the full cells from head, up to its max, with the run
 * noted first; the claimed cells stay full (producers find the ring full)
 * until each is marked consumed, in any order.
 */
static void test_claim_runs(void **state)
{
	struct noted nd = { 0 };
	uint32_t refs[RING_RUN_MAX];
	uint64_t from;
	struct tring t;

	(void)state;
	tring_init(&t, 8);
	assert_int_equal(ring_claim(&t.r, refs, 4, &from, note_run, &nd), 0);
	assert_int_equal(nd.calls, 0);
	for (uint32_t i = 0; i < 8; i++)
		assert_int_equal(ring_enqueue(&t.r, 10 + i), 0);
	assert_int_equal(ring_claim(&t.r, refs, 5, &from, note_run, &nd), 5);
	assert_int_equal(from, 0);
	assert_int_equal(nd.from, 0);
	assert_int_equal(nd.n, 5);
	assert_int_equal(t.head, 5);
	for (uint32_t i = 0; i < 5; i++)
		assert_int_equal(refs[i], 10 + i);
	/* claimed, not taken: still full for producers */
	assert_int_equal(ring_enqueue(&t.r, 99), -ENOBUFS);
	assert_true(ring_consumed(&t.r, 3, 13));
	assert_false(ring_consumed(&t.r, 3, 13));	/* once */
	assert_int_equal(ring_enqueue(&t.r, 99), -ENOBUFS);	/* 0 first */
	assert_false(ring_consumed(&t.r, 0, 11));	/* not its message */
	assert_true(ring_consumed(&t.r, 0, 10));
	assert_int_equal(ring_enqueue(&t.r, 18), 0);
	/* the rest of the ring: 5, 6, 7, then 8 (in cell 0) */
	assert_int_equal(ring_claim(&t.r, refs, RING_RUN_MAX, &from, NULL,
				    NULL), 4);
	assert_int_equal(from, 5);
	for (uint32_t i = 0; i < 4; i++)
		assert_int_equal(refs[i], 15 + i);
	assert_int_equal(ring_claim(&t.r, refs, 1, &from, NULL, NULL), 0);
	assert_false(ring_peek_nonempty(&t.r));
	for (uint64_t p = 5; p < 9; p++)
		assert_true(ring_consumed(&t.r, p, refs[p - 5]));
	assert_true(ring_consumed(&t.r, 1, 11));
	assert_true(ring_consumed(&t.r, 2, 12));
	assert_true(ring_consumed(&t.r, 4, 14));
	/* every cell free again: a whole lap fits */
	for (uint32_t i = 0; i < 8; i++)
		assert_int_equal(ring_enqueue(&t.r, 20 + i), 0);
	assert_int_equal(ring_claim(&t.r, refs, RING_RUN_MAX, &from, NULL,
				    NULL), 8);
	assert_int_equal(from, 9);
	free(t.cells);
}

/* Garbage at head is claimed alone and retired (-EBADMSG); garbage
 * inside a run ends the run before it. */
static void test_claim_garbage(void **state)
{
	uint32_t refs[RING_RUN_MAX], v;
	uint64_t from;
	struct tring t;

	(void)state;
	tring_init(&t, 8);
	for (uint32_t i = 0; i < 6; i++)
		assert_int_equal(ring_enqueue(&t.r, 30 + i), 0);
	t.cells[0].v = SHMBUS_CELL(5, 77);	/* no state of position 0 */
	t.cells[3].v = SHMBUS_CELL(3 + 4, 9);	/* nor of 3 */
	assert_int_equal(ring_claim(&t.r, refs, 8, &from, NULL, NULL),
			 -EBADMSG);
	assert_int_equal(t.head, 1);
	assert_int_equal(t.cells[0].v, SHMBUS_CELL(8, 0));
	assert_int_equal(ring_claim(&t.r, refs, 8, &from, NULL, NULL), 2);
	assert_int_equal(refs[0], 31);
	assert_int_equal(refs[1], 32);
	assert_true(ring_consumed(&t.r, 1, 31));
	assert_true(ring_consumed(&t.r, 2, 32));
	/* ring_dequeue() looks past it */
	assert_int_equal(ring_dequeue(&t.r, &v), 0);
	assert_int_equal(v, 34);
	assert_int_equal(t.head, 5);
	free(t.cells);
}

/*
 * A producer fills a garbage cell as if it were empty. When it does so
 * between a consumer's claim of that cell and its retiring, the message
 * must survive: ring_claim() returns it as a claim of one; the daemon's
 * ring_peek_head() leaves it in its cell (for the claim sweep). A retire
 * by plain store would erase it.
 */
static void test_retire_race(void **state)
{
	uint32_t refs[RING_RUN_MAX];
	uint64_t from = 99, pos, val;
	struct tring t;

	(void)state;
	tring_init(&t, 8);
	t.cells[0].v = SHMBUS_CELL(5, 77);	/* no state of position 0 */
	fill_ref = 61;
	assert_int_equal(ring_claim(&t.r, refs, 8, &from, NULL, NULL), 1);
	assert_int_equal(fill_ref, 0);		/* the window ran */
	assert_int_equal(from, 0);
	assert_int_equal(refs[0], 61);
	assert_int_equal(t.head, 1);
	assert_true(ring_consumed(&t.r, 0, 61));
	assert_int_equal(ring_claim(&t.r, refs, 8, &from, NULL, NULL), 0);

	/* the same at the daemon's peek, at position 1 */
	t.cells[1].v = SHMBUS_CELL(3, 78);
	fill_ref = 62;
	assert_int_equal(ring_peek_head(&t.r, &pos, &val), 0);
	assert_int_equal(fill_ref, 0);
	assert_int_equal(t.head, 2);
	assert_int_equal(t.cells[1].v, SHMBUS_CELL(2, 62));	/* kept */
	free(t.cells);
}

/*
 * A head set back over consumed cells is passed by whoever claims or
 * peeks; ring_take_at() takes only the oldest message, and only while
 * its cell holds what was read.
 */
static void test_head_back_take_at(void **state)
{
	uint32_t refs[RING_RUN_MAX];
	uint64_t from, pos, val = 0;
	struct tring t;

	(void)state;
	tring_init(&t, 8);
	for (uint32_t i = 0; i < 6; i++)
		assert_int_equal(ring_enqueue(&t.r, 40 + i), 0);
	assert_int_equal(ring_claim(&t.r, refs, 3, &from, NULL, NULL), 3);
	for (uint64_t p = 0; p < 3; p++)
		assert_true(ring_consumed(&t.r, p, refs[p]));
	t.head = 0;		/* a peer set it back */
	assert_true(ring_peek_nonempty(&t.r));
	assert_int_equal(ring_peek_head(&t.r, &pos, &val), 1);
	assert_int_equal(pos, 3);
	assert_int_equal(t.head, 3);
	assert_int_equal(ring_take_at(&t.r, 4, val), -EAGAIN);	/* not oldest */
	assert_int_equal(ring_take_at(&t.r, 3, val + 1), -EAGAIN);
	assert_int_equal(ring_take_at(&t.r, 3, val), 0);
	assert_int_equal(t.head, 4);
	assert_int_equal(ring_take_at(&t.r, 3, val), -EAGAIN);	/* gone */
	t.head = 1;
	assert_int_equal(ring_claim(&t.r, refs, 8, &from, NULL, NULL), 2);
	assert_int_equal(from, 4);
	assert_int_equal(refs[0], 44);
	free(t.cells);
}

/* FIFO through a ring, many laps, ring kept half full. */
static void test_fifo(void **state)
{
	struct tring t;
	uint32_t v, next = 0, expect = 0;

	(void)state;
	tring_init(&t, 64);
	for (int i = 0; i < 32; i++)
		assert_int_equal(ring_enqueue(&t.r, next++), 0);
	for (int i = 0; i < 100000; i++) {
		assert_int_equal(ring_enqueue(&t.r, next++), 0);
		assert_int_equal(ring_dequeue(&t.r, &v), 0);
		assert_int_equal(v, expect++);
	}
	free(t.cells);
}

/* An empty cell that carries a stray ref (a peer's garbage) is still
 * usable; it does not wedge producers. */
static void test_stray_ref(void **state)
{
	struct tring t;
	uint32_t v;

	(void)state;
	tring_init(&t, 4);
	t.cells[0].v = SHMBUS_CELL(0, 777);
	assert_int_equal(ring_enqueue(&t.r, 5), 0);
	assert_int_equal(ring_dequeue(&t.r, &v), 0);
	assert_int_equal(v, 5);
	free(t.cells);
}

static void test_empty(void **state)
{
	struct tring t;
	uint32_t v;

	(void)state;
	tring_init(&t, 4);
	assert_int_equal(ring_dequeue(&t.r, &v), -EAGAIN);
	assert_false(ring_peek_nonempty(&t.r));
	free(t.cells);
}

static void test_full(void **state)
{
	struct tring t;
	uint32_t v;

	(void)state;
	tring_init(&t, 4);
	for (uint32_t i = 0; i < 4; i++)
		assert_int_equal(ring_enqueue(&t.r, 100 + i), 0);
	assert_int_equal(ring_enqueue(&t.r, 999), -ENOBUFS);
	assert_true(ring_peek_nonempty(&t.r));
	assert_int_equal(ring_dequeue(&t.r, &v), 0);
	assert_int_equal(v, 100);
	/* one slot free again */
	assert_int_equal(ring_enqueue(&t.r, 104), 0);
	assert_int_equal(ring_enqueue(&t.r, 999), -ENOBUFS);
	for (uint32_t i = 1; i <= 4; i++) {
		assert_int_equal(ring_dequeue(&t.r, &v), 0);
		assert_int_equal(v, 100 + i);
	}
	assert_int_equal(ring_dequeue(&t.r, &v), -EAGAIN);
	free(t.cells);
}

/* Many laps through a 2-slot ring keep FIFO order; also across the
 * 32-bit sequence wrap. */
static void test_wraparound(void **state)
{
	struct tring t;
	uint32_t v, next = 0, expect = 0;

	(void)state;
	tring_init(&t, 2);
	for (int round = 0; round < 100000; round++) {
		int n = 1 + round % 2;

		for (int k = 0; k < n; k++)
			assert_int_equal(ring_enqueue(&t.r, next++), 0);
		for (int k = 0; k < n; k++) {
			assert_int_equal(ring_dequeue(&t.r, &v), 0);
			assert_int_equal(v, expect++);
		}
	}
	/* jump positions near 2^32 and continue through the wrap */
	free(t.cells);
	tring_init(&t, 8);
	uint64_t base = (1ULL << 32) - 5;

	for (uint32_t i = 0; i < 8; i++)
		t.cells[(base + i) & 7].v = SHMBUS_CELL(base + i, 0);
	t.head = t.tail = base;
	for (uint32_t i = 0; i < 1000; i++) {
		assert_int_equal(ring_enqueue(&t.r, i), 0);
		assert_int_equal(ring_dequeue(&t.r, &v), 0);
		assert_int_equal(v, i);
	}
	assert_true(t.head > (1ULL << 32));
	free(t.cells);
}

/* A producer that died after filling a cell but before moving tail
 * stalls nobody: the next producer helps the hint forward. */
static void test_dead_helpers(void **state)
{
	struct tring t;
	uint32_t v;

	(void)state;
	tring_init(&t, 4);
	/* "dead producer": cell 0 full, tail still 0 */
	t.cells[0].v = SHMBUS_CELL(1, 42);
	assert_int_equal(ring_enqueue(&t.r, 43), 0);
	assert_int_equal(t.tail, 2);
	assert_int_equal(ring_dequeue(&t.r, &v), 0);
	assert_int_equal(v, 42);
	assert_int_equal(ring_dequeue(&t.r, &v), 0);
	assert_int_equal(v, 43);
	assert_int_equal(t.head, 2);
	free(t.cells);
}

#define MT_PRODUCERS	4
#define MT_CONSUMERS	4
#define MT_PER_PROD	200000

struct mt {
	struct tring t;
	uint8_t *seen;
	uint64_t received;
	int dup;
	int disorder;
};

static struct mt mt;

static void *mt_producer(void *arg)
{
	uint32_t id = (uint32_t)(uintptr_t)arg;

	for (uint32_t s = 0; s < MT_PER_PROD; s++) {
		uint32_t v = id * MT_PER_PROD + s;

		while (ring_enqueue(&mt.t.r, v) == -ENOBUFS)
			cpu_relax();
	}
	return NULL;
}

/* Value @v received: once, and after the last one of its producer
 * this consumer saw (@last, per producer). */
static void mt_got(uint32_t v, uint32_t *last)
{
	uint32_t p = v / MT_PER_PROD, s = v % MT_PER_PROD;

	if (atomic_xchg_relaxed(&mt.seen[v], 1))
		WRITE_ONCE(mt.dup, 1);
	if (last[p] != UINT32_MAX && s <= last[p])
		WRITE_ONCE(mt.disorder, 1);
	last[p] = s;
	atomic_add_relaxed(&mt.received, 1);
}

static void *mt_consumer(void *arg)
{
	uint32_t last[MT_PRODUCERS];
	uint64_t total = (uint64_t)MT_PRODUCERS * MT_PER_PROD;

	(void)arg;
	memset(last, 0xff, sizeof(last));
	while (READ_ONCE(mt.received) < total) {
		uint32_t v;

		if (ring_dequeue(&mt.t.r, &v)) {
			cpu_relax();
			continue;
		}
		mt_got(v, last);
	}
	return NULL;
}

/* As mt_consumer(), claiming runs of up to RING_RUN_MAX and marking
 * each cell as it takes the message. */
static void *mt_run_consumer(void *arg)
{
	uint32_t last[MT_PRODUCERS];
	uint64_t total = (uint64_t)MT_PRODUCERS * MT_PER_PROD;

	(void)arg;
	memset(last, 0xff, sizeof(last));
	while (READ_ONCE(mt.received) < total) {
		uint32_t refs[RING_RUN_MAX];
		uint64_t from;
		int n = ring_claim(&mt.t.r, refs, RING_RUN_MAX, &from, NULL,
				   NULL);

		if (n <= 0) {
			cpu_relax();
			continue;
		}
		for (int k = 0; k < n; k++) {
			if (!ring_consumed(&mt.t.r, from + k, refs[k])) {
				WRITE_ONCE(mt.dup, 1);	/* nobody takes back */
				continue;
			}
			mt_got(refs[k], last);
		}
	}
	return NULL;
}

static void mt_run(void *(*consumer)(void *))
{
	pthread_t p[MT_PRODUCERS], c[MT_CONSUMERS];
	uint64_t total = (uint64_t)MT_PRODUCERS * MT_PER_PROD;

	memset(&mt, 0, sizeof(mt));
	tring_init(&mt.t, 64);
	mt.seen = calloc(total, 1);
	assert_non_null(mt.seen);
	for (int i = 0; i < MT_CONSUMERS; i++)
		pthread_create(&c[i], NULL, consumer, NULL);
	for (int i = 0; i < MT_PRODUCERS; i++)
		pthread_create(&p[i], NULL, mt_producer, (void *)(uintptr_t)i);
	for (int i = 0; i < MT_PRODUCERS; i++)
		pthread_join(p[i], NULL);
	for (int i = 0; i < MT_CONSUMERS; i++)
		pthread_join(c[i], NULL);
	assert_int_equal(mt.received, total);
	assert_int_equal(mt.dup, 0);
	assert_int_equal(mt.disorder, 0);
	for (uint64_t i = 0; i < total; i++)
		assert_int_equal(mt.seen[i], 1);
	free(mt.seen);
	free(mt.t.cells);
}

static void test_mpmc_threads(void **state)
{
	(void)state;
	mt_run(mt_consumer);
}

static void test_mpmc_threads_runs(void **state)
{
	(void)state;
	mt_run(mt_run_consumer);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_full),
		cmocka_unit_test(test_wraparound),
		cmocka_unit_test(test_dead_helpers),
		cmocka_unit_test(test_cell_map),
		cmocka_unit_test(test_fifo),
		cmocka_unit_test(test_stray_ref),
		cmocka_unit_test(test_claim_runs),
		cmocka_unit_test(test_claim_garbage),
		cmocka_unit_test(test_retire_race),
		cmocka_unit_test(test_head_back_take_at),
		cmocka_unit_test(test_mpmc_threads),
		cmocka_unit_test(test_mpmc_threads_runs),
	};

	return cmocka_run_group_tests_name("ring", tests, NULL, NULL);
}
