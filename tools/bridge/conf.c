// SPDX-License-Identifier: MIT
/*
 * conf.c - the bridge's configuration: command-line options and a file.
 *
 * Every setting has one name, used both as a long option (--name VALUE)
 * and in the file (name = VALUE), so the two never drift apart. The file
 * has global settings first, then one section per route:
 *
 *	amqp = amqps://rabbit.example/prod
 *	credentials = /etc/shmbus/amqp.cred
 *
 *	[out orders]
 *	from = orders
 *	exchange = orders
 *	routing-key = created
 *
 *	[in work]
 *	queue = work
 *	declare = quorum
 *	to = work
 *
 * Options given on the command line are settings of the global section,
 * plus one out route (--from or --from-topic) and one in route (--queue),
 * named "out" and "in". Unknown names and bad values are errors, with
 * the file and line.
 *
 * Secrets (a credentials file, a signing key, a TLS client key) must be
 * regular files that no other user may read or write, as ssh holds its
 * keys: a password or a key that others could read is refused, not
 * warned about. A password in the broker URL is taken, with a warning,
 * and blanked out of the command line (/proc/PID/cmdline) once read.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bridge.h"
#include "conftext.h"

struct where {
	const char *file;	/* NULL: the command line */
	unsigned line;
};

__attribute__((format(printf, 2, 3), noreturn))
static void bad(const struct where *at, const char *fmt, ...)
{
	va_list ap;

	if (at && at->file)
		fprintf(stderr, "shmbus-bridge: %s:%u: ", at->file, at->line);
	else
		fputs("shmbus-bridge: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static void set_str(const struct where *at, const char *name, char *dst,
		    size_t cap, const char *v)
{
	if (strlen(v) >= cap)
		bad(at, "%s: longer than %zu bytes", name, cap - 1);
	strcpy(dst, v);
}

/* A local name: 1..63 bytes of A-Z a-z 0-9 . _ - (and, for a topic
 * pattern, * and >), not starting with '.'. The bus checks again. */
static void set_local(const struct where *at, const char *name, char *dst,
		      const char *v, bool pattern)
{
	size_t n = strlen(v);

	if (!n || n >= BR_LOCAL_MAX || v[0] == '.')
		goto fail;
	for (size_t i = 0; i < n; i++) {
		char ch = v[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
		      ch == '-' || (pattern && (ch == '*' || ch == '>')) ||
		      (!strcmp(name, "to-topic") && (ch == '{' || ch == '}'))))
			goto fail;
	}
	strcpy(dst, v);
	return;
fail:
	bad(at, "%s '%s': expected 1..%d bytes of A-Z a-z 0-9 . _ -%s, not "
	    "starting with '.'", name, v, BR_LOCAL_MAX - 1,
	    pattern ? " * >" : "");
}

/* @path opened for reading, checked to be a regular file that only its
 * owner may read or write (mode & 077 == 0). */
static FILE *open_private(const struct where *at, const char *what,
			  const char *path)
{
	struct stat st;
	FILE *f = fopen(path, "re");

	if (!f)
		bad(at, "%s: cannot read %s: %s", what, path, strerror(errno));
	if (fstat(fileno(f), &st))
		bad(at, "%s: %s: %s", what, path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		bad(at, "%s: %s is not a regular file", what, path);
	if (st.st_mode & 077)
		bad(at, "%s: %s may be read or written by other users (mode "
		    "%04o): chmod 600 it", what, path,
		    (unsigned)(st.st_mode & 07777));
	return f;
}

/* A signing key: the file's bytes, all of them, BR_KEY_MIN..BR_KEY_MAX. */
static void load_key(const struct where *at, struct br_key *k,
		     const char *path)
{
	FILE *f = open_private(at, "sign-key", path);
	size_t n = fread(k->b, 1, sizeof(k->b), f);

	if (ferror(f))
		bad(at, "sign-key: %s: read error", path);
	if (n == sizeof(k->b) && fgetc(f) != EOF)
		bad(at, "sign-key: %s: longer than %d bytes", path, BR_KEY_MAX);
	fclose(f);
	if (n < BR_KEY_MIN)
		bad(at, "sign-key: %s: %zu bytes, at least %d needed (e.g. "
		    "head -c 32 /dev/urandom)", path, n, BR_KEY_MIN);
	k->len = n;
}

/* Where the password of an amqp[s]://USER:PASS@HOST... URL is: its
 * offset and length, or 0 when it has none. */
static size_t url_password(const char *url, size_t *len)
{
	const char *a = strstr(url, "://"), *end, *at, *colon;

	if (!a)
		return 0;
	a += 3;
	end = a + strcspn(a, "/?#");
	at = NULL;
	for (const char *p = a; p < end; p++)
		if (*p == '@')
			at = p;
	if (!at)
		return 0;
	colon = memchr(a, ':', (size_t)(at - a));
	if (!colon)
		return 0;
	*len = (size_t)(at - colon - 1);
	return (size_t)(colon + 1 - url);
}

/* @url with its password, if any, shown as "****" (for messages). */
static const char *url_shown(const char *url)
{
	static char buf[1100];
	size_t len, off = url_password(url, &len);

	if (!off)
		return url;
	snprintf(buf, sizeof(buf), "%.*s****%s", (int)off, url,
		 url + off + len);
	return buf;
}

static unsigned get_window(const struct where *at, const char *v)
{
	char *end;
	unsigned long n;

	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno || *end || end == v || !n || n > BR_MAX_WINDOW)
		bad(at, "prefetch '%s': expected 1..%u", v, BR_MAX_WINDOW);
	return (unsigned)n;
}

/* Settings of a route. 0, or -1 if @name is not one. */
static int route_key(const struct where *at, struct br_route *r,
		     const char *name, const char *v)
{
	if (!strcmp(name, "prefetch")) {
		r->window = get_window(at, v);
	} else if (r->dir == BR_OUT && !strcmp(name, "from")) {
		set_local(at, name, r->from_queue, v, false);
	} else if (r->dir == BR_OUT && !strcmp(name, "from-topic")) {
		set_local(at, name, r->from_topic, v, true);
	} else if (r->dir == BR_OUT && !strcmp(name, "group")) {
		set_local(at, name, r->group, v, false);
	} else if (r->dir == BR_OUT && !strcmp(name, "exchange")) {
		set_str(at, name, r->exchange, sizeof(r->exchange), v);
	} else if (r->dir == BR_OUT && !strcmp(name, "routing-key")) {
		set_str(at, name, r->key, sizeof(r->key), v);
	} else if (r->dir == BR_IN && !strcmp(name, "queue")) {
		set_str(at, name, r->queue, sizeof(r->queue), v);
	} else if (r->dir == BR_IN && !strcmp(name, "declare")) {
		if (!strcmp(v, "none"))
			r->declare = BR_DECLARE_NONE;
		else if (!strcmp(v, "classic"))
			r->declare = BR_DECLARE_CLASSIC;
		else if (!strcmp(v, "quorum"))
			r->declare = BR_DECLARE_QUORUM;
		else
			bad(at, "declare '%s': expected none, classic or "
			    "quorum", v);
	} else if (r->dir == BR_IN && !strcmp(name, "dead-letter-exchange")) {
		set_str(at, name, r->dlx, sizeof(r->dlx), v);
	} else if (r->dir == BR_IN &&
		   !strcmp(name, "dead-letter-routing-key")) {
		set_str(at, name, r->dlx_key, sizeof(r->dlx_key), v);
	} else if (r->dir == BR_IN && !strcmp(name, "bind")) {
		/* EXCHANGE[:KEY] */
		const char *colon = strchr(v, ':');
		size_t n = colon ? (size_t)(colon - v) : strlen(v);

		if (!n || n >= sizeof(r->bind_exchange))
			bad(at, "bind '%s': expected EXCHANGE[:KEY]", v);
		memcpy(r->bind_exchange, v, n);
		r->bind_exchange[n] = '\0';
		set_str(at, name, r->bind_key, sizeof(r->bind_key),
			colon ? colon + 1 : "");
	} else if (!strcmp(name, "sign-key")) {
		load_key(at, &r->sign, v);
	} else if (r->dir == BR_IN && !strcmp(name, "to")) {
		set_local(at, name, r->to_queue, v, false);
	} else if (r->dir == BR_IN && !strcmp(name, "to-topic")) {
		set_local(at, name, r->to_topic, v, false);
	} else {
		return -1;
	}
	return 0;
}

/* Global settings. 0, or -1 if @name is not one. */
static int global_key(const struct where *at, struct br_conf *c,
		      const char *name, const char *v)
{
	if (!strcmp(name, "amqp")) {
		size_t len;

		if (!br_broker_for(v) || !br_amqp_url_ok(v))
			bad(at, "bad broker URL '%s' (amqp[s]://[USER:PASS@]"
			    "HOST[:PORT][/VHOST])", url_shown(v));
		set_str(at, name, c->url, sizeof(c->url), v);
		if (url_password(v, &len))
			fprintf(stderr, "shmbus-bridge: warning: the broker "
				"URL holds a password: better in a file "
				"(credentials = FILE, mode 600)\n");
	} else if (!strcmp(name, "sign-key")) {
		load_key(at, &c->sign, v);
	} else if (!strcmp(name, "credentials")) {
		br_conf_credentials(c, v);
	} else if (!strcmp(name, "bus")) {
		set_local(at, name, c->bus, v, false);
	} else if (!strcmp(name, "heartbeat")) {
		char *end;
		unsigned long n;

		errno = 0;
		n = strtoul(v, &end, 10);
		if (errno || *end || end == v || n > 600)
			bad(at, "heartbeat '%s': expected 0..600 seconds (0: "
			    "none)", v);
		c->heartbeat = (unsigned)n;
	} else if (!strcmp(name, "tls-ca")) {
		set_str(at, name, c->tls_ca, sizeof(c->tls_ca), v);
	} else if (!strcmp(name, "tls-cert")) {
		set_str(at, name, c->tls_cert, sizeof(c->tls_cert), v);
	} else if (!strcmp(name, "tls-key")) {
		/* librabbitmq reads it at each connect: checked here */
		fclose(open_private(at, name, v));
		set_str(at, name, c->tls_key, sizeof(c->tls_key), v);
	} else if (!strcmp(name, "reply-queue")) {
		set_str(at, name, c->reply_queue, sizeof(c->reply_queue), v);
	} else if (!strcmp(name, "local-reply-queue")) {
		set_local(at, name, c->local_reply_queue, v, false);
	} else if (!strcmp(name, "reply-timeout")) {
		char *end;
		double s;

		errno = 0;
		s = strtod(v, &end);
		if (errno || *end || end == v || !(s >= 0.001 && s <= 86400))
			bad(at, "reply-timeout '%s': expected seconds, 0.001.."
			    "86400", v);
		c->reply_timeout_ms = (unsigned)(s * 1000 + 0.5);
	} else if (!strcmp(name, "start-daemon")) {
		if (strcmp(v, "true") && strcmp(v, "false"))
			bad(at, "start-daemon '%s': expected true or false", v);
		c->no_start = !strcmp(v, "false");
	} else if (!strcmp(name, "tls-insecure")) {
		if (strcmp(v, "true") && strcmp(v, "false"))
			bad(at, "tls-insecure '%s': expected true or false", v);
		c->tls_insecure = !strcmp(v, "true");
	} else {
		return -1;
	}
	return 0;
}

static struct br_route *new_route(const struct where *at, struct br_conf *c,
				  enum br_dir dir, const char *name)
{
	struct br_route *r;

	if (c->nr_routes == BR_MAX_ROUTES)
		bad(at, "more than %d routes", BR_MAX_ROUTES);
	for (unsigned i = 0; i < c->nr_routes; i++)
		if (!strcmp(c->routes[i].name, name))
			bad(at, "a second route named '%s'", name);
	r = &c->routes[c->nr_routes++];
	memset(r, 0, sizeof(*r));
	r->dir = dir;
	r->window = 64;
	r->declare = BR_DECLARE_NONE;
	set_str(at, "route name", r->name, sizeof(r->name), name);
	return r;
}

static void read_file(struct br_conf *c, const char *path)
{
	struct where at = { path, 0 };
	struct br_route *r = NULL;
	char line[2048];
	FILE *f = fopen(path, "r");

	if (!f)
		bad(NULL, "cannot read %s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		char *s, *eq, *k, *v;

		at.line++;
		/* cut in two, its tail would read as a line of its own */
		if (!strchr(line, '\n') && !feof(f))
			bad(&at, "line too long (%zu bytes at most)",
			    sizeof(line) - 2);
		s = conf_trim(line);
		if (!*s || *s == '#' || *s == ';')
			continue;
		if (*s == '[') {
			char dir[8], name[64];
			char *close = strchr(s, ']');

			if (!close || close[1] ||
			    sscanf(s, "[%7s %63[^]]]", dir, name) != 2 ||
			    (strcmp(dir, "out") && strcmp(dir, "in")))
				bad(&at, "expected [out NAME] or [in NAME]");
			r = new_route(&at, c, strcmp(dir, "out") ? BR_IN : BR_OUT,
				      conf_trim(name));
			continue;
		}
		eq = strchr(s, '=');
		if (!eq)
			bad(&at, "expected NAME = VALUE");
		*eq = '\0';
		k = conf_trim(s);
		v = conf_trim(eq + 1);
		if (r ? route_key(&at, r, k, v) : global_key(&at, c, k, v))
			bad(&at, "unknown setting '%s'%s", k,
			    r ? (r->dir == BR_OUT ? " in an out route" :
				 " in an in route") : "");
	}
	if (ferror(f))
		bad(&at, "read error");
	fclose(f);
}

void br_conf_credentials(struct br_conf *c, const char *path)
{
	char line[520], *colon;
	FILE *f = open_private(NULL, "credentials", path);

	if (!fgets(line, sizeof(line), f))
		bad(NULL, "%s: empty", path);
	fclose(f);
	line[strcspn(line, "\r\n")] = '\0';
	colon = strchr(line, ':');
	if (!colon || colon == line || colon - line >= (long)sizeof(c->user) ||
	    strlen(colon + 1) >= sizeof(c->pass))
		bad(NULL, "%s: expected one line USER:PASS", path);
	*colon = '\0';
	strcpy(c->user, line);
	strcpy(c->pass, colon + 1);
	explicit_bzero(line, sizeof(line));
}

static void usage(FILE *f)
{
	fputs(
"usage: shmbus-bridge [--config FILE] [--amqp URL] [--credentials FILE]\n"
"                     [--bus NAME] [--heartbeat SECONDS]\n"
"                     [--tls-ca FILE] [--tls-cert FILE]\n"
"                     [--tls-key FILE] [--tls-insecure true|false]\n"
"                     [out: --from QUEUE | --from-topic PATTERN --group G,\n"
"                      --exchange EX [--routing-key KEY]]\n"
"                     [in: --queue AMQPQUEUE [--declare none|classic|quorum]\n"
"                      [--dead-letter-exchange EX] [--dead-letter-routing-key K]\n"
"                      [--bind EX[:KEY]], --to QUEUE | --to-topic TOPIC]\n"
"                     [--prefetch N] [--sign-key FILE]\n"
"                     [--reply-queue AMQPQUEUE|none] [--reply-timeout S]\n"
"                     [--local-reply-queue QUEUE]\n"
"                     [--start-daemon true|false]\n"
"  Link a bus to an AMQP 0-9-1 broker (RabbitMQ), at least once both ways.\n"
"  out: local messages are published persistent with publisher confirms\n"
"  and acked here only once the broker confirmed them. in: broker\n"
"  deliveries are acked there only once published here (and confirmed,\n"
"  for a durable queue). URL: amqp[s]://[USER:PASS@]HOST[:PORT][/VHOST].\n"
"  --credentials FILE: one line USER:PASS, used instead of the URL's\n"
"  (mode 600: a file other users may read is refused).\n"
"  --sign-key FILE: a shared key (32..1024 bytes, mode 600): out routes\n"
"  sign what they publish (HMAC-SHA256), in routes deliver only what\n"
"  verifies and dead-letter the rest (reason signature).\n"
"  --config FILE: settings and routes ([out NAME], [in NAME] sections).\n"
"  --prefetch: messages in flight per route (1..1024, default 64).\n"
"  Requests cross both ways: replies to ours come to --reply-queue\n"
"  (default shmbus.reply.HOST.BUS), the broker's wait --reply-timeout\n"
"  (default 30 s) for theirs; --reply-queue none: requests do not cross.\n"
"  --heartbeat: AMQP heartbeat in seconds (default 10); a connection\n"
"  silent for two of them is given up and made again.\n"
"  --start-daemon false: if shmbusd is not running, exit 1 instead of\n"
"  starting it (under a service manager, which starts the daemon).\n"
"  SIGINT/SIGTERM: stop, waiting up to 5 s for what is in flight; the\n"
"  counters go to stderr.\n", f);
}

void br_conf_parse(struct br_conf *c, int argc, char **argv)
{
	/* every option takes a value and is a setting of the same name */
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 0 },
		{ "amqp", required_argument, NULL, 0 },
		{ "credentials", required_argument, NULL, 0 },
		{ "bus", required_argument, NULL, 0 },
		{ "heartbeat", required_argument, NULL, 0 },
		{ "tls-ca", required_argument, NULL, 0 },
		{ "tls-cert", required_argument, NULL, 0 },
		{ "tls-key", required_argument, NULL, 0 },
		{ "tls-insecure", required_argument, NULL, 0 },
		{ "reply-queue", required_argument, NULL, 0 },
		{ "local-reply-queue", required_argument, NULL, 0 },
		{ "reply-timeout", required_argument, NULL, 0 },
		{ "start-daemon", required_argument, NULL, 0 },
		{ "from", required_argument, NULL, 0 },
		{ "from-topic", required_argument, NULL, 0 },
		{ "group", required_argument, NULL, 0 },
		{ "exchange", required_argument, NULL, 0 },
		{ "routing-key", required_argument, NULL, 0 },
		{ "queue", required_argument, NULL, 0 },
		{ "declare", required_argument, NULL, 0 },
		{ "dead-letter-exchange", required_argument, NULL, 0 },
		{ "dead-letter-routing-key", required_argument, NULL, 0 },
		{ "bind", required_argument, NULL, 0 },
		{ "to", required_argument, NULL, 0 },
		{ "to-topic", required_argument, NULL, 0 },
		{ "prefetch", required_argument, NULL, 0 },
		{ "sign-key", required_argument, NULL, 0 },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const char *const out_keys[] = { "from", "from-topic", "group",
		"exchange", "routing-key", NULL };
	static const char *const in_keys[] = { "queue", "declare",
		"dead-letter-exchange", "dead-letter-routing-key", "bind",
		"to", "to-topic", NULL };
	struct br_route flag_out = { .dir = BR_OUT, .window = 64 };
	struct br_route flag_in = { .dir = BR_IN, .window = 64 };
	bool any_out = false, any_in = false;
	unsigned window = 0;
	int opt, idx;

	memset(c, 0, sizeof(*c));
	c->heartbeat = BR_HEARTBEAT_S;
	optind = 0;
	while ((opt = getopt_long(argc, argv, "h", longopts, &idx)) != -1) {
		const char *name = longopts[idx].name;
		bool done = false;

		if (opt == 'h') {
			usage(stdout);
			exit(0);
		}
		if (opt != 0) {
			usage(stderr);
			exit(2);
		}
		if (!strcmp(name, "config")) {
			read_file(c, optarg);
			continue;
		}
		if (!strcmp(name, "prefetch")) {
			window = get_window(NULL, optarg);
			continue;
		}
		for (unsigned i = 0; out_keys[i] && !done; i++)
			if (!strcmp(name, out_keys[i])) {
				route_key(NULL, &flag_out, name, optarg);
				any_out = done = true;
			}
		for (unsigned i = 0; in_keys[i] && !done; i++)
			if (!strcmp(name, in_keys[i])) {
				route_key(NULL, &flag_in, name, optarg);
				any_in = done = true;
			}
		if (!done)
			global_key(NULL, c, name, optarg);
		if (!strcmp(name, "amqp")) {
			/* copied: keep it out of /proc/PID/cmdline */
			size_t len, off = url_password(optarg, &len);

			if (off)
				memset(optarg + off, '*', len);
		}
	}
	if (optind != argc)
		bad(NULL, "unexpected argument '%s'", argv[optind]);
	if (any_out) {
		struct br_route *r = new_route(NULL, c, BR_OUT, "out");

		memcpy(r->from_queue, flag_out.from_queue, sizeof(r->from_queue));
		memcpy(r->from_topic, flag_out.from_topic, sizeof(r->from_topic));
		memcpy(r->group, flag_out.group, sizeof(r->group));
		memcpy(r->exchange, flag_out.exchange, sizeof(r->exchange));
		memcpy(r->key, flag_out.key, sizeof(r->key));
	}
	if (any_in) {
		struct br_route *r = new_route(NULL, c, BR_IN, "in");

		flag_in.window = r->window;
		memcpy(flag_in.name, r->name, sizeof(r->name));
		*r = flag_in;
	}
	if (window)	/* --prefetch: every route of the command line */
		for (unsigned i = 0; i < c->nr_routes; i++)
			if (!strcmp(c->routes[i].name, "out") ||
			    !strcmp(c->routes[i].name, "in"))
				c->routes[i].window = window;
	if (!c->url[0])
		bad(NULL, "no broker: --amqp URL (or amqp = URL in the file)");
	if (!c->nr_routes)
		bad(NULL, "no route: --from QUEUE --exchange EX (out), "
		    "--queue Q --to QUEUE (in), or a file with [out NAME] and "
		    "[in NAME] sections");
	if ((c->tls_cert[0] != 0) != (c->tls_key[0] != 0))
		bad(NULL, "tls-cert and tls-key go together");
	for (unsigned i = 0; i < c->nr_routes; i++) {
		struct br_route *r = &c->routes[i];

		if (!r->sign.len)
			r->sign = c->sign;

		if (r->dir == BR_OUT) {
			if (!r->from_queue[0] == !r->from_topic[0])
				bad(NULL, "route %s: one of from and "
				    "from-topic", r->name);
			if (r->from_topic[0] && !r->group[0])
				bad(NULL, "route %s: from-topic needs a group "
				    "(its persistent subscription)", r->name);
			if (!r->exchange[0])
				bad(NULL, "route %s: no exchange", r->name);
		} else {
			if (!r->queue[0])
				bad(NULL, "route %s: no queue", r->name);
			if (!r->to_queue[0] == !r->to_topic[0])
				bad(NULL, "route %s: one of to and to-topic",
				    r->name);
		}
	}
}
