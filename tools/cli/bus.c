// SPDX-License-Identifier: MIT
/*
 * bus.c - `shmbus bus list|info|create|delete`: the buses of the
 * daemon, seen and deleted without opening one (a look starts no
 * daemon), and one made with the size it needs.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shmbus.h"
#include "cli.h"

static void usage_bus(FILE *f)
{
	fprintf(f,
"usage: shmbus bus list [--json]\n"
"       shmbus bus info [[USER:]NAME] [--json]\n"
"       shmbus bus create NAME [--pools PAYLOAD:COUNT,...] [--pool-growth N]\n"
"                              [--queues N] [--slots N] [--ring-size BYTES]\n"
"                              [--mode MODE]\n"
"       shmbus bus delete [USER:]NAME [--force]\n"
"\n"
"The buses of the daemon at --socket.\n"
"list:    every bus you may open (root: every bus), newest first: owner,\n"
"         name, size, members (processes bound to it), queues (of them\n"
"         durable), mode and creation time. Starts no daemon.\n"
"info:    one bus (default: --bus): the same, and when you may open it,\n"
"         its geometry and pools (chunks, the most they may grow to,\n"
"         and how many are free, per message size).\n"
"create:  make your bus NAME with the size it needs (a bus made by its\n"
"         first use takes the daemon's defaults): --pools, message\n"
"         size classes, each the largest payload (K, M suffixes) and how\n"
"         many such messages the bus holds at once, smallest first\n"
"         (default 256:8192,4K:2048,64K:64); --pool-growth, how many\n"
"         times that each class grows to as the bus runs out of it\n"
"         (memory is taken as it grows; 1: fixed; default the daemon's,\n"
"         8); --queues (64), --slots\n"
"         (handles, 256), --ring-size (ring storage, 1M), --mode (0600:\n"
"         r may consume, w may publish). Fails if NAME exists.\n"
"delete:  delete your bus NAME (USER:NAME, or --owner USER: USER's; root\n"
"         only):\n"
"         its queues and messages, and its durable queues' journals, go.\n"
"         Refused while processes use it, naming them, unless --force:\n"
"         their handles then find their queues deleted (EIDRM).\n");
}

/* A bus NAME argument, or USER:NAME for another user's (as --bus takes
 * it): the name in @name, and the owner in *@owner with *@other set,
 * else --owner's. */
static void bus_arg(const char *arg, char name[64], uint32_t *owner,
		    bool *other)
{
	*owner = cli_owner(other);
	snprintf(name, 64, "%s", cli_split_bus(arg, owner, other));
	check_name("bus", name);
}

/* Every bus the daemon shows us (free() it), or a one-line error. */
static struct shmbus_bus_entry *bus_entries(int *n)
{
	SHMBUS_OPTS(shmbus_open_opts, o, .socket_path = cli_socket());
	struct shmbus_bus_entry *e = NULL;
	int cap = 0, got;

	for (;;) {
		got = shmbus__bus_list(&o, e, (unsigned)cap);
		if (got < 0)
			die_reason(got == -ECONNREFUSED
				   ? "no daemon" : strerror(-got));
		if (got <= cap)
			break;
		cap = got + 8;	/* buses made meanwhile */
		free(e);
		e = calloc((size_t)cap, sizeof(*e));
		if (!e)
			die("out of memory");
	}
	*n = got;
	return e;
}

static const char *when(uint64_t ns)
{
	static char buf[32];
	time_t t = (time_t)(ns / 1000000000u);
	struct tm tm;

	if (!ns || !gmtime_r(&t, &tm) ||
	    !strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm))
		return "-";
	return buf;
}

static void entry_json(const struct shmbus_bus_entry *e)
{
	printf("{\"name\":");
	json_str(stdout, e->name);
	printf(",\"owner_uid\":%u,\"owner\":", e->owner_uid);
	json_str(stdout, cli_user_name(e->owner_uid));
	printf(",\"owner_gid\":%u,\"mode\":\"%04o\",\"id\":%u,"
	       "\"arena_bytes\":%llu,\"created\":\"%s\",\"members\":%u,"
	       "\"queues\":%u,\"durable_queues\":%u", e->owner_gid, e->mode,
	       e->id, (unsigned long long)e->arena_size, when(e->created_ns),
	       e->members, e->queues, e->durable);
}

static void bus_list(bool json)
{
	int n;
	struct shmbus_bus_entry *e = bus_entries(&n);

	if (json) {
		putchar('[');
		for (int i = 0; i < n; i++) {
			printf("%s", i ? "," : "");
			entry_json(&e[i]);
			putchar('}');
		}
		printf("]\n");
		free(e);
		return;
	}
	printf("%-12s %-24s %10s %7s %7s %7s %4s %s\n", "OWNER", "BUS",
	       "BYTES", "MEMBERS", "QUEUES", "DURABLE", "MODE", "CREATED");
	for (int i = 0; i < n; i++)
		printf("%-12s %-24s %10llu %7u %7u %7u %04o %s\n",
		       esc(cli_user_name(e[i].owner_uid)), esc(e[i].name),
		       (unsigned long long)e[i].arena_size, e[i].members,
		       e[i].queues, e[i].durable, e[i].mode,
		       when(e[i].created_ns));
	free(e);
}

/* The pools of bus @b, if we may open it read-only: -1 if not. */
static int pools_of(const struct shmbus_bus_entry *b,
		    struct shmbus_pool_info *pi, int cap)
{
	SHMBUS_OPTS(shmbus_open_opts, o, .socket_path = cli_socket(),
		    .flags = SHMBUS_OPEN_RDONLY | SHMBUS_OPEN_NOCREATE |
			     SHMBUS_OPEN_NOSTART | SHMBUS_OPEN_OWNER,
		    .owner_uid = b->owner_uid);
	struct shmbus *bus = shmbus__open(b->name, &o);
	int n;

	if (!bus)
		return -1;
	n = shmbus__pool_count(bus);
	for (int i = 0; i < n && i < cap; i++)
		if (shmbus__pool_info(bus, (unsigned)i, &pi[i]))
			memset(&pi[i], 0, sizeof(pi[i]));
	shmbus__close(bus);
	return n < cap ? n : cap;
}

static void bus_info(const char *arg, bool json)
{
	bool other;
	uint32_t owner;
	char name[64];
	struct shmbus_pool_info pi[8];
	const struct shmbus_bus_entry *b = NULL;
	struct shmbus_bus_entry *e;
	int n, np;

	bus_arg(arg, name, &owner, &other);
	e = bus_entries(&n);
	for (int i = 0; i < n && !b; i++)
		if (!strcmp(e[i].name, name) &&
		    e[i].owner_uid == (other ? owner : (uint32_t)geteuid()))
			b = &e[i];
	if (!b)
		die("no bus '%s' (that you may open)", name);
	np = pools_of(b, pi, 8);
	if (json) {
		entry_json(b);
		printf(",\"pools\":");
		if (np < 0)
			printf("null");
		for (int i = 0; i < np; i++)
			printf("%s{\"payload\":%u,\"chunks\":%u,"
			       "\"chunks_max\":%u,\"free\":%u,\"cached\":%u}",
			       i ? "," : "[", pi[i].payload, pi[i].chunks,
			       pi[i].chunks_max, pi[i].free, pi[i].cached);
		printf("%s}\n", np > 0 ? "]" : np == 0 ? "[]" : "");
		free(e);
		return;
	}
	printf("bus:      %s (owner %s, group %u, mode %04o, id %u)\n",
	       esc(b->name), esc(cli_user_name(b->owner_uid)), b->owner_gid, b->mode,
	       b->id);
	printf("created:  %s\n", when(b->created_ns));
	printf("size:     %llu bytes of memory\n",
	       (unsigned long long)b->arena_size);
	printf("members:  %u processes\n", b->members);
	printf("queues:   %u (%u durable)\n", b->queues, b->durable);
	if (np < 0)
		printf("pools:    (not readable: you may not open this bus)\n");
	for (int i = 0; i < np; i++)
		printf("pool %d:   messages up to %u bytes: %u chunks (grows to "
		       "%u), %u free, %u cached in handles\n", i,
		       pi[i].payload, pi[i].chunks, pi[i].chunks_max,
		       pi[i].free, pi[i].cached);
	free(e);
}

/* BYTES with an optional K, M or G (powers of 1024); die() naming @what. */
static uint64_t parse_size(const char *what, const char *s)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (end == s || errno || *s == '-')
		usage_die("%s: '%s' is not a size (BYTES, or with K, M, G)",
			  what, s);
	switch (*end) {
	case 'K': v <<= 10; end++; break;
	case 'M': v <<= 20; end++; break;
	case 'G': v <<= 30; end++; break;
	}
	if (*end)
		usage_die("%s: '%s' is not a size (BYTES, or with K, M, G)",
			  what, s);
	return v;
}

/* --pools PAYLOAD:COUNT,... into @o. */
static void parse_pools(const char *arg, struct shmbus_open_opts *o)
{
	char buf[256], *save = NULL, *tok;

	if (strlen(arg) >= sizeof(buf))
		usage_die("--pools: too long");
	strcpy(buf, arg);
	o->nr_pools = 0;
	for (tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		char *colon = strchr(tok, ':');
		uint64_t payload;

		if (!colon || o->nr_pools == 8)
			usage_die("--pools: PAYLOAD:COUNT, up to 8 of them, "
				  "not '%s'", tok);
		*colon = '\0';
		payload = parse_size("--pools", tok);
		if (payload > UINT32_MAX)
			usage_die("--pools: payload %s is too large", tok);
		o->pools[o->nr_pools].payload = (uint32_t)payload;
		o->pools[o->nr_pools].count =
			(uint32_t)parse_num("--pools count", colon + 1,
					    UINT32_MAX);
		o->nr_pools++;
	}
	if (!o->nr_pools)
		usage_die("--pools: at least one PAYLOAD:COUNT");
}

static void bus_create(const char *name, struct shmbus_open_opts *o)
{
	struct shmbus_pool_info pi;
	struct shmbus_info bi;
	struct shmbus *bus;

	check_name("bus", name);
	o->socket_path = cli_socket();
	o->flags = SHMBUS_OPEN_EXCL;
	bus = shmbus__open(name, o);
	if (!bus && errno == EEXIST)
		die("bus '%s' exists (shmbus bus info %s)", name, name);
	if (!bus && (errno == EINVAL || errno == EDQUOT || errno == ENOMEM))
		die_reason("cannot create bus: invalid or too large a "
			   "geometry (pools ascending by payload, at least "
			   "64 bytes, counts at least 1; --bus-max of the "
			   "daemon)");
	if (!bus)
		die("cannot create bus '%s': %s", name, strerror(errno));
	shmbus__info(bus, &bi);
	printf("created bus %s: %u queues, %u handles, mode %04o; pools:",
	       name, bi.max_queues, bi.max_slots, bi.mode);
	for (int i = 0; i < shmbus__pool_count(bus); i++)
		if (!shmbus__pool_info(bus, (unsigned)i, &pi))
			printf("%s %u x %u bytes (grows to %u)", i ? "," : "",
			       pi.chunks, pi.payload, pi.chunks_max);
	putchar('\n');
	shmbus__close(bus);
}

static void bus_delete(const char *arg, bool force)
{
	SHMBUS_OPTS(shmbus_open_opts, o, .socket_path = cli_socket());
	struct shmbus_bus_entry was;
	uint32_t owner;
	char name[64];
	bool other;
	int err;

	bus_arg(arg, name, &owner, &other);
	if (other) {
		o.flags = SHMBUS_OPEN_OWNER;
		o.owner_uid = owner;
	}
	err = shmbus__bus_delete(name, force ? SHMBUS_BUS_DELETE_FORCE : 0,
				 &o, &was);
	if (err == -ENOENT)
		die("no bus '%s'", name);
	if (err == -EBUSY || err == -EACCES || err == -EINPROGRESS)
		die_reason(strerror(-err));
	if (err)
		die("cannot delete bus '%s': %s", name, strerror(-err));
	printf("deleted bus %s: %u queue%s, %llu bytes", name, was.queues,
	       was.queues == 1 ? "" : "s",
	       (unsigned long long)was.arena_size);
	if (was.members)
		printf(", %u member%s detached", was.members,
		       was.members == 1 ? "" : "s");
	putchar('\n');
}

int cmd_bus(int argc, char **argv)
{
	static const char *const subs[] = { "list", "info", "create", "delete",
					    NULL };
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "force", no_argument, NULL, 'f' },
		{ "pools", required_argument, NULL, 'p' },
		{ "queues", required_argument, NULL, 'q' },
		{ "slots", required_argument, NULL, 's' },
		{ "ring-size", required_argument, NULL, 'r' },
		{ "pool-growth", required_argument, NULL, 'g' },
		{ "mode", required_argument, NULL, 'm' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	SHMBUS_OPTS(shmbus_open_opts, co);
	bool json = false, force = false, geometry = false, other;
	char *end;
	const char *sub, *name;
	int ret, opt;

	if ((ret = subcommand(&argc, &argv, usage_bus, subs, &sub)) >= 0)
		return ret;
	optind = 0;	/* full getopt reset (glibc) */
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'j': json = true; break;
		case 'f': force = true; break;
		case 'p': parse_pools(optarg, &co); geometry = true; break;
		case 'q':
			co.max_queues = (uint32_t)parse_num("--queues", optarg,
							    UINT32_MAX);
			geometry = true;
			break;
		case 's':
			co.max_slots = (uint32_t)parse_num("--slots", optarg,
							   UINT32_MAX);
			geometry = true;
			break;
		case 'r':
			co.ring_bytes = parse_size("--ring-size", optarg);
			geometry = true;
			break;
		case 'g':
			co.pool_growth = (uint32_t)parse_num("--pool-growth",
							     optarg, 1024);
			if (!co.pool_growth)
				usage_die("--pool-growth: 1..1024 (1: pools of "
					  "fixed size)");
			geometry = true;
			break;
		case 'm':
			co.mode = (uint32_t)strtoul(optarg, &end, 8);
			if (*end || end == optarg || co.mode > 0777)
				usage_die("--mode: an octal mode up to 0777, "
					  "not '%s'", optarg);
			geometry = true;
			break;
		case 'h': usage_bus(stdout); return 0;
		default: usage_bus(stderr); return EXIT_USAGE;
		}
	}
	if (force && strcmp(sub, "delete"))
		usage_die("--force goes with delete");
	if (geometry && strcmp(sub, "create"))
		usage_die("--pools, --pool-growth, --queues, --slots, "
			  "--ring-size and --mode go with create");
	if (json && !strcmp(sub, "delete"))
		usage_die("--json goes with list and info");
	if (!strcmp(sub, "list")) {
		if (optind != argc)
			usage_die("list takes no arguments");
		bus_list(json);
		return 0;
	}
	if (!strcmp(sub, "info")) {
		if (optind + 1 < argc)
			usage_die("info takes at most one bus NAME");
		name = optind < argc ? argv[optind] : cli_bus(&other);
		name = name ? name : getenv("SHMBUS_BUS");
		name = name && *name ? name : "default";
		bus_info(name, json);
		return 0;
	}
	if (optind + 1 != argc)
		usage_die("%s needs exactly one bus NAME", sub);
	if (!strcmp(sub, "create")) {
		if (cli_owner(&other), other)
			usage_die("a bus is created in your own namespace "
				  "only: no --owner");
		bus_create(argv[optind], &co);
		return 0;
	}
	bus_delete(argv[optind], force);
	return 0;
}
