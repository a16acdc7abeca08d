package caspaxos_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/caspaxos/caspaxos"
)

func Example() {
	dir, err := os.MkdirTemp("", "caspaxos-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// Three nodes in this process, each with its own Pebble database
	// under dir; every acknowledged write is fsynced on two of them.
	store, err := caspaxos.Open(caspaxos.Options{Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	version, err := store.Put(ctx, "greeting", []byte("hello"))
	if err != nil {
		log.Fatal(err)
	}
	// Compare-and-swap on the version: the first succeeds, the second finds
	// the version moved on and reports the current one.
	if _, err := store.CompareAndSwap(ctx, "greeting", version, []byte("hello, world")); err != nil {
		log.Fatal(err)
	}
	_, err = store.CompareAndSwap(ctx, "greeting", version, []byte("too late"))
	var mismatch *caspaxos.VersionMismatchError
	fmt.Println("stale swap refused:", errors.As(err, &mismatch) && mismatch.Current > version)

	v, err := store.Get(ctx, "greeting")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", v.Data)

	for range 3 {
		if _, _, err := store.Increment(ctx, "visits", 1); err != nil {
			log.Fatal(err)
		}
	}
	n, _, err := store.Increment(ctx, "visits", 10)
	fmt.Println("visits:", n, err)

	if err := store.Delete(ctx, "greeting"); err != nil {
		log.Fatal(err)
	}
	_, err = store.Get(ctx, "greeting")
	fmt.Println("after delete:", errors.Is(err, caspaxos.ErrNotFound))
	// Output:
	// stale swap refused: true
	// hello, world
	// visits: 13 <nil>
	// after delete: true
}
