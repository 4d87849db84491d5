#!/usr/bin/env bash
# Print the path of helm, building it from the Go module proxy first if it is missing
# (about 3.5 minutes on two cores, once per machine; cached in ~/.cache/streamer/bin).
# Usage: HELM=$(.ci/helm.sh)
set -euo pipefail
version="${HELM_VERSION:-v3.22.0}"
# The Kubernetes version helm assumes without a cluster (helm template, helm lint): helm's
# release build derives it from its k8s.io/client-go (v0.37 for v3.22: 1.37); a plain
# `go install` would leave it at 1.20.
kube_minor="${HELM_KUBE_MINOR:-37}"
ldflags="-X helm.sh/helm/v3/internal/version.version=$version"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$kube_minor"
done
exec "$(dirname "$0")/go-tool.sh" helm helm.sh/helm/v3/cmd/helm "$version" "$ldflags"
