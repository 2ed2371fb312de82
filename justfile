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

# Format the code
fmt:
    cargo fmt --all

# Lint: clippy with warnings as errors, and a format check
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
