package session

import (
	"encoding/json"
	"fmt"
)

// A Codec encodes one attribute value for the store and decodes it back.
// Each attribute is encoded on its own, so a store can keep it in its own
// field and a delta carries only what changed.
type Codec interface {
	// Encode returns the encoding of v, or an error when v cannot be encoded.
	Encode(v any) ([]byte, error)
	// Decode decodes data into the value v points to, or returns an error.
	Decode(data []byte, v any) error
}

// JSONCodec encodes values as JSON with encoding/json. It is the default: it
// needs no type registration (strings, numbers, maps, slices and structs all
// work as they are) and other languages can read what it writes.
type JSONCodec struct{}

// Encode returns the JSON encoding of v.
func (JSONCodec) Encode(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("session: encode value: %w", err)
	}
	return b, nil
}

// Decode decodes JSON data into the value v points to.
func (JSONCodec) Decode(data []byte, v any) error {
	// Strings without escapes are the commonest attribute (a user name, a
	// flash message); they skip the reflective decoder.
	if p, ok := v.(*string); ok && len(data) >= 2 && data[0] == '"' && data[len(data)-1] == '"' {
		if inner := data[1 : len(data)-1]; plainJSONString(inner) {
			*p = string(inner)
			return nil
		}
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("session: decode value: %w", err)
	}
	return nil
}

// plainJSONString reports whether b, the inside of a JSON string literal,
// is plain printable ASCII with no escapes or quotes, so that its bytes are
// its value.
func plainJSONString(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			return false
		}
	}
	return true
}
