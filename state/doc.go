// Package state keeps the daemon's place in the events file: which lines
// Kafka has acknowledged ([Tracker]) and the checkpoint saved on disk
// ([Store]).
//
// A checkpoint's Offset is the byte just past the last line whose Kafka
// delivery, and the delivery of every line before it, has been
// acknowledged. It is not how far the reader has got: lines that were read
// but are still in flight when the daemon stops are read again after a
// restart, so a crash causes duplicates, never losses (at-least-once).
//
// Deliveries are acknowledged out of order (several partitions, retries),
// so the Tracker holds a window of lines in the order they were read and
// moves the committed position only over the longest prefix of lines that
// are completely acknowledged. The window's capacity bounds memory: when it
// is full, reading waits for acknowledgements.
package state
