package redisstore

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/roamsession/roam/session"
)

// The hash of one session holds one field per attribute, named attrPrefix
// followed by the attribute's name, and these metadata fields. Metadata
// names are single characters and attribute names always start with the
// two-character attrPrefix, so no attribute name can ever collide with a
// metadata field, whatever bytes it holds. Fields of neither kind are
// ignored when loading, so a later version can add metadata without
// breaking an older reader.
const (
	attrPrefix   = "v:"
	fieldCreated = "c" // unix microseconds, "" for the zero time
	fieldTouched = "t"
	fieldExpires = "e" // "" means the session has no deadline
	fieldPrinc   = "p" // the principal, "" when anonymous
)

// encodeTime writes t as decimal unix microseconds, or "" for the zero time.
// Microseconds, not nanoseconds: the Lua scripts compare deadlines as Lua
// numbers (IEEE doubles), which hold every integer below 2^53 exactly, and
// unix microseconds stay below that until the year 2255.
func encodeTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return strconv.FormatInt(t.UnixMicro(), 10)
}

// decodeTime reads a time written by encodeTime. It returns an error for
// anything else, so a hash written by something other than this store is
// reported instead of read as a session with a made-up deadline.
func decodeTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	us, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("time field %q is not unix microseconds", s)
	}
	return time.UnixMicro(us), nil
}

// expireAtMillis is the PEXPIREAT argument for a session that expires at t:
// t rounded up to the millisecond, so Redis never drops a session before
// its Expires. (Whether a session is live is decided from the Expires
// field, to the microsecond, by every method; the key's TTL only frees its
// memory.) It returns "" for the zero time: no TTL.
func expireAtMillis(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	us := t.UnixMicro()
	ms := us / 1000
	if us%1000 > 0 {
		ms++
	}
	return strconv.FormatInt(ms, 10)
}

// decodeRecord turns the fields of a session hash, as HGETALL returns them,
// into a Record. It returns errCorrupt (wrapped) when a metadata field is
// malformed or the created field is missing.
func decodeRecord(id string, fields map[string]string) (*session.Record, error) {
	rec := &session.Record{ID: id, Values: make(map[string][]byte, len(fields))}
	// One buffer for all the values: a Load costs one allocation for them
	// however many there are. Each value is capped at its own length, so an
	// append by the caller reallocates instead of overwriting a neighbour.
	size := 0
	for k, v := range fields {
		if strings.HasPrefix(k, attrPrefix) {
			size += len(v)
		}
	}
	buf := make([]byte, 0, size)
	sawCreated := false
	for k, v := range fields {
		if name, ok := strings.CutPrefix(k, attrPrefix); ok {
			start := len(buf)
			buf = append(buf, v...)
			rec.Values[name] = buf[start:len(buf):len(buf)]
			continue
		}
		var err error
		switch k {
		case fieldCreated:
			rec.Created, err = decodeTime(v)
			sawCreated = true
		case fieldTouched:
			rec.Touched, err = decodeTime(v)
		case fieldExpires:
			rec.Expires, err = decodeTime(v)
		case fieldPrinc:
			rec.Principal = v
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errCorrupt, err)
		}
	}
	if !sawCreated {
		// Every hash this store writes has it: a key under our prefix
		// without it was written by someone else.
		return nil, fmt.Errorf("%w: no %q field", errCorrupt, fieldCreated)
	}
	return rec, nil
}

// live reports whether a session with deadline expires is alive at now.
func live(expires, now time.Time) bool {
	return expires.IsZero() || now.Before(expires)
}
