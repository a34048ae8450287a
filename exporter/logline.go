package exporter

import "bytes"

// Dovecot's processes send their log lines to the log process through a
// pipe, one write(2) per line. A line longer than PIPE_BUF (4096 bytes on
// Linux) is sent in pieces of pipeBuf - 4 - len(pid) bytes of text, each
// with the same prefix (src/lib/failures.c, internal_send_split); the log
// process writes each piece as a line of its own. A pid has 1 to 7 digits.
const (
	pipeBuf     = 4096
	minChunkLen = pipeBuf - 4 - 7
	maxChunkLen = pipeBuf - 4 - 1
)

// isChunkLen reports whether a text of n bytes may be a piece of a longer
// message that continues on the next line of the same process.
func isChunkLen(n int) bool { return n >= minChunkLen && n <= maxChunkLen }

// statsInfo is what every line the stats process logs at level Info has
// after the timestamp: the process's log prefix and the level.
const statsInfo = "stats: Info: "

// statsInfoText returns the text of a line that the stats process logged
// at level Info (all the exporter's log transport writes), and whether
// line is one. Such a line is
//
//	<log_timestamp>stats: Info: <text>
//
// The part before "stats: " must look like a timestamp (digits, letters,
// spaces and -:./,+), so that no other process's line can pass for one:
// their prefixes hold a '(' or end in another name before the first ": ",
// and what a user controls comes only after that.
func statsInfoText(line []byte) ([]byte, bool) {
	i := bytes.Index(line, []byte(statsInfo))
	if i < 0 {
		return nil, false
	}
	if i > 0 && line[i-1] != ' ' {
		return nil, false // e.g. "xstats: Info: "
	}
	for _, c := range line[:i] {
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case c == ' ', c == '-', c == ':', c == '.', c == '/', c == ',', c == '+':
		default:
			return nil, false
		}
	}
	// A timestamp may hold ':' but never ": " (that would end the prefix
	// early); the first ": " must be the one after "stats".
	if bytes.Contains(line[:i], []byte(": ")) {
		return nil, false
	}
	return line[i+len(statsInfo):], true
}

// jsonScan follows the structure of a JSON text fed to it in pieces, enough
// to tell where the top-level value ends. It checks brackets and strings
// only; the complete message is decoded properly afterwards.
type jsonScan struct {
	depth   int
	inStr   bool
	escape  bool
	started bool
	done    bool
}

// scanResult says what feeding a piece to a jsonScan found.
type scanResult uint8

const (
	scanMore  scanResult = iota // the value continues after this piece
	scanEnd                     // the value ends exactly at the end of this piece
	scanExtra                   // the value ended before the end of this piece
	scanError                   // not a JSON value
)

// feed scans p, continuing from the state left by earlier pieces.
func (s *jsonScan) feed(p []byte) scanResult {
	for i := 0; i < len(p); i++ {
		c := p[i]
		if s.done {
			if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
				continue
			}
			return scanExtra
		}
		if s.inStr {
			switch {
			case s.escape:
				s.escape = false
			case c == '\\':
				s.escape = true
			case c == '"':
				s.inStr = false
			case c < 0x20:
				return scanError
			}
			continue
		}
		switch c {
		case '{', '[':
			s.depth++
			s.started = true
		case '}', ']':
			if s.depth == 0 {
				return scanError
			}
			s.depth--
			if s.depth == 0 {
				s.done = true
			}
		case '"':
			if !s.started {
				return scanError // the exporter writes an object
			}
			s.inStr = true
		case ' ', '\t', '\r', '\n':
		default:
			if !s.started {
				return scanError
			}
		}
	}
	if s.done {
		return scanEnd
	}
	return scanMore
}
