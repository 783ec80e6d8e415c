/*
 * payguard dashboard: the script of images.html, in its own file so the pages run
 * under a Content-Security-Policy without 'unsafe-inline' (issue 13).
 */
'use strict';
PG.header('images');
let chosen = null; /* image id whose packages are shown */
let findingsBy = {};

/*
 * Debian version order (dpkg's: epoch, then upstream and revision compared
 * part by part, '~' before everything, letters before other characters), to
 * tell whether an upgrade's new version reaches a finding's fixed version.
 */
function debCmp(a, b) {
	const split = (v) => {
		const m = /^(?:(\d+):)?(.*?)(?:-([^-]*))?$/.exec(String(v));
		return [Number(m[1] || 0), m[2], m[3] || '0'];
	};
	const order = (c) => (c === '~' ? -1 : /[0-9]/.test(c) ? 0 : /[A-Za-z]/.test(c) ? c.charCodeAt(0) : c ? c.charCodeAt(0) + 256 : 0);
	const part = (x, y) => {
		let i = 0, j = 0;
		while (i < x.length || j < y.length) {
			let d = 0;
			while ((i < x.length && !/[0-9]/.test(x[i])) || (j < y.length && !/[0-9]/.test(y[j]))) {
				const ox = order(x[i] || ''), oy = order(y[j] || '');
				if (ox !== oy)
					return ox - oy;
				i++;
				j++;
			}
			while (x[i] === '0')
				i++;
			while (y[j] === '0')
				j++;
			let nx = '', ny = '';
			while (/[0-9]/.test(x[i] || ''))
				nx += x[i++];
			while (/[0-9]/.test(y[j] || ''))
				ny += y[j++];
			d = nx.length - ny.length || (nx < ny ? -1 : nx > ny ? 1 : 0);
			if (d)
				return d;
		}
		return 0;
	};
	const [ea, ua, ra] = split(a), [eb, ub, rb] = split(b);
	return ea - eb || part(ua, ub) || part(ra, rb);
}
/*
 * A finding's state from the upgrade jobs of its image (issue 17): "fixed"
 * when a committed upgrade installed the package at or above the fixed
 * version, "fix ready" when a done (not yet committed) one did, else "open".
 */
function findingState(f, jobs) {
	let ready = null;
	for (const j of jobs) {
		if (j.image_id !== f.image_id || !j.result || !Array.isArray(j.result.packages) || !['done', 'committed'].includes(j.state))
			continue;
		const p = j.result.packages.find((x) => x.package === f.package);
		if (!p || !p.to || debCmp(p.to, f.fixed) < 0)
			continue;
		if (j.state === 'committed')
			return {state: 'fixed', job: j, to: p.to};
		ready = ready || {state: 'fix ready', job: j, to: p.to};
	}
	return ready || {state: 'open'};
}
/* Why a job failed: the last "failed: ..." line of its log. */
function failReason(j) {
	const lines = String(j.log || '').split('\n').map((x) => x.trim()).filter(Boolean);
	const f = lines.reverse().find((x) => /^(failed|interrupted):/.test(x));
	return f ? f.replace(/^(failed|interrupted):\s*/, '') : lines[0] || 'no reason recorded';
}
function parsed(v) {
	try {
		return typeof v === 'string' ? JSON.parse(v) : v;
	} catch (e) {
		return v;
	}
}
const jobsOf = (a) => a.map((j) => Object.assign({}, j, {result: parsed(j.result)}));

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
	const [imgs, f, jl] = await Promise.all([PG.get('/api/images'), PG.get('/api/images/findings'), PG.get('/api/images/jobs')]);
	const js = jobsOf(jl);
	for (const x of f)
		x.status = findingState(x, js);
	findingsBy = {};
	for (const x of f)
		if (x.status.state !== 'fixed')
			findingsBy[x.image_id] = (findingsBy[x.image_id] || 0) + 1;
	PG.$('img-meta').textContent = imgs.length + ' images';
	PG.table('t-images', imgs, [
		{k: 'id', t: '#', num: true},
		{k: 'path', t: 'Image', f: (v, r) => PG.el('span', {title: v}, PG.tail(v), ' ', PG.el('span', {class: 'small'}, r.format + ' · ' + r.partitions + ' partition' + (r.partitions === 1 ? '' : 's')))},
		{k: 'virtual_size', t: 'Size', num: true, f: PG.bytes},
		{k: 'os_pretty', t: 'OS', wrap: true},
		{k: 'packages', t: 'Packages', num: true},
		{k: 'findings', t: 'Findings', num: true, f: (v, r) => (findingsBy[r.id] ? PG.el('span', {class: 'badge bad', title: 'open findings (not fixed by a committed upgrade)'}, String(findingsBy[r.id])) : '0')},
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
	const nfixed = f.filter((x) => x.status.state === 'fixed').length;
	PG.$('find-meta').textContent = f.length + ' findings · ' + nfixed + ' fixed by a committed upgrade';
	PG.table('t-findings', f, [
		{k: 'image', t: 'Image', f: (v) => PG.el('span', {title: v}, PG.tail(v))},
		{k: 'status', t: 'Status', f: (v) => PG.el('span', {'data-testid': 'finding-status', 'data-state': v.state, title: v.job ? 'job ' + v.job.id + ' installed ' + v.to + (v.job.result.committed ? ', committed to ' + v.job.result.committed : ', not committed yet') : 'no upgrade fixes it yet'},
			PG.el('span', {class: 'badge ' + (v.state === 'fixed' ? 'ok' : v.state === 'open' ? 'bad' : 'info')}, v.state), v.job ? PG.el('span', {class: 'small'}, ' job ' + v.job.id) : null)},
		{k: 'package', t: 'Package'},
		{k: 'version', t: 'Installed', f: (v) => PG.mono(v)},
		{k: 'fixed', t: 'Fixed in', f: (v) => PG.mono(v)},
		{k: 'advisory', t: 'Advisory'},
		{k: 'summary', t: 'Summary', wrap: true},
	], {key: (r) => r.image_id + '/' + r.package + '/' + r.advisory, empty: 'no findings', cls: (r) => (r.status.state === 'fixed' ? 'fixed' : '')});
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
	const list = jobsOf(await PG.get('/api/images/jobs')).sort((x, y) => y.id - x.id);
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
		{k: 'result', t: 'Result', wrap: true, f: (v, r) => {
			if (r.state === 'failed' || r.state === 'interrupted') /* why, from the job's log */
				return PG.el('span', {class: 'reason', 'data-testid': 'job-reason', title: r.log || ''}, failReason(r));
			if (v && Array.isArray(v.packages))
				return PG.el('span', {class: 'small', title: JSON.stringify(v)}, v.packages.map((p) => p.package + ' ' + (p.from || '–') + ' → ' + p.to).join(', ') || 'no package changed',
					v.committed ? PG.el('span', null, ' · committed to ', PG.el('span', {class: 'mono'}, PG.tail(v.committed))) : null);
			return v === null || v === undefined ? '–' : PG.el('span', {class: 'trunc', title: JSON.stringify(v)}, JSON.stringify(v));
		}},
	], {key: (r) => String(r.id), empty: 'no upgrade jobs yet'});
}
const refresh = PG.poll([['images', images], ['packages', packages], ['jobs', jobs]]);
