// Building an alerting rule from _config: its `for`, `keep_firing_for`, severity and links.
local u = import 'util.libsonnet';

{
  // The links every alert carries. Alerts about one server link the dashboard filtered to it;
  // the exporter's own alerts (fleet) link the whole fleet.
  links(c, name, fleet=false):: {
    runbook_url: u.text('runbookURLBase', c.runbookURLBase) + '#' + std.asciiLower(name),
    dashboard_url: std.rstripChars(c.dashboardURLBase, '/') + '/d/'
                   + u.text('dashboardUID', c.dashboardUID) + '/citrix-license-servers'
                   + (if fleet then '' else '?var-instance={{ $labels.instance }}'),
  },

  // The alert's settings, checked: `for` (required), `keep_firing_for`, and the severity of
  // `band` (null for an alert with one severity).
  settings(c, name, band=null)::
    local key = 'alerts.' + name;
    local entry =
      if !std.objectHas(c.alerts, name) then error '_config.%s is missing' % key
      else c.alerts[name];
    local unknown = std.setDiff(std.set(std.objectFields(entry)), ['for', 'keep_firing_for', 'severity']);
    local sev =
      if !std.objectHas(entry, 'severity') then error '_config.%s.severity is required' % key
      else if band == null then
        if std.isString(entry.severity) then entry.severity
        else error '_config.%s.severity must be one severity (a string)' % key
      else if std.isObject(entry.severity) && std.objectHas(entry.severity, band) then entry.severity[band]
      else error '_config.%s.severity must map the band %s to a severity' % [key, band];
    if unknown != [] then error '_config.%s: unknown keys %s' % [key, std.manifestJson(unknown)]
    else if !std.objectHas(entry, 'for') then error '_config.%s.for is required' % key
    else if !std.member(u.severities, sev) then
      error '_config.%s.severity: %s is not one of %s' % [key, std.manifestJson(sev), std.join(', ', u.severities)]
    else {
      'for': u.duration(key + '.for', entry['for']),
      [if std.objectHas(entry, 'keep_firing_for') then 'keep_firing_for']:
        u.duration(key + '.keep_firing_for', entry.keep_firing_for),
      severity: sev,
    },

  // `for` of the alert in words, for descriptions ("5 minutes").
  forText(c, name)::
    local key = 'alerts.%s.for' % name;
    if !std.objectHas(c.alerts, name) then error '_config.alerts.%s is missing' % name
    else u.spoken(u.duration(key, std.get(c.alerts[name], 'for', error '_config.%s is required' % key))),

  // A multi-line expression ends with a newline, so that YAML shows it as a block.
  expr(text):: if u.contains(text, '\n') then text + '\n' else text,

  alert(c, name, expr, band, summary, description, labels={}, fleet=false)::
    local s = self.settings(c, name, band);
    if u.contains(summary, '{{') || !std.endsWith(summary, '.') then
      error name + ': the summary must be static and end with a period'
    else if !u.contains(description, '$labels.instance') then
      error name + ': the description must name the instance'
    else {
      alert: name,
      expr: $.expr(expr),
      'for': s['for'],
      [if std.objectHas(s, 'keep_firing_for') then 'keep_firing_for']: s.keep_firing_for,
      labels: { severity: s.severity } + labels,
      annotations: { summary: summary, description: description } + $.links(c, name, fleet),
    },

  // Warning from `warningDays` before a date, critical from `criticalDays` before it: two bands
  // under one alert name (kubernetes-mixin's KubeClientCertificateExpiration). `days` is the
  // PromQL for the days left; `criticalFloor` (e.g. ' > 0') ends the critical band at the date,
  // otherwise it keeps firing after the date has passed.
  bands(c, name, days, warningKey, criticalKey, summary, description, criticalFloor='')::
    local warning = u.number(warningKey, c[warningKey]);
    local critical = u.number(criticalKey, c[criticalKey]);
    assert u.ordered(criticalKey, critical, warningKey, warning);
    [
      self.alert(c, name, '%s <= %s > %s' % [days, u.num(warning), u.num(critical)], 'warning', summary, description),
      self.alert(c, name, '%s <= %s%s' % [days, u.num(critical), criticalFloor], 'critical', summary, description),
    ],
}
