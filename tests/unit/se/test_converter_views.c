/*
 * The converter as the only way to an SE (issue 16 item 3): opening an SE by
 * its link address (pg_conv_link_open), views of an interface
 * (pg_conv_iface_link: what the SE OS's connect flow and sessions use),
 * ports (pg_conv_port_start: how the NFC switch reaches the SE OS's SEs) and
 * a detached name attached again. The SE is the simulated card of src/se/card
 * served over real link drivers on a UNIX socket, one host at a time, as a
 * VSE serves: the port is the only way a second host reaches it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "payguard/card.h"
#include "payguard/converter.h"
#include "payguard/error.h"
#include "payguard/log.h"
#include "payguard/stream.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct sim {
	struct pg_card_rt *rt;
	char dir[64], addr[128];
	int lfd;
	pthread_t t;
};

static void *
sim_thread(void *arg)
{
	struct sim *s = arg;

	/* until the listening socket is shut down: one host at a time */
	(void)pg_card_serve_listener(s->lfd, pg_link_find("t1"), pg_card_rt_card(s->rt), NULL, 0);
	return NULL;
}

static void
sim_start(struct sim *s)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->dir, sizeof(s->dir), "/tmp/pg-convview-XXXXXX");
	assert_non_null(mkdtemp(s->dir));
	snprintf(s->addr, sizeof(s->addr), "unix:%s/se.sock", s->dir);
	assert_int_equal(pg_card_sim_new(&s->rt, 0x1234, NULL, 0), 0);
	s->lfd = pg_stream_listen(s->addr);
	assert_true(s->lfd >= 0);
	assert_int_equal(pthread_create(&s->t, NULL, sim_thread, s), 0);
}

static void
sim_stop(struct sim *s)
{
	char p[200];

	shutdown(s->lfd, SHUT_RDWR);
	pthread_join(s->t, NULL);
	close(s->lfd);
	pg_card_rt_free(s->rt);
	snprintf(p, sizeof(p), "%s/se.sock", s->dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/port.sock", s->dir);
	unlink(p);
	rmdir(s->dir);
}

/* SELECT of the test applet on the basic channel: its SW. */
static int
select_test(struct pg_link *l)
{
	uint8_t c[5 + sizeof(pg_card_test_aid) + 1] = {0x00, 0xA4, 0x04, 0x00,
						       sizeof(pg_card_test_aid)};
	uint8_t r[300];
	size_t rl = sizeof(r);
	int rc;

	memcpy(c + 5, pg_card_test_aid, sizeof(pg_card_test_aid));
	rc = pg_link_transmit(l, c, sizeof(c), r, &rl);
	return rc < 0 ? rc : pg_rapdu_sw(r, rl);
}

/* ECHO of "view": 0x9000 with the data back, else the SW or the error. */
static int
echo(struct pg_link *l)
{
	static const uint8_t c[] = {0x80, PG_TEST_INS_ECHO, 0x00, 0x00, 0x04, 'v', 'i', 'e', 'w',
				    0x00};
	uint8_t r[300];
	size_t rl = sizeof(r);
	int rc = pg_link_transmit(l, c, sizeof(c), r, &rl);

	if (rc < 0)
		return rc;
	if (pg_rapdu_sw(r, rl) == 0x9000 && (rl != 6 || memcmp(r, "view", 4) != 0))
		return -1000;
	return pg_rapdu_sw(r, rl);
}

static void
test_link_open_errors(void **state)
{
	struct pg_link *l = (struct pg_link *)1;

	(void)state;
	assert_int_equal(pg_conv_link_open(&l, "nope", "unix:/x", NULL), PG_ENOTSUP);
	assert_null(l);
	assert_int_equal(pg_conv_link_open(&l, "vpcd", "unix:/x", NULL),
			 PG_ENOTSUP); /* card only */
	assert_int_equal(pg_conv_link_open(&l, "t1", "", NULL), PG_EINVAL);
	assert_true(pg_conv_link_open(&l, "t1", "unix:/nonexistent/pg-no.sock", NULL) < 0);
	assert_null(l);
	assert_non_null(strstr(pg_last_error(), "unreachable"));
}

static void
test_views_share_the_interface(void **state)
{
	struct pg_link *l = NULL, *v1 = NULL, *v2 = NULL;
	struct pg_conv_iface_info info;
	struct pg_conv *c = NULL;
	uint8_t atr[PG_ATR_MAX];
	size_t atrlen = sizeof(atr);
	struct sim s;

	(void)state;
	sim_start(&s);
	assert_int_equal(pg_conv_new(&c), 0);
	assert_int_equal(pg_conv_link_open(&l, "t1", s.addr, NULL), 0);
	assert_int_equal(pg_conv_attach(c, "se", l), 0);
	assert_int_equal(pg_conv_iface_link(c, "nope", &v1), PG_ENOENT);
	assert_int_equal(pg_conv_iface_link(c, "se", &v1), 0);
	assert_int_equal(pg_conv_iface_link(c, "se", &v2), 0);
	/* the view is the driver's kind of link */
	assert_string_equal(v1->ops->name, "t1");
	assert_int_equal(v1->ops->type, PG_LINK_T1);

	assert_int_equal(select_test(v1), 0x9000);
	/* power on through a view: the ATR of attach, and no reset of the SE */
	assert_int_equal(pg_link_power_on(v2, atr, &atrlen), 0);
	assert_int_equal(pg_conv_iface(c, 0, &info), 0);
	assert_memory_equal(atr, info.atr, info.atr_len);
	assert_int_equal(atrlen, info.atr_len);
	assert_int_equal(echo(v1), 0x9000); /* still selected */
	assert_int_equal(echo(v2), 0x9000); /* one SE, one basic channel */
	assert_int_equal(pg_conv_iface(c, 0, &info), 0);
	assert_int_equal(info.apdus, 3);

	/* detached: its views fail; the name is free for a new interface */
	assert_int_equal(pg_conv_detach(c, "se"), 0);
	assert_int_equal(echo(v1), PG_ENOCARD);
	assert_int_equal(pg_link_power_on(v2, atr, &atrlen), PG_ENOCARD);
	assert_int_equal(pg_conv_link_open(&l, "t1", s.addr, NULL), 0);
	assert_int_equal(pg_conv_attach(c, "se", l), 0);
	assert_int_equal(echo(v1), PG_ENOCARD); /* a view belongs to the old interface */
	pg_link_close(v2);
	assert_int_equal(pg_conv_iface_link(c, "se", &v2), 0);
	assert_int_equal(select_test(v2), 0x9000); /* a reset card: select again */
	assert_int_equal(echo(v2), 0x9000);
	/* a live name is still refused */
	assert_int_equal(pg_conv_link_open(&l, "t1", s.addr, NULL), 0);
	assert_int_equal(pg_conv_attach(c, "se", l), PG_EEXIST);

	pg_link_close(v1);
	pg_link_close(v2);
	pg_conv_free(c);
	sim_stop(&s);
}

static void
test_port(void **state)
{
	struct pg_link *l = NULL, *h = NULL, *h2 = NULL;
	struct pg_conv_port *p = NULL;
	struct pg_conv *c = NULL;
	char paddr[200], ppath[200];
	struct sim s;

	(void)state;
	sim_start(&s);
	snprintf(paddr, sizeof(paddr), "unix:%s/port.sock", s.dir);
	snprintf(ppath, sizeof(ppath), "%s/port.sock", s.dir);
	assert_int_equal(pg_conv_new(&c), 0);
	assert_int_equal(pg_conv_link_open(&l, "t1", s.addr, NULL), 0);
	assert_int_equal(pg_conv_attach(c, "se", l), 0);
	assert_int_equal(pg_conv_port_start(c, "se", "vpcd-none", paddr, &p), PG_ENOTSUP);
	assert_int_equal(pg_conv_port_start(c, "nope", "spi", paddr, &p), PG_ENOENT);
	/* the SE on T=1 seen over SPI through the port: a second host reaches it */
	assert_int_equal(pg_conv_port_start(c, "se", "spi", paddr, &p), 0);
	assert_int_equal(access(ppath, F_OK), 0);
	assert_int_equal(pg_conv_link_open(&h, "spi", paddr, NULL), 0);
	{
		uint8_t atr[PG_ATR_MAX];
		size_t n = sizeof(atr);

		assert_int_equal(pg_link_power_on(h, atr, &n), 0);
	}
	assert_int_equal(select_test(h), 0x9000);
	assert_int_equal(echo(h), 0x9000);
	/* the SE goes: the port's host sees its link fail */
	assert_int_equal(pg_conv_detach(c, "se"), 0);
	assert_true(echo(h) < 0);
	pg_link_close(h);
	pg_conv_port_stop(p);
	assert_int_not_equal(access(ppath, F_OK), 0); /* the socket file is gone */

	/* stopping a port ends a connected host */
	assert_int_equal(pg_conv_link_open(&l, "t1", s.addr, NULL), 0);
	assert_int_equal(pg_conv_attach(c, "se", l), 0);
	assert_int_equal(pg_conv_port_start(c, "se", "t1", paddr, &p), 0);
	assert_int_equal(
	    pg_conv_link_open(&h2, "t1", paddr, &(struct pg_link_params){.timeout_ms = 300}), 0);
	{
		uint8_t atr[PG_ATR_MAX];
		size_t n = sizeof(atr);

		assert_int_equal(pg_link_power_on(h2, atr, &n), 0);
	}
	assert_int_equal(select_test(h2), 0x9000);
	pg_conv_port_stop(p);
	assert_true(echo(h2) < 0);
	pg_link_close(h2);
	pg_conv_free(c);
	sim_stop(&s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_link_open_errors),
	    cmocka_unit_test(test_views_share_the_interface),
	    cmocka_unit_test(test_port),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
