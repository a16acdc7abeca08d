package protocol

import (
	"errors"
	"testing"
)

// Write.MinVersion raises the version a write gives, never lowers it, and
// never takes it past MaxVersion.
func TestWriteMinVersion(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cur     State
		w       Write
		counter uint64
		want    State
		err     error
	}{
		{"no floor, fresh", State{}, Write{Kind: WriteSet, Value: []byte("a")}, 7, State{Value: []byte("a"), Version: 7, Created: 7}, nil},
		{"floor above counter, fresh", State{}, Write{Kind: WriteSet, Value: []byte("a"), MinVersion: 100}, 7, State{Value: []byte("a"), Version: 100, Created: 100}, nil},
		{"floor below counter, fresh", State{}, Write{Kind: WriteSet, Value: []byte("a"), MinVersion: 3}, 7, State{Value: []byte("a"), Version: 7, Created: 7}, nil},
		{"floor above previous", State{Value: []byte("x"), Version: 5}, Write{Kind: WriteSet, Value: []byte("a"), MinVersion: 100}, 1, State{Value: []byte("a"), Version: 100}, nil},
		{"floor below previous + 1", State{Value: []byte("x"), Version: 500}, Write{Kind: WriteSet, Value: []byte("a"), MinVersion: 100}, 1, State{Value: []byte("a"), Version: 501}, nil},
		{"floor equal to previous", State{Value: []byte("x"), Version: 100}, Write{Kind: WriteSet, Value: []byte("a"), MinVersion: 100}, 1, State{Value: []byte("a"), Version: 101}, nil},
		{"over a tombstone", State{Version: 9, Deleted: true}, Write{Kind: WriteSet, Value: []byte("a"), MinVersion: 50}, 1, State{Value: []byte("a"), Version: 50, Created: 50}, nil},
		{"delete with floor", State{Value: []byte("x"), Version: 5}, Write{Kind: WriteDelete, MinVersion: 60}, 1, State{Version: 60, Deleted: true}, nil},
		{"keep ignores floor", State{Value: []byte("x"), Version: 5}, Write{Kind: WriteKeep, MinVersion: 60}, 1, State{Value: []byte("x"), Version: 5}, nil},
		{"floor at MaxVersion", State{}, Write{Kind: WriteSet, Value: []byte("a"), MinVersion: MaxVersion}, 1, State{Value: []byte("a"), Version: MaxVersion, Created: MaxVersion}, nil},
		{"floor past MaxVersion", State{Value: []byte("x"), Version: 5}, Write{Kind: WriteSet, Value: []byte("a"), MinVersion: MaxVersion + 1}, 1, State{Value: []byte("x"), Version: 5}, ErrExhausted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := apply(tc.cur, tc.w, tc.counter)
			if !errors.Is(err, tc.err) || !got.Equal(tc.want) {
				t.Fatalf("apply = %s, %v; want %s, %v", got, err, tc.want, tc.err)
			}
		})
	}
}
