// SPDX-License-Identifier: MIT
/*
 * reqrep.c - `shmbus req` and `shmbus reply`: sending one request and
 * printing its reply, and serving the requests of a queue with their own
 * body (--echo) or a shell command's output (--exec), each acked only
 * once it was answered.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include "shmbus.h"
#include "cli.h"

/* ---- req ----------------------------------------------------------- */

static void usage_req(FILE *f)
{
	fprintf(f,
"usage: shmbus req QUEUE MESSAGE [--timeout SECONDS]\n"
"\n"
"Send MESSAGE as a request to QUEUE and print the reply. Fails at once if\n"
"no consumer serves QUEUE, or if the replier answers with an error status\n"
"(printed with its explanation on standard error), and after --timeout\n"
"(default 5) without a reply.\n");
}

int cmd_req(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	SHMBUS_OPTS(shmbus_request_opts, ro);
	int64_t timeout_ns = 5000000000LL;
	struct shmbus *bus;
	static char rep[65536];
	ssize_t n;
	int opt;

	optind = 0;	/* full getopt reset (glibc) */
	while ((opt = getopt_long(argc, argv, "t:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 't': timeout_ns = parse_ns(optarg); break;
		case 'h': usage_req(stdout); return 0;
		default: usage_req(stderr); return 2;
		}
	}
	if (argc - optind != 2) {
		usage_req(stderr);
		return 2;
	}
	check_name("queue", argv[optind]);
	bus = open_bus(SHMBUS_OPEN_NOCREATE);
	ro.timeout_ns = timeout_ns;
	n = shmbus__request_opts(bus, argv[optind], argv[optind + 1],
				 strlen(argv[optind + 1]), rep, sizeof(rep),
				 &ro);
	shmbus__close(bus);
	if (n == -EREMOTEIO) {
		static char shown[ESC_LEN(512)];

		/* the replier's text, escaped: it is not ours to trust */
		die("'%s' answered with error status %d: %s", argv[optind],
		    ro.status, esc_text(shown, sizeof(shown), rep,
					MIN_U(ro.reply_len, 512)));
	}
	if (n == -EHOSTUNREACH)
		die("no responders on '%s'", argv[optind]);
	if (n == -ENOENT)
		die("no queue '%s'", argv[optind]);
	if (n == -ETIMEDOUT)
		die_code(EXIT_TIMEDOUT, "no reply from '%s' within %.3f s",
			 argv[optind], timeout_ns / 1e9);
	if (n < 0)
		die("request to '%s': %s", argv[optind], strerror((int)-n));
	{
		struct iovec iov[2] = { { rep, (size_t)n }, { "\n", 1 } };
		int err = cli_write_all(STDOUT_FILENO, iov, 2);

		/* the reply was taken from the reply queue: it is lost */
		if (err)
			die("writing the reply to standard output: %s",
			    strerror(-err));
	}
	return 0;
}

/* ---- reply --------------------------------------------------------- */

static void usage_reply(FILE *f)
{
	fprintf(f,
"usage: shmbus reply QUEUE (--echo | --exec CMD [--errors retry|reply])\n"
"                          [-n COUNT] [--timeout SECONDS]\n"
"\n"
"Serve requests on QUEUE: --echo answers each with its own body; --exec\n"
"runs CMD with /bin/sh for each request, the request on its standard\n"
"input, and answers with its standard output. A request is acked only\n"
"once it is answered. When CMD fails (exits non-zero, or writes more than\n"
"a reply takes), --errors says what happens:\n"
"  retry  (default) the request is nacked: delivered again after the\n"
"         queue's --backoff, dead-lettered after its --max-deliveries;\n"
"  reply  the requester gets an error reply at once, status CMD's exit\n"
"         status and its output as the explanation, and the request goes\n"
"         to the queue's dead-letter queue; except exit 75 (EX_TEMPFAIL),\n"
"         which retries.\n"
"Stops after COUNT requests, or after --timeout SECONDS without one\n"
"(default: runs until interrupted).\n");
}

/* Run the shell command @ctx with the request on stdin; its stdout is
 * the reply (without one trailing newline). Returns its length; when CMD
 * failed, *@status is its exit status (128 + N after signal N), or
 * EMSGSIZE when it wrote more than @cap bytes, and the reply explains.
 * -errno when it could not be run. */
static ssize_t exec_handler(void *ctx, const struct shmbus_msg *req,
			    void *reply, size_t cap, int *status)
{
	size_t n = 0, over = 0;
	int rc = cli_exec(ctx, req->data, req->len, req, reply, cap, &n,
			  &over);

	if (rc < 0)
		return rc;
	if (!rc && over) {
		*status = EMSGSIZE;
		return snprintf(reply, cap, "the command wrote %zu bytes, "
				"more than the %zu a reply takes", n + over,
				cap);
	}
	if (n && ((char *)reply)[n - 1] == '\n')
		n--;
	*status = rc;
	if (rc && !n)
		return snprintf(reply, cap, "the command exited with status "
				"%d", rc);
	return (ssize_t)n;
}

static ssize_t echo_handler(void *ctx, const struct shmbus_msg *req,
			    void *reply, size_t cap, int *status)
{
	size_t n = MIN_U(req->len, cap);

	(void)ctx;
	(void)status;
	memcpy(reply, req->data, n);
	return (ssize_t)n;
}

typedef ssize_t (*handler_fn)(void *ctx, const struct shmbus_msg *req,
			      void *reply, size_t cap, int *status);

/* EX_TEMPFAIL (sysexits.h): a CMD asks for another try, also with
 * --errors reply */
#define EXIT_TEMPFAIL	75

/* Answer @m: with @len bytes of @buf, or an error reply of @status. With
 * @error_replies, a reply larger than the reply queue takes becomes an
 * error reply that says so. */
static int answer(struct shmbus_consumer *c, const struct shmbus_msg *m,
		  char *buf, size_t cap, ssize_t len, int *status,
		  bool error_replies)
{
	int err;

	if (!*status) {
		err = shmbus_consumer__reply(c, m, buf, (size_t)len);
		if (err != -EMSGSIZE || !error_replies)
			return err;
		*status = EMSGSIZE;
		len = snprintf(buf, cap, "the reply (%zd bytes) is larger "
			       "than the reply queue takes", len);
	}
	/* an explanation larger than the reply queue takes is cut: the
	 * status gets there in any case (else the request would come back
	 * for ever) */
	for (size_t n = (size_t)len;; n /= 2) {
		err = shmbus_consumer__reply_error(c, m, *status, buf, n);
		if (err != -EMSGSIZE || !n)
			return err;
	}
}

/*
 * Serve the requests of @c until @count were answered (0: no limit),
 * @timeout_ns passed without one (< 0: never), or a signal: receive, run
 * the handler, publish its reply, and only then ack. A request that was
 * not answered (the handler failed, and no @error_replies; the command
 * could not run; the reply could not be published) is nacked: delivered
 * again after the queue's backoff, dead-lettered after its
 * max-deliveries. With @error_replies a failed handler answers with an
 * error reply and the request is rejected (to its dead-letter queue):
 * its requester has its answer, a retry would answer again. A request
 * whose requester is gone, and a message that is no request, are acked
 * unanswered. Returns the number answered, or a receive error.
 */
static int serve(struct shmbus_consumer *c, const char *q, handler_fn fn,
		 void *ctx, unsigned long count, int64_t timeout_ns,
		 bool error_replies)
{
	static char buf[65536];
	unsigned long done = 0;

	while (!cli_interrupted() && (!count || done < count)) {
		struct shmbus_msg m;
		int err, status = 0;
		ssize_t n;

		err = shmbus_consumer__receive_view(c, &m, timeout_ns);
		if (err == -ETIMEDOUT || err == -EAGAIN || err == -EINTR)
			break;
		if (err)
			return err;
		if (!m.reply_to) {
			(void)shmbus_consumer__ack(c, &m);
			continue;
		}
		n = fn(ctx, &m, buf, sizeof(buf), &status);
		if (n >= 0 && status &&
		    (!error_replies || status == EXIT_TEMPFAIL))
			n = -ECANCELED;		/* retried */
		err = n < 0 ? (int)n : answer(c, &m, buf, sizeof(buf), n,
					      &status, error_replies);
		if (err && err != -ENOENT) {
			char why[64];

			if (err == -ECANCELED)
				snprintf(why, sizeof(why), "the command failed "
					 "(status %d)", status);
			fprintf(stderr, "shmbus: reply: request %llu on %s: "
				"%s; given back for redelivery\n",
				(unsigned long long)m.id, q,
				err == -ECANCELED ? why : strerror(-err));
			(void)shmbus_consumer__nack(c, &m,
						    SHMBUS_NACK_BACKOFF);
			continue;
		}
		if (status) {
			fprintf(stderr, "shmbus: reply: request %llu on %s: "
				"answered with error status %d\n",
				(unsigned long long)m.id, q, status);
			if (shmbus_consumer__reject(c, &m))
				(void)shmbus_consumer__ack(c, &m);
		} else {
			(void)shmbus_consumer__ack(c, &m);
		}
		done += !err;
	}
	return (int)MIN_U(done, (unsigned long)INT_MAX);
}

int cmd_reply(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "echo", no_argument, NULL, 'e' },
		{ "exec", required_argument, NULL, 'x' },
		{ "errors", required_argument, NULL, 'E' },
		{ "count", required_argument, NULL, 'n' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *reply_cmd = NULL;
	int64_t timeout_ns = -1;
	unsigned long count = 0;
	struct shmbus_consumer *c;
	struct shmbus *bus;
	bool echo = false, error_replies = false, errors_given = false;
	int opt, n;

	optind = 0;	/* full getopt reset (glibc) */
	while ((opt = getopt_long(argc, argv, "n:t:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'e': echo = true; break;
		case 'x': reply_cmd = optarg; break;
		case 'E':
			errors_given = true;
			if (!strcmp(optarg, "reply"))
				error_replies = true;
			else if (strcmp(optarg, "retry"))
				usage_die("--errors: 'retry' or 'reply', not "
					  "'%s'", optarg);
			break;
		case 'n': count = parse_num("count", optarg, UINT32_MAX); break;
		case 't': timeout_ns = parse_ns(optarg); break;
		case 'h': usage_reply(stdout); return 0;
		default: usage_reply(stderr); return 2;
		}
	}
	if (argc - optind != 1 || echo == !!reply_cmd) {
		usage_reply(stderr);
		return 2;
	}
	if (echo && errors_given)
		usage_die("--errors goes with --exec (--echo does not fail)");
	bus = open_bus(SHMBUS_OPEN_NOCREATE);
	c = attach_or_die(bus, argv[optind], false);
	cli_trap_stop_signals();
	n = serve(c, argv[optind], echo ? echo_handler : exec_handler,
		  (void *)reply_cmd, count, timeout_ns, error_replies);
	shmbus_consumer__free(c);
	shmbus__close(bus);
	if (n < 0 && n != -EINTR)
		die("serving '%s': %s", argv[optind], strerror(-n));
	fprintf(stderr, "answered %d request%s on %s\n", n < 0 ? 0 : n,
		n == 1 ? "" : "s", argv[optind]);
	/* -n COUNT not reached: the timeout ended it */
	if (count && n >= 0 && (unsigned long)n < count && !cli_interrupted())
		return EXIT_TIMEDOUT;
	return 0;
}
