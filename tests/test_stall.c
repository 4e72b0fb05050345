// SPDX-License-Identifier: MIT
/*
 * test_stall.c - a member that stays inside a read-side section cannot
 * hold a bus's grace periods for ever. Uid 65534, a member of uid 1001's
 * 0666 bus, writes "inside a section since epoch 0" into its own slot and
 * sleeps attached. Meanwhile root deletes and re-declares a queue of that
 * bus in a loop, and uid 1001, under --quota queues=8, creates and drops
 * exclusive subscriptions (private queues, charged to it until the
 * daemon reclaims them after a grace period). Every declare and subscribe
 * must succeed: the daemon closes the staller's connection after its
 * bound (logged with its uid and pid), the grace periods complete and the
 * charges come back. The staller, woken later, gets errors, not a crash.
 * A consumer SIGSTOPped while asleep (outside any section) the whole time
 * keeps its connection and receives afterwards. The daemon's RSS is
 * printed before and after.
 */
#include <grp.h>
#include <sys/wait.h>

#include "helpers.h"
#include "shmbus.h"
#include "shmbus/layout.h"

#define VICTIM	1001
#define NOBODY	65534
#define ROUNDS	16	/* subscriptions by the victim, 500 ms apart */

static char ssock[128], slog[128];
static pid_t sdaemon;

/* in shared memory: flags polled with READ_ONCE, counters read after
 * their writer exited */
struct shared {
	int ready, stalled, victim_done;
	int sub_ok, sub_fail, sub_errno;
	int decl_ok, decl_fail, decl_err;
	int late_recv, late_decl;	/* the staller's, once woken */
};

static pid_t daemon_start(void)
{
	pid_t pid;

	snprintf(ssock, sizeof(ssock), "%s/s%d.sock", t_dir, (int)getpid());
	snprintf(slog, sizeof(slog), "%s/s%d.log", t_dir, (int)getpid());
	unlink(ssock);
	pid = fork();
	if (!pid) {
		execl(getenv("SHMBUS_DAEMON"), "shmbusd", "--socket", ssock,
		      "--log", slog, "--quota", "queues=8", (char *)NULL);
		_exit(127);
	}
	assert_true(pid > 0);
	sdaemon = pid;
	for (int i = 0; i < 1000 && access(ssock, F_OK); i++)
		usleep(5000);
	assert_int_equal(access(ssock, F_OK), 0);
	setenv("SHMBUS_SOCKET", ssock, 1);
	chmod(t_dir, 0755);	/* let the other uids reach the socket */
	return pid;
}

/* @what of /proc/PID/status (kB): VmRSS counts the arena pages the
 * daemon touched, RssAnon its own heap */
static long rss_kb(pid_t pid, const char *what)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, what, strlen(what)) &&
		    sscanf(line + strlen(what), ": %ld", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

/* How much the daemon's heap may grow (kB): 4 MiB; under TSan its shadow
 * memory and under ASan its quarantine of freed blocks are anonymous
 * memory too */
static long heap_slack(void)
{
	const char *san = getenv("SAN");

	return san && (!strcmp(san, "thread") || !strcmp(san, "address")) ?
	       65536 : 4096;
}

static void become(uid_t uid)
{
	if (setgroups(0, NULL) || setgid(uid) || setuid(uid))
		_exit(99);
	shmbus_set_print(NULL);
}

static struct shmbus *open_shared(void)
{
	SHMBUS_OPTS(shmbus_open_opts, o, .flags = SHMBUS_OPEN_NOCREATE |
					    SHMBUS_OPEN_OWNER,
		    .owner_uid = VICTIM);

	return shmbus__open("shared", &o);
}

/* uid 1001: its bus, then ROUNDS exclusive subscriptions, each dropped */
static void victim(struct shared *sh)
{
	SHMBUS_OPTS(shmbus_open_opts, o, .mode = 0666);
	SHMBUS_OPTS(shmbus_queue_opts, q, .max_consumers = 4);
	SHMBUS_OPTS(shmbus_sub_opts, so, .max_consumers = 1);
	struct shmbus *b;

	become(VICTIM);
	b = shmbus__open("shared", &o);
	if (!b || shmbus__queue_declare(b, "stay", &q) != 1 ||
	    shmbus__queue_declare(b, "work", &q) != 1 ||
	    shmbus__topic_declare(b, "t", NULL) != 1)
		_exit(2);
	WRITE_ONCE(sh->ready, 1);
	while (!READ_ONCE(sh->stalled))
		usleep(1000);
	for (int i = 0; i < ROUNDS; i++) {
		struct shmbus_consumer *c;

		c = shmbus_consumer__subscribe(b, "t", &so);
		if (c) {
			sh->sub_ok++;
			shmbus_consumer__free(c);
		} else {
			sh->sub_fail++;
			sh->sub_errno = errno;
			fprintf(stderr, "victim: subscribe %d: %s (%s)\n", i,
				strerror(errno), shmbus_errmsg());
		}
		usleep(500 * 1000);
	}
	shmbus__close(b);
	_exit(0);
}

/* root: delete and re-declare "work" until the victim is done */
static void churn(struct shared *sh)
{
	SHMBUS_OPTS(shmbus_queue_opts, q, .max_consumers = 4);
	struct shmbus *b = open_shared();

	if (!b)
		_exit(2);
	while (!READ_ONCE(sh->victim_done)) {
		int r = shmbus__queue_delete(b, "work");

		if (!r)
			r = shmbus__queue_declare(b, "work", &q);
		if (r == 1) {
			sh->decl_ok++;
		} else {
			sh->decl_fail++;
			sh->decl_err = r;
		}
		usleep(100 * 1000);
	}
	shmbus__close(b);
	_exit(0);
}

/* uid 65534: attach, claim a read-side section since epoch 0, sleep */
static void staller(struct shared *sh)
{
	struct shmbus_consumer *c;
	struct shmbus_sb *sb;
	struct shmbus *b;
	uint8_t *base;
	char buf[64];
	int found = 0;

	become(NOBODY);
	b = open_shared();
	c = b ? shmbus_consumer__new(b, "stay", NULL) : NULL;
	base = t_arena_mapping("shared");
	if (!c || !base)
		_exit(2);
	sb = (struct shmbus_sb *)base;
	for (uint32_t i = 0; i < sb->max_slots; i++) {
		struct shmbus_slot *s = (struct shmbus_slot *)
			(base + sb->slot_off + (size_t)i * sb->slot_size);

		if (s->state == SHMBUS_SLOT_ACTIVE &&
		    s->pid == (uint32_t)getpid()) {
			s->rcu_epoch = 1;
			found++;
		}
	}
	if (found != 1)
		_exit(3);
	WRITE_ONCE(sh->stalled, 1);
	sleep(5);	/* a stopped or hostile reader: well past the bound */
	/* closed by now; its memory may be reused: errors, never a crash */
	sh->late_recv = (int)shmbus_consumer__receive(c, buf, sizeof(buf),
						      100 * 1000 * 1000);
	sh->late_decl = shmbus__queue_declare(b, "mine", NULL);
	shmbus_consumer__free(c);
	shmbus__close(b);
	_exit(0);
}

/* root: a consumer asleep in receive (outside any section) */
static void sleeper(struct shared *sh)
{
	struct shmbus *b = open_shared();
	struct shmbus_consumer *c;
	char buf[64];
	ssize_t n;

	c = b ? shmbus_consumer__new(b, "stay", NULL) : NULL;
	if (!c)
		_exit(2);
	WRITE_ONCE(sh->ready, 2);
	n = shmbus_consumer__receive(c, buf, sizeof(buf),
				     30LL * 1000 * 1000 * 1000);
	_exit(n == 5 && !memcmp(buf, "hello", 5) ? 0 : 3);
}

static char proc_state(pid_t pid)
{
	char path[64], buf[512], *p;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f || !fgets(buf, sizeof(buf), f)) {
		if (f)
			fclose(f);
		return '?';
	}
	fclose(f);
	p = strrchr(buf, ')');
	return p && p[1] && p[2] ? p[2] : '?';
}

static void test_staller_is_closed(void **state)
{
	struct shared *sh = t_shared(sizeof(*sh));
	pid_t d, v, ch, st, sl;
	long rss0, rss1, anon0, anon1;
	char line[512];
	int logged = 0, stopped_ok = 1, rc;
	struct shmbus_producer *p;
	struct shmbus *b;
	FILE *f;

	(void)state;
	d = daemon_start();
	v = fork();
	if (!v)
		victim(sh);
	while (READ_ONCE(sh->ready) != 1 && t_pid_running(v))
		usleep(1000);
	assert_int_equal(sh->ready, 1);
	sl = fork();
	if (!sl)
		sleeper(sh);
	while (READ_ONCE(sh->ready) != 2 && t_pid_running(sl))
		usleep(1000);
	assert_int_equal(sh->ready, 2);
	/* asleep on its eventfd, then stopped there */
	for (int i = 0; i < 2000 && proc_state(sl) != 'S'; i++)
		usleep(1000);
	usleep(100 * 1000);
	assert_int_equal(proc_state(sl), 'S');
	kill(sl, SIGSTOP);
	rss0 = rss_kb(d, "VmRSS");
	anon0 = rss_kb(d, "RssAnon");
	ch = fork();
	if (!ch)
		churn(sh);
	st = fork();
	if (!st)
		staller(sh);
	rc = t_wait(v, 60000);
	WRITE_ONCE(sh->victim_done, 1);
	assert_int_equal(rc, 0);
	assert_int_equal(t_wait(ch, 10000), 0);
	rc = t_wait(st, 20000);
	rss1 = rss_kb(d, "VmRSS");
	anon1 = rss_kb(d, "RssAnon");

	/* the stopped consumer was never closed: it still receives */
	kill(sl, SIGCONT);
	b = shmbus__open("shared", &(struct shmbus_open_opts){
		.sz = sizeof(struct shmbus_open_opts),
		.flags = SHMBUS_OPEN_NOCREATE | SHMBUS_OPEN_OWNER,
		.owner_uid = VICTIM });
	assert_non_null(b);
	p = shmbus_producer__new(b, "stay", NULL);
	assert_non_null(p);
	assert_int_equal(shmbus_producer__publish(p, "hello", 5, NULL), 0);
	if (t_wait(sl, 10000) != 0)
		stopped_ok = 0;
	shmbus_producer__free(p);
	shmbus__close(b);

	f = fopen(slog, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		if (strstr(line, "read-side section") &&
		    strstr(line, "uid 65534") && strstr(line, "shared")) {
			printf("daemon log: %s", line);
			logged++;
		}
	}
	fclose(f);
	printf("victim subscriptions (quota queues=8): %d ok, %d failed "
	       "(last: %s)\n", sh->sub_ok, sh->sub_fail,
	       sh->sub_fail ? strerror(sh->sub_errno) : "-");
	printf("root delete + re-declare: %d ok, %d failed (last %d)\n",
	       sh->decl_ok, sh->decl_fail, sh->decl_err);
	printf("staller: exit %d; after the bound: receive %d, declare %d\n",
	       rc, sh->late_recv, sh->late_decl);
	printf("stopped consumer: %s\n", stopped_ok ? "kept, received" :
	       "LOST");
	printf("daemon RSS: %ld kB before, %ld kB after (heap, RssAnon: "
	       "%ld kB, %ld kB; the rest is arena pages)\n", rss0, rss1, anon0,
	       anon1);

	assert_int_equal(sh->sub_fail, 0);
	assert_int_equal(sh->sub_ok, ROUNDS);
	assert_int_equal(sh->decl_fail, 0);
	assert_true(sh->decl_ok > 0);
	assert_int_equal(rc, 0);		/* no crash: it exited */
	assert_true(sh->late_recv < 0);
	/* its connection is gone (not -EACCES: the daemon never saw it) */
	assert_true(sh->late_decl == -ECONNRESET ||
		    sh->late_decl == -ENOTCONN);
	assert_true(logged >= 1);
	assert_true(stopped_ok);
	assert_true(anon1 > 0 && anon1 < anon0 + heap_slack());

	kill(d, SIGTERM);
	assert_true(t_wait(d, 10000) >= 0);
	sdaemon = 0;
	setenv("SHMBUS_SOCKET", t_sock, 1);
	chmod(t_dir, 0700);
}

/*
 * The orphan sweeps a stalled bus keeps are capped: a member's attach and
 * free cycles, each leaving a sweep (its slot's lease table names a
 * QUEUED chunk in no ring), get -EAGAIN at the cap while another of its
 * connections stalls the bus; after the bound they go on, and the
 * daemon's heap stays flat.
 */
static void test_sweeps_capped(void **state)
{
	SHMBUS_OPTS(shmbus_queue_opts, q, .max_consumers = 4, .max_len = 64,
		    .msg_size = 200);
	struct shared *sh = t_shared(sizeof(*sh));
	int ok = 0, again = 0, first_again = -1, logged = 0, rc;
	struct shmbus_sb *sb;
	struct shmbus_pool *p0;
	struct shmbus_chunk *ch;
	long anon0, anon1;
	struct shmbus *b;
	uint8_t *base;
	char line[512];
	int64_t end;
	pid_t d, st;
	FILE *f;

	(void)state;
	d = daemon_start();
	/* small pools and ring area: each release's sweep is quick to
	 * start, so the cycles outrun the 2 s bound */
	b = shmbus__open("capb", &(struct shmbus_open_opts){
		.sz = sizeof(struct shmbus_open_opts), .max_queues = 4,
		.max_slots = 16, .ring_bytes = 64 * 1024, .nr_pools = 1,
		.pools = { { .payload = 200, .count = 64 } } });
	assert_non_null(b);
	assert_int_equal(shmbus__queue_declare(b, "q", &q), 1);
	base = t_arena_mapping("capb");
	assert_non_null(base);
	sb = (struct shmbus_sb *)base;
	p0 = (struct shmbus_pool *)(base + sb->pool_off);
	ch = (struct shmbus_chunk *)(base + p0->base_off + 5 * p0->chunk_size);
	st = fork();
	if (!st) {	/* its own connection: stall, sleep, exit */
		struct shmbus *b2 = shmbus__open("capb", NULL);
		struct shmbus_consumer *c;

		c = b2 ? shmbus_consumer__new(b2, "q", NULL) : NULL;
		if (!c)
			_exit(2);
		for (uint32_t i = 0; i < sb->max_slots; i++) {
			struct shmbus_slot *s = (struct shmbus_slot *)
				(base + sb->slot_off + (size_t)i * sb->slot_size);

			if (s->state == SHMBUS_SLOT_ACTIVE &&
			    s->pid == (uint32_t)getpid())
				s->rcu_epoch = 1;
		}
		WRITE_ONCE(sh->stalled, 1);
		sleep(5);
		_exit(0);
	}
	while (!READ_ONCE(sh->stalled) && t_pid_running(st))
		usleep(1000);
	assert_int_equal(READ_ONCE(sh->stalled), 1);
	anon0 = rss_kb(d, "RssAnon");
	end = t_now_ns() + 20LL * 1000 * 1000 * 1000;
	while (ok < 1000 && t_now_ns() < end) {
		struct shmbus_consumer *c = shmbus_consumer__new(b, "q", NULL);
		int found = 0;

		if (!c) {
			assert_int_equal(errno, EAGAIN);
			if (!again++)
				first_again = ok;
			usleep(2000);
			continue;
		}
		for (uint32_t i = 0; i < sb->max_slots; i++) {
			struct shmbus_slot *s = (struct shmbus_slot *)
				(base + sb->slot_off + (size_t)i * sb->slot_size);

			if (s->state != SHMBUS_SLOT_ACTIVE ||
			    s->pid != (uint32_t)getpid())
				continue;
			s->lease_hi = 1;
			s->lease[0].word = 0;
			s->lease[0].ref = SHMBUS_REF(0, 5);
			ch->owner = SHMBUS_OWNER(SHMBUS_OWNER_GEN(ch->owner),
						 SHMBUS_CHUNK_QUEUED, i);
			found++;
		}
		assert_int_equal(found, 1);
		shmbus_consumer__free(c);
		ok++;
	}
	anon1 = rss_kb(d, "RssAnon");
	rc = t_wait(st, 10000);
	shmbus__close(b);
	f = fopen(slog, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		logged += strstr(line, "attach refused") != NULL;
	fclose(f);
	printf("attach+free with a forged lease: %d done, %d -EAGAIN (first "
	       "after %d); %d refusals logged; staller exit %d\n", ok, again,
	       first_again, logged, rc);
	printf("daemon heap (RssAnon): %ld kB before, %ld kB after\n", anon0,
	       anon1);
	assert_int_equal(ok, 1000);
	assert_true(again > 0);
	assert_true(first_again >= 50);	/* the cap, not the first ones */
	assert_true(logged > 0);
	assert_int_equal(rc, 0);
	assert_true(anon1 > 0 && anon1 < anon0 + heap_slack());

	kill(d, SIGTERM);
	assert_true(t_wait(d, 10000) >= 0);
	sdaemon = 0;
	setenv("SHMBUS_SOCKET", t_sock, 1);
	chmod(t_dir, 0700);
}

static int reap(void **state)
{
	(void)state;
	if (sdaemon > 0) {
		kill(sdaemon, SIGKILL);
		waitpid(sdaemon, NULL, 0);
		sdaemon = 0;
	}
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_staller_is_closed, reap),
		cmocka_unit_test_teardown(test_sweeps_capped, reap),
	};

	return T_RUN_WITH_DAEMON("stall", tests);
}
