#!/usr/bin/env bash
# Debian packages some integration tests drive, as a person would: chromium loads the
# status page (tests/integration/test_status_page.py); kcat, a Kafka client that can
# write what ours cannot, writes a header name that is not UTF-8
# (tests/integration/test_unreadable.py). Installed with apt-get when missing and we are
# root; anyone else gets the command to run, and the tests go on (those tests are then
# skipped, or fail under CI=true).
# promtool checks the alert rules and the dashboard's queries (tests/unit/test_monitoring.py).
# It ships in Debian's prometheus package, whose installation would also start a
# Prometheus server (and recommend a node exporter) listening on every interface: the
# package is downloaded and only unpacked, into $CACHE/promtool, never installed.
#
# usage: scripts/test-tools.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v kcat >/dev/null || missing+=(kcat)

PROMTOOL_ROOT="$CACHE/promtool"
if ! command -v promtool >/dev/null && [ ! -x "$PROMTOOL_ROOT/usr/bin/promtool" ]; then
  say "test tools: unpacking promtool from Debian's prometheus package into $PROMTOOL_ROOT"
  apt-cache show prometheus >/dev/null 2>&1 || { [ "$(id -u)" = 0 ] && apt-get update -qq; }
  download="$(mktemp -d)"
  if (cd "$download" && apt-get download -qq prometheus >/dev/null 2>&1); then
    mkdir -p "$PROMTOOL_ROOT" && chmod 700 "$PROMTOOL_ROOT"
    dpkg-deb -x "$download"/prometheus_*.deb "$PROMTOOL_ROOT"
  else
    say "test tools: could not download Debian's prometheus package (apt-get download prometheus)"
  fi
  rm -rf "$download"
fi
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
