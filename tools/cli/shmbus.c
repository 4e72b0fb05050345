// SPDX-License-Identifier: MIT
/*
 * shmbus - the command-line tool: run the daemon, manage queues, publish,
 * subscribe, and print statistics read straight from the arena.
 *
 * Every command has --help; every failure prints one line on stderr and
 * exits non-zero.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include "shmbus.h"
#include "cli.h"

#define MIN_U(a, b) ((a) < (b) ? (a) : (b))

static const char *opt_bus;
static const char *opt_socket;
static const char *cmd_name = "shmbus";
static char errbuf[512];

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

__attribute__((format(printf, 1, 2), noreturn))
static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "shmbus: %s: ", cmd_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (errbuf[0])
		fprintf(stderr, " (%s)", errbuf);
	fputc('\n', stderr);
	exit(1);
}

static void usage_main(FILE *f)
{
	fprintf(f,
"usage: shmbus [--bus NAME] [--socket PATH] COMMAND [ARGS]\n"
"\n"
"Commands:\n"
"  daemon                  run shmbusd in the foreground\n"
"  queue declare NAME      create a queue (or check an existing one)\n"
"  queue delete NAME       delete a queue and its messages\n"
"  queue list              list queues\n"
"  pub QUEUE [MESSAGE]     publish MESSAGE, or each line of stdin\n"
"  sub QUEUE               print messages, one per line (acking each)\n"
"  sub PATTERN --group G   subscribe to topics as consumer group G\n"
"  topic declare|delete|unsubscribe|list   pub/sub topics\n"
"  monitor start|stop|status   BPF counters from the USDT probes (root)\n"
"  metrics [--listen A:P]  counters, gauges, latency histograms (Prometheus)\n"
"  top                     live per-queue rates and latencies (q quits)\n"
"  stat                    per-queue depth and counters\n"
"  dlq list|peek|redrive   dead-letter queues: inspect, move back\n"
"  req QUEUE MESSAGE       send a request, print the reply\n"
"  reply QUEUE --echo|--exec CMD   answer requests\n"
"\n"
"Options:\n"
"  --bus NAME      bus to use (default: $SHMBUS_BUS or \"default\")\n"
"  --socket PATH   daemon socket (default: $SHMBUS_SOCKET or per user)\n"
"  --version       print the library version\n"
"  --help          this text; COMMAND --help for each command\n");
}

static struct shmbus *open_bus(uint32_t flags)
{
	SHMBUS_OPTS(shmbus_open_opts, o, .socket_path = opt_socket,
		    .flags = flags);
	struct shmbus *bus = shmbus__open(opt_bus, &o);

	if (!bus) {
		int err = errno;

		if (err == ENOENT)
			die("no bus '%s'", opt_bus ? opt_bus : "default");
		die("cannot open bus '%s': %s", opt_bus ? opt_bus : "default",
		    strerror(err));
	}
	return bus;
}

struct shmbus *cli_open_bus_ro(bool must)
{
	SHMBUS_OPTS(shmbus_open_opts, o, .socket_path = opt_socket,
		    .flags = SHMBUS_OPEN_RDONLY | SHMBUS_OPEN_NOCREATE |
			     SHMBUS_OPEN_NOSTART);
	struct shmbus *bus;

	if (must)
		return open_bus(o.flags);
	bus = shmbus__open(opt_bus, &o);
	return bus;
}

/* A producer or consumer of queue @q, or a one-line error and exit. */
static void *attach_or_die(struct shmbus *bus, const char *q, bool producer)
{
	void *h = producer ? (void *)shmbus_producer__new(bus, q, NULL)
			   : (void *)shmbus_consumer__new(bus, q, NULL);

	if (!h) {
		if (errno == ENOENT)
			die("no queue '%s'", q);
		if (errno == EPROTOTYPE)
			die("'%s' is a topic: subscribe with shmbus sub %s "
			    "--topic (or --group NAME)", q, q);
		die("cannot %s '%s': %s", producer ? "publish to" : "subscribe to",
		    q, strerror(errno));
	}
	return h;
}

static unsigned long parse_num(const char *what, const char *s,
			       unsigned long max)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 0);
	if (errno || end == s || *end || v > max || s[0] == '-')
		die("invalid %s '%s'", what, s);
	return v;
}

static double parse_seconds(const char *s)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || *end || v < 0 || v > 1e9)
		die("invalid duration '%s' (seconds)", s);
	return v;
}

static int64_t parse_ns(const char *s)
{
	return (int64_t)(parse_seconds(s) * 1e9);
}

/*
 * "shmbus CMD SUB [options]": SUB goes to *sub and argv is shifted so that
 * getopt sees SUB's options. Returns an exit code when there is nothing
 * more to do (help asked for, or no SUB), else -1.
 */
static int subcommand(int *argc, char ***argv, void (*usage)(FILE *),
		      const char **sub)
{
	if (*argc < 2 || !strcmp((*argv)[1], "--help") ||
	    !strcmp((*argv)[1], "-h")) {
		usage(*argc < 2 ? stderr : stdout);
		return *argc < 2 ? 2 : 0;
	}
	*sub = (*argv)[1];
	(*argc)--;
	(*argv)++;
	optind = 0;	/* full getopt reset (glibc) */
	return -1;
}

/* Every queue, topic and subscription of @bus (free() the array). */
static struct shmbus_queue_info *list_queues(struct shmbus *bus, int *n)
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

/* ---- daemon -------------------------------------------------------- */

static int cmd_daemon(int argc, char **argv)
{
	char self[PATH_MAX], *slash;
	const char *bin = getenv("SHMBUS_DAEMON");
	char **args = calloc(argc + 3, sizeof(char *));
	int n = 0;

	if (!args)
		die("out of memory");
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			printf("usage: shmbus daemon [--verbose] [--arena-dir DIR] "
			       "[--log FILE]\n\nRuns shmbusd in the foreground "
			       "(logs on stderr). See shmbusd --help.\n");
			return 0;
		}
	}
	if (!bin || !*bin) {
		ssize_t k = readlink("/proc/self/exe", self, sizeof(self) - 16);

		bin = "shmbusd";
		if (k > 0) {
			self[k] = '\0';
			slash = strrchr(self, '/');
			if (slash) {
				strcpy(slash + 1, "shmbusd");
				if (access(self, X_OK) == 0)
					bin = self;
			}
		}
	}
	args[n++] = "shmbusd";
	if (opt_socket) {
		args[n++] = "--socket";
		args[n++] = (char *)opt_socket;
	}
	for (int i = 1; i < argc; i++)
		args[n++] = argv[i];
	args[n] = NULL;
	if (strchr(bin, '/'))
		execv(bin, args);
	else
		execvp(bin, args);
	die("cannot run %s: %s", bin, strerror(errno));
}

/* ---- queue --------------------------------------------------------- */

static void usage_queue(FILE *f)
{
	fprintf(f,
"usage: shmbus queue declare NAME [--max-len N] [--msg-size BYTES]\n"
"                               [--max-consumers N] [--lease SEC]\n"
"                               [--ttl SEC] [--max-deliveries N]\n"
"                               [--backoff SEC] [--backoff-mult X]\n"
"                               [--backoff-max SEC] [--dlq QUEUE]\n"
"                               [--expire-to-dlq] [--dedup-window SEC]\n"
"                               [--overflow block|reject|drop-oldest]\n"
"                               [--priorities N]\n"
"       shmbus queue delete NAME\n"
"       shmbus queue list\n"
"\n"
"declare: create NAME, or succeed if it exists with the same settings.\n"
"  --max-len N          capacity, rounded up to a power of two (default 1024)\n"
"  --msg-size BYTES     largest message (default 4096)\n"
"  --max-consumers N    concurrent consumers, 1..128 (default 16)\n"
"  --lease SEC          visibility timeout of a received message (default 30)\n"
"  --ttl SEC            messages expire after SEC (default: never)\n"
"  --max-deliveries N   then to the dead-letter queue (default: unlimited)\n"
"  --backoff SEC        delay before redelivering a failed message, doubled\n"
"                       (--backoff-mult) each time up to --backoff-max\n"
"                       (default 10 x SEC); default 0: at once\n"
"  --dlq QUEUE          dead-letter queue (must exist)\n"
"  --expire-to-dlq      expired messages go to the DLQ (default: dropped)\n"
"  --dedup-window SEC   drop a publish whose --dedup-id was seen within SEC\n"
"  --overflow POLICY    full queue: block (wait for the publish timeout,\n"
"                       default), reject (fail at once), drop-oldest (to\n"
"                       the DLQ, or dropped; counted)\n"
"  --priorities N       priority levels, 1..4 (publish --priority 0..N-1;\n"
"                       higher first)\n"
"delete:  delete NAME; its messages are dropped, its handles get EIDRM.\n"
"list:    name, capacity, message size and depth of every queue (topics\n"
"         and subscriptions: shmbus topic list).\n");
}

static int cmd_queue(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "max-len", required_argument, NULL, 'l' },
		{ "msg-size", required_argument, NULL, 's' },
		{ "max-consumers", required_argument, NULL, 'c' },
		{ "lease", required_argument, NULL, 'L' },
		{ "ttl", required_argument, NULL, 'T' },
		{ "max-deliveries", required_argument, NULL, 'm' },
		{ "backoff", required_argument, NULL, 'b' },
		{ "backoff-mult", required_argument, NULL, 'M' },
		{ "backoff-max", required_argument, NULL, 'B' },
		{ "dlq", required_argument, NULL, 'd' },
		{ "expire-to-dlq", no_argument, NULL, 'E' },
		{ "dedup-window", required_argument, NULL, 'W' },
		{ "overflow", required_argument, NULL, 'o' },
		{ "priorities", required_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	SHMBUS_OPTS(shmbus_queue_opts, qo);
	const char *sub;
	struct shmbus *bus;
	int opt, err;

	if ((opt = subcommand(&argc, &argv, usage_queue, &sub)) >= 0)
		return opt;
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'l': qo.max_len = parse_num("--max-len", optarg, 1u << 24); break;
		case 's': qo.msg_size = parse_num("--msg-size", optarg, 1u << 24); break;
		case 'c': qo.max_consumers = parse_num("--max-consumers", optarg, 128); break;
		case 'L': qo.lease_ns = parse_ns(optarg); break;
		case 'T': qo.ttl_ns = parse_ns(optarg); break;
		case 'm': qo.max_deliveries = parse_num("--max-deliveries", optarg, UINT32_MAX); break;
		case 'b': qo.backoff_init_ns = parse_ns(optarg); break;
		case 'B': qo.backoff_max_ns = parse_ns(optarg); break;
		case 'M': {
			double x = parse_seconds(optarg);

			if (x < 1 || x > 100)
				die("--backoff-mult must be 1..100");
			qo.backoff_mult_milli = (uint32_t)(x * 1000 + 0.5);
			break;
		}
		case 'd': qo.dead_letter_queue = optarg; break;
		case 'E': qo.flags |= SHMBUS_QUEUE_EXPIRE_TO_DLQ; break;
		case 'W': qo.dedup_window_ns = parse_ns(optarg); break;
		case 'P': qo.priorities = parse_num("--priorities", optarg, 4); break;
		case 'o':
			if (!strcmp(optarg, "block"))
				qo.overflow = SHMBUS_OVERFLOW_BLOCK;
			else if (!strcmp(optarg, "reject"))
				qo.overflow = SHMBUS_OVERFLOW_REJECT;
			else if (!strcmp(optarg, "drop-oldest"))
				qo.overflow = SHMBUS_OVERFLOW_DROP_OLDEST;
			else
				die("--overflow: block, reject or drop-oldest");
			break;
		case 'h': usage_queue(stdout); return 0;
		default: usage_queue(stderr); return 2;
		}
	}
	if (!strcmp(sub, "list")) {
		struct shmbus_queue_info *qi;
		int n;

		if (optind != argc)
			die("list takes no arguments");
		bus = open_bus(SHMBUS_OPEN_RDONLY | SHMBUS_OPEN_NOCREATE);
		qi = list_queues(bus, &n);
		printf("%-24s %10s %10s %10s %9s %9s\n", "QUEUE", "DEPTH",
		       "CAPACITY", "MSG_SIZE", "CONSUMERS", "PRODUCERS");
		for (int i = 0; i < n; i++) {
			if (qi[i].kind != SHMBUS_QUEUE)
				continue;
			printf("%-24s %10llu %10u %10u %9u %9u\n", qi[i].name,
			       (unsigned long long)qi[i].depth, qi[i].capacity,
			       qi[i].msg_size, qi[i].consumers, qi[i].producers);
		}
		free(qi);
		shmbus__close(bus);
		return 0;
	}
	if (optind + 1 != argc)
		die("%s needs exactly one queue NAME", sub);
	if (!strcmp(sub, "declare")) {
		bus = open_bus(0);
		err = shmbus__queue_declare(bus, argv[optind], &qo);
		if (err == -EEXIST)
			die("queue '%s' exists with different settings",
			    argv[optind]);
		if (err == -ENOENT)
			die("dead-letter queue '%s' does not exist (declare it "
			    "first)", qo.dead_letter_queue);
		if (err == -EINVAL)
			die("cannot declare '%s': invalid settings (lease >= "
			    "1 ms, backoff-max >= backoff, --expire-to-dlq "
			    "needs --dlq, a queue is not its own DLQ)",
			    argv[optind]);
		if (err < 0)
			die("cannot declare '%s': %s", argv[optind],
			    strerror(-err));
		printf("%s %s\n", err ? "created" : "exists", argv[optind]);
	} else if (!strcmp(sub, "delete")) {
		bus = open_bus(SHMBUS_OPEN_NOCREATE);
		err = shmbus__queue_delete(bus, argv[optind]);
		if (err == -ENOENT)
			die("no queue '%s'", argv[optind]);
		if (err < 0)
			die("cannot delete '%s': %s", argv[optind], strerror(-err));
		printf("deleted %s\n", argv[optind]);
	} else {
		die("unknown queue command '%s' (declare, delete, list)", sub);
	}
	shmbus__close(bus);
	return 0;
}

/* ---- pub ----------------------------------------------------------- */

static void usage_pub(FILE *f)
{
	fprintf(f,
"usage: shmbus pub QUEUE [MESSAGE] [--timeout SECONDS] [--ttl SECONDS]\n"
"                  [--delay SECONDS] [--corr-id N] [--dedup-id ID]\n"
"                  [--attr KEY=VALUE]... [--priority N]\n"
"\n"
"Publish MESSAGE to QUEUE, or, without MESSAGE, each line of standard\n"
"input as one message (without its newline). When the queue is full,\n"
"waits for room up to --timeout (default: for ever). --ttl: expire after\n"
"SECONDS; --delay: invisible for SECONDS; --corr-id: correlation id;\n"
"--dedup-id: idempotency key (the queue needs a --dedup-window);\n"
"--attr: a message attribute (header), up to 16; --priority: the level\n"
"(0 = default; the queue's --priorities - 1 is the highest).\n");
}

static void publish_or_die(struct shmbus_producer *p, const char *q,
			   const void *data, size_t len,
			   const struct shmbus_pub_opts *po)
{
	int err = shmbus_producer__publish(p, data, len, po);

	if (err == -EMSGSIZE)
		die("message of %zu bytes exceeds the msg-size of '%s'", len, q);
	if (err == -ENOBUFS)
		die("queue '%s' is full", q);
	if (err == -EOPNOTSUPP)
		die("queue '%s' has no dedup window (queue declare "
		    "--dedup-window)", q);
	if (err == -E2BIG)
		die("attributes over %u bytes", SHMBUS_ATTR_BYTES);
	if (err)
		die("publish to '%s': %s", q, strerror(-err));
}

static int cmd_pub(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "timeout", required_argument, NULL, 't' },
		{ "ttl", required_argument, NULL, 'T' },
		{ "delay", required_argument, NULL, 'D' },
		{ "corr-id", required_argument, NULL, 'C' },
		{ "dedup-id", required_argument, NULL, 'I' },
		{ "attr", required_argument, NULL, 'A' },
		{ "priority", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	SHMBUS_OPTS(shmbus_pub_opts, po, .timeout_ns = -1);
	static struct shmbus_attr attrs[16];
	unsigned nattr = 0;
	struct shmbus_producer *p;
	struct shmbus *bus;
	const char *q;
	unsigned long n = 0;
	int opt;

	optind = 0;	/* full getopt reset (glibc) */
	while ((opt = getopt_long(argc, argv, "t:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 't': po.timeout_ns = parse_ns(optarg); break;
		case 'T': po.ttl_ns = parse_ns(optarg); break;
		case 'D': po.delay_ns = parse_ns(optarg); break;
		case 'C': po.corr_id = parse_num("--corr-id", optarg, ULONG_MAX); break;
		case 'I': po.dedup_id = optarg; break;
		case 'p': po.priority = parse_num("--priority", optarg, 3); break;
		case 'A': {
			char *eq = strchr(optarg, '=');

			if (!eq || eq == optarg || nattr == 16)
				die("--attr KEY=VALUE (at most 16)");
			*eq = '\0';
			attrs[nattr++] = (struct shmbus_attr){
				.key = optarg, .value = eq + 1,
				.value_len = (uint32_t)strlen(eq + 1) };
			po.attrs = attrs;
			po.nr_attrs = nattr;
			break;
		}
		case 'h': usage_pub(stdout); return 0;
		default: usage_pub(stderr); return 2;
		}
	}
	if (argc - optind < 1 || argc - optind > 2) {
		usage_pub(stderr);
		return 2;
	}
	q = argv[optind];
	bus = open_bus(SHMBUS_OPEN_NOCREATE);
	p = attach_or_die(bus, q, true);
	if (argc - optind == 2) {
		publish_or_die(p, q, argv[optind + 1], strlen(argv[optind + 1]),
			       &po);
		n = 1;
	} else {
		char *line = NULL;
		size_t cap = 0;
		ssize_t len;

		while ((len = getline(&line, &cap, stdin)) >= 0) {
			if (len && line[len - 1] == '\n')
				line[--len] = '\0';
			publish_or_die(p, q, line, len, &po);
			n++;
		}
		free(line);
	}
	shmbus_producer__free(p);
	shmbus__close(bus);
	fprintf(stderr, "published %lu message%s to %s\n", n, n == 1 ? "" : "s",
		q);
	return 0;
}

/* ---- sub ----------------------------------------------------------- */

static void usage_sub(FILE *f)
{
	fprintf(f,
"usage: shmbus sub QUEUE [-n COUNT] [--timeout SECONDS]\n"
"       shmbus sub TOPIC-PATTERN --topic [--group NAME] [--durable]\n"
"                  [--drop-oldest] [--history] [-n COUNT] [--timeout SECONDS]\n"
"\n"
"Receive messages from QUEUE (competing with its other consumers) and\n"
"print each body on its own line, acking it. Exits after COUNT messages,\n"
"or when SECONDS pass with nothing received (default: runs until\n"
"interrupted).\n"
"With --topic (implied by --group): subscribe to the topics matching\n"
"PATTERN (\"orders.*\" one token, \"orders.>\" one or more), as consumer\n"
"group NAME (every group gets every message; consumers of one group\n"
"share them), or alone. --durable keeps the group's subscription while\n"
"nobody is subscribed; --drop-oldest drops its oldest message when full\n"
"instead of holding publishers up; --history starts with the topics'\n"
"history.\n"
"--headers prints each message's attributes (KEY=VALUE ... | body).\n");
}

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static int cmd_sub(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "count", required_argument, NULL, 'n' },
		{ "timeout", required_argument, NULL, 't' },
		{ "topic", no_argument, NULL, 'T' },
		{ "group", required_argument, NULL, 'g' },
		{ "durable", no_argument, NULL, 'D' },
		{ "drop-oldest", no_argument, NULL, 'O' },
		{ "history", no_argument, NULL, 'H' },
		{ "headers", no_argument, NULL, 'X' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	SHMBUS_OPTS(shmbus_sub_opts, so);
	bool topic = false, headers = false;
	struct sigaction sa = { .sa_handler = on_signal };
	unsigned long count = 0, got = 0;
	int64_t timeout_ns = -1;
	struct shmbus_consumer *c;
	struct shmbus *bus;
	const char *q;
	int opt, err = 0;

	optind = 0;	/* full getopt reset (glibc) */
	while ((opt = getopt_long(argc, argv, "n:t:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'n': count = parse_num("count", optarg, ULONG_MAX); break;
		case 't': timeout_ns = parse_seconds(optarg) * 1e9; break;
		case 'T': topic = true; break;
		case 'g': so.group = optarg; topic = true; break;
		case 'D': so.flags |= SHMBUS_SUB_DURABLE; break;
		case 'O': so.flags |= SHMBUS_SUB_DROP_OLDEST; break;
		case 'H': so.flags |= SHMBUS_SUB_HISTORY; break;
		case 'X': headers = true; break;
		case 'h': usage_sub(stdout); return 0;
		default: usage_sub(stderr); return 2;
		}
	}
	if (argc - optind != 1) {
		usage_sub(stderr);
		return 2;
	}
	q = argv[optind];
	if (!topic && so.flags)
		die("--durable, --drop-oldest and --history are for --topic");
	if ((so.flags & SHMBUS_SUB_DURABLE) && !so.group)
		die("--durable needs --group");
	bus = open_bus(SHMBUS_OPEN_NOCREATE);
	if (topic) {
		c = shmbus_consumer__subscribe(bus, q, &so);
		if (!c)
			die("cannot subscribe to '%s': %s", q,
			    errno == EINVAL ? "bad pattern or group name"
					    : strerror(errno));
	} else {
		c = attach_or_die(bus, q, false);
	}
	/* no SA_RESTART: a signal ends the blocking receive with EINTR */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	while (!interrupted && (!count || got < count)) {
		struct shmbus_msg m;

		err = shmbus_consumer__receive_view(c, &m, timeout_ns);
		if (err == -ETIMEDOUT || err == -EINTR) {
			err = 0;
			break;
		}
		if (err == -EBADMSG)
			continue;
		if (err)
			break;
		if (headers) {
			uint32_t it = 0;
			const char *k;
			const void *v;
			size_t kl, vl;

			while (shmbus_msg__attr_next(&m, &it, &k, &kl, &v,
						     &vl) == 1)
				printf("%.*s=%.*s ", (int)kl, k, (int)vl,
				       (const char *)v);
			printf("| ");
		}
		fwrite(m.data, 1, m.len, stdout);
		fputc('\n', stdout);
		shmbus_consumer__release(c, &m);
		got++;
	}
	fflush(stdout);
	shmbus_consumer__free(c);
	shmbus__close(bus);
	if (err == -EIDRM)
		die("queue '%s' was deleted", q);
	if (err)
		die("receive from '%s': %s", q, strerror(-err));
	return 0;
}

/* ---- stat ---------------------------------------------------------- */

static void usage_stat(FILE *f)
{
	fprintf(f,
"usage: shmbus stat [--format table|json]\n"
"\n"
"Depth and counters of every queue, read from the bus's shared memory\n"
"(needs read permission on the bus, nothing else).\n");
}

static const char *const stat_names[] = {
	[SHMBUS_STAT_PUBLISHED] = "published",
	[SHMBUS_STAT_DELIVERED] = "delivered",
	[SHMBUS_STAT_ACKED] = "acked",
	[SHMBUS_STAT_NACKED] = "nacked",
	[SHMBUS_STAT_REDELIVERED] = "redelivered",
	[SHMBUS_STAT_DEADLETTERED] = "dead_lettered",
	[SHMBUS_STAT_EXPIRED] = "expired",
	[SHMBUS_STAT_DROPPED] = "dropped",
	[SHMBUS_STAT_FULL] = "full",
	[SHMBUS_STAT_NOMEM] = "nomem",
	[SHMBUS_STAT_CORRUPT] = "corrupt",
	[SHMBUS_STAT_WAKEUPS] = "wakeups",
	[SHMBUS_STAT_SLEEPS] = "sleeps",
	[SHMBUS_STAT_RECLAIMED] = "reclaimed",
	[SHMBUS_STAT_LEASE_EXPIRED] = "lease_expired",
	[SHMBUS_STAT_DUPLICATES] = "duplicates",
};

static int cmd_stat(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct shmbus_queue_info *qi;
	struct shmbus *bus;
	bool json = false;
	int opt, n;

	optind = 0;	/* full getopt reset (glibc) */
	while ((opt = getopt_long(argc, argv, "f:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'f':
			if (!strcmp(optarg, "json"))
				json = true;
			else if (strcmp(optarg, "table"))
				die("unknown format '%s' (table, json)", optarg);
			break;
		case 'h': usage_stat(stdout); return 0;
		default: usage_stat(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage_stat(stderr);
		return 2;
	}
	bus = open_bus(SHMBUS_OPEN_RDONLY | SHMBUS_OPEN_NOCREATE);
	qi = list_queues(bus, &n);
	if (json) {
		printf("{\"bus\":\"%s\",\"bus_id\":%u,\"queues\":[",
		       shmbus__name(bus), shmbus__id(bus));
		for (int i = 0; i < n; i++) {
			printf("%s{\"name\":\"%s\",\"kind\":\"%s\",\"id\":%u,\"depth\":%llu,"
			       "\"in_flight\":%llu,"
			       "\"capacity\":%u,\"msg_size\":%u,\"consumers\":%u,"
			       "\"producers\":%u,\"lease_ns\":%lld,"
			       "\"ttl_ns\":%lld,\"max_deliveries\":%u,"
			       "\"dead_letter_queue\":\"%s\"", i ? "," : "",
			       qi[i].name,
			       qi[i].kind == SHMBUS_TOPIC ? "topic" :
			       qi[i].kind == SHMBUS_SUBSCRIPTION ? "subscription"
								 : "queue",
			       qi[i].id,
			       (unsigned long long)qi[i].depth,
			       (unsigned long long)qi[i].in_flight,
			       qi[i].capacity, qi[i].msg_size, qi[i].consumers,
			       qi[i].producers, (long long)qi[i].lease_ns,
			       (long long)qi[i].ttl_ns, qi[i].max_deliveries,
			       qi[i].dead_letter_queue);
			for (unsigned k = 0; k < sizeof(stat_names) / sizeof(*stat_names); k++)
				printf(",\"%s\":%llu", stat_names[k],
				       (unsigned long long)qi[i].stat[k]);
			printf("}");
		}
		printf("],\"pools\":[");
		for (int i = 0; i < shmbus__pool_count(bus); i++) {
			struct shmbus_pool_info pi;

			if (shmbus__pool_info(bus, i, &pi))
				continue;
			printf("%s{\"payload\":%u,\"chunk_size\":%u,"
			       "\"chunks\":%u,\"free\":%u,\"cached\":%u}",
			       i ? "," : "", pi.payload, pi.chunk_size,
			       pi.chunks, pi.free, pi.cached);
		}
		printf("]}\n");
	} else {
		printf("bus %s (id %u)\n", shmbus__name(bus), shmbus__id(bus));
		printf("%-26s %6s %5s %9s %9s %9s %6s %7s %7s %7s %7s %4s %4s\n",
		       "QUEUE", "DEPTH", "INFLT", "PUBLISHED", "DELIVERED",
		       "ACKED", "NACKED", "REDELIV", "DEADLTR", "EXPIRED",
		       "DROPPED", "CONS", "PROD");
		for (int i = 0; i < n; i++) {
			const uint64_t *st = qi[i].stat;

			printf("%-26s %6llu %5llu %9llu %9llu %9llu %6llu %7llu "
			       "%7llu %7llu %7llu %4u %4u\n", qi[i].name,
			       (unsigned long long)qi[i].depth,
			       (unsigned long long)qi[i].in_flight,
			       (unsigned long long)st[SHMBUS_STAT_PUBLISHED],
			       (unsigned long long)st[SHMBUS_STAT_DELIVERED],
			       (unsigned long long)st[SHMBUS_STAT_ACKED],
			       (unsigned long long)st[SHMBUS_STAT_NACKED],
			       (unsigned long long)st[SHMBUS_STAT_REDELIVERED],
			       (unsigned long long)st[SHMBUS_STAT_DEADLETTERED],
			       (unsigned long long)st[SHMBUS_STAT_EXPIRED],
			       (unsigned long long)st[SHMBUS_STAT_DROPPED],
			       qi[i].consumers, qi[i].producers);
		}
		printf("\n%-20s %8s %8s %8s %8s %8s\n", "POOL", "PAYLOAD",
		       "CHUNKS", "FREE", "CACHED", "IN_USE");
		for (int i = 0; i < shmbus__pool_count(bus); i++) {
			struct shmbus_pool_info pi;

			if (shmbus__pool_info(bus, i, &pi))
				continue;
			printf("%-20d %8u %8u %8u %8u %8u\n", i, pi.payload,
			       pi.chunks, pi.free, pi.cached,
			       pi.chunks - MIN_U(pi.chunks, pi.free + pi.cached));
		}
	}
	free(qi);
	shmbus__close(bus);
	return 0;
}


/* ---- topic ---------------------------------------------------------- */

static void usage_topic(FILE *f)
{
	fprintf(f,
"usage: shmbus topic declare NAME [--msg-size BYTES] [--history N]\n"
"       shmbus topic delete NAME\n"
"       shmbus topic unsubscribe PATTERN GROUP\n"
"       shmbus topic list\n"
"\n"
"declare: create topic NAME (publish to it with shmbus pub NAME);\n"
"         --history N keeps the last N messages for late subscribers.\n"
"delete:  delete the topic (subscriptions stay, matching nothing).\n"
"unsubscribe: delete the (durable) subscription PATTERN#GROUP.\n"
"list:    topics, and subscriptions with their depth and drops.\n");
}

static int cmd_topic(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "msg-size", required_argument, NULL, 's' },
		{ "history", required_argument, NULL, 'H' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	SHMBUS_OPTS(shmbus_topic_opts, to);
	struct shmbus *bus;
	const char *sub;
	int opt, err;

	if ((opt = subcommand(&argc, &argv, usage_topic, &sub)) >= 0)
		return opt;
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 's': to.msg_size = parse_num("--msg-size", optarg, 1u << 24); break;
		case 'H': to.history = parse_num("--history", optarg, 1u << 24); break;
		case 'h': usage_topic(stdout); return 0;
		default: usage_topic(stderr); return 2;
		}
	}
	if (!strcmp(sub, "list")) {
		struct shmbus_queue_info *qi;
		int n;

		bus = open_bus(SHMBUS_OPEN_RDONLY | SHMBUS_OPEN_NOCREATE);
		qi = list_queues(bus, &n);
		printf("%-32s %-12s %9s %7s %9s %9s %4s\n", "NAME", "KIND",
		       "PUBLISHED", "DEPTH", "DELIVERED", "DROPPED", "CONS");
		for (int i = 0; i < n; i++) {
			if (qi[i].kind == SHMBUS_QUEUE)
				continue;
			printf("%-32s %-12s %9llu %7llu %9llu %9llu %4u\n",
			       qi[i].name,
			       qi[i].kind == SHMBUS_TOPIC ? "topic" : "subscription",
			       (unsigned long long)qi[i].stat[SHMBUS_STAT_PUBLISHED],
			       (unsigned long long)qi[i].depth,
			       (unsigned long long)qi[i].stat[SHMBUS_STAT_DELIVERED],
			       (unsigned long long)(qi[i].sub_dropped +
						    qi[i].stat[SHMBUS_STAT_DROPPED]),
			       qi[i].consumers);
		}
		free(qi);
		shmbus__close(bus);
		return 0;
	}
	if (!strcmp(sub, "unsubscribe")) {
		if (optind + 2 != argc)
			die("unsubscribe needs PATTERN and GROUP");
		bus = open_bus(SHMBUS_OPEN_NOCREATE);
		err = shmbus__unsubscribe(bus, argv[optind], argv[optind + 1]);
		if (err == -ENOENT)
			die("no subscription '%s#%s'", argv[optind],
			    argv[optind + 1]);
		if (err)
			die("unsubscribe: %s", strerror(-err));
		printf("deleted %s#%s\n", argv[optind], argv[optind + 1]);
		shmbus__close(bus);
		return 0;
	}
	if (optind + 1 != argc)
		die("%s needs exactly one topic NAME", sub);
	if (!strcmp(sub, "declare")) {
		bus = open_bus(0);
		err = shmbus__topic_declare(bus, argv[optind], &to);
		if (err == -EEXIST)
			die("'%s' exists as a queue, or with other settings",
			    argv[optind]);
		if (err < 0)
			die("cannot declare topic '%s': %s", argv[optind],
			    strerror(-err));
		printf("%s %s\n", err ? "created" : "exists", argv[optind]);
	} else if (!strcmp(sub, "delete")) {
		bus = open_bus(SHMBUS_OPEN_NOCREATE);
		err = shmbus__queue_delete(bus, argv[optind]);
		if (err == -ENOENT)
			die("no topic '%s'", argv[optind]);
		if (err)
			die("cannot delete '%s': %s", argv[optind], strerror(-err));
		printf("deleted %s\n", argv[optind]);
	} else {
		die("unknown topic command '%s' (declare, delete, unsubscribe, "
		    "list)", sub);
	}
	shmbus__close(bus);
	return 0;
}

/* ---- req / reply ---------------------------------------------------- */

static void usage_req(FILE *f)
{
	fprintf(f,
"usage: shmbus req QUEUE MESSAGE [--timeout SECONDS]\n"
"\n"
"Send MESSAGE as a request to QUEUE and print the reply. Fails at once if\n"
"no consumer serves QUEUE, or after --timeout (default 5) without a reply.\n");
}

static int cmd_req(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int64_t timeout_ns = 5000000000LL;
	struct shmbus *bus;
	static char rep[65536];
	ssize_t n;
	int opt;

	optind = 0;	/* full getopt reset (glibc) */
	while ((opt = getopt_long(argc, argv, "t:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 't': timeout_ns = parse_ns(optarg); break;
		case 'h': usage_req(stdout); return 0;
		default: usage_req(stderr); return 2;
		}
	}
	if (argc - optind != 2) {
		usage_req(stderr);
		return 2;
	}
	bus = open_bus(SHMBUS_OPEN_NOCREATE);
	n = shmbus__request(bus, argv[optind], argv[optind + 1],
			    strlen(argv[optind + 1]), rep, sizeof(rep),
			    timeout_ns);
	shmbus__close(bus);
	if (n == -EHOSTUNREACH)
		die("no responders on '%s'", argv[optind]);
	if (n == -ENOENT)
		die("no queue '%s'", argv[optind]);
	if (n == -ETIMEDOUT)
		die("no reply from '%s' within %.3f s", argv[optind],
		    timeout_ns / 1e9);
	if (n < 0)
		die("request to '%s': %s", argv[optind], strerror((int)-n));
	fwrite(rep, 1, (size_t)n, stdout);
	fputc('\n', stdout);
	return 0;
}

static void usage_reply(FILE *f)
{
	fprintf(f,
"usage: shmbus reply QUEUE (--echo | --exec CMD) [-n COUNT]\n"
"                          [--timeout SECONDS]\n"
"\n"
"Serve requests on QUEUE: --echo answers each with its own body; --exec\n"
"runs CMD with /bin/sh for each request, the request on its standard\n"
"input, and answers with its standard output (a failing CMD answers\n"
"nothing: the request is rejected). Stops after COUNT requests, or after\n"
"--timeout SECONDS without one (default: runs until interrupted).\n");
}

static const char *reply_cmd;

/* Run reply_cmd with the request on stdin; its stdout is the reply. */
static ssize_t exec_handler(void *ctx, const struct shmbus_msg *req,
			    void *reply, size_t cap)
{
	char tmpl[] = "/tmp/shmbus-req-XXXXXX";
	int in = mkstemp(tmpl), out[2], st;
	ssize_t n = 0, r;
	pid_t kid;

	(void)ctx;
	if (in < 0)
		return -errno;
	unlink(tmpl);
	if (write(in, req->data, req->len) != (ssize_t)req->len ||
	    lseek(in, 0, SEEK_SET) < 0 || pipe(out) < 0) {
		close(in);
		return -EIO;
	}
	kid = fork();
	if (kid == 0) {
		dup2(in, 0);
		dup2(out[1], 1);
		close(in);
		close(out[0]);
		close(out[1]);
		execl("/bin/sh", "sh", "-c", reply_cmd, (char *)NULL);
		_exit(127);
	}
	close(in);
	close(out[1]);
	while (kid > 0 && (size_t)n < cap &&
	       (r = read(out[0], (char *)reply + n, cap - n)) != 0) {
		if (r < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		n += r;
	}
	close(out[0]);
	if (kid < 0 || waitpid(kid, &st, 0) < 0 || !WIFEXITED(st) ||
	    WEXITSTATUS(st) != 0)
		return -ECANCELED;
	if (n && ((char *)reply)[n - 1] == '\n')
		n--;
	return n;
}

static ssize_t echo_handler(void *ctx, const struct shmbus_msg *req,
			    void *reply, size_t cap)
{
	size_t n = MIN_U(req->len, cap);

	(void)ctx;
	memcpy(reply, req->data, n);
	return (ssize_t)n;
}

static int cmd_reply(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "echo", no_argument, NULL, 'e' },
		{ "exec", required_argument, NULL, 'x' },
		{ "count", required_argument, NULL, 'n' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct sigaction sa = { .sa_handler = on_signal };
	int64_t timeout_ns = -1;
	unsigned long count = 0;
	struct shmbus_consumer *c;
	struct shmbus *bus;
	bool echo = false;
	int opt, n;

	optind = 0;	/* full getopt reset (glibc) */
	while ((opt = getopt_long(argc, argv, "n:t:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'e': echo = true; break;
		case 'x': reply_cmd = optarg; break;
		case 'n': count = parse_num("count", optarg, UINT32_MAX); break;
		case 't': timeout_ns = parse_ns(optarg); break;
		case 'h': usage_reply(stdout); return 0;
		default: usage_reply(stderr); return 2;
		}
	}
	if (argc - optind != 1 || echo == !!reply_cmd) {
		usage_reply(stderr);
		return 2;
	}
	bus = open_bus(SHMBUS_OPEN_NOCREATE);
	c = attach_or_die(bus, argv[optind], false);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	n = shmbus_consumer__serve(c, echo ? echo_handler : exec_handler, NULL,
				   (unsigned)count, timeout_ns);
	shmbus_consumer__free(c);
	shmbus__close(bus);
	if (n < 0 && n != -EINTR)
		die("serving '%s': %s", argv[optind], strerror(-n));
	fprintf(stderr, "answered %d request%s on %s\n", n < 0 ? 0 : n,
		n == 1 ? "" : "s", argv[optind]);
	return 0;
}

/* ---- dlq ----------------------------------------------------------- */

static void usage_dlq(FILE *f)
{
	fprintf(f,
"usage: shmbus dlq list\n"
"       shmbus dlq peek DLQ [-n COUNT]\n"
"       shmbus dlq redrive DLQ [--to QUEUE] [-n COUNT]\n"
"\n"
"list:    every queue that has a dead-letter queue, and that DLQ's depth.\n"
"peek:    show up to COUNT (default 10) dead-lettered messages: reason,\n"
"         source queue, deliveries there, body. They stay in the DLQ\n"
"         (received under a lease, then put back at its end).\n"
"redrive: move COUNT (default: all) messages back to the queue each came\n"
"         from, or to --to QUEUE.\n");
}

static const char *dl_reason_name(uint32_t r)
{
	switch (r) {
	case SHMBUS_DL_MAX_DELIVERIES: return "max-deliveries";
	case SHMBUS_DL_EXPIRED: return "expired";
	case SHMBUS_DL_REJECTED: return "rejected";
	case SHMBUS_DL_OVERFLOW: return "overflow";
	default: return "-";
	}
}

static int cmd_dlq(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "count", required_argument, NULL, 'n' },
		{ "to", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct shmbus_queue_info *qi;
	const char *sub, *to = NULL;
	unsigned long count = 0;
	struct shmbus *bus;
	int opt, n;

	if ((opt = subcommand(&argc, &argv, usage_dlq, &sub)) >= 0)
		return opt;
	while ((opt = getopt_long(argc, argv, "n:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'n': count = parse_num("count", optarg, UINT32_MAX); break;
		case 'T': to = optarg; break;
		case 'h': usage_dlq(stdout); return 0;
		default: usage_dlq(stderr); return 2;
		}
	}
	bus = open_bus(SHMBUS_OPEN_NOCREATE);
	qi = list_queues(bus, &n);
	if (!strcmp(sub, "list")) {
		if (optind != argc)
			die("list takes no arguments");
		printf("%-24s %-24s %10s %12s\n", "QUEUE", "DEAD_LETTER_QUEUE",
		       "DLQ_DEPTH", "DEADLETTERED");
		for (int i = 0; i < n; i++) {
			uint64_t depth = 0;

			if (!qi[i].dead_letter_queue[0])
				continue;
			for (int k = 0; k < n; k++)
				if (!strcmp(qi[k].name, qi[i].dead_letter_queue))
					depth = qi[k].depth;
			printf("%-24s %-24s %10llu %12llu\n", qi[i].name,
			       qi[i].dead_letter_queue,
			       (unsigned long long)depth,
			       (unsigned long long)
			       qi[i].stat[SHMBUS_STAT_DEADLETTERED]);
		}
	} else if (!strcmp(sub, "peek")) {
		struct shmbus_consumer *c;
		struct shmbus_msg *m;
		int got = 0;

		if (optind + 1 != argc)
			die("peek needs exactly one DLQ");
		if (!count)
			count = 10;
		if (count > 256)
			die("peek shows at most 256 messages");
		c = attach_or_die(bus, argv[optind], false);
		m = calloc(count, sizeof(*m));
		if (!m)
			die("out of memory");
		while ((unsigned long)got < count &&
		       !shmbus_consumer__try_receive(c, &m[got]))
			got++;
		printf("%-14s %-20s %5s  %s\n", "REASON", "SOURCE", "DELIV",
		       "BODY");
		for (int i = 0; i < got; i++) {
			const char *src = "-";

			for (int k = 0; k < n; k++)
				if (m[i].dl_src && qi[k].id == m[i].dl_src - 1)
					src = qi[k].name;
			printf("%-14s %-20s %5u  %.*s\n",
			       dl_reason_name(m[i].dl_reason), src,
			       m[i].dl_count, (int)MIN_U(m[i].len, 200),
			       (const char *)m[i].data);
		}
		/* back, in the order they were */
		for (int i = 0; i < got; i++)
			shmbus_consumer__nack(c, &m[i], 0);
		free(m);
		shmbus_consumer__free(c);
		fprintf(stderr, "%d message%s in '%s' shown\n", got,
			got == 1 ? "" : "s", argv[optind]);
	} else if (!strcmp(sub, "redrive")) {
		int moved;

		if (optind + 1 != argc)
			die("redrive needs exactly one DLQ");
		moved = shmbus__redrive(bus, argv[optind], to, count);
		if (moved == -ENOENT)
			die("redrive from '%s': no such queue, or a message's "
			    "source queue is gone", argv[optind]);
		if (moved == -EDESTADDRREQ)
			die("redrive from '%s': a message has no source queue; "
			    "use --to QUEUE", argv[optind]);
		if (moved < 0)
			die("redrive from '%s': %s", argv[optind],
			    strerror(-moved));
		printf("redrove %d message%s from %s\n", moved,
		       moved == 1 ? "" : "s", argv[optind]);
	} else {
		die("unknown dlq command '%s' (list, peek, redrive)", sub);
	}
	free(qi);
	shmbus__close(bus);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "bus", required_argument, NULL, 'b' },
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
	};
	int opt;

	shmbus_set_print(capture_print);
	/* options before the command only: stop at the first non-option */
	while ((opt = getopt_long(argc, argv, "+b:s:Vh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'b': opt_bus = optarg; break;
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
			cmd_name = cmds[i].name;
			return cmds[i].fn(argc - optind, argv + optind);
		}
	}
	fprintf(stderr, "shmbus: unknown command '%s' (see shmbus --help)\n",
		argv[optind]);
	return 2;
}
