package main

import (
	"context"
	"os/signal"
	"syscall"

	"dovecot-kafka/tools"
)

// The operator commands (package tools) as subcommands of the daemon's
// binary: dovecot-kafka replay|state|check|import [flags].
func init() {
	add := func(name, summary string, run func(args []string) int) {
		commands[name] = struct {
			run     func(args []string) int
			summary string
		}{run: run, summary: summary}
	}
	add("replay", "publish the events between two positions of events files again", func(args []string) int {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		return tools.Replay(ctx, args, tools.StdIO())
	})
	add("state", "show the checkpoint, or set or reset it while the daemon is stopped", func(args []string) int {
		return tools.State(args, tools.StdIO())
	})
	add("check", "check the configuration, the files and the Kafka topics", func(args []string) int {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		return tools.Check(ctx, args, tools.StdIO())
	})
	add("import", "turn the old kafka driver's Dovecot settings into this daemon's TOML", func(args []string) int {
		return tools.Import(args, tools.StdIO())
	})
}
