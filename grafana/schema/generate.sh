#!/usr/bin/env bash
# Regenerate dashboard.schema.json: a JSON Schema of Grafana's dashboard model, generated from
# the TypeScript types Grafana publishes in @grafana/schema (the same types Grafana's frontend
# compiles against), so tests/unit/test_dashboard.py can validate the dashboard without a
# Grafana server.
#
#     grafana/schema/generate.sh            # rewrite dashboard.schema.json
#     grafana/schema/generate.sh --check    # exit 1 if the committed file differs
#
# Versions are pinned in package.json and package-lock.json (this folder). To move to a newer
# Grafana: bump "@grafana/schema" in package.json, run `npm install --package-lock-only` here,
# then this script, and commit all three files.
#
# Needs node and npm (the npm registry is reached through npm itself). ts-json-schema-generator
# 2.10 declares node >= 22 but generates this schema correctly on node 20 (Debian's); npm only
# warns. Everything is installed into a temporary folder that is removed afterwards.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
out="$here/dashboard.schema.json"
check=false
[[ "${1:-}" == "--check" ]] && check=true

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$here/package.json" "$here/package-lock.json" "$work/"
(
  cd "$work"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
  npx --no-install ts-json-schema-generator \
    --path node_modules/@grafana/schema/dist/types/raw/dashboard/x/types.gen.d.ts \
    --type Dashboard --no-type-check --additional-properties \
    -o dashboard.schema.json
)

if $check; then
  if ! cmp -s "$work/dashboard.schema.json" "$out"; then
    echo "grafana/schema/dashboard.schema.json is out of date: run grafana/schema/generate.sh" >&2
    exit 1
  fi
  echo "dashboard.schema.json is up to date"
else
  cp "$work/dashboard.schema.json" "$out"
  echo "wrote $out"
fi
