package tools

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"dovecot-kafka/config"
	"dovecot-kafka/parser"
)

// examplesEvents is real Dovecot output: 159 lines, event times
// non-decreasing from 2026-12-04T17:07:37Z to 17:07:54Z.
const examplesEvents = "../examples/events.jsonl"

// exampleLines returns the lines of examples/events.jsonl, each with its
// '\n'.
func exampleLines(t testing.TB) []string {
	t.Helper()
	data, err := os.ReadFile(examplesEvents)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	return lines[:len(lines)-1] // after the last '\n'

}

// offsetOf returns where line i starts in the concatenation of lines.
func offsetOf(lines []string, i int) int64 {
	var n int64
	for _, l := range lines[:i] {
		n += int64(len(l))
	}
	return n
}

func writeFile(t testing.TB, path string, lines []string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "")), 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeGzip(t testing.TB, path string, lines []string) {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(strings.Join(lines, "")))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// testDrivers are the three drivers of examples/dovecot-kafka.toml.
const testDrivers = `
[[driver]]
topic = "dovecot"

[[driver]]
topic = "flags"
events = ["FlagsClear", "FlagsSet", "MessageExpunge", "MessageRead", "MessageTrash"]
keyword_prefix = "$label"
send_flags = false

[[driver]]
topic = "feature"
feature = "kafka_push"
userdb = ["customer_id", "plan"]
`

// env is a scratch installation: a configuration whose events file and
// checkpoint live in a temporary directory.
type env struct {
	dir, spool, lib string
	config          string
	events          string // events_file
	checkpoint      string
}

func newEnv(t testing.TB, brokers, drivers string) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{dir: dir, spool: filepath.Join(dir, "spool"), lib: filepath.Join(dir, "lib")}
	for _, d := range []string{e.spool, e.lib} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e.events = filepath.Join(e.spool, "events.jsonl")
	e.checkpoint = filepath.Join(e.lib, "checkpoint.json")
	e.config = filepath.Join(dir, "dovecot-kafka.toml")
	cfg := fmt.Sprintf("events_file = %q\ncheckpoint_file = %q\n[kafka]\nbrokers = %q\n%s",
		e.events, e.checkpoint, brokers, drivers)
	if err := os.WriteFile(e.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

// result is what a command did.
type result struct {
	code        int
	out, errOut string
}

func runCmd(t testing.TB, f func(IO) int) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := f(IO{In: strings.NewReader(""), Out: &out, Err: &errOut})
	return result{code: code, out: out.String(), errOut: errOut.String()}
}

func replay(t testing.TB, args ...string) result {
	t.Helper()
	return runCmd(t, func(io IO) int { return Replay(context.Background(), args, io) })
}

func stateCmdRun(t testing.TB, args ...string) result {
	t.Helper()
	return runCmd(t, func(io IO) int { return State(args, io) })
}

// render returns what a dry run must print for lines: topic, key and
// value of every driver's record, rendered with the daemon's packages.
func render(t testing.TB, configPath string, lines []string, topic string) string {
	t.Helper()
	cfg, err := config.Load(configPath)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	var p parser.Parser
	for _, l := range lines {
		ev, err := p.Parse([]byte(strings.TrimSuffix(l, "\n")))
		if err != nil {
			continue
		}
		for _, d := range cfg.MappingDrivers() {
			v, ok := d.AppendValue(nil, ev)
			if !ok {
				continue
			}
			to := d.Topic
			if topic != "" {
				to = topic
			}
			fmt.Fprintf(&b, "%s\t%s\t%s\n", to, ev.User, v)
		}
	}
	return b.String()
}

// renderTimed is render with the record timestamp the daemon sets, in
// milliseconds, as a fourth field.
func renderTimed(t testing.TB, configPath string, lines []string, topic string) []string {
	t.Helper()
	var out []string
	for _, l := range lines {
		var p parser.Parser
		ev, err := p.Parse([]byte(strings.TrimSuffix(l, "\n")))
		if err != nil {
			continue
		}
		for _, r := range strings.Split(strings.TrimSuffix(render(t, configPath, []string{l}, topic), "\n"), "\n") {
			if r != "" {
				out = append(out, fmt.Sprintf("%s\t%d", r, ev.Time*1000))
			}
		}
	}
	return out
}

// diffLines reports the first difference between two outputs.
func diffLines(t testing.TB, got, want string) {
	t.Helper()
	if got == want {
		return
	}
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < max(len(g), len(w)); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			t.Fatalf("output differs at line %d (got %d lines, want %d):\n got: %.200s\nwant: %.200s", i+1, len(g), len(w), gl, wl)
		}
	}
}
