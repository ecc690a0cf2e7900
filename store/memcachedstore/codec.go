package memcachedstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"time"

	"github.com/roamsession/roam/session"
)

// The record encoding, version 1. Memcached keeps one opaque value per key,
// so a session is one blob:
//
//	version    1 byte, formatVersion
//	id         uvarint length, bytes (checked against the key's id on decode)
//	principal  uvarint length, bytes
//	times      1 byte: bit 0 Created, bit 1 Touched, bit 2 Expires present
//	           then, for each present time in that order:
//	           varint Unix seconds, uvarint nanoseconds (< 1e9)
//	count      uvarint number of attributes
//	attribute  count × (uvarint key length, key, uvarint value length, value),
//	           each key once, in no particular order
//	checksum   4 bytes, big-endian CRC-32C of everything before it
//
// The version byte first and the checksum last are the frame every future
// version keeps, so a decoder can tell a newer record from garbage.
//
// Every length is checked against the bytes that remain before anything is
// allocated for it, so the largest allocation a corrupt blob can cause is
// bounded by its own size. Attributes are written in map order, not
// sorted: sorting a large session's keys cost more than the rest of the
// encoding, and nothing needs one record to have exactly one blob.
const formatVersion = 1

const (
	hasCreated = 1 << iota
	hasTouched
	hasExpires
	knownTimes = hasCreated | hasTouched | hasExpires
)

const checksumSize = 4

// ErrCorrupt is wrapped by the error decode returns for a blob that is
// truncated, has trailing bytes, fails its checksum, or is inconsistent
// (lengths beyond the end, a key twice, bad flags).
var ErrCorrupt = errors.New("memcachedstore: corrupt session record")

// ErrUnknownVersion is wrapped by the error decode returns for a blob
// whose checksum matches but whose version byte this build does not know:
// most likely a newer roam
// wrote it during a rolling upgrade. Unlike a corrupt blob, the store does
// not treat such a session as absent, so an older node never logs out a
// user whose session a newer node wrote.
var ErrUnknownVersion = errors.New("memcachedstore: session record of an unknown format version")

// castagnoli is CRC-32C's table: read-only after initialisation, and the
// polynomial modern CPUs compute in hardware.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// encode returns the blob of rec in a new slice.
func encode(rec *session.Record) []byte { return appendRecord(nil, rec) }

// appendRecord appends the blob of rec to b, growing it at most once.
func appendRecord(b []byte, rec *session.Record) []byte {
	var flags byte
	size := 1 + uvarintLen(len(rec.ID)) + len(rec.ID) + uvarintLen(len(rec.Principal)) + len(rec.Principal) + 1
	for i, t := range [3]time.Time{rec.Created, rec.Touched, rec.Expires} {
		if !t.IsZero() {
			flags |= 1 << i
			size += 2 * binary.MaxVarintLen64
		}
	}
	size += uvarintLen(len(rec.Values))
	for k, v := range rec.Values {
		size += uvarintLen(len(k)) + len(k) + uvarintLen(len(v)) + len(v)
	}
	size += checksumSize

	b = slices.Grow(b, size)
	start := len(b)
	b = append(b, formatVersion)
	b = appendString(b, rec.ID)
	b = appendString(b, rec.Principal)
	b = append(b, flags)
	for i, t := range [3]time.Time{rec.Created, rec.Touched, rec.Expires} {
		if flags&(1<<i) != 0 {
			b = binary.AppendVarint(b, t.Unix())
			b = binary.AppendUvarint(b, uint64(t.Nanosecond()))
		}
	}
	b = binary.AppendUvarint(b, uint64(len(rec.Values)))
	for k, v := range rec.Values {
		b = appendString(b, k)
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func uvarintLen(n int) int {
	l := 1
	for ; n >= 0x80; n >>= 7 {
		l++
	}
	return l
}

// decode parses a blob written by encode. The record's values are slices of
// b (capped, so appending to one cannot overwrite its neighbour): b must
// not be modified afterwards. It returns an error wrapping ErrCorrupt or
// ErrUnknownVersion for a blob it cannot trust; it never panics, whatever
// b holds.
func decode(b []byte) (*session.Record, error) { return decodeAs(b, "") }

// decodeAs is decode for the item of session id: a record of any other id
// is corrupt (never served under this id), and the record's ID is id itself
// rather than a copy. An empty id accepts any.
func decodeAs(b []byte, id string) (*session.Record, error) {
	if len(b) < 1+checksumSize {
		return nil, fmt.Errorf("%w: %d bytes is shorter than any record", ErrCorrupt, len(b))
	}
	// The checksum comes first: it ends the blob in every format version,
	// so a blob that fails it is garbage (absent), and only a sound one
	// with a version byte this build does not know is a newer record.
	body, sum := b[:len(b)-checksumSize], b[len(b)-checksumSize:]
	if got, want := crc32.Checksum(body, castagnoli), binary.BigEndian.Uint32(sum); got != want {
		return nil, fmt.Errorf("%w: checksum %08x, want %08x", ErrCorrupt, got, want)
	}
	if b[0] != formatVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrUnknownVersion, b[0], formatVersion)
	}
	return decodeBody(body[1:], id)
}

// decodeBody parses what follows the version byte, up to the checksum; id
// is as for decodeAs.
func decodeBody(b []byte, id string) (*session.Record, error) {
	d := reader{b: b}
	rec := &session.Record{ID: id}
	switch got := d.bytes(); {
	case id == "":
		rec.ID = string(got)
	case d.err == nil && string(got) != id:
		d.fail("record of another session id")
	}
	rec.Principal = string(d.bytes())
	flags := d.byte()
	if flags&^knownTimes != 0 {
		d.fail("unknown time flags %#x", flags)
	}
	for i, t := range [3]*time.Time{&rec.Created, &rec.Touched, &rec.Expires} {
		if flags&(1<<i) != 0 {
			*t = d.time()
		}
	}
	// Each attribute takes at least two bytes (two zero lengths), so a
	// count the rest of the blob cannot hold is rejected before the map is
	// sized by it.
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)/2) {
		d.fail("%d attributes in %d bytes", n, len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	// One string per key, not one string sliced for all: measured, the
	// extra passes cost more than the tiny allocations they save.
	rec.Values = make(map[string][]byte, n)
	for range n {
		k := d.bytes()
		v := d.bytes()
		if d.err != nil {
			return nil, d.err
		}
		rec.Values[string(k)] = v
	}
	switch {
	case uint64(len(rec.Values)) != n:
		d.fail("%d attributes but only %d distinct keys", n, len(rec.Values))
	case len(d.b) != 0:
		d.fail("%d bytes after the last attribute", len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	return rec, nil
}

// reader consumes a blob. Its first failure sticks: later reads return zero
// values and err says what went wrong first, so a decoder reads a run of
// fields and checks once.
type reader struct {
	b   []byte
	err error
}

func (d *reader) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
	}
	d.b = nil
}

func (d *reader) byte() byte {
	if len(d.b) == 0 {
		d.fail("truncated")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *reader) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("truncated or overlong uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *reader) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("truncated or overlong varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// bytes reads a length-prefixed field and returns it as a capped slice of
// the blob.
func (d *reader) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("field of %d bytes with %d left", n, len(d.b))
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *reader) time() time.Time {
	sec := d.varint()
	nsec := d.uvarint()
	if d.err != nil {
		return time.Time{}
	}
	if nsec >= uint64(time.Second) {
		d.fail("nanoseconds %d out of range", nsec)
		return time.Time{}
	}
	t := time.Unix(sec, int64(nsec))
	if t.IsZero() {
		// encode leaves zero times out; one spelled explicitly is not a
		// blob encode could have written.
		d.fail("explicit zero time")
	}
	return t
}
