// Package tools holds the operator commands of dovecot-kafka, run as
// subcommands of the daemon's binary:
//
//   - replay publishes again the events between two positions of one or
//     more events files (the current file, rotated generations, gzip
//     copies), with the daemon's drivers or a chosen topic, or prints them.
//   - state shows the daemon's checkpoint and what is not yet published,
//     and sets or removes it while the daemon is stopped.
//   - check validates the configuration, the files and the Kafka topics.
//   - import turns the old push_notification_kafka driver's Dovecot
//     settings into this daemon's TOML configuration.
//
// A position in an events file is a byte offset where a line starts, as in
// the checkpoint (see package state). The commands never write the live
// daemon's checkpoint except state's set-offset, set-time and reset, which
// refuse while a daemon holds the checkpoint's lock.
//
// Every command takes its arguments without the command name and returns
// the process exit status: 0 when all is well, 1 when it ran and something
// failed or a problem was found, 2 for bad flags or arguments (nothing was
// done). Results go to IO.Out; diagnostics, progress and summaries to
// IO.Err.
package tools
