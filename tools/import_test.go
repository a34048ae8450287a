package tools

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"dovecot-kafka/config"
	"dovecot-kafka/parser"
)

func importCmd(t testing.TB, stdin string, args ...string) result {
	t.Helper()
	return runCmd(t, func(io IO) int {
		io.In = strings.NewReader(stdin)
		return Import(args, io)
	})
}

// The Dovecot configuration the old driver's golden outputs were captured
// with (a copy of golden/seed-plugin/config/dovecot.conf) imports to the
// three drivers of examples/dovecot-kafka.toml, which render every example
// event the same.
func TestImportSeedConfig(t *testing.T) {
	out := filepath.Join(t.TempDir(), "imported.toml")
	r := importCmd(t, "", "-o", out, "testdata/seed-dovecot.conf")
	if r.code != ExitOK {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.errOut)
	}
	if r.errOut != "import: wrote "+out+" with 3 driver(s); check it with: dovecot-kafka check -config "+out+"\n" {
		t.Errorf("unexpected diagnostics:\n%s", r.errOut)
	}
	got, err := config.Load(out)
	if err != nil {
		t.Fatalf("the imported configuration does not load: %v", err)
	}
	want, err := config.Load("../examples/dovecot-kafka.toml")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.MappingDrivers(), want.MappingDrivers()) {
		t.Errorf("drivers differ:\n got %+v\nwant %+v", got.Drivers, want.Drivers)
	}
	if got.Kafka.Brokers != "127.0.0.1:19092" {
		t.Errorf("brokers = %q", got.Kafka.Brokers)
	}

	// Rendered the same, event by event, driver by driver.
	var p parser.Parser
	gd, wd := got.MappingDrivers(), want.MappingDrivers()
	records := 0
	for _, l := range exampleLines(t) {
		ev, err := p.Parse([]byte(strings.TrimSuffix(l, "\n")))
		if err != nil {
			t.Fatal(err)
		}
		for i := range wd {
			a, okA := gd[i].AppendValue(nil, ev)
			b, okB := wd[i].AppendValue(nil, ev)
			if okA != okB || string(a) != string(b) || gd[i].Topic != wd[i].Topic {
				t.Fatalf("driver %d renders %s differently:\n got %v %s\nwant %v %s", i, ev.Kind, okA, a, okB, b)
			}
			if okA {
				records++
			}
		}
	}
	if records == 0 {
		t.Fatal("no records rendered")
	}

	data, _ := os.ReadFile(out)
	for _, s := range []string{
		"push_events_userdb_fields = kafka_push,customer_id,plan",
		"events_file below is a placeholder",
		"# push_notification_driver2 = kafka:topic=flags events=",
		"drop push_notification_kafka from",
	} {
		if !strings.Contains(string(data), s) {
			t.Errorf("output lacks %q", s)
		}
	}

	// Not over an existing file.
	r = importCmd(t, "", "-o", out, "testdata/seed-dovecot.conf")
	if r.code != ExitUsage || !strings.Contains(r.errOut, "the file exists") {
		t.Errorf("existing -o: exit %d, stderr:\n%s", r.code, r.errOut)
	}
}

// doveconf -n style input on standard input, with what must be reported.
func TestImportReportsWhatItSkips(t *testing.T) {
	conf := `# 2.3.19.1 (9b53102964): /etc/dovecot/dovecot.conf
!include_try /etc/dovecot/local.conf
mail_plugins = " notify push_notification push_notification_kafka"
namespace inbox {
  inbox = yes
}
plugin {
  kafka.notification.kafka_brokers = "k1:9092,k2:9092" # the cluster
  kafka.notification.kafka_debug =
  kafka.notification.kafka_flush_time_in_ms = 2000
  kafka.notification.kafka_destroy_time_in_ms = soon
  kafka.notification.kafka_max_retries = 3
  kafka.notification.settings.security.protocol = ssl
  kafka.notification.settings.ssl.key.password=PLAINTEXT pwd
  kafka.notification.settings.linger.ms = 50
  kafka.notification.kafka_colour = blue
  push_notification_driver = kafka:topic=mail events=MessageNew,MessageBogus send_flags=maybe priority=high
  push_notification_driver2 = ox:url=http://ox.example.test/push
  push_notification_driver3 = kafka:topic=mail keyword_prefix= userdb=plan feature=push
  push_notification_driver5 = kafka:topic=never
  push_events_path = /var/spool/dk/events.jsonl
  push_events_userdb_fields = push
}
`
	r := importCmd(t, conf, "-")
	if r.code != ExitOK {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.errOut)
	}
	for _, s := range []string{
		"line 2: !include_try /etc/dovecot/local.conf is not followed",
		"kafka_destroy_time_in_ms = \"soon\" is not a number",
		"unknown setting kafka.notification.kafka_colour",
		`unknown event "MessageBogus"`,
		"send_flags=maybe is neither on nor off",
		`unknown kafka option "priority=high"`,
		"push_notification_driver2 = ox:url=http://ox.example.test/push is not a kafka driver",
		"push_notification_driver5 is ignored by Dovecot, which stops at the first missing number (push_notification_driver4)",
	} {
		if !strings.Contains(r.errOut, s) {
			t.Errorf("stderr lacks %q", s)
		}
	}
	if strings.Contains(r.out, "PLAINTEXT pwd\n") || !strings.Contains(r.out, `"ssl.key.password" = "PLAINTEXT pwd"`) {
		t.Errorf("the secret must be in the setting and not in the comment:\n%s", r.out)
	}

	path := filepath.Join(t.TempDir(), "imported.toml")
	os.WriteFile(path, []byte(r.out), 0o644)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("does not load: %v\n%s", err, r.out)
	}
	if cfg.EventsFile != "/var/spool/dk/events.jsonl" || cfg.Kafka.Brokers != "k1:9092,k2:9092" || cfg.Kafka.FlushTimeInMs != 2000 ||
		cfg.Kafka.DestroyTimeInMs != 1000 || cfg.Kafka.MaxRetries != 3 || cfg.Kafka.Settings["security.protocol"] != "ssl" ||
		cfg.Kafka.Settings["linger.ms"] != "50" {
		t.Errorf("settings: %+v", cfg)
	}
	ds := cfg.MappingDrivers()
	if len(ds) != 2 || ds[0].Name != "mail-1" || ds[1].Name != "mail-3" || ds[0].Topic != "mail" || !ds[0].SendFlags ||
		ds[1].KeywordPrefix != "" || ds[1].Feature != "push" || !reflect.DeepEqual(ds[1].Userdb, []string{"plan"}) {
		t.Errorf("drivers: %+v", cfg.Drivers)
	}
	if !strings.Contains(r.out, "push_events_userdb_fields = push,plan") || !strings.Contains(r.out, "without plan") {
		t.Errorf("no note about the missing userdb field:\n%s", r.out)
	}
}

func TestImportNothing(t *testing.T) {
	r := importCmd(t, "protocols = imap\nplugin {\n  quota = maildir\n}\n")
	if r.code != ExitFailed || !strings.Contains(r.errOut, "nothing to import") {
		t.Errorf("exit %d, stderr:\n%s", r.code, r.errOut)
	}
	r = importCmd(t, "", "/nonexistent/dovecot.conf")
	if r.code != ExitUsage || !strings.Contains(r.errOut, "no such file") {
		t.Errorf("missing file: exit %d, stderr:\n%s", r.code, r.errOut)
	}
}

func TestDovecotConfSyntax(t *testing.T) {
	conf := "plugin {\n" +
		"  a = \"quoted # not a comment\" # a comment\n" +
		"  b = one \\\n    two\n" +
		"  c = <\"/etc/secret\"\n" +
		"}\n" +
		"service x {\n  plugin = no\n}\n"
	var warnings []string
	got, err := parseDovecotConf(strings.NewReader(conf), func(f string, a ...any) {
		warnings = append(warnings, f)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].value != "quoted # not a comment" || got[1].value != "one     two" {
		t.Errorf("settings = %+v", got)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "reads its value from the file") {
		t.Errorf("warnings = %q", warnings)
	}
}
