package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Limits on decoded fields. They bound what a corrupt or hostile frame can
// make the decoder allocate; the frame's own length bounds the rest.
const (
	MaxString = 1 << 16 // ids, node names, attribute keys, principals
	MaxValue  = 16 << 20
)

// ErrCorrupt is wrapped by every decode error: a frame or payload that is
// truncated, oversized, of the wrong type or internally inconsistent.
var ErrCorrupt = errors.New("wire: corrupt message")

// enc appends fields to a byte slice.
type enc struct{ b []byte }

func (e *enc) u8(v uint8)       { e.b = append(e.b, v) }
func (e *enc) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) bool(v bool) {
	if v {
		e.u8(1)
	} else {
		e.u8(0)
	}
}
func (e *enc) bytes(v []byte) { e.uvarint(uint64(len(v))); e.b = append(e.b, v...) }
func (e *enc) str(v string)   { e.uvarint(uint64(len(v))); e.b = append(e.b, v...) }
func (e *enc) stamp(s Stamp)  { e.uvarint(s.T); e.str(s.Node) }

// dec reads fields from a payload. The first failure sticks: later reads
// return zero values, and err reports what went wrong first, so decoders
// read every field and check once at the end.
type dec struct {
	b   []byte
	err error
}

func (d *dec) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
	}
	d.b = nil
}

func (d *dec) u8() uint8 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.fail("truncated")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *dec) bool() bool {
	switch d.u8() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail("bad boolean")
	return false
}

func (d *dec) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// length reads a length prefix and checks it against max and against what
// is left, before anything is allocated for it.
func (d *dec) length(max int) int {
	n := d.uvarint()
	if d.err != nil {
		return 0
	}
	if n > uint64(max) || n > uint64(len(d.b)) {
		d.fail("length %d exceeds limit or remaining %d bytes", n, len(d.b))
		return 0
	}
	return int(n)
}

// count reads an element count; every element takes at least minSize
// bytes, so a count larger than the rest of the payload allows is corrupt.
func (d *dec) count(minSize int) int {
	n := d.uvarint()
	if d.err != nil {
		return 0
	}
	if n > math.MaxInt32 || n*uint64(minSize) > uint64(len(d.b)) {
		d.fail("count %d exceeds remaining %d bytes", n, len(d.b))
		return 0
	}
	return int(n)
}

func (d *dec) str(max int) string {
	n := d.length(max)
	if d.err != nil {
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// bytes returns a copy, so a decoded message never pins the frame buffer.
func (d *dec) bytes(max int) []byte {
	n := d.length(max)
	if d.err != nil {
		return nil
	}
	v := make([]byte, n)
	copy(v, d.b[:n])
	d.b = d.b[n:]
	return v
}

func (d *dec) stamp() Stamp {
	t := d.uvarint()
	node := d.str(MaxString)
	return Stamp{T: t, Node: node}
}

// end fails the decode when bytes are left over: a payload is exactly one
// message.
func (d *dec) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	return d.err
}
