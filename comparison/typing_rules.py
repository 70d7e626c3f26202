"""From a region's measured signs to (finding, change, large): the engine's sign rules (pure).

Why its own module: issue 28 item 6 (measurement and typing separate, each with table tests)
and the failure census of engine 0.4.10 (a new lucency read as an opacity improving, effusion
read as consolidation, consolidation as nodule). The measurements are `comparison.signs`; this
module only decides, from those numbers, what a radiologist would call the change:

- direction: an opacity improved or resolved only where the prior showed an opacity there; a
  region darker now where the prior showed none is a lucency (air), never "improved";
- pneumothorax: new peripheral or apical lucency against the chest wall without lung markings
  (vessels), a pleural line where one is seen;
- effusion: dependent and basal, on the lung base, a meniscus or a blunted costophrenic angle;
  large by its measured height;
- nodule / mass / consolidation: margin, shape (round vs irregular, air bronchograms) and size
  in mm (the 30 mm nodule / mass cut).

Named `typing_rules` rather than `typing` so it never shadows the standard library's module.
Every threshold is in `comparison.thresholds`.
"""

from __future__ import annotations

from comparison.thresholds import DEFAULT_PARAMS, EngineParams
from comparison.signs import RegionSigns
from priorwatch.vocabulary import APPEARING, Change, FindingType

__all__ = ["opacity_type", "persists", "fluid_both", "effusion_large", "type_change", "measured_large", "describe", "new_air",
           "prior_air_going", "pneumothorax_direction",
           "reconcile", "round_outline", "opacity_by_shape", "plateau"]


def opacity_type(s: RegionSigns, area: int, params: EngineParams = DEFAULT_PARAMS) -> FindingType:
    """Effusion (dependent, on the lung base), nodule / mass (round, convex, a dome of density) or
    consolidation (patchy: irregular outline, or a flat-topped patch without a dome)."""
    if s.basal:
        return FindingType.effusion
    aspect = max(s.h, s.w) / max(1, min(s.h, s.w))
    if (s.core_ratio >= 0.8 and s.peaked >= params.PLATEAU_PEAKED - 0.01) or (s.peaked >= params.PLATEAU_PEAKED + 0.01 and area >= 200):
        return FindingType.consolidation  # a plateau of density, not a dome: airspace opacity
    if s.solidity >= params.ROUND_SOLIDITY and aspect <= params.ROUND_ASPECT and s.width_mm <= params.LARGE_PATCH_MM:
        return FindingType.nodule if s.diam_mm <= params.MASS_DIAMETER_MM else FindingType.mass
    return FindingType.consolidation


def persists(s: RegionSigns, params: EngineParams = DEFAULT_PARAMS) -> bool:
    """The change is a rim or a low plateau around something that stays: a lesion that grew or shrank."""
    return s.core_ratio < 0.55 or (s.core_ratio < 0.8 and s.peaked < params.PLATEAU_PEAKED)


def fluid_both(s: RegionSigns, z: float) -> bool:
    """Fluid below the band on both images (the level moved): the effusion was there before."""
    return s.d_below < 0.6 * z and s.o_below > 10.0


def effusion_large(s: RegionSigns, lung_h: int, params: EngineParams = DEFAULT_PARAMS) -> bool:
    """A dependent opacity is large when its measured height passes `LARGE_EFFUSION_FRACTION` of the lung's."""
    return s.h >= params.LARGE_EFFUSION_FRACTION * lung_h


def _denser(s: RegionSigns, z: float, opacity: FindingType, *, params: EngineParams) -> tuple[FindingType, Change, bool]:
    """A region denser now: a pneumothorax shrinking (air at the edge on the prior, lung back now),
    else an opacity new or worse."""
    lucent_before = s.t_prior >= params.PRIOR_ABNORMAL_SHARE and s.p_sym <= -params.LUCENT_NOW_SIGMA
    if (s.markings_lost_before and (s.p_core < 0 or (s.edge and s.crescent and s.p_sym <= -params.LUCENT_NOW_SIGMA))) or (
            lucent_before and s.edge and not s.basal and s.crescent and (s.touches or s.ptx_still)):
        return FindingType.pneumothorax, (Change.improved if s.ptx_still else Change.resolved), True
    if opacity == FindingType.effusion:
        return opacity, (Change.worsened if fluid_both(s, z) else Change.new), True
    before = s.p_core >= params.OPACITY_BEFORE_SIGMA and s.p_core > params.WORSENED_PRIOR_SHARE * s.c_core
    return opacity, (Change.worsened if (before or persists(s, params=params)) else Change.new), True


def _lucent(s: RegionSigns, z: float, opacity: FindingType, *, params: EngineParams) -> tuple[FindingType, Change, bool]:
    """A region more lucent now: a resolving opacity only where the prior showed one; air against
    the chest wall where it did not."""
    opacity_before = s.t_prior >= params.PRIOR_ABNORMAL_SHARE and s.p_sym >= params.OPACITY_BEFORE_SIGMA
    lucent_now = s.t_prior < params.PRIOR_ABNORMAL_SHARE and s.c_sym <= -params.LUCENT_NOW_SIGMA
    stays = persists(s, params=params)
    if s.markings_lost_now and (s.edge or s.t_c < params.MARKINGS_LOST - 0.1):
        return FindingType.pneumothorax, (Change.worsened if s.ptx_before else Change.new), True
    if opacity == FindingType.effusion and (opacity_before or fluid_both(s, z)):
        # dependent: a basal lucency on an upright film is fluid going, never air
        return opacity, (Change.improved if fluid_both(s, z) else Change.resolved), True
    if s.edge and s.crescent and (s.touches or s.ptx_before) and (lucent_now or not opacity_before):
        # new air against the chest wall at the apex or lateral edge, where there was no
        # opacity: a pneumothorax (never read as an opacity improving)
        return FindingType.pneumothorax, (Change.worsened if s.ptx_before and not s.touches else Change.new), lucent_now
    if opacity_before or stays or not s.edge or not s.crescent:
        if not (opacity_before or stays) and not lucent_now:
            # darker now where the prior showed no opacity: a lucency the signs cannot type, never "improved"
            return FindingType.other, Change.new, False
        # an opacity that was there and is less now: typed by the prior's shape
        return opacity, (Change.improved if (stays or s.c_core > 0.45 * s.p_core) else Change.resolved), True
    # a lucency at the edge that the signs cannot type: errs towards a pneumothorax
    return FindingType.pneumothorax, Change.new, False


def type_change(sign: int, s: RegionSigns, z: float, area: int, params: EngineParams = DEFAULT_PARAMS) -> tuple[FindingType, Change, bool]:
    """The sign rules: (finding, change, typed) for a region denser (`sign` > 0) or more lucent
    now, of mean change `z` sigma and `area` px; typed False where the signs could not type it
    (its confidence is capped)."""
    opacity = opacity_type(s, area, params=params)
    return _denser(s, z, opacity, params=params) if sign > 0 else _lucent(s, z, opacity, params=params)


def describe(sign: int, s: RegionSigns, z: float, area: int, lung_h: int, params: EngineParams = DEFAULT_PARAMS) -> tuple[FindingType, Change, bool, bool]:
    """(finding, change, large, typed): `type_change` and, for an effusion, whether it is large."""
    finding, change, typed = type_change(sign, s, z, area, params=params)
    return finding, change, finding == FindingType.effusion and effusion_large(s, lung_h, params=params), typed


def measured_large(finding: FindingType, change: Change, fluid_height: float, params: EngineParams = DEFAULT_PARAMS) -> bool:
    """An effusion called new or worse whose new fluid, measured up from the prior's base
    (`comparison.fluid`, share of the lung's height), reaches `NEW_LARGE_FLUID_HEIGHT`: large,
    so urgent. Worsened counts too because the reader's new / worsened split of an effusion is
    close to a coin toss (train-5132, a new 116 mm effusion: "new" at 0.52; on 34 new large
    train-split effusions 6 were read "worsened" and 3 of those went unflagged), and a large new
    effusion read "worsened" must not lose its flag (errs towards urgent)."""
    return finding == FindingType.effusion and change in APPEARING and fluid_height >= params.NEW_LARGE_FLUID_HEIGHT


OPACITIES = (FindingType.nodule, FindingType.mass, FindingType.consolidation)
ROUND = (FindingType.nodule, FindingType.mass)


def _air_where_no_opacity(sign: int, s: RegionSigns, *, params: EngineParams) -> bool:
    """A region darker now at the chest wall or apex, darker than the patient's lung elsewhere, where
    the prior showed no opacity: new air, never an opacity going away."""
    no_prior_opacity = s.p_core < params.OPACITY_BEFORE_SIGMA and s.p_sym < params.OPACITY_BEFORE_SIGMA
    return sign < 0 and no_prior_opacity and s.edge and s.touches and s.c_sym <= -params.LUCENT_NOW_SIGMA


def _fluid_signs(s: RegionSigns, *, params: EngineParams) -> bool:
    """Dependent and basal, with a meniscus or a blunted costophrenic angle: pleural fluid."""
    return s.basal and (s.cp_angle or s.meniscus >= params.MENISCUS_RISE)


def _airspace_signs(s: RegionSigns, *, params: EngineParams) -> bool:
    """Ill-defined margin or air bronchi inside: airspace opacity, not a nodule or mass. Read only on a
    region of at least `AIRSPACE_MIN_DIAM_MM`: a smaller one is all edge on the working grid."""
    if s.diam_mm < params.AIRSPACE_MIN_DIAM_MM:
        return False
    return s.margin < params.MARGIN_ILL_DEFINED or s.bronchogram >= params.BRONCHOGRAM_SHARE


def round_outline(s: RegionSigns, params: EngineParams = DEFAULT_PARAMS) -> bool:
    """Round or oval: convex (`ROUND_SOLIDITY`), covering its moment ellipse (`ROUND_ELLIPSE_FIT`), not elongated
    (`ROUND_ASPECT`, long over short moment axis)."""
    return (s.solidity >= params.ROUND_SOLIDITY and s.ellipse_fit >= params.ROUND_ELLIPSE_FIT
            and s.axis_ratio <= params.ROUND_ASPECT)


def opacity_by_shape(s: RegionSigns, params: EngineParams = DEFAULT_PARAMS) -> FindingType | None:
    """The opacity a region's own margin, shape and size in mm say it is (issue 28's invariant), or None where
    they do not decide:

    - consolidation: a region of at least `AIRSPACE_MIN_DIAM_MM` (a smaller one is all edge) that is
      ill-defined (`edge_ratio` under `EDGE_ILL_DEFINED_RATIO`; 0 is unmeasured, a band too thin to have an
      inside, never ill-defined), holds air bronchi (`BRONCHOGRAM_SHARE`), is
      lobar / segmental (`LOBAR_SPAN`) or, with `SHAPE_IRREGULAR_AIRSPACE`, is not round; never a mass;
    - nodule under `MASS_DIAMETER_MM`, mass from it: round (`round_outline`) and sharp-margined (`edge_ratio`
      at least `EDGE_SHARP_RATIO`);
    - None: a basal region (fluid is the effusion check's), or one neither sharp and round nor airspace-like; with
      `SHAPE_PLATEAU_GUARD` also a round sharp one whose change is a plateau (`plateau`), not a dome."""
    if s.basal:
        return None
    round_ = round_outline(s, params=params)
    if s.diam_mm >= params.AIRSPACE_MIN_DIAM_MM and (
            0.0 < s.edge_ratio < params.EDGE_ILL_DEFINED_RATIO or s.bronchogram >= params.BRONCHOGRAM_SHARE
            or s.lung_span >= params.LOBAR_SPAN or (params.SHAPE_IRREGULAR_AIRSPACE and not round_)):
        return FindingType.consolidation
    if round_ and s.edge_ratio >= params.EDGE_SHARP_RATIO and not (params.SHAPE_PLATEAU_GUARD and plateau(s, params=params)):
        return FindingType.nodule if s.diam_mm < params.MASS_DIAMETER_MM else FindingType.mass
    return None


def plateau(s: RegionSigns, params: EngineParams = DEFAULT_PARAMS) -> bool:
    """The change is a flat plateau of density (airspace filling), not a dome (a sphere's path length): its hull core
    as dense as its top decile and its mean near its 95th centile (`PLATEAU_PEAKED`, as `opacity_type` reads it)."""
    return s.core_ratio >= 0.8 and s.peaked >= params.PLATEAU_PEAKED - 0.01


def reconcile(finding: FindingType, change: Change, zone: object,
              here: list[tuple[int, RegionSigns]], params: EngineParams = DEFAULT_PARAMS) -> tuple[FindingType, Change]:
    """Another reader's (finding, change) for a lung and zone, checked against the measured signs of
    the strongest changed region there of the same polarity (`here`: (sign, signs), strongest first):

    1. direction: "improved" or "resolved" opacity where every region more lucent now is new air at
       the chest wall or apex and the prior showed no opacity there -> a new pneumothorax (the
       issue's own example);
    2. an opacity typed in the lower zone whose region is basal with a meniscus or a blunted
       costophrenic angle -> effusion;
    3. with `SIGNS_CHECK_SHAPE`: a nodule, mass or consolidation retyped by the region's own margin, shape and
       size in mm where they decide (`opacity_by_shape`: round and sharp a nodule under 30 mm, a mass from it;
       ill-defined, irregular, lobar or with air bronchi consolidation); else (`SIGNS_CHECK_AIRSPACE`) a
       new or growing nodule or mass whose region is ill-defined or holds air bronchi -> consolidation.
    Anything else is left as read. Each step is switched by `thresholds.SIGNS_CHECK_*`."""
    worse = change in APPEARING
    same = [s for g, s in here if (g > 0) == worse]
    if params.SIGNS_CHECK_DIRECTION and not worse and finding in OPACITIES + (FindingType.effusion,):
        lucent = [s for g, s in here if g < 0]  # every lucent region there new air: nothing there was an opacity
        if lucent and all(_air_where_no_opacity(-1, x, params=params) for x in lucent):
            return FindingType.pneumothorax, Change.new
    if not same:
        return finding, change
    s = same[0]
    if params.SIGNS_CHECK_EFFUSION and finding in OPACITIES and getattr(zone, "value", zone) == "lower" and _fluid_signs(s, params=params):
        return FindingType.effusion, change
    if params.SIGNS_CHECK_SHAPE:
        by_shape = opacity_by_shape(s, params=params) if finding in OPACITIES and (worse or not params.SHAPE_APPEARING_ONLY) else None
        return (by_shape or finding), change
    if params.SIGNS_CHECK_AIRSPACE and finding in ROUND and worse and _airspace_signs(s, params=params):
        return FindingType.consolidation, change
    return finding, change


def new_air(sign: int, s: RegionSigns, params: EngineParams = DEFAULT_PARAMS) -> bool:
    """A pneumothorax's own signs in one region: more lucent now at the chest wall or apex and reaching it,
    where the prior showed no opacity, darker than the patient's lung elsewhere, its vessel markings lost
    (`PTX_VESSEL_RATIO`: air holds none; only where the prior showed them, `PTX_VESSELS_BEFORE`) and a visceral
    pleural line medial to it (`PTX_PLEURAL_LINE`)."""
    return (_air_where_no_opacity(sign, s, params=params) and s.vessels_p >= params.PTX_VESSELS_BEFORE
            and s.vessel_ratio <= params.PTX_VESSEL_RATIO and s.pleural_line >= params.PTX_PLEURAL_LINE)


def prior_air_going(sign: int, s: RegionSigns, params: EngineParams = DEFAULT_PARAMS) -> bool:
    """A region denser now where the prior showed air (markings lost before, a lucent pleural strip, or darker
    than the patient's lung elsewhere on the prior): a pneumothorax getting smaller there."""
    lucent_before = s.t_prior >= params.PRIOR_ABNORMAL_SHARE and s.p_sym <= -params.LUCENT_NOW_SIGMA
    return sign > 0 and (s.markings_lost_before or s.ptx_before or lucent_before)


def pneumothorax_direction(finding: FindingType, change: Change, side: list[tuple[int, RegionSigns]],
                           params: EngineParams = DEFAULT_PARAMS) -> tuple[FindingType, Change]:
    """A reader's "pneumothorax improved / resolved" checked against the measured signs of the changed
    regions of that lung (`side`: (sign, signs) per region): improved or resolved only where a region shows
    the prior's air going; where none does and one shows new air (`new_air`) the pneumothorax is new
    (worsened where the strip by the wall was already lucent on the prior). A collapsing lung is denser
    now, which a reader of the difference can take for a pneumothorax resolving. Anything else as read."""
    if not params.PTX_SIGNS or finding != FindingType.pneumothorax or change in APPEARING:
        return finding, change
    if any(prior_air_going(g, s, params=params) for g, s in side):
        return finding, change
    air = [s for g, s in side if new_air(g, s, params=params)]
    if not air:
        return finding, change
    return FindingType.pneumothorax, Change.worsened if any(s.ptx_before for s in air) else Change.new
