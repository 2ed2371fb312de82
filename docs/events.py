#!/usr/bin/env python3
"""Renders docs/events.md, the event catalogue for outside subscribers, from the contract
(proto/tenantry/v1/events.proto: fields and their comments) and libs/proto/src/event_type.rs
(which context, and so which subject, each event is written to).

    python3 docs/events.py        # rewrites docs/events.md

A test (libs/proto/tests/catalogue_doc.rs) fails when the document misses an event type.
"""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO = (ROOT / "proto/tenantry/v1/events.proto").read_text()
CATALOGUE = (ROOT / "libs/proto/src/event_type.rs").read_text()
INTRO = (ROOT / "docs/events.intro.md").read_text()

CONTEXT_ORDER = ["Signup", "Lifecycle", "Provisioning", "Pool", "Vault", "Identity", "Billing"]


def messages():
    """name -> (leading comment, [(comment, type, name, number)])"""
    out = {}
    pattern = re.compile(r"((?:^//[^\n]*\n)*)^message (\w+) \{\n(.*?)^\}", re.M | re.S)
    for m in pattern.finditer(PROTO):
        lead = " ".join(l[2:].strip() for l in m.group(1).splitlines())
        fields, comment = [], []
        for line in m.group(3).splitlines():
            s = line.strip()
            if s.startswith("//"):
                comment.append(s[2:].strip())
                continue
            f = re.match(r"(repeated )?([\w.]+) (\w+) = (\d+);", s)
            if f:
                typ = (f.group(1) or "") + f.group(2)
                fields.append((" ".join(comment), typ, f.group(3), int(f.group(4))))
            comment = []
        out[m.group(2)] = (lead, fields)
    return out


def oneof():
    """[(message type, oneof field name, number)] in catalogue order"""
    body = PROTO[PROTO.index("oneof body {"):]
    body = body[: body.index("}")]
    return re.findall(r"^\s+(\w+) (\w+) = (\d+);", body, re.M)


def contexts():
    return dict(re.findall(r"^\s+(\w+) => (\w+), \w+;", CATALOGUE, re.M))


def example(msgs, name, depth=0):
    _, fields = msgs[name]
    out = {}
    for comment, typ, fname, _ in fields:
        rep = typ.startswith("repeated ")
        base = typ.replace("repeated ", "")
        if base == "google.protobuf.Timestamp":
            v = "2026-12-06T20:00:00Z"
        elif base == "string":
            v = {
                "tenant_id": "01a24d01-7839-73ea-bea9-60a713342f03",
                "currency": "EUR",
                "plan": "business",
                "to_plan": "business",
                "from_plan": "starter",
                "owner_email": "grace@example.com",
                "subdomain": "cobol-works",
                "site": "cobol-works.erp.example.com",
                "url": "https://cobol-works.erp.example.com",
            }.get(fname, f"<{fname}>")
        elif base == "bool":
            v = False
        elif base in ("int64", "uint64", "int32", "uint32"):
            v = 0
        elif base in msgs and depth < 2:
            v = example(msgs, base, depth + 1)
        else:
            v = f"<{base}>"
        out[fname] = [v] if rep else v
    return out


def render():
    import json

    msgs = messages()
    ctx = contexts()
    entries = oneof()
    lines = [INTRO.rstrip(), ""]
    for context in CONTEXT_ORDER:
        in_ctx = [(t, f, n) for (t, f, n) in entries if ctx.get(t) == context]
        if not in_ctx:
            continue
        subject = f"tenantry.{context.lower()}.<{'standby_id' if context == 'Pool' else 'tenant_id'}>"
        lines += [f"## {context} — `{subject}`", ""]
        for typ, field, number in in_ctx:
            lead, fields = msgs[typ]
            lines += [f"### {typ}", ""]
            lines += [f"`Event.body.{field}` (field {number}), header `Tenantry-Event-Type: {typ}`.", ""]
            if lead:
                lines += [lead, ""]
            lines += ["| field | type | # | meaning |", "|---|---|---|---|"]
            for comment, ftype, fname, fnum in fields:
                lines.append(f"| `{fname}` | `{ftype}` | {fnum} | {comment} |")
            lines += ["", "```json", json.dumps({field: example(msgs, typ)}, indent=2), "```", ""]
    in_oneof = {t for (t, _, _) in entries}
    lines += ["## Types used inside events", ""]
    for name, (lead, fields) in msgs.items():
        if name in in_oneof or name == "Event":
            continue
        lines += [f"### {name}", ""]
        if lead:
            lines += [lead, ""]
        lines += ["| field | type | # | meaning |", "|---|---|---|---|"]
        for comment, ftype, fname, fnum in fields:
            lines.append(f"| `{fname}` | `{ftype}` | {fnum} | {comment} |")
        lines.append("")
    for m in re.finditer(r"((?:^//[^\n]*\n)*)^enum (\w+) \{\n(.*?)^\}", PROTO, re.M | re.S):
        lines += [f"### {m.group(2)} (enum)", ""]
        lead = " ".join(l[2:].strip() for l in m.group(1).splitlines())
        if lead:
            lines += [lead, ""]
        values = re.findall(r"^\s+(\w+) = (\d+);", m.group(3), re.M)
        lines += [", ".join(f"`{v}` = {n}" for v, n in values), ""]
    lines += [
        "### Event (the envelope payload)",
        "",
        "| field | type | # | meaning |",
        "|---|---|---|---|",
    ]
    for comment, ftype, fname, fnum in msgs["Event"][1]:
        lines.append(f"| `{fname}` | `{ftype}` | {fnum} | {comment} |")
    lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    (ROOT / "docs/events.md").write_text(render())
    print("wrote docs/events.md")
