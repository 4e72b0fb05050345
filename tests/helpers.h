/* SPDX-License-Identifier: MIT */
/*
 * helpers.h - what the tests share: CI-aware skipping (in CI a skip is a
 * failure), a private daemon per test program (own socket directory, so
 * tests never touch a real bus), process helpers, and a checksum.
 */
#ifndef SHMBUS_TEST_HELPERS_H
#define SHMBUS_TEST_HELPERS_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "barrier.h"	/* READ_ONCE, atomic_fetch_add, ... on shared counters */

static inline int ci_mode(void)
{
	const char *ci = getenv("CI");

	return ci && (!strcmp(ci, "true") || !strcmp(ci, "1") ||
		      !strcmp(ci, "yes"));
}

/* Skip outside CI; in CI the environment is known to have what the test
 * needs, so a missing feature is a failure. */
#define SKIP_OR_FAIL(...)						\
	do {								\
		char why_[256];						\
		snprintf(why_, sizeof(why_), __VA_ARGS__);		\
		if (ci_mode())						\
			fail_msg("CI=true and cannot run: %s", why_);	\
		print_message("skipped: %s\n", why_);			\
		skip();							\
	} while (0)

static inline int64_t t_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Scale iteration counts down under sanitizers ($SHMBUS_TEST_SCALE). */
static inline long t_scaled(long n)
{
	const char *s = getenv("SHMBUS_TEST_SCALE");
	double f = s ? atof(s) : 1.0;

	if (f <= 0 || f > 1)
		f = 1.0;
	return n * f < 1 ? 1 : (long)(n * f);
}

/* ---- a private daemon ------------------------------------------- */

static char t_dir[64];
static char t_sock[96];

/* BUILD/bin/@name, beside BUILD/tests/ where the tests live (a buffer of
 * the caller's, PATH_MAX bytes). */
static inline char *t_bin(char *buf, const char *name)
{
	ssize_t n = readlink("/proc/self/exe", buf, PATH_MAX - 64);
	char *slash;

	if (n <= 0 || strlen(name) > 48) {
		snprintf(buf, PATH_MAX, "%s", name);
		return buf;
	}
	buf[n] = '\0';
	slash = strrchr(buf, '/');
	if (slash) {
		*slash = '\0';
		slash = strrchr(buf, '/');
		if (slash)
			sprintf(slash + 1, "bin/%s", name);
	}
	return buf;
}

static inline const char *t_daemon_path(void)
{
	static char buf[PATH_MAX];
	const char *env = getenv("SHMBUS_DAEMON");

	if (env && *env)
		return env;
	return t_bin(buf, "shmbusd");
}

/* Point the library at a fresh socket directory; the first open starts
 * the daemon there. Call once per test program (or per test). */
static inline void t_env_setup(void)
{
	const char *top = getenv("SHMBUS_TEST_TMP");	/* run.sh's own */

	snprintf(t_dir, sizeof(t_dir), "%s/shmbus-test-XXXXXX",
		 top && *top ? top : "/tmp");
	if (!mkdtemp(t_dir)) {
		perror("mkdtemp");
		exit(1);
	}
	snprintf(t_sock, sizeof(t_sock), "%s/d.sock", t_dir);
	setenv("SHMBUS_SOCKET", t_sock, 1);
	setenv("SHMBUS_DAEMON", t_daemon_path(), 1);
}

/* pid of the daemon serving @sock (from its lock file), or 0 */
static inline pid_t t_daemon_pid_of(const char *sock)
{
	char path[PATH_MAX + 8], buf[32] = "";
	int fd;

	snprintf(path, sizeof(path), "%s.lock", sock);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return 0;
	if (read(fd, buf, sizeof(buf) - 1) < 0)
		buf[0] = '\0';
	close(fd);
	return (pid_t)atoi(buf);
}

/* pid of the daemon serving t_sock, or 0 */
static inline pid_t t_daemon_pid(void)
{
	return t_daemon_pid_of(t_sock);
}

static inline int t_pid_running(pid_t pid)
{
	char path[64], st[512];
	FILE *f;
	int ok = 0;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	if (fgets(st, sizeof(st), f)) {
		char *p = strrchr(st, ')');

		ok = p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
	}
	fclose(f);
	if (!ok) {
		/* a leader that exited while another of its threads still
		 * runs (and holds its files: a daemon's lock) */
		DIR *d;
		struct dirent *e;
		int n = 0;

		snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
		d = opendir(path);
		while (d && (e = readdir(d)))
			n += e->d_name[0] != '.';
		if (d)
			closedir(d);
		ok = n > 1;
	}
	return ok;
}

/* Count running shmbusd processes whose command line names t_sock. */
static inline int t_count_daemons(void)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d))) {
		char path[300], cmd[4096];
		ssize_t k;
		int fd;

		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
		fd = open(path, O_RDONLY);
		if (fd < 0)
			continue;
		k = read(fd, cmd, sizeof(cmd) - 1);
		close(fd);
		if (k <= 0)
			continue;
		cmd[k] = '\0';
		for (ssize_t i = 0; i < k; i++)
			if (!cmd[i])
				cmd[i] = ' ';
		if (strstr(cmd, "shmbusd") && strstr(cmd, t_sock) &&
		    t_pid_running(atoi(e->d_name)))
			n++;
	}
	closedir(d);
	return n;
}

static inline void t_kill_daemon(void)
{
	pid_t pid = t_daemon_pid();

	if (pid > 0 && t_pid_running(pid)) {
		kill(pid, SIGKILL);
		for (int i = 0; i < 200 && t_pid_running(pid); i++)
			usleep(5000);
	}
}

/* Every other daemon whose socket (and so lock file) is in t_dir: those
 * a test started with t_daemon_start_state() and left running when it
 * failed. */
static inline void t_kill_dir_daemons(void)
{
	DIR *d = t_dir[0] ? opendir(t_dir) : NULL;
	struct dirent *e;

	while (d && (e = readdir(d))) {
		size_t n = strlen(e->d_name);
		char sock[160];
		pid_t pid;

		if (n <= 5 || strcmp(e->d_name + n - 5, ".lock"))
			continue;
		snprintf(sock, sizeof(sock), "%s/%.*s", t_dir, (int)(n - 5),
			 e->d_name);
		pid = t_daemon_pid_of(sock);
		if (pid <= 0 || !t_pid_running(pid))
			continue;
		kill(pid, SIGKILL);
		for (int i = 0; i < 200 && t_pid_running(pid); i++)
			usleep(5000);
	}
	if (d)
		closedir(d);
}

static inline void t_env_teardown(void)
{
	char cmd[PATH_MAX + 16];

	t_kill_daemon();
	t_kill_dir_daemons();
	if (getenv("SHMBUS_TEST_KEEP")) {
		fprintf(stderr, "kept %s\n", t_dir);
		return;
	}
	if (t_dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t_dir);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot remove %s\n", t_dir);
	}
}

/*
 * Run a group of tests that use a private daemon: set up its directory,
 * honour $TEST_FILTER (a cmocka test name pattern), tear it down.
 */
#define T_RUN_WITH_DAEMON(name, tests)					\
	({								\
		int rc_;						\
		t_env_setup();						\
		if (getenv("TEST_FILTER"))				\
			cmocka_set_test_filter(getenv("TEST_FILTER"));	\
		rc_ = cmocka_run_group_tests_name(name, tests, NULL, NULL); \
		t_env_teardown();					\
		rc_;							\
	})

/* ---- processes --------------------------------------------------- */

/* What loading and reading BPF takes: root, the kernel's BTF, bpftool. */
static inline void t_need_bpf(void)
{
	if (geteuid() != 0)
		SKIP_OR_FAIL("needs root to load BPF programs");
	if (access("/sys/kernel/btf/vmlinux", R_OK))
		SKIP_OR_FAIL("the kernel has no BTF");
	if (system("command -v bpftool >/dev/null"))
		SKIP_OR_FAIL("no bpftool");
}

/* Run the shell command; its exit status, or 128 when a signal ended
 * it. */
static inline int t_run(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
static inline int t_run(const char *fmt, ...)
{
	char cmd[PATH_MAX * 4];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* All of the shell command's standard output (and its error too, with
 * 2>&1 in it) into @buf (@len bytes, NUL-terminated); its exit status,
 * or 128 when a signal ended it. */
static inline int t_capture(char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static inline int t_capture(char *buf, size_t len, const char *fmt, ...)
{
	char cmd[PATH_MAX * 4];
	size_t got = 0, n;
	va_list ap;
	FILE *f;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	f = popen(cmd, "r");
	assert_non_null(f);
	while (got < len - 1 && (n = fread(buf + got, 1, len - 1 - got, f)) > 0)
		got += n;
	buf[got] = '\0';
	st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* Wait for @pid; returns its exit status, 128+sig if killed, -1 on a
 * timeout (then it is killed). */
static inline int t_wait(pid_t pid, int timeout_ms)
{
	int64_t end = t_now_ns() + (int64_t)timeout_ms * 1000000;
	int st;

	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st)
					     : 128 + WTERMSIG(st);
		if (r < 0)
			return -2;
		if (t_now_ns() > end) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return -1;
		}
		usleep(1000);
	}
}

/* Shared anonymous memory visible to forked children. */
static inline void *t_shared(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	return p;
}

/* FNV-1a, for message integrity checks */
static inline uint32_t t_fnv(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 16777619u;
	return h;
}

/* Open @name or exit: usable in forked children and the test alike. */
#ifdef SHMBUS_H
static inline struct shmbus *t_open_bus(const char *name)
{
	struct shmbus *bus = shmbus__open(name, NULL);

	if (!bus) {
		fprintf(stderr, "open %s: %s\n", name, strerror(errno));
		_exit(2);
	}
	return bus;
}
#endif

/*
 * Where this process mapped bus @name's arena read-write (from
 * /proc/self/maps: the daemon names its memfds "shmbus:...:NAME"), or
 * NULL.
 * For tests that play a hostile peer.
 */
static inline void *t_arena_mapping(const char *name)
{
	char line[512], want[128];
	FILE *f = fopen("/proc/self/maps", "r");
	void *addr = NULL;

	snprintf(want, sizeof(want), ":%s (deleted)", name);
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long lo;

		if (strstr(line, "/memfd:shmbus:") && strstr(line, want) &&
		    strstr(line, " rw") &&
		    sscanf(line, "%lx-", &lo) == 1) {
			addr = (void *)lo;
			break;
		}
	}
	if (f)
		fclose(f);
	return addr;
}

/* How many of @pid's fds link to a name starting with one of @kinds
 * (NULL-terminated). */
static inline int t_fds_linking(pid_t pid, const char *const *kinds)
{
	char dir[64], path[330], link[128];
	struct dirent *e;
	DIR *d;
	int n = 0;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	d = opendir(dir);
	assert_non_null(d);
	while ((e = readdir(d))) {
		ssize_t k;

		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		k = readlink(path, link, sizeof(link) - 1);
		if (k <= 0)
			continue;
		link[k] = '\0';
		for (const char *const *kd = kinds; *kd; kd++) {
			if (!strncmp(link, *kd, strlen(*kd))) {
				n++;
				break;
			}
		}
	}
	closedir(d);
	return n;
}

/* Does a daemon accept connections on @sock? Its path exists a moment
 * before it listens, and a NOSTART open meanwhile is refused. */
static inline bool t_listening(const char *sock)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	bool ok;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	ok = fd >= 0 && !connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	if (fd >= 0)
		close(fd);
	return ok;
}

/* Start `shmbusd --daemonize --socket @sock --state-dir @state` (durable
 * queues) and wait until it accepts and its lock file names it: its pid,
 * or 0 (with a message) when it did not come up within 10 s. */
/*
 * Start a daemon on @sock with state directory @state and up to four
 * @extra arguments (NULL-terminated, or NULL), as the library does
 * (--daemonize); its pid once it listens, or 0.
 */
static inline pid_t t_daemon_start_state(const char *sock, const char *state,
					 const char *const *extra)
{
	pid_t kid = fork(), pid;

	if (kid < 0)
		return 0;
	if (!kid) {
		const char *e[4] = { NULL };

		for (int i = 0; extra && i < 4 && extra[i]; i++)
			e[i] = extra[i];
		execl(t_daemon_path(), "shmbusd", "--daemonize", "--socket",
		      sock, "--state-dir", state, e[0], e[1], e[2], e[3],
		      (char *)NULL);
		_exit(127);
	}
	if (t_wait(kid, 20000) != 0)
		fprintf(stderr, "shmbusd --state-dir %s did not start\n", state);
	/* the lock file names the daemon a moment after it listens */
	for (int i = 0; i < 10000; i++) {
		pid = t_daemon_pid_of(sock);
		if (pid > 0 && t_pid_running(pid) && t_listening(sock))
			return pid;
		usleep(1000);
	}
	fprintf(stderr, "no daemon on %s\n", sock);
	return 0;
}

/* SIGKILL daemon @pid (stopped or not) and wait until it is gone, every
 * thread of it; false if it is still there after 5 s. */
static inline bool t_daemon_kill_pid(pid_t pid)
{
	if (pid <= 0)
		return true;
	kill(pid, SIGCONT);
	kill(pid, SIGKILL);
	for (int i = 0; i < 5000 && t_pid_running(pid); i++)
		usleep(1000);
	return !t_pid_running(pid);
}

/* This process's fd of bus @name's arena, or -1 (the daemon names its
 * memfds "shmbus:INSTANCE:UID:GID:MODE:BUSID:NAME"). */
static inline int t_bus_arena_fd(const char *name)
{
	char want[96], path[64], link[512];

	snprintf(want, sizeof(want), ":%s (deleted)", name);
	for (int fd = 3; fd < 4096; fd++) {
		ssize_t n;

		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		n = readlink(path, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = '\0';
		if (!strncmp(link, "/memfd:shmbus:", 14) &&
		    (size_t)n > strlen(want) &&
		    !strcmp(link + n - strlen(want), want))
			return fd;
	}
	return -1;
}

/* The memory (allocated bytes) of the arena of bus @name this process
 * maps, or 0: its memfd among our fds. */
static inline uint64_t t_arena_bytes(const char *name)
{
	int fd = t_bus_arena_fd(name);
	struct stat st;

	if (fd < 0 || fstat(fd, &st))
		return 0;
	return (uint64_t)st.st_blocks * 512;
}

#ifdef SHMBUS_H
/* Chunks neither free nor cached: in queues or held by someone. */
static inline uint32_t t_chunks_out(struct shmbus *bus)
{
	uint32_t out = 0;

	for (int i = 0; i < shmbus__pool_count(bus); i++) {
		struct shmbus_pool_info pi;

		assert_int_equal(shmbus__pool_info(bus, i, &pi), 0);
		out += pi.chunks - pi.free - pi.cached;
	}
	return out;
}

/* Publish an int; the test fails if it does not go through. */
static inline void t_publish_int(struct shmbus_producer *p, int v,
				 const struct shmbus_pub_opts *po)
{
	assert_int_equal(shmbus_producer__publish(p, &v, sizeof(v), po), 0);
}

/* Receive a message that must be an int; returns it (the view stays). */
static inline int t_recv_int(struct shmbus_consumer *c, struct shmbus_msg *m,
			     int64_t timeout)
{
	int err = shmbus_consumer__receive_view(c, m, timeout);

	assert_int_equal(err, 0);
	assert_int_equal(m->len, sizeof(int));
	return *(const int *)m->data;
}
#endif

/* Child-side assertion: print and exit non-zero (cmocka asserts only
 * make sense in the test's own process). */
#define CHILD_CHECK(cond, ...)						\
	do {								\
		if (!(cond)) {						\
			fprintf(stderr, "[child %d] %s:%d: ", (int)getpid(), \
				__FILE__, __LINE__);			\
			fprintf(stderr, __VA_ARGS__);			\
			fputc('\n', stderr);				\
			_exit(1);					\
		}							\
	} while (0)

#endif /* SHMBUS_TEST_HELPERS_H */
