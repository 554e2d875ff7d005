"""`python -m audioe2e.bench.run [--out bench_results] [--quick] [--dnsmos]`: the whole bench.

One run measures audioe2e and its peers side by side on the fixed validation sets
(`CORPUS/valsets/{enhance,separate}`, written by `audioe2e.train.valsets`) and the speed of
the shipped models, and writes `OUT/results.md` (also printed on stdout) and
`OUT/results.json` (every number, per-clip values included). Progress goes to stderr.

Flags: `--quick` skips the 10-minute speed runs; `--dnsmos` adds DNSMOS OVRL (slow: ~50 s
start-up, then 2–4 s per clip and system on one busy core; `--dnsmos-systems A,B` limits it to
systems whose name contains A or B); `--limit N` uses the first N clips of each set;
`--codec-clips N` clips per codec condition (default 24; 0 = all); `--jobs N` computes the
metrics in N processes; `--sections` picks any of enhance,levels,separate,separate-levels,codec,speed
(levels / separate-levels: the enhancement clips / separation mixtures at input levels from −60
to −20 dBFS). On 2 cores without DNSMOS and with --quick, expect ~10 min for the 48-clip sets.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

from ..report import ScriptArgumentParser
from . import tasks
from .tables import COLUMNS, md_table
from .voices import clip_voice_sources, voice_table

SECTIONS = ("enhance", "levels", "separate", "separate-levels", "codec", "speed")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def valset(root: Path, corpus: Path, task: str) -> Path:
    """The valset folder, written from the corpus on first use if missing."""
    d = root / task
    if not (d / "meta.jsonl").is_file():
        from ..train.valsets import write_valset
        log(f"{d} missing: writing it from {corpus} (once)")
        d = write_valset(corpus, task)
    return d


def _enhance_md(res: dict) -> str:
    cols = res["metrics"][:]
    if "dnsmos" in cols:
        cols[cols.index("dnsmos")] = "dnsmos_ovrl"
    out = md_table(res["rows"], cols + ["rtf"],
                   title=f"1. Enhancement: {res['n']} clips, noisy input vs clean target")
    for r in res["rows"]:
        r.update({f"snr {k}": v for k, v in r.get("si_sdri_by_snr", {}).items()})
    snr_cols = [f"snr {s:g}" for s in res["snrs"]]
    for c in snr_cols:
        COLUMNS.setdefault(c, (f"{c[4:]} dB", 2))
    out += "\n" + md_table(res["rows"], snr_cols, title="1b. Enhancement: SI-SDRi (dB) by input SNR")
    for r in res["rows"]:
        for c in snr_cols:
            r.pop(c, None)
    ok = [r["system"] for r in res["rows"] if r.get("status", "ok") == "ok"]
    base = tasks.RNNOISE if tasks.RNNOISE in ok else (ok[0] if ok else None)
    voices = voice_table(res, f"1d. Enhancement: PESQ-WB by speech source of the clip; audioe2e minus {base}, "
                              "paired per clip (mean ± standard error)", "pesq_wb", base,
                         [s for s in ok if s.startswith("audioe2e")])
    return out + ("\n" + voices if voices else "")


def _levels_md(res: dict, keys=(("pesq_wb", "PESQ-WB"), ("si_sdri", "SI-SDRi (dB)")),
               title="1c. Enhancement by input level (mixture RMS)", what="clips") -> str:
    out = ""
    for key, name in keys:
        cols = [f"{key} {v}" for v in res["levels"]]
        for c, v in zip(cols, res["levels"]):
            COLUMNS.setdefault(c, (f"{v} dBFS", 2))
        out += md_table(res["rows"], cols, title=f"{title}: {name}, {res['n']} {what}") + "\n"
    return out


def _separate_md(res: dict) -> str:
    pairs = list(res["pairs"])
    for p in pairs:
        COLUMNS.setdefault(f"si_sdri_{p}", (f"SI-SDRi {p} ({res['pairs'][p]})", 2))
    return md_table(res["rows"], ["si_sdri", "si_sdr"] + [f"si_sdri_{p}" for p in pairs] + ["rtf"],
                    title=f"2. Separation: {res['n']} two-speaker mixtures, PIT, by gender pair")


def _codec_md(res: dict) -> str:
    cols = ["kbps_file", "kbps_stream"] + [("dnsmos_ovrl" if m == "dnsmos" else m) for m in res["metrics"]]
    out = ""
    for cond, title in (("clean", "clean input"), ("noisy", "noisy input (SNR 0–15 dB)")):
        if cond in res:
            out += md_table(res[cond]["rows"], cols,
                            title=f"3. Codec on {title}: {res[cond]['n']} clips, "
                                  "scored against the clean reference") + "\n"
    return out


def _speed_md(rows: list[dict]) -> str:
    return md_table(rows, ["threads", "input_s", "rtf", "rtf_net", "startup_s", "peak_rss_mb"],
                    first="model", title="4. Speed: the CLI in a subprocess, generated input")


NOTES = """
Notes. PESQ-WB: ITU-T P.862.2 at 16 kHz; PESQ-NB: P.862 after resampling to 8 kHz; STOI: pystoi;
SI-SDR(i): scale-invariant SDR (improvement over the unprocessed input), dB; separation uses the
best speaker permutation (PIT). Oracle masks: STFT 512/128 Hann from the known clean speech and
noise (IRM: sqrt power ratio; IBM: 0 dB local criterion), upper bounds for STFT maskers. RTF in
tables 1–3: in-process processing time / audio time (whole 4 s clips; audioe2e models use all
torch threads, peers their own defaults), for orientation only; table 4 is the speed measurement.
Codec bitrates: kbit/s (file) from the whole encoded file (container and headers included: on 4 s
clips Ogg's and .ae2's headers weigh ~1.5 and ~0.7 kbit/s); kbit/s (stream) without the file
headers (packets and page framing included). Codec outputs are aligned to the input within ±8
samples before scoring (Codec 2's fixed 16 ms delay is removed first).
"""


def main(argv=None) -> int:
    ap = ScriptArgumentParser(prog="python -m audioe2e.bench.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="bench_results", type=Path, help="Output folder.")
    ap.add_argument("--quick", action="store_true", help="Skip the 10-minute speed runs.")
    ap.add_argument("--dnsmos", action="store_true", help="Add DNSMOS OVRL (slow).")
    ap.add_argument("--dnsmos-systems", default="", metavar="A,B",
                    help="With --dnsmos: only systems whose name contains one of these (comma list).")
    ap.add_argument("--limit", type=int, default=None, help="First N clips of each valset.")
    ap.add_argument("--codec-clips", type=int, default=24,
                    help="Clips per codec condition (0: all; the codec section is the slowest).")
    ap.add_argument("--jobs", type=int, default=1, help="Processes for the metrics (PESQ is slow).")
    ap.add_argument("--corpus", default="corpus", type=Path, help="Corpus root.")
    ap.add_argument("--valsets", default=None, type=Path, help="Default: CORPUS/valsets.")
    ap.add_argument("--sections", default=",".join(SECTIONS), help="Comma list of " + ",".join(SECTIONS))
    ap.add_argument("--speed-repeats", type=int, default=3, help="Runs per 10 s speed setting (median).")
    a = ap.parse_args(argv)
    only = tuple(p.strip() for p in a.dnsmos_systems.split(",") if p.strip())
    sections = [s.strip() for s in a.sections.split(",") if s.strip()]
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        ap.error(f"unknown section(s): {', '.join(bad)}")
    vroot = a.valsets or a.corpus / "valsets"
    t0 = time.perf_counter()
    import torch
    res: dict = {"meta": {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.platform(),
                          "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                          "torch": torch.__version__, "valsets": str(vroot), "quick": a.quick,
                          "dnsmos": a.dnsmos, "dnsmos_systems": list(only), "limit": a.limit, "codec_clips": a.codec_clips, "peers": tasks.peers.status()}}
    md = [f"# audioe2e bench\n\n{res['meta']['date']}, {res['meta']['machine']}, {res['meta']['cpus']} CPUs, "
          f"torch {torch.__version__}; valsets {vroot}\n"]
    for s in sections:
        ts = time.perf_counter()
        try:
            if s == "enhance":
                res[s] = tasks.enhance(valset(vroot, a.corpus, "enhance"), a.limit, a.dnsmos, log, a.jobs, only)
                res[s]["voices"] = clip_voice_sources(res[s]["speakers"], a.corpus)
                md.append(_enhance_md(res[s]))
            elif s == "levels":
                res[s] = tasks.levels(valset(vroot, a.corpus, "enhance"), a.limit, log, a.jobs)
                md.append(_levels_md(res[s]))
            elif s == "separate-levels":
                res[s] = tasks.separate_levels(valset(vroot, a.corpus, "separate"), a.limit, log, a.jobs)
                md.append(_levels_md(res[s], (("si_sdri", "SI-SDRi (dB)"),),
                                     "2b. Separation by input level (mixture RMS)", "mixtures"))
            elif s == "separate":
                res[s] = tasks.separate(valset(vroot, a.corpus, "separate"), a.limit, log, a.jobs)
                md.append(_separate_md(res[s]))
            elif s == "codec":
                res[s] = tasks.codec(valset(vroot, a.corpus, "enhance"), a.codec_clips or a.limit, a.dnsmos, log, a.jobs, only)
                md.append(_codec_md(res[s]))
            elif s == "speed":
                from .speed import cli_speed
                log("speed: CLI subprocesses")
                res[s] = cli_speed(durations=(10.0,) if a.quick else (10.0, 600.0),
                                   repeats=a.speed_repeats, log=log)
                md.append(_speed_md(res[s]))
        except Exception as e:  # noqa: BLE001 - a missing valset skips its section only
            msg = f"section {s} skipped: {type(e).__name__}: {e}"
            log(msg)
            res[s] = {"error": msg}
            md.append(f"### {s}\n\n{msg}\n")
        res.setdefault("timing_s", {})[s] = round(time.perf_counter() - ts, 1)
    res["meta"]["total_s"] = round(time.perf_counter() - t0, 1)
    # Which clips and which weights: valsets are rebuilt per machine and may differ (Kokoro's
    # ONNX output depends on the CPU), and AUDIOE2E_MODELS can point the bench at other weights.
    from ..registry import models_dir
    from ..train.valsets import audio_id, folder_id
    ids = {t: i for t in ("enhance", "separate") if (i := folder_id(vroot / t))}
    audio = {t: audio_id(vroot / t) for t in ids}
    res["meta"].update(valset_ids=ids, valset_audio_ids=audio, models=str(models_dir()))
    named = ", ".join(f"{t} {i}/{audio[t] or '-'}" for t, i in ids.items()) or "none"
    md[0] += f"valset fingerprints (meta/audio): {named}; models {res['meta']['models']}\n"
    import resource
    cpu = sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for f in ("ru_utime", "ru_stime"))
    res["meta"]["cpu_s"] = round(cpu, 1)
    md.append(NOTES.strip() + f"\n\nBench time: {res['meta']['total_s']:.0f} s wall, {cpu:.0f} s CPU "
              f"({', '.join(f'{k} {v:.0f} s' for k, v in res['timing_s'].items())}).\n")
    text = "\n".join(md)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "results.md").write_text(text)
    (a.out / "results.json").write_text(json.dumps(res, indent=1, default=str))
    print(text)
    log(f"wrote {a.out / 'results.md'} and {a.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
