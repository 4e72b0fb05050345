// SPDX-License-Identifier: MIT
/*
 * buses.c - the buses of a daemon, without opening one: listing them and
 * deleting one (BUS_LIST, BUS_DELETE on a connection that opens no bus).
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "internal.h"

static void entry_of(struct shmbus_bus_entry *out,
		     const struct sbc_bus_entry *e)
{
	memset(out, 0, sizeof(*out));
	memcpy(out->name, e->name, sizeof(out->name));
	out->name[sizeof(out->name) - 1] = '\0';
	out->owner_uid = e->owner_uid;
	out->owner_gid = e->owner_gid;
	out->mode = e->mode;
	out->id = e->bus_id;
	out->arena_size = e->arena_size;
	out->created_ns = e->created_ns;
	out->members = e->members;
	out->queues = e->queues;
	out->durable = e->durable;
}

SHMBUS_API int shmbus__bus_list(const struct shmbus_open_opts *opts,
				struct shmbus_bus_entry *out, unsigned cap)
{
	struct client c;
	uint32_t cursor = 0;
	unsigned total = 0;
	int err;

	if ((!out && cap) || !OPTS_VALID(opts, shmbus_open_opts))
		return -EINVAL;
	/* a look never starts a daemon: none running, no bus in memory */
	err = client_connect_opts(&c, opts, false);
	if (!err)
		client_handshake_done(&c);
	while (!err) {
		struct sbc_bus_list req = { .cursor = cursor };
		struct sbc_bus_list_reply rep;

		err = client_call(&c, SBC_BUS_LIST, &req, sizeof(req), &rep,
				  sizeof(rep), NULL, NULL);
		if (err)
			break;
		/* a page past the last, or a cursor that does not move on,
		 * would loop for ever */
		if (rep.n > SBC_BUS_LIST_MAX || (rep.next && rep.next <= cursor)) {
			err = -EPROTO;
			break;
		}
		for (uint32_t i = 0; i < rep.n; i++, total++)
			if (total < cap)
				entry_of(&out[total], &rep.e[i]);
		if (!rep.next)
			break;
		cursor = rep.next;
	}
	client_fini(&c);
	return err ? err : (int)MIN(total, (unsigned)INT32_MAX);
}

SHMBUS_API int shmbus__bus_delete(const char *name, uint32_t flags,
				  const struct shmbus_open_opts *opts,
				  struct shmbus_bus_entry *was)
{
	struct sbc_bus_delete req = { 0 };
	struct sbc_bus_delete_reply rep;
	struct client c;
	uint32_t oflags;
	int err;

	if (!name || (flags & ~SHMBUS_BUS_DELETE_FORCE) ||
	    !OPTS_VALID(opts, shmbus_open_opts))
		return -EINVAL;
	if (name_set(req.name, name, "bus"))
		return -EINVAL;
	oflags = OPTS_GET(opts, flags, 0);
	if (oflags & SHMBUS_OPEN_OWNER) {
		req.flags |= SBC_DELETE_OWNER;
		req.owner_uid = OPTS_GET(opts, owner_uid, 0);
	} else if (OPTS_GET(opts, owner_uid, 0)) {
		return -EINVAL;
	}
	if (flags & SHMBUS_BUS_DELETE_FORCE)
		req.flags |= SBC_DELETE_FORCE;
	/* a persistent bus lives on disk while no daemon runs: the daemon
	 * started here recovers it first */
	err = client_connect_opts(&c, opts, true);
	if (!err) {
		client_handshake_done(&c);
		err = client_call(&c, SBC_BUS_DELETE, &req, sizeof(req), &rep,
				  sizeof(rep), NULL, NULL);
	}
	client_fini(&c);
	if (!err && was) {
		memset(was, 0, sizeof(*was));
		memcpy(was->name, req.name, sizeof(was->name));
		was->owner_uid = oflags & SHMBUS_OPEN_OWNER ? req.owner_uid
							     : (uint32_t)geteuid();
		was->members = rep.members;
		was->queues = rep.queues;
		was->arena_size = rep.arena_size;
	}
	return err;
}
