package inject

import "strings"

// Operation is one operation of a JSON patch (RFC 6902). The injector
// writes only add and remove.
type Operation struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// escape makes s one reference token of a JSON pointer (RFC 6901).
func escape(s string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

// unescape reads one reference token of a JSON pointer.
func unescape(s string) string {
	return strings.NewReplacer("~1", "/", "~0", "~").Replace(s)
}
