#!/usr/bin/env bash
# Documented check (README.md): build the snakemake HTML report of a finished run and
# open it in headless Chromium (Debian's `chromium`), saving a screenshot to look at.
#   usage: tests/report/screenshot_report.sh WORKDIR [OUT.png]
# WORKDIR is a directory where the workflow has run (e.g. after `make demo`: the repo).
set -euo pipefail
work=$(cd "${1:?usage: $0 WORKDIR [OUT.png]}" && pwd)
out=${2:-$work/report.png}
repo=$(cd "$(dirname "$0")/../.." && pwd)
if ! command -v chromium >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
fi
"$repo/.venv/bin/snakemake" -s "$repo/Snakefile" -d "$work" --report "$work/report.html"
profile=$(mktemp -d)
# The flags keep Chromium off the network (this machine has none) and out of first-run UI.
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --window-size=1400,1000 --virtual-time-budget=15000 \
  --screenshot="$out" "file://$work/report.html" 2>/dev/null
rm -rf "$profile"
test -s "$out"
echo "report: $work/report.html  screenshot: $out"
