package sim

import (
	"math"
	"testing"

	"github.com/anishathalye/porcupine"
)

const never = math.MaxInt64

// h builds a history operation on key k.
func h(call, ret int64, in input, out output) porcupine.Operation {
	if in.key == "" {
		in.key = "k"
	}
	return porcupine.Operation{Input: in, Output: out, Call: call, Return: ret}
}

func put(v string) input             { return input{kind: opPut, value: v} }
func cas(ver uint64, v string) input { return input{kind: opCAS, version: ver, value: v} }
func get() input                     { return input{kind: opGet} }

func ok(exists bool, v string, ver uint64) output {
	return output{outcome: outOK, state: register{exists: exists, value: v, version: ver, pinned: true}}
}

func refused(o outcome, exists bool, v string, ver uint64) output {
	out := ok(exists, v, ver)
	out.outcome = o
	return out
}

var unknown = output{unknown: true}

type modelCase struct {
	name    string
	history []porcupine.Operation
	want    porcupine.CheckResult
}

func TestModel(t *testing.T) {
	for _, tt := range modelCases() {
		t.Run(tt.name, func(t *testing.T) {
			if got := porcupine.CheckOperationsTimeout(newModel(), tt.history, 0); got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}

// modelCases are small histories with known verdicts: the version rule,
// unknown outcomes open and closed, refusals, and each operation's meaning.
func modelCases() []modelCase {
	absent := ok(false, "", 0)
	return []modelCase{
		{"a first write takes any version", []porcupine.Operation{
			h(0, 10, put("a"), ok(true, "a", 7)), h(20, 30, get(), ok(true, "a", 7))}, porcupine.Ok},
		{"a first write takes no version 0", []porcupine.Operation{
			h(0, 10, put("a"), ok(true, "a", 0))}, porcupine.Illegal},
		{"later writes add one", []porcupine.Operation{
			h(0, 10, put("a"), ok(true, "a", 7)), h(20, 30, put("b"), ok(true, "b", 9))}, porcupine.Illegal},
		{"a read after a write sees it", []porcupine.Operation{
			h(0, 10, put("a"), ok(true, "a", 1)), h(20, 30, put("b"), ok(true, "b", 2)),
			h(40, 50, get(), ok(true, "a", 1))}, porcupine.Illegal},
		{"a concurrent read may see either", []porcupine.Operation{
			h(0, 10, put("a"), ok(true, "a", 1)), h(20, 50, put("b"), ok(true, "b", 2)),
			h(30, 40, get(), ok(true, "a", 1))}, porcupine.Ok},
		{"an open unknown may take effect late", []porcupine.Operation{
			h(0, never, put("a"), unknown), h(10, 20, get(), absent),
			h(30, 40, get(), ok(true, "a", 3))}, porcupine.Ok},
		{"an open unknown may never take effect", []porcupine.Operation{
			h(0, never, put("a"), unknown), h(10, 20, put("b"), ok(true, "b", 4)),
			h(30, 40, get(), ok(true, "b", 4))}, porcupine.Ok},
		{"a closed unknown takes effect before it closes or never", []porcupine.Operation{
			h(0, 10, put("a"), unknown), h(20, 30, get(), absent),
			h(40, 50, get(), ok(true, "a", 1))}, porcupine.Illegal},
		{"an unknown first write leaves the version to be pinned", []porcupine.Operation{
			h(0, 15, put("a"), unknown), h(20, 30, put("b"), ok(true, "b", 5)),
			h(40, 50, put("c"), ok(true, "c", 6))}, porcupine.Ok},
		{"a pinned version then counts on", []porcupine.Operation{
			h(0, 15, put("a"), unknown), h(20, 30, put("b"), ok(true, "b", 5)),
			h(40, 50, put("c"), ok(true, "c", 7))}, porcupine.Illegal},
		{"a refusal shows the state it saw", []porcupine.Operation{
			h(0, 10, put("a"), ok(true, "a", 1)),
			h(20, 30, cas(2, "b"), refused(outMismatch, true, "a", 1))}, porcupine.Ok},
		{"a matching compare-and-swap is not refused", []porcupine.Operation{
			h(0, 10, put("a"), ok(true, "a", 1)),
			h(20, 30, cas(1, "b"), refused(outMismatch, true, "a", 1))}, porcupine.Illegal},
		{"delete and re-create keep counting", []porcupine.Operation{
			h(0, 10, put("a"), ok(true, "a", 3)),
			h(20, 30, input{kind: opDelete}, ok(false, "", 4)),
			h(40, 50, input{kind: opCreate, value: "b"}, ok(true, "b", 5))}, porcupine.Ok},
		{"a re-create does not restart versions", []porcupine.Operation{
			h(0, 10, put("a"), ok(true, "a", 3)),
			h(20, 30, input{kind: opDelete}, ok(false, "", 4)),
			h(40, 50, input{kind: opCreate, value: "b"}, ok(true, "b", 1))}, porcupine.Illegal},
		{"deleting an absent key is not-found", []porcupine.Operation{
			h(0, 10, input{kind: opDelete}, refused(outNotFound, false, "", 0))}, porcupine.Ok},
		{"increment counts from absent and refuses a non-integer", []porcupine.Operation{
			h(0, 10, input{kind: opIncrement, delta: 2}, ok(true, "2", 4)),
			h(20, 30, put("x1"), ok(true, "x1", 5)),
			h(40, 50, input{kind: opIncrement, delta: 1}, refused(outNotInteger, true, "x1", 5))}, porcupine.Ok},
		{"an unknown compare-and-swap on an unpinned version may hold", []porcupine.Operation{
			h(0, never, put("a"), unknown), h(10, never, cas(3, "c"), unknown),
			h(20, 30, get(), ok(true, "c", 4))}, porcupine.Ok},
		{"an unknown compare-and-swap writes the version it expects plus one", []porcupine.Operation{
			h(0, never, put("a"), unknown), h(10, never, cas(3, "c"), unknown),
			h(20, 30, get(), ok(true, "c", 2))}, porcupine.Illegal},
		{"keys are independent", []porcupine.Operation{
			h(0, 10, input{key: "k1", kind: opPut, value: "a"}, ok(true, "a", 5)),
			h(20, 30, input{key: "k2", kind: opPut, value: "b"}, ok(true, "b", 2)),
			h(40, 50, input{key: "k1", kind: opGet}, ok(true, "a", 5))}, porcupine.Ok},
	}
}
