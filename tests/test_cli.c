// SPDX-License-Identifier: MIT
/*
 * test_cli.c - the shmbus command (build/bin/shmbus) as a user runs it,
 * against a private daemon:
 *  - sub writes each message out before it acks it: killed -9 while
 *    writing to a file or a pipe, a second sub gets the rest (0 lost);
 *    with stdout /dev/full it acks nothing; a pipe reader that goes away
 *    ends it with an error, having acked exactly what the reader took;
 *    reply --exec acks a request only once CMD answered it, and with
 *    --errors reply a failing CMD's error status reaches req at once;
 *  - pub stops with an error on an input read error (a directory, a
 *    closed stdin); the CLI and the daemon keep fds 0-2 taken;
 *  - every output write error exits non-zero;
 *  - with no daemon, the read-only commands say "no daemon at SOCKET" and
 *    exit 1, starting none and creating nothing; SHMBUS_OPEN_NOSTART gives
 *    ECONNREFUSED; with no shmbusd to start anywhere, a command fails at
 *    once, naming where it looked;
 *  - a bad name is reported as a bad name, saying what is allowed;
 *  - names a member scribbled into the arena (escape sequences, quotes,
 *    backslashes, newlines, invalid UTF-8) come out escaped: tables
 *    without control bytes, JSON that parses, valid Prometheus text;
 *  - durable queues, against a daemon with a state directory: declare
 *    and its errors, pub waiting for confirms (and saying how many, after
 *    its input ends, after Ctrl-C, also while it waits for room, or with
 *    the reason when they do not come), the journal and the syncs in stat and metrics, and the
 *    recovery once the daemon comes back after everything went away.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shmbus.h"
#include "shmbus/layout.h"
#include "helpers.h"

#define BUS	"clitest"
#define CLOSED	(-2)		/* an fd for cli_spawn(): closed in the child */

static char cli[PATH_MAX];

/* build/bin/shmbus, beside build/tests/ */
static void find_cli(void)
{
	ssize_t n = readlink("/proc/self/exe", cli, sizeof(cli) - 16);

	if (n <= 0) {
		perror("readlink");
		exit(1);
	}
	cli[n] = '\0';
	*strrchr(cli, '/') = '\0';
	*strrchr(cli, '/') = '\0';
	strcat(cli, "/bin/shmbus");
}

/* Start "shmbus --bus bus_name ARGS..." (NULL-terminated) with @in, @out and
 * @err as its fds 0, 1, 2 (CLOSED: closed; -1: ours). */
static const char *bus_name = BUS;

static pid_t cli_spawnv(int in, int out, int err, const char *const *args)
{
	const char *argv[32] = { cli, "--bus", bus_name };
	int n = 3;
	pid_t kid;

	while (*args && n < 31)
		argv[n++] = *args++;
	argv[n] = NULL;
	kid = fork();
	assert_true(kid >= 0);
	if (kid)
		return kid;
	if (in >= 0)
		dup2(in, 0);
	if (out >= 0)
		dup2(out, 1);
	if (err >= 0)
		dup2(err, 2);
	if (in == CLOSED)
		close(0);
	if (out == CLOSED)
		close(1);
	if (err == CLOSED)
		close(2);
	execv(cli, (char **)argv);
	_exit(127);
}

#define ARGS(...)	((const char *const[]){ __VA_ARGS__, NULL })

/* Read @fd to its end into a malloc'd, NUL-terminated buffer. */
static char *slurp(int fd, size_t *len)
{
	size_t cap = 65536, n = 0;
	char *buf = malloc(cap + 1);

	assert_non_null(buf);
	for (;;) {
		ssize_t r;

		if (n == cap) {
			cap *= 2;
			buf = realloc(buf, cap + 1);
			assert_non_null(buf);
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}

struct result {
	int status;		/* exit status, 128+sig */
	char *out;		/* stdout (when captured) */
	size_t out_len;
	char *err;		/* stderr */
};

static void result_free(struct result *r)
{
	free(r->out);
	free(r->err);
	memset(r, 0, sizeof(*r));
}

/* Run the CLI to its end: stdin @in (-1: /dev/null), stdout @out (-1:
 * captured into r->out), stderr captured. */
static struct result cli_run(int in, int out, const char *const *args)
{
	struct result r = { 0 };
	int op[2], ep[2], nul = -1;
	pid_t kid;

	assert_int_equal(pipe2(ep, O_CLOEXEC), 0);
	assert_int_equal(pipe2(op, O_CLOEXEC), 0);
	if (in == -1)
		in = nul = open("/dev/null", O_RDONLY);
	kid = cli_spawnv(in, out == -1 ? op[1] : out, ep[1], args);
	close(op[1]);
	close(ep[1]);
	if (nul >= 0)
		close(nul);
	/* stderr is small: read stdout first, then it */
	r.out = slurp(op[0], &r.out_len);
	r.err = slurp(ep[0], NULL);
	close(op[0]);
	close(ep[0]);
	r.status = t_wait(kid, 60000);
	return r;
}

/* ---- messages: "m" + 6 digits, padded with 'x' to @w bytes ---------- */

static void fill_msg(char *buf, int i, int w)
{
	int k = snprintf(buf, (size_t)w + 1, "m%06d", i);

	memset(buf + k, 'x', (size_t)(w - k));
	buf[w] = '\0';
}

static void publish_n(struct shmbus *bus, const char *q, int n, int w)
{
	struct shmbus_producer *p = shmbus_producer__new(bus, q, NULL);
	char m[256];

	assert_non_null(p);
	for (int i = 0; i < n; i++) {
		fill_msg(m, i, w);
		assert_int_equal(shmbus_producer__publish(p, m, (size_t)w, NULL),
				 0);
	}
	shmbus_producer__free(p);
}

struct tally {
	int n, w;
	int *seen;
	long lines, corrupt, partial;
};

/* Count each whole line of @buf as message i (a line that is no message
 * of ours is corrupt; a last line without its newline is partial). */
static void tally_add(struct tally *t, const char *buf, size_t len)
{
	const char *p = buf, *end = buf + len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		char want[256];
		int i;

		if (!nl) {
			t->partial++;
			break;
		}
		t->lines++;
		if (nl - p == t->w && sscanf(p, "m%06d", &i) == 1 && i >= 0 &&
		    i < t->n && (fill_msg(want, i, t->w), 1) &&
		    !memcmp(p, want, (size_t)t->w))
			t->seen[i]++;
		else
			t->corrupt++;
		p = nl + 1;
	}
}

/* Print and check: every message seen at least once, nothing corrupt. */
static void tally_report(const char *what, const struct tally *t)
{
	long lost = 0, dup = 0, got = 0;

	for (int i = 0; i < t->n; i++) {
		lost += !t->seen[i];
		dup += t->seen[i] > 1 ? t->seen[i] - 1 : 0;
		got += t->seen[i];
	}
	print_message("%s: sent %d received %ld lost %ld duplicated %ld "
		      "corrupt %ld\n", what, t->n, got, lost, dup, t->corrupt);
	assert_int_equal(lost, 0);
	assert_int_equal(t->corrupt, 0);
}

static void declare(struct shmbus *bus, const char *q, uint32_t max_len)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_len = max_len);

	assert_true(shmbus__queue_declare(bus, q, &qo) >= 0);
}

static struct shmbus_queue_info info(struct shmbus *bus, const char *q)
{
	struct shmbus_queue_info qi;

	assert_int_equal(shmbus__queue_info(bus, q, &qi), 0);
	return qi;
}

/* Wait until no consumer is attached to @q: the daemon reclaimed a
 * killed one (its deliveries back in the queue, its counters the
 * queue's). */
static void wait_reclaimed(struct shmbus *bus, const char *q)
{
	for (int i = 0; i < 10000 && info(bus, q).consumers; i++)
		usleep(1000);
	assert_int_equal(info(bus, q).consumers, 0);
}

/*
 * The acks of @q's consumers that are gone, once the daemon has folded
 * their counters in: a stat reader skips a slot being released before
 * its counters are folded (a momentary undercount), so wait up to 5 s for
 * at least @floor.
 */
static long acked_when_folded(struct shmbus *bus, const char *q, long floor)
{
	long acked = 0;

	wait_reclaimed(bus, q);
	for (int i = 0; i < 5000; i++) {
		acked = (long)info(bus, q).stat[SHMBUS_STAT_ACKED];
		if (acked >= floor)
			break;
		usleep(1000);
	}
	return acked;
}

/* A second sub drains @q (until 1 s without a message) into @t. */
static void drain_with_cli(const char *q, struct tally *t)
{
	struct result r = cli_run(-1, -1, ARGS("sub", q, "--timeout", "1"));

	assert_int_equal(r.status, 0);
	tally_add(t, r.out, r.out_len);
	result_free(&r);
}

/* Lines in @path so far. */
static long lines_in(const char *path)
{
	int fd = open(path, O_RDONLY);
	size_t len;
	char *buf;
	long n = 0;

	if (fd < 0)
		return 0;
	buf = slurp(fd, &len);
	close(fd);
	for (size_t i = 0; i < len; i++)
		n += buf[i] == '\n';
	free(buf);
	return n;
}

/* ---- sub never acks what it did not write ------------------------- */

/* sub > file, kill -9 after some lines; a second sub drains the rest. */
static void test_sub_kill9_file(void **state)
{
	struct shmbus *bus = t_open_bus(BUS);
	const int n = 4000;
	struct tally t = { .n = n, .w = 8, .seen = calloc(n, sizeof(int)) };
	char path[PATH_MAX];
	int fd, rounds = 0;
	size_t len;
	char *buf;
	pid_t kid;

	(void)state;
	declare(bus, "k9file", 4096);
	publish_n(bus, "k9file", n, 8);
	snprintf(path, sizeof(path), "%s/sub.out", t_dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	kid = cli_spawnv(-1, fd, -1, ARGS("sub", "k9file"));
	close(fd);
	while (lines_in(path) < 500 && rounds++ < 20000)
		usleep(200);
	kill(kid, SIGKILL);
	assert_int_equal(t_wait(kid, 10000), 128 + SIGKILL);
	fd = open(path, O_RDONLY);
	buf = slurp(fd, &len);
	close(fd);
	tally_add(&t, buf, len);
	print_message("killed sub wrote %ld lines (%ld partial)\n", t.lines,
		      t.partial);
	free(buf);
	/* what the killed sub acked is exactly what it wrote, or one less
	 * (killed between a write and its ack); its counters are the
	 * queue's once the daemon reclaimed its slot */
	{
		long acked = acked_when_folded(bus, "k9file", t.lines - 1);

		print_message("acked by the killed sub: %ld\n", acked);
		assert_true(acked <= t.lines && acked >= t.lines - 1);
	}
	drain_with_cli("k9file", &t);
	tally_report("sub > file, kill -9, drain", &t);
	free(t.seen);
	shmbus__close(bus);
}

/* Bytes waiting in pipe @fd. */
static int pipe_bytes(int fd)
{
	int n = 0;

	assert_int_equal(ioctl(fd, FIONREAD, &n), 0);
	return n;
}

/* The same through a pipe nobody reads until the sub is killed: it is
 * killed while it waits on the full pipe, mid-stream for sure; the
 * messages in the pipe are read after its death. */
static void test_sub_kill9_pipe(void **state)
{
	struct shmbus *bus = t_open_bus(BUS);
	const int n = 3000, w = 100;
	struct tally t = { .n = n, .w = w, .seen = calloc(n, sizeof(int)) };
	int p[2], rounds = 0;
	long acked;
	size_t len;
	char *buf;
	pid_t kid;

	(void)state;
	declare(bus, "k9pipe", 4096);
	publish_n(bus, "k9pipe", n, w);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	kid = cli_spawnv(-1, p[1], -1, ARGS("sub", "k9pipe"));
	close(p[1]);
	/* 300 KB of messages fill the 64 KiB pipe */
	while (pipe_bytes(p[0]) < 60000 && rounds++ < 10000)
		usleep(1000);
	usleep(100000);
	assert_true(t_pid_running(kid));	/* blocked, not done */
	kill(kid, SIGKILL);
	assert_int_equal(t_wait(kid, 10000), 128 + SIGKILL);
	buf = slurp(p[0], &len);
	close(p[0]);
	tally_add(&t, buf, len);
	free(buf);
	acked = acked_when_folded(bus, "k9pipe", t.lines - 1);
	print_message("killed sub: %ld lines in the pipe, %ld acked\n",
		      t.lines, acked);
	assert_true(t.lines < n);
	assert_true(acked <= t.lines && acked >= t.lines - 1);
	drain_with_cli("k9pipe", &t);
	tally_report("sub | pipe, kill -9, drain", &t);
	free(t.seen);
	shmbus__close(bus);
}

/* Wait until @pid is stopped (SIGSTOP took effect). */
static void wait_stopped(pid_t pid)
{
	for (int i = 0; i < 5000; i++) {
		char path[64], st[512] = "";
		int fd;
		char *p;

		snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
		fd = open(path, O_RDONLY);
		assert_true(fd >= 0);
		assert_true(read(fd, st, sizeof(st) - 1) > 0);
		close(fd);
		p = strrchr(st, ')');
		if (p && p[1] == ' ' && p[2] == 'T')
			return;
		usleep(1000);
	}
	fail_msg("pid %d did not stop", (int)pid);
}

/*
 * A reader that takes one line and goes away (the case of `sub | head
 * -1`, with every byte in the pipe accounted for): the sub is stopped,
 * everything it wrote is read, the pipe closed, the sub continued. It
 * must fail with EPIPE, having acked exactly the lines read; the rest is
 * all in the queue.
 */
static void test_sub_reader_gone(void **state)
{
	struct shmbus *bus = t_open_bus(BUS);
	const int n = 3000, w = 100;
	struct tally t = { .n = n, .w = w, .seen = calloc(n, sizeof(int)) };
	int p[2], ep[2], st;
	long acked, first_line = 0;
	size_t len;
	char *buf, *err, c;
	pid_t kid;

	(void)state;
	declare(bus, "gone", 4096);
	publish_n(bus, "gone", n, w);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(pipe2(ep, O_CLOEXEC), 0);
	kid = cli_spawnv(-1, p[1], ep[1], ARGS("sub", "gone"));
	close(p[1]);
	close(ep[1]);
	/* one line, byte by byte, as a line reader would */
	while (read(p[0], &c, 1) == 1 && c != '\n')
		first_line++;
	assert_int_equal(first_line, w);
	kill(kid, SIGSTOP);
	wait_stopped(kid);
	assert_int_equal(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
	buf = slurp(p[0], &len);	/* to EAGAIN: all it wrote */
	close(p[0]);
	kill(kid, SIGCONT);
	err = slurp(ep[0], NULL);
	close(ep[0]);
	st = t_wait(kid, 20000);
	print_message("sub after its reader left: exit %d: %s", st, err);
	assert_int_equal(st, 1);
	assert_non_null(strstr(err, "Broken pipe"));
	free(err);
	t.seen[0]++;			/* the line read byte by byte */
	t.lines++;
	tally_add(&t, buf, len);
	free(buf);
	acked = acked_when_folded(bus, "gone", t.lines);
	print_message("reader took %ld lines; sub acked %ld\n", t.lines,
		      acked);
	assert_int_equal(acked, t.lines);
	assert_true(t.lines < n);
	drain_with_cli("gone", &t);
	tally_report("sub | reader that leaves, drain", &t);
	free(t.seen);
	shmbus__close(bus);
}

/*
 * The real `sub | head -1`: head reads a block and prints one line; what
 * it read and did not print was acked (the pipe-buffer case the CLI
 * cannot know about). The sub must stop with an error instead of acking
 * on, and every message it did not ack is still in the queue.
 */
static void test_sub_head(void **state)
{
	struct shmbus *bus = t_open_bus(BUS);
	const int n = 3000, w = 100;
	struct tally t = { .n = n, .w = w, .seen = calloc(n, sizeof(int)) };
	struct shmbus_queue_info qi;
	int p[2], hp[2], st, hst;
	pid_t kid, head;
	long acked;
	size_t len;
	char *out;

	(void)state;
	declare(bus, "head", 4096);
	publish_n(bus, "head", n, w);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(pipe2(hp, O_CLOEXEC), 0);
	kid = cli_spawnv(-1, p[1], -1, ARGS("sub", "head"));
	close(p[1]);
	head = fork();
	if (!head) {
		dup2(p[0], 0);
		dup2(hp[1], 1);
		close(p[0]);
		close(hp[0]);
		close(hp[1]);
		signal(SIGPIPE, SIG_DFL);
		execlp("head", "head", "-1", (char *)NULL);
		_exit(127);
	}
	close(p[0]);
	close(hp[1]);
	out = slurp(hp[0], &len);
	close(hp[0]);
	hst = t_wait(head, 20000);
	st = t_wait(kid, 20000);
	assert_int_equal(hst, 0);
	tally_add(&t, out, len);
	free(out);
	assert_int_equal(t.lines, 1);
	acked = acked_when_folded(bus, "head", t.lines);
	qi = info(bus, "head");
	print_message("sub | head -1: sub exit %d, head printed %ld line, "
		      "sub acked %ld (%ld read by head from the pipe and not "
		      "printed), %llu left in the queue\n", st, t.lines, acked,
		      acked - t.lines, (unsigned long long)qi.depth);
	assert_int_equal(st, 1);
	assert_true(acked < n);
	/* nothing vanished that the sub did not hand to the pipe */
	assert_int_equal((long)qi.depth, n - acked);
	free(t.seen);
	shmbus__close(bus);
}

/* stdout /dev/full: nothing acked, everything still there. */
static void test_sub_dev_full(void **state)
{
	struct shmbus *bus = t_open_bus(BUS);
	const int n = 100;
	struct tally t = { .n = n, .w = 8, .seen = calloc(n, sizeof(int)) };
	struct shmbus_queue_info qi;
	struct result r;
	int full = open("/dev/full", O_WRONLY);

	(void)state;
	assert_true(full >= 0);
	declare(bus, "full", 1024);
	publish_n(bus, "full", n, 8);
	r = cli_run(-1, full, ARGS("sub", "full", "--timeout", "0.3"));
	close(full);
	print_message("sub > /dev/full: exit %d: %s", r.status, r.err);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "No space left on device"));
	result_free(&r);
	qi = info(bus, "full");
	print_message("acked %llu, depth %llu\n",
		      (unsigned long long)qi.stat[SHMBUS_STAT_ACKED],
		      (unsigned long long)qi.depth);
	assert_int_equal(qi.stat[SHMBUS_STAT_ACKED], 0);
	assert_int_equal(qi.depth, n);
	drain_with_cli("full", &t);
	tally_report("sub > /dev/full, drain", &t);
	assert_int_equal(info(bus, "full").stat[SHMBUS_STAT_ACKED], n);
	free(t.seen);
	shmbus__close(bus);
}

/* ---- reply --exec acks only what CMD answered ---------------------- */

/* A request served by `reply --exec CMD` for up to @secs. Returns what
 * shmbus__request returned; the reply (if any) in @rep. */
static ssize_t request_served_by(struct shmbus *bus, const char *q,
				 const char *cmd, const char *secs,
				 char *rep, size_t cap, int64_t timeout_ns,
				 int *status)
{
	pid_t kid = cli_spawnv(-1, -1, -1, ARGS("reply", q, "--exec", cmd,
						 "--timeout", secs));
	ssize_t n;

	/* wait for its consumer: no responders before */
	for (int i = 0; i < 2000 && info(bus, q).consumers == 0; i++)
		usleep(1000);
	n = shmbus__request(bus, q, "ping", 4, rep, cap, timeout_ns);
	*status = t_wait(kid, 30000);
	return n;
}

/* A failing CMD nacks: retried, then dead-lettered; never acked. */
static void test_reply_exec_false(void **state)
{
	struct shmbus *bus = t_open_bus(BUS);
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_deliveries = 3,
		    .dead_letter_queue = "rq-dlq");
	struct shmbus_queue_info qi;
	char rep[64];
	ssize_t n;
	int st;

	(void)state;
	declare(bus, "rq-dlq", 64);
	assert_true(shmbus__queue_declare(bus, "rq", &qo) >= 0);
	n = request_served_by(bus, "rq", "false", "1", rep, sizeof(rep),
			      700000000LL, &st);
	assert_int_equal(n, -ETIMEDOUT);
	assert_int_equal(st, 0);
	qi = info(bus, "rq");
	print_message("reply --exec false: delivered %llu, nacked %llu, "
		      "acked %llu, dead-lettered %llu; dlq depth %llu\n",
		      (unsigned long long)qi.stat[SHMBUS_STAT_DELIVERED],
		      (unsigned long long)qi.stat[SHMBUS_STAT_NACKED],
		      (unsigned long long)qi.stat[SHMBUS_STAT_ACKED],
		      (unsigned long long)qi.stat[SHMBUS_STAT_DEADLETTERED],
		      (unsigned long long)info(bus, "rq-dlq").depth);
	assert_int_equal(qi.stat[SHMBUS_STAT_ACKED], 0);
	assert_int_equal(qi.stat[SHMBUS_STAT_NACKED], 3);
	assert_int_equal(qi.stat[SHMBUS_STAT_DEADLETTERED], 1);
	assert_int_equal(info(bus, "rq-dlq").depth, 1);
	shmbus__close(bus);
}

/* A CMD that fails once, then answers: the request is redelivered and
 * answered, acked once. */
static void test_reply_exec_retry(void **state)
{
	struct shmbus *bus = t_open_bus(BUS);
	struct shmbus_queue_info qi;
	char rep[64], cmd[PATH_MAX + 128];
	ssize_t n;
	int st;

	(void)state;
	declare(bus, "rq2", 64);
	snprintf(cmd, sizeof(cmd), "test -e %s/flag || { touch %s/flag; "
		 "exit 1; }; echo pong", t_dir, t_dir);
	n = request_served_by(bus, "rq2", cmd, "0.5", rep, sizeof(rep),
			      5000000000LL, &st);
	assert_int_equal(n, 4);
	assert_memory_equal(rep, "pong", 4);
	assert_int_equal(st, 0);
	qi = info(bus, "rq2");
	print_message("reply --exec (fails once): nacked %llu, acked %llu\n",
		      (unsigned long long)qi.stat[SHMBUS_STAT_NACKED],
		      (unsigned long long)qi.stat[SHMBUS_STAT_ACKED]);
	assert_int_equal(qi.stat[SHMBUS_STAT_NACKED], 1);
	assert_int_equal(qi.stat[SHMBUS_STAT_ACKED], 1);
	shmbus__close(bus);
}

/*
 * reply --exec --errors reply: a CMD that fails answers at once with its
 * exit status and output, which `req` prints (exit 1) well within its
 * timeout; the request goes to the DLQ. Exit 75 (EX_TEMPFAIL) still
 * retries: nacked once, then the error reply. --errors is checked.
 */
static void test_reply_exec_error(void **state)
{
	struct shmbus *bus = t_open_bus(BUS);
	SHMBUS_OPTS(shmbus_queue_opts, qo, .dead_letter_queue = "rqe-dlq");
	struct shmbus_queue_info qi;
	char cmd[PATH_MAX + 160];
	struct result r;
	int64_t t0;
	pid_t kid;

	(void)state;
	declare(bus, "rqe-dlq", 64);
	assert_true(shmbus__queue_declare(bus, "rqe", &qo) >= 0);
	snprintf(cmd, sizeof(cmd), "test -e %s/tf || { touch %s/tf; exit 75; "
		 "}; echo 'no such thing'; exit 4", t_dir, t_dir);
	kid = cli_spawnv(-1, -1, -1, ARGS("reply", "rqe", "--exec", cmd,
					  "--errors", "reply", "-n", "1"));
	for (int i = 0; i < 2000 && info(bus, "rqe").consumers == 0; i++)
		usleep(1000);
	t0 = t_now_ns();
	r = cli_run(-1, -1, ARGS("req", "rqe", "ping", "--timeout", "10"));
	print_message("req to a failing --exec: exit %d after %.0f ms: %s",
		      r.status, (t_now_ns() - t0) / 1e6, r.err);
	assert_int_equal(r.status, 1);
	assert_true(t_now_ns() - t0 < 5000 * 1000000LL);
	assert_non_null(strstr(r.err, "answered with error status 4: "
				      "no such thing"));
	assert_int_equal(r.out_len, 0);
	result_free(&r);
	assert_int_equal(t_wait(kid, 10000), 0);
	qi = info(bus, "rqe");
	assert_int_equal(qi.stat[SHMBUS_STAT_NACKED], 1);	/* the 75 */
	assert_int_equal(qi.stat[SHMBUS_STAT_ACKED], 0);
	assert_int_equal(info(bus, "rqe-dlq").depth, 1);
	/* an explanation larger than a reply: cut, the status arrives */
	kid = cli_spawnv(-1, -1, -1, ARGS("reply", "rqe", "--exec",
					  "seq 1 3000; exit 3", "--errors",
					  "reply", "-n", "1"));
	for (int i = 0; i < 2000 && info(bus, "rqe").consumers == 0; i++)
		usleep(1000);
	t0 = t_now_ns();
	r = cli_run(-1, -1, ARGS("req", "rqe", "ping", "--timeout", "10"));
	print_message("req to a --exec that fails with 14 KB of output: exit "
		      "%d after %.0f ms, %zu bytes of message\n", r.status,
		      (t_now_ns() - t0) / 1e6, strlen(r.err));
	assert_int_equal(r.status, 1);
	assert_true(t_now_ns() - t0 < 5000 * 1000000LL);
	assert_non_null(strstr(r.err, "answered with error status 3: 1\\x0a2"));
	result_free(&r);
	assert_int_equal(t_wait(kid, 10000), 0);
	r = cli_run(-1, -1, ARGS("reply", "rqe", "--exec", "true", "--errors",
				 "later"));
	assert_int_equal(r.status, 2);
	result_free(&r);
	r = cli_run(-1, -1, ARGS("reply", "rqe", "--echo", "--errors",
				 "reply"));
	assert_int_equal(r.status, 2);
	result_free(&r);
	shmbus__close(bus);
}

/* ---- input: read errors, closed standard fds ----------------------- */

static void test_pub_read_errors(void **state)
{
	struct shmbus *bus = t_open_bus(BUS);
	struct result r;
	char path[PATH_MAX];
	int dir, fd;

	(void)state;
	declare(bus, "in", 64);
	/* a directory as stdin: EISDIR */
	dir = open(t_dir, O_RDONLY | O_DIRECTORY);
	assert_true(dir >= 0);
	r = cli_run(dir, -1, ARGS("pub", "in"));
	close(dir);
	print_message("pub < directory: exit %d: %s", r.status, r.err);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "Is a directory"));
	result_free(&r);
	/* stdin closed: an error (EBADF), not the daemon's socket as input */
	r = cli_run(CLOSED, -1, ARGS("pub", "in"));
	print_message("pub <&-: exit %d: %s", r.status, r.err);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "Bad file descriptor"));
	result_free(&r);
	assert_int_equal(info(bus, "in").stat[SHMBUS_STAT_PUBLISHED], 0);
	/* a file: each line */
	snprintf(path, sizeof(path), "%s/lines", t_dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_int_equal(write(fd, "a\nb\nc", 5), 5);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	r = cli_run(fd, -1, ARGS("pub", "in"));
	close(fd);
	assert_int_equal(r.status, 0);
	result_free(&r);
	assert_int_equal(info(bus, "in").stat[SHMBUS_STAT_PUBLISHED], 3);
	/* stdout closed: sub fails at its first message and acks nothing */
	r = cli_run(-1, CLOSED, ARGS("sub", "in", "--timeout", "0.3"));
	print_message("sub >&-: exit %d: %s", r.status, r.err);
	assert_int_equal(r.status, 1);
	result_free(&r);
	assert_int_equal(info(bus, "in").stat[SHMBUS_STAT_ACKED], 0);
	assert_int_equal(info(bus, "in").depth, 3);
	shmbus__close(bus);
}

/* Where fd @fd of @pid points. */
static void fd_target(pid_t pid, int fd, char *buf, size_t cap)
{
	char path[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
	n = readlink(path, buf, cap - 1);
	buf[n > 0 ? n : 0] = '\0';
}

/* shmbusd started with 0, 1, 2 closed takes them with /dev/null before
 * it opens its lock and socket, and serves. */
static void test_daemon_std_fds(void **state)
{
	char sock[PATH_MAX], lock[PATH_MAX + 8], t[PATH_MAX];
	const char *daemon = getenv("SHMBUS_DAEMON");
	struct result r;
	pid_t kid;

	(void)state;
	snprintf(sock, sizeof(sock), "%s/fds.sock", t_dir);
	snprintf(lock, sizeof(lock), "%s.lock", sock);
	kid = fork();
	assert_true(kid >= 0);
	if (!kid) {
		close(0);
		close(1);
		close(2);
		execl(daemon, "shmbusd", "--socket", sock, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 5000 && access(sock, F_OK); i++)
		usleep(1000);
	assert_int_equal(access(sock, F_OK), 0);
	for (int fd = 0; fd < 3; fd++) {
		fd_target(kid, fd, t, sizeof(t));
		print_message("shmbusd fd %d: %s\n", fd, t);
		assert_string_equal(t, "/dev/null");
	}
	{
		const char *const args[] = { cli, "--socket", sock, "--bus",
					     "fds", "queue", "declare", "x",
					     NULL };
		int ep[2];
		pid_t c;

		assert_int_equal(pipe2(ep, O_CLOEXEC), 0);
		c = fork();
		if (!c) {
			dup2(ep[1], 1);
			dup2(ep[1], 2);
			execv(cli, (char **)args);
			_exit(127);
		}
		close(ep[1]);
		r.err = slurp(ep[0], NULL);
		close(ep[0]);
		assert_int_equal(t_wait(c, 20000), 0);
		assert_non_null(strstr(r.err, "created x"));
		free(r.err);
	}
	kill(kid, SIGTERM);
	assert_true(t_wait(kid, 10000) >= 0);
}

/* ---- output write errors -------------------------------------------- */

static void test_output_errors(void **state)
{
	const char *const *const cmds[] = {
		ARGS("queue", "list"),
		ARGS("stat"),
		ARGS("stat", "--format", "json"),
		ARGS("topic", "list"),
		ARGS("dlq", "list"),
		ARGS("metrics", "--pin-dir", "/nonexistent"),
		ARGS("top", "-n", "1", "--batch", "--pin-dir", "/nonexistent"),
		ARGS("queue", "declare", "out2"),
		ARGS("--version"),
	};
	struct shmbus *bus = t_open_bus(BUS);

	(void)state;
	declare(bus, "out", 64);
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		int full = open("/dev/full", O_WRONLY);
		struct result r = cli_run(-1, full, cmds[i]);

		close(full);
		print_message("%s %s > /dev/full: exit %d: %s", cmds[i][0],
			      cmds[i][1] ? cmds[i][1] : "", r.status, r.err);
		assert_int_equal(r.status, 1);
		assert_non_null(strstr(r.err, "No space left on device"));
		result_free(&r);
	}
	shmbus__close(bus);
}

/* ---- no daemon ------------------------------------------------------ */

static void test_no_daemon(void **state)
{
	const char *const *const cmds[] = {
		ARGS("stat"),
		ARGS("stat", "--format", "json"),
		ARGS("queue", "list"),
		ARGS("topic", "list"),
		ARGS("dlq", "list"),
	};
	char dir[PATH_MAX], sock[PATH_MAX + 16], alone[PATH_MAX + 16],
	     cmd[8 * PATH_MAX], want[PATH_MAX + 32], *was;
	SHMBUS_OPTS(shmbus_open_opts, o, .flags = SHMBUS_OPEN_NOSTART);
	struct stat st;
	int64_t t0;

	(void)state;
	was = strdup(getenv("SHMBUS_SOCKET") ? getenv("SHMBUS_SOCKET") : "");
	snprintf(dir, sizeof(dir), "%s/nobody", t_dir);
	snprintf(sock, sizeof(sock), "%s/d.sock", dir);
	snprintf(want, sizeof(want), "no daemon at %s", sock);
	setenv("SHMBUS_SOCKET", sock, 1);
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		struct result r = cli_run(-1, -1, cmds[i]);

		print_message("no daemon: %s %s: exit %d: %s", cmds[i][0],
			      cmds[i][1] ? cmds[i][1] : "", r.status, r.err);
		assert_int_equal(r.status, 1);
		assert_non_null(strstr(r.err, want));
		result_free(&r);
	}
	/* none started, nothing made */
	assert_int_not_equal(stat(dir, &st), 0);
	/* the library's own answer */
	o.socket_path = sock;
	assert_null(shmbus__open("x", &o));
	assert_int_equal(errno, ECONNREFUSED);
	assert_non_null(strstr(shmbus_errmsg(), want));
	/* a copy of the CLI and the library with no shmbusd anywhere near
	 * (nor on $PATH): a declare fails at once, saying where it looked */
	snprintf(alone, sizeof(alone), "%s/alone", t_dir);
	snprintf(cmd, sizeof(cmd), "mkdir -p %s/bin %s/lib && cp %s %s/bin/ && "
		 "cp -L %.*s/lib/libshmbus.so.0 %s/lib/", alone, alone, cli, alone,
		 (int)(strrchr(cli, '/') - cli - 4), cli, alone);
	assert_int_equal(system(cmd), 0);
	if (access("/usr/local/bin/shmbusd", X_OK) == 0) {
		print_message("not run: an installed /usr/local/bin/shmbusd "
			      "would be started\n");
	} else {
		snprintf(cmd, sizeof(cmd), "env -u SHMBUS_DAEMON PATH=/usr/bin:/bin "
			 "%s/bin/shmbus queue declare q 2>%s/alone.err",
			 alone, t_dir);
		t0 = t_now_ns();
		assert_int_not_equal(system(cmd), 0);
		t0 = t_now_ns() - t0;
		snprintf(cmd, sizeof(cmd), "cat %s/alone.err >&2; grep -q "
			 "'shmbusd cannot be started: No such file or directory "
			 "(looked for' %s/alone.err", t_dir, t_dir);
		assert_int_equal(system(cmd), 0);
		print_message("no shmbusd to start: failed in %.0f ms\n",
			      t0 / 1e6);
		/* at once, not after the 5 s of retries a start gets */
		assert_true(t0 < 3000 * 1000000ll);
		assert_int_not_equal(stat(dir, &st), 0);
	}
	if (was[0])
		setenv("SHMBUS_SOCKET", was, 1);
	else
		unsetenv("SHMBUS_SOCKET");
	free(was);
}

/* ---- names -------------------------------------------------------- */

static void test_invalid_names(void **state)
{
	static const char *const bad[] = {
		"a/b", "..", "\xc3\xa9t\xc3\xa9", "", ".hidden", "a b",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	};
	struct result r;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *const *const cmds[] = {
			ARGS("queue", "declare", bad[i]),
			ARGS("queue", "delete", bad[i]),
			ARGS("topic", "declare", bad[i]),
			ARGS("pub", bad[i], "x"),
			ARGS("sub", bad[i], "--timeout", "0"),
			ARGS("req", bad[i], "x"),
			ARGS("queue", "declare", "ok", "--dlq", bad[i]),
		};

		for (size_t k = 0; k < sizeof(cmds) / sizeof(cmds[0]); k++) {
			r = cli_run(-1, -1, cmds[k]);
			if (!k)
				print_message("%s", r.err);
			assert_int_equal(r.status, 2);	/* a usage error */
			assert_non_null(strstr(r.err, " name '"));
			assert_non_null(strstr(r.err, "1 to 63 bytes of A-Z "
						      "a-z 0-9 . _ -"));
			assert_null(strstr(r.err, "lease"));
			result_free(&r);
		}
	}
	/* a bad bus name */
	{
		const char *argv[] = { cli, "--bus", "a/b", "stat", NULL };
		int ep[2];
		pid_t c;
		char *err;

		assert_int_equal(pipe2(ep, O_CLOEXEC), 0);
		c = fork();
		if (!c) {
			dup2(ep[1], 2);
			execv(cli, (char **)argv);
			_exit(127);
		}
		close(ep[1]);
		err = slurp(ep[0], NULL);
		close(ep[0]);
		print_message("%s", err);
		assert_int_equal(t_wait(c, 20000), 2);	/* a usage error */
		assert_non_null(strstr(err, "invalid bus name 'a/b': a name is "
					    "1 to 63 bytes of A-Z a-z 0-9 . _ -"));
		free(err);
	}
	/* ... also from $SHMBUS_BUS, for a command that opens the bus */
	{
		char out[512];
		int st = t_capture(out, sizeof(out),
				   "SHMBUS_BUS='a b' %s stat 2>&1", cli);

		print_message("SHMBUS_BUS='a b': exit %d: %s", st, out);
		assert_int_equal(st, 2);
		assert_non_null(strstr(out, "invalid bus ($SHMBUS_BUS) name "
					    "'a b'"));
	}
	/* the library says the same to a program (shmbus_errmsg()) */
	{
		struct shmbus *bus = t_open_bus(BUS);
		SHMBUS_OPTS(shmbus_queue_opts, qo, .dead_letter_queue = "..");
		SHMBUS_OPTS(shmbus_sub_opts, so, .group = "a/b");

		assert_int_equal(shmbus__queue_declare(bus, "a/b", NULL),
				 -EINVAL);
		print_message("library: %s\n", shmbus_errmsg());
		assert_non_null(strstr(shmbus_errmsg(), "invalid queue name: "
				       "a name is 1 to 63 bytes"));
		assert_int_equal(shmbus__queue_declare(bus, "fine", &qo),
				 -EINVAL);
		assert_non_null(strstr(shmbus_errmsg(),
				       "invalid dead-letter queue name"));
		assert_null(shmbus_producer__new(bus, "\xc3\xa9t\xc3\xa9",
						 NULL));
		assert_non_null(strstr(shmbus_errmsg(), "invalid queue name"));
		assert_null(shmbus_consumer__subscribe(bus, "x.*", &so));
		assert_non_null(strstr(shmbus_errmsg(), "invalid group name"));
		assert_null(shmbus_consumer__subscribe(bus, "x.>.y", NULL));
		assert_non_null(strstr(shmbus_errmsg(),
				       "invalid topic pattern"));
		assert_null(shmbus__open("..", NULL));
		assert_non_null(strstr(shmbus_errmsg(), "invalid bus name"));
		shmbus__close(bus);
	}
	/* bad settings are still reported as settings */
	r = cli_run(-1, -1, ARGS("queue", "declare", "fine", "--lease",
				 "0.0001"));
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "lease"));
	result_free(&r);
}

/* ---- text from the arena, escaped ------------------------------- */

/* What the CLI promises for a byte string: printable ASCII as it is, a
 * backslash doubled, every other byte as \xHH (written here from the
 * promise, not from the CLI's code). */
static void expect_esc(char *out, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '\\')
			out += sprintf(out, "\\\\");
		else if (c >= 0x20 && c < 0x7f)
			*out++ = (char)c;
		else
			out += sprintf(out, "\\x%02x", c);
	}
	*out = '\0';
}

/* The same inside a JSON string or a label value: \ and " backslashed. */
static void expect_quoted(char *out, const char *s)
{
	char e[512];

	expect_esc(e, s);
	for (const char *p = e; *p; p++) {
		if (*p == '\\' || *p == '"')
			*out++ = '\\';
		*out++ = *p;
	}
	*out = '\0';
}

/* No raw control byte, DEL or byte >= 0x80 in @buf: only text and
 * newlines. */
static void assert_clean(const char *what, const char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)buf[i];

		if ((c < 0x20 && c != '\n') || c >= 0x7f)
			fail_msg("%s: raw byte 0x%02x at %zu", what, c, i);
	}
}

/* Each line of @text is a valid line of the Prometheus text format:
 * a comment, or NAME{LABEL="VALUE",...} NUMBER, a value's backslashes
 * only before \, " or n. */
static void assert_exposition(const char *text)
{
	const char *p = text;
	int samples = 0;

	while (*p) {
		const char *nl = strchr(p, '\n');
		const char *q = p;
		char *end;

		assert_non_null(nl);
		if (*q == '#' || q == nl) {
			p = nl + 1;
			continue;
		}
		if (!(isalpha((unsigned char)*q) || *q == '_' || *q == ':'))
			fail_msg("bad metric name: %.*s", (int)(nl - p), p);
		while (isalnum((unsigned char)*q) || *q == '_' || *q == ':')
			q++;
		if (*q == '{') {
			q++;
			while (*q != '}') {
				if (!(isalpha((unsigned char)*q) || *q == '_'))
					fail_msg("bad label: %.*s",
						 (int)(nl - p), p);
				while (isalnum((unsigned char)*q) || *q == '_')
					q++;
				if (q[0] != '=' || q[1] != '"')
					fail_msg("bad label: %.*s",
						 (int)(nl - p), p);
				q += 2;
				while (*q != '"') {
					if (q >= nl)
						fail_msg("unterminated value: "
							 "%.*s", (int)(nl - p),
							 p);
					if (*q == '\\') {
						if (!strchr("\\\"n", q[1]))
							fail_msg("bad escape: "
								 "%.*s",
								 (int)(nl - p),
								 p);
						q++;
					}
					q++;
				}
				q++;
				if (*q == ',')
					q++;
				else if (*q != '}')
					fail_msg("bad labels: %.*s",
						 (int)(nl - p), p);
			}
			q++;
		}
		if (*q != ' ')
			fail_msg("no value: %.*s", (int)(nl - p), p);
		strtod(q + 1, &end);
		if (end == q + 1 || end != nl)
			fail_msg("bad value: %.*s", (int)(nl - p), p);
		samples++;
		p = nl + 1;
	}
	assert_true(samples > 0);
}

#define EVIL	"\x1b[31mred\"q\\b\nnl\xff\xfe\xc3(\x7f}"
#define EVIL2	"\x1b]0;owned\x07\r\t\xe2\x80\xae"

/* Queue @name's descriptor in our mapping of the arena gets @evil as
 * its name, as any member of the bus could write it. */
static void scribble_name(struct shmbus *bus, const char *name,
			  const char *evil)
{
	uint8_t *base = t_arena_mapping(bus_name);
	struct shmbus_sb *sb = (struct shmbus_sb *)base;
	struct shmbus_queue *q;

	assert_non_null(base);
	q = (struct shmbus_queue *)(base + sb->qdir_off) + info(bus, name).id;
	memset(q->name, 0, sizeof(q->name));
	memcpy(q->name, evil, strlen(evil));
}

static void test_escaped_names(void **state)
{
	static const char *const tables[][8] = {
		{ "stat", NULL },
		{ "queue", "list", NULL },
		{ "dlq", "list", NULL },
		{ "top", "-n", "1", "--batch", "--pin-dir", "/nonexistent",
		  NULL },
	};
	SHMBUS_OPTS(shmbus_queue_opts, qo, .dead_letter_queue = "victim-dlq");
	SHMBUS_OPTS(shmbus_pub_opts, po);
	struct shmbus_attr attr = { .key = "k", .value = EVIL2,
				    .value_len = sizeof(EVIL2) - 1 };
	char e1[512], e2[512], q1[512], q2[512], path[PATH_MAX], want[1200];
	struct shmbus_producer *p;
	struct shmbus *bus;
	struct result r;
	int fd;

	(void)state;
	bus_name = "cliesc";
	bus = t_open_bus(bus_name);
	declare(bus, "victim-dlq", 64);
	declare(bus, "hdr", 64);
	assert_true(shmbus__queue_declare(bus, "victim", &qo) >= 0);
	/* a dead-lettered body and an attribute with the same bytes */
	p = shmbus_producer__new(bus, "victim-dlq", NULL);
	assert_non_null(p);
	assert_int_equal(shmbus_producer__publish(p, EVIL, sizeof(EVIL) - 1,
						  NULL), 0);
	shmbus_producer__free(p);
	p = shmbus_producer__new(bus, "hdr", NULL);
	assert_non_null(p);
	po.attrs = &attr;
	po.nr_attrs = 1;
	assert_int_equal(shmbus_producer__publish(p, "body", 4, &po), 0);
	shmbus_producer__free(p);
	expect_esc(e1, EVIL);
	expect_esc(e2, EVIL2);
	expect_quoted(q1, EVIL);
	expect_quoted(q2, EVIL2);

	/* dlq peek before the scribbling (it attaches by name) */
	r = cli_run(-1, -1, ARGS("dlq", "peek", "victim-dlq"));
	assert_int_equal(r.status, 0);
	print_message("dlq peek:\n%s", r.out);
	assert_clean("dlq peek", r.out, r.out_len);
	assert_non_null(strstr(r.out, e1));
	result_free(&r);
	r = cli_run(-1, -1, ARGS("sub", "hdr", "--headers", "-n", "1"));
	assert_int_equal(r.status, 0);
	print_message("sub --headers: %s", r.out);
	snprintf(want, sizeof(want), "k=%s | body\n", e2);
	assert_string_equal(r.out, want);
	result_free(&r);

	scribble_name(bus, "victim", EVIL);
	scribble_name(bus, "victim-dlq", EVIL2);

	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
		r = cli_run(-1, -1, tables[i]);
		print_message("%s:\n%s", tables[i][0], r.out);
		assert_int_equal(r.status, 0);
		assert_clean(tables[i][0], r.out, r.out_len);
		/* top cuts names at 24 columns */
		snprintf(want, sizeof(want), "%.*s", i == 3 ? 24 : 511, e1);
		assert_non_null(strstr(r.out, want));
		if (i == 2)
			assert_non_null(strstr(r.out, e2));
		result_free(&r);
	}

	/* JSON: parses, and the values are the escaped names */
	snprintf(path, sizeof(path), "%s/stat.json", t_dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	r = cli_run(-1, fd, ARGS("stat", "--format", "json"));
	assert_int_equal(r.status, 0);
	result_free(&r);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	{
		const char *const py[] = {
			"python3", "-c",
			"import json, sys\n"
			"d = json.load(sys.stdin)\n"
			"for q in d['queues']:\n"
			"    print(q['name'] + '|' + q['dead_letter_queue'])\n",
			NULL,
		};
		int op[2];
		char *out;
		pid_t kid;

		assert_int_equal(pipe2(op, O_CLOEXEC), 0);
		kid = fork();
		if (!kid) {
			dup2(fd, 0);
			dup2(op[1], 1);
			execvp("python3", (char **)py);
			_exit(127);
		}
		close(op[1]);
		out = slurp(op[0], NULL);
		close(op[0]);
		print_message("names in the JSON:\n%s", out);
		assert_int_equal(t_wait(kid, 30000), 0);
		snprintf(want, sizeof(want), "%s|%s\n", e1, e2);
		assert_non_null(strstr(out, want));
		free(out);
	}
	close(fd);

	/* metrics: valid exposition, the label values escaped */
	r = cli_run(-1, -1, ARGS("metrics", "--pin-dir", "/nonexistent"));
	assert_int_equal(r.status, 0);
	assert_clean("metrics", r.out, r.out_len);
	assert_exposition(r.out);
	snprintf(want, sizeof(want), "queue=\"%s\"}", q1);
	assert_non_null(strstr(r.out, want));
	snprintf(want, sizeof(want), "queue=\"%s\"}", q2);
	assert_non_null(strstr(r.out, want));
	result_free(&r);
	shmbus__close(bus);
	bus_name = BUS;
}




/*
 * A queue larger than the bus's pools can fill: declare says so, queue
 * list and stat show what fits, and the gauges count it (the chunks of
 * every class that holds the queue's largest message) and what is free
 * of it. --max-len 0 is a usage error, not the default.
 */
static void test_capacity_visible(void **state)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_len = 65536,
		    .msg_size = 4096);
	SHMBUS_OPTS(shmbus_queue_gauges, g);
	struct shmbus *bus = t_open_bus(BUS);
	struct shmbus_producer *p;
	uint64_t want = 0, free0;
	struct result r;
	char want_note[160];

	(void)state;
	for (int i = 0; i < shmbus__pool_count(bus); i++) {
		struct shmbus_pool_info pi;

		assert_int_equal(shmbus__pool_info(bus, (unsigned)i, &pi), 0);
		if (pi.payload >= 4096)
			want += pi.chunks_max;	/* grown to their most */
	}
	r = cli_run(-1, -1, ARGS("queue", "declare", "capq", "--max-len",
				 "65536", "--msg-size", "4096"));
	print_message("declare: %s%s", r.out, r.err);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, "created capq\n");
	snprintf(want_note, sizeof(want_note), "'capq' takes 65536 messages, "
		 "but bus '%s' holds %llu of up to 4096 bytes", BUS,
		 (unsigned long long)want);
	assert_non_null(strstr(r.err, want_note));
	result_free(&r);
	/* a queue that fits: no note */
	r = cli_run(-1, -1, ARGS("queue", "declare", "capsmall", "--max-len",
				 "16"));
	assert_int_equal(r.status, 0);
	assert_string_equal(r.err, "");
	result_free(&r);
	r = cli_run(-1, -1, ARGS("queue", "declare", "capzero", "--max-len",
				 "0"));
	assert_int_equal(r.status, 2);	/* usage */
	assert_non_null(strstr(r.err, "--max-len: 1 to"));
	result_free(&r);

	/* a bus made to measure: the same queue fits */
	r = cli_run(-1, -1, ARGS("--bus", "capbig", "bus", "create", "capbig",
				 "--pools", "256:64,4K:65536", "--queues", "4",
				 "--ring-size", "1M"));
	print_message("%s%s", r.out, r.err);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "created bus capbig: "));
	assert_non_null(strstr(r.out, "4 queues"));
	assert_non_null(strstr(r.out, "pools: 64 x 256 bytes (grows to 512), "
				      "65536 x 4096 bytes (grows to 524288)"
				      "\n"));
	result_free(&r);
	r = cli_run(-1, -1, ARGS("--bus", "capbig", "queue", "declare", "capq",
				 "--max-len", "65536", "--msg-size", "4096"));
	assert_int_equal(r.status, 0);
	assert_string_equal(r.err, "");
	result_free(&r);
	r = cli_run(-1, -1, ARGS("bus", "create", "capbig"));
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "bus 'capbig' exists"));
	result_free(&r);
	r = cli_run(-1, -1, ARGS("bus", "create", "capbad", "--pools",
				 "4K:8,256:8"));
	assert_int_equal(r.status, 1);	/* not ascending: the daemon says */
	result_free(&r);
	r = cli_run(-1, -1, ARGS("bus", "create", "capbad", "--pools", "4X:8"));
	assert_int_equal(r.status, 2);
	result_free(&r);
	r = cli_run(-1, -1, ARGS("bus", "delete", "capbig"));
	assert_int_equal(r.status, 0);
	result_free(&r);

	assert_true(shmbus__queue_declare(bus, "capq", &qo) >= 0);
	assert_int_equal(shmbus__queue_gauges(bus, "capq", &g), 0);
	assert_int_equal(g.fit, want);
	free0 = g.fit_free;
	p = shmbus_producer__new(bus, "capq", NULL);
	assert_non_null(p);
	for (int i = 0; i < 10; i++) {
		char m[3000] = { 0 };

		assert_int_equal(shmbus_producer__publish(p, m, sizeof(m),
							  NULL), 0);
	}
	assert_int_equal(shmbus__queue_gauges(bus, "capq", &g), 0);
	print_message("fit %llu, free %llu, then %llu after 10 published\n",
		      (unsigned long long)g.fit, (unsigned long long)free0,
		      (unsigned long long)g.fit_free);
	assert_int_equal(g.fit_free, free0 - 10);
	shmbus_producer__free(p);

	r = cli_run(-1, -1, ARGS("queue", "list"));
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "FITS"));
	result_free(&r);
	r = cli_run(-1, -1, ARGS("stat"));
	assert_int_equal(r.status, 0);
	snprintf(want_note, sizeof(want_note), "capq: takes 65536 messages, "
		 "but the pools hold at most %llu of up to 4096 bytes",
		 (unsigned long long)want);
	assert_non_null(strstr(r.out, want_note));
	result_free(&r);
	r = cli_run(-1, -1, ARGS("stat", "--format", "json"));
	assert_int_equal(r.status, 0);
	snprintf(want_note, sizeof(want_note), "\"capacity\":65536,"
		 "\"fit\":%llu,", (unsigned long long)want);
	assert_non_null(strstr(r.out, want_note));
	result_free(&r);
	assert_int_equal(shmbus__queue_delete(bus, "capq"), 0);
	shmbus__close(bus);
}

/* Messages the daemon holds (delayed, backing off) are visible: the
 * DELAYED column, the JSON field, the metric; they are not in the depth. */
static void test_delayed_visible(void **state)
{
	struct shmbus *bus = t_open_bus(BUS);
	SHMBUS_OPTS(shmbus_queue_opts, qo, .backoff_init_ns = 5000000000LL);
	SHMBUS_OPTS(shmbus_queue_gauges, g);
	struct shmbus_consumer *c;
	struct shmbus_msg m;
	struct result r;
	char *line;
	int i;

	(void)state;
	assert_true(shmbus__queue_declare(bus, "dly", &qo) >= 0);
	for (i = 0; i < 3; i++) {
		r = cli_run(-1, -1, ARGS("pub", "dly", "later", "--delay", "30"));
		assert_int_equal(r.status, 0);
		result_free(&r);
	}
	publish_n(bus, "dly", 1, 16);
	/* one taken and nacked: it waits out its 5 s backoff */
	c = shmbus_consumer__new(bus, "dly", NULL);
	assert_non_null(c);
	assert_int_equal(shmbus_consumer__receive_view(c, &m, 1000000000LL), 0);
	assert_int_equal(shmbus_consumer__nack(c, &m, SHMBUS_NACK_BACKOFF), 0);
	for (i = 0; i < 3000; i++) {
		assert_int_equal(shmbus__queue_gauges(bus, "dly", &g), 0);
		if (g.delayed == 4)
			break;
		usleep(1000);
	}
	print_message("delayed %llu, depth %llu\n",
		      (unsigned long long)g.delayed,
		      (unsigned long long)info(bus, "dly").depth);
	assert_int_equal(g.delayed, 4);
	assert_int_equal(info(bus, "dly").depth, 0);

	r = cli_run(-1, -1, ARGS("stat"));
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, " DELAYED "));
	line = strstr(r.out, "\ndly ");
	assert_non_null(line);
	if (!line)		/* for the compiler: assert_non_null() returns */
		return;
	print_message("%.*s\n", (int)strcspn(line + 1, "\n"), line + 1);
	/* QUEUE DEPTH INFLT DELAYED */
	{
		char name[64];
		unsigned long long depth, inflt, delayed;

		assert_int_equal(sscanf(line + 1, "%63s %llu %llu %llu", name,
					&depth, &inflt, &delayed), 4);
		assert_int_equal(depth, 0);
		assert_int_equal(delayed, 4);
	}
	result_free(&r);
	r = cli_run(-1, -1, ARGS("stat", "--format", "json"));
	assert_int_equal(r.status, 0);
	line = strstr(r.out, "{\"name\":\"dly\"");
	assert_non_null(line);
	if (!line)		/* for the compiler: assert_non_null() returns */
		return;
	assert_non_null(strstr(line, "\"delayed\":4,"));
	result_free(&r);
	r = cli_run(-1, -1, ARGS("metrics", "--pin-dir", "/nonexistent"));
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "# TYPE shmbus_delayed gauge\n"));
	/* the line of queue dly */
	line = strstr(r.out, "\nshmbus_delayed{");
	while (line) {
		size_t len = strcspn(line + 1, "\n");
		char *q = strstr(line + 1, "queue=\"dly\"");

		if (q && q < line + 1 + len)
			break;
		line = strstr(line + 1, "\nshmbus_delayed{");
	}
	assert_non_null(line);
	if (!line)		/* for the compiler: assert_non_null() returns */
		return;
	print_message("%.*s\n", (int)strcspn(line + 1, "\n"), line + 1);
	assert_true(strncmp(strchr(line, '}'), "} 4\n", 4) == 0);
	result_free(&r);
	shmbus_consumer__free(c);
	assert_int_equal(shmbus__queue_delete(bus, "dly"), 0);

	/* a publisher waiting on a full queue shows as blocked, in the
	 * gauges, the BLOCKED column, the JSON and the metric; not after */
	declare(bus, "blk", 2);
	publish_n(bus, "blk", 2, 16);
	{
		int in[2], ep[2];
		pid_t kid;

		assert_int_equal(pipe2(in, O_CLOEXEC), 0);
		assert_int_equal(pipe2(ep, O_CLOEXEC), 0);
		assert_int_equal(write(in[1], "x\n", 2), 2);
		kid = cli_spawnv(in[0], -1, ep[1], ARGS("pub", "blk"));
		close(ep[1]);
		for (i = 0; i < 5000; i++) {
			assert_int_equal(shmbus__queue_gauges(bus, "blk", &g), 0);
			if (g.blocked_producers == 1)
				break;
			usleep(1000);
		}
		assert_int_equal(g.blocked_producers, 1);
		r = cli_run(-1, -1, ARGS("stat"));
		line = strstr(r.out, "\nblk ");
		assert_non_null(line);
		if (!line)		/* for the compiler: assert_non_null() returns */
			return;
		print_message("%.*s\n", (int)strcspn(line + 1, "\n"), line + 1);
		/* the last column */
		{
			size_t len = strcspn(line + 1, "\n");
			const char *end = line + 1 + len;

			assert_true(len > 2 && end[-1] == '1' && end[-2] == ' ');
		}
		result_free(&r);
		r = cli_run(-1, -1, ARGS("stat", "--format", "json"));
		assert_non_null(strstr(strstr(r.out, "{\"name\":\"blk\""),
				       "\"blocked_producers\":1,"));
		result_free(&r);
		r = cli_run(-1, -1, ARGS("metrics", "--pin-dir", "/nonexistent"));
		assert_non_null(strstr(r.out, "shmbus_blocked_producers{bus=\""
					      BUS "\",queue=\"blk\"} 1\n"));
		result_free(&r);
		assert_int_equal(kill(kid, SIGINT), 0);
		r.err = slurp(ep[0], NULL);
		close(ep[0]);
		assert_int_equal(t_wait(kid, 10000), 130);
		free(r.err);
		close(in[0]);
		close(in[1]);
		assert_int_equal(shmbus__queue_gauges(bus, "blk", &g), 0);
		assert_int_equal(g.blocked_producers, 0);
	}
	assert_int_equal(shmbus__queue_delete(bus, "blk"), 0);
	shmbus__close(bus);
}

/* Errors that name the real problem, in one line each. */
static void test_error_messages(void **state)
{
	struct result r;
	int k;

	(void)state;
	r = cli_run(-1, -1, ARGS("queue", "declare", "emdlq"));
	assert_int_equal(r.status, 0);
	result_free(&r);
	r = cli_run(-1, -1, ARGS("queue", "declare", "em", "--max-len", "8",
				 "--priorities", "2"));
	assert_int_equal(r.status, 0);
	result_free(&r);
	/* each setting that differs, once, not nested */
	r = cli_run(-1, -1, ARGS("queue", "declare", "em", "--max-len", "16",
				 "--priorities", "2", "--lease", "3",
				 "--dlq", "emdlq"));
	print_message("%s", r.err);
	assert_int_equal(r.status, 1);
	assert_string_equal(r.err, "shmbus: queue: queue 'em' exists with "
		"other settings: max-len 8 (this declare: 16), lease 30 s "
		"(this declare: 3 s), dlq none (this declare: emdlq)\n");
	result_free(&r);
	/* a durable declare of it */
	r = cli_run(-1, -1, ARGS("queue", "declare", "em", "--durable"));
	assert_int_equal(r.status, 1);
	assert_string_equal(r.err, "shmbus: queue: queue 'em' exists and is "
				   "not durable\n");
	result_free(&r);
	r = cli_run(-1, -1, ARGS("topic", "declare", "em"));
	assert_int_equal(r.status, 1);
	assert_string_equal(r.err, "shmbus: topic: 'em' exists as a queue\n");
	result_free(&r);
	/* a priority the queue has no level for */
	r = cli_run(-1, -1, ARGS("pub", "em", "x", "--priority", "3"));
	print_message("%s", r.err);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "priority 3 out of range: the queue has "
				      "2 levels (0..1)"));
	result_free(&r);
	/* a pattern with an empty token, and one with '>' inside */
	for (k = 0; k < 2; k++) {
		r = cli_run(-1, -1, ARGS("sub", k ? "a.>.b" : "a..b", "--topic",
					 "--timeout", "0.1"));
		print_message("%s", r.err);
		assert_int_equal(r.status, 1);
		assert_non_null(strstr(r.err, "invalid topic pattern: "));
		assert_non_null(strstr(r.err, "tokens are not empty"));
		result_free(&r);
	}
	/* a port out of range */
	r = cli_run(-1, -1, ARGS("metrics", "--listen", "127.0.0.1:99999"));
	assert_int_equal(r.status, 2);
	assert_string_equal(r.err, "shmbus: metrics: --listen 127.0.0.1:99999: "
				   "port '99999' is not a number 0..65535\n");
	result_free(&r);
}


/* sub --exec CMD: acked when CMD exits 0, nacked with the queue's
 * backoff otherwise, dead-lettered after max-deliveries; CMD sees the
 * body on stdin and the delivery count in SHMBUS_DELIVERY. */
static void test_sub_exec(void **state)
{
	struct shmbus *bus = t_open_bus(BUS);
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_deliveries = 3,
		    .backoff_init_ns = 20000000, .dead_letter_queue = "sx-dlq");
	char cmd[PATH_MAX + 128], path[PATH_MAX], *got;
	struct shmbus_queue_info qi;
	struct result r;
	int fd, lines = 0;

	(void)state;
	declare(bus, "sx-dlq", 64);
	assert_true(shmbus__queue_declare(bus, "sx", &qo) >= 0);

	/* a command that always fails: 3 deliveries, then the DLQ */
	publish_n(bus, "sx", 1, 16);
	r = cli_run(-1, -1, ARGS("sub", "sx", "--exec", "false", "--timeout",
				 "0.5"));
	print_message("sub --exec false: exit %d:\n%s", r.status, r.err);
	assert_int_equal(r.status, 0);
	for (char *p = r.err; (p = strstr(p, "the command exited 1; given "
					  "back for redelivery")); p++)
		lines++;
	assert_int_equal(lines, 3);
	result_free(&r);
	qi = info(bus, "sx");
	assert_int_equal(qi.stat[SHMBUS_STAT_NACKED], 3);
	assert_int_equal(qi.stat[SHMBUS_STAT_DEADLETTERED], 1);
	assert_int_equal(qi.stat[SHMBUS_STAT_ACKED], 0);
	assert_int_equal(info(bus, "sx-dlq").depth, 1);

	/* one that fails the first delivery of each and takes the second:
	 * every body reaches the file once, in order */
	snprintf(path, sizeof(path), "%s/sx.out", t_dir);
	snprintf(cmd, sizeof(cmd), "test \"$SHMBUS_DELIVERY\" -ge 2 && "
		 "{ cat; echo; } >> %s", path);
	publish_n(bus, "sx", 5, 16);
	r = cli_run(-1, -1, ARGS("sub", "sx", "--exec", cmd, "-n", "5",
				 "--timeout", "2"));
	assert_int_equal(r.status, 0);
	result_free(&r);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	got = slurp(fd, NULL);
	close(fd);
	{
		struct tally t = { .n = 5, .w = 16 };

		t.seen = calloc(5, sizeof(int));
		tally_add(&t, got, strlen(got));
		tally_report("sub --exec, failing each first delivery", &t);
		assert_int_equal(t.lines, 5);	/* none twice */
		free(t.seen);
	}
	free(got);
	qi = info(bus, "sx");
	assert_int_equal(qi.stat[SHMBUS_STAT_ACKED], 5);
	assert_int_equal(qi.depth, 0);
	/* --headers goes with the bodies sub writes, not with --exec */
	r = cli_run(-1, -1, ARGS("sub", "sx", "--exec", "true", "--headers"));
	assert_int_equal(r.status, 2);
	result_free(&r);
	shmbus__close(bus);
}

/* ---- exit statuses ---------------------------------------------------- */

/* Wait (5 s at most) until @q has @n consumers attached. */
static void consumers_when(struct shmbus *bus, const char *q, uint32_t n)
{
	for (int i = 0; i < 5000 && info(bus, q).consumers != n; i++)
		usleep(1000);
	assert_int_equal(info(bus, q).consumers, n);
}

/* Start ARGS with stdin @in (-1: /dev/null), stdout to /dev/null and
 * stderr into a pipe (*@ep); send @sig once @q has @consumers attached
 * (or after 300 ms when @q is NULL); its status and stderr. */
static struct result signalled(struct shmbus *bus, const char *q,
			       uint32_t consumers, int in, int sig,
			       const char *const *args)
{
	struct result r = { 0 };
	int ep[2], nul = open("/dev/null", O_RDWR);
	pid_t kid;

	assert_int_equal(pipe2(ep, O_CLOEXEC), 0);
	kid = cli_spawnv(in >= 0 ? in : nul, nul, ep[1], args);
	close(ep[1]);
	if (q)
		consumers_when(bus, q, consumers);
	else
		usleep(300000);
	usleep(100000);		/* in its wait */
	assert_int_equal(kill(kid, sig), 0);
	r.err = slurp(ep[0], NULL);
	close(ep[0]);
	close(nul);
	r.status = t_wait(kid, 20000);
	return r;
}

static void test_exit_codes(void **state)
{
	struct shmbus *bus = t_open_bus(BUS);
	struct result r;
	char want[256];
	int in[2];

	(void)state;
	declare(bus, "ex", 4);
	declare(bus, "exrq", 16);

	/* 2: usage errors, each with a message */
	{
		const struct { const char *const *args; const char *says; }
		usage[] = {
			{ ARGS("frobnicate"), "unknown command 'frobnicate'" },
			{ ARGS("queue", "oops"),
			  "unknown queue command 'oops' (declare, delete, list)" },
			{ ARGS("topic", "oops", "x"), "unknown topic command" },
			{ ARGS("dlq", "oops"), "unknown dlq command" },
			{ ARGS("monitor", "oops"), "unknown monitor command" },
			{ ARGS("sub", "ex", "--bogus"), "unrecognized option" },
			{ ARGS("sub", "ex", "-n", "many"), "invalid count 'many'" },
			{ ARGS("pub", "ex", "x", "--timeout", "soon"),
			  "invalid duration 'soon'" },
			{ ARGS("queue", "declare"), "needs exactly one queue NAME" },
			{ ARGS("queue", "declare", "q", "--overflow", "spill"),
			  "--overflow: block, reject or drop-oldest" },
			{ ARGS("pub", "bad/name", "x"), "invalid queue name" },
			{ ARGS("stat", "--format", "xml"), "unknown format 'xml'" },
			{ ARGS("req", "exrq"), "usage:" },
			{ ARGS("queue"), "usage:" },
		};

		for (size_t i = 0; i < sizeof(usage) / sizeof(usage[0]); i++) {
			r = cli_run(-1, -1, usage[i].args);
			print_message("%s %s: exit %d: %.*s\n", usage[i].args[0],
				      usage[i].args[1] ? usage[i].args[1] : "",
				      r.status, (int)strcspn(r.err, "\n"), r.err);
			assert_int_equal(r.status, 2);
			assert_non_null(strstr(r.err, usage[i].says));
			result_free(&r);
		}
	}

	/* 3: nothing there */
	r = cli_run(-1, -1, ARGS("monitor", "status", "--pin-dir",
				 "/nonexistent"));
	assert_int_equal(r.status, 3);
	result_free(&r);

	/* 124: sub -n 3 with two messages */
	publish_n(bus, "ex", 2, 16);
	r = cli_run(-1, -1, ARGS("sub", "ex", "-n", "3", "--timeout", "0.2"));
	print_message("sub -n 3 of 2: exit %d: %s", r.status, r.err);
	assert_int_equal(r.status, 124);
	assert_string_equal(r.err, "shmbus: sub: 2 of 3 messages within the "
				   "timeout\n");
	assert_int_equal(r.out_len, 2 * 17);
	result_free(&r);
	/* ... and 0 with as many as asked, and without -n */
	publish_n(bus, "ex", 2, 16);
	r = cli_run(-1, -1, ARGS("sub", "ex", "-n", "2", "--timeout", "0.2"));
	assert_int_equal(r.status, 0);
	result_free(&r);
	r = cli_run(-1, -1, ARGS("sub", "ex", "--timeout", "0.1"));
	assert_int_equal(r.status, 0);
	result_free(&r);

	/* 124: req that nobody answers (sub takes the request and acks it
	 * unanswered), reply -n 2 that answers one */
	{
		int nul = open("/dev/null", O_WRONLY);
		pid_t taker = cli_spawnv(-1, nul, nul, ARGS("sub", "exrq", "-n",
							   "1"));

		consumers_when(bus, "exrq", 1);
		r = cli_run(-1, -1, ARGS("req", "exrq", "hello", "--timeout",
					 "0.3"));
		print_message("req, no reply: exit %d: %s", r.status, r.err);
		assert_int_equal(r.status, 124);
		assert_non_null(strstr(r.err, "no reply from 'exrq' within "
					      "0.300 s"));
		result_free(&r);
		assert_int_equal(t_wait(taker, 10000), 0);
		close(nul);
	}
	{
		pid_t server;
		int ep[2];

		assert_int_equal(pipe2(ep, O_CLOEXEC), 0);
		server = cli_spawnv(-1, -1, ep[1], ARGS("reply", "exrq",
			"--echo", "-n", "2", "--timeout", "0.5"));
		close(ep[1]);
		consumers_when(bus, "exrq", 1);
		r = cli_run(-1, -1, ARGS("req", "exrq", "ping"));
		assert_int_equal(r.status, 0);
		assert_string_equal(r.out, "ping\n");
		result_free(&r);
		r.err = slurp(ep[0], NULL);
		close(ep[0]);
		r.status = t_wait(server, 10000);
		print_message("reply -n 2, one request: exit %d: %s", r.status,
			      r.err);
		assert_int_equal(r.status, 124);
		assert_string_equal(r.err, "answered 1 request on exrq\n");
		result_free(&r);
	}

	/* 124: pub --timeout on a full queue, saying once that it waits
	 * and how many went in */
	assert_int_equal(pipe2(in, O_CLOEXEC), 0);
	assert_int_equal(write(in[1], "1\n2\n3\n4\n5\n6\n", 12), 12);
	close(in[1]);
	r = cli_run(in[0], -1, ARGS("pub", "ex", "--timeout", "0.3"));
	close(in[0]);
	print_message("pub to a full queue, --timeout 0.3: exit %d: %s",
		      r.status, r.err);
	assert_int_equal(r.status, 124);
	assert_string_equal(r.err,
		"shmbus: pub: queue 'ex' is full: waiting for room (published "
		"4 so far; up to --timeout, Ctrl-C stops)\n"
		"shmbus: pub: still no room in 'ex' after 0.300 s (published 4 "
		"messages before it)\n");
	result_free(&r);
	assert_int_equal(info(bus, "ex").depth, 4);

	/* 130: Ctrl-C while pub waits for room (the queue is still full) */
	assert_int_equal(pipe2(in, O_CLOEXEC), 0);
	assert_int_equal(write(in[1], "7\n8\n", 4), 4);
	r = signalled(bus, NULL, 0, in[0], SIGINT, ARGS("pub", "ex"));
	close(in[0]);
	close(in[1]);
	print_message("pub waiting, Ctrl-C: exit %d: %s", r.status, r.err);
	assert_int_equal(r.status, 130);
	snprintf(want, sizeof(want), "shmbus: pub: queue 'ex' is full: "
		 "waiting for room (published 0 so far; --timeout limits the "
		 "wait, Ctrl-C stops)\npublished 0 messages to ex "
		 "(interrupted)\n");
	assert_string_equal(r.err, want);
	result_free(&r);
	assert_int_equal(info(bus, "ex").depth, 4);

	/* 130 and 143: sub and reply, which catch the signal to finish */
	r = cli_run(-1, -1, ARGS("sub", "ex", "-n", "4"));
	assert_int_equal(r.status, 0);
	result_free(&r);
	r = signalled(bus, "ex", 1, -1, SIGINT, ARGS("sub", "ex"));
	assert_int_equal(r.status, 130);
	result_free(&r);
	r = signalled(bus, "ex", 1, -1, SIGTERM, ARGS("sub", "ex"));
	assert_int_equal(r.status, 143);
	result_free(&r);
	r = signalled(bus, "exrq", 1, -1, SIGINT, ARGS("reply", "exrq",
						       "--echo"));
	assert_int_equal(r.status, 130);
	assert_string_equal(r.err, "answered 0 requests on exrq\n");
	result_free(&r);
	/* and req, which does not catch it */
	{
		int nul = open("/dev/null", O_WRONLY);
		pid_t taker = cli_spawnv(-1, nul, nul, ARGS("sub", "exrq", "-n",
							   "1"));

		consumers_when(bus, "exrq", 1);
		r = signalled(bus, NULL, 0, -1, SIGINT, ARGS("req", "exrq", "x"));
		assert_int_equal(r.status, 130);
		result_free(&r);
		assert_int_equal(t_wait(taker, 10000), 0);
		close(nul);
	}
	shmbus__close(bus);
}

/* ---- durable queues ------------------------------------------------- */

#define DBUS	"clidur"

/* A daemon on its own socket with a state directory, both under t_dir. */
struct dur_daemon {
	char sock[96];		/* a socket's path: 108 bytes at most */
	char state[128];	/* under t_dir (64 bytes) */
	pid_t pid;
};

static void dur_daemon_start(struct dur_daemon *d)
{
	d->pid = t_daemon_start_state(d->sock, d->state, NULL);
	assert_true(d->pid > 0);
}

static void dur_daemon_kill(struct dur_daemon *d)
{
	assert_int_equal(kill(d->pid, SIGKILL), 0);
	for (int i = 0; i < 5000 && t_pid_running(d->pid); i++)
		usleep(1000);
	assert_false(t_pid_running(d->pid));
}

static struct shmbus *dur_open(const struct dur_daemon *d)
{
	SHMBUS_OPTS(shmbus_open_opts, o, .socket_path = d->sock,
		    .flags = SHMBUS_OPEN_NOSTART);
	struct shmbus *bus = shmbus__open(DBUS, &o);

	assert_non_null(bus);
	return bus;
}

/* The CLI against daemon @d: "shmbus --bus DBUS --socket SOCK ARGS". */
#define DARGS(d, ...)	ARGS("--socket", (d)->sock, __VA_ARGS__)

/* Wait (5 s at most) until queue @q's journal, as the daemon last
 * published it (every 100 ms or so), holds @live messages; returns it. */
static struct shmbus_journal_info journal_when(struct shmbus *bus,
					       const char *q, uint64_t live)
{
	SHMBUS_OPTS(shmbus_journal_info, ji);

	for (int i = 0; i < 5000; i++) {
		assert_int_equal(shmbus__queue_journal(bus, q, &ji), 0);
		if (ji.live == live)
			break;
		usleep(1000);
	}
	assert_int_equal(ji.live, live);
	return ji;
}

/* The value of the sample line that starts with @prefix in @text. */
static unsigned long long sample(const char *text, const char *prefix)
{
	const char *p = strstr(text, prefix);

	if (!p)
		fail_msg("no sample %s", prefix);
	assert_true(p == text || p[-1] == '\n');
	return strtoull(p + strlen(prefix), NULL, 10);
}

/* declare --durable, and what it refuses. */
static void durable_declare(const struct dur_daemon *d)
{
	struct result r;

	r = cli_run(-1, -1, DARGS(d, "queue", "declare", "dur", "--durable",
				  "--sync", "batch", "--sync-interval",
				  "0.001"));
	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, "created dur\n");
	result_free(&r);
	/* the same again: it exists, with the same settings */
	r = cli_run(-1, -1, DARGS(d, "queue", "declare", "dur", "--durable",
				  "--sync", "batch", "--sync-interval",
				  "0.001"));
	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, "exists dur\n");
	result_free(&r);
	r = cli_run(-1, -1, DARGS(d, "queue", "declare", "x", "--sync",
				  "batch"));
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "--sync and --sync-interval need "
				      "--durable"));
	result_free(&r);
	r = cli_run(-1, -1, DARGS(d, "queue", "declare", "x", "--durable",
				  "--sync", "sometimes"));
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "--sync: always, batch or never"));
	result_free(&r);
	r = cli_run(-1, -1, DARGS(d, "queue", "declare", "x", "--durable",
				  "--sync-interval", "0.01"));
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "--sync-interval is for --sync batch"));
	result_free(&r);
	/* what a persistent queue cannot have: usage errors */
	r = cli_run(-1, -1, DARGS(d, "queue", "declare", "x", "--durable",
				  "--priorities", "2"));
	print_message("declare --durable --priorities 2: %s", r.err);
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "--durable takes no --priorities"));
	result_free(&r);
	r = cli_run(-1, -1, DARGS(d, "queue", "declare", "x", "--durable",
				  "--overflow", "drop-oldest"));
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "--overflow block or reject"));
	result_free(&r);
	/* what only the daemon knows: its reason comes with the error */
	r = cli_run(-1, -1, DARGS(d, "queue", "declare", "plaindlq"));
	assert_int_equal(r.status, 0);
	result_free(&r);
	r = cli_run(-1, -1, DARGS(d, "queue", "declare", "x", "--durable",
				  "--dlq", "plaindlq"));
	print_message("declare --durable --dlq (not durable): %s", r.err);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "invalid settings for a durable queue"));
	assert_non_null(strstr(r.err, "dead-letter"));
	result_free(&r);
}

/* pub of 1000 lines, confirmed every 100; stat and metrics show the
 * journal and the syncs. */
static void durable_pub_stat(const struct dur_daemon *d, struct shmbus *bus)
{
	char path[PATH_MAX], want[160];
	struct shmbus_journal_info ji;
	struct result r;
	char line[256];
	unsigned long long live, syncs, inf, count;
	FILE *f;
	int fd;

	snprintf(path, sizeof(path), "%s/dur-lines", t_dir);
	f = fopen(path, "w+");
	assert_non_null(f);
	for (int i = 0; i < 1000; i++)
		fprintf(f, "m%d\n", i);
	assert_int_equal(fflush(f), 0);
	fd = dup(fileno(f));
	fclose(f);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	r = cli_run(fd, -1, DARGS(d, "pub", "dur", "--confirm-every", "100"));
	close(fd);
	print_message("pub: %s", r.err);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.err, "published 1000 messages to dur, 1000 "
				   "confirmed\n");
	result_free(&r);
	ji = journal_when(bus, "dur", 1000);
	assert_true(ji.syncs > 0);
	assert_int_equal(ji.failed, 0);

	r = cli_run(-1, -1, DARGS(d, "stat"));
	assert_int_equal(r.status, 0);
	print_message("%s", r.out);
	assert_non_null(strstr(r.out, "\nJOURNAL "));
	{
		const char *row = strstr(r.out, "\ndur ");

		assert_non_null(row);
		row = strstr(row + 1, "\ndur ");	/* the JOURNAL row */
		assert_non_null(row);
		assert_int_equal(sscanf(row + 1, "%255s %159s %*u %*u %llu", line,
					want, &live), 3);
		assert_string_equal(want, "batch/1ms");
		assert_int_equal(live, 1000);
	}
	assert_int_equal(sscanf(strstr(r.out, "\njournal syncs ") + 1,
				"journal syncs %llu:", &syncs), 1);
	assert_true(syncs >= ji.syncs);
	assert_non_null(strstr(r.out, "p99 "));
	result_free(&r);

	r = cli_run(-1, -1, DARGS(d, "stat", "--format", "json"));
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "\"durable\":true,\"journal\":"
				      "{\"sync\":\"batch\",\"sync_interval_ns\""
				      ":1000000,"));
	assert_non_null(strstr(r.out, "\"live\":1000,"));
	assert_non_null(strstr(r.out, ",\"journal\":{\"syncs\":"));
	result_free(&r);

	r = cli_run(-1, -1, DARGS(d, "metrics"));
	assert_int_equal(r.status, 0);
	assert_exposition(r.out);
	assert_int_equal(sample(r.out, "shmbus_journal_live_messages{bus=\""
				DBUS "\",queue=\"dur\"} "), 1000);
	assert_true(sample(r.out, "shmbus_journal_syncs_total{bus=\"" DBUS
			   "\",queue=\"dur\"} ") >= ji.syncs);
	assert_true(sample(r.out, "shmbus_journal_records_written_total{bus=\""
			   DBUS "\",queue=\"dur\"} ") >= 1000);
	assert_int_equal(sample(r.out, "shmbus_journal_failed_total{bus=\""
				DBUS "\",queue=\"dur\"} "), 0);
	assert_true(sample(r.out, "shmbus_journal_bytes{bus=\"" DBUS
			   "\",queue=\"dur\"} ") > 1000 * 2);
	inf = sample(r.out, "shmbus_journal_sync_seconds_bucket{bus=\"" DBUS
		     "\",le=\"+Inf\"} ");
	count = sample(r.out, "shmbus_journal_sync_seconds_count{bus=\"" DBUS
		       "\"} ");
	assert_int_equal(inf, count);
	assert_true(count >= ji.syncs);
	assert_int_equal(sample(r.out, "shmbus_bus_recovered_messages{bus=\""
				DBUS "\"} "), 0);
	result_free(&r);
}

/* pub whose confirms do not come (the daemon stopped): exit 1, saying
 * how many were published and confirmed; then pub ended by Ctrl-C:
 * what it read is confirmed. */
static void durable_pub_stop(const struct dur_daemon *d, struct shmbus *bus)
{
	struct result r;
	int in[2], ep[2];
	pid_t kid;

	/* attached first, then the daemon stops, then the input ends */
	assert_int_equal(pipe2(in, O_CLOEXEC), 0);
	assert_int_equal(pipe2(ep, O_CLOEXEC), 0);
	kid = cli_spawnv(in[0], -1, ep[1],
			 DARGS(d, "pub", "dur", "--confirm-timeout", "0.3"));
	close(in[0]);
	close(ep[1]);
	assert_int_equal(write(in[1], "a\n", 2), 2);
	journal_when(bus, "dur", 1001);
	assert_int_equal(kill(d->pid, SIGSTOP), 0);
	assert_int_equal(write(in[1], "b\n", 2), 2);
	close(in[1]);
	r.err = slurp(ep[0], NULL);
	close(ep[0]);
	r.status = t_wait(kid, 20000);
	assert_int_equal(kill(d->pid, SIGCONT), 0);
	print_message("pub, daemon stopped: exit %d: %s", r.status, r.err);
	assert_int_equal(r.status, 124);	/* timed out */
	assert_non_null(strstr(r.err, "'dur': not all confirmed within 0.3 s "
				      "(published 2, 0 confirmed before;"));
	free(r.err);
	/* the daemon journals "b" once it runs again */
	journal_when(bus, "dur", 1002);

	/* the same with the default 30 s: a Ctrl-C during the wait for
	 * confirms ends it at once, with what was confirmed */
	assert_int_equal(pipe2(in, O_CLOEXEC), 0);
	assert_int_equal(pipe2(ep, O_CLOEXEC), 0);
	kid = cli_spawnv(in[0], -1, ep[1], DARGS(d, "pub", "dur"));
	close(in[0]);
	close(ep[1]);
	assert_int_equal(write(in[1], "a2\n", 3), 3);
	journal_when(bus, "dur", 1003);
	assert_int_equal(kill(d->pid, SIGSTOP), 0);
	assert_int_equal(write(in[1], "b2\n", 3), 3);
	close(in[1]);
	usleep(300000);		/* it waits for the confirm */
	{
		int64_t t0 = t_now_ns();

		assert_int_equal(kill(kid, SIGINT), 0);
		r.err = slurp(ep[0], NULL);
		close(ep[0]);
		r.status = t_wait(kid, 20000);
		print_message("pub waiting for confirms, Ctrl-C: exit %d after "
			      "%.2f s: %s", r.status, (t_now_ns() - t0) / 1e9,
			      r.err);
		assert_true(t_now_ns() - t0 < 2000000000LL);
	}
	assert_int_equal(kill(d->pid, SIGCONT), 0);
	assert_int_equal(r.status, 130);
	assert_non_null(strstr(r.err, "published 2 messages to dur, 0 "
				      "confirmed before the interruption"));
	free(r.err);
	/* b2 is journaled once the daemon runs again: not lost */
	journal_when(bus, "dur", 1004);

	/* Ctrl-C: reading stops, what was read is confirmed, exit 130 */
	assert_int_equal(pipe2(in, O_CLOEXEC), 0);
	assert_int_equal(pipe2(ep, O_CLOEXEC), 0);
	kid = cli_spawnv(in[0], -1, ep[1], DARGS(d, "pub", "dur"));
	close(in[0]);
	close(ep[1]);
	assert_int_equal(write(in[1], "c\nd\ne\n", 6), 6);
	journal_when(bus, "dur", 1007);
	assert_int_equal(kill(kid, SIGINT), 0);
	r.err = slurp(ep[0], NULL);
	close(ep[0]);
	r.status = t_wait(kid, 20000);
	close(in[1]);
	print_message("pub, Ctrl-C: exit %d: %s", r.status, r.err);
	assert_int_equal(r.status, 130);
	assert_string_equal(r.err, "published 3 messages to dur, 3 "
				   "confirmed (interrupted)\n");
	free(r.err);
}

/* pub waiting for room in a durable queue's full intake (the daemon,
 * stopped, does not drain it): Ctrl-C ends the wait, and once the daemon
 * runs again what went in is confirmed. The queue goes afterwards. */
static void durable_pub_full_queue(const struct dur_daemon *d,
				   struct shmbus *bus)
{
	struct shmbus_queue_info qi;
	char want[256];
	unsigned long n;
	uint64_t depth = 0;
	struct result r;
	int in[2], ep[2];
	pid_t kid;

	r = cli_run(-1, -1, DARGS(d, "queue", "declare", "small", "--durable",
				  "--max-len", "4"));
	assert_int_equal(r.status, 0);
	result_free(&r);
	assert_int_equal(pipe2(in, O_CLOEXEC), 0);
	assert_int_equal(pipe2(ep, O_CLOEXEC), 0);
	kid = cli_spawnv(in[0], -1, ep[1], DARGS(d, "pub", "small"));
	close(in[0]);
	close(ep[1]);
	assert_int_equal(write(in[1], "x\n", 2), 2);
	journal_when(bus, "small", 1);	/* attached, and its first one in */
	assert_int_equal(kill(d->pid, SIGSTOP), 0);
	for (int i = 0; i < 63; i++)
		assert_int_equal(write(in[1], "x\n", 2), 2);
	/* the intake is full: the depth stops growing */
	for (int i = 0; i < 5000; i++) {
		assert_int_equal(shmbus__queue_info(bus, "small", &qi), 0);
		if (i % 200 == 199 && qi.depth > 1 && qi.depth == depth)
			break;
		if (i % 200 == 0)
			depth = qi.depth;
		usleep(1000);
	}
	print_message("full at depth %llu\n", (unsigned long long)qi.depth);
	assert_true(qi.depth > 1 && qi.depth < 64);
	assert_int_equal(kill(kid, SIGINT), 0);
	usleep(300000);		/* pub stopped waiting, and waits for confirms */
	assert_int_equal(kill(d->pid, SIGCONT), 0);
	r.err = slurp(ep[0], NULL);
	close(ep[0]);
	r.status = t_wait(kid, 20000);
	close(in[1]);
	print_message("pub, full queue, Ctrl-C: exit %d: %s", r.status, r.err);
	assert_int_equal(r.status, 130);
	/* it said once that it waits; then all it could put in, each
	 * confirmed, not the 64 it was given */
	n = (unsigned long)qi.depth;
	snprintf(want, sizeof(want), "shmbus: pub: queue 'small' is full: "
		 "waiting for room (published %lu so far; --timeout limits "
		 "the wait, Ctrl-C stops)\npublished %lu messages to small, "
		 "%lu confirmed (interrupted)\n", n, n, n);
	assert_string_equal(r.err, want);
	free(r.err);
	r = cli_run(-1, -1, DARGS(d, "queue", "delete", "small"));
	assert_int_equal(r.status, 0);
	result_free(&r);
}

static void test_durable(void **state)
{
	struct dur_daemon d;
	struct shmbus *bus;
	struct result r;

	(void)state;
	snprintf(d.sock, sizeof(d.sock), "%s/dur.sock", t_dir);
	snprintf(d.state, sizeof(d.state), "%s/state", t_dir);
	bus_name = DBUS;
	dur_daemon_start(&d);
	durable_declare(&d);
	bus = dur_open(&d);
	durable_pub_stat(&d, bus);
	durable_pub_stop(&d, bus);
	durable_pub_full_queue(&d, bus);
	shmbus__close(bus);
	/* a persistent subscription: made by sub, fed by a topic */
	r = cli_run(-1, -1, DARGS(&d, "sub", "ev.*", "--group", "keep",
				  "--persistent", "--timeout", "0.1"));
	assert_int_equal(r.status, 0);
	result_free(&r);
	r = cli_run(-1, -1, DARGS(&d, "sub", "ev.*", "--topic",
				  "--persistent", "--timeout", "0.1"));
	assert_int_equal(r.status, 2);	/* --persistent needs --group */
	assert_non_null(strstr(r.err, "need --group"));
	result_free(&r);
	r = cli_run(-1, -1, DARGS(&d, "topic", "declare", "ev.a"));
	assert_int_equal(r.status, 0);
	result_free(&r);
	r = cli_run(-1, -1, DARGS(&d, "pub", "ev.a", "kept"));
	assert_int_equal(r.status, 0);
	result_free(&r);
	/* a topic's publisher gets no confirm: the copy is the
	 * subscription's once the daemon journaled it (on a loaded
	 * machine that once came after the kill below) */
	bus = dur_open(&d);
	for (int i = 0; i < 5000; i++) {
		SHMBUS_OPTS(shmbus_journal_info, ji);

		if (!shmbus__queue_journal(bus, "ev.*#keep", &ji) && ji.live)
			break;
		usleep(1000);
	}
	shmbus__close(bus);

	/* everything gone, the daemon too: the next one recovers the bus
	 * from the journal, and stat and metrics say so */
	dur_daemon_kill(&d);
	dur_daemon_start(&d);
	r = cli_run(-1, -1, DARGS(&d, "stat"));
	print_message("%s", r.out);
	assert_int_equal(r.status, 0);
	/* the queue's 1007 and the subscription's one */
	assert_non_null(strstr(r.out, "\nrecovered 1008 messages from the "
				      "journals in "));
	result_free(&r);
	r = cli_run(-1, -1, DARGS(&d, "metrics"));
	assert_int_equal(r.status, 0);
	assert_exposition(r.out);
	assert_int_equal(sample(r.out, "shmbus_bus_recovered_messages{bus=\""
				DBUS "\"} "), 1008);
	assert_int_equal(sample(r.out, "shmbus_journal_live_messages{bus=\""
				DBUS "\",queue=\"dur\"} "), 1007);
	result_free(&r);
	r = cli_run(-1, -1, DARGS(&d, "sub", "ev.*", "--group", "keep",
				  "--persistent", "-n", "1", "--timeout", "5"));
	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, "kept\n");
	result_free(&r);
	kill(d.pid, SIGTERM);
	for (int i = 0; i < 10000 && t_pid_running(d.pid); i++)
		usleep(1000);
	bus_name = BUS;
}

/* What test_durable_full leaves when it fails: its daemon, its mount. */
static struct dur_daemon full_daemon;
static char full_mnt[PATH_MAX];

static int durable_full_teardown(void **state)
{
	(void)state;
	if (full_daemon.pid > 0 && t_pid_running(full_daemon.pid))
		dur_daemon_kill(&full_daemon);
	full_daemon.pid = 0;
	if (full_mnt[0]) {
		/* the daemon's files are closed once it is gone */
		for (int i = 0; i < 1000 && umount(full_mnt); i++)
			usleep(1000);
		full_mnt[0] = '\0';
	}
	bus_name = BUS;
	return 0;
}

/* A state directory that fills up: the daemon cannot journal, pub exits
 * 1 with the reason and the counts, metrics counts the failures. */
static void test_durable_full(void **state)
{
	struct dur_daemon *d = &full_daemon;
	char path[PATH_MAX], big[1001];
	struct result r;
	FILE *f;
	int fd;

	(void)state;
	snprintf(d->sock, sizeof(d->sock), "%s/full.sock", t_dir);
	snprintf(d->state, sizeof(d->state), "%s/full", t_dir);
	assert_int_equal(mkdir(d->state, 0700), 0);
	if (mount("shmbus-test", d->state, "tmpfs", 0,
		  "size=300k,mode=0700") < 0)
		SKIP_OR_FAIL("cannot mount a tmpfs: %s", strerror(errno));
	snprintf(full_mnt, sizeof(full_mnt), "%s", d->state);
	bus_name = DBUS;
	dur_daemon_start(d);
	r = cli_run(-1, -1, DARGS(d, "queue", "declare", "full", "--durable",
				  "--max-len", "4096"));
	assert_int_equal(r.status, 0);
	result_free(&r);
	/* 2 MB of messages for 300 kB */
	snprintf(path, sizeof(path), "%s/full-lines", t_dir);
	f = fopen(path, "w+");
	assert_non_null(f);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	for (int i = 0; i < 2000; i++)
		fprintf(f, "%s\n", big);
	assert_int_equal(fflush(f), 0);
	fd = dup(fileno(f));
	fclose(f);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	r = cli_run(fd, -1, DARGS(d, "pub", "full"));
	close(fd);
	print_message("pub to a full disk: exit %d: %s", r.status, r.err);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "shmbus: pub: 'full': not all "
				      "confirmed: No space left on device "
				      "(published "));
	result_free(&r);
	r = cli_run(-1, -1, DARGS(d, "metrics"));
	assert_int_equal(r.status, 0);
	assert_true(sample(r.out, "shmbus_journal_failed_total{bus=\"" DBUS
			   "\",queue=\"full\"} ") > 0);
	result_free(&r);
	durable_full_teardown(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sub_kill9_file),
		cmocka_unit_test(test_sub_kill9_pipe),
		cmocka_unit_test(test_sub_dev_full),
		cmocka_unit_test(test_sub_reader_gone),
		cmocka_unit_test(test_sub_head),
		cmocka_unit_test(test_reply_exec_false),
		cmocka_unit_test(test_reply_exec_retry),
		cmocka_unit_test(test_reply_exec_error),
		cmocka_unit_test(test_capacity_visible),
		cmocka_unit_test(test_pub_read_errors),
		cmocka_unit_test(test_sub_exec),
		cmocka_unit_test(test_exit_codes),
		cmocka_unit_test(test_error_messages),
		cmocka_unit_test(test_delayed_visible),
		cmocka_unit_test(test_daemon_std_fds),
		cmocka_unit_test(test_output_errors),
		cmocka_unit_test(test_no_daemon),
		cmocka_unit_test(test_invalid_names),
		cmocka_unit_test(test_escaped_names),
		cmocka_unit_test(test_durable),
		cmocka_unit_test_teardown(test_durable_full,
					  durable_full_teardown),
	};

	find_cli();
	signal(SIGPIPE, SIG_IGN);
	return T_RUN_WITH_DAEMON("cli", tests);
}
