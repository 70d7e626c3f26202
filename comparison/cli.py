"""Commands of the comparison room: `benchmark` (see `comparison.benchmark`, `comparison.mscxrt`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def benchmark(
        n: int = typer.Option(1, "--n", help="Repetitions of the lesion x change grid (30 pairs each)."),
        seed: int = typer.Option(2024, "--seed", help="Seed of the benchmark set (the calibration set uses 7)."),
        out: Optional[Path] = typer.Option(Path("artifacts/longitudinal.json"), "--out", help="JSON to write."),
        matrix_variation: float = typer.Option(0.25, "--matrix-variation",
                                               help="The current's matrix / pixel spacing differs by up to this factor."),
        size: int = typer.Option(512, "--size", help="Long side of the prepared images."),
        score: Optional[Path] = typer.Option(None, "--score", help="Score this results JSON (priorwatch results --json)..."),
        labels: Optional[Path] = typer.Option(None, "--labels", help="...against this MS-CXR-T layout labels CSV."),
    ) -> None:
        """Score the registration engine on labelled longitudinal pairs made from real images,
        or (--score/--labels) any results file against an MS-CXR-T layout label set."""
        if score is not None or labels is not None:
            if score is None or labels is None:
                raise typer.BadParameter("--score and --labels go together")
            from comparison import mscxrt

            try:
                s = mscxrt.score_files(score, labels)
            except (OSError, ValueError) as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(2) from exc
            mscxrt.print_scores(s)
            if out is not None and out != Path("artifacts/longitudinal.json"):
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(s, indent=1))
            return
        from comparison import benchmark as bench

        try:
            bench.run(n, seed, out, size, matrix_variation)
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
