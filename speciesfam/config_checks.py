"""CleanConfig's checks that look outside the config: the open_clip architectures installed (read from
open_clip's config files, without importing torch) and a user's outlier detector (called on a tiny family)."""

from __future__ import annotations

from typing import Any

from .config import invalid
from .errors import ConfigError


def check_open_clip_model(name: str) -> None:
    """Refuse an unknown open_clip architecture at once, without importing torch (reads open_clip's config files)."""
    import difflib
    import importlib.util
    from pathlib import Path

    if name.startswith(("hf-hub:", "local-dir:")):
        return
    schema = name.strip().split(":", 1)[0].lower() + ":"
    if schema in ("hf-hub:", "local-dir:"):  # 'LOCAL-DIR:x', ' local-dir:x'
        raise invalid("model", name, f"is not read as a {schema[:-1]} model: the prefix is lower case, at the start; give "
                                     f"{schema}{name.strip().split(':', 1)[1]}")
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("model: open_clip is not installed (pip install open_clip_torch), or give --embedder")
    known = sorted(p.stem for p in Path(spec.submodule_search_locations[0], "model_configs").glob("*.json"))
    if known and name not in known:
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
        raise invalid("model", name, "is not an open_clip architecture; "
                      f"{'did you mean ' + ', '.join(close) + '? ' if close else ''}"
                      f"valid: {len(known)} names such as ViT-B-32, ViT-S-32, RN50 (python -c 'import open_clip; "
                      "print(open_clip.list_models())'), or hf-hub:ORG/NAME, local-dir:PATH, or --embedder "
                      "module:factory")


def check_detector(name: str, fn: Any) -> None:
    import numpy as np

    fix = "a callable (x: (n, d) float array, seed: int) -> n outlier scores"
    try:  # a wrong signature shows on any family; other failures may depend on the data (checked when scoring)
        scores = np.asarray(fn(np.random.default_rng(0).normal(size=(5, 4)), seed=0), dtype=np.float64)
    except TypeError as err:
        raise invalid("detector", name, f"failed on a family of 5 embeddings ({type(err).__name__}: {err}); "
                                        f"give {fix}") from None
    except Exception:  # noqa: BLE001 -- see above
        return
    if scores.shape != (5,):
        raise invalid("detector", name, f"gave an array of shape {scores.shape} for 5 embeddings; give {fix}")
