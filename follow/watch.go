package follow

import "github.com/fsnotify/fsnotify"

// startWatcher sets up the fsnotify watch on the file's directory. Without
// it the Reader only polls, which is slower but loses nothing.
func (r *Reader) startWatcher() {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		r.log.Warn().Err(err).Msg("file notifications unavailable, polling only")
		return
	}
	r.watcher = w
	r.watchDone = make(chan struct{})
	go forwardEvents(w, r.wake, r.watchDone)
	r.ensureWatch()
}

// ensureWatch adds the directory to the watch if that has not worked yet,
// for example because the directory did not exist.
func (r *Reader) ensureWatch() {
	if r.watcher == nil || r.watching {
		return
	}
	if err := r.watcher.Add(r.watchDir); err != nil {
		r.rateWarn(&r.limWatch).Err(err).
			Str("dir", r.watchDir).
			Msg("cannot watch events directory, polling only")
		return
	}
	r.watching = true
}

// forwardEvents turns every event and error of w into a wake-up on wake,
// which holds at most one. Any event in the directory is a reason to look:
// after a rename the old file has a name we do not know, and an overflow
// error means events were lost. It returns when w is closed.
func forwardEvents(w *fsnotify.Watcher, wake chan<- struct{}, done chan<- struct{}) {
	defer close(done)
	for {
		select {
		case _, ok := <-w.Events:
			if !ok {
				return
			}
		case _, ok := <-w.Errors:
			if !ok {
				return
			}
		}
		select {
		case wake <- struct{}{}:
		default:
		}
	}
}
