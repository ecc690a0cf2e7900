package session

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
)

// IDBytes is the number of random bytes in a session id: 256 bits, twice
// what OWASP asks for, so guessing a live id is out of reach at any rate.
const IDBytes = 32

// IDLen is the length of an encoded session id: IDBytes in unpadded
// base64url, ceil(32×8/6) characters.
const IDLen = 43

// ErrMalformedID is returned by ParseID for a value that is not of the exact
// shape of an id this package issues.
var ErrMalformedID = errors.New("session: malformed session id")

// NewID returns a fresh session id from crypto/rand.
func NewID() string {
	var b [IDBytes]byte
	// crypto/rand.Read never returns an error on supported platforms (and
	// crashes the program irrecoverably if the kernel's source fails), so
	// there is nothing to handle here.
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ParseID checks that s has the exact shape of an id from NewID: IDLen
// characters of the base64url alphabet whose unused trailing bits are zero.
// It returns s, or ErrMalformedID. It does no I/O: a value that fails here
// never reaches a store.
func ParseID(s string) (string, error) {
	if len(s) != IDLen {
		return "", ErrMalformedID
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return "", ErrMalformedID
		}
	}
	// 43 characters carry 258 bits; Strict rejects the two spare bits set, so
	// each id has exactly one spelling.
	var b [IDBytes + 1]byte
	n, err := base64.RawURLEncoding.Strict().Decode(b[:], []byte(s))
	if err != nil || n != IDBytes {
		return "", ErrMalformedID
	}
	return s, nil
}
