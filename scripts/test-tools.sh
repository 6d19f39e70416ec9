#!/usr/bin/env bash
# Debian packages some integration tests drive, as a person would: chromium loads the
# status page (tests/integration/test_status_page.py); kcat, a Kafka client that can
# write what ours cannot, writes a header name that is not UTF-8
# (tests/integration/test_unreadable.py); promtool, from Debian's prometheus package,
# checks the alert rules and the dashboard's queries (tests/unit/test_monitoring.py).
# Installed with apt-get when missing and we are root; anyone else gets the command to
# run, and the tests go on (those tests are then skipped, or fail under CI=true).
#
# usage: scripts/test-tools.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v kcat >/dev/null || missing+=(kcat)
command -v promtool >/dev/null || missing+=(prometheus)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  say "test tools: ${missing[*]} not found; some tests need them: sudo apt-get install ${missing[*]}"
  exit 0
fi
say "test tools: installing Debian's ${missing[*]}"
# A fresh image has no package lists yet: update once, only when needed.
if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
  apt-get update -qq
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
  || die "could not install ${missing[*]} (apt-get install -y ${missing[*]})"
