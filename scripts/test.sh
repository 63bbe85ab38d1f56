#!/usr/bin/env bash
# The test suite, in one of two tiers, each closing on one line with the totals of all test binaries.
#
#   scripts/test.sh [CARGO TEST ARGS]          every test of the workspace: installs the moto test-bed (and
#                                              the SMTP server aiosmtpd, in the same venv) if needed, promtool/amtool (scripts/deps.sh: when missing and we
#                                              are root) and the dashboards' TypeScript check
#   scripts/test.sh --fast [CARGO TEST ARGS]   the fast tier: no moto, no Prometheus tools, no npm. The unit
#                                              tests of the three crates and the integration tests that need
#                                              nothing outside the repository; installs nothing
#
# PostgreSQL store tests run in both tiers when CLOUDWARDEN_TEST_POSTGRES_URL is set (CI sets it);
# otherwise they say they are skipped.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

fast=false
if [[ "${1:-}" == "--fast" ]]; then
    fast=true
    shift
fi

# The fast tier: whole integration test binaries that start no moto server and run no promtool, amtool,
# Prometheus or npm, plus the tests of binaries that do but whose other tests need nothing (those that
# need moto or npm are skipped by name, below).
FAST_TESTS=(anomaly_cli billing_daemon billing_files config dashboards notify report rules_daemon runtime server store terraform)
FAST_SKIP=(
    s3_prefix_through_moto                               # billing_files: moto
    s3_objects_and_prefixes                              # terraform: moto
    the_daemon_keeps_each_origin_until_it_reads_it_again # terraform: moto
    dashboards_satisfy_grafana_schema_types              # dashboards: npm (tsc)
    digest_mail_through_a_starttls_relay                 # notify: aiosmtpd (test-bed venv)
    digest_mail_over_implicit_tls_and_untrusted_relays   # notify: aiosmtpd (test-bed venv)
    digest_published_to_an_sns_topic_reaches_its_queue   # notify: moto
    the_weekly_report_of_the_test_beds_cost_explorer_matches_the_seed # report: moto
    the_html_report_fits_600_and_1200_pixels_in_a_headless_browser   # report: chromium
)

if [[ "$fast" == false ]]; then
    scripts/testbed.sh install
    scripts/deps.sh || echo "test.sh: could not install promtool/amtool/chromium; the tests that need them will say why" >&2

    # tests/dashboards.rs checks the Grafana dashboards with tsc against @grafana/schema (two npm packages,
    # pinned in dashboards/typecheck/package-lock.json). Without npm, or when the install fails, that test is
    # skipped (and fails under CI=true).
    if [[ ! -d dashboards/typecheck/node_modules ]] && command -v npm >/dev/null 2>&1; then
        if ! (cd dashboards/typecheck && npm ci --no-audit --no-fund --loglevel=error); then
            echo "npm ci in dashboards/typecheck failed: the dashboards' TypeScript check will not run" >&2
            rm -rf dashboards/typecheck/node_modules
        fi
    fi
fi

if [[ "${CI:-}" == "true" && -z "${CLOUDWARDEN_TEST_POSTGRES_URL:-}" ]]; then
    export CLOUDWARDEN_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:5432/test"
fi

args=(--workspace --locked)
if [[ "$fast" == true ]]; then
    args+=(--lib --bins)
    for t in "${FAST_TESTS[@]}"; do
        args+=(--test "$t")
    done
    args+=("$@")
    # The skips go to the test harness: after the caller's `--` if there is one.
    separated=false
    for a in "$@"; do
        [[ "$a" == "--" ]] && separated=true
    done
    [[ "$separated" == true ]] || args+=(--)
    for s in "${FAST_SKIP[@]}"; do
        args+=(--skip "$s")
    done
else
    args+=("$@")
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test "${args[@]}" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed/) p += $(i-1); if ($(i) ~ /^failed/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
