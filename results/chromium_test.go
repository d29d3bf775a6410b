package results

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
)

// chromiumPath is where Debian's chromium package puts the browser
// (`apt-get install chromium`; `make deps` installs it).
const chromiumPath = "/usr/bin/chromium"

// chromium runs headless Chromium on page with extra flags and returns its
// standard output.
func chromium(t *testing.T, page string, extra ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	args := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(),
	}, extra...)
	cmd := exec.CommandContext(ctx, chromiumPath, append(args, "file://"+page)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %s: %v\n%s", strings.Join(extra, " "), err, stderr.String())
	}
	return out
}

// TestReportInChromium renders report.html in a real browser: the four plots
// must be in the rendered DOM with their titles and drawn data, and a
// screenshot must be a real picture.
func TestReportInChromium(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("skipping the browser check of report.html: needs headless Chromium at %s (apt-get install chromium)", chromiumPath)
	}
	dir := t.TempDir()
	if err := fixture().Write(dir); err != nil {
		t.Fatal(err)
	}
	page := filepath.Join(dir, ReportFile)

	t.Run("dom", func(t *testing.T) {
		t.Parallel()
		doc, err := html.Parse(bytes.NewReader(chromium(t, page, "--dump-dom")))
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"plot-latency", "plot-success", "plot-distribution", "plot-rss"} {
			svg := findByID(doc, id)
			if svg == nil || svg.Data != "svg" {
				t.Errorf("%s: no <svg> with that id in the rendered DOM", id)
				continue
			}
			if title := firstChild(svg, "title"); title == nil || strings.TrimSpace(text(title)) == "" {
				t.Errorf("%s: no <title>", id)
			}
			var drawn int
			walk(svg, func(n *html.Node) {
				if n.Type == html.ElementNode && n.Data == "path" && attr(n, "class") == "series" &&
					strings.HasPrefix(attr(n, "d"), "M") && strings.Contains(attr(n, "d"), "L") {
					drawn++
				}
			})
			if drawn == 0 {
				t.Errorf("%s: no drawn data path", id)
			}
		}
		if body := text(doc); !strings.Contains(body, "FAIL: scenario failover") || !strings.Contains(body, "success_rate >= 0.999") {
			t.Error("the rendered page lacks the verdict or the assertion table")
		}
	})

	t.Run("screenshot", func(t *testing.T) {
		t.Parallel()
		shot := filepath.Join(t.TempDir(), "report.png")
		chromium(t, page, "--window-size=1100,3200", "--hide-scrollbars", "--screenshot="+shot)
		f, err := os.Open(shot)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		img, err := png.Decode(f)
		if err != nil {
			t.Fatalf("%s is not a PNG: %v", shot, err)
		}
		if b := img.Bounds(); b.Dx() < 1000 || b.Dy() < 3000 {
			t.Errorf("screenshot is %v, want 1100×3200", b)
		}
		// A blank or error page has a handful of colors; plots, text and
		// anti-aliasing have hundreds.
		if n := distinctColors(img, 2000); n < 200 {
			t.Errorf("screenshot has %d distinct colors: the page did not render", n)
		}
		if testing.Verbose() {
			t.Logf("screenshot: %s (kept only while the test runs)", shot)
		}
	})
}

func distinctColors(img image.Image, limit int) int {
	seen := map[[4]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, a := img.At(x, y).RGBA()
			seen[[4]uint32{r, g, bl, a}] = true
			if len(seen) >= limit {
				return len(seen)
			}
		}
	}
	return len(seen)
}

func walk(n *html.Node, f func(*html.Node)) {
	f(n)
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walk(c, f)
	}
}

func findByID(doc *html.Node, id string) *html.Node {
	var found *html.Node
	walk(doc, func(n *html.Node) {
		if found == nil && n.Type == html.ElementNode && attr(n, "id") == id {
			found = n
		}
	})
	return found
}

func firstChild(n *html.Node, tag string) *html.Node {
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Type == html.ElementNode && c.Data == tag {
			return c
		}
	}
	return nil
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func text(n *html.Node) string {
	var b strings.Builder
	walk(n, func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
	})
	return b.String()
}
