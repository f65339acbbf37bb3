"""`munit report`: the HTML page of a run, read back as HTML and rendered by a real browser."""

from __future__ import annotations

import base64
import io
import json
import math
import os
import re
import select
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageStat
from typer.testing import CliRunner

from munit_cli import config, lossplot, report
from munit_cli.cli import app

TERMS = ("dis_total", "gen_total", "gen_adv_a", "recon_x_a", "recon_s_b", "recon_c_a")


class Page(HTMLParser):
    """The elements of a page (tag, attributes) and its text."""

    def __init__(self, text: str):
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for t, attrs in self.elements if t == tag]

    def plain(self) -> str:
        return " ".join(" ".join(self.text).split())


def grid_png(path: Path, shade: int, size: tuple[int, int] = (64, 128)) -> None:
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    for row in range(0, size[1], 16):
        draw.rectangle([2, row + 2, size[0] - 3, row + 13], fill=(shade, 255 - shade, row % 256))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def write_run(run: Path, steps: range = range(10, 201, 10), grids: range = range(50, 201, 50)) -> Path:
    """A run folder as training leaves it, plus what can go wrong: a null (non-finite) value, a
    line cut short by a crash, and names that are HTML."""
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"names": ["<b>outlines", "filled & co"], "run_id": "0" * 32}))
    (run / "config.toml").write_text(config.resolve("tiny").to_toml())
    lines = []
    for step in steps:
        record = {"step": step, "lr": 1e-4, "time": step / 10}
        record.update({term: (i + 1) * math.exp(-step / 100) + 0.01 for i, term in enumerate(TERMS)})
        if step == 50:
            record["gen_total"] = None
        lines.append(json.dumps(record))
    lines.append('{"step": 999, "dis_tot')
    (run / "metrics.jsonl").write_text("\n".join(lines))
    for step in grids:
        grid_png(run / "samples" / f"step_{step:08d}.png", shade=step % 256)
    for letter in "AB":
        grid_png(run / "preview" / letter / "00.png", 10)
    return run


EVALUATION = {
    "model": "runs/x/checkpoints/gen_00000200.safetensors",
    "step": 200,
    "weights": "ema",
    "names": ["outlines", "filled"],
    "num_styles": 10,
    "seed": 0,
    "image_size": 32,
    "skipped": [],
    "directions": {
        "a_to_b": {"kid_mean": 0.0123, "kid_std": 0.001, "fid": 45.25, "diversity_l1": 0.25, "paired": None},
        "b_to_a": {"kid_mean": 0.0456, "kid_std": 0.002, "fid": 51.5, "diversity_l1": 0.5,
                   "paired": {"l1": 0.125, "psnr": 21.75, "ssim": 0.625}},
    },
}  # fmt: skip


def test_report_of_a_run_holds_curves_grids_scores_and_config(tmp_path):
    run = write_run(tmp_path / "run")
    (run / "evaluations").mkdir()
    (run / "evaluations" / "step_200.json").write_text(json.dumps(EVALUATION))
    (run / "evaluations" / "a_later.json").write_text(json.dumps({**EVALUATION, "step": 1000}))
    (run / "evaluations" / "broken.json").write_text("{")
    report.save_dataset_summary(run, [("<b>outlines", "data/A", 400), ("filled & co", "data/B", 380)])

    path = report.write_report(run)
    assert path == run / "report.html"
    text = path.read_text()
    page = Page(text)

    curves = [p for p in page.all("path") if "data-term" in p]
    assert [p["data-term"] for p in curves] == list(TERMS)
    assert all(p["d"].startswith("M") for p in curves)
    # null at step 50: gen_total's curve has a gap (two segments); the others are one stroke
    segments = {p["data-term"]: p["d"].count("M") for p in curves}
    assert segments == {**{t: 1 for t in TERMS}, "gen_total": 2}
    assert "step 200 of 2,500" in page.plain()  # the damaged last line is skipped

    images = page.all("img")
    assert [i["alt"] for i in images] == [f"sample grid at step {s}" for s in (50, 100, 150, 200)]
    for img, step in zip(images, (50, 100, 150, 200)):
        assert img["src"].startswith("data:image/png;base64,")
        inlined = base64.b64decode(img["src"].split(",", 1)[1])
        assert inlined == (run / "samples" / f"step_{step:08d}.png").read_bytes()

    plain = page.plain()
    assert "step 200" in plain and "45.25" in plain and "21.75" in plain and "0.625" in plain
    assert "broken.json could not be read" in plain
    headings = re.findall(r"<h3>(.*?)</h3>", text)
    assert headings == ["step_200.json", "a_later.json"]  # in step order
    assert "<th>&lt;b&gt;outlines \u2192 filled &amp; co</th>" in text
    metrics = re.findall(r"<tr><td>([a-z_ 0-9]+)</td>", text)
    assert metrics[:7] == ["kid_mean", "kid_std", "fid", "diversity_l1", "paired l1", "paired psnr", "paired ssim"]
    assert "380" in plain and "data/B" in plain
    assert 'preset = "tiny"' in plain  # the resolved config
    # file content is escaped: the name is text, not a tag
    assert "<b>outlines" not in text and "&lt;b&gt;outlines" in text
    assert not any(t == "b" for t, _ in page.elements)
    # self-contained: nothing loaded from elsewhere
    sources = [a.get("src") or "" for _, a in page.elements] + [a.get("href") or "" for _, a in page.elements]
    assert not any(s.startswith(("http:", "https:", "//")) for s in sources)
    assert [a["href"] for a in page.all("a")] == [f"samples/step_{s:08d}.png" for s in (50, 100, 150, 200)]


def test_a_run_without_a_finished_step_gets_a_page_saying_so(tmp_path):
    run = tmp_path / "fresh"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"names": ["a", "b"]}))
    (run / "metrics.jsonl").write_text("")
    page = Page(report.write_report(run).read_text())
    assert "No finished step yet" in page.plain()
    assert "No sample grids yet" in page.plain()
    assert page.all("path") == [] and page.all("img") == []
    assert "none yet" in page.plain()


def test_one_logged_step_with_odd_values_still_plots(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("not json")
    record = {"step": 1, "lr": 1e-4, "time": 0.5, "dis_total": -0.5, "gen_total": None, "note": "text"}
    (run / "metrics.jsonl").write_text(json.dumps(record) + "\n[1, 2]\n")
    page = Page(report.write_report(run).read_text())
    curves = {p["data-term"]: p["d"] for p in page.all("path")}
    assert list(curves) == ["dis_total", "gen_total"]  # "note" is not a number, not a loss term
    assert curves["dis_total"].endswith("h0") and curves["gen_total"] == ""  # a dot, and nothing to draw
    log_scale = next(a for a in page.all("input") if a.get("id") == "log-scale")
    assert "checked" not in log_scale  # a negative value: linear scale first
    assert "A ↔ B" in page.plain()  # run.json unreadable: the domains keep their letters


def test_many_grids_are_spread_and_large_ones_thumbnailed(tmp_path):
    run = write_run(tmp_path / "run", grids=range(100, 3001, 100))
    big = run / "samples" / f"step_{3100:08d}.png"
    noise = Image.effect_noise((1100, 1400), 80).convert("RGB")
    noise.save(big)
    assert big.stat().st_size > report.INLINE_BYTES
    page = Page(report.write_report(run).read_text())
    images = page.all("img")
    steps = [int(i["alt"].rsplit(" ", 1)[1]) for i in images]
    assert len(steps) == report.MAX_GRIDS and steps == sorted(steps)
    assert steps[0] == 100 and steps[-1] == 3100  # the first and the newest
    newest = images[-1]["src"]
    assert newest.startswith("data:image/jpeg;base64,")
    thumb = Image.open(io.BytesIO(base64.b64decode(newest.split(",", 1)[1])))
    assert thumb.width <= report.THUMBNAIL_BOX[0] and thumb.height <= report.THUMBNAIL_BOX[1]
    assert abs(thumb.width / thumb.height - 1100 / 1400) < 0.01


def test_spread_and_buckets():
    assert report.spread(5, 12) == [0, 1, 2, 3, 4]
    picked = report.spread(100, 12)
    assert len(picked) == 12 and picked[0] == 0 and picked[-1] == 99 and picked == sorted(picked)
    points = [(s, float(s)) for s in range(1, 1201)]
    bucketed = lossplot.bucketed(points)
    assert len(bucketed) == lossplot.MAX_POINTS and bucketed[-1][0] == 1200
    assert sum(v for _, v in bucketed) / len(bucketed) == pytest.approx(600.5, rel=1e-3)
    assert lossplot.bucketed(points[:10]) == points[:10]


def test_axis_ticks():
    assert lossplot.linear_ticks(2, 80) == [20, 40, 60, 80]
    assert lossplot.linear_ticks(0.1, 0.13) == pytest.approx([0.1, 0.105, 0.11, 0.115, 0.12, 0.125, 0.13])
    wide = lossplot.log_ticks(math.log10(0.001), math.log10(30))
    assert [10**t for t in wide] == pytest.approx([0.001, 0.01, 0.1, 1, 10])
    narrow = lossplot.log_ticks(math.log10(0.09), math.log10(30))  # under four decades: 2x and 5x too
    assert [10**t for t in narrow] == pytest.approx([0.1, 0.2, 0.5, 1, 2, 5, 10, 20])
    assert [lossplot.short_number(v) for v in (0.125, 20, 1500, 2_000_000)] == ["0.125", "20", "1.5k", "2M"]


def test_path_gaps_and_lone_points():
    assert lossplot.path_data([(0, 1), (1, 2), (2, None), (3, 4)]) == "M0.0 1.0L1.0 2.0M3.0 4.0h0"
    assert lossplot.path_data([(0, None)]) == ""


def test_smoothing_is_a_debiased_average():
    out = lossplot.smoothed([2.0, None, 2.0, 4.0])
    assert out[0] == pytest.approx(2.0) and out[1] is None and out[2] == pytest.approx(2.0)
    assert 2.0 < out[3] < 4.0


def test_report_of_a_trained_run(tmp_path, tiny_cfg, image_folders, one_thread):
    from munit_cli import train

    run = tmp_path / "run"
    train.run(tiny_cfg(), list(image_folders), run)
    page = Page(report.write_report(run).read_text())
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    terms = [k for k in logged[0] if k not in ("step", "lr", "time")]
    assert len(terms) >= 5
    assert sorted(p["data-term"] for p in page.all("path")) == sorted(terms)
    assert [i["alt"] for i in page.all("img")] == ["sample grid at step 3", "sample grid at step 6"]
    assert "newest checkpoint step 6" in page.plain().lower()


def test_training_writes_the_report_at_the_start_every_sample_interval_and_the_end(
    tmp_path, tiny_cfg, image_folders, one_thread, monkeypatch
):
    from munit_cli import train

    run = tmp_path / "run"
    written = []  # (steps logged when written, the page)
    original = report.write_report

    def spy(run_dir):
        path = original(run_dir)
        logged = (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").exists() else []
        written.append((len(logged), Page(path.read_text())))
        return path

    monkeypatch.setattr(report, "write_report", spy)
    result = train.run(tiny_cfg(), list(image_folders), run)  # 6 steps, samples at 3 and 6
    assert [logged for logged, _ in written] == [0, 3, 6, 6]  # start, two sample intervals, end
    start = written[0][1]
    assert "No finished step yet" in start.plain() and start.all("img") == []
    assert [i["alt"] for i in written[1][1].all("img")] == ["sample grid at step 3"]
    assert "newest checkpoint step 3" in written[1][1].plain().lower()  # written after that step's save
    assert [i["alt"] for i in written[3][1].all("img")] == ["sample grid at step 3", "sample grid at step 6"]
    assert result.report == run / "report.html" and result.report.is_file()

    dataset = json.loads((run / "dataset.json").read_text())
    assert [(d["name"], Path(d["source"]).name, d["images"]) for d in dataset["domains"]] == [
        ("outlines", "outlines", 5),
        ("filled", "filled", 5),
    ]
    assert "outlines" in written[-1][1].plain() and "filled" in written[-1][1].plain()


def test_a_report_that_cannot_be_written_is_only_a_warning(tmp_path, tiny_cfg, image_folders, one_thread, monkeypatch, capsys):
    from munit_cli import train

    def fail(run_dir):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report, "write_report", fail)
    result = train.run(tiny_cfg(train={"iters": 3}), list(image_folders), tmp_path / "run")
    assert result.step == 3 and result.generator.is_file()
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: could not write")]
    assert len(warnings) == 3  # start, step 3, end
    assert all("report.html" in w and "No space left on device" in w for w in warnings)


def test_tensorboard_logs_every_loss_term_and_the_sample_grids(tmp_path, image_folders, tiny_set_args, one_thread):
    accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator", reason="the [tensorboard] extra is not installed"
    )
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", *map(str, image_folders), "--out", str(run), *tiny_set_args(), "--tensorboard"])
    assert result.exit_code == 0, result.output
    assert "tensorboard = true" in (run / "config.toml").read_text()  # the flag is the config key
    events = accumulator.EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    terms = [k for k in logged[0] if k not in ("step", "lr", "time")]
    assert sorted(events.Tags()["scalars"]) == sorted([f"loss/{t}" for t in terms] + ["optim/lr"])
    for term in terms:
        points = [(e.step, e.value) for e in events.Scalars(f"loss/{term}")]
        assert [s for s, _ in points] == [r["step"] for r in logged]
        assert [v for _, v in points] == pytest.approx([r[term] for r in logged], rel=1e-6)
    assert [e.value for e in events.Scalars("optim/lr")] == pytest.approx([r["lr"] for r in logged])
    grids = events.Images("samples")
    assert [g.step for g in grids] == [3, 6]
    shown = Image.open(io.BytesIO(grids[0].encoded_image_string)).convert("RGB")
    saved = Image.open(run / "samples" / "step_00000003.png").convert("RGB")
    assert shown.size == saved.size and shown.tobytes() == saved.tobytes()


def test_tensorboard_without_the_extra_fails_before_the_run_folder_is_made(tmp_path, tiny_cfg, image_folders, monkeypatch):
    from munit_cli import train
    from munit_cli.errors import MunitError

    for name in [m for m in sys.modules if m == "tensorboard" or m.startswith(("tensorboard.", "torch.utils.tensorboard"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(MunitError, match="needs the tensorboard package") as caught:
        train.run(tiny_cfg(train={"tensorboard": True}), list(image_folders), tmp_path / "run")
    assert "munit-cli[tensorboard]" in caught.value.hint
    assert not (tmp_path / "run").exists()


def test_tensorboard_key_round_trips_through_toml(tmp_path):
    cfg = config.resolve("tiny", overrides={"train": {"tensorboard": "true"}})
    assert cfg.train.tensorboard is True and config.resolve("tiny").train.tensorboard is False
    (tmp_path / "c.toml").write_text(cfg.to_toml())
    assert config.resolve(config_file=tmp_path / "c.toml").train.tensorboard is True
    with pytest.raises(Exception, match="train.tensorboard"):
        config.resolve("tiny", overrides={"train": {"tensorboard": "maybe"}})


# ---------------------------------------------------------------------------------------------
# munit report


def test_cli_writes_the_report_of_the_newest_run(tmp_path, monkeypatch):
    old = write_run(tmp_path / "runs" / "old")
    new = write_run(tmp_path / "runs" / "new")
    (tmp_path / "runs" / "not-a-run").mkdir()
    for path in (old / "metrics.jsonl", old / "run.json", old / "samples"):
        os.utime(path, (time.time() - 100, time.time() - 100))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["report"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(Path("runs") / "new" / "report.html")
    assert (new / "report.html").is_file() and not (old / "report.html").exists()

    # training logs into the older folder: that run is the newest now (writing a report is not training)
    os.utime(old / "metrics.jsonl", (time.time() + 100, time.time() + 100))
    result = runner.invoke(app, ["report", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"report": str(Path("runs") / "old" / "report.html")}

    result = runner.invoke(app, ["report", str(new), "--json"])
    assert json.loads(result.stdout) == {"report": str(new / "report.html")}


def test_cli_report_does_not_import_torch(tmp_path):
    run = write_run(tmp_path / "run")
    code = (
        "import sys\n"
        "from munit_cli.cli import main\n"
        f"sys.argv = ['munit', 'report', {str(run)!r}]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(run / "report.html"), "False"]


def test_cli_refuses_a_folder_that_is_not_a_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 1
    assert "is not a run folder" in result.stderr
    result = runner.invoke(app, ["report"])
    assert result.exit_code == 1
    assert "no run folder under runs" in result.stderr
    assert not list(tmp_path.rglob("report.html"))


# ---------------------------------------------------------------------------------------------
# In a real browser


BROWSER_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--remote-debugging-pipe",
)  # fmt: skip


def find_browser() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    why = "no chromium on PATH (Debian: apt-get install chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why}; CI must test the report in a browser")
    pytest.skip(why)


class Browser:
    """Chromium headless, driven over the DevTools protocol on a pipe: the browser reads commands
    from its fd 3 and writes replies and events to its fd 4, each a JSON text ended by a NUL."""

    def __init__(self, exe: str, profile: Path, timeout: float = 60.0):
        commands_r, self.commands = os.pipe()
        self.replies, replies_w = os.pipe()
        # bash (dash takes one-digit fds only) puts the pipe ends on fds 3 and 4, then becomes the browser
        launch = f'exec "$@" 3<&{commands_r} 4>&{replies_w}'
        self.log_path = profile.parent / "browser.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(
            ["bash", "-c", launch, "bash", exe, *BROWSER_FLAGS, f"--user-data-dir={profile}"],
            pass_fds=(commands_r, replies_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        os.close(commands_r)
        os.close(replies_w)
        self.deadline = time.monotonic() + timeout
        self.buffer = b""
        self.last_id = 0
        self.events: list[dict] = []

    def _receive(self) -> dict:
        while b"\0" not in self.buffer:
            left = self.deadline - time.monotonic()
            if left <= 0 or not select.select([self.replies], [], [], left)[0]:
                raise TimeoutError("the browser did not answer in time")
            chunk = os.read(self.replies, 1 << 20)
            if not chunk:
                log = self.log_path.read_text(errors="replace")[-2000:]
                raise EOFError(f"the browser closed its DevTools pipe; its log ends:\n{log}")
            self.buffer += chunk
        message, _, self.buffer = self.buffer.partition(b"\0")
        return json.loads(message)

    def send(self, method: str, session: str | None = None, **params) -> dict:
        self.last_id += 1
        message = {"id": self.last_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self.commands, data) :]
        while True:
            reply = self._receive()
            if reply.get("id") == self.last_id:
                assert "error" not in reply, f"{method}: {reply['error']}"
                return reply["result"]
            self.events.append(reply)

    def evaluate(self, session: str, expression: str):
        reply = self.send("Runtime.evaluate", session, expression=expression, returnByValue=True)
        assert "exceptionDetails" not in reply, reply["exceptionDetails"]
        return reply["result"].get("value")

    def open(self, session: str, url: str) -> None:
        """Navigate and wait until the page and its images have loaded."""
        self.send("Page.navigate", session, url=url)
        self.wait_until(session, f"document.readyState + ' ' + location.href === 'complete {url}'")

    def reload(self, session: str) -> None:
        self.evaluate(session, "window.beforeReload = true")
        self.send("Page.reload", session)
        self.wait_until(session, "!window.beforeReload && document.readyState === 'complete'")

    def wait_until(self, session: str, condition: str) -> None:
        while not self.evaluate(session, condition):
            if time.monotonic() > self.deadline:
                raise TimeoutError(f"the page never got to: {condition}")
            time.sleep(0.05)

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (OSError, EOFError, TimeoutError, AssertionError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.commands)
        os.close(self.replies)
        self.log.close()


PAGE_CHECKS = """(() => {
  const curves = [...document.querySelectorAll('#loss-plot path')];
  const before = curves.map(c => c.getAttribute('d'));
  const ticksBefore = document.getElementById('y-ticks').textContent;
  document.getElementById('log-scale').click();
  document.getElementById('smooth').click();
  const after = curves.map(c => c.getAttribute('d'));
  const ticksAfter = document.getElementById('y-ticks').textContent;
  document.getElementById('log-scale').click();
  document.getElementById('smooth').click();
  const restored = curves.map(c => c.getAttribute('d'));
  document.querySelector('button.term').click();
  document.getElementById('smooth').click();
  return {
    terms: curves.map(c => c.dataset.term),
    lengths: curves.map(c => c.getTotalLength()),
    toggled: after.map((d, i) => d !== before[i] && d.startsWith('M')),
    ticksChanged: ticksBefore !== ticksAfter,
    restored: restored.every((d, i) => d === before[i]),
    unsmoothed: before,
    firstHidden: getComputedStyle(curves[0]).display === 'none',
    images: [...document.images].map(i => [i.complete, i.naturalWidth, i.getBoundingClientRect().width]),
    hash: location.hash,
    smoothed: curves.map(c => c.getAttribute('d')),
  };
})()"""

AFTER_RELOAD = """(() => ({
  log: document.getElementById('log-scale').checked,
  smooth: document.getElementById('smooth').checked,
  curves: [...document.querySelectorAll('#loss-plot path')].map(c => c.getAttribute('d')),
}))()"""


def test_report_in_a_real_browser(tmp_path):
    exe = find_browser()
    run = write_run(tmp_path / "run")
    page_file = report.write_report(run)
    browser = Browser(exe, tmp_path / "profile")
    try:
        target = browser.send("Target.createTarget", url="about:blank")["targetId"]
        session = browser.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            browser.send(f"{domain}.enable", session)
        browser.send("Emulation.setDeviceMetricsOverride", session, width=1200, height=900, deviceScaleFactor=1, mobile=False)
        browser.open(session, page_file.as_uri())
        shot = base64.b64decode(browser.send("Page.captureScreenshot", session, format="png")["data"])
        result = browser.evaluate(session, PAGE_CHECKS)
        browser.reload(session)
        reloaded = browser.evaluate(session, AFTER_RELOAD)
    finally:
        browser.close()

    assert result["terms"] == list(TERMS)  # one path per loss term
    assert all(length > 100 for length in result["lengths"])  # drawn across the plot, not empty
    assert all(result["toggled"]) and result["ticksChanged"] and result["restored"]
    assert result["firstHidden"]  # a legend button hides its curve
    # the toggles live in the address: a reload (training rewrote the page) keeps them
    assert result["hash"] == "#log,smooth"
    assert reloaded == {"log": True, "smooth": True, "curves": result["smoothed"]}
    assert reloaded["curves"] != result["unsmoothed"]
    assert len(result["images"]) == 4
    assert all(complete and natural > 0 and shown > 0 for complete, natural, shown in result["images"])

    errors = [
        e for e in browser.events
        if e.get("method") == "Runtime.exceptionThrown"
        or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
        or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
    ]  # fmt: skip
    assert errors == []

    (tmp_path / "report.png").write_bytes(shot)
    image = Image.open(io.BytesIO(shot)).convert("L")
    assert image.size == (1200, 900)
    assert ImageStat.Stat(image).stddev[0] > 20  # not a blank page
    # the plot's frame and curves are in the first screen: many pixels are neither white nor near it
    dark = sum(image.histogram()[:200])
    assert dark > 0.01 * image.width * image.height
