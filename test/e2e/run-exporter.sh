#!/usr/bin/env bash
# End-to-end test of the event exporter input with the real parts: a private
# Dovecot 2.3 running dovecot-conf/push-events.lua (exporter output) with
# exporter-2.3.conf (log transport), the daemon with input = "exporter-log"
# following Dovecot's log, and a real Kafka broker.
#
# Phase 1 runs the shared IMAP/LMTP scenario, waits until the daemon has
# had every event of the log acknowledged by Kafka, dumps the three topics
# with kcat and compares them byte for byte with the expected captures:
#
#   python3 SHARED/golden/compare.py --exact EXPECTED ACTUAL
#
# for the topics dovecot, flags and feature. Phase 2 delivers a message
# whose subject the log transport cuts at 1000 bytes and checks that it
# lands in the dead-letter file, and nowhere in Kafka (the topics still
# match). Exits non-zero on any mismatch or when a part cannot be started.
#
# EXPORTER_FORMAT=tab-text runs the exporter and the daemon with the
# tab-text format instead of JSON. Needs root (Dovecot runs mail processes
# as vmail), the packages that scripts/install-deps.sh installs, and a broker
# from scripts/kafka.sh start (KAFKA_BROKERS, default 127.0.0.1:19092).
# SHARED defaults to the shared/ folder beside the repository.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
shared=${SHARED:-$(cd "$repo/.." && pwd)/shared}
brokers=${KAFKA_BROKERS:-127.0.0.1:19092}
work=${E2E_DIR:-$(mktemp -d /tmp/dovecot-kafka-e2e-exporter.XXXXXX)}
imap_port=${IMAP_PORT:-10143}
lmtp_port=${LMTP_PORT:-10024}
format=${EXPORTER_FORMAT:-json}

# shellcheck source=test/e2e/lib.sh
. "$repo/test/e2e/lib.sh"
echo "e2e: working in $work"

echo "e2e: building the daemon"
(cd "$repo" && go build -o "$work/dovecot-kafka" .)

echo "e2e: starting Dovecot"
PUSH_EVENTS=exporter EXPORTER_FORMAT=$format IMAP_PORT=$imap_port LMTP_PORT=$lmtp_port \
	"$repo/scripts/dovecot-test.sh" start "$work/dovecot"
# The exporter's log transport writes to Dovecot's log: the daemon follows
# it, skipping every line that is not one of the script's events.
log="$work/dovecot/log/dovecot.log"

reference_config "$log" "$(printf 'input = "exporter-log"\nexporter_format = "%s"' "$format")" >"$work/dovecot-kafka.toml"

echo "e2e: starting the daemon"
"$work/dovecot-kafka" -config "$work/dovecot-kafka.toml" 2>"$work/daemon.log" &
daemon_pid=$!

# last_event_end prints the offset just past the last line of the stats
# process in the log: the exporter's last event. Other processes go on
# logging after it, so the checkpoint stops there, not at the end of the
# file.
last_event_end() {
	python3 - "$log" <<'PY'
import sys
end = off = 0
with open(sys.argv[1], "rb") as f:
    for line in f:
        off += len(line)
        if b" stats: Info: " in line and line.endswith(b"\n"):
            end = off
print(end)
PY
}

# wait_checkpoint waits until the checkpoint reaches the last event.
wait_checkpoint() {
	local want offset=-1
	want=$(last_event_end)
	for _ in $(seq 1 300); do
		offset=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["offset"])' "$work/state/checkpoint.json" 2>/dev/null || echo -1)
		[ "$offset" = "$want" ] && return 0
		sleep 0.1
	done
	echo "e2e: the checkpoint is at $offset, not at the last event's end ($want)" >&2
	tail -n 20 "$work/daemon.log" >&2
	return 1
}

echo "e2e: running the scenario"
python3 "$shared/scenario/imap_scenario.py" --imap-port "$imap_port" --lmtp-port "$lmtp_port" \
	--pause "${E2E_PAUSE:-0.1}" --settle 0.5 >"$work/scenario.log"
tail -n 1 "$work/scenario.log"
# The exporter's events reach the log through the stats process: give the
# last ones a moment before taking the log's last event as the target.
sleep 1
events=$(grep -c ' stats: Info: ' "$log" || true)
echo "e2e: the log has $(wc -l <"$log") lines, $events of them the exporter's; waiting for the daemon"
wait_checkpoint

echo "e2e: capturing the topics"
status=0
compare_topics || status=1

echo "e2e: a subject longer than 1000 bytes, which the log transport cuts"
python3 - "$lmtp_port" <<'PY'
import smtplib, sys
msg = ("From: a@example.test\r\nTo: user-a@example.test\r\n"
       "Subject: " + "long " * 300 + "\r\n"
       "Date: Tue, 05 Mar 2024 09:15:00 +0530\r\n\r\nbody\r\n").encode()
s = smtplib.LMTP("127.0.0.1", int(sys.argv[1]))
s.sendmail("a@example.test", ["user-a@example.test"], msg)
s.quit()
PY
sleep 1
wait_checkpoint
dead="$work/state/dead-letter.jsonl"
# The entry's line is the message as Dovecot wrote it; its reason says why
# (once pipeline classifies exporter.ErrTruncated: "truncated by Dovecot's
# log transport").
if ! [ -s "$dead" ] || ! grep -q 'dovecot_kafka_event' "$dead"; then
	echo "e2e: the cut event is not in the dead-letter file $dead" >&2
	status=1
else
	echo "e2e: dead-lettered: $(python3 -c 'import json,sys; d=json.loads(open(sys.argv[1]).readline()); print(d["offset"], d["reason"], "-", d.get("error", ""))' "$dead")"
fi
echo "e2e: the topics again (the cut event must not be in them)"
compare_topics || status=1

kill -TERM "$daemon_pid"
wait "$daemon_pid" || { echo "e2e: the daemon did not exit 0" >&2; exit 1; }
daemon_pid=""
grep '"message":"summary"' "$work/daemon.log" | tail -n 1 || true
if grep -q '"level":"error"' "$work/daemon.log"; then
	echo "e2e: the daemon logged errors:" >&2
	grep '"level":"error"' "$work/daemon.log" >&2
	exit 1
fi
if grep -Eq 'push-events-exporter:|Panic|Fatal' "$log"; then
	echo "e2e: Dovecot logged errors:" >&2
	grep -E 'push-events-exporter:|Panic|Fatal' "$log" >&2
	exit 1
fi

if [ $status -eq 0 ]; then
	echo "e2e: MATCH for dovecot, flags and feature (exporter, $format); the cut event was dead-lettered"
else
	echo "e2e: MISMATCH; captures and logs are in $work" >&2
fi
exit $status
