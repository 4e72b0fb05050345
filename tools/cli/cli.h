/* SPDX-License-Identifier: MIT */
/*
 * cli.h - what the files of the shmbus command share: the helpers of
 * main.c, and the command each other file defines (one section per
 * file, headed by its name).
 */
#ifndef SHMBUS_CLI_H
#define SHMBUS_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct iovec;
struct shmbus;
struct shmbus_producer;
struct shmbus_queue_info;

#define MIN_U(a, b) ((a) < (b) ? (a) : (b))

/* ---- main.c: main(), global options, helpers ------------------------ */

/*
 * Exit statuses (docs/man/shmbus.1.scd, EXIT STATUS): 0 done, 1 failed,
 * 2 a usage error (an unknown command or option, a bad value or name, a
 * missing argument), 3 "not there" (monitor status, metrics), 124 timed
 * out before the work asked for was done (as timeout(1)), 128 + N ended
 * by signal N (130 for Ctrl-C), whether the command caught it to finish
 * cleanly or not.
 */
#define EXIT_USAGE	2
#define EXIT_ABSENT	3
#define EXIT_TIMEDOUT	124

/* "shmbus: COMMAND: " and the message, the reason of the last failed
 * call (shmbus_errmsg()) or else the last library diagnostic in
 * parentheses if there was one, on stderr; exit(1), or exit(@code). */
__attribute__((format(printf, 1, 2), noreturn))
void die(const char *fmt, ...);
__attribute__((format(printf, 2, 3), noreturn))
void die_code(int code, const char *fmt, ...);
/* The reason of the last failed call (shmbus_errmsg()) as the whole
 * message, when it is one that says it all; else @fallback; exit(1). */
__attribute__((noreturn))
void die_reason(const char *fallback);
/* A usage error: die_code(EXIT_USAGE, ...). */
#define usage_die(...)	die_code(EXIT_USAGE, __VA_ARGS__)

/* The command being run ("queue", "sub", ...), or "shmbus". */
const char *cli_command(void);

/* --socket, or NULL. */
const char *cli_socket(void);

/* --bus NAME, or NULL; *other_owner: it named another user's bus
 * (USER:NAME). */
const char *cli_bus(bool *other_owner);

/* --owner USER (or --bus USER:NAME): its uid, and *given whether it was
 * given. */
uint32_t cli_owner(bool *given);

/* USER, a user name or a uid: the uid, or a usage error. */
uint32_t cli_parse_user(const char *s);
/* [USER:]NAME: NAME, and for USER:NAME the user's uid in *@owner and
 * *@other set (else both untouched); a usage error if USER is empty or
 * too long. */
const char *cli_split_bus(const char *s, uint32_t *owner, bool *other);
/* @uid's user name, or the number: in one of eight static buffers used
 * in turn. */
const char *cli_user_name(uint32_t uid);

/* The bus named by --bus/--socket, opened with @flags
 * (SHMBUS_OPEN_*), or die(). */
struct shmbus *open_bus(uint32_t flags);

/* The bus named by --bus/--socket, opened read-only without creating it.
 * @must: exit with a one-line error if it cannot be opened; else NULL. */
struct shmbus *cli_open_bus_ro(bool must);

/* A producer or consumer of queue @q, or a one-line error and exit. */
void *attach_or_die(struct shmbus *bus, const char *q, bool producer);

/* A producer of queue @q with @flags (SHMBUS_PRODUCER_*), or a one-line
 * error and exit. */
struct shmbus_producer *producer_or_die(struct shmbus *bus, const char *q,
					uint32_t flags);

/* @s as a number up to @max, a duration in seconds, the same in ns; or
 * die() naming @what or the duration. */
unsigned long parse_num(const char *what, const char *s, unsigned long max);
double parse_seconds(const char *s);
int64_t parse_ns(const char *s);
/* --sync POLICY of a durable queue or persistent subscription. */
uint32_t parse_sync(const char *s);

/*
 * "shmbus CMD SUB [options]": SUB, one of @subs (NULL-terminated; another
 * is a usage error), goes to *sub and argv is shifted so that getopt sees
 * SUB's options. Returns an exit code when there is nothing
 * more to do (help asked for, or no SUB), else -1.
 */
int subcommand(int *argc, char ***argv, void (*usage)(FILE *),
	       const char *const *subs, const char **sub);

/* Every queue, topic and subscription of @bus (free() the array). */
struct shmbus_queue_info *list_queues(struct shmbus *bus, int *n);

/* Die unless @name is a valid queue/topic/group name (1..63 bytes of
 * A-Z a-z 0-9 . _ -, not starting with '.'), saying what is allowed;
 * @what names it ("queue", "dead-letter queue", "group"). */
void check_name(const char *what, const char *name);

struct shmbus_msg;
/*
 * Run @cmd with /bin/sh -c, the @len bytes at @in on its standard input
 * (a file: it may read all, part or none of it), with SHMBUS_MSG_ID and
 * SHMBUS_DELIVERY of @m (if given) in its environment, and its standard
 * output into @out (@cap bytes; more is read and counted in *@over; its
 * length in *@outlen), or, when @out is NULL, ours. Returns its exit
 * status (0..255), 128 + N when signal N killed it, or -errno when it
 * could not be run.
 */
int cli_exec(const char *cmd, const void *in, size_t len,
	     const struct shmbus_msg *m, void *out, size_t cap, size_t *outlen,
	     size_t *over);

/* SIGINT and SIGTERM set a flag, cli_interrupted(), instead of ending the
 * process; a blocking receive or serve they interrupt returns -EINTR.
 * The command then finishes what it must and returns; main() makes its
 * exit status 128 + the signal, as if the signal had ended it. */
void cli_trap_stop_signals(void);
bool cli_interrupted(void);
/* For a command with handlers of its own (top): signal @sig stopped it. */
void cli_note_signal(int sig);
/* The stop signal that came, or 0; how many stop signals came. */
int cli_signal(void);
int cli_signal_count(void);

/* ---- out.c: escaped arena text, checked writes --------------------- */

/* Room for the escape of @n bytes: 4 per byte at most, and the NUL. */
#define ESC_LEN(n)	(4 * (n) + 1)

/* @len bytes of @s escaped into @buf (@cap bytes, cut at a whole
 * escape): printable ASCII as it is but a backslash, which is doubled;
 * every other byte as backslash, 'x', two hex digits. Returns @buf. */
const char *esc_text(char *buf, size_t cap, const void *s, size_t len);

/* A name (at most 64 bytes read) escaped as esc_text() does, in one of
 * eight static buffers used in turn: for a row of a table. */
const char *esc(const char *s);

/* esc(@s), up to 96 bytes of it, with each backslash and quote
 * backslashed: the inside of a JSON string or of a Prometheus label
 * value. json_str() adds the quotes. */
void put_quoted(FILE *f, const char *s);
void json_str(FILE *f, const char *s);

/* writev() until all of @iov went out (@iov is consumed). Returns 0 or
 * -errno (-EPIPE: the reader is gone; SIGPIPE is ignored). */
int cli_write_all(int fd, struct iovec *iov, int n);

/* Make sure fds 0, 1 and 2 are open before anything else is: a closed
 * one gets /dev/null opened so that it still fails as a closed one. */
void cli_std_fds(void);

/* At exit: flush and close stdout; a write that failed exits 1 with a
 * message. */
void cli_close_stdout(void);

/* ---- bridge.c -------------------------------------------------------- */

int cmd_bridge(int argc, char **argv);

/* ---- brstat.c -------------------------------------------------------- */

#define CLI_BRIDGE_ROUTES	64

/* A route of a running bridge, from its stats file. */
struct cli_bridge_route {
	char name[64];
	bool out;
	unsigned long long blocked, forwarded, confirmed, nacked,
			   redelivered, reconnects, inflight, blocks, extended,
			   rejected;
	long long lag;		/* -1: not known yet */
};

struct cli_bridge {
	int pid;
	long long age_ms;	/* since the file was written */
	unsigned n;
	struct cli_bridge_route routes[CLI_BRIDGE_ROUTES];
};

/* The live bridges of bus @bus (socket: the global option's, or the
 * default): how many, in *@out (free() it). */
int cli_bridges(const char *bus, struct cli_bridge **out);

/* ---- bus.c ----------------------------------------------------------- */

int cmd_bus(int argc, char **argv);

/* ---- daemon.c -------------------------------------------------------- */

int cmd_daemon(int argc, char **argv);

/* ---- queue.c --------------------------------------------------------- */

int cmd_queue(int argc, char **argv);

/* Delete queue or topic @name ("deleted NAME"), or die() calling it a
 * @kind ("queue", "topic"). */
void delete_queue(const char *kind, const char *name);

/* ---- topic.c --------------------------------------------------------- */

int cmd_topic(int argc, char **argv);

/* ---- pubsub.c -------------------------------------------------------- */

int cmd_pub(int argc, char **argv);
int cmd_sub(int argc, char **argv);

/* ---- reqrep.c -------------------------------------------------------- */

int cmd_req(int argc, char **argv);
int cmd_reply(int argc, char **argv);

/* ---- stat.c ---------------------------------------------------------- */

int cmd_stat(int argc, char **argv);

/* ---- dlq.c ----------------------------------------------------------- */

int cmd_dlq(int argc, char **argv);

/* ---- monitor.c ------------------------------------------------------- */

int cmd_monitor(int argc, char **argv);

/* ---- metrics.c ------------------------------------------------------- */

int cmd_metrics(int argc, char **argv);

/* ---- top.c ----------------------------------------------------------- */

int cmd_top(int argc, char **argv);

#endif /* SHMBUS_CLI_H */
