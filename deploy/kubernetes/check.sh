#!/usr/bin/env bash
# Renders every overlay with `kubectl kustomize` and validates the result
# strictly against a current Kubernetes schema (kubernetes-validate, from
# the Python package registry, works offline). No cluster is needed.
set -euo pipefail
cd "$(dirname "$0")"
command -v kubectl >/dev/null || { echo "kubectl is needed to render the overlays" >&2; exit 1; }
if ! command -v kubernetes-validate >/dev/null; then
    pip install --quiet kubernetes-validate
fi
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for overlay in overlays/*/; do
    name="$(basename "$overlay")"
    kubectl kustomize "$overlay" > "$out/$name.yaml"
    kubernetes-validate --strict --quiet "$out/$name.yaml"
    echo "deploy/kubernetes/overlays/$name: $(grep -c '^kind:' "$out/$name.yaml") resources valid"
done
