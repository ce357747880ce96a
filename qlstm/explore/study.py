"""``qlstm explore``: the Optuna study (NSGA-II, in a database) whose trials run as Dask tasks.

The explorer asks Optuna for points, submits each as a Dask task (:func:`run_trial`) to a
LocalCluster or an existing scheduler, and tells Optuna the three objectives (firmware RMSE,
latency, resource fraction) and the constraints (fits the part, meets the budget). The study
lives in a SQLAlchemy database (SQLite in DIR by default), so a killed exploration resumes and
several explorers can share one study. The events are generated once (one data step in
``DIR/data_run``) and every trial reads that file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import optuna

from qlstm.errors import QlstmError
from qlstm.explore.space import Space
from qlstm.explore.trial import Context, _error_line, prepare_windows, run_config, run_trial
from qlstm.io import check_out_folder

STUDY_NAME = "qlstm-explore"
OBJECTIVES = ("rmse", "latency_us", "resource_frac")
INTERRUPTED = "interrupted"


def check_data(data: Path | None) -> Path | None:
    """``--data`` resolved to an absolute path, after reading it once with the project's events
    loader (:func:`qlstm.data.load_events`: format, columns, NaN, timestamps), so a missing or
    corrupt file is one error line before anything is created, not a failure in every trial."""
    if data is None:
        return None
    from qlstm.data import load_events

    path = Path(data).resolve()
    try:
        load_events(path)
    except QlstmError as exc:
        raise QlstmError(f"--data: {str(exc).splitlines()[0]}") from None
    except Exception as exc:  # noqa: BLE001 - a reader library's error on a corrupt file: one line
        raise QlstmError(f"--data {data}: not a readable events file ({_error_line(exc)})") from None
    return path


def _events(out: Path, space: Space, data: Path | None) -> tuple[Path, bool]:
    """The exploration's events: ``--data`` (checked by :func:`check_data`), or the synthetic
    default generated ONCE by the run's data step (``DIR/data_run``; reused when its config did
    not change)."""
    if data is not None:
        return Path(data), False
    from qlstm.data.synthetic import SyntheticConfig
    from qlstm.pipeline import execute
    from qlstm.run_config import RunConfig

    s = space.settings
    cfg = RunConfig(data=SyntheticConfig(n_events=int(s["n_events"]), duration_s=float(s["duration_s"]),
                                         seed=int(s["seed"])))  # fmt: skip
    run = execute(cfg, out / "data_run", stop="data", echo=lambda m: None)
    return Path(run.outputs["data"]["events"]), True


def _client(scheduler: str | None, workers: int):
    import logging

    from dask.distributed import Client, LocalCluster

    for name in ("distributed", "tornado"):  # the cluster's chatter; trial errors are recorded per trial
        logging.getLogger(name).setLevel(logging.ERROR)

    if scheduler is not None:
        return connect(scheduler), None
    if workers < 1:
        raise QlstmError(f"--workers {workers} must be >= 1")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(var, "1")  # one thread per trial: the workers are the parallelism
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=None, host="127.0.0.1",
                           silence_logs=logging.ERROR)  # fmt: skip
    return Client(cluster), cluster


#: seconds to connect to a Dask scheduler (Client's own timeout; the whole attempt is bounded by
#: 5 s more, because a service that accepts the connection but does not speak Dask can hang it)
CONNECT_TIMEOUT_S = 10.0


def connect(address: str, timeout_s: float | None = None):
    """A ``dask.distributed.Client`` on the scheduler at ``address``, or one QlstmError line
    ``cannot connect to the Dask scheduler at ADDRESS: ...`` after at most ``timeout_s + 5``
    seconds, whatever answers there (nothing, another service, garbage: a non-Dask peer's bytes
    read as a message header once asked numpy for 3 EiB)."""
    import threading

    from dask.distributed import Client

    timeout_s = CONNECT_TIMEOUT_S if timeout_s is None else timeout_s

    got: dict[str, Any] = {}

    def attempt() -> None:  # a daemon thread: a hung attempt does not keep the process alive
        try:
            got["client"] = Client(address, timeout=f"{timeout_s:g}s")
        except BaseException as exc:  # noqa: BLE001 - reported below as one line
            got["error"] = exc
        if got.get("late") and "client" in got:  # the caller gave up: do not leave a client connected
            got["client"].close()

    th = threading.Thread(target=attempt, name="qlstm-connect", daemon=True)
    th.start()
    th.join(timeout_s + 5)
    if "client" in got:
        return got["client"]
    if "error" in got:
        why = _error_line(got.pop("error").with_traceback(None))  # no frame keeps a half-made client
    else:
        got["late"] = True
        why = f"no Dask answer within {timeout_s + 5:g} s"
    raise QlstmError(f"cannot connect to the Dask scheduler at {address}: {why}")


_SCHEMA_RETRIES = 5


def _schema_race(exc: Exception) -> bool:
    """True for the errors of two processes creating a fresh database's tables at once.

    Optuna's ``RDBStorage`` creates its schema on first use without a lock, so two explorers
    sharing one new study (or an explorer and a reader) can each see the other's half-made schema:
    measured here, 2 processes on a fresh SQLite file failed 20 times out of 40 with ``table studies
    already exists``, ``UNIQUE constraint failed: alembic_version.version_num`` or ``database is
    locked``. Retrying after the other process has finished is all it takes.
    """
    text = str(exc)
    return type(exc).__name__ in {"OperationalError", "IntegrityError"} and any(
        s in text for s in ("already exists", "UNIQUE constraint failed", "database is locked")
    )


def open_study(storage: str, space: Space, settings: dict[str, Any]):
    """Create or load the study; refuses one created with another space, target or budget."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = TrialSeededNSGAII(int(space.settings["population_size"]), int(space.settings["seed"]))
    for attempt in range(_SCHEMA_RETRIES + 1):
        try:
            study = optuna.create_study(study_name=STUDY_NAME, storage=storage, sampler=sampler,
                                        directions=["minimize"] * 3, load_if_exists=True)  # fmt: skip
            break
        except Exception as exc:  # noqa: BLE001 - a bad URL or an unreachable database: one line
            if attempt < _SCHEMA_RETRIES and _schema_race(exc):
                time.sleep(0.2 * (attempt + 1))  # the other process finishes creating the tables
                continue
            raise QlstmError(f"--storage {storage}: {str(exc).splitlines()[0]}") from None
    key = json.dumps(settings, sort_keys=True, default=str)
    have = study.user_attrs.get("exploration")
    if have is None:
        study.set_user_attr("exploration", key)
    elif have != key:
        diff = _differences(json.loads(have), json.loads(key))
        raise QlstmError(
            f"the study in the storage was created with another exploration ({diff}); give the same "
            "space and options (--data, --target, --clock-ns, --budget-us, --rtl), or another --out or --storage"
        )
    return study


def _differences(stored: Any, given: Any, prefix: str = "") -> str:
    """``key: stored X, given Y`` for each leaf that differs (the first three), for the refusal."""
    out: list[str] = []

    def walk(a: Any, b: Any, where: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b), key=str):
                walk(a.get(k), b.get(k), f"{where}.{k}" if where else str(k))
        elif a != b:
            out.append(f"{where}: stored {a}, given {b}")

    walk(stored, given, prefix)
    return "; ".join(out[:3]) + (f"; and {len(out) - 3} more" if len(out) > 3 else "")


def _sampler_seed(seed: int, number: int) -> int:
    import numpy as np

    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


class TrialSeededNSGAII(optuna.samplers.BaseSampler):
    """Optuna's NSGA-II whose random draws are seeded per trial from (``settings.seed``, trial
    number) instead of once per process.

    Two explorers sharing one study with one process-wide seed draw the same sequence, so they
    proposed the same points pairwise (measured: 2 explorers x 4 trials, 4 identical pairs). Trial
    numbers are unique in the study (the storage hands them out), so concurrent explorers now draw
    different points, while a single explorer still proposes the same points for the same seed.
    Each trial gets a fresh ``NSGAIISampler`` (its state lives in the study's storage); the
    methods are Optuna's ``BaseSampler`` interface, delegated."""

    def __init__(self, population_size: int, seed: int) -> None:
        self.population_size, self.seed = population_size, seed
        self._by_trial: dict[int, Any] = {}

    def _inner(self, trial):
        s = self._by_trial.get(trial.number)
        if s is None:
            s = optuna.samplers.NSGAIISampler(
                population_size=self.population_size, seed=_sampler_seed(self.seed, trial.number)
            )
            self._by_trial[trial.number] = s
        return s

    def infer_relative_search_space(self, study, trial):
        return self._inner(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._inner(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._inner(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self._inner(trial).before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self._inner(trial).after_trial(study, trial, state, values)
        self._by_trial.pop(trial.number, None)

    def reseed_rng(self) -> None:
        pass  # seeded per trial

    def _raise_error_if_multi_objective(self, study) -> None:
        pass  # NSGA-II is multi-objective


def _mark_interrupted(study) -> int:
    """Trials left RUNNING by a dead explorer on this host become FAIL (interrupted): they are
    run again, while finished trials never are."""
    import optuna

    n = 0
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        owner = t.user_attrs.get("owner", {})
        if owner.get("host") != host:
            continue  # another machine's explorer: not ours to judge
        try:
            os.kill(int(owner.get("pid", -1)), 0)
            continue  # still alive: another explorer sharing the study
        except (ProcessLookupError, ValueError):
            pass
        except PermissionError:
            continue
        study._storage.set_trial_user_attr(t._trial_id, INTERRUPTED, True)
        study._storage.set_trial_user_attr(t._trial_id, "error", "interrupted: its explorer stopped")
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        n += 1
    return n


def finished(study) -> list:
    """Completed trials and trials that failed with an error (not interrupted ones)."""
    import optuna

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)
    return [t for t in study.get_trials(deepcopy=False, states=done) if not t.user_attrs.get(INTERRUPTED)]


def explore(
    space: Space,
    out: Path,
    n_trials: int,
    *,
    data: Path | None = None,
    scheduler: str | None = None,
    workers: int = 2,
    target: str = "zynq7045",
    clock_ns: float | None = None,
    budget_us: float = 1.0,
    storage: str | None = None,
    prune_runs: bool = False,
    rtl: bool = False,
    progress: bool = True,
    echo=print,
) -> dict[str, Any]:
    """Run the study until it holds ``n_trials`` finished trials; write the results into ``out``.

    Returns ``{"ran": trials run now, "finished": total, "seconds": wall time, "files": ...}``.
    Raises QlstmError for bad input (space, target, storage, unreachable scheduler).
    """
    from dask.distributed import wait
    from tqdm import tqdm

    from qlstm.explore.results import front_lines, write_results

    if n_trials < 1:
        raise QlstmError(f"--trials {n_trials} must be >= 1")
    tgt = _target(target)
    clock = float(clock_ns if clock_ns is not None else tgt.clock_ns)
    if not clock > 0:
        raise QlstmError(f"--clock-ns {clock} must be > 0")
    if not budget_us > 0:
        raise QlstmError(f"--budget-us {budget_us} must be > 0")
    if scheduler is None and workers < 1:
        raise QlstmError(f"--workers {workers} must be >= 1")
    if storage is not None:
        _check_storage(storage)
    out = Path(out).resolve()
    check_out_folder(out, overwrite=True)  # a file, /proc, a read-only place; a resumed study is non-empty
    data = check_data(data)
    client = cluster = None
    if scheduler is not None:  # before anything is created: an unreachable scheduler leaves nothing
        client, cluster = _client(scheduler, workers)
    try:
        with _Created(out):  # undone if it fails; concurrent explorers on one out take turns here
            url = storage or f"sqlite:///{out / 'study.db'}"
            settings = {"space": [dataclasses.asdict(p) for p in space.params], "settings": space.settings,
                        "target": target, "clock_ns": clock, "budget_us": budget_us,
                        "data": str(data) if data else "synthetic", "rtl": rtl}  # fmt: skip
            study = open_study(url, space, settings)
            t0 = time.perf_counter()
            events, synthetic = _events(out, space, data)
    except BaseException:
        if client is not None:
            client.close()
        raise
    ctx = Context(str(events), str(out / "trials"), target, clock, budget_us, dict(space.settings), synthetic,
                  rtl=rtl)  # fmt: skip
    stale = _mark_interrupted(study)
    if stale:
        echo(f"{stale} trial(s) interrupted by a stopped explorer marked failed; they are run again")
    done = len(finished(study))
    todo = max(0, n_trials - done)
    echo(f"study {url}: {done} finished trial(s), {todo} to run")
    first_trial = len(study.trials)
    ran = windows_built = reused = 0
    if todo:
        if client is None:  # the local cluster (a --scheduler was connected before anything was created)
            client, cluster = _client(scheduler, workers)
        pending: dict[Any, Any] = {}
        windows: dict[int, Any] = {}  # L -> the future of its windows
        known = _known_points(study)  # point (JSON) -> result of a completed trial
        ctx_history = run_config({}, ctx).train.history
        bar = tqdm(total=n_trials, initial=done, desc="trials", disable=not progress, unit="trial")
        owner = owner_attr()
        tag = f"{owner['host']}-{owner['pid']}"  # Dask keys unique per explorer on a shared scheduler
        try:
            capacity = max(1, sum(client.nthreads().values()))
            while True:
                # the study's finished + running trials (other explorers' too), re-read before each
                # submission, so explorers sharing one study stop together at N
                while len(pending) < capacity and _held(study) < n_trials:
                    trial = study.ask()
                    trial.set_user_attr("owner", owner)
                    if _held(study, below=trial.number) >= n_trials:  # another explorer asked meanwhile
                        trial.set_user_attr("error", f"surplus: the study already held {n_trials} trials")
                        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                        break
                    params = space.suggest(trial)
                    point = json.dumps(params, sort_keys=True)
                    if point in known:  # NSGA-II proposed a finished point again: its result, not a rerun
                        _tell(study, trial, {**known[point], "seconds": 0.0}, False, ctx)
                        reused += 1
                        bar.update(1)
                        continue
                    hist = int(params.get("history", ctx_history))
                    if hist not in windows:  # once per distinct L, shared by its trials (held by Dask)
                        windows[hist] = client.submit(prepare_windows, hist, ctx, pure=False,
                                                      key=f"qlstm-explore-{tag}-windows-L{hist}")  # fmt: skip
                    fut = client.submit(run_trial, trial.number, params, ctx, windows[hist], pure=False,
                                        key=f"qlstm-explore-{tag}-{trial.number}")  # fmt: skip
                    pending[fut] = trial
                if not pending:
                    break
                fin, _ = wait(list(pending), return_when="FIRST_COMPLETED")
                for fut in fin:
                    trial = pending.pop(fut)
                    params = json.dumps(trial.params, sort_keys=True)
                    try:
                        res = fut.result()
                    except Exception as exc:  # noqa: BLE001 - a lost worker, its windows failed: the trial failed
                        res = {"ok": False, "error": _error_line(exc)}
                    _tell(study, trial, res, prune_runs, ctx)
                    if res.get("ok"):
                        known.setdefault(params, {**res, "duplicate_of": trial.number})
                    ran += 1
                    bar.update(1)
                    front = study.best_trials
                    bar.set_postfix(front=len(front), failed=sum(1 for t in study.trials
                                                                 if t.state.name == "FAIL"))  # fmt: skip
                    if progress:
                        for line in front_lines(front):
                            bar.write(line)
        except KeyboardInterrupt:
            for fut, trial in pending.items():
                fut.cancel()
                trial.set_user_attr(INTERRUPTED, True)
                trial.set_user_attr("error", "interrupted: its explorer stopped")
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        finally:
            windows_built = len(windows)
            bar.close()
            client.close()
            if cluster is not None:
                cluster.close()
            client = cluster = None
    if client is not None:
        client.close()
    if cluster is not None:
        cluster.close()
    files = write_results(study, out, budget_us)
    seconds = time.perf_counter() - t0
    me = owner_attr()
    mine = [t for t in study.get_trials(deepcopy=False) if t.number >= first_trial
            and t.user_attrs.get("owner") == me and t.state.name in ("COMPLETE", "FAIL")]  # fmt: skip
    failed = [t for t in mine if t.state.name == "FAIL"]
    first_error = failed[0].user_attrs.get("error", "") if failed else ""
    return {"ran": ran, "finished": len(finished(study)), "seconds": seconds, "files": files,
            "front": len(study.best_trials), "windows_built": windows_built, "reused": reused,
            "failed": len(failed), "all_failed": bool(mine) and len(failed) == len(mine),
            "first_error": first_error}  # fmt: skip


def owner_attr() -> dict[str, Any]:
    """The ``owner`` user attribute of this explorer's trials (host and process id)."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _held(study, below: int | None = None) -> int:
    """Trials that count towards N: finished (:func:`finished`) plus running (any explorer's);
    ``below``: only those numbered below it. Checking then asking is not atomic, so after asking,
    a trial with N held trials below its number is a surplus one (told PRUNED, not run): the
    trial numbers order concurrent explorers the same way in every process."""
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    held = [t.number for t in (*finished(study), *running)]
    return sum(1 for n in held if below is None or n < below)


def _target(name: str):
    """The target ``name``; explore has no --part, so the refusal names only the targets."""
    from qlstm.hls.targets import TARGETS, get_target

    try:
        return get_target(name)
    except QlstmError:
        raise QlstmError(f"--target {name}: unknown target; choose one of {', '.join(TARGETS)}") from None


def _check_storage(url: str) -> None:
    """Refuse a storage URL SQLAlchemy cannot use (bad scheme, missing driver) before anything is
    created; ``create_engine`` loads the dialect without connecting."""
    import sqlalchemy

    try:
        sqlalchemy.create_engine(url).dispose()
    except Exception as exc:  # noqa: BLE001 - ArgumentError, NoSuchModuleError, a missing driver
        raise QlstmError(f"--storage {url}: {str(exc).splitlines()[0] or type(exc).__name__}") from None


class _Created:
    """What this invocation creates in ``out`` before its first trial (the folder and its missing
    parents, study.db, data_run/), removed again by :meth:`undo` when a step fails.

    Explorers sharing ``out`` serialise this phase on an exclusive ``flock`` of the folder itself
    (no lock file is left behind): the second waits while the first creates the study and the
    events (the data step is not safe to run twice at once), and each undoes only the entries
    that did not exist when it took the lock, and the folders it created only if they are empty,
    so a failing explorer never removes another one's study."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.fd: int | None = None
        self.made: list[Path] = []  # folders this invocation created, deepest first
        self.before: set[Path] = set()

    def __enter__(self) -> _Created:
        import fcntl

        for _ in range(5):  # the folder may be removed by another explorer's undo while we wait
            missing = [q for q in (self.out, *self.out.parents) if not q.exists()]
            try:
                self.out.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise QlstmError(
                    f"--out {self.out}: cannot create the folder ({exc.strerror or exc})"
                ) from None
            self.made = [q for q in missing if q.is_dir()] or self.made
            fd = os.open(self.out, os.O_RDONLY)
            fcntl.flock(fd, fcntl.LOCK_EX)
            if self.out.is_dir() and os.path.samestat(os.fstat(fd), os.stat(self.out)):
                self.fd, self.before = fd, set(self.out.iterdir())
                return self
            os.close(fd)
        raise QlstmError(f"--out {self.out}: the folder keeps disappearing (another explorer's failure)")

    def __exit__(self, kind, exc, tb) -> None:
        try:
            if kind is not None:
                self.undo()
        finally:
            if self.fd is not None:
                os.close(self.fd)  # releases the lock

    def undo(self) -> None:
        if self.out.is_dir():
            for q in set(self.out.iterdir()) - self.before:
                if q.is_dir():
                    shutil.rmtree(q, ignore_errors=True)
                else:
                    q.unlink(missing_ok=True)
        for q in self.made:  # only if empty: another explorer may have put its study there meanwhile
            with contextlib.suppress(OSError):
                q.rmdir()


def _known_points(study) -> dict[str, dict[str, Any]]:
    """The completed trials' results by point, so a point proposed again is not re-run."""
    import optuna

    known: dict[str, dict[str, Any]] = {}
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        a = {k: v for k, v in t.user_attrs.items() if k not in ("owner", "seconds", "duplicate_of")}
        res = {"ok": True, **dict(zip(OBJECTIVES, t.values, strict=True)), **a}
        known.setdefault(json.dumps(t.params, sort_keys=True), {**res, "duplicate_of": t.number})
    return known


def _tell(study, trial, res: dict[str, Any], prune_runs: bool, ctx: Context) -> None:
    import optuna

    trial.set_user_attr("seconds", round(float(res.get("seconds", 0.0)), 3))
    if not res.get("ok"):
        trial.set_user_attr("error", res.get("error", "unknown error"))
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return
    for k, v in res.items():
        if k not in ("ok", *OBJECTIVES):
            trial.set_user_attr(k, v)
    # Optuna constraints (<= 0 satisfied): NSGA-II ranks feasible trials first; best_trials keeps them
    trial.set_constraint("fits_part", 0.0 if res["fits"] else 1.0)
    trial.set_constraint("meets_budget", res["latency_us"] - ctx.budget_us)
    study.tell(trial, [res[k] for k in OBJECTIVES])
    if prune_runs:
        for sub in ("train", "quantize", "rtl"):
            shutil.rmtree(Path(res["folder"]) / sub, ignore_errors=True)
