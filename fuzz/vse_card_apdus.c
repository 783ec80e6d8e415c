/*
 * Fuzzes the whole GP card with arbitrary command sequences: each element is
 * a flag byte, a 2-byte length and a C-APDU. Flags: 01 send it through the
 * SCP03 session, 02 open a session first (level from bits 4-6), 04 reset the
 * card first, 08 power-cycle it first (restart from the store: the image must
 * come back identical). Answers must be whole R-APDUs within the room offered.
 */
#include "vse_card_fuzz.h"

#include "payguard/buf.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t levels[] = {0x01, 0x03, 0x11, 0x13, 0x33, 0x00, 0x01, 0x33};
	static uint8_t r[PG_APDU_MAX_R];
	struct pg_nvm *nvm = NULL;
	struct pg_gp_card *g;
	struct pg_scp03 s;
	size_t off = 0;
	int open = 0, cmds = 0;

	if (size > 20000)
		return 0;
	if (pg_nvm_open_memory(&nvm, 8192) < 0)
		abort();
	g = fz_card(nvm);
	while (off + 3 <= size && cmds++ < 64) {
		uint8_t f = data[off];
		size_t n = pg_be16(data + off + 1);
		const struct pg_card *c;

		off += 3;
		if (n > size - off)
			n = size - off;
		if (f & 0x08) {
			fz_restart_check(&g, nvm);
			open = 0;
		}
		c = pg_gp_card_card(g);
		if (f & 0x04) {
			c->reset(c->ctx);
			open = 0;
		}
		if (f & 0x02)
			open = fz_open(c, &s, levels[(f >> 4) & 7]) == 0;
		if ((f & 0x01) && open && n >= 4)
			fz_stx(c, &s, data + off, n);
		else
			sd_tx(c, data + off, n, r, (off & 1) ? sizeof(r) : 258);
		off += n;
	}
	fz_restart_check(&g, nvm);
	pg_gp_card_free(g);
	pg_nvm_close(nvm);
	return 0;
}
