// The dashboards, keyed by file name (`jsonnet -m <dir> monitoring/dashboards.jsonnet`).
local fleet = import 'citrix-license.libsonnet';

{
  grafanaDashboards+:: {
    'citrix-license.json': fleet.dashboard($._config),
  },
}
