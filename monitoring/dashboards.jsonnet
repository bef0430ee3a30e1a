// Every dashboard of the mixin, one file each: jsonnet -m grafana/dashboards monitoring/dashboards.jsonnet
(import 'mixin.libsonnet').grafanaDashboards
