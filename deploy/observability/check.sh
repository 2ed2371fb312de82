#!/usr/bin/env bash
# Validate deploy/observability: the alert rules (promtool check rules + the unit tests in
# alerts.test.yml) and the Grafana dashboard (valid JSON, panel structure, and every tenantry_
# metric it or a rule names is one in metrics.txt). Runs from any directory.
#
# promtool: $PROMTOOL if set, else `promtool` on PATH, else the one from Debian's `prometheus`
# package, extracted (not installed: no daemon, nothing listening) into .tenantry/tools/.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

# Prints the path of a promtool, fetching Debian's if there is none.
find_promtool() {
    if [ -n "${PROMTOOL:-}" ]; then
        echo "$PROMTOOL"
        return
    fi
    if command -v promtool >/dev/null 2>&1; then
        command -v promtool
        return
    fi
    local cache="$root/.tenantry/tools/prometheus"
    if [ -x "$cache/promtool" ]; then
        echo "$cache/promtool"
        return
    fi
    if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
        echo "promtool not found: install Prometheus' promtool or set PROMTOOL=/path/to/promtool" >&2
        return 1
    fi
    echo "==> fetching promtool (Debian package prometheus, extracted into ${cache#"$root/"})" >&2
    mkdir -p "$cache"
    local tmp
    tmp="$(mktemp -d "$cache/deb.XXXXXX")"
    # apt-get download fetches and verifies the .deb without installing it (so no
    # prometheus.service starts); it needs the package lists, which a fresh machine lacks.
    chmod 755 "$tmp"
    if ! (cd "$tmp" && apt-get download -qq prometheus >/dev/null 2>&1); then
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq >/dev/null
        (cd "$tmp" && apt-get download -qq prometheus >/dev/null)
    fi
    dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/root"
    install -m 755 "$tmp/root/usr/bin/promtool" "$cache/promtool.new"
    mv -f "$cache/promtool.new" "$cache/promtool"
    rm -rf "$tmp"
    echo "$cache/promtool"
}

promtool="$(find_promtool)"
cd "$here"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "==> $("$promtool" --version 2>&1 | head -n 1)"
echo "==> promtool check rules alerts.yml"
"$promtool" check rules alerts.yml
echo "==> promtool test rules alerts.test.yml"
"$promtool" test rules alerts.test.yml
echo "==> dashboard.json, metric names, rule and test coverage"
python3 - "$here" "$work/dashboard-queries.yml" <<'PY'
import json
import re
import sys
from pathlib import Path

here = Path(sys.argv[1])
queries_file = Path(sys.argv[2])
errors = []


def err(msg):
    errors.append(msg)


# --- metrics.txt: name [type] per line ------------------------------------------------------
types = {}
for n, line in enumerate((here / "metrics.txt").read_text().splitlines(), 1):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    parts = line.split()
    name, kind = parts[0], (parts[1] if len(parts) > 1 else "")
    if not re.fullmatch(r"tenantry_[a-z_]+", name):
        err(f"metrics.txt:{n}: {name!r} is not a tenantry_ metric name")
    if kind not in ("counter", "gauge", "histogram"):
        err(f"metrics.txt:{n}: {name}: type must be counter, gauge or histogram, not {kind!r}")
    if kind == "counter" and not name.endswith("_total"):
        err(f"metrics.txt:{n}: counter {name} must end in _total")
    if name in types:
        err(f"metrics.txt:{n}: {name} listed twice")
    types[name] = kind

# Series names each listed metric exposes, mapped back to the metric.
series = {}
for name, kind in types.items():
    if kind == "histogram":
        for suffix in ("_bucket", "_sum", "_count"):
            series[name + suffix] = name
    else:
        series[name] = name

METRIC = re.compile(r"tenantry_[a-z_]+")


def check_names(text, where):
    """Every tenantry_ name in text must be an exposed series of a listed metric."""
    used = set()
    for m in METRIC.findall(text):
        if m in series:
            used.add(series[m])
        elif types.get(m) == "histogram":
            err(f"{where}: histogram {m} has no series of that name; use {m}_bucket, _sum or _count")
        else:
            err(f"{where}: {m} is not a metric in metrics.txt")
    return used


def check_promql(expr, where):
    for fn, name in re.findall(r"\b(rate|irate|increase)\s*\(\s*(tenantry_[a-z_]+)", expr):
        if types.get(name) == "gauge":
            err(f"{where}: {fn}() of gauge {name}; use delta()/deriv() or the value itself")
    for name in re.findall(r"\b(?:delta|deriv)\s*\(\s*(tenantry_[a-z_]+)", expr):
        if types.get(series.get(name, name)) == "counter":
            err(f"{where}: delta()/deriv() of counter {name}; use rate()/increase()")
    if "histogram_quantile" in expr:
        if "_bucket" not in expr:
            err(f"{where}: histogram_quantile over something other than a _bucket series")
        groups = re.findall(r"\bby\s*\(([^)]*)\)", expr)
        if not any("le" in [g.strip() for g in grp.split(",")] for grp in groups):
            err(f"{where}: histogram_quantile must aggregate with `by (le, …)`")
    if expr.count("(") != expr.count(")"):
        err(f"{where}: unbalanced parentheses")


# --- dashboard.json -------------------------------------------------------------------------
try:
    dash = json.loads((here / "dashboard.json").read_text())
except json.JSONDecodeError as e:
    print(f"dashboard.json is not valid JSON: {e}", file=sys.stderr)
    sys.exit(1)

if dash.get("uid") != "tenantry-overview":
    err(f"dashboard uid is {dash.get('uid')!r}, want 'tenantry-overview'")
if dash.get("title") != "Tenantry overview":
    err(f"dashboard title is {dash.get('title')!r}, want 'Tenantry overview'")
if not isinstance(dash.get("schemaVersion"), int) or dash["schemaVersion"] < 36:
    err("dashboard schemaVersion must be an integer >= 36")

variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
ds = variables.get("datasource")
if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
    err("templating needs a `datasource` variable of type datasource, query prometheus")
if "instance" not in variables:
    err("templating needs an `instance` variable")
for name, v in variables.items():
    if v.get("type") == "query":
        check_names(json.dumps(v.get("query", "")), f"variable {name}")
        if (v.get("datasource") or {}).get("uid") != "${datasource}":
            err(f"variable {name}: datasource must be ${{datasource}}")


def walk(panels):
    for p in panels:
        yield p
        yield from walk(p.get("panels", []))


ids = set()
panel_metrics = set()
exprs_text = []
queries = []
for p in walk(dash.get("panels", [])):
    pid = p.get("id")
    where = f"panel {pid} {p.get('title', '')!r}"
    if not isinstance(pid, int):
        err(f"{where}: id must be an integer")
    elif pid in ids:
        err(f"{where}: id {pid} is used twice")
    ids.add(pid)
    if not str(p.get("title", "")).strip():
        err(f"{where}: no title")
    gp = p.get("gridPos", {})
    if not all(isinstance(gp.get(k), int) for k in ("h", "w", "x", "y")):
        err(f"{where}: gridPos needs integer h, w, x, y")
    elif gp["x"] < 0 or gp["w"] < 1 or gp["x"] + gp["w"] > 24:
        err(f"{where}: gridPos does not fit the 24-column grid")
    if p.get("type") == "row":
        continue
    if not str(p.get("description", "")).strip():
        err(f"{where}: no description")
    if (p.get("datasource") or {}).get("uid") != "${datasource}":
        err(f"{where}: datasource must be ${{datasource}}")
    targets = p.get("targets") or []
    if not targets:
        err(f"{where}: no targets")
    refids = set()
    for t in targets:
        expr = t.get("expr", "")
        if not isinstance(expr, str) or not expr.strip():
            err(f"{where}: target {t.get('refId')} has no expr")
            continue
        if t.get("refId") in refids:
            err(f"{where}: refId {t.get('refId')} used twice")
        refids.add(t.get("refId"))
        exprs_text.append(expr)
        panel_metrics |= check_names(expr, where)
        check_promql(expr, where)
        for m in re.finditer(r"\b(tenantry_[a-z_]+|up)\b\s*(\{[^}]*\})?", expr):
            if 'instance=~"$instance"' not in (m.group(2) or ""):
                err(f"{where}: {m.group(1)} is not filtered by instance=~\"$instance\"")
        # As Grafana would send it, for promtool to parse (below).
        promql = expr
        for var, value in (("$__rate_interval", "5m"), ("$__interval", "1m"),
                           ("$__range", "1h"), ("$instance", ".*")):
            promql = promql.replace(var, value)
        if "$" in promql:
            err(f"{where}: unknown dashboard variable in {expr}")
        queries.append((f"dashboard:panel_{pid}_{t.get('refId')}", promql))

# Top-level panels must not overlap (panels inside a collapsed row are laid out on expansion).
occupied = {}
for p in dash.get("panels", []):
    gp = p.get("gridPos", {})
    if not all(isinstance(gp.get(k), int) for k in ("h", "w", "x", "y")):
        continue
    cells = {(x, y) for x in range(gp["x"], gp["x"] + gp["w"]) for y in range(gp["y"], gp["y"] + gp["h"])}
    clash = sorted({occupied[c] for c in cells if c in occupied})
    if clash:
        err(f"panel {p.get('id')} {p.get('title', '')!r}: overlaps panel(s) {clash}")
    occupied.update({c: p.get("id") for c in cells})

for name in sorted(set(types) - panel_metrics):
    err(f"dashboard: no panel shows {name} (metrics.txt)")
if not any(re.search(r"\bup\b", e) for e in exprs_text):
    err("dashboard: no panel shows `up`")

# --- alerts.yml and alerts.test.yml ---------------------------------------------------------
rules_text = (here / "alerts.yml").read_text()
tests_text = (here / "alerts.test.yml").read_text()
check_names(rules_text, "alerts.yml")
check_names(tests_text, "alerts.test.yml")

blocks = re.split(r"(?m)^\s*- alert:\s*", rules_text)[1:]
alerts = []
for block in blocks:
    name = block.split()[0]
    alerts.append(name)
    for key in ("expr:", "for:", "severity:", "summary:", "description:", "runbook:"):
        if not re.search(rf"(?m)^\s*{key}", block):
            err(f"alerts.yml: {name} has no {key[:-1]}")
    m = re.search(r"(?ms)^\s*expr:\s*(\|\s*\n(.*?)^\s*for:|(.*?)$)", block)
    if m:
        check_promql(m.group(2) or m.group(3) or "", f"alerts.yml: {name}")
if len(set(alerts)) != len(alerts):
    err("alerts.yml: an alert name is used twice")

cases = re.findall(r"(?m)^\s*alertname:\s*(\S+)\s*\n\s*exp_alerts:\s*(\[\])?", tests_text)
if len(cases) != len(re.findall(r"(?m)^\s*alertname:", tests_text)):
    err("alerts.test.yml: every `alertname:` must be followed directly by `exp_alerts:`")
fires = {n for n, empty in cases if not empty}
silent = {n for n, empty in cases if empty}
for name in alerts:
    if name not in fires:
        err(f"alerts.test.yml: no case where {name} fires")
    if name not in silent:
        err(f"alerts.test.yml: no case where {name} does not fire")
for name in sorted({n for n, _ in cases} - set(alerts)):
    err(f"alerts.test.yml: tests {name}, which alerts.yml does not define")

# Every panel query as a recording rule, so that promtool parses it.
with queries_file.open("w") as f:
    f.write("groups:\n  - name: dashboard-queries\n    rules:\n")
    for record, promql in queries:
        f.write(f"      - record: {record}\n        expr: {json.dumps(promql)}\n")

if errors:
    for e in errors:
        print(f"FAIL: {e}", file=sys.stderr)
    sys.exit(1)
panels = [p for p in walk(dash["panels"]) if p.get("type") != "row"]
rows = [p for p in walk(dash["panels"]) if p.get("type") == "row"]
print(
    f"dashboard.json OK: {len(panels)} panels in {len(rows)} rows, "
    f"{len(panel_metrics)}/{len(types)} metrics shown; "
    f"{len(alerts)} alerts, each tested firing and not firing"
)
PY
echo "==> promtool check rules (every dashboard query, parsed as PromQL)"
"$promtool" check rules "$work/dashboard-queries.yml" | sed "s|$work/||"
echo "observability: all checks passed"
