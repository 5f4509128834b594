"""Sweeps: joblib processes and a Dask cluster give the sequential results; finished jobs are saved
atomically and skipped on a rerun, also after the sweep was killed with SIGKILL; SIGTERM, Ctrl-C or an
error mid-sweep kill the worker processes too."""
import inspect
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from refnets import cli
from refnets.experiments import common
from refnets.sweep import expand, job_key, run_sweep


def noisy_sum(m, seed, log=None):
    """A job: a seeded random number, plus a tuple (comes back as a list) and a non-finite value."""
    if log is not None:
        with open(log, "a") as f:
            f.write(f"{m},{seed}\n")
    r = np.random.default_rng(seed)
    return {"m": m, "value": float(r.standard_normal(m).sum()), "pair": (m, seed), "inf": float("inf")}


def _calls(log):
    return Path(log).read_text().splitlines() if Path(log).exists() else []


JOBS = expand(m=[1, 4, 9], seed=range(3))


def test_expand_orders_the_last_axis_fastest():
    assert expand(a=[1, 2], b="xy") == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"},
                                         {"a": 2, "b": "y"}]
    with pytest.raises(ValueError, match="axis 'b' is empty"):
        expand(a=[1], b=[])


def test_processes_give_the_sequential_results_in_order(tmp_path):
    pytest.importorskip("joblib")
    seq = run_sweep(noisy_sum, JOBS)
    assert [r["pair"] for r in seq] == [[j["m"], j["seed"]] for j in JOBS]  # in order, tuples as lists
    assert seq[0]["inf"] == float("inf")
    handler = signal.getsignal(signal.SIGTERM)
    par = run_sweep(noisy_sum, JOBS, folder=tmp_path / "jobs", n_jobs=2)
    assert signal.getsignal(signal.SIGTERM) is handler  # installed for the sweep only
    assert json.dumps(par) == json.dumps(seq)
    assert len(list((tmp_path / "jobs").glob("*.json"))) == len(JOBS)


def test_rerun_skips_finished_jobs_and_recomputes_damaged_ones(tmp_path):
    log = str(tmp_path / "calls.txt")
    jobs = [dict(j, log=log) for j in JOBS]
    folder = tmp_path / "jobs"
    first = run_sweep(noisy_sum, jobs, folder=folder)
    assert len(_calls(log)) == len(jobs)
    assert run_sweep(noisy_sum, jobs, folder=folder) == first
    assert len(_calls(log)) == len(jobs), "a rerun must not recompute finished jobs"
    # a damaged file and a stale temporary file: the damaged job alone runs again, the temp file goes
    damaged = folder / f"{job_key(noisy_sum, jobs[4])}.json"
    damaged.write_text('{"format": 1, "fn": "x", "res')
    (folder / "leftover.json.abc.tmp").write_text("{")
    seen = []
    assert run_sweep(noisy_sum, jobs, folder=folder, progress=lambda d, t: seen.append((d, t))) == first
    assert _calls(log)[len(jobs):] == ["4,1"]
    assert seen == [(len(jobs) - 1, len(jobs)), (len(jobs), len(jobs))]
    assert not list(folder.glob("*.tmp"))
    # fresh=True recomputes everything
    assert run_sweep(noisy_sum, jobs, folder=folder, fresh=True) == first
    assert len(_calls(log)) == 2 * len(jobs) + 1


def test_numpy_results_come_back_as_numbers_and_lists():
    assert run_sweep(np.full, [{"shape": [2], "fill_value": 3}]) == [[3, 3]]
    assert run_sweep(np.linalg.norm, [{"x": [3.0, 4.0]}]) == [5.0]


def test_saved_file_names_its_function_and_job(tmp_path):
    run_sweep(noisy_sum, JOBS[:1], folder=tmp_path)
    rec = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert rec["fn"] == "test_sweep.noisy_sum" and rec["job"] == {"m": 1, "seed": 0}
    assert job_key(noisy_sum, {"m": 1, "seed": 0}) != job_key(noisy_sum, {"m": 1, "seed": 1})


def _local(m, seed):
    return m


@pytest.mark.parametrize("fn,jobs,kw,err,match", [
    (lambda m, seed: m, [{"m": 1, "seed": 0}], {}, ValueError, "module-level"),
    (noisy_sum, [{"m": np.arange(2), "seed": 0}], {}, TypeError, "job 0 must hold plain values"),
    (noisy_sum, [(1, 0)], {}, TypeError, "job 0 must be a dict"),
    (noisy_sum, JOBS, {"n_jobs": 0}, ValueError, "n_jobs must be"),
    (np.dtype, [{"dtype": "f8"}], {}, TypeError, "not JSON-serialisable"),
])
def test_bad_sweeps_raise_clear_errors(fn, jobs, kw, err, match):
    with pytest.raises(err, match=match):
        run_sweep(fn, jobs, **kw)


# --------------------------------------------------------------------- SIGKILL mid-way
JOBFILE = '''
import os, time
import numpy as np

def job(i, seed, gate, log):
    with open(log, "a") as f:
        f.write(f"{i}\\n")
    if i >= 4:  # the first four finish at once, the others wait for the gate
        while not os.path.exists(gate):
            time.sleep(0.01)
    return {"i": i, "x": np.random.default_rng(seed).standard_normal(3).tolist()}
'''

MAIN = '''
import sys
sys.path.insert(0, {here!r})
from sweepjob import job
from refnets.sweep import run_sweep
if __name__ == "__main__":
    jobs = [dict(i=i, seed=100 + i, gate={gate!r}, log={log!r}) for i in range(10)]
    run_sweep(job, jobs, folder={folder!r}, n_jobs=2)
    print("done")
'''


def test_sweep_killed_mid_way_resumes_to_identical_results(tmp_path):
    pytest.importorskip("joblib")
    (tmp_path / "sweepjob.py").write_text(JOBFILE)
    gate, log, folder = str(tmp_path / "gate"), str(tmp_path / "log"), tmp_path / "jobs"
    script = tmp_path / "main.py"
    script.write_text(MAIN.format(here=str(tmp_path), gate=gate, log=log, folder=str(folder)))
    p = subprocess.Popen([sys.executable, "-W", "error", str(script)], cwd=tmp_path, start_new_session=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(list(folder.glob("*.json"))) < 4:
            assert p.poll() is None, p.communicate()[1].decode()[-3000:]
            assert time.monotonic() < deadline, "the first four jobs never finished"
            time.sleep(0.05)
    finally:
        os.killpg(p.pid, signal.SIGKILL)  # the sweep and its worker processes, mid-way
        p.communicate()
    assert p.returncode == -signal.SIGKILL
    assert len(list(folder.glob("*.json"))) == 4
    Path(gate).touch()
    p2 = subprocess.run([sys.executable, "-W", "error", str(script)], cwd=tmp_path, capture_output=True,
                        text=True, timeout=300)
    assert p2.returncode == 0 and "done" in p2.stdout, p2.stderr[-3000:]
    calls = [int(c) for c in _calls(log)]
    assert all(calls.count(i) == 1 for i in range(4)), f"finished jobs ran again: {calls}"
    assert sorted(set(calls)) == list(range(10))
    sys.path.insert(0, str(tmp_path))
    try:
        from sweepjob import job
        jobs = [dict(i=i, seed=100 + i, gate=gate, log=log) for i in range(10)]
        reference = run_sweep(job, jobs)  # uninterrupted, sequential, nothing saved
        resumed = run_sweep(job, jobs, folder=folder)  # reads every result back
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("sweepjob", None)
    assert json.dumps(resumed) == json.dumps(reference)
    files = sorted(folder.iterdir())
    assert len(files) == 10 and all(f.suffix == ".json" for f in files), [f.name for f in files]
    for f in files:  # every file is complete JSON
        assert json.loads(f.read_text())["result"]["i"] in range(10)


# --------------------------------------------------------------------- Dask
def test_local_dask_cluster_gives_the_sequential_results(tmp_path):
    pytest.importorskip("joblib")
    distributed = pytest.importorskip("dask.distributed")
    seq = run_sweep(noisy_sum, JOBS)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        on_dask = run_sweep(noisy_sum, JOBS, folder=tmp_path / "jobs", dask=cluster.scheduler_address)
        assert json.dumps(on_dask) == json.dumps(seq)
        code = cli.main(["run", "du2019.sweep_for_tests", "-q", "--out", str(tmp_path / "cli"),
                         "--dask", cluster.scheduler_address])
    assert code == 0
    assert len(list((tmp_path / "jobs").glob("*.json"))) == len(JOBS)


# --------------------------------------------------------------------- Context.map and the CLI
def sweep_job(m, seed):
    r = np.random.default_rng(seed)
    return {"m": m, "dev": float(np.abs(r.standard_normal((m, m))).mean() / np.sqrt(m))}


@pytest.fixture(autouse=True)
def sweep_experiment():
    @common.experiment("du2019.sweep_for_tests", "du2019", "a toy sweep", quick_seconds=1, full_seconds=2)
    def toy(ctx):
        rows = ctx.map(sweep_job, expand(m=[4, 16, 64], seed=[ctx.seed, ctx.seed + 1]))
        ctx.table("sweep", rows)
        ctx.claim("there are six rows", str(len(rows)), len(rows) == 6)
    yield
    del common.REGISTRY["du2019.sweep_for_tests"]


def test_context_map_saves_jobs_and_keeps_order(tmp_path):
    ctx = common.Context(tmp_path / "x", jobs=1)
    jobs = expand(m=[2, 3], seed=[5, 6])
    assert ctx.map(sweep_job, jobs) == [sweep_job(**j) for j in jobs]
    assert len(list((tmp_path / "x" / "jobs").glob("*.json"))) == 4


def test_cli_jobs_1_and_2_write_identical_numbers(tmp_path, capsys):
    pytest.importorskip("joblib")
    for j in ("1", "2"):
        assert cli.main(["run", "du2019.sweep_for_tests", "--out", str(tmp_path / j), "--jobs", j]) == 0
    a = (tmp_path / "1" / "du2019.sweep_for_tests" / "sweep.csv").read_bytes()
    assert a == (tmp_path / "2" / "du2019.sweep_for_tests" / "sweep.csv").read_bytes()
    assert "sweep: 6/6 jobs" in capsys.readouterr().err
    cfg = json.loads((tmp_path / "2" / "config.json").read_text())
    assert cfg["config"]["jobs"] == 2 and cfg["config"]["dask"] is None
    # a rerun into the same folder reads the finished jobs; --fresh recomputes them
    assert cli.main(["run", "du2019.sweep_for_tests", "--out", str(tmp_path / "1")]) == 0
    assert "sweep: 6/6 jobs (6 from a previous run)" in capsys.readouterr().err
    assert cli.main(["run", "du2019.sweep_for_tests", "--out", str(tmp_path / "1"), "--fresh"]) == 0
    assert "previous run" not in capsys.readouterr().err
    assert (tmp_path / "1" / "du2019.sweep_for_tests" / "sweep.csv").read_bytes() == a


@pytest.mark.parametrize("argv,message", [
    (["--dask", "nonsense"], "--dask expects a scheduler address"),
    (["--dask", "tcp://127.0.0.1:1"], "cannot reach a Dask scheduler"),
])
def test_cli_bad_dask_address_is_a_usage_error(argv, message, capsys, monkeypatch):
    pytest.importorskip("dask.distributed")
    monkeypatch.setattr(cli, "check_dask", lambda a, timeout=1: _orig_check(a, timeout=1))
    assert cli.main(["run", "du2019.sweep_for_tests", "-q"] + argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


_orig_check = cli.check_dask


# --------------------------------------------------------------------- SIGTERM / SIGINT mid-way
def slow_job(i, folder, secs):
    """A job that writes its process id to ``folder/pid<i>`` (atomically), then sleeps ``secs``."""
    tmp = os.path.join(folder, f"pid{i}.part")
    with open(tmp, "w") as f:
        f.write(str(os.getpid()))
    os.replace(tmp, os.path.join(folder, f"pid{i}"))
    time.sleep(secs)
    return i


SLOWMAIN = '''
import sys
from slowjob import slow_job
from refnets.sweep import run_sweep
folder = sys.argv[1]
# job 0 finishes at once (and is saved); jobs 1 and 2 then sleep for a minute in the two workers
run_sweep(slow_job, [dict(i=i, folder=folder, secs=0 if i == 0 else 60) for i in range(3)],
          folder=folder + "/jobs", n_jobs=2)
'''


def _alive(pid):
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by its new parent, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("sig,status", [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, -signal.SIGINT)])
def test_signal_mid_sweep_kills_the_workers(tmp_path, sig, status):
    pytest.importorskip("joblib")
    (tmp_path / "slowjob.py").write_text("import os\nimport time\n\n\n" + inspect.getsource(slow_job))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    log = tmp_path / "stderr.txt"  # a file, not a pipe: orphaned workers would hold a pipe open
    with open(log, "wb") as stderr:
        p = subprocess.Popen([sys.executable, "-c", SLOWMAIN, str(tmp_path)], cwd=tmp_path, env=env,
                             start_new_session=True, stdout=subprocess.DEVNULL, stderr=stderr)
    pidfiles = [tmp_path / "pid1", tmp_path / "pid2"]
    workers = []
    try:
        deadline = time.monotonic() + 60
        while not all(f.exists() for f in pidfiles):
            assert p.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the workers never started the slow jobs"
            time.sleep(0.05)
        workers = [int(f.read_text()) for f in pidfiles]
        assert len(set(workers)) == 2 and p.pid not in workers
        time.sleep(0.2)  # let the parent settle into waiting for the results
        os.kill(p.pid, sig)  # the parent alone, as `pkill -f "refnets run"` would
        p.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [w for w in workers if _alive(w)], "worker processes outlived the interrupted sweep"
    finally:  # never leave a stray process behind
        if p.poll() is None:
            p.kill()
            p.wait()
        for w in workers:
            if _alive(w):
                os.kill(w, signal.SIGKILL)
    err = log.read_text()
    assert p.returncode == status, err[-3000:]
    if sig == signal.SIGTERM:
        assert "Traceback" not in err, err[-3000:]
    saved = list((tmp_path / "jobs").iterdir())  # the job that had finished is kept, nothing half-written
    assert len(saved) == 1 and json.loads(saved[0].read_text())["result"] == 0, saved


def test_exception_in_the_sweep_loop_kills_the_workers(tmp_path):
    """An exception raised in this process while the jobs run (here by ``progress``) stops the workers
    before it propagates, not when the suspended joblib generator happens to be garbage-collected."""
    pytest.importorskip("joblib")
    pidfiles = [tmp_path / "pid1", tmp_path / "pid2"]

    def progress(done, total):
        if done:  # job 0 is saved: wait for jobs 1 and 2 to be sleeping in the two workers, then stop
            deadline = time.monotonic() + 60
            while not all(f.exists() for f in pidfiles) and time.monotonic() < deadline:
                time.sleep(0.05)
            raise KeyboardInterrupt

    jobs = [dict(i=i, folder=str(tmp_path), secs=0 if i == 0 else 60) for i in range(3)]
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt) as info:
        run_sweep(slow_job, jobs, folder=tmp_path / "jobs", n_jobs=2, progress=progress)
    workers = [int(f.read_text()) for f in pidfiles if f.exists()]
    try:
        assert len(set(workers)) == 2 and os.getpid() not in workers
        alive = [w for w in workers if _alive(w)]  # no waiting: they must be gone when run_sweep raises
        assert not alive, "worker processes outlived the interrupted sweep"
    finally:
        del info
        for w in workers:
            if _alive(w):
                os.kill(w, signal.SIGKILL)
    assert len(list((tmp_path / "jobs").iterdir())) == 1
    assert signal.getsignal(signal.SIGTERM) is handler  # the sweep's SIGTERM handler is gone
    # and the next parallel sweep starts new workers
    assert json.dumps(run_sweep(noisy_sum, JOBS[:3], n_jobs=2)) == json.dumps(run_sweep(noisy_sum, JOBS[:3]))
