// SPDX-License-Identifier: MIT
/*
 * mkseeds.c - the fuzzers' seed corpora, made from valid frames and
 * settings at build time (so they follow proto.h as it changes):
 *
 *   mkseeds frames DIR   conversations for fuzz_frames (its record format)
 *   mkseeds arena DIR    settings and patches for fuzz_arena
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

static uint8_t buf[16384];
static size_t len;

static void put(const void *p, size_t n)
{
	if (len + n > sizeof(buf))
		abort();
	memcpy(buf + len, p, n);
	len += n;
}

static void put8(unsigned v)
{
	uint8_t b = (uint8_t)v;

	put(&b, 1);
}

static void save(const char *dir, const char *name)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(buf, 1, len, f) != len || fclose(f)) {
		perror(path);
		exit(1);
	}
	len = 0;
}

/* ---- fuzz_frames records ---------------------------------------------- */

enum { RAW = 0, TYPED = 1, RAW_FD = 2, CLOSE = 3, TICK = 4, SCRIBBLE = 5,
       TYPED_FD = 6, TYPED_TICK = 7 };

static uint32_t seq;

static void typed(int conn, unsigned type, const void *body, size_t n)
{
	put8((TYPED << 2) | conn);
	put8(type);
	seq++;
	put(&seq, 4);
	put(body, n);
}

static void hello(int conn)
{
	struct sbc_hello q = { SBC_VERSION, SBC_VERSION };

	typed(conn, SBC_HELLO, &q, sizeof(q));
}

static void bus_open(int conn, const char *name, uint32_t flags,
		     uint32_t mode)
{
	struct sbc_bus_open q;

	memset(&q, 0, sizeof(q));
	strcpy(q.name, name);
	q.flags = flags;
	q.mode = mode;
	q.max_queues = 4;
	q.max_slots = 8;
	q.ring_bytes = 16384;
	q.nr_pools = 2;
	q.pools[0].payload = 256;
	q.pools[0].count = 64;
	q.pools[1].payload = 4096;
	q.pools[1].count = 8;
	typed(conn, SBC_BUS_OPEN, &q, sizeof(q));
}

static void declare(int conn, const char *name, uint32_t flags,
		    const char *dlq, uint32_t prio, uint64_t dedup)
{
	struct sbc_queue_declare q;

	memset(&q, 0, sizeof(q));
	strcpy(q.name, name);
	q.max_len = 16;
	q.msg_size = 200;
	q.max_consumers = 4;
	q.flags = flags;
	q.lease_ns = 1000000;
	q.backoff_init_ns = 1000000;
	q.max_deliveries = 2;
	if (dlq)
		strcpy(q.dlq, dlq);
	q.dedup_window_ns = dedup;
	q.priorities = prio;
	typed(conn, SBC_QUEUE_DECLARE, &q, sizeof(q));
}

/* A declare with the sync policy fields as given (valid or not). */
static void declare_sync(int conn, const char *name, uint32_t flags,
			 uint32_t sync, uint32_t pad, uint64_t interval,
			 uint32_t msg_size)
{
	struct sbc_queue_declare q;

	memset(&q, 0, sizeof(q));
	strcpy(q.name, name);
	q.max_len = 16;
	q.msg_size = msg_size;
	q.flags = flags;
	q.sync = sync;
	q.__pad = pad;
	q.sync_interval_ns = interval;
	typed(conn, SBC_QUEUE_DECLARE, &q, sizeof(q));
}

static void attach(int conn, const char *name, uint32_t role)
{
	struct sbc_attach q;

	memset(&q, 0, sizeof(q));
	strcpy(q.name, name);
	q.role = role;
	typed(conn, SBC_ATTACH, &q, sizeof(q));
}

static void tick(unsigned secs)
{
	put8(TICK << 2);
	put8(secs);
}

static void frames(const char *dir)
{
	struct sbc_detach det = { 0, 1 };
	struct sbc_queue_delete del;
	struct sbc_subscribe sub;
	struct sbc_unsubscribe unsub;
	struct sbc_seats seats = { 1, 1 };
	struct sbc_dispose disp;
	struct sbc_hdr bad;

	/* one owner: declare, attach, detach, delete */
	hello(0);
	bus_open(0, "b", SBC_OPEN_CREATE, 0660);
	declare(0, "dlq", 0, NULL, 0, 0);
	declare(0, "q", 0, "dlq", 2, 1000000000);
	attach(0, "q", SHMBUS_ROLE_PRODUCER);
	attach(0, "q", SHMBUS_ROLE_CONSUMER);
	tick(0);
	typed(0, SBC_DETACH, &det, sizeof(det));
	memset(&del, 0, sizeof(del));
	strcpy(del.name, "q");
	typed(0, SBC_QUEUE_DELETE, &del, sizeof(del));
	tick(5);
	save(dir, "owner");

	/* other users: group member, nobody, a private queue, closes */
	hello(0);
	bus_open(0, "b", SBC_OPEN_CREATE, 0666);
	declare(0, "q", 0, NULL, 0, 0);
	/* root's bus: the others name its owner (uid 0) */
	hello(1);
	bus_open(1, "b", SBC_OPEN_OWNER, 0);
	attach(1, "q", SHMBUS_ROLE_CONSUMER);
	hello(3);
	bus_open(3, "b", SBC_OPEN_RDONLY | SBC_OPEN_OWNER, 0);
	hello(2);
	bus_open(2, "b", SBC_OPEN_OWNER, 0);
	declare(2, "_reply.1", SBC_QUEUE_PRIVATE, NULL, 0, 0);
	attach(2, "_reply.1", SHMBUS_ROLE_CONSUMER);
	put8((CLOSE << 2) | 2);
	put8((CLOSE << 2) | 1);
	tick(60);
	save(dir, "users");

	/* topics: declare, subscribe, seats, unsubscribe */
	hello(0);
	bus_open(0, "t", SBC_OPEN_CREATE, 0600);
	declare(0, "order.created", SBC_QUEUE_TOPIC, NULL, 0, 0);
	memset(&sub, 0, sizeof(sub));
	strcpy(sub.pattern, "order.*");
	strcpy(sub.group, "billing");
	sub.flags = SBC_SUB_DURABLE | SBC_SUB_HISTORY;
	sub.max_len = 8;
	typed(0, SBC_SUBSCRIBE, &sub, sizeof(sub));
	typed(0, SBC_SEATS, &seats, sizeof(seats));
	memset(&unsub, 0, sizeof(unsub));
	strcpy(unsub.pattern, "order.*");
	strcpy(unsub.group, "billing");
	typed(0, SBC_UNSUBSCRIBE, &unsub, sizeof(unsub));
	save(dir, "topics");

	/* durable declares, good and malformed: sync out of range, __pad
	 * set, intervals out of range, a sync policy without DURABLE,
	 * messages too big for a journal record */
	hello(0);
	bus_open(0, "d", SBC_OPEN_CREATE, 0600);
	declare_sync(0, "ok", SBC_QUEUE_DURABLE, 1, 0, 1000000, 200);
	declare_sync(0, "s3", SBC_QUEUE_DURABLE, 3, 0, 0, 200);
	declare_sync(0, "pad", SBC_QUEUE_DURABLE, 0, 1, 0, 200);
	declare_sync(0, "i0", SBC_QUEUE_DURABLE, 0, 0, 1000000, 200);
	declare_sync(0, "ilo", SBC_QUEUE_DURABLE, 1, 0, 1, 200);
	declare_sync(0, "ihi", SBC_QUEUE_DURABLE, 1, 0, UINT64_MAX, 200);
	declare_sync(0, "big", SBC_QUEUE_DURABLE, 0, 0, 0, 2u << 20);
	declare_sync(0, "nodur", 0, 1, 0, 1000000, 200);
	attach(0, "ok", SHMBUS_ROLE_PRODUCER);
	tick(1);
	save(dir, "durable");

	/* a member scribbles over a bus with a consumer attached */
	hello(0);
	bus_open(0, "b", SBC_OPEN_CREATE, 0600);
	declare(0, "q", 0, NULL, 1, 0);
	attach(0, "q", SHMBUS_ROLE_CONSUMER);
	for (unsigned i = 0; i < 4; i++) {
		static const uint32_t offs[] = { 0, 4096, 8192, 70000 };
		uint8_t junk[16];

		memset(junk, 0xa5 + i, sizeof(junk));
		put8(SCRIBBLE << 2);
		put8(0);
		put(&offs[i], 4);
		put8(sizeof(junk));
		put(junk, sizeof(junk));
	}
	tick(100);
	memset(&disp, 0, sizeof(disp));
	disp.slot = 0;
	disp.slot_gen = 1;
	disp.ref = 3;
	disp.action = SBC_DISPOSE_RETRY;
	typed(0, SBC_DISPOSE, &disp, sizeof(disp));
	save(dir, "scribble");

	/* protocol errors: fds, a bad header, a frame too long */
	hello(0);
	put8((TYPED_FD << 2) | 1);
	put8(SBC_HELLO);
	put(&seq, 4);
	put(&(struct sbc_hello){ SBC_VERSION, SBC_VERSION },
	    sizeof(struct sbc_hello));
	memset(&bad, 0, sizeof(bad));
	bad.magic = SBC_MAGIC;
	bad.version = SBC_VERSION;
	bad.type = SBC_DETACH;
	bad.len = sizeof(bad) + 3;
	put8(RAW << 2 | 2);
	put(&(uint16_t){ sizeof(bad) + 3 }, 2);
	put(&bad, sizeof(bad));
	put("abc", 3);
	put8(RAW << 2 | 3);
	put(&(uint16_t){ 1500 }, 2);
	for (unsigned i = 0; i < 1500; i++)
		put8(i);
	save(dir, "errors");
}

/* ---- fuzz_arena inputs ------------------------------------------------- */

static void settings(unsigned qflags, unsigned prio, unsigned npub,
		     unsigned nhold)
{
	put8(2);	/* max_queues 4 */
	put8(3);	/* max_slots 6 */
	put8(16);	/* ring 32 KiB */
	put8(1 | 2 << 1 | 1 << 4);	/* two pools */
	put8(3);	/* max_len 16 */
	put8(prio);
	put8(qflags);
	put8(npub);
	put8(nhold);
	put8(20);	/* receives after */
	put8(6);	/* publishes after */
	put8(40);	/* periodic work 40 s ahead */
}

static void apatch(unsigned region, uint32_t off, const void *p, uint8_t n)
{
	put8(region);
	put8(off & 0xff);
	put8(off >> 8 & 0xff);
	put8(off >> 16 & 0xff);
	put8(n);
	put(p, n);
}

static void arena(const char *dir)
{
	uint8_t ff[16], zero[16];

	memset(ff, 0xff, sizeof(ff));
	memset(zero, 0, sizeof(zero));
	settings(0, 0, 8, 4);
	save(dir, "clean");
	settings(1 | 2 | 8, 3, 12, 6);
	save(dir, "dedup-dlq-prio");
	settings(4 | 32, 0, 10, 3);
	save(dir, "ttl-lease");
	settings(64 | 1, 1, 12, 3);
	save(dir, "topic");
	settings(128 | 64, 0, 10, 4);
	apatch(6, 200, ff, 16);		/* chunk bytes: checksums catch them */
	save(dir, "checksum");
	settings(0, 1, 8, 4);
	apatch(5, 0, ff, 16);		/* ring cells */
	apatch(6, 64, ff, 8);		/* a free-list link */
	save(dir, "rings");
	settings(2, 0, 8, 6);
	apatch(2, 0, ff, 16);		/* the first slot */
	apatch(1, 0, zero, 16);		/* the first queue descriptor */
	save(dir, "slots");
	settings(0, 0, 4, 2);
	apatch(0, 8, ff, 8);		/* the superblock */
	save(dir, "superblock");
	settings(0, 0, 4, 0);
	apatch(3, 0, zero, 16);		/* a pool descriptor */
	apatch(4, 0, ff, 8);		/* the ring bitmap */
	save(dir, "pools");
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: mkseeds frames|arena DIR\n");
		return 2;
	}
	if (!strcmp(argv[1], "frames"))
		frames(argv[2]);
	else if (!strcmp(argv[1], "arena"))
		arena(argv[2]);
	else
		return 2;
	return 0;
}
