package protocol

import "testing"

// TestApplyKeepsFirstVersionOfLife: Created is the version of the write
// that began the register's current life, kept by later writes, cleared by
// a delete, begun again by a re-create, and unknown (0) on a live register
// written before the field existed until the register's next life.
func TestApplyKeepsFirstVersionOfLife(t *testing.T) {
	set := Write{Kind: WriteSet, Value: []byte("v")}
	del := Write{Kind: WriteDelete}
	keep := Write{Kind: WriteKeep}
	tests := []struct {
		name    string
		from    State
		writes  []Write
		counter uint64
		want    State
	}{
		{"create", State{}, []Write{set}, 7, State{Value: []byte("v"), Version: 7, Created: 7}},
		{"update keeps it", State{}, []Write{set, set, set}, 1, State{Value: []byte("v"), Version: 3, Created: 1}},
		{"read keeps it", State{Value: []byte("v"), Version: 4, Created: 2}, []Write{keep}, 9, State{Value: []byte("v"), Version: 4, Created: 2}},
		{"delete clears it", State{Value: []byte("v"), Version: 4, Created: 2}, []Write{del}, 9, State{Version: 5, Deleted: true}},
		{"re-create begins a life", State{Value: []byte("v"), Version: 4, Created: 2}, []Write{del, set, set}, 9, State{Value: []byte("v"), Version: 7, Created: 6}},
		{"after a tombstone of GC", State{Version: 10, Deleted: true}, []Write{set}, 3, State{Value: []byte("v"), Version: 11, Created: 11}},
		{"unknown stays unknown", State{Value: []byte("old"), Version: 8}, []Write{set}, 1, State{Value: []byte("v"), Version: 9}},
		{"unknown until its next life", State{Value: []byte("old"), Version: 8}, []Write{del, set}, 1, State{Value: []byte("v"), Version: 10, Created: 10}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.from
			for _, w := range tc.writes {
				var err error
				if s, err = apply(s, w, tc.counter); err != nil {
					t.Fatal(err)
				}
			}
			if !s.Equal(tc.want) {
				t.Fatalf("got %+v, want %+v", s, tc.want)
			}
		})
	}
}

// TestApplyAttrs: a write's Attrs replace the register's, a write without
// them keeps them, a delete clears them and a new life begins without
// them.
func TestApplyAttrs(t *testing.T) {
	a := &Attrs{Lease: 5, Flags: 7, LockIndex: 1}
	b := &Attrs{Flags: 9}
	setA := Write{Kind: WriteSet, Value: []byte("a"), Attrs: a}
	setB := Write{Kind: WriteSet, Value: []byte("b"), Attrs: b}
	set := Write{Kind: WriteSet, Value: []byte("v")}
	tests := []struct {
		name   string
		writes []Write
		want   Attrs
	}{
		{"set", []Write{setA}, *a},
		{"replaced", []Write{setA, setB}, *b},
		{"kept by a write without them", []Write{setA, set, {Kind: WriteKeep}}, *a},
		{"cleared by a delete", []Write{setA, {Kind: WriteDelete}}, Attrs{}},
		{"not carried into a new life", []Write{setA, {Kind: WriteDelete}, set}, Attrs{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s State
			for _, w := range tc.writes {
				var err error
				if s, err = apply(s, w, 1); err != nil {
					t.Fatal(err)
				}
			}
			if s.Attrs != tc.want {
				t.Fatalf("attrs %+v, want %+v", s.Attrs, tc.want)
			}
		})
	}
}
