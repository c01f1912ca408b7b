#!/usr/bin/env bash
# What `make cluster` and `make test-cluster` need beyond the Python packages: PostgreSQL (initdb,
# postgres) and Redis (redis-server). Installs the missing ones with apt-get, and only those; says
# what is missing and exits non-zero when it cannot install them (not root, or no apt-get).
set -euo pipefail

have() {
    command -v "$1" >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/$1" >/dev/null
}

missing=()
have initdb && have postgres || missing+=(postgresql)
have redis-server || missing+=(redis-server)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
echo "cluster: not installed: ${missing[*]} (Debian packages)"
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "cluster: install them as root (apt-get install -y ${missing[*]}), then run this again" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# The packages' own services are not wanted: the cluster starts private ones on free ports.
apt-get install -y -qq --no-install-recommends "${missing[@]}"
for program in initdb postgres redis-server; do
    have "$program" || { echo "cluster: $program still missing after installing ${missing[*]}" >&2; exit 1; }
done
