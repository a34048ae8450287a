package follow_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"dovecot-kafka/follow"
)

// inBothOrders runs f once ordering generations by birth time, and once by
// name only, as on a file system that records no birth time.
func inBothOrders(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	t.Run("order=birth", func(t *testing.T) {
		probe := filepath.Join(t.TempDir(), "probe")
		writeFile(t, probe, "")
		if !follow.HasBirthTime(probe) {
			t.Skip("the file system records no birth time")
		}
		f(t)
	})
	t.Run("order=name", func(t *testing.T) {
		t.Cleanup(follow.SetBirthTime(false))
		f(t)
	})
}

// genLines returns the lines prefix-from to prefix-to, each ending in '\n',
// and the same without the '\n' as expect wants them.
func genLines(prefix string, from, to int) (string, []string) {
	var b strings.Builder
	var want []string
	for i := from; i <= to; i++ {
		l := fmt.Sprintf(`{"gen":%q,"n":%d}`, prefix, i)
		b.WriteString(l + "\n")
		want = append(want, l)
	}
	return b.String(), want
}

// writeGen appends the lines prefix-from to prefix-to to path and returns
// them as expect wants them.
func writeGen(t testing.TB, path, prefix string, from, to int) []string {
	t.Helper()
	s, want := genLines(prefix, from, to)
	appendFile(t, path, s)
	return want
}

func rename(t testing.TB, from, to string) {
	t.Helper()
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}

// rotateNumbered rotates path as logrotate does without dateext: path.N and
// path.N.gz become path.N+1 and path.N+1.gz, the oldest first, then path
// becomes path.1. The next writer creates path again.
func rotateNumbered(t testing.TB, path string) {
	t.Helper()
	names, err := filepath.Glob(path + ".*")
	if err != nil {
		t.Fatal(err)
	}
	top := 0
	for _, name := range names {
		num, _, _ := strings.Cut(strings.TrimPrefix(name, path+"."), ".")
		if n, err := strconv.Atoi(num); err == nil {
			top = max(top, n)
		}
	}
	for n := top; n >= 1; n-- {
		for _, ext := range []string{"", ".gz"} {
			from := fmt.Sprintf("%s.%d%s", path, n, ext)
			if _, err := os.Lstat(from); err == nil {
				rename(t, from, fmt.Sprintf("%s.%d%s", path, n+1, ext))
			}
		}
	}
	rename(t, path, path+".1")
}

// compress replaces name with name.gz, as logrotate's compress does.
func compress(t testing.TB, name string) {
	t.Helper()
	gzipFile(t, name, name+".gz")
	if err := os.Remove(name); err != nil {
		t.Fatal(err)
	}
}

// expectFrom reads the lines want and checks that they come from the file
// id, one after the other.
func expectFrom(t testing.TB, r *follow.Reader, id follow.FileID, want []string) []got {
	t.Helper()
	lines := expect(t, r, want...)
	for i, l := range lines {
		if !sameFile(l.File, id) {
			t.Fatalf("%s from inode %d, want %d", l.Data, l.File.Inode, id.Inode)
		}
		if i > 0 && l.Offset != lines[i-1].End {
			t.Fatalf("%s at offset %d, want %d", l.Data, l.Offset, lines[i-1].End)
		}
	}
	return lines
}

// fields returns the entries at level whose message contains msg.
func (l *logSink) fields(t testing.TB, level, msg string) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if e["level"] == level && strings.Contains(fmt.Sprint(e["message"]), msg) {
			out = append(out, e)
		}
	}
	return out
}

const missedMsg = "was gone before it could be read"

// Case: the daemon was stopped while the events file was rotated twice. On
// start the reader finishes the checkpointed file (now events.jsonl.2, found
// by identity), then reads events.jsonl.1 whole, then the file at the path:
// every line once, in order. An older generation (events.jsonl.3), a copy of
// the checkpointed file and a file that is not a generation are not read.
// A position saved in the middle generation resumes there after another
// restart, and goes on by the same rule.
func TestGenerationsWhileStopped(t *testing.T) {
	inBothOrders(t, func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "events.jsonl")
		writeGen(t, path, "z", 1, 3)
		rotateNumbered(t, path) // z was read before, by an earlier run
		a := writeGen(t, path, "a", 1, 5)
		opts := testOptions(t)
		logs := captureLog(t, &opts)

		r := open(t, path, follow.Position{}, opts)
		saved := expect(t, r, a[:2]...)[1].Position()
		saved.Path = path
		r.Close()
		idA := identify(t, path)

		rotateNumbered(t, path)
		b := writeGen(t, path, "b", 1, 5)
		rotateNumbered(t, path)
		c := writeGen(t, path, "c", 1, 3)
		copyFile(t, path+".2", path+".2-copy")
		writeFile(t, path+".pos", "not a generation\n")
		idB, idC := identify(t, path+".1"), identify(t, path)

		r2 := open(t, path, saved, opts)
		expectFrom(t, r2, idA, a[2:])
		inB := expectFrom(t, r2, idB, b)
		expectFrom(t, r2, idC, c)
		expectNone(t, r2)
		if st := r2.Stats(); st.Rotations != 2 || st.GenerationsMissed != 0 || st.Lines != 11 {
			t.Errorf("Stats = %+v, want 2 rotations, 11 lines, nothing missed", st)
		}
		r2.Close()

		// Stopped again, with a position in the middle generation, and
		// rotated once more. The copy goes: a new reader has finished
		// nothing, and by birth time the copy is newer than B.
		inMiddle := inB[1].Position()
		inMiddle.Path = path
		if err := os.Remove(path + ".2-copy"); err != nil {
			t.Fatal(err)
		}
		rotateNumbered(t, path)
		d := writeGen(t, path, "d", 1, 2)
		r3 := open(t, path, inMiddle, opts)
		expectFrom(t, r3, idB, b[2:])
		expectFrom(t, r3, idC, c)
		expectFrom(t, r3, identify(t, path), d)
		expectNone(t, r3)
		if n := logs.count(t, "warn", ""); n != 0 {
			t.Errorf("%d warnings, want none", n)
		}
	})
}

// Case: Kafka is down and back-pressure keeps the caller from calling Next
// while the file is rotated twice. When reading resumes, the reader
// finishes its file, then the middle generation (waiting RotateGrace at its
// end too, so that a late write to it is read), then the current file.
func TestGenerationsWhileLagging(t *testing.T) {
	inBothOrders(t, func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "events.jsonl")
		a := writeGen(t, path, "a", 1, 5)
		clock := newFakeClock()
		opts := testOptions(t)
		opts.Now = clock.Now
		r := open(t, path, follow.Position{}, opts)
		idA := identify(t, path)
		expectFrom(t, r, idA, a[:2])

		// No call to Next from here on.
		a = append(a, writeGen(t, path, "a", 6, 6)...)
		rotateNumbered(t, path)
		b := writeGen(t, path, "b", 1, 4)
		rotateNumbered(t, path)
		c := writeGen(t, path, "c", 1, 3)
		idB, idC := identify(t, path+".1"), identify(t, path)

		expectFrom(t, r, idA, a[2:])
		expectNone(t, r) // RotateGrace not over yet
		clock.Advance(opts.RotateGrace)
		expectFrom(t, r, idB, b)
		expectNone(t, r)
		late := writeGen(t, path+".1", "b", 5, 5) // a late writer on the middle generation
		expectFrom(t, r, idB, late)
		expectNone(t, r)
		clock.Advance(opts.RotateGrace)
		expectFrom(t, r, idC, c)
		if st := r.Stats(); st.Rotations != 2 || st.GenerationsMissed != 0 {
			t.Errorf("Stats = %+v, want 2 rotations, nothing missed", st)
		}
	})
}

// Case: two rotations within RotateGrace while the reader is up to date:
// it is still waiting for late writers on the first file when the second
// rotation comes. The generation between them is read, then the current
// file.
func TestGenerationsWithinGrace(t *testing.T) {
	inBothOrders(t, func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "events.jsonl")
		a := writeGen(t, path, "a", 1, 2)
		clock := newFakeClock()
		opts := testOptions(t)
		opts.Now = clock.Now
		r := open(t, path, follow.Position{}, opts)
		expect(t, r, a...)

		rotateNumbered(t, path)
		b := writeGen(t, path, "b", 1, 3)
		expectNone(t, r) // notices the rotation, waits for late writers
		rotateNumbered(t, path)
		c := writeGen(t, path, "c", 1, 2)
		expectNone(t, r)
		idB, idC := identify(t, path+".1"), identify(t, path)

		clock.Advance(opts.RotateGrace)
		expectFrom(t, r, idB, b)
		expectNone(t, r)
		clock.Advance(opts.RotateGrace)
		expectFrom(t, r, idC, c)
		if st := r.Stats(); st.Rotations != 2 {
			t.Errorf("Rotations = %d, want 2", st.Rotations)
		}
	})
}

// Cases: a middle generation is gone before the reader gets to it. Its
// lines cannot be read: it is warned about with its name (and size, when a
// compressed file is left), counted, and the reader goes on with the next
// generation.
func TestGenerationGone(t *testing.T) {
	for _, tc := range []struct {
		name   string
		gone   func(t testing.TB, path string) // what happens to events.jsonl.1
		file   string                          // the name the warning gives
		sized  bool                            // whether the warning gives a size
		reason string
	}{
		// Deleted (say by hand): only the gap in the numbers tells.
		{"deleted", func(t testing.TB, path string) {
			if err := os.Remove(path + ".1"); err != nil {
				t.Fatal(err)
			}
		}, "events.jsonl.1", false, "deleted"},
		// Compressed (compress without delaycompress): only .1.gz is left.
		{"compressed", func(t testing.TB, path string) { compress(t, path+".1") }, "events.jsonl.1.gz", true, "compressed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inBothOrders(t, func(t *testing.T) {
				dir := t.TempDir()
				path := filepath.Join(dir, "events.jsonl")
				a := writeGen(t, path, "a", 1, 3)
				opts := testOptions(t)
				logs := captureLog(t, &opts)
				r := open(t, path, follow.Position{}, opts)
				saved := expect(t, r, a[0])[0].Position()
				saved.Path = path
				r.Close()

				rotateNumbered(t, path)
				writeGen(t, path, "b", 1, 4)
				rotateNumbered(t, path)
				c := writeGen(t, path, "c", 1, 2)
				tc.gone(t, path)

				r2 := open(t, path, saved, opts)
				expect(t, r2, a[1:]...)
				expectFrom(t, r2, identify(t, path), c)
				expectNone(t, r2)
				if st := r2.Stats(); st.GenerationsMissed != 1 || st.Rotations != 1 {
					t.Errorf("Stats = %+v, want 1 generation missed, 1 rotation", st)
				}
				warned := logs.fields(t, "warn", missedMsg)
				if len(warned) != 1 {
					t.Fatalf("%d warnings about a missed generation, want 1", len(warned))
				}
				w := warned[0]
				if w["file"] != filepath.Join(dir, tc.file) || w["reason"] != tc.reason {
					t.Errorf("warning names %v (%v), want %s (%s)", w["file"], w["reason"], tc.file, tc.reason)
				}
				if _, ok := w["size"]; ok != tc.sized {
					t.Errorf("warning has a size: %v, want %v", ok, tc.sized)
				}
			})
		})
	}
}

// Case: compress without delaycompress while the reader lags. Each rotated
// file is compressed and deleted at once; the reader still reads its own
// file through the open descriptor. The file after it was never opened and
// is gone, only events.jsonl.1.gz is left. The reader recognises its own
// file in events.jsonl.2.gz by its first bytes, so it knows that .1.gz lay
// between: missed, warned and counted.
func TestGenerationCompressedWhileLagging(t *testing.T) {
	inBothOrders(t, func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "events.jsonl")
		a := writeGen(t, path, "a", 1, 3)
		clock := newFakeClock()
		opts := testOptions(t)
		opts.Now = clock.Now
		logs := captureLog(t, &opts)
		r := open(t, path, follow.Position{}, opts)
		idA := identify(t, path)
		expect(t, r, a[0])

		rotateNumbered(t, path)
		compress(t, path+".1")
		writeGen(t, path, "b", 1, 4)
		rotateNumbered(t, path)
		compress(t, path+".1")
		c := writeGen(t, path, "c", 1, 2)

		expectFrom(t, r, idA, a[1:])
		expectNone(t, r)
		clock.Advance(opts.RotateGrace)
		expectFrom(t, r, identify(t, path), c)
		if st := r.Stats(); st.GenerationsMissed != 1 || st.Rotations != 1 {
			t.Errorf("Stats = %+v, want 1 generation missed, 1 rotation", st)
		}
		warned := logs.fields(t, "warn", missedMsg)
		if len(warned) != 1 || warned[0]["file"] != path+".1.gz" {
			t.Errorf("warnings about missed generations: %v, want one naming %s.1.gz", warned, path)
		}
	})
}

// Case: the file the reader leaves was compressed with a tool whose output
// it cannot read (xz), so neither its name nor a birth time (order=name)
// places it. The rotated generation modified at or after it, in name order,
// comes next: nothing is lost, and nothing can be reported as missed.
func TestGenerationsAfterUnnamedFile(t *testing.T) {
	inBothOrders(t, func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "events.jsonl")
		writeGen(t, path, "z", 1, 2)
		rotateNumbered(t, path) // older, read before
		setMtime(t, path+".1", newFakeClock().Now())
		a := writeGen(t, path, "a", 1, 3)
		clock := newFakeClock()
		opts := testOptions(t)
		opts.Now = clock.Now
		r := open(t, path, follow.Position{}, opts)
		expect(t, r, a[0])

		rotateNumbered(t, path)
		writeFile(t, path+".1.xz", "not readable here")
		if err := os.Remove(path + ".1"); err != nil {
			t.Fatal(err)
		}
		b := writeGen(t, path, "b", 1, 2)
		rotateNumbered(t, path) // b stays uncompressed (delaycompress)
		c := writeGen(t, path, "c", 1, 2)
		idB, idC := identify(t, path+".1"), identify(t, path)

		expect(t, r, a[1:]...)
		expectNone(t, r)
		clock.Advance(opts.RotateGrace)
		expectFrom(t, r, idB, b)
		expectNone(t, r)
		clock.Advance(opts.RotateGrace)
		expectFrom(t, r, idC, c)
		if st := r.Stats(); st.Rotations != 2 || st.GenerationsMissed != 0 {
			t.Errorf("Stats = %+v, want 2 rotations, nothing missed", st)
		}
	})
}

// Case: a rotation scheme with dates and a counter in the names
// (events.jsonl-20261204-9, then -20261204-10): the counter compares as a
// number, not as text, so -10 comes after -9.
func TestGenerationsDateSuffix(t *testing.T) {
	inBothOrders(t, func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "events.jsonl")
		writeGen(t, path, "z", 1, 2)
		rename(t, path, path+"-20261203-1") // older, read before
		a := writeGen(t, path, "a", 1, 3)
		opts := testOptions(t)
		r := open(t, path, follow.Position{}, opts)
		saved := expect(t, r, a[0])[0].Position()
		saved.Path = path
		r.Close()

		rename(t, path, path+"-20261204-9")
		b := writeGen(t, path, "b", 1, 2)
		rename(t, path, path+"-20261204-10")
		c := writeGen(t, path, "c", 1, 2)
		idB, idC := identify(t, path+"-20261204-10"), identify(t, path)

		r2 := open(t, path, saved, opts)
		expect(t, r2, a[1:]...)
		expectFrom(t, r2, idB, b)
		expectFrom(t, r2, idC, c)
		expectNone(t, r2)
		if st := r2.Stats(); st.Rotations != 2 || st.GenerationsMissed != 0 {
			t.Errorf("Stats = %+v, want 2 rotations, nothing missed", st)
		}
	})
}

// Case: the file left holds only part of a line (its writer died), so its
// first bytes are also the start of the next generation, whose lines begin
// the same way. That does not make the next generation a copy of it: it is
// read, and the fragment is dropped and counted.
func TestGenerationAfterFragmentOnlyFile(t *testing.T) {
	inBothOrders(t, func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "events.jsonl")
		appendFile(t, path, `{"gen":`)
		clock := newFakeClock()
		opts := testOptions(t)
		opts.Now = clock.Now
		r := open(t, path, follow.Position{}, opts)
		expectNone(t, r)

		rotateNumbered(t, path)
		b := writeGen(t, path, "b", 1, 2)
		rotateNumbered(t, path)
		c := writeGen(t, path, "c", 1, 2)
		idB, idC := identify(t, path+".1"), identify(t, path)

		expectNone(t, r)
		clock.Advance(opts.RotateGrace)
		expectFrom(t, r, idB, b)
		expectNone(t, r)
		clock.Advance(opts.RotateGrace)
		expectFrom(t, r, idC, c)
		if st := r.Stats(); st.Fragments != 1 || st.Rotations != 2 {
			t.Errorf("Stats = %+v, want 1 fragment, 2 rotations", st)
		}
	})
}
