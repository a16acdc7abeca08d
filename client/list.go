package client

import (
	"context"
	"errors"
	"io"
	"iter"

	"google.golang.org/grpc"

	"github.com/caspaxos/caspaxos/api/caspaxospb"
	"github.com/caspaxos/caspaxos/kv"
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
// again with After set to the last key; the next page may be empty). It
// holds the whole page: at most PageSize items, each value at most the
// node's listing value bound (larger ones are omitted); List holds one
// message of the stream instead.
//
// Every key returned had that value and version at some instant during
// the call; every key that stayed live through the call is returned; no
// key deleted through the call is returned; a page is not a snapshot
// across keys. Keys the caller may not read are left out.
func (c *Client) ListPage(ctx context.Context, prefix string, opts ListOptions) ([]ListItem, bool, error) {
	var items []ListItem
	more, _, err := c.listPage(ctx, prefix, opts, func(it ListItem) bool {
		items = append(items, it)
		return true
	})
	return items, more, err
}

// listPage runs one page, handing each item to fn as its message arrives;
// fn returning false ends the page early (stopped). A retry at another
// endpoint goes on after the last item fn took, with the page's size less
// what it took: it is another call, whose items hold the guarantee for
// it. more: the node stopped at the page's size.
func (c *Client) listPage(ctx context.Context, prefix string, opts ListOptions, fn func(ListItem) bool) (more, stopped bool, err error) {
	taken := 0
	err = c.call(ctx, true, func(conn *grpc.ClientConn) error {
		size := opts.PageSize
		if size <= 0 {
			size = kv.DefaultListLimit
		}
		limit := size - taken
		if limit <= 0 {
			more = true // the last call ended as it filled the page
			return nil
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel() // stops the stream if fn stops early
		s, err := caspaxospb.NewKVClient(conn).List(ctx, &caspaxospb.ListRequest{Prefix: []byte(prefix),
			After: []byte(opts.After), Limit: uint32(limit), KeysOnly: opts.KeysOnly})
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
				item := ListItem{Key: string(it.GetKey()), Value: it.GetValue(), Version: it.GetVersion(), ValueOmitted: it.GetValueOmitted()}
				taken++
				opts.After = item.Key
				if !fn(item) {
					stopped = true
					return nil
				}
			}
			if r.GetEnd() {
				more = r.GetMore()
				return nil
			}
		}
	})
	return more, stopped, err
}

// List iterates over every live key that begins with prefix, in key order,
// a page (ListPage) at a time: each key holds ListPage's guarantee for the
// call that returned it; the whole is not a snapshot. It yields each item
// as its message of the stream arrives, so it holds one message (about 1
// MiB) rather than a page. An error ends the iteration, as its last pair.
func (c *Client) List(ctx context.Context, prefix string, opts ListOptions) iter.Seq2[ListItem, error] {
	return func(yield func(ListItem, error) bool) {
		for {
			n := 0
			more, stopped, err := c.listPage(ctx, prefix, opts, func(it ListItem) bool {
				n++
				opts.After = it.Key
				return yield(it, nil)
			})
			switch {
			case stopped:
				return
			case err != nil:
				yield(ListItem{}, err)
				return
			case !more || n == 0:
				return
			}
		}
	}
}
