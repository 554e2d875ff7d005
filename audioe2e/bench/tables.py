"""Markdown tables for the bench report: numbers rounded per column, missing values as '–'."""
from __future__ import annotations

import math

# Column key → (header, decimals)
COLUMNS = {
    "pesq_wb": ("PESQ-WB", 2), "pesq_nb": ("PESQ-NB", 2), "stoi": ("STOI", 3),
    "estoi": ("eSTOI", 3), "si_sdr": ("SI-SDR dB", 2), "si_sdri": ("SI-SDRi dB", 2),
    "dnsmos_ovrl": ("DNSMOS OVRL", 2), "rtf": ("RTF", 4), "kbps_file": ("kbit/s (file)", 2),
    "kbps_stream": ("kbit/s (stream)", 2), "threads": ("threads", 0), "input_s": ("input s", 0),
    "rtf_net": ("RTF net", 4), "startup_s": ("start-up s", 2), "peak_rss_mb": ("peak RSS MB", 0),
    "wall_s": ("wall s", 2), "n": ("files", 0),
}


def fmt(v, decimals: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, (int, float)):
        return f"{v:.{decimals}f}"
    return str(v)


def md_table(rows: list[dict], cols: list[str], first: str = "system", title: str = "") -> str:
    """`rows`: dicts with key `first` and the `cols` keys; a row with a `status` other than
    'ok' spans its status text into the first metric column."""
    heads = [first] + [COLUMNS.get(c, (c, 2))[0] for c in cols]
    lines = ([f"### {title}", ""] if title else []) + [
        "| " + " | ".join(heads) + " |",
        "|" + "|".join(["---"] + ["---:"] * len(cols)) + "|"]
    for r in rows:
        if r.get("status", "ok") != "ok":
            cells = [str(r.get("status"))] + [""] * (len(cols) - 1)
        else:
            cells = [fmt(r.get(c), COLUMNS.get(c, (c, 2))[1]) for c in cols]
        lines.append("| " + " | ".join([str(r.get(first, ""))] + cells) + " |")
    return "\n".join(lines) + "\n"
