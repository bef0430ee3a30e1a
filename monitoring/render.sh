#!/usr/bin/env bash
# Render the mixin into the files the repository ships (users without jsonnet take those):
#
#     monitoring/render.sh            rewrite rules/citrix-license.rules.yml, grafana/dashboards/*.json
#     monitoring/render.sh --check    exit 1 (with a diff) when a committed file has drifted
#
# Needs Debian's jsonnet (apt-get install jsonnet) and nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
JSONNET=${JSONNET:-jsonnet}
check=false
[[ ${1:-} == --check ]] && check=true

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mkdir -p "$out/rules" "$out/dashboards"
"$JSONNET" -S monitoring/citrix-license.rules.jsonnet > "$out/rules/citrix-license.rules.yml"
"$JSONNET" -m "$out/dashboards" monitoring/dashboards.jsonnet > /dev/null

status=0
pairs=("$out/rules/citrix-license.rules.yml:rules/citrix-license.rules.yml")
for file in "$out"/dashboards/*.json; do
    pairs+=("$file:grafana/dashboards/$(basename "$file")")
done
for pair in "${pairs[@]}"; do
    new=${pair%%:*} committed=${pair#*:}
    if $check; then
        if ! diff -u --label "$committed (committed)" --label "$committed (rendered)" \
            "$committed" "$new"; then
            echo "$committed has drifted from monitoring/: run monitoring/render.sh" >&2
            status=1
        fi
    else
        cp "$new" "$committed"
        echo "wrote $committed"
    fi
done
if $check && [[ $status == 0 ]]; then
    echo "rules/ and grafana/dashboards/ are up to date with monitoring/"
fi
exit $status
