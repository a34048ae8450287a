//go:build faults

package faults

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// result is what the verifier found.
type result struct {
	written    int // good lines the writer wrote
	delivered  int // records on the topic, copies included
	lost       int // sequence numbers written but not on the topic
	duplicated int // extra copies on the topic
	outOfOrder int // per-user order violations among first sightings
	unexpected int // records that are neither a written line nor a bad line
	badOnKafka int // bad lines that reached the topic

	badInjected  int // bad lines the writer wrote
	deadLettered int // entries in the dead-letter file
	dlDistinct   int // injected bad lines found in it
	dlDuplicates int // entries beyond the first for the same bad line
	dlUnknown    int // entries that are not an injected bad line

	// harness lists what is wrong with the events files themselves: a
	// line the writer wrote that no file holds, or holds twice. Such a run
	// proves nothing about the daemon.
	harness []string

	lostAt     []string // where some lost lines are in the events files
	dupRuns    []string // the largest runs of consecutive duplicated uids
	orderAt    []string
	unexpAt    []string
	badAt      []string
	dlProblems []string
}

// where a line sits in the events files.
type lineLoc struct {
	rank int   // position in the order the daemon must read, from 0
	file int   // index in the files list
	off  int64 // byte offset in that file
}

// scanFiles reads the events files, oldest first, and returns where each
// sequence number is. It checks that every written line is in exactly one
// file, and every injected bad line too.
func scanFiles(files []string, written []bool, bad map[int]badKind) ([]lineLoc, []string) {
	locs := make([]lineLoc, len(written))
	for i := range locs {
		locs[i].rank = -1
	}
	var problems []string
	note := func(format string, args ...any) {
		if len(problems) < 20 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	badSeen := map[int]int{}
	rank := 0
	for fi, name := range files {
		f, err := os.Open(name)
		if errors.Is(err, fs.ErrNotExist) && fi == len(files)-1 {
			continue // no line written since the last rotation
		}
		if err != nil {
			note("open %s: %v", name, err)
			continue
		}
		br := bufio.NewReaderSize(f, 1<<20)
		var off int64
		for {
			line, err := br.ReadBytes('\n')
			if len(line) > 0 && line[len(line)-1] != '\n' {
				note("%s: partial last line at offset %d", filepath.Base(name), off)
			}
			if len(line) > 0 {
				if i := bytes.Index(line, []byte(badMarker)); i >= 0 {
					if id, ok := badID(line[i:]); ok {
						badSeen[id]++
					}
				} else {
					var v struct {
						UID int `json:"uid"`
					}
					switch {
					case json.Unmarshal(line, &v) != nil:
						note("%s: line at offset %d is not JSON: %.80q", filepath.Base(name), off, line)
					case v.UID < 1 || v.UID >= len(written):
						note("%s: uid %d at offset %d was never written", filepath.Base(name), v.UID, off)
					case locs[v.UID].rank >= 0:
						note("%s: uid %d at offset %d is also in %s", filepath.Base(name), v.UID, off, filepath.Base(files[locs[v.UID].file]))
					default:
						locs[v.UID] = lineLoc{rank: rank, file: fi, off: off}
						rank++
					}
				}
			}
			off += int64(len(line))
			if err == io.EOF {
				break
			}
			if err != nil {
				note("read %s: %v", name, err)
				break
			}
		}
		f.Close()
	}
	for seq, ok := range written {
		if ok && locs[seq].rank < 0 {
			note("uid %d was written but is in no events file", seq)
		}
	}
	for id := range bad {
		if badSeen[id] != 1 {
			note("bad line %d is in the events files %d times", id, badSeen[id])
		}
	}
	return locs, problems
}

var badIDPattern = regexp.MustCompile(`^` + badMarker + `([0-9]+)`)

// badID parses the id after badMarker at the start of b.
func badID(b []byte) (int, bool) {
	m := badIDPattern.FindSubmatch(b)
	if m == nil {
		return 0, false
	}
	id, err := strconv.Atoi(string(m[1]))
	return id, err == nil
}

// verifier compares what the writer wrote with what reached the topic,
// one record at a time (a long run has millions), and with the dead-letter
// file.
type verifier struct {
	files   []string
	written []bool
	bad     map[int]badKind
	locs    []lineLoc
	seen    []int32
	// Per user: the file order rank and uid of the last first sighting,
	// and the partition. A user's records are all in one partition, which
	// a consumer reads in offset order, so streaming is enough.
	lastRank map[string]int
	lastUID  map[string]int
	partOf   map[string]int32
	r        result
}

// newVerifier reads the events files (see scanFiles).
func newVerifier(files []string, written []bool, bad map[int]badKind) *verifier {
	v := &verifier{
		files:    files,
		written:  written,
		bad:      bad,
		seen:     make([]int32, len(written)),
		lastRank: map[string]int{},
		lastUID:  map[string]int{},
		partOf:   map[string]int32{},
	}
	for _, ok := range written {
		if ok {
			v.r.written++
		}
	}
	v.r.badInjected = len(bad)
	v.locs, v.r.harness = scanFiles(files, written, bad)
	return v
}

// add checks one record; records of a partition must come in offset order.
func (v *verifier) add(rec *kgo.Record) {
	r := &v.r
	r.delivered++
	if bytes.Contains(rec.Key, []byte(badMarker)) || bytes.Contains(rec.Value, []byte(badMarker)) {
		r.badOnKafka++
		if len(r.badAt) < 10 {
			r.badAt = append(r.badAt, fmt.Sprintf("partition %d offset %d: %.120q", rec.Partition, rec.Offset, rec.Value))
		}
		return
	}
	var e struct {
		User    string `json:"user"`
		Mailbox string `json:"mailbox"`
		Event   string `json:"event"`
		UID     int    `json:"uid"`
	}
	err := json.Unmarshal(rec.Value, &e)
	why := ""
	switch {
	case err != nil:
		why = "value is not JSON"
	case e.User != string(rec.Key):
		why = "key is not the user"
	case e.Event != "MessageRead" || e.Mailbox != "INBOX":
		why = "not the event written"
	case e.UID < 1 || e.UID >= len(v.written) || !v.written[e.UID]:
		why = "uid never written"
	case e.User != fmt.Sprintf("user-%d@example.test", e.UID%100):
		why = "user does not match the uid"
	}
	if p, ok := v.partOf[e.User]; ok && why == "" && p != rec.Partition {
		why = fmt.Sprintf("user also in partition %d", p)
	}
	if why != "" {
		r.unexpected++
		if len(r.unexpAt) < 10 {
			r.unexpAt = append(r.unexpAt, fmt.Sprintf("partition %d offset %d: %s: %.120q", rec.Partition, rec.Offset, why, rec.Value))
		}
		return
	}
	v.partOf[e.User] = rec.Partition

	v.seen[e.UID]++
	if v.seen[e.UID] > 1 {
		return // a replay; order is judged on first sightings
	}
	rank := v.locs[e.UID].rank
	if rank < 0 {
		return // reported by scanFiles
	}
	if last, ok := v.lastRank[e.User]; ok && rank < last {
		r.outOfOrder++
		if len(r.orderAt) < 10 {
			r.orderAt = append(r.orderAt, fmt.Sprintf("%s: uid %d (partition %d offset %d) after uid %d, but the file order is the reverse",
				e.User, e.UID, rec.Partition, rec.Offset, v.lastUID[e.User]))
		}
	}
	v.lastRank[e.User], v.lastUID[e.User] = rank, e.UID
}

// finish counts what never arrived and reads the dead-letter file.
func (v *verifier) finish(deadLetter string) result {
	r := &v.r
	for seq, ok := range v.written {
		switch {
		case !ok:
		case v.seen[seq] == 0:
			r.lost++
			if len(r.lostAt) < 20 {
				l := v.locs[seq]
				at := "in no file"
				if l.rank >= 0 {
					at = fmt.Sprintf("%s offset %d", filepath.Base(v.files[l.file]), l.off)
				}
				r.lostAt = append(r.lostAt, fmt.Sprintf("uid %d (%s)", seq, at))
			}
		case v.seen[seq] > 1:
			r.duplicated += int(v.seen[seq]) - 1
		}
	}
	r.dupRuns = dupRuns(v.seen, v.locs, v.files, 5)
	r.readDeadLetter(deadLetter, v.bad)
	return *r
}

// dupRuns describes the n longest runs of consecutive uids seen more than
// once, with where each run starts in the events files: a replay after a
// restart shows up as one run starting at a checkpoint.
func dupRuns(seen []int32, locs []lineLoc, files []string, n int) []string {
	type run struct{ from, to, copies int }
	var runs []run
	for seq := 1; seq < len(seen); seq++ {
		if seen[seq] < 2 {
			continue
		}
		// Lines that late writers put elsewhere may sit inside a run.
		if k := len(runs) - 1; k >= 0 && seq-runs[k].to <= 3 {
			runs[k].to = seq
			runs[k].copies += int(seen[seq]) - 1
			continue
		}
		runs = append(runs, run{seq, seq, int(seen[seq]) - 1})
	}
	sort.SliceStable(runs, func(i, j int) bool { return runs[i].copies > runs[j].copies })
	var out []string
	for _, r := range runs[:min(n, len(runs))] {
		at := "in no file"
		if l := locs[r.from]; l.rank >= 0 {
			at = fmt.Sprintf("%s offset %d", filepath.Base(files[l.file]), l.off)
		}
		out = append(out, fmt.Sprintf("uid %d-%d: %d extra copies, from %s", r.from, r.to, r.copies, at))
	}
	return out
}

// readDeadLetter counts the dead-letter file's entries and matches them
// with the injected bad lines.
func (r *result) readDeadLetter(path string, bad map[int]badKind) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		data, err = nil, nil
	}
	if err != nil {
		r.dlProblems = append(r.dlProblems, err.Error())
		return
	}
	count := map[int]int{}
	for _, line := range bytes.Split(data, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		r.deadLettered++
		var e struct {
			Reason string `json:"reason"`
			Line   string `json:"line"`
			Offset int64  `json:"offset"`
		}
		if err := json.Unmarshal(line, &e); err != nil {
			r.dlUnknown++
			r.dlProblems = append(r.dlProblems, fmt.Sprintf("entry is not JSON: %.120q", line))
			continue
		}
		id, ok := 0, false
		if i := strings.Index(e.Line, badMarker); i >= 0 {
			id, ok = badID([]byte(e.Line[i:]))
		}
		if !ok || bad[id] == "" {
			r.dlUnknown++
			if len(r.dlProblems) < 10 {
				r.dlProblems = append(r.dlProblems, fmt.Sprintf("entry is no injected bad line (offset %d, reason %q): %.120q", e.Offset, e.Reason, e.Line))
			}
			continue
		}
		count[id]++
	}
	for id, k := range bad {
		switch c := count[id]; {
		case c == 0:
			if len(r.dlProblems) < 10 {
				r.dlProblems = append(r.dlProblems, fmt.Sprintf("bad line %d (%s) is not in the dead-letter file", id, k))
			}
		default:
			r.dlDistinct++
			r.dlDuplicates += c - 1
		}
	}
}

// counts are the faults injected in one run.
type counts struct {
	rotations, lateLines, copytruncates, kills, terms, brokerOutages, readonly int
}

// summary is the one line a run reports.
func summary(seed uint64, dur string, c counts, r result, name string) string {
	return fmt.Sprintf("faults: seed=%d duration=%s written=%d delivered=%d lost=%d duplicated=%d dead_lettered=%d out_of_order=%d rotations=%d copytruncates=%d kills=%d terms=%d broker_outages=%d readonly=%d bad_injected=%d late_lines=%d test=%s",
		seed, dur, r.written, r.delivered, r.lost, r.duplicated, r.deadLettered, r.outOfOrder,
		c.rotations, c.copytruncates, c.kills, c.terms, c.brokerOutages, c.readonly, r.badInjected, c.lateLines, name)
}

// failures lists why the run fails. Duplicates on the topic fail it only
// when noDup is set (clean stops only); a bad line dead-lettered more than
// once is allowed when the daemon may legitimately have read it twice
// (after a SIGKILL or a restart from the checkpoint), like any line.
func (r result) failures(noDup, rereadAllowed bool) []string {
	var f []string
	if len(r.harness) > 0 {
		f = append(f, "HARNESS: the events files do not hold what the writer wrote, so this run proves nothing:\n  "+strings.Join(r.harness, "\n  "))
	}
	if r.written == 0 {
		f = append(f, "nothing was written")
	}
	if r.lost > 0 {
		f = append(f, fmt.Sprintf("lost %d events; some of them:\n  %s", r.lost, strings.Join(r.lostAt, "\n  ")))
	}
	if r.outOfOrder > 0 {
		f = append(f, fmt.Sprintf("%d per-user order violations:\n  %s", r.outOfOrder, strings.Join(r.orderAt, "\n  ")))
	}
	if r.badOnKafka > 0 {
		f = append(f, fmt.Sprintf("%d bad lines reached Kafka:\n  %s", r.badOnKafka, strings.Join(r.badAt, "\n  ")))
	}
	if r.unexpected > 0 {
		f = append(f, fmt.Sprintf("%d unexpected records on the topic:\n  %s", r.unexpected, strings.Join(r.unexpAt, "\n  ")))
	}
	if r.dlDistinct != r.badInjected || r.dlUnknown > 0 {
		f = append(f, fmt.Sprintf("dead-letter file: %d entries, %d of the %d injected bad lines, %d other entries:\n  %s",
			r.deadLettered, r.dlDistinct, r.badInjected, r.dlUnknown, strings.Join(r.dlProblems, "\n  ")))
	} else if r.deadLettered != r.badInjected && !rereadAllowed {
		f = append(f, fmt.Sprintf("dead-letter file: %d entries for %d injected bad lines (%d written twice) without any reason to read a line twice",
			r.deadLettered, r.badInjected, r.dlDuplicates))
	}
	if noDup && r.duplicated > 0 {
		f = append(f, fmt.Sprintf("%d duplicates after clean stops only; want none", r.duplicated))
	}
	return f
}
