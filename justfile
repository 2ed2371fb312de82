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

# Start a 3-node JetStream cluster on loopback (client ports 4231-4233; deploy/nats/)
cluster-up:
    deploy/nats/cluster-up.sh

# Stop the cluster `just cluster-up` started (its data stays under .tenantry/nats-cluster/)
cluster-down:
    deploy/nats/cluster-down.sh

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

# The Python packages the test suite uses: the subscriber example's and the OpenMetrics parser
python-deps:
    #!/usr/bin/env bash
    set -euo pipefail
    if python3 -c "import nats, google.protobuf, grpc_tools, prometheus_client, grpc, grpc_reflection, kubernetes_validate, yaml" 2>/dev/null; then exit 0; fi
    echo "==> installing the Python example's packages (examples/python-subscriber/requirements.txt)"
    if ! command -v python3 >/dev/null 2>&1; then
        sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get install -y -qq python3 python3-pip >/dev/null
    fi
    python3 -m pip --version >/dev/null 2>&1 || python3 -m ensurepip --user >/dev/null
    for req in examples/python-subscriber/requirements.txt tests/requirements.txt; do
        # A Debian python refuses user installs unless told (PEP 668); ours go to ~/.local only.
        python3 -m pip install --user --quiet -r "$req" 2>/dev/null \
            || python3 -m pip install --user --quiet --break-system-packages -r "$req"
    done

# Validate the dashboard JSON and the alert rules (promtool check + unit tests)
check-observability:
    deploy/observability/check.sh

# Validate deploy/: Dockerfile, compose, Kubernetes manifests, systemd units
check-deploy: python-deps
    deploy/checks/check.sh

# Run every test against the real servers (runs `just up` first), then the browser test
test: up python-deps check-observability check-deploy
    #!/usr/bin/env bash
    set -euo pipefail
    if cargo nextest --version >/dev/null 2>&1; then
        cargo nextest run --workspace --no-fail-fast
    else
        cargo test --workspace --no-fail-fast
    fi
    just browser-test

# The page's packages (npm ci) and Debian's Chromium, when missing
web-deps:
    #!/usr/bin/env bash
    set -euo pipefail
    if ! command -v chromium >/dev/null 2>&1; then
        echo "==> installing Debian's chromium (the browser test's browser)"
        sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get install -y -qq chromium >/dev/null 2>&1 \
            || { $sudo apt-get update -qq && $sudo apt-get install -y -qq chromium >/dev/null; }
    fi
    if [ ! -d web/node_modules ] || [ web/package-lock.json -nt web/node_modules ]; then
        (cd web && npm ci --no-audit --no-fund --loglevel=error)
    fi

# Build the signup page into web/dist (committed: `tenantry dev` embeds it)
web-build: web-deps
    cd web && npx tsc --noEmit -p . && npx vite build --logLevel warn

# Regenerate the page's client from proto/ (committed under web/src/gen)
web-generate: web-deps
    cd web && npx buf generate --template buf.gen.yaml

# The signup page in Chromium against `tenantry dev`: errors, suggestion, code, progress, logged-in site
browser-test: web-deps
    #!/usr/bin/env bash
    set -euo pipefail
    # The committed page is the one its sources build.
    out=$(mktemp -d)
    (cd web && npx tsc --noEmit -p . && npx vite build --logLevel warn --outDir "$out" --emptyOutDir)
    if ! diff -r "$out" web/dist >/dev/null; then
        echo "web/dist is not what web/src builds: run \`just web-build\` and commit web/dist" >&2
        diff -r "$out" web/dist | head -20 >&2
        exit 1
    fi
    rm -rf "$out"
    cargo build -q -p tenantry -p frappe-sim -p authentik-fake
    node web/e2e/signup.e2e.mjs

# Benchmarks against the real servers; figures go in the README
bench: up
    cargo bench -p eventstore --bench eventstore
    cargo bench -p vault --bench vault_bench
    cargo bench -p signup --bench signup
    BENCH_EVENTS=1000000 cargo bench -p projection --bench rebuild
    cargo bench -p provisioner --bench provisioning
    cargo bench -p provisioner --bench throughput

# Format the code
fmt:
    cargo fmt --all

# Lint: clippy with warnings as errors, and a format check
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
