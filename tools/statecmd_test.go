package tools

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"dovecot-kafka/state"
)

func TestStateShow(t *testing.T) {
	e := newEnv(t, "127.0.0.1:1", testDrivers)
	lines := exampleLines(t)
	writeFile(t, e.events, lines[:100])
	size := offsetOf(lines, 100)

	// No checkpoint yet: all of the file is to be published.
	r := stateCmdRun(t, "-config", e.config)
	if r.code != ExitOK {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.errOut)
	}
	for _, s := range []string{"state        none yet", fmt.Sprintf("unpublished  %d bytes, 100 lines: all of %s", size, e.events), "lock         free"} {
		if !strings.Contains(r.out, s) {
			t.Errorf("show lacks %q:\n%s", s, r.out)
		}
	}

	// At line 60 of the current file.
	saveCheckpoint(t, e, "checkpoint.json", offsetOf(lines, 60))
	r = stateCmdRun(t, "show", "-config", e.config)
	for _, s := range []string{
		"path         " + e.events,
		fmt.Sprintf("offset       %d", offsetOf(lines, 60)),
		"is still the checkpoint's file",
		fmt.Sprintf("unpublished  %d bytes, 40 lines: from offset %d to the end of %s", size-offsetOf(lines, 60), offsetOf(lines, 60), e.events),
	} {
		if !strings.Contains(r.out, s) {
			t.Errorf("show lacks %q:\n%s", s, r.out)
		}
	}

	// Rotated: the rest of the old file plus all of the new one.
	if err := os.Rename(e.events, e.events+".1"); err != nil {
		t.Fatal(err)
	}
	writeFile(t, e.events, lines[100:])
	r = stateCmdRun(t, "-config", e.config, "show")
	want := fmt.Sprintf("unpublished  %d bytes, %d lines: from offset %d to the end of %s.1, plus all of %s",
		offsetOf(lines, len(lines))-offsetOf(lines, 60), len(lines)-60, offsetOf(lines, 60), e.events, e.events)
	if !strings.Contains(r.out, "the checkpoint's file is now "+e.events+".1 (rotated)") || !strings.Contains(r.out, want) {
		t.Errorf("show after rotation lacks %q:\n%s", want, r.out)
	}

	// Compressed and gone.
	if err := os.Remove(e.events + ".1"); err != nil {
		t.Fatal(err)
	}
	r = stateCmdRun(t, "-config", e.config)
	if !strings.Contains(r.out, "is not in "+e.spool+" any more") {
		t.Errorf("show with the file gone:\n%s", r.out)
	}

	// A daemon holds the lock.
	unlock, err := state.NewStore(e.checkpoint).Lock()
	if err != nil {
		t.Fatal(err)
	}
	r = stateCmdRun(t, "-config", e.config)
	unlock()
	if !strings.Contains(r.out, fmt.Sprintf("lock         held by process %d", os.Getpid())) {
		t.Errorf("show with the lock held:\n%s", r.out)
	}

	// A corrupt checkpoint is a problem.
	os.WriteFile(e.checkpoint, []byte("{"), 0o600)
	r = stateCmdRun(t, "-config", e.config)
	if r.code != ExitFailed || !strings.Contains(r.out, "unusable") {
		t.Errorf("corrupt: exit %d:\n%s", r.code, r.out)
	}
}

func TestStateSetOffset(t *testing.T) {
	e := newEnv(t, "127.0.0.1:1", testDrivers)
	lines := exampleLines(t)
	writeFile(t, e.events, lines)
	store := state.NewStore(e.checkpoint)
	off := offsetOf(lines, 42)

	r := stateCmdRun(t, "-config", e.config, "set-offset", strconv.FormatInt(off, 10))
	if r.code != ExitOK {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.errOut)
	}
	cp, err := store.Load()
	if err != nil || cp.Offset != off || cp.Path != e.events {
		t.Fatalf("checkpoint = %+v, %v; want offset %d", cp, err, off)
	}
	// The daemon resumes from it: it identifies the current file.
	r = stateCmdRun(t, "-config", e.config)
	if !strings.Contains(r.out, "is still the checkpoint's file") {
		t.Errorf("show after set-offset:\n%s", r.out)
	}

	// Not at a line start, or past the end: refused, with a hint.
	for _, bad := range []int64{off + 1, offsetOf(lines, len(lines)) + 1} {
		r = stateCmdRun(t, "-config", e.config, "set-offset", strconv.FormatInt(bad, 10))
		if r.code != ExitUsage || !strings.Contains(r.errOut, "set-offset") {
			t.Errorf("set-offset %d: exit %d, stderr:\n%s", bad, r.code, r.errOut)
		}
	}
	if !strings.Contains(r.errOut, "the largest offset is the file's size") {
		t.Errorf("no hint:\n%s", r.errOut)
	}
	r = stateCmdRun(t, "-config", e.config, "set-offset", strconv.FormatInt(off+1, 10))
	if !strings.Contains(r.errOut, fmt.Sprintf("the line there starts at %d, the next one at %d", off, offsetOf(lines, 43))) {
		t.Errorf("no hint:\n%s", r.errOut)
	}
	if cp, _ := store.Load(); cp.Offset != off {
		t.Errorf("a refused set-offset changed the checkpoint to %d", cp.Offset)
	}

	// With a daemon holding the lock: refused, unless -force.
	unlock, err := state.NewStore(e.checkpoint).Lock()
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	r = stateCmdRun(t, "-config", e.config, "set-offset", "0")
	if r.code != ExitFailed || !strings.Contains(r.errOut, "stop it first") {
		t.Errorf("locked: exit %d, stderr:\n%s", r.code, r.errOut)
	}
	if cp, _ := store.Load(); cp.Offset != off {
		t.Errorf("a refused set-offset changed the checkpoint to %d", cp.Offset)
	}
	r = stateCmdRun(t, "-config", e.config, "set-offset", "0", "-force")
	if r.code != ExitOK || !strings.Contains(r.errOut, "-force") {
		t.Errorf("locked, -force: exit %d, stderr:\n%s", r.code, r.errOut)
	}
	if cp, _ := store.Load(); cp.Offset != 0 {
		t.Errorf("set-offset -force: offset %d, want 0", cp.Offset)
	}
}

func TestStateSetTime(t *testing.T) {
	e := newEnv(t, "127.0.0.1:1", testDrivers)
	lines := exampleLines(t)
	writeFile(t, e.events, lines)
	store := state.NewStore(e.checkpoint)

	// The first line at 17:07:45Z.
	first := -1
	for i, l := range lines {
		if strings.Contains(l, `"time":1796404065,`) {
			first = i
			break
		}
	}
	r := stateCmdRun(t, "-config", e.config, "set-time", "2026-12-04T18:07:45+01:00")
	if r.code != ExitOK {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.errOut)
	}
	if cp, err := store.Load(); err != nil || cp.Offset != offsetOf(lines, first) {
		t.Errorf("checkpoint = %+v, %v; want offset %d (line %d)", cp, err, offsetOf(lines, first), first)
	}

	// After every event: the end of the file.
	r = stateCmdRun(t, "-config", e.config, "set-time", "2030-01-01T00:00:00Z")
	if r.code != ExitOK || !strings.Contains(r.errOut, "no line has an event time at or after") {
		t.Errorf("late time: exit %d, stderr:\n%s", r.code, r.errOut)
	}
	if cp, _ := store.Load(); cp.Offset != offsetOf(lines, len(lines)) {
		t.Errorf("offset %d, want the end %d", cp.Offset, offsetOf(lines, len(lines)))
	}

	r = stateCmdRun(t, "-config", e.config, "set-time", "10:00")
	if r.code != ExitUsage || !strings.Contains(r.errOut, "RFC 3339") {
		t.Errorf("bad time: exit %d, stderr:\n%s", r.code, r.errOut)
	}
}

func TestStateReset(t *testing.T) {
	e := newEnv(t, "127.0.0.1:1", testDrivers)
	writeFile(t, e.events, exampleLines(t))
	saveCheckpoint(t, e, "checkpoint.json", 0)
	store := state.NewStore(e.checkpoint)

	unlock, err := state.NewStore(e.checkpoint).Lock()
	if err != nil {
		t.Fatal(err)
	}
	r := stateCmdRun(t, "-config", e.config, "reset")
	if r.code != ExitFailed || !strings.Contains(r.errOut, "held by process") {
		t.Errorf("locked: exit %d, stderr:\n%s", r.code, r.errOut)
	}
	if _, err := store.Load(); err != nil {
		t.Errorf("a refused reset removed the checkpoint: %v", err)
	}
	unlock()

	r = stateCmdRun(t, "-config", e.config, "reset")
	if r.code != ExitOK {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.errOut)
	}
	if _, err := store.Load(); !errors.Is(err, state.ErrNoCheckpoint) {
		t.Errorf("after reset: %v", err)
	}
	r = stateCmdRun(t, "-config", e.config, "reset")
	if r.code != ExitOK || !strings.Contains(r.errOut, "nothing to remove") {
		t.Errorf("second reset: exit %d, stderr:\n%s", r.code, r.errOut)
	}
	// The lock was released: a daemon can start.
	if unlock, err := store.Lock(); err != nil {
		t.Errorf("Lock after reset: %v", err)
	} else {
		unlock()
	}
}

func TestStateBadArguments(t *testing.T) {
	e := newEnv(t, "127.0.0.1:1", testDrivers)
	for _, args := range [][]string{
		{"bogus"}, {"set-offset"}, {"set-offset", "x"}, {"show", "extra"}, {"reset", "now"},
	} {
		r := stateCmdRun(t, append([]string{"-config", e.config}, args...)...)
		if r.code != ExitUsage || !strings.Contains(r.errOut, "dovecot-kafka state:") {
			t.Errorf("%q: exit %d, stderr:\n%s", args, r.code, r.errOut)
		}
	}
	// The events file is missing.
	r := stateCmdRun(t, "-config", e.config, "set-offset", "0")
	if r.code != ExitFailed || !strings.Contains(r.errOut, "events_file") {
		t.Errorf("missing events file: exit %d, stderr:\n%s", r.code, r.errOut)
	}
}
