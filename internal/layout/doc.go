// Package layout holds no code: its test keeps the arrows between the
// repository's parts pointing the way ARCHITECTURE.md draws them.
package layout
