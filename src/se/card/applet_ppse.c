/*
 * PPSE applet (EMV Contactless Book B / Book 1 12.3): SELECT "2PAY.SYS.DDF01"
 * answers an FCI whose directory (BF0C) lists one 61 entry (4F AID, 50 label,
 * 87 priority) per selectable payment instance on the card.
 */
#include "gp_int.h"

#include "payguard/tlv.h"

#include <string.h>

const uint8_t pg_gp_ppse_aid[14] = {'2', 'P', 'A', 'Y', '.', 'S', 'Y',
				    'S', '.', 'D', 'D', 'F', '0', '1'};

static uint16_t
ppse_select(struct gp_inst *in, int chn, struct pg_buf *b)
{
	struct pg_gp_card *g = in->g;
	size_t m6f, ma5, mbf;

	(void)chn;
	if (pg_tlv_open(b, 0x6F, &m6f) < 0 || pg_tlv_append(b, 0x84, in->aid, in->aid_len) < 0 ||
	    pg_tlv_open(b, 0xA5, &ma5) < 0 || pg_tlv_open(b, 0xBF0C, &mbf) < 0)
		return PG_SW_UNKNOWN;
	for (int i = 0; i < g->ninst; i++)
		if (g->inst[i]->cls == &gp_class_pay && g->inst[i]->in_rt &&
		    gp_pay_fci_entry(g->inst[i], b) < 0)
			return PG_SW_UNKNOWN;
	if (pg_tlv_close(b, mbf) < 0 || pg_tlv_close(b, ma5) < 0 || pg_tlv_close(b, m6f) < 0)
		return PG_SW_UNKNOWN;
	return PG_SW_OK;
}

static int
ppse_process(struct gp_inst *in, int chn, const struct pg_capdu *c, uint8_t *resp, size_t *rlen,
	     uint16_t *sw)
{
	(void)in, (void)chn, (void)c, (void)resp;
	*rlen = 0;
	*sw = PG_SW_INS_NOT_SUPPORTED;
	return 0;
}

const struct gp_class gp_class_ppse = {
    .name = "ppse",
    .id = 1,
    .elf_aid = {0xF0, 'P', 'G', 'L', 'F', 0x01},
    .elf_len = 6,
    .mod_aid = {0xF0, 'P', 'G', 'M', 'D', 0x01},
    .mod_len = 6,
    .def_aid = {'2', 'P', 'A', 'Y', '.', 'S', 'Y', 'S', '.', 'D', 'D', 'F', '0', '1'},
    .def_len = 14,
    .select = ppse_select,
    .process = ppse_process,
};
