"""Training infrastructure: reproducible mixing, SNR as asked, resume to the same state, export."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audioe2e.checkpoint import load_weights
from audioe2e.train.data import Corpus, Mixer, batch, rms
from audioe2e.train.loop import train
from audioe2e.train.recipes import get_recipe


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    rows = []
    for split in ("train", "val"):
        for s in range(3):
            spk = f"{split}{s}"
            (root / "speech" / spk).mkdir(parents=True)
            for u in range(2):
                t = np.arange(16000) / 16000
                x = sum(np.sin(2 * np.pi * (120 + 40 * s) * k * t) / k for k in range(1, 8)) * 0.1
                p = f"speech/{spk}/{u}.wav"
                sf.write(root / p, x.astype(np.float32), 16000, subtype="PCM_16")
                rows.append(dict(path=p, kind="speech", source="tones", speaker=spk, gender="mf"[s % 2], split=split,
                                 duration=1.0, rate=16000))
        (root / "noise").mkdir(exist_ok=True)
        p = f"noise/{split}.wav"
        sf.write(root / p, (rng.standard_normal(16000) * 0.1).astype(np.float32), 16000, subtype="PCM_16")
        rows.append(dict(path=p, kind="noise", speaker=None, split=split, duration=1.0, rate=16000))
    (root / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return root


def test_codec_batches_pass_clean_input_at_the_recipe_share(corpus):
    """The codec trains on clean → clean as well as noisy → clean examples, in the share its
    recipe sets (codec-stoi-clean: half)."""
    from audioe2e.train.data import CLEAN_SHARE
    assert get_recipe("codec-stoi").clean_share == CLEAN_SHARE == 0.3
    assert get_recipe("codec-stoi-clean").clean_share == 0.5
    c = Corpus(corpus, "train")
    for share, want in ((0.0, 0), (1.0, 16)):
        x, y = batch(Mixer(c, 0.5, clean_share=share), "codec", 16, seed=1, step=2)
        assert sum(torch.equal(a, b) for a, b in zip(x, y)) == want
    x, y = batch(Mixer(c, 0.5, clean_share=0.5), "codec", 64, seed=1, step=2)
    assert 16 < sum(torch.equal(a, b) for a, b in zip(x, y)) < 48


def test_mixing_is_reproducible_from_seed(corpus):
    mixer = Mixer(Corpus(corpus, "train"), 0.5)
    a = batch(mixer, "separate", 2, seed=3, step=7)
    b = batch(mixer, "separate", 2, seed=3, step=7)
    c = batch(mixer, "separate", 2, seed=3, step=8)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[0], c[0])
    assert a[1].shape == (2, 2, 8000)


def test_snr_is_as_asked(corpus):
    mixer = Mixer(Corpus(corpus, "train"), 0.5, augment=False)
    rng = np.random.default_rng(0)
    for snr in (-5.0, 0.0, 12.0):
        noisy, clean = mixer.enhance_pair(rng, snr=snr)
        got = 20 * np.log10(rms(clean) / rms(noisy - clean))
        assert abs(got - snr) < 0.05


def test_mixture_levels_follow_the_range_asked(corpus):
    """The enhancers train on −60…−5 dBFS mixtures so that quiet recordings are in range; the
    default (and the validation sets) stay at −35…−10."""
    rng = np.random.default_rng(0)
    for rng_db, lo, hi in (((-35.0, -10.0), -35, -10), (get_recipe("enhancer-tiny").level_db, -60, -5)):
        mixer = Mixer(Corpus(corpus, "train"), 0.5, augment=False, level_db=rng_db)
        levels = [20 * np.log10(rms(mixer.enhance_pair(rng)[0])) for _ in range(200)]
        assert lo - 0.01 <= min(levels) and max(levels) <= hi + 0.01
        assert min(levels) < lo + 5 and max(levels) > hi - 5  # the whole range is drawn


def train_straight_and_split(recipe, corpus, tmp_path):
    """4 steps in one go, and 2 + 2 with a resume in between, from the same seed → the two
    last checkpoints (tensors, config, meta) after asserting that every tensor is equal."""
    kw = dict(batch=2, seconds=0.5, val_every=1000, log_every=1)
    torch.manual_seed(0)
    train(recipe, corpus, tmp_path / "straight", steps=4, **kw)
    torch.manual_seed(0)
    train(recipe, corpus, tmp_path / "split", steps=2, **kw)
    train(recipe, corpus, tmp_path / "split", steps=4, resume=True, **kw)
    a = load_weights(tmp_path / "straight" / "last.safetensors")
    b = load_weights(tmp_path / "split" / "last.safetensors")
    assert a[2]["step"] == b[2]["step"] == 4
    assert a[0].keys() == b[0].keys()
    for k in a[0]:
        assert torch.allclose(a[0][k], b[0][k], atol=1e-6), k
    return a, b


def test_resume_reaches_the_same_state(corpus, tmp_path):
    train_straight_and_split(get_recipe("enhancer-tiny"), corpus, tmp_path)


def test_a_resume_drops_what_the_stopped_run_logged_after_its_checkpoint(corpus, tmp_path):
    """A run killed between checkpoints has logged steps that its resume trains again: the
    log keeps one line per step and says what it dropped."""
    recipe = get_recipe("enhancer-tiny")
    kw = dict(batch=2, seconds=0.5, val_every=1000, log_every=1)
    run = tmp_path / "r"
    train(recipe, corpus, run, steps=2, **kw)
    log = run / "log.jsonl"
    with open(log, "a") as f:  # what a process killed at step 3, after its last checkpoint, leaves
        f.write(json.dumps({"note": "EMA of the weights dropped from step 2", "step": 2}) + "\n")
        f.write(json.dumps({"loss": 0.0, "step": 3}) + "\n")
        f.write('{"loss": -3.1, "grad_n')  # killed mid-line
    train(recipe, corpus, run, steps=4, resume=True, **kw)
    rows = [json.loads(l) for l in log.read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4]
    notes = [r["note"] for r in rows if "note" in r]
    assert "EMA of the weights dropped from step 2" not in notes
    assert "resumed from the step-2 checkpoint: 3 log lines written after it by the stopped run " \
           "(steps 2–3) dropped" in notes
    train(recipe, corpus, run, steps=5, resume=True, **kw)  # a clean stop: nothing to drop
    assert sum("log lines written after it" in l for l in log.read_text().splitlines()) == 1


def test_refuses_to_overwrite_a_run_without_resume(corpus, tmp_path):
    recipe = get_recipe("enhancer-tiny")
    train(recipe, corpus, tmp_path / "r", steps=1, batch=2, seconds=0.5, val_every=1000)
    with pytest.raises(FileExistsError):
        train(recipe, corpus, tmp_path / "r", steps=2, batch=2, seconds=0.5, val_every=1000)


def test_export_writes_weights_card_notes_and_manifest(tmp_path, monkeypatch):
    """`train export`: the weights load back by sha256, the card's numbers come from the
    run's log (validation history, training notes; a step validated twice because a resume
    replayed it appears once, with its later score), and the hand-kept notes file survives."""
    import json

    from audioe2e.checkpoint import save_weights, sha256_file
    from audioe2e.nets.tiny import TinyConfig, TinyEnhancer
    from audioe2e.train.export import export_run

    run, models = tmp_path / "run", tmp_path / "models"
    run.mkdir()
    models.mkdir()
    m = TinyEnhancer(TinyConfig())
    save_weights(run / "best.safetensors", m.state_dict(), m.config_dict(),
                 {"step": 20, "elapsed": 36.0, "val": {"si_sdr": 9.5, "si_sdri": 2.0, "score": 1.9,
                                                       "score_kind": "pesq_wb", "pesq_wb": 1.9},
                  "recipe": "enhancer-tiny"})
    save_weights(run / "last.safetensors", m.state_dict(), m.config_dict(),
                 {"step": 25, "recipe": "enhancer-tiny", "val_id": "feedc0ffee123456"})
    log = [{"val": {"si_sdr": 9.0, "si_sdri": 1.5, "score": 9.0}, "step": 10},
           {"note": "loss changed at step 15"},
           {"val": {"si_sdr": 9.4, "si_sdri": 1.9, "score": 1.8, "score_kind": "pesq_wb", "pesq_wb": 1.8},
            "step": 20},
           # killed before the next checkpoint, resumed from step 15: steps 15-20 run again
           {"val": {"si_sdr": 9.5, "si_sdri": 2.0, "score": 1.9, "score_kind": "pesq_wb", "pesq_wb": 1.9},
            "step": 20}]
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    (models / "enhancer-tiny.notes.md").write_text("## Bench\n\nmeasured row\n")
    card = export_run(run, "enhancer-tiny", models, corpus=None)
    assert card["step"] == 20 and card["metrics"]["val_si_sdri"] == 2.0
    assert card["metrics"]["val_pesq_wb"] == 1.9 and card["metrics"]["val_score_kind"] == "pesq_wb"
    assert [r["step"] for r in card["val_history"]] == [10, 20]
    assert card["total_steps_trained"] == 25 and card["val_id"] == "feedc0ffee123456"
    md = (models / "enhancer-tiny.md").read_text()
    assert "Valset fingerprint `feedc0ffee123456`" in md
    assert "| 20 | 9.50 | 2.00 | – | 1.90 |" in md and "| 10 | 9.00 | 1.50 | – | – |" in md
    assert "loss changed at step 15" in md and md.rstrip().endswith("measured row")
    man = json.loads((models / "manifest.json").read_text())
    assert man["enhancer-tiny"]["sha256"] == sha256_file(models / "enhancer-tiny.safetensors")
    # the default noise floor is stored with the weights it was chosen for: a re-export
    # without --atten-lim ships none, so retrained weights never inherit another's floor
    from audioe2e.registry import default_atten_lim_db
    monkeypatch.setenv("AUDIOE2E_MODELS", str(models))
    assert "atten_lim_db" not in man["enhancer-tiny"] and default_atten_lim_db("enhancer-tiny") is None
    export_run(run, "enhancer-tiny", models, corpus=None, atten_lim_db=30)
    assert default_atten_lim_db("enhancer-tiny") == 30.0
    export_run(run, "enhancer-tiny", models, corpus=None)
    assert default_atten_lim_db("enhancer-tiny") is None
    for name, lim in (("enhancer-tiny", float("inf")), ("enhancer-tiny", 0.0), ("separator", 30.0)):
        with pytest.raises(ValueError, match="noise floor for an enhancer"):
            export_run(run, name, models, corpus=None, atten_lim_db=lim)


def test_export_of_the_last_checkpoint_carries_its_logged_scores_and_stoi(tmp_path):
    """`--which last`: the checkpoint keeps no scores, so the card takes that step's from the
    log; a run that logged STOI shows it in the card's table, and a warm start is named."""
    import json

    from audioe2e.checkpoint import save_weights
    from audioe2e.nets.tiny import TinyConfig, TinyEnhancer
    from audioe2e.train.export import export_run

    run, models = tmp_path / "run", tmp_path / "models"
    run.mkdir()
    m = TinyEnhancer(TinyConfig())
    save_weights(run / "last.safetensors", m.state_dict(), m.config_dict(), {"step": 30, "recipe": "enhancer-tiny"})
    val = {"si_sdr": 9.0, "si_sdri": 1.5, "score": 0.81, "score_kind": "stoi", "pesq_wb": 1.7, "stoi": 0.81}
    log = [{"note": "warm start from w.safetensors: 5/5 tensors"},
           {"val": {"si_sdr": 8.0, "si_sdri": 0.5, "score": 8.0}, "step": 20},
           {"val": val, "step": 30}]
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    card = export_run(run, "enhancer-tiny", models, corpus=None, which="last")
    assert card["step"] == 30 and card["metrics"]["val_stoi"] == 0.81 and card["metrics"]["val_score_kind"] == "stoi"
    md = (models / "enhancer-tiny.md").read_text()
    assert "| PESQ-WB | STOI |" in md and "| 30 | 9.00 | 1.50 | – | 1.70 | 0.810 | – |" in md
    assert "| 20 | 8.00 | 0.50 | – | – | – | – |" in md
    assert "- warm start from w.safetensors: 5/5 tensors: the steps and hours above count from there" in md
    # a checkpoint between validations has no scores to carry
    save_weights(run / "last.safetensors", m.state_dict(), m.config_dict(), {"step": 35, "recipe": "enhancer-tiny"})
    assert export_run(run, "enhancer-tiny", models, corpus=None, which="last")["metrics"] == {}


def test_train_cli_rejects_bad_warm_start_in_one_line(tmp_path):
    """`train run --init-from` with missing or unrelated weights, or a negative --warmup: one
    line, exit 2, no run folder left behind."""
    import json
    import subprocess
    import sys

    from audioe2e.checkpoint import save_weights
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "manifest.jsonl").write_text(json.dumps({}) + "\n")
    save_weights(tmp_path / "other.safetensors", {"x": torch.zeros(3)}, {"arch": "none"})
    (tmp_path / "garbage.safetensors").write_bytes(b"not a weights file at all")
    for weights in (tmp_path / "missing.safetensors", tmp_path / "other.safetensors", tmp_path / "garbage.safetensors"):
        run = tmp_path / "run"
        p = subprocess.run([sys.executable, "-m", "audioe2e", "train", "run", "enhancer-tiny",
                            "--corpus", str(tmp_path / "corpus"), "--run", str(run),
                            "--init-from", str(weights)], capture_output=True, text=True, timeout=120)
        assert p.returncode == 2, p.stderr
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and weights.name in lines[0]
        assert not run.exists()
    p = subprocess.run([sys.executable, "-m", "audioe2e", "train", "run", "enhancer-tiny", "--corpus",
                        str(tmp_path / "corpus"), "--run", str(run), "--warmup", "-3"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.strip() == "error: --warmup must be 0 or more steps, got -3"
    assert not run.exists()


def test_train_export_cli_errors_are_one_line(tmp_path):
    """`train export` with a missing run, an unknown name or a noise floor for a separator: one
    `error:` line, exit 2, and nothing written to the models folder."""
    import subprocess
    import sys
    models = tmp_path / "models"
    for args, needle in ((["--run", str(tmp_path / "nope"), "--name", "separator"], "nope"),
                         (["--run", str(tmp_path), "--name", "bogus"], "bogus"),
                         (["--run", str(tmp_path), "--name", "separator", "--atten-lim", "30"], "--atten-lim")):
        p = subprocess.run([sys.executable, "-m", "audioe2e", "train", "export", *args, "--models", str(models)],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 2, p.stderr
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]
        assert not models.exists()


def test_ablation_scores_twins_side_by_side(corpus, tmp_path):
    """Twins differing only in the front-end: one row each, same clips, size and cost counted."""
    from audioe2e.bench import ablation
    kw = dict(batch=2, seconds=0.5, val_every=1000, log_every=1)
    for fe in ("fft", "dense"):
        train(get_recipe(f"enhancer-tiny-{fe}"), corpus, tmp_path / fe, steps=2, **kw)
    out = tmp_path / "abl"
    rc = ablation.main(["--run", f"fft={tmp_path / 'fft'}", "--run", f"dense={tmp_path / 'dense'}",
                        "--corpus", str(corpus), "--limit", "2", "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "ablation.json").read_text())
    rows = {r["system"]: r for r in res["rows"]}
    assert set(rows) == {"fft", "dense"} and res["task"] == "enhance"
    assert all(r["status"] == "ok" and r["n"] == 2 and r["step"] == 2 for r in rows.values())
    assert rows["dense"]["params"] > rows["fft"]["params"]
    assert rows["dense"]["mmacs"] > rows["fft"]["mmacs"] > 0
    assert "| dense |" in (out / "ablation.md").read_text()
    # each clip is named by its speaker's source in the corpus manifest (for the per-source table)
    assert res["voices"] == ["tones", "tones"]
    # a missing run folder is one error line and exit 2
    assert ablation.main(["--run", f"x={tmp_path / 'nope'}", "--corpus", str(corpus)]) == 2


def test_resume_notes_a_rewritten_valset_a_new_learning_rate_and_batch(corpus, tmp_path):
    """A resumed run whose valset changed (corpus rebuilt) says so in its log and forgets its
    old best score; a new --lr and a new effective batch (another --batch, or more processes
    under torchrun) are logged: the model card's history must not mix valsets or hide them."""
    from audioe2e.train.valsets import valset_dir
    recipe = get_recipe("enhancer-tiny")
    kw = dict(batch=2, seconds=0.5, val_every=1000, log_every=1)
    run = tmp_path / "r"
    train(recipe, corpus, run, steps=2, **kw)
    meta = valset_dir(corpus, "enhance") / "meta.jsonl"
    saved = meta.read_text()
    try:
        meta.write_text(saved.replace('"id"', '"rebuilt": 1, "id"'))
        train(recipe, corpus, run, steps=3, resume=True, lr=5e-4, **dict(kw, batch=3))
    finally:
        meta.write_text(saved)
    notes = [json.loads(l).get("note", "") for l in (run / "log.jsonl").read_text().splitlines()]
    assert any(n.startswith("valsets rewritten") for n in notes)
    assert any(n.startswith("learning rate 0.001 -> 0.0005 from step 2") for n in notes)
    assert "effective batch 1 x 2 -> 1 x 3 (processes x batch) from step 2" in notes
    assert load_weights(run / "last.safetensors")[2]["best"]["step"] == 3  # only new-valset scores


def test_resume_notes_new_loss_weights_and_a_new_kind_of_best_score(corpus, tmp_path):
    """A checkpoint trained with other loss weights (or before they were recorded) says so
    when resumed, and a best score of another kind (SI-SDR vs PESQ) is not compared with the
    new one: the best is reset and the next validation becomes it."""
    from audioe2e.checkpoint import save_weights
    recipe = get_recipe("enhancer-tiny")
    kw = dict(batch=2, seconds=0.5, val_every=3, log_every=1)
    run = tmp_path / "r"
    train(recipe, corpus, run, steps=2, **kw)
    state, config, meta = load_weights(run / "last.safetensors")
    del meta["loss"]
    meta["best"] = {"si_sdr": 99.0, "si_sdri": 9.0, "score": 99.0, "score_kind": "other", "step": 1}
    save_weights(run / "last.safetensors", state, config, meta)
    train(recipe, corpus, run, steps=3, resume=True, **kw)
    notes = [json.loads(l).get("note", "") for l in (run / "log.jsonl").read_text().splitlines()]
    assert any(n.startswith("loss weights (not recorded) -> ") and n.endswith("from step 2") for n in notes)
    assert any(n.startswith("best checkpoint now chosen by ") and "(was other)" in n for n in notes)
    meta = load_weights(run / "last.safetensors")[2]
    assert meta["best"]["step"] == 3 and meta["loss"] == recipe.extra
    assert not any(n.startswith("training mixture levels") for n in notes)  # recorded: same range
    # resumed again with unchanged weights: no new loss note
    train(recipe, corpus, run, steps=4, resume=True, **kw)
    notes = [json.loads(l).get("note", "") for l in (run / "log.jsonl").read_text().splitlines()]
    assert sum(n.startswith("loss weights") for n in notes) == 1


def test_resume_notes_a_new_training_level_range(corpus, tmp_path):
    """A checkpoint from before the enhancers' wider level range (no `level_db` in its meta:
    the old −35…−10 default) says so when resumed, once, and records the new range."""
    from audioe2e.checkpoint import save_weights
    recipe = get_recipe("enhancer-tiny")
    kw = dict(batch=2, seconds=0.5, val_every=1000, log_every=1)
    run = tmp_path / "r"
    train(recipe, corpus, run, steps=1, **kw)
    state, config, meta = load_weights(run / "last.safetensors")
    assert meta["level_db"] == [-60.0, -5.0]
    del meta["level_db"]
    save_weights(run / "last.safetensors", state, config, meta)
    train(recipe, corpus, run, steps=2, resume=True, **kw)
    train(recipe, corpus, run, steps=3, resume=True, **kw)
    notes = [json.loads(l).get("note", "") for l in (run / "log.jsonl").read_text().splitlines()]
    assert [n for n in notes if n.startswith("training mixture levels")] == [
        "training mixture levels -35…-10 -> -60…-5 dBFS RMS from step 1"]


def test_valset_survives_two_writers(corpus, tmp_path, monkeypatch):
    """Two trainings started together both write the shared enhance valset: the one that
    loses the rename keeps the winner's (identical) set instead of crashing."""
    import shutil
    from pathlib import Path

    from audioe2e.train import valsets
    root = tmp_path / "c"
    shutil.copytree(corpus, root, ignore=shutil.ignore_patterns("valsets"))
    real_rename = Path.rename

    def racing_rename(self, target):
        if Path(target).name == "enhance" and not Path(target).exists():
            shutil.copytree(self, target)  # the other writer finishes first
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", racing_rename)
    out = valsets.write_valset(root, "enhance", n=2, seconds=0.5)
    assert (out / "meta.jsonl").is_file()
    assert [p.name for p in out.parent.iterdir()] == ["enhance"]  # no temp folder left


def test_export_of_a_research_twin_writes_weights_and_card_but_no_manifest_entry(tmp_path):
    """The fixed-STFT separator twin is exported for the bench, never for the CLI."""
    from audioe2e.checkpoint import save_weights
    from audioe2e.registry import build_model
    from audioe2e.train.export import export_run
    run, models = tmp_path / "run", tmp_path / "models"
    run.mkdir()
    m = build_model(dict(get_recipe("separator-stft").config, layers=1, repeats=1))
    save_weights(run / "best.safetensors", m.state_dict(), m.config_dict(),
                 {"step": 5, "elapsed": 1.0, "val": {"si_sdr": 1.0, "si_sdri": 1.0, "score": 1.0},
                  "recipe": "separator-stft"})
    (run / "log.jsonl").write_text(json.dumps({"step": 5, "val": {"si_sdr": 1.0, "si_sdri": 1.0}}) + "\n")
    card = export_run(run, "separator-stft", models, corpus=None)
    assert card["task"] == "separate" and (models / "separator-stft.safetensors").is_file()
    assert (models / "separator-stft.md").is_file() and not (models / "manifest.json").exists()


def _adversarial_codec(warmup=1):
    from dataclasses import replace
    rec = get_recipe("codec-gan")
    return replace(rec, adversarial=dict(rec.adversarial, warmup=warmup, crop_s=0.25, examples=2))


def test_adversarial_resume_reaches_the_same_state_and_never_ships_the_discriminator(corpus, tmp_path):
    """The codec's adversarial fine-tuning resumes bit for bit: generator, discriminator and
    both optimisers; the checkpoint keeps the discriminator apart (`disc.*`) and an export
    carries only the model."""
    from audioe2e.train.export import export_run
    a, _ = train_straight_and_split(_adversarial_codec(), corpus, tmp_path)
    assert any(k.startswith("disc.") for k in a[0]) and any(k.startswith("doptim.") for k in a[0])
    logs = [json.loads(l) for l in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    assert all("d_loss" in r for r in logs if "loss" in r)   # the discriminator trained every step
    assert any("g_adv" in r for r in logs if "loss" in r)    # and the generator saw it after warm-up
    card = export_run(tmp_path / "split", "codec", tmp_path / "models", corpus, "last")
    exported = load_weights(tmp_path / "models" / "codec.safetensors")[0]
    assert card["step"] == 4 and not any(k.startswith(("disc.", "doptim.", "optim.")) for k in exported)


def test_a_plain_run_resumed_adversarially_starts_a_fresh_discriminator_and_says_so(corpus, tmp_path):
    recipe = _adversarial_codec(warmup=2)
    kw = dict(batch=2, seconds=0.5, val_every=1000, log_every=1)
    run = tmp_path / "r"
    train(get_recipe("codec"), corpus, run, steps=2, **kw)
    train(recipe, corpus, run, steps=5, resume=True, **kw)
    logs = [json.loads(l) for l in (run / "log.jsonl").read_text().splitlines()]
    assert any(r.get("note", "").startswith("adversarial training from step 2") for r in logs)
    # warm-up counts from the step it began at: steps 3 and 4 train the discriminator alone
    by_step = {r["step"]: r for r in logs if "loss" in r}
    assert "g_adv" not in by_step[3] and "g_adv" not in by_step[4] and "g_adv" in by_step[5]
    assert load_weights(run / "last.safetensors")[2]["adv_start"] == 2


def _metric_enhancer(warmup=1):
    from dataclasses import replace
    rec = get_recipe("enhancer-gru-df-metric")
    return replace(rec, adversarial=dict(rec.adversarial, warmup=warmup, examples=2))


def test_metric_gan_resumes_bit_for_bit_and_never_ships_the_critic(corpus, tmp_path):
    """The default enhancer's MetricGAN+ fine-tuning: the PESQ critic trains every step (on
    the output and the noisy input), the enhancer gets its term after the critic's warm-up,
    a resume reaches the uninterrupted run's state, and an export carries only the enhancer."""
    from audioe2e.train.export import export_run
    a, _ = train_straight_and_split(_metric_enhancer(), corpus, tmp_path)
    assert any(k.startswith("disc.") for k in a[0]) and any(k.startswith("doptim.") for k in a[0])
    logs = [json.loads(l) for l in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    rows = [r for r in logs if "loss" in r]
    assert all("d_loss" in r and "train_pesq" in r for r in rows)
    assert "g_metric" not in rows[0] and all("g_metric" in r for r in rows[1:])  # warm-up: 1 step
    export_run(tmp_path / "split", "enhancer", tmp_path / "models", None, "last")
    exported = load_weights(tmp_path / "models" / "enhancer.safetensors")[0]
    assert not any(k.startswith(("disc.", "doptim.", "optim.")) for k in exported)


def test_changed_critic_options_are_noted_on_resume(corpus, tmp_path):
    kw = dict(batch=2, seconds=0.5, val_every=1000, log_every=1)
    run = tmp_path / "r"
    train(_metric_enhancer(), corpus, run, steps=1, **kw)
    from dataclasses import replace
    heavier = replace(_metric_enhancer(), adversarial=dict(_metric_enhancer().adversarial, weight=3.0))
    train(heavier, corpus, run, steps=2, resume=True, **kw)
    notes = [json.loads(l).get("note", "") for l in (run / "log.jsonl").read_text().splitlines()]
    assert any(n.startswith("adversarial options") and "'weight': 3.0" in n for n in notes)


def test_the_metric_recipe_without_pesq_stops_before_training_with_one_line(corpus, tmp_path, monkeypatch):
    import audioe2e.train.metric_gan as mg
    from audioe2e.train.loop import TrainSetupError
    monkeypatch.setattr(mg, "available", lambda metric: False)
    with pytest.raises(TrainSetupError, match="the PESQ critic needs the pesq package") as e:
        train(_metric_enhancer(), corpus, tmp_path / "r", steps=1, batch=2, seconds=0.5, val_every=1000)
    assert "\n" not in str(e.value) and not (tmp_path / "r").exists()


def test_the_stoi_recipe_without_julius_stops_before_training_with_one_line(corpus, tmp_path, monkeypatch):
    import sys

    from audioe2e.train.loop import TrainSetupError
    monkeypatch.setitem(sys.modules, "julius", None)  # `import julius` raises ImportError
    with pytest.raises(TrainSetupError, match="the STOI loss term needs the julius package") as e:
        train(get_recipe("codec-stoi"), corpus, tmp_path / "r", steps=1, batch=2, seconds=0.5, val_every=1000)
    assert "\n" not in str(e.value) and not (tmp_path / "r").exists()


def test_a_recipe_that_selects_by_stoi_scores_checkpoints_by_stoi():
    """`codec-stoi` trains for intelligibility, so its checkpoints are ranked by validation
    STOI, not by PESQ-WB (which fell as STOI rose in its first run); without the choice the
    task's default (PESQ-WB) stands."""
    pytest.importorskip("pystoi")
    pytest.importorskip("pesq")
    from audioe2e.train.loop import evaluate
    t = torch.arange(32000) / 16000
    clean = (torch.sin(2 * torch.pi * 3 * t) ** 2 * torch.sin(2 * torch.pi * 220 * t) * 0.1).repeat(2, 1)
    noisy = clean + 0.02 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    val = (noisy, clean, None)
    assert get_recipe("codec-stoi").select_by == "stoi"
    by_stoi = evaluate(torch.nn.Identity(), "codec", val, get_recipe("codec-stoi").select_by)
    assert by_stoi["score_kind"] == "stoi" and by_stoi["score"] == by_stoi["stoi"]
    default = evaluate(torch.nn.Identity(), "codec", val)
    assert default["score_kind"] == "pesq_wb" and default["score"] == default["pesq_wb"]


def test_pesq_targets_rank_clean_over_noisy_and_skip_silence():
    """The critic's regression targets: 1 for clean, lower for noisier copies; silence (no
    utterance for PESQ) is NaN, which the critic's loss leaves out."""
    from audioe2e.train.metric_gan import normalised_pesq
    t = np.arange(32000) / 16000
    x = (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2) * sum(
        np.sin(2 * np.pi * (150 + 20 * np.sin(2 * np.pi * 2 * t)) * k * t) / k for k in range(1, 10)) * 0.1
    n = np.random.default_rng(0).standard_normal(len(t))
    ref = torch.tensor(np.stack([x, x, x, 0 * x]), dtype=torch.float32)
    deg = torch.tensor(np.stack([x, x + 0.003 * n, x + 0.1 * n, 0 * x]), dtype=torch.float32)
    with np.errstate(invalid="ignore"):
        q = normalised_pesq(ref, deg)
    assert q[0] > 0.95 and q[0] > q[1] > q[2] >= 0 and torch.isnan(q[3])


def test_metric_critic_learns_to_tell_clean_from_noisy():
    """A few critic updates on one batch move its predictions toward the PESQ targets."""
    from audioe2e.train.metric_gan import MetricGAN
    torch.manual_seed(0)
    t = torch.arange(16000) / 16000
    x = torch.stack([sum(torch.sin(2 * torch.pi * f * k * t) / k for k in range(1, 8)) * 0.1 for f in (130, 190)])
    noisy = x + 0.05 * torch.randn_like(x)
    mg = MetricGAN(examples=2, lr=2e-3)
    losses = [mg.discriminator_step(noisy, x, s, mix=noisy) for s in range(30)]
    assert losses[-1] < 0.5 * losses[0]
    assert (mg.disc(x, x) > mg.disc(noisy, x)).all()


@pytest.mark.parametrize("recipe", ["enhancer-tiny", "codec-gan", "enhancer-gru-df-metric"])
def test_training_runs_distributed_under_torchrun(corpus, tmp_path, recipe):
    """Two DDP ranks (gloo, CPU) train a few steps and leave one log and one checkpoint that
    says world 2. The codec failed here before its loss was part of what DDP wraps (its VQ loss
    is a side output of the forward); the adversarial recipes' critics (the codec's STFT
    discriminator, the enhancer's PESQ critic) all-reduce their gradients too (a rank that
    skipped it would hang the other until the timeout)."""
    import socket
    import subprocess
    import sys
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(port), "-m", "audioe2e", "train", "run", recipe, "--corpus", str(corpus),
           "--run-dir", str(run), "--steps", "2", "--batch", "2", "--seconds", "0.5", "--val-every", "1000",
           "--threads", "1"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    meta = load_weights(run / "last.safetensors")[2]
    assert meta["world"] == 2 and meta["step"] == 2
    steps = [json.loads(l)["step"] for l in (run / "log.jsonl").read_text().splitlines() if '"val"' in l]
    assert steps == [2]  # rank 0 alone writes the log


def test_warmup_ramps_the_learning_rate_and_resumes_mid_ramp(corpus, tmp_path):
    """--lr 5e-4 --warmup 4: the saved learning rate is 2/4 of 5e-4 after 2 steps and 5e-4 at
    step 4; a run resumed mid-ramp without repeating --lr ramps to the run's rate (not the
    recipe's) and ends where an uninterrupted one does."""
    recipe = get_recipe("enhancer-tiny")
    kw = dict(batch=2, seconds=0.5, val_every=1000, log_every=1, warmup=4)
    torch.manual_seed(0)
    train(recipe, corpus, tmp_path / "straight", steps=4, lr=5e-4, **kw)
    torch.manual_seed(0)
    train(recipe, corpus, tmp_path / "split", steps=2, lr=5e-4, **kw)
    lr_of = lambda run: load_weights(run / "last.safetensors")[2]["optim"]["param_groups"][0]["lr"]  # noqa: E731
    assert lr_of(tmp_path / "split") == pytest.approx(5e-4 * 2 / 4)
    train(recipe, corpus, tmp_path / "split", steps=4, resume=True, **kw)
    assert lr_of(tmp_path / "split") == lr_of(tmp_path / "straight") == pytest.approx(5e-4)
    assert 5e-4 != recipe.lr
    a = load_weights(tmp_path / "straight" / "last.safetensors")[0]
    b = load_weights(tmp_path / "split" / "last.safetensors")[0]
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    notes = [json.loads(l).get("note", "") for l in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()]
    assert any(n.startswith("learning rate warm-up over steps 0-4") for n in notes)


def test_weight_average_is_the_exponential_average_of_the_steps():
    """After steps w1, w2 from w0 with decay d: ema = d²·w0 + d(1−d)·w1 + (1−d)·w2."""
    from audioe2e.train.ema import WeightAverage

    lin = torch.nn.Linear(2, 1, bias=False)
    ws = [torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, -1.0]]), torch.tensor([[0.0, 4.0]])]
    with torch.no_grad():
        lin.weight.copy_(ws[0])
    avg = WeightAverage(lin, 0.9)
    for w in ws[1:]:
        with torch.no_grad():
            lin.weight.copy_(w)
        avg.update(lin)
    want = 0.81 * ws[0] + 0.09 * ws[1] + 0.1 * ws[2]
    assert torch.allclose(avg.model.weight, want)
    assert torch.equal(lin.weight, ws[2])  # the training weights are left alone
    with pytest.raises(ValueError):
        WeightAverage(lin, 1.0)


def test_ema_resumes_to_the_same_state_and_best_names_its_weights(corpus, tmp_path):
    """--ema: the average is saved in the checkpoint and a resumed run ends where an
    uninterrupted one does; validation logs both scores and the best file says which won."""
    recipe = get_recipe("enhancer-tiny")
    kw = dict(batch=2, seconds=0.5, val_every=1000, log_every=1, ema=0.5)
    torch.manual_seed(0)
    train(recipe, corpus, tmp_path / "straight", steps=4, **kw)
    torch.manual_seed(0)
    train(recipe, corpus, tmp_path / "split", steps=2, **kw)
    train(recipe, corpus, tmp_path / "split", steps=4, resume=True, **kw)
    a, _, meta = load_weights(tmp_path / "straight" / "last.safetensors")
    b = load_weights(tmp_path / "split" / "last.safetensors")[0]
    assert meta["ema"] == 0.5 and any(k.startswith("ema.") for k in a)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    pairs = [(v, a["ema." + k[6:]]) for k, v in a.items() if k.startswith("model.")]
    assert pairs and any(not torch.equal(m, e) for m, e in pairs)  # the average lags the weights
    log = [json.loads(l) for l in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()]
    vals = [r for r in log if "val" in r]
    assert len(vals) == 1 and all("val_ema" in r for r in vals)
    assert any(r.get("note", "").startswith("EMA of the weights (decay 0.5) from step 0") for r in log)
    best_meta = load_weights(tmp_path / "straight" / "best.safetensors")[2]
    want = max(vals, key=lambda r: max(r["val"]["score"], r["val_ema"]["score"]))
    assert best_meta["step"] == want["step"]
    assert best_meta["weights"] == ("ema" if want["val_ema"]["score"] > want["val"]["score"] else "raw")


def test_a_plain_resume_keeps_the_moving_average_and_ema_0_drops_it(corpus, tmp_path):
    recipe = get_recipe("enhancer-tiny")
    kw = dict(batch=2, seconds=0.5, val_every=1000, log_every=1)
    run = tmp_path / "r"
    train(recipe, corpus, run, steps=1, ema=0.5, **kw)
    train(recipe, corpus, run, steps=2, resume=True, **kw)
    state, _, meta = load_weights(run / "last.safetensors")
    assert meta["ema"] == 0.5 and any(k.startswith("ema.") for k in state)
    train(recipe, corpus, run, steps=3, resume=True, ema=0.0, **kw)
    state, _, meta = load_weights(run / "last.safetensors")
    assert "ema" not in meta and not any(k.startswith("ema.") for k in state)
    notes = [json.loads(l).get("note", "") for l in (run / "log.jsonl").read_text().splitlines()]
    assert notes.count("EMA of the weights dropped from step 2") == 1
    assert not any("dropped from step 1" in n for n in notes)


def test_export_of_the_moving_average_ships_it_with_its_scores(corpus, tmp_path):
    """`train export --which ema` ships the average kept in last.safetensors, and the card
    names it and carries the scores the log gave it; a run without --ema is refused."""
    from audioe2e.train.export import export_run

    recipe = get_recipe("enhancer-tiny")
    kw = dict(batch=2, seconds=0.5, val_every=1000, log_every=1)
    train(recipe, corpus, tmp_path / "r", steps=2, ema=0.5, **kw)
    card = export_run(tmp_path / "r", "enhancer-tiny", tmp_path / "models", None, "ema")
    ckpt = load_weights(tmp_path / "r" / "last.safetensors")[0]
    shipped, _, meta = load_weights(tmp_path / "models" / "enhancer-tiny.safetensors")
    assert shipped.keys() == {k[4:] for k in ckpt if k.startswith("ema.")}
    assert all(torch.equal(v, ckpt["ema." + k]) for k, v in shipped.items())
    val_ema = [json.loads(l) for l in (tmp_path / "r" / "log.jsonl").read_text().splitlines()
               if '"val_ema"' in l][-1]["val_ema"]
    assert meta["weights"] == card["weights"] == "ema" and card["step"] == 2
    assert card["metrics"]["val_si_sdr"] == round(val_ema["si_sdr"], 3)
    assert "the moving average of the weights" in (tmp_path / "models" / "enhancer-tiny.md").read_text()
    train(recipe, corpus, tmp_path / "plain", steps=1, **kw)
    with pytest.raises(ValueError, match="without --ema"):
        export_run(tmp_path / "plain", "enhancer-tiny", tmp_path / "models", None, "ema")


def test_export_blend_ships_the_weighted_mean_of_two_weights_scored_afresh(corpus, tmp_path):
    """`train export --blend-with W --blend A` ships (1 − A)·W + A·run, tensor by tensor, scores
    those weights on the valset (the log's scores are the run's, not theirs) and records the
    blend in the card; another network or a share outside 0…1 is refused."""
    from audioe2e.checkpoint import save_weights
    from audioe2e.nets.tiny import TinyConfig, TinyEnhancer
    from audioe2e.train.export import export_run
    from audioe2e.train.runstate import model_tensors

    train(get_recipe("enhancer-tiny"), corpus, tmp_path / "r", steps=2, batch=2, seconds=0.5, val_every=1000)
    logged = [json.loads(l) for l in (tmp_path / "r" / "log.jsonl").read_text().splitlines() if '"val"' in l][-1]
    run_state = model_tensors(load_weights(tmp_path / "r" / "last.safetensors")[0])
    torch.manual_seed(5)
    other = TinyEnhancer(TinyConfig())
    save_weights(tmp_path / "other.safetensors", other.state_dict(), other.config_dict(), {})
    card = export_run(tmp_path / "r", "enhancer-tiny", tmp_path / "m", corpus, "last",
                      blend_with=tmp_path / "other.safetensors", blend=0.25)
    shipped, _, meta = load_weights(tmp_path / "m" / "enhancer-tiny.safetensors")
    for k, v in shipped.items():
        expect = 0.75 * other.state_dict()[k] + 0.25 * run_state[k] if v.is_floating_point() else run_state[k]
        assert torch.allclose(v, expect, atol=1e-6), k
    assert card["blend"]["share"] == meta["blend"]["share"] == 0.25 and card["blend"]["with"] == "other.safetensors"
    assert logged["step"] == 2 and card["metrics"]["val_si_sdr"] != round(logged["val"]["si_sdr"], 3)
    md = (tmp_path / "m" / "enhancer-tiny.md").read_text()
    assert "- blended: 0.25 × these weights + 0.75 × `other.safetensors`" in md
    assert f"si_sdr {card['metrics']['val_si_sdr']:.3f}" in md
    ends = [export_run(tmp_path / "r", "enhancer-tiny", tmp_path / f"m{a}", None, "last",
                       blend_with=tmp_path / "other.safetensors", blend=a) for a in (0.0, 1.0)]
    assert all(torch.equal(load_weights(tmp_path / "m0.0" / "enhancer-tiny.safetensors")[0][k], v)
               for k, v in other.state_dict().items())
    assert all(torch.equal(load_weights(tmp_path / "m1.0" / "enhancer-tiny.safetensors")[0][k], v)
               for k, v in run_state.items())
    assert ends[0]["metrics"] == {}  # no corpus: nothing to score them on, and no stale scores
    with pytest.raises(ValueError, match="a number from 0 to 1"):
        export_run(tmp_path / "r", "enhancer-tiny", tmp_path / "m", None, "last",
                   blend_with=tmp_path / "other.safetensors", blend=1.5)
    with pytest.raises(ValueError, match="--blend-with and --blend go together"):
        export_run(tmp_path / "r", "enhancer-tiny", tmp_path / "m", None, "last", blend=0.5)
    with pytest.raises(ValueError, match="--blend-with and --blend go together"):
        export_run(tmp_path / "r", "enhancer-tiny", tmp_path / "m", None, "last",
                   blend_with=tmp_path / "other.safetensors")
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="garbage.safetensors: not a readable weights file"):
        export_run(tmp_path / "r", "enhancer-tiny", tmp_path / "m", None, "last",
                   blend_with=tmp_path / "garbage.safetensors", blend=0.5)
    wide = TinyEnhancer(TinyConfig(hidden=TinyConfig().hidden + 8))
    save_weights(tmp_path / "wide.safetensors", wide.state_dict(), wide.config_dict(), {})
    with pytest.raises(ValueError, match="not the same network"):
        export_run(tmp_path / "r", "enhancer-tiny", tmp_path / "m", None, "last",
                   blend_with=tmp_path / "wide.safetensors", blend=0.5)
    with pytest.raises(FileNotFoundError, match="not a run folder"):  # one line from the CLI, not an OSError
        export_run(tmp_path / "m", "enhancer-tiny", tmp_path / "m2", None, "last")


def test_speed_perturbation_follows_the_range_asked(corpus):
    """`Mixer(speed=…)`: a fixed factor of 0.8 lowers a harmonic voice's pitch by 20 %; the
    default range never goes below 0.9."""
    def f0(x):  # from the autocorrelation's strongest lag of 2.5–16 ms (60–400 Hz)
        ac = np.correlate(x, x, "full")[len(x) - 1:]
        lo, hi = 40, 267
        return 16000 / (lo + ac[lo:hi].argmax())

    corp = Corpus(corpus, "train")
    plain = Mixer(corp, 0.5, speed=(1.0, 1.0))
    slow = Mixer(corp, 0.5, speed=(0.8, 0.8))
    ratios = []
    for seed in range(4):  # rng draws are the same in both, so the same speaker and crop
        a = plain.speech(np.random.default_rng(seed), "train0")
        b = slow.speech(np.random.default_rng(seed), "train0")
        ratios.append(f0(b) / f0(a))
    assert all(abs(r - 0.8) < 0.02 or r == 1.0 for r in ratios)  # half are left unperturbed
    assert 0.8 in np.round(ratios, 1) and 1.0 in ratios
    assert Mixer(corp, 0.5).speed == (0.9, 1.1)


def test_a_run_keeps_its_speed_range_and_notes_a_change(corpus, tmp_path):
    """`--speed` is saved with the run: a resume without it keeps it (no note), a new range is
    noted once; a run from before the field is read as the old default."""
    recipe = get_recipe("enhancer-tiny")
    kw = dict(batch=2, seconds=0.5, val_every=1000, log_every=1)
    run = tmp_path / "r"
    train(recipe, corpus, run, steps=1, speed=(0.8, 1.25), **kw)
    assert load_weights(run / "last.safetensors")[2]["speed"] == [0.8, 1.25]
    train(recipe, corpus, run, steps=2, resume=True, **kw)
    assert load_weights(run / "last.safetensors")[2]["speed"] == [0.8, 1.25]
    train(recipe, corpus, run, steps=3, resume=True, speed=(0.9, 1.1), **kw)
    notes = [json.loads(l).get("note", "") for l in (run / "log.jsonl").read_text().splitlines()]
    assert [n for n in notes if n.startswith("speed perturbation")] == [
        "speed perturbation 0.8…1.25 from step 0", "speed perturbation 0.8…1.25 -> 0.9…1.1 from step 2"]


def test_source_balance_stops_many_short_voices_outweighing_a_few_long_ones():
    """`--balance source`: a generator's 100 short voices get their source's sqrt-duration
    share, not 100 speakers' worth; within a source, speakers stay ∝ sqrt(duration)."""
    from audioe2e.train.data import speaker_weights

    dur = np.array([100.0] * 100 + [3600.0, 900.0])  # 100 synthetic voices of 100 s; two real people
    src = ["tts"] * 100 + ["real"] * 2
    by_speaker = speaker_weights(dur, src, "speaker")
    assert by_speaker[:100].sum() > 0.8  # the synthetic voices dominate
    by_source = speaker_weights(dur, src, "source")
    assert by_source.sum() == pytest.approx(1.0)
    assert by_source[:100].sum() == pytest.approx(100 / (100 + np.sqrt(4500)))  # sqrt(10,000 s) vs sqrt(4,500 s)
    assert by_source[100] / by_source[101] == pytest.approx(2.0)  # sqrt(3600 / 900)
    assert np.allclose(speaker_weights(dur, ["one"] * 102, "source"), by_speaker)  # one source: no change
    with pytest.raises(ValueError, match="balance must be one of"):
        speaker_weights(dur, src, "gender")


def test_a_run_keeps_its_speaker_balance_and_notes_a_change(corpus, tmp_path):
    """`--balance` is saved with the run; a plain resume keeps it; a change is noted once."""
    recipe = get_recipe("enhancer-tiny")
    kw = dict(batch=2, seconds=0.5, val_every=1000, log_every=1)
    run = tmp_path / "r"
    train(recipe, corpus, run, steps=1, **kw)
    assert load_weights(run / "last.safetensors")[2]["balance"] == "speaker"
    train(recipe, corpus, run, steps=2, resume=True, balance="source", **kw)
    train(recipe, corpus, run, steps=3, resume=True, **kw)
    assert load_weights(run / "last.safetensors")[2]["balance"] == "source"
    notes = [json.loads(l).get("note", "") for l in (run / "log.jsonl").read_text().splitlines()]
    assert [n for n in notes if n.startswith("speakers drawn")] == ["speakers drawn by source (was speaker) from step 1"]
    train(recipe, corpus, tmp_path / "fresh", steps=1, balance="source", **kw)
    notes = [json.loads(l).get("note", "") for l in (tmp_path / "fresh" / "log.jsonl").read_text().splitlines()]
    assert [n for n in notes if n.startswith("speakers drawn")] == ["speakers drawn by source from step 0"]


def test_a_resumed_run_keeps_its_batch_and_segment_length(corpus, tmp_path):
    """A plain --resume trains on what the run was saved with, not the recipe's defaults; a new
    segment length is noted once."""
    recipe = get_recipe("enhancer-tiny")
    kw = dict(val_every=1000, log_every=1)
    run = tmp_path / "r"
    train(recipe, corpus, run, steps=1, batch=2, seconds=0.5, **kw)
    train(recipe, corpus, run, steps=2, resume=True, **kw)
    meta = load_weights(run / "last.safetensors")[2]
    assert (meta["batch"], meta["seconds"]) == (2, 0.5) != (recipe.batch, recipe.seconds)
    train(recipe, corpus, run, steps=3, resume=True, seconds=0.25, **kw)
    assert load_weights(run / "last.safetensors")[2]["seconds"] == 0.25
    notes = [json.loads(l).get("note", "") for l in (run / "log.jsonl").read_text().splitlines()]
    assert [n for n in notes if n.startswith("training segments")] == ["training segments 0.5 s -> 0.25 s from step 2"]


def test_resume_with_init_from_on_an_empty_run_warm_starts(corpus, tmp_path):
    """`--resume --init-from W` on a run folder without a checkpoint warm-starts from W; once
    the run has a checkpoint, --resume continues it instead (no second warm start)."""
    recipe = get_recipe("enhancer-tiny")
    kw = dict(batch=2, seconds=0.5, val_every=1000, log_every=1)
    train(recipe, corpus, tmp_path / "parent", steps=1, **kw)
    weights = tmp_path / "parent" / "last.safetensors"
    run = tmp_path / "child"
    train(recipe, corpus, run, steps=1, resume=True, init_from=weights, **kw)
    train(recipe, corpus, run, steps=2, resume=True, init_from=weights, **kw)
    notes = [json.loads(l).get("note", "") for l in (run / "log.jsonl").read_text().splitlines()]
    warm = [n for n in notes if n.startswith("warm start")]
    assert len(warm) == 1 and warm[0].startswith(f"warm start from {weights}: ")


def test_levels_override_the_recipes_mixture_levels_and_are_noted(corpus, tmp_path):
    """`--levels` trains on another level range (saved with the run, noted); a resume without
    it goes back to the recipe's range, noted too."""
    recipe = get_recipe("enhancer-tiny")
    kw = dict(batch=2, seconds=0.5, val_every=1000, log_every=1)
    run = tmp_path / "r"
    train(recipe, corpus, run, steps=1, level_db=(-35.0, -10.0), **kw)
    assert load_weights(run / "last.safetensors")[2]["level_db"] == [-35.0, -10.0]
    train(recipe, corpus, run, steps=2, resume=True, level_db=(-35.0, -10.0), **kw)
    train(recipe, corpus, run, steps=3, resume=True, **kw)
    assert load_weights(run / "last.safetensors")[2]["level_db"] == list(recipe.level_db)
    notes = [json.loads(l).get("note", "") for l in (run / "log.jsonl").read_text().splitlines()]
    assert [n for n in notes if n.startswith("training mixture levels")] == [
        "training mixture levels -35…-10 dBFS RMS from step 0",
        f"training mixture levels -35…-10 -> {recipe.level_db[0]:g}…{recipe.level_db[1]:g} dBFS RMS from step 2"]


def test_train_cli_rejects_a_bad_speed_or_level_range(tmp_path):
    import subprocess
    import sys
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "manifest.jsonl").write_text("{}\n")
    for flag, bad in (("--speed", "1.2,0.8"), ("--speed", "fast"), ("--speed", "0.9"), ("--levels", "-10,-35"),
                      ("--levels", "-20,6")):
        p = subprocess.run([sys.executable, "-m", "audioe2e", "train", "run", "enhancer-tiny", "--corpus",
                            str(tmp_path / "corpus"), "--run", str(tmp_path / "run"), f"{flag}={bad}"],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 2 and p.stderr.strip().startswith(f"error: {flag} must be LOW,HIGH"), p.stderr
        assert len(p.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()
    for bad in ("1.5", "-0.1", "1"):
        p = subprocess.run([sys.executable, "-m", "audioe2e", "train", "run", "enhancer-tiny", "--corpus",
                            str(tmp_path / "corpus"), "--run", str(tmp_path / "run"), f"--ema={bad}"],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 2 and p.stderr.strip() == f"error: --ema must be a decay between 0 and 1, got {float(bad):g}"
        assert not (tmp_path / "run").exists()
    p = subprocess.run([sys.executable, "-m", "audioe2e", "train", "run", "enhancer-tiny", "--corpus",
                        str(tmp_path / "corpus"), "--run", str(tmp_path / "run"), "--balance", "gender"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.strip() == "error: --balance must be 'speaker' or 'source', got 'gender'"
    assert not (tmp_path / "run").exists()


def test_a_second_validation_draw_is_its_own_corpus_folder(corpus, tmp_path):
    """`python -m audioe2e.train.valsets --out D`: D links the corpus and holds other clips
    than the fixed valset, as many as asked; writing it again keeps it; seed 1234 (the fixed
    valset's) is refused."""
    from audioe2e.train.valsets import audio_id, main, valset_dir, write_draw, write_valset

    d = write_draw(corpus, tmp_path / "draw", seed=7, n_enhance=5, n_separate=3)
    assert (d / "manifest.jsonl").resolve() == (corpus / "manifest.jsonl").resolve()
    for task, n in (("enhance", 5), ("separate", 3)):
        assert len((valset_dir(d, task) / "meta.jsonl").read_text().splitlines()) == n
    fixed = write_valset(corpus, "enhance")
    assert audio_id(valset_dir(d, "enhance")) != audio_id(fixed)
    before = audio_id(valset_dir(d, "separate"))
    assert main(["--corpus", str(corpus), "--out", str(d), "--seed", "7"]) == 0
    assert audio_id(valset_dir(d, "separate")) == before
    assert main(["--corpus", str(corpus), "--out", str(tmp_path / "x"), "--seed", "1234"]) == 2
    assert main(["--corpus", str(corpus), "--out", str(tmp_path / "x"), "--n-enhance", "0"]) == 2
    (tmp_path / "afile").write_text("")
    assert main(["--corpus", str(corpus), "--out", str(tmp_path / "afile")]) == 2
    assert main(["--corpus", str(tmp_path / "nothing"), "--out", str(tmp_path / "y")]) == 2
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_a_draw_that_fails_midway_leaves_nothing_behind(corpus, tmp_path, monkeypatch):
    """Writing a second draw stops on an error (here: the separation clips): a new folder is
    removed, an existing one loses only the links made by this call and gets back the ones it
    re-pointed; the corpus is untouched."""
    from audioe2e.train import valsets

    real = valsets.write_valset

    def fail_on_separate(root, task, **kw):
        if task == "separate":
            raise OSError("disk full")
        return real(root, task, **kw)
    monkeypatch.setattr(valsets, "write_valset", fail_on_separate)
    files_before = sorted(p.name for p in corpus.iterdir())
    with pytest.raises(OSError, match="disk full"):
        valsets.write_draw(corpus, tmp_path / "new", seed=7, n_enhance=2, n_separate=2)
    assert not (tmp_path / "new").exists()
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "keep.txt").write_text("mine")
    with pytest.raises(OSError, match="disk full"):
        valsets.write_draw(corpus, tmp_path / "old", seed=7, n_enhance=2, n_separate=2)
    assert not any(p.is_symlink() for p in (tmp_path / "old").iterdir())
    assert (tmp_path / "old" / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in corpus.iterdir()) == files_before and (corpus / "speech").is_dir()
    (tmp_path / "old" / "speech").symlink_to(tmp_path / "moved-corpus" / "speech")  # a stale link
    with pytest.raises(OSError, match="disk full"):
        valsets.write_draw(corpus, tmp_path / "old", seed=7, n_enhance=2, n_separate=2)
    assert [p.name for p in (tmp_path / "old").iterdir() if p.is_symlink()] == ["speech"]
    assert os.readlink(tmp_path / "old" / "speech") == str(tmp_path / "moved-corpus" / "speech")  # put back


def test_prefetching_workers_train_on_the_same_batches(corpus, tmp_path):
    """--workers makes batches in forked processes ahead of the step (for a GPU); the run must
    end in the very state the in-process run reaches, so resume and reproducibility hold."""
    from audioe2e.train.data import BatchPrefetcher

    mixer = Mixer(Corpus(corpus, "train"), 0.5)
    pre = BatchPrefetcher(mixer, "separate", 2, seed=3, rank=0, start=5, workers=2, depth=3)
    try:
        for step in (5, 6, 7, 8):
            got, want = pre.get(step), batch(mixer, "separate", 2, seed=3, step=step)
            assert all(torch.equal(u, v) for u, v in zip(got, want))
        with pytest.raises(RuntimeError, match="asked for step 11"):
            pre.get(11)
        # a worker killed (out of memory, say) is an error naming it, never a wait forever
        import os
        import signal
        os.kill(pre.procs[9 % 2].pid, signal.SIGKILL)
        with pytest.raises(RuntimeError, match=r"batch worker 1 died before step \d+ \(exit code -9\)"):
            for step in range(9, 20):
                pre.get(step)
    finally:
        pre.close()
    pre.close()  # twice is harmless
    assert not any(p.is_alive() for p in pre.procs)
    recipe = get_recipe("enhancer-tiny")
    kw = dict(batch=2, seconds=0.5, val_every=1000, log_every=1)
    torch.manual_seed(0)
    train(recipe, corpus, tmp_path / "inproc", steps=3, **kw)
    torch.manual_seed(0)
    train(recipe, corpus, tmp_path / "workers", steps=3, workers=2, **kw)
    a = load_weights(tmp_path / "inproc" / "last.safetensors")[0]
    b = load_weights(tmp_path / "workers" / "last.safetensors")[0]
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_minutes_stops_with_a_checkpoint_and_validate_scores_it_later(corpus, tmp_path):
    """A run on a lent machine: no valset there (--val-every 0), stopped by wall time; back
    here `train validate` logs its scores (raw and average) and export's card carries them."""
    from audioe2e.train.export import export_run
    from audioe2e.train.validate import validate_run

    recipe = get_recipe("enhancer-tiny")
    run = tmp_path / "r"
    train(recipe, corpus, run, steps=10_000, batch=2, seconds=0.5, val_every=0, log_every=1,
          ema=0.5, minutes=0.001)
    _, _, meta = load_weights(run / "last.safetensors")
    assert 0 < meta["step"] < 10_000
    log = [json.loads(l) for l in (run / "log.jsonl").read_text().splitlines()]
    assert not any("val" in r for r in log)
    assert log[-1]["note"] == f"stopped after 0.001 min of wall time (--minutes) at step {meta['step']}"
    line = validate_run(run, corpus)
    assert line["step"] == meta["step"] and {"val", "val_ema"} <= line.keys()
    validate_run(run, corpus)  # a second call adds no second line
    log = [json.loads(l) for l in (run / "log.jsonl").read_text().splitlines()]
    assert sum("val" in r for r in log) == 1
    _, _, meta = load_weights(run / "last.safetensors")
    from audioe2e.train.valsets import valset_id
    assert meta["val_id"] == valset_id(corpus, "enhance") != "" and meta["log_lines"] == len(log)
    card = export_run(run, "enhancer-tiny", tmp_path / "models", None, "ema")
    assert card["metrics"]["val_si_sdr"] == round(line["val_ema"]["si_sdr"], 3)
    assert card["val_id"] == meta["val_id"]


def test_a_deeper_separator_grown_from_a_shallower_one_starts_as_its_function(tmp_path):
    """separator-deep warm-started from 2-repeat weights: the copied blocks keep their weights,
    the new blocks' residual and skip outputs start at zero, so the output is unchanged."""
    from audioe2e.checkpoint import save_weights
    from audioe2e.registry import build_model
    from audioe2e.train.loop import warm_start

    torch.manual_seed(0)
    small = build_model(dict(get_recipe("separator").config))
    for p in small.parameters():  # trained-looking weights, not the zero/one initial norms
        p.data.add_(0.01 * torch.randn_like(p))
    save_weights(tmp_path / "small.safetensors", small.state_dict(), small.config_dict())
    deep = build_model(dict(get_recipe("separator-deep").config))
    copied = warm_start(deep, tmp_path / "small.safetensors")
    assert len(deep.tcn.blocks) == 2 * len(small.tcn.blocks) and set(copied) == set(small.state_dict())
    new = deep.tcn.blocks[len(small.tcn.blocks)]
    assert not new.res.weight.any() and not new.skip.bias.any() and new.net[0].weight.any()
    x = torch.randn(2, 8000) * 0.1
    with torch.no_grad():
        assert torch.allclose(deep(x), small(x), atol=1e-5)


def test_anneal_lowers_the_rate_over_the_minutes_and_needs_them(corpus, tmp_path):
    from audioe2e.train.loop import TrainSetupError

    recipe = get_recipe("enhancer-tiny")
    with pytest.raises(TrainSetupError, match="--minutes"):
        train(recipe, corpus, tmp_path / "a", steps=2, batch=2, seconds=0.5, val_every=0, anneal=True)
    assert not (tmp_path / "a").exists()
    train(recipe, corpus, tmp_path / "b", steps=10_000, batch=2, seconds=0.5, val_every=0, log_every=1,
          minutes=0.02, anneal=True, lr=1e-3)
    state, config, meta = load_weights(tmp_path / "b" / "last.safetensors")
    lr_end = meta["optim"]["param_groups"][0]["lr"]
    assert meta["lr_base"] == 1e-3 and 0 <= lr_end < 0.5e-3
    # resumed without --anneal, and from a copy slimmed of its optimiser state: the run's own
    # rate again, and a fresh Adam, said in the log
    from audioe2e.checkpoint import save_weights
    (tmp_path / "c").mkdir()
    save_weights(tmp_path / "c" / "last.safetensors", {k: v for k, v in state.items() if k.startswith("model.")},
                 config, meta)
    (tmp_path / "c" / "log.jsonl").write_text((tmp_path / "b" / "log.jsonl").read_text())
    for run in ("b", "c"):
        train(recipe, corpus, tmp_path / run, steps=meta["step"] + 1, resume=True, val_every=0)
        after = load_weights(tmp_path / run / "last.safetensors")[2]
        assert after["optim"]["param_groups"][0]["lr"] == 1e-3
    notes = [json.loads(l).get("note", "") for l in (tmp_path / "c" / "log.jsonl").read_text().splitlines()]
    assert f"no optimiser state in the checkpoint: Adam's moments start afresh from step {meta['step']}" in notes


def test_validate_refuses_a_file_that_is_no_training_checkpoint(tmp_path):
    """An exported weights file has no recipe and step: `train validate` says so in one line."""
    from typer.testing import CliRunner

    from audioe2e.checkpoint import save_weights
    from audioe2e.train.cli import app

    (tmp_path / "run").mkdir()
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "manifest.jsonl").write_text("")
    save_weights(tmp_path / "run" / "last.safetensors", {"w": torch.zeros(1)}, {}, {"params": 1})
    res = CliRunner().invoke(app, ["validate", "--run", str(tmp_path / "run"), "--corpus", str(tmp_path / "corpus")])
    assert res.exit_code == 2
    assert "not a training checkpoint" in res.output and len(res.output.strip().splitlines()) == 1


def test_export_counts_the_codec_priors_on_the_mix_its_recipe_trained_on(corpus, tmp_path, monkeypatch):
    """The entropy priors are counted on training mixtures with the recipe's share of clean
    inputs (codec-stoi-clean: half), not always the default 30 %."""
    import audioe2e.train.priors as priors
    from audioe2e.train.export import export_run
    run = tmp_path / "r"
    train(get_recipe("codec-stoi-clean"), corpus, run, steps=1, batch=2, seconds=1.0, val_every=1000)
    seen, real = [], priors.fit_priors
    monkeypatch.setattr(priors, "fit_priors", lambda model, root, **kw: (
        seen.append(kw.get("clean_share")), real(model, root, **dict(kw, batches=1, batch_size=2, seconds=0.5)))[1])
    export_run(run, "codec", tmp_path / "models", corpus, "last")
    assert seen == [0.5]


def test_a_decoder_only_recipe_leaves_what_makes_the_codes_as_it_was(corpus, tmp_path):
    """codec-decoder trains the decoder alone: the encoder and quantiser (so the bitstream and
    its priors) come out of training bit for bit as they went in."""
    from audioe2e.registry import build_model
    recipe = get_recipe("codec-decoder")
    torch.manual_seed(0)  # train() builds its model from the same seed
    start = build_model(dict(recipe.config)).state_dict()
    train(recipe, corpus, tmp_path / "r", steps=2, batch=2, seconds=1.0, val_every=1000)
    state = load_weights(tmp_path / "r" / "last.safetensors")[0]
    trained = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    for k, v in start.items():
        same = torch.equal(trained[k], v)
        assert same if k.startswith(("encoder.", "rvq.")) or k == "prior_counts" else True, k
    assert not all(torch.equal(trained[k], start[k]) for k in start if k.startswith("decoder."))


def test_reparam_refuses_what_is_not_a_codecs_weights_in_one_line(tmp_path, capsys):
    """`python -m audioe2e.train.reparam IN OUT`: a missing file, a file that is no weights file
    and another model's weights each give one `error:` line, exit 2, and no OUT."""
    from audioe2e.train.reparam import main
    bad = tmp_path / "bad.safetensors"
    bad.write_text("not weights")
    tiny = Path(__file__).resolve().parents[1] / "models" / "enhancer-tiny.safetensors"
    for src in (tmp_path / "missing.safetensors", bad, tiny):
        capsys.readouterr()
        assert main([str(src), str(tmp_path / "out.safetensors")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1
        assert not (tmp_path / "out.safetensors").exists()


def test_widen_keeps_the_gru_enhancers_function_and_gives_the_new_units_a_gradient(tmp_path):
    """`python -m audioe2e.train.widen`: the wider network computes the same output (to float
    rounding) with its deep filter, and its output heads' new columns get a gradient at once,
    so the new units can learn."""
    from audioe2e.checkpoint import save_weights
    from audioe2e.registry import build_model
    from audioe2e.train.widen import main
    torch.manual_seed(3)
    cfg = dict(arch="gru_enhancer", n_fft=64, hop=32, layers=2, frontend="dense", hidden=12, df_bins=8, df_order=3)
    small = build_model(cfg)
    for p in small.parameters():  # the deep-filter head starts at zero; give it weights
        p.data.add_(torch.randn_like(p) * 0.05)
    save_weights(tmp_path / "small.safetensors", small.state_dict(), small.config_dict(), {})
    assert main([str(tmp_path / "small.safetensors"), str(tmp_path / "wide.safetensors"), "--hidden", "20"]) == 0
    state, config, _ = load_weights(tmp_path / "wide.safetensors")
    assert config["hidden"] == 20
    wide = build_model(config)
    wide.load_state_dict(state)
    x = torch.randn(2, 1600) * 0.1
    small.eval(), wide.eval()
    with torch.no_grad():
        a, b = small(x), wide(x)
    assert torch.allclose(a, b, atol=1e-6) and a.abs().max() > 1e-3
    wide.train()
    wide(x).pow(2).mean().backward()
    assert wide.out.weight.grad[:, 12:].abs().sum() > 0 and wide.df_out.weight.grad[:, 12:].abs().sum() > 0


def test_lookahead_growth_keeps_the_function_delayed_and_grows_a_run_checkpoint(tmp_path):
    """`python -m audioe2e.train.lookahead`: the grown network's output is the old network's on
    the input delayed by L hops (both time-aligned), its new input columns get a gradient at
    once, and in a run checkpoint the moving average and the input layer's Adam moments grow
    with the weights while everything else (critic included) is copied unchanged."""
    from audioe2e.checkpoint import save_weights
    from audioe2e.registry import build_model
    from audioe2e.train.lookahead import main
    torch.manual_seed(4)
    cfg = dict(arch="gru_enhancer", n_fft=64, hop=32, layers=2, frontend="dense", hidden=12, df_bins=8, df_order=3)
    old = build_model(cfg)
    for p in old.parameters():  # the deep-filter head starts at zero; give it weights
        p.data.add_(torch.randn_like(p) * 0.05)
    opt = torch.optim.Adam(old.parameters())
    old(torch.randn(1, 640)).pow(2).mean().backward()
    opt.step()
    ckpt = {f"model.{k}": v for k, v in old.state_dict().items()}
    ckpt |= {f"ema.{k}": v.clone() for k, v in old.state_dict().items()}
    ckpt |= {f"optim.{i}.{k}": v for i, st in opt.state_dict()["state"].items() for k, v in st.items()}
    ckpt["disc.w"] = torch.randn(3, 5)
    save_weights(tmp_path / "last.safetensors", ckpt, old.config_dict(), {"step": 7, "best": {"score": 2.0}})
    assert main([str(tmp_path / "last.safetensors"), str(tmp_path / "la.safetensors"), "--frames", "2",
                 "--recipe", "enhancer-gru-df-metric-la3"]) == 0
    state, config, meta = load_weights(tmp_path / "la.safetensors")
    assert config["lookahead"] == 2 and meta["step"] == 7 and "best" not in meta
    assert meta["recipe"] == "enhancer-gru-df-metric-la3"
    new = build_model(config)
    new.load_state_dict({k[len("model."):]: v for k, v in state.items() if k.startswith("model.")})
    grown = [k for k in state if state[k].shape != ckpt[k].shape]
    assert sorted(grown) == ["ema.inp.weight", "model.inp.weight", "optim.4.exp_avg", "optim.4.exp_avg_sq"]
    assert all(torch.equal(state[k], ckpt[k]) for k in state if k not in grown)
    assert all(state[k][:, 49:].abs().sum() == 0 for k in grown)  # 33 bins + 2·8 old columns
    x = torch.randn(2, 1600) * 0.1
    old.eval(), new.eval()
    with torch.no_grad():
        a = old(torch.nn.functional.pad(x, (2 * 32, 0)))[:, 2 * 32:]
        b = new(x)
    assert torch.allclose(a, b, atol=1e-6) and a.abs().max() > 1e-3
    new.train()
    new(x).pow(2).mean().backward()
    assert new.inp.weight.grad[:, 49:].abs().sum() > 0


def test_lookahead_growth_finds_the_input_layers_adam_moments_past_frozen_parameters():
    """With a recipe that freezes the front-end, Adam's state skips those parameters, so the
    input layer's moments sit at a lower index: the growth follows the saving recipe's order
    (`recipes.optimised_names`, the training loop's) and leaves the other moments alone."""
    from audioe2e.registry import build_model
    from audioe2e.train.lookahead import add_lookahead
    from audioe2e.train.recipes import optimised_names
    cfg = dict(arch="gru_enhancer", n_fft=64, hop=32, layers=1, frontend="dense", hidden=8)
    model = build_model(cfg)
    frozen = ("win_", "analysis.", "synthesis.")
    names = optimised_names(model, frozen)
    assert names[0] == "inp.weight" and len(names) < len(list(model.parameters()))
    params = dict(model.named_parameters())
    state = {f"model.{k}": v.detach() for k, v in model.state_dict().items()}
    state |= {f"optim.{i}.exp_avg": torch.ones_like(params[n]) for i, n in enumerate(names)}
    grown, _ = add_lookahead(state, cfg, 1, frozen)
    assert grown["optim.0.exp_avg"].shape == (8, 2 * 33) and grown["model.inp.weight"].shape == (8, 2 * 33)
    assert all(grown[k] is state[k] for k in state if k not in ("optim.0.exp_avg", "model.inp.weight"))


def test_lookahead_growth_refuses_bad_input_in_one_line(tmp_path, capsys):
    """A codec's weights, weights that already look ahead, an unknown recipe, no frames: one
    `error:` line, exit 2, no OUT."""
    from audioe2e.train.lookahead import main
    models = Path(__file__).resolve().parents[1] / "models"
    out = tmp_path / "out.safetensors"
    assert main([str(models / "enhancer.safetensors"), str(out), "--frames", "1"]) == 0
    for src, extra in ((models / "codec.safetensors", []), (out, []),
                       (models / "enhancer.safetensors", ["--recipe", "no-such-recipe"]),
                       (models / "enhancer.safetensors", ["--frames", "0"])):
        capsys.readouterr()
        assert main([str(src), str(tmp_path / "again.safetensors"), "--frames", "1", *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1
        assert src.name in err or "no-such-recipe" in err or "--frames 0" in err
        assert not (tmp_path / "again.safetensors").exists()


def test_widen_refuses_bad_input_in_one_line(tmp_path, capsys):
    """A missing file, a codec's weights, a width that is not wider and an output folder that
    is not there: one `error:` line, exit 2, no OUT (nor its temporary file)."""
    from audioe2e.train.widen import main
    models = Path(__file__).resolve().parents[1] / "models"
    out = tmp_path / "out.safetensors"
    for src, hidden, dst in ((tmp_path / "missing.safetensors", "384", out), (models / "codec.safetensors", "384", out),
                             (models / "enhancer.safetensors", "256", out),
                             (models / "enhancer.safetensors", "384", tmp_path / "nowhere" / "out.safetensors")):
        capsys.readouterr()
        assert main([str(src), str(dst), "--hidden", hidden]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1
        assert src.name in err or dst.parent.name in err  # names the file at fault
        assert list(tmp_path.iterdir()) == []
