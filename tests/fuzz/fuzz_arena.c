// SPDX-License-Identifier: MIT
/*
 * fuzz_arena.c - libFuzzer target: the library and the daemon facing an
 * arena a member of the bus has scribbled on.
 *
 * Each input gets a fresh in-process daemon (a real struct daemon,
 * serving a real listening socket from a thread of this process with
 * session_read(), the event loop's handling of a packet) and a client
 * using the public API: it opens a small bus, declares a queue (with the
 * input's priority levels, dedup window, dead-letter queue, checksums)
 * and perhaps a topic with a subscriber, attaches a producer and a
 * consumer, publishes, receives and holds some deliveries. Then the input's patches are written into the arena, as any
 * member could, and everything carries on over the damage:
 *
 *   - arena_validate() on the image (the attach-time validation);
 *   - a second shmbus__open() of the bus (mapping and validating it) and,
 *     if that works, a second consumer attached through it;
 *   - receives (ring cells, chunk headers, delivery tables), acks, nacks,
 *     extends and rejects of the held deliveries, more publishes (pools,
 *     free lists, dedup table);
 *   - detaching and closing (the daemon releases slots from the scribbled
 *     delivery tables and caches), the daemon's periodic work (leases,
 *     timers, TTL, grace periods), and its teardown.
 *
 * Every call may fail; none may crash, hang or leak. The client and the
 * daemon never run at once: the client waits for each reply, and the
 * closes that end the input are followed by the thread's exit.
 *
 * Settings the bus has no room for (the queue's declare fails) end the
 * input there. Input: 12 bytes of settings (struct settings), then patches: u8 region
 * (superblock, queue directory, slots, pool descriptors, ring bitmap,
 * rings, chunks, anywhere), a 24-bit little-endian offset (modulo the
 * region's length), u8 length, that many bytes.
 */
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "shmbusd.h"
#include "bus.h"

struct settings {
	uint8_t max_queues;	/* 2 + x % 3 */
	uint8_t max_slots;	/* 3 + x % 6 */
	uint8_t ring_kib;	/* 16 + x % 49 */
	uint8_t pools;		/* bit 0: a second pool; bits 1-3: counts */
	uint8_t max_len;	/* 2 << x % 6 */
	uint8_t prio;		/* 1 + x % 4 */
	uint8_t qflags;		/* bit 0 dedup, 1 dlq, 2 ttl, 3 max_deliveries
				 * 2, 4 overflow reject, 5 lease 1 ms, 6 a
				 * topic with a subscriber too, 7 checksums */
	uint8_t npub;		/* x % 24 publishes before the patches */
	uint8_t nhold;		/* x % 16 deliveries held over the patches */
	uint8_t nrecv;		/* x % 32 receives after */
	uint8_t npub2;		/* x % 16 publishes after */
	uint8_t tick;		/* seconds ahead for the periodic work */
};

/* What the client asks of the daemon thread besides requests. */
enum { ASK_STOP = 1, ASK_TICK = 2 };

static char sock_path[108];
static int listen_fd = -1;
static struct daemon dmn;
/* pipes: questions to the daemon thread, its answers */
static int ask_fd = -1, ask_wfd = -1, done_fd = -1, done_wfd = -1;
static uint64_t start_time;
static int64_t tick_ahead;

/* The daemon's periodic work on every bus, at now + @ahead. */
static void tick_all(int64_t ahead)
{
	int64_t now = now_ns();

	for (struct dbus *b = dmn.buses; b; b = b->next) {
		deliver_tick(b, now);
		deliver_tick(b, now + ahead);
		defer_tick(b, 0);
	}
}

/* Have the daemon thread run its periodic work now, and wait for it: the
 * consumers still attached, their delivery tables as scribbled. */
static void ask_tick(int64_t ahead)
{
	uint64_t v = ASK_TICK;

	tick_ahead = ahead;
	if (write(ask_wfd, &v, sizeof(v)) != sizeof(v) ||
	    read(done_fd, &v, sizeof(v)) != sizeof(v))
		abort();
}

struct region {
	uint8_t *base;
	uint64_t len;
};

/* The daemon: the listener and up to 8 connections, until ASK_STOP. */
static void *daemon_thread(void *arg)
{
	struct pollfd pfd[10];
	struct session sess[8];
	int fds[8], n = 0;
	uint32_t conn_id = 1;

	for (;;) {
		pfd[0].fd = ask_fd;
		pfd[1].fd = listen_fd;
		for (int i = 0; i < n; i++)
			pfd[2 + i].fd = fds[i];
		for (int i = 0; i < 2 + n; i++)
			pfd[i].events = POLLIN;
		if (poll(pfd, 2 + n, -1) < 0)
			continue;
		for (int i = 0; i < n; i++) {
			if (!pfd[2 + i].revents ||
			    session_read(&dmn, fds[i], &sess[i]))
				continue;
			close(fds[i]);
			buses_conn_gone(&dmn, sess[i].peer.conn_id);
			fds[i] = fds[n - 1];
			sess[i] = sess[n - 1];
			pfd[2 + i] = pfd[2 + n - 1];
			n--;
			i--;
		}
		if ((pfd[1].revents & POLLIN) && n < 8) {
			int fd = accept4(listen_fd, NULL, NULL,
					 SOCK_NONBLOCK | SOCK_CLOEXEC);

			if (fd >= 0) {
				memset(&sess[n], 0, sizeof(sess[n]));
				sess[n].peer.conn_id = conn_id++;
				sess[n].peer.pid = getpid();
				sess[n].peer.start_time = start_time;
				fds[n++] = fd;
			}
		}
		if (pfd[0].revents & POLLIN) {
			uint64_t v;

			if (read(ask_fd, &v, sizeof(v)) != sizeof(v))
				abort();
			if (v == ASK_STOP)
				break;
			tick_all(tick_ahead);
			if (write(done_wfd, &v, sizeof(v)) != sizeof(v))
				abort();
		}
	}
	/* the client closed everything before stopping us: EOFs first */
	for (int i = 0; i < n; i++) {
		while (session_read(&dmn, fds[i], &sess[i]))
			;
		close(fds[i]);
		buses_conn_gone(&dmn, sess[i].peer.conn_id);
	}
	return NULL;
}

static void patch(struct shmbus *bus, const uint8_t **p, size_t *n)
{
	const struct arena *a = &bus->arena;
	const struct pool_view *last = &a->pool[a->nr_pools - 1];
	struct region r[8] = {
		{ a->base, SHMBUS_SB_SIZE },
		{ (uint8_t *)a->queues, a->max_queues * sizeof(*a->queues) },
		{ (uint8_t *)a->slots, a->max_slots * sizeof(*a->slots) },
		{ (uint8_t *)a->pool[0].desc,
		  a->nr_pools * sizeof(*a->pool[0].desc) },
		{ (uint8_t *)a->ringmap, (a->ring_units + 63) / 64 * 8 },
		{ a->base + a->ring_off, a->ring_units * SHMBUS_RING_UNIT },
		{ (uint8_t *)a->pool[0].links,
		  (uint64_t)(last->base - (uint8_t *)a->pool[0].links) +
		  (uint64_t)last->nr_chunks * last->chunk_size },
		{ a->base, a->size },
	};
	uint8_t which, len;
	uint32_t off;
	struct region *g;

	if (*n < 5) {
		*n = 0;		/* a partial patch: the end */
		return;
	}
	which = (*p)[0];
	off = (*p)[1] | (*p)[2] << 8 | (uint32_t)(*p)[3] << 16;
	len = (*p)[4];
	*p += 5;
	*n -= 5;
	if (len > *n)
		len = (uint8_t)*n;
	g = &r[which % 8];
	if (g->len) {
		uint64_t o = off % g->len;

		memcpy(g->base + o, *p, MIN((uint64_t)len, g->len - o));
	}
	*p += len;
	*n -= len;
}

static void publish(struct shmbus_producer *p, unsigned i, uint32_t prios,
		    bool dedup)
{
	static const uint8_t payload[5000];
	static const uint32_t lens[] = { 0, 1, 100, 200, 1000, 5000 };
	char key[16];
	SHMBUS_OPTS(shmbus_pub_opts, po, .priority = i % prios);

	if (dedup && i % 3) {
		snprintf(key, sizeof(key), "k%u", i % 5);
		po.dedup_id = key;
	}
	if (i % 7 == 3)
		po.delay_ns = 1000000;
	shmbus_producer__publish(p, payload, lens[i % 6], &po);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void cleanup(void)
{
	char dir[sizeof(sock_path)];

	strcpy(dir, sock_path);
	unlink(sock_path);
	*strrchr(dir, '/') = 0;
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dir[] = "/tmp/shmbus-fuzz-XXXXXX";
	int pv[4];

	if (dlog_open("/dev/null"))
		abort();
	dlog_set_level(LOG_DEBUG_);
	shmbus_set_print(NULL);
	start_time = pid_start_time(getpid());
	/* per-uid quotas as a daemon with 1024 fds has them */
	quota_init(1024);
	if (!mkdtemp(dir))
		abort();
	snprintf(sock_path, sizeof(sock_path), "%s/sock", dir);
	strcpy(sa.sun_path, sock_path);
	atexit(cleanup);
	listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC |
			   SOCK_NONBLOCK, 0);
	if (listen_fd < 0 || bind(listen_fd, (void *)&sa, sizeof(sa)) ||
	    listen(listen_fd, 8))
		abort();
	/* one answer per question; the client blocks for it */
	if (pipe2(pv, O_CLOEXEC) || pipe2(pv + 2, O_CLOEXEC))
		abort();
	ask_fd = pv[0];
	ask_wfd = pv[1];
	done_fd = pv[2];
	done_wfd = pv[3];
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct settings st;
	struct shmbus *bus, *bus2 = NULL;
	struct shmbus_producer *p = NULL;
	struct shmbus_consumer *c = NULL, *c2 = NULL;
	struct shmbus_msg held[16];
	SHMBUS_OPTS(shmbus_consumer_opts, co, .spin_ns = -1, .prefetch = 16);
	unsigned nheld = 0;
	struct shmbus_producer *tp = NULL;
	struct shmbus_consumer *sub = NULL;
	pthread_t th;
	uint64_t one = ASK_STOP;
	char why[160];

	if (size < sizeof(st))
		return -1;	/* not kept in the corpus */
	memcpy(&st, data, sizeof(st));
	data += sizeof(st);
	size -= sizeof(st);

	memset(&dmn, 0, sizeof(dmn));
	dmn.bus_max = 16 << 20;		/* the daemon's --bus-max */
	if (pthread_create(&th, NULL, daemon_thread, NULL))
		abort();

	SHMBUS_OPTS(shmbus_open_opts, oo, .socket_path = sock_path,
		    .max_queues = 2 + st.max_queues % 3,
		    .max_slots = 3 + st.max_slots % 6,
		    .ring_bytes = (16 + st.ring_kib % 49) * 1024,
		    .nr_pools = 1 + (st.pools & 1),
		    .connect_timeout_ms = 1000);
	oo.pools[0].payload = 256;
	oo.pools[0].count = 8 + ((st.pools >> 1) & 7) * 8;
	oo.pools[1].payload = 4096;
	oo.pools[1].count = 4 + ((st.pools >> 4) & 7);
	bus = shmbus__open("f", &oo);
	if (!bus)
		abort();	/* a fresh daemon: this cannot fail */

	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_len = 2u << (st.max_len % 6),
		    .msg_size = 200, .max_consumers = 4,
		    .priorities = 1 + st.prio % 4);
	if (st.qflags & 1)
		qo.dedup_window_ns = 60 * NSEC_PER_SEC;
	if (st.qflags & 2) {
		SHMBUS_OPTS(shmbus_queue_opts, dq, .max_len = 8,
			    .msg_size = 200);

		qo.dead_letter_queue = "dlq";
		shmbus__queue_declare(bus, "dlq", &dq);
	}
	if (st.qflags & 4)
		qo.ttl_ns = NSEC_PER_SEC;
	if (st.qflags & 8)
		qo.max_deliveries = 2;
	if (st.qflags & 16)
		qo.overflow = SHMBUS_OVERFLOW_REJECT;
	if (st.qflags & 32)
		qo.lease_ns = NSEC_PER_MSEC;
	if (st.qflags & 128)
		qo.flags |= SHMBUS_QUEUE_CHECKSUM;
	/* settings the bus has no room for are refused: nothing to fuzz */
	if (shmbus__queue_declare(bus, "q", &qo) < 0)
		goto out;
	p = shmbus_producer__new(bus, "q", NULL);
	c = shmbus_consumer__new(bus, "q", &co);
	if (!p || !c)
		abort();
	for (unsigned i = 0; i < st.npub % 24u; i++)
		publish(p, i, qo.priorities, st.qflags & 1);
	while (nheld < st.nhold % 16u &&
	       shmbus_consumer__try_receive(c, &held[nheld]) == 0)
		nheld++;
	if (st.qflags & 64) {
		SHMBUS_OPTS(shmbus_topic_opts, to, .msg_size = 200,
			    .history = 4,
			    .flags = st.qflags & 128 ? SHMBUS_QUEUE_CHECKSUM : 0);
		SHMBUS_OPTS(shmbus_sub_opts, so, .group = "g",
			    .flags = SHMBUS_SUB_HISTORY, .max_len = 8,
			    .prefetch = 16);

		if (shmbus__topic_declare(bus, "ev", &to) >= 0 &&
		    (tp = shmbus_producer__new(bus, "ev", NULL)) != NULL) {
			publish(tp, 0, 1, false);
			sub = shmbus_consumer__subscribe(bus, "ev", &so);
			for (unsigned i = 1; i < st.npub % 8u; i++)
				publish(tp, i, 1, false);
		}
	}

	/* a member scribbles */
	while (size)
		patch(bus, &data, &size);
	arena_validate(bus->arena.base, bus->arena.size, why, sizeof(why));
	ask_tick(0);

	bus2 = shmbus__open("f", &oo);
	if (bus2)
		c2 = shmbus_consumer__new(bus2, "q", &co);

	for (unsigned i = 0; i < nheld; i++) {
		switch (i % 5) {
		case 0: shmbus_consumer__ack(c, &held[i]); break;
		case 1: shmbus_consumer__nack(c, &held[i], 0); break;
		case 2: shmbus_consumer__extend(c, &held[i], 0);
			shmbus_consumer__ack(c, &held[i]); break;
		case 3: shmbus_consumer__reject(c, &held[i]); break;
		case 4: break;	/* released when the consumer goes */
		}
	}
	for (unsigned i = 0; i < st.npub2 % 16u; i++)
		publish(p, 100 + i, qo.priorities, st.qflags & 1);
	for (unsigned i = 0; i < st.nrecv % 32u; i++) {
		struct shmbus_consumer *cc = c2 && (i & 1) ? c2 : c;
		struct shmbus_msg m;

		if (shmbus_consumer__try_receive(cc, &m) == 0) {
			if (i % 3 == 2)
				shmbus_consumer__nack(cc, &m, 0);
			else
				shmbus_consumer__ack(cc, &m);
		}
		if (sub && shmbus_consumer__try_receive(sub, &m) == 0 &&
		    i % 2)
			shmbus_consumer__ack(sub, &m);
		if (tp && i % 4 == 0)
			publish(tp, i, 1, false);
	}
	/* leases run out with the consumers attached */
	ask_tick((int64_t)st.tick * NSEC_PER_SEC);

	/* detaching is a request answered before the next; the closes,
	 * last, reach the daemon as EOFs it reads before it stops */
out:
	shmbus_consumer__free(c2);
	shmbus_consumer__free(sub);
	shmbus_consumer__free(c);
	shmbus_producer__free(tp);
	shmbus_producer__free(p);
	shmbus__close(bus2);
	shmbus__close(bus);
	if (write(ask_wfd, &one, sizeof(one)) != sizeof(one))
		abort();
	pthread_join(th, NULL);

	tick_all((int64_t)st.tick * NSEC_PER_SEC);
	buses_free(&dmn);
	quota_free();	/* what the buses were charged: the next input starts clean */
	return 0;
}
