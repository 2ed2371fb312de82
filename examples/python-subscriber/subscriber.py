#!/usr/bin/env python3
"""Follow a tenant's life from Python, as an outside billing system or CRM would.

A durable JetStream pull consumer on `tenantry.*.<tenant>` (or every tenant), classes generated
from proto/tenantry/v1/events.proto at start, one line per event:

    <stream seq>  <subject>  <event type>  <fields as JSON>

    pip install -r requirements.txt
    python3 subscriber.py --tenant <id> [--namespace NS] [--expect TenantProvisioned,...]

With --expect it exits 0 once every listed event type has been seen for the tenant (1 on
timeout); without, it follows until interrupted. See docs/events.md for the contract: at least
once, per-subject order, de-duplicate by the Tenantry-Event-Id header.
"""

import argparse
import asyncio
import importlib
import json
import sys
import tempfile
from pathlib import Path

import nats
from google.protobuf.json_format import MessageToDict
from grpc_tools import protoc

HERE = Path(__file__).resolve().parent
PROTO = HERE.parent.parent / "proto"


def generated_events(proto_dir: Path):
    """Compiles events.proto into a temporary package and imports it."""
    out = Path(tempfile.mkdtemp(prefix="tenantry-proto-"))
    include = Path(protoc.__file__).parent / "_proto"
    status = protoc.main([
        "grpc_tools.protoc",
        f"-I{proto_dir}",
        f"-I{include}",
        f"--python_out={out}",
        str(proto_dir / "tenantry/v1/events.proto"),
    ])
    if status != 0:
        sys.exit(f"protoc failed on {proto_dir}/tenantry/v1/events.proto")
    sys.path.insert(0, str(out))
    return importlib.import_module("tenantry.v1.events_pb2")


async def follow(args) -> int:
    events_pb2 = generated_events(Path(args.proto_dir))
    prefix = f"{args.namespace}." if args.namespace else ""
    stream = f"{args.namespace}_TENANTRY_EVENTS" if args.namespace else "TENANTRY_EVENTS"
    subject = f"{prefix}tenantry.*.{args.tenant or '*'}"
    nc = await nats.connect(args.nats_url)
    js = nc.jetstream()
    sub = await js.pull_subscribe(subject, durable=args.durable, stream=stream)
    expected = set(filter(None, args.expect.split(",")))
    seen = set()
    deadline = asyncio.get_event_loop().time() + args.timeout
    try:
        while asyncio.get_event_loop().time() < deadline:
            try:
                messages = await sub.fetch(16, timeout=1)
            except nats.errors.TimeoutError:
                continue
            for msg in messages:
                event = events_pb2.Event()
                event.ParseFromString(msg.data)
                kind = event.WhichOneof("body")
                body = getattr(event, kind) if kind else None
                type_name = (msg.headers or {}).get("Tenantry-Event-Type", kind)
                fields = MessageToDict(body, preserving_proto_field_name=True) if body else {}
                print(f"{msg.metadata.sequence.stream:>6}  {msg.subject}  {type_name}  "
                      f"{json.dumps(fields, sort_keys=True)}", flush=True)
                seen.add(type_name)
                await msg.ack()
            if expected and expected <= seen:
                print(f"seen every expected event: {', '.join(sorted(expected))}", flush=True)
                return 0
    finally:
        await nc.close()
    if expected:
        print(f"timed out; never saw: {', '.join(sorted(expected - seen))}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nats-url", default="nats://127.0.0.1:4222")
    p.add_argument("--namespace", default="", help="deployment namespace (prefix of subjects and stream)")
    p.add_argument("--tenant", default="", help="one tenant's id (default: every tenant)")
    p.add_argument("--durable", default="python-example", help="durable consumer name")
    p.add_argument("--expect", default="", help="comma-separated event types to wait for, then exit 0")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds")
    p.add_argument("--proto-dir", default=str(PROTO))
    return asyncio.run(follow(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
