# Sourced by the benchmark scripts that compare two binaries: `old_new_work NAME` checks that
# OLD is set, sets REPO, NEW (by default this tree's release binary) and WORK (a folder under
# /tmp named after NAME, removed on exit) holding the example recipe, fixtures and lockfiles.
old_new_work() {
  REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  NEW=${NEW:-$REPO/target/release/candidate}
  : "${OLD:?set OLD to the binary to compare with}"
  WORK=$(mktemp -d "/tmp/$1.XXXXXX")
  trap 'rm -rf "$WORK"' EXIT
  mkdir -p "$WORK/recipes"
  cp -a "$REPO/recipes/example.toml" "$WORK/recipes/"
  cp -a "$REPO/fixtures" "$REPO/lockfiles" "$WORK/"
}
