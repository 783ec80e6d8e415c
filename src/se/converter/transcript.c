/*
 * Readable transcripts of the converter's traffic: who sent what to whom,
 * the CLA as mapped onto the target's logical channel, the response and the
 * meaning of its status word (ISO/IEC 7816-4 table 5-7 via pg_sw_meaning).
 */
#include "payguard/converter.h"
#include "payguard/error.h"
#include "payguard/hex.h"

#include <pthread.h>
#include <string.h>

#define SHOW_MAX 40 /* bytes of an APDU shown before eliding */

static void
put_hex(FILE *f, const uint8_t *p, size_t n)
{
	char h[3 * SHOW_MAX + 1];
	size_t show = n > SHOW_MAX ? SHOW_MAX : n;

	pg_hex_encode_upper(h, p, show, 1);
	fputs(h, f);
	if (show < n)
		fprintf(f, " ... (%zu bytes)", n);
}

static int
apdu_channel(const uint8_t *p, size_t n)
{
	if (n < 1 || p[0] == 0xFF)
		return -1;
	return pg_cla_channel((uint8_t)(p[0] & 0x7F));
}

void
pg_conv_print_event(FILE *f, const struct pg_conv_event *ev)
{
	uint16_t sw;

	switch (ev->kind) {
	case PG_CONV_EV_ATTACH:
		fprintf(f, "attach   %-8s over %-5s ATR ", ev->from, ev->link);
		put_hex(f, ev->rapdu, ev->rlen);
		fputc('\n', f);
		break;
	case PG_CONV_EV_DETACH:
		fprintf(f, "detach   %-8s (SE removed)\n", ev->from);
		break;
	case PG_CONV_EV_FAIL:
		fprintf(f, "FAIL     %s\n", ev->detail ? ev->detail : pg_strerror(ev->rc));
		break;
	case PG_CONV_EV_OPEN:
		fprintf(f, "open     ch %-3d %s <-> %s\n", ev->chan, ev->from, ev->to);
		break;
	case PG_CONV_EV_CLOSE:
		fprintf(f, "close    ch %-3d %s <-> %s\n", ev->chan, ev->from, ev->to);
		break;
	case PG_CONV_EV_END:
		fprintf(f, "END      ch %-3d %s (%s)\n", ev->chan, ev->detail ? ev->detail : "",
			pg_errname(ev->rc));
		break;
	case PG_CONV_EV_INTERNAL:
		fprintf(f, "  mgmt   ch %-3d -> %-8s ", ev->chan, ev->to);
		put_hex(f, ev->sent, ev->slen);
		if (ev->rlen >= 2) {
			fputs("  => ", f);
			put_hex(f, ev->rapdu, ev->rlen);
		} else if (ev->rc < 0) {
			fprintf(f, "  => %s", pg_strerror(ev->rc));
		}
		fputc('\n', f);
		break;
	case PG_CONV_EV_APDU:
		fprintf(f, "  ch %-3d %s -> %s (%s)\n", ev->chan, ev->from, ev->to, ev->link);
		fputs("     C-APDU  ", f);
		put_hex(f, ev->capdu, ev->clen);
		fprintf(f, "   [logical channel %d]\n", apdu_channel(ev->capdu, ev->clen));
		if (ev->sent) {
			fputs("     sent as ", f);
			put_hex(f, ev->sent, ev->slen);
			fprintf(f, "   [logical channel %d on %s]\n",
				apdu_channel(ev->sent, ev->slen), ev->to);
		} else if (ev->rc == 0) {
			fputs("     (answered by the converter)\n", f);
		}
		if (ev->rc < 0) {
			fprintf(f, "     ERROR   %s\n",
				ev->detail ? ev->detail : pg_strerror(ev->rc));
			break;
		}
		sw = pg_rapdu_sw(ev->rapdu, ev->rlen);
		fputs("     R-APDU  ", f);
		put_hex(f, ev->rapdu, ev->rlen);
		fprintf(f, "   [%04X: %s]\n", sw, pg_sw_meaning(sw));
		break;
	}
}

static pthread_mutex_t trace_lock = PTHREAD_MUTEX_INITIALIZER;

void
pg_conv_trace_file(void *arg, const struct pg_conv_event *ev)
{
	pthread_mutex_lock(&trace_lock);
	pg_conv_print_event(arg, ev);
	fflush(arg);
	pthread_mutex_unlock(&trace_lock);
}
