package memcachedstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roamsession/roam/session"
)

var writeCorpus = flag.Bool("write-corpus", false, "rewrite testdata/fuzz/FuzzDecode from sampleRecords")

// sampleRecords are records of every shape the encoding must carry.
func sampleRecords() []*session.Record {
	t0 := time.Date(2026, 4, 1, 12, 30, 15, 123456789, time.UTC)
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	return []*session.Record{
		{ID: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", Values: map[string][]byte{}},
		{ID: "x", Values: map[string][]byte{"": {}}, Principal: "alice", Created: t0, Touched: t0.Add(time.Second), Expires: t0.Add(time.Hour)},
		{ID: "g7Xk1tq3Jd0vD2m9Yp0aQwErTyUiOpAsDfGhJkLzXc4", Values: map[string][]byte{"user": []byte(`"alice"`), "counter": []byte("7"), "empty": {}}, Principal: "alice", Created: t0, Touched: t0, Expires: t0.Add(30 * time.Minute)},
		{ID: "bin-values", Values: map[string][]byte{"bin": all, "ключ": []byte("значение"), "nul\x00key": []byte("a\x00b")}, Expires: t0},
		{ID: "far-times", Values: map[string][]byte{"big": bytes.Repeat([]byte{0xa5}, 300)}, Created: time.Unix(-1, 5), Touched: time.Unix(0, 1), Expires: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
}

func sameRecord(a, b *session.Record) bool {
	return a.ID == b.ID && a.Principal == b.Principal &&
		a.Created.Equal(b.Created) && a.Touched.Equal(b.Touched) && a.Expires.Equal(b.Expires) &&
		maps.EqualFunc(a.Values, b.Values, bytes.Equal)
}

func TestCodecRoundTrip(t *testing.T) {
	for i, rec := range sampleRecords() {
		b := encode(rec)
		got, err := decode(b)
		if err != nil {
			t.Fatalf("sample %d: decode(encode(rec)) = %v", i, err)
		}
		if !sameRecord(got, rec) {
			t.Errorf("sample %d: round trip changed the record:\n got %+v\nwant %+v", i, got, rec)
		}
	}
}

func TestDecodeAsChecksTheID(t *testing.T) {
	blob := encode(&session.Record{ID: "alice-id", Values: map[string][]byte{"a": nil}})
	if rec, err := decodeAs(blob, "alice-id"); err != nil || rec.ID != "alice-id" {
		t.Errorf("decodeAs(blob of alice-id, alice-id) = %v, %v; want the record", rec, err)
	}
	if rec, err := decodeAs(blob, "mallory-id"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("decodeAs(blob of alice-id, mallory-id) = %v, %v; want ErrCorrupt", rec, err)
	}
}

func TestDecodedValuesDoNotOverlap(t *testing.T) {
	rec := &session.Record{ID: "id", Values: map[string][]byte{"a": []byte("1"), "b": []byte("2")}}
	got, err := decode(encode(rec))
	if err != nil {
		t.Fatal(err)
	}
	_ = append(got.Values["a"], 'X', 'X', 'X', 'X', 'X')
	if string(got.Values["b"]) != "2" {
		t.Fatalf("appending to value a changed value b to %q: decoded values must be capped slices", got.Values["b"])
	}
}

// reseal recomputes the checksum of a blob whose body a test altered, so
// the body's own checks are what reject it.
func reseal(body []byte) []byte {
	return binary.BigEndian.AppendUint32(bytes.Clone(body), crc32.Checksum(body, castagnoli))
}

func TestDecodeRejectsCorruptInput(t *testing.T) {
	good := encode(&session.Record{ID: "id1", Principal: "p", Values: map[string][]byte{"a": []byte("1"), "b": []byte("22")},
		Expires: time.Unix(1_800_000_000, 0)})
	body := good[:len(good)-checksumSize]
	// Hand-built bodies: version, id, principal, time flags, then the rest.
	hdr := []byte{formatVersion, 1, 'i', 0}
	cases := []struct {
		name string
		blob []byte
		want error
	}{
		{"empty", nil, ErrCorrupt},
		{"unknown version", reseal(append([]byte{2}, body[1:]...)), ErrUnknownVersion},
		{"unknown version, bad checksum", append([]byte{2}, good[1:]...), ErrCorrupt},
		{"version only", []byte{formatVersion}, ErrCorrupt},
		{"truncated by one byte", good[:len(good)-1], ErrCorrupt},
		{"truncated to half", good[:len(good)/2], ErrCorrupt},
		{"one flipped bit", flip(good, len(good)/2), ErrCorrupt},
		{"checksum flipped", flip(good, len(good)-1), ErrCorrupt},
		{"trailing byte inside checksum", reseal(append(bytes.Clone(body), 0)), ErrCorrupt},
		{"id longer than blob", reseal([]byte{formatVersion, 100, 'i'}), ErrCorrupt},
		{"overlong varint", reseal([]byte{formatVersion, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}), ErrCorrupt},
		{"unknown time flag", reseal(append(bytes.Clone(hdr), 0x08, 0)), ErrCorrupt},
		{"nanoseconds out of range", reseal(append(binary.AppendUvarint(append(bytes.Clone(hdr), hasExpires, 2), uint64(time.Second)), 0)), ErrCorrupt},
		{"explicit zero time", reseal(binary.AppendUvarint(binary.AppendVarint(append(bytes.Clone(hdr), hasCreated), time.Time{}.Unix()), 0)), ErrCorrupt},
		{"count beyond blob", reseal(append(bytes.Clone(hdr), 0, 0xff, 0xff, 0x03)), ErrCorrupt},
		{"value beyond blob", reseal(append(bytes.Clone(hdr), 0, 1, 1, 'k', 9, 'v')), ErrCorrupt},
		{"duplicate key", reseal(append(bytes.Clone(hdr), 0, 2, 1, 'k', 0, 1, 'k', 0)), ErrCorrupt},
		{"missing count", reseal(append(bytes.Clone(hdr), 0)), ErrCorrupt},
	}
	for _, c := range cases {
		rec, err := decode(c.blob)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: decode = %v, %v; want an error wrapping %v", c.name, rec, err, c.want)
		}
		if err != nil && rec != nil {
			t.Errorf("%s: decode returned a record together with error %v", c.name, err)
		}
	}
	// The hand-built prefix itself is sound: with a zero count, or two keys
	// in any order, it decodes.
	for _, tail := range [][]byte{{0, 0}, {0, 2, 1, 'k', 0, 1, 'a', 0}} {
		if _, err := decode(reseal(append(bytes.Clone(hdr), tail...))); err != nil {
			t.Fatalf("the hand-built record ending % x = %v, want it to decode (the cases above test nothing otherwise)", tail, err)
		}
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x10
	return c
}

// FuzzDecode feeds arbitrary bytes to the decoder: it must never panic,
// every error must wrap ErrCorrupt or ErrUnknownVersion, and whatever it
// accepts must survive encode and decode unchanged. The body decoder is
// fuzzed on its own too, since almost no mutation of a whole blob gets past
// the checksum.
func FuzzDecode(f *testing.F) {
	for _, rec := range sampleRecords() {
		b := encode(rec)
		f.Add(b)
		f.Add(b[1 : len(b)-checksumSize])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		check := func(what string, rec *session.Record, err error) {
			if err != nil {
				if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnknownVersion) {
					t.Fatalf("%s: error %v wraps neither ErrCorrupt nor ErrUnknownVersion", what, err)
				}
				if rec != nil {
					t.Fatalf("%s: a record together with error %v", what, err)
				}
				return
			}
			again, err := decode(encode(rec))
			if err != nil {
				t.Fatalf("%s: the re-encoded record does not decode: %v", what, err)
			}
			if !sameRecord(again, rec) {
				t.Fatalf("%s: the record changed in a round trip:\n got %+v\nwant %+v", what, again, rec)
			}
		}
		rec, err := decode(b)
		check("decode", rec, err)
		rec, err = decodeBody(b, "")
		check("decodeBody", rec, err)
	})
}

// TestWriteSeedCorpus rewrites the committed seed corpus when run with
// -write-corpus: the sample blobs, their bodies, and damaged variants of
// each, so `go test` replays them all without fuzzing.
func TestWriteSeedCorpus(t *testing.T) {
	if !*writeCorpus {
		t.Skip("run with -write-corpus to rewrite testdata/fuzz/FuzzDecode")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var seeds [][]byte
	for _, rec := range sampleRecords() {
		b := encode(rec)
		body := b[1 : len(b)-checksumSize]
		seeds = append(seeds, b, body, b[:len(b)/2], flip(b, len(b)/3), body[:len(body)-1])
	}
	for _, s := range seeds {
		var sb strings.Builder
		sb.WriteString("go test fuzz v1\n[]byte(")
		fmt.Fprintf(&sb, "%q", s)
		sb.WriteString(")\n")
		sum := sha256.Sum256(s)
		name := filepath.Join(dir, hex.EncodeToString(sum[:8]))
		if err := os.WriteFile(name, []byte(sb.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("wrote %d seeds to %s", len(seeds), dir)
}

// BenchmarkCodec is the CPU the store adds to each round trip: decoding on
// every Load, decoding and encoding on every Apply.
func BenchmarkCodec(b *testing.B) {
	heavy := &session.Record{ID: session.NewID(), Values: map[string][]byte{}, Expires: time.Now()}
	for i := range 32 {
		heavy.Values[fmt.Sprintf("attr%02d", i)] = bytes.Repeat([]byte{'a'}, 256)
	}
	for _, c := range []struct {
		name string
		rec  *session.Record
	}{{"small", sampleRecords()[2]}, {"heavy", heavy}} {
		blob := encode(c.rec)
		b.Run("encode/"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = encode(c.rec)
			}
		})
		b.Run("decode/"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := decode(blob); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
