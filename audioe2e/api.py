"""File-level verbs: the loop over inputs and outputs, with reports. Usable without the CLI.

Every verb takes input arguments (paths, directories, globs, `-`; see `inputs.py`), an output
(`None`, a path, a directory or `-`) and a model object (anything with the contract below; a
shipped one by name via `load_model`), and returns one `FileReport` per input. A bad file is
reported and the batch goes on. Each file streams: read a block, resample it to the model rate,
`streamer.feed` it, resample back, write what came out, so memory is flat in file length and a
pipe's output starts before its input ends. At EOF, `flush()` and trim to the exact length.

Model contract (enhance/separate): `sample_rate`, `task`, `n_sources` (separate),
`make_streamer(device, **kwargs)` returning a `streaming.Streamer` that takes `[C, T]` (the
channels are a batch) and returns `[C, T']` or `[C, S, T']`.

Separation and channels: with `-o DIR` (or outputs beside the input) each speaker file has the
input's channels, every channel separated on its own; when all speakers go to one file (`-o -`
or `-o file.wav`), a multichannel input is downmixed to mono first and the file has one
channel per speaker.
"""
from __future__ import annotations

import math
import os
import time
import traceback
from contextlib import ExitStack
from itertools import chain
from typing import Callable, Optional, Sequence

import numpy as np

from .audio import first_and_rest, BLOCK, AudioError, AudioWriter, open_reader, output_subtype
from .inputs import AUDIO_EXTS, Input, UsageError, expand_inputs, plan_outputs
from .report import FileReport, Progress
from .resample import ExactLength, Resampler

TASK_OF_MODEL = {"enhancer": "enhance", "enhancer-tiny": "enhance", "separator": "separate",
                 "codec": "codec"}


def resolve_device(device: Optional[str] = "auto") -> str:
    """`auto` -> `cuda` when available, else `cpu`; validate `cuda[:N]`."""
    import torch

    device = (device or "auto").lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {device}: CUDA is not available on this machine")
        if ":" in device and int(device[5:]) >= torch.cuda.device_count():
            raise UsageError(f"--device {device}: only {torch.cuda.device_count()} GPU(s) here")
        return device
    raise UsageError(f"unknown --device {device!r} (use auto, cpu, cuda or cuda:N)")


def setup_torch(threads: Optional[int] = None):
    """Thread count and deterministic settings for inference."""
    import torch

    if threads:
        if threads < 1:
            raise UsageError("--threads must be at least 1")
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def load_model(name: str, device: str = "cpu"):
    """A shipped model by name (`registry.load_model`), or a fake one when the test-only
    environment variable `AUDIOE2E_FAKE_MODEL` is set (see `testing.py`)."""
    if os.environ.get("AUDIOE2E_FAKE_MODEL"):
        from .testing import make_fake
        return make_fake(TASK_OF_MODEL.get(name, name))
    from .registry import load_model as _load
    return _load(name, device)


def load_numpy_enhancer(name: str, threads: Optional[int] = None):
    """An enhancer on the torch-free engine (`nets/tiny_numpy.py`), or None where that engine
    cannot run it (see `registry.load_model`; also fake models in tests and
    `AUDIOE2E_ENGINE=torch`). Why: start-up. `import torch` takes ~2 s, as long as the tiny
    model needs for 10 minutes of audio; on a GPU (`--device cuda`) torch runs as before."""
    if os.environ.get("AUDIOE2E_FAKE_MODEL") or os.environ.get("AUDIOE2E_ENGINE") == "torch":
        return None
    if threads is not None:
        if threads < 1:
            raise UsageError("--threads must be at least 1")
        from threadpoolctl import threadpool_limits
        threadpool_limits(limits=threads, user_api="blas")
    from .registry import load_model
    return load_model(name, engine="numpy")


def user_error(e: BaseException) -> bool:
    """An error about the user's data or files (not a bug): reported without a traceback."""
    return isinstance(e, (AudioError, UsageError, OSError)) or any(
        c.__name__ in ("BitstreamError", "EntropyError") for c in type(e).__mro__)


def describe(e: BaseException) -> str:
    """A one-line reason for the user."""
    if isinstance(e, BrokenPipeError):
        msg = "output pipe closed by the reader (broken pipe)"
    elif isinstance(e, OSError) and e.strerror:
        msg = f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    elif user_error(e):
        msg = str(e)
    else:
        msg = f"internal error: {type(e).__name__}: {e}"
    return " ".join(msg.split()) or type(e).__name__


def _make_parents(folder: str) -> list[str]:
    """Create `folder` and its missing parents; returns the ones created, deepest first, so a
    failed input can take back the folders made only for it."""
    made = []
    f = os.path.abspath(folder) if folder else ""
    while f and not os.path.lexists(f):
        made.append(f)
        f = os.path.dirname(f)
    if made:
        os.makedirs(made[0], exist_ok=True)
    return made


def _remove_if_empty(folders: list[str]) -> None:
    for f in folders:  # deepest first
        try:
            os.rmdir(f)
        except OSError:
            return  # not empty (another output is there) or already gone


def run_batch(task: str, inputs: Sequence[str | Input], output: Optional[str],
              process: Callable[[Input, list[str], str], dict], *, n_sources: int = 2,
              template: Optional[str] = None, force: bool = False, skip_existing: bool = False,
              exts: tuple[str, ...] = AUDIO_EXTS,
              on_report: Optional[Callable[[FileReport], None]] = None) -> list[FileReport]:
    """Plan outputs, then `process(input, outputs, mode) -> stats` each input in turn.

    An existing output is an error unless `force`; with `skip_existing` an input whose outputs
    all exist is skipped (one with only some of them is redone)."""
    if any(not isinstance(i, Input) for i in inputs):
        inputs = expand_inputs([os.fspath(i) for i in inputs], exts)
    mode, plans = plan_outputs(inputs, output, task, template, n_sources)
    claimed: dict[str, str] = {}
    reports = []
    for inp, outs in zip(inputs, plans):
        r = FileReport(inp.display, outs)
        files = [o for o in outs if o != "-"]
        clash = next((o for o in files if os.path.realpath(o) in claimed), None)
        existing = [o for o in files if os.path.lexists(o)]
        if inp.error:
            r.status, r.error, r.outputs = "failed", inp.error, []
        elif clash:
            r.status, r.outputs = "failed", []
            r.error = f"output {clash} is also the output of {claimed[os.path.realpath(clash)]}"
        elif existing and skip_existing and len(existing) == len(files):
            r.status = "skipped"
        elif existing and not force and not skip_existing:
            r.status, r.outputs = "failed", []
            r.error = f"output {existing[0]} exists (use -f to overwrite or --skip-existing)"
        else:
            claimed.update((os.path.realpath(o), inp.display) for o in files)
            t0 = time.perf_counter()
            made: list[str] = []
            try:
                for o in files:
                    made += _make_parents(os.path.dirname(o))
                stats = process(inp, outs, mode)
                r.seconds = time.perf_counter() - t0
                r.duration_s = stats.pop("duration_s", None)
                r.clipped = stats.pop("clipped", 0)
                if r.duration_s:
                    r.realtime_factor = r.seconds / r.duration_s
                r.extra = stats
            except KeyboardInterrupt:
                raise
            except Exception as e:  # one bad file must not stop the batch
                _remove_if_empty(made)
                r.status, r.error, r.outputs = "failed", describe(e), []
                if not user_error(e):
                    r.traceback = traceback.format_exc()
        reports.append(r)
        if on_report:
            on_report(r)
    return reports


def _to_numpy(y, rows: int) -> np.ndarray:
    if y.numel() == 0:
        return np.zeros((rows, 0), np.float32)
    return y.detach().cpu().float().numpy().reshape(rows, -1)


def stream_file(inp: Input, outs: list[str], mode: str, model, make_streamer: Callable, *,
                separate: bool = False, subtype: Optional[str] = None, clip: str = "clamp",
                progress: bool = False, block: int = BLOCK, quality: str = "HQ") -> dict:
    """Run one input through a streamer into its output file(s); returns stats. Streamers
    take and give torch tensors, or numpy arrays where they say `numpy_io` (the torch-free
    enhancer engine, which must not import torch)."""
    with open_reader(inp.path, block) as reader, ExitStack() as stack:
        info = reader.info
        first, blocks = first_and_rest(reader)
        mono = separate and mode in ("stdout", "file")  # all speakers in one file
        C = 1 if mono else info.channels
        S = int(model.n_sources) if separate else 1
        st = output_subtype(info.subtype, subtype)
        n_files = S if separate and not mono else 1
        ch = C if separate and not mono else C * S
        writers = [stack.enter_context(AudioWriter(o, info.rate, ch, st, clip))
                   for o in outs[:n_files]]
        up = Resampler(info.rate, model.sample_rate, C, quality)
        down = Resampler(model.sample_rate, info.rate, C * S, quality)
        keep = ExactLength(C * S)
        streamer = make_streamer()
        if getattr(streamer, "numpy_io", False):
            to_model, from_model = np.ascontiguousarray, lambda y: y.reshape(C * S, -1)
        else:
            import torch
            to_model = lambda x: torch.from_numpy(np.ascontiguousarray(x))  # noqa: E731
            from_model = lambda y: _to_numpy(y, C * S)  # noqa: E731
        prog = stack.enter_context(Progress(inp.display, info.duration, progress))
        n_in = 0

        def write(z: np.ndarray):
            if z.shape[-1] == 0:
                return
            if len(writers) == 1:
                writers[0].write(z)
            else:
                z = z.reshape(C, S, -1)
                for s, w in enumerate(writers):
                    w.write(z[:, s])

        def model_out(y):
            write(keep.push(down.process(from_model(y)), limit=n_in))

        def model_in(x: np.ndarray):
            if x.shape[-1]:
                model_out(streamer.feed(to_model(x)))

        for blk in chain([first], blocks):
            if mono and blk.shape[0] > 1:
                blk = blk.mean(axis=0, keepdims=True)
            n_in += blk.shape[-1]
            model_in(up.process(blk))
            prog.update(n_in / info.rate)
        model_in(up.flush())
        model_out(streamer.flush())
        write(keep.push(down.flush(), limit=n_in))
        write(keep.finish(n_in))
    stats = {"duration_s": n_in / info.rate, "clipped": sum(w.clipped for w in writers),
             "sample_rate": info.rate, "channels": C * S if len(writers) == 1 else C,
             "subtype": st}
    gains = [w.gain for w in writers if w.gain != 1.0]
    if gains:
        stats["gain"] = min(gains)
    return stats


def _prepare(model, name: str, device: str, threads: Optional[int]):
    if model is None and name in ("enhancer", "enhancer-tiny") and (device or "auto").lower() in ("auto", "cpu"):
        numpy_model = load_numpy_enhancer(name, threads)
        if numpy_model is not None:
            return numpy_model, "cpu"
    setup_torch(threads)
    device = resolve_device(device)
    if model is None:
        model = load_model(name, device)
    return model, device


def stamp(reports: list[FileReport], model, device: str) -> list[FileReport]:
    """Name the model (and its weights hash) and the device in every file's report, so a
    `--json` report says which weights produced which file."""
    who = {"model": str(getattr(model, "model_name", type(model).__name__)),
           "model_sha256": str(getattr(model, "weights_sha256", "")), "device": str(device),
           "engine": str(getattr(model, "engine", "torch"))}
    for r in reports:
        r.extra.update(who)
    return reports


def run_enhance(inputs: Sequence[str | Input], output: Optional[str] = None, model=None, *,
                tiny: bool = False, atten_lim_db: Optional[float] = None,
                wet: Optional[float] = None, device: str = "cpu", threads: Optional[int] = None,
                subtype: Optional[str] = None, clip: str = "clamp", progress: bool = False,
                block: int = BLOCK, **batch) -> list[FileReport]:
    """Enhance each input; `atten_lim_db`/`wet` go to `model.make_streamer`. `atten_lim_db`
    None takes the loaded weights' default noise floor (`model.default_atten_lim_db`, from
    their manifest entry: 30 dB for the tiny model, none for the default one); inf (or None
    where the model has no default) gives the network's raw output."""
    if wet is not None and not 0.0 <= wet <= 1.0:
        raise UsageError("--mix must be between 0 and 1")
    if atten_lim_db is not None and math.isnan(atten_lim_db):
        raise UsageError("--atten-lim must be a number of dB (or inf for no limit)")
    name = "enhancer-tiny" if tiny else "enhancer"
    model, device = _prepare(model, name, device, threads)
    if atten_lim_db is None:  # the loaded weights' default noise floor (their manifest entry)
        atten_lim_db = getattr(model, "default_atten_lim_db", None)
    elif math.isinf(atten_lim_db):  # no limit: the raw model output (and valid JSON: null)
        atten_lim_db = None
    kw = {k: v for k, v in (("atten_lim_db", atten_lim_db), ("wet", wet)) if v is not None}

    def process(inp, outs, mode):
        return stream_file(inp, outs, mode, model, lambda: model.make_streamer(device, **kw),
                           subtype=subtype, clip=clip, progress=progress, block=block)
    reports = stamp(run_batch("enhance", inputs, output, process, **batch), model, device)
    for r in reports:  # which floor and mix produced the file (None: the raw model output)
        r.extra.update(atten_lim_db=atten_lim_db, mix=1.0 if wet is None else wet)
    return reports


def run_separate(inputs: Sequence[str | Input], output: Optional[str] = None, model=None, *,
                 device: str = "cpu", threads: Optional[int] = None,
                 subtype: Optional[str] = None, clip: str = "clamp", progress: bool = False,
                 block: int = BLOCK, chunk: Optional[float] = None, overlap: Optional[float] = None,
                 **batch) -> list[FileReport]:
    """Separate each input into `model.n_sources` speakers (see module doc for channels).
    `chunk`/`overlap` (seconds) set the overlap-add window of the separator."""
    model, device = _prepare(model, "separator", device, threads)
    kw = {k: v for k, v in (("chunk_seconds", chunk), ("overlap_seconds", overlap)) if v is not None}

    def process(inp, outs, mode):
        return stream_file(inp, outs, mode, model, lambda: model.make_streamer(device, **kw),
                           separate=True, subtype=subtype, clip=clip, progress=progress,
                           block=block)
    return stamp(run_batch("separate", inputs, output, process, n_sources=int(model.n_sources), **batch),
                 model, device)


def _single(reports: list[FileReport]) -> FileReport:
    r = reports[0]
    if r.status == "failed":
        raise AudioError(f"{r.input}: {r.error}")
    return r


def enhance_file(src: str, dst: str, model=None, **kw) -> FileReport:
    """Enhance one file into `dst` (a file path or `-`); raises AudioError on failure."""
    return _single(run_enhance([src], dst, model, **kw))


def separate_file(src: str, out: Optional[str] = None, model=None, **kw) -> FileReport:
    """Separate one file; `out` a directory (`<stem>_s1.wav`...), a file, `-` or None."""
    return _single(run_separate([src], out, model, **kw))
