#!/usr/bin/env bash
# Run every check ratchetpy has, from a fresh clone: sets up .venv (and chromium, nginx and
# redis-server for the browser, proxy and Redis tests, when missing and we are root with
# apt-get), then ruff, mypy --strict,
# the import-layer contracts, the Autobahn TestSuite subset against examples/echo.py, pytest in
# .venv, the two-minute soak, and pytest (noxfile.py) on every other supported CPython installed
# (3.11 to the newest).
#
#   bash scripts/test.sh            everything
#   AUTOBAHN=0 bash scripts/test.sh skip the Autobahn run (it needs ../shared/autobahn and Python 2.7)
#   OTHER_PYTHONS=0 bash scripts/test.sh   pytest in .venv only, not on the other Pythons
#   SOAK=0 bash scripts/test.sh     skip the two-minute soak (bench/soak.py --minutes 2 --check)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip
# The C accelerator (setup.py) must build here, so that the suite tests it and the Python
# fallback both (tests/protocol/test_masking.py); nox's sessions inherit this too.
export RATCHETPY_BUILD_SPEEDUPS=1
if ! command -v cc > /dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null 2>&1; then
  echo "== installing gcc (apt-get) for the C accelerator"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc > /dev/null
fi
.venv/bin/pip install -q -e ".[test]"

# Programs some tests drive (and php-cli for the PHP publisher): the system Chromium (tests/test_browser*.py, through Playwright,
# no browser download; npm fetches AutobahnJS for it) and nginx (tests/test_nginx.py runs docs/howto/behind-nginx.md's
# configuration). Install what is missing when we can (root with apt-get), in one apt run;
# whatever is present afterwards, its tests must run rather than skip.
have_nginx() { command -v nginx > /dev/null 2>&1 || [ -x /usr/sbin/nginx ]; }
missing=()
command -v chromium > /dev/null 2>&1 || missing+=(chromium)
command -v npm > /dev/null 2>&1 || missing+=(npm)  # fetches AutobahnJS for the browser tests
have_nginx || missing+=(nginx)
have_redis() { command -v redis-server > /dev/null 2>&1 || [ -x /usr/bin/redis-server ]; }
have_redis || missing+=(redis-server)  # tests/io/test_redis.py runs against a real one
have_php() { command -v php > /dev/null 2>&1 && php -m 2> /dev/null | grep -qx curl; }
have_php || missing+=(php-cli php-curl)  # tests/system/test_php_publisher.py runs the PHP client
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get > /dev/null 2>&1; then
    echo "== installing ${missing[*]} (apt-get) for the browser and reverse-proxy tests"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" > /dev/null; } \
      || echo "warning: installing ${missing[*]} failed"
  else
    echo "warning: ${missing[*]} not installed (and we are not root with apt-get): their tests will be skipped"
  fi
fi
if command -v chromium > /dev/null 2>&1; then
  export RATCHETPY_REQUIRE_BROWSER=1
fi
if have_nginx; then
  export RATCHETPY_REQUIRE_NGINX=1
fi
if have_redis; then
  export RATCHETPY_REQUIRE_REDIS=1
fi
if have_php; then
  export RATCHETPY_REQUIRE_PHP=1
fi

echo "== ruff"
.venv/bin/ruff check src tests examples bench fuzz noxfile.py
echo "== mypy --strict"
.venv/bin/mypy --strict src examples
echo "== import layers (lint-imports)"
.venv/bin/lint-imports --no-cache
echo "== docs (sphinx, warnings as errors, internal links checked)"
.venv/bin/sphinx-build -E -W --keep-going -n -q -b html docs docs/_build/html

AUTOBAHN_SCRIPT="../shared/autobahn/run_autobahn.sh"
if [ "${AUTOBAHN:-1}" != "0" ] && [ -f "$AUTOBAHN_SCRIPT" ]; then
  echo "== Autobahn TestSuite (subset) against examples/echo.py"
  port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  .venv/bin/python examples/echo.py --port "$port" > /tmp/ratchetpy-echo-$port.log 2>&1 &
  server=$!
  trap 'kill $server 2>/dev/null || true' EXIT
  .venv/bin/python - "$port" <<'PY'
import socket, sys, time
deadline = time.monotonic() + 30
while True:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("echo server did not start")
        time.sleep(0.1)
PY
  # Groups 1-10 in full, plus a slice of the compression groups 12 and 13 (the full run of
  # those takes many minutes; its result is recorded in docs/conformance.md).
  AUTOBAHN_STRICT=1 AUTOBAHN_AGENT=ratchetpy-ci AUTOBAHN_GROUP_TIMEOUT=600 \
    bash "$AUTOBAHN_SCRIPT" "$port" '1.*' '2.*' '3.*' '4.*' '5.*' '6.*' '7.*' '9.*' '10.*' \
      '12.1.1' '12.1.2' '12.1.3' '12.2.4' '12.4.1' '13.1.1' '13.2.2' '13.3.3' '13.5.1' '13.7.1' \
    | sed 's/^\([0-9]* passed, [0-9]* failed\)$/autobahn: \1/'
  # A graceful stop on SIGTERM must end the server promptly and cleanly.
  kill -TERM "$server"
  wait "$server"
  trap - EXIT
else
  echo "== Autobahn TestSuite skipped (AUTOBAHN=0 or $AUTOBAHN_SCRIPT missing)"
fi

echo "== pytest ($(.venv/bin/python --version))"
.venv/bin/pytest -q

if [ "${SOAK:-1}" != "0" ]; then
  # The soak's two-minute version, with the hour's checks (bench/README.md, "Soak"): about
  # 2,000 clients churning; memory, descriptors, tasks and timers flat and back to idle.
  echo "== soak (2 minutes, bench/soak.py --check)"
  .venv/bin/python bench/soak.py --minutes 2 --check > /dev/null
fi

if [ "${OTHER_PYTHONS:-1}" != "0" ]; then
  default=$(.venv/bin/python -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  echo "== pytest on the other supported Pythons (nox; $default was the run above)"
  RATCHETPY_NOX_SKIP="$default" .venv/bin/nox --no-color -s tests
fi
