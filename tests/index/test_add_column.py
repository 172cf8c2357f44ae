"""``add_column`` / ``discoseq-index add-column``: token columns from a real tokenizer (a tiny
SentencePiece model and a tiny ``tokenizers`` BPE trained here, and ``module:function``
callables), counted on the supervisions' texts as Lhotse joins them, written atomically,
read like built-in columns (also through a MultiIndex), used by ``token_column``, verified."""

from __future__ import annotations

import functools
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
from click.testing import CliRunner
from lhotse import CutSet, SupervisionSegment
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

import discoseq.index.columns as columns_module
from discoseq import DiscoSeqSampler, SamplerConfig, build_index
from discoseq.cli.index_cli import main as index_main
from discoseq.errors import IndexFormatError
from discoseq.index import CutIndex, MultiIndex, verify_index
from discoseq.index.builder import WorkerDiedError
from discoseq.index.columns import TokenizerError, add_column, load_tokenizer
from discoseq.index.format import HEADER_FILE
from discoseq.index.owner import OWNER_FILE
from discoseq.plan import plan_epoch
from discoseq.synth import write_manifest

HERE = "tests.index.test_add_column"


# -- callables a spec can name ------------------------------------------------------------------


def words(text: str) -> list[str]:
    """``text -> list``: whitespace words."""
    return text.split()


def letters(text: str) -> int:
    """``text -> int``: letters (no spaces)."""
    return sum(1 for c in text if not c.isspace())


def fails_on_zebra(text: str) -> int:
    if "ZEBRA" in text:
        raise RuntimeError("no zebras")
    return len(text)


def exits_on_zebra(text: str) -> int:
    if "ZEBRA" in text:
        sys.exit("no zebras, exiting")
    return len(text)


def returns_text(text: str) -> str:
    return text


def returns_negative(text: str) -> int:
    return -3


def killed_on_zebra(text: str) -> int:
    """A worker killed outright (as by the out-of-memory killer) on one text."""
    if "ZEBRA" in text:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
    return len(text)


NOT_CALLABLE = 7


# -- data ---------------------------------------------------------------------------------------


def _texts(cuts: CutSet) -> list[str | None]:
    """Each cut's text as Lhotse joins supervisions (None: no supervision has a text)."""
    out: list[str | None] = []
    for cut in cuts:
        sups = cut.supervisions
        has = any(s.text is not None for s in sups)
        out.append(" ".join(s.text for s in sups if s.text) if has else None)
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, fixtures_dir: Path) -> dict:
    """Manifests with MonoCuts (also several supervisions, a None and an empty text, none),
    MixedCuts, PaddingCuts and a MultiCut; the expected texts; trained tokenizer files."""
    d = tmp_path_factory.mktemp("corpus")
    synth = write_manifest(d / "synth.jsonl", 300, mixed_fraction=0.2, padding_fraction=0.05)
    cuts = list(CutSet.from_jsonl(synth))
    mono = [c for c in cuts if type(c).__name__ == "MonoCut"][:4]
    sup = mono[0].supervisions[0]
    edited = [
        mono[0].with_id("two-sups"),  # two supervisions, joined with a space
        mono[1].with_id("none-text"),
        mono[2].with_id("empty-text"),
        mono[3].with_id("no-sups"),
    ]
    zebra = SupervisionSegment("s2", sup.recording_id, 0.0, 0.5, text="ZEBRA ONE")
    edited[0].supervisions = [zebra, sup]
    edited[1].supervisions = [SupervisionSegment("s3", sup.recording_id, 0.0, 0.5, text=None)]
    edited[2].supervisions = [
        SupervisionSegment("s4", sup.recording_id, 0.0, 0.5, text=""),
        SupervisionSegment("s5", sup.recording_id, 0.0, 0.5, text=None),
    ]
    edited[3].supervisions = []
    extra = d / "edited.jsonl"
    CutSet.from_cuts(edited).to_file(extra)
    multi = fixtures_dir / "libri_cuts_multi.json"
    manifests = [synth, extra, multi]
    texts = _texts(CutSet.from_jsonl(synth)) + _texts(CutSet.from_cuts(edited))
    texts += _texts(CutSet.from_file(multi))
    corpus_text = [t for t in texts if t]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus_text), model_writer=model, vocab_size=60, minloglevel=2
    )
    sp_path = d / "tiny.model"
    sp_path.write_bytes(model.getvalue())
    bpe = Tokenizer(models.BPE(unk_token="[UNK]"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=80, special_tokens=["[UNK]"], show_progress=False)
    bpe.train_from_iterator(corpus_text, trainer)
    bpe_path = d / "tiny-bpe.json"
    bpe.save(str(bpe_path))
    return {"manifests": manifests, "texts": texts, "spm": sp_path, "bpe": bpe_path}


@pytest.fixture
def index_path(corpus: dict, tmp_path: Path) -> Path:
    out = tmp_path / "corpus.idx"
    build_index(corpus["manifests"], out)
    return out


def expected(texts: list[str | None], count) -> np.ndarray:
    return np.array([-1 if t is None else count(t) for t in texts], dtype=np.int64)


# -- counts --------------------------------------------------------------------------------------


def test_counts_equal_each_tokenizers_own_encode(corpus: dict, index_path: Path) -> None:
    texts = corpus["texts"]
    assert {"ZEBRA ONE", ""} & {t for t in texts if t is not None}  # the edited cuts are in
    sp = spm.SentencePieceProcessor(model_file=str(corpus["spm"]))
    bpe = Tokenizer.from_file(str(corpus["bpe"]))
    add_column(index_path, "spm", corpus["spm"])
    add_column(index_path, "bpe", str(corpus["bpe"]))
    add_column(index_path, "words", f"{HERE}:words")
    index = add_column(index_path, "letters", f"{HERE}:letters")
    assert index.extra_columns == ("spm", "bpe", "words", "letters")
    want = {
        "spm": expected(texts, lambda t: len(sp.encode(t))),
        "bpe": expected(texts, lambda t: len(bpe.encode(t).ids)),
        "words": expected(texts, lambda t: len(t.split())),
        "letters": expected(texts, letters),
    }
    types = set(np.asarray(index.column("cut_type")).tolist())
    assert types == {0, 1, 2, 3}  # MonoCut, MixedCut, PaddingCut, MultiCut
    for name, values in want.items():
        assert index.column(name).dtype == np.dtype("<i8")
        assert np.array_equal(index.column(name), values), name
        assert np.array_equal(index.columns[name], values), name
    row = index.row_of("two-sups")
    assert index.column("words")[row] == len(texts[row].split()) and "ZEBRA ONE" in texts[row]
    assert index.column("spm")[index.row_of("empty-text")] == 0  # a text, empty: 0 tokens
    for cut_id in ("none-text", "no-sups"):
        assert index.column("spm")[index.row_of(cut_id)] == -1
    # -1 exactly where the built-in num_tokens says there is no text
    assert np.array_equal(index.column("bpe") == -1, index.column("num_tokens") == -1)
    meta = index.header.extra_columns["spm"]
    assert meta["tokenizer"] == str(corpus["spm"].absolute())
    assert meta["tokenizer_fingerprint"] == load_tokenizer(corpus["spm"]).fingerprint
    assert meta["tokenizer_fingerprint"].startswith("blake2b-128:")
    assert index.header.extra_columns["words"]["tokenizer"] == f"{HERE}:words"
    again = CutIndex.open(index_path)  # survives reopening
    assert np.array_equal(again.column("spm"), want["spm"])
    report = verify_index(index_path, recount=50)
    assert report.ok, report.problems


@pytest.mark.parametrize("tokenizer", ["spm", "callable"])
def test_jobs_give_the_same_column(corpus: dict, index_path: Path, tokenizer: str) -> None:
    spec = corpus["spm"] if tokenizer == "spm" else f"{HERE}:words"
    one = add_column(index_path, "one", spec, chunk_rows=37).column("one").copy()
    two = add_column(index_path, "two", spec, jobs=2, chunk_rows=37).column("two")
    assert np.array_equal(one, two)
    assert one.shape == (len(corpus["texts"]),)


def test_plan_with_token_column_uses_the_added_column(corpus: dict, index_path: Path) -> None:
    index = add_column(index_path, "spm", corpus["spm"])
    spm_col = np.asarray(index.column("spm"))
    config = SamplerConfig(max_tokens=400, token_column="spm", num_buckets=3, seed=5)
    plan = plan_epoch(index.columns, config, 0, 1)
    renamed = {"duration": index.duration, "num_tokens": spm_col}
    same = plan_epoch(renamed, config.replace(token_column="num_tokens"), 0, 1)
    assert plan.rows.tolist() == same.rows.tolist()
    assert [plan.batch(i).tolist() for i in range(plan.num_batches)] == [
        same.batch(i).tolist() for i in range(same.num_batches)
    ]
    chars = plan_epoch(index.columns, config.replace(token_column="num_tokens"), 0, 1)
    assert plan.num_batches < chars.num_batches  # fewer tokens than characters per cut
    cost = np.maximum(spm_col, 0)
    for i in range(plan.num_batches):
        c = cost[plan.batch(i)]
        assert len(c) * int(c.max()) <= 400 or len(c) == 1
    sampler = DiscoSeqSampler(str(index_path), config)  # the sampler opens it by path
    assert len(list(sampler)) == plan.num_batches
    with pytest.raises(ValueError, match=r"token_column='bpe' is not a column.*add-column"):
        plan_epoch(index.columns, config.replace(token_column="bpe"), 0, 1)
    with pytest.raises(ValueError, match=r"token_column='sp' .*did you mean 'spm'\? Else add"):
        plan_epoch(index.columns, config.replace(token_column="sp"), 0, 1)


def test_a_state_is_refused_after_its_token_column_was_replaced(
    corpus: dict, index_path: Path
) -> None:
    add_column(index_path, "spm", corpus["spm"])
    config = SamplerConfig(max_tokens=400, token_column="spm", num_buckets=3, seed=5)
    sampler = DiscoSeqSampler(str(index_path), config)
    next(iter(sampler))
    state = sampler.state_dict()
    same = DiscoSeqSampler(str(index_path), config)
    same.load_state_dict(state)  # the same column: accepted
    chars = DiscoSeqSampler(str(index_path), config.replace(token_column="num_tokens"))
    assert chars.state_dict()["index_fingerprint"] != state["index_fingerprint"]
    add_column(index_path, "spm", corpus["bpe"], force=True)  # other values, same name
    replaced = DiscoSeqSampler(str(index_path), config)
    with pytest.raises(ValueError, match="state is of another index"):
        replaced.load_state_dict(state)


def test_multi_index_reads_added_columns_all_indexes_have(corpus: dict, tmp_path: Path) -> None:
    a = build_index(corpus["manifests"][0], tmp_path / "a.idx").path
    b = build_index(corpus["manifests"][1:], tmp_path / "b.idx").path
    for path in (a, b):
        add_column(path, "words", f"{HERE}:words")
    add_column(a, "letters", f"{HERE}:letters")
    multi = MultiIndex([CutIndex.open(a), CutIndex.open(b)])
    assert "words" in multi.columns and "letters" not in multi.columns
    assert list(multi.columns)[-1] == "words"
    assert np.array_equal(
        multi.column("words"), expected(corpus["texts"], lambda t: len(t.split()))
    )
    with pytest.raises(KeyError, match=r"letters.*missing from the indexes.*b\.idx"):
        multi.columns["letters"]
    config = SamplerConfig(max_tokens=50, token_column="words")
    assert plan_epoch(multi.columns, config, 0, 1).stats.cuts_planned == len(corpus["texts"])
    with pytest.raises(ValueError, match="token_column='letters' is not a column"):
        plan_epoch(multi.columns, config.replace(token_column="letters"), 0, 1)


# -- bad input -----------------------------------------------------------------------------------


def test_bad_tokenizer_specs_are_named(corpus: dict, index_path: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"not a model at all")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"version": "1.0"')
    cases = [
        (tmp_path / "missing.model", "missing.model: no such file"),
        (str(tmp_path / "missing.json"), "missing.json: no such file"),
        (tmp_path, "expected a SentencePiece model file"),
        (junk, "junk.model: not a SentencePiece model"),
        (bad_json, "bad.json: not a Hugging Face tokenizers file"),
        ("vocab.txt", "'vocab.txt': expected a SentencePiece model file"),
        ("no_such_module_xyz:count", "cannot import module 'no_such_module_xyz'"),
        (f"{HERE}:missing_fn", "has no attribute 'missing_fn'"),
        (f"{HERE}:NOT_CALLABLE", "'NOT_CALLABLE' is a int, not callable"),
    ]
    before = sorted(os.listdir(index_path))
    for spec, message in cases:
        with pytest.raises(TokenizerError, match=message):
            add_column(index_path, "toks", spec)
    assert sorted(os.listdir(index_path)) == before
    assert CutIndex.open(index_path).extra_columns == ()


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_failing_tokenizer_names_the_cut_and_leaves_the_index(
    corpus: dict, index_path: Path, jobs: int
) -> None:
    header = (index_path / HEADER_FILE).read_bytes()
    files = sorted(os.listdir(index_path))
    with pytest.raises(TokenizerError) as err:
        add_column(index_path, "toks", f"{HERE}:fails_on_zebra", jobs=jobs, chunk_rows=50)
    message = str(err.value)
    row = CutIndex.open(index_path).row_of("two-sups")
    assert "cut 'two-sups'" in message and f"row {row}" in message
    assert "edited.jsonl:1" in message and "no zebras" in message and "ZEBRA ONE" in message
    assert (index_path / HEADER_FILE).read_bytes() == header
    assert sorted(os.listdir(index_path)) == files


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_tokenizer_calling_sys_exit_is_a_named_failure(index_path: Path, jobs: int) -> None:
    """sys.exit() inside a tokenizer would end the command without a word: it is a failure on
    that cut, and the index is left as it was (and closed)."""
    header = (index_path / HEADER_FILE).read_bytes()
    with pytest.raises(TokenizerError, match=r"failed on cut 'two-sups'.*SystemExit: no zebras"):
        add_column(index_path, "toks", f"{HERE}:exits_on_zebra", jobs=jobs, chunk_rows=50)
    assert (index_path / HEADER_FILE).read_bytes() == header


def test_a_worker_killed_outright_is_named_not_waited_for(
    index_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker process that dies (SIGKILL, out of memory) is an error naming the rows it was
    counting; a Pool replaced it and waited forever for its chunk."""
    header = (index_path / HEADER_FILE).read_bytes()
    files = sorted(os.listdir(index_path))
    with pytest.raises(WorkerDiedError, match=r"worker process .* died .*rows \d+-\d+"):
        add_column(index_path, "toks", f"{HERE}:killed_on_zebra", jobs=2, chunk_rows=50)
    assert (index_path / HEADER_FILE).read_bytes() == header
    assert sorted(os.listdir(index_path)) == files
    # on the command line (chunks of 50 rows, so that workers count them): the message, exit 1
    monkeypatch.setattr(columns_module, "add_column", functools.partial(add_column, chunk_rows=50))
    runner = CliRunner()
    args = ["add-column", str(index_path), "--name", "t", "--tokenizer", f"{HERE}:killed_on_zebra"]
    result = runner.invoke(index_main, [*args, "--jobs", "2", "-q"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "error: a worker process counting tokens" in result.output


@pytest.mark.parametrize(
    ("fn", "message"),
    [("returns_text", "returned a str"), ("returns_negative", "negative token count")],
)
def test_a_callable_must_return_a_count_or_tokens(index_path: Path, fn: str, message: str) -> None:
    with pytest.raises(TokenizerError, match=f"failed on cut .*{message}"):
        add_column(index_path, "toks", f"{HERE}:{fn}")


def test_names_and_replacing(corpus: dict, index_path: Path) -> None:
    for name in ("num_tokens", "duration", "id_blob"):
        with pytest.raises(ValueError, match="built-in column"):
            add_column(index_path, name, f"{HERE}:words")
    for name in ("", "2x", "a-b", "x" * 65, "../evil"):
        with pytest.raises(ValueError, match="expected an identifier"):
            add_column(index_path, name, f"{HERE}:words")
    with pytest.raises(ValueError, match="jobs=0"):
        add_column(index_path, "w", f"{HERE}:words", jobs=0)
    first = add_column(index_path, "toks", f"{HERE}:words")
    old_file = first.header.extra_columns["toks"]["file"]
    with pytest.raises(FileExistsError, match=r"column 'toks' exists.*--force"):
        add_column(index_path, "toks", f"{HERE}:letters")
    kept = first.column("toks").copy()
    index = add_column(index_path, "toks", f"{HERE}:letters", force=True)
    assert np.array_equal(index.column("toks"), expected(corpus["texts"], letters))
    assert np.array_equal(first.column("toks"), kept)  # an open index keeps its mapped file
    assert not (index_path / old_file).exists()
    assert index.header.extra_columns["toks"]["tokenizer"] == f"{HERE}:letters"


# -- atomic writes --------------------------------------------------------------------------------


def test_a_crash_before_the_header_leaves_the_index_as_it_was(
    index_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_column(index_path, "words", f"{HERE}:words")
    header = (index_path / HEADER_FILE).read_bytes()
    files = sorted(os.listdir(index_path))

    def crash(directory: Path, header: dict) -> None:
        raise KeyboardInterrupt  # killed while replacing the header

    monkeypatch.setattr(columns_module, "replace_header", crash)
    with pytest.raises(KeyboardInterrupt):
        add_column(index_path, "letters", f"{HERE}:letters")
    assert (index_path / HEADER_FILE).read_bytes() == header
    assert sorted(os.listdir(index_path)) == files
    assert CutIndex.open(index_path).extra_columns == ("words",)


def test_leftovers_of_a_killed_run_are_ignored_then_removed(index_path: Path) -> None:
    """What a process killed outright leaves: its temporary folder (owner gone) and a column
    file renamed in before its header was written. Neither is part of the index."""
    stray = index_path / "letters.0badc0de.npy"
    stray.write_bytes(b"\x93NUMPY half written")
    tmp = index_path / ".add-column-0badc0de"
    tmp.mkdir()
    (tmp / "letters.12345678.npy").write_bytes(b"partial")
    owner = {"host": os.uname().nodename, "boot_id": None, "pid": 2**22 + 17, "start": 1}
    (tmp / OWNER_FILE).write_text(json.dumps(owner))
    assert CutIndex.open(index_path).extra_columns == ()
    assert verify_index(index_path).ok
    index = add_column(index_path, "words", f"{HERE}:words")
    assert not stray.exists() and not tmp.exists()
    assert sorted(p.name for p in index_path.glob("words.*.npy")) == [
        index.header.extra_columns["words"]["file"]
    ]


# -- header validation and verify ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda e: e.update(dtype="<i4"), r"extra_columns\['words'\]\.dtype expected '<i8'"),
        (lambda e: e.update(length=3), r"extra_columns\['words'\]\.length expected"),
        (lambda e: e.update(file="../words.npy"), r"\.file expected 'words\.<hex8>\.npy'"),
        (lambda e: e.update(file="other.0badc0de.npy"), r"\.file expected"),
        (lambda e: e.pop("tokenizer"), r"\.tokenizer expected a string"),
        (lambda e: e.update(tokenizer_fingerprint=5), r"tokenizer_fingerprint expected"),
    ],
)
def test_a_bad_extra_columns_entry_is_named(index_path: Path, edit, message: str) -> None:
    add_column(index_path, "words", f"{HERE}:words")
    path = index_path / HEADER_FILE
    header = json.loads(path.read_text())
    edit(header["extra_columns"]["words"])
    path.write_text(json.dumps(header))
    with pytest.raises(IndexFormatError, match=message):
        CutIndex.open(index_path)


def test_a_builtin_name_in_extra_columns_is_refused(index_path: Path) -> None:
    index = add_column(index_path, "words", f"{HERE}:words")
    path = index_path / HEADER_FILE
    header = json.loads(path.read_text())
    header["extra_columns"] = {"duration": index.header.extra_columns["words"]}
    path.write_text(json.dumps(header))
    with pytest.raises(IndexFormatError, match=r"extra_columns\['duration'\]: not a valid"):
        CutIndex.open(index_path)


def test_a_truncated_column_file_is_named(index_path: Path) -> None:
    index = add_column(index_path, "words", f"{HERE}:words")
    file = index_path / index.header.extra_columns["words"]["file"]
    file.write_bytes(file.read_bytes()[:-8])
    with pytest.raises(IndexFormatError, match=r"words\.[0-9a-f]{8}\.npy: column 'words' file is"):
        CutIndex.open(index_path)


def _rewrite_value(path: Path, row: int, value: int) -> None:
    data = bytearray(path.read_bytes())
    start = len(data) - 8 * CutIndex.open(path.parent, check_sources=False).header.num_rows
    data[start + 8 * row : start + 8 * row + 8] = np.int64(value).tobytes()
    path.write_bytes(bytes(data))


def test_verify_finds_changed_values_and_a_changed_tokenizer(
    corpus: dict, index_path: Path, tmp_path: Path
) -> None:
    model = tmp_path / "copy.model"
    model.write_bytes(corpus["spm"].read_bytes())
    index = add_column(index_path, "spm", model)
    file = index_path / index.header.extra_columns["spm"]["file"]
    row = index.row_of("two-sups")
    good = int(index.column("spm")[row])
    assert verify_index(index_path, recount=len(index)).ok
    _rewrite_value(file, row, good + 1)
    assert verify_index(index_path).ok  # still a count where there is text: only a recount sees it
    report = verify_index(index_path, recount=len(index))
    assert any(f"column spm row {row}: index holds {good + 1}, tokenizer gives {good}" in p
               for p in report.problems), report.problems  # fmt: skip
    no_text = index.row_of("no-sups")
    _rewrite_value(file, row, good)
    _rewrite_value(file, no_text, 4)
    report = verify_index(index_path)
    assert any(f"column spm row {no_text}: 4 but num_tokens is -1" in p for p in report.problems)
    _rewrite_value(file, no_text, -1)
    assert verify_index(index_path).ok
    model.write_bytes(model.read_bytes() + b"\0")
    report = verify_index(index_path)
    assert any("copy.model changed since the column was added" in p for p in report.problems)
    model.unlink()
    report = verify_index(index_path)
    assert report.ok and any("copy.model no longer exists" in n for n in report.notes)


# -- the command line ------------------------------------------------------------------------------


def test_cli_add_column_info_verify(corpus: dict, index_path: Path) -> None:
    runner = CliRunner()
    args = ["add-column", str(index_path), "--name", "bpe", "--tokenizer", str(corpus["bpe"])]
    result = runner.invoke(index_main, [*args, "--jobs", "2", "-q"])
    assert result.exit_code == 0, result.output
    n = len(corpus["texts"])
    no_text = sum(t is None for t in corpus["texts"])
    assert f"added column bpe to {index_path}: {n} cuts" in result.output
    assert f"{no_text} without text" in result.output
    result = runner.invoke(index_main, [*args, "-q"])
    assert result.exit_code == 3 and "column 'bpe' exists" in result.output
    assert runner.invoke(index_main, [*args, "-q", "--force"]).exit_code == 0
    result = runner.invoke(index_main, ["info", str(index_path)])
    assert result.exit_code == 0 and "added columns (add-column)" in result.output
    assert f"tokens of {corpus['bpe']}" in result.output
    result = runner.invoke(index_main, ["verify", str(index_path), "--recount", "40"])
    assert result.exit_code == 0 and f"ok: {n} rows verified" in result.output


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--name", "num_tokens", "--tokenizer", f"{HERE}:words"], 2, "built-in column"),
        (["--name", "t", "--tokenizer", "nowhere.model"], 3, "nowhere.model: no such file"),
        (["--name", "t", "--tokenizer", f"{HERE}:fails_on_zebra"], 3, "cut 'two-sups'"),
        (["--name", "t", "--tokenizer", f"{HERE}:words", "--jobs", "0"], 2, "--jobs"),
    ],
)
def test_cli_errors(index_path: Path, args: list[str], code: int, message: str) -> None:
    result = CliRunner().invoke(index_main, ["add-column", str(index_path), *args, "-q"])
    assert result.exit_code == code, result.output
    assert message in result.output


def test_cli_imports_a_tokenizer_module_from_the_working_directory(
    index_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "my_local_tokenizer.py").write_text("def count(text):\n    return len(text) // 2\n")
    monkeypatch.chdir(work)
    monkeypatch.setattr("sys.path", [p for p in __import__("sys").path if p not in ("", str(work))])
    args = ["add-column", str(index_path), "--name", "half", "-q"]
    result = CliRunner().invoke(index_main, [*args, "--tokenizer", "my_local_tokenizer:count"])
    assert result.exit_code == 0, result.output
    index = CutIndex.open(index_path)
    chars = np.asarray(index.column("num_tokens"))
    half = np.asarray(index.column("half"))
    single = np.asarray(index.column("num_supervisions")) <= 1  # no join spaces
    assert np.array_equal(half[single & (chars >= 0)], chars[single & (chars >= 0)] // 2)


def test_analyze_plans_with_an_added_token_column(corpus: dict, index_path: Path) -> None:
    from discoseq.cli.main import main as discoseq_main

    add_column(index_path, "spm", corpus["spm"])
    runner = CliRunner()
    args = ["analyze", str(index_path), "--max-tokens", "400", "--world-size", "1"]
    result = runner.invoke(discoseq_main, [*args, "--token-column", "spm"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(discoseq_main, [*args, "--token-column", "bpe"])
    assert result.exit_code == 3, result.output  # bad input: the index lacks it
    assert "token_column='bpe' is not a column" in result.output


def _add_in_process(path: str, name: str) -> None:
    add_column(path, name, f"{HERE}:words")


def test_concurrent_runs_each_keep_their_column(index_path: Path) -> None:
    import multiprocessing

    context = multiprocessing.get_context("fork")
    names = ["c0", "c1", "c2"]
    procs = [context.Process(target=_add_in_process, args=(str(index_path), n)) for n in names]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert [p.exitcode for p in procs] == [0, 0, 0]
    index = CutIndex.open(index_path)
    assert sorted(index.extra_columns) == names
    assert len(list(index_path.glob("c[0-9].*.npy"))) == 3
    assert all(np.array_equal(index.column(n), index.column("c0")) for n in names)
