// SPDX-License-Identifier: MIT
/*
 * topic.c - `shmbus topic declare|delete|unsubscribe|list`: the pub/sub
 * topics of a bus and their (durable) subscriptions. Publishing and
 * subscribing are pub and sub (pubsub.c).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmbus.h"
#include "cli.h"

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

/* The options of declare into @to. Returns an exit code when there is
 * nothing more to do, else -1. */
static int topic_options(int argc, char **argv, struct shmbus_topic_opts *to)
{
	static const struct option longopts[] = {
		{ "msg-size", required_argument, NULL, 's' },
		{ "history", required_argument, NULL, 'H' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 's': to->msg_size = parse_num("--msg-size", optarg, 1u << 24); break;
		case 'H': to->history = parse_num("--history", optarg, 1u << 24); break;
		case 'h': usage_topic(stdout); return 0;
		default: usage_topic(stderr); return 2;
		}
	}
	return -1;
}

static void topic_list(void)
{
	struct shmbus *bus = open_bus(SHMBUS_OPEN_RDONLY | SHMBUS_OPEN_NOCREATE |
				 SHMBUS_OPEN_NOSTART);
	struct shmbus_queue_info *qi;
	int n;

	qi = list_queues(bus, &n);
	printf("%-32s %-12s %9s %7s %9s %9s %4s\n", "NAME", "KIND",
	       "PUBLISHED", "DEPTH", "DELIVERED", "DROPPED", "CONS");
	for (int i = 0; i < n; i++) {
		if (qi[i].kind == SHMBUS_QUEUE)
			continue;
		printf("%-32s %-12s %9llu %7llu %9llu %9llu %4u\n",
		       esc(qi[i].name),
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
}

static void topic_unsubscribe(const char *pattern, const char *group)
{
	struct shmbus *bus;
	int err;

	check_name("group", group);
	bus = open_bus(SHMBUS_OPEN_NOCREATE);
	err = shmbus__unsubscribe(bus, pattern, group);
	if (err == -ENOENT)
		die("no subscription '%s#%s'", pattern, group);
	if (err)
		die("unsubscribe: %s", strerror(-err));
	printf("deleted %s#%s\n", pattern, group);
	shmbus__close(bus);
}

static void topic_declare(const char *name, const struct shmbus_topic_opts *to)
{
	struct shmbus *bus;
	int err;

	check_name("topic", name);
	bus = open_bus(0);
	err = shmbus__topic_declare(bus, name, to);
	if (err == -EEXIST) {
		char why[128];

		snprintf(why, sizeof(why), "'%s' exists as a queue, or with "
			 "other settings", name);
		die_reason(why);
	}
	if (err < 0)
		die("cannot declare topic '%s': %s", name, strerror(-err));
	printf("%s %s\n", err ? "created" : "exists", name);
	shmbus__close(bus);
}

int cmd_topic(int argc, char **argv)
{
	static const char *const subs[] = { "declare", "delete", "unsubscribe", "list", NULL };
	SHMBUS_OPTS(shmbus_topic_opts, to);
	const char *sub;
	int ret;

	if ((ret = subcommand(&argc, &argv, usage_topic, subs, &sub)) >= 0)
		return ret;
	if ((ret = topic_options(argc, argv, &to)) >= 0)
		return ret;
	if (!strcmp(sub, "list")) {
		topic_list();
		return 0;
	}
	if (!strcmp(sub, "unsubscribe")) {
		if (optind + 2 != argc)
			usage_die("unsubscribe needs PATTERN and GROUP");
		topic_unsubscribe(argv[optind], argv[optind + 1]);
		return 0;
	}
	if (optind + 1 != argc)
		usage_die("%s needs exactly one topic NAME", sub);
	if (!strcmp(sub, "declare"))
		topic_declare(argv[optind], &to);
	else if (!strcmp(sub, "delete"))
		delete_queue("topic", argv[optind]);
	else
		usage_die("unknown topic command '%s' (declare, delete, unsubscribe, "
		    "list)", sub);
	return 0;
}
