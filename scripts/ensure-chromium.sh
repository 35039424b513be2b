#!/usr/bin/env bash
# The console's browser tests drive Debian's chromium through Playwright (Playwright's own
# browser download does not work here): install it when it is missing.
set -eu
command -v chromium >/dev/null && exit 0
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
$sudo apt-get update -q
$sudo apt-get install -y -q chromium
