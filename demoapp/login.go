package demoapp

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/url"
	"strconv"
	"strings"
)

// maxLoginBody bounds the body of POST /login: two short fields fit in a
// fraction of it, and a larger body is refused with 413 before it is parsed.
const maxLoginBody = 4 << 10

// Errors of parseLogin, each answered with its own status.
var (
	errUnsupportedMedia = errors.New("the body must be application/x-www-form-urlencoded or application/json")
	errMalformedLogin   = errors.New("malformed login request")
)

// credentials is what a login request carries.
type credentials struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// parseLogin decodes a login body of the given Content-Type. It returns
// errUnsupportedMedia for any type but a form or JSON, and an error wrapping
// errMalformedLogin for a body that does not decode, repeats a field, or
// (JSON) holds anything but one object of strings. Fields other than
// username and password are ignored. Missing fields decode as "".
func parseLogin(contentType string, body []byte) (credentials, error) {
	switch mediaType(contentType) {
	case "application/x-www-form-urlencoded":
		return parseLoginForm(body)
	case "application/json":
		return parseLoginJSON(body)
	default:
		return credentials{}, errUnsupportedMedia
	}
}

func parseLoginForm(body []byte) (credentials, error) {
	// url.ParseQuery rejects bad escapes and semicolons; both are errors
	// rather than silently dropped fields.
	v, err := url.ParseQuery(string(body))
	if err != nil {
		return credentials{}, fmt.Errorf("%w: %v", errMalformedLogin, err)
	}
	var c credentials
	for _, f := range []struct {
		name string
		dst  *string
	}{{"username", &c.Username}, {"password", &c.Password}} {
		switch vals := v[f.name]; len(vals) {
		case 0:
		case 1:
			*f.dst = vals[0]
		default:
			// Two values would let whichever layer reads "the" value
			// disagree with this one; refuse the ambiguity.
			return credentials{}, fmt.Errorf("%w: field %q given %d times", errMalformedLogin, f.name, len(vals))
		}
	}
	return c, nil
}

func parseLoginJSON(body []byte) (credentials, error) {
	var c credentials
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&c); err != nil {
		return credentials{}, fmt.Errorf("%w: %v", errMalformedLogin, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return credentials{}, fmt.Errorf("%w: data after the JSON object", errMalformedLogin)
	}
	return c, nil
}

// mediaType returns the lower-cased media type of a Content-Type value
// without its parameters, or "" when it does not parse.
func mediaType(contentType string) string {
	if contentType == "" {
		return ""
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return ""
	}
	return mt
}

// acceptsJSON reports whether an Accept header lists application/json with
// a non-zero quality. Wildcards do not count: a browser's */* still gets
// HTML.
func acceptsJSON(accept string) bool {
	for part := range strings.SplitSeq(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil || mt != "application/json" {
			continue
		}
		if q, err := strconv.ParseFloat(params["q"], 64); err == nil && q <= 0 {
			continue // q=0: explicitly not acceptable
		}
		return true
	}
	return false
}

func hashPassword(p string) [32]byte { return sha256.Sum256([]byte(p)) }

// passwordOK compares in constant time. Both sides are hashed first, so the
// time taken does not reveal the password's length either.
func (a *App) passwordOK(p string) bool {
	h := hashPassword(p)
	return subtle.ConstantTimeCompare(h[:], a.password[:]) == 1
}
