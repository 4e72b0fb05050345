// SPDX-License-Identifier: MIT
/*
 * dlq.c - `shmbus dlq list|peek|redrive`: the dead-letter queues of a
 * bus: which queue sends to which and how deep each is, a look at the
 * dead-lettered messages (put back as they were), and moving them back.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmbus.h"
#include "cli.h"

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
	case SHMBUS_DL_CHECKSUM: return "checksum";
	default: return "-";
	}
}

/* -n and --to. Returns an exit code when there is nothing more to do,
 * else -1. */
static int dlq_options(int argc, char **argv, unsigned long *count,
		       const char **to)
{
	static const struct option longopts[] = {
		{ "count", required_argument, NULL, 'n' },
		{ "to", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	while ((opt = getopt_long(argc, argv, "n:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'n': *count = parse_num("count", optarg, UINT32_MAX); break;
		case 'T': *to = optarg; break;
		case 'h': usage_dlq(stdout); return 0;
		default: usage_dlq(stderr); return 2;
		}
	}
	return -1;
}

static void dlq_list(const struct shmbus_queue_info *qi, int n)
{
	printf("%-24s %-24s %10s %12s\n", "QUEUE", "DEAD_LETTER_QUEUE",
	       "DLQ_DEPTH", "DEADLETTERED");
	for (int i = 0; i < n; i++) {
		uint64_t depth = 0;

		if (!qi[i].dead_letter_queue[0])
			continue;
		for (int k = 0; k < n; k++)
			if (!strcmp(qi[k].name, qi[i].dead_letter_queue))
				depth = qi[k].depth;
		printf("%-24s %-24s %10llu %12llu\n", esc(qi[i].name),
		       esc(qi[i].dead_letter_queue),
		       (unsigned long long)depth,
		       (unsigned long long)
		       qi[i].stat[SHMBUS_STAT_DEADLETTERED]);
	}
}

/* One line per message of @m: reason, source queue, deliveries, the
 * first 200 bytes of the body; names and body escaped (out.c). */
static void print_dead(const struct shmbus_msg *m, int got,
		       const struct shmbus_queue_info *qi, int n)
{
	printf("%-14s %-20s %5s  %s\n", "REASON", "SOURCE", "DELIV",
	       "BODY");
	for (int i = 0; i < got; i++) {
		char body[ESC_LEN(200)];
		const char *src = "-";

		for (int k = 0; k < n; k++)
			if (m[i].dl_src && qi[k].id == m[i].dl_src - 1)
				src = esc(qi[k].name);
		printf("%-14s %-20s %5u  %s\n",
		       dl_reason_name(m[i].dl_reason), src, m[i].dl_count,
		       esc_text(body, sizeof(body), m[i].data,
				MIN_U(m[i].len, 200)));
	}
}

static void dlq_peek(struct shmbus *bus, const char *dlq, unsigned long count,
		     const struct shmbus_queue_info *qi, int n)
{
	struct shmbus_consumer *c;
	struct shmbus_msg *m;
	int got = 0;

	if (!count)
		count = 10;
	if (count > 256)
		usage_die("peek shows at most 256 messages");
	c = attach_or_die(bus, dlq, false);
	m = calloc(count, sizeof(*m));
	if (!m)
		die("out of memory");
	while ((unsigned long)got < count &&
	       !shmbus_consumer__try_receive(c, &m[got]))
		got++;
	print_dead(m, got, qi, n);
	/* back, in the order they were */
	for (int i = 0; i < got; i++)
		shmbus_consumer__nack(c, &m[i], 0);
	free(m);
	shmbus_consumer__free(c);
	fprintf(stderr, "%d message%s in '%s' shown\n", got,
		got == 1 ? "" : "s", dlq);
}

static void dlq_redrive(struct shmbus *bus, const char *dlq, const char *to,
			unsigned long count)
{
	int moved = shmbus__redrive(bus, dlq, to, count);

	if (moved == -ENOENT)
		die("redrive from '%s': no such queue, or a message's "
		    "source queue is gone", dlq);
	if (moved == -EDESTADDRREQ)
		die("redrive from '%s': a message has no source queue; "
		    "use --to QUEUE", dlq);
	if (moved < 0)
		die("redrive from '%s': %s", dlq, strerror(-moved));
	printf("redrove %d message%s from %s\n", moved,
	       moved == 1 ? "" : "s", dlq);
}

int cmd_dlq(int argc, char **argv)
{
	static const char *const subs[] = { "list", "peek", "redrive", NULL };
	struct shmbus_queue_info *qi;
	const char *sub, *to = NULL;
	unsigned long count = 0;
	struct shmbus *bus;
	int ret, n;

	if ((ret = subcommand(&argc, &argv, usage_dlq, subs, &sub)) >= 0)
		return ret;
	if ((ret = dlq_options(argc, argv, &count, &to)) >= 0)
		return ret;
	/* no daemon, no bus, no dead letters: none is started */
	bus = open_bus(SHMBUS_OPEN_NOCREATE | SHMBUS_OPEN_NOSTART);
	qi = list_queues(bus, &n);
	if (!strcmp(sub, "list")) {
		if (optind != argc)
			usage_die("list takes no arguments");
		dlq_list(qi, n);
	} else if (!strcmp(sub, "peek")) {
		if (optind + 1 != argc)
			usage_die("peek needs exactly one DLQ");
		check_name("queue", argv[optind]);
		dlq_peek(bus, argv[optind], count, qi, n);
	} else if (!strcmp(sub, "redrive")) {
		if (optind + 1 != argc)
			usage_die("redrive needs exactly one DLQ");
		check_name("queue", argv[optind]);
		if (to)
			check_name("queue", to);
		dlq_redrive(bus, argv[optind], to, count);
	} else {
		usage_die("unknown dlq command '%s' (list, peek, redrive)", sub);
	}
	free(qi);
	shmbus__close(bus);
	return 0;
}
