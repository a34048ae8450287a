package tools

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"dovecot-kafka/config"
)

// IO is where a command reads its input and writes its output.
type IO struct {
	In  io.Reader // import reads a Dovecot configuration from it ("-")
	Out io.Writer // results: records of a dry run, settings, TOML
	Err io.Writer // diagnostics, progress and summaries
}

// StdIO returns the process's standard input, output and error.
func StdIO() IO { return IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr} }

// Exit statuses of the commands.
const (
	ExitOK     = 0 // all is well
	ExitFailed = 1 // the command ran and something failed, or problems were found
	ExitUsage  = 2 // bad flags or arguments; nothing was done
)

// DefaultConfig is the configuration file read when -config is not given,
// the same as the daemon's.
const DefaultConfig = "/etc/dovecot-kafka/dovecot-kafka.toml"

// command is what the commands share: their name and where they write.
type command struct {
	name  string
	stdio IO
	fs    *flag.FlagSet
}

// newCommand returns a command whose flag set prints usage, synopsis
// first, then the flags, to stdio.Err.
func newCommand(name string, stdio IO, synopsis string) *command {
	stdio.Err = &syncWriter{w: stdio.Err} // progress, notes and the Kafka client's log share it
	c := &command{name: name, stdio: stdio, fs: flag.NewFlagSet(name, flag.ContinueOnError)}
	c.fs.SetOutput(stdio.Err)
	c.fs.Usage = func() {
		fmt.Fprint(stdio.Err, strings.TrimLeft(synopsis, "\n"))
		fmt.Fprintln(stdio.Err, "\nFlags:")
		c.fs.PrintDefaults()
	}
	return c
}

// parse parses args, which may mix flags and positional arguments in any
// order ("--" ends the flags), and returns the positional ones. It returns
// the exit status to end with when parsing failed or help was asked for.
func (c *command) parse(args []string) ([]string, int, bool) {
	var positional []string
	for {
		if err := c.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, ExitOK, false
			}
			return nil, ExitUsage, false // the flag package said what is wrong
		}
		rest := c.fs.Args()
		if len(rest) == 0 {
			return positional, 0, true
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), 0, true
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// usageError reports a bad argument and how to get help; it returns
// ExitUsage.
func (c *command) usageError(format string, args ...any) int {
	fmt.Fprintf(c.stdio.Err, "dovecot-kafka %s: %s\n", c.name, fmt.Sprintf(format, args...))
	fmt.Fprintf(c.stdio.Err, "Run 'dovecot-kafka %s -h' for usage.\n", c.name)
	return ExitUsage
}

// errorf reports a failure; it returns ExitFailed.
func (c *command) errorf(format string, args ...any) int {
	fmt.Fprintf(c.stdio.Err, "dovecot-kafka %s: %s\n", c.name, fmt.Sprintf(format, args...))
	return ExitFailed
}

// notef writes one informational line to stdio.Err.
func (c *command) notef(format string, args ...any) {
	fmt.Fprintf(c.stdio.Err, "%s: %s\n", c.name, fmt.Sprintf(format, args...))
}

// loadConfig reads the configuration like the daemon does. A bad file is
// a usage error: nothing was done yet.
func (c *command) loadConfig(path string) (*config.Config, int, bool) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, c.usageError("%v", err), false
	}
	return cfg, 0, true
}

// syncWriter serialises writes from several goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// isTerminal reports whether v (a reader or writer) is a terminal.
func isTerminal(v any) bool {
	if s, ok := v.(*syncWriter); ok {
		v = s.w
	}
	f, ok := v.(*os.File)
	return ok && isatty.IsTerminal(f.Fd())
}

// kafkaLogger returns the logger for the Kafka client of a command: a
// console logger on stdio.Err that passes warnings and errors (and debug
// output when log_level is debug).
func kafkaLogger(cfg *config.Config, w io.Writer) zerolog.Logger {
	level := zerolog.WarnLevel
	if cfg.LogLevel == "debug" {
		level = zerolog.DebugLevel
	}
	out := zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000", NoColor: !isTerminal(w)}
	return zerolog.New(out).Level(level).With().Timestamp().Str("component", "kafka").Logger()
}
