#!/usr/bin/env bash
# Installs what the service tests need on a Debian machine (CI runs this as root before `make test`).
#   chromium           headless browser: tests/test_browser.py renders report.html and optuna-dashboard
#   fonts-dejavu-core  a font, so screenshots show text rather than boxes
set -euo pipefail
packages=(chromium fonts-dejavu-core)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]} == 0)); then
  echo "services: ${packages[*]} already installed"
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "services: run as root (or with sudo) to install: ${missing[*]}" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
echo "services: installed ${missing[*]}"
