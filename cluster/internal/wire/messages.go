package wire

import "cmp"

// A Stamp orders writes: T is a hybrid logical clock reading (nanoseconds
// since the Unix epoch, bumped past every stamp the node has seen) and Node
// the writer's node id, which breaks ties so every replica picks the same
// winner. The zero Stamp is older than every real one.
type Stamp struct {
	T    uint64
	Node string
}

// Compare returns -1, 0 or +1 as s is older than, equal to or newer than o.
func (s Stamp) Compare(o Stamp) int {
	if c := cmp.Compare(s.T, o.T); c != 0 {
		return c
	}
	return cmp.Compare(s.Node, o.Node)
}

// IsZero reports whether s is the zero Stamp.
func (s Stamp) IsZero() bool { return s.T == 0 && s.Node == "" }

// After reports whether s is newer than o.
func (s Stamp) After(o Stamp) bool { return s.Compare(o) > 0 }

// Attr is one attribute of a session with the stamp of its last write.
// Deleted marks a removed attribute (kept so a late, older Set loses).
type Attr struct {
	Key     string
	Stamp   Stamp
	Deleted bool
	Value   []byte
}

// Entry is the replicated state of one session, or a fragment of it (one
// write). Each part carries the stamp of the write that last set it, and a
// replica merges an Entry into its own by keeping the newer stamp of each
// part. Born is the stamp of the creation, Dead that of the deletion: the
// session is alive while Born is newer than Dead. Times are Unix
// nanoseconds; zero means unset.
type Entry struct {
	ID string

	Born    Stamp
	Created int64

	Dead      Stamp
	DeadUntil int64 // when replicas may forget the tombstone

	TouchedStamp Stamp
	Touched      int64
	ExpiresStamp Stamp
	Expires      int64

	PrincipalStamp Stamp
	Principal      string

	Attrs []Attr
}

func (x *Entry) appendTo(e *enc) {
	e.str(x.ID)
	e.stamp(x.Born)
	e.varint(x.Created)
	e.stamp(x.Dead)
	e.varint(x.DeadUntil)
	e.stamp(x.TouchedStamp)
	e.varint(x.Touched)
	e.stamp(x.ExpiresStamp)
	e.varint(x.Expires)
	e.stamp(x.PrincipalStamp)
	e.str(x.Principal)
	e.uvarint(uint64(len(x.Attrs)))
	for _, a := range x.Attrs {
		e.str(a.Key)
		e.stamp(a.Stamp)
		e.bool(a.Deleted)
		e.bytes(a.Value)
	}
}

func (x *Entry) decodeFrom(d *dec) {
	x.ID = d.str(MaxString)
	x.Born = d.stamp()
	x.Created = d.varint()
	x.Dead = d.stamp()
	x.DeadUntil = d.varint()
	x.TouchedStamp = d.stamp()
	x.Touched = d.varint()
	x.ExpiresStamp = d.stamp()
	x.Expires = d.varint()
	x.PrincipalStamp = d.stamp()
	x.Principal = d.str(MaxString)
	n := d.count(5)
	if n > 0 {
		x.Attrs = make([]Attr, n)
	}
	for i := range n {
		a := &x.Attrs[i]
		a.Key = d.str(MaxString)
		a.Stamp = d.stamp()
		a.Deleted = d.bool()
		a.Value = d.bytes(MaxValue)
	}
}

// entryMinSize is the fewest bytes an encoded Entry takes (sixteen
// one-byte fields at least); it bounds element counts before allocation.
const entryMinSize = 16

// Write is one replicated write. Prev is the version (newest stamp) the
// sender's copy had before the write; a replica whose copy is at another
// version answers StatusNeedFull. Full marks an Entry that is the sender's
// whole state rather than one write's fragment.
type Write struct {
	Full  bool
	Prev  Stamp
	Entry Entry
}

// Writes carries writes from a coordinator (or a transfer) to a replica.
type Writes struct {
	From  string
	Items []Write
}

func (*Writes) Type() Type { return TypeWrites }
func (x *Writes) appendTo(e *enc) {
	e.str(x.From)
	e.uvarint(uint64(len(x.Items)))
	for i := range x.Items {
		w := &x.Items[i]
		e.bool(w.Full)
		e.stamp(w.Prev)
		w.Entry.appendTo(e)
	}
}
func (x *Writes) decodeFrom(d *dec) {
	x.From = d.str(MaxString)
	n := d.count(entryMinSize)
	if n > 0 {
		x.Items = make([]Write, n)
	}
	for i := range n {
		w := &x.Items[i]
		w.Full = d.bool()
		w.Prev = d.stamp()
		w.Entry.decodeFrom(d)
	}
}

// Status is a replica's or a forwarded call's answer.
type Status uint8

// The statuses.
const (
	StatusOK       Status = iota
	StatusNeedFull        // to a fragment: the replica lacks its base, send the whole entry; to a whole entry: merged, and the replica has newer parts (in Entry)
	StatusDead            // the replica holds a tombstone that beats the write; Entry carries it
	StatusNotFound        // forwarded call: no live session
	StatusNotReady        // the receiver is still joining: ask the next holder
	StatusNotOwner        // the receiver neither holds nor can route the id: ask the next holder
	StatusFailed          // forwarded call failed; Err says why
	statusLimit
)

// Result answers one Write, in order. Entry, when not nil, is the
// replica's state after the write (sent with StatusNeedFull and StatusDead
// so the sender can merge what it lacked).
type Result struct {
	Status Status
	Entry  *Entry
}

// Results answers a Writes.
type Results struct{ Items []Result }

func (*Results) Type() Type { return TypeResults }
func (x *Results) appendTo(e *enc) {
	e.uvarint(uint64(len(x.Items)))
	for _, r := range x.Items {
		e.u8(uint8(r.Status))
		e.bool(r.Entry != nil)
		if r.Entry != nil {
			r.Entry.appendTo(e)
		}
	}
}
func (x *Results) decodeFrom(d *dec) {
	n := d.count(2)
	if n > 0 {
		x.Items = make([]Result, n)
	}
	for i := range n {
		x.Items[i].Status = d.status()
		if d.bool() {
			x.Items[i].Entry = new(Entry)
			x.Items[i].Entry.decodeFrom(d)
		}
	}
}

func (d *dec) status() Status {
	s := Status(d.u8())
	if s >= statusLimit {
		d.fail("unknown status %d", s)
	}
	return s
}

// Op names the Store method a Forward carries.
type Op uint8

// The forwarded operations.
const (
	OpLoad Op = iota + 1
	OpApply
	OpTouch
	OpDelete
	opLimit
)

// KV is one attribute value.
type KV struct {
	Key   string
	Value []byte
}

// Delta is session.Delta on the wire; times are Unix nanoseconds, 0 unset.
type Delta struct {
	Create       bool
	Set          []KV
	Del          []string
	SetPrincipal bool
	Principal    string
	Created      int64
	Touched      int64
	Expires      int64
}

// Forward carries a Store call from a node that does not hold the id to
// one that does. Hops counts how often it has been passed on.
type Forward struct {
	Hops  uint8
	Op    Op
	ID    string
	Delta Delta
}

func (*Forward) Type() Type { return TypeForward }
func (x *Forward) appendTo(e *enc) {
	e.u8(x.Hops)
	e.u8(uint8(x.Op))
	e.str(x.ID)
	dl := &x.Delta
	e.bool(dl.Create)
	appendKVs(e, dl.Set)
	e.uvarint(uint64(len(dl.Del)))
	for _, k := range dl.Del {
		e.str(k)
	}
	e.bool(dl.SetPrincipal)
	e.str(dl.Principal)
	e.varint(dl.Created)
	e.varint(dl.Touched)
	e.varint(dl.Expires)
}
func (x *Forward) decodeFrom(d *dec) {
	x.Hops = d.u8()
	x.Op = Op(d.u8())
	if d.err == nil && (x.Op == 0 || x.Op >= opLimit) {
		d.fail("unknown op %d", x.Op)
	}
	x.ID = d.str(MaxString)
	dl := &x.Delta
	dl.Create = d.bool()
	dl.Set = decodeKVs(d)
	n := d.count(1)
	if n > 0 {
		dl.Del = make([]string, n)
	}
	for i := range n {
		dl.Del[i] = d.str(MaxString)
	}
	dl.SetPrincipal = d.bool()
	dl.Principal = d.str(MaxString)
	dl.Created = d.varint()
	dl.Touched = d.varint()
	dl.Expires = d.varint()
}

func appendKVs(e *enc, kvs []KV) {
	e.uvarint(uint64(len(kvs)))
	for _, kv := range kvs {
		e.str(kv.Key)
		e.bytes(kv.Value)
	}
}

func decodeKVs(d *dec) []KV {
	n := d.count(2)
	if n == 0 {
		return nil
	}
	kvs := make([]KV, n)
	for i := range n {
		kvs[i].Key = d.str(MaxString)
		kvs[i].Value = d.bytes(MaxValue)
	}
	return kvs
}

// Record is session.Record on the wire.
type Record struct {
	ID        string
	Values    []KV
	Principal string
	Created   int64
	Touched   int64
	Expires   int64
}

func (r *Record) appendTo(e *enc) {
	e.str(r.ID)
	appendKVs(e, r.Values)
	e.str(r.Principal)
	e.varint(r.Created)
	e.varint(r.Touched)
	e.varint(r.Expires)
}

func (r *Record) decodeFrom(d *dec) {
	r.ID = d.str(MaxString)
	r.Values = decodeKVs(d)
	r.Principal = d.str(MaxString)
	r.Created = d.varint()
	r.Touched = d.varint()
	r.Expires = d.varint()
}

// ForwardReply answers a Forward. Record is set for a successful OpLoad.
type ForwardReply struct {
	Status Status
	Record *Record
	Err    string
}

func (*ForwardReply) Type() Type { return TypeForwardReply }
func (x *ForwardReply) appendTo(e *enc) {
	e.u8(uint8(x.Status))
	e.bool(x.Record != nil)
	if x.Record != nil {
		x.Record.appendTo(e)
	}
	e.str(x.Err)
}
func (x *ForwardReply) decodeFrom(d *dec) {
	x.Status = d.status()
	if d.bool() {
		x.Record = new(Record)
		x.Record.decodeFrom(d)
	}
	x.Err = d.str(MaxString)
}

// Fetch asks a peer for its state of some sessions (a primary that misses
// an id during a membership change asks the id's previous holders).
type Fetch struct{ IDs []string }

func (*Fetch) Type() Type { return TypeFetch }
func (x *Fetch) appendTo(e *enc) {
	e.uvarint(uint64(len(x.IDs)))
	for _, id := range x.IDs {
		e.str(id)
	}
}
func (x *Fetch) decodeFrom(d *dec) {
	n := d.count(1)
	if n > 0 {
		x.IDs = make([]string, n)
	}
	for i := range n {
		x.IDs[i] = d.str(MaxString)
	}
}

// Entries carries session states: a Fetch's answer, or one batch of a
// state transfer.
type Entries struct{ Items []Entry }

func (*Entries) Type() Type { return TypeEntries }
func (x *Entries) appendTo(e *enc) {
	e.uvarint(uint64(len(x.Items)))
	for i := range x.Items {
		x.Items[i].appendTo(e)
	}
}
func (x *Entries) decodeFrom(d *dec) {
	n := d.count(entryMinSize)
	if n > 0 {
		x.Items = make([]Entry, n)
	}
	for i := range n {
		x.Items[i].decodeFrom(d)
	}
}

// Pull asks a member for the state transfer a joining node needs: every
// entry the joiner will hold (All: every entry), optionally only those
// written at or after the HLC time Since. The answer is a stream of Entries
// frames closed by an End frame.
type Pull struct {
	Joiner   string
	PeerAddr string
	All      bool
	Since    uint64
}

func (*Pull) Type() Type { return TypePull }
func (x *Pull) appendTo(e *enc) {
	e.str(x.Joiner)
	e.str(x.PeerAddr)
	e.bool(x.All)
	e.uvarint(x.Since)
}
func (x *Pull) decodeFrom(d *dec) {
	x.Joiner = d.str(MaxString)
	x.PeerAddr = d.str(MaxString)
	x.All = d.bool()
	x.Since = d.uvarint()
}

// End closes a stream; Count is how many entries it carried, so a receiver
// can tell a complete transfer from a cut one.
type End struct{ Count uint64 }

func (*End) Type() Type          { return TypeEnd }
func (x *End) appendTo(e *enc)   { e.uvarint(x.Count) }
func (x *End) decodeFrom(d *dec) { x.Count = d.uvarint() }

// Hello announces a node to a member before it pulls its state, so the
// member sends it writes from then on even if gossip has not told it yet.
//
// A node that wakes from a long pause sends a Hello with Since (Unix
// nanoseconds, when the pause began) to ask whether the member saw it go
// down since then.
type Hello struct {
	Node       string
	GossipAddr string
	PeerAddr   string
	Since      int64
}

func (*Hello) Type() Type { return TypeHello }
func (x *Hello) appendTo(e *enc) {
	e.str(x.Node)
	e.str(x.GossipAddr)
	e.str(x.PeerAddr)
	e.varint(x.Since)
}
func (x *Hello) decodeFrom(d *dec) {
	x.Node = d.str(MaxString)
	x.GossipAddr = d.str(MaxString)
	x.PeerAddr = d.str(MaxString)
	x.Since = d.varint()
}

// HelloReply answers a Hello. SeesYou reports whether the member's
// membership lists the sender alive at its gossip address; SawYouDown
// whether it marked the sender dead at or after the Hello's Since.
type HelloReply struct {
	Node       string
	SeesYou    bool
	Ready      bool
	SawYouDown bool
}

func (*HelloReply) Type() Type { return TypeHelloReply }
func (x *HelloReply) appendTo(e *enc) {
	e.str(x.Node)
	e.bool(x.SeesYou)
	e.bool(x.Ready)
	e.bool(x.SawYouDown)
}
func (x *HelloReply) decodeFrom(d *dec) {
	x.Node = d.str(MaxString)
	x.SeesYou = d.bool()
	x.Ready = d.bool()
	x.SawYouDown = d.bool()
}

// QueryKind selects what a Query asks.
type QueryKind uint8

// The queries.
const (
	QueryPrincipal QueryKind = iota + 1 // ids of the principal's sessions this member is primary for (IDs)
	QueryList                           // records this member is primary for (a stream of Records, then End)
	queryLimit
)

// Query asks a member about the sessions it is primary for.
type Query struct {
	Kind      QueryKind
	Principal string
}

func (*Query) Type() Type { return TypeQuery }
func (x *Query) appendTo(e *enc) {
	e.u8(uint8(x.Kind))
	e.str(x.Principal)
}
func (x *Query) decodeFrom(d *dec) {
	x.Kind = QueryKind(d.u8())
	if d.err == nil && (x.Kind == 0 || x.Kind >= queryLimit) {
		d.fail("unknown query %d", x.Kind)
	}
	x.Principal = d.str(MaxString)
}

// IDs is a list of session ids.
type IDs struct{ Items []string }

func (*IDs) Type() Type { return TypeIDs }
func (x *IDs) appendTo(e *enc) {
	e.uvarint(uint64(len(x.Items)))
	for _, id := range x.Items {
		e.str(id)
	}
}
func (x *IDs) decodeFrom(d *dec) {
	n := d.count(1)
	if n > 0 {
		x.Items = make([]string, n)
	}
	for i := range n {
		x.Items[i] = d.str(MaxString)
	}
}

// Records is a batch of session records.
type Records struct{ Items []Record }

func (*Records) Type() Type { return TypeRecords }
func (x *Records) appendTo(e *enc) {
	e.uvarint(uint64(len(x.Items)))
	for i := range x.Items {
		x.Items[i].appendTo(e)
	}
}
func (x *Records) decodeFrom(d *dec) {
	n := d.count(6)
	if n > 0 {
		x.Items = make([]Record, n)
	}
	for i := range n {
		x.Items[i].decodeFrom(d)
	}
}

// Ping is the transport's round-trip probe; the answer is a Ping with the
// same payload.
type Ping struct{ Payload []byte }

func (*Ping) Type() Type          { return TypePing }
func (x *Ping) appendTo(e *enc)   { e.bytes(x.Payload) }
func (x *Ping) decodeFrom(d *dec) { x.Payload = d.bytes(MaxValue) }

// Error is a failure answer. It is an error itself: Decode returns it when
// an Error frame arrives where another message was expected.
type Error struct{ Msg string }

func (*Error) Type() Type          { return TypeError }
func (x *Error) appendTo(e *enc)   { e.str(x.Msg) }
func (x *Error) decodeFrom(d *dec) { x.Msg = d.str(MaxString) }
func (x *Error) Error() string     { return "peer: " + x.Msg }
