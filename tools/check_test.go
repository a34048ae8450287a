package tools

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"dovecot-kafka/config"
)

func check(t testing.TB, args ...string) result {
	t.Helper()
	return runCmd(t, func(io IO) int { return Check(context.Background(), args, io) })
}

func TestCheckBadConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.toml")
	os.WriteFile(path, []byte("events_file = \"/x\"\nbogus_key = 1\n[[driver]]\n"), 0o644)
	r := check(t, "-config", path)
	if r.code != ExitFailed || !strings.Contains(r.out, "PROBLEM  configuration:") || !strings.Contains(r.out, "bogus_key") || !strings.Contains(r.out, "1 problem(s)") {
		t.Errorf("exit %d, out:\n%s", r.code, r.out)
	}
	r = check(t, "-config", filepath.Join(dir, "missing.toml"))
	if r.code != ExitFailed || !strings.Contains(r.out, "no such file") {
		t.Errorf("missing config: exit %d, out:\n%s", r.code, r.out)
	}
	r = check(t, "-config", path, "-timeout", "0s")
	if r.code != ExitUsage {
		t.Errorf("-timeout 0s: exit %d", r.code)
	}
}

// A broker nobody listens on, and files that are missing: every problem is
// listed, and the settings are printed with secrets redacted.
func TestCheckProblems(t *testing.T) {
	e := newEnv(t, "127.0.0.1:1", testDrivers)
	cfg, _ := os.ReadFile(e.config)
	cfg = []byte(strings.Replace(string(cfg), "[kafka]\n", "[kafka]\nsettings = { \"sasl.password\" = \"hunter2\", \"linger.ms\" = \"20\" }\n", 1))
	os.WriteFile(e.config, cfg, 0o644)
	os.Remove(e.lib)

	r := check(t, "-config", e.config, "-timeout", "1s")
	if r.code != ExitFailed {
		t.Errorf("exit %d, want %d", r.code, ExitFailed)
	}
	for _, s := range []string{
		"note     events_file " + e.events + " does not exist yet",
		"PROBLEM  checkpoint directory " + e.lib,
		"PROBLEM  dead_letter_file directory " + e.lib,
		"PROBLEM  cannot reach Kafka at 127.0.0.1:1 within 1s",
		"Connection refused",
		"push_events_userdb_fields = kafka_push,customer_id,plan",
		`"sasl.password" = "[redacted]"`,
		"sasl.password=[redacted]",
		"linger.ms=20",
		"3 problem(s):",
	} {
		if !strings.Contains(r.out, s) {
			t.Errorf("output lacks %q", s)
		}
	}
	if strings.Contains(r.out+r.errOut, "hunter2") {
		t.Error("the secret was printed")
	}
	if t.Failed() {
		t.Logf("output:\n%s", r.out)
	}
}

// The effective settings are a configuration that loads to the same
// values, with the defaults written out.
func TestEffectiveSettingsLoad(t *testing.T) {
	for _, src := range []string{"../examples/dovecot-kafka.toml", newEnv(t, "k:9092", testDrivers).config} {
		cfg, err := config.Load(src)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		writeEffective(&b, cfg, "")
		path := filepath.Join(t.TempDir(), "effective.toml")
		os.WriteFile(path, []byte(b.String()), 0o644)
		again, err := config.Load(path)
		if err != nil {
			t.Fatalf("%s: effective settings do not load: %v\n%s", src, err, b.String())
		}
		if !reflect.DeepEqual(again.MappingDrivers(), cfg.MappingDrivers()) {
			t.Errorf("%s: drivers differ after a round trip", src)
		}
		again.Drivers, cfg.Drivers = nil, nil
		if len(again.Kafka.Settings) == 0 && len(cfg.Kafka.Settings) == 0 {
			again.Kafka.Settings, cfg.Kafka.Settings = nil, nil // an empty table loads as an empty map
		}
		if !reflect.DeepEqual(again, cfg) {
			t.Errorf("%s: settings differ after a round trip:\n got %+v\nwant %+v", src, again, cfg)
		}
		for _, s := range []string{`keyword_prefix = "$"`, "send_flags = true", `checkpoint_interval = "1s"`, "[[driver]]"} {
			if !strings.Contains(b.String(), s) {
				t.Errorf("%s: effective settings lack %q", src, s)
			}
		}
	}
}
