// The exporter's own health and its release catalog (alerts link the whole fleet).
local a = import '../lib/alert.libsonnet';
local p = import '../lib/promql.libsonnet';
local u = import '../lib/util.libsonnet';

{
  group(c):: {
    local stale = u.num(u.number('releaseCatalogStaleDays', c.releaseCatalogStaleDays)),
    local refreshDays = u.num(u.number('releaseCatalogRefreshStaleDays', c.releaseCatalogRefreshStaleDays)),
    local refreshTs = 'citrix_license_release_catalog_last_refresh_timestamp_seconds',
    name: 'citrix-license.exporter',
    rules: [
      a.alert(
        c, 'CitrixLicenseExporterDown',
        'up{%s} == 0' % u.text('exporterSelector', c.exporterSelector),
        null,
        'The Citrix License exporter cannot be scraped.',
        u.fill(
          'Prometheus has failed to scrape the Citrix License exporter at '
          + '{{ $labels.instance }} (job {{ $labels.job }}) for [[for]]: no License Server '
          + 'is watched until it is back.',
          { 'for': a.forText(c, 'CitrixLicenseExporterDown') },
        ),
        fleet=true,
      ),
      a.alert(
        c, 'CitrixLicenseExporterConfigReloadFailed',
        'citrix_license_exporter_config_last_reload_successful == 0',
        null,
        'The Citrix License exporter rejected its changed configuration.',
        u.fill(
          'The exporter at {{ $labels.instance }} failed to load its changed '
          + 'configuration and keeps running the one it loaded at [[loaded]]; the exporter '
          + 'log lists every problem of the file.',
          { loaded: u.tsOf('citrix_license_exporter_config_last_reload_success_timestamp_seconds',
                           p.INSTANCE, 'an unknown time') },
        ),
        fleet=true,
      ),
      a.alert(
        c, 'CitrixLicenseReleaseCatalogStale',
        '(time() - citrix_license_release_catalog_latest_release_timestamp_seconds) / %d > %s'
        % [u.DAY, stale],
        null,
        "The exporter's release catalog looks out of date.",
        u.fill(
          'The newest License Server release in the catalog of the exporter at '
          + '{{ $labels.instance }} is [[age]] days old (threshold [[stale]] days): Citrix '
          + 'has probably released a newer build since, and update deadlines computed from '
          + 'this catalog come too late. Add the new release to the catalog override file.',
          { age: '{{ printf "%.0f" $value }}', stale: stale },
        ),
        fleet=true,
      ),
      // The last attempt failed, or no complete success for days (a timestamp of 0, a source
      // that never succeeded, counts as very old). Both branches give the same labels, and
      // $value differs by branch, so the description prints looked-up values only.
      a.alert(
        c, 'CitrixLicenseReleaseCatalogRefreshFailing',
        'citrix_license_release_catalog_last_refresh_success == 0\nor\n(time() - %s) / %d > %s'
        % [refreshTs, u.DAY, refreshDays],
        null,
        'The exporter cannot refresh its release catalog from its catalog sources.',
        u.fill(
          'The exporter at {{ $labels.instance }} fails to refresh its release catalog from '
          + 'the configured catalog sources (last attempt: [[attempt]]; every source last read '
          + 'successfully: [[last]]; threshold [[days]] days). Releases published since are '
          + 'missing, so update deadlines can come too late; the exporter log names the '
          + 'failing source and the reason.',
          {
            attempt: u.exists('citrix_license_release_catalog_last_refresh_successSEL == 0',
                              p.INSTANCE, 'failed', 'succeeded'),
            last: u.lookup(refreshTs + 'SEL != 0', p.INSTANCE, 'value | humanizeTimestamp', 'never'),
            days: refreshDays,
          },
        ),
        fleet=true,
      ),
    ],
  },
}
