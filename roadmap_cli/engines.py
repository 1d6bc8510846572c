"""Where the model runs: in this process (``local``) or on a Ray cluster (``ray``, ``pip install roadmap[ray]``).

Both engines predict the same batches (``infer.stitch.pending_batches``) with the same function
(``infer.stitch.predict_batch``) into the same per-tile cache, with the same torch thread count, so the cache, and
everything extract builds from it on the driver (blend, mask, graph, files), is identical whichever engine ran.

With Ray, an actor pool holds one model per worker (``--workers``, ``--gpus-per-worker``); each actor opens the scene
itself (the same working grid, bands and stretch as the driver) and writes finished tiles into the work folder,
which must therefore be visible to every node (a shared filesystem; a single machine always is).  A lost worker is
restarted and its batch retried (``max_restarts``/``max_task_retries``; batches are idempotent); a lost driver is
what ``--resume`` is for.  ``ray.init`` connects to ``--address`` or ``RAY_ADDRESS`` when given, else starts a
local instance for the run and stops it afterwards.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass

from .errors import InputError
from .infer.stitch import TileCache, pending_batches, predict_batch
from .progress import SILENT, Reporter
from .settings import ray_address, ray_temp_root
from .tiling import TileLayout

ENGINES = ("local", "ray")


@dataclass
class TileJob:
    """What a worker needs to read and predict tiles exactly as the driver would (picklable)."""

    scene: str
    metric: bool          # read through the scene's UTM warped view (``io.raster.metric_view``)
    bands: list
    grid: object          # io.raster.SceneGrid
    stretch: object       # io.raster.StretchStats
    layout: TileLayout
    cache: str            # the tile cache folder
    model: str | None
    weights: str | None
    random_weights: bool
    device: str
    precision: str
    tta: bool
    threads: int          # torch threads: the bits depend on it


class TileWorker:
    """One model and one open scene; predicts batches into the cache (a Ray actor, or in-process)."""

    def __init__(self, job: TileJob):
        import contextlib

        import torch

        from .infer.device import resolve_device, resolve_precision
        from .infer.predict import Predictor
        from .io.raster import gdal_env, metric_view, open_raster
        from .weights import load_model
        torch.set_num_threads(job.threads)
        self.job = job
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(gdal_env())
        ds = self._stack.enter_context(open_raster(job.scene))
        self.ds = self._stack.enter_context(metric_view(ds)) if job.metric else ds
        device = resolve_device(job.device)
        model = load_model(job.model, job.weights, device, job.random_weights)
        self.predictor = Predictor(model, device, resolve_precision(job.precision, device), job.tta)
        self.cache = TileCache(job.cache)

    def run(self, batch: list) -> int:
        """Predict one batch (a list of (i, j) tiles) into the cache."""
        from .io.raster import read_window
        from .settings import fault_kill_worker_once
        job = self.job
        marker = fault_kill_worker_once()
        if marker is not None:
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:  # the first worker here dies mid-run, as a lost node would
                os.close(fd)
                os._exit(1)

        def read_tile(r0, r1, c0, c1):
            return read_window(self.ds, job.grid, job.bands, job.stretch, r0, r1, c0, c1)

        return predict_batch(job.layout, [tuple(b) for b in batch], read_tile, self.predictor, self.cache)

    def rss_gb(self) -> float:
        """This worker's peak resident memory (GB)."""
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def check_engine(engine: str, workers: int | None, gpus_per_worker: float) -> None:
    """One-line errors for engine options (before any work)."""
    if engine not in ENGINES:
        raise InputError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    if not 0 <= gpus_per_worker <= 64:
        raise InputError(f"--gpus-per-worker must be between 0 and 64, got {gpus_per_worker}")
    if engine == "ray":
        try:
            import ray  # noqa: F401
        except ImportError as e:
            raise InputError("--engine ray needs Ray: pip install 'roadmap[ray]' (or pip install ray)") from e


def predict_tiles_ray(job: TileJob, batch_size: int, workers: int | None = None, gpus_per_worker: float = 0.0,
                      address: str | None = None, reporter: Reporter = SILENT) -> dict:
    """Predict every tile not yet in the cache on a Ray actor pool.  Returns ``{"predicted", "workers",
    "worker_rss_gb"}``."""
    import ray
    from ray.util import ActorPool

    cache = TileCache(job.cache)
    reporter.start("infer", job.layout.count, cache.count())
    batches = list(pending_batches(job.layout, cache, batch_size))  # a list of tile ids: small
    started_here = not ray.is_initialized()
    if started_here:
        address = address or ray_address()
        kw = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
        if address is None:  # a local instance for this run: its files in a short temp folder (socket paths)
            kw["_temp_dir"] = tempfile.mkdtemp(prefix="rr", dir=ray_temp_root())
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(address=address, **kw)
    try:
        cpus = float(ray.cluster_resources().get("CPU", 1))
        if workers is None:
            gpus = float(ray.cluster_resources().get("GPU", 0))
            workers = max(1, int(gpus // gpus_per_worker) if gpus_per_worker else int(cpus))
        workers = max(1, min(workers, len(batches))) if batches else 0
        if not workers:
            return {"predicted": 0, "workers": 0, "worker_rss_gb": []}
        cpus_per_worker = max(0.01, min(1.0, cpus / workers))  # never more than the cluster has: no starving
        actor = ray.remote(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker, max_restarts=2,
                           max_task_retries=2)(TileWorker)
        pool_actors = [actor.remote(job) for _ in range(workers)]
        pool = ActorPool(pool_actors)
        t0, done = time.time(), 0
        for n in pool.map_unordered(lambda a, b: a.run.remote(b), batches):
            done += n
            reporter.advance("infer", n, f"{done / max(1e-9, time.time() - t0):.2f} tiles/s")
        rss = ray.get([a.rss_gb.remote() for a in pool_actors])
        for a in pool_actors:
            ray.kill(a)
        return {"predicted": done, "workers": workers, "worker_rss_gb": rss}
    finally:
        if started_here:
            ray.shutdown()
