#!/usr/bin/env bash
# The whole test suite: installs the moto test-bed if needed, promtool/amtool (scripts/deps.sh: when missing
# and we are root) and the dashboards' TypeScript check, then runs every test of the workspace and prints one
# closing line with the totals of all test binaries.
# PostgreSQL store tests run when CLOUDWARDEN_TEST_POSTGRES_URL is set (CI sets it); otherwise they say they
# are skipped.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

scripts/testbed.sh install
scripts/deps.sh || echo "test.sh: could not install promtool/amtool; the monitoring rules tests will say why" >&2

# tests/dashboards.rs checks the Grafana dashboards with tsc against @grafana/schema (two npm packages, pinned
# in dashboards/typecheck/package-lock.json). Without npm, or when the install fails, that test is skipped
# (and fails under CI=true).
if [[ ! -d dashboards/typecheck/node_modules ]] && command -v npm >/dev/null 2>&1; then
    if ! (cd dashboards/typecheck && npm ci --no-audit --no-fund --loglevel=error); then
        echo "npm ci in dashboards/typecheck failed: the dashboards' TypeScript check will not run" >&2
        rm -rf dashboards/typecheck/node_modules
    fi
fi

if [[ "${CI:-}" == "true" && -z "${CLOUDWARDEN_TEST_POSTGRES_URL:-}" ]]; then
    export CLOUDWARDEN_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:5432/test"
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed/) p += $(i-1); if ($(i) ~ /^failed/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
