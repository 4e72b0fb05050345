// SPDX-License-Identifier: MIT
/*
 * proc.c - what the benchmark programs (shmbus-bench and its -durable,
 * -bridge, -peers and -scale siblings) need of their processes: which one
 * is the parent, dying with a message (the parent exits, a child _exits),
 * the two CPUs they pin to, memory shared with the children they fork,
 * temporary directories, and a private shmbusd started as a child.
 */
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

pid_t bench_main_pid;

bool in_parent(void)
{
	return getpid() == bench_main_pid;
}

void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", program_invocation_short_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (in_parent())
		exit(1);
	_exit(1);
}

void *map_shared(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		die("mmap %zu bytes: %s", len, strerror(errno));
	return p;
}

/* A new directory PROGRAM.XXXXXX in @parent. */
int bench_mkdtemp(char *buf, size_t len, const char *parent)
{
	if ((size_t)snprintf(buf, len, "%s/%s.XXXXXX", parent,
			     program_invocation_short_name) >= len) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if (mkdtemp(buf))
		return 0;
	buf[0] = '\0';
	return -1;
}

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	if (remove(path) < 0)
		fprintf(stderr, "%s: remove %s: %s\n",
			program_invocation_short_name, path, strerror(errno));
	return 0;
}

void bench_rm_rf(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Program @name beside us in the build tree's (or the installation's)
 * bin. */
void bench_exe_path(char *buf, size_t len, const char *name)
{
	char self[PATH_MAX - 64];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (n <= 0)
		die("readlink /proc/self/exe: %s", strerror(errno));
	self[n] = '\0';
	*strrchr(self, '/') = '\0';
	snprintf(buf, len, "%s/%s", self, name);
}

static bool daemon_accepts(const char *sock)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	bool ok;

	if (fd < 0)
		die("socket: %s", strerror(errno));
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	ok = !connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	return ok;
}

/* Start shmbusd as our child (not --daemonize, so that the pid is the one
 * we forked and stop) on @sock, with @state_dir (NULL: none), logging to
 * @log; its pid once it accepts connections. */
pid_t bench_daemon_start(const char *sock, const char *state_dir,
			 const char *log)
{
	char path[PATH_MAX];
	pid_t pid;

	bench_exe_path(path, sizeof(path), "shmbusd");
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (!pid) {
		if (state_dir)
			execl(path, "shmbusd", "--socket", sock, "--state-dir",
			      state_dir, "--log", log, (char *)NULL);
		else
			execl(path, "shmbusd", "--socket", sock, "--log", log,
			      (char *)NULL);
		fprintf(stderr, "exec %s: %s\n", path, strerror(errno));
		_exit(127);
	}
	for (int i = 0; i < 60000; i++) {
		int st;

		if (waitpid(pid, &st, WNOHANG) == pid)
			die("shmbusd exited before it listened (log %s)", log);
		if (daemon_accepts(sock))
			return pid;
		usleep(200);
	}
	kill(pid, SIGKILL);
	die("shmbusd did not listen on %s within 12 s", sock);
}

/* Signal our child @pid with @sig and reap it (it is our child: waitpid
 * is exact, no pid reuse to fear). */
void bench_reap(pid_t pid, int sig)
{
	if (pid <= 0)
		return;
	kill(pid, sig);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}

bool bench_pid_gone(pid_t pid)
{
	char path[64], buf[512];
	FILE *f;
	char *p;
	bool zombie = false;

	if (kill(pid, 0) < 0 && errno == ESRCH)
		return true;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return true;
	if (fgets(buf, sizeof(buf), f)) {
		/* "pid (comm) S ...": the state follows the last ')' */
		p = strrchr(buf, ')');
		zombie = p && p[1] == ' ' && p[2] == 'Z';
	}
	fclose(f);
	return zombie;
}

void bench_check_cpus(void)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set) < 0)
		die("sched_getaffinity: %s", strerror(errno));
	if (!CPU_ISSET(0, &set) || !CPU_ISSET(1, &set))
		die("needs CPU 0 and CPU 1 (allowed: %d CPUs)",
		    CPU_COUNT(&set));
}

/* --size: the index in sizes[] of 64 or 4096, or die(). */
int bench_size_arg(const char *arg)
{
	char s[24];

	for (int i = 0; i < NR_SIZES; i++) {
		snprintf(s, sizeof(s), "%zu", sizes[i]);
		if (!strcmp(arg, s))
			return i;
	}
	die("--size: want 64 or 4096");
}

static void fatal_signal(int sig)
{
	/* exit() runs the cleanup: stopping servers by pid and removing
	 * directories is not async-signal-safe, but the main thread is
	 * only ever waiting when a signal comes */
	exit(128 + sig);
}

/* @cleanup at exit, also after SIGINT, SIGTERM or SIGHUP; SIGPIPE
 * ignored (a server that went away is an error of a write). */
void bench_at_exit(void (*cleanup)(void))
{
	struct sigaction sa = { .sa_handler = fatal_signal };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (atexit(cleanup))
		die("atexit failed");
}

/* The first line of what shell command @cmd prints, in @buf; "?" if
 * none. */
const char *bench_cmd_line(char *buf, size_t len, const char *cmd)
{
	FILE *f = popen(cmd, "r");

	buf[0] = '\0';
	if (f) {
		if (!fgets(buf, (int)len, f))
			buf[0] = '\0';
		pclose(f);
	}
	buf[strcspn(buf, "\n")] = '\0';
	if (!buf[0])
		snprintf(buf, len, "?");
	return buf;
}
