package state

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func TestLockHolder(t *testing.T) {
	st := NewStore(filepath.Join(t.TempDir(), "checkpoint.json"))
	if held, _, err := st.LockHolder(); err != nil || held {
		t.Fatalf("LockHolder without a lock file = %v, %v; want free", held, err)
	}

	unlock, err := st.Lock()
	if err != nil {
		t.Fatal(err)
	}
	held, pid, err := st.LockHolder()
	if err != nil || !held || pid != strconv.Itoa(os.Getpid()) {
		t.Fatalf("LockHolder while locked = %v, %q, %v; want held by %d", held, pid, err, os.Getpid())
	}
	unlock()

	if held, _, err := st.LockHolder(); err != nil || held {
		t.Fatalf("LockHolder after unlock = %v, %v; want free", held, err)
	}
	// The probe must not get in the way of the next Lock.
	unlock, err = st.Lock()
	if err != nil {
		t.Fatalf("Lock after LockHolder: %v", err)
	}
	unlock()
}
