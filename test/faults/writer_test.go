//go:build faults

package faults

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// goodLine is the event with sequence number seq: a MessageRead of uid seq
// by user-N, N = seq % 100.
func goodLine(seq int) []byte {
	return fmt.Appendf(nil, `{"v":1,"time":%d,"user":"user-%d@example.test","event":"MessageRead","mailbox":"INBOX","uidvalidity":1,"uid":%d}`+"\n",
		time.Now().Unix(), seq%100, seq)
}

// badKind is a kind of line the daemon must send to the dead-letter file.
type badKind string

const (
	badGarbage = badKind("garbage")       // not JSON at all
	badUTF8    = badKind("invalid-utf8")  // JSON with invalid UTF-8 in a string
	badEvent   = badKind("unknown-event") // valid JSON, an event name that does not exist
	badLong    = badKind("too-long")      // valid JSON longer than max_line_bytes
)

var allBadKinds = []badKind{badGarbage, badUTF8, badEvent, badLong}

// badMarker starts the identity of every bad line; the number after it is
// the bad line's id. Good lines never contain it.
const badMarker = "fault-bad-"

// badLine returns bad line id of kind k. The marker comes early in the
// line, so that it survives the daemon cutting a too-long line to
// maxLineBytes in the dead-letter file.
func badLine(k badKind, id, maxLineBytes int) []byte {
	now := time.Now().Unix()
	uid := 900_000_000 + id // outside the sequence numbers
	switch k {
	case badGarbage:
		return fmt.Appendf(nil, "%s%d this is not JSON {\"v\":1,\n", badMarker, id)
	case badUTF8:
		return fmt.Appendf(nil, `{"v":1,"time":%d,"user":"%s%d@example.test","event":"MessageRead","mailbox":"IN`+"\xff\xfe"+`BOX","uidvalidity":1,"uid":%d}`+"\n",
			now, badMarker, id, uid)
	case badEvent:
		return fmt.Appendf(nil, `{"v":1,"time":%d,"user":"%s%d@example.test","event":"MessageTeleported","mailbox":"INBOX","uidvalidity":1,"uid":%d}`+"\n",
			now, badMarker, id, uid)
	case badLong:
		pad := strings.Repeat("x", maxLineBytes+1000)
		return fmt.Appendf(nil, `{"v":1,"time":%d,"user":"%s%d@example.test","event":"MessageRead","mailbox":"INBOX","uidvalidity":1,"uid":%d,"pad":"%s"}`+"\n",
			now, badMarker, id, uid, pad)
	}
	panic("unknown bad kind " + k)
}

// writer appends events to the events file at a steady rate, the way
// push-events.lua does: for every batch it opens the file by path with
// O_APPEND (creating it if needed), writes each line with one write(2), and
// closes it. So after a rename the next batch creates the new file, and a
// batch in progress at the rename ends in the renamed file.
type writer struct {
	path         string
	rate         int // lines per second
	maxLineBytes int

	// batch is held while a batch is written; copytruncate takes it to
	// pause the writer between the copy and the truncation.
	batch sync.Mutex

	mu       sync.Mutex
	nextSeq  int
	written  []bool // written[seq]: the line with seq is in a file
	queue    []badKind
	bad      map[int]badKind // injected bad lines by id
	gens     int             // rotated generations path.1 ... path.gens
	errs     []error
	started  bool
	stopped  bool
	stopc    chan struct{}
	done     chan struct{}
	late     sync.WaitGroup
	lateRand *rand.Rand
}

func newWriter(path string, rate, maxLineBytes int, rng *rand.Rand) *writer {
	return &writer{
		path:         path,
		rate:         rate,
		maxLineBytes: maxLineBytes,
		nextSeq:      1,
		written:      []bool{false},
		bad:          map[int]badKind{},
		stopc:        make(chan struct{}),
		done:         make(chan struct{}),
		lateRand:     rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64())),
	}
}

func (w *writer) start() {
	w.mu.Lock()
	w.started = true
	w.mu.Unlock()
	go w.loop()
}

// stop stops the writer and waits for late writers; it returns how many
// good lines were written.
func (w *writer) stop() int {
	w.mu.Lock()
	started, stopped := w.started, w.stopped
	w.stopped = true
	w.mu.Unlock()
	if started && !stopped {
		close(w.stopc)
		<-w.done
	}
	w.late.Wait()
	return w.count()
}

// count returns how many good lines were written so far.
func (w *writer) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, ok := range w.written {
		if ok {
			n++
		}
	}
	return n
}

// errors returns the write errors seen.
func (w *writer) errors() []error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]error(nil), w.errs...)
}

func (w *writer) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.errs) < 20 {
		w.errs = append(w.errs, err)
	}
}

func (w *writer) loop() {
	defer close(w.done)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	t0 := time.Now()
	sent := 0
	for {
		select {
		case <-w.stopc:
			return
		case <-tick.C:
		}
		due := int(time.Since(t0).Seconds()*float64(w.rate)) - sent
		if due <= 0 {
			continue
		}
		sent += due
		w.writeBatch(due)
	}
}

// writeBatch writes n good lines and then any queued bad lines.
func (w *writer) writeBatch(n int) {
	w.batch.Lock()
	defer w.batch.Unlock()
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		w.fail(fmt.Errorf("open %s: %w", w.path, err))
		return
	}
	defer f.Close()
	for range n {
		if err := w.writeGood(f); err != nil {
			return
		}
	}

	w.mu.Lock()
	queue := w.queue
	w.queue = nil
	w.mu.Unlock()
	for _, k := range queue {
		w.mu.Lock()
		id := len(w.bad) + 1
		w.bad[id] = k
		w.mu.Unlock()
		if err := write1(f, badLine(k, id, w.maxLineBytes)); err != nil {
			w.fail(fmt.Errorf("bad line %d: %w", id, err))
			w.mu.Lock()
			delete(w.bad, id)
			w.mu.Unlock()
		}
	}
}

// writeGood writes the next good line to f and records it as written.
func (w *writer) writeGood(f *os.File) error {
	w.mu.Lock()
	seq := w.nextSeq
	w.nextSeq++
	w.written = append(w.written, false)
	w.mu.Unlock()
	if err := write1(f, goodLine(seq)); err != nil {
		w.fail(fmt.Errorf("line %d: %w", seq, err))
		return err
	}
	w.mu.Lock()
	w.written[seq] = true
	w.mu.Unlock()
	return nil
}

// write1 writes b with exactly one write(2), as push-events.lua does, so
// that concurrent writers never interleave within a line.
func write1(f *os.File, b []byte) error {
	n, err := syscall.Write(int(f.Fd()), b)
	if err != nil {
		return err
	}
	if n != len(b) {
		return fmt.Errorf("short write: %d of %d bytes", n, len(b))
	}
	return nil
}

// injectBad queues bad lines; the next batch writes them after its good
// lines.
func (w *writer) injectBad(kinds ...badKind) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.queue = append(w.queue, kinds...)
}

// badInjected returns the injected bad lines by id.
func (w *writer) badInjected() map[int]badKind {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := make(map[int]badKind, len(w.bad))
	for id, k := range w.bad {
		m[id] = k
	}
	return m
}

// files returns the events files, oldest first: the order in which the
// daemon must read them.
func (w *writer) files() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var names []string
	for g := w.gens; g >= 1; g-- {
		names = append(names, fmt.Sprintf("%s.%d", w.path, g))
	}
	return append(names, w.path)
}

// shiftGenerations renames path.N to path.N+1, oldest first, making room
// for a new path.1, as logrotate does (without ever deleting one).
func (w *writer) shiftGenerations() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for g := w.gens; g >= 1; g-- {
		if err := os.Rename(fmt.Sprintf("%s.%d", w.path, g), fmt.Sprintf("%s.%d", w.path, g+1)); err != nil {
			return err
		}
	}
	return nil
}

// rotateRename does a rename-and-create rotation: events.jsonl becomes
// events.jsonl.1 (older generations move up by one); the writer's next
// batch creates the new file. A late writer that opened the file before
// the rename appends a few more lines to the renamed file within about a
// second, like a Dovecot process that was in the middle of a transaction.
// It returns how many late lines will be written.
func (w *writer) rotateRename() (int, error) {
	late, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, errors.New("nothing to rotate: the events file does not exist yet")
	}
	if err != nil {
		return 0, err
	}
	if err := w.shiftGenerations(); err != nil {
		late.Close()
		return 0, err
	}
	if err := os.Rename(w.path, w.path+".1"); err != nil {
		late.Close()
		return 0, err
	}
	w.mu.Lock()
	w.gens++
	n := 2 + w.lateRand.IntN(5)
	delays := make([]time.Duration, n)
	for i := range delays {
		delays[i] = time.Duration(30+w.lateRand.IntN(170)) * time.Millisecond
	}
	w.mu.Unlock()

	w.late.Add(1)
	go func() {
		defer w.late.Done()
		defer late.Close()
		for _, d := range delays {
			time.Sleep(d)
			if err := w.writeGood(late); err != nil {
				return
			}
		}
	}()
	return n, nil
}

// copyTruncate rotates the way logrotate's copytruncate does: copy
// events.jsonl to events.jsonl.1 (older generations move up by one), then
// truncate events.jsonl to zero in place. The writer is paused from before
// the copy until after the truncation, so the rotation itself loses
// nothing: every line is either in the copy or written after the
// truncation.
func (w *writer) copyTruncate() (int64, error) {
	w.batch.Lock()
	defer w.batch.Unlock()
	src, err := os.Open(w.path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, errors.New("nothing to rotate: the events file does not exist yet")
	}
	if err != nil {
		return 0, err
	}
	defer src.Close()
	if err := w.shiftGenerations(); err != nil {
		return 0, err
	}
	dst, err := os.OpenFile(w.path+".1", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(dst, src)
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("copy %s: %w", w.path, err)
	}
	w.mu.Lock()
	w.gens++
	w.mu.Unlock()
	if err := os.Truncate(w.path, 0); err != nil {
		return n, fmt.Errorf("truncate %s: %w", w.path, err)
	}
	return n, nil
}
