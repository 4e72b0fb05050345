// SPDX-License-Identifier: MIT
/*
 * test_grow.c - pools that grow (docs/design.md, "Pools that grow"), with
 * real daemons and processes:
 *  - on demand: a bus made with 64 small chunks takes 500 messages into
 *    one queue with no consumer: the pool grows (its memory with it, the
 *    reserve staying unbacked) up to its most, and no further; every
 *    message comes out intact, in order;
 *  - limits: a daemon whose --bus-max admits 64 KiB more stops the
 *    pool short of its most (doubling, then smaller steps), says why
 *    once in its log, and a publish then fails with ENOMEM after its
 *    timeout; a bus of growth 1 never grows;
 *  - adoption: the daemon killed -9 after a pool grew, and a consumer
 *    holding leases on chunks of the grown part killed while no daemon
 *    runs: the next daemon adopts the grown pool, redelivers those
 *    messages, and nothing is lost;
 *  - a hostile member rewriting the pool's count: the daemon puts it
 *    back; rewritten (to "all", below what is in use, a step ahead)
 *    just before the daemon is killed, the next daemon counts what the
 *    memfd holds instead, backs nothing, and the pool reaches its most
 *    with nothing lost, on a bus never idle; a member clearing the grow
 *    bit changes nothing;
 *  - the daemon killed -9 at random moments while a pool grows under a
 *    producer, eight rounds.
 * Each prints sent / received / lost / duplicated / corrupt.
 */
#include <sys/wait.h>

#include "shmbus.h"
#include "helpers.h"
#include "shmbus/layout.h"

#define MS	1000000LL
#define PAD	200

struct msg {
	int seq;
	uint8_t pad[PAD];
};

static char state_dir[PATH_MAX];

static pid_t daemon_up(const char *const *extra)
{
	pid_t pid;

	snprintf(state_dir, sizeof(state_dir), "%s/state", t_dir);
	pid = t_daemon_start_state(t_sock, state_dir, extra);
	assert_true(pid > 0);
	return pid;
}

static void daemon_down(pid_t pid)
{
	assert_true(t_daemon_kill_pid(pid));
}

static struct shmbus *bus_new(const char *name, uint32_t growth)
{
	SHMBUS_OPTS(shmbus_open_opts, oo, .flags = SHMBUS_OPEN_NOSTART,
		    .nr_pools = 1, .pools = { { 256, 64 } },
		    .pool_growth = growth);
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_len = 1024, .msg_size = 256);
	struct shmbus *bus = shmbus__open(name, &oo);

	assert_non_null(bus);
	assert_true(shmbus__queue_declare(bus, "q", &qo) >= 0);
	return bus;
}

/* Our handle of @bus rejoined the next daemon: a control call waits for
 * that (declaring "q" as it is, which exists). */
static void rejoined(struct shmbus *bus)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_len = 1024, .msg_size = 256);

	assert_int_equal(shmbus__queue_declare(bus, "q", &qo), 0);
}

static struct shmbus_pool_info pool0(struct shmbus *bus)
{
	struct shmbus_pool_info pi;

	assert_int_equal(shmbus__pool_info(bus, 0, &pi), 0);
	return pi;
}

static void fill(struct msg *m, int seq)
{
	m->seq = seq;
	for (int i = 0; i < PAD; i++)
		m->pad[i] = (uint8_t)(seq * 31 + i);
}

static bool intact(const void *data, size_t len)
{
	struct msg m;

	if (len != sizeof(m))
		return false;
	memcpy(&m, data, sizeof(m));
	for (int i = 0; i < PAD; i++)
		if (m.pad[i] != (uint8_t)(m.seq * 31 + i))
			return false;
	return true;
}

/* Publish from @from on, each waiting up to @timeout_ms for a chunk,
 * until @n went in or one fails: how many went in (*err: the failure). */
static int publish(struct shmbus *bus, int from, int n, int timeout_ms,
		   int *err)
{
	SHMBUS_OPTS(shmbus_pub_opts, po, .timeout_ns = timeout_ms * MS);
	struct shmbus_producer *p = shmbus_producer__new(bus, "q", NULL);
	struct msg m;
	int i;

	assert_non_null(p);
	*err = 0;
	for (i = 0; i < n; i++) {
		fill(&m, from + i);
		*err = shmbus_producer__publish(p, &m, sizeof(m), &po);
		if (*err)
			break;
	}
	shmbus_producer__free(p);
	return i;
}

struct tally {
	int received, dup, corrupt;
	uint8_t *seen;
};

/* Receive (acking) until @want distinct messages, or 10 s of nothing. */
static void drain(struct shmbus *bus, int want, struct tally *t)
{
	struct shmbus_consumer *c = shmbus_consumer__new(bus, "q", NULL);
	struct shmbus_msg m;

	assert_non_null(c);
	while (t->received < want &&
	       shmbus_consumer__receive_view(c, &m, 10000 * MS) == 0) {
		struct msg v;

		if (!intact(m.data, m.len)) {
			t->corrupt++;
		} else {
			memcpy(&v, m.data, sizeof(v));
			if (v.seq < 0 || v.seq >= want || t->seen[v.seq]++)
				t->dup++;
			else
				t->received++;
		}
		assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	}
	shmbus_consumer__free(c);
}

static void report(const char *what, int sent, const struct tally *t)
{
	print_message("%s: sent %d received %d lost %d duplicated %d corrupt "
		      "%d\n", what, sent, t->received, sent - t->received,
		      t->dup, t->corrupt);
}

static bool log_has(const char *want)
{
	char path[PATH_MAX + 8], line[1024];
	bool hit = false;
	FILE *f;

	snprintf(path, sizeof(path), "%s.log", t_sock);
	f = fopen(path, "r");
	while (f && !hit && fgets(line, sizeof(line), f))
		hit = strstr(line, want);
	if (f)
		fclose(f);
	return hit;
}

/* The bytes the daemon reports bus @name holds (its list entry). */
static uint64_t bus_memory(const char *name)
{
	SHMBUS_OPTS(shmbus_open_opts, oo, .socket_path = t_sock);
	struct shmbus_bus_entry e[16];
	int n = shmbus__bus_list(&oo, e, 16);

	for (int i = 0; i < n; i++)
		if (!strcmp(e[i].name, name))
			return e[i].arena_size;
	return 0;
}

static void test_on_demand(void **state)
{
	static uint8_t seen[1024];
	struct tally t = { .seen = seen };
	struct shmbus_info bi;
	struct shmbus_pool_info pi;
	struct shmbus *bus;
	uint64_t b0, b1;
	pid_t d;
	int sent, more, err;

	(void)state;
	d = daemon_up(NULL);
	bus = bus_new("grows", 8);
	pi = pool0(bus);
	assert_int_equal(pi.chunks, 64);
	assert_int_equal(pi.chunks_max, 512);
	b0 = t_arena_bytes("grows");
	assert_int_equal(shmbus__info(bus, &bi), 0);
	/* what it holds is what it reports, and the reserve is not held */
	assert_int_equal(bus_memory("grows"), b0);
	assert_true(b0 + 400 * 256 < bi.arena_size);

	sent = publish(bus, 0, 500, 5000, &err);
	assert_int_equal(err, 0);
	assert_int_equal(sent, 500);
	pi = pool0(bus);
	b1 = t_arena_bytes("grows");
	print_message("500 messages into 64 chunks: the pool has %u of %u, "
		      "%llu bytes held, then %llu (arena %llu)\n", pi.chunks,
		      pi.chunks_max, (unsigned long long)b0,
		      (unsigned long long)b1,
		      (unsigned long long)bi.arena_size);
	assert_true(pi.chunks >= 500 && pi.chunks <= 512);
	assert_true(b1 > b0 + 400 * 384);
	assert_int_equal(bus_memory("grows"), b1);
	assert_true(log_has("bus 0:grows: pool 0 (256-byte payloads) grew "
			    "from 64 to 128 chunks"));

	/* the most is the most: past it a publish waits, then ENOMEM */
	more = publish(bus, sent, 100, 300, &err);
	assert_int_equal(err, -ENOMEM);
	sent += more;
	pi = pool0(bus);
	print_message("then %d more, and ENOMEM at %u of %u chunks\n", more,
		      pi.chunks, pi.chunks_max);
	assert_int_equal(pi.chunks, 512);
	assert_int_equal(sent, 512);

	drain(bus, sent, &t);
	report("on demand", sent, &t);
	assert_int_equal(t.received, sent);
	assert_int_equal(t.dup + t.corrupt, 0);
	assert_int_equal(t_chunks_out(bus), 0);
	shmbus__close(bus);
	daemon_down(d);
}

static void test_limits(void **state)
{
	static uint8_t seen[1024];
	const char *plain[] = { "--bus-pools", "256:64", NULL };
	const char *args[] = { "--bus-max", NULL, "--bus-pools", "256:64",
			       NULL };
	struct tally t = { .seen = seen };
	struct shmbus_pool_info pi;
	struct shmbus *bus;
	char max[32], out[4096], cli[PATH_MAX], want[160];
	uint64_t held;
	pid_t d;
	int sent, err;

	(void)state;
	/* what such a bus holds when made */
	d = daemon_up(plain);
	bus = bus_new("probe", 8);
	held = bus_memory("probe");
	assert_true(held > 0);
	shmbus__close(bus);
	daemon_down(d);

	/* room for 64 KiB more: the doubling steps, then smaller ones,
	 * stop short of the pool's most (512 chunks of 388 bytes, links
	 * included, would be 174 KiB more) */
	snprintf(max, sizeof(max), "%llu", (unsigned long long)held + 65536);
	args[1] = max;
	d = daemon_up(args);
	bus = bus_new("limited", 8);
	sent = publish(bus, 0, 600, 500, &err);
	pi = pool0(bus);
	print_message("--bus-max %s: %d went in, then %s; the pool has %u of "
		      "%u chunks, the bus holds %llu bytes\n", max, sent,
		      strerror(-err), pi.chunks, pi.chunks_max,
		      (unsigned long long)bus_memory("limited"));
	assert_int_equal(err, -ENOMEM);
	assert_true(pi.chunks > 128 && pi.chunks < 512);
	assert_int_equal(sent, pi.chunks);
	assert_true(bus_memory("limited") <= held + 65536);
	assert_int_equal(bus_memory("limited"), t_arena_bytes("limited"));
	snprintf(want, sizeof(want), "bus 0:limited: pool 0 (256-byte "
		 "payloads) cannot grow past %u chunks: a bus of", pi.chunks);
	assert_true(log_has(want));
	assert_true(log_has("(--bus-max)"));
	assert_int_equal(t_capture(out, sizeof(out), "%s bus info limited",
				   t_bin(cli, "shmbus")), 0);
	print_message("%s", out);
	snprintf(want, sizeof(want), "pool 0:   messages up to 256 bytes: "
		 "%u chunks (grows to 512)", pi.chunks);
	assert_non_null(strstr(out, want));
	drain(bus, sent, &t);
	report("limited", sent, &t);
	assert_int_equal(t.received, sent);
	assert_int_equal(t.dup + t.corrupt, 0);
	shmbus__close(bus);

	/* growth 1: fixed */
	bus = bus_new("fixed", 1);
	pi = pool0(bus);
	assert_int_equal(pi.chunks_max, 64);
	sent = publish(bus, 0, 100, 200, &err);
	assert_int_equal(err, -ENOMEM);
	assert_int_equal(sent, 64);
	assert_int_equal(pool0(bus).chunks, 64);
	shmbus__close(bus);
	daemon_down(d);
}

static void test_adopted(void **state)
{
	static uint8_t seen[1024];
	struct tally t = { .seen = seen };
	struct shmbus_pool_info pi;
	struct shmbus *bus;
	uint64_t held;
	int ready[2], sent, err;
	pid_t d, kid;
	char x;

	(void)state;
	d = daemon_up(NULL);
	bus = bus_new("adopt", 8);
	sent = publish(bus, 0, 400, 5000, &err);
	assert_int_equal(sent, 400);
	pi = pool0(bus);
	held = bus_memory("adopt");
	assert_true(pi.chunks >= 400);

	/* a consumer takes the first 150 (chunks of the first 64 and of
	 * the grown part) and holds their leases */
	assert_int_equal(pipe(ready), 0);
	kid = fork();
	if (!kid) {
		SHMBUS_OPTS(shmbus_open_opts, oo, .flags = SHMBUS_OPEN_NOSTART);
		struct shmbus *b = shmbus__open("adopt", &oo);
		struct shmbus_consumer *c =
			b ? shmbus_consumer__new(b, "q", NULL) : NULL;
		struct shmbus_msg m;

		CHILD_CHECK(c, "consumer: %s", strerror(errno));
		for (int i = 0; i < 150; i++)
			CHILD_CHECK(!shmbus_consumer__receive_view(c, &m,
								   5000 * MS),
				    "receive %d", i);
		CHILD_CHECK(write(ready[1], "r", 1) == 1, "ready");
		pause();
		_exit(0);
	}
	assert_int_equal(read(ready[0], &x, 1), 1);
	/* the daemon dies, then the consumer while none runs */
	daemon_down(d);
	kill(kid, SIGKILL);
	assert_int_equal(t_wait(kid, 5000), 128 + SIGKILL);
	d = daemon_up(NULL);
	rejoined(bus);
	print_message("adopted: %u chunks (was %u), %llu bytes held (was "
		      "%llu)\n", pool0(bus).chunks, pi.chunks,
		      (unsigned long long)bus_memory("adopt"),
		      (unsigned long long)held);
	assert_int_equal(pool0(bus).chunks, pi.chunks);
	assert_int_equal(bus_memory("adopt"), held);
	drain(bus, sent, &t);
	report("grown pool adopted, consumer killed", sent, &t);
	assert_int_equal(t.received, sent);
	assert_int_equal(t.corrupt, 0);
	assert_int_equal(t_chunks_out(bus), 0);
	/* and it grows on from there */
	memset(seen, 0, sizeof(seen));
	memset(&t, 0, sizeof(t));
	t.seen = seen;
	sent = publish(bus, 0, 500, 5000, &err);
	assert_int_equal(sent, 500);
	drain(bus, sent, &t);
	report("then 500 more", sent, &t);
	assert_int_equal(t.received, sent);
	close(ready[0]);
	close(ready[1]);
	shmbus__close(bus);
	daemon_down(d);
}

/* The descriptor of pool 0 in our mapping of bus @name. */
static struct shmbus_pool *pool_desc(const char *name)
{
	uint8_t *base = t_arena_mapping(name);
	const struct shmbus_sb *sb = (const void *)base;

	assert_non_null(base);
	return (struct shmbus_pool *)(base + sb->pool_off);
}

static void test_hostile_count(void **state)
{
	static uint8_t seen[1024];
	struct tally t = { .seen = seen };
	struct shmbus_producer *p;
	struct shmbus_pool *pd;
	struct shmbus_info bi;
	struct shmbus *bus;
	uint64_t held;
	int sent, err, i;
	pid_t d;

	(void)state;
	d = daemon_up(NULL);
	bus = bus_new("hostile", 4);
	sent = publish(bus, 0, 100, 5000, &err);
	assert_int_equal(sent, 100);
	assert_int_equal(pool0(bus).chunks, 128);
	pd = pool_desc("hostile");
	/* the daemon puts its count back (checking while handles are
	 * attached, and at every open and attach) */
	p = shmbus_producer__new(bus, "q", NULL);
	assert_non_null(p);
	WRITE_ONCE(pd->nr_live, 0xffffffffu);
	for (i = 0; i < 2000 && READ_ONCE(pd->nr_live) != 128; i++)
		usleep(1000);
	print_message("nr_live rewritten to 0xffffffff: back to %u after "
		      "%d ms\n", READ_ONCE(pd->nr_live), i);
	assert_int_equal(READ_ONCE(pd->nr_live), 128);
	shmbus_producer__free(p);
	/* rewritten as the daemon dies: the next counts what the memfd
	 * holds, backing nothing */
	held = t_arena_bytes("hostile");
	daemon_down(d);
	WRITE_ONCE(pd->nr_live, 0xffffffffu);
	d = daemon_up(NULL);
	rejoined(bus);
	assert_int_equal(shmbus__info(bus, &bi), 0);
	print_message("adopted with nr_live 0xffffffff: %u chunks of %u, "
		      "%llu bytes held (%llu before) of an arena of %llu\n",
		      pool0(bus).chunks, pool0(bus).chunks_max,
		      (unsigned long long)t_arena_bytes("hostile"),
		      (unsigned long long)held,
		      (unsigned long long)bi.arena_size);
	/* the last page's chunks are data too: at most a page more */
	assert_true(pool0(bus).chunks >= 128 &&
		    pool0(bus).chunks <= 128 + 4096 / 384);
	assert_int_equal(t_arena_bytes("hostile"), held);
	assert_int_equal(bus_memory("hostile"), held);
	drain(bus, sent, &t);
	report("hostile count", sent, &t);
	assert_int_equal(t.received, sent);
	assert_int_equal(t.dup + t.corrupt, 0);
	shmbus__close(bus);
	daemon_down(d);
}

/*
 * A member writes the pool's count as the daemon dies, on a bus that is
 * never idle (a consumer stays attached), then the next daemon adopts
 * it: 0 (which would mean "all"), 1 (below what is in use), one step
 * ahead (what a daemon killed between counting a step and pushing it
 * would leave). Each time the new daemon counts what the memfd holds,
 * backs nothing, and the pool still reaches its most with nothing lost;
 * for a pool that does not grow the word means nothing at all.
 */
static void forged_count(const char *name, uint32_t growth, uint32_t forged)
{
	static uint8_t seen[1024];
	struct tally t = { .seen = seen };
	struct shmbus_consumer *keep;
	struct shmbus_pool_info pi;
	struct shmbus *bus;
	uint64_t held;
	int sent, more, err;
	pid_t d;

	memset(seen, 0, sizeof(seen));
	d = daemon_up(NULL);
	bus = bus_new(name, growth);
	keep = shmbus_consumer__new(bus, "q", NULL);
	assert_non_null(keep);
	sent = publish(bus, 0, 50, 2000, &err);
	assert_int_equal(sent, 50);
	held = t_arena_bytes(name);
	daemon_down(d);
	WRITE_ONCE(pool_desc(name)->nr_live, forged);
	d = daemon_up(NULL);
	rejoined(bus);
	pi = pool0(bus);
	print_message("%s: nr_live forged to %u: adopted as %u of %u chunks, "
		      "%llu bytes held (%llu before)\n", name, forged,
		      pi.chunks, pi.chunks_max,
		      (unsigned long long)t_arena_bytes(name),
		      (unsigned long long)held);
	assert_int_equal(pi.chunks, 64);
	assert_int_equal(t_arena_bytes(name), held);
	more = publish(bus, sent, 1000, 500, &err);
	sent += more;
	pi = pool0(bus);
	print_message("%s: then %d more, %s at %u of %u chunks\n", name,
		      more, strerror(-err), pi.chunks, pi.chunks_max);
	assert_int_equal(err, -ENOMEM);
	assert_int_equal(pi.chunks, pi.chunks_max);
	assert_int_equal(sent, (int)pi.chunks_max);
	shmbus_consumer__free(keep);
	drain(bus, sent, &t);
	report(name, sent, &t);
	assert_int_equal(t.received, sent);
	assert_int_equal(t.dup + t.corrupt, 0);
	shmbus__close(bus);
	daemon_down(d);
}

static void test_forged_counts(void **state)
{
	char want[96];

	(void)state;
	forged_count("forged.all", 8, 0);
	forged_count("forged.low", 8, 1);
	forged_count("forged.ahead", 8, 128);
	forged_count("forged.fixed", 1, 1);
	snprintf(want, sizeof(want), "forged.fixed: pool 0");
	assert_false(log_has(want));
}

/* A member clears the arena's grow bit and the free count while the pool
 * grows: the daemon goes by its validated copy, and the count in the
 * arena keeps up with the pool. */
static void test_live_feature_bit(void **state)
{
	struct shmbus_producer *p;
	struct shmbus_pool *pd;
	struct shmbus_sb *sb;
	struct shmbus *bus;
	pid_t d;
	int i;

	(void)state;
	d = daemon_up(NULL);
	bus = bus_new("bitless", 8);
	sb = t_arena_mapping("bitless");
	assert_non_null(sb);
	pd = pool_desc("bitless");
	p = shmbus_producer__new(bus, "q", NULL);	/* attached: repairs */
	assert_non_null(p);
	for (i = 0; i < 300; i++) {
		WRITE_ONCE(sb->features_incompat, 0);
		WRITE_ONCE(pd->free_count, 0);
		usleep(1000);
	}
	for (i = 0; i < 2000 && (READ_ONCE(pd->nr_live) != 512 ||
				 !READ_ONCE(sb->features_incompat)); i++)
		usleep(1000);
	print_message("grow bit cleared while growing: nr_live %u, bit %llu "
		      "again after %d ms\n", READ_ONCE(pd->nr_live),
		      (unsigned long long)READ_ONCE(sb->features_incompat), i);
	assert_int_equal(READ_ONCE(pd->nr_live), 512);
	assert_int_equal(pool0(bus).chunks, 512);
	assert_true(READ_ONCE(sb->features_incompat) &
		    SHMBUS_FEAT_INCOMPAT_GROW);
	shmbus_producer__free(p);
	shmbus__close(bus);
	daemon_down(d);
}

/*
 * The daemon killed -9 at a random moment while a producer fills a pool
 * that grows (64 chunks to 1024, steps every tick), and started again:
 * the producer's publishes wait through the gap (ENOMEM is a wait while
 * their timeout lasts), the next daemon adopts the pool as far as it had
 * grown, grows it on, and every message comes out once.
 */
static void test_killed_while_growing(void **state)
{
	static uint8_t seen[1024];
	const int rounds = (int)t_scaled(8), n = 1000;
	int lost = 0, dup = 0, corrupt = 0, total = 0;

	(void)state;
	srand((unsigned)getpid());
	for (int r = 0; r < rounds; r++) {
		struct tally t = { .seen = seen };
		char name[32];
		struct shmbus *bus;
		pid_t d, kid;
		int delay_us = rand() % 20000, ready[2];
		char x;

		memset(seen, 0, sizeof(seen));
		snprintf(name, sizeof(name), "kill%d", r);
		d = daemon_up(NULL);
		bus = bus_new(name, 16);
		assert_int_equal(pipe(ready), 0);
		kid = fork();
		assert_true(kid >= 0);
		if (!kid) {
			SHMBUS_OPTS(shmbus_open_opts, oo,
				    .flags = SHMBUS_OPEN_NOSTART);
			SHMBUS_OPTS(shmbus_pub_opts, po,
				    .timeout_ns = 20000 * MS);
			struct shmbus *b = shmbus__open(name, &oo);
			struct shmbus_producer *p =
				b ? shmbus_producer__new(b, "q", NULL) : NULL;
			struct msg m;

			CHILD_CHECK(p, "producer: %s", strerror(errno));
			CHILD_CHECK(write(ready[1], "r", 1) == 1, "ready");
			for (int i = 0; i < n; i++) {
				int err;

				fill(&m, i);
				err = shmbus_producer__publish(p, &m,
							       sizeof(m), &po);
				CHILD_CHECK(!err, "publish %d: %s", i,
					    strerror(-err));
			}
			_exit(0);
		}
		/* the kill lands while it publishes and the pool grows */
		assert_int_equal(read(ready[0], &x, 1), 1);
		close(ready[0]);
		close(ready[1]);
		usleep((useconds_t)delay_us);
		daemon_down(d);
		d = daemon_up(NULL);
		assert_int_equal(t_wait(kid, 60000), 0);
		rejoined(bus);
		drain(bus, n, &t);
		print_message("round %d, killed after %d us: pool at %u of %u; "
			      "sent %d received %d lost %d duplicated %d "
			      "corrupt %d\n", r, delay_us, pool0(bus).chunks,
			      pool0(bus).chunks_max, n, t.received,
			      n - t.received, t.dup, t.corrupt);
		total += n;
		lost += n - t.received;
		dup += t.dup;
		corrupt += t.corrupt;
		shmbus__close(bus);
		daemon_down(d);
	}
	print_message("killed while growing, %d rounds: sent %d received %d "
		      "lost %d duplicated %d corrupt %d\n", rounds, total,
		      total - lost, lost, dup, corrupt);
	assert_int_equal(lost, 0);
	assert_int_equal(dup + corrupt, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_on_demand),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_adopted),
		cmocka_unit_test(test_hostile_count),
		cmocka_unit_test(test_forged_counts),
		cmocka_unit_test(test_live_feature_bit),
		cmocka_unit_test(test_killed_while_growing),
	};
	int rc;

	rc = T_RUN_WITH_DAEMON("grow", tests);
	return rc;
}
