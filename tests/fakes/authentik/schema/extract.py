#!/usr/bin/env python3
"""Cut the Authentik OpenAPI schema down to what authentik-fake serves.

Dev-time only (needs PyYAML): the fake and its tests read the generated JSON, never the full
schema, so the fake does not parse 1.8 MB of YAML. Re-run after changing SERVED or the source schema:

    python3 tests/fakes/authentik/schema/extract.py [path/to/authentik-schema.yml]

Writes authentik-subset.json beside this script: `info`, the served `paths` (only the served
methods), the transitive closure of `components/*` they `$ref`, and `x-source-sha256` of the yml.
"""

import hashlib
import json
import sys
from pathlib import Path

import yaml

# The full schema is checked in beside the contract (tests/fixtures/authentik/).
DEFAULT_SOURCE = str(Path(__file__).resolve().parents[3] / "fixtures" / "authentik" / "authentik-schema.yml")
OUT = Path(__file__).with_name("authentik-subset.json")

# path -> methods the fake answers. Keep in sync with src/routes/*.rs.
SERVED = {
    "/admin/version/": ["get"],
    "/flows/instances/": ["get"],
    "/propertymappings/provider/scope/": ["get"],
    "/crypto/certificatekeypairs/": ["get"],
    "/core/groups/": ["get", "post"],
    "/core/groups/{group_uuid}/": ["get", "put", "patch", "delete"],
    "/core/groups/{group_uuid}/add_user/": ["post"],
    "/core/groups/{group_uuid}/remove_user/": ["post"],
    "/core/users/": ["get", "post"],
    "/core/users/{id}/": ["get", "put", "patch", "delete"],
    "/core/users/{id}/set_password/": ["post"],
    "/providers/oauth2/": ["get", "post"],
    "/providers/oauth2/{id}/": ["get", "put", "patch", "delete"],
    "/providers/oauth2/{id}/setup_urls/": ["get"],
    "/core/applications/": ["get", "post"],
    "/core/applications/{slug}/": ["get", "put", "patch", "delete"],
    "/core/applications/{slug}/check_access/": ["get"],
    "/policies/bindings/": ["get", "post"],
    "/policies/bindings/{policy_binding_uuid}/": ["get", "put", "patch", "delete"],
}


def refs_in(node, out):
    """Collect every `$ref` string below `node`."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                out.add(value)
            else:
                refs_in(value, out)
    elif isinstance(node, list):
        for value in node:
            refs_in(value, out)


def main():
    source = Path(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_SOURCE)
    raw = source.read_bytes()
    full = yaml.safe_load(raw)

    paths = {}
    for path, methods in SERVED.items():
        item = full["paths"][path]
        kept = {m: item[m] for m in methods}
        # Path-level entries (parameters, summary) apply to every method.
        kept.update({k: v for k, v in item.items() if k not in ("get", "post", "put", "patch", "delete", "head", "options", "trace")})
        paths[path] = kept

    pending = set()
    refs_in(paths, pending)
    components = {}
    seen = set()
    while pending:
        ref = pending.pop()
        if ref in seen:
            continue
        seen.add(ref)
        prefix, _, kind, name = ref.split("/")
        if prefix != "#" or _ != "components":
            raise SystemExit(f"unsupported $ref {ref}")
        node = full["components"][kind][name]
        components.setdefault(kind, {})[name] = node
        refs_in(node, pending)

    subset = {
        "openapi": full["openapi"],
        "info": full["info"],
        "x-source-sha256": hashlib.sha256(raw).hexdigest(),
        "paths": paths,
        "components": {kind: dict(sorted(v.items())) for kind, v in sorted(components.items())},
    }
    OUT.write_text(json.dumps(subset, indent=1, sort_keys=False, ensure_ascii=False) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(seen)} components)")


if __name__ == "__main__":
    main()
