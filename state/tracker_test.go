package state

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"dovecot-kafka/follow"
)

// waitLimit bounds every blocking call, so that a bug fails the test
// instead of hanging it.
const waitLimit = 10 * time.Second

var testFile = follow.FileID{Dev: 1, Inode: 42, Fingerprint: 7, FingerprintLen: 256}

// addLine adds a line of length 10 starting at 10*i.
func addLine(t testing.TB, tr *Tracker, i, records int) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	pos := follow.Position{Path: "events", File: testFile, Offset: int64(10 * i)}
	seq, err := tr.Add(ctx, pos, int64(10*i+10), records)
	if err != nil {
		t.Fatalf("Add line %d: %v", i, err)
	}
	return seq
}

// wantCommitted checks the committed offset; -1 means nothing committed.
func wantCommitted(t testing.TB, tr *Tracker, off int64) {
	t.Helper()
	p, ok := tr.Committed()
	switch {
	case off < 0 && ok:
		t.Fatalf("Committed = %+v, want nothing", p)
	case off < 0:
	case !ok || p.Offset != off:
		t.Fatalf("Committed = %+v, %v; want offset %d", p, ok, off)
	case p.File != testFile || p.Path != "events":
		t.Fatalf("Committed = %+v, want file %+v", p, testFile)
	}
}

func TestTrackerOutOfOrder(t *testing.T) {
	tr := NewTracker(16)
	var seqs []uint64
	for i := range 5 {
		seqs = append(seqs, addLine(t, tr, i, 1))
	}
	wantCommitted(t, tr, -1)

	tr.Ack(seqs[2])
	tr.Ack(seqs[1])
	wantCommitted(t, tr, -1) // line 0 still outstanding
	tr.Ack(seqs[0])
	wantCommitted(t, tr, 30) // lines 0-2
	tr.Ack(seqs[4])
	wantCommitted(t, tr, 30)
	if n := tr.Pending(); n != 2 {
		t.Errorf("Pending = %d, want 2", n)
	}
	tr.Ack(seqs[3])
	wantCommitted(t, tr, 50)
	if n := tr.Pending(); n != 0 {
		t.Errorf("Pending = %d, want 0", n)
	}
}

func TestTrackerRecordCounts(t *testing.T) {
	tr := NewTracker(16)
	s0 := addLine(t, tr, 0, 0) // nothing to publish: done at once
	wantCommitted(t, tr, 10)

	s1 := addLine(t, tr, 1, 3)
	addLine(t, tr, 2, 0) // done, but behind line 1
	wantCommitted(t, tr, 10)
	tr.Ack(s1)
	tr.Ack(s1)
	wantCommitted(t, tr, 10)
	tr.Ack(s1)
	wantCommitted(t, tr, 30) // line 1 complete, and line 2 with it

	// Stray acknowledgements change nothing.
	tr.Ack(s0)
	tr.Ack(s1)
	tr.Ack(1000)
	s3 := addLine(t, tr, 3, 2)
	tr.Ack(s3)
	tr.Ack(s1)
	wantCommitted(t, tr, 30)
	tr.Ack(s3)
	wantCommitted(t, tr, 40)
}

func TestTrackerFileChange(t *testing.T) {
	// After a rotation the committed position names the new file.
	tr := NewTracker(4)
	ctx := context.Background()
	newFile := follow.FileID{Dev: 1, Inode: 43}
	a, _ := tr.Add(ctx, follow.Position{Path: "events", File: testFile, Offset: 90}, 100, 1)
	b, _ := tr.Add(ctx, follow.Position{Path: "events", File: newFile, Offset: 0}, 7, 1)
	tr.Ack(b)
	tr.Ack(a)
	p, ok := tr.Committed()
	want := follow.Position{Path: "events", File: newFile, Offset: 7}
	if !ok || p != want {
		t.Fatalf("Committed = %+v, %v; want %+v", p, ok, want)
	}
}

func TestTrackerPosition(t *testing.T) {
	tr := NewTracker(4)
	s0 := addLine(t, tr, 0, 1)
	s1 := addLine(t, tr, 1, 1)
	p, ok := tr.Position(s1)
	want := follow.Position{Path: "events", File: testFile, Offset: 10} // where the line starts
	if !ok || p != want {
		t.Fatalf("Position(%d) = %+v, %v; want %+v", s1, p, ok, want)
	}
	tr.Ack(s0)
	if _, ok := tr.Position(s0); ok {
		t.Error("Position of a committed line reported")
	}
	if _, ok := tr.Position(99); ok {
		t.Error("Position of an unknown line reported")
	}
}

func TestTrackerNegativeRecords(t *testing.T) {
	tr := NewTracker(4)
	if _, err := tr.Add(context.Background(), follow.Position{}, 1, -1); err == nil {
		t.Fatal("Add accepted a negative record count")
	}
	if n := tr.Pending(); n != 0 {
		t.Errorf("Pending = %d, want 0", n)
	}
}

// addFull checks that Add on a full tracker waits and gives up when its
// context ends.
func addFull(t testing.TB, tr *Tracker) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := tr.Add(ctx, follow.Position{}, 1, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Add on a full tracker = %v, want DeadlineExceeded", err)
	}
}

func TestTrackerBackPressure(t *testing.T) {
	tr := NewTracker(3)
	s0 := addLine(t, tr, 0, 1)
	s1 := addLine(t, tr, 1, 1)
	addLine(t, tr, 2, 1)
	addFull(t, tr)

	// Acknowledging a line behind the oldest one frees nothing.
	tr.Ack(s1)
	addFull(t, tr)

	// Acknowledging the oldest line frees two slots and lets a waiting Add in.
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		_, err := tr.Add(ctx, follow.Position{Path: "events", File: testFile, Offset: 30}, 40, 1)
		done <- err
	}()
	tr.Ack(s0)
	if err := <-done; err != nil {
		t.Fatalf("blocked Add: %v", err)
	}
	wantCommitted(t, tr, 20)
	if n := tr.Pending(); n != 2 {
		t.Errorf("Pending = %d, want 2", n)
	}
}

func TestTrackerCapacityRounding(t *testing.T) {
	// Capacity 5 uses a ring of 8 but still admits only 5 lines.
	tr := NewTracker(5)
	for i := range 5 {
		addLine(t, tr, i, 1)
	}
	addFull(t, tr)
}

func TestTrackerConcurrent(t *testing.T) {
	// One goroutine adds, several acknowledge in a scrambled order; the
	// committed position must end at the last line. Run with -race.
	const lines, records, ackers = 20000, 2, 4
	tr := NewTracker(64)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()

	acks := make(chan uint64, 128)
	var wg sync.WaitGroup
	for range ackers {
		wg.Go(func() {
			for seq := range acks {
				tr.Ack(seq)
			}
		})
	}

	var last int64
	for i := range lines {
		pos := follow.Position{Path: "events", File: testFile, Offset: int64(i)}
		seq, err := tr.Add(ctx, pos, int64(i+1), records)
		if err != nil {
			t.Fatalf("Add %d: %v", i, err)
		}
		for range records {
			acks <- seq
		}
		if p, ok := tr.Committed(); ok {
			if p.Offset < last {
				t.Fatalf("committed offset went back from %d to %d", last, p.Offset)
			}
			last = p.Offset
		}
	}
	close(acks)
	wg.Wait()
	wantCommitted(t, tr, lines)
	if n := tr.Pending(); n != 0 {
		t.Errorf("Pending = %d, want 0", n)
	}
}

func BenchmarkTracker(b *testing.B) {
	tr := NewTracker(1024)
	ctx := context.Background()
	pos := follow.Position{Path: "events", File: testFile}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		seq, err := tr.Add(ctx, pos, int64(i), 1)
		if err != nil {
			b.Fatal(err)
		}
		tr.Ack(seq)
	}
}

func BenchmarkTrackerTwoGoroutines(b *testing.B) {
	// Add in the benchmark goroutine, Ack in another, through a channel as
	// the delivery report loop would; the channel dominates the cost.
	tr := NewTracker(1024)
	ctx := context.Background()
	pos := follow.Position{Path: "events", File: testFile}
	acks := make(chan uint64, 1024)
	done := make(chan struct{})
	go func() {
		for seq := range acks {
			tr.Ack(seq)
		}
		close(done)
	}()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		seq, err := tr.Add(ctx, pos, int64(i), 1)
		if err != nil {
			b.Fatal(err)
		}
		acks <- seq
	}
	close(acks)
	<-done
}
