#!/usr/bin/env bash
# Install Debian's STILTS (for `stilts taplint`, the TAP validator the archive tests run), if missing.
set -euo pipefail
need=()
command -v stilts >/dev/null 2>&1 || need+=(stilts)
. "$(dirname "$0")/apt.sh"
apt_install_missing stilts.sh ${need[@]+"${need[@]}"}
