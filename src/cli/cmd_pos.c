/* `payguard pos ...` verbs: thin wrappers over the pos library (seed 4). */
#include "cli.h"
#include "payguard/json.h"
#include "payguard/clock.h"
#include "payguard/error.h"
#include "payguard/fs.h"
#include "payguard/hex.h"
#include "payguard/log.h"
#include "payguard/pos.h"

#include <getopt.h>
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

enum {
	O_DB = 1000,
	O_DIALECT,
	O_FRAMING,
	O_JSON,
	O_ALERT_N,
	O_WINDOW,
	O_DECLINE,
	O_CELL_FIELD,
	O_MCC_STRIKES,
};

#define COMMON_OPTS                                                                                \
	{"db", required_argument, NULL, O_DB}, {"dialect", required_argument, NULL, O_DIALECT},    \
	    {"framing", required_argument, NULL, O_FRAMING}, {"json", no_argument, NULL, O_JSON},  \
	    {"alert-n", required_argument, NULL, O_ALERT_N},                                       \
	    {"window-s", required_argument, NULL, O_WINDOW},                                       \
	    {"decline", required_argument, NULL, O_DECLINE},                                       \
	    {"cell-field", required_argument, NULL, O_CELL_FIELD},                                 \
	{                                                                                          \
		"mcc-strikes", required_argument, NULL, O_MCC_STRIKES                              \
	}

static void
common_init(struct common *c, const char *framing)
{
	memset(c, 0, sizeof(*c));
	c->dialect_name = "binary";
	c->framing_name = framing;
	pg_pos_policy_default(&c->pol);
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

/* Returns 1 when the option was a common one, 0 if not, or an exit code < 0 negated. */
static int
common_opt(struct common *c, const char *argv0, int opt, const char *arg, int *err)
{
	long v = 0;

	*err = 0;
	switch (opt) {
	case O_DB:
		c->db = arg;
		return 1;
	case O_DIALECT:
		c->dialect_name = arg;
		return 1;
	case O_FRAMING:
		c->framing_name = arg;
		return 1;
	case O_JSON:
		c->json = 1;
		return 1;
	case O_ALERT_N:
		*err = parse_long(argv0, "--alert-n", arg, 1, 32, &v);
		c->pol.alert_n = (unsigned)v;
		return 1;
	case O_WINDOW:
		*err = parse_long(argv0, "--window-s", arg, 1, 86400 * 365, &v);
		c->pol.window_ms = (int64_t)v * 1000;
		return 1;
	case O_MCC_STRIKES:
		*err = parse_long(argv0, "--mcc-strikes", arg, 1, 32, &v);
		c->pol.mcc_strikes = (unsigned)v;
		return 1;
	case O_CELL_FIELD:
		*err = parse_long(argv0, "--cell-field", arg, 2, 128, &v);
		c->pol.cell_field = (int)v;
		return 1;
	case O_DECLINE:
		if (strlen(arg) != 2 || strspn(arg, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") != 2) {
			*err = pg_cli_usage(argv0, "--decline takes a 2-character response code");
			return 1;
		}
		c->pol.decline_moved = 1;
		memcpy(c->pol.decline_code, arg, 3);
		return 1;
	}
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

#define PARSE_COMMON(c, argc, argv, extra_cases)                                                   \
	for (int opt_; (opt_ = getopt_long(argc, argv, "", opts, NULL)) != -1;) {                  \
		int err_;                                                                          \
		if (common_opt(c, argv[0], opt_, optarg, &err_)) {                                 \
			if (err_)                                                                  \
				return err_;                                                       \
			continue;                                                                  \
		}                                                                                  \
		switch (opt_) {                                                                    \
			extra_cases default : return pg_cli_usage(argv[0], "unknown option");      \
		}                                                                                  \
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
	static const struct option opts[] = {COMMON_OPTS, {0}};
	struct common c;
	struct pg_store st = {0};
	struct pg_import_stats s;
	int rc;

	common_init(&c, "none");
	PARSE_COMMON(&c, argc, argv, );
	if (argc - optind != 2 || strcmp(argv[optind], "import") != 0)
		return pg_cli_usage(argv[0], "expected: import FILE");
	rc = open_store(&st, c.db);
	if (rc < 0)
		return pg_cli_fail(rc, "store");
	rc = cells ? pg_cells_import(&st, argv[optind + 1], &s)
		   : pg_merchants_import(&st, argv[optind + 1], &s);
	pg_store_close(&st);
	if (rc < 0)
		return pg_cli_fail(rc, "import '%s'", argv[optind + 1]);
	return print_import(cells ? "cells" : "merchants", argv[optind + 1], &s, c.json);
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
	static const struct option opts[] = {
	    COMMON_OPTS, {"file", required_argument, NULL, 'f'}, {0}};
	struct common c;
	const char *file = NULL;
	uint8_t *data = NULL;
	size_t len = 0, hdr = 0, body = 0;
	struct pg_iso_msg *m = NULL;
	int rc, ex = PG_EXIT_OK;

	common_init(&c, "none");
	PARSE_COMMON(&c, argc, argv, case 'f' : file = optarg; break;);
	rc = common_finish(&c, argv[0]);
	if (rc)
		return rc;
	rc = read_input(argv[0], argc - optind, argv + optind, file, &data, &len);
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
	static const struct option opts[] = {
	    COMMON_OPTS, {"out", required_argument, NULL, 'o'}, {0}};
	struct common c;
	const char *out = NULL;
	json_t *j = NULL;
	struct pg_iso_msg *m = malloc(sizeof(*m));
	struct pg_buf body = PG_BUF_INIT(PG_ISO_ARENA), frame = PG_BUF_INIT(PG_ISO_ARENA + 16);
	int rc, ex = PG_EXIT_OK;

	if (!m)
		return pg_cli_fail(PG_ENOMEM, "encode");
	common_init(&c, "none");
	for (int opt; (opt = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
		int err;

		if (common_opt(&c, argv[0], opt, optarg, &err)) {
			if (err) {
				free(m);
				return err;
			}
			continue;
		}
		if (opt == 'o') {
			out = optarg;
			continue;
		}
		free(m);
		return pg_cli_usage(argv[0], "unknown option");
	}
	ex = common_finish(&c, argv[0]);
	if (ex)
		goto done;
	if (argc - optind != 1) {
		ex = pg_cli_usage(argv[0], "expected one JSON file (or -)");
		goto done;
	}
	rc = load_json_file(argv[optind], &j);
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
check_report(struct check_out *o, const struct pg_pos_batch_stats *s, int dry)
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
	struct pg_store st = {0};
	struct pg_pos_engine *e = NULL;
	struct pg_pos_batch_stats s;
	struct pg_pos_batch b = {.dialect = &c->dialect,
				 .framing = &c->framing,
				 .hex = hex,
				 .each = check_row,
				 .arg = o};
	uint8_t *data = NULL;
	size_t len = 0;
	int rc, ex;

	rc = pg_read_file(path, 1u << 30, &data, &len);
	if (rc < 0)
		return pg_cli_fail(rc, "read '%s'", path);
	rc = open_store(&st, c->db);
	if (rc < 0) {
		ex = pg_cli_fail(rc, "store");
		goto out;
	}
	rc = pg_pos_engine_open(&e, &st, &c->pol);
	if (rc < 0) {
		ex = pg_cli_fail(rc, "engine");
		goto out;
	}
	if (dry) /* windows in memory, nothing written */
		pg_pos_engine_detach_store(e);
	b.data = data;
	b.len = len;
	rc = pg_pos_check_batch(e, &b, &s);
	if (rc < 0 && s.stage == PG_POS_BATCH_FRAME)
		ex = pg_cli_fail(rc, "message %llu at offset %zu",
				 (unsigned long long)s.messages + 1, s.offset);
	else if (rc < 0)
		ex = pg_cli_fail(rc, s.stage == PG_POS_BATCH_COMMIT ? "commit" : "check");
	else
		ex = check_report(o, &s, dry);
out:
	pg_pos_engine_free(e);
	pg_store_close(&st);
	free(data);
	return ex;
}

static int
cmd_pos_check(int argc, char **argv)
{
	static const struct option opts[] = {COMMON_OPTS,
					     {"hex", no_argument, NULL, 'x'},
					     {"dry-run", no_argument, NULL, 'n'},
					     {"summary", no_argument, NULL, 's'},
					     {0}};
	static const char *const hd[] = {"#",	   "terminal", "stan",	     "decision", "reason",
					 "dist_m", "acc_m",    "confidence", "rc",	 "alert"};
	struct common c;
	struct check_out o = {0};
	int hex = 0, dry = 0, summary = 0, ex;

	common_init(&c, "bin2");
	for (int opt; (opt = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
		int err;

		if (common_opt(&c, argv[0], opt, optarg, &err)) {
			if (err)
				return err;
			continue;
		}
		if (opt == 'x')
			hex = 1;
		else if (opt == 'n')
			dry = 1;
		else if (opt == 's')
			summary = 1;
		else
			return pg_cli_usage(argv[0], "unknown option");
	}
	ex = common_finish(&c, argv[0]);
	if (ex)
		return ex;
	if (argc - optind != 1)
		return pg_cli_usage(argv[0], "expected one FILE of messages");
	o.dialect = &c.dialect;
	if (c.json)
		o.arr = json_array();
	else if (!summary)
		o.t = pg_table_new(10, hd);
	ex = check_file(&c, argv[optind], hex, dry, &o);
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
	static const struct option opts[] = {COMMON_OPTS,
					     {"host", required_argument, NULL, 'h'},
					     {"port", required_argument, NULL, 'p'},
					     {"port-file", required_argument, NULL, 'P'},
					     {"max-msg", required_argument, NULL, 'm'},
					     {"idle-ms", required_argument, NULL, 'i'},
					     {"frame-ms", required_argument, NULL, 'F'},
					     {"max-conns", required_argument, NULL, 'c'},
					     {"sync", required_argument, NULL, 's'},
					     {"commit-us", required_argument, NULL, 'C'},
					     {0}};
	struct common c;
	struct pg_pos_server_cfg cfg = {0};
	struct pg_store st = {0};
	struct pg_pos_engine *e = NULL;
	const char *sync = "normal";
	char what[96];
	long v = 0;
	int rc, ex;

	common_init(&c, "bin2");
	cfg.host = "127.0.0.1";
	cfg.port = 8583;
	cfg.commit_us = 500;
	for (int opt; (opt = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
		int err;

		if (common_opt(&c, argv[0], opt, optarg, &err)) {
			if (err)
				return err;
			continue;
		}
		switch (opt) {
		case 'h':
			cfg.host = optarg;
			break;
		case 'p':
			if ((err = parse_long(argv[0], "--port", optarg, 0, 65535, &v)))
				return err;
			cfg.port = (int)v;
			break;
		case 'P':
			cfg.port_file = optarg;
			break;
		case 'm':
			if ((err =
				 parse_long(argv[0], "--max-msg", optarg, 64, PG_ISO_MAX_MSG, &v)))
				return err;
			cfg.max_msg = (size_t)v;
			break;
		case 'i':
			if ((err = parse_long(argv[0], "--idle-ms", optarg, 100, 86400000, &v)))
				return err;
			cfg.idle_ms = (int)v;
			break;
		case 'F':
			if ((err = parse_long(argv[0], "--frame-ms", optarg, 100, 600000, &v)))
				return err;
			cfg.frame_ms = (int)v;
			break;
		case 'c':
			if ((err = parse_long(argv[0], "--max-conns", optarg, 1, 100000, &v)))
				return err;
			cfg.max_conns = (int)v;
			break;
		case 'C':
			if ((err = parse_long(argv[0], "--commit-us", optarg, 0, 100000, &v)))
				return err;
			cfg.commit_us = (int)v;
			break;
		case 's':
			if (strcmp(optarg, "normal") && strcmp(optarg, "full"))
				return pg_cli_usage(argv[0], "--sync is normal or full");
			sync = optarg;
			break;
		default:
			return pg_cli_usage(argv[0], "unknown option");
		}
	}
	if ((ex = common_finish(&c, argv[0])))
		return ex;
	if (c.framing.kind == PG_FRAME_NONE)
		return pg_cli_usage(argv[0], "the server needs a length-prefixed framing");
	cfg.dialect = &c.dialect;
	cfg.framing = c.framing;
	/* the event loop is the connection's only user (the checkpointer opens its own) */
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
	static const struct option opts[] = {COMMON_OPTS,
					     {"host", required_argument, NULL, 'h'},
					     {"port", required_argument, NULL, 'p'},
					     {"timeout-ms", required_argument, NULL, 't'},
					     {0}};
	struct common c;
	const char *host = "127.0.0.1";
	long port = 8583, timeout = 5000;
	struct pg_iso_msg **tm = NULL, *resp = malloc(sizeof(*resp));
	struct pg_pos_client cl = {.fd = -1};
	int n = 0, rc, ex = PG_EXIT_OK;

	if (!resp)
		return pg_cli_fail(PG_ENOMEM, "send");
	common_init(&c, "bin2");
	for (int opt; (opt = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
		int err = 0;

		if (common_opt(&c, argv[0], opt, optarg, &err)) {
			if (err)
				goto usage;
			continue;
		}
		if (opt == 'h')
			host = optarg;
		else if (opt == 'p')
			err = parse_long(argv[0], "--port", optarg, 1, 65535, &port);
		else if (opt == 't')
			err = parse_long(argv[0], "--timeout-ms", optarg, 1, 600000, &timeout);
		else
			err = pg_cli_usage(argv[0], "unknown option");
		if (err) {
		usage:
			free(resp);
			return err ? err : PG_EXIT_USAGE;
		}
	}
	if ((ex = common_finish(&c, argv[0])) || argc - optind != 1) {
		free(resp);
		return ex ? ex : pg_cli_usage(argv[0], "expected one FILE of JSON messages");
	}
	rc = read_templates(argv[optind], &c, &tm, &n);
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
	static const struct option opts[] = {COMMON_OPTS,
					     {"host", required_argument, NULL, 'h'},
					     {"port", required_argument, NULL, 'p'},
					     {"conns", required_argument, NULL, 'c'},
					     {"duration-ms", required_argument, NULL, 'd'},
					     {"log", required_argument, NULL, 'l'},
					     {"stan-base", required_argument, NULL, 'b'},
					     {0}};
	struct common c;
	struct pg_pos_load_cfg cfg = {0};
	struct pg_pos_load_stats s;
	const char *log = NULL;
	long port = 8583, conns = 64, dur = 3000, base = 0;
	int rc, ex;

	common_init(&c, "bin2");
	cfg.host = "127.0.0.1";
	for (int opt; (opt = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
		int err = 0;

		if (common_opt(&c, argv[0], opt, optarg, &err)) {
			if (err)
				return err;
			continue;
		}
		switch (opt) {
		case 'h':
			cfg.host = optarg;
			break;
		case 'p':
			err = parse_long(argv[0], "--port", optarg, 1, 65535, &port);
			break;
		case 'c':
			err = parse_long(argv[0], "--conns", optarg, 1, 10000, &conns);
			break;
		case 'd':
			err = parse_long(argv[0], "--duration-ms", optarg, 1, 3600000, &dur);
			break;
		case 'b':
			err = parse_long(argv[0], "--stan-base", optarg, 0, 999999, &base);
			break;
		case 'l':
			log = optarg;
			break;
		default:
			err = pg_cli_usage(argv[0], "unknown option");
		}
		if (err)
			return err;
	}
	if ((ex = common_finish(&c, argv[0])))
		return ex;
	if (argc - optind != 1)
		return pg_cli_usage(argv[0], "expected one FILE of JSON message templates");
	rc = read_templates(argv[optind], &c, &cfg.templates, &cfg.ntemplates);
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
		    "{s:I,s:I,s:I,s:f,s:f,s:f,s:f,s:i}", "sent", (json_int_t)s.sent, "answered",
		    (json_int_t)s.answered, "errors", (json_int_t)s.errors, "seconds", s.seconds,
		    "tps", s.tps, "p50_us", s.p50_us, "p99_us", s.p99_us, "conns", (int)conns));
	printf("%llu sent, %llu answered, %llu errors in %.2f s: %.0f tx/s, p50 %.0f us, p99 %.0f "
	       "us (%ld connections)\n",
	       (unsigned long long)s.sent, (unsigned long long)s.answered,
	       (unsigned long long)s.errors, s.seconds, s.tps, s.p50_us, s.p99_us, conns);
	return PG_EXIT_OK;
}

/* ---- alerts ---- */

static int
cmd_pos_alerts(int argc, char **argv)
{
	static const struct option opts[] = {COMMON_OPTS,
					     {"state", required_argument, NULL, 's'},
					     {"limit", required_argument, NULL, 'l'},
					     {0}};
	struct common c;
	const char *state = NULL;
	long limit = 1000;
	struct pg_store st = {0};
	json_t *a;
	int rc;

	common_init(&c, "none");
	for (int opt; (opt = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
		int err = 0;

		if (common_opt(&c, argv[0], opt, optarg, &err)) {
			if (err)
				return err;
			continue;
		}
		if (opt == 's')
			state = optarg;
		else if (opt == 'l')
			err = parse_long(argv[0], "--limit", optarg, 1, 1000000, &limit);
		else
			err = pg_cli_usage(argv[0], "unknown option");
		if (err)
			return err;
	}
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
	static const struct option opts[] = {
	    COMMON_OPTS, {"note", required_argument, NULL, 'n'}, {0}};
	struct common c;
	const char *note = NULL;
	struct pg_store st = {0};
	long id = 0;
	int rc;

	common_init(&c, "none");
	PARSE_COMMON(&c, argc, argv, case 'n' : note = optarg; break;);
	if (argc - optind != 1)
		return pg_cli_usage(argv[0], "expected one alert ID");
	if ((rc = parse_long(argv[0], "alert ID", argv[optind], 1, 0x7fffffffL, &id)))
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
	static const struct option opts[] = {COMMON_OPTS, {"keep", no_argument, NULL, 'k'}, {0}};
	struct common c;
	char dir[512], path[600];
	int keep = 0, rc;

	common_init(&c, "bin2");
	PARSE_COMMON(&c, argc, argv, case 'k' : keep = 1; break;);
	if (argc != optind)
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

#define POLICY_USAGE                                                                               \
	"  --alert-n N        moved transactions in the window that raise an alert (3)\n"          \
	"  --window-s S       the window in seconds (3600)\n"                                      \
	"  --mcc-strikes N    what one country mismatch counts (default: --alert-n)\n"             \
	"  --decline CODE     decline moved terminals with response CODE (default: approve and "   \
	"flag)\n"                                                                                  \
	"  --cell-field N     the field carrying the cell TLV (62)\n"
#define CODEC_USAGE                                                                                \
	"  --dialect D        binary (default), ascii, iso93, iso93-binary (ISO 8583:1993),\n"     \
	"                     jpos-iso87b, npm-iso8583, or a field-definition file\n"              \
	"  --framing F        bin2, bcd2, ascii4, bin4 or none, each optionally +tpdu\n"

const struct pg_cmd pg_cli_pos[] = {
    {"cells", cmd_pos_cells, "import an OpenCellID CSV file into the cell database",
     "import FILE [--db PATH] [--json]\n"
     "  FILE  OpenCellID CSV (header radio,mcc,net,area,cell,...; '-' for stdin)\n"},
    {"merchants", cmd_pos_merchants, "import the merchant/terminal registry (CSV)",
     "import FILE [--db PATH] [--json]\n"
     "  FILE  CSV terminal_id,merchant_id,lat,lon,uncertainty_m,limit_m,mcc,name\n"},
    {"decode", cmd_pos_decode, "print every field of an ISO 8583 message",
     "[options] (HEX | --file FILE)\n" CODEC_USAGE
     "  --file FILE        read the (framed) message from FILE ('-' for stdin)\n"
     "  --json             print JSON (npm iso_8583 field keys, plus \"cell\")\n"},
    {"encode", cmd_pos_encode, "build an ISO 8583 message from JSON",
     "[options] JSON_FILE|-\n" CODEC_USAGE
     "  --out FILE         write the bytes to FILE instead of printing hex\n"
     "  --json             print {\"hex\", \"length\"}\n"},
    {"check", cmd_pos_check, "replay a file of messages through the policy (batch)",
     "[options] FILE\n" CODEC_USAGE
     "  --hex              FILE holds one hex message per line (no framing)\n"
     "  --dry-run          record nothing\n"
     "  --summary          print only the totals\n"
     "  --db PATH          the store\n"
     "  --json             print JSON\n" POLICY_USAGE},
    {"serve", cmd_pos_serve, "serve terminal traffic over TCP (0100/0200/0800)",
     "[options]\n" CODEC_USAGE "  --host ADDR        IPv4 address to listen on (127.0.0.1)\n"
     "  --port N           TCP port (8583; 0 = any free port)\n"
     "  --port-file FILE   write the bound port to FILE\n"
     "  --max-msg N        largest message accepted (8192)\n"
     "  --idle-ms N        cut idle connections (60000)\n"
     "  --frame-ms N       cut connections whose frame takes longer (5000)\n"
     "  --max-conns N      connection limit (4096)\n"
     "  --sync MODE        normal (survives a process kill) or full (power loss)\n"
     "  --db PATH          the store\n" POLICY_USAGE},
    {"send", cmd_pos_send, "send JSON messages to a server and print the answers",
     "[options] FILE\n" CODEC_USAGE "  --host ADDR --port N --timeout-ms N\n"
     "  FILE               one JSON message per line ('-' for stdin)\n"},
    {"load", cmd_pos_load, "load generator: connections, throughput, latency",
     "[options] FILE\n" CODEC_USAGE "  --host ADDR --port N\n"
     "  --conns N          connections, one request in flight on each (64)\n"
     "  --duration-ms N    how long to send (3000)\n"
     "  --log FILE         write tid|stan|rc|decision for every answer\n"
     "  --stan-base N      first STAN (0)\n"
     "  --json             print JSON\n"
     "  FILE               JSON message templates, one per line\n"},
    {"alerts", cmd_pos_alerts, "list relocation alerts",
     "[--state open|acknowledged|closed] [--limit N] [--db PATH] "
     "[--json]\n"},
    {"ack", cmd_pos_ack, "acknowledge an open alert", "ID [--note TEXT] [--db PATH] [--json]\n"},
    {"close", cmd_pos_close, "close an alert", "ID [--note TEXT] [--db PATH] [--json]\n"},
    {"demo", cmd_pos_demo, "import sample data, serve, drive five terminals, print decisions",
     "[--keep | --db PATH]\n"
     "  --keep             use a fresh pos-demo.db in the data directory and keep it\n"
     "  --db PATH          store to use (default: a temporary directory, removed)\n"},
    {NULL, NULL, NULL, NULL},
};
