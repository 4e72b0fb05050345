// SPDX-License-Identifier: MIT
/*
 * daemon.c - the bus the benchmark runs on. Unless SHMBUS_SOCKET names
 * the caller's daemon, a private shmbusd on a socket in a temporary
 * directory: libshmbus starts it when the bus is first opened; at exit it
 * is stopped and its files are removed (its log is kept when the run
 * failed). Also the parent's handle on the bus and the two queues of the
 * channels, declared once for the whole run.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

struct shmbus *bench_bus;		/* the parent's, then each child's */
const char *const queue_names[NR_CHAN] = { "ping", "pong" };
const char *const sum_queue_names[NR_CHAN] = { "ping.sum", "pong.sum" };

static char tmp_dir[64];		/* ours to remove; empty if not */
static char sock_path[128];
static pid_t daemon_pid;

static void path_of(char *buf, size_t len, const char *suffix)
{
	snprintf(buf, len, "%s%s", sock_path, suffix);
}

static pid_t read_daemon_pid(void)
{
	char path[160], comm[32] = "", buf[32] = "";
	long pid;
	FILE *f;

	path_of(path, sizeof(path), ".lock");
	f = fopen(path, "r");
	if (!f)
		return 0;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	pid = strtol(buf, NULL, 10);
	if (pid <= 1)
		return 0;
	/* make sure that pid is still a shmbusd */
	snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	if (!fgets(comm, sizeof(comm), f))
		comm[0] = '\0';
	fclose(f);
	return strncmp(comm, "shmbusd", 7) ? 0 : (pid_t)pid;
}

static void stop_daemon(void)
{
	struct timespec ts = { 0, 10 * 1000 * 1000 };

	if (daemon_pid <= 0)
		return;
	kill(daemon_pid, SIGTERM);
	for (int i = 0; i < 300 && !bench_pid_gone(daemon_pid); i++)
		nanosleep(&ts, NULL);
	if (!bench_pid_gone(daemon_pid)) {
		fprintf(stderr, "shmbus-bench: shmbusd %d ignored SIGTERM; "
			"killing it\n", (int)daemon_pid);
		kill(daemon_pid, SIGKILL);
	}
	daemon_pid = 0;
}

/* @run_ok: the daemon's log is not needed. */
static void remove_tmp_dir(bool run_ok)
{
	char path[160];

	if (!tmp_dir[0])
		return;
	unlink(sock_path);
	path_of(path, sizeof(path), ".lock");
	unlink(path);
	/* the daemon's registry of the buses it holds, for its successor */
	path_of(path, sizeof(path), ".buses");
	unlink(path);
	path_of(path, sizeof(path), ".log");
	if (!run_ok) {
		fprintf(stderr, "shmbus-bench: daemon log kept in %s\n", path);
		return;
	}
	unlink(path);
	if (rmdir(tmp_dir) < 0)
		fprintf(stderr, "shmbus-bench: rmdir %s: %s\n", tmp_dir,
			strerror(errno));
}

/* The socket: SHMBUS_SOCKET's, else one in a new temporary directory,
 * exported so that libshmbus starts our own daemon there. */
void setup_socket(void)
{
	const char *env = getenv("SHMBUS_SOCKET");

	if (env && *env) {
		snprintf(sock_path, sizeof(sock_path), "%s", env);
		return;	/* the caller's daemon: not ours to stop */
	}
	snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/shmbus-bench.XXXXXX");
	if (!mkdtemp(tmp_dir)) {
		tmp_dir[0] = '\0';
		die("mkdtemp: %s", strerror(errno));
	}
	snprintf(sock_path, sizeof(sock_path), "%s/shmbusd.sock", tmp_dir);
	if (setenv("SHMBUS_SOCKET", sock_path, 1) < 0)
		die("setenv: %s", strerror(errno));
}

/* Open the bus (which starts our daemon), find that daemon's pid, and
 * declare the queues of the channels. */
void setup_bus(void)
{
	SHMBUS_OPTS(shmbus_queue_opts, q, .max_len = RING_SLOTS,
		    .msg_size = MAX_MSG);
	SHMBUS_OPTS(shmbus_queue_opts, qs, .max_len = RING_SLOTS,
		    .msg_size = MAX_MSG, .flags = SHMBUS_QUEUE_CHECKSUM);
	bool ours = tmp_dir[0];

	bench_bus = shmbus__open(BUS_NAME, NULL);
	if (!bench_bus)
		die("opening bus '%s' at %s: %s", BUS_NAME, sock_path,
		    strerror(errno));
	if (ours) {
		daemon_pid = read_daemon_pid();
		if (!daemon_pid)
			fprintf(stderr, "shmbus-bench: cannot find the pid of "
				"the daemon we started (%s.lock)\n",
				sock_path);
	}
	for (int c = 0; c < NR_CHAN; c++) {
		int err = shmbus__queue_declare(bench_bus, queue_names[c], &q);

		if (err < 0)
			die("declaring queue '%s': %s", queue_names[c],
			    strerror(-err));
		err = shmbus__queue_declare(bench_bus, sum_queue_names[c], &qs);
		if (err < 0)
			die("declaring queue '%s': %s", sum_queue_names[c],
			    strerror(-err));
	}
}

const char *bus_socket(void)
{
	return sock_path;
}

/* From a signal handler: only async-signal-safe calls. */
void signal_daemon(void)
{
	if (daemon_pid > 0)
		kill(daemon_pid, SIGTERM);
}

/* At exit, in the parent: close our handle, stop our daemon, remove its
 * files (@run_ok: its log too). */
void teardown_bus(bool run_ok)
{
	shmbus__close(bench_bus);
	bench_bus = NULL;
	stop_daemon();
	remove_tmp_dir(run_ok);
}
