/*
 * payguard dashboard: the script of pos.html, in its own file so the pages run
 * under a Content-Security-Policy without 'unsafe-inline' (issue 13).
 */
'use strict';
PG.header('pos');
let plotted = []; /* alerts whose evidence the plot shows (open and acknowledged) */
let names = {}; /* terminal id -> merchant name (pos_merchants.name through pos_terminals) */
/*
 * What is selected (issue 17): a terminal (from the URL /pos?terminal=T, a
 * terminal row or an alert row) filters the alerts table to that terminal,
 * and the map fits the selection; a cluster's merchants, once clicked, are
 * the selection too. sel = {terminals: [...], alert: id or null, group: a
 * clicked cluster (fit the merchants only), label}.
 */
let termFilter = new URLSearchParams(location.search).get('terminal') || null;
let sel = termFilter ? {terminals: [termFilter], alert: null, label: termFilter} : null;
const CLUSTER_PX = 16; /* merchants closer than this on screen are drawn as one */

function select(s, filter) {
	sel = s;
	if (filter !== undefined) {
		termFilter = filter;
		history.replaceState(null, '', filter ? '/pos?terminal=' + encodeURIComponent(filter) : '/pos');
	}
	showSelection();
	refresh();
}
function showSelection() {
	const opt = PG.$('pos-zoom-sel');
	opt.disabled = !sel;
	opt.textContent = sel ? 'the selection: ' + sel.label : 'the selection';
	if (sel)
		PG.$('pos-zoom').value = 'selection';
	else if (PG.$('pos-zoom').value === 'selection')
		PG.$('pos-zoom').value = 'all';
	PG.$('pos-unselect').hidden = !sel;
	const f = PG.$('alert-filter');
	if (termFilter)
		f.replaceChildren(PG.el('span', {class: 'chip', 'data-terminal': termFilter}, 'terminal ' + termFilter + (names[termFilter] ? ' · ' + names[termFilter] : ''),
			PG.el('a', {href: '/pos', title: 'all terminals', 'data-testid': 'alert-filter-clear', onclick: (ev) => {
				ev.preventDefault();
				select(null, null);
			}}, '×')));
	else
		f.replaceChildren();
}
PG.$('alert-state').addEventListener('change', () => refresh());
PG.$('pos-zoom').addEventListener('change', () => {
	if (PG.$('pos-zoom').value !== 'selection') {
		sel = null;
		showSelection();
	}
	refresh();
});
PG.$('pos-unselect').addEventListener('click', () => select(null));
showSelection();
/* A link to a terminal's alerts: a real link (new tab works), handled in the page. */
function termLink(tid, testid) {
	return PG.el('a', {href: '/pos?terminal=' + encodeURIComponent(tid), 'data-testid': testid, title: 'the alerts of ' + tid, onclick: (ev) => {
		if (ev.button !== 0 || ev.ctrlKey || ev.metaKey || ev.shiftKey)
			return;
		ev.preventDefault();
		select({terminals: [tid], alert: null, label: (names[tid] || tid)}, tid);
	}}, names[tid] || '?', ' ', PG.el('span', {class: 'small'}, tid));
}
function ageCell(v) {
	const g = PG.ageOf(v);
	return PG.el('span', {class: 'age ' + g.cls, 'data-age': g.cls, title: 'open for ' + PG.dur(g.ms) + ' (' + g.text + ')'}, PG.ago(v));
}

async function act(id, action) {
	const m = PG.$('alert-msg');
	try {
		const a = await PG.post('/api/pos/alerts/' + id, {action});
		m.className = 'msg ok';
		m.textContent = 'alert ' + a.id + ' is ' + a.state;
	} catch (e) {
		m.className = 'msg bad';
		m.textContent = e.message;
	}
	refresh();
}
function evidence(e) {
	if (!e)
		return '–';
	const l1 = [], l2 = [];
	if (e.distance_m != null)
		l1.push(PG.num(e.distance_m / 1000, 1) + ' km from the merchant (' + PG.num((e.excess_m || 0) / 1000, 1) + ' km over its limit)');
	if (e.cell)
		l1.push(`cell ${e.cell.radio} ${e.cell.mcc}-${e.cell.mnc} ${e.cell.area}/${e.cell.cid}` + (e.merchant && e.merchant.mcc !== e.cell.mcc ? ` (merchant's country: MCC ${e.merchant.mcc})` : ''));
	if (e.estimate)
		l2.push('estimate ' + e.estimate.lat.toFixed(4) + ', ' + e.estimate.lon.toFixed(4) + ' ± ' + PG.num(e.estimate.acc_m) + ' m, ' + e.estimate.confidence + ' confidence, ' + e.estimate.cells + ' cell' + (e.estimate.cells === 1 ? '' : 's'));
	if (e.stan)
		l2.push('STAN ' + e.stan);
	return PG.el('div', {class: 'small', title: JSON.stringify(e)}, l1.join(' · '), PG.el('br'), l2.join(' · '));
}
function alerts(all, live) {
	const st = PG.$('alert-state').value;
	let list = all.filter((a) => !st || a.state === st);
	if (termFilter)
		list = list.filter((a) => a.terminal === termFilter);
	list = list.slice(0, 100);
	plotted = live.filter((a) => a.evidence && a.evidence.estimate);
	PG.$('alerts-meta').textContent = list.filter((a) => a.state === 'open').length + ' open of ' + list.length + ' shown';
	PG.table('t-alerts', list, [
		{k: 'id', t: '#', num: true},
		{k: 'state', t: 'State', f: PG.badge},
		{k: 'terminal', t: 'Merchant · terminal', f: (v) => termLink(v, 'alert-terminal')},
		{k: 'reason', t: 'Reason'},
		{k: 'evidence', t: 'Evidence', f: evidence, wrap: true, cls: 'wide'},
		{k: 'transactions', t: 'Tx', num: true},
		{k: 'opened_ms', t: 'Opened', f: (v, r) => PG.el('span', {title: 'opened ' + new Date(v).toISOString() + ', updated ' + new Date(r.updated_ms).toISOString()}, r.state === 'open' ? ageCell(v) : PG.ago(v), PG.el('br'), PG.el('span', {class: 'small'}, 'last ' + PG.ago(r.updated_ms)))},
		{k: 'note', t: 'Note'},
		{t: 'Actions', f: (v, r) => PG.el('div', {class: 'acts'},
			PG.el('button', {'data-testid': 'ack', disabled: r.state !== 'open', onclick: () => act(r.id, 'acknowledge')}, 'Acknowledge'),
			PG.el('button', {'data-testid': 'close', disabled: r.state === 'closed', onclick: () => act(r.id, 'close')}, 'Close'))},
	], {key: (r) => String(r.id), empty: (st ? 'no ' + st + ' alerts' : 'no alerts yet') + (termFilter ? ' for terminal ' + termFilter : ''),
		cls: (r) => (r.state === 'open' ? 'alert-open ' + PG.ageOf(r.opened_ms).cls : '') + (sel && sel.alert === r.id ? ' sel' : ''),
		click: (r) => select({terminals: [r.terminal], alert: r.id, label: 'alert #' + r.id})});
}

/*
 * Plot: a local equirectangular projection around the middle of the points
 * that are to fit (everything, the merchants, or the selection), scaled so
 * they and their accuracy circles fit; accuracy circles are drawn in the
 * same metres, so their size is true to the scale bar. Merchants closer than
 * CLUSTER_PX on screen are grouped into one circle with their count; a click on it selects its merchants, so the map zooms
 * until they are apart, and merchants that no zoom separates (one spot) are
 * spread on a ring around it.
 */
function plot(ts, alerts, openBy) {
	const W = 720, H = 460, PAD = 44;
	const ext = PG.$('pos-zoom').value;
	const pts = [];
	if (ext === 'selection' && sel) {
		for (const t of ts.filter((x) => sel.terminals.includes(x.terminal))) {
			pts.push([t.lat, t.lon, 50]);
			if (t.est_lat != null && sel.alert === null && !sel.group)
				pts.push([t.est_lat, t.est_lon, t.acc_m || 0]);
		}
		/* a group of merchants: their own positions only, so they come apart */
		for (const a of alerts.filter((x) => !sel.group && (sel.alert === null ? sel.terminals.includes(x.terminal) : x.id === sel.alert)))
			pts.push([a.evidence.estimate.lat, a.evidence.estimate.lon, a.evidence.estimate.acc_m || 0]);
	} else if (ext === 'merchants') {
		for (const t of ts)
			pts.push([t.lat, t.lon, 50]);
	} else {
		for (const t of ts) {
			pts.push([t.lat, t.lon, 50]);
			if (t.est_lat != null)
				pts.push([t.est_lat, t.est_lon, t.acc_m || 0]);
		}
		for (const a of alerts)
			pts.push([a.evidence.estimate.lat, a.evidence.estimate.lon, a.evidence.estimate.acc_m || 0]);
	}
	if (!pts.length) {
		PG.$('posplot').replaceChildren(PG.el('div', {class: 'empty-plot'}, 'no data yet'));
		return;
	}
	const R = 6371008.8, rad = Math.PI / 180;
	const la0 = (Math.min(...pts.map((p) => p[0])) + Math.max(...pts.map((p) => p[0]))) / 2;
	const lo0 = (Math.min(...pts.map((p) => p[1])) + Math.max(...pts.map((p) => p[1]))) / 2;
	const k = Math.cos(la0 * rad);
	const m = (la, lo) => [(lo - lo0) * rad * R * k, (la - la0) * rad * R];
	let ex = 300, ey = 300;
	for (const p of pts) {
		const [x, y] = m(p[0], p[1]);
		ex = Math.max(ex, Math.abs(x) + p[2]);
		ey = Math.max(ey, Math.abs(y) + p[2]);
	}
	const mpp = Math.max(ex / (W / 2 - PAD), ey / (H / 2 - PAD)); /* metres per pixel */
	const xy = (la, lo) => {
		const [x, y] = m(la, lo);
		return [W / 2 + x / mpp, H / 2 - y / mpp];
	};
	const s = PG.svg('svg', {class: 'plot', viewBox: `0 0 ${W} ${H}`, id: 'pos-svg', 'data-testid': 'pos-svg', role: 'img', 'data-mpp': mpp.toFixed(3), 'data-extent': ext});
	/* graticule every 0.1°, 0.5° or 1° depending on the scale */
	const span = (W * mpp) / (R * rad * k);
	const step = span > 4 ? 1 : span > 1 ? 0.5 : span > 0.3 ? 0.1 : span > 0.06 ? 0.02 : 0.005;
	const dec = step < 0.01 ? 3 : step < 0.1 ? 2 : 1;
	const g = PG.svg('g', {class: 'grid'});
	const dLat = (H * mpp) / (R * rad) / 2 + step, dLon = span / 2 + step;
	for (let lo = Math.floor((lo0 - dLon) / step) * step; lo <= lo0 + dLon; lo += step) {
		const [x] = xy(la0, lo);
		g.append(PG.svg('line', {x1: x, y1: 0, x2: x, y2: H}));
		if (x > 40 && x < W - 60)
			s.append(PG.svg('text', {x: x + 3, y: H - 4}, lo.toFixed(dec) + '°E'));
	}
	for (let la = Math.floor((la0 - dLat) / step) * step; la <= la0 + dLat; la += step) {
		const [, y] = xy(la, lo0);
		g.append(PG.svg('line', {x1: 0, y1: y, x2: W, y2: y}));
		if (y > 40 && y < H - 20)
			s.append(PG.svg('text', {x: 3, y: y - 3}, la.toFixed(dec) + '°N'));
	}
	s.prepend(g);
	/* a terminal with an open alert is never green, whatever its last decision */
	const col = (t) => (openBy[t.terminal] ? '#d8402f' : t.last_decision === 'in_place' ? '#2e9e5b' : t.last_decision === 'moved' ? '#c0352b' : '#8a94a6');
	for (const t of ts) {
		if (t.est_lat == null)
			continue;
		const [mx, my] = xy(t.lat, t.lon), [ex2, ey2] = xy(t.est_lat, t.est_lon);
		const c = col(t), what = openBy[t.terminal] ? 'open alert' : t.last_decision;
		s.append(PG.svg('line', {x1: mx, y1: my, x2: ex2, y2: ey2, stroke: '#b9c1cd', 'stroke-dasharray': '4 3'}));
		s.append(PG.svg('circle', {cx: ex2, cy: ey2, r: Math.max(3, (t.acc_m || 0) / mpp), fill: c, 'fill-opacity': 0.12, stroke: c, 'stroke-width': 1.2, 'data-kind': 'accuracy', 'data-terminal': t.terminal},
			PG.svg('title', null, `${t.name} (${t.terminal}) estimate ± ${Math.round(t.acc_m)} m (${what})`)));
		s.append(PG.svg('circle', {cx: ex2, cy: ey2, r: 2.5, fill: c, 'data-kind': 'estimate', 'data-terminal': t.terminal}));
	}
	/* where the alerts' transactions were: their cell estimates */
	for (const a of alerts) {
		const e = a.evidence.estimate, mer = a.evidence.merchant;
		const [x, y] = xy(e.lat, e.lon);
		if (mer) {
			const [mx, my] = xy(mer.lat, mer.lon);
			s.append(PG.svg('line', {x1: mx, y1: my, x2: x, y2: y, stroke: '#e0892b', 'stroke-width': 1.2, 'stroke-dasharray': '6 4'}));
		}
		s.append(PG.svg('circle', {cx: x, cy: y, r: Math.max(4, (e.acc_m || 0) / mpp), fill: '#e0892b', 'fill-opacity': 0.15, stroke: '#e0892b', 'stroke-width': sel && sel.alert === a.id ? 3 : 1.2, 'data-kind': 'alert', 'data-alert': a.id},
			PG.svg('title', null, `alert ${a.id} (${a.state}): ${names[a.terminal] || ''} ${a.terminal} seen ± ${Math.round(e.acc_m)} m, ${PG.num((a.evidence.distance_m || 0) / 1000, 1)} km away`)));
		s.append(PG.svg('circle', {cx: x, cy: y, r: 3, fill: '#e0892b', 'data-kind': 'alert-estimate'}));
		const right = x > W - 130; /* near the right edge: label on the left */
		s.append(PG.svg('text', {x: right ? x - 7 : x + 7, y: y + 4, 'text-anchor': right ? 'end' : 'start', style: 'fill:#a85d12;font-weight:600'}, '#' + a.id + ' ' + (names[a.terminal] || a.terminal)));
	}
	/* merchants: each joins the first group whose first merchant is closer
	 * than CLUSTER_PX on screen, else starts one (so no two single merchants
	 * are closer than that, and a group spans at most twice that) */
	const mp = ts.map((t) => xy(t.lat, t.lon));
	const groups = new Map();
	ts.forEach((t, i) => {
		/* a selected terminal's merchant is always drawn on its own */
		const alone = (x) => sel && !sel.group && sel.terminals.includes(ts[x].terminal);
		for (const [seed, idx] of groups)
			if (!alone(i) && !alone(seed) && Math.hypot(mp[i][0] - mp[seed][0], mp[i][1] - mp[seed][1]) < CLUSTER_PX) {
				idx.push(i);
				return;
			}
		groups.set(i, [i]);
	});
	const merchant = (t, x, y) => {
		s.append(PG.svg('circle', {cx: x, cy: y, r: 5, fill: '#2457c5', stroke: openBy[t.terminal] ? '#d8402f' : '#fff', 'stroke-width': openBy[t.terminal] ? 2.5 : 1.5, 'data-kind': 'merchant', 'data-terminal': t.terminal},
			PG.svg('title', null, `${t.name} (${t.terminal}), merchant ${t.merchant}`)));
		if (ext !== 'all' || openBy[t.terminal]) {
			const right = x > W - 110; /* near the right edge: label on the left */
			s.append(PG.svg('text', {x: right ? x - 8 : x + 8, y: y - 6, 'text-anchor': right ? 'end' : 'start', class: 'mlabel', style: 'fill:#1d2430'}, t.name));
		}
	};
	let nclusters = 0;
	for (const idx of groups.values()) {
		if (idx.length === 1) {
			merchant(ts[idx[0]], mp[idx[0]][0], mp[idx[0]][1]);
			continue;
		}
		const cx = idx.reduce((a, i) => a + mp[i][0], 0) / idx.length, cy = idx.reduce((a, i) => a + mp[i][1], 0) / idx.length;
		const members = idx.map((i) => ts[i].terminal);
		if (sel && sel.terminals.length === members.length && members.every((x) => sel.terminals.includes(x))) {
			/* already expanded and still one spot: a ring around it */
			idx.forEach((i, n) => {
				const a = (2 * Math.PI * n) / idx.length, x = cx + 22 * Math.cos(a), y = cy + 22 * Math.sin(a);
				s.append(PG.svg('line', {x1: cx, y1: cy, x2: x, y2: y, stroke: '#9db5ea'}));
				merchant(ts[i], x, y);
			});
			continue;
		}
		nclusters++;
		const alerting = members.filter((x) => openBy[x]).length;
		const c = PG.svg('g', {class: 'cluster', 'data-kind': 'cluster', 'data-count': idx.length, 'data-members': members.join(' '), 'data-testid': 'pos-cluster'},
			PG.svg('circle', {cx, cy, r: 9 + 2 * Math.sqrt(idx.length), fill: '#2457c5', stroke: alerting ? '#d8402f' : '#9db5ea', 'stroke-width': alerting ? 3 : 3}),
			PG.svg('text', {x: cx, y: cy + 4, 'text-anchor': 'middle'}, String(idx.length)),
			PG.svg('title', null, idx.length + ' merchants here (click to expand): ' + idx.map((i) => ts[i].name).join(', ') + (alerting ? ' · ' + alerting + ' with open alerts' : '')));
		c.addEventListener('click', () => select({terminals: members, alert: null, group: true, label: idx.length + ' merchants'}));
		s.append(c);
	}
	/* labels for terminals away from home, so they do not pile up in the centre */
	for (const t of ts) {
		if (t.est_lat == null || t.last_decision !== 'moved' || alerts.some((x) => x.terminal === t.terminal))
			continue;
		const [x, y] = xy(t.est_lat, t.est_lon);
		const right = x > W - 130;
		s.append(PG.svg('text', {x: right ? x - 6 : x + 6, y: y - 6, 'text-anchor': right ? 'end' : 'start', style: 'fill:#c0352b;font-weight:600'}, t.name));
	}
	/* scale bar: a round number of km near 120 px */
	const want = 120 * mpp, p10 = Math.pow(10, Math.floor(Math.log10(want)));
	const len = [1, 2, 5, 10].map((f) => f * p10).reduce((a, b) => (Math.abs(b - want) < Math.abs(a - want) ? b : a));
	const bx = 16, by = H - 30;
	s.append(PG.svg('rect', {x: bx - 6, y: by - 16, width: len / mpp + 12, height: 24, fill: '#fff', 'fill-opacity': 0.85}));
	s.append(PG.svg('line', {x1: bx, y1: by, x2: bx + len / mpp, y2: by, stroke: '#1d2430', 'stroke-width': 2}));
	s.append(PG.svg('text', {x: bx + len / mpp / 2, y: by - 4, 'text-anchor': 'middle', style: 'fill:#1d2430'}, len >= 1000 ? len / 1000 + ' km' : len + ' m'));
	PG.$('posplot').replaceChildren(s);
	PG.$('plot-meta').textContent = PG.num(mpp * 100 / 1000, mpp < 10 ? 2 : 1) + ' km per 100 px' + (nclusters ? ' · ' + nclusters + ' group' + (nclusters > 1 ? 's' : '') + ' of close merchants' : '');
}
function terminals(ts, openBy) {
	PG.$('terms-meta').textContent = ts.length + ' terminals · ' + PG.num(ts.reduce((a, t) => a + t.transactions, 0)) + ' transactions · ' + Object.keys(openBy).length + ' with open alerts';
	PG.table('t-terms', ts, [
		{k: 'terminal', t: 'Terminal', f: (v, r) => PG.el('span', {title: 'merchant ' + r.merchant + ', last seen ' + PG.ago(r.last_ts)}, termLink(v, 'term-link'))},
		{k: 'transactions', t: 'Tx', num: true},
		{k: 'moved', t: 'Moved', num: true},
		/* an open alert outranks the last decision: never green then */
		{k: 'last_decision', t: 'Last', f: (v, r) => (openBy[r.terminal] ? PG.el('span', {class: 'badge bad', 'data-state': 'alert'}, 'alert open') : PG.badge(v))},
		{k: 'open_alerts', t: 'Alerts', num: true, f: (v, r) => {
			const o = openBy[r.terminal];
			if (!o)
				return '0';
			const g = PG.ageOf(Math.min(...o.map((a) => a.opened_ms)));
			return PG.el('span', {class: 'age ' + g.cls, 'data-age': g.cls, title: 'the oldest waits ' + g.text}, String(o.length));
		}},
	], {key: (r) => r.terminal, cls: (r) => (openBy[r.terminal] ? 'alerting alert-open ' + PG.ageOf(Math.min(...openBy[r.terminal].map((a) => a.opened_ms))).cls : '') + (sel && sel.terminals.includes(r.terminal) ? ' sel' : '')});
}
async function pos() {
	const [ts, all] = await Promise.all([PG.get('/api/pos/terminals'), PG.get('/api/pos/alerts?limit=1000')]);
	names = Object.fromEntries(ts.map((t) => [t.terminal, t.name]));
	const live = all.filter((a) => a.state !== 'closed');
	const openBy = {};
	for (const a of all.filter((x) => x.state === 'open'))
		(openBy[a.terminal] = openBy[a.terminal] || []).push(a);
	showSelection();
	alerts(all, live);
	terminals(ts, openBy);
	try {
		plot(ts, plotted, openBy);
		PG.clearErr('plot');
	} catch (e) {
		PG.showErr('plot', e);
	}
}
const refresh = PG.poll([['alerts', pos]]);
