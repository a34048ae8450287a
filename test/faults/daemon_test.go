//go:build faults

package faults

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// buildDaemon compiles the daemon from the repository root into out.
func buildDaemon(root, out string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, ".")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build the daemon: go build: %v\n%s", err, b)
	}
	return nil
}

// daemonConfig is what the test configuration file sets.
type daemonConfig struct {
	events, checkpoint, deadLetter string
	brokers, topic                 string
	maxLineBytes                   int
	maxPendingLines                int // 0: the daemon's default
	flushMs                        int
}

func writeConfig(path string, c daemonConfig) error {
	var b strings.Builder
	fmt.Fprintf(&b, "events_file = %q\n", c.events)
	fmt.Fprintf(&b, "checkpoint_file = %q\n", c.checkpoint)
	fmt.Fprintf(&b, "dead_letter_file = %q\n", c.deadLetter)
	fmt.Fprintf(&b, "checkpoint_interval = %q\n", "200ms")
	fmt.Fprintf(&b, "max_line_bytes = %d\n", c.maxLineBytes)
	if c.maxPendingLines > 0 {
		fmt.Fprintf(&b, "max_pending_lines = %d\n", c.maxPendingLines)
	}
	fmt.Fprintf(&b, "log_level = %q\n", "info")
	fmt.Fprintf(&b, "log_format = %q\n", "json")
	fmt.Fprintf(&b, "\n[kafka]\nbrokers = %q\nflush_time_in_ms = %d\n", c.brokers, c.flushMs)
	fmt.Fprintf(&b, "\n[[driver]]\ntopic = %q\n", c.topic)
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// daemon is the daemon process, started and stopped as the faults demand.
// Its stdout and stderr are appended to one log file across restarts,
// with a marker line before each start.
type daemon struct {
	bin, cfg, logPath string

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{} // closed when the current process has exited
	stopping bool          // the harness asked it to exit
	starts   int
	crashes  []string // unexpected exits, described
}

// start starts the daemon; it must not be running.
func (d *daemon) start() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd != nil {
		select {
		case <-d.done:
		default:
			return errors.New("daemon already running")
		}
	}
	logf, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	d.starts++
	fmt.Fprintf(logf, "=== harness: daemon start %d at %s ===\n", d.starts, time.Now().Format(time.RFC3339Nano))

	cmd := exec.Command(d.bin, "-config", d.cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	// If the test binary dies, the daemon must not live on.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start the daemon: %w", err)
	}
	done := make(chan struct{})
	d.cmd, d.done, d.stopping = cmd, done, false
	go func() {
		_ = cmd.Wait()
		fmt.Fprintf(logf, "=== harness: daemon pid %d exited: %v ===\n", cmd.Process.Pid, cmd.ProcessState)
		logf.Close()
		close(done)
	}()
	return nil
}

// running reports whether a daemon process is alive.
func (d *daemon) running() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil {
		return false
	}
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// pid returns the process id of the running daemon, or 0.
func (d *daemon) pid() int {
	if !d.running() {
		return 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cmd.Process.Pid
}

// checkCrash reports an exit the harness did not ask for, once.
func (d *daemon) checkCrash() (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil || d.stopping {
		return "", false
	}
	select {
	case <-d.done:
	default:
		return "", false
	}
	d.stopping = true // reported
	msg := fmt.Sprintf("daemon (start %d, pid %d) exited on its own: %v", d.starts, d.cmd.Process.Pid, d.cmd.ProcessState)
	d.crashes = append(d.crashes, msg)
	return msg, true
}

// stop sends sig and waits up to timeout for the exit. It returns the exit
// code (-1 for a signal), or an error if the daemon had to be killed.
func (d *daemon) stop(sig syscall.Signal, timeout time.Duration) (int, error) {
	d.mu.Lock()
	cmd, done := d.cmd, d.done
	d.stopping = true
	d.mu.Unlock()
	if cmd == nil {
		return 0, errors.New("daemon was never started")
	}
	select {
	case <-done:
		return cmd.ProcessState.ExitCode(), errors.New("daemon had already exited")
	default:
	}
	if err := cmd.Process.Signal(sig); err != nil {
		return 0, err
	}
	select {
	case <-done:
		return cmd.ProcessState.ExitCode(), nil
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		return -1, fmt.Errorf("daemon did not exit within %v of %v; killed it", timeout, sig)
	}
}

// signal sends sig to the running daemon.
func (d *daemon) signal(sig syscall.Signal) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil {
		return errors.New("daemon was never started")
	}
	return d.cmd.Process.Signal(sig)
}

// kill ends the daemon, if it runs, without caring how.
func (d *daemon) kill() {
	if d.running() {
		_, _ = d.stop(syscall.SIGKILL, 10*time.Second)
	}
}

// checkpoint is the part of the daemon's checkpoint file the harness reads.
type checkpoint struct {
	Path    string    `json:"path"`
	Inode   uint64    `json:"inode"`
	Offset  int64     `json:"offset"`
	Updated time.Time `json:"updated"`
}

func readCheckpoint(path string) (checkpoint, error) {
	var cp checkpoint
	data, err := os.ReadFile(path)
	if err != nil {
		return cp, err
	}
	if err := json.Unmarshal(data, &cp); err != nil {
		return cp, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	return cp, nil
}

// inodeSize returns the inode number and size of the file at path.
func inodeSize(path string) (uint64, int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, errors.New("no inode number")
	}
	return st.Ino, fi.Size(), nil
}

// logExcerpt returns the last max lines of a daemon log that matter for a
// report: warnings, errors, lifecycle messages about files and
// checkpoints, anything that is not JSON (a panic), and the harness's own
// markers.
func logExcerpt(path string, max int) string {
	f, err := os.Open(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	defer f.Close()
	var keep []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if interesting(line) {
			keep = append(keep, line)
			if len(keep) > 4*max {
				keep = keep[len(keep)-max:]
			}
		}
	}
	if len(keep) > max {
		keep = keep[len(keep)-max:]
	}
	return strings.Join(keep, "\n")
}

func interesting(line string) bool {
	if !strings.HasPrefix(line, "{") {
		return true
	}
	var e struct {
		Level   string `json:"level"`
		Message string `json:"message"`
	}
	if json.Unmarshal([]byte(line), &e) != nil {
		return true
	}
	if e.Level != "info" && e.Level != "debug" {
		return true
	}
	m := strings.ToLower(e.Message)
	for _, w := range []string{"rotat", "truncat", "resum", "restart", "stopped", "start", "deleted", "appeared", "copy"} {
		if strings.Contains(m, w) {
			return true
		}
	}
	return false
}

// logHas reports whether the daemon log has a line at one of levels whose
// message contains substr (case-insensitive).
func logHas(path, substr string, levels ...string) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	substr = strings.ToLower(substr)
	for _, line := range bytes.Split(data, []byte("\n")) {
		var e struct {
			Level   string `json:"level"`
			Message string `json:"message"`
		}
		if json.Unmarshal(line, &e) != nil {
			continue
		}
		if !strings.Contains(strings.ToLower(e.Message), substr) {
			continue
		}
		for _, l := range levels {
			if e.Level == l {
				return true
			}
		}
	}
	return false
}

// vmRSS returns the resident set size of pid in KiB.
func vmRSS(pid int) (int64, error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, errors.New("no VmRSS line")
}

// rssSampler records the peak RSS of the daemon's current process.
type rssSampler struct {
	stopc   chan struct{}
	done    chan struct{}
	peakKiB int64
	samples int
}

func sampleRSS(d *daemon, every time.Duration) *rssSampler {
	s := &rssSampler{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if pid := d.pid(); pid != 0 {
				if kib, err := vmRSS(pid); err == nil {
					s.peakKiB = max(s.peakKiB, kib)
					s.samples++
				}
			}
			select {
			case <-s.stopc:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// stop ends sampling and returns the peak in KiB and the sample count.
func (s *rssSampler) stop() (int64, int) {
	close(s.stopc)
	<-s.done
	return s.peakKiB, s.samples
}

// readOnlyMethod is how a directory is made unwritable for root: the
// immutable attribute (chattr +i, e2fsprogs), or a read-only bind mount.
type readOnlyMethod string

const (
	roChattr readOnlyMethod = "chattr +i"
	roBind   readOnlyMethod = "read-only bind mount"
	roNone   readOnlyMethod = ""
)

// probeReadOnly finds a method that stops root from creating a file in a
// directory under work. If none works it says so in the test log; the
// read-only faults are then left out.
func probeReadOnly(t *testing.T, work string) readOnlyMethod {
	dir := filepath.Join(work, "ro-probe")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	var notes []string
	for _, m := range []readOnlyMethod{roChattr, roBind} {
		if err := setReadOnly(m, dir); err != nil {
			notes = append(notes, fmt.Sprintf("%s: %v", m, err))
			continue
		}
		werr := os.WriteFile(filepath.Join(dir, "x"), nil, 0o644)
		if err := clearReadOnly(m, dir); err != nil {
			t.Fatalf("cannot undo %s on %s: %v", m, dir, err)
		}
		if werr != nil {
			return m
		}
		notes = append(notes, fmt.Sprintf("%s: root could still create a file", m))
	}
	t.Logf("faults: WARNING: no way to make a directory read-only for root (%s); the read-only checkpoint faults are left out", strings.Join(notes, "; "))
	return roNone
}

func setReadOnly(m readOnlyMethod, dir string) error {
	switch m {
	case roChattr:
		return run("chattr", "+i", dir)
	case roBind:
		if err := run("mount", "--bind", dir, dir); err != nil {
			return err
		}
		if err := run("mount", "-o", "remount,bind,ro", dir); err != nil {
			_ = run("umount", dir)
			return err
		}
		return nil
	}
	return errors.New("no read-only method")
}

func clearReadOnly(m readOnlyMethod, dir string) error {
	switch m {
	case roChattr:
		return run("chattr", "-i", dir)
	case roBind:
		return run("umount", dir)
	}
	return nil
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}
