// SPDX-License-Identifier: MIT
/*
 * sizes.c - the message size sweep, 8 B to 1 MiB (powers of 4, and 1 MiB
 * as the last): one-way throughput between a producer (CPU 0) and a
 * consumer (CPU 1), and the round trip between a pinger (CPU 0) and a
 * ponger (CPU 1), all busy-polling (two processes, two CPUs). Publishes
 * copy (shmbus_producer__publish from a buffer the sender filled), the
 * receiver reads every byte in place (a view) to check it: MB/s is what a
 * program that writes and reads its messages gets, not memcpy alone.
 *
 * The bus has a pool class for each range of sizes; a chunk is taken
 * from the smallest class that holds the message, and the queue's
 * max_len is kept to a quarter of that class so that the ring can never
 * hold more messages than the pool has chunks (a publisher would wait for
 * a chunk instead of for room, which is another benchmark).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scale.h"
#include "barrier.h"

static const struct shmbus_pool_spec sz_pools[] = {
	{ 256, 8192 }, { 4096, 4096 }, { 65536, 256 }, { 262144, 64 },
	{ 1048576, 40 },
};
#define NR_SZ_POOLS	(sizeof(sz_pools) / sizeof(sz_pools[0]))

static const uint64_t sizes_full[] = {
	8, 32, 128, 512, 2048, 8192, 32768, 131072, 524288, 1048576,
};
static const uint64_t sizes_quick[] = {
	8, 32, 128, 512, 2048, 8192, 32768, 65536,
};

static size_t z_size;
static uint64_t z_msgs, z_trips;
static char z_qa[32], z_qb[32];

static uint64_t clamp_u64(uint64_t v, uint64_t lo, uint64_t hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

static uint32_t queue_len_for(size_t size)
{
	uint32_t len = 1024;

	for (unsigned i = 0; i < NR_SZ_POOLS; i++) {
		if (sz_pools[i].payload < size)
			continue;
		while (len > 2 && len > sz_pools[i].count / 4)
			len /= 2;
		break;
	}
	return len;
}

static void *buf_alloc(void)
{
	void *b = aligned_alloc(64, (z_size + 63) & ~(size_t)63);

	if (!b)
		die("out of memory");
	return b;
}

static struct shmbus_producer *prod(const char *q)
{
	struct shmbus_producer *p = shmbus_producer__new(sbus, q, NULL);

	if (!p)
		die("producer on %s: %s", q, strerror(errno));
	return p;
}

static struct shmbus_consumer *cons(const char *q)
{
	SHMBUS_OPTS(shmbus_consumer_opts, co, .spin_ns = INT64_MAX,
		    .flags = SHMBUS_CONSUMER_AUTO_ACK);
	struct shmbus_consumer *c = shmbus_consumer__new(sbus, q, &co);

	if (!c)
		die("consumer on %s: %s", q, strerror(errno));
	return c;
}

static void send_one(struct shmbus_producer *p, void *buf, uint64_t seq)
{
	SHMBUS_OPTS(shmbus_pub_opts, po, .timeout_ns = -1);
	int err;

	fill(buf, z_size, seq);
	err = shmbus_producer__publish(p, buf, z_size, &po);
	if (err)
		die("publish %zu B: %s", z_size, strerror(-err));
}

static void recv_one(struct shmbus_consumer *c, uint64_t seq)
{
	struct shmbus_msg m;
	int err = shmbus_consumer__receive_view(c, &m, -1);

	if (err)
		die("receive %zu B: %s", z_size, strerror(-err));
	if (m.len != z_size || verify(m.data, z_size, seq))
		die("%zu B: message %llu lost, reordered or corrupt", z_size,
		    (unsigned long long)seq);
	shmbus_consumer__release(c, &m);
}

static void z_producer(long unused)
{
	struct shmbus_producer *p = prod(z_qa);
	void *buf = buf_alloc();

	s_wait_ready(1);
	for (uint64_t seq = 0; seq < z_msgs; seq++)
		send_one(p, buf, seq);
	shmbus_producer__free(p);
	free(buf);
}

static void z_consumer(long unused)
{
	struct shmbus_consumer *c = cons(z_qa);
	uint64_t warm = z_msgs / 10, t0 = 0;

	s_ready();
	for (uint64_t seq = 0; seq < z_msgs; seq++) {
		recv_one(c, seq);
		if (seq + 1 == warm)
			t0 = now_ns();
	}
	ssh->v[0] = now_ns() - t0;
	ssh->v[1] = z_msgs - warm;
	shmbus_consumer__free(c);
}

static void z_pinger(long unused)
{
	struct shmbus_producer *p = prod(z_qa);
	struct shmbus_consumer *c = cons(z_qb);
	uint64_t warm = z_trips / 10;
	void *buf = buf_alloc();

	s_wait_ready(1);
	for (uint64_t i = 0; i < warm + z_trips; i++) {
		uint64_t t0 = now_ns();

		send_one(p, buf, i);
		recv_one(c, i);
		if (i >= warm)
			s_samples[i - warm] = now_ns() - t0;
	}
	shmbus_producer__free(p);
	shmbus_consumer__free(c);
	free(buf);
}

static void z_ponger(long unused)
{
	struct shmbus_consumer *c = cons(z_qa);
	struct shmbus_producer *p = prod(z_qb);
	uint64_t warm = z_trips / 10;
	void *buf = buf_alloc();

	s_ready();
	for (uint64_t i = 0; i < warm + z_trips; i++) {
		recv_one(c, i);
		send_one(p, buf, i);
	}
	shmbus_producer__free(p);
	shmbus_consumer__free(c);
	free(buf);
}

void sweep_sizes(struct sweep *sw)
{
	SHMBUS_OPTS(shmbus_open_opts, o, .max_queues = 16, .max_slots = 16,
		    .pool_growth = 1, .nr_pools = NR_SZ_POOLS);
	const uint64_t *list = scfg.quick ? sizes_quick : sizes_full;

	memcpy(o.pools, sz_pools, sizeof(sz_pools));
	s_bus_open("scale-sizes", &o);
	sw->npoints = scfg.quick ? sizeof(sizes_quick) / sizeof(list[0])
				 : sizeof(sizes_full) / sizeof(list[0]);
	for (unsigned pi = 0; pi < sw->npoints; pi++) {
		z_size = list[pi];
		sw->x[pi] = list[pi];
		if (scfg.quick) {
			z_msgs = clamp_u64((32u << 20) / z_size, 200, 100000);
			z_trips = clamp_u64((8u << 20) / z_size, 50, 2000);
		} else {
			z_msgs = clamp_u64((1u << 30) / z_size, 1000, 1000000);
			z_trips = clamp_u64((128u << 20) / z_size, 200, 20000);
		}
		snprintf(z_qa, sizeof(z_qa), "s.%zu.a", z_size);
		snprintf(z_qb, sizeof(z_qb), "s.%zu.b", z_size);
		s_declare(z_qa, queue_len_for(z_size), (uint32_t)z_size, 0);
		s_declare(z_qb, queue_len_for(z_size), (uint32_t)z_size, 0);
		for (unsigned rep = 0; rep < scfg.reps; rep++) {
			double v[3], rate;

			s_reset(0);
			s_spawn("size consumer", 1, z_consumer, 0);
			s_spawn("size producer", 0, z_producer, 0);
			s_wait_all();
			rate = (double)ssh->v[1] / ((double)ssh->v[0] / 1e9);
			s_reset(0);
			s_spawn("size ponger", 1, z_ponger, 0);
			s_spawn("size pinger", 0, z_pinger, 0);
			s_wait_all();
			v[0] = rate;
			v[1] = rate * (double)z_size / 1e6;
			v[2] = (double)s_quantile(s_samples, z_trips, 0.5) /
			       1e3;
			s_result(sw, pi, v);
			fprintf(stderr, "  size %7zu  rep %u: %.0fk msg/s, "
				"%.0f MB/s, RTT p50 %.2f us\n", z_size,
				rep + 1, v[0] / 1e3, v[1], v[2]);
		}
		shmbus__queue_delete(sbus, z_qa);
		shmbus__queue_delete(sbus, z_qb);
	}
	s_bus_done();
}
