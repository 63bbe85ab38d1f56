#!/usr/bin/env bash
# The whole test suite: installs the moto test-bed if needed, then runs every test of the workspace.
# PostgreSQL store tests run when CLOUDWARDEN_TEST_POSTGRES_URL is set (CI sets it); otherwise they say they
# are skipped.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

scripts/testbed.sh install

if [[ "${CI:-}" == "true" && -z "${CLOUDWARDEN_TEST_POSTGRES_URL:-}" ]]; then
    export CLOUDWARDEN_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:5432/test"
fi

cargo test --workspace --locked "$@"
