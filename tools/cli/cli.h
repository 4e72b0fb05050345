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

struct shmbus;
struct shmbus_queue_info;

#define MIN_U(a, b) ((a) < (b) ? (a) : (b))

/* ---- main.c: main(), global options, helpers ------------------------ */

/* "shmbus: COMMAND: " and the message, the reason of the last failed
 * call (shmbus_errmsg()) or else the last library diagnostic in
 * parentheses if there was one, on stderr; exit(1). */
__attribute__((format(printf, 1, 2), noreturn))
void die(const char *fmt, ...);

/* --socket, or NULL. */
const char *cli_socket(void);

/* The bus named by --bus/--socket, opened with @flags
 * (SHMBUS_OPEN_*), or die(). */
struct shmbus *open_bus(uint32_t flags);

/* The bus named by --bus/--socket, opened read-only without creating it.
 * @must: exit with a one-line error if it cannot be opened; else NULL. */
struct shmbus *cli_open_bus_ro(bool must);

/* A producer or consumer of queue @q, or a one-line error and exit. */
void *attach_or_die(struct shmbus *bus, const char *q, bool producer);

/* @s as a number up to @max, a duration in seconds, the same in ns; or
 * die() naming @what or the duration. */
unsigned long parse_num(const char *what, const char *s, unsigned long max);
double parse_seconds(const char *s);
int64_t parse_ns(const char *s);

/*
 * "shmbus CMD SUB [options]": SUB goes to *sub and argv is shifted so that
 * getopt sees SUB's options. Returns an exit code when there is nothing
 * more to do (help asked for, or no SUB), else -1.
 */
int subcommand(int *argc, char ***argv, void (*usage)(FILE *),
	       const char **sub);

/* Every queue, topic and subscription of @bus (free() the array). */
struct shmbus_queue_info *list_queues(struct shmbus *bus, int *n);

/* SIGINT and SIGTERM set a flag, cli_interrupted(), instead of ending the
 * process; a blocking receive or serve they interrupt returns -EINTR. */
void cli_trap_stop_signals(void);
bool cli_interrupted(void);

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
