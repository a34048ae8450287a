package mapping

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"dovecot-kafka/parser"
)

// The three drivers of the reference setup: the old driver's lines
//
//	push_notification_driver  = kafka:topic=dovecot
//	push_notification_driver2 = kafka:topic=flags events=FlagsClear,FlagsSet,MessageExpunge,MessageRead,MessageTrash keyword_prefix=$label send_flags=off
//	push_notification_driver3 = kafka:topic=feature feature=kafka_push userdb=customer_id,plan
func referenceDrivers(t testing.TB) map[string]*Driver {
	flagsEvents, err := ParseEvents([]string{"FlagsClear", "FlagsSet", "MessageExpunge", "MessageRead", "MessageTrash"})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]*Driver{
		"dovecot": {Topic: "dovecot", Events: AllEvents, KeywordPrefix: "$", SendFlags: true},
		"flags":   {Topic: "flags", Events: flagsEvents, KeywordPrefix: "$label", SendFlags: false},
		"feature": {Topic: "feature", Events: AllEvents, KeywordPrefix: "$", SendFlags: true, Feature: "kafka_push", Userdb: []string{"customer_id", "plan"}},
	}
}

const userA = `"user":"user-a@example.test","userdb":{"kafka_push":"on","customer_id":"1001","plan":"gold"}`

func TestFromEvent(t *testing.T) {
	drivers := referenceDrivers(t)
	tests := []struct {
		name string
		line string
		want map[string]string // topic -> value; a topic missing here publishes nothing
	}{
		{
			name: "MessageNew with Date, encoded From, decoded Subject",
			line: `{"v":1,"time":1,` + userA + `,"event":"MessageNew","mailbox":"INBOX","uidvalidity":1796397223,"uid":1,"date":1709610300,"tz":330,"from":"=?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <juergen@example.test>","to":"user-a@example.test","subject":"Grüße aus Köln ✓ – Quartalsbericht","snippet":"Hallo","message_id":"<a@x>","flags":[],"keywords":[]}`,
			want: map[string]string{
				"dovecot": `{"user":"user-a@example.test","mailbox":"INBOX","event":"MessageNew","uidvalidity":1796397223,"uid":1,"date":"2024-03-05T09:15:00+05:30","from":"=?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <juergen@example.test>","snippet":"Hallo","subject":"Grüße aus Köln ✓ – Quartalsbericht","to":"user-a@example.test"}`,
				"feature": `{"user":"user-a@example.test","userdb":{"customer_id":"1001","plan":"gold"},"mailbox":"INBOX","event":"MessageNew","uidvalidity":1796397223,"uid":1,"date":"2024-03-05T09:15:00+05:30","from":"=?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <juergen@example.test>","snippet":"Hallo","subject":"Grüße aus Köln ✓ – Quartalsbericht","to":"user-a@example.test"}`,
			},
		},
		{
			name: "MessageNew without Date and Subject, empty body",
			line: `{"user":"user-b@example.test","userdb":{"kafka_push":"off"},"event":"MessageNew","mailbox":"INBOX","uidvalidity":7,"uid":3,"date":0,"tz":0,"from":"noreply@example.test","to":"user-b@example.test","snippet":""}`,
			want: map[string]string{
				"dovecot": `{"user":"user-b@example.test","mailbox":"INBOX","event":"MessageNew","uidvalidity":7,"uid":3,"from":"noreply@example.test","snippet":"","to":"user-b@example.test"}`,
			},
		},
		{
			name: "MessageNew with quotes, backslashes, folded subject, negative offset",
			line: `{"user":"u","event":"MessageNew","mailbox":"INBOX","uidvalidity":7,"uid":2,"date":1709768730,"tz":-300,"from":"\"O'Brien, \\\"Bob\\\"\" <bob@example.test>","to":"\"Ops \\\\ Desk\" <u>","subject":"Re: a\n folded","snippet":"tab\there"}`,
			want: map[string]string{
				"dovecot": `{"user":"u","mailbox":"INBOX","event":"MessageNew","uidvalidity":7,"uid":2,"date":"2024-03-06T18:45:30-05:00","from":"\"O'Brien, \\\"Bob\\\"\" <bob@example.test>","snippet":"tab\there","subject":"Re: a\n folded","to":"\"Ops \\\\ Desk\" <u>"}`,
			},
		},
		{
			name: "MessageAppend has no date",
			line: `{` + userA + `,"event":"MessageAppend","mailbox":"INBOX","uidvalidity":5,"uid":4,"date":1706780096,"tz":180,"from":"Calendar <calendar@example.test>","to":"user-a@example.test","subject":"Appended: weekly summary","snippet":"Wöchentliche","flags":["\\Seen"],"keywords":["$label1"]}`,
			want: map[string]string{
				"dovecot": `{"user":"user-a@example.test","mailbox":"INBOX","event":"MessageAppend","uidvalidity":5,"uid":4,"from":"Calendar <calendar@example.test>","snippet":"Wöchentliche","subject":"Appended: weekly summary","to":"user-a@example.test"}`,
				"feature": `{"user":"user-a@example.test","userdb":{"customer_id":"1001","plan":"gold"},"mailbox":"INBOX","event":"MessageAppend","uidvalidity":5,"uid":4,"from":"Calendar <calendar@example.test>","snippet":"Wöchentliche","subject":"Appended: weekly summary","to":"user-a@example.test"}`,
			},
		},
		{
			name: "FlagsSet flags in canonical order, Recent dropped",
			line: `{` + userA + `,"event":"FlagsSet","mailbox":"INBOX","uidvalidity":5,"uid":2,"flags":["\\Draft","\\Recent","\\Flagged"],"keywords":[]}`,
			want: map[string]string{
				"dovecot": `{"user":"user-a@example.test","mailbox":"INBOX","event":"FlagsSet","uidvalidity":5,"uid":2,"flags":["\\Flagged","\\Draft"]}`,
				"feature": `{"user":"user-a@example.test","userdb":{"customer_id":"1001","plan":"gold"},"mailbox":"INBOX","event":"FlagsSet","uidvalidity":5,"uid":2,"flags":["\\Flagged","\\Draft"]}`,
			},
		},
		{
			name: "FlagsSet keywords filtered by prefix, each once",
			line: `{"user":"u","event":"FlagsSet","mailbox":"INBOX","uidvalidity":5,"uid":2,"flags":[],"keywords":["$label1","Junk","$label2","$label1","$Forwarded"]}`,
			want: map[string]string{
				"dovecot": `{"user":"u","mailbox":"INBOX","event":"FlagsSet","uidvalidity":5,"uid":2,"keywords":["$label1","$label2","$Forwarded"]}`,
				"flags":   `{"user":"u","mailbox":"INBOX","event":"FlagsSet","uidvalidity":5,"uid":2,"keywords":["$label1","$label2"]}`,
			},
		},
		{
			name: "FlagsSet flag plus unmatched keyword gives an empty keyword list",
			line: `{"user":"u","event":"FlagsSet","mailbox":"INBOX","uidvalidity":5,"uid":1,"flags":["\\Answered"],"keywords":["Junk"]}`,
			want: map[string]string{
				"dovecot": `{"user":"u","mailbox":"INBOX","event":"FlagsSet","uidvalidity":5,"uid":1,"flags":["\\Answered"],"keywords":[]}`,
			},
		},
		{
			name: "FlagsSet with nothing matching is not published",
			line: `{"user":"u","event":"FlagsSet","mailbox":"INBOX","uidvalidity":5,"uid":2,"flags":[],"keywords":["Junk"]}`,
			want: map[string]string{},
		},
		{
			name: "FlagsSet called with nothing changed",
			line: `{"user":"u","event":"FlagsSet","mailbox":"INBOX","uidvalidity":5,"uid":2}`,
			want: map[string]string{},
		},
		{
			name: "FlagsClear flags and keywords",
			line: `{"user":"u","event":"FlagsClear","mailbox":"INBOX","uidvalidity":5,"uid":2,"flags":["\\Flagged"],"keywords":["$label2"]}`,
			want: map[string]string{
				"dovecot": `{"user":"u","mailbox":"INBOX","event":"FlagsClear","uidvalidity":5,"uid":2,"flags":["\\Flagged"],"keywords":["$label2"]}`,
				"flags":   `{"user":"u","mailbox":"INBOX","event":"FlagsClear","uidvalidity":5,"uid":2,"keywords":["$label2"]}`,
			},
		},
		{
			name: "MessageRead",
			line: `{"user":"u","event":"MessageRead","mailbox":"INBOX","uidvalidity":5,"uid":2}`,
			want: map[string]string{
				"dovecot": `{"user":"u","mailbox":"INBOX","event":"MessageRead","uidvalidity":5,"uid":2}`,
				"flags":   `{"user":"u","mailbox":"INBOX","event":"MessageRead","uidvalidity":5,"uid":2}`,
			},
		},
		{
			name: "MessageTrash",
			line: `{"user":"u","event":"MessageTrash","mailbox":"INBOX","uidvalidity":5,"uid":3}`,
			want: map[string]string{
				"dovecot": `{"user":"u","mailbox":"INBOX","event":"MessageTrash","uidvalidity":5,"uid":3}`,
				"flags":   `{"user":"u","mailbox":"INBOX","event":"MessageTrash","uidvalidity":5,"uid":3}`,
			},
		},
		{
			name: "MessageExpunge",
			line: `{"user":"u","event":"MessageExpunge","mailbox":"Archive","uidvalidity":6,"uid":1}`,
			want: map[string]string{
				"dovecot": `{"user":"u","mailbox":"Archive","event":"MessageExpunge","uidvalidity":6,"uid":1}`,
				"flags":   `{"user":"u","mailbox":"Archive","event":"MessageExpunge","uidvalidity":6,"uid":1}`,
			},
		},
		{
			name: "MailboxCreate carries the uidvalidity, and userdb on the feature topic",
			line: `{` + userA + `,"event":"MailboxCreate","mailbox":"INBOX","uidvalidity":1796397223}`,
			want: map[string]string{
				"dovecot": `{"user":"user-a@example.test","mailbox":"INBOX","event":"MailboxCreate","uidvalidity":1796397223}`,
				"feature": `{"user":"user-a@example.test","userdb":{"customer_id":"1001","plan":"gold"},"mailbox":"INBOX","event":"MailboxCreate","uidvalidity":1796397223}`,
			},
		},
		{
			name: "MailboxRename",
			line: `{"user":"u","event":"MailboxRename","mailbox":"Archive/Übersicht 2024","mailbox_old":"Projekt Übersicht"}`,
			want: map[string]string{
				"dovecot": `{"user":"u","mailbox":"Archive/Übersicht 2024","event":"MailboxRename","oldMailbox":"Projekt Übersicht"}`,
			},
		},
		{
			name: "MailboxDelete is valid JSON",
			line: `{"user":"u","event":"MailboxDelete","mailbox":"Archive"}`,
			want: map[string]string{"dovecot": `{"user":"u","mailbox":"Archive","event":"MailboxDelete"}`},
		},
		{
			name: "MailboxSubscribe",
			line: `{"user":"u","event":"MailboxSubscribe","mailbox":"Projekt Übersicht"}`,
			want: map[string]string{"dovecot": `{"user":"u","mailbox":"Projekt Übersicht","event":"MailboxSubscribe"}`},
		},
		{
			name: "MailboxUnsubscribe",
			line: `{"user":"u","event":"MailboxUnsubscribe","mailbox":"Projekt Übersicht"}`,
			want: map[string]string{"dovecot": `{"user":"u","mailbox":"Projekt Übersicht","event":"MailboxUnsubscribe"}`},
		},
		{
			name: "feature value compared case-insensitively, partial userdb",
			line: `{"user":"u","userdb":{"kafka_push":"On","plan":"gold"},"event":"MailboxDelete","mailbox":"X"}`,
			want: map[string]string{
				"dovecot": `{"user":"u","mailbox":"X","event":"MailboxDelete"}`,
				"feature": `{"user":"u","userdb":{"plan":"gold"},"mailbox":"X","event":"MailboxDelete"}`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p parser.Parser
			ev, err := p.Parse([]byte(tt.line))
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			for topic, d := range drivers {
				rec, ok := FromEvent(nil, d, ev)
				want, wantOK := tt.want[topic]
				if ok != wantOK {
					t.Errorf("%s: published=%v, want %v (value %s)", topic, ok, wantOK, rec.Value)
					continue
				}
				if !ok {
					continue
				}
				if string(rec.Value) != want {
					t.Errorf("%s:\n got %s\nwant %s", topic, rec.Value, want)
				}
				if rec.Topic != topic || string(rec.Key) != string(ev.User) {
					t.Errorf("%s: topic %q key %q", topic, rec.Topic, rec.Key)
				}
				if !json.Valid(rec.Value) {
					t.Errorf("%s: invalid JSON %s", topic, rec.Value)
				}
			}
		})
	}
}

func TestAppendString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", `"plain"`},
		{`a"b\c`, `"a\"b\\c"`},
		{"\b\f\n\r\t", `"\b\f\n\r\t"`},
		{"\x00\x01\x1f\x7f", `"\u0000\u0001\u001f` + "\x7f" + `"`},
		{"<tag>&/", `"<tag>&/"`},
		{"Grüße ✓ 😀", `"Grüße ✓ 😀"`},
		{"a\u2028b\u2029c", `"a\u2028b\u2029c"`},
		{"bad\xff\xfeend", "\"bad\ufffd\ufffdend\""},
		{"cut \xe2\x9c", "\"cut \ufffd\ufffd\""},
		{"\xed\xa0\x80", "\"\ufffd\ufffd\ufffd\""}, // an encoded surrogate is invalid
	}
	for _, tt := range tests {
		got := string(AppendString(nil, []byte(tt.in)))
		if got != tt.want {
			t.Errorf("AppendString(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestAppendDate(t *testing.T) {
	tests := []struct {
		utc, tz int64
		want    string
	}{
		{1709610300, 330, "2024-03-05T09:15:00+05:30"},
		{1709768730, -300, "2024-03-06T18:45:30-05:00"},
		{1706780096, 180, "2024-02-01T12:34:56+03:00"},
		{0, -90, "1969-12-31T22:30:00-01:30"},
	}
	for _, tt := range tests {
		if got := string(AppendDate(nil, tt.utc, tt.tz)); got != tt.want {
			t.Errorf("AppendDate(%d, %d) = %s, want %s", tt.utc, tt.tz, got, tt.want)
		}
	}
}

func TestParseEvents(t *testing.T) {
	s, err := ParseEvents([]string{"FlagsSet", " MessageNew"})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Has(parser.FlagsSet) || !s.Has(parser.MessageNew) || s.Has(parser.MessageRead) {
		t.Errorf("set %b", s)
	}
	if all, _ := ParseEvents(nil); all != AllEvents {
		t.Errorf("empty list = %b, want all", all)
	}
	if _, err := ParseEvents([]string{"MessageSent"}); err == nil || !strings.Contains(err.Error(), "MessageSent") {
		t.Errorf("unknown event error = %v", err)
	}
}

// FuzzFromEvent checks that any line the parser accepts renders, for every
// reference driver, without panicking and as valid UTF-8 JSON.
func FuzzFromEvent(f *testing.F) {
	f.Add([]byte(`{"user":"u","event":"FlagsSet","mailbox":"INBOX","uidvalidity":5,"uid":1,"flags":["\\Answered"],"keywords":["Junk"]}`))
	f.Add([]byte(`{"user":"u\u0001\u2028","userdb":{"kafka_push":"on","plan":"\u0000"},"event":"MessageNew","mailbox":"\"","uidvalidity":5,"uid":1,"date":-99999999999,"tz":-1439,"from":"\\","subject":"x","snippet":""}`))
	f.Add([]byte(`{"user":"u","event":"MailboxRename","mailbox":"a","mailbox_old":"b"}`))
	drivers := referenceDrivers(f)
	f.Fuzz(func(t *testing.T, line []byte) {
		var p parser.Parser
		ev, err := p.Parse(line)
		if err != nil {
			return
		}
		for topic, d := range drivers {
			rec, ok := FromEvent(nil, d, ev)
			if !ok {
				continue
			}
			if !utf8.Valid(rec.Value) || !json.Valid(rec.Value) {
				t.Fatalf("%s: invalid output %q for %q", topic, rec.Value, line)
			}
		}
	})
}
