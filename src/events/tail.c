/*
 * `payguard events tail` (issue 15): a JetStream consumer on the event
 * stream for operators and scripts. Ephemeral by default (new events, or the
 * whole stream with `all`); with a durable name the server remembers what
 * was acknowledged, so a restarted tail goes on where it stopped.
 */
#include "payguard/events.h"

#include "events_int.h"

#include "payguard/clock.h"
#include "payguard/error.h"
#include "payguard/log.h"

#include <string.h>

int
pg_events_tail(const struct pg_events_tail_cfg *cfg,
	       int (*fn)(const char *json, size_t len, void *arg), void *arg,
	       const volatile int *stop)
{
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	natsSubscription *sub = NULL;
	jsSubOptions so;
	jsErrCode jerr = 0;
	natsStatus s;
	long got = 0;
	uint64_t last = pg_mono_ms();
	int rc = 0;

	rc = pgi_events_nats_connect(cfg->nats, &nc, &js);
	if (rc < 0)
		goto out;
	jsSubOptions_Init(&so);
	so.Stream = cfg->stream ? cfg->stream : "PAYGUARD";
	so.Config.Durable = cfg->durable;
	so.Config.DeliverPolicy = cfg->all || cfg->durable ? js_DeliverAll : js_DeliverNew;
	so.Config.AckPolicy = js_AckExplicit;
	s = js_SubscribeSync(&sub, js, cfg->subject ? cfg->subject : "payguard.>", NULL, &so,
			     &jerr);
	if (s != NATS_OK) {
		rc = pgi_events_nats_fail(s, jerr,
					  jerr == JSStreamNotFoundErr
					      ? "subscribe (no event stream yet: has a relay run?)"
					      : "subscribe to the event stream");
		goto out;
	}
	while (!(stop && *stop) && (cfg->count <= 0 || got < cfg->count)) {
		natsMsg *m = NULL;

		s = natsSubscription_NextMsg(&m, sub, 200);
		if (s == NATS_TIMEOUT) {
			if (cfg->timeout_ms > 0 && pg_mono_ms() - last >= (uint64_t)cfg->timeout_ms)
				break;
			continue;
		}
		if (s != NATS_OK) {
			rc = pgi_events_nats_fail(s, 0, "read an event");
			break;
		}
		last = pg_mono_ms();
		got++;
		rc = fn(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), arg);
		natsMsg_Ack(m, NULL);
		natsMsg_Destroy(m);
		if (rc != 0)
			break;
	}
	if (rc > 0)
		rc = 0;
out:
	if (sub && !cfg->durable)
		natsSubscription_Unsubscribe(sub);
	natsSubscription_Destroy(sub);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	return rc < 0 ? rc : (int)(got > 0x7fffffff ? 0x7fffffff : got);
}
