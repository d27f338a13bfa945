# On every PRIME: the service answers locally with the value of the overlay.
set -e
test "$(wget -q -O - http://127.0.0.1/value)" = 42
echo "prime $(hostname) serves 42"
