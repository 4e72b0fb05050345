/* SPDX-License-Identifier: MIT */
/*
 * rmq.h - a private RabbitMQ server for a test: its own node name, AMQP,
 * distribution and epmd ports, and its database, logs and configuration
 * in a directory of its own, so that no system node, cookie or
 * configuration is touched. Started as our children, stopped by pid
 * (also when the test dies: PR_SET_PDEATHSIG), restartable on the same
 * data directory (durable queues and persistent messages survive).
 *
 * Include after helpers.h; link with -lrabbitmq (the Makefile does for
 * the tests that include this). Without librabbitmq's header, or without
 * rabbitmq-server, rmq_start() reports why and the test skips (fails
 * under CI=true: SKIP_OR_FAIL).
 */
#ifndef SHMBUS_TEST_RMQ_H
#define SHMBUS_TEST_RMQ_H

#include <netinet/in.h>
#include <sys/prctl.h>

#if __has_include(<amqp.h>)
#define RMQ_HAVE_CLIENT 1
#include <amqp.h>
#include <amqp_tcp_socket.h>
#else
#define RMQ_HAVE_CLIENT 0
#endif

#define RMQ_SERVER	"/usr/lib/rabbitmq/bin/rabbitmq-server"
#define RMQ_START_S	60	/* a cold node takes a few seconds */
#define RMQ_STOP_S	30
#define RMQ_CH		1

struct rmq {
	char dir[PATH_MAX];
	int amqp_port, dist_port, epmd_port;
	pid_t server, epmd;
};

/* A TCP port nobody listens on now (the kernel's pick for port 0). */
static inline int rmq_free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

	if (fd < 0)
		return -1;
	if (!bind(fd, (struct sockaddr *)&sa, sizeof(sa)) &&
	    !getsockname(fd, (struct sockaddr *)&sa, &len))
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

static inline int rmq_write(const struct rmq *r, const char *name,
			    const char *text)
{
	char path[PATH_MAX + 64];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", r->dir, name);
	f = fopen(path, "w");
	if (!f)
		return -1;
	if (fputs(text, f) < 0) {
		fclose(f);
		return -1;
	}
	return fclose(f);
}

static inline void rmq_setenv(const char *name, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static inline void rmq_setenv(const char *name, const char *fmt, ...)
{
	char val[PATH_MAX + 64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(val, sizeof(val), fmt, ap);
	va_end(ap);
	if (setenv(name, val, 1) < 0)
		_exit(127);
}

/* In the child: everything of the node points into r->dir. The node name
 * carries the test's pid so that two tests at once never share a node.
 * RUNNING_UNDER_SYSTEMD makes the script exec erl itself, so that our
 * child is the Erlang VM and SIGTERM stops it cleanly. */
static inline void rmq_child_env(const struct rmq *r, pid_t test)
{
	rmq_setenv("HOME", "%s", r->dir);
	rmq_setenv("RABBITMQ_NODENAME", "shmbustest%d@localhost", (int)test);
	rmq_setenv("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1");
	rmq_setenv("RABBITMQ_NODE_PORT", "%d", r->amqp_port);
	rmq_setenv("RABBITMQ_DIST_PORT", "%d", r->dist_port);
	rmq_setenv("ERL_EPMD_PORT", "%d", r->epmd_port);
	rmq_setenv("RABBITMQ_MNESIA_BASE", "%s/mnesia", r->dir);
	rmq_setenv("RABBITMQ_LOG_BASE", "%s/log", r->dir);
	rmq_setenv("RABBITMQ_CONFIG_FILE", "%s/rabbitmq.conf", r->dir);
	rmq_setenv("RABBITMQ_ADVANCED_CONFIG_FILE", "%s/advanced.config",
		   r->dir);
	rmq_setenv("RABBITMQ_CONF_ENV_FILE", "%s/rabbitmq-env.conf", r->dir);
	rmq_setenv("RABBITMQ_ENABLED_PLUGINS_FILE", "%s/enabled_plugins",
		   r->dir);
	rmq_setenv("RABBITMQ_PID_FILE", "%s/rabbitmq.pid", r->dir);
	rmq_setenv("RUNNING_UNDER_SYSTEMD", "true");
}

/* Run @argv as our child, its output in r->dir/@what.out. Its own
 * process group keeps a ^C to the test from reaching it before we stop
 * it; PR_SET_PDEATHSIG kills it when the test dies (a timeout's kill -9)
 * so that no broker outlives its test. */
static inline pid_t rmq_spawn(const struct rmq *r, const char *what,
			      char *const argv[])
{
	pid_t test = getpid(), pid;
	char log[PATH_MAX + 32];

	fflush(NULL);
	pid = fork();
	if (pid)
		return pid;
	setpgid(0, 0);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != test)
		_exit(127);
	rmq_child_env(r, test);
	snprintf(log, sizeof(log), "%s/%s.out", r->dir, what);
	if (!freopen("/dev/null", "r", stdin) ||
	    !freopen("/dev/null", "w", stdout) || !freopen(log, "a", stderr))
		_exit(127);
	execvp(argv[0], argv);
	_exit(127);
}

/* Stop @pid: SIGTERM, then SIGKILL after RMQ_STOP_S. */
static inline void rmq_stop_pid(pid_t *pid, int sig)
{
	int64_t end = t_now_ns() + RMQ_STOP_S * 1000000000ll;

	if (*pid <= 0)
		return;
	kill(*pid, sig);
	while (waitpid(*pid, NULL, WNOHANG) == 0) {
		if (t_now_ns() > end) {
			kill(*pid, SIGKILL);
			waitpid(*pid, NULL, 0);
			break;
		}
		usleep(20000);
	}
	*pid = 0;
}

#if RMQ_HAVE_CLIENT
/* A login to the private broker with channel RMQ_CH open, or NULL. */
static inline amqp_connection_state_t rmq_connect(const struct rmq *r)
{
	amqp_connection_state_t c = amqp_new_connection();
	amqp_socket_t *s = c ? amqp_tcp_socket_new(c) : NULL;
	amqp_rpc_reply_t rep;

	if (!s)
		goto fail;
	if (amqp_socket_open(s, "127.0.0.1", r->amqp_port) != AMQP_STATUS_OK)
		goto fail;
	rep = amqp_login(c, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN,
			 "guest", "guest");
	if (rep.reply_type != AMQP_RESPONSE_NORMAL)
		goto fail;
	amqp_channel_open(c, RMQ_CH);
	if (amqp_get_rpc_reply(c).reply_type != AMQP_RESPONSE_NORMAL)
		goto fail;
	return c;
fail:
	if (c)
		amqp_destroy_connection(c);
	return NULL;
}

static inline void rmq_close(amqp_connection_state_t c)
{
	amqp_channel_close(c, RMQ_CH, AMQP_REPLY_SUCCESS);
	amqp_connection_close(c, AMQP_REPLY_SUCCESS);
	amqp_destroy_connection(c);
}

/* The test fails unless the last AMQP call on @c (@what) succeeded
 * (cmocka's fail_msg: include helpers.h first). */
static inline void rmq_rpc_ok(amqp_connection_state_t c, const char *what)
{
	amqp_rpc_reply_t r = amqp_get_rpc_reply(c);

	if (r.reply_type != AMQP_RESPONSE_NORMAL)
		fail_msg("AMQP %s: reply type %d", what, r.reply_type);
}

/* Publisher confirms on @c's channel: a publish is the broker's (on disk
 * for a persistent message in a durable queue) once confirmed. Closing a
 * connection with publishes unconfirmed does not promise they arrived: a
 * quorum queue once had 125 of 10000 missing after such a close. */
static inline void rmq_confirm_select(amqp_connection_state_t c)
{
	amqp_confirm_select(c, RMQ_CH);
	rmq_rpc_ok(c, "confirm.select");
}

/* Wait until publishes 1..@last on @c (after rmq_confirm_select, one
 * channel) are confirmed; a nack, or 60 s without a frame, fails. */
static inline void rmq_wait_confirmed(amqp_connection_state_t c,
				      uint64_t last)
{
	uint64_t upto = 0;

	while (upto < last) {
		struct timeval tv = { 60, 0 };
		amqp_frame_t f;
		int err = amqp_simple_wait_frame_noblock(c, &f, &tv);

		if (err != AMQP_STATUS_OK)
			fail_msg("AMQP confirms: %s after %llu of %llu",
				 amqp_error_string2(err),
				 (unsigned long long)upto,
				 (unsigned long long)last);
		if (f.frame_type != AMQP_FRAME_METHOD)
			continue;
		if (f.payload.method.id == AMQP_BASIC_NACK_METHOD)
			fail_msg("AMQP: the broker nacked a publish");
		if (f.payload.method.id != AMQP_BASIC_ACK_METHOD)
			continue;
		amqp_basic_ack_t *a = f.payload.method.decoded;
		/* one channel: confirms come in order; a multiple one
		 * covers every tag up to its own */
		if (a->multiple || a->delivery_tag == upto + 1)
			upto = a->delivery_tag;
	}
}
#endif

/* Start the server (epmd first, when it is not running yet) and wait
 * until it accepts an AMQP login. 0, or -1 with its output kept in
 * r->dir. */
static inline int rmq_boot(struct rmq *r)
{
#if RMQ_HAVE_CLIENT
	char port_s[16];
	char *epmd_argv[] = { "epmd", "-port", port_s, NULL };
	char *server_argv[] = { RMQ_SERVER, NULL };
	int64_t end;

	snprintf(port_s, sizeof(port_s), "%d", r->epmd_port);
	if (r->epmd <= 0)
		r->epmd = rmq_spawn(r, "epmd", epmd_argv);
	r->server = rmq_spawn(r, "rabbitmq-server", server_argv);
	if (r->epmd < 0 || r->server < 0)
		return -1;
	end = t_now_ns() + RMQ_START_S * 1000000000ll;
	while (t_now_ns() < end) {
		amqp_connection_state_t c;

		if (waitpid(r->server, NULL, WNOHANG) == r->server) {
			r->server = 0;
			fprintf(stderr, "rabbitmq-server exited; see %s\n",
				r->dir);
			return -1;
		}
		c = rmq_connect(r);
		if (c) {
			rmq_close(c);
			return 0;
		}
		usleep(100000);
	}
	fprintf(stderr, "rabbitmq-server did not accept within %d s; see %s\n",
		RMQ_START_S, r->dir);
	return -1;
#else
	return -1;
#endif
}

/*
 * The server's rabbitmq.conf (the new, sysctl-like format): what every
 * test needs, then @extra (NULL: nothing), read at the next (re)start.
 */
static inline int rmq_configure(const struct rmq *r, const char *extra)
{
	char text[8192];

	snprintf(text, sizeof(text), "loopback_users.guest = true\n%s",
		 extra ? extra : "");
	return rmq_write(r, "rabbitmq.conf", text);
}

/*
 * Lines of rabbitmq.conf for a TLS (amqps) listener on 127.0.0.1:@port
 * with the server's certificate @cert, its key @key, and @ca to check
 * client certificates with; @require_client: a client without a
 * certificate the CA signed is refused (else one is asked for and
 * checked when given). The files are PEM.
 */
static inline void rmq_tls_conf(char *buf, size_t len, int port,
				const char *ca, const char *cert,
				const char *key, bool require_client)
{
	snprintf(buf, len,
		 "listeners.ssl.1 = 127.0.0.1:%d\n"
		 "ssl_options.cacertfile = %s\n"
		 "ssl_options.certfile = %s\n"
		 "ssl_options.keyfile = %s\n"
		 "ssl_options.verify = verify_peer\n"
		 "ssl_options.fail_if_no_peer_cert = %s\n",
		 port, ca, cert, key, require_client ? "true" : "false");
}

/*
 * A private broker for this test in a fresh directory, @conf added to
 * its rabbitmq.conf (rmq_configure()). 0: it accepts AMQP logins as
 * guest/guest on 127.0.0.1:r->amqp_port. -1: @why says why not (the
 * caller skips, or fails under CI).
 */
static inline int rmq_start_conf(struct rmq *r, const char *conf, char *why,
				 size_t len)
{
	const char *top = getenv("SHMBUS_TEST_TMP");

	memset(r, 0, sizeof(*r));
	if (!RMQ_HAVE_CLIENT) {
		snprintf(why, len, "no <amqp.h> (librabbitmq-dev; make deps)");
		return -1;
	}
	if (access(RMQ_SERVER, X_OK)) {
		snprintf(why, len, "no %s (make deps)", RMQ_SERVER);
		return -1;
	}
	snprintf(r->dir, sizeof(r->dir), "%s/shmbus-rmq-XXXXXX",
		 top && *top ? top : "/tmp");
	if (!mkdtemp(r->dir)) {
		snprintf(why, len, "mkdtemp: %s", strerror(errno));
		r->dir[0] = '\0';
		return -1;
	}
	r->amqp_port = rmq_free_port();
	r->dist_port = rmq_free_port();
	r->epmd_port = rmq_free_port();
	if (r->amqp_port < 0 || r->dist_port < 0 || r->epmd_port < 0 ||
	    rmq_configure(r, conf) ||
	    rmq_write(r, "rabbitmq-env.conf", "") ||
	    rmq_write(r, "enabled_plugins", "[].\n")) {
		snprintf(why, len, "setting up %s: %s", r->dir,
			 strerror(errno));
		return -1;
	}
	if (rmq_boot(r) < 0) {
		snprintf(why, len, "rabbitmq-server did not start (see %s)",
			 r->dir);
		return -1;
	}
	return 0;
}

static inline int rmq_start(struct rmq *r, char *why, size_t len)
{
	return rmq_start_conf(r, NULL, why, len);
}

/* Kill the server with @sig (SIGTERM: a clean stop; SIGKILL: a crash)
 * and start it again on the same directory and ports. */
static inline int rmq_restart(struct rmq *r, int sig)
{
	rmq_stop_pid(&r->server, sig);
	return rmq_boot(r);
}

/* Stop what we started, by pid: the VM first (its node unregisters from
 * our epmd), then epmd; remove the directory unless @keep (a failed test
 * keeps the broker's logs to read). */
static inline void rmq_stop(struct rmq *r, bool keep)
{
	char cmd[PATH_MAX + 16];

	rmq_stop_pid(&r->server, SIGTERM);
	rmq_stop_pid(&r->epmd, SIGTERM);
	if (!r->dir[0])
		return;
	if (keep || getenv("SHMBUS_TEST_KEEP")) {
		fprintf(stderr, "rabbitmq files kept in %s\n", r->dir);
		return;
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", r->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", r->dir);
	r->dir[0] = '\0';
}

/*
 * SIGTERM bridge @pid, which must exit 0 within 20 s; the last line of
 * its stderr file @path that starts with @prefix ("bridge: forwarded",
 * its counters), newline and all, or "" (static: the next call
 * overwrites it).
 */
static inline const char *rmq_stop_bridge(pid_t pid, const char *path,
					  const char *prefix)
{
	static char line[1024], last[1024];
	FILE *f;

	kill(pid, SIGTERM);
	assert_int_equal(t_wait(pid, 20000), 0);
	f = fopen(path, "r");
	assert_non_null(f);
	last[0] = '\0';
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, prefix, strlen(prefix)))
			strcpy(last, line);
	fclose(f);
	return last;
}

/*
 * The end of a test program with bridges: the children in @kids (@n)
 * still running killed (before the daemons: their bus handles would
 * start them again), the broker stopped (its files kept if @rc), and on
 * failure the last lines of each *.err file in @dir.
 */
static inline void rmq_finish(struct rmq *r, int rc, const pid_t *kids,
			      int n, const char *dir)
{
	for (int i = 0; i < n; i++)
		if (waitpid(kids[i], NULL, WNOHANG) == 0) {
			kill(kids[i], SIGKILL);
			waitpid(kids[i], NULL, 0);
		}
	rmq_stop(r, rc != 0);
	if (rc) {
		char cmd[PATH_MAX + 64];

		snprintf(cmd, sizeof(cmd), "tail -n 20 %s/*.err >&2", dir);
		if (system(cmd)) {}
	}
}

#endif /* SHMBUS_TEST_RMQ_H */
