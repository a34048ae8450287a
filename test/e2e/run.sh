#!/usr/bin/env bash
# End-to-end test with the real parts: a private Dovecot 2.3 running
# dovecot-conf/push-events.lua, the daemon, and a real Kafka broker.
#
# It runs the shared IMAP/LMTP scenario against Dovecot, waits until the
# daemon has had every line of the events file acknowledged by Kafka, dumps
# the three topics with kcat and compares them byte for byte with the
# expected captures:
#
#   python3 SHARED/golden/compare.py --exact EXPECTED ACTUAL
#
# for the topics dovecot, flags and feature. Exits non-zero on any
# mismatch or when a part cannot be started.
#
# Needs root (Dovecot runs mail processes as vmail), the packages that
# scripts/install-deps.sh installs, and a broker from scripts/kafka.sh
# start (KAFKA_BROKERS, default 127.0.0.1:19092). SHARED defaults to the
# shared/ folder beside the repository.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
shared=${SHARED:-$(cd "$repo/.." && pwd)/shared}
brokers=${KAFKA_BROKERS:-127.0.0.1:19092}
work=${E2E_DIR:-$(mktemp -d /tmp/dovecot-kafka-e2e.XXXXXX)}
imap_port=${IMAP_PORT:-10143}
lmtp_port=${LMTP_PORT:-10024}

# shellcheck source=test/e2e/lib.sh
. "$repo/test/e2e/lib.sh"
echo "e2e: working in $work"

echo "e2e: building the daemon"
(cd "$repo" && go build -o "$work/dovecot-kafka" .)

echo "e2e: starting Dovecot"
events="$work/dovecot/events/events.jsonl"
EVENTS_FILE="$events" IMAP_PORT=$imap_port LMTP_PORT=$lmtp_port \
	"$repo/scripts/dovecot-test.sh" start "$work/dovecot"

reference_config "$events" "" >"$work/dovecot-kafka.toml"

echo "e2e: starting the daemon"
"$work/dovecot-kafka" -config "$work/dovecot-kafka.toml" 2>"$work/daemon.log" &
daemon_pid=$!

echo "e2e: running the scenario"
python3 "$shared/scenario/imap_scenario.py" --imap-port "$imap_port" --lmtp-port "$lmtp_port" \
	--pause "${E2E_PAUSE:-0.1}" --settle 0.5 >"$work/scenario.log"
tail -n 1 "$work/scenario.log"

# Wait until the checkpoint covers the whole events file: then Kafka has
# acknowledged every record.
size=$(stat -c %s "$events")
lines=$(wc -l <"$events")
echo "e2e: the events file has $lines lines ($size bytes); waiting for the daemon"
for _ in $(seq 1 300); do
	offset=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["offset"])' "$work/state/checkpoint.json" 2>/dev/null || echo -1)
	[ "$offset" = "$size" ] && break
	sleep 0.1
done
if [ "$offset" != "$size" ]; then
	echo "e2e: the checkpoint is at $offset, not at the end of the file ($size)" >&2
	tail -n 20 "$work/daemon.log" >&2
	exit 1
fi

kill -TERM "$daemon_pid"
wait "$daemon_pid" || { echo "e2e: the daemon did not exit 0" >&2; exit 1; }
daemon_pid=""
if grep -q '"level":"error"' "$work/daemon.log"; then
	echo "e2e: the daemon logged errors:" >&2
	grep '"level":"error"' "$work/daemon.log" >&2
	exit 1
fi
if grep -Eq 'push-events:|Panic|Fatal' "$work/dovecot/log/dovecot.log"; then
	echo "e2e: Dovecot logged errors:" >&2
	grep -E 'push-events:|Panic|Fatal' "$work/dovecot/log/dovecot.log" >&2
	exit 1
fi

echo "e2e: capturing the topics"
status=0
compare_topics || status=1
if [ $status -eq 0 ]; then
	echo "e2e: MATCH for dovecot, flags and feature"
else
	echo "e2e: MISMATCH; captures and logs are in $work" >&2
fi
exit $status
