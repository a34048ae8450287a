package state

import (
	"errors"
	"path/filepath"
	"testing"
)

func TestLock(t *testing.T) {
	st := NewStore(filepath.Join(t.TempDir(), "checkpoint.json"))
	unlock, err := st.Lock()
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to the open file, so a second open in the same
	// process conflicts just as another process would.
	if _, err := NewStore(st.Path()).Lock(); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Lock = %v, want ErrLocked", err)
	}
	unlock()
	unlock2, err := st.Lock()
	if err != nil {
		t.Fatalf("Lock after unlock: %v", err)
	}
	unlock2()
}
