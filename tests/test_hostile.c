// SPDX-License-Identifier: MIT
/*
 * test_hostile.c - a peer that scribbles on the arena. The test process
 * plays the hostile peer: it finds its own mapping of the bus's arena and
 * writes garbage into ring cells, chunk headers, queue descriptors, free
 * lists and the superblock. Other processes must skip and count a corrupt
 * message (a receive never returns one), get clear errors for damaged
 * structures (-EUCLEAN, or -EBADMSG for an arena that is not one), keep
 * working where the damage allows, and never crash or touch memory
 * outside the arena.
 */
#include <inttypes.h>
#include <signal.h>

#include "shmbus.h"
#include "shmbus/layout.h"
#include "helpers.h"

#define BUS "hostile"

/* Our own mapping of bus @name's arena. */
static uint8_t *arena_of(const char *name)
{
	uint8_t *addr = t_arena_mapping(name);

	assert_non_null(addr);
	return addr;
}

static struct shmbus_sb *sb_of(uint8_t *base)
{
	return (struct shmbus_sb *)base;
}

static struct shmbus_queue *queue_of(uint8_t *base, uint32_t qid)
{
	return (struct shmbus_queue *)(base + sb_of(base)->qdir_off) + qid;
}

static struct shmbus_pool *pool_of(uint8_t *base, unsigned pi)
{
	return (struct shmbus_pool *)(base + sb_of(base)->pool_off) + pi;
}

/* The cell of position @pos in the ring of queue @qid. */
static struct shmbus_cell *cell_at(uint8_t *base, uint32_t qid, uint64_t pos)
{
	struct shmbus_queue *q = queue_of(base, qid);
	struct shmbus_cell *cells = (struct shmbus_cell *)(base + q->ring_off);

	/* cell pos % N, as ring.h */
	return &cells[(uint32_t)pos & (q->ring_cap - 1)];
}

/* The cell holding the message at the head of queue @qid (it is full). */
static struct shmbus_cell *head_cell(uint8_t *base, uint32_t qid)
{
	return cell_at(base, qid, queue_of(base, qid)->head);
}

/* Point the full cell of position @pos at a chunk outside every pool. */
static void garble_cell(uint8_t *base, uint32_t qid, uint64_t pos)
{
	struct shmbus_cell *c = cell_at(base, qid, pos);

	c->v = SHMBUS_CELL(SHMBUS_CELL_SEQ(c->v), SHMBUS_REF(7, 12345));
}

/* Queue @name's count of corrupt messages skipped. */
static uint64_t corrupt_count(struct shmbus *bus, const char *name)
{
	struct shmbus_queue_info qi;

	assert_int_equal(shmbus__queue_info(bus, name, &qi), 0);
	return qi.stat[SHMBUS_STAT_CORRUPT];
}

static uint64_t stat_of(struct shmbus *bus, const char *name, unsigned st)
{
	struct shmbus_queue_info qi;

	assert_int_equal(shmbus__queue_info(bus, name, &qi), 0);
	return qi.stat[st];
}

static struct shmbus_chunk *chunk_of(uint8_t *base, uint32_t ref)
{
	struct shmbus_pool *p = pool_of(base, SHMBUS_REF_POOL(ref));

	return (struct shmbus_chunk *)(base + p->base_off +
				       (uint64_t)SHMBUS_REF_IDX(ref) * p->chunk_size);
}

struct setup {
	struct shmbus *bus;
	struct shmbus_producer *p;
	uint8_t *base;
	uint32_t qid;
};

/* Queue @q declared with @qo, a producer, its arena: what the declare
 * returned (1 created, 0 existed). */
static int setup_with(struct setup *s, const char *q,
		      const struct shmbus_queue_opts *qo)
{
	struct shmbus_queue_info qi;
	int created;

	s->bus = t_open_bus(BUS);
	created = shmbus__queue_declare(s->bus, q, qo);
	assert_true(created >= 0);
	s->p = shmbus_producer__new(s->bus, q, NULL);
	assert_non_null(s->p);
	assert_int_equal(shmbus__queue_info(s->bus, q, &qi), 0);
	s->qid = qi.id;
	s->base = arena_of(BUS);
	return created;
}

static void setup(struct setup *s, const char *q)
{
	setup_with(s, q, NULL);
}

static void teardown(struct setup *s)
{
	shmbus_producer__free(s->p);
	shmbus__close(s->bus);
}

/*
 * In another process: receive @n times from @q (no wait) and report each
 * result as a byte in @out: 'o' ok, 'a' -EAGAIN, 'u' -EUCLEAN, 'b'
 * -EBADMSG (a receive must never return a corrupt message), '?' other;
 * and in @got (64 bytes) the payloads received (strings), each followed
 * by a comma. Exits 0 unless it crashed.
 */
static void receive_in_child(const char *q, int n, char *out, char *got)
{
	pid_t kid = fork();

	if (!kid) {
		struct shmbus *b = t_open_bus(BUS);
		struct shmbus_consumer *c = shmbus_consumer__new(b, q, NULL);
		size_t used = 0;

		CHILD_CHECK(c, "consumer: %s", strerror(errno));
		got[0] = '\0';
		for (int i = 0; i < n; i++) {
			struct shmbus_msg m;
			int err = shmbus_consumer__try_receive(c, &m);

			out[i] = !err ? 'o' : err == -EBADMSG ? 'b' :
				 err == -EAGAIN ? 'a' : err == -EUCLEAN ? 'u' : '?';
			if (err)
				continue;
			CHILD_CHECK(used + m.len + 2 <= 64, "payloads");
			memcpy(got + used, m.data, m.len);
			used += m.len;
			got[used++] = ',';
			got[used] = '\0';
			shmbus_consumer__release(c, &m);
		}
		shmbus_consumer__free(c);
		shmbus__close(b);
		_exit(0);
	}
	assert_int_equal(t_wait(kid, 10000), 0);
}

/* A ring cell pointing outside every pool: skipped and counted; the
 * message behind it comes through. */
static void test_bad_ref_in_ring(void **state)
{
	char *res = t_shared(8), *got = t_shared(64);
	struct setup s;

	(void)state;
	setup(&s, "badref");
	assert_int_equal(shmbus_producer__publish(s.p, "one", 3, NULL), 0);
	assert_int_equal(shmbus_producer__publish(s.p, "two", 3, NULL), 0);
	garble_cell(s.base, s.qid, queue_of(s.base, s.qid)->head);
	receive_in_child("badref", 3, res, got);
	assert_memory_equal(res, "oaa", 3);
	assert_string_equal(got, "two,");
	assert_int_equal(corrupt_count(s.bus, "badref"), 1);
	teardown(&s);
}

/*
 * A large message is taken with the next cell's chunk asked for ahead
 * (consumer.c, payload_prefetch()). Behind it, a cell naming a pool past
 * the pool table, an index one past its pool, or a real chunk that is no
 * message of this queue must change nothing but the corrupt count: the
 * large message arrives whole, the one behind the bad cell too. A
 * prefetch never faults, so without a sanitizer this shows "no crash"
 * only; under SAN=undefined an address formed from an unchecked pool
 * number is an out-of-bounds index into the pool table, and fails.
 */
static void test_bad_ref_behind_large(void **state)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .msg_size = 4096);
	char *res = t_shared(8);
	struct setup s;

	(void)state;
	for (unsigned k = 0; k < 3; k++) {
		char big[3000], name[32];
		uint64_t h;
		pid_t kid;

		snprintf(name, sizeof(name), "badbig%u", k);
		setup_with(&s, name, &qo);
		for (size_t i = 0; i < sizeof(big); i++)
			big[i] = (char)(i * 7 + k);
		assert_int_equal(shmbus_producer__publish(s.p, big, sizeof(big),
							  NULL), 0);
		assert_int_equal(shmbus_producer__publish(s.p, "gone", 4,
							  NULL), 0);
		assert_int_equal(shmbus_producer__publish(s.p, "two", 3, NULL),
				 0);
		h = queue_of(s.base, s.qid)->head;
		{
			uint32_t np = sb_of(s.base)->nr_pools;
			struct shmbus_cell *c = cell_at(s.base, s.qid, h + 1);
			uint32_t last = pool_of(s.base, np - 1)->nr_chunks - 1;
			uint32_t ref =
				/* past the table of at most 8 pools */
				k == 0 ? SHMBUS_REF(15, 12345) :
				/* one past the last chunk of pool 0 */
				k == 1 ? SHMBUS_REF(0,
					pool_of(s.base, 0)->nr_chunks) :
				/* the last chunk the largest pool may hold:
				 * in range, maybe a hole in the memfd */
				SHMBUS_REF(np - 1, last);

			c->v = SHMBUS_CELL(SHMBUS_CELL_SEQ(c->v), ref);
		}
		kid = fork();
		if (!kid) {
			struct shmbus *b = t_open_bus(BUS);
			struct shmbus_consumer *c =
				shmbus_consumer__new(b, name, NULL);
			struct shmbus_msg m;

			CHILD_CHECK(c, "consumer: %s", strerror(errno));
			CHILD_CHECK(shmbus_consumer__try_receive(c, &m) == 0,
				    "the large message");
			CHILD_CHECK(m.len == sizeof(big) &&
				    !memcmp(m.data, big, sizeof(big)),
				    "the large message, whole");
			shmbus_consumer__release(c, &m);
			for (int i = 0; i < 3; i++) {
				int err = shmbus_consumer__try_receive(c, &m);

				res[i] = !err ? 'o' : err == -EBADMSG ? 'b' :
					 err == -EAGAIN ? 'a' : '?';
				if (!err && (m.len != 3 ||
					     memcmp(m.data, "two", 3)))
					res[i] = 'x';
				if (!err)
					shmbus_consumer__release(c, &m);
			}
			shmbus_consumer__free(c);
			shmbus__close(b);
			_exit(0);
		}
		assert_int_equal(t_wait(kid, 10000), 0);
		/* skipped (outside every pool, or no message of this
		 * queue: not QUEUED), counted; "two" comes through */
		assert_memory_equal(res, "oaa", 3);
		assert_int_equal(corrupt_count(s.bus, name), 1);
		teardown(&s);
	}
}

/* A header whose length runs past its chunk: skipped and counted, never a
 * read past the chunk; the chunk goes back to the pool, and the message
 * behind it comes through. */
static void test_bad_length(void **state)
{
	char *res = t_shared(8), *got = t_shared(64);
	struct setup s;

	(void)state;
	setup(&s, "badlen");
	assert_int_equal(shmbus_producer__publish(s.p, "one", 3, NULL), 0);
	assert_int_equal(shmbus_producer__publish(s.p, "two", 3, NULL), 0);
	chunk_of(s.base, SHMBUS_CELL_REF(head_cell(s.base, s.qid)->v))->len =
		0x7fffffff;
	receive_in_child("badlen", 3, res, got);
	assert_memory_equal(res, "oaa", 3);
	assert_string_equal(got, "two,");
	assert_int_equal(corrupt_count(s.bus, "badlen"), 1);
	/* a length whose 8-byte rounding wraps a 32-bit integer */
	assert_int_equal(shmbus_producer__publish(s.p, "four", 4, NULL), 0);
	chunk_of(s.base, SHMBUS_CELL_REF(head_cell(s.base, s.qid)->v))->len =
		0xffffffff;
	assert_int_equal(shmbus_producer__publish(s.p, "five", 4, NULL), 0);
	receive_in_child("badlen", 2, res, got);
	assert_memory_equal(res, "oa", 2);
	assert_string_equal(got, "five,");
	/* and attributes running past the chunk */
	assert_int_equal(shmbus_producer__publish(s.p, "three", 5, NULL), 0);
	chunk_of(s.base, SHMBUS_CELL_REF(head_cell(s.base, s.qid)->v))->attr_len =
		0xffff;
	receive_in_child("badlen", 2, res, got);
	assert_memory_equal(res, "aa", 2);
	assert_string_equal(got, "");
	assert_int_equal(corrupt_count(s.bus, "badlen"), 3);
	teardown(&s);
}

/*
 * A ring of nothing but garbage: a receive that does not wait skips all of
 * it (each entry counted) and returns -EAGAIN, and delivers a real message
 * behind it; a receive with a timeout waits it out as on an empty queue.
 * A peer writing garbage as fast as the consumer skips it cannot keep a
 * receive past its timeout, nor one that does not wait from returning.
 */
static void test_ring_of_garbage(void **state)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_len = 64);
	SHMBUS_OPTS(shmbus_consumer_opts, spin, .spin_ns = 5000000000LL);
	char *res = t_shared(8), *got = t_shared(64);
	struct shmbus_queue_info qi;
	struct shmbus_consumer *c;
	struct shmbus_queue *q;
	struct shmbus_msg m;
	struct setup s;
	uint64_t before;
	int64_t t0, dt;
	uint32_t cap;
	char body[16], x;
	int ready[2];
	pid_t kid;

	(void)state;
	assert_int_equal(setup_with(&s, "garbage", &qo), 1);
	assert_int_equal(shmbus__queue_info(s.bus, "garbage", &qi), 0);
	q = queue_of(s.base, s.qid);
	cap = qi.capacity;
	assert_true(cap >= 16);

	/* a full ring, all garbage but the last message */
	for (uint32_t i = 0; i < cap; i++) {
		snprintf(body, sizeof(body), "m%u", i);
		assert_int_equal(shmbus_producer__publish(s.p, body,
							  strlen(body), NULL), 0);
	}
	for (uint32_t i = 0; i + 1 < cap; i++)
		garble_cell(s.base, s.qid, q->head + i);
	receive_in_child("garbage", 2, res, got);
	assert_memory_equal(res, "oa", 2);
	snprintf(body, sizeof(body), "m%u,", cap - 1);
	assert_string_equal(got, body);
	assert_int_equal(corrupt_count(s.bus, "garbage"), cap - 1);

	/* all garbage: a timeout runs its course */
	for (uint32_t i = 0; i < cap; i++)
		assert_int_equal(shmbus_producer__publish(s.p, "x", 1, NULL), 0);
	for (uint32_t i = 0; i < cap; i++)
		garble_cell(s.base, s.qid, q->head + i);
	c = shmbus_consumer__new(s.bus, "garbage", NULL);
	assert_non_null(c);
	t0 = t_now_ns();
	assert_int_equal(shmbus_consumer__receive_view(c, &m, 100000000), -ETIMEDOUT);
	dt = t_now_ns() - t0;
	assert_true(dt >= 100000000 && dt < 2000000000);
	assert_int_equal(corrupt_count(s.bus, "garbage"), 2 * cap - 1);

	/* a peer keeps every cell full of garbage for 1.5 s; the consumer
	 * spins (it would sleep through an empty moment otherwise) */
	shmbus_consumer__free(c);
	c = shmbus_consumer__new(s.bus, "garbage", &spin);
	assert_non_null(c);
	assert_int_equal(pipe(ready), 0);
	if (!(kid = fork())) {
		int64_t end = t_now_ns() + 1500000000;
		bool told = false;

		while (t_now_ns() < end) {
			uint64_t h = READ_ONCE(q->head);

			for (uint32_t i = 0; i < cap; i++)
				cell_at(s.base, s.qid, h + i)->v =
					SHMBUS_CELL(h + i + 1, SHMBUS_REF(7, i));
			if (!told)
				told = write(ready[1], "r", 1) == 1;
		}
		_exit(0);
	}
	assert_int_equal(read(ready[0], &x, 1), 1);
	before = corrupt_count(s.bus, "garbage");
	t0 = t_now_ns();
	for (int i = 0; i < 100; i++)
		assert_int_equal(shmbus_consumer__try_receive(c, &m), -EAGAIN);
	assert_int_equal(shmbus_consumer__receive_view(c, &m, 200000000), -ETIMEDOUT);
	dt = t_now_ns() - t0;
	print_message("under a garbage stream: 100 try_receive and a 200 ms "
		      "receive took %.1f ms, %" PRIu64 " entries skipped\n",
		      dt / 1e6, corrupt_count(s.bus, "garbage") - before);
	assert_true(dt >= 200000000 && dt < 1400000000);
	assert_true(corrupt_count(s.bus, "garbage") > before);
	assert_int_equal(t_wait(kid, 10000), 0);
	shmbus_consumer__free(c);
	teardown(&s);
}

/* A peer publishing messages that are expired by the time anyone takes
 * them (TTL 1 ns), as fast as it can: a consumer drops them (counted) and
 * still returns on time, with -EAGAIN or its timeout. */
static void test_stream_of_expired(void **state)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_len = 64);
	SHMBUS_OPTS(shmbus_consumer_opts, spin, .spin_ns = 5000000000LL);
	SHMBUS_OPTS(shmbus_pub_opts, ttl, .ttl_ns = 1, .timeout_ns = 0);
	struct shmbus_queue_info qi;
	struct shmbus_consumer *c;
	struct shmbus *bus;
	struct shmbus_msg m;
	uint64_t before;
	int64_t t0, dt;
	int ready[2];
	char x;
	pid_t kid;

	(void)state;
	bus = t_open_bus(BUS);
	assert_int_equal(shmbus__queue_declare(bus, "expiring", &qo), 1);
	c = shmbus_consumer__new(bus, "expiring", &spin);
	assert_non_null(c);
	assert_int_equal(pipe(ready), 0);
	if (!(kid = fork())) {
		struct shmbus *pb = t_open_bus(BUS);
		struct shmbus_producer *p = shmbus_producer__new(pb, "expiring",
								 NULL);
		int64_t end = t_now_ns() + 1500000000;
		bool told = false;

		if (!p)
			_exit(1);
		while (t_now_ns() < end) {
			for (int i = 0; i < 64; i++)
				shmbus_producer__publish(p, "x", 1, &ttl);
			if (!told)
				told = write(ready[1], "r", 1) == 1;
		}
		shmbus_producer__free(p);
		shmbus__close(pb);
		_exit(0);
	}
	assert_int_equal(read(ready[0], &x, 1), 1);
	assert_int_equal(shmbus__queue_info(bus, "expiring", &qi), 0);
	before = qi.stat[SHMBUS_STAT_EXPIRED];
	t0 = t_now_ns();
	for (int i = 0; i < 100; i++)
		assert_int_equal(shmbus_consumer__try_receive(c, &m), -EAGAIN);
	assert_int_equal(shmbus_consumer__receive_view(c, &m, 200000000),
			 -ETIMEDOUT);
	dt = t_now_ns() - t0;
	assert_int_equal(shmbus__queue_info(bus, "expiring", &qi), 0);
	print_message("under a stream of expired messages: 100 try_receive "
		      "and a 200 ms receive took %.1f ms, %" PRIu64
		      " expired\n", dt / 1e6,
		      qi.stat[SHMBUS_STAT_EXPIRED] - before);
	assert_true(dt >= 200000000 && dt < 1400000000);
	assert_true(qi.stat[SHMBUS_STAT_EXPIRED] > before);
	assert_int_equal(t_wait(kid, 10000), 0);
	shmbus_consumer__free(c);
	shmbus__close(bus);
}

/* A queue descriptor whose ring points outside the ring area, or whose
 * capacity is not a power of two: the daemon rewrites it from its records
 * when the next handle attaches (it never maps a wild ring), and the
 * handles work. */
static void test_bad_ring_offset(void **state)
{
	struct shmbus_consumer *c;
	struct shmbus_producer *p2;
	struct shmbus_queue *q;
	struct shmbus_msg m;
	struct setup s;
	uint64_t saved;

	(void)state;
	setup(&s, "badring");
	q = queue_of(s.base, s.qid);
	saved = q->ring_off;
	q->ring_off = (uint64_t)-4096;
	c = shmbus_consumer__new(s.bus, "badring", NULL);
	assert_non_null(c);
	assert_int_equal(q->ring_off, saved);
	q->ring_cap = 12;	/* not a power of two */
	strcpy(q->name, "x");	/* and another name */
	p2 = shmbus_producer__new(s.bus, "badring", NULL);
	assert_non_null(p2);
	assert_int_equal(q->ring_cap, 1024);
	assert_string_equal(q->name, "badring");
	assert_int_equal(shmbus_producer__publish(p2, "ok", 2, NULL), 0);
	assert_int_equal(shmbus_consumer__try_receive(c, &m), 0);
	assert_memory_equal(m.data, "ok", 2);
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	shmbus_producer__free(p2);
	shmbus_consumer__free(c);
	teardown(&s);
}

/* Garbage in a pool's free list: -EUCLEAN from loans and publishes, no
 * crash, and the producer of another size class is unaffected. */
static void test_bad_free_list(void **state)
{
	SHMBUS_OPTS(shmbus_queue_opts, big, .msg_size = 60000);
	struct setup s;
	struct shmbus_producer *p2;
	struct shmbus_pool *pool;
	uint64_t saved;
	char buf[4000] = { 0 };	/* the 4 KiB class */
	int err;

	(void)state;
	setup(&s, "badlist");
	assert_true(shmbus__queue_declare(s.bus, "bigq", &big) >= 0);
	p2 = shmbus_producer__new(s.bus, "bigq", NULL);
	assert_non_null(p2);
	pool = pool_of(s.base, 1);		/* the 4 KiB class */
	saved = pool->free_head;
	pool->free_head = 0xffffff00ULL;	/* index far past the pool */
	/* drain what the producer cached, then hit the list */
	for (int i = 0; i < 64; i++) {
		err = shmbus_producer__publish(p2, buf, sizeof(buf), NULL);
		if (err)
			break;
	}
	assert_int_equal(err, -EUCLEAN);
	/* the 256-byte class still works */
	assert_int_equal(shmbus_producer__publish(s.p, "ok", 2, NULL), 0);
	pool->free_head = saved;
	shmbus_producer__free(p2);
	teardown(&s);
}

/*
 * The arena's first page (the superblock) scribbled with random bytes
 * after everyone opened: open handles keep their validated copy and work;
 * the daemon rewrites the page from its records when the next client
 * opens the bus (and in its tick), so a new client attaches, publishes
 * and receives again, within a bound, with no daemon restart. A pool
 * descriptor scribbled too is restored the same way.
 */
static void test_bad_superblock(void **state)
{
	uint8_t *saved = malloc(4096);
	struct shmbus_queue_info qi;
	struct shmbus_pool *pool;
	struct setup s;
	uint32_t repairs;
	uint64_t pool0;
	int64_t t0, dt;
	unsigned sent = 0, received = 0;
	pid_t kid;

	(void)state;
	assert_non_null(saved);
	setup(&s, "badsb");
	memcpy(saved, s.base, 4096);
	repairs = sb_of(s.base)->repairs;
	pool = pool_of(s.base, 0);	/* before pool_off is garbage */
	pool0 = pool->base_off;
	srand(11);
	for (int i = 0; i < 4096; i++)
		s.base[i] = (uint8_t)rand();
	pool->base_off = 12345;
	assert_int_equal(shmbus_producer__publish(s.p, "still", 5, NULL), 0);
	sent++;
	t0 = t_now_ns();
	if (!(kid = fork())) {
		struct shmbus *b = shmbus__open(BUS, NULL);
		struct shmbus_consumer *c;
		struct shmbus_producer *p;
		char buf[16];

		CHILD_CHECK(b, "open after the scribble: %s", strerror(errno));
		c = shmbus_consumer__new(b, "badsb", NULL);
		p = shmbus_producer__new(b, "badsb", NULL);
		CHILD_CHECK(c && p, "attach: %s", strerror(errno));
		CHILD_CHECK(shmbus_consumer__receive(c, buf, sizeof(buf),
						     1000000000) == 5 &&
			    !memcmp(buf, "still", 5), "the message before");
		CHILD_CHECK(!shmbus_producer__publish(p, "again", 5, NULL),
			    "publish");
		CHILD_CHECK(shmbus_consumer__receive(c, buf, sizeof(buf),
						     1000000000) == 5 &&
			    !memcmp(buf, "again", 5), "the message after");
		shmbus_producer__free(p);
		shmbus_consumer__free(c);
		shmbus__close(b);
		_exit(0);
	}
	assert_int_equal(t_wait(kid, 10000), 0);
	dt = t_now_ns() - t0;
	sent++;
	received += 2;
	/* what the daemon restored: the constant lines, byte for byte */
	assert_memory_equal(s.base, saved, 256);
	assert_int_equal(pool->base_off, pool0);
	assert_true(sb_of(s.base)->repairs > repairs);
	print_message("superblock scribbled: a new client attached, sent %u "
		      "received %u lost %u in %.1f ms; repairs %u\n", sent,
		      received, sent - received, dt / 1e6,
		      sb_of(s.base)->repairs);
	assert_int_equal(sent - received, 0);
	assert_true(dt < 2000000000);
	/* the daemon served the bus throughout */
	assert_int_equal(shmbus__queue_declare(s.bus, "another", NULL), 1);
	assert_int_equal(shmbus__queue_info(s.bus, "badsb", &qi), 0);
	assert_int_equal(qi.depth, 0);
	free(saved);
	teardown(&s);
}

/* Rewrite a queue's ring geometry, then delete it: the daemon reclaims
 * from its own records and never touches the garbage. */
static void test_delete_scribbled_queue(void **state)
{
	struct setup s;
	struct shmbus_queue *q;

	(void)state;
	setup(&s, "scribbled");
	assert_int_equal(shmbus_producer__publish(s.p, "x", 1, NULL), 0);
	q = queue_of(s.base, s.qid);
	q->ring_off = 1ULL << 46;
	q->ring_cap = 1u << 30;
	q->gen = 0;		/* and pretend it is free */
	assert_int_equal(shmbus__queue_delete(s.bus, "scribbled"), 0);
	/* the daemon is alive and its ring storage bookkeeping intact:
	 * the same name declares again once the grace period is over */
	for (int i = 0; i < 500; i++) {
		int err = shmbus__queue_declare(s.bus, "scribbled", NULL);

		if (err == 1)
			break;
		assert_int_equal(err, -ENOSPC);
		usleep(2000);
	}
	{
		struct shmbus_queue_info qi;

		assert_int_equal(shmbus__queue_info(s.bus, "scribbled", &qi), 0);
		assert_int_equal(qi.capacity, 1024);
	}
	teardown(&s);
}

/* Our own slot claims another consumer's seat, then we detach: the
 * daemon frees the seat its records say we had, so the victim keeps its
 * seat and is still woken. */
static void test_forged_seat(void **state)
{
	SHMBUS_OPTS(shmbus_consumer_opts, block, .spin_ns = -1);
	int64_t *woke = t_shared(sizeof(int64_t));
	struct setup s;
	struct shmbus_consumer *mine;
	struct shmbus_slot *slots;
	int ready[2];
	int64_t sent;
	pid_t kid;
	char x;

	(void)state;
	setup(&s, "seats");
	assert_int_equal(pipe(ready), 0);
	if (!(kid = fork())) {
		struct shmbus *b = t_open_bus(BUS);
		struct shmbus_consumer *c = shmbus_consumer__new(b, "seats", &block);
		uint64_t v;

		CHILD_CHECK(c, "victim consumer");
		CHILD_CHECK(write(ready[1], "r", 1) == 1, "ready");
		/* a lost wake-up shows as waking at the timeout (the
		 * receive's last look would still find the message) */
		CHILD_CHECK(shmbus_consumer__receive(c, &v, sizeof(v),
						     3000000000LL) == sizeof(v),
			    "receive");
		*woke = t_now_ns();
		_exit(0);
	}
	assert_int_equal(read(ready[0], &x, 1), 1);
	mine = shmbus_consumer__new(s.bus, "seats", NULL);
	assert_non_null(mine);
	/* the victim holds seat 0, we hold seat 1: claim seat 0 */
	slots = (struct shmbus_slot *)(s.base + sb_of(s.base)->slot_off);
	for (uint32_t i = 0; i < sb_of(s.base)->max_slots; i++)
		if (slots[i].state == SHMBUS_SLOT_ACTIVE && slots[i].seat == 1 &&
		    slots[i].pid == (uint32_t)getpid())
			slots[i].seat = 0;
	shmbus_consumer__free(mine);
	usleep(200000);		/* the victim is asleep on seat 0 */
	sent = t_now_ns();
	assert_int_equal(shmbus_producer__publish(s.p, &(uint64_t){ 1 }, 8, NULL), 0);
	assert_int_equal(t_wait(kid, 10000), 0);
	print_message("victim woken %.1f ms after the publish\n",
		      (*woke - sent) / 1e6);
	assert_true(*woke - sent < 1000000000LL);
	teardown(&s);
}

/*
 * A consumer scribbles on its own delivery table (lease_hi far past the
 * table, entries naming nothing, free chunks, other queues' messages,
 * all "HELD" and long expired), then dies. The daemon's lease scan and its
 * cleanup of the dead consumer must neither crash nor take what is not
 * the dead consumer's; the honest consumer gets every real message.
 */
static void test_scribbled_lease_table(void **state)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .lease_ns = 50000000);
	struct shmbus_consumer *c;
	struct shmbus_msg m;
	struct setup s;
	int ready[2], got = 0;
	pid_t kid;
	char x;

	(void)state;
	assert_int_equal(setup_with(&s, "leases", &qo), 1);
	for (int i = 0; i < 10; i++)
		assert_int_equal(shmbus_producer__publish(s.p, &i, sizeof(i), NULL), 0);
	assert_int_equal(pipe(ready), 0);
	if (!(kid = fork())) {
		struct shmbus *b = t_open_bus(BUS);
		struct shmbus_consumer *k = shmbus_consumer__new(b, "leases", NULL);
		uint8_t *base = t_arena_mapping(BUS);
		struct shmbus_slot *slots;
		struct shmbus_msg v[2];

		CHILD_CHECK(k && base, "consumer");
		CHILD_CHECK(!shmbus_consumer__try_receive(k, &v[0]), "recv");
		CHILD_CHECK(!shmbus_consumer__try_receive(k, &v[1]), "recv");
		slots = (struct shmbus_slot *)(base + sb_of(base)->slot_off);
		for (uint32_t i = 0; i < sb_of(base)->max_slots; i++) {
			struct shmbus_slot *sl = &slots[i];

			if (sl->state != SHMBUS_SLOT_ACTIVE ||
			    sl->pid != (uint32_t)getpid())
				continue;
			sl->lease_hi = 0xffffffffu;
			for (uint32_t e = 2; e < SHMBUS_LEASE_MAX; e++) {
				sl->lease[e].word = SHMBUS_LEASE_WORD(e, e % 4);
				sl->lease[e].deadline = 0;
				sl->lease[e].ref = e % 3 == 0 ? 0xffffffffu
						 : e % 3 == 1 ? e : (e << 20);
			}
		}
		CHILD_CHECK(write(ready[1], "r", 1) == 1, "ready");
		pause();
		_exit(0);
	}
	assert_int_equal(read(ready[0], &x, 1), 1);
	usleep(150000);		/* a few lease scans over the garbage */
	kill(kid, SIGKILL);
	assert_int_equal(t_wait(kid, 5000), 128 + SIGKILL);
	c = shmbus_consumer__new(s.bus, "leases", NULL);
	assert_non_null(c);
	{
		int seen[10] = { 0 };

		while (shmbus_consumer__receive_view(c, &m, 500000000) == 0) {
			int v = *(const int *)m.data;

			assert_true(v >= 0 && v < 10);
			seen[v]++;
			got++;
			assert_int_equal(shmbus_consumer__ack(c, &m), 0);
		}
		/* every message, the 2 taken ones included; the garbage may
		 * have made the daemon redeliver one of the liar's own
		 * messages twice (at-least-once: its own bus to spoil) */
		for (int i = 0; i < 10; i++)
			assert_true(seen[i] >= 1);
		assert_true(got <= 12);
	}
	/* the daemon is alive */
	assert_true(shmbus__queue_declare(s.bus, "leases.after", NULL) >= 0);
	shmbus_consumer__free(c);
	teardown(&s);
}

/*
 * A topic's fan-out word and array scribbled: publishers bound-check the
 * word and skip entries that are not live subscriptions; nothing crashes,
 * and the daemon's next refresh restores the set.
 */
static void test_scribbled_fanout(void **state)
{
	struct shmbus *bus = t_open_bus(BUS);
	struct shmbus_producer *p;
	struct shmbus_consumer *c, *c2;
	struct shmbus_queue_info qi;
	struct shmbus_queue *q;
	struct shmbus_msg m;
	uint8_t *base;
	uint64_t good;
	int v = 7;

	(void)state;
	assert_int_equal(shmbus__topic_declare(bus, "hostile.topic", NULL), 1);
	c = shmbus_consumer__subscribe(bus, "hostile.topic", NULL);
	assert_non_null(c);
	p = shmbus_producer__new(bus, "hostile.topic", NULL);
	assert_non_null(p);
	assert_int_equal(shmbus__queue_info(bus, "hostile.topic", &qi), 0);
	base = arena_of(BUS);
	q = queue_of(base, qi.id);
	good = q->fanout;
	q->fanout = 0xffffffffffffffffULL;	/* far outside, 65535 entries */
	assert_int_equal(shmbus_producer__publish(p, &v, sizeof(v), NULL), 0);
	q->fanout = (good & ~0xffffULL) | 0xffff;	/* too many entries */
	assert_int_equal(shmbus_producer__publish(p, &v, sizeof(v), NULL), 0);
	q->fanout = good;
	{
		struct shmbus_fanout *fo = (struct shmbus_fanout *)
			(base + sb_of(base)->ring_off + (good >> 16) * 64);
		struct shmbus_fanout saved = fo[0];

		fo[0].qid = 0xffffff;		/* no such queue */
		assert_int_equal(shmbus_producer__publish(p, &v, sizeof(v), NULL), 0);
		fo[0].qid = qi.id;		/* the topic itself */
		fo[0].gen = q->gen;
		assert_int_equal(shmbus_producer__publish(p, &v, sizeof(v), NULL), 0);
		fo[0] = saved;
	}
	/* whatever reached the subscriber (the over-long array still starts
	 * with the real entry) is intact; drain it */
	while (shmbus_consumer__try_receive(c, &m) == 0) {
		assert_int_equal(*(const int *)m.data, 7);
		assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	}
	v = 8;
	assert_int_equal(shmbus_producer__publish(p, &v, sizeof(v), NULL), 0);
	assert_int_equal(shmbus_consumer__try_receive(c, &m), 0);
	assert_int_equal(*(const int *)m.data, 8);
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	/* scribbled again, then a subscribe makes the daemon rewrite it */
	q->fanout = 0;
	c2 = shmbus_consumer__subscribe(bus, "hostile.>", NULL);
	assert_non_null(c2);
	assert_int_equal(shmbus_producer__publish(p, &v, sizeof(v), NULL), 0);
	assert_int_equal(shmbus_consumer__try_receive(c, &m), 0);
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	assert_int_equal(shmbus_consumer__try_receive(c2, &m), 0);
	assert_int_equal(shmbus_consumer__ack(c2, &m), 0);
	shmbus_consumer__free(c2);
	shmbus_consumer__free(c);
	shmbus_producer__free(p);
	shmbus__close(bus);
}

/* Garbage attribute records and a garbage dedup table pointer: clear
 * errors, no crash. */
static void test_scribbled_attrs_and_dedup(void **state)
{
	struct shmbus_attr a = { .key = "k", .value = "v", .value_len = 1 };
	SHMBUS_OPTS(shmbus_pub_opts, po, .attrs = &a, .nr_attrs = 1);
	SHMBUS_OPTS(shmbus_pub_opts, dd, .dedup_id = "x");
	SHMBUS_OPTS(shmbus_queue_opts, qo, .dedup_window_ns = 1000000000);
	struct shmbus_consumer *c;
	struct shmbus_producer *p2;
	struct shmbus_queue *q;
	struct shmbus_msg m;
	struct setup s;
	const void *v;
	size_t vl;
	uint32_t it = 0;

	(void)state;
	setup(&s, "attrs");
	c = shmbus_consumer__new(s.bus, "attrs", NULL);
	assert_non_null(c);
	assert_int_equal(shmbus_producer__publish(s.p, "body", 4, &po), 0);
	/* the attribute's key length now runs past the block */
	{
		struct shmbus_chunk *ch = chunk_of(s.base,
			SHMBUS_CELL_REF(head_cell(s.base, s.qid)->v));

		((uint8_t *)ch)[SHMBUS_CHUNK_HDR + 8] = 200;
	}
	assert_int_equal(shmbus_consumer__try_receive(c, &m), 0);
	assert_int_equal(shmbus_msg__attr(&m, "k", &v, &vl), -EBADMSG);
	assert_int_equal(shmbus_msg__attr_next(&m, &it, NULL, NULL, NULL, NULL),
			 -EBADMSG);
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	shmbus_consumer__free(c);

	/* a dedup table pointing outside the ring area: no dedup */
	assert_int_equal(shmbus__queue_declare(s.bus, "dedup.bad", &qo), 1);
	{
		struct shmbus_queue_info qi;

		assert_int_equal(shmbus__queue_info(s.bus, "dedup.bad", &qi), 0);
		q = queue_of(s.base, qi.id);
	}
	q->dedup_off = 1ULL << 40;
	/* the daemon restores it when the producer attaches: dedup works */
	p2 = shmbus_producer__new(s.bus, "dedup.bad", NULL);
	assert_non_null(p2);
	assert_true(q->dedup_off != 1ULL << 40);
	assert_int_equal(shmbus_producer__publish(p2, "x", 1, &dd), 0);
	assert_int_equal(shmbus_producer__publish(p2, "x", 1, &dd), 0);
	assert_int_equal(stat_of(s.bus, "dedup.bad", SHMBUS_STAT_DUPLICATES), 1);
	shmbus_producer__free(p2);
	teardown(&s);
}

/* Flip a payload byte of the message at ring position @pos of @qid. */
static void scribble_payload(uint8_t *base, uint32_t qid, uint64_t pos)
{
	struct shmbus_chunk *ch = chunk_of(base,
		SHMBUS_CELL_REF(cell_at(base, qid, pos)->v));

	((uint8_t *)ch)[SHMBUS_CHUNK_HDR + 1] ^= 0x20;
}

/*
 * A checksummed queue: a peer flips a payload byte of every fifth message
 * between publish and receive (copy publishes and loans alike). The
 * consumer never receives one of them; each is counted corrupt and
 * lands in the DLQ with reason checksum, as it was found; every other
 * message arrives intact. Without a DLQ the damaged message is dropped,
 * counted. An unchecksummed queue delivers the flipped byte as before.
 */
static void test_checksum(void **state)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .flags = SHMBUS_QUEUE_CHECKSUM,
		    .dead_letter_queue = "sum.dlq");
	SHMBUS_OPTS(shmbus_queue_opts, nodlq, .flags = SHMBUS_QUEUE_CHECKSUM);
	struct shmbus_queue_info qi;
	struct shmbus_consumer *c;
	struct shmbus_producer *p2;
	struct shmbus_msg m;
	struct setup s;
	const unsigned n = 40;
	unsigned sent = 0, received = 0, corrupt, dead = 0;
	uint64_t head;
	char body[32];

	(void)state;
	s.bus = t_open_bus(BUS);
	assert_int_equal(shmbus__queue_declare(s.bus, "sum.dlq", NULL), 1);
	shmbus__close(s.bus);
	assert_int_equal(setup_with(&s, "summed", &qo), 1);
	assert_int_equal(shmbus__queue_info(s.bus, "summed", &qi), 0);
	assert_true(qi.flags & SHMBUS_QUEUE_CHECKSUM);
	head = queue_of(s.base, s.qid)->head;
	for (unsigned i = 0; i < n; i++) {
		snprintf(body, sizeof(body), "message %u", i);
		if (i % 2) {
			void *buf = shmbus_producer__loan(s.p, sizeof(body), 0);

			assert_non_null(buf);
			memcpy(buf, body, strlen(body));
			assert_int_equal(shmbus_producer__commit(s.p, buf,
						strlen(body), NULL), 0);
		} else {
			assert_int_equal(shmbus_producer__publish(s.p, body,
						strlen(body), NULL), 0);
		}
		sent++;
	}
	for (unsigned i = 0; i < n; i += 5)
		scribble_payload(s.base, s.qid, head + i);
	c = shmbus_consumer__new(s.bus, "summed", NULL);
	assert_non_null(c);
	while (shmbus_consumer__try_receive(c, &m) == 0) {
		unsigned i;

		assert_int_equal(sscanf(m.data, "message %u", &i), 1);
		snprintf(body, sizeof(body), "message %u", i);
		assert_true(i % 5 != 0);
		assert_int_equal(m.len, strlen(body));
		assert_memory_equal(m.data, body, m.len);
		received++;
		assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	}
	shmbus_consumer__free(c);
	corrupt = (unsigned)stat_of(s.bus, "summed", SHMBUS_STAT_CORRUPT);
	c = shmbus_consumer__new(s.bus, "sum.dlq", NULL);
	assert_non_null(c);
	while (shmbus_consumer__receive_view(c, &m, 200000000) == 0) {
		const void *v;
		size_t vl;

		assert_int_equal(m.dl_reason, SHMBUS_DL_CHECKSUM);
		assert_int_equal(m.dl_src, s.qid + 1);
		assert_int_equal(shmbus_msg__attr(&m, "dlq.reason", &v, &vl), 0);
		assert_int_equal(vl, 8);
		assert_memory_equal(v, "checksum", 8);
		/* as it was found: the flipped byte */
		assert_int_equal(((const char *)m.data)[1], 'e' ^ 0x20);
		dead++;
		assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	}
	shmbus_consumer__free(c);
	print_message("checksummed: sent %u received %u corrupt %u "
		      "dead-lettered %u lost %u\n", sent, received, corrupt,
		      dead, sent - received - dead);
	assert_int_equal(received, n - n / 5);
	assert_int_equal(corrupt, n / 5);
	assert_int_equal(dead, n / 5);
	assert_int_equal(sent - received - dead, 0);
	assert_int_equal(stat_of(s.bus, "summed", SHMBUS_STAT_DEADLETTERED),
			 n / 5);
	shmbus_producer__free(s.p);

	/* no DLQ: dropped, counted */
	assert_int_equal(shmbus__queue_declare(s.bus, "summed.nodlq", &nodlq), 1);
	assert_int_equal(shmbus__queue_info(s.bus, "summed.nodlq", &qi), 0);
	p2 = shmbus_producer__new(s.bus, "summed.nodlq", NULL);
	assert_non_null(p2);
	assert_int_equal(shmbus_producer__publish(p2, "bad", 3, NULL), 0);
	assert_int_equal(shmbus_producer__publish(p2, "good", 4, NULL), 0);
	scribble_payload(s.base, qi.id, queue_of(s.base, qi.id)->head);
	c = shmbus_consumer__new(s.bus, "summed.nodlq", NULL);
	assert_non_null(c);
	assert_int_equal(shmbus_consumer__try_receive(c, &m), 0);
	assert_int_equal(m.len, 4);
	assert_memory_equal(m.data, "good", 4);
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	assert_int_equal(shmbus_consumer__try_receive(c, &m), -EAGAIN);
	assert_int_equal(stat_of(s.bus, "summed.nodlq", SHMBUS_STAT_CORRUPT), 1);
	assert_int_equal(stat_of(s.bus, "summed.nodlq", SHMBUS_STAT_DROPPED), 1);
	shmbus_consumer__free(c);
	shmbus_producer__free(p2);

	/* no checksum: the flipped byte is delivered, as before */
	assert_int_equal(shmbus__queue_declare(s.bus, "unsummed", NULL), 1);
	assert_int_equal(shmbus__queue_info(s.bus, "unsummed", &qi), 0);
	assert_false(qi.flags & SHMBUS_QUEUE_CHECKSUM);
	p2 = shmbus_producer__new(s.bus, "unsummed", NULL);
	assert_non_null(p2);
	assert_int_equal(shmbus_producer__publish(p2, "hello", 5, NULL), 0);
	scribble_payload(s.base, qi.id, queue_of(s.base, qi.id)->head);
	c = shmbus_consumer__new(s.bus, "unsummed", NULL);
	assert_non_null(c);
	assert_int_equal(shmbus_consumer__try_receive(c, &m), 0);
	assert_memory_equal(m.data, "hEllo", 5);
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	assert_int_equal(stat_of(s.bus, "unsummed", SHMBUS_STAT_CORRUPT), 0);
	shmbus_consumer__free(c);
	shmbus_producer__free(p2);
	shmbus__close(s.bus);
}

/*
 * A checksummed topic: each message is checksummed once at publish, and
 * every subscription verifies it; a flipped byte in the shared chunk is
 * refused (counted) by each subscription, the next message comes through.
 */
static void test_checksum_topic(void **state)
{
	SHMBUS_OPTS(shmbus_topic_opts, to, .flags = SHMBUS_QUEUE_CHECKSUM);
	struct shmbus *bus = t_open_bus(BUS);
	struct shmbus_consumer *c1, *c2;
	struct shmbus_producer *p;
	struct shmbus_queue_info qi;
	struct shmbus_msg m;
	uint8_t *base = arena_of(BUS);
	uint32_t sub1;

	(void)state;
	assert_int_equal(shmbus__topic_declare(bus, "sum.topic", &to), 1);
	c1 = shmbus_consumer__subscribe(bus, "sum.topic", NULL);
	c2 = shmbus_consumer__subscribe(bus, "sum.>", NULL);
	assert_non_null(c1);
	assert_non_null(c2);
	p = shmbus_producer__new(bus, "sum.topic", NULL);
	assert_non_null(p);
	assert_int_equal(shmbus_producer__publish(p, "first", 5, NULL), 0);
	assert_int_equal(shmbus_producer__publish(p, "second", 6, NULL), 0);
	/* the first message's shared chunk, through c1's subscription */
	sub1 = 0;
	for (uint32_t i = 0; i < sb_of(base)->max_queues; i++) {
		struct shmbus_queue *q = queue_of(base, i);

		if (SHMBUS_QGEN_LIVE(q->gen) && (q->flags & SHMBUS_QF_SUB) &&
		    !strncmp(q->name, "sum.topic", 9)) {
			sub1 = i;
			break;
		}
	}
	assert_true(sub1 != 0);
	scribble_payload(base, sub1, queue_of(base, sub1)->head);
	for (int k = 0; k < 2; k++) {
		struct shmbus_consumer *c = k ? c2 : c1;

		assert_int_equal(shmbus_consumer__try_receive(c, &m), 0);
		assert_int_equal(m.len, 6);
		assert_memory_equal(m.data, "second", 6);
		assert_int_equal(shmbus_consumer__ack(c, &m), 0);
		assert_int_equal(shmbus_consumer__try_receive(c, &m), -EAGAIN);
	}
	{
		struct shmbus_queue_info all[64];
		int nq = shmbus__queue_list(bus, all, 64);
		uint64_t corrupt = 0;

		for (int i = 0; i < nq && i < 64; i++)
			if (all[i].kind == SHMBUS_SUBSCRIPTION &&
			    !strncmp(all[i].name, "sum.", 4))
				corrupt += all[i].stat[SHMBUS_STAT_CORRUPT];
		print_message("checksummed topic: sent 2, each of 2 "
			      "subscriptions received 1, corrupt %" PRIu64
			      ", lost 0\n", corrupt);
		assert_int_equal(corrupt, 2);
	}
	(void)qi;
	shmbus_consumer__free(c2);
	shmbus_consumer__free(c1);
	shmbus_producer__free(p);
	shmbus__close(bus);
}

/* The cell of position @pos of @qid set to @v. */
static void set_cell(uint8_t *base, uint32_t qid, uint64_t pos, uint64_t v)
{
	cell_at(base, qid, pos)->v = v;
}

/*
 * Garbage in ring cells: sequences no cell of that position can ever hold
 * (ahead, behind, random). A receive retires each (counted corrupt) and
 * delivers every real message behind it; a publish that meets one at the
 * tail fills it; the ring goes on working for laps after.
 */
static void test_garbage_cells(void **state)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_len = 64);
	struct shmbus_consumer *c;
	struct shmbus_queue *q;
	struct shmbus_msg m;
	struct setup s;
	unsigned sent = 0, received = 0, corrupt, lost, seen[12] = { 0 };
	uint64_t h, t;
	char body[16];

	(void)state;
	assert_int_equal(setup_with(&s, "cells", &qo), 1);
	q = queue_of(s.base, s.qid);
	for (unsigned i = 0; i < 10; i++, sent++) {
		snprintf(body, sizeof(body), "c%u", i);
		assert_int_equal(shmbus_producer__publish(s.p, body,
						strlen(body), NULL), 0);
	}
	h = q->head;
	t = q->tail;
	set_cell(s.base, s.qid, h + 2, SHMBUS_CELL(h + 2 + 7, SHMBUS_REF(0, 3)));
	set_cell(s.base, s.qid, h + 5, SHMBUS_CELL(h + 5 - 3, SHMBUS_REF(0, 4)));
	set_cell(s.base, s.qid, h + 6, 0xdeadbeefcafe1234ULL);
	set_cell(s.base, s.qid, t, SHMBUS_CELL(t + 9, 0));	/* at the tail */
	assert_int_equal(shmbus_producer__publish(s.p, "c10", 3, NULL), 0);
	sent++;
	c = shmbus_consumer__new(s.bus, "cells", NULL);
	assert_non_null(c);
	while (shmbus_consumer__try_receive(c, &m) == 0) {
		unsigned i;

		assert_int_equal(sscanf(m.data, "c%u", &i), 1);
		assert_true(i <= 10 && i != 2 && i != 5 && i != 6);
		seen[i]++;
		received++;
		assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	}
	corrupt = (unsigned)corrupt_count(s.bus, "cells");
	/* the three messages whose cells were overwritten are gone with
	 * them: counted corrupt, not lost silently */
	lost = sent - received - corrupt;
	print_message("garbage cells: sent %u received %u corrupt %u lost %u\n",
		      sent, received, corrupt, lost);
	assert_int_equal(received, 8);
	assert_int_equal(corrupt, 3);
	assert_int_equal(lost, 0);
	for (unsigned i = 0; i <= 10; i++)
		assert_int_equal(seen[i], i == 2 || i == 5 || i == 6 ? 0 : 1);
	/* three laps more through the retired cells */
	for (unsigned lap = 0; lap < 3; lap++) {
		for (unsigned i = 0; i < 64; i++)
			assert_int_equal(shmbus_producer__publish(s.p, &i,
							sizeof(i), NULL), 0);
		for (unsigned i = 0; i < 64; i++) {
			assert_int_equal(shmbus_consumer__try_receive(c, &m), 0);
			assert_int_equal(*(const unsigned *)m.data, i);
			assert_int_equal(shmbus_consumer__ack(c, &m), 0);
		}
		assert_int_equal(shmbus_consumer__try_receive(c, &m), -EAGAIN);
	}
	assert_int_equal(corrupt_count(s.bus, "cells"), 3);
	shmbus_consumer__free(c);
	teardown(&s);
}

/*
 * Head and tail hints moved far ahead of the cells (consumers would find
 * the queue empty for ever, producers would find it full): the daemon
 * sees a hint's cell older than the hint, rebuilds both from the cells,
 * wakes the sleepers, and every message arrives, in order.
 */
static void test_hint_repair(void **state)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_len = 64);
	SHMBUS_OPTS(shmbus_consumer_opts, block, .spin_ns = -1);
	struct shmbus_consumer *c;
	struct shmbus_queue *q;
	struct shmbus_msg m;
	struct setup s;
	unsigned sent = 0, received = 0;
	int64_t t0, dt;

	(void)state;
	assert_int_equal(setup_with(&s, "hints", &qo), 1);
	q = queue_of(s.base, s.qid);
	c = shmbus_consumer__new(s.bus, "hints", &block);
	assert_non_null(c);
	for (unsigned i = 0; i < 5; i++, sent++)
		assert_int_equal(shmbus_producer__publish(s.p, &i, sizeof(i),
							  NULL), 0);
	q->head += 1000 * 64 + 3;
	q->tail += 5000 * 64 + 1;
	t0 = t_now_ns();
	for (unsigned i = 0; i < 5; i++, received++) {
		assert_int_equal(shmbus_consumer__receive_view(c, &m,
							       3000000000LL), 0);
		assert_int_equal(*(const unsigned *)m.data, i);
		assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	}
	dt = t_now_ns() - t0;
	for (unsigned i = 5; i < 8; i++, sent++)
		assert_int_equal(shmbus_producer__publish(s.p, &i, sizeof(i),
							  NULL), 0);
	for (unsigned i = 5; i < 8; i++, received++) {
		assert_int_equal(shmbus_consumer__try_receive(c, &m), 0);
		assert_int_equal(*(const unsigned *)m.data, i);
		assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	}
	print_message("hints ahead of the cells: rebuilt after %.1f ms; sent %u "
		      "received %u lost %u corrupt %u\n", dt / 1e6, sent,
		      received, sent - received,
		      (unsigned)corrupt_count(s.bus, "hints"));
	assert_int_equal(sent - received, 0);
	assert_true(dt < 2000000000);
	assert_false(q->flags & SHMBUS_QF_DAMAGED);
	shmbus_consumer__free(c);
	teardown(&s);
}

/*
 * Claimers killed between their claim (the cmpxchg of the head) and their
 * marks: a process moves the head of a queue over 3 full cells, as a
 * consumer's claim would, and dies without taking them; another claims
 * one position as a publisher dropping the oldest would, and dies too.
 * Nothing is lost: once the daemon sees the slots released, the 4 cells
 * left full behind the head are retired after a grace period and their
 * messages put back, in order, behind the 4 never claimed; producers
 * reuse the cells after that (two laps more).
 */
static void test_dead_claims(void **state)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_len = 16);
	SHMBUS_OPTS(shmbus_consumer_opts, block, .spin_ns = -1);
	struct shmbus_consumer *c;
	struct shmbus_queue *q;
	struct shmbus_msg m;
	struct setup s;
	unsigned sent = 0, received = 0, dup = 0, seen[8] = { 0 };
	unsigned order[8], got = 0;

	(void)state;
	assert_int_equal(setup_with(&s, "claims", &qo), 1);
	q = queue_of(s.base, s.qid);
	for (unsigned i = 0; i < 8; i++, sent++)
		assert_int_equal(shmbus_producer__publish(s.p, &i, sizeof(i),
							  NULL), 0);
	for (unsigned k = 0; k < 2; k++) {
		pid_t kid = fork();

		if (!kid) {
			struct shmbus *b = t_open_bus(BUS);
			struct shmbus_consumer *kc = shmbus_consumer__new(
				b, "claims", NULL);
			uint64_t h;

			CHILD_CHECK(kc, "consumer");
			/* claim positions as ring_claim() does, then die
			 * before marking them: 3, then 1 */
			h = READ_ONCE(q->head);
			CHILD_CHECK(atomic_cmpxchg(&q->head, &h,
						   h + (k ? 1 : 3)), "claim");
			kill(getpid(), SIGKILL);
		}
		assert_int_equal(t_wait(kid, 5000), 128 + SIGKILL);
	}
	c = shmbus_consumer__new(s.bus, "claims", &block);
	assert_non_null(c);
	while (got < 8 &&
	       shmbus_consumer__receive_view(c, &m, 3000000000LL) == 0) {
		unsigned i = *(const unsigned *)m.data;

		assert_true(i < 8);
		dup += seen[i]++ != 0;
		order[got++] = i;
		received++;
		assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	}
	print_message("dead claimers: sent %u received %u lost %u duplicated "
		      "%u corrupt %u\n", sent, received - dup,
		      sent - (received - dup), dup,
		      (unsigned)corrupt_count(s.bus, "claims"));
	assert_int_equal(received, 8);
	assert_int_equal(dup, 0);
	/* the 4 never claimed first, then the 4 put back, in order */
	for (unsigned i = 0; i < 8; i++)
		assert_int_equal(order[i], i < 4 ? i + 4 : i - 4);
	for (unsigned lap = 0; lap < 2; lap++) {
		for (unsigned i = 0; i < 16; i++)
			assert_int_equal(shmbus_producer__publish(s.p, &i,
							sizeof(i), NULL), 0);
		for (unsigned i = 0; i < 16; i++) {
			assert_int_equal(shmbus_consumer__try_receive(c, &m), 0);
			assert_int_equal(*(const unsigned *)m.data, i);
			assert_int_equal(shmbus_consumer__ack(c, &m), 0);
		}
	}
	assert_int_equal(corrupt_count(s.bus, "claims"), 0);
	shmbus_consumer__free(c);
	teardown(&s);
}

/*
 * A ring beyond repair (a hint ahead of the cells, and cells that are no
 * one window of positions): the daemon quarantines that queue: its
 * sleeping consumer wakes with -EUCLEAN, publish gets -EUCLEAN, a new
 * attach is refused (-EUCLEAN, with the reason), stat shows it damaged;
 * another queue on the same bus keeps delivering all along. Deleting it
 * and declaring it again gives a working queue.
 */
static void test_quarantine(void **state)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_len = 64);
	SHMBUS_OPTS(shmbus_consumer_opts, block, .spin_ns = -1);
	int *woke = t_shared(sizeof(int));
	struct shmbus_producer *hp;
	struct shmbus_consumer *hc, *c;
	struct shmbus_queue_info qi;
	struct shmbus_queue *q;
	struct shmbus_msg m;
	struct setup s;
	unsigned hsent = 0, hrecv = 0;
	int ready[2];
	uint64_t h;
	int64_t t0, dt;
	pid_t kid;
	char x, cmd[600];
	FILE *f;

	(void)state;
	assert_int_equal(setup_with(&s, "broken", &qo), 1);
	assert_int_equal(shmbus__queue_declare(s.bus, "healthy", NULL), 1);
	hp = shmbus_producer__new(s.bus, "healthy", NULL);
	hc = shmbus_consumer__new(s.bus, "healthy", NULL);
	assert_non_null(hp);
	assert_non_null(hc);
	q = queue_of(s.base, s.qid);
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(shmbus_producer__publish(s.p, &i, sizeof(i),
							  NULL), 0);
	assert_int_equal(pipe(ready), 0);
	if (!(kid = fork())) {
		struct shmbus *b = t_open_bus(BUS);
		struct shmbus_consumer *k = shmbus_consumer__new(b, "broken",
								 &block);
		struct shmbus_msg km;

		CHILD_CHECK(k, "consumer");
		/* take the three, then sleep on the empty queue */
		for (int i = 0; i < 3; i++)
			CHILD_CHECK(!shmbus_consumer__receive_view(k, &km, 0) &&
				    !shmbus_consumer__ack(k, &km), "drain");
		CHILD_CHECK(write(ready[1], "r", 1) == 1, "ready");
		*woke = shmbus_consumer__receive_view(k, &km, 10000000000LL);
		_exit(0);
	}
	assert_int_equal(read(ready[0], &x, 1), 1);
	usleep(50000);		/* asleep on the empty queue */
	h = q->head;
	/* two full cells a hundred laps apart, and a head hint far ahead */
	set_cell(s.base, s.qid, h, SHMBUS_CELL(h + 1, SHMBUS_REF(0, 1)));
	set_cell(s.base, s.qid, h + 1,
		 SHMBUS_CELL(h + 2 + 100 * 64, SHMBUS_REF(0, 2)));
	q->head = h + 1000 * 64;
	t0 = t_now_ns();
	/* the healthy queue delivers while the daemon decides */
	while (t_now_ns() - t0 < 1000000000LL && !(q->flags & SHMBUS_QF_DAMAGED)) {
		assert_int_equal(shmbus_producer__publish(hp, &hsent,
							  sizeof(hsent), NULL), 0);
		hsent++;
		assert_int_equal(shmbus_consumer__receive_view(hc, &m,
							       1000000000), 0);
		assert_int_equal(*(const unsigned *)m.data, hrecv);
		hrecv++;
		assert_int_equal(shmbus_consumer__ack(hc, &m), 0);
		usleep(5000);
	}
	dt = t_now_ns() - t0;
	assert_true(q->flags & SHMBUS_QF_DAMAGED);
	assert_int_equal(t_wait(kid, 5000), 0);
	assert_int_equal(*woke, -EUCLEAN);
	assert_int_equal(shmbus__queue_info(s.bus, "broken", &qi), 0);
	assert_true(qi.flags & SHMBUS_QUEUE_DAMAGED);
	assert_int_equal(shmbus_producer__publish(s.p, "x", 1, NULL), -EUCLEAN);
	shmbus_set_print(NULL);
	c = shmbus_consumer__new(s.bus, "broken", NULL);
	assert_null(c);
	assert_int_equal(errno, EUCLEAN);
	print_message("attach refused: %s\n", shmbus_errmsg());
	assert_non_null(strstr(shmbus_errmsg(), "quarantined"));
	/* shmbus stat shows it */
	{
		ssize_t n = readlink("/proc/self/exe", cmd, 400);

		assert_true(n > 0);
		cmd[n] = '\0';
		*strrchr(cmd, '/') = '\0';
		*strrchr(cmd, '/') = '\0';
		strcat(cmd, "/bin/shmbus --bus " BUS " stat");
		f = popen(cmd, "r");
		assert_non_null(f);
		{
			char line[256];
			bool shown = false;

			while (fgets(line, sizeof(line), f))
				shown |= !strncmp(line, "broken: DAMAGED", 15);
			assert_int_equal(pclose(f), 0);
			assert_true(shown);
		}
	}
	/* the healthy queue still delivers */
	for (unsigned i = 0; i < 100; i++, hsent++)
		assert_int_equal(shmbus_producer__publish(hp, &hsent,
							  sizeof(hsent), NULL), 0);
	while (shmbus_consumer__try_receive(hc, &m) == 0) {
		assert_int_equal(*(const unsigned *)m.data, hrecv);
		hrecv++;
		assert_int_equal(shmbus_consumer__ack(hc, &m), 0);
	}
	print_message("quarantined after %.1f ms; healthy queue: sent %u "
		      "received %u lost %u corrupt %u\n", dt / 1e6, hsent, hrecv,
		      hsent - hrecv, (unsigned)corrupt_count(s.bus, "healthy"));
	assert_int_equal(hsent - hrecv, 0);
	assert_true(hsent > 100);
	/* repair: delete, declare again */
	shmbus_producer__free(s.p);
	assert_int_equal(shmbus__queue_delete(s.bus, "broken"), 0);
	for (int i = 0; i < 500; i++) {
		int err = shmbus__queue_declare(s.bus, "broken", &qo);

		if (err == 1)
			break;
		assert_int_equal(err, -ENOSPC);
		usleep(2000);
	}
	s.p = shmbus_producer__new(s.bus, "broken", NULL);
	c = shmbus_consumer__new(s.bus, "broken", NULL);
	assert_non_null(s.p);
	assert_non_null(c);
	assert_int_equal(shmbus_producer__publish(s.p, "fine", 4, NULL), 0);
	assert_int_equal(shmbus_consumer__try_receive(c, &m), 0);
	assert_memory_equal(m.data, "fine", 4);
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	assert_int_equal(shmbus__queue_info(s.bus, "broken", &qi), 0);
	assert_false(qi.flags & SHMBUS_QUEUE_DAMAGED);
	shmbus_consumer__free(c);
	shmbus_consumer__free(hc);
	shmbus_producer__free(hp);
	teardown(&s);
}

/*
 * A producer of a dedup queue forges what its death makes the daemon
 * read: two entries PENDING for its slot (a live producer has one at
 * most) and every chunk of the bus LOANED by its slot with a key matching
 * neither, then dies. The daemon settles its keys in one pass over the
 * table and one over the chunks, and answers others at once: a root open
 * of another bus, right after the death, is timed. The entry beyond the
 * one a producer can have is forgotten; the other is settled as seen.
 */
static void test_forged_dedup_death(void **state)
{
	SHMBUS_OPTS(shmbus_open_opts, oo, .ring_bytes = 8u << 20,
		    .nr_pools = 1, .pools = { { 64, 20000 } }, .pool_growth = 1);
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_len = 65536, .msg_size = 64,
		    .dedup_window_ns = 1000000000);
	const char *dd = BUS ".dd";
	struct shmbus_queue_info qi;
	struct shmbus_dedup *t;
	struct shmbus_queue *q;
	struct shmbus *bus, *other;
	uint8_t *base;
	int64_t t0, dt;
	pid_t kid;

	(void)state;
	bus = shmbus__open(dd, &oo);
	assert_non_null(bus);
	assert_int_equal(shmbus__queue_declare(bus, "q", &qo), 1);
	assert_int_equal(shmbus__queue_info(bus, "q", &qi), 0);
	base = arena_of(dd);
	q = queue_of(base, qi.id);
	assert_int_equal(q->dedup_cap, 131072);
	assert_int_equal(pool_of(base, 0)->nr_chunks, 20000);
	t = (struct shmbus_dedup *)(base + q->dedup_off);
	kid = fork();
	assert_true(kid >= 0);
	if (kid == 0) {
		struct shmbus *b = t_open_bus(dd);
		struct shmbus_producer *p = shmbus_producer__new(b, "q", NULL);
		struct shmbus_slot *slots;
		struct shmbus_pool *p0 = pool_of(base, 0);
		uint32_t si = UINT32_MAX;

		CHILD_CHECK(p, "producer");
		slots = (struct shmbus_slot *)(base + sb_of(base)->slot_off);
		for (uint32_t i = 0; i < sb_of(base)->max_slots; i++)
			if (slots[i].state == SHMBUS_SLOT_ACTIVE &&
			    slots[i].pid == (uint32_t)getpid() &&
			    slots[i].role == SHMBUS_ROLE_PRODUCER)
				si = i;
		CHILD_CHECK(si != UINT32_MAX, "own slot");
		t[0].key = 42;
		t[0].expires = SHMBUS_DEDUP_PEND(si, slots[si].gen);
		t[1].key = 43;
		t[1].expires = SHMBUS_DEDUP_PEND(si, slots[si].gen);
		for (uint32_t i = 0; i < p0->nr_chunks; i++) {
			struct shmbus_chunk *c = (struct shmbus_chunk *)
				(base + p0->base_off +
				 (uint64_t)i * p0->chunk_size);

			c->owner = SHMBUS_OWNER(SHMBUS_OWNER_GEN(c->owner),
						SHMBUS_CHUNK_LOANED, si);
			c->dedup_key = 7;	/* neither 42 nor 43 */
		}
		_exit(0);	/* dies attached */
	}
	assert_int_equal(t_wait(kid, 10000), 0);
	t0 = t_now_ns();
	other = shmbus__open(BUS ".other", NULL);
	dt = t_now_ns() - t0;
	assert_non_null(other);
	print_message("another bus opened %.1f ms after the forged producer "
		      "died\n", dt / 1e6);
	assert_true(dt < 2000000000LL);
	shmbus__close(other);
	/* settled: 43 forgotten at once, 42 seen after the sweep */
	t0 = t_now_ns();
	while ((READ_ONCE(t[0].expires) & SHMBUS_DEDUP_PENDING) &&
	       t_now_ns() - t0 < 5000000000LL)
		usleep(1000);
	assert_int_equal(t[1].expires, SHMBUS_DEDUP_FORGOTTEN);
	assert_false(t[0].expires & SHMBUS_DEDUP_PENDING);
	assert_true(t[0].expires > SHMBUS_DEDUP_FORGOTTEN);
	shmbus__close(bus);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_ref_in_ring),
		cmocka_unit_test(test_bad_ref_behind_large),
		cmocka_unit_test(test_bad_length),
		cmocka_unit_test(test_ring_of_garbage),
		cmocka_unit_test(test_stream_of_expired),
		cmocka_unit_test(test_bad_ring_offset),
		cmocka_unit_test(test_bad_free_list),
		cmocka_unit_test(test_bad_superblock),
		cmocka_unit_test(test_delete_scribbled_queue),
		cmocka_unit_test(test_forged_seat),
		cmocka_unit_test(test_scribbled_lease_table),
		cmocka_unit_test(test_scribbled_fanout),
		cmocka_unit_test(test_scribbled_attrs_and_dedup),
		cmocka_unit_test(test_checksum),
		cmocka_unit_test(test_checksum_topic),
		cmocka_unit_test(test_garbage_cells),
		cmocka_unit_test(test_hint_repair),
		cmocka_unit_test(test_dead_claims),
		cmocka_unit_test(test_quarantine),
		cmocka_unit_test(test_forged_dedup_death),
	};

	return T_RUN_WITH_DAEMON("hostile", tests);
}
