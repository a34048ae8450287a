# shellcheck shell=bash
# lib.sh: what the end-to-end tests share. Sourced by run.sh and
# run-exporter.sh after they set repo, shared, brokers and work; it sets
# the topic names and a cleanup trap, and defines the reference drivers and
# the comparison with the expected captures.

for f in "$shared/scenario/imap_scenario.py" "$shared/golden/compare.py" "$shared/golden/expected/dovecot.jsonl"; do
	[ -f "$f" ] || { echo "e2e: $f is missing; set SHARED to the shared/ folder" >&2; exit 1; }
done

daemon_pid=""
e2e_cleanup() {
	if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
		kill -TERM "$daemon_pid" 2>/dev/null || true
		wait "$daemon_pid" 2>/dev/null || true
	fi
	"$repo/scripts/dovecot-test.sh" stop "$work/dovecot" >/dev/null 2>&1 || true
}
trap e2e_cleanup EXIT

chmod 0755 "$work" # Dovecot's mail processes (vmail) must reach the instance below it
mkdir -p "$work/out" "$work/state"

# A topic name per run keeps runs apart on a broker that is not fresh.
run_id=$(date +%s)
topic_dovecot="dovecot"
topic_flags="flags"
topic_feature="feature"
if [ "${E2E_FRESH_TOPICS:-1}" = 1 ]; then
	topic_dovecot="dovecot-$run_id"
	topic_flags="flags-$run_id"
	topic_feature="feature-$run_id"
fi

# reference_config prints the daemon's configuration for events file $1,
# with the lines in $2 added at the top level, and the three drivers of the
# reference setup, as the old driver's lines
#   push_notification_driver  = kafka:topic=dovecot
#   push_notification_driver2 = kafka:topic=flags events=FlagsClear,FlagsSet,MessageExpunge,MessageRead,MessageTrash keyword_prefix=$label send_flags=off
#   push_notification_driver3 = kafka:topic=feature feature=kafka_push userdb=customer_id,plan
reference_config() {
	cat <<CONF
events_file = "$1"
$2
checkpoint_file = "$work/state/checkpoint.json"
checkpoint_interval = "200ms"
log_format = "json"

[kafka]
brokers = "$brokers"

[[driver]]
topic = "$topic_dovecot"

[[driver]]
topic = "$topic_flags"
events = "FlagsClear,FlagsSet,MessageExpunge,MessageRead,MessageTrash"
keyword_prefix = "\$label"
send_flags = "off"

[[driver]]
topic = "$topic_feature"
feature = "kafka_push"
userdb = "customer_id,plan"
CONF
}

# compare_topics captures the three topics with kcat and compares each with
# its expected capture, byte for byte; it fails if any differs.
compare_topics() {
	python3 "$shared/scenario/capture_topics.py" --broker "$brokers" --out "$work/out" \
		"$topic_dovecot" "$topic_flags" "$topic_feature" >/dev/null
	local status=0 t var actual
	for t in dovecot flags feature; do
		var="topic_$t"
		actual="$work/out/${!var}.jsonl"
		echo "== $t"
		if ! python3 "$shared/golden/compare.py" --exact "$shared/golden/expected/$t.jsonl" "$actual"; then
			status=1
		fi
	done
	return $status
}
