#!/usr/bin/env bash
# Fetch AutobahnJS (npm package autobahn-browser: the browser build of npm "autobahn") into
# .cache/autobahn-js/, for tests/test_browser_wamp.py, which loads it into headless Chromium.
# Nothing of it is committed: it is fetched from the npm registry at test time, pinned.
#
#   bash scripts/fetch-autobahn-js.sh     prints the path of autobahn.min.js
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VERSION=22.11.1
dest=".cache/autobahn-js/$VERSION"
if [ ! -f "$dest/autobahn.min.js" ]; then
  command -v npm > /dev/null 2>&1 || { echo "npm is not installed" >&2; exit 1; }
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "autobahn-browser@$VERSION" > /dev/null 2>&1 && tar xzf "autobahn-browser-$VERSION.tgz")
  mkdir -p "$dest"
  cp "$tmp/package/autobahn.min.js" "$tmp/package/LICENSE" "$dest/" 2>/dev/null \
    || cp "$tmp/package/autobahn.min.js" "$dest/"
fi
echo "$PWD/$dest/autobahn.min.js"
