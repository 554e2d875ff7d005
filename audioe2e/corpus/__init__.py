"""Training corpus builder: ``audioe2e corpus build`` / ``build_corpus()`` (no torch needed).

Layout: ``OUT/speech/<source>/<speaker>/<file>.wav``, ``OUT/noise/<source>/<file>.wav`` (16 kHz
mono PCM_16, trimmed, <= 20 s), ``OUT/manifest.jsonl`` and ``OUT/summary.json``. Pieces:
``audio`` (decode/trim/split/write), ``sources`` (Debian packages, user folders),
``tts`` (espeak-ng, flite, festival, Kokoro), ``manifest`` (splits, summary), ``build``.
"""
from .build import build_corpus
from .cli import app

__all__ = ["app", "build_corpus"]
