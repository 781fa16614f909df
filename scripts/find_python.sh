#!/usr/bin/env bash
# Prints the path of a Python >= 3.12: pyenv's versions first (the machine's default python3
# is older), then whatever is on PATH.
set -u
candidates=()
if command -v pyenv >/dev/null 2>&1; then
  root=$(pyenv root)
  for p in $(ls -d "$root"/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -V -r); do candidates+=("$p"); done
fi
for p in python3.14 python3.13 python3.12 python3; do
  command -v "$p" >/dev/null 2>&1 && candidates+=("$(command -v "$p")")
done
for p in "${candidates[@]}"; do
  if "$p" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
    echo "$p"; exit 0
  fi
done
echo "no Python >= 3.12 found (tried pyenv versions and PATH)" >&2
exit 1
