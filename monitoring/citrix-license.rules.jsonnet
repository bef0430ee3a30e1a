// rules/citrix-license.rules.yml as the repository ships it: the recording rules and the
// alerts in one file, with a header. Render: monitoring/render.sh (or
//   jsonnet -S monitoring/citrix-license.rules.jsonnet > rules/citrix-license.rules.yml).
local mixin = import 'mixin.libsonnet';

|||
  # GENERATED from the monitoring mixin (monitoring/, _config in monitoring/config.libsonnet):
  # do not edit by hand. Change _config or override it (docs/mixin.md), run monitoring/render.sh,
  # then rules/check.sh. Runbooks: docs/runbooks.md (one section per alert). Tests: rules/tests/.
||| + std.manifestYamlDoc(
  { groups: mixin.prometheusRules.groups + mixin.prometheusAlerts.groups },
  indent_array_in_object=false,
  quote_keys=false,
) + '\n'
