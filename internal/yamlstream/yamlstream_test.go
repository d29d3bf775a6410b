package yamlstream

import "testing"

func TestSeparator(t *testing.T) {
	for line, want := range map[string]bool{
		"---": true, "---\n": true, "---  \n": true, "--- # next\n": true,
		"--- a: 1\n": false, "----\n": false, " ---\n": false, "a: ---\n": false, "": false,
	} {
		if got := Separator([]byte(line)); got != want {
			t.Errorf("Separator(%q) = %v, want %v", line, got, want)
		}
	}
}

func TestBlank(t *testing.T) {
	for doc, want := range map[string]bool{
		"": true, "\n\n": true, "# only a comment\n  # another\n": true, "  \n# c": true,
		"a: 1\n": false, "# c\nkind: Pod": false, "  x": false,
	} {
		if got := Blank([]byte(doc)); got != want {
			t.Errorf("Blank(%q) = %v, want %v", doc, got, want)
		}
	}
}
