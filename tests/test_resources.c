// SPDX-License-Identifier: MIT
/*
 * test_resources.c - what a client cannot take from the daemon or from
 * the other members of a bus:
 *  - memory: a daemon in a real 64 MiB memory cgroup refuses a ~197 MB
 *    bus (ENOMEM) and a 64 GiB one (EDQUOT) before allocating anything,
 *    the OOM killer never runs, other buses work on, a bus that fits is
 *    still made; the configured budget (--memory-max) and per-bus limit
 *    (--bus-max) give EDQUOT (root);
 *  - the arena fd a client gets cannot be truncated, grown or unsealed,
 *    and its attempts change nothing for the others;
 *  - connect_timeout_ms bounds connect() to a daemon whose listen backlog
 *    is full, and the HELLO to one that does not answer: ETIMEDOUT;
 *  - idle connections that never open a bus are closed by the daemon
 *    after --handshake-timeout, at most --max-pending of them are held,
 *    and a real client gets through while hundreds of them are open;
 *  - a flood of connections from an unprivileged uid (thousands, each
 *    reopened as the daemon closes it) neither fills the listen backlog
 *    nor pushes out root's handshake: root opens a bus and declares a
 *    queue within the default connect timeout, every time, and no fd is
 *    left behind once the flood stops.
 */
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <grp.h>

#include "shmbus.h"
#include "helpers.h"

static shmbus_print_fn_t prev_print;

struct memcg {
	int v;			/* 2 or 1 */
	char dir[512];
};


/* ---- a private daemon with chosen flags --------------------------------- */

struct tdaemon {
	pid_t pid;
	char sock[160];
	char log[160];
};

/* The daemon of the running test, stopped by teardown() if an assertion
 * ended the test first. */
static pid_t td_running;

/*
 * Start shmbusd on its own socket with @args (NULL-terminated), in memory
 * cgroup @cg (its cgroup.procs, or NULL) and with RLIMIT_NOFILE @nofile
 * (0: unchanged). Waits until it listens.
 */
static void td_start(struct tdaemon *td, const char *tag, const char *cg,
		     rlim_t nofile, const char *const *args)
{
	const char *argv[24];
	int n = 0;

	snprintf(td->sock, sizeof(td->sock), "%s/%s.sock", t_dir, tag);
	snprintf(td->log, sizeof(td->log), "%s/%s.log", t_dir, tag);
	argv[n++] = "shmbusd";
	argv[n++] = "--socket";
	argv[n++] = td->sock;
	argv[n++] = "--log";
	argv[n++] = td->log;
	while (args && *args && n < 22)
		argv[n++] = *args++;
	argv[n] = NULL;
	td->pid = fork();
	assert_true(td->pid >= 0);
	td_running = td->pid;
	if (!td->pid) {
		if (cg) {
			FILE *f = fopen(cg, "w");

			if (!f || fprintf(f, "%d\n", (int)getpid()) < 0 ||
			    fclose(f))
				_exit(126);
		}
		if (nofile) {
			struct rlimit rl = { nofile, nofile };

			if (setrlimit(RLIMIT_NOFILE, &rl))
				_exit(125);
		}
		execv(t_daemon_path(), (char *const *)argv);
		_exit(127);
	}
	for (int i = 0; i < 1000 && access(td->sock, F_OK); i++)
		usleep(5000);
	assert_int_equal(access(td->sock, F_OK), 0);
}

static bool td_alive(const struct tdaemon *td)
{
	return waitpid(td->pid, NULL, WNOHANG) == 0;
}

static void td_stop(struct tdaemon *td)
{
	kill(td->pid, SIGKILL);
	waitpid(td->pid, NULL, 0);
	td_running = 0;
}

static struct memcg *cg_made;	/* removed by teardown() */
static void memcg_remove(struct memcg *cg);

static int teardown(void **state)
{
	(void)state;
	if (td_running) {
		kill(td_running, SIGKILL);
		waitpid(td_running, NULL, 0);
		td_running = 0;
	}
	if (cg_made)
		memcg_remove(cg_made);
	if (prev_print)
		shmbus_set_print(prev_print);
	return 0;
}

/* The daemon's log lines with @grep: the first @show on stdout, for the
 * record of what it said; returns how many there are. */
static int td_log_lines(const struct tdaemon *td, const char *grep, int show)
{
	char line[1024];
	FILE *f = fopen(td->log, "r");
	int n = 0;

	while (f && fgets(line, sizeof(line), f))
		if (strstr(line, grep) && n++ < show)
			printf("  daemon: %s", line);
	if (f)
		fclose(f);
	return n;
}

/* Open @name on @td with @opts' geometry (NOSTART, no library noise). */
static struct shmbus *td_open(const struct tdaemon *td, const char *name,
			      const struct shmbus_open_opts *geo)
{
	SHMBUS_OPTS(shmbus_open_opts, o, .flags = SHMBUS_OPEN_NOSTART);

	if (geo)
		o = *geo;
	o.socket_path = td->sock;
	o.flags |= SHMBUS_OPEN_NOSTART;
	return shmbus__open(name, &o);
}

/* A round trip on @b: declare @q, publish @n, receive and ack @n. */
static int roundtrip(struct shmbus *b, const char *q, int n)
{
	struct shmbus_producer *p;
	struct shmbus_consumer *c;
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_len = 128, .msg_size = 64);
	struct shmbus_msg m;
	int got = 0;

	if (shmbus__queue_declare(b, q, &qo) < 0)
		return -1;
	p = shmbus_producer__new(b, q, NULL);
	c = shmbus_consumer__new(b, q, NULL);
	if (!p || !c)
		return -1;
	for (int i = 0; i < n; i++)
		if (shmbus_producer__publish(p, &i, sizeof(i), NULL))
			break;
	while (got < n && shmbus_consumer__receive_view(c, &m, 1000000000) == 0) {
		got++;
		shmbus_consumer__ack(c, &m);
	}
	shmbus_consumer__free(c);
	shmbus_producer__free(p);
	return got;
}

/* Open-options asking for an arena of about @pool_count chunks of
 * @payload bytes (one pool). */
#define GEOMETRY(var, payload, count)					\
	SHMBUS_OPTS(shmbus_open_opts, var, .max_queues = 4,		\
		    .max_slots = 8, .ring_bytes = 65536, .nr_pools = 1,	\
		    .pools = { { (payload), (count) } })

/* ---- memory: a real memory cgroup ---------------------------------------- */

/* The mount point of the cgroup2 hierarchy (@v2) or of the v1 memory
 * hierarchy. */
static bool cg_mount(bool v2, char *mnt, size_t len)
{
	char line[1024];
	FILE *f = fopen("/proc/self/mountinfo", "r");
	bool found = false;

	while (f && !found && fgets(line, sizeof(line), f)) {
		char m[256], fstype[32], super[256];
		const char *sep = strstr(line, " - ");

		if (!sep || sscanf(line, "%*s %*s %*s %*s %255s", m) != 1 ||
		    sscanf(sep + 3, "%31s %*s %255s", fstype, super) != 2)
			continue;
		if (v2 ? !strcmp(fstype, "cgroup2")
		       : !strcmp(fstype, "cgroup") && strstr(super, "memory")) {
			snprintf(mnt, len, "%s", m);
			found = true;
		}
	}
	if (f)
		fclose(f);
	return found;
}

static int cg_write(const char *dir, const char *file, const char *val)
{
	char path[600];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	f = fopen(path, "w");
	if (!f)
		return -errno;
	if (fputs(val, f) < 0) {
		fclose(f);
		return -EIO;
	}
	return fclose(f) ? -errno : 0;
}

static long long cg_field(const struct memcg *cg, const char *key)
{
	char path[600], line[256];
	long long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", cg->dir,
		 cg->v == 2 ? "memory.events" : "memory.oom_control");
	f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, key, strlen(key)) &&
		    line[strlen(key)] == ' ')
			v = atoll(line + strlen(key) + 1);
	if (f)
		fclose(f);
	return v;
}

/*
 * A new memory cgroup limited to @limit: cgroup v2 where its hierarchy
 * has the memory controller (enabled in the root's subtree_control if
 * need be), else a child of this process's v1 memory cgroup. 0, or a
 * reason in @why.
 */
static int memcg_make(struct memcg *cg, const char *limit, char *why,
		      size_t wlen)
{
	char mnt[256], path[600], line[512], own[400] = "";
	FILE *f;

	if (cg_mount(true, mnt, sizeof(mnt))) {
		snprintf(path, sizeof(path), "%s/cgroup.controllers", mnt);
		f = fopen(path, "r");
		if (f && fgets(line, sizeof(line), f) &&
		    strstr(line, "memory")) {
			fclose(f);
			cg_write(mnt, "cgroup.subtree_control", "+memory");
			snprintf(cg->dir, sizeof(cg->dir),
				 "%s/shmbus-test-%d", mnt, (int)getpid());
			cg->v = 2;
			if (mkdir(cg->dir, 0755) ||
			    cg_write(cg->dir, "memory.max", limit)) {
				snprintf(why, wlen, "cgroup v2 %.200s: %s", cg->dir,
					 strerror(errno));
				rmdir(cg->dir);
				return -1;
			}
			cg_write(cg->dir, "memory.swap.max", "0");
			return 0;
		}
		if (f)
			fclose(f);
	}
	if (!cg_mount(false, mnt, sizeof(mnt))) {
		snprintf(why, wlen, "no memory cgroup controller: neither "
			 "cgroup v2 with memory nor a v1 memory hierarchy");
		return -1;
	}
	f = fopen("/proc/self/cgroup", "r");
	while (f && fgets(line, sizeof(line), f)) {
		char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;

		if (c2 && strstr(c1, "memory") && c2 > c1) {
			c2[strcspn(c2, "\n")] = '\0';
			snprintf(own, sizeof(own), "%s", c2 + 1);
		}
	}
	if (f)
		fclose(f);
	snprintf(cg->dir, sizeof(cg->dir), "%s%s/shmbus-test-%d", mnt,
		 strcmp(own, "/") ? own : "", (int)getpid());
	cg->v = 1;
	if (mkdir(cg->dir, 0755) ||
	    cg_write(cg->dir, "memory.limit_in_bytes", limit)) {
		snprintf(why, wlen, "cgroup v1 %.200s: %s", cg->dir, strerror(errno));
		rmdir(cg->dir);
		return -1;
	}
	cg_write(cg->dir, "memory.memsw.limit_in_bytes", limit);
	return 0;
}

static void memcg_remove(struct memcg *cg)
{
	for (int i = 0; i < 100 && rmdir(cg->dir) && errno == EBUSY; i++)
		usleep(20000);
	cg_made = NULL;
}

static void test_memory_cgroup(void **state)
{
	GEOMETRY(g197, 4032, 48000);		/* ~197 MB */
	GEOMETRY(g64g, 16 << 20, 4000);		/* ~64 GiB */
	GEOMETRY(gsmall, 4032, 2000);		/* ~8 MB */
	GEOMETRY(gfit, 4032, 1000);		/* ~4 MB */
	static const char *const args[] = { NULL };
	struct shmbus *small, *big, *fit;
	char cgprocs[600], why[256];
	static struct memcg cg;	/* teardown() may remove it */
	struct tdaemon td;
	int e197, e64g, got;

	(void)state;
	if (geteuid() != 0)
		SKIP_OR_FAIL("needs root to make a memory cgroup");
	if (memcg_make(&cg, "64M", why, sizeof(why)))
		SKIP_OR_FAIL("%s", why);
	cg_made = &cg;
	printf("memory cgroup v%d %s, limit 64 MiB\n", cg.v, cg.dir);
	snprintf(cgprocs, sizeof(cgprocs), "%s/cgroup.procs", cg.dir);
	td_start(&td, "memcg", cgprocs, 0, args);

	prev_print = shmbus_set_print(NULL);
	small = td_open(&td, "small", &gsmall);
	assert_non_null(small);

	big = td_open(&td, "big", &g197);
	e197 = errno;
	printf("~197 MB bus: %s (%s)\n", big ? "created" : strerror(e197),
	       shmbus_errmsg());
	assert_null(big);
	assert_int_equal(e197, ENOMEM);
	assert_non_null(strstr(shmbus_errmsg(), "memory cgroup"));
	assert_true(td_log_lines(&td, cg.dir, 1) >= 1);

	big = td_open(&td, "huge", &g64g);
	e64g = errno;
	printf("~64 GiB bus: %s (%s)\n", big ? "created" : strerror(e64g),
	       shmbus_errmsg());
	assert_null(big);
	assert_int_equal(e64g, EDQUOT);
	assert_non_null(strstr(shmbus_errmsg(), "--bus-max"));

	/* the daemon lives, its other bus works, a bus that fits is made */
	assert_true(td_alive(&td));
	got = roundtrip(small, "q", 100);
	printf("existing bus after the refusals: 100 sent, %d received, "
	       "%d lost\n", got, 100 - got);
	assert_int_equal(got, 100);
	fit = td_open(&td, "fits", &gfit);
	assert_non_null(fit);
	assert_int_equal(roundtrip(fit, "q", 10), 10);
	printf("oom_kill in the cgroup: %lld; daemon alive: %s\n",
	       cg_field(&cg, "oom_kill"), td_alive(&td) ? "yes" : "no");
	assert_int_equal(cg_field(&cg, "oom_kill"), 0);
	assert_true(td_alive(&td));
	assert_true(td_log_lines(&td, "refused", 4) >= 2);
	shmbus__close(fit);
	shmbus__close(small);
	shmbus_set_print(prev_print);
	td_stop(&td);
	memcg_remove(&cg);
}

static off_t arena_size_of(const char *name);

static void test_memory_max(void **state)
{
	static const char *const args[] = { "--memory-max", "40M",
					    "--bus-max", "24M", NULL };
	GEOMETRY(g16, 4032, 4000);		/* ~16 MB */
	GEOMETRY(g30, 4032, 7500);		/* ~30 MB */
	struct shmbus *a, *b, *c;
	struct tdaemon td;
	int err;

	(void)state;
	td_start(&td, "budget", NULL, 0, args);
	prev_print = shmbus_set_print(NULL);
	a = td_open(&td, "a", &g16);
	assert_non_null(a);
	printf("bus a: %lld bytes\n", (long long)arena_size_of("a"));
	b = td_open(&td, "b", &g16);
	assert_non_null(b);
	c = td_open(&td, "c", &g16);
	err = errno;
	printf("third 16 MB bus under --memory-max 40M: %s (%s)\n",
	       c ? "created" : strerror(err), shmbus_errmsg());
	assert_null(c);
	assert_int_equal(err, EDQUOT);
	assert_non_null(strstr(shmbus_errmsg(), "--memory-max"));
	c = td_open(&td, "c", &g30);
	err = errno;
	printf("30 MB bus under --bus-max 24M: %s (%s)\n",
	       c ? "created" : strerror(err), shmbus_errmsg());
	assert_null(c);
	assert_int_equal(err, EDQUOT);
	assert_non_null(strstr(shmbus_errmsg(), "--bus-max"));
	/* the budget counts live arenas: both existing buses still work */
	assert_int_equal(roundtrip(a, "q", 10), 10);
	assert_int_equal(roundtrip(b, "q", 10), 10);
	assert_true(td_alive(&td));
	shmbus__close(a);
	shmbus__close(b);
	shmbus_set_print(prev_print);
	td_stop(&td);
}

/* ---- the arena fd cannot be truncated ------------------------------------ */

static off_t arena_size_of(const char *name)
{
	struct stat st;
	int fd = t_bus_arena_fd(name);

	return fd >= 0 && fstat(fd, &st) == 0 ? st.st_size : -1;
}

static void test_arena_sealed(void **state)
{
	struct shmbus *bus = t_open_bus("sealed");
	struct shmbus_producer *p;
	struct shmbus_consumer *c;
	int fd, seals, r, got = 0;
	struct stat st;
	pid_t kid;

	(void)state;
	assert_int_equal(shmbus__queue_declare(bus, "q", NULL), 1);
	c = shmbus_consumer__new(bus, "q", NULL);
	assert_non_null(c);
	fd = t_bus_arena_fd("sealed");
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	seals = fcntl(fd, F_GET_SEALS);
	printf("arena: %lld bytes, seals 0x%x\n", (long long)st.st_size, seals);
	assert_int_equal(seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
			 F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);

	/* a member, in its own process, tries everything on its fd while
	 * the others are attached */
	fflush(stdout);
	kid = fork();
	if (!kid) {
		struct shmbus *b = t_open_bus("sealed");
		int afd = t_bus_arena_fd("sealed"), n = 0;
		struct shmbus_producer *pp;

		CHILD_CHECK(afd >= 0, "arena fd");
		r = ftruncate(afd, 0);
		printf("member: ftruncate to 0: %s\n", r ? strerror(errno) : "done");
		n += !r || errno != EPERM;
		r = ftruncate(afd, st.st_size / 2);
		printf("member: ftruncate to half: %s\n",
		       r ? strerror(errno) : "done");
		n += !r || errno != EPERM;
		r = ftruncate(afd, st.st_size * 2);
		printf("member: ftruncate to double: %s\n",
		       r ? strerror(errno) : "done");
		n += !r || errno != EPERM;
		r = fallocate(afd, 0, st.st_size, 4096);
		printf("member: fallocate past the end: %s\n",
		       r ? strerror(errno) : "done");
		n += !r || errno != EPERM;
		r = fcntl(afd, F_ADD_SEALS, F_SEAL_WRITE);
		printf("member: add F_SEAL_WRITE: %s\n",
		       r ? strerror(errno) : "done");
		n += !r || errno != EPERM;
		pp = shmbus_producer__new(b, "q", NULL);
		CHILD_CHECK(pp, "producer");
		for (int i = 0; i < 100; i++)
			n += shmbus_producer__publish(pp, &i, sizeof(i), NULL) != 0;
		shmbus_producer__free(pp);
		shmbus__close(b);
		fflush(stdout);
		_exit(n);
	}
	assert_int_equal(t_wait(kid, 20000), 0);
	assert_int_equal(fstat(fd, &st), 0);
	p = shmbus_producer__new(bus, "q", NULL);
	assert_non_null(p);
	for (int i = 0; i < 100; i++)
		assert_int_equal(shmbus_producer__publish(p, &i, sizeof(i), NULL), 0);
	for (;;) {
		struct shmbus_msg m;

		if (shmbus_consumer__receive_view(c, &m, 200000000))
			break;
		got++;
		shmbus_consumer__ack(c, &m);
	}
	printf("after the attempts: arena %lld bytes; sent 200, received %d, "
	       "lost %d; daemon alive: %s\n", (long long)st.st_size, got,
	       200 - got, t_pid_running(t_daemon_pid()) ? "yes" : "no");
	assert_int_equal(got, 200);
	assert_true(t_pid_running(t_daemon_pid()));
	shmbus_producer__free(p);
	shmbus_consumer__free(c);
	shmbus__close(bus);
}

/* ---- connect_timeout_ms ------------------------------------------------- */

/* A listening socket at @path that never accepts, backlog full. */
static int stuck_listener(const char *path, int **extra, int *nextra,
			  bool fill)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int l, n = 0;

	assert_true(strlen(path) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, path, strlen(path) + 1);
	l = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	assert_true(l >= 0);
	assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(l, 4), 0);
	*extra = calloc(64, sizeof(int));
	while (fill && n < 64) {
		int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK |
				SOCK_CLOEXEC, 0);

		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
			assert_int_equal(errno, EAGAIN);
			close(fd);
			break;
		}
		(*extra)[n++] = fd;
	}
	*nextra = n;
	return l;
}

static void connect_case(bool fill)
{
	SHMBUS_OPTS(shmbus_open_opts, o, .flags = SHMBUS_OPEN_NOSTART,
		    .connect_timeout_ms = 500);
	char path[160];
	int l, n, *extra, err;
	struct shmbus *b;
	int64_t t0, ms;

	snprintf(path, sizeof(path), "%s/stuck-%d.sock", t_dir, fill);
	l = stuck_listener(path, &extra, &n, fill);
	o.socket_path = path;
	prev_print = shmbus_set_print(NULL);
	t0 = t_now_ns();
	b = shmbus__open("x", &o);
	err = errno;
	ms = (t_now_ns() - t0) / 1000000;
	shmbus_set_print(prev_print);
	printf("%s: open with connect_timeout_ms 500: %s after %lld ms (%s)\n",
	       fill ? "backlog full" : "connected, never answered",
	       b ? "connected" : strerror(err), (long long)ms,
	       shmbus_errmsg());
	if (fill)
		printf("  (%d connections filled the backlog)\n", n);
	assert_null(b);
	assert_int_equal(err, ETIMEDOUT);
	assert_true(ms >= 450 && ms < 5000);
	assert_non_null(strstr(shmbus_errmsg(), fill ? "backlog" : "HELLO"));
	for (int i = 0; i < n; i++)
		close(extra[i]);
	free(extra);
	close(l);
	unlink(path);
}

static void test_connect_backlog_full(void **state)
{
	(void)state;
	connect_case(true);
}

static void test_hello_unanswered(void **state)
{
	(void)state;
	connect_case(false);
}

/* ---- idle connections ----------------------------------------------------- */

static int connect_nb(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC,
			0);

	if (fd < 0 || strlen(path) >= sizeof(sa.sun_path)) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		close(fd);
		return -1;
	}
	return fd;
}

static void test_idle_connections(void **state)
{
	/* 128 fds: without the handshake bound, 300 idle connections would
	 * take them all and then fill the backlog */
	static const char *const args[] = { "--handshake-timeout", "1",
					    "--max-pending", "32", NULL };
	SHMBUS_OPTS(shmbus_open_opts, o, .flags = SHMBUS_OPEN_NOSTART,
		    .connect_timeout_ms = 3000);
	enum { IDLE = 300 };
	int fds[IDLE], opened = 0, closed = 0, refused = 0;
	struct shmbus *bus;
	struct tdaemon td;
	int64_t t0, open_ms, all_closed_ms = -1;

	(void)state;
	td_start(&td, "idle", NULL, 128, args);
	o.socket_path = td.sock;
	t0 = t_now_ns();
	for (int i = 0; i < IDLE; i++) {
		fds[i] = connect_nb(td.sock);
		/* backlog momentarily full: the daemon is pushing old ones
		 * out; try again a little later */
		for (int k = 0; fds[i] < 0 && k < 200; k++) {
			usleep(5000);
			fds[i] = connect_nb(td.sock);
		}
		if (fds[i] < 0)
			refused++;
		else
			opened++;
	}
	/* a real client gets through while they are open */
	bus = shmbus__open("work", &o);
	open_ms = (t_now_ns() - t0) / 1000000;
	printf("idle connections: %d opened, %d refused; then a client's "
	       "open: %s, %lld ms after the first idle one\n", opened, refused,
	       bus ? "ok" : strerror(errno), (long long)open_ms);
	assert_non_null(bus);
	assert_int_equal(opened, IDLE);
	/* every idle one is closed by the daemon within the timeout (1 s)
	 * plus scheduling slack */
	while (t_now_ns() - t0 < 15 * 1000000000LL) {
		closed = 0;
		for (int i = 0; i < IDLE; i++) {
			struct pollfd pfd = { .fd = fds[i], .events = POLLIN };
			char c;

			if (fds[i] >= 0 && poll(&pfd, 1, 0) == 1 &&
			    (pfd.revents & (POLLHUP | POLLERR) ||
			     recv(fds[i], &c, 1, MSG_DONTWAIT | MSG_PEEK) <= 0))
				closed++;
		}
		if (closed == opened) {
			all_closed_ms = (t_now_ns() - t0) / 1000000;
			break;
		}
		usleep(50000);
	}
	printf("closed by the daemon: %d of %d, all within %lld ms\n", closed,
	       opened, (long long)all_closed_ms);
	assert_int_equal(closed, opened);
	assert_true(all_closed_ms >= 0);
	/* the client that opened a bus is not idle: it works on */
	usleep(1200000);
	assert_int_equal(roundtrip(bus, "q", 50), 50);
	assert_true(td_alive(&td));
	printf("daemon log: %d connections pushed out at --max-pending, "
	       "%d closed at the handshake timeout\n",
	       td_log_lines(&td, "at --max-pending", 1),
	       td_log_lines(&td, "within the handshake timeout", 1));
	for (int i = 0; i < IDLE; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	shmbus__close(bus);
	td_stop(&td);
}


/* The daemon's open fds. */
static int td_fds(const struct tdaemon *td)
{
	char path[64];
	struct dirent *e;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)td->pid);
	d = opendir(path);
	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/*
 * As uid 65534: keep up to @slots connections to @sock queued or open
 * (idle: never a HELLO), reopening each as the daemon closes it, for
 * @secs seconds. Writes the number of connects that succeeded to @wfd.
 */
static void flood(const char *sock, int slots, int secs, int wfd)
{
	struct rlimit rl = { slots + 64, slots + 64 };
	int *fds = calloc(slots, sizeof(*fds));
	long made = 0;
	int64_t end;

	if (!fds || setrlimit(RLIMIT_NOFILE, &rl) || setgroups(0, NULL) ||
	    setgid(65534) || setuid(65534))
		_exit(99);
	for (int i = 0; i < slots; i++)
		fds[i] = -1;
	end = t_now_ns() + secs * 1000000000LL;
	while (t_now_ns() < end) {
		for (int i = 0; i < slots; i++) {
			if (fds[i] >= 0) {
				struct pollfd p = { .fd = fds[i],
						    .events = POLLIN };

				if (poll(&p, 1, 0) != 1)
					continue;
				close(fds[i]);	/* closed by the daemon */
			}
			fds[i] = connect_nb(sock);
			made += fds[i] >= 0;
		}
		usleep(10000);
	}
	if (write(wfd, &made, sizeof(made)) != sizeof(made))
		_exit(98);
	_exit(0);
}

static void test_connection_flood(void **state)
{
	enum { SLOTS = 4200, SECS = 6, OPENS = 5 };
	SHMBUS_OPTS(shmbus_open_opts, o, .flags = SHMBUS_OPEN_NOSTART);
	int64_t t0, took, all_ms = -1;
	int pfd[2], st, base, fds = -1, ok = 0;
	struct shmbus *bus;
	struct tdaemon td;
	long made = 0;
	pid_t kid;

	(void)state;
	chmod(t_dir, 0755);	/* uid 65534 reaches the socket */
	td_start(&td, "flood", NULL, 0, NULL);
	o.socket_path = td.sock;
	/* the bus exists (its arena is one of the daemon's fds) before the
	 * count the daemon must come back to */
	bus = shmbus__open("flooded", &o);
	assert_non_null(bus);
	shmbus__close(bus);
	usleep(200000);
	base = td_fds(&td);
	assert_true(base > 0);
	assert_int_equal(pipe(pfd), 0);
	kid = fork();
	assert_true(kid >= 0);
	if (!kid) {
		close(pfd[0]);
		flood(td.sock, SLOTS, SECS, pfd[1]);
	}
	close(pfd[1]);
	usleep(1000000);	/* the backlog would be full by now */
	for (int i = 0; i < OPENS; i++) {
		char q[16];

		snprintf(q, sizeof(q), "q%d", i);
		t0 = t_now_ns();
		/* the default connect timeout: 5 s */
		bus = shmbus__open("flooded", &o);
		if (bus && shmbus__queue_declare(bus, q, NULL) >= 0)
			ok++;
		took = t_now_ns() - t0;
		printf("root's open + declare %d during the flood: %s, %.2f ms\n",
		       i, bus ? "ok" : shmbus_errmsg(), took / 1e6);
		if (bus)
			shmbus__close(bus);
		usleep(500000);
	}
	assert_int_equal(waitpid(kid, &st, 0), kid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_int_equal(read(pfd[0], &made, sizeof(made)), sizeof(made));
	close(pfd[0]);
	printf("flood: %ld connects by uid 65534 in %d s; root: %d of %d "
	       "opens ok\n", made, SECS, ok, OPENS);
	assert_int_equal(ok, OPENS);
	/* it did flood: more connects than the backlog holds */
	assert_true(made > 4096);
	/* its last connections are closed at the handshake timeout (5 s):
	 * then the daemon holds what it held before */
	t0 = t_now_ns();
	while (t_now_ns() - t0 < 15 * 1000000000LL) {
		fds = td_fds(&td);
		if (fds == base) {
			all_ms = (t_now_ns() - t0) / 1000000;
			break;
		}
		usleep(100000);
	}
	printf("daemon fds: %d before the flood, %d after it (%lld ms after "
	       "it stopped); log: %d connections pushed out at "
	       "--max-pending\n", base, fds, (long long)all_ms,
	       td_log_lines(&td, "at --max-pending", 1));
	assert_int_equal(fds, base);
	assert_true(td_alive(&td));
	td_stop(&td);
	chmod(t_dir, 0700);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_memory_cgroup, teardown),
		cmocka_unit_test_teardown(test_memory_max, teardown),
		cmocka_unit_test_teardown(test_arena_sealed, teardown),
		cmocka_unit_test_teardown(test_connect_backlog_full, teardown),
		cmocka_unit_test_teardown(test_hello_unanswered, teardown),
		cmocka_unit_test_teardown(test_idle_connections, teardown),
		cmocka_unit_test_teardown(test_connection_flood, teardown),
	};

	return T_RUN_WITH_DAEMON("resources", tests);
}
