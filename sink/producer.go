// Package sink publishes records to Kafka through librdkafka
// (confluent-kafka-go) and reports each record's fate.
//
// Every record carries the sequence number of the events-file line it came
// from; a Delivery comes back for every record that was accepted by
// Produce, in whatever order the brokers acknowledge them. The caller uses
// the deliveries to decide how far the events file has been published.
//
// The producer is idempotent with acks=all and, by default, never gives up
// on a record while brokers are unreachable (message.timeout.ms=0): a
// broker outage stalls publishing and, through the bounded local queue,
// reading, but loses nothing and keeps per-user order.
package sink

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/rs/zerolog"
)

// Config holds the Kafka client settings. The names follow the old C
// driver's kafka.notification.* settings.
type Config struct {
	// Brokers is the bootstrap broker list, "host:port,..." (old
	// kafka_brokers; librdkafka bootstrap.servers; default localhost:9092).
	Brokers string

	// Debug is librdkafka's debug contexts, e.g. "broker,topic,msg" (old
	// kafka_debug; librdkafka debug; default none).
	Debug string

	// Settings are librdkafka properties passed through verbatim (old
	// kafka.notification.settings.*), e.g. security.protocol. They override
	// the defaults this package sets.
	Settings map[string]string
}

// defaults are the librdkafka properties this package sets unless
// Settings overrides them.
var defaults = map[string]string{
	"enable.idempotence": "true", // implies acks=all, in-order retries
	"acks":               "all",
	// Never fail a record because brokers are unreachable: the daemon
	// would have to produce it again and could reorder a user's events.
	"message.timeout.ms": "0",
	"linger.ms":          "5",
	// Bounds memory while brokers are down; Produce waits when it is full.
	"queue.buffering.max.messages": "100000",
	"queue.buffering.max.kbytes":   "262144",
	"partitioner":                  "consistent_random", // librdkafka's default: CRC32 of the key
	"client.id":                    "dovecot-kafka",
}

// Record is one message to publish.
type Record struct {
	Topic   string
	Key     []byte
	Value   []byte
	Time    time.Time // record timestamp; zero lets librdkafka use now
	Headers []Header  // none by default
	Seq     uint64    // the events-file line this record came from
}

// Header is one Kafka record header.
type Header struct {
	Key   string
	Value []byte
}

// Delivery reports what became of one record, or (Producer set) a
// producer-level failure that no single record caused.
type Delivery struct {
	Seq       uint64
	Topic     string
	Partition int32
	Offset    int64 // Kafka offset of the record, if delivered
	Err       error // nil when delivered
	Class     Class // how to treat Err
	Producer  bool  // a producer-level error, not tied to Seq
}

// ErrClosed is returned by Produce after Close.
var ErrClosed = errors.New("sink: producer closed")

// Producer publishes records to Kafka.
type Producer struct {
	kp         *kafka.Producer
	log        zerolog.Logger
	deliveries chan Delivery
	msg        kafka.Message // reused: Produce copies key and value
	done       chan struct{}
	wg         sync.WaitGroup
	closeOnce  sync.Once
	debug      bool // librdkafka debug output asked for: log it at info
}

// ConfigMap returns the librdkafka properties New uses for cfg, for logs
// and for the check command. Values of properties that look secret are
// replaced by "[redacted]" when redact is set.
func ConfigMap(cfg Config, redact bool) map[string]string {
	m := make(map[string]string, len(defaults)+len(cfg.Settings)+2)
	for k, v := range defaults {
		m[k] = v
	}
	brokers := cfg.Brokers
	if brokers == "" {
		brokers = "localhost:9092"
	}
	m["bootstrap.servers"] = brokers
	if cfg.Debug != "" {
		m["debug"] = cfg.Debug
	}
	for k, v := range cfg.Settings {
		m[k] = v
	}
	if redact {
		for k := range m {
			if isSecret(k) {
				m[k] = "[redacted]"
			}
		}
	}
	return m
}

func isSecret(key string) bool {
	key = strings.ToLower(key)
	for _, s := range []string{"password", "secret", "sasl.oauthbearer.config", "ssl.key.pem", "ssl_key", "token"} {
		if strings.Contains(key, s) {
			return true
		}
	}
	return false
}

// New creates a producer. It does not wait for brokers: an unreachable
// cluster shows up as logged errors while records wait in the queue.
func New(cfg Config, log zerolog.Logger) (*Producer, error) {
	cm := kafka.ConfigMap{
		// Deliveries need only the opaque sequence number and the error.
		"go.delivery.report.fields": "none",
		"go.logs.channel.enable":    true,
	}
	for k, v := range ConfigMap(cfg, false) {
		cm[k] = v
	}
	kp, err := kafka.NewProducer(&cm)
	if err != nil {
		return nil, fmt.Errorf("create kafka producer: %w", err)
	}
	p := &Producer{
		kp:         kp,
		log:        log,
		deliveries: make(chan Delivery, 65536),
		done:       make(chan struct{}),
		debug:      cfg.Debug != "",
	}
	p.wg.Add(2)
	go p.readEvents()
	go p.readLogs()
	return p, nil
}

// Produce hands r to librdkafka. While the local queue is full it waits,
// polling, until there is room or ctx is done. The record's key and value
// are copied, so the caller may reuse them. An error for which Classify
// says GiveUp means librdkafka refused this record for good (it is too
// large); the producer is still usable.
func (p *Producer) Produce(ctx context.Context, r Record) error {
	p.msg = kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &r.Topic, Partition: kafka.PartitionAny},
		Key:            r.Key,
		Value:          r.Value,
		Timestamp:      r.Time,
		Opaque:         r.Seq,
	}
	if len(r.Headers) > 0 {
		p.msg.Headers = make([]kafka.Header, len(r.Headers))
		for i, h := range r.Headers {
			p.msg.Headers[i] = kafka.Header{Key: h.Key, Value: h.Value}
		}
	}
	wait := time.Millisecond
	for {
		err := p.kp.Produce(&p.msg, nil)
		if err == nil {
			return nil
		}
		var kerr kafka.Error
		if !errors.As(err, &kerr) || kerr.Code() != kafka.ErrQueueFull {
			if p.kp.IsClosed() {
				return ErrClosed
			}
			// librdkafka refuses some records before sending them (a
			// value over message.max.bytes): Classify tells the caller.
			return fmt.Errorf("produce to %s: %w", r.Topic, err)
		}
		// The queue is full: brokers are slow or down. Wait for room.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, 100*time.Millisecond)
	}
}

// Deliveries returns the channel of delivery reports. It is closed by
// Close once every report has been passed on.
func (p *Producer) Deliveries() <-chan Delivery { return p.deliveries }

// Len returns the number of records not yet acknowledged by Kafka.
func (p *Producer) Len() int { return p.kp.Len() }

// Flush waits up to timeout for outstanding records to be delivered and
// returns how many are still outstanding.
func (p *Producer) Flush(timeout time.Duration) int {
	return p.kp.Flush(int(timeout / time.Millisecond))
}

// Close shuts the producer down. Records still queued are purged; they get
// failed deliveries, which the caller must not count as published.
func (p *Producer) Close() {
	p.closeOnce.Do(func() {
		_ = p.kp.Purge(kafka.PurgeQueue | kafka.PurgeInFlight | kafka.PurgeNonBlocking)
		p.kp.Close()
		close(p.done)
		p.wg.Wait()
		close(p.deliveries)
	})
}

func (p *Producer) readEvents() {
	defer p.wg.Done()
	allDown := newRateLimit(30 * time.Second)
	down := false // an outage was reported and no delivery since
	for ev := range p.kp.Events() {
		switch e := ev.(type) {
		case *kafka.Message:
			if down && e.TopicPartition.Error == nil {
				down = false
				p.log.Info().Msg("kafka brokers reachable again; publishing resumed")
			}
			d := Delivery{
				Topic:     *e.TopicPartition.Topic,
				Partition: e.TopicPartition.Partition,
				Offset:    int64(e.TopicPartition.Offset),
			}
			if seq, ok := e.Opaque.(uint64); ok {
				d.Seq = seq
			}
			if err := e.TopicPartition.Error; err != nil {
				d.Err = err
				d.Class = Classify(err)
			}
			p.deliveries <- d
		case kafka.Error:
			if e.IsFatal() {
				p.deliveries <- Delivery{Err: e, Class: Fatal, Producer: true}
				continue
			}
			// Connection problems repeat for every broker and retry;
			// librdkafka retries on its own, so say it now and then.
			if e.Code() == kafka.ErrAllBrokersDown || e.Code() == kafka.ErrTransport || e.Code() == kafka.ErrResolve {
				down = true
				if !allDown.allow() {
					continue
				}
				p.log.Warn().Err(e).
					Str("kafka_code", e.Code().String()).
					Msg("kafka brokers unreachable; records wait in the queue and reading pauses when it is full")
				continue
			}
			p.log.Warn().Err(e).Str("kafka_code", e.Code().String()).Msg("kafka client error")
		}
	}
}

// readLogs passes librdkafka's own log lines (debug output included) to
// the daemon's logger, so that they share its format.
func (p *Producer) readLogs() {
	defer p.wg.Done()
	logs := p.kp.Logs()
	for {
		select {
		case <-p.done:
			return
		case l, ok := <-logs:
			if !ok {
				return
			}
			// syslog levels; librdkafka reports an unreachable broker
			// as 3 (error), which the daemon rides out: a warning.
			var e *zerolog.Event
			switch {
			case l.Level <= 2:
				e = p.log.Error()
			case l.Level <= 4:
				e = p.log.Warn()
			case l.Level <= 6 || p.debug:
				e = p.log.Info()
			default:
				e = p.log.Debug()
			}
			e.Str("librdkafka", l.Tag).Msg(l.Message)
		}
	}
}

// SortedConfig returns a printable "key=value" list of m, sorted.
func SortedConfig(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// rateLimit lets one event through per interval.
type rateLimit struct {
	mu       sync.Mutex
	interval time.Duration
	last     time.Time
}

func newRateLimit(interval time.Duration) *rateLimit { return &rateLimit{interval: interval} }

func (r *rateLimit) allow() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if now.Sub(r.last) < r.interval {
		return false
	}
	r.last = now
	return true
}
