"""Training data: the corpus manifest in memory, and seeded on-the-fly mixture synthesis.

Why on the fly: with a dozen real voices, diversity comes from recombination (speaker pairs,
noise, SNR, gain, speed, EQ, reverb) — a fresh mixture every step, yet each batch is a pure
function of (seed, step, rank), so training is reproducible and resumes to the same data.
Works on any folder of speech + noise through the same manifest format (see corpus.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ..corpus.manifest import read_manifest

RATE = 16000


@dataclass
class Utterance:
    audio: np.ndarray  # int16 mono at RATE
    speaker: str | None


BALANCES = ("speaker", "source")


def speaker_weights(durations: np.ndarray, sources: list[str], balance: str = "speaker") -> np.ndarray:
    """How often each speaker is drawn, from its seconds of audio and its source.

    "speaker": ∝ sqrt(duration), so big voices don't drown the rare ones. But a source with
    many short voices then dominates: espeak-ng's ~90 synthetic voices get more examples than
    all the recorded sentences of real people together. "source": each source ∝ sqrt(its
    total duration), and within it each speaker ∝ sqrt(duration), so the share of a kind of
    voice does not grow with how many voices a generator can make."""
    dur = np.asarray(durations, float)
    root = np.sqrt(dur)
    if balance == "speaker":
        return root / root.sum()
    if balance != "source":
        raise ValueError(f"balance must be one of {BALANCES}, got {balance!r}")
    src = np.array(sources)
    p = np.zeros_like(root)
    for s in set(sources):
        m = src == s
        p[m] = np.sqrt(dur[m].sum()) * root[m] / root[m].sum()
    return p / p.sum()


class Corpus:
    """Speech grouped by speaker and noise clips of one split, held in memory as int16;
    `balance` sets how speakers are drawn (see `speaker_weights`)."""

    def __init__(self, root: str | Path, split: str, max_files: int | None = None,
                 balance: str = "speaker"):
        self.root = Path(root)
        rows = [r for r in read_manifest(self.root) if r["split"] == split]
        if max_files:
            rows = rows[:max_files]
        self.speakers: dict[str, list[np.ndarray]] = {}
        self.gender: dict[str, str | None] = {}
        self.source: dict[str, str] = {}  # a speaker in two sources (Allison: en + es) keeps the first
        self.noise: list[np.ndarray] = []
        for r in rows:
            audio, rate = sf.read(self.root / r["path"], dtype="int16", always_2d=True)
            if rate != RATE:
                raise ValueError(f"{r['path']}: corpus audio must be {RATE} Hz, got {rate}")
            audio = audio.mean(axis=1).astype(np.int16) if audio.shape[1] > 1 else audio[:, 0]
            if r["kind"] == "speech":
                self.speakers.setdefault(r["speaker"], []).append(audio)
                self.gender[r["speaker"]] = r.get("gender")
                self.source.setdefault(r["speaker"], r.get("source", ""))
            else:
                self.noise.append(audio)
        if len(self.speakers) < 2:
            raise ValueError(f"split '{split}' of {root} has {len(self.speakers)} speakers; need ≥ 2")
        self.speaker_ids = sorted(self.speakers)
        dur = np.array([sum(len(a) for a in self.speakers[s]) for s in self.speaker_ids], float)
        self.speaker_p = speaker_weights(dur, [self.source[s] for s in self.speaker_ids], balance)

    def hours(self) -> float:
        return sum(len(a) for v in self.speakers.values() for a in v) / RATE / 3600


def _to_float(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32) / 32768.0


def _crop_or_loop(parts, rng, n: int) -> np.ndarray:
    """Concatenate utterances (with short random pauses) until n samples, random crop."""
    out, total = [], 0
    while total < n + RATE // 2:
        a = _to_float(parts[rng.integers(len(parts))])
        out.append(a)
        gap = np.zeros(int(rng.uniform(0.05, 0.4) * RATE), np.float32)
        out.append(gap)
        total += len(a) + len(gap)
    x = np.concatenate(out)
    start = rng.integers(0, len(x) - n + 1)
    return x[start: start + n]


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2) + 1e-12))


def speed_perturb(x: np.ndarray, factor: float) -> np.ndarray:
    """Resample-based speed change (pitch and tempo together, as in Kaldi's speed perturb)."""
    import soxr
    if abs(factor - 1) < 1e-3:
        return x
    return soxr.resample(x, RATE * factor, RATE, quality="HQ").astype(np.float32)


def random_eq(x: np.ndarray, rng) -> np.ndarray:
    """Random spectral tilt and optional band-limiting (microphones, channels)."""
    spec = np.fft.rfft(x)
    f = np.linspace(0, 1, len(spec))
    tilt_db = rng.uniform(-6, 6)
    gain = 10 ** (tilt_db * (f - 0.3) / 20)
    if rng.random() < 0.2:
        cutoff = rng.uniform(0.35, 0.9)  # 2.8–7.2 kHz low-pass
        gain = gain / (1 + (f / cutoff) ** 8)
    if rng.random() < 0.3:
        gain = gain * (1 - 1 / (1 + (f / rng.uniform(0.005, 0.03)) ** 4))  # high-pass 40–240 Hz
    return np.fft.irfft(spec * gain, n=len(x)).astype(np.float32)


def synthetic_rir(rng, rt60: float) -> np.ndarray:
    """Exponentially decaying noise tail after a direct path: a cheap diffuse-room RIR."""
    n = int(rt60 * RATE)
    t = np.arange(n) / RATE
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60) * 0.3
    tail[: int(0.002 * RATE)] = 0.0
    tail[0] = 1.0
    return (tail / np.sqrt(np.sum(tail ** 2))).astype(np.float32)


def reverberate(x: np.ndarray, rir: np.ndarray) -> np.ndarray:
    from scipy.signal import fftconvolve
    return fftconvolve(x, rir)[: len(x)].astype(np.float32)


def colored_noise(rng, n: int) -> np.ndarray:
    kind = rng.integers(4)
    if kind == 3:  # mains hum with harmonics
        f0 = rng.choice([50.0, 60.0])
        t = np.arange(n) / RATE
        x = sum(rng.uniform(0.1, 1) / k * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.3))
                for k in range(1, 8))
        return (x + 0.05 * rng.standard_normal(n)).astype(np.float32)
    white = rng.standard_normal(n)
    spec = np.fft.rfft(white)
    f = np.arange(len(spec)) + 1.0
    spec = spec / f ** (0.5 * kind)  # 0 white, 1 pink, 2 brown
    return np.fft.irfft(spec, n=n).astype(np.float32)


# Mixture level range (dBFS RMS) of the validation sets; the training recipes mostly use a
# wider one (recipes.WIDE_LEVEL_DB).
LEVEL_DB = (-35.0, -10.0)
# Speed perturbation range (factor; half the utterances are perturbed), Kaldi's ±10 % by
# default. A wider range (`train run --speed`) makes more virtual voices from the few real
# ones: pitch and formants move together by the factor (0.8–1.25 spans about the gap between
# typical male and female voices), tempo with them.
SPEED = (0.9, 1.1)
# Share of the codec's training examples whose input is the clean speech itself (the rest are
# noisy): the codec must also pass clean speech through, not only denoise (recipe field).
CLEAN_SHARE = 0.3


class Mixer:
    """Draws speech, noise and augmentations from a corpus with an explicit RNG."""

    def __init__(self, corpus: Corpus, seconds: float, augment: bool = True,
                 level_db: tuple[float, float] = LEVEL_DB, speed: tuple[float, float] = SPEED,
                 clean_share: float = CLEAN_SHARE):
        self.corpus, self.n, self.augment = corpus, int(seconds * RATE), augment
        self.level_db, self.speed, self.clean_share = tuple(level_db), tuple(speed), clean_share

    def speaker(self, rng, exclude=()) -> str:
        while True:
            s = self.corpus.speaker_ids[rng.choice(len(self.corpus.speaker_ids), p=self.corpus.speaker_p)]
            if s not in exclude:
                return s

    def speech(self, rng, speaker: str) -> np.ndarray:
        factor = rng.uniform(*self.speed) if self.augment and rng.random() < 0.5 else 1.0
        need = int(self.n * factor) + 8
        x = _crop_or_loop(self.corpus.speakers[speaker], rng, need)
        x = speed_perturb(x, factor)[: self.n]
        if len(x) < self.n:
            x = np.pad(x, (0, self.n - len(x)))
        if self.augment and rng.random() < 0.5:
            x = random_eq(x, rng)
        return x / (rms(x) + 1e-8) * 0.05

    def noise(self, rng, speakers_for_babble=()) -> np.ndarray:
        r = rng.random()
        if r < 0.6 and self.corpus.noise:
            x = _crop_or_loop(self.corpus.noise, rng, self.n)
        elif r < 0.75 and speakers_for_babble:
            x = sum(self.speech(rng, self.speaker(rng)) for _ in range(rng.integers(3, 7)))
        else:
            x = colored_noise(rng, self.n)
        return x / (rms(x) + 1e-8) * 0.05

    def maybe_reverb(self, rng, *signals, p=0.3):
        if not self.augment or rng.random() >= p:
            return signals
        rir = synthetic_rir(rng, rng.uniform(0.15, 0.7))
        return tuple(reverberate(s, rir) for s in signals)

    def level(self, rng, *signals):
        """Random overall level (`level_db`, dBFS RMS of the mixture), clipped-safe."""
        mix = signals[0]
        g = 10 ** (rng.uniform(*self.level_db) / 20) / (rms(mix) + 1e-8)
        peak = max(np.abs(s).max() for s in signals) * g
        if peak > 0.99:
            g *= 0.99 / peak
        return tuple((s * g).astype(np.float32) for s in signals)

    def enhance_pair(self, rng, snr=(-5.0, 20.0), info=None):
        """(noisy, clean) at an SNR drawn uniformly from `snr` dB (a fixed SNR if a float)."""
        spk = self.speaker(rng)
        clean = self.speech(rng, spk)
        (clean,) = self.maybe_reverb(rng, clean)
        noise = self.noise(rng, speakers_for_babble=True)
        s = float(snr) if np.isscalar(snr) else rng.uniform(*snr)
        if info is not None:
            info.update(speaker=spk, snr_db=s)
        noise = noise * rms(clean) / (rms(noise) + 1e-8) * 10 ** (-s / 20)
        return self.level(rng, clean + noise, clean)

    def separation_example(self, rng, noise_p=0.3, info=None):
        """(mix, s1, s2): two speakers at a relative level of ±5 dB, mostly fully overlapped,
        sometimes partially; optional noise at 5–20 dB SNR and reverb."""
        a = self.speaker(rng)
        b = self.speaker(rng, exclude={a})
        if info is not None:
            ga, gb = self.corpus.gender.get(a), self.corpus.gender.get(b)
            info.update(speakers=[a, b], genders=[ga, gb],
                        pair="same" if ga and gb and ga == gb else ("different" if ga and gb else "unknown"))
        s1, s2 = self.speech(rng, a), self.speech(rng, b)
        s2 = s2 * 10 ** (rng.uniform(-5, 5) / 20)
        if rng.random() < 0.3:  # partial overlap: one speaker starts late or stops early
            cut = int(rng.uniform(0.2, 0.6) * self.n)
            if rng.random() < 0.5:
                s2[:cut] = 0
            else:
                s2[-cut:] = 0
        s1, s2 = self.maybe_reverb(rng, s1, s2, p=0.2)
        mix = s1 + s2
        if rng.random() < noise_p:
            noise = self.noise(rng)
            mix = mix + noise * rms(mix) / (rms(noise) + 1e-8) * 10 ** (-rng.uniform(5, 20) / 20)
        return self.level(rng, mix, s1, s2)


def batch(mixer: Mixer, task: str, size: int, seed: int, step: int, rank: int = 0):
    """A batch as torch tensors: (input [B, T], target [B, T] or [B, S, T]); pure function
    of (seed, step, rank)."""
    import torch
    x, y = batch_arrays(mixer, task, size, seed, step, rank)
    return torch.from_numpy(x), torch.from_numpy(y)


def batch_arrays(mixer: Mixer, task: str, size: int, seed: int, step: int, rank: int = 0):
    """`batch` as numpy arrays (what prefetch workers send back)."""
    rng = np.random.default_rng([seed, step, rank])
    xs, ys = [], []
    for _ in range(size):
        if task == "separate":
            mix, s1, s2 = mixer.separation_example(rng)
            xs.append(mix)
            ys.append(np.stack([s1, s2]))
        elif task == "codec":
            noisy, clean = mixer.enhance_pair(rng, snr=(0.0, 25.0))
            xs.append(clean if rng.random() < mixer.clean_share else noisy)  # also clean → clean
            ys.append(clean)
        else:
            noisy, clean = mixer.enhance_pair(rng)
            xs.append(noisy)
            ys.append(clean)
    return np.stack(xs), np.stack(ys)


_WORKER_MIXER: Mixer | None = None


def _batch_worker(conn, parent: int) -> None:
    """A prefetch worker's loop: batch arguments in, numpy batches out, on its own pipe, until
    its pipe closes or its parent is gone (so a killed trainer leaves no workers behind)."""
    import os
    try:
        while True:
            if not conn.poll(2.0):
                if os.getppid() != parent:
                    return
                continue
            conn.send(batch_arrays(_WORKER_MIXER, *conn.recv()))
    except (EOFError, OSError, KeyboardInterrupt):
        return


class BatchPrefetcher:
    """Batches for steps start, start+1, … made by `workers` forked processes, at most
    `depth` ahead of the training step.

    Why: on a GPU the step takes milliseconds and one Python process mixing audio (crops,
    resampling, EQ, reverb) cannot keep up; on CPU training it is not needed (workers=0 keeps
    the in-process path). Each batch is still the pure function of (seed, step, rank), so a
    prefetched run trains on exactly the batches an unprefetched one would. The window is
    bounded because each batch of 4 s separation examples is tens of MB.

    Each worker has its own pipe and takes the steps in turn, so results arrive in order
    without the shared queues, locks and helper threads of `multiprocessing.Pool`: its
    terminate() waited forever when a worker was still writing a batch (megabytes) that nobody
    would read, holding the result queue's lock (CI hung there; reproduced in about 1 close of
    30). Forked, so the corpus in memory is shared, not pickled; a worker that dies or stalls
    is an error, never a hang."""

    def __init__(self, mixer: Mixer, task: str, size: int, seed: int, rank: int, start: int,
                 workers: int, depth: int | None = None, timeout: float = 600.0):
        import multiprocessing as mp
        import os
        from collections import deque
        global _WORKER_MIXER
        _WORKER_MIXER = mixer  # inherited by the forked workers
        ctx = mp.get_context("fork")
        self.procs, self.conns = [], []
        for _ in range(workers):
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=_batch_worker, args=(theirs, os.getpid()), daemon=True)
            proc.start()
            theirs.close()
            self.procs.append(proc)
            self.conns.append(ours)
        self.task, self.size, self.seed, self.rank = task, size, seed, rank
        self.next_step, self.depth, self.timeout = start, depth or 2 * workers, timeout
        self.pending: deque = deque()  # (step, worker index), oldest first
        self._fill()

    def _fill(self):
        while len(self.pending) < self.depth:
            w = self.next_step % len(self.conns)
            try:
                self.conns[w].send((self.task, self.size, self.seed, self.next_step, self.rank))
            except OSError:  # its end of the pipe closed: the process is gone
                self.procs[w].join(timeout=5)
                raise RuntimeError(f"batch worker {w} died before step {self.next_step} "
                                   f"(exit code {self.procs[w].exitcode})") from None
            self.pending.append((self.next_step, w))
            self.next_step += 1

    def get(self, step: int):
        """The batch of `step` (steps must be asked for in order)."""
        import time

        import torch
        queued, w = self.pending[0]
        if queued != step:
            raise RuntimeError(f"prefetcher asked for step {step}, holds step {queued}")
        conn, proc, asked = self.conns[w], self.procs[w], time.monotonic()
        died = f"batch worker {w} died before step {step}"
        while not conn.poll(1.0):
            if not proc.is_alive():
                raise RuntimeError(f"{died} (exit code {proc.exitcode})")
            if time.monotonic() - asked > self.timeout:
                raise RuntimeError(f"batch worker {w} made no batch for step {step} in {self.timeout:g} s")
        try:
            x, y = conn.recv()
        except (EOFError, OSError):  # closed, or reset with a batch half sent
            proc.join(timeout=5)
            raise RuntimeError(f"{died} (exit code {proc.exitcode})") from None
        self.pending.popleft()
        self._fill()
        return torch.from_numpy(x), torch.from_numpy(y)

    def close(self):
        """Stop the workers; the batches still queued are not wanted. Safe to call twice."""
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in self.conns:
            conn.close()
