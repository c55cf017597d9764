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
  "poppler-utils:pdftotext"            # tests turn report PDFs into text and PNGs
  "systemd:systemd-analyze"            # tests/integration/test_systemd_unit.py verifies conf/systemd/hub.service
  "chromium:chromium"                  # tests/browser drive it through Playwright (never its own browser download)
  "nats-server:nats-server"            # cluster mode: JetStream between edge and core nodes (hub.cluster)
  "haproxy:haproxy"                    # cluster tests: the L4 balancer in front of the edge nodes
  "nodejs:node"                        # OTA interop: node-coap as a client (tests/support/peers/node_coap, `npm ci` by the test)
  "npm:npm"
)
missing=()
for pair in "${NEEDED[@]}"; do
  pkg=${pair%%:*}; cmd=${pair##*:}
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/bin/$cmd" ] || [ -x "/usr/sbin/$cmd" ] || missing+=("$pkg")
done
# PostgreSQL (cluster mode's platform store, tests/support/postgres.py): its binaries are not
# on PATH on Debian, so look for the server where the package puts it
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || missing+=("postgresql")
# libraries and fonts (no command to look for): WeasyPrint's Pango and HarfBuzz, and a CJK
# font so that Chinese renders in report PDFs (hub.reports)
for pkg in libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-wqy-zenhei; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing Debian packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
