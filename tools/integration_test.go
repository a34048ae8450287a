//go:build integration

// Real-broker tests: KAFKA_BROKERS names the broker (scripts/kafka.sh start
// prints it). They fail, never skip, when it is missing or unreachable.

package tools

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func brokers(t *testing.T) string {
	t.Helper()
	b := os.Getenv("KAFKA_BROKERS")
	if b == "" {
		t.Fatal("KAFKA_BROKERS is not set: start a broker with scripts/kafka.sh start and export KAFKA_BROKERS=127.0.0.1:19092")
	}
	return b
}

// freshTopic returns a topic name no earlier run used.
func freshTopic(prefix string) string {
	return fmt.Sprintf("tools-%s-%d", prefix, time.Now().UnixNano())
}

func adminClient(t *testing.T) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers(t), ",")...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// createTopic creates topic with three partitions.
func createTopic(t *testing.T, topic string) {
	t.Helper()
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, 3, 1
	req.Topics = append(req.Topics, rt)
	req.TimeoutMillis = 10000
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, adminClient(t))
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	if err := kerr.ErrorForCode(resp.Topics[0].ErrorCode); err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
}

// topicExists asks the broker without creating the topic.
func topicExists(t *testing.T, topic string) bool {
	t.Helper()
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	req.AllowAutoTopicCreation = false
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, adminClient(t))
	if err != nil {
		t.Fatalf("metadata: %v", err)
	}
	return resp.Topics[0].ErrorCode == 0
}

// Replaying the same range twice into a fresh topic gives byte-identical
// records both times: key, value, timestamp, no headers.
func TestIntegrationReplayTwiceIdentical(t *testing.T) {
	topic := freshTopic("twice")
	createTopic(t, topic)
	checkReplayTwice(t, brokers(t), topic)
}

// With the configured drivers, each topic receives the dry run's records
// with the event times as timestamps, every user's in file order.
func TestIntegrationReplayDrivers(t *testing.T) {
	prefix := freshTopic("drivers")
	drivers := strings.NewReplacer(`topic = "`, `topic = "`+prefix+"-").Replace(testDrivers)
	e := newEnv(t, brokers(t), drivers)
	lines, files, cp1, _ := rotated(t, e)
	for _, d := range []string{"dovecot", "flags", "feature"} {
		createTopic(t, prefix+"-"+d)
	}

	args := append([]string{"-config", e.config, "-from", "checkpoint:" + cp1}, files...)
	r := replay(t, args...)
	if r.code != ExitOK {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.errOut)
	}
	for _, d := range []string{"dovecot", "flags", "feature"} {
		topic := prefix + "-" + d
		var want []string
		for _, l := range renderTimed(t, e.config, lines[70:], "") {
			if strings.HasPrefix(l, topic+"\t") {
				want = append(want, l)
			}
		}
		recs := consume(t, brokers(t), topic, len(want))
		perKey := map[string][]string{}
		for _, r := range recs {
			got := fmt.Sprintf("%s\t%s\t%s\t%d", topic, r.key, r.value, r.timestamp)
			perKey[r.key] = append(perKey[r.key], got)
			if r.headers != 0 {
				t.Errorf("%s: record with %d headers", topic, r.headers)
			}
		}
		wantPerKey := map[string][]string{}
		for _, w := range want {
			key := strings.Split(w, "\t")[1]
			wantPerKey[key] = append(wantPerKey[key], w)
		}
		for key, w := range wantPerKey {
			if !slices.Equal(perKey[key], w) {
				t.Errorf("%s, key %s: %d records in Kafka, %d expected, or in another order", topic, key, len(perKey[key]), len(w))
			}
		}
		if len(recs) != len(want) {
			t.Errorf("%s: %d records, want %d", topic, len(recs), len(want))
		}
	}
}

// -driver and -topic against the broker: one driver's records, all in the
// chosen topic.
func TestIntegrationReplayDriverTopic(t *testing.T) {
	topic := freshTopic("one-driver")
	createTopic(t, topic)
	e := newEnv(t, brokers(t), testDrivers)
	lines := exampleLines(t)
	writeFile(t, e.events, lines)

	r := replay(t, "-config", e.config, "-driver", "flags", "-topic", topic, e.events)
	if r.code != ExitOK {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.errOut)
	}
	var want []string
	for _, l := range renderTimed(t, e.config, lines, "") {
		if strings.HasPrefix(l, "flags\t") {
			want = append(want, topic+strings.TrimPrefix(l, "flags"))
		}
	}
	recs := consume(t, brokers(t), topic, len(want))
	var got []string
	for _, r := range recs {
		got = append(got, fmt.Sprintf("%s\t%s\t%s\t%d", topic, r.key, r.value, r.timestamp))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%d records, want %d, or other records", len(got), len(want))
	}
}

func TestIntegrationCheck(t *testing.T) {
	prefix := freshTopic("check")
	drivers := strings.NewReplacer(`topic = "`, `topic = "`+prefix+"-").Replace(testDrivers)
	e := newEnv(t, brokers(t), drivers)
	writeFile(t, e.events, exampleLines(t))
	createTopic(t, prefix+"-dovecot")
	createTopic(t, prefix+"-flags")

	// One topic is missing: a problem, and check does not create it.
	r := check(t, "-config", e.config)
	if r.code != ExitFailed {
		t.Errorf("exit %d, want %d", r.code, ExitFailed)
	}
	for _, s := range []string{
		"ok       reachable",
		"ok       topic " + prefix + "-dovecot (driver " + prefix + "-dovecot): exists, 3 partitions",
		"ok       topic " + prefix + "-flags (driver " + prefix + "-flags): exists, 3 partitions",
		"PROBLEM  topic " + prefix + "-feature (driver " + prefix + "-feature) does not exist",
		"1 problem(s):",
	} {
		if !strings.Contains(r.out, s) {
			t.Errorf("output lacks %q", s)
		}
	}
	if topicExists(t, prefix+"-feature") {
		t.Error("check created the missing topic")
	}
	if t.Failed() {
		t.Fatalf("output:\n%s", r.out)
	}

	// All there: exit 0.
	createTopic(t, prefix+"-feature")
	r = check(t, "-config", e.config)
	if r.code != ExitOK || !strings.Contains(r.out, "All checks passed.") {
		t.Errorf("exit %d, output:\n%s", r.code, r.out)
	}
	if !strings.Contains(r.out, "write allowed") && !strings.Contains(r.out, "not reported by the broker") {
		t.Errorf("no word on write permission:\n%s", r.out)
	}

	// exactly_once: its position topic is checked too.
	cfg, _ := os.ReadFile(e.config)
	os.WriteFile(e.config, append(cfg, fmt.Sprintf("\n[exactly_once]\nenabled = true\ntransactional_id = \"t\"\nposition_topic = %q\n", prefix+"-positions")...), 0o644)
	r = check(t, "-config", e.config)
	if r.code != ExitFailed || !strings.Contains(r.out, "PROBLEM  topic "+prefix+"-positions (exactly_once position_topic) does not exist") {
		t.Errorf("exit %d, output:\n%s", r.code, r.out)
	}

	// A bad configuration.
	os.WriteFile(e.config, []byte("events_file = 3\n"), 0o644)
	r = check(t, "-config", e.config)
	if r.code != ExitFailed || !strings.Contains(r.out, "PROBLEM  configuration:") {
		t.Errorf("bad config: exit %d, output:\n%s", r.code, r.out)
	}
}
