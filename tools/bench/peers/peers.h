/* SPDX-License-Identifier: MIT */
/*
 * peers.h - shmbus-bench-peers: the other IPC systems as transports of
 * shmbus-bench (bench.h includes this when compiled with
 * SHMBUS_BENCH_PEERS), the servers some of them need, and the report and
 * plots of the peers' run. What is measured, and how, is told at the top
 * of peers/main.c.
 */
#ifndef SHMBUS_BENCH_PEERS_H
#define SHMBUS_BENCH_PEERS_H

/* the directory of the run's files (sockets, server logs, configs) */
extern char peers_dir[];

/* shmbus_default.c: consumer and publish options left as they come */
int sbd_open(struct end *e, int chan);

/* zmq.c: PUSH/PULL over ipc:// in peers_dir, one pair per channel */
int zq_prepare(const struct run *r, int nchan);
int zq_child_init(void);
void zq_child_fini(void);
int zq_open(struct end *e, int chan);
void zq_close(struct end *e);
int zq_send(struct end *e, uint64_t seq);
int zq_recv(struct end *e, uint64_t seq);

/* redis.c: PUBLISH and SUBSCRIBE on a private redis-server's socket */
int rd_start(void);
void rd_stop(void);
pid_t rd_pid(void);
int rd_prepare(const struct run *r, int nchan);
int rd_open(struct end *e, int chan);
void rd_close(struct end *e);
int rd_send(struct end *e, uint64_t seq);
int rd_recv(struct end *e, uint64_t seq);

/* iox.c: iceoryx's C binding (loan, publish; take, release), with a
 * private iox-roudi */
int ix_start(void);
int ix_stop(void);
pid_t ix_pid(void);
int ix_prepare(const struct run *r, int nchan);
int ix_child_init(void);
void ix_child_fini(void);
int ix_open(struct end *e, int chan);
void ix_close(struct end *e);
int ix_send(struct end *e, uint64_t seq);
int ix_recv(struct end *e, uint64_t seq);

/* main.c: a server as our child, @argv[0] found in PATH, its stdout
 * and stderr to @log (NULL: /dev/null); it gets SIGTERM if we die. Its
 * pid, or -errno. */
pid_t peers_spawn(const char *name, const char *const argv[],
		  const char *log);
/* Wait up to @secs for @ready(); 0, or -ETIMEDOUT or -ECHILD (the
 * server exited), said on stderr with the log's place. */
int peers_wait_ready(pid_t pid, const char *name, bool (*ready)(void),
		     int secs, const char *log);

/* report.c: tables, findings; plot.c: the PNGs */
void peers_keep_samples(int si, enum tp tp, enum mode m, unsigned rep);
void peers_print_machine(void);
void peers_print_tables(void);
int peers_plot(const char *dir);

#define PEERS_TRANSPORTS						\
	[TP_DEFAULT] = {						\
		.name = "shmbus default", .has_busy = false,		\
		.prepare = sb_prepare,					\
		.child_init = sb_child_init, .child_fini = sb_child_fini, \
		.open = sbd_open, .close = sb_close,			\
		.send = sb_send, .recv = sb_recv,			\
	},								\
	[TP_ZMQ] = {							\
		.name = "zeromq", .has_busy = false,			\
		.prepare = zq_prepare,					\
		.child_init = zq_child_init,				\
		.child_fini = zq_child_fini,				\
		.open = zq_open, .close = zq_close,			\
		.send = zq_send, .recv = zq_recv,			\
	},								\
	[TP_REDIS] = {							\
		.name = "redis", .has_busy = false,			\
		.prepare = rd_prepare,					\
		.child_init = no_child_init, .child_fini = no_child_fini, \
		.open = rd_open, .close = rd_close,			\
		.send = rd_send, .recv = rd_recv,			\
	},								\
	[TP_IOX] = {							\
		.name = "iceoryx", .has_busy = true,			\
		.prepare = ix_prepare,					\
		.child_init = ix_child_init,				\
		.child_fini = ix_child_fini,				\
		.open = ix_open, .close = ix_close,			\
		.send = ix_send, .recv = ix_recv,			\
	},

#endif /* SHMBUS_BENCH_PEERS_H */
