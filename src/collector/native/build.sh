#!/usr/bin/env bash
# Builds the collector's batch-receive addon: build.sh NODE_API_INCLUDE_DIR OUTPUT.
# One command for `make native` and the image's build stage.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$(dirname "$2")"
cc -O2 -Wall -Wextra -Werror -shared -fPIC -pthread -I"$1" "$here/batch-udp.c" -o "$2"
