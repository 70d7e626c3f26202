"""The report labeler's vocabulary: abbreviations, finding patterns, negation, hedge and change
cues, urgency (critical result, malpositioned device) and place words. Private to
`monitoring.labeler` (its module docstring says how they are read); tuned on the dev sets of
tests/monitoring/labelled_set.py, so a change here is a change of the labeler (bump
`monitoring.dataset.LABELER_VERSION`)."""

from __future__ import annotations

import re
from collections.abc import Callable

from priorwatch.vocabulary import Change, FindingType

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
