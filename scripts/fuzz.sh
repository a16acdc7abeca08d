#!/usr/bin/env bash
# Runs every native Go fuzz target of the module (func FuzzX in a
# *_test.go file) for FUZZTIME each (default 3s). Go fuzzes one target per
# run, so each runs on its own. Each package whose tests define a target
# is built once, instrumented (`go test -c -fuzz`), and its binary lists
# its targets (-test.list, as `go test -list` does) and fuzzes each in
# turn: a new target is fuzzed without editing this script, and a package
# is linked once, not once per target. A failing input is written to the
# package's testdata/fuzz/<Target>/, where plain `go test` replays it; the
# generated corpus is kept where `go test -fuzz` keeps it (GOCACHE/fuzz).
#
#   scripts/fuzz.sh                     # every target, 3s each
#   FUZZTIME=5m scripts/fuzz.sh         # longer (make fuzz FUZZTIME=5m)
#   scripts/fuzz.sh ./storage           # only these packages
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-3s}

if [ $# -gt 0 ]; then
	pkgs=("$@")
else
	# Packages of this module whose test files define a fuzz target
	# (bench/ and compat/ are modules of their own: `go list` skips them).
	mapfile -t pkgs < <(go list -f '{{.ImportPath}} {{.Dir}}' ./... |
		while read -r pkg dir; do
			if grep -qs '^func Fuzz' "$dir"/*_test.go; then echo "$pkg"; fi
		done)
fi

# fuzz_one DIR TEST TARGET CACHE fuzzes one target, in the package's
# directory as go test does, so that testdata/fuzz is found and written
# there. Go's fuzzing coordinator can fail a run that found nothing: when
# -fuzztime ends while a worker is still busy it reports a bare "context
# deadline exceeded" (go.dev/issue/75804, fixed in Go 1.27; seen on a loaded
# CI machine). Such a run, and only such a run (the output ends with that
# line and no failing input was written under testdata/fuzz/TARGET), is run
# again, at most twice; any other failure, or a third, fails the target.
fuzz_one() {
	local dir=$1 test=$2 target=$3 cache=$4 out attempt before after
	for attempt in 1 2 3; do
		before=$(ls "$dir/testdata/fuzz/$target" 2>/dev/null | wc -l)
		out="$bin/out"
		if (cd "$dir" && "$test" -test.run "^${target}\$" -test.fuzz "^${target}\$" \
			-test.fuzztime "$fuzztime" -test.fuzzcachedir "$cache") >"$out" 2>&1; then
			cat "$out"
			return 0
		fi
		cat "$out"
		after=$(ls "$dir/testdata/fuzz/$target" 2>/dev/null | wc -l)
		if [ "$after" -ne "$before" ] ||
			! grep -q '^    context deadline exceeded$' "$out" ||
			grep -q -e '^panic:' -e 'Failing input written' "$out"; then
			return 1
		fi
		echo "fuzz.sh: $target: the coordinator's deadline race (go.dev/issue/75804), no input found; run $attempt of 3" >&2
	done
	return 1
}

bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
cache=$(go env GOCACHE)/fuzz
failed=()
count=0
n=0
for pkg in "${pkgs[@]}"; do
	n=$((n + 1))
	dir=$(go list -f '{{.Dir}}' "$pkg")
	imp=$(go list -f '{{.ImportPath}}' "$pkg")
	test="$bin/pkg$n.test"
	go test -c -fuzz=. -o "$test" "$pkg"
	mapfile -t targets < <(cd "$dir" && "$test" -test.list '^Fuzz' | grep '^Fuzz')
	for target in "${targets[@]}"; do
		count=$((count + 1))
		echo "== $imp $target ($fuzztime)"
		# Run in the package's directory, as go test does, so that
		# testdata/fuzz is found and written there.
		if ! fuzz_one "$dir" "$test" "$target" "$cache/$imp"; then
			failed+=("$imp $target")
		fi
	done
done
if [ "$count" -eq 0 ]; then
	echo "fuzz.sh: no fuzz target found" >&2
	exit 1
fi
if [ ${#failed[@]} -gt 0 ]; then
	printf 'fuzz.sh: FAILED %s\n' "${failed[@]}" >&2
	exit 1
fi
echo "fuzz.sh: $count targets fuzzed for $fuzztime each"
