/* `payguard pos ...` verbs: thin wrappers over the pos library (seed 4). */
#include "cli.h"
#include "payguard/json.h"
#include "payguard/clock.h"
#include "payguard/error.h"
#include "payguard/fs.h"
#include "payguard/hex.h"
#include "payguard/log.h"
#include "payguard/pos.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Options most verbs share; each verb lists the ones it takes in its usage. */
struct common {
	const char *db, *dialect_name, *framing_name;
	struct pg_iso_dialect dialect;
	struct pg_iso_framing framing;
	struct pg_pos_policy pol;
	int json;
};

/* Every option of every pos verb; each verb's table lists the ones it takes. */
struct posopt {
	const char *db, *dialect, *framing, *decline, *report;
	int json, alert_n, window_s, mcc_strikes, cell_field;
	const char *file, *out, *host, *port_file, *sync, *log, *state, *note;
	int hex, dry, summary, keep, port, max_msg, idle_ms, frame_ms, max_conns, commit_us;
	int timeout_ms, conns, inflight, duration_ms, stan_base, limit, commit_timeout_ms,
	    keep_days;
	const char *intake, *nats, *node;
	int no_sink, stream_max_mb, stream_max_age_s;
};

/* The options every pos verb takes: the store, the codec and the policy. */
#define POS_COMMON                                                                                 \
	PG_STR(struct posopt, db, "db", "PATH",                                                    \
	       "the store (default: $PAYGUARD_STORE, else the data directory's)"),                 \
	    PG_STR(struct posopt, dialect, "dialect", "D",                                         \
		   "binary (default), ascii, iso93, iso93-binary (ISO 8583:1993), jpos-iso87b, "   \
		   "npm-iso8583, or a field-definition file"),                                     \
	    PG_STR(struct posopt, framing, "framing", "F",                                         \
		   "bin2, bcd2, ascii4, bin4 or none, each optionally +tpdu"),                     \
	    PG_FLAG(struct posopt, json, "json", "print JSON"),                                    \
	    PG_INT(struct posopt, alert_n, "alert-n", "N", 1, 32,                                  \
		   "moved transactions in the window that raise an alert (3)"),                    \
	    PG_INT(struct posopt, window_s, "window-s", "S", 1, 86400 * 365,                       \
		   "the window in seconds (3600)"),                                                \
	    PG_STR(struct posopt, decline, "decline", "CODE",                                      \
		   "decline moved terminals with response CODE (default: approve and flag)"),      \
	    PG_INT(struct posopt, cell_field, "cell-field", "N", 2, 128,                           \
		   "the field carrying the cell TLV (62)"),                                        \
	    PG_INT(struct posopt, mcc_strikes, "mcc-strikes", "N", 1, 32,                          \
		   "what one country mismatch counts (default: --alert-n)"),                       \
	    PG_STR(                                                                                \
		struct posopt, report, "report", "LIST",                                           \
		"decisions stored as events too, e.g. unregistered,undetermined (default none; "   \
		"docs/events.md)")

/* Defaults of every option (framing: the verb's). */
static void
posopt_init(struct posopt *o, const char *framing)
{
	struct pg_pos_policy pol;

	pg_pos_policy_default(&pol);
	memset(o, 0, sizeof(*o));
	o->dialect = "binary";
	o->framing = framing;
	o->alert_n = (int)pol.alert_n;
	o->window_s = (int)(pol.window_ms / 1000);
	o->mcc_strikes = (int)pol.mcc_strikes;
	o->cell_field = pol.cell_field;
}

/* Each verb's options (its --help is generated from these). */
static const struct pg_opt common_opts[] = {POS_COMMON, {0}};
static const struct pg_opt decode_opts[] = {
    POS_COMMON,
    PG_STR(struct posopt, file, "file", "FILE",
	   "read the (framed) message from FILE ('-' for stdin)"),
    {0}};
static const struct pg_opt encode_opts[] = {
    POS_COMMON,
    PG_STR(struct posopt, out, "out", "FILE", "write the bytes to FILE instead of printing hex"),
    {0}};
static const struct pg_opt check_opts[] = {
    POS_COMMON,
    PG_FLAG(struct posopt, hex, "hex", "FILE holds one hex message per line (no framing)"),
    PG_FLAG(struct posopt, dry, "dry-run", "record nothing"),
    PG_FLAG(struct posopt, summary, "summary", "print only the totals"),
    {0}};
static const struct pg_opt serve_opts[] = {
    POS_COMMON,
    PG_STR(struct posopt, host, "host", "ADDR", "IPv4 address to listen on (127.0.0.1)"),
    PG_INT(struct posopt, port, "port", "N", 0, 65535, "TCP port (8583; 0 = any free port)"),
    PG_STR(struct posopt, port_file, "port-file", "FILE", "write the bound port to FILE"),
    PG_INT(struct posopt, max_msg, "max-msg", "N", 64, PG_ISO_MAX_MSG,
	   "largest message accepted (8192)"),
    PG_INT(struct posopt, idle_ms, "idle-ms", "N", 100, 86400000, "cut idle connections (60000)"),
    PG_INT(struct posopt, frame_ms, "frame-ms", "N", 100, 600000,
	   "cut connections whose frame takes longer (5000)"),
    PG_INT(struct posopt, max_conns, "max-conns", "N", 1, 100000, "connection limit (4096)"),
    PG_STR(struct posopt, sync, "sync", "MODE",
	   "normal (survives a process kill) or full (power loss)"),
    PG_INT(struct posopt, commit_us, "commit-us", "N", 0, 100000,
	   "how long a group commit may stay open (500)"),
    PG_INT(struct posopt, commit_timeout_ms, "commit-timeout-ms", "N", 50, 600000,
	   "PostgreSQL, or the stream with --intake jetstream: answer 96 when not durable in N ms "
	   "(2000)"),
    PG_STR(struct posopt, intake, "intake", "MODE",
	   "store (default: write to the store) or jetstream (publish to the stream, sinks store)"),
    PG_STR(struct posopt, nats, "nats", "URLS", "JetStream intake: comma-separated NATS URLs"),
    PG_STR(struct posopt, node, "node", "NAME",
	   "JetStream intake: this node's subject token (the host name)"),
    PG_FLAG(struct posopt, no_sink, "no-sink", "JetStream intake: publish only, run no sink"),
    PG_INT(struct posopt, stream_max_mb, "stream-max-mb", "N", 1, 1048576,
	   "JetStream intake: the stream's size limit when it creates it (1024)"),
    PG_INT(struct posopt, stream_max_age_s, "stream-max-age-s", "S", 0, 86400 * 365,
	   "JetStream intake: the stream's age limit when it creates it (0: none)"),
    {0}};
static const struct pg_opt send_opts[] = {
    POS_COMMON,
    PG_STR(struct posopt, host, "host", "ADDR", "the server (127.0.0.1)"),
    PG_INT(struct posopt, port, "port", "N", 1, 65535, "its TCP port (8583)"),
    PG_INT(struct posopt, timeout_ms, "timeout-ms", "N", 1, 600000,
	   "how long to wait for an answer (5000)"),
    {0}};
static const struct pg_opt load_opts[] = {
    POS_COMMON,
    PG_STR(struct posopt, host, "host", "ADDR", "the server (127.0.0.1)"),
    PG_INT(struct posopt, port, "port", "N", 1, 65535, "its TCP port (8583)"),
    PG_INT(struct posopt, conns, "conns", "N", 1, 10000, "connections (64)"),
    PG_INT(struct posopt, inflight, "inflight", "N", 1, 4096,
	   "requests outstanding on each connection, answers matched by STAN (1)"),
    PG_INT(struct posopt, duration_ms, "duration-ms", "N", 1, 3600000, "how long to send (3000)"),
    PG_STR(struct posopt, log, "log", "FILE", "write tid|stan|rc|decision for every answer"),
    PG_INT(struct posopt, stan_base, "stan-base", "N", 0, 999999, "first STAN (0)"),
    {0}};
static const struct pg_opt alerts_opts[] = {
    POS_COMMON,
    PG_STR(struct posopt, state, "state", "STATE", "open, acknowledged or closed"),
    PG_INT(struct posopt, limit, "limit", "N", 1, 1000000, "at most N alerts (1000)"),
    {0}};
static const struct pg_opt note_opts[] = {
    POS_COMMON, PG_STR(struct posopt, note, "note", "TEXT", "a note kept with the alert"), {0}};
static const struct pg_opt retention_opts[] = {POS_COMMON,
					       PG_INT(struct posopt, keep_days, "keep-days", "N", 1,
						      100000,
						      "days of transactions to keep (required)"),
					       {0}};
static const struct pg_opt demo_opts[] = {
    POS_COMMON,
    PG_FLAG(struct posopt, keep, "keep",
	    "use a fresh pos-demo.db in the data directory and keep it"),
    {0}};

/* Parses a verb's options (its table) into o, then the common ones into c. */
static int
parse_opts(int argc, char **argv, const struct pg_opt *tab, struct posopt *o, struct common *c,
	   int *first)
{
	int ex = pg_cli_parse(argc, argv, tab, o, first);

	if (ex)
		return ex;
	memset(c, 0, sizeof(*c));
	pg_pos_policy_default(&c->pol);
	c->db = o->db;
	c->dialect_name = o->dialect;
	c->framing_name = o->framing;
	c->json = o->json;
	c->pol.alert_n = (unsigned)o->alert_n;
	c->pol.window_ms = (int64_t)o->window_s * 1000;
	c->pol.mcc_strikes = (unsigned)o->mcc_strikes;
	c->pol.cell_field = o->cell_field;
	if (pg_pos_report_parse(o->report, &c->pol.report) < 0)
		return pg_cli_usage(argv[0], "--report: %s", pg_last_error());
	if (o->decline) {
		if (strlen(o->decline) != 2 ||
		    strspn(o->decline, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") != 2)
			return pg_cli_usage(argv[0], "--decline takes a 2-character response code");
		c->pol.decline_moved = 1;
		memcpy(c->pol.decline_code, o->decline, 3);
	}
	return 0;
}

static int
parse_long(const char *argv0, const char *what, const char *s, long lo, long hi, long *out)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (!*s || *end || v < lo || v > hi)
		return pg_cli_usage(argv0, "%s '%s' must be %ld..%ld", what, s, lo, hi);
	*out = v;
	return 0;
}

static int
common_finish(struct common *c, const char *argv0)
{
	int rc = pg_iso_dialect_load(&c->dialect, c->dialect_name);

	if (rc < 0)
		return pg_cli_fail(rc, "dialect '%s'", c->dialect_name);
	rc = pg_iso_framing_parse(&c->framing, c->framing_name);
	if (rc < 0)
		return pg_cli_usage(argv0, "%s", pg_last_error());
	return 0;
}

static int
open_store(struct pg_store *st, const char *db)
{
	int rc = pg_store_open_default(st, db);

	if (rc < 0)
		return rc;
	return pg_pos_migrate(st);
}

static void
fmt_double(char *out, size_t n, double v, int prec)
{
	snprintf(out, n, "%.*f", prec, v);
}

/* ---- cells / merchants import ---- */

static int
print_import(const char *what, const char *path, const struct pg_import_stats *s, int json)
{
	if (json) {
		json_t *bad = json_array();

		for (uint64_t i = 0; i < s->bad && i < 5; i++)
			json_array_append_new(bad, json_pack("{s:I,s:s}", "line",
							     (json_int_t)s->first_bad_line[i],
							     "reason", s->first_bad_reason[i]));
		return pg_cli_print_json(json_pack("{s:s,s:s,s:I,s:I,s:I,s:o}", "kind", what,
						   "file", path, "rows", (json_int_t)s->rows,
						   "imported", (json_int_t)s->imported, "bad",
						   (json_int_t)s->bad, "first_bad", bad));
	}
	printf("%s: %llu rows, %llu imported, %llu bad\n", path, (unsigned long long)s->rows,
	       (unsigned long long)s->imported, (unsigned long long)s->bad);
	for (uint64_t i = 0; i < s->bad && i < 5; i++)
		printf("  line %llu: %s\n", (unsigned long long)s->first_bad_line[i],
		       s->first_bad_reason[i]);
	return PG_EXIT_OK;
}

static int
cmd_import(int argc, char **argv, int cells)
{
	struct posopt o;
	struct common c;
	struct pg_store st = {0};
	struct pg_import_stats s;
	int rc, first;

	posopt_init(&o, "none");
	if ((rc = parse_opts(argc, argv, common_opts, &o, &c, &first)))
		return rc;
	if (argc - first != 2 || strcmp(argv[first], "import") != 0)
		return pg_cli_usage(argv[0], "expected: import FILE");
	rc = open_store(&st, c.db);
	if (rc < 0)
		return pg_cli_fail(rc, "store");
	rc = cells ? pg_cells_import(&st, argv[first + 1], &s)
		   : pg_merchants_import(&st, argv[first + 1], &s);
	pg_store_close(&st);
	if (rc < 0)
		return pg_cli_fail(rc, "import '%s'", argv[first + 1]);
	return print_import(cells ? "cells" : "merchants", argv[first + 1], &s, c.json);
}

static int
cmd_pos_cells(int argc, char **argv)
{
	return cmd_import(argc, argv, 1);
}

static int
cmd_pos_merchants(int argc, char **argv)
{
	return cmd_import(argc, argv, 0);
}

/* ---- decode / encode ---- */

static int
read_input(const char *argv0, int argc, char **argv, const char *file, uint8_t **data, size_t *len)
{
	int rc;

	if (file) {
		rc =
		    pg_read_file(strcmp(file, "-") == 0 ? "/dev/stdin" : file, 16 << 20, data, len);
		return rc < 0 ? pg_cli_fail(rc, "read '%s'", file) : 0;
	}
	if (argc != 1)
		return pg_cli_usage(argv0, "give the message as one HEX argument or --file FILE");
	*data = malloc(strlen(argv[0]) / 2 + 1);
	if (!*data)
		return pg_cli_fail(PG_ENOMEM, "hex");
	rc = pg_hex_decode(*data, strlen(argv[0]) / 2 + 1, argv[0]);
	if (rc < 0) {
		free(*data);
		return pg_cli_fail(PG_EFORMAT, "message hex");
	}
	*len = (size_t)rc;
	return 0;
}

static int
cmd_pos_decode(int argc, char **argv)
{
	struct posopt po;
	struct common c;
	uint8_t *data = NULL;
	size_t len = 0, hdr = 0, body = 0;
	struct pg_iso_msg *m = NULL;
	int rc, ex = PG_EXIT_OK, first;

	posopt_init(&po, "none");
	if ((rc = parse_opts(argc, argv, decode_opts, &po, &c, &first)))
		return rc;
	rc = common_finish(&c, argv[0]);
	if (rc)
		return rc;
	rc = read_input(argv[0], argc - first, argv + first, po.file, &data, &len);
	if (rc)
		return rc;
	m = malloc(sizeof(*m));
	if (!m) {
		ex = pg_cli_fail(PG_ENOMEM, "decode");
		goto out;
	}
	rc = pg_iso_frame_find(&c.framing, data, len, 16 << 20, &hdr, &body);
	if (rc == 0)
		rc = pg_error(PG_ETRUNC, "framing", "frame truncated: have %zu bytes", len);
	if (rc > 0 && hdr + body != len)
		rc = pg_error(PG_EFORMAT, "framing", "%zu bytes after the frame", len - hdr - body);
	if (rc > 0)
		rc = pg_iso_unpack(&c.dialect, data + hdr, body, m);
	if (rc < 0) {
		ex = pg_cli_fail(rc, "decode");
		goto out;
	}
	if (c.json) {
		json_t *o = pg_pos_msg_to_json(&c.dialect, m, c.pol.cell_field);

		if (o && c.framing.tpdu) {
			char t[11];

			pg_hex_encode_upper(t, data + hdr - 5, 5, 0);
			json_object_set_new(o, "tpdu", json_string(t));
		}
		ex = pg_cli_print_json(o);
	} else {
		static const char *const hd[] = {"field", "name", "type", "value"};
		struct pg_table *t = pg_table_new(4, hd);
		char *val = malloc(2 * PG_ISO_ARENA + 1);
		char num[8], typ[16];
		const char *row[4];
		json_t *cell;

		if (!t || !val) {
			free(val);
			pg_table_free(t);
			ex = pg_cli_fail(PG_ENOMEM, "decode");
			goto out;
		}
		row[0] = "0";
		row[1] = "Message type indicator";
		row[2] = "n 4";
		row[3] = m->mti;
		pg_table_add(t, row);
		for (int f = 2; f <= 128; f++) {
			const struct pg_iso_fdef *fd = &c.dialect.f[f];

			if (!pg_iso_has(m, f))
				continue;
			pg_iso_get_str(&c.dialect, m, f, val, 2 * PG_ISO_ARENA + 1);
			snprintf(num, sizeof(num), "%d", f);
			snprintf(typ, sizeof(typ), "%s %s%u", pg_iso_type_name(fd->type),
				 fd->lenkind == PG_ISO_FIXED ? ""
				 : fd->lenkind == PG_ISO_LL  ? ".."
							     : "...",
				 fd->max);
			row[0] = num;
			row[1] = fd->name;
			row[2] = typ;
			row[3] = val;
			pg_table_add(t, row);
		}
		pg_table_print(t);
		pg_table_free(t);
		free(val);
		cell = pg_pos_msg_to_json(&c.dialect, m, c.pol.cell_field);
		if (json_object_get(cell, "cell")) {
			char *s = pg_json_dumps(json_object_get(cell, "cell"), JSON_COMPACT);

			printf("cell information (field %d): %s\n", c.pol.cell_field, s ? s : "");
			free(s);
		}
		json_decref(cell);
	}
out:
	free(m);
	free(data);
	return ex;
}

static int
load_json_file(const char *path, json_t **out)
{
	json_error_t err;

	*out = strcmp(path, "-") == 0 ? json_loadf(stdin, 0, &err) : json_load_file(path, 0, &err);
	if (!*out)
		return pg_error(PG_EFORMAT, "json", "'%s' line %d: %s", path, err.line, err.text);
	return 0;
}

static int
cmd_pos_encode(int argc, char **argv)
{
	struct posopt o;
	struct common c;
	const char *out;
	json_t *j = NULL;
	struct pg_iso_msg *m = NULL;
	struct pg_buf body = PG_BUF_INIT(PG_ISO_ARENA), frame = PG_BUF_INIT(PG_ISO_ARENA + 16);
	int rc, ex = PG_EXIT_OK, first;

	posopt_init(&o, "none");
	if ((rc = parse_opts(argc, argv, encode_opts, &o, &c, &first)))
		return rc;
	out = o.out;
	m = malloc(sizeof(*m));
	if (!m)
		return pg_cli_fail(PG_ENOMEM, "encode");
	ex = common_finish(&c, argv[0]);
	if (ex)
		goto done;
	if (argc - first != 1) {
		ex = pg_cli_usage(argv[0], "expected one JSON file (or -)");
		goto done;
	}
	rc = load_json_file(argv[first], &j);
	if (rc == 0)
		rc = pg_pos_msg_from_json(&c.dialect, j, c.pol.cell_field, m);
	if (rc == 0)
		rc = pg_iso_pack(&c.dialect, m, &body);
	if (rc == 0)
		rc = pg_iso_frame_wrap(&c.framing, NULL, body.data, body.len, &frame);
	if (rc == 0 && out)
		rc = pg_write_file_atomic(out, frame.data, frame.len, 0644);
	if (rc < 0) {
		ex = pg_cli_fail(rc, "encode");
		goto done;
	}
	if (!out) {
		char *hex = malloc(2 * frame.len + 1);

		if (!hex) {
			ex = pg_cli_fail(PG_ENOMEM, "encode");
			goto done;
		}
		pg_hex_encode_upper(hex, frame.data, frame.len, 0);
		if (c.json)
			ex = pg_cli_print_json(
			    json_pack("{s:s,s:I}", "hex", hex, "length", (json_int_t)frame.len));
		else
			printf("%s\n", hex);
		free(hex);
	}
done:
	json_decref(j);
	pg_buf_release(&body);
	pg_buf_release(&frame);
	free(m);
	return ex;
}

/* ---- check (batch: src/pos/check.c) ---- */

struct check_out {
	const struct pg_iso_dialect *dialect;
	struct pg_table *t; /* the text table, or NULL */
	json_t *arr;	    /* the JSON results, or NULL */
};

/* One message of `pos check`: a row of the table or of the JSON results. */
static void
check_row(void *arg, uint64_t n, const struct pg_iso_msg *m, const struct pg_pos_result *res)
{
	struct check_out *o = arg;
	char tid[16] = "", stan[8] = "", num[24], dist[24] = "-", acc[24] = "-";

	if (!m) {
		fprintf(stderr, "payguard: message %llu rejected: %s\n", (unsigned long long)n,
			pg_last_error());
		return;
	}
	if (!o->arr && !o->t)
		return;
	pg_iso_get_str(o->dialect, m, 41, tid, sizeof(tid));
	pg_iso_get_str(o->dialect, m, 11, stan, sizeof(stan));
	if (res->est.confidence) {
		fmt_double(dist, sizeof(dist), res->distance_m, 0);
		fmt_double(acc, sizeof(acc), res->est.acc_m, 0);
	}
	if (o->arr) {
		json_array_append_new(
		    o->arr,
		    json_pack("{s:I,s:s,s:s,s:s,s:s,s:f,s:f,s:s,s:s,s:b}", "n", (json_int_t)n,
			      "terminal", tid, "stan", stan, "decision",
			      pg_decision_name(res->decision), "reason",
			      pg_reason_name(res->reason), "distance_m", res->distance_m, "acc_m",
			      res->est.acc_m, "confidence", pg_confidence_name(res->est.confidence),
			      "rc", res->rc, "alert", res->alert));
		return;
	}
	snprintf(num, sizeof(num), "%llu", (unsigned long long)n);
	const char *row[10] = {num,
			       tid,
			       stan,
			       pg_decision_name(res->decision),
			       pg_reason_name(res->reason),
			       dist,
			       acc,
			       pg_confidence_name(res->est.confidence),
			       res->rc,
			       res->alert ? "yes" : ""};
	pg_table_add(o->t, row);
}

/* The batch's totals: JSON (with the results) or the table and a line. */
static int
check_report(struct check_out *o, const struct pg_pos_check_stats *s, int dry)
{
	const uint64_t *d = s->decisions;
	int ex = PG_EXIT_OK;

	if (o->arr) {
		ex = pg_cli_print_json(json_pack(
		    "{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o}", "messages", (json_int_t)s->messages,
		    "rejected", (json_int_t)s->rejected, "in_place", (json_int_t)d[PG_DEC_IN_PLACE],
		    "moved", (json_int_t)d[PG_DEC_MOVED], "undetermined",
		    (json_int_t)d[PG_DEC_UNDETERMINED], "unregistered",
		    (json_int_t)d[PG_DEC_UNREGISTERED], "format_error",
		    (json_int_t)d[PG_DEC_FORMAT], "alerts", (json_int_t)s->alerts, "results",
		    o->arr));
		o->arr = NULL;
	} else {
		if (o->t)
			pg_table_print(o->t);
		printf("%llu messages (%llu rejected): %llu in place, %llu moved, %llu "
		       "undetermined, %llu unregistered, %llu format errors; %llu with an "
		       "alert; %.0f checks/s%s\n",
		       (unsigned long long)s->messages, (unsigned long long)s->rejected,
		       (unsigned long long)d[0], (unsigned long long)d[1], (unsigned long long)d[2],
		       (unsigned long long)d[3], (unsigned long long)d[4],
		       (unsigned long long)s->alerts,
		       s->seconds > 0 ? (double)s->messages / s->seconds : 0,
		       dry ? " (dry run)" : "");
	}
	if (s->rejected && ex == PG_EXIT_OK)
		ex = PG_EXIT_INPUT;
	return ex;
}

/* Runs the batch of file `path` through a fresh engine over the store. */
static int
check_file(const struct common *c, const char *path, int hex, int dry, struct check_out *o)
{
	struct pg_pos_check_stats s;
	struct pg_pos_check_input b = {.dialect = &c->dialect,
				       .framing = &c->framing,
				       .hex = hex,
				       .each = check_row,
				       .arg = o};
	int rc = pg_pos_check_file(c->db, &c->pol, path, dry, &b, &s);

	if (rc == 0)
		return check_report(o, &s, dry);
	switch (s.stage) {
	case PG_POS_CHECK_READ:
		return pg_cli_fail(rc, "read '%s'", path);
	case PG_POS_CHECK_STORE:
		return pg_cli_fail(rc, "store");
	case PG_POS_CHECK_ENGINE:
		return pg_cli_fail(rc, "engine");
	case PG_POS_CHECK_FRAME:
		return pg_cli_fail(rc, "message %llu at offset %zu",
				   (unsigned long long)s.messages + 1, s.offset);
	case PG_POS_CHECK_COMMIT:
		return pg_cli_fail(rc, "commit");
	default:
		return pg_cli_fail(rc, "check");
	}
}

static int
cmd_pos_check(int argc, char **argv)
{
	static const char *const hd[] = {"#",	   "terminal", "stan",	     "decision", "reason",
					 "dist_m", "acc_m",    "confidence", "rc",	 "alert"};
	struct posopt po;
	struct common c;
	struct check_out o = {0};
	int ex, first;

	posopt_init(&po, "bin2");
	if ((ex = parse_opts(argc, argv, check_opts, &po, &c, &first)))
		return ex;
	ex = common_finish(&c, argv[0]);
	if (ex)
		return ex;
	if (argc - first != 1)
		return pg_cli_usage(argv[0], "expected one FILE of messages");
	o.dialect = &c.dialect;
	if (c.json)
		o.arr = json_array();
	else if (!po.summary)
		o.t = pg_table_new(10, hd);
	ex = check_file(&c, argv[first], po.hex, po.dry, &o);
	json_decref(o.arr);
	pg_table_free(o.t);
	return ex;
}

/* ---- serve ---- */

static volatile int serve_stop;

static void
announce_listen(const struct pg_pos_server_cfg *cfg)
{
	fprintf(stderr, "payguard: pos server on %s:%d (%s)\n", cfg->host, cfg->bound_port,
		(const char *)cfg->on_listen_arg);
}

static int
cmd_pos_serve(int argc, char **argv)
{
	struct posopt o;
	struct common c;
	struct pg_pos_server_cfg cfg = {0};
	struct pg_store st = {0};
	struct pg_pos_engine *e = NULL;
	const char *sync;
	char what[96];
	int rc, ex, first;

	posopt_init(&o, "bin2");
	o.host = "127.0.0.1";
	o.port = 8583;
	o.commit_us = 500;
	o.sync = "normal";
	o.intake = "store";
	if ((ex = parse_opts(argc, argv, serve_opts, &o, &c, &first)))
		return ex;
	if (strcmp(o.sync, "normal") && strcmp(o.sync, "full"))
		return pg_cli_usage(argv[0], "--sync is normal or full");
	if (strcmp(o.intake, "store") && strcmp(o.intake, "jetstream"))
		return pg_cli_usage(argv[0], "--intake is store or jetstream");
	if ((strcmp(o.intake, "jetstream") == 0) != (o.nats != NULL))
		return pg_cli_usage(argv[0], "--intake jetstream and --nats URLS go together");
	cfg.nats = o.nats;
	cfg.node = o.node;
	cfg.no_sink = o.no_sink;
	cfg.stream_max_mb = o.stream_max_mb;
	cfg.stream_max_age = o.stream_max_age_s;
	sync = o.sync;
	cfg.host = o.host;
	cfg.port = o.port;
	cfg.port_file = o.port_file;
	cfg.max_msg = (size_t)o.max_msg;
	cfg.idle_ms = o.idle_ms;
	cfg.frame_ms = o.frame_ms;
	cfg.max_conns = o.max_conns;
	cfg.commit_us = o.commit_us;
	cfg.commit_timeout_ms = o.commit_timeout_ms; /* 0: the server's default */
	if ((ex = common_finish(&c, argv[0])))
		return ex;
	if (c.framing.kind == PG_FRAME_NONE)
		return pg_cli_usage(argv[0], "the server needs a length-prefixed framing");
	cfg.dialect = &c.dialect;
	cfg.framing = c.framing;
	cfg.sink_store = c.db; /* the sink opens its own connection to the same store */
	rc = pg_store_open_flags(&st, c.db, SQLITE_OPEN_NOMUTEX);
	if (rc == 0)
		rc = pg_pos_migrate(&st);
	/*
	 * normal: a commit survives the server's kill, not a power loss; full:
	 * both. On PostgreSQL the same promises are synchronous_commit off / on.
	 */
	if (rc == 0 && st.db)
		rc = pg_store_exec(&st, strcmp(sync, "full") == 0 ? "PRAGMA synchronous=FULL"
								  : "PRAGMA synchronous=NORMAL");
	else if (rc == 0)
		rc = pg_store_exec(&st, strcmp(sync, "full") == 0 ? "SET synchronous_commit = on"
								  : "SET synchronous_commit = off");
	/* PostgreSQL: today's and the next days' partitions (the committer renews them) */
	if (rc == 0)
		rc = pg_pos_partitions_ensure(&st, pg_wall_ms(), 2);
	if (rc == 0)
		rc = pg_pos_engine_open(&e, &st, &c.pol);
	if (rc < 0) {
		pg_store_close(&st);
		return pg_cli_fail(rc, "start");
	}
	/* the address is printed once bound: with --port 0, the port the kernel chose */
	snprintf(what, sizeof(what), "%s, %s", c.dialect.name, c.framing_name);
	cfg.on_listen = announce_listen;
	cfg.on_listen_arg = what;
	rc = pg_pos_serve(&cfg, e);
	pg_pos_engine_free(e);
	pg_store_close(&st);
	(void)serve_stop;
	return rc < 0 ? pg_cli_fail(rc, "serve") : PG_EXIT_OK;
}

/* ---- send / load (terminal side) ---- */

static int
read_templates(const char *path, const struct common *c, struct pg_iso_msg ***out, int *n)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t l;
	int rc = 0, lineno = 0;

	*out = NULL;
	*n = 0;
	if (!f)
		return pg_error(PG_ENOENT, "pos", "cannot open '%s'", path);
	while ((l = getline(&line, &cap, f)) > 0) {
		json_error_t err;
		json_t *j;
		struct pg_iso_msg *m, **nm;

		lineno++;
		if (strspn(line, " \t\r\n") == (size_t)l)
			continue;
		j = json_loads(line, 0, &err);
		if (!j) {
			rc =
			    pg_error(PG_EFORMAT, "pos", "'%s' line %d: %s", path, lineno, err.text);
			break;
		}
		m = malloc(sizeof(*m));
		nm = realloc(*out, (size_t)(*n + 1) * sizeof(*nm));
		if (!m || !nm) {
			free(m);
			if (nm)
				*out = nm;
			json_decref(j);
			rc = PG_ENOMEM;
			break;
		}
		*out = nm;
		rc = pg_pos_msg_from_json(&c->dialect, j, c->pol.cell_field, m);
		json_decref(j);
		if (rc == 0 && !pg_iso_has(m, 11))
			rc = pg_iso_set_str(m, 11, "000000");
		if (rc < 0) {
			free(m);
			pg_error(rc, "pos", "'%s' line %d: %s", path, lineno, pg_last_error());
			break;
		}
		(*out)[(*n)++] = m;
	}
	free(line);
	if (f != stdin)
		fclose(f);
	if (rc == 0 && *n == 0)
		rc = pg_error(PG_EFORMAT, "pos", "'%s' holds no messages", path);
	return rc;
}

static void
free_templates(struct pg_iso_msg **t, int n)
{
	for (int i = 0; i < n; i++)
		free(t[i]);
	free(t);
}

static int
cmd_pos_send(int argc, char **argv)
{
	struct posopt po;
	struct common c;
	const char *host;
	long port, timeout;
	struct pg_iso_msg **tm = NULL, *resp = NULL;
	struct pg_pos_client cl = {.fd = -1};
	int n = 0, rc, ex = PG_EXIT_OK, first;

	posopt_init(&po, "bin2");
	po.host = "127.0.0.1";
	po.port = 8583;
	po.timeout_ms = 5000;
	if ((ex = parse_opts(argc, argv, send_opts, &po, &c, &first)))
		return ex;
	host = po.host;
	port = po.port;
	timeout = po.timeout_ms;
	if ((ex = common_finish(&c, argv[0])) || argc - first != 1)
		return ex ? ex : pg_cli_usage(argv[0], "expected one FILE of JSON messages");
	resp = malloc(sizeof(*resp));
	if (!resp)
		return pg_cli_fail(PG_ENOMEM, "send");
	rc = read_templates(argv[first], &c, &tm, &n);
	if (rc == 0)
		rc = pg_pos_client_connect(&cl, host, (int)port, &c.dialect, &c.framing);
	for (int i = 0; rc == 0 && i < n; i++) {
		json_t *o;
		char *s;

		rc = pg_pos_client_exchange(&cl, tm[i], resp, (int)timeout);
		if (rc < 0)
			break;
		o = pg_pos_msg_to_json(&c.dialect, resp, c.pol.cell_field);
		s = o ? pg_json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
		printf("%s\n", s ? s : "{}");
		fflush(stdout);
		free(s);
		json_decref(o);
	}
	if (rc < 0)
		ex = pg_cli_fail(rc, "send");
	pg_pos_client_close(&cl);
	free_templates(tm, n);
	free(resp);
	return ex;
}

static int
cmd_pos_load(int argc, char **argv)
{
	struct posopt o;
	struct common c;
	struct pg_pos_load_cfg cfg = {0};
	struct pg_pos_load_stats s;
	const char *log;
	long port, conns, dur, base;
	int rc, ex, first;

	posopt_init(&o, "bin2");
	o.host = "127.0.0.1";
	o.port = 8583;
	o.conns = 64;
	o.inflight = 1;
	o.duration_ms = 3000;
	if ((ex = parse_opts(argc, argv, load_opts, &o, &c, &first)))
		return ex;
	cfg.host = o.host;
	port = o.port;
	conns = o.conns;
	dur = o.duration_ms;
	base = o.stan_base;
	log = o.log;
	if ((ex = common_finish(&c, argv[0])))
		return ex;
	if (argc - first != 1)
		return pg_cli_usage(argv[0], "expected one FILE of JSON message templates");
	rc = read_templates(argv[first], &c, &cfg.templates, &cfg.ntemplates);
	if (rc < 0)
		return pg_cli_fail(rc, "templates");
	if (log) {
		cfg.log = fopen(log, "w");
		if (!cfg.log) {
			free_templates(cfg.templates, cfg.ntemplates);
			return pg_cli_fail(PG_EIO, "open '%s'", log);
		}
	}
	cfg.port = (int)port;
	cfg.dialect = &c.dialect;
	cfg.framing = c.framing;
	cfg.conns = (int)conns;
	cfg.inflight = o.inflight;
	cfg.duration_ms = (int)dur;
	cfg.stan_base = (uint64_t)base;
	rc = pg_pos_load(&cfg, &s);
	if (cfg.log)
		fclose(cfg.log);
	free_templates(cfg.templates, cfg.ntemplates);
	if (rc < 0)
		return pg_cli_fail(rc, "load");
	if (c.json)
		return pg_cli_print_json(json_pack(
		    "{s:I,s:I,s:I,s:I,s:f,s:f,s:f,s:f,s:f,s:i,s:i}", "sent", (json_int_t)s.sent,
		    "answered", (json_int_t)s.answered, "errors", (json_int_t)s.errors,
		    "mismatched", (json_int_t)s.mismatched, "seconds", s.seconds, "tps", s.tps,
		    "p50_us", s.p50_us, "p99_us", s.p99_us, "max_us", s.max_us, "conns", (int)conns,
		    "inflight", o.inflight));
	printf("%llu sent, %llu answered, %llu errors (%llu mismatched) in %.2f s: %.0f tx/s, p50 "
	       "%.0f us, p99 %.0f us (%ld connections, %d in flight on each)\n",
	       (unsigned long long)s.sent, (unsigned long long)s.answered,
	       (unsigned long long)s.errors, (unsigned long long)s.mismatched, s.seconds, s.tps,
	       s.p50_us, s.p99_us, conns, o.inflight);
	return PG_EXIT_OK;
}

/* ---- alerts ---- */

static int
cmd_pos_alerts(int argc, char **argv)
{
	struct posopt o;
	struct common c;
	const char *state;
	long limit;
	struct pg_store st = {0};
	json_t *a;
	int rc, first;

	posopt_init(&o, "none");
	o.limit = 1000;
	if ((rc = parse_opts(argc, argv, alerts_opts, &o, &c, &first)))
		return rc;
	state = o.state;
	limit = o.limit;
	if (state && strcmp(state, "open") && strcmp(state, "acknowledged") &&
	    strcmp(state, "closed"))
		return pg_cli_usage(argv[0], "--state is open, acknowledged or closed");
	rc = open_store(&st, c.db);
	if (rc < 0)
		return pg_cli_fail(rc, "store");
	a = pg_pos_alerts_list(&st, state, (int)limit);
	pg_store_close(&st);
	if (!a)
		return pg_cli_fail(PG_ESTORE, "list alerts");
	if (c.json)
		return pg_cli_print_json(a);
	{
		static const char *const hd[] = {"id",	   "terminal", "merchant",   "state",
						 "reason", "txns",     "distance_m", "opened"};
		struct pg_table *t = pg_table_new(8, hd);
		size_t i;
		json_t *x;

		json_array_foreach(a, i, x)
		{
			char id[24], txns[24], dist[32] = "-", opened[80];
			json_t *ev = json_object_get(x, "evidence");
			const char *row[8] = {id,
					      json_string_value(json_object_get(x, "terminal")),
					      json_string_value(json_object_get(x, "merchant")),
					      json_string_value(json_object_get(x, "state")),
					      json_string_value(json_object_get(x, "reason")),
					      txns,
					      dist,
					      opened};

			snprintf(id, sizeof(id), "%lld",
				 (long long)json_integer_value(json_object_get(x, "id")));
			snprintf(txns, sizeof(txns), "%lld",
				 (long long)json_integer_value(json_object_get(x, "transactions")));
			if (json_object_get(ev, "distance_m"))
				fmt_double(dist, sizeof(dist),
					   json_number_value(json_object_get(ev, "distance_m")), 0);
			pg_format_time(opened, json_integer_value(json_object_get(x, "opened_ms")));
			pg_table_add(t, row);
		}
		pg_table_print(t);
		pg_table_free(t);
		json_decref(a);
	}
	return PG_EXIT_OK;
}

static int
alert_transition(int argc, char **argv, const char *state)
{
	struct posopt o;
	struct common c;
	const char *note;
	struct pg_store st = {0};
	long id = 0;
	int rc, first;

	posopt_init(&o, "none");
	if ((rc = parse_opts(argc, argv, note_opts, &o, &c, &first)))
		return rc;
	note = o.note;
	if (argc - first != 1)
		return pg_cli_usage(argv[0], "expected one alert ID");
	if ((rc = parse_long(argv[0], "alert ID", argv[first], 1, 0x7fffffffL, &id)))
		return rc;
	rc = open_store(&st, c.db);
	if (rc == 0)
		rc = pg_pos_alert_set_state(&st, id, state, note);
	pg_store_close(&st);
	if (rc < 0)
		return pg_cli_fail(rc, "alert %ld", id);
	if (c.json)
		return pg_cli_print_json(json_pack("{s:i,s:s}", "id", (int)id, "state", state));
	printf("alert %ld %s\n", id, state);
	return PG_EXIT_OK;
}

/* Retention: days of transactions to keep; whole day partitions go on PostgreSQL. */
static int
cmd_pos_retention(int argc, char **argv)
{
	struct posopt o;
	struct common c;
	long keep;
	struct pg_store st = {0};
	int64_t days = 0, rows = 0;
	int rc, first;

	posopt_init(&o, "none");
	if ((rc = parse_opts(argc, argv, retention_opts, &o, &c, &first)))
		return rc;
	keep = o.keep_days;
	if (!keep)
		return pg_cli_usage(argv[0], "--keep-days N is required");
	rc = open_store(&st, c.db);
	if (rc < 0)
		return pg_cli_fail(rc, "store");
	rc = pg_pos_retention(&st, pg_wall_ms(), (int)keep, &days, &rows);
	pg_store_close(&st);
	if (rc < 0)
		return pg_cli_fail(rc, "retention");
	if (c.json)
		return pg_cli_print_json(json_pack("{s:I,s:I}", "dropped_partitions",
						   (json_int_t)days, "deleted_rows",
						   (json_int_t)rows));
	printf("%lld day partitions dropped, %lld rows deleted\n", (long long)days,
	       (long long)rows);
	return PG_EXIT_OK;
}

static int
cmd_pos_ack(int argc, char **argv)
{
	return alert_transition(argc, argv, "acknowledged");
}

static int
cmd_pos_close(int argc, char **argv)
{
	return alert_transition(argc, argv, "closed");
}

static int
cmd_pos_demo(int argc, char **argv)
{
	struct posopt o;
	struct common c;
	char dir[512], path[600];
	int keep, rc, first;

	posopt_init(&o, "bin2");
	if ((rc = parse_opts(argc, argv, demo_opts, &o, &c, &first)))
		return rc;
	keep = o.keep;
	if (argc != first)
		return pg_cli_usage(argv[0], "no arguments expected");
	if (keep && !c.db) {
		/* a fresh demo store in the configured data directory, kept for inspection */
		rc = pg_data_dir(dir, sizeof(dir));
		if (rc < 0)
			return pg_cli_fail(rc, "data directory");
		snprintf(path, sizeof(path), "%s/pos-demo.db-wal", dir);
		unlink(path);
		snprintf(path, sizeof(path), "%s/pos-demo.db-shm", dir);
		unlink(path);
		snprintf(path, sizeof(path), "%s/pos-demo.db", dir);
		unlink(path);
		c.db = path;
	}
	rc = pg_pos_demo(c.db, stdout);
	return rc < 0 ? pg_cli_fail(rc, "demo") : PG_EXIT_OK;
}

const struct pg_cmd pg_cli_pos[] = {
    {"cells", cmd_pos_cells, "import an OpenCellID CSV file into the cell database",
     "FILE  OpenCellID CSV (header radio,mcc,net,area,cell,...; '-' for stdin)", common_opts,
     "import FILE"},
    {"merchants", cmd_pos_merchants, "import the merchant/terminal registry (CSV)",
     "FILE  CSV terminal_id,merchant_id,lat,lon,uncertainty_m,limit_m,mcc,name", common_opts,
     "import FILE"},
    {"decode", cmd_pos_decode, "print every field of an ISO 8583 message",
     "--json prints the npm iso_8583 field keys, plus \"cell\".", decode_opts,
     "(HEX | --file FILE)"},
    {"encode", cmd_pos_encode, "build an ISO 8583 message from JSON",
     "--json prints {\"hex\", \"length\"}.", encode_opts, "JSON_FILE|-"},
    {"check", cmd_pos_check, "replay a file of messages through the policy (batch)", NULL,
     check_opts, "FILE"},
    {"serve", cmd_pos_serve, "serve terminal traffic over TCP (0100/0200/0800)", NULL, serve_opts,
     NULL},
    {"send", cmd_pos_send, "send JSON messages to a server and print the answers",
     "FILE  one JSON message per line ('-' for stdin)", send_opts, "FILE"},
    {"load", cmd_pos_load, "load generator: connections, throughput, latency",
     "FILE  JSON message templates, one per line", load_opts, "FILE"},
    {"alerts", cmd_pos_alerts, "list relocation alerts", NULL, alerts_opts, NULL},
    {"retention", cmd_pos_retention,
     "remove transactions older than N days (whole day partitions on PostgreSQL)", NULL,
     retention_opts, NULL},
    {"ack", cmd_pos_ack, "acknowledge an open alert", NULL, note_opts, "ID"},
    {"close", cmd_pos_close, "close an alert", NULL, note_opts, "ID"},
    {"demo", cmd_pos_demo, "import sample data, serve, drive five terminals, print decisions",
     "Without --keep or --db the store is a temporary directory, removed.", demo_opts, NULL},
    {NULL, NULL, NULL, NULL, NULL, NULL},
};
