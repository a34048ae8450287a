// Package pipeline runs the daemon's data flow: lines from the events file
// are parsed, rendered once per driver and produced to Kafka; delivery
// reports flow back into a tracker, and the checkpoint is saved only up to
// the last line that Kafka acknowledged together with every line before it.
//
// One call to Run is one generation of the flow, with one reader and one
// producer. Run returns nil after a clean stop; ErrRewind when delivery
// can no longer be trusted to continue in order (a record failed in a way
// that a later attempt may fix, or the producer became unusable): the
// caller then builds a new reader and producer from the saved checkpoint
// and calls Run again, so such failures cost duplicates, never loss.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"dovecot-kafka/follow"
	"dovecot-kafka/mapping"
	"dovecot-kafka/sink"
	"dovecot-kafka/state"
)

// ErrRewind asks the caller to restart the flow from the saved checkpoint.
var ErrRewind = errors.New("pipeline: delivery failed; restart from the checkpoint")

// Source yields the lines of the events file; *follow.Reader is one.
type Source interface {
	Next(ctx context.Context) (follow.Line, error)
}

// Sink publishes records and reports their fate; *sink.Producer is one.
// Deliveries must report every record Produce accepted, and be closed by
// Close once all reports are out.
type Sink interface {
	Produce(ctx context.Context, r sink.Record) error
	Deliveries() <-chan sink.Delivery
	Flush(timeout time.Duration) int
	Close()
}

// Checkpointer saves positions; *state.Store is one.
type Checkpointer interface {
	Save(cp state.Checkpoint) error
}

// Options configure Run.
type Options struct {
	Drivers            []*mapping.Driver
	Checkpoints        Checkpointer
	CheckpointInterval time.Duration // how often to save (default 1s)
	FlushTimeout       time.Duration // how long a stop waits for acknowledgements (default 5s)
	MaxPendingLines    int           // lines in flight before reading pauses (default 100000)
	MaxLineBytes       int           // longest line; bounds re-reading a rejected line (default 1 MiB)
	ProvenanceHeaders  bool          // add host, file, offset and event_time headers to every record
	DeadLetter         *DeadLetter   // where unpublishable lines go; nil: only logged and counted
	Log                zerolog.Logger
}

// Stats counts what one or more runs did. All fields are updated
// atomically and may be read while Run works.
type Stats struct {
	LinesRead        atomic.Int64
	BadLines         atomic.Int64 // lines that failed to parse or were too long
	BadByKind        [badKinds]atomic.Int64
	RecordsProduced  atomic.Int64
	RecordsDelivered atomic.Int64
	RecordsRejected  atomic.Int64 // given up on: the broker rejects them for good
	DeadLettered     atomic.Int64
	CheckpointErrors atomic.Int64
}

// Run moves lines from src to snk until ctx is done (a clean stop: reading
// stops, outstanding records get up to FlushTimeout to be acknowledged,
// the checkpoint is saved) or until delivery fails in a way that needs a
// restart from the checkpoint (ErrRewind). snk is closed before Run
// returns.
func Run(ctx context.Context, src Source, snk Sink, opts Options, stats *Stats) error {
	if opts.CheckpointInterval <= 0 {
		opts.CheckpointInterval = time.Second
	}
	if opts.FlushTimeout <= 0 {
		opts.FlushTimeout = 5 * time.Second
	}
	if opts.MaxPendingLines <= 0 {
		opts.MaxPendingLines = 100000
	}
	if opts.MaxLineBytes <= 0 {
		opts.MaxLineBytes = 1 << 20
	}
	r := &run{
		opts:    opts,
		src:     src,
		snk:     snk,
		stats:   stats,
		tracker: state.NewTracker(opts.MaxPendingLines),
		log:     opts.Log,
		badLog:  newRateLimited(time.Minute),
	}
	return r.run(ctx)
}

type run struct {
	opts    Options
	src     Source
	snk     Sink
	stats   *Stats
	tracker *state.Tracker
	log     zerolog.Logger
	badLog  *rateLimited

	rewindOnce sync.Once
	rewind     chan struct{} // closed when a delivery asks for ErrRewind
	rewindErr  error
	stopAt     atomic.Int64 // when the stop was asked for, Unix nanoseconds

	saved    follow.Position
	hasSaved bool
}

func (r *run) run(ctx context.Context) error {
	r.rewind = make(chan struct{})

	// Work on the current line must finish even after a stop was asked
	// for, or a clean stop would leave a line half produced; it is cut
	// short only when the flush time after the stop runs out.
	workCtx, cancelWork := context.WithCancel(context.Background())
	defer cancelWork()
	readCtx, cancelRead := context.WithCancel(ctx)
	defer cancelRead()
	go func() {
		select {
		case <-r.rewind:
			cancelRead()
			cancelWork()
		case <-readCtx.Done():
			r.stopAt.Store(time.Now().UnixNano())
			select {
			case <-r.rewind:
				cancelWork()
			case <-time.After(r.opts.FlushTimeout):
				cancelWork()
			case <-workCtx.Done():
			}
		}
	}()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.deliveries()
	}()
	stopSaver := make(chan struct{})
	saverDone := make(chan struct{})
	go func() {
		defer close(saverDone)
		r.saveLoop(stopSaver)
	}()

	readErr := r.read(readCtx, workCtx)

	// Stop: give Kafka the flush time to acknowledge what was sent, then
	// close the producer (purging the rest) and collect the last reports.
	// The flush time counts from the stop, including any time the reader
	// spent finishing its line.
	flushFor := r.opts.FlushTimeout
	if at := r.stopAt.Load(); at != 0 {
		flushFor = max(0, r.opts.FlushTimeout-time.Since(time.Unix(0, at)))
	}
	select {
	case <-r.rewind:
	default:
		if left := r.snk.Flush(flushFor); left > 0 {
			r.log.Warn().Int("records", left).
				Dur("duration", r.opts.FlushTimeout).
				Msg("kafka did not acknowledge every record before the flush time ran out; they are published again after restart")
		}
	}
	r.snk.Close()
	wg.Wait()
	close(stopSaver)
	<-saverDone
	r.save() // the final position

	select {
	case <-r.rewind:
		return r.rewindErr
	default:
	}
	if readErr != nil && !errors.Is(readErr, context.Canceled) {
		return readErr
	}
	return nil
}

// read is the hot loop: one line at a time, every driver's record for it
// rendered into one reused buffer, then produced.
func (r *run) read(readCtx, workCtx context.Context) error {
	rd := newRenderer(r.opts.Drivers, r.opts.ProvenanceHeaders, r.src)
	for {
		line, err := r.src.Next(readCtx)
		if err != nil {
			return err
		}
		r.stats.LinesRead.Add(1)

		recs, kind, badErr := rd.render(line)
		if badErr != nil {
			r.bad(line, kind, errOrNil(badErr))
		}
		seq, err := r.tracker.Add(workCtx, line.Pos, line.End, len(recs))
		if err != nil {
			return err
		}
		for _, rec := range recs {
			rec.Seq = seq
			if err := r.snk.Produce(workCtx, rec); err != nil {
				if sink.Classify(err) != sink.GiveUp {
					return err
				}
				// Refused before sending (too large): as if Kafka had
				// rejected it, with the line at hand.
				r.rejected(line.Pos, rec.Topic, err, line.Data)
				r.tracker.Ack(seq)
				continue
			}
			r.stats.RecordsProduced.Add(1)
		}
	}
}

// errOrNil hides errTooLong: the kind already says it.
func errOrNil(err error) error {
	if errors.Is(err, errTooLong) {
		return nil
	}
	return err
}

// bad sends a line that cannot be published to the dead-letter file, with
// its position and the reason, counts it by kind, and logs it at most once
// a minute per kind.
func (r *run) bad(line follow.Line, kind BadKind, err error) {
	r.stats.BadLines.Add(1)
	r.stats.BadByKind[kind].Add(1)
	reason := kind.String()
	written := false
	if r.opts.DeadLetter != nil {
		if dlErr := r.opts.DeadLetter.Write(line.Pos, "", reason, err, line.Data); dlErr != nil {
			if r.badLog.allow("dead-letter write") {
				r.log.Error().Err(dlErr).
					Str("path", line.Pos.Path).
					Int64("offset", line.Pos.Offset).
					Str("reason", reason).
					Msg("cannot write the dead-letter file; bad lines stay only in the events file at their offsets (logged at most once a minute)")
			}
		} else {
			r.stats.DeadLettered.Add(1)
			written = true
		}
	}
	if r.badLog.allow(reason) {
		e := r.log.Warn().Str("path", line.Pos.Path).Int64("offset", line.Pos.Offset)
		if err != nil {
			e = e.Err(err)
		}
		e.Str("reason", reason).Bool("dead_lettered", written).
			Msg("skipping a line that cannot be published (further lines of this kind are logged at most once a minute)")
	}
}

// rejected dead-letters a record Kafka refused for good, counts it and
// logs it at a bounded rate.
func (r *run) rejected(pos follow.Position, topic string, cause error, line []byte) {
	r.stats.RecordsRejected.Add(1)
	written := false
	if r.opts.DeadLetter != nil {
		if err := r.opts.DeadLetter.Write(pos, topic, "rejected by kafka", cause, line); err != nil {
			if r.badLog.allow("dead-letter write") {
				r.log.Error().Err(err).Str("path", pos.Path).Int64("offset", pos.Offset).
					Msg("cannot write the dead-letter file; the rejected line stays only in the events file at this offset (logged at most once a minute)")
			}
		} else {
			r.stats.DeadLettered.Add(1)
			written = true
		}
	}
	if r.badLog.allow("rejected " + topic) {
		r.log.Error().Err(cause).
			Str("topic", topic).
			Str("path", pos.Path).
			Int64("offset", pos.Offset).
			Bool("dead_lettered", written).
			Msg("kafka rejected a record for good; publishing goes on (logged at most once a minute per topic)")
	}
}

// deliveries turns delivery reports into acknowledgements until the
// producer closes its channel.
func (r *run) deliveries() {
	for d := range r.snk.Deliveries() {
		if d.Err == nil {
			r.stats.RecordsDelivered.Add(1)
			r.tracker.Ack(d.Seq)
			continue
		}
		switch d.Class {
		case sink.GiveUp:
			pos, _ := r.tracker.Position(d.Seq)
			r.rejected(pos, d.Topic, d.Err, lineAt(pos, r.opts.MaxLineBytes+1))
			r.tracker.Ack(d.Seq)
		default:
			// Purged at a stop: simply not acknowledged. Otherwise the
			// order of later records can no longer be guaranteed: restart
			// from the checkpoint.
			if isPurge(d.Err) {
				continue
			}
			r.requestRewind(d)
		}
	}
}

func (r *run) requestRewind(d sink.Delivery) {
	r.rewindOnce.Do(func() {
		e := r.log.Warn() // e.g. a topic still being created
		if d.Class == sink.Fatal {
			e = r.log.Error()
		}
		e.Err(d.Err).
			Str("topic", d.Topic).
			Str("class", d.Class.String()).
			Bool("producer", d.Producer).
			Msg("kafka delivery failed; restarting from the last checkpoint (records after it may be published twice)")
		r.rewindErr = fmt.Errorf("%w: %v", ErrRewind, d.Err)
		close(r.rewind)
	})
}

func (r *run) saveLoop(stop <-chan struct{}) {
	t := time.NewTicker(r.opts.CheckpointInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			r.save()
		}
	}
}

var checkpointErrLog = newRateLimited(time.Minute)

// save writes the committed position if it moved since the last save.
func (r *run) save() {
	pos, ok := r.tracker.Committed()
	if !ok || (r.hasSaved && pos == r.saved) || r.opts.Checkpoints == nil {
		return
	}
	if err := r.opts.Checkpoints.Save(state.FromPosition(pos)); err != nil {
		r.stats.CheckpointErrors.Add(1)
		if checkpointErrLog.allow("save") {
			r.log.Error().Err(err).Int64("offset", pos.Offset).
				Msg("cannot save the checkpoint; publishing goes on and saving is retried (a restart now would publish some lines again)")
		}
		return
	}
	r.saved, r.hasSaved = pos, true
	r.log.Debug().Str("path", pos.Path).Int64("offset", pos.Offset).Msg("checkpoint saved")
}
