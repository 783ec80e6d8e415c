/*
 * PPSE applet (EMV Contactless Book B / Book 1 12.3): SELECT "2PAY.SYS.DDF01"
 * answers an FCI whose directory (BF0C) lists one 61 entry (4F AID, 50 label,
 * 87 priority) per selectable payment instance on the card. The FCI builder
 * (pg_ppse_fci_*) is the project's one PPSE encoder: the NFC switch's
 * combined directory uses it too.
 */
#include "gp_int.h"

#include "payguard/tlv.h"

#include <string.h>

const uint8_t pg_gp_ppse_aid[14] = {'2', 'P', 'A', 'Y', '.', 'S', 'Y',
				    'S', '.', 'D', 'D', 'F', '0', '1'};

int
pg_ppse_fci_open(struct pg_ppse_fci *f, struct pg_buf *b)
{
	int rc;

	f->b = b;
	if ((rc = pg_tlv_open(b, 0x6F, &f->m6f)) < 0 ||
	    (rc = pg_tlv_append(b, 0x84, pg_gp_ppse_aid, sizeof(pg_gp_ppse_aid))) < 0 ||
	    (rc = pg_tlv_open(b, 0xA5, &f->ma5)) < 0)
		return rc;
	return pg_tlv_open(b, 0xBF0C, &f->mbf);
}

int
pg_ppse_fci_entry(struct pg_ppse_fci *f, const uint8_t *aid, size_t aid_len, const char *label,
		  size_t label_len, uint8_t priority)
{
	size_t m;
	int rc;

	if ((rc = pg_tlv_open(f->b, 0x61, &m)) < 0 ||
	    (rc = pg_tlv_append(f->b, 0x4F, aid, aid_len)) < 0 ||
	    (label_len && (rc = pg_tlv_append(f->b, 0x50, label, label_len)) < 0) ||
	    (rc = pg_tlv_append(f->b, 0x87, &priority, 1)) < 0)
		return rc;
	return pg_tlv_close(f->b, m);
}

int
pg_ppse_fci_close(struct pg_ppse_fci *f)
{
	int rc;

	if ((rc = pg_tlv_close(f->b, f->mbf)) < 0 || (rc = pg_tlv_close(f->b, f->ma5)) < 0)
		return rc;
	return pg_tlv_close(f->b, f->m6f);
}

static uint16_t
ppse_select(struct gp_inst *in, int chn, struct pg_buf *b)
{
	struct pg_gp_card *g = in->g;
	struct pg_ppse_fci f;

	(void)chn;
	if (pg_ppse_fci_open(&f, b) < 0)
		return PG_SW_UNKNOWN;
	for (int i = 0; i < g->ninst; i++)
		if (g->inst[i]->cls == &pgi_gp_class_pay && g->inst[i]->in_rt &&
		    pgi_gp_pay_fci_entry(g->inst[i], &f) < 0)
			return PG_SW_UNKNOWN;
	return pg_ppse_fci_close(&f) < 0 ? PG_SW_UNKNOWN : PG_SW_OK;
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

const struct gp_class pgi_gp_class_ppse = {
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
