#!/usr/bin/env bash
# Local Kafka and Postgres for `make run` and `make test`, and Kafka Connect with the
# Debezium Postgres connector when asked for by name.
#
# usage: scripts/services.sh up|down|status [kafka] [postgres] [connect]
# With no service named, up and status act on kafka and postgres; down stops all three
# (connect first: it needs Kafka and Postgres to stop cleanly).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage="usage: scripts/services.sh up|down|status [kafka] [postgres] [connect]"
action="${1:-}"
shift || true
services=("$@")

case "$action" in
  up | status) [ ${#services[@]} -gt 0 ] || services=(kafka postgres) ;;
  down) [ ${#services[@]} -gt 0 ] || services=(connect kafka postgres) ;;
  *) die "$usage" ;;
esac

# Dependency order, whatever order they were named in: Connect needs Kafka and Postgres.
order=(postgres kafka connect)
[ "$action" = down ] && order=(connect kafka postgres)
for service in "${services[@]}"; do
  case "$service" in
    kafka | postgres | connect) ;;
    *) die "unknown service '$service' (expected kafka, postgres or connect)" ;;
  esac
done

rc=0
for service in "${order[@]}"; do
  [[ " ${services[*]} " == *" $service "* ]] || continue
  "$ROOT/scripts/$service.sh" "$action" || rc=$?
done
exit $rc
