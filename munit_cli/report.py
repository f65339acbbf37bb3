"""`munit report`: one self-contained HTML page that shows how a training run goes.

`write_report(run_dir)` writes `RUN/report.html` from what the run folder holds; it replaces the
file atomically, so a browser refreshed while training rewrites it never sees half a page.

What it reads (every file is optional; a missing or damaged one leaves its section saying so):

  run.json               {"names": [A, B], ...}: the domain names
  config.toml            the resolved config, shown as is; `train.iters` gives the progress
  dataset.json           {"domains": [{"name", "source", "images"}, ...]}, see `save_dataset_summary`
  metrics.jsonl          one JSON object per log interval: "step", "lr", "time" and one key per loss
                         term (dis_total, gen_total, recon_x_a, ...); null marks a non-finite value;
                         a line that does not parse is skipped
  samples/step_*.png     the sample grids (at most MAX_GRIDS of them shown: the first, the newest
                         and evenly spaced ones between)
  checkpoints/gen_*.safetensors   the newest generator's step
  evaluations/*.json     scores that `munit evaluate --save` stored in the run: each file one JSON
                         object exactly as `munit evaluate --json` prints it ("model", "step",
                         "weights", "names", "num_styles", "seed", "image_size", and "directions":
                         {"a_to_b": {"kid_mean": ..., "fid": ..., "paired": {...}}, "b_to_a": ...})

Nothing comes from a network. The loss plot is SVG (`lossplot`). Sample grids are inlined as data
URIs, large ones as JPEG thumbnails that link to the full PNG beside the report.
"""

from __future__ import annotations

import base64
import datetime
import io
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from munit_cli import lossplot, runs
from munit_cli.config import tomllib
from munit_cli.errors import MunitError
from munit_cli.files import display_path, write_atomic
from munit_cli.results import Result

REPORT_FILE = "report.html"
RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
DATASET_FILE = "dataset.json"
EVALUATIONS_DIR = "evaluations"
NOT_LOSSES = ("step", "lr", "time")
MAX_GRIDS = 12
INLINE_BYTES = 300_000  # larger sample grids are inlined as JPEG thumbnails
THUMBNAIL_BOX = (768, 1536)
SAMPLE_NAME = re.compile(r"^step_(\d+)\.png$")
GENERATOR_NAME = re.compile(r"^gen_(\d{8,})\.safetensors$")  # as checkpoint.checkpoint_paths names them


@dataclass
class ReportResult(Result):
    report: Path


def run(run_dir: Path | None) -> ReportResult:
    """`munit report [RUN]`: the report of RUN, or of the newest run under ./runs."""
    return ReportResult(write_report(find_run(run_dir)))


def find_run(run_dir: Path | None, root: Path = runs.RUNS_ROOT) -> Path:
    if run_dir is None:
        found = runs.latest_run(root)
        if found is None:
            raise MunitError(f"no run folder under {display_path(root)}", hint="pass the run folder: munit report RUN")
        return found
    run_dir = Path(run_dir)
    if not (run_dir / RUN_FILE).is_file():
        raise MunitError(
            f"{display_path(run_dir)} is not a run folder (no {RUN_FILE} in it)",
            hint="pass the folder that munit train wrote into",
        )
    return run_dir


def save_dataset_summary(run_dir: Path, domains: Sequence[tuple[str, str, int]]) -> None:
    """Record (name, source, image count) per domain for the report's dataset summary."""
    record = {"domains": [{"name": n, "source": s, "images": c} for n, s, c in domains]}
    write_atomic(Path(run_dir) / DATASET_FILE, json.dumps(record, indent=1).encode())


def write_report(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    path = run_dir / REPORT_FILE
    write_atomic(path, render(run_dir).encode("utf-8"))
    return path


# ---------------------------------------------------------------------------------------------
# Reading the run folder


def read_json(path: Path) -> Any:
    """A JSON file's content, or None when it is missing or damaged."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The log's records in step order (the last one of a step wins); damaged lines are skipped."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    by_step: dict[int, dict[str, Any]] = {}
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and type(record.get("step")) is int:
            by_step[record["step"]] = record
    return [by_step[s] for s in sorted(by_step)]


def number(value: Any) -> float | None:
    """A finite float, or None for null, NaN, Inf and anything that is not a number."""
    return float(value) if type(value) in (int, float) and math.isfinite(value) else None  # bool is no number


def loss_series(records: list[dict[str, Any]]) -> dict[str, list[tuple[int, float | None]]]:
    """Per loss term (in order of first appearance), its (step, value) points."""
    terms = dict.fromkeys(
        key for record in records for key, value in record.items()
        if key not in NOT_LOSSES and (value is None or type(value) in (int, float))
    )  # fmt: skip
    return {term: [(r["step"], number(r[term])) for r in records if term in r] for term in terms}


def read_config(run_dir: Path) -> tuple[str | None, dict[str, Any]]:
    try:
        text = (run_dir / "config.toml").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None, {}
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return text, {}


def sample_grids(run_dir: Path) -> list[tuple[int, Path]]:
    folder = run_dir / "samples"
    found = [(int(m.group(1)), p) for p in folder.glob("step_*.png") if (m := SAMPLE_NAME.match(p.name))]
    return sorted(found)


def spread(count: int, most: int) -> list[int]:
    """Up to `most` indices of `count` items, evenly spaced, first and last included."""
    if count <= most:
        return list(range(count))
    return sorted({round(i * (count - 1) / (most - 1)) for i in range(most)})


def newest_checkpoint(run_dir: Path) -> int | None:
    """By name only: `munit report` should not wait for torch to import to read a folder."""
    steps = [int(m.group(1)) for p in (run_dir / "checkpoints").glob("gen_*") if (m := GENERATOR_NAME.match(p.name))]
    return max(steps, default=None)


# ---------------------------------------------------------------------------------------------
# The page's sections (the loss plot is `lossplot`'s)


def image_uri(path: Path) -> str | None:
    """A data URI of the image: the PNG itself when small, else a JPEG thumbnail; None if unreadable."""
    from PIL import Image

    try:
        raw = path.read_bytes()
        with Image.open(io.BytesIO(raw)) as img:
            img.load()
            if len(raw) <= INLINE_BYTES and img.format == "PNG":
                return "data:image/png;base64," + base64.b64encode(raw).decode()
            img = img.convert("RGB")
            img.thumbnail(THUMBNAIL_BOX)
            out = io.BytesIO()
            img.save(out, "JPEG", quality=85)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode()


def samples_section(run_dir: Path) -> str:
    grids = sample_grids(run_dir)
    if not grids:
        return '<p class="empty">No sample grids yet (written every train.sample_every steps).</p>'
    chosen = [grids[i] for i in spread(len(grids), MAX_GRIDS)]
    cards = []
    for step, path in chosen:
        uri = image_uri(path)
        rel = escape(f"samples/{path.name}")
        picture = (
            f'<a href="{rel}"><img src="{uri}" alt="sample grid at step {step}"></a>'
            if uri
            else f'<p class="empty">{rel} could not be read</p>'
        )
        cards.append(f'<figure class="grid-card">{picture}<figcaption>step {step:,}</figcaption></figure>')
    shown = f"{len(chosen)} of {len(grids)}, evenly spaced" if len(chosen) < len(grids) else f"all {len(grids)}"
    return (
        f'<p class="note">Sample grids in step order ({shown}; every grid is in samples/, click one for full size). '
        "Each row: an input, its reconstruction, its translation with a fixed style and with a random style; "
        "A&#8594;B rows first, then B&#8594;A.</p>"
        f'<div class="grids">{"".join(cards)}</div>'
    )


def table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """An HTML table of already escaped cells."""
    ths = "".join(f"<th>{h}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{ths}</tr></thead><tbody>{trs}</tbody></table>"


def dataset_section(run_dir: Path, names: tuple[str, str], cfg: dict[str, Any]) -> str:
    recorded = read_json(run_dir / DATASET_FILE)
    domains = recorded.get("domains") if isinstance(recorded, dict) else None
    domains = [d for d in domains if isinstance(d, dict)] if isinstance(domains, list) else []
    rows = []
    for i, letter in enumerate("AB"):
        info = domains[i] if i < len(domains) else {}
        count = info.get("images")
        previews = len(list((run_dir / "preview" / letter).glob("*.png")))
        rows.append(
            (letter, escape(str(info.get("name", names[i]))), "-" if count is None else escape(str(count)),
             escape(str(info.get("source", "-"))), str(previews))
        )  # fmt: skip
    data = cfg.get("data", {}) if isinstance(cfg.get("data"), dict) else {}
    size = f'crops of {escape(str(data["crop_size"]))} px' if "crop_size" in data else ""
    note = "" if domains else f'<p class="note">No {DATASET_FILE} in the run: image counts unknown.</p>'
    head = ("domain", "name", "training images", "source", "preview inputs")
    return table(head, rows) + note + (f'<p class="note">Training on {size}.</p>' if size else "")


def flat_scores(scores: dict[str, Any], prefix: str = "") -> dict[str, float | None]:
    """{"kid_mean": 0.01, "paired": {"l1": 0.2}} -> {"kid_mean": 0.01, "paired l1": 0.2}."""
    out: dict[str, float | None] = {}
    for key, value in scores.items():
        if isinstance(value, dict):
            out.update(flat_scores(value, f"{prefix}{key} "))
        elif value is None or isinstance(value, (int, float)):
            out[f"{prefix}{key}"] = number(value)
    return out


def evaluations_section(run_dir: Path, names: tuple[str, str]) -> str:
    files = sorted((run_dir / EVALUATIONS_DIR).glob("*.json"))
    if not files:
        return (
            f'<p class="empty">No saved scores: <code>munit evaluate --save</code> stores them in '
            f"{EVALUATIONS_DIR}/ of the run.</p>"
        )
    results = [(p, read_json(p)) for p in files]
    good = [(p, r) for p, r in results if isinstance(r, dict) and isinstance(r.get("directions"), dict)]
    bad = [p for p, r in results if not (isinstance(r, dict) and isinstance(r.get("directions"), dict))]
    domain = {"a": names[0], "b": names[1]}
    parts = []
    for path, result in sorted(good, key=lambda pr: (number(pr[1].get("step")) or 0, pr[0].name)):
        directions = {k: flat_scores(v) for k, v in result["directions"].items() if isinstance(v, dict)}
        found = list(dict.fromkeys(m for scores in directions.values() for m in scores))
        # a group that is null in one direction ("paired": null) and has members in the other
        metrics = [m for m in found if not any(other.startswith(m + " ") for other in found)]
        heads = ["metric"] + [
            escape(" → ".join(domain.get(side, side) for side in k.split("_to_"))) for k in directions
        ]
        rows = [
            [escape(m)] + ["-" if s.get(m) is None else f"{s[m]:.4g}" for s in directions.values()] for m in metrics
        ]
        about = " · ".join(
            escape(text.format(result[key]))
            for key, text in (("step", "step {}"), ("weights", "{} weights"), ("num_styles", "{} styles per input"),
                              ("seed", "seed {}"), ("image_size", "{} px"))
            if key in result
        )  # fmt: skip
        parts.append(f'<h3>{escape(path.name)}</h3><p class="note">{about}</p><div class="scores">{table(heads, rows)}</div>')
    parts += [f'<p class="empty">{escape(p.name)} could not be read.</p>' for p in bad]
    return "".join(parts)


def duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def tiles(records: list[dict[str, Any]], cfg: dict[str, Any], run_dir: Path) -> str:
    train = cfg.get("train", {}) if isinstance(cfg.get("train"), dict) else {}
    iters = number(train.get("iters"))
    last = records[-1] if records else {}
    step = last.get("step")
    progress = ""
    if step is not None and iters:
        progress = f'<progress max="{iters:.0f}" value="{min(step, iters):.0f}"></progress>'
    lr, elapsed = number(last.get("lr")), number(last.get("time"))
    checkpoint = newest_checkpoint(run_dir)
    items = (
        ("step", f"{step:,}" if step is not None else "none yet", f"of {iters:,.0f}" if iters else ""),
        ("learning rate", f"{lr:.3g}" if lr is not None else "-", ""),
        ("time", duration(elapsed) if elapsed is not None else "-", "since the trainer (re)started"),
        ("newest checkpoint", f"step {checkpoint:,}" if checkpoint is not None else "none yet", ""),
    )
    cells = "".join(
        f'<div class="tile"><div class="label">{label}</div><div class="value">{value}</div>'
        f'<div class="sub">{sub}</div></div>'
        for label, value, sub in items
    )
    return f'<div class="tiles">{cells}</div>{progress}'


def render(run_dir: Path) -> str:
    run_info = read_json(run_dir / RUN_FILE)
    stored = run_info.get("names") if isinstance(run_info, dict) else None
    names = (str(stored[0]), str(stored[1])) if isinstance(stored, list) and len(stored) == 2 else ("A", "B")
    config_text, cfg = read_config(run_dir)
    records = read_metrics(run_dir / METRICS_FILE)
    title = f"{names[0]} \u2194 {names[1]}"
    written = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    losses = (
        lossplot.loss_plot(loss_series(records))
        if records
        else '<p class="empty" id="no-steps">No finished step yet: the loss curves appear after the first '
        "log interval (train.log_every). Reload this page later; training rewrites it.</p>"
    )
    config_html = (
        f"<pre>{escape(config_text)}</pre>" if config_text is not None else '<p class="empty">No config.toml.</p>'
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>munit report: {escape(title)}</title>
<style>{STYLE}</style>
</head>
<body>
<header>
  <h1>{escape(title)}</h1>
  <p class="note">Run folder <code>{escape(display_path(run_dir.resolve()))}</code>. Report written {written}.</p>
  {tiles(records, cfg, run_dir)}
</header>
<section id="losses"><h2>Losses</h2>{losses}</section>
<section id="samples"><h2>Samples</h2>{samples_section(run_dir)}</section>
<section id="scores"><h2>Scores</h2>{evaluations_section(run_dir, names)}</section>
<section id="dataset"><h2>Dataset</h2>{dataset_section(run_dir, names, cfg)}</section>
<section id="config"><h2>Config</h2>{config_html}</section>
</body>
</html>
"""


STYLE = """
:root { color-scheme: light; --ink: #1f2328; --muted: #656d76; --line: #d0d7de; --soft: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1100px; padding: 24px 32px 48px; font: 15px/1.5 system-ui, sans-serif; color: var(--ink); }
h1 { margin: 0 0 4px; font-size: 26px; }
h2 { margin: 32px 0 12px; padding-bottom: 6px; border-bottom: 1px solid var(--line); font-size: 20px; }
h3 { margin: 18px 0 4px; font-size: 16px; }
code, pre { font: 13px/1.45 ui-monospace, monospace; }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 6px; padding: 12px; overflow: auto; max-height: 420px; }
.note { color: var(--muted); margin: 4px 0 10px; }
.empty { color: var(--muted); font-style: italic; padding: 16px; background: var(--soft); border-radius: 6px; }
.tiles { display: grid; grid-template-columns: repeat(4, 1fr); gap: 12px; margin: 16px 0 10px; }
.tile { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; }
.tile .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.tile .value { font-size: 22px; font-weight: 600; }
.tile .sub { color: var(--muted); font-size: 12px; min-height: 1.5em; }
progress { width: 100%; height: 8px; }
.controls { display: flex; gap: 20px; margin-bottom: 6px; }
#loss-plot { width: 100%; height: auto; display: block; }
#loss-plot .frame { fill: none; stroke: var(--line); }
#loss-plot .grid { stroke: #eaeef2; }
#loss-plot .tick, #loss-plot .axis-label { fill: var(--muted); font-size: 12px; }
#loss-plot .curve { fill: none; stroke-width: 1.8; stroke-linejoin: round; stroke-linecap: round; }
#loss-plot .curve.hidden { display: none; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 8px; margin-top: 8px; }
.term { display: inline-flex; align-items: center; gap: 6px; border: 1px solid var(--line); border-radius: 14px;
  background: #fff; padding: 2px 10px; font: inherit; font-size: 13px; cursor: pointer; }
.term[aria-pressed="false"] { opacity: .45; }
.term .swatch { width: 14px; height: 4px; border-radius: 2px; }
.term .last { color: var(--muted); font-variant-numeric: tabular-nums; }
.grids { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 14px; }
.grid-card { margin: 0; border: 1px solid var(--line); border-radius: 8px; padding: 8px; background: var(--soft); }
.grid-card img { width: 100%; height: auto; display: block; image-rendering: pixelated; background: #fff; }
.grid-card figcaption { text-align: center; color: var(--muted); font-size: 13px; margin-top: 4px; }
table { border-collapse: collapse; margin: 6px 0 10px; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 14px 5px 0; text-align: left; }
th { color: var(--muted); font-weight: 600; font-size: 13px; }
.scores td + td, .scores th + th { text-align: right; padding-left: 24px; }
"""
