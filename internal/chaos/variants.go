package chaos

// Variants lists the deliberately broken production components that the
// harness must catch (TestBrokenVariantsAreCaught).
func Variants() []Variant {
	return []Variant{
		{Name: "reply-before-sync", ReplyBeforeSync: true},
		// A stale accept must land on a collected register: GC plans.
		{Name: "gc-without-age-fence", Kind: GCChurn, NoAgeFence: true},
		// A key left on the old majority must be missed by a new prepare quorum:
		// membership plans.
		{Name: "grow-without-catch-up", Kind: Membership, NoCatchUp: true},
		// A promise a crash took must be broken by a replayed request or a
		// proposer's retry: mixed plans (crashes, replay after a restart).
		{Name: "restart-without-floor", Kind: Mixed, RestartWithoutFloor: true},
		// A lagging acceptor's scan must be trusted alone: membership plans,
		// whose cold keys sit on a bare majority under loss.
		{Name: "list-trust-one-reply", Kind: Membership, ListTrustOneReply: true},
		// A minority's accept must be hinted and delivered unconfirmed:
		// mixed plans (lost and delayed accepts, crashes mid-write).
		{Name: "watch-raw-accepts", Kind: Mixed, WatchRawAccepts: true},
	}
}

func variantByName(name string) (Variant, bool) {
	for _, v := range Variants() {
		if v.Name == name {
			return v, true
		}
	}
	return Variant{}, false
}
