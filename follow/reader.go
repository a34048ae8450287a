package follow

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"
)

// ErrClosed is returned by [Reader.Next] after [Reader.Close].
var ErrClosed = errors.New("follow: reader closed")

const (
	defaultMaxLineBytes     = 1 << 20
	defaultPollInterval     = 250 * time.Millisecond
	defaultRotateGrace      = 2 * time.Second
	defaultMaxRetryInterval = 4 * time.Second

	bufSize = 256 << 10 // initial buffer size, and so the size of most reads
	minRead = 64 << 10  // room the buffer always has before a read

	warnInterval = 30 * time.Second // a repeating warning is logged at most this often
)

// Line is one complete line of the events file.
type Line struct {
	// Pos is where the line starts. Pos.File is the file it came from, with
	// the fingerprint known when the line was read.
	Pos Position
	// End is the offset just past the line's '\n': the offset to save once
	// this line and every line before it are done with.
	End int64
	// Data is the line without its '\n'. It is valid only until the next call
	// to Next.
	Data []byte
	// TooLong reports that the line was longer than MaxLineBytes: Data holds
	// its first MaxLineBytes bytes, the rest was skipped. The Reader counts
	// such lines but does not log them; the caller decides what to do.
	TooLong bool
}

// Options configures a [Reader]. The zero value gives the defaults.
type Options struct {
	// MaxLineBytes is the length of the longest line, without its '\n',
	// that is returned whole (default 1 MiB). The buffer grows up to about
	// this size plus 64 KiB.
	MaxLineBytes int
	// PollInterval is how often an idle file is checked for new data,
	// rotation and truncation (default 250ms). An fsnotify event on the
	// file's directory wakes the reader earlier.
	PollInterval time.Duration
	// RotateGrace is how long a rotated-away or deleted file is still read
	// after it last grew, or after the rotation was noticed if that is
	// later, so that lines from late writers are not lost (default 2s).
	// A rotated generation read on the way to the current file (see
	// Generations in the package doc) is left the same way: RotateGrace
	// after it last grew, or after it was opened if that is later.
	RotateGrace time.Duration
	// MaxRetryInterval caps the backoff between attempts to open a missing
	// or unreadable file, or to read after an I/O error (default 4s). The
	// backoff starts at PollInterval and doubles.
	MaxRetryInterval time.Duration
	// Log receives warnings and lifecycle events, with the path added to
	// each; the caller sets the component field. The zero Logger discards
	// them.
	Log zerolog.Logger
	// Now is the clock used for RotateGrace and for rate-limiting warnings
	// (default time.Now). Tests replace it to decide when a rotated-away
	// file is left; polling always uses real timers.
	Now func() time.Time
}

// Stats counts what a [Reader] has seen since [Open].
type Stats struct {
	Lines uint64 // lines returned, TooLong ones included
	Bytes uint64 // bytes of the lines returned, '\n' included
	// Rotations counts moves from a rotated-away file to the generation
	// that follows it: a rotated generation not read yet, or the file at
	// the path. Two rotations read one after the other count two.
	Rotations uint64
	// GenerationsMissed counts rotated generations that were gone
	// (compressed, or deleted) before the reader got to them: their lines
	// are lost. Each is logged as a warning with its name. See Generations
	// in the package doc for which ones can be noticed.
	GenerationsMissed uint64
	// Truncations counts truncations noticed: the file shrank below the
	// offset, or its first bytes changed, while it was read or since the
	// start position was saved. For each, a copy of the file was found
	// (counted in CopiesFinished once read to its end) or not (counted in
	// CopiesMissing).
	Truncations uint64
	// CopiesFinished counts copies of a truncated file (see copytruncate in
	// the package doc) read to their end, including copies that ended
	// before the reader's offset and so held nothing unread.
	CopiesFinished uint64
	// CopiesMissing counts truncations for which no copy was found: the
	// file was read again from offset 0, and the lines not yet read when it
	// was truncated may be lost.
	CopiesMissing uint64
	TooLong       uint64 // lines longer than MaxLineBytes
	NULBytes      uint64 // NUL bytes skipped
	// Fragments counts incomplete lines dropped: cut off by NUL bytes, or
	// left at the end of a file that was rotated away or deleted, or at the
	// end of the copy of a truncated file.
	Fragments uint64
}

// counters are the Stats of a Reader, readable from any goroutine.
type counters struct {
	lines, bytes, rotations, truncations, copiesFinished, copiesMissing atomic.Uint64
	tooLong, nulBytes, fragments, generationsMissed                     atomic.Uint64
}

// Reader follows the events file. Its methods must be called from one
// goroutine at a time, except Stats, which may be called at any time.
type Reader struct {
	path string
	opts Options
	log  zerolog.Logger
	now  func() time.Time

	start    Position // the position given to Open
	resolved bool     // start has been matched against the files on disk

	f       *os.File // the file being read; nil while waiting for the path
	id      FileID   // f's identity, with its fingerprint as read so far
	readOff int64    // where the next read from f starts

	// The buffer holds the current line, which starts at buf[r0] and at
	// lineOff in the file, up to buf[w]; buf[r0:scan] holds no '\n'. A
	// line longer than MaxLineBytes keeps only its first MaxLineBytes bytes
	// in the buffer; skipped counts the bytes dropped after them.
	buf     []byte
	maxBuf  int
	r0      int
	scan    int
	w       int
	lineOff int64
	skipped int64
	tooLong bool
	inNUL   bool // the last byte looked at was a skipped NUL

	// While copying is set, f is the copy that a copytruncate rotation made
	// of a truncated file, and after is the truncated file itself, to be
	// read from offset 0 once the copy is finished.
	copying bool
	after   *os.File

	// away is set while the path names another file than f, or none.
	away       bool
	awaySince  time.Time
	lastGrowth time.Time

	// Generations (see the package doc). birth enables birth times;
	// finished holds the files left since Open, the latest last; while
	// hasLeft is set, f is nil and left is the file released last, which
	// the next file opened must follow. missedSeen is set once gone
	// generations were found, until a second look confirms them.
	birth      bool
	finished   []leftFile
	left       leftFile
	hasLeft    bool
	missedSeen bool

	missing bool          // the path was missing at the last attempt
	backoff time.Duration // current retry interval, 0 after a success
	timer   *time.Timer

	watcher   *fsnotify.Watcher
	watchDir  string
	watching  bool
	wake      chan struct{}
	watchDone chan struct{}

	closed bool
	n      counters

	limOpen, limRead, limStat, limNUL, limFrag, limWatch, limCopy, limNext limiter
}

// Open returns a Reader of the file at path that starts at start. It does
// not fail when the file is missing or unreadable: Next waits and retries.
//
// Where reading starts:
//   - start.File is zero: at the beginning of the file now at path.
//   - start.File is the file now at path (same device, inode and
//     fingerprint): at start.Offset.
//   - start.File is another file in the same directory, such as the rotated
//     generation events.jsonl.1: at start.Offset in that file, and then at
//     the beginning of the file at path.
//   - start.File is nowhere to be found: a warning, and the beginning of the
//     file at path. While the path itself is missing, Next waits for it
//     before deciding.
//
// If the file found is shorter than start.Offset, or it is the file at path
// (same device and inode) but its first bytes changed, it was truncated
// since the position was saved. Then, if the directory holds a copy of it
// as it was (see copytruncate in the package doc), reading starts at
// start.Offset in the copy and goes on at the beginning of the truncated
// file; without a copy, a warning, and the beginning of the truncated file.
// The file at path need not be the one start.Path named when the position
// was saved; the identity decides.
func Open(path string, start Position, opts Options) (*Reader, error) {
	switch {
	case path == "":
		return nil, errors.New("follow: empty path")
	case start.Offset < 0:
		return nil, fmt.Errorf("follow: negative start offset %d", start.Offset)
	case opts.MaxLineBytes < 0, opts.PollInterval < 0, opts.RotateGrace < 0, opts.MaxRetryInterval < 0:
		return nil, errors.New("follow: negative option")
	}
	if opts.MaxLineBytes == 0 {
		opts.MaxLineBytes = defaultMaxLineBytes
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = defaultPollInterval
	}
	if opts.RotateGrace == 0 {
		opts.RotateGrace = defaultRotateGrace
	}
	if opts.MaxRetryInterval == 0 {
		opts.MaxRetryInterval = defaultMaxRetryInterval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}

	r := &Reader{
		path:     path,
		opts:     opts,
		log:      opts.Log.With().Str("path", path).Logger(),
		now:      opts.Now,
		start:    start,
		buf:      make([]byte, bufSize),
		maxBuf:   max(bufSize, opts.MaxLineBytes+minRead),
		watchDir: filepath.Dir(path),
		wake:     make(chan struct{}, 1),
		birth:    useBirthTime,
	}
	r.startWatcher()
	r.tryOpen() // on failure Next retries
	return r, nil
}

// Next returns the next complete line. It blocks until there is one or ctx
// is done, in which case it returns ctx.Err(). It never returns io.EOF: at
// the end of the file it waits for more. A missing file, permission errors
// and I/O errors are logged (rate-limited) and retried.
func (r *Reader) Next(ctx context.Context) (Line, error) {
	if r.closed {
		return Line{}, ErrClosed
	}
	for {
		if line, ok := r.nextLine(); ok {
			return line, nil
		}
		if err := ctx.Err(); err != nil {
			return Line{}, err
		}

		if r.f == nil {
			if !r.tryOpen() {
				r.ensureWatch()
				if err := r.sleep(ctx, r.nextBackoff()); err != nil {
					return Line{}, err
				}
			}
			continue
		}

		n, err := r.fill()
		if err != nil {
			r.rateWarn(&r.limRead).Err(err).
				Uint64("inode", r.id.Inode).
				Int64("offset", r.readOff).
				Msg("cannot read events file, will retry")
			if err := r.sleep(ctx, r.nextBackoff()); err != nil {
				return Line{}, err
			}
			continue
		}
		if n > 0 {
			r.backoff = 0
			continue
		}

		// End of the file: see whether it was truncated or replaced.
		if r.copying {
			r.leaveCopy(true) // a copy is complete: nobody writes to it
			continue
		}
		if r.checkFile() {
			continue
		}
		r.ensureWatch()
		if err := r.sleep(ctx, r.opts.PollInterval); err != nil {
			return Line{}, err
		}
	}
}

// Close releases the file and the directory watch. It must not be called
// while Next is running: cancel Next's context first. Next returns
// ErrClosed afterwards.
func (r *Reader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true

	var errs []error
	if r.f != nil {
		errs = append(errs, r.f.Close())
		r.f = nil
	}
	if r.after != nil {
		errs = append(errs, r.after.Close())
		r.after = nil
	}
	if r.watcher != nil {
		errs = append(errs, r.watcher.Close())
		<-r.watchDone
	}
	if r.timer != nil {
		r.timer.Stop()
	}
	return errors.Join(errs...)
}

// Stats returns the counters since Open. It is safe to call concurrently
// with the other methods.
func (r *Reader) Stats() Stats {
	return Stats{
		Lines:          r.n.lines.Load(),
		Bytes:          r.n.bytes.Load(),
		Rotations:      r.n.rotations.Load(),
		Truncations:    r.n.truncations.Load(),
		CopiesFinished: r.n.copiesFinished.Load(),
		CopiesMissing:  r.n.copiesMissing.Load(),
		TooLong:        r.n.tooLong.Load(),
		NULBytes:       r.n.nulBytes.Load(),
		Fragments:      r.n.fragments.Load(),

		GenerationsMissed: r.n.generationsMissed.Load(),
	}
}

// tryOpen opens the file to read: at first the one start points to, then
// the generation that follows the file released last, if any, else the
// file at the path. It logs a failure and reports success.
func (r *Reader) tryOpen() bool {
	var err error
	switch {
	case !r.resolved:
		err = r.resolveStart()
	case r.hasLeft:
		err = r.openAfterLeft()
	default:
		err = r.openPath()
	}

	switch {
	case err == nil:
		if r.missing {
			r.missing = false
			r.log.Info().Uint64("inode", r.id.Inode).Msg("events file appeared")
		}
		r.backoff = 0
		return true
	case errors.Is(err, fs.ErrNotExist):
		if !r.missing {
			r.missing = true
			r.log.Warn().Msg("events file missing, waiting for it to appear")
		}
	case errors.Is(err, errNotYet):
		// Gone generations seen once: look again before reporting them.
	default:
		r.rateWarn(&r.limOpen).Err(err).Msg("cannot open events file, will retry")
	}
	return false
}

// resolveStart finds the file that r.start points to and opens it at
// r.start.Offset, as described at Open. It leaves r.resolved unset when the
// answer may still change: the path is missing and the start file was not
// found, or a file could not be opened.
func (r *Reader) resolveStart() error {
	s := r.start
	if s.File.IsZero() {
		if s.Offset != 0 {
			r.log.Info().
				Int64("offset", s.Offset).
				Msg("start position names no file, starting at the beginning")
		}
		r.resolved = true
		if err := r.openPath(); err != nil {
			return err
		}
		r.log.Info().Uint64("inode", r.id.Inode).Msg("reading events file from the beginning")
		return nil
	}

	// Is it still the file at the path?
	f, err := os.Open(r.path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	pathMissing := err != nil
	if err == nil {
		ok, size, err := matches(f, s.File)
		if err != nil {
			f.Close()
			return fmt.Errorf("check %s: %w", r.path, err)
		}
		if ok {
			return r.resume(f, r.path, size, false)
		}
		// The same file with other first bytes: truncated, perhaps
		// written again past the saved offset, or a new file that got
		// the inode of a deleted one. Both start at the beginning, after
		// the copy of the old content if there is one.
		if sameInode(f, s.File) {
			return r.resumeTruncated(f, r.path, size, false)
		}
		f.Close()
	}

	// Look for it under another name next to the path: the rotated
	// generation, such as events.jsonl.1.
	dirs := []string{filepath.Dir(r.path)}
	if s.Path != "" && filepath.Dir(s.Path) != dirs[0] {
		dirs = append(dirs, filepath.Dir(s.Path))
	}
	for _, dir := range dirs {
		old, name, err := findFile(dir, s.File)
		if err != nil && name != "" {
			return err // found it but cannot open it: retry
		}
		if errors.Is(err, fs.ErrNotExist) {
			continue // no directory, so no rotated file either
		}
		if err != nil {
			r.rateWarn(&r.limOpen).Err(err).
				Str("dir", dir).
				Msg("cannot list directory to find the checkpointed events file")
			continue
		}
		if old != nil {
			fi, err := old.Stat()
			if err != nil {
				old.Close()
				return fmt.Errorf("stat %s: %w", name, err)
			}
			return r.resume(old, name, fi.Size(), true)
		}
	}
	if pathMissing {
		return fs.ErrNotExist // wait for the path before giving up on start
	}

	r.log.Warn().
		Uint64("inode", s.File.Inode).
		Int64("offset", s.Offset).
		Msg("checkpointed events file is gone, its unread lines are lost; starting at the beginning of the current file")
	r.resolved = true
	return r.openPath()
}

// resume starts reading f, found at name, at r.start.Offset. away reports
// that f is no longer the file at the path.
func (r *Reader) resume(f *os.File, name string, size int64, away bool) error {
	off := r.start.Offset
	if size < off {
		return r.resumeTruncated(f, name, size, away)
	}
	if err := r.setFile(f, off); err != nil {
		f.Close()
		return err
	}
	r.resolved = true

	if away {
		r.away = true
		r.awaySince = r.now()
	}
	r.log.Info().
		Str("file", name).
		Uint64("inode", r.id.Inode).
		Int64("offset", off).
		Bool("rotated", away).
		Msg("resuming events file")
	return nil
}

// resumeTruncated starts reading when f, the file r.start names (found at
// name, size bytes long), was truncated since the position was saved: at
// r.start.Offset in its copy if there is one, then at the beginning of f.
func (r *Reader) resumeTruncated(f *os.File, name string, size int64, away bool) error {
	s := r.start
	r.n.truncations.Add(1)

	cp, cpName, cpSize, err := findCopy(r.path, s.File, s.Offset)
	if cp != nil {
		err = r.setFile(cp, s.Offset)
		if err == nil {
			r.copying, r.after, r.resolved = true, f, true
			r.log.Info().
				Str("file", cpName).
				Uint64("inode", r.id.Inode).
				Uint64("truncated_inode", s.File.Inode).
				Int64("offset", s.Offset).
				Int64("size", size).
				Int64("copy_size", cpSize).
				Msg("checkpointed events file was truncated; reading the rest of it from its copy, then the file from the beginning")
			return nil
		}
		cp.Close()
	}

	r.n.copiesMissing.Add(1)
	r.log.Warn().Err(err).
		Str("file", name).
		Uint64("inode", s.File.Inode).
		Int64("offset", s.Offset).
		Int64("size", size).
		Msg("checkpointed events file was truncated and no copy of it was found: lines between offset and the truncation may be lost; reading it from the beginning")
	if err := r.setFile(f, 0); err != nil {
		f.Close()
		return err
	}
	r.resolved = true
	if away {
		r.away = true
		r.awaySince = r.now()
	}
	return nil
}

// openPath starts reading the file at the path from offset 0.
func (r *Reader) openPath() error {
	f, err := os.Open(r.path)
	if err != nil {
		return err
	}
	if err := r.setFile(f, 0); err != nil {
		f.Close()
		return err
	}
	return nil
}

// setFile makes f the file being read, from offset off.
func (r *Reader) setFile(f *os.File, off int64) error {
	id, _, err := identify(f)
	if err != nil {
		return fmt.Errorf("identify %s: %w", f.Name(), err)
	}
	r.f, r.id = f, id
	r.readOff, r.lineOff = off, off
	r.resetBuf()
	r.away = false
	r.lastGrowth = r.now()
	return nil
}

// fill reads more of the file into the buffer. It returns 0 and no error at
// the end of the file.
func (r *Reader) fill() (int, error) {
	r.makeRoom()
	n, err := r.f.ReadAt(r.buf[r.w:], r.readOff)
	if n > 0 {
		r.w += n
		r.readOff += int64(n)
		r.lastGrowth = r.now()
		r.checkHead()
	}
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}

// makeRoom moves the current line to the front of the buffer, or grows the
// buffer, so that at least minRead bytes are free.
func (r *Reader) makeRoom() {
	if r.r0 == r.w {
		r.r0, r.scan, r.w = 0, 0, 0
		return
	}
	if len(r.buf)-r.w >= minRead {
		return
	}
	if r.r0 > 0 {
		n := copy(r.buf, r.buf[r.r0:r.w])
		r.scan -= r.r0
		r.w = n
		r.r0 = 0
	}
	if len(r.buf)-r.w < minRead && len(r.buf) < r.maxBuf {
		b := make([]byte, min(2*len(r.buf), r.maxBuf))
		copy(b, r.buf[:r.w])
		r.buf = b
	}
}

// resetBuf forgets the buffered bytes.
func (r *Reader) resetBuf() {
	r.r0, r.scan, r.w = 0, 0, 0
	r.skipped, r.tooLong, r.inNUL = 0, false, false
}

// nextLine returns the next complete line in the buffer, skipping NUL bytes
// and dropping fragments they cut off.
func (r *Reader) nextLine() (Line, bool) {
	for r.scan < r.w {
		if r.scan == r.r0 && !r.tooLong {
			if r.buf[r.r0] == 0 {
				r.skipNUL()
				continue
			}
			r.inNUL = false
		}

		rest := r.buf[r.scan:r.w]
		nl := bytes.IndexByte(rest, '\n')
		text := rest
		if nl >= 0 {
			text = rest[:nl]
		}
		if z := bytes.IndexByte(text, 0); z >= 0 {
			r.dropFragment(r.scan+z, "cut by NUL bytes")
			continue
		}
		if nl < 0 {
			r.scan = r.w
			r.limitLine()
			return Line{}, false
		}
		return r.emit(r.scan + nl), true
	}
	return Line{}, false
}

// emit returns the current line, which ends with the '\n' at buf[nl], and
// moves past it.
func (r *Reader) emit(nl int) Line {
	size := r.skipped + int64(nl-r.r0) // without the '\n'
	line := Line{
		Pos: Position{Path: r.path, File: r.id, Offset: r.lineOff},
		End: r.lineOff + size + 1,
	}
	if limit := r.opts.MaxLineBytes; size > int64(limit) {
		line.Data = r.buf[r.r0 : r.r0+limit : r.r0+limit]
		line.TooLong = true
		r.n.tooLong.Add(1)
	} else {
		line.Data = r.buf[r.r0:nl:nl]
	}
	r.n.lines.Add(1)
	r.n.bytes.Add(uint64(size + 1))

	r.lineOff = line.End
	r.r0, r.scan = nl+1, nl+1
	r.skipped, r.tooLong = 0, false
	return line
}

// limitLine keeps the first MaxLineBytes bytes of a line that has no '\n'
// yet and drops the rest of what has been read of it.
func (r *Reader) limitLine() {
	if r.w-r.r0 <= r.opts.MaxLineBytes {
		return
	}
	keep := r.r0 + r.opts.MaxLineBytes
	r.tooLong = true
	r.skipped += int64(r.w - keep)
	r.w, r.scan = keep, keep
}

// skipNUL skips the NUL bytes at the start of the current line.
func (r *Reader) skipNUL() {
	n := 0
	for r.r0+n < r.w && r.buf[r.r0+n] == 0 {
		n++
	}
	if !r.inNUL {
		r.inNUL = true
		r.rateWarn(&r.limNUL).
			Uint64("inode", r.id.Inode).
			Int64("offset", r.lineOff).
			Msg("skipping NUL bytes in events file, probably space left by a crash")
	}
	r.n.nulBytes.Add(uint64(n))
	r.r0 += n
	r.scan = r.r0
	r.lineOff += int64(n)
}

// dropFragment drops the current line up to buf[i]: it will never be
// completed.
func (r *Reader) dropFragment(i int, reason string) {
	size := r.skipped + int64(i-r.r0)
	r.n.fragments.Add(1)
	r.rateWarn(&r.limFrag).
		Uint64("inode", r.id.Inode).
		Int64("offset", r.lineOff).
		Int64("bytes", size).
		Str("reason", reason).
		Msg("dropping incomplete line")
	r.lineOff += size
	r.r0, r.scan = i, i
	r.skipped, r.tooLong = 0, false
}

// dropPartial drops an incomplete last line before the file is left.
func (r *Reader) dropPartial(reason string) {
	if r.w > r.r0 || r.skipped > 0 {
		r.dropFragment(r.w, reason)
	}
	r.resetBuf()
}

// checkHead checks after a read that the file's first bytes are still
// those the fingerprint covers: a file truncated and written again past our
// offset between two reads keeps its size but not its first bytes, and the
// bytes just read then belong to the new content. If they changed, reading
// restarts at offset 0. Otherwise, while the fingerprint covers fewer than
// FingerprintMax bytes, it is extended to what the file now holds, so that a
// position saved later still matches the file.
func (r *Reader) checkHead() {
	var b [FingerprintMax]byte
	n, err := r.f.ReadAt(b[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return // checkFile tries again at the end of the file
	}
	have := r.id.FingerprintLen
	if n < have || fingerprint(b[:have]) != r.id.Fingerprint {
		r.truncated(-1)
		return
	}
	if n > have {
		r.id.Fingerprint, r.id.FingerprintLen = fingerprint(b[:n]), n
	}
}

// checkFile looks at the file after a read found no new data: was it
// truncated, rotated away or deleted? It reports whether the reader changed
// file or offset and should read again at once.
func (r *Reader) checkFile() bool {
	fi, err := r.f.Stat()
	if err != nil {
		r.rateWarn(&r.limStat).Err(err).
			Uint64("inode", r.id.Inode).
			Msg("cannot stat events file, will retry")
		return false
	}
	_, _, nlink, _ := sysInfo(fi)

	// Truncated: smaller than what has been read, or different first bytes
	// (truncated and written again before we looked).
	if fi.Size() < r.readOff {
		r.truncated(fi.Size())
		return true
	}
	if r.id.FingerprintLen > 0 {
		fp, n, err := readFingerprint(r.f, r.id.FingerprintLen)
		if err == nil && (n != r.id.FingerprintLen || fp != r.id.Fingerprint) {
			r.truncated(fi.Size())
			return true
		}
	}

	// Rotated or deleted: the path names another file, or nothing.
	pfi, err := os.Stat(r.path)
	switch {
	case err == nil:
		dev, ino, _, ok := sysInfo(pfi)
		if ok && dev == r.id.Dev && ino == r.id.Inode {
			r.away = false
			return false
		}
		r.markAway()
		if !r.quiet() {
			return false
		}
		return r.leave(nlink)

	case errors.Is(err, fs.ErrNotExist):
		r.markAway()
		if nlink > 0 || !r.quiet() {
			// Renamed: a new file may still appear at the path. Any
			// generation rotated meanwhile is found when it does.
			return false
		}
		return r.leave(nlink)

	default:
		r.rateWarn(&r.limStat).Err(err).Msg("cannot stat events file path, will retry")
		return false
	}
}

// truncated handles a truncation of the open file, now size bytes long (-1:
// unknown), noticed while reading it. The lines not yet returned start at
// r.lineOff; the bytes buffered after it may already be new content and are
// dropped. If the directory holds a copy of the file as it was, reading goes
// on at r.lineOff in the copy and then at offset 0 of the truncated file;
// otherwise at offset 0 at once, with a warning. A copy that ends before
// r.lineOff holds nothing unread: it is finished at once.
func (r *Reader) truncated(size int64) {
	if r.copying {
		// Copies do not change; this one did, so it is not what it seemed.
		r.log.Warn().
			Uint64("inode", r.id.Inode).
			Int64("offset", r.lineOff).
			Msg("copy of the truncated events file changed while being read, leaving it; lines after offset may be lost")
		r.leaveCopy(false)
		return
	}
	r.n.truncations.Add(1)
	from := r.lineOff
	r.resetBuf()

	cp, name, cpSize, err := findCopy(r.path, r.id, from)
	if cp != nil {
		trunc, truncIno := r.f, r.id.Inode
		err = r.setFile(cp, from)
		if err == nil {
			r.copying, r.after = true, trunc
			e := r.log.Info().
				Str("file", name).
				Uint64("inode", r.id.Inode).
				Uint64("truncated_inode", truncIno).
				Int64("offset", from).
				Int64("copy_size", cpSize)
			if size >= 0 {
				e = e.Int64("size", size)
			}
			e.Msg("events file truncated; reading the rest of it from its copy, then the file from the beginning")
			return
		}
		cp.Close()
	}

	r.n.copiesMissing.Add(1)
	e := r.log.Warn().Err(err).
		Uint64("inode", r.id.Inode).
		Int64("offset", from)
	if size >= 0 {
		e = e.Int64("size", size)
	}
	e.Msg("events file truncated and no copy of it was found: lines between offset and the truncation may be lost; reading it again from the beginning")
	r.readOff, r.lineOff = 0, 0
	r.id.Fingerprint, r.id.FingerprintLen = fingerprint(nil), 0
}

// leaveCopy closes the copy being read and goes on with the truncated file
// at offset 0. finished reports that the copy was read to its end; a last
// line without its '\n' there is a fragment: the rest of it went to the
// truncated file before the truncation.
func (r *Reader) leaveCopy(finished bool) {
	ino := r.id.Inode
	if finished {
		r.dropPartial("end of the copy of a truncated file")
	} else {
		r.resetBuf()
	}
	r.finish(leftFile{id: r.id, byHead: headHoldsLine(r.f, r.id)})
	r.f.Close()
	r.f = nil
	trunc := r.after
	r.copying, r.after = false, nil

	if finished {
		r.n.copiesFinished.Add(1)
		r.log.Info().
			Uint64("inode", ino).
			Msg("finished the copy of the truncated events file, reading the file from the beginning")
	}
	if err := r.setFile(trunc, 0); err != nil {
		trunc.Close()
		r.rateWarn(&r.limCopy).Err(err).
			Msg("cannot read the truncated events file after its copy, opening the path again")
		// With no file, Next opens the path.
	}
}

// markAway records that the path no longer names the open file.
func (r *Reader) markAway() {
	if r.away {
		return
	}
	r.away = true
	r.awaySince = r.now()
	r.log.Debug().
		Uint64("inode", r.id.Inode).
		Msg("events file renamed or deleted, finishing it")
}

// quiet reports whether the open file has not grown for RotateGrace, counted
// from when it was noticed to be away if that is later.
func (r *Reader) quiet() bool {
	since := r.lastGrowth
	if r.awaySince.After(since) {
		since = r.awaySince
	}
	return r.now().Sub(since) >= r.opts.RotateGrace
}

// leave moves on from the file being read, which the path no longer names
// (nlink is its link count) and which has been quiet for RotateGrace, to
// the generation that follows it (see Generations in the package doc). It
// reports whether the reader changed file. If no generation follows yet and
// the path is missing, a file that still has a name is kept, and a deleted
// one is released: Next then waits for the path, and reads the generations
// rotated meanwhile first.
func (r *Reader) leave(nlink uint64) bool {
	left := r.leftInfo()
	next, err := r.successor(left)
	if errors.Is(err, errNotYet) {
		return false
	}
	if err != nil {
		r.rateWarn(&r.limNext).Err(err).
			Uint64("inode", left.id.Inode).
			Msg("cannot look for the generation that follows the rotated events file, will retry")
		return false
	}
	if next.f == nil && nlink > 0 {
		return false
	}

	oldIno, oldOff := r.id.Inode, r.readOff
	if next.f == nil {
		r.dropPartial("file deleted")
	} else {
		r.dropPartial("file rotated away")
	}
	r.f.Close()
	r.f = nil
	r.away = false
	r.finish(left)
	r.left, r.hasLeft = left, true // until the next file is read

	if next.f == nil {
		r.log.Info().
			Uint64("inode", oldIno).
			Int64("offset", oldOff).
			Msg("events file deleted, released it")
		return true
	}
	if err := r.enter(next, oldIno, oldOff, false); err != nil {
		// With no file, Next tries again.
		r.rateWarn(&r.limNext).Err(err).
			Str("file", next.name).
			Msg("cannot read the generation that follows the rotated events file, will retry")
	}
	return true
}

// openAfterLeft opens the generation that follows the file released last.
// It returns fs.ErrNotExist while there is none and the path is missing.
func (r *Reader) openAfterLeft() error {
	next, err := r.successor(r.left)
	if err != nil {
		return err
	}
	if next.f == nil {
		return fs.ErrNotExist
	}
	return r.enter(next, r.left.id.Inode, -1, true)
}

// successor finds the generation to read after left (see findSuccessor).
// The first time it finds generations that are gone, it returns errNotYet
// instead, so that they are reported only if a second look, a poll later,
// agrees: a rotation tool in the middle of renaming can make a generation
// look gone for an instant.
func (r *Reader) successor(left leftFile) (successor, error) {
	next, err := findSuccessor(r.path, left, r.birth, r.isFinished)
	if err != nil {
		return successor{}, err
	}
	if next.f != nil && len(next.missed) > 0 && !r.missedSeen {
		r.missedSeen = true
		next.close()
		return successor{}, errNotYet
	}
	r.missedSeen = false
	return next, nil
}

// errNotYet means that the reader looks for the next generation again at
// the next poll.
var errNotYet = errors.New("follow: look again")

// enter starts reading next at offset 0: the generation that follows the
// file r.left, which was read up to oldOff (-1: released earlier) at inode
// oldIno. It reports the generations missed between the two. After a
// released (deleted) file, the file at the path does not count as a
// rotation.
func (r *Reader) enter(next successor, oldIno uint64, oldOff int64, released bool) error {
	if err := r.setFile(next.f, 0); err != nil {
		next.f.Close()
		return err
	}
	r.hasLeft = false
	r.reportMissed(next.missed)
	if next.atPath && released {
		return nil
	}

	r.n.rotations.Add(1)
	e := r.log.Info().Uint64("old_inode", oldIno)
	if oldOff >= 0 {
		e = e.Int64("old_offset", oldOff)
	}
	e = e.Uint64("inode", r.id.Inode)
	if next.atPath {
		e.Msg("events file rotated, moving to the new file")
		return nil
	}
	r.away, r.awaySince = true, r.now()
	e.Str("file", next.name).
		Msg("events file rotated, reading the rotated generation that followed it")
	return nil
}

// reportMissed warns about and counts generations that were gone before
// the reader got to them.
func (r *Reader) reportMissed(missed []missedGen) {
	for _, m := range missed {
		r.n.generationsMissed.Add(1)
		e := r.log.Warn().Str("file", m.name)
		if m.size >= 0 {
			e = e.Int64("size", m.size)
		}
		e.Str("reason", m.reason).
			Msg("rotated generation of the events file was gone before it could be read, its lines are lost")
	}
}

// leftInfo returns what findSuccessor needs to know of the file being read
// once it is left.
func (r *Reader) leftInfo() leftFile {
	l := leftFile{id: r.id, byHead: headHoldsLine(r.f, r.id)}
	if fi, err := r.f.Stat(); err == nil {
		l.mtime = fi.ModTime()
	}
	if r.birth {
		l.btime = fileBirthTime(r.f)
	}
	return l
}

// finish records that the file l has been read to its end, so that it is
// never taken for a generation not read yet.
func (r *Reader) finish(l leftFile) {
	if len(r.finished) == maxFinished {
		r.finished = slices.Delete(r.finished, 0, 1)
	}
	r.finished = append(r.finished, l)
}

// isFinished reports whether the file with device dev, inode ino and first
// bytes head was finished since Open, or is a copy of one.
func (r *Reader) isFinished(dev, ino uint64, head []byte) bool {
	return slices.ContainsFunc(r.finished, func(l leftFile) bool { return l.is(dev, ino, head) })
}

// nextBackoff returns how long to wait before the next retry.
func (r *Reader) nextBackoff() time.Duration {
	if r.backoff == 0 {
		r.backoff = r.opts.PollInterval
	} else {
		r.backoff *= 2
	}
	r.backoff = min(r.backoff, r.opts.MaxRetryInterval)
	return r.backoff
}

// sleep waits for d, a wake-up from the directory watch, or ctx.
func (r *Reader) sleep(ctx context.Context, d time.Duration) error {
	if r.timer == nil {
		r.timer = time.NewTimer(d)
	} else {
		r.timer.Reset(d)
	}
	select {
	case <-ctx.Done():
		r.timer.Stop()
		return ctx.Err()
	case <-r.wake:
		r.timer.Stop()
		return nil
	case <-r.timer.C:
		return nil
	}
}

// rateWarn returns a warning event, or nil (which zerolog ignores) if l let
// one through less than warnInterval ago.
func (r *Reader) rateWarn(l *limiter) *zerolog.Event {
	ok, suppressed := l.allow(r.now())
	if !ok {
		return nil
	}
	e := r.log.Warn()
	if suppressed > 0 {
		e = e.Int("suppressed", suppressed)
	}
	return e
}

// limiter lets one message through per warnInterval and counts the others.
type limiter struct {
	last       time.Time
	suppressed int
}

// allow reports whether a message may be logged now, and how many were
// suppressed since the last one.
func (l *limiter) allow(now time.Time) (bool, int) {
	if !l.last.IsZero() && now.Sub(l.last) < warnInterval {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return true, n
}
