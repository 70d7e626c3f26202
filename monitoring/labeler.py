"""Report labeler: turns report text (a draft or a signed final report) into findings of the
shared vocabulary with change, side, zone, uncertainty and urgency, so a radiologist's
wording can be compared with the AI's findings field by field (monitoring.concordance).

How it reads a sentence (NegEx-style rules; measured on the dev sets of tests/monitoring/labelled_set.py,
and once, frozen, on a blind held-out set written by someone who never read this file):

- abbreviations are expanded first (PTX, ETT, NGT, IJ; lobes and zones RUL...LLL, RLZ...; "R"/"L";
  "R > L"); "not present on 14/06", "not seen previously", "absent on the prior" become "newly seen",
  so they read as new and never as negation; "now 4 cm, previously 2 cm" becomes a change word;
- a sentence is cut into clauses at `;`, "but", "however", "whereas", "while", "although" and at
  "and there is" / "and a ...": a change word only speaks for mentions of its own clause (unless
  the sentence ends "both/all <change>");
- in a clause, a change word placed right before a finding ("new left effusion", "interval
  enlargement of the pneumothorax") belongs to that finding; otherwise to the finding before it
  ("Left pneumothorax, increased in size."); a change word ending a clause after "X and Y"
  speaks for both ("effusions and atelectasis, unchanged"); a stated change beats "again seen";
  "Left pneumothorax. This is new." carries the change back;
- a finding with no change word has change `unknown` (never an invented `stable`), or
  `no_prior` in a report without a prior;
- side and zone come from the words of the finding's own phrase (base, apex, lingula, perihilar,
  mid zone, retrocardiac, costophrenic...), then from the words right after it ("effusion on the
  right"); a finding linked to the one before ("left effusion with adjacent atelectasis", "LLL
  collapse/consolidation") shares its side; a description ("left basal opacity", "blunting of the
  costophrenic angle", "apical lucency") followed by a named finding gives it its side, zone and change;
- a hydro-/haemo-/pyopneumothorax is a pneumothorax and an effusion; a nodule of 3 cm or more is a mass;
- a hedge (possible, cannot exclude, may represent, likely, "?", a hedged change word...) marks the
  finding uncertain; negation ("no", "without", "not seen", "excluded") removes it and lists it in
  `negated`;
- urgent is the project's rule, `priorwatch.vocabulary.is_urgent`: a new or worsened pneumothorax or a
  new large pleural effusion (asserted), or a malpositioned tube or line (asserted: NG tube in the
  airway or oesophagus, ETT in a bronchus or the pharynx or outside 2-8 cm above the carina, a line in
  an artery or a neck vein...); and a documented critical-result communication ("discussed with
  Dr X at 14:05"; a request to discuss is not one).

>>> [(lb.finding, lb.change, lb.side) for lb in label_report("Left pneumothorax, increased in size.").labels]
[('pneumothorax', 'worsened', 'left')]
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from priorwatch.vocabulary import Change, FindingType, is_urgent

UNKNOWN = "unknown"  # no change stated: compatible with any change in concordance

# --- vocabulary ------------------------------------------------------------------------------

_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*"
_PRIOR_REF = (  # words that name an earlier examination ("not present on 14/06", "... on the prior film")
    r"(?:the |a |an |his |her |their )?(?:prior|previous|previously|earlier|preceding|last|admission|yesterday|"
    r"initial|original|baseline|old|\d|" + _MONTH + r"|(?:mon|tues|wednes|thurs|fri|satur|sun)day|"
    r"(?:morning|evening|overnight|night|admission|preoperative|pre-?op|postoperative|post-?op|outside|comparison|"
    r"study|film|radiograph|examination|exam|cxr|x-?ray|imaging|image)s? (?:study |film |radiograph |examination |"
    r"exam |cxr |x-?ray |image )?(?:of|from|dated|on|performed|taken|obtained))"
)
def _size_change(m: re.Match[str]) -> str:
    """"increased" or "decreased" for "<now> ... previously <then>" ("" when equal)."""
    now = float(m.group(1)) * (10 if m.group(2) == "cm" else 1)
    then = float(m.group(3)) * (10 if m.group(4) == "cm" else 1)
    return "increased" if now > then else "decreased" if now < then else ""


_ABBREV: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = [
    # Lobes and zones by initials: RUL, RML, RLL, LUL, LLL; RUZ, RMZ, RLZ, LUZ, LMZ, LLZ.
    *((re.compile(rf"\b{s[0]}{z[0]}{k[0]}\b"), f"{s} {z} {k}")
      for s in ("right", "left") for z in ("upper", "middle", "lower") for k in ("lobe", "zone")
      if not (s == "left" and z == "middle" and k == "lobe")),
    # "Not present on 14/06", "not seen previously", "not previously visible": a finding new since the
    # prior, not a negated one. Rewritten to a change word before negation is read.
    (re.compile(r"\b(?:(?:which |that )?(?:was|were|is|are) )?(?:not|absent) (?:previously |before )?"
                r"(?:present|seen|visible|evident|identified|demonstrated|apparent|visualised|visualized|noted|shown|"
                r"there|appreciated)?\s*(?:previously|before|earlier(?: today)?|yesterday|(?:this|yesterday) (?:morning|"
                r"afternoon|evening)|last night|(?:on|in|at|from|compared (?:with|to)) " + _PRIOR_REF + r")[\w/.-]*"),
     " newly seen"),
    # "now 4 cm, previously 2 cm": a measured change in size.
    (re.compile(r"\b(\d+(?:\.\d+)?) ?(mm|cm)\b(?=[^.;]{0,40}?\b(?:previously|from|was|compared (?:with|to)|on the prior)\W+"
                r"(\d+(?:\.\d+)?) ?(mm|cm)\b)"), lambda m: f"{m.group(0)} {_size_change(m)}"),
    (re.compile(r"\b(?:(?:which |that )?(?:was|were|is|are) )?not (?:previously|formerly) "
                r"(?:present|seen|visible|evident|identified|demonstrated|apparent|noted|shown)\b"), " newly seen"),
    (re.compile(r"\b(?:previously|formerly) (?:absent|clear|normal)\b"), " newly seen"),
    (re.compile(r"\b(?:there is |there are )?no longer (?:an?|any) "), "resolved "),  # "no longer any effusion": gone
    (re.compile(r"\bptx\b"), "pneumothorax"),
    (re.compile(r"\bett?\b(?!\s*al)"), "endotracheal tube"),
    (re.compile(r"\bngt\b"), "nasogastric tube"),
    (re.compile(r"\bng\b"), "nasogastric"),
    (re.compile(r"\bij\b"), "internal jugular"),
    (re.compile(r"\bcvc\b"), "central venous catheter"),
    (re.compile(r"\b(?:bilat|b/l)\b\.?"), "bilateral"),
    (re.compile(r"\brt\b\.?(?=\s*[a-z(])"), "right"),
    (re.compile(r"\blt\b\.?(?=\s*[a-z(])"), "left"),
    (re.compile(r"\b([rl])\s*>\s*([rl])\b"), "bilateral, \\1 greater than \\2"),
    # "R"/"L" shorthand: a lone letter before a word ("R mid zone", "L apical PTX", "(R) effusion", "R 6th rib") or
    # after "the" ("on the R"), not after a number ("2 l").
    (re.compile(r"(?<![\d.])(?<![\d.]\s)\br\b\)?(?=[\s-]+[a-z0-9]|\s*$)|(?<=\bthe )r\b(?!-)"), "right"),
    (re.compile(r"(?<![\d.])(?<![\d.]\s)\bl\b\)?(?=[\s-]+[a-z0-9]|\s*$)|(?<=\bthe )l\b(?!-)"), "left"),
    (re.compile(r"o(?=edema)"), ""),
    (re.compile(r"(?<=[a-z])-(?=(?:zone|lobe|lung)\b)"), " "),
]

_FINDINGS: dict[str, list[str]] = {
    FindingType.pneumothorax: [r"(?:tension )?(?:(?:hydro|ha?emo|pyo)-?)?pneumothora(?:x|ces)", r"apical lucency",
                               r"(?:visible )?(?:visceral )?pleural (?:line|edge)", r"(?:visible )?lung edge"],
    FindingType.effusion: [r"(?:pleural )?effusions?", r"(?:pleural|fissural|loculated|subpulmonic) fluid",
                            r"fluid in the (?:\w+ )?(?:horizontal |oblique |minor |major )?fissure", r"ha?emothora(?:x|ces)", r"hydrothora(?:x|ces)",
                            r"empyemas?", r"blunting of the (?:\w+ )?costophrenic angles?",
                            r"(?:blunted|blunting of) (?:the )?(?:\w+ )?costophrenic angles?", r"costophrenic (?:angle )?blunting"],
    FindingType.consolidation: [
        r"consolidations?", r"consolidative opacit(?:y|ies)", r"airspace (?:disease|opacit(?:y|ies)|shadowing)",
        r"pneumonias?", r"infiltrates?", r"infections?", r"infective (?:changes?|process)", r"air ?bronchograms?",
        r"ground-?glass (?:opacit(?:y|ies)|change|changes|shadowing)", r"(?:lung )?abscess(?:es)?",
        r"(?:airspace |alveolar |patchy |confluent |focal )?(?:opacit(?:y|ies)|opacification|shadowing)",
    ],
    FindingType.edema: [r"(?:pulmonary |interstitial |alveolar )?edema", r"(?:pulmonary )?(?:vascular|venous) congestion",
                        r"fluid overload", r"(?:interlobular )?septal lines", r"kerley (?:b )?lines",
                        r"(?:upper (?:lobe|zone) )?(?:venous |vascular |blood )?(?:diversion|redistribution)"],
    FindingType.atelectasis: [r"atelectas[ie]s", r"volume loss", r"(?:linear|plate-?like|discoid|band-?like) (?:opacit(?:y|ies)|shadowing)", r"atelectatic (?:change|changes|opacit(?:y|ies))", r"(?:lobar |lobe )?collapse"],
    FindingType.cardiomegaly: [
        r"cardiomegaly", r"enlarged (?:heart|cardiac silhouette)", r"cardiac enlargement",
        r"(?:heart|cardiac silhouette|cardiac shadow|cardiac contour)(?: size)? (?:is|remains|appears|looks) (?:still )?"
        r"(?!not )(?:\w+ )?enlarged", r"(?:heart|cardiac silhouette)(?: size)?\s*[:-]\s*(?:\w+ )?enlarged",
        r"(?:heart|cardiac) size(?= (?:has |have |is )?(?:increased|increasing|enlarged|enlarging|larger|grown|decreased|"
        r"smaller|reduced))", r"(?:cardiothoracic ratio|ctr)(?= (?:is |has |remains )?(?:now )?(?:increased|enlarged|raised|"
        r"decreased|reduced|larger|smaller|stable|unchanged))",
    ],
    FindingType.nodule: [r"nodules?", r"nodular opacit(?:y|ies)", r"(?:calcified )?granulomas?"],
    FindingType.mass: [r"mass(?:es)?", r"cavitating (?:lesion|mass|opacity)", r"tumou?rs?", r"neoplasms?", r"mass-?like (?:opacit(?:y|ies)|lesions?|shadow(?:ing)?)",
                       r"(?:lung|pulmonary|hilar) (?:lesion|cancer|carcinoma|malignancy)"],
    FindingType.support_device: [
        r"(?:endotracheal|nasogastric|orogastric|nasojejunal|enteric|chest|feeding|tracheostomy|et|ng|og|nj|"
        r"fine-?bore(?: feeding)?|dobhoff|gastrostomy|jejunostomy|peg|intercostal|pleural|drainage) tubes?", r"tube",
        r"(?:lines and tubes|tubes and lines|support devices|lines|tubes)",
        r"(?:central venous |central |picc |midline |internal jugular |subclavian )?(?:line|catheter)s?",
        r"picc", r"pacemakers?(?: leads?)?", r"pacers?", r"(?:cardiac )?devices?", r"port-?a-?cath", r"(?:chest )?drains?",
        r"leads?", r"swan-?ganz", r"(?:\w+ )?stents?", r"(?:sternotomy|sternal) wires?", r"a?icds?", r"defibrillators?", r"loop recorders?",
        r"(?:ecg |monitoring )?electrodes?",
        r"(?:o?esophageal|endobronchial|(?:right |left )?(?:main(?:[- ]?stem)? )?bronch(?:us|ial)) intubation",
    ],
    FindingType.other: [
        r"fractures?", r"subcutaneous emphysema", r"emphysema", r"fibrosis", r"hernias?", r"pneumomediastinum",
        r"scarring", r"pleural thickening", r"degenerative changes?", r"(?:elevated|raised|high) (?:right |left )?hemi-?diaphragm",
        r"elevation of the (?:right |left )?hemi-?diaphragm",
        r"hyper-?(?:inflat|expan)\w*", r"copd", r"bullae?", r"bullous (?:change|disease)s?", r"emphysematous(?: changes?)?",
        r"(?:subcutaneous|surgical) (?:air|gas)", r"surgical emphysema", r"(?:widened|widening of the) mediastinum",
        r"mediastinal widening", r"(?:prosthetic|replacement) (?:\w+ )?valves?", r"valve replacement",
        r"pneumoperitoneum", r"pericardial effusions?", r"bronchiectasis", r"interstitial (?:lung disease|fibrosis)",
        r"(?:calcified )?pleural plaques?", r"(?:pulmonary )?infarcts?", r"free (?:intraperitoneal |subdiaphragmatic |intra-abdominal )?(?:gas|air)",
        r"subdiaphragmatic (?:gas|air)", r"(?:hilar |mediastinal )?(?:lymph)?adenopathy", r"hilar enlargement",
    ],
}
_FINDING_RES = [(str(f), re.compile(r"\b(?:" + "|".join(sorted(p, key=len, reverse=True)) + r")\b"))
                for f, p in _FINDINGS.items()]  # longer patterns first: "mass-like opacity" before "mass"

# Normal statements about the heart negate cardiomegaly.
_NORMAL_HEART = re.compile(
    r"\b(?:heart size is normal|normal heart size|heart size (?:is )?(?:at the upper limit of |within )normal(?: limits)?|"
    r"cardiac silhouette is (?:normal|within normal limits)|normal cardiac silhouette|"
    r"cardiomediastinal silhouette is (?:normal|within normal limits|unremarkable)|"
    r"heart is (?:normal|not enlarged) in size|no cardiac enlargement|"
    r"(?:heart|heart size|cardiac silhouette|cardiac size|cardiac shadow) (?:is|are|remains|appears) not (?:\w+ )?enlarged|"
    r"(?:heart size|cardiac size|heart) (?:is )?(?:normal|within normal limits)|"
    r"normal (?:cardiomediastinal|cardiac|mediastinal and cardiac) (?:contours?|silhouettes?|outlines?|size)|"
    r"cardiomediastinal (?:contours?|silhouettes?|outlines?) (?:is |are )?(?:normal|within normal limits|unremarkable))\b"
)
# A normal statement about the costophrenic angles negates an effusion.
_CLEAR_ANGLES = re.compile(r"\b(?:costophrenic angles? (?:is |are |remain )?(?:clear|sharp|preserved|normal)|"
                           r"(?:clear|sharp) costophrenic angles?)\b")

_CLAUSE = re.compile(r";|\bbut\b(?! (?:stable|unchanged|similar|otherwise unchanged)\b)|\bhowever\b,?|\bwhereas\b|\bwhile\b|\balthough\b|\band (?=there\b|a\b|an\b|the\b)")
_SENTENCE = re.compile(r"\.(?=\s|$)|\n|(?<=\?)\s+")  # a "?" stays with its sentence: it hedges ("new effusion?")

_PRE_NEG = re.compile(
    r"\b(?:no evidence of|no signs? of|negative for|free of|absence of|without|nil|no(?! (?:\w+ ){0,3}?change)|"
    r"not(?! changed| significantly| be excluded| excluded)|nor|ruled out)\b"
)
_POST_NEG = re.compile(
    r"^[\s:-]*(?:none|nil|negative|absent)\b|^[\s,]*(?:(?:is|are|was|were|has been|have been)\s+)?(?:excluded|ruled out)\b|^[\s,]*(?:(?:is|are|was|were|has|have been)\s+)?(?:(?:not|cannot be|can't be|"
    r"could not be) (?:seen|identified|present|visualized|visualised|demonstrated|appreciated)|absent)\b"
)
_NEG_SCOPE_BREAK = {"is", "are", "was", "were", "has", "have", "which", "with", "remains", "remain", "persists",
                    "seen", "noted", "there", "following", "after", "since", "in", "and", "than", "apart", "except",
                    "besides", "aside", "save", "though", "but"}
_NEG_LIST_WORDS = {
    "or", "and", "nor", "of", "a", "an", "any", "the", "focal", "acute", "large", "small", "moderate", "significant",
    "definite", "pleural", "airspace", "evidence", "signs", "sign", "other", "residual", "remaining", "new",
    "visible", "appreciable", "suspicious", "pulmonary", "interval", "further", "obvious", "sizeable", "discrete", "overt", "frank",
}
_NEG_WINDOW = 8  # tokens between a negation cue and the finding it may reach

_UNCERTAIN_PRE = re.compile(
    r"\b(?:possible|possibly|probable|probably|perhaps|may represent|may reflect|may be|might|could be|could represent|"
    r"could reflect|cannot exclude|can ?not exclude|questionable|question of|suspicious for|suggestive of|suggests|"
    r"suggesting|suggest|concerning for|worrying for|worrisome for|raising the possibility|possibility of|"
    r"likely|equivocal|suspected|presumed|differential|versus|vs|query)\b|\?"
)
_UNCERTAIN_POST = re.compile(
    r"^[\s,]*(?:\w+\s+){0,6}?(?:(?:cannot|can ?not|could not|can't) be (?:\w+ )?(?:excluded|ruled out)|"
    r"not (?:be )?(?:\w+ )?excluded|is (?:possible|suspected|likely|questioned|queried|not excluded)|"
    r"are (?:possible|suspected|likely)|probably|perhaps|possibly|likely|(?:may|might|could) (?:represent|reflect|be)|"
    r"(?:is|are) (?:questionable|equivocal|uncertain|queried))\b|^\s*\?"
)

# Change words; order matters only where two patterns overlap (the longer phrase is listed first).
_CHANGE_CUES: list[tuple[str, str]] = [
    (Change.improved, r"(?:almost|nearly|near|largely|partially|partly|mostly|incompletely|not completely|not fully)"
                      r"(?:[- ]complete|[- ]completely|[- ]fully|[- ]entirely|[- ]total)? (?:resolved|resolution|cleared|"
                      r"clearance|re-?expanded)|settled|settling|"
                      r"re-?expanded|re-?expansion|resolving|less (?:conspicuous|prominent|"
                      r"extensive|dense|apparent|marked|pronounced|confluent|widespread|obvious|evident|severe)|now (?:small|smaller|trace|tiny|mild)"),
    (Change.worsened, r"previously (?:small|smaller|trace|tiny|minimal|mild)|more (?:conspicuous|prominent|extensive|dense|apparent|marked|"
                      r"pronounced|confluent|widespread|obvious|evident|severe)|now (?:moderate|large|larger|"
                      r"massive|extensive)|has grown|grown|increased|increasing|increase|worse|worsened|worsening|"
                      r"enlarging|enlargement|enlarged|larger|progression|progressed|progressive|extension|re-?accumulat\w*|"
                      r"bigger|extended|spread|deteriorat\w*|expanded|expanding"),
    (Change.resolved, r"(?:has |have )?(?:gone|disappeared)|resolved|resolution|no longer (?:seen|visible|present|identified|evident|demonstrated)|"
                      r"cleared|clearing|removed|removal|withdrawn and removed"),
    (Change.new, r"new|newly|interval development|development|interval appearance|(?:has |have )?developed|developing|"
                 r"(?:has |have )?(?:since )?(?:re-?)?appeared|reappearance|recurrent|recurrence|recurred|de novo|"
                 r"interval placement|placement|placed|inserted|insertion|now seen|now present"),
    (Change.improved, r"previously (?:large|larger|massive|extensive)|decreased|decreasing|decrease|improved|improving|improvement|smaller|reduced|reduction|"
                      r"diminished|regression|regressed"),
    (Change.stable, r"no (?:further |significant |definite |interval |appreciable )?(?:increase|enlargement|progression|"
                    r"worsening|growth|decrease|reduction|improvement)|(?:has |have )?not (?:\w+ )?(?:increased|enlarged|"
                    r"grown|worsened|progressed|decreased|reduced|improved)|stable|unchanged|similar|persistent|persisting|persists|again (?:seen|noted|demonstrated|"
                    r"visible)|redemonstrated|re-demonstrated|no (?:\w+ ){0,3}?change|static|"
                    r"not (?:significantly )?changed|as before|as previously|as (?:on|in) the (?:prior|previous|last)|ongoing|remains?"),
]
_CHANGE_RE = re.compile(r"\b(?:" + "|".join(f"(?P<c{i}>{p})" for i, (_, p) in enumerate(_CHANGE_CUES)) + r")\b")

_HYDRO = re.compile(r"(?:tension )?(?:hydro|ha?emo|pyo)-?pneumothora")
# "Large" by word or by what the fluid does (fills most of a hemithorax, shifts the mediastinum).
_SIZE_LARGE = re.compile(r"\b(?:large|massive|sizeable|sizable|substantial|huge|extensive|very large|moderate to large|"
                         r"moderate-(?:to-)?large|occupying (?:most|much|the majority|two-thirds|three-quarters|half|the whole)|"
                         r"filling (?:most|much|the majority|the whole)|(?:complete |near-?complete )?white-?out|"
                         r"(?:mediastinal|contralateral|tracheal) shift|shift of the mediastinum)\b")

_NO_PRIOR = re.compile(
    r"\b(?:no (?:prior|previous|comparison)(?: (?:study|studies|exam|examination|imaging|films?|radiographs?))?"
    r"(?: (?:is |are )?available)?|without comparison|none available for comparison|comparison: none)\b"
)
# A documented critical-result communication (urgent in a report by the project's rule).
_CRITICAL = re.compile(
    r"\b(?:critical (?:result|finding|value)s?|urgent (?:result|finding|report)s?|"
    r"(?:communicated|discussed|conveyed|relayed|reported|handed over|escalated|telephoned|phoned|called|"
    r"emailed|paged|bleeped|notified|informed|alerted|made aware)\b(?:\W+\w+){0,6}?\W+"
    r"(?:to|with|dr|doctor|registrar|consultant|team|clinician|nurse|sho|fy\d|on-?call|referr\w*|ward)\b|"
    r"d/w|(?:(?:referring|requesting|clinical|treating|ward|on-?call|medical|surgical|icu|itu|ed|a&e) )?"
    r"(?:team|doctor|clinician|registrar|consultant|physician|nurse|referrer|requester|gp)s? (?:was |were |has been |have been )?"
    r"(?:informed|notified|called|telephoned|phoned|contacted|made aware|alerted|told|paged)|"
    r"dr\.? [a-z'-]+(?: \([^)]*\))? (?:was |has been )?(?:informed|notified|called|telephoned|phoned|contacted|made aware|"
    r"alerted|paged)|verbal(?:ly)? (?:report\w*|communicat\w*|handover)|report given to|"
    r"(?:team|clinician|doctor|registrar|consultant|physician|dr\.? [a-z'-]+) (?:is |are |was |were |has been |made )?aware"
    r"(?=\s*(?:$|[,.;]|at\b|by\b|of (?:the |these |this )?(?:findings?|results?|report))))"
)
_NOT_CRITICAL = re.compile(r"\b(?:no|not|non)[- ](?:urgent|emergent|critical)\b|\b(?:please|recommend\w*|suggest\w*|"
                           r"consider|should be|would be|to be|will be)\b(?:\W+\w+){0,3}?\W+(?:discuss|communicat|"
                           r"inform|notif|telephon|phon|call|contact|alert)")

# A tube or line out of place (urgent in a report by the project's rule): asserted in a clause that names a
# device or its tip, unless the clause says the position is satisfactory or has been corrected.
_MALPOSITION = re.compile(
    r"\b(?:mal-?position\w*|mis-?plac\w*|mis-?sited|incorrectly (?:positioned|placed|sited)|"
    r"(?:un|not in a )satisfactory position|unsatisfactor\w+ (?:position|placed|sited)|sub-?optimal(?:ly)? position\w*|"
    r"inappropriate(?:ly)? (?:position|placed|sited)\w*|aberrant\w*|dislodged|(?<!un)displaced(?! fracture)|migrated|"
    r"too (?:low|high|deep|distal|proximal|far)|"
    r"(?:recommend\w*|advise\w*|suggest\w*|should be|needs? to be|need\w* (?:to be )?|requires?|required|warrants?)"
    r"(?:\W+\w+){0,3}?\W+(?:withdraw\w*|retract\w*|pull\w* back|advanc\w*|re-?position\w*|re-?site\w*|re-?sit\w*|"
    r"re-?insert\w*|re-?plac\w*|remov\w*|re-?intubat\w*)|(?:withdrawal|retraction|advancement|repositioning|re-?siting|"
    r"re-?intubation|removal) (?:is |are )?(?:recommended|advised|suggested|required|needed)|do not (?:feed|use)|"
    r"consider(?:ing)? (?:\w+ )?(?:withdraw\w*|retract\w*|pull\w* back|advanc\w*|re-?position\w*|re-?sit\w*)|"
    r"bronchial (?:placement|position|intubation|course)|o?esophageal intubation|bronchus intubation|"
    r"(?:main(?:[- ]?stem)?|intermediate|lobe|lobar|segmental|right|left) bronch(?:us|i)|bronchus intermedius|endobronchial|"
    r"bronchial tree|(?:hypo|oro|naso)?pharynx|pharyngeal|vocal cords|"
    r"(?:in|into|within|at|enters?|entering|curl\w*|coil\w*) (?:the )?(?:distal |mid |proximal |upper |lower )?o?esophag\w*|"
    r"(?:coiled|curled|looped|kinked|folded)(?! (?:with)?in the (?:stomach|fundus|gastric))|"
    r"directed (?:up|cephalad|superiorly|cranially)|(?:up|cephalad|cranially|superiorly) (?:into|in) the|"
    r"azygos|extravascular|extra-?pleural|arterial (?:course|placement|position)|intra-?arterial|"
    r"(?:carotid|subclavian|axillary|femoral|brachial|brachiocephalic|innominate|vertebral) arter(?:y|ies)|aorta\b|"
    r"aortic (?:arch|knuckle|root)|side ?(?:hole|port)s? (?:\w+ ){0,2}(?:outside|beyond|external)|"
    r"(?:tip|terminat\w*|ends?) (?:\w+ ){0,3}(?:in|into|within|to) the (?:right |left )?(?:internal jugular|"
    r"contralateral|axillary|brachial|cephalic|subclavian)|"
    r"(?:passes|extends|courses|turns|runs|travels|goes|heads) (?:up |superiorly |cranially )?into the (?:right |left )?"
    r"(?:internal jugular|neck)|(?:is|be|appears|looks|seems) (?:\w+ )?arterial|"
    r"tip (?:\w+ ){0,3}(?:in|within) the (?:\w+ ){0,2}(?:soft tissues?|chest wall|subcutaneous\w*)|"
    r"(?:fallen|fell|come|pulled|slipped) out|"
    r"(?:is|lies|sits|positioned|placed) (?:rather |quite |very |slightly )?(?:high|low)\b(?! density))"
)
# A line's tip in a ventricle (a pacing lead's is meant to be there).
_LINE_IN_VENTRICLE = re.compile(r"\btip (?:\w+ ){0,3}(?:in|within|into) the (?:right |left )?ventricle")
_PACING = re.compile(r"\b(?:lead|leads|pacing|pacemaker|pacer|icd|aicd|defibrillator|wire)\b")
ETT_MIN_ABOVE_CARINA_CM = 2.0  # an endotracheal tube tip closer to the carina than this is too low (dev: "2 cm" is not)
ETT_MAX_ABOVE_CARINA_CM = 8.0  # ... and further above it than this too high (usual 5 +/- 2 cm)
_ABOVE_CARINA = re.compile(r"\b(\d+(?:\.\d+)?) ?(cm|mm) above (?:the )?carina")
_TRACHEAL = re.compile(r"\b(?:endotracheal|tracheal) tube\b")
_IMPERATIVE = re.compile(r"^\W*(?:advance|withdraw|retract|pull back|reposition|re-?site|remove)\b")  # "; advance by 3 cm"
_CARINA_LOW = re.compile(r"\b(?:at|below|beyond|distal to|abut\w*|touch\w*) the carina")  # airway tubes only
_ENTERIC_TUBE = re.compile(r"\b(?:nasogastric|orogastric|feeding|enteric|fine-?bore|dobhoff|nasojejunal|nj|og)\b")
_ENTERIC_MISPLACED = re.compile(  # an enteric tube in the airway or lung, or not reaching the stomach
    r"\b(?:into|in|within|enters?|entering|over) (?:the )?(?:(?:right|left) )?(?:trachea|airway|lungs?|pleural space|"
    r"pleura|(?:upper|middle|lower) lobe)\b|not (?:\w+ )?(?:in|reach\w*|enter\w*) the stomach|"
    r"not (?:\w+ )?below the (?:hemi)?diaphragm|(?:at|above) the (?:level of the )?carina|"
    r"(?:above|at|proximal to) the (?:gastro-?o?esophageal junction|goj|gej|"
    r"o?esophagogastric junction|diaphragm|hemidiaphragm)"
)
_PIECE = re.compile(r"[;,:]|\b(?:and|but|whereas|while|although|however)\b")
_EARLIER = re.compile(r"\b(?:previously|formerly|prior|earlier)\b")
_DEVICE_NAMED = re.compile(r"\btips?\b|\b(?:tube|line|catheter|drain|picc|cannula|lead|wire|port)s?\b|\bintubation\b")
_POSITION_OK = re.compile(
    r"\b(?:(?:satisfactor|appropriate|good|correct|acceptabl|optimal)\w* (?:position|placed|sited)\w*|"
    r"(?:satisfactor|appropriate|good|correct|acceptabl|optimal|well)\w*[- ](?:position|placed|sited)\w*|"
    r"(?:has been|was|now|since been|subsequently) (?:\w+ )?(?:withdrawn|retracted|pulled back|advanced|re-?positioned|"
    r"re-?sited|removed|corrected|replaced)|no (?:evidence of |longer )?(?:mal-?position|mis-?plac)\w*|"
    r"not (?:mal-?position|mis-?plac)\w*|(?:in|within|into) the (?:stomach|gastric|fundus)|"
    r"below the (?:left )?(?:hemi)?diaphragm)"
)

_SIDE_WORD = re.compile(r"\b(right|left|bilateral|bilaterally|both(?= (?:lungs?|sides|bases|apices|hemithora\w+|upper|mid|"
                        r"middle|lower|perihilar|hila|hilar|costophrenic|pleural|zones|lobes|lung))|bibasilar|bibasal|"
                        r"bibasally|lingula|lingular|retrocardiac)\b")
_ZONE_WORD = re.compile(
    r"\b(?:(?P<upper>apex|apices|apical|upper (?:lobe|zone|lung)s?|upper)|"
    r"(?P<middle>mid(?:dle)?[- ]?(?:lobe|zone|lung|zones|lungs|lobes)?|lingula|lingular|(?:peri|para)?hilar|hila|hilum|hilums)|"
    r"(?P<lower>base|bases|basal|basilar|bibasilar|bibasal|lower (?:lobe|zone|lung)s?|costophrenic|retrocardiac|"
    r"hemidiaphragm|infrahilar))\b"
)
_OWN_CUT = re.compile(r"\b(?:with|and|which|but|plus)\b|;")
_AFTER_CUT = re.compile(r"\b(?:with|and|which|but|plus)\b|[;,]")
# The words between two mentions that make the second share the first's side and zone
# ("left effusion with adjacent atelectasis", "LLL collapse/consolidation").
_LINKED = re.compile(r"^[\s,/]*(?:and|or|with|plus)?\s*(?:(?:adjacent|associated|overlying|underlying|surrounding|a|an|"
                     r"some|small|mild|minor|moderate|large|subsegmental|linear|patchy|basal|the)\s+)*$")
# A descriptive mention ("opacity", "shadowing", "lucency", "blunting of the costophrenic angle") followed in its
# clause by a named finding is a description of that finding, not a finding of its own.
_DESCRIPTOR = re.compile(r"opacit|shadowing|opacification|lucency|blunting|densit|pleural line|pleural edge|lung edge")
# The gap between two findings of one list ("effusions and bibasal atelectasis, unchanged"), not a relation
# between them ("pneumothorax post drain removal").
_LIST_LINK = re.compile(r"^[\s,/&]*(?:and|or|plus|as well as)?[\s,]*(?:(?!(?:post|after|following|since|with|from|due|"
                        r"secondary|of|in|at|on|which|is|are|has|have|was|were|to|for|by)\b)[a-z-]+\s+){0,3}$")
# "X and a Y, both new": the change word speaks for findings of both clauses.
_BOTH = re.compile(r"\b(?:both|all|all three|each)\s+(?:\w+\s+)?")
_BACKREF = re.compile(r"^\W*(?:this|these|it|they|both|all|which)\b")  # "Left pneumothorax. This is new."
_HEDGED_CHANGE = re.compile(r"(?:\b(?:possibly|perhaps|probably|likely|may have|might have|questionabl[ey])|\?)\s*(?:\w+\s+)?$")
_BOTH_BEFORE = re.compile(r"\b(?:both|all|all three|each)\s+(?:\w+\s+)?$")
_SIZE = re.compile(r"\b(\d+(?:\.\d+)?)\s*(mm|cm)\b")
MASS_MIN_MM = 30.0  # a lung lesion of 3 cm or more is a mass, smaller a nodule (Fleischner glossary)
_PRE_WINDOW = 8  # tokens: how far before a finding a change word may stand and still modify it
_PRE_BREAK = re.compile(r",|\b(?:is|are|was|were|has|have|had|which|and|with|without|following|after|since)\b")


@dataclass(frozen=True)
class Label:
    """One finding as stated in a report; `change` is a vocabulary change or `unknown`."""

    finding: str
    change: str
    uncertain: bool = False
    side: str | None = None
    zone: str | None = None


@dataclass(frozen=True)
class ReportLabels:
    labels: tuple[Label, ...] = ()
    urgent: bool = False  # a new/worsened pneumothorax, a new large effusion, or a critical-result cue
    no_prior: bool = False
    negated: tuple[str, ...] = field(default=())  # findings stated absent

    def pairs(self, uncertain_as_positive: bool = True) -> frozenset[tuple[str, str]]:
        return frozenset((lb.finding, lb.change) for lb in self.labels if uncertain_as_positive or not lb.uncertain)

    def findings(self, uncertain_as_positive: bool = True) -> frozenset[str]:
        """Findings present in the current image (a resolved finding is no longer present)."""
        return frozenset(
            lb.finding for lb in self.labels
            if lb.change != Change.resolved and (uncertain_as_positive or not lb.uncertain)
        )


def _normalise(text: str) -> str:
    low = (text or "").lower().replace("\u2019", "'")
    for rx, rep in _ABBREV:
        low = rx.sub(rep, low)
    return low


def _mentions(clause: str) -> list[tuple[int, int, str]]:
    """(start, end, finding) of each finding mention, longest match first where they overlap."""
    cands: list[tuple[int, int, str]] = []
    for finding, rx in _FINDING_RES:
        cands.extend((m.start(), m.end(), finding) for m in rx.finditer(clause))
    cands.sort(key=lambda c: (-(c[1] - c[0]), c[0]))
    out: list[tuple[int, int, str]] = []
    for s, e, f in cands:
        if all(e <= a or s >= b for a, b, _ in out):
            out.append((s, e, f))
    return sorted(out)


def _negated(clause: str, start: int, spans: list[tuple[int, int]]) -> bool:
    cues = list(_PRE_NEG.finditer(clause, 0, start))
    if not cues:
        return False
    cue = cues[-1]
    between = list(clause[cue.end():start])
    for s, e in spans:  # other findings in a list ("no effusion, consolidation or pneumothorax") keep the scope
        for i in range(max(s, cue.end()), min(e, start)):
            between[i - cue.end()] = " "
    tokens = re.findall(r"[a-z0-9]+|,", "".join(between))
    if len([t for t in tokens if t != ","]) > _NEG_WINDOW:
        return False
    after_comma = False
    for t in tokens:
        if t == ",":
            after_comma = True
            continue
        if t in _NEG_SCOPE_BREAK and t != "and":
            return False
        if after_comma and t not in _NEG_LIST_WORDS:
            return False
        after_comma = False
    return True


def _malpositioned(sentence: str) -> bool:
    """A tube or line stated out of place in this sentence. Read piece by piece (commas, semicolons, "and"),
    each about the last device named; a hedged, corrected or earlier ("previously") position is not."""
    if not _DEVICE_NAMED.search(sentence):
        return False
    enteric: bool | None = None
    for piece in _PIECE.split(sentence):
        if _ENTERIC_TUBE.search(piece):
            enteric = True
        elif _DEVICE_NAMED.search(piece) and not re.search(r"\btips?\b", piece):
            enteric = False
        ok = any(not re.search(r"\bnot\W+(?:\w+\W+){0,2}$", piece[:m.start()]) for m in _POSITION_OK.finditer(piece))
        if ok or _UNCERTAIN_PRE.search(piece) or _EARLIER.search(piece):
            continue
        if not enteric and not _PACING.search(sentence) and _LINE_IN_VENTRICLE.search(piece):
            return True
        above = _ABOVE_CARINA.search(piece)
        if above and not enteric and _TRACHEAL.search(sentence):
            cm = float(above.group(1)) / (10 if above.group(2) == "mm" else 1)
            if not ETT_MIN_ABOVE_CARINA_CM <= cm <= ETT_MAX_ABOVE_CARINA_CM:
                return True
        if _MALPOSITION.search(piece) or _IMPERATIVE.search(piece) or (_ENTERIC_MISPLACED if enteric else _CARINA_LOW).search(piece):
            return True
    return False


_PLACES_ONLY = re.compile(r"^(?:\W*\b(?:right|left|bilateral|both|upper|middle|mid|lower|lobes?|zones?|lingula|lingular|"
                          r"apical|basal|perihilar|bases?|apex|apices|and|the|in|of)\b)*\W*$")


def _own(phrase_before: str, phrase_after: str, last: bool) -> tuple[str, str]:
    """The parts of the text around a mention that describe it: the before-phrase after its last "with"/"and",
    the after-phrase up to its first "with"/"and" ("effusion with basal atelectasis" gives the effusion no zone),
    or its first comma where another finding follows ("effusion, increased perihilar oedema")."""
    before = phrase_before if _PLACES_ONLY.match(phrase_before) else _OWN_CUT.split(phrase_before)[-1]  # "RML and lingular"
    return before, (_OWN_CUT if last else _AFTER_CUT).split(phrase_after)[0]


def _side(phrase_before: str, mention: str, phrase_after: str, finding: str) -> str | None:
    if finding == FindingType.cardiomegaly:
        return None
    for text, last in ((mention, True), (phrase_before, True), (phrase_after, False)):
        ms = list(_SIDE_WORD.finditer(text))
        if ms:
            words = {"left" if m.group(1) in ("lingula", "lingular", "retrocardiac") else m.group(1) for m in ms}
            if words & {"bilateral", "bilaterally", "both", "bibasilar", "bibasal", "bibasally"} or {"right", "left"} <= words:
                return "bilateral"
            w = (ms[-1] if last else ms[0]).group(1)
            return "left" if w in ("lingula", "lingular", "retrocardiac") else w
    return None


def _zone(phrase_before: str, mention: str, phrase_after: str, finding: str) -> str | None:
    if re.search(r"diversion|redistribution", mention):
        return None  # "upper lobe diversion" names a sign of oedema, not where it is
    joined = phrase_before + (mention if finding != FindingType.other else " ")  # "left lower" + "lobe collapse"
    for text in (mention if finding != FindingType.other else "", joined, phrase_after):
        ms = list(_ZONE_WORD.finditer(text))
        if ms:
            m = ms[-1] if text is joined else ms[0]
            return next(k for k in ("upper", "middle", "lower") if m.group(k))
    return None


def _cue_change(m: re.Match[str]) -> str:
    for i, (change, _) in enumerate(_CHANGE_CUES):
        if m.group(f"c{i}") is not None:
            return str(change)
    return UNKNOWN  # pragma: no cover - every alternative is a named group


def _assign_changes(clause: str, mentions: list[tuple[int, int, str]]) -> tuple[list[str | None], list[bool]]:
    """The change word each mention owns (None: no change word), and whether that word is hedged
    ("perhaps slightly smaller")."""
    masked = list(clause)
    for s, e, _ in mentions:  # "cardiac enlargement" is a finding, not a change word
        for i in range(s, e):
            masked[i] = " "
    text = "".join(masked)
    out: list[str | None] = [None] * len(mentions)
    hedged = [False] * len(mentions)
    trailing: list[str] = []
    every = False  # "..., both slightly increased": the trailing change word speaks for every finding
    for m in _CHANGE_RE.finditer(text):
        change = _cue_change(m)
        nxt = next((k for k, (s, _, _) in enumerate(mentions) if s >= m.end()), None)
        prv = max((k for k, (_, e, _) in enumerate(mentions) if e <= m.start()), default=None)
        pre = False
        if nxt is not None:
            gap = clause[m.end():mentions[nxt][0]]
            pre = not _PRE_BREAK.search(gap) and len(gap.split()) <= _PRE_WINDOW
        k = nxt if pre or prv is None else prv
        if k is None:
            continue
        if out[k] is None or (pre and k == nxt) or (out[k] == Change.stable and change != Change.stable):
            # "again noted ... and has slightly increased": a stated change beats "again seen"
            out[k] = change
            hedged[k] = bool(_HEDGED_CHANGE.search(text[:m.start()]))
        if k == prv and nxt is None:
            trailing.append(change)
            every = every or bool(_BOTH_BEFORE.search(text[:m.start()]))
    if trailing:  # "effusions and atelectasis, unchanged": a clause-final change word speaks for the list
        for k in range(len(mentions) - 2, -1, -1):  # back from the last mention while the gaps are list links
            if not every and not _LIST_LINK.match(clause[mentions[k][1]:mentions[k + 1][0]]):
                break
            if out[k] is None:
                out[k] = trailing[-1]
    for k, (s, e, f) in enumerate(mentions):  # "heart remains enlarged" is one mention that says it is stable
        if out[k] is None and f == FindingType.cardiomegaly and re.search(r"\b(?:remains|still)\b", clause[s:e]):
            out[k] = str(Change.stable)
    return out, hedged


@lru_cache(maxsize=65536)
def label_report(text: str, has_prior: bool | None = None) -> ReportLabels:
    """Label one report. `has_prior=False` makes findings without a change word `no_prior`."""
    low = _normalise(text)
    no_prior = has_prior is False or bool(_NO_PRIOR.search(low))
    default_change = str(Change.no_prior) if no_prior else UNKNOWN
    labels: list[Label] = []
    large_of: list[bool] = []  # per label: stated large (for "new large effusion")
    negated: list[str] = []
    urgent = False
    last = (0, 0)  # the labels of the previous sentence that had findings
    for sentence in _SENTENCE.split(low):
        if not sentence.strip():
            continue
        if not _mentions(sentence) and _BACKREF.match(sentence) and (cue := _CHANGE_RE.search(sentence)):
            for i in range(*last):  # "Left pneumothorax. This is new."
                if labels[i].change in (UNKNOWN, Change.no_prior):
                    labels[i] = Label(labels[i].finding, _cue_change(cue), labels[i].uncertain, labels[i].side, labels[i].zone)
        start = len(labels)
        if _CRITICAL.search(sentence) and not _NOT_CRITICAL.search(sentence):
            urgent = True  # a documented critical-result communication
        if _malpositioned(sentence):
            urgent = urgent or is_urgent(FindingType.support_device, UNKNOWN, malpositioned=True)
        if _NORMAL_HEART.search(sentence):
            negated.append(str(FindingType.cardiomegaly))
            sentence = _NORMAL_HEART.sub(" ", sentence)
        if _CLEAR_ANGLES.search(sentence):
            negated.append(str(FindingType.effusion))
            sentence = _CLEAR_ANGLES.sub(" ", sentence)
        both = any(_CHANGE_RE.match(sentence, m.end()) for m in _BOTH.finditer(sentence))
        for clause in [sentence] if both else _CLAUSE.split(sentence):
            mentions = _mentions(clause)
            if not mentions:
                continue
            spans = [(s, e) for s, e, _ in mentions]
            changes, hedged_change = _assign_changes(clause, mentions)
            hedged_clause = bool(_UNCERTAIN_PRE.search(clause))
            carry: tuple[str | None, str | None, str | None] | None = None  # a descriptor's side, zone, change
            prev: Label | None = None
            for k, (s, e, finding) in enumerate(mentions):
                before = clause[mentions[k - 1][1] if k else 0:s]
                after = clause[e:mentions[k + 1][0] if k + 1 < len(mentions) else len(clause)]
                change = changes[k]
                own_before, own_after = _own(before, after, k == len(mentions) - 1)
                size = _SIZE.search(own_before + clause[s:e])
                if finding in (FindingType.nodule, FindingType.mass) and size:  # "a 4 cm nodular opacity" is a mass
                    mm = float(size.group(1)) * (10 if size.group(2) == "cm" else 1)
                    finding = str(FindingType.mass if mm >= MASS_MIN_MM else FindingType.nodule)
                if finding == FindingType.support_device:  # "tube enters the left main bronchus with its tip over ..."
                    own_after = after
                side = _side(own_before, clause[s:e], own_after, finding)
                zone = _zone(own_before, clause[s:e], own_after, finding)
                if prev is not None and prev.side and not side and _LINKED.match(before):
                    side, zone = prev.side, zone or prev.zone  # "left effusion with adjacent atelectasis"
                if carry is not None:
                    side, zone, change = side or carry[0], zone or carry[1], change or carry[2]
                later = [f for _, _, f in mentions[k + 1:] if f != FindingType.support_device]
                if _DESCRIPTOR.search(clause[s:e]) and later and not _negated(clause, s, spans):
                    carry = (side, zone, change)  # "left basal opacity, likely atelectasis": the atelectasis's
                    continue
                post_neg = bool(_POST_NEG.search(after))
                # A hydro-/haemo-/pyopneumothorax is a pneumothorax and an effusion.
                kinds = [finding, str(FindingType.effusion)] if _HYDRO.match(clause, s) else [finding]
                if change != Change.resolved and (_negated(clause, s, spans) or post_neg):
                    negated.extend(kinds)
                    continue
                uncertain = hedged_change[k] or bool(_UNCERTAIN_POST.search(after)) or bool(_UNCERTAIN_PRE.search(clause[:s])) or (
                    hedged_clause and bool(_UNCERTAIN_PRE.search(after)) and k == len(mentions) - 1
                    and bool(re.match(r"^\s*(?:is|are)?\s*(?:probably|possibly|likely)", after)))
                size_after = after if k == len(mentions) - 1 else re.split(r"\band\b|\bwith\b", after)[0]
                large = bool(_SIZE_LARGE.search(before + clause[s:e] + size_after))
                for f in kinds:
                    prev = Label(f, change or default_change, uncertain=uncertain, side=side, zone=zone)
                    labels.append(prev)
                    large_of.append(large)
        if len(labels) > start:
            last = (start, len(labels))
    urgent = urgent or any(not lb.uncertain and is_urgent(lb.finding, lb.change, large=large)
                           for lb, large in zip(labels, large_of))
    merged = _merge(labels)
    present = {lb.finding for lb in merged}
    return ReportLabels(labels=merged, urgent=urgent, no_prior=no_prior,
                        negated=tuple(dict.fromkeys(f for f in negated if f not in present)))


def _merge(labels: list[Label]) -> tuple[Label, ...]:
    """One label per finding and change: a mention with a change word absorbs the same finding's
    mentions without one; an asserted mention beats a hedged one; sides and zones fill in."""
    by_finding: dict[str, list[Label]] = {}
    for lb in labels:
        by_finding.setdefault(lb.finding, []).append(lb)
    out: list[Label] = []
    for finding, group in by_finding.items():
        known = [lb for lb in group if lb.change not in (UNKNOWN, Change.no_prior)]
        rest = [lb for lb in group if lb not in known]
        keep = known or rest
        merged: dict[str, Label] = {}
        for lb in keep:
            old = merged.get(lb.change)
            if old is None:
                merged[lb.change] = lb
                continue
            merged[lb.change] = Label(finding, lb.change, old.uncertain and lb.uncertain,
                                      _join_side(old.side, lb.side), old.zone or lb.zone)
        for lb in rest if known else []:  # fill side/zone of the known label from the bare mentions
            for ch, kl in merged.items():
                merged[ch] = Label(finding, ch, kl.uncertain, kl.side or lb.side, kl.zone or lb.zone)
        out.extend(merged.values())
    return tuple(sorted(out, key=lambda lb: (lb.finding, lb.change)))


def _join_side(a: str | None, b: str | None) -> str | None:
    if a is None or b is None or a == b:
        return a or b
    return "bilateral"
