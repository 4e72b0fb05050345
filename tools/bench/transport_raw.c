// SPDX-License-Identifier: MIT
/*
 * transport_raw.c - the baseline: a minimal raw single-producer
 * single-consumer ring in shared memory, one per channel, mapped before
 * fork. Busy mode spins on the indexes; block mode sleeps on an eventfd
 * at once and a producer that finds the ring full backs off as
 * libshmbus's publish does. Memory is ordered as libshmbus orders it.
 */
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>

#include "bench.h"
#include "barrier.h"	/* the raw ring orders memory as libshmbus does */

/*
 * Length, then the payload inline: a 64 B message spans 72 bytes. (Giving
 * the length a cache line of its own measured ~2x slower for 64 B.)
 */
struct raw_slot {
	uint64_t len;
	unsigned char data[MAX_MSG];
} __attribute__((aligned(CACHELINE)));

struct raw_ring {
	uint64_t head __attribute__((aligned(CACHELINE)));
	uint64_t tail __attribute__((aligned(CACHELINE)));
	uint32_t sleeping __attribute__((aligned(CACHELINE)));
	struct raw_slot slots[RING_SLOTS];
};

static struct raw_ring *raw_rings;	/* NR_CHAN, mapped before fork */
static int raw_efd[NR_CHAN];

/* Parent, at start: the rings of every channel, shared with the children. */
void raw_map_rings(void)
{
	raw_rings = map_shared(NR_CHAN * sizeof(struct raw_ring));
}

int raw_prepare(const struct run *r, int nchan)
{
	for (int c = 0; c < nchan; c++) {
		struct raw_ring *ring = &raw_rings[c];

		/* before the children are forked */
		WRITE_ONCE(ring->head, 0);
		WRITE_ONCE(ring->tail, 0);
		WRITE_ONCE(ring->sleeping, 0);
		raw_efd[c] = eventfd(0, EFD_CLOEXEC);
		if (raw_efd[c] < 0)
			return -errno;
		prep_fd_add(raw_efd[c]);
	}
	return 0;
}

int raw_open(struct end *e, int chan)
{
	e->ring = &raw_rings[chan];
	e->fd = raw_efd[chan];
	e->pos = 0;
	e->cached = 0;
	return 0;
}

/* Block mode, full ring: the same back-off as libshmbus's publish. */
static void raw_backoff(unsigned round)
{
	if (round < 64) {
		cpu_relax();
	} else if (round < 128) {
		sched_yield();
	} else {
		unsigned shift = round - 128 < 10 ? round - 128 : 10;
		long ns = 1000L << shift;
		struct timespec ts = { 0, ns > 1000000L ? 1000000L : ns };

		nanosleep(&ts, NULL);
	}
}

static void raw_wait_room(struct end *e)
{
	struct raw_ring *r = e->ring;
	unsigned round = 0;

	while (e->pos - e->cached >= RING_SLOTS) {
		e->cached = smp_load_acquire(&r->tail);
		if (e->pos - e->cached < RING_SLOTS)
			break;
		if (e->block)
			raw_backoff(round++);
		else
			cpu_relax();
	}
}

static int raw_wake(struct end *e)
{
	static const uint64_t one = 1;
	struct raw_ring *r = e->ring;

	/* Dekker with the consumer: head store, full fence, flag load */
	smp_mb();
	if (!READ_ONCE(r->sleeping))
		return 0;
	/* only the one who clears the flag owes the sleeper a token */
	if (!atomic_xchg(&r->sleeping, 0))
		return 0;
	return write_full(e->fd, &one, sizeof(one));
}

int raw_send(struct end *e, uint64_t seq)
{
	struct raw_slot *s;

	raw_wait_room(e);
	s = &e->ring->slots[e->pos % RING_SLOTS];
	fill(e->buf, e->size, seq);
	memcpy(s->data, e->buf, e->size);
	s->len = e->size;
	smp_store_release(&e->ring->head, ++e->pos);
	return e->block ? raw_wake(e) : 0;
}

static int raw_read_token(struct end *e)
{
	uint64_t v;

	return read_full(e->fd, &v, sizeof(v));
}

/* Block mode: announce sleep, re-check, sleep at once (no spinning). */
static int raw_sleep(struct end *e)
{
	struct raw_ring *r = e->ring;

	WRITE_ONCE(r->sleeping, 1);
	smp_mb();
	e->cached = smp_load_acquire(&r->head);
	if (e->cached != e->pos) {
		/* a producer that cleared the flag is writing a token:
		 * take it now, or our next sleep returns at once */
		if (!atomic_xchg(&r->sleeping, 0))
			return raw_read_token(e);
		return 0;
	}
	/* the producer that wakes us cleared the flag */
	return raw_read_token(e);
}

static int raw_wait_data(struct end *e)
{
	struct raw_ring *r = e->ring;
	int err;

	for (;;) {
		e->cached = smp_load_acquire(&r->head);
		if (e->cached != e->pos)
			return 0;
		if (!e->block) {
			cpu_relax();
			continue;
		}
		err = raw_sleep(e);
		if (err)
			return err;
	}
}

int raw_recv(struct end *e, uint64_t seq)
{
	struct raw_slot *s;
	int err;

	if (e->pos == e->cached) {
		err = raw_wait_data(e);
		if (err)
			return err;
	}
	s = &e->ring->slots[e->pos % RING_SLOTS];
	err = s->len == e->size ? verify(s->data, e->size, seq) : -EBADMSG;
	smp_store_release(&e->ring->tail, ++e->pos);
	return err;
}
