// SPDX-License-Identifier: MIT
/*
 * daemon.c - `shmbus daemon`: runs shmbusd in the foreground, in place of
 * this process, with --socket and the arguments given.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* $SHMBUS_DAEMON, else the shmbusd beside this program, else the one in
 * $PATH. @self holds the path found beside us. */
static const char *daemon_path(char self[PATH_MAX])
{
	const char *bin = getenv("SHMBUS_DAEMON");
	ssize_t k;
	char *slash;

	if (bin && *bin)
		return bin;
	bin = "shmbusd";
	k = readlink("/proc/self/exe", self, PATH_MAX - 16);
	if (k > 0) {
		self[k] = '\0';
		slash = strrchr(self, '/');
		if (slash) {
			strcpy(slash + 1, "shmbusd");
			if (access(self, X_OK) == 0)
				bin = self;
		}
	}
	return bin;
}

int cmd_daemon(int argc, char **argv)
{
	char self[PATH_MAX];
	const char *bin;
	char **args;
	int n = 0, err;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			printf("usage: shmbus daemon [--verbose] "
			       "[--memory-max BYTES] [--quota LIST] [--policy FILE] "
			       "[--log FILE] "
			       "...\n\n"
			       "Runs shmbusd in the foreground (logs on "
			       "stderr). See shmbusd --help.\n");
			return 0;
		}
	}
	args = calloc(argc + 3, sizeof(char *));
	if (!args)
		die("out of memory");
	bin = daemon_path(self);
	args[n++] = "shmbusd";
	if (cli_socket()) {
		args[n++] = "--socket";
		args[n++] = (char *)cli_socket();
	}
	for (int i = 1; i < argc; i++)
		args[n++] = argv[i];
	args[n] = NULL;
	signal(SIGPIPE, SIG_DFL);	/* not the ignoring main() set up */
	if (strchr(bin, '/'))
		execv(bin, args);
	else
		execvp(bin, args);
	err = errno;
	free(args);
	die("cannot run %s: %s", bin, strerror(err));
}
