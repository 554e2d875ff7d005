"""PNG figures for model cards and for looking at what a model does.

Why: numbers hide artefacts (musical noise, missing highs, a front-end that collapsed); a
spectrogram of input/output and a picture of the learned filters show them at a glance.
`python -m audioe2e.plots spectrograms a.wav b.wav … -o fig.png` and
`python -m audioe2e.plots filterbank models/separator.safetensors -o fb.png`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def spectrograms(paths: list[str], out: str, titles: list[str] | None = None, seconds: float | None = None):
    """Stack log-magnitude spectrograms (512-point, hop 128) of WAV files into one PNG."""
    import soundfile as sf
    plt = _plt()
    fig, axes = plt.subplots(len(paths), 1, figsize=(10, 2.2 * len(paths)), squeeze=False)
    for ax, p, title in zip(axes[:, 0], paths, titles or paths):
        x, rate = sf.read(p, dtype="float32", always_2d=True)
        x = x[:, 0] if seconds is None else x[: int(seconds * rate), 0]
        win = np.hanning(512)
        frames = np.lib.stride_tricks.sliding_window_view(np.pad(x, (256, 256)), 512)[::128] * win
        spec = 20 * np.log10(np.abs(np.fft.rfft(frames, axis=-1)).T + 1e-6)
        ax.imshow(spec, origin="lower", aspect="auto", vmin=spec.max() - 80, vmax=spec.max(), cmap="magma",
                  extent=[0, len(x) / rate, 0, rate / 2000])
        ax.set_title(str(title), fontsize=9)
        ax.set_ylabel("kHz")
    axes[-1, 0].set_xlabel("s")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def filterbank(weights: str, out: str):
    """Magnitude responses of a learned front-end's analysis filters, sorted by peak
    frequency, next to the DFT initialisation they started from (the codec: its analysis, and
    its synthesis before and after training)."""
    import torch

    from .checkpoint import load_weights
    state, config, _ = load_weights(weights)
    plt = _plt()
    rate = config.get("sample_rate", 16000)
    if "frontend.encoder.weight" in state:
        from .frontends.stft import dft_basis
        w = state["frontend.encoder.weight"][:, 0].double()
        init = dft_basis(w.shape[0], w.shape[1])
        mats = [("DFT initialisation", init), ("learned", w)]
    elif "analysis.fly.twiddles" in state:
        from .frontends.butterfly import Butterfly
        fly = Butterfly(config["n_fft"])
        init_rows = torch.fft.rfft(torch.eye(config["n_fft"], dtype=torch.float64), dim=-1).T
        fly.twiddles.data.copy_(state["analysis.fly.twiddles"])
        fly.eval()
        with torch.no_grad():
            eye = torch.eye(config["n_fft"], dtype=torch.complex64)
            learned = fly(eye)[:, : config["n_fft"] // 2 + 1].T * state["win_a"]
        win = state["win_a"].double()
        mats = [("FFT initialisation", (init_rows * win).abs()), ("learned butterfly", learned.abs().double())]
    elif config.get("arch") == "codec":  # its analysis and its overlap-add synthesis (the decoder's last layer)
        from .nets.causal import learned_transform_pair
        _, syn = learned_transform_pair(config["n_filters"], config["window"])
        mats = [("analysis (learned)", state["encoder.0.weight"][:, 0].double()),
                ("synthesis at initialisation", syn.weight[:, 0].detach().double()),
                ("synthesis (learned)", state["decoder.10.weight"][:, 0].double())]
    else:
        raise ValueError(f"{weights}: no learned front-end found")
    fig, axes = plt.subplots(1, len(mats), figsize=(5 * len(mats), 4), squeeze=False)
    for ax, (title, m) in zip(axes[0], mats):
        resp = np.abs(np.fft.rfft(m.numpy() if not np.iscomplexobj(m.numpy()) else m.numpy().real, n=512, axis=-1))
        order = np.argsort(resp.argmax(-1), kind="stable")
        db = 20 * np.log10(resp[order] + 1e-6)
        ax.imshow(db, aspect="auto", origin="lower", vmin=db.max() - 60, cmap="viridis",
                  extent=[0, rate / 2000, 0, m.shape[0]])
        ax.set_title(title)
        ax.set_xlabel("kHz")
        ax.set_ylabel("filter (sorted by peak)")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] not in {"spectrograms", "filterbank"} or "-o" not in argv:
        print(__doc__, file=sys.stderr)
        return 2
    out = argv[argv.index("-o") + 1]
    args = [a for i, a in enumerate(argv[1:], 1) if a != "-o" and argv[i - 1] != "-o"]
    if argv[0] == "spectrograms":
        spectrograms(args, out, [Path(a).name for a in args])
    else:
        filterbank(args[0], out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
