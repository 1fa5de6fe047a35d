"""Batch conversion on a Ray cluster: ``finescale batch IN_DIR OUT_DIR --ray ADDRESS``.

The driver (the process that runs this) makes the same plan as the single-machine batch
(:func:`sr_core.batch.plan_batch`), holds the output folder's lock, keeps
``finescale-report.json`` and decides what is redone after a crash, all with the code of
:mod:`sr_core.batch` (:func:`~sr_core.batch.run_plan`). Ray does the rest: it starts one
actor per worker where the cluster has room; each actor loads the model once (the driver
sends it through Ray's object store, so workers need no model cache) and converts the files
the driver hands it, one at a time, with the batch's own read / upscale / name / policy /
atomic-rename code (``batch.running._one`` and :func:`~sr_core.batch.place_output`)::

    plan = plan_batch("scans", "scans-x4", model=model)
    report = run_batch_ray(plan, model, RayOptions(address="local:2"))

Addresses: ``local`` or ``local:N`` starts a private Ray cluster on this machine (N workers,
bound to 127.0.0.1) and shuts it down afterwards; ``auto``, ``HOST:PORT`` or
``ray://HOST:PORT`` joins a running cluster (``ray start --head`` ...). By default workers
read IN_DIR and write OUT_DIR themselves, so both must be mounted at the same path on every
node; with ``ship_files`` the driver sends each input's bytes through the object store and
writes the encoded output the worker returns.

Faults: a worker that dies mid-file (killed, out of memory, its node lost) has the file
handed to another worker; a temporary it left is never renamed into an output and is
removed at the end. When it died after its rename, the whole output is kept and the row is
done. A file that kills ``max_attempts`` workers in a row fails with a reason. A driver
killed outright leaves the report ``running``; the same command resumes like the
single-machine batch. Ctrl-C (or ``cancel``) stops the workers; files in flight stay pending.

Ray is an optional dependency (``pip install 'finescale[cluster]'``): this module imports it
only when a cluster is used.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import socket
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .errors import FinescaleError

if TYPE_CHECKING:
    from .batch import BatchPlan, BatchProgress, BatchReport, CancelToken, FileResult, Job

INSTALL_HINT = "install finescale[cluster] (pip install 'finescale[cluster]')"
#: A worker that has not started after this many seconds is given up (resources missing).
START_TIMEOUT = 600.0


# --- addresses and options ------------------------------------------------------------------
@dataclass(frozen=True)
class RayAddress:
    """A parsed ``--ray`` value: a private local cluster (with ``workers``) or a remote one."""

    local: bool
    workers: int | None = None
    address: str | None = None

    def __str__(self) -> str:
        if self.local:
            return "local" + (f":{self.workers}" if self.workers else "")
        return str(self.address)


def parse_address(text: str) -> RayAddress:
    """``local``, ``local:N``, ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``; else ValueError."""
    t = text.strip()
    if t == "local" or t.startswith("local:"):
        n = t.partition(":")[2]
        if not n:
            return RayAddress(local=True)
        if not n.isdigit() or int(n) < 1:
            raise ValueError(f"'{text}' is not local:N with N a whole number of workers >= 1")
        return RayAddress(local=True, workers=int(n))
    if t == "auto":
        return RayAddress(local=False, address="auto")
    rest = t.removeprefix("ray://")
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit() or "/" in rest:
        raise ValueError(f"'{text}' is not local[:N], auto, HOST:PORT or ray://HOST:PORT")
    return RayAddress(local=False, address=t)


@dataclass(frozen=True)
class RayOptions:
    """How a batch runs on Ray.

    Attributes:
        address: ``local[:N]``, ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``.
        workers: how many workers (actors); default: N for ``local:N``, else as many as the
            cluster's CPUs (or GPUs, with ``gpus_per_worker``) allow.
        cpus_per_worker: CPUs each worker reserves; also its torch thread count.
        gpus_per_worker: GPU share each worker reserves (0.5: two workers per GPU).
        ship_files: send input and output bytes through Ray's object store (workers that do
            not see IN_DIR and OUT_DIR at the driver's paths).
        device, precision, tile: the workers' :class:`~sr_core.engine.Upscaler` settings.
        max_attempts: a file whose worker dies this many times is failed, not retried.
        worker_setup: run once in each worker process before the model loads (logging,
            instrumentation, tests); it must be picklable.
    """

    address: str = "local"
    workers: int | None = None
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    ship_files: bool = False
    device: str = "auto"
    precision: str = "auto"
    tile: int | str = "auto"
    max_attempts: int = 3
    worker_setup: Callable[[], None] | None = None

    def validate(self) -> RayAddress:
        """The parsed address; a one-sentence :class:`FinescaleError` for a bad option."""
        try:
            where = parse_address(self.address)
        except ValueError as e:
            raise FinescaleError(f"The Ray address {e}.") from None
        if self.workers is not None and self.workers < 1:
            raise FinescaleError(f"{self.workers} Ray workers: give at least 1.")
        if not self.cpus_per_worker > 0:
            raise FinescaleError(f"{self.cpus_per_worker} CPUs per Ray worker: give more "
                                 "than 0.")
        if self.gpus_per_worker < 0:
            raise FinescaleError(f"{self.gpus_per_worker} GPUs per Ray worker: give 0 or more.")
        if self.max_attempts < 1:
            raise FinescaleError("max_attempts must be at least 1.")
        return where


def require_ray() -> ModuleType:
    """The ``ray`` module, or a one-sentence :class:`FinescaleError` naming the extra."""
    try:
        import ray
    except ImportError:
        raise FinescaleError(f"Running a batch on Ray needs Ray, which is not installed; "
                             f"{INSTALL_HINT}.") from None
    return ray


# --- connecting -----------------------------------------------------------------------------
@contextlib.contextmanager
def _loopback_only(ray: ModuleType) -> Iterator[None]:
    """Make a local cluster's node address 127.0.0.1, so that Ray binds nothing else.

    Ray resolves 127.0.0.1 to the machine's outward address unless it believes clusters
    are off (as on macOS/Windows); its Python agents and gRPC servers then listen on it.
    """
    from ray._private import ray_constants

    key = ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR
    old_env, old_flag = os.environ.get(key), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[key] = "0"  # inherited by the processes ray.init starts
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = old_flag
        if old_env is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old_env


@contextlib.contextmanager
def connect(options: RayOptions) -> Iterator[int]:
    """Start (``local``) or join a Ray cluster for the block; yields the worker count.

    A private local cluster is shut down at the end, a joined one only disconnected from.
    Raises a one-sentence :class:`FinescaleError` when the cluster cannot be reached or
    has no room for one worker.
    """
    where = options.validate()
    ray = require_ray()
    quiet = {"logging_level": logging.ERROR, "log_to_driver": True}
    if ray.is_initialized():
        raise FinescaleError("Ray is already initialised in this process; call "
                             "run_batch_ray without connecting again.")
    if where.local:
        cpus = os.cpu_count() or 1
        n = where.workers or options.workers or max(1, int(cpus // options.cpus_per_worker))
        gpus = None if options.gpus_per_worker else 0  # Ray counts the GPUs when asked for
        for attempt in (1, 2):
            try:
                with _loopback_only(ray):
                    ray.init(num_cpus=max(1, round(n * options.cpus_per_worker)), num_gpus=gpus,
                             include_dashboard=False, _node_ip_address="127.0.0.1", **quiet)
                break
            except Exception as e:
                with contextlib.suppress(Exception):
                    ray.shutdown()
                # Ray gives its raylet a fixed 30 s to register; on a busy machine (a desktop
                # doing other work) that can pass once, so a second start is tried.
                if attempt == 2 or "timed out during startup" not in str(e):
                    raise FinescaleError(f"Could not start a local Ray cluster: "
                                         f"{_first_line(e)}.") from None
    else:
        _probe(str(where.address))
        try:
            ray.init(address=where.address, **quiet)
        except Exception as e:
            with contextlib.suppress(Exception):
                ray.shutdown()
            hint = (" (start one with 'ray start --head', or use --ray local:N)"
                    if where.address == "auto" else "")
            raise FinescaleError(f"Cannot reach the Ray cluster at {where.address}{hint}: "
                                 f"{_first_line(e)}.") from None
        n = 0
    try:
        room = _room(ray, options, where)  # one sentence now, not a wait for resources
        yield options.workers or (min(n, room) if where.local else room)
    finally:
        ray.shutdown()


def _probe(address: str, timeout: float = 10.0) -> None:
    """Fail in one sentence, and fast, when nothing answers at ``address``.

    Ray itself retries an unreachable GCS for minutes before it gives up.
    """
    import importlib.util

    if address == "auto":
        return
    if address.startswith("ray://") and importlib.util.find_spec("grpc") is None:
        raise FinescaleError(f"Joining a cluster through ray:// needs Ray's client; "
                             f"{INSTALL_HINT}.")
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as e:
        why = (f"nothing answered within {timeout:g} s" if isinstance(e, TimeoutError)
               else (e.strerror or str(e)).lower())
        raise FinescaleError(f"Cannot reach the Ray cluster at {address}: {why}.") from None


def _room(ray: ModuleType, options: RayOptions, where: RayAddress) -> int:
    """How many workers the joined cluster can hold."""
    res = ray.cluster_resources()
    if options.gpus_per_worker:
        n = int(res.get("GPU", 0) // options.gpus_per_worker)
        what = f"{options.gpus_per_worker:g} GPU"
    else:
        n = int(res.get("CPU", 0) // options.cpus_per_worker)
        what = f"{options.cpus_per_worker:g} CPU"
    if n < 1:
        raise FinescaleError(f"The Ray cluster at {where} has no room for a worker of {what} "
                             f"(it has {res.get('CPU', 0):g} CPUs and {res.get('GPU', 0):g} "
                             "GPUs).")
    return n


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__).rstrip(".")


# --- the worker -----------------------------------------------------------------------------
@dataclass
class _Outcome:
    """What a worker sends back for one file."""

    row: FileResult
    data: bytes | None = None           # the encoded output (ship_files)
    messages: list[str] = field(default_factory=list)
    worker_error: str | None = None     # the worker cannot run at all (not the file's fault)


class _Worker:
    """One Ray actor: the model loaded once, files converted one at a time."""

    def __init__(self, model: Any, plan: BatchPlan, settings: dict[str, Any],
                 setup: Callable[[], None] | None) -> None:
        self.plan = plan
        self.messages: list[str] = []
        self.error: str | None = None
        self.upscaler: Any = None
        try:
            if setup is not None:
                setup()
            import torch

            from .engine import Upscaler

            torch.set_num_threads(max(1, int(settings["threads"])))
            self.upscaler = Upscaler(model, device=settings["device"],
                                     precision=settings["precision"], tile=settings["tile"],
                                     on_message=self.messages.append)
        except FinescaleError as e:
            self.error = str(e)
        except Exception as e:  # reported by the driver in one sentence
            self.error = f"unexpected {type(e).__name__} ({_first_line(e)})"

    def ready(self) -> dict[str, Any]:
        """Who this worker is, or why it cannot work."""
        from . import __version__

        return {"pid": os.getpid(), "host": socket.gethostname(), "version": __version__,
                "device": None if self.upscaler is None else str(self.upscaler.device),
                "error": self.error}

    def process(self, job: Job, data: bytes | None) -> _Outcome:
        """Convert one file: in place (shared folders), or from and to bytes (``data``)."""
        if self.upscaler is None:
            return _Outcome(job.result, worker_error=self.error)
        if data is None:
            _convert(self.plan, job, self.upscaler)
            out = _Outcome(job.result)
        else:
            out = self._process_bytes(job, data)
        out.messages, self.messages = self.messages, []
        return out

    def _process_bytes(self, job: Job, data: bytes) -> _Outcome:
        from .batch import Job

        with tempfile.TemporaryDirectory(prefix="finescale-ray-") as tmp:
            src = Path(tmp, "in", job.source.name)
            dst = Path(tmp, "out", job.output.name)
            src.parent.mkdir()
            src.write_bytes(data)
            # Staging is private to this call: write there unconditionally; the driver
            # applies the existing-output policy when it writes the real output.
            plan = dataclasses.replace(
                self.plan, out_dir=dst.parent,
                options=dataclasses.replace(self.plan.options, existing="overwrite"))
            local = Job(src, dst, job.format, job.pixels, job.result)
            _convert(plan, local, self.upscaler)
            row = local.result
            row.output = job.result.output if row.status == "done" else None
            names = ((str(src), str(job.source)), (str(dst), str(job.output)))
            for old, new in names:
                row.reason = row.reason.replace(old, new) if row.reason else row.reason
                row.notes = [n.replace(old, new) for n in row.notes]
            return _Outcome(row, dst.read_bytes() if row.status == "done" else None)


def _convert(plan: BatchPlan, job: Job, upscaler: Any) -> None:
    """Read, upscale and write one job with the single-machine batch's own code."""
    from .batch import running

    photo: Future[Any] = Future()
    try:
        photo.set_result(running._read(job))
    except Exception as e:  # a bad file: _one turns it into the row's reason
        photo.set_exception(e)
    running._one(plan, job, upscaler, photo, running._Runner(plan, None), None, set(),
                 prefetch=lambda: None)


# --- the driver -----------------------------------------------------------------------------
def run_batch_ray(plan: BatchPlan, model: Any, options: RayOptions | None = None, *,
                  progress: Callable[[BatchProgress], None] | None = None,
                  cancel: CancelToken | None = None,
                  on_message: Callable[[str], None] | None = None) -> BatchReport:
    """Carry out ``plan`` on a Ray cluster; the same report as :func:`~sr_core.batch.run_batch`.

    ``model`` is the SRModel (or anything :func:`~sr_core.loader.load_model` takes) the
    plan was made for; it is loaded here once and sent to every worker. When Ray is
    already initialised in this process its cluster is used as it is (``options.address``
    is ignored); otherwise :func:`connect` starts or joins one for the run. ``progress``
    gets an event when a file is handed out and when it ends; ``on_message`` the workers'
    notices (e.g. a fall-back to the CPU). Raises a one-sentence :class:`FinescaleError`
    for the cluster or the folder as a whole.
    """
    from .batch import ModelLabel
    from .loader import load_model

    options = options or RayOptions()
    options.validate()
    model = load_model(model)
    if ModelLabel.of(model) != plan.model:
        raise ValueError(f"the plan was made for {plan.model}, not {ModelLabel.of(model)}")
    ray = require_ray()
    if not plan.jobs:  # nothing to convert: no cluster needed for the report
        from .batch import run_plan

        return run_plan(plan, lambda writer: "finished")
    if ray.is_initialized():
        return _run(ray, plan, model, options, options.workers or _room(
            ray, options, RayAddress(local=False, address="this Ray session")),
            progress, cancel, on_message)
    with connect(options) as workers:
        return _run(ray, plan, model, options, workers, progress, cancel, on_message)


def _run(ray: ModuleType, plan: BatchPlan, model: Any, options: RayOptions, workers: int,
         progress: Callable[[BatchProgress], None] | None, cancel: CancelToken | None,
         on_message: Callable[[str], None] | None) -> BatchReport:
    from .batch import run_plan

    pool = _Pool(ray, plan, model, options, min(workers, len(plan.jobs)))
    try:
        pool.start()
        if on_message is not None:
            on_message(pool.describe())
        return run_plan(plan, lambda writer: _Dispatch(
            pool, plan, options, writer, progress, cancel, on_message).run())
    finally:
        pool.stop()


class _Pool:
    """The worker actors: started, checked, replaced when one dies, stopped."""

    def __init__(self, ray: ModuleType, plan: BatchPlan, model: Any, options: RayOptions,
                 n: int) -> None:
        from . import batch

        self.ray, self.options, self.n = ray, options, n
        # Workers get the plan without its rows: they need the folders and the options.
        self.stub = batch.BatchPlan(plan.in_dir, plan.out_dir, plan.options, plan.model,
                                    rows=[], jobs=[])
        self.model = model
        self.actors: list[Any] = []
        self.info: dict[int, dict[str, Any]] = {}
        self.restarts: dict[int, int] = {}
        self._new: Callable[[], Any] = lambda: None

    def start(self) -> None:
        from . import __version__

        ray, o = self.ray, self.options
        # Ray does not restart workers itself (max_restarts=0): the driver decides what a
        # death means for the file in flight, then starts a fresh worker in its place.
        actor = ray.remote(_Worker).options(
            num_cpus=o.cpus_per_worker, num_gpus=o.gpus_per_worker,
            max_restarts=0, max_task_retries=0, max_concurrency=1)
        settings = {"device": o.device, "precision": o.precision, "tile": o.tile,
                    "threads": max(1, int(o.cpus_per_worker))}
        model_ref = ray.put(self.model.cpu().eval())
        self._new = lambda: actor.remote(model_ref, self.stub, settings, o.worker_setup)
        self.actors = [self._new() for _ in range(self.n)]
        pending = {a.ready.remote(): i for i, a in enumerate(self.actors)}
        deadline = time.monotonic() + START_TIMEOUT
        while pending and time.monotonic() < deadline:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in done:
                i = pending.pop(ref)
                try:
                    self.info[i] = ray.get(ref)
                except ray.exceptions.RayError as e:
                    raise FinescaleError(f"A Ray worker could not start: {_first_line(e)}.") \
                        from None
                info = self.info[i]
                if info["error"]:
                    raise FinescaleError(f"A Ray worker on {info['host']} cannot run the "
                                         f"model: {info['error']}")
                if info["version"] != __version__:
                    raise FinescaleError(f"The Ray worker on {info['host']} runs Finescale "
                                         f"{info['version']} and this driver "
                                         f"{__version__}; install the same version on every "
                                         "node.")
        if pending:
            if len(pending) == len(self.actors):
                raise FinescaleError(
                    f"No Ray worker started within {START_TIMEOUT:.0f} s; the cluster has no "
                    f"free worker with {o.cpus_per_worker:g} CPU and {o.gpus_per_worker:g} GPU.")
            for ref, i in pending.items():  # go on with the workers that came
                ray.kill(self.actors[i], no_restart=True)
                self.actors[i] = None
                ray.cancel(ref, force=False)

    def describe(self) -> str:
        """One line about the workers that started: how many, on how many hosts, devices."""
        hosts = {i["host"] for i in self.info.values()}
        devices = sorted({str(i["device"]) for i in self.info.values()})
        return (f"{len(self.info)} Ray workers ready on {len(hosts)} "
                f"host{'s' if len(hosts) != 1 else ''} ({', '.join(devices)}).")

    def replace(self, i: int) -> bool:
        """Start a fresh worker for the dead one in slot ``i``; False when it died too often.
        """
        with contextlib.suppress(Exception):
            self.ray.kill(self.actors[i], no_restart=True)
        self.restarts[i] = self.restarts.get(i, 0) + 1
        self.actors[i] = self._new() if self.restarts[i] <= self.options.max_attempts else None
        return self.actors[i] is not None

    def stop(self) -> None:
        for a in self.actors:
            if a is not None:
                with contextlib.suppress(Exception):
                    self.ray.kill(a, no_restart=True)
        self.actors = []


class _Dispatch:
    """The driver's loop: hand each idle worker the next file, record what comes back."""

    def __init__(self, pool: _Pool, plan: BatchPlan, options: RayOptions, writer: Any,
                 progress: Callable[[BatchProgress], None] | None,
                 cancel: CancelToken | None, on_message: Callable[[str], None] | None) -> None:
        from .batch.discovery import _key
        from .batch.running import _Runner

        self.pool, self.plan, self.options, self.writer = pool, plan, options, writer
        self.cancel, self.on_message = cancel, on_message
        self.run_ = _Runner(plan, progress)
        self.queue: deque[Job] = deque(plan.jobs)
        self.claimed = {_key(plan.out_dir / r.output) for r in plan.rows
                        if r.output and r.status in ("done", "pending")}
        self.attempts: dict[str, int] = {}
        self.unsaved = False

    def run(self) -> str:
        """Convert every job; ``"finished"`` or ``"cancelled"``."""
        from .batch import remove_stale_temporaries

        ray = self.pool.ray
        inflight: dict[Any, tuple[int, Job]] = {}
        idle = [i for i, a in enumerate(self.pool.actors) if a is not None]
        self.run_.eta.start()
        while self.queue or inflight:
            if self.cancel is not None and self.cancel.is_set():
                return "cancelled"  # run_batch_ray's caller stops the workers
            while idle and self.queue:
                i, job = idle.pop(0), self.queue.popleft()
                data = self._input_bytes(job) if self.options.ship_files else None
                if data is False:  # unreadable here: a failed row, the worker stays idle
                    idle.insert(0, i)
                    continue
                inflight[self.pool.actors[i].process.remote(job, data)] = (i, job)
                self.run_.send(job.result.input)
            if not inflight:
                if self.queue:
                    raise FinescaleError(
                        f"Every Ray worker has stopped; {len(self.queue)} files are not done "
                        "(run the same command again to go on).")
                break
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=0.2)
            if not ready and self.unsaved:  # the last write was throttled: catch up now
                self._save()
            for ref in ready:
                i, job = inflight.pop(ref)
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayError as e:
                    if self._worker_died(i, job, e):
                        idle.append(i)
                    continue
                if outcome.worker_error:
                    self.queue.appendleft(job)  # not the file's fault; another worker takes it
                    self.pool.ray.kill(self.pool.actors[i], no_restart=True)
                    self.pool.actors[i] = None
                    if not any(a is not None for a in self.pool.actors):
                        raise FinescaleError(f"No Ray worker can run the model: "
                                             f"{outcome.worker_error}")
                    continue
                idle.append(i)
                self._finish(job, outcome)
        # Every worker is idle or dead: what a dead one left half-written is not an output.
        self.writer.report.removed_temporaries += remove_stale_temporaries(self.plan.out_dir)
        return "finished"

    def _input_bytes(self, job: Job) -> bytes | bool:
        try:
            return job.source.read_bytes()
        except OSError as e:
            self._record(job, "failed", f"Cannot read {job.source}: "
                                        f"{(e.strerror or str(e)).lower()}.")
            return False

    def _worker_died(self, i: int, job: Job, e: BaseException) -> bool:
        """A worker stopped while converting ``job``; True if it may take more files."""
        from .batch.report import _now

        alive = self.pool.replace(i)
        row = job.result
        if not self.options.ship_files and self._written(job):
            # It died after the atomic rename: the output is whole and ours.
            row.status, row.reason, row.finished = "done", None, _now()
            row.notes = [*row.notes, "finished just before its Ray worker stopped"]
            self._ended(job)
            return alive
        n = self.attempts[row.input] = self.attempts.get(row.input, 0) + 1
        if n >= self.options.max_attempts:
            self._record(job, "failed", f"Could not upscale {job.source}: its Ray worker "
                                        f"stopped {n} times while upscaling it "
                                        f"({_first_line(e)}).")
        else:
            self.queue.appendleft(job)
        return alive

    def _written(self, job: Job) -> bool:
        try:
            mtime = job.output.stat().st_mtime_ns
        except OSError:
            return False
        return mtime != job.result.replaces_mtime_ns

    def _finish(self, job: Job, outcome: _Outcome) -> None:
        row = job.result
        for f in dataclasses.fields(outcome.row):
            setattr(row, f.name, getattr(outcome.row, f.name))
        if row.output:
            job.output = self.plan.out_dir / row.output
        if outcome.data is not None:
            self._commit(job, outcome.data)
        if self.attempts.get(row.input):
            row.notes = [*row.notes, "redone after its first Ray worker stopped"]
        for m in outcome.messages:
            if self.on_message is not None:
                self.on_message(m)
        self._ended(job)

    def _commit(self, job: Job, data: bytes) -> None:
        """Write the bytes a worker encoded, by the existing-output policy (ship_files)."""
        from .batch import place_output
        from .imageio import write_encoded

        row = job.result
        try:
            def put(path: Path, overwrite: bool) -> None:
                write_encoded(path, data, overwrite=overwrite)

            if not place_output(self.plan, job, self.claimed, put):
                row.notes = []
        except FinescaleError as e:
            row.status, row.reason, row.output, row.notes = "failed", str(e), None, []

    def _record(self, job: Job, status: str, reason: str) -> None:
        from .batch.report import _now

        row = job.result
        row.status, row.reason, row.output, row.finished = status, reason, None, _now()
        self._ended(job)

    def _ended(self, job: Job) -> None:
        self.run_.files_done += 1
        if job.result.status == "done":
            self.run_.pixels_done += job.pixels
        else:
            self.run_.eta.drop(job.pixels)
        self._save()
        self.run_.send(None, finished=job.result)

    def _save(self) -> None:
        """Write the report unless it was written a moment ago (then the loop catches up)."""
        last = self.writer.last
        self.writer.write()
        self.unsaved = self.writer.last == last


# --- the command line -----------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--ray*`` options of ``finescale batch``."""
    g = parser.add_argument_group("cluster (needs finescale[cluster])")
    g.add_argument("--ray", metavar="ADDRESS", type=_address_arg,
                   help="run on Ray: local[:N] starts a private cluster on this machine with N "
                        "workers; auto, HOST:PORT or ray://HOST:PORT joins a running one")
    g.add_argument("--ray-workers", type=int, metavar="N",
                   help="number of workers (default: local's N, else what the cluster holds)")
    g.add_argument("--ray-cpus-per-worker", type=float, default=1.0, metavar="F",
                   help="CPUs (and torch threads) each worker takes (default 1)")
    g.add_argument("--ray-gpus-per-worker", type=float, default=0.0, metavar="F",
                   help="GPU share each worker takes, e.g. 1 or 0.5 (default 0)")
    g.add_argument("--ray-ship-files", action="store_true",
                   help="send inputs and outputs through Ray (workers that do not see "
                        "IN_DIR and OUT_DIR)")


def _address_arg(text: str) -> str:
    try:
        parse_address(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def usage_error(args: argparse.Namespace) -> str | None:
    """Why the ``--ray*`` options make no sense together, or None."""
    if args.ray is None:
        extra = [name for name, default in (("--ray-workers", None),
                                            ("--ray-cpus-per-worker", 1.0),
                                            ("--ray-gpus-per-worker", 0.0),
                                            ("--ray-ship-files", False))
                 if getattr(args, name[2:].replace("-", "_")) != default]
        return f"{', '.join(extra)} need --ray ADDRESS." if extra else None
    try:
        options_from_args(args).validate()
    except FinescaleError as e:
        return str(e)
    return None


def options_from_args(args: argparse.Namespace) -> RayOptions:
    """The :class:`RayOptions` of a parsed ``finescale batch`` command line."""
    return RayOptions(address=args.ray, workers=args.ray_workers,
                      cpus_per_worker=args.ray_cpus_per_worker,
                      gpus_per_worker=args.ray_gpus_per_worker, ship_files=args.ray_ship_files,
                      device=args.device, precision=args.precision, tile=args.tile)


def cli_runner(args: argparse.Namespace, model_source: Any, say: Callable[[str], None],
               clean_up: float | None = None
               ) -> tuple[Any, Callable[[BatchPlan, Callable[[BatchProgress], None]],
                                   BatchReport]]:
    """For ``finescale batch --ray``: the loaded model and ``run(plan, progress)``.

    The model is loaded here (on the CPU) to name the outputs and to be sent to the
    workers; the device is chosen by each worker. ``clean_up`` places a photo pair's model on
    its detail <-> clean-up line.
    """
    from .cleanup import default_clean_up
    from .loader import load_model

    options = options_from_args(args)
    where = options.validate()
    if not where.local:  # an unreachable cluster is said before anything else happens
        _probe(str(where.address))
    if clean_up is None:
        clean_up = default_clean_up(model_source)
    model = load_model(model_source, clean_up=clean_up)

    def run(plan: BatchPlan, progress: Callable[[BatchProgress], None]) -> BatchReport:
        return run_batch_ray(plan, model, options, progress=progress, on_message=say)

    return model, run
