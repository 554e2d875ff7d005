"""audioe2e's own models as bench systems: load by name, run on one `[T]` numpy signal.

Shipped models come from the registry (`load_model`, sha256 checked). Research twins that
are not in the registry (e.g. `separator-stft`, the same masker on a fixed STFT front-end)
are loaded from `models/<name>.safetensors` when the file exists. Whole-signal forward
passes on 4 s clips (`model(x[None])`): the streaming paths are tested to give the same
output, and the speed bench runs them through the CLI.
"""
from __future__ import annotations

import io

import numpy as np

from ..mixback import floor_gain, mix_back
from ..registry import TWIN_NAMES, ModelNotAvailable, build_model, load_model, models_dir


def load(name: str):
    """A model in eval mode on CPU; raises ModelNotAvailable with the reason."""
    if name not in TWIN_NAMES:  # research twins are looked for beside the shipped weights
        return load_model(name, "cpu")
    from ..checkpoint import load_weights
    path = models_dir() / f"{name}.safetensors"
    if not path.is_file():
        raise ModelNotAvailable(f"{path.name} not found")
    state, config, _ = load_weights(path)
    model = build_model(config)
    model.load_state_dict(state)
    model.eval()
    model.model_name, model.weights_sha256 = name, ""
    return model


def _run(model, x: np.ndarray):
    import torch
    with torch.inference_mode():
        return model(torch.from_numpy(np.ascontiguousarray(x, np.float32))[None])[0].numpy()


def enhance_raw(model, x: np.ndarray) -> np.ndarray:
    """`[T]` → `[T]`: the network's own output (enhancers return `[1, T]`, time-aligned)."""
    return _run(model, x)[..., : len(x)].astype(np.float32)


def enhance(model, x: np.ndarray) -> np.ndarray:
    """`[T]` → `[T]` as `audioe2e enhance` gives it: with the model's default noise floor
    (`model.default_atten_lim_db`, set from its manifest entry when loaded: the input mixed back
    that many dB down, as the CLI's streamer does on the same time-aligned samples)."""
    y = enhance_raw(model, x)
    lim = getattr(model, "default_atten_lim_db", None)
    return y if lim is None else mix_back(y, np.asarray(x, np.float32), floor_gain(lim)).astype(np.float32)


def separate(model, x: np.ndarray) -> np.ndarray:
    """`[T]` → `[S, T]`."""
    return _run(model, x)[:, : len(x)].astype(np.float32)


def codec_roundtrips(codec, x: np.ndarray, modes) -> dict:
    """Encode `[T]` at the model rate once with every stage, then for each mode `(kbps, vbr)`
    or `(kbps, vbr, postfilter)` (postfilter by default, as `decode`) write an in-memory `.ae2`
    as `encode` does (entropy-coded with the model's priors, 2 s packets; `vbr`: stages per
    frame by `ratecontrol`, else the first n_q stages -- residual VQ codes do not depend on the
    stages after them, so this equals encoding at that n_q), read it back and decode. Returns
    {mode: (decoded [T], file bytes, header bytes, mean stages per frame)}."""
    import torch

    from ..bitstream import Ae2Reader
    from ..codecapi import DEFAULT_PACKET_S, ae2_header, code_writer, frames_per_packet, silence_codes
    with torch.inference_mode():
        enc = codec.make_encoder(codec.n_q, "cpu")
        parts = [enc.feed(torch.from_numpy(np.ascontiguousarray(x, np.float32))[None]), enc.flush()]
        codes = np.concatenate([c.numpy() for c in parts if c.ndim == 2], 1)  # empty flush: 1-D
    fpp = frames_per_packet(codec, DEFAULT_PACKET_S)  # as `encode` writes them
    silence = silence_codes(codec, codec.n_q) if hasattr(codec, "speech_frames") else None
    out = {}
    for mode in modes:
        kbps, vbr, post = (*mode, True)[:3]
        n_q = codec.n_q if vbr else int(codec.bitrate_to_nq(kbps))
        vbr_kbps = kbps if vbr else None
        buf = io.BytesIO()
        writer = code_writer(buf, codec, n_q, ae2_header(codec, n_q, codec.sample_rate, 1, vbr_kbps=vbr_kbps),
                             fpp, vbr_kbps, silence)
        writer.write(codes[:n_q])
        writer.close(len(x))
        buf.seek(0)
        reader = Ae2Reader(buf, lambda h: codec.priors(h["n_q"]))
        with torch.inference_mode():
            dec = codec.make_decoder(n_q, "cpu", postfilter=post)
            ys = [dec.feed(torch.from_numpy(c)) for c in reader] + [dec.flush()]
        y = torch.cat([o.reshape(-1) for o in ys]).numpy()
        out[mode] = (np.pad(y, (0, max(0, len(x) - len(y))))[: len(x)].astype(np.float32),
                            writer.bytes_written, writer.header_bytes, writer.packet_codes.mean_stages if vbr else float(n_q))
    return out
