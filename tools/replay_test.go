package tools

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"dovecot-kafka/follow"
	"dovecot-kafka/state"
)

func TestReplayDryRunWholeFile(t *testing.T) {
	e := newEnv(t, "127.0.0.1:1", testDrivers)
	lines := exampleLines(t)
	writeFile(t, e.events, lines)

	r := replay(t, "-config", e.config, "-dry-run", e.events)
	if r.code != ExitOK {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.errOut)
	}
	diffLines(t, r.out, render(t, e.config, lines, ""))
	// Every record line is topic, key, value.
	for _, l := range strings.Split(strings.TrimSuffix(r.out, "\n"), "\n") {
		f := strings.Split(l, "\t")
		if len(f) != 3 || !strings.HasPrefix(f[2], `{"user":"`+f[1]+`"`) {
			t.Fatalf("malformed dry-run line %q", l)
		}
	}
	want := fmt.Sprintf("replay: 159 events read, %d records printed (dry run), 42 events skipped by filter, 0 bad lines", strings.Count(r.out, "\n"))
	if !strings.Contains(r.errOut, want) {
		t.Errorf("summary missing %q in:\n%s", want, r.errOut)
	}
}

func TestReplayOffsetRange(t *testing.T) {
	e := newEnv(t, "127.0.0.1:1", testDrivers)
	lines := exampleLines(t)
	writeFile(t, e.events, lines)

	from, to := offsetOf(lines, 10), offsetOf(lines, 40)
	r := replay(t, "-config", e.config, "-dry-run", "-from", strconv.FormatInt(from, 10), "-to", strconv.FormatInt(to, 10), e.events)
	if r.code != ExitOK {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.errOut)
	}
	diffLines(t, r.out, render(t, e.config, lines[10:40], ""))
	if !strings.Contains(r.errOut, "replay: 30 events read") {
		t.Errorf("summary does not count 30 events:\n%s", r.errOut)
	}
}

func TestReplayTimeRange(t *testing.T) {
	e := newEnv(t, "127.0.0.1:1", testDrivers)
	lines := exampleLines(t)
	writeFile(t, e.events, lines)

	from := time.Unix(1796404060, 0).UTC()
	to := time.Unix(1796404066, 0).In(time.FixedZone("CET", 3600)) // any zone works
	var want []string
	for _, l := range lines {
		ts, _ := strconv.ParseInt(strings.SplitN(strings.SplitN(l, `"time":`, 2)[1], ",", 2)[0], 10, 64)
		if ts >= from.Unix() && ts < to.Unix() {
			want = append(want, l)
		}
	}
	if len(want) == 0 || len(want) == len(lines) {
		t.Fatalf("bad test range: %d of %d lines", len(want), len(lines))
	}

	r := replay(t, "-config", e.config, "-dry-run", "-from", from.Format(time.RFC3339), "-to", to.Format(time.RFC3339), e.events)
	if r.code != ExitOK {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.errOut)
	}
	diffLines(t, r.out, render(t, e.config, want, ""))
	for _, s := range []string{"first line with an event time at or after it", "stopping before", fmt.Sprintf("replay: %d events read", len(want))} {
		if !strings.Contains(r.errOut, s) {
			t.Errorf("stderr lacks %q:\n%s", s, r.errOut)
		}
	}

	// A start after every event: nothing, and it says so.
	r = replay(t, "-config", e.config, "-dry-run", "-from", "2030-01-01T00:00:00Z", e.events)
	if r.code != ExitOK || r.out != "" || !strings.Contains(r.errOut, "nothing to replay") {
		t.Errorf("late -from: exit %d, %d bytes out, stderr:\n%s", r.code, len(r.out), r.errOut)
	}
}

// rotated builds three generations of examples/events.jsonl: lines
// [0,50) in events.jsonl.2.gz, [50,100) in events.jsonl.1, the rest in
// events.jsonl. cp1 is a checkpoint taken in events.jsonl.1 while it was
// still events.jsonl, at line 70; cp2 one taken in events.jsonl.2 before
// it was compressed, at line 20.
func rotated(t *testing.T, e *env) (lines []string, files []string, cp1, cp2 string) {
	t.Helper()
	lines = exampleLines(t)
	gen2, gen1 := e.events+".2", e.events+".1"

	// Generation 2, checkpointed, then rotated and compressed (which
	// gives the content a new inode).
	writeFile(t, e.events, lines[:50])
	cp2 = saveCheckpoint(t, e, "cp2.json", offsetOf(lines[:50], 20))
	if err := os.Rename(e.events, gen2); err != nil {
		t.Fatal(err)
	}
	writeGzip(t, gen2+".gz", lines[:50])
	if err := os.Remove(gen2); err != nil {
		t.Fatal(err)
	}

	// Generation 1, checkpointed, then rotated by rename.
	writeFile(t, e.events, lines[50:100])
	cp1 = saveCheckpoint(t, e, "cp1.json", offsetOf(lines[50:100], 20))
	if err := os.Rename(e.events, gen1); err != nil {
		t.Fatal(err)
	}
	writeFile(t, e.events, lines[100:])
	return lines, []string{gen2 + ".gz", gen1, e.events}, cp1, cp2
}

// saveCheckpoint saves a checkpoint at off in the file now at events_file,
// as the daemon would, and returns its path.
func saveCheckpoint(t *testing.T, e *env, name string, off int64) string {
	t.Helper()
	id, _, err := follow.Identify(e.events)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(e.lib, name)
	cp := state.FromPosition(follow.Position{Path: e.events, File: id, Offset: off})
	if err := state.NewStore(path).Save(cp); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestReplayFromCheckpointAcrossRotation(t *testing.T) {
	e := newEnv(t, "127.0.0.1:1", testDrivers)
	lines, files, cp1, cp2 := rotated(t, e)

	// The checkpoint names the renamed generation: matched by inode.
	args := append([]string{"-config", e.config, "-dry-run", "-from", "checkpoint:" + cp1}, files...)
	r := replay(t, args...)
	if r.code != ExitOK {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.errOut)
	}
	diffLines(t, r.out, render(t, e.config, lines[70:], ""))
	if !strings.Contains(r.errOut, "matched "+files[1]+" by device and inode") {
		t.Errorf("stderr does not say how the file was chosen:\n%s", r.errOut)
	}

	// The checkpoint names a generation compressed since: matched by its
	// first bytes, read through gzip, then on into the later files.
	args = append([]string{"-config", e.config, "-dry-run", "-from", "checkpoint:" + cp2}, files...)
	r = replay(t, args...)
	if r.code != ExitOK {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.errOut)
	}
	diffLines(t, r.out, render(t, e.config, lines[20:], ""))
	if !strings.Contains(r.errOut, "matched "+files[0]+" by content") {
		t.Errorf("stderr does not say how the file was chosen:\n%s", r.errOut)
	}

	// Both ends by checkpoint: from the compressed generation up to the
	// renamed one.
	args = append([]string{"-config", e.config, "-dry-run", "-from", "checkpoint:" + cp2, "-to", "checkpoint:" + cp1}, files...)
	r = replay(t, args...)
	if r.code != ExitOK {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.errOut)
	}
	diffLines(t, r.out, render(t, e.config, lines[20:70], ""))

	// An offset into the compressed first file, and a time bound across
	// all three.
	args = append([]string{"-config", e.config, "-dry-run", "-from", strconv.FormatInt(offsetOf(lines, 30), 10)}, files...)
	r = replay(t, args...)
	if r.code != ExitOK {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.errOut)
	}
	diffLines(t, r.out, render(t, e.config, lines[30:], ""))

	// The checkpoint's file is not among those given.
	r = replay(t, "-config", e.config, "-dry-run", "-from", "checkpoint:"+cp1, e.events)
	if r.code != ExitUsage || !strings.Contains(r.errOut, "none of the files given") {
		t.Errorf("missing checkpoint file: exit %d, stderr:\n%s", r.code, r.errOut)
	}
}

func TestReplayDriverAndTopic(t *testing.T) {
	e := newEnv(t, "127.0.0.1:1", testDrivers)
	lines := exampleLines(t)
	writeFile(t, e.events, lines)

	r := replay(t, "-config", e.config, "-dry-run", "-driver", "flags", e.events)
	if r.code != ExitOK {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.errOut)
	}
	var want strings.Builder
	for _, l := range strings.SplitAfter(render(t, e.config, lines, ""), "\n") {
		if strings.HasPrefix(l, "flags\t") {
			want.WriteString(l)
		}
	}
	if want.Len() == 0 {
		t.Fatal("no flags records in the example")
	}
	diffLines(t, r.out, want.String())

	r = replay(t, "-config", e.config, "-dry-run", "-topic", "recovery", e.events)
	if r.code != ExitOK {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.errOut)
	}
	diffLines(t, r.out, render(t, e.config, lines, "recovery"))

	r = replay(t, "-config", e.config, "-dry-run", "-driver", "feature", "-topic", "recovery", e.events)
	n := strings.Count(render(t, e.config, lines, ""), "feature\t")
	if r.code != ExitOK || n == 0 || strings.Count(r.out, "recovery\t") != n || strings.Count(r.out, "\n") != n {
		t.Errorf("-driver feature -topic recovery: exit %d, %d lines, want %d", r.code, strings.Count(r.out, "\n"), n)
	}

	r = replay(t, "-config", e.config, "-dry-run", "-driver", "nope", e.events)
	if r.code != ExitUsage || !strings.Contains(r.errOut, "dovecot, flags, feature") {
		t.Errorf("unknown driver: exit %d, stderr:\n%s", r.code, r.errOut)
	}
}

func TestReplayBadLines(t *testing.T) {
	e := newEnv(t, "127.0.0.1:1", testDrivers)
	lines := exampleLines(t)
	bad := []string{lines[0], "not json\n", lines[1], `{"v":1,"time":1,"user":"u","event":"Nope","mailbox":"INBOX"}` + "\n", lines[2], `{"v":1,"time":5,"user":"u","event":"MessageRead"`}
	writeFile(t, e.events, bad)

	r := replay(t, "-config", e.config, "-dry-run", e.events)
	if r.code != ExitOK {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.errOut)
	}
	diffLines(t, r.out, render(t, e.config, lines[:3], ""))
	for _, s := range []string{
		fmt.Sprintf("bad line in %s at offset %d", e.events, len(lines[0])),
		fmt.Sprintf("bad line in %s at offset %d", e.events, offsetOf(bad, 3)),
		fmt.Sprintf("incomplete last line at offset %d", offsetOf(bad, 5)),
		"5 events read", "2 bad lines",
	} {
		if !strings.Contains(r.errOut, s) {
			t.Errorf("stderr lacks %q:\n%s", s, r.errOut)
		}
	}
}

func TestReplayLongLine(t *testing.T) {
	e := newEnv(t, "127.0.0.1:1", testDrivers+"\n")
	cfg, _ := os.ReadFile(e.config)
	os.WriteFile(e.config, []byte("max_line_bytes = 300\n"+string(cfg)), 0o644)
	var lines []string // a long line between two short ones
	for _, l := range exampleLines(t) {
		if len(lines) != 1 && len(l) < 300 || len(lines) == 1 && len(l) > 300 {
			lines = append(lines, l)
		}
		if len(lines) == 3 {
			break
		}
	}
	writeFile(t, e.events, lines)

	r := replay(t, "-config", e.config, "-dry-run", e.events)
	if r.code != ExitOK {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.errOut)
	}
	if !strings.Contains(r.errOut, "longer than max_line_bytes (300)") || !strings.Contains(r.errOut, "3 events read") {
		t.Errorf("stderr:\n%s", r.errOut)
	}
	diffLines(t, r.out, render(t, e.config, []string{lines[0], lines[2]}, ""))
}

func TestReplayBadArguments(t *testing.T) {
	e := newEnv(t, "127.0.0.1:1", testDrivers)
	lines := exampleLines(t)
	writeFile(t, e.events, lines)
	mid := strconv.FormatInt(offsetOf(lines, 5)+3, 10)
	cfg, _ := os.ReadFile(e.config)
	exporter := filepath.Join(e.dir, "exporter.toml")
	os.WriteFile(exporter, append([]byte("input = \"exporter-file\"\n"), cfg...), 0o644)

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no files", []string{"-config", e.config}, "name the events files"},
		{"missing file", []string{"-config", e.config, e.events + ".9"}, "no such file"},
		{"bad config", []string{"-config", e.events, e.events}, "read config"},
		{"mid-line offset", []string{"-config", e.config, "-from", mid, e.events}, "not at the start of a line (the byte before it is not a newline; the line there starts at " + strconv.FormatInt(offsetOf(lines, 5), 10)},
		{"past the end", []string{"-config", e.config, "-to", "99999999", e.events}, "past the end of the file"},
		{"bad position", []string{"-config", e.config, "-from", "yesterday", e.events}, "RFC 3339"},
		{"to before from", []string{"-config", e.config, "-from", strconv.FormatInt(offsetOf(lines, 9), 10), "-to", strconv.FormatInt(offsetOf(lines, 3), 10), e.events}, "before -from"},
		{"times reversed", []string{"-config", e.config, "-from", "2026-12-04T18:00:00Z", "-to", "2026-12-04T17:00:00Z", e.events}, "not after -from"},
		{"missing checkpoint", []string{"-config", e.config, "-from", "checkpoint:" + e.checkpoint, e.events}, "no checkpoint file"},
		{"unknown flag", []string{"-config", e.config, "-bogus", e.events}, "flag provided but not defined"},
		{"bad topic", []string{"-config", e.config, "-topic", "a/b", e.events}, "Kafka topic name"},
		{"negative timeout", []string{"-config", e.config, "-delivery-timeout", "-1s", e.events}, "-delivery-timeout -1s"},
		{"exporter input", []string{"-config", exporter, e.events}, "reads only the format of push-events.lua"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := replay(t, append(tt.args, "-dry-run")...)
			if r.code != ExitUsage {
				t.Errorf("exit %d, want %d", r.code, ExitUsage)
			}
			if !strings.Contains(r.errOut, tt.want) {
				t.Errorf("stderr lacks %q:\n%s", tt.want, r.errOut)
			}
			if r.out != "" {
				t.Errorf("printed records: %q", r.out)
			}
		})
	}

	r := replay(t, "-h")
	if r.code != ExitOK || !strings.Contains(r.errOut, "Usage: dovecot-kafka replay") || !strings.Contains(r.errOut, "-dry-run") {
		t.Errorf("-h: exit %d, stderr:\n%s", r.code, r.errOut)
	}
}

func TestReplayNeverWritesCheckpoint(t *testing.T) {
	e := newEnv(t, "127.0.0.1:1", testDrivers)
	lines := exampleLines(t)
	writeFile(t, e.events, lines)
	cp := saveCheckpoint(t, e, "checkpoint.json", offsetOf(lines, 100))
	if err := os.Chmod(cp, 0o400); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(cp)

	r := replay(t, "-config", e.config, "-dry-run", "-from", "checkpoint:"+cp, e.events)
	if r.code != ExitOK {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.errOut)
	}
	after, _ := os.Stat(cp)
	if !after.ModTime().Equal(before.ModTime()) || after.Mode() != before.Mode() {
		t.Error("the checkpoint file changed")
	}
	if _, err := os.Stat(cp + ".lock"); err == nil {
		t.Error("replay created a lock file next to the checkpoint")
	}
	diffLines(t, r.out, render(t, e.config, lines[100:], ""))
}

func TestParseInterleavedArgs(t *testing.T) {
	c := newCommand("x", IO{Err: new(strings.Builder)}, "")
	a := c.fs.String("a", "", "")
	b := c.fs.Bool("b", false, "")
	pos, _, ok := c.parse([]string{"one", "-a", "x", "two", "-b", "--", "-three"})
	if !ok || *a != "x" || !*b || strings.Join(pos, ",") != "one,two,-three" {
		t.Errorf("parse = %q, a=%q b=%v ok=%v", pos, *a, *b, ok)
	}
}

func TestLinePos(t *testing.T) {
	r := &replayer{files: []*inputFile{{name: "a"}, {name: "b"}}}
	name, off := r.unpackLinePos(linePos(1, 123456789012))
	if name != "b" || off != 123456789012 {
		t.Errorf("unpack = %s %d", name, off)
	}
}

func TestFormatProgress(t *testing.T) {
	got := formatProgress(50<<20, 200<<20, 1000, 10*time.Second)
	for _, s := range []string{"50.0 MiB of 200.0 MiB (25%)", "1000 lines", "100 lines/s", "5.0 MiB/s", "ETA 30s"} {
		if !strings.Contains(got, s) {
			t.Errorf("progress %q lacks %q", got, s)
		}
	}
}

func TestReplayBadLinesCapped(t *testing.T) {
	e := newEnv(t, "127.0.0.1:1", testDrivers)
	writeFile(t, e.events, []string{strings.Repeat("garbage\n", maxReports+5)})
	r := replay(t, "-config", e.config, "-dry-run", e.events)
	if r.code != ExitOK || strings.Count(r.errOut, "bad line in") != maxReports ||
		!strings.Contains(r.errOut, "further ones are only counted") || !strings.Contains(r.errOut, fmt.Sprintf("%d bad lines", maxReports+5)) {
		t.Errorf("exit %d, stderr:\n%s", r.code, r.errOut)
	}
}

// Records Kafka never acknowledges fail after -delivery-timeout, each
// named with its file and offset, and the exit status says so.
func TestReplayDeliveryFails(t *testing.T) {
	e := newEnv(t, "127.0.0.1:1", testDrivers) // nothing listens there
	lines := exampleLines(t)[:4]
	writeFile(t, e.events, lines)
	r := replay(t, "-config", e.config, "-delivery-timeout", "1s", e.events)
	if r.code != ExitFailed {
		t.Errorf("exit %d, want %d", r.code, ExitFailed)
	}
	n := strings.Count(render(t, e.config, lines, ""), "\n")
	for _, s := range []string{
		fmt.Sprintf("record of %s offset %d to topic dovecot failed: Local: Message timed out", e.events, offsetOf(lines, 1)),
		fmt.Sprintf("0 records published, 0 events skipped by filter, 0 bad lines, %d records failed", n),
		fmt.Sprintf("%d of %d records were not published", n, n),
	} {
		if !strings.Contains(r.errOut, s) {
			t.Errorf("stderr lacks %q:\n%s", s, r.errOut)
		}
	}
}
