package gatewayapi

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Error is one problem found in a stream of objects: where it is and what
// is wrong. Parse and Routes return these joined with errors.Join; use
// errors.As to reach the first, or range over the joined errors'
// Unwrap() []error to reach each.
type Error struct {
	// Source is the name the stream was given (a file name); empty for
	// objects that did not come from Parse.
	Source string
	// Document is the object's document in the stream, counted from 1
	// over the documents that are not blank; 0 when the error is about the
	// stream as a whole or the object did not come from Parse.
	Document int
	// Object is "Kind namespace/name", empty when the document did not
	// get that far.
	Object string
	// Line is the line of the stream the error is on, counted from 1: the
	// field's own line when it could be found, else the line where the
	// document starts; 0 when not known.
	Line int
	// Field is the path of the field that is wrong, in the API server's
	// form (spec.rules[0].timeouts.request); empty when no one field is.
	Field string
	// Message says what is wrong with it.
	Message string
}

func (e *Error) Error() string {
	var b strings.Builder
	sep := func() {
		if b.Len() > 0 {
			b.WriteString(", ")
		}
	}
	if e.Source != "" {
		b.WriteString(e.Source)
	}
	if e.Document > 0 {
		if b.Len() > 0 {
			b.WriteString(": ")
		}
		fmt.Fprintf(&b, "document %d", e.Document)
		if e.Object != "" {
			fmt.Fprintf(&b, " (%s)", e.Object)
		}
	} else if e.Object != "" {
		if b.Len() > 0 {
			b.WriteString(": ")
		}
		b.WriteString(e.Object)
	}
	if e.Line > 0 {
		sep()
		fmt.Fprintf(&b, "line %d", e.Line)
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// maxErrors bounds the errors one call reports: hostile input can hold
// thousands, and the first ones are what a person fixes first.
const maxErrors = 20

// join joins errs, keeping the first maxErrors and counting the rest.
func join(errs []error) error {
	if len(errs) > maxErrors {
		n := len(errs) - maxErrors
		more := fmt.Errorf("and %d more errors", n)
		if n == 1 {
			more = errors.New("and 1 more error")
		}
		errs = append(errs[:maxErrors:maxErrors], more)
	}
	return errors.Join(errs...)
}

// fieldError is a field that fails validation, before it is placed in a
// stream.
type fieldError struct {
	path string
	msg  string
}

func fieldErr(path, format string, args ...any) fieldError {
	return fieldError{path: path, msg: fmt.Sprintf(format, args...)}
}

// Field paths are written the way the API server writes them:
// spec.rules[0].timeouts.request, metadata.annotations["retry.skiff.dev/attempts"].

func child(p, name string) string {
	if p == "" {
		return name
	}
	return p + "." + name
}

func index(p string, i int) string { return p + "[" + strconv.Itoa(i) + "]" }

func key(p, k string) string { return p + "[" + strconv.Quote(k) + "]" }

// segment is one step of a field path: a field name, a list index, or a
// map key.
type segment struct {
	name           string // a field or, when isKey, a map key
	index          int    // a list index, when isIndex
	isIndex, isKey bool
}

// splitPath reads a field path written by child, index and key. It reads
// what it can of a malformed path and stops there.
func splitPath(p string) []segment {
	var segs []segment
	for p != "" {
		switch p[0] {
		case '.':
			p = p[1:]
		case '[':
			p = p[1:]
			if strings.HasPrefix(p, `"`) {
				q, err := strconv.QuotedPrefix(p)
				if err != nil {
					return segs
				}
				k, _ := strconv.Unquote(q)
				segs = append(segs, segment{name: k, isKey: true})
				p = strings.TrimPrefix(p[len(q):], "]")
				continue
			}
			end := strings.IndexByte(p, ']')
			if end < 0 {
				return segs
			}
			i, err := strconv.Atoi(p[:end])
			if err != nil {
				return segs
			}
			segs = append(segs, segment{index: i, isIndex: true})
			p = p[end+1:]
		default:
			end := strings.IndexAny(p, ".[")
			if end < 0 {
				end = len(p)
			}
			segs = append(segs, segment{name: p[:end]})
			p = p[end:]
		}
	}
	return segs
}
