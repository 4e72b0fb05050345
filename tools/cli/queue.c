// SPDX-License-Identifier: MIT
/*
 * queue.c - `shmbus queue declare|delete|list`: creating, deleting and
 * listing the queues of a bus (the deletion serves topics too).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmbus.h"
#include "cli.h"

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
"                               [--priorities N] [--checksum]\n"
"                               [--durable [--sync always|batch|never]\n"
"                                          [--sync-interval SEC]]\n"
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
"  --checksum           each message carries a CRC32C, verified at receive;\n"
"                       a mismatch goes to the DLQ (reason checksum)\n"
"  --durable            persistent: the daemon journals each message on disk\n"
"                       before it enters the queue, and the queue and its\n"
"                       unsettled messages survive a restart or a reboot\n"
"                       (needs a daemon with a state directory; its DLQ\n"
"                       must be durable; not with --priorities above 1 or\n"
"                       --overflow drop-oldest)\n"
"  --sync POLICY        when a publish is confirmed: always (on disk,\n"
"                       fdatasync; default), batch (on disk, at most one\n"
"                       sync per --sync-interval), never (written, not\n"
"                       synced: survives the daemon, not a power cut)\n"
"  --sync-interval SEC  batch: the longest wait for a sync, 0.0001..1\n"
"                       (default 0.002)\n"
"delete:  delete NAME; its messages are dropped, its handles get EIDRM.\n"
"list:    name, depth, capacity, fits (how many of its largest messages\n"
"         the bus's pools hold at once, grown to their most, shared by all\n"
"         its queues), message size, consumers, producers and durability\n"
"         of every queue (topics and subscriptions: shmbus topic list).\n");
}

static uint32_t parse_backoff_mult(const char *s)
{
	double x = parse_seconds(s);

	if (x < 1 || x > 100)
		usage_die("--backoff-mult must be 1..100");
	return (uint32_t)(x * 1000 + 0.5);
}

static int parse_overflow(const char *s)
{
	if (!strcmp(s, "block"))
		return SHMBUS_OVERFLOW_BLOCK;
	if (!strcmp(s, "reject"))
		return SHMBUS_OVERFLOW_REJECT;
	if (!strcmp(s, "drop-oldest"))
		return SHMBUS_OVERFLOW_DROP_OLDEST;
	usage_die("--overflow: block, reject or drop-oldest");
}

/* --sync and --sync-interval say how a persistent queue syncs: without
 * --durable they would be refused by the daemon as invalid settings; say
 * which option is missing instead. The options a persistent queue cannot
 * have are usage errors too; only the daemon can tell about its --dlq. */
static void check_durable_options(const struct shmbus_queue_opts *qo,
				  bool sync_given)
{
	if (!(qo->flags & SHMBUS_QUEUE_DURABLE) &&
	    (sync_given || qo->sync_interval_ns))
		usage_die("--sync and --sync-interval need --durable");
	if (qo->sync_interval_ns && qo->sync != SHMBUS_SYNC_BATCH)
		usage_die("--sync-interval is for --sync batch");
	if ((qo->flags & SHMBUS_QUEUE_DURABLE) && qo->priorities > 1)
		usage_die("--durable takes no --priorities above 1");
	if ((qo->flags & SHMBUS_QUEUE_DURABLE) &&
	    qo->overflow == SHMBUS_OVERFLOW_DROP_OLDEST)
		usage_die("--durable takes --overflow block or reject, not "
			  "drop-oldest");
}

/* The options of declare into @qo. Returns an exit code when there is
 * nothing more to do, else -1. */
static int queue_options(int argc, char **argv, struct shmbus_queue_opts *qo)
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
		{ "checksum", no_argument, NULL, 'C' },
		{ "durable", no_argument, NULL, 'U' },
		{ "sync", required_argument, NULL, 'S' },
		{ "sync-interval", required_argument, NULL, 'I' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool sync_given = false;
	int opt;

	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'l':
			/* the library's 0 means "the default": a 0 typed
			 * here is a mistake, not a wish for 1024 */
			qo->max_len = parse_num("--max-len", optarg, 1u << 24);
			if (!qo->max_len)
				usage_die("--max-len: 1 to %u (default 1024)",
					  1u << 24);
			break;
		case 's': qo->msg_size = parse_num("--msg-size", optarg, 1u << 24); break;
		case 'c': qo->max_consumers = parse_num("--max-consumers", optarg, 128); break;
		case 'L': qo->lease_ns = parse_ns(optarg); break;
		case 'T': qo->ttl_ns = parse_ns(optarg); break;
		case 'm': qo->max_deliveries = parse_num("--max-deliveries", optarg, UINT32_MAX); break;
		case 'b': qo->backoff_init_ns = parse_ns(optarg); break;
		case 'B': qo->backoff_max_ns = parse_ns(optarg); break;
		case 'M': qo->backoff_mult_milli = parse_backoff_mult(optarg); break;
		case 'd': qo->dead_letter_queue = optarg; break;
		case 'E': qo->flags |= SHMBUS_QUEUE_EXPIRE_TO_DLQ; break;
		case 'C': qo->flags |= SHMBUS_QUEUE_CHECKSUM; break;
		case 'W': qo->dedup_window_ns = parse_ns(optarg); break;
		case 'P': qo->priorities = parse_num("--priorities", optarg, 4); break;
		case 'o': qo->overflow = parse_overflow(optarg); break;
		case 'U': qo->flags |= SHMBUS_QUEUE_DURABLE; break;
		case 'S': qo->sync = parse_sync(optarg); sync_given = true; break;
		case 'I': qo->sync_interval_ns = parse_ns(optarg); break;
		case 'h': usage_queue(stdout); return 0;
		default: usage_queue(stderr); return 2;
		}
	}
	check_durable_options(qo, sync_given);
	return -1;
}

static void queue_list(void)
{
	struct shmbus *bus = open_bus(SHMBUS_OPEN_RDONLY | SHMBUS_OPEN_NOCREATE |
				 SHMBUS_OPEN_NOSTART);
	struct shmbus_queue_info *qi;
	int n;

	qi = list_queues(bus, &n);
	printf("%-24s %10s %10s %10s %10s %9s %9s %7s\n", "QUEUE", "DEPTH",
	       "CAPACITY", "FITS", "MSG_SIZE", "CONSUMERS", "PRODUCERS",
	       "DURABLE");
	for (int i = 0; i < n; i++) {
		SHMBUS_OPTS(shmbus_queue_gauges, g);

		if (qi[i].kind != SHMBUS_QUEUE)
			continue;
		(void)shmbus__queue_gauges(bus, qi[i].name, &g);
		printf("%-24s %10llu %10u %10llu %10u %9u %9u %7s\n",
		       esc(qi[i].name), (unsigned long long)qi[i].depth,
		       qi[i].capacity, (unsigned long long)g.fit,
		       qi[i].msg_size, qi[i].consumers, qi[i].producers,
		       qi[i].flags & SHMBUS_QUEUE_DURABLE ? "yes" : "no");
	}
	free(qi);
	shmbus__close(bus);
}

/* A queue the bus cannot fill with its largest messages: say so, with
 * what the bus holds (stderr: stdout stays "created NAME"). */
static void capacity_note(struct shmbus *bus, const char *name)
{
	SHMBUS_OPTS(shmbus_queue_gauges, g);
	struct shmbus_queue_info qi;

	if (shmbus__queue_info(bus, name, &qi) ||
	    shmbus__queue_gauges(bus, name, &g) || qi.capacity <= g.fit)
		return;
	fprintf(stderr, "shmbus: queue: note: '%s' takes %u messages, but "
		"bus '%s' holds %llu of up to %u bytes at once, its pools grown "
		"to their most (all its queues together; shmbus bus info shows "
		"its pools): past that, a "
		"publish waits for memory, not for room (a bus made with "
		"shmbus bus create --pools and --pool-growth holds what you "
		"give it)\n",
		esc(name),
		qi.capacity, esc(shmbus__name(bus)),
		(unsigned long long)g.fit, qi.msg_size);
}

static void queue_declare(const char *name, const struct shmbus_queue_opts *qo)
{
	struct shmbus *bus;
	int err;

	check_name("queue", name);
	if (qo->dead_letter_queue)
		check_name("dead-letter queue", qo->dead_letter_queue);
	bus = open_bus(0);
	err = shmbus__queue_declare(bus, name, qo);
	if (err == -EEXIST) {
		char why[128];

		/* the daemon names each setting that differs */
		snprintf(why, sizeof(why), "queue '%s' exists with other "
			 "settings", name);
		die_reason(why);
	}
	if (err == -ENOENT)
		die("dead-letter queue '%s' does not exist (declare it "
		    "first)", qo->dead_letter_queue);
	if (err == -EOPNOTSUPP && (qo->flags & SHMBUS_QUEUE_DURABLE))
		die("cannot declare durable queue '%s' (start the daemon with "
		    "a usable --state-dir)", name);
	if (err == -EINVAL && (qo->flags & SHMBUS_QUEUE_DURABLE))
		die("cannot declare '%s': invalid settings for a durable "
		    "queue (--priorities 1, --overflow block or reject, a "
		    "durable --dlq)", name);
	if (err == -EINVAL)
		die("cannot declare '%s': invalid settings (lease >= "
		    "1 ms, backoff-max >= backoff, --expire-to-dlq "
		    "needs --dlq, a queue is not its own DLQ)", name);
	if (err < 0)
		die("cannot declare '%s': %s", name, strerror(-err));
	printf("%s %s\n", err ? "created" : "exists", name);
	capacity_note(bus, name);
	shmbus__close(bus);
}

void delete_queue(const char *kind, const char *name)
{
	struct shmbus *bus;
	int err;

	check_name(kind, name);
	bus = open_bus(SHMBUS_OPEN_NOCREATE);
	err = shmbus__queue_delete(bus, name);
	if (err == -ENOENT)
		die("no %s '%s'", kind, name);
	if (err < 0)
		die("cannot delete '%s': %s", name, strerror(-err));
	printf("deleted %s\n", name);
	shmbus__close(bus);
}

int cmd_queue(int argc, char **argv)
{
	static const char *const subs[] = { "declare", "delete", "list", NULL };
	SHMBUS_OPTS(shmbus_queue_opts, qo);
	const char *sub;
	int ret;

	if ((ret = subcommand(&argc, &argv, usage_queue, subs, &sub)) >= 0)
		return ret;
	if ((ret = queue_options(argc, argv, &qo)) >= 0)
		return ret;
	if (!strcmp(sub, "list")) {
		if (optind != argc)
			usage_die("list takes no arguments");
		queue_list();
		return 0;
	}
	if (optind + 1 != argc)
		usage_die("%s needs exactly one queue NAME", sub);
	if (!strcmp(sub, "declare"))
		queue_declare(argv[optind], &qo);
	else if (!strcmp(sub, "delete"))
		delete_queue("queue", argv[optind]);
	else
		usage_die("unknown queue command '%s' (declare, delete, list)", sub);
	return 0;
}
