// SPDX-License-Identifier: MIT
/*
 * rabbit.c - a private RabbitMQ for the benchmark programs (rabbit.h):
 * its own node name, AMQP, distribution and epmd ports, its database,
 * logs and configuration in a temporary directory under the caller's
 * parent (the disk whose speed counts), started as our child and stopped
 * by its pid, also on error; and the AMQP client calls the programs
 * share.
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

#include "../bench.h"
#include "rabbit.h"

#define RMQ_SERVER	"/usr/lib/rabbitmq/bin/rabbitmq-server"
#define RMQ_EPMD	"epmd"
#define RMQ_START_S	120
#define RMQ_STOP_S	30

static char rmq_dir[PATH_MAX];		/* ours to remove */
static char version[128];
static char url[64];
static int amqp_port;
static pid_t server_pid, epmd_pid;

pid_t rabbit_pid(void)
{
	return server_pid;
}

const char *rabbit_version(void)
{
	return version;
}

const char *rabbit_url(void)
{
	return url;
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
	set_env("RABBITMQ_NODENAME", "bench%d@localhost", (int)getppid());
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

int rabbit_start(const char *parent)
{
	char epmd_port_s[16];
	char *epmd_argv[] = { RMQ_EPMD, "-port", epmd_port_s, NULL };
	char *server_argv[] = { RMQ_SERVER, NULL };
	int dist_port, epmd_port;
	uint64_t end;

	if (access(RMQ_SERVER, X_OK)) {
		fprintf(stderr, "%s: no %s (make deps)\n",
			program_invocation_short_name, RMQ_SERVER);
		return -1;
	}
	read_version();
	if (bench_mkdtemp(rmq_dir, sizeof(rmq_dir), parent) < 0)
		die("mkdtemp in %s: %s", parent, strerror(errno));
	amqp_port = free_port();
	snprintf(url, sizeof(url), "amqp://guest:guest@127.0.0.1:%d",
		 amqp_port);
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
			fprintf(stderr, "%s: rabbitmq-server exited; see "
				"%s/rabbitmq-server.out and %s/log\n",
				program_invocation_short_name, rmq_dir,
				rmq_dir);
			rabbit_stop(true);
			return -1;
		}
		c = rabbit_connect(true);
		if (c) {
			rabbit_close(c);
			return 0;
		}
		usleep(200000);
	}
	fprintf(stderr, "%s: rabbitmq-server did not accept within %d s\n",
		program_invocation_short_name, RMQ_START_S);
	rabbit_stop(true);
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

/* The VM first (its node unregisters from our epmd), then epmd. */
void rabbit_stop(bool keep)
{
	stop_pid(&server_pid);
	stop_pid(&epmd_pid);
	if (!rmq_dir[0])
		return;
	if (keep) {
		fprintf(stderr, "%s: RabbitMQ's files kept in %s\n",
			program_invocation_short_name, rmq_dir);
		rmq_dir[0] = '\0';
		return;
	}
	bench_rm_rf(rmq_dir);
	rmq_dir[0] = '\0';
}

/* ------------------------------------------------------------------ */
/* AMQP                                                               */
/* ------------------------------------------------------------------ */

bool rabbit_rpc_ok(amqp_connection_state_t c, const char *what, bool quiet)
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

amqp_connection_state_t rabbit_connect(bool quiet)
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
	amqp_channel_open(c, RABBIT_CH);
	if (!rabbit_rpc_ok(c, "channel.open", quiet))
		goto fail;
	return c;
fail:
	if (!quiet)
		die("AMQP connection to 127.0.0.1:%d failed", amqp_port);
	amqp_destroy_connection(c);
	return NULL;
}

void rabbit_close(amqp_connection_state_t c)
{
	amqp_channel_close(c, RABBIT_CH, AMQP_REPLY_SUCCESS);
	amqp_connection_close(c, AMQP_REPLY_SUCCESS);
	amqp_destroy_connection(c);
}

void rabbit_declare_queue(amqp_connection_state_t c, const char *q)
{
	amqp_queue_declare(c, RABBIT_CH, amqp_cstring_bytes(q), 0, 1, 0, 0,
			   amqp_empty_table);
	rabbit_rpc_ok(c, "queue.declare", false);
}

