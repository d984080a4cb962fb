"""``slo sweep``: a sweep's trials run, recorded and promoted (above slo.runner and slo.report)."""
