// Browser test of the payguard dashboard (issue 9): starts `payguard serve run
// --demo` on a free loopback port, drives Debian's chromium headless through
// playwright-core, opens every page, checks each shows live data from its
// area, acknowledges a POS alert, creates a VSE and starts an image upgrade
// from the pages, and saves a full-page screenshot of every page to
// $PG_BUILD_DIR/artifacts/browser/. Fails (never skips) when playwright-core
// or chromium is missing: scripts/setup.sh installs both.
import {spawn} from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const CHROMIUM = process.env.PG_CHROMIUM || '/usr/bin/chromium';
const PAYGUARD = process.env.PAYGUARD;
const BUILD = process.env.PG_BUILD_DIR || process.cwd();
const SHOTS = path.join(BUILD, 'artifacts', 'browser');
const TOTAL_MS = 225000; // the whole test, daemon start to stop (< 4 min)
const t0 = Date.now();

let failures = 0;
let checks = 0;
function log(...a) {
	console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s]`, ...a);
}
function ok(cond, what, detail) {
	checks++;
	if (cond) {
		log('ok  ', what);
	} else {
		failures++;
		log('FAIL', what, detail === undefined ? '' : '-- ' + detail);
	}
	return cond;
}
class Fatal extends Error {}
function must(cond, what, detail) {
	if (!ok(cond, what, detail))
		throw new Fatal(what);
}

// ---- preconditions: all of them fail the test, none skips it ----
if (!PAYGUARD) {
	console.error('FAIL: PAYGUARD (the payguard binary) is not set; run through ctest');
	process.exit(1);
}
let chromium;
try {
	({chromium} = await import('playwright-core'));
} catch (e) {
	console.error('FAIL: playwright-core is not installed (' + e.message + '): run scripts/setup.sh, which runs npm ci in tests/browser');
	process.exit(1);
}
if (!fs.existsSync(CHROMIUM)) {
	console.error(`FAIL: ${CHROMIUM} is missing: install Debian's chromium (scripts/packages/serve.txt, scripts/setup.sh)`);
	process.exit(1);
}

// ---- the daemon ----
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pg-browser-'));
const portFile = path.join(dir, 'http.port');
const logFile = path.join(dir, 'daemon.log');
const out = fs.openSync(logFile, 'w');
const daemon = spawn(PAYGUARD, ['serve', '--demo', '--data', dir, '--port', '0', '--port-file', portFile, '--load-period-ms', '1000'],
	{stdio: ['ignore', out, out]});
let exited = null;
daemon.on('exit', (code, sig) => {
	exited = {code, sig};
});
let browser = null;

async function stopDaemon() {
	if (exited)
		return exited;
	daemon.kill('SIGTERM');
	const end = Date.now() + 15000;
	while (!exited && Date.now() < end)
		await sleep(100);
	if (!exited) {
		log('daemon did not stop on SIGTERM: SIGKILL');
		daemon.kill('SIGKILL');
		while (!exited)
			await sleep(50);
		failures++;
	}
	return exited;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function daemonLog() {
	try {
		return fs.readFileSync(logFile, 'utf8').slice(-3000);
	} catch (e) {
		return '';
	}
}
// A hard bound on the whole run: whatever hangs, the daemon goes.
const watchdog = setTimeout(async () => {
	log(`FAIL: the test ran longer than ${TOTAL_MS / 1000} s`);
	if (browser)
		browser.close().catch(() => {});
	await stopDaemon();
	process.exit(1);
}, TOTAL_MS);

/* Polls fn (in node) until it returns a truthy value; null on timeout. */
async function until(fn, ms, every = 250) {
	const end = Date.now() + ms;
	for (;;) {
		let v = null;
		try {
			v = await fn();
		} catch (e) {
			v = null;
		}
		if (v)
			return v;
		if (Date.now() > end)
			return null;
		await sleep(every);
	}
}

/* Opens n raw TCP connections to the daemon and keeps them (no request sent). */
async function holdConnections(port, n) {
	const socks = [];
	await Promise.all(Array.from({length: n}, () => new Promise((res) => {
		const c = net.connect(port, '127.0.0.1');
		c.on('error', () => res());
		c.on('connect', () => res());
		c.on('close', () => {});
		socks.push(c);
	})));
	return socks;
}
/* Rectangles of the SVG markers of one kind, in viewBox units. */
async function markers(page, sel) {
	return page.$$eval(sel, (es) => es.map((e) => {
		const c = e.tagName === 'g' ? e.querySelector('circle') : e;
		return {x: Number(c.getAttribute('cx')), y: Number(c.getAttribute('cy')), r: Number(c.getAttribute('r')), terminal: e.dataset.terminal, count: Number(e.dataset.count || 1), members: (e.dataset.members || '').split(' ').filter(Boolean)};
	}));
}
const mppOf = (page) => page.$eval('#pos-svg', (e) => Number(e.dataset.mpp));

/* Runs one group of checks; an exception in it (an element the page lacks)
 * is a failed check, and the groups after it still run. */
async function group(name, fn) {
	try {
		await fn();
	} catch (e) {
		if (e instanceof Fatal)
			throw e;
		ok(false, name + ': ' + String(e.message).split('\n')[0]);
	}
}

async function api(base, p, init) {
	const r = await fetch(base + p, init);
	return {status: r.status, body: await r.json()};
}

/* Rows of a table rendered by app.js: [{key, cells: {col: text}}]; "no data yet" rows excluded. */
async function rows(page, id) {
	return page.$$eval(`#${id} tbody tr[data-key]`, (trs) => trs.map((tr) => {
		const cells = {};
		for (const td of tr.querySelectorAll('td'))
			if (td.dataset.col && !(td.dataset.col in cells))
				cells[td.dataset.col] = td.textContent.trim();
		return {key: tr.dataset.key, cells};
	}));
}
async function waitRows(page, id, ms, pred) {
	return until(async () => {
		const r = await rows(page, id);
		return r.length > 0 && (!pred || pred(r)) ? r : null;
	}, ms);
}
async function visibleErrors(page) {
	return page.$$eval('.err.show', (es) => es.map((e) => e.id + ': ' + e.textContent));
}
async function shot(page, name) {
	const f = path.join(SHOTS, name + '.png');
	await page.screenshot({path: f, fullPage: true});
	log('     screenshot', f);
}

let code = 1;
try {
	fs.mkdirSync(SHOTS, {recursive: true});
	const port = await until(() => {
		if (exited)
			throw new Fatal('daemon exited early');
		return fs.existsSync(portFile) && Number(fs.readFileSync(portFile, 'utf8')) > 0 ? Number(fs.readFileSync(portFile, 'utf8')) : null;
	}, 30000, 50);
	must(port, 'daemon publishes its HTTP port', daemonLog());
	const base = `http://127.0.0.1:${port}`;
	log('daemon on', base, 'data', dir);
	// readiness: every service running and the load estimator's first estimate
	must(await until(async () => {
		const s = await api(base, '/api/services');
		const v = await api(base, '/api/load/vms');
		return s.status === 200 && s.body.length > 0 && s.body.every((x) => x.state === 'running') && v.status === 200;
	}, 60000), 'daemon ready: all services running, first load estimate made', daemonLog());

	// the static files over plain HTTP: names, content types, methods
	const files = {'/': 'text/html', '/index.html': 'text/html', '/se': 'text/html', '/se.html': 'text/html', '/images': 'text/html',
		'/load': 'text/html', '/pos': 'text/html', '/health.html': 'text/html', '/static/app.js': 'text/javascript', '/static/app.css': 'text/css'};
	for (const [p, ct] of Object.entries(files)) {
		const g = await fetch(base + p);
		const body = await g.text();
		const h = await fetch(base + p, {method: 'HEAD'});
		const po = await fetch(base + p, {method: 'POST', headers: {'Content-Type': 'application/json'}, body: '{}'});
		ok(g.status === 200 && g.headers.get('content-type').startsWith(ct) && body.length > 500 && h.status === 200 && po.status === 405 &&
			!/(src|href)="(https?:)?\/\//.test(body), `static ${p}: GET 200 ${ct}, HEAD 200, POST 405, nothing external`,
			`${g.status} ${g.headers.get('content-type')} HEAD ${h.status} POST ${po.status}`);
	}
	for (const p of ['/static/nope.js', '/app.js', '/static/index.html', '/se.htm'])
		ok((await fetch(base + p)).status === 404, `static ${p}: 404`);

	browser = await chromium.launch({executablePath: CHROMIUM, args: ['--no-sandbox']});
	log('chromium', browser.version());
	const ctx = await browser.newContext({viewport: {width: 1280, height: 860}});
	const page = await ctx.newPage();
	const pageErrors = [];
	page.on('pageerror', (e) => pageErrors.push(e.message));
	/* every page runs under the daemon's CSP (no 'unsafe-inline'): a violation is a bug */
	const cspErrors = [];
	page.on('console', (m) => {
		if (/Content Security Policy/i.test(m.text()))
			cspErrors.push(m.text());
	});
	page.on('dialog', (d) => d.accept());
	const external = [];
	page.on('request', (r) => {
		if (!r.url().startsWith(base) && !r.url().startsWith('data:'))
			external.push(r.url());
	});
	const open = async (p, title) => {
		log(`---- ${p}`);
		const r = await page.goto(base + p);
		ok(r && r.status() === 200, `GET ${p} answers 200`, r && r.status());
		ok((await page.title()).includes(title), `${p} has title "${title}"`, await page.title());
		ok(await page.$$eval('#nav a', (as) => as.length === 6), `${p} has the nav bar with 6 pages`);
	};

	// ---- overview ----
	await open('/', 'overview');
	must(await until(async () => {
		const t = (id) => page.$eval('#' + id, (e) => e.textContent.trim());
		const run = Number(await t('sum-svc-running')), tot = Number(await t('sum-svc-total'));
		return run > 0 && run === tot && Number(await t('sum-load-vms')) > 0 && Number(await t('sum-pos-terms')) > 0 &&
			Number(await t('sum-img-images')) > 0 && /^\d+ \/ \d+$/.test(await t('sum-se-up')) && Number((await t('sum-pos-tx')).replace(/,/g, '')) > 0;
	}, 30000), 'overview: every card shows live numbers (services all running, SEs, images, VMs, POS transactions)');
	ok((await rows(page, 't-svc')).length >= 5, 'overview: services table lists the services');
	{
		/* the POS card and the POS tab count the open alerts (issue 17) */
		const shown = await until(async () => {
			const n = (await api(base, '/api/pos/alerts?state=open&limit=10000')).body.length;
			const card = await page.$eval('#sum-pos-count', (e) => (e.hidden ? null : e.textContent));
			const tab = await page.$eval('#nav-pos-count', (e) => (e.hidden ? null : e.textContent));
			return card === String(n) && tab === String(n) ? {n} : null;
		}, 15000);
		ok(shown, `overview: the POS card and the POS tab show the open-alert count (${shown && shown.n})`);
	}
	ok((await visibleErrors(page)).length === 0, 'overview: no error shown', await visibleErrors(page));
	await shot(page, 'index');

	// ---- health ----
	await open('/health', 'health');
	const svc = await waitRows(page, 't-svc', 15000);
	ok(svc && svc.length >= 5 && svc.every((r) => r.cells.state === 'running'), 'health: every service is "running"', JSON.stringify(svc && svc.map((r) => r.key + '=' + r.cells.state)));
	ok(svc && svc.every((r) => Number(r.cells.pid) > 0), 'health: every service shows its pid');
	ok(await until(() => page.$eval('#health dd[data-key="status"]', (e) => e.textContent === 'ok'), 10000), 'health: /api/health status ok');
	const met = await waitRows(page, 't-metrics', 15000, (r) => r.some((x) => x.key === 'payguard_pos_transactions_total' && Number(x.cells.total.replace(/,/g, '')) > 0));
	ok(met, 'health: counters from /metrics include payguard_pos_transactions_total > 0');
	/* the cluster panel (issue 14): on SQLite this daemon is the one node, up, leading every singleton */
	const nodes = await waitRows(page, 't-nodes', 15000, (r) => r.length === 1 && r[0].cells.state === 'up');
	ok(nodes, 'health: the cluster panel shows this daemon as the one node, up', JSON.stringify(nodes));
	const leaders = await waitRows(page, 't-leaders', 15000, (r) => ['load', 'retention', 'image-watch', 'pos-traffic'].every((k) => r.some((x) => x.key === k)));
	ok(leaders && leaders.every((r) => r.cells.node === nodes[0].key && r.cells.node_state === 'up'), 'health: the leaders panel shows this node leading load, retention, image-watch and pos-traffic', JSON.stringify(leaders));
	ok((await visibleErrors(page)).length === 0, 'health: no error shown', await visibleErrors(page));

	// SIGKILL one worker: the supervisor restarts it and the page says so,
	// while the other services keep answering
	{
		const before = (await api(base, '/api/services')).body;
		const victim = before.find((x) => x.name === 'load');
		const others = before.filter((x) => x.name !== 'load');
		process.kill(victim.pid, 'SIGKILL');
		log('     SIGKILL load worker pid', victim.pid);
		const seen = await waitRows(page, 't-svc', 30000, (r) => r.some((x) => x.key === 'load' && x.cells.restarts === '1' &&
			x.cells.state === 'running' && Number(x.cells.pid) !== victim.pid && /signal 9/.test(x.cells.last_exit)));
		ok(seen, 'health: the killed load worker shows restarted (restarts 1, killed by signal 9, new pid, running)',
			JSON.stringify((await rows(page, 't-svc')).find((x) => x.key === 'load')));
		const after = (await api(base, '/api/services')).body;
		ok(others.every((o) => after.find((x) => x.name === o.name).pid === o.pid && after.find((x) => x.name === o.name).restarts === 0),
			'health: the other services were not touched');
		const tx = (await api(base, '/api/pos/terminals')).status;
		ok(tx === 200, 'health: the POS service answered while load restarted');
	}
	// the API's connection use and refusals (issue 17): hold 20 idle
	// connections (the page shows them in use), then more than the limit
	// (libmicrohttpd refuses the rest), let go, and the page shows refusals
	await group('health: connections', async () => {
		const h0 = (await api(base, '/api/health')).body.http;
		ok(h0 && h0.connection_limit > 0 && h0.connections >= 1 && h0.refused_total === 0, '/api/health reports http connections, their limit and no refusals yet', JSON.stringify(h0));
		const held = await holdConnections(port, 20);
		const use = await until(async () => Number(await page.$eval('#http dd[data-key="connections"]', (e) => e.dataset.value)) >= 20, 15000);
		ok(use, 'health: the page shows the held connections in use (>= 20 of the limit)', await page.$eval('#http', (e) => e.textContent));
		const more = await holdConnections(port, h0.connection_limit + 10);
		await sleep(1500);
		for (const c of held.concat(more))
			c.destroy();
		const refused = await until(async () => Number(await page.$eval('#http dd[data-key="refused"]', (e) => e.dataset.value)) > 0, 20000);
		const h1 = (await api(base, '/api/health')).body.http;
		ok(refused && h1.refused_total > 0, `health: connections over the limit are counted as refused (${h1.refused_total}) and the page shows it`, await page.$eval('#http', (e) => e.textContent));
		const mt = await (await fetch(base + '/metrics')).text();
		ok(/^payguard_http_connections_refused_total [1-9]/m.test(mt) && /^payguard_http_connections \d+/m.test(mt), '/metrics has payguard_http_connections and a non-zero payguard_http_connections_refused_total');
		ok(await until(async () => (await visibleErrors(page)).length === 0, 15000), 'health: the page recovers once the connections are gone', await visibleErrors(page));
	});
	await shot(page, 'health');

	// ---- load ----
	await open('/load', 'load');
	const nvms = await until(() => page.$$eval('#scatter-svg circle.vm', (c) => c.length), 15000);
	ok(nvms > 0, `load: scatter plot has ${nvms} VM circles`);
	const vmsApi = (await api(base, '/api/load/vms')).body.vms.length;
	ok(nvms === vmsApi, `load: one circle per VM of /api/load/vms (${vmsApi})`);
	const ntypes = (await api(base, '/api/load/types')).body.types.length;
	ok(await page.$$eval('#legend [data-type]', (l) => l.length) === ntypes, `load: legend names the ${ntypes} types`);
	ok(await page.$$eval('#scatter-svg circle.vm', (cs) => new Set(cs.map((c) => c.getAttribute('fill'))).size) > 1, 'load: VMs are coloured by type (more than one colour)');
	ok(await until(() => page.$$eval('#history-svg circle', (c) => c.length), 15000), 'load: the load-over-time chart has points');
	const target = await page.$$eval('#scatter-svg circle.vm', (cs) => cs[cs.length - 1].dataset.vm);
	// the plot is redrawn at every poll and VMs move with each estimate, so
	// the click goes to the circle element itself rather than to coordinates
	await page.locator(`#scatter-svg circle.vm[data-vm="${target}"]`).dispatchEvent('click');
	ok(await until(async () => (await page.$eval('#vm-pick', (s) => s.value)) === target &&
		(await page.$eval('#vm-info', (e) => e.textContent)).includes(target) &&
		(await page.$$eval('#history-svg circle', (c) => c.length)) > 0, 10000), `load: clicking VM ${target} shows its history`);
	const other = (await api(base, '/api/load/vms')).body.vms[0].name;
	await page.selectOption('#vm-pick', other);
	ok(await until(async () => (await page.$eval('#vm-info', (e) => e.textContent)).includes(other), 10000), `load: choosing ${other} in the select box shows its history`);
	ok((await visibleErrors(page)).length === 0, 'load: no error shown', await visibleErrors(page));
	await shot(page, 'load');

	// ---- secure elements ----
	await open('/se', 'secure elements');
	const ses = await waitRows(page, 't-ses', 30000, (r) => r.length >= 3);
	ok(ses && ses.length >= 3 && ses.every((r) => r.cells.state === 'up'), 'se: SE list shows the switch\'s SEs, all "up"', JSON.stringify(ses));
	const routes = await waitRows(page, 't-routes', 15000);
	ok(routes && routes.length > 0, `se: routing table has ${routes && routes.length} AIDs`);
	const apdus = await waitRows(page, 't-apdus', 15000);
	ok(apdus && apdus.length > 0 && apdus.every((r) => /^[0-9A-F]+$/i.test(r.cells.capdu) && /^[0-9A-F]{4}$/i.test(r.cells.sw)), `se: APDU log has ${apdus && apdus.length} exchanges (C-APDU hex, SW)`);
	if (apdus)
		ok(await waitRows(page, 't-apdus', 15000, (r) => r[0].key !== apdus[0].key), 'se: the APDU log is live (a newer exchange appears on top)');
	// issue 16: the switch's SEs are the SE OS's, a VSE among them: a reader's SELECT
	// of the VSE demo-pay's payment AID (F0 "PGPAY" 01) answered by demo-pay
	const authd = new Set((await api(base, '/api/seos/ses')).body.ses.filter((x) => x.state === 'authenticated').map((x) => x.name));
	ok(ses && ses.every((r) => authd.has(r.key)), 'se: the SEs behind the NFC switch are SEs the SE OS authenticated', JSON.stringify([ses && ses.map((r) => r.key), [...authd]]));
	const payAid = 'F0504750415901';
	const vsePay = await waitRows(page, 't-apdus', 60000, (r) => r.some((x) => x.cells.source === 'nfcswitch' && x.cells.capdu === '00A4040007' + payAid + '00'));
	const paySel = vsePay && vsePay.find((x) => x.cells.source === 'nfcswitch' && x.cells.capdu === '00A4040007' + payAid + '00');
	ok(paySel && paySel.cells.se === 'demo-pay' && paySel.cells.sw === '9000' && paySel.cells.rapdu.includes('8407' + payAid),
		'se: the APDU log shows the NFC switch routing a reader\'s SELECT of the VSE demo-pay\'s payment AID to demo-pay, answered 9000 with its FCI', JSON.stringify(paySel));
	ok(await waitRows(page, 't-routes', 15000, (r) => r.some((x) => x.cells.aid === payAid && x.cells.se === 'demo-pay')), 'se: the routing table routes the payment AID to the VSE demo-pay');
	const seosApi = await fetch(base + '/api/seos/ses');
	if (seosApi.status === 200) {
		const n = (await seosApi.json()).ses.length;
		const so = await waitRows(page, 't-seos', 15000, (r) => r.length === n);
		ok(so && n > 0, `se: SE OS table shows the ${n} SEs of /api/seos/ses`, JSON.stringify(so && so.map((r) => r.key + '=' + r.cells.state)));
	} else
		ok(await until(() => page.$eval('#err-seos', (e) => e.classList.contains('show')), 10000), `se: /api/seos/ses answers ${seosApi.status}, and the page says so visibly`);
	if ((await api(base, '/api/vses')).body.vses.length === 0)
		ok(await until(() => page.$eval('#t-vses tbody tr.empty', (e) => /no VSEs yet/.test(e.textContent)), 10000), 'se: the empty VSE table says so ("no VSEs yet" row)');
	const vname = 'web-' + process.pid;
	await page.fill('#vse-name', vname);
	await page.selectOption('#vse-link', 'spi');
	await page.click('#vse-create');
	const vrow = await waitRows(page, 't-vses', 30000, (r) => r.some((x) => x.key === vname && x.cells.state === 'running'));
	ok(vrow, `se: VSE ${vname} created from the form shows up "running"`, await page.$eval('#vse-msg', (e) => e.textContent));
	const vapi = (await api(base, '/api/vses')).body.vses.find((v) => v.name === vname);
	ok(vapi && vapi.request.expose.link === 'spi', `se: the hypervisor has ${vname} with link spi`);
	if (seosApi.status === 200)
		ok(await waitRows(page, 't-seos', 30000, (r) => r.some((x) => x.key === vname && x.cells.state === 'authenticated')), `se: the SE OS table shows ${vname} "authenticated" (the SE OS took it on)`);
	await page.click(`#t-vses tr[data-key="${vname}"] button[data-testid="vse-stop"]`);
	ok(await waitRows(page, 't-vses', 20000, (r) => r.some((x) => x.key === vname && x.cells.state === 'stopped')), `se: Stop turns ${vname} "stopped"`);
	await page.click(`#t-vses tr[data-key="${vname}"] button[data-testid="vse-start"]`);
	ok(await waitRows(page, 't-vses', 20000, (r) => r.some((x) => x.key === vname && x.cells.state === 'running')), `se: Start turns ${vname} "running" again`);
	if (seosApi.status === 200) await group('se: failing VSE', async () => {
		// a VSE without the test applet: every wallet exchange with it fails,
		// and the page puts the failures on that SE, not on the others (issue 17)
		const bad = 'noecho-' + process.pid;
		await page.fill('#vse-name', bad);
		await page.selectOption('#vse-link', 't1');
		await page.uncheck('#vse-applets input[value="test"]');
		await page.click('#vse-create');
		await page.check('#vse-applets input[value="test"]');
		const fr = await waitRows(page, 't-seos', 45000, (r) => r.some((x) => x.key === bad && Number(x.cells.exchanges_failed) > 0));
		const row = fr && fr.find((x) => x.key === bad);
		ok(row && row.cells.last_error.length > 3 && row.cells.last_error !== '–', `se: failed exchanges are attributed to ${bad} (${row && row.cells.exchanges_failed} failed: "${row && row.cells.last_error}")`, JSON.stringify(fr));
		// the VSE stopped and started above may have missed an exchange while
		// it was down: that is its own failure, rightly counted; every other SE has none
		ok(fr && fr.filter((x) => x.key !== bad && x.key !== vname).every((x) => x.cells.exchanges_failed === '0') && fr.some((x) => x.key !== bad && Number(x.cells.exchanges) > 0),
			'se: the other SEs exchange without failures', JSON.stringify(fr && fr.map((x) => x.key + ' ' + x.cells.exchanges + '/' + x.cells.exchanges_failed)));
		const snap = (await api(base, '/api/seos/ses')).body.ses.find((x) => x.name === bad);
		ok(snap && snap.exchanges_failed > 0 && snap.last_error, '/api/seos/ses has per-SE exchanges_failed and last_error', JSON.stringify(snap));
		await shot(page, 'se-failing');
		// destroyed VSEs leave both tables
		await page.click(`#t-vses tr[data-key="${bad}"] button[data-testid="vse-destroy"]`);
		await sleep(2500);
		log(`     after destroy: /api/vses lists ${bad}: ${(await api(base, '/api/vses')).body.vses.filter((v) => v.name === bad).map((v) => v.state).join(',') || 'no'}; /api/seos/ses lists it: ${(await api(base, '/api/seos/ses')).body.ses.filter((v) => v.name === bad).map((v) => v.state).join(',') || 'no'}`);
		const gone = await until(async () => !(await rows(page, 't-vses')).some((x) => x.key === bad) && !(await rows(page, 't-seos')).some((x) => x.key === bad), 30000);
		ok(gone, `se: the destroyed VSE ${bad} leaves the VSE table and the SE OS table`, JSON.stringify({vses: (await rows(page, 't-vses')).map((x) => x.key + '=' + x.cells.state), seos: (await rows(page, 't-seos')).map((x) => x.key + '=' + x.cells.state)}));
	});
	ok((await visibleErrors(page)).filter((e) => !e.startsWith('err-seos')).length === 0, 'se: no error shown', await visibleErrors(page));
	await shot(page, 'se');

	// ---- images ----
	await open('/images', 'images');
	const imgs = await waitRows(page, 't-images', 15000);
	ok(imgs && imgs.length > 0, `images: inventory lists ${imgs && imgs.length} image(s)`);
	ok(await waitRows(page, 't-findings', 15000), 'images: findings table lists the advisory\'s findings');
	const pkgs = await waitRows(page, 't-packages', 15000);
	ok(pkgs && pkgs.length > 0, `images: packages of the chosen image (${pkgs && pkgs.length})`);
	const before = new Set((await api(base, '/api/images/jobs')).body.map((j) => j.id));
	const imgId = imgs[0].key;
	await page.click(`#t-images tr[data-key="${imgId}"] button[data-testid="upgrade"]`);
	const newJob = await waitRows(page, 't-jobs', 20000, (r) => r.some((x) => !before.has(Number(x.key))));
	ok(newJob, `images: "Upgrade (fix findings)" of image ${imgId} adds a job to the table`, await page.$eval('#up-msg', (e) => e.textContent));
	if (newJob) {
		const jid = newJob.find((x) => !before.has(Number(x.key))).key;
		const seen = new Set();
		const end = await until(async () => {
			const r = (await rows(page, 't-jobs')).find((x) => x.key === jid);
			if (!r)
				return null;
			if (!seen.has(r.cells.state)) {
				seen.add(r.cells.state);
				log(`     job ${jid}: ${r.cells.state} ${r.cells.progress || ''}`);
			}
			return ['done', 'failed', 'interrupted'].includes(r.cells.state) ? r : null;
		}, 90000, 300);
		ok(end && end.cells.state === 'done', `images: job ${jid} reaches "done" in the page`, end && JSON.stringify(end.cells));
		ok(end && /100%/.test(end.cells.progress), `images: its progress bar shows 100%`, end && end.cells.progress);
		// findings the upgrade fixes: "fix ready" while it is done, "fixed" once committed (issue 17)
		await group('images: fixed findings', async () => {
			const fkeys = (await rows(page, 't-findings')).filter((x) => x.key.startsWith(imgId + '/')).map((x) => x.key);
			const others = (await rows(page, 't-findings')).filter((x) => !x.key.startsWith(imgId + '/')).map((x) => x.key);
			ok(fkeys.length > 0 && await waitRows(page, 't-findings', 15000, (r) => fkeys.every((k) => r.some((x) => x.key === k && /^fix ready/.test(x.cells.status)))),
				`images: the findings of image ${imgId} show "fix ready" (job ${jid} done, not committed)`, JSON.stringify(await rows(page, 't-findings')));
			const out = path.join(dir, 'committed-' + jid + '.img');
			const cm = await new Promise((res) => {
				const p = spawn(PAYGUARD, ['image', 'commit', '--db', path.join(dir, 'payguard.db'), '--output', out, String(jid)], {stdio: ['ignore', 'pipe', 'pipe']});
				let o = '';
				p.stdout.on('data', (d) => (o += d));
				p.stderr.on('data', (d) => (o += d));
				p.on('exit', (code) => res({code, o}));
			});
			ok(cm.code === 0, `images: payguard image commit ${jid} succeeds`, cm.o);
			const fixed = await waitRows(page, 't-findings', 15000, (r) => fkeys.every((k) => r.some((x) => x.key === k && /^fixed/.test(x.cells.status))));
			ok(fixed && await page.$$eval('#t-findings [data-testid="finding-status"][data-state="fixed"]', (e) => e.length) >= fkeys.length,
				`images: once committed, the findings of image ${imgId} show "fixed"`, JSON.stringify(await rows(page, 't-findings')));
			ok(fixed && others.every((k) => fixed.some((x) => x.key === k && /^open/.test(x.cells.status))), 'images: the other images\' findings stay "open"', JSON.stringify(fixed));
			ok(await until(async () => (await rows(page, 't-images')).some((x) => x.key === imgId && x.cells.findings === '0'), 10000),
				`images: image ${imgId} counts no open finding any more`);
		});
	}
	await group('images: failed upgrade', async () => {
		// a failed upgrade shows its reason: a package that is not in the repository
		const fr = await page.evaluate((id) => PG.post('/api/images/' + id + '/upgrade', {packages: ['nope_9.9_all.deb']}).then((r) => r.job), Number(imgs[imgs.length - 1].key));
		const failed = await waitRows(page, 't-jobs', 60000, (r) => r.some((x) => x.key === String(fr) && x.cells.state === 'failed'));
		const row = failed && failed.find((x) => x.key === String(fr));
		const job = (await api(base, '/api/images/jobs')).body.find((j) => j.id === fr);
		ok(row && /nope_9\.9_all\.deb/.test(row.cells.result) && job && job.log.includes(row.cells.result),
			`images: failed job ${fr} shows its reason ("${row && row.cells.result}")`, JSON.stringify({row, log: job && job.log}));
	});
	ok((await visibleErrors(page)).length === 0, 'images: no error shown', await visibleErrors(page));
	await shot(page, 'images');

	// ---- POS ----
	await open('/pos', 'POS');
	const terms = await waitRows(page, 't-terms', 15000);
	ok(terms && terms.length > 0 && terms.some((r) => Number(r.cells.transactions) > 0), `pos: terminals table lists ${terms && terms.length} terminals with transactions`);
	const merch = await page.$$eval('#pos-svg circle[data-kind="merchant"]', (c) => c.length);
	const clustered = await page.$$eval('#pos-svg [data-kind="cluster"]', (c) => c.reduce((a, g) => a + Number(g.dataset.count), 0));
	const acc = await page.$$eval('#pos-svg circle[data-kind="accuracy"]', (c) => c.length);
	ok(merch + clustered === terms.length, `pos: plot has ${merch} merchant circles and ${clustered} merchants in groups, one per terminal`);
	ok(acc > 0, `pos: plot has ${acc} accuracy circles of estimated positions`);
	log('     waiting (up to 90 s) for an open alert');
	const openRow = await waitRows(page, 't-alerts', 90000, (r) => r.some((x) => x.cells.state === 'open'));
	must(openRow, 'pos: an alert opens and shows "open" with its evidence');
	const alert = openRow.find((x) => x.cells.state === 'open');
	ok(/km from the merchant/.test(alert.cells.evidence), `pos: alert ${alert.key} shows its evidence`, alert.cells.evidence);
	ok(await page.$$eval('#pos-svg circle[data-kind="alert"]', (c) => c.length) > 0 || await until(() => page.$$eval('#pos-svg circle[data-kind="alert"]', (c) => c.length), 6000), 'pos: the plot shows the alerts\' estimated positions');
	await group('pos: the operator\'s view', async () => {
		/* issue 17: open alerts stand out */
		const names = Object.fromEntries((await api(base, '/api/pos/terminals')).body.map((t) => [t.terminal, t.name]));
		const openApi = await until(async () => {
			const o = (await api(base, '/api/pos/alerts?state=open&limit=10000')).body;
			return (await page.$eval('#nav-pos-count', (e) => e.textContent)) === String(o.length) ? o : null;
		}, 15000);
		ok(openApi && openApi.length > 0, `pos: the POS tab counts the ${openApi && openApi.length} open alerts`);
		ok(await page.$eval('#nav-pos-count', (e) => e.classList.contains('age-new')), 'pos: the count is coloured as new (the oldest open alert is under 15 min old)', await page.$eval('#nav-pos-count', (e) => e.className));
		const ar = await rows(page, 't-alerts');
		ok(ar.length > 0 && ar.every((r) => {
			const a = openApi.find((x) => String(x.id) === r.key) || {};
			return !a.terminal || (r.cells.terminal.includes(names[a.terminal]) && r.cells.terminal.includes(a.terminal));
		}) && ar.some((r) => openApi.some((x) => String(x.id) === r.key)), 'pos: every alert shows its merchant\'s name beside the terminal id', JSON.stringify(ar.map((r) => r.cells.terminal)));
		ok(await page.$$eval('#t-alerts tr.alert-open .age.age-new', (e) => e.length) > 0, 'pos: open alerts\' age cells are coloured by age');
		const openTerms = [...new Set(openApi.map((a) => a.terminal))];
		const greens = await page.$$eval('#t-terms tbody tr', (trs, ot) => trs.filter((tr) => ot.includes(tr.dataset.key)).map((tr) => ({
			key: tr.dataset.key, green: tr.querySelectorAll('.ok, .badge.ok').length, last: tr.querySelector('td[data-col="last_decision"]').textContent,
			dot: (document.querySelector(`#pos-svg circle[data-kind="accuracy"][data-terminal="${tr.dataset.key}"]`) || {getAttribute: () => ''}).getAttribute('fill')})), openTerms);
		ok(greens.length === openTerms.length && greens.every((g) => g.green === 0 && g.last === 'alert open' && g.dot !== '#2e9e5b'),
			`pos: terminals with open alerts (${openTerms.join(', ')}) are never shown green (table or map)`, JSON.stringify(greens));
		/* everything, then merchants only: fits, groups of close merchants */
		await page.selectOption('#pos-zoom', 'all');
		const cl = await until(async () => {
			const c = await markers(page, '#pos-svg [data-kind="cluster"]');
			return c.length ? c : null;
		}, 10000);
		ok(cl, `pos: at the scale of everything, close merchants are grouped (${cl && cl.map((c) => c.count).join(', ')} merchants)`);
		const singles = await markers(page, '#pos-svg circle[data-kind="merchant"]');
		ok(singles.every((a, i) => singles.every((b, j) => i === j || Math.hypot(a.x - b.x, a.y - b.y) >= 16)), 'pos: no two single merchant circles are closer than 16 px');
		const mppAll = await mppOf(page);
		await page.selectOption('#pos-zoom', 'merchants');
		const mppMer = await until(async () => (await page.$eval('#pos-svg', (e) => e.dataset.extent)) === 'merchants' ? mppOf(page) : null, 10000);
		const mm = await markers(page, '#pos-svg circle[data-kind="merchant"], #pos-svg [data-kind="cluster"]');
		ok(mppMer && mppMer < mppAll && mm.every((c) => c.x >= 0 && c.x <= 720 && c.y >= 0 && c.y <= 460), `pos: "merchants only" fits the merchants (${mppMer && mppMer.toFixed(1)} m/px < ${mppAll.toFixed(1)} m/px, all in the frame)`);
		if (cl) {
			await page.selectOption('#pos-zoom', 'all');
			await until(async () => (await page.$eval('#pos-svg', (e) => e.dataset.extent)) === 'all', 10000);
			const c0 = (await markers(page, '#pos-svg [data-kind="cluster"]'))[0];
			await page.locator(`#pos-svg [data-kind="cluster"][data-members="${c0.members.join(' ')}"]`).dispatchEvent('click');
			const ex = await until(async () => {
				const m = await markers(page, '#pos-svg circle[data-kind="merchant"]');
				const mine = m.filter((x) => c0.members.includes(x.terminal));
				return mine.length === c0.members.length ? mine : null;
			}, 10000);
			ok(ex && ex.every((a, i) => ex.every((b, j) => i === j || Math.hypot(a.x - b.x, a.y - b.y) >= 16)) && (await mppOf(page)) < mppAll,
				`pos: clicking the group of ${c0.count} expands it: its merchants ${c0.members.join(', ')} drawn apart at a closer scale`, JSON.stringify(ex));
			await shot(page, 'pos-expanded');
		}
		/* a terminal row links to its alerts, and the map fits that terminal */
		const tid = openTerms[0];
		const href = await page.$eval(`#t-terms tr[data-key="${tid}"] a[data-testid="term-link"]`, (a) => a.getAttribute('href'));
		ok(href === '/pos?terminal=' + tid, `pos: terminal ${tid}'s row links to /pos?terminal=${tid}`, href);
		await page.click(`#t-terms tr[data-key="${tid}"] a[data-testid="term-link"]`);
		const mine = (await api(base, '/api/pos/alerts?limit=10000')).body.filter((a) => a.terminal === tid).map((a) => String(a.id));
		const fr = await waitRows(page, 't-alerts', 10000, (r) => r.every((x) => mine.includes(x.key)) && r.some((x) => x.cells.terminal.includes(tid)));
		ok(fr && new URL(page.url()).search === '?terminal=' + tid, `pos: following it shows only ${tid}'s alerts (${fr && fr.map((x) => x.key).join(', ')})`, JSON.stringify(await rows(page, 't-alerts')));
		const fit = await until(async () => (await page.$eval('#pos-svg', (e) => e.dataset.extent)) === 'selection' ? markers(page, [`#pos-svg circle[data-kind="merchant"][data-terminal="${tid}"]`].concat(mine.map((id) => `#pos-svg circle[data-kind="alert"][data-alert="${id}"]`)).join(', ')) : null, 10000);
		ok(fit && fit.filter((c) => c.terminal === tid).length === 1 && fit.every((c) => c.x >= 0 && c.x <= 720 && c.y >= 0 && c.y <= 460),
			`pos: the map fits terminal ${tid} (extent "selection": its merchant drawn on its own and its alerts inside the frame)`, JSON.stringify(fit));
		await shot(page, 'pos-terminal');
		/* the same link opened directly */
		const p2 = await ctx.newPage();
		await p2.goto(base + href);
		ok(await waitRows(p2, 't-alerts', 10000, (r) => r.every((x) => mine.includes(x.key))) && (await p2.$eval('#alert-filter', (e) => e.textContent)).includes(tid), `pos: /pos?terminal=${tid} opened directly filters the alerts to it`);
		await p2.close();
		await page.click('[data-testid="alert-filter-clear"]');
		ok(await waitRows(page, 't-alerts', 10000, (r) => r.some((x) => !x.cells.terminal.includes(tid)) || mine.length === (r.length)), 'pos: the × shows every terminal\'s alerts again');
	});
	await page.click(`#t-alerts tr[data-key="${alert.key}"] button[data-testid="ack"]`);
	ok(await waitRows(page, 't-alerts', 15000, (r) => r.some((x) => x.key === alert.key && x.cells.state === 'acknowledged')), `pos: Acknowledge turns alert ${alert.key} "acknowledged" in the page`);
	const a = await api(base, '/api/pos/alerts/' + alert.key);
	ok(a.status === 200 && a.body.state === 'acknowledged', `pos: the API has alert ${alert.key} acknowledged`, JSON.stringify(a.body).slice(0, 200));
	ok((await visibleErrors(page)).length === 0, 'pos: no error shown', await visibleErrors(page));
	await shot(page, 'pos');

	// ---- alert age colours: the same alerts seen 30 min and 3 h later ----
	for (const [ahead, cls] of [[30 * 60e3, 'age-old'], [3 * 3600e3, 'age-stale']]) {
		const c2 = await browser.newContext({viewport: {width: 1280, height: 860}});
		const p2 = await c2.newPage();
		p2.on('pageerror', (e) => pageErrors.push(e.message));
		await p2.clock.setFixedTime(new Date(Date.now() + ahead));
		await p2.goto(base + '/');
		const o = await until(async () => {
			const open = (await api(base, '/api/pos/alerts?state=open&limit=10000')).body;
			const b = await p2.$eval('#sum-pos-count', (e) => e.className);
			const t = await p2.$eval('#nav-pos-count', (e) => e.className);
			return open.length && b.includes(cls) && t.includes(cls) ? {b, t} : null;
		}, 15000);
		ok(o, `overview, ${ahead / 60000} min later: the POS card's and tab's counts are coloured ${cls}`, JSON.stringify(o));
		ok(await until(() => p2.$$eval(`#t-alerts tr.alert-open.${cls} .age.${cls}`, (e) => e.length), 10000), `overview, ${ahead / 60000} min later: open alerts' rows are coloured ${cls}`);
		if (cls === 'age-stale')
			await shot(p2, 'index-stale');
		await c2.close();
	}

	// ---- errors show visibly: an unknown route on a page ----
	await page.evaluate(() => PG.get('/api/nope').catch((e) => PG.showErr('alerts', e)));
	ok(await page.$eval('#err-alerts', (e) => e.classList.contains('show') && /404/.test(e.textContent)), 'errors: a failing fetch shows its status and message');

	ok(pageErrors.length === 0, 'no JavaScript error on any page', pageErrors.join(' | '));
	ok(cspErrors.length === 0, 'no Content-Security-Policy violation on any page', cspErrors.join(' | '));
	ok(external.length === 0, 'no request leaves the daemon (works offline)', external.join(' '));
	code = failures ? 1 : 0;
} catch (e) {
	if (!(e instanceof Fatal))
		log('FAIL', e.stack || e.message);
	code = 1;
} finally {
	clearTimeout(watchdog);
	if (browser)
		await browser.close().catch(() => {});
	const st = await stopDaemon();
	if (!ok(st.code === 0, 'daemon stops cleanly on SIGTERM', JSON.stringify(st)))
		code = 1;
	if (code)
		console.log('---- daemon log (tail)\n' + daemonLog());
	fs.closeSync(out);
	fs.rmSync(dir, {recursive: true, force: true});
	log(`${checks} checks, ${failures} failed: ${code ? 'FAIL' : 'PASS'}`);
	process.exit(code);
}
