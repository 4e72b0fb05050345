// SPDX-License-Identifier: MIT
/*
 * recovery.c - a machine that went down with a full durable queue, as
 * near as one process tree can make it: a producer journals
 * dcfg.recovery_msgs 64 B messages (sync never: the page cache is not
 * lost here, and the run stays short), then the daemon and the producer
 * are killed with SIGKILL, so that no process holds the bus any more and
 * its arena is gone. A new daemon on the same state directory recreates
 * the bus from the journal before it listens. Timed from its start: until
 * it accepts, until a consumer has opened the bus, until the first
 * message, until the last. The consumer checks that every message came
 * back once (a bitmap of the sequence numbers) and counts those out of
 * publish order.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "dbench.h"
#include "barrier.h"

#define R_QUEUE		"recover"
#define R_SIZE		64u
#define R_CONFIRM_EVERY	4096u

static void r_produce(void)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_len = 1024,
		    .msg_size = R_SIZE, .flags = SHMBUS_QUEUE_DURABLE,
		    .sync = SHMBUS_SYNC_NEVER);
	SHMBUS_OPTS(shmbus_producer_opts, o,
		    .flags = SHMBUS_PRODUCER_ASYNC_CONFIRM);
	SHMBUS_OPTS(shmbus_pub_opts, po, .timeout_ns = -1);
	SHMBUS_OPTS(shmbus_journal_info, ji);
	struct shmbus_producer *p;
	struct shmbus *bus;
	char buf[R_SIZE];
	uint64_t t0;
	int err;

	/* every message fits in the queue at once */
	while (qo.max_len < dcfg.recovery_msgs)
		qo.max_len *= 2;
	bus = d_bus_open(D_RECOVERY_BUS, true);
	err = shmbus__queue_declare(bus, R_QUEUE, &qo);
	if (err < 0)
		die("declaring '%s': %s %s", R_QUEUE, strerror(-err),
		    shmbus_errmsg());
	p = shmbus_producer__new(bus, R_QUEUE, &o);
	if (!p)
		die("producer: %s", strerror(errno));
	t0 = now_ns();
	for (uint64_t i = 0; i < dcfg.recovery_msgs; i++) {
		fill(buf, sizeof(buf), i);
		err = shmbus_producer__publish(p, buf, sizeof(buf), &po);
		if (!err && (i + 1) % R_CONFIRM_EVERY == 0)
			err = shmbus_producer__confirm_wait(p, -1);
		if (err)
			die("publish %llu: %s", (unsigned long long)i,
			    strerror(-err));
	}
	err = shmbus_producer__confirm_wait(p, -1);
	if (err)
		die("confirm_wait: %s", strerror(-err));
	dsh->elapsed_ns = now_ns() - t0;
	err = shmbus__queue_journal(bus, R_QUEUE, &ji);
	if (err)
		die("journal of '%s': %s", R_QUEUE, strerror(-err));
	dsh->total = ji.live;
	smp_store_release(&dsh->done, 1);
	for (;;)
		pause();	/* holding the bus until killed */
}

/* Receive until every sequence number was seen (or nothing comes for a
 * while, which the parent reports as lost). */
static void r_consume(void)
{
	SHMBUS_OPTS(shmbus_consumer_opts, co, .spin_ns = -1);
	SHMBUS_OPTS(shmbus_journal_info, ji);
	uint64_t n = dcfg.recovery_msgs, seen = 0, last = 0;
	uint8_t *bits = calloc(n / 8 + 1, 1);
	struct shmbus_consumer *c;
	struct shmbus *bus;

	if (!bits)
		die("out of memory");
	bus = d_bus_open(D_RECOVERY_BUS, false);
	dsh->t_open = now_ns();
	if (!shmbus__queue_journal(bus, R_QUEUE, &ji)) {
		dsh->live = ji.live;
		dsh->replayed = ji.replayed;
	}
	c = shmbus_consumer__new(bus, R_QUEUE, &co);
	if (!c)
		die("consumer: %s", strerror(errno));
	while (seen < n) {
		struct shmbus_msg m;
		uint64_t seq;
		int err = shmbus_consumer__receive_view(c, &m, 5000000000ll);

		if (err == -ETIMEDOUT)
			break;
		if (err)
			die("receive: %s", strerror(-err));
		if (!seen)
			dsh->t_first = now_ns();
		memcpy(&seq, m.data, sizeof(seq));
		if (m.len != R_SIZE || seq >= n || verify(m.data, R_SIZE, seq))
			die("a recovered message is not one that was sent");
		if (bits[seq / 8] & (1u << (seq % 8))) {
			dsh->dups++;
		} else {
			bits[seq / 8] |= (uint8_t)(1u << (seq % 8));
			seen++;
		}
		if (seq < last)
			dsh->disorder++;
		last = seq;
		err = shmbus_consumer__ack(c, &m);
		if (err)
			die("ack: %s", strerror(-err));
	}
	dsh->t_all = now_ns();
	dsh->received = seen;
	shmbus_consumer__free(c);
	shmbus__close(bus);
	free(bits);
}

/* The daemon's own figure: "... recovered from DIR: ..., X ms". */
static void print_log_line(void)
{
	char line[512], last[512] = "";
	FILE *f = fopen(d_daemon_log(), "r");

	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, D_RECOVERY_BUS " recovered from"))
			snprintf(last, sizeof(last), "%s", line);
	fclose(f);
	if (last[0])
		printf("  daemon log: %s", strstr(last, "bus ") ?
		       strstr(last, "bus ") : last);
}

void d_run_recovery(void)
{
	double ms = 1e-6;
	uint64_t t_start, t_listen;
	pid_t kid;

	fprintf(stderr, "recovery: journaling %llu messages\n",
		(unsigned long long)dcfg.recovery_msgs);
	memset(dsh, 0, offsetof(struct dshared, lat));
	kid = d_fork("recovery producer");
	if (!kid) {
		r_produce();
		_exit(0);
	}
	while (!smp_load_acquire(&dsh->done)) {
		if (waitpid(kid, NULL, WNOHANG) == kid)
			die("recovery: the producer failed");
		usleep(1000);
	}
	printf("recovery of %llu messages of %u B (sync never):\n",
	       (unsigned long long)dcfg.recovery_msgs, R_SIZE);
	printf("  journaled in %.0f ms (%.0f msg/s confirmed), live %llu\n",
	       (double)dsh->elapsed_ns * ms,
	       (double)dcfg.recovery_msgs * 1e9 / (double)dsh->elapsed_ns,
	       (unsigned long long)dsh->total);
	/* SIGKILL both: the producer's arena mapping goes with it */
	kill(kid, SIGKILL);
	waitpid(kid, NULL, 0);
	d_daemon_kill9();
	t_start = now_ns();
	d_daemon_start();
	t_listen = now_ns();
	kid = d_fork("recovery consumer");
	if (!kid) {
		r_consume();
		_exit(0);
	}
	d_wait_kids(&kid, 1, "recovery consumer");
	printf("  new daemon accepting after  %8.1f ms\n",
	       (double)(t_listen - t_start) * ms);
	printf("  bus opened by a consumer    %8.1f ms (live %llu, replayed "
	       "%llu records)\n", (double)(dsh->t_open - t_start) * ms,
	       (unsigned long long)dsh->live,
	       (unsigned long long)dsh->replayed);
	printf("  first message received      %8.1f ms\n",
	       (double)(dsh->t_first - t_start) * ms);
	printf("  all received                %8.1f ms (%.0f msg/s after the "
	       "first)\n", (double)(dsh->t_all - t_start) * ms,
	       (double)dsh->received * 1e9 /
	       (double)(dsh->t_all - dsh->t_first));
	print_log_line();
	printf("  sent %llu received %llu lost %llu duplicated %llu out of "
	       "order %llu\n\n", (unsigned long long)dcfg.recovery_msgs,
	       (unsigned long long)dsh->received,
	       (unsigned long long)(dcfg.recovery_msgs - dsh->received),
	       (unsigned long long)dsh->dups,
	       (unsigned long long)dsh->disorder);
	fflush(stdout);
	if (dsh->received != dcfg.recovery_msgs)
		die("recovery: %llu messages lost",
		    (unsigned long long)(dcfg.recovery_msgs - dsh->received));
}
