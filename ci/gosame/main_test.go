package main

import "testing"

func TestSameTokens(t *testing.T) {
	base := "package p\n\n// F adds.\nfunc F(a, b int) int {\n\treturn a + b\n}\n"
	for _, tc := range []struct {
		name, src string
		same      bool
	}{
		{"a comment changed", "package p\n\n// F adds a and b.\nfunc F(a, b int) int {\n\treturn a + b\n}\n", true},
		{"lines added", "package p\n\n\n// F adds.\n// More.\nfunc F(a, b int) int {\n\n\treturn a + b // sum\n}\n", true},
		{"an explicit semicolon", "package p\n\n// F adds.\nfunc F(a, b int) int {\n\treturn a + b;\n}\n", true},
		{"an operator changed", "package p\n\n// F adds.\nfunc F(a, b int) int {\n\treturn a - b\n}\n", false},
		{"a name changed", "package p\n\n// F adds.\nfunc F(a, c int) int {\n\treturn a + c\n}\n", false},
		{"a literal added", "package p\n\n// F adds.\nfunc F(a, b int) int {\n\treturn a + b + 1\n}\n", false},
	} {
		if got := sameTokens([]byte(base), []byte(tc.src)); got != tc.same {
			t.Errorf("%s: same = %v, want %v", tc.name, got, tc.same)
		}
	}
}
