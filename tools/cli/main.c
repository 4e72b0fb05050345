// SPDX-License-Identifier: MIT
/*
 * main.c - the shmbus command-line tool: main(), the global options
 * (--bus, --owner, --socket, --version, --help), the table of commands and the
 * helpers every command uses: the one-line error, opening the bus,
 * attaching to a queue, parsing numbers and durations, subcommands,
 * listing queues and stop signals. Each command lives in its own file
 * (cli.h).
 *
 * Every command has --help; every failure prints one line on stderr and
 * exits non-zero, a failed write to standard output included (out.c).
 */
#include <errno.h>
#include <getopt.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shmbus.h"
#include "cli.h"

static const char *opt_bus;
static const char *opt_socket;
static bool opt_has_owner;	/* --owner, or --bus USER:NAME */
static uint32_t opt_owner;
static char bus_label[160];
static const char *cmd_name = "shmbus";
static char errbuf[512];
/* The bus open_bus() opened last. A command may die() with it open: the
 * exit leaves it to the kernel and the daemon, and a leak checker finds
 * it referenced here (used: nothing reads it, the store must stay). */
static struct shmbus *opened_bus __attribute__((used));

/* library diagnostics become the detail of our one-line error */
static int capture_print(enum shmbus_print_level level, const char *fmt,
			 va_list ap)
{
	if (level != SHMBUS_WARN)
		return 0;
	vsnprintf(errbuf, sizeof(errbuf), fmt, ap);
	errbuf[strcspn(errbuf, "\n")] = '\0';
	return 0;
}

__attribute__((noreturn))
static void vdie(int code, const char *fmt, va_list ap)
{
	fprintf(stderr, "shmbus: %s: ", cmd_name);
	vfprintf(stderr, fmt, ap);
	if (code < 0) {			/* die_reason(): it says it all */
		code = 1;
	} else if (shmbus_errmsg()[0])
		fprintf(stderr, " (%s)", shmbus_errmsg());
	else if (errbuf[0])
		fprintf(stderr, " (%s)", errbuf);
	fputc('\n', stderr);
	exit(code);
}

void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vdie(1, fmt, ap);
}

void die_reason(const char *fallback)
{
	if (shmbus_errmsg()[0])
		die_code(-1, "%s", shmbus_errmsg());
	die("%s", fallback);
}

void die_code(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vdie(code, fmt, ap);
}

static void usage_main(FILE *f)
{
	fprintf(f,
"usage: shmbus [--bus [USER:]NAME] [--owner USER] [--socket PATH] COMMAND\n"
"              [ARGS]\n"
"\n"
"Commands:\n"
"  daemon                  run shmbusd in the foreground\n"
"  bus list|info|delete    the daemon's buses: see, delete\n"
"  queue declare NAME      create a queue (or check an existing one)\n"
"  queue delete NAME       delete a queue and its messages\n"
"  queue list              list queues\n"
"  pub QUEUE [MESSAGE]     publish MESSAGE, or each line of stdin\n"
"  sub QUEUE               print messages, one per line, each acked once written\n"
"  sub PATTERN --group G   subscribe to topics as consumer group G\n"
"  topic declare|delete|unsubscribe|list   pub/sub topics\n"
"  monitor start|stop|status   BPF counters from the USDT probes (root)\n"
"  metrics [--listen A:P]  counters, gauges, latency histograms (Prometheus)\n"
"  top                     live per-queue rates and latencies (q quits)\n"
"  stat                    per-queue depth and counters\n"
"  dlq list|peek|redrive   dead-letter queues: inspect, move back\n"
"  req QUEUE MESSAGE       send a request, print the reply\n"
"  reply QUEUE --echo|--exec CMD   answer requests\n"
"  bridge --amqp URL ROUTES  link the bus to RabbitMQ (bridge --help)\n"
"\n"
"Options:\n"
"  --bus NAME      bus to use (default: $SHMBUS_BUS or \"default\"): your\n"
"                  own bus of that name; USER:NAME is USER's bus\n"
"  --owner USER    use USER's bus NAME (a user name or uid); never\n"
"                  creates it\n"
"  --socket PATH   daemon socket (default: $SHMBUS_SOCKET or per user)\n"
"  --version       print the library version\n"
"  --help          this text; COMMAND --help for each command\n");
}

const char *cli_command(void)
{
	return cmd_name;
}

void check_name(const char *what, const char *name)
{
	/* the rule of the protocol (proto_name_valid() in the library) */
	size_t n = strlen(name);
	bool ok = n >= 1 && n <= 63 && name[0] != '.';
	char shown[ESC_LEN(64)];

	for (size_t i = 0; ok && i < n; i++)
		ok = (name[i] >= 'a' && name[i] <= 'z') ||
		     (name[i] >= 'A' && name[i] <= 'Z') ||
		     (name[i] >= '0' && name[i] <= '9') ||
		     name[i] == '.' || name[i] == '_' || name[i] == '-';
	if (!ok)
		usage_die("invalid %s name '%s': a name is 1 to 63 bytes of A-Z a-z "
		    "0-9 . _ - and does not start with '.'", what,
		    esc_text(shown, sizeof(shown), name, MIN_U(n, 64)));
}

const char *cli_socket(void)
{
	return opt_socket;
}

uint32_t cli_parse_user(const char *s)
{
	struct passwd *pw = getpwnam(s);

	if (pw)
		return pw->pw_uid;
	return (uint32_t)parse_num("user (name or uid)", s, UINT32_MAX - 1);
}

const char *cli_split_bus(const char *s, uint32_t *owner, bool *other)
{
	const char *colon = strchr(s, ':');
	char user[64];

	if (!colon)
		return s;
	if ((size_t)(colon - s) >= sizeof(user) || colon == s)
		usage_die("invalid bus '%s' (want [USER:]NAME)", s);
	memcpy(user, s, colon - s);
	user[colon - s] = '\0';
	*owner = cli_parse_user(user);
	*other = true;
	return colon + 1;
}

const char *cli_user_name(uint32_t uid)
{
	static char buf[8][40];
	static unsigned k;
	struct passwd *pw = getpwuid(uid);
	char *b = buf[k++ % 8];

	if (pw)
		snprintf(b, sizeof(buf[0]), "%s", pw->pw_name);
	else
		snprintf(b, sizeof(buf[0]), "%u", uid);
	return b;
}

const char *cli_bus(bool *other_owner)
{
	*other_owner = opt_has_owner;
	return opt_bus;
}

uint32_t cli_owner(bool *given)
{
	*given = opt_has_owner;
	return opt_owner;
}

/* The bus as errors name it: "NAME", or "USER:NAME" for --owner;
 * escaped. */
static const char *bus_name(void)
{
	const char *name = opt_bus ? esc(opt_bus) : "default";

	if (!opt_has_owner)
		return name;
	snprintf(bus_label, sizeof(bus_label), "%s:%s",
		 cli_user_name(opt_owner), name);
	return bus_label;
}

static struct shmbus *open_with(uint32_t flags)
{
	SHMBUS_OPTS(shmbus_open_opts, o, .socket_path = opt_socket,
		    .flags = flags | (opt_has_owner ? SHMBUS_OPEN_OWNER : 0),
		    .owner_uid = opt_owner);
	const char *env = getenv("SHMBUS_BUS");

	/* the bus $SHMBUS_BUS names, for a command that opens one: a bad
	 * name is a usage error, as for --bus */
	if (!opt_bus && env && *env)
		check_name("bus ($SHMBUS_BUS)", env);

	return shmbus__open(opt_bus, &o);
}

struct shmbus *open_bus(uint32_t flags)
{
	struct shmbus *bus = open_with(flags);

	if (!bus) {
		int err = errno;

		/* the library says why (ECONNREFUSED: no daemon at the
		 * socket, and none started) */
		if (err == EINVAL || err == ECONNREFUSED)
			die("cannot open bus '%s'", bus_name());
		if (err == ENOENT)
			die("no bus '%s'", bus_name());
		die("cannot open bus '%s': %s", bus_name(), strerror(err));
	}
	opened_bus = bus;
	return bus;
}

struct shmbus *cli_open_bus_ro(bool must)
{
	uint32_t flags = SHMBUS_OPEN_RDONLY | SHMBUS_OPEN_NOCREATE |
			 SHMBUS_OPEN_NOSTART;
	struct shmbus *bus;

	if (must)
		return open_bus(flags);
	bus = open_with(flags);
	if (!bus && errno == EINVAL)	/* the library says why */
		die("cannot open bus '%s'", bus_name());
	return bus;
}

/* The one-line error of an attach to @q that failed with errno. */
__attribute__((noreturn))
static void attach_failed(const char *q, bool producer)
{
	if (errno == ENOENT)
		die("no queue '%s'", q);
	if (errno == EPROTOTYPE)
		die("'%s' is a topic: subscribe with shmbus sub %s "
		    "--topic (or --group NAME)", q, q);
	die("cannot %s '%s': %s", producer ? "publish to" : "subscribe to",
	    q, strerror(errno));
}

void *attach_or_die(struct shmbus *bus, const char *q, bool producer)
{
	void *h;

	if (producer)
		return producer_or_die(bus, q, 0);
	check_name("queue", q);
	h = shmbus_consumer__new(bus, q, NULL);
	if (!h)
		attach_failed(q, false);
	return h;
}

struct shmbus_producer *producer_or_die(struct shmbus *bus, const char *q,
					uint32_t flags)
{
	SHMBUS_OPTS(shmbus_producer_opts, po, .flags = flags);
	struct shmbus_producer *p;

	check_name("queue", q);
	p = shmbus_producer__new(bus, q, &po);
	if (!p)
		attach_failed(q, true);
	return p;
}

unsigned long parse_num(const char *what, const char *s, unsigned long max)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 0);
	if (errno || end == s || *end || v > max || s[0] == '-')
		usage_die("invalid %s '%s'", what, s);
	return v;
}

double parse_seconds(const char *s)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || *end || v < 0 || v > 1e9)
		usage_die("invalid duration '%s' (seconds)", s);
	return v;
}

int64_t parse_ns(const char *s)
{
	return (int64_t)(parse_seconds(s) * 1e9);
}

uint32_t parse_sync(const char *s)
{
	if (!strcmp(s, "always"))
		return SHMBUS_SYNC_ALWAYS;
	if (!strcmp(s, "batch"))
		return SHMBUS_SYNC_BATCH;
	if (!strcmp(s, "never"))
		return SHMBUS_SYNC_NEVER;
	usage_die("--sync: always, batch or never, not '%s'", s);
}

int subcommand(int *argc, char ***argv, void (*usage)(FILE *),
	       const char *const *subs, const char **sub)
{
	char known[128] = "";
	size_t i;

	if (*argc < 2 || !strcmp((*argv)[1], "--help") ||
	    !strcmp((*argv)[1], "-h")) {
		usage(*argc < 2 ? stderr : stdout);
		return *argc < 2 ? EXIT_USAGE : 0;
	}
	for (i = 0; subs[i] && strcmp(subs[i], (*argv)[1]); i++) {
		strncat(known, i ? ", " : "", sizeof(known) - strlen(known) - 1);
		strncat(known, subs[i], sizeof(known) - strlen(known) - 1);
	}
	if (!subs[i])
		usage_die("unknown %s command '%s' (%s)", cmd_name, (*argv)[1],
			  known);
	*sub = (*argv)[1];
	(*argc)--;
	(*argv)++;
	optind = 0;	/* full getopt reset (glibc) */
	return -1;
}

struct shmbus_queue_info *list_queues(struct shmbus *bus, int *n)
{
	struct shmbus_queue_info *qi;
	int want = shmbus__queue_list(bus, NULL, 0);

	/* one more than counted: a declare in between is listed next time */
	qi = calloc(want + 1, sizeof(*qi));
	if (!qi)
		die("out of memory");
	*n = shmbus__queue_list(bus, qi, want + 1);
	if (*n > want + 1)
		*n = want + 1;
	return qi;
}

static volatile sig_atomic_t interrupted;	/* the signal, or 0 */
static volatile sig_atomic_t signals;		/* how many came */

static void on_signal(int sig)
{
	interrupted = sig;
	signals++;
}

void cli_trap_stop_signals(void)
{
	/* no SA_RESTART: a signal ends the blocking receive with EINTR */
	struct sigaction sa = { .sa_handler = on_signal };

	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

bool cli_interrupted(void)
{
	return interrupted != 0;
}

void cli_note_signal(int sig)
{
	interrupted = sig;
}

int cli_signal(void)
{
	return interrupted;
}

int cli_signal_count(void)
{
	return signals;
}

int cli_exec(const char *cmd, const void *in, size_t len,
	     const struct shmbus_msg *m, void *out, size_t cap, size_t *outlen,
	     size_t *over)
{
	char tmpl[] = "/tmp/shmbus-exec-XXXXXX";
	int fd = mkstemp(tmpl), pipefd[2] = { -1, -1 }, st;
	size_t n = 0, extra = 0;
	pid_t kid;

	if (fd < 0)
		return -errno;
	unlink(tmpl);
	/* a file, not a pipe: CMD may read as much or as little as it likes */
	if (write(fd, in, len) != (ssize_t)len || lseek(fd, 0, SEEK_SET) < 0 ||
	    (out && pipe(pipefd) < 0)) {
		close(fd);
		return -EIO;
	}
	fflush(stdout);		/* ours before CMD's, in order */
	kid = fork();
	if (kid == 0) {
		char num[32];

		dup2(fd, 0);
		if (out)
			dup2(pipefd[1], 1);
		if (m) {
			snprintf(num, sizeof(num), "%llu",
				 (unsigned long long)m->id);
			setenv("SHMBUS_MSG_ID", num, 1);
			snprintf(num, sizeof(num), "%u", m->delivery_count);
			setenv("SHMBUS_DELIVERY", num, 1);
		}
		signal(SIGPIPE, SIG_DFL);	/* not our SIG_IGN */
		signal(SIGINT, SIG_DFL);	/* not our handlers */
		signal(SIGTERM, SIG_DFL);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	close(fd);
	if (out)
		close(pipefd[1]);
	if (kid < 0) {
		if (out)
			close(pipefd[0]);
		return -EAGAIN;
	}
	/* all of it, so that CMD never blocks on a full pipe: what does not
	 * fit is read and counted */
	while (out) {
		char sink[4096];
		bool fits = n < cap;
		ssize_t r = read(pipefd[0], fits ? (char *)out + n : sink,
				 fits ? cap - n : sizeof(sink));

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if (fits)
			n += (size_t)r;
		else
			extra += (size_t)r;
	}
	if (out)
		close(pipefd[0]);
	/* a stop signal does not abandon CMD: it finishes (it got the
	 * signal too, from the terminal) and its status counts */
	while (waitpid(kid, &st, 0) < 0)
		if (errno != EINTR)
			return -errno;
	if (outlen)
		*outlen = n;
	if (over)
		*over = extra;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "bus", required_argument, NULL, 'b' },
		{ "owner", required_argument, NULL, 'o' },
		{ "socket", required_argument, NULL, 's' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} cmds[] = {
		{ "daemon", cmd_daemon },
		{ "bus", cmd_bus },
		{ "queue", cmd_queue },
		{ "pub", cmd_pub },
		{ "sub", cmd_sub },
		{ "stat", cmd_stat },
		{ "dlq", cmd_dlq },
		{ "topic", cmd_topic },
		{ "monitor", cmd_monitor },
		{ "metrics", cmd_metrics },
		{ "top", cmd_top },
		{ "req", cmd_req },
		{ "reply", cmd_reply },
		{ "bridge", cmd_bridge },
	};
	int opt;

	/* before anything is opened: nothing may land on fd 0, 1 or 2 */
	cli_std_fds();
	/* a reader that went away is an EPIPE where each write is checked
	 * (a message it did not take is not acked), not a silent death */
	signal(SIGPIPE, SIG_IGN);
	atexit(cli_close_stdout);
	shmbus_set_print(capture_print);
	/* options before the command only: stop at the first non-option */
	while ((opt = getopt_long(argc, argv, "+b:o:s:Vh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'b':
			opt_bus = cli_split_bus(optarg, &opt_owner,
						&opt_has_owner);
			break;
		case 'o':
			opt_owner = cli_parse_user(optarg);
			opt_has_owner = true;
			break;
		case 's': opt_socket = optarg; break;
		case 'V': printf("shmbus %s\n", shmbus_version()); return 0;
		case 'h': usage_main(stdout); return 0;
		default: usage_main(stderr); return 2;
		}
	}
	if (optind >= argc) {
		usage_main(stderr);
		return 2;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (!strcmp(argv[optind], cmds[i].name)) {
			int rc;

			cmd_name = cmds[i].name;
			/* a bad --bus is a usage error */
			if (opt_bus)
				check_name("bus", opt_bus);
			rc = cmds[i].fn(argc - optind, argv + optind);
			/* stopped by a signal it caught: say so, as if it had
			 * not been caught (130 for Ctrl-C) */
			return interrupted ? 128 + interrupted : rc;
		}
	}
	fprintf(stderr, "shmbus: unknown command '%s' (see shmbus --help)\n",
		argv[optind]);
	return 2;
}
