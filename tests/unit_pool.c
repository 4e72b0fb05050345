// SPDX-License-Identifier: MIT
/*
 * unit_pool.c - chunk pools: exhaustion, per-slot caches, size classes,
 * corrupt links and caches rejected, reclaim of a dead slot's chunks, and
 * a multi-threaded alloc/free run that never hands out a chunk twice.
 */
#include <pthread.h>

#include "arena_helpers.h"
#include "pool.h"

#define LOANED_BY(slot)	((SHMBUS_CHUNK_LOANED << 16) | (slot))

static uint32_t free_total(const struct arena *a, unsigned pi)
{
	return (uint32_t)READ_ONCE(a->pool[pi].desc->free_count);
}

/* Without a cache: exactly nr_chunks allocations, then -ENOMEM. */
static void test_exhaustion_global(void **state)
{
	struct arena_params p;
	struct arena a;
	uint32_t refs[64], ref;

	(void)state;
	t_params(&p, 4, 64);
	t_arena_map(&a, &p);
	for (int i = 0; i < 64; i++) {
		assert_int_equal(pool_alloc(&a, NULL, 0, LOANED_BY(0), &refs[i]), 0);
		assert_int_equal(SHMBUS_REF_POOL(refs[i]), 0);
		assert_non_null(chunk_at(&a, refs[i]));
		for (int j = 0; j < i; j++)
			assert_int_not_equal(refs[i], refs[j]);
	}
	assert_int_equal(pool_alloc(&a, NULL, 0, LOANED_BY(0), &ref), -ENOMEM);
	assert_int_equal(free_total(&a, 0), 0);
	for (int i = 0; i < 64; i++)
		pool_free(&a, NULL, refs[i]);
	assert_int_equal(free_total(&a, 0), 64);
	assert_int_equal(pool_alloc(&a, NULL, 0, LOANED_BY(0), &ref), 0);
	t_arena_unmap(&a);
}

/* With a slot cache: every chunk is still reachable exactly once; a
 * drained cache returns its chunks to the shared list. */
static void test_cache_roundtrip(void **state)
{
	struct arena_params p;
	struct arena a;
	struct shmbus_slot *s;
	uint32_t refs[256], ref;
	uint8_t seen[256] = { 0 };

	(void)state;
	t_params(&p, 2, 256);	/* cache_max = 256 / 8 = 31 */
	t_arena_map(&a, &p);
	assert_true(a.pool[0].cache_max > 0);
	s = t_slot(&a, 0);
	for (int i = 0; i < 256; i++) {
		assert_int_equal(pool_alloc(&a, s, 0, LOANED_BY(0), &refs[i]), 0);
		assert_int_equal(seen[SHMBUS_REF_IDX(refs[i])], 0);
		seen[SHMBUS_REF_IDX(refs[i])] = 1;
	}
	assert_int_equal(pool_alloc(&a, s, 0, LOANED_BY(0), &ref), -ENOMEM);
	for (int i = 0; i < 256; i++)
		pool_free(&a, s, refs[i]);
	assert_true(s->cache[0].count <= a.pool[0].cache_max);
	assert_int_equal(free_total(&a, 0) + s->cache[0].count, 256);
	{
		uint32_t cached = s->cache[0].count;

		assert_int_equal(pool_drain_slot(&a, s), cached);
	}
	assert_int_equal(s->cache[0].count, 0);
	assert_int_equal(free_total(&a, 0), 256);
	t_arena_unmap(&a);
}

static void test_size_classes(void **state)
{
	struct arena_params p;
	struct arena a;

	(void)state;
	t_params(&p, 2, 8);
	t_arena_map(&a, &p);
	assert_int_equal(pool_for_size(&a, 0), 0);
	assert_int_equal(pool_for_size(&a, a.pool[0].payload_max), 0);
	assert_int_equal(pool_for_size(&a, a.pool[0].payload_max + 1), 1);
	assert_int_equal(pool_for_size(&a, a.pool[1].payload_max), 1);
	assert_int_equal(pool_for_size(&a, a.pool[1].payload_max + 1), -EMSGSIZE);
	t_arena_unmap(&a);
}

/* A peer that scribbles an out-of-range index into the free list or a
 * cache gets -EUCLEAN from us, never a wild access. */
static void test_corrupt_links(void **state)
{
	struct arena_params p;
	struct arena a;
	struct shmbus_slot *s;
	uint32_t ref;

	(void)state;
	t_params(&p, 2, 16);
	t_arena_map(&a, &p);
	/* head points past the pool */
	a.pool[0].desc->free_head = 1000;
	assert_int_equal(pool_alloc(&a, NULL, 0, LOANED_BY(0), &ref), -EUCLEAN);
	/* a link points past the pool */
	a.pool[0].desc->free_head = 1;
	a.pool[0].links[0] = 0xfffffff0;
	{
		uint32_t got[POOL_MAG_MAX];

		assert_int_equal(pool_pop_global(&a, 0, got), -EUCLEAN);
		/* a magazine listing garbage: the bad entries are dropped,
		 * the count is capped */
		a.pool[0].links[0] = 0;
		((struct pool_mag *)((uint8_t *)chunk_at(&a, SHMBUS_REF(0, 0)) +
				     SHMBUS_CHUNK_HDR))->idx[3] = 9999;
		assert_int_equal(pool_pop_global(&a, 0, got), 15);
		for (int i = 0; i < 15; i++)
			assert_true(got[i] < 16);
		pool_push_global(&a, 0, got, 15);
		((struct pool_mag *)((uint8_t *)chunk_at(&a, got[0]) +
				     SHMBUS_CHUNK_HDR))->n = 1000;
		assert_true(pool_pop_global(&a, 0, got) <= (int)POOL_MAG_MAX);
	}
	t_arena_unmap(&a);
	t_arena_map(&a, &p);
	/* a cache entry points past the pool */
	s = t_slot(&a, 0);
	s->cache[1].count = 1;
	s->cache[1].ref[0] = 77777;
	assert_int_equal(pool_alloc(&a, s, 1, LOANED_BY(0), &ref), -EUCLEAN);
	/* a corrupt cache count is ignored, not trusted */
	s->cache[0].count = 1000;
	assert_int_equal(pool_alloc(&a, s, 0, LOANED_BY(0), &ref), 0);
	assert_true(SHMBUS_REF_IDX(ref) < 16);
	/* freeing a ref outside the pool is refused */
	pool_free(&a, NULL, SHMBUS_REF(0, 99));
	pool_free(&a, NULL, SHMBUS_REF(7, 0));
	/* chunk_at bounds */
	assert_null(chunk_at(&a, SHMBUS_REF(0, 16)));
	assert_null(chunk_at(&a, SHMBUS_REF(2, 0)));
	assert_non_null(chunk_at(&a, SHMBUS_REF(1, 15)));
	t_arena_unmap(&a);
}

/* Chunks LOANED to or HELD by a dead slot come back; others stay. */
static void test_reclaim_owned(void **state)
{
	struct arena_params p;
	struct arena a;
	uint32_t r[4];

	(void)state;
	t_params(&p, 4, 32);
	t_arena_map(&a, &p);
	for (int i = 0; i < 4; i++)
		assert_int_equal(pool_alloc(&a, NULL, 0, LOANED_BY(0), &r[i]), 0);
	chunk_set(chunk_at(&a, r[0]), SHMBUS_CHUNK_LOANED, 3);
	chunk_set(chunk_at(&a, r[1]), SHMBUS_CHUNK_HELD, 3);
	chunk_set(chunk_at(&a, r[2]), SHMBUS_CHUNK_QUEUED, 3);
	chunk_set(chunk_at(&a, r[3]), SHMBUS_CHUNK_HELD, 2);
	assert_int_equal(free_total(&a, 0), 28);
	assert_int_equal(pool_reclaim_owned(&a, 3), 2);
	assert_int_equal(free_total(&a, 0), 30);
	assert_int_equal(SHMBUS_OWNER_STATE(chunk_at(&a, r[0])->owner),
			 SHMBUS_CHUNK_FREE);
	assert_int_equal(SHMBUS_OWNER_STATE(chunk_at(&a, r[2])->owner),
			 SHMBUS_CHUNK_QUEUED);
	assert_int_equal(pool_reclaim_owned(&a, 3), 0);
	t_arena_unmap(&a);
}

#define MT_THREADS	4
#define MT_ROUNDS	200000

static struct arena mt_arena;
static uint8_t *mt_owner;	/* per chunk: 0 free, 1 taken */
static int mt_bad;

static void *mt_worker(void *arg)
{
	struct shmbus_slot *s = &mt_arena.slots[(uintptr_t)arg];
	uint32_t held[8];
	unsigned n = 0;

	for (int i = 0; i < MT_ROUNDS; i++) {
		if (n < 8 && (i % 3 != 2 || n == 0)) {
			uint32_t ref;

			if (pool_alloc(&mt_arena, s, 0, LOANED_BY(0), &ref))
				continue;
			if (atomic_xchg(&mt_owner[SHMBUS_REF_IDX(ref)], 1))
				WRITE_ONCE(mt_bad, 1);
			held[n++] = ref;
		} else {
			uint32_t ref = held[--n];

			smp_store_release(&mt_owner[SHMBUS_REF_IDX(ref)], 0);
			pool_free(&mt_arena, s, ref);
		}
	}
	while (n) {
		uint32_t ref = held[--n];

		smp_store_release(&mt_owner[SHMBUS_REF_IDX(ref)], 0);
		pool_free(&mt_arena, s, ref);
	}
	return NULL;
}

static void test_mt_alloc_free(void **state)
{
	struct arena_params p;
	pthread_t th[MT_THREADS];

	(void)state;
	t_params(&p, MT_THREADS, 64);	/* small: the shared list is hot */
	t_arena_map(&mt_arena, &p);
	mt_owner = calloc(64, 1);
	mt_bad = 0;
	for (uintptr_t i = 0; i < MT_THREADS; i++) {
		t_slot(&mt_arena, i);
		pthread_create(&th[i], NULL, mt_worker, (void *)i);
	}
	for (int i = 0; i < MT_THREADS; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(mt_bad, 0);
	for (uint32_t i = 0; i < MT_THREADS; i++)
		pool_drain_slot(&mt_arena, &mt_arena.slots[i]);
	assert_int_equal(free_total(&mt_arena, 0), 64);
	free(mt_owner);
	t_arena_unmap(&mt_arena);
}

/* A pool that may grow: laid out for its most, only its count on the
 * free list; pool_grow() puts the next chunks on it, each once, while the
 * first ones are out; a pool of growth 1 is as before. */
static void test_grow(void **state)
{
	static uint32_t refs[256];
	struct arena_params p;
	struct arena a;
	uint8_t seen[256] = { 0 };
	uint32_t ref;

	(void)state;
	t_params(&p, 4, 64);
	p.grow = 4;
	t_arena_map(&a, &p);
	assert_int_equal(a.pool[0].nr_chunks, 256);	/* a member's bound */
	assert_int_equal(a.pool[0].desc->nr_chunks, 256);
	assert_int_equal(a.pool[0].desc->nr_live, 64);
	assert_true(a.sb->features_incompat & SHMBUS_FEAT_INCOMPAT_GROW);
	assert_int_equal(free_total(&a, 0), 64);
	for (int i = 0; i < 64; i++)
		assert_int_equal(pool_alloc(&a, NULL, 0, LOANED_BY(0),
					    &refs[i]), 0);
	assert_int_equal(pool_alloc(&a, NULL, 0, LOANED_BY(0), &ref), -ENOMEM);
	/* grows while every chunk it had is out */
	pool_grow(&a, 0, 64, 100);
	pool_grow(&a, 0, 100, 256);
	assert_int_equal(free_total(&a, 0), 192);
	for (int i = 64; i < 256; i++)
		assert_int_equal(pool_alloc(&a, NULL, 0, LOANED_BY(0),
					    &refs[i]), 0);
	assert_int_equal(pool_alloc(&a, NULL, 0, LOANED_BY(0), &ref), -ENOMEM);
	for (int i = 0; i < 256; i++) {
		uint32_t x = SHMBUS_REF_IDX(refs[i]);

		assert_int_equal(SHMBUS_REF_POOL(refs[i]), 0);
		assert_true(x < 256);
		assert_int_equal(seen[x], 0);
		seen[x] = 1;
		/* the first 64 come from what it had, the rest are new */
		assert_true(i < 64 ? x < 64 : x >= 64);
	}
	for (int i = 0; i < 256; i++)
		pool_free(&a, NULL, refs[i]);
	assert_int_equal(free_total(&a, 0), 256);
	t_arena_unmap(&a);

	t_params(&p, 4, 64);
	p.grow = 1;
	t_arena_map(&a, &p);
	assert_int_equal(a.pool[0].nr_chunks, 64);
	assert_int_equal(a.pool[0].desc->nr_live, 64);
	assert_false(a.sb->features_incompat & SHMBUS_FEAT_INCOMPAT_GROW);
	t_arena_unmap(&a);
}

/* pool_grow() while threads with caches allocate and free: no chunk is
 * ever held twice, and once they stop every chunk of the grown pool is
 * on the shared list exactly once. */
#define GROW_THREADS	4
#define GROW_MAX	4096

static struct arena grow_arena;
static uint8_t grow_held[GROW_MAX];
static int grow_bad, grow_stop;

static void *grow_worker(void *arg)
{
	struct shmbus_slot *s = &grow_arena.slots[(uintptr_t)arg];
	uint32_t mine[16];
	unsigned n = 0;

	for (long i = 0; !READ_ONCE(grow_stop) || n; i++) {
		if (!READ_ONCE(grow_stop) && n < 16 && (i % 3 != 2 || !n)) {
			uint32_t ref;

			if (pool_alloc(&grow_arena, s, 0, LOANED_BY(0), &ref))
				continue;
			if (SHMBUS_REF_IDX(ref) >= GROW_MAX ||
			    atomic_xchg(&grow_held[SHMBUS_REF_IDX(ref)], 1))
				WRITE_ONCE(grow_bad, 1);
			mine[n++] = ref;
		} else if (n) {
			uint32_t ref = mine[--n];

			smp_store_release(&grow_held[SHMBUS_REF_IDX(ref)], 0);
			pool_free(&grow_arena, s, ref);
		}
	}
	return NULL;
}

static void test_grow_race(void **state)
{
	static uint8_t seen[GROW_MAX];
	struct arena_params p;
	pthread_t th[GROW_THREADS];
	uint32_t idx[POOL_MAG_MAX], total;
	int k;

	(void)state;
	for (int round = 0; round < t_scaled(50); round++) {
		t_params(&p, GROW_THREADS, 64);
		p.grow = GROW_MAX / 64;
		t_arena_map(&grow_arena, &p);
		assert_int_equal(grow_arena.pool[0].nr_chunks, GROW_MAX);
		memset(grow_held, 0, sizeof(grow_held));
		grow_bad = grow_stop = 0;
		for (uintptr_t i = 0; i < GROW_THREADS; i++) {
			t_slot(&grow_arena, (uint32_t)i);
			assert_int_equal(pthread_create(&th[i], NULL,
							grow_worker,
							(void *)i), 0);
		}
		for (uint32_t n = 64; n < GROW_MAX; n *= 2) {
			usleep(2000);
			pool_grow(&grow_arena, 0, n, n * 2);
		}
		usleep(20000);
		WRITE_ONCE(grow_stop, 1);
		for (int i = 0; i < GROW_THREADS; i++)
			pthread_join(th[i], NULL);
		assert_int_equal(grow_bad, 0);
		for (uint32_t i = 0; i < GROW_THREADS; i++)
			pool_drain_slot(&grow_arena, &grow_arena.slots[i]);
		assert_int_equal(READ_ONCE(grow_arena.pool[0].desc->free_count),
				 GROW_MAX);
		memset(seen, 0, sizeof(seen));
		total = 0;
		while ((k = pool_pop_global(&grow_arena, 0, idx)) > 0)
			for (int j = 0; j < k; j++) {
				assert_true(idx[j] < GROW_MAX);
				assert_int_equal(seen[idx[j]]++, 0);
				total++;
			}
		assert_int_equal(k, 0);
		assert_int_equal(total, GROW_MAX);
		t_arena_unmap(&grow_arena);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exhaustion_global),
		cmocka_unit_test(test_cache_roundtrip),
		cmocka_unit_test(test_size_classes),
		cmocka_unit_test(test_corrupt_links),
		cmocka_unit_test(test_reclaim_owned),
		cmocka_unit_test(test_mt_alloc_free),
		cmocka_unit_test(test_grow),
		cmocka_unit_test(test_grow_race),
	};

	return cmocka_run_group_tests_name("pool", tests, NULL, NULL);
}
