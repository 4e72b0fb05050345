// SPDX-License-Identifier: MIT
/*
 * daemon.c - the private shmbusd of shmbus-bench-durable: a child of ours
 * (not --daemonize, so that its pid is the one we forked and stop), on a
 * socket in a temporary directory, with --state-dir in a temporary
 * directory under dcfg.dir, which must be on a real disk for the syncs
 * to mean anything. The recovery run kills it with SIGKILL and starts a
 * successor on the same socket and state directory. Everything is
 * removed at exit; the log is kept when the run failed.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dbench.h"

static char run_dir[48];		/* socket and log; ours to remove */
static char state_parent[288];		/* under dcfg.dir; ours to remove */
static char state_dir[320];
static char sock_path[96];
static char log_path[96];
static pid_t dpid;

pid_t d_daemon_pid(void)
{
	return dpid;
}

const char *d_state_dir(void)
{
	return state_dir;
}

const char *d_daemon_log(void)
{
	return log_path;
}

static void dirs_make(void)
{
	if (run_dir[0])
		return;
	if (bench_mkdtemp(run_dir, sizeof(run_dir), "/tmp") < 0)
		die("mkdtemp in /tmp: %s", strerror(errno));
	snprintf(sock_path, sizeof(sock_path), "%s/shmbusd.sock", run_dir);
	snprintf(log_path, sizeof(log_path), "%s/shmbusd.log", run_dir);
	if (bench_mkdtemp(state_parent, sizeof(state_parent), dcfg.dir) < 0)
		die("mkdtemp in %s: %s", dcfg.dir, strerror(errno));
	snprintf(state_dir, sizeof(state_dir), "%s/state", state_parent);
	/* the children open the bus through it, never autostarting one */
	if (setenv("SHMBUS_SOCKET", sock_path, 1) < 0)
		die("setenv: %s", strerror(errno));
}

/* Start shmbusd and wait until it accepts connections. */
void d_daemon_start(void)
{
	dirs_make();
	dpid = bench_daemon_start(sock_path, state_dir, log_path);
}

void d_daemon_kill9(void)
{
	bench_reap(dpid, SIGKILL);
	dpid = 0;
}

void d_daemon_stop(void)
{
	bench_reap(dpid, SIGTERM);
	dpid = 0;
}

/* atexit and fatal signals: stop the daemon, remove what we made (the
 * log stays when the run failed). */
void d_daemon_cleanup(void)
{
	d_daemon_stop();
	if (state_parent[0]) {
		bench_rm_rf(state_parent);
		state_parent[0] = '\0';
	}
	if (!run_dir[0])
		return;
	unlink(sock_path);
	if (!d_run_ok) {
		fprintf(stderr, "shmbus-bench-durable: daemon log kept in "
			"%s\n", log_path);
		return;
	}
	bench_rm_rf(run_dir);
	run_dir[0] = '\0';
}

/*
 * Open bus @name on our daemon, never starting another. @create: make it
 * with room for the cells (pools for 1024-slot queues and their intakes
 * of 4 KiB messages, and the consumers' prefetch) or, for the recovery
 * bus, for 1 M small messages journaled and queued at once.
 */
struct shmbus *d_bus_open(const char *name, bool create)
{
	SHMBUS_OPTS(shmbus_open_opts, o, .flags = SHMBUS_OPEN_NOSTART,
		    .ring_bytes = 16u << 20, .nr_pools = 2,
		    .pools = { { 256, 16384 }, { 4096, 8192 } });
	bool recovery = !strcmp(name, D_RECOVERY_BUS);
	struct shmbus *bus;

	if (!create)
		o.flags |= SHMBUS_OPEN_NOCREATE;
	if (recovery) {
		o.ring_bytes = 256u << 20;
		o.nr_pools = 1;
		o.pools[0].payload = 256;
		o.pools[0].count = (uint32_t)(dcfg.recovery_msgs +
					      dcfg.recovery_msgs / 10);
	}
	bus = shmbus__open(name, &o);
	if (!bus)
		die("opening bus '%s' on %s: %s %s", name, sock_path,
		    strerror(errno), shmbus_errmsg());
	return bus;
}
