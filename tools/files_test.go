package tools

import (
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"dovecot-kafka/follow"
)

// The fingerprint must be the one package follow stores in checkpoints,
// for plain files and for the content of a gzip copy.
func TestFingerprintMatchesFollow(t *testing.T) {
	dir := t.TempDir()
	lines := exampleLines(t)
	for _, n := range []int{1, 3} { // shorter and longer than FingerprintMax
		plain := filepath.Join(dir, "plain")
		gz := filepath.Join(dir, "copy.gz")
		writeFile(t, plain, lines[:n])
		writeGzip(t, gz, lines[:n])
		id, _, err := follow.Identify(plain)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{plain, gz} {
			in, err := statInput(name)
			if err != nil {
				t.Fatal(err)
			}
			if in.gz != strings.HasSuffix(name, ".gz") {
				t.Errorf("%s: gz = %v", name, in.gz)
			}
			fp, ok, err := in.fingerprint(id.FingerprintLen)
			if err != nil || !ok || fp != id.Fingerprint {
				t.Errorf("%s (%d lines): fingerprint = %x, %v, %v; follow says %x", name, n, fp, ok, err, id.Fingerprint)
			}
		}
	}
}

func TestScanner(t *testing.T) {
	data := "short\n" + strings.Repeat("x", 20) + "\n\nlast"
	sc := newScanner(strings.NewReader(data), 100, 10)
	want := []struct {
		line    string
		start   int64
		tooLong bool
		err     error
	}{
		{"short", 100, false, nil},
		{"xxxxxxxxxx", 106, true, nil},
		{"", 127, false, nil},
		{"", 128, false, errPartial},
	}
	for i, w := range want {
		line, start, tooLong, err := sc.next()
		if string(line) != w.line || start != w.start || tooLong != w.tooLong || !errors.Is(err, w.err) {
			t.Errorf("line %d = %q at %d, tooLong %v, err %v; want %q at %d, %v, %v", i, line, start, tooLong, err, w.line, w.start, w.tooLong, w.err)
		}
	}
	sc = newScanner(strings.NewReader("a\n"), 0, 10)
	sc.next()
	if _, start, _, err := sc.next(); !errors.Is(err, io.EOF) || start != 2 {
		t.Errorf("at the end: %d, %v; want 2, EOF", start, err)
	}
}

func TestCheckLineStart(t *testing.T) {
	dir := t.TempDir()
	lines := exampleLines(t)[:5]
	size := offsetOf(lines, 5)
	writeFile(t, filepath.Join(dir, "plain"), lines)
	writeGzip(t, filepath.Join(dir, "copy.gz"), lines)
	for _, name := range []string{"plain", "copy.gz"} {
		in, err := statInput(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		for _, off := range []int64{0, offsetOf(lines, 2), size} {
			if err := in.checkLineStart(off); err != nil {
				t.Errorf("%s: offset %d: %v", name, off, err)
			}
		}
		err = in.checkLineStart(offsetOf(lines, 2) + 1)
		if !errors.Is(err, errNotLineStart) || !strings.Contains(err.Error(), "the next one at") {
			t.Errorf("%s: mid-line offset: %v", name, err)
		}
		if err := in.checkLineStart(size + 1); !errors.Is(err, errPastEnd) {
			t.Errorf("%s: past the end: %v", name, err)
		}
	}
}
