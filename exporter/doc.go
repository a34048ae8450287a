// Package exporter reads what Dovecot's event exporter writes for
// dovecot-conf/push-events.lua (push_events_output = exporter) and turns
// each of its events into a line of the events file (format v1,
// dovecot-conf/events-format.md), so that the parser, the mapping and the
// rest of the daemon treat it exactly like a line of the file output.
//
// The script sends one event named "dovecot_kafka_event" per
// push-notification event; its push_* and userdb_* fields carry what a
// line of push-events.lua carries (docs/exporter.md lists them). The stats
// process formats it as JSON or tab-text (exporter_format) and writes it
// through one of two transports:
//
//   - TransportLog (input "exporter-log"; Dovecot 2.3's log transport): one
//     Info line of the stats process per event in Dovecot's log, among the
//     lines of every other process:
//
//     2026-12-04 17:35:44 stats: Info: {"event":"dovecot_kafka_event","fields":{...}}
//
//     Every string value is cut at 1000 bytes, with "..." appended. A
//     message longer than about 4 KB is written as pieces of exactly the
//     same length (4092 bytes less the digits of the stats process's pid),
//     each on a line of its own with the same prefix, the last one
//     shorter or equal; lines of other processes may come in between, but
//     no other line of the stats process does.
//
//   - TransportFile (input "exporter-file"; Dovecot 2.4's file driver): one
//     message and a newline per event in a file that only the stats
//     process writes; nothing is cut or split.
//
// A line that is not an event of ours (another process's line, another
// exported event, another Info line of the stats process) is skipped: it
// yields nothing.
//
// # Split messages
//
// A JSON message ends where its top-level object closes. A message whose
// first line leaves the object open and has a piece's length is pending:
// each following line of the stats process must continue it, with a piece
// of the same length, or end it exactly at its end. Tab-text has no end
// marker, so a tab-text line of a piece's length is pending until the next
// line of the stats process: one that starts with "event:" starts a new
// message (the pending one was whole), any other continues it. If nothing
// at all is added to the file for DefaultPieceWait while a message is
// pending, a tab-text message is taken as whole and a JSON message as
// damaged.
//
// A pending message that cannot be completed (the next line of the stats
// process does not continue it, the log is rotated between its pieces, its
// next piece never comes), and a piece whose beginning was not read (the
// daemon started in the middle of a message, or a piece was lost) when it
// holds one of our field names, are yielded as refused lines: Data is the
// text as Dovecot wrote it (pieces joined, log prefixes removed), which the
// parser rejects, and [Source.LineErr] returns an error wrapping
// ErrDamaged. Every complete message is also checked against its
// push_bytes field, the script's count of the bytes of its string fields,
// so that a message glued together wrongly is refused rather than
// published. An event whose value the log transport cut is refused the same
// way with ErrTruncated.
//
// # Positions and the checkpoint
//
// A yielded line's Pos is where its message starts in the file (for a
// split message: its first piece) and End where it ends (its last piece).
// The daemon saves the End of the last line Kafka acknowledged, so End
// must never lie past a message not yet read whole: while a split message
// is pending, a line yielded meanwhile gets an End no later than the start
// of that message's first piece. A crash then costs, on restart, a
// duplicate of such a line, never a damaged message. With Dovecot's
// transports a line is never yielded while a message is pending (the
// stats process writes all pieces of one message before anything else),
// so this rule only guards against what the format does not promise.
//
// Lines that are not events yield nothing, so the saved position only
// moves with events: after a restart the daemon reads again, and skips,
// the log lines written since the last event it published.
package exporter
