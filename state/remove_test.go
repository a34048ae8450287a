package state

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestRemove(t *testing.T) {
	st := NewStore(filepath.Join(t.TempDir(), "checkpoint.json"))
	if err := st.Remove(); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("Remove without a checkpoint = %v, want ErrNoCheckpoint", err)
	}
	if err := st.Save(sample()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(st.Path()+".tmp", []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := st.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := st.Load(); !errors.Is(err, ErrNoCheckpoint) {
		t.Errorf("Load after Remove = %v, want ErrNoCheckpoint", err)
	}
	if _, err := os.Stat(st.Path() + ".tmp"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf(".tmp left behind: %v", err)
	}
}
