// SPDX-License-Identifier: MIT
/*
 * static_pub.c - a program linked with libshmbus.a (the library's probes
 * are in its own executable, not in a libshmbus.so), for test_monitor:
 * publishes each line of standard input to QUEUE on BUS, the daemon the
 * library finds (SHMBUS_SOCKET).
 *
 *   static-pub BUS QUEUE < lines
 */
#include <stdio.h>
#include <string.h>

#include "shmbus.h"

int main(int argc, char **argv)
{
	struct shmbus_producer *p;
	struct shmbus *bus;
	char line[256];
	int n = 0;

	if (argc != 3) {
		fprintf(stderr, "usage: static-pub BUS QUEUE < lines\n");
		return 2;
	}
	bus = shmbus__open(argv[1], NULL);
	p = bus ? shmbus_producer__new(bus, argv[2], NULL) : NULL;
	if (!p) {
		perror("static-pub: open");
		return 1;
	}
	while (fgets(line, sizeof(line), stdin)) {
		int err = shmbus_producer__publish(p, line, strcspn(line, "\n"),
						   NULL);

		if (err) {
			fprintf(stderr, "static-pub: publish: %s\n",
				strerror(-err));
			return 1;
		}
		n++;
	}
	shmbus_producer__free(p);
	shmbus__close(bus);
	printf("%d\n", n);
	return 0;
}
