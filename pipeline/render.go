package pipeline

import (
	"errors"
	"os"
	"strconv"
	"time"

	"dovecot-kafka/follow"
	"dovecot-kafka/mapping"
	"dovecot-kafka/parser"
	"dovecot-kafka/sink"
)

// errTooLong marks a line longer than max_line_bytes.
var errTooLong = errors.New("pipeline: line longer than max_line_bytes")

// renderer turns one line of the events file into the records of every
// driver. It reuses its buffers: the records it returns are valid until
// the next call.
type renderer struct {
	p       parser.Parser
	lineErr func() error // why the source could not turn its input into a line, if it can say
	drivers []*mapping.Driver
	headers bool   // add provenance headers
	host    string // for the host header
	buf     []byte
	spans   []span
	recs    []sink.Record
	hdrBuf  []byte
}

type span struct {
	topic      string
	start, end int
}

// newRenderer returns a renderer for drivers. If src can say why a line it
// returned is not an event (the event exporter's source: a damaged or
// truncated message), that reason wins over the parser's.
func newRenderer(drivers []*mapping.Driver, headers bool, src Source) *renderer {
	rd := &renderer{drivers: drivers, headers: headers, buf: make([]byte, 0, 64<<10)}
	if le, ok := src.(interface{ LineErr() error }); ok {
		rd.lineErr = le.LineErr
	}
	if headers {
		rd.host, _ = os.Hostname()
	}
	return rd
}

// render parses line and renders it for every driver that publishes it.
// A line that cannot be published gives its BadKind and the error.
func (rd *renderer) render(line follow.Line) ([]sink.Record, BadKind, error) {
	if line.TooLong {
		return nil, BadTooLong, errTooLong
	}
	if rd.lineErr != nil {
		if err := rd.lineErr(); err != nil {
			return nil, badKind(err), err
		}
	}
	ev, err := rd.p.Parse(line.Data)
	if err != nil {
		return nil, badKind(err), err
	}

	rd.buf, rd.spans, rd.recs = rd.buf[:0], rd.spans[:0], rd.recs[:0]
	for _, d := range rd.drivers {
		start := len(rd.buf)
		var ok bool
		if rd.buf, ok = d.AppendValue(rd.buf, ev); ok {
			rd.spans = append(rd.spans, span{topic: d.Topic, start: start, end: len(rd.buf)})
		}
	}
	if len(rd.spans) == 0 {
		return nil, 0, nil
	}

	ts, _ := mapping.Timestamp(ev.Time, time.Now())
	var headers []sink.Header
	if rd.headers {
		headers = rd.provenance(line, ev)
	}
	// Only now is buf final: take the values out of it.
	for _, s := range rd.spans {
		rd.recs = append(rd.recs, sink.Record{
			Topic:   s.topic,
			Key:     ev.User,
			Value:   rd.buf[s.start:s.end],
			Time:    ts,
			Headers: headers,
		})
	}
	return rd.recs, 0, nil
}

// provenance returns the optional headers that let consumers deduplicate:
// the host, the events file's identity, the line's byte offset and the
// event time.
func (rd *renderer) provenance(line follow.Line, ev *parser.Event) []sink.Header {
	b := rd.hdrBuf[:0]
	b = strconv.AppendUint(b, line.Pos.File.Dev, 10)
	b = append(b, ':')
	b = strconv.AppendUint(b, line.Pos.File.Inode, 10)
	file := len(b)
	b = strconv.AppendInt(b, line.Pos.Offset, 10)
	off := len(b)
	if ev.Time > 0 {
		b = time.Unix(ev.Time, 0).UTC().AppendFormat(b, time.RFC3339)
	}
	rd.hdrBuf = b
	return []sink.Header{
		{Key: "host", Value: []byte(rd.host)},
		{Key: "file", Value: b[:file]},
		{Key: "offset", Value: b[file:off]},
		{Key: "event_time", Value: b[off:]},
	}
}
