// SPDX-License-Identifier: MIT
/*
 * run.c - the parent's side of the measurements. One measurement
 * (run_one): empty channels prepared, the two children forked, a timeout
 * over both, both collected, and either child's failure fatal. The matrix
 * (run_size): for one message size, each repetition runs the round trip
 * and the one-way throughput of every transport and mode that is on, and
 * adds what the children measured to cells[][][]; and the options that
 * shape the matrix, which shmbus-bench and shmbus-bench-peers share.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "barrier.h"

struct cell cells[NR_SIZES][NR_TP][NR_MODES];
void (*rtt_samples_hook)(int si, enum tp tp, enum mode m, unsigned rep);

bool matrix_opt(int opt, const char *arg, bool *size, bool *mode)
{
	char *end;
	long v;

	switch (opt) {
	case 'q':
		cfg.quick = true;
		cfg.rtt_busy /= 10;
		cfg.rtt_block /= 10;
		cfg.tput[0] /= 10;
		cfg.tput[1] /= 10;
		return true;
	case 'r':
		v = strtol(arg, &end, 10);
		if (*end || v < 1 || v > MAX_REPS)
			die("--reps: want 1..%d", MAX_REPS);
		cfg.reps = (unsigned)v;
		return true;
	case 's':
		*size = true;
		cfg.size_on[bench_size_arg(arg)] = true;
		return true;
	case 'm':
		*mode = true;
		if (!strcmp(arg, "busy"))
			cfg.mode_on[MODE_BUSY] = true;
		else if (!strcmp(arg, "block"))
			cfg.mode_on[MODE_BLOCK] = true;
		else
			die("--mode: want busy or block");
		return true;
	}
	return false;
}

/* ------------------------------------------------------------------ */
/* One measurement                                                    */
/* ------------------------------------------------------------------ */

static volatile sig_atomic_t kids[2];	/* pids, read by the alarm handler */

void kill_kids(void)
{
	for (int i = 0; i < 2; i++)
		if (kids[i] > 0)
			kill(kids[i], SIGKILL);
}

/* After kill_kids(), at exit: wait for them, so that nothing they held
 * (a server's registration of them) outlives them as a zombie. */
void reap_kids(void)
{
	for (int i = 0; i < 2; i++) {
		if (kids[i] <= 0)
			continue;
		while (waitpid(kids[i], NULL, 0) < 0 && errno == EINTR)
			;
		kids[i] = 0;
	}
}

void parent_alarm(int sig)
{
	static const char msg[] =
		"shmbus-bench: a measurement outlived its children's "
		"timeout; killing them\n";
	ssize_t n = write(STDERR_FILENO, msg, sizeof(msg) - 1);

	(void)n;
	kill_kids();
}

static void describe_status(int st, char *buf, size_t len)
{
	if (WIFEXITED(st) && WEXITSTATUS(st) == 124)
		snprintf(buf, len, "timed out");
	else if (WIFEXITED(st))
		snprintf(buf, len, "exit status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(st),
			 strsignal(WTERMSIG(st)));
	else
		snprintf(buf, len, "status 0x%x", st);
}

/* Wait for both children; if one fails, kill the other. */
static void wait_kids(const struct run *r)
{
	char why[64];
	int st, left = 2, failed = -1, fst = 0;

	while (left) {
		pid_t pid = waitpid(-1, &st, 0);
		int i;

		if (pid < 0) {
			if (errno == EINTR)
				continue;
			die("waitpid: %s", strerror(errno));
		}
		i = pid == kids[0] ? 0 : pid == kids[1] ? 1 : -1;
		if (i < 0)
			continue;	/* not ours to track */
		kids[i] = 0;
		left--;
		if ((!WIFEXITED(st) || WEXITSTATUS(st)) && failed < 0) {
			failed = i;
			fst = st;
			kill_kids();
		}
	}
	alarm(0);
	if (failed >= 0) {
		describe_status(fst, why, sizeof(why));
		die("%s: child %d failed (%s)", r->label, failed, why);
	}
}

static void run_one(const struct run *r)
{
	const struct transport *t = &transports[r->tp];
	int err;

	WRITE_ONCE(sh->ready, 0);	/* no child runs yet */
	sh->elapsed_ns = 0;
	sh->nsamples = 0;
	err = t->prepare(r, r->rtt ? NR_CHAN : 1);
	if (err)
		die("%s: preparing %s: %s", r->label, t->name,
		    strerror(-err));
	fflush(NULL);
	for (int role = 0; role < 2; role++) {
		pid_t pid = fork();

		if (pid < 0) {
			kill_kids();
			die("fork: %s", strerror(errno));
		}
		if (pid == 0)
			child_main(r, role);
		kids[role] = pid;
	}
	prep_fds_close();
	alarm(PARENT_TIMEOUT_S);
	wait_kids(r);
}

/* ------------------------------------------------------------------ */
/* Running the matrix                                                 */
/* ------------------------------------------------------------------ */

/* A row is measured: its transport and mode are on, and the mode means
 * something for the transport. */
bool row_runs(enum tp tp, enum mode m)
{
	return cfg.tp_on[tp] && cfg.mode_on[m] &&
	       (m == MODE_BLOCK || transports[tp].has_busy);
}

static void run_rtt(int si, enum tp tp, enum mode m, unsigned rep)
{
	struct cell *c = &cells[si][tp][m];
	struct run r = {
		.tp = tp, .mode = m, .size = sizes[si], .rtt = true,
		.count = m == MODE_BUSY ? cfg.rtt_busy : cfg.rtt_block,
	};
	struct rtt_stat s;

	r.warm = r.count / 10;
	snprintf(r.label, sizeof(r.label), "%s %s %zu B RTT",
		 transports[tp].name, mode_names[m], r.size);
	if (r.count > sh_max_samples)
		die("%s: %" PRIu64 " trips do not fit", r.label, r.count);
	run_one(&r);
	s = rtt_from_samples();
	c->rtt[c->nrtt++] = s;
	if (rtt_samples_hook)
		rtt_samples_hook(si, tp, m, rep);
	fprintf(stderr, "  [rep %u] %-24s p50 %8.2f us  p99 %8.2f us\n",
		rep + 1, r.label, s.p50, s.p99);
}

static void run_tput(int si, enum tp tp, enum mode m, unsigned rep)
{
	struct cell *c = &cells[si][tp][m];
	struct run r = {
		.tp = tp, .mode = m, .size = sizes[si], .rtt = false,
		.count = cfg.tput[si],
	};
	double rate;

	r.warm = r.count / 10;
	snprintf(r.label, sizeof(r.label), "%s %s %zu B one-way",
		 transports[tp].name, mode_names[m], r.size);
	run_one(&r);
	if (!sh->elapsed_ns)
		die("%s: no elapsed time came back", r.label);
	rate = (double)r.count * 1e9 / (double)sh->elapsed_ns;
	c->tput[c->ntput++] = rate;
	fprintf(stderr, "  [rep %u] %-24s %10.0f msg/s\n", rep + 1, r.label,
		rate);
}

/* Repetitions outermost: the reps of one row are spread over the run. */
void run_size(int si)
{
	for (unsigned rep = 0; rep < cfg.reps; rep++) {
		fprintf(stderr, "%zu B messages, repetition %u of %u\n",
			sizes[si], rep + 1, cfg.reps);
		for (int tp = 0; tp < NR_TP; tp++) {
			for (int m = 0; m < NR_MODES; m++) {
				if (!row_runs(tp, m))
					continue;
				run_rtt(si, tp, m, rep);
				run_tput(si, tp, m, rep);
			}
		}
	}
}
