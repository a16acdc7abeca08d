package netlab

import (
	"math"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

func op(client int, call, ret int64, in Op, out Out) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret}
}

// The model accepts what a correct store does, including writes of unknown
// outcome, and catches a lost acknowledged write and a stale read.
func TestModel(t *testing.T) {
	k := "k"
	ok := []porcupine.Operation{
		op(0, 0, 1, Op{Key: k, Kind: Get}, Out{Status: NotFound}),
		op(0, 2, 3, Op{Key: k, Kind: PutIf, Expect: 0, Value: 1}, Out{Status: OK, Value: 1, Version: 1}),
		op(0, 4, 5, Op{Key: k, Kind: Incr}, Out{Status: OK, Value: 2, Version: 5}),
		// Unknown: it took effect with a version nobody saw.
		op(0, 6, math.MaxInt64, Op{Key: k, Kind: Incr}, Out{Status: Unknown}),
		op(1, 8, 9, Op{Key: k, Kind: Get}, Out{Status: OK, Value: 3, Version: 7}),
		op(1, 10, 11, Op{Key: k, Kind: PutIf, Expect: 5, Value: 9}, Out{Status: Mismatch, Version: 7}),
		op(1, 12, 13, Op{Key: k, Kind: PutIf, Expect: 7, Value: 4}, Out{Status: OK, Value: 4, Version: 8}),
		// Unknown: it did not take effect.
		op(1, 14, math.MaxInt64, Op{Key: k, Kind: PutIf, Expect: 8, Value: 5}, Out{Status: Unknown}),
		op(0, 16, 17, Op{Key: k, Kind: Get}, Out{Status: OK, Value: 4, Version: 8}),
	}
	if got := Check(ok, 10*time.Second); got != "ok" {
		t.Fatalf("a correct history: %s", got)
	}
	lost := append(ok[:3:3], op(0, 6, 7, Op{Key: k, Kind: Get}, Out{Status: OK, Value: 1, Version: 1}))
	if got := Check(lost, 10*time.Second); got != "NOT LINEARIZABLE" {
		t.Fatalf("a lost acknowledged increment: %s", got)
	}
	stale := append(ok[:2:2], op(0, 4, 5, Op{Key: k, Kind: PutIf, Expect: 0, Value: 7}, Out{Status: OK, Value: 7, Version: 2}))
	if got := Check(stale, 10*time.Second); got != "NOT LINEARIZABLE" {
		t.Fatalf("a create over an existing key: %s", got)
	}
}
