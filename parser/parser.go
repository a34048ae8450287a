// Package parser decodes one line of the events file into an Event.
//
// A line is one JSON object written by dovecot-conf/push-events.lua; its
// fields are described in dovecot-conf/events-format.md. The decoder is
// written by hand for the hot path: it reads the handful of field types the
// format uses (strings, integers, arrays of strings, one object of strings),
// allocates nothing once a Parser has warmed up, and ignores fields it does
// not know so that newer scripts can add fields.
//
// The byte slices of an Event point into the Parser's scratch buffer and
// stay valid only until the next call to Parse.
package parser

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// Kind is one of the twelve push-notification events.
type Kind uint8

// The twelve events, in the contract's alphabetical order. KindUnknown is
// the zero value and never appears in a parsed Event.
const (
	KindUnknown Kind = iota
	FlagsClear
	FlagsSet
	MailboxCreate
	MailboxDelete
	MailboxRename
	MailboxSubscribe
	MailboxUnsubscribe
	MessageAppend
	MessageExpunge
	MessageNew
	MessageRead
	MessageTrash
	kindCount
)

var kindNames = [kindCount]string{
	"", "FlagsClear", "FlagsSet", "MailboxCreate", "MailboxDelete",
	"MailboxRename", "MailboxSubscribe", "MailboxUnsubscribe",
	"MessageAppend", "MessageExpunge", "MessageNew", "MessageRead",
	"MessageTrash",
}

// String returns the event name as Dovecot spells it, e.g. "MessageNew".
func (k Kind) String() string {
	if k < kindCount {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// IsMailboxEvent reports whether k is one of the five Mailbox events, which
// carry no uid.
func (k Kind) IsMailboxEvent() bool {
	return k >= MailboxCreate && k <= MailboxUnsubscribe
}

// AllKinds lists the twelve events in order.
func AllKinds() []Kind {
	out := make([]Kind, 0, kindCount-1)
	for k := FlagsClear; k < kindCount; k++ {
		out = append(out, k)
	}
	return out
}

// KindByName returns the Kind named name, or KindUnknown.
func KindByName(name string) Kind {
	for k := FlagsClear; k < kindCount; k++ {
		if kindNames[k] == name {
			return k
		}
	}
	return KindUnknown
}

// Field is one userdb field of the user, as the Lua script found it.
type Field struct {
	Name, Value []byte
}

// Event is one decoded line. A Has* flag tells whether the optional field
// was present in the line; Dovecot's own "empty" values (such as "" for a
// missing From header) are kept as they are, the mapping decides what they
// mean.
type Event struct {
	Version int64 // the line's "v"; informational: newer lines only add fields
	Time    int64 // Unix seconds when the event happened; 0 if absent
	User    []byte
	Kind    Kind
	Mailbox []byte

	MailboxOld    []byte
	HasMailboxOld bool

	UIDValidity    int64
	HasUIDValidity bool
	UID            int64
	HasUID         bool

	Flags    [][]byte
	Keywords [][]byte

	Date, TZ int64 // Date header: UTC seconds and offset in minutes
	HasDate  bool

	From, To, Subject, Snippet, MessageID            []byte
	HasFrom, HasTo, HasSubject, HasSnippet, HasMsgID bool

	Userdb []Field
}

// UserdbField returns the value of the userdb field name and whether the user
// has it.
func (ev *Event) UserdbField(name string) ([]byte, bool) {
	for _, f := range ev.Userdb {
		if string(f.Name) == name {
			return f.Value, true
		}
	}
	return nil, false
}

// ErrSyntax is wrapped by every SyntaxError whose cause is malformed JSON.
var ErrSyntax = errors.New("parser: invalid JSON")

// SyntaxError describes why a line was rejected. Offset is the byte within
// the line where the problem was found, or -1 when the problem is not at
// one place (a missing field, an unknown event name).
type SyntaxError struct {
	Offset int
	Err    error
}

func (e *SyntaxError) Error() string {
	if e.Offset < 0 {
		return e.Err.Error()
	}
	return fmt.Sprintf("%v (at byte %d of the line)", e.Err, e.Offset)
}

func (e *SyntaxError) Unwrap() error { return e.Err }

// Errors a SyntaxError may wrap besides ErrSyntax. Each names one kind of
// bad line, so that counters and logs can be kept per kind.
var (
	ErrMissingField = errors.New("parser: required field missing")
	ErrFieldType    = errors.New("parser: field has the wrong type")
	ErrUnknownEvent = errors.New("parser: unknown event name")
	ErrBadUTF8      = errors.New("parser: invalid UTF-8")
)

// Parser decodes lines. Its zero value is ready to use; reuse one Parser
// for many lines so that its buffers are reused. A Parser is not safe for
// concurrent use.
type Parser struct {
	// buf holds the unescaped strings of the current line. Unescaping
	// never makes a string longer, so with a capacity of at least the
	// line's length buf never moves while a line is decoded, and the
	// Event's slices can point into it directly.
	buf  []byte
	ev   Event
	data []byte
	pos  int
}

// Parse decodes line (without its trailing newline). On error the returned
// error is a *SyntaxError and the Event must not be used.
func (p *Parser) Parse(line []byte) (*Event, error) {
	if cap(p.buf) < len(line) {
		p.buf = make([]byte, 0, max(len(line), 4096))
	}
	p.buf = p.buf[:0]
	p.data = line
	p.pos = 0
	ev := &p.ev
	flags, keywords, userdb := ev.Flags[:0], ev.Keywords[:0], ev.Userdb[:0]
	*ev = Event{}

	if !utf8.Valid(line) {
		return nil, &SyntaxError{Offset: firstInvalidUTF8(line), Err: ErrBadUTF8}
	}

	var kindName []byte
	seen := 0 // bit set of required fields: 1 user, 2 event, 4 mailbox
	p.skipSpace()
	if !p.consume('{') {
		return nil, p.errorf("expected '{' at the start of the line")
	}
	p.skipSpace()
	if p.consume('}') {
		return nil, p.missing("user")
	}
	for {
		p.skipSpace()
		keyStart := p.pos
		key, ok := p.rawKey()
		if !ok {
			return nil, p.errorf("expected a field name")
		}
		p.skipSpace()
		if !p.consume(':') {
			return nil, p.errorf("expected ':' after a field name")
		}
		p.skipSpace()

		var err error
		switch key {
		case "v":
			ev.Version, err = p.integer(keyStart, key)
		case "time":
			ev.Time, err = p.integer(keyStart, key)
		case "user":
			err = p.str(keyStart, key, &ev.User)
			seen |= 1
		case "event":
			err = p.str(keyStart, key, &kindName)
			seen |= 2
		case "mailbox":
			err = p.str(keyStart, key, &ev.Mailbox)
			seen |= 4
		case "mailbox_old":
			err = p.str(keyStart, key, &ev.MailboxOld)
			ev.HasMailboxOld = true
		case "uidvalidity":
			ev.UIDValidity, err = p.integer(keyStart, key)
			ev.HasUIDValidity = true
		case "uid":
			ev.UID, err = p.integer(keyStart, key)
			ev.HasUID = true
		case "date":
			ev.Date, err = p.integer(keyStart, key)
			ev.HasDate = true
		case "tz":
			ev.TZ, err = p.integer(keyStart, key)
		case "from":
			err = p.str(keyStart, key, &ev.From)
			ev.HasFrom = true
		case "to":
			err = p.str(keyStart, key, &ev.To)
			ev.HasTo = true
		case "subject":
			err = p.str(keyStart, key, &ev.Subject)
			ev.HasSubject = true
		case "snippet":
			err = p.str(keyStart, key, &ev.Snippet)
			ev.HasSnippet = true
		case "message_id":
			err = p.str(keyStart, key, &ev.MessageID)
			ev.HasMsgID = true
		case "flags":
			flags, err = p.strArray(keyStart, key, flags)
		case "keywords":
			keywords, err = p.strArray(keyStart, key, keywords)
		case "userdb":
			userdb, err = p.strObject(keyStart, key, userdb)
		default:
			err = p.skipValue(0)
		}
		if err != nil {
			return nil, err
		}

		p.skipSpace()
		if p.consume(',') {
			continue
		}
		if p.consume('}') {
			break
		}
		return nil, p.errorf("expected ',' or '}' after a value")
	}
	p.skipSpace()
	if p.pos != len(p.data) {
		return nil, p.errorf("unexpected data after the object")
	}

	ev.Flags, ev.Keywords, ev.Userdb = flags, keywords, userdb

	switch {
	case seen&1 == 0:
		return nil, p.missing("user")
	case seen&2 == 0:
		return nil, p.missing("event")
	case seen&4 == 0:
		return nil, p.missing("mailbox")
	}
	ev.Kind = KindByName(string(kindName))
	if ev.Kind == KindUnknown {
		return nil, &SyntaxError{Offset: -1, Err: fmt.Errorf("%w %q", ErrUnknownEvent, kindName)}
	}
	if !ev.Kind.IsMailboxEvent() {
		if !ev.HasUID {
			return nil, p.missing("uid")
		}
		if !ev.HasUIDValidity {
			return nil, p.missing("uidvalidity")
		}
	}
	if ev.Kind == MailboxRename && !ev.HasMailboxOld {
		return nil, p.missing("mailbox_old")
	}
	return ev, nil
}

func (p *Parser) missing(name string) error {
	return &SyntaxError{Offset: -1, Err: fmt.Errorf("%w: %q", ErrMissingField, name)}
}

func (p *Parser) errorf(format string, args ...any) error {
	return &SyntaxError{Offset: p.pos, Err: fmt.Errorf("%w: "+format, append([]any{ErrSyntax}, args...)...)}
}

func (p *Parser) typeError(at int, key, want string) error {
	return &SyntaxError{Offset: at, Err: fmt.Errorf("%w: %q must be %s", ErrFieldType, key, want)}
}

func (p *Parser) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\r', '\n':
			p.pos++
		default:
			return
		}
	}
}

func (p *Parser) consume(c byte) bool {
	if p.pos < len(p.data) && p.data[p.pos] == c {
		p.pos++
		return true
	}
	return false
}

func (p *Parser) peek() byte {
	if p.pos < len(p.data) {
		return p.data[p.pos]
	}
	return 0
}

// rawKey reads a field name. Names in the format are plain ASCII, so a name
// with escapes is returned as something no case matches, after checking it
// is a well-formed string.
func (p *Parser) rawKey() (string, bool) {
	if !p.consume('"') {
		return "", false
	}
	start := p.pos
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		if c == '"' {
			key := p.data[start:p.pos]
			p.pos++
			return keyString(key), true
		}
		if c == '\\' {
			p.pos = start - 1
			mark := len(p.buf)
			if err := p.decodeString(); err != nil {
				return "", false
			}
			p.buf = p.buf[:mark]
			return "\x00escaped", true
		}
		if c < 0x20 {
			return "", false
		}
		p.pos++
	}
	return "", false
}

// keyString maps a field name to a constant string without allocating for
// the names the format defines.
func keyString(b []byte) string {
	switch string(b) {
	case "v":
		return "v"
	case "time":
		return "time"
	case "user":
		return "user"
	case "event":
		return "event"
	case "mailbox":
		return "mailbox"
	case "mailbox_old":
		return "mailbox_old"
	case "uidvalidity":
		return "uidvalidity"
	case "uid":
		return "uid"
	case "date":
		return "date"
	case "tz":
		return "tz"
	case "from":
		return "from"
	case "to":
		return "to"
	case "subject":
		return "subject"
	case "snippet":
		return "snippet"
	case "message_id":
		return "message_id"
	case "flags":
		return "flags"
	case "keywords":
		return "keywords"
	case "userdb":
		return "userdb"
	}
	return "\x00other"
}

// integer reads a JSON number that must be a whole number. Lua writes
// integers, but a float with a zero fraction ("1.0") is accepted too.
func (p *Parser) integer(at int, key string) (int64, error) {
	start := p.pos
	if p.peek() == '-' {
		p.pos++
	}
	digits := p.pos
	for p.pos < len(p.data) && p.data[p.pos] >= '0' && p.data[p.pos] <= '9' {
		p.pos++
	}
	if p.pos == digits {
		return 0, p.typeError(at, key, "an integer")
	}
	end := p.pos
	if p.peek() == '.' {
		p.pos++
		fracStart := p.pos
		for p.pos < len(p.data) && p.data[p.pos] == '0' {
			p.pos++
		}
		if p.pos == fracStart || (p.pos < len(p.data) && p.data[p.pos] >= '1' && p.data[p.pos] <= '9') {
			return 0, p.typeError(at, key, "an integer")
		}
	}
	if c := p.peek(); c == 'e' || c == 'E' {
		return 0, p.typeError(at, key, "an integer")
	}
	n, err := strconv.ParseInt(string(p.data[start:end]), 10, 64)
	if err != nil {
		return 0, p.typeError(at, key, "an integer that fits in 64 bits")
	}
	return n, nil
}

// str reads a JSON string into buf and points dst at it.
func (p *Parser) str(at int, key string, dst *[]byte) error {
	if p.peek() != '"' {
		return p.typeError(at, key, "a string")
	}
	start := len(p.buf)
	if err := p.decodeString(); err != nil {
		return err
	}
	*dst = p.buf[start:len(p.buf):len(p.buf)]
	return nil
}

func (p *Parser) strArray(at int, key string, out [][]byte) ([][]byte, error) {
	if !p.consume('[') {
		// An empty Lua table encoded by a generic encoder is "{}".
		if p.peek() == '{' {
			save := p.pos
			p.pos++
			p.skipSpace()
			if p.consume('}') {
				return out, nil
			}
			p.pos = save
		}
		return out, p.typeError(at, key, "an array of strings")
	}
	p.skipSpace()
	if p.consume(']') {
		return out, nil
	}
	for {
		p.skipSpace()
		if p.peek() != '"' {
			return out, p.typeError(at, key, "an array of strings")
		}
		start := len(p.buf)
		if err := p.decodeString(); err != nil {
			return out, err
		}
		out = append(out, p.buf[start:len(p.buf):len(p.buf)])
		p.skipSpace()
		if p.consume(',') {
			continue
		}
		if p.consume(']') {
			return out, nil
		}
		return out, p.errorf("expected ',' or ']' in %q", key)
	}
}

func (p *Parser) strObject(at int, key string, out []Field) ([]Field, error) {
	if !p.consume('{') {
		if p.peek() == '[' { // empty table from a generic encoder
			save := p.pos
			p.pos++
			p.skipSpace()
			if p.consume(']') {
				return out, nil
			}
			p.pos = save
		}
		return out, p.typeError(at, key, "an object of strings")
	}
	p.skipSpace()
	if p.consume('}') {
		return out, nil
	}
	for {
		p.skipSpace()
		if p.peek() != '"' {
			return out, p.errorf("expected a field name in %q", key)
		}
		nameStart := len(p.buf)
		if err := p.decodeString(); err != nil {
			return out, err
		}
		nameEnd := len(p.buf)
		p.skipSpace()
		if !p.consume(':') {
			return out, p.errorf("expected ':' in %q", key)
		}
		p.skipSpace()
		if p.peek() != '"' {
			return out, p.typeError(at, key, "an object of strings")
		}
		valStart := len(p.buf)
		if err := p.decodeString(); err != nil {
			return out, err
		}
		out = append(out, Field{
			Name:  p.buf[nameStart:nameEnd:nameEnd],
			Value: p.buf[valStart:len(p.buf):len(p.buf)],
		})
		p.skipSpace()
		if p.consume(',') {
			continue
		}
		if p.consume('}') {
			return out, nil
		}
		return out, p.errorf("expected ',' or '}' in %q", key)
	}
}

// decodeString reads the string at pos (which holds '"') and appends its
// decoded bytes to buf.
func (p *Parser) decodeString() error {
	buf, pos, err := AppendUnquoted(p.buf, p.data, p.pos)
	if err != nil {
		p.pos = pos
		return p.errorf("%v", err)
	}
	p.buf, p.pos = buf, pos
	return nil
}

// AppendUnquoted decodes the JSON string that starts at data[pos] (which
// holds the opening '"') and appends its bytes to dst. It returns dst and
// the position just past the closing quote. A surrogate pair escape gives
// one character and a lone surrogate U+FFFD; the result is never longer
// than the encoded string. On a malformed string it returns the position
// of the problem and an error that says what it is.
func AppendUnquoted(dst, data []byte, pos int) ([]byte, int, error) {
	pos++ // opening quote
	for {
		// Copy the run of plain bytes in one go.
		start := pos
		for pos < len(data) {
			c := data[pos]
			if c == '"' || c == '\\' || c < 0x20 {
				break
			}
			pos++
		}
		dst = append(dst, data[start:pos]...)
		if pos >= len(data) {
			return dst, pos, errors.New("unterminated string")
		}
		c := data[pos]
		switch {
		case c == '"':
			return dst, pos + 1, nil
		case c < 0x20:
			return dst, pos, errors.New("control character in a string")
		}
		// A backslash escape.
		if pos+1 >= len(data) {
			return dst, pos, errors.New("unterminated escape")
		}
		e := data[pos+1]
		pos += 2
		switch e {
		case '"', '\\', '/':
			dst = append(dst, e)
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(data, pos)
			if !ok {
				return dst, pos, errors.New("bad \\u escape")
			}
			pos += 4
			if utf16.IsSurrogate(r) {
				// A pair gives one character; a lone half is replaced.
				r2 := utf8.RuneError
				if pos+1 < len(data) && data[pos] == '\\' && data[pos+1] == 'u' {
					if lo, ok := hex4(data, pos+2); ok {
						r2 = utf16.DecodeRune(r, lo)
						if r2 != utf8.RuneError {
							pos += 6
						}
					}
				}
				r = r2
			}
			dst = utf8.AppendRune(dst, r)
		default:
			return dst, pos, fmt.Errorf("unknown escape \\%c", e)
		}
	}
}

// hex4 reads four hex digits at data[pos:].
func hex4(data []byte, pos int) (rune, bool) {
	if pos+4 > len(data) {
		return 0, false
	}
	var r rune
	for _, c := range data[pos : pos+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return r, true
}

// skipValue skips any JSON value, for fields the format does not define.
func (p *Parser) skipValue(depth int) error {
	if depth > 32 {
		return p.errorf("nesting too deep")
	}
	switch c := p.peek(); {
	case c == '"':
		mark := len(p.buf)
		err := p.decodeString()
		p.buf = p.buf[:mark]
		return err
	case c == '{' || c == '[':
		closing := byte('}')
		if c == '[' {
			closing = ']'
		}
		p.pos++
		p.skipSpace()
		if p.consume(closing) {
			return nil
		}
		for {
			p.skipSpace()
			if c == '{' {
				if p.peek() != '"' {
					return p.errorf("expected a field name")
				}
				if err := p.skipValue(depth + 1); err != nil {
					return err
				}
				p.skipSpace()
				if !p.consume(':') {
					return p.errorf("expected ':'")
				}
				p.skipSpace()
			}
			if err := p.skipValue(depth + 1); err != nil {
				return err
			}
			p.skipSpace()
			if p.consume(',') {
				continue
			}
			if p.consume(closing) {
				return nil
			}
			return p.errorf("expected ',' or '%c'", closing)
		}
	case c == '-' || (c >= '0' && c <= '9'):
		start := p.pos
		for p.pos < len(p.data) {
			c := p.data[p.pos]
			if (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' {
				p.pos++
				continue
			}
			break
		}
		if _, err := strconv.ParseFloat(string(p.data[start:p.pos]), 64); err != nil {
			return p.errorf("bad number")
		}
		return nil
	default:
		for _, lit := range [...]string{"true", "false", "null"} {
			if len(p.data)-p.pos >= len(lit) && string(p.data[p.pos:p.pos+len(lit)]) == lit {
				p.pos += len(lit)
				return nil
			}
		}
		return p.errorf("unexpected character")
	}
}

func firstInvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
}
