#!/usr/bin/env bash
# Installs the Debian packages Skiff's tests and the netns environment use:
# iproute2 and iptables (network namespaces, transparent mode) and chromium
# (the report-rendering check). Without root or apt it says what is missing
# and carries on: the tests that need them skip with one line.
set -euo pipefail

need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: ${need[*]} not installed (needs root and apt-get); the tests that use them will skip" >&2
  exit 0
fi
echo "installing Debian packages: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}"; } >/tmp/skiff-apt.log 2>&1; then
  echo "note: apt-get could not install ${need[*]} (log: /tmp/skiff-apt.log); the tests that use them will skip" >&2
fi
