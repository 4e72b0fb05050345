// SPDX-License-Identifier: MIT
/*
 * test_restart.c - the daemon killed -9 under live clients and a new one
 * started on the same socket, which adopts every bus that still has
 * members (docs/design.md, "Daemon restart and adoption"):
 *  - steady traffic: producers and acking consumers, delayed messages,
 *    nacks held back by the queue's backoff, and a small queue kept full
 *    with its producer blocked waiting for room; the daemon killed in the
 *    middle and restarted: every message delivered, none before its due
 *    time, the same queues with their counters, and a new client gets the
 *    same bus (same id) and works on it;
 *  - the same, smaller, over and over with random kill times, the new
 *    daemon sometimes killed again while clients rejoin;
 *  - a consumer holding leases killed while no daemon runs: the next
 *    daemon, adopting the bus from the member left (as root from its fd
 *    table at start; unprivileged, its clients not dumpable, when that
 *    member's handle rejoins), gives those messages to another consumer;
 *  - a forged arena (a memfd named like one, with a real arena's bytes,
 *    made by root or by uid 65534, handed over or held through a restart)
 *    and a real arena handed back as another bus are refused, logged, and
 *    the real bus goes on unaffected;
 *  - private reply queues: a requester's stays its own through the
 *    restart and its request after it is answered; that of a requester
 *    killed while no daemon ran is deleted;
 *  - a bus deleted under its members (--force): their handles get
 *    -EIDRM, and a restarted daemon does not adopt its arena again.
 * Real processes and kill -9 only. Each prints sent / received / lost /
 * duplicated / corrupt; lost must be 0, and a duplicate is allowed only
 * where at-least-once delivery says it may happen (counted apart).
 */
#include <grp.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "shmbus.h"
#include "helpers.h"
#include "proto.h"
#include "shmbus/layout.h"

#define MS	1000000LL

/* ---- daemons ------------------------------------------------------ */

/*
 * Start a daemon on t_sock as the library does (--daemonize: it logs to
 * t_sock.log and the starter returns once it listens), and return its
 * pid. Clients that autostart one at the same moment race for the lock
 * file: whichever won is the one returned.
 */
static pid_t daemon_start(void)
{
	pid_t kid = fork(), pid;
	int st;

	if (!kid) {
		execl(t_daemon_path(), "shmbusd", "--daemonize", "--socket",
		      t_sock, (char *)NULL);
		_exit(127);
	}
	assert_true(kid > 0);
	st = t_wait(kid, 10000);
	assert_true(st >= 0);
	/* a sanitizer's daemon under load may take seconds to start */
	for (int i = 0; i < 10000; i++) {
		pid = t_daemon_pid();
		if (pid > 0 && t_pid_running(pid))
			return pid;
		usleep(1000);
	}
	fail_msg("no daemon on %s (the starter exited %d; the lock names pid "
		 "%d)", t_sock, st, (int)t_daemon_pid());
	return 0;
}

static void daemon_kill(pid_t pid)
{
	assert_true(pid > 0);
	assert_int_equal(kill(pid, SIGKILL), 0);
	for (int i = 0; i < 2000 && t_pid_running(pid); i++)
		usleep(1000);
	assert_false(t_pid_running(pid));
}

static size_t log_size(const char *path)
{
	struct stat st;

	return stat(path, &st) ? 0 : (size_t)st.st_size;
}

/* The daemon that followed @old on t_sock (autostarted by a client), or
 * 0 if none came within @timeout_ms. */
static pid_t daemon_next(pid_t old, int timeout_ms)
{
	int64_t end = t_now_ns() + timeout_ms * MS;

	do {
		pid_t pid = t_daemon_pid();

		if (pid > 0 && pid != old && t_pid_running(pid))
			return pid;
		usleep(500);
	} while (t_now_ns() < end);
	return 0;
}

/*
 * Children a test forked, so that a failed test leaves none behind
 * running until its deadline: the teardown kills those not reaped yet.
 */
static pid_t forked[64];
static int nforked;
static pid_t own_daemon;	/* one on a socket of a test's own */

/* Is @pid a child not reaped yet? (WNOWAIT: its status stays.) */
static bool unreaped(pid_t pid)
{
	siginfo_t si;

	return !waitid(P_PID, pid, &si, WEXITED | WNOHANG | WNOWAIT);
}

static pid_t spawn(void)
{
	const int cap = (int)(sizeof(forked) / sizeof(forked[0]));
	pid_t pid;
	int n = 0;

	if (nforked == cap) {
		for (int i = 0; i < nforked; i++)
			if (unreaped(forked[i]))
				forked[n++] = forked[i];
		nforked = n;
	}
	pid = fork();
	assert_true(pid >= 0);
	if (pid > 0 && nforked < cap)
		forked[nforked++] = pid;
	return pid;
}

static int reap_forked(void **state)
{
	(void)state;
	for (int i = 0; i < nforked; i++) {
		/* reaped already: not our child any more, never killed */
		if (unreaped(forked[i])) {
			kill(forked[i], SIGKILL);
			waitpid(forked[i], NULL, 0);
		}
	}
	nforked = 0;
	if (own_daemon > 0 && t_pid_running(own_daemon))
		kill(own_daemon, SIGKILL);
	own_daemon = 0;
	return 0;
}

/* ---- messages and the tally --------------------------------------- */

#define MAXP	8		/* producers of one run, the small one included */
#define MAXSEQ	8192		/* messages per producer */

/* Each payload names its producer and sequence number and, delayed, the
 * earliest time it may be received. */
struct rmsg {
	uint32_t prod;
	uint32_t seq;
	int64_t due_ns;		/* CLOCK_MONOTONIC; 0: not delayed */
	uint32_t sum;
	uint32_t __pad;
};

static uint32_t rmsg_sum(const struct rmsg *m)
{
	return t_fnv(m, offsetof(struct rmsg, sum)) ^ 0x5eedf00du;
}

/* What every process of a run writes, in shared memory. */
struct tally {
	uint32_t sent[MAXP];	/* producer p published seqs [0, sent[p]) */
	uint32_t retried;	/* delayed publishes retried after the
				 * daemon died with the request (it may
				 * have taken it: a duplicate is allowed) */
	uint32_t refused;	/* retried after -ENOTCONN (never sent) */
	uint32_t cut_off;	/* opens and attaches retried (cut_off()) */
	uint32_t unique;	/* distinct messages received */
	uint32_t acks_work;	/* acks that returned 0, per queue */
	uint32_t acks_small;
	uint32_t stale;		/* acks that found the lease gone: the
				 * message comes again (allowed duplicate) */
	uint32_t nacks;
	uint32_t delayed;	/* delayed messages received */
	uint32_t early;		/* received before their due time */
	uint32_t corrupt;
	uint32_t expected;	/* set with done: sum of sent */
	uint32_t done;		/* the producers finished */
	uint16_t got[MAXP][MAXSEQ];
};

/* How a run is made up. */
struct run {
	const char *bus;
	uint32_t open_flags;	/* SHMBUS_OPEN_NOSTART, or 0 (autostart) */
	int nprod;		/* producers on "work": indexes 0..nprod-1 */
	uint32_t per_prod;
	int64_t period_ns;	/* one producer's pace */
	uint32_t delayed_n;	/* delayed messages to "work", by producer
				 * nprod + 1 */
	int64_t delayed_period_ns;	/* its pace */
	int64_t delay_min_ns;
	int64_t delay_span_ns;
	int nack_every;		/* seq % N == 0: nacked at first delivery */
	int64_t backoff_ns;	/* the queue's backoff before the retry */
	int ncons;		/* consumers on "work" */
	uint32_t small_n;	/* through "small", by producer nprod */
	int64_t small_drain_ns;	/* its consumer takes one message per */
	int64_t deadline_ns;	/* every child gives up at this time */
};

static bool past(int64_t deadline)
{
	return t_now_ns() > deadline;
}

/*
 * A control call cut off by the kill fails with ECONNRESET (the daemon
 * died with the request: it may or may not have been done), or ENOTCONN
 * once the library gave up waiting for a new one; an application tries
 * again, and so do the children here (counted), until the deadline.
 */
static bool cut_off(const struct run *r, struct tally *t, int err)
{
	if ((err != ECONNRESET && err != ENOTCONN) || past(r->deadline_ns))
		return false;
	atomic_fetch_add(&t->cut_off, 1);
	usleep(2000);
	return true;
}

static struct shmbus *run_open(const struct run *r, struct tally *t)
{
	SHMBUS_OPTS(shmbus_open_opts, oo, .flags = r->open_flags,
		    .connect_timeout_ms = 10000);
	struct shmbus *bus;

	while (!(bus = shmbus__open(r->bus, &oo)) && cut_off(r, t, errno))
		;
	CHILD_CHECK(bus, "open %s: %s (%s)", r->bus, strerror(errno),
		    shmbus_errmsg());
	return bus;
}

/* The bus a run creates: small pools, so that many runs fit. */
static struct shmbus *run_create(const struct run *r)
{
	SHMBUS_OPTS(shmbus_open_opts, oo, .flags = r->open_flags,
		    .connect_timeout_ms = 10000, .ring_bytes = 256 << 10,
		    .max_slots = 32, .max_queues = 8, .nr_pools = 1,
		    .pools = { { .payload = 64, .count = 4096 } });
	SHMBUS_OPTS(shmbus_queue_opts, work, .max_len = 1024, .msg_size = 64,
		    .max_consumers = 8, .lease_ns = 60000 * MS,
		    .backoff_init_ns = r->backoff_ns,
		    .backoff_max_ns = 4 * r->backoff_ns);
	SHMBUS_OPTS(shmbus_queue_opts, small, .max_len = 4, .msg_size = 64,
		    .max_consumers = 2, .lease_ns = 60000 * MS);
	struct shmbus *bus = shmbus__open(r->bus, &oo);

	assert_non_null(bus);
	assert_int_equal(shmbus__queue_declare(bus, "work", &work), 1);
	assert_int_equal(shmbus__queue_declare(bus, "small", &small), 1);
	return bus;
}

/*
 * Producer @idx: @n messages to @queue, one per @period_ns; @delayed:
 * each with a delay of the run's range. A publish that fails is retried
 * with the same sequence number: the message is sent once it returned 0.
 */
static void producer(const struct run *r, struct tally *t, int idx,
		     const char *queue, uint32_t n, int64_t period_ns,
		     bool delayed)
{
	struct shmbus *b = run_open(r, t);
	struct shmbus_producer *p;
	int64_t start = t_now_ns();
	unsigned seed = (unsigned)getpid();

	while (!(p = shmbus_producer__new(b, queue, NULL)) &&
	       cut_off(r, t, errno))
		;
	CHILD_CHECK(p, "producer %d: %s", idx, strerror(errno));
	for (uint32_t s = 0; s < n; s++) {
		SHMBUS_OPTS(shmbus_pub_opts, po, .timeout_ns = -1);
		struct rmsg m = { .prod = idx, .seq = s };
		int64_t wait = start + (int64_t)s * period_ns - t_now_ns();
		int err;

		if (wait > 0)
			usleep(wait / 1000);
		if (delayed)
			po.delay_ns = r->delay_min_ns +
				      rand_r(&seed) % (r->delay_span_ns + 1);
		for (;;) {
			/* due: not before the publish began plus the delay */
			m.due_ns = po.delay_ns ? t_now_ns() + po.delay_ns : 0;
			m.sum = rmsg_sum(&m);
			err = shmbus_producer__publish(p, &m, sizeof(m), &po);
			if (!err)
				break;
			/* a delayed publish is a control call: it may fail
			 * while no daemon runs, after its request reached
			 * the one that died */
			CHILD_CHECK(po.delay_ns && !past(r->deadline_ns) &&
				    (err == -ENOTCONN || err == -ECONNRESET ||
				     err == -ETIMEDOUT || err == -EPIPE),
				    "producer %d seq %u: %s (%s)", idx, s,
				    strerror(-err), shmbus_errmsg());
			/* -ENOTCONN: not sent (no daemon); the others: sent,
			 * and the daemon may have taken it before it died */
			atomic_fetch_add(err == -ENOTCONN ? &t->refused
							   : &t->retried, 1);
			usleep(2000);
		}
		smp_store_release(&t->sent[idx], s + 1);
	}
	shmbus_producer__free(p);
	shmbus__close(b);
	_exit(0);
}

/* Count a message received: the first time of its (producer, seq) adds
 * to unique. Returns false for a corrupt one. */
static bool record(struct tally *t, const struct shmbus_msg *m)
{
	const struct rmsg *rm = m->data;

	if (m->len != sizeof(*rm) || rm->sum != rmsg_sum(rm) ||
	    rm->prod >= MAXP || rm->seq >= MAXSEQ) {
		atomic_fetch_add(&t->corrupt, 1);
		return false;
	}
	if (rm->due_ns) {
		atomic_fetch_add(&t->delayed, 1);
		if (t_now_ns() < rm->due_ns)
			atomic_fetch_add(&t->early, 1);
	}
	if (atomic_fetch_add(&t->got[rm->prod][rm->seq], 1) == 0)
		atomic_fetch_add(&t->unique, 1);
	return true;
}

static bool all_received(struct tally *t)
{
	return smp_load_acquire(&t->done) &&
	       READ_ONCE(t->unique) >= READ_ONCE(t->expected);
}

/*
 * A consumer of @queue: records, then acks each message (at-least-once:
 * recorded before the ack); with the run's nack_every, nacks a message
 * the first time it comes, for the queue's backoff (held by the daemon),
 * and records it when it comes again. @pace_ns: a slow consumer.
 */
static void consumer(const struct run *r, struct tally *t, const char *queue,
		     int nack_every, int64_t pace_ns, uint32_t *acks)
{
	struct shmbus *b = run_open(r, t);
	struct shmbus_consumer *c;

	while (!(c = shmbus_consumer__new(b, queue, NULL)) &&
	       cut_off(r, t, errno))
		;
	CHILD_CHECK(c, "consumer %s: %s", queue, strerror(errno));
	while (!all_received(t)) {
		struct shmbus_msg m;
		const struct rmsg *rm;
		int err;

		CHILD_CHECK(!past(r->deadline_ns), "consumer %s: %u of %u "
			    "received at the deadline", queue,
			    READ_ONCE(t->unique), READ_ONCE(t->expected));
		err = shmbus_consumer__receive_view(c, &m, 50 * MS);
		if (err == -ETIMEDOUT || err == -EINTR)
			continue;
		CHILD_CHECK(!err, "receive %s: %s", queue, strerror(-err));
		rm = m.data;
		if (nack_every && m.len == sizeof(*rm) &&
		    rm->seq % nack_every == 0 && m.delivery_count == 1) {
			err = shmbus_consumer__nack(c, &m, SHMBUS_NACK_BACKOFF);
			/* -ENOTCONN, -ECONNRESET: no daemon, requeued at
			 * once instead */
			CHILD_CHECK(!err || err == -ENOTCONN ||
				    err == -ECONNRESET, "nack: %s",
				    strerror(-err));
			atomic_fetch_add(&t->nacks, 1);
			continue;
		}
		record(t, &m);
		err = shmbus_consumer__ack(c, &m);
		CHILD_CHECK(!err || err == -ESTALE, "ack: %s", strerror(-err));
		atomic_fetch_add(err ? &t->stale : acks, 1);
		if (pace_ns)
			usleep(pace_ns / 1000);
	}
	shmbus_consumer__free(c);
	shmbus__close(b);
	_exit(0);
}

struct kids {
	pid_t prod[MAXP];
	pid_t cons[MAXP];
	int nprod, ncons;
};

/* Consumers first, then producers; "small" gets its own of each. */
static void run_start(const struct run *r, struct tally *t, struct kids *k)
{
	memset(k, 0, sizeof(*k));
	assert_true(r->nprod + 2 <= MAXP && r->ncons + 1 <= MAXP);
	assert_true(r->per_prod <= MAXSEQ && r->small_n <= MAXSEQ &&
		    r->delayed_n <= MAXSEQ);
	for (int i = 0; i < r->ncons; i++)
		if (!(k->cons[k->ncons++] = spawn()))
			consumer(r, t, "work", r->nack_every, 0, &t->acks_work);
	if (!(k->cons[k->ncons++] = spawn()))
		consumer(r, t, "small", 0, r->small_drain_ns, &t->acks_small);
	for (int i = 0; i < r->nprod; i++)
		if (!(k->prod[k->nprod++] = spawn()))
			producer(r, t, i, "work", r->per_prod, r->period_ns,
				 false);
	if (!(k->prod[k->nprod++] = spawn()))
		producer(r, t, r->nprod, "small", r->small_n, r->period_ns,
			 false);
	if (!(k->prod[k->nprod++] = spawn()))
		producer(r, t, r->nprod + 1, "work", r->delayed_n,
			 r->delayed_period_ns, true);
}

static uint32_t sent_total(struct tally *t)
{
	uint32_t n = 0;

	for (int i = 0; i < MAXP; i++)
		n += smp_load_acquire(&t->sent[i]);
	return n;
}

/* Wait for the producers, then tell the consumers how many to expect,
 * then wait for them. Returns 0, or the first child's failure. */
static int run_finish(const struct run *r, struct tally *t, struct kids *k)
{
	int ms = (int)((r->deadline_ns - t_now_ns()) / MS) + 2000;
	int rc = 0;

	for (int i = 0; i < k->nprod; i++) {
		int st = t_wait(k->prod[i], ms > 0 ? ms : 1);

		if (st && !rc)
			rc = st;
	}
	WRITE_ONCE(t->expected, sent_total(t));
	smp_store_release(&t->done, 1);
	for (int i = 0; i < k->ncons; i++) {
		int st = t_wait(k->cons[i], ms > 0 ? ms : 1);

		if (st && !rc)
			rc = st;
	}
	return rc;
}

struct verdict {
	uint32_t sent, received, lost, dup;
};

/* Every sequence number each producer sent: received at least once? */
static struct verdict run_count(const struct run *r, struct tally *t)
{
	struct verdict v = { 0 };
	int np = r->nprod + 2;

	for (int p = 0; p < np; p++) {
		for (uint32_t s = 0; s < t->sent[p]; s++) {
			uint16_t g = t->got[p][s];

			v.lost += !g;
			v.dup += g > 1 ? g - 1 : 0;
			v.received += g;
		}
		/* nothing of what was never sent may come */
		for (uint32_t s = t->sent[p]; s < MAXSEQ; s++)
			v.dup += t->got[p][s];
		v.sent += t->sent[p];
	}
	return v;
}

/* Duplicates at-least-once allows here: a retried delayed publish whose
 * first try reached the dead daemon, an ack that found its lease gone. */
static uint32_t dup_allowed(struct tally *t)
{
	return t->retried + t->stale;
}

static void print_verdict(const char *what, struct verdict v, struct tally *t)
{
	print_message("%s: sent %u, received %u, lost %u, duplicated %u "
		      "(allowed %u: %u delayed publishes cut off by the kill "
		      "and retried, %u stale acks), corrupt %u; %u delayed "
		      "(%u early; %u publishes refused while no daemon ran), "
		      "%u nacked for backoff; %u opens or attaches cut off "
		      "by a kill and retried\n", what, v.sent, v.received,
		      v.lost, v.dup, dup_allowed(t), t->retried, t->stale,
		      t->corrupt, t->delayed, t->early, t->refused, t->nacks,
		      t->cut_off);
}

/* A queue's counters as a member reads them from the arena; what a
 * released slot counted is folded in by the daemon shortly after. */
static uint64_t stat_settled(struct shmbus *bus, const char *q, int stat,
			     uint64_t want)
{
	struct shmbus_queue_info qi;

	for (int i = 0; i < 1000; i++) {
		assert_int_equal(shmbus__queue_info(bus, q, &qi), 0);
		if (qi.stat[stat] == want)
			break;
		usleep(2000);
	}
	return qi.stat[stat];
}

/* ---- 1. steady traffic through a restart -------------------------- */

/* The number after "@key": in @json, or -1 if it is not there. */
static int64_t json_num(const char *json, const char *key)
{
	char want[64];
	const char *p;

	snprintf(want, sizeof(want), "\"%s\":", key);
	p = json ? strstr(json, want) : NULL;
	return p ? strtoll(p + strlen(want), NULL, 10) : -1;
}

/*
 * What "shmbus stat --format json" (the CLI beside the daemon) says of
 * bus @bus: its id, and queue @q's published and acked counters. False
 * if it failed or did not say.
 */
static bool cli_stat(const char *bus, const char *q, uint32_t *id,
		     uint64_t *published, uint64_t *acked)
{
	char cli[PATH_MAX], cmd[PATH_MAX * 2 + 128], out[8192], want[96];
	const char *queue;
	size_t len = 0, n;
	FILE *f;

	snprintf(cli, sizeof(cli), "%s", t_daemon_path());
	len = strlen(cli);
	if (len < 7 || strcmp(cli + len - 7, "shmbusd"))
		return false;
	cli[len - 1] = '\0';		/* .../bin/shmbusd -> .../bin/shmbus */
	snprintf(cmd, sizeof(cmd), "'%s' --socket '%s' --bus %s stat "
		 "--format json", cli, t_sock, bus);
	f = popen(cmd, "r");
	if (!f)
		return false;
	len = 0;
	while (len < sizeof(out) - 1 &&
	       (n = fread(out + len, 1, sizeof(out) - 1 - len, f)) > 0)
		len += n;
	out[len] = '\0';
	if (pclose(f) != 0)
		return false;
	snprintf(want, sizeof(want), "\"name\":\"%s\",", q);
	queue = strstr(out, want);
	if (!queue || json_num(out, "bus_id") < 0 ||
	    json_num(queue, "published") < 0 || json_num(queue, "acked") < 0)
		return false;
	*id = (uint32_t)json_num(out, "bus_id");
	*published = (uint64_t)json_num(queue, "published");
	*acked = (uint64_t)json_num(queue, "acked");
	return true;
}

/*
 * How many held messages (delayed, backing off) the daemon that adopted
 * bus @bus re-armed from their hold records, as its log says; -1 if it
 * does not say.
 */
static int rearmed(const char *bus)
{
	char logf[PATH_MAX], want[96], line[1024];
	FILE *f;
	int n = -1;

	snprintf(logf, sizeof(logf), "%s.log", t_sock);
	snprintf(want, sizeof(want), ":%s adopted from ", bus);
	f = fopen(logf, "r");
	while (f && fgets(line, sizeof(line), f)) {
		const char *h = strstr(line, " held messages re-armed");
		const char *p = h;

		if (!strstr(line, want) || !h)
			continue;
		while (p > line && p[-1] >= '0' && p[-1] <= '9')
			p--;
		n = atoi(p);
	}
	if (f)
		fclose(f);
	return n;
}

/* What a client that first opens the bus after the restart sees. */
struct newcomer {
	uint32_t bus_id;
	uint32_t work_id, small_id;
	uint64_t published_before;	/* "work", at the kill */
	uint64_t acked_before;
};

/*
 * A new process opens the bus by name after the restart: the same bus
 * (same id), the same queues with their counters, and it can declare,
 * publish and consume.
 */
static void newcomer(const struct run *r, const struct newcomer *nc)
{
	SHMBUS_OPTS(shmbus_open_opts, oo, .flags = r->open_flags);
	struct shmbus *b = shmbus__open(r->bus, &oo);
	struct shmbus_queue_info qi;
	struct shmbus_producer *p;
	struct shmbus_consumer *c;

	CHILD_CHECK(b, "open after the restart: %s (%s)", strerror(errno),
		    shmbus_errmsg());
	CHILD_CHECK(shmbus__id(b) == nc->bus_id, "bus id %08x, was %08x",
		    shmbus__id(b), nc->bus_id);
	CHILD_CHECK(!shmbus__queue_info(b, "work", &qi), "work gone");
	CHILD_CHECK(qi.id == nc->work_id, "work: id %u, was %u", qi.id,
		    nc->work_id);
	CHILD_CHECK(qi.stat[SHMBUS_STAT_PUBLISHED] >= nc->published_before &&
		    qi.stat[SHMBUS_STAT_ACKED] >= nc->acked_before,
		    "work's counters reset: published %llu acked %llu, "
		    "%llu %llu at the kill",
		    (unsigned long long)qi.stat[SHMBUS_STAT_PUBLISHED],
		    (unsigned long long)qi.stat[SHMBUS_STAT_ACKED],
		    (unsigned long long)nc->published_before,
		    (unsigned long long)nc->acked_before);
	CHILD_CHECK(!shmbus__queue_info(b, "small", &qi) &&
		    qi.id == nc->small_id, "small changed");
	SHMBUS_OPTS(shmbus_queue_opts, qo, .msg_size = 64);
	int err;

	err = shmbus__queue_declare(b, "fresh", &qo);
	CHILD_CHECK(err == 1, "declare fresh: %d (%s)", err, shmbus_errmsg());
	p = shmbus_producer__new(b, "fresh", NULL);
	c = shmbus_consumer__new(b, "fresh", NULL);
	CHILD_CHECK(p && c, "attach fresh: %s", strerror(errno));
	for (int i = 0; i < 10; i++)
		CHILD_CHECK(!shmbus_producer__publish(p, &i, sizeof(i), NULL),
			    "publish fresh");
	for (int i = 0; i < 10; i++) {
		struct shmbus_msg m;

		CHILD_CHECK(!shmbus_consumer__receive_view(c, &m, 2000 * MS),
			    "receive fresh %d", i);
		CHILD_CHECK(*(const int *)m.data == i, "fresh out of order");
		CHILD_CHECK(!shmbus_consumer__ack(c, &m), "ack fresh");
	}
	shmbus_consumer__free(c);
	shmbus_producer__free(p);
	shmbus__close(b);
	_exit(0);
}

static void test_steady_traffic(void **state)
{
	const struct run r = {
		.bus = "steady", .open_flags = SHMBUS_OPEN_NOSTART,
		.nprod = 3, .per_prod = 3000, .period_ns = 500000,
		.delayed_n = 300, .delayed_period_ns = 5 * MS,
		.delay_min_ns = 50 * MS,
		.delay_span_ns = 400 * MS, .nack_every = 7,
		.backoff_ns = 100 * MS, .ncons = 2,
		.small_n = 400, .small_drain_ns = 3 * MS,
		.deadline_ns = t_now_ns() + 40000 * MS,
	};
	SHMBUS_OPTS(shmbus_queue_opts, later, .msg_size = 64);
	struct tally *t = t_shared(sizeof(*t));
	struct newcomer *nc = t_shared(sizeof(*nc));
	struct shmbus_queue_info qi;
	struct verdict v;
	struct kids k;
	struct shmbus *bus;
	pid_t d1, d2, kid;
	uint32_t at_kill, at_restart, small_blocked, cli_id;
	uint64_t cli_pub, cli_acked;
	int held;
	int64_t t0 = t_now_ns(), down;

	(void)state;
	d1 = daemon_start();
	bus = run_create(&r);
	nc->bus_id = shmbus__id(bus);
	assert_int_equal(shmbus__queue_info(bus, "work", &qi), 0);
	nc->work_id = qi.id;
	assert_int_equal(shmbus__queue_info(bus, "small", &qi), 0);
	nc->small_id = qi.id;
	run_start(&r, t, &k);

	/* kill it at 40 %, a delayed message due and retries backing off */
	while (sent_total(t) < (r.nprod * r.per_prod + r.small_n +
				r.delayed_n) * 2 / 5 &&
	       !past(r.deadline_ns))
		usleep(1000);
	assert_int_equal(shmbus__queue_info(bus, "work", &qi), 0);
	nc->published_before = qi.stat[SHMBUS_STAT_PUBLISHED];
	nc->acked_before = qi.stat[SHMBUS_STAT_ACKED];
	assert_int_equal(shmbus__queue_info(bus, "small", &qi), 0);
	small_blocked = (uint32_t)qi.depth;
	daemon_kill(d1);
	at_kill = READ_ONCE(t->unique);
	down = t_now_ns();

	/* 300 ms without a daemon: due times pass, traffic flows */
	usleep(300000);
	at_restart = READ_ONCE(t->unique);
	d2 = daemon_start();
	down = t_now_ns() - down;
	assert_true(d2 != d1);
	if (!(kid = spawn()))
		newcomer(&r, nc);
	assert_int_equal(t_wait(kid, 20000), 0);

	assert_int_equal(run_finish(&r, t, &k), 0);
	v = run_count(&r, t);
	held = rearmed(r.bus);
	print_verdict("steady traffic", v, t);
	print_message("daemon %d killed at %u received (the small queue %u "
		      "deep), %u received while none ran (%.0f ms), "
		      "daemon %d took over and re-armed %d held messages; "
		      "%.1f s in all\n", (int)d1, at_kill, small_blocked,
		      at_restart - at_kill, down / 1e6, (int)d2, held,
		      (t_now_ns() - t0) / 1e9);
	/* delayed and backing-off messages were in the dead daemon's hands */
	assert_true(held > 0);
	assert_int_equal(v.lost, 0);
	assert_int_equal(t->corrupt, 0);
	assert_int_equal(t->early, 0);
	assert_true(v.dup <= dup_allowed(t));
	assert_true(t->delayed >= r.delayed_n);
	assert_true(t->nacks > 0);
	assert_true(at_restart > at_kill);

	/* the same bus, queues and counters, through the old handle too */
	assert_int_equal(shmbus__id(bus), nc->bus_id);
	assert_int_equal(shmbus__queue_info(bus, "work", &qi), 0);
	assert_int_equal(qi.id, nc->work_id);
	assert_true(qi.stat[SHMBUS_STAT_PUBLISHED] >=
		    (uint64_t)r.nprod * r.per_prod + r.delayed_n);
	assert_true(qi.stat[SHMBUS_STAT_PUBLISHED] <=
		    (uint64_t)r.nprod * r.per_prod + r.delayed_n +
		    t->retried);
	assert_int_equal(stat_settled(bus, "work", SHMBUS_STAT_ACKED,
				      t->acks_work), t->acks_work);
	assert_int_equal(stat_settled(bus, "small", SHMBUS_STAT_ACKED,
				      t->acks_small), t->acks_small);
	assert_int_equal(stat_settled(bus, "small", SHMBUS_STAT_PUBLISHED,
				      r.small_n), r.small_n);
	assert_int_equal(shmbus__queue_info(bus, "fresh", &qi), 0);
	assert_int_equal(qi.stat[SHMBUS_STAT_ACKED], 10);
	/* and as the CLI shows them */
	assert_int_equal(shmbus__queue_info(bus, "work", &qi), 0);
	assert_true(cli_stat(r.bus, "work", &cli_id, &cli_pub, &cli_acked));
	print_message("shmbus stat: bus id %08x, work published %llu acked "
		      "%llu\n", cli_id, (unsigned long long)cli_pub,
		      (unsigned long long)cli_acked);
	assert_int_equal(cli_id, nc->bus_id);
	assert_int_equal(cli_pub, qi.stat[SHMBUS_STAT_PUBLISHED]);
	assert_int_equal(cli_acked, qi.stat[SHMBUS_STAT_ACKED]);
	/* and its control calls go to the new daemon */
	assert_int_equal(shmbus__queue_declare(bus, "later", &later), 1);
	shmbus__close(bus);
}

/* ---- 2. kill after kill ------------------------------------------- */

static bool san_build(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	return true;
#else
	const char *san = getenv("SAN");

	return san && *san;
#endif
}

static void test_loop(void **state)
{
	const int iters = san_build() ? 20 : 100;
	struct tally *t = t_shared(sizeof(*t));
	struct verdict sum = { 0 };
	uint32_t sum_early = 0, sum_corrupt = 0, sum_allowed = 0, sum_cut = 0;
	int second_kills = 0, third_kills = 0;
	int64_t t0 = t_now_ns(), slowest = 0;
	/* the kill times are random, the same each run unless told */
	const char *env = getenv("SHMBUS_TEST_SEED");
	unsigned seed = env ? (unsigned)atoi(env) : 4242, seed0 = seed;
	pid_t d = daemon_start();

	(void)state;
	if (iters < 100)
		print_message("sanitizer build: %d iterations instead of 100\n",
			      iters);
	for (int it = 0; it < iters; it++) {
		char name[32], how[160];
		struct run r = {
			.bus = name, .nprod = 2, .per_prod = 150,
			.period_ns = 300000, .delayed_n = 20,
			.delayed_period_ns = 2500000,
			.delay_min_ns = 5 * MS, .delay_span_ns = 50 * MS,
			.nack_every = 7, .backoff_ns = 10 * MS, .ncons = 2,
			.small_n = 40, .small_drain_ns = 1 * MS,
			.deadline_ns = t_now_ns() + 20000 * MS,
		};
		int64_t i0 = t_now_ns();
		struct shmbus *bus, *again;
		struct verdict v;
		struct kids k;
		uint32_t id;

		snprintf(name, sizeof(name), "loop%d", it);
		memset(t, 0, sizeof(*t));
		bus = run_create(&r);
		id = shmbus__id(bus);
		run_start(&r, t, &k);
		usleep(rand_r(&seed) % 80000);
		snprintf(how, sizeof(how), "killed %d at %.1f ms", (int)d,
			 (t_now_ns() - i0) / 1e6);
		daemon_kill(d);
		/* a client starts the next; now and then kill that one too,
		 * at once or a little later, while members rejoin */
		for (int n = 0;; n++) {
			d = daemon_next(d, 10000);
			assert_true(d > 0);
			if (n == 2 || rand_r(&seed) % 3)
				break;
			usleep(rand_r(&seed) % 15000);
			snprintf(how + strlen(how), sizeof(how) - strlen(how),
				 ", its successor %d at %.1f ms", (int)d,
				 (t_now_ns() - i0) / 1e6);
			daemon_kill(d);
			if (n == 0)
				second_kills++;
			else
				third_kills++;
		}
		if (run_finish(&r, t, &k))
			fail_msg("iteration %d (%s): a child failed", it, how);
		v = run_count(&r, t);
		if (v.lost || v.dup > dup_allowed(t) || t->corrupt || t->early)
			print_verdict(name, v, t);
		assert_int_equal(v.lost, 0);
		assert_true(v.dup <= dup_allowed(t));
		assert_int_equal(t->corrupt, 0);
		assert_int_equal(t->early, 0);
		/* the same bus for an opener after the restarts */
		again = shmbus__open(name, NULL);
		assert_non_null(again);
		assert_int_equal(shmbus__id(again), id);
		assert_int_equal(shmbus__id(bus), id);
		shmbus__close(again);
		shmbus__close(bus);
		sum.sent += v.sent;
		sum.received += v.received;
		sum.dup += v.dup;
		sum_allowed += dup_allowed(t);
		sum_early += t->early;
		sum_corrupt += t->corrupt;
		sum_cut += t->cut_off;
		if (t_now_ns() - i0 > slowest)
			slowest = t_now_ns() - i0;
	}
	print_message("seed %u ($SHMBUS_TEST_SEED): %d iterations, each a "
		      "kill at a random time (%d daemons killed again while "
		      "members rejoined, %d a third time): sent %u, received "
		      "%u, lost %u, duplicated %u (allowed %u), corrupt %u, "
		      "early %u; %u opens or attaches cut off by a kill and "
		      "retried; %.1f s, slowest iteration %.0f ms\n", seed0,
		      iters, second_kills, third_kills, sum.sent, sum.received,
		      sum.lost, sum.dup, sum_allowed, sum_corrupt, sum_early,
		      sum_cut, (t_now_ns() - t0) / 1e9, slowest / 1e6);
	assert_true(second_kills > 0);
}

/* ---- 3. a consumer dies while no daemon runs ---------------------- */

#define NOBODY	65534

/*
 * Start a daemon on @sock as uid 65534 (--daemonize: it logs to
 * @sock.log); its pid.
 */
static pid_t daemon_start_nobody(const char *sock)
{
	char lock[PATH_MAX], buf[32] = "";
	pid_t kid = fork(), pid;

	if (!kid) {
		if (setgroups(0, NULL) || setresgid(NOBODY, NOBODY, NOBODY) ||
		    setresuid(NOBODY, NOBODY, NOBODY))
			_exit(126);
		execl(t_daemon_path(), "shmbusd", "--daemonize", "--socket",
		      sock, (char *)NULL);
		_exit(127);
	}
	assert_true(kid > 0);
	assert_int_equal(t_wait(kid, 10000), 0);
	snprintf(lock, sizeof(lock), "%s.lock", sock);
	for (int i = 0; i < 2000; i++) {
		int fd = open(lock, O_RDONLY);

		if (fd >= 0) {
			ssize_t n = read(fd, buf, sizeof(buf) - 1);

			close(fd);
			buf[n > 0 ? n : 0] = '\0';
			pid = atoi(buf);
			if (pid > 0 && t_pid_running(pid))
				return own_daemon = pid;
		}
		usleep(1000);
	}
	fail_msg("no daemon on %s", sock);
	return 0;
}

/*
 * The line of @log past @from saying that bus @bus was adopted from
 * process @pid (0: from any), into @line; waits up to 10 s for it. False
 * if none came.
 */
static bool adopted_from(const char *log, size_t from, const char *bus,
			 pid_t pid, char *line, size_t cap)
{
	char want[128];

	if (pid)
		snprintf(want, sizeof(want), ":%s adopted from pid %d ", bus,
			 (int)pid);
	else
		snprintf(want, sizeof(want), ":%s adopted from pid ", bus);
	for (int i = 0; i < 2000; i++) {
		FILE *f = fopen(log, "r");
		bool hit = false;

		if (f) {
			fseek(f, (long)from, SEEK_SET);
			while (!hit && fgets(line, (int)cap, f))
				hit = strstr(line, want);
			fclose(f);
		}
		if (hit)
			return true;
		usleep(5000);
	}
	return false;
}

/* A process of this test's bus "cdies": on @sock, as uid 65534 if
 * @nobody, and then not dumpable, so that a daemon of that uid can
 * neither see nor take the arenas it maps: only its REJOIN gives them. */
static struct shmbus *cdies_open(const char *sock, bool nobody)
{
	SHMBUS_OPTS(shmbus_open_opts, oo, .flags = SHMBUS_OPEN_NOSTART,
		    .socket_path = sock);
	struct shmbus *b;

	if (nobody) {
		shmbus_set_print(NULL);
		CHILD_CHECK(!setgroups(0, NULL) &&
			    !setresgid(NOBODY, NOBODY, NOBODY) &&
			    !setresuid(NOBODY, NOBODY, NOBODY) &&
			    !prctl(PR_SET_DUMPABLE, 0), "become nobody");
	}
	b = shmbus__open("cdies", &oo);
	CHILD_CHECK(b, "open cdies: %s (%s)", strerror(errno),
		    shmbus_errmsg());
	return b;
}

enum { CD_SENT = 20, CD_HELD = 6, CD_MORE = 5 };

struct cdies {
	int seen[CD_SENT + CD_MORE];
	int redelivered;	/* received with delivery_count > 1 */
	int received;
	uint64_t lease_expired, redelivered_stat, in_flight;
};

/* The producer: declares the queue, publishes CD_SENT, and CD_MORE when
 * told (after the restart); lives until @cmd closes. */
static void cdies_producer(const char *sock, bool nobody, int ready, int cmd)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_len = 64, .msg_size = 64,
		    .max_consumers = 4, .lease_ns = 60000 * MS);
	struct shmbus *b = cdies_open(sock, nobody);
	struct shmbus_producer *p;
	char x;

	CHILD_CHECK(shmbus__queue_declare(b, "jobs", &qo) == 1, "declare");
	p = shmbus_producer__new(b, "jobs", NULL);
	CHILD_CHECK(p, "producer: %s", strerror(errno));
	for (int i = 0; i < CD_SENT; i++)
		CHILD_CHECK(!shmbus_producer__publish(p, &i, sizeof(i), NULL),
			    "publish");
	CHILD_CHECK(write(ready, "p", 1) == 1, "ready");
	CHILD_CHECK(read(cmd, &x, 1) == 1, "command");
	for (int i = CD_SENT; i < CD_SENT + CD_MORE; i++)
		CHILD_CHECK(!shmbus_producer__publish(p, &i, sizeof(i), NULL),
			    "publish after the restart");
	CHILD_CHECK(write(ready, "m", 1) == 1, "ready");
	CHILD_CHECK(read(cmd, &x, 1) == 0, "end");
	_exit(0);
}

/* The consumer that dies: takes CD_HELD leases and keeps them. */
static void cdies_holder(const char *sock, bool nobody, int ready)
{
	struct shmbus *b = cdies_open(sock, nobody);
	struct shmbus_consumer *c = shmbus_consumer__new(b, "jobs", NULL);
	struct shmbus_msg m[CD_HELD];

	CHILD_CHECK(c, "consumer: %s", strerror(errno));
	for (int i = 0; i < CD_HELD; i++)
		CHILD_CHECK(!shmbus_consumer__try_receive(c, &m[i]), "receive");
	CHILD_CHECK(write(ready, "h", 1) == 1, "ready");
	for (;;)
		pause();
}

/* A consumer started after the restart: takes everything, acks it. */
static void cdies_taker(const char *sock, bool nobody, struct cdies *cd)
{
	struct shmbus *b = cdies_open(sock, nobody);
	struct shmbus_consumer *c = shmbus_consumer__new(b, "jobs", NULL);
	struct shmbus_queue_info qi;

	CHILD_CHECK(c, "consumer after the restart: %s", strerror(errno));
	while (cd->received < CD_SENT + CD_MORE) {
		struct shmbus_msg m;
		int v;

		if (shmbus_consumer__receive_view(c, &m, 3000 * MS))
			break;
		v = *(const int *)m.data;
		CHILD_CHECK(m.len == sizeof(int) && v >= 0 &&
			    v < CD_SENT + CD_MORE, "bad message");
		cd->seen[v]++;
		cd->redelivered += m.delivery_count > 1;
		cd->received++;
		CHILD_CHECK(!shmbus_consumer__ack(c, &m), "ack");
	}
	CHILD_CHECK(!shmbus__queue_info(b, "jobs", &qi), "queue info");
	cd->lease_expired = qi.stat[SHMBUS_STAT_LEASE_EXPIRED];
	cd->redelivered_stat = qi.stat[SHMBUS_STAT_REDELIVERED];
	cd->in_flight = qi.in_flight;
	_exit(0);
}

/*
 * A consumer holds leases; the daemon is killed, then the consumer, and
 * only then is a new daemon started. It adopts the bus from the member
 * left, the producer: as root by taking the arena from the producer's
 * fd table at start, as an unprivileged daemon (its clients not
 * dumpable) when the producer's handle rejoins. The dead consumer's
 * messages must go to a consumer started afterwards, at once (not after
 * the 60 s lease), each once.
 */
static void consumer_dies_while_down(bool nobody)
{
	struct cdies *cd = t_shared(sizeof(*cd));
	char sock[PATH_MAX], log[PATH_MAX + 8], dir[128], line[1024];
	int ready[2], cmd[2], lost = 0, dup = 0;
	pid_t d1, d2, prod, holder, taker;
	int64_t t_restart;
	size_t at;
	char x;

	if (nobody) {
		/* the daemon's own directory: it makes its socket there */
		snprintf(dir, sizeof(dir), "%s/nobody", t_dir);
		assert_int_equal(mkdir(dir, 0755), 0);
		assert_int_equal(chown(dir, NOBODY, NOBODY), 0);
		assert_int_equal(chmod(t_dir, 0755), 0);
		snprintf(sock, sizeof(sock), "%s/d.sock", dir);
		d1 = daemon_start_nobody(sock);
	} else {
		snprintf(sock, sizeof(sock), "%s", t_sock);
		d1 = daemon_start();
	}
	snprintf(log, sizeof(log), "%s.log", sock);
	assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
	assert_int_equal(pipe2(cmd, O_CLOEXEC), 0);
	if (!(prod = spawn())) {
		close(cmd[1]);
		cdies_producer(sock, nobody, ready[1], cmd[0]);
	}
	close(cmd[0]);
	assert_int_equal(read(ready[0], &x, 1), 1);
	if (!(holder = spawn()))
		cdies_holder(sock, nobody, ready[1]);
	assert_int_equal(read(ready[0], &x, 1), 1);

	/* the daemon first, then the consumer, and only then a new daemon */
	daemon_kill(d1);
	kill(holder, SIGKILL);
	assert_int_equal(t_wait(holder, 5000), 128 + SIGKILL);
	at = log_size(log);
	d2 = nobody ? daemon_start_nobody(sock) : daemon_start();
	t_restart = t_now_ns();
	if (!adopted_from(log, at, "cdies", prod, line, sizeof(line)))
		fail_msg("daemon %d did not adopt cdies from the producer "
			 "(pid %d)", (int)d2, (int)prod);
	print_message("%s", line);
	/* more traffic after the restart, then a new consumer */
	assert_int_equal(write(cmd[1], "m", 1), 1);
	assert_int_equal(read(ready[0], &x, 1), 1);
	if (!(taker = spawn()))
		cdies_taker(sock, nobody, cd);
	assert_int_equal(t_wait(taker, 30000), 0);
	close(cmd[1]);
	assert_int_equal(t_wait(prod, 10000), 0);
	for (int i = 0; i < CD_SENT + CD_MORE; i++) {
		lost += !cd->seen[i];
		dup += cd->seen[i] > 1 ? cd->seen[i] - 1 : 0;
	}
	print_message("%s: sent %d, received %d, lost %d, duplicated %d; %d "
		      "held by the consumer killed while no daemon ran, %d "
		      "redelivered by daemon %d (%.0f ms after its start); "
		      "lease expiries %llu\n", nobody ? "uid 65534" : "root",
		      CD_SENT + CD_MORE, cd->received, lost, dup, CD_HELD,
		      cd->redelivered, (int)d2, (t_now_ns() - t_restart) / 1e6,
		      (unsigned long long)cd->lease_expired);
	if (nobody) {
		kill(d2, SIGKILL);
		assert_int_equal(chmod(t_dir, 0700), 0);
	}
	assert_int_equal(lost, 0);
	assert_int_equal(dup, 0);
	assert_int_equal(cd->received, CD_SENT + CD_MORE);
	assert_int_equal(cd->redelivered, CD_HELD);
	/* the death released them, not the 60 s lease */
	assert_int_equal(cd->lease_expired, 0);
	assert_true(cd->redelivered_stat >= CD_HELD);
	assert_int_equal(cd->in_flight, 0);
	close(ready[0]);
	close(ready[1]);
}

static void test_consumer_dies_while_down(void **state)
{
	(void)state;
	consumer_dies_while_down(false);
}

static void test_consumer_dies_while_down_nobody(void **state)
{
	(void)state;
	consumer_dies_while_down(true);
}

/* ---- 4. forged and foreign arenas --------------------------------- */

/* A connection to the daemon, HELLO done; -errno on failure. Usable in
 * forked children (no cmocka asserts). */
static int raw_connect(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct {
		struct sbc_hdr h;
		struct sbc_hello b;
	} f = {
		.h = { .magic = SBC_MAGIC, .version = SBC_VERSION,
		       .type = SBC_HELLO, .len = sizeof(f), .seq = 1 },
		.b = { .version_min = SBC_VERSION,
		       .version_max = SBC_VERSION },
	};
	uint8_t buf[SBC_FRAME_MAX];
	struct pollfd pfd = { .events = POLLIN };
	struct sbc_hdr h;
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	ssize_t n;

	if (fd < 0)
		return -errno;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", t_sock);
	pfd.fd = fd;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    send(fd, &f, sizeof(f), 0) != sizeof(f) ||
	    poll(&pfd, 1, 5000) != 1 ||
	    (n = recv(fd, buf, sizeof(buf), 0)) < (ssize_t)sizeof(h)) {
		close(fd);
		return -EPROTO;
	}
	memcpy(&h, buf, sizeof(h));
	if (h.status) {
		close(fd);
		return h.status < 0 ? h.status : -EPROTO;
	}
	return fd;
}

/*
 * Speak REJOIN directly: bus (@owner, @name), @token, and @arena as its
 * one fd. Returns the reply's status (0 or -errno), or -EPROTO when no
 * reply came; a refusal's reason goes to @why.
 */
static int raw_rejoin(int arena, const char *name, uint32_t owner,
		      uint64_t token, char *why, size_t cap)
{
	struct {
		struct sbc_hdr h;
		struct sbc_rejoin b;
	} f = {
		.h = { .magic = SBC_MAGIC, .version = SBC_VERSION,
		       .type = SBC_REJOIN, .len = sizeof(f), .seq = 2 },
		.b = { .owner_uid = owner, .token = token },
	};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cm = { { 0 } };
	struct iovec iov = { .iov_base = &f, .iov_len = sizeof(f) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = cm.buf,
			     .msg_controllen = sizeof(cm.buf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	uint8_t buf[SBC_FRAME_MAX];
	struct pollfd pfd = { .events = POLLIN };
	struct sbc_hdr h;
	ssize_t n;
	int fd = raw_connect();

	if (fd < 0)
		return fd;
	snprintf(f.b.name, sizeof(f.b.name), "%s", name);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &arena, sizeof(int));
	pfd.fd = fd;
	if (sendmsg(fd, &mh, 0) != sizeof(f) || poll(&pfd, 1, 5000) != 1 ||
	    (n = recv(fd, buf, sizeof(buf), 0)) < (ssize_t)sizeof(h)) {
		close(fd);
		return -EPROTO;
	}
	memcpy(&h, buf, sizeof(h));
	if (why && cap) {
		size_t l = (size_t)n - sizeof(h);

		l = h.status ? (l < cap ? l : cap) : 0;
		memcpy(why, buf + sizeof(h), l);
		why[l ? l - 1 : 0] = '\0';
	}
	close(fd);
	return h.status;
}

/* This process's fd of bus @name's arena (the library keeps it) and its
 * memfd name into @memfd (without "/memfd:" and " (deleted)"), or -1. */
static int arena_fd_of(const char *name, char *memfd, size_t cap)
{
	char path[64], link[512];
	int fd = t_bus_arena_fd(name);
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (fd < 0 || (n = readlink(path, link, sizeof(link) - 1)) <= 0)
		return -1;
	link[n] = '\0';
	*strstr(link, " (deleted)") = '\0';
	n = (ssize_t)strlen(link + strlen("/memfd:"));
	if ((size_t)n >= cap)
		return -1;
	memcpy(memfd, link + strlen("/memfd:"), (size_t)n + 1);
	return fd;
}

/* A sealed memfd named @memfd holding @size bytes of @bytes: an arena in
 * all but who made it. */
static int forge(const char *memfd, const void *bytes, size_t size)
{
	int fd = memfd_create(memfd, MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd < 0 || ftruncate(fd, (off_t)size) ||
	    pwrite(fd, bytes, size, 0) != (ssize_t)size ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* Did the daemon log a line naming "pid @pid" past offset @from? It
 * logs a refusal before it replies: no waiting. */
static bool logged_pid(const char *path, size_t from, pid_t pid)
{
	char want[32], line[1024];
	FILE *f = fopen(path, "r");
	bool hit = false;

	snprintf(want, sizeof(want), "pid %d", (int)pid);
	if (!f)
		return false;
	fseek(f, (long)from, SEEK_SET);
	while (!hit && fgets(line, sizeof(line), f)) {
		const char *w = strstr(line, want);

		hit = w && (w[strlen(want)] < '0' || w[strlen(want)] > '9');
	}
	fclose(f);
	return hit;
}

/*
 * The memfd name the daemon would give nobody's bus "mine": @real's with
 * its last fields (uid, gid, mode, bus id, name) rewritten.
 */
static void own_bus_name(char *out, size_t cap, const char *real)
{
	const char *f[5];
	const char *p = real + strlen(real);
	int n = 0;

	while (n < 5 && p > real)
		if (*--p == ':')
			f[n++] = p;
	CHILD_CHECK(n == 5, "memfd name '%s'", real);
	snprintf(out, cap, "%.*s:%d:%d:600:12345678:mine",
		 (int)(f[4] - real), real, NOBODY, NOBODY);
}

/* What the unprivileged child got for each REJOIN it tried. */
struct nobody_says {
	int own_arena;		/* its library's own fd of the real bus */
	int forged_copy;	/* a copy of the real arena, named the same */
	int forged_orders;	/* "shmbus:0:0:0600:12345678:orders" */
	int forged_mine;	/* a bus of its own the daemon never made */
	char mine[256];		/* its memfd name */
	char why[SBC_REASON_MAX];
};

/*
 * As uid 65534: join the real bus (mode 0666, so nobody may), then hand
 * the daemon its own arena fd (accepted: the control) and three forged
 * ones (refused). @bytes: the real arena, read by the parent.
 */
static void nobody_forges(struct nobody_says *ns, const char *real_memfd,
			  const void *bytes, size_t size)
{
	SHMBUS_OPTS(shmbus_open_opts, oo, .flags = SHMBUS_OPEN_OWNER |
		    SHMBUS_OPEN_NOSTART, .owner_uid = 0);
	uint64_t token = 0x1234567887654321ull;
	struct shmbus *b;
	char memfd[256];
	int fd;

	shmbus_set_print(NULL);
	CHILD_CHECK(!setgroups(0, NULL) && !setresgid(NOBODY, NOBODY, NOBODY) &&
		    !setresuid(NOBODY, NOBODY, NOBODY), "become nobody");
	b = shmbus__open("orders", &oo);
	CHILD_CHECK(b, "nobody opens orders: %s (%s)", strerror(errno),
		    shmbus_errmsg());
	fd = arena_fd_of("orders", memfd, sizeof(memfd));
	CHILD_CHECK(fd >= 0, "nobody: no arena fd");
	ns->own_arena = raw_rejoin(fd, "orders", 0, token, NULL, 0);

	fd = forge(real_memfd, bytes, size);
	CHILD_CHECK(fd >= 0, "forge: %s", strerror(errno));
	ns->forged_copy = raw_rejoin(fd, "orders", 0, token, ns->why,
				     sizeof(ns->why));
	close(fd);

	fd = forge("shmbus:0:0:0600:12345678:orders", bytes, size);
	CHILD_CHECK(fd >= 0, "forge: %s", strerror(errno));
	ns->forged_orders = raw_rejoin(fd, "orders", 0, token, NULL, 0);
	close(fd);

	own_bus_name(ns->mine, sizeof(ns->mine), real_memfd);
	fd = forge(ns->mine, bytes, size);
	CHILD_CHECK(fd >= 0, "forge: %s", strerror(errno));
	ns->forged_mine = raw_rejoin(fd, "mine", NOBODY, token, NULL, 0);
	close(fd);
	shmbus__close(b);
	_exit(0);
}

/*
 * Uid 65534 holds a copy of bus orders' arena under its memfd name while
 * the daemon is killed and another started: the new daemon, pulling the
 * arenas live processes hold, adopts the real one, never the copy (it
 * skips the copy once it has the bus, or refuses it first); the copy
 * handed over in a REJOIN afterwards is refused and logged.
 */
static void forgery_through_restart(const char *real, const void *bytes,
				    size_t size)
{
	char logf[PATH_MAX];
	int *status = t_shared(sizeof(int));
	int ready[2], go[2];
	size_t at;
	pid_t kid, d;
	char x;

	snprintf(logf, sizeof(logf), "%s.log", t_sock);
	assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
	assert_int_equal(pipe2(go, O_CLOEXEC), 0);
	chmod(t_dir, 0755);
	if (!(kid = spawn())) {
		int fd;

		shmbus_set_print(NULL);
		CHILD_CHECK(!setgroups(0, NULL) &&
			    !setresgid(NOBODY, NOBODY, NOBODY) &&
			    !setresuid(NOBODY, NOBODY, NOBODY), "become nobody");
		fd = forge(real, bytes, size);
		CHILD_CHECK(fd >= 0, "forge: %s", strerror(errno));
		CHILD_CHECK(write(ready[1], "r", 1) == 1, "ready");
		CHILD_CHECK(read(go[0], &x, 1) == 1, "go");
		*status = raw_rejoin(fd, "orders", 0, 42, NULL, 0);
		_exit(0);
	}
	assert_int_equal(read(ready[0], &x, 1), 1);
	at = log_size(logf);
	daemon_kill(t_daemon_pid());
	d = daemon_start();
	assert_int_equal(write(go[1], "g", 1), 1);
	assert_int_equal(t_wait(kid, 10000), 0);
	chmod(t_dir, 0700);
	print_message("a copy of orders' arena held by uid %d through the "
		      "restart, then handed over in a REJOIN: %d\n", NOBODY,
		      *status);
	assert_int_equal(*status, -EACCES);
	assert_true(logged_pid(logf, at, kid));
	assert_true(t_pid_running(d));
	for (int i = 0; i < 2; i++) {
		close(ready[i]);
		close(go[i]);
	}
}

static void test_forged_arena(void **state)
{
	SHMBUS_OPTS(shmbus_open_opts, oo, .mode = 0666,
		    .flags = SHMBUS_OPEN_NOSTART);
	struct nobody_says *ns = t_shared(sizeof(*ns));
	char logf[PATH_MAX], real[256], other_memfd[256], why[SBC_REASON_MAX];
	struct shmbus *orders, *other, *ghost;
	struct shmbus_producer *p;
	struct shmbus_consumer *c;
	struct shmbus_queue_info qi;
	int real_fd, other_fd, forged, seen[10] = { 0 };
	int received = 0, lost = 0, dup = 0, corrupt = 0, err;
	uint32_t orders_id, other_id;
	size_t at, size;
	struct stat st;
	uint8_t *bytes;
	pid_t d, kid;

	(void)state;
	snprintf(logf, sizeof(logf), "%s.log", t_sock);
	d = daemon_start();
	orders = shmbus__open("orders", &oo);
	other = shmbus__open("other", &oo);
	assert_non_null(orders);
	assert_non_null(other);
	orders_id = shmbus__id(orders);
	other_id = shmbus__id(other);
	assert_int_equal(shmbus__queue_declare(orders, "q", NULL), 1);
	p = shmbus_producer__new(orders, "q", NULL);
	assert_non_null(p);
	for (int i = 0; i < 10; i++)
		t_publish_int(p, i, NULL);
	real_fd = arena_fd_of("orders", real, sizeof(real));
	other_fd = arena_fd_of("other", other_memfd, sizeof(other_memfd));
	assert_true(real_fd >= 0 && other_fd >= 0);
	assert_int_equal(fstat(real_fd, &st), 0);
	size = (size_t)st.st_size;
	bytes = malloc(size);
	assert_non_null(bytes);
	assert_int_equal(pread(real_fd, bytes, size, 0), (ssize_t)size);

	/* the control: the real arena of the bus it claims is taken */
	err = raw_rejoin(real_fd, "orders", 0, 42, why, sizeof(why));
	print_message("the real arena handed back: %d\n", err);
	assert_int_equal(err, 0);

	/* root's forgery: a copy under the real name, another inode */
	forged = forge(real, bytes, size);
	assert_true(forged >= 0);
	at = log_size(logf);
	err = raw_rejoin(forged, "orders", 0, 42, why, sizeof(why));
	print_message("root's copy of the arena as '%s': %d (%s)\n", real, err,
		      why);
	assert_int_equal(err, -EACCES);
	assert_true(logged_pid(logf, at, getpid()));
	close(forged);

	/* a real arena, of another bus: the bus named is known, or not */
	at = log_size(logf);
	err = raw_rejoin(other_fd, "orders", 0, 42, why, sizeof(why));
	print_message("bus other's arena as orders: %d (%s)\n", err, why);
	assert_int_equal(err, -EACCES);
	assert_true(logged_pid(logf, at, getpid()));
	at = log_size(logf);
	err = raw_rejoin(other_fd, "ghost", 0, 42, why, sizeof(why));
	print_message("bus other's arena as ghost: %d (%s)\n", err, why);
	assert_int_equal(err, -EACCES);
	assert_true(logged_pid(logf, at, getpid()));

	/* an unprivileged uid's own memfds */
	chmod(t_dir, 0755);
	at = log_size(logf);
	if (!(kid = spawn()))
		nobody_forges(ns, real, bytes, size);
	assert_int_equal(t_wait(kid, 20000), 0);
	chmod(t_dir, 0700);
	print_message("uid %d: its own fd of the real arena %d; a copy named "
		      "'%s' %d (%s), named 'shmbus:0:0:0600:12345678:orders' "
		      "%d, a bus of its own '%s' %d\n", NOBODY, ns->own_arena,
		      real, ns->forged_copy, ns->why, ns->forged_orders,
		      ns->mine, ns->forged_mine);
	assert_int_equal(ns->own_arena, 0);
	assert_int_equal(ns->forged_copy, -EACCES);
	assert_int_equal(ns->forged_orders, -EACCES);
	assert_int_equal(ns->forged_mine, -EACCES);
	assert_true(logged_pid(logf, at, kid));

	/* nothing was adopted or replaced: the same daemon, the same buses,
	 * every message there, and ghost is a new, empty bus */
	assert_true(t_pid_running(d));
	assert_int_equal(t_daemon_pid(), d);
	ghost = shmbus__open("ghost", &oo);
	assert_non_null(ghost);
	assert_true(shmbus__id(ghost) != other_id);
	assert_int_equal(shmbus__queue_list(ghost, NULL, 0), 0);
	shmbus__close(ghost);
	if (!(kid = spawn())) {
		struct shmbus *b = shmbus__open("orders", &oo);

		CHILD_CHECK(b && shmbus__id(b) == orders_id, "orders changed");
		_exit(0);
	}
	assert_int_equal(t_wait(kid, 10000), 0);
	assert_int_equal(shmbus__id(other), other_id);

	/* a forgery held while the daemon restarts: the next daemon finds
	 * it among the arenas live processes hold, and refuses it */
	forgery_through_restart(real, bytes, size);
	assert_int_equal(shmbus__id(orders), orders_id);
	assert_int_equal(shmbus__id(other), other_id);
	c = shmbus_consumer__new(orders, "q", NULL);
	assert_non_null(c);
	for (;;) {
		struct shmbus_msg m;
		int v;

		if (shmbus_consumer__receive_view(c, &m, 200 * MS))
			break;
		v = *(const int *)m.data;
		if (m.len != sizeof(int) || v < 0 || v >= 10)
			corrupt++;
		else
			seen[v]++;
		received++;
		assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	}
	for (int i = 0; i < 10; i++) {
		lost += !seen[i];
		dup += seen[i] > 1 ? seen[i] - 1 : 0;
	}
	assert_int_equal(shmbus__queue_info(orders, "q", &qi), 0);
	print_message("bus orders after the forgeries: sent 10, received %d, "
		      "lost %d, duplicated %d, corrupt %d; published %llu, "
		      "acked %llu\n", received, lost, dup, corrupt,
		      (unsigned long long)qi.stat[SHMBUS_STAT_PUBLISHED],
		      (unsigned long long)qi.stat[SHMBUS_STAT_ACKED]);
	assert_int_equal(lost, 0);
	assert_int_equal(dup, 0);
	assert_int_equal(corrupt, 0);
	assert_int_equal(qi.stat[SHMBUS_STAT_PUBLISHED], 10);
	assert_int_equal(qi.stat[SHMBUS_STAT_ACKED], 10);
	free(bytes);
	shmbus_consumer__free(c);
	shmbus_producer__free(p);
	shmbus__close(other);
	shmbus__close(orders);
}

/* ---- 5. private reply queues through a restart -------------------- */

/* How many queues of @bus have names starting with @prefix. */
static int queues_named(struct shmbus *bus, const char *prefix)
{
	struct shmbus_queue_info qi[16];
	int n = shmbus__queue_list(bus, qi, 16), hits = 0;

	assert_true(n >= 0 && n <= 16);
	for (int i = 0; i < n; i++)
		hits += !strncmp(qi[i].name, prefix, strlen(prefix));
	return hits;
}

static ssize_t echo(void *ctx, const struct shmbus_msg *req, void *reply,
		    size_t cap)
{
	(void)ctx;
	if (req->len > cap)
		return -EMSGSIZE;
	memcpy(reply, req->data, req->len);
	return req->len;
}

/* Answer requests on "svc" until @stop is set; a byte on @ready once
 * its consumer is attached (a request before that has no responder). */
static void responder(const uint32_t *stop, int ready)
{
	SHMBUS_OPTS(shmbus_open_opts, oo, .flags = SHMBUS_OPEN_NOSTART);
	struct shmbus *b = shmbus__open("rr", &oo);
	struct shmbus_consumer *c;

	CHILD_CHECK(b, "open: %s", strerror(errno));
	c = shmbus_consumer__new(b, "svc", NULL);
	CHILD_CHECK(c, "consumer: %s", strerror(errno));
	CHILD_CHECK(write(ready, "s", 1) == 1, "ready");
	while (!smp_load_acquire(stop)) {
		int n = shmbus_consumer__serve(c, echo, NULL, 0, 20 * MS);

		CHILD_CHECK(n >= 0, "serve: %s", strerror(-n));
	}
	_exit(0);
}

/*
 * A request and its reply, the same bytes back: 1 if so, else 0, with
 * why not on stderr.
 */
static int ask(struct shmbus *b, const char *what)
{
	char reply[64];
	ssize_t n = shmbus__request(b, "svc", what, strlen(what), reply,
				    sizeof(reply), 5000 * MS);

	if (n < 0)
		fprintf(stderr, "request '%s': %s\n", what, strerror((int)-n));
	else if (n != (ssize_t)strlen(what) || memcmp(reply, what, (size_t)n))
		fprintf(stderr, "request '%s': %zd bytes, not its own\n",
			what, n);
	return n == (ssize_t)strlen(what) && !memcmp(reply, what, (size_t)n);
}

/*
 * Requester: a request before the restart (its reply queue is made
 * then), then, told to, one after it on the same handle (the same reply
 * queue, still its own), reporting into @ok.
 */
static void requester(int ready, int cmd, int *ok)
{
	SHMBUS_OPTS(shmbus_open_opts, oo, .flags = SHMBUS_OPEN_NOSTART);
	struct shmbus *b = shmbus__open("rr", &oo);
	char x;

	CHILD_CHECK(b, "open: %s", strerror(errno));
	ok[0] = ask(b, "before");
	CHILD_CHECK(write(ready, "r", 1) == 1, "ready");
	if (read(cmd, &x, 1) != 1)
		for (;;)
			pause();	/* the one killed while down */
	ok[1] = ask(b, "after");
	shmbus__close(b);
	_exit(0);
}

/*
 * Two requesters each have a private reply queue; the daemon is killed,
 * one requester too, and a new daemon adopts the bus: the dead one's
 * reply queue is deleted, the live one's stays its own, and its request
 * after the restart is answered on it.
 */
static void test_private_queues(void **state)
{
	SHMBUS_OPTS(shmbus_open_opts, oo, .flags = SHMBUS_OPEN_NOSTART);
	uint32_t *stop = t_shared(sizeof(*stop));
	int *ok = t_shared(4 * sizeof(int));
	char live[32], dead[32], log[PATH_MAX + 8], line[1024];
	int ready[2], cmd1[2], cmd2[2], replies;
	pid_t d1, d2, srv, r1, r2;
	struct shmbus *bus;
	size_t at;
	char x;

	(void)state;
	snprintf(log, sizeof(log), "%s.log", t_sock);
	d1 = daemon_start();
	bus = shmbus__open("rr", &oo);
	assert_non_null(bus);
	assert_int_equal(shmbus__queue_declare(bus, "svc", NULL), 1);
	assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
	assert_int_equal(pipe2(cmd1, O_CLOEXEC), 0);
	assert_int_equal(pipe2(cmd2, O_CLOEXEC), 0);
	if (!(srv = spawn()))
		responder(stop, ready[1]);
	assert_int_equal(read(ready[0], &x, 1), 1);
	if (!(r1 = spawn()))
		requester(ready[1], cmd1[0], ok);
	if (!(r2 = spawn()))
		requester(ready[1], cmd2[0], ok + 2);
	assert_int_equal(read(ready[0], &x, 1), 1);
	assert_int_equal(read(ready[0], &x, 1), 1);
	snprintf(live, sizeof(live), "_reply.%d.", (int)r1);
	snprintf(dead, sizeof(dead), "_reply.%d.", (int)r2);
	assert_int_equal(queues_named(bus, live), 1);
	assert_int_equal(queues_named(bus, dead), 1);

	daemon_kill(d1);
	kill(r2, SIGKILL);
	assert_int_equal(t_wait(r2, 5000), 128 + SIGKILL);
	at = log_size(log);
	d2 = daemon_start();
	/* from whichever member the daemon met first */
	if (!adopted_from(log, at, "rr", 0, line, sizeof(line)))
		fail_msg("daemon %d did not adopt bus rr", (int)d2);
	print_message("%s", line);
	/* adopted: the dead one's reply queue went, the live one's stays */
	assert_int_equal(queues_named(bus, dead), 0);
	assert_int_equal(queues_named(bus, live), 1);
	assert_int_equal(write(cmd1[1], "a", 1), 1);
	assert_int_equal(t_wait(r1, 20000), 0);
	replies = ok[0] + ok[1] + ok[2];
	print_message("requests 3 (2 before the restart, 1 after), replies "
		      "%d, lost %d\n", replies, 3 - replies);
	assert_int_equal(ok[0], 1);
	assert_int_equal(ok[2], 1);
	assert_int_equal(ok[1], 1);
	/* the live one's goes when its handle closes, as before a restart */
	for (int i = 0; i < 500 && queues_named(bus, live); i++)
		usleep(2000);
	assert_int_equal(queues_named(bus, live), 0);
	smp_store_release(stop, 1);
	assert_int_equal(t_wait(srv, 10000), 0);
	shmbus__close(bus);
	for (int i = 0; i < 2; i++) {
		close(ready[i]);
		close(cmd1[i]);
		close(cmd2[i]);
	}
}

/* Is bus @name among those the daemon lists? Its id in *@id. */
static bool bus_listed(const char *name, uint32_t *id)
{
	SHMBUS_OPTS(shmbus_open_opts, oo, .socket_path = t_sock);
	struct shmbus_bus_entry e[32];
	int n = shmbus__bus_list(&oo, e, 32);

	assert_true(n >= 0 && n <= 32);
	for (int i = 0; i < n; i++)
		if (!strcmp(e[i].name, name)) {
			if (id)
				*id = e[i].id;
			return true;
		}
	return false;
}

/*
 * A bus deleted with members: refused (-EBUSY, naming them) without
 * FORCE; with it, every handle of ours finds its queue gone and its bus
 * handle deleted (-EIDRM), and the daemon killed -9 and restarted does
 * not adopt the deleted arena that our process still maps: the name
 * makes a new bus.
 */
static void test_deleted_bus(void **state)
{
	SHMBUS_OPTS(shmbus_open_opts, oo, .flags = SHMBUS_OPEN_NOSTART);
	struct shmbus_bus_entry was;
	struct shmbus_producer *p;
	struct shmbus_consumer *c;
	struct shmbus *bus, *again;
	struct shmbus_msg m;
	uint32_t id, id2;
	uint64_t blocks0;
	char log[PATH_MAX + 8], line[1024], x;
	int ready[2], err = 0, v = 7;
	pid_t d1, d2, kid;
	size_t at;

	(void)state;
	snprintf(log, sizeof(log), "%s.log", t_sock);
	d1 = daemon_start();
	bus = shmbus__open("gone", &oo);
	assert_non_null(bus);
	assert_int_equal(shmbus__queue_declare(bus, "q", NULL), 1);
	p = shmbus_producer__new(bus, "q", NULL);
	c = shmbus_consumer__new(bus, "q", NULL);
	assert_non_null(p);
	assert_non_null(c);
	assert_int_equal(shmbus_producer__publish(p, &v, sizeof(v), NULL), 0);
	assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
	if (!(kid = spawn())) {		/* a second member, idle */
		struct shmbus *b = shmbus__open("gone", &oo);

		if (!b || write(ready[1], "r", 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	assert_int_equal(read(ready[0], &x, 1), 1);
	assert_true(bus_listed("gone", &id));
	assert_int_equal(id, shmbus__id(bus));

	oo.socket_path = t_sock;
	assert_int_equal(shmbus__bus_delete("gone", 0, &oo, NULL), -EBUSY);
	print_message("without --force: %s\n", shmbus_errmsg());
	assert_non_null(strstr(shmbus_errmsg(), "has 2 members"));
	assert_int_equal(shmbus__bus_delete("nosuch", 0, &oo, NULL), -ENOENT);
	assert_int_equal(shmbus__bus_delete("gone", 0x80, &oo, NULL), -EINVAL);
	blocks0 = t_arena_bytes("gone");
	assert_int_equal(shmbus__bus_delete("gone", SHMBUS_BUS_DELETE_FORCE,
					    &oo, &was), 0);
	print_message("forced: %u members, %u queues, %llu bytes\n",
		      was.members, was.queues,
		      (unsigned long long)was.arena_size);
	assert_int_equal(was.members, 2);
	assert_int_equal(was.queues, 1);
	assert_false(bus_listed("gone", NULL));
	/* its memory went with it, though we still map it: the first page
	 * (the superblock saying "deleted") is all that is left */
	print_message("the arena's memory: %llu bytes, then %llu\n",
		      (unsigned long long)blocks0,
		      (unsigned long long)t_arena_bytes("gone"));
	assert_true(blocks0 >= was.arena_size / 2);
	assert_true(t_arena_bytes("gone") <= 64 * 1024);
	/* the data path: its queue is gone */
	assert_int_equal(shmbus_producer__publish(p, &v, sizeof(v), NULL),
			 -EIDRM);
	assert_int_equal(shmbus_consumer__receive_view(c, &m, 0), -EIDRM);
	/* the control path, once the hang-up is seen: the bus is gone */
	for (int i = 0; i < 2000; i++) {
		err = shmbus__queue_declare(bus, "q2", NULL);
		if (err == -EIDRM)
			break;
		usleep(1000);
	}
	print_message("a declare after: %s (%s)\n", strerror(-err),
		      shmbus_errmsg());
	assert_int_equal(err, -EIDRM);
	assert_non_null(strstr(shmbus_errmsg(), "deleted"));

	/* a restarted daemon finds the arena in our fd table: refused */
	daemon_kill(d1);
	at = log_size(log);
	d2 = daemon_start();
	assert_true(d2 > 0);
	assert_false(bus_listed("gone", NULL));
	oo.socket_path = NULL;
	again = shmbus__open("gone", &(struct shmbus_open_opts){
				.sz = sizeof(struct shmbus_open_opts) });
	assert_non_null(again);
	assert_true(bus_listed("gone", &id2));
	assert_int_not_equal(id2, id);
	assert_false(adopted_from(log, at, "gone", 0, line, sizeof(line)));
	shmbus__close(again);
	shmbus_consumer__free(c);
	shmbus_producer__free(p);
	shmbus__close(bus);
	kill(kid, SIGKILL);
	assert_int_equal(t_wait(kid, 5000), 128 + SIGKILL);
	close(ready[0]);
	close(ready[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_steady_traffic, reap_forked),
		cmocka_unit_test_teardown(test_loop, reap_forked),
		cmocka_unit_test_teardown(test_consumer_dies_while_down,
					  reap_forked),
		cmocka_unit_test_teardown(test_consumer_dies_while_down_nobody,
					  reap_forked),
		cmocka_unit_test_teardown(test_forged_arena, reap_forked),
		cmocka_unit_test_teardown(test_private_queues, reap_forked),
		cmocka_unit_test_teardown(test_deleted_bus, reap_forked),
	};

	int64_t t0 = t_now_ns();
	int rc;

	t_env_setup();
	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	rc = cmocka_run_group_tests_name("restart", tests, NULL, NULL);
	/* A failed test leaves its bus handles open, and their watchers
	 * would start a daemon again after the teardown killed it. */
	setenv("SHMBUS_DAEMON", "/bin/false", 1);
	t_env_teardown();
	printf("test_restart: %.1f s\n", (t_now_ns() - t0) / 1e9);
	return rc;
}
