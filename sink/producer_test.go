package sink

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestProduceDeliversEveryRecord publishes to kfake, an in-memory broker
// speaking the Kafka protocol, and checks that every record gets exactly
// one successful delivery report carrying its sequence number, and that
// the records on the broker are keyed and ordered per key.
func TestProduceDeliversEveryRecord(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "events"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()

	p, err := New(Config{Brokers: cluster.ListenAddrs()[0]}, zerolog.New(zerolog.NewTestWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 1; i <= n; i++ {
		r := Record{
			Topic: "events",
			Key:   []byte(fmt.Sprintf("user-%d", i%7)),
			Value: []byte(fmt.Sprintf(`{"n":%d}`, i)),
			Time:  time.Unix(1733331200, 0),
			Seq:   uint64(i),
		}
		if err := p.Produce(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[uint64]int{}
	for len(seen) < n {
		select {
		case d := <-p.Deliveries():
			if d.Err != nil {
				t.Fatalf("delivery of %d failed: %v", d.Seq, d.Err)
			}
			seen[d.Seq]++
		case <-ctx.Done():
			t.Fatalf("only %d of %d deliveries", len(seen), n)
		}
	}
	if left := p.Flush(5 * time.Second); left != 0 {
		t.Fatalf("%d records left after flush", left)
	}
	go func() { // Close needs the deliveries drained
		for range p.Deliveries() {
		}
	}()
	p.Close()
	for seq, c := range seen {
		if c != 1 {
			t.Errorf("seq %d delivered %d times", seq, c)
		}
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.ConsumeTopics("events"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	last := map[string]int{}
	got := 0
	for got < n && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) {
			var v int
			fmt.Sscanf(string(r.Value), `{"n":%d}`, &v)
			if v <= last[string(r.Key)] {
				t.Errorf("key %s: %d after %d", r.Key, v, last[string(r.Key)])
			}
			last[string(r.Key)] = v
			if r.Timestamp.Unix() != 1733331200 {
				t.Errorf("timestamp %v", r.Timestamp)
			}
			got++
		})
	}
	if got != n {
		t.Fatalf("consumed %d of %d", got, n)
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		err  error
		want Class
	}{
		{kafka.NewError(kafka.ErrMsgSizeTooLarge, "too large", false), GiveUp},
		{kafka.NewError(kafka.ErrTopicAuthorizationFailed, "denied", false), GiveUp},
		{kafka.NewError(kafka.ErrMsgTimedOut, "timed out", false), Retry},
		{kafka.NewError(kafka.ErrAllBrokersDown, "down", false), Retry},
		{kafka.NewError(kafka.ErrOutOfOrderSequenceNumber, "fatal", true), Fatal},
		{errors.New("not a kafka error"), Retry},
	}
	for _, tt := range tests {
		if got := Classify(tt.err); got != tt.want {
			t.Errorf("Classify(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestConfigMapRedactsSecrets(t *testing.T) {
	m := ConfigMap(Config{Brokers: "b:1", Settings: map[string]string{
		"sasl.password":    "hunter2",
		"ssl.key.password": "x",
		"linger.ms":        "50",
	}}, true)
	if m["sasl.password"] != "[redacted]" || m["ssl.key.password"] != "[redacted]" {
		t.Errorf("secrets not redacted: %v", m)
	}
	if m["linger.ms"] != "50" || m["bootstrap.servers"] != "b:1" || m["enable.idempotence"] != "true" {
		t.Errorf("settings: %v", m)
	}
}

// TestFatalErrorIsReported injects librdkafka's fatal error (as the
// idempotent producer raises when it loses its sequence state) and checks
// that it comes out as a producer-level Fatal delivery.
func TestFatalErrorIsReported(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "events"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	p, err := New(Config{Brokers: cluster.ListenAddrs()[0]}, zerolog.New(zerolog.NewTestWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		go func() {
			for range p.Deliveries() {
			}
		}()
		p.Close()
	}()
	if code := p.kp.TestFatalError(kafka.ErrOutOfOrderSequenceNumber, "injected by the test"); code != kafka.ErrNoError {
		t.Fatalf("TestFatalError: %v", code)
	}
	select {
	case d := <-p.Deliveries():
		if !d.Producer || d.Class != Fatal || d.Err == nil {
			t.Fatalf("delivery %+v, want a producer-level fatal error", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no report of the fatal error")
	}
}
