// The alerting rules, one group per concern, built from _config.
local availability = import 'availability.libsonnet';
local compliance = import 'compliance.libsonnet';
local exporter = import 'exporter.libsonnet';
local licenses = import 'licenses.libsonnet';
local site = import 'site.libsonnet';

{
  prometheusAlerts+:: {
    local c = $._config,
    local groups = [
      exporter.group(c),
      availability.group(c),
      compliance.group(c),
      licenses.group(c),
      site.group(c),
    ],
    // Every alert _config.alerts lists has a rule (a renamed alert leaves no stale setting).
    local used = std.set([r.alert for g in groups for r in g.rules]),
    local extra = std.setDiff(std.set(std.objectFields(c.alerts)), used),
    groups+: if extra == [] then groups
    else error '_config.alerts: alerts with no rule: %s' % std.manifestJson(extra),
  },
}
