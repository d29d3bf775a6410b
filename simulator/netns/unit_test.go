package netns

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/skiff-mesh/skiff/simulator/netns/nfqueue"
)

func TestShortID(t *testing.T) {
	if got := ShortID("r42"); got != "r42" {
		t.Errorf("ShortID(r42) = %q, want it unchanged", got)
	}
	for _, id := range []string{"", "UPPER", "run-2026-01-02T03:04:05", "abcdefghi", "a b"} {
		got := ShortID(id)
		if !shortIDRe.MatchString(got) || len(got) != maxIDLen {
			t.Errorf("ShortID(%q) = %q: want %d of [a-z0-9]", id, got, maxIDLen)
		}
		if ShortID(id) != got {
			t.Errorf("ShortID(%q) is not stable", id)
		}
	}
	if ShortID("run-a") == ShortID("run-b") {
		t.Error("two run ids share a short id")
	}
	// Every link name fits IFNAMSIZ-1 even with the longest id and index.
	id := strings.Repeat("z", maxIDLen)
	for _, name := range []string{"sk" + id + "br", "sk" + id + "v9999"} {
		if len(name) > 15 {
			t.Errorf("link name %s is %d characters, Linux allows 15", name, len(name))
		}
		if !isRunLink(id, name) {
			t.Errorf("isRunLink(%s, %s) = false", id, name)
		}
	}
	if isRunLink("ab", "skabc") || isRunLink("ab", "skab") || isRunLink("ab", "eth0") {
		t.Error("isRunLink takes another's link")
	}
}

func TestOwnsNamespace(t *testing.T) {
	for _, c := range []struct {
		id, ns string
		want   bool
	}{
		{"r1", "skiffns-r1", true},
		{"r1", "skiffns-r1-web-0", true},
		{"r1", "skiffns-r12-web-0", false},
		{"r1", "skiffns-r", false},
		{"r1", "other-r1", false},
	} {
		if got := ownsNamespace(c.id, c.ns); got != c.want {
			t.Errorf("ownsNamespace(%s, %s) = %v", c.id, c.ns, got)
		}
	}
}

func TestPodNamespaceName(t *testing.T) {
	n := &Net{sw: "skiffns-r1"}
	if got := n.podNamespace("web-0"); got != "skiffns-r1-web-0" {
		t.Errorf("got %s", got)
	}
	long := strings.Repeat("a", 100)
	a, b := n.podNamespace(long+"x"), n.podNamespace(long+"y")
	if a == b || len(a) != len("skiffns-r1-")+maxPodPart {
		t.Errorf("long names: %s, %s", a, b)
	}
}

func TestBroadcast(t *testing.T) {
	for p, want := range map[string]string{
		"10.248.7.0/24": "10.248.7.255",
		"10.0.0.0/16":   "10.0.255.255",
		"10.9.9.8/29":   "10.9.9.15",
	} {
		if got := broadcast(netip.MustParsePrefix(p)); got.String() != want {
			t.Errorf("broadcast(%s) = %s, want %s", p, got, want)
		}
	}
}

func TestIPLiteral(t *testing.T) {
	ok := []struct{ network, addr string }{
		{"tcp", "10.0.0.1:80"}, {"udp", "[::1]:53"}, {"unix", "/tmp/x"},
	}
	for _, c := range ok {
		if err := ipLiteral(c.network, c.addr, false); err != nil {
			t.Errorf("%s %s: %v", c.network, c.addr, err)
		}
	}
	if err := ipLiteral("tcp", ":80", true); err != nil {
		t.Errorf(":80 for a listener: %v", err)
	}
	for _, addr := range []string{"web:80", ":80", "10.0.0.1"} {
		if err := ipLiteral("tcp", addr, false); err == nil {
			t.Errorf("dial %s accepted", addr)
		}
	}
}

func TestCapped(t *testing.T) {
	var c capped
	c.Write([]byte(strings.Repeat("x", outputCap-1)))
	c.Write([]byte("yz"))
	if c.buf.Len() != outputCap || !c.cut || !strings.HasSuffix(c.String(), "[…cut]") {
		t.Errorf("kept %d bytes, cut %v", c.buf.Len(), c.cut)
	}
}

func TestFlowOf(t *testing.T) {
	pkt := []byte{
		0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, // IPv4, DF, TCP
		10, 0, 0, 2, 10, 0, 0, 3, // src, dst
		0x1f, 0x90, 0x00, 0x50, // ports 8080 → 80
	}
	k := flowOf(pkt)
	if k.proto != 6 || k.src != [4]byte{10, 0, 0, 2} || k.dst != [4]byte{10, 0, 0, 3} || k.sport != 8080 || k.dpt != 80 {
		t.Errorf("%+v", k)
	}
	frag := append([]byte(nil), pkt...)
	frag[6], frag[7] = 0, 10 // a later fragment: no ports there
	if k := flowOf(frag); k.sport != 0 || k.dpt != 0 || k.src != [4]byte{10, 0, 0, 2} {
		t.Errorf("fragment: %+v", k)
	}
	if flowOf([]byte{0x60, 0}) != (flowKey{}) || flowOf(nil) != (flowKey{}) {
		t.Error("non-IPv4 packets do not share the zero flow")
	}
}

func ids(vs []nfqueue.Verdict) []uint32 {
	var out []uint32
	for _, v := range vs {
		if v.Drop {
			panic("schedule released a drop")
		}
		out = append(out, v.ID)
	}
	return out
}

func TestScheduleKeepsFlowOrderAndDoesNotBlockOthers(t *testing.T) {
	t0 := time.Unix(1000, 0)
	a := flowKey{proto: 6, sport: 1}
	b := flowKey{proto: 6, sport: 2}
	s := newSchedule()
	// Flow a: a long delay, then a short one: the second waits for the first.
	if at := s.push(t0, a, 1, 50*time.Millisecond); !at.Equal(t0.Add(50 * time.Millisecond)) {
		t.Fatal(at)
	}
	if at := s.push(t0.Add(time.Millisecond), a, 2, 5*time.Millisecond); !at.Equal(t0.Add(50 * time.Millisecond)) {
		t.Fatalf("a later packet of the flow would leave at %v, before the earlier one", at.Sub(t0))
	}
	// Flow b, arriving later with a short delay, is not held behind a.
	s.push(t0.Add(2*time.Millisecond), b, 3, 5*time.Millisecond)
	if next, _ := s.next(); !next.Equal(t0.Add(7 * time.Millisecond)) {
		t.Fatalf("next release at %v, want flow b's at 7ms", next.Sub(t0))
	}
	if got := ids(s.popDue(t0.Add(10*time.Millisecond), nil)); len(got) != 1 || got[0] != 3 {
		t.Fatalf("due at 10ms: %v, want [3]", got)
	}
	if got := ids(s.popDue(t0.Add(49*time.Millisecond), nil)); len(got) != 0 {
		t.Fatalf("due at 49ms: %v", got)
	}
	if got := ids(s.popDue(t0.Add(50*time.Millisecond), nil)); len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("due at 50ms: %v, want [1 2] in arrival order", got)
	}
	if _, ok := s.next(); ok || s.len() != 0 {
		t.Fatal("held packets left")
	}
	s.push(t0, a, 9, time.Hour)
	s.push(t0, b, 8, time.Minute)
	if got := ids(s.popAll(nil)); len(got) != 2 || got[0] != 8 || got[1] != 9 {
		t.Fatalf("popAll: %v, want release order [8 9]", got)
	}
}

func TestScheduleForgetsIdleFlows(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s := newSchedule()
	for i := range 5000 {
		now := t0.Add(time.Duration(i) * time.Millisecond)
		s.push(now, flowKey{sport: uint16(i)}, uint32(i), time.Millisecond)
		s.popDue(now, nil)
	}
	if len(s.last) > 2048 {
		t.Fatalf("%d flows remembered for %d held packets", len(s.last), s.len())
	}
}

func TestImpairmentValidate(t *testing.T) {
	for _, im := range []Impairment{
		{Latency: -1}, {Jitter: -1}, {Loss: 1.5}, {Loss: -0.1}, {Latency: 2 * MaxDelay}, {QueueLen: MaxQueueLen + 1},
	} {
		if im.validate() == nil {
			t.Errorf("%+v accepted", im)
		}
	}
	if err := (Impairment{Latency: time.Second, Jitter: time.Millisecond, Loss: 1}).validate(); err != nil {
		t.Error(err)
	}
}
