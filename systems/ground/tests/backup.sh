# On every BACKUP: it waited for PRIME by itself and holds its value.
set -e
test "$(cat /srv/backup/value)" = 42
echo "backup $(hostname) holds 42"
