"""What a bundle says about itself: ``MODEL_CARD.md`` (kind, embedder, metrics, data, known limits, the families as
JSON) built from the bundle's config, the trial's row and the stage records, and the embedder weights' licence.
"""

from __future__ import annotations

import json
from typing import Any

from . import layout, stages
from .lines import counted
from .markdown import code, family_cell, json_line, twins, visible

# Licences of open_clip pretrained weights by tag prefix, as far as known (from each release's own page).
# Anything else is reported as unknown: the user must check the source before shipping.
UNKNOWN_LICENCE = "unknown, check the source"
TAG_LICENCES = (
    ("openai", "MIT (OpenAI CLIP; its model card puts deployed use out of scope)"),
    ("laion", "MIT (LAION / open_clip release)"),
    ("datacomp", "MIT (DataComp release)"),
    ("commonpool", "MIT (DataComp CommonPool release)"),
    ("metaclip", "CC-BY-NC-4.0 (Meta MetaCLIP): non-commercial use only"),
    ("webli", "Apache-2.0 (Google SigLIP)"),
)
HUB_LICENCES = {"hf-hub:imageomics/bioclip": "MIT (imageomics/bioclip)"}


def licence(spec: dict[str, Any]) -> str:
    """The embedder weights' licence as far as known (open_clip tags, known hub models), else unknown."""
    if spec.get("embedder") or spec.get("pretrained_sha256"):
        return UNKNOWN_LICENCE
    model, tag = spec.get("model") or "", spec.get("pretrained")
    if model.startswith(("hf-hub:", "local-dir:")):
        return HUB_LICENCES.get(model, UNKNOWN_LICENCE)
    if not tag:
        return "none: random weights (not a trained embedder; demos and tests only)"
    return next((text for prefix, text in TAG_LICENCES if tag.startswith(prefix)), UNKNOWN_LICENCE)


def model_card(workdir: str, config: dict[str, Any], metrics: dict[str, Any], row: dict[str, Any]) -> str:
    """MODEL_CARD.md from data: the bundle config, the trial's row and the stage records."""
    labels, metric = config["labels"], layout.BEST_METRIC
    lines = [f"# speciesfam model: {config['kind']} ({config['model']})", "",
             f"- kind: **{config['kind']}** ("
             + ("a Keras head on embeddings of the embedder below" if config["kind"] == "probe"
                else "a Keras CNN on raw pixels") + ")",
             f"- families: {len(labels)}, exactly as written (JSON list under \"Families\" below)",
             f"- input: {config['input']}",
             "- use: `speciesfam.bundle.load_bundle(PATH).predict(list_of_rgb_uint8_arrays)` -> probabilities, "
             "or `speciesfam predict PATH IMAGES...`", ""]
    if config["kind"] == "probe":
        from .bundle_embedder import reads_local_files

        e = config["embedder"]
        lines += ["## Embedder", "", f"- id: {code(visible(e['model_id']))} ({e['source']})"]
        if e.get("embedder"):
            lines.append(f"- factory: {code(visible(e['embedder']))}" + (f", source sha256 {e['source_sha256']}"
                                                              if e.get("source_sha256") else ""))
        else:
            weights = (f"pretrained {code(visible(e['pretrained']))}" if e.get("pretrained") else
                       "the folder's weights (below)" if e["model"].startswith("local-dir:") else
                       "the hub model's weights" if e["model"].startswith("hf-hub:") else
                       "random weights (no pretrained tag or file)")  # it said random weights for a local-dir model
            lines.append(f"- open_clip model {code(visible(e['model']))}, {weights}"
                         + (f" (sha256 {e['pretrained_sha256']})" if e.get("pretrained_sha256") else ""))
            lines += [f"- file {code(visible(f))}: sha256 {digest}" for f, digest in (e.get("files_sha256") or {}).items()]
            if reads_local_files(e):
                lines.append("- on another machine: copy these files there and give `predict`/`evaluate` "
                             "`--weights-dir FOLDER` (their sha256 is checked)")
        lines += [f"- licence of its weights: {e['licence']}", ""]
    ran = counted(int(metrics["epochs_run"]), "epoch")
    lines += ["## Metrics", "", f"- trial `{row['trial_id']}` ({row.get('kind')} search): best {layout.METRIC} "
              f"{metrics[metric]:.4f} at epoch {metrics['best_epoch']} ({ran}, {metrics['seconds']:.0f} s)",
              f"- validation split: {row.get('val_split') or 'unrecorded'}",
              f"- why this trial: {config['trial']['reason']}",
              f"- hyperparameters: `{json.dumps(config.get('hp', {}), sort_keys=True, default=str)}`"]
    per_class = (metrics.get("checkpoint") or {}).get("per_class_f1") or {}
    if per_class:
        lines += ["", "| family | val F1 |", "|---|---:|"]
        alike = twins(per_class)
        lines += [f"| {family_cell(fam, alike)} | {f1:.3f} |"
                  for fam, f1 in sorted(per_class.items(), key=lambda kv: kv[1])]
        unscored = [fam for fam in labels if fam not in per_class]
        if unscored:  # no val image, never predicted: outside the macro-F1, not F1 0
            lines += ["", f"Not scored ({counted(len(unscored), 'family', 'families')} with no val image, never "
                      f"predicted; {layout.METRIC} leaves them out): {json_line(unscored)}"]
    lines.append("")
    catalog, clean = stages.load(workdir, "catalog"), stages.load(workdir, "clean")
    if catalog or clean:
        lines += ["## Data", ""]
        if catalog:
            status = catalog["summary"].get("status") or {}
            # '128 ok, 1 duplicate' (it printed a Python dict); the counts' types are the record's (records.py)
            counts = ", ".join(f"{n} {k}" for k, n in sorted(status.items(), key=lambda kv: -kv[1]))
            # none recorded (a config or summary edited away, round 61): nothing to say of it
            rows, source = catalog["summary"].get("rows"), catalog["config"].get("source")
            lines.append(f"- catalog of {code(visible(source)) if source else 'a source not recorded'}"
                         + (f": {rows} rows ({counts})" if rows is not None else ""))
        if clean:
            c = clean["config"]
            done = clean["summary"]
            rule = done.get("outlier_rule") or f"detector {c.get('detector')}"  # the rule in force
            # each cause counted: it said every image taken out was an outlier (hostile tester round 39)
            causes = [f"{done['outliers_removed']} outliers (by {rule})"] if "outliers_removed" in done else []
            causes += [f"{n} label issues (cleanlab)" for n in [done.get("label_issues_dropped")] if n]
            causes += [f"{n} near-duplicates" for n in [(done.get("near_duplicates") or {}).get("dropped")] if n]
            lines.append(f"- clean with {code(visible(c.get('model_id')))}, " + (
                f"outliers by {rule}: {done.get('removed')} images removed" if not causes else
                f"taking out {', '.join(causes[:-1])}{' and ' if len(causes) > 1 else ''}{causes[-1]}"))
        lines.append("")
    lines += ["## Known limits", "",
              f"- {layout.METRIC} comes from the split used to choose the trial: it is optimistic; run "
              "`speciesfam evaluate` on the test split for an unbiased figure.",
              "- The model only knows the families above; any image gets one of them.",
              *(["- Predictions are only as good as the embedder: random weights (see its licence line) make a "
                 "demo, not a model."] if config["kind"] == "probe" and not config["embedder"].get("pretrained")
                and not config["embedder"].get("embedder") and config["embedder"]["source"].startswith("open_clip")
                else []), "",
              "## Families", "", "In the model's output order, as JSON (each exactly as written):", "",
              "```json", json_line(labels), "```", ""]
    return "\n".join(lines)
