package kv

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"testing"

	"github.com/caspaxos/caspaxos/protocol"
)

func TestChanges(t *testing.T) {
	absent := protocol.State{}
	live := protocol.State{Value: []byte("7"), Version: 4}
	tomb := protocol.State{Version: 5, Deleted: true}
	maxed := protocol.State{Value: []byte(strconv.FormatInt(math.MaxInt64, 10)), Version: 1}
	text := protocol.State{Value: []byte("seven"), Version: 2}
	tests := []struct {
		name   string
		change protocol.Change
		cur    protocol.State
		want   protocol.Write
		err    error
	}{
		{"put absent", Put([]byte("a")), absent, protocol.Write{Kind: protocol.WriteSet, Value: []byte("a")}, nil},
		{"create absent", Create([]byte("a")), absent, protocol.Write{Kind: protocol.WriteSet, Value: []byte("a")}, nil},
		{"create over tombstone", Create([]byte("a")), tomb, protocol.Write{Kind: protocol.WriteSet, Value: []byte("a")}, nil},
		{"create live", Create([]byte("a")), live, protocol.Write{}, ErrVersionMismatch},
		{"cas match", CompareAndSwap(4, []byte("b")), live, protocol.Write{Kind: protocol.WriteSet, Value: []byte("b")}, nil},
		{"cas stale", CompareAndSwap(3, []byte("b")), live, protocol.Write{}, ErrVersionMismatch},
		{"cas on tombstone", CompareAndSwap(5, []byte("b")), tomb, protocol.Write{}, ErrVersionMismatch},
		{"delete live", Delete(0), live, protocol.Write{Kind: protocol.WriteDelete}, nil},
		{"delete absent", Delete(0), absent, protocol.Write{}, ErrNotFound},
		{"delete if match", Delete(4), live, protocol.Write{Kind: protocol.WriteDelete}, nil},
		{"delete if stale", Delete(3), live, protocol.Write{}, ErrVersionMismatch},
		{"incr absent", Increment(2), absent, protocol.Write{Kind: protocol.WriteSet, Value: []byte("2")}, nil},
		{"incr tombstone", Increment(-2), tomb, protocol.Write{Kind: protocol.WriteSet, Value: []byte("-2")}, nil},
		{"incr live", Increment(3), live, protocol.Write{Kind: protocol.WriteSet, Value: []byte("10")}, nil},
		{"incr overflow", Increment(1), maxed, protocol.Write{}, ErrOverflow},
		{"incr text", Increment(1), text, protocol.Write{}, ErrNotAnInteger},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.change(tt.cur)
			if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
				t.Fatalf("error %v, want %v", err, tt.err)
			}
			if got.Kind != tt.want.Kind || string(got.Value) != string(tt.want.Value) || got.MinVersion != tt.want.MinVersion {
				t.Fatalf("write %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestVersionMismatchCarriesCurrent(t *testing.T) {
	_, err := CompareAndSwap(1, nil)(protocol.State{Value: []byte("x"), Version: 9})
	var vm *VersionMismatchError
	if !errors.As(err, &vm) || vm.Current != 9 || vm.Expected != 1 {
		t.Fatalf("error %#v", err)
	}
}

func TestLimits(t *testing.T) {
	l := Limits{MaxKeyBytes: 3, MaxValueBytes: 2}
	for _, tt := range []struct {
		key   string
		value string
		err   error
	}{
		{"", "", ErrEmptyKey},
		{"abcd", "", ErrKeyTooLarge},
		{"abc", "xyz", ErrValueTooLarge},
		{"abc", "xy", nil},
	} {
		err := l.CheckKey(tt.key)
		if err == nil {
			err = l.CheckValue([]byte(tt.value))
		}
		if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
			t.Errorf("%q/%q: %v, want %v", tt.key, tt.value, err, tt.err)
		}
	}
}

func TestOpChange(t *testing.T) {
	live := protocol.State{Value: []byte("7"), Version: 4}
	tests := []struct {
		op   Op
		want protocol.Write
		err  error
	}{
		{Op{Kind: OpPut, Key: "k", Value: []byte("v")}, protocol.Write{Kind: protocol.WriteSet, Value: []byte("v")}, nil},
		{Op{Kind: OpCreate, Key: "k", Value: []byte("v")}, protocol.Write{}, ErrVersionMismatch},
		{Op{Kind: OpCompareAndSwap, Key: "k", Version: 4, Value: []byte("v")}, protocol.Write{Kind: protocol.WriteSet, Value: []byte("v")}, nil},
		{Op{Kind: OpDelete, Key: "k", Version: 3}, protocol.Write{}, ErrVersionMismatch},
		{Op{Kind: OpIncrement, Key: "k", Delta: -8}, protocol.Write{Kind: protocol.WriteSet, Value: []byte("-1")}, nil},
		{Op{Kind: OpRestore, Key: "k", Version: 90, Value: []byte("r")}, protocol.Write{Kind: protocol.WriteSet, Value: []byte("r"), MinVersion: 90}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.op.Kind.String(), func(t *testing.T) {
			got, err := tt.op.Change()(live)
			if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) || got.Kind != tt.want.Kind || string(got.Value) != string(tt.want.Value) || got.MinVersion != tt.want.MinVersion {
				t.Fatalf("got %+v, %v; want %+v, %v", got, err, tt.want, tt.err)
			}
		})
	}
	if (Op{Kind: OpGet}).Change() != nil {
		t.Fatal("a get has a change function")
	}
}

func TestOpValidate(t *testing.T) {
	l := Limits{MaxKeyBytes: 4, MaxValueBytes: 4}
	for _, tt := range []struct {
		op  Op
		err error
	}{
		{Op{Kind: OpPut, Key: "k", Value: []byte("v")}, nil},
		{Op{Kind: OpPut, Key: "", Value: []byte("v")}, ErrEmptyKey},
		{Op{Kind: OpPut, Key: "kkkkk"}, ErrKeyTooLarge},
		{Op{Kind: OpPut, Key: "k", Value: []byte("vvvvv")}, ErrValueTooLarge},
	} {
		if err := tt.op.Validate(l); !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
			t.Errorf("%+v: %v, want %v", tt.op, err, tt.err)
		}
	}
	if err := (Op{Kind: 99, Key: "k"}).Validate(l); err == nil {
		t.Error("unknown kind accepted")
	}
}

func TestCodeRoundTrip(t *testing.T) {
	for _, err := range []error{ErrNotFound, ErrNotAnInteger, ErrOverflow, ErrNoQuorum, ErrUnknownOutcome,
		ErrKeyTooLarge, ErrValueTooLarge, ErrEmptyKey, &VersionMismatchError{Expected: 1, Current: 7}} {
		code, current := Code(fmt.Errorf("wrapped: %w", err))
		var expected uint64
		if vm, ok := err.(*VersionMismatchError); ok {
			expected = vm.Expected
		}
		back := FromCode(code, "msg", current, expected)
		if code == CodeInternal || !errors.Is(back, err) && !errors.Is(back, ErrVersionMismatch) {
			t.Errorf("%v: code %s came back as %v", err, code, back)
		}
		var vm *VersionMismatchError
		if errors.As(err, &vm) && (!errors.As(back, &vm) || vm.Current != 7 || vm.Expected != 1) {
			t.Errorf("current version lost: %v", back)
		}
	}
	if code, _ := Code(errors.New("other")); code != CodeInternal {
		t.Errorf("unclassified error got %s", code)
	}
}

func TestPrefixShows(t *testing.T) {
	for _, tc := range []struct {
		prefix, key string
		want        bool
	}{
		{"", "a", true},
		{"", ReservedPrefix + "auth/state", false},
		{"a/", "a/b", true},
		{"a/", "b", false},
		{ReservedPrefix, ReservedPrefix + "lease/1", true},
		{LeaseKey(0)[:len(leasePrefix)], LeaseKey(7), true},
		{LeaseKey(0)[:len(leasePrefix)], "a", false},
	} {
		if got := PrefixShows(tc.prefix, tc.key); got != tc.want {
			t.Errorf("PrefixShows(%q, %q) = %v, want %v", tc.prefix, tc.key, got, tc.want)
		}
	}
}
