package pipeline

import (
	"errors"

	"dovecot-kafka/exporter"
	"dovecot-kafka/parser"
)

// BadKind classifies a line that cannot be published. The kinds are
// counted separately and name the reason in the dead-letter file.
type BadKind int

// The kinds of bad lines.
const (
	BadJSON         BadKind = iota // not a JSON object
	BadUTF8                        // invalid UTF-8
	BadUnknownEvent                // an event name the daemon does not know
	BadMissingField                // a required field is missing
	BadFieldType                   // a field has the wrong type
	BadTooLong                     // longer than max_line_bytes
	BadTruncated                   // a value cut by Dovecot's 2.3 log transport
	BadDamaged                     // an event exporter message that cannot be reassembled
	badKinds
)

var badKindNames = [badKinds]string{
	"invalid JSON", "invalid UTF-8", "unknown event", "missing field",
	"wrong field type", "line longer than max_line_bytes",
	"truncated by Dovecot's log transport", "damaged exporter message",
}

func (k BadKind) String() string { return badKindNames[k] }

// BadKinds lists the kinds in order, for reports.
func BadKinds() []BadKind {
	out := make([]BadKind, badKinds)
	for i := range out {
		out[i] = BadKind(i)
	}
	return out
}

// badKind classifies a parse error.
func badKind(err error) BadKind {
	switch {
	case errors.Is(err, exporter.ErrTruncated):
		return BadTruncated
	case errors.Is(err, exporter.ErrDamaged):
		return BadDamaged
	case errors.Is(err, parser.ErrBadUTF8):
		return BadUTF8
	case errors.Is(err, parser.ErrUnknownEvent):
		return BadUnknownEvent
	case errors.Is(err, parser.ErrMissingField):
		return BadMissingField
	case errors.Is(err, parser.ErrFieldType):
		return BadFieldType
	}
	return BadJSON
}
