package state

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// LockHolder reports whether some process holds the checkpoint's lock (see
// [Store.Lock]) without taking it and without writing anything, for
// commands that only look. The lock file is opened read-only and probed
// with a shared, non-blocking flock that is released at once; a daemon
// that starts during that instant finds the checkpoint locked and exits
// with ErrLocked. pid is the owner's process id as the lock file records
// it ("unknown" if the file holds none). A missing lock file means that
// no daemon has used this checkpoint since the file was removed, so
// nobody holds the lock.
func (st *Store) LockHolder() (held bool, pid string, err error) {
	path := st.path + ".lock"
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, "", nil
	}
	if err != nil {
		return false, "", fmt.Errorf("open lock file: %w", err)
	}
	defer f.Close()

	err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		owner, _ := os.ReadFile(path)
		return true, trimPID(owner), nil
	}
	if err != nil {
		return false, "", fmt.Errorf("probe lock %s: %w", path, err)
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false, "", nil
}
