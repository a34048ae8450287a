package sink

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/rs/zerolog"
)

// TxnProducer publishes in Kafka transactions, for the exactly-once mode:
// the records of a batch of lines and the position after the batch are
// committed together, so a consumer reading with
// isolation.level=read_committed sees every event once even if the daemon
// is killed between two batches.
//
// Creating one fences any earlier producer with the same transactional.id
// (a daemon that was killed, or one still running by mistake): its open
// transaction is aborted and it can no longer commit.
type TxnProducer struct {
	*Producer
	positionTopic string
	positionKey   []byte
}

// Errors of the transactional calls, classified for the caller.
var (
	// ErrTxnAbort: the transaction failed and was aborted; restart from the
	// position stored in Kafka.
	ErrTxnAbort = errors.New("sink: kafka transaction aborted")
	// ErrTxnFatal: the producer cannot go on (fenced by another instance
	// with the same transactional.id, or a fatal error); create a new one.
	ErrTxnFatal = errors.New("sink: kafka transactional producer unusable")
)

// NewTxn creates a transactional producer with the given transactional.id
// and initialises transactions, waiting for brokers until ctx is done.
// Positions are stored in positionTopic (partition 0) under key
// transactionalID.
func NewTxn(ctx context.Context, cfg Config, transactionalID, positionTopic string, log zerolog.Logger) (*TxnProducer, error) {
	settings := make(map[string]string, len(cfg.Settings)+1)
	for k, v := range cfg.Settings {
		settings[k] = v
	}
	settings["transactional.id"] = transactionalID
	cfg.Settings = settings
	p, err := New(cfg, log)
	if err != nil {
		return nil, err
	}

	// InitTransactions gives up after transaction.timeout.ms; keep trying
	// while brokers are unreachable, as the at-least-once mode waits too.
	for {
		ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := p.kp.InitTransactions(ictx)
		cancel()
		if err == nil {
			break
		}
		var kerr kafka.Error
		if ctx.Err() != nil || (errors.As(err, &kerr) && !kerr.IsRetriable() && kerr.Code() != kafka.ErrTimedOut) {
			closeDraining(p)
			return nil, fmt.Errorf("init kafka transactions (transactional.id %s): %w", transactionalID, err)
		}
		log.Warn().Err(err).Msg("cannot initialise kafka transactions yet; retrying")
	}
	return &TxnProducer{Producer: p, positionTopic: positionTopic, positionKey: []byte(transactionalID)}, nil
}

func closeDraining(p *Producer) {
	go func() {
		for range p.Deliveries() {
		}
	}()
	p.Close()
}

// Begin starts a transaction.
func (p *TxnProducer) Begin() error {
	if err := p.kp.BeginTransaction(); err != nil {
		return fmt.Errorf("%w: begin: %v", ErrTxnFatal, err)
	}
	return nil
}

// ProducePosition adds the position record to the open transaction.
func (p *TxnProducer) ProducePosition(ctx context.Context, value []byte) error {
	p.msg = kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &p.positionTopic, Partition: 0},
		Key:            p.positionKey,
		Value:          value,
		Opaque:         uint64(0),
	}
	for {
		err := p.kp.Produce(&p.msg, nil)
		var kerr kafka.Error
		if err == nil || !errors.As(err, &kerr) || kerr.Code() != kafka.ErrQueueFull {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Commit commits the open transaction: it returns once Kafka has
// acknowledged every record of it. A retriable failure is retried until
// ctx is done; a failure that needs an abort is aborted and reported as
// ErrTxnAbort; anything else as ErrTxnFatal.
func (p *TxnProducer) Commit(ctx context.Context) error {
	for {
		err := p.kp.CommitTransaction(ctx)
		if err == nil {
			return nil
		}
		var kerr kafka.Error
		switch {
		case !errors.As(err, &kerr) || kerr.IsFatal():
			return fmt.Errorf("%w: commit: %v", ErrTxnFatal, err)
		case kerr.TxnRequiresAbort():
			if aerr := p.kp.AbortTransaction(ctx); aerr != nil {
				return fmt.Errorf("%w: commit: %v; abort: %v", ErrTxnFatal, err, aerr)
			}
			return fmt.Errorf("%w: commit: %v", ErrTxnAbort, err)
		case kerr.IsRetriable() && ctx.Err() == nil:
			p.log.Warn().Err(err).Msg("kafka transaction commit failed, retrying")
			continue
		default:
			return fmt.Errorf("%w: commit: %v", ErrTxnFatal, err)
		}
	}
}

// Abort aborts the open transaction.
func (p *TxnProducer) Abort(ctx context.Context) error {
	if err := p.kp.AbortTransaction(ctx); err != nil {
		return fmt.Errorf("%w: abort: %v", ErrTxnFatal, err)
	}
	return nil
}

// producerOnly are librdkafka properties a consumer does not take.
var producerOnly = []string{
	"enable.idempotence", "acks", "message.timeout.ms", "linger.ms",
	"queue.buffering.max.messages", "queue.buffering.max.kbytes",
	"partitioner", "transactional.id", "compression.type", "compression.codec",
	"batch.num.messages", "batch.size", "retries", "retry.backoff.ms",
	"request.required.acks", "delivery.timeout.ms", "queue.buffering.max.ms",
	"transaction.timeout.ms", "max.in.flight", "max.in.flight.requests.per.connection",
}

// ReadPosition returns the value of the last committed record with key in
// partition 0 of topic, or false if there is none. It reads with
// isolation.level=read_committed, so positions of aborted transactions are
// never seen. Create the transactional producer first: that aborts a
// transaction a killed daemon left open, which would otherwise hold back
// what read_committed consumers can see.
func ReadPosition(ctx context.Context, cfg Config, topic, key string) ([]byte, bool, error) {
	cm := kafka.ConfigMap{
		"group.id":           "dovecot-kafka-position-reader",
		"enable.auto.commit": false,
		"isolation.level":    "read_committed",
		"auto.offset.reset":  "earliest",
	}
	for k, v := range ConfigMap(cfg, false) {
		if !isProducerOnly(k) {
			cm[k] = v
		}
	}
	c, err := kafka.NewConsumer(&cm)
	if err != nil {
		return nil, false, fmt.Errorf("create kafka consumer: %w", err)
	}
	defer c.Close()

	low, high, err := c.QueryWatermarkOffsets(topic, 0, 30000)
	if err != nil {
		var kerr kafka.Error
		if errors.As(err, &kerr) && (kerr.Code() == kafka.ErrUnknownTopicOrPart || kerr.Code() == kafka.ErrUnknownPartition) {
			return nil, false, nil // no position stored yet
		}
		return nil, false, fmt.Errorf("position topic %s: %w", topic, err)
	}
	// Look at a window at the end first, and widen it back to the start
	// only if the key was not found there (other daemons may share the
	// topic, and compaction leaves gaps).
	window := int64(1000)
	for end := high; end > low; {
		start := max(low, end-window)
		value, found, err := lastValue(ctx, c, topic, key, start, end)
		if err != nil || found {
			return value, found, err
		}
		end, window = start, window*4
	}
	return nil, false, nil
}

func isProducerOnly(key string) bool {
	for _, k := range producerOnly {
		if strings.EqualFold(k, key) {
			return true
		}
	}
	return false
}

// lastValue reads offsets [start, end) of partition 0 and returns the value
// of the last record with key.
func lastValue(ctx context.Context, c *kafka.Consumer, topic, key string, start, end int64) ([]byte, bool, error) {
	if err := c.Assign([]kafka.TopicPartition{{Topic: &topic, Partition: 0, Offset: kafka.Offset(start)}}); err != nil {
		return nil, false, fmt.Errorf("assign %s: %w", topic, err)
	}
	var value []byte
	found := false
	deadline := time.Now().Add(60 * time.Second)
	for {
		if ctx.Err() != nil {
			return nil, false, ctx.Err()
		}
		if time.Now().After(deadline) {
			return nil, false, fmt.Errorf("reading positions from %s: timed out before offset %d", topic, end)
		}
		msg, err := c.ReadMessage(200 * time.Millisecond)
		if err == nil {
			if int64(msg.TopicPartition.Offset) >= end {
				return value, found, nil
			}
			if string(msg.Key) == key {
				value, found = msg.Value, true
			}
			if int64(msg.TopicPartition.Offset) >= end-1 {
				return value, found, nil
			}
			continue
		}
		var kerr kafka.Error
		if !errors.As(err, &kerr) || kerr.Code() != kafka.ErrTimedOut {
			return nil, false, fmt.Errorf("reading positions from %s: %w", topic, err)
		}
		// Transaction markers take offsets too: the end may be a marker,
		// never delivered as a message. Done once the position passed it.
		pos, err := c.Position([]kafka.TopicPartition{{Topic: &topic, Partition: 0}})
		if err == nil && len(pos) == 1 && int64(pos[0].Offset) >= end {
			return value, found, nil
		}
	}
}
