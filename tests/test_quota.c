// SPDX-License-Identifier: MIT
/*
 * test_quota.c - what one local user can make root's daemon allocate:
 *  - the daemon raises its RLIMIT_NOFILE soft limit to the hard one;
 *  - a seat's eventfd is made when a consumer first takes the seat, not
 *    at declare (the daemon's /proc/PID/fd counted);
 *  - an unprivileged uid declaring queues x seats under a small fd
 *    budget hits -EDQUOT with a reason, and root still declares,
 *    attaches and publishes (no EMFILE);
 *  - two uids, each under its own share, stopped together by the share
 *    of all users, and root keeps the rest;
 *  - each quota (buses, bytes, queues, seats, conns) hit, with its
 *    reason, and given back when the resource goes;
 *  - a producer attached before a consumer took a new seat still wakes
 *    it: consumers come and go while the producer publishes to
 *    sleepers; sent / received / lost / duplicated.
 * Every daemon here is started by the test (its flags matter) and runs
 * as root; the unprivileged uid is 65534, by fork + setuid.
 */
#include <grp.h>
#include <sys/resource.h>

#include "helpers.h"
#include "shmbus.h"
#include "shmbus/layout.h"

#define NOBODY	65534

static char qsock[128];
static pid_t qdaemon;	/* the running one, killed by teardown on failure */

/* Start shmbusd on qsock with @args (NULL-terminated) and, if @nofile,
 * RLIMIT_NOFILE soft @soft / hard @nofile; wait until it listens. */
static pid_t daemon_start(rlim_t soft, rlim_t nofile, const char *const *args)
{
	const char *argv[16] = { "shmbusd", "--socket", qsock, "--log",
				 "/dev/null" };
	int n = 5;
	pid_t pid;

	snprintf(qsock, sizeof(qsock), "%s/q%d.sock", t_dir, (int)getpid());
	unlink(qsock);
	for (; args && *args && n < 15; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	pid = fork();
	if (!pid) {
		if (nofile) {
			struct rlimit rl = { soft, nofile };

			if (setrlimit(RLIMIT_NOFILE, &rl))
				_exit(126);
		}
		execv(getenv("SHMBUS_DAEMON"), (char *const *)argv);
		_exit(127);
	}
	assert_true(pid > 0);
	qdaemon = pid;
	for (int i = 0; i < 1000 && access(qsock, F_OK); i++)
		usleep(5000);
	assert_int_equal(access(qsock, F_OK), 0);
	setenv("SHMBUS_SOCKET", qsock, 1);
	return pid;
}

static void daemon_stop(pid_t pid)
{
	int rc;

	qdaemon = 0;
	kill(pid, SIGTERM);
	rc = t_wait(pid, 10000);
	/* 0, or killed by it before its loop took the signal over */
	assert_true(rc == 0 || rc == 128 + SIGTERM);
	setenv("SHMBUS_SOCKET", t_sock, 1);
}

/* After a failed test: its daemon must not outlive it. */
static int daemon_reap(void **state)
{
	(void)state;
	if (qdaemon > 0) {
		kill(qdaemon, SIGKILL);
		waitpid(qdaemon, NULL, 0);
		qdaemon = 0;
	}
	setenv("SHMBUS_SOCKET", t_sock, 1);
	chmod(t_dir, 0700);
	return 0;
}

/* The daemon's open eventfds. */
static int eventfds_of(pid_t pid)
{
	static const char *const ev[] = { "anon_inode:[eventfd]", NULL };

	return t_fds_linking(pid, ev);
}

/* Become uid/gid @uid, no supplementary groups (in a forked child). */
static void become(uid_t uid)
{
	shmbus_set_print(NULL);
	if (setgroups(0, NULL) || setgid(uid) || setuid(uid))
		_exit(99);
}

/* Exit status of @kid, which must end within 30 s. */
static int reap(pid_t kid)
{
	return t_wait(kid, 30000);
}

#define MUST(cond, ...)	CHILD_CHECK(cond, __VA_ARGS__)

/* The reason of the last failure must be @want. */
#define MUST_SAY(want)							\
	MUST(!strcmp(shmbus_errmsg(), (want)), "reason '%s', want '%s'", \
	     shmbus_errmsg(), (want))

/* ---- RLIMIT_NOFILE ------------------------------------------------ */

static void test_nofile_raised(void **state)
{
	static const char *const none[] = { NULL };
	unsigned long long soft = 0, hard = 0;
	struct rlimit rl;
	char path[64], line[256];
	struct shmbus *bus;
	bool found = false;
	FILE *f;
	pid_t d;

	(void)state;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_max <= 64)
		fail_msg("hard RLIMIT_NOFILE %llu too low to test",
			 (unsigned long long)rl.rlim_max);
	/* start it with a soft limit well below the hard one */
	d = daemon_start(64, rl.rlim_max, none);
	/* it raises the limit after it listens, before it serves: once a
	 * request is answered, the limit is the one it runs with */
	bus = shmbus__open("lim", NULL);
	assert_non_null(bus);
	shmbus__close(bus);
	snprintf(path, sizeof(path), "/proc/%d/limits", (int)d);
	f = fopen(path, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "Max open files", 14) &&
		    sscanf(line + 14, "%llu %llu", &soft, &hard) == 2)
			found = true;
	fclose(f);
	printf("daemon RLIMIT_NOFILE: soft %llu hard %llu (started with 64)\n",
	       soft, hard);
	assert_true(found);
	assert_true(hard == (unsigned long long)rl.rlim_max);
	assert_true(soft == hard);
	daemon_stop(d);
}

/* ---- eventfds made when a consumer takes a seat -------------------- */

static void test_eventfds_lazy(void **state)
{
	static const char *const none[] = { NULL };
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_consumers = 128,
		    .max_len = 64, .msg_size = 64);
	struct shmbus_consumer *c[3];
	struct shmbus_producer *p;
	struct shmbus *bus;
	int base, n;
	pid_t d;

	(void)state;
	d = daemon_start(0, 0, none);
	bus = shmbus__open("lazy", NULL);
	assert_non_null(bus);
	base = eventfds_of(d);
	assert_int_equal(shmbus__queue_declare(bus, "wide", &qo), 1);
	n = eventfds_of(d);
	printf("eventfds: %d before, %d after declaring 128 seats\n", base, n);
	assert_int_equal(n, base);
	p = shmbus_producer__new(bus, "wide", NULL);
	assert_non_null(p);
	assert_int_equal(eventfds_of(d), base);		/* a producer: none */
	for (int i = 0; i < 3; i++) {
		c[i] = shmbus_consumer__new(bus, "wide", NULL);
		assert_non_null(c[i]);
		assert_int_equal(eventfds_of(d), base + i + 1);
	}
	/* a freed seat keeps its eventfd for the next consumer */
	shmbus_consumer__free(c[1]);
	assert_int_equal(eventfds_of(d), base + 3);
	c[1] = shmbus_consumer__new(bus, "wide", NULL);
	assert_non_null(c[1]);
	assert_int_equal(eventfds_of(d), base + 3);
	for (int i = 0; i < 3; i++)
		shmbus_consumer__free(c[i]);
	shmbus_producer__free(p);
	/* deleted: closed when its memory is reclaimed */
	assert_int_equal(shmbus__queue_delete(bus, "wide"), 0);
	for (int i = 0; i < 500 && eventfds_of(d) != base; i++)
		usleep(10000);
	assert_int_equal(eventfds_of(d), base);
	shmbus__close(bus);
	daemon_stop(d);
}

/* ---- the fd budget: one uid cannot exhaust it ---------------------- */

/* As nobody: declare 8-seat queues until -EDQUOT; attach a consumer to
 * every seat; create buses, then open connections, until -EDQUOT; then
 * hold everything until @hold is closed. */
static void nobody_fills(int hold, int *nq_out)
{
	SHMBUS_OPTS(shmbus_open_opts, oo, .max_slots = 64, .max_queues = 64,
		    .ring_bytes = 65536, .nr_pools = 1, .pools = { { 256, 256 } });
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_consumers = 8, .max_len = 16,
		    .msg_size = 64);
	char name[32], want[128], c;
	int nq = 0, nb = 1, nc = 1, err;
	struct shmbus *bus;

	become(NOBODY);
	bus = shmbus__open("nb", &oo);
	MUST(bus, "open: %s", strerror(errno));
	for (;;) {
		snprintf(name, sizeof(name), "q%d", nq);
		err = shmbus__queue_declare(bus, name, &qo);
		if (err != 1)
			break;
		nq++;
		MUST(nq < 64, "no quota stopped 8-seat queues");
	}
	MUST(err == -EDQUOT, "declare %s: %d", name, err);
	snprintf(want, sizeof(want),
		 "quota: seats %d of 32 for uid %d (asked for 8)", nq * 8,
		 NOBODY);
	MUST_SAY(want);
	printf("uid %d: %d queues x 8 seats, then: %s\n", NOBODY, nq,
	       shmbus_errmsg());
	/* every seat taken: the eventfds are made */
	for (int q = 0; q < nq; q++) {
		snprintf(name, sizeof(name), "q%d", q);
		for (int s = 0; s < 8; s++)
			MUST(shmbus_consumer__new(bus, name, NULL),
			     "consumer %s/%d: %s", name, s, strerror(errno));
	}
	/* buses (two fds each), then connections, to their quotas */
	for (;; nb++, nc++) {
		snprintf(name, sizeof(name), "nb%d", nb);
		if (!shmbus__open(name, &oo))
			break;
		MUST(nb < 64, "no quota stopped buses");
	}
	MUST(errno == EDQUOT, "bus %d: %s", nb, strerror(errno));
	printf("uid %d: %d buses, then: %s\n", NOBODY, nb, shmbus_errmsg());
	for (;; nc++) {
		if (!shmbus__open("nb", NULL))
			break;
		MUST(nc < 256, "no quota stopped connections");
	}
	MUST(errno == EDQUOT, "connection %d: %s", nc, strerror(errno));
	printf("uid %d: %d connections, then: %s\n", NOBODY, nc,
	       shmbus_errmsg());
	fflush(stdout);
	*nq_out = nq;
	MUST(read(hold, &c, 1) == 0, "hold");
}

/* The daemon's fds a client can make it hold: eventfds, arenas (memfds),
 * sockets and pidfds (not, e.g., what a sanitizer runtime opens). */
static int fds_of(pid_t pid)
{
	static const char *const held[] = { "anon_inode:[eventfd]",
					    "/memfd:shmbus:", "socket:",
					    "anon_inode:[pidfd]", NULL };

	return t_fds_linking(pid, held);
}

static void test_fd_budget(void **state)
{
	static const char *const none[] = { NULL };
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_consumers = 128,
		    .max_len = 64, .msg_size = 64);
	int hold[2], *nq = t_shared(sizeof(int));
	struct shmbus_producer *p;
	struct shmbus_consumer *c;
	struct shmbus *bus;
	int base, used;
	char buf[16];
	pid_t d, kid;

	(void)state;
	chmod(t_dir, 0755);	/* let nobody reach the socket */
	/* 256 fds, 25%: 64 per uid: seats 32, conns 8, buses 8, queues 8 */
	d = daemon_start(256, 256, none);
	base = fds_of(d);
	assert_int_equal(pipe(hold), 0);
	kid = fork();
	if (!kid) {
		close(hold[1]);
		nobody_fills(hold[0], nq);
		_exit(0);
	}
	close(hold[0]);
	for (int i = 0; i < 3000 && !READ_ONCE(*nq); i++)
		usleep(10000);
	assert_int_equal(READ_ONCE(*nq), 4);
	/* nobody holds its share: 32 eventfds, 8 buses (16 fds), 8
	 * connections (sockets and pidfds: 16 fds); a quarter of the 256,
	 * and root goes on */
	used = fds_of(d) - base;
	for (int i = 0; i < 300 && used > 64; i++) {
		usleep(10000);	/* refused connections closing */
		used = fds_of(d) - base;
	}
	printf("daemon fds: %d at start, %d more held for uid %d (limit 256)\n",
	       base, used, NOBODY);
	assert_true(used >= 60 && used <= 64);
	bus = shmbus__open("rootbus", NULL);
	assert_non_null(bus);
	for (int i = 0; i < 2; i++) {
		char name[16];

		snprintf(name, sizeof(name), "r%d", i);
		assert_int_equal(shmbus__queue_declare(bus, name, &qo), 1);
	}
	p = shmbus_producer__new(bus, "r0", NULL);
	assert_non_null(p);
	c = shmbus_consumer__new(bus, "r0", NULL);
	assert_non_null(c);
	assert_int_equal(shmbus_producer__publish(p, "hello", 5, NULL), 0);
	assert_int_equal(shmbus_consumer__receive(c, buf, sizeof(buf),
						  1000000000LL), 5);
	assert_memory_equal(buf, "hello", 5);
	printf("root: declared 2 x 128 seats, attached, published, received\n");
	shmbus_consumer__free(c);
	shmbus_producer__free(p);
	shmbus__close(bus);
	close(hold[1]);
	assert_int_equal(reap(kid), 0);
	daemon_stop(d);
	chmod(t_dir, 0700);
}

/* ---- each quota ---------------------------------------------------- */

/* Declare @name with @seats seats; retry while a deleted queue's charge
 * waits for its grace period. Returns the last result. */
static int declare_retry(struct shmbus *bus, const char *name, uint32_t seats)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_len = 16, .msg_size = 64);
	int err;

	qo.max_consumers = seats;
	for (int i = 0; i < 300; i++) {
		err = shmbus__queue_declare(bus, name, &qo);
		if (err != -EDQUOT)
			break;
		usleep(10000);
	}
	return err;
}

static int declare(struct shmbus *bus, const char *name, uint32_t seats)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_len = 16, .msg_size = 64);

	qo.max_consumers = seats;
	return shmbus__queue_declare(bus, name, &qo);
}

/* ---- all users together -------------------------------------------- */

struct fill_result {
	int declared;		/* queues of 8 seats declared */
	int err;		/* then the refusal */
	char why[200];
};

/* As uid @uid: declare queues of 8 seats on a bus of its own until one
 * is refused; the queues stay (and stay charged) after it exits. */
static void uid_fills(uid_t uid, struct fill_result *res)
{
	SHMBUS_OPTS(shmbus_open_opts, so, .max_queues = 32, .max_slots = 8,
		    .ring_bytes = 1 << 16, .nr_pools = 1,
		    .pools = { { 256, 64 } });
	struct shmbus *bus;
	char name[16];
	int err;

	become(uid);
	snprintf(name, sizeof(name), "u%u", (unsigned)uid);
	bus = shmbus__open(name, &so);
	MUST(bus, "open %s: %s", name, strerror(errno));
	for (;;) {
		snprintf(name, sizeof(name), "q%d", res->declared);
		err = declare(bus, name, 8);
		if (err != 1)
			break;
		res->declared++;
	}
	res->err = err;
	snprintf(res->why, sizeof(res->why), "%s", shmbus_errmsg());
	shmbus__close(bus);
	_exit(0);
}

/*
 * Two unprivileged uids, each under its own share (40%), together reach
 * the share of all users (60%): the second is refused by it, with its
 * reason, and root still has the rest.
 */
static void test_all_users_share(void **state)
{
	static const char *const args[] = { "--quota-share", "40",
					    "--quota-total-share", "60", NULL };
	struct fill_result *res = t_shared(2 * sizeof(*res));
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_consumers = 64,
		    .max_len = 16, .msg_size = 64);
	const uid_t uids[2] = { NOBODY, NOBODY - 1 };
	struct shmbus_consumer *c;
	struct shmbus *bus;
	pid_t d, kid;

	(void)state;
	chmod(t_dir, 0755);
	/* 256 fds: seats 51 per uid (40% / 2), 76 for all (60% / 2) */
	d = daemon_start(256, 256, args);
	for (int i = 0; i < 2; i++) {
		kid = fork();
		if (!kid)
			uid_fills(uids[i], &res[i]);
		assert_int_equal(reap(kid), 0);
		printf("uid %u: %d queues x 8 seats, then %s (%s)\n",
		       (unsigned)uids[i], res[i].declared,
		       strerror(-res[i].err), res[i].why);
		assert_int_equal(res[i].err, -EDQUOT);
	}
	/* the first by its own share: 6 x 8 = 48 of 51 */
	assert_int_equal(res[0].declared, 6);
	assert_non_null(strstr(res[0].why, "quota: seats 48 of 51 for uid"));
	/* the second by everyone's: 48 + 3 x 8 = 72 of 76 */
	assert_int_equal(res[1].declared, 3);
	assert_non_null(strstr(res[1].why, "quota: seats 72 of 76 for all "
				       "users but root together"));
	/* root: 64 seats more, attached */
	bus = shmbus__open("rootbus", NULL);
	assert_non_null(bus);
	assert_int_equal(shmbus__queue_declare(bus, "r", &qo), 1);
	c = shmbus_consumer__new(bus, "r", NULL);
	assert_non_null(c);
	shmbus_consumer__free(c);
	shmbus__close(bus);
	daemon_stop(d);
	chmod(t_dir, 0700);
}

static void nobody_quotas(uint64_t small)
{
	SHMBUS_OPTS(shmbus_open_opts, so, .max_queues = 8, .max_slots = 8,
		    .ring_bytes = 4096, .nr_pools = 1, .pools = { { 256, 64 } });
	SHMBUS_OPTS(shmbus_open_opts, big, .max_queues = 8, .max_slots = 8,
		    .ring_bytes = 1 << 20, .nr_pools = 1,
		    .pools = { { 256, 64 } });
	SHMBUS_OPTS(shmbus_topic_opts, to, .msg_size = 64);
	struct shmbus *b1, *b2, *b3, *extra[4];
	char want[160];
	int err;

	become(NOBODY);
	/* bytes: 3 small arenas fit, a big one does not; refused, it
	 * charges nothing (neither bytes nor a bus) */
	b1 = shmbus__open("n1", &so);
	MUST(b1, "n1: %s", strerror(errno));
	MUST(t_arena_bytes("n1") == small, "n1 is %llu bytes, root's %llu",
	     (unsigned long long)t_arena_bytes("n1"), (unsigned long long)small);
	MUST(!shmbus__open("nbig", &big) && errno == EDQUOT, "big: %s",
	     strerror(errno));
	MUST(!strncmp(shmbus_errmsg(), "quota: bytes ", 13), "reason '%s'",
	     shmbus_errmsg());
	snprintf(want, sizeof(want), "quota: bytes %llu of %llu for uid %d",
		 (unsigned long long)small, (unsigned long long)(3 * small),
		 NOBODY);
	MUST(!strncmp(shmbus_errmsg(), want, strlen(want)), "reason '%s'",
	     shmbus_errmsg());
	b2 = shmbus__open("n2", &so);
	MUST(b2, "n2: %s", strerror(errno));
	b3 = shmbus__open("n3", &so);
	MUST(b3, "n3 (the big bus's refusal charged nothing?): %s",
	     strerror(errno));
	/* buses: 3 of 3 */
	MUST(!shmbus__open("n4", &so) && errno == EDQUOT, "n4: %s",
	     strerror(errno));
	snprintf(want, sizeof(want),
		 "quota: buses 3 of 3 for uid %d (asked for 1)", NOBODY);
	MUST_SAY(want);

	/* queues: 3 of 3; a deleted one gives its place back */
	MUST(declare(b1, "qa", 2) == 1, "qa");
	MUST(declare(b1, "qb", 2) == 1, "qb");
	MUST(shmbus__topic_declare(b2, "tc", &to) == 1, "topic tc: %s",
	     shmbus_errmsg());
	err = declare(b1, "qd", 2);
	MUST(err == -EDQUOT, "qd: %d", err);
	snprintf(want, sizeof(want),
		 "quota: queues 3 of 3 for uid %d (asked for 1)", NOBODY);
	MUST_SAY(want);
	MUST(shmbus__queue_delete(b2, "tc") == 0, "delete tc");
	MUST(declare_retry(b1, "qd", 2) == 1, "qd after delete");
	/* seats: qa qb qd hold 6 of 10 */
	MUST(shmbus__queue_delete(b1, "qd") == 0, "delete qd");
	MUST(shmbus__queue_delete(b1, "qb") == 0, "delete qb");
	err = declare_retry(b1, "qe", 9);
	MUST(err == -EDQUOT, "qe 9 seats: %d", err);
	snprintf(want, sizeof(want),
		 "quota: seats 2 of 10 for uid %d (asked for 9)", NOBODY);
	MUST_SAY(want);
	MUST(declare(b1, "qe", 8) == 1, "qe 8 seats");
	MUST(shmbus__queue_delete(b1, "qe") == 0, "delete qe");
	MUST(declare_retry(b1, "qf", 8) == 1, "qf 8 seats after delete");

	/* conns: b1..b3 are 3 of 5 */
	extra[0] = shmbus__open("n1", NULL);
	extra[1] = shmbus__open("n2", NULL);
	MUST(extra[0] && extra[1], "conns 4, 5: %s", strerror(errno));
	extra[2] = shmbus__open("n1", NULL);
	MUST(!extra[2] && errno == EDQUOT, "conn 6: %s", strerror(errno));
	snprintf(want, sizeof(want), "quota: conns 5 of 5 for uid %d", NOBODY);
	MUST_SAY(want);
	shmbus__close(extra[1]);
	extra[2] = NULL;
	for (int i = 0; i < 300 && !extra[2]; i++) {
		extra[2] = shmbus__open("n1", NULL);
		if (!extra[2])
			usleep(10000);
	}
	MUST(extra[2], "a conn after one closed: %s", strerror(errno));
	shmbus__close(extra[2]);
	shmbus__close(extra[0]);
	shmbus__close(b1);
	shmbus__close(b2);
	shmbus__close(b3);
	_exit(0);
}

static void test_each_quota(void **state)
{
	SHMBUS_OPTS(shmbus_open_opts, so, .max_queues = 8, .max_slots = 8,
		    .ring_bytes = 4096, .nr_pools = 1, .pools = { { 256, 64 } });
	const char *args[] = { "--quota", "buses=3,queues=3", "--quota",
			       "seats=10,conns=5", "--quota", NULL, NULL };
	char bytes[64];
	struct shmbus *probe, *rb[6];
	uint64_t small;
	pid_t d, kid;

	(void)state;
	chmod(t_dir, 0755);
	/* the size of a small arena, as root (exempt) on a plain daemon */
	d = daemon_start(0, 0, args + 6);
	probe = shmbus__open("probe", &so);
	assert_non_null(probe);
	small = t_arena_bytes("probe");
	assert_true(small > 0);
	shmbus__close(probe);
	daemon_stop(d);

	snprintf(bytes, sizeof(bytes), "bytes=%llu",
		 (unsigned long long)(3 * small));
	args[5] = bytes;
	d = daemon_start(0, 0, args);
	kid = fork();
	if (!kid)
		nobody_quotas(small);
	assert_int_equal(reap(kid), 0);
	/* root is exempt: more buses and connections than any quota */
	for (int i = 0; i < 6; i++) {
		char name[16];

		snprintf(name, sizeof(name), "root%d", i);
		rb[i] = shmbus__open(name, &so);
		assert_non_null(rb[i]);
		assert_int_equal(declare(rb[i], "a", 8), 1);
		assert_int_equal(declare(rb[i], "b", 8), 1);
	}
	for (int i = 0; i < 6; i++)
		shmbus__close(rb[i]);
	daemon_stop(d);
	chmod(t_dir, 0700);
}

/* ---- a producer wakes consumers on seats made after it attached ----- */

struct wake_stats {
	uint64_t sent, received, dup;
	uint8_t seen[4096];
};

/* A consumer of @q that records what it receives, until killed. */
static void consumer_loop(const char *q, struct wake_stats *st)
{
	SHMBUS_OPTS(shmbus_consumer_opts, co, .spin_ns = -1);
	struct shmbus *bus = shmbus__open("wk", NULL);
	struct shmbus_consumer *c;
	uint32_t v;

	MUST(bus, "open: %s", strerror(errno));
	c = shmbus_consumer__new(bus, q, &co);
	MUST(c, "consumer: %s", strerror(errno));
	for (;;) {
		ssize_t n = shmbus_consumer__receive(c, &v, sizeof(v),
						     60LL * 1000000000LL);

		MUST(n == sizeof(v), "receive: %zd", n);
		if (v >= sizeof(st->seen) ||
		    atomic_fetch_add(&st->seen[v], 1) != 0)
			atomic_fetch_add(&st->dup, 1);
		atomic_fetch_add(&st->received, 1);
	}
}

/* The arena descriptor of queue @name of bus "wk" (mapped here). */
static struct shmbus_queue *queue_desc(const char *name)
{
	struct shmbus_sb *sb = t_arena_mapping("wk");
	struct shmbus_queue *qs;

	assert_non_null(sb);
	qs = (struct shmbus_queue *)((char *)sb + sb->qdir_off);
	for (uint32_t i = 0; i < sb->max_queues; i++)
		if ((READ_ONCE(qs[i].gen) & 1) &&
		    !strncmp(qs[i].name, name, SHMBUS_NAME_MAX))
			return &qs[i];
	fail_msg("queue %s not in the arena", name);
	return NULL;
}

static unsigned sleepers(const struct shmbus_queue *q)
{
	unsigned n = 0;

	for (unsigned w = 0; w < SHMBUS_SEAT_WORDS; w++)
		n += __builtin_popcountll(READ_ONCE(q->sleep_mask[w]));
	return n;
}

/* Wait until @want consumers of @q sleep; false after 10 s. */
static bool all_asleep(const struct shmbus_queue *q, unsigned want)
{
	for (int i = 0; i < 10000; i++) {
		if (sleepers(q) == want)
			return true;
		usleep(1000);
	}
	return false;
}

static void test_wake_new_seats(void **state)
{
	static const char *const none[] = { NULL };
	SHMBUS_OPTS(shmbus_open_opts, oo, .max_slots = 64);
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_consumers = 16, .max_len = 64,
		    .msg_size = 64);
	struct wake_stats *st = t_shared(sizeof(*st));
	const int nq = (int)t_scaled(6), rounds = 8;
	uint64_t lost = 0, new_seats = 0;
	struct shmbus *bus;
	pid_t d;

	(void)state;
	d = daemon_start(0, 0, none);
	bus = shmbus__open("wk", &oo);
	assert_non_null(bus);
	for (int qi = 0; qi < nq; qi++) {
		pid_t kids[2 * 8];
		int nk = 0, first = 0;
		struct shmbus_producer *p;
		struct shmbus_queue *q;
		uint32_t epoch0;
		char name[16];

		snprintf(name, sizeof(name), "w%d", qi);
		assert_int_equal(shmbus__queue_declare(bus, name, &qo), 1);
		/* the producer first: no seat has an eventfd yet */
		p = shmbus_producer__new(bus, name, NULL);
		assert_non_null(p);
		q = queue_desc(name);
		epoch0 = READ_ONCE(q->seat_epoch);
		assert_int_equal(epoch0, 0);
		for (int r = 0; r < rounds; r++) {
			/* two come, one goes (the one asleep longest) */
			for (int k = 0; k < 2; k++) {
				pid_t kid = fork();

				if (!kid)
					consumer_loop(name, st);
				kids[nk++] = kid;
				assert_true(all_asleep(q, nk - first));
			}
			kill(kids[first], SIGKILL);
			waitpid(kids[first++], NULL, 0);
			assert_true(all_asleep(q, nk - first));
			/* one message per sleeper, one at a time, each to a
			 * queue whose every consumer sleeps */
			for (int m = 0; m < nk - first; m++) {
				uint32_t v = (uint32_t)st->sent;
				uint64_t want = st->sent + 1;
				int waited = 0;

				assert_true(v < sizeof(st->seen));
				assert_int_equal(shmbus_producer__publish(
						 p, &v, sizeof(v), NULL), 0);
				st->sent++;
				while (READ_ONCE(st->received) < want &&
				       waited < 5000) {
					usleep(1000);
					waited++;
				}
				if (READ_ONCE(st->received) < want) {
					lost++;
					fprintf(stderr, "queue %s round %d: "
						"message %u not received in "
						"5 s: a lost wake-up\n", name,
						r, v);
					break;
				}
				assert_true(all_asleep(q, nk - first));
			}
			if (lost)
				break;
		}
		new_seats += READ_ONCE(q->seat_epoch) - epoch0;
		for (int k = first; k < nk; k++) {
			kill(kids[k], SIGKILL);
			waitpid(kids[k], NULL, 0);
		}
		shmbus_producer__free(p);
		if (lost)
			break;
	}
	printf("sent %llu received %llu lost %llu duplicated %llu "
	       "(%llu seats made after the producer attached)\n",
	       (unsigned long long)st->sent,
	       (unsigned long long)READ_ONCE(st->received),
	       (unsigned long long)lost, (unsigned long long)st->dup,
	       (unsigned long long)new_seats);
	assert_int_equal(lost, 0);
	assert_int_equal(st->dup, 0);
	assert_int_equal(READ_ONCE(st->received), st->sent);
	assert_true(new_seats >= (uint64_t)nq * rounds);
	shmbus__close(bus);
	daemon_stop(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_nofile_raised, daemon_reap),
		cmocka_unit_test_teardown(test_eventfds_lazy, daemon_reap),
		cmocka_unit_test_teardown(test_fd_budget, daemon_reap),
		cmocka_unit_test_teardown(test_all_users_share, daemon_reap),
		cmocka_unit_test_teardown(test_each_quota, daemon_reap),
		cmocka_unit_test_teardown(test_wake_new_seats, daemon_reap),
	};

	if (geteuid() != 0) {
		if (ci_mode()) {
			fprintf(stderr, "test_quota: needs root (a second uid, "
				"rlimits)\n");
			return 1;
		}
		printf("test_quota: needs root; skipped\n0 passed, 0 failed\n");
		return 0;
	}
	return T_RUN_WITH_DAEMON("quota", tests);
}
