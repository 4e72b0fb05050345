// SPDX-License-Identifier: MIT
/*
 * stat.c - `shmbus stat`: the depth and counters of every queue, topic
 * and subscription, the journals of durable queues, the bus's journal
 * syncs and last recovery, and the state of the message pools, read from
 * the bus's shared memory, as a table or as JSON. Names are shown escaped
 * (out.c): any member of the bus can write them.
 */
#include <getopt.h>
#include <grp.h>
#include <math.h>
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
"(needs read permission on the bus, nothing else). For durable queues,\n"
"their journals: sync policy, bytes and segment files on disk, messages\n"
"not yet settled, records written and syncs since the daemon opened it,\n"
"messages it could not journal, records replayed and skipped as corrupt\n"
"when it opened it; for the bus, its journal syncs (count, mean, p50 and\n"
"p99 from a log2 histogram: good to a factor below 2) and its last\n"
"recovery from the journals. The bridges of the bus that run (shmbus\n"
"bridge), a row per route: messages forwarded, confirmed, given back,\n"
"received again, reconnects, in flight, the lag (out: waiting in the local\n"
"queue; in: ready in the broker queue), whether the broker blocks it now\n"
"(and how many times it did).\n");
}

static const char *sync_name(uint32_t sync)
{
	switch (sync) {
	case SHMBUS_SYNC_ALWAYS: return "always";
	case SHMBUS_SYNC_BATCH: return "batch";
	case SHMBUS_SYNC_NEVER: return "never";
	}
	return "?";	/* the arena is any member's to scribble on */
}

/* The @q quantile (0..1) of the bus's sync histogram, in microseconds,
 * interpolated inside its log2 bucket (bucket i is [2^i, 2^(i+1)) us,
 * bucket 0 from 0); NAN when there were no syncs. The last bucket is
 * open-ended: a quantile there reads as its lower bound's double. */
static double sync_quantile_us(const struct shmbus_bus_journal_info *bj,
			       double q)
{
	double total = 0, cum = 0, target;

	/* from the buckets, not bj->syncs: a snapshot may catch the daemon
	 * between the two */
	for (int i = 0; i < SHMBUS_SYNC_HIST_BUCKETS; i++)
		total += (double)bj->sync_hist[i];
	if (!total)
		return NAN;
	target = q * total;
	for (int i = 0; i < SHMBUS_SYNC_HIST_BUCKETS; i++) {
		double n = (double)bj->sync_hist[i], lo, hi;

		if (!n || cum + n < target) {
			cum += n;
			continue;
		}
		lo = i ? ldexp(1, i) : 0;
		hi = ldexp(1, i + 1);
		return lo + (hi - lo) * (target - cum) / n;
	}
	return ldexp(1, SHMBUS_SYNC_HIST_BUCKETS);	/* not reached */
}

/* Mean sync time in microseconds; 0 without syncs. */
static double sync_mean_us(const struct shmbus_bus_journal_info *bj)
{
	return bj->syncs ? (double)bj->sync_ns / (double)bj->syncs / 1e3 : 0;
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
				usage_die("unknown format '%s' (table, json)", optarg);
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

/* The journal of durable queue @name as JSON members (",\"journal\":{..}"),
 * or nothing if it has none (any more). */
static void json_journal(struct shmbus *bus, const char *name)
{
	SHMBUS_OPTS(shmbus_journal_info, ji);

	if (shmbus__queue_journal(bus, name, &ji))
		return;
	printf(",\"journal\":{\"sync\":\"%s\",\"sync_interval_ns\":%lld,"
	       "\"bytes\":%llu,\"segments\":%u,\"live\":%llu,"
	       "\"written\":%llu,\"syncs\":%llu,\"failed\":%llu,"
	       "\"replayed\":%llu,\"corrupt\":%llu}",
	       sync_name(ji.sync), (long long)ji.sync_interval_ns,
	       (unsigned long long)ji.bytes, ji.segments,
	       (unsigned long long)ji.live, (unsigned long long)ji.written,
	       (unsigned long long)ji.syncs, (unsigned long long)ji.failed,
	       (unsigned long long)ji.replayed, (unsigned long long)ji.corrupt);
}

/* A quantile for JSON: a number, or null when there is none. */
static void json_us_as_ns(const char *key, double us)
{
	if (isnan(us))
		printf(",\"%s\":null", key);
	else
		printf(",\"%s\":%.0f", key, us * 1e3);
}

/* The bus's journal syncs and recovery as the member ",\"journal\":{..}". */
static void json_bus_journal(struct shmbus *bus)
{
	SHMBUS_OPTS(shmbus_bus_journal_info, bj);

	if (shmbus__bus_journal(bus, &bj))
		return;
	printf(",\"journal\":{\"syncs\":%llu,\"sync_ns\":%llu",
	       (unsigned long long)bj.syncs, (unsigned long long)bj.sync_ns);
	json_us_as_ns("sync_p50_ns", sync_quantile_us(&bj, 0.5));
	json_us_as_ns("sync_p99_ns", sync_quantile_us(&bj, 0.99));
	printf(",\"sync_hist_us\":[");
	for (int i = 0; i < SHMBUS_SYNC_HIST_BUCKETS; i++)
		printf("%s%llu", i ? "," : "",
		       (unsigned long long)bj.sync_hist[i]);
	printf("],\"recovery_ns\":%llu,\"recovered\":%llu}",
	       (unsigned long long)bj.recovery_ns,
	       (unsigned long long)bj.recovered);
}

/* One queue as a JSON object: its settings, depth and every counter; a
 * durable queue's journal. */
static void json_queue(struct shmbus *bus, const struct shmbus_queue_info *q)
{
	SHMBUS_OPTS(shmbus_queue_gauges, g);

	(void)shmbus__queue_gauges(bus, q->name, &g);
	fputs("{\"name\":", stdout);
	json_str(stdout, q->name);
	printf(",\"kind\":\"%s\",\"id\":%u,\"depth\":%llu,"
	       "\"in_flight\":%llu,\"delayed\":%llu,"
	       "\"blocked_producers\":%u,"
	       "\"capacity\":%u,\"fit\":%llu,\"fit_free\":%llu,"
	       "\"msg_size\":%u,\"consumers\":%u,"
	       "\"producers\":%u,\"lease_ns\":%lld,"
	       "\"ttl_ns\":%lld,\"max_deliveries\":%u,"
	       "\"dead_letter_queue\":",
	       q->kind == SHMBUS_TOPIC ? "topic" :
	       q->kind == SHMBUS_SUBSCRIPTION ? "subscription" : "queue",
	       q->id,
	       (unsigned long long)q->depth,
	       (unsigned long long)q->in_flight,
	       (unsigned long long)g.delayed, g.blocked_producers,
	       q->capacity, (unsigned long long)g.fit,
	       (unsigned long long)g.fit_free, q->msg_size, q->consumers,
	       q->producers, (long long)q->lease_ns,
	       (long long)q->ttl_ns, q->max_deliveries);
	json_str(stdout, q->dead_letter_queue);
	printf(",\"checksum\":%s,\"damaged\":%s,\"durable\":%s",
	       q->flags & SHMBUS_QUEUE_CHECKSUM ? "true" : "false",
	       q->flags & SHMBUS_QUEUE_DAMAGED ? "true" : "false",
	       q->flags & SHMBUS_QUEUE_DURABLE ? "true" : "false");
	if (q->flags & SHMBUS_QUEUE_DURABLE)
		json_journal(bus, q->name);
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

/* The running bridges of the bus, as the member ",\"bridges\":[..]". */
static void json_bridges(struct shmbus *bus)
{
	struct cli_bridge *b;
	int n = cli_bridges(shmbus__name(bus), &b);

	printf(",\"bridges\":[");
	for (int i = 0; i < n; i++) {
		printf("%s{\"pid\":%d,\"age_ms\":%lld,\"routes\":[", i ? "," : "",
		       b[i].pid, b[i].age_ms);
		for (unsigned k = 0; k < b[i].n; k++) {
			const struct cli_bridge_route *r = &b[i].routes[k];

			printf("%s{\"name\":", k ? "," : "");
			json_str(stdout, r->name);
			printf(",\"dir\":\"%s\",\"forwarded\":%llu,"
			       "\"confirmed\":%llu,\"nacked\":%llu,"
			       "\"redelivered\":%llu,\"reconnects\":%llu,"
			       "\"in_flight\":%llu,\"lag\":", r->out ? "out" : "in",
			       r->forwarded, r->confirmed, r->nacked,
			       r->redelivered, r->reconnects, r->inflight);
			if (r->lag < 0)
				printf("null");
			else
				printf("%lld", r->lag);
			printf(",\"blocked\":%s,\"blocks\":%llu,"
			       "\"extended\":%llu,\"rejected\":%llu}",
			       r->blocked ? "true" : "false", r->blocks,
			       r->extended, r->rejected);
		}
		printf("]}");
	}
	printf("]");
	free(b);
}

/* The running bridges of the bus, a row per route; nothing without any. */
static void table_bridges(struct shmbus *bus)
{
	struct cli_bridge *b;
	int n = cli_bridges(shmbus__name(bus), &b);

	if (n > 0)
		printf("\n%-8s %-20s %-3s %9s %9s %6s %7s %6s %5s %7s %6s "
		       "%s\n", "BRIDGE", "ROUTE", "DIR", "FORWARDED",
		       "CONFIRMED", "NACKED", "REDELIV", "RECONN", "INFLT",
		       "LAG", "REJECT", "BLOCKED");
	for (int i = 0; i < n; i++) {
		for (unsigned k = 0; k < b[i].n; k++) {
			const struct cli_bridge_route *r = &b[i].routes[k];
			char lag[24];

			if (r->lag < 0)
				snprintf(lag, sizeof(lag), "-");
			else
				snprintf(lag, sizeof(lag), "%lld", r->lag);
			printf("%-8d %-20s %-3s %9llu %9llu %6llu %7llu %6llu "
			       "%5llu %7s %6llu %s (%llu)\n", b[i].pid,
			       esc(r->name), r->out ? "out" : "in",
			       r->forwarded, r->confirmed, r->nacked,
			       r->redelivered, r->reconnects, r->inflight, lag,
			       r->rejected, r->blocked ? "yes" : "no",
			       r->blocks);
		}
	}
	free(b);
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
	printf(",\"owner_gid\":%u,\"mode\":\"%04o\"", bi.owner_gid, bi.mode);
	json_bus_journal(bus);
	printf(",\"queues\":[");
	for (int i = 0; i < n; i++) {
		printf("%s", i ? "," : "");
		json_queue(bus, &qi[i]);
	}
	printf("],\"pools\":[");
	for (int i = 0; i < shmbus__pool_count(bus); i++) {
		struct shmbus_pool_info pi;

		if (shmbus__pool_info(bus, i, &pi))
			continue;
		printf("%s{\"payload\":%u,\"chunk_size\":%u,"
		       "\"chunks\":%u,\"chunks_max\":%u,\"free\":%u,"
		       "\"cached\":%u}", i ? "," : "", pi.payload,
		       pi.chunk_size, pi.chunks, pi.chunks_max, pi.free,
		       pi.cached);
	}
	printf("]");
	json_bridges(bus);
	printf("}\n");
}

/* The journal of each durable queue, a row each; nothing without
 * any. */
static void table_journals(struct shmbus *bus,
			   const struct shmbus_queue_info *qi, int n)
{
	bool head = false;

	for (int i = 0; i < n; i++) {
		SHMBUS_OPTS(shmbus_journal_info, ji);
		char sync[32];

		if (!(qi[i].flags & SHMBUS_QUEUE_DURABLE) ||
		    shmbus__queue_journal(bus, qi[i].name, &ji))
			continue;
		if (!head)
			printf("\n%-26s %-12s %10s %4s %7s %9s %7s %6s %8s "
			       "%7s\n", "JOURNAL", "SYNC", "BYTES", "SEGS",
			       "LIVE", "WRITTEN", "SYNCS", "FAILED",
			       "REPLAYED", "CORRUPT");
		head = true;
		if (ji.sync == SHMBUS_SYNC_BATCH)
			snprintf(sync, sizeof(sync), "batch/%gms",
				 ji.sync_interval_ns / 1e6);
		else
			snprintf(sync, sizeof(sync), "%s", sync_name(ji.sync));
		printf("%-26s %-12s %10llu %4u %7llu %9llu %7llu %6llu %8llu "
		       "%7llu\n", esc(qi[i].name), sync,
		       (unsigned long long)ji.bytes, ji.segments,
		       (unsigned long long)ji.live,
		       (unsigned long long)ji.written,
		       (unsigned long long)ji.syncs,
		       (unsigned long long)ji.failed,
		       (unsigned long long)ji.replayed,
		       (unsigned long long)ji.corrupt);
	}
}

/* The bus's journal syncs and last recovery, when there were any. */
static void table_bus_journal(struct shmbus *bus)
{
	SHMBUS_OPTS(shmbus_bus_journal_info, bj);

	if (shmbus__bus_journal(bus, &bj))
		return;
	if (bj.syncs)
		printf("journal syncs %llu: mean %.1f us, p50 %.1f us, "
		       "p99 %.1f us\n", (unsigned long long)bj.syncs,
		       sync_mean_us(&bj), sync_quantile_us(&bj, 0.5),
		       sync_quantile_us(&bj, 0.99));
	if (bj.recovery_ns)
		printf("recovered %llu message%s from the journals in %.3f ms\n",
		       (unsigned long long)bj.recovered,
		       bj.recovered == 1 ? "" : "s", bj.recovery_ns / 1e6);
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
	printf("%-26s %6s %5s %7s %9s %9s %9s %6s %7s %7s %7s %7s %4s %4s "
	       "%7s\n", "QUEUE", "DEPTH", "INFLT", "DELAYED", "PUBLISHED",
	       "DELIVERED", "ACKED", "NACKED", "REDELIV", "DEADLTR", "EXPIRED",
	       "DROPPED", "CONS", "PROD", "BLOCKED");
	for (int i = 0; i < n; i++) {
		SHMBUS_OPTS(shmbus_queue_gauges, g);
		const uint64_t *st = qi[i].stat;

		(void)shmbus__queue_gauges(bus, qi[i].name, &g);
		printf("%-26s %6llu %5llu %7llu %9llu %9llu %9llu %6llu %7llu "
		       "%7llu %7llu %7llu %4u %4u %7u\n", esc(qi[i].name),
		       (unsigned long long)qi[i].depth,
		       (unsigned long long)qi[i].in_flight,
		       (unsigned long long)g.delayed,
		       (unsigned long long)st[SHMBUS_STAT_PUBLISHED],
		       (unsigned long long)st[SHMBUS_STAT_DELIVERED],
		       (unsigned long long)st[SHMBUS_STAT_ACKED],
		       (unsigned long long)st[SHMBUS_STAT_NACKED],
		       (unsigned long long)st[SHMBUS_STAT_REDELIVERED],
		       (unsigned long long)st[SHMBUS_STAT_DEADLETTERED],
		       (unsigned long long)st[SHMBUS_STAT_EXPIRED],
		       (unsigned long long)st[SHMBUS_STAT_DROPPED],
		       qi[i].consumers, qi[i].producers, g.blocked_producers);
	}
	for (int i = 0; i < n; i++)
		if (qi[i].flags & SHMBUS_QUEUE_DAMAGED)
			printf("%s: DAMAGED (quarantined; delete it and declare "
			       "it again)\n", esc(qi[i].name));
	table_journals(bus, qi, n);
	table_bus_journal(bus);
	printf("\n%-20s %8s %8s %8s %8s %8s %8s\n", "POOL", "PAYLOAD",
	       "CHUNKS", "MAX", "FREE", "CACHED", "IN_USE");
	for (int i = 0; i < shmbus__pool_count(bus); i++) {
		struct shmbus_pool_info pi;

		if (shmbus__pool_info(bus, i, &pi))
			continue;
		printf("%-20d %8u %8u %8u %8u %8u %8u\n", i, pi.payload,
		       pi.chunks, pi.chunks_max, pi.free, pi.cached,
		       pi.chunks - MIN_U(pi.chunks, pi.free + pi.cached));
	}
	for (int i = 0; i < n; i++) {
		SHMBUS_OPTS(shmbus_queue_gauges, g);

		if (qi[i].kind == SHMBUS_TOPIC ||
		    shmbus__queue_gauges(bus, qi[i].name, &g) ||
		    qi[i].capacity <= g.fit)
			continue;
		printf("%s: takes %u messages, but the pools hold at most "
		       "%llu of up to %u bytes (%llu free or to grow now)\n",
		       esc(qi[i].name),
		       qi[i].capacity, (unsigned long long)g.fit,
		       qi[i].msg_size, (unsigned long long)g.fit_free);
	}
	table_bridges(bus);
}

int cmd_stat(int argc, char **argv)
{
	struct shmbus_queue_info *qi;
	struct shmbus *bus;
	bool json = false;
	int ret, n;

	if ((ret = stat_options(argc, argv, &json)) >= 0)
		return ret;
	bus = open_bus(SHMBUS_OPEN_RDONLY | SHMBUS_OPEN_NOCREATE |
				 SHMBUS_OPEN_NOSTART);
	qi = list_queues(bus, &n);
	if (json)
		stat_json(bus, qi, n);
	else
		stat_table(bus, qi, n);
	free(qi);
	shmbus__close(bus);
	return 0;
}
