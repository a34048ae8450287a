package exporter

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"dovecot-kafka/follow"
)

// kv is one event field: a string or an int64 value.
type kv struct {
	k string
	v any
}

// ourEvent returns the fields push-events.lua's exporter output sends for one
// event, after fields Dovecot's own events pass on, with push_bytes
// computed as the script does.
func ourEvent(user, event, mailbox string, extra ...kv) []kv {
	fields := []kv{
		{"reason_code", []string{"imap:cmd_store"}}, // a list, as Dovecot adds
		{"user", user},
		{"session", "Dx7uGdJhcNF/AAAB"},
		{"push_v", int64(1)},
		{"push_time", int64(1733331200)},
		{"push_user", user},
		{"push_event", event},
		{"push_mailbox", mailbox},
	}
	fields = append(fields, extra...)
	var n int64
	for _, f := range fields {
		if s, ok := f.v.(string); ok && (strings.HasPrefix(f.k, "push_") || strings.HasPrefix(f.k, "userdb_")) {
			n += int64(len(s))
		}
	}
	fields = append(fields, kv{"push_bytes", n}, kv{"script", "/etc/dovecot/push-events-exporter.lua"})
	return fields
}

// withField returns fields with the value of k replaced (push_bytes is
// not recomputed).
func withField(fields []kv, k string, v any) []kv {
	out := append([]kv(nil), fields...)
	for i := range out {
		if out[i].k == k {
			out[i].v = v
			return out
		}
	}
	return append(out, kv{k, v})
}

func withoutField(fields []kv, k string) []kv {
	var out []kv
	for _, f := range fields {
		if f.k != k {
			out = append(out, f)
		}
	}
	return out
}

// jsonString23 escapes s as Dovecot 2.3's json_append_escaped does; with
// upper set, as 2.4's JSON generator does (upper-case hex).
func jsonString23(s string, upper bool) string {
	hex := "0123456789abcdef"
	if upper {
		hex = "0123456789ABCDEF"
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 {
			b.WriteString("\uFFFD")
			i++
			continue
		}
		i += n
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case 0x2028, 0x2029:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			if r < 0x20 {
				b.WriteString(`\u00`)
				b.WriteByte(hex[r>>4])
				b.WriteByte(hex[r&0xf])
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// exporterJSON formats an event as the exporter's json format does with
// exporter_include = name fields (2.3), or with every part included and
// 2.4's escaping when full is set.
func exporterJSON(name string, fields []kv, full bool) string {
	var b strings.Builder
	b.WriteString(`{"event":` + jsonString23(name, full))
	if full {
		b.WriteString(`,"hostname":"mx1.example.test"`)
		b.WriteString(`,"start_time":"2026-12-04T17:35:44.320473Z","end_time":"2026-12-04T17:35:44.320675Z"`)
		b.WriteString(`,"categories":["lua","push-notification"]`)
	}
	b.WriteString(`,"fields":{`)
	for i, f := range fields {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(jsonString23(f.k, full) + ":")
		switch v := f.v.(type) {
		case string:
			b.WriteString(jsonString23(v, full))
		case int64:
			b.WriteString(strconv.FormatInt(v, 10))
		case []string:
			b.WriteByte('[')
			for j, s := range v {
				if j > 0 {
					b.WriteByte(',')
				}
				b.WriteString(jsonString23(s, full))
			}
			b.WriteByte(']')
		}
	}
	b.WriteString("}}")
	return b.String()
}

func tabEscape(s string) string {
	r := strings.NewReplacer("\x00", "\x010", "\x01", "\x011", "\t", "\x01t", "\r", "\x01r", "\n", "\x01n")
	return r.Replace(s)
}

// exporterTabText formats an event as the exporter's tab-text format does
// with exporter_include = name fields, or every part when full is set.
func exporterTabText(name string, fields []kv, full bool) string {
	parts := []string{"event:" + tabEscape(name)}
	if full {
		parts = append(parts, "hostname:mx1.example.test", "start_time:1796405763.275314",
			"end_time:1796405763.275453", "category:lua", "category:push-notification")
	}
	for _, f := range fields {
		var v string
		switch x := f.v.(type) {
		case string:
			v = tabEscape(x)
		case int64:
			v = strconv.FormatInt(x, 10)
		case []string:
			var items []string
			for _, s := range x {
				items = append(items, tabEscape(s))
			}
			v = tabEscape(strings.Join(items, "\t"))
		}
		parts = append(parts, "field:"+tabEscape(f.k)+"="+v)
	}
	return strings.Join(parts, "\t")
}

func exporterMessage(enc Encoding, name string, fields []kv) string {
	if enc == TabText {
		return exporterTabText(name, fields, false)
	}
	return exporterJSON(name, fields, false)
}

// pidChunk is the piece length for a stats process with a 5-digit pid.
const pidChunk = pipeBuf - 4 - 5

// statsLines returns msg as the log transport writes it: one Info line of
// the stats process, or pieces of chunk bytes each on its own line.
func statsLines(msg string, chunk int) []string {
	const prefix = "2026-12-04 17:35:44 stats: Info: "
	if len(msg) <= chunk {
		return []string{prefix + msg}
	}
	var out []string
	for len(msg) > 0 {
		n := min(chunk, len(msg))
		out = append(out, prefix+msg[:n])
		msg = msg[n:]
	}
	return out
}

// otherLine is a line of another process, with text a user controls.
func otherLine(text string) string {
	return "2026-12-04 17:35:44 imap(user-a@example.test)<4711><Dx7uGdJhcNF/AAAB>: Info: " + text
}

// logOf joins lines into a log file's lines, starting at offset 0 of
// testFile.
func logOf(lines ...string) []follow.Line {
	return splitLines([]byte(strings.Join(lines, "\n")+"\n"), testFile)
}

// concat flattens lists of lines.
func concat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// concat3 builds an outcome list: an error, some errors, an error...
func concat3(first error, second error, middle []error, last error) []error {
	return append(append([]error{first, second}, middle...), last)
}
