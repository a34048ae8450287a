package tools

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"sync/atomic"
	"syscall"

	"dovecot-kafka/follow"
)

// inputFile is one events file to read: the current file, a rotated
// generation, or a gzip-compressed copy of one. Offsets always count bytes
// of the content, that is of the uncompressed lines, so an offset taken in
// a file stays valid in its compressed copy.
type inputFile struct {
	name       string
	gz         bool   // gzip content, recognised by its magic bytes
	size       int64  // bytes on disk
	dev, inode uint64 // of the file on disk
}

// statInput looks at the file name without reading its lines.
func statInput(name string) (*inputFile, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	in := &inputFile{name: name, size: fi.Size()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		in.dev, in.inode = uint64(st.Dev), st.Ino
	}

	var magic [2]byte
	if n, _ := f.ReadAt(magic[:], 0); n == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		in.gz = true
	}
	return in, nil
}

// content is an open input file's content.
type content struct {
	io.Reader
	close func() error
}

func (c *content) Close() error { return c.close() }

// open returns the file's content from offset at on; disk counts the bytes
// read from disk (compressed ones for a gzip file), for progress reports.
// In a gzip file the bytes before at are decompressed and thrown away. An
// offset past the end gives io.ErrUnexpectedEOF.
func (in *inputFile) open(at int64, disk *atomic.Int64) (*content, error) {
	f, err := os.Open(in.name)
	if err != nil {
		return nil, err
	}
	if !in.gz {
		if at > in.size {
			f.Close()
			return nil, io.ErrUnexpectedEOF
		}
		if _, err := f.Seek(at, io.SeekStart); err != nil {
			f.Close()
			return nil, err
		}
		if disk != nil {
			disk.Add(at)
		}
		return &content{Reader: &countingReader{r: f, n: disk}, close: f.Close}, nil
	}

	zr, err := gzip.NewReader(&countingReader{r: f, n: disk})
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("read gzip header: %w", err)
	}
	if _, err := io.CopyN(io.Discard, zr, at); err != nil {
		f.Close()
		if errors.Is(err, io.EOF) {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("decompress: %w", err)
	}
	return &content{Reader: zr, close: f.Close}, nil
}

// countingReader adds the bytes read to n, if n is set.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	if c.n != nil {
		c.n.Add(int64(k))
	}
	return k, err
}

// fingerprint hashes the first n bytes of the file's content the way
// package follow identifies files (64-bit FNV-1a of at most
// follow.FingerprintMax bytes). ok is false when the content is shorter
// than n.
func (in *inputFile) fingerprint(n int) (fp uint64, ok bool, err error) {
	c, err := in.open(0, nil)
	if err != nil {
		return 0, false, err
	}
	defer c.Close()

	buf := make([]byte, min(max(n, 0), follow.FingerprintMax))
	got, err := io.ReadFull(c, buf)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return 0, false, err
	}
	h := fnv.New64a()
	h.Write(buf[:got])
	return h.Sum64(), got == n, nil
}

// Reasons an offset is not a position.
var (
	errPastEnd      = errors.New("past the end of the file")
	errNotLineStart = errors.New("not at the start of a line")
)

// checkLineStart checks that off is 0 or just past a '\n' in the file's
// content. Otherwise it returns errPastEnd or errNotLineStart wrapped with
// the nearest line starts, for the operator to choose from.
func (in *inputFile) checkLineStart(off int64) error {
	if off == 0 {
		return nil
	}
	c, err := in.open(off-1, nil)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("offset %d in %s: %w (%s)", off, in.name, errPastEnd, in.describeEnd())
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", in.name, err)
	}
	var b [1]byte
	_, err = io.ReadFull(c, b[:])
	c.Close()
	switch {
	case errors.Is(err, io.EOF):
		return fmt.Errorf("offset %d in %s: %w (%s)", off, in.name, errPastEnd, in.describeEnd())
	case err != nil:
		return fmt.Errorf("read %s: %w", in.name, err)
	case b[0] == '\n':
		return nil
	}
	prev, next, err := in.lineStartsAround(off)
	if err != nil {
		return fmt.Errorf("offset %d in %s: %w", off, in.name, errNotLineStart)
	}
	hint := fmt.Sprintf("the line there starts at %d", prev)
	if next >= 0 {
		hint += fmt.Sprintf(", the next one at %d", next)
	}
	return fmt.Errorf("offset %d in %s: %w (the byte before it is not a newline; %s)", off, in.name, errNotLineStart, hint)
}

// describeEnd says how long the content is, for messages.
func (in *inputFile) describeEnd() string {
	if in.gz {
		n, err := in.contentSize()
		if err != nil {
			return "gzip content unreadable"
		}
		return fmt.Sprintf("its content is %d bytes", n)
	}
	return fmt.Sprintf("it is %d bytes", in.size)
}

// contentSize returns the length of the file's content.
func (in *inputFile) contentSize() (int64, error) {
	if !in.gz {
		return in.size, nil
	}
	c, err := in.open(0, nil)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return io.Copy(io.Discard, c)
}

// lineStartsAround returns where the line holding off starts and where the
// next line starts (-1 if there is no complete next line).
func (in *inputFile) lineStartsAround(off int64) (prev, next int64, err error) {
	c, err := in.open(0, nil)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()

	r := bufio.NewReaderSize(c, 64<<10)
	var pos int64
	for {
		chunk, err := r.ReadSlice('\n')
		end := pos + int64(len(chunk))
		if err == nil && end > off {
			return prev, end, nil
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if errors.Is(err, io.EOF) {
				return prev, -1, nil
			}
			return 0, 0, err
		}
		if err == nil {
			prev = end
		}
		pos = end
	}
}

// scanner splits content into lines and tracks their offsets.
type scanner struct {
	r       *bufio.Reader
	off     int64 // offset of the next byte
	maxLine int
	buf     []byte
}

func newScanner(r io.Reader, off int64, maxLine int) *scanner {
	return &scanner{r: bufio.NewReaderSize(r, 256<<10), off: off, maxLine: maxLine}
}

// errPartial reports bytes after the last newline: a line still being
// written, or one cut off.
var errPartial = errors.New("incomplete last line (no newline)")

// next returns the next line without its '\n' and the offset where it
// starts. A line longer than maxLine comes back shortened with tooLong
// set. At the end of the content it returns io.EOF, or errPartial when
// bytes without a newline are left (start is then where they begin).
func (s *scanner) next() (line []byte, start int64, tooLong bool, err error) {
	start = s.off
	s.buf = s.buf[:0]
	for {
		chunk, err := s.r.ReadSlice('\n')
		s.off += int64(len(chunk))
		if !tooLong {
			if len(s.buf)+len(chunk) > s.maxLine+1 { // +1: the '\n' does not count
				s.buf = append(s.buf, chunk[:max(s.maxLine-len(s.buf), 0)]...)
				tooLong = true
			} else {
				s.buf = append(s.buf, chunk...)
			}
		}
		switch {
		case err == nil:
			if !tooLong {
				return s.buf[:len(s.buf)-1], start, false, nil
			}
			return s.buf, start, true, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if s.off == start {
				return nil, start, false, io.EOF
			}
			return nil, start, false, errPartial
		default:
			return nil, start, false, err
		}
	}
}

// countLines counts the complete lines in r and tells whether bytes
// without a newline follow the last one.
func countLines(r io.Reader) (lines, bytesRead int64, partial bool, err error) {
	buf := make([]byte, 256<<10)
	var last byte = '\n'
	for {
		n, err := r.Read(buf)
		if n > 0 {
			lines += int64(bytes.Count(buf[:n], []byte{'\n'}))
			bytesRead += int64(n)
			last = buf[n-1]
		}
		if errors.Is(err, io.EOF) {
			return lines, bytesRead, last != '\n', nil
		}
		if err != nil {
			return lines, bytesRead, false, err
		}
	}
}
