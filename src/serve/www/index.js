/*
 * payguard dashboard: the script of index.html, in its own file so the pages run
 * under a Content-Security-Policy without 'unsafe-inline' (issue 13).
 */
'use strict';
PG.header('index');
const set = (id, v) => { PG.$(id).textContent = v; };
/* Each card reads its own routes; one that fails shows its message below the cards. */
const errs = {};
function cardErr(area, e) {
	if (e)
		errs[area] = e.message;
	else
		delete errs[area];
	const m = Object.values(errs).join(' · ');
	if (m)
		PG.showErr('sum', {message: m});
	else
		PG.clearErr('sum');
}
async function area(name, fn) {
	try {
		await fn();
		cardErr(name, null);
	} catch (e) {
		cardErr(name, e);
		throw e; /* counted by the poll loop too */
	}
}

async function services() {
	const [svc, health] = await Promise.all([PG.get('/api/services'), PG.get('/api/health')]);
	const running = svc.filter((s) => s.state === 'running').length;
	set('sum-svc-running', running);
	set('sum-svc-total', svc.length);
	set('sum-svc-restarts', svc.reduce((a, s) => a + s.restarts, 0));
	PG.$('sum-health-badge').replaceChildren(PG.badge(running === svc.length ? 'healthy' : 'degraded'));
	set('sum-uptime', 'up ' + PG.dur(health.uptime_ms) + ' · data in ' + health.data_dir);
	PG.table('t-svc', svc, [
		{k: 'name', t: 'Service'},
		{k: 'state', t: 'State', f: PG.badge},
		{k: 'restarts', t: 'Restarts', num: true},
		{k: 'started_ms', t: 'Up for', f: (v, r) => (r.state === 'running' ? PG.dur(Date.now() - v) : '–')},
	], {key: (r) => r.name});
}
const tasks = [
	['svc', services],
	['se', () => area('SEs', async () => {
		const [ses, routes] = await Promise.all([PG.get('/api/se/ses'), PG.get('/api/se/routes')]);
		set('sum-se-up', ses.ses.filter((s) => s.state === 'up').length + ' / ' + ses.ses.length);
		set('sum-se-routes', routes.routes.length);
		set('sum-se-foot', 'policy ' + ses.policy + ' · ' + ses.ses.reduce((a, s) => a + s.apdus, 0) + ' APDUs · snapshot ' + PG.ago(ses.at_ms));
		try {
			const v = await PG.get('/api/vses');
			set('sum-se-vses', v.vses.length);
		} catch (e) {
			set('sum-se-vses', '?');
			throw e;
		}
	})],
	['images', () => area('images', async () => {
		const [imgs, f, jobs] = await Promise.all([PG.get('/api/images'), PG.get('/api/images/findings'), PG.get('/api/images/jobs')]);
		set('sum-img-images', imgs.length);
		set('sum-img-findings', f.length);
		set('sum-img-jobs', jobs.length);
		const act = jobs.filter((j) => j.state === 'queued' || j.state === 'running').length;
		set('sum-img-foot', imgs.reduce((a, i) => a + (i.packages || 0), 0) + ' packages scanned' + (act ? ' · ' + act + ' upgrade(s) active' : ''));
	})],
	['load', () => area('load', async () => {
		const [vms, types] = await Promise.all([PG.get('/api/load/vms'), PG.get('/api/load/types')]);
		set('sum-load-vms', vms.vms.length);
		set('sum-load-types', types.types.length);
		const mean = vms.vms.reduce((a, v) => a + v.load, 0) / Math.max(1, vms.vms.length);
		set('sum-load-mean', PG.num(mean, 1));
		set('sum-load-foot', 'silhouette ' + PG.num(vms.silhouette, 2) + ' · estimate ' + PG.ago(vms.at_ms));
	})],
	['pos', () => area('POS', async () => {
		const [terms, open, acked] = await Promise.all([PG.get('/api/pos/terminals'), PG.get('/api/pos/alerts?state=open&limit=1000'), PG.get('/api/pos/alerts?state=acknowledged&limit=1000')]);
		set('sum-pos-terms', terms.length);
		set('sum-pos-tx', PG.num(terms.reduce((a, t) => a + t.transactions, 0)));
		set('sum-pos-open', open.length);
		PG.alertCount(PG.$('sum-pos-count'), open);
		set('sum-pos-foot', acked.length + ' acknowledged · ' + terms.filter((t) => t.last_decision === 'moved').length + ' terminal(s) last seen away');
		const names = Object.fromEntries(terms.map((t) => [t.terminal, t.name]));
		PG.table('t-alerts', open.slice(0, 12), [
			{k: 'id', t: '#', num: true},
			{k: 'terminal', t: 'Terminal', f: (v) => PG.el('a', {href: '/pos?terminal=' + encodeURIComponent(v), 'data-testid': 'alert-terminal'}, names[v] || '?', ' ', PG.el('span', {class: 'small'}, v))},
			{k: 'reason', t: 'Reason', f: (v) => PG.badge(v)},
			{k: 'evidence', t: 'Distance', num: true, f: (v) => (v && v.distance_m != null ? PG.num(v.distance_m / 1000, 1) + ' km' : '–')},
			{k: 'transactions', t: 'Tx', num: true},
			{k: 'opened_ms', t: 'Opened', f: (v) => { const g = PG.ageOf(v); return PG.el('span', {class: 'age ' + g.cls, title: 'waiting ' + g.text}, PG.ago(v)); }},
		], {key: (r) => String(r.id), empty: 'no open alerts', cls: (r) => 'alert-open ' + PG.ageOf(r.opened_ms).cls});
	})],
];
PG.poll(tasks.map(([n, f]) => [n === 'svc' ? 'svc' : 'sum-' + n, f]));
