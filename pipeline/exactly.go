package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"dovecot-kafka/follow"
	"dovecot-kafka/sink"
	"dovecot-kafka/state"
)

// TxnSink publishes in Kafka transactions; *sink.TxnProducer is one.
type TxnSink interface {
	Sink
	Begin() error
	ProducePosition(ctx context.Context, value []byte) error
	Commit(ctx context.Context) error
	Abort(ctx context.Context) error
}

// TxnOptions configure RunTransactional.
type TxnOptions struct {
	Options
	CommitInterval time.Duration // longest time a transaction stays open (default 200ms)
	CommitMaxLines int           // most lines in one transaction (default 10000)

	// Rejected remembers records Kafka rejected for good, across runs: a
	// rejected record makes its transaction fail, and the next run must
	// dead-letter it instead of producing it again. Nil: not remembered
	// (the caller then loops on such a record).
	Rejected *RejectedSet
}

// RejectedSet is the set of records (line and topic) Kafka rejected for
// good in the exactly-once mode. It is safe for concurrent use.
type RejectedSet struct {
	mu sync.Mutex
	m  map[rejectedKey]error
}

type rejectedKey struct {
	dev, inode uint64
	offset     int64
	topic      string
}

func (s *RejectedSet) add(pos follow.Position, topic string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[rejectedKey]error{}
	}
	s.m[rejectedKey{pos.File.Dev, pos.File.Inode, pos.Offset, topic}] = err
}

func (s *RejectedSet) lookup(pos follow.Position, topic string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[rejectedKey{pos.File.Dev, pos.File.Inode, pos.Offset, topic}]
}

// RunTransactional is Run for the exactly-once mode. Lines are published in
// Kafka transactions of up to CommitMaxLines lines or CommitInterval, and
// each transaction also carries the position just past its last line
// (ProducePosition), so that the records and the position become visible
// to read_committed consumers together or not at all. After each commit
// the position is also saved in the checkpoint file, for the operator's
// tools; on start the position in Kafka is the one that counts.
//
// A clean stop commits the open transaction. A failed transaction is
// aborted and Run returns ErrRewind: the caller starts again from the
// position stored in Kafka, which the aborted records never passed.
func RunTransactional(ctx context.Context, src Source, snk TxnSink, opts TxnOptions, stats *Stats) error {
	if opts.CommitInterval <= 0 {
		opts.CommitInterval = 200 * time.Millisecond
	}
	if opts.CommitMaxLines <= 0 {
		opts.CommitMaxLines = 10000
	}
	if opts.FlushTimeout <= 0 {
		opts.FlushTimeout = 5 * time.Second
	}
	if opts.MaxLineBytes <= 0 {
		opts.MaxLineBytes = 1 << 20
	}
	if opts.Rejected == nil {
		opts.Rejected = &RejectedSet{}
	}
	t := &txnRun{opts: opts, src: src, snk: snk, stats: stats, badLog: newRateLimited(time.Minute)}

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t.drainDeliveries()
	}()
	err := t.loop(ctx)
	snk.Close()
	wg.Wait()
	return err
}

type txnRun struct {
	opts   TxnOptions
	src    Source
	snk    TxnSink
	stats  *Stats
	badLog *rateLimited

	mu         sync.Mutex
	deliverErr error             // the first failed delivery of the open transaction
	linePos    []follow.Position // where each line of the open transaction starts; Seq-1 indexes it

	// Bad lines of the open transaction, dead-lettered once it commits so
	// that a replay after an abort does not write them twice.
	bad []badLine
}

type badLine struct {
	pos   follow.Position
	kind  BadKind
	err   error
	line  []byte
	topic string // set: a record Kafka rejected, not a bad line
}

func (t *txnRun) drainDeliveries() {
	for d := range t.snk.Deliveries() {
		if d.Err == nil {
			if !d.Producer && d.Seq != 0 {
				t.stats.RecordsDelivered.Add(1)
			}
			continue
		}
		if isPurge(d.Err) {
			continue
		}
		t.mu.Lock()
		if t.deliverErr == nil {
			t.deliverErr = d.Err
		}
		// A record rejected for good fails the whole transaction; the next
		// run dead-letters it instead of producing it again.
		if d.Class == sink.GiveUp && d.Seq > 0 && int(d.Seq) <= len(t.linePos) {
			t.opts.Rejected.add(t.linePos[d.Seq-1], d.Topic, d.Err)
		}
		t.mu.Unlock()
	}
}

// loop runs one transaction after another until ctx is done or one fails.
func (t *txnRun) loop(ctx context.Context) error {
	rd := newRenderer(t.opts.Drivers, t.opts.ProvenanceHeaders, t.src)
	log := t.opts.Log
	for {
		if err := t.snk.Begin(); err != nil {
			return fmt.Errorf("%w: %v", ErrRewind, err)
		}
		end, lines, readErr := t.fill(ctx, rd)

		// Work on the transaction goes on after a stop was asked for, up
		// to the flush time, so that a clean stop commits what was read.
		wctx, cancel := context.WithTimeout(context.Background(), t.opts.FlushTimeout)
		if lines > 0 && readErr == nil || lines > 0 && errors.Is(readErr, context.Canceled) {
			cp := state.FromPosition(end)
			value, err := state.Marshal(cp)
			if err == nil {
				err = t.snk.ProducePosition(wctx, value)
			}
			if err == nil {
				err = t.snk.Commit(wctx)
			}
			if err != nil {
				cancel()
				t.abort(err)
				return fmt.Errorf("%w: %v", ErrRewind, err)
			}
			t.committed(cp)
		} else if err := t.snk.Abort(wctx); err != nil { // nothing read
			cancel()
			return fmt.Errorf("%w: %v", ErrRewind, err)
		}
		cancel()

		if readErr != nil {
			if errors.Is(readErr, context.Canceled) {
				log.Info().Int64("offset", end.Offset).Msg("stopped after committing the open transaction")
				return nil
			}
			return fmt.Errorf("%w: %v", ErrRewind, readErr)
		}
	}
}

// fill reads and produces lines into the open transaction until it is
// full, CommitInterval has passed since its first line, or ctx is done. It
// returns the position just past the last line read.
func (t *txnRun) fill(ctx context.Context, rd *renderer) (follow.Position, int, error) {
	var (
		end      follow.Position
		lines    int
		deadline time.Time
	)
	for lines < t.opts.CommitMaxLines {
		nctx, cancel := ctx, context.CancelFunc(func() {})
		if lines > 0 {
			nctx, cancel = context.WithDeadline(ctx, deadline)
		}
		line, err := t.src.Next(nctx)
		cancel()
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				return end, lines, nil // the transaction is old enough
			}
			return end, lines, err
		}
		if lines == 0 {
			deadline = time.Now().Add(t.opts.CommitInterval)
		}
		lines++
		t.stats.LinesRead.Add(1)
		end = line.Pos
		end.Offset = line.End

		recs, kind, badErr := rd.render(line)
		if badErr != nil {
			t.keepBad(line, kind, errOrNil(badErr))
			continue
		}
		t.mu.Lock()
		t.linePos = append(t.linePos, line.Pos)
		seq := uint64(len(t.linePos)) // the position record has 0
		t.mu.Unlock()
		for _, rec := range recs {
			if rerr := t.opts.Rejected.lookup(line.Pos, rec.Topic); rerr != nil {
				t.keepRejected(line, rec.Topic, rerr)
				continue
			}
			rec.Seq = seq
			if err := t.snk.Produce(ctx, rec); err != nil {
				if sink.Classify(err) == sink.GiveUp {
					t.keepRejected(line, rec.Topic, err)
					continue
				}
				return end, lines, err
			}
			t.stats.RecordsProduced.Add(1)
		}
	}
	return end, lines, nil
}

func (t *txnRun) keepBad(line follow.Line, kind BadKind, err error) {
	t.bad = append(t.bad, badLine{pos: line.Pos, kind: kind, err: err, line: append([]byte(nil), line.Data...)})
}

func (t *txnRun) keepRejected(line follow.Line, topic string, err error) {
	t.bad = append(t.bad, badLine{pos: line.Pos, topic: topic, err: err, line: append([]byte(nil), line.Data...)})
}

// committed records a successful commit: bad lines to the dead-letter
// file, the position to the checkpoint file.
func (t *txnRun) committed(cp state.Checkpoint) {
	r := &run{opts: t.opts.Options, stats: t.stats, log: t.opts.Log, badLog: t.badLog}
	for _, b := range t.bad {
		if b.topic != "" {
			r.rejected(b.pos, b.topic, b.err, b.line)
			continue
		}
		r.bad(follow.Line{Pos: b.pos, Data: b.line}, b.kind, b.err)
	}
	t.bad = t.bad[:0]
	t.mu.Lock()
	t.deliverErr = nil
	t.linePos = t.linePos[:0]
	t.mu.Unlock()
	if t.opts.Checkpoints != nil {
		if err := t.opts.Checkpoints.Save(cp); err != nil {
			t.stats.CheckpointErrors.Add(1)
			if checkpointErrLog.allow("save") {
				t.opts.Log.Error().Err(err).Int64("offset", cp.Offset).
					Msg("cannot save the checkpoint file; the position in Kafka is the one that counts, publishing goes on")
			}
		}
	}
}

func (t *txnRun) abort(err error) {
	t.mu.Lock()
	derr := t.deliverErr
	t.mu.Unlock()
	e := t.opts.Log.Error().Err(err)
	if derr != nil {
		e = e.AnErr("delivery_error", derr)
	}
	e.Msg("kafka transaction failed and was aborted; restarting from the position stored in Kafka")
	t.bad = t.bad[:0]
	t.mu.Lock()
	t.linePos = t.linePos[:0]
	t.mu.Unlock()
}
