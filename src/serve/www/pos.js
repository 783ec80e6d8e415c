/*
 * payguard dashboard: the script of pos.html, in its own file so the pages run
 * under a Content-Security-Policy without 'unsafe-inline' (issue 13).
 */
'use strict';
PG.header('pos');
PG.$('alert-state').addEventListener('change', () => refresh());
PG.$('pos-zoom').addEventListener('change', () => refresh());
let plotted = []; /* alerts whose evidence the plot shows (open and acknowledged) */

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
async function alerts() {
	const st = PG.$('alert-state').value;
	const list = await PG.get('/api/pos/alerts?limit=50' + (st ? '&state=' + st : ''));
	plotted = list.filter((a) => a.state !== 'closed' && a.evidence && a.evidence.estimate);
	PG.$('alerts-meta').textContent = list.filter((a) => a.state === 'open').length + ' open of ' + list.length + ' shown';
	PG.table('t-alerts', list, [
		{k: 'id', t: '#', num: true},
		{k: 'state', t: 'State', f: PG.badge},
		{k: 'terminal', t: 'Terminal'},
		{k: 'reason', t: 'Reason'},
		{k: 'evidence', t: 'Evidence', f: evidence, wrap: true, cls: 'wide'},
		{k: 'transactions', t: 'Tx', num: true},
		{k: 'opened_ms', t: 'Opened', f: (v, r) => PG.el('span', {title: 'opened ' + new Date(v).toISOString() + ', updated ' + new Date(r.updated_ms).toISOString()}, PG.ago(v), PG.el('br'), PG.el('span', {class: 'small'}, 'last ' + PG.ago(r.updated_ms)))},
		{k: 'note', t: 'Note'},
		{t: 'Actions', f: (v, r) => PG.el('div', {class: 'acts'},
			PG.el('button', {'data-testid': 'ack', disabled: r.state !== 'open', onclick: () => act(r.id, 'acknowledge')}, 'Acknowledge'),
			PG.el('button', {'data-testid': 'close', disabled: r.state === 'closed', onclick: () => act(r.id, 'close')}, 'Close'))},
	], {key: (r) => String(r.id), empty: st ? 'no ' + st + ' alerts' : 'no alerts yet'});
}

/*
 * Plot: a local equirectangular projection around the middle of all points
 * (metres east/north of it), scaled to fit; accuracy circles are drawn in
 * the same metres, so their size is true to the scale bar.
 */
function plot(ts, alerts) {
	const W = 720, H = 460, PAD = 44;
	const zoom = PG.$('pos-zoom').value === 'merchants';
	const pts = [];
	for (const t of ts) {
		pts.push([t.lat, t.lon, 50]);
		if (t.est_lat != null)
			pts.push([t.est_lat, t.est_lon, t.acc_m || 0]);
	}
	if (!zoom)
		for (const a of alerts)
			pts.push([a.evidence.estimate.lat, a.evidence.estimate.lon, a.evidence.estimate.acc_m || 0]);
	else /* merchants and the estimates near them only */
		for (let i = pts.length - 1; i >= 0; i--)
			if (Math.hypot((pts[i][0] - ts[0].lat) * 111, (pts[i][1] - ts[0].lon) * 68) > 15)
				pts.splice(i, 1);
	if (!pts.length) {
		PG.$('posplot').replaceChildren(PG.el('div', {class: 'empty-plot'}, 'no data yet'));
		return;
	}
	const R = 6371008.8, rad = Math.PI / 180;
	const la0 = (Math.min(...pts.map((p) => p[0])) + Math.max(...pts.map((p) => p[0]))) / 2;
	const lo0 = (Math.min(...pts.map((p) => p[1])) + Math.max(...pts.map((p) => p[1]))) / 2;
	const k = Math.cos(la0 * rad);
	const m = (la, lo) => [(lo - lo0) * rad * R * k, (la - la0) * rad * R];
	let ex = 1000, ey = 1000;
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
	const s = PG.svg('svg', {class: 'plot', viewBox: `0 0 ${W} ${H}`, id: 'pos-svg', 'data-testid': 'pos-svg', role: 'img'});
	/* graticule every 0.1°, 0.5° or 1° depending on the scale */
	const span = (W * mpp) / (R * rad * k);
	const step = span > 4 ? 1 : span > 1 ? 0.5 : span > 0.3 ? 0.1 : 0.02;
	const g = PG.svg('g', {class: 'grid'});
	const dLat = (H * mpp) / (R * rad) / 2 + step, dLon = span / 2 + step;
	for (let lo = Math.floor((lo0 - dLon) / step) * step; lo <= lo0 + dLon; lo += step) {
		const [x] = xy(la0, lo);
		g.append(PG.svg('line', {x1: x, y1: 0, x2: x, y2: H}));
		if (x > 40 && x < W - 60)
			s.append(PG.svg('text', {x: x + 3, y: H - 4}, lo.toFixed(step < 0.1 ? 2 : 1) + '°E'));
	}
	for (let la = Math.floor((la0 - dLat) / step) * step; la <= la0 + dLat; la += step) {
		const [, y] = xy(la, lo0);
		g.append(PG.svg('line', {x1: 0, y1: y, x2: W, y2: y}));
		if (y > 40 && y < H - 20)
			s.append(PG.svg('text', {x: 3, y: y - 3}, la.toFixed(step < 0.1 ? 2 : 1) + '°N'));
	}
	s.prepend(g);
	const col = (d) => (d === 'in_place' ? '#2e9e5b' : d === 'moved' ? '#c0352b' : '#8a94a6');
	for (const t of ts) {
		if (t.est_lat == null)
			continue;
		const [mx, my] = xy(t.lat, t.lon), [ex2, ey2] = xy(t.est_lat, t.est_lon);
		s.append(PG.svg('line', {x1: mx, y1: my, x2: ex2, y2: ey2, stroke: '#b9c1cd', 'stroke-dasharray': '4 3'}));
		s.append(PG.svg('circle', {cx: ex2, cy: ey2, r: Math.max(3, (t.acc_m || 0) / mpp), fill: col(t.last_decision), 'fill-opacity': 0.12, stroke: col(t.last_decision), 'stroke-width': 1.2, 'data-kind': 'accuracy', 'data-terminal': t.terminal},
			PG.svg('title', null, `${t.terminal} estimate ± ${Math.round(t.acc_m)} m (${t.last_decision})`)));
		s.append(PG.svg('circle', {cx: ex2, cy: ey2, r: 2.5, fill: col(t.last_decision), 'data-kind': 'estimate', 'data-terminal': t.terminal}));
	}
	/* where the alerts' transactions were: their cell estimates */
	for (const a of alerts) {
		const e = a.evidence.estimate, mer = a.evidence.merchant;
		const [x, y] = xy(e.lat, e.lon);
		if (mer) {
			const [mx, my] = xy(mer.lat, mer.lon);
			s.append(PG.svg('line', {x1: mx, y1: my, x2: x, y2: y, stroke: '#e0892b', 'stroke-width': 1.2, 'stroke-dasharray': '6 4'}));
		}
		s.append(PG.svg('circle', {cx: x, cy: y, r: Math.max(4, (e.acc_m || 0) / mpp), fill: '#e0892b', 'fill-opacity': 0.15, stroke: '#e0892b', 'stroke-width': 1.2, 'data-kind': 'alert', 'data-alert': a.id},
			PG.svg('title', null, `alert ${a.id} (${a.state}): ${a.terminal} seen ± ${Math.round(e.acc_m)} m, ${PG.num((a.evidence.distance_m || 0) / 1000, 1)} km away`)));
		s.append(PG.svg('circle', {cx: x, cy: y, r: 3, fill: '#e0892b', 'data-kind': 'alert-estimate'}));
		const right = x > W - 130; /* near the right edge: label on the left */
		s.append(PG.svg('text', {x: right ? x - 7 : x + 7, y: y + 4, 'text-anchor': right ? 'end' : 'start', style: 'fill:#a85d12;font-weight:600'}, '#' + a.id + ' ' + a.terminal));
	}
	for (const t of ts) {
		const [mx, my] = xy(t.lat, t.lon);
		s.append(PG.svg('circle', {cx: mx, cy: my, r: 5, fill: '#2457c5', stroke: '#fff', 'stroke-width': 1.5, 'data-kind': 'merchant', 'data-terminal': t.terminal},
			PG.svg('title', null, `${t.name} (${t.terminal}), merchant ${t.merchant}`)));
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
	PG.$('plot-meta').textContent = PG.num(mpp * 100 / 1000, 1) + ' km per 100 px';
}
async function terminals() {
	const ts = await PG.get('/api/pos/terminals');
	PG.$('terms-meta').textContent = ts.length + ' terminals · ' + PG.num(ts.reduce((a, t) => a + t.transactions, 0)) + ' transactions';
	try {
		plot(ts, plotted);
		PG.clearErr('plot');
	} catch (e) {
		PG.showErr('plot', e);
	}
	PG.table('t-terms', ts, [
		{k: 'name', t: 'Terminal', f: (v, r) => PG.el('span', {title: r.terminal + ', merchant ' + r.merchant}, v, ' ', PG.el('span', {class: 'small'}, r.terminal))},
		{k: 'transactions', t: 'Tx', num: true},
		{k: 'moved', t: 'Moved', num: true},
		{k: 'last_decision', t: 'Last', f: PG.badge},
		{k: 'last_ts', t: 'Seen', f: PG.ago},
	], {key: (r) => r.terminal});
}
const refresh = PG.poll([['alerts', alerts], ['terms', terminals]]);
