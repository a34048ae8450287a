package state

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"dovecot-kafka/follow"
)

func sample() Checkpoint {
	return Checkpoint{
		Version:        FormatVersion,
		Path:           "/var/spool/dovecot-kafka/events.jsonl",
		Dev:            2049,
		Inode:          1234567,
		Fingerprint:    0xfedcba9876543210, // above 2^53: must survive JSON
		FingerprintLen: 256,
		Offset:         987654,
		Updated:        time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC),
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	st := NewStore(filepath.Join(t.TempDir(), "checkpoint.json"))
	want := sample()
	if err := st.Save(want); err != nil {
		t.Fatalf("Save: %v", err)
	}
	got, err := st.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !got.Updated.Equal(want.Updated) {
		t.Errorf("Updated = %v, want %v", got.Updated, want.Updated)
	}
	got.Updated = want.Updated
	if got != want {
		t.Errorf("Load = %+v, want %+v", got, want)
	}
	if _, err := os.Stat(st.Path() + ".tmp"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf(".tmp left behind: %v", err)
	}

	// A second Save replaces the first.
	want.Offset = 1000000
	if err := st.Save(want); err != nil {
		t.Fatalf("Save: %v", err)
	}
	if got, err := st.Load(); err != nil || got.Offset != want.Offset {
		t.Errorf("Load = %+v, %v; want offset %d", got, err, want.Offset)
	}
}

func TestPositionRoundTrip(t *testing.T) {
	p := follow.Position{
		Path:   "/x/events.jsonl",
		File:   follow.FileID{Dev: 1, Inode: 2, Fingerprint: 3, FingerprintLen: 4},
		Offset: 5,
	}
	cp := FromPosition(p)
	if cp.Version != FormatVersion {
		t.Errorf("Version = %d, want %d", cp.Version, FormatVersion)
	}
	if got := cp.Position(); got != p {
		t.Errorf("Position() = %+v, want %+v", got, p)
	}
}

func TestSaveSetsUpdated(t *testing.T) {
	st := NewStore(filepath.Join(t.TempDir(), "checkpoint.json"))
	now := time.Date(2030, 6, 7, 8, 9, 10, 0, time.UTC)
	st.now = func() time.Time { return now }
	if err := st.Save(FromPosition(follow.Position{Path: "p", Offset: 3})); err != nil {
		t.Fatal(err)
	}
	got, err := st.Load()
	if err != nil {
		t.Fatal(err)
	}
	if !got.Updated.Equal(now) {
		t.Errorf("Updated = %v, want %v", got.Updated, now)
	}
}

func TestLoadMissing(t *testing.T) {
	st := NewStore(filepath.Join(t.TempDir(), "checkpoint.json"))
	_, err := st.Load()
	if !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("Load = %v, want ErrNoCheckpoint", err)
	}
	var ce *CorruptError
	if errors.As(err, &ce) {
		t.Errorf("missing file reported as corrupt: %v", err)
	}
}

func TestLeftoverTmp(t *testing.T) {
	st := NewStore(filepath.Join(t.TempDir(), "checkpoint.json"))
	want := sample()
	if err := st.Save(want); err != nil {
		t.Fatal(err)
	}

	// A crash during the next Save left a half-written .tmp file.
	if err := os.WriteFile(st.Path()+".tmp", []byte(`{"version":1,"pa`), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := st.Load(); err != nil || got.Offset != want.Offset {
		t.Fatalf("Load with leftover .tmp = %+v, %v; want offset %d", got, err, want.Offset)
	}

	want.Offset++
	if err := st.Save(want); err != nil {
		t.Fatalf("Save over leftover .tmp: %v", err)
	}
	if got, err := st.Load(); err != nil || got.Offset != want.Offset {
		t.Fatalf("Load = %+v, %v; want offset %d", got, err, want.Offset)
	}
}

func TestLoadCorrupt(t *testing.T) {
	valid := `{"version":1,"path":"/e","dev":1,"inode":2,"fingerprint":"00000000000000ff","fingerprint_len":3,"offset":4,"updated":"2025-01-02T03:04:05Z"}`
	tests := []struct {
		name, data, want string
	}{
		{"empty", "", "empty"},
		{"blank", " \n", "empty"},
		{"truncated", valid[:40], "unexpected EOF"},
		{"garbage", "\x00\x00\x00\x00", "invalid character"},
		{"not an object", `[1,2]`, "cannot unmarshal"},
		{"future version", strings.Replace(valid, `"version":1`, `"version":2`, 1), "newer"},
		{"zero version", strings.Replace(valid, `"version":1`, `"version":0`, 1), "version 0"},
		{"no version", strings.Replace(valid, `"version":1,`, ``, 1), "no format version"},
		{"no offset", strings.Replace(valid, `"offset":4,`, ``, 1), "missing field"},
		{"negative offset", strings.Replace(valid, `"offset":4`, `"offset":-4`, 1), "negative offset"},
		{"bad fingerprint", strings.Replace(valid, `00000000000000ff`, `zz`, 1), "fingerprint"},
		{"fingerprint length", strings.Replace(valid, `"fingerprint_len":3`, `"fingerprint_len":300`, 1), "out of range"},
		{"unknown field", strings.Replace(valid, `"path"`, `"paht"`, 1), "unknown field"},
		{"trailing data", valid + `{}`, "after the JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "checkpoint.json")
			if err := os.WriteFile(path, []byte(tt.data), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := NewStore(path).Load()
			var ce *CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("Load = %v, want *CorruptError", err)
			}
			if ce.Path != path {
				t.Errorf("Path = %q, want %q", ce.Path, path)
			}
			msg := err.Error()
			for _, s := range []string{path, tt.want, "-start-at beginning", "-start-at end", "-start-at OFFSET"} {
				if !strings.Contains(msg, s) {
					t.Errorf("error %q does not mention %q", msg, s)
				}
			}
			if errors.Is(err, ErrNoCheckpoint) {
				t.Errorf("corrupt file reported as missing")
			}
		})
	}

	// The valid form used above does load.
	path := filepath.Join(t.TempDir(), "checkpoint.json")
	if err := os.WriteFile(path, []byte(valid+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if cp, err := NewStore(path).Load(); err != nil || cp.Fingerprint != 0xff || cp.Offset != 4 {
		t.Errorf("Load = %+v, %v", cp, err)
	}
}

func TestSaveRejectsInvalid(t *testing.T) {
	st := NewStore(filepath.Join(t.TempDir(), "checkpoint.json"))
	bad := sample()
	bad.Offset = -1
	if err := st.Save(bad); err == nil {
		t.Error("Save accepted a negative offset")
	}
	bad = sample()
	bad.FingerprintLen = follow.FingerprintMax + 1
	if err := st.Save(bad); err == nil {
		t.Error("Save accepted an oversized fingerprint length")
	}
}

var errInjected = errors.New("injected fault")

// faultFS is the real file system with chosen operations failing.
type faultFS struct {
	osFS
	failSync, failRename, failWrite, failDirSync bool
}

type faultFile struct {
	syncFile
	fs *faultFS
}

func (f *faultFS) Create(name string, perm fs.FileMode) (syncFile, error) {
	file, err := f.osFS.Create(name, perm)
	if err != nil {
		return nil, err
	}
	return faultFile{file, f}, nil
}

func (f *faultFS) OpenDir(name string) (syncFile, error) {
	d, err := f.osFS.OpenDir(name)
	if err != nil {
		return nil, err
	}
	if f.failDirSync {
		return faultFile{d, &faultFS{failSync: true}}, nil
	}
	return d, nil
}

func (f *faultFS) Rename(oldname, newname string) error {
	if f.failRename {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: errInjected}
	}
	return f.osFS.Rename(oldname, newname)
}

func (f faultFile) Write(p []byte) (int, error) {
	if f.fs.failWrite {
		n, _ := f.syncFile.Write(p[:len(p)/2]) // a short write
		return n, errInjected
	}
	return f.syncFile.Write(p)
}

func (f faultFile) Sync() error {
	if f.fs.failSync {
		return errInjected
	}
	return f.syncFile.Sync()
}

func TestSaveFailureKeepsPrevious(t *testing.T) {
	tests := []struct {
		name string
		ffs  faultFS
	}{
		{"fsync", faultFS{failSync: true}},
		{"rename", faultFS{failRename: true}},
		{"write", faultFS{failWrite: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := NewStore(filepath.Join(t.TempDir(), "checkpoint.json"))
			old := sample()
			if err := st.Save(old); err != nil {
				t.Fatal(err)
			}

			ffs := tt.ffs
			st.fs = &ffs
			next := old
			next.Offset += 100
			if err := st.Save(next); !errors.Is(err, errInjected) {
				t.Fatalf("Save = %v, want the injected error", err)
			}

			got, err := st.Load()
			if err != nil {
				t.Fatalf("Load after failed Save: %v", err)
			}
			if got.Offset != old.Offset {
				t.Errorf("offset after failed Save = %d, want the previous %d", got.Offset, old.Offset)
			}

			// Once the fault is gone, Save works again.
			st.fs = osFS{}
			if err := st.Save(next); err != nil {
				t.Fatalf("Save after recovery: %v", err)
			}
			if got, err := st.Load(); err != nil || got.Offset != next.Offset {
				t.Errorf("Load = %+v, %v; want offset %d", got, err, next.Offset)
			}
		})
	}
}

func TestSaveDirSyncFailureReported(t *testing.T) {
	st := NewStore(filepath.Join(t.TempDir(), "checkpoint.json"))
	st.fs = &faultFS{failDirSync: true}
	if err := st.Save(sample()); !errors.Is(err, errInjected) {
		t.Fatalf("Save = %v, want the injected error", err)
	}
}
