package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"dovecot-kafka/follow"
	"dovecot-kafka/mapping"
)

// DeadLetter appends what cannot be published to a file, one JSON object
// per line:
//
//	{"time":"2026-12-04T16:47:03Z","path":"/var/log/dovecot/events.jsonl","offset":1234,
//	 "topic":"dovecot","reason":"invalid line","error":"...","line":"..."}
//
// "topic" is set for records Kafka rejected; "line" holds the original
// line when the daemon has it (bad input), as a JSON string with invalid
// UTF-8 replaced. The file is opened for every write, so it may be
// rotated or removed at any time.
type DeadLetter struct {
	path string
	mu   sync.Mutex
	buf  []byte
}

// NewDeadLetter returns a DeadLetter writing to path.
func NewDeadLetter(path string) *DeadLetter { return &DeadLetter{path: path} }

// Path returns the file written to.
func (d *DeadLetter) Path() string { return d.path }

// Write appends one entry.
func (d *DeadLetter) Write(pos follow.Position, topic, reason string, cause error, line []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()

	b := d.buf[:0]
	b = append(b, `{"time":`...)
	b = mapping.AppendString(b, []byte(time.Now().UTC().Format(time.RFC3339)))
	b = append(b, `,"path":`...)
	b = mapping.AppendString(b, []byte(pos.Path))
	b = append(b, `,"offset":`...)
	b = strconv.AppendInt(b, pos.Offset, 10)
	if topic != "" {
		b = append(b, `,"topic":`...)
		b = mapping.AppendString(b, []byte(topic))
	}
	b = append(b, `,"reason":`...)
	b = mapping.AppendString(b, []byte(reason))
	if cause != nil {
		b = append(b, `,"error":`...)
		b = mapping.AppendString(b, []byte(cause.Error()))
	}
	if line != nil {
		b = append(b, `,"line":`...)
		b = mapping.AppendString(b, line)
	}
	b = append(b, "}\n"...)
	d.buf = b

	f, err := os.OpenFile(d.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("open dead-letter file: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write dead-letter file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close dead-letter file: %w", err)
	}
	return nil
}

// lineAt reads the line that starts at pos from the events file, if the
// file at pos.Path is still the one pos names (same device and inode). It
// returns nil when the line cannot be had; the dead-letter entry then holds
// only the position.
func lineAt(pos follow.Position, maxBytes int) []byte {
	f, err := os.Open(pos.Path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil ||
		uint64(st.Dev) != pos.File.Dev || st.Ino != pos.File.Inode {
		return nil
	}
	buf := make([]byte, maxBytes)
	n, _ := f.ReadAt(buf, pos.Offset)
	if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
		return buf[:i]
	}
	return nil
}

// isPurge reports whether a delivery failed only because the producer was
// closed with the record still queued.
func isPurge(err error) bool {
	var kerr kafka.Error
	if !errors.As(err, &kerr) {
		return false
	}
	return kerr.Code() == kafka.ErrPurgeQueue || kerr.Code() == kafka.ErrPurgeInflight
}

// rateLimited lets one event per key through per interval.
type rateLimited struct {
	mu       sync.Mutex
	interval time.Duration
	last     map[string]time.Time
}

func newRateLimited(interval time.Duration) *rateLimited {
	return &rateLimited{interval: interval, last: map[string]time.Time{}}
}

func (r *rateLimited) allow(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if t, ok := r.last[key]; ok && now.Sub(t) < r.interval {
		return false
	}
	r.last[key] = now
	return true
}
