// SPDX-License-Identifier: MIT
/*
 * test_fdstore.c - the daemon and systemd's notify socket and file
 * descriptor store, with this program in the service manager's place: it
 * binds the datagram socket $NOTIFY_SOCKET names, keeps the fds stored
 * with FDSTORE=1 under their FDNAME (and drops them on FDSTORE_REMOVE=1),
 * and starts the next daemon with them at fd 3.. as LISTEN_FDS,
 * LISTEN_FDNAMES and LISTEN_PID (the child's own pid, set after fork).
 *  - READY=1 once the daemon listens; the state memfd stored once, before
 *    it; every bus's arena stored once as arena-<bus id>, a sealed memfd
 *    whose superblock names that id; the state memfd parses and holds the
 *    copy of each bus's superblock constant lines;
 *  - kill -9, and the next daemon started with the store adopts every bus
 *    before it says READY=1 (its log says so, before "listening"): a new
 *    client opening the bus by name gets the same bus id and receives
 *    every message published before the kill (sent/received/lost/
 *    duplicated printed, 0 lost), the state memfd is kept, not stored
 *    again; a superblock and pool descriptor a member scribbled on while
 *    no daemon ran are restored from the state memfd's copies;
 *  - a state memfd holding garbage is logged, dropped from the store and
 *    replaced; an fd of a name the daemon does not know is logged and
 *    closed; abstract notify socket names work;
 *  - arenas not of the daemon's making passed as arena-* (a plain file,
 *    memfds named as the daemon names its arenas, unsealed or holding no
 *    arena) are refused, logged and dropped from the store;
 *  - a bus the daemon adopted from a process that maps it (the store was
 *    empty) goes to the store as a created one does;
 *  - a listening socket passed (socket activation) is served on, and
 *    --socket is not bound;
 *  - the same restart under the real systemd (systemd-run, Restart=,
 *    FileDescriptorStoreMax=), where PID 1 is systemd. Elsewhere it prints
 *    "not run: systemd is not PID 1 (systemd-run fd store case)" and
 *    passes: the one case the project lets report itself not run instead
 *    of failing, since it needs the machine's init, which no test can
 *    provide.
 */
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "shmbus.h"
#include "shmbus/layout.h"
#include "helpers.h"

/* The state memfd's format (userspace/daemon/fdstore.c, docs/design.md),
 * read here as any other reader would. */
struct state_hdr {
	uint64_t magic;
	uint32_t version, hdr_size, rec_size, nr_recs, sb_bytes, max_pools;
	uint8_t __pad[32];
};

struct state_rec {
	uint32_t bus_id, nr_pools;
	uint8_t __pad[56];
	uint8_t sb[256];
	uint8_t pool[SHMBUS_MAX_POOLS][64];
};

#define STATE_MAGIC	0x54537375626d6873ULL	/* "shmbusST" */

/* ---- the service manager's part --------------------------------------- */

#define STORE_MAX	64

struct store {
	int nfd;
	int fd[STORE_MAX];
	char name[STORE_MAX][64];
};

static struct store store;
static int nsock = -1;		/* the notify socket we bind */
static char nname[108];		/* its $NOTIFY_SOCKET */
static pid_t dpid;		/* the daemon running, 0 = none */
static char dlog[160];		/* its log */

static void notify_bind(bool abstract)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	socklen_t len;

	if (nsock >= 0)
		close(nsock);
	nsock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(nsock >= 0);
	if (abstract) {
		snprintf(nname, sizeof(nname), "@shmbus-test-notify-%d-%lld",
			 (int)getpid(), (long long)t_now_ns());
		memcpy(sa.sun_path + 1, nname + 1, strlen(nname) - 1);
		len = offsetof(struct sockaddr_un, sun_path) + strlen(nname);
	} else {
		snprintf(nname, sizeof(nname), "%s/notify", t_dir);
		unlink(nname);
		strcpy(sa.sun_path, nname);
		len = sizeof(sa);
	}
	assert_int_equal(bind(nsock, (struct sockaddr *)&sa, len), 0);
}

static void store_drop(const char *name)
{
	for (int i = 0; i < store.nfd; i++) {
		if (strcmp(store.name[i], name))
			continue;
		close(store.fd[i]);
		if (i != --store.nfd) {
			store.fd[i] = store.fd[store.nfd];
			strcpy(store.name[i], store.name[store.nfd]);
		}
		i--;
	}
}

static void store_clear(void)
{
	for (int i = 0; i < store.nfd; i++)
		close(store.fd[i]);
	store.nfd = 0;
}

static int store_find(const char *name)
{
	for (int i = 0; i < store.nfd; i++)
		if (!strcmp(store.name[i], name))
			return store.fd[i];
	return -1;
}

static int store_count(const char *name)
{
	int n = 0;

	for (int i = 0; i < store.nfd; i++)
		n += !strcmp(store.name[i], name);
	return n;
}

/* The value of @key= in notify message @msg, into @out; false if none. */
static bool msg_field(const char *msg, const char *key, char *out, size_t len)
{
	size_t kl = strlen(key);

	for (const char *p = msg; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : p)
		if (!strncmp(p, key, kl) && p[kl] == '=') {
			snprintf(out, len, "%.*s", (int)strcspn(p + kl + 1, "\n"),
				 p + kl + 1);
			return true;
		}
	return false;
}

/*
 * Receive one notify message within @ms into @msg, acting on it as the
 * service manager does: FDSTORE=1 keeps its fd under FDNAME,
 * FDSTORE_REMOVE=1 drops that name. False on a timeout.
 */
static bool notify_recv(int ms, char *msg, size_t len)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(8 * sizeof(int))];
	} ctl;
	struct iovec iov = { .iov_base = msg, .iov_len = len - 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = ctl.buf,
			     .msg_controllen = sizeof(ctl.buf) };
	struct pollfd pfd = { .fd = nsock, .events = POLLIN };
	char name[64];
	int fds[8], nfds = 0;
	ssize_t n;

	if (poll(&pfd, 1, ms) != 1)
		return false;
	n = recvmsg(nsock, &mh, MSG_CMSG_CLOEXEC);
	assert_true(n >= 0);
	msg[n] = '\0';
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			memcpy(fds, CMSG_DATA(c), nfds * sizeof(int));
		}
	if (strstr(msg, "FDSTORE=1") && msg_field(msg, "FDNAME", name,
						   sizeof(name))) {
		assert_int_equal(nfds, 1);
		assert_true(store.nfd < STORE_MAX);
		store.fd[store.nfd] = fds[0];
		strcpy(store.name[store.nfd++], name);
		nfds = 0;
	}
	if (strstr(msg, "FDSTORE_REMOVE=1") &&
	    msg_field(msg, "FDNAME", name, sizeof(name)))
		store_drop(name);
	for (int i = 0; i < nfds; i++)
		close(fds[i]);
	return true;
}

/* Receive until a message with @what in it (within @ms): its text in
 * @msg. */
static void notify_until(const char *what, int ms, char *msg, size_t len)
{
	int64_t end = t_now_ns() + (int64_t)ms * 1000000;

	for (;;) {
		int left = (int)((end - t_now_ns()) / 1000000);

		if (left < 0)
			left = 0;
		if (!notify_recv(left, msg, len))
			fail_msg("no \"%s\" from the daemon in %d ms", what, ms);
		if (strstr(msg, what))
			return;
	}
}

/*
 * Start the daemon on t_sock as the service manager would: $NOTIFY_SOCKET,
 * and the store's fds at 3.. with their names (LISTEN_PID set in the child,
 * to its own pid). Returns when it said READY=1.
 */
static void daemon_start(const char *tag)
{
	char msg[512];

	snprintf(dlog, sizeof(dlog), "%s/%s.log", t_dir, tag);
	dpid = fork();
	assert_true(dpid >= 0);
	if (!dpid) {
		char names[STORE_MAX * 64] = "", n[16];
		int high[STORE_MAX];

		/* out of the way first: a stored fd may sit at 3.. already */
		for (int i = 0; i < store.nfd; i++)
			high[i] = fcntl(store.fd[i], F_DUPFD_CLOEXEC, 200);
		for (int i = 0; i < store.nfd; i++) {
			if (high[i] < 0 || dup2(high[i], 3 + i) != 3 + i)
				_exit(126);
			strcat(names, i ? ":" : "");
			strcat(names, store.name[i]);
		}
		setenv("NOTIFY_SOCKET", nname, 1);
		if (store.nfd) {
			snprintf(n, sizeof(n), "%d", store.nfd);
			setenv("LISTEN_FDS", n, 1);
			setenv("LISTEN_FDNAMES", names, 1);
			snprintf(n, sizeof(n), "%d", (int)getpid());
			setenv("LISTEN_PID", n, 1);
		}
		execl(t_daemon_path(), "shmbusd", "--socket", t_sock, "--log",
		      dlog, (char *)NULL);
		_exit(127);
	}
	notify_until("READY=1", 10000, msg, sizeof(msg));
}

static void daemon_kill(void)
{
	if (dpid > 0) {
		kill(dpid, SIGKILL);
		waitpid(dpid, NULL, 0);
	}
	dpid = 0;
}

/* Lines of the daemon's log containing @what (printed). */
static int log_lines(const char *what)
{
	char line[1024];
	FILE *f = fopen(dlog, "r");
	int n = 0;

	while (f && fgets(line, sizeof(line), f))
		if (strstr(line, what)) {
			printf("  daemon: %s", strchr(line, ' ') ?
			       strchr(line, ' ') + 1 : line);
			n++;
		}
	if (f)
		fclose(f);
	return n;
}

static char sd_unit[64];	/* the transient unit running, "" = none */
static const char *sd_mode = "--system";
static int run(const char *const *argv);

static void sd_unit_stop(void)
{
	const char *argv[] = { "systemctl", sd_mode, "stop", sd_unit, NULL };

	if (!sd_unit[0])
		return;
	run(argv);
	sd_unit[0] = '\0';
}

static int teardown(void **state)
{
	(void)state;
	daemon_kill();
	store_clear();
	sd_unit_stop();
	setenv("SHMBUS_SOCKET", t_sock, 1);
	return 0;
}

static struct shmbus *bus_open(const char *name)
{
	struct shmbus_open_opts o = { .sz = sizeof(o),
				      .flags = SHMBUS_OPEN_NOSTART };
	struct shmbus *bus = shmbus__open(name, &o);

	if (!bus)
		fail_msg("open %s: %s (%s)", name, strerror(errno),
			 shmbus_errmsg());
	return bus;
}

/* ---- what is stored ------------------------------------------------------ */

/* The stored arena of bus @id: a sealed memfd whose superblock names it. */
static void check_arena(uint32_t id, uint8_t sb_lines[256])
{
	const int want = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
	char name[32], path[64], link[256];
	struct shmbus_sb *sb;
	struct stat st;
	ssize_t n;
	int fd;

	snprintf(name, sizeof(name), "arena-%08x", id);
	fd = store_find(name);
	if (fd < 0)
		fail_msg("no %s in the store", name);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof(link) - 1);
	assert_true(n > 0);
	link[n] = '\0';
	assert_true(!strncmp(link, "/memfd:shmbus:", 14));
	assert_int_equal(fcntl(fd, F_GET_SEALS) & want, want);
	assert_int_equal(fstat(fd, &st), 0);
	sb = mmap(NULL, st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(sb != MAP_FAILED);
	assert_int_equal(sb->magic, SHMBUS_MAGIC);
	assert_int_equal(sb->bus_id, id);
	assert_int_equal(sb->arena_size, (uint64_t)st.st_size);
	memcpy(sb_lines, sb, 256);
	munmap(sb, st.st_size);
	printf("  %s: %s, %lld bytes, sealed\n", name, link,
	       (long long)st.st_size);
}

/* The stored state memfd: valid, sealed against resizing; the record of
 * bus @id (0: none expected) holds @sb_lines. Returns its records in use. */
static int check_state(uint32_t id, const uint8_t sb_lines[256])
{
	const int want = F_SEAL_SHRINK | F_SEAL_GROW;
	int fd = store_find("state"), used = 0, found = 0;
	struct state_hdr *h;
	struct stat st;

	assert_true(fd >= 0);
	assert_int_equal(fcntl(fd, F_GET_SEALS) & want, want);
	assert_int_equal(fstat(fd, &st), 0);
	assert_true(st.st_size >= (off_t)sizeof(*h));
	h = mmap(NULL, st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(h != MAP_FAILED);
	assert_int_equal(h->magic, STATE_MAGIC);
	assert_int_equal(h->version, 1);
	assert_int_equal(h->hdr_size, sizeof(struct state_hdr));
	assert_int_equal(h->rec_size, sizeof(struct state_rec));
	assert_int_equal(h->sb_bytes, 256);
	assert_int_equal(h->max_pools, SHMBUS_MAX_POOLS);
	assert_int_equal((uint64_t)st.st_size, sizeof(*h) +
			 (uint64_t)h->nr_recs * sizeof(struct state_rec));
	for (uint32_t i = 0; i < h->nr_recs; i++) {
		const struct state_rec *r =
			(const struct state_rec *)(h + 1) + i;

		if (!r->bus_id)
			continue;
		used++;
		if (r->bus_id != id)
			continue;
		found++;
		assert_true(r->nr_pools >= 1 && r->nr_pools <= SHMBUS_MAX_POOLS);
		assert_memory_equal(r->sb, sb_lines, 256);
	}
	if (id)
		assert_int_equal(found, 1);
	munmap(h, st.st_size);
	return used;
}

/* ---- tests --------------------------------------------------------------- */

/* READY=1, the state memfd, an arena per bus, each stored once, and
 * the status line as buses come and go; a deleted bus leaves the store. */
static void test_notify_store(void **unused)
{
	uint8_t sb1[256], sb2[256];
	struct shmbus *a, *b, *a2;
	char msg[512];

	(void)unused;
	store_clear();
	notify_bind(false);
	daemon_start("store");
	/* the state memfd went to the store before READY=1 */
	assert_true(store_find("state") >= 0);
	assert_int_equal(check_state(0, NULL), 0);
	assert_int_equal(log_lines("service manager notifications to"), 1);

	a = bus_open("fds.a");
	notify_until("FDNAME=arena-", 5000, msg, sizeof(msg));
	notify_until("STATUS=serving 1 bus", 5000, msg, sizeof(msg));
	check_arena(shmbus__id(a), sb1);
	assert_int_equal(check_state(shmbus__id(a), sb1), 1);
	b = bus_open("fds.b");
	notify_until("FDNAME=arena-", 5000, msg, sizeof(msg));
	notify_until("STATUS=serving 2 buses", 5000, msg, sizeof(msg));
	check_arena(shmbus__id(b), sb2);
	assert_int_equal(check_state(shmbus__id(b), sb2), 2);
	/* an open of a known bus stores nothing more */
	a2 = bus_open("fds.a");
	assert_int_equal(shmbus__id(a2), shmbus__id(a));
	assert_false(notify_recv(300, msg, sizeof(msg)));
	assert_int_equal(store.nfd, 3);
	/* a bus deleted leaves the store, and the status says so */
	shmbus__close(b);
	{
		SHMBUS_OPTS(shmbus_open_opts, oo, .socket_path = t_sock,
			    .flags = SHMBUS_OPEN_NOSTART);

		assert_int_equal(shmbus__bus_delete("fds.b", 0, &oo, NULL), 0);
	}
	notify_until("FDSTORE_REMOVE=1", 5000, msg, sizeof(msg));
	notify_until("STATUS=serving 1 bus", 5000, msg, sizeof(msg));
	assert_int_equal(store.nfd, 2);
	shmbus__close(a2);
	shmbus__close(a);
	daemon_kill();
}

/* A state memfd with garbage in it, and an fd of an unknown name. */
static void test_garbage_state(void **unused)
{
	char msg[512];
	int fd, pfd[2];
	char junk[4096];

	(void)unused;
	store_clear();
	notify_bind(true);	/* an abstract $NOTIFY_SOCKET */
	fd = memfd_create("state", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	assert_true(fd >= 0);
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (char)(i * 131 + 7);
	assert_int_equal(write(fd, junk, sizeof(junk)), sizeof(junk));
	assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
	store.fd[store.nfd] = fd;
	strcpy(store.name[store.nfd++], "state");
	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	close(pfd[1]);
	store.fd[store.nfd] = pfd[0];
	strcpy(store.name[store.nfd++], "mystery");

	daemon_start("garbage");
	assert_int_equal(log_lines("state memfd ignored: magic"), 1);
	assert_int_equal(log_lines("named \"mystery\" is of no kind"), 1);

	/* dropped and replaced by a fresh one: the store has one state,
	 * not the garbage (the pipe stays: a manager keeps what it has) */
	assert_int_equal(store_count("state"), 1);
	assert_int_equal(check_state(0, NULL), 0);
	/* and the daemon serves */
	shmbus__close(bus_open("fds.g"));
	notify_until("FDNAME=arena-", 5000, msg, sizeof(msg));
	daemon_kill();
}

/* ---- a restart -------------------------------------------------------- */

#define NMSG	1000

struct shared {
	int ready;		/* the old client: published, attached */
	uint32_t id;		/* its bus id */
	int sent;
	int received, lost, duplicated;	/* the new client's */
	uint32_t new_id;
	int done;
	uint32_t chunks, new_chunks;	/* pool 0's, before and after */
};

/*
 * The client of the daemon about to die: opens @bus, declares "q",
 * publishes NMSG ints, attaches a consumer that takes nothing, and holds
 * them all until killed. With @grow, the bus has one pool of 128 chunks,
 * which grows to hold them.
 */
static pid_t old_client(struct shared *sh, const char *bus, bool grow)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (!pid) {
		struct shmbus_open_opts o = { .sz = sizeof(o),
					      .flags = SHMBUS_OPEN_NOSTART };
		struct shmbus_pub_opts po = { .sz = sizeof(po),
					      .timeout_ns = 5000000000LL };
		struct shmbus_queue_opts qo = { .sz = sizeof(qo),
						.max_len = 2 * NMSG,
						.msg_size = 64 };
		struct shmbus_pool_info pi;
		struct shmbus *b;
		struct shmbus_producer *p;
		struct shmbus_consumer *c;

		if (grow) {
			o.nr_pools = 1;
			o.pools[0].payload = 256;
			o.pools[0].count = 128;
			o.pool_growth = 16;
		}
		b = shmbus__open(bus, &o);
		CHILD_CHECK(b, "open %s: %s", bus, strerror(errno));
		CHILD_CHECK(shmbus__queue_declare(b, "q", &qo) >= 0, "declare");
		p = shmbus_producer__new(b, "q", NULL);
		CHILD_CHECK(p, "producer: %s", strerror(errno));
		for (int i = 0; i < NMSG; i++) {
			CHILD_CHECK(shmbus_producer__publish(p, &i, sizeof(i),
							     &po) == 0,
				    "publish %d", i);
			sh->sent++;
		}
		/* the pool as the daemon leaves it: it grows while less
		 * than an eighth of it is free */
		for (int i = 0; i < 5000; i++) {
			CHILD_CHECK(!shmbus__pool_info(b, 0, &pi), "pool");
			if ((uint64_t)pi.free * 8 >= pi.chunks ||
			    pi.chunks == pi.chunks_max)
				break;
			usleep(1000);
		}
		sh->chunks = pi.chunks;
		c = shmbus_consumer__new(b, "q", NULL);
		CHILD_CHECK(c, "consumer: %s", strerror(errno));
		sh->id = shmbus__id(b);
		WRITE_ONCE(sh->ready, 1);
		for (;;)
			pause();
	}
	for (int i = 0; i < 2000 && !READ_ONCE(sh->ready); i++) {
		assert_int_equal(waitpid(pid, NULL, WNOHANG), 0);
		usleep(5000);
	}
	assert_int_equal(READ_ONCE(sh->ready), 1);
	return pid;
}

/* A new process opens @bus by name and takes what is in "q". */
static void new_client(struct shared *sh, const char *bus)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (!pid) {
		struct shmbus_open_opts o = { .sz = sizeof(o),
					      .flags = SHMBUS_OPEN_NOSTART |
						       SHMBUS_OPEN_NOCREATE };
		struct shmbus *b = shmbus__open(bus, &o);
		static uint8_t seen[NMSG];
		struct shmbus_consumer *c;
		int v;

		CHILD_CHECK(b, "open %s: %s (%s)", bus, strerror(errno),
			    shmbus_errmsg());
		sh->new_id = shmbus__id(b);
		{
			struct shmbus_pool_info pi;

			CHILD_CHECK(!shmbus__pool_info(b, 0, &pi), "pool");
			sh->new_chunks = pi.chunks;
		}
		c = shmbus_consumer__new(b, "q", NULL);
		CHILD_CHECK(c, "consumer: %s (%s)", strerror(errno),
			    shmbus_errmsg());
		while (shmbus_consumer__receive(c, &v, sizeof(v),
						500 * 1000000LL) ==
		       (ssize_t)sizeof(v)) {
			CHILD_CHECK(v >= 0 && v < NMSG, "garbage %d", v);
			if (seen[v]++)
				sh->duplicated++;
			sh->received++;
		}
		for (int i = 0; i < NMSG; i++)
			sh->lost += !seen[i];
		shmbus_consumer__free(c);
		shmbus__close(b);
		_exit(0);
	}
	assert_int_equal(t_wait(pid, 30000), 0);
}

/* Line numbers in the daemon's log: the first with @what, or -1. */
static int log_line_no(const char *what)
{
	char line[1024];
	FILE *f = fopen(dlog, "r");
	int n = 0, at = -1;

	while (f && fgets(line, sizeof(line), f) && at < 0) {
		if (strstr(line, what))
			at = n;
		n++;
	}
	if (f)
		fclose(f);
	return at;
}

/* kill -9, a member scribbles, the next daemon adopts from the store. */
static void test_restart_adopts(void **unused)
{
	struct shared *sh = t_shared(sizeof(*sh));
	struct shared *sh2 = t_shared(sizeof(*sh2));
	uint8_t sb1[256], sb2[256], now[256];
	struct shmbus_sb *sb;
	pid_t old1, old2;
	char msg[512], name[32];
	uint64_t size;

	(void)unused;
	store_clear();
	notify_bind(false);
	daemon_start("before");
	old1 = old_client(sh, "fds.r1", true);
	notify_until("FDNAME=arena-", 5000, msg, sizeof(msg));
	old2 = old_client(sh2, "fds.r2", false);
	notify_until("FDNAME=arena-", 5000, msg, sizeof(msg));
	check_arena(sh->id, sb1);
	check_arena(sh2->id, sb2);
	daemon_kill();

	/* a member writes garbage over r1's geometry and a pool descriptor
	 * while no daemon runs: an opener would refuse the arena */
	snprintf(name, sizeof(name), "arena-%08x", sh->id);
	memcpy(&size, sb1 + offsetof(struct shmbus_sb, arena_size),
	       sizeof(size));
	sb = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED,
		  store_find(name), 0);
	assert_true(sb != MAP_FAILED);
	sb->qdir_off = size - 64;
	sb->max_slots = 0;
	memset((uint8_t *)sb + sb->pool_off, 0xa5, 64);
	strcpy(sb->name, "scribbled");

	daemon_start("after");
	assert_int_equal(log_lines("state memfd of"), 1);
	assert_int_equal(log_lines("adopted from fd store"), 2);
	assert_int_equal(log_lines("restored from the state memfd"), 1);
	/* every bus adopted before the daemon listened */
	assert_true(log_line_no("adopted from fd store") >= 0);
	assert_true(log_line_no("listening on") >
		    log_line_no("adopted from fd store"));
	/* kept, not stored again: one state, one fd per bus */
	assert_int_equal(store_count("state"), 1);
	assert_int_equal(store.nfd, 3);
	memcpy(now, sb, sizeof(now));
	assert_memory_equal(now, sb1, sizeof(now));
	munmap(sb, size);
	assert_int_equal(check_state(sh->id, sb1), 2);

	new_client(sh, "fds.r1");
	new_client(sh2, "fds.r2");
	for (int k = 0; k < 2; k++) {
		struct shared *x = k ? sh2 : sh;

		printf("  fds.r%d: bus id %08x -> %08x; pool 0 of %u chunks "
		       "-> %u; sent %d received %d lost %d duplicated %d\n",
		       k + 1, x->id, x->new_id, x->chunks, x->new_chunks,
		       x->sent, x->received, x->lost, x->duplicated);
		assert_int_equal(x->new_id, x->id);
		/* a grown pool's count comes back from the state memfd,
		 * over what the member scribbled on its descriptor */
		assert_int_equal(x->new_chunks, x->chunks);
		assert_int_equal(x->sent, NMSG);
		assert_int_equal(x->lost, 0);
		assert_int_equal(x->duplicated, 0);
		assert_int_equal(x->received, NMSG);
	}
	kill(old1, SIGKILL);
	kill(old2, SIGKILL);
	waitpid(old1, NULL, 0);
	waitpid(old2, NULL, 0);
	daemon_kill();
}

/* A store entry @name: a memfd called @memfd_name holding @len bytes of
 * @data, with @seals added. */
static void store_memfd(const char *name, const char *memfd_name,
			const void *data, size_t len, int seals)
{
	int fd = memfd_create(memfd_name, MFD_CLOEXEC | MFD_ALLOW_SEALING);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	if (seals)
		assert_int_equal(fcntl(fd, F_ADD_SEALS, seals), 0);
	assert_true(store.nfd < STORE_MAX);
	store.fd[store.nfd] = fd;
	strcpy(store.name[store.nfd++], name);
}

/*
 * Arenas the daemon did not make, passed as arena-*: a plain file, and
 * memfds of the daemon's uid named as its arenas are (its instance, read
 * from its log), one unsealed, one sealed but no arena. Each refused,
 * logged, dropped from the store; the daemon serves.
 */
static void test_foreign_arena(void **unused)
{
	char path[160], junk[8192], forged[128], line[1024];
	unsigned inst = 0;
	FILE *f;
	int fd;

	(void)unused;
	store_clear();
	notify_bind(false);
	daemon_start("instance");
	f = fopen(dlog, "r");
	while (f && fgets(line, sizeof(line), f))
		if (strstr(line, "listening on"))
			assert_int_equal(sscanf(strstr(line, "(instance ") ?:
						"", "(instance %x)", &inst), 1);
	if (f)
		fclose(f);
	daemon_kill();
	store_clear();

	memset(junk, 0x5a, sizeof(junk));
	snprintf(path, sizeof(path), "%s/plain", t_dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, junk, sizeof(junk)), sizeof(junk));
	store.fd[store.nfd] = fd;
	strcpy(store.name[store.nfd++], "arena-0000beef");
	snprintf(forged, sizeof(forged), "shmbus:%08x:%u:%u:600:0000cafe:fake",
		 inst, (unsigned)geteuid(), (unsigned)getegid());
	store_memfd("arena-0000cafe", forged, junk, sizeof(junk), 0);
	snprintf(forged, sizeof(forged), "shmbus:%08x:%u:%u:600:0000f00d:fake",
		 inst, (unsigned)geteuid(), (unsigned)getegid());
	store_memfd("arena-0000f00d", forged, junk, sizeof(junk),
		    F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);

	daemon_start("foreign");
	assert_int_equal(log_lines("arena from fd store refused"), 3);
	assert_int_equal(log_lines("arena-0000beef refused"), 1);
	assert_int_equal(log_lines("arena-0000cafe refused"), 1);
	assert_int_equal(log_lines("arena-0000f00d refused"), 1);
	assert_int_equal(log_lines("adopted from"), 0);
	assert_int_equal(store_count("arena-0000beef"), 0);
	assert_int_equal(store_count("arena-0000cafe"), 0);
	assert_int_equal(store_count("arena-0000f00d"), 0);
	shmbus__close(bus_open("fds.f"));
	daemon_kill();
}

/*
 * A bus adopted otherwise than from the store (the store was empty: a
 * unit without FileDescriptorStoreMax=, whose manager dropped the fds;
 * the daemon pulls the arena from the process that maps it) goes to the
 * store as a created one does.
 */
static void test_adopted_stored(void **unused)
{
	struct shared *sh = t_shared(sizeof(*sh));
	uint8_t sb[256], again[256];
	char msg[512];
	pid_t old;

	(void)unused;
	if (geteuid() != 0)
		SKIP_OR_FAIL("needs root: the daemon takes the arena from "
			     "another process with pidfd_getfd()");
	store_clear();
	notify_bind(false);
	daemon_start("stored1");
	old = old_client(sh, "fds.s", false);
	notify_until("FDNAME=arena-", 5000, msg, sizeof(msg));
	check_arena(sh->id, sb);
	daemon_kill();
	store_clear();

	daemon_start("stored2");
	assert_int_equal(log_lines("adopted from pid"), 1);
	assert_int_equal(store_count("state"), 1);
	check_arena(sh->id, again);
	assert_memory_equal(again, sb, sizeof(sb));
	assert_int_equal(check_state(sh->id, sb), 1);
	kill(old, SIGKILL);
	waitpid(old, NULL, 0);
	daemon_kill();
}

/* A listening socket among the fds passed (socket activation) is the one
 * the daemon serves on; it binds nothing of its own. */
static void test_socket_activation(void **unused)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char msg[512];
	int fd;

	(void)unused;
	store_clear();
	notify_bind(false);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/act.sock", t_dir);
	unlink(sa.sun_path);
	unlink(t_sock);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 16), 0);
	store.fd[store.nfd] = fd;
	strcpy(store.name[store.nfd++], "shmbusd.socket");

	daemon_start("activated");
	assert_int_equal(log_lines("listening on the socket the service "
				   "manager passed"), 1);
	assert_int_equal(log_lines("of no kind"), 0);
	assert_int_equal(access(t_sock, F_OK), -1);
	setenv("SHMBUS_SOCKET", sa.sun_path, 1);
	shmbus__close(bus_open("fds.act"));
	notify_until("FDNAME=arena-", 5000, msg, sizeof(msg));
	daemon_kill();
}

/* ---- under the real systemd ---------------------------------------------- */

static bool systemd_is_init(void)
{
	char comm[64] = "";
	FILE *f = fopen("/proc/1/comm", "r");

	if (f) {
		if (!fgets(comm, sizeof(comm), f))
			comm[0] = '\0';
		fclose(f);
	}
	return !access("/run/systemd/system", F_OK) &&
	       !strncmp(comm, "systemd", 7);
}

/* Run @argv (NULL-terminated) to its end: its exit status. */
static int run(const char *const *argv)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (!pid) {
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	return t_wait(pid, 60000);
}

/*
 * The restart as systemd does it: the daemon a transient Type=notify
 * service with a file descriptor store, killed with SIGKILL and restarted
 * by Restart=; the next one gets the store back and a new client finds the
 * bus and its messages.
 */
static void test_systemd_run(void **unused)
{
	struct shared *sh = t_shared(sizeof(*sh));
	char sock[160], logp[160];
	pid_t old;

	(void)unused;
	if (!systemd_is_init()) {
		printf("not run: systemd is not PID 1 (systemd-run fd store "
		       "case)\n");
		return;
	}
	sd_mode = geteuid() ? "--user" : "--system";
	snprintf(sd_unit, sizeof(sd_unit), "shmbus-fdstore-test-%d",
		 (int)getpid());
	snprintf(sock, sizeof(sock), "%s/sd.sock", t_dir);
	snprintf(logp, sizeof(logp), "%s/sd.log", t_dir);
	{
		const char *argv[] = { "systemd-run", sd_mode, "--unit", sd_unit,
			"--property=Type=notify",
			"--property=FileDescriptorStoreMax=16",
			"--property=Restart=on-failure",
			"--property=RestartSec=100ms",
			"--", t_daemon_path(), "--socket", sock, "--log", logp,
			NULL };

		assert_int_equal(run(argv), 0);
	}
	strcpy(dlog, logp);
	setenv("SHMBUS_SOCKET", sock, 1);
	old = old_client(sh, "fds.sd", false);
	{
		const char *argv[] = { "systemctl", sd_mode, "kill",
			"--signal=SIGKILL", sd_unit, NULL };

		assert_int_equal(run(argv), 0);
	}
	/* restarted: the second daemon's READY came after its adoption */
	for (int i = 0; i < 1000 && log_lines("adopted from fd store") < 1;
	     i++)
		usleep(10000);
	assert_int_equal(log_lines("adopted from fd store"), 1);
	for (int i = 0; i < 1000 && log_lines("listening on") < 2; i++)
		usleep(10000);
	new_client(sh, "fds.sd");
	printf("  systemd: bus id %08x -> %08x; sent %d received %d lost %d "
	       "duplicated %d\n", sh->id, sh->new_id, sh->sent, sh->received,
	       sh->lost, sh->duplicated);
	kill(old, SIGKILL);
	waitpid(old, NULL, 0);
	sd_unit_stop();
	setenv("SHMBUS_SOCKET", t_sock, 1);
	assert_int_equal(sh->new_id, sh->id);
	assert_int_equal(sh->lost, 0);
	assert_int_equal(sh->duplicated, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_notify_store, teardown),
		cmocka_unit_test_teardown(test_garbage_state, teardown),
		cmocka_unit_test_teardown(test_restart_adopts, teardown),
		cmocka_unit_test_teardown(test_foreign_arena, teardown),
		cmocka_unit_test_teardown(test_adopted_stored, teardown),
		cmocka_unit_test_teardown(test_socket_activation, teardown),
		cmocka_unit_test_teardown(test_systemd_run, teardown),
	};

	return T_RUN_WITH_DAEMON("fdstore", tests);
}
