//go:build unix

package follow

import (
	"io/fs"
	"syscall"
)

// sysInfo returns the device, inode number and link count that stat(2)
// reported for fi.
func sysInfo(fi fs.FileInfo) (dev, ino, nlink uint64, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, 0, false
	}
	// The field types differ between platforms, hence the conversions.
	return uint64(st.Dev), uint64(st.Ino), uint64(st.Nlink), true
}
