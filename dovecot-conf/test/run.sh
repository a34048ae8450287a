#!/usr/bin/env bash
# run.sh: tests for dovecot-conf/push-events.lua that need no Dovecot.
# Runs luacheck on dovecot-conf/ and the Lua tests (push_events_test.lua
# for the file output, push_events_exporter_test.lua for the exporter
# output), then prints "N passed, M failed" over all; exits non-zero on a
# failure.
# Needs lua5.4 and luacheck.
set -u

here=$(cd "$(dirname "$0")" && pwd)
conf_dir=$(dirname "$here")

passed=0
failed=0

# luacheck reads .luacheckrc from the current directory.
if (cd "$conf_dir" && luacheck --no-color .); then
	passed=$((passed + 1))
	echo "ok   luacheck dovecot-conf/"
else
	failed=$((failed + 1))
	echo "FAIL luacheck dovecot-conf/"
fi

out=$(mktemp)
trap 'rm -f "$out"' EXIT

# run_lua_tests TEST SCRIPT runs one Lua test file against its script and
# folds its "N passed, M failed" summary into ours.
run_lua_tests() {
	local test=$1 script=$2 status summary file_failed=1
	lua5.4 "$here/$test" "$conf_dir/$script" >"$out" 2>&1
	status=$?
	head -n -1 "$out" # its own summary line is folded into ours below

	summary=$(tail -n 1 "$out")
	if [[ $summary =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
		passed=$((passed + BASH_REMATCH[1]))
		file_failed=${BASH_REMATCH[2]}
		failed=$((failed + file_failed))
	else
		echo "FAIL $test ended without a summary (exit $status)"
		failed=$((failed + 1))
	fi
	if [ "$status" -ne 0 ] && [ "$file_failed" -eq 0 ]; then
		echo "FAIL $test exited with $status"
		failed=$((failed + 1))
	fi
}

run_lua_tests push_events_test.lua push-events.lua
run_lua_tests push_events_exporter_test.lua push-events.lua

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
