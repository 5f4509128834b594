"""The README's main job, `refnets reproduce all --quick`, end to end: every experiment of every paper
runs, writes its figures and numbers, and every claim it checks holds (fixed seed, so a claim that
fails here fails for every newcomer who pastes the quick start)."""
import json

from refnets import cli
from refnets.experiments import load_all


def test_reproduce_all_quick_runs_every_experiment_and_every_claim_holds(tmp_path, capsys):
    code = cli.main(["reproduce", "all", "--quick", "--quiet", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "Open the report" in out and (tmp_path / "report.html").exists() and (tmp_path / "report.md").exists()
    names = sorted(load_all())
    failed = []
    for name in names:
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        assert list((tmp_path / name).glob("*.png")), f"{name} wrote no figure"
        assert summary["claims"], f"{name} checks no claim"
        failed += [f"{name}: {c['statement']} (measured {c['measured']})" for c in summary["claims"] if not c["holds"]]
    assert not failed, "claims that do not hold in quick mode:\n" + "\n".join(failed)
