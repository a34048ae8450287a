package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"dovecot-kafka/mapping"
	"dovecot-kafka/parser"
)

func write(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestExampleConfigLoads(t *testing.T) {
	c, err := Load("../examples/dovecot-kafka.toml")
	if err != nil {
		t.Fatal(err)
	}
	ds := c.MappingDrivers()
	if len(ds) != 3 {
		t.Fatalf("%d drivers, want 3", len(ds))
	}
	flags := ds[1]
	if flags.Topic != "flags" || flags.KeywordPrefix != "$label" || flags.SendFlags || flags.Events.Has(parser.MessageNew) || !flags.Events.Has(parser.FlagsSet) {
		t.Errorf("flags driver: %+v", flags)
	}
	if got := c.UserdbFields(); !reflect.DeepEqual(got, []string{"kafka_push", "customer_id", "plan"}) {
		t.Errorf("UserdbFields = %v", got)
	}
}

func TestDefaults(t *testing.T) {
	c, err := Load(write(t, "events_file = \"/tmp/e.jsonl\"\n[[driver]]\n"))
	if err != nil {
		t.Fatal(err)
	}
	d := c.MappingDrivers()[0]
	want := mapping.Driver{Name: "dovecot", Topic: "dovecot", Events: mapping.AllEvents, KeywordPrefix: "$", SendFlags: true}
	if !reflect.DeepEqual(*d, want) {
		t.Errorf("driver defaults %+v, want %+v", *d, want)
	}
	if c.Kafka.Brokers != "localhost:9092" || c.DeadLetterFile != "/var/lib/dovecot-kafka/dead-letter.jsonl" {
		t.Errorf("defaults: %+v", c)
	}
}

func TestExactlyOnceDefaults(t *testing.T) {
	c, err := Load(write(t, "events_file = \"/e\"\n[exactly_once]\nenabled = true\ntransactional_id = \"host1\"\n[[driver]]\n"))
	if err != nil {
		t.Fatal(err)
	}
	eo := c.ExactlyOnce
	if eo.PositionTopic != "dovecot-kafka-positions" || eo.CommitMaxLines != 10000 || time.Duration(eo.CommitInterval) != 200*time.Millisecond {
		t.Errorf("defaults %+v", eo)
	}
}

func TestOldDriverSpellings(t *testing.T) {
	c, err := Load(write(t, `events_file = "/tmp/e.jsonl"
[[driver]]
topic = "flags"
events = "FlagsClear, FlagsSet"
send_flags = "off"
userdb = "customer_id,plan"
[kafka.settings]
"security.protocol" = "ssl"
`))
	if err != nil {
		t.Fatal(err)
	}
	d := c.MappingDrivers()[0]
	if d.SendFlags || !d.Events.Has(parser.FlagsClear) || d.Events.Has(parser.MessageNew) || !reflect.DeepEqual(d.Userdb, []string{"customer_id", "plan"}) {
		t.Errorf("driver %+v", d)
	}
	if c.Kafka.Settings["security.protocol"] != "ssl" {
		t.Errorf("settings %v", c.Kafka.Settings)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct{ name, text, want string }{
		{"unknown key", "events_file = \"/e\"\nevent_file = \"/x\"\n[[driver]]\n", "unknown keys event_file"},
		{"unknown driver key", "events_file = \"/e\"\n[[driver]]\ntopik = \"x\"\n", "driver.topik"},
		{"no events file", "[[driver]]\n", "events_file is required"},
		{"no driver", "events_file = \"/e\"\n", "no [[driver]]"},
		{"bad event", "events_file = \"/e\"\n[[driver]]\nevents = [\"MessageSent\"]\n", `unknown event "MessageSent"`},
		{"bad send_flags", "events_file = \"/e\"\n[[driver]]\nsend_flags = \"maybe\"\n", "maybe"},
		{"bad duration", "events_file = \"/e\"\ncheckpoint_interval = \"soon\"\n[[driver]]\n", "soon"},
		{"duplicate driver", "events_file = \"/e\"\n[[driver]]\n[[driver]]\n", "configured twice"},
		{"bad level", "events_file = \"/e\"\nlog_level = \"loud\"\n[[driver]]\n", "log_level"},
		{"bad topic", "events_file = \"/e\"\n[[driver]]\ntopic = \"bad topic!\"\n", "not a valid Kafka topic name"},
		{"exactly once without id", "events_file = \"/e\"\n[exactly_once]\nenabled = true\n[[driver]]\n", "transactional_id is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(write(t, tt.text))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}
