# From every CLIENT: PRIME is reached by name across the isolated network, and nothing
# routes off it (no default route on the node).
set -e
. /etc/candidate/node
test "$(wget -q -O - http://prime1/value)" = 42
test "$(cat /run/value)" = 42
if ip route | grep -q default; then echo "a default route exists"; exit 1; fi
echo "client $NAME reached prime1 by name"
