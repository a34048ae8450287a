package tools

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// progress prints a line with bytes done, rate and ETA every second to a
// terminal, overwriting itself, until stop.
type progress struct {
	w     io.Writer
	total int64         // bytes on disk to read, at most
	base  int64         // bytes skipped at the start, not part of the rate
	disk  *atomic.Int64 // bytes read from disk so far
	lines *atomic.Int64
	start time.Time
	done  chan struct{}
	wg    sync.WaitGroup
}

func startProgress(w io.Writer, total, base int64, disk, lines *atomic.Int64) *progress {
	p := &progress{w: w, total: total, base: base, disk: disk, lines: lines, start: time.Now(), done: make(chan struct{})}
	p.wg.Add(1)
	go p.loop()
	return p
}

func (p *progress) loop() {
	defer p.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			fmt.Fprint(p.w, "\r\033[K") // clear the line for the summary
			return
		case now := <-t.C:
			line := formatProgress(p.disk.Load()-p.base, p.total-p.base, p.lines.Load(), now.Sub(p.start))
			fmt.Fprint(p.w, "\r\033[K"+line)
		}
	}
}

func (p *progress) stop() {
	close(p.done)
	p.wg.Wait()
}

// formatProgress renders one progress line: done of total bytes, lines,
// the rate and the time left at that rate.
func formatProgress(done, total, lines int64, elapsed time.Duration) string {
	secs := elapsed.Seconds()
	if secs <= 0 {
		secs = 1e-9
	}
	s := fmt.Sprintf("replay: %s of %s", formatBytes(done), formatBytes(total))
	if total > 0 {
		s += fmt.Sprintf(" (%d%%)", min(done*100/total, 100))
	}
	s += fmt.Sprintf(", %d lines, %.0f lines/s, %s/s", lines, float64(lines)/secs, formatBytes(int64(float64(done)/secs)))
	if done > 0 && total > done {
		left := time.Duration(float64(total-done) / (float64(done) / secs) * float64(time.Second))
		s += ", ETA " + left.Round(time.Second).String()
	}
	return s
}

// formatBytes renders n with a binary unit.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
