/*
 * payguard dashboard: the script of images.html, in its own file so the pages run
 * under a Content-Security-Policy without 'unsafe-inline' (issue 13).
 */
'use strict';
PG.header('images');
let chosen = null; /* image id whose packages are shown */
let findingsBy = {};

async function upgrade(img) {
	const m = PG.$('up-msg');
	m.className = 'msg';
	m.textContent = 'starting upgrade of image ' + img.id + '…';
	try {
		const r = await PG.post('/api/images/' + img.id + '/upgrade', {fix: true});
		m.className = 'msg ok';
		m.textContent = 'upgrade job ' + r.job + ' for image ' + r.image_id + ' ' + r.state;
	} catch (e) {
		m.className = 'msg bad';
		m.textContent = e.message;
	}
	refresh();
}
async function images() {
	const [imgs, f] = await Promise.all([PG.get('/api/images'), PG.get('/api/images/findings')]);
	findingsBy = {};
	for (const x of f)
		findingsBy[x.image_id] = (findingsBy[x.image_id] || 0) + 1;
	PG.$('img-meta').textContent = imgs.length + ' images';
	PG.table('t-images', imgs, [
		{k: 'id', t: '#', num: true},
		{k: 'path', t: 'Image', f: (v, r) => PG.el('span', {title: v}, PG.tail(v), ' ', PG.el('span', {class: 'small'}, r.format + ' · ' + r.partitions + ' partition' + (r.partitions === 1 ? '' : 's')))},
		{k: 'virtual_size', t: 'Size', num: true, f: PG.bytes},
		{k: 'os_pretty', t: 'OS', wrap: true},
		{k: 'packages', t: 'Packages', num: true},
		{k: 'id', t: 'Findings', num: true, f: (v) => (findingsBy[v] ? PG.el('span', {class: 'badge bad'}, String(findingsBy[v])) : '0')},
		{k: 'sha256', t: 'SHA-256', f: (v) => PG.mono(String(v || '').slice(0, 10) + '…', v)},
		{k: 'scanned_at', t: 'Scanned', f: (v) => PG.el('span', {title: v}, PG.ago(Date.parse(v)))},
		{t: 'Actions', f: (v, r) => PG.el('div', {class: 'acts'},
			PG.el('button', {'data-testid': 'show-packages', onclick: () => choose(r.id)}, 'Packages'),
			PG.el('button', {class: 'primary', 'data-testid': 'upgrade', onclick: () => upgrade(r)}, 'Upgrade (fix findings)'))},
	], {key: (r) => String(r.id), selected: (r) => r.id === chosen});
	const sel = PG.$('pkg-image');
	const want = imgs.map((i) => String(i.id)).join(',');
	if (sel.dataset.ids !== want) {
		sel.replaceChildren(...imgs.map((i) => PG.el('option', {value: i.id}, '#' + i.id + ' ' + PG.basename(i.path))));
		sel.dataset.ids = want;
	}
	if (chosen === null && imgs.length)
		chosen = imgs[0].id;
	if (chosen !== null)
		sel.value = String(chosen);
	PG.$('find-meta').textContent = f.length + ' findings';
	PG.table('t-findings', f, [
		{k: 'image', t: 'Image', f: (v) => PG.el('span', {title: v}, PG.tail(v))},
		{k: 'package', t: 'Package'},
		{k: 'version', t: 'Installed', f: (v) => PG.mono(v)},
		{k: 'fixed', t: 'Fixed in', f: (v) => PG.mono(v)},
		{k: 'advisory', t: 'Advisory'},
		{k: 'summary', t: 'Summary', wrap: true},
	], {key: (r) => r.image_id + '/' + r.package + '/' + r.advisory, empty: 'no findings'});
}
function choose(id) {
	chosen = id;
	refresh();
}
PG.$('pkg-image').addEventListener('change', (ev) => choose(Number(ev.target.value)));
async function packages() {
	if (chosen === null) {
		PG.table('t-packages', [], [{t: 'Package'}]);
		return;
	}
	const id = chosen;
	const a = await PG.get('/api/images/' + id + '/packages');
	const list = Array.isArray(a) ? a : a.packages || [];
	PG.$('pkg-meta').textContent = list.length + ' in image #' + id;
	PG.table('t-packages', list, [
		{k: 'name', t: 'Package'},
		{k: 'version', t: 'Version', f: (v) => PG.mono(v)},
		{k: 'arch', t: 'Arch'},
		{k: 'source', t: 'Source'},
	], {key: (r) => r.name});
}
async function jobs() {
	const a = await PG.get('/api/images/jobs');
	const list = a.slice().sort((x, y) => y.id - x.id);
	PG.table('t-jobs', list, [
		{k: 'id', t: 'Job', num: true},
		{k: 'image_id', t: 'Image', num: true},
		{k: 'image_path', t: 'Path', f: (v) => PG.el('span', {title: v}, PG.tail(v))},
		{k: 'kind', t: 'Kind'},
		{k: 'state', t: 'State', f: PG.badge},
		{k: 'progress', t: 'Progress', f: (v, r) => {
			const p = r.state === 'done' ? 1 : (typeof v === 'number' ? Math.max(0, Math.min(1, v)) : null);
			if (p === null)
				return PG.el('span', {class: 'small'}, r.state === 'queued' ? 'waiting' : '–');
			return PG.el('span', {'data-testid': 'job-progress', 'data-progress': p},
				PG.el('span', {class: 'bar ' + r.state}, PG.el('i', {style: 'width:' + Math.round(p * 100) + '%'})), ' ', Math.round(p * 100) + '%');
		}},
		{k: 'started_at', t: 'Started', f: (v) => (v ? PG.el('span', {title: v}, PG.time(Date.parse(v))) : '–')},
		{k: 'finished_at', t: 'Finished', f: (v) => (v ? PG.el('span', {title: v}, PG.time(Date.parse(v))) : '–')},
		{k: 'result', t: 'Result', f: (v) => (v === null || v === undefined ? '–' : PG.el('span', {class: 'trunc', title: typeof v === 'string' ? v : JSON.stringify(v)}, typeof v === 'string' ? v : JSON.stringify(v)))},
	], {key: (r) => String(r.id), empty: 'no upgrade jobs yet'});
}
const refresh = PG.poll([['images', images], ['packages', packages], ['jobs', jobs]]);
