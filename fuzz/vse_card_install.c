/*
 * Fuzzes INSTALL command data (GP 2.3 11.5.2.3): the strict parser for each
 * P1 (byte 0 picks 04, 08, 0C, 20 or takes a raw P1), then the same bytes as
 * an INSTALL in an SCP03 session, GET STATUS over every page, a DELETE of the
 * named application, and a restart from the store.
 */
#include "se/card/gp_int.h"
#include "vse_card_fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t p1s[] = {0x04, 0x08, 0x0C, 0x20};
	static uint8_t cmd[300], r[PG_APDU_MAX_R];
	struct pg_nvm *nvm = NULL;
	struct pg_gp_card *g;
	struct pg_scp03 s;
	struct pgi_gp_install in;
	uint8_t p1;
	size_t n;
	int ok;

	if (size < 1 || size > 256)
		return 0;
	p1 = data[0] < 0xF0 ? p1s[data[0] % 4] : data[0];
	n = size - 1;
	ok = pgi_gp_install_parse(p1, data + 1, n, &in) == 0;
	if (ok && (in.app_len < 5 || in.app + in.app_len > data + size))
		abort();
	if (pg_nvm_open_memory(&nvm, 8192) < 0)
		abort();
	g = fz_card(nvm);
	if (fz_open(pg_gp_card_card(g), &s, 0x03) != 0)
		abort();
	cmd[0] = 0x80, cmd[1] = 0xE6, cmd[2] = p1, cmd[3] = 0x00, cmd[4] = (uint8_t)n;
	memcpy(cmd + 5, data + 1, n);
	cmd[5 + n] = 0x00;
	fz_stx(pg_gp_card_card(g), &s, cmd, n + 6);
	{
		static const uint8_t gs[] = {0x80, 0xF2, 0x40, 0x02, 0x02, 0x4F, 0x00, 0x00};
		static const uint8_t gsn[] = {0x80, 0xF2, 0x40, 0x03, 0x02, 0x4F, 0x00, 0x00};
		uint16_t sw = fz_stx(pg_gp_card_card(g), &s, gs, sizeof(gs));

		for (int i = 0; i < 20 && sw == 0x6310; i++)
			sw = fz_stx(pg_gp_card_card(g), &s, gsn, sizeof(gsn));
	}
	if (ok) {
		cmd[0] = 0x00, cmd[1] = 0xA4, cmd[2] = 0x04, cmd[3] = 0x00;
		cmd[4] = (uint8_t)in.app_len;
		memcpy(cmd + 5, in.app, in.app_len);
		cmd[5 + in.app_len] = 0;
		sd_tx(pg_gp_card_card(g), cmd, in.app_len + 6, r, sizeof(r));
		sd_tx(pg_gp_card_card(g), (const uint8_t *)"\x00\xA4\x04\x00\x00", 5, r, sizeof(r));
		if (fz_open(pg_gp_card_card(g), &s, 0x01) != 0)
			abort();
		cmd[0] = 0x80, cmd[1] = 0xE4, cmd[2] = 0, cmd[3] = 0,
		cmd[4] = (uint8_t)(2 + in.app_len);
		cmd[5] = 0x4F, cmd[6] = (uint8_t)in.app_len;
		memcpy(cmd + 7, in.app, in.app_len);
		fz_stx(pg_gp_card_card(g), &s, cmd, 7 + in.app_len);
	}
	fz_restart_check(&g, nvm);
	pg_gp_card_free(g);
	pg_nvm_close(nvm);
	return 0;
}
