// What the Delivery Controller site reports: grace periods, LAS readiness, caching mode.
local a = import '../lib/alert.libsonnet';
local p = import '../lib/promql.libsonnet';
local u = import '../lib/util.libsonnet';

{
  group(c):: {
    local ready = u.names('siteReadyStatuses', c.siteReadyStatuses),
    local caching = u.names('siteCachingStatuses', c.siteCachingStatuses),
    local summary = 'A Citrix site runs in a licensing grace period.',
    name: 'citrix-license.site',
    rules: [
      a.alert(
        c, 'CitrixLicenseGracePeriodActive',
        'citrix_license_site_supplemental_grace_active == 1',
        'critical', summary,
        u.fill(
          'Site {{ $labels.site }} of License Server {{ $labels.instance }} is in the '
          + 'supplemental grace period because all licenses are in use; it ends '
          + '[[end]], then connections beyond the installed licenses are refused.',
          { end: u.tsOf('citrix_license_site_supplemental_grace_end_timestamp_seconds',
                        p.INSTANCE + ['site'], 'at an unknown time') },
        ),
        labels={ grace: 'supplemental' },
      ),
      a.alert(
        c, 'CitrixLicenseGracePeriodActive',
        'citrix_license_site_out_of_box_grace_active == 1',
        'warning', summary,
        'Site {{ $labels.site }} of License Server {{ $labels.instance }} runs in the '
        + 'out-of-box grace period: it has no usable license from the License Server yet.',
        labels={ grace: 'out_of_box' },
      ),
      a.alert(
        c, 'CitrixLicenseActivationServiceNotReady',
        'citrix_license_site_license_server_status{status!~"%s"} == 1' % u.regexAlt(ready + caching),
        null,
        'A Citrix site reports its License Server as not ready for license activation.',
        u.fill(
          'Delivery Controller site {{ $labels.site }} reports License Server '
          + '{{ $labels.instance }} as {{ $labels.status }} (not [[ready]]): licensing '
          + 'through the License Activation Service does not work, and file-based '
          + 'licenses end on 15 April 2026.',
          { ready: std.join(' or ', ready) },
        ),
      ),
      a.alert(
        c, 'CitrixLicenseCachingModeActive',
        'citrix_license_site_license_server_status{status=~"%s"} == 1' % u.regexAlt(caching),
        null,
        'A Citrix site runs in license caching mode.',
        'Delivery Controller site {{ $labels.site }} cannot reach License Server '
        + '{{ $labels.instance }} (status {{ $labels.status }}) and runs in license caching '
        + 'mode: sessions continue from cached license data for a limited time only.',
      ),
    ],
  },
}
