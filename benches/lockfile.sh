# Sourced by the benches: what a lockfile pins, one item per line. A lockfile's `[[package]]`
# tables are flat `key = "value"` lines that `candidate lock` writes in one fixed order, so awk
# reads them without a TOML parser.
lock_files() { # LOCKFILE: the pool path of each package (`filename`)
  awk -F' = ' '/^filename = /{ gsub(/"/, "", $2); print $2 }' "${1:?lock_files LOCKFILE}"
}
lock_names() { # LOCKFILE: the name of each package
  awk -F' = ' '/^\[\[package/{ p = 1 } p && /^name = /{ gsub(/"/, "", $2); print $2; p = 0 }' "${1:?lock_names LOCKFILE}"
}
