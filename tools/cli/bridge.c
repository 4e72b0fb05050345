// SPDX-License-Identifier: MIT
/*
 * bridge.c - shmbus bridge: forward a local queue to an AMQP 0-9-1
 * broker (RabbitMQ), at least once.
 *
 * Each local message is received under a lease (up to --prefetch at a
 * time), published persistent (delivery_mode 2) on a channel in confirm
 * mode, and acked locally only when the broker's basic.ack covers its
 * delivery tag. A basic.nack, or a connection or channel that is lost,
 * nacks the local messages in flight: the queue delivers them again, to
 * us after the reconnect or to another consumer. A bridge killed -9
 * loses nothing either: its leases run out and the queue redelivers.
 * The price of both is a duplicate at the broker when a confirm was lost
 * on the way: the AMQP message-id is the shmbus message id, the same at
 * every delivery, for a consumer that wants to drop them.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <shmbus.h>

#include "cli.h"

#if __has_include(<amqp.h>)
#include <amqp.h>
#include <amqp_tcp_socket.h>

#define BR_CH		1
#define BR_MAX_WINDOW	256	/* a consumer's prefetch at most */
#define BR_MAX_HEADERS	32
#define BR_BACKOFF_MIN_MS	100
#define BR_BACKOFF_MAX_MS	10000
#define BR_DRAIN_MS	5000	/* at exit: wait this long for confirms */
#define BR_CONNECT_S	5	/* TCP connect timeout */

struct br_cfg {
	struct amqp_connection_info url;
	char *url_buf;		/* amqp_parse_url() points into it */
	char user[256], pass[256];
	const char *from, *exchange, *key;
	unsigned window;
};

/* A local message published and not yet confirmed: its delivery tag on
 * the current channel is the window's base tag plus its place. */
struct br_flight {
	struct shmbus_msg msg;
};

struct br {
	struct br_cfg cfg;
	struct shmbus_consumer *c;
	amqp_connection_state_t conn;
	struct br_flight *fl;	/* a ring of cfg.window */
	unsigned head, n;	/* oldest in flight, how many */
	uint64_t first_tag;	/* delivery tag of fl[head] */
	uint64_t next_tag;	/* the tag the next publish gets */
	bool idle;		/* the last fill found the queue empty */
	uint64_t forwarded, confirmed, nacked, reconnects;
};

static void usage_bridge(FILE *f)
{
	fputs(
"usage: shmbus bridge --amqp URL --from QUEUE --exchange EX\n"
"                     [--routing-key KEY] [--credentials FILE]\n"
"                     [--prefetch N]\n"
"  Forward the messages of local queue QUEUE to exchange EX of an AMQP\n"
"  0-9-1 broker, persistent, with publisher confirms: a message is acked\n"
"  here only once the broker confirmed it (at least once; the AMQP\n"
"  message-id is the shmbus message id, the same on a redelivery).\n"
"  URL: amqp://[USER:PASS@]HOST[:PORT][/VHOST]. --credentials FILE: one\n"
"  line USER:PASS, used instead of the URL's. --prefetch: messages in\n"
"  flight (1..256, default 64). SIGINT/SIGTERM: stop, waiting up to 5 s\n"
"  for the confirms of what is in flight; the counters go to stderr.\n",
	      f);
}

static void read_credentials(struct br_cfg *cfg, const char *path)
{
	char line[520], *colon;
	FILE *f = fopen(path, "r");

	if (!f)
		die("cannot read %s: %s", path, strerror(errno));
	if (!fgets(line, sizeof(line), f))
		die("%s: empty", path);
	fclose(f);
	line[strcspn(line, "\r\n")] = '\0';
	colon = strchr(line, ':');
	if (!colon || colon - line >= (long)sizeof(cfg->user) ||
	    strlen(colon + 1) >= sizeof(cfg->pass))
		die("%s: expected one line USER:PASS", path);
	*colon = '\0';
	strcpy(cfg->user, line);
	strcpy(cfg->pass, colon + 1);
	explicit_bzero(line, sizeof(line));
	cfg->url.user = cfg->user;
	cfg->url.password = cfg->pass;
}

/* ---- the AMQP side --------------------------------------------------- */

static bool rpc_ok(amqp_connection_state_t c, const char *what)
{
	amqp_rpc_reply_t r = amqp_get_rpc_reply(c);

	if (r.reply_type == AMQP_RESPONSE_NORMAL)
		return true;
	fprintf(stderr, "shmbus: bridge: AMQP %s failed: %s\n", what,
		r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION ?
		amqp_error_string2(r.library_error) : "refused by the broker");
	return false;
}

/* A connection with channel BR_CH open in confirm mode, or NULL. */
static amqp_connection_state_t br_connect(const struct br_cfg *cfg)
{
	const struct amqp_connection_info *u = &cfg->url;
	amqp_connection_state_t c = amqp_new_connection();
	amqp_socket_t *s = c ? amqp_tcp_socket_new(c) : NULL;
	struct timeval connect_tmo = { BR_CONNECT_S, 0 };
	amqp_rpc_reply_t r;

	if (!s)
		goto fail;
	/* bounded: a host that drops SYNs must not hold off the backoff
	 * loop, nor a SIGTERM, for the kernel's minutes */
	if (amqp_socket_open_noblock(s, u->host, u->port, &connect_tmo) !=
	    AMQP_STATUS_OK) {
		fprintf(stderr, "shmbus: bridge: cannot connect to %s:%d\n",
			u->host, u->port);
		goto fail;
	}
	r = amqp_login(c, u->vhost, 0, 131072, 30, AMQP_SASL_METHOD_PLAIN,
		       u->user, u->password);
	if (r.reply_type != AMQP_RESPONSE_NORMAL) {
		fprintf(stderr, "shmbus: bridge: login to %s:%d failed: %s\n",
			u->host, u->port,
			r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION ?
			amqp_error_string2(r.library_error) :
			"refused by the broker");
		goto fail;
	}
	amqp_channel_open(c, BR_CH);
	if (!rpc_ok(c, "channel.open"))
		goto fail;
	amqp_confirm_select(c, BR_CH);
	if (!rpc_ok(c, "confirm.select"))
		goto fail;
	return c;
fail:
	if (c)
		amqp_destroy_connection(c);
	return NULL;
}

/* The message's attributes as AMQP headers (string values), up to
 * BR_MAX_HEADERS; a malformed block ends the list where it breaks. */
static int br_headers(const struct shmbus_msg *m, amqp_table_entry_t *e)
{
	uint32_t it = 0;
	int n = 0;

	while (n < BR_MAX_HEADERS) {
		const char *key;
		const void *val;
		size_t klen, vlen;

		if (shmbus_msg__attr_next(m, &it, &key, &klen, &val,
					  &vlen) != 1)
			break;
		e[n].key = (amqp_bytes_t){ .len = klen, .bytes = (void *)key };
		e[n].value.kind = AMQP_FIELD_KIND_UTF8;
		e[n].value.value.bytes =
			(amqp_bytes_t){ .len = vlen, .bytes = (void *)val };
		n++;
	}
	return n;
}

/* Publish @m; 0, or -1 when the connection is broken. */
static int br_publish(struct br *b, const struct shmbus_msg *m)
{
	amqp_table_entry_t hdr[BR_MAX_HEADERS];
	char id[24], corr[24];
	amqp_basic_properties_t p = {
		._flags = AMQP_BASIC_DELIVERY_MODE_FLAG |
			  AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_HEADERS_FLAG,
		.delivery_mode = 2,
	};

	snprintf(id, sizeof(id), "%llu", (unsigned long long)m->id);
	p.message_id = amqp_cstring_bytes(id);
	p.headers.entries = hdr;
	p.headers.num_entries = br_headers(m, hdr);
	if (m->corr_id) {
		snprintf(corr, sizeof(corr), "%llu",
			 (unsigned long long)m->corr_id);
		p._flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
		p.correlation_id = amqp_cstring_bytes(corr);
	}
	if (amqp_basic_publish(b->conn, BR_CH,
			       amqp_cstring_bytes(b->cfg.exchange),
			       amqp_cstring_bytes(b->cfg.key), 0, 0, &p,
			       (amqp_bytes_t){ .len = m->len,
					       .bytes = (void *)m->data }))
		return -1;
	b->forwarded++;
	b->next_tag++;
	return 0;
}

/* ---- the window ------------------------------------------------------ */

static struct shmbus_msg *br_oldest(struct br *b)
{
	return &b->fl[b->head].msg;
}

static void br_pop(struct br *b)
{
	b->head = (b->head + 1) % b->cfg.window;
	b->n--;
	b->first_tag++;
}

/* The broker settled every tag up to @tag (@multiple) or @tag alone:
 * ack (@ok) or nack those local messages. RabbitMQ confirms a channel's
 * tags in order, so a settled tag other than the oldest means the ones
 * before it were settled already by a multiple confirm we have not
 * missed; anything else is a protocol error. */
static int br_settle(struct br *b, uint64_t tag, bool multiple, bool ok)
{
	if (tag < b->first_tag || tag >= b->first_tag + b->n)
		return -1;
	if (!multiple && tag != b->first_tag)
		return -1;
	while (b->n && b->first_tag <= tag) {
		struct shmbus_msg *m = br_oldest(b);

		if (ok) {
			/* -ESTALE: the lease ran out meanwhile and the
			 * queue will deliver it again (a duplicate) */
			shmbus_consumer__ack(b->c, m);
			b->confirmed++;
		} else {
			shmbus_consumer__nack(b->c, m, SHMBUS_NACK_BACKOFF);
			b->nacked++;
		}
		br_pop(b);
	}
	return 0;
}

/* The connection is gone: give every message in flight back (counted
 * with the broker's nacks: "nacked" is what went back to the queue). */
static void br_drop_connection(struct br *b)
{
	while (b->n) {
		shmbus_consumer__nack(b->c, br_oldest(b), 0);
		b->nacked++;
		br_pop(b);
	}
	if (b->conn) {
		amqp_destroy_connection(b->conn);
		b->conn = NULL;
	}
}

/* Read one frame within @timeout_ms and act on it. 0: a frame or none
 * came; -1: the connection or channel is lost. */
static int br_poll_confirms(struct br *b, int timeout_ms)
{
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	amqp_frame_t f;
	int r = amqp_simple_wait_frame_noblock(b->conn, &f, &tv);

	if (r == AMQP_STATUS_TIMEOUT)
		return 0;
	if (r != AMQP_STATUS_OK)
		return -1;
	if (f.frame_type != AMQP_FRAME_METHOD)
		return 0;
	switch (f.payload.method.id) {
	case AMQP_BASIC_ACK_METHOD: {
		amqp_basic_ack_t *a = f.payload.method.decoded;

		return br_settle(b, a->delivery_tag, a->multiple, true);
	}
	case AMQP_BASIC_NACK_METHOD: {
		amqp_basic_nack_t *a = f.payload.method.decoded;

		return br_settle(b, a->delivery_tag, a->multiple, false);
	}
	case AMQP_CHANNEL_CLOSE_METHOD: {
		amqp_channel_close_t *cl = f.payload.method.decoded;

		fprintf(stderr, "shmbus: bridge: the broker closed the "
			"channel: %.*s\n", (int)cl->reply_text.len,
			(char *)cl->reply_text.bytes);
		return -1;
	}
	case AMQP_CONNECTION_CLOSE_METHOD:
		fprintf(stderr, "shmbus: bridge: the broker closed the "
			"connection\n");
		return -1;
	default:
		return 0;
	}
}

/* ---- the loop -------------------------------------------------------- */

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);	/* a signal cuts it short: fine */
}

/* Connect, retrying with exponential backoff and full jitter, until it
 * works or a signal asks us to stop. */
static bool br_reconnect(struct br *b, bool first)
{
	unsigned backoff = BR_BACKOFF_MIN_MS;

	for (;;) {
		b->conn = br_connect(&b->cfg);
		if (b->conn) {
			if (!first)
				b->reconnects++;
			/* a new channel numbers its publishes from 1 */
			b->first_tag = b->next_tag = 1;
			return true;
		}
		if (cli_interrupted())
			return false;
		sleep_ms(backoff / 2 + (unsigned)random() % (backoff / 2 + 1));
		if (backoff < BR_BACKOFF_MAX_MS)
			backoff *= 2;
	}
}

/* Take what the local queue has, up to the window, and publish it. 0,
 * -1: the connection broke; -2: the local queue is gone. */
static int br_fill(struct br *b)
{
	while (b->n < b->cfg.window && !cli_interrupted()) {
		struct br_flight *slot =
			&b->fl[(b->head + b->n) % b->cfg.window];
		/* block only with nothing in flight: confirms come first */
		int64_t tmo = b->n ? 0 : 100000000;
		int r = shmbus_consumer__receive_view(b->c, &slot->msg, tmo);

		b->idle = r == -EAGAIN || r == -ETIMEDOUT;
		if (b->idle || r == -EINTR || r == -ENOBUFS)
			return 0;
		if (r < 0) {
			fprintf(stderr, "shmbus: bridge: receive from '%s': "
				"%s\n", b->cfg.from, strerror(-r));
			return -2;
		}
		b->n++;
		if (br_publish(b, &slot->msg) < 0)
			return -1;
	}
	return 0;
}

/* At a stop: wait a while for the confirms of what is in flight. */
static void br_drain(struct br *b)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (b->conn && b->n) {
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((t.tv_sec - t0.tv_sec) * 1000 +
		    (t.tv_nsec - t0.tv_nsec) / 1000000 > BR_DRAIN_MS)
			break;
		if (br_poll_confirms(b, 100) < 0)
			break;
	}
}

static int br_run(struct br *b)
{
	int rc = 0;

	if (!br_reconnect(b, true))
		return 0;
	while (!cli_interrupted()) {
		int r = br_fill(b);

		if (r == -2) {
			rc = 1;
			break;
		}
		/* with more to send, only take the confirms already here;
		 * with the window full or the queue empty, wait for one.
		 * Idle, the connection is still read (without waiting: the
		 * receive did): librabbitmq sends our heartbeats from
		 * there, and a broker gone is seen now, not at the next
		 * message. */
		if (!r)
			r = br_poll_confirms(b, b->n && (b->n == b->cfg.window ||
						b->idle) ? 50 : 0);
		if (r < 0) {
			br_drop_connection(b);
			if (!br_reconnect(b, false))
				break;
		}
	}
	br_drain(b);
	br_drop_connection(b);
	return rc;
}

static void parse_url(struct br_cfg *cfg, const char *url)
{
	cfg->url_buf = strdup(url);
	if (!cfg->url_buf)
		die("out of memory");
	amqp_default_connection_info(&cfg->url);
	if (amqp_parse_url(cfg->url_buf, &cfg->url) != AMQP_STATUS_OK)
		die("bad AMQP URL '%s' (amqp://[USER:PASS@]HOST[:PORT][/VHOST])",
		    url);
}

int cmd_bridge(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "amqp", required_argument, NULL, 'a' },
		{ "from", required_argument, NULL, 'f' },
		{ "exchange", required_argument, NULL, 'e' },
		{ "routing-key", required_argument, NULL, 'k' },
		{ "credentials", required_argument, NULL, 'c' },
		{ "prefetch", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct br b = { .cfg = { .key = "", .window = 64 } };
	const char *url = NULL, *creds = NULL;
	struct shmbus *bus;
	int opt, rc;

	optind = 0;	/* full getopt reset (glibc) */
	while ((opt = getopt_long(argc, argv, "a:f:e:k:c:p:h", longopts,
				  NULL)) != -1) {
		switch (opt) {
		case 'a': url = optarg; break;
		case 'f': b.cfg.from = optarg; break;
		case 'e': b.cfg.exchange = optarg; break;
		case 'k': b.cfg.key = optarg; break;
		case 'c': creds = optarg; break;
		case 'p':
			b.cfg.window = parse_num("prefetch", optarg,
						 BR_MAX_WINDOW);
			break;
		case 'h': usage_bridge(stdout); return 0;
		default: usage_bridge(stderr); return 2;
		}
	}
	if (!url || !b.cfg.from || !b.cfg.exchange || optind != argc ||
	    !b.cfg.window) {
		usage_bridge(stderr);
		return 2;
	}
	parse_url(&b.cfg, url);
	if (creds)
		read_credentials(&b.cfg, creds);
	check_name("queue", b.cfg.from);
	b.fl = calloc(b.cfg.window, sizeof(*b.fl));
	if (!b.fl)
		die("out of memory");
	srandom((unsigned)getpid() ^ (unsigned)time(NULL));
	bus = open_bus(0);
	{
		SHMBUS_OPTS(shmbus_consumer_opts, co,
			    .prefetch = b.cfg.window);

		b.c = shmbus_consumer__new(bus, b.cfg.from, &co);
		if (!b.c)
			die("cannot consume from '%s': %s", b.cfg.from,
			    strerror(errno));
	}
	cli_trap_stop_signals();
	rc = br_run(&b);
	fprintf(stderr, "bridge: forwarded %llu confirmed %llu nacked %llu "
		"reconnects %llu\n", (unsigned long long)b.forwarded,
		(unsigned long long)b.confirmed, (unsigned long long)b.nacked,
		(unsigned long long)b.reconnects);
	shmbus_consumer__free(b.c);
	shmbus__close(bus);
	free(b.fl);
	free(b.cfg.url_buf);
	return rc;
}

#else /* no librabbitmq at build time */

int cmd_bridge(int argc, char **argv)
{
	die("this shmbus was built without librabbitmq (librabbitmq-dev): "
	    "no AMQP bridge");
}

#endif
