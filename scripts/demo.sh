#!/usr/bin/env bash
# demo.sh: the main job on one machine, in one command (make demo).
#
# Builds the daemon, starts a local Kafka broker (scripts/kafka.sh), lets the
# daemon publish examples/events.jsonl (events recorded from a real Dovecot
# session) with the three drivers of examples/dovecot-kafka.toml, and prints
# every published record as topic, key and value. Stops everything after.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/dovecot-kafka-demo.XXXXXX)
export KAFKA_RUN=${KAFKA_RUN:-/tmp/dovecot-kafka-demo-broker.run}
export KAFKA_PORT=${KAFKA_PORT:-19092}
brokers="127.0.0.1:$KAFKA_PORT"

daemon_pid=""
cleanup() {
	[ -n "$daemon_pid" ] && kill -TERM "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
	"$repo/scripts/kafka.sh" stop >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

echo "demo: building"
(cd "$repo" && go build -o "$work/dovecot-kafka" .)

"$repo/scripts/kafka.sh" start

# The example configuration, pointed at a copy of the example events and at
# the local broker; topics get a suffix so that reruns start empty.
suffix=$(date +%s)
cp "$repo/examples/events.jsonl" "$work/events.jsonl"
sed -e "s|^events_file = .*|events_file = \"$work/events.jsonl\"|" \
	-e "s|^checkpoint_file = .*|checkpoint_file = \"$work/checkpoint.json\"|" \
	-e "s|^brokers = .*|brokers = \"$brokers\"|" \
	-e "s|^topic = \"\\(.*\\)\"|topic = \"\\1-$suffix\"|" \
	-e "s|^log_format = .*|log_format = \"console\"|" \
	"$repo/examples/dovecot-kafka.toml" >"$work/dovecot-kafka.toml"

echo "demo: publishing $(wc -l <"$work/events.jsonl") events from examples/events.jsonl"
"$work/dovecot-kafka" -config "$work/dovecot-kafka.toml" 2>"$work/daemon.log" &
daemon_pid=$!

size=$(stat -c %s "$work/events.jsonl")
for _ in $(seq 1 300); do
	offset=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["offset"])' "$work/checkpoint.json" 2>/dev/null || echo -1)
	[ "$offset" = "$size" ] && break
	sleep 0.1
done
kill -TERM "$daemon_pid"; wait "$daemon_pid" || true; daemon_pid=""
cat "$work/daemon.log"
if [ "$offset" != "$size" ]; then
	echo "demo: the daemon did not publish the whole file (checkpoint $offset of $size bytes)" >&2
	exit 1
fi

for t in dovecot flags feature; do
	echo
	echo "== topic $t-$suffix"
	printf 'partition\toffset\tkey\tvalue\n'
	kcat -b "$brokers" -C -t "$t-$suffix" -o beginning -e -q -f '%p\t%o\t%k\t%s\n'
done
