#!/usr/bin/env bash
# Debian packages the tests and make targets use (Prometheus + promtool, nginx as the front door,
# redis-server for the shopper profile store, haproxy for `make replicas`, kubectl to render
# deploy/kubernetes/, chromium to render the explanation page in a test).
# Installs only what is missing; without root (or sudo) or apt-get it prints what is missing and
# exits 0, so the tests that need a package skip with the reason instead.
set -uo pipefail
declare -A PACKAGE_OF=([prometheus]=prometheus [promtool]=prometheus [nginx]=nginx-light [redis-server]=redis-server [haproxy]=haproxy [kubectl]=kubernetes-client [chromium]=chromium)
missing=()
for tool in "${!PACKAGE_OF[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing+=("${PACKAGE_OF[$tool]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
if ! command -v apt-get >/dev/null 2>&1; then
  echo "system packages missing (no apt-get here): ${missing[*]}; the tests that need them will skip"; exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "system packages missing and no root/sudo: ${missing[*]}; the tests that need them will skip"; exit 0
  fi
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Debian's packages would start their own services where systemd runs; we start them ourselves.
$SUDO apt-get update -qq >/dev/null 2>&1 || true
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
  || echo "apt-get install failed for: ${missing[*]}; the tests that need them will skip"
exit 0
