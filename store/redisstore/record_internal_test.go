package redisstore

import (
	"errors"
	"testing"
	"time"
)

func TestExpireAtMillisNeverRoundsDown(t *testing.T) {
	base := time.UnixMilli(1_700_000_000_123)
	for _, c := range []struct {
		t    time.Time
		want string
	}{
		{time.Time{}, ""},
		{base, "1700000000123"},
		{base.Add(time.Microsecond), "1700000000124"},
		{base.Add(999 * time.Microsecond), "1700000000124"},
		{base.Add(500 * time.Nanosecond), "1700000000123"}, // below the stored precision
	} {
		if got := expireAtMillis(c.t); got != c.want {
			t.Errorf("expireAtMillis(%v) = %q, want %q", c.t, got, c.want)
		}
	}
}

func TestTimeEncodingRoundTrips(t *testing.T) {
	for _, tm := range []time.Time{{}, time.UnixMicro(1), time.UnixMicro(1_700_000_000_123_456), time.Date(2250, 1, 1, 0, 0, 0, 0, time.UTC)} {
		got, err := decodeTime(encodeTime(tm))
		if err != nil || !got.Equal(tm) {
			t.Errorf("decodeTime(encodeTime(%v)) = %v, %v", tm, got, err)
		}
	}
	for _, bad := range []string{"x", "1.5", " 1", "99999999999999999999"} {
		if _, err := decodeTime(bad); err == nil {
			t.Errorf("decodeTime(%q) = nil error, want one", bad)
		}
	}
}

// TestDecodeRecordRejectsForeignHashes: a hash under the prefix that this
// store did not write is reported, not read as a session with made-up
// deadlines.
func TestDecodeRecordRejectsForeignHashes(t *testing.T) {
	for name, fields := range map[string]map[string]string{
		"no created field": {"user": "alice"},
		"bad created":      {"c": "yesterday"},
		"bad expires":      {"c": "", "e": "soon"},
		"bad touched":      {"c": "", "t": "-"},
	} {
		if _, err := decodeRecord("id", fields); !errors.Is(err, errCorrupt) {
			t.Errorf("%s: decodeRecord = %v, want errCorrupt", name, err)
		}
	}
	rec, err := decodeRecord("id", map[string]string{"c": "1", "v:c": "attr c", "v:": "empty name", "v:v:x": "nested", "zz": "unknown metadata"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"c": "attr c", "": "empty name", "v:x": "nested"}
	if len(rec.Values) != len(want) {
		t.Fatalf("Values = %q, want %q", rec.Values, want)
	}
	for k, v := range want {
		if string(rec.Values[k]) != v {
			t.Errorf("Values[%q] = %q, want %q", k, rec.Values[k], v)
		}
	}
	if !rec.Created.Equal(time.UnixMicro(1)) {
		t.Errorf("Created = %v, want 1µs after the epoch", rec.Created)
	}
}

func TestEscapeGlob(t *testing.T) {
	for in, want := range map[string]string{
		"roam:":      "roam:",
		`a*b?c[d]\e`: `a\*b\?c\[d\]\\e`,
		"ключ:":      "ключ:",
	} {
		if got := escapeGlob(in); got != want {
			t.Errorf("escapeGlob(%q) = %q, want %q", in, got, want)
		}
	}
}
