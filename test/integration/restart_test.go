//go:build integration

// Package integration runs the built daemon against a real Kafka broker.
// KAFKA_BROKERS names the broker (scripts/kafka.sh start prints it); the
// tests fail, not skip, when it is missing or unreachable.
package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func brokers(t *testing.T) string {
	t.Helper()
	b := os.Getenv("KAFKA_BROKERS")
	if b == "" {
		t.Fatal("KAFKA_BROKERS is not set: start a broker with scripts/kafka.sh start and export KAFKA_BROKERS=127.0.0.1:19092")
	}
	return b
}

// buildDaemon compiles the daemon once per test binary.
var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func buildDaemon(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "dovecot-kafka-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "dovecot-kafka")
		cmd := exec.Command("go", "build", "-o", binPath, ".")
		cmd.Dir = "../.."
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

type daemon struct {
	cmd *exec.Cmd
	log *os.File
}

func startDaemon(t *testing.T, bin, configPath, logPath string) *daemon {
	t.Helper()
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-config", configPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return &daemon{cmd: cmd, log: logFile}
}

// stop sends sig and waits for the exit status.
func (d *daemon) stop(t *testing.T, sig syscall.Signal) int {
	t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = d.cmd.Process.Kill()
		t.Fatal("daemon did not stop within 60s")
	}
	d.log.Close()
	return d.cmd.ProcessState.ExitCode()
}

func writeConfig(t *testing.T, dir, eventsFile, topic, extra string) string {
	t.Helper()
	cfg := fmt.Sprintf(`events_file = %q
checkpoint_file = %q
checkpoint_interval = "200ms"
log_format = "json"

[kafka]
brokers = %q

%s

[[driver]]
topic = %q
`, eventsFile, filepath.Join(dir, "checkpoint.json"), os.Getenv("KAFKA_BROKERS"), extra, topic)
	path := filepath.Join(dir, "dovecot-kafka.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// writer appends sequence-numbered MessageRead events for 50 users at a
// steady pace until stopped, and returns how many it wrote.
type writer struct {
	stop chan struct{}
	done chan int
}

func startWriter(t *testing.T, path string, perTick int) *writer {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	w := &writer{stop: make(chan struct{}), done: make(chan int, 1)}
	go func() {
		defer f.Close()
		n := 0
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		bw := bufio.NewWriter(f)
		for {
			select {
			case <-w.stop:
				bw.Flush()
				w.done <- n
				return
			case <-tick.C:
			}
			for i := 0; i < perTick; i++ {
				n++
				fmt.Fprintf(bw, `{"v":1,"time":1733331200,"user":"user-%d@example.test","event":"MessageRead","mailbox":"INBOX","uidvalidity":1,"uid":%d}`+"\n", n%50, n)
			}
			bw.Flush()
		}
	}()
	return w
}

func (w *writer) finish() int {
	close(w.stop)
	return <-w.done
}

func checkpointOffset(t *testing.T, dir string) int64 {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "checkpoint.json"))
	if err != nil {
		return -1
	}
	var cp struct{ Offset int64 }
	if err := json.Unmarshal(data, &cp); err != nil {
		return -1
	}
	return cp.Offset
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// consume reads the whole topic and returns the uid sequence per key. With
// committed it reads as a read_committed consumer (records of aborted
// transactions are skipped), as the exactly-once mode's consumers must;
// otherwise as the default read_uncommitted consumer of the at-least-once
// mode.
// A client that stalls short of want is replaced once by a fresh one,
// which reads the topic again from the start: a stalled client must not
// pass for lost records, and lost records stay lost for the second client.
func consume(t *testing.T, topic string, want int, committed bool) map[string][]int {
	t.Helper()
	got, total := consumeOnce(t, topic, want, committed)
	if total < want {
		t.Logf("consume %s: %d of %d records; reading again with a new client", topic, total, want)
		got, _ = consumeOnce(t, topic, want, committed)
	}
	return got
}

func consumeOnce(t *testing.T, topic string, want int, committed bool) (map[string][]int, int) {
	t.Helper()
	isolation := kgo.ReadUncommitted()
	if committed {
		isolation = kgo.ReadCommitted()
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(brokers(t), ",")...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(isolation),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := map[string][]int{}
	perPartition := map[int32]int{}
	total := 0
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	idle := 0
	for total < want || idle < 2 {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		fetches := cl.PollFetches(pctx)
		pcancel()
		if ctx.Err() != nil {
			t.Logf("consume %s: %d of %d records after 60s, per partition %v", topic, total, want, perPartition)
			break
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Logf("fetch %s[%d]: %v", topic, p, err)
			}
		})
		n := 0
		fetches.EachRecord(func(r *kgo.Record) {
			var v struct {
				User string `json:"user"`
				UID  int    `json:"uid"`
			}
			if err := json.Unmarshal(r.Value, &v); err != nil {
				t.Errorf("record is not JSON: %q", r.Value)
				return
			}
			if v.User != string(r.Key) {
				t.Errorf("key %q but user %q", r.Key, v.User)
			}
			got[v.User] = append(got[v.User], v.UID)
			perPartition[r.Partition]++
			n++
		})
		total += n
		if n == 0 && total >= want {
			idle++
		}
	}
	return got, total
}

// TestStopAndRestart stops the daemon with SIGTERM while a writer keeps
// appending, restarts it, and checks on Kafka that every event arrived
// exactly once and in order per user.
func TestStopAndRestart(t *testing.T) {
	lost, dup := restartRun(t, syscall.SIGTERM, "")
	if lost != 0 || dup != 0 {
		t.Fatalf("lost %d, duplicated %d; want none lost and none duplicated after clean stops", lost, dup)
	}
}

// TestKillAndRestart kills the daemon with SIGKILL while a writer keeps
// appending. Nothing may be lost; lines in flight since the last saved
// checkpoint may be published again (at least once).
func TestKillAndRestart(t *testing.T) {
	lost, _ := restartRun(t, syscall.SIGKILL, "")
	if lost != 0 {
		t.Fatalf("lost %d events after SIGKILL; want none", lost)
	}
}

// TestExactlyOnceAcrossKill runs the exactly-once mode through SIGKILLs: a
// read_committed consumer must see every event exactly once.
func TestExactlyOnceAcrossKill(t *testing.T) {
	extra := fmt.Sprintf(`
[exactly_once]
enabled = true
transactional_id = "integration-%d"
position_topic = "integration-positions"
commit_interval = "100ms"`, time.Now().UnixNano())
	lost, dup := restartRun(t, syscall.SIGKILL, extra)
	if lost != 0 || dup != 0 {
		t.Fatalf("exactly-once across SIGKILL: lost %d, duplicated %d; want none of either", lost, dup)
	}
}

// restartRun stops the daemon three times with sig while a writer keeps
// appending, lets a last run catch up, and returns how many events were
// lost and duplicated on Kafka. Per-user order is checked on the way.
func restartRun(t *testing.T, sig syscall.Signal, extraConfig string) (lost, dup int) {
	brokers(t)
	bin := buildDaemon(t)
	dir := t.TempDir()
	events := filepath.Join(dir, "events.jsonl")
	topic := fmt.Sprintf("restart-%d", time.Now().UnixNano())
	cfg := writeConfig(t, dir, events, topic, extraConfig)
	logPath := filepath.Join(dir, "daemon.log")
	t.Cleanup(func() {
		if t.Failed() {
			data, _ := os.ReadFile(logPath)
			t.Logf("daemon log:\n%s", data)
		}
	})

	w := startWriter(t, events, 20)
	stops := 3
	for i := 0; i < stops; i++ {
		d := startDaemon(t, bin, cfg, logPath)
		before := checkpointOffset(t, dir)
		waitFor(t, "the checkpoint to move", 60*time.Second, func() bool {
			return checkpointOffset(t, dir) > before
		})
		code := d.stop(t, sig)
		if sig == syscall.SIGTERM && code != 0 {
			t.Fatalf("stop %d: exit status %d, want 0", i, code)
		}
	}
	// A last run catches up with everything the writer wrote.
	d := startDaemon(t, bin, cfg, logPath)
	written := w.finish()
	fi, err := os.Stat(events)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the checkpoint to reach the end of the file", 120*time.Second, func() bool {
		return checkpointOffset(t, dir) == fi.Size()
	})
	if code := d.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("final stop: exit status %d, want 0", code)
	}

	// Only the exactly-once test adds configuration; its consumers read
	// committed records only.
	got := consume(t, topic, written, extraConfig != "")
	seen := make(map[int]int, written)
	total := 0
	for user, uids := range got {
		for i, uid := range uids {
			seen[uid]++
			total++
			// A duplicate after SIGKILL repeats a run of earlier
			// records; order is checked only against first sightings.
			if i > 0 && uid <= uids[i-1] && seen[uid] == 1 {
				t.Errorf("%s: uid %d after %d: out of order", user, uid, uids[i-1])
			}
		}
	}
	for uid := 1; uid <= written; uid++ {
		switch c := seen[uid]; {
		case c == 0:
			lost++
		case c > 1:
			dup += c - 1
		}
	}
	t.Logf("written %d, delivered %d, lost %d, duplicated %d, over %d restarts after %v", written, total, lost, dup, stops, sig)
	return lost, dup
}
