/*
 * payguard dashboard: the script of se.html, in its own file so the pages run
 * under a Content-Security-Policy without 'unsafe-inline' (issue 13).
 */
'use strict';
PG.header('se');

async function ses() {
	const a = await PG.get('/api/se/ses');
	PG.$('ses-meta').textContent = 'policy ' + a.policy + ' · snapshot ' + PG.ago(a.at_ms);
	PG.table('t-ses', a.ses, [
		{k: 'name', t: 'SE'},
		{k: 'link', t: 'Link'},
		{k: 'state', t: 'State', f: PG.badge},
		{k: 'priority', t: 'Priority', num: true},
		{k: 'apps', t: 'Apps', num: true},
		{k: 'source', t: 'Registry from'},
		{k: 'apdus', t: 'APDUs', num: true},
	], {key: (r) => r.name});
}
async function routes() {
	const a = await PG.get('/api/se/routes');
	PG.$('routes-meta').textContent = a.routes.length + ' AIDs';
	PG.table('t-routes', a.routes, [
		{k: 'aid', t: 'AID', f: (v) => PG.mono(v)},
		{k: 'se', t: 'SE'},
		{k: 'label', t: 'Label'},
		{k: 'payment', t: 'Payment', f: (v) => (v ? PG.badge('payment') : '–')},
		{k: 'priority', t: 'Priority', num: true},
		{k: 'lifecycle', t: 'Life cycle', num: true, f: (v) => '0x' + Number(v).toString(16).padStart(2, '0')},
	], {key: (r) => r.aid + '@' + r.se}); /* an AID several SEs hold: one row each */
}

async function vseAct(name, action) {
	const m = PG.$('vse-msg');
	try {
		await PG.post('/api/vses/' + encodeURIComponent(name), {action});
		m.className = 'msg ok';
		m.textContent = action + ' ' + name + ': done';
	} catch (e) {
		m.className = 'msg bad';
		m.textContent = e.message;
	}
	refresh();
}
let vseNames = null; /* the hypervisor's VSEs, to drop destroyed ones from the SE OS table */
async function vses() {
	const a = await PG.get('/api/vses');
	/* a destroyed VSE leaves the table, whatever the hypervisor still lists */
	const list = (a.vses || []).filter((v) => v.state !== 'destroyed');
	vseNames = new Set(list.map((v) => v.name));
	PG.$('vses-meta').textContent = list.filter((v) => v.state === 'running').length + ' running of ' + list.length;
	PG.table('t-vses', list, [
		{k: 'name', t: 'Name'},
		{k: 'state', t: 'State', f: PG.badge},
		{k: 'request', t: 'Link', f: (v) => (v && v.expose ? v.expose.link : '–')},
		{k: 'request', t: 'Applets', wrap: true, f: (v) => (v && v.applets ? v.applets.join(', ') : '–')},
		{k: 'address', t: 'Address', f: (v) => PG.mono(String(v || '').replace(/^unix:.*\/(vse\/[^/]+\/[^/]+)$/, 'unix:…/$1'), v)},
		{k: 'request', t: 'KCV enc mac dek', f: (v) => (v && v.keys ? PG.mono([v.keys.kcv_enc, v.keys.kcv_mac, v.keys.kcv_dek].join(' ')) : '–')},
		{k: 'pid', t: 'PID', num: true},
		{k: 'restarts', t: 'Restarts', num: true},
		{k: 'rss_kib', t: 'RSS', num: true, f: (v) => (v ? PG.bytes(v * 1024) : '–')},
		{t: 'Actions', f: (v, r) => PG.el('div', {class: 'acts'},
			PG.el('button', {'data-testid': 'vse-start', disabled: r.state === 'running', onclick: () => vseAct(r.name, 'start')}, 'Start'),
			PG.el('button', {'data-testid': 'vse-stop', disabled: r.state !== 'running', onclick: () => vseAct(r.name, 'stop')}, 'Stop'),
			PG.el('button', {class: 'danger', 'data-testid': 'vse-destroy', onclick: () => { if (confirm('Destroy VSE ' + r.name + ' and its persistent memory?')) vseAct(r.name, 'destroy'); }}, 'Destroy'))},
	], {key: (r) => r.name, empty: 'no VSEs yet: create one above'});
}
PG.$('vse-form').addEventListener('submit', async (ev) => {
	ev.preventDefault();
	const m = PG.$('vse-msg');
	const name = PG.$('vse-name').value.trim();
	const applets = Array.from(document.querySelectorAll('#vse-applets input:checked'), (i) => i.value);
	const body = {name, arena: '256K', pmem: '64K', applets, expose: {link: PG.$('vse-link').value}};
	PG.$('vse-create').disabled = true;
	m.className = 'msg';
	m.textContent = 'creating ' + name + '…';
	try {
		const r = await PG.post('/api/vses', body);
		m.className = 'msg ok';
		m.textContent = 'created ' + r.vse.name + ' (' + r.vse.state + ')';
		PG.$('vse-name').value = '';
	} catch (e) {
		m.className = 'msg bad';
		m.textContent = e.message;
	}
	PG.$('vse-create').disabled = false;
	refresh();
});

async function apdus() {
	const a = await PG.get('/api/se/apdus?limit=40');
	PG.table('t-apdus', a.apdus, [
		{k: 'at_ms', t: 'Time', f: (v) => PG.time(v) + '.' + String(v % 1000).padStart(3, '0')},
		{k: 'source', t: 'From'},
		{k: 'se', t: 'SE'},
		{k: 'link', t: 'Link'},
		{k: 'capdu', t: 'C-APDU', f: (v) => PG.mono(v)},
		{k: 'rapdu', t: 'R-APDU', f: (v) => PG.mono(v)},
		{k: 'sw', t: 'SW', f: (v) => PG.el('span', {class: 'badge ' + (/^(9000|61..)$/i.test(v) ? 'ok' : 'warn')}, v)},
		{k: 'us', t: 'Latency', num: true, f: (v) => (v === null || v === undefined ? '–' : PG.num(v) + ' µs')},
	], {key: (r) => (r.id !== undefined ? String(r.id) : r.at_ms + '-' + r.se)});
}
async function seos() {
	const [a, v] = await Promise.all([PG.get('/api/seos/ses'), PG.get('/api/vses').catch(() => null)]);
	if (v)
		vseNames = new Set((v.vses || []).filter((x) => x.state !== 'destroyed').map((x) => x.name));
	/* an SE behind a VSE socket (DATA/vse/NAME/link.sock) whose VSE was destroyed is gone */
	const isGone = (x) => {
		const m = /\/vse\/([^/]+)\/link\.sock$/.exec(String(x.addr || ''));
		return m && vseNames && !vseNames.has(m[1]);
	};
	const all = Array.isArray(a) ? a : a.ses || [];
	const list = all.filter((x) => !isGone(x));
	const failing = list.filter((x) => x.exchanges_failed > 0);
	PG.$('seos-meta').textContent = list.length + ' SEs' + (a.exchanges !== undefined ? ' · ' + a.exchanges_ok + ' of ' + a.exchanges + ' exchanges ok' : '') +
		(failing.length ? ' · failures on ' + failing.map((x) => x.name).join(', ') : '') + (all.length > list.length ? ' · ' + (all.length - list.length) + ' destroyed VSE(s) hidden' : '');
	if (list.length && list.every((x) => 'name' in x && 'state' in x && 'link' in x)) {
		PG.table('t-seos', list, [
			{k: 'name', t: 'SE'},
			{k: 'id', t: 'SE id', f: (v) => PG.mono(v)},
			{k: 'link', t: 'Link'},
			{k: 'addr', t: 'Address', f: (v) => PG.mono(String(v || '').replace(/^unix:.*\/([^/]+\/[^/]+)$/, 'unix:…/$1'), v)},
			{k: 'state', t: 'State', f: (v, r) => PG.el('span', {title: r.reason || ''}, PG.badge(v))},
			{k: 'apps', t: 'Apps', num: true},
			{k: 'config_version', t: 'Config', num: true},
			{k: 'exchanges', t: 'Exchanges', num: true, f: (v) => (v === undefined ? '–' : PG.num(v))},
			{k: 'exchanges_failed', t: 'Failed', num: true, f: (v) => (v === undefined ? '–' : v > 0 ? PG.el('span', {class: 'badge bad', 'data-testid': 'seos-failed'}, PG.num(v)) : '0')},
			{k: 'last_error', t: 'Last failure', wrap: true, f: (v) => (v ? PG.el('span', {class: 'reason'}, v) : '–')},
		], {key: (r) => r.name, cls: (r) => (r.exchanges_failed > 0 ? 'alerting' : '')});
	} else {
		PG.genericTable('t-seos', list); /* a shape this page does not know: show every field */
	}
}
const refresh = PG.poll([['ses', ses], ['routes', routes], ['vses', vses], ['apdus', apdus], ['seos', seos]]);
