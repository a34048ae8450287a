//go:build faults

package faults

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// broker drives scripts/kafka.sh for a private broker. Its run file and
// state directory live in the work directory, so that stop (with
// KAFKA_KEEP_STATE=1) and start bring the same broker back on the same
// data, topics and records included.
type broker struct {
	script string
	state  string // KAFKA_STATE
	run    string // KAFKA_RUN
	addr   string
	up     bool
}

func newBroker(root, work string) *broker {
	return &broker{
		script: filepath.Join(root, "scripts", "kafka.sh"),
		state:  filepath.Join(work, "broker"),
		run:    filepath.Join(work, "broker.run"),
		addr:   "127.0.0.1:" + strconv.Itoa(brokerPort),
	}
}

// kafkaSh runs scripts/kafka.sh with the private broker's environment.
func (b *broker) kafkaSh(keepState bool, timeout time.Duration, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{b.script}, args...)...)
	keep := "0"
	if keepState {
		keep = "1"
	}
	cmd.Env = append(os.Environ(),
		"KAFKA_PORT="+strconv.Itoa(brokerPort),
		"KAFKA_CONTROLLER_PORT="+strconv.Itoa(controllerPort),
		"KAFKA_RUN="+b.run,
		"KAFKA_STATE="+b.state,
		"KAFKA_KEEP_STATE="+keep,
	)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %v: %w", timeout, err)
	}
	return out, err
}

// start starts the broker (formatting its storage the first time) and
// waits until it answers.
func (b *broker) start() error {
	out, err := b.kafkaSh(true, 3*time.Minute, "start")
	if err != nil {
		return fmt.Errorf("the private broker did not start (scripts/kafka.sh start on 127.0.0.1:%d): %v\n%s\nlast lines of %s:\n%s",
			brokerPort, err, out, filepath.Join(b.state, "broker.log"), tailFile(filepath.Join(b.state, "broker.log"), 30))
	}
	b.up = true
	return nil
}

// stop stops the broker and keeps its state for the next start.
func (b *broker) stop() error {
	out, err := b.kafkaSh(true, 2*time.Minute, "stop")
	if err != nil {
		return fmt.Errorf("scripts/kafka.sh stop: %v\n%s", err, out)
	}
	b.up = false
	return nil
}

// destroy stops the broker for good. With FAULTS_KEEP=1 the state
// directory stays (it holds broker.log); otherwise it goes with the work
// directory.
func (b *broker) destroy() error {
	out, err := b.kafkaSh(true, 2*time.Minute, "stop")
	b.up = false
	if err != nil {
		return fmt.Errorf("scripts/kafka.sh stop: %v\n%s", err, out)
	}
	return nil
}

// client returns a franz-go client of the private broker.
func (b *broker) client(opts ...kgo.Opt) (*kgo.Client, error) {
	return kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(b.addr),
		kgo.RetryTimeout(30 * time.Second),
	}, opts...)...)
}

// createTopic creates topic with the given number of partitions; a topic
// that exists already (the daemon's first metadata request may have
// created it) is fine.
func (b *broker) createTopic(topic string, partitions int32) error {
	cl, err := b.client()
	if err != nil {
		return err
	}
	defer cl.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		req := kmsg.NewPtrCreateTopicsRequest()
		req.TimeoutMillis = 15000
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic = topic
		rt.NumPartitions = partitions
		rt.ReplicationFactor = 1
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err == nil && len(resp.Topics) == 1 {
			err = kerr.ErrorForCode(resp.Topics[0].ErrorCode)
			if err == nil || errors.Is(err, kerr.TopicAlreadyExists) {
				return nil
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("create topic %s: %w", topic, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// endOffsets returns the last stable offset of every partition of topic:
// what a read_committed consumer reads up to.
func endOffsets(ctx context.Context, cl *kgo.Client, topic string) (map[int32]int64, error) {
	mreq := kmsg.NewPtrMetadataRequest()
	mreq.AllowAutoTopicCreation = false
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	mreq.Topics = append(mreq.Topics, mt)
	mresp, err := mreq.RequestWith(ctx, cl)
	if err != nil {
		return nil, fmt.Errorf("metadata of %s: %w", topic, err)
	}
	if len(mresp.Topics) != 1 {
		return nil, fmt.Errorf("metadata of %s: %d topics in the answer", topic, len(mresp.Topics))
	}
	if err := kerr.ErrorForCode(mresp.Topics[0].ErrorCode); err != nil {
		return nil, fmt.Errorf("metadata of %s: %w", topic, err)
	}

	lreq := kmsg.NewPtrListOffsetsRequest()
	lreq.IsolationLevel = 1 // read_committed: the last stable offset
	lt := kmsg.NewListOffsetsRequestTopic()
	lt.Topic = topic
	for _, p := range mresp.Topics[0].Partitions {
		lp := kmsg.NewListOffsetsRequestTopicPartition()
		lp.Partition = p.Partition
		lp.Timestamp = -1 // the end
		lt.Partitions = append(lt.Partitions, lp)
	}
	lreq.Topics = append(lreq.Topics, lt)
	lresp, err := lreq.RequestWith(ctx, cl)
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s: %w", topic, err)
	}
	ends := map[int32]int64{}
	for _, t := range lresp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return nil, fmt.Errorf("list offsets of %s partition %d: %w", topic, p.Partition, err)
			}
			ends[p.Partition] = p.Offset
		}
	}
	if len(ends) != len(mresp.Topics[0].Partitions) {
		return nil, fmt.Errorf("list offsets of %s: %d of %d partitions answered", topic, len(ends), len(mresp.Topics[0].Partitions))
	}
	return ends, nil
}

// recordCount returns how many records topic holds (committed ones).
func (b *broker) recordCount(topic string) (int64, error) {
	cl, err := b.client()
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ends, err := endOffsets(ctx, cl, topic)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, e := range ends {
		n += e
	}
	return n, nil
}

// consumeAll reads topic from the beginning with read_committed, up to the
// end offsets it had when the call started, and hands each record to fn,
// in offset order within a partition. It returns how many it read.
func (b *broker) consumeAll(topic string, timeout time.Duration, fn func(*kgo.Record)) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	cl, err := b.client(
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)
	if err != nil {
		return 0, err
	}
	defer cl.Close()

	ends, err := endOffsets(ctx, cl, topic)
	if err != nil {
		return 0, err
	}
	var want, got int64
	for _, e := range ends {
		want += e
	}
	next := map[int32]int64{}
	done := func() bool {
		for p, e := range ends {
			if next[p] < e {
				return false
			}
		}
		return true
	}
	for !done() {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return got, fmt.Errorf("consume %s: read %d of %d records within %v", topic, got, want, timeout)
		}
		var errs []string
		fetches.EachError(func(t string, p int32, err error) {
			errs = append(errs, fmt.Sprintf("%s[%d]: %v", t, p, err))
		})
		if len(errs) > 0 {
			return got, fmt.Errorf("consume %s: %s", topic, strings.Join(errs, "; "))
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if r.Offset < ends[r.Partition] {
				fn(r)
				got++
			}
			next[r.Partition] = max(next[r.Partition], r.Offset+1)
		})
	}
	return got, nil
}

// tailFile returns the last n lines of the file at path, or a note why
// there are none.
func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
