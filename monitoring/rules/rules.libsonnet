// Recording rules: days left and ages for the dashboard and reports, the usage ratio, and the
// fleet's share of servers on time with their updates.
local p = import '../lib/promql.libsonnet';
local u = import '../lib/util.libsonnet';

{
  prometheusRules+:: {
    groups+: [
      {
        name: 'citrix-license.recording',
        rules: [
          {
            // Days until the earliest possible deadline (the server may be late then).
            record: 'instance:citrix_license_update_deadline:days_remaining',
            expr: '(%s - time()) / %d' % [p.DEADLINE, u.DAY],
          },
          {
            // Days until the latest possible deadline (certainly late then).
            record: 'instance:citrix_license_update_deadline_latest:days_remaining',
            expr: '(%s - time()) / %d' % [p.DEADLINE_LATEST, u.DAY],
          },
          {
            record: 'instance:citrix_license_version_age:days',
            expr: '(time() - citrix_license_server_release_timestamp_seconds) / %d' % u.DAY,
          },
          {
            record: 'instance:citrix_license_telemetry_last_success:days_ago',
            expr: '(time() - citrix_license_telemetry_last_success_timestamp_seconds) / %d' % u.DAY,
          },
          {
            record: 'instance_feature:citrix_license_usage:ratio',
            expr: p.USAGE_RATIO + '\n',
          },
          {
            // The share of watched License Servers (series of citrix_license_up) known to be on
            // time: every update deadline, even read as its latest possible day, still ahead.
            // Overdue (the critical CitrixLicenseUpdateOverdue, the dashboard's "Update
            // overdue"), unreachable servers and servers whose build the catalog does not know
            // count against it: a report upward claims only what the data shows. 1 = all.
            record: 'citrix_license:fleet_servers_on_time:ratio',
            expr: |||
              (
                count(min by (job, instance) (%s) > time())
                or
                vector(0)
              )
              /
              count(citrix_license_up)
            ||| % p.DEADLINE_LATEST,
          },
        ],
      },
    ],
  },
}
