// Package config reads the daemon's TOML configuration file and checks it.
//
// Every key is documented in the README's configuration reference and in
// examples/dovecot-kafka.toml. Unknown keys are an error, so that a typo
// does not silently fall back to a default.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"dovecot-kafka/mapping"
	"dovecot-kafka/sink"
)

// Config is the whole configuration file.
type Config struct {
	// EventsFile is the file push-events.lua appends to; it must equal the
	// push_events_path plugin setting in Dovecot.
	EventsFile string `toml:"events_file"`

	// Input is what writes the events file: "lua" (push-events.lua, the
	// default), "exporter-log" (Dovecot 2.3's event exporter, log
	// transport: the stats process's log file) or "exporter-file" (Dovecot
	// 2.4's event exporter, file transport).
	Input string `toml:"input"`

	// ExporterFormat is the event exporter's format: "json" (default) or
	// "tab-text". Used only with the exporter inputs.
	ExporterFormat string `toml:"exporter_format"`

	// CheckpointFile is where the published position is saved (default
	// /var/lib/dovecot-kafka/checkpoint.json).
	CheckpointFile string `toml:"checkpoint_file"`

	// DeadLetterFile receives lines that cannot be published (bad input,
	// records Kafka rejects for good), one JSON object per line (default:
	// dead-letter.jsonl next to the checkpoint file).
	DeadLetterFile string `toml:"dead_letter_file"`

	// CheckpointInterval is how often the acknowledged position is saved
	// (default 1s).
	CheckpointInterval Duration `toml:"checkpoint_interval"`

	// MaxLineBytes is the longest line accepted; longer lines go to the
	// dead-letter file (default 1 MiB).
	MaxLineBytes int `toml:"max_line_bytes"`

	// MaxPendingLines bounds the lines read but not yet acknowledged by
	// Kafka; reading pauses at the bound (default 100000).
	MaxPendingLines int `toml:"max_pending_lines"`

	// MetricsListen is the host:port where /metrics answers in the
	// Prometheus format, e.g. "127.0.0.1:9187" (default: no metrics server).
	MetricsListen string `toml:"metrics_listen"`

	// LogLevel is debug, info, warn or error (default info).
	LogLevel string `toml:"log_level"`

	// LogFormat is json, console, or auto: console on a terminal, json
	// otherwise (default auto).
	LogFormat string `toml:"log_format"`

	Kafka       Kafka       `toml:"kafka"`
	ExactlyOnce ExactlyOnce `toml:"exactly_once"`
	Drivers     []Driver    `toml:"driver"`
}

// ExactlyOnce configures the opt-in exactly-once mode: records are produced
// in Kafka transactions that also store the file position in Kafka, so a
// consumer with isolation.level=read_committed sees every event once, even
// across a crash.
type ExactlyOnce struct {
	// Enabled turns the mode on (default false: at least once).
	Enabled bool `toml:"enabled"`

	// TransactionalID is librdkafka's transactional.id: unique per events
	// file, and stable across restarts (required when enabled).
	TransactionalID string `toml:"transactional_id"`

	// PositionTopic holds the positions, keyed by transactional_id, in
	// partition 0; make it a compacted topic (default
	// "dovecot-kafka-positions").
	PositionTopic string `toml:"position_topic"`

	// CommitInterval is the longest a transaction stays open (default
	// 200ms); it bounds the latency the mode adds.
	CommitInterval Duration `toml:"commit_interval"`

	// CommitMaxLines is the most lines in one transaction (default 10000).
	CommitMaxLines int `toml:"commit_max_lines"`
}

// Kafka holds the Kafka client settings, named after the old driver's
// kafka.notification.kafka_* settings without the prefix.
type Kafka struct {
	// Brokers is the bootstrap list (kafka_brokers; default localhost:9092).
	Brokers string `toml:"brokers"`

	// Debug is librdkafka's debug contexts (kafka_debug; default none).
	Debug string `toml:"debug"`

	// FlushTimeInMs is how long a shutdown waits for Kafka to acknowledge
	// what was sent (kafka_flush_time_in_ms; default 5000).
	FlushTimeInMs int `toml:"flush_time_in_ms"`

	// DestroyTimeInMs is accepted for compatibility with the old driver
	// (kafka_destroy_time_in_ms) and not used: after the flush, closing the
	// producer purges what is left and returns at once.
	DestroyTimeInMs int `toml:"destroy_time_in_ms"`

	// MaxRetries and RetryPollTimeInMs are accepted for compatibility with
	// the old driver and ignored: the daemon never drops a record because
	// the local queue is full, it waits.
	MaxRetries        int `toml:"max_retries"`
	RetryPollTimeInMs int `toml:"retry_poll_time_in_ms"`

	// ProvenanceHeaders adds Kafka headers to every record: host, file
	// (device:inode of the events file), offset (the line's byte offset)
	// and event_time (RFC 3339), for consumers that deduplicate. Off by
	// default, so that records stay exactly as the old driver's.
	ProvenanceHeaders bool `toml:"provenance_headers"`

	// Settings are librdkafka properties passed through verbatim
	// (kafka.notification.settings.*).
	Settings map[string]string `toml:"settings"`
}

// Driver is one output, like one push_notification_driver line.
type Driver struct {
	Name          string     `toml:"name"`
	Topic         string     `toml:"topic"`
	Events        StringList `toml:"events"`
	KeywordPrefix *string    `toml:"keyword_prefix"`
	SendFlags     *OnOff     `toml:"send_flags"`
	Feature       string     `toml:"feature"`
	Userdb        StringList `toml:"userdb"`
}

// Load reads and checks the file at path.
func Load(path string) (*Config, error) {
	var c Config
	md, err := toml.DecodeFile(path, &c)
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		keys := make([]string, len(undecoded))
		for i, k := range undecoded {
			keys[i] = k.String()
		}
		// Settings are free-form librdkafka properties.
		keys = filterSettings(keys)
		if len(keys) > 0 {
			return nil, fmt.Errorf("config %s: unknown keys %s (see the configuration reference in the README)", path, strings.Join(keys, ", "))
		}
	}
	if err := c.setDefaults(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return &c, nil
}

func filterSettings(keys []string) []string {
	out := keys[:0]
	for _, k := range keys {
		if !strings.HasPrefix(k, "kafka.settings.") {
			out = append(out, k)
		}
	}
	return out
}

func (c *Config) setDefaults() error {
	if c.EventsFile == "" {
		return errors.New("events_file is required: the file Dovecot's push-events.lua appends to (its push_events_path setting)")
	}
	if c.CheckpointFile == "" {
		c.CheckpointFile = "/var/lib/dovecot-kafka/checkpoint.json"
	}
	if c.Input == "" {
		c.Input = "lua"
	}
	switch c.Input {
	case "lua", "exporter-log", "exporter-file":
	default:
		return fmt.Errorf("input %q: use lua, exporter-log or exporter-file", c.Input)
	}
	if c.ExporterFormat == "" {
		c.ExporterFormat = "json"
	}
	switch c.ExporterFormat {
	case "json", "tab-text":
	default:
		return fmt.Errorf("exporter_format %q: use json or tab-text", c.ExporterFormat)
	}
	if c.DeadLetterFile == "" {
		c.DeadLetterFile = filepath.Join(filepath.Dir(c.CheckpointFile), "dead-letter.jsonl")
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = Duration(time.Second)
	}
	if c.MaxLineBytes == 0 {
		c.MaxLineBytes = 1 << 20
	}
	if c.MaxPendingLines == 0 {
		c.MaxPendingLines = 100000
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log_level %q: use debug, info, warn or error", c.LogLevel)
	}
	if c.LogFormat == "" {
		c.LogFormat = "auto"
	}
	switch c.LogFormat {
	case "auto", "json", "console":
	default:
		return fmt.Errorf("log_format %q: use auto, json or console", c.LogFormat)
	}
	if c.Kafka.Brokers == "" {
		c.Kafka.Brokers = "localhost:9092"
	}
	if c.Kafka.FlushTimeInMs == 0 {
		c.Kafka.FlushTimeInMs = 5000
	}
	if c.Kafka.DestroyTimeInMs == 0 {
		c.Kafka.DestroyTimeInMs = 1000
	}
	if c.MaxLineBytes < 0 || c.MaxPendingLines < 0 || c.Kafka.FlushTimeInMs < 0 || c.Kafka.DestroyTimeInMs < 0 || c.CheckpointInterval < 0 {
		return errors.New("sizes, counts and times must not be negative")
	}
	if c.ExactlyOnce.Enabled {
		if c.ExactlyOnce.PositionTopic != "" && !ValidTopic(c.ExactlyOnce.PositionTopic) {
			return fmt.Errorf("exactly_once.position_topic %q is not a valid Kafka topic name", c.ExactlyOnce.PositionTopic)
		}
		if c.ExactlyOnce.TransactionalID == "" {
			return errors.New("exactly_once.transactional_id is required when exactly_once.enabled is true: pick a name unique to this events file, e.g. \"dovecot-kafka-<host>\"")
		}
		if c.ExactlyOnce.PositionTopic == "" {
			c.ExactlyOnce.PositionTopic = "dovecot-kafka-positions"
		}
		if c.ExactlyOnce.CommitInterval <= 0 {
			c.ExactlyOnce.CommitInterval = Duration(200 * time.Millisecond)
		}
		if c.ExactlyOnce.CommitMaxLines <= 0 {
			c.ExactlyOnce.CommitMaxLines = 10000
		}
	}
	if len(c.Drivers) == 0 {
		return errors.New("no [[driver]] configured: add at least one, e.g. [[driver]] with topic = \"dovecot\"")
	}
	seen := map[string]bool{}
	for i := range c.Drivers {
		d := &c.Drivers[i]
		if d.Topic == "" {
			d.Topic = "dovecot"
		}
		if d.Name == "" {
			d.Name = d.Topic
		}
		if !ValidTopic(d.Topic) {
			return fmt.Errorf("driver %q: topic %q is not a valid Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -)", d.Name, d.Topic)
		}
		if seen[d.Name] {
			return fmt.Errorf("driver %q configured twice: give each [[driver]] a distinct name", d.Name)
		}
		seen[d.Name] = true
		if _, err := mapping.ParseEvents(d.Events); err != nil {
			return fmt.Errorf("driver %q: events: %w", d.Name, err)
		}
	}
	return nil
}

// ValidTopic reports whether name is a legal Kafka topic name.
func ValidTopic(name string) bool {
	if len(name) == 0 || len(name) > 249 || name == "." || name == ".." {
		return false
	}
	for _, c := range name {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// MappingDrivers returns the drivers in the form the mapping package uses.
func (c *Config) MappingDrivers() []*mapping.Driver {
	out := make([]*mapping.Driver, 0, len(c.Drivers))
	for _, d := range c.Drivers {
		events, _ := mapping.ParseEvents(d.Events) // checked by Load
		prefix := "$"
		if d.KeywordPrefix != nil {
			prefix = *d.KeywordPrefix
		}
		sendFlags := true
		if d.SendFlags != nil {
			sendFlags = bool(*d.SendFlags)
		}
		out = append(out, &mapping.Driver{
			Name:          d.Name,
			Topic:         d.Topic,
			Events:        events,
			KeywordPrefix: prefix,
			SendFlags:     sendFlags,
			Feature:       d.Feature,
			Userdb:        d.Userdb,
		})
	}
	return out
}

// UserdbFields lists every userdb field some driver reads (feature and
// userdb options), in first-use order: the fields the Lua script must be
// told to pass through its push_events_userdb_fields setting.
func (c *Config) UserdbFields() []string {
	var out []string
	seen := map[string]bool{}
	add := func(name string) {
		if name != "" && !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	for _, d := range c.Drivers {
		add(d.Feature)
		for _, f := range d.Userdb {
			add(f)
		}
	}
	return out
}

// Sink returns the Kafka client configuration.
func (c *Config) Sink() sink.Config {
	return sink.Config{Brokers: c.Kafka.Brokers, Debug: c.Kafka.Debug, Settings: c.Kafka.Settings}
}

// Duration is a time.Duration written as a string such as "1s" or "250ms".
type Duration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: use a number with a unit, e.g. \"1s\" or \"250ms\"", b)
	}
	*d = Duration(v)
	return nil
}

// StringList is a list of names written either as a TOML array or, as in
// the old driver's options, as one comma-separated string.
type StringList []string

// UnmarshalTOML implements toml.Unmarshaler.
func (l *StringList) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case string:
		*l = nil
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				*l = append(*l, s)
			}
		}
	case []any:
		*l = nil
		for _, item := range v {
			s, ok := item.(string)
			if !ok {
				return fmt.Errorf("list item %v is not a string", item)
			}
			*l = append(*l, s)
		}
	default:
		return fmt.Errorf("want a list of strings or a comma-separated string, got %T", v)
	}
	return nil
}

// OnOff is a boolean that also accepts the old driver's "on" and "off".
type OnOff bool

// UnmarshalTOML implements toml.Unmarshaler.
func (b *OnOff) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case bool:
		*b = OnOff(v)
	case string:
		switch strings.ToLower(v) {
		case "on", "yes", "true":
			*b = true
		case "off", "no", "false":
			*b = false
		default:
			return fmt.Errorf("%q: use true/false or \"on\"/\"off\"", v)
		}
	default:
		return fmt.Errorf("want true/false or \"on\"/\"off\", got %T", v)
	}
	return nil
}

// CheckPaths checks that the events file's directory exists, so
// that a wrong path is reported at start rather than waited for forever.
func (c *Config) CheckPaths() error {
	dir := filepath.Dir(c.EventsFile)
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("events_file %s: its directory: %w", c.EventsFile, err)
	}
	return nil
}
