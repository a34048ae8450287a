package tools

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"dovecot-kafka/config"
	"dovecot-kafka/mapping"
	"dovecot-kafka/parser"
	"dovecot-kafka/sink"
)

const replaySynopsis = `
Usage: dovecot-kafka replay [-config FILE] [-from POS] [-to POS] [-topic T]
                            [-driver NAME] [-dry-run] FILE...

Publishes again the events between two positions of the events files FILE...,
read in the order given: rotated generations oldest first, the current file
last. Gzip-compressed generations are read too. The running daemon is not
disturbed: its checkpoint is never opened for writing.

POS is one of:
  1234                   a byte offset where a line starts; -from counts in the
                         first FILE, -to in the last
  checkpoint:PATH        the offset saved in a checkpoint file, in the file it
                         names: found among FILE... by device and inode, or by
                         its first bytes for a renamed or compressed copy
  2026-12-04T10:00:00Z   an RFC 3339 time, compared with each line's event
                         time: -from starts at the first line at or after it,
                         -to stops before the first line at or after it
Without -from, replay starts at the beginning of the first FILE; without -to,
it ends at the end of the last FILE (as far as it is written at that moment).

Every record is the daemon's record for that line: key = the user, value as
the driver renders it, timestamp = the event time, no headers; replaying a
range twice gives the same records twice. Lines that cannot be parsed are
reported with file and offset and not published. At the end a summary line
says how many events were read, published, skipped by the drivers' filters,
and how many lines were bad; the exit status is 1 if any record failed.

Example:
  dovecot-kafka replay -config /etc/dovecot-kafka/dovecot-kafka.toml \
      -from 2026-12-04T10:00:00Z -to 2026-12-04T12:00:00Z \
      /var/spool/dovecot-kafka/events.jsonl.1 /var/spool/dovecot-kafka/events.jsonl
`

// maxReports bounds the bad lines and failed records reported one by one.
const maxReports = 100

// Replay runs the replay command with args (the words after "replay").
// It stops reading when ctx is done; records not yet acknowledged then
// count as failed.
func Replay(ctx context.Context, args []string, stdio IO) int {
	c := newCommand("replay", stdio, replaySynopsis)
	configPath := c.fs.String("config", DefaultConfig, "configuration `file` (TOML): drivers, Kafka settings, max_line_bytes")
	fromFlag := c.fs.String("from", "", "start `position`: offset, checkpoint:PATH or RFC 3339 time (default: the beginning of the first FILE)")
	toFlag := c.fs.String("to", "", "end `position`, not included: offset, checkpoint:PATH or RFC 3339 time (default: the end of the last FILE)")
	topic := c.fs.String("topic", "", "send every record to this `topic` instead of its driver's")
	driver := c.fs.String("driver", "", "use only the driver with this `name` (a driver's name defaults to its topic)")
	dryRun := c.fs.Bool("dry-run", false, "print topic<TAB>key<TAB>value lines to stdout instead of producing")
	deliveryTimeout := c.fs.Duration("delivery-timeout", 5*time.Minute, "give up on a record Kafka has not acknowledged after this long (librdkafka message.timeout.ms, 0: never); when not given, kafka.settings' message.timeout.ms wins if set")
	names, status, ok := c.parse(args)
	if !ok {
		return status
	}
	timeoutSet := false
	c.fs.Visit(func(f *flag.Flag) { timeoutSet = timeoutSet || f.Name == "delivery-timeout" })

	if *deliveryTimeout < 0 {
		return c.usageError("-delivery-timeout %s: give a positive duration, or 0 to wait for ever", *deliveryTimeout)
	}
	if *topic != "" && !config.ValidTopic(*topic) {
		return c.usageError("-topic %q: a Kafka topic name has 1 to 249 of the characters a-z A-Z 0-9 . _ -", *topic)
	}
	cfg, status, ok := c.loadConfig(*configPath)
	if !ok {
		return status
	}
	if err := checkInput(cfg); err != nil {
		return c.usageError("%v", err)
	}
	if len(names) == 0 {
		return c.usageError("name the events files to read, oldest first, e.g. %s.1 %s (events_file in %s)", cfg.EventsFile, cfg.EventsFile, *configPath)
	}
	r := &replayer{c: c, maxLine: cfg.MaxLineBytes}
	for _, name := range names {
		in, err := statInput(name)
		if err != nil {
			return c.usageError("events file: %v", err)
		}
		r.files = append(r.files, in)
	}

	drivers, err := selectDrivers(cfg, *driver, *topic)
	if err != nil {
		return c.usageError("%v", err)
	}
	r.drivers = drivers
	if err := r.resolve(*fromFlag, *toFlag); err != nil {
		return c.usageError("%v", err)
	}

	if *dryRun {
		return r.dryRun(ctx)
	}
	scfg := cfg.Sink()
	scfg.Settings = replaySettings(scfg.Settings, *deliveryTimeout, timeoutSet)
	if cfg.ExactlyOnce.Enabled {
		c.notef("exactly_once is enabled in the configuration; replayed records are produced outside transactions, so read_committed consumers see them at once")
	}
	return r.produce(ctx, scfg, kafkaLogger(cfg, c.stdio.Err))
}

// checkInput refuses inputs whose lines the tools cannot parse: they read
// push-events.lua's format only.
func checkInput(cfg *config.Config) error {
	if cfg.Input != "" && cfg.Input != "lua" {
		return fmt.Errorf("input %q: this command reads only the format of push-events.lua (input \"lua\")", cfg.Input)
	}
	return nil
}

// selectDrivers returns the configured drivers, only the one named name if
// set, each with its topic replaced by topic if set.
func selectDrivers(cfg *config.Config, name, topic string) ([]*mapping.Driver, error) {
	all := cfg.MappingDrivers()
	drivers := all
	if name != "" {
		drivers = nil
		var names []string
		for _, d := range all {
			names = append(names, d.Name)
			if d.Name == name {
				drivers = append(drivers, d)
			}
		}
		if len(drivers) == 0 {
			return nil, fmt.Errorf("-driver %q: no such driver; the configured ones are %s", name, strings.Join(names, ", "))
		}
	}
	if topic != "" {
		for i, d := range drivers {
			cp := *d
			cp.Topic = topic
			drivers[i] = &cp
		}
	}
	return drivers, nil
}

// replaySettings returns the librdkafka settings for a replay: the
// configured ones, with client.id dovecot-kafka-replay unless set, and a
// finite message.timeout.ms (the daemon waits for ever; a replay that
// cannot deliver should end and say so).
func replaySettings(settings map[string]string, timeout time.Duration, timeoutSet bool) map[string]string {
	out := make(map[string]string, len(settings)+2)
	for k, v := range settings {
		out[k] = v
	}
	if _, ok := out["client.id"]; !ok {
		out["client.id"] = "dovecot-kafka-replay"
	}
	if _, ok := out["message.timeout.ms"]; !ok || timeoutSet {
		out["message.timeout.ms"] = strconv.FormatInt(timeout.Milliseconds(), 10)
	}
	return out
}

// replayer reads the range and hands each record to emit.
type replayer struct {
	c       *command
	files   []*inputFile
	drivers []*mapping.Driver
	maxLine int

	from, to   bound
	start      filePos // where reading starts
	end        filePos // where it stops (not included), if hasEnd
	hasEnd     bool
	disk       atomic.Int64 // bytes read from disk
	lines      atomic.Int64 // events read in the range
	records    int64        // records handed to emit
	skipped    int64        // events no selected driver publishes
	bad        int64        // lines that cannot be parsed
	future     int64        // events timed ahead of this host's clock
	badReports int
}

// resolve checks both bounds and turns offsets and checkpoints into file
// positions.
func (r *replayer) resolve(fromText, toText string) error {
	var err error
	if r.from, err = parseBound("-from", fromText); err != nil {
		return err
	}
	if r.to, err = parseBound("-to", toText); err != nil {
		return err
	}

	last := len(r.files) - 1
	switch r.from.kind {
	case boundOffset:
		r.start = filePos{file: 0, offset: r.from.offset}
	case boundCheckpoint:
		if r.start, err = matchCheckpoint(r.from.cp, r.files); err != nil {
			return fmt.Errorf("-from %s: %w", r.from.text, err)
		}
		r.c.notef("-from %s: %s", r.from.text, r.start.how)
	}
	switch r.to.kind {
	case boundOffset:
		r.end, r.hasEnd = filePos{file: last, offset: r.to.offset}, true
	case boundCheckpoint:
		if r.end, err = matchCheckpoint(r.to.cp, r.files); err != nil {
			return fmt.Errorf("-to %s: %w", r.to.text, err)
		}
		r.hasEnd = true
		r.c.notef("-to %s: %s", r.to.text, r.end.how)
	}

	if err := r.files[r.start.file].checkLineStart(r.start.offset); err != nil {
		return fmt.Errorf("-from %s: %w", r.from.text, err)
	}
	if r.hasEnd {
		if err := r.files[r.end.file].checkLineStart(r.end.offset); err != nil {
			return fmt.Errorf("-to %s: %w", r.to.text, err)
		}
		if r.end.file < r.start.file || (r.end.file == r.start.file && r.end.offset < r.start.offset) {
			return fmt.Errorf("-to %s is before -from %s: the range is empty", r.to.text, r.from.text)
		}
	}
	if r.from.kind == boundTime && r.to.kind == boundTime && !r.to.time.After(r.from.time) {
		return fmt.Errorf("-to %s is not after -from %s: the range is empty", r.to.text, r.from.text)
	}
	return nil
}

// read reads the range, line by line, rendering each event for every
// driver and handing the records to emit. seq of a record encodes the file
// and offset of its line (see linePos).
func (r *replayer) read(ctx context.Context, emit func(sink.Record) error) error {
	st := &readState{buf: make([]byte, 0, 64<<10), started: r.from.kind != boundTime}
	for i := r.start.file; i < len(r.files); i++ {
		if r.hasEnd && i > r.end.file {
			break
		}
		stop, err := r.readFile(ctx, i, st, emit)
		if err != nil || stop {
			return err
		}
	}
	if !st.started {
		r.c.notef("-from %s: no line has an event time at or after it; nothing to replay", r.from.text)
	}
	return nil
}

// readState is what read carries from one file to the next.
type readState struct {
	p       parser.Parser
	buf     []byte // the value being rendered
	started bool   // a -from time has been reached
}

// readFile reads file i of the range. stop reports that the range ended
// in it.
func (r *replayer) readFile(ctx context.Context, i int, st *readState, emit func(sink.Record) error) (stop bool, err error) {
	in := r.files[i]
	off := int64(0)
	if i == r.start.file {
		off = r.start.offset
	}
	c, err := in.open(off, &r.disk)
	if err != nil {
		return true, fmt.Errorf("open %s: %w", in.name, err)
	}
	defer c.Close()

	sc := newScanner(c, off, r.maxLine)
	for {
		if err := ctx.Err(); err != nil {
			return true, err
		}
		line, at, tooLong, err := sc.next()
		switch {
		case errors.Is(err, io.EOF):
			return false, nil
		case errors.Is(err, errPartial):
			r.c.notef("%s: incomplete last line at offset %d (no newline yet: still being written, or cut off); not replayed", in.name, at)
			return false, nil
		case err != nil:
			return true, fmt.Errorf("read %s at offset %d: %w", in.name, at, err)
		}
		if r.hasEnd && i == r.end.file && at >= r.end.offset {
			return true, nil
		}

		// The time bounds need the event; a bad line is inside the range
		// once the range has started.
		var ev *parser.Event
		var perr error
		if !tooLong {
			ev, perr = st.p.Parse(line)
		}
		parsed := !tooLong && perr == nil
		if !st.started {
			if !parsed || !r.from.reached(ev.Time) {
				continue
			}
			st.started = true
			r.c.notef("-from %s: starting at %s offset %d, the first line with an event time at or after it", r.from.text, in.name, at)
		}
		if r.to.kind == boundTime && parsed && r.to.reached(ev.Time) {
			r.c.notef("-to %s: stopping before %s offset %d, the first line with an event time at or after it", r.to.text, in.name, at)
			return true, nil
		}
		r.lines.Add(1)
		if !parsed {
			r.reportBad(in.name, at, tooLong, perr)
			continue
		}

		ts := r.timestamp(ev.Time)
		emitted := false
		for _, d := range r.drivers {
			var ok bool
			if st.buf, ok = d.AppendValue(st.buf[:0], ev); !ok {
				continue
			}
			rec := sink.Record{Topic: d.Topic, Key: ev.User, Value: st.buf, Time: ts, Seq: linePos(i, at)}
			if err := emit(rec); err != nil {
				return true, err
			}
			r.records++
			emitted = true
		}
		if !emitted {
			r.skipped++
		}
	}
}

// noteFuture says how many records did not get their event time.
func (r *replayer) noteFuture() {
	if r.future > 0 {
		r.c.notef("%d events have times more than %ds ahead of this host's clock: their records carry the time of publishing instead, as the daemon's do", r.future, int(mapping.MaxClockSkew.Seconds()))
	}
}

func (r *replayer) reportBad(name string, at int64, tooLong bool, err error) {
	r.bad++
	r.badReports++
	switch {
	case r.badReports == maxReports+1:
		r.c.notef("more than %d bad lines: further ones are only counted", maxReports)
	case r.badReports > maxReports:
	case tooLong:
		r.c.notef("bad line in %s at offset %d: longer than max_line_bytes (%d); not published", name, at, r.maxLine)
	default:
		r.c.notef("bad line in %s at offset %d: %v; not published", name, at, err)
	}
}

// timestamp returns the record timestamp for an event time, as the daemon
// sets it (mapping.Timestamp), counting event times it had to drop because
// they lie ahead of this host's clock.
func (r *replayer) timestamp(eventTime int64) time.Time {
	ts, ok := mapping.Timestamp(eventTime, time.Now())
	if !ok && eventTime > 0 {
		r.future++
	}
	return ts
}

// linePos packs a line's file index and offset into a record's sequence
// number: 12 bits of file index, 52 of offset. unpackLinePos reverses it.
func linePos(file int, offset int64) uint64 {
	return uint64(min(file, 1<<12-1))<<52 | uint64(offset)&(1<<52-1)
}

func (r *replayer) unpackLinePos(seq uint64) (string, int64) {
	i := int(seq >> 52)
	name := "?"
	if i < len(r.files) && i < 1<<12-1 {
		name = r.files[i].name
	}
	return name, int64(seq & (1<<52 - 1))
}

// dryRun prints the records instead of producing them.
func (r *replayer) dryRun(ctx context.Context) int {
	t0 := time.Now()
	out := bufio.NewWriterSize(r.c.stdio.Out, 64<<10)
	err := r.read(ctx, func(rec sink.Record) error {
		out.WriteString(rec.Topic)
		out.WriteByte('\t')
		out.Write(rec.Key)
		out.WriteByte('\t')
		out.Write(rec.Value)
		return out.WriteByte('\n')
	})
	if ferr := out.Flush(); err == nil && ferr != nil {
		err = fmt.Errorf("write records: %w", ferr)
	}
	r.noteFuture()
	fmt.Fprintf(r.c.stdio.Err, "replay: %d events read, %d records printed (dry run), %d events skipped by filter, %d bad lines in %s\n",
		r.lines.Load(), r.records, r.skipped, r.bad, time.Since(t0).Round(time.Millisecond))
	if err != nil {
		return r.c.errorf("%v", err)
	}
	return ExitOK
}

// produce publishes the records and waits until Kafka has acknowledged
// every one or given up on it.
func (r *replayer) produce(ctx context.Context, scfg sink.Config, log zerolog.Logger) int {
	t0 := time.Now()
	p, err := sink.New(scfg, log)
	if err != nil {
		return r.c.errorf("%v", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var (
		delivered int64
		fatal     error
		wg        sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		reports := 0
		for d := range p.Deliveries() {
			switch {
			case d.Err == nil:
				delivered++
			case d.Producer:
				if fatal == nil {
					fatal = d.Err
					cancel()
				}
			default:
				switch reports++; {
				case reports <= maxReports:
					name, off := r.unpackLinePos(d.Seq)
					r.c.notef("record of %s offset %d to topic %s failed: %v", name, off, d.Topic, d.Err)
				case reports == maxReports+1:
					r.c.notef("more than %d records failed: further ones are only counted", maxReports)
				}
			}
		}
	}()

	var prog *progress
	if isTerminal(r.c.stdio.Err) {
		total, base := r.diskRange()
		prog = startProgress(r.c.stdio.Err, total, base, &r.disk, &r.lines)
	}
	readErr := r.read(ctx, func(rec sink.Record) error { return p.Produce(ctx, rec) })
	for ctx.Err() == nil && p.Len() > 0 {
		p.Flush(200 * time.Millisecond)
	}
	p.Close() // purges what is left: those records fail
	wg.Wait()
	if prog != nil {
		prog.stop()
	}
	r.noteFuture()

	fmt.Fprintf(r.c.stdio.Err, "replay: %d events read, %d records published, %d events skipped by filter, %d bad lines, %d records failed in %s\n",
		r.lines.Load(), delivered, r.skipped, r.bad, r.records-delivered, time.Since(t0).Round(time.Millisecond))
	switch {
	case fatal != nil:
		return r.c.errorf("kafka producer failed: %v", fatal)
	case readErr != nil && errors.Is(readErr, context.Canceled):
		return r.c.errorf("interrupted: records not acknowledged by then count as failed")
	case readErr != nil:
		return r.c.errorf("%v", readErr)
	case delivered != r.records:
		return r.c.errorf("%d of %d records were not published; see the errors above, then replay again", r.records-delivered, r.records)
	}
	return ExitOK
}

// diskRange returns how many bytes on disk the range spans at most, and
// how many of them are skipped at the start, for the progress line.
func (r *replayer) diskRange() (total, base int64) {
	last := len(r.files) - 1
	if r.hasEnd {
		last = r.end.file
	}
	for _, in := range r.files[r.start.file : last+1] {
		total += in.size
	}
	if !r.files[r.start.file].gz {
		base = r.start.offset
	}
	return total, base
}
