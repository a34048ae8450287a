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
//     The reader holds the old file open, so it still reads it to its end
//     if the old file is compressed and deleted meanwhile; only a restart
//     in between loses what was left of it.
//   - Copytruncate: the file is copied (for example to events.jsonl.1 or
//     events.jsonl-20261204) and then truncated to size 0 in place; writers
//     go on at offset 0. Lines the reader had not read yet are then in the
//     copy only. When the reader notices the truncation (see below), it
//     looks in the file's directory for the copy: a regular file, other
//     than the truncated one, whose name starts with the file's base name
//     and does not end like a compressed file (.gz, .xz, .zst, ...), and
//     whose first bytes have the fingerprint the truncated file had. Of
//     several, the one modified last among those that reach the offset of
//     the first line not yet returned wins. The reader reads the copy from
//     that offset to its end, then the truncated file from offset 0. A copy
//     that ends before that offset holds nothing unread (the reader had
//     read the lines appended between the copy and the truncation), and
//     reading goes on at offset 0 of the truncated file at once. Lines
//     from the copy carry the copy's [FileID], so that a [Position] saved
//     while reading it resumes there after a restart, as in a rotated file.
//     The same holds at [Open] when the start position's file is shorter
//     than its offset, or is still at the path but with other first bytes,
//     which is how a file truncated and written again past the saved offset
//     shows.
//     The copy is finished without waiting for late writers: nobody writes
//     to it. A last line in it without its '\n' is a fragment (the rest of
//     it went to the file before the truncation) and is dropped. Lines
//     written between the copy and the truncation are lost by the rotation
//     tool itself, and the reader cannot see them; neither can it use a
//     copy that was compressed (or moved to another directory) before the
//     reader noticed the truncation, nor a copy shorter than the
//     fingerprint ([FingerprintMax] bytes, or the whole file while it was
//     shorter).
//   - Truncation: the file's size drops below the reader's offset, or its
//     first bytes change (it was truncated and refilled before the reader
//     looked). If no copy is found as described above, the reader logs a
//     warning, counts it in [Stats], and reads the file again from offset
//     0: the lines the file now holds are either new, or there is no
//     knowing which of them were returned before, and returning a line
//     twice is better than losing it. Lines not yet read when the file was
//     truncated may be lost; lines already returned may be returned again,
//     for example after `truncate -s 100`.
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
