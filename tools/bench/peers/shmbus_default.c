// SPDX-License-Identifier: MIT
/*
 * shmbus_default.c - "shmbus default": what a program gets from shmbus
 * when it sets no option, on the same queues as the "shmbus" rows. The
 * consumer takes the default options (spin 50 us, then sleep; leases,
 * acked one by one by the release). The publish waits for room
 * (timeout -1) as every other row's does: a default publish fails at
 * once on a full queue, and a program that must not lose a message has
 * to set that one option.
 */
#include <errno.h>

#include "bench.h"

int sbd_open(struct end *e, int chan)
{
	if (e->tx)
		e->prod = shmbus_producer__new(bench_bus, queue_names[chan],
					       NULL);
	else
		e->cons = shmbus_consumer__new(bench_bus, queue_names[chan],
					       NULL);
	return e->prod || e->cons ? 0 : -errno;
}
