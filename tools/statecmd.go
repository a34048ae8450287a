package tools

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"dovecot-kafka/config"
	"dovecot-kafka/follow"
	"dovecot-kafka/parser"
	"dovecot-kafka/state"
)

const stateSynopsis = `
Usage: dovecot-kafka state [-config FILE] [-force] [show | set-offset N | set-time T | reset]

Shows or changes the daemon's checkpoint (checkpoint_file in the
configuration): the position in the events file up to which Kafka has
acknowledged every line.

  show          (the default) the checkpoint, whether the file at events_file
                is still the file it names, how many bytes and lines are not
                yet published, and whether a daemon holds the lock
  set-offset N  resume at byte offset N of the current events file; N must be
                0 or just past a newline
  set-time T    resume at the first line of the current events file whose
                event time is at or after T (RFC 3339, e.g.
                2026-12-04T10:00:00Z)
  reset         remove the checkpoint: the daemon then starts at the
                beginning of events_file (or where its -start-at says)

set-offset, set-time and reset refuse while a daemon holds the checkpoint's
lock: stop the daemon first. -force changes the checkpoint anyway, but a
running daemon overwrites it at its next save.

Examples:
  dovecot-kafka state -config /etc/dovecot-kafka/dovecot-kafka.toml
  dovecot-kafka state -config /etc/dovecot-kafka/dovecot-kafka.toml set-time 2026-12-04T10:00:00Z
`

// State runs the state command with args (the words after "state").
func State(args []string, stdio IO) int {
	c := newCommand("state", stdio, stateSynopsis)
	configPath := c.fs.String("config", DefaultConfig, "configuration `file` (TOML): events_file and checkpoint_file")
	force := c.fs.Bool("force", false, "change the checkpoint even while a daemon holds its lock")
	words, status, ok := c.parse(args)
	if !ok {
		return status
	}
	if len(words) == 0 {
		words = []string{"show"}
	}
	action, rest := words[0], words[1:]
	wantArgs := map[string]int{"show": 0, "set-offset": 1, "set-time": 1, "reset": 0}
	n, known := wantArgs[action]
	switch {
	case !known:
		return c.usageError("unknown action %q: use show, set-offset N, set-time T or reset", action)
	case len(rest) != n && n == 0:
		return c.usageError("%s takes no argument, got %q", action, rest)
	case len(rest) != n:
		return c.usageError("%s takes one argument, e.g. %s", action, map[string]string{
			"set-offset": "set-offset 1234", "set-time": "set-time 2026-12-04T10:00:00Z"}[action])
	}

	cfg, status, ok := c.loadConfig(*configPath)
	if !ok {
		return status
	}
	sc := &stateCmd{command: c, cfg: cfg, store: state.NewStore(cfg.CheckpointFile), force: *force}
	switch action {
	case "show":
		return sc.show()
	case "set-offset":
		off, err := strconv.ParseInt(rest[0], 10, 64)
		if err != nil || off < 0 {
			return c.usageError("set-offset %q: give a byte offset, e.g. set-offset 1234", rest[0])
		}
		return sc.setOffset(off, "")
	case "set-time":
		t, err := time.Parse(time.RFC3339Nano, rest[0])
		if err != nil {
			return c.usageError("set-time %q: give an RFC 3339 time with a zone, e.g. 2026-12-04T10:00:00Z", rest[0])
		}
		if err := checkInput(cfg); err != nil {
			return c.usageError("set-time: %v; use set-offset", err)
		}
		return sc.setTime(t)
	default:
		return sc.reset()
	}
}

type stateCmd struct {
	*command
	cfg   *config.Config
	store *state.Store
	force bool
}

// show prints the checkpoint and what it means now.
func (sc *stateCmd) show() int {
	w := sc.stdio.Out
	status := ExitOK
	fmt.Fprintf(w, "checkpoint   %s\n", sc.cfg.CheckpointFile)
	cp, err := sc.store.Load()
	var corrupt *state.CorruptError
	switch {
	case errors.Is(err, state.ErrNoCheckpoint):
		fmt.Fprintln(w, "state        none yet: the daemon starts at the beginning of events_file (or where -start-at says)")
		sc.showUnpublishedWhole(w)
	case errors.As(err, &corrupt):
		fmt.Fprintf(w, "state        unusable: %v\n", corrupt.Err)
		fmt.Fprintln(w, "             the daemon refuses to start until it is given -start-at, or the checkpoint is set or reset here")
		status = ExitFailed
	case err != nil:
		fmt.Fprintf(w, "state        unreadable: %v\n", err)
		status = ExitFailed
	default:
		fmt.Fprintf(w, "path         %s\n", cp.Path)
		fmt.Fprintf(w, "dev          %d\n", cp.Dev)
		fmt.Fprintf(w, "inode        %d\n", cp.Inode)
		fmt.Fprintf(w, "fingerprint  %016x (of the first %d bytes)\n", cp.Fingerprint, cp.FingerprintLen)
		fmt.Fprintf(w, "offset       %d\n", cp.Offset)
		fmt.Fprintf(w, "updated      %s (%s ago)\n", cp.Updated.UTC().Format(time.RFC3339), time.Since(cp.Updated).Round(time.Second))
		if cp.Path != sc.cfg.EventsFile {
			fmt.Fprintf(w, "             note: events_file is %s; the daemon looks for the checkpoint's file there\n", sc.cfg.EventsFile)
		}
		if err := sc.showFile(w, cp); err != nil {
			fmt.Fprintf(w, "file         cannot tell: %v\n", err)
			status = ExitFailed
		}
	}

	held, pid, err := sc.store.LockHolder()
	switch {
	case err != nil:
		fmt.Fprintf(w, "lock         cannot tell: %v\n", err)
	case held:
		fmt.Fprintf(w, "lock         held by process %s: a daemon is running with this checkpoint\n", pid)
	default:
		fmt.Fprintln(w, "lock         free: no daemon is running with this checkpoint")
	}
	if sc.cfg.ExactlyOnce.Enabled {
		fmt.Fprintf(w, "note         exactly_once is enabled: the daemon resumes from the position stored in Kafka (topic %s, key %s); this file is used only when Kafka holds none\n",
			sc.cfg.ExactlyOnce.PositionTopic, sc.cfg.ExactlyOnce.TransactionalID)
	}
	return status
}

// showFile says whether the file at events_file is the checkpoint's file,
// and counts what is not yet published: from the offset to the end of the
// checkpoint's file, plus all of the current file if the checkpoint names
// a rotated generation.
func (sc *stateCmd) showFile(w io.Writer, cp state.Checkpoint) error {
	path := sc.cfg.EventsFile
	cur, err := statInput(path)
	if errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(w, "file         %s does not exist (yet)\n", path)
		return nil
	}
	if err != nil {
		return err
	}

	where, err := locate(cur, cp)
	if err != nil {
		return err
	}
	switch where.kind {
	case fileCurrent:
		fmt.Fprintf(w, "file         %s is still the checkpoint's file (same device, inode and first bytes)\n", path)
		if cp.Offset > cur.size {
			fmt.Fprintf(w, "unpublished  cannot tell: the file (%d bytes) is shorter than the offset: it was truncated\n", cur.size)
			return nil
		}
		return sc.showUnpublished(w, []span{{cur, cp.Offset}},
			fmt.Sprintf("from offset %d to the end of %s", cp.Offset, path))
	case fileTruncated:
		fmt.Fprintf(w, "file         %s has the checkpoint's inode but other first bytes: it was truncated (copytruncate) and written again, or the inode was reused; the daemon looks for a copy of the old content, or reads the file from the beginning\n", path)
		return sc.showUnpublished(w, []span{{cur, 0}}, "all of "+path)
	case fileRotated:
		fmt.Fprintf(w, "file         %s is a newer file; the checkpoint's file is now %s (rotated)\n", path, where.rotated.name)
		return sc.showUnpublished(w, []span{{where.rotated, cp.Offset}, {cur, 0}},
			fmt.Sprintf("from offset %d to the end of %s, plus all of %s; generations rotated in between are not counted, although the daemon reads them too", cp.Offset, where.rotated.name, path))
	default:
		fmt.Fprintf(w, "file         %s is a newer file, and the checkpoint's file (inode %d) is not in %s any more (compressed or deleted): the daemon starts at the beginning of %s, and what it had not published from the old file must be replayed from its copy\n",
			path, cp.Inode, filepath.Dir(path), path)
		return sc.showUnpublished(w, []span{{cur, 0}}, "all of "+path+" (the old file's rest is not counted)")
	}
}

// showUnpublishedWhole counts all of events_file, for a missing checkpoint.
func (sc *stateCmd) showUnpublishedWhole(w io.Writer) {
	cur, err := statInput(sc.cfg.EventsFile)
	if err != nil {
		fmt.Fprintf(w, "unpublished  cannot tell: %v\n", err)
		return
	}
	if err := sc.showUnpublished(w, []span{{cur, 0}}, "all of "+cur.name); err != nil {
		fmt.Fprintf(w, "unpublished  cannot tell: %v\n", err)
	}
}

// span is a file from an offset to its end.
type span struct {
	in   *inputFile
	from int64
}

func (sc *stateCmd) showUnpublished(w io.Writer, spans []span, what string) error {
	var lines, size int64
	partial := false
	for _, s := range spans {
		c, err := s.in.open(s.from, nil)
		if err != nil {
			return fmt.Errorf("read %s: %w", s.in.name, err)
		}
		l, n, p, err := countLines(c)
		c.Close()
		if err != nil {
			return fmt.Errorf("read %s: %w", s.in.name, err)
		}
		lines, size, partial = lines+l, size+n, partial || p
	}
	fmt.Fprintf(w, "unpublished  %d bytes, %d lines: %s", size, lines, what)
	if partial {
		fmt.Fprint(w, " (the bytes include an incomplete last line)")
	}
	fmt.Fprintln(w)
	return nil
}

// fileKind is where the checkpoint's file is now.
type fileKind int

const (
	fileGone      fileKind = iota // not found
	fileCurrent                   // still at events_file
	fileTruncated                 // at events_file, other first bytes
	fileRotated                   // renamed, in the same directory
)

type location struct {
	kind    fileKind
	rotated *inputFile
}

// locate finds the checkpoint's file: the file at events_file (cur), or a
// file with its device, inode and first bytes in the same directory.
func locate(cur *inputFile, cp state.Checkpoint) (location, error) {
	if cur.dev == cp.Dev && cur.inode == cp.Inode {
		fp, ok, err := cur.fingerprint(cp.FingerprintLen)
		if err != nil {
			return location{}, fmt.Errorf("read %s: %w", cur.name, err)
		}
		if ok && fp == cp.Fingerprint {
			return location{kind: fileCurrent}, nil
		}
		return location{kind: fileTruncated}, nil
	}

	dir := filepath.Dir(cur.name)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return location{}, err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed since ReadDir
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok || uint64(st.Dev) != cp.Dev || st.Ino != cp.Inode {
			continue
		}
		in, err := statInput(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		if fp, ok, err := in.fingerprint(cp.FingerprintLen); err == nil && ok && fp == cp.Fingerprint {
			return location{kind: fileRotated, rotated: in}, nil
		}
	}
	return location{kind: fileGone}, nil
}

// lock takes the checkpoint's lock, or with -force goes on without it. ok
// is false when the command must stop with status.
func (sc *stateCmd) lock() (unlock func(), status int, ok bool) {
	if err := sc.checkDir(); err != nil {
		return nil, sc.errorf("%v", err), false
	}
	unlock, err := sc.store.Lock()
	switch {
	case err == nil:
		return unlock, 0, true
	case errors.Is(err, state.ErrLocked) && sc.force:
		sc.notef("warning: %v; going on because of -force: the running daemon keeps its position in memory and overwrites this change at its next checkpoint save", err)
		return func() {}, 0, true
	case errors.Is(err, state.ErrLocked):
		return nil, sc.errorf("%v: a daemon is running with this checkpoint; stop it first (e.g. systemctl stop dovecot-kafka), then run this again. (-force changes the file anyway, but the running daemon overwrites it at its next save.)", err), false
	case sc.force:
		sc.notef("warning: cannot take the checkpoint lock (%v); going on because of -force", err)
		return func() {}, 0, true
	default:
		return nil, sc.errorf("cannot take the checkpoint lock: %v", err), false
	}
}

// checkDir makes sure the checkpoint's directory exists, with a hint.
func (sc *stateCmd) checkDir() error {
	dir := filepath.Dir(sc.cfg.CheckpointFile)
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("checkpoint directory: %w (create it, owned by the user the daemon runs as)", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("checkpoint directory %s is not a directory", dir)
	}
	return nil
}

// setOffset saves a checkpoint at off in the current events file. why, if
// set, says how off was chosen.
func (sc *stateCmd) setOffset(off int64, why string) int {
	path := sc.cfg.EventsFile
	cur, err := statInput(path)
	if err != nil {
		return sc.errorf("events_file: %v", err)
	}
	if cur.gz {
		return sc.errorf("events_file %s is gzip-compressed; the daemon reads only plain files", path)
	}
	if err := cur.checkLineStart(off); err != nil {
		hint := "choose an offset where a line starts"
		if errors.Is(err, errPastEnd) {
			hint = fmt.Sprintf("the largest offset is the file's size, %d", cur.size)
		}
		return sc.usageError("set-offset %d: %v; %s", off, err, hint)
	}

	unlock, status, ok := sc.lock()
	if !ok {
		return status
	}
	defer unlock()
	if sc.cfg.ExactlyOnce.Enabled {
		sc.notef("warning: exactly_once is enabled: the daemon resumes from the position stored in Kafka (topic %s), not from this file, unless Kafka holds none; to move it, start the daemon once with -start-at %d", sc.cfg.ExactlyOnce.PositionTopic, off)
	}

	id, _, err := follow.Identify(path)
	if err != nil {
		return sc.errorf("events_file: %v", err)
	}
	cp := state.FromPosition(follow.Position{Path: path, File: id, Offset: off})
	if err := sc.store.Save(cp); err != nil {
		return sc.errorf("save the checkpoint: %v", err)
	}
	sc.fixOwner()
	msg := fmt.Sprintf("checkpoint %s set to offset %d of %s (inode %d)", sc.cfg.CheckpointFile, off, path, id.Inode)
	if why != "" {
		msg += ", " + why
	}
	sc.notef("%s; the daemon resumes there at its next start", msg)
	return ExitOK
}

// setTime sets the checkpoint at the first line of the current events file
// whose event time is at or after t.
func (sc *stateCmd) setTime(t time.Time) int {
	path := sc.cfg.EventsFile
	cur, err := statInput(path)
	if err != nil {
		return sc.errorf("events_file: %v", err)
	}
	off, lineTime, found, err := firstLineAtOrAfter(cur, t, sc.cfg.MaxLineBytes)
	if err != nil {
		return sc.errorf("%v", err)
	}
	why := fmt.Sprintf("the first line with an event time at or after %s (%s)", t.Format(time.RFC3339), time.Unix(lineTime, 0).UTC().Format(time.RFC3339))
	if !found {
		why = fmt.Sprintf("the end of its last complete line: no line has an event time at or after %s, so only lines written from now on are published", t.Format(time.RFC3339))
	}
	return sc.setOffset(off, why)
}

// firstLineAtOrAfter returns the offset of the first line of in whose
// event time is at or after t, or, if there is none, the end of the last
// complete line. Lines that do not parse are passed over.
func firstLineAtOrAfter(in *inputFile, t time.Time, maxLine int) (off, lineTime int64, found bool, err error) {
	c, err := in.open(0, nil)
	if err != nil {
		return 0, 0, false, fmt.Errorf("read %s: %w", in.name, err)
	}
	defer c.Close()

	b := bound{kind: boundTime, time: t}
	var p parser.Parser
	sc := newScanner(c, 0, maxLine)
	for {
		line, at, tooLong, err := sc.next()
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, errPartial):
			return at, 0, false, nil
		case err != nil:
			return 0, 0, false, fmt.Errorf("read %s at offset %d: %w", in.name, at, err)
		case tooLong:
			continue
		}
		ev, err := p.Parse(line)
		if err == nil && b.reached(ev.Time) {
			return at, ev.Time, true, nil
		}
	}
}

// reset removes the checkpoint.
func (sc *stateCmd) reset() int {
	unlock, status, ok := sc.lock()
	if !ok {
		return status
	}
	defer unlock()

	err := sc.store.Remove()
	if errors.Is(err, state.ErrNoCheckpoint) {
		sc.notef("there is no checkpoint at %s; nothing to remove", sc.cfg.CheckpointFile)
		return ExitOK
	}
	if err != nil {
		return sc.errorf("%v", err)
	}
	sc.fixOwner()
	sc.notef("checkpoint %s removed: at its next start the daemon begins at the beginning of %s (or where its -start-at says)", sc.cfg.CheckpointFile, sc.cfg.EventsFile)
	if sc.cfg.ExactlyOnce.Enabled {
		sc.notef("warning: exactly_once is enabled: the daemon resumes from the position stored in Kafka (topic %s) if there is one, not from the beginning", sc.cfg.ExactlyOnce.PositionTopic)
	}
	return ExitOK
}

// fixOwner gives the checkpoint and its lock file to the owner of their
// directory when run as root, so that a daemon running as that user can
// still read and replace them.
func (sc *stateCmd) fixOwner() {
	if os.Geteuid() != 0 {
		return
	}
	fi, err := os.Stat(filepath.Dir(sc.cfg.CheckpointFile))
	if err != nil {
		return
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return
	}
	for _, p := range []string{sc.cfg.CheckpointFile, sc.cfg.CheckpointFile + ".lock"} {
		if err := os.Chown(p, int(st.Uid), int(st.Gid)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			sc.notef("warning: cannot give %s to uid %d (the directory's owner): %v", p, st.Uid, err)
		}
	}
}
