// SPDX-License-Identifier: MIT
/*
 * bus.c - buses: creating an arena (backing, format, seal, map), finding
 * a bus by owner and name, what a closed connection leaves on every bus,
 * deleting one, and tearing buses down. Who may open, create or change a bus is
 * decided in dispatch.c (policy.c).
 *
 * Bus names are per owner: every uid has its own namespace, so a bus is
 * (owner uid, name). A client opens a bus of its own uid unless it names
 * another owner, and a bus is only ever created in its creator's own
 * namespace: nobody can take a name another user will want.
 *
 * Arena backing: always a memfd sealed against shrinking and growing
 * (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), so no client that holds the
 * fd can truncate it and make every other process take SIGBUS. There is
 * no other backing (docs/decisions.md: not files, not hugetlb memfds).
 * The size is checked against the memory budget first (memory.c), then
 * fallocate()d up front: a shortage fails bus creation with -ENOMEM or
 * -EDQUOT, never a SIGBUS later and never the OOM killer.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include "shmbusd.h"

struct bus_ref bus_ref_of(const struct dbus *b)
{
	return (struct bus_ref){ .owner_uid = b->owner_uid,
				 .owner_gid = b->owner_gid,
				 .mode = b->mode, .name = b->name };
}

/* Buses are named per owner: (owner uid, name) is the key. */
struct dbus *bus_find(const struct daemon *d, uid_t owner, const char *name)
{
	for (struct dbus *b = d->buses; b; b = b->next)
		if (b->owner_uid == owner &&
		    !strncmp(b->name, name, SHMBUS_NAME_MAX))
			return b;
	return NULL;
}

/* The creation parameters of BUS_OPEN @req by @p, checked and completed
 * (arena_params_check). */
static int bus_params(const struct daemon *d, const struct sbc_bus_open *req,
		      const struct peer *p, struct arena_params *ap)
{
	const struct arena_params *def = &d->bus_defaults;
	char why[128] = "";
	int err;

	memset(ap, 0, sizeof(*ap));
	memcpy(ap->name, req->name, sizeof(ap->name));
	ap->uid = p->uid;
	ap->gid = p->gid;
	ap->mode = req->mode;
	ap->max_queues = req->max_queues;
	ap->max_slots = req->max_slots;
	ap->ring_bytes = req->ring_bytes;
	ap->nr_pools = req->nr_pools;
	for (unsigned i = 0; i < req->nr_pools; i++) {
		ap->pools[i].payload = req->pools[i].payload;
		ap->pools[i].count = req->pools[i].count;
		ap->pools[i].max = req->pools[i].max;
	}
	ap->grow = req->grow ? req->grow : def->grow;
	/* what the creator left open: the daemon's defaults, if it has any */
	if (!ap->max_queues)
		ap->max_queues = def->max_queues;
	if (!ap->max_slots)
		ap->max_slots = def->max_slots;
	if (!ap->ring_bytes)
		ap->ring_bytes = def->ring_bytes;
	if (!ap->nr_pools) {
		ap->nr_pools = def->nr_pools;
		memcpy(ap->pools, def->pools, sizeof(ap->pools));
	}
	err = arena_params_check(ap, why, sizeof(why));
	if (err)
		log_warn("bus '%s': refusing to create: %s", req->name, why);
	return err;
}

void bus_defaults_describe(const struct daemon *d)
{
	struct arena_params ap = d->bus_defaults;
	char why[128], pools[256] = "";
	size_t n = 0;

	strcpy(ap.name, "default");
	if (arena_params_check(&ap, why, sizeof(why)))
		return;		/* options_parse() refused it already */
	for (unsigned i = 0; i < ap.nr_pools && n < sizeof(pools); i++)
		n += snprintf(pools + n, sizeof(pools) - n, "%s%u:%u",
			      i ? "," : "", ap.pools[i].payload,
			      ap.pools[i].count);
	log_info("a bus whose creator does not say: %u queues, %u slots, "
		 "%llu ring bytes, pools %s: %llu bytes", ap.max_queues,
		 ap.max_slots, (unsigned long long)ap.ring_bytes, pools,
		 (unsigned long long)arena_size_for(&ap));
}

void arena_memfd_name(const struct daemon *d, const struct arena_params *ap,
		      uint32_t bus_id, char *buf, size_t len)
{
	snprintf(buf, len, "shmbus:%08x:%u:%u:%o:%08x:%s", d->instance,
		 (unsigned)ap->uid, (unsigned)ap->gid, (unsigned)ap->mode,
		 bus_id, ap->name);
}

/* A sealable memfd of @size bytes called @desc, every page the arena of
 * @ap has when made reserved (its pools' reserve left as holes). */
static int arena_backing(const char *desc, uint64_t size,
			 const struct arena_params *ap)
{
	int fd, err;

	fd = memfd_create(desc, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, size) < 0) {
		err = -errno;
		goto fail;
	}
	/* reserve the pages now: ENOSPC here, not SIGBUS later */
	err = arena_back(fd, ap);
	if (err)
		goto fail;
	return fd;
fail:
	close(fd);
	return err;
}

/* The arena of @ap, formatted and sealed: its fd, or -errno. */
static int arena_make(const struct daemon *d, const struct arena_params *ap,
		      uint64_t size)
{
	char desc[160];
	void *mem;
	int fd, err;

	/* the memfd's name is the bus's identity to a daemon that adopts it
	 * (adopt.c): fixed now, with the bus id the superblock gets */
	arena_memfd_name(d, ap, ap->bus_id, desc, sizeof(desc));
	fd = arena_backing(desc, size, ap);
	if (fd < 0) {
		log_warn("bus '%s': cannot reserve %llu bytes: %s", ap->name,
			 (unsigned long long)arena_backed_for(ap),
			 strerror(-fd));
		return fd;
	}
	mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (mem == MAP_FAILED) {
		err = -errno;
		goto fail;
	}
	err = arena_format(mem, size, ap);
	munmap(mem, size);
	if (err)
		goto fail;
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		err = -errno;
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return err;
}

void bus_destroy(struct dbus *b)
{
	arena_unmap(&b->arena);
	if (b->fd >= 0)
		close(b->fd);
	if (b->ro_fd >= 0)
		close(b->ro_fd);
	free(b->queues);
	free(b->slots);
	free(b->ringmap);
	free(b->timers);
	free(b);
}

int bus_record(int fd, const struct arena_params *ap, struct dbus **out)
{
	struct dbus *b = calloc(1, sizeof(*b));
	char path[64];
	int err;

	if (!b) {
		close(fd);
		return -ENOMEM;
	}
	b->fd = fd;
	b->ro_fd = -1;
	b->deferred_tail = &b->deferred;
	memcpy(b->name, ap->name, sizeof(b->name));
	b->owner_uid = ap->uid;
	b->owner_gid = ap->gid;
	b->mode = ap->mode;
	err = arena_map(&b->arena, fd, false);
	if (err) {
		close(fd);
		free(b);
		return err;
	}
	repair_record(b);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	b->ro_fd = open(path, O_RDONLY | O_CLOEXEC);
	b->queues = calloc(b->arena.max_queues, sizeof(*b->queues));
	b->slots = calloc(b->arena.max_slots, sizeof(*b->slots));
	b->ringmap = calloc((b->arena.ring_units + 63) / 64, sizeof(uint64_t));
	if (b->ro_fd < 0 || !b->queues || !b->slots || !b->ringmap) {
		err = b->ro_fd < 0 ? -errno : -ENOMEM;
		bus_destroy(b);
		return err;
	}
	*out = b;
	return 0;
}

int bus_create(struct daemon *d, const struct sbc_bus_open *req,
	       const struct peer *p, struct dbus **out, struct request *r)
{
	struct arena_params ap;
	struct dbus *b = NULL;
	char why[256];
	uint64_t size, backed;
	int fd, err;

	err = bus_params(d, req, p, &ap);
	if (err)
		return err;
	while (!ap.bus_id)
		if (getrandom(&ap.bus_id, sizeof(ap.bus_id), 0) !=
		    sizeof(ap.bus_id))
			ap.bus_id = (uint32_t)now_ns() ^ (uint32_t)getpid();
	size = arena_size_for(&ap);
	backed = arena_backed_for(&ap);
	err = memory_admit(d, backed, why, sizeof(why));
	if (err) {
		log_warn("bus '%s' for uid %u pid %d refused: %s", ap.name,
			 p->uid, p->pid, why);
		req_reason(r, "%s", why);
		return err;
	}
	/* charged for the bus's life: until it is deleted, or the daemon
	 * exits */
	err = quota_charge(p->uid, p->pid, Q_BUSES, 1);
	if (err)
		return err;
	err = quota_charge(p->uid, p->pid, Q_BYTES, backed);
	if (err)
		goto uncharge_bus;
	fd = arena_make(d, &ap, size);
	if (fd < 0) {
		err = fd;
		goto uncharge;
	}
	err = bus_record(fd, &ap, &b);
	if (err)
		goto uncharge;
	pools_take(b, true);
	bus_link(d, b);
	log_info("bus %u:%s created by pid %d: %llu bytes (pools may grow "
		 "to %llu), mode %04o, %u queues, %u slots, %u pools (sealed "
		 "memfd)", p->uid, b->name, p->pid,
		 (unsigned long long)b->committed, (unsigned long long)size,
		 ap.mode, ap.max_queues, ap.max_slots, ap.nr_pools);
	*out = b;
	return 0;
uncharge:
	quota_release(p->uid, Q_BYTES, backed);
uncharge_bus:
	quota_release(p->uid, Q_BUSES, 1);
	return err;
}

void bus_link(struct daemon *d, struct dbus *b)
{
	WRITE_ONCE(b->arena.sb->daemon_pid, (uint32_t)getpid());
	b->next = d->buses;
	d->buses = b;
	kmod_watch(b);
	fdstore_bus(d, b);
	fdstore_status(d);
}

void buses_conn_gone(struct daemon *d, uint32_t conn_id)
{
	for (struct dbus *b = d->buses; b; b = b->next) {
		bool any = false;

		for (uint32_t i = 0; i < b->arena.max_slots; i++) {
			if (b->slots[i].conn_id == conn_id) {
				slot_release(b, i, true);
				any = true;
			}
		}
		for (uint32_t i = 0; i < b->arena.max_queues; i++) {
			if (b->queues[i].live && b->queues[i].owner_conn == conn_id) {
				dqueue_delete(b, (int)i);
				any = true;
			}
		}
		if (any) {
			pools_rebuild(b);
			server_want_tick();
		}
	}
}

/* What the daemon holds of @b besides its record, let go of, and the
 * record freed: its journals synced and closed, grace periods and timers
 * dropped (the arena is left as it is), seat eventfds closed. */
static void bus_teardown(struct dbus *b)
{
	durable_bus_free(b);
	defer_drop(b);
	timers_drop(b, UINT32_MAX);
	for (uint32_t i = 0; i < b->arena.max_queues; i++)
		if (b->queues[i].seat_fds)
			seats_close(&b->queues[i]);
	bus_destroy(b);
}

void buses_free(struct daemon *d)
{
	while (d->buses) {
		struct dbus *b = d->buses;

		d->buses = b->next;
		bus_teardown(b);
	}
}

void bus_count_queues(const struct dbus *b, uint32_t *queues,
		      uint32_t *durable)
{
	uint32_t n = 0, nd = 0;

	for (uint32_t i = 0; i < b->arena.max_queues; i++) {
		const struct dqueue *dq = &b->queues[i];

		if (!dq->live || dq->kind == DQ_INTAKE)
			continue;
		n++;
		nd += dq->dur != NULL;
	}
	*queues = n;
	if (durable)
		*durable = nd;
}

void bus_delete(struct daemon *d, struct dbus *b,
		struct sbc_bus_delete_reply *rep)
{
	struct dbus **pp;
	uid_t owner = b->owner_uid;

	bus_count_queues(b, &rep->queues, NULL);
	rep->members = server_bus_members(b, NULL, 0);
	rep->arena_size = b->committed;
	/* first, so that a member whose connection closes below knows why
	 * (-EIDRM), and no daemon adopts the arena from a member again */
	WRITE_ONCE(b->arena.sb->deleted, 1);
	/* every handle sees its queue's gen change (-EIDRM), sleepers are
	 * woken, journals removed */
	for (uint32_t i = 0; i < b->arena.max_queues; i++)
		if (b->queues[i].live)
			dqueue_delete(b, (int)i);
	server_bus_evict(b, "its bus was deleted");
	/* The memory goes now, not when the last member unmaps it: its
	 * owner's bytes quota is released below, and a member could keep
	 * a deleted bus's pages forever. The first page (the superblock,
	 * which says "deleted") stays; a member that touches the rest
	 * reads zeros, in pages of its own. */
	if (b->arena.size > 4096 &&
	    fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4096,
		      (off_t)(b->arena.size - 4096)) < 0)
		log_warn("bus %u:%s: freeing its memory: %s", owner, b->name,
			 strerror(errno));
	for (pp = &d->buses; *pp && *pp != b; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = b->next;
	/* whether or not it has durable queues now: one it had may have
	 * left its bus.conf, which would make the bus again at a start */
	statedir_bus_remove(b);
	fdstore_bus_gone(d, b);
	fdstore_status(d);
	kmod_unwatch(b);
	quota_release(owner, Q_BUSES, 1);
	quota_release(owner, Q_BYTES, b->committed);
	log_info("bus %u:%s deleted: %u queues, %u members detached, %llu "
		 "bytes freed", owner, b->name, rep->queues, rep->members,
		 (unsigned long long)rep->arena_size);
	bus_teardown(b);
}
