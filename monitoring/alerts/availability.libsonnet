// Reaching the License Server: the probe, the collectors, ports, services, the certificate.
local a = import '../lib/alert.libsonnet';
local p = import '../lib/promql.libsonnet';
local u = import '../lib/util.libsonnet';

{
  group(c):: {
    local roles = u.regexAlt(u.names('criticalPortRoles', c.criticalPortRoles)),
    local services = u.regexAlt(u.names('criticalServices', c.criticalServices)),
    // Each of these alerts has a band for the critical names and one for all others.
    local split(name, expr, summary, description) = [
      a.alert(c, name, expr(band.op), band.severity, summary, description)
      for band in [{ severity: 'critical', op: '=~' }, { severity: 'warning', op: '!~' }]
    ],
    name: 'citrix-license.availability',
    rules: [
      a.alert(
        c, 'CitrixLicenseProbeFailed',
        'up{%s} == 0' % u.text('probeSelector', c.probeSelector),
        null,
        'Prometheus cannot scrape the probe of a Citrix License Server.',
        u.fill(
          "Prometheus has failed for [[for]] to scrape the exporter's probe of License "
          + 'Server {{ $labels.instance }} (job {{ $labels.job }}): the exporter is down '
          + 'or overloaded, or the probe outlasted the scrape timeout. The other alerts '
          + 'for this server are blind until the probe works again.',
          { 'for': a.forText(c, 'CitrixLicenseProbeFailed') },
        ),
      ),
      a.alert(
        c, 'CitrixLicenseServerUnreachable',
        'citrix_license_up == 0',
        null,
        'A Citrix License Server cannot be reached.',
        u.fill(
          'The exporter has not reached License Server {{ $labels.instance }} for '
          + '[[for]]: its primary collector fails (last successful fetch: [[last]]; see '
          + 'citrix_license_collector_success and the exporter log).',
          {
            last: u.lookup('time() - max(citrix_license_collector_last_success_timestamp_secondsSEL)',
                           p.INSTANCE, 'value | humanizeDuration', 'never', suffix=' ago'),
            'for': a.forText(c, 'CitrixLicenseServerUnreachable'),
          },
        ),
      ),
      a.alert(
        c, 'CitrixLicenseCollectorFailing',
        'citrix_license_collector_success == 0',
        null,
        'A collector of a Citrix License Server probe keeps failing.',
        u.fill(
          'The {{ $labels.collector }} collector for License Server '
          + '{{ $labels.instance }} has failed for [[for]] (failure kind: [[kind]]; last '
          + 'success: [[last]]); the metrics it provides are missing.',
          {
            // The kind names the runbook's branch: auth, tls, timeout, parse, ...
            kind: u.lookup('citrix_license_collector_failureSEL == 1', p.INSTANCE + ['collector'],
                           'label "kind"', 'unknown'),
            last: u.tsOf('citrix_license_collector_last_success_timestamp_seconds',
                         p.INSTANCE + ['collector'], 'never'),
            'for': a.forText(c, 'CitrixLicenseCollectorFailing'),
          },
        ),
      ),
    ] + split(
      'CitrixLicensePortDown',
      function(op) 'citrix_license_port_up{role%s"%s"} == 0' % [op, roles],
      'A Citrix licensing port does not accept connections.',
      u.fill(
        'License Server {{ $labels.instance }} has not accepted TCP connections on its '
        + '{{ $labels.role }} port {{ $labels.port }} for [[for]] (license_manager: lmadmin, '
        + 'vendor_daemon: the CITRIX vendor daemon, web_services: Web Services for Licensing).',
        { 'for': a.forText(c, 'CitrixLicensePortDown') },
      ),
    ) + split(
      'CitrixLicenseServiceDown',
      function(op) 'citrix_license_service_up{service%s"%s"} == 0' % [op, services],
      'A Citrix licensing Windows service is installed but not running.',
      u.fill(
        'The Windows service {{ $labels.service }} on License Server {{ $labels.instance }} '
        + 'is installed but has not been running for [[for]] (state: [[state]]; WinRM data, '
        + 'cached up to 15 minutes).',
        {
          state: u.lookup('citrix_license_service_stateSEL == 1', p.INSTANCE + ['service'],
                          'label "state"', 'unknown'),
          'for': a.forText(c, 'CitrixLicenseServiceDown'),
        },
      ),
    ) + split(
      // Not installed alerts only for the services the module requires (winrm.services).
      'CitrixLicenseServiceMissing',
      function(op) 'citrix_license_service_state{service%s"%s",state="not_installed"} == 1\n' % [op, services]
                   + 'and on (job, instance, service)\ncitrix_license_service_required == 1',
      'A required Citrix licensing Windows service is not installed.',
      u.fill(
        'The Windows service {{ $labels.service }}, which the exporter module lists as '
        + 'required, has not been installed on License Server {{ $labels.instance }} for '
        + '[[for]] (no Win32_Service matches its name or display name; WinRM data, cached up '
        + 'to 15 minutes).',
        { 'for': a.forText(c, 'CitrixLicenseServiceMissing') },
      ),
    ) + a.bands(
      c, 'CitrixLicenseWebCertificateExpiring',
      '(citrix_license_web_certificate_expiry_timestamp_seconds - time()) / %d' % u.DAY,
      'certificateWarningDays', 'certificateCriticalDays',
      'The Web Services for Licensing certificate is expiring.',
      u.fill(
        'The TLS certificate of Web Services for Licensing (port 8083) on License '
        + 'Server {{ $labels.instance }} expires on [[at]] ([[left]]); clients that '
        + 'validate it will refuse it once it has expired.',
        {
          at: u.tsOf('citrix_license_web_certificate_expiry_timestamp_seconds', p.INSTANCE, 'an unknown date'),
          left: p.IN_DAYS,
        },
      ),
    ),
  },
}
