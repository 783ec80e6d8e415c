/*
 * SWP link tests: ETSI TS 102 613 SHDLC (CRC, frame codec, RSET/UA window
 * negotiation, sliding window, acknowledgements, retransmission on timeout
 * and REJ, duplicates) and ETSI TS 102 622 HCP fragmentation and the APDU
 * gate, host <-> card over a memory pair and over a socketpair.
 * Worked values: the CRC-16/X.25 check value of ISO/IEC 13239 ("123456789"
 * -> 906E); control-field codings of 102 613 clause 10 (RSET F9, UA E6,
 * I-frame 10sssrrr, RR/REJ 110xxrrr); HCP headers of 102 622 clause 5.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "se/link/hci.h"
#include "se/link/shdlc.h"
#include "swp_testcard.h"

#include "payguard/buf.h"
#include "payguard/hex.h"
#include "payguard/log.h"

#include <stdio.h>

extern const struct pg_link_ops pgi_link_swp_ops;

static uint8_t capdu[70000], rapdu[70000];

static void
test_crc(void **state)
{
	uint8_t f[SHDLC_MAX_FRAME];
	struct shdlc_frame d;
	uint8_t w = 4;
	size_t n;

	(void)state;
	/* ISO/IEC 13239 CRC-16 (X.25) check value. */
	assert_int_equal(pgi_shdlc_crc((const uint8_t *)"123456789", 9), 0x906E);
	/* RSET with window 4: LEN=04, F9, 04, CRC low byte first. */
	n = pgi_shdlc_encode(f, 0xF9, &w, 1);
	assert_int_equal(n, 5);
	assert_int_equal(f[0], 4);
	assert_int_equal(f[1], 0xF9);
	assert_int_equal(f[3] | f[4] << 8, pgi_shdlc_crc(f, 3));
	assert_int_equal(pgi_shdlc_decode(&d, f, n), 0);
	assert_int_equal(d.kind, SHDLC_U);
	assert_int_equal(d.type, SHDLC_U_RSET);
	assert_int_equal(d.len, 1);
	/* Every single-bit error is caught. */
	for (size_t bit = 0; bit < n * 8; bit++) {
		f[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		assert_true(pgi_shdlc_decode(&d, f, n) < 0);
		f[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
}

static void
test_control_codes(void **state)
{
	uint8_t f[SHDLC_MAX_FRAME];
	struct shdlc_frame d;
	size_t n;

	(void)state;
	n = pgi_shdlc_encode(f, 0x80 | 1 << 3 | 2, (const uint8_t *)"\x81\x50", 2); /* I(1,2) */
	assert_int_equal(pgi_shdlc_decode(&d, f, n), 0);
	assert_int_equal(d.kind, SHDLC_I);
	assert_int_equal(d.ns, 1);
	assert_int_equal(d.nr, 2);
	assert_int_equal(d.len, 2);
	n = pgi_shdlc_encode(f, 0xC3, NULL, 0); /* RR(3) */
	assert_int_equal(pgi_shdlc_decode(&d, f, n), 0);
	assert_int_equal(d.kind, SHDLC_S);
	assert_int_equal(d.type, SHDLC_S_RR);
	assert_int_equal(d.nr, 3);
	n = pgi_shdlc_encode(f, 0xCB, NULL, 0); /* REJ(3) */
	assert_int_equal(pgi_shdlc_decode(&d, f, n), 0);
	assert_int_equal(d.type, SHDLC_S_REJ);
	n = pgi_shdlc_encode(f, 0xD5, NULL, 0); /* RNR(5) */
	assert_int_equal(pgi_shdlc_decode(&d, f, n), 0);
	assert_int_equal(d.type, SHDLC_S_RNR);
	n = pgi_shdlc_encode(f, 0xE6, NULL, 0); /* UA */
	assert_int_equal(pgi_shdlc_decode(&d, f, n), 0);
	assert_int_equal(d.type, SHDLC_U_UA);
	/* Malformed: S-frame with info, RSET window 5, unknown U, LEN lies, too long. */
	n = pgi_shdlc_encode(f, 0xC0, (const uint8_t *)"x", 1);
	assert_int_equal(pgi_shdlc_decode(&d, f, n), PG_EFORMAT);
	n = pgi_shdlc_encode(f, 0xF9, (const uint8_t *)"\x05", 1);
	assert_int_equal(pgi_shdlc_decode(&d, f, n), PG_EFORMAT);
	n = pgi_shdlc_encode(f, 0xE1, NULL, 0);
	assert_int_equal(pgi_shdlc_decode(&d, f, n), PG_EFORMAT);
	n = pgi_shdlc_encode(f, 0xC0, NULL, 0);
	assert_int_equal(pgi_shdlc_decode(&d, f, n - 1), PG_EFORMAT);
	n = pgi_shdlc_encode(f, 0x00, NULL, 0);
	assert_int_equal(pgi_shdlc_decode(&d, f, n), PG_EFORMAT);
}

static void
test_hcp_fragments(void **state)
{
	uint8_t msg[100], pkt[SHDLC_MAX_INFO], buf[200];
	struct hcp_tx t = {.mtu = SHDLC_MAX_INFO};
	struct hcp_rx r = {.buf = buf, .max = sizeof(buf)};
	struct hcp_msg m;
	int n, count = 0, rc = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)i;
	assert_int_equal(pgi_hcp_tx_start(&t, 0x02, HCP_HDR(HCP_TYPE_EVT, EVT_C_APDU), msg, 100),
			 0);
	assert_int_equal(pgi_hcp_tx_start(&t, 0x02, 0, msg, 1), PG_EBUSY);
	while ((n = pgi_hcp_tx_next(&t, pkt)) > 0) {
		count++;
		/* 102 622 5.1: CB=0 on every fragment but the last; message header once. */
		if (count == 1) {
			assert_int_equal(pkt[0], 0x02);
			assert_int_equal(pkt[1], 0x50);
			assert_int_equal(n, 29);
		}
		assert_int_equal(!!(pkt[0] & HCP_CB), t.active == 0);
		rc = pgi_hcp_rx_feed(&r, pkt, (size_t)n, &m);
		assert_true(rc >= 0);
	}
	/* 1 + 27 in the first packet, 28 in the next ones: 27 + 28 + 28 + 17 = 100. */
	assert_int_equal(count, 4);
	assert_int_equal(rc, 1);
	assert_int_equal(m.pipe, 2);
	assert_int_equal(m.type, HCP_TYPE_EVT);
	assert_int_equal(m.instr, EVT_C_APDU);
	assert_int_equal(m.len, 100);
	assert_memory_equal(m.data, msg, 100);
	/* Interleaved pipes, a first fragment without header, and overflow are refused. */
	assert_int_equal(pgi_hcp_rx_feed(&r, (const uint8_t *)"\x02\x50\x01", 3, &m), 0);
	assert_int_equal(pgi_hcp_rx_feed(&r, (const uint8_t *)"\x83\x01", 2, &m), PG_EFORMAT);
	assert_int_equal(pgi_hcp_rx_feed(&r, (const uint8_t *)"\x82", 1, &m), PG_EFORMAT);
	r.max = 10;
	assert_int_equal(pgi_hcp_rx_feed(&r, msg, 29, &m), PG_ETOOBIG);
	/* An empty message (header only) in one packet. */
	r.max = sizeof(buf);
	assert_int_equal(pgi_hcp_rx_feed(&r, (const uint8_t *)"\x81\x03", 2, &m), 1);
	assert_int_equal(m.type, HCP_TYPE_CMD);
	assert_int_equal(m.instr, ANY_OPEN_PIPE);
	assert_int_equal(m.len, 0);
}

/* Raw frames to a card role: U/S/I-frames built here, answers decoded. */
static void
raw_send(struct pg_stream *s, uint8_t ctrl, const uint8_t *info, size_t n)
{
	uint8_t f[SHDLC_MAX_FRAME];

	assert_int_equal(pg_stream_write(s, f, pgi_shdlc_encode(f, ctrl, info, n)), 0);
}

static int
raw_recv(struct pg_stream *s, struct shdlc_frame *d, uint8_t *buf)
{
	if (pg_stream_read(s, buf, 1, 0) != 1)
		return -1;
	assert_int_equal(pg_stream_read_full(s, buf + 1, buf[0], 0), 0);
	return pgi_shdlc_decode(d, buf, (size_t)buf[0] + 1);
}

/* One HCP message in one I-frame; returns the card's answer message. */
static void
raw_msg(struct pg_stream *s, int *ns, int *nr, uint8_t pipe, uint8_t hdr, const uint8_t *d,
	size_t n, uint8_t *type, uint8_t *instr, uint8_t *data, size_t *dlen)
{
	uint8_t pkt[SHDLC_MAX_INFO], buf[SHDLC_MAX_FRAME];
	struct shdlc_frame f;

	pkt[0] = (uint8_t)(HCP_CB | pipe);
	pkt[1] = hdr;
	if (n)
		memcpy(pkt + 2, d, n);
	raw_send(s, (uint8_t)(0x80 | *ns << 3 | *nr), pkt, n + 2);
	*ns = (*ns + 1) & 7;
	assert_int_equal(raw_recv(s, &f, buf), 0);
	assert_int_equal(f.kind, SHDLC_I);
	assert_int_equal(f.nr, *ns); /* our frame acknowledged */
	assert_int_equal(f.ns, *nr);
	*nr = (*nr + 1) & 7;
	assert_int_equal(f.info[0], HCP_CB | pipe);
	*type = f.info[1] >> 6;
	*instr = f.info[1] & 0x3F;
	*dlen = f.len - 2;
	memcpy(data, f.info + 2, *dlen);
}

static void
test_card_raw(void **state)
{
	struct sd_tcard t = {0};
	struct pg_card card = tc_card(&t);
	struct pg_link_card *c = NULL;
	struct pg_stream *s = NULL;
	struct shdlc_frame f;
	uint8_t buf[SHDLC_MAX_FRAME], type, instr, data[40];
	size_t dlen;
	int ns = 0, nr = 0;

	(void)state;
	assert_int_equal(pgi_link_swp_ops.card_open(&c, &card, NULL), 0);
	assert_int_equal(
	    pg_stream_memory_pair(&s, pg_link_card_packet, c, (void (*)(void *))pg_link_card_close),
	    0);
	/* Frames before RSET are ignored. */
	raw_send(s, 0x80, (const uint8_t *)"\x81\x03", 2);
	assert_int_equal(raw_recv(s, &f, buf), -1);
	/* RSET asking for SREJ: the card proposes its own parameters (window 4, no SREJ). */
	raw_send(s, 0xF9, (const uint8_t *)"\x04\x01", 2);
	assert_int_equal(raw_recv(s, &f, buf), 0);
	assert_int_equal(f.kind, SHDLC_U);
	assert_int_equal(f.type, SHDLC_U_RSET);
	assert_int_equal(f.len, 1);
	assert_int_equal(f.info[0], 4);
	/* RSET with no payload = window 4 (102 613 default): UA. */
	raw_send(s, 0xF9, NULL, 0);
	assert_int_equal(raw_recv(s, &f, buf), 0);
	assert_int_equal(f.type, SHDLC_U_UA);
	/* Admin commands before the admin pipe is open: ANY_E_PIPE_NOT_OPENED. */
	raw_msg(s, &ns, &nr, HCI_PIPE_ADMIN, HCP_HDR(HCP_TYPE_CMD, ADM_NOTIFY_PIPE_CREATED),
		(const uint8_t *)"\x01\x31\x02\x30\x05", 5, &type, &instr, data, &dlen);
	assert_int_equal(type, HCP_TYPE_RSP);
	assert_int_equal(instr, ANY_E_PIPE_NOT_OPENED);
	raw_msg(s, &ns, &nr, HCI_PIPE_ADMIN, HCP_HDR(HCP_TYPE_CMD, ANY_OPEN_PIPE), NULL, 0, &type,
		&instr, data, &dlen);
	assert_int_equal(instr, ANY_OK);
	/* A pipe to a gate the card does not have: ANY_E_NOK; to the APDU gate: ANY_OK. */
	raw_msg(s, &ns, &nr, HCI_PIPE_ADMIN, HCP_HDR(HCP_TYPE_CMD, ADM_NOTIFY_PIPE_CREATED),
		(const uint8_t *)"\x01\x31\x02\x13\x05", 5, &type, &instr, data, &dlen);
	assert_int_equal(instr, ANY_E_NOK);
	raw_msg(s, &ns, &nr, HCI_PIPE_ADMIN, HCP_HDR(HCP_TYPE_CMD, ADM_NOTIFY_PIPE_CREATED),
		(const uint8_t *)"\x01\x31\x02\x30\x05", 5, &type, &instr, data, &dlen);
	assert_int_equal(instr, ANY_OK);
	raw_msg(s, &ns, &nr, HCI_PIPE_ADMIN, HCP_HDR(HCP_TYPE_CMD, ADM_CREATE_PIPE),
		(const uint8_t *)"\x31\x02\x30", 3, &type, &instr, data, &dlen);
	assert_int_equal(instr, ANY_E_CMD_NOT_SUPPORTED);
	/* APDU pipe 05: closed until ANY_OPEN_PIPE; registry read-only. */
	raw_msg(s, &ns, &nr, 5, HCP_HDR(HCP_TYPE_CMD, ANY_GET_PARAMETER), (const uint8_t *)"\x01",
		1, &type, &instr, data, &dlen);
	assert_int_equal(instr, ANY_E_PIPE_NOT_OPENED);
	raw_msg(s, &ns, &nr, 5, HCP_HDR(HCP_TYPE_CMD, ANY_OPEN_PIPE), NULL, 0, &type, &instr, data,
		&dlen);
	assert_int_equal(instr, ANY_OK);
	raw_msg(s, &ns, &nr, 5, HCP_HDR(HCP_TYPE_CMD, ANY_GET_PARAMETER), (const uint8_t *)"\x02",
		1, &type, &instr, data, &dlen);
	assert_int_equal(instr, ANY_OK);
	assert_int_equal(dlen, 2);
	assert_int_equal(pg_be16(data), 1000);
	raw_msg(s, &ns, &nr, 5, HCP_HDR(HCP_TYPE_CMD, ANY_GET_PARAMETER), (const uint8_t *)"\x09",
		1, &type, &instr, data, &dlen);
	assert_int_equal(instr, ANY_E_REG_PAR_UNKNOWN);
	raw_msg(s, &ns, &nr, 5, HCP_HDR(HCP_TYPE_CMD, ANY_SET_PARAMETER),
		(const uint8_t *)"\x01\x00\x10", 3, &type, &instr, data, &dlen);
	assert_int_equal(instr, ANY_E_REG_ACCESS_DENIED);
	/* EVT_C-APDU: SELECT-like case 4 echo -> EVT_R-APDU. */
	raw_msg(s, &ns, &nr, 5, HCP_HDR(HCP_TYPE_EVT, EVT_C_APDU),
		(const uint8_t *)"\x00\x10\x00\x00\x02\xAB\xCD\x00", 8, &type, &instr, data, &dlen);
	assert_int_equal(type, HCP_TYPE_EVT);
	assert_int_equal(instr, EVT_R_APDU);
	assert_int_equal(dlen, 4);
	assert_memory_equal(data, "\xAB\xCD\x90\x00", 4);
	/* EVT_ABORT -> EVT_ATR with the ATR. */
	raw_msg(s, &ns, &nr, 5, HCP_HDR(HCP_TYPE_EVT, EVT_ABORT), NULL, 0, &type, &instr, data,
		&dlen);
	assert_int_equal(instr, EVT_ATR);
	assert_int_equal(dlen, sizeof(tc_atr));
	/* A duplicate I-frame (the host timed out): the card resends, does not run it twice. */
	{
		uint64_t before = t.executed;
		uint8_t pkt[12] = {HCP_CB | 5, HCP_HDR(HCP_TYPE_EVT, EVT_C_APDU), 0, 0x10, 0, 0, 0};

		raw_msg(s, &ns, &nr, 5, pkt[1], pkt + 2, 4, &type, &instr, data, &dlen);
		assert_int_equal(t.executed, before + 1);
		raw_send(s, (uint8_t)(0x80 | ((ns - 1) & 7) << 3 | ((nr - 1) & 7)), pkt, 6);
		assert_int_equal(raw_recv(s, &f, buf), 0);
		assert_int_equal(f.kind, SHDLC_I);
		assert_int_equal(f.ns, (nr - 1) & 7);
		assert_int_equal(t.executed, before + 1);
	}
	pg_stream_free(s);
}

/* Runs cases 1-4 short and extended, up to the longest APDUs SWP carries. */
static void
run_cases(struct pg_link *l, struct sd_tcard *t)
{
	static const struct {
		enum pg_apdu_case cs;
		size_t nc, ne;
	} v[] = {
	    {PG_APDU_CASE1, 0, 0},	  {PG_APDU_CASE2S, 0, 256},
	    {PG_APDU_CASE2S, 0, 1},	  {PG_APDU_CASE3S, 255, 0},
	    {PG_APDU_CASE4S, 16, 16},	  {PG_APDU_CASE4S, 255, 256},
	    {PG_APDU_CASE2E, 0, 65536},	  {PG_APDU_CASE3E, 65528, 0},
	    {PG_APDU_CASE4E, 1000, 1000}, {PG_APDU_CASE4E, 65526, 65536},
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		size_t clen = tc_build(capdu, v[i].cs, v[i].nc, v[i].ne), rlen = sizeof(rapdu);
		size_t want = v[i].cs == PG_APDU_CASE2S || v[i].cs == PG_APDU_CASE2E ? v[i].ne
			      : v[i].cs == PG_APDU_CASE4S || v[i].cs == PG_APDU_CASE4E
				  ? (v[i].nc < v[i].ne ? v[i].nc : v[i].ne)
				  : 0;
		uint64_t before = t->executed;

		assert_true(clen >= 4 && clen <= pgi_link_swp_ops.max_capdu);
		assert_int_equal(pg_link_transmit(l, capdu, clen, rapdu, &rlen), 0);
		assert_int_equal(rlen, want + 2);
		assert_int_equal(pg_rapdu_sw(rapdu, rlen), 0x9000);
		assert_int_equal(t->executed, before + 1);
		if (v[i].cs == PG_APDU_CASE4S || v[i].cs == PG_APDU_CASE4E)
			assert_memory_equal(rapdu, capdu + (v[i].cs == PG_APDU_CASE4E ? 7 : 5),
					    want);
		if (v[i].cs == PG_APDU_CASE2S || v[i].cs == PG_APDU_CASE2E)
			assert_int_equal(rapdu[want - 1], (uint8_t)((want - 1) * 7 + 1));
	}
	/* The longest C-APDU is exactly MAX_C-APDU_SIZE (65535): one byte more is refused. */
	{
		size_t clen = tc_build(capdu, PG_APDU_CASE3E, 65529, 0), rlen = sizeof(rapdu);

		assert_int_equal(clen, 65536);
		assert_true(pg_link_transmit(l, capdu, clen, rapdu, &rlen) < 0);
	}
}

static void
test_memory_cases(void **state)
{
	struct sd_tcard t = {0};
	struct pg_card card = tc_card(&t);
	struct pg_link *l = NULL;
	uint8_t atr[PG_ATR_MAX];
	size_t atrlen = sizeof(atr);

	(void)state;
	assert_int_equal(pg_link_open_memory(&l, &pgi_link_swp_ops, &card, NULL), 0);
	/* No APDU before the link is up. */
	{
		size_t rlen = sizeof(rapdu);

		assert_int_equal(pg_link_transmit(l, (const uint8_t *)"\0\0\0\0", 4, rapdu, &rlen),
				 PG_ESTATE);
	}
	assert_int_equal(pg_link_power_on(l, atr, &atrlen), 0);
	assert_int_equal(atrlen, sizeof(tc_atr));
	assert_memory_equal(atr, tc_atr, atrlen);
	assert_true(t.resets >= 1);
	run_cases(l, &t);
	/* Power on again mid-session: works, and APDUs go on. */
	atrlen = sizeof(atr);
	assert_int_equal(pg_link_power_on(l, atr, &atrlen), 0);
	run_cases(l, &t);
	pg_link_close(l);
}

static void
test_windows(void **state)
{
	(void)state;
	/* Host window w against card window cw: the card accepts a window up to its own and
	 * answers a larger one with its own RSET, which the host adopts (102 613 10.8). */
	for (int w = 1; w <= 4; w++) {
		for (int cw = 1; cw <= 4; cw++) {
			struct sd_tcard t = {0};
			struct pg_card card = tc_card(&t);
			struct pg_link_params hp = {.window = w}, cp = {.window = cw};
			struct pg_link_card *c = NULL;
			struct pg_stream *s = NULL;
			struct pg_link *l = NULL;
			uint8_t atr[PG_ATR_MAX];
			size_t atrlen = sizeof(atr), clen, rlen = sizeof(rapdu);

			assert_int_equal(pgi_link_swp_ops.card_open(&c, &card, &cp), 0);
			assert_int_equal(
			    pg_stream_memory_pair(&s, pg_link_card_packet, c,
						  (void (*)(void *))pg_link_card_close),
			    0);
			assert_int_equal(pgi_link_swp_ops.host_open(&l, s, NULL, &hp), 0);
			assert_int_equal(pg_link_power_on(l, atr, &atrlen), 0);
			{
				clen = tc_build(capdu, PG_APDU_CASE4S, 255, 256);
				assert_int_equal(pg_link_transmit(l, capdu, clen, rapdu, &rlen), 0);
				assert_int_equal(rlen, 257);
			}
			pg_link_close(l);
		}
	}
}

/* Counts frames of one kind in a tap: c = control byte mask/value. */
static size_t
tap_count(const struct sd_tap *t, uint8_t mask, uint8_t val)
{
	size_t n = 0;

	for (size_t i = 0; i < t->count && i < SD_TAP_MAX; i++)
		if ((t->head[i][1] & mask) == val)
			n++;
	return n;
}

static void
test_window_acks(void **state)
{
	struct sd_tcard t = {0};
	struct pg_card card = tc_card(&t);
	struct pg_link *l = NULL;
	struct sd_tap *ht, *ct;
	uint8_t atr[PG_ATR_MAX];
	size_t atrlen = sizeof(atr), clen, rlen = sizeof(rapdu), base_h, base_c;

	(void)state;
	assert_int_equal(tc_open_tapped(&l, &pgi_link_swp_ops, &card, NULL, &ht, &ct, NULL, NULL),
			 0);
	assert_int_equal(pg_link_power_on(l, atr, &atrlen), 0);
	/* Link set-up: the first host frame is RSET(window 4), the card's first is UA. */
	assert_int_equal(ht->head[0][1], 0xF9);
	assert_int_equal(ht->head[0][2], 4);
	assert_int_equal(ct->head[0][1], 0xE6);
	/* 16-byte command, 16-byte answer: one I-frame each way, ack piggy-backed. */
	base_h = ht->count;
	base_c = ct->count;
	clen = tc_build(capdu, PG_APDU_CASE4S, 16, 16);
	assert_int_equal(pg_link_transmit(l, capdu, clen, rapdu, &rlen), 0);
	assert_int_equal(ht->count - base_h, 1);
	assert_int_equal(ct->count - base_c, 1);
	/* 1000-byte command = 2 + 1006 HCP bytes = 36 fragments: with window 4 the card sends
	 * RR after every 4th frame; the host never has more than 4 frames outstanding. */
	base_h = ht->count;
	base_c = ct->count;
	clen = tc_build(capdu, PG_APDU_CASE3E, 1000, 0);
	rlen = sizeof(rapdu);
	assert_int_equal(pg_link_transmit(l, capdu, clen, rapdu, &rlen), 0);
	assert_int_equal(ht->count - base_h, 36);
	/* Card: RR after frames 4, 8, ..., 32; the 36th completes the message and the
	 * response I-frame carries the acknowledgement. */
	assert_int_equal(ct->count - base_c, 9);
	for (size_t i = base_c; i < base_c + 8; i++)
		assert_int_equal(ct->head[i][1] & 0xF8, 0xC0);
	assert_int_equal(ct->head[base_c + 8][1] & 0xC0, 0x80);
	pg_link_close(l);
}

static void
test_retransmission(void **state)
{
	(void)state;
	/* Host -> card frame lost: the host times out and resends; the card runs it once. */
	{
		struct sd_tcard t = {0};
		struct pg_card card = tc_card(&t);
		struct pg_link *l = NULL;
		struct sd_tap *ht, *ct;
		uint8_t atr[PG_ATR_MAX];
		size_t atrlen = sizeof(atr), clen, rlen = sizeof(rapdu);
		static const size_t hdrop[] = {6, (size_t)-1}; /* 5 set-up frames, then the APDU */

		assert_int_equal(
		    tc_open_tapped(&l, &pgi_link_swp_ops, &card, NULL, &ht, &ct, hdrop, NULL), 0);
		assert_int_equal(pg_link_power_on(l, atr, &atrlen), 0);
		assert_int_equal(ht->count, 6);
		clen = tc_build(capdu, PG_APDU_CASE4S, 16, 16);
		assert_int_equal(pg_link_transmit(l, capdu, clen, rapdu, &rlen), 0);
		assert_int_equal(rlen, 18);
		/* The host sent the same I-frame twice (same control byte). */
		assert_int_equal(ht->count, 8);
		assert_int_equal(ht->head[6][1], ht->head[7][1]);
		pg_link_close(l);
	}
	/* Card -> host response lost: the host resends, the card sees a duplicate, does NOT
	 * run the command again and resends its response. */
	{
		struct sd_tcard t = {0};
		struct pg_card card = tc_card(&t);
		struct pg_link *l = NULL;
		struct sd_tap *ht, *ct;
		uint8_t atr[PG_ATR_MAX];
		size_t atrlen = sizeof(atr), clen, rlen = sizeof(rapdu);
		static const size_t cdrop[] = {6, (size_t)-1};

		assert_int_equal(
		    tc_open_tapped(&l, &pgi_link_swp_ops, &card, NULL, &ht, &ct, NULL, cdrop), 0);
		assert_int_equal(pg_link_power_on(l, atr, &atrlen), 0);
		clen = tc_build(capdu, PG_APDU_CASE4S, 16, 16);
		uint64_t before = t.executed;
		assert_int_equal(pg_link_transmit(l, capdu, clen, rapdu, &rlen), 0);
		assert_int_equal(t.executed, before + 1);
		assert_memory_equal(rapdu, capdu + 5, 16);
		assert_int_equal(ct->head[6][1], ct->head[7][1]);
		pg_link_close(l);
	}
	/* A lost fragment in the middle of a window: the card answers REJ, the host goes
	 * back N and the long command still runs once. */
	{
		struct sd_tcard t = {0};
		struct pg_card card = tc_card(&t);
		struct pg_link *l = NULL;
		struct sd_tap *ht, *ct;
		uint8_t atr[PG_ATR_MAX];
		size_t atrlen = sizeof(atr), clen, rlen = sizeof(rapdu);
		static const size_t hdrop[] = {7, (size_t)-1};

		assert_int_equal(
		    tc_open_tapped(&l, &pgi_link_swp_ops, &card, NULL, &ht, &ct, hdrop, NULL), 0);
		assert_int_equal(pg_link_power_on(l, atr, &atrlen), 0);
		clen = tc_build(capdu, PG_APDU_CASE4E, 300, 300);
		uint64_t before = t.executed;
		assert_int_equal(pg_link_transmit(l, capdu, clen, rapdu, &rlen), 0);
		assert_int_equal(rlen, 302);
		assert_memory_equal(rapdu, capdu + 7, 300);
		assert_int_equal(t.executed, before + 1);
		assert_int_equal(tap_count(ct, 0xF8, 0xC8), 1); /* exactly one REJ */
		pg_link_close(l);
	}
	/* A mute card: the host gives up after its retries with PG_ELINK. */
	{
		struct sd_tcard t = {0};
		struct pg_card card = tc_card(&t);
		struct pg_link *l = NULL;
		struct pg_link_params p = {.retries = 3};
		uint8_t atr[PG_ATR_MAX];
		size_t atrlen = sizeof(atr), clen, rlen = sizeof(rapdu);

		assert_int_equal(pg_link_open_memory(&l, &pgi_link_swp_ops, &card, &p), 0);
		assert_int_equal(pg_link_power_on(l, atr, &atrlen), 0);
		t.mute = 1;
		clen = tc_build(capdu, PG_APDU_CASE1, 0, 0);
		assert_int_equal(pg_link_transmit(l, capdu, clen, rapdu, &rlen), PG_ELINK);
		/* The link needs a new power-on; then it works again. */
		t.mute = 0;
		rlen = sizeof(rapdu);
		assert_int_equal(pg_link_transmit(l, capdu, clen, rapdu, &rlen), PG_ESTATE);
		atrlen = sizeof(atr);
		assert_int_equal(pg_link_power_on(l, atr, &atrlen), 0);
		rlen = sizeof(rapdu);
		assert_int_equal(pg_link_transmit(l, capdu, clen, rapdu, &rlen), 0);
		pg_link_close(l);
	}
}

/* 10,000 sequence-numbered APDUs with 1% drops and 1% corruptions each way. */
static void
test_faults(void **state)
{
	struct sd_tcard t = {0};
	struct pg_card card = tc_card(&t);
	struct pg_link_card *c = NULL;
	struct pg_stream *mem = NULL, *hf = NULL, *cf = NULL;
	struct pg_link *l = NULL;
	struct pg_link_params p = {.retries = 12};
	struct pg_fault_stats hs, cs;
	uint8_t atr[PG_ATR_MAX];
	size_t atrlen = sizeof(atr);

	(void)state;
	assert_int_equal(pgi_link_swp_ops.card_open(&c, &card, &p), 0);
	assert_int_equal(pg_stream_memory_pair(&mem, pg_link_card_packet, c,
					       (void (*)(void *))pg_link_card_close),
			 0);
	assert_int_equal(
	    pg_stream_faulty_borrow(&cf, pg_stream_memory_card_end(mem), 10000, 10000, 0xC0FFEE),
	    0);
	pg_stream_memory_set_card_out(mem, cf);
	assert_int_equal(pg_stream_faulty(&hf, mem, 10000, 10000, 0xBADC0DE), 0);
	assert_int_equal(pgi_link_swp_ops.host_open(&l, hf, NULL, &p), 0);
	assert_int_equal(pg_link_power_on(l, atr, &atrlen), 0);
	for (uint32_t i = 1; i <= 10000; i++) {
		uint8_t cmd[4 + 1 + 16 + 1] = {0x80, SD_INS_SEQ_NEXT, 0, 0, 16};
		size_t rlen = sizeof(rapdu);

		cmd[5] = (uint8_t)(i >> 24);
		cmd[6] = (uint8_t)(i >> 16);
		cmd[7] = (uint8_t)(i >> 8);
		cmd[8] = (uint8_t)i;
		for (int k = 4; k < 16; k++)
			cmd[5 + k] = (uint8_t)(i + k);
		cmd[21] = 0;
		assert_int_equal(pg_link_transmit(l, cmd, sizeof(cmd), rapdu, &rlen), 0);
		assert_int_equal(rlen, 18);
		assert_memory_equal(rapdu, cmd + 5, 16);
		assert_int_equal(pg_rapdu_sw(rapdu, rlen), 0x9000);
	}
	pg_stream_faulty_stats(hf, &hs);
	pg_stream_faulty_stats(cf, &cs);
	printf("faults: host->card %llu packets, %llu dropped, %llu corrupted; "
	       "card->host %llu packets, %llu dropped, %llu corrupted\n",
	       (unsigned long long)hs.packets, (unsigned long long)hs.dropped,
	       (unsigned long long)hs.corrupted, (unsigned long long)cs.packets,
	       (unsigned long long)cs.dropped, (unsigned long long)cs.corrupted);
	assert_true(hs.dropped > 50 && hs.corrupted > 50 && cs.dropped > 50 && cs.corrupted > 50);
	/* Every command ran exactly once, in order. */
	assert_int_equal(t.executed, 10000);
	assert_int_equal(t.seq_errors, 0);
	assert_int_equal(t.last_seq, 10000);
	pg_link_close(l);
}

static void
test_socketpair(void **state)
{
	struct sd_tcard t = {0};
	struct pg_card card = tc_card(&t);
	struct sd_sock ts = {0};
	struct pg_link *l = NULL;
	struct pg_link_params p = {.timeout_ms = 5000};
	uint8_t atr[PG_ATR_MAX];
	size_t atrlen = sizeof(atr);

	(void)state;
	assert_int_equal(sd_open_socket(&l, &ts, &pgi_link_swp_ops, &card, &p), 0);
	assert_int_equal(pg_link_power_on(l, atr, &atrlen), 0);
	assert_memory_equal(atr, tc_atr, sizeof(tc_atr));
	run_cases(l, &t);
	for (uint32_t i = 1; i <= 200; i++) {
		uint8_t cmd[9] = {0x80, SD_INS_SEQ_NEXT,   0,	      0, 4, 0,
				  0,	(uint8_t)(i >> 8), (uint8_t)i};
		size_t rlen = sizeof(rapdu);

		assert_int_equal(pg_link_transmit(l, cmd, sizeof(cmd), rapdu, &rlen), 0);
		assert_int_equal(rlen, 6);
	}
	assert_int_equal(sd_close_socket(l, &ts), 0);
	assert_int_equal(t.seq_errors, 0);
}

/* Socketpair with faults: real timeouts (short) drive the retransmissions. */
static void
test_socketpair_faults(void **state)
{
	struct sd_tcard t = {0};
	struct pg_card card = tc_card(&t);
	struct sd_sock ts = {0};
	struct pg_link *l = NULL;
	struct pg_link_params p = {.timeout_ms = 20, .retries = 12};
	struct pg_stream *s = NULL, *f = NULL;
	uint8_t atr[PG_ATR_MAX];
	size_t atrlen = sizeof(atr);

	(void)state;
	assert_int_equal(sd_serve_socket(&ts, &pgi_link_swp_ops, &card, &p, &s), 0);
	assert_int_equal(pg_stream_faulty(&f, s, 20000, 20000, 7), 0);
	assert_int_equal(pgi_link_swp_ops.host_open(&l, f, NULL, &p), 0);
	assert_int_equal(pg_link_power_on(l, atr, &atrlen), 0);
	for (uint32_t i = 1; i <= 300; i++) {
		uint8_t cmd[9] = {0x80, SD_INS_SEQ_NEXT,   0,	      0, 4, 0,
				  0,	(uint8_t)(i >> 8), (uint8_t)i};
		size_t rlen = sizeof(rapdu);

		assert_int_equal(pg_link_transmit(l, cmd, sizeof(cmd), rapdu, &rlen), 0);
		assert_int_equal(rlen, 6);
		assert_memory_equal(rapdu, cmd + 5, 4);
	}
	assert_int_equal(sd_close_socket(l, &ts), 0);
	assert_int_equal(t.seq_errors, 0);
	assert_int_equal(t.executed, 300);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_crc),
	    cmocka_unit_test(test_control_codes),
	    cmocka_unit_test(test_hcp_fragments),
	    cmocka_unit_test(test_card_raw),
	    cmocka_unit_test(test_memory_cases),
	    cmocka_unit_test(test_windows),
	    cmocka_unit_test(test_window_acks),
	    cmocka_unit_test(test_retransmission),
	    cmocka_unit_test(test_faults),
	    cmocka_unit_test(test_socketpair),
	    cmocka_unit_test(test_socketpair_faults),
	};

	pg_log_set_level(PG_LOG_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
