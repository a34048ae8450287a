package exporter

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"dovecot-kafka/parser"
)

// FuzzSource feeds any file content through a Source in every format. It
// must not panic, a refused line must never parse as an events-file line,
// and the End of the lines yielded must never go backwards.
func FuzzSource(f *testing.F) {
	for _, name := range []string{"dovecot-2.3-json.log", "dovecot-2.3-tabtext.log"} {
		data := readTestdata(f, name)
		lines := bytes.SplitAfter(data, []byte("\n"))
		for i := 0; i+8 <= len(lines); i += 40 {
			f.Add(bytes.Join(lines[i:i+8], nil))
		}
		// The long messages at the end: split, cut, reassembled.
		f.Add(bytes.Join(lines[len(lines)-30:], nil))
	}
	for _, enc := range []Encoding{JSON, TabText} {
		big := exporterMessage(enc, EventName, bigEvent(7))
		pieces := statsLines(big, pidChunk)
		f.Add([]byte(strings.Join(pieces, "\n") + "\n"))
		f.Add([]byte(strings.Join(concat(pieces[:1], pieces[2:]), "\n") + "\n"))
		f.Add([]byte(exporterMessage(enc, EventName, smallEvent(1)) + "\n"))
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		raw := splitLines(data, testFile)
		for _, format := range []Format{
			{TransportLog, JSON}, {TransportLog, TabText},
			{TransportFile, JSON}, {TransportFile, TabText},
		} {
			src := NewSource(&fakeLines{lines: raw}, format, zerolog.Nop())
			var p parser.Parser
			lastEnd := int64(0)
			for {
				l, err := src.Next(context.Background())
				if err != nil {
					break
				}
				if l.End < lastEnd || l.End > int64(len(data)) || l.Pos.Offset < 0 {
					t.Fatalf("%v: line [%d,%d) after one ending at %d, file of %d bytes", format, l.Pos.Offset, l.End, lastEnd, len(data))
				}
				lastEnd = l.End
				if src.LineErr() != nil {
					if _, err := p.Parse(l.Data); err == nil {
						t.Fatalf("%v: refused line parses: %q", format, l.Data)
					}
				}
			}
			st := src.Stats()
			if st.Lines != uint64(len(raw)) {
				t.Fatalf("%v: read %d lines of %d", format, st.Lines, len(raw))
			}
		}
	})
}

// FuzzTranslate feeds any message to the translator: it must not panic,
// and a line it returns must be valid JSON that the parser reads or
// rejects with a reason.
func FuzzTranslate(f *testing.F) {
	for _, enc := range []Encoding{JSON, TabText} {
		f.Add(exporterMessage(enc, EventName, smallEvent(1)), enc == TabText, true)
		f.Add(exporterMessage(enc, EventName, bigEvent(2)), enc == TabText, false)
	}
	f.Add(exporterJSON(EventName, smallEvent(1), true), false, false)
	f.Add(`{"event":"dovecot_kafka_event","fields":{"push_user":"\ud800","push_bytes":3}}`, false, true)

	f.Fuzz(func(t *testing.T, msg string, tab, cut bool) {
		tr := translator{enc: JSON, cutCheck: cut}
		if tab {
			tr.enc = TabText
		}
		line, ours, err := tr.translate([]byte(msg))
		if err != nil || !ours {
			return
		}
		var p parser.Parser
		if _, err := p.Parse(line); err != nil && !bytes.HasPrefix(line, []byte("{")) {
			t.Fatalf("not an object: %q", line)
		}
	})
}

// TestQueuedLinesDoNotShareData: one read may queue two lines (a refused
// message and the next one); their Data must not share memory.
func TestQueuedLinesDoNotShareData(t *testing.T) {
	pieces := statsLines(exporterMessage(JSON, EventName, bigEvent(7)), pidChunk)
	next := statsLines(exporterMessage(JSON, EventName, smallEvent(2)), pidChunk)
	src := NewSource(&fakeLines{lines: logOf(concat(pieces[:1], next)...)}, Format{TransportLog, JSON}, zerolog.Nop())
	a, err := src.Next(context.Background())
	if err != nil || src.LineErr() == nil {
		t.Fatalf("first line: %v, %v", err, src.LineErr())
	}
	for i := range a.Data {
		a.Data[i] = 'X' // the caller may do anything with it until Next
	}
	b, err := src.Next(context.Background())
	if err != nil || src.LineErr() != nil {
		t.Fatalf("second line: %v, %v", err, src.LineErr())
	}
	var p parser.Parser
	if ev, err := p.Parse(b.Data); err != nil || ev.UID != 2 {
		t.Errorf("second line damaged by writing to the first: %q", b.Data)
	}
}
