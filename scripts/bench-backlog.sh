#!/usr/bin/env bash
# bench-backlog.sh: time a backlog of realistic events from file to a real
# Kafka broker (make bench).
#
# Writes LINES lines (default 1,000,000) built from examples/events.jsonl
# (real push-events.lua output: every event type, 3 users) with users spread
# over 10,000 names and increasing uids, starts the daemon on the whole file
# with the three drivers of examples/dovecot-kafka.toml, and waits until the
# checkpoint covers the file, i.e. Kafka acknowledged every record. Prints
# events/s, CPU seconds per million events and the daemon's peak RSS.
#
# Needs a broker at KAFKA_BROKERS (default 127.0.0.1:19092; scripts/kafka.sh
# start). LINES sets the number of lines.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
brokers=${KAFKA_BROKERS:-127.0.0.1:19092}
lines=${LINES:-1000000}
work=$(mktemp -d /tmp/dovecot-kafka-bench.XXXXXX)
daemon_pid=""
cleanup() {
	[ -n "$daemon_pid" ] && kill -TERM "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

(cd "$repo" && go build -o "$work/dovecot-kafka" .)

python3 - "$repo/examples/events.jsonl" "$work/events.jsonl" "$lines" <<'PY'
import re, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
templates = [l.rstrip("\n") for l in open(src, encoding="utf-8") if l.strip()]
user_re = re.compile(r'"user":"[^"]*"')
uid_re = re.compile(r'"uid":\d+')
with open(dst, "w", encoding="utf-8") as out:
    for i in range(n):
        line = templates[i % len(templates)]
        line = user_re.sub('"user":"user-%d@example.test"' % (i % 10000), line, count=1)
        line = uid_re.sub('"uid":%d' % (i + 1), line, count=1)
        out.write(line + "\n")
PY
size=$(stat -c %s "$work/events.jsonl")

suffix=$(date +%s)
sed -e "s|^events_file = .*|events_file = \"$work/events.jsonl\"|" \
	-e "s|^checkpoint_file = .*|checkpoint_file = \"$work/checkpoint.json\"|" \
	-e "s|^brokers = .*|brokers = \"$brokers\"|" \
	-e "s|^topic = \"\\(.*\\)\"|topic = \"bench-\\1-$suffix\"|" \
	-e "s|^log_format = .*|log_format = \"json\"|" \
	-e "s|^checkpoint_interval = .*|checkpoint_interval = \"100ms\"|" \
	"$repo/examples/dovecot-kafka.toml" >"$work/dovecot-kafka.toml"

# Create the topics first so that topic creation is not timed.
for t in dovecot flags feature; do
	"$repo/scripts/kafka.sh" create-topic "bench-$t-$suffix" 3 >/dev/null
done

echo "bench: $lines lines, $((size / 1024 / 1024)) MiB, three drivers"
start_ns=$(date +%s%N)
# DAEMON_ARGS adds flags, e.g. DAEMON_ARGS="-cpuprofile /tmp/cpu.pprof".
# shellcheck disable=SC2086
"$work/dovecot-kafka" -config "$work/dovecot-kafka.toml" ${DAEMON_ARGS:-} 2>"$work/daemon.log" &
daemon_pid=$!

clk=$(getconf CLK_TCK)
offset=-1
while :; do
	offset=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["offset"])' "$work/checkpoint.json" 2>/dev/null || echo -1)
	[ "$offset" = "$size" ] && break
	if ! kill -0 "$daemon_pid" 2>/dev/null; then
		echo "bench: the daemon died" >&2; tail "$work/daemon.log" >&2; exit 1
	fi
	sleep 0.05
done
end_ns=$(date +%s%N)
# CPU time and peak RSS of the daemon before it stops.
read -r utime stime < <(awk '{print $14, $15}' "/proc/$daemon_pid/stat")
hwm_kb=$(awk '/VmHWM/ {print $2}' "/proc/$daemon_pid/status")
kill -TERM "$daemon_pid"; wait "$daemon_pid" || true; daemon_pid=""

python3 - "$lines" "$start_ns" "$end_ns" "$utime" "$stime" "$clk" "$hwm_kb" "$work/daemon.log" <<'PY'
import json, sys
n, t0, t1, ut, st, clk, hwm, log = sys.argv[1:]
n = int(n); secs = (int(t1) - int(t0)) / 1e9
cpu = (int(ut) + int(st)) / int(clk)
records = 0
for line in open(log):
    try:
        rec = json.loads(line)
    except ValueError:
        continue
    records = rec.get("records_delivered", records)
print("bench: events=%d records=%d wall_s=%.2f events_per_s=%.0f cpu_s_per_million_events=%.2f peak_rss_mib=%.1f"
      % (n, records, secs, n / secs, cpu / n * 1e6, int(hwm) / 1024))
PY
