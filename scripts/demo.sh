#!/usr/bin/env bash
# One command from a fresh clone to a running demo: installs and starts the local AWS test-bed (moto on
# 127.0.0.1), seeds the demo organisation, then runs cloudwarden against it with the embedded SQLite store.
# Ctrl-C stops the daemon and the test-bed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PORT="${MOTO_PORT:-5055}"
LISTEN="${CLOUDWARDEN_LISTEN:-127.0.0.1:9464}"
# The findings API's bearer token (at least 16 characters).
export CLOUDWARDEN_API_TOKEN="${CLOUDWARDEN_API_TOKEN:-demo-token-0123456789}"
# The token that may approve cleanup plans (scopes read and approve).
export CLOUDWARDEN_APPROVE_TOKEN="${CLOUDWARDEN_APPROVE_TOKEN:-demo-approver-0123456789}"

scripts/testbed.sh install
scripts/testbed.sh start "$PORT"
trap 'scripts/testbed.sh stop "$PORT" >/dev/null 2>&1 || true' EXIT
# The seed also writes the test-bed budgets (their amounts follow the seeded billing data) as a rule file.
scripts/testbed.sh seed "$PORT" .testbed/truth.json --budget-rules .testbed/rules/budgets.toml

# The owners' notification channel of the demo: an SNS topic on the test-bed.
topic=$(.venv/bin/python -c 'import boto3; print(boto3.client("sns", endpoint_url="http://127.0.0.1:'"$PORT"'", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing").create_topic(Name="cloudwarden-cleanup")["TopicArn"])')
member=$(.venv/bin/python -c 'import json; print([a for a in json.load(open(".testbed/truth.json"))["accounts"] if a["role_arn"]][0]["role_arn"])')
mkdir -p .testbed
cat > .testbed/demo.toml <<TOML
# Written by scripts/demo.sh: cloudwarden against the local test-bed.
[server]
listen = "$LISTEN"

[database]
url = "sqlite://.testbed/demo.db"
create_if_missing = true

[aws]
endpoint_url = "http://127.0.0.1:$PORT"

[[accounts]]
name = "management"

[[accounts]]
name = "workloads"
role_arn = "$member"

[collectors.inventory]
regions = ["us-east-1", "eu-west-1"]
interval_secs = 60

[collectors.cost_explorer]
account = "management"

[collectors.cloudwatch]
interval_secs = 60

[[collectors.cloudwatch.discovery]]
namespace = "AWS/EC2"
resource_type = "ec2:instance"
dimension = "InstanceId"
metrics = ["CPUUtilization"]
statistics = ["Average", "Maximum"]
period_secs = 300
length_secs = 3600
delay_secs = 0
export_tags = ["team", "env"]

# The test-bed rule set (paths relative to this file): tagging, cleanup and cost anomalies from the
# repository, the budgets the seed wrote. The seed's truth lists what they must find (expected_findings).
[rules]
files = ["../examples/rules/testbed/*.toml", "rules/budgets.toml"]
interval_secs = 60

# Cleanup in approve mode: candidates seen on two evaluations are marked (tag cloudwarden:cleanup) and
# their owners told through an SNS topic on the test-bed; nothing is done unless a plan is approved
# through the API, and then only on its due date, a week later.
[cleanup]
mode = "approve"
interval_secs = 60
allowed_accounts = ["management", "workloads"]

[cleanup.notify]
fallback = "platform"

[cleanup.notify.contacts.platform]
sns_topic_arn = "$topic"

# The weekly cost report of the last complete week, delivered by the daemon to .testbed/reports/ (a
# directory next to this file) once Cost Explorer has been read; in production, on Mondays at 08:00 UTC
# by email, webhook or S3 too (docs/reports.md).
[reports.weekly]

[reports.weekly.deliveries.demo]
kind = "directory"
path = "reports"

[api]
tokens = ["\${CLOUDWARDEN_API_TOKEN}"]

[[api.clients]]
name = "demo-approver"
token = "\${CLOUDWARDEN_APPROVE_TOKEN}"
scopes = ["read", "approve"]
TOML

export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
cargo build --locked --quiet
echo
echo "cloudwarden is starting: metrics at http://$LISTEN/metrics (readiness: http://$LISTEN/readyz)"
echo "findings:   curl -s -H 'Authorization: Bearer $CLOUDWARDEN_API_TOKEN' 'http://$LISTEN/api/v1/findings?kind=cleanup'"
echo "            (kinds: tagging, budget, cost_anomaly, drift, cleanup; what the seed expects: .testbed/truth.json, expected_findings)"
echo "config: .testbed/demo.toml, database: .testbed/demo.db, seed truth: .testbed/truth.json; Ctrl-C stops"
echo
"${CARGO_TARGET_DIR:-target}/debug/cloudwarden" run --config .testbed/demo.toml &
daemon=$!
trap 'kill "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; scripts/testbed.sh stop "$PORT" >/dev/null 2>&1 || true' EXIT
trap 'exit 130' INT TERM
# The week's report is delivered once Cost Explorer has been read (within a minute or so); cleanup plans
# appear after two rules evaluations (about two minutes). Show each when it is there.
week=$(date -u -d '7 days ago' +%G-W%V)
report=".testbed/reports/weekly-$week.html"
plans="http://$LISTEN/api/v1/cleanup?state=notified&limit=1"
shown_report="" shown_plan=""
for _ in $(seq 1 150); do
    kill -0 "$daemon" 2>/dev/null || break
    if [ -z "$shown_report" ] && [ -s "$report" ]; then
        shown_report=1
        echo
        echo "weekly cost report of $week, delivered by the daemon: $report (and .md, .csv, .json)"
        echo "  (any week: ${CARGO_TARGET_DIR:-target}/debug/cloudwarden report weekly --config .testbed/demo.toml --week $week --format html)"
        echo
    fi
    if [ -z "$shown_plan" ]; then
        id=$(.venv/bin/python - "$plans" "$CLOUDWARDEN_APPROVE_TOKEN" <<'PY' 2>/dev/null || true
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1], headers={"Authorization": "Bearer " + sys.argv[2]})
plans = json.load(urllib.request.urlopen(req, timeout=5))["plans"]
print(plans[0]["id"] if plans else "")
PY
)
        if [ -n "$id" ]; then
            shown_plan=1
            echo
            echo "cleanup (approve mode): plans are marked and their owners told; list them, and approve one:"
            echo "  export CLOUDWARDEN_API_TOKEN=$CLOUDWARDEN_API_TOKEN CLOUDWARDEN_APPROVE_TOKEN=$CLOUDWARDEN_APPROVE_TOKEN"
            echo "  ${CARGO_TARGET_DIR:-target}/debug/cloudwarden cleanup plan --config .testbed/demo.toml"
            echo "  curl -s -H 'Authorization: Bearer $CLOUDWARDEN_APPROVE_TOKEN' 'http://$LISTEN/api/v1/cleanup?state=notified'"
            echo "  curl -s -X POST -H 'Authorization: Bearer $CLOUDWARDEN_APPROVE_TOKEN' -d '{\"comment\": \"demo\"}' http://$LISTEN/api/v1/cleanup/$id/approve"
            echo "  ${CARGO_TARGET_DIR:-target}/debug/cloudwarden cleanup history --config .testbed/demo.toml"
            echo "(an approved plan is acted on at its due date; see docs/cleanup.md)"
            echo
        fi
    fi
    [ -n "$shown_report" ] && [ -n "$shown_plan" ] && break
    sleep 2
done
wait "$daemon"
