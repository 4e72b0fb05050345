// SPDX-License-Identifier: MIT
/*
 * child.c - the two processes of one measurement, pinned to CPU 0 (role
 * 0) and CPU 1 (role 1): pinger and ponger for the round trip, producer
 * and consumer for one-way throughput. Each opens its ends of the
 * channels, meets the other at a start line in shared memory, runs its
 * loop, leaves its timings in shared memory and exits; a child that
 * fails or outlives CHILD_TIMEOUT_S exits non-zero.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "barrier.h"

static char alarm_msg[160];
static size_t alarm_msg_len;

static void child_alarm(int sig)
{
	ssize_t n = write(STDERR_FILENO, alarm_msg, alarm_msg_len);

	(void)n;
	_exit(124);
}

static void child_fail(const struct run *r, int role, const char *what,
		       int err)
{
	die("%s, child %d: %s: %s", r->label, role, what, strerror(-err));
}

void pin_cpu(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) < 0)
		die("sched_setaffinity(CPU %d): %s", cpu, strerror(errno));
}

static void start_line(void)
{
	atomic_fetch_add(&sh->ready, 1);
	while (smp_load_acquire(&sh->ready) < 2)
		cpu_relax();
}

static void end_open(const struct run *r, int role, struct end *e, int chan,
		     bool tx)
{
	const struct transport *t = &transports[r->tp];
	int err;

	e->size = r->size;
	e->block = r->mode == MODE_BLOCK;
	e->tx = tx;
	e->fd = -1;
	e->buf = aligned_alloc(CACHELINE, MAX_MSG);
	if (!e->buf)
		child_fail(r, role, "allocating a buffer", -ENOMEM);
	err = t->open(e, chan);
	if (err)
		child_fail(r, role, tx ? "opening the sender" :
					 "opening the receiver", err);
}

static void end_close(const struct run *r, struct end *e)
{
	if (!e->buf)
		return;
	transports[r->tp].close(e);
	free(e->buf);
	e->buf = NULL;
}

/* Role 0: send, wait for the echo, time each trip. */
static void rtt_ping(const struct run *r, struct end *tx, struct end *rx)
{
	const struct transport *t = &transports[r->tp];
	uint64_t n = r->warm + r->count;

	for (uint64_t i = 0; i < n; i++) {
		uint64_t t0 = now_ns(), t1;
		int err;

		err = t->send(tx, i);
		if (err)
			child_fail(r, 0, "send", err);
		err = t->recv(rx, i);
		if (err)
			child_fail(r, 0, "receive", err);
		t1 = now_ns();
		if (i >= r->warm)
			sh->samples[i - r->warm] = t1 - t0;
	}
	sh->nsamples = r->count;
}

/* Role 1: echo every message with a full message of the same size. */
static void rtt_pong(const struct run *r, struct end *tx, struct end *rx)
{
	const struct transport *t = &transports[r->tp];
	uint64_t n = r->warm + r->count;

	for (uint64_t i = 0; i < n; i++) {
		int err = t->recv(rx, i);

		if (err)
			child_fail(r, 1, "receive", err);
		err = t->send(tx, i);
		if (err)
			child_fail(r, 1, "send", err);
	}
}

static void tput_produce(const struct run *r, struct end *tx)
{
	const struct transport *t = &transports[r->tp];
	uint64_t n = r->warm + r->count;

	for (uint64_t i = 0; i < n; i++) {
		int err = t->send(tx, i);

		if (err)
			child_fail(r, 0, "send", err);
	}
}

/* The clock runs from the last warm-up message to the last message. */
static void tput_consume(const struct run *r, struct end *rx)
{
	const struct transport *t = &transports[r->tp];
	uint64_t n = r->warm + r->count, t0 = now_ns();

	for (uint64_t i = 0; i < n; i++) {
		int err = t->recv(rx, i);

		if (err)
			child_fail(r, 1, "receive", err);
		if (i + 1 == r->warm)
			t0 = now_ns();
	}
	sh->elapsed_ns = now_ns() - t0;
}

static void child_setup(const struct run *r, int role)
{
	struct sigaction sa = { .sa_handler = child_alarm };

	alarm_msg_len = (size_t)snprintf(alarm_msg, sizeof(alarm_msg),
		"shmbus-bench: %s, child %d: timed out after %d s\n",
		r->label, role, CHILD_TIMEOUT_S);
	if (alarm_msg_len >= sizeof(alarm_msg))
		alarm_msg_len = sizeof(alarm_msg) - 1;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGALRM, &sa, NULL) < 0)
		die("sigaction: %s", strerror(errno));
	alarm(CHILD_TIMEOUT_S);
	pin_cpu(role);
}

/* One child of run_one(): role 0 or 1 of @r, then _exit(). */
void child_main(const struct run *r, int role)
{
	const struct transport *t = &transports[r->tp];
	struct end tx = { .fd = -1 }, rx = { .fd = -1 };
	int err;

	child_setup(r, role);
	err = t->child_init();
	if (err)
		child_fail(r, role, "opening the bus", err);
	if (r->rtt) {
		end_open(r, role, &tx, role, true);
		end_open(r, role, &rx, 1 - role, false);
	} else if (role == 0) {
		end_open(r, role, &tx, 0, true);
	} else {
		end_open(r, role, &rx, 0, false);
	}
	prep_fds_keep(&tx, &rx);
	start_line();
	if (r->rtt && role == 0)
		rtt_ping(r, &tx, &rx);
	else if (r->rtt)
		rtt_pong(r, &tx, &rx);
	else if (role == 0)
		tput_produce(r, &tx);
	else
		tput_consume(r, &rx);
	end_close(r, &tx);
	end_close(r, &rx);
	t->child_fini();
	_exit(0);
}
