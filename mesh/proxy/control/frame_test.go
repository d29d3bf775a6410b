package control

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
)

func TestFrameReader(t *testing.T) {
	leakcheck.Check(t)
	var ok []byte
	ok = appendFrame(ok, []byte("first"))
	ok = appendFrame(ok, nil)
	ok = appendFrame(ok, []byte("third"))
	for _, tc := range []struct {
		name    string
		in      []byte
		msgs    []string
		code    int    // 0: clean io.EOF
		errText string // part of the message
	}{
		{"three messages", ok, []string{"first", "", "third"}, 0, ""},
		{"empty body", nil, nil, 0, ""},
		{"truncated header", []byte{0, 0, 0}, nil, CodeInternal, "inside a message header"},
		{"truncated message", []byte{0, 0, 0, 0, 9, 'a', 'b'}, nil, CodeInternal, "inside a 9-byte message"},
		{"truncated large message", append([]byte{0, 0, 2, 0, 0}, make([]byte, 100)...), nil, CodeInternal, "inside a 131072-byte message"},
		{"compressed", []byte{1, 0, 0, 0, 1, 'x'}, nil, CodeInternal, "compressed message"},
		{"garbage flag", []byte("HTTP/1.1 400 Bad Request\r\n"), nil, CodeInternal, "compressed flag is 0x48"},
		{"oversized", []byte{0, 0xff, 0xff, 0xff, 0xff}, nil, CodeResourceExhausted, "larger than max (4294967295 vs. 4194304)"},
		{"good then garbage", append(appendFrame(nil, []byte("ok")), 9, 0, 0, 0, 0), []string{"ok"}, CodeInternal, "compressed flag is 0x9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fr := frameReader{r: bytes.NewReader(tc.in), max: DefaultMaxMessageSize}
			var got []string
			var err error
			for {
				var m []byte
				if m, err = fr.next(); err != nil {
					break
				}
				got = append(got, string(m))
			}
			if strings.Join(got, "|") != strings.Join(tc.msgs, "|") || len(got) != len(tc.msgs) {
				t.Errorf("messages %q, want %q", got, tc.msgs)
			}
			if tc.code == 0 {
				if !errors.Is(err, io.EOF) {
					t.Fatalf("end: %v, want io.EOF", err)
				}
				return
			}
			if StatusCode(err) != tc.code || !strings.Contains(err.Error(), tc.errText) {
				t.Fatalf("error %v, want code %s with %q", err, CodeName(tc.code), tc.errText)
			}
		})
	}
}

func TestEncodeTimeout(t *testing.T) {
	leakcheck.Check(t)
	for d, want := range map[time.Duration]string{
		time.Nanosecond:                  "1n",
		99999999 * time.Nanosecond:       "99999999n",
		100 * time.Millisecond:           "100000u",
		1500*time.Millisecond + 1:        "1500001u",
		3 * time.Minute:                  "180000m",
		40 * 24 * time.Hour:              "3456000S",
		time.Duration(1<<63 - 1):         "2562048H",
		100000000*time.Millisecond - 1:   "100000S",
		100000000*time.Microsecond + 999: "100001m",
	} {
		if got := encodeTimeout(d); got != want {
			t.Errorf("encodeTimeout(%v) = %s, want %s", d, got, want)
		}
	}
}

func FuzzFrameReader(f *testing.F) {
	// No leakcheck: the target starts no goroutine, and under -fuzz the
	// engine's own os/signal goroutine would be reported as a leak.
	f.Add(appendFrame(appendFrame(nil, []byte("a")), []byte("bc")), 16)
	f.Add([]byte{0, 0, 0, 0, 3, 1}, 16)
	f.Add([]byte{0, 0, 1, 0, 0}, 1<<20)
	f.Add([]byte{1, 0, 0, 0, 0}, 16)
	f.Fuzz(func(t *testing.T, in []byte, max int) {
		if max < 0 || max > 1<<20 {
			max = 1 << 10
		}
		fr := frameReader{r: bytes.NewReader(in), max: max}
		total := 0
		for {
			m, err := fr.next()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					if _, ok := errors.AsType[*Status](err); !ok {
						t.Fatalf("error is not a *Status: %v", err)
					}
				} else if total != len(in) {
					t.Fatalf("clean EOF after %d of %d bytes", total, len(in))
				}
				return
			}
			if len(m) > max {
				t.Fatalf("message of %d bytes passed a %d-byte limit", len(m), max)
			}
			total += frameHeaderLen + len(m)
		}
	})
}
