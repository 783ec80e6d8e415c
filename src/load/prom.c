/*
 * Prometheus collector (seed 3's monitored data, from a monitoring system):
 * query_range over the HTTP API (GET /api/v1/query_range) on the metric names
 * libvirt exporters publish (libvirt_domain_info_cpu_time_seconds_total,
 * ..._block_stats_read_bytes_total, ..._interface_stats_receive_bytes_total,
 * label "domain"), one query per metric for the whole fleet, then one series
 * per domain. The response parser is fuzzed (fuzz/load_prom.c).
 */
#include "load_int.h"
#include "payguard/buf.h"
#include "payguard/error.h"
#include "payguard/log.h"

#include <curl/curl.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PROM_BODY_MAX	(256u << 20) /* bytes of one response */
#define PROM_POINTS_MAX (2u << 20)   /* points kept over all queries */

int
pg_load_prom_parse(const char *body, size_t len, const char *label, pg_load_prom_cb cb, void *ctx)
{
	json_error_t jerr;
	json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr), *data, *res, *series;
	const char *status, *type;
	size_t i;
	int rc = 0;

	if (!root)
		return pg_error(PG_EFORMAT, "load", "prometheus: not JSON (line %d: %s)", jerr.line,
				jerr.text);
	status = json_string_value(json_object_get(root, "status"));
	if (!status || strcmp(status, "success") != 0) {
		const char *msg = json_string_value(json_object_get(root, "error"));
		rc = pg_error(PG_EIO, "load", "prometheus: status '%s': %s", status ? status : "?",
			      msg ? msg : "no error text");
		goto out;
	}
	data = json_object_get(root, "data");
	type = json_string_value(json_object_get(data, "resultType"));
	res = json_object_get(data, "result");
	if (!type || strcmp(type, "matrix") != 0 || !json_is_array(res)) {
		rc = pg_error(PG_EFORMAT, "load", "prometheus: result is not a matrix");
		goto out;
	}
	json_array_foreach(res, i, series)
	{
		json_t *values = json_object_get(series, "values"), *pt;
		const char *vm =
		    json_string_value(json_object_get(json_object_get(series, "metric"), label));
		size_t j;

		if (!vm || !json_is_array(values)) {
			rc = pg_error(PG_EFORMAT, "load",
				      "prometheus: series %zu has no '%s' label or no values", i,
				      label);
			goto out;
		}
		json_array_foreach(values, j, pt)
		{
			json_t *ts = json_array_get(pt, 0);
			const char *vs = json_string_value(json_array_get(pt, 1));
			double v, t;

			if (!json_is_number(ts) || !vs || json_array_size(pt) != 2) {
				rc = pg_error(
				    PG_EFORMAT, "load",
				    "prometheus: series '%s' point %zu is not [time, \"value\"]",
				    vm, j);
				goto out;
			}
			t = json_number_value(ts);
			if (!isfinite(t) || t < 0 || t > 1e11) {
				rc = pg_error(PG_EFORMAT, "load",
					      "prometheus: series '%s' point %zu: bad time", vm, j);
				goto out;
			}
			/* NaN and Inf are legal in Prometheus (0/0); such points are skipped. */
			if (strcmp(vs, "NaN") == 0 || strcmp(vs, "+Inf") == 0 ||
			    strcmp(vs, "-Inf") == 0)
				continue;
			if (load_parse_double(vs, &v) < 0) {
				rc = pg_error(PG_EFORMAT, "load",
					      "prometheus: series '%s' point %zu: value '%.32s'",
					      vm, j, vs);
				goto out;
			}
			rc = cb(ctx, vm, (int64_t)llround(t * 1000.0), v);
			if (rc < 0)
				goto out;
		}
	}
out:
	json_decref(root);
	return rc;
}

/* One (domain, time, metric) value, sorted afterwards into series. */
struct prom_point {
	char vm[128];
	int64_t ts;
	int metric;
	double v;
};

struct prom_state {
	char *base;
	double start, end, step;
	struct prom_point *pts;
	size_t n, cap, next;
	int metric; /* while collecting */
};

static const char *const prom_queries[PG_LOAD_NMETRICS] = {
    "100 * sum by (domain) (rate(libvirt_domain_info_cpu_time_seconds_total[@W]))"
    " / sum by (domain) (libvirt_domain_info_virtual_cpus)",
    "100 * sum by (domain) (libvirt_domain_info_memory_usage_bytes)"
    " / sum by (domain) (libvirt_domain_info_maximum_memory_bytes)",
    "sum by (domain) (rate(libvirt_domain_block_stats_read_bytes_total[@W])) / 1024",
    "sum by (domain) (rate(libvirt_domain_block_stats_write_bytes_total[@W])) / 1024",
    "sum by (domain) (rate(libvirt_domain_interface_stats_receive_bytes_total[@W])) / 1024",
    "sum by (domain) (rate(libvirt_domain_interface_stats_transmit_bytes_total[@W])) / 1024",
};

static size_t
prom_write(char *p, size_t size, size_t nmemb, void *ud)
{
	struct pg_buf *b = ud;

	if (pg_buf_append(b, p, size * nmemb) < 0)
		return 0; /* makes curl fail with a write error */
	return size * nmemb;
}

static int
prom_collect(void *ctx, const char *vm, int64_t ts, double v)
{
	struct prom_state *s = ctx;

	if (s->n == s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 4096;
		struct prom_point *p;

		if (ncap > PROM_POINTS_MAX)
			return pg_error(PG_ETOOBIG, "load", "prometheus: more than %u points",
					PROM_POINTS_MAX);
		p = realloc(s->pts, ncap * sizeof(*p));
		if (!p)
			return pg_error(PG_ENOMEM, "load", "prometheus points");
		s->pts = p;
		s->cap = ncap;
	}
	load_set_name(s->pts[s->n].vm, vm, strlen(vm));
	s->pts[s->n].ts = ts;
	s->pts[s->n].metric = s->metric;
	s->pts[s->n].v = v;
	s->n++;
	return 0;
}

static int
prom_query(struct prom_state *s, CURL *c, const char *q)
{
	struct pg_buf body = PG_BUF_INIT(PROM_BODY_MAX);
	char *esc = curl_easy_escape(c, q, 0), *url = NULL;
	char err[CURL_ERROR_SIZE] = "";
	long code = 0;
	CURLcode cc;
	int rc;

	if (!esc || asprintf(&url, "%s/api/v1/query_range?query=%s&start=%.3f&end=%.3f&step=%.3f",
			     s->base, esc, s->start, s->end, s->step) < 0) {
		url = NULL;
		rc = pg_error(PG_ENOMEM, "load", "prometheus url");
		goto out;
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, prom_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 120000L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	cc = curl_easy_perform(c);
	if (cc != CURLE_OK) {
		rc = pg_error(PG_EIO, "load", "prometheus '%s': %s", s->base,
			      err[0] ? err : curl_easy_strerror(cc));
		goto out;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	rc = pg_load_prom_parse((const char *)body.data, body.len, "domain", prom_collect, s);
	if (rc < 0 && code != 200)
		rc = pg_error(PG_EIO, "load", "prometheus '%s': HTTP %ld: %s", s->base, code,
			      pg_last_error());
out:
	curl_free(esc);
	free(url);
	pg_buf_release(&body);
	return rc;
}

static int
cmp_point(const void *x, const void *y)
{
	const struct prom_point *a = x, *b = y;
	int c = strcmp(a->vm, b->vm);

	if (c)
		return c;
	if (a->ts != b->ts)
		return a->ts < b->ts ? -1 : 1;
	return a->metric - b->metric;
}

static void
prom_close(void *state)
{
	struct prom_state *s = state;

	if (!s)
		return;
	free(s->pts);
	free(s->base);
	free(s);
}

/* arg: URL[,START,END,STEP] with times in Unix seconds (default: the last day, 60 s). */
static int
prom_open(const char *arg, void **state)
{
	struct prom_state *s = calloc(1, sizeof(*s));
	const char *comma = strchr(arg, ',');
	CURL *c = NULL;
	char window[32];
	int rc = 0;

	if (!s)
		return pg_error(PG_ENOMEM, "load", "prometheus state");
	s->base = comma ? strndup(arg, (size_t)(comma - arg)) : strdup(arg);
	s->end = (double)time(NULL);
	s->start = s->end - 86400;
	s->step = 60;
	if (comma && sscanf(comma + 1, "%lf,%lf,%lf", &s->start, &s->end, &s->step) != 3) {
		rc = pg_error(PG_EINVAL, "load", "prometheus '%s': want URL[,START,END,STEP]", arg);
		goto out;
	}
	if (!s->base || strncmp(s->base, "http", 4) != 0 || !(s->step >= 1) ||
	    !(s->end > s->start) || (s->end - s->start) / s->step > 11000) {
		rc = pg_error(PG_EINVAL, "load",
			      "prometheus '%s': need an http(s) URL, END > START and at most "
			      "11,000 steps",
			      arg);
		goto out;
	}
	while (strlen(s->base) > 0 && s->base[strlen(s->base) - 1] == '/')
		s->base[strlen(s->base) - 1] = 0;
	c = curl_easy_init();
	if (!c) {
		rc = pg_error(PG_ENOMEM, "load", "curl");
		goto out;
	}
	/* rate() needs at least two points inside its window. */
	snprintf(window, sizeof(window), "%.0fs", s->step * 4 > 120 ? s->step * 4 : 120);
	for (int m = 0; m < PG_LOAD_NMETRICS; m++) {
		char q[512];

		const char *at = strstr(prom_queries[m], "@W");

		/* The rate window goes where the query says @W. */
		if (at)
			snprintf(q, sizeof(q), "%.*s%s%s", (int)(at - prom_queries[m]),
				 prom_queries[m], window, at + 2);
		else
			snprintf(q, sizeof(q), "%s", prom_queries[m]);
		s->metric = m;
		rc = prom_query(s, c, q);
		if (rc < 0)
			goto out;
	}
	qsort(s->pts, s->n, sizeof(*s->pts), cmp_point);
out:
	if (c)
		curl_easy_cleanup(c);
	if (rc < 0) {
		prom_close(s);
		return rc;
	}
	*state = s;
	return 0;
}

static int
prom_next(void *state, struct pg_load_series *out)
{
	struct prom_state *s = state;
	int have_cpu = 0;

	pg_load_series_reset(out);
	if (s->next >= s->n)
		return 0;
	snprintf(out->vm, sizeof(out->vm), "%s", s->pts[s->next].vm);
	while (s->next < s->n && strcmp(s->pts[s->next].vm, out->vm) == 0) {
		struct pg_load_sample x;
		int64_t ts = s->pts[s->next].ts;
		int rc;

		memset(&x, 0, sizeof(x));
		x.ts_ms = ts;
		have_cpu = 0;
		while (s->next < s->n && s->pts[s->next].ts == ts &&
		       strcmp(s->pts[s->next].vm, out->vm) == 0) {
			x.v[s->pts[s->next].metric] = s->pts[s->next].v;
			have_cpu |= s->pts[s->next].metric == PG_LOAD_CPU;
			s->next++;
		}
		/* A step without CPU (start of the rate window) is not a sample. */
		if (!have_cpu)
			continue;
		rc = pg_load_series_push(out, &x);
		if (rc < 0)
			return rc;
	}
	return 1;
}

const struct pg_load_ops pg_load_prom_ops = {
    .name = "prometheus",
    .help = "prometheus:URL[,START,END,STEP]  query_range on libvirt exporter metrics "
	    "(Unix seconds; default the last day at 60 s)",
    .open = prom_open,
    .next = prom_next,
    .close = prom_close,
};
