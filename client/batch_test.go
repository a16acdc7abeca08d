package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/server/clientapi/clientapitest"
)

// oneNode returns a client of one fresh test node, closed with the test.
func oneNode(t *testing.T) *Client {
	t.Helper()
	addr, _ := clientapitest.ServeGRPC(t, clientapitest.New())
	c, err := New(Config{Endpoints: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Many calls in flight at once share the stream; each gets its own answer.
func TestConcurrentCallsShareTheStream(t *testing.T) {
	c := oneNode(t)
	ctx := context.Background()
	const n = 300
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		wg.Go(func() {
			if _, _, err := c.Increment(ctx, "counter", 1); err != nil {
				errs <- err
			}
			key := "k" + strconv.Itoa(i)
			if _, err := c.Put(ctx, key, []byte(key)); err != nil {
				errs <- err
				return
			}
			if v, err := c.Get(ctx, key); err != nil || string(v.Data) != key {
				errs <- errors.Join(err, errors.New("got "+string(v.Data)+", want "+key))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if v, err := c.Get(ctx, "counter"); err != nil || string(v.Data) != strconv.Itoa(n) || v.Version != n {
		t.Fatalf("counter: %q version %d, %v; want %d", v.Data, v.Version, err, n)
	}
}

// A node that drains answers what it took, ends its streams cleanly, and a
// write the client sends meanwhile goes to the next endpoint: it provably
// never ran on the draining node.
func TestDrainAnswersInFlightAndMovesOn(t *testing.T) {
	draining := clientapitest.New()
	seen, release := draining.HoldWrites()
	addr, _, api := clientapitest.ServeGRPCAPI(t, draining)
	other := clientapitest.New()
	second, _ := clientapitest.ServeGRPC(t, other)
	c, err := New(Config{Endpoints: []string{addr, second}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	held := make(chan error, 1)
	go func() {
		_, err := c.Put(ctx, "a", []byte("1"))
		held <- err
	}()
	<-seen
	drained := make(chan struct{})
	go func() { api.Drain(); close(drained) }()
	<-drained
	release()
	if err := <-held; err != nil {
		t.Fatalf("the write the node took before draining: %v", err)
	}
	// The stream has ended (cleanly) or is ending; either way the next
	// write is not lost and not an unknown outcome.
	if _, err := c.Put(ctx, "b", []byte("2")); err != nil {
		t.Fatalf("a write after the drain: %v", err)
	}
	if v, err := other.Do(ctx, kv.Op{Kind: kv.OpGet, Key: "b"}); err != nil || string(v.Value) != "2" {
		t.Fatalf("the write after the drain ran elsewhere? %q %v", v.Value, err)
	}
}

// A write whose deadline passes while the node holds it is an unknown
// outcome; a read whose deadline passes is unavailable.
func TestDeadlineInFlight(t *testing.T) {
	b := clientapitest.New()
	seen, release := b.HoldWrites()
	defer release()
	addr, _ := clientapitest.ServeGRPC(t, b)
	c, err := New(Config{Endpoints: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := c.Put(ctx, "k", []byte("v"))
		done <- err
	}()
	<-seen
	if err := <-done; !errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("write past its deadline: %v, want unknown outcome", err)
	}
	expired, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if _, err := c.Get(expired, "k"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("read with a done context: %v, want unavailable", err)
	}
}

// Large values: many in flight at once do not exceed a message's limit
// either way, an op too large for a Batch goes as its unary call, and one
// over the node's limit is refused by itself.
func TestLargeValues(t *testing.T) {
	c := oneNode(t)
	ctx := context.Background()
	value := func(i, n int) []byte {
		v := make([]byte, n)
		for j := range v {
			v[j] = byte(i + j)
		}
		return v
	}
	const n = 40 // 40 × 200 KiB: twice gRPC's default 4 MiB per message
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		wg.Go(func() {
			if _, err := c.Put(ctx, "big"+strconv.Itoa(i), value(i, 200<<10)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	for i := range n {
		wg.Go(func() {
			v, err := c.Get(ctx, "big"+strconv.Itoa(i))
			if err != nil || !bytes.Equal(v.Data, value(i, 200<<10)) {
				errs <- fmt.Errorf("get big%d: %d bytes, %v", i, len(v.Data), err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	huge := value(1, batchOpBytes+1) // goes unary
	if _, err := c.Put(ctx, "huge", huge); err != nil {
		t.Fatalf("put of %d bytes: %v", len(huge), err)
	}
	if v, err := c.Get(ctx, "huge"); err != nil || !bytes.Equal(v.Data, huge) {
		t.Fatalf("get huge: %d bytes, %v", len(v.Data), err)
	}
	if _, err := c.Put(ctx, "over", value(2, kv.DefaultLimits.MaxValueBytes+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("a value over the limit: %v, want too large", err)
	}
	if _, err := c.Put(ctx, "after", []byte("x")); err != nil {
		t.Fatalf("a put after the refusal: %v", err)
	}
}
