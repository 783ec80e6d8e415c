/*
 * Prometheus collector (seed 3's monitored data, from a monitoring system):
 * query_range over the HTTP API (GET /api/v1/query_range) on the metric names
 * libvirt exporters publish (libvirt_domain_info_cpu_time_seconds_total,
 * ..._block_stats_read_bytes_total, ..._interface_stats_receive_bytes_total,
 * label "domain"), one query per metric for the whole fleet, then one series
 * per domain. The same source is live (issue 17): the daemon's
 * load_source = prometheus:URL polls the steps since its last poll, with a
 * timeout and retries per request. node_exporter's metrics (label
 * "instance") are the other preset; every metric name can be overridden in
 * the spec (docs/load.md, "Prometheus"). The response parser is fuzzed
 * (fuzz/load_prom.c).
 */
#include "load_int.h"
#include "payguard/buf.h"
#include "payguard/error.h"
#include "payguard/log.h"

#include <ctype.h>
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
			if (pgi_load_parse_double(vs, &v) < 0) {
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

/* One (VM, time, metric) value, sorted afterwards into series. */
struct prom_point {
	char vm[128];
	int64_t ts;
	int metric;
	double v;
};

/* The metric names a query template refers to as @name@. */
enum prom_name {
	PN_CPU,
	PN_VCPUS,
	PN_MEM,
	PN_MEM_MAX,
	PN_DISK_RD,
	PN_DISK_WR,
	PN_NET_RX,
	PN_NET_TX,
	PN_COUNT
};
static const char *const prom_name_keys[PN_COUNT] = {"cpu",	"vcpus",   "mem",    "mem_max",
						     "disk_rd", "disk_wr", "net_rx", "net_tx"};

/*
 * An exporter: its label naming the VM, its metric names (each may be
 * overridden in the spec) and one PromQL template per payguard metric.
 */
struct prom_exporter {
	const char *name;
	const char *label;
	const char *metric[PN_COUNT];
	const char *query[PG_LOAD_NMETRICS];
};

static const struct prom_exporter prom_exporters[] = {
    {"libvirt",
     "domain",
     {"libvirt_domain_info_cpu_time_seconds_total", "libvirt_domain_info_virtual_cpus",
      "libvirt_domain_info_memory_usage_bytes", "libvirt_domain_info_maximum_memory_bytes",
      "libvirt_domain_block_stats_read_bytes_total", "libvirt_domain_block_stats_write_bytes_total",
      "libvirt_domain_interface_stats_receive_bytes_total",
      "libvirt_domain_interface_stats_transmit_bytes_total"},
     {"100 * sum by (@label@) (rate(@cpu@[@w@])) / sum by (@label@) (@vcpus@)",
      "100 * sum by (@label@) (@mem@) / sum by (@label@) (@mem_max@)",
      "sum by (@label@) (rate(@disk_rd@[@w@])) / 1024",
      "sum by (@label@) (rate(@disk_wr@[@w@])) / 1024",
      "sum by (@label@) (rate(@net_rx@[@w@])) / 1024",
      "sum by (@label@) (rate(@net_tx@[@w@])) / 1024"}},
    /* node_exporter inside each VM: the VM is the scrape's instance. */
    {"node",
     "instance",
     {"node_cpu_seconds_total", "", "node_memory_MemAvailable_bytes", "node_memory_MemTotal_bytes",
      "node_disk_read_bytes_total", "node_disk_written_bytes_total",
      "node_network_receive_bytes_total", "node_network_transmit_bytes_total"},
     {"100 * (1 - avg by (@label@) (rate(@cpu@{mode=\"idle\"}[@w@])))",
      "100 * (1 - sum by (@label@) (@mem@) / sum by (@label@) (@mem_max@))",
      "sum by (@label@) (rate(@disk_rd@[@w@])) / 1024",
      "sum by (@label@) (rate(@disk_wr@[@w@])) / 1024",
      "sum by (@label@) (rate(@net_rx@{device!=\"lo\"}[@w@])) / 1024",
      "sum by (@label@) (rate(@net_tx@{device!=\"lo\"}[@w@])) / 1024"}},
};

struct prom_state {
	char *base;
	const struct prom_exporter *exp;
	char label[64];
	char names[PN_COUNT][128]; /* metric names, the exporter's or the spec's */
	int have_range;
	double start, end, step;
	double window;	 /* rate() window in seconds; 0: 4 steps, at least 60 s */
	long timeout_ms; /* per request */
	int retries;	 /* further attempts after a failed request */
	int fetched;	 /* trace mode: the range was read */
	int64_t last_ts; /* live mode: newest time reported */
	struct prom_point *pts;
	size_t n, cap, next;
	int metric; /* while collecting */
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
	pgi_load_set_name(s->pts[s->n].vm, vm, strlen(vm));
	s->pts[s->n].ts = ts;
	s->pts[s->n].metric = s->metric;
	/* CPU and memory shares are clipped where they are read. */
	s->pts[s->n].v = s->metric <= PG_LOAD_MEM ? load_pct(v) : v;
	s->n++;
	return 0;
}

/* One GET with the timeout; the body in *body. rc < 0 with the reason. */
static int
prom_get(struct prom_state *s, CURL *c, const char *url, struct pg_buf *body, long *code)
{
	char err[CURL_ERROR_SIZE] = "";
	CURLcode cc;

	pg_buf_release(body);
	*body = (struct pg_buf)PG_BUF_INIT(PROM_BODY_MAX);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, prom_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
			 s->timeout_ms < 5000 ? s->timeout_ms : 5000L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, s->timeout_ms);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	cc = curl_easy_perform(c);
	if (cc != CURLE_OK)
		return pg_error(PG_EIO, "load", "%s", err[0] ? err : curl_easy_strerror(cc));
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, code);
	return 0;
}

/*
 * One query_range, retried: a refused connection, a timeout or a 5xx are
 * tried again (after 0.5 s, 1 s, ...); a 4xx (a bad query) is not.
 */
static int
prom_query(struct prom_state *s, CURL *c, const char *q, double start, double end)
{
	struct pg_buf body = PG_BUF_INIT(PROM_BODY_MAX);
	char *esc = curl_easy_escape(c, q, 0), *url = NULL;
	char why[512];
	long code = 0;
	int rc = 0, attempt;

	if (!esc || asprintf(&url, "%s/api/v1/query_range?query=%s&start=%.3f&end=%.3f&step=%.3f",
			     s->base, esc, start, end, s->step) < 0) {
		url = NULL;
		rc = pg_error(PG_ENOMEM, "load", "prometheus url");
		goto out;
	}
	for (attempt = 0; attempt <= s->retries; attempt++) {
		if (attempt > 0) {
			struct timespec ts = {(time_t)(attempt / 2), (attempt % 2) * 500000000L};
			nanosleep(&ts, NULL);
		}
		code = 0;
		rc = prom_get(s, c, url, &body, &code);
		if (rc == 0 && code >= 500)
			rc = pg_error(PG_EIO, "load", "HTTP %ld", code);
		if (rc == 0)
			break;
	}
	if (rc < 0) {
		snprintf(why, sizeof(why), "%s", pg_last_error());
		rc = pg_error(PG_EIO, "load",
			      "prometheus '%s' is down or unreachable (%d attempt%s, %.1f s "
			      "timeout each): %s",
			      s->base, attempt, attempt == 1 ? "" : "s", s->timeout_ms / 1000.0,
			      why);
		goto out;
	}
	rc = pg_load_prom_parse((const char *)body.data, body.len, s->label, prom_collect, s);
	if (rc < 0) /* pg_error must not read the buffer it writes: copy first */
		snprintf(why, sizeof(why), "%s", pg_last_error());
	if (rc < 0 && code != 200)
		rc = pg_error(PG_EIO, "load", "prometheus '%s': HTTP %ld: %s", s->base, code, why);
	else if (rc < 0)
		rc = pg_error(rc, "load", "prometheus '%s': %s", s->base, why);
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

/* Expands a template: @label@, @w@ and the metric names. */
static int
prom_expand(const struct prom_state *s, const char *tpl, const char *window, char *out, size_t cap)
{
	size_t o = 0;

	for (const char *p = tpl; *p;) {
		const char *val = NULL;
		size_t skip = 1;

		if (*p == '@') {
			const char *e = strchr(p + 1, '@');
			size_t l = e ? (size_t)(e - p - 1) : 0;

			if (l == 5 && strncmp(p + 1, "label", 5) == 0)
				val = s->label;
			else if (l == 1 && p[1] == 'w')
				val = window;
			for (int i = 0; !val && i < PN_COUNT; i++)
				if (strlen(prom_name_keys[i]) == l &&
				    strncmp(p + 1, prom_name_keys[i], l) == 0)
					val = s->names[i];
			if (val)
				skip = l + 2;
		}
		if (val) {
			size_t l = strlen(val);
			if (o + l >= cap)
				return PG_ETOOBIG;
			memcpy(out + o, val, l);
			o += l;
		} else {
			if (o + 1 >= cap)
				return PG_ETOOBIG;
			out[o++] = *p;
		}
		p += skip;
	}
	out[o] = 0;
	return 0;
}

/* Reads [start, end] of every metric into s->pts, sorted by VM and time. */
static int
prom_fetch(struct prom_state *s, double start, double end)
{
	CURL *c = curl_easy_init();
	char window[32];
	double w = s->window > 0 ? s->window : (s->step * 4 > 60 ? s->step * 4 : 60);
	int rc = 0;

	if (!c)
		return pg_error(PG_ENOMEM, "load", "curl");
	s->n = s->next = 0;
	/* rate() needs at least two points inside its window. */
	snprintf(window, sizeof(window), "%.0fs", w);
	for (int m = 0; m < PG_LOAD_NMETRICS && rc == 0; m++) {
		char q[1024];

		if (prom_expand(s, s->exp->query[m], window, q, sizeof(q)) < 0) {
			rc = pg_error(PG_ETOOBIG, "load", "prometheus: query too long");
			break;
		}
		s->metric = m;
		rc = prom_query(s, c, q, start, end);
	}
	curl_easy_cleanup(c);
	if (rc == 0)
		qsort(s->pts, s->n, sizeof(*s->pts), cmp_point);
	return rc;
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

/* A PromQL metric or label name: [a-zA-Z_:][a-zA-Z0-9_:]* (labels without ':'). */
static int
prom_name_ok(const char *v, int label)
{
	if (!*v || isdigit((unsigned char)*v))
		return 0;
	for (; *v; v++)
		if (!(isalnum((unsigned char)*v) || *v == '_' || (!label && *v == ':')))
			return 0;
	return 1;
}

/* exporter=NAME: one of prom_exporters. */
static int
prom_spec_exporter(struct prom_state *s, const char *val)
{
	s->exp = NULL;
	for (size_t i = 0; i < sizeof(prom_exporters) / sizeof(prom_exporters[0]); i++)
		if (strcmp(val, prom_exporters[i].name) == 0)
			s->exp = &prom_exporters[i];
	if (!s->exp)
		return pg_error(PG_EINVAL, "load",
				"prometheus: exporter '%s': want libvirt or node", val);
	return 0;
}

/* step=, window= or timeout=: seconds, 0 < s <= 86400. */
static int
prom_spec_seconds(struct prom_state *s, const char *key, const char *val)
{
	double v;

	if (pgi_load_parse_double(val, &v) < 0 || !(v > 0) || v > 86400)
		return pg_error(PG_EINVAL, "load",
				"prometheus: %s '%s': want seconds, 0 < s <= 86400", key, val);
	if (key[0] == 's')
		s->step = v;
	else if (key[0] == 'w')
		s->window = v;
	else
		s->timeout_ms = (long)(v * 1000);
	return 0;
}

/* A metric name key (cpu=, vcpus=, ...): its override in over[]. */
static int
prom_spec_metric(const struct prom_state *s, const char *key, const char *val,
		 const char *over[PN_COUNT])
{
	int i;

	for (i = 0; i < PN_COUNT; i++)
		if (strcmp(key, prom_name_keys[i]) == 0)
			break;
	if (i == PN_COUNT)
		return pg_error(PG_EINVAL, "load",
				"prometheus: unknown key '%s' (exporter, label, cpu, "
				"vcpus, mem, mem_max, disk_rd, disk_wr, net_rx, "
				"net_tx, step, window, timeout, retries)",
				key);
	if (!prom_name_ok(val, 0) || strlen(val) >= sizeof(s->names[0]))
		return pg_error(PG_EINVAL, "load", "prometheus: %s '%s' is not a metric name", key,
				val);
	over[i] = val;
	return 0;
}

/* One KEY=VALUE of the spec; label and over[] keep what the exporter's
 * defaults are overridden with. */
static int
prom_spec_key(struct prom_state *s, const char *key, const char *val, const char **label,
	      const char *over[PN_COUNT])
{
	double v;

	if (strcmp(key, "exporter") == 0)
		return prom_spec_exporter(s, val);
	if (strcmp(key, "label") == 0) {
		*label = val;
		if (!prom_name_ok(val, 1) || strlen(val) >= sizeof(s->label))
			return pg_error(PG_EINVAL, "load", "prometheus: bad label name '%s'", val);
		return 0;
	}
	if (strcmp(key, "step") == 0 || strcmp(key, "window") == 0 || strcmp(key, "timeout") == 0)
		return prom_spec_seconds(s, key, val);
	if (strcmp(key, "retries") == 0) {
		if (pgi_load_parse_double(val, &v) < 0 || v < 0 || v > 10 || v != (int)v)
			return pg_error(PG_EINVAL, "load", "prometheus: retries '%s': want 0..10",
					val);
		s->retries = (int)v;
		return 0;
	}
	return prom_spec_metric(s, key, val, over);
}

/* The parsed spec into s: label and metric names (overrides, else the
 * exporter's) and the time range when one was given. */
static void
prom_spec_apply(struct prom_state *s, const char *label, const char *over[PN_COUNT],
		const double num[3], int nnum)
{
	snprintf(s->label, sizeof(s->label), "%s", label ? label : s->exp->label);
	for (int i = 0; i < PN_COUNT; i++)
		snprintf(s->names[i], sizeof(s->names[i]), "%s",
			 over[i] ? over[i] : s->exp->metric[i]);
	if (nnum == 3) {
		s->have_range = 1;
		s->start = num[0];
		s->end = num[1];
		s->step = num[2];
	}
}

/*
 * arg: URL[,START,END,STEP][,KEY=VALUE...]. Times in Unix seconds. Keys:
 * exporter=libvirt|node, label=, the metric names (cpu= vcpus= mem= mem_max=
 * disk_rd= disk_wr= net_rx= net_tx=), step=, window=, timeout=, retries=.
 */
static int
prom_parse_spec(const char *arg, struct prom_state *s)
{
	char *copy = strdup(arg), *tok, *save = NULL;
	double num[3];
	int nnum = 0, rc = 0, first = 1;
	const char *over[PN_COUNT] = {0};
	const char *label = NULL;

	if (!copy)
		return pg_error(PG_ENOMEM, "load", "prometheus spec");
	s->exp = &prom_exporters[0];
	s->step = 60;
	s->timeout_ms = 10000;
	s->retries = 2;
	for (tok = strtok_r(copy, ",", &save); tok && rc == 0; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		double v;

		if (first) {
			s->base = strdup(tok);
			first = 0;
			if (!s->base)
				rc = pg_error(PG_ENOMEM, "load", "prometheus spec");
			continue;
		}
		if (!eq) {
			if (nnum == 3 || pgi_load_parse_double(tok, &v) < 0)
				rc = pg_error(
				    PG_EINVAL, "load",
				    "prometheus '%s': '%s' is neither a time nor KEY=VALUE", arg,
				    tok);
			else
				num[nnum++] = v;
			continue;
		}
		*eq = 0;
		rc = prom_spec_key(s, tok, eq + 1, &label, over);
	}
	if (rc == 0 && nnum != 0 && nnum != 3)
		rc = pg_error(PG_EINVAL, "load", "prometheus '%s': want URL[,START,END,STEP]", arg);
	if (rc == 0)
		prom_spec_apply(s, label, over, num, nnum);
	free(copy);
	return rc;
}

static int
prom_open(const char *arg, void **state)
{
	struct prom_state *s = calloc(1, sizeof(*s));
	int rc;

	if (!s)
		return pg_error(PG_ENOMEM, "load", "prometheus state");
	rc = prom_parse_spec(arg, s);
	if (rc == 0 && !s->have_range) {
		/* the last day, or fewer steps if a short step asks for more than 11,000 */
		s->end = (double)time(NULL);
		s->start = s->end - (86400 < 10000 * s->step ? 86400 : 10000 * s->step);
	}
	if (rc == 0 && (!s->base || strncmp(s->base, "http", 4) != 0 || !(s->step >= 1) ||
			!(s->end > s->start) || (s->end - s->start) / s->step > 11000))
		rc = pg_error(PG_EINVAL, "load",
			      "prometheus '%s': need an http(s) URL, END > START, STEP >= 1 and at "
			      "most 11,000 steps",
			      arg);
	while (rc == 0 && strlen(s->base) > 0 && s->base[strlen(s->base) - 1] == '/')
		s->base[strlen(s->base) - 1] = 0;
	if (rc < 0) {
		prom_close(s);
		return rc;
	}
	*state = s;
	return 0;
}

/* Trace use: the whole range is read at open, so a dead server fails there. */
static int
prom_open_trace(const char *arg, void **state)
{
	struct prom_state *s;
	int rc = prom_open(arg, (void **)&s);

	if (rc < 0)
		return rc;
	rc = prom_fetch(s, s->start, s->end);
	if (rc < 0) {
		prom_close(s);
		return rc;
	}
	s->fetched = 1;
	*state = s;
	return 0;
}

/* The next (VM, time) sample at s->next; 0 when none is left. */
static int
prom_take(struct prom_state *s, struct pg_load_sample *x, char vm[128])
{
	while (s->next < s->n) {
		int64_t ts = s->pts[s->next].ts;
		int have_cpu = 0;

		memset(x, 0, sizeof(*x));
		x->ts_ms = ts;
		snprintf(vm, 128, "%s", s->pts[s->next].vm);
		while (s->next < s->n && s->pts[s->next].ts == ts &&
		       strcmp(s->pts[s->next].vm, vm) == 0) {
			x->v[s->pts[s->next].metric] = s->pts[s->next].v;
			have_cpu |= s->pts[s->next].metric == PG_LOAD_CPU;
			s->next++;
		}
		/* A step without CPU (start of the rate window) is not a sample. */
		if (have_cpu)
			return 1;
	}
	return 0;
}

static int
prom_next(void *state, struct pg_load_series *out)
{
	struct prom_state *s = state;
	struct pg_load_sample x;
	char vm[128];

	pg_load_series_reset(out);
	while (s->next < s->n) {
		size_t before = s->next;
		int rc;

		if (!prom_take(s, &x, vm))
			break;
		if (out->vm[0] && strcmp(vm, out->vm) != 0) {
			s->next = before; /* the next VM's first sample */
			return 1;
		}
		if (!out->vm[0])
			snprintf(out->vm, sizeof(out->vm), "%s", vm);
		rc = pg_load_series_push(out, &x);
		if (rc < 0)
			return rc;
	}
	return out->vm[0] ? 1 : 0;
}

/*
 * Live use: each poll reads the steps since the newest one reported (the
 * first poll the last few steps) and reports every new sample of every VM.
 */
static int
prom_poll(void *state, pg_load_sample_cb cb, void *ctx)
{
	struct prom_state *s = state;
	double end = floor((double)time(NULL) / s->step) * s->step, start;
	int64_t newest = s->last_ts;
	struct pg_load_sample x;
	char vm[128];
	int reported = 0, rc;

	start = s->last_ts ? (double)s->last_ts / 1000.0 + s->step : end - 4 * s->step;
	if (start < end - 11000 * s->step)
		start = end - 11000 * s->step;
	if (start > end)
		return 0; /* polled again within one step */
	rc = prom_fetch(s, start, end);
	if (rc < 0)
		return rc;
	while (prom_take(s, &x, vm)) {
		if (x.ts_ms <= s->last_ts)
			continue;
		rc = cb(ctx, vm, &x);
		if (rc < 0)
			return rc;
		if (x.ts_ms > newest)
			newest = x.ts_ms;
		reported++;
	}
	s->last_ts = newest;
	return reported;
}

const struct pg_load_ops pg_load_prom_ops = {
    .name = "prometheus",
    .help = "prometheus:URL[,START,END,STEP][,KEY=VAL]  query_range on libvirt (or "
	    "exporter=node) metrics; a trace over START..END (default the last day at 60 s), "
	    "or live in 'load collect' and the daemon",
    .open = prom_open_trace,
    .open_live = prom_open,
    .next = prom_next,
    .poll = prom_poll,
    .close = prom_close,
};
