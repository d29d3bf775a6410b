// Command gosame tells whether a commit changed Go code or only comments
// and layout: for each .go file it is given, it compares the file at the
// commit with the file at its parent as token streams without comments
// (go/scanner), so a comment or a blank line counts as no change. ci/ab-gate.sh
// uses it to walk back past commits that cannot change what the proxy does,
// though they change its binary (line numbers are in the binary).
//
//	go run ./ci/gosame REV path/a.go path/b.go …
//
// Exit 0: every file's code is the same at REV and REV^; 1: some file's
// differs (or was added or removed), naming the first; 2: an error.
package main

import (
	"bytes"
	"fmt"
	"go/scanner"
	"go/token"
	"os"
	"os/exec"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: gosame REV FILE.go...")
		os.Exit(2)
	}
	rev := os.Args[1]
	for _, path := range os.Args[2:] {
		before, okBefore, err := show(rev+"^", path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "gosame:", err)
			os.Exit(2)
		}
		after, okAfter, err := show(rev, path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "gosame:", err)
			os.Exit(2)
		}
		if okBefore != okAfter {
			fmt.Printf("%s: added or removed\n", path)
			os.Exit(1)
		}
		if !okBefore {
			continue
		}
		if !sameTokens(before, after) {
			fmt.Printf("%s: code changed\n", path)
			os.Exit(1)
		}
	}
}

// show is the file at rev, and whether it exists there.
func show(rev, path string) ([]byte, bool, error) {
	var stderr bytes.Buffer
	cmd := exec.Command("git", "show", rev+":"+path)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if bytes.Contains(stderr.Bytes(), []byte("does not exist")) || bytes.Contains(stderr.Bytes(), []byte("exists on disk, but not in")) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("git show %s:%s: %w: %s", rev, path, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, true, nil
}

// sameTokens compares a and b as Go token streams, comments left out.
func sameTokens(a, b []byte) bool {
	ta, tb := tokens(a), tokens(b)
	if len(ta) != len(tb) {
		return false
	}
	for i := range ta {
		if ta[i] != tb[i] {
			return false
		}
	}
	return true
}

type tok struct {
	t   token.Token
	lit string
}

func tokens(src []byte) []tok {
	var s scanner.Scanner
	fs := token.NewFileSet()
	s.Init(fs.AddFile("", fs.Base(), len(src)), src, nil, 0) // comments skipped
	var out []tok
	for {
		_, t, lit := s.Scan()
		if t == token.EOF {
			return out
		}
		if t == token.SEMICOLON && lit == "\n" {
			lit = ";" // an inserted semicolon is the same as a written one
		}
		out = append(out, tok{t, lit})
	}
}
