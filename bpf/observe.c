// SPDX-License-Identifier: MIT
/*
 * observe.c - the reader of the maps `shmbus monitor` pins (observe.h),
 * for `shmbus metrics` and `shmbus top`: a snapshot of the arena's
 * counters joined with the pinned maps, and the quantiles and interval
 * deltas of their latency histograms. Loading the programs and pinning
 * the maps is monitor.c's.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "observe.h"

const struct obs_row *obs_find(const struct obs *o, uint32_t bus,
			       uint32_t qid)
{
	for (int i = 0; i < o->n; i++)
		if (o->rows[i].bus == bus && o->rows[i].qid == qid)
			return &o->rows[i];
	return NULL;
}

/* The row of (bus, qid), appended if new; NULL when out of memory. */
static struct obs_row *row(struct obs *o, uint32_t bus, uint32_t qid,
			   int *cap)
{
	struct obs_row *r = (struct obs_row *)obs_find(o, bus, qid);

	if (r)
		return r;
	if (o->n == *cap) {
		int ncap = *cap ? *cap * 2 : 16;
		struct obs_row *nr = realloc(o->rows, ncap * sizeof(*nr));

		if (!nr)
			return NULL;
		o->rows = nr;
		*cap = ncap;
	}
	r = &o->rows[o->n++];
	memset(r, 0, sizeof(*r));
	r->bus = bus;
	r->qid = qid;
	return r;
}

static int read_bpf(struct obs *o, const char *dir, int *cap)
{
	struct shmbus_qkey qk, *qprev = NULL;
	struct shmbus_hist_key hk, *hprev = NULL;
	char path[PATH_MAX];
	int qfd, hfd, err = 0;

	snprintf(path, sizeof(path), "%s/qstats", dir);
	qfd = bpf_obj_get(path);
	if (qfd < 0) {
		int e = errno;

		snprintf(o->bpf_why, sizeof(o->bpf_why), "%s: %s%s", path,
			 strerror(e), e == ENOENT ? " (shmbus monitor start)" :
			 e == EACCES || e == EPERM ? " (needs root)" : "");
		return 0;
	}
	snprintf(path, sizeof(path), "%s/hist", dir);
	hfd = bpf_obj_get(path);
	if (hfd < 0) {
		snprintf(o->bpf_why, sizeof(o->bpf_why), "%s: %s", path,
			 strerror(errno));
		close(qfd);
		return 0;
	}
	while (!err && bpf_map_get_next_key(qfd, qprev, &qk) == 0) {
		struct shmbus_qstats v;
		struct obs_row *r;

		qprev = &qk;
		if (bpf_map_lookup_elem(qfd, &qk, &v))
			continue;	/* deleted meanwhile */
		r = row(o, qk.bus, qk.qid, cap);
		if (!r) {
			err = -ENOMEM;
			break;
		}
		r->bpf = true;
		r->q = v;
	}
	while (!err && bpf_map_get_next_key(hfd, hprev, &hk) == 0) {
		struct shmbus_hist h;
		struct obs_row *r;

		hprev = &hk;
		if (hk.latency >= SHMBUS_LAT__MAX ||
		    bpf_map_lookup_elem(hfd, &hk, &h))
			continue;
		r = row(o, hk.bus, hk.qid, cap);
		if (!r) {
			err = -ENOMEM;
			break;
		}
		r->has_hist[hk.latency] = true;
		r->hist[hk.latency] = h;
	}
	close(qfd);
	close(hfd);
	o->bpf = !err;
	return err;
}

/* The rows of @bus's queues, and what the bus has besides, as @label. */
static int read_bus(struct obs *o, struct shmbus *bus, const char *label,
		    int *cap)
{
	struct shmbus_queue_info *qi;
	struct obs_bus *b;
	int want = shmbus__queue_list(bus, NULL, 0), n;

	b = realloc(o->buses, (o->nr_buses + 1) * sizeof(*b));
	if (!b)
		return -ENOMEM;
	o->buses = b;
	b = &o->buses[o->nr_buses++];
	memset(b, 0, sizeof(*b));
	b->id = shmbus__id(bus);
	snprintf(b->name, sizeof(b->name), "%s", label);
	b->bj.sz = sizeof(b->bj);
	(void)shmbus__bus_journal(bus, &b->bj);
	for (int i = 0; i < shmbus__pool_count(bus) && i < 8; i++)
		if (!shmbus__pool_info(bus, (unsigned)i, &b->pools[i]))
			b->nr_pools = i + 1;
	/* one more than counted: a declare in between shows next time */
	qi = calloc(want + 1, sizeof(*qi));
	if (!qi)
		return -ENOMEM;
	n = shmbus__queue_list(bus, qi, want + 1);
	if (n > want + 1)
		n = want + 1;
	for (int i = 0; i < n; i++) {
		struct obs_row *r = row(o, b->id, qi[i].id, cap);

		if (!r) {
			free(qi);
			return -ENOMEM;
		}
		r->arena = true;
		r->info = qi[i];
		r->g.sz = sizeof(r->g);
		(void)shmbus__queue_gauges(bus, qi[i].name, &r->g);
		r->ji.sz = sizeof(r->ji);
		r->journal = (qi[i].flags & SHMBUS_QUEUE_DURABLE) &&
			     shmbus__queue_journal(bus, qi[i].name, &r->ji) == 0;
		snprintf(r->bus_name, sizeof(r->bus_name), "%s", label);
		snprintf(r->name, sizeof(r->name), "%s", qi[i].name);
	}
	free(qi);
	return 0;
}

int obs_snapshot_many(struct shmbus *const *buses, const char *const *labels,
		      int n, const char *pin_dir, struct obs *o)
{
	int cap = 0, err = 0;

	memset(o, 0, sizeof(*o));
	for (int i = 0; i < n && !err; i++)
		err = read_bus(o, buses[i], labels && labels[i] ? labels[i] :
			       shmbus__name(buses[i]), &cap);
	if (!err && o->nr_buses) {
		o->bus = true;
		o->bus_id = o->buses[0].id;
		memcpy(o->bus_name, o->buses[0].name, sizeof(o->bus_name));
		o->bj = o->buses[0].bj;
	}
	if (!err)
		err = read_bpf(o, pin_dir, &cap);
	if (err)
		obs_free(o);
	return err;
}

int obs_snapshot(struct shmbus *bus, const char *pin_dir, struct obs *o)
{
	return obs_snapshot_many(&bus, NULL, bus ? 1 : 0, pin_dir, o);
}

void obs_free(struct obs *o)
{
	free(o->buses);
	o->buses = NULL;
	o->nr_buses = 0;
	free(o->rows);
	o->rows = NULL;
	o->n = 0;
}

double hist_quantile(const struct shmbus_hist *h, double q)
{
	double target, cum = 0, total = 0;

	/* from the buckets, not h->count: the BPF side adds to each
	 * separately, so a snapshot may catch one ahead of the other */
	for (int b = 0; b < SHMBUS_HIST_BUCKETS; b++)
		total += (double)h->buckets[b];
	if (!total)
		return NAN;
	target = q * total;
	for (int b = 0; b < SHMBUS_HIST_BUCKETS; b++) {
		double n = (double)h->buckets[b], lo, hi;

		if (!n || cum + n < target) {
			cum += n;
			continue;
		}
		/* bucket b is [2^b, 2^(b+1)) ns; bucket 0 is [0, 2) */
		lo = b ? ldexp(1, b) : 0;
		hi = ldexp(1, b + 1);
		return lo + (hi - lo) * (target - cum) / n;
	}
	return ldexp(1, SHMBUS_HIST_BUCKETS);	/* not reached */
}

void hist_delta(struct shmbus_hist *out, const struct shmbus_hist *now,
		const struct shmbus_hist *then)
{
#define SUB(a, b)	((a) > (b) ? (a) - (b) : 0)
	out->count = SUB(now->count, then->count);
	out->sum_ns = SUB(now->sum_ns, then->sum_ns);
	for (int b = 0; b < SHMBUS_HIST_BUCKETS; b++)
		out->buckets[b] = SUB(now->buckets[b], then->buckets[b]);
#undef SUB
}
