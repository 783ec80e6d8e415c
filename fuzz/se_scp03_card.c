/*
 * Fuzzes the card side of GP SCP03 (Amendment D): arbitrary APDUs into an
 * open session (C-MAC check, C-DECRYPTION, unpadding, PUT KEY parsing, R-MAC
 * / R-ENC wrapping) and, in host-wrapped mode, commands protected by our host
 * role, which the card must accept and restore to the same command.
 *
 * Input: mode byte (b0-2 security level index, b3-4 key length, b6 S16,
 * b7 host-wrapped), then records of [length (2 bytes, big endian)][C-APDU].
 */
#include "payguard/apdu.h"
#include "payguard/scp03.h"

#include <stdlib.h>
#include <string.h>

static const uint8_t levels[8] = {0x00, 0x01, 0x03, 0x11, 0x13, 0x33, 0x33, 0x13};

static uint8_t wrapped[PG_APDU_MAX_C + 64], plain[PG_APDU_MAX_C + 64], rsp[PG_APDU_MAX_R + 64],
    out[PG_APDU_MAX_R + 64];

/* Card stand-in: SCP03 first, then an echo handler and PUT KEY. */
static int
card(struct pg_scp03 *s, struct pg_scp03_card *cfg, const uint8_t *cmd, size_t n, int *plen)
{
	struct pg_capdu a;
	uint16_t sw = 0x9000;
	int r;

	*plen = -1;
	if (n >= 2 && (cmd[0] & 0x80) && (cmd[1] == 0x50 || cmd[1] == 0x82))
		return pg_scp03_card_process(s, cfg, cmd, n, rsp, sizeof(rsp));
	r = pg_scp03_card_unwrap(s, cmd, n, plain, sizeof(plain), &sw);
	if (r < 0) {
		if (sw == 0x9000)
			abort(); /* a refusal must name its status word */
		rsp[0] = (uint8_t)(sw >> 8);
		rsp[1] = (uint8_t)sw;
		return 2;
	}
	*plen = r;
	if (pg_capdu_parse(&a, plain, (size_t)r) != 0)
		abort(); /* the unwrapped command must be a well-formed APDU */
	if (a.ins == 0xD8) {
		r = pg_scp03_card_put_key(s, cfg, plain, (size_t)r, out, sizeof(out));
		if (r < 2)
			abort();
		return pg_scp03_card_wrap(s, out, (size_t)r - 2, pg_rapdu_sw(out, (size_t)r), rsp,
					  sizeof(rsp));
	}
	return pg_scp03_card_wrap(s, a.data, a.lc, a.p1 == 1 ? 0x6A80 : 0x9000, rsp, sizeof(rsp));
}

/* Same command, whatever the length encoding (the card picks the shortest). */
static int
same_command(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
	struct pg_capdu x, y;

	if (pg_capdu_parse(&x, a, an) || pg_capdu_parse(&y, b, bn))
		return 0;
	return x.cla == y.cla && x.ins == y.ins && x.p1 == y.p1 && x.p2 == y.p2 && x.lc == y.lc &&
	       x.has_le == y.has_le && x.le == y.le &&
	       (x.lc == 0 || memcmp(x.data, y.data, x.lc) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pg_scp03_card cfg;
	struct pg_scp03 cs, hs;
	uint8_t cmd[64], r0[128];
	size_t klen, o = 1, chlen;
	int n, r, plen, host_mode;
	uint8_t sl;

	if (size < 1)
		return 0;
	sl = levels[data[0] & 7];
	klen = 16 + 8 * ((data[0] >> 3) % 3);
	chlen = (data[0] & 0x40) ? 16 : 8;
	host_mode = (data[0] & 0x80) != 0;
	memset(&cfg, 0, sizeof(cfg));
	memset(&cs, 0, sizeof(cs));
	for (size_t i = 0; i < klen; i++) {
		cfg.keys.enc[i] = (uint8_t)(0x40 + i);
		cfg.keys.mac[i] = (uint8_t)(0x50 + i);
		cfg.keys.dek[i] = (uint8_t)(0x60 + i);
	}
	cfg.keys.len = klen;
	cfg.keys.kvn = 0x30;
	cfg.i_param = 0x71;
	cfg.aid_len = 8;
	memcpy(cfg.aid, "\xA0\x00\x00\x01\x51\x00\x00\x00", 8);
	/* A deterministic session: fixed host challenge, counter-derived card challenge. */
	n = pg_scp03_host_init_update(&hs, 0x30, (const uint8_t *)"0123456789ABCDEF", chlen, cmd,
				      sizeof(cmd));
	r = pg_scp03_card_process(&cs, &cfg, cmd, (size_t)n, r0, sizeof(r0));
	n = pg_scp03_host_auth(&hs, &cfg.keys, r0, (size_t)r, sl, cmd, sizeof(cmd));
	if (n < 0)
		abort();
	r = pg_scp03_card_process(&cs, &cfg, cmd, (size_t)n, r0, sizeof(r0));
	if (pg_scp03_host_auth_done(&hs, r0, (size_t)r) != 0)
		abort();
	while (size - o >= 2) {
		size_t len = (size_t)data[o] << 8 | data[o + 1];
		const uint8_t *c;

		o += 2;
		if (len > size - o)
			len = size - o;
		c = data + o;
		o += len;
		if (!host_mode) {
			card(&cs, &cfg, c, len, &plen);
			continue;
		}
		/* Host-wrapped: the card must restore exactly what the host protected. */
		if (!pg_scp03_is_open(&hs) || !pg_scp03_is_open(&cs))
			break;
		if (len >= 2 && (c[0] & 0x80) && (c[1] == 0x50 || c[1] == 0x82))
			continue;
		/* A CLA that already claims secure messaging is not ours to send. */
		if (len >= 1 && (c[0] & ((c[0] & 0x40) ? 0x20 : 0x04)))
			continue;
		n = pg_scp03_host_wrap(&hs, c, len, wrapped, sizeof(wrapped));
		if (n < 0)
			continue;
		r = card(&cs, &cfg, wrapped, (size_t)n, &plen);
		if (r < 2 || plen < 0 || !same_command(plain, (size_t)plen, c, len))
			abort();
		r = pg_scp03_host_unwrap(&hs, rsp, (size_t)r, out, sizeof(out));
		if (r < 2)
			abort();
	}
	pg_scp03_close(&cs);
	pg_scp03_close(&hs);
	return 0;
}
