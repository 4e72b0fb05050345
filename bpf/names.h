/* SPDX-License-Identifier: MIT */
/*
 * names.h - the names of buses and queues for the monitor's map "names"
 * (struct shmbus_names, shmbus_bpf.h), as far as the arenas mapped by
 * running processes show them when the monitor starts; the programs'
 * queue_declare and queue_delete keep the map current after.
 */
#ifndef SHMBUS_NAMES_H
#define SHMBUS_NAMES_H

#include <sys/types.h>

#include "shmbus_bpf.h"

/*
 * Every live queue of every bus that @pids (@npids; every process when 0)
 * map, into the map @map_fd as kind SHMBUS_EVENT_SEEN, never over a row
 * there already. Needs root (/proc/PID/map_files). Returns the rows
 * added, or -errno.
 */
int names_fill(int map_fd, const pid_t *pids, int npids);

#endif /* SHMBUS_NAMES_H */
