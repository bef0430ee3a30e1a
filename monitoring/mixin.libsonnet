// The Citrix License monitoring mixin: alerts, recording rules and the fleet dashboard of the
// citrix-license-exporter, built from one _config (config.libsonnet). Conventions of
// node_exporter's docs/node-mixin and kubernetes-mixin; docs/mixin.md says how to use it.
(import 'config.libsonnet') +
(import 'alerts/alerts.libsonnet') +
(import 'rules/rules.libsonnet') +
(import 'dashboards/dashboards.libsonnet')
