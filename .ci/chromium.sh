#!/usr/bin/env bash
# Install Debian's headless-capable Chromium and its WebDriver for the web UI tests, if missing.
# The browser tests use /usr/bin/chromium and /usr/bin/chromedriver and install nothing themselves.
set -euo pipefail
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
if [ "${#need[@]}" -gt 0 ]; then
  echo "chromium.sh: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq "${need[@]}" >&2; then
    apt-get update -qq >&2
    apt-get install -y -qq "${need[@]}" >&2
  fi
fi
