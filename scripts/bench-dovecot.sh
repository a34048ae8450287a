#!/usr/bin/env bash
# bench-dovecot.sh: what push-events.lua costs Dovecot (make bench-dovecot).
#
# Runs scripts/bench-dovecot.py against a private Dovecot instance started
# without the push plugins (PUSH_EVENTS=off), with push-events.lua (on) and
# with the event exporter script (exporter), ROUNDS times each (default 3), alternating so that changes in machine load hit
# both alike, and prints every round's figures. Needs root.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
rounds=${ROUNDS:-3}
work=$(mktemp -d /tmp/dovecot-kafka-bench-dovecot.XXXXXX)
chmod 0755 "$work"
trap '"$repo/scripts/dovecot-test.sh" stop "$work/instance" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

for round in $(seq 1 "$rounds"); do
	for mode in off on exporter; do
		rm -rf "$work/instance"
		PUSH_EVENTS=$mode "$repo/scripts/dovecot-test.sh" start "$work/instance" >/dev/null
		echo "round $round, push events $mode:"
		python3 "$repo/scripts/bench-dovecot.py" --dir "$work/instance" | sed 's/^/  /'
		"$repo/scripts/dovecot-test.sh" stop "$work/instance" >/dev/null
	done
done
