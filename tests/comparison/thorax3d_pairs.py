"""Small pairs from the independent thorax3d generator (`modeldev.generators.thorax3d`) with chosen
acquisition differences, written as real DICOM files and prepared by `load_image` (issue 28 tests).

The generator's own `make_pair` draws the acquisition at random; these tests need one difference at a
time (inspiration, roll, in-plane rotation) and a coarse 0.8 mm matrix (500 px) so a pair takes
about a second to render. Seeds here are test seeds, never the validation (1001) or record sets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from comparison import load_image
from comparison.preprocess import PreparedImage
from modeldev.generators import thorax3d as gen

FIELD_MM = 400.0  # square detector field of the small pairs
SPACING_MM = 0.8  # coarse pixels: a 500 px matrix, rendered in about half a second


@dataclass
class Lesion:
    """One finding of the pair, as the generator takes it (sizes in mm; None: absent on that image)."""

    finding: str
    side: str
    zone: str
    change: str
    size_prior: float | None
    size_current: float | None


def make_pair(out: Path, seed: int, *, insp_mm: tuple[float, float] = (0.0, 0.0),
              roll_deg: tuple[float, float] = (0.0, 0.0), rot_deg: tuple[float, float] = (0.0, 0.0),
              lesion: Lesion | None = None) -> tuple[PreparedImage, PreparedImage]:
    """(current, prior) of one generated person: (prior, current) inspiration, roll and in-plane
    rotation as given, the rest of the acquisition (detector, LUT, noise, scatter) drawn per image."""
    cur, pri, _ = make_pair_with_truth(out, seed, insp_mm=insp_mm, roll_deg=roll_deg, rot_deg=rot_deg,
                                       lesion=lesion)
    return cur, pri


def make_pair_with_truth(out: Path, seed: int, *, insp_mm: tuple[float, float] = (0.0, 0.0),
                         roll_deg: tuple[float, float] = (0.0, 0.0), rot_deg: tuple[float, float] = (0.0, 0.0),
                         lesion: Lesion | None = None) -> tuple[PreparedImage, PreparedImage, np.ndarray | None]:
    """`make_pair`, and where the lesion lies on the prepared current: the current rendered again with the
    same acquisition and no lesion, the pixels that differ by over half the largest difference (None
    without a lesion)."""
    rng = np.random.default_rng([seed, 28])
    person = gen.Person(rng)
    findings = []
    if lesion is not None:
        tmpl = gen.make_lesion(person, rng, lesion.finding, lesion.side, lesion.zone)
        findings = [(tmpl, lesion.change, lesion.size_prior, lesion.size_current)]
    out.mkdir(parents=True, exist_ok=True)
    paths, acqs = {}, {}
    for i, role in enumerate(("prior", "current")):
        a = gen.make_acq(rng, person)
        n = int(round(FIELD_MM / SPACING_MM))
        a.update(spacing=SPACING_MM, rows=n, cols=n, insp=insp_mm[i], roll=roll_deg[i], theta=rot_deg[i],
                 mono1=False, rle=False, marker=False, text=False, grid_lines=False)
        acqs[role] = a
        paths[role] = _render(out / f"{role}.dcm", person, gen._state(person, a["insp"], findings, role), a, seed, i)
    cur, pri = load_image(paths["current"]), load_image(paths["prior"])
    if lesion is None:
        return cur, pri, None
    a = acqs["current"]
    clean = load_image(_render(out / "clean.dcm", person, gen._state(person, a["insp"], [], "current"), a, seed, 2))
    d = cur.pixels - clean.pixels
    return cur, pri, d > 0.5 * float(d.max())


def _render(path: Path, person: object, state: dict, a: dict, seed: int, i: int) -> Path:
    pix, _ = gen.render_image(person, state, a)
    meta = dict(pid="TEST28", name="TEST^PAIR", birth="19500101", sex=person.sex, site="TEST",  # type: ignore[attr-defined]
                date="20200101" if i == 0 else "20200301", time="120000", accession=f"A{i}",
                uid_key=f"test28/{seed}/{i}")
    gen.write_dicom(path, pix, a, meta)
    return path
