// SPDX-License-Identifier: MIT
/*
 * unit_defer.c - the daemon's deferred free (defer.c) over a real arena:
 * a callback runs only once every attached slot has left the read-side
 * section it was in when the grace period started; sections that begin
 * later, and slots the daemon does not count as attached, do not hold it
 * up; callbacks run in order, may defer again, and a torn-down bus hands
 * every pending one back with gp_over false.
 */
#include "arena_helpers.h"
#include "epoch.h"
#include "shmbusd.h"

struct item {
	struct defer_head head;
	int id;
};

static int ran[16], nran;
static int dropped;

static void record(struct dbus *b, struct defer_head *h, bool gp_over)
{
	struct item *it = container_of(h, struct item, head);

	(void)b;
	if (gp_over)
		ran[nran++] = it->id;
	else
		dropped++;
}

static struct dbus *bus_new(void)
{
	struct arena_params p;
	struct dbus *b = calloc(1, sizeof(*b));

	assert_non_null(b);
	t_params(&p, 4, 64);
	t_arena_map(&b->arena, &p);
	b->slots = calloc(b->arena.max_slots, sizeof(*b->slots));
	assert_non_null(b->slots);
	b->deferred_tail = &b->deferred;
	nran = dropped = 0;
	return b;
}

static void bus_del(struct dbus *b)
{
	defer_drop(b);
	t_arena_unmap(&b->arena);
	free(b->slots);
	free(b);
}

/* Slot @i attached (the daemon's record) and active in the arena. */
static struct shmbus_slot *attach(struct dbus *b, uint32_t i)
{
	b->slots[i].conn_id = 1 + i;
	return t_slot(&b->arena, i);
}

static void test_idle_bus_runs_at_once(void **state)
{
	struct dbus *b = bus_new();
	struct item a = { .id = 1 };

	(void)state;
	defer(b, &a.head, record);
	assert_false(defer_tick(b, 0));
	assert_int_equal(nran, 1);
	assert_null(b->deferred);
	bus_del(b);
}

static void test_reader_holds_grace_period(void **state)
{
	struct dbus *b = bus_new();
	struct shmbus_slot *s = attach(b, 2);
	struct item a = { .id = 1 };

	(void)state;
	epoch_enter(&b->arena, s);		/* before the grace period */
	defer(b, &a.head, record);
	for (int i = 0; i < 3; i++)
		assert_true(defer_tick(b, 0));
	assert_int_equal(nran, 0);
	epoch_exit(s);
	assert_false(defer_tick(b, 0));
	assert_int_equal(nran, 1);
	bus_del(b);
}

static void test_later_reader_does_not_hold(void **state)
{
	struct dbus *b = bus_new();
	struct shmbus_slot *s = attach(b, 0);
	struct item a = { .id = 1 };

	(void)state;
	defer(b, &a.head, record);
	epoch_enter(&b->arena, s);		/* sees the new epoch */
	assert_false(defer_tick(b, 0));
	assert_int_equal(nran, 1);
	epoch_exit(s);
	bus_del(b);
}

static void test_detached_slot_does_not_hold(void **state)
{
	struct dbus *b = bus_new();
	struct shmbus_slot *s = attach(b, 1);
	struct item a = { .id = 1 };

	(void)state;
	epoch_enter(&b->arena, s);
	b->slots[1].conn_id = 0;	/* its process died inside a section */
	defer(b, &a.head, record);
	assert_false(defer_tick(b, 0));
	assert_int_equal(nran, 1);
	bus_del(b);
}

static void test_order_and_partial(void **state)
{
	struct dbus *b = bus_new();
	struct shmbus_slot *s = attach(b, 3);
	struct item it[4];

	(void)state;
	for (int i = 0; i < 2; i++) {
		it[i].id = i;
		defer(b, &it[i].head, record);
	}
	epoch_enter(&b->arena, s);	/* holds only what comes next */
	for (int i = 2; i < 4; i++) {
		it[i].id = i;
		defer(b, &it[i].head, record);
	}
	assert_true(defer_tick(b, 0));
	assert_int_equal(nran, 2);
	assert_int_equal(ran[0], 0);
	assert_int_equal(ran[1], 1);
	epoch_exit(s);
	assert_false(defer_tick(b, 0));
	assert_int_equal(nran, 4);
	assert_int_equal(ran[2], 2);
	assert_int_equal(ran[3], 3);
	bus_del(b);
}

static struct item again = { .id = 7 };

static void defer_again(struct dbus *b, struct defer_head *h, bool gp_over)
{
	record(b, h, gp_over);
	if (gp_over)
		defer(b, &again.head, record);
}

static void test_callback_defers_again(void **state)
{
	struct dbus *b = bus_new();
	struct item a = { .id = 1 };
	struct item z = { .id = 2 };

	(void)state;
	defer(b, &a.head, defer_again);
	defer(b, &z.head, record);
	assert_false(defer_tick(b, 0));	/* idle: the new one ran too */
	assert_int_equal(nran, 3);
	assert_int_equal(ran[0], 1);
	assert_int_equal(ran[1], 2);
	assert_int_equal(ran[2], 7);
	defer(b, &a.head, record);	/* the list's tail is sound */
	assert_false(defer_tick(b, 0));
	assert_int_equal(nran, 4);
	bus_del(b);
}

static void test_drop_hands_back(void **state)
{
	struct dbus *b = bus_new();
	struct shmbus_slot *s = attach(b, 0);
	struct item it[3];

	(void)state;
	epoch_enter(&b->arena, s);
	for (int i = 0; i < 3; i++) {
		it[i].id = i;
		defer(b, &it[i].head, record);
	}
	defer_drop(b);
	assert_int_equal(dropped, 3);
	assert_int_equal(nran, 0);
	assert_null(b->deferred);
	epoch_exit(s);
	defer(b, &it[0].head, record);	/* usable again */
	assert_false(defer_tick(b, 0));
	assert_int_equal(nran, 1);
	bus_del(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_idle_bus_runs_at_once),
		cmocka_unit_test(test_reader_holds_grace_period),
		cmocka_unit_test(test_later_reader_does_not_hold),
		cmocka_unit_test(test_detached_slot_does_not_hold),
		cmocka_unit_test(test_order_and_partial),
		cmocka_unit_test(test_callback_defers_again),
		cmocka_unit_test(test_drop_hands_back),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
