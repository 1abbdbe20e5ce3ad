#!/bin/sh
# The browser test of `cvae-sdk serve` drives Debian's Chromium through its ChromeDriver.
# Installs both when missing (as root, or through sudo); does nothing when they are there.
set -e
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
run() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
run apt-get update -qq
DEBIAN_FRONTEND=noninteractive run apt-get install -y -qq chromium chromium-driver >/dev/null
