#!/usr/bin/env bash
# Installs what sagad needs to build and test, and nothing that is already there.
# Debian packages through apt-get (as root, or via sudo), Python test tools through pip.
# Usage: scripts/deps.sh [build|test|bench]   (test also installs the test-only tools,
# bench the load generator of `make bench`)
set -euo pipefail

mode=${1:-build}

# Each line: a file or command that proves presence, then the Debian package that brings it.
build_pkgs=(
  "/usr/include/yaml.h libyaml-dev"
  "/usr/include/sqlite3.h libsqlite3-dev"
  "/usr/bin/sqlite3 sqlite3"
  "/usr/include/librdkafka/rdkafka.h librdkafka-dev"
  "/usr/include/protobuf-c/protobuf-c.h libprotobuf-c-dev"
  "/usr/bin/protoc-c protobuf-c-compiler"
  "/usr/include/microhttpd.h libmicrohttpd-dev"
  "/usr/include/cjson/cJSON.h libcjson-dev"
  "/usr/include/jq.h libjq-dev"
  "/usr/include/onigposix.h libonig-dev"
  "/usr/include/x86_64-linux-gnu/curl/curl.h libcurl4-openssl-dev"
  "/usr/include/jwt.h libjwt-dev"
  "/usr/bin/dot graphviz"
  "/usr/bin/pkg-config pkg-config"
  "/usr/bin/make make"
  "/usr/bin/gcc gcc"
  "/usr/bin/curl curl"
  "/usr/bin/python3 python3"
)
test_pkgs=(
  "/usr/include/cmocka.h libcmocka-dev"
  "/usr/bin/clang clang"
  "/usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a libclang-rt-14-dev"
  "/usr/bin/clang-format clang-format"
  "/usr/bin/valgrind valgrind"
  "/usr/bin/kcat kcat"
  "/usr/bin/java openjdk-17-jre-headless"
  "/usr/bin/mvn maven"
  "/usr/bin/wrk wrk"
)

wanted=("${build_pkgs[@]}")
if [ "$mode" = test ]; then
  wanted+=("${test_pkgs[@]}")
elif [ "$mode" = bench ]; then
  wanted+=("/usr/bin/wrk wrk")
fi

missing=()
for entry in "${wanted[@]}"; do
  path=${entry%% *}
  pkg=${entry##* }
  [ -e "$path" ] || missing+=("$pkg")
done

# The OpenAPI conformance test's virtualenv needs venv and ensurepip (python3-venv).
if [ "$mode" = test ] && ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  missing+=(python3-venv)
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    sudo=sudo
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$mode" = test ]; then
  # The DSL's JSON Schema is checked with a real JSON Schema implementation.
  if ! python3 -c 'import jsonschema, yaml' 2>/dev/null; then
    echo "deps: installing Python packages jsonschema, PyYAML"
    python3 -m pip install --quiet --disable-pip-version-check 'jsonschema==4.23.0' 'PyYAML==6.0.2' ||
      python3 -m pip install --quiet --break-system-packages 'jsonschema==4.23.0' 'PyYAML==6.0.2'
  fi
  # schemathesis drives the OpenAPI conformance test (tests/openapi); pinned, in a
  # virtualenv of its own so that its many dependencies never meet the system's.
  st_version=4.32.5
  st_venv=${SAGAD_SCHEMATHESIS_VENV:-$HOME/.cache/sagad/schemathesis-venv}
  if ! "$st_venv/bin/schemathesis" --version 2>/dev/null | grep -qF "$st_version"; then
    echo "deps: installing schemathesis $st_version into $st_venv"
    python3 -m venv "$st_venv"
    "$st_venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$st_version"
  fi
fi
