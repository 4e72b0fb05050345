// SPDX-License-Identifier: MIT
/*
 * test_bridge_faults.c - the bridge under faults, against a real RabbitMQ
 * (tests/rmq.h), each with messages flowing and each printing "sent N
 * received N lost N duplicated N" (lost must be 0):
 *  - counters: `shmbus stat` and `shmbus metrics` show a running
 *    bridge's routes, and nothing once it is killed -9;
 *  - the TCP connection dropped, through a relay in this process: an out
 *    route's silently (the relay discards both ways: only the heartbeat
 *    can tell), then stalled under 64 KiB messages (the relay reads
 *    nothing more: the sockets fill), an in route's outright (both
 *    sockets closed) and then silently;
 *  - the broker killed -9 and restarted under an in route;
 *  - a channel error: the exchange of an out route deleted under it and
 *    declared again later;
 *  - a full broker: a memory alarm blocks the out route's publishing
 *    (connection.blocked), shown in the counters; the messages wait in
 *    the local queue; all arrive after the alarm;
 *  - a full local queue under an in route: the broker keeps the backlog;
 *  - confirms slower than the local lease (1 s; the broker blocked for
 *    4 s): the bridge extends the leases, no duplicates;
 *  - confirms out of order (the relay turns each confirm of many into
 *    one per message, newest first): no reconnect, no duplicate.
 */
#include <poll.h>
#include <pthread.h>

#include "shmbus.h"
#include "helpers.h"
#include "rmq.h"

#define BUS	"faults"
#define LQ	"out"		/* out routes' local queue */
#define LIN	"in"		/* in routes' local queue */
#define EX	"faults.ex"
#define AE	"faults.ae"	/* EX's alternate exchange, bound to AQ */
#define AQ	"faults.q"	/* out routes' broker queue */
#define IQ	"faults.in"	/* in routes' broker queue */
#define KEY	"k"

static struct rmq broker;
static char why[PATH_MAX + 64];
static char cli[PATH_MAX], creds[PATH_MAX + 16];

static void need_broker(void)
{
	if (why[0])
		SKIP_OR_FAIL("%.200s", why);
}

#if RMQ_HAVE_CLIENT
static void find_cli(void)
{
	ssize_t n = readlink("/proc/self/exe", cli, sizeof(cli) - 16);

	assert_true(n > 0);
	cli[n] = '\0';
	*strrchr(cli, '/') = '\0';
	*strrchr(cli, '/') = '\0';
	strcat(cli, "/bin/shmbus");
}

/* ---- a TCP relay between the bridge and the broker ------------------- */

#define RELAY_PAIRS	16

/* Each accepted connection is a pair (bridge side, broker side). A
 * silenced pair still reads both sides, and throws it away: to the
 * bridge the broker went quiet, and its writes never block. A stalled
 * pair is not read at all: the bridge's writes fill the sockets and then
 * wait, as behind a network that drops everything. */
enum fault { CUT, SILENCE, STALL };

static struct relay {
	pthread_mutex_t lock;
	pthread_t thread;
	int lfd, port;
	bool stop;
	int fd[RELAY_PAIRS][2];
	bool silent[RELAY_PAIRS];
	bool stalled[RELAY_PAIRS];
	unsigned accepted;
	/* reorder: the broker's confirms of many messages at once are
	 * sent on as a confirm of each, newest first (RabbitMQ may confirm
	 * out of order); the frames of each pair parsed in pend */
	bool reorder;
	unsigned long singles;		/* confirms sent on so */
	uint64_t last_tag[RELAY_PAIRS];	/* confirmed up to, per pair */
	uint64_t alone[RELAY_PAIRS][256];	/* tags the broker confirmed
						 * alone past it, by tag % 256 */
	unsigned char *pend[RELAY_PAIRS];
	size_t npend[RELAY_PAIRS];
} relay = { .lock = PTHREAD_MUTEX_INITIALIZER };

#define FRAME_MAX	(131072 + 8)	/* librabbitmq's frame_max, framed */

static int write_all(int fd, const void *buf, size_t len)
{
	for (size_t off = 0; off < len;) {
		ssize_t w = write(fd, (const char *)buf + off, len - off);

		if (w <= 0)
			return -1;
		off += (size_t)w;
	}
	return 0;
}

static uint64_t get_be(const unsigned char *p, int n)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* A basic.ack frame on @ch for @tag alone. */
static void ack_frame(unsigned char *f, unsigned ch, uint64_t tag)
{
	static const unsigned char head[] = { 1, 0, 0, 0, 0, 0, 13,
					      0, 60, 0, 80 };

	memcpy(f, head, sizeof(head));
	f[1] = (unsigned char)(ch >> 8);
	f[2] = (unsigned char)ch;
	for (int i = 0; i < 8; i++)
		f[11 + i] = (unsigned char)(tag >> (56 - 8 * i));
	f[19] = 0;		/* not multiple */
	f[20] = 0xCE;
}

/*
 * Broker -> bridge bytes @buf of pair @i with reorder on: whole frames
 * are sent on as they are, but a basic.ack with "multiple" becomes one
 * basic.ack per tag it covers, newest first. -1 if the bridge's side
 * cannot be written.
 */
static int relay_reorder(int i, const char *buf, size_t len)
{
	unsigned char *q = relay.pend[i];
	size_t off = 0;

	if (relay.npend[i] + len > 2 * FRAME_MAX)
		return -1;
	memcpy(q + relay.npend[i], buf, len);
	relay.npend[i] += len;
	while (relay.npend[i] - off >= 8) {
		unsigned char *f = q + off;
		size_t size = (size_t)get_be(f + 3, 4), whole = size + 8;

		if (relay.npend[i] - off < whole)
			break;
		if (f[0] == 1 && size == 13 && get_be(f + 7, 2) == 60 &&
		    get_be(f + 9, 2) == 80) {
			unsigned ch = (unsigned)get_be(f + 1, 2);
			uint64_t tag = get_be(f + 11, 8);

			if ((f[19] & 1) && tag > relay.last_tag[i] + 1) {
				unsigned char a[21];

				for (uint64_t t = tag; t > relay.last_tag[i]; t--) {
					if (relay.alone[i][t % 256] == t)
						continue;	/* sent already */
					ack_frame(a, ch, t);
					if (write_all(relay.fd[i][0], a, 21))
						return -1;
					relay.singles++;
				}
				relay.last_tag[i] = tag;
				off += whole;
				continue;
			}
			if (tag > relay.last_tag[i] && (f[19] & 1))
				relay.last_tag[i] = tag;
			else if (!(f[19] & 1))
				relay.alone[i][tag % 256] = tag;
			/* confirmed up to: past what came alone in order
			 * (the set holds less than 256 tags past it) */
			while (relay.alone[i][(relay.last_tag[i] + 1) % 256] ==
			       relay.last_tag[i] + 1)
				relay.last_tag[i]++;
		}
		if (write_all(relay.fd[i][0], f, whole))
			return -1;
		off += whole;
	}
	memmove(q, q + off, relay.npend[i] - off);
	relay.npend[i] -= off;
	return 0;
}

static int connect_broker(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons(broker.amqp_port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		close(fd);
		fd = -1;
	}
	return fd;
}

static void relay_close(int i)
{
	close(relay.fd[i][0]);
	close(relay.fd[i][1]);
	relay.fd[i][0] = relay.fd[i][1] = -1;
	relay.silent[i] = false;
	relay.stalled[i] = false;
	relay.npend[i] = 0;
	relay.last_tag[i] = 0;
	memset(relay.alone[i], 0, sizeof(relay.alone[i]));
}

static void *relay_run(void *arg)
{
	(void)arg;
	for (;;) {
		struct pollfd p[1 + 2 * RELAY_PAIRS];
		int map[1 + 2 * RELAY_PAIRS], n = 1;
		char buf[65536];

		pthread_mutex_lock(&relay.lock);
		if (relay.stop) {
			pthread_mutex_unlock(&relay.lock);
			return NULL;
		}
		p[0] = (struct pollfd){ .fd = relay.lfd, .events = POLLIN };
		for (int i = 0; i < RELAY_PAIRS; i++)
			for (int s = 0; s < 2 && relay.fd[i][0] >= 0 &&
			     !relay.stalled[i]; s++) {
				p[n] = (struct pollfd){ .fd = relay.fd[i][s],
							.events = POLLIN };
				map[n++] = i * 2 + s;
			}
		pthread_mutex_unlock(&relay.lock);
		if (poll(p, n, 20) <= 0)
			continue;
		pthread_mutex_lock(&relay.lock);
		if (p[0].revents & POLLIN) {
			int a = accept4(relay.lfd, NULL, NULL, SOCK_CLOEXEC);
			int b = a >= 0 ? connect_broker() : -1;

			for (int i = 0; i < RELAY_PAIRS && b >= 0; i++)
				if (relay.fd[i][0] < 0) {
					relay.fd[i][0] = a;
					relay.fd[i][1] = b;
					relay.silent[i] = false;
					relay.stalled[i] = false;
					relay.accepted++;
					a = b = -1;
				}
			if (a >= 0)
				close(a);
			if (b >= 0)
				close(b);
		}
		for (int k = 1; k < n; k++) {
			int i = map[k] / 2, s = map[k] % 2;
			ssize_t r;

			if (!p[k].revents || relay.fd[i][0] < 0 ||
			    relay.fd[i][s] != p[k].fd)
				continue;
			r = read(p[k].fd, buf, sizeof(buf));
			if (r <= 0) {
				relay_close(i);
				continue;
			}
			if (relay.silent[i])
				continue;
			if (relay.reorder && s == 1) {
				if (relay_reorder(i, buf, (size_t)r))
					relay_close(i);
				continue;
			}
			for (ssize_t off = 0; off < r;) {
				ssize_t w = write(relay.fd[i][!s], buf + off,
						  r - off);

				if (w <= 0) {
					relay_close(i);
					break;
				}
				off += w;
			}
		}
		pthread_mutex_unlock(&relay.lock);
	}
}

static void relay_start(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);

	relay.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(relay.lfd >= 0);
	assert_int_equal(bind(relay.lfd, (struct sockaddr *)&sa, sizeof(sa)),
			 0);
	assert_int_equal(listen(relay.lfd, 16), 0);
	assert_int_equal(getsockname(relay.lfd, (struct sockaddr *)&sa, &len),
			 0);
	relay.port = ntohs(sa.sin_port);
	for (int i = 0; i < RELAY_PAIRS; i++) {
		relay.fd[i][0] = relay.fd[i][1] = -1;
		relay.npend[i] = 0;
		relay.last_tag[i] = 0;
		memset(relay.alone[i], 0, sizeof(relay.alone[i]));
		if (!relay.pend[i])
			relay.pend[i] = malloc(2 * FRAME_MAX);
		assert_non_null(relay.pend[i]);
	}
	relay.singles = 0;
	relay.stop = false;
	assert_int_equal(pthread_create(&relay.thread, NULL, relay_run, NULL),
			 0);
}

static void relay_end(void)
{
	pthread_mutex_lock(&relay.lock);
	relay.stop = true;
	for (int i = 0; i < RELAY_PAIRS; i++)
		if (relay.fd[i][0] >= 0)
			relay_close(i);
	pthread_mutex_unlock(&relay.lock);
	pthread_join(relay.thread, NULL);
	close(relay.lfd);
}

/* Every connection through the relay now: closed, silenced or
 * stalled. */
static int relay_fault(enum fault how)
{
	int n = 0;

	pthread_mutex_lock(&relay.lock);
	for (int i = 0; i < RELAY_PAIRS; i++) {
		if (relay.fd[i][0] < 0)
			continue;
		if (how == SILENCE)
			relay.silent[i] = true;
		else if (how == STALL)
			relay.stalled[i] = true;
		else
			relay_close(i);
		n++;
	}
	pthread_mutex_unlock(&relay.lock);
	return n;
}

/* ---- the bridge -------------------------------------------------------- */

static char err_path[PATH_MAX];
static pid_t bridge_pid;	/* the bridge running, for a failed test */

/* The bridge, with its common options and then @args (NULL-ended), its
 * stderr in the test's directory (bridge-NAME.err). The heartbeat is the
 * default (10 s) unless @args say: a second only where a silent
 * connection is the fault, since a broker busy with rabbitmqctl on a
 * loaded machine can miss two heartbeats of a second. */
static pid_t spawn_bridge(const char *name, int port, const char *const *args)
{
	char url[64];
	const char *argv[40] = { cli, "--bus", BUS, "bridge", "--amqp", url,
				 "--credentials", creds, "--reply-queue", "none" };
	int n = 10;
	pid_t pid;

	snprintf(url, sizeof(url), "amqp://127.0.0.1:%d",
		 port ? port : broker.amqp_port);
	while (*args && n < 39)
		argv[n++] = *args++;
	argv[n] = NULL;
	snprintf(err_path, sizeof(err_path), "%s/bridge-%s.err", t_dir, name);
	pid = fork();
	assert_true(pid >= 0);
	if (pid)
		return bridge_pid = pid;
	if (!freopen(err_path, "w", stderr) ||
	    !freopen("/dev/null", "w", stdout))
		_exit(127);
	execv(cli, (char *const *)argv);
	_exit(127);
}

/* SIGTERM: exit 0, and its last counters line. */
static const char *stop_bridge(pid_t pid)
{
	const char *last = rmq_stop_bridge(pid, err_path, "bridge: forwarded");

	bridge_pid = 0;
	return last;
}

static unsigned long counter(const char *line, const char *name)
{
	const char *p = strstr(line, name);

	return p ? strtoul(p + strlen(name) + 1, NULL, 10) : 0;
}

/* The output of a shell command (at most @cap - 1 bytes). */
static void run_out(char *buf, size_t cap, const char *fmt, ...)
{
	char cmd[PATH_MAX * 2];
	va_list ap;
	size_t n;
	FILE *f;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	f = popen(cmd, "r");
	assert_non_null(f);
	n = fread(buf, 1, cap - 1, f);
	buf[n] = '\0';
	pclose(f);
}

/* A route's field in `shmbus stat --format json` (its first bridge), or
 * -1 if no bridge shows. */
static long stat_field(const char *field)
{
	static char out[65536];
	char key[64];
	const char *p;

	run_out(out, sizeof(out), "%s --bus %s stat --format json", cli, BUS);
	p = strstr(out, "\"bridges\":[{");
	if (!p)
		return -1;
	snprintf(key, sizeof(key), "\"%s\":", field);
	p = strstr(p, key);
	if (!p)
		return -1;
	p += strlen(key);
	if (!strncmp(p, "true", 4))
		return 1;
	if (!strncmp(p, "false", 5) || !strncmp(p, "null", 4))
		return 0;
	return strtol(p, NULL, 10);
}

/* Wait up to @ms until stat_field(@field) >= @min. */
static long wait_stat(const char *field, long min, int ms)
{
	int64_t end = t_now_ns() + ms * 1000000ll;
	long v;

	while ((v = stat_field(field)) < min && t_now_ns() < end)
		usleep(100000);
	return v;
}

static bool blocked_broker;	/* a test set the memory alarm */

/* rabbitmqctl against the private node (its cookie is in its HOME). */
static int rmqctl(const char *args)
{
	char cmd[PATH_MAX * 3];

	snprintf(cmd, sizeof(cmd), "HOME=%s ERL_EPMD_PORT=%d "
		 "/usr/lib/rabbitmq/bin/rabbitmqctl -q "
		 "-n shmbustest%d@localhost %s >>%s/rabbitmqctl.out 2>&1",
		 broker.dir, broker.epmd_port, (int)getpid(), args, broker.dir);
	return system(cmd);
}

/* ---- the broker's side ------------------------------------------------- */

static amqp_connection_state_t amqp(void)
{
	amqp_connection_state_t c = rmq_connect(&broker);

	assert_non_null(c);
	return c;
}

/* EX (direct) -> AQ by KEY; unroutable messages of EX go to AE (fanout)
 * -> AQ, so that none is lost between a declare of EX and its bind. */
static void declare_ex(amqp_connection_state_t c)
{
	amqp_table_entry_t ae = {
		.key = amqp_cstring_bytes("alternate-exchange"),
		.value = { .kind = AMQP_FIELD_KIND_UTF8,
			   .value.bytes = amqp_cstring_bytes(AE) } };
	amqp_table_t args = { 1, &ae };

	amqp_exchange_declare(c, RMQ_CH, amqp_cstring_bytes(EX),
			      amqp_cstring_bytes("direct"), 0, 1, 0, 0, args);
	rmq_rpc_ok(c, "exchange.declare");
	amqp_queue_bind(c, RMQ_CH, amqp_cstring_bytes(AQ),
			amqp_cstring_bytes(EX), amqp_cstring_bytes(KEY),
			amqp_empty_table);
	rmq_rpc_ok(c, "queue.bind");
}

static void declare_broker(void)
{
	amqp_connection_state_t c = amqp();

	amqp_exchange_declare(c, RMQ_CH, amqp_cstring_bytes(AE),
			      amqp_cstring_bytes("fanout"), 0, 1, 0, 0,
			      amqp_empty_table);
	rmq_rpc_ok(c, "exchange.declare");
	amqp_queue_declare(c, RMQ_CH, amqp_cstring_bytes(AQ), 0, 1, 0, 0,
			   amqp_empty_table);
	rmq_rpc_ok(c, "queue.declare");
	amqp_queue_bind(c, RMQ_CH, amqp_cstring_bytes(AQ),
			amqp_cstring_bytes(AE), amqp_empty_bytes,
			amqp_empty_table);
	rmq_rpc_ok(c, "queue.bind");
	declare_ex(c);
	amqp_queue_declare(c, RMQ_CH, amqp_cstring_bytes(IQ), 0, 1, 0, 0,
			   amqp_empty_table);
	rmq_rpc_ok(c, "queue.declare");
	rmq_close(c);
}

/* Messages ready in broker queue @q. */
static uint32_t ready(const char *q)
{
	amqp_connection_state_t c = amqp();
	amqp_queue_declare_ok_t *ok;
	uint32_t n;

	ok = amqp_queue_declare(c, RMQ_CH, amqp_cstring_bytes(q), 1, 0, 0, 0,
				amqp_empty_table);
	rmq_rpc_ok(c, "queue.declare passive");
	n = ok->message_count;
	rmq_close(c);
	return n;
}

static void purge(const char *q)
{
	amqp_connection_state_t c = amqp();

	amqp_queue_purge(c, RMQ_CH, amqp_cstring_bytes(q));
	rmq_rpc_ok(c, "queue.purge");
	rmq_close(c);
}

/* Body "m<i>..." of a message of ours: i, or -1. */
static int index_of(const void *body, size_t len)
{
	char s[32];
	int i;

	if (len >= sizeof(s))
		len = sizeof(s) - 1;
	memcpy(s, body, len);
	s[len] = '\0';
	return sscanf(s, "m%d", &i) == 1 ? i : -1;
}

/* Consume AQ into seen[0..n) until @quiet_ms pass with nothing (1 s once
 * all were seen); how many were received. */
static long consume_aq(int *seen, int n, int quiet_ms)
{
	amqp_connection_state_t c = amqp();
	int missing = n;
	long got = 0;

	amqp_basic_consume(c, RMQ_CH, amqp_cstring_bytes(AQ), amqp_empty_bytes,
			   0, 1, 0, amqp_empty_table);
	rmq_rpc_ok(c, "basic.consume");
	for (;;) {
		int ms = missing ? quiet_ms : 1000;
		struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
		amqp_envelope_t e;
		amqp_rpc_reply_t r;
		int i;

		amqp_maybe_release_buffers(c);
		r = amqp_consume_message(c, &e, &tv, 0);
		if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
		    r.library_error == AMQP_STATUS_TIMEOUT)
			break;
		assert_int_equal(r.reply_type, AMQP_RESPONSE_NORMAL);
		i = index_of(e.message.body.bytes, e.message.body.len);
		assert_true(i >= 0 && i < n);
		if (!seen[i]++)
			missing--;
		got++;
		amqp_destroy_envelope(&e);
	}
	rmq_close(c);
	return got;
}

/* Publish "m<i>" for i in [0, n) to IQ, persistent, confirmed, @pause_us
 * between messages. */
struct amqp_pub {
	int n, pause_us;
};

static void *amqp_publish(void *arg)
{
	const struct amqp_pub *a = arg;
	amqp_connection_state_t c = amqp();
	amqp_basic_properties_t p = {
		._flags = AMQP_BASIC_DELIVERY_MODE_FLAG |
			  AMQP_BASIC_MESSAGE_ID_FLAG,
		.delivery_mode = 2,
	};
	char body[32];

	rmq_confirm_select(c);
	for (int i = 0; i < a->n; i++) {
		snprintf(body, sizeof(body), "m%d", i);
		p.message_id = amqp_cstring_bytes(body);
		assert_int_equal(amqp_basic_publish(c, RMQ_CH, amqp_empty_bytes,
						    amqp_cstring_bytes(IQ), 0,
						    0, &p,
						    amqp_cstring_bytes(body)), 0);
		if (a->pause_us)
			usleep(a->pause_us);
	}
	/* every confirm: the broker has them all on disk */
	rmq_wait_confirmed(c, (uint64_t)a->n);
	rmq_close(c);
	return NULL;
}

/* ---- the bus's side ---------------------------------------------------- */

static void declare_local_sized(const char *q, uint32_t max_len,
				int64_t lease_ns, uint32_t msg_size)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_len = max_len,
		    .lease_ns = lease_ns, .msg_size = msg_size);
	struct shmbus *bus = t_open_bus(BUS);

	shmbus__queue_delete(bus, q);
	assert_true(shmbus__queue_declare(bus, q, &qo) >= 0);
	shmbus__close(bus);
}

static void declare_local(const char *q, uint32_t max_len, int64_t lease_ns)
{
	declare_local_sized(q, max_len, lease_ns, 0);
}

struct local_pub {
	int n, pause_us;
	size_t size;		/* of each message, 0: just "m<i>" */
};

/* Publish "m<i>" (padded to @size with spaces) for i in [0, n) to LQ,
 * @pause_us between them. */
static void *local_publish(void *arg)
{
	const struct local_pub *a = arg;
	struct shmbus *bus = t_open_bus(BUS);
	struct shmbus_producer *p = shmbus_producer__new(bus, LQ, NULL);
	char *body = malloc(a->size + 32);

	assert_non_null(p);
	assert_non_null(body);
	memset(body, ' ', a->size + 32);
	for (int i = 0; i < a->n; i++) {
		SHMBUS_OPTS(shmbus_pub_opts, o, .timeout_ns = 10000000000ll);
		int n = snprintf(body, 32, "m%d", i);

		body[n] = ' ';
		assert_int_equal(shmbus_producer__publish(p, body, a->size ?
							  a->size : (size_t)n,
							  &o), 0);
		if (a->pause_us)
			usleep(a->pause_us);
	}
	shmbus_producer__free(p);
	shmbus__close(bus);
	free(body);
	return NULL;
}

/* Receive from LIN into seen[0..n) until @quiet_ms pass with nothing
 * (1 s once all were seen); how many were received. */
static long consume_local(int *seen, int n, int quiet_ms)
{
	struct shmbus *bus = t_open_bus(BUS);
	struct shmbus_consumer *c = shmbus_consumer__new(bus, LIN, NULL);
	int missing = n;
	long got = 0;

	assert_non_null(c);
	for (;;) {
		struct shmbus_msg m;
		int64_t ms = missing ? quiet_ms : 1000;
		int i;

		if (shmbus_consumer__receive_view(c, &m, ms * 1000000) < 0)
			break;
		i = index_of(m.data, m.len);
		assert_true(i >= 0 && i < n);
		if (!seen[i]++)
			missing--;
		got++;
		shmbus_consumer__ack(c, &m);
	}
	shmbus_consumer__free(c);
	shmbus__close(bus);
	return got;
}

static uint64_t local_depth(const char *q)
{
	struct shmbus *bus = t_open_bus(BUS);
	struct shmbus_queue_info qi;

	assert_int_equal(shmbus__queue_info(bus, q, &qi), 0);
	shmbus__close(bus);
	return qi.depth;
}

/* Print and check the figure: 0 lost. */
static void figure(const char *what, const int *seen, int n, long got,
		   const char *counters)
{
	long lost = 0, dup = 0;

	for (int i = 0; i < n; i++) {
		lost += !seen[i];
		dup += seen[i] > 1 ? seen[i] - 1 : 0;
	}
	print_message("%s: sent %d received %ld lost %ld duplicated %ld; %s",
		      what, n, got, lost, dup, counters);
	/* why a connection went, if one did */
	if (counter(counters, "reconnects")) {
		char line[512];
		FILE *f = fopen(err_path, "r");

		while (f && fgets(line, sizeof(line), f))
			if (strstr(line, "connection lost") ||
			    strstr(line, "out of order"))
				print_message("  %s", line);
		if (f)
			fclose(f);
	}
	assert_int_equal(lost, 0);
}

/* After each test: a bridge a failed test left is killed, the relay
 * ended, the broker unblocked. */
static int cleanup(void **state)
{
	(void)state;
	if (bridge_pid > 0) {
		kill(bridge_pid, SIGKILL);
		t_wait(bridge_pid, 10000);
		bridge_pid = 0;
	}
	if (relay.lfd > 0) {
		relay_end();
		relay.lfd = 0;
		relay.reorder = false;
	}
	if (blocked_broker)
		rmqctl("set_vm_memory_high_watermark 0.4");
	blocked_broker = false;
	return 0;
}

/* ---- the tests --------------------------------------------------------- */

static void test_counters(void **state)
{
	const char *args[] = { "--from", LQ, "--exchange", EX,
			       "--routing-key", KEY, NULL };
	struct local_pub lp = { 1000, 0, 0 };
	char out[65536];
	int *seen = calloc(lp.n, sizeof(int));
	long got;
	pid_t pid;

	need_broker();
	declare_local(LQ, 32768, 0);
	purge(AQ);
	local_publish(&lp);
	pid = spawn_bridge("counters", 0, args);
	got = consume_aq(seen, lp.n, 20000);
	/* once a second: the file catches up */
	assert_int_equal(wait_stat("confirmed", lp.n, 5000), lp.n);
	assert_true(stat_field("forwarded") >= lp.n);
	assert_int_equal(stat_field("lag"), 0);
	assert_int_equal(stat_field("blocked"), 0);
	run_out(out, sizeof(out), "%s --bus %s stat", cli, BUS);
	assert_non_null(strstr(out, "\nBRIDGE"));
	print_message("%s", strstr(out, "\nBRIDGE") + 1);
	run_out(out, sizeof(out), "%s --bus %s metrics", cli, BUS);
	assert_non_null(strstr(out, "shmbus_bridge_confirmed_total{bus=\""
			       BUS "\",route=\"out\",dir=\"out\""));
	/* killed -9: its file shows nothing (and goes) */
	kill(pid, SIGKILL);
	assert_int_equal(t_wait(pid, 10000), 128 + SIGKILL);
	bridge_pid = 0;
	assert_int_equal(stat_field("forwarded"), -1);
	run_out(out, sizeof(out), "%s --bus %s metrics", cli, BUS);
	assert_null(strstr(out, "shmbus_bridge_"));
	figure("counters", seen, lp.n, got, "killed -9\n");
	free(seen);
}

static void test_tcp_drop_out(void **state)
{
	const char *args[] = { "--from", LQ, "--exchange", EX,
			       "--routing-key", KEY, "--heartbeat", "1", NULL };
	struct local_pub lp = { 8000, 500, 0 };
	int *seen = calloc(lp.n, sizeof(int));
	const char *counters;
	pthread_t th;
	int64_t t0;
	pid_t pid;
	long got;

	need_broker();
	declare_local(LQ, 32768, 0);
	purge(AQ);
	relay_start();
	pid = spawn_bridge("tcp-drop-out", relay.port, args);
	pthread_create(&th, NULL, local_publish, &lp);
	sleep(1);
	/* silent: the bridge hears nothing more, its writes vanish */
	assert_true(relay_fault(SILENCE) >= 1);
	t0 = t_now_ns();
	assert_true(wait_stat("reconnects", 1, 20000) >= 1);
	print_message("silent drop: reconnected in %.1f s (heartbeat 1 s)\n",
		      (t_now_ns() - t0) / 1e9);
	pthread_join(th, NULL);
	got = consume_aq(seen, lp.n, 20000);
	counters = stop_bridge(pid);
	relay_end();
	relay.lfd = 0;
	figure("tcp silent drop, out", seen, lp.n, got, counters);
	assert_true(counter(counters, "reconnects") >= 1);
	free(seen);
}

static void test_tcp_stall_out(void **state)
{
	const char *args[] = { "--from", LQ, "--exchange", EX,
			       "--routing-key", KEY, "--heartbeat", "1", NULL };
	/* 64 KiB messages: the sockets fill up behind the stalled relay */
	struct local_pub lp = { 600, 2000, 65536 };
	int *seen = calloc(lp.n, sizeof(int));
	const char *counters;
	pthread_t th;
	int64_t t0;
	pid_t pid;
	long got;

	need_broker();
	declare_local_sized(LQ, 4096, 0, 65536);
	purge(AQ);
	relay_start();
	pid = spawn_bridge("tcp-stall-out", relay.port, args);
	pthread_create(&th, NULL, local_publish, &lp);
	sleep(1);
	assert_true(relay_fault(STALL) >= 1);
	t0 = t_now_ns();
	assert_true(wait_stat("reconnects", 1, 20000) >= 1);
	print_message("stalled: reconnected in %.1f s (heartbeat 1 s)\n",
		      (t_now_ns() - t0) / 1e9);
	pthread_join(th, NULL);
	got = consume_aq(seen, lp.n, 20000);
	counters = stop_bridge(pid);
	relay_end();
	relay.lfd = 0;
	figure("tcp stalled, 64 KiB messages, out", seen, lp.n, got, counters);
	free(seen);
}

/* RabbitMQ may confirm a message alone before older ones: through the
 * relay, every confirm of many comes as a confirm of each, newest first.
 * The route settles each as it comes: no reconnect, no duplicate. */
static void test_confirms_out_of_order(void **state)
{
	const char *args[] = { "--from", LQ, "--exchange", EX,
			       "--routing-key", KEY, NULL };
	struct local_pub lp = { 5000, 500, 0 };
	int *seen = calloc(lp.n, sizeof(int));
	const char *counters;
	unsigned long singles;
	pthread_t th;
	pid_t pid;
	long got;

	need_broker();
	declare_local(LQ, 32768, 0);
	purge(AQ);
	relay.reorder = true;
	relay_start();
	pid = spawn_bridge("out-of-order", relay.port, args);
	pthread_create(&th, NULL, local_publish, &lp);
	pthread_join(th, NULL);
	got = consume_aq(seen, lp.n, 20000);
	counters = stop_bridge(pid);
	pthread_mutex_lock(&relay.lock);
	singles = relay.singles;
	pthread_mutex_unlock(&relay.lock);
	relay_end();
	relay.lfd = 0;
	relay.reorder = false;
	print_message("confirms of many sent on one by one, newest first: "
		      "%lu\n", singles);
	figure("confirms out of order, out", seen, lp.n, got, counters);
	assert_true(singles >= 1);
	assert_int_equal(counter(counters, "reconnects"), 0);
	assert_int_equal(got, lp.n);	/* no duplicate */
	free(seen);
}

static void test_tcp_drop_in(void **state)
{
	const char *args[] = { "--queue", IQ, "--to", LIN, "--heartbeat", "1",
			       NULL };
	struct amqp_pub ap = { 8000, 500 };
	int *seen = calloc(ap.n, sizeof(int));
	const char *counters;
	pthread_t th;
	pid_t pid;
	long got;

	need_broker();
	declare_local(LIN, 32768, 0);
	purge(IQ);
	relay_start();
	pid = spawn_bridge("tcp-drop-in", relay.port, args);
	pthread_create(&th, NULL, amqp_publish, &ap);
	sleep(1);
	assert_true(relay_fault(CUT) >= 1);
	assert_true(wait_stat("reconnects", 1, 20000) >= 1);
	/* and silently, the new connection */
	sleep(1);
	assert_true(relay_fault(SILENCE) >= 1);
	assert_true(wait_stat("reconnects", 2, 20000) >= 2);
	pthread_join(th, NULL);
	got = consume_local(seen, ap.n, 20000);
	counters = stop_bridge(pid);
	relay_end();
	relay.lfd = 0;
	figure("tcp cut and silent drop, in", seen, ap.n, got, counters);
	free(seen);
}

static void test_broker_restart_in(void **state)
{
	const char *args[] = { "--queue", IQ, "--to", LIN, "--prefetch", "16",
			       NULL };
	struct amqp_pub ap = { 20000, 0 };
	int *seen = calloc(ap.n, sizeof(int));
	const char *counters;
	uint64_t at;
	pid_t pid;
	long got;

	need_broker();
	declare_local(LIN, 32768, 0);
	purge(IQ);
	amqp_publish(&ap);
	pid = spawn_bridge("restart-in", 0, args);
	while ((at = local_depth(LIN)) < (uint64_t)ap.n / 10)
		usleep(5000);
	assert_int_equal(rmq_restart(&broker, SIGKILL), 0);
	got = consume_local(seen, ap.n, 20000);
	counters = stop_bridge(pid);
	print_message("broker kill -9 with %llu of %d in the local queue\n",
		      (unsigned long long)at, ap.n);
	figure("broker restart, in", seen, ap.n, got, counters);
	assert_true(at < (uint64_t)ap.n);
	assert_true(counter(counters, "reconnects") >= 1);
	free(seen);
}

static void test_channel_error(void **state)
{
	const char *args[] = { "--from", LQ, "--exchange", EX,
			       "--routing-key", KEY, NULL };
	struct local_pub lp = { 6000, 500, 0 };
	int *seen = calloc(lp.n, sizeof(int));
	amqp_connection_state_t c;
	const char *counters;
	pthread_t th;
	pid_t pid;
	long got;

	need_broker();
	declare_local(LQ, 32768, 0);
	purge(AQ);
	pid = spawn_bridge("channel-error", 0, args);
	pthread_create(&th, NULL, local_publish, &lp);
	sleep(1);
	c = amqp();
	amqp_exchange_delete(c, RMQ_CH, amqp_cstring_bytes(EX), 0);
	rmq_rpc_ok(c, "exchange.delete");
	/* the channel closes at each publish; the bridge backs off */
	sleep(3);
	declare_ex(c);
	rmq_close(c);
	pthread_join(th, NULL);
	got = consume_aq(seen, lp.n, 20000);
	counters = stop_bridge(pid);
	figure("exchange deleted for 3 s, out", seen, lp.n, got, counters);
	/* backed off: a handful of reconnects in 3 s, not hundreds */
	assert_true(counter(counters, "reconnects") >= 1);
	assert_true(counter(counters, "reconnects") <= 10);
	free(seen);
}

static void test_blocked(void **state)
{
	const char *args[] = { "--from", LQ, "--exchange", EX,
			       "--routing-key", KEY, NULL };
	struct local_pub lp = { 10000, 500, 0 };
	int *seen = calloc(lp.n, sizeof(int));
	const char *counters;
	uint32_t r1, r2;
	uint64_t d1, d2;
	pthread_t th;
	pid_t pid;
	long got;

	need_broker();
	declare_local(LQ, 32768, 0);
	purge(AQ);
	pid = spawn_bridge("blocked", 0, args);
	pthread_create(&th, NULL, local_publish, &lp);
	sleep(1);
	blocked_broker = true;
	assert_int_equal(rmqctl("set_vm_memory_high_watermark 0"), 0);
	assert_int_equal(wait_stat("blocked", 1, 10000), 1);
	/* nothing more reaches the broker; the local queue grows */
	r1 = ready(AQ);
	d1 = local_depth(LQ);
	sleep(1);
	r2 = ready(AQ);
	d2 = local_depth(LQ);
	print_message("blocked: broker %u -> %u, local queue %llu -> %llu\n",
		      r1, r2, (unsigned long long)d1, (unsigned long long)d2);
	assert_int_equal(r1, r2);
	assert_true(d2 > d1);
	assert_true(stat_field("blocks") >= 1);
	assert_int_equal(rmqctl("set_vm_memory_high_watermark 0.4"), 0);
	pthread_join(th, NULL);
	got = consume_aq(seen, lp.n, 20000);
	assert_int_equal(stat_field("blocked"), 0);
	counters = stop_bridge(pid);
	figure("memory alarm, out", seen, lp.n, got, counters);
	free(seen);
}

static void test_full_local_queue(void **state)
{
	const char *args[] = { "--queue", IQ, "--to", LIN, NULL };
	struct amqp_pub ap = { 3000, 0 };
	int *seen = calloc(ap.n, sizeof(int));
	const char *counters;
	uint32_t waiting;
	uint64_t depth;
	pid_t pid;
	long got;

	need_broker();
	declare_local(LIN, 128, 0);
	purge(IQ);
	amqp_publish(&ap);
	pid = spawn_bridge("full-local", 0, args);
	/* nobody consumes: the local queue fills, the broker keeps the
	 * rest (and the route's lag says how much) */
	sleep(3);
	depth = local_depth(LIN);
	waiting = ready(IQ);
	print_message("full local queue: local %llu, broker %u, lag %ld\n",
		      (unsigned long long)depth, waiting, stat_field("lag"));
	assert_int_equal(depth, 128);
	assert_true(waiting >= (uint32_t)ap.n - 128 - 64);
	assert_true(stat_field("lag") >= (long)ap.n - 128 - 64);
	got = consume_local(seen, ap.n, 20000);
	counters = stop_bridge(pid);
	figure("full local queue, in", seen, ap.n, got, counters);
	free(seen);
}

static void test_slow_confirms(void **state)
{
	const char *args[] = { "--from", LQ, "--exchange", EX,
			       "--routing-key", KEY, NULL };
	struct local_pub lp = { 2000, 0, 0 };
	int *seen = calloc(lp.n, sizeof(int));
	struct shmbus_queue_info qi;
	const char *counters;
	struct shmbus *bus;
	long got, extended;
	pid_t pid;

	need_broker();
	declare_local(LQ, 32768, 1000000000);	/* a lease of 1 s */
	purge(AQ);
	pid = spawn_bridge("slow-confirms", 0, args);
	assert_true(wait_stat("reconnects", 0, 5000) == 0);
	usleep(500000);	/* connected */
	blocked_broker = true;
	assert_int_equal(rmqctl("set_vm_memory_high_watermark 0"), 0);
	local_publish(&lp);
	assert_int_equal(wait_stat("blocked", 1, 10000), 1);
	sleep(4);	/* four leases */
	assert_int_equal(rmqctl("set_vm_memory_high_watermark 0.4"), 0);
	got = consume_aq(seen, lp.n, 20000);
	extended = wait_stat("extended", 1, 1500);
	counters = stop_bridge(pid);
	bus = t_open_bus(BUS);
	assert_int_equal(shmbus__queue_info(bus, LQ, &qi), 0);
	shmbus__close(bus);
	print_message("leases extended %ld, run out %llu\n", extended,
		      (unsigned long long)qi.stat[SHMBUS_STAT_LEASE_EXPIRED]);
	figure("confirms 4 s late, lease 1 s, out", seen, lp.n, got, counters);
	/* no lease ran out: no message went to the broker twice */
	assert_true(extended >= 1);
	assert_int_equal(qi.stat[SHMBUS_STAT_LEASE_EXPIRED], 0);
	/* a connection lost meanwhile gives the window back (duplicates
	 * of another cause, and it says why on its stderr) */
	if (!counter(counters, "reconnects"))
		assert_int_equal(got, lp.n);
	free(seen);
}
#endif

int main(void)
{
	const struct CMUnitTest tests[] = {
#if RMQ_HAVE_CLIENT
		cmocka_unit_test_teardown(test_counters, cleanup),
		cmocka_unit_test_teardown(test_tcp_drop_out, cleanup),
		cmocka_unit_test_teardown(test_tcp_stall_out, cleanup),
		cmocka_unit_test_teardown(test_confirms_out_of_order, cleanup),
		cmocka_unit_test_teardown(test_tcp_drop_in, cleanup),
		cmocka_unit_test_teardown(test_broker_restart_in, cleanup),
		cmocka_unit_test_teardown(test_channel_error, cleanup),
		cmocka_unit_test_teardown(test_blocked, cleanup),
		cmocka_unit_test_teardown(test_full_local_queue, cleanup),
		cmocka_unit_test_teardown(test_slow_confirms, cleanup),
#endif
	};
	int rc;
	FILE *f;

	t_env_setup();
	if (rmq_start(&broker, why, sizeof(why)) < 0)
		rmq_stop(&broker, true);
#if RMQ_HAVE_CLIENT
	if (!why[0]) {
		find_cli();
		snprintf(creds, sizeof(creds), "%s/creds", t_dir);
		f = fopen(creds, "w");
		/* only ours to read: the bridge refuses it otherwise */
		if (!f || fchmod(fileno(f), 0600) ||
		    fputs("guest:guest\n", f) < 0 || fclose(f))
			snprintf(why, sizeof(why), "cannot write %s", creds);
		else
			declare_broker();
	}
#else
	(void)f;
	snprintf(why, sizeof(why), "no <amqp.h> (librabbitmq-dev)");
#endif
	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	rc = cmocka_run_group_tests_name("bridge_faults", tests, NULL, NULL);
	rmq_stop(&broker, rc != 0);
	if (rc) {
		char cmd[PATH_MAX + 64];

		snprintf(cmd, sizeof(cmd), "tail -n 20 %s/bridge-*.err >&2",
			 t_dir);
		if (system(cmd)) {}
	}
	t_env_teardown();
	return rc;
}
