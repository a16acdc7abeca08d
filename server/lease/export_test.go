package lease

// BreakGuard switches r to the deliberately broken variant: its sweep
// deletes attached keys without checking they are still attached.
func BreakGuard(r *Reaper) { r.unguarded = true }
