package sim

import (
	"flag"
	"os"
	"strconv"
	"testing"
	"time"
)

// The test flags are registered in TestMain (not in package variables) and
// read back through flag.Lookup.
func TestMain(m *testing.M) {
	flag.Uint64("seed", 0, "TestReplay: the seed to run")
	flag.String("variant", "", "TestReplay: a broken variant to switch on (reply-before-sync, read-quorum-short, keep-cache-on-timeout)")
	flag.Int("ops", 0, "operations per run (default 10000)")
	flag.Int("soak", 0, "TestSoak: how many seeds to run (0: skip)")
	flag.Uint64("soak-from", 1000000, "TestSoak: the first seed")
	flag.String("events", "", "TestReplay: write every event to this file")
	flag.Bool("no-retire", false, "keep unknown outcomes open to the end (cross-checks the retirement rule; slow)")
	flag.Duration("check-timeout", 0, "TestReplay: bound of Porcupine's search (default Options.CheckTimeout's)")
	flag.Parse()
	os.Exit(m.Run())
}

func flagString(name string) string { return flag.Lookup(name).Value.String() }

func flagInt(t testing.TB, name string) int {
	n, err := strconv.Atoi(flagString(name))
	if err != nil {
		t.Fatalf("-%s: %v", name, err)
	}
	return n
}

func flagDuration(t testing.TB, name string) time.Duration {
	d, err := time.ParseDuration(flagString(name))
	if err != nil {
		t.Fatalf("-%s: %v", name, err)
	}
	return d
}

func flagUint(t testing.TB, name string) uint64 {
	n, err := strconv.ParseUint(flagString(name), 10, 64)
	if err != nil {
		t.Fatalf("-%s: %v", name, err)
	}
	return n
}

func flagBool(name string) bool { return flagString(name) == "true" }
