package follow

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// FingerprintMax is the number of leading bytes of a file that a fingerprint
// covers once the file is at least that long.
const FingerprintMax = 256

// FileID identifies one file independently of its name.
type FileID struct {
	Dev, Inode uint64
	// Fingerprint is a hash (64-bit FNV-1a) of the file's first
	// FingerprintLen bytes (at most FingerprintMax, fewer while the file is
	// shorter); it tells a new file that reuses an inode from the old one.
	Fingerprint    uint64
	FingerprintLen int
}

// IsZero reports whether id is unknown (no device and no inode number).
func (id FileID) IsZero() bool {
	return id.Dev == 0 && id.Inode == 0
}

// Position is where reading (re)starts.
type Position struct {
	// Path is the path given to [Open]. The file may since have been
	// renamed; File is what identifies it.
	Path string
	// File identifies the file; the zero FileID means unknown.
	File FileID
	// Offset is a byte offset in File, normally just past a '\n'.
	Offset int64
}

// Identify returns the identity of the file at path and its size, for
// example to build a [Position] at the current end of the file. A size taken
// while a writer is in the middle of a line points inside that line.
func Identify(path string) (FileID, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return FileID{}, 0, err
	}
	defer f.Close()

	id, info, err := identify(f)
	if err != nil {
		return FileID{}, 0, fmt.Errorf("identify %s: %w", path, err)
	}
	return id, info.size, nil
}

// fileInfo is what fstat tells about an open file, beyond its identity.
type fileInfo struct {
	size  int64
	nlink uint64
}

// errNoInode means the platform reported no device and inode numbers.
var errNoInode = errors.New("follow: no inode number available")

// identify returns the identity of f, with a fingerprint of as many of its
// first bytes as there are (up to FingerprintMax).
func identify(f *os.File) (FileID, fileInfo, error) {
	fi, err := f.Stat()
	if err != nil {
		return FileID{}, fileInfo{}, err
	}
	dev, ino, nlink, ok := sysInfo(fi)
	if !ok {
		return FileID{}, fileInfo{}, errNoInode
	}
	info := fileInfo{size: fi.Size(), nlink: nlink}

	fp, n, err := readFingerprint(f, FingerprintMax)
	if err != nil {
		return FileID{}, fileInfo{}, fmt.Errorf("read first bytes: %w", err)
	}
	return FileID{Dev: dev, Inode: ino, Fingerprint: fp, FingerprintLen: n}, info, nil
}

// readFingerprint hashes the first n bytes of f (at most FingerprintMax). It
// returns the number of bytes hashed, which is smaller when f is shorter.
func readFingerprint(f *os.File, n int) (uint64, int, error) {
	var b [FingerprintMax]byte
	n = min(max(n, 0), FingerprintMax)
	got, err := f.ReadAt(b[:n], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, 0, err
	}
	return fingerprint(b[:got]), got, nil
}

// fingerprint hashes b with 64-bit FNV-1a (the same as hash/fnv's New64a,
// without an allocation). The hash must stay stable across versions and
// machines, since checkpoints store it.
func fingerprint(b []byte) uint64 {
	const (
		offset64 = 14695981039346656037
		prime64  = 1099511628211
	)
	h := uint64(offset64)
	for _, c := range b {
		h ^= uint64(c)
		h *= prime64
	}
	return h
}

// matches reports whether f is the file that want identifies: the same
// device and inode, and first want.FingerprintLen bytes with the same hash.
// It also returns f's size.
func matches(f *os.File, want FileID) (bool, int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return false, 0, err
	}
	dev, ino, _, ok := sysInfo(fi)
	if !ok {
		return false, 0, errNoInode
	}
	if dev != want.Dev || ino != want.Inode {
		return false, fi.Size(), nil
	}
	if want.FingerprintLen < 0 || want.FingerprintLen > FingerprintMax {
		return false, fi.Size(), nil
	}

	fp, n, err := readFingerprint(f, want.FingerprintLen)
	if err != nil {
		return false, 0, fmt.Errorf("read first bytes: %w", err)
	}
	return n == want.FingerprintLen && fp == want.Fingerprint, fi.Size(), nil
}

// findFile looks in dir for a regular file whose identity is want, such as
// the rotated generation of the events file. It returns the open file and
// its name, or a nil file if there is none.
func findFile(dir string, want FileID) (*os.File, string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, "", err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed since ReadDir
		}
		dev, ino, _, ok := sysInfo(fi)
		if !ok || dev != want.Dev || ino != want.Inode {
			continue
		}

		name := filepath.Join(dir, e.Name())
		f, err := os.Open(name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, name, err
		}
		ok, _, err = matches(f, want)
		if err != nil || !ok {
			f.Close()
			if err != nil {
				return nil, name, fmt.Errorf("check %s: %w", name, err)
			}
			continue
		}
		return f, name, nil
	}
	return nil, "", nil
}

// compressedExts are name endings of compressed files. A search for the copy
// of a truncated file, or for the next generation of a rotated one, skips
// them: their bytes are not lines.
var compressedExts = []string{
	".gz", ".bz2", ".xz", ".zst", ".lz4", ".lzma", ".lz", ".Z", ".zip", ".br", ".sz",
}

// copyCandidate is a file that may be the copy of a truncated file.
type copyCandidate struct {
	name  string
	mtime int64 // nanoseconds since the epoch
	size  int64
}

// findCopy looks next to path for the copy that a copytruncate rotation made
// of the file want identified before it was truncated: a regular file other
// than want's device and inode and other than path itself, whose name starts
// with path's base name and does not end like a compressed file, and whose
// first want.FingerprintLen bytes hash to want.Fingerprint. Files at least
// minSize bytes long (the offset the reader had reached) come first, and
// among those the one modified last. A shorter one is taken only if there is
// no such file: the reader then read past the end of the copy before the
// truncation, and nothing in it is unread.
//
// It returns the open file, its name and size, or a nil file if there is
// none; the error, if any, says why a candidate could not be checked. A
// fingerprint of no bytes, or of fewer bytes than minSize while minSize is
// below FingerprintMax, cannot tell a copy from another file: then it finds
// nothing.
func findCopy(path string, want FileID, minSize int64) (*os.File, string, int64, error) {
	if want.FingerprintLen <= 0 || want.FingerprintLen > FingerprintMax ||
		int64(want.FingerprintLen) < min(minSize, FingerprintMax) {
		return nil, "", 0, nil
	}
	dir, base := filepath.Dir(path), filepath.Base(path)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, "", 0, err
	}

	// Cheap tests first, on what the directory listing tells.
	var cands []copyCandidate
	for _, e := range entries {
		name := e.Name()
		if name == base || !strings.HasPrefix(name, base) || isCompressed(name) {
			continue
		}
		if !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed since ReadDir
		}
		dev, ino, _, ok := sysInfo(fi)
		if !ok || (dev == want.Dev && ino == want.Inode) || fi.Size() < int64(want.FingerprintLen) {
			continue
		}
		cands = append(cands, copyCandidate{name, fi.ModTime().UnixNano(), fi.Size()})
	}

	// Long enough first, then newest first; on a tie the longer, then by
	// name, so that the choice does not depend on the order of the listing.
	reaches := func(c copyCandidate) int {
		if c.size >= minSize {
			return 1
		}
		return 0
	}
	slices.SortFunc(cands, func(a, b copyCandidate) int {
		return cmp.Or(
			cmp.Compare(reaches(b), reaches(a)),
			cmp.Compare(b.mtime, a.mtime),
			cmp.Compare(b.size, a.size),
			strings.Compare(a.name, b.name),
		)
	})
	// A candidate that cannot be read does not stop the search; its error
	// is returned only if no other candidate is the copy.
	var errs []error
	for _, c := range cands {
		name := filepath.Join(dir, c.name)
		f, size, err := openCopy(name, want)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if f != nil {
			return f, name, size, nil
		}
	}
	return nil, "", 0, errors.Join(errs...)
}

// openCopy opens name and, if it is a regular file that holds want's first
// bytes, returns it open with its size; otherwise a nil file.
func openCopy(name string, want FileID) (*os.File, int64, error) {
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, nil // removed since ReadDir, perhaps compressed
	}
	if err != nil {
		return nil, 0, err // names the file
	}

	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("stat %s: %w", name, err)
	}
	fp, n, err := readFingerprint(f, want.FingerprintLen)
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("read first bytes of %s: %w", name, err)
	}
	if !fi.Mode().IsRegular() || n != want.FingerprintLen || fp != want.Fingerprint {
		f.Close()
		return nil, 0, nil
	}
	return f, fi.Size(), nil
}

// isCompressed reports whether name ends like a compressed file.
func isCompressed(name string) bool {
	return compressedExt(name) != ""
}

// compressedExt returns the compressed-file ending of name, or "" if it has
// none.
func compressedExt(name string) string {
	for _, ext := range compressedExts {
		if strings.HasSuffix(name, ext) {
			return ext
		}
	}
	return ""
}

// sameInode reports whether f has id's device and inode number, whatever its
// first bytes.
func sameInode(f *os.File, id FileID) bool {
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	dev, ino, _, ok := sysInfo(fi)
	return ok && dev == id.Dev && ino == id.Inode
}
