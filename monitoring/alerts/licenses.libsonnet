// License files, Subscription Advantage, usage, overdraft and predicted exhaustion.
local a = import '../lib/alert.libsonnet';
local p = import '../lib/promql.libsonnet';
local u = import '../lib/util.libsonnet';

{
  group(c):: {
    local saDays = u.num(u.number('subscriptionAdvantageWarningDays', c.subscriptionAdvantageWarningDays)),
    local saLeft = '((citrix_license_subscription_advantage_timestamp_seconds != 0) - time()) / %d' % u.DAY,
    local saSummary = 'Subscription Advantage / Customer Success Services of Citrix licenses ends.',
    local saDescription = u.fill(
      'The Subscription Advantage / Customer Success Services date of the '
      + '{{ $labels.feature }} licenses (pool {{ $labels.pool }}, {{ $labels.license_type }}) '
      + 'on License Server {{ $labels.instance }} is [[at]] ([[left]]): product versions '
      + 'released after that date are not covered by these licenses.',
      {
        at: u.tsOf('citrix_license_subscription_advantage_timestamp_seconds',
                   p.INSTANCE + ['feature', 'pool'], 'an unknown date'),
        left: p.IN_DAYS,
      },
    ),
    local high = u.number('usageHighRatio', c.usageHighRatio),
    local full = u.number('usageFullRatio', c.usageFullRatio),
    assert u.ordered('usageHighRatio', high, 'usageFullRatio', full),
    local feature = p.INSTANCE + ['feature'],
    local purchased = u.countOf('sum(citrix_license_purchasedSEL)', feature, '?'),
    local usage = u.fill(
      '{{ $value | humanizePercentage }} of the {{ $labels.feature }} licenses on License '
      + 'Server {{ $labels.instance }} are in use ([[in_use]] of [[purchased]] purchased).',
      { in_use: u.countOf('sum(citrix_license_in_useSEL)', feature, '?'), purchased: purchased },
    ),
    local lookback = u.duration('exhaustionLookback', c.exhaustionLookback),
    local history = u.duration('exhaustionMinHistory', c.exhaustionMinHistory),
    local horizon = u.number('exhaustionHorizonDays', c.exhaustionHorizonDays),
    local installed = u.countOf('sum(citrix_license_installedSEL)', feature, '?'),
    name: 'citrix-license.licenses',
    rules: a.bands(
      c, 'CitrixLicenseExpiring',
      '(citrix_license_expiry_timestamp_seconds - time()) / %d' % u.DAY,
      'licenseExpiryWarningDays', 'licenseExpiryCriticalDays',
      'A Citrix license is expiring.',
      u.fill(
        'License {{ $labels.serial }} for {{ $labels.feature }} on License Server '
        + '{{ $labels.instance }} expires on [[at]] ([[left]]).',
        {
          at: u.tsOf('citrix_license_expiry_timestamp_seconds',
                     p.INSTANCE + ['feature', 'serial'], 'an unknown date'),
          left: p.IN_DAYS,
        },
      ),
    ) + [
      // Warning until the date; after it, info (context only): a lapsed date is a commercial
      // state that may be intended, not a fault to page or ticket about forever.
      a.alert(c, 'CitrixLicenseSubscriptionAdvantageEnding', '%s %s' % [saLeft, band.expr],
              band.severity, saSummary, saDescription)
      for band in [
        { severity: 'warning', expr: '<= %s > 0' % saDays },
        { severity: 'info', expr: '<= 0' },
      ]
    ] + [
      a.alert(
        c, 'CitrixLicenseUsageHigh',
        '%s\n>= %s < %s' % [p.USAGE_RATIO, u.num(high), u.num(full)],
        null, 'Citrix license usage is high.', usage,
      ),
      a.alert(
        c, 'CitrixLicenseUsageFull',
        '%s\n>= %s' % [p.USAGE_RATIO, u.num(full)],
        null, 'All Citrix licenses of a feature are in use.',
        usage + ' Further connections depend on overdraft licenses or the supplemental '
        + 'grace period.',
      ),
      // citrix_license_purchased is WMI Count without the overdraft allowance (the exporter
      // applies the module's winrm.count_includes_overdraft; docs/assumptions.md), so this
      // fires whenever usage exceeds what was bought, however Count is reported.
      a.alert(
        c, 'CitrixLicenseOverdraftInUse',
        'sum by (job, instance, feature) (citrix_license_in_use)\n>\n'
        + 'sum by (job, instance, feature) (citrix_license_purchased)',
        null, 'Citrix overdraft licenses are in use.',
        u.fill(
          '{{ printf "%.0f" $value }} {{ $labels.feature }} licenses are in use on '
          + 'License Server {{ $labels.instance }}, more than the [[purchased]] '
          + 'purchased: overdraft licenses are being consumed.',
          { purchased: purchased },
        ),
      ),
      // The trend of the last `exhaustionLookback` of use, extrapolated `exhaustionHorizonDays`
      // ahead, reaches the installed count (WMI Count: what can be checked out at all,
      // overdraft included; beyond it only the supplemental grace period admits users).
      // predict_linear is linear in the samples, and the pools of a feature come from one
      // WMI read (same timestamps), so the sum of the pools' predictions is the prediction of
      // the feature's sum, without a subquery. Silent while there is less than
      // `exhaustionMinHistory` of data (the series did not exist then), and once the count is
      // reached (CitrixLicenseUsageFull and the grace alerts speak then).
      a.alert(
        c, 'CitrixLicenseExhaustionPredicted',
        std.join('\n', [
          'sum by (job, instance, feature) (predict_linear(citrix_license_in_use[%s], %d * %d))' % [lookback, horizon, u.DAY],
          '>=',
          'sum by (job, instance, feature) (citrix_license_installed > 0)',
          'and on (job, instance, feature)',
          'sum by (job, instance, feature) (citrix_license_in_use)',
          '<',
          'sum by (job, instance, feature) (citrix_license_installed)',
          'and on (job, instance, feature)',
          'sum by (job, instance, feature) (citrix_license_in_use offset %s)' % history,
        ]),
        null,
        'Citrix licenses of a feature are predicted to run out.',
        u.fill(
          'At the trend of the last [[lookback]], the {{ $labels.feature }} licenses on '
          + 'License Server {{ $labels.instance }} run out within [[horizon]] days: '
          + '{{ printf "%.0f" $value }} predicted in use then, [[installed]] installed '
          + '(overdraft included), [[in_use]] in use now. Buy licenses or free some before '
          + 'new sessions are refused.',
          {
            lookback: u.spoken(lookback),
            horizon: u.num(horizon),
            installed: installed,
            in_use: u.countOf('sum(citrix_license_in_useSEL)', feature, '?'),
          },
        ),
      ),
    ],
  },
}
