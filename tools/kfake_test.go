package tools

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// These tests use kfake, an in-memory broker speaking the Kafka protocol;
// integration_test.go runs the same against a real broker.

func newFake(t *testing.T, topics ...string) string {
	t.Helper()
	opts := []kfake.Opt{kfake.NumBrokers(1)}
	if len(topics) > 0 {
		opts = append(opts, kfake.SeedTopics(3, topics...))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()[0]
}

// consumed is one record as a consumer sees it.
type consumed struct {
	partition int32
	key       string
	value     string
	timestamp int64 // ms
	headers   int
}

// consume reads n records of topic from the beginning.
func consume(t testing.TB, brokers, topic string, n int) []consumed {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []consumed
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("topic %s: got %d of %d records before the timeout", topic, len(out), n)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Logf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			out = append(out, consumed{r.Partition, string(r.Key), string(r.Value), r.Timestamp.UnixMilli(), len(r.Headers)})
		})
	}
	return out
}

// byPartition groups records per partition, in offset order.
func byPartition(recs []consumed) map[int32][]consumed {
	m := map[int32][]consumed{}
	for _, r := range recs {
		m[r.partition] = append(m[r.partition], r)
	}
	return m
}

// checkReplayTwice replays the same range twice into one fresh topic and
// checks that the second half of every partition repeats the first byte
// for byte: key, value, timestamp (the event time) and no headers.
func checkReplayTwice(t *testing.T, brokers, topic string) {
	e := newEnv(t, brokers, testDrivers)
	lines := exampleLines(t)
	writeFile(t, e.events, lines)
	from, to := offsetOf(lines, 20), offsetOf(lines, 120)
	args := []string{"-config", e.config, "-topic", topic, "-from", strconv.FormatInt(from, 10), "-to", strconv.FormatInt(to, 10), e.events}

	dry := replay(t, append(args, "-dry-run")...)
	want := strings.Count(dry.out, "\n")
	for range 2 {
		r := replay(t, args...)
		if r.code != ExitOK {
			t.Fatalf("replay: exit %d, stderr:\n%s", r.code, r.errOut)
		}
		if !strings.Contains(r.errOut, fmt.Sprintf("100 events read, %d records published", want)) || !strings.Contains(r.errOut, "0 records failed") {
			t.Errorf("summary:\n%s", r.errOut)
		}
	}

	recs := consume(t, brokers, topic, 2*want)
	if len(recs) != 2*want {
		t.Fatalf("%d records, want %d", len(recs), 2*want)
	}
	for p, part := range byPartition(recs) {
		half := len(part) / 2
		if len(part)%2 != 0 {
			t.Fatalf("partition %d holds %d records, not two equal runs", p, len(part))
		}
		for i := range half {
			a, b := part[i], part[half+i]
			if a != b {
				t.Errorf("partition %d: record %d of the first replay %+v, of the second %+v", p, i, a, b)
			}
			if a.headers != 0 {
				t.Errorf("partition %d: record %d has %d headers", p, i, a.headers)
			}
			if !strings.Contains(a.value, `"user":"`+a.key+`"`) {
				t.Errorf("key %q does not match value %s", a.key, a.value)
			}
		}
	}

	// The records are the dry run's, each with its event time (in
	// milliseconds) as timestamp.
	wantSet := map[string]int{}
	for _, l := range renderTimed(t, e.config, lines[20:120], topic) {
		wantSet[l] += 2
	}
	for _, r := range recs {
		wantSet[fmt.Sprintf("%s\t%s\t%s\t%d", topic, r.key, r.value, r.timestamp)]--
	}
	for l, n := range wantSet {
		if n != 0 {
			t.Errorf("record %.150s: %d more expected than in Kafka", l, n)
		}
	}
}

func TestReplayKfakeTwiceIdentical(t *testing.T) {
	brokers := newFake(t, "replayed")
	checkReplayTwice(t, brokers, "replayed")
}

func TestCheckKfake(t *testing.T) {
	brokers := newFake(t, "dovecot", "flags")
	e := newEnv(t, brokers, testDrivers)
	writeFile(t, e.events, exampleLines(t))

	r := check(t, "-config", e.config, "-timeout", "5s")
	if r.code != ExitFailed {
		t.Errorf("exit %d, want %d", r.code, ExitFailed)
	}
	for _, s := range []string{
		"ok       reachable",
		"ok       topic dovecot (driver dovecot): exists, 3 partitions",
		"ok       topic flags (driver flags): exists, 3 partitions",
		"PROBLEM  topic feature (driver feature) does not exist",
		"1 problem(s):",
	} {
		if !strings.Contains(r.out, s) {
			t.Errorf("output lacks %q", s)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", r.out)
	}
}

// A replay stopped before the end (SIGINT, SIGTERM) says so and fails.
func TestReplayInterrupted(t *testing.T) {
	brokers := newFake(t, "dovecot", "flags", "feature")
	e := newEnv(t, brokers, testDrivers)
	writeFile(t, e.events, exampleLines(t))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := runCmd(t, func(io IO) int { return Replay(ctx, []string{"-config", e.config, e.events}, io) })
	if r.code != ExitFailed || !strings.Contains(r.errOut, "interrupted") {
		t.Errorf("exit %d, stderr:\n%s", r.code, r.errOut)
	}
}

func TestHelp(t *testing.T) {
	cmds := map[string]func(IO) int{
		"replay": func(io IO) int { return Replay(context.Background(), []string{"-h"}, io) },
		"state":  func(io IO) int { return State([]string{"--help"}, io) },
		"check":  func(io IO) int { return Check(context.Background(), []string{"-help"}, io) },
		"import": func(io IO) int { return Import([]string{"-h"}, io) },
	}
	for name, f := range cmds {
		r := runCmd(t, f)
		if r.code != ExitOK || !strings.Contains(r.errOut, "Usage: dovecot-kafka "+name) || !strings.Contains(r.errOut, "Example") || !strings.Contains(r.errOut, "Flags:") {
			t.Errorf("%s -h: exit %d, stderr:\n%s", name, r.code, r.errOut)
		}
	}
}

// An event time ahead of this host's clock does not become the record
// timestamp, as in the daemon: brokers refuse such timestamps.
func TestReplayFutureEventTime(t *testing.T) {
	brokers := newFake(t, "future")
	e := newEnv(t, brokers, testDrivers)
	future := time.Now().Add(24 * time.Hour).Unix()
	line := `{"v":1,"time":` + strconv.FormatInt(future, 10) + `,"user":"u@example.test","event":"MailboxCreate","mailbox":"X","uidvalidity":7}` + "\n"
	writeFile(t, e.events, []string{exampleLines(t)[0], line})

	t0 := time.Now().Add(-time.Second)
	r := replay(t, "-config", e.config, "-driver", "dovecot", "-topic", "future", e.events)
	if r.code != ExitOK || !strings.Contains(r.errOut, "1 events have times more than 60s ahead of this host's clock") {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.errOut)
	}
	for _, rec := range consume(t, brokers, "future", 2) {
		switch rec.key {
		case "u@example.test":
			if rec.timestamp < t0.UnixMilli() || rec.timestamp > time.Now().UnixMilli() {
				t.Errorf("future event: timestamp %d, want the time of publishing", rec.timestamp)
			}
		default:
			if rec.timestamp != 1796404057000 {
				t.Errorf("timestamp %d, want the event time", rec.timestamp)
			}
		}
	}
}
