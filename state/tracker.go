package state

import (
	"context"
	"fmt"
	"math/bits"
	"sync"

	"dovecot-kafka/follow"
)

// Tracker turns out-of-order acknowledgements into the committed position.
//
// The reader registers each line with Add, in file order; the delivery
// report loop calls Ack once per Kafka record delivered. Committed is the
// end of the longest prefix of lines whose records have all been
// acknowledged. At most capacity lines are outstanding (added but not yet
// part of the committed prefix): Add blocks while the window is full, which
// is the back-pressure that bounds memory. One slow record therefore holds
// back the committed position, and after capacity more lines, reading.
//
// All methods are safe for concurrent use. Lines must be added in file
// order, so Add is normally called from one goroutine.
type Tracker struct {
	mu        sync.Mutex
	ring      []slot // len is a power of two, at least capacity
	mask      uint64
	capacity  uint64
	head      uint64 // sequence number of the oldest uncommitted line
	tail      uint64 // sequence number the next Add returns
	committed follow.Position
	has       bool
	space     chan struct{} // closed when Add may find room; nil unless Add waits
}

// slot is one outstanding line.
type slot struct {
	end     follow.Position // the position just past the line
	start   int64           // the offset where the line starts
	pending int             // records not yet acknowledged
}

// NewTracker returns a Tracker that lets at most capacity lines be
// outstanding. A capacity below 1 counts as 1.
func NewTracker(capacity int) *Tracker {
	capacity = max(capacity, 1)
	size := 1 << bits.Len(uint(capacity-1)) // the next power of two
	return &Tracker{
		ring:     make([]slot, size),
		mask:     uint64(size - 1),
		capacity: uint64(capacity),
	}
}

// Add registers the next line read, which starts at pos, ends at end (just
// past its '\n') and will produce records Kafka records. A line with 0
// records (skipped, or nothing to publish) is done at once. Add returns the
// line's sequence number for Ack. While capacity lines are outstanding it
// blocks until an Ack frees room or ctx is done, and then returns
// ctx.Err().
func (t *Tracker) Add(
	ctx context.Context,
	pos follow.Position,
	end int64,
	records int,
) (uint64, error) {
	if records < 0 {
		return 0, fmt.Errorf("state: negative record count %d", records)
	}

	t.mu.Lock()
	for t.tail-t.head >= t.capacity {
		if t.space == nil {
			t.space = make(chan struct{})
		}
		space := t.space
		t.mu.Unlock()
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-space:
		}
		t.mu.Lock()
	}

	seq := t.tail
	t.tail++
	start := pos.Offset
	pos.Offset = end
	t.ring[seq&t.mask] = slot{end: pos, start: start, pending: records}
	if records == 0 && seq == t.head {
		t.advance()
	}
	t.mu.Unlock()
	return seq, nil
}

// Ack records that one record of line seq was delivered. Acknowledgements
// for a sequence number that Add did not return, or beyond the line's
// record count, are ignored.
func (t *Tracker) Ack(seq uint64) {
	t.mu.Lock()
	if seq >= t.head && seq < t.tail {
		s := &t.ring[seq&t.mask]
		if s.pending > 0 {
			s.pending--
			if s.pending == 0 && seq == t.head {
				t.advance()
			}
		}
	}
	t.mu.Unlock()
}

// advance moves the committed position over the completed lines at the
// head of the window and wakes a waiting Add. t.mu must be held.
func (t *Tracker) advance() {
	for t.head < t.tail {
		s := &t.ring[t.head&t.mask]
		if s.pending > 0 {
			break
		}
		t.committed, t.has = s.end, true
		t.head++
	}
	if t.space != nil {
		close(t.space)
		t.space = nil
	}
}

// Committed returns the position just past the longest fully acknowledged
// prefix of lines: the File of the last line in it and Offset at that
// line's end. It reports false if no line has been committed since
// NewTracker.
func (t *Tracker) Committed() (follow.Position, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.committed, t.has
}

// Pending returns the number of outstanding lines: added but not yet
// committed.
func (t *Tracker) Pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return int(t.tail - t.head)
}
