// Package wire is the binary codec of the cluster store's peer protocol:
// length-prefixed, versioned frames, each carrying one typed message.
//
// A frame is an 8-byte header followed by its payload:
//
//	offset 0  'R' 'M'       magic
//	offset 2  version       Version (1)
//	offset 3  type          a Type
//	offset 4  length        payload length, big-endian uint32
//
// Every decode path checks lengths, counts and types before it trusts a
// byte or allocates for it, and returns an error wrapping ErrCorrupt, never
// panics, for input it cannot parse (FuzzDecode holds it to that).
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Version is the protocol version this package writes and reads.
const Version = 1

// HeaderLen is the size of a frame header.
const HeaderLen = 8

// DefaultMaxFrame bounds a frame's payload when the caller sets no limit.
const DefaultMaxFrame = 32 << 20

// ErrTooLarge is returned for a frame whose declared payload exceeds the
// reader's limit; the payload is not read.
var ErrTooLarge = errors.New("wire: frame too large")

// ErrVersion is returned for a frame of a protocol version this package
// does not speak.
var ErrVersion = errors.New("wire: unsupported protocol version")

// Type identifies the message a frame carries.
type Type uint8

// The message types.
const (
	TypePing Type = iota + 1
	TypeWrites
	TypeResults
	TypeForward
	TypeForwardReply
	TypeFetch
	TypeEntries
	TypePull
	TypeEnd
	TypeHello
	TypeHelloReply
	TypeQuery
	TypeIDs
	TypeRecords
	TypeError
	typeLimit
)

var typeNames = [...]string{"", "ping", "writes", "results", "forward", "forward-reply", "fetch", "entries", "pull", "end", "hello", "hello-reply", "query", "ids", "records", "error"}

func (t Type) String() string {
	if t > 0 && t < typeLimit {
		return typeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// A Message is one of the types of this package.
type Message interface {
	Type() Type
	appendTo(e *enc)
	decodeFrom(d *dec)
}

// Append appends m as one frame to dst and returns the extended slice.
func Append(dst []byte, m Message) []byte {
	start := len(dst)
	e := enc{b: append(dst, 'R', 'M', Version, byte(m.Type()), 0, 0, 0, 0)}
	m.appendTo(&e)
	binary.BigEndian.PutUint32(e.b[start+4:], uint32(len(e.b)-start-HeaderLen))
	return e.b
}

// Marshal returns m as one frame.
func Marshal(m Message) []byte { return Append(nil, m) }

// parseHeader checks a frame header and returns its type and payload length.
func parseHeader(h []byte, max int) (Type, int, error) {
	if h[0] != 'R' || h[1] != 'M' {
		return 0, 0, fmt.Errorf("%w: bad magic %q", ErrCorrupt, h[:2])
	}
	if h[2] != Version {
		return 0, 0, fmt.Errorf("%w: frame version %d, want %d", ErrVersion, h[2], Version)
	}
	t := Type(h[3])
	if t == 0 || t >= typeLimit {
		return 0, 0, fmt.Errorf("%w: unknown message type %d", ErrCorrupt, h[3])
	}
	n := binary.BigEndian.Uint32(h[4:8])
	if max <= 0 {
		max = DefaultMaxFrame
	}
	if uint64(n) > uint64(max) {
		return 0, 0, fmt.Errorf("%w: %s payload of %d bytes, limit %d", ErrTooLarge, t, n, max)
	}
	return t, int(n), nil
}

// Split parses the first frame of b. It returns the frame's type, its
// payload (aliasing b) and the bytes after it. It fails when b does not
// start with a whole, well-formed frame of at most max payload bytes
// (max <= 0 means DefaultMaxFrame).
func Split(b []byte, max int) (Type, []byte, []byte, error) {
	if len(b) < HeaderLen {
		return 0, nil, nil, fmt.Errorf("%w: %d bytes, shorter than a frame header", ErrCorrupt, len(b))
	}
	t, n, err := parseHeader(b[:HeaderLen], max)
	if err != nil {
		return 0, nil, nil, err
	}
	if len(b)-HeaderLen < n {
		return 0, nil, nil, fmt.Errorf("%w: %s frame truncated: %d of %d payload bytes", ErrCorrupt, t, len(b)-HeaderLen, n)
	}
	return t, b[HeaderLen : HeaderLen+n], b[HeaderLen+n:], nil
}

// ReadFrame reads one frame from r. It returns io.EOF when r ends cleanly
// before a frame starts, and an error wrapping ErrCorrupt, ErrVersion or
// ErrTooLarge for a bad frame (then the stream cannot be resynchronised).
func ReadFrame(r io.Reader, max int) (Type, []byte, error) {
	var h [HeaderLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return 0, nil, fmt.Errorf("%w: truncated frame header", ErrCorrupt)
		}
		return 0, nil, err
	}
	t, n, err := parseHeader(h[:], max)
	if err != nil {
		return 0, nil, err
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return 0, nil, fmt.Errorf("%w: %s frame truncated", ErrCorrupt, t)
		}
		return 0, nil, err
	}
	return t, p, nil
}

// Decode decodes payload, which arrived in a frame of type t, into m. It
// fails when t is not m's type or the payload is not exactly one valid m.
func Decode(t Type, payload []byte, m Message) error {
	if t != m.Type() {
		if t == TypeError {
			var e Error
			if err := Decode(t, payload, &e); err != nil {
				return err
			}
			return &e
		}
		return fmt.Errorf("%w: got a %s frame, want %s", ErrCorrupt, t, m.Type())
	}
	d := dec{b: payload}
	m.decodeFrom(&d)
	return d.end()
}

// Unmarshal decodes b, which must be exactly one frame, into m.
func Unmarshal(b []byte, m Message) error {
	t, p, rest, err := Split(b, 0)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %d bytes after the frame", ErrCorrupt, len(rest))
	}
	return Decode(t, p, m)
}
