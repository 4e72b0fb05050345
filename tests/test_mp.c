// SPDX-License-Identifier: MIT
/*
 * test_mp.c - real processes: 4 producer processes x 4 consumer processes
 * on one queue, 1,000,000 messages per producer, each carrying producer
 * id, sequence number and a checksum over a variable-size payload. Every
 * message must arrive exactly once, uncorrupted, and in order per producer
 * as seen by each consumer. The producers use the four publish paths
 * (copy, loan/commit, batch, copy with timeout) and the consumers the four
 * receive paths (view, copy, batch, try-receive loop).
 */
#include "helpers.h"
#include "shmbus.h"

#define NPROD	4
#define NCONS	4
#define QNAME	"mp.work"

struct msg {
	uint32_t producer;
	uint32_t seq;
	uint32_t len;		/* payload bytes after this header */
	uint32_t csum;
	uint8_t payload[];
};

struct shared {
	uint64_t received;
	uint64_t corrupt;
	uint64_t dups;
	uint64_t disorder;
	uint8_t bits[];		/* one bit per (producer, seq) */
};

static long per_prod;
static struct shared *sh;

static size_t fill(uint8_t *buf, uint32_t p, uint32_t s)
{
	struct msg *m = (struct msg *)buf;

	m->producer = p;
	m->seq = s;
	m->len = 8 + (s * 7u + p) % 180;
	for (uint32_t i = 0; i < m->len; i++)
		m->payload[i] = (uint8_t)(p * 31 + s + i);
	m->csum = 0;
	m->csum = t_fnv(m, sizeof(*m) + m->len);
	return sizeof(*m) + m->len;
}

static void check(const void *data, size_t len, uint32_t *last)
{
	struct msg m;
	uint32_t csum;
	uint64_t bit;
	uint8_t old;

	if (len < sizeof(m)) {
		atomic_add_relaxed(&sh->corrupt, 1);
		return;
	}
	memcpy(&m, data, sizeof(m));
	if (m.producer >= NPROD || m.seq >= per_prod ||
	    sizeof(m) + m.len != len) {
		atomic_add_relaxed(&sh->corrupt, 1);
		return;
	}
	{
		uint8_t tmp[sizeof(m) + 256];

		memcpy(tmp, data, len);
		((struct msg *)tmp)->csum = 0;
		csum = t_fnv(tmp, len);
	}
	if (csum != m.csum) {
		atomic_add_relaxed(&sh->corrupt, 1);
		return;
	}
	if (last[m.producer] != UINT32_MAX && m.seq <= last[m.producer])
		atomic_add_relaxed(&sh->disorder, 1);
	last[m.producer] = m.seq;
	bit = (uint64_t)m.producer * per_prod + m.seq;
	old = atomic_fetch_or(&sh->bits[bit / 8], 1u << (bit % 8));
	if (old & (1u << (bit % 8)))
		atomic_add_relaxed(&sh->dups, 1);
	atomic_fetch_add(&sh->received, 1);
}

static void producer(uint32_t id)
{
	struct shmbus *bus = shmbus__open("mp", NULL);
	struct shmbus_producer *p;
	SHMBUS_OPTS(shmbus_pub_opts, wait, .timeout_ns = -1);
	uint8_t buf[512];

	CHILD_CHECK(bus, "open: %s", strerror(errno));
	p = shmbus_producer__new(bus, QNAME, NULL);
	CHILD_CHECK(p, "producer: %s", strerror(errno));
	for (uint32_t s = 0; s < per_prod;) {
		int err;

		switch (id) {
		case 0:		/* copy, waiting when full */
			err = shmbus_producer__publish(p, buf, fill(buf, id, s),
						       &wait);
			CHILD_CHECK(!err, "publish: %s", strerror(-err));
			s++;
			break;
		case 1: {	/* zero copy */
			void *b = shmbus_producer__loan(p, 512, -1);
			size_t len;

			CHILD_CHECK(b, "loan: %s", strerror(errno));
			len = fill(b, id, s);
			err = shmbus_producer__commit(p, b, len, &wait);
			CHILD_CHECK(!err, "commit: %s", strerror(-err));
			s++;
			break;
		}
		case 2: {	/* batches of up to 16 */
			uint8_t bb[16][512];
			struct iovec iov[16];
			unsigned n = 0;

			while (n < 16 && s + n < per_prod) {
				iov[n].iov_base = bb[n];
				iov[n].iov_len = fill(bb[n], id, s + n);
				n++;
			}
			err = shmbus_producer__publish_batch(p, iov, n, &wait);
			CHILD_CHECK(err > 0, "batch: %s", strerror(-err));
			s += err;
			break;
		}
		default:	/* no timeout: retry on a full queue ourselves */
			err = shmbus_producer__publish(p, buf, fill(buf, id, s),
						       NULL);
			if (err == -ENOBUFS) {
				sched_yield();
				break;
			}
			CHILD_CHECK(!err, "publish: %s", strerror(-err));
			s++;
			break;
		}
	}
	shmbus_producer__free(p);
	shmbus__close(bus);
	_exit(0);
}

static void consumer(uint32_t id)
{
	uint64_t total = (uint64_t)NPROD * per_prod;
	struct shmbus *bus = shmbus__open("mp", NULL);
	struct shmbus_consumer *c;
	uint32_t last[NPROD];

	CHILD_CHECK(bus, "open: %s", strerror(errno));
	c = shmbus_consumer__new(bus, QNAME, NULL);
	CHILD_CHECK(c, "consumer: %s", strerror(errno));
	memset(last, 0xff, sizeof(last));
	while (smp_load_acquire(&sh->received) < total) {
		struct shmbus_msg m[8];
		uint8_t buf[512];
		ssize_t n;
		int err;

		switch (id) {
		case 0:
			err = shmbus_consumer__receive_view(c, &m[0], 50000000);
			if (!err) {
				check(m[0].data, m[0].len, last);
				shmbus_consumer__release(c, &m[0]);
			}
			break;
		case 1:
			n = shmbus_consumer__receive(c, buf, sizeof(buf), 50000000);
			err = n < 0 ? (int)n : 0;
			if (n >= 0)
				check(buf, n, last);
			break;
		case 2:
			err = shmbus_consumer__receive_batch(c, m, 8, 50000000);
			for (int i = 0; i < err; i++) {
				check(m[i].data, m[i].len, last);
				shmbus_consumer__release(c, &m[i]);
			}
			if (err > 0)
				err = 0;
			break;
		default:
			err = shmbus_consumer__try_receive(c, &m[0]);
			if (!err) {
				check(m[0].data, m[0].len, last);
				shmbus_consumer__release(c, &m[0]);
			} else if (err == -EAGAIN) {
				sched_yield();
				err = 0;
			}
			break;
		}
		CHILD_CHECK(!err || err == -ETIMEDOUT, "receive: %s",
			    strerror(-err));
	}
	shmbus_consumer__free(c);
	shmbus__close(bus);
	_exit(0);
}

static void test_4x4(void **state)
{
	uint64_t total;
	pid_t pids[NPROD + NCONS];
	struct shmbus *bus;
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_len = 1024, .msg_size = 512,
		    .max_consumers = NCONS);
	struct shmbus_queue_info qi;
	int64_t t0;
	int rc;

	(void)state;
	per_prod = t_scaled(1000000);
	total = (uint64_t)NPROD * per_prod;
	sh = t_shared(sizeof(*sh) + total / 8 + 1);
	bus = shmbus__open("mp", NULL);
	assert_non_null(bus);
	assert_int_equal(shmbus__queue_declare(bus, QNAME, &qo), 1);

	t0 = t_now_ns();
	for (uint32_t i = 0; i < NCONS; i++)
		if (!(pids[NPROD + i] = fork()))
			consumer(i);
	for (uint32_t i = 0; i < NPROD; i++)
		if (!(pids[i] = fork()))
			producer(i);
	for (int i = 0; i < NPROD + NCONS; i++) {
		rc = t_wait(pids[i], 400000);
		if (rc)
			fail_msg("%s %d exited %d (received %llu of %llu)",
				 i < NPROD ? "producer" : "consumer",
				 i < NPROD ? i : i - NPROD, rc,
				 (unsigned long long)sh->received,
				 (unsigned long long)total);
	}
	print_message("%llu messages through 4x4 processes in %.2f s\n",
		      (unsigned long long)total, (t_now_ns() - t0) / 1e9);
	assert_int_equal(sh->corrupt, 0);
	assert_int_equal(sh->dups, 0);
	assert_int_equal(sh->disorder, 0);
	assert_int_equal(sh->received, total);
	for (uint64_t b = 0; b < total; b++)
		if (!(sh->bits[b / 8] & (1u << (b % 8))))
			fail_msg("message %llu of producer %llu never arrived",
				 (unsigned long long)(b % per_prod),
				 (unsigned long long)(b / per_prod));
	/* the arena's own counters agree */
	assert_int_equal(shmbus__queue_info(bus, QNAME, &qi), 0);
	assert_int_equal(qi.stat[SHMBUS_STAT_PUBLISHED], total);
	assert_int_equal(qi.stat[SHMBUS_STAT_DELIVERED], total);
	assert_int_equal(qi.depth, 0);
	assert_int_equal(qi.stat[SHMBUS_STAT_CORRUPT], 0);
	shmbus__close(bus);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_4x4),
	};

	return T_RUN_WITH_DAEMON("multi-process", tests);
}
