package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"dovecot-kafka/follow"
)

// FormatVersion is the version of the checkpoint file format that Save
// writes and the newest that Load accepts.
const FormatVersion = 1

// ErrNoCheckpoint means that the checkpoint file does not exist: the daemon
// has never saved one at that path.
var ErrNoCheckpoint = errors.New("state: no checkpoint file")

// Checkpoint is the saved position in the events file.
type Checkpoint struct {
	Version int    // format version, FormatVersion
	Path    string // the events file's path when the checkpoint was taken
	// Dev, Inode, Fingerprint and FingerprintLen identify the file, which may
	// have been renamed since (see follow.FileID).
	Dev, Inode     uint64
	Fingerprint    uint64
	FingerprintLen int
	// Offset is the byte just past the last line that, with every line
	// before it, Kafka has acknowledged.
	Offset  int64
	Updated time.Time // when the checkpoint was saved
}

// Position returns where a follow.Reader resumes.
func (c Checkpoint) Position() follow.Position {
	return follow.Position{
		Path: c.Path,
		File: follow.FileID{
			Dev:            c.Dev,
			Inode:          c.Inode,
			Fingerprint:    c.Fingerprint,
			FingerprintLen: c.FingerprintLen,
		},
		Offset: c.Offset,
	}
}

// FromPosition returns the checkpoint for p, typically from
// [Tracker.Committed]. Save sets Updated.
func FromPosition(p follow.Position) Checkpoint {
	return Checkpoint{
		Version:        FormatVersion,
		Path:           p.Path,
		Dev:            p.File.Dev,
		Inode:          p.File.Inode,
		Fingerprint:    p.File.Fingerprint,
		FingerprintLen: p.File.FingerprintLen,
		Offset:         p.Offset,
	}
}

// CorruptError reports a checkpoint file that exists but cannot be used:
// empty, truncated, not the expected JSON, or written by a newer version.
// The daemon cannot know where to resume, so the operator has to choose.
type CorruptError struct {
	Path string // the checkpoint file
	Err  error  // what is wrong with it
}

func (e *CorruptError) Error() string {
	const msg = "state: checkpoint file %s is unusable (%v); choose where to resume and restart with -start-at beginning (send the whole events file again), -start-at end (skip what it holds now) or -start-at OFFSET (resume at that byte offset)"
	return fmt.Sprintf(msg, e.Path, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// fileFormat is the JSON form of a Checkpoint. Pointers tell a missing
// field from a zero one. The fingerprint is 16 hex digits, because JSON
// tools such as jq round integers above 2^53.
type fileFormat struct {
	Version        *int      `json:"version"`
	Path           string    `json:"path"`
	Dev            *uint64   `json:"dev"`
	Inode          *uint64   `json:"inode"`
	Fingerprint    *string   `json:"fingerprint"`
	FingerprintLen *int      `json:"fingerprint_len"`
	Offset         *int64    `json:"offset"`
	Updated        time.Time `json:"updated"`
}

// Store reads and writes the checkpoint file. Its methods are safe for
// concurrent use.
type Store struct {
	path string
	fs   fileSystem
	now  func() time.Time
	mu   sync.Mutex
}

// NewStore returns a Store for the checkpoint file at path. Save also
// writes path+".tmp" in the same directory.
func NewStore(path string) *Store {
	return &Store{path: path, fs: osFS{}, now: time.Now}
}

// Path returns the checkpoint file's path.
func (st *Store) Path() string { return st.path }

// Load reads the checkpoint. A missing file gives an error that wraps
// ErrNoCheckpoint. A file that exists but is empty, truncated, not a valid
// checkpoint or of a newer format version gives a *CorruptError. Other
// errors, such as permission denied, are returned wrapped. A leftover
// .tmp file from an interrupted Save is ignored.
func (st *Store) Load() (Checkpoint, error) {
	data, err := st.fs.ReadFile(st.path)
	if errors.Is(err, fs.ErrNotExist) {
		return Checkpoint{}, fmt.Errorf("read %s: %w", st.path, ErrNoCheckpoint)
	}
	if err != nil {
		return Checkpoint{}, fmt.Errorf("read checkpoint: %w", err)
	}

	cp, err := decode(data)
	if err != nil {
		return Checkpoint{}, &CorruptError{Path: st.path, Err: err}
	}
	return cp, nil
}

// Marshal encodes cp in the checkpoint file's format (version
// FormatVersion), ending in a newline. The exactly-once mode stores the
// same encoding in Kafka.
func Marshal(cp Checkpoint) ([]byte, error) {
	version := FormatVersion
	fp := fmt.Sprintf("%016x", cp.Fingerprint)
	data, err := json.Marshal(fileFormat{
		Version:        &version,
		Path:           cp.Path,
		Dev:            &cp.Dev,
		Inode:          &cp.Inode,
		Fingerprint:    &fp,
		FingerprintLen: &cp.FingerprintLen,
		Offset:         &cp.Offset,
		Updated:        cp.Updated.UTC(),
	})
	if err != nil {
		return nil, fmt.Errorf("encode checkpoint: %w", err)
	}
	return append(data, '\n'), nil
}

// Unmarshal decodes and checks data written by Marshal.
func Unmarshal(data []byte) (Checkpoint, error) { return decode(data) }

// decode parses and checks a checkpoint file's contents.
func decode(data []byte) (Checkpoint, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return Checkpoint{}, errors.New("file is empty")
	}
	var f fileFormat
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return Checkpoint{}, fmt.Errorf("decode JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Checkpoint{}, errors.New("data after the JSON object")
	}

	switch {
	case f.Version == nil:
		return Checkpoint{}, errors.New("no format version")
	case *f.Version > FormatVersion:
		return Checkpoint{}, fmt.Errorf("format version %d is newer than this program's %d",
			*f.Version, FormatVersion)
	case *f.Version < 1:
		return Checkpoint{}, fmt.Errorf("invalid format version %d", *f.Version)
	case f.Dev == nil, f.Inode == nil, f.Fingerprint == nil, f.FingerprintLen == nil,
		f.Offset == nil:
		return Checkpoint{}, errors.New("missing field")
	case *f.Offset < 0:
		return Checkpoint{}, fmt.Errorf("negative offset %d", *f.Offset)
	case *f.FingerprintLen < 0 || *f.FingerprintLen > follow.FingerprintMax:
		return Checkpoint{}, fmt.Errorf("fingerprint length %d out of range", *f.FingerprintLen)
	}
	if len(*f.Fingerprint) != 16 {
		return Checkpoint{}, fmt.Errorf("fingerprint %q is not 16 hex digits", *f.Fingerprint)
	}
	fp, err := strconv.ParseUint(*f.Fingerprint, 16, 64)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("fingerprint %q is not 16 hex digits", *f.Fingerprint)
	}

	return Checkpoint{
		Version:        *f.Version,
		Path:           f.Path,
		Dev:            *f.Dev,
		Inode:          *f.Inode,
		Fingerprint:    fp,
		FingerprintLen: *f.FingerprintLen,
		Offset:         *f.Offset,
		Updated:        f.Updated,
	}, nil
}

// Save replaces the checkpoint file with cp, written as version
// FormatVersion; a zero cp.Updated is set to the current time. After a
// crash the file holds either the previous checkpoint or this one, never a
// mixture: the new one is written to a .tmp file (a leftover one is
// overwritten) and synced, renamed over the old one, and the directory is
// synced. If writing, syncing or renaming fails, the previous checkpoint is
// left as it was. If only the final directory sync fails, the file already
// holds cp but a crash could bring the previous one back.
func (st *Store) Save(cp Checkpoint) error {
	switch {
	case cp.Offset < 0:
		return fmt.Errorf("state: negative checkpoint offset %d", cp.Offset)
	case cp.FingerprintLen < 0 || cp.FingerprintLen > follow.FingerprintMax:
		return fmt.Errorf("state: fingerprint length %d out of range", cp.FingerprintLen)
	}
	st.mu.Lock()
	defer st.mu.Unlock()

	if cp.Updated.IsZero() {
		cp.Updated = st.now()
	}
	data, err := Marshal(cp)
	if err != nil {
		return err
	}

	tmp := st.path + ".tmp"
	if err := st.writeFileSync(tmp, data); err != nil { // write, fsync, close
		st.fs.Remove(tmp) // best effort: the next Save overwrites it anyway
		return fmt.Errorf("write %s: %w", tmp, err)
	}

	if err := st.fs.Rename(tmp, st.path); err != nil {
		st.fs.Remove(tmp)
		return fmt.Errorf("rename checkpoint into place: %w", err)
	}
	return st.syncDir() // make the rename itself durable
}

// writeFileSync writes data to a new file name, syncs and closes it.
func (st *Store) writeFileSync(name string, data []byte) error {
	f, err := st.fs.Create(name, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// syncDir syncs the checkpoint's directory, so that a rename in it
// survives a crash.
func (st *Store) syncDir() error {
	dir := filepath.Dir(st.path)
	d, err := st.fs.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("open directory to sync: %w", err)
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return d.Close()
}
