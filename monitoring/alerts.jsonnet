// The alerting rules alone, as node-mixin renders them: jsonnet -S monitoring/alerts.jsonnet
std.manifestYamlDoc((import 'mixin.libsonnet').prometheusAlerts)
