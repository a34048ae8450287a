package tools

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"dovecot-kafka/state"
)

// boundKind is how a replay bound (-from, -to) is given.
type boundKind int

const (
	boundNone       boundKind = iota
	boundOffset               // a byte offset
	boundCheckpoint           // a checkpoint file's offset in the file it names
	boundTime                 // the first line whose event time is at or after it
)

// bound is one end of a replay range.
type bound struct {
	kind   boundKind
	text   string // as given, for messages
	offset int64  // boundOffset, and boundCheckpoint once read
	cpPath string
	cp     state.Checkpoint
	time   time.Time
}

// parseBound reads a -from or -to value: a byte offset ("1234"), a
// checkpoint file ("checkpoint:/var/lib/dovecot-kafka/checkpoint.json") or
// an RFC 3339 time ("2026-12-04T10:00:00Z").
func parseBound(flagName, s string) (bound, error) {
	b := bound{text: s}
	switch {
	case s == "":
		return b, nil
	case strings.HasPrefix(s, "checkpoint:"):
		b.kind = boundCheckpoint
		b.cpPath = strings.TrimPrefix(s, "checkpoint:")
		if b.cpPath == "" {
			return b, fmt.Errorf("%s %q: name the checkpoint file after \"checkpoint:\", e.g. checkpoint:/var/lib/dovecot-kafka/checkpoint.json", flagName, s)
		}
		// Load only reads the file: the daemon's checkpoint is never
		// opened for writing here.
		cp, err := state.NewStore(b.cpPath).Load()
		if err != nil {
			return b, fmt.Errorf("%s %s: %w", flagName, s, err)
		}
		b.cp, b.offset = cp, cp.Offset
		return b, nil
	case isDigits(s):
		off, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return b, fmt.Errorf("%s %q: offset out of range", flagName, s)
		}
		b.kind, b.offset = boundOffset, off
		return b, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return b, fmt.Errorf("%s %q: use a byte offset (1234), checkpoint:FILE, or an RFC 3339 time with a zone (2026-12-04T10:00:00Z or 2026-12-04T11:00:00+01:00)", flagName, s)
	}
	b.kind, b.time = boundTime, t
	return b, nil
}

func isDigits(s string) bool {
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// reached reports whether an event at Unix second t is at or after the
// time bound b.
func (b *bound) reached(t int64) bool {
	return !time.Unix(t, 0).Before(b.time)
}

// filePos is a position in one of the files given to replay.
type filePos struct {
	file   int   // index in the files
	offset int64 // content offset
	how    string
}

// matchCheckpoint finds the file among files that cp names: the file with
// cp's device and inode whose first bytes still have cp's fingerprint, or
// else (a renamed or compressed copy, which has another inode) the first
// file whose content starts with bytes of that fingerprint. how says which
// was chosen, and why.
func matchCheckpoint(cp state.Checkpoint, files []*inputFile) (filePos, error) {
	var byContent []int
	var reused []string
	for i, in := range files {
		fp, ok, err := in.fingerprint(cp.FingerprintLen)
		if err != nil {
			return filePos{}, fmt.Errorf("read %s: %w", in.name, err)
		}
		sameBytes := ok && fp == cp.Fingerprint
		if !in.gz && in.dev == cp.Dev && in.inode == cp.Inode {
			if sameBytes {
				how := fmt.Sprintf("matched %s by device and inode (%d/%d) and first bytes", in.name, cp.Dev, cp.Inode)
				return filePos{file: i, offset: cp.Offset, how: how}, nil
			}
			reused = append(reused, in.name)
			continue
		}
		if sameBytes && (in.gz || in.size >= cp.Offset) {
			byContent = append(byContent, i)
		}
	}

	switch {
	case len(byContent) > 0 && cp.FingerprintLen == 0:
		return filePos{}, errors.New("the checkpoint was taken in an empty file, so its content cannot identify a copy; give the file with its device and inode, or use a byte offset or a time")
	case len(byContent) > 0:
		i := byContent[0]
		how := fmt.Sprintf("matched %s by content: its first %d bytes have the checkpoint's fingerprint (device and inode %d/%d are not among the files: renamed or compressed copy)",
			files[i].name, cp.FingerprintLen, cp.Dev, cp.Inode)
		if len(byContent) > 1 {
			names := make([]string, 0, len(byContent)-1)
			for _, j := range byContent[1:] {
				names = append(names, files[j].name)
			}
			how += "; chose the first of several that match (also " + strings.Join(names, ", ") + ")"
		}
		return filePos{file: i, offset: cp.Offset, how: how}, nil
	}
	msg := fmt.Sprintf("the checkpoint names %s (device %d, inode %d, offset %d), which is none of the files given",
		cp.Path, cp.Dev, cp.Inode, cp.Offset)
	if len(reused) > 0 {
		msg += fmt.Sprintf("; %s has that inode but other first bytes (truncated, or a new file that reuses the inode)", strings.Join(reused, ", "))
	}
	return filePos{}, errors.New(msg + ": give that file, or its rotated or compressed copy, too")
}
