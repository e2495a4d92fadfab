#!/usr/bin/env bash
# Roll an image out to a Kubernetes namespace: secret, migration, then the API.
#   deploy/rollout.sh ghcr.io/OWNER/attrition:TAG NAMESPACE
# Needs kubectl on PATH and KUBECONFIG. When DATABASE_URL (the service's role) is set, it and
# ATTRITION_ADMIN_DATABASE_URL (the role owning the tables) are (re)written into the Secret
# attrition-db (keys url and admin-url) first; otherwise that Secret must already exist.
set -euo pipefail
usage="usage: deploy/rollout.sh IMAGE:TAG NAMESPACE"
image=${1:?$usage}
namespace=${2:?$usage}
[[ "${image##*/}" == *:* ]] || { echo "$usage (the image needs a tag)" >&2; exit 2; }
if [ -n "${DATABASE_URL:-}" ] && [ -z "${ATTRITION_ADMIN_DATABASE_URL:-}" ]; then
  echo "DATABASE_URL is set but ATTRITION_ADMIN_DATABASE_URL is not: the Secret needs both" \
    "(the service's role and the tables' owner, docs/DEPLOYMENT.md)" >&2
  exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
overlay="$(mktemp -d)"
trap 'rm -rf "$overlay"' EXIT

# An overlay of deploy/k8s that pins the namespace and the image of both workloads.
cp -r "$here/k8s" "$overlay/base"
cat >"$overlay/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: $namespace
resources:
  - base
images:
  - name: ghcr.io/technova/attrition
    newName: ${image%:*}
    newTag: ${image##*:}
YAML

kube() { kubectl --namespace "$namespace" "$@"; }

if [ -n "${DATABASE_URL:-}" ]; then
  kube create secret generic attrition-db --from-literal=url="$DATABASE_URL" \
    --from-literal=admin-url="$ATTRITION_ADMIN_DATABASE_URL" \
    --dry-run=client -o yaml | kube apply -f -
fi

# 1. Migrate with the new image, alone; the running API keeps serving the old code.
kube delete job attrition-migrate --ignore-not-found --wait=true
kube apply -k "$overlay" --selector app.kubernetes.io/component=migration
if ! kube wait --for=condition=complete --timeout=600s job/attrition-migrate; then
  kube logs job/attrition-migrate --tail=100 || true
  echo "migration failed: the API was not touched" >&2
  exit 1
fi

# 2. Roll the API (maxUnavailable 0: old pods serve until new ones are ready) and apply the
#    rest (the purge CronJob runs the new image from its next schedule).
kube apply -k "$overlay"
kube rollout status deployment/attrition --timeout=600s
