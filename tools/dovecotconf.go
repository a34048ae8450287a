package tools

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// doveSetting is one "key = value" line of a Dovecot configuration.
type doveSetting struct {
	key, value string
	line       int
	section    string // enclosing sections, e.g. "plugin" or "protocol lmtp/plugin"
}

// parseDovecotConf reads a Dovecot 2.3 configuration file or `doveconf -n`
// output and returns the settings of its plugin { } blocks, in file order.
// Comments, other sections and their settings are passed over; what it
// cannot follow (!include, values read from files) is reported through
// warn.
func parseDovecotConf(r io.Reader, warn func(format string, args ...any)) ([]doveSetting, error) {
	var (
		out     []doveSetting
		stack   []string // open sections, with their argument
		pending string   // a line continued with a trailing backslash
		pendAt  int
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		raw := sc.Text()
		if pending != "" {
			raw = pending + raw
		} else {
			pendAt = n
		}
		line := strings.TrimSpace(stripComment(raw))
		if strings.HasSuffix(line, `\`) {
			pending = strings.TrimSuffix(line, `\`)
			continue
		}
		pending = ""
		at := pendAt

		switch {
		case line == "":
			continue
		case strings.HasPrefix(line, "!include"):
			warn("line %d: %s is not followed: settings in included files are not imported; import the output of `doveconf -n` to get them", at, line)
			continue
		case line == "}":
			if len(stack) == 0 {
				warn("line %d: '}' without an open section; ignored", at)
				continue
			}
			stack = stack[:len(stack)-1]
			continue
		case strings.HasSuffix(line, "{"):
			name := strings.TrimSpace(strings.TrimSuffix(line, "{"))
			if name == "" {
				warn("line %d: section without a name; treated as one", at)
			}
			stack = append(stack, name)
			continue
		}

		key, value, ok := strings.Cut(line, "=")
		if !ok {
			warn("line %d: neither a setting nor a section: %q; ignored", at, line)
			continue
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if !inPlugin(stack) {
			continue
		}
		if strings.HasPrefix(value, "<") {
			warn("line %d: %s reads its value from the file %s, which is not followed; set it by hand", at, key, strings.TrimSpace(value[1:]))
			continue
		}
		out = append(out, doveSetting{key: key, value: unquote(value), line: at, section: strings.Join(stack, "/")})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(stack) > 0 {
		warn("end of input inside section %q: a '}' is missing", strings.Join(stack, "/"))
	}
	return out, nil
}

// inPlugin reports whether the innermost section is a plugin block.
func inPlugin(stack []string) bool {
	return len(stack) > 0 && stack[len(stack)-1] == "plugin"
}

// stripComment cuts line at the first '#' outside double quotes.
func stripComment(line string) string {
	quoted := false
	for i := 0; i < len(line); i++ {
		switch line[i] {
		case '\\':
			if quoted {
				i++
			}
		case '"':
			quoted = !quoted
		case '#':
			if !quoted {
				return line[:i]
			}
		}
	}
	return line
}

// unquote removes the double quotes around a value and its backslash
// escapes, as Dovecot reads them.
func unquote(v string) string {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return v
	}
	v = v[1 : len(v)-1]
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) {
			i++
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

// where says where a setting came from, for messages.
func (s doveSetting) where() string {
	return fmt.Sprintf("line %d", s.line)
}
