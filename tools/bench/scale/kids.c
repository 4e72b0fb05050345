// SPDX-License-Identifier: MIT
/*
 * kids.c - the processes of one measurement and what they share: the
 * shared memory (a header and per-sequence arrays), forking pinned
 * children that open their own bus handle, waiting for them (a child
 * that fails fails the run), and the bus each sweep creates for itself
 * and deletes after it.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "scale.h"
#include "barrier.h"

struct scale_sh *ssh;
uint32_t *s_seen;
uint64_t *s_lat;
uint64_t *s_recv;
uint64_t *s_samples;

struct shmbus *sbus;
char sbus_name[32];

static pid_t kids[S_MAX_KIDS];
static char kid_label[S_MAX_KIDS][48];
static unsigned nkids;

static char alarm_msg[128];
static size_t alarm_msg_len;

void s_map(uint64_t nseq, uint64_t nsamples)
{
	size_t len = sizeof(*ssh) + nseq * (sizeof(*s_seen) +
		     sizeof(*s_lat) + sizeof(*s_recv)) +
		     nsamples * sizeof(*s_samples) + 64;
	char *p = map_shared(len);

	ssh = (struct scale_sh *)p;
	p += (sizeof(*ssh) + 63) & ~(size_t)63;
	s_lat = (uint64_t *)p;
	p += nseq * sizeof(*s_lat);
	s_recv = (uint64_t *)p;
	p += nseq * sizeof(*s_recv);
	s_samples = (uint64_t *)p;
	p += nsamples * sizeof(*s_samples);
	s_seen = (uint32_t *)p;
}

void s_reset(uint64_t nseq)
{
	memset(ssh, 0, sizeof(*ssh));
	memset(s_seen, 0, nseq * sizeof(*s_seen));
	memset(s_lat, 0, nseq * sizeof(*s_lat));
	memset(s_recv, 0, nseq * sizeof(*s_recv));
}

static void pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) < 0)
		die("sched_setaffinity(CPU %d): %s", cpu, strerror(errno));
}

static void kid_alarm(int sig)
{
	ssize_t n = write(STDERR_FILENO, alarm_msg, alarm_msg_len);

	(void)n;
	_exit(124);
}

void s_spawn(const char *label, int cpu, void (*fn)(long), long arg)
{
	pid_t pid;

	if (nkids == S_MAX_KIDS)
		die("more than %d children", S_MAX_KIDS);
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (!pid) {
		struct sigaction sa = { .sa_handler = kid_alarm };

		/* the parent's handlers kill its children and its daemon */
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		alarm_msg_len = (size_t)snprintf(alarm_msg, sizeof(alarm_msg),
			"shmbus-bench-scale: %s: timed out after %d s\n",
			label, S_KID_TIMEOUT_S);
		if (alarm_msg_len >= sizeof(alarm_msg))
			alarm_msg_len = sizeof(alarm_msg) - 1;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGALRM, &sa, NULL);
		alarm(S_KID_TIMEOUT_S);
		pin(cpu);
		/* our own handle: the parent's must not cross fork */
		sbus = shmbus__open(sbus_name, NULL);
		if (!sbus)
			die("%s: opening bus %s: %s", label, sbus_name,
			    strerror(errno));
		fn(arg);
		shmbus__close(sbus);
		_exit(0);
	}
	snprintf(kid_label[nkids], sizeof(kid_label[0]), "%s", label);
	kids[nkids++] = pid;
}

void s_wait_all(void)
{
	int bad = -1, bad_st = 0;

	for (unsigned k = 0; k < nkids; k++) {
		int st;

		while (waitpid(kids[k], &st, 0) < 0)
			if (errno != EINTR)
				die("waitpid: %s", strerror(errno));
		kids[k] = 0;
		if ((!WIFEXITED(st) || WEXITSTATUS(st)) && bad < 0) {
			bad = (int)k;
			bad_st = st;
			/* the others may wait for it for ever */
			s_kill_all();
		}
	}
	if (bad >= 0) {
		nkids = 0;
		if (WIFSIGNALED(bad_st))
			die("%s: killed by signal %d", kid_label[bad],
			    WTERMSIG(bad_st));
		die("%s failed (exit %d)", kid_label[bad],
		    WEXITSTATUS(bad_st));
	}
	nkids = 0;
}

/* Async-signal-safe: also from the fatal signal handler. */
void s_kill_all(void)
{
	for (unsigned k = 0; k < nkids; k++)
		if (kids[k] > 0)
			kill(kids[k], SIGKILL);
}

void s_bus_open(const char *name, const struct shmbus_open_opts *o)
{
	struct shmbus_open_opts eo = *o;

	snprintf(sbus_name, sizeof(sbus_name), "%s", name);
	/* a bus of that name left by a run that was killed has another
	 * geometry: start from a new one */
	shmbus__bus_delete(name, SHMBUS_BUS_DELETE_FORCE, NULL, NULL);
	eo.flags |= SHMBUS_OPEN_EXCL;
	sbus = shmbus__open(name, &eo);
	if (!sbus)
		die("creating bus %s: %s (%s)", name, strerror(errno),
		    shmbus_errmsg());
}

void s_bus_done(void)
{
	int err;

	shmbus__close(sbus);
	sbus = NULL;
	/* its arena goes now, not at the daemon's exit: the next sweep's
	 * bus is measured without it in memory */
	err = shmbus__bus_delete(sbus_name, 0, NULL, NULL);
	if (err < 0)
		die("deleting bus %s: %s", sbus_name, strerror(-err));
}

void s_declare(const char *q, uint32_t max_len, uint32_t msg_size,
	       uint32_t max_consumers)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_len = max_len,
		    .msg_size = msg_size, .max_consumers = max_consumers);
	int err = shmbus__queue_declare(sbus, q, &qo);

	if (err < 0)
		die("declaring queue %s: %s (%s)", q, strerror(-err),
		    shmbus_errmsg());
}

/* The parent sleeps: with more children than CPUs, spinning here would
 * take a CPU from the children that are attaching. */
void s_wait_ready(uint32_t n)
{
	while (smp_load_acquire(&ssh->ready) < n)
		usleep(200);
}

void s_ready(void)
{
	atomic_fetch_add(&ssh->ready, 1);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

uint64_t s_quantile(uint64_t *v, uint64_t n, double q)
{
	uint64_t i;

	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_u64);
	i = (uint64_t)(q * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}
