package follow

// HasFile reports whether r holds a file open, for tests of releasing a
// deleted file.
func (r *Reader) HasFile() bool {
	return r.f != nil
}
