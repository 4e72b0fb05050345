// SPDX-License-Identifier: MIT
/*
 * queues.c - the first two sweeps, both on 64 B messages:
 *
 * queues: one producer process (CPU 0) publishes round-robin over N
 * queues, one consumer process (CPU 1) takes from all N in the same
 * order, both busy-polling. Two processes whatever N, so the only thing
 * that grows is what each queue adds (its ring, its head and tail lines,
 * one producer and one consumer handle with their slot and chunk cache),
 * not the number of processes fighting for 2 CPUs: the per-message cost
 * against N is what a queue costs to keep busy.
 *
 * consumers: one producer (CPU 0) and K competing consumers on one queue,
 * all on CPU 1. K > 1 processes on one CPU are oversubscribed: a
 * busy-polling consumer would burn its time slice while the one holding
 * the CPU works, so every consumer blocks at once when the queue is empty
 * (spin_ns < 0) - K = 1 too, so that the rows compare. First a
 * saturating run (msg/s), then a paced one (a message every S_GAP_NS,
 * after the queue drained) whose publish-to-receive times are the p50
 * and p99: under saturation they would only measure the full queue.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scale.h"
#include "barrier.h"

#define Q_SIZE		64
#define S_GAP_NS	50000

static const uint64_t queue_ns[] = { 1, 2, 4, 8, 16, 32, 64 };
static const uint64_t cons_ks[] = { 1, 2, 4, 8, 16 };

static uint64_t q_msgs;			/* per run: queues */
static uint64_t c_msgs, c_paced;	/* per run: consumers */

#define NELEM(a)	(sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------ */
/* N queues, one producer and one consumer                           */
/* ------------------------------------------------------------------ */

static void q_name(char *buf, size_t len, long n, long i)
{
	snprintf(buf, len, "q.%ld.%ld", n, i);
}

static void q_producer(long n)
{
	SHMBUS_OPTS(shmbus_pub_opts, po, .timeout_ns = -1);
	struct shmbus_producer *p[64];
	unsigned char buf[Q_SIZE];
	char name[64];
	long k = 0;

	for (long i = 0; i < n; i++) {
		q_name(name, sizeof(name), n, i);
		p[i] = shmbus_producer__new(sbus, name, NULL);
		if (!p[i])
			die("producer on %s: %s", name, strerror(errno));
	}
	s_wait_ready(1);
	for (uint64_t seq = 0; seq < q_msgs; seq++) {
		int err;

		fill(buf, sizeof(buf), seq);
		err = shmbus_producer__publish(p[k], buf, sizeof(buf), &po);
		if (err)
			die("publish: %s", strerror(-err));
		if (++k == n)
			k = 0;
	}
	for (long i = 0; i < n; i++)
		shmbus_producer__free(p[i]);
}

static void q_consumer(long n)
{
	SHMBUS_OPTS(shmbus_consumer_opts, co, .spin_ns = INT64_MAX,
		    .flags = SHMBUS_CONSUMER_AUTO_ACK);
	struct shmbus_consumer *c[64];
	uint64_t warm = q_msgs / 10, t0 = 0;
	char name[64];
	long k = 0;

	for (long i = 0; i < n; i++) {
		q_name(name, sizeof(name), n, i);
		c[i] = shmbus_consumer__new(sbus, name, &co);
		if (!c[i])
			die("consumer on %s: %s", name, strerror(errno));
	}
	s_ready();
	for (uint64_t seq = 0; seq < q_msgs; seq++) {
		struct shmbus_msg m;
		int err = shmbus_consumer__receive_view(c[k], &m, -1);

		if (err)
			die("receive: %s", strerror(-err));
		/* the producer's round robin: message seq is on queue k */
		if (m.len != Q_SIZE || verify(m.data, Q_SIZE, seq))
			die("queues %ld: message %llu lost, reordered or "
			    "corrupt", n, (unsigned long long)seq);
		shmbus_consumer__release(c[k], &m);
		if (++k == n)
			k = 0;
		if (seq + 1 == warm)
			t0 = now_ns();
	}
	ssh->v[0] = now_ns() - t0;
	ssh->v[1] = q_msgs - warm;
	for (long i = 0; i < n; i++)
		shmbus_consumer__free(c[i]);
}

void sweep_queues(struct sweep *sw)
{
	SHMBUS_OPTS(shmbus_open_opts, o, .max_queues = 160,
		    .max_slots = 256, .ring_bytes = 4 << 20);
	char name[64];

	q_msgs = scfg.quick ? 100000 : 1000000;
	s_bus_open("scale-queues", &o);
	sw->npoints = NELEM(queue_ns);
	for (unsigned pi = 0; pi < sw->npoints; pi++) {
		long n = (long)queue_ns[pi];

		sw->x[pi] = queue_ns[pi];
		for (long i = 0; i < n; i++) {
			q_name(name, sizeof(name), n, i);
			s_declare(name, 1024, Q_SIZE, 0);
		}
		for (unsigned rep = 0; rep < scfg.reps; rep++) {
			double v[2], rate;

			s_reset(0);
			s_spawn("queues consumer", 1, q_consumer, n);
			s_spawn("queues producer", 0, q_producer, n);
			s_wait_all();
			rate = (double)ssh->v[1] / ((double)ssh->v[0] / 1e9);
			v[0] = rate;
			v[1] = 1e9 / rate;
			s_result(sw, pi, v);
			fprintf(stderr, "  queues %3ld  rep %u: %.2fM msg/s, "
				"%.1f ns/msg\n", n, rep + 1, rate / 1e6, v[1]);
		}
		for (long i = 0; i < n; i++) {
			q_name(name, sizeof(name), n, i);
			shmbus__queue_delete(sbus, name);
		}
	}
	s_bus_done();
}

/* ------------------------------------------------------------------ */
/* K competing consumers on one queue                                */
/* ------------------------------------------------------------------ */

static void c_producer(long k)
{
	SHMBUS_OPTS(shmbus_producer_opts, pro,
		    .flags = SHMBUS_PRODUCER_TIMESTAMP);
	SHMBUS_OPTS(shmbus_pub_opts, po, .timeout_ns = -1);
	struct shmbus_queue_info qi;
	struct shmbus_producer *p;
	unsigned char buf[Q_SIZE];
	uint64_t stop = S_STOP, next, wakes;
	int err;

	p = shmbus_producer__new(sbus, "work", &pro);
	if (!p)
		die("producer on work: %s", strerror(errno));
	s_wait_ready((uint32_t)k);
	if (shmbus__queue_info(sbus, "work", &qi))
		die("queue info");
	wakes = qi.stat[SHMBUS_STAT_WAKEUPS];
	ssh->t_start = now_ns();
	for (uint64_t seq = 0; seq < c_msgs; seq++) {
		fill(buf, sizeof(buf), seq);
		err = shmbus_producer__publish(p, buf, sizeof(buf), &po);
		if (err)
			die("publish: %s", strerror(-err));
	}
	ssh->t_pub_end = now_ns();
	/* the paced run starts on an empty queue */
	do {
		usleep(1000);
		err = shmbus__queue_info(sbus, "work", &qi);
		if (err)
			die("queue info: %s", strerror(-err));
	} while (qi.depth);
	/* the eventfd writes of the saturating run */
	ssh->v[0] = qi.stat[SHMBUS_STAT_WAKEUPS] - wakes;
	next = now_ns();
	for (uint64_t seq = c_msgs; seq < c_msgs + c_paced; seq++) {
		next += S_GAP_NS;
		while (now_ns() < next)
			cpu_relax();
		fill(buf, sizeof(buf), seq);
		err = shmbus_producer__publish(p, buf, sizeof(buf), &po);
		if (err)
			die("publish: %s", strerror(-err));
	}
	/* one stop each: a consumer takes no message after its stop */
	for (long i = 0; i < k; i++) {
		err = shmbus_producer__publish(p, &stop, sizeof(stop), &po);
		if (err)
			die("publish: %s", strerror(-err));
	}
	shmbus_producer__free(p);
}

static void c_consumer(long idx)
{
	SHMBUS_OPTS(shmbus_consumer_opts, co, .spin_ns = -1,
		    .flags = SHMBUS_CONSUMER_AUTO_ACK);
	uint64_t total = c_msgs + c_paced, last = 0;
	struct shmbus_consumer *c;
	bool any = false;

	c = shmbus_consumer__new(sbus, "work", &co);
	if (!c)
		die("consumer on work: %s", strerror(errno));
	s_ready();
	for (;;) {
		struct shmbus_msg m;
		uint64_t seq, t;
		int err = shmbus_consumer__receive_view(c, &m, -1);

		if (err)
			die("receive: %s", strerror(-err));
		t = now_ns();
		if (m.len == sizeof(seq)) {
			memcpy(&seq, m.data, sizeof(seq));
			shmbus_consumer__release(c, &m);
			if (seq != S_STOP)
				die("consumer %ld: a short message", idx);
			break;
		}
		if (m.len != Q_SIZE)
			die("consumer %ld: a message of %u B", idx, m.len);
		memcpy(&seq, m.data, sizeof(seq));
		if (seq >= total || verify(m.data, Q_SIZE, seq))
			die("consumer %ld: a corrupt message", idx);
		/* one producer: each consumer sees its share in order */
		if (any && seq <= last)
			die("consumer %ld: message %llu after %llu", idx,
			    (unsigned long long)seq, (unsigned long long)last);
		if (atomic_fetch_add(&s_seen[seq], 1))
			die("consumer %ld: message %llu delivered twice", idx,
			    (unsigned long long)seq);
		any = true;
		last = seq;
		s_recv[seq] = t;
		s_lat[seq] = t - m.ts_ns;
		shmbus_consumer__release(c, &m);
	}
	shmbus_consumer__free(c);
}

void sweep_consumers(struct sweep *sw)
{
	SHMBUS_OPTS(shmbus_open_opts, o, .max_queues = 16, .max_slots = 64);

	c_msgs = scfg.quick ? 20000 : 200000;
	c_paced = scfg.quick ? 2000 : 20000;
	s_bus_open("scale-consumers", &o);
	s_declare("work", 1024, Q_SIZE, 16);
	sw->npoints = NELEM(cons_ks);
	for (unsigned pi = 0; pi < sw->npoints; pi++) {
		long k = (long)cons_ks[pi];

		sw->x[pi] = cons_ks[pi];
		for (unsigned rep = 0; rep < scfg.reps; rep++) {
			uint64_t total = c_msgs + c_paced, t_last = 0;
			double v[4];

			s_reset(total);
			for (long i = 0; i < k; i++)
				s_spawn("competing consumer", 1, c_consumer, i);
			s_spawn("competing producer", 0, c_producer, k);
			s_wait_all();
			for (uint64_t seq = 0; seq < total; seq++)
				if (s_seen[seq] != 1)
					die("consumers %ld: message %llu "
					    "delivered %u times", k,
					    (unsigned long long)seq,
					    s_seen[seq]);
			for (uint64_t seq = 0; seq < c_msgs; seq++)
				if (s_recv[seq] > t_last)
					t_last = s_recv[seq];
			v[0] = (double)c_msgs /
			       ((double)(t_last - ssh->t_start) / 1e9);
			v[1] = (double)s_quantile(s_lat + c_msgs, c_paced,
						  0.50) / 1e3;
			v[2] = (double)s_quantile(s_lat + c_msgs, c_paced,
						  0.99) / 1e3;
			v[3] = (double)ssh->v[0] * 1000 / (double)c_msgs;
			s_result(sw, pi, v);
			fprintf(stderr, "  consumers %2ld  rep %u: %.2fM msg/s, "
				"p50 %.1f us, p99 %.1f us, %.1f wake-ups per "
				"1000 msgs\n", k, rep + 1, v[0] / 1e6, v[1],
				v[2], v[3]);
		}
	}
	s_bus_done();
}
