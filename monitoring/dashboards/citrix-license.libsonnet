// The fleet dashboard, grafana/dashboards/citrix-license.json. Its colour thresholds come from
// _config, the values at which the alerts fire: a panel turns orange and red when they do.
// Queries stay within what Prometheus 2.42 accepts (tests run every one of them against the
// real Prometheus 2.42 that scraped the exporter and a simulated fleet).
local g = import '../lib/grafana.libsonnet';
local u = import '../lib/util.libsonnet';

local SEL = 'job=~"$job", instance=~"$instance"';
local EXPORTER_SEL = 'job=~"$exporter_job"';
local DAY = u.DAY;
local GREEN = g.GREEN, ORANGE = g.ORANGE, RED = g.RED, BLUE = g.BLUE, DAYS = g.DAYS;

local UP_DOWN = g.mapping([['1', 'up', GREEN], ['0', 'down', RED]]);
local OK_FAILED = g.mapping([['1', 'succeeded', GREEN], ['0', 'failed', RED]]);
local YES_NO = g.mapping([['1', 'yes', GREEN], ['0', 'no', ORANGE]]);
local RUNNING = g.mapping([['1', 'running', GREEN], ['0', 'not running', RED], ['-1', 'not installed', ORANGE]]);
local ACTIVE = g.mapping([['1', 'active', RED], ['0', 'inactive', GREEN]]);

{
  dashboard(c)::
    local n(key) = u.number(key, c[key]);
    local warnDays = n('updateDeadlineWarningDays');
    local critDays = n('updateDeadlineCriticalDays');
    local telWarn = n('telemetryStaleWarningDays');
    local telCrit = n('telemetryStaleCriticalDays');
    local licWarn = n('licenseExpiryWarningDays');
    local licCrit = n('licenseExpiryCriticalDays');
    local saWarn = n('subscriptionAdvantageWarningDays');
    local usageHigh = n('usageHighRatio');
    local usageFull = n('usageFullRatio');
    local certWarn = n('certificateWarningDays');
    local certCrit = n('certificateCriticalDays');
    local uid = u.text('dashboardUID', c.dashboardUID);
    local runbooks = u.text('runbookURLBase', c.runbookURLBase);
    local percent(ratio) = '%.0f%%' % (ratio * 100);

    local deadlineVar = { '1': '$critical_days', '2': '$warning_days' };
    // The deadline is a range (docs/catalog.md "Deadlines as ranges"): possibly late from the
    // earliest possible day, certainly late from the latest.
    local daysRemaining = 'instance:citrix_license_update_deadline:days_remaining{%s}' % SEL;
    local daysRemainingLatest = 'instance:citrix_license_update_deadline_latest:days_remaining{%s}' % SEL;
    local deadlineWords = 'citrix_license_server_update_deadline_info{%s}' % SEL;
    local telemetryDays = 'instance:citrix_license_telemetry_last_success:days_ago{%s}' % SEL;
    local usageRatio = 'instance_feature:citrix_license_usage:ratio{%s}' % SEL;
    local certDays = '(citrix_license_web_certificate_expiry_timestamp_seconds{%s} - time()) / %d' % [SEL, DAY];
    local licDays = '(citrix_license_expiry_timestamp_seconds{%s} - time()) / %d' % [SEL, DAY];
    local zeroIsGood = g.steps([[GREEN, null], [RED, 1]]);
    local zeroIsGoodWarn = g.steps([[GREEN, null], [ORANGE, 1]]);

    local fleetTargets = [
      g.target('max by (job, instance) (citrix_license_up{%s})' % SEL, 'A', table=true),
      g.target('max by (job, instance, version, build) (citrix_license_server_info{%s})' % SEL, 'B', table=true),
      g.target('max by (job, instance) (citrix_license_server_newer_releases{%s})' % SEL, 'C', table=true),
      g.target('min by (job, instance) (%s)' % daysRemaining, 'D', table=true),
      g.target('max by (job, instance, update) (%s)' % deadlineWords, 'I', table=true),
      g.target('min by (job, instance) (%s)' % daysRemainingLatest, 'J', table=true),
      // Onboarding to LAS is what the Delivery Controller's site reports, not the build.
      g.target('max by (job, instance, status) (citrix_license_site_license_server_status{%s} == 1)' % SEL, 'K', table=true),
      g.target('max by (job, instance) (instance:citrix_license_version_age:days{%s})' % SEL, 'E', table=true),
      g.target('min by (job, instance) (%s)' % telemetryDays, 'F', table=true),
      g.target('max by (job, instance) (citrix_license_telemetry_last_attempt_success{%s})' % SEL, 'G', table=true),
      g.target('max by (job, instance) (citrix_license_server_las_supported{%s})' % SEL, 'H', table=true),
    ];
    local instanceLink = [{
      title: 'Show only ${__value.raw}',
      url: '/d/%s/citrix-license-servers?var-instance=${__value.raw}&${__url_time_range}' % uid,
    }];

    local panels = g.layout([
      // -- at a glance ---------------------------------------------------------------------
      g.row('Fleet at a glance'),
      g.place(g.stat(
        'Servers down',
        'License Servers whose primary collector fails (citrix_license_up 0): the exporter '
        + 'cannot reach them. Alert: CitrixLicenseServerUnreachable.',
        'count(citrix_license_up{%s} == 0) or vector(0)' % SEL, zeroIsGood
      ), 4, 4),
      g.place(g.stat(
        'Update overdue',
        'License Servers past their update deadline even if the release that starts the clock '
        + 'came out on its latest possible day (Citrix: move to each new release within six '
        + 'months of its release, CTX477614). Alert: CitrixLicenseUpdateOverdue, critical.',
        'count(%s <= 0) or vector(0)' % daysRemainingLatest, zeroIsGood
      ), 4, 4),
      g.place(g.stat(
        'Update due within $warning_days days',
        'License Servers whose earliest possible update deadline is less than $warning_days '
        + 'days away or already passed, but not yet the latest (possibly overdue). Alerts: '
        + 'CitrixLicenseUpdateDeadlineApproaching, CitrixLicenseUpdateOverdue (warning).',
        'count((%s <= $warning_days) unless on (job, instance, rule) (%s <= 0)) or vector(0)'
        % [daysRemaining, daysRemainingLatest], zeroIsGoodWarn
      ), 4, 4),
      g.place(g.stat(
        'Telemetry failing',
        'License Servers whose last telemetry upload failed or whose last successful upload '
        + 'is more than %s days old. Alerts: CitrixLicenseTelemetryUploadFailing, ' % u.num(telWarn)
        + 'CitrixLicenseTelemetryUploadStale.',
        'count(max by (job, instance) ((citrix_license_telemetry_last_attempt_success{%s} == 0) '
        % SEL + 'or (%s > %s))) or vector(0)' % [telemetryDays, u.num(telWarn)], zeroIsGood
      ), 4, 4),
      g.place(g.stat(
        'Licenses expiring within %s days' % u.num(licWarn),
        'License file entries that expire within %s days or have expired (permanent ' % u.num(licWarn)
        + 'licenses carry no expiry). Alert: CitrixLicenseExpiring.',
        'count(%s <= %s) or vector(0)' % [licDays, u.num(licWarn)], zeroIsGoodWarn
      ), 4, 4),
      g.place(g.stat(
        'Servers watched',
        'License Servers the exporter probes for this selection (series of citrix_license_up).',
        'count(citrix_license_up{%s})' % SEL, g.steps([[BLUE, null]])
      ), 4, 4),

      // -- the fleet table -----------------------------------------------------------------
      g.place(g.table(
        'License Servers',
        'One row per License Server: running version and build, how many catalog releases are '
        + 'newer, when to update (a range where a release date is known only within bounds: '
        + 'the last day on time if that release came out on its earliest and on its latest '
        + 'possible day), days left until the earliest and the latest possible deadline (red '
        + 'within $critical_days days and after it, orange within $warning_days days: the alert '
        + 'bands), how old the running build is, '
        + 'when telemetry last uploaded successfully and how the last attempt ended, whether the '
        + 'exporter reaches it, and whether its build can use the License Activation Service '
        + '(build 51000 or later; 53100 for offline activation). A capable build does not prove '
        + "the server was onboarded to LAS: the LAS state the Delivery Controller's site reports "
        + "(column LAS state, panel 'License Server status and caching mode') does, where a "
        + 'controller is configured. '
        + 'Click a name to '
        + 'show only that server.',
        fleetTargets, 'none',
        overrides=[
          g.override('Server', [['links', instanceLink]]),
          g.override('Reachable', [['mappings', UP_DOWN], ['custom.cellOptions', g.colored()]]),
          g.override('Releases behind', [['unit', 'none'], ['decimals', 0],
                                         ['thresholds', g.steps([[GREEN, null], [ORANGE, 1], [RED, 2]])],
                                         ['custom.cellOptions', g.colored()]]),
          g.override('Update deadline in', [['unit', DAYS], ['decimals', 0],
                                            ['thresholds', g.daysLeftSteps(warnDays, critDays, deadlineVar)],
                                            ['custom.cellOptions', g.colored('color-background')]]),
          g.override('Latest deadline in', [['unit', DAYS], ['decimals', 0],
                                            ['thresholds', g.daysLeftSteps(warnDays, critDays, deadlineVar)],
                                            ['custom.cellOptions', g.colored()]]),
          g.override('Version age', [['unit', DAYS], ['decimals', 0]]),
          g.override('Last upload OK', [['unit', DAYS], ['decimals', 1],
                                        ['thresholds', g.daysAgoSteps(telWarn, telCrit)],
                                        ['custom.cellOptions', g.colored()], ['noValue', 'never']]),
          g.override('Last upload attempt', [['mappings', OK_FAILED], ['custom.cellOptions', g.colored()]]),
          g.override('LAS-capable build', [['mappings', YES_NO], ['custom.cellOptions', g.colored()]]),
        ],
        organize=g.organize(
          rename={
            instance: 'Server',
            version: 'Version',
            build: 'Build',
            'Value #A': 'Reachable',
            'Value #C': 'Releases behind',
            'Value #D': 'Update deadline in',
            'Value #E': 'Version age',
            'Value #F': 'Last upload OK',
            'Value #G': 'Last upload attempt',
            'Value #H': 'LAS-capable build',
            update: 'Update',
            'Value #J': 'Latest deadline in',
            status: 'LAS state (site)',
          },
          hide=['Time', 'job', 'Value #B', 'Value #I', 'Value #K'],
          order=['instance', 'Value #A', 'version', 'build', 'Value #C', 'update',
                 'Value #D', 'Value #J', 'Value #E', 'Value #F', 'Value #G', 'Value #H',
                 'status'],
        ),
        sortBy='Update deadline in',
      ), 24, 9),

      // -- fleet compliance, for reporting upward ------------------------------------------
      g.row('Fleet compliance'),
      g.place(g.stat(
        'Servers on time',
        'The share of all watched License Servers whose every update deadline, even read as '
        + 'its latest possible day, is still ahead (recording rule '
        + 'citrix_license:fleet_servers_on_time:ratio). Overdue, unreachable and '
        + 'unknown-build servers count against it. The whole fleet of this Prometheus: the '
        + 'job and server selection does not apply.',
        'min(citrix_license:fleet_servers_on_time:ratio)',
        g.steps([[RED, null], [GREEN, 1]]), unit='percentunit'
      ) + { fieldConfig+: { defaults+: { min: 0, max: 1 } } }, 6, 6),
      g.place(g.timeseries(
        'Servers on time over time',
        'citrix_license:fleet_servers_on_time:ratio over the time range: the trend to report '
        + '(1 = every watched server on time with the six-month rule, CTX477614).',
        [g.target('min(citrix_license:fleet_servers_on_time:ratio)', legend='on time')],
        'percentunit', defaults={ min: 0, max: 1 },
      ), 18, 6),

      // -- update deadline -----------------------------------------------------------------
      g.row('Update deadline and versions'),
      g.place(g.bargauge(
        'Days until the update deadline',
        "Days left until each server's earliest possible update deadline (negative: possibly "
        + 'overdue; the License Servers table shows the latest possible one and the range in '
        + 'words), coloured by the $warning_days/$critical_days day variables. The deadline is '
        + 'the earliest of the policy rules (six months after each newer release; fixed '
        + 'minimum-build dates).',
        [g.target('min by (instance) (%s)' % daysRemaining, legend='{{instance}}', instant=true)],
        DAYS, g.daysLeftSteps(warnDays, critDays, deadlineVar), defaults={ decimals: 0 },
      ), 12, 8),
      g.place(g.timeseries(
        'Releases behind over time',
        "How many releases in the exporter's release catalog are newer than the running build; "
        + 'a step down is an upgrade.',
        [g.target('max by (instance) (citrix_license_server_newer_releases{%s})' % SEL, legend='{{instance}}')],
        'none', defaults={ decimals: 0 },
      ), 12, 8),

      // -- licenses ------------------------------------------------------------------------
      g.row('Licenses'),
      g.place(g.timeseries(
        'License usage per feature',
        'Licenses in use, purchased and installed (WMI Count, with the overdraft allowance) '
        + 'per server and feature (PLD, e.g. XDT_PLT_UD). Data from WMI, read at most every '
        + 'cache interval (15 minutes by default).',
        [
          g.target('sum by (instance, feature) (citrix_license_in_use{%s})' % SEL, 'A', '{{instance}} {{feature}} in use'),
          g.target('sum by (instance, feature) (citrix_license_purchased{%s})' % SEL, 'B', '{{instance}} {{feature}} purchased'),
          g.target('sum by (instance, feature) (citrix_license_installed{%s})' % SEL, 'C', '{{instance}} {{feature}} installed'),
        ],
        'none', defaults={ decimals: 0 },
      ), 12, 8),
      g.place(g.timeseries(
        'License usage ratio',
        'Licenses in use divided by licenses purchased, per server and feature (above 100 %: '
        + 'overdraft in use). Dashed lines: '
        + '%s (CitrixLicenseUsageHigh) and %s (CitrixLicenseUsageFull).' % [percent(usageHigh), percent(usageFull)],
        [g.target(usageRatio, legend='{{instance}} {{feature}}')],
        'percentunit', thresholds=g.steps([[GREEN, null], [ORANGE, usageHigh], [RED, usageFull]]),
        showThresholds=true, defaults={ min: 0 },
      ), 12, 8),
      g.place(g.timeseries(
        'Overdraft',
        'Per server and feature: licenses in use beyond those purchased (overdraft being '
        + 'consumed; alert CitrixLicenseOverdraftInUse) and the overdraft licenses the pools '
        + 'allow (WMI Overdraft).',
        [
          g.target('clamp_min(sum by (instance, feature) (citrix_license_in_use{%s}) ' % SEL
                   + '- sum by (instance, feature) (citrix_license_purchased{%s}), 0)' % SEL,
                   'A', '{{instance}} {{feature}} overdraft in use'),
          g.target('sum by (instance, feature) (citrix_license_overdraft{%s})' % SEL,
                   'B', '{{instance}} {{feature}} overdraft allowed'),
        ],
        'none', defaults={ decimals: 0, min: 0 },
      ), 12, 8),
      g.place(g.table(
        'License expiry',
        'Every license file entry with an expiry date (permanent licenses are not listed): '
        + 'orange within %s days, red within %s days and after expiry ' % [u.num(licWarn), u.num(licCrit)]
        + '(CitrixLicenseExpiring).',
        [
          g.target('max by (instance, feature, serial) (citrix_license_expiry_timestamp_seconds{%s}) * 1000' % SEL, 'A', table=true),
          g.target('min by (instance, feature, serial) (%s)' % licDays, 'B', table=true),
        ],
        'none',
        overrides=[
          g.override('Expires', [['unit', 'dateTimeAsIsoNoDateIfToday']]),
          g.override('Days left', [['unit', DAYS], ['decimals', 0],
                                   ['thresholds', g.daysLeftSteps(licWarn, licCrit)],
                                   ['custom.cellOptions', g.colored('color-background')]]),
        ],
        organize=g.organize(
          rename={ instance: 'Server', feature: 'Feature', serial: 'Serial', 'Value #A': 'Expires', 'Value #B': 'Days left' },
          hide=['Time'],
          order=['instance', 'feature', 'serial', 'Value #A', 'Value #B'],
        ),
        sortBy='Days left',
      ), 12, 8),
      g.place(g.table(
        'Subscription Advantage dates',
        'Subscription Advantage / Customer Success Services date per license pool: product '
        + 'versions released after it are not covered. Orange within %s days ' % u.num(saWarn)
        + '(CitrixLicenseSubscriptionAdvantageEnding).',
        [
          g.target('max by (instance, feature, pool) '
                   + '(citrix_license_subscription_advantage_timestamp_seconds{%s} > 0) * 1000' % SEL,
                   'A', table=true),
          g.target('min by (instance, feature, pool) '
                   + '((citrix_license_subscription_advantage_timestamp_seconds{%s} > 0) ' % SEL
                   + '- time()) / %d' % DAY, 'B', table=true),
        ],
        'none',
        overrides=[
          g.override('Subscription Advantage until', [['unit', 'dateTimeAsIsoNoDateIfToday']]),
          g.override('Days left', [['unit', DAYS], ['decimals', 0],
                                   ['thresholds', g.steps([[RED, null], [ORANGE, 0], [GREEN, saWarn]])],
                                   ['custom.cellOptions', g.colored('color-background')]]),
        ],
        organize=g.organize(
          rename={
            instance: 'Server',
            feature: 'Feature',
            pool: 'Pool',
            'Value #A': 'Subscription Advantage until',
            'Value #B': 'Days left',
          },
          hide=['Time'],
          order=['instance', 'feature', 'pool', 'Value #A', 'Value #B'],
        ),
        sortBy='Days left',
      ), 24, 8),

      // -- availability --------------------------------------------------------------------
      g.row('Ports, services and certificate'),
      g.place(g.stateTimeline(
        'Licensing ports',
        'TCP connect to each licensing port by role (license_manager: lmadmin, default 27000; '
        + 'vendor_daemon: the CITRIX vendor daemon, default 7279; web_services: Web Services for '
        + 'Licensing, default 8083) at every scrape, with the port number probed. '
        + 'Alert: CitrixLicensePortDown.',
        'max by (instance, role, port) (citrix_license_port_up{%s})' % SEL,
        '{{instance}} {{role}} :{{port}}', UP_DOWN
      ), 8, 8),
      g.place(g.stateTimeline(
        'Windows services',
        'The watched licensing Windows services as WMI reports them (over WinRM, cached): '
        + 'running, installed but not running (alert CitrixLicenseServiceDown), or not '
        + 'installed (alert CitrixLicenseServiceMissing when the module requires it).',
        'max by (instance, service) (citrix_license_service_up{%s})\nor\n' % SEL
        + '-1 * max by (instance, service) '
        + '(citrix_license_service_state{%s, state="not_installed"} == 1)' % SEL,
        '{{instance}} {{service}}', RUNNING
      ), 8, 8),
      g.place(g.bargauge(
        'Web Services certificate: days left',
        'Days until the TLS certificate of Web Services for Licensing (port 8083) expires: '
        + 'orange within %s days, red within %s days and after expiry ' % [u.num(certWarn), u.num(certCrit)]
        + '(CitrixLicenseWebCertificateExpiring).',
        [g.target('min by (instance) (%s)' % certDays, legend='{{instance}}', instant=true)],
        DAYS, g.daysLeftSteps(certWarn, certCrit), defaults={ decimals: 0 },
      ), 8, 8),

      // -- telemetry -----------------------------------------------------------------------
      g.row('Telemetry uploads'),
      g.place(g.timeseries(
        'Telemetry: days since the last successful upload',
        'Age of the last successful licensing telemetry upload (log_ctxuploader.log). Uploads '
        + 'run daily; dashed lines at %s and %s days ' % [u.num(telWarn), u.num(telCrit)]
        + '(CitrixLicenseTelemetryUploadStale).',
        [g.target(telemetryDays, 'A', '{{instance}}')],
        DAYS, thresholds=g.daysAgoSteps(telWarn, telCrit), showThresholds=true,
        defaults={ decimals: 1, min: 0 },
      ), 12, 8),
      g.place(g.timeseries(
        'Telemetry: bundles waiting for upload',
        'Upload bundles waiting in LS\\resource\\usage (a failed upload leaves its bundle; a '
        + 'server reported by hand collects them until the next manual upload).',
        [g.target('max by (instance) (citrix_license_telemetry_pending_bundles{%s})' % SEL, legend='{{instance}}')],
        'none', defaults={ decimals: 0, min: 0 },
      ), 12, 8),

      // -- site ----------------------------------------------------------------------------
      g.row('Site licensing state (Delivery Controller)'),
      g.place(g.stateTimeline(
        'Grace periods',
        'Grace periods as the Delivery Controller site reports them: supplemental grace '
        + '(all licenses in use, about 15 days of extra connections) and out-of-box grace. '
        + 'Alert: CitrixLicenseGracePeriodActive.',
        'max by (instance, site) (citrix_license_site_supplemental_grace_active{%s}) ' % SEL
        + 'or label_replace(max by (instance, site) '
        + '(citrix_license_site_out_of_box_grace_active{%s}), ' % SEL
        + '"site", "$1 (out of box)", "site", "(.*)")',
        '{{instance}} {{site}}', ACTIVE
      ), 12, 8),
      g.place(g.stateTimeline(
        'License Server status and caching mode',
        'The License Server status the site reports (LasCompatible and Compatible are '
        + 'ready; Inaccessible means the site runs in license caching mode). '
        + 'Alerts: CitrixLicenseCachingModeActive, CitrixLicenseActivationServiceNotReady.',
        'max by (instance, site, status) (citrix_license_site_license_server_status{%s}) == 1' % SEL,
        '{{instance}} {{site}}: {{status}}',
        g.mapping([['1', 'current', BLUE]])
      ), 12, 8),

      // -- the exporter --------------------------------------------------------------------
      g.row('Exporter health'),
      g.place(g.stateTimeline(
        'Collector success',
        'Whether each collector (probe: ports and certificate; winrm: WMI, services, version, '
        + 'telemetry) succeeded for each server. Alert: CitrixLicenseCollectorFailing.',
        'max by (instance, collector) (citrix_license_collector_success{%s})' % SEL,
        '{{instance}} {{collector}}', OK_FAILED
      ), 12, 8),
      g.place(g.timeseries(
        'Collector duration',
        "How long each collector's last fetch took (for cached data: the fetch that produced "
        + 'it).',
        [g.target('max by (instance, collector) (citrix_license_collector_duration_seconds{%s})' % SEL,
                  legend='{{instance}} {{collector}}')],
        's', defaults={ min: 0 },
      ), 12, 8),
      g.place(g.timeseries(
        'Probe scrape duration',
        "How long Prometheus' scrape of each /probe took (must stay below the scrape timeout).",
        [g.target('max by (instance) (scrape_duration_seconds{%s})' % SEL, legend='{{instance}}')],
        's', defaults={ min: 0 },
      ), 8, 8),
      g.place(g.timeseries(
        'Probes per second',
        'Probes the exporter answered, by module and result, and probes refused because too '
        + 'many ran at once.',
        [
          g.target('sum by (module, result) '
                   + '(rate(citrix_license_exporter_probes_total{%s}[$__rate_interval]))' % EXPORTER_SEL,
                   'A', '{{module}} {{result}}'),
          g.target('sum(rate(citrix_license_exporter_probes_rejected_total{%s}' % EXPORTER_SEL
                   + '[$__rate_interval]))', 'B', 'rejected'),
        ],
        'reqps', defaults={ min: 0 },
      ), 8, 8),
      g.place(g.panel(
        'stat', 'Configuration reload',
        "Whether the exporter's last configuration load succeeded (a failed reload keeps the "
        + 'previous configuration). Alert: CitrixLicenseExporterConfigReloadFailed.',
        [g.target('min(citrix_license_exporter_config_last_reload_successful{%s})' % EXPORTER_SEL, instant=true)],
        'none', thresholds=g.steps([[RED, null], [GREEN, 1]]),
        mappings=g.mapping([['1', 'succeeded', GREEN], ['0', 'failed', RED]]),
        options={
          colorMode: 'background',
          graphMode: 'none',
          textMode: 'value',
          justifyMode: 'center',
          reduceOptions: g.reduceLast,
        },
      ), 4, 4),
      g.place(g.stat(
        'Release catalog age',
        "Days since the newest release in the exporter's release catalog. When it grows old "
        + 'Citrix has probably published a newer build: add it to the catalog. '
        + 'Alert: CitrixLicenseReleaseCatalogStale.',
        '(time() - max(citrix_license_release_catalog_latest_release_timestamp_seconds'
        + '{%s})) / %d' % [EXPORTER_SEL, DAY],
        g.steps([[GREEN, null], [ORANGE, n('releaseCatalogStaleDays')]]),
        unit=DAYS,
      ), 4, 4),
    ]);

    local queryVar(name, label, query, description) = {
      name: name,
      label: label,
      type: 'query',
      datasource: g.DS,
      description: description,
      query: { query: query, refId: name + '-variable' },
      definition: query,
      refresh: 2,
      sort: 1,
      regex: '',
      multi: true,
      includeAll: true,
      allValue: '.+',
      current: { selected: true, text: ['All'], value: ['$__all'] },
      options: [],
      hide: 0,
    };
    local daysVar(name, label, value, description) = {
      local text = u.num(value),
      name: name,
      label: label,
      type: 'textbox',
      query: text,
      description: description,
      hide: 0,
      current: { selected: false, text: text, value: text },
      options: [{ selected: true, text: text, value: text }],
    };
    {
      uid: uid,
      title: 'Citrix License Servers',  // slug: citrix-license-servers (alerts link to it)
      description: 'Citrix License Servers, the whole fleet at a glance: update deadlines '
                   + '(six-month rule), telemetry uploads, licenses, ports, services, '
                   + "certificates, site grace states and the exporter's own health.",
      tags: ['citrix', 'citrix-license', 'licensing'],
      editable: true,
      graphTooltip: 1,
      schemaVersion: 39,
      version: 1,
      timezone: 'utc',
      refresh: '1m',
      time: { from: 'now-7d', to: 'now' },
      timepicker: {},
      fiscalYearStartMonth: 0,
      liveNow: false,
      weekStart: '',
      links: [
        {
          title: 'Runbooks',
          type: 'link',
          url: runbooks,
          icon: 'doc',
          tooltip: 'What each Citrix License alert means and what to do',
          asDropdown: false,
          includeVars: false,
          keepTime: false,
          tags: [],
          targetBlank: true,
        },
        {
          title: 'Citrix License dashboards',
          type: 'dashboards',
          icon: 'external link',
          tooltip: '',
          asDropdown: true,
          includeVars: true,
          keepTime: true,
          tags: ['citrix-license'],
          targetBlank: false,
        },
      ],
      annotations: { list: [
        {
          builtIn: 1,
          datasource: { type: 'grafana', uid: '-- Grafana --' },
          enable: true,
          hide: true,
          iconColor: 'rgba(0, 211, 255, 1)',
          name: 'Annotations & Alerts',
          type: 'dashboard',
        },
        {
          datasource: g.DS,
          enable: true,
          hide: false,
          iconColor: 'red',
          name: 'Citrix License alerts',
          expr: 'ALERTS{alertname=~"CitrixLicense.+", alertstate="firing", instance=~"$instance"}',
          step: '60s',
          titleFormat: '{{alertname}}',
          textFormat: '{{instance}} ({{severity}})',
          tagKeys: 'severity',
          useValueForTime: false,
        },
      ] },
      templating: { list: [
        {
          name: 'datasource',
          label: 'Data source',
          type: 'datasource',
          query: 'prometheus',
          regex: '',
          hide: 0,
          refresh: 1,
          options: [],
          current: { selected: false, text: 'Prometheus', value: 'prometheus' },
          description: 'The Prometheus that scrapes the Citrix License exporter.',
        },
        queryVar('job', 'Job', 'label_values(citrix_license_up, job)',
                 'The scrape job(s) that probe License Servers (/probe).'),
        queryVar('instance', 'License Server', 'label_values(citrix_license_up{job=~"$job"}, instance)',
                 "License Servers (the target names of the exporter's configuration)."),
        queryVar('exporter_job', 'Exporter job',
                 'label_values(citrix_license_exporter_config_last_reload_successful, job)',
                 "The scrape job(s) of the exporter's own /metrics."),
        daysVar('warning_days', 'Deadline warning (days)', warnDays,
                'Update deadlines fewer days away than this are orange. Default: the warning '
                + 'band of CitrixLicenseUpdateDeadlineApproaching (the mixin\'s _config).'),
        daysVar('critical_days', 'Deadline critical (days)', critDays,
                'Update deadlines fewer days away than this, and past ones, are red. Default: '
                + 'the critical band of CitrixLicenseUpdateDeadlineApproaching.'),
      ] },
      panels: panels,
    },
}
