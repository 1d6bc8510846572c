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
    sources: list | None = None  # a mosaic's scenes (read one by one where they overlap)


def _open_scene(job: TileJob):
    """(ExitStack, dataset) of the job's scene, read as the driver reads it."""
    import contextlib

    from .io.raster import gdal_env, metric_view, open_raster
    stack = contextlib.ExitStack()
    stack.enter_context(gdal_env())
    ds = stack.enter_context(open_raster(job.scene))
    return stack, (stack.enter_context(metric_view(ds)) if job.metric else ds)


class TileWorker:
    """One model and one open scene; predicts batches into the cache (a Ray actor, or in-process)."""

    def __init__(self, job: TileJob):
        import torch

        from .infer.device import resolve_device, resolve_precision
        from .infer.predict import Predictor
        from .weights import load_model
        torch.set_num_threads(job.threads)
        self.job = job
        self._stack, self.ds = _open_scene(job)
        self.views = None
        if job.sources:
            from .io.mosaic import SceneViews
            self.views = self._stack.enter_context(SceneViews(job.sources, self.ds))
        device = resolve_device(job.device)
        model = load_model(job.model, job.weights, device, job.random_weights)
        self.predictor = Predictor(model, device, resolve_precision(job.precision, device), job.tta)
        self.cache = TileCache(job.cache)

    def run(self, batch: list) -> int:
        """Predict one batch (a list of (i, j) tiles) into the cache."""
        from .io.mosaic import read_scene_window
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
            return read_scene_window(self.ds, self.views, job.grid, job.bands, job.stretch, r0, r1, c0, c1)

        return predict_batch(job.layout, [tuple(b) for b in batch], read_tile, self.predictor, self.cache)

    def rss_gb(self) -> float:
        """This worker's peak resident memory (GB)."""
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


class BlockWorker:
    """The scene and the tile cache, without a model: blends blocks and builds graph-tile parts (a Ray actor)."""

    def __init__(self, job: TileJob):
        import dataclasses

        from .tiling import blend_weights
        lay = job.layout  # sent without its blend window (small arguments stay out of Ray's object store)
        self.job = job
        self.layout = dataclasses.replace(lay, weight=blend_weights(lay.th, lay.tw, lay.overlap)) if lay.th else lay
        self._stack, self.ds = _open_scene(job)
        self.cache = TileCache(job.cache)
        self._readers = None

    def blend(self, row, col):
        """(row, col, probability, validity) of one block, as ``infer.stitch.blended_blocks`` computes it."""
        from .infer.stitch import blended_blocks
        from .io.raster import read_valid
        job = self.job

        def valid(r0, r1, c0, c1):
            return read_valid(self.ds, job.grid, job.bands, r0, r1, c0, c1)

        return next(blended_blocks(self.layout, self.cache, valid, [(row, col)]))

    def graph_part(self, mask_path: str, prob_path: str, h: int, w: int, tile: tuple, halo: int):
        """The :class:`graph.build.TilePart` of one graph tile from the closed scratch rasters."""
        from .graph import tile_part
        from .io.raster import ReadTiff, scratch_readers
        if self._readers is None:
            mask, prob = ReadTiff(mask_path), ReadTiff(prob_path)
            self._stack.callback(mask.close)
            self._stack.callback(prob.close)
            self._readers = scratch_readers(mask, prob)
        read_mask, read_prob = self._readers
        r0, r1, c0, c1 = tile
        return tile_part(read_mask, h, w, r0, r1, c0, c1, halo, read_prob)[0]


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


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """A Ray address (``host:port``, ``ray://host:port``) that answers a TCP connection within ``timeout`` seconds;
    else one line (``ray.init`` itself retries for minutes).  ``auto``/``local`` are Ray's own lookups."""
    import socket

    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--address {address}: expected HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as e:
        raise InputError(f"cannot reach the Ray cluster at {address} within {timeout:g} s ({e.strerror or e}); "
                         "check --address / RAY_ADDRESS") from e


class RayEngine:
    """A Ray session for one run: model workers for the predict stage, scene workers for the blend and graph
    stages; the driver writes every file and does the seam join and cleanup, as the local engine does."""

    def __init__(self, job: TileJob, workers: int | None = None, gpus_per_worker: float = 0.0,
                 address: str | None = None):
        self.job, self.workers, self.gpus_per_worker, self.address = job, workers, gpus_per_worker, address
        self.started_here = False
        self.worker_rss_gb: list[float] = []

    def __enter__(self) -> "RayEngine":
        import ray
        if not ray.is_initialized():
            address = self.address or ray_address()
            kw = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
            if address is None:  # a local instance for this run: its files in a short temp folder (socket paths)
                kw["_temp_dir"] = tempfile.mkdtemp(prefix="rr", dir=ray_temp_root())
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            if address is not None:
                check_reachable(address)
            try:
                ray.init(address=address, **kw)
            except (ConnectionError, TimeoutError, RuntimeError, ValueError) as e:
                raise InputError(f"cannot join the Ray cluster at {address}: {' '.join(str(e).split())[:160]}") from e
            self.started_here = True
        gpus = float(ray.cluster_resources().get("GPU", 0))
        if self.gpus_per_worker > gpus:
            if self.started_here:
                ray.shutdown()
                self.started_here = False
            raise InputError(f"--gpus-per-worker {self.gpus_per_worker:g}: the Ray cluster has {gpus:g} GPU(s); "
                             "run on GPU nodes, or without --gpus-per-worker on the CPU")
        return self

    def __exit__(self, *exc) -> None:
        import ray
        if self.started_here:
            ray.shutdown()

    def _pool(self, cls, n_units: int, gpus: float, *args):
        import ray
        from ray.util import ActorPool
        cpus = float(ray.cluster_resources().get("CPU", 1))
        n = self.workers
        if n is None:
            n = max(1, int(float(ray.cluster_resources().get("GPU", 0)) // gpus) if gpus else int(cpus))
        n = max(1, min(n, n_units))
        per = max(0.01, min(1.0, cpus / n))  # never more than the cluster has: nothing starves
        actor = ray.remote(num_cpus=per, num_gpus=gpus, max_restarts=2, max_task_retries=2)(cls)
        actors = [actor.remote(*args) for _ in range(n)]
        return actors, ActorPool(actors)

    def predict(self, batch_size: int, reporter: Reporter = SILENT) -> dict:
        """Every tile not yet in the cache, on a pool of model workers.  Returns ``{"predicted", "workers",
        "worker_rss_gb"}``."""
        import ray
        job = self.job
        cache = TileCache(job.cache)
        batches = list(pending_batches(job.layout, cache, batch_size))  # tile ids: small
        reporter.start("infer", job.layout.count, job.layout.count - sum(len(b) for b in batches))
        if not batches:
            return {"predicted": 0, "workers": 0, "worker_rss_gb": []}
        actors, pool = self._pool(TileWorker, len(batches), self.gpus_per_worker, job)
        t0, done = time.time(), 0
        for n in pool.map_unordered(lambda a, b: a.run.remote(b), batches):
            done += n
            reporter.advance("infer", n, f"{done / max(1e-9, time.time() - t0):.2f} tiles/s")
        self.worker_rss_gb = ray.get([a.rss_gb.remote() for a in actors])
        for a in actors:
            ray.kill(a)
        return {"predicted": done, "workers": len(actors), "worker_rss_gb": self.worker_rss_gb}

    def _on_scene_workers(self, units: list, call):
        """``call(actor, unit)`` for each unit on a pool of scene workers; results in the units' order."""
        import ray
        actors, pool = self._pool(BlockWorker, len(units), 0.0, self.job)
        try:
            yield from pool.map(call, units)
        finally:
            for a in actors:
                ray.kill(a)

    def blend_compute(self):
        """A ``compute(blocks)`` for ``infer.stitch.blend_tiles``: blocks blended on scene workers, in order."""
        def compute(blocks):
            return self._on_scene_workers(blocks, lambda a, rc: a.blend.remote(*rc))
        return compute

    def graph_parts(self, mask_path: str, prob_path: str, h: int, w: int):
        """A ``parts(tiles, halo)`` for ``graph.build_graph``: graph-tile parts built on scene workers, in order."""
        def parts(tiles, halo):
            return self._on_scene_workers(
                tiles, lambda a, t: a.graph_part.remote(mask_path, prob_path, h, w, t, halo))
        return parts
