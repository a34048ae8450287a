#!/usr/bin/env bash
# dovecot-test.sh: start or stop a private Dovecot 2.3 instance that runs
# dovecot-conf/push-events.lua from this repository.
#
#   scripts/dovecot-test.sh start DIR    write DIR/dovecot.conf, start Dovecot
#   scripts/dovecot-test.sh stop DIR     stop it and wait until it is gone
#
# Everything lives under DIR: run/ (base_dir), state/, log/dovecot.log,
# mail/ (homes), users (passwd-file) and, by default, events/events.jsonl.
# Dovecot listens on 127.0.0.1 only, without SSL:
#
#   IMAP_PORT    IMAP port (default 10143)
#   LMTP_PORT    LMTP port (default 10024)
#   EVENTS_FILE  the script's events file (default DIR/events/events.jsonl;
#                not written with PUSH_EVENTS=exporter)
#   PUSH_EVENTS  "off" starts Dovecot without the push plugins and the
#                script, as a baseline for cost measurements; "exporter"
#                includes exporter-2.3.conf instead, whose
#                push_events_output = exporter makes the script send the
#                events to the event exporter; they then go to the
#                stats process's lines in DIR/log/dovecot.log (default on)
#   EXPORTER_FORMAT  with PUSH_EVENTS=exporter: the event exporter's format,
#                json or tab-text (default json)
#   MAIL_DEBUG   "yes" turns on Dovecot's mail_debug (default no)
#
# Users (password testpass): user-a@example.test (kafka_push=on,
# customer_id=1001, plan=gold), user-b@example.test (kafka_push=off),
# user-c@example.test (no extra fields). Mail processes run as the system
# user vmail, which is created if missing. Needs root; the system Dovecot
# (/etc/dovecot, its service) is left alone.
set -euo pipefail

usage() {
	echo "usage: $0 start|stop DIR" >&2
	exit 2
}

[ $# -eq 2 ] || usage
cmd=$1
dir=$2

repo=$(cd "$(dirname "$0")/.." && pwd)
template="$repo/test/dovecot/dovecot.conf.in"
script="$repo/dovecot-conf/push-events.lua"

imap_port=${IMAP_PORT:-10143}
lmtp_port=${LMTP_PORT:-10024}
push_events=${PUSH_EVENTS:-on}
exporter_format=${EXPORTER_FORMAT:-json}
mail_debug=${MAIL_DEBUG:-no}

if [ "$push_events" = exporter ]; then
	case $exporter_format in
	json | tab-text) ;;
	*)
		echo "EXPORTER_FORMAT must be json or tab-text, not $exporter_format" >&2
		exit 2
		;;
	esac
fi

# wait_imap waits up to 10 s for the IMAP greeting on 127.0.0.1.
wait_imap() {
	local greeting
	for _ in $(seq 1 100); do
		if exec 3<>"/dev/tcp/127.0.0.1/$imap_port" 2>/dev/null; then
			greeting=""
			read -r -t 2 greeting <&3 || true
			exec 3<&- 3>&-
			case $greeting in
			"* OK"*) return 0 ;;
			esac
		fi
		sleep 0.1
	done
	return 1
}

ensure_vmail() {
	if ! id -u vmail >/dev/null 2>&1; then
		useradd --system --user-group --no-create-home \
			--home-dir /nonexistent --shell /usr/sbin/nologin vmail
	fi
	if [ "$(id -u vmail)" -eq 0 ]; then
		echo "vmail must not have uid 0" >&2
		exit 1
	fi
}

# can_vmail_read checks that the mail processes (running as vmail) can read
# a path: they load the Lua script and write below DIR.
can_vmail_read() {
	runuser -u vmail -- test -r "$1"
}

start() {
	ensure_vmail
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	local conf="$dir/dovecot.conf"
	local events_file=${EVENTS_FILE:-$dir/events/events.jsonl}
	local events_dir
	events_dir=$(dirname "$events_file")

	if [ -f "$dir/run/master.pid" ] &&
		kill -0 "$(cat "$dir/run/master.pid")" 2>/dev/null; then
		echo "a Dovecot instance is already running in $dir" >&2
		exit 1
	fi

	# Only vmail writes the mail homes and the events directory; DIR itself
	# must be traversable (mktemp -d makes it 0700).
	chmod 0755 "$dir"
	if ! runuser -u vmail -- test -x "$dir"; then
		echo "vmail cannot reach $dir: a parent directory is not searchable (chmod o+x it)" >&2
		exit 1
	fi
	mkdir -p "$dir/run" "$dir/state" "$dir/log" "$dir/mail"
	chown vmail:vmail "$dir/mail"
	chmod 0750 "$dir/mail"
	# The events directory is made vmail's only if this script creates it;
	# an existing one (EVENTS_FILE elsewhere) must already be writable.
	if [ ! -d "$events_dir" ]; then
		mkdir -p "$events_dir"
		chown vmail:vmail "$events_dir"
		chmod 0750 "$events_dir"
	fi
	if ! runuser -u vmail -- test -w "$events_dir" -a -x "$events_dir"; then
		echo "vmail cannot write to $events_dir" >&2
		exit 1
	fi

	# The mail processes load the script as vmail; a copy under DIR keeps
	# that working wherever the repository lives (/root is not searchable).
	local installed
	installed="$dir/$(basename "$script")"
	install -m 0644 "$script" "$installed"
	script=$installed
	if ! can_vmail_read "$script"; then
		echo "vmail cannot read $script" >&2
		exit 1
	fi

	cat >"$dir/users" <<-'USERS'
	user-a@example.test:{PLAIN}testpass::::::userdb_kafka_push=on userdb_customer_id=1001 userdb_plan=gold
	user-b@example.test:{PLAIN}testpass::::::userdb_kafka_push=off
	user-c@example.test:{PLAIN}testpass::::::
	USERS
	chmod 0644 "$dir/users"

	local include driver
	if [ "$push_events" = off ]; then
		include="# (PUSH_EVENTS=off: push-events-2.3.conf not included)"
		driver="# (PUSH_EVENTS=off: no push_notification_driver)"
	elif [ "$push_events" = exporter ]; then
		# The shipped snippet, switched to tab-text when asked for: the
		# daemon's exporter_format must match the exporter's format.
		local snippet="$repo/dovecot-conf/exporter-2.3.conf"
		if [ "$exporter_format" = tab-text ]; then
			sed -e 's/^\(  format = \)json$/\1tab-text/' \
				-e 's/^\(  format_args = \)time-rfc3339$/\1time-unix/' \
				"$snippet" >"$dir/exporter-2.3.conf"
			snippet="$dir/exporter-2.3.conf"
		fi
		include="!include $snippet"
		driver="push_notification_driver = lua:file=$script"
	else
		include="!include $repo/dovecot-conf/push-events-2.3.conf"
		driver="push_notification_driver = lua:file=$script"
	fi
	sed -e "s|@DIR@|$dir|g" \
		-e "s|@IMAP_PORT@|$imap_port|g" \
		-e "s|@LMTP_PORT@|$lmtp_port|g" \
		-e "s|@EVENTS_FILE@|$events_file|g" \
		-e "s|@VMAIL_UID@|$(id -u vmail)|g" \
		-e "s|@MAIL_DEBUG@|$mail_debug|g" \
		-e "s|@PUSH_INCLUDE@|$include|g" \
		-e "s|@PUSH_DRIVER@|$driver|g" \
		"$template" >"$conf"

	dovecot -c "$conf"
	if ! wait_imap; then
		echo "Dovecot did not answer on 127.0.0.1:$imap_port; see $dir/log/dovecot.log" >&2
		exit 1
	fi
	if [ "$push_events" = exporter ]; then
		echo "Dovecot running: imap 127.0.0.1:$imap_port, lmtp 127.0.0.1:$lmtp_port, events in the stats lines of $dir/log/dovecot.log (push events exporter, $exporter_format)"
	else
		echo "Dovecot running: imap 127.0.0.1:$imap_port, lmtp 127.0.0.1:$lmtp_port, events $events_file (push events $push_events)"
	fi
}

stop() {
	dir=$(cd "$dir" && pwd)
	local conf="$dir/dovecot.conf"
	local pidfile="$dir/run/master.pid"
	if [ ! -f "$pidfile" ] || ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
		echo "no Dovecot instance running in $dir"
		return 0
	fi

	local pid
	pid=$(cat "$pidfile")
	dovecot -c "$conf" stop
	# The master exits after its children are gone.
	for _ in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || {
			echo "Dovecot stopped"
			return 0
		}
		sleep 0.1
	done
	echo "Dovecot (pid $pid) still running after 10 s" >&2
	exit 1
}

case $cmd in
start) start ;;
stop) stop ;;
*) usage ;;
esac
