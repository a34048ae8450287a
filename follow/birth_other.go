//go:build unix && !linux

package follow

import (
	"os"
	"time"
)

// birthTime returns the zero Time: only Linux's statx(2) is used to learn
// when a file was created, so elsewhere generations are ordered by name.
func birthTime(string) time.Time { return time.Time{} }

// fileBirthTime is birthTime for an open file.
func fileBirthTime(*os.File) time.Time { return time.Time{} }
