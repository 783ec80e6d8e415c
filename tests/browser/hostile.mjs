// Browser test of the daemon's defences against hostile web pages (issue 13,
// item 1). Starts `payguard serve run --demo` on a free 127.0.0.1 port and a
// tiny web server of its own on 127.0.0.2 (another origin, another site),
// whose page tries every state-changing route of the API (src/serve/api.c:
// alert acknowledge/close, VSE create/start/stop/destroy, image upgrade) the
// ways a page can without CORS: form posts (text/plain and urlencoded) into
// hidden frames, no-cors fetches, a JSON fetch (which needs a preflight), and
// frames the dashboard itself. Afterwards the API must show that nothing
// changed, the requests must have reached the daemon (its 4xx counter) and
// the dashboard must not have rendered in any frame (a control frame from the
// hostile origin does). Then a second daemon with a token: opening
// /?token=... logs the browser in (HttpOnly, SameSite=Strict cookie, the
// token gone from the address), the pages work and can create a VSE, and the
// hostile page, opened in that same browser, still changes nothing.
// Fails (never skips) without playwright-core or chromium.
import {spawn} from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

const CHROMIUM = process.env.PG_CHROMIUM || '/usr/bin/chromium';
const PAYGUARD = process.env.PAYGUARD;
const TOTAL_MS = 270000;
const EVIL_HOST = '127.0.0.2';
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
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
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

// ---- daemons ----
const daemons = [];
function startDaemon(extra) {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pg-hostile-'));
	const d = {dir, portFile: path.join(dir, 'http.port'), logFile: path.join(dir, 'daemon.log'), exited: null};
	d.out = fs.openSync(d.logFile, 'w');
	d.proc = spawn(PAYGUARD, ['serve', '--data', dir, '--port', '0', '--port-file', d.portFile, '--load-period-ms', '1000', ...extra],
		{stdio: ['ignore', d.out, d.out]});
	d.proc.on('exit', (code, sig) => {
		d.exited = {code, sig};
	});
	daemons.push(d);
	return d;
}
async function stopDaemon(d) {
	if (!d.exited) {
		d.proc.kill('SIGTERM');
		const end = Date.now() + 15000;
		while (!d.exited && Date.now() < end)
			await sleep(100);
		if (!d.exited) {
			d.proc.kill('SIGKILL');
			while (!d.exited)
				await sleep(50);
		}
	}
	return d.exited;
}
function daemonLog(d) {
	try {
		return fs.readFileSync(d.logFile, 'utf8').slice(-3000);
	} catch (e) {
		return '';
	}
}
async function daemonPort(d) {
	const port = await until(() => {
		if (d.exited)
			throw new Fatal('daemon exited early');
		return fs.existsSync(d.portFile) && Number(fs.readFileSync(d.portFile, 'utf8')) > 0 ? Number(fs.readFileSync(d.portFile, 'utf8')) : null;
	}, 30000, 50);
	must(port, 'daemon publishes its HTTP port', daemonLog(d));
	return port;
}

// ---- the hostile site: 127.0.0.2, a page built for the daemon under attack ----
let evilPage = '';
const evil = http.createServer((req, res) => {
	const body = req.url.startsWith('/attack') ? evilPage : req.url.startsWith('/benign') ? '<!doctype html><title>benign frame</title><p>control' : null;
	res.writeHead(body === null ? 404 : 200, {'Content-Type': 'text/html; charset=utf-8'});
	res.end(body === null ? 'no' : body);
});
await new Promise((r) => evil.listen(0, EVIL_HOST, r));
const evilBase = `http://${EVIL_HOST}:${evil.address().port}`;

/* The attack: every route with every body a page can send cross-origin. */
function attackPage(target, routes) {
	return `<!doctype html>
<html><head><meta charset="utf-8"><title>attacking</title></head><body>
<h1>win a prize</h1>
<iframe id="dash" name="dash" src="${target}/pos" width="600" height="300"></iframe>
<iframe id="dash2" name="dash2" src="${target}/" width="600" height="300"></iframe>
<iframe id="benign" name="benign" src="/benign" width="200" height="100"></iframe>
<div id="forms"></div>
<script>
const target = ${JSON.stringify(target)};
const routes = ${JSON.stringify(routes)};
const results = [];
window.results = results;
function form(r, i, enctype) {
	const sink = document.createElement('iframe');
	sink.name = 'sink' + enctype.length + '_' + i;
	sink.style.display = 'none';
	document.body.append(sink);
	const f = document.createElement('form');
	f.method = 'POST';
	f.action = target + r.path;
	f.enctype = enctype;
	f.target = sink.name;
	const text = JSON.stringify(r.body);
	const inp = document.createElement('input');
	inp.type = 'hidden';
	if (enctype === 'text/plain') {
		/* name=value gives {"action":"stop","x":"="}: valid JSON in a text/plain body */
		inp.name = text.slice(0, -1) + ',"x":"';
		inp.value = '"}';
	} else {
		inp.name = 'json';
		inp.value = text;
	}
	f.append(inp);
	document.getElementById('forms').append(f);
	f.submit();
	results.push('form ' + enctype + ' ' + r.path);
}
(async () => {
	routes.forEach((r, i) => form(r, i, 'text/plain'));
	routes.forEach((r, i) => form(r, i, 'application/x-www-form-urlencoded'));
	for (const r of routes) {
		for (const headers of [{}, {'Content-Type': 'application/json'}]) {
			/* the request goes out either way; the daemon's
			 * Cross-Origin-Resource-Policy then fails the fetch */
			try {
				await fetch(target + r.path, {method: 'POST', mode: 'no-cors', credentials: 'include', headers, body: JSON.stringify(r.body)});
				results.push('no-cors sent ' + r.path + ' (opaque answer)');
			} catch (e) {
				results.push('no-cors sent ' + r.path + ' (answer blocked: ' + e.message + ')');
			}
		}
		try {
			const x = await fetch(target + r.path, {method: 'POST', credentials: 'include', headers: {'Content-Type': 'application/json'}, body: JSON.stringify(r.body)});
			results.push('cors READ ' + r.path + ' ' + x.status);
		} catch (e) {
			results.push('cors blocked ' + r.path);
		}
	}
	setTimeout(() => { document.title = 'done'; }, 1500);
})();
</script>
</body></html>`;
}

async function api(base, p, init) {
	const r = await fetch(base + p, init);
	return {status: r.status, body: await r.json()};
}
async function metric4xx(base, init) {
	const t = await (await fetch(base + '/metrics', init)).text();
	const m = t.match(/payguard_http_requests_total\{code="4xx"\} (\d+)/);
	return m ? Number(m[1]) : -1;
}
/* What the attack must not change: the state of every alert there was
 * before (the demo traffic opens new ones meanwhile, which must stay open),
 * the VSEs and the upgrade jobs. */
async function snapshot(base, init, before) {
	const alerts = (await api(base, '/api/pos/alerts?limit=10000', init)).body;
	const vses = (await api(base, '/api/vses', init)).body.vses;
	const jobs = (await api(base, '/api/images/jobs', init)).body;
	const known = before ? JSON.parse(before).alerts.map((a) => a[0]) : null;
	return JSON.stringify({
		alerts: alerts.filter((a) => !known || known.includes(a.id)).map((a) => [a.id, a.state, a.note || '']).sort(),
		fresh_not_open: alerts.filter((a) => known && !known.includes(a.id) && a.state !== 'open').map((a) => a.id),
		vses: vses.map((v) => [v.name, v.state]).sort(),
		jobs: jobs.map((j) => j.id).sort(),
	});
}

/* Opens the attack page in ctx against base; returns what the page did. */
async function attack(ctx, base, routes, init, label) {
	evilPage = attackPage(base, routes);
	const before = await snapshot(base, init, null);
	const n4xx = await metric4xx(base, init);
	const page = await ctx.newPage();
	const consoleMsgs = [];
	page.on('console', (m) => consoleMsgs.push(m.text()));
	const r = await page.goto(evilBase + '/attack.html');
	must(r && r.status() === 200, `${label}: the hostile page loads from ${evilBase}`);
	ok(await until(async () => (await page.title()) === 'done', 30000), `${label}: the hostile page ran every attempt`);
	await sleep(1500); /* the last form posts land */
	const results = await page.evaluate(() => window.results);
	const forms = results.filter((x) => x.startsWith('form')).length;
	const sent = results.filter((x) => x.startsWith('no-cors sent')).length;
	ok(forms === routes.length * 2 && sent === routes.length * 2, `${label}: ${forms} form posts and ${sent} no-cors fetches sent`, results.join(' | '));
	ok(results.filter((x) => x.startsWith('cors READ')).length === 0, `${label}: no cross-origin JSON fetch got an answer (preflight refused)`, results.join(' | '));
	const after = await snapshot(base, init, before);
	ok(after === before, `${label}: nothing changed (alerts, VSEs, upgrade jobs as before)`, `before ${before}\nafter  ${after}`);
	const got4xx = (await metric4xx(base, init)) - n4xx;
	ok(got4xx >= forms + sent, `${label}: the daemon saw and refused them (${got4xx} more 4xx answers, >= ${forms + sent})`);
	// framing: the dashboard renders in no frame; the control frame does
	const frames = page.frames().filter((f) => f !== page.mainFrame());
	const titles = await Promise.all(frames.map((f) => f.title().catch(() => '')));
	const navs = await Promise.all(frames.map((f) => f.$$eval('#nav a', (a) => a.length).catch(() => 0)));
	ok(titles.includes('benign frame'), `${label}: a frame from the hostile origin itself renders (the control)`, titles.join(' | '));
	ok(!titles.some((t) => /payguard/.test(t)) && navs.every((n) => n === 0), `${label}: the dashboard renders in no frame of the hostile page`, titles.join(' | '));
	ok(consoleMsgs.some((m) => /frame-ancestors|Refused to (display|frame)/i.test(m)), `${label}: chromium reports the frame refused (frame-ancestors)`, consoleMsgs.slice(0, 5).join(' | '));
	await page.close();
}

const watchdog = setTimeout(async () => {
	log(`FAIL: the test ran longer than ${TOTAL_MS / 1000} s`);
	for (const d of daemons)
		await stopDaemon(d);
	process.exit(1);
}, TOTAL_MS);

let browser = null;
let code = 1;
try {
	browser = await chromium.launch({executablePath: CHROMIUM, args: ['--no-sandbox']});
	log('chromium', browser.version(), 'hostile site', evilBase);

	// ---- 1: no token (loopback), the demo's alerts, VSEs and images ----
	{
		const d = startDaemon(['--demo']);
		const port = await daemonPort(d);
		const base = `http://127.0.0.1:${port}`;
		must(await until(async () => {
			const a = await api(base, '/api/pos/alerts?state=open');
			const v = await api(base, '/api/vses');
			const i = await api(base, '/api/images');
			return a.body.length > 0 && v.body.vses.length === 2 && v.body.vses.every((x) => x.state === 'running') && i.body.length > 0;
		}, 120000), 'daemon ready: an open POS alert, the two demo VSEs running, an image', daemonLog(d));
		const alert = (await api(base, '/api/pos/alerts?state=open')).body[0].id;
		const img = (await api(base, '/api/images')).body[0].id;
		const routes = [
			{path: `/api/pos/alerts/${alert}`, body: {action: 'acknowledge'}},
			{path: `/api/pos/alerts/${alert}`, body: {action: 'close', note: 'pwned'}},
			{path: '/api/vses', body: {name: 'evil', arena: '256K', pmem: '64K', applets: ['test'], expose: {link: 't1'}}},
			{path: '/api/vses/demo-pay', body: {action: 'stop'}},
			{path: '/api/vses/demo-transit', body: {action: 'destroy'}},
			{path: '/api/vses/demo-pay', body: {action: 'start'}},
			{path: `/api/images/${img}/upgrade`, body: {fix: true}},
		];
		log(`daemon on ${base}: alert ${alert} open, image ${img}`);
		const ctx = await browser.newContext();
		await attack(ctx, base, routes, undefined, 'no token');
		// the same actions from the dashboard's own origin work (the test can fail)
		const page = await ctx.newPage();
		const pageErrors = [];
		page.on('pageerror', (e) => pageErrors.push(e.message));
		await page.goto(base + '/pos');
		const act = await page.evaluate(async (id) => (await PG.post('/api/pos/alerts/' + id, {action: 'acknowledge'})).state, alert);
		ok(act === 'acknowledged', `own origin: the POS page acknowledges alert ${alert}`, act);
		ok(pageErrors.length === 0, 'own origin: no JavaScript error', pageErrors.join(' | '));
		await ctx.close();
		const st = await stopDaemon(d);
		ok(st.code === 0, 'daemon 1 stops cleanly', JSON.stringify(st));
	}

	// ---- 2: a token; the browser logs in through /?token= ----
	{
		const tokDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pg-hostile-tok-'));
		const tokFile = path.join(tokDir, 'token');
		const token = 'browser-token-' + Math.random().toString(36).slice(2) + '0123456789';
		fs.writeFileSync(tokFile, token + '\n', {mode: 0o600});
		const d = startDaemon(['--token-file', tokFile]);
		const port = await daemonPort(d);
		const base = `http://127.0.0.1:${port}`;
		const auth = {headers: {Authorization: 'Bearer ' + token}};
		must(await until(async () => {
			const s = await api(base, '/api/services', auth);
			return s.status === 200 && s.body.every((x) => x.state === 'running');
		}, 60000), 'daemon with a token ready', daemonLog(d));
		const ctx = await browser.newContext();
		const page = await ctx.newPage();
		const pageErrors = [];
		const cspErrors = [];
		page.on('pageerror', (e) => pageErrors.push(e.message));
		page.on('console', (m) => {
			if (/Content Security Policy/i.test(m.text()))
				cspErrors.push(m.text());
		});
		let r = await page.goto(base + '/');
		ok(r.status() === 401, 'token: the dashboard without logging in is 401', r.status());
		r = await page.goto(base + '/?token=wrong' + token);
		ok(r.status() === 401 && (await ctx.cookies()).length === 0, 'token: a wrong ?token= is 401 and sets no cookie', r.status());
		r = await page.goto(base + '/?token=' + encodeURIComponent(token));
		ok(r.status() === 200 && page.url() === base + '/', 'token: /?token=... lands on / with the token gone from the address', page.url());
		const cookies = await ctx.cookies();
		const c = cookies.find((x) => x.name === 'pg_session');
		ok(c && /^[0-9a-f]{64}$/.test(c.value) && c.httpOnly && c.sameSite === 'Strict' && c.path === '/' && !c.value.includes(token),
			'token: session cookie pg_session is random hex, HttpOnly, SameSite=Strict, Path=/', JSON.stringify(cookies));
		ok(await page.evaluate(() => document.cookie) === '', 'token: page scripts cannot read the cookie (HttpOnly)');
		ok(await until(async () => Number(await page.$eval('#sum-svc-running', (e) => e.textContent)) > 0, 20000), 'token: the overview shows live numbers with the cookie');
		await page.goto(base + '/se');
		const vname = 'tok-' + process.pid;
		await page.fill('#vse-name', vname);
		await page.selectOption('#vse-link', 'spi');
		await page.click('#vse-create');
		ok(await until(async () => (await api(base, '/api/vses', auth)).body.vses.some((v) => v.name === vname && v.state === 'running'), 30000),
			`token: the SE page creates VSE ${vname} with the cookie (Origin and JSON checks pass)`, await page.$eval('#vse-msg', (e) => e.textContent));
		ok(pageErrors.length === 0, 'token: no JavaScript error', pageErrors.join(' | '));
		ok(cspErrors.length === 0, 'token: no Content-Security-Policy violation on the pages', cspErrors.join(' | '));
		// the logged-in browser visits the hostile page: SameSite keeps the cookie
		// home and the guard refuses the rest
		const routes = [
			{path: `/api/vses/${vname}`, body: {action: 'stop'}},
			{path: `/api/vses/${vname}`, body: {action: 'destroy'}},
			{path: '/api/vses', body: {name: 'evil', arena: '256K', pmem: '64K', applets: ['test'], expose: {link: 't1'}}},
			{path: '/api/pos/alerts/1', body: {action: 'close'}},
		];
		await attack(ctx, base, routes, auth, 'token, logged in');
		await ctx.close();
		const st = await stopDaemon(d);
		ok(st.code === 0, 'daemon 2 stops cleanly', JSON.stringify(st));
		ok(!fs.readFileSync(d.logFile, 'utf8').includes(token), 'token: the token is not in the daemon log');
		fs.rmSync(tokDir, {recursive: true, force: true});
	}
	code = failures ? 1 : 0;
} catch (e) {
	if (!(e instanceof Fatal))
		log('FAIL', e.stack || e.message);
	code = 1;
} finally {
	clearTimeout(watchdog);
	if (browser)
		await browser.close().catch(() => {});
	for (const d of daemons) {
		await stopDaemon(d);
		if (code)
			console.log('---- daemon log (tail) ' + d.dir + '\n' + daemonLog(d));
		fs.closeSync(d.out);
		fs.rmSync(d.dir, {recursive: true, force: true});
	}
	evil.close();
	log(`${checks} checks, ${failures} failed: ${code ? 'FAIL' : 'PASS'}`);
	process.exit(code);
}
