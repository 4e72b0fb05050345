// SPDX-License-Identifier: MIT
/*
 * disk.c - what a publisher that wrote the journal itself would get: one
 * process write()s one 64 B record per message to a file in the state
 * directory's file system, to the page cache only, or with an fdatasync
 * after every 1, 16 or 256 records. Set against the daemon's durable
 * queues (never and always), which pay an intake hop, a second process
 * and a consumer on top of the same write and sync.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "dbench.h"

#define RECORD		64u
#define SEG_BYTES	(64ull << 20)	/* start over, as a segment would */

/* Records per second for dcfg.seconds, an fdatasync every @every
 * records (0: never). */
static double disk_rate(int fd, unsigned every)
{
	uint64_t n = 0, end, t0, off = 0;
	char rec[RECORD];

	t0 = now_ns();
	end = t0 + (uint64_t)(dcfg.seconds * 1e9);
	do {
		for (unsigned i = 0; i < (every ? every : 256); i++, n++) {
			int err;

			fill(rec, sizeof(rec), n);
			if (off + RECORD > SEG_BYTES) {
				if (ftruncate(fd, 0) < 0 ||
				    lseek(fd, 0, SEEK_SET) < 0)
					die("truncate: %s", strerror(errno));
				off = 0;
			}
			err = write_full(fd, rec, sizeof(rec));
			if (err)
				die("write: %s", strerror(-err));
			off += RECORD;
		}
		if (every && fdatasync(fd) < 0)
			die("fdatasync: %s", strerror(errno));
	} while (now_ns() < end);
	return (double)n * 1e9 / (double)(now_ns() - t0);
}

void d_run_disk(void)
{
	static const unsigned every[] = { 0, 1, 16, 256 };
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s.disk", d_state_dir());
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		die("open %s: %s", path, strerror(errno));
	fprintf(stderr, "one process writing 64 B records to %s\n", path);
	printf("one process, write() of a 64 B record per message:\n");
	for (size_t i = 0; i < sizeof(every) / sizeof(*every); i++) {
		double r = disk_rate(fd, every[i]);

		if (every[i])
			printf("  fdatasync every %3u records %12.0f "
			       "records/s\n", every[i], r);
		else
			printf("  page cache only            %12.0f "
			       "records/s\n", r);
		fflush(stdout);
	}
	printf("\n");
	close(fd);
	unlink(path);
}
