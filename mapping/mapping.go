// Package mapping renders a parsed event as the JSON value that one driver
// publishes to Kafka.
//
// A Driver is one configured output, like a push_notification_driver line of
// the old C driver: a topic, the events it publishes and how it treats flags,
// keywords and userdb fields. The value's shape, field order and string
// escaping are a contract with consumers (CONTRACT.md in the project's shared
// documents): the encoder is written by hand so that every byte is the one
// the old driver produced, with its defects corrected, and so that the hot
// path does no reflection and no allocation.
package mapping

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"dovecot-kafka/parser"
)

// EventSet is a set of event kinds.
type EventSet uint32

// AllEvents contains the twelve events.
const AllEvents EventSet = (1<<13 - 1) &^ 1

// Has reports whether k is in the set.
func (s EventSet) Has(k parser.Kind) bool { return s&(1<<k) != 0 }

// ParseEvents turns event names into a set. An empty list means all events.
func ParseEvents(names []string) (EventSet, error) {
	if len(names) == 0 {
		return AllEvents, nil
	}
	var s EventSet
	for _, n := range names {
		k := parser.KindByName(strings.TrimSpace(n))
		if k == parser.KindUnknown {
			return 0, fmt.Errorf("unknown event %q (known: %s)", n, kindList())
		}
		s |= 1 << k
	}
	return s, nil
}

func kindList() string {
	var names []string
	for _, k := range parser.AllKinds() {
		names = append(names, k.String())
	}
	return strings.Join(names, ", ")
}

// Driver holds one driver's options, with the old driver's meanings.
type Driver struct {
	Name  string // for logs and metrics; the topic if not set
	Topic string // Kafka topic (default "dovecot")

	// Events is the set of events this driver publishes (default all).
	Events EventSet

	// KeywordPrefix keeps only keywords starting with it in FlagsSet and
	// FlagsClear (default "$").
	KeywordPrefix string

	// SendFlags publishes system flag changes (\Seen, ...) in FlagsSet and
	// FlagsClear (default true).
	SendFlags bool

	// Feature, if set, names a userdb field: a user's events are published
	// only if the field's value is "on", compared case-insensitively.
	Feature string

	// Userdb lists userdb fields to publish, in this order, as a "userdb"
	// object, when the user has at least one of them.
	Userdb []string
}

// Record is one Kafka message.
type Record struct {
	Topic string
	Key   []byte // the Dovecot user name
	Value []byte
}

// FromEvent renders ev for driver d, appending the value to buf. It reports
// false when d does not publish ev: the event is not in d's set, the user
// is not enabled by d's feature field, or a flag change leaves nothing to
// publish under d's flag and keyword options.
func FromEvent(buf []byte, d *Driver, ev *parser.Event) (Record, bool) {
	value, ok := d.AppendValue(buf, ev)
	if !ok {
		return Record{}, false
	}
	return Record{Topic: d.Topic, Key: ev.User, Value: value[len(buf):]}, true
}

// systemFlags are the flags written, in the order they are written.
// \Recent is never written.
var systemFlags = [...]string{`\Answered`, `\Flagged`, `\Deleted`, `\Seen`, `\Draft`}

// AppendValue appends d's JSON value for ev to dst, as FromEvent does.
func (d *Driver) AppendValue(dst []byte, ev *parser.Event) ([]byte, bool) {
	if !d.Events.Has(ev.Kind) || !d.enabled(ev) {
		return dst, false
	}

	// Decide up front whether a flag change publishes anything.
	var flagMask uint8
	keywords := 0
	if ev.Kind == parser.FlagsSet || ev.Kind == parser.FlagsClear {
		if d.SendFlags {
			flagMask = flagBits(ev.Flags)
		}
		keywords = d.countKeywords(ev.Keywords)
		if flagMask == 0 && keywords == 0 {
			return dst, false
		}
	}

	dst = append(dst, `{"user":`...)
	dst = AppendString(dst, ev.User)
	dst = d.appendUserdb(dst, ev)
	dst = append(dst, `,"mailbox":`...)
	dst = AppendString(dst, ev.Mailbox)
	dst = append(dst, `,"event":"`...)
	dst = append(dst, ev.Kind.String()...)
	dst = append(dst, '"')

	if !ev.Kind.IsMailboxEvent() {
		dst = append(dst, `,"uidvalidity":`...)
		dst = strconv.AppendInt(dst, ev.UIDValidity, 10)
		dst = append(dst, `,"uid":`...)
		dst = strconv.AppendInt(dst, ev.UID, 10)
	}

	switch ev.Kind {
	case parser.FlagsSet, parser.FlagsClear:
		if flagMask != 0 {
			dst = append(dst, `,"flags":[`...)
			first := true
			for i, f := range systemFlags {
				if flagMask&(1<<i) == 0 {
					continue
				}
				if !first {
					dst = append(dst, ',')
				}
				first = false
				dst = AppendString(dst, []byte(f))
			}
			dst = append(dst, ']')
		}
		if keywords > 0 || (len(ev.Keywords) > 0 && flagMask != 0) {
			dst = append(dst, `,"keywords":[`...)
			dst = d.appendKeywords(dst, ev.Keywords)
			dst = append(dst, ']')
		}
	case parser.MessageNew:
		if ev.HasDate && (ev.Date != 0 || ev.TZ != 0) {
			dst = append(dst, `,"date":"`...)
			dst = AppendDate(dst, ev.Date, ev.TZ)
			dst = append(dst, '"')
		}
		dst = appendMessageFields(dst, ev)
	case parser.MessageAppend:
		dst = appendMessageFields(dst, ev)
	case parser.MailboxCreate:
		dst = append(dst, `,"uidvalidity":`...)
		dst = strconv.AppendInt(dst, ev.UIDValidity, 10)
	case parser.MailboxRename:
		dst = append(dst, `,"oldMailbox":`...)
		dst = AppendString(dst, ev.MailboxOld)
	}
	dst = append(dst, '}')
	return dst, true
}

// enabled applies the feature option.
func (d *Driver) enabled(ev *parser.Event) bool {
	if d.Feature == "" {
		return true
	}
	v, ok := ev.UserdbField(d.Feature)
	return ok && bytes.EqualFold(v, []byte("on"))
}

func (d *Driver) appendUserdb(dst []byte, ev *parser.Event) []byte {
	first := true
	for _, name := range d.Userdb {
		v, ok := ev.UserdbField(name)
		if !ok {
			continue
		}
		if first {
			dst = append(dst, `,"userdb":{`...)
			first = false
		} else {
			dst = append(dst, ',')
		}
		dst = AppendString(dst, []byte(name))
		dst = append(dst, ':')
		dst = AppendString(dst, v)
	}
	if !first {
		dst = append(dst, '}')
	}
	return dst
}

// appendMessageFields writes from, snippet, subject and to. Dovecot hands
// over "" for a missing From, To or Subject header, and the old driver left
// such fields out; an empty snippet (empty body) is written.
func appendMessageFields(dst []byte, ev *parser.Event) []byte {
	if ev.HasFrom && len(ev.From) > 0 {
		dst = append(dst, `,"from":`...)
		dst = AppendString(dst, ev.From)
	}
	if ev.HasSnippet {
		dst = append(dst, `,"snippet":`...)
		dst = AppendString(dst, ev.Snippet)
	}
	if ev.HasSubject && len(ev.Subject) > 0 {
		dst = append(dst, `,"subject":`...)
		dst = AppendString(dst, ev.Subject)
	}
	if ev.HasTo && len(ev.To) > 0 {
		dst = append(dst, `,"to":`...)
		dst = AppendString(dst, ev.To)
	}
	return dst
}

// flagBits maps flag names to bits in systemFlags order; unknown names and
// \Recent are dropped.
func flagBits(flags [][]byte) uint8 {
	var m uint8
	for _, f := range flags {
		for i, name := range systemFlags {
			if string(f) == name {
				m |= 1 << i
				break
			}
		}
	}
	return m
}

// countKeywords counts the distinct keywords that match the prefix.
func (d *Driver) countKeywords(kws [][]byte) int {
	n := 0
	for i, kw := range kws {
		if d.keep(kws, i, kw) {
			n++
		}
	}
	return n
}

func (d *Driver) appendKeywords(dst []byte, kws [][]byte) []byte {
	first := true
	for i, kw := range kws {
		if !d.keep(kws, i, kw) {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = AppendString(dst, kw)
	}
	return dst
}

// keep reports whether keyword i is published: it matches the prefix and
// did not appear earlier in the list.
func (d *Driver) keep(kws [][]byte, i int, kw []byte) bool {
	if !bytes.HasPrefix(kw, []byte(d.KeywordPrefix)) {
		return false
	}
	for _, earlier := range kws[:i] {
		if bytes.Equal(earlier, kw) {
			return false
		}
	}
	return true
}

// MaxClockSkew is how far ahead of the publishing host's clock an event
// time may be and still become the record timestamp.
const MaxClockSkew = time.Minute

// Timestamp returns the Kafka record timestamp for an event that happened
// at eventTime (Unix seconds): the event time itself, or the zero time
// (librdkafka then uses the time of publishing) when it is absent or lies
// more than MaxClockSkew ahead of now, because brokers refuse timestamps
// too far in the future (Kafka 4: one hour). ok reports whether the event
// time was used.
func Timestamp(eventTime int64, now time.Time) (ts time.Time, ok bool) {
	if eventTime <= 0 || eventTime > now.Add(MaxClockSkew).Unix() {
		return time.Time{}, false
	}
	return time.Unix(eventTime, 0), true
}

// AppendDate writes the Date header given as UTC seconds and an offset in
// minutes as local time with that offset: 2024-03-05T09:15:00+05:30.
func AppendDate(dst []byte, utc, tzMinutes int64) []byte {
	t := time.Unix(utc+tzMinutes*60, 0).UTC()
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	dst = appendPadded(dst, year, 4)
	dst = append(dst, '-')
	dst = appendPadded(dst, int(month), 2)
	dst = append(dst, '-')
	dst = appendPadded(dst, day, 2)
	dst = append(dst, 'T')
	dst = appendPadded(dst, hour, 2)
	dst = append(dst, ':')
	dst = appendPadded(dst, minute, 2)
	dst = append(dst, ':')
	dst = appendPadded(dst, sec, 2)
	sign := byte('+')
	if tzMinutes < 0 {
		sign = '-'
		tzMinutes = -tzMinutes
	}
	dst = append(dst, sign)
	dst = appendPadded(dst, int(tzMinutes/60), 2)
	dst = append(dst, ':')
	return appendPadded(dst, int(tzMinutes%60), 2)
}

func appendPadded(dst []byte, n, width int) []byte {
	if n < 0 {
		dst = append(dst, '-')
		n = -n
	}
	var digits [20]byte
	i := len(digits)
	for n >= 10 || width > 1 {
		i--
		digits[i] = byte('0' + n%10)
		n /= 10
		width--
	}
	i--
	digits[i] = byte('0' + n)
	return append(dst, digits[i:]...)
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string with Dovecot's escaping: `"` and
// `\` are backslash-escaped, \b \f \n \r \t written as such, other bytes
// below 0x20 as \u00XX in lowercase hex, U+2028 and U+2029 as \u2028 and
// \u2029; every other character, non-ASCII included, is written as raw
// UTF-8, and each byte of an invalid UTF-8 sequence becomes U+FFFD.
func AppendString(dst, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\ufffd"...)
			i++
			start = i
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
		default:
			i += size
		}
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
