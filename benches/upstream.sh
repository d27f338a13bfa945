# Sourced by the mirror scripts: `upstream_url SUITE` prints the Debian archive this machine's
# apt configuration uses for SUITE — the first `deb` stanza of /etc/apt/sources.list.d/*.sources
# whose `Suites:` names SUITE, else the first `deb` line of a sources.list naming it — or
# $DEBIAN_MIRROR_URL when that is set. The URL is read when the script runs and never written
# down: the repository names no mirror.
upstream_url() {
  local suite=${1:?upstream_url SUITE} url=${DEBIAN_MIRROR_URL:-}
  if [ -z "$url" ]; then
    url=$(awk -v suite="$suite" 'BEGIN { RS = "" }
      /(^|\n)Types:[^\n]*(^| )deb( |\n|$)/ {
        n = split($0, lines, "\n"); uris = ""; found = 0
        for (i = 1; i <= n; i++) {
          if (lines[i] ~ /^URIs:/) { split(lines[i], f, /[ \t]+/); uris = f[2] }
          if (lines[i] ~ /^Suites:/) { m = split(lines[i], s, /[ \t]+/); for (j = 2; j <= m; j++) if (s[j] == suite) found = 1 }
        }
        if (found && uris != "") { print uris; exit }
      }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  fi
  if [ -z "$url" ]; then
    url=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      awk -v suite="$suite" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) while ($i !~ /\]$/) i++; if ($2 ~ /^\[/) i++; if ($(i + 1) == suite) { print $i; exit } }')
  fi
  [ -n "$url" ] || { echo "no apt source for $suite on this machine: set DEBIAN_MIRROR_URL" >&2; return 1; }
  echo "${url%/}"
}
