/*
 * Fuzzes the host side of GP SCP03 (Amendment D) on bytes a card sends:
 * mode 0 the INITIALIZE UPDATE response (parser, then cryptogram check and
 * EXTERNAL AUTHENTICATE), mode 1 responses in an open session (R-MAC and
 * R-ENCRYPTION stripping), mode 2 PUT KEY key blocks (GP 2.3 11.8) and the
 * PUT KEY response check. Input: mode byte, security level byte, data.
 */
#include "payguard/apdu.h"
#include "payguard/scp03.h"

#include <stdlib.h>
#include <string.h>

static uint8_t out[PG_APDU_MAX_R + 64];

static void
keys(struct pg_scp03_keys *k, size_t len)
{
	memset(k, 0, sizeof(*k));
	for (size_t i = 0; i < len; i++) {
		k->enc[i] = (uint8_t)(0x40 + i);
		k->mac[i] = (uint8_t)(0x50 + i);
		k->dek[i] = (uint8_t)(0x60 + i);
	}
	k->len = len;
	k->kvn = 0x30;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pg_scp03_keys k, nk;
	struct pg_scp03_iu_resp ir;
	struct pg_scp03 hs, cs;
	struct pg_scp03_card cfg;
	uint8_t cmd[64], r0[128];
	int n, r;

	if (size < 2)
		return 0;
	keys(&k, 16 + 8 * (data[1] % 3));
	memset(&hs, 0, sizeof(hs));
	switch (data[0] % 3) {
	case 0:
		if (pg_scp03_parse_iu_response(&ir, data + 2, size - 2) == 0) {
			if (ir.ch_len != 8 && ir.ch_len != 16)
				abort();
			if (ir.card_cryptogram + ir.ch_len > data + size)
				abort();
		}
		pg_scp03_host_init_update(&hs, data[1] & 0x7F, (const uint8_t *)"0123456789ABCDEF",
					  (data[1] & 0x80) ? 16 : 8, cmd, sizeof(cmd));
		n = pg_scp03_host_auth(&hs, &k, data + 2, size - 2, 0x33, cmd, sizeof(cmd));
		if (n >= 0)
			pg_scp03_host_auth_done(&hs, (const uint8_t *)"\x90\x00", 2);
		break;
	case 1: {
		static const uint8_t levels[4] = {0x11, 0x13, 0x33, 0x01};

		/* Open a real session with our card role, then feed it the response. */
		memset(&cfg, 0, sizeof(cfg));
		memset(&cs, 0, sizeof(cs));
		cfg.keys = k;
		cfg.i_param = 0x70;
		n = pg_scp03_host_init_update(&hs, 0x30, (const uint8_t *)"01234567", 8, cmd,
					      sizeof(cmd));
		r = pg_scp03_card_process(&cs, &cfg, cmd, (size_t)n, r0, sizeof(r0));
		n = pg_scp03_host_auth(&hs, &k, r0, (size_t)r, levels[data[1] & 3], cmd,
				       sizeof(cmd));
		if (n < 0)
			abort();
		r = pg_scp03_card_process(&cs, &cfg, cmd, (size_t)n, r0, sizeof(r0));
		if (pg_scp03_host_auth_done(&hs, r0, (size_t)r) != 0)
			abort();
		n = pg_scp03_host_wrap(&hs, (const uint8_t *)"\x80\xCA\x00\x66\x00", 5, r0,
				       sizeof(r0));
		if (n < 0)
			abort();
		r = pg_scp03_host_unwrap(&hs, data + 2, size - 2, out, sizeof(out));
		if (r >= 0 && (r < 2 || (size_t)r > size - 2))
			abort();
		pg_scp03_close(&cs);
		break;
	}
	default:
		if (pg_scp03_put_key_parse(k.dek, k.len, data + 2, size - 2, &nk) == 0) {
			if (nk.len != 16 && nk.len != 24 && nk.len != 32)
				abort();
			pg_scp03_put_key_check(&nk, data + 2, size - 2);
		}
		break;
	}
	pg_scp03_close(&hs);
	return 0;
}
