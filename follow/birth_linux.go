//go:build linux

package follow

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// birthTime returns when the file at name was created, without following a
// symbolic link, or the zero Time if the kernel or the file system does not
// record it (statx(2) leaves STATX_BTIME out of its mask).
func birthTime(name string) time.Time {
	var st unix.Statx_t
	flags := unix.AT_SYMLINK_NOFOLLOW | unix.AT_STATX_DONT_SYNC
	if err := unix.Statx(unix.AT_FDCWD, name, flags, unix.STATX_BTIME, &st); err != nil {
		return time.Time{}
	}
	return statxBirth(&st)
}

// fileBirthTime is birthTime for an open file.
func fileBirthTime(f *os.File) time.Time {
	rc, err := f.SyscallConn()
	if err != nil {
		return time.Time{}
	}
	var st unix.Statx_t
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = unix.Statx(int(fd), "", unix.AT_EMPTY_PATH|unix.AT_STATX_DONT_SYNC, unix.STATX_BTIME, &st)
	})
	if err != nil || serr != nil {
		return time.Time{}
	}
	return statxBirth(&st)
}

// statxBirth returns the birth time in st, or the zero Time if st has none.
func statxBirth(st *unix.Statx_t) time.Time {
	if st.Mask&unix.STATX_BTIME == 0 || (st.Btime.Sec == 0 && st.Btime.Nsec == 0) {
		return time.Time{}
	}
	return time.Unix(st.Btime.Sec, int64(st.Btime.Nsec))
}
