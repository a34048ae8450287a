package state

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// ErrLocked is returned by Lock when another process holds the lock.
var ErrLocked = errors.New("state: checkpoint is locked by another process")

// Lock takes an exclusive lock on the checkpoint, held through the file
// path+".lock" (flock), so that one daemon at a time uses a checkpoint and
// the state command can refuse to change it under a running daemon. The
// lock ends with the returned function or with the process. The lock file
// holds the owner's process id, for people.
func (st *Store) Lock() (unlock func(), err error) {
	path := st.path + ".lock"
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		// A read-only directory still lets an existing lock file be
		// opened for reading, and flock works on that too.
		var rerr error
		if f, rerr = os.Open(path); rerr != nil {
			return nil, fmt.Errorf("open lock file: %w", err)
		}
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		owner, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s (held by process %s)", ErrLocked, path, trimPID(owner))
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

func trimPID(b []byte) string {
	s := string(b)
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == ' ') {
		s = s[:len(s)-1]
	}
	if s == "" {
		return "unknown"
	}
	return s
}
