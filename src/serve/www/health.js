/*
 * payguard dashboard: the script of health.html, in its own file so the pages run
 * under a Content-Security-Policy without 'unsafe-inline' (issue 13).
 */
'use strict';
PG.header('health');

async function services() {
	const svc = await PG.get('/api/services');
	const up = svc.filter((s) => s.state === 'running').length;
	PG.$('svc-meta').textContent = up + ' of ' + svc.length + ' running';
	PG.table('t-svc', svc, [
		{k: 'name', t: 'Service'},
		{k: 'state', t: 'State', f: PG.badge},
		{k: 'pid', t: 'PID', num: true, f: (v) => (v ? String(v) : '–')},
		{k: 'restarts', t: 'Restarts', num: true},
		{k: 'last_exit', t: 'Last exit', f: (v) => (v ? PG.el('span', {class: 'badge warn'}, v) : '–')},
		{k: 'started_ms', t: 'Uptime', f: (v, r) => (r.state === 'running' && v ? PG.dur(Date.now() - v) : '–')},
		{k: 'started_ms', t: 'Started', f: (v) => (v ? PG.el('span', {title: new Date(v).toISOString()}, PG.time(v)) : '–')},
	], {key: (r) => r.name});
}
async function health() {
	const h = await PG.get('/api/health');
	PG.$('health-badge').replaceChildren(PG.badge(h.status));
	const kv = [['status', h.status], ['uptime', PG.dur(h.uptime_ms)], ['data directory', h.data_dir], ['load period', h.load_period_ms + ' ms'], ['config reloads', h.reloads]];
	PG.$('health').replaceChildren(...kv.flatMap(([k, v]) => [PG.el('dt', null, k), PG.el('dd', {'data-key': k}, v)]));
	/* the API's own connection use (issue 17): open now against the limit, refusals */
	const t = h.http;
	if (!t) {
		PG.$('http').replaceChildren(PG.el('dt', null, 'connections'), PG.el('dd', null, 'this daemon does not report them'));
		return;
	}
	const use = t.connection_limit ? t.connections / t.connection_limit : 0;
	PG.$('http-badge').replaceChildren(PG.badge(t.refused_total > 0 ? 'refusing' : use > 0.8 ? 'busy' : 'ok'));
	const hk = [
		['connections', PG.el('span', null, PG.el('span', {class: 'bar ' + (use > 0.8 ? 'failed' : 'done')}, PG.el('i', {style: 'width:' + Math.round(Math.min(1, use) * 100) + '%'})), ' ', t.connections + ' of ' + t.connection_limit)],
		['accepted', PG.num(t.connections_total)],
		['refused', t.refused_total > 0 ? PG.el('span', {class: 'badge bad'}, PG.num(t.refused_total)) : '0'],
		['requests', PG.num(t.requests_total)],
	];
	PG.$('http').replaceChildren(...hk.flatMap(([k, v]) => [PG.el('dt', null, k), PG.el('dd', {'data-key': k, 'data-value': k === 'connections' ? t.connections : k === 'refused' ? t.refused_total : null}, v)]));
}

/* The cluster (issue 14): every node sharing the store, and who leads each
 * singleton. On SQLite this daemon is the one node and leads them all. */
async function cluster() {
	const c = await PG.get('/api/cluster');
	const up = c.nodes.filter((n) => n.state === 'up').length;
	PG.$('cluster-meta').textContent = up + ' of ' + c.nodes.length + ' nodes up · ' + c.engine + (c.engine === 'sqlite' ? ' (one node)' : '');
	PG.table('t-nodes', c.nodes, [
		{k: 'name', t: 'Node', f: (v, r) => PG.el('span', null, v, r.self ? PG.el('span', {class: 'small'}, ' (this one)') : null)},
		{k: 'state', t: 'State', f: PG.badge},
		{k: 'address', t: 'API', f: (v) => PG.el('span', {class: 'mono'}, v)},
		{k: 'services', t: 'Services', wrap: true, f: (v) => PG.el('span', {class: 'small'}, (v || []).map((s) => s.name + ' ' + s.state).join(' · ') || '–')},
		{k: 'age_ms', t: 'Heartbeat', num: true, f: (v) => PG.dur(v) + ' ago'},
		{k: 'version', t: 'Version'},
	], {key: (r) => r.name});
	PG.table('t-leaders', c.leaders, [
		{k: 'singleton', t: 'Singleton'},
		{k: 'node', t: 'Led by'},
		{k: 'node_state', t: 'Node', f: PG.badge},
		{k: 'since_ms', t: 'Since', f: (v) => (v ? PG.el('span', {title: new Date(v).toISOString()}, PG.time(v)) : '–')},
	], {key: (r) => r.singleton, empty: 'no singleton runs'});
}

/*
 * Prometheus text format: "# HELP name text" and "name{labels} value" lines.
 * One row per metric: the sum over its series and each series' value.
 */
function parseMetrics(text) {
	const help = {}, by = new Map();
	for (const line of text.split('\n')) {
		const h = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
		if (h) {
			help[h[1]] = h[2];
			continue;
		}
		if (!line || line.startsWith('#'))
			continue;
		const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
		if (!m)
			continue;
		if (!by.has(m[1]))
			by.set(m[1], {name: m[1], total: 0, series: []});
		const r = by.get(m[1]);
		const v = Number(m[3]);
		r.total += v;
		if (m[2]) /* show the label values only: decision="moved" -> moved */
			r.series.push(m[2].slice(1, -1).replace(/[a-z_]+="([^"]*)"/g, '$1') + ' ' + PG.num(v, Number.isInteger(v) ? 0 : 2));
	}
	return [...by.values()].map((r) => Object.assign(r, {help: help[r.name] || ''}));
}
async function metrics() {
	const rows = parseMetrics(await PG.text('/metrics')).filter((r) => r.name.startsWith('payguard_'));
	PG.table('t-metrics', rows, [
		{k: 'help', t: 'Counter'},
		{k: 'name', t: 'Metric', f: (v) => PG.el('span', {class: 'mono'}, v)},
		{k: 'total', t: 'Total', num: true, f: (v) => PG.num(v, Number.isInteger(v) ? 0 : 2)},
		{k: 'series', t: 'By label', wrap: true, f: (v) => (v.length ? PG.el('span', {class: 'small'}, v.join(' · ')) : '–')},
	], {key: (r) => r.name});
}
PG.poll([['svc', services], ['health', health], ['cluster', cluster], ['metrics', metrics]]);
