package parser

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParseMessageNew(t *testing.T) {
	line := `{"v":1,"time":1733331200,"user":"user-a@example.test","event":"MessageNew","mailbox":"INBOX",` +
		`"uidvalidity":1796397223.0,"uid":1,"date":1709610300,"tz":330,"from":"J\u00fcrgen <j@x>","to":"a@x",` +
		`"subject":"Gr\u00fc\u00dfe \ud83d\ude00","snippet":"","message_id":"<m@x>","flags":[],"keywords":[],` +
		`"userdb":{"kafka_push":"on","plan":"gold"},"future_field":{"nested":[1,2,{"a":null}]}}`
	var p Parser
	ev, err := p.Parse([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct{ name, got, want string }{
		{"user", string(ev.User), "user-a@example.test"},
		{"kind", ev.Kind.String(), "MessageNew"},
		{"mailbox", string(ev.Mailbox), "INBOX"},
		{"from", string(ev.From), "Jürgen <j@x>"},
		{"subject", string(ev.Subject), "Grüße 😀"},
		{"message_id", string(ev.MessageID), "<m@x>"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if ev.UIDValidity != 1796397223 || ev.UID != 1 || ev.Date != 1709610300 || ev.TZ != 330 || ev.Time != 1733331200 {
		t.Errorf("numbers: %+v", ev)
	}
	if !ev.HasSnippet || len(ev.Snippet) != 0 {
		t.Errorf("snippet: has=%v %q", ev.HasSnippet, ev.Snippet)
	}
	if v, ok := ev.UserdbField("plan"); !ok || string(v) != "gold" {
		t.Errorf("userdb plan = %q %v", v, ok)
	}
	if _, ok := ev.UserdbField("customer_id"); ok {
		t.Errorf("userdb customer_id should be absent")
	}
}

func TestParseFlagsAndEmptyTables(t *testing.T) {
	var p Parser
	// A generic Lua encoder writes an empty table as {}: accept it as an
	// empty list, and an empty userdb written as [] as an empty object.
	ev, err := p.Parse([]byte(`{"user":"u","event":"FlagsSet","mailbox":"INBOX","uidvalidity":5,"uid":2,"flags":{},"keywords":["$a","b\\"],"userdb":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(ev.Flags) != 0 || len(ev.Keywords) != 2 || string(ev.Keywords[1]) != `b\` || len(ev.Userdb) != 0 {
		t.Errorf("got flags %q keywords %q userdb %v", ev.Flags, ev.Keywords, ev.Userdb)
	}
}

func TestParseReusesBuffers(t *testing.T) {
	var p Parser
	a, err := p.Parse([]byte(`{"user":"first","event":"MailboxDelete","mailbox":"A"}`))
	if err != nil || string(a.User) != "first" {
		t.Fatalf("first parse: %v %q", err, a.User)
	}
	b, err := p.Parse([]byte(`{"user":"second","event":"MailboxRename","mailbox":"B","mailbox_old":"A"}`))
	if err != nil || string(b.User) != "second" || string(b.MailboxOld) != "A" {
		t.Fatalf("second parse: %v %+v", err, b)
	}
	line := []byte(`{"user":"u","event":"FlagsSet","mailbox":"INBOX","uidvalidity":5,"uid":2,"flags":["\\Seen"],"keywords":["$a"],"userdb":{"x":"y"}}`)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := p.Parse(line); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Parse allocates %.0f times per line once warm, want 0", allocs)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, line string
		want       error
	}{
		{"empty", ``, ErrSyntax},
		{"not an object", `[1]`, ErrSyntax},
		{"truncated", `{"user":"u","event":"MessageNew"`, ErrSyntax},
		{"trailing data", `{"user":"u","event":"MailboxDelete","mailbox":"A"} x`, ErrSyntax},
		{"bad escape", `{"user":"u\x","event":"MailboxDelete","mailbox":"A"}`, ErrSyntax},
		{"raw newline in string", "{\"user\":\"u\nv\",\"event\":\"MailboxDelete\",\"mailbox\":\"A\"}", ErrSyntax},
		{"invalid utf8", "{\"user\":\"\xff\",\"event\":\"MailboxDelete\",\"mailbox\":\"A\"}", ErrBadUTF8},
		{"no user", `{"event":"MailboxDelete","mailbox":"A"}`, ErrMissingField},
		{"no mailbox", `{"user":"u","event":"MailboxDelete"}`, ErrMissingField},
		{"no uid", `{"user":"u","event":"MessageRead","mailbox":"A","uidvalidity":1}`, ErrMissingField},
		{"rename without old name", `{"user":"u","event":"MailboxRename","mailbox":"A"}`, ErrMissingField},
		{"unknown event", `{"user":"u","event":"MessageSent","mailbox":"A"}`, ErrUnknownEvent},
		{"uid is a string", `{"user":"u","event":"MessageRead","mailbox":"A","uidvalidity":1,"uid":"2"}`, ErrFieldType},
		{"uid has a fraction", `{"user":"u","event":"MessageRead","mailbox":"A","uidvalidity":1,"uid":2.5}`, ErrFieldType},
		{"user is a number", `{"user":5,"event":"MailboxDelete","mailbox":"A"}`, ErrFieldType},
		{"flags not strings", `{"user":"u","event":"FlagsSet","mailbox":"A","uidvalidity":1,"uid":2,"flags":[1]}`, ErrFieldType},
		{"userdb value not string", `{"user":"u","event":"MailboxDelete","mailbox":"A","userdb":{"a":1}}`, ErrFieldType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Parser
			_, err := p.Parse([]byte(tt.line))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Parse(%q) error = %v, want %v", tt.line, err, tt.want)
			}
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("error %T is not a *SyntaxError", err)
			}
		})
	}
}

func TestKindNames(t *testing.T) {
	if got := len(AllKinds()); got != 12 {
		t.Fatalf("%d kinds, want 12", got)
	}
	for _, k := range AllKinds() {
		if KindByName(k.String()) != k {
			t.Errorf("round trip of %v failed", k)
		}
		mailbox := strings.HasPrefix(k.String(), "Mailbox")
		if k.IsMailboxEvent() != mailbox {
			t.Errorf("%v.IsMailboxEvent() = %v", k, k.IsMailboxEvent())
		}
	}
}

// FuzzParse checks that no input panics, and that whatever Parse accepts
// is valid JSON whose strings decode to the same values encoding/json sees.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"v":1,"time":1,"user":"u","event":"MessageNew","mailbox":"INBOX","uidvalidity":1,"uid":1,"date":0,"tz":0,"from":"","to":"","snippet":"","flags":[],"keywords":[]}`))
	f.Add([]byte(`{"user":"u\u2028\"","event":"MailboxRename","mailbox":"A/B","mailbox_old":"\ud83d\ude00","userdb":{"a":"b"}}`))
	f.Add([]byte(`{"user":"u","event":"FlagsClear","mailbox":"A","uidvalidity":1,"uid":3,"flags":["\\Seen"],"keywords":{}}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		var p Parser
		ev, err := p.Parse(line)
		if err != nil {
			return
		}
		var generic map[string]any
		if jerr := json.Unmarshal(line, &generic); jerr != nil {
			t.Fatalf("Parse accepted invalid JSON %q: %v", line, jerr)
		}
		if u, ok := generic["user"].(string); !ok || u != string(ev.User) && !strings.ContainsRune(u, '\ufffd') {
			t.Fatalf("user %q, encoding/json says %q", ev.User, generic["user"])
		}
	})
}
