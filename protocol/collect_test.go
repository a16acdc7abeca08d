package protocol

import "testing"

func TestCollectible(t *testing.T) {
	b := func(counter uint64, proposer NodeID) Ballot { return Ballot{Counter: counter, Proposer: proposer} }
	tomb := State{Version: 3, Deleted: true}
	// The round's GC write accepted the tombstone under 7.1, leaving a
	// promise of 8.1 (the next ballot, §5).
	gc := Tombstone{Key: "k", Ballot: b(7, 1), Version: 3, Promise: b(8, 1)}
	tests := []struct {
		name string
		t    Tombstone
		reg  Register
		want Collect
	}{
		{"as the GC write left it", gc, Register{Promise: b(8, 1), Accepted: b(7, 1), State: tomb}, CollectRemove},
		{"promise below the GC write's (an unsynced promise lost in a crash)", gc, Register{Promise: b(7, 1), Accepted: b(7, 1), State: tomb}, CollectRemove},
		{"no state at all under the GC ballot (a key never written)",
			Tombstone{Key: "k", Ballot: b(7, 1), Promise: b(8, 1)}, Register{Promise: b(8, 1), Accepted: b(7, 1)}, CollectRemove},
		{"nothing there", gc, Register{}, CollectDone},
		{"live again", gc, Register{Promise: b(9, 2), Accepted: b(9, 2), State: State{Value: []byte("v"), Version: 4}}, CollectDone},
		{"a value under the GC ballot", gc, Register{Promise: b(8, 1), Accepted: b(7, 1), State: State{Value: []byte("v"), Version: 3}}, CollectDone},
		{"the tombstone accepted again since", gc, Register{Promise: b(9, 2), Accepted: b(9, 2), State: tomb}, CollectLater},
		{"promised above the GC write's since", gc, Register{Promise: b(9, 2), Accepted: b(7, 1), State: tomb}, CollectLater},
		{"same counter, other proposer's promise above", gc, Register{Promise: b(8, 2), Accepted: b(7, 1), State: tomb}, CollectLater},
		{"same counter, other proposer's ballot", gc, Register{Promise: b(8, 1), Accepted: b(7, 2), State: tomb}, CollectLater},
		{"a promise only", gc, Register{Promise: b(9, 2)}, CollectLater},
	}
	for _, tt := range tests {
		if got := Collectible(tt.t, tt.reg); got != tt.want {
			t.Errorf("%s: Collectible(%+v, %v) = %v, want %v", tt.name, tt.t, tt.reg, got, tt.want)
		}
	}
}

func TestRegisterEqual(t *testing.T) {
	base := Register{Promise: Ballot{8, 1}, Accepted: Ballot{7, 1}, State: State{Value: []byte("v"), Version: 3}}
	same := Register{Promise: Ballot{8, 1}, Accepted: Ballot{7, 1}, State: State{Value: []byte("v"), Version: 3}}
	if !base.Equal(same) || !(Register{}).Equal(Register{}) {
		t.Fatal("identical registers are not Equal")
	}
	for name, o := range map[string]Register{
		"promise":  {Promise: Ballot{8, 2}, Accepted: base.Accepted, State: base.State},
		"accepted": {Promise: base.Promise, Accepted: Ballot{6, 1}, State: base.State},
		"value":    {Promise: base.Promise, Accepted: base.Accepted, State: State{Value: []byte("w"), Version: 3}},
		"version":  {Promise: base.Promise, Accepted: base.Accepted, State: State{Value: []byte("v"), Version: 4}},
		"deleted":  {Promise: base.Promise, Accepted: base.Accepted, State: State{Version: 3, Deleted: true}},
		"zero":     {},
	} {
		if base.Equal(o) || o.Equal(base) {
			t.Errorf("registers differing in %s are Equal: %v and %v", name, base, o)
		}
	}
}
