package follow

// HasFile reports whether r holds a file open, for tests of releasing a
// deleted file.
func (r *Reader) HasFile() bool {
	return r.f != nil
}

// SetBirthTime makes Readers opened afterwards use birth times to order
// generations, or not, and returns a function that restores the setting.
func SetBirthTime(on bool) (restore func()) {
	old := useBirthTime
	useBirthTime = on
	return func() { useBirthTime = old }
}

// HasBirthTime reports whether the file system records the birth time of
// the file at name.
func HasBirthTime(name string) bool {
	return !birthTime(name).IsZero()
}
