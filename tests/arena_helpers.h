/* SPDX-License-Identifier: MIT */
/*
 * arena_helpers.h - unit tests build real arenas in memfds, formatted and
 * mapped by the same code the daemon and library use.
 */
#ifndef SHMBUS_TEST_ARENA_HELPERS_H
#define SHMBUS_TEST_ARENA_HELPERS_H

#include <sys/mman.h>

#include "internal.h"
#include "helpers.h"

static inline void t_params(struct arena_params *p, uint32_t slots,
			    uint32_t pool0_count)
{
	memset(p, 0, sizeof(*p));
	strcpy(p->name, "unit");
	p->mode = 0600;
	p->max_queues = 8;
	p->max_slots = slots;
	p->ring_bytes = 64 * 1024;
	p->nr_pools = 2;
	p->pools[0].payload = 256;
	p->pools[0].count = pool0_count;
	p->pools[1].payload = 4096;
	p->pools[1].count = 16;
	p->grow = 1;		/* pools of fixed size, unless a test says */
}

/* A formatted arena in a memfd; returns the fd (size in *size). */
static inline int t_arena_fd(struct arena_params *p, uint64_t *size)
{
	char why[128];
	uint64_t sz;
	void *mem;
	int fd;

	assert_int_equal(arena_params_check(p, why, sizeof(why)), 0);
	sz = arena_size_for(p);
	fd = memfd_create("unit-arena", MFD_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, sz), 0);
	mem = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(mem != MAP_FAILED);
	assert_int_equal(arena_format(mem, sz, p), 0);
	munmap(mem, sz);
	if (size)
		*size = sz;
	return fd;
}

static inline void t_arena_map(struct arena *a, struct arena_params *p)
{
	int fd = t_arena_fd(p, NULL);

	assert_int_equal(arena_map(a, fd, false), 0);
}

static inline void t_arena_unmap(struct arena *a)
{
	int fd = a->fd;

	arena_unmap(a);
	close(fd);
}

/* Mark a slot ACTIVE as the daemon would, for tests that use caches. */
static inline struct shmbus_slot *t_slot(struct arena *a, uint32_t i)
{
	struct shmbus_slot *s = &a->slots[i];

	s->state = SHMBUS_SLOT_ACTIVE;
	s->pid = getpid();
	return s;
}

#endif /* SHMBUS_TEST_ARENA_HELPERS_H */
