"""Named training recipes: which network, which task data, which loss, default sizes.

Why: `audioe2e train NAME` must rebuild the exact model a shipped file came from; the recipe
name is stored in every checkpoint, and the ablation twins differ from their main model only
in the front-end field, so their comparison is fair by construction.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .data import CLEAN_SHARE, LEVEL_DB


# Training mixture levels since 2026-12-02 (sixth session): −60…−5 dBFS RMS instead of the
# −35…−10 of `data.LEVEL_DB`. Why: the models' inputs are not level-normalised, so they only
# work at the levels they saw: at −60 dBFS RMS the earlier weights scored −8.0 dB SI-SDRi
# (tiny enhancer) and −30 dB (codec), against +5.0 and −3.8 at −30 (bench table 1c, README). The validation sets stay at −35…−10 (scores comparable with earlier runs); a run
# resumed under the new range logs it as a note. Only the retired `enhancer` (TasNet) and the
# `codec-gan` experiment keep the old range they were trained on.
WIDE_LEVEL_DB = (-60.0, -5.0)


@dataclass(frozen=True)
class Recipe:
    name: str
    task: str                  # data task: separate | enhance | codec
    config: dict[str, Any]     # network config (arch + fields)
    batch: int = 4
    seconds: float = 3.0
    lr: float = 1e-3
    extra: dict[str, Any] = field(default_factory=dict)  # enhancement loss weights
    adversarial: dict[str, Any] | None = None  # train.adversarial.Adversarial options, or none
    level_db: tuple[float, float] = WIDE_LEVEL_DB  # training mixtures' level range, dBFS RMS
    # validation metric that picks the best checkpoint when it was measured (see loop.evaluate);
    # None: the task's default (SI-SDR for separation, PESQ-WB for enhancement and the codec)
    select_by: str | None = None
    clean_share: float = CLEAN_SHARE  # codec: share of examples with clean input (data.CLEAN_SHARE)
    # parameters whose names start with one of these stay as loaded (not trained). Freezing the
    # codec's encoder and quantiser keeps its bitstream and priors as they were.
    frozen: tuple[str, ...] = ()


def optimised_names(model, frozen: tuple[str, ...] = ()) -> list[str]:
    """Names of the parameters a recipe with these `frozen` prefixes trains, in the order of
    Adam's state: the `optim.<i>.*` tensors of a run checkpoint belong to the i-th name."""
    return [n for n, p in model.named_parameters() if p.requires_grad and not n.startswith(frozen)]


# Default enhancer from step 13,000: power-law compressed spectra (Braun & Tashev 2021) at a
# weight whose gradient norm matches SI-SDR's on the shipped checkpoint (14.8 vs 57 at weight
# 1); the level term, whose L1 gradient was 4× SI-SDR's, cut to 0.1 (the compressed term
# already sees level errors).
_SISDR_COMPRESSED = {"stft_weight": 0.0, "level_weight": 0.1, "compressed_weight": 5.0}
# Tiny enhancer from its step 8,250 (2026-12-02): the same compressed-spectra term, weight 10,
# whose gradient norm matches SI-SDR's on that checkpoint (6.0 vs 0.57 at weight 1; level 2.9
# at weight 1, so its 0.5 stays). Before that step, and in the committed front-end ablation,
# the tiny models had −SI-SDR + 0.5 × level (dB) only (see losses.enhancement_loss for why no
# STFT term). The front-end twins follow the main recipe, so they still differ only in the
# front-end.
_TINY_SISDR_COMPRESSED = {"stft_weight": 0.0, "level_weight": 0.5, "compressed_weight": 10.0}
# Codec: −SI-SDR + MR-STFT (weight 1). Tried from its step 13,750 (2026-12-01): weight moved
# from SI-SDR to magnitudes (SI-SDR 0.3, MR-STFT 1, 3-resolution compressed magnitude 10;
# gradient norms on that checkpoint were 8.1, 8.2 and 0.79 at weight 1): after 750 steps
# MR-STFT 2.53 → 2.45 but validation PESQ-WB 1.267 → 1.230, so it was stopped and not kept.
_CODEC_SISDR_STFT = {"stft_weight": 1.0}
# Codec + intelligibility (2026-12-03, thirteenth session): the same loss + 1 − STOI as a
# differentiable term (losses.approx_stoi: within 0.015 of pystoi on 48 validation clips). Why: on
# noisy input the codec's STOI (0.694 at 2.5 kbit/s) is below Opus 6's (0.751), and STOI is
# blind to band gains, so the muffled top band is not what it penalises: the band envelopes
# that do not follow the clean speech's are. Weight 10: on the step-57,000 checkpoint (8
# validation clips) the gradient norms at weight 1 were 12–15 (−SI-SDR), 15 (MR-STFT), 1.7 (STOI).
# Validation STOI (3 kbit/s) 0.685 → 0.714 / 0.720 / 0.721 / 0.720 at steps 1,000–4,000 of the
# first run, PESQ-WB 1.350 → 1.338: flat, so from step 4,650 weight 30 (STOI 0.740 at 8,000).
# Not shipped: bench STOI up, DNSMOS down (codec card, thirteenth session).
_CODEC_STOI = {"stft_weight": 1.0, "stoi_weight": 30.0}
# Codec decoder, twenty-eighth session (2026-12-05): the same loss + the frame-pattern term
# (losses.frame_pattern_loss: band energy by position in the 20 ms code frame, shape against
# the reference's). Weight 1: on the shipped weights' decoder (3 batches) the gradient norms at
# weight 1 were 10 (−SI-SDR), 57–70 (MR-STFT), 35–50 (STOI at its 30), 76–91 (this term).
_CODEC_PATTERN = dict(_CODEC_STOI, pattern_weight=1.0)
# The same loss + 10 × the share of the output's energy above 1.5 kHz that is one waveform
# repeated every 20 ms (losses.frame_template_share: 0.10–0.20 on the shipped weights' training
# batches, 0.008 for the targets); gradient norm 6–10 at weight 1 against MR-STFT's 51–88.
_CODEC_TEMPLATE = dict(_CODEC_STOI, template_weight=10.0)
# Its output (validation PESQ-WB 1.408 → 1.451 in 1,000 steps) kept the template at 1–1.5 kHz
# (share 0.10, the speech's 0.01) and showed an edge in the spectrum at 1.5 kHz: the same term
# averaged over four bands from 1 kHz.
_CODEC_TEMPLATE_BANDS = dict(_CODEC_STOI, template_weight=10.0,
                             template_bands=((1000, 1500), (1500, 2000), (2000, 4000), (4000, 8000)))
# Twenty-ninth session: the same with SI-SDR scored below 1 kHz only (losses.enhancement_loss's
# `sisdr_below_hz`): above it the harmonics' phase cannot follow from the codes, and a waveform
# loss there asks for the low-energy wash the decoder learned; the magnitude terms (MR-STFT's
# log magnitudes at 15.6 Hz resolution, STOI's envelopes) still ask for the harmonics.
_CODEC_TEMPLATE_BANDS_LOWPASS = dict(_CODEC_TEMPLATE_BANDS, sisdr_below_hz=1000.0)
_CODEC_CODES = ("encoder.", "rvq.")  # what makes the codes: frozen when only the decoder learns
# Codec, adversarial fine-tuning (2026-12-02, from the plain run's checkpoint): the same
# reconstruction loss + a small multi-scale STFT discriminator (hinge + relative feature
# matching, EnCodec-style) on 0.5 s crops of 4 of the 8 examples (+30 % step time; see
# train.adversarial); the discriminator trains alone for its first 300 steps. Why: the plain
# codec's output above ~1 kHz is envelope-shaped noise (card). Weights as DAC's (adv 1, FM 2);
# measured on the checkpoint after the warm-up (step 14,000, two batches), gradient norms at
# weight 1: reconstruction 10–40, adversarial 2.1–2.8, feature matching 0.4–0.6.
_CODEC_ADV = {"weight": 1.0, "fm_weight": 2.0, "channels": 16, "crop_s": 0.5, "examples": 4, "lr": 2e-4,
              "warmup": 300}
# MetricGAN+ critic for the default enhancer (train.metric_gan): PESQ on the first 8 of the 16
# clips per step; the critic learns alone for its first 200 steps. Weight 3: measured after
# the critic's warm-up (2026-12-03, three batches), the enhancer's gradient norms were 64–75
# for its reconstruction loss and 9–18 for this term at weight 1 (steps 0–296 ran at 1). At
# step 1,500 (weight 3) they were 56–68 and 39–47, and validation PESQ-WB had not moved
# (1.954 → 1.937 raw, 1.958 EMA): weight 10 from step 1,663 (its next checkpoint), to see
# whether the critic's gradient points anywhere PESQ agrees with. Result (EMA, step 3,000,
# shipped): +0.028 PESQ-WB on two other validation draws, of which about +0.010 is the critic's
# (a control without it gained +0.017 / +0.019; models/enhancer.md).
_METRIC_GAN = {"kind": "metric", "weight": 10.0, "examples": 8, "channels": 16, "lr": 5e-4, "warmup": 200}
# Default enhancer v2 (2026-12-02, third session): the tiny enhancer's design at 32 ms frames
# (n 512, hop 256: 31 Hz bins resolve pitch harmonics, which the TasNet enhancer's 8 ms
# kernels cannot) with a dense learned DFT-initialised transform and a GRU of 256 or 384 units
# (1.45 M / 2.50 M parameters). Why: the 1.54 M TasNet enhancer ended level with the 84 k tiny
# model in PESQ-WB (1.79 vs 1.75), so its capacity was not the limit; its time-frequency grid
# was the suspect. Measured on one thread, batch 16 × 3 s: 1.3 / 1.6 s per step (tiny: 1.5).
_GRU_ENHANCER = dict(arch="gru_enhancer", n_fft=512, hop=256, layers=2, frontend="dense")
_GRU_DF = dict(_GRU_ENHANCER, hidden=256, df_bins=128, df_order=3)  # the shipped default enhancer's network
_MASKNET = dict(arch="masknet", n_filters=256, kernel=128, bottleneck=128, hidden=256, layers=7, repeats=2)

RECIPES: dict[str, Recipe] = {
    "separator": Recipe("separator", "separate", dict(_MASKNET, task="separate", n_src=2), batch=4, seconds=2.0),
    "separator-stft": Recipe("separator-stft", "separate",
                             dict(_MASKNET, task="separate", n_src=2, trainable_frontend=False), batch=4, seconds=2.0),
    # Twice as deep (4 repeats of the 7 dilated blocks: 28 blocks, ~4 s receptive field, 2.99 M
    # parameters), grown from the 2-repeat weights with `--init-from`: the new blocks start with
    # zero residual and skip outputs (loop.warm_start), so training starts from the trained
    # function. Why: the 2-repeat separator's training loss had come down to its validation
    # score and flattened (7.5 dB SI-SDRi; more steps, 4 s segments and wider speed
    # perturbation each moved it ≤ 0.1 dB): underfitting, so capacity is the next lever.
    "separator-deep": Recipe("separator-deep", "separate", dict(_MASKNET, task="separate", n_src=2, repeats=4),
                             batch=4, seconds=2.0),
    "separator-stft-deep": Recipe("separator-stft-deep", "separate",
                                  dict(_MASKNET, task="separate", n_src=2, repeats=4, trainable_frontend=False),
                                  batch=4, seconds=2.0),
    "enhancer": Recipe("enhancer", "enhance", dict(_MASKNET, task="enhance", n_src=1), batch=4, seconds=2.0,
                       extra=_SISDR_COMPRESSED, level_db=LEVEL_DB),
    "enhancer-tiny": Recipe("enhancer-tiny", "enhance", dict(arch="tiny_enhancer", frontend="butterfly"),
                            batch=16, seconds=3.0, extra=_TINY_SISDR_COMPRESSED),
    # The tiny model with a deep filter on its lowest 32 bins (0–2 kHz at 62.5 Hz) and 2 taps
    # (this 8 ms hop and the one before: no added latency); 95.9 k parameters (limit 100 k).
    # Warm-started from enhancer-tiny, whose function it starts as.
    "enhancer-tiny-df": Recipe("enhancer-tiny-df", "enhance", dict(arch="tiny_enhancer", frontend="butterfly",
                                                                   df_bins=32, df_order=2),
                               batch=16, seconds=3.0, extra=_TINY_SISDR_COMPRESSED),
    "enhancer-tiny-fft": Recipe("enhancer-tiny-fft", "enhance", dict(arch="tiny_enhancer", frontend="fft"),
                                batch=16, seconds=3.0, extra=_TINY_SISDR_COMPRESSED),
    "enhancer-tiny-dense": Recipe("enhancer-tiny-dense", "enhance", dict(arch="tiny_enhancer", frontend="dense"),
                                  batch=16, seconds=3.0, extra=_TINY_SISDR_COMPRESSED),
    "enhancer-gru": Recipe("enhancer-gru", "enhance", dict(_GRU_ENHANCER, hidden=256), batch=16, seconds=3.0,
                           extra=_TINY_SISDR_COMPRESSED),
    # One frame (16 ms) of lookahead; warm-started from enhancer-gru (`--init-from`), it
    # starts as that model delayed by a frame.
    "enhancer-gru-la1": Recipe("enhancer-gru-la1", "enhance", dict(_GRU_ENHANCER, hidden=256, lookahead=1),
                               batch=16, seconds=3.0, extra=_TINY_SISDR_COMPRESSED),
    # Deep filter (nets/tiny.py; DeepFilterNet's idea) on the lowest 128 bins (0–4 kHz) with
    # 3 taps (this frame and the 2 before: no added latency); warm-started from enhancer-gru,
    # whose function it starts as (the filter head and the new input columns are zero).
    "enhancer-gru-df": Recipe("enhancer-gru-df", "enhance", _GRU_DF,
                              batch=16, seconds=3.0, extra=_TINY_SISDR_COMPRESSED),
    # The shipped default enhancer fine-tuned with a MetricGAN+ PESQ-WB critic added to its
    # loss (train.metric_gan); warm-started or resumed from enhancer-gru-df, same network.
    "enhancer-gru-df-metric": Recipe("enhancer-gru-df-metric", "enhance", _GRU_DF, batch=16, seconds=3.0,
                                     extra=_TINY_SISDR_COMPRESSED, adversarial=_METRIC_GAN),
    # The shipped default enhancer with 384 GRU units a layer instead of 256 (2.89 M parameters),
    # grown from its weights by `python -m audioe2e.train.widen` (the same function at the
    # start); same loss and critic. Twenty-ninth session: the shipped model gains as much PESQ
    # on training mixtures as on validation ones, so it underfits. Result: 6,359 steps (4.3 h,
    # the last 2 h 10 min on two ranks; twenty-ninth and thirtieth sessions) from the widened
    # weights with a fresh critic, validation PESQ-WB 2.003 against the shipped 2.024, flat
    # since step 3,500 (enhancer card): not kept.
    "enhancer-gru-df-metric-wide": Recipe("enhancer-gru-df-metric-wide", "enhance", dict(_GRU_DF, hidden=384),
                                          batch=16, seconds=3.0, extra=_TINY_SISDR_COMPRESSED,
                                          adversarial=_METRIC_GAN),
    # The shipped default enhancer given three frames (48 ms) of lookahead at the GRU input
    # (80 ms latency in all), grown from its last checkpoint with the new input columns at zero
    # (it starts as the shipped model, delayed), critic carried. Why: the issue allows
    # lookahead, and one frame of it (`enhancer-gru-la1`, without the critic) was level. Result
    # (thirty-first session, 3,134 steps annealed from 1e-4 on two ranks): +0.011…+0.014
    # PESQ-WB on two validation draws, as much as a cycle without lookahead: not kept (card).
    "enhancer-gru-df-metric-la3": Recipe("enhancer-gru-df-metric-la3", "enhance", dict(_GRU_DF, lookahead=3),
                                         batch=16, seconds=3.0, extra=_TINY_SISDR_COMPRESSED,
                                         adversarial=_METRIC_GAN),
    "enhancer-gru-wide": Recipe("enhancer-gru-wide", "enhance", dict(_GRU_ENHANCER, hidden=384), batch=16,
                                seconds=3.0, extra=_TINY_SISDR_COMPRESSED),
    "codec": Recipe("codec", "codec", dict(arch="codec"), batch=8, seconds=2.0, lr=1e-3, extra=_CODEC_SISDR_STFT),
    "codec-gan": Recipe("codec-gan", "codec", dict(arch="codec"), batch=8, seconds=2.0, lr=3e-4,
                        extra=_CODEC_SISDR_STFT, adversarial=_CODEC_ADV, level_db=LEVEL_DB),
    # warm-started from codec, same network; its best checkpoint is the one with the best STOI,
    # the metric it trains for (by PESQ-WB its step 1,000 won: PESQ fell as STOI rose)
    "codec-stoi": Recipe("codec-stoi", "codec", dict(arch="codec"), batch=8, seconds=2.0, lr=1e-4, extra=_CODEC_STOI,
                         select_by="stoi"),
    # codec-stoi (shipped weights, `--init-from`) with the default enhancer's MetricGAN+ PESQ-WB
    # critic added to the same loss (2026-12-05, twenty-third session). Why: the clean-input
    # targets (PESQ-NB above Codec 2 3200, DNSMOS above Opus 6) are the ones still short, and
    # the annealed plain run raised PESQ-NB by only +0.024; the critic asks for PESQ directly.
    # PESQ-WB, not -NB: the narrow-band model ignores everything above 3.4 kHz, so it would give
    # the muffled top band no gradient. Best checkpoint by validation PESQ-WB, what it trains for.
    # Result (6,031 steps, annealed, moving average): +0.09 clean PESQ-NB, but −0.06…−0.10
    # DNSMOS OVRL; shipped as a 0.5 blend with its starting weights (`train export --blend-with`),
    # which kept +0.05 PESQ-NB at level DNSMOS (codec card).
    "codec-metric": Recipe("codec-metric", "codec", dict(arch="codec"), batch=8, seconds=2.0, lr=1e-4,
                           extra=_CODEC_STOI, adversarial=_METRIC_GAN, select_by="pesq_wb"),
    # codec-stoi continued with half its inputs clean instead of 30 %: its decodes of clean
    # speech were the ones below the peers (PESQ-NB vs Codec 2, DNSMOS vs Opus 6), its noisy
    # ones above them. Warm-started from codec-stoi, same network and loss.
    "codec-stoi-clean": Recipe("codec-stoi-clean", "codec", dict(arch="codec"), batch=8, seconds=2.0, lr=1e-4,
                               extra=_CODEC_STOI, select_by="stoi", clean_share=0.5),
    # The codec's decoder alone (encoder and quantiser frozen: the same codes for the same input,
    # so the same bitrate), warm-started from the shipped weights, without the critic (PESQ per
    # step would double the step time). Twenty-eighth session, the control and four variants:
    # -pattern adds the frame-pattern term against the 20 ms pattern in the output (codec card,
    # twenty-seventh session); -template a term against the fixed waveform the decoder repeats
    # every 20 ms above 1.5 kHz (card, twenty-eighth session); -template-bands the same per band,
    # shipped (step 2,000); -dft first re-expresses the decoder over the DFT synthesis basis
    # (`python -m audioe2e.train.reparam`, same function) and keeps that basis fixed, because the
    # trained synthesis had collapsed onto low frequencies (card); plain is the control.
    "codec-decoder": Recipe("codec-decoder", "codec", dict(arch="codec"), batch=8, seconds=2.0, lr=1e-4,
                            extra=_CODEC_STOI, frozen=_CODEC_CODES),
    "codec-decoder-pattern": Recipe("codec-decoder-pattern", "codec", dict(arch="codec"), batch=8, seconds=2.0,
                                    lr=1e-4, extra=_CODEC_PATTERN, frozen=_CODEC_CODES),
    "codec-decoder-template": Recipe("codec-decoder-template", "codec", dict(arch="codec"), batch=8, seconds=2.0,
                                     lr=3e-5, extra=_CODEC_TEMPLATE, frozen=_CODEC_CODES),
    "codec-decoder-template-bands": Recipe("codec-decoder-template-bands", "codec", dict(arch="codec"), batch=8,
                                           seconds=2.0, lr=3e-5, extra=_CODEC_TEMPLATE_BANDS, frozen=_CODEC_CODES),
    # Twenty-ninth session: the decoder alone with the codec-gan discriminator added to the
    # shipped recipe's loss, at 3× codec-gan's weights (this loss's gradient norms are ~3× the
    # plain loss's: MR-STFT 51–88 and STOI 35–50 on the shipped decoder). Why: the collapse of
    # the synthesis is what a regression loss asks for where the fine structure cannot be
    # predicted (the -dft runs: a full-rank basis filled in noise and tones), and a critic is
    # the usual remedy; codec-gan tried it on the whole network for 5,000 steps only.
    # Results of this and the next two: noise or steady tones above ~1 kHz, never harmonics,
    # and PESQ down (-gan: −0.25 PESQ-WB for +0.02 DNSMOS); none kept (codec card).
    "codec-decoder-gan": Recipe("codec-decoder-gan", "codec", dict(arch="codec"), batch=8, seconds=2.0, lr=1e-4,
                                extra=_CODEC_TEMPLATE_BANDS, frozen=_CODEC_CODES,
                                adversarial=dict(_CODEC_ADV, weight=3.0, fm_weight=6.0)),
    "codec-decoder-lowpass": Recipe("codec-decoder-lowpass", "codec", dict(arch="codec"), batch=8, seconds=2.0,
                                    lr=3e-5, extra=_CODEC_TEMPLATE_BANDS_LOWPASS, frozen=_CODEC_CODES),
    "codec-decoder-dft-lowpass": Recipe("codec-decoder-dft-lowpass", "codec", dict(arch="codec"), batch=8,
                                        seconds=2.0, lr=3e-5, extra=_CODEC_TEMPLATE_BANDS_LOWPASS,
                                        frozen=(*_CODEC_CODES, "decoder.10.")),
    "codec-decoder-dft": Recipe("codec-decoder-dft", "codec", dict(arch="codec"), batch=8, seconds=2.0, lr=1e-4,
                                extra=_CODEC_STOI, frozen=(*_CODEC_CODES, "decoder.10.")),
    # Twenty-ninth session: the DFT synthesis basis with the template term. Why: the -dft run's
    # new steady tones (~2.6, 3.4, 5.2 kHz) sit on the 50 Hz code-frame grid, which is what
    # the template term penalises; warm-started from the shipped (template-bands) weights.
    # Result: validation PESQ-WB 1.462 → 1.422 / 1.395 at steps 500 / 1,000: not kept.
    "codec-decoder-dft-template-bands": Recipe("codec-decoder-dft-template-bands", "codec", dict(arch="codec"),
                                               batch=8, seconds=2.0, lr=3e-5, extra=_CODEC_TEMPLATE_BANDS,
                                               frozen=(*_CODEC_CODES, "decoder.10.")),
}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise KeyError(f"unknown recipe '{name}' (known: {', '.join(RECIPES)})")
    return RECIPES[name]


def loss_for(recipe: Recipe, model) -> Callable:
    from . import losses

    if recipe.task == "separate":
        return lambda est, ref: losses.pit_loss(est, ref)
    if recipe.task == "enhance":
        return lambda est, ref: losses.enhancement_loss(est, ref, **recipe.extra)
    if recipe.task == "codec":
        return lambda est, ref: model.training_loss(est, ref, **recipe.extra)
    raise ValueError(recipe.task)
