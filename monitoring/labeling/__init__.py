"""The report labeler's parts, private to `monitoring.labeler` (whose `label_report` is the entry):
`vocabulary` holds the patterns and cues, `clauses` reads one sentence or clause."""
