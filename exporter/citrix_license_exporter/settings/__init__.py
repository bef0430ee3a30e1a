"""One way to read every file the exporter takes (the exporter config, the web config, release
catalogs): YAML read with line numbers and duplicate keys refused (:mod:`.yamlsource`), then
pydantic models, whose errors become (key path, reason, line) problems (:mod:`.problems`).

Why pydantic and not msgspec (measured in ``benchmarks/config_validation.py``): msgspec stops
at the first error, and this exporter must list every problem of a file at once.
"""
