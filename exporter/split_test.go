package exporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"

	"dovecot-kafka/follow"
	"dovecot-kafka/parser"
)

var encodings = []struct {
	name string
	enc  Encoding
}{{"json", JSON}, {"tab-text", TabText}}

// bigEvent is a MessageNew with values big enough for three pieces or
// more, every part of them different, so that pieces glued in the wrong
// order cannot give the same text.
func bigEvent(uid int64) []kv {
	extra := []kv{{"push_uidvalidity", int64(1733330000)}, {"push_uid", uid},
		{"push_date", int64(1709610300)}, {"push_tz", int64(330)}}
	names := []string{"push_from", "push_to", "push_subject", "push_snippet",
		"userdb_a", "userdb_b", "userdb_c", "userdb_d"}
	for i, name := range names {
		var b strings.Builder
		for j := 0; b.Len() < 950; j++ {
			fmt.Fprintf(&b, "\"%d.%03d\t", i, j) // longer when escaped
		}
		extra = append(extra, kv{name, b.String()})
	}
	return ourEvent("user-a@example.test", "MessageNew", "INBOX", extra...)
}

func smallEvent(uid int64) []kv {
	return ourEvent("user-a@example.test", "MessageRead", "INBOX",
		kv{"push_uidvalidity", int64(1733330000)}, kv{"push_uid", uid})
}

// decoded returns the events-file line of an event, as a reference.
func decoded(t *testing.T, enc Encoding, fields []kv) string {
	t.Helper()
	src := newTestSource(logOf(exporterMessage(enc, EventName, fields)), Format{TransportFile, enc})
	gots := drain(t, src)
	if len(gots) != 1 || gots[0].err != nil {
		t.Fatalf("reference translation: %+v", gots)
	}
	return gots[0].Line
}

func TestSplitMessageReassembled(t *testing.T) {
	for _, e := range encodings {
		for _, chunk := range []int{minChunkLen, pidChunk, maxChunkLen} {
			t.Run(e.name, func(t *testing.T) {
				big := bigEvent(7)
				pieces := statsLines(exporterMessage(e.enc, EventName, big), chunk)
				if len(pieces) < 3 {
					t.Fatalf("want 3 pieces or more, got %d", len(pieces))
				}
				// Other processes' lines between the pieces, one of them
				// pretending to be a piece.
				var lines []string
				lines = append(lines, statsLines(exporterMessage(e.enc, EventName, smallEvent(1)), chunk)...)
				for i, p := range pieces {
					lines = append(lines, p)
					if i < len(pieces)-1 {
						lines = append(lines, otherLine("Disconnected: Logged out in=1 out=2"),
							otherLine("stats: Info: "+strings.Repeat("z", chunk)))
					}
				}
				lines = append(lines, statsLines(exporterMessage(e.enc, EventName, smallEvent(2)), chunk)...)
				log := logOf(lines...)

				src := newTestSource(log, Format{TransportLog, e.enc})
				gots := drain(t, src)
				if len(gots) != 3 {
					t.Fatalf("got %d lines, want 3: %+v", len(gots), gots)
				}
				for _, g := range gots {
					if g.err != nil {
						t.Fatalf("refused: %v", g.err)
					}
				}
				first, last := log[1], log[len(log)-2]
				if gots[1].Offset != first.Pos.Offset || gots[1].End != last.End {
					t.Errorf("split message at [%d,%d), want [%d,%d)", gots[1].Offset, gots[1].End, first.Pos.Offset, last.End)
				}
				if want := decoded(t, e.enc, big); gots[1].Line != want {
					t.Errorf("reassembled:\n got %s\nwant %s", gots[1].Line, want)
				}
				if st := src.Stats(); st.Split != 1 || st.Events != 3 || st.Skipped != uint64(2*(len(pieces)-1)) {
					t.Errorf("stats %+v", st)
				}
			})
		}
	}
}

// errRefused stands for any reason to refuse a line in expectOutcome.
var errRefused = errors.New("refused for any reason")

// expectOutcome checks that gots holds, in order, lines that are
// published (nil) or refused with an error wrapping the one given.
func expectOutcome(t *testing.T, gots []got, want ...error) {
	t.Helper()
	if len(gots) != len(want) {
		t.Fatalf("got %d lines, want %d: %+v", len(gots), len(want), gots)
	}
	for i, w := range want {
		switch {
		case w == nil && gots[i].err != nil:
			t.Errorf("line %d refused: %v", i, gots[i].err)
		case w == errRefused && gots[i].err == nil:
			t.Errorf("line %d published, want it refused", i)
		case w != nil && w != errRefused && !errors.Is(gots[i].err, w):
			t.Errorf("line %d: error %v, want %v", i, gots[i].err, w)
		}
	}
}

func TestBrokenSplitReported(t *testing.T) {
	for _, e := range encodings {
		msg := exporterMessage(e.enc, EventName, bigEvent(7))
		pieces := statsLines(msg, pidChunk)
		before := statsLines(exporterMessage(e.enc, EventName, smallEvent(1)), pidChunk)
		after := statsLines(exporterMessage(e.enc, EventName, smallEvent(2)), pidChunk)
		n := len(pieces)

		cases := []struct {
			name  string
			lines []string
			want  []error
		}{
			{"middle piece missing",
				concat(before, pieces[:1], pieces[2:], after),
				[]error{nil, errRefused, nil}},
			{"last piece missing",
				concat(before, pieces[:n-1], after),
				[]error{nil, ErrDamaged, nil}},
			{"another stats line in between",
				concat(before, pieces[:1], statsLines("config reloaded", pidChunk), pieces[1:], after),
				concat3(nil, ErrDamaged, orphanErrs(e.enc, pieces[1:]), nil)},
			{"reading starts at the second piece",
				concat(pieces[1:], after),
				append(orphanErrs(e.enc, pieces[1:]), nil)},
		}
		for _, tc := range cases {
			t.Run(e.name+"/"+tc.name, func(t *testing.T) {
				src := newTestSource(logOf(tc.lines...), Format{TransportLog, e.enc})
				gots := drain(t, src)
				expectOutcome(t, gots, tc.want...)
				for _, g := range gots {
					if g.err != nil && g.Raw == 0 {
						t.Errorf("refused line without its text")
					}
				}
			})
		}
	}
}

// orphanErrs lists what pieces read without their beginning give: each
// that holds one of our field names is refused, the rest are skipped.
func orphanErrs(enc Encoding, pieces []string) []error {
	s := NewSource(nil, Format{TransportLog, enc}, zerolog.Nop())
	var out []error
	for _, p := range pieces {
		text, _ := statsInfoText([]byte(p))
		if s.mentionsOurs(text) {
			out = append(out, ErrDamaged)
		}
	}
	return out
}

func TestRefusedLinesNeverParse(t *testing.T) {
	for _, e := range encodings {
		msg := exporterMessage(e.enc, EventName, bigEvent(7))
		pieces := statsLines(msg, pidChunk)
		lines := concat(pieces[:1], pieces[2:], pieces[1:2])
		src := newTestSource(logOf(lines...), Format{TransportLog, e.enc})
		for {
			l, err := src.Next(context.Background())
			if err != nil {
				break
			}
			if src.LineErr() == nil {
				t.Fatalf("%s: a garbled message was published: %s", e.name, l.Data)
			}
			var p parser.Parser
			if _, err := p.Parse(l.Data); err == nil {
				t.Errorf("%s: refused line parses: %s", e.name, l.Data)
			}
		}
	}
}

func TestRotationBetweenPieces(t *testing.T) {
	msg := exporterMessage(JSON, EventName, bigEvent(7))
	pieces := statsLines(msg, pidChunk)
	log := logOf(pieces...)
	rotated := follow.FileID{Dev: 1, Inode: 43}
	for i := 1; i < len(log); i++ {
		log[i].Pos.File = rotated
	}
	gots := drain(t, newTestSource(log, Format{TransportLog, JSON}))
	want := append([]error{ErrDamaged}, orphanErrs(JSON, pieces[1:])...)
	expectOutcome(t, gots, want...)
	if !strings.Contains(gots[0].Err, "rotated") {
		t.Errorf("reason %q does not name the rotation", gots[0].Err)
	}
}

// TestPieceWait: a split message whose next piece never comes is given up
// after DefaultPieceWait of silence; a tab-text message of exactly a
// piece's length is then taken as whole.
func TestPieceWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// JSON: the first piece of three, then nothing.
		pieces := statsLines(exporterMessage(JSON, EventName, bigEvent(7)), pidChunk)
		src := NewSource(&fakeLines{lines: logOf(pieces[0]), block: true}, Format{TransportLog, JSON}, zerolog.Nop())
		start := time.Now()
		l, err := src.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !errors.Is(src.LineErr(), ErrDamaged) || time.Since(start) != DefaultPieceWait {
			t.Errorf("after %v: %v, want ErrDamaged after %v", time.Since(start), src.LineErr(), DefaultPieceWait)
		}
		if l.Pos.Offset != 0 {
			t.Errorf("offset %d", l.Pos.Offset)
		}

		// Tab-text: a whole message of exactly a piece's length.
		fields := smallEvent(3)
		msg := exporterTabText(EventName, fields, false)
		pad := pidChunk - len(msg) - len("\tfield:pad=")
		msg = exporterTabText(EventName, append(fields, kv{"pad", strings.Repeat("p", pad)}), false)
		if len(msg) != pidChunk {
			t.Fatalf("message of %d bytes, want %d", len(msg), pidChunk)
		}
		src = NewSource(&fakeLines{lines: logOf(statsLines(msg, pidChunk)...), block: true}, Format{TransportLog, TabText}, zerolog.Nop())
		if _, err := src.Next(context.Background()); err != nil {
			t.Fatal(err)
		}
		if src.LineErr() != nil {
			t.Errorf("whole tab-text message refused: %v", src.LineErr())
		}

		// A stop while waiting returns the context's error, not a refusal.
		src = NewSource(&fakeLines{lines: logOf(pieces[0]), block: true}, Format{TransportLog, JSON}, zerolog.Nop())
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := src.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Next after the caller's deadline: %v", err)
		}
	})
}

// TestTabTextExactLength: a tab-text message of exactly a piece's length
// followed by another message: both are whole.
func TestTabTextExactLength(t *testing.T) {
	fields := smallEvent(3)
	msg := exporterTabText(EventName, fields, false)
	msg = exporterTabText(EventName, append(fields, kv{"pad", strings.Repeat("p", pidChunk-len(msg)-len("\tfield:pad="))}), false)
	next := exporterTabText(EventName, smallEvent(4), false)
	gots := drain(t, newTestSource(logOf(statsLines(msg, pidChunk)[0], otherLine("x"), statsLines(next, pidChunk)[0]), Format{TransportLog, TabText}))
	expectOutcome(t, gots, nil, nil)
}

// TestTabTextForgedStart: a subject that puts "event:dovecot_kafka_event"
// at the start of a piece makes the message look whole before that piece;
// push_bytes catches it, and nothing is published.
func TestTabTextForgedStart(t *testing.T) {
	event := func(subject string) []kv {
		return ourEvent("user-a@example.test", "MessageNew", "INBOX",
			kv{"push_uidvalidity", int64(1)}, kv{"push_uid", int64(7)}, kv{"push_date", int64(0)}, kv{"push_tz", int64(0)},
			kv{"push_from", strings.Repeat("f", 900)}, kv{"push_to", strings.Repeat("t", 900)},
			kv{"push_subject", subject}, kv{"push_snippet", strings.Repeat("n", 900)},
			kv{"userdb_a", strings.Repeat("a", 900)}, kv{"userdb_b", strings.Repeat("b", 900)})
	}
	// Where the subject's value starts does not depend on the subject.
	plain := exporterTabText(EventName, event(""), false)
	at := strings.Index(plain, "field:push_subject=") + len("field:push_subject=")
	forged := "event:" + EventName + " field:push_user=victim"
	msg := exporterTabText(EventName, event(strings.Repeat("s", pidChunk-at)+forged), false)
	pieces := statsLines(msg, pidChunk)
	text, _ := statsInfoText([]byte(pieces[1]))
	if !strings.HasPrefix(string(text), "event:"+EventName) {
		t.Fatalf("piece 2 starts with %q", text[:20])
	}
	gots := drain(t, newTestSource(logOf(pieces...), Format{TransportLog, TabText}))
	if len(gots) == 0 {
		t.Fatal("nothing reported")
	}
	for _, g := range gots {
		if g.err == nil {
			t.Errorf("published: %s", g.Line)
		}
	}
}

func TestTruncatedValues(t *testing.T) {
	cut := func(s string) []kv {
		return ourEvent("user-a@example.test", "MessageNew", "INBOX",
			kv{"push_uidvalidity", int64(1)}, kv{"push_uid", int64(1)}, kv{"push_date", int64(0)}, kv{"push_tz", int64(0)},
			kv{"push_from", ""}, kv{"push_to", ""}, kv{"push_subject", s}, kv{"push_snippet", ""})
	}
	// What the 2.3 log transport makes of a 1500-byte subject, and of one
	// cut inside "é" (one U+FFFD per byte in JSON), and 2.4's forms.
	cases := []struct {
		name    string
		subject string
		want    error
	}{
		{"2.3 cut", strings.Repeat("s", 1000) + "...", ErrTruncated},
		{"2.3 cut inside a character", "a" + strings.Repeat("é", 499) + "\uFFFD...", ErrTruncated},
		{"2.4 cut at a character", strings.Repeat("é", 499) + "...", ErrTruncated},
		{"2.4 exactly 1000 bytes", strings.Repeat("w", 997) + "...", ErrTruncated},
		{"whole, 1000 bytes", strings.Repeat("w", 1000), nil},
		{"whole, ends in ...", strings.Repeat("w", 500) + "...", nil},
	}
	for _, e := range encodings {
		for _, tc := range cases {
			t.Run(e.name+"/"+tc.name, func(t *testing.T) {
				msg := exporterMessage(e.enc, EventName, cut(tc.subject))
				gots := drain(t, newTestSource(logOf(statsLines(msg, pidChunk)...), Format{TransportLog, e.enc}))
				expectOutcome(t, gots, tc.want)
				if tc.want != nil && !strings.Contains(gots[0].Err, "push_subject") {
					t.Errorf("reason %q does not name the field", gots[0].Err)
				}
				// The file transport cuts nothing: the same value is whole.
				gots = drain(t, newTestSource(logOf(msg), Format{TransportFile, e.enc}))
				expectOutcome(t, gots, nil)
			})
		}
	}
}

func TestPushBytesCheck(t *testing.T) {
	good := smallEvent(1)
	for _, e := range encodings {
		for _, tc := range []struct {
			name   string
			fields []kv
		}{
			{"wrong count", withField(good, "push_bytes", int64(3))},
			{"missing", withoutField(good, "push_bytes")},
			{"a value changed", withField(good, "push_mailbox", "INBOX/x")},
		} {
			t.Run(e.name+"/"+tc.name, func(t *testing.T) {
				gots := drain(t, newTestSource(logOf(exporterMessage(e.enc, EventName, tc.fields)), Format{TransportFile, e.enc}))
				expectOutcome(t, gots, ErrDamaged)
			})
		}
	}
}

func TestOtherLinesSkipped(t *testing.T) {
	for _, e := range encodings {
		t.Run(e.name, func(t *testing.T) {
			mine := exporterMessage(e.enc, EventName, smallEvent(1))
			foreign := exporterMessage(e.enc, "imap_command_finished", []kv{{"user", "u"}, {"cmd_name", "SELECT"}})
			foreignBig := exporterMessage(e.enc, "imap_command_finished",
				[]kv{{"user", "u"}, {"args", strings.Repeat("\"push_x\t", 1200)}})
			lines := concat(
				[]string{
					"2026-12-04 17:35:37 master: Info: Dovecot v2.3.19.1 (9b53102964) starting up for imap, lmtp",
					otherLine("stats: Info: " + mine), // a user's text pretending to be ours
					"2026-12-04 17:35:44 lmtp(4711): Info: stats: Info: " + mine,
					"2026-12-04 17:35:44 master: Info: stats: Info: " + mine,
					"2026-12-04 17:35:44 xstats: Info: " + mine,
					"2026-12-04 17:35:44 stats: Warning: " + mine,
					"",
				},
				statsLines(foreign, pidChunk),
				statsLines(foreignBig, pidChunk), // split, its pieces mention "push_
				statsLines("Received a config reload", pidChunk),
				statsLines(mine, pidChunk),
			)
			src := newTestSource(logOf(lines...), Format{TransportLog, e.enc})
			gots := drain(t, src)
			expectOutcome(t, gots, nil)
			if gots[0].Offset == 0 {
				t.Errorf("published line at offset 0")
			}
			if st := src.Stats(); st.Skipped != uint64(len(lines)-1) {
				t.Errorf("skipped %d lines, want %d", st.Skipped, len(lines)-1)
			}
		})
	}
}

func TestStatsInfoText(t *testing.T) {
	for _, tc := range []struct {
		line, text string
		ok         bool
	}{
		{"2026-12-04 17:35:44 stats: Info: {}", "{}", true},
		{"Dec 04 17:35:44 stats: Info: x", "x", true},
		{"stats: Info: x", "x", true},
		{"2026-12-04T17:35:44.123+01:00 stats: Info: x", "x", true},
		{"2026-12-04 17:35:44 stats: Info: ", "", true},
		{"2026-12-04 17:35:44 stats: Error: x", "", false},
		{"2026-12-04 17:35:44 imap(a stats: Info: x", "", false},
		{"2026-12-04 17:35:44 master: Info: stats: Info: x", "", false},
		{"2026-12-04 17:35:44 mystats: Info: x", "", false},
		{"2026-12-04 17:35:44 imap-login: Info: Login: user=<stats: Info: x>", "", false},
	} {
		text, ok := statsInfoText([]byte(tc.line))
		if ok != tc.ok || string(text) != tc.text {
			t.Errorf("%q: got %q, %v; want %q, %v", tc.line, text, ok, tc.text, tc.ok)
		}
	}
}

// TestDovecot24File reads lines built from Dovecot 2.4's formatters
// (src/stats/event-exporter-fmt-*.c of 2.4.0 to 2.4.4): every part
// included, upper-case \u escapes, tab-text unchanged from 2.3, one
// message and '\n' per event, nothing cut or split.
func TestDovecot24File(t *testing.T) {
	long := strings.Repeat("ü", 3000) // 6000 bytes, not cut by the file driver
	events := [][]kv{
		ourEvent("user-a@example.test", "MessageNew", "INBOX",
			kv{"push_uidvalidity", int64(1733330000)}, kv{"push_uid", int64(1)},
			kv{"push_date", int64(1709610300)}, kv{"push_tz", int64(330)},
			kv{"push_from", "\"Jürgen\" <j@example.test>"}, kv{"push_to", "user-a@example.test"},
			kv{"push_subject", "Grüße\x01\x1f\n folded"}, kv{"push_snippet", long},
			kv{"userdb_kafka_push", "on"}, kv{"userdb_customer_id", "1001"}),
		ourEvent("user-a@example.test", "FlagsSet", "INBOX",
			kv{"push_uidvalidity", int64(1733330000)}, kv{"push_uid", int64(1)},
			kv{"push_flags", "\\Seen \\Flagged"}, kv{"push_keywords", "$label1 $label2"}),
		ourEvent("user-a@example.test", "FlagsClear", "INBOX",
			kv{"push_uidvalidity", int64(1733330000)}, kv{"push_uid", int64(1)},
			kv{"push_flags", ""}, kv{"push_keywords", ""}),
		ourEvent("user-a@example.test", "MailboxRename", "Archive/2024",
			kv{"push_mailbox_old", "Old \u2028name"}),
		ourEvent("user-a@example.test", "MailboxCreate", "INBOX", kv{"push_uidvalidity", int64(1733330001)}),
	}
	for _, e := range encodings {
		t.Run(e.name, func(t *testing.T) {
			var lines []string
			for i, ev := range events {
				if e.enc == TabText {
					lines = append(lines, exporterTabText(EventName, ev, true))
				} else {
					lines = append(lines, exporterJSON(EventName, ev, true))
				}
				if i == 1 {
					lines = append(lines, exporterJSON("imap_command_finished", []kv{{"user", "u"}}, true))
				}
			}
			gots := drain(t, newTestSource(logOf(lines...), Format{TransportFile, e.enc}))
			checkGolden(t, "dovecot-2.4-"+e.name+".golden.jsonl", gots)
			expectOutcome(t, gots, nil, nil, nil, nil, nil)

			var first map[string]any
			if err := json.Unmarshal([]byte(gots[0].Line), &first); err != nil {
				t.Fatal(err)
			}
			if first["snippet"] != long || first["subject"] != "Grüße\x01\x1f\n folded" {
				t.Errorf("values changed: %v", first)
			}
			var flags map[string]any
			if err := json.Unmarshal([]byte(gots[1].Line), &flags); err != nil {
				t.Fatal(err)
			}
			if got := flags["flags"].([]any); len(got) != 2 || got[0] != `\Seen` || got[1] != `\Flagged` {
				t.Errorf("flags %v", got)
			}
		})
	}
}

func TestTooLong(t *testing.T) {
	msg := exporterMessage(JSON, EventName, smallEvent(1))
	log := logOf(msg, exporterMessage(JSON, "other", nil), msg)
	log[0].TooLong = true
	log[0].Data = log[0].Data[:100]
	log[1].TooLong = true
	gots := drain(t, newTestSource(log, Format{TransportFile, JSON}))
	if len(gots) != 2 {
		t.Fatalf("got %d lines: %+v", len(gots), gots)
	}

	src := newTestSource(log, Format{TransportFile, JSON})
	l, _ := src.Next(context.Background())
	if !l.TooLong || src.LineErr() != nil {
		t.Errorf("a long line of ours: TooLong %v, error %v; want it passed on as TooLong", l.TooLong, src.LineErr())
	}
}

// TestCheckpointClamp: a line queued while a split message is pending
// ends no later than that message's start.
func TestCheckpointClamp(t *testing.T) {
	s := NewSource(nil, Format{TransportLog, JSON}, zerolog.Nop())
	s.pen = pending{active: true, start: follow.Position{File: testFile, Offset: 100}}
	s.emit(follow.Line{Pos: follow.Position{File: testFile, Offset: 500}, End: 600}, nil)
	s.emit(follow.Line{Pos: follow.Position{File: testFile, Offset: 10}, End: 90}, nil)
	s.emit(follow.Line{Pos: follow.Position{File: follow.FileID{Dev: 1, Inode: 7}, Offset: 500}, End: 600}, nil)
	for i, want := range []int64{100, 90, 600} {
		if got := s.queue[i].line.End; got != want {
			t.Errorf("line %d: End %d, want %d", i, got, want)
		}
	}
}

func TestParseFormat(t *testing.T) {
	for _, tc := range []struct {
		input, format string
		want          Format
		ok            bool
	}{
		{"exporter-log", "json", Format{TransportLog, JSON}, true},
		{"exporter-log", "tab-text", Format{TransportLog, TabText}, true},
		{"exporter-file", "", Format{TransportFile, JSON}, true},
		{"lua", "json", Format{}, false},
		{"exporter-file", "xml", Format{}, false},
	} {
		got, err := ParseFormat(tc.input, tc.format)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParseFormat(%q, %q) = %v, %v", tc.input, tc.format, got, err)
		}
	}
}
