#!/usr/bin/env bash
# Local AWS testbed for cloudwarden: a moto server on 127.0.0.1 plus a deterministic demo seed.
# See docs/testbed.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
MOTO="$VENV/bin/moto_server"
STATE="$ROOT/.testbed"
STAMP="$VENV/.testbed-requirements"
REQUIREMENTS=("moto[server]==5.2.5" "boto3==1.44.8" "aiosmtpd==1.4.6")
DEFAULT_PORT="${MOTO_PORT:-5055}"
HOST=127.0.0.1

usage() {
    cat >&2 <<EOF
usage: scripts/testbed.sh <command> [args]

  install                      create .venv and install pinned moto[server], boto3 and aiosmtpd
  start [PORT]                 start moto on $HOST:PORT in the background
  stop [PORT]                  stop it
  status [PORT]                say whether it is running
  seed [PORT] [TRUTH] [ARGS]   seed the demo organisation, write the truth JSON
                               (default .testbed/truth.json; ARGS go to scripts/seed.py, e.g. --scale 0.25)
  reset [PORT]                 wipe all moto state
  env [PORT]                   print export lines for the AWS SDKs

PORT defaults to \$MOTO_PORT, else 5055.
EOF
}

die() {
    echo "testbed: $*" >&2
    exit 1
}

port_arg() {
    local port="${1:-$DEFAULT_PORT}"
    [[ "$port" =~ ^[0-9]+$ ]] && ((port > 0 && port < 65536)) || die "invalid port: $port"
    echo "$port"
}

pid_file() { echo "$STATE/moto-$1.pid"; }
log_file() { echo "$STATE/moto-$1.log"; }

# HTTP status of a request to the server ("000" when nothing answers).
http_status() {
    local method="$1" url="$2"
    if command -v curl >/dev/null 2>&1; then
        curl -s -o /dev/null -m 5 -X "$method" -w '%{http_code}' "$url" || true
    else
        "$PY" - "$method" "$url" <<'EOF' || echo 000
import sys, urllib.error, urllib.request
req = urllib.request.Request(sys.argv[2], method=sys.argv[1], data=b"" if sys.argv[1] == "POST" else None)
try:
    with urllib.request.urlopen(req, timeout=5) as r:
        print(r.status, end="")
except urllib.error.HTTPError as e:
    print(e.code, end="")
except Exception:
    print("000", end="")
EOF
    fi
}

# Pid from the pid file when that process is still alive and still a moto server.
running_pid() {
    local file pid
    file="$(pid_file "$1")"
    [[ -f "$file" ]] || return 1
    pid="$(<"$file")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r "/proc/$pid/cmdline" ]] && ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q moto_server; then
        return 1
    fi
    echo "$pid"
}

require_venv() {
    [[ -x "$MOTO" && -x "$PY" ]] || die "no moto in $VENV; run: scripts/testbed.sh install"
}

cmd_install() {
    local want python
    want="$(printf '%s\n' "${REQUIREMENTS[@]}")"
    if [[ -x "$PY" && -x "$MOTO" && -f "$STAMP" && "$(<"$STAMP")" == "$want" ]]; then
        echo "testbed: .venv already has ${REQUIREMENTS[*]}"
        return 0
    fi
    if [[ ! -x "$PY" ]]; then
        python="$(command -v python3.11 || command -v python3 || true)"
        [[ -n "$python" ]] || die "python3 not found"
        "$python" -m venv "$VENV"
    fi
    "$PY" -m pip install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}" \
        || die "pip install failed"
    printf '%s\n' "$want" >"$STAMP"
    echo "testbed: installed ${REQUIREMENTS[*]} into .venv"
}

cmd_start() {
    local port pid log status i
    port="$(port_arg "${1:-}")"
    require_venv
    mkdir -p "$STATE"
    if pid="$(running_pid "$port")"; then
        echo "testbed: moto already running on $HOST:$port (pid $pid)"
        return 0
    fi
    rm -f "$(pid_file "$port")"
    status="$(http_status GET "http://$HOST:$port/moto-api/data.json")"
    [[ "$status" == 000 ]] || die "port $port is already in use by another process"

    log="$(log_file "$port")"
    # MOTO_ACCOUNT_ID would pin every request to one account and break the member account.
    env -u MOTO_ACCOUNT_ID MOTO_EC2_LOAD_DEFAULT_AMIS=false \
        nohup "$MOTO" -H "$HOST" -p "$port" >"$log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$(pid_file "$port")"

    for ((i = 0; i < 60; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$(pid_file "$port")"
            tail -n 20 "$log" >&2 || true
            die "moto exited during startup (log: $log)"
        fi
        status="$(http_status GET "http://$HOST:$port/moto-api/data.json")"
        if [[ "$status" != 000 ]]; then
            echo "testbed: moto running on $HOST:$port (pid $pid, log .testbed/$(basename "$log"))"
            return 0
        fi
        sleep 0.5
    done
    kill "$pid" 2>/dev/null || true
    rm -f "$(pid_file "$port")"
    tail -n 20 "$log" >&2 || true
    die "moto did not answer on $HOST:$port within 30s (log: $log)"
}

cmd_stop() {
    local port pid i
    port="$(port_arg "${1:-}")"
    if ! pid="$(running_pid "$port")"; then
        rm -f "$(pid_file "$port")"
        echo "testbed: moto not running on port $port"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        echo "testbed: moto (pid $pid) ignored TERM, killed"
    fi
    rm -f "$(pid_file "$port")"
    echo "testbed: moto stopped on port $port"
}

cmd_status() {
    local port pid
    port="$(port_arg "${1:-}")"
    if pid="$(running_pid "$port")"; then
        echo "testbed: moto running on $HOST:$port (pid $pid)"
    else
        echo "testbed: moto not running on port $port"
        return 1
    fi
}

cmd_seed() {
    local port truth
    port="$DEFAULT_PORT"
    if [[ $# -gt 0 && "$1" != -* ]]; then
        port="$1"
        shift
    fi
    port="$(port_arg "$port")"
    truth="$STATE/truth.json"
    if [[ $# -gt 0 && "$1" != -* ]]; then
        truth="$1"
        shift
    fi
    require_venv
    exec "$PY" "$ROOT/scripts/seed.py" --endpoint "http://$HOST:$port" --truth "$truth" "$@"
}

cmd_reset() {
    local port status
    port="$(port_arg "${1:-}")"
    status="$(http_status POST "http://$HOST:$port/moto-api/reset")"
    [[ "$status" == 200 ]] || die "reset on $HOST:$port failed (HTTP $status)"
    echo "testbed: moto on $HOST:$port reset"
}

cmd_env() {
    local port
    port="$(port_arg "${1:-}")"
    cat <<EOF
export AWS_ENDPOINT_URL=http://$HOST:$port
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
EOF
}

main() {
    local cmd="${1:-}"
    [[ $# -gt 0 ]] && shift
    case "$cmd" in
        install) cmd_install "$@" ;;
        start) cmd_start "$@" ;;
        stop) cmd_stop "$@" ;;
        status) cmd_status "$@" ;;
        seed) cmd_seed "$@" ;;
        reset) cmd_reset "$@" ;;
        env) cmd_env "$@" ;;
        -h | --help | help)
            usage
            exit 0
            ;;
        *)
            usage
            exit 2
            ;;
    esac
}

main "$@"
