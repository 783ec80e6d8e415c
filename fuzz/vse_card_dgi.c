/*
 * Fuzzes STORE DATA personalisation (GP 2.3 11.11, DGI format): the DGI
 * parser on its own, then the bytes as one STORE DATA block in an SCP03
 * session to the ISD, the payment or the PIN applet (byte 0 picks, byte 1
 * gives P1), then reads the result back and restarts the card from its store.
 */
#include "se/card/gp_int.h"
#include "vse_card_fuzz.h"

static const uint8_t perso_pay[] = {0x80, 0xE6, 0x20, 0x00, 0x0D, 0x00, 0x00, 0x07, 0xF0, 'P',
				    'G',  'P',	'A',  'Y',  0x01, 0x00, 0x00, 0x00, 0x00};
static const uint8_t perso_pin[] = {0x80, 0xE6, 0x20, 0x00, 0x0D, 0x00, 0x00, 0x07, 0xF0, 'P',
				    'G',  'P',	'I',  'N',  0x01, 0x00, 0x00, 0x00, 0x00};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t cmd[PG_APDU_MAX_C], r[PG_APDU_MAX_R];
	struct pg_nvm *nvm = NULL;
	struct pg_gp_card *g;
	struct pg_scp03 s;
	struct gp_dgi d;
	size_t off, n;
	int k;

	if (size < 2 || size > 4000)
		return 0;
	for (off = 2; off < size; off += (size_t)k) {
		k = pgi_gp_dgi_next(&d, data + off, size - off);
		if (k < 0)
			break;
		if (k < 3 || (size_t)k > size - off || d.val + d.len != data + off + (size_t)k)
			abort();
	}
	if (pg_nvm_open_memory(&nvm, 8192) < 0)
		abort();
	g = fz_card(nvm);
	if (fz_open(pg_gp_card_card(g), &s, data[0] & 0x80 ? 0x33 : 0x01) != 0)
		abort();
	if (data[0] % 3 == 1 &&
	    fz_stx(pg_gp_card_card(g), &s, perso_pay, sizeof(perso_pay)) != 0x9000)
		abort();
	if (data[0] % 3 == 2 &&
	    fz_stx(pg_gp_card_card(g), &s, perso_pin, sizeof(perso_pin)) != 0x9000)
		abort();
	n = size - 2;
	cmd[0] = 0x80, cmd[1] = 0xE2, cmd[2] = data[1], cmd[3] = 0x00;
	if (n <= 255) {
		cmd[4] = (uint8_t)n;
		memcpy(cmd + 5, data + 2, n);
		n += 5;
	} else {
		cmd[4] = 0, cmd[5] = (uint8_t)(n >> 8), cmd[6] = (uint8_t)n;
		memcpy(cmd + 7, data + 2, n);
		n += 7;
	}
	fz_stx(pg_gp_card_card(g), &s, cmd, n);
	/* Read back what personalisation may have changed. */
	{
		static const uint8_t rd[][16] = {
		    {5, 0x80, 0xCA, 0x00, 0x42, 0x00},
		    {5, 0x80, 0xCA, 0x00, 0x45, 0x00},
		    {13, 0x00, 0xA4, 0x04, 0x00, 0x07, 0xF0, 'P', 'G', 'P', 'A', 'Y', 0x01, 0x00},
		    {5, 0x00, 0xB2, 0x01, 0x0C, 0x00},
		    {5, 0x00, 0xB2, 0x01, 0x14, 0x00},
		};
		for (size_t i = 0; i < sizeof(rd) / sizeof(rd[0]); i++)
			sd_tx(pg_gp_card_card(g), rd[i] + 1, rd[i][0], r, sizeof(r));
	}
	fz_restart_check(&g, nvm);
	pg_gp_card_free(g);
	pg_nvm_close(nvm);
	return 0;
}
