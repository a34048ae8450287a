package exporter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"dovecot-kafka/follow"
	"dovecot-kafka/parser"
)

// Errors a line's [Source.LineErr] wraps. Each names one reason why an
// event of ours cannot be published.
var (
	// ErrTruncated: Dovecot's log transport cut a string value at 1000
	// bytes and appended "...". The event is not published as if whole.
	ErrTruncated = errors.New("exporter: value truncated by Dovecot's log transport")

	// ErrDamaged: the message cannot be read whole. A split message lost a
	// piece or was broken by another line, reading started in the middle
	// of one, or the message fails its push_bytes check or does not parse.
	ErrDamaged = errors.New("exporter: damaged exporter message")
)

// LineSource yields the lines of a file; *follow.Reader is one.
type LineSource interface {
	Next(ctx context.Context) (follow.Line, error)
}

// Transport is how the exporter's messages reach the file the daemon reads.
type Transport uint8

// The transports.
const (
	// TransportLog is Dovecot 2.3's "log" transport (2.4: driver = log):
	// each message is an Info line of the stats process in Dovecot's log,
	// among the lines of every other process, split into pieces when long,
	// with string values cut at 1000 bytes.
	TransportLog Transport = iota + 1
	// TransportFile is Dovecot 2.4's "file" driver: one message and '\n'
	// per event, nothing else, nothing cut.
	TransportFile
)

// Encoding is the exporter's format setting.
type Encoding uint8

// The encodings.
const (
	JSON    Encoding = iota + 1 // format = json
	TabText                     // format = tab-text
)

// Format is a transport and an encoding.
type Format struct {
	Transport Transport
	Encoding  Encoding
}

// ParseFormat returns the Format for the configuration's input
// ("exporter-log" or "exporter-file") and exporter_format ("json" or
// "tab-text").
func ParseFormat(input, exporterFormat string) (Format, error) {
	var f Format
	switch input {
	case "exporter-log":
		f.Transport = TransportLog
	case "exporter-file":
		f.Transport = TransportFile
	default:
		return f, fmt.Errorf("exporter: input %q is not an event exporter input", input)
	}
	switch exporterFormat {
	case "json", "":
		f.Encoding = JSON
	case "tab-text":
		f.Encoding = TabText
	default:
		return f, fmt.Errorf("exporter: exporter_format %q: use json or tab-text", exporterFormat)
	}
	return f, nil
}

// DefaultPieceWait is how long a split message waits for its next piece
// while nothing at all is added to the log (see the package doc).
const DefaultPieceWait = 2 * time.Second

// Stats counts what a [Source] has seen since [NewSource].
type Stats struct {
	Lines     uint64 // lines read from the file
	Skipped   uint64 // lines that are not events of ours: other processes, other events
	Events    uint64 // events translated into events-file lines
	Split     uint64 // events among them that were reassembled from pieces
	Truncated uint64 // events refused because the log transport cut a value (ErrTruncated)
	Damaged   uint64 // events or pieces refused as damaged (ErrDamaged)
	TooLong   uint64 // lines of ours longer than max_line_bytes, passed on as TooLong
}

type counters struct {
	lines, skipped, events, split, truncated, damaged, tooLong atomic.Uint64
}

// Source reads the event exporter's output and yields the events of
// push-events.lua's exporter output as events-file lines (format v1), so that the
// parser and the mapping treat them as lines of push-events.lua. Its
// methods must be called from one goroutine, except Stats.
type Source struct {
	raw    LineSource
	format Format
	log    zerolog.Logger
	wait   time.Duration

	tr  translator
	p   parser.Parser // only to make sure a refused message cannot parse
	pen pending

	queue   []outLine
	free    [][]byte // buffers for yielded Data
	inUse   []byte   // the Data of the line returned last
	lineErr error

	c counters
}

// outLine is a line ready to be returned.
type outLine struct {
	line follow.Line
	err  error
}

// pending is a message of the log transport whose pieces are not all read.
type pending struct {
	active bool
	ours   bool // it names our event
	start  follow.Position
	end    int64         // where its last piece read ends
	file   follow.FileID // the file of its last piece, fingerprint as known then
	chunk  int           // the length of its first piece's text
	pieces int
	buf    []byte
	scan   jsonScan
}

// NewSource returns a Source that reads raw, the file the exporter writes
// in format f. Lines the Source yields are valid until its next Next call,
// like the lines of raw.
func NewSource(raw LineSource, f Format, log zerolog.Logger) *Source {
	s := &Source{raw: raw, format: f, log: log, wait: DefaultPieceWait}
	s.tr.enc = f.Encoding
	s.tr.cutCheck = f.Transport == TransportLog
	return s
}

// Stats returns the counters. It may be called at any time.
func (s *Source) Stats() Stats {
	return Stats{
		Lines:     s.c.lines.Load(),
		Skipped:   s.c.skipped.Load(),
		Events:    s.c.events.Load(),
		Split:     s.c.split.Load(),
		Truncated: s.c.truncated.Load(),
		Damaged:   s.c.damaged.Load(),
		TooLong:   s.c.tooLong.Load(),
	}
}

// LineErr returns why the line that Next returned last must not be
// published, or nil. A non-nil error wraps ErrTruncated or ErrDamaged; the
// line's Data then holds the message as Dovecot wrote it (pieces joined,
// log prefixes removed), which the parser refuses.
func (s *Source) LineErr() error { return s.lineErr }

// Next returns the next event as a line of the events file: Data is a
// line in format v1, Pos is where the event's message starts in the file
// and End where it ends, except that End is never later than the start of
// a split message still incomplete (see the package doc). It returns the
// error of the underlying LineSource, such as ctx.Err().
func (s *Source) Next(ctx context.Context) (follow.Line, error) {
	if s.inUse != nil {
		s.free = append(s.free, s.inUse[:0])
		s.inUse = nil
	}
	for len(s.queue) == 0 {
		if err := s.read(ctx); err != nil {
			return follow.Line{}, err
		}
	}

	o := s.queue[0]
	copy(s.queue, s.queue[1:])
	s.queue = s.queue[:len(s.queue)-1]
	s.inUse = o.line.Data
	s.lineErr = o.err
	return o.line, nil
}

// read reads one line and feeds it. While a split message waits for its
// next piece, a read that finds nothing new for s.wait gives up on it.
func (s *Source) read(ctx context.Context) error {
	rctx := ctx
	if s.pen.active {
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeout(ctx, s.wait)
		defer cancel()
	}
	line, err := s.raw.Next(rctx)
	if err != nil {
		if ctx.Err() == nil && s.pen.active && errors.Is(err, context.DeadlineExceeded) {
			s.expire()
			return nil
		}
		return err
	}

	s.c.lines.Add(1)
	if s.format.Transport == TransportFile {
		s.feedFile(line)
	} else {
		s.feedLog(line)
	}
	return nil
}

// feedFile handles a line of the file transport: one message per line.
func (s *Source) feedFile(line follow.Line) {
	if line.TooLong {
		if hasOurName(line.Data, s.format.Encoding) {
			s.passTooLong(line)
			return
		}
		s.c.skipped.Add(1)
		return
	}
	s.message(line.Data, line.Pos, line.End, 1)
}

// feedLog handles a line of Dovecot's log.
func (s *Source) feedLog(line follow.Line) {
	text, ok := statsInfoText(line.Data)
	if !ok {
		s.c.skipped.Add(1)
		return
	}
	if line.TooLong {
		s.breakPending("a line of the stats process longer than max_line_bytes came before its next piece")
		if hasOurName(text, s.format.Encoding) || s.mentionsOurs(text) {
			s.passTooLong(line)
			return
		}
		s.c.skipped.Add(1)
		return
	}

	if s.pen.active {
		if !sameFile(s.pen.file, line.Pos.File) {
			s.breakPending("the log was rotated between its pieces")
		} else if s.continuePending(text, line) {
			return
		}
	}
	s.startMessage(text, line)
}

// startMessage handles a stats Info line that no pending message takes.
func (s *Source) startMessage(text []byte, line follow.Line) {
	if !s.isMessageStart(text) {
		s.orphan(text, line)
		return
	}

	if s.format.Encoding == TabText {
		if isChunkLen(len(text)) {
			s.startPending(text, line, jsonScan{})
			return
		}
		s.message(text, line.Pos, line.End, 1)
		return
	}

	var sc jsonScan
	switch sc.feed(text) {
	case scanEnd:
		s.message(text, line.Pos, line.End, 1)
	case scanMore:
		if isChunkLen(len(text)) {
			s.startPending(text, line, sc)
			return
		}
		s.refuse(text, line.Pos, line.End, hasOurName(text, JSON), 1,
			fmt.Errorf("%w: the message ends early and is no piece of a split one (%d bytes)", ErrDamaged, len(text)))
	default:
		s.refuse(text, line.Pos, line.End, hasOurName(text, JSON), 1,
			fmt.Errorf("%w: not a JSON object", ErrDamaged))
	}
}

// isMessageStart reports whether text begins an exporter message: its
// first piece, or the whole of it.
func (s *Source) isMessageStart(text []byte) bool {
	if s.format.Encoding == TabText {
		return bytes.HasPrefix(text, []byte("event:"))
	}
	return len(text) > 0 && text[0] == '{'
}

// mentionsOurs reports whether a piece of some message holds a field name
// of ours; a piece of the middle or end of one of our messages does, unless
// it falls within one long value.
func (s *Source) mentionsOurs(text []byte) bool {
	if s.format.Encoding == TabText {
		return bytes.Contains(text, []byte("\tfield:push_")) ||
			bytes.HasPrefix(text, []byte("field:push_"))
	}
	return bytes.Contains(text, []byte(`"push_`))
}

// orphan handles a piece that continues a message whose beginning was not
// read (reading started in the middle of it, or its first piece was lost).
func (s *Source) orphan(text []byte, line follow.Line) {
	if !s.mentionsOurs(text) {
		s.c.skipped.Add(1) // another message, or another Info line
		return
	}
	s.refuse(text, line.Pos, line.End, true, 1,
		fmt.Errorf("%w: a piece of a split message whose beginning was not read", ErrDamaged))
}

func (s *Source) startPending(text []byte, line follow.Line, sc jsonScan) {
	p := &s.pen
	p.active = true
	p.ours = hasOurName(text, s.format.Encoding)
	p.start = line.Pos
	p.end = line.End
	p.file = line.Pos.File
	p.chunk = len(text)
	p.pieces = 1
	p.buf = append(p.buf[:0], text...)
	p.scan = sc
}

// continuePending offers text to the pending message. It reports whether
// the text was taken (as a piece, or to report the message damaged);
// otherwise the pending message is done with and text starts anew.
func (s *Source) continuePending(text []byte, line follow.Line) bool {
	p := &s.pen
	if s.format.Encoding == TabText {
		// Tab-text has no end marker: a piece of exactly the first piece's
		// length may or may not be followed by more. A line that starts a
		// message says it was not.
		if bytes.HasPrefix(text, []byte("event:")) {
			s.finishPending()
			return false
		}
		s.appendPiece(text, line)
		switch {
		case len(text) == p.chunk:
		case len(text) < p.chunk:
			s.finishPending()
		default:
			s.breakPending("a piece is longer than the first")
		}
		return true
	}

	sc := p.scan
	switch sc.feed(text) {
	case scanEnd:
		s.appendPiece(text, line)
		s.finishPending()
		return true
	case scanMore:
		if len(text) == p.chunk {
			s.appendPiece(text, line)
			p.scan = sc
			return true
		}
	}
	if s.isMessageStart(text) {
		s.breakPending("the next line of the stats process starts another message")
		return false
	}
	s.appendPiece(text, line)
	s.breakPending("the next line of the stats process does not continue it")
	return true
}

func (s *Source) appendPiece(text []byte, line follow.Line) {
	p := &s.pen
	p.buf = append(p.buf, text...)
	p.end = line.End
	p.file = line.Pos.File
	p.pieces++
}

// finishPending treats the pending message as complete.
func (s *Source) finishPending() {
	p := &s.pen
	p.active = false
	s.message(p.buf, s.pendingPos(), p.end, p.pieces)
}

// breakPending gives up on the pending message, refusing it if it is ours.
func (s *Source) breakPending(why string) {
	p := &s.pen
	if !p.active {
		return
	}
	p.active = false
	s.refuse(p.buf, s.pendingPos(), p.end, p.ours, p.pieces,
		fmt.Errorf("%w: split message incomplete (%d pieces read): %s", ErrDamaged, p.pieces, why))
}

// expire is called when a split message's next piece did not come while
// the file stayed idle for s.wait. A tab-text message of exactly a piece's
// length was whole after all; a JSON message lacks its end.
func (s *Source) expire() {
	if s.format.Encoding == TabText {
		s.finishPending()
		return
	}
	s.breakPending(fmt.Sprintf("no further piece within %v", s.wait))
}

// pendingPos is where the pending message starts, with the identity of the
// file as known at its last piece.
func (s *Source) pendingPos() follow.Position {
	pos := s.pen.start
	pos.File = s.pen.file
	return pos
}

// message translates a complete message and queues the result.
func (s *Source) message(msg []byte, pos follow.Position, end int64, pieces int) {
	line, ours, err := s.tr.translate(msg)
	if !ours {
		s.c.skipped.Add(uint64(pieces))
		return
	}
	if err != nil {
		s.refuse(msg, pos, end, true, pieces, err)
		return
	}
	s.c.events.Add(1)
	if pieces > 1 {
		s.c.split.Add(1)
	}
	s.emit(follow.Line{Pos: pos, End: end, Data: append(s.buffer(), line...)}, nil)
}

// refuse queues a message of ours that must not be published, with the
// reason; one that is not ours is skipped. lines is how many lines of the
// file it took.
func (s *Source) refuse(
	msg []byte,
	pos follow.Position,
	end int64,
	ours bool,
	lines int,
	err error,
) {
	if !ours {
		s.c.skipped.Add(uint64(lines))
		return
	}
	if errors.Is(err, ErrTruncated) {
		s.c.truncated.Add(1)
	} else {
		s.c.damaged.Add(1)
	}
	data := append(s.buffer(), msg...)
	// Exporter messages never parse as events-file lines (those have
	// "user" at the top level); make sure of it for damaged ones too.
	if _, perr := s.p.Parse(data); perr == nil {
		data = append(append(s.buffer(), "exporter: "...), msg...)
	}
	s.log.Debug().Err(err).Int64("offset", pos.Offset).Msg("exporter message refused")
	s.emit(follow.Line{Pos: pos, End: end, Data: data}, err)
}

// passTooLong queues a line of ours longer than max_line_bytes as it came,
// TooLong set, for the caller to count and dead-letter.
func (s *Source) passTooLong(line follow.Line) {
	s.c.tooLong.Add(1)
	line.Data = append(s.buffer(), line.Data...)
	s.emit(line, nil)
}

// emit queues a line. Its End is moved back to the start of a pending
// split message, if one began before it ended: a checkpoint saved at that
// End then never lies past the beginning of a message not yet read whole.
func (s *Source) emit(line follow.Line, err error) {
	if s.pen.active && sameFile(s.pen.start.File, line.Pos.File) && line.End > s.pen.start.Offset {
		line.End = s.pen.start.Offset
	}
	s.queue = append(s.queue, outLine{line: line, err: err})
}

func (s *Source) buffer() []byte {
	if n := len(s.free); n > 0 {
		b := s.free[n-1]
		s.free = s.free[:n-1]
		return b
	}
	return make([]byte, 0, 1024)
}

func sameFile(a, b follow.FileID) bool {
	return a.Dev == b.Dev && a.Inode == b.Inode
}
