// SPDX-License-Identifier: MIT
/*
 * metrics.c - `shmbus metrics`: the buses of the daemon (or the one --bus
 * names) in the Prometheus text exposition format (version 0.0.4), once
 * on standard output or served over HTTP at /metrics (--listen
 * ADDR:PORT).
 *
 * Counters and gauges come from the arena (exact, since the bus was
 * created, readable by anyone who may read the bus), and so do the
 * journals of durable queues and the bus's journal sync histogram, which
 * the daemon keeps there; the latency histograms come from the BPF maps
 * of `shmbus monitor` (root), and are left out, with a comment saying
 * why, when those are not there.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "cli.h"
#include "observe.h"

static const struct {
	const char *name, *help;
	int stat;			/* SHMBUS_STAT_*, or -1: a gauge */
} counters[] = {
	{ "shmbus_published_total", "Messages published.",
	  SHMBUS_STAT_PUBLISHED },
	{ "shmbus_delivered_total", "Messages handed to consumers.",
	  SHMBUS_STAT_DELIVERED },
	{ "shmbus_acked_total", "Deliveries acknowledged.",
	  SHMBUS_STAT_ACKED },
	{ "shmbus_nacked_total", "Deliveries given back (nack).",
	  SHMBUS_STAT_NACKED },
	{ "shmbus_redelivered_total", "Messages delivered again.",
	  SHMBUS_STAT_REDELIVERED },
	{ "shmbus_dead_lettered_total", "Messages moved to a dead-letter "
	  "queue.", SHMBUS_STAT_DEADLETTERED },
	{ "shmbus_expired_total", "Messages whose time to live ran out.",
	  SHMBUS_STAT_EXPIRED },
	{ "shmbus_dropped_total", "Messages discarded.", SHMBUS_STAT_DROPPED },
	{ "shmbus_lease_expired_total", "Leases that ran out before an ack.",
	  SHMBUS_STAT_LEASE_EXPIRED },
	{ "shmbus_duplicates_total", "Publishes dropped as duplicates of a "
	  "dedup id.", SHMBUS_STAT_DUPLICATES },
	{ "shmbus_full_total", "Publishes that found the queue full.",
	  SHMBUS_STAT_FULL },
	{ "shmbus_nomem_total", "Publishes and loans that found no free chunk "
	  "in the bus's pools.", SHMBUS_STAT_NOMEM },
	{ "shmbus_wakeups_total", "Eventfd writes to sleeping consumers.",
	  SHMBUS_STAT_WAKEUPS },
	{ "shmbus_sleeps_total", "Times a consumer went to sleep.",
	  SHMBUS_STAT_SLEEPS },
};

static const char *const latency_names[SHMBUS_LAT__MAX] = {
	"publish_deliver", "deliver_ack", "wakeup", "journal_sync",
};

/* {bus="..",queue=".." — the caller closes the brace or adds labels.
 * Rows only BPF knows (another bus, a queue deleted since) are named by
 * their ids. The names are escaped (out.c), then backslashes and quotes
 * as label values want: any member of the bus can write them. */
static void labels(FILE *out, const struct obs_row *r)
{
	char b[16], q[16];

	snprintf(b, sizeof(b), "%u", r->bus);
	snprintf(q, sizeof(q), "%u", r->qid);
	fputs("{bus=\"", out);
	put_quoted(out, r->bus_name[0] ? r->bus_name : b);
	fputs("\",queue=\"", out);
	put_quoted(out, r->name[0] ? r->name : q);
	fputc('"', out);
}

static void gauge(FILE *out, const struct obs *o, const char *name,
		  const char *help, size_t off, bool u32)
{
	fprintf(out, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
	for (int i = 0; i < o->n; i++) {
		const struct obs_row *r = &o->rows[i];
		const char *p = (const char *)r + off;

		if (!r->arena)
			continue;
		fputs(name, out);
		labels(out, r);
		fprintf(out, "} %llu\n", u32 ? (unsigned long long)
			*(const uint32_t *)p : (unsigned long long)
			*(const uint64_t *)p);
	}
}

/* The journals of durable queues, per queue. */
static const struct {
	const char *name, *help, *type;
	size_t off;
	bool u32;
} journal_rows[] = {
#define JOFF(f)	__builtin_offsetof(struct shmbus_journal_info, f)
	{ "shmbus_journal_bytes", "Bytes of a durable queue's journal on "
	  "disk.", "gauge", JOFF(bytes), false },
	{ "shmbus_journal_segments", "Segment files of the journal.", "gauge",
	  JOFF(segments), true },
	{ "shmbus_journal_live_messages", "Messages journaled and not yet "
	  "settled.", "gauge", JOFF(live), false },
	{ "shmbus_journal_records_written_total", "Journal records written "
	  "since the daemon opened the journal.", "counter", JOFF(written),
	  false },
	{ "shmbus_journal_syncs_total", "Journal syncs (fdatasync) since the "
	  "daemon opened the journal.", "counter", JOFF(syncs), false },
	{ "shmbus_journal_failed_total", "Publishes the daemon could not "
	  "journal (dropped, the publisher told).", "counter", JOFF(failed),
	  false },
#undef JOFF
};

static void journal_metrics(FILE *out, const struct obs *o)
{
	for (size_t k = 0; k < sizeof(journal_rows) / sizeof(journal_rows[0]);
	     k++) {
		fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", journal_rows[k].name,
			journal_rows[k].help, journal_rows[k].name,
			journal_rows[k].type);
		for (int i = 0; i < o->n; i++) {
			const struct obs_row *r = &o->rows[i];
			const char *p = (const char *)&r->ji + journal_rows[k].off;

			if (!r->journal)
				continue;
			fputs(journal_rows[k].name, out);
			labels(out, r);
			fprintf(out, "} %llu\n", journal_rows[k].u32 ?
				(unsigned long long)*(const uint32_t *)p :
				(unsigned long long)*(const uint64_t *)p);
		}
	}
}

/* {bus="NAME"} of bus @b. */
static void bus_label(FILE *out, const struct obs_bus *b)
{
	fputs("{bus=\"", out);
	put_quoted(out, b->name);
	fputc('"', out);
}

/* The buses' journal syncs, all durable queues of each together, from
 * the daemon's log2 microsecond histogram in the arena; and each bus's
 * last recovery from the journals. */
static void bus_journal_metrics(FILE *out, const struct obs *o)
{
	if (!o->nr_buses)
		return;
	fprintf(out, "# HELP shmbus_journal_sync_seconds Journal syncs "
		"(fdatasync) of the bus's durable queues.\n"
		"# TYPE shmbus_journal_sync_seconds histogram\n");
	for (int i = 0; i < o->nr_buses; i++) {
		const struct obs_bus *b = &o->buses[i];
		const struct shmbus_bus_journal_info *bj = &b->bj;
		unsigned long long cum = 0, total = 0;

		/* the count is the buckets' sum, so that +Inf and _count
		 * agree in a snapshot taken while the daemon counts a sync */
		for (int k = 0; k < SHMBUS_SYNC_HIST_BUCKETS; k++)
			total += bj->sync_hist[k];
		/* bucket k holds [2^k, 2^(k+1)) us: le = 2^(k+1) us; the
		 * last one is open-ended, +Inf */
		for (int k = 0; k < SHMBUS_SYNC_HIST_BUCKETS - 1; k++) {
			cum += bj->sync_hist[k];
			fputs("shmbus_journal_sync_seconds_bucket", out);
			bus_label(out, b);
			fprintf(out, ",le=\"%.9g\"} %llu\n",
				(double)(1ULL << (k + 1)) / 1e6, cum);
		}
		fputs("shmbus_journal_sync_seconds_bucket", out);
		bus_label(out, b);
		fprintf(out, ",le=\"+Inf\"} %llu\n", total);
		fputs("shmbus_journal_sync_seconds_sum", out);
		bus_label(out, b);
		fprintf(out, "} %.9f\n", bj->sync_ns / 1e9);
		fputs("shmbus_journal_sync_seconds_count", out);
		bus_label(out, b);
		fprintf(out, "} %llu\n", total);
	}
	fprintf(out, "# HELP shmbus_bus_recovery_seconds How long the daemon "
		"took to rebuild the bus's durable queues from their journals "
		"(0: never).\n# TYPE shmbus_bus_recovery_seconds gauge\n");
	for (int i = 0; i < o->nr_buses; i++) {
		fputs("shmbus_bus_recovery_seconds", out);
		bus_label(out, &o->buses[i]);
		fprintf(out, "} %.9f\n", o->buses[i].bj.recovery_ns / 1e9);
	}
	fprintf(out, "# HELP shmbus_bus_recovered_messages Messages that "
		"recovery put back.\n"
		"# TYPE shmbus_bus_recovered_messages gauge\n");
	for (int i = 0; i < o->nr_buses; i++) {
		fputs("shmbus_bus_recovered_messages", out);
		bus_label(out, &o->buses[i]);
		fprintf(out, "} %llu\n",
			(unsigned long long)o->buses[i].bj.recovered);
	}
}

/* The pools of every bus, a series per size class (pool="PAYLOAD"). */
static void pool_metrics(FILE *out, const struct obs *o)
{
	static const struct {
		const char *name, *help;
	} fam[] = {
		{ "shmbus_pool_chunks", "Chunks of a pool (size class: "
		  "messages up to pool bytes)." },
		{ "shmbus_pool_free_chunks", "Chunks of a pool free now (free "
		  "list and the caches of attached handles)." },
		{ "shmbus_pool_chunks_max", "Chunks a pool may grow to as it "
		  "runs low." },
	};

	if (!o->nr_buses)
		return;
	for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
		fprintf(out, "# HELP %s %s\n# TYPE %s gauge\n", fam[f].name,
			fam[f].help, fam[f].name);
		for (int i = 0; i < o->nr_buses; i++) {
			const struct obs_bus *b = &o->buses[i];

			for (int k = 0; k < b->nr_pools; k++) {
				const struct shmbus_pool_info *pi =
					&b->pools[k];
				uint64_t n = f == 0 ? pi->chunks :
					     f == 1 ? MIN_U((uint64_t)pi->free +
							    pi->cached,
							    (uint64_t)pi->chunks)
						    : pi->chunks_max;

				fputs(fam[f].name, out);
				bus_label(out, b);
				fprintf(out, ",pool=\"%u\"} %llu\n",
					pi->payload, (unsigned long long)n);
			}
		}
	}
}

/* The running bridges of the bus (their stats files), per route. */
static const struct {
	const char *name, *help, *type;
	size_t off;
} bridge_rows[] = {
#define BOFF(f)	__builtin_offsetof(struct cli_bridge_route, f)
	{ "shmbus_bridge_forwarded_total", "Messages a bridge route "
	  "published to the other side (again after a give-back).",
	  "counter", BOFF(forwarded) },
	{ "shmbus_bridge_confirmed_total", "Messages settled at the source "
	  "after the other side took them.", "counter", BOFF(confirmed) },
	{ "shmbus_bridge_nacked_total", "Messages given back to the source.",
	  "counter", BOFF(nacked) },
	{ "shmbus_bridge_redelivered_total", "Messages received marked as "
	  "delivered before.", "counter", BOFF(redelivered) },
	{ "shmbus_bridge_reconnects_total", "Broker connections after the "
	  "first.", "counter", BOFF(reconnects) },
	{ "shmbus_bridge_blocks_total", "Times the broker blocked the "
	  "route's publishing (a resource alarm).", "counter", BOFF(blocks) },
	{ "shmbus_bridge_leases_extended_total", "Local leases extended "
	  "while the broker was slow to confirm.", "counter",
	  BOFF(extended) },
	{ "shmbus_bridge_signature_rejected_total", "Deliveries of an in "
	  "route that failed the signature check (dead-lettered).",
	  "counter", BOFF(rejected) },
	{ "shmbus_bridge_in_flight", "Messages published and not yet "
	  "settled.", "gauge", BOFF(inflight) },
	{ "shmbus_bridge_blocked", "1 while the broker blocks the route's "
	  "publishing.", "gauge", BOFF(blocked) },
#undef BOFF
};

/* {bus=..,route=..,dir=..,pid=..@more} */
static void bridge_labels_more(FILE *out, const struct obs *o,
			       const struct cli_bridge *b,
			       const struct cli_bridge_route *r,
			       const char *more)
{
	fputs("{bus=\"", out);
	put_quoted(out, o->bus_name);
	fputs("\",route=\"", out);
	put_quoted(out, r->name);
	fprintf(out, "\",dir=\"%s\",pid=\"%d\"%s}", r->out ? "out" : "in",
		b->pid, more);
}

static void bridge_labels(FILE *out, const struct obs *o,
			  const struct cli_bridge *b,
			  const struct cli_bridge_route *r)
{
	bridge_labels_more(out, o, b, r, "");
}

/* The confirm latencies of the bus's running bridges, from the BPF map
 * "bridge" (their probes bridge_confirm), when the monitor is started. */
static void bridge_latency(FILE *out, const struct obs *o,
			   const struct cli_bridge *b, int n, const char *dir)
{
	struct shmbus_bridge_key k, next;
	struct shmbus_bridge_stats v;
	char path[PATH_MAX];
	bool head = false;
	int fd;

	snprintf(path, sizeof(path), "%s/bridge", dir);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return;
	for (void *prev = NULL; !bpf_map_get_next_key(fd, prev, &next);
	     prev = &k) {
		struct cli_bridge_route r = { 0 };
		unsigned long long cum = 0, total = 0;
		const struct cli_bridge *br = NULL;

		k = next;
		for (int i = 0; i < n && !br; i++)
			if (b[i].pid == (int)k.pid)
				br = &b[i];
		/* only this bus's bridges, and only while they run */
		if (!br || bpf_map_lookup_elem(fd, &k, &v))
			continue;
		k.route[sizeof(k.route) - 1] = '\0';
		snprintf(r.name, sizeof(r.name), "%s", k.route);
		r.out = k.dir == 0;
		if (!head)
			fprintf(out, "# HELP shmbus_bridge_confirm_seconds "
				"Forward to confirm of the oldest message each "
				"confirm settles (BPF, probe bridge_confirm).\n"
				"# TYPE shmbus_bridge_confirm_seconds "
				"histogram\n");
		head = true;
		for (int i = 0; i < SHMBUS_HIST_BUCKETS; i++)
			total += v.buckets[i];
		/* bucket i holds [2^i, 2^(i+1)) ns, as "hist" */
		for (int i = 0; i < SHMBUS_HIST_BUCKETS - 1; i++) {
			char le[48];

			cum += v.buckets[i];
			snprintf(le, sizeof(le), ",le=\"%.9g\"",
				 (double)(1ULL << (i + 1)) / 1e9);
			fputs("shmbus_bridge_confirm_seconds_bucket", out);
			bridge_labels_more(out, o, br, &r, le);
			fprintf(out, " %llu\n", cum);
			if (cum == total && i >= 40)
				break;	/* the rest add nothing */
		}
		fputs("shmbus_bridge_confirm_seconds_bucket", out);
		bridge_labels_more(out, o, br, &r, ",le=\"+Inf\"");
		fprintf(out, " %llu\n", total);
		fputs("shmbus_bridge_confirm_seconds_sum", out);
		bridge_labels(out, o, br, &r);
		fprintf(out, " %.9f\n", v.latency_ns / 1e9);
		fputs("shmbus_bridge_confirm_seconds_count", out);
		bridge_labels(out, o, br, &r);
		fprintf(out, " %llu\n", total);
	}
	close(fd);
}

static void bridge_metrics(FILE *out, const struct obs *o, const char *dir)
{
	struct cli_bridge *b;
	int n;

	if (!o->bus)
		return;
	n = cli_bridges(o->bus_name, &b);
	if (n <= 0) {
		free(b);
		return;
	}
	bridge_latency(out, o, b, n, dir);
	for (size_t k = 0; k < sizeof(bridge_rows) / sizeof(bridge_rows[0]);
	     k++) {
		fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", bridge_rows[k].name,
			bridge_rows[k].help, bridge_rows[k].name,
			bridge_rows[k].type);
		for (int i = 0; i < n; i++)
			for (unsigned j = 0; j < b[i].n; j++) {
				const struct cli_bridge_route *r = &b[i].routes[j];

				fputs(bridge_rows[k].name, out);
				bridge_labels(out, o, &b[i], r);
				fprintf(out, " %llu\n", *(const unsigned long long *)
					((const char *)r + bridge_rows[k].off));
			}
	}
	fprintf(out, "# HELP shmbus_bridge_lag Messages waiting to be "
		"forwarded: out, in the local queue; in, ready in the broker "
		"queue.\n# TYPE shmbus_bridge_lag gauge\n");
	for (int i = 0; i < n; i++)
		for (unsigned j = 0; j < b[i].n; j++) {
			const struct cli_bridge_route *r = &b[i].routes[j];

			if (r->lag < 0)
				continue;
			fputs("shmbus_bridge_lag", out);
			bridge_labels(out, o, &b[i], r);
			fprintf(out, " %lld\n", r->lag);
		}
	free(b);
}

/* Everything, to @out; @dir: the BPF pin directory. */
static void metrics_write(FILE *out, const struct obs *o, const char *dir)
{
	for (size_t c = 0; c < sizeof(counters) / sizeof(counters[0]); c++) {
		fprintf(out, "# HELP %s %s\n# TYPE %s counter\n",
			counters[c].name, counters[c].help, counters[c].name);
		for (int i = 0; i < o->n; i++) {
			const struct obs_row *r = &o->rows[i];

			if (!r->arena)
				continue;
			fputs(counters[c].name, out);
			labels(out, r);
			fprintf(out, "} %llu\n", (unsigned long long)
				r->info.stat[counters[c].stat]);
		}
	}
#define OFF(f)	__builtin_offsetof(struct obs_row, f)
	gauge(out, o, "shmbus_depth", "Messages waiting.", OFF(info.depth),
	      false);
	gauge(out, o, "shmbus_delayed", "Messages the daemon holds until they "
	      "are due: delayed, backing off, waiting for room; not in "
	      "shmbus_depth.", OFF(g.delayed), false);
	gauge(out, o, "shmbus_in_flight", "Messages delivered and not yet "
	      "acked.", OFF(info.in_flight), false);
	gauge(out, o, "shmbus_consumers", "Attached consumers.",
	      OFF(info.consumers), true);
	gauge(out, o, "shmbus_producers", "Attached producers.",
	      OFF(info.producers), true);
	gauge(out, o, "shmbus_blocked_producers", "Producers whose publish "
	      "waits now for room (or a free chunk).",
	      OFF(g.blocked_producers), true);
	gauge(out, o, "shmbus_capacity", "Ring slots.", OFF(info.capacity),
	      true);
	gauge(out, o, "shmbus_fit", "Messages of the queue's largest size the "
	      "bus's pools hold at once (all its queues together).",
	      OFF(g.fit), false);
#undef OFF
	journal_metrics(out, o);
	bus_journal_metrics(out, o);
	pool_metrics(out, o);
	bridge_metrics(out, o, dir);
	if (!o->bpf) {
		fprintf(out, "# shmbus_latency_seconds: no BPF maps: %s\n",
			o->bpf_why);
		return;
	}
	fprintf(out, "# HELP shmbus_latency_seconds Latencies (BPF): publish "
		"to first delivery, delivery to ack, eventfd write to the woken "
		"consumer running, a journal sync of a durable queue.\n"
		"# TYPE shmbus_latency_seconds histogram\n");
	for (int i = 0; i < o->n; i++) {
		const struct obs_row *r = &o->rows[i];

		for (int k = 0; k < SHMBUS_LAT__MAX; k++) {
			const struct shmbus_hist *h = &r->hist[k];
			unsigned long long cum = 0, total = 0;

			if (!r->has_hist[k])
				continue;
			/* the count is the buckets' sum, so that +Inf and
			 * _count agree in a snapshot that raced a probe */
			for (int b = 0; b < SHMBUS_HIST_BUCKETS; b++)
				total += h->buckets[b];
			/* bucket b holds [2^b, 2^(b+1)) ns: le = 2^(b+1) ns */
			for (int b = 0; b < SHMBUS_HIST_BUCKETS - 1; b++) {
				cum += h->buckets[b];
				fputs("shmbus_latency_seconds_bucket", out);
				labels(out, r);
				fprintf(out, ",latency=\"%s\",le=\"%.9g\"} %llu\n",
					latency_names[k],
					(double)(1ULL << (b + 1)) / 1e9, cum);
				if (cum == total && b >= 40)
					break;	/* the rest add nothing */
			}
			fputs("shmbus_latency_seconds_bucket", out);
			labels(out, r);
			fprintf(out, ",latency=\"%s\",le=\"+Inf\"} %llu\n",
				latency_names[k], total);
			fputs("shmbus_latency_seconds_sum", out);
			labels(out, r);
			fprintf(out, ",latency=\"%s\"} %.9f\n", latency_names[k],
				h->sum_ns / 1e9);
			fputs("shmbus_latency_seconds_count", out);
			labels(out, r);
			fprintf(out, ",latency=\"%s\"} %llu\n", latency_names[k],
				total);
		}
	}
}

/* A bus's label: NAME for our own, OWNER:NAME (the user's name, else
 * the uid) for another user's. */
static void label_of(char label[96], uint32_t owner, const char *name)
{
	if (owner == (uint32_t)geteuid())
		snprintf(label, 96, "%.63s", name);
	else
		snprintf(label, 96, "%.31s:%.63s", cli_user_name(owner), name);
}

/* The buses to show: --bus (or --owner, or $SHMBUS_BUS) names one; else
 * every bus the
 * daemon lists for us, each labelled NAME, or OWNER:NAME when another
 * user's. Opened read-only; one that cannot be opened (deleted since,
 * or not ours to read) is left out. Returns how many are in @buses. */
static int open_buses(struct shmbus **buses, char (*labels)[96], int cap,
		      char *note, size_t nlen)
{
	SHMBUS_OPTS(shmbus_open_opts, o, .socket_path = cli_socket());
	struct shmbus_bus_entry e[64];
	bool other;
	int n, k = 0;

	if (cli_bus(&other) || other || getenv("SHMBUS_BUS")) {
		struct shmbus_info bi;

		buses[0] = cli_open_bus_ro(false);
		if (!buses[0])
			return 0;
		shmbus__info(buses[0], &bi);
		label_of(labels[0], bi.owner_uid, shmbus__name(buses[0]));
		return 1;
	}
	n = shmbus__bus_list(&o, e, 64);
	if (n < 0)
		snprintf(note, nlen, "# buses: not listed: %s\n",
			 strerror(-n));
	else if (n > 64)
		snprintf(note, nlen, "# buses: %d more than the 64 shown\n",
			 n - 64);
	for (int i = 0; i < n && i < 64 && k < cap; i++) {
		SHMBUS_OPTS(shmbus_open_opts, ro, .socket_path = cli_socket(),
			    .flags = SHMBUS_OPEN_RDONLY | SHMBUS_OPEN_NOCREATE |
				     SHMBUS_OPEN_NOSTART | SHMBUS_OPEN_OWNER,
			    .owner_uid = e[i].owner_uid);
		buses[k] = shmbus__open(e[i].name, &ro);
		if (!buses[k])
			continue;
		label_of(labels[k], e[i].owner_uid, e[i].name);
		k++;
	}
	return k;
}

/* One exposition into a malloc'd buffer. Returns 0, -ENOENT when there is
 * neither a bus nor BPF maps to show, or -errno. */
static int render(const char *dir, char **buf, size_t *len)
{
	static char labels[64][96];
	const char *lp[64];
	struct shmbus *buses[64];
	char note[96] = "";
	struct obs o;
	FILE *out;
	int n = open_buses(buses, labels, 64, note, sizeof(note)), err;

	for (int i = 0; i < n; i++)
		lp[i] = labels[i];
	err = obs_snapshot_many(buses, lp, n, dir, &o);
	for (int i = 0; i < n; i++)
		shmbus__close(buses[i]);
	if (err)
		return err;
	if (!n && !o.bpf) {
		obs_free(&o);
		return -ENOENT;
	}
	out = open_memstream(buf, len);
	if (!out) {
		obs_free(&o);
		return -errno;
	}
	fputs(note, out);
	metrics_write(out, &o, dir);
	obs_free(&o);
	if (fclose(out))
		return -errno;
	return 0;
}

/* ---- --listen: a minimal HTTP/1.0 server for one scraper at a time ---- */

static int listen_on(const char *spec)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	char host[256], *port, *h = host;
	struct addrinfo *ai, *p;
	int fd = -1, one = 1, err;

	if (snprintf(host, sizeof(host), "%s", spec) >= (int)sizeof(host))
		return -ENAMETOOLONG;
	port = strrchr(host, ':');
	if (!port) {
		fprintf(stderr, "shmbus: metrics: --listen %s: want ADDR:PORT\n",
			spec);
		return -EINVAL;
	}
	*port++ = '\0';
	if (!*port || strspn(port, "0123456789") != strlen(port) ||
	    strlen(port) > 5 || atoi(port) > 65535) {
		fprintf(stderr, "shmbus: metrics: --listen %s: port '%s' is "
			"not a number 0..65535\n", spec, port);
		return -ERANGE;
	}
	if (*h == '[' && h[strlen(h) - 1] == ']') {	/* [::1]:9100 */
		h[strlen(h) - 1] = '\0';
		h++;
	}
	err = getaddrinfo(*h ? h : NULL, port, &hints, &ai);
	if (err) {
		fprintf(stderr, "shmbus: metrics: %s: %s\n", spec,
			gai_strerror(err));
		return -EINVAL;
	}
	for (p = ai; p; p = p->ai_next) {
		fd = socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC,
			    p->ai_protocol);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, p->ai_addr, p->ai_addrlen) == 0 &&
		    listen(fd, 16) == 0)
			break;
		err = -errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	if (fd < 0)
		return err ? err : -EADDRNOTAVAIL;
	return fd;
}

static void reply(int fd, const char *status, const char *type,
		  const char *body, size_t len, bool head)
{
	char hdr[256];
	int n = snprintf(hdr, sizeof(hdr), "HTTP/1.0 %s\r\nContent-Type: %s\r\n"
			 "Content-Length: %zu\r\nConnection: close\r\n\r\n",
			 status, type, len);

	if (write(fd, hdr, n) != n || head)
		return;
	while (len) {
		ssize_t w = write(fd, body, len);

		if (w <= 0)
			return;
		body += w;
		len -= w;
	}
}

static void serve_one(int fd, const char *dir)
{
	struct timeval tv = { .tv_sec = 2 };
	char req[4096], method[8], path[256];
	size_t got = 0;
	char *body = NULL;
	size_t len = 0;
	bool head;
	int err;

	/* a scraper that stalls must not hold the others for ever */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	while (got < sizeof(req) - 1) {
		ssize_t n = read(fd, req + got, sizeof(req) - 1 - got);

		if (n <= 0)
			break;
		got += n;
		req[got] = '\0';
		if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
			break;
	}
	req[got] = '\0';
	if (sscanf(req, "%7s %255s", method, path) != 2) {
		reply(fd, "400 Bad Request", "text/plain", "bad request\n", 12,
		      false);
		return;
	}
	head = !strcmp(method, "HEAD");
	if (strcmp(method, "GET") && !head) {
		reply(fd, "405 Method Not Allowed", "text/plain",
		      "GET /metrics\n", 13, false);
		return;
	}
	path[strcspn(path, "?")] = '\0';
	if (strcmp(path, "/metrics")) {
		reply(fd, "404 Not Found", "text/plain", "try /metrics\n", 13,
		      head);
		return;
	}
	err = render(dir, &body, &len);
	if (err) {
		char msg[128];
		int n = snprintf(msg, sizeof(msg), "no bus and no BPF maps: %s\n",
				 strerror(-err));

		reply(fd, "503 Service Unavailable", "text/plain", msg, n, head);
		return;
	}
	reply(fd, "200 OK", "text/plain; version=0.0.4; charset=utf-8", body,
	      len, head);
	free(body);
}

static int serve(const char *spec, const char *dir)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char h[128], p[16];
	int lfd = listen_on(spec);

	if (lfd == -ERANGE || lfd == -EINVAL)	/* said why */
		return EXIT_USAGE;
	if (lfd < 0) {
		fprintf(stderr, "shmbus: metrics: cannot listen on %s: %s\n",
			spec, strerror(-lfd));
		return 1;
	}
	if (getsockname(lfd, (struct sockaddr *)&ss, &sl) == 0 &&
	    getnameinfo((struct sockaddr *)&ss, sl, h, sizeof(h), p, sizeof(p),
			NI_NUMERICHOST | NI_NUMERICSERV) == 0)
		printf("serving http://%s%s%s:%s/metrics\n",
		       ss.ss_family == AF_INET6 ? "[" : "", h,
		       ss.ss_family == AF_INET6 ? "]" : "", p);
	if (fflush(stdout) || ferror(stdout)) {
		fprintf(stderr, "shmbus: metrics: write error on standard "
			"output: %s\n", strerror(errno));
		return 1;
	}
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED ||
			    errno == EMFILE || errno == ENFILE)
				continue;
			fprintf(stderr, "shmbus: metrics: accept: %s\n",
				strerror(errno));
			return 1;
		}
		serve_one(fd, dir);
		close(fd);
	}
}

static void usage(FILE *f)
{
	fprintf(f,
"usage: shmbus metrics [--listen ADDR:PORT] [--pin-dir DIR]\n"
"\n"
"Every bus of the daemon you may read (root: all; --bus NAME or\n"
"$SHMBUS_BUS: that one;\n"
"label bus=\"NAME\", or \"OWNER:NAME\" for another user's), its queues and\n"
"pools, in the Prometheus text format: counters and gauges from the\n"
"bus's shared memory (anyone who may read the bus), durable queues'\n"
"journals and the bus's journal sync histogram likewise, latency\n"
"histograms from the BPF maps of `shmbus monitor` (root; left out, with a\n"
"comment, when the monitor is not started). Once on standard output, or\n"
"served at http://ADDR:PORT/metrics with --listen (port 0: any free port,\n"
"printed).\n");
}

int cmd_metrics(int argc, char **argv)
{
	const char *dir = SHMBUS_BPF_PIN_DIR, *listen_spec = NULL;
	char *body = NULL;
	size_t len = 0;
	int err;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--pin-dir") && i + 1 < argc) {
			dir = argv[++i];
		} else if (!strcmp(argv[i], "--listen") && i + 1 < argc) {
			listen_spec = argv[++i];
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (listen_spec)
		return serve(listen_spec, dir);
	err = render(dir, &body, &len);
	if (err == -ENOENT) {
		fprintf(stderr, "shmbus: metrics: no bus to read and no BPF "
			"maps under %s\n", dir);
		return 3;
	}
	if (err) {
		fprintf(stderr, "shmbus: metrics: %s\n", strerror(-err));
		return 1;
	}
	fwrite(body, 1, len, stdout);
	free(body);
	return 0;	/* a failed write: cli_close_stdout() at exit */
}
