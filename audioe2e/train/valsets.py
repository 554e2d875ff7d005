"""Fixed validation sets, written once to disk from the validation split with a fixed seed.

Why on disk: numbers must stay comparable across training runs, code changes and peers
(`make bench` runs RNNoise, Opus, … on the very same files). Layout, per task under
`CORPUS/valsets/<task>/`: `input/NNNN.wav`, `target/NNNN.wav` (separation: `s1/`, `s2/`),
and `meta.jsonl` (speaker ids, genders, SNR).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

from .data import RATE, Corpus, Mixer

SNRS = (-5.0, 0.0, 5.0, 10.0, 15.0, 20.0)
FIXED_SEED = 1234  # the seed of the fixed valsets that training logs and the bench report


def valset_dir(corpus_root: str | Path, task: str) -> Path:
    return Path(corpus_root) / "valsets" / ("separate" if task == "separate" else "enhance")


def write_valset(corpus_root: str | Path, task: str, n: int = 48, seconds: float = 4.0, seed: int = FIXED_SEED) -> Path:
    out = valset_dir(corpus_root, task)
    if (out / "meta.jsonl").is_file():
        return out
    mixer = Mixer(Corpus(corpus_root, "val"), seconds, augment=False)
    rng = np.random.default_rng(seed)
    # A private temp folder: two trainings started together (the codec shares the enhance
    # valset) each write one, and the first rename wins; the set is a pure function of the
    # corpus and seed, so the loser's copy is identical and is dropped.
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    names = ["input", "s1", "s2"] if task == "separate" else ["input", "target"]
    for d in names:
        (tmp / d).mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        info: dict = {"id": f"{i:04d}"}
        if task == "separate":
            sigs = mixer.separation_example(rng, info=info)
        else:
            sigs = mixer.enhance_pair(rng, snr=SNRS[i % len(SNRS)], info=info)
        for d, x in zip(names, sigs):
            sf.write(tmp / d / f"{i:04d}.wav", x, RATE, subtype="FLOAT")
        lines.append(json.dumps(info))
    (tmp / "meta.jsonl").write_text("\n".join(lines) + "\n")
    try:
        tmp.rename(out)
    except OSError:
        if not (out / "meta.jsonl").is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def load_valset(corpus_root: str | Path, task: str):
    """(inputs [N, T], targets [N, T] or [N, 2, T], meta list) as torch tensors."""
    import torch
    d = write_valset(corpus_root, task)
    meta = [json.loads(l) for l in (d / "meta.jsonl").read_text().splitlines() if l.strip()]
    read = lambda sub, m: sf.read(d / sub / f"{m['id']}.wav", dtype="float32")[0]  # noqa: E731
    x = np.stack([read("input", m) for m in meta])
    if task == "separate":
        y = np.stack([np.stack([read("s1", m), read("s2", m)]) for m in meta])
    else:
        y = np.stack([read("target", m) for m in meta])
    return torch.from_numpy(x), torch.from_numpy(y), meta


def valset_id(corpus_root: str | Path, task: str) -> str:
    """Fingerprint of a valset (its meta file), so a rewritten valset is noticed."""
    return folder_id(valset_dir(corpus_root, task))


def folder_id(d: str | Path) -> str:
    """The fingerprint of the valset in folder `d` ("" when it has none)."""
    import hashlib
    meta = Path(d) / "meta.jsonl"
    return hashlib.sha256(meta.read_bytes()).hexdigest()[:16] if meta.is_file() else ""


def audio_id(d: str | Path) -> str:
    """The fingerprint of the audio in valset folder `d` ("" when it has no WAV files).

    folder_id hashes only the meta file, which for a separation valset names the clips but
    holds nothing computed from them, so two machines can share it with different audio. The
    bench records this one too; training logs keep folder_id so their history stays comparable.
    It hashes each file's name, rate and decoded samples, not its bytes: libsndfile stamps float
    WAVs with the time of writing (PEAK chunk), so byte hashes of two identical writes differ."""
    import hashlib
    h, n = hashlib.sha256(), 0
    for f in sorted(Path(d).rglob("*.wav")):
        x, rate = sf.read(f, dtype="float32", always_2d=True)
        h.update(f.relative_to(d).as_posix().encode() + b"\0" + f"{rate} {x.shape}".encode() + b"\0")
        h.update(np.ascontiguousarray(x).tobytes())
        n += 1
    return h.hexdigest()[:16] if n else ""


def write_draw(corpus_root: str | Path, out: str | Path, seed: int = 999, n_enhance: int = 144,
               n_separate: int = 96) -> Path:
    """A second, larger draw of validation clips in folder `out`, laid out as a corpus (links to
    CORPUS's manifest, speech and noise + its own `valsets/`), so that `bench.ablation
    --corpus OUT` scores candidates on it.

    Why: the 48 clips of the fixed valset are what training logs and the bench report; a
    checkpoint picked as the best of many validations on them is favoured by their noise. A
    draw of unused clips from the same validation split (other seed, more clips) is what
    candidates are chosen on (seed 999, 144 enhance / 96 separate clips since the fifth
    session). Idempotent: an existing draw is kept."""
    src, out = Path(corpus_root).resolve(), Path(out)
    if not (src / "manifest.jsonl").is_file():
        raise FileNotFoundError(f"{src}/manifest.jsonl not found (build it with `audioe2e corpus build`)")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    made, replaced = [], []  # links made here; (link, old target) of links re-pointed
    try:
        for name in ("manifest.jsonl", "speech", "noise"):
            link = out / name
            if link.is_symlink():  # re-pointed at CORPUS (it may have moved); real files are kept
                replaced.append((link, os.readlink(link)))
                link.unlink()
            if not link.exists():
                link.symlink_to(src / name)
                made.append(link)
        write_valset(out, "enhance", n=n_enhance, seed=seed)
        write_valset(out, "separate", n=n_separate, seed=seed)
    except BaseException:  # nothing half-made stays: a new folder goes, else it is put back as it was
        if created:
            shutil.rmtree(out, ignore_errors=True)  # removes links, never follows them
        else:
            for link in made:
                link.unlink(missing_ok=True)
            for link, target in replaced:
                if not link.is_symlink():
                    link.symlink_to(target)
        raise
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m audioe2e.train.valsets --corpus corpus --out out/draw999`: see write_draw."""
    import sys

    from ..report import ScriptArgumentParser

    ap = ScriptArgumentParser(prog="python -m audioe2e.train.valsets", description=write_draw.__doc__.split("\n")[0])
    ap.add_argument("--corpus", default="corpus")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=999)
    ap.add_argument("--n-enhance", type=int, default=144)
    ap.add_argument("--n-separate", type=int, default=96)
    a = ap.parse_args(argv)
    if min(a.n_enhance, a.n_separate) < 1:
        print("error: --n-enhance and --n-separate must be at least 1", file=sys.stderr)
        return 2
    if Path(a.out).exists() and not Path(a.out).is_dir():
        print(f"error: --out {a.out} is a file, not a folder", file=sys.stderr)
        return 2
    if a.seed == FIXED_SEED:
        print(f"error: seed {FIXED_SEED} is the fixed valset's own; a second draw needs another", file=sys.stderr)
        return 2
    try:
        d = write_draw(a.corpus, a.out, a.seed, a.n_enhance, a.n_separate)
    except (OSError, ValueError) as e:  # no corpus, --out is a file, unwritable folder
        print(f"error: {e}", file=sys.stderr)
        return 2
    for task in ("enhance", "separate"):
        v = valset_dir(d, task)
        print(f"{v}: {sum(1 for _ in open(v / 'meta.jsonl'))} clips, fingerprint {folder_id(v)}/{audio_id(v)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
