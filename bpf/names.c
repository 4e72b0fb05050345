// SPDX-License-Identifier: MIT
/*
 * names.c - the monitor's first fill of the map "names" (names.h): the
 * bus and queue names of every bus a running process maps, read from the
 * arena itself. An arena is a memfd named "shmbus:...": this reads it
 * through /proc/PID/map_files (root), with pread and bounds checks only,
 * never trusting what any member may have written into it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "names.h"
#include "shmbus/layout.h"
#include "targets.h"

struct fill {
	int map_fd;
	int rows;
	uint32_t buses[256];		/* read already, by bus id */
	int nbuses;
};

static bool bus_done(struct fill *f, uint32_t id)
{
	for (int i = 0; i < f->nbuses; i++)
		if (f->buses[i] == id)
			return true;
	if (f->nbuses < (int)(sizeof(f->buses) / sizeof(*f->buses)))
		f->buses[f->nbuses++] = id;
	return false;
}

/* One queue directory entry's live name into the map; existing rows (a
 * probe's, newer) are left alone. */
static void name_queue(struct fill *f, int fd, const struct shmbus_sb *sb,
		       uint32_t qid)
{
	struct shmbus_queue q;	/* lines 0 and 1 only */
	size_t want = offsetof(struct shmbus_queue, name) + SHMBUS_NAME_MAX;
	struct shmbus_qkey k = { .bus = sb->bus_id, .qid = qid };
	struct shmbus_names n = { .kind = SHMBUS_EVENT_SEEN };

	if (pread(fd, &q, want, sb->qdir_off + (uint64_t)qid * sb->queue_size) !=
	    (ssize_t)want)
		return;
	if (!SHMBUS_QGEN_LIVE(q.gen) || (q.flags & SHMBUS_QF_INTAKE))
		return;		/* free, or a persistent queue's intake */
	memcpy(n.bus, sb->name, sizeof(n.bus) - 1);
	memcpy(n.queue, q.name, sizeof(n.queue) - 1);
	if (!bpf_map_update_elem(f->map_fd, &k, &n, BPF_NOEXIST))
		f->rows++;
}

/* The arena behind @fd: its superblock checked, then each queue. */
static void name_bus(struct fill *f, int fd)
{
	struct shmbus_sb sb;
	uint64_t dir_end;

	if (pread(fd, &sb, sizeof(sb), 0) != sizeof(sb) ||
	    sb.magic != SHMBUS_MAGIC || sb.version != SHMBUS_LAYOUT_VERSION ||
	    !sb.bus_id || sb.max_queues > SHMBUS_MAX_QUEUES ||
	    sb.queue_size < offsetof(struct shmbus_queue, name) +
			    SHMBUS_NAME_MAX)
		return;
	dir_end = sb.qdir_off + (uint64_t)sb.max_queues * sb.queue_size;
	if (dir_end > sb.arena_size || bus_done(f, sb.bus_id))
		return;
	sb.name[SHMBUS_NAME_MAX - 1] = '\0';
	for (uint32_t qid = 0; qid < sb.max_queues; qid++)
		name_queue(f, fd, &sb, qid);
}

static int name_mapping(const struct proc_map *pm, void *ctx)
{
	char path[96];
	int fd;

	if (strncmp(pm->path, "/memfd:shmbus:", 14))
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/map_files/%lx-%lx",
		 (int)pm->pid, pm->start, pm->end);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;	/* gone meanwhile */
	name_bus(ctx, fd);
	close(fd);
	return 0;
}

int names_fill(int map_fd, const pid_t *pids, int npids)
{
	struct fill *f = calloc(1, sizeof(*f));
	int err, rows;

	if (!f)
		return -ENOMEM;
	f->map_fd = map_fd;
	err = proc_maps_scan(pids, npids, name_mapping, f);
	rows = f->rows;
	free(f);
	return err ? err : rows;
}
