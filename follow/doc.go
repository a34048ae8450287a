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
//     events.jsonl.1, older generations moving on to .2, .3, ...) and a new
//     file is created at the path. Writers that opened the old file before
//     the rename may still append a few late lines to it. The reader keeps
//     reading the old file until it has not grown for [Options.RotateGrace],
//     then moves at offset 0 to the generation that followed it (see
//     Generations below): the new file, or, if the file was rotated again
//     meanwhile (while the reader lagged, was stopped, or within
//     RotateGrace), the rotated generation created right after the old
//     file, and so on up to the file at the path. Nothing is lost unless a
//     writer keeps appending to a rotated file after that. The reader holds
//     the old file open, so it still reads it to its end if the old file is
//     compressed and deleted meanwhile; only a restart in between loses what
//     was left of it.
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
//     reader finishes what the file holds and, once it has been quiet for
//     [Options.RotateGrace], moves on to the generation that followed it if
//     there is one; otherwise it releases the file and waits for the path
//     to appear again, reading first any generation rotated meanwhile.
//
// # Generations
//
// A generation is one file of the rotation: the file at the path, or a
// rotated-away one in the same directory whose name is the events file's
// name plus a suffix that starts with '.', '-' or '_' and holds a digit
// (events.jsonl.1, events.jsonl-20261204, events.jsonl-20261204-2; not
// events.jsonl.pos). When the reader leaves a rotated-away file (after
// RotateGrace, or after a restart once it has finished the file the start
// position named), it reads next the generation created right after that
// file among the candidates: regular files with such a name, not
// compressed (names ending in .gz, .xz, .zst, ...), and neither the file
// just left nor one finished since [Open], under any name, nor a copy of
// one of those (a file with the same first bytes, if those hold a whole
// line: part of a line could be the start of any file). It reads that
// generation whole and leaves it the same way (RotateGrace after it last
// grew, or after it was opened), then the next, and the file at the path
// last. Lines carry the [FileID] of the generation they came from, so that
// a [Position] saved in one resumes there after a restart and goes on by
// the same rule.
// "Created right after" is decided by:
//
//   - The names, as logrotate gives them: a numbered suffix (.1, .2) is the
//     newer the smaller its number; any other suffix (a date, a date and a
//     counter) is the newer the later it sorts, comparing runs of digits as
//     numbers (-20261204-10 after -20261204-9); dated names count as older
//     than numbered ones, and the file at the path is the newest. The next
//     one is the candidate right after the place of the file just left:
//     that of its current name, found by device and inode, or, if it was
//     compressed and deleted, that of the .gz file whose decompressed first
//     bytes are its own. Names, not birth times: a copytruncate copy is born
//     after the file it copies but holds older lines, and by birth time it
//     would pass for a later generation (and be read again after a restart,
//     or read in place of the file it copies).
//   - When the file just left has no place by name: birth time, where the
//     file system records it for that file and every candidate (Linux
//     statx; ext4, XFS and Btrfs do), the candidate born first after it.
//   - Otherwise (the file just left has no name, and no gzip file holds it),
//     the first in that name order among the candidates modified no earlier
//     than the file just left. A late write to the older of two generations
//     after the last write to the newer one can skip the newer one here.
//
// A generation that is gone before the reader gets to it cannot be read: a
// compressed file (or, with numbered names, a missing number) between the
// place of the file just left and that of the generation read next. Each is
// logged as a warning with its name (and size, for a compressed file) and
// counted in [Stats].GenerationsMissed, once a second look a poll later
// agrees, so that a rotation caught halfway through its renames raises no
// false alarm. This needs the place by name of the file just left (above);
// a deleted generation with a dated name leaves no trace and goes
// unnoticed, and so does one that is gone when the file just left has no
// place. If the directory cannot be listed, the reader stays on the file it
// has and retries, with a warning, rather than skip generations it cannot
// see.
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
