#!/usr/bin/env python3
"""Drives headless Chromium through the dashboard, for test_dashboard.c.

Chromium runs with --remote-debugging-pipe: the DevTools protocol (CDP) as
NUL-separated JSON messages on its fds 3 (commands in) and 4 (answers and
events out), so no port, no websocket and no Python package beyond the
standard library is needed. The script only drives and reports: it loads
the page, takes snapshots of what the DOM shows (read with the selectors a
person's eye would follow: tr.backend[data-pool][data-backend], td.rps, ...)
and screenshots, and prints one JSON document on stdout. What must hold is
asserted by the C test.

Why not `chromium --dump-dom --virtual-time-budget=N`: virtual time runs the
page's timers ahead of the real network, so the budget is spent in about a
second of real time, before the second status arrives (and the page's own
"no status for 3.5 s" watchdog fires in virtual time, on a stream that is
fine). A page fed by a live stream needs real time, hence CDP.

Steps, each bounded:
  1. start Chromium (killed with us: PR_SET_PDEATHSIG; always by PID at the end)
  2. open the URL at 1280x900
  3. for each --token: wait until the page asks for it (#token-form shown),
     record that (the first time, screenshot --prompt-shot), type it and submit
  4. wait until the page is live with figures (every td.rps a number; with
     --traffic, every td.errors of a backend that is up too)
  5. snapshot "a"; with --sync DIR: write DIR/a.json, wait for DIR/go
  6. each --step, in order (see STEPS below): clicks on the page's buttons,
     waits, more snapshots and screenshots, and waits for the C test
  7. wait --hold seconds, snapshot "b", screenshot --shot (1280x900)
  8. resize to 400x900, wait, snapshot "narrow", screenshot --narrow-shot

Exit status 0 with the report, 1 on any error (said on stderr, with the
page's last DOM saved next to the screenshots when there was a page).
"""
STEPS = """
A --step is KIND:ARGUMENT (split at the first colon):
  click:SELECTOR  wait until SELECTOR is one visible, enabled button, scroll to
                  it, check that it is what a pointer at its centre would hit,
                  click it and note whether it was disabled right after (the
                  request then runs); then wait until the page counts one more
                  write answered (body[data-actions-done]). Each click is in
                  the report's "clicks", in order.
  wait:JS         wait until the expression JS is true
  pause:SECONDS   let the page run that long
  snap:NAME       snapshot into the report as NAME (with --sync, also
                  written to SYNC/NAME.json)
  shot:PATH       screenshot at the size of the moment
  sync:NAME       wait (30 s at most) until the file SYNC/NAME exists
"""

import argparse
import base64
import ctypes
import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import time

SNAPSHOT_JS = r"""
(() => {
  const q = (sel, root) => (root || document).querySelector(sel);
  const all = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const text = (e) => (e ? e.textContent.trim() : null);
  const visible = (e) => !!e && e.getClientRects().length > 0;
  const vw = window.innerWidth;
  return {
    conn: q('#conn').dataset.state,
    banner: q('#banner').hidden ? null : text(q('#banner')),
    token_form: !q('#token-form').hidden,
    token_error: !q('#token-error').hidden,
    writable: document.body.classList.contains('writable'),
    reload_button: visible(q('#reload')),
    reload_disabled: q('#reload').disabled,
    action_status: {
      role: q('#action-status').getAttribute('role'),
      live: q('#action-status').getAttribute('aria-live'),
      level: q('#action-status').dataset.level || null,
      text: text(q('#action-status .text')),
      lines: all('#action-status .lines li').map(text),
      shown: visible(q('#action-status')) && q('#action-status').getBoundingClientRect().height > 2,
      generation: q('#action-status').dataset.generation || null,
    },
    actions_done: Number(document.body.dataset.actionsDone || 0),
    statuses: Number(document.body.dataset.statuses || 0),
    version: text(q('#version')),
    uptime: text(q('#uptime')),
    generation: text(q('#generation')),
    workers: text(q('#workers')),
    total_rps: text(q('#total-rps')),
    listeners: all('tr.listener').map((tr) => ({
      address: tr.dataset.address,
      pool: text(q('td.pool', tr)),
      connections: text(q('td.connections', tr)),
    })),
    pools: all('article.pool').map((a) => ({
      name: a.dataset.pool,
      strategy: text(q('.strategy', a)),
      cache: visible(q('.cache', a)) ? text(q('.cache', a)) : null,
      rps: text(q('.pool-rps', a)),
      errors: text(q('.pool-errors', a)),
      chart_points: Number(q('canvas.chart', a).dataset.points || 0),
      chart_width: q('canvas.chart', a).width,
    })),
    backends: all('tr.backend').map((tr) => ({
      pool: tr.dataset.pool,
      backend: tr.dataset.backend,
      requests: Number(tr.dataset.requests),
      state: text(q('td.state .badge', tr)),
      state_class: q('td.state .badge', tr).className,
      reason: text(q('td.state .reason', tr)),
      source: tr.dataset.source || null,
      source_badge: visible(q('td.address .source', tr)) ? text(q('td.address .source', tr)) : null,
      buttons: all('td.actions button.action', tr).filter(visible).map((b) => ({
        action: b.dataset.action,
        label: text(b),
        aria_label: b.getAttribute('aria-label'),
        disabled: b.disabled,
      })),
      weight: text(q('td.weight', tr)),
      rps: text(q('td.rps', tr)),
      errors: text(q('td.errors', tr)),
      p50: text(q('td.p50', tr)),
      p99: text(q('td.p99', tr)),
      inflight: text(q('td.inflight', tr)),
    })),
    timeline: all('#timeline li').map((li) => ({
      kind: li.className,
      result: li.dataset.result || null,
      state: li.dataset.state || null,
      backend: li.dataset.backend || null,
      text: text(li),
    })),
    timeline_summary: text(q('#timeline-summary')),
    inner_width: vw,
    scroll_width: document.documentElement.scrollWidth,
    overflowing: all('body *')
      .filter((e) => e.getClientRects().length > 0 && e.getBoundingClientRect().right > vw + 0.5)
      .slice(0, 10)
      .map((e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') +
                  (e.className && typeof e.className === 'string' ? '.' + e.className.split(' ').join('.') : '') +
                  ' right=' + Math.round(e.getBoundingClientRect().right)),
  };
})()
"""

# Live with figures: a status came, and every backend shows a rate.
READY_JS = r"""
(() => {
  const conn = document.querySelector('#conn');
  const rows = Array.from(document.querySelectorAll('tr.backend'));
  return !!conn && conn.dataset.state === 'live' && rows.length > 0 &&
         rows.every((tr) => /^[0-9]/.test(tr.querySelector('td.rps').textContent));
})()
"""

# And with --traffic: every backend that is up had requests in the last
# interval (its error rate is a number, not "–").
TRAFFIC_JS = r"""
(() => Array.from(document.querySelectorAll('tr.backend')).every((tr) =>
  tr.dataset.state !== 'up' || /^[0-9<]/.test(tr.querySelector('td.errors').textContent)))()
"""

# Clicks the one visible button `sel` if it is enabled and a pointer at its
# centre would hit it; says what happened. The page's handler runs inside
# click(), up to its request, so `disabled` tells whether the button is
# disabled while the request runs.
CLICK_JS = r"""
((sel) => {
  const found = Array.from(document.querySelectorAll(sel)).filter((e) => e.getClientRects().length > 0);
  if (found.length !== 1)
    return {state: 'absent', count: found.length};
  const b = found[0];
  if (b.disabled)
    return {state: 'disabled'};
  b.scrollIntoView({block: 'center', inline: 'nearest'});
  const r = b.getBoundingClientRect();
  const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
  if (!hit || !(hit === b || b.contains(hit)))
    return {state: 'covered', by: hit ? hit.outerHTML.slice(0, 200) : null};
  const before = Number(document.body.dataset.actionsDone || 0);
  b.click();
  return {state: 'clicked', disabled: b.disabled, before, label: b.textContent.trim()};
})(%s)
"""

TOKEN_FORM_JS = "(() => { const f = document.querySelector('#token-form'); return !!f && !f.hidden; })()"


def log(msg):
    print('dashboard_browser: ' + msg, file=sys.stderr, flush=True)


class Failure(Exception):
    pass


class Chromium:
    """One Chromium process and its DevTools pipe."""

    def __init__(self, binary, user_data_dir, stderr_path):
        cmd_r, self.cmd_w = os.pipe()  # our commands: Chromium reads fd 3
        self.out_r, out_w = os.pipe()  # its messages: Chromium writes fd 4

        def in_child():
            # Die with this script, whatever kills it.
            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
            # Move both ends out of the way first: either may already be 3 or 4.
            r = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10)
            w = fcntl.fcntl(out_w, fcntl.F_DUPFD, 10)
            os.dup2(r, 3)
            os.dup2(w, 4)

        args = [
            binary, '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
            '--user-data-dir=' + user_data_dir, '--remote-debugging-pipe',
            '--no-first-run', '--no-default-browser-check', '--disable-extensions',
            '--disable-background-networking', '--disable-component-update', '--disable-sync',
            '--disable-features=Translate,MediaRouter', '--mute-audio', '--hide-scrollbars',
            '--window-size=1280,900', 'about:blank',
        ]
        self.stderr = open(stderr_path, 'wb')
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.stderr,
                                     stderr=self.stderr, preexec_fn=in_child, pass_fds=(3, 4))
        log('chromium started, pid %d' % self.proc.pid)
        os.close(cmd_r)
        os.close(out_w)
        self.buf = b''
        self.next_id = 0
        self.events = []
        self.session = None

    def send(self, method, params=None, session=True):
        self.next_id += 1
        msg = {'id': self.next_id, 'method': method, 'params': params or {}}
        if session and self.session:
            msg['sessionId'] = self.session
        data = json.dumps(msg).encode() + b'\0'
        while data:
            n = os.write(self.cmd_w, data)
            data = data[n:]
        return self.next_id

    def _read_message(self, deadline):
        while b'\0' not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.out_r], [], [], left)
            if not ready:
                continue
            chunk = os.read(self.out_r, 1 << 20)
            if not chunk:
                raise Failure('chromium closed its DevTools pipe (exit status %s)' % self.proc.poll())
            self.buf += chunk
        raw, self.buf = self.buf.split(b'\0', 1)
        return json.loads(raw)

    def call(self, method, params=None, timeout=10.0, session=True):
        want = self.send(method, params, session)
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read_message(deadline)
            if msg is None:
                raise Failure('%s: no answer within %.0f s' % (method, timeout))
            if msg.get('id') == want:
                if 'error' in msg:
                    raise Failure('%s: %s' % (method, msg['error']))
                return msg.get('result', {})
            if 'method' in msg:
                self.events.append(msg)

    def pump(self, seconds):
        """Reads events for `seconds`."""
        deadline = time.monotonic() + seconds
        while True:
            msg = self._read_message(deadline)
            if msg is None:
                return
            if 'method' in msg:
                self.events.append(msg)

    def evaluate(self, expr):
        r = self.call('Runtime.evaluate', {'expression': expr, 'returnByValue': True})
        if 'exceptionDetails' in r:
            raise Failure('evaluate: %s' % json.dumps(r['exceptionDetails'])[:500])
        return r['result'].get('value')

    def wait_for(self, expr, timeout, what):
        deadline = time.monotonic() + timeout
        while True:
            if self.evaluate(expr):
                return
            if time.monotonic() >= deadline:
                raise Failure('%s: not within %.0f s' % (what, timeout))
            self.pump(0.2)

    def screenshot(self, path):
        r = self.call('Page.captureScreenshot', {'format': 'png'}, timeout=20)
        with open(path, 'wb') as f:
            f.write(base64.b64decode(r['data']))
        log('screenshot %s' % path)

    def viewport(self, width, height):
        self.call('Emulation.setDeviceMetricsOverride',
                  {'width': width, 'height': height, 'deviceScaleFactor': 1, 'mobile': False})

    def close(self):
        """Asks Chromium to quit, then kills it by PID if it has not within 3 s."""
        if self.proc.poll() is None:
            try:
                self.send('Browser.close', session=False)
            except OSError:
                pass
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                log('chromium (pid %d) still running: SIGKILL' % self.proc.pid)
                self.proc.kill()
                self.proc.wait(5)
        for fd in (self.cmd_w, self.out_r):
            try:
                os.close(fd)
            except OSError:
                pass
        self.stderr.close()


def problems(events):
    """Exceptions, console errors and warnings, and log entries (CSP violations among them)."""
    out = []
    for e in events:
        m, p = e['method'], e.get('params', {})
        if m == 'Runtime.exceptionThrown':
            d = p.get('exceptionDetails', {})
            out.append('exception: ' + (d.get('exception', {}).get('description') or d.get('text', '')))
        elif m == 'Runtime.consoleAPICalled' and p.get('type') in ('error', 'warning', 'assert'):
            out.append('console.%s: %s' % (p['type'], ' '.join(
                str(a.get('value', a.get('description', ''))) for a in p.get('args', []))))
        elif m == 'Log.entryAdded':
            entry = p.get('entry', {})
            if entry.get('level') in ('error', 'warning'):
                out.append('log (%s): %s %s' % (entry.get('source'), entry.get('text'),
                                                 entry.get('url', '')))
    return out


def run_step(browser, step, args, report):
    kind, _, arg = step.partition(':')
    if kind == 'click':
        deadline = time.monotonic() + args.ready_timeout
        while True:
            r = browser.evaluate(CLICK_JS % json.dumps(arg))
            if r['state'] == 'clicked':
                break
            if time.monotonic() >= deadline:
                raise Failure('click %s: the button stayed %s' % (arg, json.dumps(r)))
            browser.pump(0.1)
        browser.wait_for("Number(document.body.dataset.actionsDone || 0) > %d" % r['before'],
                         args.ready_timeout, 'the answer to the click on ' + arg)
        report['clicks'].append({'selector': arg, 'label': r['label'],
                                 'disabled_while_running': r['disabled']})
        log('clicked %s' % arg)
    elif kind == 'wait':
        browser.wait_for(arg, args.ready_timeout, 'wait:' + arg)
    elif kind == 'pause':
        browser.pump(float(arg))
    elif kind == 'snap':
        report[arg] = browser.evaluate(SNAPSHOT_JS)
        if args.sync:
            tmp = os.path.join(args.sync, arg + '.json.tmp')
            with open(tmp, 'w') as f:
                json.dump(report[arg], f)
            os.rename(tmp, os.path.join(args.sync, arg + '.json'))
    elif kind == 'shot':
        browser.screenshot(arg)
    elif kind == 'sync':
        if not args.sync:
            raise Failure('sync:%s without --sync' % arg)
        path = os.path.join(args.sync, arg)
        deadline = time.monotonic() + 30
        while not os.path.exists(path):
            if time.monotonic() > deadline:
                raise Failure('no %s within 30 s' % path)
            browser.pump(0.1)
    else:
        raise Failure('unknown step %r' % step)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--chromium', default='/usr/bin/chromium')
    ap.add_argument('--url', required=True)
    ap.add_argument('--user-data-dir', required=True)
    ap.add_argument('--out', required=True, help='folder for the DOM dumps and chromium.log')
    ap.add_argument('--shot', required=True)
    ap.add_argument('--narrow-shot', required=True)
    ap.add_argument('--token', action='append', default=[])
    ap.add_argument('--prompt-shot', help='a screenshot of the first token prompt')
    ap.add_argument('--sync', help='write SYNC/a.json after snapshot a, then wait for SYNC/go')
    ap.add_argument('--hold', type=float, default=3.0)
    ap.add_argument('--traffic', action='store_true',
                    help='also wait until every backend that is up shows requests')
    ap.add_argument('--ready-timeout', type=float, default=20.0)
    ap.add_argument('--step', action='append', default=[], help=STEPS)
    args = ap.parse_args()

    report = {'prompts': [], 'clicks': []}
    browser = None

    def on_term(sig, frame):
        raise Failure('stopped by signal %d' % sig)

    signal.signal(signal.SIGTERM, on_term)
    t0 = time.monotonic()
    try:
        if not os.access(args.chromium, os.X_OK):
            raise Failure('%s: not installed (Debian package "chromium")' % args.chromium)
        browser = Chromium(args.chromium, args.user_data_dir, os.path.join(args.out, 'chromium.log'))
        target = browser.call('Target.createTarget', {'url': 'about:blank'}, timeout=30,
                              session=False)
        attached = browser.call('Target.attachToTarget',
                                {'targetId': target['targetId'], 'flatten': True}, session=False)
        browser.session = attached['sessionId']
        for domain in ('Page', 'Runtime', 'Log'):
            browser.call(domain + '.enable')
        browser.viewport(1280, 900)
        report['started_s'] = round(time.monotonic() - t0, 2)
        browser.call('Page.navigate', {'url': args.url})

        for token in args.token:
            browser.wait_for(TOKEN_FORM_JS, args.ready_timeout, 'the token form')
            report['prompts'].append(browser.evaluate(SNAPSHOT_JS))
            if args.prompt_shot and len(report['prompts']) == 1:
                browser.screenshot(args.prompt_shot)
            browser.evaluate("(() => { const i = document.querySelector('#token-input');"
                             " i.value = %s; i.form.requestSubmit(); return true; })()"
                             % json.dumps(token))

        browser.wait_for(READY_JS, args.ready_timeout, 'live figures in every backend row')
        if args.traffic:
            browser.wait_for(TRAFFIC_JS, args.ready_timeout, 'requests to every backend that is up')
        report['ready_s'] = round(time.monotonic() - t0, 2)
        report['a'] = browser.evaluate(SNAPSHOT_JS)
        if args.sync:
            with open(os.path.join(args.sync, 'a.json.tmp'), 'w') as f:
                json.dump(report['a'], f)
            os.rename(os.path.join(args.sync, 'a.json.tmp'), os.path.join(args.sync, 'a.json'))
            go = os.path.join(args.sync, 'go')
            deadline = time.monotonic() + 30
            while not os.path.exists(go):
                if time.monotonic() > deadline:
                    raise Failure('no %s within 30 s' % go)
                browser.pump(0.1)
        for step in args.step:
            run_step(browser, step, args, report)
        browser.pump(args.hold)
        report['b'] = browser.evaluate(SNAPSHOT_JS)
        browser.screenshot(args.shot)

        browser.viewport(400, 900)
        browser.pump(1.5)  # a status or two, drawn at the new width
        report['narrow'] = browser.evaluate(SNAPSHOT_JS)
        browser.screenshot(args.narrow_shot)
        report['problems'] = problems(browser.events)
        report['total_s'] = round(time.monotonic() - t0, 2)
    except (Failure, OSError, ValueError, KeyError) as e:
        log('FAILED after %.1f s: %s' % (time.monotonic() - t0, e))
        if browser is not None and browser.proc.poll() is None and browser.session:
            try:
                dom = browser.evaluate('document.documentElement.outerHTML')
                with open(os.path.join(args.out, 'dashboard-failed.html'), 'w') as f:
                    f.write(dom)
                log('the page as it was: %s' % os.path.join(args.out, 'dashboard-failed.html'))
                for p in problems(browser.events):
                    log('page: ' + p)
            except (Failure, OSError, ValueError):
                pass
        return 1
    finally:
        if browser is not None:
            browser.close()
    json.dump(report, sys.stdout)
    sys.stdout.write('\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
