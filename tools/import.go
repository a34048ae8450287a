package tools

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"dovecot-kafka/config"
	"dovecot-kafka/parser"
	"dovecot-kafka/sink"
)

const importSynopsis = `
Usage: dovecot-kafka import [-o FILE] [DOVECOT_CONF | -]

Reads the settings of the old push_notification_kafka driver from a Dovecot
2.3 configuration file, or from the output of "doveconf -n" ("-" or no
argument: standard input), and writes the equivalent configuration of this
daemon in TOML to standard output or FILE:

  push_notification_driver, push_notification_driver2, ...
      kafka:topic= events= keyword_prefix= send_flags= feature= userdb=
                                        one [[driver]] each, in order
  kafka.notification.kafka_brokers, kafka_debug, kafka_flush_time_in_ms,
  kafka_destroy_time_in_ms, kafka_max_retries, kafka_retry_poll_time_in_ms
                                        [kafka]
  kafka.notification.settings.*         [kafka.settings]

Only plugin { } blocks are read. !include lines are not followed: import the
output of "doveconf -n" to include them. Unknown options and settings are
reported on standard error. The result is checked with the daemon's own
configuration loader before it is written. events_file is a placeholder
unless push_events_path is set; comments at the top say what to check next.

Example:
  doveconf -n | dovecot-kafka import -o /etc/dovecot-kafka/dovecot-kafka.toml
`

// Import runs the import command with args (the words after "import").
func Import(args []string, stdio IO) int {
	c := newCommand("import", stdio, importSynopsis)
	outPath := c.fs.String("o", "", "write the TOML to this `file` (it must not exist yet) instead of standard output")
	words, status, ok := c.parse(args)
	if !ok {
		return status
	}
	if len(words) > 1 {
		return c.usageError("give one Dovecot configuration file (or - for standard input), got %d", len(words))
	}
	source := "-"
	if len(words) == 1 {
		source = words[0]
	}

	in := stdio.In
	name := "standard input"
	if source == "-" {
		if isTerminal(stdio.In) {
			return c.usageError("give a Dovecot configuration file, or pipe `doveconf -n` into it")
		}
	} else {
		f, err := os.Open(source)
		if err != nil {
			return c.usageError("%v", err)
		}
		defer f.Close()
		in, name = f, source
	}
	if *outPath != "" {
		if _, err := os.Lstat(*outPath); err == nil {
			return c.usageError("-o %s: the file exists; remove it or choose another name", *outPath)
		}
	}

	warn := func(format string, args ...any) { c.notef("%s: %s", name, fmt.Sprintf(format, args...)) }
	settings, err := parseDovecotConf(in, warn)
	if err != nil {
		return c.errorf("read %s: %v", name, err)
	}
	imp := importSettings(settings, warn)
	if len(imp.drivers) == 0 {
		return c.errorf("%s has no push_notification_driver line with a kafka: URL in a plugin { } block; nothing to import", name)
	}
	out := imp.render(filepath.Base(name))

	// The result must load as the daemon would load it.
	if err := checkImported(out, len(imp.drivers)); err != nil {
		return c.errorf("the generated configuration does not load (%v); this is a bug, please report it with the input", err)
	}

	if *outPath == "" {
		if _, err := stdio.Out.Write(out); err != nil {
			return c.errorf("write: %v", err)
		}
		return ExitOK
	}
	if err := writeNew(*outPath, out); err != nil {
		return c.errorf("-o %s: %v", *outPath, err)
	}
	c.notef("wrote %s with %d driver(s); check it with: dovecot-kafka check -config %s", *outPath, len(imp.drivers), *outPath)
	return ExitOK
}

// imported is what import found.
type imported struct {
	eventsFile   string   // push_events_path, if the configuration has it
	userdbFields []string // push_events_userdb_fields, if set
	kafka        []tomlLine
	settings     []tomlLine
	drivers      []importedDriver
}

// tomlLine is one key of the output with the old line it came from.
type tomlLine struct {
	comment string // the old setting
	key     string // TOML key, quoted if needed
	value   string // TOML value; "" writes the line commented out
	note    string // an extra comment line
}

type importedDriver struct {
	number  int    // 1 for push_notification_driver, 2 for ...driver2, ...
	source  string // the old line: setting = value
	lines   []tomlLine
	feature string   // feature=, a userdb field
	userdb  []string // userdb=, userdb fields
}

const (
	driverSetting    = "push_notification_driver"
	oldDriverSetting = "push_notification_backend" // Dovecot's older name, read when the new one is absent
	kafkaPrefix      = "kafka.notification."
)

// importSettings turns the plugin settings into the daemon's keys.
func importSettings(settings []doveSetting, warn func(string, ...any)) *imported {
	imp := &imported{}
	last := map[string]doveSetting{} // Dovecot: the last definition wins
	for _, s := range settings {
		if prev, ok := last[s.key]; ok && prev.value != s.value {
			warn("%s is set twice (%s and %s); the last one counts", s.key, prev.where(), s.where())
		}
		last[s.key] = s
		if s.section != "plugin" {
			warn("%s: %s is in section %q, where it applies only there; imported anyway", s.where(), s.key, s.section)
		}
	}

	imp.importKafka(settings, last, warn)
	imp.importDrivers(last, warn)
	if s, ok := last["push_events_path"]; ok && s.value != "" {
		imp.eventsFile = s.value
	}
	if s, ok := last["push_events_userdb_fields"]; ok {
		imp.userdbFields = splitList(s.value)
	}
	return imp
}

func (imp *imported) importKafka(settings []doveSetting, last map[string]doveSetting, warn func(string, ...any)) {
	plain := []struct{ old, key string }{
		{"kafka_brokers", "brokers"},
		{"kafka_debug", "debug"},
	}
	for _, p := range plain {
		if s, ok := last[kafkaPrefix+p.old]; ok {
			imp.kafka = append(imp.kafka, tomlLine{comment: s.key + " = " + s.value, key: p.key, value: tomlString(s.value)})
		}
	}
	if _, ok := last[kafkaPrefix+"kafka_brokers"]; !ok {
		imp.kafka = append([]tomlLine{{comment: "kafka.notification.kafka_brokers is not set: the old driver's default", key: "brokers", value: tomlString("localhost:9092")}}, imp.kafka...)
	}
	ints := []struct{ old, key, note string }{
		{"kafka_flush_time_in_ms", "flush_time_in_ms", ""},
		{"kafka_destroy_time_in_ms", "destroy_time_in_ms", ""},
		{"kafka_max_retries", "max_retries", "accepted and ignored: the daemon never drops a record when its queue is full, it waits"},
		{"kafka_retry_poll_time_in_ms", "retry_poll_time_in_ms", "accepted and ignored, like max_retries"},
	}
	for _, p := range ints {
		s, ok := last[kafkaPrefix+p.old]
		if !ok {
			continue
		}
		l := tomlLine{comment: s.key + " = " + s.value, key: p.key, note: p.note}
		if n, err := strconv.Atoi(s.value); err == nil && n >= 0 {
			l.value = strconv.Itoa(n)
		} else if s.value != "" {
			warn("%s: %s = %q is not a number of milliseconds or retries; left out (the daemon's default applies)", s.where(), s.key, s.value)
		}
		imp.kafka = append(imp.kafka, l)
	}

	known := map[string]bool{}
	for _, p := range plain {
		known[kafkaPrefix+p.old] = true
	}
	for _, p := range ints {
		known[kafkaPrefix+p.old] = true
	}
	defaults := sink.ConfigMap(sink.Config{}, false)
	seen := map[string]bool{}
	for _, s := range settings {
		if !strings.HasPrefix(s.key, kafkaPrefix) || known[s.key] || seen[s.key] {
			continue
		}
		seen[s.key] = true
		s = last[s.key]
		prop, ok := strings.CutPrefix(s.key, kafkaPrefix+"settings.")
		if !ok || prop == "" {
			warn("%s: unknown setting %s; not imported (the old driver knew only kafka_brokers, kafka_debug, kafka_flush_time_in_ms, kafka_destroy_time_in_ms, kafka_max_retries, kafka_retry_poll_time_in_ms and settings.*)", s.where(), s.key)
			continue
		}
		l := tomlLine{comment: s.key + " = " + redactValue(prop, s.value), key: tomlKey(prop), value: tomlString(s.value)}
		if def, ok := defaults[prop]; ok && def != s.value {
			l.note = fmt.Sprintf("overrides the daemon's default %s=%s", prop, def)
		}
		imp.settings = append(imp.settings, l)
	}
}

// redactValue hides secrets in the comments that repeat the old lines.
func redactValue(prop, value string) string {
	return sink.ConfigMap(sink.Config{Settings: map[string]string{prop: value}}, true)[prop]
}

// importDrivers reads push_notification_driver, ...driver2, ... as
// Dovecot does: numbering starts at 2 and stops at the first one missing
// or empty.
func (imp *imported) importDrivers(last map[string]doveSetting, warn func(string, ...any)) {
	base := driverSetting
	if _, ok := last[base]; !ok {
		if _, ok := last[oldDriverSetting]; ok {
			base = oldDriverSetting
		}
	}
	stop := 0
	for i := 1; ; i++ {
		name := base
		if i > 1 {
			name += strconv.Itoa(i)
		}
		s, ok := last[name]
		if !ok || s.value == "" {
			stop = i
			break
		}
		driver, args, _ := strings.Cut(s.value, ":")
		if !strings.EqualFold(driver, "kafka") {
			warn("%s: %s = %s is not a kafka driver; not imported", s.where(), s.key, s.value)
			continue
		}
		d := importDriver(s, args, warn)
		d.number = i
		imp.drivers = append(imp.drivers, d)
	}

	// Dovecot never reads numbered drivers after a gap.
	keys := make([]string, 0, len(last))
	for key := range last {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	for _, key := range keys {
		s := last[key]
		rest, ok := strings.CutPrefix(key, base)
		if n, err := strconv.Atoi(rest); ok && err == nil && n > stop {
			warn("%s: %s is ignored by Dovecot, which stops at the first missing number (%s%d); not imported", s.where(), key, base, stop)
		}
	}
	// The names must be unique; a driver's name defaults to its topic.
	topics := map[string]int{}
	for _, d := range imp.drivers {
		topics[driverTopic(d)]++
	}
	for i := range imp.drivers {
		d := &imp.drivers[i]
		if t := driverTopic(*d); topics[t] > 1 {
			d.lines = append([]tomlLine{{comment: "several old drivers publish to this topic; each needs its own name", key: "name", value: tomlString(fmt.Sprintf("%s-%d", t, d.number))}}, d.lines...)
		}
	}
}

func driverTopic(d importedDriver) string {
	for _, l := range d.lines {
		if l.key == "topic" {
			s, _ := strconv.Unquote(l.value)
			return s
		}
	}
	return "dovecot"
}

// importDriver turns the options of one kafka: URL into [[driver]] keys.
// Dovecot splits them at spaces into name=value pairs.
func importDriver(s doveSetting, args string, warn func(string, ...any)) importedDriver {
	d := importedDriver{source: s.key + " = " + s.value}
	for _, opt := range strings.Fields(args) {
		name, value, _ := strings.Cut(opt, "=")
		switch name {
		case "topic":
			if value == "" {
				warn("%s: %s: topic= is empty; the daemon's default topic \"dovecot\" applies", s.where(), s.key)
				continue
			}
			d.lines = append(d.lines, tomlLine{key: "topic", value: tomlString(value)})
		case "events":
			var events []string
			for _, e := range splitList(value) {
				if parser.KindByName(e) == parser.KindUnknown {
					warn("%s: %s: unknown event %q; left out", s.where(), s.key, e)
					continue
				}
				events = append(events, e)
			}
			if len(events) == 0 {
				warn("%s: %s: events= names no known event; all events are published", s.where(), s.key)
				continue
			}
			d.lines = append(d.lines, tomlLine{key: "events", value: tomlStrings(events)})
		case "keyword_prefix":
			d.lines = append(d.lines, tomlLine{key: "keyword_prefix", value: tomlString(value)})
		case "send_flags":
			switch strings.ToLower(value) {
			case "on", "yes", "true", "1":
				d.lines = append(d.lines, tomlLine{key: "send_flags", value: "true"})
			case "off", "no", "false", "0":
				d.lines = append(d.lines, tomlLine{key: "send_flags", value: "false"})
			default:
				warn("%s: %s: send_flags=%s is neither on nor off; left out (the default, on, applies)", s.where(), s.key, value)
			}
		case "feature":
			d.lines = append(d.lines, tomlLine{key: "feature", value: tomlString(value)})
			d.feature = value
		case "userdb":
			fields := splitList(value)
			d.lines = append(d.lines, tomlLine{key: "userdb", value: tomlStrings(fields)})
			d.userdb = fields
		default:
			warn("%s: %s: unknown kafka option %q; not imported", s.where(), s.key, opt)
		}
	}
	return d
}

// splitList splits a comma- or space-separated list.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
}

// render writes the TOML configuration.
func (imp *imported) render(source string) []byte {
	var b bytes.Buffer
	// The fields in the order the daemon lists them (config.UserdbFields).
	var fields []string
	for _, d := range imp.drivers {
		for _, f := range append([]string{d.feature}, d.userdb...) {
			if f != "" && !slices.Contains(fields, f) {
				fields = append(fields, f)
			}
		}
	}

	fmt.Fprintf(&b, "# dovecot-kafka configuration, imported by `dovecot-kafka import` from %s.\n", source)
	fmt.Fprintln(&b, "# The README's configuration reference explains every key.")
	fmt.Fprintln(&b, "#")
	fmt.Fprintln(&b, "# Check next:")
	if imp.eventsFile == "" {
		fmt.Fprintln(&b, "#  - events_file below is a placeholder: set it, and Dovecot's")
		fmt.Fprintln(&b, "#    push_events_path, to the file push-events.lua appends to.")
	} else {
		fmt.Fprintln(&b, "#  - events_file is Dovecot's push_events_path: keep the two equal.")
	}
	fmt.Fprintln(&b, "#  - In Dovecot, replace the old driver: drop push_notification_kafka from")
	fmt.Fprintln(&b, "#    mail_plugins and the kafka: push_notification_driver lines, and add")
	fmt.Fprintln(&b, "#    dovecot-conf/push-events-2.3.conf (push_notification_lua with")
	fmt.Fprintln(&b, "#    push-events.lua).")
	if len(fields) > 0 {
		fmt.Fprintln(&b, "#  - Dovecot must pass the userdb fields these drivers use:")
		fmt.Fprintf(&b, "#      push_events_userdb_fields = %s\n", strings.Join(fields, ","))
		if missing := missingFields(fields, imp.userdbFields); imp.userdbFields != nil && len(missing) > 0 {
			fmt.Fprintf(&b, "#    (the imported configuration lists %s, without %s)\n", strings.Join(imp.userdbFields, ","), strings.Join(missing, ","))
		}
	} else {
		fmt.Fprintln(&b, "#  - No driver uses feature= or userdb=: push_events_userdb_fields can stay empty.")
	}
	fmt.Fprintln(&b, "#  - checkpoint_file and dead_letter_file (defaults below) must be")
	fmt.Fprintln(&b, "#    writable by the user the daemon runs as.")
	fmt.Fprintln(&b, "#  - Then: dovecot-kafka check -config THIS_FILE")
	fmt.Fprintln(&b)

	eventsFile := imp.eventsFile
	if eventsFile == "" {
		eventsFile = "/var/spool/dovecot-kafka/events.jsonl"
		fmt.Fprintln(&b, "# Placeholder: the file push-events.lua appends to (Dovecot's push_events_path).")
	} else {
		fmt.Fprintln(&b, "# push_events_path from the Dovecot configuration.")
	}
	fmt.Fprintf(&b, "events_file = %s\n", tomlString(eventsFile))
	fmt.Fprintln(&b, "# checkpoint_file = \"/var/lib/dovecot-kafka/checkpoint.json\"")
	fmt.Fprintln(&b, "# dead_letter_file = \"/var/lib/dovecot-kafka/dead-letter.jsonl\"")

	fmt.Fprintln(&b, "\n[kafka]")
	writeLines(&b, imp.kafka)
	if len(imp.settings) > 0 {
		fmt.Fprintln(&b, "\n[kafka.settings]")
		writeLines(&b, imp.settings)
	}

	for _, d := range imp.drivers {
		fmt.Fprintf(&b, "\n# %s\n[[driver]]\n", d.source)
		writeLines(&b, d.lines)
	}
	return b.Bytes()
}

func writeLines(b *bytes.Buffer, lines []tomlLine) {
	for _, l := range lines {
		if l.comment != "" {
			fmt.Fprintf(b, "# %s\n", l.comment)
		}
		if l.note != "" {
			fmt.Fprintf(b, "# (%s)\n", l.note)
		}
		if l.value == "" {
			fmt.Fprintf(b, "# %s: left out, the daemon's default applies\n", l.key)
			continue
		}
		fmt.Fprintf(b, "%s = %s\n", l.key, l.value)
	}
}

// missingFields lists the fields of need that have does not list.
func missingFields(need, have []string) []string {
	var out []string
	for _, f := range need {
		if !slices.Contains(have, f) {
			out = append(out, f)
		}
	}
	return out
}

// checkImported loads the generated TOML with config.Load.
func checkImported(data []byte, drivers int) error {
	dir, err := os.MkdirTemp("", "dovecot-kafka-import")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "imported.toml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return err
	}
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	if len(cfg.Drivers) != drivers {
		return fmt.Errorf("%d drivers loaded, %d imported", len(cfg.Drivers), drivers)
	}
	return nil
}

// writeNew writes data to a new file at path, through a temporary file in
// the same directory, so that a half-written configuration never appears.
func writeNew(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Chmod(0o640); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	// Link, unlike rename, fails if path appeared meanwhile.
	if err := os.Link(tmp, path); err != nil {
		os.Remove(tmp)
		if errors.Is(err, fs.ErrExist) {
			return errors.New("the file exists; remove it or choose another name")
		}
		return err
	}
	return os.Remove(tmp)
}
