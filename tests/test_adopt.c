// SPDX-License-Identifier: MIT
/*
 * test_adopt.c - a daemon taking over the buses of one that died, from the
 * daemon's side of the protocol: the arenas it refuses (another layout
 * version, left untouched; another daemon's; unsealed; another bus's), the
 * connection a rejoining process may take back (only its own), that no
 * second bus of a name in use is ever made (a non-root daemon that cannot
 * look into a holder waits for it, by its registry, and one that can
 * does not wait for a member that holds no arena; a registry or link
 * another user plants beside the socket is neither believed nor written
 * through), what the slots a member forges cost a restarted daemon (a
 * pidfd each, within the bus owner's conns quota), and how long an
 * adoption takes for 1 and 64 buses.
 *
 * Real daemons, real processes, kill -9; REJOIN spoken on a raw socket.
 */
#include <grp.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "shmbus.h"
#include "helpers.h"
#include "internal.h"
#include "proto.h"
#include "ring.h"
#include "shmbus/layout.h"

#define NOBODY	65534

/* ---- the protocol, by hand ---------------------------------------------- */

static int raw_connect_to(const char *sock)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* One exchange: request @type with @body and @nfds fds; the reply's status,
 * its body into @rep (if 0) or its reason into @reason. */
static int call(int fd, unsigned type, const void *body, size_t len,
		const int *fds, unsigned nfds, void *rep, size_t replen,
		char *reason, size_t rlen)
{
	union {
		struct sbc_hdr h;
		uint8_t b[SBC_FRAME_MAX];
	} out, in;
	union proto_cbuf cbuf;
	struct iovec iov = { .iov_base = out.b };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	ssize_t n;

	memset(&out.h, 0, sizeof(out.h));
	out.h.magic = SBC_MAGIC;
	out.h.version = SBC_VERSION;
	out.h.type = type;
	out.h.len = sizeof(out.h) + len;
	out.h.seq = 7;
	memcpy(out.b + sizeof(out.h), body, len);
	iov.iov_len = out.h.len;
	proto_give_fds(&mh, &cbuf, fds, nfds);
	if (sendmsg(fd, &mh, MSG_NOSIGNAL) != (ssize_t)out.h.len)
		return -ECONNRESET;
	if (poll(&pfd, 1, 10000) != 1)
		return -ETIMEDOUT;
	n = recv(fd, in.b, sizeof(in.b), 0);
	if (n < (ssize_t)sizeof(in.h))
		return -ECONNRESET;
	if (reason && rlen) {
		reason[0] = '\0';
		if (in.h.status && n > (ssize_t)sizeof(in.h))
			snprintf(reason, rlen, "%.*s", (int)(n - sizeof(in.h)),
				 (const char *)in.b + sizeof(in.h));
	}
	if (!in.h.status && rep)
		memcpy(rep, in.b + sizeof(in.h),
		       replen < n - sizeof(in.h) ? replen : n - sizeof(in.h));
	return in.h.status;
}

static int hello(int fd)
{
	struct sbc_hello h = { SBC_VERSION, SBC_VERSION };
	struct sbc_hello_reply r;

	return call(fd, SBC_HELLO, &h, sizeof(h), NULL, 0, &r, sizeof(r),
		    NULL, 0);
}

/* HELLO and REJOIN of bus (@owner, @name) with @arena and @token, on a new
 * connection to @sock (kept open in *@conn if not NULL). */
static int rejoin(const char *sock, const char *name, uid_t owner,
		  uint64_t token, int arena, char *reason, size_t rlen,
		  int *conn)
{
	struct sbc_rejoin q = { .owner_uid = owner, .token = token };
	struct sbc_bus_open_reply rep;
	int fd = raw_connect_to(sock), st;

	if (fd < 0)
		return -ECONNREFUSED;
	snprintf(q.name, sizeof(q.name), "%s", name);
	st = hello(fd);
	if (!st)
		st = call(fd, SBC_REJOIN, &q, sizeof(q), &arena, 1, &rep,
			  sizeof(rep), reason, rlen);
	if (conn && !st)
		*conn = fd;
	else
		close(fd);
	return st;
}

/* ---- arenas ----------------------------------------------------------- */

/* The daemon instance in the name of arena fd @fd. */
static uint32_t instance_of_arena(int fd)
{
	char path[64], link[512];
	unsigned inst = 0;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof(link) - 1);
	assert_true(n > 0);
	link[n] = '\0';
	assert_int_equal(sscanf(link, "/memfd:shmbus:%x:", &inst), 1);
	return inst;
}

/* A copy of arena @src as a memfd called @desc, @version in its
 * superblock, sealed as the daemon seals (if @seal). */
static int arena_copy(int src, const char *desc, uint32_t version, bool seal)
{
	struct stat st;
	void *from;
	int fd;

	assert_int_equal(fstat(src, &st), 0);
	fd = memfd_create(desc, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, st.st_size), 0);
	from = mmap(NULL, st.st_size, PROT_READ, MAP_SHARED, src, 0);
	assert_true(from != MAP_FAILED);
	assert_int_equal(pwrite(fd, from, st.st_size, 0), st.st_size);
	munmap(from, st.st_size);
	assert_int_equal(pwrite(fd, &version, sizeof(version),
				offsetof(struct shmbus_sb, version)), 4);
	if (seal)
		assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK |
				       F_SEAL_GROW | F_SEAL_SEAL), 0);
	return fd;
}

static uint32_t fd_hash(int fd)
{
	struct stat st;
	uint32_t h;
	void *p;

	assert_int_equal(fstat(fd, &st), 0);
	p = mmap(NULL, st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(p != MAP_FAILED);
	h = t_fnv(p, st.st_size);
	munmap(p, st.st_size);
	return h;
}

/* Does the log of the daemon at @sock (autostarted: "<sock>.log") hold
 * @needle? */
static bool log_has(const char *log, const char *needle)
{
	char line[1024];
	bool found = false;
	FILE *f = fopen(log, "r");

	while (f && !found && fgets(line, sizeof(line), f))
		found = strstr(line, needle) != NULL;
	if (f)
		fclose(f);
	return found;
}

/* log_has(), within 5 s: a daemon logs its adoptions after it listens. */
static bool log_soon(const char *log, const char *needle)
{
	for (int i = 0; i < 500; i++) {
		if (log_has(log, needle))
			return true;
		usleep(10000);
	}
	return false;
}

static const char *t_log(void)
{
	static char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s.log", t_sock);
	return path;
}

/* Small buses: adopting 64 of them must not need gigabytes. */
static struct shmbus *open_small(const char *name)
{
	SHMBUS_OPTS(shmbus_open_opts, o, .max_queues = 8, .max_slots = 8,
		    .ring_bytes = 64 << 10, .nr_pools = 1,
		    .pools = { { .payload = 4096, .count = 64 } });
	struct shmbus *b = shmbus__open(name, &o);

	assert_non_null(b);
	return b;
}

/* ---- the arenas a daemon refuses ---------------------------------------- */

/*
 * An arena of another layout version is refused with a clear line and
 * left as it is; one named by another daemon instance, or not sealed, is
 * refused; the real bus is not disturbed.
 */
static void test_refused_arenas(void **state)
{
	struct shmbus *bus = open_small("cur");
	int afd = t_bus_arena_fd("cur"), fake;
	uint32_t inst = instance_of_arena(afd), h0;
	char desc[128], why[256];
	int st;

	(void)state;
	assert_true(afd >= 0);

	/* layout version 3, otherwise a perfect arena of this daemon's */
	snprintf(desc, sizeof(desc), "shmbus:%08x:0:0:600:0badcafe:old", inst);
	fake = arena_copy(afd, desc, 3, true);
	h0 = fd_hash(fake);
	st = rejoin(t_sock, "old", 0, 1, fake, why, sizeof(why), NULL);
	print_message("layout 3: %d (%s)\n", st, why);
	assert_int_equal(st, -EPROTONOSUPPORT);
	assert_non_null(strstr(why, "layout version 3"));
	assert_int_equal(fd_hash(fake), h0);	/* not a byte changed */
	assert_true(log_has(t_log(), "layout version 3"));
	close(fake);

	/* another daemon instance's */
	snprintf(desc, sizeof(desc), "shmbus:%08x:0:0:600:0badcafe:other",
		 inst ^ 1);
	fake = arena_copy(afd, desc, SHMBUS_LAYOUT_VERSION, true);
	st = rejoin(t_sock, "other", 0, 1, fake, why, sizeof(why), NULL);
	print_message("other instance: %d (%s)\n", st, why);
	assert_int_equal(st, -EACCES);
	assert_non_null(strstr(why, "another shmbus daemon"));
	close(fake);

	/* not sealed: whoever holds it could truncate it under everyone */
	snprintf(desc, sizeof(desc), "shmbus:%08x:0:0:600:0badcafe:loose", inst);
	fake = arena_copy(afd, desc, SHMBUS_LAYOUT_VERSION, false);
	st = rejoin(t_sock, "loose", 0, 1, fake, why, sizeof(why), NULL);
	assert_int_equal(st, -EACCES);
	assert_non_null(strstr(why, "not sealed"));
	close(fake);

	/* not a memfd the daemon named at all */
	fake = memfd_create("orders", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	st = rejoin(t_sock, "orders", 0, 1, fake, why, sizeof(why), NULL);
	assert_int_equal(st, -EACCES);
	close(fake);

	/* the real bus's arena handed back as another bus */
	st = rejoin(t_sock, "notcur", 0, 1, afd, why, sizeof(why), NULL);
	print_message("foreign arena: %d (%s)\n", st, why);
	assert_int_equal(st, -EACCES);
	assert_non_null(strstr(why, "not 0:notcur"));

	/* the real one still works */
	assert_true(shmbus__queue_declare(bus, "q", NULL) >= 0);
	shmbus__close(bus);
}

/* ---- whose connection a rejoin takes back -------------------------------- */

/* Slot of pid @pid on @sb's bus, or NULL. */
static struct shmbus_slot *slot_of(struct shmbus_sb *sb, pid_t pid)
{
	for (uint32_t i = 0; i < sb->max_slots; i++) {
		struct shmbus_slot *s = (void *)((uint8_t *)sb + sb->slot_off +
						 (uint64_t)i * sb->slot_size);

		if (READ_ONCE(s->state) == SHMBUS_SLOT_ACTIVE &&
		    READ_ONCE(s->pid) == (uint32_t)pid)
			return s;
	}
	return NULL;
}

static bool wait_for(bool (*cond)(void *), void *arg, int ms)
{
	for (int i = 0; i < ms; i++) {
		if (cond(arg))
			return true;
		usleep(1000);
	}
	return cond(arg);
}

static bool slot_gone(void *arg)
{
	struct shmbus_slot *s = arg;

	return READ_ONCE(s->state) == SHMBUS_SLOT_FREE;
}

/*
 * A consumer's slot survives the daemon's death (its process lives); a
 * member that rejoins naming that consumer's old connection does not get
 * it; the consumer's exit then releases it.
 */
static void test_rejoin_only_own(void **state)
{
	struct shmbus *bus = open_small("tok"), *other;
	struct shmbus_sb *sb;
	struct shmbus_slot *s;
	int go[2], afd = t_bus_arena_fd("tok"), conn = -1, st;
	char why[256], c;
	uint64_t token;
	pid_t kid;

	(void)state;
	assert_true(shmbus__queue_declare(bus, "tq", NULL) >= 0);
	assert_int_equal(pipe(go), 0);
	kid = fork();
	if (!kid) {
		struct shmbus *b = open_small("tok");
		struct shmbus_consumer *cn = shmbus_consumer__new(b, "tq", NULL);

		if (!cn || write(go[1], "r", 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	assert_int_equal(read(go[0], &c, 1), 1);
	sb = t_arena_mapping("tok");
	assert_non_null(sb);
	s = slot_of(sb, kid);
	assert_non_null(s);
	token = READ_ONCE(s->conn_token);
	assert_true(token != 0);

	/* stopped, the consumer's library cannot rejoin (and take its slot
	 * back under a new token) before we try with its old one */
	kill(kid, SIGSTOP);
	t_kill_daemon();
	other = open_small("tok2");	/* a new daemon; it adopts "tok" */
	assert_true(log_soon(t_log(), "bus 0:tok adopted"));
	assert_int_equal(READ_ONCE(s->state), SHMBUS_SLOT_ACTIVE);

	/* we are a member of "tok", but not the process of that token */
	st = rejoin(t_sock, "tok", 0, token, afd, why, sizeof(why), &conn);
	assert_int_equal(st, 0);
	assert_true(log_soon(t_log(), "not its own; ignored"));
	assert_int_equal(READ_ONCE(s->state), SHMBUS_SLOT_ACTIVE);
	assert_int_equal(READ_ONCE(s->conn_token), token);

	/* the consumer's exit, seen through the ghost's pidfd */
	kill(kid, SIGKILL);
	waitpid(kid, NULL, 0);
	assert_true(wait_for(slot_gone, s, 3000));
	print_message("consumer killed after the restart: its slot released\n");
	close(conn);
	close(go[0]);
	close(go[1]);
	shmbus__close(other);
	shmbus__close(bus);
}

/*
 * A process that was a consumer of bus "gb" rejoins bus "ga" (of which it
 * holds the arena) naming its "gb" connection's token: that is not a
 * connection of "ga", and must not end the ghost that holds its "gb"
 * slot - a slot no connection owns would never be released, its leases
 * never requeued. Its exit then releases the slot.
 */
static void test_rejoin_other_bus(void **state)
{
	struct shmbus *ga = open_small("ga"), *gb = open_small("gb"), *start;
	struct sbc_attach at = { .role = SHMBUS_ROLE_CONSUMER };
	struct sbc_bus_open op = { .flags = 0 };
	struct sbc_attach_reply ar;
	struct sbc_bus_open_reply rep;
	struct shmbus_slot *s;
	struct shmbus_sb *sb;
	int ready[2], go[2], st;
	uint64_t token;
	pid_t kid;
	char c;

	(void)state;
	assert_true(shmbus__queue_declare(gb, "q", NULL) >= 0);
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(go), 0);
	kid = fork();
	if (!kid) {
		int conn = raw_connect_to(t_sock), afd = t_bus_arena_fd("ga");
		char why[256];

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		snprintf(op.name, sizeof(op.name), "gb");
		snprintf(at.name, sizeof(at.name), "q");
		if (conn < 0 || afd < 0 || hello(conn) ||
		    call(conn, SBC_BUS_OPEN, &op, sizeof(op), NULL, 0, &rep,
			 sizeof(rep), why, sizeof(why)) ||
		    call(conn, SBC_ATTACH, &at, sizeof(at), NULL, 0, &ar,
			 sizeof(ar), why, sizeof(why)))
			_exit(1);
		if (write(ready[1], &rep.conn_token, sizeof(rep.conn_token)) !=
		    sizeof(rep.conn_token) || read(go[0], &c, 1) != 1)
			_exit(2);
		/* the daemon is another one now: rejoin "ga" with the
		 * token of our "gb" connection */
		st = rejoin(t_sock, "ga", 0, rep.conn_token, afd, why,
			    sizeof(why), &conn);
		if (write(ready[1], &st, sizeof(st)) != sizeof(st))
			_exit(3);
		pause();
		_exit(0);
	}
	assert_int_equal(read(ready[0], &token, sizeof(token)), sizeof(token));
	sb = t_arena_mapping("gb");
	assert_non_null(sb);
	s = slot_of(sb, kid);
	assert_non_null(s);
	assert_true(READ_ONCE(s->conn_token) == token);

	t_kill_daemon();
	start = open_small("gstart");	/* a new daemon; it adopts both */
	assert_true(log_soon(t_log(), "bus 0:gb adopted"));
	assert_int_equal(write(go[1], "g", 1), 1);
	assert_int_equal(read(ready[0], &st, sizeof(st)), sizeof(st));
	print_message("rejoin of bus ga with the token of a gb connection: "
		      "%d\n", st);
	assert_int_equal(READ_ONCE(s->state), SHMBUS_SLOT_ACTIVE);

	kill(kid, SIGKILL);
	waitpid(kid, NULL, 0);
	assert_true(wait_for(slot_gone, s, 3000));
	print_message("its gb slot released at its exit\n");
	close(ready[0]);
	close(ready[1]);
	close(go[0]);
	close(go[1]);
	shmbus__close(start);
	shmbus__close(gb);
	shmbus__close(ga);
}

/*
 * A slot that names a live process that does not map the bus (a member
 * wrote another process's pid and start time there) gets no
 * ghost and no pidfd: the restarted daemon releases it as a dead one's.
 */
static void test_slot_names_other_process(void **state)
{
	struct shmbus *bus = open_small("forge"), *other;
	struct shmbus_producer *p;
	struct shmbus_slot *s;
	struct shmbus_sb *sb;
	pid_t other_pid;

	(void)state;
	assert_true(shmbus__queue_declare(bus, "q", NULL) >= 0);
	p = shmbus_producer__new(bus, "q", NULL);
	assert_non_null(p);
	sb = t_arena_mapping("forge");
	assert_non_null(sb);
	s = slot_of(sb, getpid());
	assert_non_null(s);
	/* a live process that has nothing to do with the bus (exec drops
	 * the mappings a fork inherits) */
	other_pid = fork();
	if (!other_pid) {
		execlp("sleep", "sleep", "30", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 1000; i++) {
		char exe[64] = "", path[64];

		snprintf(path, sizeof(path), "/proc/%d/exe", (int)other_pid);
		if (readlink(path, exe, sizeof(exe) - 1) > 0 &&
		    !strstr(exe, "test_adopt"))
			break;
		usleep(1000);
	}
	WRITE_ONCE(s->pid, (uint32_t)other_pid);
	WRITE_ONCE(s->start_time, pid_start_time(other_pid));
	assert_true(s->start_time != 0);
	t_kill_daemon();
	other = open_small("forge2");	/* the next daemon adopts "forge" */
	assert_true(log_soon(t_log(), "bus 0:forge adopted"));
	print_message("slot naming an unrelated live process: state %u "
		      "after adoption\n", READ_ONCE(s->state));
	assert_int_equal(READ_ONCE(s->state), SHMBUS_SLOT_FREE);
	kill(other_pid, SIGKILL);
	waitpid(other_pid, NULL, 0);
	shmbus_producer__free(p);
	shmbus__close(other);
	shmbus__close(bus);
}

/* ---- no second bus of a name in use ----------------------------------------- */

struct shared {
	uint32_t held_id;	/* the holder's bus id */
	uint32_t got_id;	/* what the late opener got, 0 = none */
	int got_errno;
	char reason[200];
};

/* In a forked child: become NOBODY, and die with the test (after the uid
 * change, which clears the parent-death signal): a failed test leaves
 * nothing running. */
static void as_nobody(void)
{
	if (setgroups(0, NULL) || setgid(NOBODY) || setuid(NOBODY))
		_exit(99);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
}

/* A nobody child opening bus "held" at @sock within @ms: its id into
 * sh->got_id (0: none, errno and reason kept). Returns its exit status. */
static int late_open(const char *sock, int ms, struct shared *sh)
{
	pid_t kid = fork();

	if (!kid) {
		SHMBUS_OPTS(shmbus_open_opts, o, .socket_path = sock,
			    .flags = SHMBUS_OPEN_NOSTART,
			    .connect_timeout_ms = ms);
		struct shmbus *b;

		shmbus_set_print(NULL);
		as_nobody();
		b = shmbus__open("held", &o);
		sh->got_errno = b ? 0 : errno;
		sh->got_id = b ? shmbus__id(b) : 0;
		snprintf(sh->reason, sizeof(sh->reason), "%s",
			 shmbus_errmsg());
		_exit(0);
	}
	return t_wait(kid, 20000);
}

/* A daemon as uid @uid (0 or NOBODY) on @sock, in the foreground: its pid.
 * The binary is opened while we are root (its path may not be NOBODY's to
 * walk). */
static pid_t daemon_as(uid_t uid, const char *sock, const char *log,
		       const char *quota)
{
	int dfd = open(t_daemon_path(), O_RDONLY | O_CLOEXEC);
	pid_t pid;

	assert_true(dfd >= 0);
	pid = fork();
	if (!pid) {
		char *argv[] = { "shmbusd", "--socket", (char *)sock, "--log",
				 (char *)log, quota ? "--quota" : NULL,
				 (char *)quota, NULL };
		extern char **environ;

		if (uid == NOBODY)
			as_nobody();
		else
			prctl(PR_SET_PDEATHSIG, SIGKILL);
		fexecve(dfd, argv, environ);
		_exit(98);
	}
	close(dfd);
	for (int i = 0; i < 5000 && !t_listening(sock); i++)
		usleep(1000);
	assert_true(t_listening(sock));
	return pid;
}

static pid_t nobody_daemon(const char *sock, const char *log)
{
	return daemon_as(NOBODY, sock, log, NULL);
}

/*
 * A non-root daemon cannot look into a process of its uid that made
 * itself non-dumpable, nor pull its arena. After a restart it must still
 * not give a second bus of that name to anyone: its registry says the
 * bus has a live member. A late opener gets the old bus or a clear
 * refusal (-EINPROGRESS, or -ETIMEDOUT after retrying), never a new one;
 * once the holder is gone, the name is free.
 */
static void test_no_split_brain(void **state)
{
	struct shared *sh = t_shared(sizeof(*sh));
	char dir[128], sock[160], log1[160], log2[160];
	int go[2];
	pid_t d1, d2, holder;
	char c;

	(void)state;
	if (geteuid() != 0)
		SKIP_OR_FAIL("needs root to run a daemon as another user");
	snprintf(dir, sizeof(dir), "%s/nobody", t_dir);
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(chown(dir, NOBODY, NOBODY), 0);
	chmod(t_dir, 0755);
	snprintf(sock, sizeof(sock), "%s/d.sock", dir);
	snprintf(log1, sizeof(log1), "%s/d1.log", t_dir);
	snprintf(log2, sizeof(log2), "%s/d2.log", t_dir);
	/* the logs are opened by the daemon as NOBODY */
	for (int i = 0; i < 2; i++) {
		int fd = open(i ? log2 : log1, O_CREAT | O_WRONLY, 0644);

		assert_true(fd >= 0);
		assert_int_equal(fchown(fd, NOBODY, NOBODY), 0);
		close(fd);
	}
	d1 = nobody_daemon(sock, log1);
	assert_int_equal(pipe(go), 0);
	holder = fork();
	if (!holder) {
		SHMBUS_OPTS(shmbus_open_opts, o, .socket_path = sock,
			    .flags = SHMBUS_OPEN_NOSTART);
		struct shmbus *b;

		shmbus_set_print(NULL);
		as_nobody();
		b = shmbus__open("held", &o);
		if (!b || shmbus__queue_declare(b, "q", NULL) < 0)
			_exit(1);
		sh->held_id = shmbus__id(b);
		/* now neither /proc/PID/fd nor pidfd_getfd() lets our own
		 * uid's daemon in */
		prctl(PR_SET_DUMPABLE, 0);
		if (write(go[1], "r", 1) != 1)
			_exit(2);
		pause();
		_exit(0);
	}
	assert_int_equal(read(go[0], &c, 1), 1);
	kill(d1, SIGKILL);
	waitpid(d1, NULL, 0);
	d2 = nobody_daemon(sock, log2);
	assert_true(log_soon(log2, "registry: 1 buses"));

	assert_int_equal(late_open(sock, 1000, sh), 0);
	print_message("late opener while the holder lives: id %08x (holder's "
		      "%08x), errno %d (%s)\n", sh->got_id, sh->held_id,
		      sh->got_errno, sh->reason);
	/* the old bus (its holder rejoined), or a refusal; never another */
	if (sh->got_id)
		assert_int_equal(sh->got_id, sh->held_id);
	else
		assert_true(sh->got_errno == EINPROGRESS ||
			    sh->got_errno == ETIMEDOUT);
	if (!sh->got_id)
		assert_non_null(strstr(sh->reason, "held by running processes"));

	/* the holder gone, the name is free (or it was adopted: same id) */
	kill(holder, SIGKILL);
	waitpid(holder, NULL, 0);
	assert_int_equal(late_open(sock, 3000, sh), 0);
	assert_true(sh->got_id != 0);
	kill(d2, SIGKILL);
	waitpid(d2, NULL, 0);
	close(go[0]);
	close(go[1]);
}

/*
 * A member that keeps its connection and closes its arena holds nothing:
 * a restarted daemon that can look into its fds (root's, or one of its
 * uid's) finds no arena there, and the registry's word that it is a
 * member must not keep the name from a new bus for as long as it lives.
 */
static void test_member_without_arena(void **state)
{
	struct sbc_bus_open q = { .flags = SBC_OPEN_CREATE };
	struct sbc_bus_open_reply rep;
	struct shmbus *starter, *b;
	char reg[PATH_MAX], why[256];
	int conn;

	(void)state;
	starter = open_small("naf0");		/* a daemon runs */
	conn = raw_connect_to(t_sock);
	assert_true(conn >= 0);
	assert_int_equal(hello(conn), 0);
	snprintf(q.name, sizeof(q.name), "nofd");
	/* the arena's fd is not taken: recv() without room drops it */
	assert_int_equal(call(conn, SBC_BUS_OPEN, &q, sizeof(q), NULL, 0, &rep,
			      sizeof(rep), why, sizeof(why)), 0);
	assert_int_equal(t_bus_arena_fd("nofd"), -1);
	snprintf(reg, sizeof(reg), "%s.buses", t_sock);
	assert_true(log_soon(reg, "nofd"));	/* the registry names it */
	t_kill_daemon();
	shmbus__close(starter);
	{
		SHMBUS_OPTS(shmbus_open_opts, o, .connect_timeout_ms = 1000,
			    .max_queues = 8, .max_slots = 8,
			    .ring_bytes = 64 << 10, .nr_pools = 1,
			    .pools = { { .payload = 4096, .count = 64 } });

		b = shmbus__open("nofd", &o);
		print_message("bus nofd, whose last member holds no arena: "
			      "%s\n", b ? "opened" : shmbus_errmsg());
		assert_non_null(b);
		shmbus__close(b);
	}
	close(conn);
}

/* ---- two kills within milliseconds ---------------------------------------------- */

/* Descriptor of queue @name on @sb's bus, or NULL. */
static struct shmbus_queue *queue_of(struct shmbus_sb *sb, const char *name)
{
	for (uint32_t i = 0; i < sb->max_queues; i++) {
		struct shmbus_queue *q = (void *)((uint8_t *)sb + sb->qdir_off +
						  (uint64_t)i * sb->queue_size);

		if (SHMBUS_QGEN_LIVE(READ_ONCE(q->gen)) &&
		    !strncmp(q->name, name, SHMBUS_NAME_MAX))
			return q;
	}
	return NULL;
}

static bool slot_released(void *arg)
{
	struct shmbus_slot *s = arg;

	return READ_ONCE(s->state) != SHMBUS_SLOT_ACTIVE;
}

/* In a child attached as a consumer of "q" on bus "sw": take the one
 * message from the ring as a consumer's receive does, naming it in the
 * delivery table first, and stop before recording the delivery - where a
 * kill -9 leaves it to the daemon's orphan sweep. */
static void take_unrecorded(int ready)
{
	struct shmbus *b = open_small("sw");
	struct shmbus_consumer *c = shmbus_consumer__new(b, "q", NULL);
	struct shmbus_sb *sb = t_arena_mapping("sw");
	struct shmbus_queue *q = sb ? queue_of(sb, "q") : NULL;
	struct shmbus_slot *s = sb ? slot_of(sb, getpid()) : NULL;
	struct ring r;
	uint32_t ref;

	if (!c || !q || !s)
		_exit(2);
	r.cells = (void *)((uint8_t *)sb + q->ring_off);
	r.tail = &q->tail;
	r.head = &q->head;
	ring_geometry(&r, q->ring_cap);
	/* the claim hook's order: the name, then the ring cmpxchg */
	s->lease[0].ref = SHMBUS_LEASE_NOREF;
	if (ring_dequeue(&r, &ref))
		_exit(3);
	WRITE_ONCE(s->lease[0].ref, ref);
	WRITE_ONCE(s->lease_hi, 1);
	if (write(ready, "t", 1) != 1)
		_exit(4);
	pause();
	_exit(0);
}

/* In a child: attach to "stay" and claim a read-side section, holding
 * every grace period of bus "sw" (up to the daemon's 2 s bound). */
static void hold_grace(int ready)
{
	struct shmbus *b = open_small("sw");
	struct shmbus_consumer *c = shmbus_consumer__new(b, "stay", NULL);
	struct shmbus_sb *sb = t_arena_mapping("sw");
	struct shmbus_slot *s = sb ? slot_of(sb, getpid()) : NULL;

	if (!c || !s)
		_exit(2);
	WRITE_ONCE(s->rcu_epoch, 1);
	if (write(ready, "h", 1) != 1)
		_exit(4);
	pause();
	_exit(0);
}

/*
 * A consumer killed between taking a message and recording it leaves the
 * message to a sweep that waits a grace period; a daemon killed during
 * that wait must not take the sweep with it. The dead consumer's slot
 * stays DEAD, the message's name in its table, until the sweep is over,
 * so the next daemon sweeps again and the message is delivered.
 */
static void test_sweep_survives_restart(void **state)
{
	struct shmbus *bus = open_small("sw"), *starter;
	struct shmbus_consumer *c;
	struct shmbus_producer *p;
	struct shmbus_slot *ts;
	struct shmbus_sb *sb;
	int ready[2], received = 0;
	pid_t taker, holder;
	char buf[64], k;
	ssize_t n;

	(void)state;
	assert_true(shmbus__queue_declare(bus, "q", NULL) >= 0);
	assert_true(shmbus__queue_declare(bus, "stay", NULL) >= 0);
	p = shmbus_producer__new(bus, "q", NULL);
	assert_non_null(p);
	assert_int_equal(shmbus_producer__publish(p, "M", 1, NULL), 0);
	assert_int_equal(pipe(ready), 0);
	holder = fork();
	if (!holder)
		hold_grace(ready[1]);
	assert_int_equal(read(ready[0], &k, 1), 1);
	taker = fork();
	if (!taker)
		take_unrecorded(ready[1]);
	assert_int_equal(read(ready[0], &k, 1), 1);
	sb = t_arena_mapping("sw");
	assert_non_null(sb);
	ts = slot_of(sb, taker);
	assert_non_null(ts);

	/* the consumer dies; its sweep waits for the held grace period */
	kill(taker, SIGKILL);
	waitpid(taker, NULL, 0);
	assert_true(wait_for(slot_released, ts, 3000));
	/* its release done (microseconds), its sweep still waiting: the
	 * grace period is held for 2 s */
	usleep(200 * 1000);
	/* and the daemon dies before the sweep is over */
	t_kill_daemon();
	kill(holder, SIGKILL);
	waitpid(holder, NULL, 0);
	shmbus_producer__free(p);

	starter = open_small("sw2");	/* the next daemon adopts "sw" */
	shmbus__close(bus);
	bus = open_small("sw");
	c = shmbus_consumer__new(bus, "q", NULL);
	assert_non_null(c);
	n = shmbus_consumer__receive(c, buf, sizeof(buf),
				     5LL * 1000 * 1000 * 1000);
	received = n == 1 && buf[0] == 'M';
	print_message("consumer and daemon killed within the sweep's grace "
		      "period: sent 1 received %d lost %d duplicated 0\n",
		      received, 1 - received);
	assert_int_equal(received, 1);
	shmbus_consumer__free(c);
	shmbus__close(bus);
	shmbus__close(starter);
	close(ready[0]);
	close(ready[1]);
}

/* ---- what a member's slots cost a restarted daemon --------------------------- */

/* The pidfds process @pid holds. */
static unsigned pidfds_of(pid_t pid)
{
	static const char *const pidfd[] = { "anon_inode:[pidfd]", NULL };

	return (unsigned)t_fds_linking(pid, pidfd);
}

#define GHOST_SLOTS	64
#define GHOST_CONNS	"conns=8"

/*
 * A member's process: bus "gh" of its own (as NOBODY) with one consumer,
 * then every other slot of the arena made an ACTIVE copy of that
 * consumer's under a token of its own, as any member can write them.
 */
static void ghost_forger(const char *sock, int ready)
{
	SHMBUS_OPTS(shmbus_open_opts, o, .socket_path = sock,
		    .flags = SHMBUS_OPEN_NOSTART, .max_queues = 8,
		    .max_slots = GHOST_SLOTS, .ring_bytes = 64 << 10,
		    .nr_pools = 1, .pools = { { .payload = 4096, .count = 64 } });
	struct shmbus_slot *own = NULL;
	struct shmbus_sb *sb;
	struct shmbus *b;

	shmbus_set_print(NULL);
	if (setgroups(0, NULL) || setgid(NOBODY) || setuid(NOBODY))
		_exit(99);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	b = shmbus__open("gh", &o);
	if (!b || shmbus__queue_declare(b, "q", NULL) < 0 ||
	    !shmbus_consumer__new(b, "q", NULL))
		_exit(1);
	sb = t_arena_mapping("gh");
	if (!sb)
		_exit(2);
	own = slot_of(sb, getpid());
	if (!own)
		_exit(3);
	for (uint32_t i = 0; i < sb->max_slots; i++) {
		struct shmbus_slot *s = (void *)((uint8_t *)sb + sb->slot_off +
						 (uint64_t)i * sb->slot_size);

		if (s == own)
			continue;
		memcpy(s, own, offsetof(struct shmbus_slot, rcu_epoch));
		s->seat = UINT32_MAX;
		s->conn_token = 0x5eed0000ULL + i;
	}
	if (write(ready, "r", 1) != 1)
		_exit(4);
	pause();
	_exit(0);
}

/*
 * A restarted daemon watches each live connection of an adopted bus with
 * a pidfd until it rejoins (a "ghost"). Those are made from the arena's
 * slots, which any member can fill with tokens of its own: the pidfds
 * are charged to the bus owner's conns quota, and beyond it the slots
 * are released as a dead process's (its consumer's leases requeued).
 */
static void test_ghosts_bounded(void **state)
{
	char dir[128], sock[160], log1[160], log2[160];
	unsigned pidfds;
	int go[2];
	pid_t d, kid;
	char c;

	(void)state;
	if (geteuid() != 0)
		SKIP_OR_FAIL("needs root to own the bus as another user");
	snprintf(dir, sizeof(dir), "%s/ghosts", t_dir);
	assert_int_equal(mkdir(dir, 0755), 0);
	chmod(t_dir, 0755);
	snprintf(sock, sizeof(sock), "%s/d.sock", dir);
	snprintf(log1, sizeof(log1), "%s/ghosts1.log", t_dir);
	snprintf(log2, sizeof(log2), "%s/ghosts2.log", t_dir);
	d = daemon_as(0, sock, log1, GHOST_CONNS);
	assert_int_equal(pipe(go), 0);
	kid = fork();
	if (!kid)
		ghost_forger(sock, go[1]);
	assert_int_equal(read(go[0], &c, 1), 1);
	kill(d, SIGKILL);
	waitpid(d, NULL, 0);

	d = daemon_as(0, sock, log2, GHOST_CONNS);
	assert_true(log_soon(log2, "bus 65534:gh adopted"));
	pidfds = pidfds_of(d);
	print_message("%u forged slots of one member: the restarted daemon "
		      "holds %u pidfds (conns quota 8)\n", GHOST_SLOTS - 1,
		      pidfds);
	assert_true(pidfds <= 8);
	assert_true(log_has(log2, "quota"));
	kill(kid, SIGKILL);
	waitpid(kid, NULL, 0);
	kill(d, SIGKILL);
	waitpid(d, NULL, 0);
	close(go[0]);
	close(go[1]);
}

/* ---- the files beside the socket ------------------------------------------ */

/* Field 22 of /proc/@pid/stat, as the daemon reads a start time. */
static unsigned long long start_time_of(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long v = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	assert_non_null(f);
	assert_non_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	p = strrchr(buf, ')');
	assert_non_null(p);
	for (int field = 3; field <= 22; field++) {
		p = strchr(p + 1, ' ');
		assert_non_null(p);
	}
	assert_int_equal(sscanf(p, " %llu", &v), 1);
	return v;
}

/* As uid NOBODY, run @fn(@arg) in a child: its exit status. */
static int nobody_run(int (*fn)(void *), void *arg)
{
	pid_t pid = fork();

	if (!pid) {
		as_nobody();
		_exit(fn(arg));
	}
	return t_wait(pid, 10000);
}

struct plant {
	char sock[160], target[160];
	const char *suffix;	/* plant_link()'s */
	pid_t pid;
	unsigned long long start;
};

/* What another user can put beside a socket in a sticky directory: the
 * old daemon's registry name as a link to a file of root's, and a
 * registry saying a live process holds bus 0:victim. */
static int plant(void *arg)
{
	const struct plant *pl = arg;
	char path[200];
	FILE *f;

	snprintf(path, sizeof(path), "%s.buses.tmp", pl->sock);
	if (symlink(pl->target, path))
		return 1;
	snprintf(path, sizeof(path), "%s.buses", pl->sock);
	f = fopen(path, "w");
	if (!f)
		return 2;
	fprintf(f, "shmbus-registry 2\nheld 0 victim %d %llu\n",
		(int)pl->pid, pl->start);
	return fclose(f) ? 3 : 0;
}

/*
 * Root's daemon on a socket in a sticky, world-writable directory: the
 * links and files another user puts beside the socket neither make it
 * write through them (a root file overwritten) nor make it believe a
 * registry it did not write (a bus name held by a process that holds
 * nothing).
 */
static void test_registry_not_planted(void **state)
{
	struct plant pl = { .pid = getpid() };
	char dir[128], log[160], buf[64] = "";
	const char precious[] = "root's own\n";
	struct shmbus *b;
	pid_t d;
	int fd;

	(void)state;
	if (geteuid() != 0)
		SKIP_OR_FAIL("needs root to plant files as another user");
	snprintf(dir, sizeof(dir), "%s/sticky", t_dir);
	assert_int_equal(mkdir(dir, 0755), 0);
	assert_int_equal(chmod(dir, 01777), 0);
	chmod(t_dir, 0755);
	snprintf(pl.sock, sizeof(pl.sock), "%s/d.sock", dir);
	snprintf(pl.target, sizeof(pl.target), "%s/precious", t_dir);
	snprintf(log, sizeof(log), "%s/sticky.log", t_dir);
	fd = open(pl.target, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, precious, strlen(precious)),
			 (ssize_t)strlen(precious));
	close(fd);
	pl.start = start_time_of(pl.pid);
	assert_int_equal(nobody_run(plant, &pl), 0);

	d = daemon_as(0, pl.sock, log, NULL);
	/* answered: the daemon has saved its registry (bound is not yet
	 * listening: connect again until it is) */
	fd = raw_connect_to(pl.sock);
	for (int i = 0; i < 2000 && fd < 0; i++) {
		usleep(1000);
		fd = raw_connect_to(pl.sock);
	}
	assert_true(fd >= 0);
	assert_int_equal(hello(fd), 0);
	close(fd);
	fd = open(pl.target, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_true(read(fd, buf, sizeof(buf) - 1) >= 0);
	close(fd);
	print_message("the file the planted link names: \"%.*s\"\n",
		      (int)strcspn(buf, "\n"), buf);
	assert_string_equal(buf, precious);
	{
		SHMBUS_OPTS(shmbus_open_opts, o, .socket_path = pl.sock,
			    .flags = SHMBUS_OPEN_NOSTART,
			    .connect_timeout_ms = 1000);

		b = shmbus__open("victim", &o);
		print_message("bus 0:victim, named by another user's "
			      "registry: %s\n", b ? "opened" : shmbus_errmsg());
		assert_non_null(b);
		shmbus__close(b);
	}
	assert_true(log_has(log, "ignored"));
	kill(d, SIGKILL);
	waitpid(d, NULL, 0);
}

/* Another user's link at "<socket>@suffix" (struct plant's @target is
 * the file it names). */
static int plant_link(void *arg)
{
	const struct plant *pl = arg;
	char path[200];

	snprintf(path, sizeof(path), "%s%s", pl->sock, pl->suffix);
	return symlink(pl->target, path) ? 1 : 0;
}

/* A daemon started on a socket in sticky directory @sub, with a link
 * another user planted at "<socket>@suffix" naming a file of root's and
 * its log beside the socket (as an autostarted daemon logs): it refuses
 * to start rather than write to that file. */
static void link_not_followed(const char *sub, const char *suffix)
{
	struct plant pl = { .suffix = suffix };
	const char precious[] = "root's own\n";
	char dir[128], log[200], buf[64] = "";
	pid_t d;
	int fd;

	if (geteuid() != 0)
		SKIP_OR_FAIL("needs root to plant files as another user");
	snprintf(dir, sizeof(dir), "%s/%s", t_dir, sub);
	assert_int_equal(mkdir(dir, 0755), 0);
	assert_int_equal(chmod(dir, 01777), 0);
	chmod(t_dir, 0755);
	snprintf(pl.sock, sizeof(pl.sock), "%s/d.sock", dir);
	snprintf(pl.target, sizeof(pl.target), "%s/%s.precious", t_dir, sub);
	snprintf(log, sizeof(log), "%s.log", pl.sock);
	fd = open(pl.target, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, precious, strlen(precious)),
			 (ssize_t)strlen(precious));
	close(fd);
	assert_int_equal(nobody_run(plant_link, &pl), 0);

	d = fork();
	if (!d) {
		execl(t_daemon_path(), "shmbusd", "--socket", pl.sock, "--log",
		      log, (char *)NULL);
		_exit(98);
	}
	/* it exits (refused), or it runs: then give it time to write */
	if (t_wait(d, 1000) < 0)
		print_message("the daemon started over the planted link\n");
	fd = open(pl.target, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_true(read(fd, buf, sizeof(buf) - 1) >= 0);
	close(fd);
	print_message("the file the planted \"%s\" link names: %zu bytes, "
		      "\"%.*s\"...\n", suffix, strlen(buf),
		      (int)strcspn(buf, "\n"), buf);
	assert_string_equal(buf, precious);
}

static void test_lock_not_planted(void **state)
{
	(void)state;
	link_not_followed("sticky2", ".lock");
}

static void test_log_not_planted(void **state)
{
	(void)state;
	link_not_followed("sticky3", ".log");
}

/* ---- how long an adoption takes -------------------------------------------- */

/* The microseconds of the daemon's "adopted N buses ... in X us" line. */
static long adopted_us(unsigned n)
{
	char line[1024], want[64];
	long us = -1;
	FILE *f = fopen(t_log(), "r");

	snprintf(want, sizeof(want), "adopted %u buses that live processes "
		 "hold in ", n);
	while (f && fgets(line, sizeof(line), f)) {
		char *p = strstr(line, want);

		if (p)
			us = atol(p + strlen(want));
	}
	if (f)
		fclose(f);
	return us;
}

static void adopt_n(unsigned n, const char *prefix)
{
	struct shmbus **b = calloc(n, sizeof(*b)), *starter;
	char name[32];
	long us;

	for (unsigned i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "%s%u", prefix, i);
		b[i] = open_small(name);
		assert_true(shmbus__queue_declare(b[i], "q", NULL) >= 0);
	}
	t_kill_daemon();
	snprintf(name, sizeof(name), "%sstart", prefix);
	starter = open_small(name);	/* starts the next daemon */
	us = adopted_us(n);
	print_message("adoption at start: %u buses in %ld us (%.1f us a bus)\n",
		      n, us, (double)us / n);
	assert_true(us >= 0);
	for (unsigned i = 0; i < n; i++) {
		struct shmbus *again;

		/* a new client gets the same bus, which the daemon serves */
		snprintf(name, sizeof(name), "%s%u", prefix, i);
		again = open_small(name);
		assert_int_equal(shmbus__id(again), shmbus__id(b[i]));
		assert_true(shmbus__queue_declare(again, "q2", NULL) >= 0);
		shmbus__close(again);
		shmbus__close(b[i]);
	}
	shmbus__close(starter);
	free(b);
}

static void test_adoption_time(void **state)
{
	(void)state;
	adopt_n(1, "one");
	adopt_n(64, "many");
}

/* ---- memfds named like arenas --------------------------------------------- */

#define FORGED	2000

/* Lines of the log at @log that hold @needle. */
static unsigned log_count(const char *log, const char *needle)
{
	char line[1024];
	unsigned n = 0;
	FILE *f = fopen(log, "r");

	while (f && fgets(line, sizeof(line), f))
		n += strstr(line, needle) != NULL;
	if (f)
		fclose(f);
	return n;
}

/*
 * Any user can name a memfd like an arena of root's daemon (the instance
 * is no secret) and keep thousands: the scan at start passes over memfds
 * that are not of the daemon's uid without pulling each one and logging
 * its refusal.
 */
static void test_forged_names_unpulled(void **state)
{
	struct shmbus *held = open_small("fn0"), *starter;
	uint32_t inst = instance_of_arena(t_bus_arena_fd("fn0"));
	struct rlimit rl = { FORGED + 64, FORGED + 64 };
	int go[2];
	long us;
	pid_t kid;
	char c;

	(void)state;
	if (geteuid() != 0)
		SKIP_OR_FAIL("needs root to run the forger as another user");
	assert_int_equal(pipe(go), 0);
	kid = fork();
	if (!kid) {
		char desc[96];

		if (setrlimit(RLIMIT_NOFILE, &rl))
			_exit(98);
		as_nobody();
		for (unsigned i = 0; i < FORGED; i++) {
			snprintf(desc, sizeof(desc), "shmbus:%08x:0:0:600:%x:"
				 "forged%u", inst, i + 1, i);
			if (memfd_create(desc, 0) < 0)
				_exit(1);
		}
		if (write(go[1], "r", 1) != 1)
			_exit(2);
		pause();
		_exit(0);
	}
	assert_int_equal(read(go[0], &c, 1), 1);
	t_kill_daemon();
	starter = open_small("fn1");	/* the next daemon, which scans */
	assert_true(log_soon(t_log(), "bus 0:fn0 adopted"));
	us = adopted_us(1);	/* -1 if it adopted more than fn0 */
	print_message("%u memfds of uid %u named like arenas: %u refusals "
		      "logged; the scan took %ld us\n", FORGED, NOBODY,
		      log_count(t_log(), "belongs to uid 65534"), us);
	assert_int_equal(log_count(t_log(), "belongs to uid 65534"), 0);
	kill(kid, SIGKILL);
	waitpid(kid, NULL, 0);
	shmbus__close(starter);
	shmbus__close(held);
	close(go[0]);
	close(go[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_refused_arenas),
		cmocka_unit_test(test_rejoin_only_own),
		cmocka_unit_test(test_rejoin_other_bus),
		cmocka_unit_test(test_slot_names_other_process),
		cmocka_unit_test(test_no_split_brain),
		cmocka_unit_test(test_member_without_arena),
		cmocka_unit_test(test_sweep_survives_restart),
		cmocka_unit_test(test_ghosts_bounded),
		cmocka_unit_test(test_forged_names_unpulled),
		cmocka_unit_test(test_registry_not_planted),
		cmocka_unit_test(test_lock_not_planted),
		cmocka_unit_test(test_log_not_planted),
		cmocka_unit_test(test_adoption_time),
	};

	if (geteuid() != 0 && ci_mode()) {
		fprintf(stderr, "test_adopt: CI=true needs root\n");
		return 1;
	}
	return T_RUN_WITH_DAEMON("adopt", tests);
}
