"""The parameter-efficient baselines, alone and composed with diff-tuning, on a randomly
initialised tiny DiT (the tiny profile's architecture), through the real shared trainer.

For every method: exactly its declared parameters are trainable; a few training steps change each
of them and leave every frozen parameter bit-identical; a checkpoint loaded into a freshly
prepared model reproduces the trained model; an interrupted run resumes bit-identically.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from diffusers import DiTTransformer2DModel

from bench.families.class_transfer import labelled_batch
from bench.backbone import DiTBackbone, eps_prediction, noise_schedule
from bench.data import ImageSet
from bench.errors import BenchError
from bench.method import TrainContext
from bench.registry import build_method, composed_names, method_names
from bench.spec import TrainSpec
from bench.tasks import load_task
from bench.trainer import latest_checkpoint, load_checkpoint_state, step_seed, train

TASK = load_task("dit-transfer", "tiny")
CONFIG = TASK.spec.backbone.config
LAYERS = CONFIG["num_layers"]
HIDDEN = CONFIG["num_attention_heads"] * CONFIG["attention_head_dim"]
BASES = ["bitfit", "lora", "adaptformer", "vpt-deep", "difffit"]
METHODS = BASES + [f"{b}+diff-tuning" for b in BASES]


def _block(name: str) -> int | None:
    m = re.match(r"transformer_blocks\.(\d+)\.", name)
    return int(m.group(1)) if m else None


# What each method declares it trains, written independently of the implementations.
DECLARED = {
    "bitfit": lambda n: n.endswith(".bias"),
    "lora": lambda n: re.fullmatch(r"transformer_blocks\.\d+\.attn1\.to_[qkv]\.lora_[AB]\.default\.weight", n) is not None,
    "adaptformer": lambda n: ".adaptformer." in n,
    "vpt-deep": lambda n: n.endswith(".vpt_prompts"),
    "difffit": lambda n: n.endswith(".bias") or "class_embedder" in n
    or ("difffit_gamma" in n and _block(n) < LAYERS // 2),
}


def tiny_dit(seed: int = 0) -> DiTTransformer2DModel:
    torch.manual_seed(seed)
    model = DiTTransformer2DModel(**CONFIG)
    for module in model.modules():  # as bench.backbone does: the trainer drops labels itself
        if hasattr(module, "class_embedder"):
            module.class_embedder.dropout_prob = 0.0
    return model


def context(model) -> TrainContext:
    backbone = DiTBackbone(model, None, 0.18215, TASK.spec.backbone.num_source_classes, "test")
    bank = torch.rand(16, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return TrainContext(backbone, TASK.spec.datasets["flowers102"], 1000, 8, extra_data=lambda name: {"x0": bank, "y": torch.full((len(bank),), 64)})


def image_set(n: int = 32) -> ImageSet:
    rng = np.random.default_rng(0)
    return ImageSet(rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int64))


def run_training(method_name, ckpt_dir, steps, *, resume=False, checkpoint_every=100, overrides=None):
    method = build_method(method_name, overrides or {})
    ctx = context(tiny_dit())
    spec = TrainSpec(batch_size=8, steps=steps, lr=1e-4, checkpoint_every=checkpoint_every)
    data = image_set()
    outcome = train(method, ctx, lambda: labelled_batch(data, ctx.backbone, spec.batch_size, spec), spec,
                    noise_schedule(TASK.spec.diffusion), seed=3, steps=steps, ckpt_dir=ckpt_dir, resume=resume)
    return method, ctx.backbone.model, outcome


def prepared(method_name, seed_before_prepare=0, overrides=None):
    method = build_method(method_name, overrides or {})
    model = tiny_dit()
    torch.manual_seed(seed_before_prepare)
    model = method.prepare(model, context(model))
    return method, model


def snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("name", METHODS)
def test_trains_exactly_its_declared_parameters(name, tmp_path):
    base = name.split("+")[0]
    # The state train() starts from: the trainer seeds torch with step_seed(seed, -1) before prepare().
    method, start = prepared(name, seed_before_prepare=step_seed(3, -1))
    trainable = {n for n, _ in method.trainable_parameters(start)}
    declared = {n for n, _ in start.named_parameters() if DECLARED[base](n)}
    assert trainable == declared and trainable
    assert all(not p.requires_grad for n, p in start.named_parameters() if n not in declared)

    before = snapshot(start)
    _, trained, outcome = run_training(name, tmp_path, steps=3)
    after = snapshot(trained)
    assert after.keys() == before.keys()
    for n in before:
        if n in declared:
            assert not torch.equal(after[n], before[n]), f"{name}: declared parameter {n} did not train"
        else:
            assert torch.equal(after[n], before[n]), f"{name}: frozen parameter {n} changed"
    assert outcome.trainable_params == sum(before[n].numel() for n in declared)


@pytest.mark.parametrize("name", ["bitfit", "lora", "adaptformer", "difffit"])
def test_zero_initialised_methods_start_at_the_pretrained_function(name):
    model = tiny_dit()
    x, t, y = torch.randn(4, 3, 16, 16), torch.tensor([1, 200, 500, 999]), torch.tensor([0, 3, 9, 64])
    with torch.no_grad():
        reference = eps_prediction(model, x, t, y)
        method = build_method(name)
        model = method.prepare(model, context(model))
        assert torch.allclose(eps_prediction(model, x, t, y), reference, atol=1e-6)


def test_vpt_prompts_reach_every_block_and_keep_the_sequence_length():
    method, model = prepared("vpt-deep")
    lengths = []
    for block in model.transformer_blocks:
        block.register_forward_hook(lambda m, a, out: lengths.append(out.shape[1]))
    seen = []
    model.transformer_blocks[0].attn1.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[1]))
    with torch.no_grad():
        out = eps_prediction(model, torch.randn(2, 3, 16, 16), torch.tensor([5, 9]), torch.tensor([1, 2]))
    patches = (16 // CONFIG["patch_size"]) ** 2
    assert out.shape == (2, 3, 16, 16)
    assert seen == [patches + method.config.tokens]  # attention sees prompts + image tokens
    assert lengths == [patches] * LAYERS  # and every block hands on only the image tokens
    # The prompts matter: removing them changes the output.
    with torch.no_grad():
        for block in model.transformer_blocks:
            block.vpt_prompts.zero_()
        assert not torch.allclose(eps_prediction(model, torch.randn(2, 3, 16, 16), torch.tensor([5, 9]),
                                                 torch.tensor([1, 2])), out)


def test_lora_goes_through_peft_and_rank_is_configurable():
    from peft.tuners.lora import Linear as LoraLinear

    for rank, overrides in ((8, {}), (4, {"rank": "4"})):
        method, model = prepared("lora", overrides=overrides)
        assert isinstance(model.transformer_blocks[0].attn1.to_q, LoraLinear)
        count = sum(p.numel() for _, p in method.trainable_parameters(model))
        assert count == LAYERS * 3 * rank * (HIDDEN + HIDDEN)
    composed = build_method("lora+diff-tuning", {"lora.rank": "16", "diff-tuning.tau": "0.5"})
    assert composed.parts[0].config.rank == 16 and composed.parts[1].config.tau == 0.5


def test_difffit_gammas_are_in_the_first_half_and_lr_is_its_own():
    method, model = prepared("difffit")
    blocks = {_block(n) for n, _ in model.named_parameters() if "difffit_gamma" in n}
    assert blocks == set(range(LAYERS // 2))
    assert method.learning_rate(1e-4) == 1e-3
    assert build_method("difffit+diff-tuning").learning_rate(1e-4) == 1e-3
    assert build_method("difffit", {"lr": "5e-4"}).learning_rate(1e-4) == 5e-4
    assert build_method("bitfit").learning_rate(1e-4) == 1e-4
    method, model = prepared("difffit", overrides={"class_embedding": "false", "gamma_blocks": "1"})
    names = {n for n, _ in method.trainable_parameters(model)}
    assert not any("class_embedder" in n for n in names)
    assert {_block(n) for n in names if "difffit_gamma" in n} == {0}


@pytest.mark.parametrize("name", METHODS)
def test_checkpoint_round_trips_into_a_fresh_model(name, tmp_path):
    method, trained, _ = run_training(name, tmp_path, steps=3)
    ckpt = latest_checkpoint(tmp_path)
    state = load_checkpoint_state(ckpt)
    assert set(state) == {n for n, _ in method.trainable_parameters(trained)}
    # A fresh process: new method object, freshly loaded backbone, prepare() with other RNG state.
    fresh_method, fresh = prepared(name, seed_before_prepare=12345)
    fresh_method.load_state_dict(fresh, state)
    assert snapshot(fresh).keys() == snapshot(trained).keys()
    for n, p in trained.named_parameters():
        assert torch.equal(p, dict(fresh.named_parameters())[n]), n
    x, t, y = torch.randn(2, 3, 16, 16), torch.tensor([10, 700]), torch.tensor([1, 64])
    with torch.no_grad():
        assert torch.equal(eps_prediction(trained.eval(), x, t, y), eps_prediction(fresh.eval(), x, t, y))


@pytest.mark.parametrize("name", ["lora+diff-tuning", "vpt-deep", "difffit+diff-tuning", "adaptformer"])
def test_resume_is_bit_identical(name, tmp_path):
    _, straight, _ = run_training(name, tmp_path / "a", steps=4)
    run_training(name, tmp_path / "b", steps=2, checkpoint_every=2)
    _, resumed, outcome = run_training(name, tmp_path / "b", steps=4, resume=True)
    assert outcome.resumed_from == 2
    for n, p in straight.named_parameters():
        assert torch.equal(p, dict(resumed.named_parameters())[n]), n


def test_registry_lists_a_diff_tuning_composition_for_every_parameter_efficient_method():
    bayes = ["bnn+dreambooth", "bnn+lora", "bnn-norm+dreambooth"]  # the classes' own `listed_with`
    tuners = [n for n in method_names() if n.startswith("peft:")]  # baselines/peft/*.json
    assert sorted(composed_names()) == sorted([*(f"{b}+diff-tuning" for b in BASES + ["controlnet", *tuners]), *bayes])
    for name in composed_names():
        family = ("controlnet" if name.startswith("controlnet") else "few-shot" if name in bayes
                  else "class-transfer")
        method = build_method(name, family=family)
        assert method.full_name == name


@pytest.mark.parametrize("name", BASES)
def test_the_sampler_runs_the_prepared_model(name, tmp_path):
    """Sampling (classifier-free guidance doubles the batch) goes through the injected modules."""
    from bench.sampling import sample

    method, model = prepared(name)
    with torch.no_grad():  # a random DiT predicts huge noise and every pixel clips; keep it in range
        model.proj_out_2.base_layer.weight.mul_(0.01) if hasattr(model.proj_out_2, "base_layer") \
            else model.proj_out_2.weight.mul_(0.01)
    backbone = context(model).backbone
    kwargs = dict(diffusion=TASK.spec.diffusion, scheduler="ddim", steps=2, guidance_scale=1.5, batch_size=4, seed=0)
    images = sample(backbone, torch.tensor([0, 1, 2, 3]), **kwargs)
    assert images.shape == (4, 16, 16, 3) and images.dtype == torch.uint8
    with torch.no_grad():  # and the method's parameters are what it samples with (random, not
        # constant, shifts: LayerNorm would cancel a constant added to a prompt token)
        for _, p in method.trainable_parameters(model):
            p.add_(0.5 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    assert not torch.equal(sample(backbone, torch.tensor([0, 1, 2, 3]), **kwargs), images)


def test_diff_tuning_bank_rows_appear_at_batch_4_with_the_declared_mean():
    """int(4 x 0.2) = 0 dropped the bank for a whole run; below one row it is now drawn with
    probability batch x ratio from the step's seeded RNG. Where floor(batch x ratio) >= 1 the count
    is the official floor (16 x 0.2 -> 3, 32 x 0.2 -> 6) with no draw, so committed runs stay."""
    from baselines.diff_tuning import bank_rows

    method = build_method("diff-tuning")
    ctx = context(tiny_dit())
    ctx.batch_size = 4
    data = image_set()
    counts = []
    for step in range(400):
        torch.manual_seed(step)
        batch = method.make_batch(labelled_batch(data, ctx.backbone, 4, TrainSpec(batch_size=4, steps=1, lr=1e-4,
                                                                                   checkpoint_every=1)), ctx)
        assert len(batch["x0"]) == 4
        counts.append(int(batch["bank"].sum()))
    assert set(counts) == {0, 1} and abs(np.mean(counts) - 4 * 0.2) < 0.06  # 400 draws: sd 0.02
    state = torch.random.get_rng_state()
    assert (bank_rows(16, 0.2), bank_rows(32, 0.2), bank_rows(10, 0.2)) == (3, 6, 2)
    assert torch.equal(torch.random.get_rng_state(), state)  # no draw where the floor is a whole row


def test_diff_tuning_refuses_a_bank_that_would_never_be_drawn():
    from bench.runner import check_run

    task = load_task("dit-transfer", "tiny")
    check_run(task, build_method("diff-tuning"))
    small = task.with_overrides({"train.batch_size": 2, "train.steps": 2})
    with pytest.raises(BenchError, match=r"bank_ratio 0.2 at batch 2 over 2 steps draws 0.8 knowledge-bank rows"):
        check_run(small, build_method("diff-tuning"))
    check_run(small, build_method("diff-tuning", {"bank_ratio": "0"}))  # declared off: no bank asked for


def test_oracle_bank_replays_the_sources_own_training_images_and_needs_a_known_source():
    """knowledge_bank.oracle (issue 30): the bank is num_images real images of the source's training
    split (drawn by the bank's seed), encoded and null-labelled like a sampled bank; without a source
    domain on record (run-derived or published weights) it is refused at plan time in one line."""
    from bench.backbone import load_backbone
    from bench.data import synthetic
    from bench.families import family_class
    from bench.knowledge_bank import oracle_bank, source_domain
    from bench.runner import check_run

    task = load_task("dit-transfer", "tiny").with_overrides({"knowledge_bank.oracle": True,
                                                             "knowledge_bank.num_images": 24})
    kb, spec = task.spec.knowledge_bank, task.spec
    images, key = oracle_bank(spec.backbone, kb, spec.image_size)
    train = synthetic(source_domain(spec.backbone, "test"), "train", spec.image_size).images
    rows = {train[i].tobytes(): i for i in range(len(train))}
    assert images.shape[0] == 24 and len({rows[im.numpy().tobytes()] for im in images}) == 24  # real, distinct
    again, key2 = oracle_bank(spec.backbone, kb, spec.image_size)
    assert torch.equal(images, again) and key == key2 and key.startswith("oracle-")
    other, _ = oracle_bank(spec.backbone, kb.model_copy(update={"seed": 1}), spec.image_size)
    assert not torch.equal(images, other)  # the bank's seed draws them

    fam = family_class(task.file.family)(task, "food101")
    fam.bind(load_backbone(spec.backbone))
    bank = fam.extra("knowledge_bank")  # what Diff-Tuning's rows are drawn from
    assert torch.allclose(bank["x0"], fam.backbone.encode(images, batch_size=8))
    assert bool((bank["y"] == fam.backbone.null_class).all())

    check_run(task, build_method("diff-tuning"))  # the tiny source names its domain: accepted
    derived = task.with_overrides({"backbone.weights": None, "backbone.weights_sha256": None, "backbone.from_scratch": True})
    with pytest.raises(BenchError, match=r"knowledge_bank.oracle .* no build manifest naming its source domain"):
        check_run(derived, build_method("diff-tuning"))
