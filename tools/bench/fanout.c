// SPDX-License-Identifier: MIT
/*
 * fanout.c - topic fan-out: one publisher (the parent) and N subscriber
 * processes, each with an exclusive subscription of topic bench.fan.N,
 * receiving with the default spin then blocking. Every subscriber checks
 * every message, in order, as the matrix's receivers do.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "barrier.h"

/* One subscriber process: FAN_MSGS messages of 64 B, in order. */
static __attribute__((noreturn))
void fan_subscriber(const char *topic)
{
	SHMBUS_OPTS(shmbus_sub_opts, so, .max_len = 4096,
		    .consumer_flags = SHMBUS_CONSUMER_AUTO_ACK);
	struct shmbus_consumer *c;
	uint64_t next = 0;

	if (sb_child_init())
		_exit(3);
	c = shmbus_consumer__subscribe(bench_bus, topic, &so);
	if (!c)
		_exit(4);
	atomic_fetch_add(&sh->ready, 1);
	while (next < FAN_MSGS) {
		struct shmbus_msg m;

		if (shmbus_consumer__receive_view(c, &m, -1))
			_exit(5);
		if (m.len != 64 || verify(m.data, 64, next))
			_exit(6);
		shmbus_consumer__release(c, &m);
		next++;
	}
	shmbus_consumer__free(c);
	sb_child_fini();
	_exit(0);
}

/*
 * One publisher (this process), @nsub subscriber processes (exclusive
 * subscriptions of topic bench.fan.N, blocking receive with the default
 * spin). Returns publishes/s (the publisher's time) and deliveries/s
 * (until the last subscriber has them all).
 */
void run_fanout(unsigned nsub, double *pub_rate, double *deliv_rate)
{
	SHMBUS_OPTS(shmbus_pub_opts, po, .timeout_ns = -1);
	struct shmbus_producer *p;
	char topic[32];
	pid_t kid[8];
	uint64_t t0, t1, t2;
	int err;

	snprintf(topic, sizeof(topic), "bench.fan.%u", nsub);
	err = shmbus__topic_declare(bench_bus, topic, NULL);
	if (err < 0)
		die("declaring topic %s: %s", topic, strerror(-err));
	WRITE_ONCE(sh->ready, 0);	/* no child runs yet */
	for (unsigned k = 0; k < nsub; k++) {
		kid[k] = fork();
		if (kid[k] < 0)
			die("fork: %s", strerror(errno));
		if (!kid[k])
			fan_subscriber(topic);
	}
	while (smp_load_acquire(&sh->ready) < nsub)
		usleep(1000);
	p = shmbus_producer__new(bench_bus, topic, NULL);
	if (!p)
		die("producer on %s: %s", topic, strerror(errno));
	{
		unsigned char buf[64];

		t0 = now_ns();
		for (uint64_t i = 0; i < FAN_MSGS; i++) {
			fill(buf, sizeof(buf), i);
			err = shmbus_producer__publish(p, buf, sizeof(buf), &po);
			if (err)
				die("publish to %s: %s", topic, strerror(-err));
		}
		t1 = now_ns();
	}
	for (unsigned k = 0; k < nsub; k++) {
		int st;

		if (waitpid(kid[k], &st, 0) < 0 || !WIFEXITED(st) ||
		    WEXITSTATUS(st))
			die("fan-out subscriber %u failed (status %#x)", k, st);
	}
	t2 = now_ns();
	shmbus_producer__free(p);
	shmbus__queue_delete(bench_bus, topic);
	*pub_rate = FAN_MSGS / ((t1 - t0) / 1e9);
	*deliv_rate = (double)FAN_MSGS * nsub / ((t2 - t0) / 1e9);
}
