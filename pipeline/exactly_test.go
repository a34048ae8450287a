package pipeline

import (
	"context"
	"errors"
	"testing"
	"time"

	"dovecot-kafka/state"
)

// fakeTxnSink records transactions: the records and the position each
// commit carried. failCommit makes the next commit fail.
type fakeTxnSink struct {
	*fakeSink
	done       int // records produced before the open transaction
	commits    []txnCommit
	position   []byte
	failCommit bool
	aborts     int
}

type txnCommit struct {
	records int
	cp      state.Checkpoint
}

func (f *fakeTxnSink) Begin() error { f.position = nil; return nil }

func (f *fakeTxnSink) ProducePosition(_ context.Context, value []byte) error {
	f.position = append([]byte(nil), value...)
	return nil
}

func (f *fakeTxnSink) Commit(context.Context) error {
	if f.failCommit {
		f.failCommit = false
		f.aborts++
		return errors.New("sink: kafka transaction aborted: injected")
	}
	cp, err := state.Unmarshal(f.position)
	if err != nil {
		return err
	}
	f.mu.Lock()
	n := len(f.produced) - f.done
	f.done = len(f.produced)
	f.mu.Unlock()
	f.commits = append(f.commits, txnCommit{records: n, cp: cp})
	return nil
}

func (f *fakeTxnSink) Abort(context.Context) error { f.aborts++; return nil }

// Each commit carries the position just past its last line; a clean stop
// commits the open transaction.
func TestTransactionCarriesPosition(t *testing.T) {
	src := lines(readLine1, readLine2, readLine3)
	snk := &fakeTxnSink{fakeSink: newFakeSink()}
	cps := &memCheckpoints{}
	opts := TxnOptions{Options: testOptions(t, cps), CommitMaxLines: 2, CommitInterval: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var stats Stats
	go func() { done <- RunTransactional(ctx, src, snk, opts, &stats) }()
	snk.waitProduced(t, 3)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(snk.commits) != 2 {
		t.Fatalf("%d commits, want 2 (two lines, then the third at the stop)", len(snk.commits))
	}
	first := int64(len(readLine1) + len(readLine2) + 2)
	if snk.commits[0].cp.Offset != first || snk.commits[0].records != 2 {
		t.Errorf("first commit %+v, want 2 records up to %d", snk.commits[0], first)
	}
	if snk.commits[1].cp.Offset != src3End() || snk.commits[1].records != 1 {
		t.Errorf("second commit %+v, want 1 record up to %d", snk.commits[1], src3End())
	}
	if cp, ok := cps.last(); !ok || cp.Offset != src3End() {
		t.Errorf("checkpoint file %+v, want offset %d", cp, src3End())
	}
}

// A failed commit stops the run with ErrRewind, and bad lines of the failed
// transaction are not dead-lettered (the replay will do it once).
func TestFailedCommitRewinds(t *testing.T) {
	src := lines(readLine1, "garbage")
	snk := &fakeTxnSink{fakeSink: newFakeSink(), failCommit: true}
	opts := TxnOptions{Options: testOptions(t, &memCheckpoints{}), CommitMaxLines: 2, CommitInterval: time.Hour}
	var stats Stats
	err := RunTransactional(context.Background(), src, snk, opts, &stats)
	if !errors.Is(err, ErrRewind) {
		t.Fatalf("RunTransactional = %v, want ErrRewind", err)
	}
	if stats.DeadLettered.Load() != 0 || len(snk.commits) != 0 {
		t.Errorf("dead-lettered %d, commits %d: want none after a failed commit", stats.DeadLettered.Load(), len(snk.commits))
	}
}
