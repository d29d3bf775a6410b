// Package yamlstream holds the two rules by which a kubectl-style YAML
// stream is cut into documents, shared by the readers of such streams
// (the Gateway API resources file, skiff inject's manifests) so that they
// cut alike.
package yamlstream

import "bytes"

// Separator reports whether line (with or without its newline) ends one
// document and starts the next, as kubectl's reader decides: it begins
// with "---" and holds nothing after it but spaces or a comment.
func Separator(line []byte) bool {
	rest, ok := bytes.CutPrefix(line, []byte("---"))
	if !ok {
		return false
	}
	rest = bytes.TrimSpace(rest)
	return len(rest) == 0 || rest[0] == '#'
}

// Blank reports whether a document holds only blank lines and comments:
// no object.
func Blank(doc []byte) bool {
	for line := range bytes.Lines(doc) {
		if l := bytes.TrimSpace(line); len(l) > 0 && l[0] != '#' {
			return false
		}
	}
	return true
}
