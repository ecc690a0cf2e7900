package storetest

import (
	"context"
	"fmt"
	"strings"

	"github.com/roamsession/roam/session"
)

// checkLargeValues: values near 64 KiB, alone and several in one session,
// come back byte for byte.
func checkLargeValues(ctx context.Context, s session.Store, o *Options) error {
	big := pattern(64<<10-1, 7)
	id, err := create(ctx, s, map[string][]byte{"big": big}, "")
	if err != nil {
		return err
	}
	if err := wantRecord(ctx, s, o, id, "creating a session with one 65535-byte value", want{Values: map[string][]byte{"big": big}}); err != nil {
		return err
	}
	// Four 16 KiB values, one replaced in a later delta: about 64 KiB in all.
	set := map[string][]byte{}
	for i := range 4 {
		set[fmt.Sprintf("part%d", i)] = pattern(16<<10, byte(i))
	}
	if err := s.Apply(ctx, id, session.Delta{Set: cloneVals(set), Del: []string{"big"}}); err != nil {
		return fmt.Errorf("Apply(Set 4×16 KiB, Del big) = %w, want nil", err)
	}
	set["part2"] = pattern(16<<10, 99)
	if err := s.Apply(ctx, id, session.Delta{Set: map[string][]byte{"part2": pattern(16<<10, 99)}}); err != nil {
		return fmt.Errorf("Apply(Set part2) = %w, want nil", err)
	}
	return wantRecord(ctx, s, o, id, "storing 4×16 KiB values and replacing one", want{Values: set})
}

// pattern returns n bytes that differ with seed and position, so a value
// cut, shifted or mixed with another is told apart from the original.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*31) ^ seed ^ byte(i>>8)
	}
	return b
}

// checkBinaryValues: values are bytes, not text: every byte value, NULs,
// invalid UTF-8 and the empty value survive.
func checkBinaryValues(ctx context.Context, s session.Store, o *Options) error {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	values := map[string][]byte{
		"all-bytes":    all,
		"all-reversed": reverse(all),
		"nuls":         make([]byte, 100),
		"nul-inside":   []byte("before\x00after"),
		"trailing-nul": []byte("text\x00"),
		"bad-utf8":     {0xff, 0xfe, 0xc3, 0x28, 0xa0, 0xa1},
		"crlf":         []byte("a\r\nb\n\rc"),
		"empty":        {},
		"json-ish":     []byte(`{"a":"\u0000","b":[1,2]}`),
	}
	id, err := create(ctx, s, cloneVals(values), "")
	if err != nil {
		return err
	}
	if err := wantRecord(ctx, s, o, id, "creating a session with binary values", want{Values: values}); err != nil {
		return err
	}
	// The same bytes written by a later delta, not only at creation.
	later := map[string][]byte{"later-all": all, "later-empty": {}}
	if err := s.Apply(ctx, id, session.Delta{Set: cloneVals(later)}); err != nil {
		return fmt.Errorf("Apply(Set binary values) = %w, want nil", err)
	}
	for k, v := range later {
		values[k] = v
	}
	return wantRecord(ctx, s, o, id, "a delta setting binary values", want{Values: values})
}

func reverse(b []byte) []byte {
	r := make([]byte, len(b))
	for i, c := range b {
		r[len(b)-1-i] = c
	}
	return r
}

// checkUnicodeKeys: attribute names are arbitrary UTF-8, including
// characters that delimiters, quoting and key prefixes of backends trip on.
func checkUnicodeKeys(ctx context.Context, s session.Store, o *Options) error {
	keys := []string{
		"ключ", "日本語", "emoji 🎉", "a b", "a:b", "a.b", "a/b", `"quoted"`, "'single'",
		"%s%d", `back\slash`, "$dollar", "{brace}", "tab\there", "new\nline", "ÅÄÖ", "e\u0301",
		strings.Repeat("k", 250), strings.Repeat("ä", 100),
	}
	values := map[string][]byte{}
	for i, k := range keys {
		values[k] = []byte(fmt.Sprintf("value %d of %s", i, k))
	}
	id, err := create(ctx, s, cloneVals(values), "")
	if err != nil {
		return err
	}
	if err := wantRecord(ctx, s, o, id, "creating a session with unicode keys", want{Values: values}); err != nil {
		return err
	}
	del := []string{"ключ", "a:b", "e\u0301"}
	if err := s.Apply(ctx, id, session.Delta{Del: del, Set: map[string][]byte{"日本語": []byte("changed")}}); err != nil {
		return fmt.Errorf("Apply(Del/Set unicode keys) = %w, want nil", err)
	}
	for _, k := range del {
		delete(values, k)
	}
	values["日本語"] = []byte("changed")
	return wantRecord(ctx, s, o, id, "deleting and replacing unicode keys", want{Values: values})
}

// checkRecordsAreCopies: the store shares no memory with its callers: a
// delta's maps and slices may be reused after Apply, and a loaded record may
// be changed freely, without any effect on the store or on other records.
func checkRecordsAreCopies(ctx context.Context, s session.Store, o *Options) error {
	set := vals("a", "alpha", "b", "bravo", "c", "charlie")
	id := session.NewID()
	if err := s.Apply(ctx, id, newSession(set, "alice")); err != nil {
		return fmt.Errorf("Apply(Create): %w", err)
	}
	orig := vals("a", "alpha", "b", "bravo", "c", "charlie")
	// The caller reuses its delta's buffers.
	set["a"][0] = 'X'
	set["new"] = []byte("from the caller's map")
	delete(set, "b")
	if err := wantRecord(ctx, s, o, id, "the caller changed the map and slices it passed to Apply", want{Values: orig, Principal: "alice"}); err != nil {
		return err
	}

	rec, err := load(ctx, s, id, "Apply")
	if err != nil {
		return err
	}
	other, err := load(ctx, s, id, "Apply")
	if err != nil {
		return err
	}
	// Appending to one loaded value must not write into another: a store
	// that hands out sub-slices of one buffer must cap them.
	rec.Values["a"] = append(rec.Values["a"], "-appended-past-the-end"...)
	if err := matchRecord(rec, o, id, "appending to the loaded value of a", want{
		Values: vals("a", "alpha-appended-past-the-end", "b", "bravo", "c", "charlie"), Principal: "alice",
	}); err != nil {
		return fmt.Errorf("values of one loaded record share memory: %w", err)
	}
	rec.Values["b"][0] = 'Y'
	rec.Values["added"] = []byte("by the caller")
	delete(rec.Values, "c")
	rec.Principal = "mallory"
	if err := matchRecord(other, o, id, "changing another record loaded for the same id", want{Values: orig, Principal: "alice"}); err != nil {
		return fmt.Errorf("two loaded records share memory: %w", err)
	}
	if err := wantRecord(ctx, s, o, id, "the caller changed a loaded record", want{Values: orig, Principal: "alice"}); err != nil {
		return err
	}

	if l, ok := o.lister(s); ok {
		err := l.Range(ctx, func(r *session.Record) bool {
			for k := range r.Values {
				r.Values[k] = append(r.Values[k][:0], "ranged"...)
			}
			r.Values["from-range"] = []byte("x")
			return true
		})
		if err != nil {
			return fmt.Errorf("Range: %w", err)
		}
		if err := wantRecord(ctx, s, o, id, "the caller changed a record passed to Range's fn", want{Values: orig, Principal: "alice"}); err != nil {
			return err
		}
	}
	return nil
}
