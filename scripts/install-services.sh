#!/usr/bin/env bash
# Install the Debian packages behind the service tests: a local SLURM cluster (slurm-wlm, munge),
# a throwaway PostgreSQL, and a headless browser for the report/dashboard checks.
# Run as root (CI does this before `make test`). Safe to run again: apt-get skips what is there.
#   scripts/install-services.sh            # everything
#   scripts/install-services.sh slurm      # only some groups: slurm, postgres, browser
set -euo pipefail

declare -A GROUPS_PACKAGES=(
    [slurm]="slurm-wlm munge"
    [postgres]="postgresql"
    [browser]="chromium chromium-driver fonts-liberation fonts-dejavu-core"
)

if [[ $(id -u) -ne 0 ]]; then
    echo "install-services.sh installs Debian packages: run it as root (or with sudo)." >&2
    exit 1
fi

groups=("$@")
[[ ${#groups[@]} -eq 0 ]] && groups=(slurm postgres browser)
packages=()
for group in "${groups[@]}"; do
    [[ -n ${GROUPS_PACKAGES[$group]:-} ]] || { echo "unknown group '$group' (slurm, postgres, browser)" >&2; exit 1; }
    read -ra more <<<"${GROUPS_PACKAGES[$group]}"
    packages+=("${more[@]}")
done

missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [[ ${#missing[@]} -eq 0 ]]; then
    echo "services: all installed (${packages[*]})"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
# Wait for another apt run (a colleague, unattended-upgrades) instead of failing on its lock.
apt_get=(apt-get -o DPkg::Lock::Timeout=600 -y -q)
"${apt_get[@]}" update
# Package scripts must not start daemons here: the local scripts start their own instances.
"${apt_get[@]}" install --no-install-recommends "${missing[@]}"
echo "services: installed ${missing[*]}"
