// SPDX-License-Identifier: MIT
/*
 * bridge.c - shmbus bridge: run shmbus-bridge, the program that links a
 * bus to RabbitMQ (tools/bridge/). It is a program of its own so that
 * the shmbus command needs neither librabbitmq nor OpenSSL; this command
 * finds it beside itself (a build tree, or the same bin directory) or
 * else on PATH, hands it the bus and socket of the global options, and
 * becomes it (same pid: a supervisor's signals reach the bridge).
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

int cmd_bridge(int argc, char **argv)
{
	char path[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 16);
	bool other;
	const char *bus = cli_bus(&other);

	if (other)
		usage_die("the bridge opens buses of its own user only: run it as "
		    "the bus's owner, with --bus NAME");
	if (bus && setenv("SHMBUS_BUS", bus, 1))
		die("setenv: %s", strerror(errno));
	if (cli_socket() && setenv("SHMBUS_SOCKET", cli_socket(), 1))
		die("setenv: %s", strerror(errno));
	argv[0] = "shmbus-bridge";
	if (n > 0) {
		char *slash;

		path[n] = '\0';
		slash = strrchr(path, '/');
		if (slash) {
			strcpy(slash + 1, "shmbus-bridge");
			execv(path, argv);
		}
	}
	execvp("shmbus-bridge", argv);
	die("cannot run shmbus-bridge: %s (it is installed with shmbus, "
	    "beside the shmbus command)", strerror(errno));
}
