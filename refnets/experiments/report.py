"""Turn experiment records into ``report.md`` and ``report.html``: the figures, and for every
experiment a table of checked claims (what the theorem says, what was measured, holds?)."""
from __future__ import annotations

import html
import json
import platform
import sys
from pathlib import Path

from .common import PAPERS, write_json


def environment() -> dict:
    """Package versions and machine, written beside every run for reproducibility."""
    import numba
    import numpy

    import refnets
    env = {"refnets": refnets.__version__, "python": sys.version.split()[0], "numpy": numpy.__version__,
           "numba": numba.__version__, "platform": platform.platform(), "machine": platform.machine()}
    from importlib import metadata
    for dist in ("matplotlib", "scipy", "scikit-learn", "torch", "joblib", "dask", "distributed"):
        try:  # the installed version, without importing the package (torch and dask are slow to import)
            env[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return env


def write_config(out, config: dict) -> Path:
    """``config.json``: the run's exact configuration and :func:`environment`."""
    path = Path(out) / "config.json"
    write_json(path, {"config": config, "environment": environment()})
    return path


def _by_paper(records):
    papers = {}
    for r in records:
        papers.setdefault(r["paper"], []).append(r)
    return papers


def summary_counts(records) -> tuple[int, int]:
    """(claims that hold, claims checked) over all records."""
    claims = [c for r in records for c in r["claims"]]
    return sum(c["holds"] for c in claims), len(claims)


def write_markdown(records, out) -> Path:
    """``report.md``: the same content as the HTML report, in Markdown."""
    out = Path(out)
    held, total = summary_counts(records)
    lines = ["# refnets report", "",
             f"{len(records)} experiments, {held} of {total} checked claims hold. "
             f"Mode: {', '.join(sorted({r['mode'] for r in records}))}. Configuration: `config.json`.", ""]
    for paper, recs in _by_paper(records).items():
        lines += [f"## {PAPERS.get(paper, paper)}", ""]
        for r in recs:
            lines += [f"### {r['name']}", "", r["description"], "", f"Time: {r['seconds']} s.", ""]
            if r["claims"]:
                lines += ["| claim | measured | holds |", "|---|---|---|"]
                for c in r["claims"]:
                    cell = lambda s: str(s).replace("|", "\\|").replace("\n", " ")
                    lines.append(f"| {cell(c['statement'])} | {cell(c['measured'])} | "
                                 f"{'yes' if c['holds'] else '**no**'} |")
                lines.append("")
            for note in r["notes"]:
                lines += [note, ""]
            for fig, caption in r["figures"]:
                lines += [f"![{caption or fig}]({r['name']}/{fig})", ""]
                if caption:
                    lines += [f"*{caption}*", ""]
            if r["tables"]:
                lines += ["Numbers: " + ", ".join(f"[{t}]({r['name']}/{t})" for t in r["tables"]), ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


# Marks on <body> whether every figure loaded (complete, naturalWidth > 0): a headless browser's
# --dump-dom shows data-images-loaded="all" or "missing" (tests/test_report_html.py).
_IMAGES_LOADED_SCRIPT = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute("data-images", ok + "/" + imgs.length);
  document.body.setAttribute("data-images-loaded", ok === imgs.length ? "all" : "missing");
});
</script>"""


def write_html(records, out) -> Path:
    """``report.html``: per paper and experiment, the claims table (holds in green, fails in red),
    notes and figures; a small script marks on ``<body>`` whether every image loaded."""
    out = Path(out)
    e = html.escape
    held, total = summary_counts(records)
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>refnets report</title><style>",
             "body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
             "vertical-align:top}.yes{color:#186a1d}.no{color:#b00020;font-weight:bold}"
             "img{max-width:100%;border:1px solid #eee}figure{margin:1em 0}",
             "</style></head><body><h1>refnets report</h1>",
             f"<p>{len(records)} experiments, {held} of {total} checked claims hold. Configuration: "
             f"<a href='config.json'>config.json</a>.</p>"]
    for paper, recs in _by_paper(records).items():
        parts.append(f"<h2>{e(PAPERS.get(paper, paper))}</h2>")
        for r in recs:
            parts.append(f"<h3 id='{e(r['name'])}'>{e(r['name'])}</h3><p>{e(r['description'])} "
                         f"({r['seconds']} s)</p>")
            if r["claims"]:
                parts.append("<table><tr><th>claim</th><th>measured</th><th>holds</th></tr>")
                for c in r["claims"]:
                    cls = "yes" if c["holds"] else "no"
                    parts.append(f"<tr><td>{e(c['statement'])}</td><td>{e(str(c['measured']))}</td>"
                                 f"<td class='{cls}'>{cls}</td></tr>")
                parts.append("</table>")
            for note in r["notes"]:
                parts.append(f"<p>{e(note)}</p>")
            for fig, caption in r["figures"]:
                parts.append(f"<figure><img src='{e(r['name'])}/{e(fig)}' alt='{e(caption or fig)}'>"
                             f"<figcaption>{e(caption)}</figcaption></figure>")
    parts.append(_IMAGES_LOADED_SCRIPT)
    parts.append("</body></html>")
    path = out / "report.html"
    path.write_text("\n".join(parts))
    return path


def write_report(records, out) -> tuple[Path, Path]:
    """``results.json``, ``report.md`` and ``report.html`` from the experiments' records."""
    write_json(Path(out) / "results.json", records)
    return write_markdown(records, out), write_html(records, out)


def load_records(out) -> list[dict]:
    """The records of a finished run, from its ``results.json``."""
    return json.loads((Path(out) / "results.json").read_text())
