// Citrix's rules: the update deadline, the release catalog, telemetry uploads, Citrix Cloud.
local a = import '../lib/alert.libsonnet';
local p = import '../lib/promql.libsonnet';
local u = import '../lib/util.libsonnet';

{
  // The update deadline, known as a range when a release date is known only within bounds:
  // never a day the catalog shows impossible. Approaching: warning while the earliest possible
  // deadline is within the warning days, critical once even the latest possible one is within
  // the critical days. Overdue: warning once the server may be late (past the earliest, not the
  // latest), critical once it is late even on the latest possible day. `for` equals
  // `keep_firing_for`: each band takes over as the last stops.
  deadlineRules(c)::
    local warning = u.number('updateDeadlineWarningDays', c.updateDeadlineWarningDays);
    local critical = u.number('updateDeadlineCriticalDays', c.updateDeadlineCriticalDays);
    assert u.ordered('updateDeadlineCriticalDays', critical, 'updateDeadlineWarningDays', warning);
    local toEarliest = '(%s - time()) / %d' % [p.DEADLINE, u.DAY];
    local toLatest = '(%s - time()) / %d' % [p.DEADLINE_LATEST, u.DAY];
    local sinceEarliest = '(time() - %s) / %d' % [p.DEADLINE, u.DAY];
    local sinceLatest = '(time() - %s) / %d' % [p.DEADLINE_LATEST, u.DAY];
    local version = p.versionText('an unknown version');
    local words = p.updateRange();
    local left = u.lookup('(%sSEL - time()) / %d' % [p.DEADLINE, u.DAY], p.DEADLINE_LABELS,
                          'value | printf "%.1f"', '?');
    local rule = 'rule {{ $labels.rule }}; Citrix requires each new release within six months of '
                 + 'its release';
    local approachingSummary = 'A Citrix License Server must be updated soon.';
    local approaching = u.fill(
      'License Server {{ $labels.instance }} ([[version]]) must move to a newer License '
      + 'Server build: [[words]] (the last day on time, UTC; the earliest possible deadline '
      + 'is in [[left]] days; [[rule]]).',
      { version: version, words: words, left: left, rule: rule },
    );
    local overdueSummary = 'A Citrix License Server is past its update deadline.';
    [
      a.alert(
        c, 'CitrixLicenseUpdateDeadlineApproaching',
        '%s <= %s > 0\nunless %s\n%s <= %s' % [toEarliest, u.num(warning), p.SAME_DEADLINE, toLatest, u.num(critical)],
        'warning', approachingSummary, approaching,
      ),
      a.alert(
        c, 'CitrixLicenseUpdateDeadlineApproaching',
        '%s <= %s\nand %s\n%s > 0' % [toLatest, u.num(critical), p.SAME_DEADLINE, toEarliest],
        'critical', approachingSummary, approaching,
      ),
      a.alert(
        c, 'CitrixLicenseUpdateOverdue',
        '%s >= 0\nunless %s\n%s >= 0' % [sinceEarliest, p.SAME_DEADLINE, sinceLatest],
        'warning', overdueSummary,
        u.fill(
          'License Server {{ $labels.instance }} ([[version]]) may already be past its '
          + 'update deadline: [[words]] (the last day on time, UTC; rule '
          + '{{ $labels.rule }}). It is late if the release that starts the clock came '
          + 'out on its earliest possible day, and certainly late after [[latest]]; the '
          + 'release catalog knows that day only within bounds. Update now to be safe.',
          { version: version, words: words, latest: p.lastDay(p.DEADLINE_LATEST) },
        ),
      ),
      a.alert(
        c, 'CitrixLicenseUpdateOverdue',
        '%s >= 0' % sinceLatest,
        'critical', overdueSummary,
        u.fill(
          'License Server {{ $labels.instance }} ([[version]]) is past its update '
          + 'deadline even if the release that starts the clock came out on its latest '
          + 'possible day: [[words]] (the last day on time, UTC), late for [[days]] days '
          + '(rule {{ $labels.rule }}). It no longer meets Citrix\'s License Server update '
          + 'requirement, which puts the support entitlement at risk.',
          { version: version, words: words, days: p.DAYS_VALUE },
        ),
      ),
    ],

  group(c):: {
    local manual = 'citrix_license_telemetry_manual == 1',
    local lastSuccess = u.tsOf('citrix_license_telemetry_last_success_timestamp_seconds', p.INSTANCE, 'never'),
    local pending = u.countOf('citrix_license_telemetry_pending_bundlesSEL', p.INSTANCE, 'an unknown number of'),
    local warning = u.number('telemetryStaleWarningDays', c.telemetryStaleWarningDays),
    local critical = u.number('telemetryStaleCriticalDays', c.telemetryStaleCriticalDays),
    assert u.ordered('telemetryStaleWarningDays', warning, 'telemetryStaleCriticalDays', critical),
    // Days since the last success; a server that never succeeded: since its oldest bundle.
    local age = std.rstripChars(|||
      (
        (time() - citrix_license_telemetry_last_success_timestamp_seconds)
        or
        (time() - citrix_license_telemetry_oldest_pending_bundle_timestamp_seconds)
      ) / %d
    ||| % u.DAY, '\n'),
    local staleSummary = 'A Citrix License Server has not uploaded license telemetry for days.',
    local staleDescription = u.fill(
      'License Server {{ $labels.instance }} has not uploaded license telemetry to Citrix '
      + 'for [[days]] days (last success: [[success]]; [[pending]] bundles waiting). A '
      + 'License Server that does not report makes the customer non-compliant.',
      { days: p.DAYS_VALUE, success: lastSuccess, pending: pending },
    ),
    local manualDays = u.num(u.number('telemetryManualReportDays', c.telemetryManualReportDays)),
    // Manual reporting: the age of the oldest bundle still waiting to be reported.
    local manualAge = std.rstripChars(|||
      (
        (time() - citrix_license_telemetry_oldest_pending_bundle_timestamp_seconds)
        or
        (time() - citrix_license_telemetry_last_success_timestamp_seconds)
      ) / %d
    ||| % u.DAY, '\n'),
    name: 'citrix-license.compliance',
    rules: $.deadlineRules(c) + [
      a.alert(
        c, 'CitrixLicenseVersionUnknown',
        'citrix_license_server_version_known == 0',
        null,
        'A Citrix License Server runs a build the release catalog does not know.',
        u.fill(
          'License Server {{ $labels.instance }} runs [[version]], which is not in the '
          + "exporter's release catalog: its update deadline cannot be computed. Add the "
          + 'release to the catalog override file.',
          { version: p.versionText('a version the exporter cannot parse') },
        ),
      ),
      a.alert(
        c, 'CitrixLicenseTelemetryUploadFailing',
        'citrix_license_telemetry_last_attempt_success == 0\nunless on (job, instance) ' + manual,
        null,
        'A Citrix License Server fails to upload license telemetry.',
        u.fill(
          'The last telemetry upload of License Server {{ $labels.instance }}, at '
          + '[[attempt]], failed ([[failures]] failures in a row; last success: '
          + '[[success]]). The License Server retries after 24 hours; the reason is in '
          + 'log_ctxuploader.log.',
          {
            attempt: u.tsOf('citrix_license_telemetry_last_attempt_timestamp_seconds', p.INSTANCE, 'an unknown time'),
            failures: u.countOf('citrix_license_telemetry_consecutive_failuresSEL', p.INSTANCE, 'an unknown number of'),
            success: lastSuccess,
          },
        ),
      ),
    ] + [
      a.alert(
        c, 'CitrixLicenseTelemetryUploadStale',
        '%s %s\nunless on (job, instance) %s' % [age, band.expr, manual],
        band.severity, staleSummary, staleDescription,
      )
      for band in [
        { severity: 'warning', expr: '> %s <= %s' % [u.num(warning), u.num(critical)] },
        { severity: 'critical', expr: '> %s' % u.num(critical) },
      ]
    ] + [
      a.alert(
        c, 'CitrixLicenseTelemetryManualReportDue',
        '%s > %s\nand on (job, instance) %s' % [manualAge, manualDays, manual],
        null,
        'A manual license telemetry report to Citrix is due.',
        u.fill(
          'License Server {{ $labels.instance }} reports license telemetry by hand, and '
          + 'its oldest unreported data is [[days]] days old (threshold [[limit]] days; '
          + '[[pending]] bundles waiting in LS\\resource\\usage\\). Upload them to '
          + 'Citrix as CTX472950 describes.',
          { days: p.DAYS_VALUE, limit: manualDays, pending: pending },
        ),
      ),
      a.alert(
        c, 'CitrixLicenseCloudNotCompliant',
        'citrix_license_cloud_compliant == 0\nor\ncitrix_license_cloud_reporting == 0',
        null,
        'Citrix Cloud does not list a License Server as compliant.',
        u.fill(
          'Citrix Cloud lists License Server {{ $labels.instance }} as not compliant or '
          + 'not reporting (last report Citrix Cloud received: [[last]]).',
          { last: u.tsOf('citrix_license_cloud_last_report_timestamp_seconds', p.INSTANCE, 'never') },
        ),
      ),
      // Not listed: Cloud has no entry under the target's cloud_fqdn (or address), so the
      // compliant/reporting series of CitrixLicenseCloudNotCompliant are absent: no overlap.
      a.alert(
        c, 'CitrixLicenseCloudNotListed',
        'citrix_license_cloud_listed == 0',
        null,
        'Citrix Cloud does not list a License Server.',
        u.fill(
          "Citrix Cloud's License Server list (fetched [[fetched]]) has had no entry "
          + 'for License Server {{ $labels.instance }} for [[for]]: the server is not '
          + 'registered with this Citrix Cloud customer, so its license telemetry may not '
          + "arrive, or the target's cloud_fqdn (default: its address) differs from the "
          + 'FQDN Citrix Cloud lists.',
          {
            fetched: u.tsOf('citrix_license_cloud_list_fetch_timestamp_seconds', p.INSTANCE, 'at an unknown time'),
            'for': a.forText(c, 'CitrixLicenseCloudNotListed'),
          },
        ),
      ),
    ],
  },
}
