/* SPDX-License-Identifier: MIT */
/*
 * private.h - the library internals shmbusd is built from.
 *
 * The daemon links libshmbus.so like every other program (so that one
 * USDT attachment to the library covers it too, docs/probes.md), and so
 * needs some of the library's internals. They are exported under a
 * __shmbus_ prefix, so that they cannot clash with an application's own
 * arena_map or pool_free, and in the version node
 * SHMBUS_PRIVATE_<version>_<hash of every header the daemon is compiled
 * against> (the Makefile adds it to the version script): a daemon runs
 * only against a library built from the very headers it was built with,
 * and the dynamic linker says so otherwise. They are not API.
 */
#ifndef SHMBUS_PRIVATE_H
#define SHMBUS_PRIVATE_H

#define SHMBUS_PRIVATE_API	__attribute__((visibility("default")))

#define __pool_alloc		__shmbus_pool_alloc
#define __pool_free		__shmbus_pool_free
#define arena_backed_for	__shmbus_arena_backed_for
#define arena_backed_ranges	__shmbus_arena_backed_ranges
#define arena_backed_span	__shmbus_arena_backed_span
#define arena_format		__shmbus_arena_format
#define arena_map		__shmbus_arena_map
#define arena_params_check	__shmbus_arena_params_check
#define arena_pool_max		__shmbus_arena_pool_max
#define arena_pool_start	__shmbus_arena_pool_start
#define arena_size_for		__shmbus_arena_size_for
#define arena_unmap		__shmbus_arena_unmap
#define attr_dead_letter	__shmbus_attr_dead_letter
#define chunk_checksum		__shmbus_chunk_checksum
#define chunk_unshare		__shmbus_chunk_unshare
#define crc32c			__shmbus_crc32c
#define crc32c_hw		__shmbus_crc32c_hw
#define crc32c_hw_available	__shmbus_crc32c_hw_available
#define crc32c_sw		__shmbus_crc32c_sw
#define epoch_gp_done		__shmbus_epoch_gp_done
#define epoch_gp_start		__shmbus_epoch_gp_start
#define pid_start_time		__shmbus_pid_start_time
#define pool_drain_slot		__shmbus_pool_drain_slot
#define pool_grow		__shmbus_pool_grow
#define pool_page_fit		__shmbus_pool_page_fit
#define pool_push_global	__shmbus_pool_push_global
#define pool_reclaim_owned	__shmbus_pool_reclaim_owned
#define proto_all_zero		__shmbus_proto_all_zero
#define room_wake		__shmbus_room_wake
#define room_fence_init		__shmbus_room_fence_init
#define room_fence_takers	__shmbus_room_fence_takers
#define proto_give_fds		__shmbus_proto_give_fds
#define proto_name_valid	__shmbus_proto_name_valid
#define proto_pattern_match	__shmbus_proto_pattern_match
#define proto_pattern_valid	__shmbus_proto_pattern_valid
#define proto_take_fds		__shmbus_proto_take_fds
#define shmbus_socket_path	__shmbus_socket_path
#define shmbus_default_socket_path	__shmbus_default_socket_path
#define probe_dead_letter	__shmbus_probe_dead_letter
#define probe_drop		__shmbus_probe_drop
#define probe_journal_sync	__shmbus_probe_journal_sync

#endif /* SHMBUS_PRIVATE_H */
