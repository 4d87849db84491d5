#!/usr/bin/env bash
# Print the path of helm, building it from the Go module proxy first if it is missing
# (about 3.5 minutes on two cores, once per machine; cached in ~/.cache/streamer/bin).
# HELM_VERSION overrides the version. Usage: HELM=$(.ci/helm.sh)
set -euo pipefail
version="${HELM_VERSION:-v3.22.0}"
# Stamp the real version into the binary, as helm's release build does.
exec "$(dirname "$0")/go-tool.sh" helm helm.sh/helm/v3/cmd/helm "$version" \
  "-X helm.sh/helm/v3/internal/version.version=$version"
