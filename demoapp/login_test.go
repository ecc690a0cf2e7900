package demoapp

import (
	"encoding/json"
	"errors"
	"net/url"
	"testing"
)

func TestAcceptsJSON(t *testing.T) {
	for accept, want := range map[string]bool{
		"":                                  false,
		"application/json":                  true,
		"Application/JSON":                  true,
		"text/html, application/json;q=0.9": true,
		"application/json;q=0":              false,
		"application/json; q=0.000":         false,
		"*/*":                               false,
		"application/*":                     false,
		"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8": false,
		"application/jsonx": false,
		";;;":               false,
	} {
		if got := acceptsJSON(accept); got != want {
			t.Errorf("acceptsJSON(%q) = %v, want %v", accept, got, want)
		}
	}
}

func TestValidName(t *testing.T) {
	for s, want := range map[string]bool{
		"a": true, "alice": true, "A.b_c-9": true, string(make([]byte, 65)): false,
		"": false, "al ice": false, "al/ice": false, "älice": false, "a\n": false,
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa":  true,  // 64
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa": false, // 65
	} {
		if got := validName(s); got != want {
			t.Errorf("validName(%q) = %v, want %v", s, got, want)
		}
	}
}

// FuzzParseLogin checks that no body makes parseLogin panic, that every
// failure is one of its two documented errors, and that whatever it accepts
// survives a round trip through the same encoding: the parser reads exactly
// the fields a client meant to send.
func FuzzParseLogin(f *testing.F) {
	const form, js = "application/x-www-form-urlencoded", "application/json"
	f.Add(form, "username=alice&password=roam")
	f.Add(form, "username=alice&username=bob&password=roam")
	f.Add(form, "username=%zz")
	f.Add(form, "a;b=c")
	f.Add(js, `{"username":"alice","password":"roam"}`)
	f.Add(js, `{"username":"\u00e4","password":null}`)
	f.Add(js, `{"username":"a"}{"password":"b"}`)
	f.Add("application/json; charset=utf-8", `{"username":"alice","password":"roam","x":[1,2]}`)
	f.Add("text/plain", "username=alice")
	f.Add("multipart/form-data; boundary=x", "--x--")
	f.Fuzz(func(t *testing.T, contentType, body string) {
		c, err := parseLogin(contentType, []byte(body))
		if err != nil {
			if !errors.Is(err, errUnsupportedMedia) && !errors.Is(err, errMalformedLogin) {
				t.Fatalf("parseLogin(%q, %q) = %v, not one of its documented errors", contentType, body, err)
			}
			if c != (credentials{}) {
				t.Fatalf("parseLogin failed but returned credentials %+v", c)
			}
			return
		}
		var again []byte
		switch mediaType(contentType) {
		case form:
			again = []byte(url.Values{"username": {c.Username}, "password": {c.Password}}.Encode())
		case js:
			again, _ = json.Marshal(c)
		default:
			t.Fatalf("parseLogin accepted content type %q", contentType)
		}
		c2, err := parseLogin(contentType, again)
		if err != nil || c2 != c {
			t.Fatalf("round trip of %+v through %q gave %+v, %v", c, again, c2, err)
		}
	})
}
