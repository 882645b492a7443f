#!/usr/bin/env bash
# Make sure the tools of `make deploy-check` are installed, installing what is missing:
#   - kubectl (for `kubectl kustomize`) and kubernetes-validate, pinned in
#     scripts/deploy-tools.txt, into the virtualenv given as $1 (default .venv);
#   - promtool, from Debian's `prometheus` package (apt-get), when it is not on PATH.
# Prints nothing when everything is there; safe to run again.
set -euo pipefail

VENV="${1:-.venv}"
HERE="$(cd "$(dirname "$0")" && pwd)"
REQS="$HERE/deploy-tools.txt"
STAMP="$VENV/.deploy-tools"

if [ ! -x "$VENV/bin/pip" ]; then
  echo "no virtualenv at $VENV: run 'make .venv/.installed' first" >&2
  exit 1
fi
if [ ! -f "$STAMP" ] || [ "$REQS" -nt "$STAMP" ] || [ ! -x "$VENV/bin/kubectl" ] \
    || [ ! -x "$VENV/bin/kubernetes-validate" ]; then
  echo "installing $(grep -v '^#' "$REQS" | xargs) into $VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQS"
  touch "$STAMP"
fi

if ! command -v promtool >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "promtool is missing and there is no apt-get: install Prometheus's promtool" >&2
    exit 1
  fi
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "installing promtool (Debian package prometheus)" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Only the package: no daemon is started (policy-rc.d or no init in containers; the unit is
  # not needed). Refresh the package lists once if the first attempt cannot find it.
  $sudo apt-get install -y -q --no-install-recommends prometheus >/dev/null \
    || { $sudo apt-get update -q >/dev/null && \
         $sudo apt-get install -y -q --no-install-recommends prometheus >/dev/null; }
  command -v promtool >/dev/null 2>&1 || { echo "promtool still missing after install" >&2; exit 1; }
fi
