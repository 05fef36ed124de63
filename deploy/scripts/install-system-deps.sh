#!/usr/bin/env bash
# Installs what the local stack and the reports need from Debian's packages, if missing:
# Java and Maven (to fetch and run Apache Kafka), Prometheus, PostgreSQL, Chromium (PDF
# reports, and the tests that look at rendered pages), poppler-utils (PDF pages to PNG) and
# netcat (the MLLP example in docs/hospital-it.md, run by tests/docs).
# Idempotent; `apt-get update` runs only when something must be installed.
set -euo pipefail

missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
[ -x /usr/bin/prometheus ] || missing+=(prometheus)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v pdftoppm >/dev/null 2>&1 || missing+=(poppler-utils)
command -v nc >/dev/null 2>&1 || missing+=(netcat-openbsd)

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "missing system packages: ${missing[*]}; install them (sudo apt-get install ${missing[*]})" >&2
    exit 1
fi
echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d 101 keeps Debian from starting its own prometheus/postgresql services:
# the project starts its own instances on free loopback ports.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
