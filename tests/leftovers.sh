#!/usr/bin/env bash
# tests/leftovers.sh snapshot FILE | check FILE
# What the test suite may leave behind if a test forgets to clean up: network links (bridges,
# veths), LXC containers, mounts, and processes of the tools the tests start. `.ci/run` takes a
# snapshot before `cargo test` and checks after it: anything new is listed and fails the run.
set -euo pipefail
mode=${1:?usage: leftovers.sh snapshot|check FILE}
file=${2:?usage: leftovers.sh snapshot|check FILE}

state() {
  echo "## links"
  ip -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | sort
  echo "## lxc containers"
  if command -v lxc-ls >/dev/null; then lxc-ls -1 2>/dev/null | sort; fi
  echo "## mounts"
  awk '{ print $5 }' /proc/self/mountinfo | grep -E '^/(tmp|dev/shm|var/lib/lxc|root/.cache)' | sort || true
  echo "## processes"
  ps -eo comm= | grep -E '^(lxc-start|lxc-monitord|lxd|docker-registry|systemd-nspawn|conmon|runc|candidate|busybox|httpd)$' | sort || true
}

case "$mode" in
  snapshot) state > "$file" ;;
  check)
    now=$(mktemp)
    state > "$now"
    # Lines present now and not before (comm needs sorted input per section; compare whole lists).
    new=$(diff <(sort "$file") <(sort "$now") | sed -n 's/^> //p' | grep -v '^##' || true)
    rm -f "$now"
    if [ -n "$new" ]; then
      echo "the test suite left these behind:" >&2
      echo "$new" >&2
      exit 1
    fi
    echo "no container, link, mount or process left behind by the tests"
    ;;
  *) echo "usage: leftovers.sh snapshot|check FILE" >&2; exit 2 ;;
esac
