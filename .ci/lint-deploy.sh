#!/usr/bin/env bash
# Offline checks of the deployment files (`make lint-deploy`): no cluster, no Docker engine.
# helm and actionlint come from .ci/helm.sh and .ci/actionlint.sh (built once per machine);
# the Python tools from the `deploy` extra in $VENV (default .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${VENV:-.venv}"
helm="$(.ci/helm.sh)"
actionlint="$(.ci/actionlint.sh)"
out=build/deploy
mkdir -p "$out"

step() { printf '\n--- %s\n' "$*"; }

step "helm lint --strict (defaults; KEDA + ServiceMonitor)"
"$helm" lint --strict helm/streamer
"$helm" lint --strict helm/streamer --set keda.enabled=true --set serviceMonitor.enabled=true

step "helm template, then the manifests against the Kubernetes schemas"
"$helm" template streamer helm/streamer >"$out/default.yaml"
"$helm" template streamer helm/streamer --set keda.enabled=true \
  --set serviceMonitor.enabled=true --set prometheusRule.enabled=true >"$out/keda.yaml"
# ScaledObject, ServiceMonitor and PrometheusRule have no schema here (WARN): tests/deploy
# validates them against the CRDs vendored in tests/fixtures/crds/.
"$venv/bin/kubernetes-validate" --strict --quiet "$out/default.yaml" "$out/keda.yaml"

step "docker-compose.yml: Compose Specification schema, then docker compose's own parser"
"$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml
"$venv/bin/docker-compose" -f docker-compose.yml config --quiet && echo "docker compose config: ok"

step ".github/workflows/{ci,models}.yml: actionlint and the GitHub workflow schema"
"$actionlint" .github/workflows/ci.yml .github/workflows/models.yml && echo "actionlint: ok"
"$venv/bin/check-jsonschema" --builtin-schema vendor.github-workflows \
  .github/workflows/ci.yml .github/workflows/models.yml

step "tests/deploy: CRDs, rendered settings, dashboard, Dockerfile, .dockerignore"
"$venv/bin/python" -m pytest -q tests/deploy
