#!/usr/bin/env bash
# Local Kafka and Postgres for `make run` and `make test`.
#
# usage: scripts/services.sh up|down|status [kafka] [postgres]
# With no service named, acts on both.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

action="${1:-}"
shift || true
services=("$@")
[ ${#services[@]} -gt 0 ] || services=(kafka postgres)

case "$action" in
  up | down | status) ;;
  *) die "usage: scripts/services.sh up|down|status [kafka] [postgres]" ;;
esac

rc=0
for service in "${services[@]}"; do
  case "$service" in
    kafka | postgres) "$ROOT/scripts/$service.sh" "$action" || rc=$? ;;
    *) die "unknown service '$service' (expected kafka or postgres)" ;;
  esac
done
exit $rc
