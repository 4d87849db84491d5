#!/usr/bin/env bash
# Print the path of promtool (Prometheus's rule checker and rule unit-test runner), building
# it from the Go module proxy first if it is missing (19 minutes on two busy cores, once per
# machine; cached in ~/.cache/streamer/bin). PROMTOOL_VERSION overrides the version.
# Usage: PROMTOOL=$(.ci/promtool.sh)
set -euo pipefail
version="${PROMTOOL_VERSION:-v0.316.0}"
exec "$(dirname "$0")/go-tool.sh" promtool github.com/prometheus/prometheus/cmd/promtool "$version"
