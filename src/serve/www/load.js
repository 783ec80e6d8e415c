/*
 * payguard dashboard: the script of load.html, in its own file so the pages run
 * under a Content-Security-Policy without 'unsafe-inline' (issue 13).
 */
'use strict';
PG.header('load');
const FEAT = ['cpu', 'memory', 'disk', 'network'];
/* Axes: one characteristic value or the mean of two, or the load (0..100 scaled to 0..1). */
const AXES = {
	'cpu + memory': (v) => (v.features[0] + v.features[1]) / 2,
	'disk + network': (v) => (v.features[2] + v.features[3]) / 2,
	cpu: (v) => v.features[0],
	memory: (v) => v.features[1],
	disk: (v) => v.features[2],
	network: (v) => v.features[3],
	load: (v) => v.load / 100,
};
for (const [id, def] of [['ax-x', 'cpu + memory'], ['ax-y', 'disk + network']]) {
	const s = PG.$(id);
	s.replaceChildren(...Object.keys(AXES).map((k) => PG.el('option', {value: k, selected: k === def}, k)));
	s.addEventListener('change', () => refresh());
}
let types = [];
let vmsNow = [];
let picked = null;

function typeName(i) {
	const t = types.find((x) => x.id === i);
	return t ? t.name : 'type ' + i;
}
function colour(i) {
	return PG.COLOURS[i % PG.COLOURS.length];
}
function pick(name) {
	picked = name;
	PG.$('vm-pick').value = name;
	refresh();
}
PG.$('vm-pick').addEventListener('change', (ev) => pick(ev.target.value));

function scatter(vms) {
	const W = 720, H = 440, L = 48, B = 36, T = 14, R = 16;
	const fx = AXES[PG.$('ax-x').value], fy = AXES[PG.$('ax-y').value];
	let mx = 0, my = 0;
	for (const v of vms) {
		mx = Math.max(mx, fx(v));
		my = Math.max(my, fy(v));
	}
	mx = Math.min(1, Math.ceil(mx * 10 + 0.5) / 10) || 1;
	my = Math.min(1, Math.ceil(my * 10 + 0.5) / 10) || 1;
	const X = (x) => L + (x / mx) * (W - L - R), Y = (y) => H - B - (y / my) * (H - B - T);
	const s = PG.svg('svg', {class: 'plot', viewBox: `0 0 ${W} ${H}`, id: 'scatter-svg', 'data-testid': 'scatter-svg', role: 'img'});
	const g = PG.svg('g', {class: 'grid'});
	for (let i = 0; i <= 5; i++) {
		const x = X((mx * i) / 5), y = Y((my * i) / 5);
		g.append(PG.svg('line', {x1: x, y1: T, x2: x, y2: H - B}), PG.svg('line', {x1: L, y1: y, x2: W - R, y2: y}));
		s.append(PG.svg('text', {x, y: H - B + 16, 'text-anchor': 'middle'}, ((mx * i) / 5).toFixed(2)));
		s.append(PG.svg('text', {x: L - 6, y: y + 4, 'text-anchor': 'end'}, ((my * i) / 5).toFixed(2)));
	}
	s.prepend(g);
	s.append(PG.svg('line', {class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B}), PG.svg('line', {class: 'axis', x1: L, y1: T, x2: L, y2: H - B}));
	s.append(PG.svg('text', {x: (L + W - R) / 2, y: H - 4, 'text-anchor': 'middle'}, PG.$('ax-x').value + ' (normalised)'));
	s.append(PG.svg('text', {x: 12, y: (T + H - B) / 2, 'text-anchor': 'middle', transform: `rotate(-90 12 ${(T + H - B) / 2})`}, PG.$('ax-y').value));
	for (const v of vms) {
		const c = PG.svg('circle', {class: 'vm' + (v.name === picked ? ' sel' : ''), cx: X(fx(v)).toFixed(1), cy: Y(fy(v)).toFixed(1),
			r: (4 + v.load / 20).toFixed(1), fill: colour(v.type), 'fill-opacity': 0.85, 'data-vm': v.name, 'data-type': v.type},
		PG.svg('title', null, `${v.name}: ${typeName(v.type)}, load ${v.load.toFixed(1)}`));
		c.addEventListener('click', () => pick(v.name));
		s.append(c);
	}
	PG.$('scatter').replaceChildren(s);
}

async function vms() {
	const [a, t] = await Promise.all([PG.get('/api/load/vms'), PG.get('/api/load/types')]);
	types = t.types;
	vmsNow = a.vms;
	PG.$('vms-meta').textContent = a.vms.length + ' VMs · silhouette ' + PG.num(a.silhouette, 2) + ' · ' + PG.ago(a.at_ms);
	PG.$('legend').replaceChildren(...types.map((x) => PG.el('span', {'data-type': x.id}, PG.el('span', {class: 'sw', style: 'background:' + colour(x.id)}), `${x.name} (${x.count})`)));
	if (picked === null && a.vms.length)
		picked = a.vms.slice().sort((x, y) => y.load - x.load)[0].name;
	const sel = PG.$('vm-pick');
	const names = a.vms.map((v) => v.name).join(',');
	if (sel.dataset.names !== names) {
		sel.replaceChildren(...a.vms.map((v) => PG.el('option', {value: v.name}, v.name)));
		sel.dataset.names = names;
	}
	if (picked !== null)
		sel.value = picked;
	scatter(a.vms);
	PG.$('types-meta').textContent = types.length + ' types';
	PG.table('t-types', types, [
		{k: 'id', t: 'Colour', f: (v) => PG.el('span', {class: 'sw', style: `display:inline-block;width:12px;height:12px;border-radius:50%;background:${colour(v)}`})},
		{k: 'name', t: 'Type'},
		{k: 'count', t: 'VMs', num: true},
		{k: 'mean_load', t: 'Mean load', num: true, f: (v) => PG.num(v, 1)},
		...FEAT.map((f, i) => ({k: 'center', t: 'Centre ' + f, num: true, f: (v) => PG.num(v[i], 3)})),
	], {key: (r) => String(r.id)});
}

function line(h) {
	const W = 560, H = 300, L = 40, B = 30, T = 12, R = 14;
	const s = PG.svg('svg', {class: 'plot', viewBox: `0 0 ${W} ${H}`, id: 'history-svg', 'data-testid': 'history-svg', role: 'img'});
	if (!h.length) {
		PG.$('history').replaceChildren(PG.el('div', {class: 'empty-plot'}, 'no data yet'));
		return;
	}
	const t0 = h[0].at_ms, t1 = Math.max(h[h.length - 1].at_ms, t0 + 1);
	let ymax = 0;
	for (const p of h)
		ymax = Math.max(ymax, p.load);
	ymax = Math.min(100, Math.max(10, Math.ceil(ymax / 10 + 0.5) * 10));
	const X = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R), Y = (y) => H - B - (y / ymax) * (H - B - T);
	const g = PG.svg('g', {class: 'grid'});
	for (let i = 0; i <= 5; i++) {
		const y = Y((ymax * i) / 5);
		g.append(PG.svg('line', {x1: L, y1: y, x2: W - R, y2: y}));
		s.append(PG.svg('text', {x: L - 6, y: y + 4, 'text-anchor': 'end'}, Math.round((ymax * i) / 5)));
	}
	s.prepend(g);
	for (let i = 0; i <= 4; i++) {
		const t = t0 + ((t1 - t0) * i) / 4;
		s.append(PG.svg('text', {x: X(t), y: H - B + 16, 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle'}, PG.time(t)));
	}
	s.append(PG.svg('line', {class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B}));
	const last = h[h.length - 1];
	s.append(PG.svg('polyline', {points: h.map((p) => X(p.at_ms).toFixed(1) + ',' + Y(p.load).toFixed(1)).join(' '), fill: 'none', stroke: colour(last.type), 'stroke-width': 2, 'data-testid': 'history-line'}));
	for (const p of h)
		s.append(PG.svg('circle', {cx: X(p.at_ms).toFixed(1), cy: Y(p.load).toFixed(1), r: 2.5, fill: colour(p.type)},
			PG.svg('title', null, `${PG.time(p.at_ms)}: load ${p.load.toFixed(1)}, ${typeName(p.type)}`)));
	s.append(PG.svg('text', {x: L + 4, y: T + 10}, 'load (0..100)'));
	PG.$('history').replaceChildren(s);
}
async function history() {
	if (picked === null) {
		PG.$('history').replaceChildren(PG.el('div', {class: 'empty-plot'}, 'no data yet'));
		return;
	}
	const a = await PG.get('/api/load/history?vm=' + encodeURIComponent(picked));
	PG.$('hist-meta').textContent = a.history.length + ' estimates';
	line(a.history);
	const v = vmsNow.find((x) => x.name === picked);
	const info = PG.$('vm-info');
	info.replaceChildren();
	if (v) {
		const kv = [['VM', v.name], ['type', typeName(v.type)], ['load', PG.num(v.load, 1)], ['samples', v.samples]];
		FEAT.forEach((f, i) => kv.push([f, PG.num(v.features[i], 3)]));
		for (const [k, x] of kv)
			info.append(PG.el('dt', null, k), PG.el('dd', null, x));
	}
}
const refresh = PG.poll([['vms', vms], ['history', history]]);
