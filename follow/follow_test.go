package follow_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"dovecot-kafka/follow"
)

// waitLimit bounds every wait for a line, so that a broken reader fails the
// test instead of hanging it. It is not a performance expectation.
const waitLimit = 10 * time.Second

// quietWait is how long a test lets the reader try before concluding that
// no line is coming. A slow machine can only make such a test pass
// wrongly, never fail wrongly.
const quietWait = 50 * time.Millisecond

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// testOptions returns options with short intervals and logs to t.
func testOptions(t testing.TB) follow.Options {
	return follow.Options{
		PollInterval:     10 * time.Millisecond,
		RotateGrace:      50 * time.Millisecond,
		MaxRetryInterval: 50 * time.Millisecond,
		Log:              zerolog.New(zerolog.NewTestWriter(t)),
	}
}

func open(t testing.TB, path string, start follow.Position, opts follow.Options) *follow.Reader {
	t.Helper()
	r, err := follow.Open(path, start, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// got is a Line with its data copied.
type got struct {
	Data    string
	Offset  int64
	End     int64
	File    follow.FileID
	TooLong bool
}

func (g got) Position() follow.Position {
	return follow.Position{File: g.File, Offset: g.End}
}

// next returns the next line, failing the test if none comes.
func next(t testing.TB, r *follow.Reader) got {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	l, err := r.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return got{string(l.Data), l.Pos.Offset, l.End, l.Pos.File, l.TooLong}
}

// expect reads len(want) lines and checks their text.
func expect(t testing.TB, r *follow.Reader, want ...string) []got {
	t.Helper()
	var lines []got
	for _, w := range want {
		g := next(t, r)
		if g.Data != w {
			t.Fatalf("line = %q, want %q", g.Data, w)
		}
		lines = append(lines, g)
	}
	return lines
}

// expectNone checks that no line comes for a short while.
func expectNone(t testing.TB, r *follow.Reader) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), quietWait)
	defer cancel()
	l, err := r.Next(ctx)
	if err == nil {
		t.Fatalf("Next returned line %q at offset %d, want none", l.Data, l.Pos.Offset)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next: %v, want context.DeadlineExceeded", err)
	}
}

func appendFile(t testing.TB, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func writeTo(t testing.TB, f *os.File, s string) {
	t.Helper()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// logSink keeps what a Reader logs, so that a test can check that a case
// was warned about.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// count returns how many entries at level have a message containing msg.
func (l *logSink) count(t testing.TB, level, msg string) int {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(l.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var e struct{ Level, Message string }
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if e.Level == level && strings.Contains(e.Message, msg) {
			n++
		}
	}
	return n
}

// captureLog makes opts log to t and to the returned sink.
func captureLog(t testing.TB, opts *follow.Options) *logSink {
	l := &logSink{}
	opts.Log = zerolog.New(io.MultiWriter(zerolog.NewTestWriter(t), l))
	return l
}

// copyFile copies src to dst as logrotate's copytruncate does, and returns
// dst's identity.
func copyFile(t testing.TB, src, dst string) follow.FileID {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dst, string(b))
	return identify(t, dst)
}

// writeFile creates or replaces name with s.
func writeFile(t testing.TB, name, s string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// setMtime sets name's modification time.
func setMtime(t testing.TB, name string, mtime time.Time) {
	t.Helper()
	if err := os.Chtimes(name, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

// truncate truncates path to size in place, as copytruncate or
// `truncate -s` does.
func truncate(t testing.TB, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

// sameFile reports whether a and b name the same device and inode.
func sameFile(a, b follow.FileID) bool {
	return a.Dev == b.Dev && a.Inode == b.Inode
}

// holdsDeleted reports whether this process has a descriptor open on the
// deleted file that was at name. It skips the test where /proc/self/fd, which
// shows that, is missing.
func holdsDeleted(t testing.TB, name string) bool {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot list open descriptors: %v", err)
	}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && target == name+" (deleted)" {
			return true
		}
	}
	return false
}

func identify(t testing.TB, path string) follow.FileID {
	t.Helper()
	id, _, err := follow.Identify(path)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestReadLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	appendFile(t, path, "one\ntwo\n\nfour\n")
	r := open(t, path, follow.Position{}, testOptions(t))

	lines := expect(t, r, "one", "two", "", "four")
	wantOff := []int64{0, 4, 8, 9, 14}
	for i, l := range lines {
		if l.Offset != wantOff[i] || l.End != wantOff[i+1] {
			t.Errorf("line %d: offset %d end %d, want %d %d", i, l.Offset, l.End, wantOff[i], wantOff[i+1])
		}
	}
	if id := identify(t, path); lines[0].File.Dev != id.Dev || lines[0].File.Inode != id.Inode {
		t.Errorf("line file = %+v, want %+v", lines[0].File, id)
	}

	// Lines appended while the reader waits.
	expectNone(t, r)
	appendFile(t, path, "five\n")
	if l := expect(t, r, "five")[0]; l.Offset != 14 || l.End != 19 {
		t.Errorf("appended line: offset %d end %d, want 14 19", l.Offset, l.End)
	}

	st := r.Stats()
	if st.Lines != 5 || st.Bytes != 19 {
		t.Errorf("Stats = %+v, want 5 lines, 19 bytes", st)
	}
}

func TestManyLinesAcrossBuffers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	var b strings.Builder
	for i := range 30000 { // about 1 MiB: several buffer fills
		fmt.Fprintf(&b, `{"n":%d,"pad":"%s"}`+"\n", i, strings.Repeat("x", i%50))
	}
	big := strings.Repeat("y", 300<<10) // longer than the initial buffer
	b.WriteString(big + "\nlast\n")
	appendFile(t, path, b.String())
	want := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")

	r := open(t, path, follow.Position{}, testOptions(t))
	var off int64
	for i, w := range want {
		g := next(t, r)
		if g.Data != w || g.Offset != off || g.TooLong {
			t.Fatalf("line %d: %.40q at %d (too long %v), want %.40q at %d", i, g.Data, g.Offset, g.TooLong, w, off)
		}
		off = g.End
	}
	if off != int64(b.Len()) {
		t.Errorf("end = %d, want %d", off, b.Len())
	}
}

func TestPartialLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	appendFile(t, path, "first\nsec")
	opts := testOptions(t)
	r := open(t, path, follow.Position{}, opts)

	first := expect(t, r, "first")[0]
	expectNone(t, r)
	appendFile(t, path, "ond")
	expectNone(t, r)
	appendFile(t, path, "\nthi")
	if l := expect(t, r, "second")[0]; l.Offset != 6 || l.End != 13 {
		t.Errorf("second: offset %d end %d, want 6 13", l.Offset, l.End)
	}
	expectNone(t, r)
	r.Close()

	// A new reader at the saved position sees the partial line only once
	// it is complete, whole.
	r2 := open(t, path, follow.Position{Path: path, File: first.File, Offset: first.End}, opts)
	expect(t, r2, "second")
	expectNone(t, r2)
	appendFile(t, path, "rd\n")
	if l := expect(t, r2, "third")[0]; l.Offset != 13 {
		t.Errorf("third: offset %d, want 13", l.Offset)
	}
}

func TestRotationWithLateWriter(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	rotated := path + ".1"
	appendFile(t, path, "a1\na2\n")
	clock := newFakeClock()
	opts := testOptions(t)
	opts.Now = clock.Now
	r := open(t, path, follow.Position{}, opts)
	a := expect(t, r, "a1", "a2")

	// A writer that opened the file before the rotation.
	late, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()

	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	writeTo(t, late, "a3\n") // before the new file exists
	expect(t, r, "a3")

	appendFile(t, path, "b1\n")
	writeTo(t, late, "a4\n") // after the new file appeared
	expect(t, r, "a4")
	expectNone(t, r) // the clock has not moved: still waiting on the old file
	writeTo(t, late, "a5\nhalf")
	a5 := expect(t, r, "a5")[0]
	if a5.File.Inode != a[0].File.Inode || a5.Offset != 12 {
		t.Errorf("a5: inode %d offset %d, want %d 12", a5.File.Inode, a5.Offset, a[0].File.Inode)
	}

	// Once the old file has been quiet for RotateGrace, the new one.
	clock.Advance(opts.RotateGrace)
	b1 := expect(t, r, "b1")[0]
	if id := identify(t, path); b1.File.Inode != id.Inode || b1.Offset != 0 {
		t.Errorf("b1: inode %d offset %d, want %d 0", b1.File.Inode, b1.Offset, id.Inode)
	}
	appendFile(t, path, "b2\n")
	expect(t, r, "b2")

	st := r.Stats()
	if st.Rotations != 1 || st.Fragments != 1 {
		t.Errorf("Stats = %+v, want 1 rotation, 1 fragment (the half line)", st)
	}
}

func TestRotationWhileStopped(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	appendFile(t, path, "a1\na2\na3\n")
	opts := testOptions(t)
	r := open(t, path, follow.Position{}, opts)
	saved := expect(t, r, "a1", "a2")[1].Position()
	r.Close()

	// Rotated while the daemon was stopped, with a late line in the old
	// file and an unrelated file next to it.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path+".1", "a4\n")
	appendFile(t, filepath.Join(dir, "other.log"), "unrelated\n")
	appendFile(t, path, "b1\nb2\n")

	saved.Path = path
	r2 := open(t, path, saved, opts)
	lines := expect(t, r2, "a3", "a4", "b1", "b2")
	if lines[0].Offset != 6 || lines[2].Offset != 0 {
		t.Errorf("offsets: a3 %d, b1 %d, want 6, 0", lines[0].Offset, lines[2].Offset)
	}
	if r2.Stats().Rotations != 1 {
		t.Errorf("Rotations = %d, want 1", r2.Stats().Rotations)
	}
}

func TestResumeRotatedWhilePathMissing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	appendFile(t, path, "a1\na2\n")
	id := identify(t, path)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}

	r := open(t, path, follow.Position{Path: path, File: id, Offset: 3}, testOptions(t))
	expect(t, r, "a2")
	expectNone(t, r)
	appendFile(t, path, "b1\n")
	expect(t, r, "b1")
}

// Case: copytruncate while the reader is up to date. The copy holds nothing
// unread; it is found, finished at once, and reading goes on at offset 0 of
// the truncated file without a warning.
func TestCopytruncate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	appendFile(t, path, "a1\na2\na3\n")
	opts := testOptions(t)
	logs := captureLog(t, &opts)
	r := open(t, path, follow.Position{}, opts)
	expect(t, r, "a1", "a2", "a3")

	// Copy, then truncate in place; the writer goes on at offset 0.
	copyFile(t, path, path+".1")
	truncate(t, path, 0)
	appendFile(t, path, "b1\n")
	if l := expect(t, r, "b1")[0]; l.Offset != 0 {
		t.Errorf("b1 offset = %d, want 0", l.Offset)
	}
	appendFile(t, path, "b2\n")
	expect(t, r, "b2")
	st := r.Stats()
	if st.Truncations != 1 || st.CopiesFinished != 1 || st.CopiesMissing != 0 {
		t.Errorf("Stats = %+v, want 1 truncation, 1 copy finished, none missing", st)
	}
	if n := logs.count(t, "warn", ""); n != 0 {
		t.Errorf("%d warnings, want none", n)
	}
}

// Case: copytruncate while the reader lags. The lines it had not read yet
// when the file was truncated are in the copy only. Every line must come
// exactly once: the old tail from the copy, then the truncated file from
// offset 0. The new content is shorter than the reader's offset (the size
// tells) or already longer (only the first bytes tell).
func TestCopytruncateWhileLagging(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []string // lines written after the truncation
	}{
		{"refilled below offset", []string{"b1"}},
		{"refilled past offset", []string{"b1-longer-than-before", "b2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "events.jsonl")
			appendFile(t, path, "a1\na2\n")
			opts := testOptions(t)
			logs := captureLog(t, &opts)
			r := open(t, path, follow.Position{}, opts)
			expect(t, r, "a1", "a2")

			appendFile(t, path, "a3\na4\n") // not read yet
			cp := copyFile(t, path, path+".1")
			truncate(t, path, 0)
			appendFile(t, path, strings.Join(tc.b, "\n")+"\n")

			old := expect(t, r, "a3", "a4")
			for i, l := range old {
				if l.File != cp || l.Offset != int64(6+3*i) {
					t.Errorf("%s: file %+v offset %d, want the copy %+v at %d", l.Data, l.File, l.Offset, cp, 6+3*i)
				}
			}
			id := identify(t, path)
			var off int64
			for _, l := range expect(t, r, tc.b...) {
				if !sameFile(l.File, id) || l.Offset != off {
					t.Errorf("%s: inode %d offset %d, want %d at %d", l.Data, l.File.Inode, l.Offset, id.Inode, off)
				}
				off = l.End
			}
			expectNone(t, r)
			appendFile(t, path, "b3\n")
			expect(t, r, "b3")

			st := r.Stats()
			if st.Truncations != 1 || st.CopiesFinished != 1 || st.CopiesMissing != 0 || st.Fragments != 0 {
				t.Errorf("Stats = %+v, want 1 truncation, 1 copy finished, nothing missing or dropped", st)
			}
			if n := logs.count(t, "info", "reading the rest of it from its copy"); n != 1 {
				t.Errorf("%d info logs naming the copy, want 1", n)
			}
		})
	}
}

// Case: copytruncate on a busy file: a line appended between the copy and
// the truncation was read before the truncation, so the reader is past the
// end of the copy. The copy holds nothing unread: no warning, no loss
// counted, and the truncated file is read from offset 0. The same when the
// position past the copy's end was saved and the daemon restarted.
func TestCopytruncateReaderPastCopy(t *testing.T) {
	for _, stopped := range []bool{false, true} {
		t.Run(fmt.Sprintf("stopped=%v", stopped), func(t *testing.T) {
			// The copy must hold the bytes the fingerprint covers, as a
			// real events file does after a line or two.
			path := filepath.Join(t.TempDir(), "events.jsonl")
			a1 := "a1-" + strings.Repeat("x", follow.FingerprintMax)
			appendFile(t, path, a1+"\na2\n")
			opts := testOptions(t)
			logs := captureLog(t, &opts)
			r := open(t, path, follow.Position{}, opts)
			expect(t, r, a1, "a2")

			copyFile(t, path, path+".1")
			appendFile(t, path, "a3\n") // after the copy, before the truncation
			saved := expect(t, r, "a3")[0].Position()
			saved.Path = path
			if stopped {
				r.Close()
			}
			truncate(t, path, 0)
			appendFile(t, path, "b1\n")

			if stopped {
				r = open(t, path, saved, opts)
			}
			if l := expect(t, r, "b1")[0]; l.Offset != 0 {
				t.Errorf("b1 offset = %d, want 0", l.Offset)
			}
			expectNone(t, r)
			st := r.Stats()
			if st.Truncations != 1 || st.CopiesFinished != 1 || st.CopiesMissing != 0 {
				t.Errorf("Stats = %+v, want 1 truncation, 1 copy finished, none missing", st)
			}
			if n := logs.count(t, "warn", ""); n != 0 {
				t.Errorf("%d warnings, want none", n)
			}
		})
	}
}

// Case: copytruncate while the daemon was stopped, and by restart time the
// file has grown back past the saved offset: its size looks fine, only its
// first bytes tell. The copy (logrotate's dateext name) is finished from the
// saved offset, then the new content is read from offset 0; nothing of the
// old file is returned twice, and reading does not stall.
func TestCopytruncateWhileStoppedGrownBack(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	appendFile(t, path, "a1\na2\n")
	clock := newFakeClock()
	opts := testOptions(t)
	opts.Now = clock.Now
	r := open(t, path, follow.Position{}, opts)
	saved := expect(t, r, "a1", "a2")[1].Position()
	saved.Path = path
	r.Close()

	appendFile(t, path, "a3\n") // written after the last line was saved
	cp := copyFile(t, path, path+"-20261204")
	truncate(t, path, 0)
	appendFile(t, path, "b1-longer-than-before\nb2\n")

	r2 := open(t, path, saved, opts)
	a3 := expect(t, r2, "a3")[0]
	if a3.File != cp || a3.Offset != 6 {
		t.Errorf("a3: file %+v offset %d, want the copy %+v at 6", a3.File, a3.Offset, cp)
	}
	b := expect(t, r2, "b1-longer-than-before", "b2")
	if id := identify(t, path); !sameFile(b[0].File, id) || b[0].Offset != 0 {
		t.Errorf("b1: inode %d offset %d, want %d at 0", b[0].File.Inode, b[0].Offset, id.Inode)
	}
	expectNone(t, r2)
	st := r2.Stats()
	if st.Truncations != 1 || st.CopiesFinished != 1 || st.CopiesMissing != 0 {
		t.Errorf("Stats = %+v, want 1 truncation, 1 copy finished", st)
	}
	r2.Close()

	// A position saved while reading the copy resumes in the copy, which is
	// then left like a rotated file.
	inCopy := a3.Position()
	inCopy.Path = path
	r3 := open(t, path, inCopy, opts)
	expectNone(t, r3)
	clock.Advance(opts.RotateGrace)
	expect(t, r3, "b1-longer-than-before", "b2")
}

// Case: copytruncate while the daemon was stopped, and the copy is gone by
// restart time: logrotate compressed it and removed the plain copy. A
// compressed file is never taken for the copy (here it holds plain bytes
// that would match, so that only its name keeps it out). The loss is warned
// about and counted, and the file is read from offset 0.
func TestCopytruncateWhileStoppedNoCopy(t *testing.T) {
	for _, tc := range []struct {
		name, b string // what is written after the truncation
	}{
		{"shorter than saved offset", "b1\n"},
		{"grown back past saved offset", "b1-longer-than-before\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "events.jsonl")
			appendFile(t, path, "a1\na2\n")
			opts := testOptions(t)
			r := open(t, path, follow.Position{}, opts)
			saved := expect(t, r, "a1", "a2")[1].Position()
			saved.Path = path
			r.Close()

			appendFile(t, path, "a3\n")
			copyFile(t, path, path+".1.gz")
			truncate(t, path, 0)
			appendFile(t, path, tc.b)

			logs := captureLog(t, &opts)
			r2 := open(t, path, saved, opts)
			if l := next(t, r2); l.Data+"\n" != tc.b || l.Offset != 0 {
				t.Errorf("first line %q at %d, want %q at 0", l.Data, l.Offset, tc.b)
			}
			expectNone(t, r2)
			st := r2.Stats()
			if st.Truncations != 1 || st.CopiesMissing != 1 || st.CopiesFinished != 0 {
				t.Errorf("Stats = %+v, want 1 truncation, 1 copy missing", st)
			}
			if n := logs.count(t, "warn", "may be lost"); n != 1 {
				t.Errorf("%d warnings about lost lines, want 1", n)
			}
		})
	}
}

func TestTruncatedAndRefilledBeyondOffset(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	appendFile(t, path, "a1\n")
	r := open(t, path, follow.Position{}, testOptions(t))
	expect(t, r, "a1")

	// Truncated and written again past our offset before the reader looked:
	// only the first bytes tell.
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, "b1-longer\nb2\n")
	expect(t, r, "b1-longer", "b2")
	if n := r.Stats().Truncations; n != 1 {
		t.Errorf("Truncations = %d, want 1", n)
	}
}

// Case: truncation to a smaller size that is not a copytruncate (someone ran
// `truncate -s 5`), and no copy exists. The reader cannot know which of the
// remaining lines it returned before: warned, counted, read again from 0.
func TestTruncateToSmallerSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	appendFile(t, path, "aaaa\nbbbb\ncccc\n")
	appendFile(t, path+".old", "unrelated\nfile\nlonger than the offset\n")
	opts := testOptions(t)
	logs := captureLog(t, &opts)
	r := open(t, path, follow.Position{}, opts)
	expect(t, r, "aaaa", "bbbb", "cccc")

	truncate(t, path, 5)
	appendFile(t, path, "dd\n")
	lines := expect(t, r, "aaaa", "dd")
	if lines[0].Offset != 0 || lines[1].Offset != 5 {
		t.Errorf("offsets %d %d, want 0 5", lines[0].Offset, lines[1].Offset)
	}
	st := r.Stats()
	if st.Truncations != 1 || st.CopiesMissing != 1 || st.CopiesFinished != 0 {
		t.Errorf("Stats = %+v, want 1 truncation, 1 copy missing", st)
	}
	if n := logs.count(t, "warn", "may be lost"); n != 1 {
		t.Errorf("%d warnings about lost lines, want 1", n)
	}
	appendFile(t, path, "ee\n")
	expect(t, r, "ee")
}

// Case: the same truncation while the daemon was stopped: the file at the
// saved position is now shorter than the saved offset.
func TestTruncateToSmallerSizeWhileStopped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	appendFile(t, path, "aaaa\nbbbb\ncccc\n")
	opts := testOptions(t)
	r := open(t, path, follow.Position{}, opts)
	saved := expect(t, r, "aaaa", "bbbb", "cccc")[2].Position()
	saved.Path = path
	r.Close()

	truncate(t, path, 5)
	logs := captureLog(t, &opts)
	r2 := open(t, path, saved, opts)
	if l := expect(t, r2, "aaaa")[0]; l.Offset != 0 {
		t.Errorf("aaaa offset = %d, want 0", l.Offset)
	}
	st := r2.Stats()
	if st.Truncations != 1 || st.CopiesMissing != 1 {
		t.Errorf("Stats = %+v, want 1 truncation, 1 copy missing", st)
	}
	if n := logs.count(t, "warn", "may be lost"); n != 1 {
		t.Errorf("%d warnings about lost lines, want 1", n)
	}
}

// Case: the copy ends in a partial line: it was taken while a writer's line
// was only partly in the file, and the rest went to the file before the
// truncation. Only a line ending in '\n' is complete; the fragment is
// dropped, counted and warned about, and reading goes on with the truncated
// file.
func TestCopyWithPartialLastLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	appendFile(t, path, "a1\na2\n")
	opts := testOptions(t)
	logs := captureLog(t, &opts)
	r := open(t, path, follow.Position{}, opts)
	expect(t, r, "a1", "a2")

	appendFile(t, path, "a3\n")
	writeFile(t, path+".1", "a1\na2\na3\na4-par")
	truncate(t, path, 0)
	appendFile(t, path, "b1\n")

	expect(t, r, "a3", "b1")
	expectNone(t, r)
	st := r.Stats()
	if st.Fragments != 1 || st.CopiesFinished != 1 || st.Lines != 4 {
		t.Errorf("Stats = %+v, want 1 fragment, 1 copy finished, 4 lines", st)
	}
	if n := logs.count(t, "warn", "dropping incomplete line"); n != 1 {
		t.Errorf("%d warnings about the fragment, want 1", n)
	}
}

// Case: the copy changes while it is read (someone rewrote it), so it is not
// a copy after all. The reader leaves it with a warning, counts no finished
// copy, and goes on with the truncated file.
func TestCopyChangedWhileRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	appendFile(t, path, "a0\n")
	opts := testOptions(t)
	logs := captureLog(t, &opts)
	r := open(t, path, follow.Position{}, opts)
	expect(t, r, "a0")

	var b strings.Builder
	for i := range 40000 { // more than one buffer fill
		fmt.Fprintf(&b, "line %05d\n", i)
	}
	appendFile(t, path, b.String())
	copyFile(t, path, path+".1")
	truncate(t, path, 0)
	appendFile(t, path, "b1\n")

	expect(t, r, "line 00000")
	cp, err := os.OpenFile(path+".1", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	writeTo(t, cp, "XX")
	if err := cp.Close(); err != nil {
		t.Fatal(err)
	}

	// The lines already buffered still come; then the truncated file.
	n := 1
	for g := next(t, r); g.Data != "b1"; g = next(t, r) {
		if n++; n > 40000 {
			t.Fatalf("every line of the changed copy returned, then %q", g.Data)
		}
	}
	st := r.Stats()
	if st.CopiesFinished != 0 || st.Truncations != 1 {
		t.Errorf("Stats = %+v, want 1 truncation, no copy finished", st)
	}
	if n := logs.count(t, "warn", "changed while being read"); n != 1 {
		t.Errorf("%d warnings about the changed copy, want 1", n)
	}
}

// Case: several files could be the copy. Only a file whose name starts with
// the events file's, that is not compressed, whose first bytes match and
// that reaches the reader's offset is one; of those the newest wins (the
// older one sorts first by name, so that only the mtime decides).
func TestCopyChosenByFingerprintAndSize(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	a1 := "a1-" + strings.Repeat("x", 300) // longer than the fingerprint
	appendFile(t, path, a1+"\na2\n")
	r := open(t, path, follow.Position{}, testOptions(t))
	expect(t, r, a1, "a2")
	off := int64(len(a1) + 4)

	appendFile(t, path, "a3\na4\n")
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	candidates := []struct {
		name, data string
		age        time.Duration
	}{
		{"events.jsonl-20261203", a1 + "\na2\nstale\n", 2 * time.Hour}, // a copy, but an older one
		{"events.jsonl-20261204", string(old), time.Hour},              // the copy
		{"events.jsonl.3", string(old[:off-3]), 0},                     // too short
		{"events.jsonl.4", "z" + string(old[1:]) + "z\n", 0},           // other first bytes
		{"events.jsonl.1.gz", string(old) + "gz\n", 0},                 // compressed
		{"copy-of-events.jsonl", string(old) + "other name\n", 0},      // another name
		{"events.jsonl.5/", "", 0},                                     // a directory
	}
	for _, c := range candidates {
		name := filepath.Join(dir, c.name)
		if strings.HasSuffix(c.name, "/") {
			if err := os.Mkdir(name, 0o755); err != nil {
				t.Fatal(err)
			}
		} else {
			writeFile(t, name, c.data)
		}
		setMtime(t, name, now.Add(-c.age))
	}
	want := identify(t, filepath.Join(dir, "events.jsonl-20261204"))
	truncate(t, path, 0)
	appendFile(t, path, "b1\n")

	for _, l := range expect(t, r, "a3", "a4") {
		if l.File != want {
			t.Errorf("%s from %+v, want %+v", l.Data, l.File, want)
		}
	}
	expect(t, r, "b1")
	if n := r.Stats().CopiesFinished; n != 1 {
		t.Errorf("CopiesFinished = %d, want 1", n)
	}
}

// Case: rename-and-create rotation, then the renamed file is compressed and
// deleted (logrotate's compress without delaycompress) while the reader
// still lags behind in it. The reader holds it open, so its lines still
// come, from the open descriptor; then the descriptor is released and the
// new file read.
func TestRenamedThenDeletedWhileLagging(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	appendFile(t, path, "a1\n")
	clock := newFakeClock()
	opts := testOptions(t)
	opts.Now = clock.Now
	r := open(t, path, follow.Position{}, opts)
	a1 := expect(t, r, "a1")[0]
	appendFile(t, path, "a2\na3\n") // not read yet

	rotated := path + ".1"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, "b1\n")
	gzipFile(t, rotated, rotated+".gz")
	real, err := filepath.EvalSymlinks(rotated)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(rotated); err != nil {
		t.Fatal(err)
	}

	for _, l := range expect(t, r, "a2", "a3") {
		if !sameFile(l.File, a1.File) {
			t.Errorf("%s from inode %d, want the renamed file's %d", l.Data, l.File.Inode, a1.File.Inode)
		}
	}
	expectNone(t, r) // the clock has not moved: late writers may still come
	if !holdsDeleted(t, real) {
		t.Fatal("deleted rotated file released before RotateGrace")
	}

	clock.Advance(opts.RotateGrace)
	b1 := expect(t, r, "b1")[0]
	if id := identify(t, path); !sameFile(b1.File, id) || b1.Offset != 0 {
		t.Errorf("b1: inode %d offset %d, want %d at 0", b1.File.Inode, b1.Offset, id.Inode)
	}
	if holdsDeleted(t, real) {
		t.Error("deleted rotated file still open after moving to the new file")
	}
	if st := r.Stats(); st.Rotations != 1 || st.Truncations != 0 {
		t.Errorf("Stats = %+v, want 1 rotation, no truncation", st)
	}
}

// gzipFile compresses src into dst, as logrotate's compress does.
func gzipFile(t testing.TB, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var z bytes.Buffer
	w := gzip.NewWriter(&z)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dst, z.String())
}

func TestDeletedFileReleased(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	appendFile(t, path, "a1\n")
	clock := newFakeClock()
	opts := testOptions(t)
	opts.Now = clock.Now
	r := open(t, path, follow.Position{}, opts)
	expect(t, r, "a1")

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	expectNone(t, r) // notices the deletion
	if !r.HasFile() {
		t.Fatal("deleted file released before RotateGrace")
	}
	clock.Advance(opts.RotateGrace)
	expectNone(t, r)
	if r.HasFile() {
		t.Fatal("deleted file still open after RotateGrace")
	}

	appendFile(t, path, "b1\n")
	if l := expect(t, r, "b1")[0]; l.Offset != 0 {
		t.Errorf("b1 offset = %d, want 0", l.Offset)
	}
}

func TestRenamedFileKeptOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	appendFile(t, path, "a1\n")
	clock := newFakeClock()
	opts := testOptions(t)
	opts.Now = clock.Now
	r := open(t, path, follow.Position{}, opts)
	expect(t, r, "a1")

	// Renamed with no new file yet: the old one may still get lines.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	expectNone(t, r)
	clock.Advance(opts.RotateGrace)
	expectNone(t, r)
	if !r.HasFile() {
		t.Fatal("renamed file released while it still has a name")
	}
	appendFile(t, path+".1", "a2\n")
	expect(t, r, "a2")
	appendFile(t, path, "b1\n")
	clock.Advance(opts.RotateGrace)
	expect(t, r, "b1")
}

func TestInodeReuse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	appendFile(t, path, "new1\nnew2\n")
	id := identify(t, path)

	// A position taken in an older file that had the same device and inode.
	old := id
	old.Fingerprint ^= 1
	r := open(t, path, follow.Position{Path: path, File: old, Offset: 5}, testOptions(t))
	if l := expect(t, r, "new1")[0]; l.Offset != 0 {
		t.Errorf("offset = %d, want 0", l.Offset)
	}
}

func TestDeleteAndRecreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	appendFile(t, path, "old1\nold2\n")
	opts := testOptions(t)
	r := open(t, path, follow.Position{}, opts)
	saved := expect(t, r, "old1")[0].Position()
	r.Close()

	// The new file may or may not get the old inode; either way the
	// position must not apply to it.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, "NEW1\nNEW2\n")
	saved.Path = path
	r2 := open(t, path, saved, opts)
	expect(t, r2, "NEW1", "NEW2")
}

func TestResumeBeyondEnd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	appendFile(t, path, "a1\na2\n")
	id := identify(t, path)
	r := open(t, path, follow.Position{Path: path, File: id, Offset: 100}, testOptions(t))
	expect(t, r, "a1", "a2")
	if n := r.Stats().Truncations; n != 1 {
		t.Errorf("Truncations = %d, want 1", n)
	}
}

func TestFingerprintGrowsWithFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	appendFile(t, path, "a1\n")
	opts := testOptions(t)
	r := open(t, path, follow.Position{}, opts)
	a1 := expect(t, r, "a1")[0]
	if a1.File.FingerprintLen != 3 {
		t.Errorf("FingerprintLen = %d, want 3", a1.File.FingerprintLen)
	}

	long := strings.Repeat("z", 400)
	appendFile(t, path, long+"\n")
	l := expect(t, r, long)[0]
	if l.File.FingerprintLen != follow.FingerprintMax {
		t.Errorf("FingerprintLen = %d, want %d", l.File.FingerprintLen, follow.FingerprintMax)
	}
	r.Close()

	// Positions saved before and after the file grew both still match.
	appendFile(t, path, "a3\n")
	for _, p := range []got{a1, l} {
		pos := p.Position()
		pos.Path = path
		r2 := open(t, path, pos, opts)
		if g := next(t, r2); g.Offset != p.End {
			t.Errorf("resumed at %d, want %d", g.Offset, p.End)
		}
		r2.Close()
	}
}

func TestNULBytesSkipped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	nuls := string(make([]byte, 1000))
	appendFile(t, path, "a1\n"+nuls+"a2\nfrag"+nuls[:10]+"a3\n")
	r := open(t, path, follow.Position{}, testOptions(t))
	lines := expect(t, r, "a1", "a2", "a3")
	if lines[1].Offset != 1003 || lines[2].Offset != 1020 {
		t.Errorf("offsets %d %d, want 1003 1020", lines[1].Offset, lines[2].Offset)
	}

	// A NUL run at the end, continued by a later write.
	appendFile(t, path, nuls)
	expectNone(t, r)
	appendFile(t, path, "a4\n")
	expect(t, r, "a4")

	st := r.Stats()
	if st.NULBytes != 2010 || st.Fragments != 1 {
		t.Errorf("Stats = %+v, want 2010 NUL bytes, 1 fragment", st)
	}
}

func TestTooLongLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	appendFile(t, path, "short\n0123456789abcdef\nnext\n")
	opts := testOptions(t)
	opts.MaxLineBytes = 8
	r := open(t, path, follow.Position{}, opts)

	lines := expect(t, r, "short", "01234567", "next")
	if !lines[1].TooLong || lines[0].TooLong || lines[2].TooLong {
		t.Errorf("TooLong flags = %v %v %v, want false true false", lines[0].TooLong, lines[1].TooLong, lines[2].TooLong)
	}
	if lines[1].End != 23 || lines[2].Offset != 23 {
		t.Errorf("too long line ends at %d, next at %d, want 23 23", lines[1].End, lines[2].Offset)
	}

	// Arriving in pieces, longer than the limit before its end is seen.
	appendFile(t, path, "ABCDEFGHIJKL")
	expectNone(t, r)
	appendFile(t, path, "MNOP")
	expectNone(t, r)
	appendFile(t, path, "QR\nok\n")
	lines = expect(t, r, "ABCDEFGH", "ok")
	if !lines[0].TooLong || lines[0].Offset != 28 || lines[0].End != 47 {
		t.Errorf("split line: %+v, want too long from 28 to 47", lines[0])
	}
	if n := r.Stats().TooLong; n != 2 {
		t.Errorf("TooLong = %d, want 2", n)
	}
}

func TestMissingFileAtStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	r := open(t, path, follow.Position{}, testOptions(t))
	expectNone(t, r)
	appendFile(t, path, "a1\n")
	expect(t, r, "a1")
}

func TestMissingDirectoryAtStart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	path := filepath.Join(dir, "events.jsonl")
	r := open(t, path, follow.Position{}, testOptions(t))
	expectNone(t, r)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, "a1\n")
	expect(t, r, "a1")
}

func TestCheckpointGone(t *testing.T) {
	dir := t.TempDir()
	gone := filepath.Join(dir, "gone")
	appendFile(t, gone, "x\n")
	id := identify(t, gone)
	path := filepath.Join(dir, "events.jsonl")
	appendFile(t, path, "a1\n") // created while gone still exists: another inode
	if err := os.Remove(gone); err != nil {
		t.Fatal(err)
	}

	r := open(t, path, follow.Position{Path: path, File: id, Offset: 2}, testOptions(t))
	expect(t, r, "a1")
}

func TestClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	appendFile(t, path, "a1\n")
	r := open(t, path, follow.Position{}, testOptions(t))
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := r.Next(context.Background()); !errors.Is(err, follow.ErrClosed) {
		t.Fatalf("Next after Close: %v, want ErrClosed", err)
	}
}

func TestDataValidUntilNext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	appendFile(t, path, "a1\na2\n")
	r := open(t, path, follow.Position{}, testOptions(t))
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	l, err := r.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Appending to Data must not overwrite the next line in the buffer.
	_ = append(l.Data, 'X', 'X', 'X')
	l2, err := r.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(l2.Data, []byte("a2")) {
		t.Fatalf("second line = %q, want a2", l2.Data)
	}
}

func TestFingerprintIsFNV1a(t *testing.T) {
	// The fingerprint is stored in checkpoints: it must never change.
	path := filepath.Join(t.TempDir(), "events.jsonl")
	appendFile(t, path, "a\n")
	h := fnv.New64a()
	h.Write([]byte("a\n"))
	if id := identify(t, path); id.Fingerprint != h.Sum64() || id.FingerprintLen != 2 {
		t.Errorf("fingerprint %#x over %d bytes, want %#x over 2", id.Fingerprint, id.FingerprintLen, h.Sum64())
	}
}

func TestOpenErrorRetried(t *testing.T) {
	// The parent of the path is a file: opening fails with ENOTDIR, which is
	// not "missing" but must be retried all the same.
	parent := filepath.Join(t.TempDir(), "spool")
	appendFile(t, parent, "not a directory\n")
	path := filepath.Join(parent, "events.jsonl")
	r := open(t, path, follow.Position{}, testOptions(t))
	expectNone(t, r)

	if err := os.Remove(parent); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, "a1\n")
	expect(t, r, "a1")
}
