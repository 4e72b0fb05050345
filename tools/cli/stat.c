// SPDX-License-Identifier: MIT
/*
 * stat.c - `shmbus stat`: the depth and counters of every queue, topic
 * and subscription, and the state of the message pools, read from the
 * bus's shared memory, as a table or as JSON. Names are shown escaped
 * (out.c): any member of the bus can write them.
 */
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmbus.h"
#include "cli.h"

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

/* --format into *@json. Returns an exit code when there is nothing more
 * to do, else -1. */
static int stat_options(int argc, char **argv, bool *json)
{
	static const struct option longopts[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	optind = 0;	/* full getopt reset (glibc) */
	while ((opt = getopt_long(argc, argv, "f:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'f':
			if (!strcmp(optarg, "json"))
				*json = true;
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
	return -1;
}

/* One queue as a JSON object: its settings, depth and every counter. */
static void json_queue(const struct shmbus_queue_info *q)
{
	fputs("{\"name\":", stdout);
	json_str(stdout, q->name);
	printf(",\"kind\":\"%s\",\"id\":%u,\"depth\":%llu,"
	       "\"in_flight\":%llu,"
	       "\"capacity\":%u,\"msg_size\":%u,\"consumers\":%u,"
	       "\"producers\":%u,\"lease_ns\":%lld,"
	       "\"ttl_ns\":%lld,\"max_deliveries\":%u,"
	       "\"dead_letter_queue\":",
	       q->kind == SHMBUS_TOPIC ? "topic" :
	       q->kind == SHMBUS_SUBSCRIPTION ? "subscription" : "queue",
	       q->id,
	       (unsigned long long)q->depth,
	       (unsigned long long)q->in_flight,
	       q->capacity, q->msg_size, q->consumers,
	       q->producers, (long long)q->lease_ns,
	       (long long)q->ttl_ns, q->max_deliveries);
	json_str(stdout, q->dead_letter_queue);
	printf(",\"checksum\":%s,\"damaged\":%s",
	       q->flags & SHMBUS_QUEUE_CHECKSUM ? "true" : "false",
	       q->flags & SHMBUS_QUEUE_DAMAGED ? "true" : "false");
	for (unsigned k = 0; k < sizeof(stat_names) / sizeof(*stat_names); k++)
		printf(",\"%s\":%llu", stat_names[k],
		       (unsigned long long)q->stat[k]);
	printf("}");
}

/* Who owns the bus: user and group names ("" when unknown). */
static void owner_names(const struct shmbus_info *bi, const char **user,
			const char **group)
{
	struct passwd *pw = getpwuid(bi->owner_uid);
	struct group *gr = getgrgid(bi->owner_gid);

	*user = pw ? pw->pw_name : "";
	*group = gr ? gr->gr_name : "";
}

static void stat_json(struct shmbus *bus, const struct shmbus_queue_info *qi,
		      int n)
{
	struct shmbus_info bi;
	const char *user, *group;

	shmbus__info(bus, &bi);
	owner_names(&bi, &user, &group);
	fputs("{\"bus\":", stdout);
	json_str(stdout, shmbus__name(bus));
	printf(",\"bus_id\":%u,\"owner\":", shmbus__id(bus));
	json_str(stdout, user);
	printf(",\"owner_uid\":%u,\"group\":", bi.owner_uid);
	json_str(stdout, group);
	printf(",\"owner_gid\":%u,\"mode\":\"%04o\",\"queues\":[",
	       bi.owner_gid, bi.mode);
	for (int i = 0; i < n; i++) {
		printf("%s", i ? "," : "");
		json_queue(&qi[i]);
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
}

static void stat_table(struct shmbus *bus, const struct shmbus_queue_info *qi,
		       int n)
{
	struct shmbus_info bi;
	const char *user, *group;

	shmbus__info(bus, &bi);
	owner_names(&bi, &user, &group);
	printf("bus %s (id %u) owner %s (uid %u) group %s (gid %u) mode %04o\n",
	       esc(shmbus__name(bus)), shmbus__id(bus), *user ? esc(user) : "?",
	       bi.owner_uid, *group ? esc(group) : "?", bi.owner_gid, bi.mode);
	printf("%-26s %6s %5s %9s %9s %9s %6s %7s %7s %7s %7s %4s %4s\n",
	       "QUEUE", "DEPTH", "INFLT", "PUBLISHED", "DELIVERED",
	       "ACKED", "NACKED", "REDELIV", "DEADLTR", "EXPIRED",
	       "DROPPED", "CONS", "PROD");
	for (int i = 0; i < n; i++) {
		const uint64_t *st = qi[i].stat;

		printf("%-26s %6llu %5llu %9llu %9llu %9llu %6llu %7llu "
		       "%7llu %7llu %7llu %4u %4u\n", esc(qi[i].name),
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
	for (int i = 0; i < n; i++)
		if (qi[i].flags & SHMBUS_QUEUE_DAMAGED)
			printf("%s: DAMAGED (quarantined; delete it and declare "
			       "it again)\n", esc(qi[i].name));
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

int cmd_stat(int argc, char **argv)
{
	struct shmbus_queue_info *qi;
	struct shmbus *bus;
	bool json = false;
	int ret, n;

	if ((ret = stat_options(argc, argv, &json)) >= 0)
		return ret;
	bus = open_bus(SHMBUS_OPEN_RDONLY | SHMBUS_OPEN_NOCREATE);
	qi = list_queues(bus, &n);
	if (json)
		stat_json(bus, qi, n);
	else
		stat_table(bus, qi, n);
	free(qi);
	shmbus__close(bus);
	return 0;
}
