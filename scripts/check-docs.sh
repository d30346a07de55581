#!/usr/bin/env bash
# check-docs.sh — the repository stands alone: what its code and documents cite
# is in it.
#  1. no reference to a SPEC (the contract is docs/CONTRACT.md);
#  2. every "CONTRACT §n" names a section that docs/CONTRACT.md has;
#  3. every relative link of README.md and docs/*.md leads to a file that exists.
# Last line: "docs: N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
passed=0 failed=0
ok() { echo "ok   $*"; passed=$((passed + 1)); }
bad() { echo "FAIL $*"; failed=$((failed + 1)); }
where=(src tests scripts deploy docs bench web README.md Makefile meson.build)

spec=$(git grep -n -E 'SPEC( ?§|\.md| section|:)' -- "${where[@]}" ':!scripts/check-docs.sh')
if [[ -z $spec ]]; then ok "no reference to an absent SPEC"; else bad "references to an absent SPEC:"; echo "$spec" | head -20; fi

sections=$(grep -oE '^## §[0-9]+' docs/CONTRACT.md | grep -oE '[0-9]+' | tr '\n' ' ')
dangling=$(git grep -n -o -E 'CONTRACT §[0-9]+' -- "${where[@]}" | while IFS= read -r hit; do
  n=${hit##*§}
  [[ " $sections " == *" $n "* ]] || echo "$hit"
done)
if [[ -n $sections && -z $dangling ]]; then
  ok "every CONTRACT §n exists (sections: $sections)"
else
  bad "CONTRACT sections cited but missing (docs/CONTRACT.md has: ${sections:-none}):"; echo "$dangling" | head -20
fi

broken=""
for doc in README.md docs/*.md; do
  base=$(dirname "$doc")
  while IFS= read -r target; do
    target=${target%%#*}
    [[ -z $target || $target == *://* || $target == mailto:* ]] && continue
    [[ -e $base/$target ]] || broken+="$doc → $target"$'\n'
  done < <(grep -oE '\]\([^)]+\)' "$doc" | sed -E 's/^\]\((.*)\)$/\1/')
done
if [[ -z $broken ]]; then ok "every relative link of README.md and docs/*.md resolves"; else bad "broken links:"; printf '%s' "$broken" | head -20; fi

echo "docs: $passed passed, $failed failed"
((failed == 0))
