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
 *  - a state memfd holding garbage is logged, dropped from the store and
 *    replaced; an arena passed back is logged and dropped from the store
 *    (this daemon does not adopt); an fd of a name the daemon does not
 *    know is logged and closed; abstract notify socket names work.
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
		store.nfd--;
		store.fd[i] = store.fd[store.nfd];
		strcpy(store.name[i], store.name[store.nfd]);
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

static int teardown(void **state)
{
	(void)state;
	daemon_kill();
	store_clear();
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

/* READY=1, the state memfd, an arena per bus, each stored once. */
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
	check_arena(shmbus__id(a), sb1);
	assert_int_equal(check_state(shmbus__id(a), sb1), 1);
	b = bus_open("fds.b");
	notify_until("FDNAME=arena-", 5000, msg, sizeof(msg));
	check_arena(shmbus__id(b), sb2);
	assert_int_equal(check_state(shmbus__id(b), sb2), 2);
	/* an open of a known bus stores nothing more */
	a2 = bus_open("fds.a");
	assert_int_equal(shmbus__id(a2), shmbus__id(a));
	assert_false(notify_recv(300, msg, sizeof(msg)));
	assert_int_equal(store.nfd, 3);
	shmbus__close(a2);
	shmbus__close(b);
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
	fd = memfd_create("shmbus:fake", MFD_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, junk, sizeof(junk)), sizeof(junk));
	store.fd[store.nfd] = fd;
	strcpy(store.name[store.nfd++], "arena-0000beef");

	daemon_start("garbage");
	assert_int_equal(log_lines("state memfd ignored: magic"), 1);
	assert_int_equal(log_lines("named \"mystery\" is of no kind"), 1);
	assert_int_equal(log_lines("arena-0000beef: this daemon does not "
				   "adopt arenas"), 1);
	assert_int_equal(store_count("arena-0000beef"), 0);
	/* dropped and replaced by a fresh one: the store has one state,
	 * not the garbage (the pipe stays: a manager keeps what it has) */
	assert_int_equal(store_count("state"), 1);
	assert_int_equal(check_state(0, NULL), 0);
	/* and the daemon serves */
	shmbus__close(bus_open("fds.g"));
	notify_until("FDNAME=arena-", 5000, msg, sizeof(msg));
	daemon_kill();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_notify_store, teardown),
		cmocka_unit_test_teardown(test_garbage_state, teardown),
	};

	return T_RUN_WITH_DAEMON("fdstore", tests);
}
