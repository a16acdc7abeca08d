package sim

import (
	"testing"
	"time"
)

// TestLocksHold: runs with lock holders pass the lock checks (no two
// holds overlap, tokens rise), and exercise holds and breaks.
func TestLocksHold(t *testing.T) {
	t.Parallel()
	var st Stats
	for seed := uint64(1); seed <= 4; seed++ {
		rep, err := Run(Options{Seed: seed, Ops: 2000, Tweak: func(p *Plan) {
			p.Leases, p.LeaseTTL, p.Locks = 3, 40*time.Millisecond, true
			p.MaxSkew = min(p.MaxSkew, 10*time.Millisecond)
			p.ClockSeed |= 1
		}})
		if err != nil {
			t.Fatal(err)
		}
		st.Add(rep.Stats)
	}
	if st.LockHolds < 10 || st.LockBreaks == 0 {
		t.Errorf("the lock actors did too little: %d holds, %d breaks", st.LockHolds, st.LockBreaks)
	}
	t.Logf("%d holds, %d breaks", st.LockHolds, st.LockBreaks)
}
