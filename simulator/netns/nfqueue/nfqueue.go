// Package nfqueue is a small client of the kernel's nfnetlink_queue: the
// netlink protocol through which an iptables NFQUEUE rule hands packets to
// a user-space program, which later tells the kernel to accept or drop
// each one (its verdict). It is what the netns environment's link
// impairments (latency, jitter, loss) are built on.
//
// It speaks only the part of the protocol that holds and releases
// packets: bind one queue, ask for the first CopyRange bytes of each
// packet (enough for the IPv4 and TCP/UDP headers), read packets in
// batches, send verdicts in batches. It never rewrites a packet.
//
// A netlink socket belongs to the network namespace of the thread that
// created it, so Open must run on a thread inside the namespace whose
// queue is wanted (netns.Pod.Do does that); the Conn can then be used
// from any goroutine.
//
// The kernel keeps at most Config.MaxLen packets waiting for a verdict
// in the queue; past that, it drops new packets (counted as
// queue_dropped in /proc/net/netfilter/nfnetlink_queue), or, with
// Config.FailOpen, lets them through without queueing. A packet the
// kernel cannot deliver to the socket (its receive buffer is full) is
// dropped (user_dropped). Closing the Conn unbinds the queue: the kernel
// drops the packets still waiting for a verdict.
//
// The wire format is in the kernel's
// include/uapi/linux/netfilter/nfnetlink_queue.h; numbers are big-endian
// inside the nfnetlink payload and host-endian in the netlink headers.
package nfqueue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Netlink and nfnetlink numbers (linux/netlink.h, linux/netfilter/nfnetlink.h,
// linux/netfilter/nfnetlink_queue.h).
const (
	nlmsgHdrLen = 16 // struct nlmsghdr
	nfgenLen    = 4  // struct nfgenmsg
	nlaHdrLen   = 4  // struct nlattr

	nlmsgError = 0x2 // NLMSG_ERROR
	nlmsgDone  = 0x3 // NLMSG_DONE

	nlmFRequest = 0x1 // NLM_F_REQUEST
	nlmFAck     = 0x4 // NLM_F_ACK

	subsysQueue = 3 // NFNL_SUBSYS_QUEUE

	msgPacket  = subsysQueue << 8   // NFQNL_MSG_PACKET (0)
	msgVerdict = subsysQueue<<8 | 1 // NFQNL_MSG_VERDICT
	msgConfig  = subsysQueue<<8 | 2 // NFQNL_MSG_CONFIG

	attrPacketHdr  = 1  // NFQA_PACKET_HDR
	attrVerdictHdr = 2  // NFQA_VERDICT_HDR
	attrPayload    = 10 // NFQA_PAYLOAD
	attrCapLen     = 13 // NFQA_CAP_LEN

	cfgCmd      = 1 // NFQA_CFG_CMD
	cfgParams   = 2 // NFQA_CFG_PARAMS
	cfgQueueMax = 3 // NFQA_CFG_QUEUE_MAXLEN
	cfgMask     = 4 // NFQA_CFG_MASK
	cfgFlags    = 5 // NFQA_CFG_FLAGS

	cmdBind = 1 // NFQNL_CFG_CMD_BIND

	copyPacket = 2 // NFQNL_COPY_PACKET

	flagFailOpen = 1 // NFQA_CFG_F_FAIL_OPEN

	nlaTypeMask = 0x3fff // NLA_TYPE_MASK: without NLA_F_NESTED, NLA_F_NET_BYTEORDER

	verdictDrop   = 0 // NF_DROP
	verdictAccept = 1 // NF_ACCEPT
)

// Defaults of Config.
const (
	// DefaultCopyRange is the largest IPv4 header (60 bytes) and the
	// four bytes of TCP or UDP ports after it.
	DefaultCopyRange = 64
	// DefaultMaxLen is the kernel's own default queue length.
	DefaultMaxLen = 1024
	// DefaultReadBuffer is the socket's receive buffer: room for a few
	// thousand packet messages of DefaultCopyRange bytes.
	DefaultReadBuffer = 4 << 20
)

// Config sets up a queue. The zero value works: the defaults above,
// packets dropped when the queue is full.
type Config struct {
	// CopyRange is how many bytes of each packet the kernel copies into
	// Packet.Payload; 0 means DefaultCopyRange.
	CopyRange uint32
	// MaxLen is how many packets may wait for a verdict; 0 means
	// DefaultMaxLen.
	MaxLen uint32
	// FailOpen lets packets through, unqueued, while the queue is full,
	// instead of dropping them.
	FailOpen bool
	// ReadBuffer is the socket's receive buffer in bytes (set with
	// SO_RCVBUFFORCE, which needs CAP_NET_ADMIN, else SO_RCVBUF); 0
	// means DefaultReadBuffer.
	ReadBuffer int
}

func (c Config) normalize() Config {
	if c.CopyRange == 0 {
		c.CopyRange = DefaultCopyRange
	}
	if c.MaxLen == 0 {
		c.MaxLen = DefaultMaxLen
	}
	if c.ReadBuffer == 0 {
		c.ReadBuffer = DefaultReadBuffer
	}
	return c
}

// Packet is one queued packet, as Receive hands it over.
type Packet struct {
	// ID names the packet in its verdict.
	ID uint32
	// HWProtocol is the packet's link-layer protocol (0x0800 for IPv4).
	HWProtocol uint16
	// Hook is the netfilter hook that queued it (0 prerouting, 1 input,
	// 2 forward, 3 output, 4 postrouting).
	Hook uint8
	// Payload is the packet's first CopyRange bytes, from its network
	// header; it is only valid during the Receive callback.
	Payload []byte
	// Len is the packet's full length (Payload may be shorter).
	Len int
}

// Verdict is the fate of one packet.
type Verdict struct {
	// ID is the Packet.ID.
	ID uint32
	// Drop drops the packet; false accepts it, and the packet goes on
	// through the rest of the network stack.
	Drop bool
}

// ErrorMsg is an error the kernel sent back on the socket: the errno of
// a rejected request (a verdict for an unknown packet id, say).
type ErrorMsg struct {
	// Errno is the kernel's error number, positive.
	Errno int
}

func (e ErrorMsg) Error() string { return "nfqueue: kernel error " + strconv.Itoa(e.Errno) }

// appendMsgHdr appends a netlink header and the nfgenmsg for queue q;
// the length is patched by finishMsg.
func appendMsgHdr(b []byte, typ, flags uint16, seq uint32, q uint16) []byte {
	b = binary.NativeEndian.AppendUint32(b, 0) // nlmsg_len, patched
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, flags)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0) // nlmsg_pid: the kernel
	b = append(b, 0, 0)                        // nfgen_family AF_UNSPEC, version NFNETLINK_V0
	return binary.BigEndian.AppendUint16(b, q)
}

// appendAttr appends one attribute, padded to four bytes.
func appendAttr(b []byte, typ uint16, data []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(nlaHdrLen+len(data)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// finishMsg patches the length of the message that starts at start.
func finishMsg(b []byte, start int) []byte {
	binary.NativeEndian.PutUint32(b[start:], uint32(len(b)-start))
	return b
}

// bindMsg asks the kernel to send queue q's packets to this socket.
func bindMsg(seq uint32, q uint16) []byte {
	b := appendMsgHdr(nil, msgConfig, nlmFRequest|nlmFAck, seq, q)
	b = appendAttr(b, cfgCmd, []byte{cmdBind, 0, 0, 0}) // command, pad, pf (unused since Linux 3.8)
	return finishMsg(b, 0)
}

// paramsMsg sets copy mode, copy range, queue length and flags.
func paramsMsg(seq uint32, q uint16, c Config) []byte {
	b := appendMsgHdr(nil, msgConfig, nlmFRequest|nlmFAck, seq, q)
	params := binary.BigEndian.AppendUint32(nil, c.CopyRange)
	params = append(params, copyPacket)
	b = appendAttr(b, cfgParams, params)
	b = appendAttr(b, cfgQueueMax, binary.BigEndian.AppendUint32(nil, c.MaxLen))
	var flags uint32
	if c.FailOpen {
		flags = flagFailOpen
	}
	b = appendAttr(b, cfgFlags, binary.BigEndian.AppendUint32(nil, flags))
	b = appendAttr(b, cfgMask, binary.BigEndian.AppendUint32(nil, flagFailOpen))
	return finishMsg(b, 0)
}

// appendVerdict appends one verdict message for queue q.
func appendVerdict(b []byte, seq uint32, q uint16, v Verdict) []byte {
	start := len(b)
	b = appendMsgHdr(b, msgVerdict, nlmFRequest, seq, q)
	hdr := make([]byte, 0, 8)
	if v.Drop {
		hdr = binary.BigEndian.AppendUint32(hdr, verdictDrop)
	} else {
		hdr = binary.BigEndian.AppendUint32(hdr, verdictAccept)
	}
	hdr = binary.BigEndian.AppendUint32(hdr, v.ID)
	b = appendAttr(b, attrVerdictHdr, hdr)
	return finishMsg(b, start)
}

// verdictLen is the size of one verdict message.
const verdictLen = nlmsgHdrLen + nfgenLen + nlaHdrLen + 8

var errShort = errors.New("nfqueue: truncated netlink message")

// parse walks the netlink messages in b: packets go to pkt, kernel
// errors (and acks, errno 0) to ack. It stops at the first malformed
// message and says so.
func parse(b []byte, pkt func(Packet), ack func(seq uint32, errno int)) error {
	for len(b) > 0 {
		if len(b) < nlmsgHdrLen {
			return errShort
		}
		n := int(binary.NativeEndian.Uint32(b))
		typ := binary.NativeEndian.Uint16(b[4:])
		seq := binary.NativeEndian.Uint32(b[8:])
		if n < nlmsgHdrLen || n > len(b) {
			return errShort
		}
		body := b[nlmsgHdrLen:n]
		switch typ {
		case nlmsgError:
			if len(body) < 4 {
				return errShort
			}
			ack(seq, -int(int32(binary.NativeEndian.Uint32(body))))
		case msgPacket:
			p, err := parsePacket(body)
			if err != nil {
				return err
			}
			pkt(p)
		case nlmsgDone:
		default:
			// Not ours to read (the protocol has no other messages to
			// a queue listener today); skip it.
		}
		adv := (n + 3) &^ 3
		if adv > len(b) {
			adv = len(b)
		}
		b = b[adv:]
	}
	return nil
}

// parsePacket reads the attributes of one NFQNL_MSG_PACKET.
func parsePacket(b []byte) (Packet, error) {
	if len(b) < nfgenLen {
		return Packet{}, errShort
	}
	b = b[nfgenLen:]
	var p Packet
	var hdr bool
	for len(b) >= nlaHdrLen {
		n := int(binary.NativeEndian.Uint16(b))
		typ := binary.NativeEndian.Uint16(b[2:]) & nlaTypeMask
		if n < nlaHdrLen || n > len(b) {
			return Packet{}, errShort
		}
		data := b[nlaHdrLen:n]
		switch typ {
		case attrPacketHdr:
			if len(data) < 7 {
				return Packet{}, errShort
			}
			p.ID = binary.BigEndian.Uint32(data)
			p.HWProtocol = binary.BigEndian.Uint16(data[4:])
			p.Hook = data[6]
			hdr = true
		case attrPayload:
			p.Payload = data
		case attrCapLen:
			if len(data) >= 4 {
				p.Len = int(binary.BigEndian.Uint32(data))
			}
		}
		adv := (n + 3) &^ 3
		if adv > len(b) {
			adv = len(b)
		}
		b = b[adv:]
	}
	if !hdr {
		return Packet{}, errors.New("nfqueue: packet message without NFQA_PACKET_HDR")
	}
	if p.Len == 0 {
		p.Len = len(p.Payload) // not truncated: the kernel sends NFQA_CAP_LEN only when it cut
	}
	return p, nil
}

// Stats are one queue's counters as the kernel keeps them.
type Stats struct {
	// Queue is the queue number.
	Queue uint16
	// PortID is the netlink port of the bound socket.
	PortID uint32
	// Waiting is how many packets wait for a verdict now.
	Waiting uint32
	// QueueDropped counts packets dropped because the queue was full.
	QueueDropped uint32
	// UserDropped counts packets dropped because the socket could not
	// take them (its receive buffer was full).
	UserDropped uint32
	// IDSequence is the last packet id given.
	IDSequence uint32
}

// ParseProcStats finds queue q in the text of
// /proc/net/netfilter/nfnetlink_queue (of the namespace in question:
// read it from a thread inside it, as /proc/thread-self/net/...). ok is
// false when the queue is not bound.
func ParseProcStats(text string, q uint16) (s Stats, ok bool, err error) {
	for line := range strings.Lines(text) {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		var v [8]uint64
		for i := range v {
			v[i], err = strconv.ParseUint(f[i], 10, 32)
			if err != nil {
				return Stats{}, false, fmt.Errorf("nfqueue: bad line %q in nfnetlink_queue: %w", strings.TrimSpace(line), err)
			}
		}
		if v[0] != uint64(q) {
			continue
		}
		// queue_number peer_portid queue_total copy_mode copy_range
		// queue_dropped user_dropped id_sequence 1
		return Stats{
			Queue: q, PortID: uint32(v[1]), Waiting: uint32(v[2]),
			QueueDropped: uint32(v[5]), UserDropped: uint32(v[6]), IDSequence: uint32(v[7]),
		}, true, nil
	}
	return Stats{}, false, nil
}
