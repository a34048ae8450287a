package exporter

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"

	"dovecot-kafka/parser"
)

// EventName is the name push-events.lua's exporter output gives its events, and so
// the event=... filter of the exporter's metric.
const EventName = "dovecot_kafka_event"

// logFieldMax is how many bytes of a string value Dovecot's log transport
// keeps before it appends "...": LOG_EXPORTER_LONG_FIELD_TRUNCATE_LEN in
// src/stats of 2.3 and 2.4.
const logFieldMax = 1000

// errSyntax marks a message that is not the exporter's JSON or tab-text.
var errSyntax = errors.New("exporter: malformed message")

// A v1Field is one field of the events-file line (format v1) that a push_*
// field of the exporter becomes.
type v1Field struct {
	name    string // the push_* field
	key     string // its key in the events-file line
	kind    fieldKind
	counted bool // its length is part of push_bytes
}

type fieldKind uint8

const (
	kindString fieldKind = iota
	kindInt
	kindList // a space-separated list, an array of strings in the line
)

// v1Fields lists the fields in the order they are written to the line.
var v1Fields = [...]v1Field{
	{"push_v", "v", kindInt, false},
	{"push_time", "time", kindInt, false},
	{"push_user", "user", kindString, true},
	{"push_event", "event", kindString, true},
	{"push_mailbox", "mailbox", kindString, true},
	{"push_mailbox_old", "mailbox_old", kindString, true},
	{"push_uidvalidity", "uidvalidity", kindInt, false},
	{"push_uid", "uid", kindInt, false},
	{"push_flags", "flags", kindList, true},
	{"push_keywords", "keywords", kindList, true},
	{"push_date", "date", kindInt, false},
	{"push_tz", "tz", kindInt, false},
	{"push_from", "from", kindString, true},
	{"push_to", "to", kindString, true},
	{"push_subject", "subject", kindString, true},
	{"push_snippet", "snippet", kindString, true},
}

const (
	userdbPrefix = "userdb_"
	bytesField   = "push_bytes"
	noField      = -1
	userdbField  = -2
	bytesFieldID = -3
)

// fieldID returns the index of name in v1Fields, or userdbField,
// bytesFieldID or noField.
func fieldID(name []byte) int {
	if len(name) < 5 {
		return noField
	}
	switch name[0] {
	case 'p':
		if string(name) == bytesField {
			return bytesFieldID
		}
		for i := range v1Fields {
			if v1Fields[i].name == string(name) {
				return i
			}
		}
	case 'u':
		if len(name) > len(userdbPrefix) && string(name[:len(userdbPrefix)]) == userdbPrefix {
			return userdbField
		}
	}
	return noField
}

// isIntName reports whether name is one of the integer fields, which
// tab-text cannot tell from strings.
func isIntName(name []byte) bool {
	if string(name) == bytesField {
		return true
	}
	id := fieldID(name)
	return id >= 0 && v1Fields[id].kind == kindInt
}

// field is one field of a decoded message. value points into the
// translator's scratch buffer or into the message.
type field struct {
	name, value []byte
	str         bool // a string; false for numbers (JSON) and integer fields (tab-text)
}

// A translator turns one exporter message into an events-file line. It
// reuses its buffers and is not safe for concurrent use.
type translator struct {
	enc      Encoding
	cutCheck bool // values may have been cut by the log transport

	scratch []byte
	fields  []field
	slots   [len(v1Fields)]int // index into fields, or -1
	userdb  []int
	line    []byte
}

// translate decodes msg. It reports ours = false for a well-formed message
// of another event, which is to be skipped. For our events it returns the
// events-file line (valid until the next call), or an error that wraps
// ErrTruncated or ErrDamaged.
func (t *translator) translate(msg []byte) (line []byte, ours bool, err error) {
	var name []byte
	if t.enc == TabText {
		name, err = t.decodeTabText(msg)
	} else {
		name, err = t.decodeJSON(msg)
	}
	if err != nil {
		// Only the caller knows whether a broken message was ours.
		return nil, hasOurName(msg, t.enc), fmt.Errorf("%w: %w", ErrDamaged, err)
	}
	if string(name) != EventName {
		return nil, false, nil
	}

	for i := range t.slots {
		t.slots[i] = -1
	}
	t.userdb = t.userdb[:0]
	bytesAt := -1
	for i := range t.fields {
		f := &t.fields[i]
		switch id := fieldID(f.name); id {
		case noField:
			continue
		case userdbField:
			t.userdb = append(t.userdb, i)
		case bytesFieldID:
			bytesAt = i
		default:
			t.slots[id] = i
		}
		if t.cutCheck && f.str && cutByLog(f.value) {
			return nil, true, fmt.Errorf("%w: field %s", ErrTruncated, f.name)
		}
	}
	if err := t.checkBytes(bytesAt); err != nil {
		return nil, true, fmt.Errorf("%w: %w", ErrDamaged, err)
	}
	t.line = t.appendLine(t.line[:0])
	return t.line, true, nil
}

// cutByLog reports whether v is a value the log transport cut. Dovecot 2.3
// keeps the first 1000 bytes, each byte of a character cut in two becoming
// U+FFFD in JSON, and appends "..."; 2.4 cuts at a character boundary at
// or below 1000 bytes and appends "..." to any value of 1000 bytes or more.
// Whole values are at most 1000 bytes (2.4: 999), so a value longer than
// 1000 bytes was cut, and one of 1000 bytes ending in "..." is taken as cut.
func cutByLog(v []byte) bool {
	return len(v) > logFieldMax ||
		(len(v) == logFieldMax && bytes.HasSuffix(v, []byte("...")))
}

// checkBytes compares push_bytes with the lengths of the string fields it
// covers. A value cut, or a split message glued together wrong, changes
// them.
func (t *translator) checkBytes(at int) error {
	if at < 0 {
		return errors.New("no push_bytes field (not sent by push-events.lua, or cut)")
	}
	want, ok := parseInt(t.fields[at].value)
	if !ok || t.fields[at].str && t.enc == JSON {
		return errors.New("push_bytes is not an integer")
	}
	var got int64
	for id, i := range t.slots {
		if i >= 0 && v1Fields[id].counted && t.fields[i].str {
			got += int64(len(t.fields[i].value))
		}
	}
	for _, i := range t.userdb {
		if t.fields[i].str {
			got += int64(len(t.fields[i].value))
		}
	}
	if got != want {
		return fmt.Errorf("string fields hold %d bytes, push_bytes says %d", got, want)
	}
	return nil
}

// appendLine writes the events-file line (format v1, see
// dovecot-conf/events-format.md) to dst. Values the parser will refuse (an
// integer field that is not an integer) are written as strings, so that the
// parser names the field.
func (t *translator) appendLine(dst []byte) []byte {
	dst = append(dst, '{')
	if t.slots[0] < 0 {
		dst = append(dst, `"v":1,`...)
	}
	for id, i := range t.slots {
		if i < 0 {
			continue
		}
		f := &t.fields[i]
		dst = append(dst, '"')
		dst = append(dst, v1Fields[id].key...) // plain ASCII
		dst = append(dst, '"', ':')
		switch v1Fields[id].kind {
		case kindInt:
			if _, ok := parseInt(f.value); ok && !(f.str && t.enc == JSON) {
				dst = append(dst, f.value...)
			} else {
				dst = appendJSONString(dst, f.value)
			}
		case kindList:
			dst = appendList(dst, f.value)
		default:
			dst = appendJSONString(dst, f.value)
		}
		dst = append(dst, ',')
	}
	if len(t.userdb) > 0 {
		dst = append(dst, `"userdb":{`...)
		for n, i := range t.userdb {
			if n > 0 {
				dst = append(dst, ',')
			}
			f := &t.fields[i]
			dst = appendJSONString(dst, f.name[len(userdbPrefix):])
			dst = append(dst, ':')
			dst = appendJSONString(dst, f.value)
		}
		dst = append(dst, '}', ',')
	}
	dst[len(dst)-1] = '}' // replaces the last ','; there is always one
	return dst
}

// appendList writes a space-separated list as a JSON array of strings.
func appendList(dst, list []byte) []byte {
	dst = append(dst, '[')
	n := 0
	for len(list) > 0 {
		item := list
		if i := bytes.IndexByte(list, ' '); i >= 0 {
			item, list = list[:i], list[i+1:]
		} else {
			list = nil
		}
		if len(item) == 0 {
			continue
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, item)
		n++
	}
	return append(dst, ']')
}

// appendJSONString writes s as a JSON string. Bytes that are not valid
// UTF-8 are copied as they are, so that the parser rejects the line
// instead of publishing a repaired value.
func appendJSONString(dst, s []byte) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i, c := range s {
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// parseInt parses a decimal integer as Dovecot writes it ("%jd").
func parseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	digits := b
	if b[0] == '-' {
		digits = b[1:]
	}
	if len(digits) == 0 {
		return 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	return n, err == nil
}

// hasOurName reports whether msg starts like one of our events: its name
// comes first in both formats.
func hasOurName(msg []byte, enc Encoding) bool {
	if enc == TabText {
		const p = "event:" + EventName
		return bytes.HasPrefix(msg, []byte(p)) &&
			(len(msg) == len(p) || msg[len(p)] == '\t')
	}
	d := jsonDecoder{data: msg}
	d.skipSpace()
	if !d.consume('{') {
		return false
	}
	d.skipSpace()
	if !d.literal(`"event"`) {
		return false
	}
	d.skipSpace()
	if !d.consume(':') {
		return false
	}
	d.skipSpace()
	return d.literal(`"` + EventName + `"`)
}

// decodeTabText splits a tab-text message into its event name and fields.
// Values are unescaped into the scratch buffer.
func (t *translator) decodeTabText(msg []byte) ([]byte, error) {
	if cap(t.scratch) < len(msg) {
		t.scratch = make([]byte, 0, max(len(msg), 4096))
	}
	t.scratch = t.scratch[:0]
	t.fields = t.fields[:0]
	var name []byte
	for len(msg) > 0 {
		tok := msg
		if i := bytes.IndexByte(msg, '\t'); i >= 0 {
			tok, msg = msg[:i], msg[i+1:]
		} else {
			msg = nil
		}
		switch {
		case bytes.HasPrefix(tok, []byte("event:")):
			v, err := t.tabUnescape(tok[len("event:"):])
			if err != nil {
				return nil, err
			}
			name = v
		case bytes.HasPrefix(tok, []byte("field:")):
			kv := tok[len("field:"):]
			eq := bytes.IndexByte(kv, '=')
			if eq < 0 {
				return nil, fmt.Errorf("%w: field without '='", errSyntax)
			}
			k, err := t.tabUnescape(kv[:eq])
			if err != nil {
				return nil, err
			}
			v, err := t.tabUnescape(kv[eq+1:])
			if err != nil {
				return nil, err
			}
			t.fields = append(t.fields, field{name: k, value: v, str: !isIntName(k)})
		}
		// hostname:, start_time:, end_time:, category: and anything a
		// later Dovecot adds are not needed.
	}
	return name, nil
}

// tabUnescape undoes Dovecot's tab escaping (\001 followed by 0, 1, t, r
// or n) into the scratch buffer.
func (t *translator) tabUnescape(s []byte) ([]byte, error) {
	if bytes.IndexByte(s, 1) < 0 {
		return s, nil
	}
	start := len(t.scratch)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != 1 {
			t.scratch = append(t.scratch, c)
			continue
		}
		if i+1 == len(s) {
			return nil, fmt.Errorf("%w: tab escape at the end of a value", errSyntax)
		}
		i++
		switch s[i] {
		case '0':
			c = 0
		case '1':
			c = 1
		case 't':
			c = '\t'
		case 'r':
			c = '\r'
		case 'n':
			c = '\n'
		default:
			c = s[i]
		}
		t.scratch = append(t.scratch, c)
	}
	return t.scratch[start:len(t.scratch):len(t.scratch)], nil
}

// decodeJSON decodes a JSON message: its "event" name and the members of
// its "fields" object. Strings are unescaped into the scratch buffer;
// numbers keep their text; lists and objects among the fields (Dovecot's
// own, such as reason_code) are skipped.
func (t *translator) decodeJSON(msg []byte) ([]byte, error) {
	// Unescaping never makes a string longer: with this capacity the
	// scratch buffer never moves while the message is decoded.
	if cap(t.scratch) < len(msg) {
		t.scratch = make([]byte, 0, max(len(msg), 4096))
	}
	t.scratch = t.scratch[:0]
	t.fields = t.fields[:0]
	d := jsonDecoder{data: msg, buf: &t.scratch}

	var name []byte
	d.skipSpace()
	if !d.consume('{') {
		return nil, d.errorf("expected '{'")
	}
	err := d.members(func(key []byte) error {
		switch string(key) {
		case "event":
			v, err := d.str()
			name = v
			return err
		case "fields":
			return t.jsonFields(&d)
		}
		return d.skipValue(0)
	})
	if err != nil {
		return nil, err
	}
	d.skipSpace()
	if d.pos != len(d.data) {
		return nil, d.errorf("data after the object")
	}
	return name, nil
}

func (t *translator) jsonFields(d *jsonDecoder) error {
	d.skipSpace()
	if !d.consume('{') {
		return d.errorf(`"fields" is not an object`)
	}
	return d.members(func(key []byte) error {
		switch c := d.peek(); {
		case c == '"':
			v, err := d.str()
			if err != nil {
				return err
			}
			t.fields = append(t.fields, field{name: key, value: v, str: true})
		case c == '-' || (c >= '0' && c <= '9'):
			v, err := d.number()
			if err != nil {
				return err
			}
			t.fields = append(t.fields, field{name: key, value: v})
		default:
			return d.skipValue(1)
		}
		return nil
	})
}

// jsonDecoder reads the JSON the exporter writes. Decoded strings are
// appended to *buf.
type jsonDecoder struct {
	data []byte
	pos  int
	buf  *[]byte
}

func (d *jsonDecoder) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format+" at byte %d", append([]any{errSyntax}, append(args, d.pos)...)...)
}

func (d *jsonDecoder) skipSpace() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\r', '\n':
			d.pos++
		default:
			return
		}
	}
}

func (d *jsonDecoder) peek() byte {
	if d.pos < len(d.data) {
		return d.data[d.pos]
	}
	return 0
}

func (d *jsonDecoder) consume(c byte) bool {
	if d.peek() == c {
		d.pos++
		return true
	}
	return false
}

func (d *jsonDecoder) literal(s string) bool {
	if bytes.HasPrefix(d.data[d.pos:], []byte(s)) {
		d.pos += len(s)
		return true
	}
	return false
}

// members reads the members of an object whose '{' has been consumed,
// calling value with each key while the decoder is at its value.
func (d *jsonDecoder) members(value func(key []byte) error) error {
	d.skipSpace()
	if d.consume('}') {
		return nil
	}
	for {
		d.skipSpace()
		if d.peek() != '"' {
			return d.errorf("expected a member name")
		}
		key, err := d.str()
		if err != nil {
			return err
		}
		d.skipSpace()
		if !d.consume(':') {
			return d.errorf("expected ':'")
		}
		d.skipSpace()
		if err := value(key); err != nil {
			return err
		}
		d.skipSpace()
		if d.consume(',') {
			continue
		}
		if d.consume('}') {
			return nil
		}
		return d.errorf("expected ',' or '}'")
	}
}

func (d *jsonDecoder) number() ([]byte, error) {
	start := d.pos
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		if (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' {
			d.pos++
			continue
		}
		break
	}
	v := d.data[start:d.pos]
	if _, err := strconv.ParseFloat(string(v), 64); err != nil {
		return nil, d.errorf("bad number")
	}
	return v, nil
}

// str decodes the string at pos into *buf and returns it.
func (d *jsonDecoder) str() ([]byte, error) {
	if d.peek() != '"' {
		return nil, d.errorf("expected a string")
	}
	start := len(*d.buf)
	b, pos, err := parser.AppendUnquoted(*d.buf, d.data, d.pos)
	d.pos = pos
	if err != nil {
		return nil, d.errorf("%v", err)
	}
	*d.buf = b
	return b[start:len(b):len(b)], nil
}

// skipValue skips any JSON value.
func (d *jsonDecoder) skipValue(depth int) error {
	if depth > 32 {
		return d.errorf("nesting too deep")
	}
	d.skipSpace()
	switch c := d.peek(); {
	case c == '"':
		mark := len(*d.buf)
		_, err := d.str()
		*d.buf = (*d.buf)[:mark]
		return err
	case c == '{':
		d.pos++
		return d.members(func([]byte) error { return d.skipValue(depth + 1) })
	case c == '[':
		d.pos++
		d.skipSpace()
		if d.consume(']') {
			return nil
		}
		for {
			if err := d.skipValue(depth + 1); err != nil {
				return err
			}
			d.skipSpace()
			if d.consume(',') {
				continue
			}
			if d.consume(']') {
				return nil
			}
			return d.errorf("expected ',' or ']'")
		}
	case c == '-' || (c >= '0' && c <= '9'):
		_, err := d.number()
		return err
	default:
		for _, lit := range [...]string{"true", "false", "null"} {
			if d.literal(lit) {
				return nil
			}
		}
		return d.errorf("unexpected character")
	}
}
