#!/usr/bin/env python3
"""The Grafana dashboard (packaging/grafana/fulcrum.json) against a real fulcrum.

    grafana_check.py --fulcrum build/fulcrum --plugin-dir build/plugins \
        packaging/grafana/fulcrum.json

Checks that the file is a dashboard Grafana 9 and 10 import: a title, a uid,
schemaVersion 36 or later, the template variables the panels use (datasource,
instance, pool, listener), unique panel ids, panels on the 24-column grid
that do not overlap, and every panel but a row with targets, each an `expr`.

Then it starts the fulcrum binary it is given (a listener and an admin
listener on free ports, one pool whose one backend is a dead port), reads
GET /metrics from the admin listener and stops it again (SIGTERM, by PID,
also when something failed; it must exit 0). From that exposition it takes
the metric names fulcrum exports (every `# TYPE` name, and for a histogram
its _bucket, _sum and _count series) and the labels and label values of
their series, and fails when an expression of the dashboard (a panel's
target, an annotation, a template variable's label_values()) names:

  - a fulcrum_* or process_* metric that fulcrum does not export,
  - a label in a selector, in by/without/on/ignoring or in a legend
    ({{label}}) that none of the expression's metrics carries (instance and
    job are Prometheus's own, always allowed),
  - a literal label value (code="5xx") that no series of that metric has.

Last, every expression, with Grafana's variables replaced by plain values,
goes through `promtool check rules` as a recording rule: promtool parses it
with Prometheus's own PromQL parser. promtool must be on PATH (Debian:
package prometheus, which tests/run.sh installs) or given with --promtool.

Exits 0 when all holds, 1 with every problem listed otherwise.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

PROM_LABELS = {"instance", "job"}  # added by Prometheus when it scrapes
GRAFANA_DURATIONS = ("__rate_interval", "__interval", "__range")

problems = []


def problem(msg):
    problems.append(msg)


# ---- the exposition of a running fulcrum ---------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc):
    """SIGTERM, then SIGKILL after 10 s; returns the exit status."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def fetch_metrics(binary, plugin_dir):
    with tempfile.TemporaryDirectory(prefix="fulcrum-grafana-") as tmp:
        listen, admin, dead = free_port(), free_port(), free_port()
        conf = os.path.join(tmp, "fulcrum.conf")
        with open(conf, "w") as f:
            f.write(
                "# written by tests/packaging/grafana_check.py\n"
                "workers = 1;\n"
                f'plugin_dir = "{plugin_dir}";\n'
                'log = { level = "info"; access = "off"; };\n'
                f'listeners = ( {{ address = "127.0.0.1:{listen}"; pool = "web"; }} );\n'
                'pools = ( { name = "web"; strategy = { plugin = "round_robin"; };\n'
                f'    backends = ( {{ address = "127.0.0.1:{dead}"; }} ); }} );\n'
                f'admin = {{ address = "127.0.0.1:{admin}"; }};\n'
            )
        log_path = os.path.join(tmp, "fulcrum.log")
        with open(log_path, "w") as log:
            proc = subprocess.Popen([binary, "-c", conf], stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        text, err = None, "no answer"
        try:
            deadline = time.monotonic() + 30  # an ASan build starts slower
            url = f"http://127.0.0.1:{admin}/metrics"
            while text is None and time.monotonic() < deadline and proc.poll() is None:
                try:
                    with urllib.request.urlopen(url, timeout=5) as r:
                        text = r.read().decode("utf-8")
                except (urllib.error.URLError, ConnectionError) as e:
                    err = str(e)
                    time.sleep(0.1)
        finally:
            rc = stop(proc)
        with open(log_path) as f:
            log_text = f.read()
        if text is None:
            sys.exit(f"FAIL: no GET /metrics from {binary} (exit status {proc.returncode}, "
                     f"last error: {err}); its log:\n{log_text}")
        if rc != 0:
            sys.exit(f"FAIL: {binary} exited {rc} on SIGTERM, expected 0; its log:\n{log_text}")
        return text


SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+\S+")
LABEL_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def unescape(v):
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), v)


def parse_exposition(text):
    """(exported names, {series name: {label: {values}}}, histogram and summary names)."""
    names, series, families = set(), {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) != 4:
                sys.exit(f"FAIL: malformed TYPE line in the exposition: {line}")
            name, kind = parts[2], parts[3]
            names.add(name)
            if kind in ("histogram", "summary"):
                families.add(name)
            if kind == "histogram":
                names.update(name + s for s in ("_bucket", "_sum", "_count"))
            elif kind == "summary":
                names.update(name + s for s in ("_sum", "_count"))
        elif line and not line.startswith("#"):
            m = SAMPLE.match(line)
            if m is None:
                sys.exit(f"FAIL: malformed sample line in the exposition: {line}")
            labels = series.setdefault(m.group(1), {})
            for k, v in LABEL_PAIR.findall(m.group(2) or ""):
                labels.setdefault(k, set()).add(unescape(v))
    return names, series, families


# ---- PromQL, as far as the check needs it --------------------------------

TOKEN = re.compile(
    r"""(?P<ws>\s+)
      | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
      | (?P<range>\[[^\]]*\])
      | (?P<var>\$\{[^}]*\}|\$[A-Za-z0-9_]+)
      | (?P<num>[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)
      | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
      | (?P<op>=~|!~|!=|==|>=|<=|.)""",
    re.VERBOSE | re.DOTALL,
)
METRIC_PREFIXES = ("fulcrum_", "process_")
LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}


def tokens(expr):
    out = []
    for m in TOKEN.finditer(expr):
        if m.lastgroup != "ws":
            out.append((m.lastgroup, m.group()))
    return out


def parse_expr(expr):
    """Metric selectors [(name, [(label, op, value)])] and grouping labels of expr."""
    toks = tokens(expr)
    selectors, grouping = [], []
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        if kind == "ident" and text in LABEL_LISTS and i + 1 < len(toks) and toks[i + 1][1] == "(":
            i += 2
            while i < len(toks) and toks[i][1] != ")":
                if toks[i][0] == "ident":
                    grouping.append(toks[i][1])
                i += 1
        elif kind == "ident" and text.startswith(METRIC_PREFIXES):
            matchers = []
            if i + 1 < len(toks) and toks[i + 1][1] == "{":
                i += 2
                while i < len(toks) and toks[i][1] != "}":
                    if (toks[i][0] == "ident" and i + 2 < len(toks)
                            and toks[i + 1][1] in ("=", "!=", "=~", "!~")
                            and toks[i + 2][0] == "str"):
                        matchers.append((toks[i][1], toks[i + 1][1], toks[i + 2][1][1:-1]))
                        i += 3
                    else:
                        i += 1
            selectors.append((text, matchers))
        i += 1
    return selectors, grouping


def check_expr(where, expr, legend, exported, series, variables):
    selectors, grouping = parse_expr(expr)
    if not selectors:
        problem(f"{where}: no fulcrum_* or process_* metric in {expr!r}")
    labels, known = set(PROM_LABELS), True
    for name, matchers in selectors:
        if name not in exported:
            problem(f"{where}: metric {name} is not exported by fulcrum")
            known = False
            continue
        if name not in series:
            problem(f"{where}: fulcrum exported no series of {name} in the test configuration: "
                    "extend it in tests/packaging/grafana_check.py")
            known = False
            continue
        have = series[name]
        labels.update(have)
        for label, op, value in matchers:
            if label in PROM_LABELS:
                continue
            if label not in have:
                problem(f"{where}: {name} has no label {label!r} (it has: {sorted(have)})")
            elif "$" in value:
                continue
            elif op == "=" and unescape(value) not in have[label]:
                problem(f"{where}: no series {name}{{{label}=\"{value}\"}} "
                        f"(values: {sorted(have[label])})")
            elif op == "=~" and not any(re.fullmatch(value, v) for v in have[label]):
                problem(f"{where}: no series {name}{{{label}=~\"{value}\"}} "
                        f"(values: {sorted(have[label])})")
    for var in re.findall(r"\$\{?([A-Za-z0-9_]+)", expr):
        if var not in variables and var not in GRAFANA_DURATIONS:
            problem(f"{where}: uses ${var}, which is no template variable")
    if not known:
        return  # the labels of a metric fulcrum does not export are unknown
    for label in grouping:
        if label not in labels:
            problem(f"{where}: grouping by {label!r}, which none of its metrics has")
    for label in re.findall(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", legend or ""):
        if label not in labels:
            problem(f"{where}: legend names {{{{{label}}}}}, which none of its metrics has")


def promql_for_promtool(expr):
    """expr with Grafana's variables replaced by values PromQL accepts there."""
    def sub(m):
        name = m.group(1) or m.group(2)
        name = name.split(":")[0]  # ${var:format}
        return "5m" if name in GRAFANA_DURATIONS else "x"
    return re.sub(r"\$\{([^}]*)\}|\$([A-Za-z0-9_]+)", sub, expr)


def run_promtool(promtool, exprs):
    rules = [{"record": f"dashboard:expr_{n}", "expr": promql_for_promtool(e)}
             for n, (_, e, _) in enumerate(exprs)]
    with tempfile.TemporaryDirectory(prefix="fulcrum-grafana-") as tmp:
        path = os.path.join(tmp, "dashboard-rules.yml")
        with open(path, "w") as f:  # JSON is YAML: promtool reads it as rule file
            json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, f, indent=1)
        res = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True)
    if res.returncode != 0:
        out = res.stdout + res.stderr
        for n, (where, e, _) in enumerate(exprs):
            if f'"dashboard:expr_{n}"' in out:
                problem(f"{where}: promtool cannot parse {e!r}")
        problem(f"promtool check rules exited {res.returncode}:\n{out}")
    return res.returncode == 0


# ---- the dashboard --------------------------------------------------------


def walk_panels(panels, where="panels"):
    for n, p in enumerate(panels):
        yield f"{where}[{n}]", p
        if isinstance(p, dict) and isinstance(p.get("panels"), list):
            yield from walk_panels(p["panels"], f"{where}[{n}].panels")


def check_dashboard(d):
    """Structure checks; returns ([(where, expr, legend)] of every expression, variables)."""
    exprs, variables = [], {}
    if not isinstance(d, dict):
        problem("the file is not a JSON object")
        return exprs, variables
    if not isinstance(d.get("title"), str) or not d["title"].strip():
        problem("no title")
    uid = d.get("uid")
    if not isinstance(uid, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid):
        problem(f"uid {uid!r}: 1 to 40 letters, digits, '-' or '_'")
    if not isinstance(d.get("schemaVersion"), int) or d["schemaVersion"] < 36:
        problem(f"schemaVersion {d.get('schemaVersion')!r}: 36 (Grafana 9) or later")
    if not isinstance(d.get("panels"), list) or not d["panels"]:
        problem("no panels")
        return exprs, variables

    for v in d.get("templating", {}).get("list", []):
        variables[v.get("name")] = v
    ds = variables.get("datasource")
    if ds is None or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        problem("no template variable `datasource` of type datasource for prometheus")
    for name, multi in (("instance", None), ("pool", True), ("listener", True)):
        v = variables.get(name)
        if v is None or v.get("type") != "query":
            problem(f"no query template variable `{name}`")
            continue
        if multi and not (v.get("multi") and v.get("includeAll")):
            problem(f"template variable `{name}`: multi and includeAll expected")
    for name, v in variables.items():
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        m = re.fullmatch(r"\s*label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*", q or "")
        if m is None:
            problem(f"template variable `{name}`: expected label_values(selector, label), "
                    f"got {q!r}")
            continue
        exprs.append((f"variable `{name}`", m.group(1), "{{" + m.group(2) + "}}"))
        if (v.get("datasource") or {}).get("uid") != "${datasource}":
            problem(f"template variable `{name}`: datasource is not ${{datasource}}")

    for n, a in enumerate(d.get("annotations", {}).get("list", [])):
        if "expr" in a:
            exprs.append((f"annotation `{a.get('name', n)}`", a["expr"], a.get("textFormat")))

    ids, cells = set(), {}
    for where, p in walk_panels(d["panels"]):
        if not isinstance(p, dict):
            problem(f"{where}: not an object")
            continue
        title = p.get("title")
        here = f"panel {title!r}" if title else where
        if not isinstance(p.get("type"), str):
            problem(f"{here}: no type")
        if not isinstance(p.get("id"), int) or p["id"] in ids:
            problem(f"{here}: id {p.get('id')!r} missing or not unique")
        ids.add(p.get("id"))
        g = p.get("gridPos", {})
        if not all(isinstance(g.get(k), int) for k in "hwxy") or g["x"] + g["w"] > 24:
            problem(f"{here}: gridPos {g!r} is not on the 24-column grid")
        else:
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    if (x, y) in cells:
                        problem(f"{here} overlaps panel {cells[(x, y)]!r}")
                        break
                    cells[(x, y)] = title
                else:
                    continue
                break
        if p.get("type") == "row":
            continue
        if not title:
            problem(f"{where}: no title")
        if (p.get("datasource") or {}).get("uid") != "${datasource}":
            problem(f"{here}: datasource is not ${{datasource}}")
        targets = p.get("targets")
        if not isinstance(targets, list) or not targets:
            problem(f"{here}: no targets")
            continue
        refs = set()
        for t in targets:
            ref = t.get("refId") if isinstance(t, dict) else None
            if not isinstance(t, dict) or not isinstance(t.get("expr"), str) or not t["expr"]:
                problem(f"{here}: target {ref!r} has no expr")
                continue
            if not ref or ref in refs:
                problem(f"{here}: refId {ref!r} missing or not unique")
            refs.add(ref)
            exprs.append((f"{here} target {ref}", t["expr"], t.get("legendFormat")))
    return exprs, variables


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fulcrum", required=True, help="the fulcrum binary to take metrics from")
    ap.add_argument("--plugin-dir", required=True, help="where its round_robin.so is")
    ap.add_argument("--promtool", help="promtool (default: from PATH)")
    ap.add_argument("dashboard")
    args = ap.parse_args()

    promtool = args.promtool or shutil.which("promtool")
    if promtool is None:
        sys.exit("FAIL: promtool not found: apt-get install prometheus (or --promtool PATH)")
    try:
        with open(args.dashboard) as f:
            dashboard = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"FAIL: {args.dashboard}: {e}")
    exprs, variables = check_dashboard(dashboard)

    # The configuration's relative paths are taken from its own folder.
    exported, series, families = parse_exposition(
        fetch_metrics(os.path.abspath(args.fulcrum), os.path.abspath(args.plugin_dir)))
    used = set()
    for where, expr, legend in exprs:
        check_expr(where, expr, legend, exported, series, variables)
        used.update(name for name, _ in parse_expr(expr)[0])
    parsed = run_promtool(promtool, exprs)

    if problems:
        for p in problems:
            print(f"FAIL: {args.dashboard}: {p}")
        sys.exit(1)
    print(f"PASS: {args.dashboard}: {len(exprs)} expressions, {len(used)} metric names, all "
          f"exported by {args.fulcrum} ({len(exported)} names); promtool parses "
          f"{'every expression' if parsed else 'nothing'}")
    unused = sorted(n for n in exported if n not in used and n not in families)
    if unused:
        print(f"note: exported but not on the dashboard: {', '.join(unused)}")


if __name__ == "__main__":
    main()
