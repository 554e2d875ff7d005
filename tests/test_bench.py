"""Bench plumbing that decides what is measured (the numbers themselves come from `make bench`)."""
from audioe2e.bench.tasks import with_mets


def test_dnsmos_only_for_the_systems_asked_for():
    items = [{"id": "0"}, {"id": "1"}]
    mets = ["pesq_wb", "dnsmos"]
    assert all(it["mets"] == mets for it in with_mets(items, "Opus 6 kbit/s", mets, ("Opus 6",)))
    assert all(it["mets"] == ["pesq_wb"] for it in with_mets(items, "Opus 12 kbit/s", mets, ("Opus 6",)))
    assert all(it["mets"] == mets for it in with_mets(items, "anything", mets))  # no filter: all
    assert "mets" not in items[0]  # the caller's items are left as they were


def test_layer_mac_count_matches_hand_count():
    """The separator twins' MMAC/s come from hooks on their layers: check the count on a
    net whose multiply-adds are known (stride-4 conv, 1×1 conv, transposed conv back)."""
    import torch
    from torch import nn

    from audioe2e.bench.ablation import layer_macs_per_second

    class Net(nn.Module):
        sample_rate = 800

        def __init__(self):
            super().__init__()
            self.enc = nn.Conv1d(1, 4, 8, stride=4)
            self.mix = nn.Conv1d(4, 6, 1)
            self.dec = nn.ConvTranspose1d(6, 1, 8, stride=4)

        def forward(self, x):
            return self.dec(self.mix(self.enc(x.unsqueeze(1))))

    frames = (800 - 8) // 4 + 1  # 199
    expected = frames * 4 * 8 + frames * 6 * 4 + frames * 6 * 8
    net = Net()
    assert layer_macs_per_second(net) == expected
    assert not any(m._forward_hooks for m in net.modules())  # hooks removed again


def test_learning_curves_compare_twins_only_on_one_valset(tmp_path):
    """Equal-step comparison of two runs: validation rows are attributed to the valset they
    were measured on (log notes of rewritten valsets), and only shared steps are compared."""
    import json

    from audioe2e.bench import curves
    from audioe2e.checkpoint import save_weights

    def run(name, rows, val_id):
        d = tmp_path / name
        d.mkdir()
        (d / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        save_weights(d / "last.safetensors", {"w": __import__("torch").zeros(1)}, {}, {"val_id": val_id})
        return d

    v = lambda step, x: {"step": step, "val": {"si_sdri": x}}  # noqa: E731
    a = run("a", [v(500, 9.0), {"note": "corpus grew; valsets rewritten from the final val split"},
                  v(1000, 1.0), v(1500, 2.0), v(2000, 3.0),
                  {"note": "valsets rewritten (AAA -> BBB: corpus rebuilt); resumed, best reset"},
                  v(2500, 7.0)], "BBB")
    b = run("b", [v(500, 0.5), v(1000, 0.5), v(2000, 2.0), v(2500, 2.5)], "AAA")
    res = curves.compare({"a": a, "b": b}, "si_sdri")
    assert res["valset"] == "AAA" and res["steps"] == [1000, 2000]  # 500: other valset; 2500: BBB
    assert [r["a"] - r["b"] for r in res["rows"]] == [0.5, 1.0]
    assert "| 2000 | 3.00 | 2.00 | +1.00 |" in curves.to_markdown(res, ["a", "b"])
    assert curves.main(["--run", f"a={a}", "--run", f"x={tmp_path / 'nope'}"]) == 2
    one = curves.to_markdown(curves.compare({"b": b}, "si_sdri"), ["b"])
    assert "| step | b |" in one and "| 2500 | 2.50 |" in one  # no difference column for one run
    (b / "log.jsonl").write_text("{not json\n")
    assert curves.main(["--run", f"a={a}", "--run", f"b={b}"]) == 2  # one error line, no traceback


def test_refresh_replaces_only_the_tables_under_matching_headings(tmp_path):
    from audioe2e.bench.refresh import main

    results = tmp_path / "results.md"
    results.write_text("### 1. Enhancement: 2 clips\n\n| system | PESQ |\n|---|---:|\n| new | 2.00 |\n\n"
                       "### 4. Speed\n\n| model | RTF |\n|---|---:|\n| tiny | 0.004 |\n\n"
                       "Bench time: 408 s wall, 552 s CPU.\n")
    card = tmp_path / "card.md"
    card.write_text("intro\n\nBench time: 268 s wall, 372 s CPU.\n\n"
                    "### Bench: 1. Enhancement: 2 clips\n\nsome prose\n\n"
                    "| system | PESQ |\n|---|---:|\n| old | 1.00 |\n| older | 0.90 |\n\nafter\n\n"
                    "#### Other table\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    assert main([str(results), str(card)]) == 0
    text = card.read_text()
    assert "| new | 2.00 |" in text and "old" not in text
    assert "some prose" in text and "after" in text and "| 1 | 2 |" in text
    assert "Bench time: 408 s wall, 552 s CPU." in text and "268 s" not in text
    # a run of fewer sections than a target's bench time names leaves that line alone
    whole = "Bench time: 460 s wall, 697 s CPU (codec 72 s, speed 169 s)."
    card.write_text(f"{whole}\n")
    results.write_text(results.read_text().replace("552 s CPU.", "552 s CPU (codec 70 s)."))
    assert main([str(results), str(card)]) == 0 and card.read_text() == f"{whole}\n"
    results.write_text(results.read_text().replace("(codec 70 s)", "(codec 70 s, speed 160 s, enhance 5 s)"))
    assert main([str(results), str(card)]) == 0 and "speed 160 s" in card.read_text()
    assert main([str(tmp_path / "missing.md"), str(card)]) == 2


def test_level_section_scales_the_input_to_each_level(tmp_path, monkeypatch):
    """The input-level table feeds every system the same clips at each mixture RMS, and the
    unprocessed row scores 0 dB SI-SDRi at every level (SI-SDR ignores the level)."""
    import json

    import numpy as np
    import soundfile as sf

    from audioe2e.bench import tasks

    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    for sub in ("input", "target"):
        (tmp_path / sub).mkdir()
    for i in range(2):
        clean = (0.1 * np.sin(2 * np.pi * 200 * (i + 1) * t)).astype(np.float32)
        sf.write(tmp_path / "target" / f"{i}.wav", clean, 16000, subtype="FLOAT")
        sf.write(tmp_path / "input" / f"{i}.wav", clean + 0.03 * rng.standard_normal(16000).astype(np.float32),
                 16000, subtype="FLOAT")
    (tmp_path / "meta.jsonl").write_text("".join(json.dumps({"id": str(i), "snr_db": 10.0}) + "\n" for i in range(2)))
    seen = []

    def probe(x):
        seen.append(20 * np.log10(np.sqrt(np.mean(x ** 2))))
        return x
    monkeypatch.setattr(tasks.peers, "rnnoise", lambda x, rate: probe(x))
    res = tasks.levels(tmp_path, log=lambda m: None)
    assert res["levels"] == list(tasks.LEVELS_DB)
    np.testing.assert_allclose(seen, np.repeat(tasks.LEVELS_DB, 2), atol=1e-3)
    rows = {r["system"]: r for r in res["rows"]}
    noisy = rows["noisy input (no processing)"]
    assert all(abs(noisy[f"si_sdri {v}"]) < 1e-6 for v in tasks.LEVELS_DB)
    assert {r["status"] for r in res["rows"]} == {"ok"}  # the shipped enhancers ran at every level


def test_separation_level_section_runs_both_separators_at_each_level(tmp_path, monkeypatch):
    """Both shipped separators see each mixture at every level of LEVELS_DB and are scored
    against the unscaled sources (PIT SI-SDRi ignores the level)."""
    import json

    import numpy as np
    import soundfile as sf

    from audioe2e.bench import ours, tasks

    t = np.arange(16000) / 16000
    for sub in ("input", "s1", "s2"):
        (tmp_path / sub).mkdir()
    a = (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    b = (0.1 * np.sign(np.sin(2 * np.pi * 3 * t)) * np.sin(2 * np.pi * 1300 * t)).astype(np.float32)
    for name, x in (("s1", a), ("s2", b), ("input", a + b)):
        sf.write(tmp_path / name / "0.wav", x, 16000, subtype="FLOAT")
    (tmp_path / "meta.jsonl").write_text(json.dumps({"id": "0", "pair": "FM"}) + "\n")
    seen = []
    real = ours.separate

    def probe(model, x):
        seen.append(20 * np.log10(np.sqrt(np.mean(x ** 2))))
        return real(model, x)
    monkeypatch.setattr(ours, "separate", probe)
    res = tasks.separate_levels(tmp_path, log=lambda m: None)
    np.testing.assert_allclose(seen, np.tile(tasks.LEVELS_DB, 2), atol=1e-3)
    assert [r["status"] for r in res["rows"]] == ["ok", "ok"] and res["n"] == 1
    assert all(np.isfinite(r[f"si_sdri {v}"]) for r in res["rows"] for v in tasks.LEVELS_DB)


def test_results_name_the_valsets_and_models_they_measured(tmp_path, monkeypatch):
    """Valsets are rebuilt per machine and AUDIOE2E_MODELS can swap the weights, so a results
    file must say which valset (fingerprint of its meta file) and which models folder it used."""
    import hashlib
    import json

    from audioe2e.bench import run

    meta = tmp_path / "valsets" / "enhance" / "meta.jsonl"
    meta.parent.mkdir(parents=True)
    meta.write_text('{"id": "0"}\n')
    import numpy as np
    import soundfile as sf
    clip = np.array([[0.25], [-0.5], [0.0]], np.float32)
    sf.write(meta.parent / "clip.wav", clip, 16000, subtype="FLOAT")
    monkeypatch.setenv("AUDIOE2E_MODELS", str(tmp_path / "weights"))
    # No separate valset and an empty corpus: the section is skipped, the header still written.
    run.main(["--out", str(tmp_path / "out"), "--valsets", str(tmp_path / "valsets"),
              "--corpus", str(tmp_path / "corpus"), "--sections", "separate"])
    want = hashlib.sha256(meta.read_bytes()).hexdigest()[:16]
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    audio = hashlib.sha256(b"clip.wav\x0016000 (3, 1)\x00" + clip.tobytes()).hexdigest()[:16]
    assert res["meta"]["valset_ids"] == {"enhance": want}
    assert res["meta"]["valset_audio_ids"] == {"enhance": audio}
    assert res["meta"]["models"] == str(tmp_path / "weights")
    head = (tmp_path / "out" / "results.md").read_text().splitlines()[3]
    assert head == f"valset fingerprints (meta/audio): enhance {want}/{audio}; models {tmp_path / 'weights'}"


def test_valset_audio_fingerprint_changes_with_the_audio_not_the_meta(tmp_path):
    """Two machines can write the same meta file with different audio (the separation valset's
    meta holds no audio-derived field); the audio fingerprint must tell them apart, and must
    not tell apart two writes of the same audio (float WAVs carry a write time stamp)."""
    import time

    import numpy as np
    import soundfile as sf

    from audioe2e.train.valsets import audio_id, folder_id

    d = tmp_path / "v"
    (d / "s1").mkdir(parents=True)
    (d / "meta.jsonl").write_text('{"id": "0"}\n')
    assert audio_id(d) == ""
    x = np.linspace(-0.5, 0.5, 1600, dtype=np.float32)
    sf.write(d / "s1" / "0.wav", x, 16000, subtype="FLOAT")
    first, meta_first = audio_id(d), folder_id(d)
    time.sleep(1.1)
    sf.write(d / "s1" / "0.wav", x, 16000, subtype="FLOAT")
    assert audio_id(d) == first
    x[800] += 1e-3
    sf.write(d / "s1" / "0.wav", x, 16000, subtype="FLOAT")
    assert audio_id(d) != first and folder_id(d) == meta_first


def test_dev_script_usage_errors_are_one_line(capsys):
    """`make bench` and the ablation/draw scripts: a bad option is one stderr line, exit 2."""
    import pytest

    from audioe2e.bench import ablation, run
    from audioe2e.train import valsets

    for main, argv, says in [(run.main, ["--sections", "enhance,nope"], "unknown section(s): nope"),
                             (ablation.main, ["--run", "no-equals-sign"], "--run wants NAME=RUN_DIR"),
                             (valsets.main, ["--out", "x", "--bogus"], "unrecognized arguments: --bogus")]:
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1 and says in err and err.startswith("error: ")


def test_ablation_pairs_each_run_with_the_first_clip_by_clip():
    """The paired table: mean of per-clip differences ± their standard error; a clip without a
    score (NaN PESQ) leaves only that metric's pair out; a failed run gets no row."""
    from audioe2e.bench.ablation import paired_differences

    clips = lambda *v: [{"pesq_wb": p, "si_sdr": 10.0} for p in v]  # noqa: E731
    rows = [{"system": "a", "clips": clips(1.0, 2.0, 3.0, 4.0)},
            {"system": "b", "clips": clips(1.1, 2.3, float("nan"), 4.2)},
            {"system": "c", "status": "failed: boom"}]
    (d,) = paired_differences(rows, ["pesq_wb", "si_sdr"])
    # differences 0.1, 0.3, 0.2: mean 0.2, sd 0.1, se 0.1 / sqrt(3)
    assert d["system"] == "b − a" and d["pesq_wb"] == "+0.200 ± 0.058" and d["clips"] == 4
    assert d["si_sdr"] == "+0.000 ± 0.000"


def test_ablation_splits_scores_by_the_speech_source_of_each_clip():
    """Per-source means of each run and paired per-source differences to the first run; a
    source with one clip gets a mean but no standard error; the last row counts clips."""
    from audioe2e.bench.voices import by_voice_source

    clips = lambda *v: [{"pesq_wb": p} for p in v]  # noqa: E731
    res = {"voices": ["real", "synth", "real", None],
           "rows": [{"system": "a", "clips": clips(2.0, 1.0, 3.0, 9.0)},
                    {"system": "b", "clips": clips(2.5, 1.5, 3.1, 0.0)}]}
    a, b, diff, counts = by_voice_source(res)
    assert a == {"system": "a", "real": "2.50", "synth": "1.00"}
    assert b == {"system": "b", "real": "2.80", "synth": "1.50"}
    # real: differences 0.5 and 0.1: mean 0.3, sd 0.283, se 0.2; synth: one clip, no error bar
    assert diff == {"system": "b − a", "real": "+0.300 ± 0.200", "synth": "–"}
    assert counts == {"system": "clips", "real": "2", "synth": "1"}
    assert by_voice_source({"voices": [None, None], "rows": res["rows"]}) == []
    # against a named base, and only the runs asked for
    c = {"system": "c", "clips": clips(2.0, 2.0, 2.0, 2.0)}
    rows = by_voice_source({"voices": res["voices"], "rows": res["rows"] + [c]}, base="b", diff=["a"])
    assert [r["system"] for r in rows] == ["a", "b", "c", "a − b", "clips"]
    assert rows[3]["real"] == "-0.300 ± 0.200"


def test_bench_enhancement_table_by_speech_source_pairs_with_rnnoise():
    """Table 1d: per-source means of every system and audioe2e minus RNNoise; without an
    RNNoise row the base is the first system and the title says so."""
    from audioe2e.bench.run import _enhance_md

    def row(name, *p):
        return {"system": name, "status": "ok", "n": len(p), "pesq_wb": sum(p) / len(p),
                "clips": [{"pesq_wb": v} for v in p]}
    res = {"n": 4, "metrics": ["pesq_wb"], "snrs": [], "voices": ["june", "june", "espeak", "espeak"],
           "rows": [row("noisy input (no processing)", 1.0, 1.2, 1.0, 1.0),
                    row("audioe2e enhancer-tiny", 1.5, 1.7, 2.0, 2.4),
                    row("RNNoise (pyrnnoise)", 1.6, 1.8, 1.2, 1.4)]}
    md = _enhance_md(res)
    assert "1d. Enhancement: PESQ-WB by speech source" in md and "minus RNNoise (pyrnnoise)" in md
    # columns in name order: espeak (+0.8, +1.0), june (−0.1, −0.1)
    assert "| audioe2e enhancer-tiny − RNNoise (pyrnnoise) | +0.900 ± 0.100 | -0.100 ± 0.000 |" in md
    assert "noisy input (no processing) − " not in md
    res["rows"][2]["status"] = "not available: pyrnnoise not installed"
    assert "minus noisy input (no processing)" in _enhance_md(res)
