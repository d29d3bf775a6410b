package registry

// Entries is how many authorities r holds (known or watched).
func (r *Registry) Entries() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.entries)
}
