package nfqueue

import (
	"encoding/binary"
	"testing"
)

// packetMsg builds the message the kernel sends for one packet.
func packetMsg(id uint32, hook uint8, payload []byte, capLen uint32) []byte {
	b := appendMsgHdr(nil, msgPacket, 0, 0, 7)
	hdr := binary.BigEndian.AppendUint32(nil, id)
	hdr = binary.BigEndian.AppendUint16(hdr, 0x0800)
	hdr = append(hdr, hook)
	b = appendAttr(b, attrPacketHdr, hdr)
	if capLen != 0 {
		b = appendAttr(b, attrCapLen, binary.BigEndian.AppendUint32(nil, capLen))
	}
	b = appendAttr(b, attrPayload, payload)
	return finishMsg(b, 0)
}

func errorMsg(seq uint32, errno int32) []byte {
	b := binary.NativeEndian.AppendUint32(nil, 0)
	b = binary.NativeEndian.AppendUint16(b, nlmsgError)
	b = binary.NativeEndian.AppendUint16(b, 0)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = binary.NativeEndian.AppendUint32(b, uint32(errno))
	b = append(b, make([]byte, 16)...) // the echoed request header
	return finishMsg(b, 0)
}

func TestParse(t *testing.T) {
	var in []byte
	in = append(in, packetMsg(41, 4, []byte{0x45, 1, 2}, 0)...) // 3 bytes: padded
	in = append(in, errorMsg(9, -2)...)
	in = append(in, packetMsg(42, 0, []byte{0x45, 0, 0, 0, 5}, 1500)...)
	var got []Packet
	var acks [][2]int
	err := parse(in, func(p Packet) {
		p.Payload = append([]byte(nil), p.Payload...)
		got = append(got, p)
	}, func(seq uint32, errno int) { acks = append(acks, [2]int{int(seq), errno}) })
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != 41 || got[0].Hook != 4 || len(got[0].Payload) != 3 || got[0].Len != 3 ||
		got[1].ID != 42 || got[1].Len != 1500 || got[1].HWProtocol != 0x0800 {
		t.Fatalf("packets: %+v", got)
	}
	if len(acks) != 1 || acks[0] != [2]int{9, 2} {
		t.Fatalf("acks: %v, want seq 9 errno 2", acks)
	}
}

func TestParseRejectsTruncated(t *testing.T) {
	m := packetMsg(1, 0, []byte{1, 2, 3, 4}, 0)
	if err := parse(m[:len(m)-4], func(Packet) {}, func(uint32, int) {}); err == nil {
		t.Fatal("a message longer than the buffer was accepted")
	}
	noHdr := finishMsg(appendAttr(appendMsgHdr(nil, msgPacket, 0, 0, 0), attrPayload, []byte{1}), 0)
	if err := parse(noHdr, func(Packet) {}, func(uint32, int) {}); err == nil {
		t.Fatal("a packet without its header was accepted")
	}
}

func TestVerdictMessage(t *testing.T) {
	b := appendVerdict(nil, 5, 300, Verdict{ID: 0x01020304, Drop: true})
	b = appendVerdict(b, 6, 300, Verdict{ID: 7})
	if len(b) != 2*verdictLen {
		t.Fatalf("two verdicts are %d bytes, want %d", len(b), 2*verdictLen)
	}
	for i, want := range []struct {
		seq, verdict, id uint32
	}{{5, verdictDrop, 0x01020304}, {6, verdictAccept, 7}} {
		m := b[i*verdictLen:]
		if n := binary.NativeEndian.Uint32(m); n != verdictLen {
			t.Errorf("verdict %d: length %d", i, n)
		}
		if typ := binary.NativeEndian.Uint16(m[4:]); typ != msgVerdict {
			t.Errorf("verdict %d: type %#x", i, typ)
		}
		if seq := binary.NativeEndian.Uint32(m[8:]); seq != want.seq {
			t.Errorf("verdict %d: seq %d", i, seq)
		}
		if q := binary.BigEndian.Uint16(m[18:]); q != 300 {
			t.Errorf("verdict %d: queue %d (res_id is big-endian)", i, q)
		}
		attr := m[nlmsgHdrLen+nfgenLen:]
		if binary.NativeEndian.Uint16(attr[2:]) != attrVerdictHdr {
			t.Errorf("verdict %d: attribute %d", i, binary.NativeEndian.Uint16(attr[2:]))
		}
		if v := binary.BigEndian.Uint32(attr[4:]); v != want.verdict {
			t.Errorf("verdict %d: verdict %d", i, v)
		}
		if id := binary.BigEndian.Uint32(attr[8:]); id != want.id {
			t.Errorf("verdict %d: id %#x", i, id)
		}
	}
}

func TestConfigMessages(t *testing.T) {
	b := bindMsg(1, 9)
	if int(binary.NativeEndian.Uint32(b)) != len(b) || len(b)%4 != 0 {
		t.Fatalf("bind message length %d of %d bytes", binary.NativeEndian.Uint32(b), len(b))
	}
	p := paramsMsg(2, 9, Config{FailOpen: true}.normalize())
	// header 16 + nfgen 4 + params (4+5 → 12) + maxlen 8 + flags 8 + mask 8
	if len(p) != 16+4+12+8+8+8 {
		t.Fatalf("params message is %d bytes", len(p))
	}
	params := p[nlmsgHdrLen+nfgenLen:]
	if binary.NativeEndian.Uint16(params) != 9 || binary.BigEndian.Uint32(params[4:]) != DefaultCopyRange || params[8] != copyPacket {
		t.Fatalf("params attribute % x", params[:12])
	}
	flags := p[len(p)-16:]
	if binary.NativeEndian.Uint16(flags[2:]) != cfgFlags || binary.BigEndian.Uint32(flags[4:]) != flagFailOpen {
		t.Fatalf("flags attribute % x", flags[:8])
	}
}

func TestParseProcStats(t *testing.T) {
	text := "    0  12345     0 2    64     0     0        0  1\n  100 -4123     3 2    64     5     6      789  1\n"
	if _, _, err := ParseProcStats(text, 100); err == nil {
		t.Fatal("a negative port id parsed")
	}
	text = "    0  12345     0 2    64     0     0        0  1\n  100  4123     3 2    64     5     6      789  1\n"
	s, ok, err := ParseProcStats(text, 100)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if s != (Stats{Queue: 100, PortID: 4123, Waiting: 3, QueueDropped: 5, UserDropped: 6, IDSequence: 789}) {
		t.Fatalf("%+v", s)
	}
	if _, ok, _ := ParseProcStats(text, 1); ok {
		t.Fatal("found an unbound queue")
	}
}

// The kernel is the only writer to the socket, but a parser of bytes from
// outside the process must not panic or loop on any input.
func FuzzParse(f *testing.F) {
	f.Add(packetMsg(1, 4, []byte{0x45, 0, 0, 20}, 0))
	f.Add(errorMsg(3, -16))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = parse(b, func(p Packet) {
			if len(p.Payload) > len(b) {
				t.Fatal("payload longer than the input")
			}
		}, func(uint32, int) {})
	})
}
