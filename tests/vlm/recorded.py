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

# --- Outputs for the guard's rules (type, place, stable) and clause-level negation. ---------

# MedGemma-style answer: a consolidation claimed where the images show an effusion.
TYPE_MISMATCH = """```json
{"narrative": "Compared with the prior, there is new airspace consolidation at the right base.",
 "findings": [{"finding": "consolidation", "side": "right", "zone": "lower", "change": "new",
               "urgent": false, "confidence": 0.71}]}
```"""

# A mass called a nodule: the same round lesion either side of 30 mm.
NODULE_FOR_MASS = ('{"narrative": "The left mid zone nodule has enlarged since the prior.", "findings": '
                   '[{"finding": "nodule", "side": "left", "zone": "mid", "change": "enlarged", '
                   '"urgent": false, "confidence": 0.66}]}')

# No side, and no zone: nothing to check the claim at.
UNLOCALISED = ('{"narrative": "Interval increase in airspace opacity.", "findings": '
               '[{"finding": "opacity", "side": null, "zone": null, "change": "increased", "confidence": 0.58}]}')
SIDE_WITHOUT_ZONE = ('{"narrative": "New right-sided consolidation.", "findings": '
                     '[{"finding": "consolidation", "side": "right", "change": "new", "confidence": 0.6}]}')

# A pneumothorax claimed with its side only (pleural findings are placed by side).
PTX_SIDE_ONLY = ('{"narrative": "New left pneumothorax.", "findings": [{"finding": "pneumothorax", '
                 '"side": "left", "change": "new", "urgent": true, "confidence": 0.8}]}')

# A stable claim, on its own.
STABLE_NODULE = ('{"narrative": "Left upper zone nodule, unchanged in size.", "findings": '
                 '[{"finding": "nodule", "side": "left", "zone": "upper", "change": "unchanged", '
                 '"urgent": false, "confidence": 0.7}]}')

# Prose (no JSON) where a negation covers only its own clause.
PROSE_NEGATION_THEN_URGENT = "No effusion; large left pneumothorax."
PROSE_NEGATION_LIST = ("IMPRESSION: Compared with the prior study, no pleural effusion, consolidation or "
                       "pneumothorax. Heart size normal.")
PROSE_NEGATION_AND_POSITIVE = ("The lungs are clear without effusion, and there is a new right apical "
                               "pneumothorax measuring 2 cm.")
PROSE_RESOLVED_PTX = "The previously seen left apical pneumothorax has resolved. No new consolidation."
PROSE_BUT_PTX = "No focal consolidation but a small left pneumothorax is now present."
