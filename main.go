// Command dovecot-kafka follows the events file that Dovecot's
// push-events.lua script appends to and publishes every mailbox event to
// Kafka, keyed by user, in the JSON format of the old push-notification
// Kafka driver. It saves its position in the file only once Kafka has
// acknowledged every line before it, so a restart, a crash or a Kafka
// outage loses nothing.
//
// Usage:
//
//	dovecot-kafka -config /etc/dovecot-kafka/dovecot-kafka.toml
//
// SIGTERM or SIGINT stops it cleanly: reading stops, Kafka gets
// kafka.flush_time_in_ms to acknowledge what was sent, the checkpoint is
// saved and the process exits 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"dovecot-kafka/config"
	"dovecot-kafka/follow"
	"dovecot-kafka/metrics"
	"dovecot-kafka/pipeline"
	"dovecot-kafka/sink"
	"dovecot-kafka/state"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run())
}

// commands are the subcommands; each parses its own flags from args (the
// words after its name) and returns the exit status.
var commands = map[string]struct {
	run     func(args []string) int
	summary string
}{}

func run() int {
	if len(os.Args) > 1 {
		if c, ok := commands[os.Args[1]]; ok {
			return c.run(os.Args[2:])
		}
	}
	configPath := flag.String("config", "/etc/dovecot-kafka/dovecot-kafka.toml", "configuration file (TOML)")
	startAt := flag.String("start-at", "", "where to start when there is no usable checkpoint, or to override it: beginning, end, or a byte offset in the events file")
	showVersion := flag.Bool("version", false, "print the version and exit")
	cpuProfile := flag.String("cpuprofile", "", "write a Go CPU profile to this file until the daemon stops (for benchmarks)")
	flag.Usage = func() {
		out := flag.CommandLine.Output()
		fmt.Fprintf(out, "Usage: %s [-config FILE] [-start-at beginning|end|OFFSET]\n", os.Args[0])
		fmt.Fprintf(out, "       %s COMMAND [flags]   (COMMAND -h for its flags)\n\n", os.Args[0])
		fmt.Fprintln(out, "Publishes the Dovecot events file written by push-events.lua to Kafka.")
		if len(commands) > 0 {
			fmt.Fprintln(out, "\nCommands:")
			names := make([]string, 0, len(commands))
			for name := range commands {
				names = append(names, name)
			}
			sort.Strings(names)
			for _, name := range names {
				fmt.Fprintf(out, "  %-8s %s\n", name, commands[name].summary)
			}
		}
		fmt.Fprintln(out, "\nFlags:")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *showVersion {
		fmt.Println("dovecot-kafka", version)
		return 0
	}

	cfg, err := config.Load(*configPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dovecot-kafka:", err)
		return 2
	}
	log := newLogger(cfg)

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			log.Error().Err(err).Msg("cannot create the CPU profile")
			return 2
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Error().Err(err).Msg("cannot start the CPU profile")
			return 2
		}
		defer pprof.StopCPUProfile()
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	// logrotate's habit of "postrotate kill -HUP" must not stop the
	// daemon: it follows rotations by itself and has nothing to reopen.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			log.Info().Msg("SIGHUP ignored: rotation is followed without it, and there is nothing to reload (restart to change the configuration)")
		}
	}()

	if err := serve(ctx, cfg, *startAt, log); err != nil {
		log.Error().Err(err).Msg("stopped")
		return 1
	}
	return 0
}

func newLogger(cfg *config.Config) zerolog.Logger {
	level, _ := zerolog.ParseLevel(cfg.LogLevel) // checked by config.Load
	zerolog.TimeFieldFormat = time.RFC3339Nano
	console := cfg.LogFormat == "console" ||
		(cfg.LogFormat == "auto" && isatty.IsTerminal(os.Stderr.Fd()))
	var log zerolog.Logger
	if console {
		log = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: "15:04:05.000"})
	} else {
		log = zerolog.New(os.Stderr)
	}
	return log.Level(level).With().Timestamp().Logger()
}

// serve runs the flow until ctx is done, starting it again from the
// checkpoint whenever a delivery failure asks for that.
func serve(ctx context.Context, cfg *config.Config, startAt string, log zerolog.Logger) error {
	store := state.NewStore(cfg.CheckpointFile)
	if err := os.MkdirAll(filepath.Dir(cfg.CheckpointFile), 0o750); err != nil {
		log.Warn().Err(err).Msg("cannot create the checkpoint directory")
	}
	unlock, err := store.Lock()
	if err != nil {
		return fmt.Errorf("%w: is another dovecot-kafka running with checkpoint_file %s? Stop it first", err, cfg.CheckpointFile)
	}
	defer unlock()

	drivers := cfg.MappingDrivers()
	topics := make([]string, len(drivers))
	for i, d := range drivers {
		topics[i] = d.Topic
	}
	mode := "at-least-once"
	if cfg.ExactlyOnce.Enabled {
		mode = "exactly-once"
	}
	log.Info().
		Str("version", version).
		Str("delivery", mode).
		Str("path", cfg.EventsFile).
		Str("checkpoint", cfg.CheckpointFile).
		Str("dead_letter", cfg.DeadLetterFile).
		Str("brokers", cfg.Kafka.Brokers).
		Strs("topics", topics).
		Strs("userdb_fields", cfg.UserdbFields()).
		Msg("starting; push_events_userdb_fields in Dovecot must list userdb_fields")
	start, err := startPosition(store, cfg.EventsFile, startAt, log)
	if err != nil {
		return err
	}
	if err := cfg.CheckPaths(); err != nil {
		log.Warn().Err(err).Msg("the events file's directory is missing; waiting for it")
	}

	opts := pipeline.Options{
		Drivers:            drivers,
		Checkpoints:        store,
		CheckpointInterval: time.Duration(cfg.CheckpointInterval),
		FlushTimeout:       time.Duration(cfg.Kafka.FlushTimeInMs) * time.Millisecond,
		MaxPendingLines:    cfg.MaxPendingLines,
		MaxLineBytes:       cfg.MaxLineBytes,
		ProvenanceHeaders:  cfg.Kafka.ProvenanceHeaders,
		DeadLetter:         pipeline.NewDeadLetter(cfg.DeadLetterFile),
		Log:                log.With().Str("component", "pipeline").Logger(),
	}
	var stats pipeline.Stats
	var readers readerStats
	if cfg.MetricsListen != "" {
		reg := metrics.Registry(metrics.Sources{
			Stats:  &stats,
			Follow: readers.total,
			Committed: func() (int64, bool) {
				cp, err := store.Load()
				return cp.Offset, err == nil
			},
		})
		if err := metrics.Serve(ctx, cfg.MetricsListen, reg, log); err != nil {
			return fmt.Errorf("metrics_listen %s: %w", cfg.MetricsListen, err)
		}
		log.Info().Str("listen", cfg.MetricsListen).Msg("serving metrics at /metrics")
	}
	backoff := time.Second
	override := startAt != "" // -start-at wins over a position in Kafka once
	rejected := &pipeline.RejectedSet{}
	for {
		began := time.Now()
		var err error
		if cfg.ExactlyOnce.Enabled {
			err = runOnceTxn(ctx, cfg, start, override, opts, &stats, &readers, rejected, log)
			override = false
		} else {
			err = runOnce(ctx, cfg, start, opts, &stats, &readers, log)
		}
		if !errors.Is(err, pipeline.ErrRewind) {
			logSummary(log, &stats, store)
			return err
		}
		// Start again from what Kafka acknowledged; back off while runs
		// keep failing quickly.
		if time.Since(began) > 5*time.Minute {
			backoff = time.Second
		}
		select {
		case <-ctx.Done():
			logSummary(log, &stats, store)
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
		cp, err := store.Load()
		if err != nil && !errors.Is(err, state.ErrNoCheckpoint) {
			return err
		}
		if err == nil {
			start = cp.Position()
			start.Path = cfg.EventsFile
		}
		log.Info().Int64("offset", start.Offset).Msg("restarting from the last acknowledged position")
	}
}

func runOnce(ctx context.Context, cfg *config.Config, start follow.Position, opts pipeline.Options, stats *pipeline.Stats, readers *readerStats, log zerolog.Logger) error {
	reader, err := follow.Open(cfg.EventsFile, start, follow.Options{
		MaxLineBytes: cfg.MaxLineBytes,
		Log:          log.With().Str("component", "follow").Logger(),
	})
	if err != nil {
		return fmt.Errorf("open events file: %w", err)
	}
	readers.set(reader)
	defer readers.done()
	defer reader.Close()
	src, err := wrapInput(cfg, reader, log)
	if err != nil {
		return err
	}

	producer, err := sink.New(cfg.Sink(), log.With().Str("component", "kafka").Logger())
	if err != nil {
		return err
	}
	return pipeline.Run(ctx, src, producer, opts, stats)
}

// runOnceTxn is runOnce for the exactly-once mode: the position stored in
// Kafka, if any, wins over start (the checkpoint file or -start-at) unless
// override is set.
// runOnceTxn's rejected remembers, across runs, the records Kafka rejected
// for good.
func runOnceTxn(ctx context.Context, cfg *config.Config, start follow.Position, override bool, opts pipeline.Options, stats *pipeline.Stats, readers *readerStats, rejected *pipeline.RejectedSet, log zerolog.Logger) error {
	eo := cfg.ExactlyOnce
	klog := log.With().Str("component", "kafka").Logger()
	producer, err := sink.NewTxn(ctx, cfg.Sink(), eo.TransactionalID, eo.PositionTopic, klog)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}

	value, found, err := sink.ReadPosition(ctx, cfg.Sink(), eo.PositionTopic, eo.TransactionalID)
	switch {
	case err != nil:
		closeProducer(producer.Producer)
		return fmt.Errorf("%w: read the position from kafka: %v", pipeline.ErrRewind, err)
	case found && !override:
		cp, err := state.Unmarshal(value)
		if err != nil {
			closeProducer(producer.Producer)
			return fmt.Errorf("position stored in kafka topic %s under key %s is unreadable (%v): start once with -start-at beginning|end|OFFSET", eo.PositionTopic, eo.TransactionalID, err)
		}
		start = cp.Position()
		start.Path = cfg.EventsFile
		log.Info().Str("topic", eo.PositionTopic).Uint64("inode", cp.Inode).Int64("offset", cp.Offset).
			Msg("resuming from the position stored in kafka")
	default:
		log.Info().Str("topic", eo.PositionTopic).Int64("offset", start.Offset).
			Msg("no position stored in kafka yet; starting from the checkpoint file or -start-at")
	}

	reader, err := follow.Open(cfg.EventsFile, start, follow.Options{
		MaxLineBytes: cfg.MaxLineBytes,
		Log:          log.With().Str("component", "follow").Logger(),
	})
	if err != nil {
		closeProducer(producer.Producer)
		return fmt.Errorf("open events file: %w", err)
	}
	readers.set(reader)
	defer readers.done()
	defer reader.Close()
	src, err := wrapInput(cfg, reader, log)
	if err != nil {
		closeProducer(producer.Producer)
		return err
	}
	return pipeline.RunTransactional(ctx, src, producer, pipeline.TxnOptions{
		Options:        opts,
		CommitInterval: time.Duration(eo.CommitInterval),
		CommitMaxLines: eo.CommitMaxLines,
		Rejected:       rejected,
	}, stats)
}

// readerStats adds up the counters of the readers of successive runs.
type readerStats struct {
	mu      sync.Mutex
	current *follow.Reader
	sum     follow.Stats
}

func (rs *readerStats) set(r *follow.Reader) {
	rs.mu.Lock()
	rs.current = r
	rs.mu.Unlock()
}

// done adds the current reader's counters to the sum before it goes away.
func (rs *readerStats) done() {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.current != nil {
		rs.sum = addStats(rs.sum, rs.current.Stats())
		rs.current = nil
	}
}

func (rs *readerStats) total() follow.Stats {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.current == nil {
		return rs.sum
	}
	return addStats(rs.sum, rs.current.Stats())
}

func addStats(a, b follow.Stats) follow.Stats {
	return follow.Stats{
		Lines:       a.Lines + b.Lines,
		Bytes:       a.Bytes + b.Bytes,
		Rotations:   a.Rotations + b.Rotations,
		Truncations: a.Truncations + b.Truncations,
		TooLong:     a.TooLong + b.TooLong,
		NULBytes:    a.NULBytes + b.NULBytes,
		Fragments:   a.Fragments + b.Fragments,

		CopiesFinished: a.CopiesFinished + b.CopiesFinished,
		CopiesMissing:  a.CopiesMissing + b.CopiesMissing,

		GenerationsMissed: a.GenerationsMissed + b.GenerationsMissed,
	}
}

// closeProducer closes p, draining its delivery reports as Close needs.
func closeProducer(p *sink.Producer) {
	go func() {
		for range p.Deliveries() {
		}
	}()
	p.Close()
}

// startPosition decides where reading starts: the checkpoint, unless
// -start-at overrides it or there is none.
func startPosition(store *state.Store, path, startAt string, log zerolog.Logger) (follow.Position, error) {
	cp, err := store.Load()
	switch {
	case startAt != "":
		pos, perr := parseStartAt(path, startAt)
		if perr != nil {
			return follow.Position{}, perr
		}
		if err == nil {
			log.Warn().Int64("offset", pos.Offset).Int64("checkpoint_offset", cp.Offset).
				Msg("-start-at overrides the saved checkpoint")
		}
		return pos, nil
	case err == nil:
		pos := cp.Position()
		pos.Path = path
		log.Info().Str("path", path).Uint64("inode", cp.Inode).Int64("offset", cp.Offset).Msg("resuming from the checkpoint")
		return pos, nil
	case errors.Is(err, state.ErrNoCheckpoint):
		log.Info().Str("path", path).Msg("no checkpoint yet; starting at the beginning of the events file")
		return follow.Position{Path: path}, nil
	default:
		return follow.Position{}, err
	}
}

func parseStartAt(path, s string) (follow.Position, error) {
	switch strings.ToLower(s) {
	case "beginning":
		return follow.Position{Path: path}, nil
	case "end":
		id, size, err := follow.Identify(path)
		if err != nil {
			return follow.Position{}, fmt.Errorf("-start-at end: %w", err)
		}
		return follow.Position{Path: path, File: id, Offset: size}, nil
	}
	off, err := strconv.ParseInt(s, 10, 64)
	if err != nil || off < 0 {
		return follow.Position{}, fmt.Errorf("-start-at %q: use beginning, end, or a byte offset", s)
	}
	id, size, err := follow.Identify(path)
	if err != nil {
		return follow.Position{}, fmt.Errorf("-start-at %d: %w", off, err)
	}
	if off > size {
		return follow.Position{}, fmt.Errorf("-start-at %d: beyond the end of %s (%d bytes)", off, path, size)
	}
	return follow.Position{Path: path, File: id, Offset: off}, nil
}

func logSummary(log zerolog.Logger, s *pipeline.Stats, store *state.Store) {
	e := log.Info().
		Int64("lines_read", s.LinesRead.Load()).
		Int64("bad_lines", s.BadLines.Load()).
		Int64("records_produced", s.RecordsProduced.Load()).
		Int64("records_delivered", s.RecordsDelivered.Load()).
		Int64("records_rejected", s.RecordsRejected.Load()).
		Int64("dead_lettered", s.DeadLettered.Load()).
		Int64("checkpoint_errors", s.CheckpointErrors.Load())
	bad := zerolog.Dict()
	for _, k := range pipeline.BadKinds() {
		bad = bad.Int64(k.String(), s.BadByKind[k].Load())
	}
	e = e.Dict("bad_by_kind", bad)
	if cp, err := store.Load(); err == nil {
		e = e.Str("path", cp.Path).Uint64("inode", cp.Inode).Int64("offset", cp.Offset)
	}
	e.Msg("summary")
}
