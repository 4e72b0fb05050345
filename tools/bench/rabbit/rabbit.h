/* SPDX-License-Identifier: MIT */
/*
 * rabbit.h - a private RabbitMQ for the benchmark programs that measure
 * against it (shmbus-bench-durable, shmbus-bench-bridge): a
 * rabbitmq-server of our own (node name, AMQP, distribution and epmd
 * ports, database, logs and configuration in a temporary directory),
 * started as our child and stopped by its pid; and the AMQP client side
 * they share, over librabbitmq.
 */
#ifndef SHMBUS_BENCH_RABBIT_H
#define SHMBUS_BENCH_RABBIT_H

#include <stdbool.h>
#include <sys/types.h>

#include <amqp.h>

#define RABBIT_CH	1	/* the channel of every connection */

/* Start the server with its files in a new directory under @parent; wait
 * until it accepts an AMQP login. 0, or -1 (not installed, or it failed:
 * its files are kept and named on stderr). */
int rabbit_start(const char *parent);

/* Stop what rabbit_start() started, by pid; remove its files unless
 * @keep (a run that failed). Safe to call again, and when not started. */
void rabbit_stop(bool keep);

/* The server's pid (the Erlang VM), 0 when not running. */
pid_t rabbit_pid(void);

/* "rabbitmq-server VERSION, Erlang/OTP N" */
const char *rabbit_version(void);

/* The AMQP URL of the server, amqp://guest:guest@127.0.0.1:PORT (the
 * virtual host "/") */
const char *rabbit_url(void);

/* A connection with channel RABBIT_CH open; NULL if it failed and
 * @quiet, else die(). */
amqp_connection_state_t rabbit_connect(bool quiet);

/* Close the channel and the connection politely, and free it. */
void rabbit_close(amqp_connection_state_t c);

/* Whether the last RPC succeeded: false if not and @quiet, else die(). */
bool rabbit_rpc_ok(amqp_connection_state_t c, const char *what, bool quiet);

/* A durable queue @q (not exclusive, not auto-deleted), or die(). */
void rabbit_declare_queue(amqp_connection_state_t c, const char *q);

#endif /* SHMBUS_BENCH_RABBIT_H */
