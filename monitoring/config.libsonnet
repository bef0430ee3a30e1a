// The mixin's configuration: every job selector, threshold, duration, link and severity of the
// Citrix License rules and dashboard. Override it, do not edit it:
//
//     (import 'citrix-license-mixin/mixin.libsonnet') + {
//       _config+:: { probeSelector: 'job="citrix"', usageHighRatio: 0.8 },
//     }
//
// Units: *Days are days, *Ratio a fraction (0.9 = 90 %), durations are Prometheus durations
// (5m, 1h). `for` is how long a condition must hold before the alert fires; `keep_firing_for`
// keeps a firing alert firing through scrape gaps (a failed scrape makes the series vanish), so
// one lost scrape neither resolves nor re-fires it. For alerts with bands (warning then
// critical) `for` equals `keep_firing_for`, so that the next band takes over at the very
// evaluation the previous one stops: never silent, never both at once.
//
// The promtool unit tests in rules/tests/ pin these defaults (boundaries, durations, URLs in the
// expected annotations): a changed default fails them on purpose.
{
  _config+:: {
    // -- Jobs ------------------------------------------------------------------------------
    // Label selectors of the documented scrape configuration. Only the `up`-based alerts
    // select by job; every other rule matches the citrix_license_ metrics in any job (their
    // names are this exporter's own).
    probeSelector: 'job="citrix-license"',  // scrapes /probe?target=... (instance = the server)
    exporterSelector: 'job="citrix-license-exporter"',  // scrapes the exporter's own /metrics

    // -- Links -----------------------------------------------------------------------------
    // runbook_url = <runbookURLBase>#<alert name in lower case>. The default is relative to
    // the rendered rules file (rules/citrix-license.rules.yml), so it resolves on any forge
    // that shows the repository; point it at the copy of docs/runbooks.md your on-call
    // people read (an absolute URL) when you deploy.
    runbookURLBase: '../docs/runbooks.md',
    // dashboard_url = <dashboardURLBase>/d/<dashboardUID>/citrix-license-servers?var-instance=...
    // The default '' gives a path relative to the host: set your Grafana's URL
    // (https://grafana.example.com) so that links work from Alertmanager's receivers.
    dashboardURLBase: '',
    dashboardUID: 'citrix-license-fleet',

    // -- Availability ----------------------------------------------------------------------
    // Port roles (citrix_license_port_up{role}) whose loss pages (license checkout stops); any
    // other role is a warning. Keyed on the role, not the number, so a server on non-default
    // ports (targets[].ports) pages just the same.
    criticalPortRoles: ['license_manager', 'vendor_daemon'],  // lmadmin, the CITRIX vendor daemon
    // Windows services (the `service` label: a name of the module's winrm.services) whose loss
    // pages, stopped (CitrixLicenseServiceDown) or, when required, not installed
    // (CitrixLicenseServiceMissing); any other watched service is a warning.
    criticalServices: ['Citrix Licensing'],

    // -- Update deadline -------------------------------------------------------------------
    // Citrix policy (CTX477614): move to each new License Server release within six months.
    // The deadline is a range where the release that starts the clock is known only within
    // bounds (docs/catalog.md "Deadlines as ranges"): earliest and latest possible deadline.
    updateDeadlineWarningDays: 30,  // Approaching, warning: the earliest within this
    updateDeadlineCriticalDays: 7,  // ... critical: even the latest possible deadline within this
    // Past the earliest: CitrixLicenseUpdateOverdue warning (may be late); past the latest:
    // CitrixLicenseUpdateOverdue critical (late even on the latest possible day).

    // -- Release catalog -------------------------------------------------------------------
    // The newest release in the exporter's catalog is older than this: a newer release has
    // probably been missed (9 months = 274 days; Citrix has released several builds a year).
    releaseCatalogStaleDays: 274,
    // CitrixLicenseReleaseCatalogRefreshFailing also fires when the followed catalog sources
    // (catalog.sources) were last all read successfully longer ago than this. Keep it above the
    // exporter's catalog.refresh_interval (default 24h), or a healthy exporter fires between reads.
    releaseCatalogRefreshStaleDays: 3,

    // -- Telemetry -------------------------------------------------------------------------
    telemetryStaleWarningDays: 2,  // no successful upload for longer: warning (uploads run daily)
    telemetryStaleCriticalDays: 7,  // ... critical
    // Targets that report by hand (citrix_license_telemetry_manual 1): the oldest bundle waiting
    // in LS\resource\usage\ is older than this. Citrix documents no interval for manual
    // reporting; 30 days is a local policy choice, not a Citrix rule.
    telemetryManualReportDays: 30,

    // -- Licenses --------------------------------------------------------------------------
    licenseExpiryWarningDays: 30,
    licenseExpiryCriticalDays: 7,  // also keeps firing after the expiry until the file is removed
    subscriptionAdvantageWarningDays: 60,  // Subscription Advantage / Customer Success Services
    usageHighRatio: 0.9,  // CitrixLicenseUsageHigh (warning) from here ...
    usageFullRatio: 1.0,  // ... CitrixLicenseUsageFull (critical) from here
    // Usage and CitrixLicenseOverdraftInUse compare with citrix_license_purchased: the exporter
    // derives it from WMI Count and Overdraft per its module's winrm.count_includes_overdraft
    // (default true, from public evidence: docs/assumptions.md, "Overdraft"), not here.
    //
    // CitrixLicenseExhaustionPredicted: predict_linear over `exhaustionLookback` of use
    // reaches the installed count (WMI Count, the licenses that can be checked out) within
    // `exhaustionHorizonDays`. It waits for `exhaustionMinHistory` of data first: a lookback
    // that holds only a morning's logons would extrapolate the ramp-up.
    exhaustionLookback: '1w',
    exhaustionHorizonDays: 14,
    exhaustionMinHistory: '6d',

    // -- Delivery Controller site ----------------------------------------------------------
    // Site states (citrix_license_site_license_server_status{status}).
    siteReadyStatuses: ['LasCompatible', 'Compatible'],  // anything else except caching: not ready
    siteCachingStatuses: ['Inaccessible'],  // the site cannot reach the License Server: caching

    // -- Certificate -----------------------------------------------------------------------
    certificateWarningDays: 30,  // Web Services for Licensing (port 8083) certificate
    certificateCriticalDays: 7,  // also keeps firing after the expiry

    // -- Per alert -------------------------------------------------------------------------
    // `for`, `keep_firing_for` (optional) and `severity`. An alert with bands has one severity
    // per band, each band named after its default severity: override
    // { CitrixLicensePortDown+: { severity+: { warning: 'info' } } } to demote the other ports.
    alerts: {
      CitrixLicenseExporterDown: { 'for': '5m', severity: 'critical' },
      CitrixLicenseExporterConfigReloadFailed: { 'for': '5m', keep_firing_for: '10m', severity: 'warning' },
      CitrixLicenseProbeFailed: { 'for': '5m', severity: 'warning' },
      CitrixLicenseServerUnreachable: { 'for': '5m', keep_firing_for: '10m', severity: 'critical' },
      CitrixLicenseCollectorFailing: { 'for': '15m', keep_firing_for: '10m', severity: 'warning' },
      // Critical port roles, then the others.
      CitrixLicensePortDown: { 'for': '5m', keep_firing_for: '10m', severity: { critical: 'critical', warning: 'warning' } },
      // Service states come from the WinRM collector, cached 15 minutes: `for` longer than the
      // cache interval needs two fetches in a row to see the service stopped.
      CitrixLicenseServiceDown: { 'for': '20m', keep_firing_for: '20m', severity: { critical: 'critical', warning: 'warning' } },
      CitrixLicenseServiceMissing: { 'for': '20m', keep_firing_for: '20m', severity: { critical: 'critical', warning: 'warning' } },
      CitrixLicenseUpdateDeadlineApproaching: { 'for': '30m', keep_firing_for: '30m', severity: { warning: 'warning', critical: 'critical' } },
      // warning: may be late (past the earliest possible deadline); critical: late on any day.
      CitrixLicenseUpdateOverdue: { 'for': '30m', keep_firing_for: '30m', severity: { warning: 'warning', critical: 'critical' } },
      CitrixLicenseVersionUnknown: { 'for': '30m', keep_firing_for: '30m', severity: 'warning' },
      CitrixLicenseReleaseCatalogStale: { 'for': '1h', keep_firing_for: '30m', severity: 'warning' },
      // A failed refresh is retried only after catalog.refresh_interval (24h), so one failure
      // holds the 0 that long: `for` only lets a reload that fixes the source clear it without
      // a ticket.
      CitrixLicenseReleaseCatalogRefreshFailing: { 'for': '1h', keep_firing_for: '30m', severity: 'warning' },
      CitrixLicenseTelemetryUploadFailing: { 'for': '30m', keep_firing_for: '30m', severity: 'warning' },
      CitrixLicenseTelemetryUploadStale: { 'for': '30m', keep_firing_for: '30m', severity: { warning: 'warning', critical: 'critical' } },
      CitrixLicenseTelemetryManualReportDue: { 'for': '30m', keep_firing_for: '30m', severity: 'warning' },
      CitrixLicenseCloudNotCompliant: { 'for': '1h', keep_firing_for: '30m', severity: 'warning' },
      // The Citrix Cloud list is fetched once per cloud.cache_interval (15m): 1h is four fetches.
      CitrixLicenseCloudNotListed: { 'for': '1h', keep_firing_for: '30m', severity: 'warning' },
      CitrixLicenseExpiring: { 'for': '30m', keep_firing_for: '30m', severity: { warning: 'warning', critical: 'critical' } },
      // warning until the date; info after it (a lapsed date is a commercial state that may be
      // intended, not a fault to page or ticket about forever).
      CitrixLicenseSubscriptionAdvantageEnding: { 'for': '30m', keep_firing_for: '30m', severity: { warning: 'warning', info: 'info' } },
      CitrixLicenseUsageHigh: { 'for': '15m', keep_firing_for: '15m', severity: 'warning' },
      CitrixLicenseUsageFull: { 'for': '15m', keep_firing_for: '15m', severity: 'critical' },
      CitrixLicenseOverdraftInUse: { 'for': '15m', keep_firing_for: '15m', severity: 'warning' },
      // The prediction moves with every WinRM fetch (15m): an hour of agreement before a
      // ticket, an hour of grace before it resolves.
      CitrixLicenseExhaustionPredicted: { 'for': '1h', keep_firing_for: '1h', severity: 'warning' },
      // critical: supplemental grace (all licenses in use); warning: out-of-box grace.
      CitrixLicenseGracePeriodActive: { 'for': '5m', keep_firing_for: '15m', severity: { critical: 'critical', warning: 'warning' } },
      CitrixLicenseActivationServiceNotReady: { 'for': '30m', keep_firing_for: '15m', severity: 'warning' },
      CitrixLicenseCachingModeActive: { 'for': '5m', keep_firing_for: '15m', severity: 'critical' },
      CitrixLicenseWebCertificateExpiring: { 'for': '30m', keep_firing_for: '30m', severity: { warning: 'warning', critical: 'critical' } },
    },
  },
}
