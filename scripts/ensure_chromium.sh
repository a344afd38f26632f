#!/usr/bin/env bash
# The browser tests drive Debian's Chromium through Playwright (Playwright cannot download
# its own browsers here). Install it when missing and we are allowed to; otherwise say so.
set -euo pipefail
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  SUDO="sudo"
else
  echo "Chromium is missing at $CHROMIUM and this user cannot install it;" \
       "browser tests will be skipped (they fail under CI=true)." >&2
  exit 0
fi
if command -v apt-get >/dev/null; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
else
  echo "No apt-get here: install Chromium yourself or set CHROMIUM=/path/to/chromium." >&2
fi
