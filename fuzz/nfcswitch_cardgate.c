/*
 * Fuzzes the NFC switch's slave port (issue 8): HCP messages on the card RF
 * gate pipes (EVT_FIELD_ON/OFF, EVT_CARD_ACTIVATED/DEACTIVATED,
 * EVT_SEND_DATA with C-APDUs routed to two simulated SEs (GP cards), admin commands) wrapped
 * in valid SHDLC I-frames so the fuzzer reaches HCI, mixed with raw frames.
 * Input: chunks [kind:1][len:1][bytes]; kind bit 0 set = I-frame info.
 */
#include "payguard/card_gp.h"
#include "payguard/log.h"
#include "payguard/nfcswitch.h"
#include "se/link/shdlc.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
sink_write(struct pg_stream *s, int type, const uint8_t *p, size_t n)
{
	(void)s, (void)type, (void)p, (void)n;
	return 0;
}
static int
sink_read(struct pg_stream *s, uint8_t *p, size_t n, int t)
{
	(void)s, (void)p, (void)n, (void)t;
	return -11;
}
static void
sink_destroy(struct pg_stream *s)
{
	(void)s;
}
static const struct pg_stream_ops sink_ops = {
    .write = sink_write, .read = sink_read, .destroy = sink_destroy};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct pg_nfcsw_sim_app apps[] = {
	    {"a", PG_NFCSW_APPLET_PAYMENT, "A0000000041010", "X", 1},
	    {"b", PG_NFCSW_APPLET_TRANSIT, "F0504754524E5301", "X", 1}};
	struct pg_stream sink = {&sink_ops};
	struct pg_nfcsw *sw = NULL;
	struct pg_gp_card *se[2] = {NULL, NULL};
	struct pg_nfcsw_slave *s = NULL;
	uint8_t pkt[SHDLC_MAX_FRAME], w = 4;
	size_t off = 0;
	int ns = 0;

	pg_log_set_level(-1);
	if (pg_nfcsw_new(&sw) < 0)
		return 0;
	for (int i = 0; i < 2; i++) {
		struct pg_link *l = NULL;

		if (pg_nfcsw_sim_se_new(&se[i], (uint32_t)i, i, apps, 2, i ? "b" : "a") < 0)
			goto out;
		if (pg_link_open_memory(&l, pg_link_find(i ? "t1" : "swp"), pg_gp_card_card(se[i]),
					NULL) < 0)
			goto out;
		pg_nfcsw_attach(sw, i ? "b" : "a", l, "memory", i + 1);
	}
	if (pg_nfcsw_slave_new(&s, sw) < 0)
		goto out;
	pg_nfcsw_slave_packet(s, PG_PKT_RESET, NULL, 0, &sink);
	pg_nfcsw_slave_packet(s, PG_PKT_DATA, pkt,
			      pgi_shdlc_encode(pkt, 0xE0 | SHDLC_U_RSET, &w, 1), &sink);
	while (off + 2 <= size) {
		uint8_t kind = data[off], len = data[off + 1];
		const uint8_t *p = data + off + 2;

		off += 2;
		if (len > size - off)
			len = (uint8_t)(size - off);
		off += len;
		if (kind & 1) {
			/* I-frame N(S)=ns, N(R)=kind bits 1-3; at most 29 info bytes. */
			size_t n = len > SHDLC_MAX_INFO ? SHDLC_MAX_INFO : len;
			uint8_t ctrl = (uint8_t)(0x80 | (ns & 7) << 3 | ((kind >> 1) & 7));

			if (!(kind & 0x80))
				ns++; /* bit 7 set: repeat the sequence number (a duplicate) */
			pg_nfcsw_slave_packet(s, PG_PKT_DATA, pkt,
					      pgi_shdlc_encode(pkt, ctrl, p, n), &sink);
		} else if (kind & 2) {
			pg_nfcsw_slave_packet(s, PG_PKT_RESET, NULL, 0, &sink);
		} else {
			pg_nfcsw_slave_packet(s, PG_PKT_DATA, p, len, &sink);
		}
	}
	if (getenv("PG_FUZZ_VERBOSE")) {
		struct pg_nfcsw_slave_stats st;

		pg_nfcsw_slave_stats(s, &st);
		fprintf(stderr, "field on %llu, activated %llu, C-APDUs %llu, bad %llu\n",
			(unsigned long long)st.field_on, (unsigned long long)st.activated,
			(unsigned long long)st.capdus, (unsigned long long)st.bad_msgs);
	}
out:
	pg_nfcsw_slave_free(s);
	pg_nfcsw_free(sw);
	for (int i = 0; i < 2; i++)
		pg_gp_card_free(se[i]);
	return 0;
}
