"""`python -m audioe2e.bench.ablation --run NAME=RUN_DIR ... [--out out/ablation]`: front-end ablation.

Why: the point of a learned transform is only made by twins that differ in nothing else —
same masker, recipe, data, seed and number of steps. This scores each run folder's weights on
the same validation clips (PESQ-WB, STOI, SI-SDR, SI-SDRi) next to its size and cost
(parameters, real multiply-adds per second of audio, counted from the layer shapes), and
writes `OUT/ablation.md` + `OUT/ablation.json`. Enhancement (`enhance` valset) and
separation (`separate` valset, PIT) runs are both accepted; every run must be of one task.
"""
from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

from torch import nn

from ..checkpoint import load_weights
from ..registry import build_model
from ..report import ScriptArgumentParser
from ..train.runstate import model_tensors
from . import ours, tasks
from .run import valset
from .tables import COLUMNS, md_table
from .voices import clip_voice_sources, voice_table

COLUMNS.setdefault("params", ("params", 0))
COLUMNS.setdefault("mmacs", ("MMAC/s", 2))
COLUMNS.setdefault("step", ("steps", 0))
COLUMNS.setdefault("clips", ("clips", 0))


def transform_macs(module: nn.Module, n: int) -> float:
    """Real multiply-adds of one analysis or synthesis transform of an n-point frame.

    Learned butterfly: log2 n stages × n/2 general complex 2×2 blocks (4 complex = 16 real
    MACs each). Dense: the n × (n + 2) real matrix. Fixed FFT: a radix-2 complex FFT,
    log2 n stages × n/2 butterflies × one complex multiply (4 real MACs) — an upper bound
    for the real-input FFT that torch actually runs."""
    from ..frontends.butterfly import ButterflyIRFFT, ButterflyRFFT
    from ..nets.tiny import DenseDFT, FixedFFT
    if isinstance(module, (ButterflyRFFT, ButterflyIRFFT)):
        return float(module.fly.multiply_adds())
    if isinstance(module, DenseDFT):
        return float(module.weight.numel())
    if isinstance(module, FixedFFT):
        return 4.0 * (n // 2) * math.log2(n)
    raise TypeError(f"no MAC count for {type(module).__name__}")


def tiny_macs_per_second(model) -> float:
    """Transforms + mask network (input layer, GRU gates, output layer, deep-filter head and
    its complex taps) per frame × frames/s; element-wise work (windows, mask, compression)
    is left out for all twins alike."""
    n, hop = model.n, model.hop
    per_frame = transform_macs(model.analysis, n) + transform_macs(model.synthesis, n)
    per_frame += model.inp.weight.numel() + model.out.weight.numel()
    per_frame += sum(p.numel() for name, p in model.gru.named_parameters() if name.startswith("weight"))
    if getattr(model, "df", 0):  # head + one complex multiply (4 real MACs) per tap and bin
        per_frame += model.df_out.weight.numel() + 4 * model.df * model.df_order
    return per_frame * model.sample_rate / hop


def layer_macs_per_second(model) -> float:
    """Multiply-adds of every Conv1d, ConvTranspose1d and Linear layer in one forward pass
    over 1 s of audio, counted from the shapes they actually see (forward hooks), so a
    convolutional masker at any hop is counted without a per-architecture formula.
    Element-wise work (norms, activations, masks) is left out for all twins alike; a fixed
    STFT front-end is counted as the convolution it runs here (an FFT would cost less)."""
    import torch
    total = [0.0]

    def conv(mod, inp, out):
        total[0] += out.numel() * mod.in_channels // mod.groups * mod.kernel_size[0]

    def deconv(mod, inp, out):
        total[0] += inp[0].numel() * mod.out_channels // mod.groups * mod.kernel_size[0]

    def linear(mod, inp, out):
        total[0] += out.numel() * mod.in_features

    hooks = []
    for m in model.modules():
        fn = conv if type(m) is nn.Conv1d else deconv if type(m) is nn.ConvTranspose1d else \
            linear if type(m) is nn.Linear else None
        if fn is not None:
            hooks.append(m.register_forward_hook(fn))
    try:
        with torch.no_grad():
            model(torch.zeros(1, model.sample_rate))
    finally:
        for h in hooks:
            h.remove()
    return total[0]


def macs_per_second(model) -> float | None:
    """Multiply-adds per second of 16 kHz audio: the tiny enhancer by formula (its
    transforms are not layers), conv maskers by counting their layers."""
    if hasattr(model, "gru") and hasattr(model, "analysis"):
        return tiny_macs_per_second(model)
    if hasattr(model, "frontend"):
        return layer_macs_per_second(model)
    return None


def load_run(path: Path, which: str):
    """(model in eval mode, step) from `RUN/{which}.safetensors` or a weights file."""
    f = path / f"{which}.safetensors" if path.is_dir() else path
    if not f.is_file():
        raise FileNotFoundError(f"{f} not found")
    state, config, meta = load_weights(f)
    model = build_model(config)
    model.load_state_dict(model_tensors(state))
    model.eval()
    return model, meta.get("step")


def evaluate(runs: dict[str, Path], which: str, corpus: Path, limit: int | None, jobs: int, log) -> dict:
    loaded = {name: load_run(p, which) for name, p in runs.items()}
    task_names = {m.task for m, _ in loaded.values()}
    if len(task_names) != 1:
        raise ValueError(f"runs mix tasks: {sorted(task_names)}")
    task = task_names.pop()
    enh = task == "enhance"
    d = valset(corpus / "valsets", corpus, "enhance" if enh else "separate")
    items = tasks.load_items(d, ("input", "target") if enh else ("input", "s1", "s2"), limit)
    if enh:
        items = [dict(it, mets=["pesq_wb", "stoi", "si_sdr", "si_sdri"]) for it in items]
    run_fn, eval_fn = (ours.enhance, tasks.eval_enhance) if enh else (ours.separate, tasks.eval_separate)
    rows = []
    for name, (model, step) in loaded.items():
        row = tasks.run_system(name, lambda m=model: (lambda it: run_fn(m, it["input"])), items, eval_fn, log, jobs)
        macs = macs_per_second(model)
        row.update(params=sum(p.numel() for p in model.parameters()), step=step,
                   mmacs=None if macs is None else macs / 1e6, run=str(runs[name]))
        rows.append(row)
    return {"task": task, "n": len(items), "which": which, "rows": rows,
            "voices": clip_voice_sources([it.get("speaker") for it in items], corpus)}


def metric_columns(task: str) -> list[str]:
    return ["pesq_wb", "stoi", "si_sdr", "si_sdri"] if task == "enhance" else ["si_sdr", "si_sdri"]


def paired_differences(rows: list[dict], metrics: list[str]) -> list[dict]:
    """Each run minus the first, clip by clip: mean difference ± its standard error.

    Why: between clips PESQ-WB spreads by ±0.8 (standard deviation), which buries a +0.03 change in the two means'
    own error bars, but the same clip through two models differs far less; the paired
    standard error says whether a difference is more than this draw's noise. Clips where
    either score is missing (PESQ finds no utterance) are left out of that metric."""
    if not rows or rows[0].get("status", "ok") != "ok":
        return []
    base, out = rows[0], []
    for r in rows[1:]:
        if r.get("status", "ok") != "ok":
            continue
        d = {"system": f"{r['system']} − {base['system']}"}
        for m in metrics:
            diffs = [a[m] - b[m] for a, b in zip(r["clips"], base["clips"])
                     if a.get(m) is not None and b.get(m) is not None and math.isfinite(a[m]) and math.isfinite(b[m])]
            if len(diffs) < 2:
                continue
            mean, se = statistics.fmean(diffs), statistics.stdev(diffs) / math.sqrt(len(diffs))
            places = COLUMNS.get(m, (m, 2))[1] + 1  # a digit finer than the table's means
            d[m] = f"{mean:+.{places}f} ± {se:.{places}f}"
        d["clips"] = len(r["clips"])
        out.append(d)
    return out


def to_markdown(res: dict) -> str:
    mets = metric_columns(res["task"])
    md = md_table(res["rows"], ["step", "params", "mmacs"] + mets,
                  title=f"Front-end ablation: {res['n']} {res['task']} validation clips, "
                        f"{res['which']} checkpoint of each run")
    diffs = paired_differences(res["rows"], mets)
    if diffs:
        md += "\n" + md_table(diffs, mets + ["clips"], title="Paired differences to the first run: mean ± standard "
                                                        "error over the same clips")
    voices = voice_table(res, f"{COLUMNS.get(mets[0], (mets[0], 2))[0]} by speech source of the clip (then "
                              "each run minus the first, paired)", mets[0])
    return md + ("\n" + voices if voices else "")


def main(argv=None) -> int:
    ap = ScriptArgumentParser(prog="python -m audioe2e.bench.ablation", description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", action="append", required=True, metavar="NAME=RUN_DIR",
                    help="A twin: display name = run folder (or weights file). Repeat.")
    ap.add_argument("--which", default="last", choices=("last", "best"), help="Checkpoint of each run folder.")
    ap.add_argument("--corpus", default="corpus", type=Path)
    ap.add_argument("--limit", type=int, default=None, help="First N validation clips.")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", default="out/ablation", type=Path)
    a = ap.parse_args(argv)
    runs = {}
    for spec in a.run:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            ap.error(f"--run wants NAME=RUN_DIR, got {spec!r}")
        runs[name] = Path(path)
    try:
        res = evaluate(runs, a.which, a.corpus, a.limit, a.jobs, lambda m: print(m, file=sys.stderr, flush=True))
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    a.out.mkdir(parents=True, exist_ok=True)
    md = to_markdown(res)
    (a.out / "ablation.md").write_text(md)
    (a.out / "ablation.json").write_text(json.dumps(res, indent=1, default=float) + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
