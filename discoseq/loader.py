"""``create_dataloader``: a DataLoader over a :class:`DiscoSeqSampler` that counts the batches
the training loop received, so its ``state_dict`` resumes exactly.

How it is wired: the sampler runs in the main process and hands the DataLoader each batch as an
array of index rows (cheap to send to a worker; with the rows of the worker's next batches at
the start of each ``buffer_size`` read-ahead window); a map-style dataset in the worker resolves
the rows to a ``CutSet`` from the shared memory-mapped index and, when given, applies a Lhotse-style
dataset (``dataset[cuts] -> batch``). The DataLoader keeps the sampler's order whatever the
number of workers, so ``set_epoch`` and the position live in one place (the main process), and
persistent workers are safe: they hold no epoch state.

Delivered-batch counting: the loader begins the sampler's epoch view
(:meth:`DiscoSeqSampler.begin_epoch`) and calls :meth:`DiscoSeqSampler.advance` when it hands a
batch to the training loop (``for batch in loader``); the DataLoader's prefetching never moves
the position. That count is the position of ``state_dict()`` (also
``loader.dataset.sampler.state_dict()``): a batch received before the state is taken is never
repeated after a restore, and a prefetched one is never lost.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from torch.utils.data import DataLoader, Dataset, Sampler

from discoseq.config import SamplerConfig
from discoseq.index.multi import AnyIndex
from discoseq.packs import batch_packs, packs_of
from discoseq.resolve import read_ahead_windows, window_rows
from discoseq.sampler import DiscoSeqSampler, EpochView

__all__ = ["DiscoSeqDataLoader", "ResolvingDataset", "create_dataloader"]


class ResolvingDataset(Dataset):
    """The DataLoader's ``.dataset``: rows -> ``CutSet`` (-> ``dataset[cuts]``) in the worker,
    and ``set_epoch``/``state_dict`` forwarded to the sampler in the main process.

    :param sampler: the sampler whose batches are resolved (kept in the main process only).
    :param dataset: optional Lhotse-style dataset, called as ``dataset[cuts]`` in the worker.
    """

    def __init__(self, sampler: DiscoSeqSampler, dataset: Any = None) -> None:
        import lhotse  # noqa: F401  (imported once here, so forked workers inherit it)

        self.sampler: DiscoSeqSampler | None = sampler
        self.index: AnyIndex = sampler.index
        self.dataset = dataset

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["sampler"] = None  # workers need only the index (pickled as its path) and dataset
        state["_window"] = None
        return state

    def __getitem__(self, item: tuple[Any, ...]) -> Any:
        """``item`` is ``(rows, ahead)``: the batch's rows, and, at the start of a read-ahead
        window, the rows of this worker's next batches (see ``buffer_size``), read together
        in file order and kept until the next window; a plan with packs adds the batch's
        packs (:func:`~discoseq.packs.batch_packs`) as a third element."""
        rows, ahead = item[0], item[1]
        packs = item[2] if len(item) > 2 else None
        if ahead is not None:
            self._window = self.index.records_in_file_order(ahead)
        window = getattr(self, "_window", None)
        if window is None or any(r not in window for r in rows.tolist()):
            window = self.index.records_in_file_order(rows)  # not in the window: read directly
        cuts = self.index.resolve(rows, window)
        if packs is not None:
            cuts = packs_of(cuts, *packs)
        return cuts if self.dataset is None else self.dataset[cuts]

    def _main(self) -> DiscoSeqSampler:
        if self.sampler is None:
            raise RuntimeError("the sampler lives in the main process, not in a DataLoader worker")
        return self.sampler

    def set_epoch(self, epoch: int) -> None:
        """Forward to :meth:`DiscoSeqSampler.set_epoch`."""
        self._main().set_epoch(epoch)

    def __len__(self) -> int:
        return len(self._main())


class _RowSampler(Sampler):
    """Yields ``(rows, ahead)`` per batch of the view the loader began (``(rows, ahead, packs)``
    with packing); never moves the position (the loader counts). ``ahead`` opens a read-ahead window
    (:func:`~discoseq.resolve.read_ahead_windows` over the batches the same worker resolves).
    PyTorch hands map-style items to workers round-robin, so batch ``j`` goes to worker
    ``j % K``; if it ever did not, a worker reads a batch outside its window directly: the
    windows affect reads, never the batches."""

    def __init__(self, sampler: DiscoSeqSampler, num_workers: int) -> None:
        self.sampler = sampler
        self.workers = max(1, num_workers)
        self.view: EpochView | None = None

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        view, self.view = self.view, None
        if view is None:
            raise RuntimeError("iterate the DiscoSeqDataLoader, not its row sampler")
        plan, ids = view.plan, view.batch_ids.tolist()
        size, k_workers = self.sampler.config.buffer_size, self.workers
        windows = [
            read_ahead_windows(plan, view.for_worker(w, k_workers).tolist(), size)
            for w in range(k_workers)
        ]
        left = [0] * k_workers  # batches of each worker's open window still to hand out
        for j, i in enumerate(ids):
            w = j % k_workers
            if size == 0 or left[w] > 0:
                left[w] -= 1
                item: tuple[Any, ...] = (plan.batch(i), None)
            else:
                window = next(windows[w])
                left[w] = len(window) - 1
                item = (plan.batch(i), window_rows(plan, window))
            packs = batch_packs(plan, i)
            yield item if packs is None else (*item, packs)

    def __len__(self) -> int:
        return len(self.sampler)


class DiscoSeqDataLoader(DataLoader):
    """A ``DataLoader`` that counts delivered batches; made by :func:`create_dataloader`.

    ``state_dict()``/``load_state_dict()`` save and restore the position (see
    :meth:`DiscoSeqSampler.state_dict`); ``.dataset.set_epoch(e)`` selects the epoch.
    """

    discoseq_sampler: DiscoSeqSampler
    row_sampler: _RowSampler

    # A generator around DataLoader's iterator (not a _BaseDataLoaderIter): it counts the
    # batches handed to the loop.
    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        sampler = self.discoseq_sampler
        # The position becomes the view's start before the first batch arrives, so a state
        # taken then is that position; the DataLoader's prefetching does not move it.
        view = self.row_sampler.view = sampler.begin_epoch()
        for batch in super().__iter__():
            sampler.advance(1, view)  # counted when handed to the training loop
            yield batch

    def state_dict(self) -> dict[str, Any]:
        """The position after the batches delivered so far (see
        :meth:`DiscoSeqSampler.state_dict`)."""
        return self.discoseq_sampler.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a position (see :meth:`DiscoSeqSampler.load_state_dict`)."""
        self.discoseq_sampler.load_state_dict(state)


def create_dataloader(
    source: Any,
    config: SamplerConfig | Mapping[str, Any] | None = None,
    dataset: Any = None,
    **kwargs: Any,
) -> DiscoSeqDataLoader:
    """A DataLoader of the batches of ``source`` planned by ``config``.

    :param source: anything :class:`DiscoSeqSampler` accepts, or a ``DiscoSeqSampler``
        (then ``config`` must be None or equal to its config).
    :param config: the :class:`SamplerConfig`; ``num_workers``, ``pin_memory`` and
        ``prefetch_factor`` (only when ``num_workers > 0``) are passed to the DataLoader, with
        ``persistent_workers=True`` when there are workers (they hold no epoch state).
    :param dataset: optional Lhotse-style dataset run in the workers on each batch's ``CutSet``
        (``dataset[cuts]``, e.g. ``K2SpeechRecognitionDataset``); without it batches are
        ``CutSet`` objects.
    :param kwargs: further DataLoader arguments (e.g. ``collate_fn``, ``timeout``,
        ``multiprocessing_context``, ``persistent_workers``). ``batch_size``, ``shuffle``,
        ``sampler`` and ``batch_sampler`` are the sampler's job and are refused.
    :returns: a :class:`DiscoSeqDataLoader`; ``loader.dataset.set_epoch(e)`` selects the epoch,
        ``loader.state_dict()`` counts delivered batches.
    """
    for name in ("batch_size", "shuffle", "sampler", "batch_sampler", "dataset"):
        if name in kwargs:
            raise ValueError(
                f"{name}= is decided by the DiscoSeqSampler; remove it from the DataLoader "
                "arguments (set batch limits and shuffling in SamplerConfig)"
            )
    for name in ("num_workers", "pin_memory", "prefetch_factor"):
        if name in kwargs:
            raise ValueError(f"{name}= belongs in SamplerConfig({name}=...), not in kwargs")
    if isinstance(source, DiscoSeqSampler):
        if config is not None:
            given = config if isinstance(config, SamplerConfig) else SamplerConfig.from_dict(config)
            if given != source.config:
                raise ValueError("config differs from the given sampler's config; pass one")
        sampler = source
    else:
        if config is None:
            raise ValueError("config is required unless source is a DiscoSeqSampler")
        sampler = DiscoSeqSampler(source, config)
    cfg = sampler.config
    options: dict[str, Any] = {"num_workers": cfg.num_workers, "pin_memory": cfg.pin_memory}
    if cfg.num_workers > 0:
        options["prefetch_factor"] = cfg.prefetch_factor
        options["persistent_workers"] = kwargs.pop("persistent_workers", True)
    options.update(kwargs)
    row_sampler = _RowSampler(sampler, options["num_workers"])
    loader = DiscoSeqDataLoader(
        ResolvingDataset(sampler, dataset),
        sampler=row_sampler,
        batch_size=None,
        **options,
    )
    loader.discoseq_sampler = sampler
    loader.row_sampler = row_sampler
    return loader
