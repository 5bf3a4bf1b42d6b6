/*
 * fulcrum's dashboard (core/dashboard/index.html), served as /dashboard.js.
 *
 * It reads the admin listener's event stream, GET /api/events (see
 * core/monitor.c): `status` at once and every second (the document of
 * /api/status, core/status.c), `backend` on each state change ({pool,
 * backend, state, since, reason}) and `reload` on each reload ({result,
 * generation, error, time}). The status carries cumulative counters, so the
 * rates shown (requests/s, errors/s, error %) are the differences between two
 * successive statuses over the time between them, as this page measured it.
 *
 * The stream is read with fetch() and a small Server-Sent Events parser
 * rather than EventSource, because EventSource cannot send the
 * `Authorization: Bearer` header that a listener with a token asks for. On
 * 401 the page asks for the token once and keeps it in sessionStorage (this
 * tab only). When the stream ends, or brings no status for STALE_MS, it is
 * dropped and opened again after a growing, jittered delay.
 *
 * Writes go through the runtime API (core/runtime.c): each backend row has
 * the buttons among Drain, Maint and Ready that change its state (PATCH
 * /api/pools/{pool}/backends/{address}), and the header a Reload button
 * (POST /api/reload), with the same token as the stream. They are shown
 * once a status came: the listener then took this page's credentials (its
 * token, or none when it has none), and it takes writes on the same terms.
 * The outcome, the server's own error text on failure, is told in
 * #action-status (a live region); the row itself changes with the next
 * status, which is what the daemon does, not what the page hoped.
 *
 * Everything is drawn with the DOM (textContent only: nothing from the
 * server is parsed as HTML) and one canvas per pool; ids, classes and
 * data- attributes are stable, for the tests (tests/integration/test_dashboard.c).
 */
'use strict';

(function () {
    const TOKEN_KEY = 'fulcrum.admin.token';
    const HISTORY_MS = 5 * 60 * 1000; /* the charts' longest span */
    const SPAN_MIN_MS = 30 * 1000;    /* their shortest: a new page's chart grows to HISTORY_MS */
    const GAP_MS = 5000;              /* points further apart than this are not joined */
    const STALE_MS = 3500;            /* a stream without a status for this long is dead */
    const MIN_INTERVAL_MS = 500;      /* rates are measured over at least this long */
    const BACKOFF_MIN_MS = 1000;
    const BACKOFF_MAX_MS = 30000;
    const OFFLINE_AFTER = 3;          /* failed attempts in a row before "offline" */
    const TIMELINE_MAX = 50;
    const SETTLE_MS = 3000;           /* a changed row waits this long at most for a status to show it */

    const $ = (id) => document.getElementById(id);

    const app = {
        token: readToken(),
        controller: null,     /* the AbortController of the stream being read */
        openedAt: 0,          /* performance.now() when its response came */
        lastStatusAt: 0,      /* performance.now() of the last status */
        lastStatusWall: 0,    /* Date.now() of the same */
        statuses: 0,          /* statuses received since the page opened */
        attempts: 0,          /* failed attempts since the last status */
        retryAt: 0,           /* performance.now() of the next attempt, or 0 */
        retryTimer: 0,
        why: '',              /* why the last stream was dropped */
        prev: new Map(),      /* "pool\nbackend" -> {t, requests, failures} */
        rates: new Map(),     /* "pool\nbackend" -> {rps, eps, errPct} */
        history: new Map(),   /* pool -> [{t, rps, eps}] (t: Date.now()) */
        pools: new Map(),     /* pool -> {section, rows: Map(address -> refs), ...} */
        listeners: new Map(), /* address -> row */
        reloads: null,        /* {done, failed} as last counted */
        timeline: [],         /* newest first */
        writable: false,      /* the listener takes this page's writes: buttons shown */
        actionsDone: 0,       /* writes answered (or failed) since the page opened */
    };

    /* ---- small helpers ------------------------------------------------- */

    function readToken() {
        try {
            return sessionStorage.getItem(TOKEN_KEY);
        } catch (e) {
            return null;
        }
    }

    function writeToken(t) {
        try {
            if (t === null)
                sessionStorage.removeItem(TOKEN_KEY);
            else
                sessionStorage.setItem(TOKEN_KEY, t);
        } catch (e) {
            /* storage refused: the token lives as long as the page */
        }
    }

    /* el('td', {class: 'num', dataset: {label: 'p50'}}, 'text', child...) */
    function el(tag, attrs, ...children) {
        const e = document.createElement(tag);
        for (const [k, v] of Object.entries(attrs || {})) {
            if (k === 'class')
                e.className = v;
            else if (k === 'dataset')
                Object.assign(e.dataset, v);
            else
                e.setAttribute(k, v);
        }
        for (const c of children)
            e.append(c);
        return e;
    }

    function setText(e, text) {
        if (e.textContent !== text)
            e.textContent = text;
    }

    function pad2(n) {
        return n < 10 ? '0' + n : String(n);
    }

    function clock(ms) {
        const d = new Date(ms);
        return pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + ':' + pad2(d.getSeconds());
    }

    function fmtUptime(s) {
        s = Math.max(0, Math.floor(s));
        if (s < 60)
            return s + ' s';
        if (s < 3600)
            return Math.floor(s / 60) + ' min ' + pad2(s % 60) + ' s';
        if (s < 86400)
            return Math.floor(s / 3600) + ' h ' + pad2(Math.floor(s / 60) % 60) + ' min';
        return Math.floor(s / 86400) + ' d ' + Math.floor(s / 3600) % 24 + ' h';
    }

    function fmtRate(x) {
        if (x === null || x === undefined || !isFinite(x))
            return '–';
        if (x >= 10000)
            return (x / 1000).toFixed(1) + 'k';
        if (x >= 100)
            return String(Math.round(x));
        return x.toFixed(1);
    }

    function fmtPct(p) {
        if (p === null || p === undefined || !isFinite(p))
            return '–';
        if (p === 0)
            return '0 %';
        if (p < 0.1)
            return '<0.1 %';
        return (p < 10 ? p.toFixed(1) : String(Math.round(p))) + ' %';
    }

    function fmtBytes(n) {
        if (n === null || n === undefined || !isFinite(n))
            return '–';
        const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
        let u = 0;
        while (n >= 1024 && u < units.length - 1) {
            n /= 1024;
            u++;
        }
        return (u === 0 || n >= 10 ? String(Math.round(n)) : n.toFixed(1)) + ' ' + units[u];
    }

    function fmtMs(ms) {
        if (ms === null || ms === undefined || !isFinite(ms) || ms <= 0)
            return '–';
        if (ms < 1)
            return ms.toFixed(2) + ' ms';
        if (ms < 10)
            return ms.toFixed(1) + ' ms';
        if (ms < 1000)
            return Math.round(ms) + ' ms';
        return (ms / 1000).toFixed(2) + ' s';
    }

    function errLevel(p) {
        if (p === null || p === undefined || p === 0)
            return 'ok';
        return p >= 5 ? 'bad' : 'warn';
    }

    /* ---- the connection ------------------------------------------------- */

    /*
     * A parser of Server-Sent Events (the WHATWG rules): feed it text as it
     * arrives, in any pieces; it calls onEvent(name, data) at each blank line
     * that ends an event with data.
     */
    function sseParser(onEvent) {
        let buf = '';
        let name = '';
        let data = [];
        return function feed(text) {
            buf += text;
            let start = 0;
            for (;;) {
                let i = start;
                while (i < buf.length && buf[i] !== '\n' && buf[i] !== '\r')
                    i++;
                if (i >= buf.length)
                    break;
                /* A CR at the very end may be the first half of a CRLF: wait for more. */
                if (buf[i] === '\r' && i + 1 === buf.length)
                    break;
                const line = buf.slice(start, i);
                start = i + (buf[i] === '\r' && buf[i + 1] === '\n' ? 2 : 1);
                if (line === '') {
                    if (data.length > 0)
                        onEvent(name || 'message', data.join('\n'));
                    name = '';
                    data = [];
                    continue;
                }
                if (line[0] === ':')
                    continue; /* a comment */
                const colon = line.indexOf(':');
                const field = colon < 0 ? line : line.slice(0, colon);
                let value = colon < 0 ? '' : line.slice(colon + 1);
                if (value[0] === ' ')
                    value = value.slice(1);
                if (field === 'event')
                    name = value;
                else if (field === 'data')
                    data.push(value);
                /* id and retry: this page keeps its own reconnection delays. */
            }
            buf = buf.slice(start);
        };
    }

    async function connect() {
        clearTimeout(app.retryTimer);
        app.retryAt = 0;
        const controller = new AbortController();
        app.controller = controller;
        app.openedAt = 0;
        showConn(app.statuses === 0 && app.attempts === 0 ? 'connecting' : 'reconnecting');
        let resp;
        try {
            const headers = {Accept: 'text/event-stream'};
            if (app.token)
                headers.Authorization = 'Bearer ' + app.token;
            resp = await fetch('/api/events', {headers, cache: 'no-store', signal: controller.signal});
        } catch (e) {
            dropped(controller, 'cannot reach the admin listener');
            return;
        }
        if (controller !== app.controller)
            return;
        if (resp.status === 401) {
            controller.abort();
            app.controller = null;
            askToken(app.token !== null);
            return;
        }
        if (!resp.ok || !resp.body) {
            controller.abort();
            dropped(controller, 'the admin listener answered ' + resp.status);
            return;
        }
        app.openedAt = performance.now();
        const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        const feed = sseParser(onEvent);
        let why = 'the stream ended';
        try {
            for (;;) {
                const {value, done} = await reader.read();
                if (done)
                    break;
                if (controller !== app.controller)
                    return;
                feed(value);
            }
        } catch (e) {
            why = 'the stream broke';
        }
        dropped(controller, why);
    }

    /* The stream of `controller` is over: try again later (unless a newer one runs). */
    function dropped(controller, why) {
        if (controller !== app.controller)
            return;
        controller.abort();
        app.controller = null;
        app.why = why;
        app.attempts++;
        const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (app.attempts - 1));
        const delay = Math.round(base * (0.8 + 0.4 * Math.random()));
        app.retryAt = performance.now() + delay;
        app.retryTimer = setTimeout(connect, delay);
        showConn(app.attempts >= OFFLINE_AFTER ? 'offline' : 'reconnecting');
    }

    const CONN_TEXT = {
        connecting: 'connecting…',
        live: 'live',
        reconnecting: 'reconnecting',
        offline: 'offline',
        token: 'token needed',
    };

    function showConn(kind) {
        const c = $('conn');
        c.dataset.state = kind;
        setText(c, CONN_TEXT[kind]);
        const stale = kind !== 'live' && app.statuses > 0;
        document.body.classList.toggle('stale', stale);
        const banner = $('banner');
        if (kind === 'reconnecting' || kind === 'offline') {
            const left = app.retryAt ? Math.max(0, Math.ceil((app.retryAt - performance.now()) / 1000)) : 0;
            let text = 'Not connected to fulcrum: ' + app.why + '.';
            if (app.statuses > 0)
                text += ' The figures below are from ' + clock(app.lastStatusWall) + '.';
            text += app.retryAt ? ' Trying again in ' + left + ' s.' : ' Trying again…';
            setText(banner, text);
            banner.dataset.level = kind;
            banner.hidden = false;
        } else {
            banner.hidden = true;
        }
    }

    /* Once a second: a stream that went quiet is dropped; the countdown moves. */
    function watchdog() {
        const now = performance.now();
        if (app.controller && app.openedAt) {
            const since = Math.max(app.lastStatusAt, app.openedAt);
            if (now - since > STALE_MS)
                dropped(app.controller, 'no status for ' + Math.round((now - since) / 1000) + ' s');
        }
        const kind = $('conn').dataset.state;
        if (kind === 'reconnecting' || kind === 'offline')
            showConn(kind);
    }

    function askToken(refused) {
        if (refused) {
            app.token = null;
            writeToken(null);
        }
        setWritable(false);
        showConn('token');
        if (app.statuses === 0)
            setText($('pools-empty'), 'The figures need the token.');
        $('banner').hidden = true;
        $('token-error').hidden = !refused;
        $('token-form').hidden = false;
        $('token-input').focus();
    }

    function onTokenSubmit(ev) {
        ev.preventDefault();
        const t = $('token-input').value.trim();
        if (t === '')
            return;
        app.token = t;
        writeToken(t);
        $('token-input').value = '';
        $('token-form').hidden = true;
        app.attempts = 0;
        connect();
    }

    /* ---- events ----------------------------------------------------------- */

    function onEvent(name, data) {
        let v;
        try {
            v = JSON.parse(data);
        } catch (e) {
            return;
        }
        if (name === 'status')
            onStatus(v);
        else if (name === 'backend')
            onBackend(v);
        else if (name === 'reload')
            onReload(v);
    }

    function onStatus(s) {
        const now = performance.now();
        app.lastStatusAt = now;
        app.lastStatusWall = Date.now();
        app.statuses++;
        app.attempts = 0;
        document.body.dataset.statuses = String(app.statuses);
        showConn('live');
        setWritable(true);

        setText($('version'), s.version || '–');
        setText($('uptime'), fmtUptime(s.uptime_s || 0));
        setText($('generation'), String(s.generation));
        setText($('workers'), String(s.workers));
        setText($('updated'), 'updated ' + clock(app.lastStatusWall));
        $('uptime').dataset.seconds = String(s.uptime_s);

        const total = computeRates(s, now);
        setText($('total-rps'), fmtRate(total));
        renderListeners(s.listeners || []);
        renderPools(s.pools || []);
        countReloads(s.reloads || {}, s.generation);
    }

    /*
     * Rates of every backend from the counters' growth since the previous
     * status; a counter that went down (not expected: counters of a backend
     * that stays across a reload keep counting) starts afresh. A status less
     * than MIN_INTERVAL_MS after the one measured from (the stream's first
     * status comes at once, and the next one whenever the daemon's second
     * ticks) changes no rate: the next one is measured over the longer
     * interval. Adds a point to each pool's history; returns the requests/s
     * of all pools, or null.
     */
    function computeRates(s, now) {
        const wall = Date.now();
        const seen = new Set();
        let total = null;
        for (const p of s.pools || []) {
            let rps = null;
            let eps = null;
            for (const b of p.backends || []) {
                const key = p.name + '\n' + b.address;
                seen.add(key);
                const prev = app.prev.get(key);
                const reset = !prev || b.requests < prev.requests || b.failures < prev.failures;
                if (!reset && now - prev.t < MIN_INTERVAL_MS)
                    continue;
                app.prev.set(key, {t: now, requests: b.requests, failures: b.failures});
                if (reset) {
                    app.rates.delete(key);
                    continue;
                }
                const dt = (now - prev.t) / 1000;
                const dreq = b.requests - prev.requests;
                const dfail = b.failures - prev.failures;
                const tries = Math.max(dreq, dfail);
                const r = {rps: dreq / dt, eps: dfail / dt, errPct: tries > 0 ? (100 * dfail) / tries : null};
                app.rates.set(key, r);
                rps = (rps || 0) + r.rps;
                eps = (eps || 0) + r.eps;
            }
            if (rps !== null) {
                total = (total || 0) + rps;
                let h = app.history.get(p.name);
                if (!h)
                    app.history.set(p.name, (h = []));
                h.push({t: wall, rps, eps});
                while (h.length > 0 && h[0].t < wall - HISTORY_MS - GAP_MS)
                    h.shift();
            }
        }
        for (const key of app.prev.keys())
            if (!seen.has(key)) {
                app.prev.delete(key);
                app.rates.delete(key);
            }
        return total;
    }

    function onBackend(ev) {
        const pool = app.pools.get(ev.pool);
        const refs = pool && pool.rows.get(ev.backend);
        if (!refs)
            return;
        /* The event tells no verdict of its own: a drained backend's comes with the next status. */
        const ok = ev.state === 'up' ? true : ev.state === 'down' ? false : undefined;
        setState(refs, ev.state, {ok, reason: ev.reason, since: ev.since});
        refs.badge.classList.add('flash');
        clearTimeout(refs.flash);
        refs.flash = setTimeout(() => refs.badge.classList.remove('flash'), 1500);
        addTimeline({
            kind: 'backend',
            time: ev.since ? ev.since * 1000 : Date.now(),
            pool: ev.pool,
            backend: ev.backend,
            state: ev.state,
            reason: ev.reason,
        });
    }

    function onReload(ev) {
        if (app.reloads && (ev.result === 'done' || ev.result === 'failed'))
            app.reloads[ev.result]++;
        addTimeline({
            kind: 'reload',
            time: ev.time ? ev.time * 1000 : Date.now(),
            result: ev.result,
            generation: ev.generation,
            error: ev.error || '',
        });
    }

    /*
     * The status counts reloads since the start: the first one seen gives the
     * summary, and reloads that the stream did not tell (they happened while
     * it was down) are added to the timeline from the counts' growth.
     */
    function countReloads(r, generation) {
        const done = r.done || 0;
        const failed = r.failed || 0;
        if (app.reloads) {
            for (let i = app.reloads.done; i < done; i++)
                addTimeline({kind: 'reload', time: Date.now(), result: 'done', generation, error: '', missed: true});
            for (let i = app.reloads.failed; i < failed; i++)
                addTimeline({kind: 'reload', time: Date.now(), result: 'failed', generation, error: r.last_error || '', missed: true});
        }
        app.reloads = {done, failed};
        let text = 'Reloads since the start: ' + done + ' done, ' + failed + ' failed.';
        if (done + failed === 0)
            text = 'No reload since the start.';
        else if (r.last_error)
            text += ' The last failure: ' + r.last_error;
        setText($('timeline-summary'), text);
    }

    /* ---- rendering -------------------------------------------------------- */

    function renderListeners(list) {
        const body = $('listener-rows');
        const seen = new Set();
        for (const l of list) {
            seen.add(l.address);
            let row = app.listeners.get(l.address);
            if (!row) {
                row = el('tr', {class: 'listener', dataset: {address: l.address}},
                    el('td', {class: 'address'}, l.address),
                    el('td', {class: 'pool'}),
                    el('td', {class: 'connections num'}));
                app.listeners.set(l.address, row);
            }
            setText(row.querySelector('.pool'), l.pool);
            setText(row.querySelector('.connections'), String(l.connections));
            body.append(row); /* in the status's order */
        }
        for (const [address, row] of app.listeners)
            if (!seen.has(address)) {
                row.remove();
                app.listeners.delete(address);
            }
    }

    function pluginText(p) {
        return p ? p.plugin + (p.version ? ' ' + p.version : '') : null;
    }

    function makePool(name) {
        const canvas = el('canvas', {class: 'chart', role: 'img', dataset: {pool: name}});
        const tbody = el('tbody');
        const th = (text, cls) => el('th', cls ? {class: cls} : {}, text);
        const section = el('article', {class: 'pool', dataset: {pool: name}},
            el('div', {class: 'pool-head'},
                el('h3', {class: 'name'}, name),
                el('span', {class: 'meta strategy'}),
                el('span', {class: 'meta cache', hidden: true},
                    'cache ', el('b', {class: 'cache-ratio'}, '–'), ' hits · ',
                    el('span', {class: 'cache-bytes'}, '–')),
                el('span', {class: 'totals'},
                    el('b', {class: 'pool-rps'}, '–'), ' req/s · ',
                    el('b', {class: 'pool-errors'}, '–'), ' errors')),
            el('div', {class: 'chart-box'}, canvas,
                el('div', {class: 'legend'},
                    el('span', {class: 'rps'}, 'requests/s'),
                    el('span', {class: 'err'}, 'errors/s (5xx and failures)'),
                    el('span', {class: 'range'}, 'up to the last 5 minutes'))),
            el('table', {class: 'grid backends'},
                el('thead', {}, el('tr', {},
                    th('backend'), th('state'), th('weight', 'num'), th('req/s', 'num'),
                    th('errors', 'num'), th('p50', 'num'), th('p99', 'num'), th('in flight', 'num'),
                    el('th', {class: 'col-actions'}, el('span', {class: 'sr-only'}, 'actions')))),
                tbody));
        return {section, canvas, tbody, rows: new Map()};
    }

    function makeRow(pool, address) {
        const td = (cls, label) => el('td', {class: cls, dataset: {label}});
        const badge = el('span', {class: 'badge'});
        const reason = el('span', {class: 'reason'});
        const source = el('span', {class: 'source', hidden: ''});
        const refs = {
            pool,
            backend: address,
            row: el('tr', {class: 'backend', dataset: {pool, backend: address}}),
            address: el('td', {class: 'address'}, el('span', {class: 'addr'}, address), source),
            source,
            state: el('td', {class: 'state'}, badge, reason),
            badge,
            reason,
            actions: el('td', {class: 'actions col-actions'}),
            busy: false,   /* a write of this row runs, or waits for a status to show it */
            expect: null,  /* the state that write should bring: 'drain', 'maint' or 'ready' */
            settle: 0,     /* the timer that ends the wait for it */
            weight: td('weight num', 'weight'),
            rps: td('rps num', 'req/s'),
            errors: td('errors num', 'errors'),
            p50: td('p50 num', 'p50'),
            p99: td('p99 num', 'p99'),
            inflight: td('inflight num', 'in flight'),
        };
        refs.row.append(refs.address, refs.state, refs.weight, refs.rps, refs.errors, refs.p50,
            refs.p99, refs.inflight, refs.actions);
        return refs;
    }

    const STATES = ['up', 'down', 'drain', 'maint'];

    /*
     * A backend's state, as text and as classes (state-up, ...), so that it
     * is never told by colour alone. drain and maint are the operator's: the
     * line below says what they mean, with the health it has (health checks
     * go on for a drained backend, not for one in maintenance).
     */
    function setState(refs, state, health) {
        refs.row.dataset.state = state;
        refs.badge.dataset.state = state;
        for (const s of STATES) {
            refs.badge.classList.toggle('state-' + s, s === state);
            refs.row.classList.toggle('state-' + s, s === state);
        }
        setText(refs.badge, state);
        const since = health.since ? ' · since ' + clock(health.since * 1000) : '';
        let why = '';
        if (state === 'drain')
            why = 'drained: no new requests' + (health.ok === true ? ' · health ok'
                : health.ok === false ? ' · health down' + (health.reason ? ': ' + health.reason : '')
                : health.reason ? ' · ' + health.reason : '');
        else if (state === 'maint')
            why = 'maintenance: no requests, no health checks';
        else if (state !== 'up')
            why = (health.reason || '') + since;
        setText(refs.reason, why);
        refs.reason.hidden = why === '';
        renderActions(refs);
    }

    const SOURCE_TITLES = {
        runtime: 'added at run time (the runtime API), not in the configuration file',
        dns: 'found by service discovery (DNS), not in the configuration file',
    };

    /* A badge ("runtime", "dns") on a backend that the configuration file does not name. */
    function setSource(refs, source) {
        source = source || 'config';
        refs.row.dataset.source = source;
        const shown = source !== 'config';
        if (shown) {
            setText(refs.source, source);
            refs.source.title = SOURCE_TITLES[source] || '';
        }
        refs.source.hidden = !shown;
    }

    /*
     * A pool's response cache: its hit ratio since the start (hits over the
     * requests it looked up: hits, misses and stale ones; bypassed requests
     * do not count) and what its store holds.
     */
    function renderCache(box, c) {
        box.hidden = !c;
        if (!c)
            return;
        const q = c.requests || {};
        const looked = (q.hit || 0) + (q.miss || 0) + (q.stale || 0);
        const ratio = looked > 0 ? (100 * (q.hit || 0)) / looked : null;
        setText(box.querySelector('.cache-ratio'), fmtPct(ratio));
        box.querySelector('.cache-ratio').title =
            (q.hit || 0) + ' hits, ' + (q.miss || 0) + ' misses, ' + (q.stale || 0) + ' stale, ' +
            (q.bypass || 0) + ' bypassed since the start';
        setText(box.querySelector('.cache-bytes'),
            fmtBytes(c.bytes) + (c.max_bytes ? ' of ' + fmtBytes(c.max_bytes) : '') + ' · ' +
            c.entries + (c.entries === 1 ? ' entry' : ' entries') + ' (' + pluginText(c) + ')');
    }

    function renderPools(pools) {
        const list = $('pool-list');
        $('pools-empty').hidden = pools.length > 0;
        if (pools.length === 0)
            setText($('pools-empty'), 'No pools.');
        const seen = new Set();
        for (const p of pools) {
            seen.add(p.name);
            let pool = app.pools.get(p.name);
            if (!pool) {
                pool = makePool(p.name);
                app.pools.set(p.name, pool);
            }
            list.append(pool.section);
            const meta = [pluginText(p.strategy)];
            if (p.health)
                meta.push('health ' + pluginText(p.health));
            if (p.rate_limit)
                meta.push('rate limit ' + pluginText(p.rate_limit));
            setText(pool.section.querySelector('.strategy'), meta.filter(Boolean).join(' · '));
            renderCache(pool.section.querySelector('.cache'), p.cache);

            const rowsSeen = new Set();
            let rps = null;
            let eps = 0;
            for (const b of p.backends || []) {
                rowsSeen.add(b.address);
                let refs = pool.rows.get(b.address);
                if (!refs) {
                    refs = makeRow(p.name, b.address);
                    pool.rows.set(b.address, refs);
                }
                const r = app.rates.get(p.name + '\n' + b.address);
                setSource(refs, b.source);
                setState(refs, b.state, b.health || {});
                settleIfShown(refs);
                refs.row.dataset.requests = String(b.requests);
                refs.row.dataset.failures = String(b.failures);
                setText(refs.weight, String(b.weight));
                setText(refs.rps, fmtRate(r ? r.rps : null));
                refs.rps.title = b.requests + ' requests since the start';
                setText(refs.errors, fmtPct(r ? r.errPct : null));
                refs.errors.dataset.level = errLevel(r ? r.errPct : null);
                refs.errors.title = b.failures + ' failures (5xx and connection failures) since the start';
                const lat = b.latency_ms || {};
                const answered = b.requests > 0;
                setText(refs.p50, answered ? fmtMs(lat.p50) : '–');
                setText(refs.p99, answered ? fmtMs(lat.p99) : '–');
                setText(refs.inflight, String(b.inflight));
                pool.tbody.append(refs.row);
                if (r) {
                    rps = (rps || 0) + r.rps;
                    eps += r.eps;
                }
            }
            for (const [address, refs] of pool.rows)
                if (!rowsSeen.has(address)) {
                    refs.row.remove();
                    pool.rows.delete(address);
                }
            const tries = Math.max(rps || 0, eps);
            setText(pool.section.querySelector('.pool-rps'), fmtRate(rps));
            setText(pool.section.querySelector('.pool-errors'), fmtPct(tries > 0 ? (100 * eps) / tries : null));
            drawChart(pool.canvas, app.history.get(p.name) || [], p.name);
        }
        for (const [name, pool] of app.pools)
            if (!seen.has(name)) {
                pool.section.remove();
                app.pools.delete(name);
                app.history.delete(name);
            }
    }

    function addTimeline(entry) {
        app.timeline.unshift(entry);
        app.timeline.sort((a, b) => b.time - a.time);
        app.timeline.length = Math.min(app.timeline.length, TIMELINE_MAX);
        const ol = $('timeline');
        ol.replaceChildren(...app.timeline.map(timelineItem));
    }

    function timelineItem(e) {
        const when = el('time', {datetime: new Date(e.time).toISOString()}, clock(e.time));
        if (e.kind === 'reload') {
            const li = el('li', {class: 'reload', dataset: {result: e.result, generation: String(e.generation)}},
                when,
                el('span', {class: 'result'}, e.result === 'done' ? 'reload done' : 'reload failed'),
                el('span', {class: 'detail'}, e.result === 'done'
                    ? 'generation ' + e.generation + (e.missed ? ' (while this page was not connected)' : '')
                    : 'generation ' + e.generation + ' stays' + (e.missed ? ' (while this page was not connected)' : '')));
            if (e.error)
                li.append(el('span', {class: 'error'}, e.error));
            return li;
        }
        return el('li', {class: 'backend-change', dataset: {state: e.state, pool: e.pool, backend: e.backend}},
            when,
            el('span', {class: 'badge', dataset: {state: e.state}}, e.state),
            el('span', {class: 'detail'}, e.pool + ' ' + e.backend + (e.reason ? ': ' + e.reason : '')));
    }

    /* ---- writes: the runtime API ------------------------------------------ */

    const ACTIONS = {
        drain: {label: 'Drain', doing: 'Draining', done: 'drained',
            title: 'No new requests; those in flight finish; health checks go on'},
        maint: {label: 'Maint', doing: 'Putting into maintenance', done: 'in maintenance',
            title: 'As drain, and health checks stop'},
        ready: {label: 'Ready', doing: 'Putting back in rotation', done: 'back in rotation',
            title: 'Back in rotation (once its health check passes)'},
    };

    /* The actions that change something for a backend in `state`. */
    function actionsFor(state) {
        if (state === 'drain')
            return ['ready', 'maint'];
        if (state === 'maint')
            return ['ready', 'drain'];
        return ['drain', 'maint'];
    }

    /* Whether a status that shows `state` shows what action `expect` asked for. */
    function shows(state, expect) {
        return expect === 'ready' ? state === 'up' || state === 'down' : state === expect;
    }

    /* The row's buttons for its state, made again only when that changed. */
    function renderActions(refs) {
        const want = app.writable ? actionsFor(refs.row.dataset.state) : [];
        const key = want.join(' ');
        if (refs.actions.dataset.shown === key) {
            for (const b of refs.actions.children)
                b.disabled = refs.busy;
            return;
        }
        refs.actions.dataset.shown = key;
        const focused = refs.actions.contains(document.activeElement);
        refs.actions.replaceChildren(...want.map((a) => {
            const b = el('button', {
                type: 'button',
                class: 'action',
                title: ACTIONS[a].title,
                'aria-label': ACTIONS[a].label + ' ' + refs.backend + ' (pool ' + refs.pool + ')',
                dataset: {action: a},
            }, ACTIONS[a].label);
            b.disabled = refs.busy;
            return b;
        }));
        /* A keyboard user who pressed one of the old buttons stays in the row. */
        if (focused && refs.actions.firstChild)
            refs.actions.firstChild.focus();
    }

    function setBusy(refs, busy) {
        refs.busy = busy;
        refs.row.setAttribute('aria-busy', busy ? 'true' : 'false');
        renderActions(refs);
    }

    /* A row whose write was answered: free again once a status shows it (or after SETTLE_MS). */
    function settleIfShown(refs) {
        if (refs.busy && refs.expect && shows(refs.row.dataset.state, refs.expect)) {
            clearTimeout(refs.settle);
            refs.expect = null;
            setBusy(refs, false);
        }
    }

    function setWritable(writable) {
        if (app.writable === writable)
            return;
        app.writable = writable;
        document.body.classList.toggle('writable', writable);
        $('controls').hidden = !writable;
        for (const pool of app.pools.values())
            for (const refs of pool.rows.values())
                renderActions(refs);
    }

    /*
     * Tells the outcome of a write in #action-status, a live region: `level`
     * 'busy', 'ok' or 'error'; `lines`, if any, listed below the text (the
     * errors of a refused reload, each with its file and line).
     */
    function say(level, text, lines) {
        const box = $('action-status');
        box.dataset.level = level;
        delete box.dataset.generation;
        const parts = [el('time', {datetime: new Date().toISOString()}, clock(Date.now())),
            el('span', {class: 'text'}, text)];
        if (level !== 'busy')
            parts.push(el('button', {type: 'button', class: 'dismiss', 'aria-label': 'Dismiss this message',
                title: 'Dismiss'}, '×'));
        if (lines && lines.length > 0)
            parts.push(el('ul', {class: 'lines'}, ...lines.map((l) => el('li', {}, l))));
        box.replaceChildren(...parts);
    }

    /*
     * One request of the runtime API, with the token when the page has one.
     * Resolves to {ok, status, json, message, lines}: `message` the server's
     * "error" (or what went wrong on the way), `lines` its "errors".
     */
    async function write(method, path, body) {
        const headers = {Accept: 'application/json'};
        if (body !== undefined)
            headers['Content-Type'] = 'application/json';
        if (app.token)
            headers.Authorization = 'Bearer ' + app.token;
        let resp;
        try {
            resp = await fetch(path, {
                method,
                headers,
                body: body === undefined ? undefined : JSON.stringify(body),
                cache: 'no-store',
            });
        } catch (e) {
            return {ok: false, status: 0, json: null, message: 'cannot reach the admin listener', lines: []};
        }
        let json = null;
        try {
            json = await resp.json();
        } catch (e) {
            /* not JSON: the status says it */
        }
        const lines = json && Array.isArray(json.errors) ? json.errors.map(String) : [];
        let message = json && typeof json.error === 'string' ? json.error : '';
        if (message === '')
            message = lines[0] || 'the admin listener answered ' + resp.status +
                (resp.statusText ? ' ' + resp.statusText : '');
        if (resp.status === 401) {
            message = 'the token was refused: enter it again';
            /* The stream may have been let in before the token changed: ask for it now. */
            if (app.controller) {
                app.controller.abort();
                app.controller = null;
            }
            askToken(true);
        }
        return {ok: resp.ok, status: resp.status, json, message, lines};
    }

    function finished() {
        app.actionsDone++;
        document.body.dataset.actionsDone = String(app.actionsDone);
    }

    async function setBackendState(refs, state) {
        const a = ACTIONS[state];
        const what = refs.pool + ' ' + refs.backend;
        clearTimeout(refs.settle);
        refs.expect = null;
        setBusy(refs, true);
        say('busy', a.doing + ' ' + what + '…');
        const r = await write('PATCH', '/api/pools/' + encodeURIComponent(refs.pool) + '/backends/' +
            encodeURIComponent(refs.backend), {state});
        if (r.ok) {
            const g = r.json && r.json.generation ? ' (generation ' + r.json.generation + ')' : '';
            say('ok', what + ': ' + a.done + g + '.');
            /* The buttons come back with the status that shows the change. */
            refs.expect = state;
            refs.settle = setTimeout(() => {
                refs.expect = null;
                setBusy(refs, false);
            }, SETTLE_MS);
            settleIfShown(refs);
        } else {
            say('error', a.label + ' ' + what + ' failed: ' + r.message, r.lines.slice(1));
            setBusy(refs, false);
        }
        finished();
    }

    async function reload() {
        const button = $('reload');
        button.disabled = true;
        const before = $('generation').textContent;
        say('busy', 'Reloading the configuration…');
        const r = await write('POST', '/api/reload');
        button.disabled = false;
        if (r.ok) {
            const g = r.json ? r.json.generation : '?';
            say('ok', 'Reload done: generation ' + g + ' in force.');
            $('action-status').dataset.generation = String(g);
        } else if (r.status === 422) {
            say('error', 'Reload failed: generation ' + before + ' stays in force. ' +
                (r.lines.length === 1 ? 'The error:' : 'The errors:'), r.lines.length > 0 ? r.lines : [r.message]);
        } else {
            say('error', 'Reload failed: ' + r.message);
        }
        finished();
    }

    function onPoolClick(ev) {
        const button = ev.target.closest('button.action');
        const tr = button && button.closest('tr.backend');
        if (!tr || button.disabled)
            return;
        const pool = app.pools.get(tr.dataset.pool);
        const refs = pool && pool.rows.get(tr.dataset.backend);
        if (refs && !refs.busy && ACTIONS[button.dataset.action])
            setBackendState(refs, button.dataset.action);
    }

    function onStatusClick(ev) {
        if (ev.target.closest('button.dismiss')) {
            const box = $('action-status');
            delete box.dataset.level;
            box.replaceChildren();
        }
    }

    /* ---- the chart ---------------------------------------------------------- */

    function niceMax(v) {
        if (!(v > 0))
            return 1;
        const pow = 10 ** Math.floor(Math.log10(v));
        for (const m of [1, 2, 2.5, 5, 10])
            if (m * pow >= v)
                return m * pow;
        return 10 * pow;
    }

    function fmtSpan(ms) {
        const s = Math.round(ms / 1000);
        return s < 120 ? s + ' s ago' : Math.round(s / 60) + ' min ago';
    }

    /*
     * requests/s as a line and errors/s as an area, over what this page has
     * seen: from its first point (at least SPAN_MIN_MS ago) to now, at most
     * HISTORY_MS.
     */
    function drawChart(canvas, points, name) {
        const w = canvas.clientWidth;
        const h = canvas.clientHeight;
        if (w === 0 || h === 0)
            return;
        const dpr = window.devicePixelRatio || 1;
        if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
            canvas.width = Math.round(w * dpr);
            canvas.height = Math.round(h * dpr);
        }
        const ctx = canvas.getContext('2d');
        ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
        ctx.clearRect(0, 0, w, h);
        const css = getComputedStyle(document.documentElement);
        const color = (v) => css.getPropertyValue(v).trim();
        const L = 44, R = 6, T = 8, B = 18;
        const now = Date.now();
        const first = points.length > 0 ? points[0].t : now;
        const span = Math.min(HISTORY_MS, Math.max(SPAN_MIN_MS, now - first));
        const t0 = now - span;
        const shown = points.filter((p) => p.t >= t0 - GAP_MS);
        let max = 0;
        for (const p of shown)
            max = Math.max(max, p.rps, p.eps);
        max = niceMax(max);
        const x = (t) => L + ((t - t0) / span) * (w - L - R);
        const y = (v) => T + (1 - v / max) * (h - T - B);

        ctx.font = '11px system-ui, sans-serif';
        ctx.lineWidth = 1;
        ctx.strokeStyle = color('--chart-grid');
        ctx.fillStyle = color('--chart-text');
        ctx.textBaseline = 'middle';
        ctx.textAlign = 'right';
        for (const f of [0, 0.5, 1]) {
            const yy = Math.round(y(max * f)) + 0.5;
            ctx.beginPath();
            ctx.moveTo(L, yy);
            ctx.lineTo(w - R, yy);
            ctx.stroke();
            const v = max * f;
            ctx.fillText(v === 0 ? '0' : (Number.isInteger(v) ? String(v) : fmtRate(v)) + '/s', L - 6, yy);
        }
        ctx.textBaseline = 'alphabetic';
        ctx.textAlign = 'left';
        ctx.fillText(fmtSpan(span), L, h - 4);
        ctx.textAlign = 'right';
        ctx.fillText('now', w - R, h - 4);

        ctx.save();
        ctx.beginPath();
        ctx.rect(L, 0, w - L - R, h);
        ctx.clip();
        /* Runs of points no further apart than GAP_MS. */
        const runs = [];
        for (const p of shown) {
            const run = runs[runs.length - 1];
            if (run && p.t - run[run.length - 1].t <= GAP_MS)
                run.push(p);
            else
                runs.push([p]);
        }
        ctx.fillStyle = color('--chart-err');
        ctx.globalAlpha = 0.45;
        for (const run of runs) {
            if (run.length < 2 || !run.some((p) => p.eps > 0))
                continue;
            ctx.beginPath();
            ctx.moveTo(x(run[0].t), y(0));
            for (const p of run)
                ctx.lineTo(x(p.t), y(p.eps));
            ctx.lineTo(x(run[run.length - 1].t), y(0));
            ctx.closePath();
            ctx.fill();
        }
        ctx.globalAlpha = 1;
        ctx.strokeStyle = color('--chart-rps');
        ctx.lineWidth = 2;
        ctx.lineJoin = 'round';
        for (const run of runs) {
            ctx.beginPath();
            run.forEach((p, i) => (i === 0 ? ctx.moveTo(x(p.t), y(p.rps)) : ctx.lineTo(x(p.t), y(p.rps))));
            if (run.length === 1)
                ctx.arc(x(run[0].t), y(run[0].rps), 1.5, 0, 2 * Math.PI);
            ctx.stroke();
        }
        ctx.restore();
        if (shown.length < 2) {
            ctx.fillStyle = color('--chart-text');
            ctx.textAlign = 'center';
            ctx.textBaseline = 'middle';
            ctx.fillText('collecting…', L + (w - L - R) / 2, T + (h - T - B) / 2);
        }
        const last = shown[shown.length - 1];
        canvas.setAttribute('aria-label', name + ': ' + (last
            ? fmtRate(last.rps) + ' requests/s and ' + fmtRate(last.eps) + ' errors/s now'
            : 'no figures yet'));
        canvas.dataset.points = String(shown.length);
    }

    function redrawCharts() {
        for (const [name, pool] of app.pools)
            drawChart(pool.canvas, app.history.get(name) || [], name);
    }

    /* ---- start -------------------------------------------------------------- */

    function start() {
        $('token-form').addEventListener('submit', onTokenSubmit);
        $('pool-list').addEventListener('click', onPoolClick);
        $('reload').addEventListener('click', reload);
        $('action-status').addEventListener('click', onStatusClick);
        let resizing = 0;
        window.addEventListener('resize', () => {
            cancelAnimationFrame(resizing);
            resizing = requestAnimationFrame(redrawCharts);
        });
        setInterval(watchdog, 1000);
        connect();
    }

    start();
})();
