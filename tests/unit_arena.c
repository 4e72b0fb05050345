// SPDX-License-Identifier: MIT
/*
 * unit_arena.c - superblock and geometry validation: a fresh arena maps;
 * every kind of damage (magic, version, features, sizes, regions, pools)
 * is refused with its own errno; queue rings and chunk refs are
 * bounds-checked; creation parameters are range-checked; names too.
 */
#include "arena_helpers.h"
#include "proto.h"
#include "ring.h"

static int fd_;
static uint64_t size_;
static uint8_t *mem_;

/* Fresh arena image in a memfd, mapped writable at mem_. */
static int setup(void **state)
{
	struct arena_params p;

	(void)state;
	t_params(&p, 4, 32);
	fd_ = t_arena_fd(&p, &size_);
	mem_ = mmap(NULL, size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
	assert_true(mem_ != MAP_FAILED);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	munmap(mem_, size_);
	close(fd_);
	return 0;
}

static struct shmbus_sb *sb(void)
{
	return (struct shmbus_sb *)mem_;
}

static struct shmbus_pool *pool(unsigned i)
{
	return (struct shmbus_pool *)(mem_ + sb()->pool_off) + i;
}

static int validate(void)
{
	char why[160];

	return arena_validate(mem_, size_, why, sizeof(why));
}

/* Validation through arena_map() too (what every opener runs). */
static int map_result(void)
{
	struct arena a;
	shmbus_print_fn_t old = shmbus_set_print(NULL);
	int err = arena_map(&a, fd_, false);

	shmbus_set_print(old);
	if (!err)
		arena_unmap(&a);
	return err;
}

static void test_fresh_ok(void **state)
{
	struct arena a;

	(void)state;
	assert_int_equal(validate(), 0);
	assert_int_equal(arena_map(&a, fd_, false), 0);
	assert_int_equal(a.max_queues, 8);
	assert_int_equal(a.max_slots, 4);
	assert_int_equal(a.nr_pools, 2);
	assert_int_equal(a.pool[0].nr_chunks, 32);
	assert_int_equal(a.pool[0].payload_max % 64, 0);
	assert_true(a.pool[0].payload_max >= 256);
	arena_unmap(&a);
}

static void test_bad_magic(void **state)
{
	(void)state;
	sb()->magic ^= 1;
	assert_int_equal(validate(), -EBADMSG);
	assert_int_equal(map_result(), -EBADMSG);
}

static void test_bad_version(void **state)
{
	(void)state;
	sb()->version = SHMBUS_LAYOUT_VERSION + 1;
	assert_int_equal(validate(), -EPROTONOSUPPORT);
	assert_int_equal(map_result(), -EPROTONOSUPPORT);
}

static void test_unknown_incompat(void **state)
{
	(void)state;
	sb()->features_incompat = 1ULL << 40;
	assert_int_equal(validate(), -EOPNOTSUPP);
	/* unknown compat bits are fine: that is what compat means */
	sb()->features_incompat = 0;
	sb()->features_compat |= 1ULL << 40;
	assert_int_equal(validate(), 0);
}

static void test_bad_sizes(void **state)
{
	(void)state;
	sb()->queue_size += 64;
	assert_int_equal(validate(), -EUCLEAN);
	sb()->queue_size -= 64;
	sb()->arena_size = size_ + 4096;
	assert_int_equal(validate(), -EUCLEAN);
	assert_int_equal(map_result(), -EUCLEAN);
	sb()->arena_size = size_;
	sb()->max_queues = 0;
	assert_int_equal(validate(), -EUCLEAN);
	sb()->max_queues = SHMBUS_MAX_QUEUES + 1;
	assert_int_equal(validate(), -EUCLEAN);
	sb()->max_queues = 8;
	sb()->nr_pools = SHMBUS_MAX_POOLS + 1;
	assert_int_equal(validate(), -EUCLEAN);
	sb()->nr_pools = 2;
	sb()->mode = 01000;
	assert_int_equal(validate(), -EUCLEAN);
	sb()->mode = 0600;
	sb()->name[0] = '\0';
	assert_int_equal(validate(), -EUCLEAN);
	sb()->name[0] = 'u';
	assert_int_equal(validate(), 0);
}

static void test_bad_regions(void **state)
{
	uint64_t v;

	(void)state;
	/* overlapping: slots start inside the queue directory */
	v = sb()->slot_off;
	sb()->slot_off = sb()->qdir_off + 64;
	assert_int_equal(validate(), -EUCLEAN);
	sb()->slot_off = v;
	/* misaligned */
	v = sb()->ring_off;
	sb()->ring_off += 8;
	assert_int_equal(validate(), -EUCLEAN);
	sb()->ring_off = v;
	/* past the end, with an overflowing length */
	v = sb()->chunk_bytes;
	sb()->chunk_bytes = UINT64_MAX - 100;
	assert_int_equal(validate(), -EUCLEAN);
	sb()->chunk_bytes = v;
	/* ring area too big for the space before the chunks */
	sb()->ring_units += 1000000;
	assert_int_equal(validate(), -EUCLEAN);
	sb()->ring_units -= 1000000;
	assert_int_equal(validate(), 0);
}

static void test_bad_pools(void **state)
{
	uint32_t v;
	uint64_t o;

	(void)state;
	v = pool(0)->chunk_size;
	pool(0)->chunk_size = v + 8;		/* not a cache-line multiple */
	assert_int_equal(validate(), -EUCLEAN);
	pool(0)->chunk_size = v;
	pool(0)->payload_max += 64;		/* inconsistent */
	assert_int_equal(validate(), -EUCLEAN);
	pool(0)->payload_max -= 64;
	v = pool(1)->nr_chunks;
	pool(1)->nr_chunks = v * 1000;		/* runs past the chunk area */
	assert_int_equal(validate(), -EUCLEAN);
	pool(1)->nr_chunks = v;
	o = pool(1)->base_off;
	pool(1)->base_off = pool(0)->base_off;	/* overlaps pool 0 */
	assert_int_equal(validate(), -EUCLEAN);
	pool(1)->base_off = o;
	pool(0)->cache_max = SHMBUS_SLOT_CACHE + 1;
	assert_int_equal(validate(), -EUCLEAN);
	pool(0)->cache_max = 0;
	assert_int_equal(validate(), 0);
}

static void test_too_small(void **state)
{
	char why[64];

	(void)state;
	assert_int_equal(arena_validate(mem_, 100, why, sizeof(why)), -EBADMSG);
}

/* Queue descriptors are daemon-written but still checked by readers. */
static void test_queue_ring_bounds(void **state)
{
	struct arena a;
	struct ring r;
	struct shmbus_queue *q;

	(void)state;
	assert_int_equal(arena_map(&a, fd_, false), 0);
	q = &a.queues[0];
	q->ring_cap = 8;
	q->ring_off = a.ring_off;
	assert_int_equal(arena_queue_ring(&a, q, &r), 0);
	assert_int_equal(r.mask, 7);
	q->ring_cap = 6;				/* not a power of two */
	assert_int_equal(arena_queue_ring(&a, q, &r), -EUCLEAN);
	q->ring_cap = 1;
	assert_int_equal(arena_queue_ring(&a, q, &r), -EUCLEAN);
	q->ring_cap = 8;
	q->ring_off = a.ring_off - 64;			/* before the area */
	assert_int_equal(arena_queue_ring(&a, q, &r), -EUCLEAN);
	q->ring_off = a.ring_off + a.ring_units * 64 - 32;	/* runs past */
	assert_int_equal(arena_queue_ring(&a, q, &r), -EUCLEAN);
	q->ring_off = a.ring_off + 8;			/* misaligned */
	assert_int_equal(arena_queue_ring(&a, q, &r), -EUCLEAN);
	arena_unmap(&a);
}

static void test_params(void **state)
{
	struct arena_params p;
	char why[128];

	(void)state;
	t_params(&p, 4, 32);
	p.pools[1].payload = 100;		/* not increasing */
	assert_int_equal(arena_params_check(&p, why, sizeof(why)), -EINVAL);
	t_params(&p, 4, 32);
	p.pools[0].count = 0;
	assert_int_equal(arena_params_check(&p, why, sizeof(why)), -EINVAL);
	t_params(&p, 4, 32);
	p.mode = 01777;
	assert_int_equal(arena_params_check(&p, why, sizeof(why)), -EINVAL);
	t_params(&p, 4, 32);
	p.max_slots = SHMBUS_MAX_SLOTS + 1;
	assert_int_equal(arena_params_check(&p, why, sizeof(why)), -EINVAL);
	/* zeros become defaults */
	memset(&p, 0, sizeof(p));
	strcpy(p.name, "x");
	assert_int_equal(arena_params_check(&p, why, sizeof(why)), 0);
	assert_int_equal(p.mode, 0600);
	assert_int_equal(p.nr_pools, 3);
	assert_int_equal(p.max_queues, ARENA_DEF_QUEUES);
}

static void test_names(void **state)
{
	char n[SHMBUS_NAME_MAX];

	(void)state;
	assert_int_equal(proto_name_set(n, "orders.created"), 0);
	assert_int_equal(proto_name_set(n, "a-b_c.9"), 0);
	assert_int_equal(proto_name_set(n, ""), -EINVAL);
	assert_int_equal(proto_name_set(n, ".hidden"), -EINVAL);
	assert_int_equal(proto_name_set(n, "a/b"), -EINVAL);
	assert_int_equal(proto_name_set(n, "sp ace"), -EINVAL);
	assert_int_equal(proto_name_set(n, NULL), -EINVAL);
	memset(n, 'a', sizeof(n));
	n[63] = '\0';
	assert_int_equal(proto_name_valid(n), 0);	/* 63 chars */
	n[63] = 'a';
	assert_int_equal(proto_name_valid(n), -EINVAL);	/* no NUL */
	memset(n, 0, sizeof(n));
	n[0] = 'a';
	n[5] = 'x';					/* junk after NUL */
	assert_int_equal(proto_name_valid(n), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fresh_ok, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_magic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_version, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_incompat, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_sizes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_regions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_pools, setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_small, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_ring_bounds, setup, teardown),
		cmocka_unit_test(test_params),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests_name("arena", tests, NULL, NULL);
}
