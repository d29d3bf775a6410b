#!/usr/bin/env bash
# Run every fuzzer of the module, one after the other, each for $FUZZTIME.
#
#   ci/fuzz.sh [PACKAGES...]        packages default to ./...
#   FUZZTIME=10m ci/fuzz.sh         the nightly form (default 20s each)
#   FUZZ=Authority ci/fuzz.sh       only fuzzers whose "./pkg.FuzzName" matches
#                                   the regular expression (grep -E)
#   FUZZMINIMIZETIME=60s ci/fuzz.sh go's own default; ours is 5s, because each
#                                   input that finds new code is minimized
#                                   before fuzzing goes on, and a slow fuzzer
#                                   would spend a 20s run minimizing one input
#
# Fuzzers are found, not listed: every func FuzzXxx(*testing.F) in the test
# files `go list` gives for each package (so build constraints hold). Each
# runs as
#
#   go test -run='^$' -fuzz='^FuzzXxx$' -fuzztime=$FUZZTIME \
#           -fuzzminimizetime=$FUZZMINIMIZETIME ./pkg
#
# with its output shown as it goes. At the end a table gives, per fuzzer,
# its result, the executions it ran and the inputs that widened coverage.
# A failing input is written by go under the package's
# testdata/fuzz/FuzzXxx/; the table names the file: commit it, and it runs
# as a seed in every `go test` from then on. The script fails if any
# fuzzer fails (or none is found).
set -uo pipefail

GO=${GO:-go}
FUZZTIME=${FUZZTIME:-20s}
FUZZ=${FUZZ:-}
FUZZMINIMIZETIME=${FUZZMINIMIZETIME:-5s}
cd "$(dirname "$0")/.."
if [ $# -eq 0 ]; then
	set -- ./...
fi

# "dir<TAB>import path<TAB>test files" for each package with test files.
listing=$("$GO" list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.Dir}}{{"\t"}}{{.ImportPath}}{{"\t"}}{{join .TestGoFiles " "}} {{join .XTestGoFiles " "}}{{end}}' "$@") || {
	echo "fuzz: go list $* failed" >&2
	exit 1
}
module=$("$GO" list -m)

fuzzers=() # "dir<TAB>./rel/pkg<TAB>FuzzName"
while IFS=$'\t' read -r dir path files; do
	[ -n "$dir" ] || continue
	rel=./${path#"$module"/}
	[ "$path" = "$module" ] && rel=.
	for name in $(cd "$dir" && sed -nE 's/^func (Fuzz[A-Z0-9_][A-Za-z0-9_]*)\([A-Za-z_][A-Za-z0-9_]* \*testing\.F\).*/\1/p' $files | sort -u); do
		if [ -n "$FUZZ" ] && ! grep -qE -- "$FUZZ" <<<"$rel.$name"; then
			continue
		fi
		fuzzers+=("$dir"$'\t'"$rel"$'\t'"$name")
	done
done <<<"$listing"

if [ ${#fuzzers[@]} -eq 0 ]; then
	echo "fuzz: no fuzzer found in $*${FUZZ:+ matching $FUZZ}" >&2
	exit 1
fi
echo "fuzz: ${#fuzzers[@]} fuzzers, $FUZZTIME each"

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
rows=()
failed=0
i=0
for f in "${fuzzers[@]}"; do
	IFS=$'\t' read -r dir rel name <<<"$f"
	i=$((i + 1))
	log=$logs/$i.log
	echo
	echo "=== [$i/${#fuzzers[@]}] $name in $rel"
	"$GO" test -run='^$' -fuzz="^$name\$" -fuzztime="$FUZZTIME" -fuzzminimizetime="$FUZZMINIMIZETIME" "$rel" 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	# The last progress line has the totals:
	# "fuzz: elapsed: 20s, execs: 123456 (6172/sec), new interesting: 3 (total: 40)"
	last=$(grep -E '^fuzz: elapsed: .*execs: [0-9]+' "$log" | tail -n 1)
	execs=$(sed -nE 's/.*execs: ([0-9]+).*/\1/p' <<<"$last")
	interesting=$(sed -nE 's/.*new interesting: ([0-9]+).*/\1/p' <<<"$last")
	crasher=$(sed -nE 's/.*Failing input written to (testdata\/fuzz\/[^ ]+).*/\1/p' "$log" | tail -n 1)
	result=ok
	note=
	# The first message under "--- FAIL: FuzzXxx" says why.
	why=$(awk '/^--- FAIL/ { f = 1; next } f { sub(/^[ \t]+/, "") } f && $0 != "" && !/^--- / { print; exit }' "$log")
	if [ "$rc" -ne 0 ] && [ -z "$crasher" ] && [ -n "$last" ] && [ "$why" = "context deadline exceeded" ]; then
		# Go's fuzz coordinator (before go1.27) can report its own -fuzztime
		# deadline as a failure: https://go.dev/issue/75804. The message is
		# bare (a target's own error carries file:line) and no input is
		# written; every input run until then passed.
		note="go.dev/issue/75804: go reported its own -fuzztime deadline as a failure; no input failed"
	elif [ "$rc" -ne 0 ]; then
		result=FAIL
		failed=$((failed + 1))
		if [ -n "$crasher" ]; then
			note="new seed ${rel#./}/$crasher: fix, then commit it${why:+ ($why)}"
		elif [ -z "$last" ]; then
			note="did not start fuzzing (build or seed failure, see its log above)${why:+: $why}"
		else
			note=${why:-"see its log above"}
		fi
	fi
	rows+=("$result"$'\t'"$rel"$'\t'"$name"$'\t'"${execs:--}"$'\t'"${interesting:--}"$'\t'"$note")
done

echo
echo "fuzz summary ($FUZZTIME each):"
{
	printf 'RESULT\tPACKAGE\tFUZZER\tEXECS\tNEW\tNOTE\n'
	printf '%s\n' "${rows[@]}"
} | awk -F'\t' '
	{ for (c = 1; c <= NF; c++) { cell[NR, c] = $c; if (length($c) > w[c]) w[c] = length($c) } n = NR }
	END { for (r = 1; r <= n; r++) { line = ""; for (c = 1; c <= 6; c++) line = line sprintf("%-" w[c] "s  ", cell[r, c]); sub(/ +$/, "", line); print line } }'
if [ "$failed" -ne 0 ]; then
	echo "fuzz: $failed of ${#fuzzers[@]} fuzzers failed" >&2
	exit 1
fi
echo "fuzz: all ${#fuzzers[@]} fuzzers passed"
