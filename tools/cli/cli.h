/* SPDX-License-Identifier: MIT */
/*
 * cli.h - what the pieces of the shmbus command (shmbus.c, monitor.c,
 * metrics.c, top.c) share.
 */
#ifndef SHMBUS_CLI_H
#define SHMBUS_CLI_H

#include <stdbool.h>
#include <stdint.h>

struct shmbus;

/* The bus named by --bus/--socket, opened read-only without creating it.
 * @must: exit with a one-line error if it cannot be opened; else NULL. */
struct shmbus *cli_open_bus_ro(bool must);

int cmd_monitor(int argc, char **argv);	/* monitor.c */
int cmd_metrics(int argc, char **argv);	/* metrics.c */
int cmd_top(int argc, char **argv);	/* top.c */

#endif /* SHMBUS_CLI_H */
