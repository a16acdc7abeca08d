package client

import (
	"context"
	"errors"
	"io"
	"iter"

	"google.golang.org/grpc"

	"github.com/caspaxos/caspaxos/api/caspaxospb"
)

// ListItem is one key of a listing. ValueOmitted: the value is larger than
// the node returns in a listing (read it with Get); Value is nil then, and
// with ListOptions.KeysOnly.
type ListItem struct {
	Key          string
	Value        []byte
	Version      uint64
	ValueOmitted bool
}

// ListOptions shape a listing. After: start strictly after this key (a
// page token: the last key of the previous page). PageSize: keys per call
// (0: the node's default, 1000; at most 10,000). KeysOnly: versions
// without values.
type ListOptions struct {
	After    string
	PageSize int
	KeysOnly bool
}

// ListPage returns one page of the live keys that begin with prefix, in
// key order, and whether the node stopped at the page's size (more: call
// again with After set to the last key; the next page may be empty).
//
// Every key returned had that value and version at some instant during
// the call; every key that stayed live through the call is returned; no
// key deleted through the call is returned; a page is not a snapshot
// across keys. Keys the caller may not read are left out.
func (c *Client) ListPage(ctx context.Context, prefix string, opts ListOptions) ([]ListItem, bool, error) {
	var items []ListItem
	var more bool
	err := c.call(ctx, true, func(conn *grpc.ClientConn) error {
		items, more = nil, false // a retry at another endpoint starts the page again
		s, err := caspaxospb.NewKVClient(conn).List(ctx, &caspaxospb.ListRequest{Prefix: []byte(prefix),
			After: []byte(opts.After), Limit: uint32(max(opts.PageSize, 0)), KeysOnly: opts.KeysOnly})
		if err != nil {
			return err
		}
		for {
			r, err := s.Recv()
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = errors.New("caspaxos: the listing ended without its last message")
				}
				return err
			}
			for _, it := range r.GetItems() {
				items = append(items, ListItem{Key: string(it.GetKey()), Value: it.GetValue(), Version: it.GetVersion(), ValueOmitted: it.GetValueOmitted()})
			}
			if r.GetEnd() {
				more = r.GetMore()
				return nil
			}
		}
	})
	return items, more, err
}

// List iterates over every live key that begins with prefix, in key order,
// a page (ListPage) at a time: each key holds ListPage's guarantee for the
// call that returned it; the whole is not a snapshot. An error ends the
// iteration, as its last pair.
func (c *Client) List(ctx context.Context, prefix string, opts ListOptions) iter.Seq2[ListItem, error] {
	return func(yield func(ListItem, error) bool) {
		for {
			items, more, err := c.ListPage(ctx, prefix, opts)
			if err != nil {
				yield(ListItem{}, err)
				return
			}
			for _, it := range items {
				if !yield(it, nil) {
					return
				}
			}
			if !more || len(items) == 0 {
				return
			}
			opts.After = items[len(items)-1].Key
		}
	}
}
