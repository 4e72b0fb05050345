// SPDX-License-Identifier: MIT
/*
 * test_rmq.c - the private RabbitMQ of tests/rmq.h, on its own: it
 * starts and accepts AMQP logins; persistent messages published to a
 * durable queue with publisher confirms survive a clean restart and a
 * kill -9 of the broker on the same data directory; a stop leaves no
 * process of ours behind.
 */
#include "helpers.h"
#include "rmq.h"

#define N_MSGS	100

static struct rmq broker;
static char why[PATH_MAX + 64];	/* why there is no broker */

/* Each test: skip (fail under CI) when the broker could not start. */
static void need_broker(void)
{
	if (why[0])
		SKIP_OR_FAIL("%.200s", why);
}

#if RMQ_HAVE_CLIENT
/* Wait for the broker's basic.ack of every delivery tag up to @last. */
static void publish(amqp_connection_state_t c, const char *q, int first,
		    int n)
{
	amqp_basic_properties_t p = {
		._flags = AMQP_BASIC_DELIVERY_MODE_FLAG,
		.delivery_mode = 2,
	};
	char body[64];

	rmq_confirm_select(c);
	for (int i = 0; i < n; i++) {
		snprintf(body, sizeof(body), "message %d", first + i);
		assert_int_equal(amqp_basic_publish(c, RMQ_CH,
				amqp_empty_bytes, amqp_cstring_bytes(q), 0, 0,
				&p, amqp_cstring_bytes(body)), AMQP_STATUS_OK);
	}
	rmq_wait_confirmed(c, n);
}

/* basic.get until the queue is empty; each body must be the next one. */
static int drain(amqp_connection_state_t c, const char *q, int first)
{
	int got = 0;

	for (;;) {
		amqp_rpc_reply_t r = amqp_basic_get(c, RMQ_CH,
						    amqp_cstring_bytes(q), 1);
		amqp_message_t m;
		char want[64];

		assert_int_equal(r.reply_type, AMQP_RESPONSE_NORMAL);
		if (r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD)
			return got;
		assert_int_equal(r.reply.id, AMQP_BASIC_GET_OK_METHOD);
		r = amqp_read_message(c, RMQ_CH, &m, 0);
		assert_int_equal(r.reply_type, AMQP_RESPONSE_NORMAL);
		snprintf(want, sizeof(want), "message %d", first + got);
		assert_int_equal(m.body.len, strlen(want));
		assert_memory_equal(m.body.bytes, want, m.body.len);
		amqp_destroy_message(&m);
		got++;
	}
}

static void declare(amqp_connection_state_t c, const char *q)
{
	amqp_queue_declare(c, RMQ_CH, amqp_cstring_bytes(q), 0, 1, 0, 0,
			   amqp_empty_table);
	rmq_rpc_ok(c, "queue.declare");
}

/* Confirmed persistent messages outlive the broker: a clean restart,
 * then a kill -9. */
static void test_survives_restart(void **state)
{
	static const int sigs[] = { SIGTERM, SIGKILL };
	amqp_connection_state_t c;

	need_broker();
	for (unsigned i = 0; i < 2; i++) {
		c = rmq_connect(&broker);
		assert_non_null(c);
		declare(c, "durable");
		publish(c, "durable", 0, N_MSGS);
		rmq_close(c);

		assert_int_equal(rmq_restart(&broker, sigs[i]), 0);

		c = rmq_connect(&broker);
		assert_non_null(c);
		assert_int_equal(drain(c, "durable", 0), N_MSGS);
		rmq_close(c);
		print_message("after %s: %d of %d persistent messages\n",
			      strsignal(sigs[i]), N_MSGS, N_MSGS);
	}
}
#endif

/* A stop ends the server and epmd (both were our children: reaped). */
static void test_stop_reaps(void **state)
{
	pid_t server = broker.server, epmd = broker.epmd;

	need_broker();
	assert_true(server > 0 && epmd > 0);
	rmq_stop(&broker, false);
	assert_int_equal(kill(server, 0), -1);
	assert_int_equal(kill(epmd, 0), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#if RMQ_HAVE_CLIENT
		cmocka_unit_test(test_survives_restart),
#endif
		cmocka_unit_test(test_stop_reaps),
	};
	int rc;

	if (rmq_start(&broker, why, sizeof(why)) < 0)
		rmq_stop(&broker, true);
	rc = cmocka_run_group_tests_name("rmq", tests, NULL, NULL);
	rmq_stop(&broker, rc != 0);
	return rc;
}
