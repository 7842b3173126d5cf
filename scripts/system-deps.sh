#!/usr/bin/env bash
# Installs the system packages canarylab's sandbox needs, where they are missing.
# Go is required (the sandbox builds etcd, Kubernetes and kwok from Go modules);
# it is checked here and explained, not installed.
set -euo pipefail

need_apt=()
for pkg in "$@"; do
  command -v "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done

if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "error: missing ${need_apt[*]} and cannot install them (not root, no sudo)." >&2
    echo "       install them with your package manager and re-run." >&2
    exit 1
  fi
  echo "installing ${need_apt[*]} with apt-get…"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v go >/dev/null 2>&1 && [ ! -x /usr/local/go/bin/go ] && [ -z "${CANARYLAB_GO:-}" ]; then
  echo "error: Go is not installed. The sandbox builds etcd, Kubernetes and kwok from their" >&2
  echo "       Go modules: install Go >= 1.24 (tested with 1.26.8) from https://go.dev/dl/" >&2
  echo "       or 'conda install -c conda-forge go', or set CANARYLAB_GO." >&2
  exit 1
fi
