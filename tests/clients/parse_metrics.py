"""Parses a /metrics scrape (file given as argv[1]) with prometheus_client's two parsers.

The OpenMetrics parser is strict (it rejects non-cumulative histogram buckets, a missing +Inf
bucket, a missing `# EOF`, bad names); the classic Prometheus text parser is what most
scrapers use. Both must accept the text. Prints one JSON line: every sample of the
OpenMetrics parse as {"name", "labels", "value"}, plus the family names of the classic parse.
"""

import json
import sys

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as prometheus_families

text = open(sys.argv[1], encoding="utf-8").read()
samples = []
for family in openmetrics_families(text):
    for s in family.samples:
        samples.append({"name": s.name, "labels": s.labels, "value": s.value})
classic = sorted({f.name for f in prometheus_families(text)})
print(json.dumps({"samples": samples, "classic_families": classic}))
