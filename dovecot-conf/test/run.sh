#!/usr/bin/env bash
# run.sh: tests for dovecot-conf/push-events.lua that need no Dovecot.
# Runs luacheck on dovecot-conf/ and the Lua tests (push_events_test.lua),
# then prints "N passed, M failed" over both; exits non-zero on a failure.
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
lua5.4 "$here/push_events_test.lua" "$conf_dir/push-events.lua" >"$out" 2>&1
status=$?
head -n -1 "$out" # its own summary line is folded into ours below

summary=$(tail -n 1 "$out")
if [[ $summary =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
	passed=$((passed + BASH_REMATCH[1]))
	failed=$((failed + BASH_REMATCH[2]))
else
	echo "FAIL push_events_test.lua ended without a summary (exit $status)"
	failed=$((failed + 1))
fi
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
	echo "FAIL push_events_test.lua exited with $status"
	failed=$((failed + 1))
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
