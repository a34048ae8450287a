//go:build faults

// Package faults injects faults into a running dovecot-kafka daemon and
// checks on a real Kafka broker that no event was lost.
//
// TestFaults builds the daemon, starts a private single-node broker through
// scripts/kafka.sh on 127.0.0.1:39092 (controller 127.0.0.1:39093) with its
// own run file and state directory, so that it can stop the broker and
// start it again on the same data, and runs these subtests one after the
// other:
//
//   - broker-down-at-start: the daemon starts before the broker.
//   - broker-outage: the broker stops for about 20 s mid-stream; the
//     daemon's peak RSS during the outage is reported.
//   - checkpoint-readonly: the checkpoint directory is made immutable for a
//     few seconds; publishing must go on and the checkpoint move later.
//   - sigterm-only: clean restarts only; nothing lost, nothing duplicated.
//   - copytruncate-behind: a fixed sequence of copytruncate and rename
//     rotations around a clean restart, which lost a generation in a long
//     random run.
//   - schedule: a writer appends sequence-numbered events while a seeded
//     random schedule rotates the file (rename-and-create with a late
//     writer, copytruncate), kills and stops the daemon, stops the broker,
//     makes the checkpoint directory read-only and injects bad lines.
//     Rotations come in three modes: with the daemon running, frozen
//     (SIGSTOP) from a little before to a little after, or stopped
//     (SIGTERM), so that it is behind the writer when the file moves.
//     rotate2 renames twice, further apart than the reader's grace period,
//     while the daemon is stopped.
//
// Each subtest ends the same way: the writer stops, the daemon catches up
// (its checkpoint names the current file at its size), it is stopped with
// SIGTERM, and the topic is consumed from the beginning (read_committed).
// One summary line is printed, to stdout as well as to the test log:
//
//	faults: seed=S duration=D written=W delivered=U lost=L duplicated=X dead_lettered=B out_of_order=O rotations=R copytruncates=C kills=K terms=T broker_outages=P readonly=Q
//
// followed by bad_injected, late_lines and the subtest's name. A subtest
// fails if an event written is not on the topic (lost), if a user's first
// sightings on the topic are not in the order of the events files, if a bad
// line reached the topic or a record is not one written, or if the
// dead-letter file does not hold exactly the bad lines injected (a bad line
// may be there twice only after a SIGKILL, a crash or a restart from the
// checkpoint, like any line). Duplicates on the topic fail sigterm-only and
// checkpoint-readonly; elsewhere they are reported, with the longest runs
// of them and where they start in the events files. Before judging the
// daemon, the verifier checks that the events files hold every line the
// writer wrote exactly once; if not, the harness is at fault and says so.
//
// The daemon runs with max_line_bytes=4096, checkpoint_interval=200ms and
// flush_time_in_ms=10000. The checkpoint directory is made read-only with
// chattr +i, or a read-only bind mount where chattr cannot (root ignores
// file modes); if neither works, the read-only faults are left out with a
// warning in the log.
//
// Environment:
//
//	FAULTS_SEED      seed of the random schedule (default: from the clock).
//	                 The seed is printed; setting it replays the same faults
//	                 at the same moments, though not the same interleaving
//	                 with the writer and the daemon.
//	FAULTS_DURATION  how long the schedule runs (default 90s)
//	FAULTS_RATE      events written per second (default 500)
//	FAULTS_KINDS     comma-separated fault kinds for the schedule (default
//	                 all): rotate, copytruncate, kill, term, broker,
//	                 readonly, badlines, rotate2
//	FAULTS_KEEP=1    keep the work directory (events files, daemon logs,
//	                 dead-letter files, broker log) and print where it is
//
// A missing java, mvn or kcat, or a broker that does not start, fails the
// test; nothing here skips.
package faults

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The private broker's listeners: 39092 and 39093, or FAULTS_PORT and the
// port after it, so that two runs can share a machine.
var brokerPort, controllerPort = faultsPorts()

func faultsPorts() (int, int) {
	if p, err := strconv.Atoi(os.Getenv("FAULTS_PORT")); err == nil && p > 0 && p < 65535 {
		return p, p + 1
	}
	return 39092, 39093
}

// settings are read from the environment once per test binary.
type settings struct {
	seed     uint64
	duration time.Duration
	rate     int
	kinds    []faultKind
	keep     bool
}

func loadSettings() (settings, error) {
	s := settings{
		seed:     uint64(time.Now().UnixNano()) % 1_000_000_000,
		duration: 90 * time.Second,
		rate:     500,
		kinds:    allKinds,
		keep:     os.Getenv("FAULTS_KEEP") == "1",
	}
	if v := os.Getenv("FAULTS_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return s, fmt.Errorf("FAULTS_SEED=%q: want an unsigned integer", v)
		}
		s.seed = n
	}
	if v := os.Getenv("FAULTS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return s, fmt.Errorf("FAULTS_DURATION=%q: want a positive duration such as 90s or 15m", v)
		}
		s.duration = d
	}
	if v := os.Getenv("FAULTS_RATE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 10 || n > 50000 {
			return s, fmt.Errorf("FAULTS_RATE=%q: want events per second between 10 and 50000", v)
		}
		s.rate = n
	}
	if v := os.Getenv("FAULTS_KINDS"); v != "" {
		s.kinds = nil
		for _, name := range strings.Split(v, ",") {
			k, ok := parseKind(strings.TrimSpace(name))
			if !ok {
				return s, fmt.Errorf("FAULTS_KINDS: unknown fault kind %q (known: %s)", name, kindNames())
			}
			s.kinds = append(s.kinds, k)
		}
	}
	return s, nil
}

// emergency holds what must be undone if the test binary is interrupted
// (SIGINT, SIGTERM) before the t.Cleanup functions run: daemons to kill,
// directories to make writable again, the broker to stop.
var emergency struct {
	mu    sync.Mutex
	next  int
	funcs map[int]func()
}

// onInterrupt registers f to run if the test binary is interrupted, and
// returns a function that unregisters it.
func onInterrupt(f func()) (cancel func()) {
	emergency.mu.Lock()
	defer emergency.mu.Unlock()
	if emergency.funcs == nil {
		emergency.funcs = map[int]func(){}
	}
	id := emergency.next
	emergency.next++
	emergency.funcs[id] = f
	return func() {
		emergency.mu.Lock()
		defer emergency.mu.Unlock()
		delete(emergency.funcs, id)
	}
}

func TestMain(m *testing.M) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		fmt.Fprintf(os.Stderr, "faults: %v: cleaning up daemons, read-only directories and the broker\n", sig)
		emergency.mu.Lock()
		// Newest first, like t.Cleanup: daemons before the broker.
		for id := emergency.next - 1; id >= 0; id-- {
			if f, ok := emergency.funcs[id]; ok {
				f()
			}
		}
		os.Exit(2)
	}()
	os.Exit(m.Run())
}

// suite is what the subtests of TestFaults share: settings, the daemon
// binary and the broker.
type suite struct {
	set    settings
	root   string // repository root
	work   string // work directory
	bin    string // the daemon binary
	broker *broker
	ro     readOnlyMethod
}

// TestFaults runs every fault scenario against one private broker; see the
// package documentation.
func TestFaults(t *testing.T) {
	s := newSuite(t)
	t.Run("broker-down-at-start", s.testBrokerDownAtStart)
	t.Run("broker-outage", s.testBrokerOutage)
	t.Run("checkpoint-readonly", s.testCheckpointReadOnly)
	t.Run("sigterm-only", s.testSIGTERMOnly)
	t.Run("copytruncate-behind", s.testCopyTruncateBehind)
	t.Run("schedule", s.testSchedule)
}

func newSuite(t *testing.T) *suite {
	set, err := loadSettings()
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range []struct{ name, use string }{
		{"java", "to run the broker"},
		{"mvn", "to fetch the broker's jars"},
		{"kcat", "to see when the broker is ready"},
	} {
		if _, err := exec.LookPath(tool.name); err != nil {
			t.Fatalf("%s not found on PATH: scripts/kafka.sh needs it %s (install it with scripts/install-deps.sh)", tool.name, tool.use)
		}
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}

	s := &suite{set: set, root: root}
	if set.keep {
		s.work, err = os.MkdirTemp("", "dovecot-kafka-faults-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { t.Logf("work directory kept: %s", s.work) })
	} else {
		s.work = t.TempDir()
	}
	t.Logf("faults: seed=%d (FAULTS_SEED=%d replays this schedule), duration %v, %d events/s, work directory %s",
		set.seed, set.seed, set.duration, set.rate, s.work)

	s.bin = filepath.Join(s.work, "dovecot-kafka")
	if err := buildDaemon(root, s.bin); err != nil {
		t.Fatal(err)
	}

	s.ro = probeReadOnly(t, s.work)

	s.broker = newBroker(root, s.work)
	cancel := onInterrupt(func() { _ = s.broker.destroy() })
	t.Cleanup(func() {
		cancel()
		if err := s.broker.destroy(); err != nil {
			t.Errorf("stop the broker: %v", err)
		}
	})
	return s
}

// rng returns the random source of one subtest, derived from the seed so
// that every subtest replays on its own.
func (s *suite) rng(subtest string) *rand.Rand {
	var h uint64 = 14695981039346656037
	for _, c := range []byte(subtest) {
		h = (h ^ uint64(c)) * 1099511628211
	}
	return rand.New(rand.NewPCG(s.set.seed, h))
}

// softDeadline returns when a wait of up to d must give up so that the
// test still has time to clean up before go test's -timeout panics (a
// panic skips t.Cleanup and would leave the broker running).
func softDeadline(t *testing.T, d time.Duration) time.Time {
	end := time.Now().Add(d)
	if dl, ok := t.Deadline(); ok && dl.Add(-45*time.Second).Before(end) {
		end = dl.Add(-45 * time.Second)
	}
	return end
}
