package control

import (
	"encoding/binary"
	"errors"
	"io"
)

// DefaultMaxMessageSize bounds a received message unless
// [ConnConfig.MaxMessageSize] says otherwise: grpc-go's default receive
// limit.
const DefaultMaxMessageSize = 4 << 20

// frameHeaderLen is the gRPC length-prefixed message header: one byte
// compressed flag and a four-byte big-endian length.
const frameHeaderLen = 5

// appendFrame appends msg to b as one uncompressed gRPC message.
func appendFrame(b, msg []byte) []byte {
	b = append(b, 0, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[len(b)-4:], uint32(len(msg)))
	return append(b, msg...)
}

// frameReader reads gRPC length-prefixed messages from a response body.
type frameReader struct {
	r   io.Reader
	max int
	hdr [frameHeaderLen]byte
}

// next returns the next message in a new slice: control-plane messages
// are rare, and a watch stream that kept a buffer would pin its largest
// message for its whole life, once per authority. It
// returns io.EOF at a clean end (between messages) and a *Status for a
// malformed or oversized frame; other errors are the reader's own.
func (f *frameReader) next() ([]byte, error) {
	if _, err := io.ReadFull(f.r, f.hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, statusf(CodeInternal, "grpc: response ends inside a message header (%v)", err)
		}
		return nil, err // io.EOF: clean end
	}
	switch f.hdr[0] {
	case 0:
	case 1:
		return nil, statusf(CodeInternal, "grpc: server sent a compressed message, but this client asks for none and supports none")
	default:
		return nil, statusf(CodeInternal, "grpc: malformed response frame: compressed flag is %#x, want 0 or 1 (is the server speaking gRPC?)", f.hdr[0])
	}
	n := binary.BigEndian.Uint32(f.hdr[1:])
	if uint64(n) > uint64(f.max) {
		return nil, statusf(CodeResourceExhausted, "grpc: received message larger than max (%d vs. %d)", n, f.max)
	}
	var msg []byte
	var err error
	if n <= 64<<10 {
		msg = make([]byte, n)
		_, err = io.ReadFull(f.r, msg)
	} else {
		// Grow with what arrives rather than trust a large declared
		// length with an allocation up front.
		msg, err = io.ReadAll(io.LimitReader(f.r, int64(n)))
		if err == nil && len(msg) < int(n) {
			err = io.ErrUnexpectedEOF
		}
	}
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, statusf(CodeInternal, "grpc: response ends inside a %d-byte message (%v)", n, io.ErrUnexpectedEOF)
		}
		return nil, err
	}
	return msg, nil
}
