// SPDX-License-Identifier: MIT
/*
 * options.c - shmbusd's settings: the command line and shmbusd.conf.
 *
 * Every setting has one name, used both as a long option (--name VALUE)
 * and as a line of the configuration file (name = VALUE), and one parser
 * for both, so the two never drift apart:
 *
 *	# /etc/shmbus/shmbusd.conf
 *	memory-max = 8G
 *	quota = buses=16,bytes=1G
 *	bus-pools = 256:16384, 4K:4096, 64K:128
 *	log-level = info
 *
 * The file is read first and the command line applied over it, so a
 * flag overrides a line. Unknown names, bad values, a setting given
 * twice (quota excepted: its lines add up), a relative path and a line
 * over 4 KiB are errors with file and line, exit code 2 - which the
 * service unit does not restart on. The file is only read at start: a
 * restart, which clients do not notice, applies a change.
 *
 * The file holds settings that change what the daemon permits, so a
 * file that someone other than the daemon's user (or root) owns, or
 * that group or others may write, is refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client.h"
#include "conftext.h"
#include "shmbusd.h"

#ifndef SHMBUS_SYSCONFDIR
#define SHMBUS_SYSCONFDIR "/etc"
#endif

#define CONF_LINE_MAX	4096

static void usage(FILE *f)
{
	fprintf(f,
"usage: shmbusd [--config FILE | --no-config] [--socket PATH] [--daemonize]\n"
"               [--memory-max BYTES] [--bus-max BYTES]\n"
"               [--bus-queues N] [--bus-slots N] [--bus-ring-size BYTES]\n"
"               [--bus-pools LIST] [--bus-pool-growth N]\n"
"               [--handshake-timeout SECONDS] [--max-pending N]\n"
"               [--max-pending-uid N]\n"
"               [--quota LIST] [--quota-share PCT]\n"
"               [--quota-total-share PCT] [--policy FILE]\n"
"               [--state-dir DIR] [--segment-size BYTES]\n"
"               [--log FILE] [--log-level LEVEL] [--verbose]\n"
"\n"
"The shmbus control-plane daemon: creates bus arenas, hands their fds and\n"
"eventfds to clients, checks credentials, reclaims what dead clients held.\n"
"The data path never goes through it.\n"
"\n"
"  --config FILE    read settings from FILE, one 'name = value' per line\n"
"                   with the names of the long options below (default:\n"
"                   " SHMBUS_SYSCONFDIR "/shmbus/shmbusd.conf as root, else\n"
"                   $XDG_CONFIG_HOME/shmbus/shmbusd.conf or\n"
"                   ~/.config/shmbus/shmbusd.conf, if it exists); options\n"
"                   given here override it\n"
"  --no-config      read no configuration file\n"
"  --socket PATH    listen here (default: $SHMBUS_SOCKET, else\n"
"                   /run/shmbus/shmbusd.sock as root, else\n"
"                   $XDG_RUNTIME_DIR/shmbus/shmbusd.sock, else\n"
"                   /tmp/shmbus-$UID/shmbusd.sock)\n"
"  --daemonize      go to the background once listening; log to\n"
"                   PATH.log unless --log is given\n"
"  --memory-max BYTES  the most all arenas together may take (suffix\n"
"                   K, M, G; default: no total beyond what the memory\n"
"                   cgroup and MemAvailable leave, checked at each\n"
"                   creation)\n"
"  --bus-max BYTES  the most memory one arena may hold, when it is made\n"
"                   and as its pools grow (default 1G)\n"
"  --bus-queues N   queues, topics and subscriptions of a bus whose\n"
"                   creator did not say (default 64; at most 4096)\n"
"  --bus-slots N    producer and consumer handles of such a bus\n"
"                   (default 256; at most 4096)\n"
"  --bus-ring-size BYTES  ring storage of such a bus (default 1M)\n"
"  --bus-pools LIST  its chunk pools, PAYLOAD:COUNT[,PAYLOAD:COUNT...],\n"
"                   smallest payload first, at most 8 (default\n"
"                   256:8192,4K:2048,64K:64)\n"
"  --bus-pool-growth N  a pool of a bus whose creator did not say grows,\n"
"                   as it runs out of chunks, up to N times its count\n"
"                   (default 8; 1: pools of fixed size; at most 1024)\n"
"  --handshake-timeout SECONDS  close a connection that has not opened\n"
"                   a bus (HELLO, BUS_OPEN) by then (default 5)\n"
"  --max-pending N  connections that may be in their handshake at once\n"
"                   (default 64); at the limit a new one pushes out the\n"
"                   oldest of the uid that has the most\n"
"  --max-pending-uid N  connections of one uid in their handshake at\n"
"                   once (default 8; root and the daemon's uid: no\n"
"                   limit); more are closed as soon as accepted\n"
"  --policy FILE    who may create, configure, publish to and consume\n"
"                   from which buses (default for root's daemon:\n"
"                   " SHMBUS_SYSCONFDIR "/shmbus/policy if it exists; none for\n"
"                   a user's); reread on SIGHUP\n"
"  --state-dir DIR  where durable queues keep their journals (default:\n"
"                   /var/lib/shmbus as root, else $XDG_STATE_HOME/shmbus\n"
"                   or ~/.local/state/shmbus; for a --socket other than\n"
"                   the default one, a directory instance-HASH in it, so\n"
"                   that two daemons never share one). Created when the\n"
"                   first durable queue is declared; at start, every bus\n"
"                   found there that no running process holds is made\n"
"                   again from it\n"
"  --segment-size BYTES  a journal segment file grows to this size before\n"
"                   the next one starts (suffix K, M, G; default 64M, at\n"
"                   least 64K); a segment is deleted once every message\n"
"                   in it is settled\n"
"  --log FILE       append the log to FILE instead of stderr\n"
"  --log-level LEVEL  error, warn, info (the default) or debug\n"
"  --verbose        --log-level debug: every connection and attach\n"
"  --quota LIST     per-uid limits, NAME=N[,NAME=N...] with NAME one of\n"
"                   buses (buses created), bytes (their arena bytes; K M G\n"
"                   T suffixes), queues (queues, topics and subscriptions\n"
"                   declared), seats (their consumer seats: eventfds),\n"
"                   conns (open connections), disk (what the journals\n"
"                   of their buses' durable queues take; over it those\n"
"                   publishes fail EDQUOT); N or \"unlimited\". Over\n"
"                   a limit a request fails with EDQUOT and says which.\n"
"                   Root and the daemon's own uid are exempt (a per-user\n"
"                   daemon serves its user only). May be repeated.\n"
"  --quota-share PCT  the limits not given: PCT percent (default 25) of\n"
"                   the daemon's fd budget (RLIMIT_NOFILE, raised to its\n"
"                   hard limit at start) shared seats 1/2, conns 1/8\n"
"                   (two fds each: the socket and the client's pidfd),\n"
"                   buses 1/8 (two fds each), queues = seats/4; bytes:\n"
"                   PCT percent of memory (MemTotal, or the cgroup's\n"
"                   memory.max if lower); disk: twice bytes\n"
"  --quota-total-share PCT  every uid but the exempt ones together: PCT\n"
"                   percent (default 75) of the same budgets, so that the\n"
"                   rest stays for root however many users join in\n"
"  --help           this text\n"
"\n"
"Exit status: 0 after a clean stop (or, with --daemonize, when another\n"
"daemon already serves the socket); 1 when it cannot start or serve; 2\n"
"for a bad option or configuration.\n");
}

/* "64M" and the like (binary suffixes K, M, G, T) into *@v; 0 or -EINVAL. */
static int parse_bytes(const char *s, uint64_t *v)
{
	char *end;
	unsigned long long n;
	unsigned shift = 0;

	errno = 0;
	n = strtoull(s, &end, 10);
	if (errno || end == s || *s == '-')
		return -EINVAL;
	switch (*end) {
	case 'K': case 'k': shift = 10; end++; break;
	case 'M': case 'm': shift = 20; end++; break;
	case 'G': case 'g': shift = 30; end++; break;
	case 'T': case 't': shift = 40; end++; break;
	}
	if (*end || !n || n > (~0ULL >> shift))
		return -EINVAL;
	*v = (uint64_t)n << shift;
	return 0;
}

/* An unsigned number in @lo..@hi; 0 or -EINVAL. */
static int parse_uint(const char *s, unsigned long lo, unsigned long hi,
		      unsigned *v)
{
	char *end;
	unsigned long n;

	errno = 0;
	n = strtoul(s, &end, 10);
	if (errno || end == s || *end || *s == '-' || n < lo || n > hi)
		return -EINVAL;
	*v = n;
	return 0;
}

/* "256:8192,4K:2048" into @ap's pools; 0 or -EINVAL. */
static int parse_pools(const char *s, struct arena_params *ap)
{
	char buf[512], *save = NULL, *tok;
	unsigned n = 0;

	if (snprintf(buf, sizeof(buf), "%s", s) >= (int)sizeof(buf))
		return -EINVAL;
	for (tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		char *colon;
		uint64_t payload;
		unsigned count;

		while (*tok == ' ' || *tok == '\t')
			tok++;
		colon = strchr(tok, ':');
		if (!colon || n == SHMBUS_MAX_POOLS)
			return -EINVAL;
		*colon = '\0';
		for (char *e = colon + strlen(colon + 1); e > colon &&
		     (*e == ' ' || *e == '\t'); e--)
			*e = '\0';
		if (parse_bytes(tok, &payload) || payload < 64 ||
		    payload > (16u << 20) ||
		    parse_uint(colon + 1, 1, SHMBUS_CHUNK_MAX - 1, &count) ||
		    (n && payload <= ap->pools[n - 1].payload))
			return -EINVAL;
		ap->pools[n].payload = payload;
		ap->pools[n].count = count;
		n++;
	}
	if (!n)
		return -EINVAL;
	ap->nr_pools = n;
	return 0;
}

/* "5", "0.5": seconds into nanoseconds (> 0, at most a day). */
static int parse_seconds(const char *s, int64_t *ns)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v > 0) || v > 86400)
		return -EINVAL;
	*ns = (int64_t)(v * NSEC_PER_SEC);
	return *ns > 0 ? 0 : -EINVAL;
}

static int parse_level(const char *s, int *level)
{
	static const char *const names[] = {
		[LOG_ERR_] = "error", [LOG_WARN_] = "warn",
		[LOG_INFO_] = "info", [LOG_DEBUG_] = "debug",
	};

	for (int i = 0; i < (int)(sizeof(names) / sizeof(names[0])); i++)
		if (!strcmp(s, names[i])) {
			*level = i;
			return 0;
		}
	return -EINVAL;
}

/* Where a value came from: a file's line, or the command line. */
struct where {
	const char *file;	/* NULL: the command line */
	unsigned line;
};

__attribute__((format(printf, 3, 4)))
static int bad(const struct where *at, const char *name, const char *fmt, ...)
{
	va_list ap;

	if (at->file)
		fprintf(stderr, "shmbusd: %s:%u: %s: ", at->file, at->line,
			name);
	else
		fprintf(stderr, "shmbusd: --%s: ", name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 2;
}

/* A path as given: absolute in a file (which has no working directory of
 * its own); relative ones on the command line are the caller's. */
static int path_ok(const struct where *at, const char *name, const char *v)
{
	if (!*v)
		return bad(at, name, "an empty path");
	if (at->file && v[0] != '/')
		return bad(at, name, "'%s': want an absolute path", v);
	return 0;
}

enum set_id {
	S_CONFIG = 'c', S_NO_CONFIG = 'n', S_SOCKET = 's', S_DAEMONIZE = 'd',
	S_MEMORY_MAX = 'm', S_BUS_MAX = 'b', S_HANDSHAKE = 't',
	S_PENDING = 'p', S_PENDING_UID = 'U', S_POLICY = 'P', S_LOG = 'l',
	S_VERBOSE = 'v', S_HELP = 'h',
	S_QUOTA = 256, S_QUOTA_SHARE, S_QUOTA_TOTAL, S_STATE_DIR, S_SEGMENT,
	S_LOG_LEVEL, S_BUS_QUEUES, S_BUS_SLOTS, S_BUS_RING, S_BUS_POOLS,
	S_BUS_GROWTH,
};

struct setting {
	const char *name;
	int id;
	bool arg;	/* takes a value */
	bool file;	/* may be a line of the file */
};

static const struct setting settings[] = {
	{ "config",		S_CONFIG,	true,  false },
	{ "no-config",		S_NO_CONFIG,	false, false },
	{ "socket",		S_SOCKET,	true,  true },
	{ "daemonize",		S_DAEMONIZE,	false, false },
	{ "memory-max",		S_MEMORY_MAX,	true,  true },
	{ "bus-max",		S_BUS_MAX,	true,  true },
	{ "bus-queues",		S_BUS_QUEUES,	true,  true },
	{ "bus-slots",		S_BUS_SLOTS,	true,  true },
	{ "bus-ring-size",	S_BUS_RING,	true,  true },
	{ "bus-pools",		S_BUS_POOLS,	true,  true },
	{ "bus-pool-growth",	S_BUS_GROWTH,	true,  true },
	{ "handshake-timeout",	S_HANDSHAKE,	true,  true },
	{ "max-pending",	S_PENDING,	true,  true },
	{ "max-pending-uid",	S_PENDING_UID,	true,  true },
	{ "policy",		S_POLICY,	true,  true },
	{ "quota",		S_QUOTA,	true,  true },
	{ "quota-share",	S_QUOTA_SHARE,	true,  true },
	{ "quota-total-share",	S_QUOTA_TOTAL,	true,  true },
	{ "state-dir",		S_STATE_DIR,	true,  true },
	{ "segment-size",	S_SEGMENT,	true,  true },
	{ "log",		S_LOG,		true,  true },
	{ "log-level",		S_LOG_LEVEL,	true,  true },
	{ "verbose",		S_VERBOSE,	false, false },
	{ "help",		S_HELP,		false, false },
};
#define NR_SETTINGS (sizeof(settings) / sizeof(settings[0]))

static const struct setting *setting_by_id(int id)
{
	for (size_t i = 0; i < NR_SETTINGS; i++)
		if (settings[i].id == id)
			return &settings[i];
	return NULL;
}

/* Copy @v into @dst (a buffer of struct options), or complain. */
static int keep_str(const struct where *at, const char *name, char *dst,
		    size_t cap, const char *v)
{
	if (snprintf(dst, cap, "%s", v) >= (int)cap)
		return bad(at, name, "longer than %zu bytes", cap - 1);
	return 0;
}

/* Apply setting @s = @v; -1 to go on, else the exit code. */
static int apply(const struct setting *s, const char *v,
		 const struct where *at, struct options *o, struct daemon *d)
{
	const char *name = s->name;
	int level;

	switch (s->id) {
	case S_SOCKET:
		if (path_ok(at, name, v) ||
		    keep_str(at, name, o->sockbuf, sizeof(o->sockbuf), v))
			return 2;
		o->sock = o->sockbuf;
		break;
	case S_DAEMONIZE: o->daemonize = true; break;
	case S_MEMORY_MAX:
		if (parse_bytes(v, &d->memory_max))
			return bad(at, name, "'%s': want a number of bytes "
				   "(suffix K, M, G, T)", v);
		break;
	case S_BUS_MAX:
		if (parse_bytes(v, &d->bus_max))
			return bad(at, name, "'%s': want a number of bytes "
				   "(suffix K, M, G, T)", v);
		break;
	case S_BUS_QUEUES:
		if (parse_uint(v, 1, SHMBUS_MAX_QUEUES,
			       &d->bus_defaults.max_queues))
			return bad(at, name, "'%s': want 1..%u", v,
				   SHMBUS_MAX_QUEUES);
		break;
	case S_BUS_SLOTS:
		if (parse_uint(v, 1, SHMBUS_MAX_SLOTS,
			       &d->bus_defaults.max_slots))
			return bad(at, name, "'%s': want 1..%u", v,
				   SHMBUS_MAX_SLOTS);
		break;
	case S_BUS_RING:
		if (parse_bytes(v, &d->bus_defaults.ring_bytes) ||
		    d->bus_defaults.ring_bytes < 4096 ||
		    d->bus_defaults.ring_bytes > (1u << 30))
			return bad(at, name, "'%s': want 4K..1G", v);
		break;
	case S_BUS_POOLS:
		if (parse_pools(v, &d->bus_defaults))
			return bad(at, name, "'%s': want PAYLOAD:COUNT[,...], "
				   "1 to %u of them, payloads 64..16M rising, "
				   "counts 1..%u", v, SHMBUS_MAX_POOLS,
				   SHMBUS_CHUNK_MAX - 1);
		break;
	case S_BUS_GROWTH:
		if (parse_uint(v, 1, ARENA_GROW_MAX, &d->bus_defaults.grow))
			return bad(at, name, "'%s': want 1..%u", v,
				   ARENA_GROW_MAX);
		break;
	case S_HANDSHAKE:
		if (parse_seconds(v, &d->handshake_ns))
			return bad(at, name, "'%s': want seconds (> 0, at most "
				   "86400)", v);
		break;
	case S_PENDING:
	case S_PENDING_UID:
		if (parse_uint(v, 1, 65536, s->id == S_PENDING ?
			       &d->max_pending : &d->max_pending_uid))
			return bad(at, name, "'%s': want 1..65536", v);
		break;
	case S_POLICY:
		if (path_ok(at, name, v) ||
		    keep_str(at, name, o->policybuf, sizeof(o->policybuf), v))
			return 2;
		d->policy_path = o->policybuf;
		d->policy_must = true;
		break;
	case S_QUOTA:
		if (quota_parse(v))
			return bad(at, name, "'%s': want NAME=N[,NAME=N...], "
				   "NAME: buses, bytes, queues, seats, conns, "
				   "disk; N: a number or unlimited", v);
		break;
	case S_QUOTA_SHARE:
		if (quota_set_share(v))
			return bad(at, name, "'%s': want 1..100", v);
		break;
	case S_QUOTA_TOTAL:
		if (quota_set_total_share(v))
			return bad(at, name, "'%s': want 1..100", v);
		break;
	case S_STATE_DIR:
		if (path_ok(at, name, v) ||
		    keep_str(at, name, o->statedirbuf, sizeof(o->statedirbuf),
			     v))
			return 2;
		o->state_dir = o->statedirbuf;
		break;
	case S_SEGMENT:
		if (parse_bytes(v, &o->segment_bytes) ||
		    o->segment_bytes < (64u << 10))
			return bad(at, name, "'%s': want a size of at least "
				   "64K", v);
		break;
	case S_LOG:
		if (path_ok(at, name, v) ||
		    keep_str(at, name, o->logbuf, sizeof(o->logbuf), v))
			return 2;
		o->logpath = o->logbuf;
		break;
	case S_LOG_LEVEL:
		if (parse_level(v, &level))
			return bad(at, name, "'%s': want error, warn, info or "
				   "debug", v);
		dlog_set_level(level);
		break;
	case S_VERBOSE: dlog_set_level(LOG_DEBUG_); break;
	case S_HELP: usage(stdout); return 0;
	}
	return -1;
}

/*
 * The configuration file's default place, into @buf: the system's for
 * root, the user's own (XDG) otherwise. 0, or -ENOENT if there is none.
 */
static int default_config(char *buf, size_t len)
{
	const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
	int n;

	if (geteuid() == 0)
		n = snprintf(buf, len, "%s/shmbus/shmbusd.conf",
			     SHMBUS_SYSCONFDIR);
	else if (xdg && xdg[0] == '/')
		n = snprintf(buf, len, "%s/shmbus/shmbusd.conf", xdg);
	else if (home && home[0] == '/')
		n = snprintf(buf, len, "%s/.config/shmbus/shmbusd.conf", home);
	else
		return -ENOENT;
	return n < (int)len ? 0 : -ENOENT;
}

/*
 * Read the file @path: a missing one is no settings unless @must. -1 to
 * go on, else the exit code.
 */
static int read_config(const char *path, bool must, struct options *o,
		       struct daemon *d)
{
	unsigned seen[NR_SETTINGS] = { 0 };
	struct where at = { .file = path };
	char *line = NULL;
	size_t cap = 0;
	struct stat st;
	ssize_t n;
	int rc = -1, fd;
	FILE *f;

	/* O_NONBLOCK: a FIFO given as the file is refused below, not
	 * waited on */
	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	f = fd >= 0 ? fdopen(fd, "r") : NULL;
	if (fd >= 0 && !f)
		close(fd);
	if (!f) {
		if (!must && (errno == ENOENT || errno == ENOTDIR))
			return -1;
		/* a default place this uid cannot reach (a HOME it may not
		 * enter): said, and gone on without */
		if (!must && errno == EACCES) {
			fprintf(stderr, "shmbusd: configuration %s: %s; going "
				"on without it\n", path, strerror(errno));
			return -1;
		}
		fprintf(stderr, "shmbusd: configuration %s: %s\n", path,
			strerror(errno));
		return 2;
	}
	if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode)) {
		fprintf(stderr, "shmbusd: configuration %s: not a regular "
			"file\n", path);
		fclose(f);
		return 2;
	}
	if ((st.st_uid != geteuid() && st.st_uid != 0) ||
	    (st.st_mode & (S_IWGRP | S_IWOTH))) {
		fprintf(stderr, "shmbusd: configuration %s: owned by uid %u, "
			"mode %04o: it must belong to root or to this "
			"daemon's uid (%u), and only its owner may write it\n",
			path, (unsigned)st.st_uid,
			(unsigned)(st.st_mode & 07777), (unsigned)geteuid());
		fclose(f);
		return 2;
	}
	o->config_path = path;
	while (rc < 0 && (n = getline(&line, &cap, f)) >= 0) {
		const struct setting *s = NULL;
		char *key, *val, *eq;
		size_t i;

		at.line++;
		if (n > CONF_LINE_MAX) {
			fprintf(stderr, "shmbusd: %s:%u: line longer than %d "
				"bytes\n", path, at.line, CONF_LINE_MAX);
			rc = 2;
			break;
		}
		if (strlen(line) != (size_t)n) {
			fprintf(stderr, "shmbusd: %s:%u: a NUL byte\n", path,
				at.line);
			rc = 2;
			break;
		}
		key = conf_trim(line);
		/* a UTF-8 byte order mark an editor put first */
		if (at.line == 1 && !strncmp(key, "\xef\xbb\xbf", 3))
			key = conf_trim(key + 3);
		if (!*key || *key == '#' || *key == ';')
			continue;
		eq = strchr(key, '=');
		if (!eq) {
			fprintf(stderr, "shmbusd: %s:%u: want 'name = value', "
				"not '%s'\n", path, at.line, key);
			rc = 2;
			break;
		}
		*eq = '\0';
		key = conf_trim(key);
		val = conf_trim(eq + 1);
		for (i = 0; i < NR_SETTINGS; i++)
			if (settings[i].file && !strcmp(settings[i].name, key))
				break;
		if (i == NR_SETTINGS) {
			fprintf(stderr, "shmbusd: %s:%u: unknown setting '%s'"
				" (the names are those of the long options; "
				"see shmbusd --help)\n", path, at.line, key);
			rc = 2;
			break;
		}
		s = &settings[i];
		if (seen[i] && s->id != S_QUOTA) {
			rc = bad(&at, key, "given twice (first at line %u)",
				 seen[i]);
			break;
		}
		seen[i] = at.line;
		rc = apply(s, val, &at, o, d);
	}
	if (rc < 0 && ferror(f)) {
		fprintf(stderr, "shmbusd: configuration %s: read error\n",
			path);
		rc = 2;
	}
	free(line);
	fclose(f);
	return rc;
}

/* Make a relative path absolute: the daemon may chdir("/") later. */
static int absolute(const char *what, const char *path, char *buf,
		    size_t len, const char **out)
{
	char cwd[PATH_MAX];

	if (path[0] == '/') {
		*out = path;
		return 0;
	}
	if (!getcwd(cwd, sizeof(cwd)) ||
	    snprintf(buf, len, "%s/%s", cwd, path) >= (int)len) {
		fprintf(stderr, "shmbusd: %s %s: path too long\n", what, path);
		return 1;
	}
	*out = buf;
	return 0;
}

int options_parse(int argc, char **argv, struct options *o,
		  struct daemon *d)
{
	struct option longopts[NR_SETTINGS + 1];
	static const char shortopts[] = "+c:s:dm:b:t:p:U:P:l:vh";
	const char *config = NULL;
	bool no_config = false;
	struct where cmdline = { 0 };
	char why[128];
	int opt, rc;

	for (size_t i = 0; i < NR_SETTINGS; i++)
		longopts[i] = (struct option){
			.name = settings[i].name,
			.has_arg = settings[i].arg ? required_argument
						   : no_argument,
			.val = settings[i].id,
		};
	memset(&longopts[NR_SETTINGS], 0, sizeof(longopts[0]));

	d->bus_max = 1ULL << 30;
	d->handshake_ns = 5 * NSEC_PER_SEC;
	d->max_pending = 64;
	d->max_pending_uid = 8;

	/* pass 1: which file, and whether the command line is well formed */
	while ((opt = getopt_long(argc, argv, shortopts, longopts,
				  NULL)) != -1) {
		if (opt == S_CONFIG)
			config = optarg;
		else if (opt == S_NO_CONFIG)
			no_config = true;
		else if (opt == S_HELP) {
			usage(stdout);
			return 0;
		} else if (opt == '?' || opt == ':') {
			fprintf(stderr, "see shmbusd --help\n");
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "shmbusd: unexpected argument '%s' (see "
			"shmbusd --help)\n", argv[optind]);
		return 2;
	}
	if (config && no_config) {
		fprintf(stderr, "shmbusd: --config and --no-config together\n");
		return 2;
	}
	if (config) {
		rc = read_config(config, true, o, d);
	} else if (!no_config &&
		   !default_config(o->configbuf, sizeof(o->configbuf))) {
		rc = read_config(o->configbuf, false, o, d);
	} else {
		rc = -1;
	}
	if (rc >= 0)
		return rc;

	/* pass 2: the command line over the file */
	optind = 0;
	opterr = 0;	/* pass 1 said it all */
	while ((opt = getopt_long(argc, argv, shortopts, longopts,
				  NULL)) != -1) {
		const struct setting *s = setting_by_id(opt);

		if (!s || s->id == S_CONFIG || s->id == S_NO_CONFIG)
			continue;
		rc = apply(s, optarg, &cmdline, o, d);
		if (rc >= 0)
			return rc;
	}

	/* the default geometry, whole (the library's where none is set),
	 * fits the limits: else every bus left to it would be refused */
	{
		struct arena_params ap = d->bus_defaults;
		uint64_t size;

		strcpy(ap.name, "default");

		if (arena_params_check(&ap, why, sizeof(why))) {
			fprintf(stderr, "shmbusd: the default bus geometry: "
				"%s\n", why);
			return 2;
		}
		size = arena_backed_for(&ap);
		if (size > d->bus_max ||
		    (d->memory_max && size > d->memory_max)) {
			fprintf(stderr, "shmbusd: the default bus geometry "
				"takes %llu bytes, over %s (%llu): set "
				"bus-queues, bus-slots, bus-ring-size or "
				"bus-pools smaller, or the limit larger\n",
				(unsigned long long)size,
				size > d->bus_max ? "bus-max" : "memory-max",
				(unsigned long long)(size > d->bus_max ?
						     d->bus_max :
						     d->memory_max));
			return 2;
		}
	}

	if (!o->sock) {
		if (shmbus_socket_path(o->sockbuf, sizeof(o->sockbuf))) {
			fprintf(stderr, "shmbusd: socket path too long\n");
			return 1;
		}
		o->sock = o->sockbuf;
	}
	/* paths used after --daemonize went to "/" */
	if (absolute("--socket", o->sock, o->cwdbuf, sizeof(o->sockbuf),
		     &o->sock))
		return 1;
	if (o->sock == o->cwdbuf) {
		memcpy(o->sockbuf, o->cwdbuf, sizeof(o->sockbuf));
		o->sock = o->sockbuf;
	}
	if (o->state_dir &&
	    absolute("--state-dir", o->state_dir, o->statebuf,
		     sizeof(o->statebuf), &o->state_dir))
		return 1;
	/* root's daemon serves every user: its policy is the system's */
	if (!d->policy_path && geteuid() == 0)
		d->policy_path = SHMBUS_SYSCONFDIR "/shmbus/policy";
	/* reread on SIGHUP, after --daemonize went to "/" */
	if (d->policy_path &&
	    absolute("--policy", d->policy_path, o->policyabs,
		     sizeof(o->policyabs), &d->policy_path))
		return 1;
	if (o->daemonize && !o->logpath) {
		snprintf(o->logbuf, sizeof(o->logbuf), "%s.log", o->sock);
		o->logpath = o->logbuf;
	}
	return -1;
}
