"""report.html renders in headless Chromium with every figure loaded (skipped where Chromium is absent;
CI installs it)."""
import os
import shutil
import subprocess

import numpy as np
import pytest

from refnets.experiments import common
from refnets.experiments.report import write_report


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium is not installed (CI installs it: apt-get install chromium)")


def _run(browser, tmp_path, *args):
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=dict(os.environ, HOME=str(tmp_path)))
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout


@pytest.fixture
def report(tmp_path):
    @common.experiment("du2019.html_for_tests", "du2019", "two figures", quick_seconds=1, full_seconds=1)
    def toy(ctx):
        x = np.array([10.0, 100.0, 1000.0])
        for stem, slope in (("rate", -0.5), ("loss", -1.0)):
            fig, ax = common.new_figure()
            common.plot_rate(ax, x, 2 * x ** slope, "measured")
            common.reference_slope(ax, x, slope, 2 * x[0] ** slope)
            common.finish(ax, "width m", stem)
            ctx.figure(fig, stem, f"{stem} against width")
        ctx.claim("a claim that holds", "yes", True)
        ctx.claim("a claim that fails", "no", False)
    try:
        record = common.run("du2019.html_for_tests", tmp_path / "run")
    finally:
        del common.REGISTRY["du2019.html_for_tests"]
    return write_report([record], tmp_path / "run")[1]


def test_report_renders_with_every_image_loaded(report, tmp_path):
    browser = _chromium()
    url = report.resolve().as_uri()
    dom = _run(browser, tmp_path, "--dump-dom", url)
    assert 'data-images="2/2"' in dom and 'data-images-loaded="all"' in dom, dom[:2000]
    assert "a claim that fails" in dom and "class=\"no\"" in dom
    shot = tmp_path / "shot.png"
    _run(browser, tmp_path, f"--screenshot={shot}", "--window-size=1200,1600", "--hide-scrollbars", url)
    import matplotlib.image as mpimg
    img = mpimg.imread(shot)
    assert img.shape[0] >= 1000 and img.shape[1] >= 1000
    assert img[..., :3].std() > 0.05, "the screenshot is blank"
    # the check can fail: a missing figure is reported
    (report.parent / "du2019.html_for_tests" / "loss.png").unlink()
    dom = _run(browser, tmp_path, "--dump-dom", url)
    assert 'data-images="1/2"' in dom and 'data-images-loaded="missing"' in dom
