#!/usr/bin/env bash
# Checks the alerting and recording rules and the example Alertmanager configuration.
#
#   rules/check.sh            (from any directory; CI runs it, and so does tests/unit/test_rules.py)
#
# Runs every step even after a failure, prints each command before it runs, and exits 1 if any
# step failed. Needs promtool (Prometheus 2.42), amtool (Alertmanager 0.25) and jsonnet (Debian's
# 0.18). Override the tools with PROMTOOL=..., AMTOOL=..., JSONNET=... .
set -u

cd "$(dirname "$0")/.." || exit 1

PROMTOOL=${PROMTOOL:-promtool}
AMTOOL=${AMTOOL:-amtool}
JSONNET=${JSONNET:-jsonnet}
export JSONNET
RULES=rules/citrix-license.rules.yml
AM_CONFIG=examples/alertmanager.yml

failed=()
passed=0

run() {
    echo "+ $*"
    if "$@"; then
        passed=$((passed + 1))
    else
        echo "FAILED (exit $?): $*" >&2
        failed+=("$*")
    fi
    echo
}

for tool in "$PROMTOOL" "$AMTOOL" "$JSONNET"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "missing tool: $tool (apt-get install prometheus prometheus-alertmanager jsonnet)" >&2
        exit 1
    fi
done

# 1. The rules file and the dashboards are what the mixin renders (monitoring/, with jsonnet):
#    no hand edits, no forgotten monitoring/render.sh.
run bash monitoring/render.sh --check

# 2. Syntax, PromQL and template validity, plus promtool's linter (duplicate rules) as errors.
run "$PROMTOOL" check rules --lint=all --lint-fatal "$RULES"

# 3. Unit tests: firing, silent, boundary and scrape-gap cases per alert, recording rules.
run "$PROMTOOL" test rules rules/tests/*.test.yml

# 4. The example Alertmanager configuration loads.
run "$AMTOOL" check-config "$AM_CONFIG"

# 5. Each route delivers where it should (--verify.receivers makes amtool exit 1 otherwise).
route() {
    local expected=$1
    shift
    run "$AMTOOL" config routes test --config.file="$AM_CONFIG" --verify.receivers="$expected" "$@"
}
route pager severity=critical alertname=CitrixLicenseUpdateOverdue instance=ls1
route pager severity=critical alertname=CitrixLicenseExporterDown instance=exporter:9888
route ticket severity=warning alertname=CitrixLicenseUpdateDeadlineApproaching instance=ls1
route ticket severity=warning alertname=CitrixLicenseTelemetryUploadStale instance=ls1
route null severity=info alertname=CitrixLicenseSubscriptionAdvantageEnding instance=ls1
route ticket alertname=AnAlertWithoutSeverity instance=ls1

echo "passed: $passed, failed: ${#failed[@]}"
if ((${#failed[@]})); then
    printf 'failed step: %s\n' "${failed[@]}" >&2
    exit 1
fi
