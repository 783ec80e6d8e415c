/*
 * PC/SC host driver (host role only): reaches a card through pcscd and
 * libpcsclite (PC/SC Workgroup specification part 5 API: SCardEstablishContext,
 * SCardConnect with T=0|T=1, SCardTransmit, SCardStatus). The address is a
 * reader name (exact, else the first reader whose name contains it) or a
 * reader index ("0"). PC/SC return codes are translated in one adapter,
 * pcsc_fail(), which keeps the original code in the log line.
 */
#include "drivers.h"
#include "payguard/error.h"
#include "payguard/log.h"
#include "payguard/se_pcsc.h"

#include <PCSC/winscard.h>
#include <PCSC/wintypes.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

struct pcsc_link {
	struct pg_link base;
	SCARDCONTEXT ctx;
	SCARDHANDLE card;
	DWORD proto;
	char reader[256];
};

/* The one adapter from PC/SC codes to payguard codes. */
static int
pcsc_fail(LONG rv, const char *what, const char *reader)
{
	int code;

	switch (rv) {
	case SCARD_E_NO_SMARTCARD:
	case SCARD_W_REMOVED_CARD:
	case SCARD_W_UNPOWERED_CARD:
	case SCARD_W_UNRESPONSIVE_CARD:
		code = PG_ENOCARD;
		break;
	case SCARD_E_TIMEOUT:
		code = PG_ETIMEDOUT;
		break;
	case SCARD_E_UNKNOWN_READER:
	case SCARD_E_NO_READERS_AVAILABLE:
	case SCARD_E_READER_UNAVAILABLE:
		code = PG_ENOENT;
		break;
	case SCARD_E_SHARING_VIOLATION:
		code = PG_EBUSY;
		break;
	case SCARD_E_INSUFFICIENT_BUFFER:
		code = PG_ETOOBIG;
		break;
	case SCARD_W_RESET_CARD:
		code = PG_ERESYNC;
		break;
	case SCARD_E_NOT_TRANSACTED:
	case SCARD_F_COMM_ERROR:
	case SCARD_E_PROTO_MISMATCH:
		code = PG_ELINK;
		break;
	case SCARD_E_INVALID_PARAMETER:
	case SCARD_E_INVALID_VALUE:
		code = PG_EINVAL;
		break;
	default:
		code = PG_EPCSC;
		break;
	}
	return pg_error(code, "pcsc", "%s%s%s%s: %s (PC/SC 0x%08lX)", what, reader ? " '" : "",
			reader ? reader : "", reader ? "'" : "", pcsc_stringify_error(rv),
			(unsigned long)rv);
}

static int
all_digits(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return 0;
	return 1;
}

/* Picks a reader from the multi-string list: index, exact name, or substring. */
static int
pick_reader(const char *list, DWORD len, const char *addr, char *out, size_t outlen)
{
	const char *p, *found = NULL;
	long want = -1, i = 0;

	if (!addr || !*addr)
		want = 0;
	else if (all_digits(addr))
		want = strtol(addr, NULL, 10);
	for (p = list; p < list + len && *p; p += strlen(p) + 1, i++) {
		if (want >= 0 ? i == want : strcmp(p, addr) == 0) {
			found = p;
			break;
		}
	}
	if (!found && want < 0)
		for (p = list; p < list + len && *p; p += strlen(p) + 1)
			if (strstr(p, addr)) {
				found = p;
				break;
			}
	if (!found)
		return pg_error(PG_ENOENT, "pcsc", "no PC/SC reader '%s' (%ld readers)",
				addr ? addr : "", i);
	if (strlen(found) >= outlen)
		return pg_error(PG_ETOOBIG, "pcsc", "reader name too long");
	strcpy(out, found);
	return 0;
}

static int
pcsc_host_open(struct pg_link **out, struct pg_stream *s, const char *addr,
	       const struct pg_link_params *p)
{
	struct pcsc_link *l = NULL;
	char *readers = NULL;
	DWORD len = SCARD_AUTOALLOCATE;
	LONG rv;
	int rc = 0;

	(void)p;
	*out = NULL;
	pg_stream_free(s); /* PC/SC has its own transport */
	l = calloc(1, sizeof(*l));
	if (!l)
		return PG_ENOMEM;
	l->base.ops = &pgi_link_pcsc_ops;
	rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &l->ctx);
	if (rv != SCARD_S_SUCCESS) {
		rc = pcsc_fail(rv, "cannot reach pcscd", NULL);
		free(l);
		return rc;
	}
	rv = SCardListReaders(l->ctx, NULL, (LPSTR)&readers, &len);
	if (rv != SCARD_S_SUCCESS) {
		rc = pcsc_fail(rv, "cannot list readers", NULL);
		goto fail;
	}
	rc = pick_reader(readers, len, addr, l->reader, sizeof(l->reader));
	SCardFreeMemory(l->ctx, readers);
	if (rc < 0)
		goto fail;
	rv = SCardConnect(l->ctx, l->reader, SCARD_SHARE_SHARED,
			  SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1, &l->card, &l->proto);
	if (rv != SCARD_S_SUCCESS) {
		rc = pcsc_fail(rv, "cannot connect to reader", l->reader);
		goto fail;
	}
	pg_debug("pcsc", "connected to '%s' with T=%d", l->reader,
		 l->proto == SCARD_PROTOCOL_T1 ? 1 : 0);
	*out = &l->base;
	return 0;
fail:
	SCardReleaseContext(l->ctx);
	free(l);
	return rc;
}

static int
pcsc_power_on(struct pg_link *lk, uint8_t *atr, size_t *atrlen)
{
	struct pcsc_link *l = (struct pcsc_link *)lk;
	BYTE a[MAX_ATR_SIZE];
	DWORD alen = sizeof(a), state, proto, nlen = 0;
	LONG rv;

	rv = SCardReconnect(l->card, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1,
			    SCARD_RESET_CARD, &l->proto);
	if (rv != SCARD_S_SUCCESS)
		return pcsc_fail(rv, "cannot reset the card in", l->reader);
	rv = SCardStatus(l->card, NULL, &nlen, &state, &proto, a, &alen);
	if (rv != SCARD_S_SUCCESS)
		return pcsc_fail(rv, "cannot read the ATR in", l->reader);
	if (alen > *atrlen)
		return PG_ETOOBIG;
	memcpy(atr, a, alen);
	*atrlen = alen;
	return 0;
}

static int
pcsc_transmit(struct pg_link *lk, const uint8_t *capdu, size_t clen, uint8_t *rapdu, size_t *rlen)
{
	struct pcsc_link *l = (struct pcsc_link *)lk;
	const SCARD_IO_REQUEST *pci = l->proto == SCARD_PROTOCOL_T1 ? SCARD_PCI_T1 : SCARD_PCI_T0;
	DWORD n = (DWORD)*rlen;
	LONG rv;

	rv = SCardTransmit(l->card, pci, capdu, (DWORD)clen, NULL, rapdu, &n);
	if (rv != SCARD_S_SUCCESS)
		return pcsc_fail(rv, "transmit failed in", l->reader);
	*rlen = n;
	return 0;
}

static void
pcsc_host_close(struct pg_link *lk)
{
	struct pcsc_link *l = (struct pcsc_link *)lk;

	if (!l)
		return;
	SCardDisconnect(l->card, SCARD_LEAVE_CARD);
	SCardReleaseContext(l->ctx);
	free(l);
}

const struct pg_link_ops pgi_link_pcsc_ops = {
    .name = "pcsc",
    .type = PG_LINK_PCSC,
    .max_capdu = PG_APDU_MAX_C,
    .max_rapdu = PG_APDU_MAX_R,
    .host_open = pcsc_host_open,
    .power_on = pcsc_power_on,
    .transmit = pcsc_transmit,
    .host_close = pcsc_host_close,
};

int
pg_pcsc_list_readers(void (*fn)(void *arg, const char *reader), void *arg)
{
	SCARDCONTEXT ctx;
	char *readers = NULL;
	DWORD len = SCARD_AUTOALLOCATE;
	LONG rv;
	int n = 0;

	rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx);
	if (rv != SCARD_S_SUCCESS)
		return pcsc_fail(rv, "cannot reach pcscd", NULL);
	rv = SCardListReaders(ctx, NULL, (LPSTR)&readers, &len);
	if (rv == SCARD_E_NO_READERS_AVAILABLE) {
		SCardReleaseContext(ctx);
		return 0;
	}
	if (rv != SCARD_S_SUCCESS) {
		n = pcsc_fail(rv, "cannot list readers", NULL);
		SCardReleaseContext(ctx);
		return n;
	}
	for (const char *p = readers; p < readers + len && *p; p += strlen(p) + 1, n++)
		fn(arg, p);
	SCardFreeMemory(ctx, readers);
	SCardReleaseContext(ctx);
	return n;
}
