// SPDX-License-Identifier: MIT
/*
 * depth.c - the backlog sweep: one process on CPU 0, with a producer and
 * a consumer on one queue of max_len D (a queue of its own per depth, so
 * that a shallow backlog walks a small ring), fills the queue to D
 * messages of 64 B and drains it, over and over, until about d_total
 * messages went through. What grows with D is the working set, D chunks
 * (192 B each: a 128 B header and the payload) and D ring cells of 8 B,
 * so the per-message cost against D shows where it leaves L1, L2 and the
 * last-level cache. One process, so no cache line moves between CPUs:
 * the cost is that of the memory the messages occupy, alone.
 *
 * The first fill of each measurement is reported apart: where the depth
 * goes beyond what the pool held (16384 chunks), the publisher waits
 * while the daemon grows the pool (pool_growth) and the new pages are
 * faulted in; later fills reuse the grown, touched pool.
 *
 * Each fill and each drain is timed with a clock read on each side; the
 * cost of one clock read, measured at the start, is taken off, which is
 * what matters at depth 1.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "scale.h"

#define D_SIZE		64

static uint64_t d_total;
static uint64_t clock_ns_x1000;		/* one now_ns(), in ns x 1000 */

static void d_name(char *buf, size_t len, long depth)
{
	snprintf(buf, len, "d.%ld", depth);
}

static void d_fill(struct shmbus_producer *p, long depth, uint64_t *seq)
{
	SHMBUS_OPTS(shmbus_pub_opts, po, .timeout_ns = -1);
	unsigned char buf[D_SIZE];

	for (long i = 0; i < depth; i++) {
		int err;

		fill(buf, sizeof(buf), *seq);
		err = shmbus_producer__publish(p, buf, sizeof(buf), &po);
		if (err)
			die("depth %ld: publish: %s", depth, strerror(-err));
		(*seq)++;
	}
}

static void d_drain(struct shmbus_consumer *c, long depth, uint64_t *seq)
{
	for (long i = 0; i < depth; i++) {
		struct shmbus_msg m;
		int err = shmbus_consumer__try_receive(c, &m);

		if (err)
			die("depth %ld: message %llu of the backlog: %s", depth,
			    (unsigned long long)*seq, strerror(-err));
		if (m.len != D_SIZE || verify(m.data, D_SIZE, *seq))
			die("depth %ld: message %llu lost, reordered or "
			    "corrupt", depth, (unsigned long long)*seq);
		shmbus_consumer__release(c, &m);
		(*seq)++;
	}
}

static void d_run(long depth)
{
	SHMBUS_OPTS(shmbus_consumer_opts, co, .spin_ns = INT64_MAX,
		    .flags = SHMBUS_CONSUMER_AUTO_ACK);
	uint64_t cycles = d_total / (uint64_t)depth, pseq = 0, cseq = 0;
	uint64_t fill_ns = 0, drain_ns = 0, t0, t1, t2;
	struct shmbus_consumer *c;
	struct shmbus_producer *p;
	char name[64];
	struct shmbus_queue_info qi;
	struct shmbus_pool_info pinfo;

	d_name(name, sizeof(name), depth);
	p = shmbus_producer__new(sbus, name, NULL);
	c = shmbus_consumer__new(sbus, name, &co);
	if (!p || !c)
		die("depth %ld: attaching to %s: %s", depth, name,
		    strerror(errno));
	if (!cycles)
		cycles = 1;
	/* the handles' first publish and receive (their slots, their
	 * caches' first refill) are not the backlog's */
	d_fill(p, 1, &pseq);
	d_drain(c, 1, &cseq);
	t0 = now_ns();
	d_fill(p, depth, &pseq);
	t1 = now_ns();
	/* the backlog is there: the queue says so too */
	if (shmbus__queue_info(sbus, name, &qi) || qi.depth != (uint64_t)depth)
		die("depth %ld: the queue holds %llu", depth,
		    (unsigned long long)qi.depth);
	d_drain(c, depth, &cseq);
	ssh->v[0] = t1 - t0;
	for (uint64_t k = 0; k < cycles; k++) {
		t0 = now_ns();
		d_fill(p, depth, &pseq);
		t1 = now_ns();
		d_drain(c, depth, &cseq);
		t2 = now_ns();
		fill_ns += t1 - t0;
		drain_ns += t2 - t1;
	}
	ssh->v[1] = fill_ns;
	ssh->v[2] = drain_ns;
	ssh->v[3] = cycles * (uint64_t)depth;
	ssh->v[4] = cycles;
	if (!shmbus__pool_info(sbus, 0, &pinfo))
		ssh->v[5] = pinfo.chunks;
	shmbus_producer__free(p);
	shmbus_consumer__free(c);
}

static void clock_cost(void)
{
	uint64_t t0 = now_ns();

	for (int i = 0; i < 1000000; i++)
		(void)now_ns();
	clock_ns_x1000 = (now_ns() - t0) / 1000;
}

void sweep_depth(struct sweep *sw)
{
	/* 16384 chunks of 64 B that grow up to 72x: 2^20 in the queue,
	 * and what the two handles' caches hold besides */
	SHMBUS_OPTS(shmbus_open_opts, o, .max_queues = 32, .max_slots = 16,
		    .ring_bytes = 32 << 20, .pool_growth = 72, .nr_pools = 1);
	long top = scfg.quick ? 1L << 14 : 1L << 20;
	struct shmbus_pool_info pinfo;
	char name[64];
	unsigned pi = 0;

	o.pools[0].payload = D_SIZE;
	o.pools[0].count = 16384;
	d_total = scfg.quick ? 1u << 16 : 1u << 20;
	clock_cost();
	s_bus_open("scale-depth", &o);
	if (shmbus__pool_info(sbus, 0, &pinfo))
		die("pool info");
	for (long depth = 1; depth <= top; depth *= 4, pi++) {
		sw->x[pi] = (uint64_t)depth;
		d_name(name, sizeof(name), depth);
		s_declare(name, depth < 2 ? 2 : (uint32_t)depth, D_SIZE, 0);
		for (unsigned rep = 0; rep < scfg.reps; rep++) {
			double v[4], n, clk = (double)clock_ns_x1000 / 1e3;

			s_reset(0);
			s_spawn("depth", 0, d_run, depth);
			s_wait_all();
			n = (double)ssh->v[3];
			/* one clock read in each timed fill and drain */
			v[0] = (double)ssh->v[0] / (double)depth;
			v[1] = ((double)ssh->v[1] - clk * (double)ssh->v[4]) / n;
			v[2] = ((double)ssh->v[2] - clk * (double)ssh->v[4]) / n;
			v[3] = (double)depth * (pinfo.chunk_size + 8);
			s_result(sw, pi, v);
			fprintf(stderr, "  depth %7ld  rep %u: first fill %.0f "
				"ns/msg, fill %.1f, drain %.1f ns/msg (pool: %llu "
				"chunks)\n", depth, rep + 1, v[0], v[1], v[2],
				(unsigned long long)ssh->v[5]);
		}
		shmbus__queue_delete(sbus, name);
	}
	sw->npoints = pi;
	s_bus_done();
}
