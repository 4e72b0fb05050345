// SPDX-License-Identifier: MIT
/*
 * cells.c - the measurements of shmbus-bench-bridge, all in the parent
 * process but for the bridge itself, which runs as our child
 * (shmbus-bridge, from beside us) with one route per repetition.
 *
 * Names: local queues "out", "in", "lat.out", "lat.in"; AMQP durable
 * queues "bb.out", "bb.in", "bb.lat", "bb.lat.in", each bound to
 * amq.direct with its own name as the routing key. The plain clients
 * publish through amq.direct too, so that both kinds take the same path
 * in the broker.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <amqp.h>

#include "bbench.h"
#include "../rabbit/rabbit.h"

#define WARM_WINDOWS	4	/* warm-up: this many windows, not measured */
#define LAT_WARM	20
#define WAIT_S		60	/* for any one message, then the run fails */


static char run_dir[64];		/* socket, logs, bridge configs */
static char sock_path[128];
static pid_t daemon_pid, bridge_pid;
static struct shmbus *bus;
static unsigned nr_bridges;		/* bridges started, for file names */
static char bridge_err[PATH_MAX];	/* the running one's stderr */

/* ------------------------------------------------------------------ */
/* Setup                                                              */
/* ------------------------------------------------------------------ */

static void local_declare(const char *name)
{
	SHMBUS_OPTS(shmbus_queue_opts, q, .max_len = 1024,
		    .msg_size = MAX_MSG);
	int err = shmbus__queue_declare(bus, name, &q);

	if (err < 0)
		die("declaring local queue '%s': %s", name, strerror(-err));
}

static void amqp_declare_bound(amqp_connection_state_t c, const char *q)
{
	rabbit_declare_queue(c, q);
	amqp_queue_bind(c, RABBIT_CH, amqp_cstring_bytes(q),
			amqp_cstring_bytes(B_EXCHANGE), amqp_cstring_bytes(q),
			amqp_empty_table);
	rabbit_rpc_ok(c, "queue.bind", false);
}

void b_setup(void)
{
	SHMBUS_OPTS(shmbus_open_opts, o, .flags = SHMBUS_OPEN_NOSTART,
		    .ring_bytes = 16u << 20, .nr_pools = 2,
		    .pools = { { 256, 16384 }, { 4096, 8192 } });
	static const char *const lq[] = { "out", "in", "lat.out", "lat.in" };
	static const char *const aq[] = { "bb.out", "bb.in", "bb.lat",
					  "bb.lat.in" };
	char log[PATH_MAX];
	amqp_connection_state_t c;

	if (bench_mkdtemp(run_dir, sizeof(run_dir), "/tmp") < 0)
		die("mkdtemp in /tmp: %s", strerror(errno));
	snprintf(sock_path, sizeof(sock_path), "%s/shmbusd.sock", run_dir);
	snprintf(log, sizeof(log), "%s/shmbusd.log", run_dir);
	/* the bridge opens the bus through it, never autostarting one */
	if (setenv("SHMBUS_SOCKET", sock_path, 1) < 0)
		die("setenv: %s", strerror(errno));
	daemon_pid = bench_daemon_start(sock_path, NULL, log);
	bus = shmbus__open(B_BUS, &o);
	if (!bus)
		die("opening bus '%s': %s", B_BUS, strerror(errno));
	for (size_t i = 0; i < sizeof(lq) / sizeof(lq[0]); i++)
		local_declare(lq[i]);
	if (rabbit_start(bcfg.dir) < 0)
		die("RabbitMQ could not be started");
	c = rabbit_connect(false);
	for (size_t i = 0; i < sizeof(aq) / sizeof(aq[0]); i++)
		amqp_declare_bound(c, aq[i]);
	rabbit_close(c);
}

/* @ok: the run passed, its files are not needed. */
void b_teardown(bool ok)
{
	if (bridge_pid > 0) {
		bench_reap(bridge_pid, SIGKILL);
		bridge_pid = 0;
	}
	if (bus) {
		shmbus__close(bus);
		bus = NULL;
	}
	rabbit_stop(!ok);
	bench_reap(daemon_pid, SIGTERM);
	daemon_pid = 0;
	if (!run_dir[0])
		return;
	if (ok)
		bench_rm_rf(run_dir);
	else
		fprintf(stderr, "%s: the daemon's and the bridge's logs are "
			"kept in %s\n", program_invocation_short_name, run_dir);
	run_dir[0] = '\0';
}

/* ------------------------------------------------------------------ */
/* The bridge                                                         */
/* ------------------------------------------------------------------ */

/* Start shmbus-bridge with one route, @route: a [section] and its
 * settings. It connects on its own; the caller's warm-up (or the first
 * message) shows when it is there. */
static void bridge_start(const char *route)
{
	char conf[PATH_MAX], exe[PATH_MAX];
	FILE *f;

	nr_bridges++;
	snprintf(conf, sizeof(conf), "%s/bridge%u.conf", run_dir, nr_bridges);
	snprintf(bridge_err, sizeof(bridge_err), "%s/bridge%u.err", run_dir,
		 nr_bridges);
	f = fopen(conf, "w");
	if (!f || fprintf(f, "amqp = %s\nbus = %s\n%s", rabbit_url(), B_BUS,
			  route) < 0 || fclose(f))
		die("writing %s: %s", conf, strerror(errno));
	bench_exe_path(exe, sizeof(exe), "shmbus-bridge");
	fflush(NULL);
	bridge_pid = fork();
	if (bridge_pid < 0)
		die("fork: %s", strerror(errno));
	if (!bridge_pid) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (!freopen("/dev/null", "r", stdin) ||
		    !freopen("/dev/null", "w", stdout) ||
		    !freopen(bridge_err, "w", stderr))
			_exit(127);
		execl(exe, "shmbus-bridge", "--config", conf, (char *)NULL);
		fprintf(stderr, "exec %s: %s\n", exe, strerror(errno));
		_exit(127);
	}
}

static uint64_t bridge_confirmed;	/* from its counters line */
static uint64_t bridge_cpu_ns;		/* its user + system time */

static uint64_t tv_ns(struct timeval tv)
{
	return (uint64_t)tv.tv_sec * 1000000000ull + (uint64_t)tv.tv_usec * 1000;
}

/* SIGTERM: it drains, prints its counters and exits 0. */
static void bridge_stop(void)
{
	struct rusage ru;
	char line[256];
	int st = 0;
	FILE *f;
	bool found = false;

	if (bridge_pid <= 0)
		return;
	kill(bridge_pid, SIGTERM);
	while (wait4(bridge_pid, &st, 0, &ru) < 0 && errno == EINTR)
		;
	bridge_pid = 0;
	bridge_cpu_ns = tv_ns(ru.ru_utime) + tv_ns(ru.ru_stime);
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		die("the bridge failed (status 0x%x); see %s", st, bridge_err);
	f = fopen(bridge_err, "r");
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long long fw, cf;

		if (sscanf(line, "bridge: forwarded %llu confirmed %llu",
			   &fw, &cf) == 2) {
			bridge_confirmed = cf;
			found = true;
		}
	}
	if (f)
		fclose(f);
	if (!found)
		die("the bridge printed no counters; see %s", bridge_err);
}

static void bridge_out(const char *from, const char *key)
{
	char r[512];

	snprintf(r, sizeof(r), "[out bench]\nfrom = %s\nexchange = %s\n"
		 "routing-key = %s\nprefetch = %u\n", from, B_EXCHANGE, key,
		 bcfg.window);
	bridge_start(r);
}

static void bridge_in(const char *queue, const char *to)
{
	char r[512];

	snprintf(r, sizeof(r), "[in bench]\nqueue = %s\nto = %s\n"
		 "prefetch = %u\n", queue, to, bcfg.window);
	bridge_start(r);
}

/* ------------------------------------------------------------------ */
/* AMQP: a publisher with a confirm window, a consumer                */
/* ------------------------------------------------------------------ */

struct pub {
	amqp_connection_state_t c;
	uint64_t sent, confirmed;	/* delivery tags count from 1 */
};

static void pub_open(struct pub *p)
{
	p->c = rabbit_connect(false);
	amqp_confirm_select(p->c, RABBIT_CH);
	rabbit_rpc_ok(p->c, "confirm.select", false);
	p->sent = p->confirmed = 0;
}

/* Read one frame (a confirm) within @wait_s: a channel's confirms come in
 * order, so a tag settles every one before it. */
static void pub_read(struct pub *p, int wait_s)
{
	struct timeval tv = { wait_s, 0 };
	amqp_frame_t f;
	amqp_basic_ack_t *a;
	int err = amqp_simple_wait_frame_noblock(p->c, &f, &tv);

	if (err != AMQP_STATUS_OK)
		die("AMQP: waiting for confirms: %s", amqp_error_string2(err));
	if (f.frame_type != AMQP_FRAME_METHOD)
		return;
	if (f.payload.method.id == AMQP_BASIC_NACK_METHOD)
		die("AMQP: the broker nacked a publish");
	if (f.payload.method.id != AMQP_BASIC_ACK_METHOD)
		return;
	a = f.payload.method.decoded;
	if (a->delivery_tag > p->confirmed)
		p->confirmed = a->delivery_tag;
}

static void pub_one(struct pub *p, const char *key, const void *buf,
		    size_t size)
{
	amqp_basic_properties_t props = {
		._flags = AMQP_BASIC_DELIVERY_MODE_FLAG,
		.delivery_mode = 2,	/* persistent, as the bridge sends */
	};
	int err = amqp_basic_publish(p->c, RABBIT_CH,
				     amqp_cstring_bytes(B_EXCHANGE),
				     amqp_cstring_bytes(key), 0, 0, &props,
				     (amqp_bytes_t){ size, (void *)buf });

	if (err != AMQP_STATUS_OK)
		die("AMQP publish: %s", amqp_error_string2(err));
	p->sent++;
}

/* Publish @n messages numbered from @seq, at most bcfg.window
 * unconfirmed, and wait for the last confirm. */
static void pub_window(struct pub *p, const char *key, size_t size,
		       uint64_t seq, uint64_t n, void *buf)
{
	uint64_t end = p->sent + n;

	while (p->confirmed < end) {
		while (p->sent < end &&
		       p->sent - p->confirmed < bcfg.window) {
			fill(buf, size, seq++);
			pub_one(p, key, buf, size);
		}
		pub_read(p, WAIT_S);
	}
}

/* Empty AMQP queue @q: how many messages it held. */
static uint32_t amqp_purge(amqp_connection_state_t c, const char *q)
{
	amqp_queue_purge_ok_t *ok = amqp_queue_purge(c, RABBIT_CH,
						     amqp_cstring_bytes(q));

	rabbit_rpc_ok(c, "queue.purge", false);
	return ok->message_count;
}

/* Preload AMQP queue @q with @n messages, on a connection of its own. */
static void preload(const char *q, size_t size, uint64_t n, void *buf)
{
	struct pub p;

	pub_open(&p);
	amqp_purge(p.c, q);
	pub_window(&p, q, size, 0, n, buf);
	rabbit_close(p.c);
}

static void amqp_consume(amqp_connection_state_t c, const char *q)
{
	amqp_basic_qos(c, RABBIT_CH, 0, (uint16_t)bcfg.window, 0);
	rabbit_rpc_ok(c, "basic.qos", false);
	amqp_basic_consume(c, RABBIT_CH, amqp_cstring_bytes(q),
			   amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
	rabbit_rpc_ok(c, "basic.consume", false);
}

/* The next delivery, checked to be message @seq of @size bytes; its tag
 * in *tag. The envelope is freed. */
static void amqp_take(amqp_connection_state_t c, const char *q, size_t size,
		      uint64_t seq, uint64_t *tag)
{
	struct timeval tv = { WAIT_S, 0 };
	amqp_envelope_t env;
	amqp_rpc_reply_t r;

	amqp_maybe_release_buffers(c);
	r = amqp_consume_message(c, &env, &tv, 0);
	if (r.reply_type != AMQP_RESPONSE_NORMAL)
		die("%s: no delivery within %d s (reply type %d); see %s", q,
		    WAIT_S, r.reply_type, bridge_err);
	if (env.message.body.len != size ||
	    verify(env.message.body.bytes, size, seq))
		die("%s: message %llu is not the one sent", q,
		    (unsigned long long)seq);
	*tag = env.delivery_tag;
	amqp_destroy_envelope(&env);
}

/* ------------------------------------------------------------------ */
/* The local side                                                     */
/* ------------------------------------------------------------------ */

static struct shmbus_producer *local_producer(const char *q)
{
	struct shmbus_producer *p = shmbus_producer__new(bus, q, NULL);

	if (!p)
		die("producer on '%s': %s", q, strerror(errno));
	return p;
}

/* It blocks without spinning first, as the plain AMQP consumer does: on
 * two CPUs a spin takes time from the broker and the bridge. */
static struct shmbus_consumer *local_consumer(const char *q)
{
	SHMBUS_OPTS(shmbus_consumer_opts, co, .spin_ns = -1);
	struct shmbus_consumer *c = shmbus_consumer__new(bus, q, &co);

	if (!c)
		die("consumer on '%s': %s", q, strerror(errno));
	return c;
}

/* Publish; while the queue is full, try again each millisecond: a
 * producer that waited in the library, spinning and yielding, would take
 * the CPUs the broker and the bridge need (and the queue holds far more
 * than a millisecond of their traffic). */
static void local_publish(struct shmbus_producer *p, const char *q,
			  const void *buf, size_t size)
{
	uint64_t end = 0;

	for (;;) {
		int err = shmbus_producer__publish(p, buf, size, NULL);

		if (!err)
			return;
		if (err != -ENOBUFS && err != -ENOMEM)
			die("publish to '%s': %s", q, strerror(-err));
		if (!end)
			end = now_ns() + WAIT_S * 1000000000ull;
		else if (now_ns() > end)
			die("'%s' stayed full for %d s; see %s", q, WAIT_S,
			    bridge_err);
		usleep(1000);
	}
}

/* Receive message @seq of @size bytes, check it, ack it. */
static void local_take(struct shmbus_consumer *c, const char *q, size_t size,
		       uint64_t seq)
{
	struct shmbus_msg m;
	int err = shmbus_consumer__receive_view(c, &m, WAIT_S * 1000000000ll);

	if (err)
		die("receive from '%s': %s; see %s", q, strerror(-err),
		    bridge_err);
	if (m.len != size || verify(m.data, size, seq))
		die("%s: message %llu is not the one sent", q,
		    (unsigned long long)seq);
	shmbus_consumer__ack(c, &m);
}

static uint64_t local_acked(const char *q)
{
	struct shmbus_queue_info qi;

	if (shmbus__queue_info(bus, q, &qi))
		die("queue info of '%s'", q);
	return qi.stat[SHMBUS_STAT_ACKED];
}

/* Wait until the bridge acked @target messages of local queue @q in all:
 * the broker confirmed them. */
static void wait_acked(const char *q, uint64_t target)
{
	uint64_t end = now_ns() + WAIT_S * 1000000000ull;

	while (local_acked(q) < target) {
		if (now_ns() > end)
			die("'%s': the bridge did not forward within %d s; "
			    "see %s", q, WAIT_S, bridge_err);
		usleep(500);
	}
}

/* ------------------------------------------------------------------ */
/* Throughput                                                         */
/* ------------------------------------------------------------------ */

/* CPU time: the broker's and ours. */
struct cpu {
	uint64_t broker_ns, self_ns;
};

/* The time on CPU of every thread of @pid, in ns (schedstat: the ticks
 * of /proc/PID/stat are too coarse for a run of a second). */
static uint64_t pid_cpu_ns(pid_t pid)
{
	char path[PATH_MAX];
	struct dirent *e;
	uint64_t sum = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (!d)
		die("%s: %s", path, strerror(errno));
	while ((e = readdir(d))) {
		unsigned long long ns;
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/schedstat",
			 (int)pid, e->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;	/* a thread that just ended */
		if (fscanf(f, "%llu", &ns) == 1)
			sum += ns;
		fclose(f);
	}
	closedir(d);
	return sum;
}

static struct cpu cpu_now(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (struct cpu){
		.broker_ns = pid_cpu_ns(rabbit_pid()),
		.self_ns = tv_ns(ru.ru_utime) + tv_ns(ru.ru_stime),
	};
}

/* The repetition's result: @n messages from @t0 to @t1, the CPU time
 * spent from @c0 to @c1; the bridge's over its @bridged messages. */
static struct b_tput result(uint64_t n, uint64_t t0, uint64_t t1,
			    struct cpu c0, struct cpu c1, uint64_t bridged)
{
	return (struct b_tput){
		.rate = (double)n * 1e9 / (double)(t1 - t0),
		.broker_us = (double)(c1.broker_ns - c0.broker_ns) / 1e3 / n,
		.client_us = (double)(c1.self_ns - c0.self_ns) / 1e3 / n,
		.bridge_us = bridged ? (double)bridge_cpu_ns / 1e3 / bridged : 0,
	};
}

static void *msg_buf(void)
{
	void *buf = aligned_alloc(CACHELINE, MAX_MSG);

	if (!buf)
		die("out of memory");
	return buf;
}

static void check_count(const char *what, uint64_t got, uint64_t want)
{
	if (got != want)
		die("%s: sent %llu received %llu", what,
		    (unsigned long long)want, (unsigned long long)got);
}

/* Out, plain: a publisher keeps bcfg.window unconfirmed. */
static struct b_tput out_plain(size_t size, uint64_t n, void *buf)
{
	uint64_t warm = WARM_WINDOWS * bcfg.window, t0, t1;
	struct b_tput r;
	struct cpu c0;
	struct pub p;

	pub_open(&p);
	pub_window(&p, "bb.out", size, 0, warm, buf);
	amqp_purge(p.c, "bb.out");
	c0 = cpu_now();
	t0 = now_ns();
	pub_window(&p, "bb.out", size, 0, n, buf);
	t1 = now_ns();
	r = result(n, t0, t1, c0, cpu_now(), 0);
	check_count("bb.out", amqp_purge(p.c, "bb.out"), n);
	rabbit_close(p.c);
	return r;
}

/* Out, bridge: a local producer keeps queue "out" full, the bridge
 * forwards; done when the bridge acked the last one locally, that is
 * after the broker's confirm. */
static struct b_tput out_bridge(size_t size, uint64_t n, void *buf)
{
	struct shmbus_producer *lp = local_producer("out");
	amqp_connection_state_t c = rabbit_connect(false);
	uint64_t warm = WARM_WINDOWS * bcfg.window, base, t0, t1;
	struct b_tput r;
	struct cpu c0, c1;

	amqp_purge(c, "bb.out");
	bridge_out("out", "bb.out");
	base = local_acked("out");
	for (uint64_t i = 0; i < warm; i++) {
		fill(buf, size, i);
		local_publish(lp, "out", buf, size);
	}
	wait_acked("out", base + warm);
	amqp_purge(c, "bb.out");
	c0 = cpu_now();
	t0 = now_ns();
	for (uint64_t i = 0; i < n; i++) {
		fill(buf, size, i);
		local_publish(lp, "out", buf, size);
	}
	wait_acked("out", base + warm + n);
	t1 = now_ns();
	c1 = cpu_now();
	bridge_stop();
	r = result(n, t0, t1, c0, c1, warm + n);
	check_count("bridge confirmed", bridge_confirmed, warm + n);
	check_count("bb.out", amqp_purge(c, "bb.out"), n);
	rabbit_close(c);
	shmbus_producer__free(lp);
	return r;
}

/* In, plain: a consumer with a prefetch of bcfg.window drains a preloaded
 * queue, acking with "multiple" each half window (as the bridge does
 * under load); from the first delivery to the last. */
static struct b_tput in_plain(size_t size, uint64_t n, void *buf)
{
	amqp_connection_state_t c;
	uint64_t t0 = 0, tag = 0, unacked = 0;
	struct b_tput r;
	struct cpu c0 = { 0 };

	preload("bb.in", size, n, buf);
	c = rabbit_connect(false);
	amqp_consume(c, "bb.in");
	for (uint64_t i = 0; i < n; i++) {
		amqp_take(c, "bb.in", size, i, &tag);
		if (!i) {
			c0 = cpu_now();
			t0 = now_ns();
		}
		if (++unacked >= bcfg.window / 2 || i == n - 1) {
			if (amqp_basic_ack(c, RABBIT_CH, tag, 1))
				die("AMQP ack failed");
			unacked = 0;
		}
	}
	r = result(n - 1, t0, now_ns(), c0, cpu_now(), 0);
	rabbit_close(c);
	return r;
}

/* In, bridge: the bridge drains the preloaded queue into local queue
 * "in", where we take the messages; from the first to the last. */
static struct b_tput in_bridge(size_t size, uint64_t n, void *buf)
{
	struct shmbus_consumer *lc = local_consumer("in");
	amqp_connection_state_t c;
	uint64_t t0 = 0, t1;
	struct b_tput r;
	struct cpu c0 = { 0 }, c1;

	preload("bb.in", size, n, buf);
	bridge_in("bb.in", "in");
	for (uint64_t i = 0; i < n; i++) {
		local_take(lc, "in", size, i);
		if (!i) {
			c0 = cpu_now();
			t0 = now_ns();
		}
	}
	t1 = now_ns();
	c1 = cpu_now();
	bridge_stop();
	r = result(n - 1, t0, t1, c0, c1, n);
	check_count("bridge confirmed", bridge_confirmed, n);
	/* everything acked at the broker: nothing left to deliver again */
	c = rabbit_connect(false);
	check_count("bb.in left unacked", amqp_purge(c, "bb.in"), 0);
	rabbit_close(c);
	shmbus_consumer__free(lc);
	return r;
}

struct b_tput b_tput(enum b_dir d, enum b_kind k, int si)
{
	static struct b_tput (*const fn[B_NR_DIR][B_NR_KIND])(size_t,
							      uint64_t,
							      void *) = {
		{ out_plain, out_bridge }, { in_plain, in_bridge },
	};
	void *buf = msg_buf();
	struct b_tput r = fn[d][k](sizes[si], bcfg.msgs[si], buf);

	free(buf);
	return r;
}

/* ------------------------------------------------------------------ */
/* Latency: one message at a time                                     */
/* ------------------------------------------------------------------ */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double pct_us(const uint64_t *v, unsigned n, double q)
{
	unsigned rank = (unsigned)ceil(q * n);

	rank = rank < 1 ? 1 : rank > n ? n : rank;
	return (double)v[rank - 1] / 1000.0;
}

/*
 * Each message is published when the one before it has arrived and been
 * acked, not waiting for its publisher confirm (as a publisher with a
 * confirm window does not; the broker confirms a persistent message
 * after its write, later than it delivers it); its latency is from the
 * publish call to its arrival at the consumer.
 *   plain: AMQP publish -> bb.lat -> AMQP consumer
 *   out:   local publish -> lat.out -> bridge -> bb.lat -> AMQP consumer
 *   in:    AMQP publish -> bb.lat.in -> bridge -> lat.in -> local consumer
 */
struct b_lat b_latency(enum b_dir d, enum b_kind k, int si)
{
	unsigned n = LAT_WARM + bcfg.lat_msgs;
	size_t size = sizes[si];
	bool via_out = k == B_BRIDGE && d == B_OUT;
	bool via_in = k == B_BRIDGE && d == B_IN;
	uint64_t *lat = calloc(n, sizeof(*lat));
	void *buf = msg_buf();
	struct shmbus_producer *lp = NULL;
	struct shmbus_consumer *lc = NULL;
	amqp_connection_state_t c = NULL;
	struct pub p = { 0 };
	struct b_lat r;
	uint64_t base = 0;

	if (!lat)
		die("out of memory");
	if (via_out) {
		base = local_acked("lat.out");
		lp = local_producer("lat.out");
		bridge_out("lat.out", "bb.lat");
	} else {
		pub_open(&p);
	}
	if (via_in) {
		lc = local_consumer("lat.in");
		bridge_in("bb.lat.in", "lat.in");
	} else {
		c = rabbit_connect(false);
		amqp_consume(c, "bb.lat");
	}
	for (unsigned i = 0; i < n; i++) {
		uint64_t t, tag;

		fill(buf, size, i);
		t = now_ns();
		if (via_out)
			local_publish(lp, "lat.out", buf, size);
		else
			pub_one(&p, via_in ? "bb.lat.in" : "bb.lat", buf,
				size);
		if (via_in) {
			local_take(lc, "lat.in", size, i);
		} else {
			amqp_take(c, "bb.lat", size, i, &tag);
			if (amqp_basic_ack(c, RABBIT_CH, tag, 0))
				die("AMQP ack failed");
		}
		lat[i] = now_ns() - t;
	}
	while (!via_out && p.confirmed < p.sent)
		pub_read(&p, WAIT_S);
	if (via_out)
		wait_acked("lat.out", base + n);
	if (lp || lc)
		bridge_stop();
	if (p.c)
		rabbit_close(p.c);
	if (c)
		rabbit_close(c);
	shmbus_producer__free(lp);
	shmbus_consumer__free(lc);
	qsort(lat + LAT_WARM, bcfg.lat_msgs, sizeof(*lat), cmp_u64);
	r.p50 = pct_us(lat + LAT_WARM, bcfg.lat_msgs, 0.50);
	r.p99 = pct_us(lat + LAT_WARM, bcfg.lat_msgs, 0.99);
	free(lat);
	free(buf);
	return r;
}
