// SPDX-License-Identifier: MIT
/*
 * test_policy.c - who owns a bus and who may do what on it, with real
 * second uids (fork + setuid): per-owner bus namespaces (a user cannot
 * squat a name root will use), joining another user's bus only by naming
 * its owner, shmbus__info() and `shmbus stat` showing the owner, private
 * queues that cannot take or join a name, and the daemon's policy file
 * (operations, patterns, groups, the refusal's log line and reason,
 * SIGHUP reload, a malformed file). Root only.
 */
#include <grp.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "helpers.h"
#include "proto.h"
#include "shmbus.h"

#define NOBODY		65534
#define EXIT_USAGE_2	2	/* the CLI's usage errors */
#define OTHER		65533

/* Shared with the children: what they report in words, what a CLI
 * command printed (a metrics exposition of several buses included). */
#define SHARED_LEN	(256 * 1024)
static char *shared;

static void need_root(void)
{
	if (geteuid() != 0)
		SKIP_OR_FAIL("needs root to run clients as other users");
	chmod(t_dir, 0755);	/* let other users reach the socket */
}

/* In a child: become @uid (its gid the same), with supplementary group
 * @extra (0: none). */
static bool many_groups;	/* become(): @extra after 71 others */

static void become(uid_t uid, gid_t extra)
{
	gid_t g[72];
	int n = 0;

	shmbus_set_print(NULL);
	if (many_groups)	/* more than SO_PEERGROUPS fits in 64 */
		for (; n < 71; n++)
			g[n] = 5000 + n;
	if (extra)
		g[n++] = extra;
	if (setgroups(n, g) || setgid(uid) || setuid(uid))
		_exit(99);
}

/* Run @fn(@arg) as @uid in a child; its exit code. */
static int as_user(uid_t uid, gid_t extra, int (*fn)(const void *),
		   const void *arg)
{
	pid_t kid = fork();

	if (!kid) {
		become(uid, extra);
		_exit(fn(arg));
	}
	return t_wait(kid, 20000);
}

/* Keep shmbus_errmsg() for the parent. */
static void report(void)
{
	snprintf(shared, 4096, "%s", shmbus_errmsg());
}

static struct shmbus *open_as(const char *sock, const char *name,
			      uint32_t flags, uint32_t owner, uint32_t mode)
{
	SHMBUS_OPTS(shmbus_open_opts, o, .socket_path = sock, .flags = flags,
		    .owner_uid = owner, .mode = mode);

	return shmbus__open(name, &o);
}

static int publish1(struct shmbus *b, const char *q, const char *text)
{
	struct shmbus_producer *p = shmbus_producer__new(b, q, NULL);
	int err;

	if (!p)
		return -errno;
	err = shmbus_producer__publish(p, text, strlen(text), NULL);
	shmbus_producer__free(p);
	return err;
}

/* Receive what waits on @q within @ms into @buf: its length, or -errno. */
static ssize_t take1(struct shmbus *b, const char *q, char *buf, size_t cap,
		     int ms)
{
	struct shmbus_consumer *c = shmbus_consumer__new(b, q, NULL);
	ssize_t n;

	if (!c)
		return -errno;
	n = shmbus_consumer__receive(c, buf, cap - 1, (int64_t)ms * 1000000);
	if (n >= 0)
		buf[n] = '\0';
	shmbus_consumer__free(c);
	return n;
}

/* ---- item: bus-name squatting ------------------------------------- */

/* The squatter: its own "orders" (0666, to lure), with "mine" and a
 * "payments" of its own. */
static int squat_first(const void *arg)
{
	struct shmbus *b = open_as(NULL, "orders", 0, 0, 0666);
	struct shmbus_info bi;

	(void)arg;
	if (!b)
		return 10;
	if (shmbus__queue_declare(b, "mine", NULL) != 1 ||
	    shmbus__queue_declare(b, "payments", NULL) != 1)
		return 11;
	if (shmbus__info(b, &bi) || bi.owner_uid != NOBODY ||
	    bi.mode != 0666 || strcmp(bi.name, "orders"))
		return 12;
	shmbus__close(b);
	return 0;
}

/* The squatter again, after root published its secret. */
static int squat_after(const void *arg)
{
	struct shmbus *own, *root;
	char buf[64];
	ssize_t n;

	(void)arg;
	own = open_as(NULL, "orders", SHMBUS_OPEN_NOCREATE, 0, 0);
	if (!own)
		return 20;
	/* its own payments: root's secret never went there */
	n = take1(own, "payments", buf, sizeof(buf), 200);
	if (n != -ETIMEDOUT && n != -EAGAIN)
		return 21;
	shmbus__close(own);
	/* root's bus is reachable only by naming root, and its mode 0600
	 * keeps the squatter out: not to read, not to delete */
	root = open_as(NULL, "orders", SHMBUS_OPEN_OWNER, 0, 0);
	if (root || errno != EACCES)
		return 22;
	report();
	root = open_as(NULL, "orders", SHMBUS_OPEN_OWNER | SHMBUS_OPEN_RDONLY,
		       0, 0);
	if (root || errno != EACCES)
		return 23;
	return 0;
}

/* A user joins root's 0666 bus only by naming root; it can consume but
 * not configure, and it never creates a bus in root's namespace. */
static int join_shared(const void *arg)
{
	struct shmbus *b;
	char buf[64];

	(void)arg;
	b = open_as(NULL, "shared", SHMBUS_OPEN_NOCREATE, 0, 0);
	if (b || errno != ENOENT)	/* no "shared" of its own */
		return 30;
	b = open_as(NULL, "nosuch", SHMBUS_OPEN_OWNER, 0, 0);
	if (b || errno != ENOENT || !strstr(shmbus_errmsg(), "own namespace"))
		return 31;
	b = open_as(NULL, "shared", SHMBUS_OPEN_OWNER, 0, 0);
	if (!b)
		return 32;
	if (take1(b, "jobs", buf, sizeof(buf), 2000) != 5 || strcmp(buf, "hello"))
		return 33;
	if (shmbus__queue_declare(b, "theirs", NULL) != -EACCES)
		return 34;
	report();
	if (shmbus__queue_delete(b, "jobs") != -EACCES)
		return 35;
	shmbus__close(b);
	return 0;
}

static void test_bus_squat(void **state)
{
	SHMBUS_OPTS(shmbus_open_opts, shared_o, .mode = 0666);
	SHMBUS_OPTS(shmbus_open_opts, theirs, .flags = SHMBUS_OPEN_OWNER |
					      SHMBUS_OPEN_NOCREATE,
		    .owner_uid = NOBODY);
	struct shmbus *b, *sq, *sh;
	struct shmbus_info bi;
	struct shmbus_queue_info qi;
	char buf[64];
	int sent = 0, received = 0;

	(void)state;
	need_root();
	/* root's first: this starts root's daemon */
	sh = shmbus__open("shared", &shared_o);
	assert_non_null(sh);
	assert_int_equal(as_user(NOBODY, 0, squat_first, NULL), 0);

	/* root's "orders" is root's own, new bus */
	b = shmbus__open("orders", NULL);
	assert_non_null(b);
	assert_int_equal(shmbus__info(b, &bi), 0);
	assert_int_equal(bi.owner_uid, 0);
	assert_int_equal(bi.owner_gid, 0);
	assert_int_equal(bi.mode, 0600);
	assert_string_equal(bi.name, "orders");
	assert_int_equal(bi.id, shmbus__id(b));
	assert_int_equal(bi.max_queues, 64);
	assert_int_equal(bi.max_slots, 256);
	assert_true(bi.arena_size > 0);
	assert_int_equal(shmbus__queue_info(b, "mine", &qi), -ENOENT);
	assert_int_equal(shmbus__queue_declare(b, "payments", NULL), 1);
	assert_int_equal(publish1(b, "payments", "secret"), 0);
	sent++;

	assert_int_equal(as_user(NOBODY, 0, squat_after, NULL), 0);
	assert_non_null(strstr(shared, "mode 0600"));

	/* the secret is still there for root */
	if (take1(b, "payments", buf, sizeof(buf), 2000) == 6 &&
	    !strcmp(buf, "secret"))
		received++;
	printf("sent %d received %d lost %d\n", sent, received,
	       sent - received);
	assert_int_equal(received, sent);

	/* two buses called orders: the squatter's is a different one */
	sq = shmbus__open("orders", &theirs);
	assert_non_null(sq);
	assert_int_equal(shmbus__info(sq, &bi), 0);
	assert_int_equal(bi.owner_uid, NOBODY);
	assert_int_equal(bi.mode, 0666);
	assert_true(bi.id != shmbus__id(b));
	assert_int_equal(shmbus__queue_info(sq, "mine", &qi), 0);
	shmbus__close(sq);

	assert_int_equal(shmbus__queue_declare(sh, "jobs", NULL), 1);
	assert_int_equal(publish1(sh, "jobs", "hello"), 0);
	assert_int_equal(as_user(NOBODY, 0, join_shared, NULL), 0);
	assert_non_null(strstr(shared, "configure"));
	assert_int_equal(shmbus__queue_info(sh, "jobs", &qi), 0);
	shmbus__close(sh);
	shmbus__close(b);
}

/* ---- the same through the CLI ------------------------------------- */

static const char *cli_path(void)
{
	static char buf[PATH_MAX];
	const char *d = t_daemon_path();

	snprintf(buf, sizeof(buf), "%s", d);
	strcpy(strrchr(buf, '/') + 1, "shmbus");
	return buf;
}

/* Run the CLI as @uid with @argv (NULL-terminated, after "shmbus");
 * its stdout and stderr into shared; its exit code. */
static int cli(uid_t uid, const char *const *argv)
{
	const char *args[16] = { "shmbus" };
	int pfd[2];
	pid_t kid;
	size_t got = 0;
	ssize_t n;
	int rc;

	for (int i = 0; argv[i] && i < 14; i++)
		args[i + 1] = argv[i];
	assert_int_equal(pipe(pfd), 0);
	kid = fork();
	if (!kid) {
		dup2(pfd[1], 1);
		dup2(pfd[1], 2);
		close(pfd[0]);
		if (uid)
			become(uid, 0);
		execv(cli_path(), (char *const *)args);
		_exit(127);
	}
	close(pfd[1]);
	while (got < SHARED_LEN - 1 &&
	       (n = read(pfd[0], shared + got, SHARED_LEN - 1 - got)) > 0)
		got += (size_t)n;
	shared[got] = '\0';
	close(pfd[0]);
	rc = t_wait(kid, 20000);
	return rc;
}

#define CLI(uid, ...) cli((uid), (const char *const[]){ __VA_ARGS__, NULL })

static void test_bus_squat_cli(void **state)
{
	(void)state;
	need_root();
	/* the steps: a user takes "orders" first ... */
	assert_int_equal(CLI(NOBODY, "--bus", "corders", "queue", "declare",
			     "mine"), 0);
	/* ... root's commands use root's own bus */
	assert_int_equal(CLI(0, "--bus", "corders", "queue", "declare",
			     "payments"), 0);
	assert_int_equal(CLI(0, "--bus", "corders", "pub", "payments",
			     "secret"), 0);
	/* the user's "orders" has no payments; root's it cannot open */
	assert_int_not_equal(CLI(NOBODY, "--bus", "corders", "sub", "payments",
				 "-n", "1", "--timeout", "0.2"), 0);
	assert_null(strstr(shared, "secret"));
	assert_int_not_equal(CLI(NOBODY, "--bus", "root:corders", "sub",
				 "payments", "-n", "1", "--timeout", "0.2"), 0);
	assert_null(strstr(shared, "secret"));
	assert_non_null(strstr(shared, "Permission denied"));
	assert_int_not_equal(CLI(NOBODY, "--owner", "0", "--bus", "corders",
				 "queue", "delete", "payments"), 0);
	/* stat shows who owns which */
	assert_int_equal(CLI(0, "--bus", "corders", "stat"), 0);
	assert_non_null(strstr(shared, "owner root (uid 0) group root (gid 0) "
				       "mode 0600"));
	assert_int_equal(CLI(0, "--owner", "nobody", "--bus", "corders", "stat",
			     "--format", "json"), 0);
	assert_non_null(strstr(shared, "\"owner\":\"nobody\",\"owner_uid\":65534"));
	assert_non_null(strstr(shared, "\"mine\""));
	assert_int_equal(CLI(0, "--bus", "corders", "stat", "--format", "json"),
			 0);
	assert_non_null(strstr(shared, "\"owner_uid\":0,"));
	assert_non_null(strstr(shared, "\"mode\":\"0600\""));
	/* root's message is still there */
	assert_int_equal(CLI(0, "--bus", "corders", "sub", "payments", "-n", "1",
			     "--timeout", "2"), 0);
	assert_non_null(strstr(shared, "secret"));
}

/*
 * shmbus bus list|info|delete across uids: a user lists its own buses
 * and those it may open, never another's private one; only the owner
 * (or root, with --owner) deletes a bus; info shows pools to whoever may
 * open the bus.
 */
static void test_bus_cli(void **state)
{
	struct shmbus *shared_bus;

	(void)state;
	need_root();
	/* root's, open: the daemon (root's) runs */
	shared_bus = open_as(t_sock, "cb.shared", 0, 0, 0644);
	assert_non_null(shared_bus);
	if (CLI(NOBODY, "--bus", "cb.own", "queue", "declare", "q"))
		fail_msg("nobody's declare: %s", shared);
	assert_int_equal(CLI(NOBODY, "--bus", "cb.own2", "queue", "declare",
			     "q"), 0);
	assert_int_equal(CLI(0, "--bus", "cb.root", "queue", "declare", "q"),
			 0);

	if (CLI(NOBODY, "bus", "list"))
		fail_msg("nobody's bus list: %s", shared);
	print_message("nobody's bus list:\n%s", shared);
	assert_non_null(strstr(shared, "cb.own "));
	assert_non_null(strstr(shared, "cb.shared"));
	assert_null(strstr(shared, "cb.root"));
	assert_int_equal(CLI(0, "bus", "list", "--json"), 0);
	assert_non_null(strstr(shared, "\"name\":\"cb.own\",\"owner_uid\":"
				       "65534,\"owner\":\"nobody\""));
	assert_non_null(strstr(shared, "\"name\":\"cb.root\""));
	assert_non_null(strstr(shared, "\"name\":\"cb.shared\""));
	/* info: pools for whoever may open the bus */
	assert_int_equal(CLI(NOBODY, "bus", "info", "cb.shared", "--owner",
			     "0"), EXIT_USAGE_2);
	assert_int_equal(CLI(NOBODY, "--owner", "0", "bus", "info",
			     "cb.shared"), 0);
	assert_non_null(strstr(shared, "members:  1 processes"));
	assert_non_null(strstr(shared, "pool 0:"));
	assert_int_equal(CLI(NOBODY, "bus", "info", "root:cb.shared"), 0);
	assert_non_null(strstr(shared, "pool 0:"));
	assert_int_equal(CLI(NOBODY, "--owner", "0", "bus", "info",
			     "cb.root"), 1);
	assert_non_null(strstr(shared, "no bus 'cb.root'"));
	/* delete: not another's; one's own; root any, with --owner */
	assert_int_equal(CLI(NOBODY, "--owner", "0", "bus", "delete",
			     "cb.root"), 1);
	print_message("nobody deleting root's: %s", shared);
	assert_non_null(strstr(shared, "not yours to delete"));
	assert_int_equal(CLI(NOBODY, "bus", "delete", "cb.own"), 0);
	assert_non_null(strstr(shared, "deleted bus cb.own: 1 queue"));
	assert_int_equal(CLI(0, "bus", "delete", "nobody:cb.own2"), 0);
	assert_int_equal(CLI(0, "bus", "delete", "cb.shared"), 1);
	assert_non_null(strstr(shared, "has 1 member"));
	assert_int_equal(CLI(0, "bus", "delete", "cb.root"), 0);
	assert_int_equal(CLI(0, "bus", "delete", "cb.root"), 1);
	assert_non_null(strstr(shared, "no bus 'cb.root'"));
	assert_int_equal(CLI(0, "bus", "list"), 0);
	assert_null(strstr(shared, "cb.own"));
	assert_null(strstr(shared, "cb.root"));
	assert_int_equal(CLI(0, "bus", "list", "--force"), EXIT_USAGE_2);
	assert_int_equal(CLI(0, "bus", "delete"), EXIT_USAGE_2);
	shmbus__close(shared_bus);
	assert_int_equal(CLI(0, "bus", "delete", "cb.shared"), 0);
}

/*
 * shmbus metrics without --bus: every bus the caller may read, labelled
 * NAME (its own) or OWNER:NAME; pools per size class; a publish that
 * found no free chunk counted in shmbus_nomem_total.
 */
static void test_metrics_buses(void **state)
{
	SHMBUS_OPTS(shmbus_open_opts, oo, .socket_path = t_sock,
		    .nr_pools = 1, .pools = { { 256, 16 } }, .pool_growth = 1);
	SHMBUS_OPTS(shmbus_queue_opts, tq, .msg_size = 256);
	struct shmbus_producer *p;
	struct shmbus *tiny, *rb;
	int published = 0, err = 0;
	char v[100] = { 0 };

	(void)state;
	need_root();
	rb = open_as(t_sock, "mb.root", 0, 0, 0600);
	assert_non_null(rb);
	assert_int_equal(shmbus__queue_declare(rb, "rq", NULL), 1);
	tiny = shmbus__open("mb.tiny", &oo);
	assert_non_null(tiny);
	assert_int_equal(shmbus__queue_declare(tiny, "tq", &tq), 1);
	p = shmbus_producer__new(tiny, "tq", NULL);
	assert_non_null(p);
	while (published < 100 &&
	       !(err = shmbus_producer__publish(p, v, sizeof(v), NULL)))
		published++;
	assert_int_equal(err, -ENOMEM);
	assert_int_equal(published, 16);
	if (CLI(NOBODY, "--bus", "mb.own", "queue", "declare", "oq"))
		fail_msg("nobody's declare: %s", shared);

	unsetenv("SHMBUS_BUS");
	assert_int_equal(CLI(0, "metrics"), 0);
	assert_non_null(strstr(shared, "shmbus_depth{bus=\"mb.root\","
				       "queue=\"rq\"} 0\n"));
	assert_non_null(strstr(shared, "shmbus_depth{bus=\"mb.tiny\","
				       "queue=\"tq\"} 16\n"));
	assert_non_null(strstr(shared, "shmbus_depth{bus=\"nobody:mb.own\","
				       "queue=\"oq\"} 0\n"));
	assert_non_null(strstr(shared, "shmbus_nomem_total{bus=\"mb.tiny\","
				       "queue=\"tq\"} 1\n"));
	if (!strstr(shared, "shmbus_pool_chunks{bus=\"mb.tiny\","
			    "pool=\"256\"} 16\n"))
		fail_msg("%s", shared);
	assert_non_null(strstr(shared, "shmbus_pool_free_chunks{bus="
				       "\"mb.tiny\",pool=\"256\"} 0\n"));
	/* a pool of fixed size: its most is what it has */
	assert_non_null(strstr(shared, "shmbus_pool_chunks_max{bus="
				       "\"mb.tiny\",pool=\"256\"} 16\n"));
	assert_non_null(strstr(shared, "# TYPE shmbus_pool_chunks gauge\n"));
	/* a family's HELP once, whatever the number of buses */
	assert_null(strstr(strstr(shared, "# HELP shmbus_depth ") + 1,
			   "# HELP shmbus_depth "));
	/* another user's bus of a long name: the whole OWNER:NAME label,
	 * two of them apart */
	{
		char la[80], lb[80], want[160];

		memset(la, 'x', 60);
		la[60] = 'A';
		la[61] = '\0';
		memcpy(lb, la, 62);
		lb[60] = 'B';
		if (CLI(NOBODY, "--bus", la, "queue", "declare", "lq") ||
		    CLI(NOBODY, "--bus", lb, "queue", "declare", "lq"))
			fail_msg("nobody's declare: %s", shared);
		assert_int_equal(CLI(0, "metrics"), 0);
		snprintf(want, sizeof(want), "shmbus_depth{bus=\"nobody:%s\","
			 "queue=\"lq\"} 0\n", la);
		assert_non_null(strstr(shared, want));
		snprintf(want, sizeof(want), "shmbus_depth{bus=\"nobody:%s\","
			 "queue=\"lq\"} 0\n", lb);
		assert_non_null(strstr(shared, want));
		assert_int_equal(CLI(NOBODY, "bus", "delete", la), 0);
		assert_int_equal(CLI(NOBODY, "bus", "delete", lb), 0);
	}
	/* nobody: its own, never root's private buses */
	assert_int_equal(CLI(NOBODY, "metrics"), 0);
	assert_non_null(strstr(shared, "{bus=\"mb.own\",queue=\"oq\"}"));
	assert_null(strstr(shared, "mb.root"));
	assert_null(strstr(shared, "mb.tiny"));
	/* --bus: that one alone */
	assert_int_equal(CLI(0, "--bus", "mb.root", "metrics"), 0);
	assert_non_null(strstr(shared, "{bus=\"mb.root\",queue=\"rq\"}"));
	assert_null(strstr(shared, "mb.tiny"));
	shmbus_producer__free(p);
	shmbus__close(tiny);
	shmbus__close(rb);
	assert_int_equal(CLI(0, "bus", "delete", "mb.tiny"), 0);
	assert_int_equal(CLI(0, "bus", "delete", "mb.root"), 0);
	assert_int_equal(CLI(NOBODY, "bus", "delete", "mb.own"), 0);
}

/* ---- raw frames: private queues ----------------------------------- */

static int raw_call(int fd, unsigned type, const void *body, size_t len,
		    char *reason, size_t rlen)
{
	union {
		struct sbc_hdr h;
		uint8_t b[SBC_FRAME_MAX];
	} out, in;
	union {
		struct cmsghdr align;
		uint8_t b[CMSG_SPACE(sizeof(int) * SBC_MAX_FDS)];
	} cbuf;
	struct iovec iov = { .iov_base = in.b, .iov_len = sizeof(in.b) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = cbuf.b,
			     .msg_controllen = sizeof(cbuf.b) };
	ssize_t n;

	memset(&out.h, 0, sizeof(out.h));
	out.h.magic = SBC_MAGIC;
	out.h.version = SBC_VERSION;
	out.h.type = type;
	out.h.len = sizeof(out.h) + len;
	out.h.seq = 1;
	memcpy(out.b + sizeof(out.h), body, len);
	if (send(fd, out.b, out.h.len, 0) != (ssize_t)out.h.len)
		return -EIO;
	n = recvmsg(fd, &mh, 0);
	if (n < (ssize_t)sizeof(in.h))
		return -EIO;
	proto_take_fds(&mh, NULL, 0, NULL);
	if (reason) {
		size_t k = (size_t)n - sizeof(in.h);

		reason[0] = '\0';
		if (in.h.status && k)
			snprintf(reason, rlen, "%.*s", (int)k,
				 (const char *)in.b + sizeof(in.h));
	}
	return in.h.status;
}

/* A connection bound to bus @name (of @owner if OWNER in @flags). */
static int raw_open(const char *sock, const char *name, uint32_t flags,
		    uint32_t owner)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct sbc_hello he = { SBC_VERSION, SBC_VERSION };
	struct sbc_bus_open bo = { .flags = flags, .owner_uid = owner };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	strcpy(bo.name, name);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    raw_call(fd, SBC_HELLO, &he, sizeof(he), NULL, 0) ||
	    raw_call(fd, SBC_BUS_OPEN, &bo, sizeof(bo), NULL, 0)) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static int raw_declare(int fd, const char *q, uint32_t flags, char *reason)
{
	struct sbc_queue_declare d = { .flags = flags };
	struct sbc_queue_declare_reply rep;

	(void)rep;
	strcpy(d.name, q);
	return raw_call(fd, SBC_QUEUE_DECLARE, &d, sizeof(d), reason, 200);
}

static int raw_attach(int fd, const char *q, uint32_t role, char *reason)
{
	struct sbc_attach a = { .role = role };

	strcpy(a.name, q);
	return raw_call(fd, SBC_ATTACH, &a, sizeof(a), reason, 200);
}

/*
 * A member of root's 0666 bus "pay", in a child: private queues. It
 * reports step by step through @cmd (a pipe pair: it writes a byte when
 * a step is done, reads one to go on).
 */
struct member {
	int go[2], done[2];
	const char *sock;
};

static void step_done(const struct member *m, char c)
{
	if (write(m->done[1], &c, 1) != 1)
		_exit(90);
}

static void step_wait(const struct member *m)
{
	char c;

	if (read(m->go[0], &c, 1) != 1)
		_exit(91);
}

static int private_member(const void *arg)
{
	const struct member *m = arg;
	char why[200];
	int fd = raw_open(m->sock, "pay", SBC_OPEN_OWNER, 0);

	if (fd < 0)
		return 40;
	/* a name the owner will want: refused, whatever the mode */
	if (raw_declare(fd, "payments", SBC_QUEUE_PRIVATE, why) != -EACCES ||
	    !strstr(why, "_reply."))
		return 41;
	snprintf(shared, 4096, "%s", why);
	/* a reply queue: fine */
	if (raw_declare(fd, "_reply.x", SBC_QUEUE_PRIVATE, why))
		return 42;
	/* the owner's shared "_reply.y" cannot become ours */
	step_done(m, 'a');
	step_wait(m);
	if (raw_declare(fd, "_reply.y", SBC_QUEUE_PRIVATE, why) != -EEXIST ||
	    !strstr(why, "shared queue"))
		return 43;
	/* nor can we consume the owner's private reply queue */
	if (raw_attach(fd, "_reply.root", SHMBUS_ROLE_CONSUMER, why) != -EACCES ||
	    !strstr(why, "private to another connection"))
		return 44;
	step_done(m, 'b');
	step_wait(m);		/* holds "_reply.x" until told */
	close(fd);
	return 0;
}

static void test_private_squat(void **state)
{
	SHMBUS_OPTS(shmbus_open_opts, o, .mode = 0666);
	struct member m = { .sock = t_sock };
	struct shmbus *b;
	char why[200], c;
	pid_t kid;
	int fd, rc;

	(void)state;
	need_root();
	b = shmbus__open("pay", &o);
	assert_non_null(b);
	assert_int_equal(pipe(m.go), 0);
	assert_int_equal(pipe(m.done), 0);
	kid = fork();
	if (!kid) {
		become(NOBODY, 0);
		_exit(private_member(&m));
	}
	assert_int_equal(read(m.done[0], &c, 1), 1);
	assert_non_null(strstr(shared, "must start with \"_reply.\""));
	/* the member's private "_reply.x": the owner's declare of that
	 * name fails clearly, never joins it */
	assert_int_equal(shmbus__queue_declare(b, "_reply.x", NULL), -EEXIST);
	assert_non_null(strstr(shmbus_errmsg(), "private queue of another "
						"connection"));
	assert_int_equal(shmbus__queue_declare(b, "_reply.y", NULL), 1);
	fd = raw_open(t_sock, "pay", 0, 0);
	assert_true(fd >= 0);
	assert_int_equal(raw_declare(fd, "_reply.root", SBC_QUEUE_PRIVATE, why), 0);
	assert_int_equal(write(m.go[1], "g", 1), 1);
	assert_int_equal(read(m.done[0], &c, 1), 1);
	/* the member lets go: its queue goes with its connection, and the
	 * name is free for the owner */
	assert_int_equal(write(m.go[1], "g", 1), 1);
	rc = t_wait(kid, 20000);
	assert_int_equal(rc, 0);
	for (int i = 0; i < 500; i++) {
		if (shmbus__queue_declare(b, "_reply.x", NULL) == 1)
			break;
		usleep(10000);
	}
	assert_int_equal(shmbus__queue_declare(b, "_reply.x", NULL), 0);
	close(fd);
	close(m.go[0]);
	close(m.go[1]);
	close(m.done[0]);
	close(m.done[1]);
	shmbus__close(b);
}

/* ---- the policy file ------------------------------------------------ */

static char psock[100], plog[128], pfile[128];

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	chmod(path, 0644);
}

/* Start shmbusd on psock with --policy @pol; its pid. */
static pid_t start_daemon(const char *pol)
{
	pid_t pid;

	snprintf(psock, sizeof(psock), "%s/p.sock", t_dir);
	snprintf(plog, sizeof(plog), "%s/p.log", t_dir);
	unlink(psock);
	pid = fork();
	if (!pid) {
		execl(t_daemon_path(), "shmbusd", "--socket", psock, "--policy",
		      pol, "--log", plog, (char *)NULL);
		_exit(127);
	}
	/* listening, not just bound: a connect succeeds */
	for (int i = 0; i < 1000; i++) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		int rc;

		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", psock);
		rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
		close(fd);
		if (!rc)
			return pid;
		usleep(10000);
	}
	fail_msg("shmbusd does not listen on %s", psock);
	return pid;
}

static void stop_daemon(pid_t pid)
{
	kill(pid, SIGTERM);
	assert_int_equal(t_wait(pid, 10000), 0);
}

/* Does the daemon's log have a line with every one of @words? */
static bool log_has(const char *const *words)
{
	char line[1024];
	bool found = false;
	FILE *f = fopen(plog, "r");

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		found = true;
		for (int i = 0; words[i]; i++)
			found = found && strstr(line, words[i]);
	}
	fclose(f);
	return found;
}

#define LOG_HAS(...) log_has((const char *const[]){ __VA_ARGS__, NULL })

/* What a child tries; the result code says how far it got. */
struct try {
	const char *bus;	/* root's bus; NULL: its own "mybus" */
	int op;			/* 0 open rw, 1 declare, 2 publish, 3 consume */
	const char *q;
};

static int try_op(const void *arg)
{
	const struct try *t = arg;
	struct shmbus *b;
	char buf[64];
	ssize_t n;
	int err;

	b = t->bus ? open_as(psock, t->bus, SHMBUS_OPEN_OWNER |
			     SHMBUS_OPEN_NOSTART, 0, 0)
		   : open_as(psock, "mybus", SHMBUS_OPEN_NOSTART, 0, 0);
	if (!b) {
		err = errno;
		report();
		snprintf(shared + strlen(shared), 64, " [pid %d]", (int)getpid());
		return err == EACCES ? 13 : 50;
	}
	switch (t->op) {
	case 1:
		err = shmbus__queue_declare(b, t->q, NULL);
		err = err > 0 ? 0 : err;
		break;
	case 2:
		err = publish1(b, t->q, "x");
		break;
	case 3:
		n = take1(b, t->q, buf, sizeof(buf), 100);
		err = n == -ETIMEDOUT || n == -EAGAIN || n >= 0 ? 0 : (int)n;
		break;
	default:
		err = 0;
	}
	report();
	snprintf(shared + strlen(shared), 64, " [pid %d]", (int)getpid());
	return err == -EACCES ? 13 : err ? 51 : 0;
}

static int run_try(uid_t uid, gid_t extra, const char *bus, int op,
		   const char *q)
{
	struct try t = { bus, op, q };

	return as_user(uid, extra, try_op, &t);
}

static void test_policy_rules(void **state)
{
	SHMBUS_OPTS(shmbus_open_opts, o600, .socket_path = psock,
		    .flags = SHMBUS_OPEN_NOSTART, .mode = 0600);
	SHMBUS_OPTS(shmbus_open_opts, o666, .socket_path = psock,
		    .flags = SHMBUS_OPEN_NOSTART, .mode = 0666);
	struct shmbus *a, *s, *au;
	char pid_s[32];
	pid_t d;

	(void)state;
	need_root();
	snprintf(pfile, sizeof(pfile), "%s/policy", t_dir);
	write_file(pfile,
		   "# who may do what\n"
		   "deny  user:65533   create               *\n"	/* 2 */
		   "allow user:nobody  configure,publish    root:orders.*\n"
		   "deny  other        consume  root:orders.secret # no\n"
		   "allow group:4242   consume              root:audit\n"
		   "\n"
		   "deny  group:4343   publish   root:orders.secret\n");
	d = start_daemon(pfile);
	a = shmbus__open("orders.a", &o600);
	s = shmbus__open("orders.secret", &o666);
	au = shmbus__open("audit", &o600);
	assert_non_null(a);
	assert_non_null(s);
	assert_non_null(au);
	assert_int_equal(shmbus__queue_declare(s, "q", NULL), 1);
	assert_int_equal(shmbus__queue_declare(au, "q", NULL), 1);

	/* create: refused to 65533 by line 2, fine for nobody */
	assert_int_equal(run_try(OTHER, 0, NULL, 0, NULL), 13);
	assert_non_null(strstr(shared, ":2"));
	assert_non_null(strstr(shared, "create"));
	snprintf(pid_s, sizeof(pid_s), "pid %s", strstr(shared, "[pid ") ?
		 strstr(shared, "[pid ") + 5 : "?");
	assert_int_equal(run_try(NOBODY, 0, NULL, 1, "own"), 0);

	/* configure and publish on a 0600 bus of root's, by line 3 */
	assert_int_equal(run_try(NOBODY, 0, "orders.a", 1, "made"), 0);
	assert_int_equal(run_try(NOBODY, 0, "orders.a", 2, "made"), 0);
	/* consume: no rule, and mode 0600 gives nobody no r */
	assert_int_equal(run_try(NOBODY, 0, "orders.a", 3, "made"), 13);
	assert_non_null(strstr(shared, "mode 0600"));
	/* not orders.*: line 3 does not apply */
	assert_int_equal(run_try(NOBODY, 0, "audit", 1, "x"), 13);

	/* a 0666 bus: publish by mode; consume denied by line 4 */
	assert_int_equal(run_try(OTHER, 0, "orders.secret", 2, "q"), 0);
	assert_int_equal(run_try(OTHER, 0, "orders.secret", 3, "q"), 13);
	assert_non_null(strstr(shared, ":4"));

	/* a group rule: a supplementary group 4242 consumes root's audit */
	assert_int_equal(run_try(OTHER, 4242, "audit", 3, "q"), 0);
	assert_int_equal(run_try(OTHER, 0, "audit", 3, "q"), 13);
	/* with 72 groups (more than fit inline) rules see them all: the
	 * allow of line 5 and the deny of line 7 */
	assert_int_equal(run_try(OTHER, 4343, "orders.secret", 2, "q"), 13);
	assert_non_null(strstr(shared, ":7"));
	many_groups = true;
	assert_int_equal(run_try(OTHER, 4242, "audit", 3, "q"), 0);
	assert_int_equal(run_try(OTHER, 4343, "orders.secret", 2, "q"), 13);
	assert_non_null(strstr(shared, ":7"));
	many_groups = false;

	/* the refusal's log line: uid, pid, bus, operation, rule */
	{
		char rule[160];

		snprintf(rule, sizeof(rule), "%s:2", pfile);
		pid_s[strcspn(pid_s, "]")] = '\0';
		assert_true(LOG_HAS("refused: uid 65533", pid_s, "create",
				    rule));
		snprintf(rule, sizeof(rule), "%s:4", pfile);
		assert_true(LOG_HAS("refused: uid 65533", "bus 0:orders.secret",
				    "consume", rule));
	}
	shmbus__close(a);
	shmbus__close(s);
	shmbus__close(au);
	stop_daemon(d);
}

static void test_policy_reload(void **state)
{
	SHMBUS_OPTS(shmbus_open_opts, o666, .socket_path = psock,
		    .flags = SHMBUS_OPEN_NOSTART, .mode = 0666);
	struct shmbus *b;
	pid_t d;

	(void)state;
	need_root();
	snprintf(pfile, sizeof(pfile), "%s/policy2", t_dir);
	write_file(pfile, "allow * consume *\n");
	d = start_daemon(pfile);
	b = shmbus__open("jobs", &o666);
	assert_non_null(b);
	assert_int_equal(shmbus__queue_declare(b, "q", NULL), 1);
	assert_int_equal(run_try(NOBODY, 0, "jobs", 3, "q"), 0);

	/* a new policy: takes effect on SIGHUP, for connected members too */
	write_file(pfile, "deny user:nobody consume jobs\nallow * consume *\n");
	assert_int_equal(run_try(NOBODY, 0, "jobs", 3, "q"), 0);
	kill(d, SIGHUP);
	for (int i = 0; i < 500 && !LOG_HAS("policy2: 2 rules"); i++)
		usleep(10000);
	assert_int_equal(run_try(NOBODY, 0, "jobs", 3, "q"), 13);
	assert_non_null(strstr(shared, "policy2:1"));
	assert_int_equal(run_try(OTHER, 0, "jobs", 3, "q"), 0);

	/* a malformed file: logged with file:line, the old policy stays */
	write_file(pfile, "deny user:nobody consume jobs\nallow nobody\n");
	kill(d, SIGHUP);
	for (int i = 0; i < 500 && !LOG_HAS("policy2:2:"); i++)
		usleep(10000);
	assert_true(LOG_HAS("policy2:2:", "keeping the policy in force"));
	assert_true(t_pid_running(d));
	assert_int_equal(run_try(NOBODY, 0, "jobs", 3, "q"), 13);
	assert_int_equal(run_try(OTHER, 0, "jobs", 3, "q"), 0);
	shmbus__close(b);
	stop_daemon(d);
}

/* shmbusd with a bad policy exits non-zero, saying file:line. */
static int daemon_with(const char *pol)
{
	int pfd[2];
	pid_t kid;
	size_t got = 0;
	ssize_t n;

	assert_int_equal(pipe(pfd), 0);
	kid = fork();
	if (!kid) {
		dup2(pfd[1], 2);
		close(pfd[0]);
		execl(t_daemon_path(), "shmbusd", "--socket", psock, "--policy",
		      pol, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	while (got < 4095 && (n = read(pfd[0], shared + got, 4095 - got)) > 0)
		got += (size_t)n;
	shared[got] = '\0';
	close(pfd[0]);
	return t_wait(kid, 10000);
}

static void test_policy_malformed(void **state)
{
	static const char *const bad[][2] = {
		{ "allow * publish *\nallow user:nobody publsh *\n", ":2: operation 'publsh'" },
		{ "\n\nallow user:no-such-user-here * *\n", ":3: no user" },
		{ "permit * * *\n", ":1: 'permit'" },
		{ "allow * *\n", ":1: want" },
		{ "allow * * root:a/b\n", ":1: buses" },
		{ "allow someone * *\n", ":1: who" },
	};
	char path[160];

	(void)state;
	snprintf(psock, sizeof(psock), "%s/m.sock", t_dir);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(path, sizeof(path), "%s/bad%zu", t_dir, i);
		write_file(path, bad[i][0]);
		assert_int_equal(daemon_with(path), 1);
		assert_non_null(strstr(shared, path));
		assert_non_null(strstr(shared, bad[i][1]));
	}
	/* --policy names a file: it must exist */
	snprintf(path, sizeof(path), "%s/absent", t_dir);
	assert_int_equal(daemon_with(path), 1);
	assert_non_null(strstr(shared, "No such file"));
	assert_int_equal(access(psock, F_OK), -1);	/* never listened */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bus_squat),
		cmocka_unit_test(test_bus_squat_cli),
		cmocka_unit_test(test_bus_cli),
		cmocka_unit_test(test_metrics_buses),
		cmocka_unit_test(test_private_squat),
		cmocka_unit_test(test_policy_rules),
		cmocka_unit_test(test_policy_reload),
		cmocka_unit_test(test_policy_malformed),
	};

	shared = mmap(NULL, SHARED_LEN, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shared == MAP_FAILED)
		return 1;
	return T_RUN_WITH_DAEMON("policy", tests);
}
