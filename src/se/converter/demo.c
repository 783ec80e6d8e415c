/*
 * The SE demonstration (seed 7 end to end): one simulated SE per link type
 * in the driver table, each on its own socket (or in pcscd through vpcd),
 * joined by the converter; channels carry real APDUs between SEs of
 * different types and the converter's transcript shows each exchange.
 */
#include "payguard/card.h"
#include "payguard/card_gp.h"
#include "payguard/converter.h"
#include "payguard/error.h"
#include "payguard/hex.h"
#include "payguard/log.h"
#include "payguard/se_pcsc.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_SIMS 16

struct sim {
	const struct pg_link_ops *ops;
	struct pg_gp_card *card; /* the GlobalPlatform card with the test applet */
	pthread_t thread;
	int started;
	int listen_fd;
	char addr[160];
	/* vpcd only */
	const char *vpcd_addr;
	int stop;
	int rc;
};

static void *
socket_sim_main(void *arg)
{
	struct sim *s = arg;

	s->rc = pg_card_serve_listener(s->listen_fd, s->ops, pg_gp_card_card(s->card), NULL, 1);
	return NULL;
}

static void *
vpcd_sim_main(void *arg)
{
	struct sim *s = arg;

	s->rc = pg_vpcd_serve(s->vpcd_addr, pg_gp_card_card(s->card), 3000, &s->stop);
	return NULL;
}

struct reader_hit {
	const char *want;
	int found;
};

static void
reader_cb(void *arg, const char *name)
{
	struct reader_hit *h = arg;

	if (strcmp(name, h->want) == 0)
		h->found = 1;
}

/* Attaches the PC/SC interface once vpcd has reported the card to pcscd. */
static int
attach_pcsc(struct pg_conv *conv, const char *reader)
{
	const struct pg_link_ops *ops = pg_link_find("pcsc");
	int rc = PG_ENOCARD;

	for (int i = 0; i < 50; i++) {
		rc = pg_conv_attach_addr(conv, "pcsc", ops, reader, NULL);
		if (rc != PG_ENOCARD && rc != PG_EPCSC)
			break;
		usleep(100000);
	}
	return rc;
}

static int
demo_send(struct pg_conv *conv, int ch, enum pg_conv_side side, const char *hex)
{
	uint8_t c[300], r[300];
	size_t rl = sizeof(r);
	int n = pg_hex_decode(c, sizeof(c), hex);

	if (n < 0)
		return n;
	return pg_conv_transmit(conv, ch, side, c, (size_t)n, r, &rl);
}

/* One side's conversation: test applet, echo, the peer's CPLC on a 2nd channel, counter. */
static int
converse(struct pg_conv *conv, int ch, enum pg_conv_side side)
{
	static const char *const script[] = {
	    "00A404000AF070617967756172640100",		    /* SELECT test applet */
	    "8010000010000102030405060708090A0B0C0D0E0F00", /* ECHO 16 bytes */
	    "0070000001",				    /* MANAGE CHANNEL open -> 1 */
	    "01A4040008A00000015100000000",		    /* SELECT the ISD on channel 1 */
	    "81CA9F7F00",				    /* GET DATA CPLC on channel 1 */
	    "00708001",					    /* MANAGE CHANNEL close 1 */
	    "8012000008",				    /* GET COUNTER */
	};
	int rc;

	for (size_t i = 0; i < sizeof(script) / sizeof(script[0]); i++) {
		rc = demo_send(conv, ch, side, script[i]);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* The demo's SEs: each a simulated card served on a socket (or through vpcd) by a thread. */
struct demo {
	FILE *out;
	struct pg_conv *conv;
	struct sim sims[MAX_SIMS];
	int nsims;
	int nifs; /* interfaces attached to the converter */
	char dir[sizeof("/tmp/pg-se-demo-XXXXXX")];
};

/* Every driver with both roles: a card on a UNIX socket, a host link in the converter. */
/* Every simulated SE is src/se/card's GlobalPlatform card (issue 16 item 1). */
static int
sim_card(struct pg_gp_card **out, uint32_t serial)
{
	static const char *const applets[] = {"test"};
	const struct pg_gp_config cfg = {.serial = serial, .applets = applets, .n_applets = 1};

	return pg_gp_card_new(out, &cfg);
}

static int
start_socket_sims(struct demo *d)
{
	int rc;

	for (int i = 0; i < PG_LINK_COUNT; i++) {
		const struct pg_link_ops *ops = pg_link_drivers[i];
		struct sim *s = &d->sims[d->nsims];

		if (!ops || !ops->card_open || !ops->host_open)
			continue;
		s->ops = ops;
		PG_TRY_GOTO(sim_card(&s->card, 0x50470000u + (uint32_t)i), out, "demo", "card");
		d->nsims++;
		snprintf(s->addr, sizeof(s->addr), "unix:%s/%s.sock", d->dir, ops->name);
		rc = pg_stream_listen(s->addr);
		if (rc < 0)
			return rc;
		s->listen_fd = rc;
		if (pthread_create(&s->thread, NULL, socket_sim_main, s) != 0) {
			close(s->listen_fd);
			return pg_error(PG_ESYS, "demo", "cannot start a thread");
		}
		s->started = 1;
		PG_TRY_GOTO(pg_conv_attach_addr(d->conv, ops->name, ops, s->addr, NULL), out,
			    "demo", "attach");
		d->nifs++;
	}
	return 0;
out:
	return rc;
}

/*
 * PC/SC: a card plugged into pcscd through vpcd, reached with libpcsclite;
 * `want` 1 requires it, 0 skips it, -1 takes it when pcscd has the reader.
 */
static int
start_pcsc_sim(struct demo *d, int want, const char *vpcd_addr, const char *reader)
{
	struct reader_hit hit = {.want = reader};
	struct sim *s = &d->sims[d->nsims];
	int rc, n;

	if (want == 0 || !pg_link_find("pcsc") || !pg_link_find("vpcd"))
		return 0;
	n = pg_pcsc_list_readers(reader_cb, &hit);
	if (n < 0 || !hit.found) {
		if (want == 1)
			return pg_error(PG_ENOENT, "demo",
					"PC/SC reader '%s' not found (is pcscd running with vpcd?)",
					reader);
		fprintf(d->out,
			"note     pcsc/vpcd not in this run: no '%s' reader in pcscd "
			"(start pcscd with scripts/se-pcscd.sh start)\n",
			reader);
		return 0;
	}
	s->ops = pg_link_find("vpcd");
	s->vpcd_addr = vpcd_addr;
	s->listen_fd = -1;
	PG_TRY_GOTO(sim_card(&s->card, 0x50470099u), out, "demo", "card");
	d->nsims++;
	if (pthread_create(&s->thread, NULL, vpcd_sim_main, s) != 0)
		return pg_error(PG_ESYS, "demo", "cannot start a thread");
	s->started = 1;
	PG_TRY_GOTO(attach_pcsc(d->conv, reader), out, "demo", "attach pcsc");
	d->nifs++;
	return 0;
out:
	return rc;
}

/* Opens a channel between interfaces i and j (by index); returns its id. */
static int
open_between(struct pg_conv *conv, int i, int j)
{
	struct pg_conv_iface_info a, b;

	pg_conv_iface(conv, i, &a);
	pg_conv_iface(conv, j, &b);
	return pg_conv_open(conv, a.name, b.name);
}

/*
 * A ring of channels: each SE talks to the next one, then the last to the
 * first. The last channel stays open; its id goes to *last.
 */
static int
run_ring(struct demo *d, int *last)
{
	int rc, ch = 0;

	for (int i = 0; i < d->nifs; i++) {
		ch = open_between(d->conv, i, (i + 1) % d->nifs);
		if (ch < 0)
			return ch;
		PG_TRY_GOTO(converse(d->conv, ch, PG_CONV_A), out, "demo", "A->B");
		PG_TRY_GOTO(converse(d->conv, ch, PG_CONV_B), out, "demo", "B->A");
		if (i + 1 < d->nifs)
			PG_TRY_GOTO(pg_conv_close(d->conv, ch), out, "demo", "close");
	}
	*last = ch;
	return 0;
out:
	return rc;
}

/* Removal: the open channel's first SE is removed mid-channel; the channel must refuse. */
static int
remove_mid_channel(struct demo *d, int ch)
{
	struct pg_conv_iface_info info;
	int rc;

	pg_conv_iface(d->conv, d->nifs - 1, &info);
	fprintf(d->out, "== removing SE '%s' while channel %d is open ==\n", info.name, ch);
	PG_TRY_GOTO(pg_conv_detach(d->conv, info.name), out, "demo", "detach");
	rc = demo_send(d->conv, ch, PG_CONV_B, "8012000008");
	fprintf(d->out, "  ch %-3d now refuses commands: %s\n", ch,
		rc < 0 ? pg_last_error() : "(unexpectedly still open)");
	if (rc >= 0)
		return pg_error(PG_ESTATE, "demo", "channel survived its SE's removal");
	return 0;
out:
	return rc;
}

/* The SEs left (three or more were attached) still talk to each other. */
static int
others_go_on(struct demo *d)
{
	int rc, ch;

	if (d->nifs < 3)
		return 0;
	fprintf(d->out, "== the other SEs go on ==\n");
	ch = open_between(d->conv, 0, 1);
	if (ch < 0)
		return ch;
	PG_TRY_GOTO(demo_send(d->conv, ch, PG_CONV_A, "00A404000AF0706179677561726401 00"), out,
		    "demo", "select");
	PG_TRY_GOTO(demo_send(d->conv, ch, PG_CONV_A, "8012000008"), out, "demo", "counter");
	PG_TRY_GOTO(pg_conv_close(d->conv, ch), out, "demo", "close");
	return 0;
out:
	return rc;
}

static void
print_summary(struct demo *d)
{
	struct pg_conv_iface_info info;

	fprintf(d->out, "== summary ==\n");
	for (int i = 0; pg_conv_iface(d->conv, i, &info) == 0; i++)
		fprintf(d->out, "  %-8s %-5s %6llu APDUs  %s\n", info.name, info.link,
			(unsigned long long)info.apdus,
			info.state == 0		   ? "live"
			: info.state == PG_ENOCARD ? "removed"
						   : "failed");
}

/* Stops the simulated SEs (after the converter closed its host links) and removes their sockets. */
static void
stop_sims(struct demo *d)
{
	for (int i = 0; i < d->nsims; i++) {
		struct sim *s = &d->sims[i];

		if (s->started) {
			/* Wakes a sim still waiting in accept() (its host never came). */
			if (s->listen_fd > 0)
				shutdown(s->listen_fd, SHUT_RDWR);
			__atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
			pthread_join(s->thread, NULL);
		}
		if (s->listen_fd > 0)
			close(s->listen_fd);
		if (s->addr[0])
			unlink(s->addr + 5);
		pg_gp_card_free(s->card);
	}
}

int
pg_se_demo(FILE *out, const struct pg_se_demo_opts *o)
{
	struct demo d = {.out = out, .dir = "/tmp/pg-se-demo-XXXXXX"};
	const char *vpcd_addr = o && o->vpcd_addr ? o->vpcd_addr : "tcp:127.0.0.1:35963";
	const char *reader = o && o->reader ? o->reader : "Virtual PCD 00 00";
	int rc, ch = 0;

	if (!mkdtemp(d.dir))
		return pg_error(PG_ESYS, "demo", "cannot create a temporary directory");
	PG_TRY_GOTO(pg_conv_new(&d.conv), out, "demo", "converter");
	pg_conv_set_trace(d.conv, pg_conv_trace_file, out);
	fprintf(out, "== payguard SE demo: one simulated SE per link type, joined by the "
		     "converter ==\n");
	rc = start_socket_sims(&d);
	if (rc == 0)
		rc = start_pcsc_sim(&d, o ? o->pcsc : -1, vpcd_addr, reader);
	if (rc == 0 && d.nifs < 2)
		rc =
		    pg_error(PG_ENOENT, "demo", "only %d link type(s) available; need two", d.nifs);
	if (rc == 0)
		rc = run_ring(&d, &ch);
	if (rc == 0)
		rc = remove_mid_channel(&d, ch);
	if (rc == 0)
		rc = others_go_on(&d);
	if (rc == 0)
		print_summary(&d);
out:
	pg_conv_free(d.conv); /* closes every host link: the socket sims see EOF and return */
	stop_sims(&d);
	rmdir(d.dir);
	return rc;
}
