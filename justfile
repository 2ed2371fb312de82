# Tenantry — run `just` to list recipes.

set shell := ["bash", "-euo", "pipefail", "-c"]

default:
    @just --list

# Make NATS (JetStream), PostgreSQL and MariaDB reachable (starts private ones under .tenantry/ if needed)
up:
    deploy/local/up.sh

# Stop the private instances `just up` started
down:
    deploy/local/down.sh

# Bring the stack up, start `tenantry dev` (every service + frappe-sim), sign up a sample tenant
demo: up
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build -q -p tenantry -p frappe-sim -p authentik-fake -p tenantctl
    mkdir -p .tenantry
    if [ -f .tenantry/dev.pid ] && kill -0 "$(cat .tenantry/dev.pid)" 2>/dev/null; then
        echo "==> tenantry dev already running (pid $(cat .tenantry/dev.pid)); logs in .tenantry/dev.log"
    else
        echo "==> starting tenantry dev (logs in .tenantry/dev.log)"
        nohup target/debug/tenantry dev > .tenantry/dev.log 2>&1 &
        echo $! > .tenantry/dev.pid
    fi
    if ! target/debug/tenantry demo; then
        echo "demo failed; the last lines of .tenantry/dev.log:" >&2
        tail -n 30 .tenantry/dev.log >&2
        exit 1
    fi

# Stop the `tenantry dev` that `just demo` started
demo-stop:
    #!/usr/bin/env bash
    if [ -f .tenantry/dev.pid ] && kill "$(cat .tenantry/dev.pid)" 2>/dev/null; then
        echo "stopped tenantry dev"; rm -f .tenantry/dev.pid
    else
        echo "tenantry dev is not running"
    fi

# Run every test against the real servers (runs `just up` first)
test: up
    #!/usr/bin/env bash
    set -euo pipefail
    if cargo nextest --version >/dev/null 2>&1; then
        cargo nextest run --workspace --no-fail-fast
    else
        cargo test --workspace --no-fail-fast
    fi

# Benchmarks against the real servers; figures go in the README
bench: up
    cargo bench -p eventstore --bench eventstore
    cargo bench -p vault --bench vault_bench
    cargo bench -p signup --bench signup
    cargo bench -p projection --bench rebuild
    cargo bench -p provisioner --bench provisioning

# Format the code
fmt:
    cargo fmt --all

# Lint: clippy with warnings as errors, and a format check
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
