// SPDX-License-Identifier: MIT
/*
 * unit_lane.c - the single-producer lane on its own: room, runs, wrap
 * around, garbage retired, a dead consumer's claim finished, a head
 * scribbled by a peer, and a multi-threaded run (one producer, three
 * competing consumers) that checks every ref arrives exactly once and in
 * the producer's order within each claim and each consumer.
 */
#include <pthread.h>

#include "helpers.h"
#include "lane.h"

struct note {
	uint64_t from;
	uint32_t n, calls;
};

struct tlane {
	struct lane l;
	struct shmbus_cell *cells;
	uint64_t head;
	struct note nt;		/* the last run lane_claim() noted */
};

static void tlane_init(struct tlane *t, uint32_t cap)
{
	memset(&t->nt, 0, sizeof(t->nt));
	t->cells = calloc(cap, sizeof(*t->cells));
	assert_non_null(t->cells);
	t->l.cells = t->cells;
	t->l.head = &t->head;
	t->l.mask = cap - 1;
	lane_init(&t->l);
}

static void note_run(void *ctx, uint64_t from, uint32_t n,
		     const uint32_t *refs)
{
	struct note *nt = ctx;

	(void)refs;
	nt->from = from;
	nt->n = n;
	nt->calls++;
}

/* lane_claim() of up to @max, the run noted in t->nt. */
static int claim(struct tlane *t, uint32_t *refs, uint32_t max, uint64_t *from)
{
	return lane_claim(&t->l, refs, max, from, note_run, &t->nt);
}

/* Publish @n refs from @pos (room checked), returning the next position. */
static uint64_t put(struct tlane *t, uint64_t pos, uint32_t first, uint32_t n)
{
	uint32_t room = 0;

	for (uint32_t i = 0; i < n; i++, pos++) {
		if (!room)
			room = lane_room(&t->l, pos);
		assert_true(room > 0);
		lane_publish(&t->l, pos, first + i);
		room--;
	}
	return pos;
}

/* Empty, runs, full, wrap-around over many laps. */
static void test_runs(void **state)
{
	struct tlane t;
	uint32_t refs[LANE_RUN_MAX], next = 0;
	uint64_t pos = 0, from;

	(void)state;
	tlane_init(&t, 64);
	assert_int_equal(claim(&t, refs, 8, &from), 0);
	assert_false(lane_nonempty(&t.l));
	for (int lap = 0; lap < 100; lap++) {
		pos = put(&t, pos, (uint32_t)pos, 64);
		/* full: no room at the next position */
		assert_int_equal(lane_room(&t.l, pos), 0);
		assert_true(lane_nonempty(&t.l));
		while (next < pos) {
			int n = claim(&t, refs, 13, &from);

			assert_true(n > 0 && n <= 13);
			assert_int_equal(from, next);
			assert_int_equal(t.nt.from, from);
			assert_int_equal(t.nt.n, (uint32_t)n);
			for (int k = 0; k < n; k++)
				assert_int_equal(refs[k], next + k);
			/* the lap's first run claimed, not yet consumed:
			 * still no room */
			if (from == pos - 64)
				assert_int_equal(lane_room(&t.l, pos), 0);
			lane_consumed(&t.l, from, (uint32_t)n);
			next += (uint32_t)n;
		}
		assert_true(lane_room(&t.l, pos) > 0);
		assert_int_equal(claim(&t, refs, 8, &from), 0);
	}
	/* a run stops at the first empty cell, and at most LANE_RUN_MAX */
	pos = put(&t, pos, 7, 3);
	assert_int_equal(claim(&t, refs, 100, &from), 3);
	lane_consumed(&t.l, from, 3);
	pos = put(&t, pos, 0, 40);
	assert_int_equal(claim(&t, refs, 100, &from),
			 LANE_RUN_MAX);
	lane_consumed(&t.l, from, LANE_RUN_MAX);
	free(t.cells);
}

/*
 * Garbage (a sequence no position of the cell can hold): at head it is
 * retired alone, counted by the caller, and the messages behind it come
 * through; at the producer's position it is overwritten.
 */
static void test_garbage(void **state)
{
	struct tlane t;
	uint32_t refs[LANE_RUN_MAX];
	uint64_t pos = 0, from;

	(void)state;
	tlane_init(&t, 16);
	pos = put(&t, pos, 100, 4);
	t.cells[0].v = SHMBUS_CELL(9, 555);		/* position 0 */
	assert_int_equal(claim(&t, refs, 8, &from),
			 -EBADMSG);
	assert_int_equal(claim(&t, refs, 8, &from), 3);
	assert_int_equal(from, 1);
	assert_int_equal(refs[0], 101);
	lane_consumed(&t.l, from, 3);
	/* the producer's next cell scribbled: it is free to fill */
	t.cells[pos & 15].v = SHMBUS_CELL(pos + 7, 1);
	assert_true(lane_room(&t.l, pos) > 0);
	pos = put(&t, pos, 200, 1);
	assert_int_equal(claim(&t, refs, 8, &from), 1);
	assert_int_equal(refs[0], 200);
	lane_consumed(&t.l, from, 1);
	free(t.cells);
}

/*
 * A head a peer moved ahead of the cells: the lane looks empty, nothing
 * outside it is touched, no loop runs away. One moved back behind cells
 * consumed (here: three positions before 0, a lap back) is passed by the
 * next claim, as by the queue ring's consumers, and the messages come
 * through.
 */
static void test_scribbled_head(void **state)
{
	struct tlane t;
	uint32_t refs[LANE_RUN_MAX];
	uint64_t pos = 0, from;

	(void)state;
	tlane_init(&t, 16);
	pos = put(&t, pos, 0, 10);
	t.head = 1000003;
	assert_int_equal(claim(&t, refs, 8, &from), 0);
	t.head = UINT64_MAX - 2;
	assert_int_equal(claim(&t, refs, 32, &from), 10);
	assert_int_equal(from, 0);
	for (int k = 0; k < 10; k++)
		assert_int_equal(refs[k], k);
	lane_consumed(&t.l, from, 10);
	free(t.cells);
}

/*
 * A consumer that died after its claim and before giving the cells back:
 * the producer finds no room; lane_finish() on the run it noted returns
 * exactly its refs and gives the cells back; on a claim already given
 * back, or a run head has not reached, it finds nothing.
 */
static void test_finish_dead_claim(void **state)
{
	struct tlane t;
	uint32_t refs[LANE_RUN_MAX], got[LANE_RUN_MAX];
	uint64_t pos = 0, from;

	(void)state;
	tlane_init(&t, 8);
	pos = put(&t, pos, 40, 8);
	assert_int_equal(claim(&t, refs, 5, &from), 5);
	/* ... and the consumer dies here */
	assert_int_equal(lane_room(&t.l, pos), 0);
	assert_int_equal(lane_finish(&t.l, t.nt.from, t.nt.n, got), 5);
	for (int k = 0; k < 5; k++)
		assert_int_equal(got[k], 40 + k);
	assert_int_equal(lane_room(&t.l, pos), 5);
	/* finished already: nothing more */
	assert_int_equal(lane_finish(&t.l, t.nt.from, t.nt.n, got), 0);
	/* positions head has not passed are nobody's claim yet */
	assert_int_equal(lane_finish(&t.l, 5, 3, got), 0);
	assert_int_equal(claim(&t, refs, 8, &from), 3);
	assert_int_equal(refs[0], 45);
	lane_consumed(&t.l, from, 3);
	free(t.cells);
}

#define MT_N		2000000u
#define MT_CONS		3

struct mt {
	struct tlane t;
	uint8_t *seen;
	uint32_t done;
	uint64_t claims[MT_CONS];
	int bad;
};

struct mt_arg {
	struct mt *m;
	int id;
};

static void *mt_producer(void *p)
{
	struct mt *m = p;
	uint32_t room = 0;

	for (uint64_t pos = 0; pos < MT_N; pos++) {
		while (!room) {
			room = lane_room(&m->t.l, pos);
			if (!room)
				cpu_relax();
		}
		lane_publish(&m->t.l, pos, (uint32_t)pos);
		room--;
	}
	return NULL;
}

static void *mt_consumer(void *p)
{
	struct mt_arg *a = p;
	struct mt *m = a->m;
	struct note nt = { 0 };		/* this thread's */
	uint32_t refs[LANE_RUN_MAX];
	int64_t last = -1;
	uint64_t from;

	while (READ_ONCE(m->done) < MT_N) {
		int n = lane_claim(&m->t.l, refs, 8, &from, note_run, &nt);

		if (n <= 0) {
			if (n < 0)
				WRITE_ONCE(m->bad, 1);
			cpu_relax();
			continue;
		}
		m->claims[a->id]++;
		for (int k = 0; k < n; k++) {
			/* in the producer's order, and each once */
			if ((int64_t)refs[k] <= last || refs[k] != from + k ||
			    m->seen[refs[k]]++)
				WRITE_ONCE(m->bad, 1);
			last = refs[k];
		}
		lane_consumed(&m->t.l, from, (uint32_t)n);
		atomic_fetch_add(&m->done, (uint32_t)n);
	}
	return NULL;
}

static void test_mt_exactly_once(void **state)
{
	struct mt *m = calloc(1, sizeof(*m));
	struct mt_arg args[MT_CONS];
	pthread_t prod, cons[MT_CONS];
	uint32_t missing = 0;

	(void)state;
	assert_non_null(m);
	m->seen = calloc(MT_N, 1);
	assert_non_null(m->seen);
	tlane_init(&m->t, 1024);
	for (int i = 0; i < MT_CONS; i++) {
		args[i] = (struct mt_arg){ m, i };
		assert_int_equal(pthread_create(&cons[i], NULL, mt_consumer,
						&args[i]), 0);
	}
	assert_int_equal(pthread_create(&prod, NULL, mt_producer, m), 0);
	pthread_join(prod, NULL);
	for (int i = 0; i < MT_CONS; i++)
		pthread_join(cons[i], NULL);
	for (uint32_t i = 0; i < MT_N; i++)
		missing += m->seen[i] != 1;
	print_message("lane, 1 producer x %d consumers: %u refs, claims %llu "
		      "%llu %llu, missing or duplicated %u\n", MT_CONS, MT_N,
		      (unsigned long long)m->claims[0],
		      (unsigned long long)m->claims[1],
		      (unsigned long long)m->claims[2], missing);
	assert_int_equal(missing, 0);
	assert_int_equal(m->bad, 0);
	free(m->seen);
	free(m->t.cells);
	free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_runs),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_scribbled_head),
		cmocka_unit_test(test_finish_dead_claim),
		cmocka_unit_test(test_mt_exactly_once),
	};

	return cmocka_run_group_tests_name("lane", tests, NULL, NULL);
}
