#!/usr/bin/env bash
# What the test suite needs besides Rust and the moto test-bed (scripts/testbed.sh): promtool and amtool, from
# the Debian packages prometheus and prometheus-alertmanager, for the monitoring bundle's tests, and Debian's
# chromium, for the weekly report's checks in a headless browser.
#
# Does nothing when all three are there. Installs them when we are root on a Debian-like system (apt-get install
# first, apt-get update and again only if that fails); otherwise says what to install and exits 0 (the
# monitoring tests then say they are skipped, or fail under CI=true).
#
# Installing starts no service: while the packages install, a policy-rc.d (unless one exists) denies every
# start, so nothing is left listening on 9090 or 9093; on a machine booted with systemd the two services are
# also left disabled. Used by .ci/run and scripts/test.sh.
set -euo pipefail

packages=(prometheus prometheus-alertmanager chromium)

if command -v promtool >/dev/null 2>&1 && command -v amtool >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [[ "$(id -u)" -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "deps: promtool, amtool or chromium is missing: install the Debian packages ${packages[*]} (as root: scripts/deps.sh)" >&2
    exit 0
fi

policy=/usr/sbin/policy-rc.d
if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\n# Temporary (cloudwarden scripts/deps.sh): start no service while packages install.\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi

install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}"
}
echo "deps: installing ${packages[*]}"
if ! install; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    install
fi

if [[ -d /run/systemd/system ]]; then
    systemctl disable --now prometheus prometheus-alertmanager >/dev/null 2>&1 || true
fi
command -v promtool >/dev/null && command -v amtool >/dev/null && command -v chromium >/dev/null
echo "deps: $(promtool --version 2>&1 | head -n1); $(chromium --version 2>/dev/null | head -n1)"
