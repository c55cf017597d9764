#!/usr/bin/env bash
# Debian packages the tests need (real brokers and databases, never mocks). Installs only
# what is missing; needs root or sudo. Called by `make test`.
set -euo pipefail
# package:command pairs: the command tells whether the package is already there
NEEDED=(
  "victoria-metrics:victoria-metrics"
  "mosquitto:mosquitto"
  "mosquitto-clients:mosquitto_pub"
  "libcoap3-bin:coap-client-notls"
  "systemd:systemd-analyze"            # tests/integration/test_systemd_unit.py verifies conf/systemd/hub.service
  "chromium:chromium"                  # tests/browser drive it through Playwright (never its own browser download)
)
missing=()
for pair in "${NEEDED[@]}"; do
  pkg=${pair%%:*}; cmd=${pair##*:}
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/bin/$cmd" ] || [ -x "/usr/sbin/$cmd" ] || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing Debian packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
