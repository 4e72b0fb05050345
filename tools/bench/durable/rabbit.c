// SPDX-License-Identifier: MIT
/*
 * rabbit.c - RabbitMQ on the same machine, as the reference for durable
 * queues. A private rabbitmq-server (its own node name, AMQP, distribution
 * and epmd ports, and its database, logs and configuration in a temporary
 * directory under dcfg.dir, the disk the shmbus journals use), started as
 * our child and stopped by its pid, also on error. Each cell: a producer
 * publishes persistent messages (delivery_mode 2) to a durable queue on a
 * channel in confirm mode, in batches of 1, 16 or 256, and waits for the
 * basic.ack of the whole batch; a consumer (prefetch 256) acks each
 * message. The same payloads, checked the same way, as the shmbus cells.
 */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <amqp.h>
#include <amqp_tcp_socket.h>

#include "dbench.h"
#include "barrier.h"

#define RMQ_SERVER	"/usr/lib/rabbitmq/bin/rabbitmq-server"
#define RMQ_EPMD	"epmd"
#define RMQ_START_S	120
#define RMQ_STOP_S	30
#define RMQ_PREFETCH	256
#define RMQ_CH		1

static char rmq_dir[PATH_MAX];		/* ours to remove */
static char version[128];
static int amqp_port;
static pid_t server_pid, epmd_pid;
static bool rmq_failed;			/* keep its files to read */

const char *d_rabbit_version(void)
{
	return version;
}

/* ------------------------------------------------------------------ */
/* The server                                                         */
/* ------------------------------------------------------------------ */

/* A TCP port nobody listens on now (the kernel's pick for port 0). */
static int free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port;

	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		die("picking a port: %s", strerror(errno));
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

static void write_file(const char *name, const char *text)
{
	char path[PATH_MAX + 64];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", rmq_dir, name);
	f = fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fclose(f))
		die("writing %s: %s", path, strerror(errno));
}

static void set_env(const char *name, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void set_env(const char *name, const char *fmt, ...)
{
	char val[PATH_MAX + 64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(val, sizeof(val), fmt, ap);
	va_end(ap);
	if (setenv(name, val, 1) < 0)
		_exit(127);
}

/* In the child that becomes the server: everything of the node points
 * into rmq_dir, so that no system node, cookie or configuration is
 * touched. RUNNING_UNDER_SYSTEMD makes the script exec erl itself, so
 * that our child is the Erlang VM and SIGTERM stops it cleanly. */
static void server_env(int dist_port, int epmd_port)
{
	set_env("HOME", "%s", rmq_dir);
	set_env("RABBITMQ_NODENAME", "dbench%d@localhost", (int)getppid());
	set_env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1");
	set_env("RABBITMQ_NODE_PORT", "%d", amqp_port);
	set_env("RABBITMQ_DIST_PORT", "%d", dist_port);
	set_env("ERL_EPMD_PORT", "%d", epmd_port);
	set_env("RABBITMQ_MNESIA_BASE", "%s/mnesia", rmq_dir);
	set_env("RABBITMQ_LOG_BASE", "%s/log", rmq_dir);
	set_env("RABBITMQ_CONFIG_FILE", "%s/rabbitmq.conf", rmq_dir);
	set_env("RABBITMQ_ADVANCED_CONFIG_FILE", "%s/advanced.config",
		rmq_dir);
	set_env("RABBITMQ_CONF_ENV_FILE", "%s/rabbitmq-env.conf", rmq_dir);
	set_env("RABBITMQ_ENABLED_PLUGINS_FILE", "%s/enabled_plugins",
		rmq_dir);
	set_env("RABBITMQ_PID_FILE", "%s/rabbitmq.pid", rmq_dir);
	set_env("RUNNING_UNDER_SYSTEMD", "true");
}

/* A child's output goes to rmq_dir/@what.out, kept when it fails. */
static void redirect(const char *what)
{
	char log[PATH_MAX + 32];

	snprintf(log, sizeof(log), "%s/%s.out", rmq_dir, what);
	if (!freopen("/dev/null", "r", stdin) ||
	    !freopen("/dev/null", "w", stdout) ||
	    !freopen(log, "w", stderr))
		_exit(127);
}

static pid_t spawn(const char *what, char *const argv[], int dist_port,
		   int epmd_port)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid)
		return pid;
	/* our own process group: a ^C to the bench does not reach it
	 * before we stop it ourselves */
	setpgid(0, 0);
	server_env(dist_port, epmd_port);
	redirect(what);
	execvp(argv[0], argv);
	_exit(127);
}

static amqp_connection_state_t amqp_connect(bool quiet);

static void read_version(void)
{
	FILE *f = popen("dpkg-query -W -f='rabbitmq-server ${Version}' "
			"rabbitmq-server; printf ', Erlang/OTP '; "
			"cat /usr/lib/erlang/releases/*/OTP_VERSION", "r");

	snprintf(version, sizeof(version), "?");
	if (!f)
		return;
	if (!fgets(version, sizeof(version), f))
		snprintf(version, sizeof(version), "?");
	pclose(f);
	version[strcspn(version, "\n")] = '\0';
}

/* Start the server; wait until it accepts an AMQP login. -1: it could
 * not be started (not installed, or it failed: its output is kept). */
int d_rabbit_start(void)
{
	char epmd_port_s[16];
	char *epmd_argv[] = { RMQ_EPMD, "-port", epmd_port_s, NULL };
	char *server_argv[] = { RMQ_SERVER, NULL };
	int dist_port, epmd_port;
	uint64_t end;

	if (access(RMQ_SERVER, X_OK)) {
		fprintf(stderr, "shmbus-bench-durable: no %s (make deps)\n",
			RMQ_SERVER);
		return -1;
	}
	read_version();
	if (d_mkdtemp(rmq_dir, sizeof(rmq_dir), dcfg.dir) < 0)
		die("mkdtemp in %s: %s", dcfg.dir, strerror(errno));
	amqp_port = free_port();
	dist_port = free_port();
	epmd_port = free_port();
	snprintf(epmd_port_s, sizeof(epmd_port_s), "%d", epmd_port);
	write_file("rabbitmq.conf", "loopback_users.guest = true\n");
	write_file("rabbitmq-env.conf", "");
	write_file("enabled_plugins", "[].\n");
	fprintf(stderr, "rabbitmq: starting a private server (AMQP port %d, "
		"in %s)\n", amqp_port, rmq_dir);
	/* our epmd, so that none outlives the run */
	epmd_pid = spawn("epmd", epmd_argv, dist_port, epmd_port);
	server_pid = spawn("rabbitmq-server", server_argv, dist_port,
			   epmd_port);
	end = now_ns() + RMQ_START_S * 1000000000ull;
	while (now_ns() < end) {
		amqp_connection_state_t c;

		if (waitpid(server_pid, NULL, WNOHANG) == server_pid) {
			server_pid = 0;
			fprintf(stderr, "shmbus-bench-durable: rabbitmq-server "
				"exited; see %s/rabbitmq-server.out and %s/log\n",
				rmq_dir, rmq_dir);
			rmq_failed = true;
			d_rabbit_stop();
			return -1;
		}
		c = amqp_connect(true);
		if (c) {
			amqp_connection_close(c, AMQP_REPLY_SUCCESS);
			amqp_destroy_connection(c);
			return 0;
		}
		usleep(200000);
	}
	fprintf(stderr, "shmbus-bench-durable: rabbitmq-server did not accept "
		"within %d s\n", RMQ_START_S);
	rmq_failed = true;
	d_rabbit_stop();
	return -1;
}

static void stop_pid(pid_t *pid)
{
	uint64_t end = now_ns() + RMQ_STOP_S * 1000000000ull;

	if (*pid <= 0)
		return;
	kill(*pid, SIGTERM);
	while (waitpid(*pid, NULL, WNOHANG) == 0) {
		if (now_ns() > end) {
			kill(*pid, SIGKILL);
			waitpid(*pid, NULL, 0);
			break;
		}
		usleep(20000);
	}
	*pid = 0;
}

/* Stop what we started, by pid: the VM first (its node unregisters from
 * our epmd), then epmd; then its files, unless it failed or the run
 * ended before its cells were done (an exit from die()). */
void d_rabbit_stop(void)
{
	bool failed = rmq_failed || (server_pid > 0 && !d_rabbit_done);

	stop_pid(&server_pid);
	stop_pid(&epmd_pid);
	if (!rmq_dir[0])
		return;
	if (failed) {
		fprintf(stderr, "shmbus-bench-durable: RabbitMQ's files kept "
			"in %s\n", rmq_dir);
		return;
	}
	d_rm_rf(rmq_dir);
	rmq_dir[0] = '\0';
}

/* ------------------------------------------------------------------ */
/* AMQP                                                               */
/* ------------------------------------------------------------------ */

static bool rpc_ok(amqp_connection_state_t c, const char *what, bool quiet)
{
	amqp_rpc_reply_t r = amqp_get_rpc_reply(c);

	if (r.reply_type == AMQP_RESPONSE_NORMAL)
		return true;
	if (!quiet)
		die("AMQP %s failed (reply type %d, %s)", what, r.reply_type,
		    r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION ?
		    amqp_error_string2(r.library_error) : "server exception");
	return false;
}

/* A connection with channel RMQ_CH open, or NULL (@quiet) / death. */
static amqp_connection_state_t amqp_connect(bool quiet)
{
	amqp_connection_state_t c = amqp_new_connection();
	amqp_socket_t *s = c ? amqp_tcp_socket_new(c) : NULL;
	amqp_rpc_reply_t r;

	if (!s)
		die("amqp: out of memory");
	if (amqp_socket_open(s, "127.0.0.1", amqp_port) != AMQP_STATUS_OK)
		goto fail;
	r = amqp_login(c, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest",
		       "guest");
	if (r.reply_type != AMQP_RESPONSE_NORMAL)
		goto fail;
	amqp_channel_open(c, RMQ_CH);
	if (!rpc_ok(c, "channel.open", quiet))
		goto fail;
	return c;
fail:
	if (!quiet)
		die("AMQP connection to 127.0.0.1:%d failed", amqp_port);
	amqp_destroy_connection(c);
	return NULL;
}

static void declare_queue(amqp_connection_state_t c, const char *q)
{
	amqp_queue_declare(c, RMQ_CH, amqp_cstring_bytes(q), 0, 1, 0, 0,
			   amqp_empty_table);
	rpc_ok(c, "queue.declare", false);
}

/*
 * Wait until every delivery tag in (@base, @base + @n] is confirmed. A
 * basic.ack confirms its tag, or with multiple every tag up to it; the
 * broker may combine them as it likes, so each tag of the batch is
 * marked (n <= 256).
 */
static void wait_confirms(amqp_connection_state_t c, uint64_t base,
			  unsigned n)
{
	uint8_t seen[256] = { 0 };
	unsigned left = n;

	while (left) {
		amqp_frame_t f;
		amqp_basic_ack_t *a;
		int err = amqp_simple_wait_frame(c, &f);

		if (err != AMQP_STATUS_OK)
			die("AMQP: waiting for confirms: %s",
			    amqp_error_string2(err));
		if (f.frame_type != AMQP_FRAME_METHOD)
			continue;
		if (f.payload.method.id == AMQP_BASIC_NACK_METHOD)
			die("AMQP: the broker nacked a publish");
		if (f.payload.method.id != AMQP_BASIC_ACK_METHOD)
			continue;
		a = f.payload.method.decoded;
		for (uint64_t t = a->multiple ? base + 1 : a->delivery_tag;
		     t <= a->delivery_tag; t++) {
			if (t <= base || t > base + n || seen[t - base - 1])
				continue;
			seen[t - base - 1] = 1;
			left--;
		}
	}
}

static void r_produce(const char *q, unsigned batch, size_t size,
		      unsigned pi)
{
	amqp_connection_state_t c = amqp_connect(false);
	amqp_basic_properties_t props = {
		._flags = AMQP_BASIC_DELIVERY_MODE_FLAG,
		.delivery_mode = 2,	/* persistent */
	};
	uint64_t first0 = (uint64_t)pi << D_PROD_SHIFT;
	uint64_t warm_end, end, t0 = 0, base = first0, seq = first0, t = 0;
	void *buf = aligned_alloc(CACHELINE, MAX_MSG);
	bool measuring = false;

	if (!buf)
		die("out of memory");
	declare_queue(c, q);
	amqp_confirm_select(c, RMQ_CH);
	rpc_ok(c, "confirm.select", false);
	d_start_line();
	warm_end = now_ns() + (uint64_t)(dcfg.warm_s * 1e9);
	end = warm_end + (uint64_t)(dcfg.seconds * 1e9);
	for (;;) {
		uint64_t tb = now_ns(), first = seq;

		if (!measuring && tb >= warm_end) {
			measuring = true;
			t0 = tb;
			base = seq;
		}
		if (measuring && tb >= end)
			break;
		for (unsigned i = 0; i < batch; i++, seq++) {
			amqp_bytes_t body = { .len = size, .bytes = buf };
			int err;

			fill(buf, size, seq);
			err = amqp_basic_publish(c, RMQ_CH, amqp_empty_bytes,
						 amqp_cstring_bytes(q), 0, 0,
						 &props, body);
			if (err != AMQP_STATUS_OK)
				die("AMQP publish: %s",
				    amqp_error_string2(err));
		}
		/* delivery tags count the channel's publishes from 1 */
		wait_confirms(c, first - first0, batch);
		t = now_ns();
		if (measuring)
			d_lat(t - tb);
	}
	d_producer_done(seq - base, seq - first0, t - t0);
	amqp_channel_close(c, RMQ_CH, AMQP_REPLY_SUCCESS);
	amqp_connection_close(c, AMQP_REPLY_SUCCESS);
	amqp_destroy_connection(c);
	free(buf);
}

static void r_consume(const char *q, size_t size)
{
	amqp_connection_state_t c = amqp_connect(false);
	uint64_t got = 0, next[D_MAX_PROD] = { 0 }, t0;

	declare_queue(c, q);
	amqp_basic_qos(c, RMQ_CH, 0, RMQ_PREFETCH, 0);
	rpc_ok(c, "basic.qos", false);
	amqp_basic_consume(c, RMQ_CH, amqp_cstring_bytes(q), amqp_empty_bytes,
			   0, 0, 0, amqp_empty_table);
	rpc_ok(c, "basic.consume", false);
	d_start_line();
	t0 = now_ns();
	while (smp_load_acquire(&dsh->done) < dcfg.producers ||
	       got < dsh->total) {
		struct timeval tv = { 0, 100000 };
		amqp_envelope_t env;
		amqp_rpc_reply_t r;
		uint64_t seq = 0;
		unsigned pi;

		amqp_maybe_release_buffers(c);
		r = amqp_consume_message(c, &env, &tv, 0);
		if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
		    r.library_error == AMQP_STATUS_TIMEOUT)
			continue;
		if (r.reply_type != AMQP_RESPONSE_NORMAL)
			die("AMQP consume: reply type %d", r.reply_type);
		if (env.message.body.len >= sizeof(seq))
			memcpy(&seq, env.message.body.bytes, sizeof(seq));
		pi = (unsigned)(seq >> D_PROD_SHIFT);
		/* each publisher's messages whole and in its order */
		if (env.message.body.len != size || pi >= D_MAX_PROD ||
		    (seq & ((1ull << D_PROD_SHIFT) - 1)) != next[pi] ||
		    verify(env.message.body.bytes, size, seq))
			die("%s: message %llu is not the one sent", q,
			    (unsigned long long)seq);
		next[pi]++;
		if (amqp_basic_ack(c, RMQ_CH, env.delivery_tag, 0))
			die("AMQP ack failed");
		amqp_destroy_envelope(&env);
		got++;
	}
	dsh->drain_ns = now_ns() - t0;
	dsh->received = got;
	amqp_queue_delete(c, RMQ_CH, amqp_cstring_bytes(q), 0, 0);
	rpc_ok(c, "queue.delete", false);
	amqp_channel_close(c, RMQ_CH, AMQP_REPLY_SUCCESS);
	amqp_connection_close(c, AMQP_REPLY_SUCCESS);
	amqp_destroy_connection(c);
}

void d_run_rabbit(unsigned bi, int si)
{
	struct dcell *c = &dcells[D_RABBIT][bi][si];
	pid_t kids[D_MAX_PROD + 1];
	unsigned np = dcfg.producers;
	char q[64];

	snprintf(q, sizeof(q), "rabbitmq.%u.%zu", d_batches[bi], sizes[si]);
	memset(dsh, 0, offsetof(struct dshared, lat));
	for (unsigned i = 0; i < np; i++) {
		kids[i] = d_fork(q);
		if (!kids[i]) {
			r_produce(q, d_batches[bi], sizes[si], i);
			_exit(0);
		}
	}
	kids[np] = d_fork(q);
	if (!kids[np]) {
		r_consume(q, sizes[si]);
		_exit(0);
	}
	d_wait_kids(kids, (int)np + 1, q);
	if (dsh->received != dsh->total)
		die("%s: %llu published, %llu received", q,
		    (unsigned long long)dsh->total,
		    (unsigned long long)dsh->received);
	d_cell_from_shared(c);
	fprintf(stderr, "  %-18s %9.0f msg/s  confirm p50 %9.1f us  p99 "
		"%9.1f us\n", q, c->rate, c->p50_us, c->p99_us);
}
