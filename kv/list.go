package kv

import (
	"errors"
	"fmt"

	"github.com/caspaxos/caspaxos/protocol"
)

// Listing's bounds (COORDINATION.md, Listing).
const (
	// DefaultListLimit is a page's number of keys when the request names none.
	DefaultListLimit = 1000
	// MaxListLimit is the most keys one page may ask for.
	MaxListLimit = 10000
)

// ErrBadListRequest: a listing's parameters are out of bounds.
var ErrBadListRequest = errors.New("caspaxos: bad list request")

// ListRequest asks for one page of the live keys that begin with Prefix
// (empty: every key), in byte order, starting strictly after After (the
// last key of the previous page; empty: from the first). Limit bounds the
// keys returned (0: DefaultListLimit). KeysOnly: versions without values.
//
// The guarantee: every key returned had that value and version at some
// instant during the call; every key that stayed live through the call is
// returned (within the page's bounds); no key deleted (or absent) through
// the call is returned. It is not a snapshot across keys: two keys may be
// shown at different instants.
type ListRequest struct {
	Prefix   string
	After    string
	Limit    int
	KeysOnly bool
}

// Validate checks the request's bounds and fills in the default limit. A
// prefix in the reserved space is refused: the cluster's own keys are
// never listed.
func (r *ListRequest) Validate(l Limits) error {
	if r.Limit == 0 {
		r.Limit = DefaultListLimit
	}
	if r.Limit < 0 || r.Limit > MaxListLimit {
		return fmt.Errorf("%w: limit %d is not within 1..%d", ErrBadListRequest, r.Limit, MaxListLimit)
	}
	if len(r.Prefix) > l.MaxKeyBytes || len(r.After) > l.MaxKeyBytes {
		return fmt.Errorf("%w: prefix or after longer than %d bytes", ErrKeyTooLarge, l.MaxKeyBytes)
	}
	return CheckClientKey(r.Prefix)
}

// ListItem is one key of a listing. ValueOmitted: the value was larger than
// the node returns in a listing (read it with a get); Value is nil then,
// and in a keys-only listing.
type ListItem struct {
	Key          string
	Value        []byte
	Version      uint64
	ValueOmitted bool
	// Created is the version that began the key's current life
	// (protocol.State.Created; 0: unknown, a key written before it was kept).
	Created uint64
	// Attrs are the key's attributes (protocol.Attrs: lease, flags, lock
	// index), which Consul's API shows beside each listed key.
	Attrs protocol.Attrs
}
