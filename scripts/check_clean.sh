#!/usr/bin/env bash
# Fails when the test suite changed the checkout: every file a test writes belongs in a
# temporary folder.  Compares `git status --ignored` (so a stray gateway.db or log counts
# too) with the state saved before the run; __pycache__ and build output do not count.
set -u
before=${1:?usage: check_clean.sh FILE-WITH-STATUS-BEFORE}
git rev-parse --is-inside-work-tree >/dev/null 2>&1 || exit 0   # not a git checkout
after=$(git status --porcelain --ignored)
new=$(comm -13 <(sort "$before") <(echo "$after" | sort) | grep -v -E '__pycache__|\.egg-info/|^$' )
if [ -n "$new" ]; then
  echo "the test suite left files in the checkout (a test must write to a temporary folder):" >&2
  echo "$new" >&2
  exit 1
fi
echo "checkout clean after the tests"
