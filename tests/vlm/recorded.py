"""Recorded model outputs (what real VLMs write) for the parser and guard tests."""

VALID_JSON = """{"narrative": "New right lower zone effusion. Left upper nodule unchanged.",
 "findings": [
  {"finding": "effusion", "side": "right", "zone": "lower", "change": "new", "urgent": false, "confidence": 0.82},
  {"finding": "nodule", "side": "left", "zone": "upper", "change": "stable", "urgent": false, "confidence": 0.6}
 ]}"""

JSON_IN_PROSE = """Sure! Here is my comparison of the two radiographs.

```json
{
  "narrative": "Interval worsening of the right basal consolidation.",
  "findings": [
    {"finding": "Pneumonia", "side": "R", "zone": "base", "change": "worse", "urgent": "no", "confidence": "75%"}
  ]
}
```

Let me know if you need anything else."""

JSON_IN_PROSE_NO_FENCE = (
    'Comparison done. {"narrative": "Left pneumothorax has resolved.", "findings": '
    '[{"finding": "pneumothorax", "side": "left", "zone": "upper", "change": "resolved", '
    '"urgent": false, "confidence": 0.9}]} That is all.'
)

# Trailing commas, Python literals, single quotes.
NEAR_JSON = "{'narrative': 'Stable cardiomegaly.', 'findings': [{'finding': 'cardiomegaly', 'side': None, " \
            "'zone': None, 'change': 'unchanged', 'urgent': False, 'confidence': 0.7,},],}"

# Cut off by the token limit.
TRUNCATED = ('{"narrative": "New left apical pneumothorax.", "findings": [{"finding": "pneumothorax", '
             '"side": "left", "zone": "upper", "change": "new", "urgent": true, "confidence": 0.9}, '
             '{"finding": "effusion", "side": "ri')

BROKEN = '{"narrative": "Right effusion" "findings": [{"finding": effusion side: right}'

PROSE_ONLY = "FINDINGS: The lungs are clear. No pleural effusion or pneumothorax. Heart size is normal."

PROSE_URGENT = "There is a large left pneumothorax with mediastinal shift. Recommend urgent review."

# Comparison words although there was no prior.
NO_PRIOR_WORDS = ('{"narrative": "New right lower consolidation, worse than before; heart unchanged.", '
                  '"findings": [{"finding": "consolidation", "side": "right", "zone": "lower", "change": "new", '
                  '"urgent": false, "confidence": 0.7}]}')

URGENT_UNSUPPORTED = ('{"narrative": "New right pneumothorax.", "findings": [{"finding": "pneumothorax", '
                      '"side": "right", "zone": "upper", "change": "new", "urgent": true, "confidence": 0.55}]}')

URGENT_INVALID_ENTRY = ('{"narrative": "Something urgent.", "findings": [{"finding": "tension physiology", '
                        '"change": "???", "urgent": true}]}')
