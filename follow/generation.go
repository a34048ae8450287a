package follow

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A generation is one file of the events file's rotation: the file at the
// path, or one rotated away from it, such as events.jsonl.1 or
// events.jsonl-20261204. The package doc says in which order the reader
// reads them.

const (
	// maxFinished is how many files left since Open the reader remembers,
	// so as never to read one of them again as a generation.
	maxFinished = 64
	// maxGzipChecks bounds how many gzip files are opened to find the
	// compressed copy of a deleted generation.
	maxGzipChecks = 64
	// maxGap bounds how far apart two numbered generations may be for the
	// numbers between them to count as missing generations.
	maxGap = 1000
	// maxListAttempts is how often the directory is listed again when a
	// generation was renamed or removed between the listing and its opening.
	maxListAttempts = 5
)

// useBirthTime makes new Readers order generations by birth time where the
// file system records it. Tests turn it off to exercise the order by name.
var useBirthTime = true

// gen is a file in the events file's directory whose name makes it a
// generation of the events file, as the directory listing showed it.
type gen struct {
	name       string // the file's path
	rank       rank   // its place in the rotation by name
	compressed bool   // the name ends like a compressed file
	dev, ino   uint64
	size       int64
	mtime      time.Time
	btime      time.Time // birth time; zero if unknown or not asked for
}

// rankKind tells how a generation's name places it in the rotation.
type rankKind int

const (
	rankOther    rankKind = iota // a date or other suffix: older the earlier it sorts
	rankNumbered                 // .N: older the larger N is
	rankCurrent                  // the events file's own name: the newest
)

// rank is a generation's place in the rotation as its name tells; see
// compareRank.
type rank struct {
	kind   rankKind
	num    uint64 // rankNumbered: N in .N
	suffix string // rankOther: the suffix after the events file's name
}

// parseRank returns the place in the rotation of the file called name (no
// directory) next to the events file called base, and whether name ends
// like a compressed file. ok is false if name is not that of a generation:
// base itself, or base followed by a suffix that starts with '.', '-' or '_'
// and holds a digit (before any compression ending). The digit keeps out
// files such as events.jsonl.pos or events.jsonl.tmp.
func parseRank(base, name string) (r rank, compressed, ok bool) {
	suffix, found := strings.CutPrefix(name, base)
	if !found {
		return rank{}, false, false
	}
	if ext := compressedExt(suffix); ext != "" {
		compressed = true
		suffix = strings.TrimSuffix(suffix, ext)
	}
	if suffix == "" {
		return rank{kind: rankCurrent}, compressed, true
	}
	if !strings.ContainsAny(suffix[:1], ".-_") || !strings.ContainsAny(suffix, "0123456789") {
		return rank{}, false, false
	}
	if suffix[0] == '.' && len(suffix) <= 19 && isDigits(suffix[1:]) {
		n, err := strconv.ParseUint(suffix[1:], 10, 64)
		if err == nil {
			return rank{kind: rankNumbered, num: n}, compressed, true
		}
	}
	return rank{kind: rankOther, suffix: suffix}, compressed, true
}

// compareRank compares the places of two generations in the rotation: it
// returns a negative number if a is older than b, a positive one if a is
// newer, and 0 for the same place. Dated (other) suffixes count as older
// than numbered ones, and the events file itself is the newest.
func compareRank(a, b rank) int {
	if c := cmp.Compare(a.kind, b.kind); c != 0 {
		return c
	}
	switch a.kind {
	case rankNumbered:
		return cmp.Compare(b.num, a.num)
	case rankOther:
		return cmp.Or(naturalCompare(a.suffix, b.suffix), strings.Compare(a.suffix, b.suffix))
	}
	return 0
}

// naturalCompare compares a and b byte by byte, except that runs of digits
// compare as numbers: -20261204-9 sorts before -20261204-10. Leading zeros
// do not count, so that "-01" and "-1" compare equal.
func naturalCompare(a, b string) int {
	for a != "" && b != "" {
		if isDigit(a[0]) && isDigit(b[0]) {
			da, db := digitRun(a), digitRun(b)
			na, nb := strings.TrimLeft(da, "0"), strings.TrimLeft(db, "0")
			if c := cmp.Or(cmp.Compare(len(na), len(nb)), strings.Compare(na, nb)); c != 0 {
				return c
			}
			a, b = a[len(da):], b[len(db):]
			continue
		}
		if c := cmp.Compare(a[0], b[0]); c != 0 {
			return c
		}
		a, b = a[1:], b[1:]
	}
	return cmp.Compare(len(a), len(b))
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// isDigits reports whether s is a non-empty run of decimal digits.
func isDigits(s string) bool {
	return s != "" && len(digitRun(s)) == len(s)
}

// digitRun returns the decimal digits at the start of s.
func digitRun(s string) string {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return s[:i]
}

// listGenerations returns the regular files in dir that are generations of
// the events file called base, compressed ones included. With birth set, it
// asks for the birth time of the uncompressed rotated-away ones.
func listGenerations(dir, base string, birth bool) ([]gen, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var gens []gen
	for _, e := range entries {
		rk, compressed, ok := parseRank(base, e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed since ReadDir
		}
		dev, ino, _, ok := sysInfo(fi)
		if !ok {
			continue
		}
		g := gen{
			name:       filepath.Join(dir, e.Name()),
			rank:       rk,
			compressed: compressed,
			dev:        dev,
			ino:        ino,
			size:       fi.Size(),
			mtime:      fi.ModTime(),
		}
		if birth && !compressed && rk.kind != rankCurrent {
			g.btime = birthTime(g.name)
		}
		gens = append(gens, g)
	}
	return gens, nil
}

// leftFile is what the reader knows of a file it left, to find the
// generation that follows it and never to read it again.
type leftFile struct {
	id FileID
	// byHead reports that the first bytes id's fingerprint covers hold a
	// whole line, so that another file that starts with them is a copy.
	// Fewer bytes (a file left with part of its first line) could be the
	// start of any file; only the same inode then tells.
	byHead bool
	btime  time.Time // zero if unknown
	mtime  time.Time
}

// is reports whether the file with device dev, inode ino and first bytes
// head is l, under whatever name, or a copy of it.
func (l leftFile) is(dev, ino uint64, head []byte) bool {
	if l.id.Dev == dev && l.id.Inode == ino {
		return l.id.FingerprintLen == 0 || sameHead(head, l.id)
	}
	return l.byHead && sameHead(head, l.id)
}

// headHoldsLine reports whether the first bytes of f that id's fingerprint
// covers hold a '\n'.
func headHoldsLine(f *os.File, id FileID) bool {
	head, err := readHead(f)
	n := id.FingerprintLen
	return err == nil && n > 0 && n <= len(head) && bytes.IndexByte(head[:n], '\n') >= 0
}

// missedGen is a generation that was gone before the reader got to it.
type missedGen struct {
	name   string
	size   int64 // -1 if unknown
	reason string
}

// successor is the file to read after a rotated-away one.
type successor struct {
	f      *os.File // nil: no rotated generation follows and the path is missing
	name   string
	atPath bool // f is the file at the path, not a rotated generation
	missed []missedGen
}

// close closes the file of s, if any.
func (s successor) close() {
	if s.f != nil {
		s.f.Close()
	}
}

// errDirChanging means that generations kept being renamed or removed while
// the reader looked for the next one; it tries again later.
var errDirChanging = errors.New("follow: generations renamed while looking for the next one")

// findSuccessor returns the generation to read after left: the oldest
// rotated generation created after it (see nextCandidates) that is neither
// left, nor a file isFinished reports, nor a copy of left, or else the file
// at path. It also returns the generations between the two that are gone
// (see missedBetween). birth enables the use of birth times.
func findSuccessor(
	path string,
	left leftFile,
	birth bool,
	isFinished func(dev, ino uint64, head []byte) bool,
) (successor, error) {
	dir, base := filepath.Dir(path), filepath.Base(path)

	// The path is opened before the directory is listed: a file rotated
	// away from it after that shows in the listing and is read first.
	cur, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		cur = nil
	} else if err != nil {
		return successor{}, err
	}
	var curDev, curIno uint64
	if cur != nil {
		fi, err := cur.Stat()
		if err != nil {
			cur.Close()
			return successor{}, fmt.Errorf("stat %s: %w", path, err)
		}
		curDev, curIno, _, _ = sysInfo(fi)
	}

	for range maxListAttempts {
		gens, err := listGenerations(dir, base, birth)
		if err != nil {
			closeFile(cur)
			return successor{}, fmt.Errorf("list rotated generations: %w", err)
		}
		leftRank, rankKnown := findLeftRank(gens, left)

		cands := nextCandidates(gens, left, leftRank, rankKnown, curDev, curIno)
		f, g, err := openNext(cands, left, isFinished)
		if errors.Is(err, errDirChanging) {
			continue
		}
		if err != nil {
			closeFile(cur)
			return successor{}, err
		}

		s := successor{f: f, name: g.name}
		nextRank := g.rank
		if f == nil {
			s = successor{f: cur, name: path, atPath: true}
			nextRank = rank{kind: rankCurrent}
		} else {
			closeFile(cur)
		}
		if rankKnown {
			s.missed = missedBetween(gens, base, dir, leftRank, nextRank)
		}
		return s, nil
	}
	closeFile(cur)
	return successor{}, errDirChanging
}

// closeFile closes f if it is not nil.
func closeFile(f *os.File) {
	if f != nil {
		f.Close()
	}
}

// nextCandidates returns the uncompressed rotated generations that may
// follow left, oldest first. By name when left's place among the names is
// known: those after it. Names, not birth times, because a copytruncate
// copy is born after the file it copies yet holds older lines, and would
// otherwise be taken for a later generation (and read again after a
// restart). When left cannot be placed by name, by birth time if it is
// known for left and for all of them (those created after left), else
// those modified no earlier than left. The file at the path (by name, or
// by device and inode in case it was renamed since it was opened) is left
// out: it always comes last.
func nextCandidates(
	gens []gen,
	left leftFile,
	leftRank rank,
	rankKnown bool,
	curDev, curIno uint64,
) []gen {
	var cands []gen
	byBirth := !rankKnown && !left.btime.IsZero()
	for _, g := range gens {
		if g.compressed || g.rank.kind == rankCurrent || (g.dev == curDev && g.ino == curIno) {
			continue
		}
		if g.btime.IsZero() {
			byBirth = false
		}
		cands = append(cands, g)
	}

	byName := func(g gen) bool {
		if rankKnown {
			return compareRank(g.rank, leftRank) > 0
		}
		return !g.mtime.Before(left.mtime)
	}
	cands = slices.DeleteFunc(cands, func(g gen) bool {
		if byBirth {
			if c := g.btime.Compare(left.btime); c != 0 {
				return c < 0
			}
		}
		return !byName(g)
	})
	slices.SortFunc(cands, func(a, b gen) int {
		c := 0
		if byBirth {
			c = a.btime.Compare(b.btime)
		}
		return cmp.Or(
			c,
			compareRank(a.rank, b.rank),
			a.mtime.Compare(b.mtime),
			strings.Compare(a.name, b.name),
		)
	})
	return cands
}

// openNext opens the first of cands that is still the file the listing
// showed, is not finished, and is neither left under another name nor a
// copy of it. It returns a nil file if there is none, and errDirChanging if
// a candidate was renamed or removed since the listing: the caller lists
// again, so as not to skip it.
func openNext(
	cands []gen,
	left leftFile,
	isFinished func(dev, ino uint64, head []byte) bool,
) (*os.File, gen, error) {
	for _, g := range cands {
		f, err := os.Open(g.name)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, gen{}, errDirChanging
		}
		if err != nil {
			return nil, gen{}, err // names the file
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, gen{}, fmt.Errorf("stat %s: %w", g.name, err)
		}
		dev, ino, _, ok := sysInfo(fi)
		if !ok || dev != g.dev || ino != g.ino {
			f.Close()
			return nil, gen{}, errDirChanging
		}
		head, err := readHead(f)
		if err != nil {
			f.Close()
			return nil, gen{}, fmt.Errorf("read first bytes of %s: %w", g.name, err)
		}
		if left.is(dev, ino, head) || isFinished(dev, ino, head) {
			f.Close()
			continue
		}
		return f, g, nil
	}
	return nil, gen{}, nil
}

// findLeftRank returns the place in the rotation of the file left: that of
// its current name, or, if it has none left (it was compressed and
// deleted), that of the gzip file whose decompressed first bytes are left's.
// ok is false if neither is found.
func findLeftRank(gens []gen, left leftFile) (rank, bool) {
	for _, g := range gens {
		if g.compressed || g.dev != left.id.Dev || g.ino != left.id.Inode {
			continue
		}
		f, err := os.Open(g.name)
		if err != nil {
			continue
		}
		ok, _, err := matches(f, left.id)
		f.Close()
		if err == nil && ok {
			return g.rank, true
		}
	}

	if !left.byHead {
		return rank{}, false // nothing to recognise a copy by
	}
	var gz []gen
	for _, g := range gens {
		if g.compressed && strings.HasSuffix(g.name, ".gz") {
			gz = append(gz, g)
		}
	}
	// Newest first: the file just left is usually among the last rotated.
	slices.SortFunc(gz, func(a, b gen) int { return compareRank(b.rank, a.rank) })
	for _, g := range gz[:min(len(gz), maxGzipChecks)] {
		head, err := gunzipHead(g.name, left.id.FingerprintLen)
		if err == nil && sameHead(head, left.id) {
			return g.rank, true
		}
	}
	return rank{}, false
}

// gunzipHead returns the first n bytes of the decompressed content of the
// gzip file name, or fewer if it is shorter.
func gunzipHead(name string, n int) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	z, err := gzip.NewReader(f)
	if err != nil {
		return nil, err
	}
	b := make([]byte, n)
	got, err := io.ReadFull(z, b)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return b[:got], nil
}

// missedBetween returns the generations that lay between left and next in
// the rotation and are gone: compressed files with no uncompressed file of
// the same place, and, for numbered suffixes, numbers no file has at all
// (the generation was deleted). Names outside a numbered sequence cannot
// show a deletion.
func missedBetween(gens []gen, base, dir string, left, next rank) []missedGen {
	if compareRank(left, next) >= 0 {
		return nil
	}
	var missed []missedGen
	for _, g := range gens {
		if !g.compressed || compareRank(left, g.rank) >= 0 || compareRank(g.rank, next) >= 0 {
			continue
		}
		plain := slices.ContainsFunc(gens, func(o gen) bool {
			return !o.compressed && compareRank(o.rank, g.rank) == 0
		})
		if !plain {
			missed = append(missed, missedGen{g.name, g.size, "compressed"})
		}
	}

	if left.kind == rankNumbered && (next.kind == rankNumbered || next.kind == rankCurrent) {
		lo := uint64(0) // the file at the path: numbering starts at 1
		if next.kind == rankNumbered {
			lo = next.num
		}
		if left.num-lo <= maxGap {
			for k := left.num - 1; k > lo; k-- {
				present := slices.ContainsFunc(gens, func(g gen) bool {
					return g.rank.kind == rankNumbered && g.rank.num == k
				})
				if !present {
					name := filepath.Join(dir, base+"."+strconv.FormatUint(k, 10))
					missed = append(missed, missedGen{name, -1, "deleted"})
				}
			}
		}
	}

	// Oldest first, as they would have been read.
	slices.SortStableFunc(missed, func(a, b missedGen) int {
		ra, _, _ := parseRank(base, filepath.Base(a.name))
		rb, _, _ := parseRank(base, filepath.Base(b.name))
		return compareRank(ra, rb)
	})
	return missed
}

// readHead returns the first FingerprintMax bytes of f, or fewer if it is
// shorter.
func readHead(f *os.File) ([]byte, error) {
	b := make([]byte, FingerprintMax)
	n, err := f.ReadAt(b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return b[:n], nil
}

// sameHead reports whether head starts with the bytes id's fingerprint
// covers. A fingerprint of no bytes matches nothing: an empty file has no
// first bytes to recognise a copy by.
func sameHead(head []byte, id FileID) bool {
	n := id.FingerprintLen
	return n > 0 && n <= len(head) && fingerprint(head[:n]) == id.Fingerprint
}
