#!/bin/bash
# apt-agreement.sh — does our resolver choose what apt chooses?
# For each request, `candidate lock` of a one-layer recipe (priority = "required" plus the
# request) is compared with `apt-get -s install --no-install-recommends` of the same names
# (every Priority: required package of the index, plus the request) in an isolated apt root
# with an empty dpkg status, against the same signed index. Prints, per request, the sizes
# of both sets and any package (name version arch) on one side only; exits 1 on a mismatch.
# Usage: benches/apt-agreement.sh [ARCHIVE_URL] [SUITE] [KEYRING]
#   default archive: file:///tmp/bench/mirror-signed (benches/make-mirror.sh),
#   which holds the whole bookworm main index; only the index is read, no package.
set -euo pipefail
URL=${1:-file:///tmp/bench/mirror-signed}
SUITE=${2:-bookworm}
KEYRING=${3:-/usr/share/keyrings/debian-archive-keyring.gpg}
ARCH=$(dpkg --print-architecture)
BIN=${BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release/candidate}
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
BIN=$(realpath "$BIN") # the script changes directory before it runs it
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
REQUESTS=(
  "apt"
  "nginx"
  "openssh-server"
  "python3 python3-yaml python3-requests python3-jinja2"
  "apache2 libapache2-mod-php"
  "postgresql"
)

# An isolated apt root that knows only this archive.
A=$W/apt; mkdir -p $A/etc/apt/sources.list.d $A/etc/apt/preferences.d $A/etc/apt/apt.conf.d $A/var/lib/apt/lists/partial $A/var/cache/apt/archives/partial $A/var/lib/dpkg
: > $A/var/lib/dpkg/status
echo "deb [arch=$ARCH signed-by=$KEYRING] $URL $SUITE main" > $A/etc/apt/sources.list.d/a.list
APT=(-o Dir=$A -o Dir::State::status=$A/var/lib/dpkg/status -o Dir::Etc::SourceList=$A/etc/apt/sources.list.d/a.list
     -o Dir::Etc::SourceParts=- -o Dir::Etc::Parts=$A/etc/apt/apt.conf.d -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=$A/etc/apt/preferences.d -o APT::Sandbox::User=root -o APT::Architecture=$ARCH -o APT::Architectures=$ARCH -o Debug::NoLocking=1
     -o APT::Install-Recommends=false -o Acquire::Languages=none -o Acquire::Check-Valid-Until=false)
# only the Packages index: a host's apt.conf.d may enable DEP-11 or Contents targets the mirror lacks
for t in DEP-11 DEP-11-icons DEP-11-icons-small DEP-11-icons-hidpi Contents-deb; do
  APT+=(-o Acquire::IndexTargets::deb::$t::DefaultEnabled=false)
done
# (a host apt.conf.d may ask for extra index targets, e.g. DEP-11, that the mirror lacks)
apt-get "${APT[@]}" -q update >/dev/null 2>&1 || true
ls $A/var/lib/apt/lists/*Packages* >/dev/null || { echo "apt could not read the index" >&2; exit 2; }
REQUIRED=$(apt-cache "${APT[@]}" dumpavail | awk '/^Package:/{p=$2} /^Priority: required/{print p}' | sort -u | tr '\n' ' ')

status=0
for request in "${REQUESTS[@]}"; do
  mkdir -p $W/p/recipes
  items=$(printf '"%s", ' $request)
  cat > $W/p/recipes/r.toml <<EOF
[image]
name = "agree"
version = "1"
architecture = "$ARCH"
os = "debian"
release = "$SUITE"
source-date-epoch = "archive"
[archive.a]
url = "$URL"
suite = "$SUITE"
components = ["main"]
keyring = "$KEYRING"
[[layer]]
name = "l"
priority = "required"
packages = [${items%, }]
EOF
  (cd $W/p && "$BIN" -q --store $W/store lock recipes/r.toml)
  awk -F' = ' '/^\[\[package/{p=1} p&&/^name/{n=$2} p&&/^version/{v=$2} p&&/^architecture/{print n, v, $2; p=0}' $W/p/lockfiles/r.lock | tr -d '"' | sort > $W/ours
  apt-get "${APT[@]}" -s install $REQUIRED $request 2>/dev/null | awk '/^Inst /{gsub(/[()\[\]]/,""); print $2, $3, $NF}' | sort > $W/theirs
  if diff -q $W/ours $W/theirs >/dev/null; then
    echo "agree   [$request] $(wc -l < $W/ours) packages"
  else
    status=1
    echo "DIFFER  [$request] ours $(wc -l < $W/ours), apt $(wc -l < $W/theirs):"
    diff $W/ours $W/theirs | grep '^[<>]' | sed 's/^</  only ours:/; s/^>/  only apt: /'
  fi
done
exit $status
