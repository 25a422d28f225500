"""Running the per-batch function over an image set: in this process (``run_local``, resumable) or on a
Ray cluster (``run_ray``: Ray Data ``map_batches`` over actors, one model per actor).

Both engines feed the same ``dissect_batch`` and merge its partials with the same ``Partial.merge``, so
they give the same summary.

Resume: ``run_local`` saves its running partial (numbers and pictures) together with the number of inputs
consumed (inputs are read in a fixed order) to ``<out>/.dissect-state.npz`` every ``save_every`` batches and at the
end, atomically (write a temporary file, fsync, rename). A run killed at any moment leaves either the
previous state or the new one, never a mix; ``resume=True`` starts after the saved inputs, so nothing
is counted twice or lost. The state records a fingerprint of the inputs and settings, and a state of
another run is refused.

On a GPU, ``run_local`` queues each batch's forward and reductions before it finishes the previous
batch on the host (top lists, merge, saving), so the two overlap; the saved state only ever holds
finished batches.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import SGEVizError
from ..explain.faithfulness import Removal
from ..io.feed import Fed, item_loader, load_item
from ..io.inputs import Item
from ..models.factory import LoadedModel
from ..models.loaded import weights_digest
from ..sources import ModelSource, open_model, source_from_dict
from .reduce import dissect_batch, queue_batch
from .summary import Partial

STATE_FILE = ".dissect-state.npz"


def fingerprint(items: Sequence[Item], model_label: str, k: int, layers: Sequence[str] | None,
                skip_out_of_domain: bool = False, faithfulness: Removal | None = None) -> str:
    """A digest of what decides the summary: the inputs in order, the model, K, the layers, whether
    out-of-domain images are left out and the faithfulness settings."""
    settings = [model_label, k, list(layers or [])] + (["skip-out-of-domain"] if skip_out_of_domain else [])
    if faithfulness is not None:
        settings.append(asdict(faithfulness))
    digest = hashlib.sha256(json.dumps(settings).encode())
    for item in items:
        digest.update(json.dumps(asdict(item)).encode())
    return digest.hexdigest()


def save_state(path: Path, partial: Partial, done: int, fp: str) -> None:
    """Write the running state atomically: the old file stays whole until the new one replaces it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        partial.save(f, {"fingerprint": fp, "done": done})
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_state(path: Path, fp: str) -> tuple[Partial, int] | None:
    """The saved (partial, inputs done) of the same run, None when there is none; SGEVizError for another run's."""
    if not path.is_file():
        return None
    try:
        partial, meta = Partial.load(path)
        done = int(meta["done"])
    except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
        raise SGEVizError(f"The saved state {path} is unreadable ({exc}): run again without --resume.") from exc
    if meta.get("fingerprint") != fp:
        raise SGEVizError(f"The saved state in {path.parent} belongs to another run (other inputs, another model "
                          "or other weights, --top-k or --layers): run without --resume, or give another --out.")
    return partial, done


def run_local(loaded: LoadedModel, items: Sequence[Item], k: int, batch_size: int = 8, workers: int = 0,
              layers: Sequence[str] | None = None, state_path: Path | None = None, resume: bool = False,
              save_every: int = 10, progress: Callable[[int], None] | None = None,
              pictures: bool = True, skip_out_of_domain: bool = False, save_interval: float = 0.0,
              truths: dict[str, str] | None = None, faithfulness: Removal | None = None) -> Partial:
    """Dissect ``items`` in this process; the merged Partial (skipped items included).

    ``skip_out_of_domain``: leave out the images the model's out-of-domain detector rejects (they are
    listed as skipped; ``Partial.verdicts`` holds every image's verdict either way).
    ``pictures``: keep what the report draws for the top entries (see ``pictures``), so drawing needs no
    second forward. ``state_path``: where to save the running state (see the module docstring) every
    ``save_every`` batches, but not sooner than ``save_interval`` seconds after the last save (the state
    holds the pictures, ~150 MB for sge_resnet50), and at the end; ``resume``: continue from it.
    ``progress(n)`` is called with the number of items each batch consumed. ``truths``: the known true
    classes by item name (``Partial.truths`` gets the model's answer on each). ``faithfulness``: each image's
    deletion and insertion gaps with these settings (``Partial.faithfulness``); saved and resumed like the rest.
    """
    # The weights' digest, not the model's name: a resume must continue with the very same network.
    fp = fingerprint(items, f"{loaded.name} {weights_digest(loaded.model)}", k, layers, skip_out_of_domain,
                     faithfulness)
    total, start = Partial(k), 0
    if resume and state_path is not None:
        saved = load_state(state_path, fp)
        if saved is not None:
            total, start = saved
            if progress:
                progress(start)
    if start >= len(items):
        return total
    loader = item_loader(items, loaded.config, batch_size, workers, start)
    done, batches, last_save = start, 0, time.monotonic()
    queued = None  # the previous batch, finished after the next one is queued (overlaps host and GPU)

    def finish(queued) -> None:
        nonlocal total, done, batches, last_save
        reduction, batch = queued
        partial = reduction.finish(total.floor())
        partial.skipped += _skipped(items, batch)
        total.absorb(partial)
        done += len(batch)
        batches += 1
        due = batches % save_every == 0 and time.monotonic() - last_save >= save_interval
        if state_path is not None and (due or done == len(items)):
            save_state(state_path, total, done, fp)
            last_save = time.monotonic()
        if progress:
            progress(len(batch))

    for batch in loader:
        good = [f for f in batch if f.error is None]
        latest = (queue_batch(loaded, [f.view for f in good], [items[f.index].name for f in good],
                              [f.mask for f in good], k, layers, pictures, skip_out_of_domain, truths, faithfulness),
                  batch)
        if queued is not None:
            finish(queued)
        queued = latest
    if queued is not None:
        finish(queued)
    return total


def _where(item: Item, member: str | None = None) -> str:
    """Where an item (or, with ``member``, its mask) is, as summary.json names it: a file, or zip:member."""
    if item.member is None:
        return member or item.path
    return f"{item.path}:{member or item.member}"


def _skipped(items: Sequence[Item], batch: Sequence[Fed]) -> list[dict]:
    """The batch's images that could not be read and masks that could not be used, as summary.json lists
    them (``{"path", "reason"}``; a mask's image is in the summary, without a mask AUC)."""
    out = [{"path": _where(items[f.index]), "reason": f.error} for f in batch if f.error is not None]
    return out + [{"path": _where(items[f.index], items[f.index].mask), "reason": f.note}
                  for f in batch if f.note is not None]


# --- Ray ------------------------------------------------------------------------------------------------

class _Actor:
    """A Ray Data actor: builds the model once, then turns batches of items into partials."""

    def __init__(self, spec: dict, k: int, layers: list[str] | None, pictures: bool = True,
                 skip_out_of_domain: bool = False, truths: dict[str, str] | None = None,
                 faithfulness: dict | None = None):
        import torch

        torch.set_num_threads(max(1, int(os.environ.get("SGE_VIZ_ACTOR_THREADS", "1"))))
        self.loaded = open_model(source_from_dict(spec))
        self.k, self.layers, self.pictures, self.skip, self.truths = k, layers, pictures, skip_out_of_domain, truths
        self.faithfulness = Removal(**faithfulness) if faithfulness else None
        # The top lists of every batch this actor has seen (numbers only): an entry that cannot enter them
        # cannot enter the merged summary either, so it needs no pictures.
        self.seen = Partial(k)

    def __call__(self, batch: dict) -> dict:
        items = [Item(str(n), str(p), m or None, k or None) for n, p, m, k in
                 zip(batch["name"], batch["path"], batch["member"], batch["mask"])]
        config = self.loaded.config
        fed = [load_item(item, config.resize_size, config.input_size, i) for i, item in enumerate(items)]
        good = [f for f in fed if f.error is None]
        partial = dissect_batch(self.loaded, [f.view for f in good], [items[f.index].name for f in good],
                                [f.mask for f in good], self.k, self.layers, self.pictures, self.seen.floor(),
                                self.skip, self.truths, self.faithfulness)
        partial.skipped += _skipped(items, fed)
        numbers = Partial.from_json(partial.to_json())  # without the pictures
        numbers.skipped, numbers.verdicts, numbers.truths, numbers.faithfulness = [], {}, {}, {}
        self.seen.absorb(numbers)
        return {"partial": np.array([partial.to_bytes()], dtype=object), "count": np.array([len(items)])}


def run_ray(source: ModelSource, items: Sequence[Item], k: int, batch_size: int = 8, workers: int | None = None,
            layers: Sequence[str] | None = None, progress: Callable[[int], None] | None = None,
            pictures: bool = True, skip_out_of_domain: bool = False,
            truths: dict[str, str] | None = None, faithfulness: Removal | None = None) -> Partial:
    """Dissect ``items`` with Ray Data: ``map_batches`` over ``workers`` actors, partials merged here.

    Connects to ``$RAY_ADDRESS`` when it is set (an existing cluster), else starts a local Ray on this
    machine's cores. Actors take one GPU each where the cluster has GPUs, else a fractional CPU share
    (0.5), so the read stage is never starved on a machine with few cores.
    """
    try:
        import ray
    except ImportError as exc:
        raise SGEVizError('--engine ray needs Ray: pip install "sge-viz[ray]" (or the pinned ray[data]).') from exc
    if not ray.is_initialized():
        if os.environ.get("RAY_ADDRESS"):
            ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
        else:
            ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False)
    gpus = float(ray.cluster_resources().get("GPU", 0))
    if workers is None:
        workers = max(1, int(gpus) if gpus >= 1 else int(ray.cluster_resources().get("CPU", 1)))
    resources = {"num_gpus": 1} if gpus >= 1 else {"num_cpus": 0.5}
    spec_dict = asdict(source)
    if gpus < 1:
        spec_dict["device"] = "cpu"
    rows = [{"name": i.name, "path": i.path, "member": i.member or "", "mask": i.mask or ""} for i in items]
    blocks = max(1, -(-len(rows) // batch_size))
    ds = ray.data.from_items(rows, override_num_blocks=blocks)
    ds = ds.map_batches(_Actor, fn_constructor_kwargs={"spec": spec_dict, "k": k,
                                                       "layers": list(layers) if layers else None,
                                                       "pictures": pictures,
                                                       "skip_out_of_domain": skip_out_of_domain,
                                                       "truths": truths,
                                                       "faithfulness": asdict(faithfulness) if faithfulness else None},
                        batch_size=batch_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=workers),
                        **resources)
    total = Partial(k)
    for row in ds.iter_rows():
        total.absorb(Partial.from_bytes(row["partial"]))
        if progress:
            progress(int(row["count"]))
    return total
