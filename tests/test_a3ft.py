"""attention-ft and a3ft (the limited-data methods of Moon et al. 2022) on a small random UNet2DModel,
and their parameter counts on the paper's backbone (iDDPM ImageNet-64, meta tensors)."""

from __future__ import annotations

import pytest
import torch

from bench.backbone.unet2d import UNet2DBackbone, build_unet
from bench.method import TrainContext
from bench.params import count_parameters
from bench.registry import build_method
from bench.spec import BackboneSpec

# Attention at both levels, so a3ft shares its modules over two widths (32 and 64), as over 384 and 512.
SMALL = {"sample_size": 16, "in_channels": 3, "out_channels": 6, "block_out_channels": [32, 64],
         "layers_per_block": 1, "down_block_types": ["AttnDownBlock2D", "AttnDownBlock2D"],
         "up_block_types": ["AttnUpBlock2D", "AttnUpBlock2D"], "attention_head_dim": None, "num_attention_heads": 2,
         "attn_norm_num_groups": 32, "resnet_time_scale_shift": "scale_shift"}
X, T = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)), torch.tensor([5, 900])


def pretrained() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_unet(SMALL).eval()


def prepared(name: str, seed: int = 1, **overrides):
    model = pretrained()
    backbone = UNet2DBackbone(model, None, 1.0, "test")
    method = build_method(name, {k: str(v) for k, v in overrides.items()}, family="limited-data")
    torch.manual_seed(seed)  # the trainer seeds the global RNG before prepare()
    ctx = TrainContext(backbone=backbone, dataset=None, num_timesteps=1000, batch_size=2)  # type: ignore[arg-type]
    return method, method.prepare(model, ctx), backbone


def out(model) -> torch.Tensor:
    with torch.no_grad():
        return model(X, T).sample


def attention_names(backbone) -> set[str]:
    return {f"{prefix}.{n}" for prefix, m in backbone.module_group("attention") for n, _ in m.named_parameters()}


def trainable(method, model) -> set[str]:
    return {n for n, _ in method.trainable_parameters(model)}


def test_attention_ft_trains_exactly_the_attention_group_and_starts_at_the_pretrained_model():
    method, model, backbone = prepared("attention-ft")
    assert trainable(method, model) == attention_names(backbone)
    assert torch.equal(out(model), out(pretrained()))


def test_a3ft_trains_the_attention_group_and_its_adapters():
    method, model, backbone = prepared("a3ft")
    names = trainable(method, model)
    assert attention_names(backbone) <= names
    assert names - attention_names(backbone) == {f"a3ft.{n}" for n, _ in model.a3ft.named_parameters()}
    assert sorted(model.a3ft.fusion) == sorted(model.a3ft.cross) == ["32", "64"]  # shared per width
    assert len(model.a3ft.scaling) == len(backbone.group("attention")) == 2 + 1 + 4  # one per attention block
    loss = model(X, T).sample.square().mean()
    loss.backward()
    for n, p in model.named_parameters():
        assert (p.grad is not None) == (n in names), n


def test_a3ft_is_the_pretrained_model_up_to_alpha_init():
    """Not exactly: alpha_t = sigmoid(.) never reaches 0, so each attention output moves by
    alpha_init * (z_out - z_in). The departure shrinks in proportion to alpha_init."""
    reference = out(pretrained())
    gaps = {a: (out(prepared("a3ft", alpha_init=a)[1]) - reference).abs().max().item() for a in (1e-3, 1e-6)}
    assert 0 < gaps[1e-3] < 1e-2 * reference.abs().max().item()
    assert gaps[1e-6] < gaps[1e-3] / 100


def test_alpha_t_stays_in_the_unit_interval_for_random_timesteps():
    _, model, _ = prepared("a3ft")
    with torch.no_grad():
        for scaling in model.a3ft.scaling:  # as if trained: far from the initial constant
            for p in scaling.parameters():
                p.normal_(0, 3)
    torch.manual_seed(2)
    t = torch.randint(0, 1000, (64,))
    with torch.no_grad():
        model(torch.randn(64, 3, 16, 16), t)
        alphas = torch.cat([s(model.a3ft.temb) for s in model.a3ft.scaling], dim=1)
    assert alphas.min() >= 0 and alphas.max() <= 1 and alphas.std() > 0.1
    _, fresh, _ = prepared("a3ft")
    with torch.no_grad():
        fresh(X, T)
        assert torch.allclose(fresh.a3ft.scaling[0](fresh.a3ft.temb), torch.tensor(1e-3))


@pytest.mark.parametrize("name", ["attention-ft", "a3ft"])
def test_checkpoint_round_trip_reproduces_the_outputs(name):
    method, model, _ = prepared(name, seed=1)
    with torch.no_grad():  # stand-in for training: move every trainable parameter
        for _, p in method.trainable_parameters(model):
            p.add_(0.05 * torch.randn_like(p))
    state = {n: t.clone() for n, t in method.state_dict(model).items()}
    _, fresh, _ = prepared(name, seed=7)  # other adapter init; the checkpoint must override all of it
    assert not torch.equal(out(fresh), out(model))
    method.load_state_dict(fresh, state)
    assert torch.equal(out(fresh), out(model))


def test_parameter_shares_on_iddpm_imagenet64_match_the_paper():
    """A3FT Sec. 2.2-2.3: attention blocks 10.3% of the model; adapters 2.2M (1.8%), of which time
    fusion (+ cross attention) ~1.7M and time scaling ~0.5M. The paper rounds to 0.1M and 0.1%, so
    each count must fall in that rounding interval, the attention share within 0.1 point."""
    spec = BackboneSpec(kind="unet2d", weights="x.safetensors", config={"preset": "iddpm-imagenet64"})
    attention = count_parameters(build_method("attention-ft"), spec)
    a3ft = count_parameters(build_method("a3ft"), spec)
    adapters = a3ft.trainable - attention.trainable
    meta = UNet2DBackbone.build_without_weights(spec)  # the same preparation, to split the adapter count
    ctx = TrainContext(backbone=UNet2DBackbone.wrap_without_weights(meta, spec), dataset=None,  # type: ignore[arg-type]
                       num_timesteps=0, batch_size=0)
    a = build_method("a3ft").prepare(meta, ctx).a3ft
    fusion_cross = sum(p.numel() for m in (a.fusion, a.cross) for p in m.parameters())
    scaling = sum(p.numel() for p in a.scaling.parameters())
    print(f"\niDDPM ImageNet-64 backbone {attention.backbone:,}; attention blocks {attention.trainable:,} "
          f"({100 * attention.fraction:.2f}%); adapters {adapters:,} ({100 * adapters / a3ft.backbone:.2f}%: "
          f"fusion + cross attention {fusion_cross:,}, scaling {scaling:,}); "
          f"a3ft trains {a3ft.trainable:,} ({100 * a3ft.fraction:.2f}%)")
    assert sorted(a.fusion) == ["384", "512"] and len(a.scaling) == 15
    assert fusion_cross + scaling == adapters
    assert abs(100 * attention.fraction - 10.3) <= 0.1
    assert 2.15e6 <= adapters < 2.25e6 and 1.75 <= 100 * adapters / a3ft.backbone < 1.85
    assert 1.65e6 <= fusion_cross < 1.75e6 and 0.45e6 <= scaling < 0.55e6


def _train_steps(model, method, steps: int = 3) -> None:
    opt = torch.optim.Adam([p for _, p in method.trainable_parameters(model)], lr=1e-2)
    for step in range(steps):
        torch.manual_seed(100 + step)
        x, t = torch.randn(2, 3, 16, 16), torch.randint(0, 1000, (2,))
        model(x, t).sample.square().mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)


def test_the_gate_record_changes_no_number_and_counts_training_forwards_only(monkeypatch):
    """Diagnostics are observation only: the same steps with the record switched off give
    bitwise the same parameters and outputs; sampling (no grad) is not counted."""
    from baselines import a3ft

    method, model, _ = prepared("a3ft")
    _train_steps(model, method)
    out(model)  # a no-grad forward: not a training forward
    record = method.diagnostics(model, None, None)
    assert record["gate_forwards"] == 3 and len(record["gate_mean_per_block"]) == len(model.a3ft.scaling)
    assert 0 < record["gate_mean"] < 1 and record["gate_mean"] != pytest.approx(1e-3, rel=1e-9)  # the gate moved
    assert set(method.state_dict(model)) == {n for n, _ in method.trainable_parameters(model)}  # nothing registered
    assert not any("gate" in n for n in model.state_dict())

    def forward_without_record(self, block, z):  # the adapter forward as it was before the record
        key = str(z.shape[-1])
        z_out = self.cross[key](self.fusion[key](z, self.temb), z)
        alpha = self.scaling[block](self.temb)[:, None, :]
        return (1 - alpha) * z + alpha * z_out

    monkeypatch.setattr(a3ft.TimeAwareAdapters, "forward", forward_without_record)
    plain_method, plain, _ = prepared("a3ft")
    _train_steps(plain, plain_method)
    assert plain_method.diagnostics(plain, None, None) is None
    for (n, p), (n2, p2) in zip(model.named_parameters(), plain.named_parameters()):
        assert n == n2 and torch.equal(p, p2), n
    assert torch.equal(out(model), out(plain))


def test_other_methods_and_unprepared_a3ft_record_nothing():
    assert build_method("attention-ft").diagnostics(None, None, None) is None
    assert build_method("a3ft").diagnostics(None, None, None) is None
