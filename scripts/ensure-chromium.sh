#!/usr/bin/env bash
# Chromium from the Debian packages, for the test that opens report.html in a real headless
# browser (tests/tasks/evaluation/test_report_browser.py). Installs it when missing (as root,
# with apt-get); otherwise says what to run. Nothing else is installed or changed.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "Chromium is missing: install Debian's 'chromium' package (sudo apt-get install chromium)" >&2
  exit 1
fi
echo "installing Chromium from the Debian packages" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
