package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/rs/zerolog"

	"dovecot-kafka/follow"
	"dovecot-kafka/mapping"
	"dovecot-kafka/sink"
	"dovecot-kafka/state"
)

// fakeSource returns its lines, then blocks until the context is done.
type fakeSource struct {
	lines []follow.Line
}

func lines(texts ...string) *fakeSource {
	s := &fakeSource{}
	var off int64
	for _, t := range texts {
		s.lines = append(s.lines, follow.Line{
			Pos:     follow.Position{Path: "/events.jsonl", File: follow.FileID{Dev: 1, Inode: 2}, Offset: off},
			End:     off + int64(len(t)) + 1,
			Data:    []byte(t),
			TooLong: strings.HasPrefix(t, "TOOLONG"),
		})
		off += int64(len(t)) + 1
	}
	return s
}

// linesInFile is lines, backed by a real file, for code that reads a line
// again from the events file.
func linesInFile(t *testing.T, texts ...string) *fakeSource {
	t.Helper()
	path := filepath.Join(t.TempDir(), "events.jsonl")
	if err := os.WriteFile(path, []byte(strings.Join(texts, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	id, _, err := follow.Identify(path)
	if err != nil {
		t.Fatal(err)
	}
	s := lines(texts...)
	for i := range s.lines {
		s.lines[i].Pos.Path, s.lines[i].Pos.File = path, id
	}
	return s
}

func (s *fakeSource) Next(ctx context.Context) (follow.Line, error) {
	if len(s.lines) == 0 {
		<-ctx.Done()
		return follow.Line{}, ctx.Err()
	}
	l := s.lines[0]
	s.lines = s.lines[1:]
	return l, nil
}

// fakeSink records what is produced; the test decides when and how each
// record is acknowledged. Flush acknowledges everything outstanding when
// flushAcks is set.
type fakeSink struct {
	mu        sync.Mutex
	produced  []sink.Record
	unacked   []uint64
	ch        chan sink.Delivery
	flushAcks bool
	closed    bool
	produceCh chan struct{}
	refuse    func(sink.Record) error // an error refuses the record at Produce
}

func newFakeSink() *fakeSink {
	return &fakeSink{ch: make(chan sink.Delivery, 1000), produceCh: make(chan struct{}, 1000)}
}

func (f *fakeSink) Produce(ctx context.Context, r sink.Record) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse != nil {
		if err := f.refuse(r); err != nil {
			return err
		}
	}
	r.Value = append([]byte(nil), r.Value...)
	r.Key = append([]byte(nil), r.Key...)
	hs := make([]sink.Header, len(r.Headers))
	for i, h := range r.Headers {
		hs[i] = sink.Header{Key: h.Key, Value: append([]byte(nil), h.Value...)}
	}
	r.Headers = hs
	f.produced = append(f.produced, r)
	f.unacked = append(f.unacked, r.Seq)
	f.produceCh <- struct{}{}
	return nil
}

func (f *fakeSink) Deliveries() <-chan sink.Delivery { return f.ch }

// ack delivers the i-th produced record (in produce order) with err.
func (f *fakeSink) ack(i int, err error) {
	f.mu.Lock()
	r := f.produced[i]
	f.mu.Unlock()
	d := sink.Delivery{Seq: r.Seq, Topic: r.Topic}
	if err != nil {
		d.Err, d.Class = err, sink.Classify(err)
	}
	f.ch <- d
}

func (f *fakeSink) Flush(time.Duration) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.flushAcks {
		return len(f.unacked)
	}
	for _, seq := range f.unacked {
		f.ch <- sink.Delivery{Seq: seq}
	}
	f.unacked = nil
	return 0
}

func (f *fakeSink) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		f.closed = true
		close(f.ch)
	}
}

func (f *fakeSink) waitProduced(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		select {
		case <-f.produceCh:
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of %d records produced", i, n)
		}
	}
}

type memCheckpoints struct {
	mu    sync.Mutex
	saved []state.Checkpoint
	fail  bool
}

func (m *memCheckpoints) Save(cp state.Checkpoint) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return errors.New("disk full")
	}
	m.saved = append(m.saved, cp)
	return nil
}

func (m *memCheckpoints) last() (state.Checkpoint, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.saved) == 0 {
		return state.Checkpoint{}, false
	}
	return m.saved[len(m.saved)-1], true
}

func testOptions(t *testing.T, cps *memCheckpoints) Options {
	return Options{
		Drivers:            []*mapping.Driver{{Topic: "dovecot", Events: mapping.AllEvents, KeywordPrefix: "$", SendFlags: true}},
		Checkpoints:        cps,
		CheckpointInterval: 5 * time.Millisecond,
		FlushTimeout:       time.Second,
		MaxPendingLines:    100,
		DeadLetter:         NewDeadLetter(filepath.Join(t.TempDir(), "dead-letter.jsonl")),
		Log:                zerolog.New(zerolog.NewTestWriter(t)),
	}
}

const (
	readLine1 = `{"user":"a","event":"MessageRead","mailbox":"INBOX","uidvalidity":1,"uid":1}`
	readLine2 = `{"user":"b","event":"MessageRead","mailbox":"INBOX","uidvalidity":1,"uid":2}`
	readLine3 = `{"user":"a","event":"MessageRead","mailbox":"INBOX","uidvalidity":1,"uid":3}`
)

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// The checkpoint never passes a line that Kafka has not acknowledged, even
// when later lines are acknowledged first.
func TestCheckpointWaitsForEarlierLines(t *testing.T) {
	src := lines(readLine1, readLine2, readLine3)
	snk := newFakeSink()
	cps := &memCheckpoints{}
	var stats Stats
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, src, snk, testOptions(t, cps), &stats) }()

	snk.waitProduced(t, 3)
	snk.ack(2, nil)
	snk.ack(1, nil)
	eventually(t, "two deliveries", func() bool { return stats.RecordsDelivered.Load() == 2 })
	time.Sleep(20 * time.Millisecond) // several checkpoint intervals
	if cp, ok := cps.last(); ok {
		t.Fatalf("checkpoint saved at %d while line 1 is unacknowledged", cp.Offset)
	}

	snk.ack(0, nil)
	end := src3End()
	eventually(t, "the checkpoint at the end", func() bool {
		cp, ok := cps.last()
		return ok && cp.Offset == end
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func src3End() int64 {
	return int64(len(readLine1) + len(readLine2) + len(readLine3) + 3)
}

// A clean stop waits for the outstanding acknowledgements (Flush) and saves
// the final position.
func TestCleanStopFlushesAndSaves(t *testing.T) {
	src := lines(readLine1, readLine2, readLine3)
	snk := newFakeSink()
	snk.flushAcks = true
	cps := &memCheckpoints{}
	var stats Stats
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, src, snk, testOptions(t, cps), &stats) }()
	snk.waitProduced(t, 3)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	cp, ok := cps.last()
	if !ok || cp.Offset != src3End() {
		t.Fatalf("final checkpoint %+v, want offset %d", cp, src3End())
	}
	if stats.RecordsProduced.Load() != 3 || stats.RecordsDelivered.Load() != 3 {
		t.Errorf("stats: produced %d delivered %d", stats.RecordsProduced.Load(), stats.RecordsDelivered.Load())
	}
}

// Bad lines go to the dead-letter file with their offset and reason; the
// good lines around them are published and the checkpoint moves past all.
func TestBadLinesAreDeadLettered(t *testing.T) {
	bad := `{"user":"a","event":"MessageSent","mailbox":"INBOX"}`
	src := lines(readLine1, `not json`, bad, "TOOLONG xxxx", readLine2)
	snk := newFakeSink()
	snk.flushAcks = true
	cps := &memCheckpoints{}
	opts := testOptions(t, cps)
	var stats Stats
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, src, snk, opts, &stats) }()
	snk.waitProduced(t, 2)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := stats.BadLines.Load(); got != 3 {
		t.Errorf("bad lines %d, want 3", got)
	}
	for kind, want := range map[BadKind]int64{BadJSON: 1, BadUnknownEvent: 1, BadTooLong: 1, BadUTF8: 0} {
		if got := stats.BadByKind[kind].Load(); got != want {
			t.Errorf("%v: %d, want %d", kind, got, want)
		}
	}
	data, err := os.ReadFile(opts.DeadLetter.Path())
	if err != nil {
		t.Fatal(err)
	}
	entries := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(entries) != 3 {
		t.Fatalf("dead-letter file has %d entries, want 3:\n%s", len(entries), data)
	}
	var first struct {
		Offset int64  `json:"offset"`
		Reason string `json:"reason"`
		Line   string `json:"line"`
		Error  string `json:"error"`
	}
	if err := json.Unmarshal([]byte(entries[0]), &first); err != nil {
		t.Fatal(err)
	}
	if first.Offset != int64(len(readLine1)+1) || first.Line != "not json" || first.Error == "" {
		t.Errorf("first entry %+v", first)
	}
	if !strings.Contains(entries[1], "unknown event") {
		t.Errorf("second entry %s", entries[1])
	}
	cp, _ := cps.last()
	srcEnd := int64(len(readLine1) + len("not json") + len(bad) + len("TOOLONG xxxx") + len(readLine2) + 5)
	if cp.Offset != srcEnd {
		t.Errorf("checkpoint %d, want %d", cp.Offset, srcEnd)
	}
}

// A record Kafka rejects for good is dead-lettered and does not hold back
// the checkpoint.
func TestRejectedRecordIsDeadLettered(t *testing.T) {
	src := linesInFile(t, readLine1, readLine2)
	snk := newFakeSink()
	cps := &memCheckpoints{}
	opts := testOptions(t, cps)
	var stats Stats
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, src, snk, opts, &stats) }()
	snk.waitProduced(t, 2)
	snk.ack(0, kafka.NewError(kafka.ErrMsgSizeTooLarge, "too large", false))
	snk.ack(1, nil)
	eventually(t, "the checkpoint past both lines", func() bool {
		cp, ok := cps.last()
		return ok && cp.Offset == int64(len(readLine1)+len(readLine2)+2)
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if stats.RecordsRejected.Load() != 1 || stats.DeadLettered.Load() != 1 {
		t.Errorf("rejected %d dead-lettered %d", stats.RecordsRejected.Load(), stats.DeadLettered.Load())
	}
	data, _ := os.ReadFile(opts.DeadLetter.Path())
	var entry struct {
		Topic, Reason, Error, Line string
		Offset                     int64
	}
	if err := json.Unmarshal(data, &entry); err != nil {
		t.Fatalf("dead-letter entry %s: %v", data, err)
	}
	if entry.Topic != "dovecot" || !strings.Contains(entry.Error, "too large") || entry.Line != readLine1 || entry.Offset != 0 {
		t.Errorf("dead-letter entry: %s", data)
	}
}

// A delivery that failed in a way a later attempt may fix stops the run
// with ErrRewind and leaves the checkpoint before the failed line.
func TestRetriableFailureRewinds(t *testing.T) {
	src := lines(readLine1, readLine2)
	snk := newFakeSink()
	cps := &memCheckpoints{}
	var stats Stats
	done := make(chan error, 1)
	go func() { done <- Run(context.Background(), src, snk, testOptions(t, cps), &stats) }()
	snk.waitProduced(t, 2)
	snk.ack(0, nil)
	snk.ack(1, kafka.NewError(kafka.ErrMsgTimedOut, "timed out", false))
	select {
	case err := <-done:
		if !errors.Is(err, ErrRewind) {
			t.Fatalf("Run = %v, want ErrRewind", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after a retriable failure")
	}
	cp, ok := cps.last()
	if !ok || cp.Offset != int64(len(readLine1)+1) {
		t.Fatalf("checkpoint %+v, want just past line 1", cp)
	}
}

// A failing checkpoint store does not stop publishing; the position is
// saved once the store works again.
func TestCheckpointFailureIsRetried(t *testing.T) {
	src := lines(readLine1)
	snk := newFakeSink()
	cps := &memCheckpoints{fail: true}
	var stats Stats
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, src, snk, testOptions(t, cps), &stats) }()
	snk.waitProduced(t, 1)
	snk.ack(0, nil)
	eventually(t, "a failed save", func() bool { return stats.CheckpointErrors.Load() > 0 })
	cps.mu.Lock()
	cps.fail = false
	cps.mu.Unlock()
	eventually(t, "a saved checkpoint", func() bool { _, ok := cps.last(); return ok })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A fatal producer error, not tied to any record, also rewinds.
func TestFatalProducerErrorRewinds(t *testing.T) {
	src := lines(readLine1)
	snk := newFakeSink()
	var stats Stats
	done := make(chan error, 1)
	go func() { done <- Run(context.Background(), src, snk, testOptions(t, &memCheckpoints{}), &stats) }()
	snk.waitProduced(t, 1)
	snk.ch <- sink.Delivery{Err: kafka.NewError(kafka.ErrOutOfOrderSequenceNumber, "fatal", true), Class: sink.Fatal, Producer: true}
	select {
	case err := <-done:
		if !errors.Is(err, ErrRewind) {
			t.Fatalf("Run = %v, want ErrRewind", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after a fatal producer error")
	}
}

// With ProvenanceHeaders, every record carries the host, the file's
// identity, the line's offset and the event time; without, none.
func TestProvenanceHeaders(t *testing.T) {
	line := `{"time":1733331200,"user":"a","event":"MessageRead","mailbox":"INBOX","uidvalidity":1,"uid":1}`
	for _, on := range []bool{false, true} {
		src := lines(readLine1, line)
		snk := newFakeSink()
		snk.flushAcks = true
		opts := testOptions(t, &memCheckpoints{})
		opts.ProvenanceHeaders = on
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		var stats Stats
		go func() { done <- Run(ctx, src, snk, opts, &stats) }()
		snk.waitProduced(t, 2)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, h := range snk.produced[1].Headers {
			got[h.Key] = string(h.Value)
		}
		if !on {
			if len(got) != 0 {
				t.Errorf("headers without the option: %v", got)
			}
			continue
		}
		host, _ := os.Hostname()
		want := map[string]string{
			"host": host, "file": "1:2",
			"offset":     strconv.Itoa(len(readLine1) + 1),
			"event_time": "2024-12-04T16:53:20Z",
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("header %s = %q, want %q", k, got[k], v)
			}
		}
	}
}

// A record librdkafka refuses before sending it (too large) is
// dead-lettered with its line, and the stream goes on.
func TestRefusedAtProduceIsDeadLettered(t *testing.T) {
	src := lines(readLine1, readLine2)
	snk := newFakeSink()
	snk.flushAcks = true
	snk.refuse = func(r sink.Record) error {
		if string(r.Key) == "a" {
			return fmt.Errorf("produce to dovecot: %w", kafka.NewError(kafka.ErrMsgSizeTooLarge, "too large", false))
		}
		return nil
	}
	cps := &memCheckpoints{}
	opts := testOptions(t, cps)
	var stats Stats
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, src, snk, opts, &stats) }()
	snk.waitProduced(t, 1) // user b's record; user a's was refused
	snk.ack(0, nil)
	eventually(t, "the checkpoint past both lines", func() bool {
		cp, ok := cps.last()
		return ok && cp.Offset == int64(len(readLine1)+len(readLine2)+2)
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(opts.DeadLetter.Path())
	if stats.RecordsRejected.Load() != 1 || !strings.Contains(string(data), `"line":"{\"user\":\"a\"`) {
		t.Errorf("rejected %d, dead-letter file %s", stats.RecordsRejected.Load(), data)
	}
}

// An event time ahead of the host's clock does not become the record
// timestamp (brokers refuse timestamps far in the future).
func TestFutureEventTimeIsNotTheTimestamp(t *testing.T) {
	future := time.Now().Add(2 * time.Hour).Unix()
	rd := newRenderer(testOptions(t, nil).Drivers, false, nil)
	for _, c := range []struct {
		time int64
		want time.Time
	}{
		{1733331200, time.Unix(1733331200, 0)},
		{future, time.Time{}},
		{0, time.Time{}},
	} {
		line := fmt.Sprintf(`{"time":%d,"user":"a","event":"MessageRead","mailbox":"INBOX","uidvalidity":1,"uid":1}`, c.time)
		recs, _, err := rd.render(follow.Line{Data: []byte(line)})
		if err != nil || len(recs) != 1 {
			t.Fatalf("render: %v %d", err, len(recs))
		}
		if !recs[0].Time.Equal(c.want) {
			t.Errorf("time %d: record timestamp %v, want %v", c.time, recs[0].Time, c.want)
		}
	}
}
