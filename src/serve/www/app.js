/*
 * payguard dashboard (issue 9): the script every page shares. The nav bar,
 * fetch helpers that turn every failure into a visible message, a table
 * renderer that builds DOM nodes (text only, so nothing from the API is ever
 * parsed as HTML), SVG helpers and the polling loop. Plain JS, no library.
 */
'use strict';

const PG = (() => {
	const PAGES = [
		['/', 'Overview', 'index'],
		['/se', 'Secure elements', 'se'],
		['/images', 'Images', 'images'],
		['/load', 'Load', 'load'],
		['/pos', 'POS', 'pos'],
		['/health', 'Health', 'health'],
	];
	const POLL_MS = 2500;
	const SVGNS = 'http://www.w3.org/2000/svg';

	/* el('td', {class: 'num'}, 'text', node, ...): strings become text nodes. */
	function el(tag, attrs, ...kids) {
		const e = document.createElement(tag);
		setAttrs(e, attrs);
		for (const k of kids.flat(Infinity)) {
			if (k === null || k === undefined || k === false)
				continue;
			e.append(k instanceof Node ? k : document.createTextNode(String(k)));
		}
		return e;
	}
	function svg(tag, attrs, ...kids) {
		const e = document.createElementNS(SVGNS, tag);
		setAttrs(e, attrs);
		for (const k of kids.flat(Infinity)) {
			if (k === null || k === undefined || k === false)
				continue;
			e.append(k instanceof Node ? k : document.createTextNode(String(k)));
		}
		return e;
	}
	function setAttrs(e, attrs) {
		for (const [k, v] of Object.entries(attrs || {})) {
			if (v === null || v === undefined || v === false)
				continue;
			if (k.startsWith('on') && typeof v === 'function')
				e.addEventListener(k.slice(2), v);
			else if (k === 'style')
				e.style.cssText = String(v); /* through the CSSOM: the CSP forbids style attributes */
			else
				e.setAttribute(k, v === true ? '' : String(v));
		}
	}
	const $ = (id) => document.getElementById(id);

	/* ---- the top bar ---- */
	function header(active) {
		const nav = el('nav', {id: 'nav', 'data-testid': 'nav'});
		for (const [href, label, key] of PAGES)
			nav.append(el('a', {href, class: key === active ? 'active' : null, 'data-testid': 'nav-' + key}, label,
				key === 'pos' ? el('span', {id: 'nav-pos-count', class: 'count', 'data-testid': 'nav-pos-count', hidden: true}) : null));
		const live = el('div', {id: 'live', 'data-testid': 'live'}, el('span', {class: 'dot'}), el('span', {id: 'live-text'}, 'connecting…'));
		const top = el('header', {class: 'top'}, el('div', {class: 'brand'}, 'pay', el('span', null, 'guard')), nav, live);
		document.body.prepend(top);
	}
	function setLive(ok, text) {
		const l = $('live');
		if (!l)
			return;
		l.className = ok ? 'ok' : 'bad';
		$('live-text').textContent = text;
	}

	/* ---- fetch ---- */
	class ApiError extends Error {
		constructor(status, message) {
			super(message);
			this.status = status;
		}
	}
	async function req(method, path, body) {
		const init = {method, cache: 'no-store', headers: {}};
		if (body !== undefined) {
			init.headers['Content-Type'] = 'application/json';
			init.body = JSON.stringify(body);
		}
		let r;
		try {
			r = await fetch(path, init);
		} catch (e) {
			throw new ApiError(0, `${method} ${path}: the daemon does not answer (${e.message})`);
		}
		const text = await r.text();
		let j = null;
		try {
			j = text ? JSON.parse(text) : null;
		} catch (e) {
			if (r.ok)
				throw new ApiError(r.status, `${method} ${path}: the answer is not JSON`);
		}
		if (!r.ok) {
			const m = j && j.error && j.error.message ? j.error.message : (text.slice(0, 200) || r.statusText);
			const hint = r.status === 404 && /no route/.test(m) ? ' (this daemon does not serve that route)' : '';
			throw new ApiError(r.status, `${method} ${path}: ${r.status} ${m}${hint}`);
		}
		return j;
	}
	const get = (p) => req('GET', p);
	/* A text resource (/metrics); errors as for req(). */
	async function text(path) {
		let r;
		try {
			r = await fetch(path, {cache: 'no-store'});
		} catch (e) {
			throw new ApiError(0, `GET ${path}: the daemon does not answer (${e.message})`);
		}
		const t = await r.text();
		if (!r.ok)
			throw new ApiError(r.status, `GET ${path}: ${r.status} ${t.slice(0, 200)}`);
		return t;
	}
	const post = (p, b) => req('POST', p, b === undefined ? {} : b);

	/* ---- visible errors: each panel has <div class="err" id="err-NAME"> ---- */
	function showErr(name, e) {
		const box = $('err-' + name);
		const m = e && e.message ? e.message : String(e);
		if (box) {
			box.textContent = m;
			box.classList.add('show');
		} else {
			console.error(name, m);
		}
	}
	function clearErr(name) {
		const box = $('err-' + name);
		if (box) {
			box.textContent = '';
			box.classList.remove('show');
		}
	}

	/*
	 * table(id, rows, cols, opts) fills <table id=id> with a header and one
	 * row per item. cols: [{k: key, t: title, f: (v, row) => string | Node,
	 * num: right-aligned, cls: td class}]. opts.key(row) gives each row a
	 * data-key (the browser test finds rows by it), opts.selected(row) marks
	 * one, opts.click(row) makes rows clickable. An empty list shows one
	 * explicit "no data yet" row.
	 */
	function table(id, rows, cols, opts) {
		opts = opts || {};
		const t = $(id);
		const thead = el('thead', null, el('tr', null, cols.map((c) => el('th', {class: c.num ? 'num' : null}, c.t))));
		const tbody = el('tbody');
		if (!rows || rows.length === 0) {
			tbody.append(el('tr', {class: 'empty', 'data-testid': 'empty'}, el('td', {colspan: cols.length}, opts.empty || 'no data yet')));
		} else {
			for (const r of rows) {
				const cls = [opts.selected && opts.selected(r) ? 'sel' : '', opts.cls ? opts.cls(r) || '' : ''].join(' ').trim();
				const tr = el('tr', {'data-key': opts.key ? opts.key(r) : null, class: cls || null});
				if (opts.click) {
					tr.style.cursor = 'pointer';
					tr.addEventListener('click', (ev) => {
						if (!ev.target.closest('button, a'))
							opts.click(r);
					});
				}
				for (const c of cols) {
					const v = c.k ? r[c.k] : undefined;
					const out = c.f ? c.f(v, r) : cell(v);
					const td = el('td', {class: [c.num ? 'num' : '', c.wrap ? 'wrap' : '', c.cls || ''].join(' ').trim() || null, 'data-col': c.k || null});
					td.append(out instanceof Node ? out : document.createTextNode(out === null || out === undefined ? '–' : String(out)));
					tr.append(td);
				}
				tbody.append(tr);
			}
		}
		t.replaceChildren(thead, tbody);
	}
	function cell(v) {
		if (v === null || v === undefined || v === '')
			return '–';
		if (typeof v === 'number')
			return Number.isInteger(v) ? String(v) : v.toFixed(2);
		if (typeof v === 'boolean')
			return v ? 'yes' : 'no';
		if (typeof v === 'object')
			return JSON.stringify(v);
		return String(v);
	}
	/* A table of whatever objects an answer holds: columns from their keys. */
	function genericTable(id, rows) {
		const keys = [];
		for (const r of rows || [])
			for (const k of Object.keys(r))
				if (!keys.includes(k))
					keys.push(k);
		table(id, rows, keys.length ? keys.map((k) => ({k, t: k, f: k === 'state' ? badge : undefined})) : [{k: 'x', t: ' '}], {key: (r) => r.name || r.id || ''});
	}

	/* ---- formatting ---- */
	const STATE = {
		running: 'ok', up: 'ok', authenticated: 'ok', ok: 'ok', done: 'ok', committed: 'ok', in_place: 'ok', healthy: 'ok',
		backoff: 'warn', standby: 'info', busy: 'warn', refusing: 'bad', queued: 'info', acknowledged: 'info', starting: 'info', stopped: 'warn', moved: 'bad',
		failed: 'bad', down: 'bad', open: 'bad', interrupted: 'bad', error: 'bad', closed: '',
	};
	function badge(s) {
		const cls = STATE[s] !== undefined ? STATE[s] : '';
		return el('span', {class: 'badge ' + cls, 'data-state': s}, s === null || s === undefined ? '–' : String(s));
	}
	function num(v, d) {
		if (v === null || v === undefined || Number.isNaN(v))
			return '–';
		return Number(v).toLocaleString('en-US', {maximumFractionDigits: d === undefined ? 0 : d, minimumFractionDigits: d === undefined ? 0 : d});
	}
	function time(ms) {
		if (!ms)
			return '–';
		const d = new Date(ms);
		return d.toLocaleTimeString('en-GB', {hour12: false});
	}
	function ago(ms) {
		if (!ms)
			return '–';
		const s = Math.max(0, (Date.now() - ms) / 1000);
		if (s < 60)
			return Math.round(s) + ' s ago';
		if (s < 3600)
			return Math.round(s / 60) + ' min ago';
		return (s / 3600).toFixed(1) + ' h ago';
	}
	function dur(ms) {
		if (ms === null || ms === undefined || ms < 0)
			return '–';
		const s = Math.floor(ms / 1000);
		if (s < 60)
			return s + ' s';
		if (s < 3600)
			return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
		return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
	}
	function bytes(n) {
		if (n === null || n === undefined)
			return '–';
		const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
		let i = 0;
		while (n >= 1024 && i < u.length - 1) {
			n /= 1024;
			i++;
		}
		return (i ? n.toFixed(1) : n) + ' ' + u[i];
	}
	function mono(s, title) {
		return el('span', {class: 'mono trunc', title: title || s}, s === null || s === undefined ? '–' : String(s));
	}
	function basename(p) {
		return String(p || '').split('/').pop();
	}
	/* The last two components of a path: "image-demo/demo-disk.img". */
	function tail(p) {
		return String(p || '').split('/').slice(-2).join('/');
	}
	/*
	 * How long an alert has waited for someone, as a class: "age-new" under
	 * 15 minutes, "age-old" under 2 hours, "age-stale" beyond (app.css colours
	 * them amber, red and dark red). ageOf() gives the class and a short text.
	 */
	const AGE_STEPS = [[15 * 60e3, 'age-new', 'under 15 min'], [2 * 3600e3, 'age-old', '15 min to 2 h'], [Infinity, 'age-stale', 'over 2 h']];
	function ageOf(openedMs, now) {
		const a = Math.max(0, (now === undefined ? Date.now() : now) - openedMs);
		const s = AGE_STEPS.find((x) => a < x[0]);
		return {cls: s[1], text: s[2], ms: a};
	}
	/* A count badge coloured by the oldest open alert it counts. */
	function alertCount(node, open) {
		const oldest = open.length ? Math.min(...open.map((a) => a.opened_ms)) : null;
		const g = oldest === null ? null : ageOf(oldest);
		node.textContent = String(open.length);
		node.className = 'count' + (g ? ' ' + g.cls : ' none');
		node.title = open.length ? open.length + ' open alert' + (open.length === 1 ? '' : 's') + ', the oldest opened ' + ago(oldest) : 'no open alerts';
		node.dataset.age = g ? g.cls : '';
		node.hidden = false;
	}
	/* The POS tab's badge: the open alerts, on every page. */
	async function navAlerts() {
		const b = $('nav-pos-count');
		if (!b)
			return;
		alertCount(b, await get('/api/pos/alerts?state=open&limit=10000'));
	}

	/* Colours of the plots (load types, series). */
	const COLOURS = ['#2457c5', '#e0892b', '#2e9e5b', '#c0352b', '#7b54c9', '#8c6239', '#d0549b', '#5d6b7e', '#1aa3b5', '#a8a82b'];

	/*
	 * poll(tasks): run every task now and then every 2.5 s, one round at a
	 * time. A task is [name, async fn]; a task that throws shows its message
	 * in err-NAME and the others carry on. The top bar says whether the
	 * daemon answered the last round.
	 */
	function poll(tasks, ms) {
		let timer = null;
		let running = false;
		let again = false;
		async function round() {
			if (running) {
				again = true; /* an action asked for fresh data mid-round */
				return;
			}
			running = true;
			again = false;
			clearTimeout(timer);
			let fails = 0, down = 0;
			await Promise.all(tasks.concat([['nav', navAlerts]]).map(async ([name, fn]) => {
				try {
					await fn();
					clearErr(name);
				} catch (e) {
					fails++;
					if (e instanceof ApiError && e.status === 0)
						down++;
					showErr(name, e);
				}
			}));
			if (down && down === fails && fails === tasks.length + 1)
				setLive(false, 'daemon not answering');
			else
				setLive(true, 'live · ' + time(Date.now()) + (fails ? ' · ' + fails + ' error' + (fails > 1 ? 's' : '') : ''));
			running = false;
			timer = setTimeout(round, again ? 0 : ms || POLL_MS);
		}
		round();
		return round; /* call to refresh now (after an action) */
	}

	return {el, svg, $, header, get, text, post, req, ApiError, showErr, clearErr, table, genericTable, cell, badge, num, time, ago, dur, bytes, mono, basename, tail, poll, COLOURS, ageOf, alertCount};
})();
