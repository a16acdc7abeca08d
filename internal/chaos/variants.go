package chaos

// Variants lists the deliberately broken production components that the
// harness must catch (TestBrokenVariantsAreCaught).
func Variants() []Variant {
	return []Variant{
		{Name: "reply-before-sync", ReplyBeforeSync: true},
		{Name: "restart-without-floor", RestartWithoutFloor: true},
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
