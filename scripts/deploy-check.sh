#!/usr/bin/env bash
# `make deploy-check`: every deployment artefact checked offline, in seconds.
#   1. the PrometheusRule is the current rendering of deploy/prometheus/alerts.yml;
#   2. every overlay of deploy/kubernetes builds with kustomize;
#   3. its built-in kinds pass `kubernetes-validate --strict`, its custom resources (KEDA,
#      Prometheus Operator) the schemas of deploy/kubernetes/schemas;
#   4. `promtool check rules` and `promtool test rules` pass on the alerts.
# The properties of the manifests (Recreate, no Namespace in the base, stream names, ...) are
# tests in tests/deploy, run by pytest. Usage: scripts/deploy-check.sh [VENV]
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${1:-$ROOT/.venv}"
BIN="$VENV/bin"
cd "$ROOT"

"$ROOT/scripts/ensure-tools.sh" "$VENV"

OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

"$BIN/python" scripts/render-prometheusrule.py --check
echo "prometheusrule: up to date with deploy/prometheus/alerts.yml"

for overlay in deploy/kubernetes/overlays/*/; do
  name="$(basename "$overlay")"
  "$BIN/kubectl" kustomize "$overlay" > "$OUT/$name.yaml"
  "$BIN/kubernetes-validate" --strict --quiet --no-warn "$OUT/$name.yaml"
  "$BIN/python" scripts/validate-crds.py "$OUT/$name.yaml" | sed "s/^/overlay $name: /"
  echo "overlay $name: $(grep -c '^kind:' "$OUT/$name.yaml") objects valid"
done

# The files applied by hand, outside every kustomization.
"$BIN/kubernetes-validate" --strict --quiet --no-warn deploy/kubernetes/namespace.yaml \
  deploy/kubernetes/secret.example.yaml deploy/kubernetes/ingress.example.yaml
echo "namespace, secret and ingress examples: valid"

# Prometheus configs without the Operator, with the alerts.yml each loads. Not prometheus.yml:
# Debian's promtool is built without Kubernetes service discovery and refuses its
# kubernetes_sd_configs.
for config in deploy/prometheus/prometheus-local.yml deploy/prometheus/prometheus-compose.yml; do
  promtool check config "$config" >/dev/null
done
echo "prometheus configs: valid"

promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts.test.yml
echo "deploy-check: all passed"
