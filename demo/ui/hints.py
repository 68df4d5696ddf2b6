"""What the stored measurements say next to the controls: each method's usable range of w (a slider's caption)
and a warning for a w past the point where the method measurably degrades with this model."""
from __future__ import annotations

from pathlib import Path

from demo.engine.config import GUIDES
from demo.engine.guidance import GUIDANCE, uses_guide
from demo.science import findings

GUIDE_INFO = "the weaker network autoguidance steers away from (How it works: what each guide shows)"


def caption(method: str, guide: str | None = None, folder: Path | None = None) -> str | None:
    """The measured usable range of a method's w, short enough for a slider's caption."""
    hint = findings.method_range(method, guide, folder)
    if hint is None:
        return None
    degrades = f"degrades beyond ≈ {hint.degrades_beyond:.2g}" if hint.degrades_beyond is not None else \
        f"fine up to {hint.evaluated_up_to:g}"
    return f"best FID at {hint.best_weight:g}; {degrades}"


def beyond_range(weights: dict[str, float], guide: str = GUIDES[0].key, folder: Path | None = None) -> str:
    """A plain warning for every method used past the w where it measurably degrades (autoguidance: with the
    chosen guide)."""
    notes = []
    for method, w in weights.items():
        hint = findings.method_range(method, guide, folder)
        if hint and hint.degrades_beyond is not None and w > hint.degrades_beyond:
            with_guide = " with this guide" if uses_guide(method) else ""
            notes.append(f"{GUIDANCE[method].title}{with_guide} at w = {w:g} is past w ≈ "
                         f"{hint.degrades_beyond:.2g}, where it degrades with this model.")
    return " ".join(notes)
