package state

import "dovecot-kafka/follow"

// Position returns where line seq starts (its file and the offset of its
// first byte), if seq is still outstanding. The dead-letter file uses it to
// say which line a rejected record came from.
func (t *Tracker) Position(seq uint64) (follow.Position, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if seq < t.head || seq >= t.tail {
		return follow.Position{}, false
	}
	s := t.ring[seq&t.mask]
	pos := s.end
	pos.Offset = s.start
	return pos, true
}
