// Package follow reads the events file line by line while other processes
// append to it, and keeps reading across rotation and truncation.
//
// Dovecot processes append one JSON line per event with O_APPEND. A [Reader]
// reads the file with explicit offsets (no seek state is shared with anyone)
// and returns each complete line with the file and offset it came from, so
// that the caller can save a [Position] and resume there after a restart.
// An fsnotify watch on the file's directory wakes the reader early; polling
// every [Options.PollInterval] is the fallback, so a lost or unsupported
// notification delays a line but never loses it.
//
// The file can change under the reader in these ways:
//
//   - Rotation (rename-and-create): the file is renamed (for example to
//     events.jsonl.1) and a new file is created at the path. Writers that
//     opened the old file before the rename may still append a few late lines
//     to it. The reader keeps reading the old file until it has not grown for
//     [Options.RotateGrace], then moves to the new file at offset 0. Nothing
//     is lost unless a writer keeps appending to the old file after that.
//   - Copytruncate: the file is copied elsewhere and then truncated to size 0
//     in place. Lines written between the copy and the truncation are lost by
//     the rotation tool itself, and the reader cannot see them. The reader
//     notices the truncation and starts again at offset 0.
//   - Truncation: the file's size drops below the reader's offset, or its
//     first bytes change (it was truncated and refilled before the reader
//     looked). The reader logs a warning, counts it in [Stats], and reads the
//     file again from offset 0; lines already returned may be returned again.
//   - Deletion: the path disappears and the open file has no name left. The
//     reader finishes what the file holds, releases it once it has been quiet
//     for [Options.RotateGrace], and waits for the path to appear again.
//
// A partial last line is the bytes after the last '\n' of the file: a writer
// is still writing it, or died halfway. It is never returned until its '\n'
// arrives. If the file is rotated away or deleted with a partial last line,
// that fragment is dropped, logged and counted.
//
// Runs of NUL bytes, which a crash can leave in place of data that had not
// reached the disk, are skipped and counted; a line that a NUL run cuts off
// is dropped as a fragment. A line longer than [Options.MaxLineBytes] is
// returned shortened and flagged [Line.TooLong], so that the caller can
// report it without holding it in memory.
//
// A file is recognised by its device and inode number plus a fingerprint of
// its first bytes (see [FileID]); the fingerprint tells a new file that
// happens to reuse the inode of a deleted one from the file a [Position] was
// taken in.
package follow
