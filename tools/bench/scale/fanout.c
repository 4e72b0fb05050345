// SPDX-License-Identifier: MIT
/*
 * fanout.c - the fan-out sweep: one publisher process (CPU 0) publishes
 * 64 B messages to a topic, N subscriber processes (all on CPU 1), each
 * with an exclusive subscription of its own (max_len 1024), take every
 * one of them in order. As for competing consumers, N > 1 processes on
 * one CPU are oversubscribed, so subscribers block as soon as they find
 * nothing (spin_ns < 0), N = 1 too.
 *
 * A publish to a topic puts one shared chunk into every matching
 * subscription's ring (userspace/lib/fanout.c) and wakes the sleepers of
 * each: its cost grows with N, and the figure to watch is the cost per
 * delivered message (the whole run's time over N x messages).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "scale.h"

#define F_SIZE		64

static const uint64_t fan_ns[] = { 1, 2, 4, 8, 16, 32, 64 };
static uint64_t f_msgs;
static char f_topic[32];

static void f_subscriber(long idx)
{
	SHMBUS_OPTS(shmbus_sub_opts, so, .max_len = 1024, .spin_ns = -1,
		    .consumer_flags = SHMBUS_CONSUMER_AUTO_ACK);
	struct shmbus_consumer *c;

	c = shmbus_consumer__subscribe(sbus, f_topic, &so);
	if (!c)
		die("subscribing to %s: %s (%s)", f_topic, strerror(errno),
		    shmbus_errmsg());
	s_ready();
	for (uint64_t seq = 0; seq < f_msgs; seq++) {
		struct shmbus_msg m;
		int err = shmbus_consumer__receive_view(c, &m, -1);

		if (err)
			die("subscriber %ld: receive: %s", idx, strerror(-err));
		if (m.len != F_SIZE || verify(m.data, F_SIZE, seq))
			die("subscriber %ld: message %llu lost, reordered or "
			    "corrupt", idx, (unsigned long long)seq);
		shmbus_consumer__release(c, &m);
	}
	ssh->t_end[idx] = now_ns();
	shmbus_consumer__free(c);
}

static void f_publisher(long n)
{
	SHMBUS_OPTS(shmbus_pub_opts, po, .timeout_ns = -1);
	struct shmbus_producer *p;
	unsigned char buf[F_SIZE];
	struct shmbus_queue_info qi;
	uint64_t wakes;

	p = shmbus_producer__new(sbus, f_topic, NULL);
	if (!p)
		die("producer on %s: %s", f_topic, strerror(errno));
	s_wait_ready((uint32_t)n);
	if (shmbus__queue_info(sbus, f_topic, &qi))
		die("queue info %s", f_topic);
	wakes = qi.stat[SHMBUS_STAT_WAKEUPS];
	ssh->t_start = now_ns();
	for (uint64_t seq = 0; seq < f_msgs; seq++) {
		int err;

		fill(buf, sizeof(buf), seq);
		err = shmbus_producer__publish(p, buf, sizeof(buf), &po);
		if (err)
			die("publish to %s: %s", f_topic, strerror(-err));
	}
	ssh->t_pub_end = now_ns();
	/* the publisher's eventfd writes (or module wake-ups) */
	if (shmbus__queue_info(sbus, f_topic, &qi))
		die("queue info %s", f_topic);
	ssh->v[0] = qi.stat[SHMBUS_STAT_WAKEUPS] - wakes;
	shmbus_producer__free(p);
}

void sweep_fanout(struct sweep *sw)
{
	/* 64 subscriptions and their topic; ring cells for 64 x 1024 */
	SHMBUS_OPTS(shmbus_open_opts, o, .max_queues = 128, .max_slots = 128,
		    .ring_bytes = 4 << 20);
	SHMBUS_OPTS(shmbus_topic_opts, to, .msg_size = F_SIZE);

	f_msgs = scfg.quick ? 10000 : 100000;
	s_bus_open("scale-fanout", &o);
	sw->npoints = sizeof(fan_ns) / sizeof(fan_ns[0]);
	for (unsigned pi = 0; pi < sw->npoints; pi++) {
		long n = (long)fan_ns[pi];
		int err;

		sw->x[pi] = fan_ns[pi];
		snprintf(f_topic, sizeof(f_topic), "fan.%ld", n);
		err = shmbus__topic_declare(sbus, f_topic, &to);
		if (err < 0)
			die("declaring topic %s: %s", f_topic, strerror(-err));
		for (unsigned rep = 0; rep < scfg.reps; rep++) {
			uint64_t t_last = 0;
			double v[5], pub_s, all_s;

			s_reset(0);
			for (long i = 0; i < n; i++)
				s_spawn("fan-out subscriber", 1, f_subscriber,
					i);
			s_spawn("fan-out publisher", 0, f_publisher, n);
			s_wait_all();
			for (long i = 0; i < n; i++)
				if (ssh->t_end[i] > t_last)
					t_last = ssh->t_end[i];
			pub_s = (double)(ssh->t_pub_end - ssh->t_start) / 1e9;
			all_s = (double)(t_last - ssh->t_start) / 1e9;
			v[0] = (double)f_msgs / pub_s;
			v[1] = (double)f_msgs * (double)n / all_s;
			v[2] = 1e9 / v[0];
			v[3] = 1e9 / v[1];
			v[4] = (double)ssh->v[0] / (double)f_msgs;
			s_result(sw, pi, v);
			fprintf(stderr, "  subscribers %2ld  rep %u: %.0fk "
				"publishes/s, %.2fM deliveries/s, %.0f ns per "
				"delivery, %.2f wake-ups per publish\n", n,
				rep + 1, v[0] / 1e3, v[1] / 1e6, v[3], v[4]);
		}
		shmbus__queue_delete(sbus, f_topic);
	}
	s_bus_done();
}
