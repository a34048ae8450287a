package state

import (
	"errors"
	"fmt"
	"io/fs"
)

// Remove deletes the checkpoint file (and a .tmp file an interrupted Save
// left behind), so that the daemon starts as if it had never saved one: at
// the beginning of the events file, or where -start-at says. A missing
// checkpoint gives an error that wraps ErrNoCheckpoint. The directory is
// synced, so that the removal survives a crash. The caller should hold
// the lock (see [Store.Lock]): a running daemon writes a new checkpoint at
// its next save.
func (st *Store) Remove() error {
	st.mu.Lock()
	defer st.mu.Unlock()

	_ = st.fs.Remove(st.path + ".tmp") // best effort: Load ignores it anyway
	err := st.fs.Remove(st.path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", st.path, ErrNoCheckpoint)
	}
	if err != nil {
		return fmt.Errorf("remove checkpoint: %w", err)
	}
	return st.syncDir() // make the removal itself durable
}
