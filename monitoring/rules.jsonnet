// The recording rules alone, as node-mixin renders them: jsonnet -S monitoring/rules.jsonnet
std.manifestYamlDoc((import 'mixin.libsonnet').prometheusRules)
