// SPDX-License-Identifier: MIT
/*
 * powercut.c - the two halves of the power-cut test of persistent queues
 * (tests/powercut/run-vm.sh), run inside the VM against its daemon:
 *
 *   powercut pub QUEUE always|batch|never
 *	declares QUEUE persistent with that sync policy on bus "pc", then
 *	NPROD producer processes publish numbered messages in batches of
 *	1..16 until the host kills the VM. Each prints "SENT p n" once
 *	messages 1..n of producer p are in the intake, and "CONFIRMED p n"
 *	once shmbus_producer__confirm_wait() said they are all on disk.
 *	Nothing is printed for a message before its publish returned.
 *
 *   powercut check QUEUE
 *	after the next boot's daemon recovered the bus: the journal's
 *	numbers, then every message consumed, verified (header, payload
 *	checksum, content) and acked, printed as runs of ids per producer
 *	("GOT p first last"), duplicates ("DUP p id extra") and corrupt
 *	messages ("CORRUPT p id why"); then the queue is deleted.
 *
 * The host compares the last boot's CONFIRMED lines with the GOT runs.
 * Lines are written whole (line buffered), so that the producers' lines
 * never interleave on the console.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmbus.h"

#define BUS		"pc"
#define NPROD		2
/* per producer: both together stay under the 8,192 chunks of the
 * default 256-byte pool, since no one consumes while they publish */
#define MAX_ID		3000
#define MAX_BATCH	16
#define MIN_LEN		(sizeof(struct pc_hdr))
#define MAX_LEN		240
#define PC_MAGIC	0x50437574u	/* "PCut" */
#define SEC		1000000000LL

/* The head of every payload; the rest is bytes made from (prod, id). */
struct pc_hdr {
	uint32_t magic;
	uint16_t prod;
	uint16_t len;		/* of the whole payload */
	uint64_t id;
	uint64_t sum;		/* FNV-1a of the payload with sum = 0 */
};

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
	const unsigned char *c = p;

	while (n--)
		h = (h ^ *c++) * 0x100000001b3ull;
	return h;
}

static uint64_t payload_sum(const unsigned char *buf, size_t len)
{
	static const uint64_t zero;
	uint64_t h = 0xcbf29ce484222325ull;

	h = fnv1a(h, buf, offsetof(struct pc_hdr, sum));
	h = fnv1a(h, &zero, sizeof(zero));
	return fnv1a(h, buf + sizeof(struct pc_hdr),
		     len - sizeof(struct pc_hdr));
}

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	return x ^ (x >> 33);
}

/* The payload of message @id of producer @prod: its length and bytes
 * follow from the two alone, so the checker can rebuild it. */
static size_t make_payload(unsigned char *buf, unsigned prod, uint64_t id)
{
	uint64_t seed = mix(((uint64_t)prod << 32) ^ id);
	size_t len = MIN_LEN + seed % (MAX_LEN - MIN_LEN + 1);
	struct pc_hdr h = {
		.magic = PC_MAGIC, .prod = (uint16_t)prod,
		.len = (uint16_t)len, .id = id,
	};

	for (size_t i = sizeof(h); i < len; i++)
		buf[i] = (unsigned char)mix(seed + i);
	memcpy(buf, &h, sizeof(h));
	h.sum = payload_sum(buf, len);
	memcpy(buf, &h, sizeof(h));
	return len;
}

static struct shmbus *open_bus(void)
{
	SHMBUS_OPTS(shmbus_open_opts, oo, .flags = SHMBUS_OPEN_NOSTART,
		    .connect_timeout_ms = 30000);
	struct shmbus *bus = shmbus__open(BUS, &oo);

	if (!bus)
		printf("PC-ERROR open %s: %s %s\n", BUS, strerror(errno),
		       shmbus_errmsg());
	return bus;
}

/* One producer process: batches of 1..MAX_BATCH until MAX_ID. */
static int produce(const char *queue, unsigned prod)
{
	SHMBUS_OPTS(shmbus_producer_opts, po,
		    .flags = SHMBUS_PRODUCER_ASYNC_CONFIRM);
	SHMBUS_OPTS(shmbus_pub_opts, pub, .timeout_ns = 10 * SEC);
	static unsigned char bufs[MAX_BATCH][MAX_LEN];
	struct iovec iov[MAX_BATCH];
	struct shmbus_producer *p;
	struct shmbus *bus = open_bus();
	uint64_t sent = 0;
	int r;

	if (!bus)
		return 1;
	p = shmbus_producer__new(bus, queue, &po);
	if (!p) {
		printf("PC-ERROR producer %u: %s\n", prod, strerror(errno));
		return 1;
	}
	srand((unsigned)(time(NULL) ^ getpid()));
	while (sent < MAX_ID) {
		unsigned n = 1 + (unsigned)rand() % MAX_BATCH;

		if (n > MAX_ID - sent)
			n = (unsigned)(MAX_ID - sent);
		for (unsigned i = 0; i < n; i++) {
			iov[i].iov_base = bufs[i];
			iov[i].iov_len = make_payload(bufs[i], prod,
						      sent + 1 + i);
		}
		r = shmbus_producer__publish_batch(p, iov, n, &pub);
		if (r <= 0) {
			printf("PC-ERROR publish %u %llu: %s\n", prod,
			       (unsigned long long)sent + 1, strerror(-r));
			return 1;
		}
		sent += (unsigned)r;
		printf("SENT %u %llu\n", prod, (unsigned long long)sent);
		r = shmbus_producer__confirm_wait(p, 60 * SEC);
		if (r) {
			printf("PC-ERROR confirm %u %llu: %s\n", prod,
			       (unsigned long long)sent, strerror(-r));
			return 1;
		}
		printf("CONFIRMED %u %llu\n", prod, (unsigned long long)sent);
	}
	shmbus_producer__free(p);
	shmbus__close(bus);
	return 0;
}

static int parse_sync(const char *s, uint32_t *sync)
{
	if (!strcmp(s, "always"))
		*sync = SHMBUS_SYNC_ALWAYS;
	else if (!strcmp(s, "batch"))
		*sync = SHMBUS_SYNC_BATCH;
	else if (!strcmp(s, "never"))	/* the harness's own check: it
					 * must see confirmed messages lost */
		*sync = SHMBUS_SYNC_NEVER;
	else
		return -1;
	return 0;
}

static int cmd_pub(const char *queue, const char *sync_name)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .flags = SHMBUS_QUEUE_DURABLE,
		    .max_len = 8192, .msg_size = MAX_LEN);
	struct shmbus *bus;
	pid_t kids[NPROD];
	int r, st, bad = 0;

	if (parse_sync(sync_name, &qo.sync)) {
		printf("PC-ERROR sync %s\n", sync_name);
		return 2;
	}
	/* batch: a group commit wide enough to gather several batches of
	 * both producers under TCG */
	if (qo.sync == SHMBUS_SYNC_BATCH)
		qo.sync_interval_ns = 10000000;
	bus = open_bus();
	if (!bus)
		return 1;
	r = shmbus__queue_declare(bus, queue, &qo);
	if (r < 0) {
		printf("PC-ERROR declare %s: %s %s\n", queue, strerror(-r),
		       shmbus_errmsg());
		return 1;
	}
	printf("PC-DECLARED %s %s\n", queue, sync_name);
	fflush(stdout);
	for (unsigned k = 0; k < NPROD; k++) {
		kids[k] = fork();
		if (kids[k] == 0)
			_exit(produce(queue, k));
	}
	for (unsigned k = 0; k < NPROD; k++)
		if (kids[k] < 0 || waitpid(kids[k], &st, 0) != kids[k] ||
		    !WIFEXITED(st) || WEXITSTATUS(st))
			bad = 1;
	printf("PC-PUB-END %s\n", bad ? "failed" : "all-sent");
	shmbus__close(bus);
	return bad;
}

/* What the checker saw of each id of each producer. */
static uint16_t seen[NPROD][MAX_ID + 1];

/* 0, or why @m is not a message make_payload() built. */
static const char *verify(const struct shmbus_msg *m, unsigned *prod,
			  uint64_t *id)
{
	unsigned char want[MAX_LEN];
	struct pc_hdr h;

	*prod = 0;
	*id = 0;
	if (m->len < sizeof(h) || m->len > MAX_LEN)
		return "length";
	memcpy(&h, m->data, sizeof(h));
	if (h.magic != PC_MAGIC)
		return "magic";
	*prod = h.prod;
	*id = h.id;
	if (h.len != m->len)
		return "header-length";
	if (payload_sum(m->data, m->len) != h.sum)
		return "checksum";
	if (h.prod >= NPROD || h.id == 0 || h.id > MAX_ID)
		return "id";
	if (make_payload(want, h.prod, h.id) != m->len ||
	    memcmp(want, m->data, m->len))
		return "content";
	return NULL;
}

static void print_runs(void)
{
	for (unsigned p = 0; p < NPROD; p++) {
		uint64_t first = 0;

		for (uint64_t id = 1; id <= MAX_ID + 1; id++) {
			int have = id <= MAX_ID && seen[p][id];

			if (have && !first)
				first = id;
			if (!have && first) {
				printf("GOT %u %llu %llu\n", p,
				       (unsigned long long)first,
				       (unsigned long long)id - 1);
				first = 0;
			}
			if (have && seen[p][id] > 1)
				printf("DUP %u %llu %u\n", p,
				       (unsigned long long)id,
				       seen[p][id] - 1u);
		}
	}
}

static void print_journal(struct shmbus *bus, const char *queue)
{
	SHMBUS_OPTS(shmbus_journal_info, ji);
	int r = shmbus__queue_journal(bus, queue, &ji);

	if (r) {
		printf("PC-ERROR journal %s: %s\n", queue, strerror(-r));
		return;
	}
	printf("PC-JOURNAL %s replayed=%llu corrupt=%llu live=%llu "
	       "segments=%u bytes=%llu\n", queue,
	       (unsigned long long)ji.replayed, (unsigned long long)ji.corrupt,
	       (unsigned long long)ji.live, ji.segments,
	       (unsigned long long)ji.bytes);
}

static int cmd_check(const char *queue)
{
	SHMBUS_OPTS(shmbus_consumer_opts, co, .spin_ns = -1);
	struct shmbus_queue_info qi;
	uint64_t received = 0, corrupt = 0;
	struct shmbus_consumer *c;
	struct shmbus *bus = open_bus();
	int r;

	if (!bus)
		return 1;
	r = shmbus__queue_info(bus, queue, &qi);
	if (r == -ENOENT) {
		printf("PC-NOQUEUE %s\n", queue);
		shmbus__close(bus);
		return 0;
	}
	if (r || !(qi.flags & SHMBUS_QUEUE_DURABLE)) {
		printf("PC-ERROR queue %s: %s flags %#x\n", queue,
		       strerror(-r), qi.flags);
		return 1;
	}
	print_journal(bus, queue);
	c = shmbus_consumer__new(bus, queue, &co);
	if (!c) {
		printf("PC-ERROR consumer: %s\n", strerror(errno));
		return 1;
	}
	for (;;) {
		struct shmbus_msg m;
		const char *why;
		unsigned prod;
		uint64_t id;

		/* recovery put every message back before the daemon
		 * listened; a pause this long means the queue is empty */
		r = shmbus_consumer__receive_view(c, &m, 3 * SEC);
		if (r == -ETIMEDOUT)
			break;
		if (r) {
			printf("PC-ERROR receive: %s\n", strerror(-r));
			return 1;
		}
		received++;
		why = verify(&m, &prod, &id);
		if (why) {
			corrupt++;
			printf("CORRUPT %u %llu %s\n", prod,
			       (unsigned long long)id, why);
		} else if (seen[prod][id] < UINT16_MAX) {
			seen[prod][id]++;
		}
		r = shmbus_consumer__ack(c, &m);
		if (r) {
			printf("PC-ERROR ack: %s\n", strerror(-r));
			return 1;
		}
	}
	/* the timeout ended the loop: nothing may be left waiting */
	r = shmbus__queue_info(bus, queue, &qi);
	if (r || qi.depth) {
		printf("PC-ERROR %s: %llu messages left after the check (%d)\n",
		       queue, (unsigned long long)qi.depth, r);
		return 1;
	}
	print_runs();
	printf("PC-RECEIVED %llu corrupt %llu\n", (unsigned long long)received,
	       (unsigned long long)corrupt);
	shmbus_consumer__free(c);
	/* the next iteration uses a queue of its own: this one's journal
	 * goes, and the disk holds one iteration at a time */
	r = shmbus__queue_delete(bus, queue);
	printf("PC-DELETED %s %d\n", queue, r);
	shmbus__close(bus);
	return r ? 1 : 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 4 && !strcmp(argv[1], "pub"))
		return cmd_pub(argv[2], argv[3]);
	if (argc == 3 && !strcmp(argv[1], "check"))
		return cmd_check(argv[2]);
	fprintf(stderr, "usage: powercut pub QUEUE always|batch|never\n"
			"       powercut check QUEUE\n");
	return 2;
}
