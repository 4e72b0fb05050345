// SPDX-License-Identifier: MIT
/*
 * probe-cost.c - what the USDT probes add to one message's path, measured
 * in one thread on one CPU, where two-process benchmarks on this VM move
 * by 2x between runs with vCPU placement: publish 64 B, receive it as a
 * view, ack it; so many times; the best of the repetitions, in ns per
 * message. tools/bench/probe-overhead.sh runs it against a library built
 * without probes, the normal one with nobody attached, and the normal one
 * under `shmbus monitor`, alternating, so that all three see the same
 * machine.
 *
 *   probe-cost [MESSAGES [REPS]]   (bus from $SHMBUS_SOCKET, autostarted)
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shmbus.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000000;
	int reps = argc > 2 ? atoi(argv[2]) : 5;
	SHMBUS_OPTS(shmbus_consumer_opts, co, .spin_ns = 0);
	struct shmbus_producer *p;
	struct shmbus_consumer *c;
	struct shmbus *bus;
	char msg[64] = "probe-cost";
	double best = 1e30;
	cpu_set_t set;
	int err;

	CPU_ZERO(&set);
	CPU_SET(0, &set);
	sched_setaffinity(0, sizeof(set), &set);	/* best effort */
	bus = shmbus__open("probe-cost", NULL);
	if (!bus) {
		fprintf(stderr, "probe-cost: open: %s\n", strerror(errno));
		return 1;
	}
	err = shmbus__queue_declare(bus, "probe-cost", NULL);
	if (err < 0) {
		fprintf(stderr, "probe-cost: declare: %s\n", strerror(-err));
		return 1;
	}
	p = shmbus_producer__new(bus, "probe-cost", NULL);
	c = shmbus_consumer__new(bus, "probe-cost", &co);
	if (!p || !c) {
		fprintf(stderr, "probe-cost: attach: %s\n", strerror(errno));
		return 1;
	}
	for (int r = 0; r < reps; r++) {
		double t0 = now_s(), dt;

		for (long i = 0; i < n; i++) {
			struct shmbus_msg m;

			err = shmbus_producer__publish(p, msg, sizeof(msg), NULL);
			if (!err)
				err = shmbus_consumer__try_receive(c, &m);
			if (!err)
				err = shmbus_consumer__ack(c, &m);
			if (err) {
				fprintf(stderr, "probe-cost: %s\n",
					strerror(-err));
				return 1;
			}
		}
		dt = (now_s() - t0) * 1e9 / n;
		if (dt < best)
			best = dt;
	}
	printf("%.1f\n", best);
	shmbus_consumer__free(c);
	shmbus_producer__free(p);
	shmbus__close(bus);
	return 0;
}
