// SPDX-License-Identifier: MIT
/*
 * pubsub.c - `shmbus pub` and `shmbus sub`: publishing messages to a
 * queue or topic (an argument, or each line of stdin), and receiving
 * them from a queue or a topic subscription, one per line, each written
 * out before it is acked.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/uio.h>

#include "shmbus.h"
#include "cli.h"

/* ---- pub ----------------------------------------------------------- */

static void usage_pub(FILE *f)
{
	fprintf(f,
"usage: shmbus pub QUEUE [MESSAGE] [--timeout SECONDS] [--ttl SECONDS]\n"
"                  [--delay SECONDS] [--corr-id N] [--dedup-id ID]\n"
"                  [--attr KEY=VALUE]... [--priority N]\n"
"                  [--confirm-every N] [--confirm-timeout SECONDS]\n"
"\n"
"Publish MESSAGE to QUEUE, or, without MESSAGE, each line of standard\n"
"input as one message (without its newline). When the queue is full, or\n"
"the bus has no free chunk for the message, waits for room up to\n"
"--timeout (default: for ever; 0: not at all), saying once on standard\n"
"error that it waits; a wait that times out exits 124 with the number\n"
"published, Ctrl-C stops reading and waiting (exit 130, with the same\n"
"report). A queue declared --overflow reject fails at once (exit 1).\n"
"--ttl: expire after\n"
"SECONDS; --delay: invisible for SECONDS; --corr-id: correlation id;\n"
"--dedup-id: idempotency key (the queue needs a --dedup-window);\n"
"--attr: a message attribute (header), up to 16; --priority: the level\n"
"(0 = default; the queue's --priorities - 1 is the highest).\n"
"An error reading standard input (a directory, a closed stdin) stops\n"
"publishing and exits 1.\n"
"To a durable queue, publishes are confirmed by the daemon once journaled\n"
"as the queue's --sync says: pub waits for the confirms every\n"
"--confirm-every messages (default 256), at the end of the input and on\n"
"Ctrl-C (which stops reading, or waiting for room in a full queue), each\n"
"wait up to --confirm-timeout (default 30), and says how many were\n"
"confirmed. A message the daemon could not journal, or a wait that timed\n"
"out, exits 1 with the reason.\n");
}

/* What pub does beyond the publish options: the confirms of a durable
 * queue. */
struct pub_args {
	unsigned long confirm_every;	/* wait after this many; >= 1 */
	int64_t confirm_timeout_ns;
};

/* A publish run: the producer, and its counts. */
struct pub_run {
	struct shmbus_producer *p;
	const char *q;
	const struct pub_args *a;
	bool durable;			/* publishes are confirmed */
	bool sliced;			/* wait for room in slices */
	bool said_waiting;		/* "waiting for room" was said */
	bool topic;			/* published to a topic */
	unsigned long published;
	unsigned long confirmed;	/* the first this many */
};

/* --attr KEY=VALUE: one more attribute in @po (@arg is split in place). */
static void add_attr(struct shmbus_pub_opts *po, char *arg)
{
	static struct shmbus_attr attrs[16];
	char *eq = strchr(arg, '=');

	if (!eq || eq == arg || po->nr_attrs == 16)
		usage_die("--attr KEY=VALUE (at most 16)");
	*eq = '\0';
	attrs[po->nr_attrs++] = (struct shmbus_attr){
		.key = arg, .value = eq + 1,
		.value_len = (uint32_t)strlen(eq + 1) };
	po->attrs = attrs;
}

/* The options into @po. Returns an exit code when there is nothing more
 * to do, else -1. */
static int pub_options(int argc, char **argv, struct shmbus_pub_opts *po,
		       struct pub_args *a)
{
	static const struct option longopts[] = {
		{ "timeout", required_argument, NULL, 't' },
		{ "ttl", required_argument, NULL, 'T' },
		{ "delay", required_argument, NULL, 'D' },
		{ "corr-id", required_argument, NULL, 'C' },
		{ "dedup-id", required_argument, NULL, 'I' },
		{ "attr", required_argument, NULL, 'A' },
		{ "priority", required_argument, NULL, 'p' },
		{ "confirm-every", required_argument, NULL, 'c' },
		{ "confirm-timeout", required_argument, NULL, 'W' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	optind = 0;	/* full getopt reset (glibc) */
	while ((opt = getopt_long(argc, argv, "t:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 't': po->timeout_ns = parse_ns(optarg); break;
		case 'T': po->ttl_ns = parse_ns(optarg); break;
		case 'D': po->delay_ns = parse_ns(optarg); break;
		case 'C': po->corr_id = parse_num("--corr-id", optarg, ULONG_MAX); break;
		case 'I': po->dedup_id = optarg; break;
		case 'p': po->priority = parse_num("--priority", optarg, 3); break;
		case 'A': add_attr(po, optarg); break;
		case 'c':
			a->confirm_every = parse_num("--confirm-every", optarg,
						    ULONG_MAX);
			if (!a->confirm_every)
				usage_die("--confirm-every must be at least 1");
			break;
		case 'W': a->confirm_timeout_ns = parse_ns(optarg); break;
		case 'h': usage_pub(stdout); return 0;
		default: usage_pub(stderr); return 2;
		}
	}
	if (argc - optind < 1 || argc - optind > 2) {
		usage_pub(stderr);
		return 2;
	}
	return -1;
}

/* Wait until everything @r published is confirmed, or die saying why
 * and how many were. Nothing to wait for on a queue that is not
 * durable. */
static void confirm_or_die(struct pub_run *r)
{
	int err;

	int64_t left = r->a->confirm_timeout_ns;
	int signals = cli_signal_count();

	if (!r->durable || r->confirmed == r->published)
		return;
	/* in slices, so that a stop signal that comes during the wait ends
	 * it (one that came before, which ended the input, is why we wait
	 * now): what was confirmed so far is reported; a later confirm is
	 * not lost, the daemon journals what it took whether we wait or not */
	for (;;) {
		int64_t slice = left > 100000000 ? 100000000 : left;

		err = shmbus_producer__confirm_wait(r->p, slice);
		left -= slice;
		if (err != -ETIMEDOUT || left <= 0)
			break;
		if (cli_signal_count() != signals) {
			fprintf(stderr, "published %lu message%s to %s, %lu "
				"confirmed before the interruption; the rest "
				"are journaled and confirmed without us when "
				"the daemon takes them\n", r->published,
				r->published == 1 ? "" : "s", r->q,
				r->confirmed);
			exit(128 + cli_signal());
		}
	}
	if (err == -ETIMEDOUT)
		die_code(EXIT_TIMEDOUT, "'%s': not all confirmed within %g s "
			 "(published %lu, %lu confirmed before; the rest wait "
			 "in the queue's intake for the daemon to journal "
			 "them)", r->q, r->a->confirm_timeout_ns / 1e9,
			 r->published, r->confirmed);
	if (err == -EIDRM)
		die("queue '%s' was deleted (published %lu, %lu confirmed)",
		    r->q, r->published, r->confirmed);
	/* the daemon dropped at least one of those since the last wait */
	if (err)
		die("'%s': not all confirmed: %s (published %lu, %lu "
		    "confirmed before the failure)", r->q, strerror(-err),
		    r->published, r->confirmed);
	r->confirmed = r->published;
}

/*
 * Publish, waiting for room (a full queue, or no free chunk of the size
 * in the bus's pools) in slices of 100 ms for a queue that blocks (its
 * overflow policy): the library's wait only loads and backs off, so a
 * signal cannot end it, and pub looks between slices, and says once
 * that it waits. A failed publish leaves nothing behind (a dedup id
 * included), so the next slice is the same publish. Returns its error,
 * or -EINTR.
 */
static int publish_sliced(struct pub_run *r, const void *data, size_t len,
			  const struct shmbus_pub_opts *po)
{
	const int64_t slice = 100000000;
	struct shmbus_pub_opts o = *po;
	int64_t left = po->timeout_ns;	/* < 0: for ever */
	int err;

	if (!r->sliced)
		return shmbus_producer__publish(r->p, data, len, po);
	for (;;) {
		o.timeout_ns = left < 0 || left > slice ? slice : left;
		err = shmbus_producer__publish(r->p, data, len, &o);
		if ((err != -ENOBUFS && err != -ENOMEM) ||
		    left == o.timeout_ns)
			return err;
		if (left > 0)
			left -= o.timeout_ns;
		if (!r->said_waiting) {
			r->said_waiting = true;
			if (err == -ENOBUFS)
				fprintf(stderr, "shmbus: pub: queue '%s' is "
					"full: waiting for room", r->q);
			else
				fprintf(stderr, "shmbus: pub: the bus has no "
					"free chunk for a message of %zu "
					"bytes: waiting for one", len);
			fprintf(stderr, " (published %lu so far; %s, Ctrl-C "
				"stops)\n", r->published,
				po->timeout_ns < 0 ? "--timeout limits the wait"
						   : "up to --timeout");
		}
		if (cli_interrupted())
			return -EINTR;
	}
}

/* Publish one message; false when a stop signal came while it waited
 * for room (not published), else true or die. */
static bool publish_or_die(struct pub_run *r, const void *data, size_t len,
			   const struct shmbus_pub_opts *po)
{
	const char *q = r->q;
	int err = publish_sliced(r, data, len, po);

	if (err == -EINTR)
		return false;
	if (err == -EMSGSIZE)
		die("message of %zu bytes exceeds the msg-size of '%s'", len, q);
	if ((err == -ENOBUFS || err == -ENOMEM) && r->sliced)
		die_code(EXIT_TIMEDOUT, "%s '%s' after %.3f s (published %lu "
			 "message%s before it)", err == -ENOBUFS ?
			 "still no room in" : "still no free chunk for a "
			 "message to", q, po->timeout_ns / 1e9, r->published,
			 r->published == 1 ? "" : "s");
	if (err == -ENOBUFS && r->topic)
		die_code(po->timeout_ns > 0 ? EXIT_TIMEDOUT : 1, "a subscription "
			 "of topic '%s' is full: the others have the message "
			 "(published %lu before it)", q, r->published);
	if (err == -ENOBUFS)
		die("queue '%s' is full (published %lu message%s before it)",
		    q, r->published, r->published == 1 ? "" : "s");
	if (err == -EOPNOTSUPP && po->delay_ns && r->topic)
		usage_die("'%s' is a topic: a publish to it takes no --delay", q);
	if (err == -ENOMEM)
		die("the bus has no free chunk for a message of %zu bytes "
		    "(published %lu before it)", len, r->published);
	if (err == -EOPNOTSUPP)
		die("queue '%s' has no dedup window (queue declare "
		    "--dedup-window)", q);
	if (err == -E2BIG)
		die("attributes over %u bytes", SHMBUS_ATTR_BYTES);
	if (err)
		die("publish to '%s': %s", q, strerror(-err));
	if (++r->published - r->confirmed >= r->a->confirm_every)
		confirm_or_die(r);
	return true;
}

/* Each line of stdin, without its newline, as one message, until the
 * end of the input or (stop signals trapped) an interruption; a read
 * error dies. */
static void publish_lines(struct pub_run *r, const struct shmbus_pub_opts *po)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int err;

	while (!cli_interrupted() &&
	       (len = getline(&line, &cap, stdin)) >= 0) {
		if (len && line[len - 1] == '\n')
			line[--len] = '\0';
		if (!publish_or_die(r, line, len, po))
			break;
	}
	/* a read error (a directory, a closed stdin: EBADF) is not the end
	 * of the input: what was read is published, nothing after it; a
	 * read a stop signal ended is the end */
	err = errno;
	free(line);
	if (ferror(stdin) && !(err == EINTR && cli_interrupted()))
		die("reading standard input: %s (published %lu message%s "
		    "before it)", strerror(err), r->published,
		    r->published == 1 ? "" : "s");
}

/* Is queue @q durable (its producers get confirms), and does a publish
 * to it wait for room when it is full (overflow block)? */
static void queue_kind(struct shmbus *bus, struct pub_run *r)
{
	struct shmbus_queue_info qi;

	if (shmbus__queue_info(bus, r->q, &qi))
		return;		/* attaching says why */
	r->durable = qi.flags & SHMBUS_QUEUE_DURABLE;
	/* not a topic: a publish that fails on a full subscription has
	 * reached the others, and a retry would send them a second copy */
	r->topic = qi.kind == SHMBUS_TOPIC;
	r->sliced = qi.overflow == SHMBUS_OVERFLOW_BLOCK && !r->topic;
}

int cmd_pub(int argc, char **argv)
{
	SHMBUS_OPTS(shmbus_pub_opts, po, .timeout_ns = -1);
	struct pub_args a = {
		.confirm_every = 256,
		.confirm_timeout_ns = 30000000000LL,
	};
	struct pub_run r = { .a = &a };
	struct shmbus *bus;
	unsigned long n;
	int ret;

	if ((ret = pub_options(argc, argv, &po, &a)) >= 0)
		return ret;
	r.q = argv[optind];
	check_name("queue", r.q);
	bus = open_bus(SHMBUS_OPEN_NOCREATE);
	queue_kind(bus, &r);
	/* confirms waited for in batches, not one fdatasync per line; and
	 * Ctrl-C ends the input, so that what was read is confirmed */
	r.p = producer_or_die(bus, r.q,
			      r.durable ? SHMBUS_PRODUCER_ASYNC_CONFIRM : 0);
	/* Ctrl-C ends the input (or a wait for room), and what was read is
	 * reported (and confirmed) before the exit; to a topic, whose wait
	 * for a full subscription is the library's, a signal ends it */
	if (!r.topic)
		cli_trap_stop_signals();
	if (argc - optind == 2)
		(void)publish_or_die(&r, argv[optind + 1],
				     strlen(argv[optind + 1]), &po);
	else
		publish_lines(&r, &po);
	confirm_or_die(&r);
	shmbus_producer__free(r.p);
	shmbus__close(bus);
	n = r.published;
	if (r.durable)
		fprintf(stderr, "published %lu message%s to %s, %lu "
			"confirmed%s\n", n, n == 1 ? "" : "s", r.q, r.confirmed,
			cli_interrupted() ? " (interrupted)" : "");
	else
		fprintf(stderr, "published %lu message%s to %s%s\n", n,
			n == 1 ? "" : "s", r.q,
			cli_interrupted() ? " (interrupted)" : "");
	return 0;
}

/* ---- sub ----------------------------------------------------------- */

static void usage_sub(FILE *f)
{
	fprintf(f,
"usage: shmbus sub QUEUE [-n COUNT] [--timeout SECONDS]\n"
"                  [--headers | --exec CMD]\n"
"       shmbus sub TOPIC-PATTERN --topic [--group NAME] [--durable]\n"
"                  [--persistent [--sync always|batch|never]\n"
"                                [--sync-interval SEC]]\n"
"                  [--drop-oldest] [--history] [-n COUNT] [--timeout SECONDS]\n"
"\n"
"Receive messages from QUEUE (competing with its other consumers) and\n"
"print each body on its own line, acking it. Exits after COUNT messages,\n"
"or when SECONDS pass with nothing received (default: runs until\n"
"interrupted).\n"
"With --exec CMD: run CMD with /bin/sh for each message instead, the body\n"
"on its standard input, SHMBUS_MSG_ID and SHMBUS_DELIVERY (1 on the first\n"
"delivery) in its environment; the message is acked when CMD exits 0, and\n"
"nacked otherwise: delivered again after the queue's --backoff, and\n"
"dead-lettered after its --max-deliveries (COUNT counts the acked ones).\n"
"With --topic (implied by --group): subscribe to the topics matching\n"
"PATTERN (\"orders.*\" one token, \"orders.>\" one or more), as consumer\n"
"group NAME (every group gets every message; consumers of one group\n"
"share them), or alone. --durable keeps the group's subscription while\n"
"nobody is subscribed; --persistent (implies --durable) also journals it\n"
"on disk, so that it and its messages come back after a restart or a\n"
"reboot (--sync and --sync-interval as for queue declare --durable);\n"
"--drop-oldest drops its oldest message when full\n"
"instead of holding publishers up; --history starts with the topics'\n"
"history.\n"
"--headers prints each message's attributes (KEY=VALUE ... | body),\n"
"escaped; the body is written as it is.\n"
"Each message is written out whole before it is acked; at the first\n"
"write error (a reader that went away, a full disk) that message goes\n"
"back to the queue at once, the rest stay there, and sub exits 1.\n");
}

struct sub_args {
	struct shmbus_sub_opts so;
	bool topic;		/* a topic pattern, not a queue */
	bool headers;		/* print the attributes too */
	const char *exec;	/* --exec CMD: run it for each message */
	unsigned long count;	/* stop after this many; 0: never */
	int64_t timeout_ns;	/* stop after this long without one */
};

/* The options into @a. Returns an exit code when there is nothing more
 * to do, else -1. */
static int sub_options(int argc, char **argv, struct sub_args *a)
{
	bool sync_given = false;
	static const struct option longopts[] = {
		{ "count", required_argument, NULL, 'n' },
		{ "timeout", required_argument, NULL, 't' },
		{ "topic", no_argument, NULL, 'T' },
		{ "group", required_argument, NULL, 'g' },
		{ "durable", no_argument, NULL, 'D' },
		{ "persistent", no_argument, NULL, 'P' },
		{ "sync", required_argument, NULL, 'S' },
		{ "sync-interval", required_argument, NULL, 'I' },
		{ "drop-oldest", no_argument, NULL, 'O' },
		{ "history", no_argument, NULL, 'H' },
		{ "headers", no_argument, NULL, 'X' },
		{ "exec", required_argument, NULL, 'x' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	optind = 0;	/* full getopt reset (glibc) */
	while ((opt = getopt_long(argc, argv, "n:t:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'n': a->count = parse_num("count", optarg, ULONG_MAX); break;
		case 't': a->timeout_ns = parse_ns(optarg); break;
		case 'T': a->topic = true; break;
		case 'g': a->so.group = optarg; a->topic = true; break;
		case 'D': a->so.flags |= SHMBUS_SUB_DURABLE; break;
		case 'P':
			a->so.flags |= SHMBUS_SUB_DURABLE | SHMBUS_SUB_PERSISTENT;
			break;
		case 'S': a->so.sync = parse_sync(optarg); sync_given = true; break;
		case 'I': a->so.sync_interval_ns = parse_ns(optarg); break;
		case 'O': a->so.flags |= SHMBUS_SUB_DROP_OLDEST; break;
		case 'H': a->so.flags |= SHMBUS_SUB_HISTORY; break;
		case 'X': a->headers = true; break;
		case 'x': a->exec = optarg; break;
		case 'h': usage_sub(stdout); return 0;
		default: usage_sub(stderr); return 2;
		}
	}
	if (argc - optind != 1) {
		usage_sub(stderr);
		return 2;
	}
	if (!a->topic && a->so.flags)
		usage_die("--durable, --persistent, --drop-oldest and --history are for "
		    "--topic");
	if ((a->so.flags & SHMBUS_SUB_DURABLE) && !a->so.group)
		usage_die("--durable and --persistent need --group");
	if (!(a->so.flags & SHMBUS_SUB_PERSISTENT) &&
	    (sync_given || a->so.sync_interval_ns))
		usage_die("--sync and --sync-interval need --persistent");
	if (a->so.sync_interval_ns && a->so.sync != SHMBUS_SYNC_BATCH)
		usage_die("--sync-interval is for --sync batch");
	if ((a->so.flags & SHMBUS_SUB_PERSISTENT) &&
	    (a->so.flags & (SHMBUS_SUB_DROP_OLDEST | SHMBUS_SUB_HISTORY)))
		usage_die("--persistent takes neither --drop-oldest nor --history");
	if (a->exec && a->headers)
		usage_die("--headers is for the bodies sub writes, not --exec");
	return -1;
}

/* A consumer of queue @q, or of a subscription to the topics matching @q. */
static struct shmbus_consumer *sub_consumer(struct shmbus *bus, const char *q,
					    const struct sub_args *a)
{
	struct shmbus_consumer *c;

	if (!a->topic)
		return attach_or_die(bus, q, false);
	if (a->so.group)
		check_name("group", a->so.group);
	c = shmbus_consumer__subscribe(bus, q, &a->so);
	if (!c)
		die("cannot subscribe to '%s': %s", q,
		    errno == EINVAL ? "bad pattern or group name"
				    : strerror(errno));
	return c;
}

/* The "KEY=VALUE ... | " of --headers into @buf (@cap bytes), escaped
 * (out.c): any producer writes them. Returns its length. */
static size_t headers_of(const struct shmbus_msg *m, char *buf, size_t cap)
{
	uint32_t it = 0;
	size_t o = 0, kl, vl;
	const char *k;
	const void *v;

	while (shmbus_msg__attr_next(m, &it, &k, &kl, &v, &vl) == 1 &&
	       o + ESC_LEN(kl) + ESC_LEN(vl) + 2 < cap) {
		o += strlen(esc_text(buf + o, cap - o, k, kl));
		buf[o++] = '=';
		o += strlen(esc_text(buf + o, cap - o, v, vl));
		buf[o++] = ' ';
	}
	memcpy(buf + o, "| ", 3);
	return o + 2;
}

/* Message @m on standard output, whole (write(2) until done; nothing is
 * held in a buffer): with --headers its attributes first, then the body
 * as it is and a newline. Returns 0 or -errno. */
static int write_msg(const struct shmbus_msg *m, bool headers)
{
	/* every attribute byte escaped, "=" and " " for each of at most
	 * SHMBUS_ATTR_BYTES / 4 attributes, "| " */
	static char hdr[ESC_LEN(SHMBUS_ATTR_BYTES) + SHMBUS_ATTR_BYTES / 2 + 8];
	struct iovec iov[3];
	int n = 0;

	if (headers)
		iov[n++] = (struct iovec){ hdr, headers_of(m, hdr, sizeof(hdr)) };
	iov[n++] = (struct iovec){ (void *)m->data, m->len };
	iov[n++] = (struct iovec){ "\n", 1 };
	return cli_write_all(STDOUT_FILENO, iov, n);
}

/*
 * Receive, write and ack until the count, the timeout or a signal. A
 * message is acked only once it was written out whole (handed to the
 * kernel: a file, a pipe's buffer). A write that fails (EPIPE: the reader
 * is gone; ENOSPC; EBADF) stops it: that message is nacked at once for
 * redelivery, the ones not received yet stay in the queue. Returns 0,
 * the receive error that ended it, or 1 after a write error (in *@werr).
 */
static int sub_loop(struct shmbus_consumer *c, const struct sub_args *a,
		    int *werr, unsigned long *gotp)
{
	unsigned long got = 0;
	int err = 0;

	while (!cli_interrupted() && (!a->count || got < a->count)) {
		struct shmbus_msg m;

		err = shmbus_consumer__receive_view(c, &m, a->timeout_ns);
		if (err == -ETIMEDOUT || err == -EAGAIN || err == -EINTR) {
			err = 0;
			break;
		}
		if (err)
			break;
		if (a->exec) {
			int rc = cli_exec(a->exec, m.data, m.len, &m, NULL, 0,
					  NULL, NULL);

			if (rc) {
				fprintf(stderr, "shmbus: sub: message %llu "
					"(delivery %u): %s %d; given back for "
					"redelivery\n",
					(unsigned long long)m.id,
					m.delivery_count, rc < 0 ?
					"cannot run the command:" :
					rc > 128 ? "the command was killed by "
					"signal" : "the command exited",
					rc < 0 ? -rc : rc > 128 ? rc - 128 : rc);
				(void)shmbus_consumer__nack(c, &m,
							    SHMBUS_NACK_BACKOFF);
				continue;
			}
			(void)shmbus_consumer__ack(c, &m);
			*gotp = ++got;
			continue;
		}
		*werr = write_msg(&m, a->headers);
		if (*werr == -EINTR && cli_interrupted()) {
			/* stopped while the reader did not take it: given back
			 * whole (what went out of it is a partial line) */
			(void)shmbus_consumer__nack(c, &m, 0);
			*werr = 0;
			return 0;
		}
		if (*werr) {
			(void)shmbus_consumer__nack(c, &m, 0);
			return 1;
		}
		/* -ESTALE: the lease ran out while we wrote; the message is
		 * delivered again (at least once) */
		(void)shmbus_consumer__ack(c, &m);
		*gotp = ++got;
	}
	return err;
}

int cmd_sub(int argc, char **argv)
{
	struct sub_args a = {
		.so = { .sz = sizeof(struct shmbus_sub_opts) },
		.timeout_ns = -1,
	};
	struct shmbus_consumer *c;
	struct shmbus *bus;
	unsigned long got = 0;
	const char *q;
	int err, werr = 0;

	if ((err = sub_options(argc, argv, &a)) >= 0)
		return err;
	q = argv[optind];
	if (!a.topic)
		check_name("queue", q);
	bus = open_bus(SHMBUS_OPEN_NOCREATE);
	c = sub_consumer(bus, q, &a);
	cli_trap_stop_signals();
	err = sub_loop(c, &a, &werr, &got);
	shmbus_consumer__free(c);
	shmbus__close(bus);
	if (err == 1)
		die("writing to standard output: %s (that message and the "
		    "rest are left in '%s')", strerror(-werr), q);
	if (err == -EIDRM)
		die("queue '%s' was deleted", q);
	if (err)
		die("receive from '%s': %s", q, strerror(-err));
	/* -n COUNT not reached: the timeout ended it */
	if (a.count && got < a.count && !cli_interrupted()) {
		fprintf(stderr, "shmbus: sub: %lu of %lu messages within the "
			"timeout\n", got, a.count);
		return EXIT_TIMEDOUT;
	}
	return 0;
}
