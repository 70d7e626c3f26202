"""Reader training pairs (issue 11, issue 28: train across generators), never a held-out grid.

Two sources, one saved form (`_save`: what `modeldev.reader_train` reads):

- `--split train|dev|own`: the independent `benchmarks.cxrpairs` generator under a split of its
  own, "train": seeds derived from `TRAIN_SEED`, which is neither the dev nor the held-out nor the
  real-CR split seed, specs drawn with the same mix as the dev grid (changed / stable / normal,
  every finding x change x side, zones cycled), on synthetic backgrounds (`--background real`: on
  the real CR, tried and not in the shipped weights). `own` draws the engine's own generator
  (`comparison.synthetic`) on that same real CR, so the real-CR grid shows the reader known anatomy
  under cxrpairs' acquisition, not unseen anatomy. Each pair is decoded, prepared and aligned exactly
  as in production (`prepare_dataset` -> `RegistrationEngine.align`).
- `--folder DIR`: any BRIEF.md pair-set folder (`modeldev/generators/`). Each pair takes
  production's path, as `modeldev.evaluate` does: `load_image` on both DICOM files (orientation,
  view, spacing), then `RegistrationEngine.align`. Pairs the engine must not compare (lateral,
  another person) are skipped; support devices are not reader labels.

Each .npz holds the current and the registered prior on the working grid, both lung masks, and the labels.

    .venv/bin/python -m modeldev.reader_data --out artifacts/reader/train --start 0 --count 3700
    .venv/bin/python -m modeldev.reader_data --background real --out artifacts/reader/real_train --count 500  # not in the shipped weights
    .venv/bin/python -m modeldev.generators.atlas2d --seed 101 --n 400 --out /tmp/a2d-train
    .venv/bin/python -m modeldev.reader_data --folder /tmp/a2d-train --out artifacts/reader/a2d
"""

from __future__ import annotations

import argparse
import json
from itertools import islice
from pathlib import Path

import numpy as np

from benchmarks.cxrpairs import ZONES
from benchmarks.cxrpairs.generate import DIRECTED, MAIN_FINDINGS, _seed  # the generator's own spec vocabulary and seeding


TRAIN_SEED = 31415926  # not in cxrpairs.SPLIT_SEEDS: never the dev, held-out or real grid
SIZES = (520, 600, 720)  # long side (px) of the generated matrices; prepare brings all to 512
KIND_WEIGHTS = {"changed": 80, "stable": 10, "normal": 14}  # the dev grid's mix


def train_specs(start: int, count: int, background: str = "synthetic", namespace: str | None = None) -> list:
    """Specs `start .. start+count` of the train split (a pure function of the index)."""
    from benchmarks.cxrpairs import SPLIT_SEEDS, Spec

    assert TRAIN_SEED not in SPLIT_SEEDS.values()
    kinds = [k for k, w in KIND_WEIGHTS.items() for _ in range(w)]
    out = []
    for idx in range(start, start + count):
        rng = np.random.default_rng(_seed(TRAIN_SEED, "spec", idx))
        kind = kinds[int(rng.integers(len(kinds)))]
        f = c = s = z = None
        if kind != "normal":
            f = MAIN_FINDINGS[int(rng.integers(5))]
            c = DIRECTED[int(rng.integers(4))] if kind == "changed" else "stable"
            s = ("right", "left")[int(rng.integers(2))]
            z = "upper" if f == "pneumothorax" else "lower" if f == "effusion" else ZONES[int(rng.integers(3))]
        ns = namespace or background
        seed = _seed(TRAIN_SEED, idx) if ns == "synthetic" else _seed(TRAIN_SEED, ns, idx)
        out.append(Spec("train" if ns == "synthetic" else f"train{ns}", idx, seed, background, kind, f, c, s, z))
    return out


SMALL_EFFUSION_MM = 50.0  # `--small-effusions`: a meniscus up to this height (on the image that has the fluid).
#                           The reader missed new effusions of 18-37 mm on every grid (issue 11, stop 14)


def small_effusion(spec) -> bool:
    """A changed effusion whose fluid (now for new / worsened, before for improved / resolved)
    is at most `SMALL_EFFUSION_MM`: read off the labels of a tiny rendering of the pair (cheap)."""
    from benchmarks.cxrpairs import make_pair

    if spec.finding != "effusion" or spec.change not in DIRECTED:
        return False
    try:
        labels = make_pair(spec, scale=0.12).labels
    except RuntimeError:  # a spec the generator cannot draw (a lesion outside the image) is not built either
        return False
    key = "size_mm" if spec.change in ("new", "worsened") else "prior_size_mm"
    return max((getattr(lb, key) or 0.0) for lb in labels) <= SMALL_EFFUSION_MM


def build_one(spec, engine, out_dir: Path, size: int) -> Path:
    from benchmarks.change_engine import FULL_SIZE_LONG_SIDE, prepared_pair
    from benchmarks.cxrpairs import make_pair

    pair = make_pair(spec, scale=size / FULL_SIZE_LONG_SIDE)
    cur, pri = prepared_pair(pair)
    path = out_dir / f"{spec.pair_id}.npz"
    _save(path, engine.align(cur.pixels, pri.pixels), cur, [lb.as_dict() for lb in pair.labels], spec.__dict__)
    return path


def _save(path: Path, al, cur, labels: list[dict], spec: dict) -> None:
    """One aligned pair as the reader sees it, with the working grid's pixel spacing (0: unknown)."""
    spacing = cur.spacing_mm * (max(cur.pixels.shape) / max(al.cw.shape)) if cur.spacing_mm else 0.0
    np.savez_compressed(
        path, cw=al.cw.astype(np.float16), mapped=al.mapped.astype(np.float16),
        right=al.lungs.right, left=al.lungs.left, roi=al.roi, midline=al.lungs.midline,
        quality=al.quality, spacing=spacing, labels=json.dumps(labels), spec=json.dumps(spec),
    )


OWN_SEED = 11  # the engine's own generator (comparison.synthetic), never its benchmark's seed (2024) or
#               its calibration seed (7): a second anatomy and lesion physics for the reader


def build_own(out_dir: Path, start: int, count: int, engine) -> None:
    """Pairs of the engine's own generator, saved like the train split (labels in the same form)."""
    import tempfile

    from comparison import load_image, synthetic
    from comparison.benchmark import CALIBRATION_SEED, DEFAULT_SEED, cases

    assert OWN_SEED not in (DEFAULT_SEED, CALIBRATION_SEED)
    todo = cases(max(1, (start + count) // 30 + 1), OWN_SEED, matrix_variation=0.25)[start : start + count]
    with tempfile.TemporaryDirectory(prefix="pw-own-") as tmp:
        for i, c in enumerate(todo, start):
            path = out_dir / f"own-{i:04d}-{c.seed}.npz"
            if path.exists():
                continue
            spec = synthetic.make_pair(tmp, f"OWN{i:04d}", c.lesion, c.change, c.side, c.zone, seed=c.seed, matrix=c.matrix)
            cur = load_image(spec.current_paths[0], size=512)
            pri = load_image(spec.prior_paths[0], size=512)
            labels = []
            if spec.lesion is not None:
                labels.append({"finding": spec.lesion.value, "side": spec.side.value, "zone": spec.zone.value,
                               "change": spec.change.value, "urgent": bool(spec.urgent)})
            _save(path, engine.align(cur.pixels, pri.pixels), cur, labels, {"seed": c.seed})
            for p in Path(tmp, f"OWN{i:04d}").glob("*.dcm"):
                p.unlink()



READER_FINDINGS = ("nodule", "mass", "consolidation", "effusion", "pneumothorax")  # what the reader types
PREPARE_SIZE = 512  # the worker's image_size


def _label(f: dict) -> dict:
    """A BRIEF.md finding in the reader's label form (cxrpairs': `size_mm` is the current size, the
    prior's when resolved)."""
    current, prior = f.get("size_mm_current"), f.get("size_mm_prior")
    return {"finding": f["finding"], "side": f["side"], "zone": f["zone"], "change": f["change"],
            "urgent": bool(f["urgent"]), "size_mm": current if current else prior, "prior_size_mm": prior}


def build(folder: Path, out: Path, limit: int | None = None) -> int:
    from comparison import RegistrationEngine, load_image

    engine = RegistrationEngine()
    out.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in (folder / "labels.jsonl").read_text().splitlines() if line.strip()]
    made = 0
    for rec in rows[:limit]:
        if rec.get("expect", "compare") != "compare":
            continue
        path = out / f"{rec['generator']}-{rec['pair_id']}.npz"
        if path.exists():
            continue
        try:
            cur = load_image(folder / rec["current"], size=PREPARE_SIZE)
            pri = load_image(folder / rec["prior"], size=PREPARE_SIZE)
            labels = [_label(f) for f in rec["findings"]
                      if f["finding"] in READER_FINDINGS and f["side"] in ("right", "left")]
            _save(path, engine.align(cur.pixels, pri.pixels), cur, labels, {"pair_id": rec["pair_id"],
                                                                            "case": rec["case"]})
            made += 1
        except Exception as exc:  # a pair that cannot be built is skipped, and said
            print(f"{rec['pair_id']}: {type(exc).__name__}: {exc}", flush=True)
    return made


def build_split(a: argparse.Namespace) -> None:
    """`--split train|dev|own` into `a.out` (pairs already there are kept)."""
    from comparison import RegistrationEngine

    eng = RegistrationEngine()
    if a.split == "own":
        build_own(a.out, a.start, a.count, eng)
        return
    if a.split == "dev":
        from benchmarks.cxrpairs import grid

        specs = grid("dev")[a.start : a.start + a.count]
    else:
        specs = train_specs(a.start, a.count, a.background, a.namespace)
        if a.kinds:
            specs = [sp for sp in specs if sp.kind in a.kinds]
        if a.small_effusions:
            specs = list(islice((sp for sp in specs if small_effusion(sp)), a.small_effusions))
    for spec in specs:
        if (a.out / f"{spec.pair_id}.npz").exists():
            continue
        size = a.size or (600 if a.split == "dev" else SIZES[spec.index % len(SIZES)])
        try:
            build_one(spec, eng, a.out, size)
        except Exception as exc:  # a pair that cannot be built is skipped, and said
            print(f"{spec.pair_id}: {type(exc).__name__}: {exc}", flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--folder", type=Path, help="a BRIEF.md pair-set folder instead of a cxrpairs split")
    ap.add_argument("--limit", type=int, help="--folder only: first N pairs of labels.jsonl")
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--background", default="synthetic", choices=("synthetic", "real"),
                    help="train split only: real = lesions on pydicom-data's real CR (the real-CR grid's "
                         "background, other seeds: real-CR then no longer shows the reader unseen anatomy)")
    ap.add_argument("--namespace", help="seed namespace of the train split (e.g. realdev: a real-background "
                                         "dev grid to decide on, never trained on)")
    ap.add_argument("--small-effusions", type=int, metavar="N",
                    help="train split only: build just the first N pairs of the range with a small changed "
                         f"effusion (<= {SMALL_EFFUSION_MM:.0f} mm), to oversample what the reader missed")
    ap.add_argument("--kinds", nargs="+", choices=tuple(KIND_WEIGHTS),
                    help="train split only: build just pairs of these kinds (e.g. stable normal: negatives to "
                         "balance a set of --small-effusions)")
    ap.add_argument("--size", type=int, help="long side (px) of the generated matrices (default: 520-720 for "
                                           "train, 600 for dev; the benchmark's grids are 2000)")
    ap.add_argument("--split", default="train", choices=("train", "dev", "own"),
                    help="dev: the dev grid at the harness's 600 px, for tuning the reader's cut-offs")
    a = ap.parse_args(argv)
    if a.folder is not None:
        print(f"built {build(a.folder, a.out, a.limit)} pairs into {a.out}")
        return
    a.out.mkdir(parents=True, exist_ok=True)
    build_split(a)


if __name__ == "__main__":
    main()
