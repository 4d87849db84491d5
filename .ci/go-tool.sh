#!/usr/bin/env bash
# Usage: .ci/go-tool.sh NAME PACKAGE VERSION [LDFLAGS]
# Print the path of the Go command NAME at VERSION, building it from the Go module proxy
# (`go install PACKAGE@VERSION`) when the cached binary is missing or of another version.
#
# Binaries are cached outside the repository, in ~/.cache/streamer/bin (or under
# $STREAMER_DEV_CACHE / $XDG_CACHE_HOME, like the Kafka jars), so each is built once per
# machine. Progress goes to stderr; stdout is only the path: TOOL=$(.ci/go-tool.sh ...).
set -euo pipefail

name="$1" package="$2" version="$3" ldflags="${4:-}"
cache="${STREAMER_DEV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/streamer}"
bin_dir="$cache/bin"
tool="$bin_dir/$name"
stamp="$bin_dir/.$name-version"

if [[ -x "$tool" && -f "$stamp" && "$(cat "$stamp")" == "$package@$version $ldflags" ]]; then
  echo "$tool"
  exit 0
fi

export PATH="$PATH:/usr/local/go/bin"
if ! command -v go >/dev/null; then
  echo "go-tool.sh: no Go toolchain (go) on PATH; install Go >= 1.24 to build $name $version" >&2
  exit 1
fi

mkdir -p "$bin_dir"
tmp="$(mktemp -d "$bin_dir/.build-$name.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
echo "go-tool.sh: building $name $version with $(go version) (once per machine)..." >&2
start=$SECONDS
GOBIN="$tmp" GOFLAGS="${GOFLAGS:-} -buildvcs=false" CGO_ENABLED=0 \
  go install -ldflags "-s -w $ldflags" "$package@$version" >&2
mv -f "$tmp/$(basename "$package")" "$tool"
echo "$package@$version $ldflags" >"$stamp"
echo "go-tool.sh: built $name $version in $((SECONDS - start))s -> $tool" >&2
echo "$tool"
