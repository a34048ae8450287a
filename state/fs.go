package state

import (
	"io"
	"io/fs"
	"os"
)

// fileSystem is the part of the file system that Store uses. Tests replace
// it to make a sync or a rename fail.
type fileSystem interface {
	ReadFile(name string) ([]byte, error)
	// Create opens name for writing, creating or truncating it.
	Create(name string, perm fs.FileMode) (syncFile, error)
	Rename(oldname, newname string) error
	Remove(name string) error
	// OpenDir opens a directory so that it can be synced.
	OpenDir(name string) (syncFile, error)
}

// syncFile is an open file that can be synced to disk.
type syncFile interface {
	io.Writer
	Sync() error
	Close() error
}

// osFS is the real file system.
type osFS struct{}

func (osFS) ReadFile(name string) ([]byte, error) { return os.ReadFile(name) }

func (osFS) Create(name string, perm fs.FileMode) (syncFile, error) {
	return os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
}

func (osFS) Rename(oldname, newname string) error { return os.Rename(oldname, newname) }

func (osFS) Remove(name string) error { return os.Remove(name) }

func (osFS) OpenDir(name string) (syncFile, error) { return os.Open(name) }
