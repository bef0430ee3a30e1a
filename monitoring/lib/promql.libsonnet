// PromQL and template pieces shared by alerts, recording rules and the dashboard.
local u = import 'util.libsonnet';

{
  INSTANCE:: ['job', 'instance'],
  DAYS_VALUE:: '{{ printf "%.1f" $value }}',
  IN_DAYS:: '{{ if gt $value 0.0 }}in {{ printf "%.1f" $value }} days{{ else }}already past{{ end }}',
  // In use over purchased (citrix_license_purchased: WMI Count without the overdraft
  // allowance, docs/assumptions.md), so 1 means every bought license is in use and above 1
  // overdraft is.
  USAGE_RATIO:: std.rstripChars(|||
    sum by (job, instance, feature) (citrix_license_in_use)
    /
    (sum by (job, instance, feature) (citrix_license_purchased) > 0)
  |||, '\n'),

  // The update deadline as a range (docs/catalog.md "Deadlines as ranges"): the earliest and
  // the latest possible instant from which the server is overdue. The last day on time is the
  // day before; PromQL subtracts the day, the template prints the date only.
  DEADLINE:: 'citrix_license_server_update_deadline_timestamp_seconds',
  DEADLINE_LATEST:: 'citrix_license_server_update_deadline_latest_timestamp_seconds',
  DEADLINE_LABELS:: ['job', 'instance', 'rule'],
  SAME_DEADLINE:: 'on (job, instance, rule)',

  // A template printing the License Server's version and build (or `default`).
  versionText(default)::
    u.lookup('citrix_license_server_infoSEL', self.INSTANCE,
             'label "version" }} build {{ . | first | label "build"', default),

  // A template printing the last day on time (YYYY-MM-DD) before `metric`'s instant.
  lastDay(metric, labels=$.DEADLINE_LABELS)::
    u.lookup('%sSEL - %d' % [metric, u.DAY], labels,
             'value | humanizeTimestamp | reReplaceAll " .*" ""', 'an unknown day'),

  // 'update by D' when the deadline is exact, 'update between D1 and D2' when the catalog
  // knows the release that starts the clock only within bounds.
  updateRange(labels=$.DEADLINE_LABELS)::
    local sel = u.selectorOf(labels);
    local args = u.argsOf(labels);
    local wider = '%s%s - %s%s > 0' % [$.DEADLINE_LATEST, sel, $.DEADLINE, sel];
    '{{ if printf "' + wider + '" ' + args + ' ' + args + ' | query }}'
    + 'update between %s and %s' % [self.lastDay($.DEADLINE, labels), self.lastDay($.DEADLINE_LATEST, labels)]
    + '{{ else }}update by %s{{ end }}' % self.lastDay($.DEADLINE_LATEST, labels),
}
