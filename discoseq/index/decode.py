"""Records (parsed JSON dicts) to Lhotse cuts: a direct constructor for the common ``MonoCut``
shapes, equal to what Lhotse's ``deserialize_cut`` builds, and ``deserialize_cut`` for the rest.

Lhotse's ``from_dict`` chain is generic: it re-checks every key through the dataclass
constructors, and ``MonoCut`` and ``SupervisionSegment`` set each field through
``CustomFieldMixin.__setattr__`` (a Python call per field). :class:`CutDecoder` fills each
object's ``__dict__`` in field order instead, mirroring each ``from_dict`` step of Lhotse 1.33
(``cut/mono.py``, ``audio/recording.py``, ``audio/source.py``, ``supervision.py``,
``features/base.py``, ``serialization.deserialize_custom_field``): values are passed through
as parsed (no conversion), ``Recording.__post_init__``'s ``channel_ids`` default is computed
the same way, alignments and transforms are built by Lhotse's own ``AlignmentItem.deserialize``
and ``AudioTransform.from_dict``. Any key set (*shape*) it does not know, a value of another
JSON type than expected, a custom field holding a dict (which Lhotse may turn into a manifest),
a video source, and every cut type but ``MonoCut`` take ``deserialize_cut`` (which also raises
Lhotse's own errors). The first use checks the fast path against ``deserialize_cut`` on
:data:`PROBES`, and every record that brings a shape met for the first time is compared with
``deserialize_cut`` too; the fast path turns off, with one warning, if anything differs
(another Lhotse).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import threading
import warnings
from collections.abc import Callable
from typing import Any

import orjson

__all__ = ["PROBES", "CutDecoder", "cut_decoder", "identical"]

#: Shapes remembered per object type; beyond this, a new shape is analysed each time it occurs.
MAX_SHAPES = 512


class _Unsupported(Exception):
    """Raised inside the fast path: this record takes ``deserialize_cut``."""


#: Records the fast path must build exactly as ``deserialize_cut`` does (checked at first use):
#: a LibriSpeech-like cut (features, recording, one supervision), a speed-perturbed one
#: (transforms), one with alignments, custom fields and a multi-channel supervision, and
#: minimal ones.
PROBES: tuple[bytes, ...] = (
    b'{"id": "1-2-0003-7", "start": 0, "duration": 14.96, "channel": 0, "supervisions": [{"id":'
    b' "1-2-0003", "recording_id": "1-2-0003", "start": 0.0, "duration": 14.96, "channel": 0,'
    b' "text": "A B C", "language": "English", "speaker": "1"}], "features": {"type":'
    b' "kaldi-fbank", "num_frames": 1496, "num_features": 80, "frame_shift": 0.01,'
    b' "sampling_rate": 16000, "start": 0, "duration": 14.96, "storage_type": "lilcom_chunky",'
    b' "storage_path": "feats-49.lca", "storage_key": "315108143,19744", "recording_id":'
    b' "1-2-0003", "channels": 0}, "recording": {"id": "1-2-0003", "sources": [{"type": "file",'
    b' "channels": [0], "source": "1/2/1-2-0003.flac"}], "sampling_rate": 16000,'
    b' "num_samples": 239360, "duration": 14.96, "channel_ids": [0]}, "type": "MonoCut"}',
    b'{"id": "sp1.1-a", "start": 0.5, "duration": 2.0, "channel": 1, "supervisions": [],'
    b' "recording": {"id": "sp1.1-a", "sources": [{"type": "url", "channels": [1, 0], "source":'
    b' "s3://b/a.wav"}], "sampling_rate": 8000, "num_samples": 21818, "duration": 2.72725,'
    b' "transforms": [{"name": "Speed", "kwargs": {"factor": 1.1}}, {"name": "Volume",'
    b' "kwargs": {"factor": 0.5}}]}, "custom": {"lang": "de", "n": [1, 2], "w": 0.5},'
    b' "type": "MonoCut"}',
    b'{"id": "c", "start": 1, "duration": 3, "channel": 0, "supervisions": [{"id": "s1",'
    b' "recording_id": "r", "start": 1, "duration": 2.5, "channel": [0, 1], "text": null,'
    b' "gender": "f", "custom": {"emotion": "calm"}, "alignment": {"word": [["a", 1.0, 0.5],'
    b' ["b", 1.5, 0.5, 0.9]], "phone": []}}, {"id": "s2", "recording_id": "r", "start": 2,'
    b' "duration": 1}], "recording": {"id": "r", "sources": [{"type": "file", "channels": [0],'
    b' "source": "r0.wav"}, {"type": "file", "channels": [1], "source": "r1.wav"}],'
    b' "sampling_rate": 16000, "num_samples": 64000, "duration": 4.0}, "custom": null,'
    b' "type": "MonoCut"}',
    b'{"id": "m", "start": 0, "duration": 1.25, "channel": 0, "type": "MonoCut"}',
    b'{"type": "MonoCut", "id": "f", "start": 0.0, "duration": 1.0, "channel": 2,'
    b' "features": {"type": "fbank", "num_frames": 100, "num_features": 80, "frame_shift": 0.01,'
    b' "sampling_rate": 16000, "start": 0.0, "duration": 1.0, "storage_type": "numpy_files",'
    b' "storage_path": "/f", "storage_key": "f.npy"}, "custom": {}}',
)


def _dataclass_fields(cls: type) -> list[tuple[str, bool, Any]]:
    """(name, required, default) of each field of ``cls``; a default must be a plain literal."""
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            raise TypeError(f"{cls.__name__}.{f.name} is not an __init__ field")
        if f.default is not dataclasses.MISSING:
            if f.default is not None and type(f.default) not in (int, float, str, bool):
                raise TypeError(f"{cls.__name__}.{f.name} has a default of another kind")
            out.append((f.name, False, f.default))
        else:
            out.append((f.name, f.default_factory is dataclasses.MISSING, None))
    return out


class _Level:
    """One object type: per shape of its dict (the keys in order), a function that builds the
    object (``None``: a shape Lhotse's ``from_dict`` may treat differently, take the fallback).

    :param converters: field -> name of a function in the generated code's namespace applied to
        the field's value (e.g. building nested objects).
    :param absent: field -> source of the value when the key is missing (else the default).
    :param ignored: keys of the dict that are not fields (e.g. a cut's ``type``).
    :param unsupported: keys whose presence means the fallback.
    :param post: source of a statement run on ``o`` (the new object's ``__dict__``) at the end.
    :param compiled: a counter (one item) of the shapes compiled, shared by the levels of a
        decoder, so it can check every record that brought a new shape.
    """

    def __init__(
        self,
        cls: type,
        namespace: dict[str, Any],
        converters: dict[str, str] | None = None,
        absent: dict[str, str] | None = None,
        ignored: frozenset[str] = frozenset(),
        unsupported: frozenset[str] = frozenset(),
        post: str = "",
        compiled: list[int] | None = None,
    ) -> None:
        self.cls = cls
        self.compiled = [0] if compiled is None else compiled  # shapes compiled (shared)
        self.fields = _dataclass_fields(cls)
        self.names = frozenset(name for name, _, _ in self.fields)
        self.required = frozenset(name for name, req, _ in self.fields if req)
        self.namespace = namespace
        self.converters = converters or {}
        self.absent = absent or {}
        self.ignored = ignored
        self.unsupported = unsupported
        self.post = post
        self.shapes: dict[tuple[str, ...], Callable[[Any], Any]] = {}
        self.build = self._builder()

    def _builder(self) -> Callable[[Any], Any]:
        """``build(d)``: the object of dict ``d`` (raises :class:`_Unsupported` for the
        fallback). One dict lookup by the keys in order; a new shape is compiled once."""
        shapes = self.shapes
        get = shapes.get
        compile_shape = self._compile
        compiled = self.compiled

        def build(d: Any) -> Any:
            # a non-dict's "shape" never makes an object: compiled as unsupported, or found
            # equal to a dict's shape and then refused by make
            make = get(tuple(d))
            if make is None:
                if type(d) is not dict:
                    raise _Unsupported
                make = compile_shape(tuple(d))
                compiled[0] += 1
                if len(shapes) < MAX_SHAPES:
                    shapes[tuple(d)] = make
            return make(d)

        return build

    def _compile(self, shape: tuple[str, ...]) -> Callable[[Any], Any]:
        keys = frozenset(shape) - self.ignored
        if keys - self.names or self.required - keys or keys & self.unsupported:
            return _refuse
        names = [name for name, _, _ in self.fields]
        present = [name for name in shape if name not in self.ignored]
        if present == names[: len(present)]:
            # the keys are the first fields in field order (as Lhotse writes them): copy the
            # dict, convert in place, append the missing fields (the order stays field order)
            lines = ["o = d.copy()"]
            lines += [f"del o[{name!r}]" for name in shape if name in self.ignored]
            for name in present:
                if name in self.converters:
                    lines.append(f"o[{name!r}] = {self.converters[name]}(o[{name!r}])")
            for name, _, default in self.fields[len(present) :]:
                lines.append(f"o[{name!r}] = {self.absent.get(name, repr(default))}")
        else:  # one dict display in field order
            items = []
            for name, _, default in self.fields:
                conv = self.converters.get(name)
                if name in keys:
                    value = f"d[{name!r}]"
                    items.append(f"{name!r}: {conv}({value})" if conv else f"{name!r}: {value}")
                else:
                    items.append(f"{name!r}: {self.absent.get(name, repr(default))}")
            lines = [f"o = {{{', '.join(items)}}}"]
        if self.post:
            lines.append(self.post)
        # a class with its own __setattr__ (CustomFieldMixin) must not see "__dict__"
        plain = self.cls.__setattr__ is object.__setattr__
        lines.append("obj = new(cls)")
        lines.append("obj.__dict__ = o" if plain else "setdict(obj, dunder_dict, o)")
        src = "def make(d):\n    if type(d) is not dict: raise Unsupported\n"
        src += "".join(f"    {line}\n" for line in lines) + "    return obj\n"
        ns = dict(
            self.namespace,
            cls=self.cls,
            new=object.__new__,
            setdict=object.__setattr__,
            dunder_dict="__dict__",
            Unsupported=_Unsupported,
        )
        exec(src, ns)  # generated from the dataclass's own field names
        make: Callable[[Any], Any] = ns["make"]
        return make


def _refuse(d: Any) -> Any:
    """The "constructor" of a shape the fast path does not take."""
    raise _Unsupported


class CutDecoder:
    """Parsed records to Lhotse cuts (see the module docstring); ``fallbacks`` counts the
    records that took ``deserialize_cut``."""

    def __init__(self, fast: bool = True) -> None:
        from lhotse import AudioSource, Features, MonoCut, Recording, SupervisionSegment
        from lhotse.augmentation.transform import AudioTransform
        from lhotse.cut.set import deserialize_cut
        from lhotse.supervision import AlignmentItem

        self._deserialize_cut = deserialize_cut
        self.fallbacks = 0
        self.fast = fast
        alignment_item = AlignmentItem.deserialize
        transform = AudioTransform.from_dict

        def custom(c: Any) -> Any:  # deserialize_custom_field leaves these alone
            if c is None:
                return None
            if type(c) is not dict:
                raise _Unsupported
            for v in c.values():
                if isinstance(v, dict):
                    raise _Unsupported
            return c

        def alignment(a: Any) -> Any:
            return {k: [alignment_item(x) for x in v] for k, v in a.items()}

        def objects(level: _Level) -> Callable[[Any], list[Any]]:
            build = level.build

            def many(xs: Any) -> list[Any]:
                if type(xs) is not list:
                    raise _Unsupported
                return [build(x) for x in xs]

            return many

        def transforms(ts: Any) -> Any:
            return [transform(t) for t in ts]

        ns: dict[str, Any] = {"custom": custom, "alignment": alignment, "transforms": transforms}
        self._compiled = compiled = [0]
        source = _Level(AudioSource, ns, unsupported=frozenset({"video"}), compiled=compiled)
        ns["sources"] = objects(source)
        recording = _Level(
            Recording,
            ns,
            converters={"sources": "sources", "transforms": "transforms"},
            # Recording.__post_init__: channel_ids None -> every source's channels, sorted
            post="if o['channel_ids'] is None: o['channel_ids'] = "
            "sorted(c for s in o['sources'] for c in s.channels)",
            compiled=compiled,
        )
        supervision = _Level(
            SupervisionSegment,
            ns,
            converters={"custom": "custom", "alignment": "alignment"},
            compiled=compiled,
        )
        features = _Level(Features, ns, compiled=compiled)
        ns["recording"] = recording.build
        ns["features"] = features.build
        ns["supervisions"] = objects(supervision)
        self._cut = _Level(
            MonoCut,
            ns,
            converters={
                "supervisions": "supervisions",
                "features": "features",
                "recording": "recording",
                "custom": "custom",
            },
            absent={"supervisions": "[]"},
            ignored=frozenset({"type"}),
            compiled=compiled,
        )
        self._levels = (source, recording, supervision, features, self._cut)

    def __call__(self, record: dict[str, Any]) -> Any:
        """The cut of ``record`` (a dict as parsed from JSON; ``deserialize_cut`` may pop its
        ``type``)."""
        if self.fast and record.get("type") == "MonoCut":
            seen = self._compiled[0]
            try:
                cut = self._cut.build(record)
            except Exception:  # anything unexpected: Lhotse decides
                pass
            else:
                if self._compiled[0] == seen:
                    return cut
                return self._checked(record, cut)  # a shape met for the first time
        self.fallbacks += 1
        return self._deserialize_cut(record)

    def _checked(self, record: dict[str, Any], cut: Any) -> Any:
        """``cut`` if ``deserialize_cut`` builds the same from ``record``; else Lhotse's cut,
        and the fast path off (one warning): the probes cannot hold every shape a corpus has,
        so each new one is compared once (another Lhotse may build it otherwise)."""
        theirs = self._deserialize_cut(copy.deepcopy(record))
        problem = identical(cut, theirs)
        if problem is None:
            return cut
        self.fast = False
        self.fallbacks += 1
        warnings.warn(
            "discoseq: the direct cut constructor differs from Lhotse's deserialize_cut on a "
            f"record of a new shape ({problem}); using deserialize_cut for every record",
            RuntimeWarning,
            stacklevel=3,
        )
        return theirs

    def check(self) -> str | None:
        """None if the fast path builds every record of :data:`PROBES` identically to
        ``deserialize_cut`` (without falling back), else what differs."""
        for raw in PROBES:
            try:
                ours = self._cut.build(orjson.loads(raw))
            except _Unsupported:
                return f"the fast path does not take {raw[:60]!r}..."
            except Exception as e:
                return f"{type(e).__name__}: {e}"
            theirs = self._deserialize_cut(orjson.loads(raw))
            problem = identical(ours, theirs)
            if problem is not None:
                return f"cut {theirs.id!r}: {problem}"
        return None


def identical(a: Any, b: Any, where: str = "cut") -> str | None:
    """None if ``a`` and ``b`` are equal with the same types all the way down (dataclass
    fields, their ``__dict__`` order, lists, tuples, dicts), else where they first differ."""
    if type(a) is not type(b):
        return f"{where}: {type(a).__name__} vs {type(b).__name__}"
    if dataclasses.is_dataclass(a):
        if list(vars(a)) != list(vars(b)):
            return f"{where}: attributes {list(vars(a))} vs {list(vars(b))}"
        for name in vars(b):
            problem = identical(getattr(a, name), getattr(b, name), f"{where}.{name}")
            if problem is not None:
                return problem
    elif isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return f"{where}: length {len(a)} vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            problem = identical(x, y, f"{where}[{i}]")
            if problem is not None:
                return problem
    elif isinstance(a, dict):
        if list(a) != list(b):
            return f"{where}: keys {list(a)} vs {list(b)}"
        for k in b:
            problem = identical(a[k], b[k], f"{where}[{k!r}]")
            if problem is not None:
                return problem
    if a != b and not (isinstance(a, float) and a != a and b != b):  # NaN is NaN here
        return f"{where}: {a!r} != {b!r}"
    return None


_decoder: CutDecoder | None = None
_lock = threading.Lock()


def _new_lock_in_child() -> None:
    """A process forked while another thread held ``_lock`` (checking) gets a free lock: the
    copy of a held lock would never be released in the child (a DataLoader worker hangs)."""
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_in_child)


def cut_decoder() -> CutDecoder:
    """This process's :class:`CutDecoder`, its fast path checked at first use (and off, with
    a warning, if it differs from ``deserialize_cut``)."""
    global _decoder
    if _decoder is None:
        with _lock:
            if _decoder is None:
                decoder = CutDecoder()
                problem = decoder.check()
                if problem is not None:
                    warnings.warn(
                        "discoseq: the direct cut constructor differs from Lhotse's "
                        f"deserialize_cut with this Lhotse version ({problem}); using "
                        "deserialize_cut for every record",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    decoder.fast = False
                decoder.fallbacks = 0
                _decoder = decoder
    return _decoder
