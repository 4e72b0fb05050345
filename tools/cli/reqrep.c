// SPDX-License-Identifier: MIT
/*
 * reqrep.c - `shmbus req` and `shmbus reply`: sending one request and
 * printing its reply, and serving the requests of a queue with their own
 * body (--echo) or a shell command's output (--exec).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
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
"no consumer serves QUEUE, or after --timeout (default 5) without a reply.\n");
}

int cmd_req(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
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
	bus = open_bus(SHMBUS_OPEN_NOCREATE);
	n = shmbus__request(bus, argv[optind], argv[optind + 1],
			    strlen(argv[optind + 1]), rep, sizeof(rep),
			    timeout_ns);
	shmbus__close(bus);
	if (n == -EHOSTUNREACH)
		die("no responders on '%s'", argv[optind]);
	if (n == -ENOENT)
		die("no queue '%s'", argv[optind]);
	if (n == -ETIMEDOUT)
		die("no reply from '%s' within %.3f s", argv[optind],
		    timeout_ns / 1e9);
	if (n < 0)
		die("request to '%s': %s", argv[optind], strerror((int)-n));
	fwrite(rep, 1, (size_t)n, stdout);
	fputc('\n', stdout);
	return 0;
}

/* ---- reply --------------------------------------------------------- */

static void usage_reply(FILE *f)
{
	fprintf(f,
"usage: shmbus reply QUEUE (--echo | --exec CMD) [-n COUNT]\n"
"                          [--timeout SECONDS]\n"
"\n"
"Serve requests on QUEUE: --echo answers each with its own body; --exec\n"
"runs CMD with /bin/sh for each request, the request on its standard\n"
"input, and answers with its standard output (a failing CMD answers\n"
"nothing: the request is rejected). Stops after COUNT requests, or after\n"
"--timeout SECONDS without one (default: runs until interrupted).\n");
}

/* Run the shell command @ctx with the request on stdin; its stdout is
 * the reply. */
static ssize_t exec_handler(void *ctx, const struct shmbus_msg *req,
			    void *reply, size_t cap)
{
	const char *cmd = ctx;
	char tmpl[] = "/tmp/shmbus-req-XXXXXX";
	int in = mkstemp(tmpl), out[2], st;
	ssize_t n = 0, r;
	pid_t kid;

	if (in < 0)
		return -errno;
	unlink(tmpl);
	if (write(in, req->data, req->len) != (ssize_t)req->len ||
	    lseek(in, 0, SEEK_SET) < 0 || pipe(out) < 0) {
		close(in);
		return -EIO;
	}
	kid = fork();
	if (kid == 0) {
		dup2(in, 0);
		dup2(out[1], 1);
		close(in);
		close(out[0]);
		close(out[1]);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	close(in);
	close(out[1]);
	while (kid > 0 && (size_t)n < cap &&
	       (r = read(out[0], (char *)reply + n, cap - n)) != 0) {
		if (r < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		n += r;
	}
	close(out[0]);
	if (kid < 0 || waitpid(kid, &st, 0) < 0 || !WIFEXITED(st) ||
	    WEXITSTATUS(st) != 0)
		return -ECANCELED;
	if (n && ((char *)reply)[n - 1] == '\n')
		n--;
	return n;
}

static ssize_t echo_handler(void *ctx, const struct shmbus_msg *req,
			    void *reply, size_t cap)
{
	size_t n = MIN_U(req->len, cap);

	(void)ctx;
	memcpy(reply, req->data, n);
	return (ssize_t)n;
}

int cmd_reply(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "echo", no_argument, NULL, 'e' },
		{ "exec", required_argument, NULL, 'x' },
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
	bool echo = false;
	int opt, n;

	optind = 0;	/* full getopt reset (glibc) */
	while ((opt = getopt_long(argc, argv, "n:t:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'e': echo = true; break;
		case 'x': reply_cmd = optarg; break;
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
	bus = open_bus(SHMBUS_OPEN_NOCREATE);
	c = attach_or_die(bus, argv[optind], false);
	cli_trap_stop_signals();
	n = shmbus_consumer__serve(c, echo ? echo_handler : exec_handler,
				   (void *)reply_cmd, (unsigned)count,
				   timeout_ns);
	shmbus_consumer__free(c);
	shmbus__close(bus);
	if (n < 0 && n != -EINTR)
		die("serving '%s': %s", argv[optind], strerror(-n));
	fprintf(stderr, "answered %d request%s on %s\n", n < 0 ? 0 : n,
		n == 1 ? "" : "s", argv[optind]);
	return 0;
}
