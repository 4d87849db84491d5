#!/usr/bin/env bash
# Everything `make test` and `make demo` need on a fresh Debian/Ubuntu machine with only
# Python >= 3.11 and git: system packages, the virtualenv with every extra the tests use,
# the Kafka jars, helm and actionlint. Idempotent; a second run only checks (a few seconds).
#
# System packages are installed with apt-get when running as root; otherwise the script
# prints one line naming the exact command to run, and stops. Each later step keeps a stamp
# (the venv: a hash of pyproject.toml; the jars and the Go tools: their own caches in
# ~/.cache/streamer), so nothing is reinstalled while its inputs are unchanged.
#
# Usage: .ci/setup.sh            (VENV=.venv by default; SETUP_SKIP_GO_TOOLS=1 skips helm
#                                 and actionlint, for `make demo`)
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1
venv="${VENV:-.venv}"
extras="test,dev,deploy,serve,parquet,mlflow,docs,train,spark"
# Go builds helm and actionlint; with GOTOOLCHAIN=auto (Go >= 1.21) it fetches the newer
# toolchain they require from the Go module proxy by itself.
go_min_minor=21

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

python_for_venv() {
  local candidate
  for candidate in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
    [[ -n "$candidate" ]] && command -v "$candidate" >/dev/null || continue
    if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

go_ok() {
  local go="${1:-go}" minor
  minor="$("$go" env GOVERSION 2>/dev/null | sed -nE 's/^go1\.([0-9]+).*/\1/p')"
  [[ -n "$minor" ]] && ((minor >= go_min_minor))
}

find_go() {
  export PATH="$PATH:/usr/local/go/bin"
  command -v go >/dev/null && go_ok go
}

system_packages() {
  local missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || missing+=(maven)
  # kcat sends header names that are not UTF-8 (the hostile-message tests need it).
  command -v kcat >/dev/null || missing+=(kcat)
  # A C compiler for the Avro codec's C part (streamer/codec/_native.c), built by pip.
  command -v cc >/dev/null || missing+=(gcc libc6-dev)
  local py
  if ! py="$(python_for_venv)"; then
    missing+=(python3 python3-venv)
  elif ! "$py" -c 'import ensurepip, venv' 2>/dev/null; then
    missing+=(python3-venv)
  fi
  if [[ -n "${py:-}" ]] && ! "$py" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null; then
    missing+=(python3-dev)  # the C codec includes Python.h
  fi
  if [[ "${SETUP_SKIP_GO_TOOLS:-}" != 1 ]] && ! find_go && ! command -v go >/dev/null; then
    missing+=(golang-go)
  fi
  ((${#missing[@]})) || return 0
  local cmd="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
  if [[ "$(id -u)" != 0 ]]; then
    die "missing system packages (${missing[*]}); run: sudo sh -c '$cmd'"
  fi
  command -v apt-get >/dev/null || die "missing ${missing[*]}: install them with your package manager"
  say "installing ${missing[*]} with apt-get"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

python_env() {
  local py stamp want
  py="$(python_for_venv)" || die "Python >= 3.11 is needed (python3 --version is older)"
  stamp="$venv/.setup-stamp"
  # What the install builds from: the C codec is compiled by pip, so its source counts too.
  want="$(cat pyproject.toml setup.py streamer/codec/_native.c | sha256sum | cut -d' ' -f1) [$extras]"
  if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  say "creating $venv with streamer[$extras] (pip)"
  [[ -x "$venv/bin/python" ]] || "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -e ".[$extras]"
  echo "$want" >"$stamp"
  # The Makefile's own stamps, so `make test-unit` & co. do not reinstall.
  touch "$venv/.installed-streamer" "$venv/.installed-deploy"
}

go_tools() {
  [[ "${SETUP_SKIP_GO_TOOLS:-}" == 1 ]] && return 0
  if ! find_go; then
    die "Go >= 1.$go_min_minor is needed to build helm and actionlint (found: $(go version 2>/dev/null || echo none)); install it from https://go.dev/doc/install (Debian 12: apt-get install -t bookworm-backports golang-1.23-go, then put /usr/lib/go-1.23/bin on PATH)"
  fi
  export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
  .ci/helm.sh >/dev/null
  .ci/actionlint.sh >/dev/null
}

kafka_jars() {
  local out
  if ! out="$("$venv/bin/python" -m streamer.dev.devstack fetch 2>&1)"; then
    die "fetching the Kafka jars from Maven Central failed: $(grep -v '^\s*$' <<<"$out" | tail -1)"
  fi
}

start=$SECONDS
system_packages
python_env
kafka_jars
go_tools
say "ready in $((SECONDS - start))s"
