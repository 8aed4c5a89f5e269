#!/usr/bin/env bash
# Install Debian's headless-capable Chromium and its WebDriver for the web UI tests, if missing.
# The browser tests use /usr/bin/chromium and /usr/bin/chromedriver and install nothing themselves.
set -euo pipefail
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
. "$(dirname "$0")/apt.sh"
apt_install_missing chromium.sh ${need[@]+"${need[@]}"}
