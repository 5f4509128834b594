"""Sweeps that lose nothing: independent jobs (repeats × sizes × widths) run through joblib,
each finished result saved atomically, a rerun skipping what already finished.

    from refnets.sweep import run_sweep
    results = run_sweep(train_one, [{"m": m, "seed": s} for m in (64, 256) for s in range(3)],
                        folder="out/jobs", n_jobs=2)

* ``fn`` is a module-level function (picklable); each job is a dict of plain values (JSON) passed as
  ``fn(**job)`` and holding its own seed, so a result never depends on where or in which order its
  job runs. Results must be JSON-serialisable (NumPy scalars and arrays are accepted and come back
  as numbers and lists); they are returned in the order of ``jobs``.
* ``n_jobs=1`` (default) runs the jobs one after another in this process, with no extra dependency.
  ``n_jobs > 1`` runs them in local worker processes through joblib (the ``parallel`` extra);
  ``dask="tcp://host:8786"`` runs them on a Dask cluster through joblib's Dask backend (the ``dask``
  extra). For the same jobs the results are identical in every case: each result goes through the
  same JSON round trip (what is saved is what is returned), so tuples come back as lists.
* With a ``folder``, each finished job's result is written there as ``<key>.json`` the moment it
  arrives, atomically (a temporary file, then a rename: a killed sweep never leaves half a file). The
  key is a hash of the function's name and the job. A rerun with the same folder reads the finished
  jobs instead of running them again; an unreadable file (damaged outside refnets) is recomputed.
  Files are written by this process, never by the workers, so a Dask cluster needs no shared disk.
  ``fresh=True`` ignores (and overwrites) what is saved, e.g. after changing ``fn``.
* An interrupted parallel sweep (SIGTERM, Ctrl-C, an error) stops its local worker processes before the
  exception leaves ``run_sweep``: no orphan keeps computing. What had finished is already saved. See
  :func:`run_sweep` for the details, including SIGKILL.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import tempfile
import threading
import warnings
from pathlib import Path

FORMAT = 1


def job_key(fn, job: dict) -> str:
    """The file stem of a job's result: a hash of ``module.qualname`` of ``fn`` and the job (sorted JSON)."""
    text = json.dumps([_fn_name(fn), job], sort_keys=True, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _fn_name(fn) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _check_jobs(fn, jobs) -> list:
    if not callable(fn):
        raise TypeError(f"sweep: fn must be callable, got {type(fn).__name__}")
    if "<locals>" in getattr(fn, "__qualname__", "") or getattr(fn, "__name__", "") == "<lambda>":
        raise ValueError(f"sweep: fn must be a module-level function (picklable), got {_fn_name(fn)}")
    jobs = list(jobs)
    for i, job in enumerate(jobs):
        if not isinstance(job, dict):
            raise TypeError(f"sweep: job {i} must be a dict of keyword arguments, got {type(job).__name__}")
        try:
            json.dumps(job, allow_nan=True)
        except TypeError as e:
            raise TypeError(f"sweep: job {i} must hold plain values (JSON): {e}") from None
    return jobs


def _numpy_default(v):
    # NumPy scalars and arrays are common in results: saved as plain numbers and (nested) lists.
    import numpy as np
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"Object of type {type(v).__name__} is not JSON serializable")


def _roundtrip(result, fn, job):
    try:
        text = json.dumps(result, allow_nan=True, default=_numpy_default)
    except TypeError as e:
        raise TypeError(f"sweep: the result of {_fn_name(fn)}(**{job!r}) is not JSON-serialisable: {e}") from None
    return json.loads(text), text


def write_atomic(path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder, fsync, then rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _record_text(fn, job, result_text) -> str:
    return ('{"format": %d, "fn": %s, "job": %s, "result": %s}\n'
            % (FORMAT, json.dumps(_fn_name(fn)), json.dumps(job, sort_keys=True, allow_nan=True), result_text))


def load_finished(path, fn, job):
    """The saved result of ``job`` at ``path`` as ``(True, result)``, or ``(False, None)`` when the file is
    missing, unreadable or belongs to another function or job."""
    try:
        rec = json.loads(Path(path).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return False, None
    if (not isinstance(rec, dict) or rec.get("format") != FORMAT or rec.get("fn") != _fn_name(fn)
            or "result" not in rec
            or json.dumps(rec.get("job"), sort_keys=True) != json.dumps(job, sort_keys=True, allow_nan=True)):
        return False, None
    return True, rec["result"]


def _call(fn, index, job):
    # Runs in the worker: returns the JSON text, so that what crosses the wire is what is saved.
    return index, _roundtrip(fn(**job), fn, job)[1]


def run_sweep(fn, jobs, folder=None, n_jobs: int = 1, dask: str | None = None, fresh: bool = False,
              progress=None) -> list:
    """Run ``fn(**job)`` for every job and return the results in the order of ``jobs``.

    Parameters
    ----------
    fn : module-level function returning a JSON-serialisable result.
    jobs : list of dicts of plain values, each with its own seed.
    folder : path or None
        Where each finished result is saved (atomically) and, on a rerun, read back. None: nothing saved.
    n_jobs : int
        Local worker processes (joblib, ``loky`` backend); 1 runs in this process; -1 uses every core.
    dask : str or None
        Address of a Dask scheduler ("tcp://127.0.0.1:8786"): run through joblib's Dask backend instead.
    fresh : bool
        Ignore saved results and recompute (they are overwritten).
    progress : callable ``progress(done, total)`` or None
        Called after each job finishes (saved jobs count as done at the start).

    Returns
    -------
    list : the results, after a JSON round trip (identical however the jobs ran).

    Notes
    -----
    Interruption: each result is saved the moment its job finishes, so an interrupted sweep loses only
    the jobs that were running, and a rerun with the same ``folder`` resumes. With ``n_jobs > 1`` or
    ``dask``:

    * Any exception while the jobs run -- ``KeyboardInterrupt`` (Ctrl-C, SIGINT), a failing job, a
      failed write, an exception from ``progress`` -- first stops the sweep: joblib cancels the pending
      jobs, and the local (loky) worker processes are killed and waited for; then the exception
      propagates. (A Dask cluster's workers are not ours: only the sweep's tasks are cancelled.)
    * SIGTERM (``kill PID``, ``pkill -f "refnets run"``): if SIGTERM has its default disposition and
      ``run_sweep`` runs in the main thread, a handler installed for the duration of the parallel part
      raises ``SystemExit(143)`` (128 + SIGTERM, the status a shell reports for a process killed by
      SIGTERM) in the main thread. The workers are killed as above, ``finally`` blocks and ``atexit``
      handlers run, and the process exits with status 143 unless a caller catches ``SystemExit``.
      Further SIGTERMs are ignored during that cleanup (normally well under a second). The previous
      handler is restored when ``run_sweep`` returns or raises. A SIGTERM handler of the program's own,
      or SIG_IGN, is left alone; if that handler raises, the workers are killed the same way.
    * SIGKILL cannot be caught, and the loky in joblib 1.6 (loky 3.6) has no parent-death check: each
      worker finishes the job it is running (however long it takes), then sits idle until loky's idle
      timeout (300 s) ends it: workers with 5 s jobs were gone about 5.5 minutes after the parent. To kill hard,
      kill the whole process group (``kill -KILL -- -PGID``), which reaches the workers too.
    """
    jobs = _check_jobs(fn, jobs)
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -1:
        raise ValueError(f"sweep: n_jobs must be a positive integer or -1, got {n_jobs!r}")
    results = [None] * len(jobs)
    done = [False] * len(jobs)
    paths = [None] * len(jobs)
    if folder is not None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.tmp"):  # left by a sweep killed in the middle of a write
            stale.unlink(missing_ok=True)
        for i, job in enumerate(jobs):
            paths[i] = folder / f"{job_key(fn, job)}.json"
            if not fresh:
                done[i], results[i] = load_finished(paths[i], fn, job)
    todo = [i for i in range(len(jobs)) if not done[i]]
    n_done = len(jobs) - len(todo)
    if progress is not None:
        progress(n_done, len(jobs))

    def finish(i, text):
        nonlocal n_done
        results[i] = json.loads(text)
        if paths[i] is not None:
            write_atomic(paths[i], _record_text(fn, jobs[i], text))
        n_done += 1
        if progress is not None:
            progress(n_done, len(jobs))

    if not todo:
        return results
    if dask is None and (n_jobs == 1 or len(todo) == 1):
        for i in todo:
            finish(*_call(fn, i, jobs[i]))
        return results
    with _sigterm_raises_system_exit():
        outputs = _parallel(fn, jobs, todo, n_jobs, dask)
        try:
            for i, text in outputs:
                finish(i, text)
        except BaseException:
            _stop_workers(outputs, local=dask is None)
            raise
    return results


class _Terminated(SystemExit):
    """Raised in the main thread by SIGTERM during a parallel sweep; exits with status 128 + SIGTERM."""


@contextlib.contextmanager
def _sigterm_raises_system_exit():
    """While the block runs, SIGTERM raises ``_Terminated`` (a ``SystemExit``) in the main thread, so that
    the workers are killed on the way out; further SIGTERMs are then ignored until the block exits. Only
    installed from the main thread and over the default disposition; the previous handler is restored."""
    sigterm = getattr(signal, "SIGTERM", None)
    if (sigterm is None or threading.current_thread() is not threading.main_thread()
            or signal.getsignal(sigterm) is not signal.SIG_DFL):
        yield
        return
    raised = []

    def handler(signum, frame):
        if not raised:  # once: a second SIGTERM must not interrupt the cleanup of the first
            raised.append(signum)
            raise _Terminated(128 + signum)

    previous = signal.signal(sigterm, handler)
    try:
        yield
    finally:
        signal.signal(sigterm, previous)


def _stop_workers(outputs, local: bool) -> None:
    """After an exception during a parallel sweep: stop the remaining jobs and kill the local workers."""
    # Closing the generator throws GeneratorExit into joblib's, which aborts: for loky it shuts the executor
    # down with kill_workers=True and waits. A no-op if the exception came out of joblib (it has aborted).
    # joblib then warns that tasks were cancelled; the exception on its way out is what matters.
    with warnings.catch_warnings(), contextlib.suppress(Exception):
        warnings.simplefilter("ignore")
        outputs.close()
    if local:
        # In case the exception hit joblib's own abort half-way: kill what is left of loky's reusable
        # executor (the one joblib's loky backend runs on). A no-op when it is already shut down.
        try:
            from joblib.externals.loky import reusable_executor
        except ImportError:  # pragma: no cover - depends on the joblib version
            return
        executor = getattr(reusable_executor, "_executor", None)
        if executor is not None:
            executor.shutdown(wait=True, kill_workers=True)


def _parallel(fn, jobs, todo, n_jobs, dask):
    """Yield ``(index, result_text)`` as the jobs finish, through joblib (loky or Dask)."""
    try:
        import joblib
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("parallel sweeps need joblib: pip install 'refnets[parallel]'") from None
    tasks = (joblib.delayed(_call)(fn, i, jobs[i]) for i in todo)
    if dask is None:
        workers = n_jobs if n_jobs > 0 else (os.cpu_count() or 1)
        par = joblib.Parallel(n_jobs=min(workers, len(todo)), backend="loky",
                              batch_size=1, return_as="generator_unordered")
        yield from par(tasks)
        return
    try:
        from dask.distributed import Client
    except ImportError:
        raise ImportError("sweeps on a Dask cluster need dask.distributed: pip install 'refnets[dask]'") from None
    with Client(dask, set_as_default=False) as client:
        with joblib.parallel_config(backend="dask", client=client):
            par = joblib.Parallel(n_jobs=-1, return_as="generator_unordered")
            yield from par(tasks)


def expand(**axes) -> list:
    """Every combination of the given axes as job dicts, the last axis varying fastest:
    ``expand(m=[64, 256], seed=range(3))`` -> 6 jobs."""
    jobs = [{}]
    for name, values in axes.items():
        values = list(values)
        if not values:
            raise ValueError(f"sweep: axis {name!r} is empty")
        jobs = [dict(j, **{name: v}) for j in jobs for v in values]
    return jobs


__all__ = ["run_sweep", "expand", "job_key", "load_finished", "write_atomic"]
