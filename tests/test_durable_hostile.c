// SPDX-License-Identifier: MIT
/*
 * test_durable_hostile.c - members of a bus against its durable queues.
 * The test process is a member that writes into the arena (a chunk header
 * in an intake, a cell taken out of an intake), and stops the daemon with
 * SIGSTOP to put a message where it wants it before the daemon looks. The
 * daemon must stay responsive (no loop over a message it cannot journal,
 * no intake it stops looking at), and keep its journals bounded by what
 * is in the queues (no live entry for a message a member took back).
 * And the state directory: one that other users could reach into is not
 * used.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmbus.h"
#include "shmbus/layout.h"
#include "helpers.h"

#define MS		1000000LL

static char state[PATH_MAX];
static pid_t dpid;		/* the daemon of the running test */

static int fresh(void **st);

/* ---- the daemon and the bus -------------------------------------------- */

/* A daemon on t_sock with state directory @dir (and @extra arguments,
 * NULL-terminated, at most four); its pid once it listens. */
static pid_t daemon_start_with(const char *dir, const char *const *extra)
{
	pid_t pid = t_daemon_start_state(t_sock, dir, extra);

	if (!pid)
		fail_msg("no daemon on %s", t_sock);
	return pid;
}

static pid_t daemon_start_in(const char *dir)
{
	return daemon_start_with(dir, NULL);
}

static pid_t daemon_start(void)
{
	return daemon_start_in(state);
}

static void daemon_kill(pid_t pid)
{
	assert_true(t_daemon_kill_pid(pid));
}

/* User plus system CPU time of @pid so far, in clock ticks. */
static long cpu_ticks(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut = 0, st = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	assert_non_null(f);
	assert_non_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	/* after the command's closing parenthesis: state is field 3,
	 * utime 14, stime 15 */
	p = strrchr(buf, ')');
	assert_non_null(p);
	assert_int_equal(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u "
				"%*u %*u %lu %lu", &ut, &st), 2);
	return (long)(ut + st);
}

/* Each test has a bus of its own: a daemon killed while the test holds
 * its bus is adopted by the next test's daemon. */
static struct shmbus *bus_open(const char *name,
			       const struct shmbus_open_opts *o)
{
	struct shmbus *bus = shmbus__open(name, o);

	if (!bus)
		fail_msg("open %s: %s (%s)", name, strerror(errno),
			 shmbus_errmsg());
	return bus;
}

static struct shmbus_journal_info journal(struct shmbus *bus, const char *q)
{
	struct shmbus_journal_info ji = { .sz = sizeof(ji) };

	assert_int_equal(shmbus__queue_journal(bus, q, &ji), 0);
	return ji;
}

static uint64_t stat_of(struct shmbus *bus, const char *name, unsigned st)
{
	struct shmbus_queue_info qi;

	assert_int_equal(shmbus__queue_info(bus, name, &qi), 0);
	return qi.stat[st];
}

/* ---- the arena, as a member sees it ------------------------------------- */

static struct shmbus_sb *sb_of(uint8_t *base)
{
	return (struct shmbus_sb *)base;
}

static struct shmbus_queue *queue_of(uint8_t *base, uint32_t qid)
{
	return (struct shmbus_queue *)(base + sb_of(base)->qdir_off) + qid;
}

/* The intake of durable queue @name. */
static struct shmbus_queue *intake_of(uint8_t *base, const char *name)
{
	for (uint32_t i = 0; i < sb_of(base)->max_queues; i++) {
		struct shmbus_queue *q = queue_of(base, i);

		if (q->gen && (q->flags & SHMBUS_QF_INTAKE) &&
		    !strncmp(q->name, name, SHMBUS_NAME_MAX))
			return q;
	}
	fail_msg("no intake for %s", name);
	return NULL;
}

/* The cell of position @pos in ring @q (cell pos % N, as ring.h). */
static struct shmbus_cell *cell_at(uint8_t *base, struct shmbus_queue *q,
				   uint64_t pos)
{
	struct shmbus_cell *cells = (struct shmbus_cell *)(base + q->ring_off);

	return &cells[(uint32_t)pos & (q->ring_cap - 1)];
}

static bool cell_full(uint8_t *base, struct shmbus_queue *q, uint64_t pos)
{
	uint64_t v = smp_load_acquire(&cell_at(base, q, pos)->v);

	return SHMBUS_CELL_SEQ(v) == (uint32_t)(pos + 1);
}

/* The position of the oldest message in ring @q. */
static uint64_t first_full(uint8_t *base, struct shmbus_queue *q)
{
	uint64_t p = q->head;

	for (uint32_t n = 0; n < q->ring_cap; n++, p++)
		if (cell_full(base, q, p))
			return p;
	fail_msg("ring %s is empty", q->name);
	return 0;
}

static struct shmbus_chunk *chunk_of(uint8_t *base, uint32_t ref)
{
	struct shmbus_pool *p = (struct shmbus_pool *)
		(base + sb_of(base)->pool_off) + SHMBUS_REF_POOL(ref);

	return (struct shmbus_chunk *)(base + p->base_off +
				       (uint64_t)SHMBUS_REF_IDX(ref) *
				       p->chunk_size);
}

/* Take the message at @pos out of ring @q as a consumer would: true if it
 * was still there. */
static bool steal(uint8_t *base, struct shmbus_queue *q, uint64_t pos)
{
	struct shmbus_cell *c = cell_at(base, q, pos);
	uint64_t v = smp_load_acquire(&c->v);

	if (SHMBUS_CELL_SEQ(v) != (uint32_t)(pos + 1))
		return false;
	return atomic_cmpxchg(&c->v, &v, SHMBUS_CELL(pos + q->ring_cap, 0));
}

/* ---- tests ----------------------------------------------------------- */

/*
 * The state directory holds every user's messages: the daemon keeps none
 * in one another user made, one others may write to, or one below a
 * directory others may write to (they could swap it for their own). Put
 * right, the next declare uses it.
 */
static void refused_then_fixed(const char *dir, const char *fix)
{
	SHMBUS_OPTS(shmbus_open_opts, o, .flags = SHMBUS_OPEN_NOSTART);
	SHMBUS_OPTS(shmbus_queue_opts, qo, .flags = SHMBUS_QUEUE_DURABLE);
	struct shmbus *bus;

	dpid = daemon_start_in(dir);
	bus = bus_open("dhstate", &o);
	assert_int_equal(shmbus__queue_declare(bus, "q", &qo), -EOPNOTSUPP);
	printf("%s: %s\n", dir, shmbus_errmsg());
	assert_non_null(strstr(shmbus_errmsg(), "not private"));
	assert_int_equal(system(fix), 0);
	assert_int_equal(shmbus__queue_declare(bus, "q", &qo), 1);
	shmbus__close(bus);
	daemon_kill(dpid);
	dpid = 0;
}

static void test_state_dir_private(void **st)
{
	char cmd[3 * PATH_MAX], link[PATH_MAX + 16];

	(void)st;
	/* made first by another user */
	assert_int_equal(mkdir(state, 0700), 0);
	assert_int_equal(chown(state, 65534, 65534), 0);
	snprintf(cmd, sizeof(cmd), "chown 0:0 '%s'", state);
	refused_then_fixed(state, cmd);
	fresh(NULL);

	/* others may write to it */
	assert_int_equal(mkdir(state, 0700), 0);
	assert_int_equal(chmod(state, 0777), 0);
	snprintf(cmd, sizeof(cmd), "chmod 0700 '%s'", state);
	refused_then_fixed(state, cmd);
	fresh(NULL);

	/* reached through a directory others may write to (not sticky) */
	assert_int_equal(mkdir(state, 0777), 0);
	assert_int_equal(chmod(state, 0777), 0);
	snprintf(link, sizeof(link), "%s/theirs", state);
	snprintf(cmd, sizeof(cmd), "chmod 0755 '%s'", state);
	refused_then_fixed(link, cmd);
}

/*
 * A journal record holds at most 1 MiB of payload: a durable queue with
 * larger messages is refused at its declare, not found out at the first
 * big message.
 */
static void test_msg_size_bound(void **st)
{
	SHMBUS_OPTS(shmbus_open_opts, o, .flags = SHMBUS_OPEN_NOSTART,
		    .nr_pools = 2,
		    .pools = { { 256, 256 }, { 4u << 20, 2 } });
	SHMBUS_OPTS(shmbus_queue_opts, big, .flags = SHMBUS_QUEUE_DURABLE,
		    .max_len = 16, .msg_size = 2u << 20);
	SHMBUS_OPTS(shmbus_queue_opts, mib, .flags = SHMBUS_QUEUE_DURABLE,
		    .max_len = 16, .msg_size = 1u << 20);
	struct shmbus *bus;

	(void)st;
	dpid = daemon_start();
	bus = bus_open("dhsize", &o);
	assert_int_equal(shmbus__queue_declare(bus, "big", &big), -EMSGSIZE);
	assert_int_equal(shmbus__queue_declare(bus, "mib", &mib), 1);
	shmbus__close(bus);
}

/*
 * A member makes a message in an intake claim more payload than a journal
 * record holds (its chunk, from a big pool, has room for it). The daemon
 * drops it, its producer hears why, and goes on: no loop over it (the
 * daemon idles), the producer's next message is confirmed and delivered.
 */
static void test_unjournalable_header(void **st)
{
	SHMBUS_OPTS(shmbus_open_opts, o, .flags = SHMBUS_OPEN_NOSTART,
		    .nr_pools = 2,
		    .pools = { { 256, 256 }, { 4u << 20, 2 } });
	SHMBUS_OPTS(shmbus_queue_opts, qo, .flags = SHMBUS_QUEUE_DURABLE,
		    .max_len = 16, .msg_size = 1u << 20,
		    .sync = SHMBUS_SYNC_NEVER);
	SHMBUS_OPTS(shmbus_producer_opts, po,
		    .flags = SHMBUS_PRODUCER_ASYNC_CONFIRM);
	static char payload[1000];
	struct shmbus *bus;
	struct shmbus_producer *p;
	struct shmbus_consumer *c;
	struct shmbus_queue *iq;
	struct shmbus_msg m;
	uint8_t *base;
	uint64_t pos;
	long t0, t1;
	int v = 42;

	(void)st;
	dpid = daemon_start();
	bus = bus_open("dhhead", &o);
	assert_int_equal(shmbus__queue_declare(bus, "q", &qo), 1);
	p = shmbus_producer__new(bus, "q", &po);
	assert_non_null(p);
	base = t_arena_mapping("dhhead");
	assert_non_null(base);
	iq = intake_of(base, "q");

	/* a 1000-byte message lands in the 4 MiB pool: the member says it
	 * is 3 MiB long before the daemon looks */
	assert_int_equal(kill(dpid, SIGSTOP), 0);
	assert_int_equal(shmbus_producer__publish(p, payload, sizeof(payload),
						  NULL), 0);
	pos = first_full(base, iq);
	chunk_of(base, SHMBUS_CELL_REF(cell_at(base, iq, pos)->v))->len =
		3u << 20;
	assert_int_equal(kill(dpid, SIGCONT), 0);

	usleep(200 * 1000);
	t0 = cpu_ticks(dpid);
	usleep(500 * 1000);
	t1 = cpu_ticks(dpid);
	printf("daemon CPU over 500 ms: %ld ticks of %ld/s\n", t1 - t0,
	       sysconf(_SC_CLK_TCK));
	assert_true((t1 - t0) * 10 < sysconf(_SC_CLK_TCK));	/* < 100 ms */
	assert_false(cell_full(base, iq, pos));
	assert_int_equal(shmbus_producer__confirm_wait(p, 5000 * MS),
			 -EMSGSIZE);
	assert_int_equal(stat_of(bus, "q", SHMBUS_STAT_DROPPED), 1);

	assert_int_equal(shmbus_producer__publish(p, &v, sizeof(v), NULL), 0);
	assert_int_equal(shmbus_producer__confirm_wait(p, 5000 * MS), 0);
	c = shmbus_consumer__new(bus, "q", NULL);
	assert_non_null(c);
	assert_int_equal(t_recv_int(c, &m, 2000 * MS), 42);
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	shmbus_consumer__free(c);
	shmbus_producer__free(p);
	shmbus__close(bus);
}

/*
 * A member takes one message out of an intake while the daemon is stopped:
 * the intake's head hint stays at that cell (a taker that does not move it
 * on). The daemon's look at the intake must move it on, as consumers do,
 * or once the producer is a ring's length ahead the daemon finds the
 * intake empty for good and the queue gets nothing more.
 */
static void test_intake_head_hint(void **st)
{
	SHMBUS_OPTS(shmbus_open_opts, o, .flags = SHMBUS_OPEN_NOSTART);
	SHMBUS_OPTS(shmbus_queue_opts, qo, .flags = SHMBUS_QUEUE_DURABLE,
		    .max_len = 64, .msg_size = 64,
		    .sync = SHMBUS_SYNC_NEVER);
	SHMBUS_OPTS(shmbus_producer_opts, po,
		    .flags = SHMBUS_PRODUCER_ASYNC_CONFIRM);
	struct shmbus_producer *p;
	struct shmbus_consumer *c;
	struct shmbus_queue *iq;
	struct shmbus *bus;
	struct shmbus_msg m;
	uint8_t *base;

	(void)st;
	dpid = daemon_start();
	bus = bus_open("dhhint", &o);
	assert_int_equal(shmbus__queue_declare(bus, "h", &qo), 1);
	base = t_arena_mapping("dhhint");
	assert_non_null(base);
	iq = intake_of(base, "h");
	c = shmbus_consumer__new(bus, "h", NULL);
	assert_non_null(c);

	p = shmbus_producer__new(bus, "h", &po);
	assert_non_null(p);
	assert_int_equal(kill(dpid, SIGSTOP), 0);
	t_publish_int(p, -1, NULL);
	assert_true(steal(base, iq, 0));
	assert_int_equal(kill(dpid, SIGCONT), 0);

	/* four laps of the intake's ring, each message confirmed (journaled
	 * and in the queue) and received */
	for (int i = 0; i < 4 * 64; i++) {
		int err = shmbus_producer__publish(p, &i, sizeof(i), NULL);

		if (!err)
			err = shmbus_producer__confirm_wait(p, 5000 * MS);
		if (err)
			fail_msg("publish %d: %s (intake head hint %llu)", i,
				 strerror(-err),
				 (unsigned long long)iq->head);
		assert_int_equal(t_recv_int(c, &m, 2000 * MS), i);
		assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	}
	shmbus_consumer__free(c);
	shmbus_producer__free(p);
	shmbus__close(bus);
}

/*
 * A member of one bus fills its durable queue's intake with a million
 * garbage cells while the daemon is stopped. A durable queue of another,
 * older bus (later in the daemon's list) has one message waiting. The
 * daemon drains in turns, within a budget: that message is confirmed
 * while most of the garbage is still there, not after all of it. (A
 * member filling its intake as fast as the daemon empties it would keep
 * the other bus waiting for as long as it likes.)
 */
static void test_other_bus_drained(void **st)
{
	SHMBUS_OPTS(shmbus_open_opts, o, .flags = SHMBUS_OPEN_NOSTART);
	SHMBUS_OPTS(shmbus_open_opts, big, .flags = SHMBUS_OPEN_NOSTART,
		    .ring_bytes = 64u << 20);
	SHMBUS_OPTS(shmbus_queue_opts, qo, .flags = SHMBUS_QUEUE_DURABLE,
		    .max_len = 16, .msg_size = 64,
		    .sync = SHMBUS_SYNC_NEVER);
	SHMBUS_OPTS(shmbus_queue_opts, fo, .flags = SHMBUS_QUEUE_DURABLE,
		    .max_len = 1u << 20, .msg_size = 64,
		    .sync = SHMBUS_SYNC_NEVER);
	SHMBUS_OPTS(shmbus_producer_opts, po,
		    .flags = SHMBUS_PRODUCER_ASYNC_CONFIRM);
	const uint64_t cells = 1u << 20;
	struct shmbus *victim, *flooded;
	struct shmbus_producer *p;
	struct shmbus_queue *iq;
	uint8_t *base;
	uint64_t left = 0;
	int64_t t0, t1, end;
	bool last_full;
	int v = 7, err;

	(void)st;
	dpid = daemon_start();
	victim = bus_open("dhvictim", &o);
	assert_int_equal(shmbus__queue_declare(victim, "v", &qo), 1);
	p = shmbus_producer__new(victim, "v", &po);
	assert_non_null(p);
	flooded = bus_open("dhflood", &big);
	assert_int_equal(shmbus__queue_declare(flooded, "f", &fo), 1);
	base = t_arena_mapping("dhflood");
	assert_non_null(base);
	iq = intake_of(base, "f");
	assert_int_equal(iq->ring_cap, cells);

	assert_int_equal(kill(dpid, SIGSTOP), 0);
	for (uint64_t pos = 0; pos < cells; pos++)
		WRITE_ONCE(cell_at(base, iq, pos)->v,
			   SHMBUS_CELL(pos + 1, SHMBUS_REF(7, 12345)));
	assert_int_equal(shmbus_producer__publish(p, &v, sizeof(v), NULL), 0);
	t0 = t_now_ns();
	assert_int_equal(kill(dpid, SIGCONT), 0);
	end = t0 + 20000 * MS;
	while ((err = shmbus_producer__confirm_wait(p, 0)) == -ETIMEDOUT &&
	       t_now_ns() < end)
		;
	/* the daemon takes the garbage in order: the last cell full means
	 * it was not through when it confirmed ours */
	last_full = cell_full(base, iq, cells - 1);
	t1 = t_now_ns();
	for (uint64_t pos = 0; pos < cells; pos++)
		left += cell_full(base, iq, pos);
	printf("confirmed after %.1f ms, the other bus's intake %s then (%llu "
	       "of %llu garbage cells left a moment later)\n",
	       (double)(t1 - t0) / 1e6, last_full ? "not drained" : "drained",
	       (unsigned long long)left, (unsigned long long)cells);
	assert_int_equal(err, 0);
	assert_true(last_full);
	shmbus_producer__free(p);
	shmbus__close(flooded);
	shmbus__close(victim);
}

/*
 * A sync-never queue's journal shrinks once its messages are settled: a
 * segment goes only when the records that settled it are synced, so the
 * daemon syncs for its gc when nothing else does. (Before, such a
 * journal kept every segment it ever wrote.)
 */
static void test_never_segments_go(void **st)
{
	static const char *const args[] = { "--segment-size", "64K", NULL };
	SHMBUS_OPTS(shmbus_open_opts, o, .flags = SHMBUS_OPEN_NOSTART);
	SHMBUS_OPTS(shmbus_queue_opts, qo, .flags = SHMBUS_QUEUE_DURABLE,
		    .max_len = 64, .msg_size = 4096,
		    .sync = SHMBUS_SYNC_NEVER);
	static char payload[4000];
	struct shmbus_journal_info ji;
	struct shmbus_producer *p;
	struct shmbus_consumer *c;
	struct shmbus *bus;
	struct shmbus_msg m;

	(void)st;
	dpid = daemon_start_with(state, args);
	bus = bus_open("dhnever", &o);
	assert_int_equal(shmbus__queue_declare(bus, "n", &qo), 1);
	p = shmbus_producer__new(bus, "n", NULL);
	assert_non_null(p);
	c = shmbus_consumer__new(bus, "n", NULL);
	assert_non_null(c);
	/* 2 MB through the queue, 32 segments' worth */
	for (int i = 0; i < 512; i++) {
		assert_int_equal(shmbus_producer__publish(p, payload,
							  sizeof(payload),
							  NULL), 0);
		assert_int_equal(shmbus_consumer__receive_view(c, &m,
							       2000 * MS), 0);
		assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	}
	for (int i = 0; i < 3000; i++) {
		ji = journal(bus, "n");
		if (!ji.live && ji.bytes < (256u << 10))
			break;
		usleep(1000);
	}
	printf("sync never, 2 MB through, all settled: journal %llu bytes in "
	       "%u segments, %llu syncs\n", (unsigned long long)ji.bytes,
	       ji.segments, (unsigned long long)ji.syncs);
	assert_int_equal(ji.live, 0);
	assert_true(ji.bytes < (256u << 10));
	shmbus_consumer__free(c);
	shmbus_producer__free(p);
	shmbus__close(bus);
}

/*
 * What a user's durable queues take on disk is charged to it (disk quota,
 * here 256 KiB; segments of 64 KiB): past it nothing more is journaled,
 * its publishes fail EDQUOT, and once its consumers settle what it had
 * the journals shrink and publishes go through again. Run as uid 65534
 * (root is exempt).
 */
#define NOBODY	65534
#define QUOTA	(256u << 10)

static void nobody_fills_disk(void)
{
	SHMBUS_OPTS(shmbus_open_opts, o, .flags = SHMBUS_OPEN_NOSTART);
	SHMBUS_OPTS(shmbus_queue_opts, qo, .flags = SHMBUS_QUEUE_DURABLE,
		    .max_len = 4096, .msg_size = 4096,
		    .sync = SHMBUS_SYNC_NEVER);
	SHMBUS_OPTS(shmbus_producer_opts, po,
		    .flags = SHMBUS_PRODUCER_ASYNC_CONFIRM);
	static char payload[4000];
	struct shmbus_journal_info ji = { .sz = sizeof(ji) };
	struct shmbus_producer *p;
	struct shmbus_consumer *c;
	struct shmbus_msg m;
	struct shmbus *bus;
	int err = 0, i, got = 0;

	shmbus_set_print(NULL);
	CHILD_CHECK(!setgroups(0, NULL) && !setgid(NOBODY) && !setuid(NOBODY),
		    "setuid: %s", strerror(errno));
	bus = shmbus__open("dhdisk", &o);
	CHILD_CHECK(bus, "open: %s", shmbus_errmsg());
	CHILD_CHECK(shmbus__queue_declare(bus, "d", &qo) == 1, "declare: %s",
		    shmbus_errmsg());
	p = shmbus_producer__new(bus, "d", &po);
	CHILD_CHECK(p, "producer: %s", shmbus_errmsg());
	/* one message at a time, each confirmed: at most one past the
	 * quota is journaled */
	for (i = 0; i < 1000; i++) {
		CHILD_CHECK(!shmbus_producer__publish(p, payload,
						      sizeof(payload), NULL),
			    "publish %d", i);
		err = shmbus_producer__confirm_wait(p, 5000 * MS);
		if (err)
			break;
	}
	CHILD_CHECK(err == -EDQUOT, "publish %d: %s, want EDQUOT", i,
		    strerror(-err));
	CHILD_CHECK(!shmbus__queue_journal(bus, "d", &ji), "journal");
	printf("disk quota %u: publish %d failed EDQUOT, journal %llu bytes "
	       "in %u segments, %llu live\n", QUOTA, i,
	       (unsigned long long)ji.bytes, ji.segments,
	       (unsigned long long)ji.live);
	CHILD_CHECK(ji.bytes < QUOTA + 2 * sizeof(payload) + 1024,
		    "%llu bytes", (unsigned long long)ji.bytes);

	/* its consumer takes everything: the journal shrinks, publishes
	 * are journaled again */
	c = shmbus_consumer__new(bus, "d", NULL);
	CHILD_CHECK(c, "consumer: %s", shmbus_errmsg());
	while (shmbus_consumer__receive_view(c, &m, 200 * MS) == 0) {
		CHILD_CHECK(!shmbus_consumer__ack(c, &m), "ack");
		got++;
	}
	CHILD_CHECK(got == i, "received %d of %d", got, i);
	for (int k = 0; k < 3000; k++) {
		CHILD_CHECK(!shmbus__queue_journal(bus, "d", &ji), "journal");
		if (ji.bytes < QUOTA / 2)
			break;
		usleep(1000);
	}
	CHILD_CHECK(ji.bytes < QUOTA / 2, "journal %llu bytes after the "
		    "drain", (unsigned long long)ji.bytes);
	CHILD_CHECK(!shmbus_producer__publish(p, payload, sizeof(payload),
					      NULL), "publish");
	err = shmbus_producer__confirm_wait(p, 5000 * MS);
	CHILD_CHECK(!err, "publish after the drain: %s", strerror(-err));
	printf("drained: journal %llu bytes, publishes confirmed again\n",
	       (unsigned long long)ji.bytes);
	_exit(0);
}

static void test_disk_quota(void **st)
{
	static const char *const args[] = { "--quota", "disk=256K",
					    "--segment-size", "64K", NULL };
	pid_t kid;

	(void)st;
	dpid = daemon_start_with(state, args);
	assert_int_equal(chmod(t_dir, 0755), 0);	/* nobody's way in */
	kid = fork();
	assert_true(kid >= 0);
	if (!kid)
		nobody_fills_disk();
	assert_int_equal(t_wait(kid, 60000), 0);
}

/*
 * A member takes messages back out of an intake after the daemon journaled
 * them and before it moved them into the queue. Those never reach the
 * queue, so nothing ever acks them: their journal entries must go, or a
 * member grows root's daemon's memory and disk a record at a time. Once
 * the queue is drained the journal holds nothing live.
 */
static void test_taken_from_intake(void **st)
{
	SHMBUS_OPTS(shmbus_open_opts, o, .flags = SHMBUS_OPEN_NOSTART);
	SHMBUS_OPTS(shmbus_queue_opts, qo, .flags = SHMBUS_QUEUE_DURABLE,
		    .max_len = 1024, .msg_size = 64,
		    .sync = SHMBUS_SYNC_NEVER);
	SHMBUS_OPTS(shmbus_producer_opts, po,
		    .flags = SHMBUS_PRODUCER_ASYNC_CONFIRM);
	const unsigned burst = 512, take = 128;
	unsigned stolen = 0, late = 0, got = 0, r;
	struct shmbus_producer *p;
	struct shmbus_consumer *c;
	struct shmbus_queue *iq;
	struct shmbus *bus;
	struct shmbus_msg m;
	uint8_t *base;

	(void)st;
	dpid = daemon_start();
	bus = bus_open("dhtaken", &o);
	assert_int_equal(shmbus__queue_declare(bus, "st", &qo), 1);
	p = shmbus_producer__new(bus, "st", &po);
	assert_non_null(p);
	c = shmbus_consumer__new(bus, "st", NULL);
	assert_non_null(c);
	base = t_arena_mapping("dhtaken");
	assert_non_null(base);
	iq = intake_of(base, "st");

	/* until some were taken after their journal write (the daemon may
	 * run through a whole burst before we look, or not have looked) */
	for (r = 0; r < 64 && (r < 8 || !late); r++) {
		uint64_t first, last, written = journal(bus, "st").written;
		unsigned took = 0;
		int64_t end;

		/* a burst the daemon takes as one batch: journaled in one
		 * write, then moved into the queue one by one; the last
		 * ones are taken back once the first has moved */
		assert_int_equal(kill(dpid, SIGSTOP), 0);
		for (unsigned k = 0; k < burst; k++)
			t_publish_int(p, (int)(r * burst + k), NULL);
		/* the intake's positions count its messages: nobody else
		 * publishes (its head hint stops at a cell we took) */
		first = (uint64_t)r * burst;
		last = first + burst - 1;
		if (!cell_full(base, iq, first) || !cell_full(base, iq, last))
			fail_msg("round %u: cells %llu..%llu: %llx %llx", r,
				 (unsigned long long)first,
				 (unsigned long long)last,
				 (unsigned long long)cell_at(base, iq, first)->v,
				 (unsigned long long)cell_at(base, iq, last)->v);
		assert_int_equal(kill(dpid, SIGCONT), 0);
		end = t_now_ns() + 5000 * MS;
		while (cell_full(base, iq, first) && t_now_ns() < end)
			;
		if (cell_full(base, iq, first))
			fail_msg("round %u: the daemon left the intake alone "
				 "for 5 s (head %llu)", r,
				 (unsigned long long)iq->head);
		for (uint64_t k = 0; k < take; k++)
			took += steal(base, iq, last - k);
		/* what reached the queue */
		while (shmbus_consumer__receive_view(c, &m, 100 * MS) == 0) {
			assert_int_equal(shmbus_consumer__ack(c, &m), 0);
			got++;
		}
		/* the whole burst journaled: what we took was taken after */
		if (journal(bus, "st").written - written == burst)
			late += took;
		stolen += took;
	}
	printf("%u rounds: %u published, %u taken from the intake (%u after "
	       "their journal write), %u received\n", r, r * burst, stolen,
	       late, got);
	assert_int_equal(got + stolen, r * burst);
	assert_true(late > 0);
	for (int i = 0; i < 3000 && journal(bus, "st").live; i++)
		usleep(1000);
	assert_int_equal(journal(bus, "st").live, 0);
	assert_true(stat_of(bus, "st", SHMBUS_STAT_CORRUPT) >= late);
	shmbus_consumer__free(c);
	shmbus_producer__free(p);
	shmbus__close(bus);
}

/* The test's daemon goes, whatever the test's end. */
static int stop(void **st)
{
	(void)st;
	if (dpid > 0)
		daemon_kill(dpid);
	dpid = 0;
	return 0;
}

/* Each test in a fresh state directory. */
static int fresh(void **st)
{
	char cmd[PATH_MAX + 16];

	(void)st;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", state);
	return system(cmd) == 0 ? 0 : -1;
}

#define T(f)	cmocka_unit_test_setup_teardown(f, fresh, stop)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_msg_size_bound),
		T(test_state_dir_private),
		T(test_unjournalable_header),
		T(test_intake_head_hint),
		T(test_taken_from_intake),
		T(test_other_bus_drained),
		T(test_never_segments_go),
		T(test_disk_quota),
	};
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	t_env_setup();
	snprintf(state, sizeof(state), "%s/state", t_dir);
	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	rc = cmocka_run_group_tests_name("durable_hostile", tests, NULL,
					 NULL);
	fresh(NULL);
	t_env_teardown();
	return rc;
}
