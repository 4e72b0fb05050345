// SPDX-License-Identifier: MIT
/*
 * bench.c - shmbus-bench: ping-pong round trip and one-way throughput of
 * shmbus against a pipe, a Unix stream socketpair and a minimal raw SPSC
 * shared-memory ring, between two processes pinned to CPU 0 and CPU 1.
 *
 * This file owns the whole benchmark: the transports under test (raw ring,
 * shmbus copy and loan/commit publish, pipe, socketpair) behind one small
 * interface, the two child roles (pinger/ponger, producer/consumer), the
 * parent that forks, times out and collects them, the private shmbusd it
 * starts and stops, and the report (tables and targets on stdout,
 * progress on stderr).
 *
 * Fairness: every message is fully written by the sender (a pattern that
 * depends on its sequence number, built in a local buffer and then handed
 * to the transport, or built in place for shmbus loan/commit) and fully
 * read by the receiver (every byte summed and checked, in place where the
 * transport allows it, as shmbus views and the raw ring do). A wrong,
 * lost or reordered message is an error.
 *
 * Modes: "busy" polls without ever sleeping (shmbus spin_ns = INT64_MAX);
 * "block" sleeps in the kernel as soon as nothing is there (shmbus
 * spin_ns = -1; the raw ring sleeps on an eventfd at once). A sender that
 * finds a queue full waits: shmbus publishes with timeout -1, the raw ring
 * spins (busy) or backs off as libshmbus does (block), pipes and sockets
 * block in write().
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmbus.h"
#include "barrier.h"	/* the raw ring orders memory as libshmbus does */

#define BUS_NAME		"bench"
#define MAX_MSG			4096u
#define RING_SLOTS		1024u	/* raw ring = shmbus max_len */
#define NR_CHAN			2	/* 0: ping / one-way, 1: pong */
#define MAX_REPS		15
#define CHILD_TIMEOUT_S		60	/* per measurement, per child */
#define PARENT_TIMEOUT_S	75
#define CACHELINE		64

static const char *const queue_names[NR_CHAN] = { "ping", "pong" };

/* ------------------------------------------------------------------ */
/* Configuration                                                      */
/* ------------------------------------------------------------------ */

enum tp { TP_RAW, TP_SHMBUS, TP_ACK, TP_LOAN, TP_PIPE, TP_UDS, NR_TP };
enum mode { MODE_BUSY, MODE_BLOCK, NR_MODES };

static const size_t sizes[] = { 64, 4096 };
#define NR_SIZES	2

static const char *const mode_names[NR_MODES] = { "busy", "block" };

struct config {
	unsigned reps;
	uint64_t rtt_busy;		/* round trips, busy-poll modes */
	uint64_t rtt_block;		/* round trips, blocking modes */
	uint64_t tput[NR_SIZES];	/* one-way messages per size */
	bool tp_on[NR_TP];
	bool size_on[NR_SIZES];
	bool mode_on[NR_MODES];
};

static struct config cfg = {
	.reps = 3,
	.rtt_busy = 100000,
	.rtt_block = 20000,
	.tput = { 2000000, 200000 },
};

/* One measurement, as the children see it. */
struct run {
	enum tp tp;
	enum mode mode;
	size_t size;
	bool rtt;			/* else one-way throughput */
	uint64_t warm;			/* not measured */
	uint64_t count;			/* measured */
	char label[64];
};

/* Shared with the children (MAP_SHARED before fork). */
struct shared {
	uint32_t ready;			/* start barrier */
	uint64_t elapsed_ns;		/* throughput: consumer's time */
	uint64_t nsamples;
	uint64_t samples[];		/* RTT, ns */
};

static struct shared *sh;
static size_t sh_max_samples;
static pid_t main_pid;

/* ------------------------------------------------------------------ */
/* Small helpers                                                      */
/* ------------------------------------------------------------------ */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static bool in_parent(void)
{
	return getpid() == main_pid;
}

/* Print and exit: exit() (cleanup) in the parent, _exit() in a child. */
__attribute__((format(printf, 1, 2), noreturn))
static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "shmbus-bench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (in_parent())
		exit(1);
	_exit(1);
}

static void *map_shared(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		die("mmap %zu bytes: %s", len, strerror(errno));
	return p;
}

/* ------------------------------------------------------------------ */
/* Payload: written whole by the sender, read whole by the receiver   */
/* ------------------------------------------------------------------ */

/* Word i (8 bytes at offset 8 * i) holds seq + 8 * i. */
static void fill(void *buf, size_t len, uint64_t seq)
{
	unsigned char *p = buf;

	for (size_t off = 0; off < len; off += 8) {
		uint64_t v = seq + off;

		memcpy(p + off, &v, sizeof(v));
	}
}

/* Sum every word; 0 if the message is the one sent as @seq. */
static int verify(const void *buf, size_t len, uint64_t seq)
{
	const unsigned char *p = buf;
	uint64_t n = len / 8, sum = 0, first;

	for (size_t off = 0; off < len; off += 8) {
		uint64_t v;

		memcpy(&v, p + off, sizeof(v));
		sum += v;
	}
	memcpy(&first, p, sizeof(first));
	if (first != seq || sum != n * seq + 4 * n * (n - 1))
		return -EBADMSG;
	return 0;
}

static int write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int read_full(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EPIPE;	/* the peer is gone */
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Transport interface                                                */
/* ------------------------------------------------------------------ */

struct raw_ring;

/* One direction of one channel, as one child holds it. */
struct end {
	size_t size;
	bool block;
	bool tx;
	int fd;				/* pipe, socket, raw eventfd */
	struct raw_ring *ring;
	uint64_t pos;			/* raw: our index */
	uint64_t cached;		/* raw: last seen index of the peer */
	struct shmbus_producer *prod;
	struct shmbus_consumer *cons;
	void *buf;			/* local message buffer */
};

struct transport {
	const char *name;
	bool has_busy;			/* busy-poll mode is meaningful */
	/* parent, before fork: make @nchan channels */
	int (*prepare)(const struct run *r, int nchan);
	/* child, once */
	int (*child_init)(void);
	void (*child_fini)(void);
	int (*open)(struct end *e, int chan);
	void (*close)(struct end *e);
	int (*send)(struct end *e, uint64_t seq);
	int (*recv)(struct end *e, uint64_t seq);
};

/* fds made by prepare(); the parent closes them all after forking */
static int prep_fds[2 * NR_CHAN];
static int nr_prep_fds;

static void prep_fd_add(int fd)
{
	prep_fds[nr_prep_fds++] = fd;
}

static void prep_fds_close(void)
{
	for (int i = 0; i < nr_prep_fds; i++)
		close(prep_fds[i]);
	nr_prep_fds = 0;
}

/* Child: close the prepared fds that neither of our ends uses. */
static void prep_fds_keep(const struct end *a, const struct end *b)
{
	for (int i = 0; i < nr_prep_fds; i++) {
		int fd = prep_fds[i];

		if ((a->buf && a->fd == fd) || (b->buf && b->fd == fd))
			continue;
		close(fd);
	}
}

/* ------------------------------------------------------------------ */
/* Transport: minimal raw SPSC shared-memory ring                     */
/* ------------------------------------------------------------------ */

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

static int raw_prepare(const struct run *r, int nchan)
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

static int raw_open(struct end *e, int chan)
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

static int raw_send(struct end *e, uint64_t seq)
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

static int raw_recv(struct end *e, uint64_t seq)
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

/* ------------------------------------------------------------------ */
/* Transport: shmbus (copy publish or loan/commit; view receive)      */
/* ------------------------------------------------------------------ */

static struct shmbus *bench_bus;	/* the parent's, then each child's */

static int sb_prepare(const struct run *r, int nchan)
{
	struct shmbus_queue_info qi;

	/* a measurement starts on empty queues */
	for (int c = 0; c < nchan; c++) {
		int err = shmbus__queue_info(bench_bus, queue_names[c], &qi);

		if (err)
			return err;
		if (qi.depth)
			return -ENOTEMPTY;
	}
	return 0;
}

static int sb_child_init(void)
{
	/* our own handle: the parent's must not cross fork */
	bench_bus = shmbus__open(BUS_NAME, NULL);
	return bench_bus ? 0 : -errno;
}

static void sb_child_fini(void)
{
	shmbus__close(bench_bus);
	bench_bus = NULL;
}

/* "shmbus" and "shmbus loan": auto-ack views (at-most-once, as the
 * foundation measured); "shmbus ack": leases, acked one by one. */
static int sb_open_mode(struct end *e, int chan, bool ack)
{
	SHMBUS_OPTS(shmbus_consumer_opts, co,
		    .spin_ns = e->block ? -1 : INT64_MAX,
		    .flags = ack ? 0 : SHMBUS_CONSUMER_AUTO_ACK);

	if (e->tx)
		e->prod = shmbus_producer__new(bench_bus, queue_names[chan],
					       NULL);
	else
		e->cons = shmbus_consumer__new(bench_bus, queue_names[chan],
					       &co);
	return e->prod || e->cons ? 0 : -errno;
}

static int sb_open(struct end *e, int chan)
{
	return sb_open_mode(e, chan, false);
}

static int sb_open_ack(struct end *e, int chan)
{
	return sb_open_mode(e, chan, true);
}

static void sb_close(struct end *e)
{
	shmbus_producer__free(e->prod);
	shmbus_consumer__free(e->cons);
	e->prod = NULL;
	e->cons = NULL;
}

static int sb_send(struct end *e, uint64_t seq)
{
	SHMBUS_OPTS(shmbus_pub_opts, po, .timeout_ns = -1);

	fill(e->buf, e->size, seq);
	return shmbus_producer__publish(e->prod, e->buf, e->size, &po);
}

static int sb_loan_send(struct end *e, uint64_t seq)
{
	SHMBUS_OPTS(shmbus_pub_opts, po, .timeout_ns = -1);
	void *buf = shmbus_producer__loan(e->prod, e->size, -1);
	int err;

	if (!buf)
		return -errno;
	fill(buf, e->size, seq);
	err = shmbus_producer__commit(e->prod, buf, e->size, &po);
	if (err)
		shmbus_producer__cancel(e->prod, buf);
	return err;
}

static int sb_recv(struct end *e, uint64_t seq)
{
	struct shmbus_msg m;
	int err;

	err = shmbus_consumer__receive_view(e->cons, &m, -1);
	if (err)
		return err;
	err = m.len == e->size ? verify(m.data, e->size, seq) : -EBADMSG;
	shmbus_consumer__release(e->cons, &m);
	return err;
}

/* ------------------------------------------------------------------ */
/* Transports: pipe and Unix stream socketpair                        */
/* ------------------------------------------------------------------ */

static int chan_fd[NR_CHAN][2];		/* [chan][tx] */

static int pipe_prepare(const struct run *r, int nchan)
{
	for (int c = 0; c < nchan; c++) {
		int p[2];

		if (pipe2(p, O_CLOEXEC) < 0)
			return -errno;
		chan_fd[c][0] = p[0];
		chan_fd[c][1] = p[1];
		prep_fd_add(p[0]);
		prep_fd_add(p[1]);
	}
	return 0;
}

static int uds_prepare(const struct run *r, int nchan)
{
	int sv[2];

	/* one bidirectional pair: chan c is sent on sv[c] */
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	prep_fd_add(sv[0]);
	prep_fd_add(sv[1]);
	for (int c = 0; c < NR_CHAN; c++) {
		chan_fd[c][1] = sv[c];
		chan_fd[c][0] = sv[1 - c];
	}
	return 0;
}

static int fd_open(struct end *e, int chan)
{
	e->fd = chan_fd[chan][e->tx];
	return 0;
}

static int fd_send(struct end *e, uint64_t seq)
{
	fill(e->buf, e->size, seq);
	return write_full(e->fd, e->buf, e->size);
}

static int fd_recv(struct end *e, uint64_t seq)
{
	int err = read_full(e->fd, e->buf, e->size);

	return err ? err : verify(e->buf, e->size, seq);
}

static int no_child_init(void)
{
	return 0;
}

static void no_child_fini(void)
{
}

static void no_close(struct end *e)
{
}

static const struct transport transports[NR_TP] = {
	[TP_RAW] = {
		.name = "raw ring", .has_busy = true,
		.prepare = raw_prepare,
		.child_init = no_child_init, .child_fini = no_child_fini,
		.open = raw_open, .close = no_close,
		.send = raw_send, .recv = raw_recv,
	},
	[TP_SHMBUS] = {
		.name = "shmbus", .has_busy = true,
		.prepare = sb_prepare,
		.child_init = sb_child_init, .child_fini = sb_child_fini,
		.open = sb_open, .close = sb_close,
		.send = sb_send, .recv = sb_recv,
	},
	[TP_ACK] = {
		.name = "shmbus ack", .has_busy = true,
		.prepare = sb_prepare,
		.child_init = sb_child_init, .child_fini = sb_child_fini,
		.open = sb_open_ack, .close = sb_close,
		.send = sb_send, .recv = sb_recv,
	},
	[TP_LOAN] = {
		.name = "shmbus loan", .has_busy = true,
		.prepare = sb_prepare,
		.child_init = sb_child_init, .child_fini = sb_child_fini,
		.open = sb_open, .close = sb_close,
		.send = sb_loan_send, .recv = sb_recv,
	},
	[TP_PIPE] = {
		.name = "pipe", .has_busy = false,
		.prepare = pipe_prepare,
		.child_init = no_child_init, .child_fini = no_child_fini,
		.open = fd_open, .close = no_close,
		.send = fd_send, .recv = fd_recv,
	},
	[TP_UDS] = {
		.name = "socketpair", .has_busy = false,
		.prepare = uds_prepare,
		.child_init = no_child_init, .child_fini = no_child_fini,
		.open = fd_open, .close = no_close,
		.send = fd_send, .recv = fd_recv,
	},
};

/* ------------------------------------------------------------------ */
/* Children                                                           */
/* ------------------------------------------------------------------ */

static char alarm_msg[160];
static size_t alarm_msg_len;

static void child_alarm(int sig)
{
	ssize_t n = write(STDERR_FILENO, alarm_msg, alarm_msg_len);

	(void)n;
	_exit(124);
}

static void child_fail(const struct run *r, int role, const char *what,
		       int err)
{
	die("%s, child %d: %s: %s", r->label, role, what, strerror(-err));
}

static void pin_cpu(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) < 0)
		die("sched_setaffinity(CPU %d): %s", cpu, strerror(errno));
}

static void start_line(void)
{
	atomic_fetch_add(&sh->ready, 1);
	while (smp_load_acquire(&sh->ready) < 2)
		cpu_relax();
}

static void end_open(const struct run *r, int role, struct end *e, int chan,
		     bool tx)
{
	const struct transport *t = &transports[r->tp];
	int err;

	e->size = r->size;
	e->block = r->mode == MODE_BLOCK;
	e->tx = tx;
	e->fd = -1;
	e->buf = aligned_alloc(CACHELINE, MAX_MSG);
	if (!e->buf)
		child_fail(r, role, "allocating a buffer", -ENOMEM);
	err = t->open(e, chan);
	if (err)
		child_fail(r, role, tx ? "opening the sender" :
					 "opening the receiver", err);
}

static void end_close(const struct run *r, struct end *e)
{
	if (!e->buf)
		return;
	transports[r->tp].close(e);
	free(e->buf);
	e->buf = NULL;
}

/* Role 0: send, wait for the echo, time each trip. */
static void rtt_ping(const struct run *r, struct end *tx, struct end *rx)
{
	const struct transport *t = &transports[r->tp];
	uint64_t n = r->warm + r->count;

	for (uint64_t i = 0; i < n; i++) {
		uint64_t t0 = now_ns(), t1;
		int err;

		err = t->send(tx, i);
		if (err)
			child_fail(r, 0, "send", err);
		err = t->recv(rx, i);
		if (err)
			child_fail(r, 0, "receive", err);
		t1 = now_ns();
		if (i >= r->warm)
			sh->samples[i - r->warm] = t1 - t0;
	}
	sh->nsamples = r->count;
}

/* Role 1: echo every message with a full message of the same size. */
static void rtt_pong(const struct run *r, struct end *tx, struct end *rx)
{
	const struct transport *t = &transports[r->tp];
	uint64_t n = r->warm + r->count;

	for (uint64_t i = 0; i < n; i++) {
		int err = t->recv(rx, i);

		if (err)
			child_fail(r, 1, "receive", err);
		err = t->send(tx, i);
		if (err)
			child_fail(r, 1, "send", err);
	}
}

static void tput_produce(const struct run *r, struct end *tx)
{
	const struct transport *t = &transports[r->tp];
	uint64_t n = r->warm + r->count;

	for (uint64_t i = 0; i < n; i++) {
		int err = t->send(tx, i);

		if (err)
			child_fail(r, 0, "send", err);
	}
}

/* The clock runs from the last warm-up message to the last message. */
static void tput_consume(const struct run *r, struct end *rx)
{
	const struct transport *t = &transports[r->tp];
	uint64_t n = r->warm + r->count, t0 = now_ns();

	for (uint64_t i = 0; i < n; i++) {
		int err = t->recv(rx, i);

		if (err)
			child_fail(r, 1, "receive", err);
		if (i + 1 == r->warm)
			t0 = now_ns();
	}
	sh->elapsed_ns = now_ns() - t0;
}

static void child_setup(const struct run *r, int role)
{
	struct sigaction sa = { .sa_handler = child_alarm };

	alarm_msg_len = (size_t)snprintf(alarm_msg, sizeof(alarm_msg),
		"shmbus-bench: %s, child %d: timed out after %d s\n",
		r->label, role, CHILD_TIMEOUT_S);
	if (alarm_msg_len >= sizeof(alarm_msg))
		alarm_msg_len = sizeof(alarm_msg) - 1;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGALRM, &sa, NULL) < 0)
		die("sigaction: %s", strerror(errno));
	alarm(CHILD_TIMEOUT_S);
	pin_cpu(role);
}

static __attribute__((noreturn))
void child_main(const struct run *r, int role)
{
	const struct transport *t = &transports[r->tp];
	struct end tx = { .fd = -1 }, rx = { .fd = -1 };
	int err;

	child_setup(r, role);
	err = t->child_init();
	if (err)
		child_fail(r, role, "opening the bus", err);
	if (r->rtt) {
		end_open(r, role, &tx, role, true);
		end_open(r, role, &rx, 1 - role, false);
	} else if (role == 0) {
		end_open(r, role, &tx, 0, true);
	} else {
		end_open(r, role, &rx, 0, false);
	}
	prep_fds_keep(&tx, &rx);
	start_line();
	if (r->rtt && role == 0)
		rtt_ping(r, &tx, &rx);
	else if (r->rtt)
		rtt_pong(r, &tx, &rx);
	else if (role == 0)
		tput_produce(r, &tx);
	else
		tput_consume(r, &rx);
	end_close(r, &tx);
	end_close(r, &rx);
	t->child_fini();
	_exit(0);
}

/* ------------------------------------------------------------------ */
/* Parent: one measurement                                            */
/* ------------------------------------------------------------------ */

static volatile sig_atomic_t kids[2];	/* pids, read by the alarm handler */

static void kill_kids(void)
{
	for (int i = 0; i < 2; i++)
		if (kids[i] > 0)
			kill(kids[i], SIGKILL);
}

static void parent_alarm(int sig)
{
	static const char msg[] =
		"shmbus-bench: a measurement outlived its children's "
		"timeout; killing them\n";
	ssize_t n = write(STDERR_FILENO, msg, sizeof(msg) - 1);

	(void)n;
	kill_kids();
}

static void describe_status(int st, char *buf, size_t len)
{
	if (WIFEXITED(st) && WEXITSTATUS(st) == 124)
		snprintf(buf, len, "timed out");
	else if (WIFEXITED(st))
		snprintf(buf, len, "exit status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(st),
			 strsignal(WTERMSIG(st)));
	else
		snprintf(buf, len, "status 0x%x", st);
}

/* Wait for both children; if one fails, kill the other. */
static void wait_kids(const struct run *r)
{
	char why[64];
	int st, left = 2, failed = -1, fst = 0;

	while (left) {
		pid_t pid = waitpid(-1, &st, 0);
		int i;

		if (pid < 0) {
			if (errno == EINTR)
				continue;
			die("waitpid: %s", strerror(errno));
		}
		i = pid == kids[0] ? 0 : pid == kids[1] ? 1 : -1;
		if (i < 0)
			continue;	/* not ours to track */
		kids[i] = 0;
		left--;
		if ((!WIFEXITED(st) || WEXITSTATUS(st)) && failed < 0) {
			failed = i;
			fst = st;
			kill_kids();
		}
	}
	alarm(0);
	if (failed >= 0) {
		describe_status(fst, why, sizeof(why));
		die("%s: child %d failed (%s)", r->label, failed, why);
	}
}

static void run_one(const struct run *r)
{
	const struct transport *t = &transports[r->tp];
	int err;

	WRITE_ONCE(sh->ready, 0);	/* no child runs yet */
	sh->elapsed_ns = 0;
	sh->nsamples = 0;
	err = t->prepare(r, r->rtt ? NR_CHAN : 1);
	if (err)
		die("%s: preparing %s: %s", r->label, t->name,
		    strerror(-err));
	fflush(NULL);
	for (int role = 0; role < 2; role++) {
		pid_t pid = fork();

		if (pid < 0) {
			kill_kids();
			die("fork: %s", strerror(errno));
		}
		if (pid == 0)
			child_main(r, role);
		kids[role] = pid;
	}
	prep_fds_close();
	alarm(PARENT_TIMEOUT_S);
	wait_kids(r);
}

/* ------------------------------------------------------------------ */
/* Statistics                                                         */
/* ------------------------------------------------------------------ */

struct rtt_stat {
	double p50, p99, p999, max;	/* us */
};

/* Results of one row (transport x mode) at one size, per repetition. */
struct cell {
	unsigned nrtt, ntput;
	struct rtt_stat rtt[MAX_REPS];
	double tput[MAX_REPS];		/* msg/s */
};

static struct cell cells[NR_SIZES][NR_TP][NR_MODES];

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted @v, in us. */
static double pct_us(const uint64_t *v, uint64_t n, double q)
{
	uint64_t rank = (uint64_t)ceil(q * (double)n);

	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return (double)v[rank - 1] / 1000.0;
}

static struct rtt_stat rtt_from_samples(void)
{
	uint64_t n = sh->nsamples;
	struct rtt_stat s;

	if (!n)
		die("no RTT samples came back");
	qsort(sh->samples, n, sizeof(sh->samples[0]), cmp_u64);
	s.p50 = pct_us(sh->samples, n, 0.50);
	s.p99 = pct_us(sh->samples, n, 0.99);
	s.p999 = pct_us(sh->samples, n, 0.999);
	s.max = (double)sh->samples[n - 1] / 1000.0;
	return s;
}

static double median(const double *v, unsigned n)
{
	double tmp[MAX_REPS];

	if (!n)
		return NAN;
	memcpy(tmp, v, n * sizeof(*v));
	qsort(tmp, n, sizeof(*tmp), cmp_double);
	return n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2;
}

/* Median over repetitions of each percentile; max is the largest seen. */
static struct rtt_stat cell_rtt(const struct cell *c)
{
	double v[4][MAX_REPS];
	struct rtt_stat s = { NAN, NAN, NAN, NAN };

	if (!c->nrtt)
		return s;
	for (unsigned i = 0; i < c->nrtt; i++) {
		v[0][i] = c->rtt[i].p50;
		v[1][i] = c->rtt[i].p99;
		v[2][i] = c->rtt[i].p999;
		v[3][i] = c->rtt[i].max;
	}
	s.p50 = median(v[0], c->nrtt);
	s.p99 = median(v[1], c->nrtt);
	s.p999 = median(v[2], c->nrtt);
	qsort(v[3], c->nrtt, sizeof(double), cmp_double);
	s.max = v[3][c->nrtt - 1];
	return s;
}

static double cell_tput(const struct cell *c)
{
	return median(c->tput, c->ntput);
}

/* ------------------------------------------------------------------ */
/* Running the matrix                                                 */
/* ------------------------------------------------------------------ */

static bool row_runs(enum tp tp, enum mode m)
{
	return cfg.tp_on[tp] && cfg.mode_on[m] &&
	       (m == MODE_BLOCK || transports[tp].has_busy);
}

static void run_rtt(int si, enum tp tp, enum mode m, unsigned rep)
{
	struct cell *c = &cells[si][tp][m];
	struct run r = {
		.tp = tp, .mode = m, .size = sizes[si], .rtt = true,
		.count = m == MODE_BUSY ? cfg.rtt_busy : cfg.rtt_block,
	};
	struct rtt_stat s;

	r.warm = r.count / 10;
	snprintf(r.label, sizeof(r.label), "%s %s %zu B RTT",
		 transports[tp].name, mode_names[m], r.size);
	if (r.count > sh_max_samples)
		die("%s: %" PRIu64 " trips do not fit", r.label, r.count);
	run_one(&r);
	s = rtt_from_samples();
	c->rtt[c->nrtt++] = s;
	fprintf(stderr, "  [rep %u] %-24s p50 %8.2f us  p99 %8.2f us\n",
		rep + 1, r.label, s.p50, s.p99);
}

static void run_tput(int si, enum tp tp, enum mode m, unsigned rep)
{
	struct cell *c = &cells[si][tp][m];
	struct run r = {
		.tp = tp, .mode = m, .size = sizes[si], .rtt = false,
		.count = cfg.tput[si],
	};
	double rate;

	r.warm = r.count / 10;
	snprintf(r.label, sizeof(r.label), "%s %s %zu B one-way",
		 transports[tp].name, mode_names[m], r.size);
	run_one(&r);
	if (!sh->elapsed_ns)
		die("%s: no elapsed time came back", r.label);
	rate = (double)r.count * 1e9 / (double)sh->elapsed_ns;
	c->tput[c->ntput++] = rate;
	fprintf(stderr, "  [rep %u] %-24s %10.0f msg/s\n", rep + 1, r.label,
		rate);
}

/* Repetitions outermost: the reps of one row are spread over the run. */
static void run_size(int si)
{
	for (unsigned rep = 0; rep < cfg.reps; rep++) {
		fprintf(stderr, "%zu B messages, repetition %u of %u\n",
			sizes[si], rep + 1, cfg.reps);
		for (int tp = 0; tp < NR_TP; tp++) {
			for (int m = 0; m < NR_MODES; m++) {
				if (!row_runs(tp, m))
					continue;
				run_rtt(si, tp, m, rep);
				run_tput(si, tp, m, rep);
			}
		}
	}
}

/* ------------------------------------------------------------------ */
/* Private daemon                                                     */
/* ------------------------------------------------------------------ */

static char tmp_dir[64];		/* ours to remove; empty if not */
static char sock_path[128];
static pid_t daemon_pid;
static bool run_ok;

static void path_of(char *buf, size_t len, const char *suffix)
{
	snprintf(buf, len, "%s%s", sock_path, suffix);
}

static pid_t read_daemon_pid(void)
{
	char path[160], comm[32] = "", buf[32] = "";
	long pid;
	FILE *f;

	path_of(path, sizeof(path), ".lock");
	f = fopen(path, "r");
	if (!f)
		return 0;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	pid = strtol(buf, NULL, 10);
	if (pid <= 1)
		return 0;
	/* make sure that pid is still a shmbusd */
	snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	if (!fgets(comm, sizeof(comm), f))
		comm[0] = '\0';
	fclose(f);
	return strncmp(comm, "shmbusd", 7) ? 0 : (pid_t)pid;
}

/* Gone, or a zombie that its new parent has not reaped yet. */
static bool pid_gone(pid_t pid)
{
	char path[64], buf[512];
	FILE *f;
	char *p;
	bool zombie = false;

	if (kill(pid, 0) < 0 && errno == ESRCH)
		return true;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return true;
	if (fgets(buf, sizeof(buf), f)) {
		p = strrchr(buf, ')');
		zombie = p && p[1] == ' ' && p[2] == 'Z';
	}
	fclose(f);
	return zombie;
}

static void stop_daemon(void)
{
	struct timespec ts = { 0, 10 * 1000 * 1000 };

	if (daemon_pid <= 0)
		return;
	kill(daemon_pid, SIGTERM);
	for (int i = 0; i < 300 && !pid_gone(daemon_pid); i++)
		nanosleep(&ts, NULL);
	if (!pid_gone(daemon_pid)) {
		fprintf(stderr, "shmbus-bench: shmbusd %d ignored SIGTERM; "
			"killing it\n", (int)daemon_pid);
		kill(daemon_pid, SIGKILL);
	}
	daemon_pid = 0;
}

static void remove_tmp_dir(void)
{
	char path[160];

	if (!tmp_dir[0])
		return;
	unlink(sock_path);
	path_of(path, sizeof(path), ".lock");
	unlink(path);
	path_of(path, sizeof(path), ".log");
	if (!run_ok) {
		fprintf(stderr, "shmbus-bench: daemon log kept in %s\n", path);
		return;
	}
	unlink(path);
	if (rmdir(tmp_dir) < 0)
		fprintf(stderr, "shmbus-bench: rmdir %s: %s\n", tmp_dir,
			strerror(errno));
}

/* atexit: runs in the parent only (children always _exit). */
static void cleanup(void)
{
	if (!in_parent())
		return;
	kill_kids();
	shmbus__close(bench_bus);
	bench_bus = NULL;
	stop_daemon();
	remove_tmp_dir();
}

static void fatal_signal(int sig)
{
	/* only async-signal-safe calls: leave the files, stop processes */
	kill_kids();
	if (daemon_pid > 0)
		kill(daemon_pid, SIGTERM);
	_exit(128 + sig);
}

static void setup_socket(void)
{
	const char *env = getenv("SHMBUS_SOCKET");

	if (env && *env) {
		snprintf(sock_path, sizeof(sock_path), "%s", env);
		return;	/* the caller's daemon: not ours to stop */
	}
	snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/shmbus-bench.XXXXXX");
	if (!mkdtemp(tmp_dir)) {
		tmp_dir[0] = '\0';
		die("mkdtemp: %s", strerror(errno));
	}
	snprintf(sock_path, sizeof(sock_path), "%s/shmbusd.sock", tmp_dir);
	if (setenv("SHMBUS_SOCKET", sock_path, 1) < 0)
		die("setenv: %s", strerror(errno));
}

static void setup_bus(void)
{
	SHMBUS_OPTS(shmbus_queue_opts, q, .max_len = RING_SLOTS,
		    .msg_size = MAX_MSG);
	bool ours = tmp_dir[0];

	bench_bus = shmbus__open(BUS_NAME, NULL);
	if (!bench_bus)
		die("opening bus '%s' at %s: %s", BUS_NAME, sock_path,
		    strerror(errno));
	if (ours) {
		daemon_pid = read_daemon_pid();
		if (!daemon_pid)
			fprintf(stderr, "shmbus-bench: cannot find the pid of "
				"the daemon we started (%s.lock)\n",
				sock_path);
	}
	for (int c = 0; c < NR_CHAN; c++) {
		int err = shmbus__queue_declare(bench_bus, queue_names[c], &q);

		if (err < 0)
			die("declaring queue '%s': %s", queue_names[c],
			    strerror(-err));
	}
}

/* ------------------------------------------------------------------ */
/* Report                                                             */
/* ------------------------------------------------------------------ */

static void read_line(const char *path, const char *key, char *buf,
		      size_t len)
{
	char line[512];
	FILE *f = fopen(path, "r");
	size_t n;

	snprintf(buf, len, "unknown");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *v = line;

		if (key) {
			if (strncmp(line, key, strlen(key)))
				continue;
			v = strchr(line, ':');
			if (!v)
				continue;
			v += 1 + strspn(v + 1, " \t");
		}
		n = strcspn(v, "\n");
		if (n >= len)
			n = len - 1;
		memcpy(buf, v, n);
		buf[n] = '\0';
		break;
	}
	fclose(f);
}

static void print_machine(void)
{
	char cpu[128], cs[64], date[64];
	struct utsname u;
	time_t now = time(NULL);

	read_line("/proc/cpuinfo", "model name", cpu, sizeof(cpu));
	read_line("/sys/devices/system/clocksource/clocksource0/"
		  "current_clocksource", NULL, cs, sizeof(cs));
	if (uname(&u) < 0)
		snprintf(u.release, sizeof(u.release), "unknown");
	strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S %Z",
		 localtime(&now));
	printf("shmbus-bench (libshmbus %s)\n", shmbus_version());
	printf("  cpu:         %s\n", cpu);
	printf("  nproc:       %ld\n", sysconf(_SC_NPROCESSORS_ONLN));
	printf("  kernel:      %s\n", u.release);
	printf("  clocksource: %s\n", cs);
	printf("  date:        %s\n", date);
	printf("  pinning:     sender/pinger CPU 0, receiver/ponger CPU 1\n");
	printf("  counts:      RTT %" PRIu64 " trips busy, %" PRIu64
	       " block; one-way %" PRIu64 " x 64 B, %" PRIu64
	       " x 4096 B; +10%% warm-up\n",
	       cfg.rtt_busy, cfg.rtt_block, cfg.tput[0], cfg.tput[1]);
	printf("  repetitions: %u, interleaved; median of each statistic "
	       "(max: largest seen)\n", cfg.reps);
	printf("  ratios:      p50/raw, tput/raw: to the raw ring in the same "
	       "mode;\n");
	printf("               p50/pipe, tput/pipe: to pipe (blocking, its "
	       "only mode)\n\n");
}

static void fmt_ratio(char *buf, size_t len, double num, double den)
{
	double r = num / den;

	if (isnan(num) || isnan(den) || den <= 0)
		snprintf(buf, len, "-");
	else if (r >= 10)
		snprintf(buf, len, "%.1f", r);
	else if (r >= 0.1)
		snprintf(buf, len, "%.2f", r);
	else
		snprintf(buf, len, "%.3f", r);
}

static void fmt_rate(char *buf, size_t len, double r)
{
	if (isnan(r))
		snprintf(buf, len, "-");
	else if (r >= 1e6)
		snprintf(buf, len, "%.2fM", r / 1e6);
	else
		snprintf(buf, len, "%.1fk", r / 1e3);
}

static void print_na_row(enum tp tp, enum mode m)
{
	printf("%-12s %-5s %8s %8s %8s %9s %9s %8s %7s %8s %8s %9s\n",
	       transports[tp].name, mode_names[m], "n/a", "n/a", "n/a",
	       "n/a", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a");
}

static void print_row(int si, enum tp tp, enum mode m)
{
	const struct cell *c = &cells[si][tp][m];
	const struct cell *raw = &cells[si][TP_RAW][m];
	const struct cell *pipe = &cells[si][TP_PIPE][MODE_BLOCK];
	struct rtt_stat s = cell_rtt(c);
	double tp_rate = cell_tput(c);
	char rate[16], r1[16], r2[16], r3[16], r4[16];

	fmt_rate(rate, sizeof(rate), tp_rate);
	fmt_ratio(r1, sizeof(r1), s.p50, cell_rtt(raw).p50);
	fmt_ratio(r2, sizeof(r2), s.p50, cell_rtt(pipe).p50);
	fmt_ratio(r3, sizeof(r3), tp_rate, cell_tput(raw));
	fmt_ratio(r4, sizeof(r4), tp_rate, cell_tput(pipe));
	printf("%-12s %-5s %8.2f %8.2f %8.2f %9.1f %9s %8.1f %7s %8s %8s %9s\n",
	       transports[tp].name, mode_names[m], s.p50, s.p99, s.p999,
	       s.max, rate, tp_rate * (double)sizes[si] / 1e6, r1, r2, r3,
	       r4);
}

static void print_table(int si)
{
	printf("== %zu B messages ==\n", sizes[si]);
	printf("%-12s %-5s %8s %8s %8s %9s %9s %8s %7s %8s %8s %9s\n",
	       "transport", "mode", "p50 us", "p99 us", "p99.9 us", "max us",
	       "msg/s", "MB/s", "p50/raw", "p50/pipe", "tput/raw",
	       "tput/pipe");
	for (int tp = 0; tp < NR_TP; tp++) {
		for (int m = 0; m < NR_MODES; m++) {
			if (!cfg.tp_on[tp] || !cfg.mode_on[m])
				continue;
			if (row_runs(tp, m))
				print_row(si, tp, m);
			else
				print_na_row(tp, m);
		}
	}
	printf("\n");
}

static void print_target(const char *what, double ratio, double limit,
			 bool at_most, bool pct)
{
	const char *verdict;

	if (isnan(ratio)) {
		printf("  %-50s %8s  NOT MEASURED\n", what, "-");
		return;
	}
	verdict = (at_most ? ratio <= limit : ratio >= limit) ? "MET"
							      : "MISSED";
	if (pct)
		printf("  %-50s %7.0f%%  %s\n", what, ratio * 100, verdict);
	else
		printf("  %-50s %7.2fx  %s\n", what, ratio, verdict);
}

static double p50_of(int si, enum tp tp, enum mode m)
{
	return cell_rtt(&cells[si][tp][m]).p50;
}

/* Diagnostics on stderr: what the shmbus queues counted over the run. */
static void print_queue_stats(void)
{
	struct shmbus_queue_info qi;

	for (int c = 0; c < NR_CHAN; c++) {
		if (shmbus__queue_info(bench_bus, queue_names[c], &qi))
			continue;
		fprintf(stderr, "shmbus-bench: queue '%s': published %" PRIu64
			", delivered %" PRIu64 ", full %" PRIu64 ", nomem %"
			PRIu64 ", corrupt %" PRIu64 ", wakeups %" PRIu64
			", sleeps %" PRIu64 "\n", queue_names[c],
			qi.stat[SHMBUS_STAT_PUBLISHED],
			qi.stat[SHMBUS_STAT_DELIVERED],
			qi.stat[SHMBUS_STAT_FULL], qi.stat[SHMBUS_STAT_NOMEM],
			qi.stat[SHMBUS_STAT_CORRUPT],
			qi.stat[SHMBUS_STAT_WAKEUPS],
			qi.stat[SHMBUS_STAT_SLEEPS]);
	}
}

static void print_targets(void)
{
	char what[96];

	printf("== targets (shmbus = copy publish, view receive) ==\n");
	for (int si = 0; si < NR_SIZES; si++) {
		if (!cfg.size_on[si])
			continue;
		snprintf(what, sizeof(what),
			 "%zu B busy-poll RTT p50 <= 1.3x raw ring", sizes[si]);
		print_target(what, p50_of(si, TP_SHMBUS, MODE_BUSY) /
				   p50_of(si, TP_RAW, MODE_BUSY), 1.3, true,
			     false);
		snprintf(what, sizeof(what),
			 "%zu B blocking RTT p50 <= pipe", sizes[si]);
		print_target(what, p50_of(si, TP_SHMBUS, MODE_BLOCK) /
				   p50_of(si, TP_PIPE, MODE_BLOCK), 1.0, true,
			     false);
	}
	if (cfg.size_on[0])
		print_target("64 B busy-poll throughput >= 50% of raw ring",
			     cell_tput(&cells[0][TP_SHMBUS][MODE_BUSY]) /
			     cell_tput(&cells[0][TP_RAW][MODE_BUSY]), 0.5,
			     false, true);
}

/* ------------------------------------------------------------------ */
/* Semantics: topic fan-out and request-reply (64 B)                  */
/* ------------------------------------------------------------------ */

#define FAN_MSGS	200000u
static const unsigned fan_subs[] = { 1, 2, 4, 8 };

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * One publisher (this process), @nsub subscriber processes (exclusive
 * subscriptions of topic bench.fan.N, blocking receive with the default
 * spin). Returns publishes/s (the publisher's time) and deliveries/s
 * (until the last subscriber has them all).
 */
static void run_fanout(unsigned nsub, double *pub_rate, double *deliv_rate)
{
	SHMBUS_OPTS(shmbus_pub_opts, po, .timeout_ns = -1);
	struct shmbus_producer *p;
	char topic[32];
	pid_t kid[8];
	uint64_t t0, t1, t2;
	int err;

	snprintf(topic, sizeof(topic), "bench.fan.%u", nsub);
	err = shmbus__topic_declare(bench_bus, topic, NULL);
	if (err < 0)
		die("declaring topic %s: %s", topic, strerror(-err));
	WRITE_ONCE(sh->ready, 0);	/* no child runs yet */
	for (unsigned k = 0; k < nsub; k++) {
		kid[k] = fork();
		if (kid[k] < 0)
			die("fork: %s", strerror(errno));
		if (!kid[k]) {
			SHMBUS_OPTS(shmbus_sub_opts, so, .max_len = 4096,
				    .consumer_flags = SHMBUS_CONSUMER_AUTO_ACK);
			struct shmbus_consumer *c;
			uint64_t next = 0;

			if (sb_child_init())
				_exit(3);
			c = shmbus_consumer__subscribe(bench_bus, topic, &so);
			if (!c)
				_exit(4);
			atomic_fetch_add(&sh->ready, 1);
			while (next < FAN_MSGS) {
				struct shmbus_msg m;

				if (shmbus_consumer__receive_view(c, &m, -1))
					_exit(5);
				if (m.len != 64 || verify(m.data, 64, next))
					_exit(6);
				shmbus_consumer__release(c, &m);
				next++;
			}
			shmbus_consumer__free(c);
			sb_child_fini();
			_exit(0);
		}
	}
	while (smp_load_acquire(&sh->ready) < nsub)
		usleep(1000);
	p = shmbus_producer__new(bench_bus, topic, NULL);
	if (!p)
		die("producer on %s: %s", topic, strerror(errno));
	{
		unsigned char buf[64];

		t0 = mono_ns();
		for (uint64_t i = 0; i < FAN_MSGS; i++) {
			fill(buf, sizeof(buf), i);
			err = shmbus_producer__publish(p, buf, sizeof(buf), &po);
			if (err)
				die("publish to %s: %s", topic, strerror(-err));
		}
		t1 = mono_ns();
	}
	for (unsigned k = 0; k < nsub; k++) {
		int st;

		if (waitpid(kid[k], &st, 0) < 0 || !WIFEXITED(st) ||
		    WEXITSTATUS(st))
			die("fan-out subscriber %u failed (status %#x)", k, st);
	}
	t2 = mono_ns();
	shmbus_producer__free(p);
	shmbus__queue_delete(bench_bus, topic);
	*pub_rate = FAN_MSGS / ((t1 - t0) / 1e9);
	*deliv_rate = (double)FAN_MSGS * nsub / ((t2 - t0) / 1e9);
}

static ssize_t echo_handler(void *ctx, const struct shmbus_msg *req,
			    void *reply, size_t cap)
{
	(void)ctx;
	memcpy(reply, req->data, req->len < cap ? req->len : cap);
	return req->len;
}

/* Round trips of shmbus__request() against a replier process. */
static void run_reqrep(uint64_t n, struct rtt_stat *st, double *mean_us)
{
	SHMBUS_OPTS(shmbus_queue_opts, q, .max_len = 1024);
	unsigned char buf[64], rep[64];
	struct shmbus_queue_info qi;
	uint64_t warm = n / 10, total = 0;
	pid_t kid;
	int err;

	if (n > sh_max_samples)
		n = sh_max_samples;
	err = shmbus__queue_declare(bench_bus, "bench.rr", &q);
	if (err < 0)
		die("declaring bench.rr: %s", strerror(-err));
	kid = fork();
	if (kid < 0)
		die("fork: %s", strerror(errno));
	if (!kid) {
		SHMBUS_OPTS(shmbus_consumer_opts, co, .spin_ns = INT64_MAX);
		struct shmbus_consumer *c;

		pin_cpu(1);
		if (sb_child_init())
			_exit(3);
		c = shmbus_consumer__new(bench_bus, "bench.rr", &co);
		if (!c)
			_exit(4);
		if (shmbus_consumer__serve(c, echo_handler, NULL,
					   (unsigned)(n + warm), -1) < 0)
			_exit(5);
		shmbus_consumer__free(c);
		sb_child_fini();
		_exit(0);
	}
	do {
		usleep(1000);
		err = shmbus__queue_info(bench_bus, "bench.rr", &qi);
	} while (!err && !qi.consumers);
	for (uint64_t i = 0; i < n + warm; i++) {
		uint64_t t0 = mono_ns(), dt;
		ssize_t len;

		fill(buf, sizeof(buf), i);
		len = shmbus__request(bench_bus, "bench.rr", buf, sizeof(buf),
				      rep, sizeof(rep), 5000000000LL);
		dt = mono_ns() - t0;
		if (len != (ssize_t)sizeof(rep) || verify(rep, sizeof(rep), i))
			die("request %llu: %s", (unsigned long long)i,
			    len < 0 ? strerror((int)-len) : "wrong reply");
		if (i >= warm) {
			sh->samples[i - warm] = dt;
			total += dt;
		}
	}
	sh->nsamples = n;
	*st = rtt_from_samples();
	*mean_us = total / 1e3 / n;
	{
		int status;

		if (waitpid(kid, &status, 0) < 0 || !WIFEXITED(status) ||
		    WEXITSTATUS(status))
			die("replier failed (status %#x)", status);
	}
	shmbus__queue_delete(bench_bus, "bench.rr");
}

static void run_semantics(void)
{
	double raw = cell_tput(&cells[0][TP_RAW][MODE_BUSY]);
	double raw_rtt = p50_of(0, TP_RAW, MODE_BUSY);
	double sb_rtt = p50_of(0, TP_SHMBUS, MODE_BUSY);
	double ack = cell_tput(&cells[0][TP_ACK][MODE_BUSY]);
	double aa = cell_tput(&cells[0][TP_SHMBUS][MODE_BUSY]);
	struct rtt_stat rr;
	double mean;

	if (!cfg.size_on[0] || !cfg.tp_on[TP_RAW] || !cfg.tp_on[TP_SHMBUS] ||
	    !cfg.tp_on[TP_ACK] || !cfg.mode_on[MODE_BUSY])
		return;
	printf("== semantics, 64 B, next to the raw ring of this run ==\n");
	printf("ack mode vs auto-ack, busy-poll throughput:\n");
	printf("  raw ring %.2fM msg/s; shmbus auto-ack %.2fM (%.0f%%); "
	       "shmbus ack %.2fM (%.0f%% of raw, %.0f%% of auto-ack)\n",
	       raw / 1e6, aa / 1e6, 100 * aa / raw, ack / 1e6,
	       100 * ack / raw, 100 * ack / aa);
	printf("topic fan-out (one publisher, N subscriber processes, "
	       "%u messages):\n", FAN_MSGS);
	printf("  %4s %14s %16s %14s %12s\n", "subs", "publishes/s",
	       "deliveries/s", "ns/publish", "vs raw ring");
	for (unsigned i = 0; i < sizeof(fan_subs) / sizeof(fan_subs[0]); i++) {
		double pr, dr;

		run_fanout(fan_subs[i], &pr, &dr);
		printf("  %4u %13.2fM %15.2fM %14.0f %11.2fx\n", fan_subs[i],
		       pr / 1e6, dr / 1e6, 1e9 / pr, pr / raw);
		fflush(stdout);
	}
	run_reqrep(cfg.rtt_busy, &rr, &mean);
	printf("request-reply round trip (shmbus__request against a replier "
	       "process, busy):\n");
	printf("  p50 %.2f us, p99 %.2f us, mean %.2f us; raw ring RTT p50 "
	       "%.2f us (%.2fx); shmbus RTT p50 %.2f us (%.2fx)\n\n",
	       rr.p50, rr.p99, mean, raw_rtt, rr.p50 / raw_rtt, sb_rtt,
	       rr.p50 / sb_rtt);
}

/* ------------------------------------------------------------------ */
/* Options and main                                                   */
/* ------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f,
"usage: shmbus-bench [--quick] [--reps N] [--only LIST] [--size 64|4096]\n"
"                    [--mode busy|block]\n"
"\n"
"Round trip (ping-pong) and one-way throughput of shmbus, a pipe, a Unix\n"
"stream socketpair and a raw shared-memory ring, between two processes\n"
"pinned to CPU 0 and CPU 1. Tables go to stdout, progress to stderr.\n"
"\n"
"  --quick        10x fewer messages (smoke test)\n"
"  --reps N       repetitions per measurement, median reported (3; 1-%d)\n"
"  --only LIST    comma-separated transports: shmbus (copy and loan),\n"
"                 raw, pipe, uds (default: all)\n"
"  --size S       only 64 or 4096 byte messages\n"
"  --mode M       only busy (busy-poll) or block (blocking)\n"
"  --help         this text\n"
"\n"
"Uses a private shmbusd on a temporary socket unless SHMBUS_SOCKET is set.\n",
		MAX_REPS);
}

static void parse_only(const char *arg)
{
	char *copy = strdup(arg), *save = NULL, *tok;

	if (!copy)
		die("out of memory");
	for (tok = strtok_r(copy, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		if (!strcmp(tok, "shmbus")) {
			cfg.tp_on[TP_SHMBUS] = cfg.tp_on[TP_LOAN] = true;
			cfg.tp_on[TP_ACK] = true;
		} else if (!strcmp(tok, "raw")) {
			cfg.tp_on[TP_RAW] = true;
		} else if (!strcmp(tok, "pipe")) {
			cfg.tp_on[TP_PIPE] = true;
		} else if (!strcmp(tok, "uds")) {
			cfg.tp_on[TP_UDS] = true;
		} else {
			usage(stderr);
			die("--only: unknown transport '%s'", tok);
		}
	}
	free(copy);
}

static void parse_args(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "quick", no_argument, NULL, 'q' },
		{ "reps", required_argument, NULL, 'r' },
		{ "only", required_argument, NULL, 'o' },
		{ "size", required_argument, NULL, 's' },
		{ "mode", required_argument, NULL, 'm' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool only = false, size = false, mode = false;
	char *end;
	long v;
	int opt;

	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'q':
			cfg.rtt_busy /= 10;
			cfg.rtt_block /= 10;
			cfg.tput[0] /= 10;
			cfg.tput[1] /= 10;
			break;
		case 'r':
			v = strtol(optarg, &end, 10);
			if (*end || v < 1 || v > MAX_REPS)
				die("--reps: want 1..%d", MAX_REPS);
			cfg.reps = (unsigned)v;
			break;
		case 'o':
			only = true;
			parse_only(optarg);
			break;
		case 's':
			size = true;
			if (!strcmp(optarg, "64"))
				cfg.size_on[0] = true;
			else if (!strcmp(optarg, "4096"))
				cfg.size_on[1] = true;
			else
				die("--size: want 64 or 4096");
			break;
		case 'm':
			mode = true;
			if (!strcmp(optarg, "busy"))
				cfg.mode_on[MODE_BUSY] = true;
			else if (!strcmp(optarg, "block"))
				cfg.mode_on[MODE_BLOCK] = true;
			else
				die("--mode: want busy or block");
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind != argc) {
		usage(stderr);
		die("unexpected argument '%s'", argv[optind]);
	}
	for (int i = 0; i < NR_TP; i++)
		cfg.tp_on[i] |= !only;
	for (int i = 0; i < NR_SIZES; i++)
		cfg.size_on[i] |= !size;
	for (int i = 0; i < NR_MODES; i++)
		cfg.mode_on[i] |= !mode;
}

static void check_cpus(void)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set) < 0)
		die("sched_getaffinity: %s", strerror(errno));
	if (!CPU_ISSET(0, &set) || !CPU_ISSET(1, &set))
		die("needs CPU 0 and CPU 1 (allowed: %d CPUs)",
		    CPU_COUNT(&set));
}

static void setup_signals(void)
{
	struct sigaction sa = { .sa_handler = parent_alarm,
				.sa_flags = SA_RESTART };

	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGALRM, &sa, NULL) < 0)
		die("sigaction: %s", strerror(errno));
	sa.sa_handler = fatal_signal;
	sa.sa_flags = 0;
	if (sigaction(SIGINT, &sa, NULL) < 0 ||
	    sigaction(SIGTERM, &sa, NULL) < 0 ||
	    sigaction(SIGHUP, &sa, NULL) < 0)
		die("sigaction: %s", strerror(errno));
	signal(SIGPIPE, SIG_IGN);
}

static void setup_memory(void)
{
	uint64_t most = cfg.rtt_busy > cfg.rtt_block ? cfg.rtt_busy
						     : cfg.rtt_block;

	sh_max_samples = most;
	sh = map_shared(sizeof(*sh) + sh_max_samples * sizeof(uint64_t));
	raw_rings = map_shared(NR_CHAN * sizeof(struct raw_ring));
}

int main(int argc, char **argv)
{
	main_pid = getpid();
	parse_args(argc, argv);
	check_cpus();
	setup_signals();
	setup_memory();
	if (atexit(cleanup))
		die("atexit failed");
	setup_socket();
	setup_bus();
	print_machine();
	fflush(stdout);
	fprintf(stderr, "shmbus-bench: bus '%s' on %s\n", BUS_NAME,
		sock_path);
	for (int si = 0; si < NR_SIZES; si++)
		if (cfg.size_on[si])
			run_size(si);
	for (int si = 0; si < NR_SIZES; si++)
		if (cfg.size_on[si])
			print_table(si);
	print_targets();
	run_semantics();
	print_queue_stats();
	run_ok = true;
	return 0;
}
