#!/usr/bin/env bash
# Print the path of actionlint (the GitHub Actions workflow linter), building it from the
# Go module proxy first if it is missing (under a minute, once per machine).
# ACTIONLINT_VERSION overrides the version. Usage: ACTIONLINT=$(.ci/actionlint.sh)
set -euo pipefail
version="${ACTIONLINT_VERSION:-v1.7.12}"
exec "$(dirname "$0")/go-tool.sh" actionlint github.com/rhysd/actionlint/cmd/actionlint \
  "$version" "-X github.com/rhysd/actionlint.version=$version"
