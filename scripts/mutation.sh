#!/usr/bin/env bash
# Mutation testing of the core modules with the non-e2e suite (mutmut, pinned in pyproject.toml's
# `mutation` extra). Not part of CI: it takes minutes per module. Prints the score per module:
# mutants the tests detect / all mutants mutmut generated (none set aside).
#
#   scripts/mutation.sh                 # every module group
#   scripts/mutation.sh badges outbox   # some of them (see scripts/mutation_report.py)
#   MUTATION_JOBS=1 scripts/mutation.sh # fewer test processes (default 2)
#   MUTATION_TMPDIR=/path               # where tests put their files (default /dev/shm)
#
# Uses the active virtualenv's python (or $PYTHON, else python3). mutmut works on a copy of the
# tree in mutants/ (git-ignored), which each run starts afresh.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${PYTHON:-}" ]; then
  py="$PYTHON"
elif [ -n "${VIRTUAL_ENV:-}" ]; then
  py="$VIRTUAL_ENV/bin/python"
else
  py=python3
fi
jobs="${MUTATION_JOBS:-2}"
report=(scripts/mutation_report.py)

# The pinned mutmut from pyproject.toml, installed into this python if it is not there yet.
pin="$("$py" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["mutation"][0])')"
if ! "$py" -c "import importlib.metadata as m, sys; sys.exit(m.version('mutmut') != '${pin#*==}')" 2>/dev/null; then
  echo "mutation: installing $pin" >&2
  "$py" -m pip install -q "$pin"
fi

if [ "$#" -eq 0 ]; then
  mapfile -t groups < <("$py" "${report[@]}" --groups)
else
  groups=("$@")
fi
declare -A patterns
for group in "${groups[@]}"; do
  patterns[$group]="$("$py" "${report[@]}" --patterns "$group")"  # exits on an unknown group
done

# The tests' SQLite files on tmpfs when there is one: with every commit fsynced (as in
# production), disk I/O would otherwise take most of each mutant's test run.
if [ -z "${MUTATION_TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
  MUTATION_TMPDIR=/dev/shm
fi
if [ -n "${MUTATION_TMPDIR:-}" ]; then
  TMPDIR="$(mktemp -d "$MUTATION_TMPDIR/releasebits-mutation.XXXXXX")"
  export TMPDIR
  trap 'rm -rf "$TMPDIR"' EXIT
fi

rm -rf mutants && mkdir mutants
for group in "${groups[@]}"; do
  mapfile -t globs <<<"${patterns[$group]}"
  echo "mutation: $group (${globs[*]}), $jobs at a time" >&2
  if ! "$py" -m mutmut run --max-children "$jobs" "${globs[@]}" >"mutants/$group.log" 2>&1; then
    tail -n 40 "mutants/$group.log" >&2
    echo "mutation: mutmut failed on $group; whole log in mutants/$group.log" >&2
    exit 1
  fi
done
"$py" "${report[@]}" "${groups[@]}"
