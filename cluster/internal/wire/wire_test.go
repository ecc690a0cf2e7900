package wire

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

// samples returns one filled-in value of every message type.
func samples() []Message {
	st := Stamp{T: 1_700_000_000_000_000_001, Node: "n1"}
	ent := Entry{
		ID: "id-1", Born: st, Created: 17, Dead: Stamp{}, DeadUntil: 0,
		TouchedStamp: st, Touched: 18, ExpiresStamp: st, Expires: 19,
		PrincipalStamp: st, Principal: "alice",
		Attrs: []Attr{{Key: "counter", Stamp: st, Value: []byte("7")}, {Key: "gone", Stamp: st, Deleted: true, Value: []byte{}}},
	}
	rec := Record{ID: "id-1", Values: []KV{{"counter", []byte("7")}}, Principal: "alice", Created: 1, Touched: 2, Expires: 3}
	return []Message{
		&Ping{Payload: []byte("hello")},
		&Writes{From: "n1", Items: []Write{{Full: true, Prev: st, Entry: ent}, {Entry: Entry{ID: "x", Dead: st, DeadUntil: 5, Attrs: []Attr{}}}}},
		&Results{Items: []Result{{Status: StatusOK}, {Status: StatusNeedFull, Entry: &ent}}},
		&Forward{Hops: 1, Op: OpApply, ID: "id-1", Delta: Delta{Create: true, Set: []KV{{"a", []byte("b")}}, Del: []string{"c"}, SetPrincipal: true, Principal: "bob", Created: 1, Touched: 2, Expires: 3}},
		&ForwardReply{Status: StatusOK, Record: &rec},
		&ForwardReply{Status: StatusFailed, Err: "boom"},
		&Fetch{IDs: []string{"a", "b"}},
		&Entries{Items: []Entry{ent}},
		&Pull{Joiner: "n4", PeerAddr: "127.0.0.4:7947", All: true, Since: 99},
		&End{Count: 3},
		&Hello{Node: "n4", GossipAddr: "127.0.0.4:7946", PeerAddr: "127.0.0.4:7947", Since: 1700000000000000000},
		&HelloReply{Node: "n1", SeesYou: true, Ready: true, SawYouDown: true},
		&Query{Kind: QueryPrincipal, Principal: "alice"},
		&IDs{Items: []string{"a"}},
		&Records{Items: []Record{rec}},
		&Error{Msg: "nope"},
	}
}

// newOf returns a zero value of m's type.
func newOf(m Message) Message {
	return reflect.New(reflect.TypeOf(m).Elem()).Interface().(Message)
}

func TestEveryMessageRoundTrips(t *testing.T) {
	for _, m := range samples() {
		b := Marshal(m)
		got := newOf(m)
		if err := Unmarshal(b, got); err != nil {
			t.Fatalf("Unmarshal(Marshal(%T)) = %v, want nil", m, err)
		}
		if !bytes.Equal(Marshal(got), b) {
			t.Errorf("%T: re-encoding the decoded message differs:\n got %+v\nwant %+v", m, got, m)
		}
	}
}

func TestTruncatedFramesAreCorrupt(t *testing.T) {
	for _, m := range samples() {
		b := Marshal(m)
		for n := range len(b) {
			err := Unmarshal(b[:n], newOf(m))
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%T cut to %d of %d bytes: error %v, want ErrCorrupt", m, n, len(b), err)
			}
		}
	}
}

func TestWrongTypeIsRejected(t *testing.T) {
	b := Marshal(&Fetch{IDs: []string{"a"}})
	if err := Unmarshal(b, &Pull{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("decoding a fetch frame as a pull: %v, want ErrCorrupt", err)
	}
	var perr *Error
	if err := Unmarshal(Marshal(&Error{Msg: "x"}), &Results{}); !errors.As(err, &perr) || perr.Msg != "x" {
		t.Fatalf("an error frame where results were expected: %v, want *Error{x}", err)
	}
}

func TestOversizedFrameIsRefusedBeforeReading(t *testing.T) {
	b := Marshal(&Ping{Payload: make([]byte, 1000)})
	r := bytes.NewReader(b)
	if _, _, err := ReadFrame(r, 100); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("ReadFrame with limit 100 of a 1000-byte payload: %v, want ErrTooLarge", err)
	}
	if r.Len() != len(b)-HeaderLen {
		t.Fatalf("ReadFrame read %d payload bytes of a frame it refused, want 0", len(b)-HeaderLen-r.Len())
	}
}

func TestHugeCountsDoNotAllocate(t *testing.T) {
	// A Fetch claiming 2^40 ids in a 10-byte payload must fail fast.
	e := enc{}
	e.uvarint(1 << 40)
	p := e.b
	if err := Decode(TypeFetch, p, &Fetch{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("huge count: %v, want ErrCorrupt", err)
	}
	allocs := testing.AllocsPerRun(10, func() { _ = Decode(TypeFetch, p, &Fetch{}) })
	if allocs > 10 {
		t.Fatalf("decoding a huge count allocated %v times, want a constant few", allocs)
	}
}

func TestBadHeaderFields(t *testing.T) {
	good := Marshal(&End{Count: 1})
	for _, tc := range []struct {
		name string
		edit func(b []byte)
		want error
	}{
		{"magic", func(b []byte) { b[0] = 'X' }, ErrCorrupt},
		{"version", func(b []byte) { b[2] = 9 }, ErrVersion},
		{"type zero", func(b []byte) { b[3] = 0 }, ErrCorrupt},
		{"type unknown", func(b []byte) { b[3] = 200 }, ErrCorrupt},
		{"length past end", func(b []byte) { b[7] = 50 }, ErrCorrupt},
	} {
		b := bytes.Clone(good)
		tc.edit(b)
		if err := Unmarshal(b, &End{}); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestReadFrameStream(t *testing.T) {
	var buf []byte
	buf = Append(buf, &Entries{Items: []Entry{{ID: "a"}}})
	buf = Append(buf, &End{Count: 1})
	r := bytes.NewReader(buf)
	for _, want := range []Type{TypeEntries, TypeEnd} {
		typ, _, err := ReadFrame(r, 0)
		if err != nil || typ != want {
			t.Fatalf("ReadFrame = %v, %v, want %v", typ, err, want)
		}
	}
	if _, _, err := ReadFrame(r, 0); err != io.EOF {
		t.Fatalf("ReadFrame at the end = %v, want io.EOF", err)
	}
}

// FuzzDecode feeds arbitrary bytes to every decoder: none may panic, and
// whatever decodes must re-encode to a frame that decodes to the same value.
func FuzzDecode(f *testing.F) {
	for _, m := range samples() {
		f.Add(Marshal(m))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _ = ReadFrame(bytes.NewReader(b), 1<<20)
		typ, payload, _, err := Split(b, 1<<20)
		if err != nil {
			return
		}
		for _, proto := range samples() {
			m := newOf(proto)
			if m.Type() != typ {
				continue
			}
			if err := Decode(typ, payload, m); err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("decode error %v does not wrap ErrCorrupt", err)
				}
				continue
			}
			again := newOf(proto)
			if err := Unmarshal(Marshal(m), again); err != nil {
				t.Fatalf("re-encoded %T does not decode: %v", m, err)
			}
			if !bytes.Equal(Marshal(again), Marshal(m)) {
				t.Fatalf("%T changed in a round trip", m)
			}
		}
	})
}
