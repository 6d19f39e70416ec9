#!/usr/bin/env bash
# Debian's chromium, for the status page test (tests/integration/test_status_page.py),
# which loads / in a headless browser. Installed with apt-get when missing and we are
# root; anyone else gets the command to run, and the tests go on (that test is then
# skipped, or fails under CI=true).
#
# usage: scripts/browser.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

command -v chromium >/dev/null && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  say "browser: chromium not found; the status page test needs it: sudo apt-get install chromium"
  exit 0
fi
say "browser: installing Debian's chromium package"
# A fresh image has no package lists yet: update once, only when needed.
if ! apt-cache show chromium >/dev/null 2>&1; then
  apt-get update -qq
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
  || die "could not install chromium (apt-get install -y chromium)"
