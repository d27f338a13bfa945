# Sourced by the benchmark scripts: `minbase_recipe BENCH` prints the Debian 12 minbase
# recipe (every `Priority: required` package and apt) over the signed mirror in BENCH
# (benches/make-mirror.sh).
minbase_recipe() {
  cat <<EOT
[image]
name = "minbase"
version = "1"
architecture = "amd64"
os = "debian"
release = "bookworm"
source-date-epoch = "archive"

[archive.debian]
url = "file://$1/mirror-signed"
suite = "bookworm"
components = ["main"]
keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

[[layer]]
name = "base"
priority = "required"
packages = ["apt"]
EOT
}
