/*
 * vpcd card driver: the message decoder ([length:2 BE][payload], vsmartcard's
 * "Creating a virtual smart card" protocol table: 00 power off, 01 power on,
 * 02 reset, 04 get ATR, other lengths APDUs), the card role over a memory
 * pair, and pg_vpcd_serve() against a stand-in for vpcd on a 127.0.0.1 port
 * (the real vpcd inside pcscd is exercised by tests/integration/se).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "payguard/card.h"
#include "payguard/error.h"
#include "payguard/log.h"
#include "payguard/se_pcsc.h"
#include "se/link/vpcd_msg.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void
test_decoder(void **state)
{
	static struct pg_vpcd_rx rx;
	const uint8_t wire[] = {0x00, 0x01, 0x04, 0x00, 0x05, 0x00, 0xA4,
				0x04, 0x00, 0x00, 0x00, 0x01, 0x00};
	size_t lens[3] = {1, 5, 1}, got = 0, mlen;
	int done;

	(void)state;
	/* Byte by byte. */
	pgi_vpcd_rx_init(&rx);
	for (size_t i = 0; i < sizeof(wire); i++) {
		assert_int_equal(pgi_vpcd_rx_feed(&rx, wire + i, 1, &done, &mlen), 1);
		if (done) {
			assert_int_equal(mlen, lens[got]);
			got++;
		}
	}
	assert_int_equal(got, 3);
	/* All at once: the feed stops after each whole message. */
	pgi_vpcd_rx_init(&rx);
	{
		size_t off = 0;

		got = 0;
		while (off < sizeof(wire)) {
			int used =
			    pgi_vpcd_rx_feed(&rx, wire + off, sizeof(wire) - off, &done, &mlen);

			assert_true(used > 0);
			off += (size_t)used;
			if (done) {
				assert_int_equal(mlen, lens[got]);
				if (got == 1)
					assert_memory_equal(rx.msg, "\x00\xA4\x04\x00\x00", 5);
				got++;
			}
		}
		assert_int_equal(got, 3);
	}
	/* Zero length is not a message. */
	pgi_vpcd_rx_init(&rx);
	assert_int_equal(pgi_vpcd_rx_feed(&rx, (const uint8_t *)"\x00\x00", 2, &done, &mlen),
			 PG_EPROTO);
}

/* ---- the card role over a memory pair ---- */

static struct pg_card_rt *rt;

static int
ask(struct pg_stream *h, const uint8_t *msg, size_t n, uint8_t *r, size_t cap)
{
	assert_int_equal(pg_stream_write(h, msg, n), 0);
	return pg_stream_read(h, r, cap, 0);
}

static void
test_card_role(void **state)
{
	const struct pg_link_ops *ops = pg_link_find("vpcd");
	struct pg_link_card *lc = NULL;
	struct pg_stream *h = NULL;
	uint8_t r[300], atr[PG_ATR_MAX];
	size_t atrlen = sizeof(atr);
	int n;

	(void)state;
	assert_non_null(ops);
	assert_null(ops->host_open);
	assert_int_equal(pg_card_sim_new(&rt, 7, NULL, 0), 0);
	pg_card_rt_card(rt)->atr(rt, atr, &atrlen);
	assert_int_equal(ops->card_open(&lc, pg_card_rt_card(rt), NULL), 0);
	assert_int_equal(pg_stream_memory_pair(&h, pg_link_card_packet, lc, NULL), 0);
	/* Power on and reset have no answer; get ATR answers the ATR. */
	assert_int_equal(ask(h, (const uint8_t *)"\x01", 1, r, sizeof(r)), PG_ETIMEDOUT);
	assert_int_equal(ask(h, (const uint8_t *)"\x02", 1, r, sizeof(r)), PG_ETIMEDOUT);
	n = ask(h, (const uint8_t *)"\x04", 1, r, sizeof(r));
	assert_int_equal(n, (int)atrlen);
	assert_memory_equal(r, atr, atrlen);
	/* An APDU gets its R-APDU. */
	n = ask(h, (const uint8_t *)"\x80\xCA\x9F\x7F\x00", 5, r, sizeof(r));
	assert_int_equal(n, 47);
	assert_int_equal(pg_rapdu_sw(r, 47), 0x9000);
	/* Unknown control bytes are ignored (no answer), the card stays usable. */
	assert_int_equal(ask(h, (const uint8_t *)"\x07", 1, r, sizeof(r)), PG_ETIMEDOUT);
	/* Power off drops channels: a channel opened before is gone after. */
	n = ask(h, (const uint8_t *)"\x00\x70\x00\x00\x01", 5, r, sizeof(r));
	assert_int_equal(n, 3);
	assert_int_equal(pg_card_rt_open_channels(rt), 2);
	assert_int_equal(ask(h, (const uint8_t *)"\x00", 1, r, sizeof(r)), PG_ETIMEDOUT);
	assert_int_equal(pg_card_rt_open_channels(rt), 1);
	/* payguard's own line events map to the same controls. */
	assert_int_equal(pg_stream_event(h, PG_PKT_RESET), 0);
	assert_int_equal(pg_stream_read(h, r, sizeof(r), 0), (int)atrlen);
	pg_stream_free(h);
	pg_link_card_close(lc);
	pg_card_rt_free(rt);
}

/* ---- pg_vpcd_serve() against a stand-in vpcd ---- */

struct serve_arg {
	char addr[64];
	int stop;
	int rc;
};

static void *
serve_main(void *p)
{
	struct serve_arg *a = p;

	a->rc = pg_vpcd_serve(a->addr, pg_card_rt_card(rt), 2000, &a->stop);
	return NULL;
}

static void
send_msg(int fd, const uint8_t *p, size_t n)
{
	uint8_t hdr[2] = {(uint8_t)(n >> 8), (uint8_t)n};

	assert_int_equal(write(fd, hdr, 2), 2);
	/* Split the payload in two writes: the card must reassemble. */
	if (n > 1) {
		assert_int_equal(write(fd, p, n / 2), (ssize_t)(n / 2));
		usleep(2000);
	}
	assert_int_equal(write(fd, p + n / 2, n - n / 2), (ssize_t)(n - n / 2));
}

static size_t
recv_msg(int fd, uint8_t *p, size_t cap)
{
	uint8_t hdr[2];
	size_t n, got = 0;

	assert_int_equal(recv(fd, hdr, 2, MSG_WAITALL), 2);
	n = (size_t)(hdr[0] << 8 | hdr[1]);
	assert_true(n <= cap);
	while (got < n) {
		ssize_t r = recv(fd, p + got, n - got, 0);

		assert_true(r > 0);
		got += (size_t)r;
	}
	return n;
}

static void
test_serve_tcp(void **state)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);
	struct serve_arg a = {0};
	pthread_t t;
	static uint8_t big[1007], r[1100];
	int lfd, fd;
	size_t n;

	(void)state;
	assert_int_equal(pg_card_sim_new(&rt, 9, NULL, 0), 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(lfd, 1), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
	snprintf(a.addr, sizeof(a.addr), "tcp:127.0.0.1:%u", ntohs(sa.sin_port));
	assert_int_equal(pthread_create(&t, NULL, serve_main, &a), 0);
	fd = accept(lfd, NULL, NULL);
	assert_true(fd >= 0);
	/* The sequence vpcd sends on card insertion: power on, ATR, then APDUs. */
	send_msg(fd, (const uint8_t *)"\x01", 1);
	send_msg(fd, (const uint8_t *)"\x04", 1);
	n = recv_msg(fd, r, sizeof(r));
	assert_int_equal(r[0], 0x3B);
	assert_true(n > 2);
	send_msg(fd, (const uint8_t *)"\x00\xA4\x04\x00\x0A\xF0payguard\x01\x00", 16);
	n = recv_msg(fd, r, sizeof(r));
	assert_int_equal(pg_rapdu_sw(r, n), 0x9000);
	/* An extended case 4 ECHO of 1000 bytes, sent in pieces. */
	memcpy(big, "\x80\x10\x00\x00\x00\x03\xE8", 7);
	for (int i = 0; i < 1000; i++)
		big[7 + i] = (uint8_t)(i * 7);
	{
		uint8_t full[1009];

		memcpy(full, big, 1007);
		full[1007] = 0;
		full[1008] = 0;
		send_msg(fd, full, sizeof(full));
	}
	n = recv_msg(fd, r, sizeof(r));
	assert_int_equal(n, 1002);
	assert_memory_equal(r, big + 7, 1000);
	/* vpcd closes: the card side returns 0. */
	close(fd);
	pthread_join(t, NULL);
	assert_int_equal(a.rc, 0);
	close(lfd);
	/* Nobody listening: a clear connection error after the retry window. */
	assert_true(pg_vpcd_serve("tcp:127.0.0.1:1", pg_card_rt_card(rt), 100, NULL) < 0);
	assert_non_null(strstr(pg_last_error(), "cannot connect to vpcd"));
	assert_int_equal(pg_vpcd_serve("nonsense", pg_card_rt_card(rt), 100, NULL), PG_EINVAL);
	pg_card_rt_free(rt);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_decoder),
	    cmocka_unit_test(test_card_role),
	    cmocka_unit_test(test_serve_tcp),
	};
	pg_log_set_level(PG_LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
