"""The Anchor-SAM network: parameter counts, data flow, switches, precision, checkpoints."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from roadmap_cli.errors import UserError
from roadmap_cli.nn import build_model, count_parameters
from roadmap_cli.weights import load_model, load_sam2_encoder, load_variant, read_checkpoint, save_checkpoint

PAPER = {"t": 49.94e6, "s": 57.03e6, "b": 96.66e6, "l": 251.91e6}


@pytest.mark.parametrize("variant", ["t", "s", "b", "l"])
def test_parameter_count_matches_paper(variant):
    model = build_model(load_variant(variant), "meta")  # no weights allocated
    n = count_parameters(model)
    assert abs(n - PAPER[variant]) / PAPER[variant] < 1e-3, n


def test_t_parameter_breakdown_matches_spec():
    m = build_model(load_variant("t"), "meta")
    assert count_parameters(m.encoder.trunk) == 26_849_472
    assert count_parameters(m.fpn_dsa_attention) == 1_441_040
    assert count_parameters(m.decoder.msda_fusion) == 12_830_804
    assert count_parameters(m.decoder.msda_fusion.parallel_conv.branches[0]) == 2_187_024
    assert count_parameters(m.fpn_dsa_attention.dsa_layers[0]) == 357_688
    assert count_parameters(m.fpn_dsa_attention.dsa_layers[3]) == 362_832
    assert count_parameters(m.decoder.decoder_block4) == 4_410_048


def test_state_dict_layout_follows_spec():
    keys = set(build_model(load_variant("t"), "meta").state_dict())
    for k in ["encoder.trunk.pos_embed", "encoder.neck.convs.0.conv.weight",
              "fpn_dsa_attention.dsa_layers.0.spatial_gating_unit.dscn_x.input_proj.weight",
              "fpn_dsa_attention.dsa_layers.0.spatial_gating_unit.dscn_y.dw_conv.1.1.weight",
              "fpn_dsa_attention.dsa_layers.3.spatial_gating_unit.bfb_adapter.evidence_path.4.weight",
              "decoder.msda_fusion.parallel_conv.branches.3.dcnv3.mask.weight",
              "decoder.msda_fusion.spatial_fusion.attention_generator.6.bias",
              "decoder.msda_fusion.channel_fusion.swin_blocks.1.attn.relative_position_bias_table",
              "decoder.msda_fusion.channel_fusion.weight_decoder.0.weight",
              "decoder.decoder_block1.block.0.dcnv3.output_proj.weight", "decoder.decoder_block1.block.4.weight",
              "decoder.final_upsample.offset.weight", "decoder.output_conv.weight"]:
        assert k in keys, k
    assert "encoder.trunk.blocks.11.mlp.layers.1.weight" in keys


def test_anchor_transition_heads_switch():
    m = build_model(load_variant("t"), "meta")
    assert [m.encoder.trunk.blocks[i].attn.num_heads for i in (1, 3, 10)] == [1, 2, 4]
    m = build_model(load_variant("t").replace(anchor_transition_heads=False), "meta")
    assert [m.encoder.trunk.blocks[i].attn.num_heads for i in (1, 3, 10)] == [2, 4, 8]


def test_b_variant_has_no_global_attention_by_default():
    m = build_model(load_variant("b"), "meta")
    assert all(b.window_size > 0 for b in m.encoder.trunk.blocks)
    m = build_model(load_variant("b").replace(global_att_blocks=(12, 16, 20)), "meta")
    assert m.encoder.trunk.blocks[12].window_size == 0


def test_neck_top_down_switch():
    assert build_model(load_variant("t"), "meta").encoder.neck.fpn_top_down_levels == [0, 1, 2, 3]
    m = build_model(load_variant("t").replace(neck_top_down_all=False), "meta")
    assert m.encoder.neck.fpn_top_down_levels == [2, 3]


def test_normalisation_switch():
    m = build_model(load_variant("roadmap-compact"))
    x = torch.tensor([0.0, 127.5, 255.0]).view(1, 3, 1, 1)
    assert torch.allclose(m.normalize(x).flatten(), torch.tensor([-1.6, 0.0, 1.6]))
    m = build_model(load_variant("roadmap-compact").replace(normalization="imagenet"))
    y = m.normalize(torch.full((1, 3, 1, 1), 255 * 0.485))
    assert abs(float(y[0, 0])) < 1e-5


@pytest.mark.parametrize("size", [64, 96, 128])
def test_forward_shapes_any_multiple_of_32(tiny_cfg, size):
    torch.manual_seed(0)
    m = build_model(tiny_cfg).eval()
    with torch.no_grad():
        y = m(torch.randn(2, 3, size, size + 32))
    assert y.shape == (2, 1, size, size + 32) and torch.isfinite(y).all()


def test_full_t_variant_forward_small_input():
    m = build_model(load_variant("t")).eval()
    with torch.no_grad():
        y = m(torch.randn(1, 3, 64, 64))
    assert y.shape == (1, 1, 64, 64) and torch.isfinite(y).all()


def test_rejects_size_not_multiple_of_32(tiny_cfg):
    with pytest.raises(ValueError, match="multiples of 32"):
        build_model(tiny_cfg)(torch.randn(1, 3, 70, 64))


@pytest.mark.parametrize("ablation", [dict(use_dbcim=False), dict(use_mdcp=False), dict(use_bpe=False),
                                      dict(use_sca=False), dict(use_grr=False), dict(mdcp_plain_conv=True)])
def test_ablations_build_and_run(tiny_cfg, ablation):
    full = count_parameters(build_model(tiny_cfg))
    m = build_model(tiny_cfg.replace(**ablation)).eval()
    assert count_parameters(m) != full
    with torch.no_grad():
        assert m(torch.randn(1, 3, 64, 64)).shape == (1, 1, 64, 64)


def test_gradients_reach_every_parameter(tiny_cfg):
    torch.manual_seed(0)
    m = build_model(tiny_cfg).train()
    m(torch.randn(2, 3, 64, 64)).mean().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None]
    assert not missing, missing[:5]


def test_bf16_autocast_cpu_close_to_fp32(tiny_cfg):
    torch.manual_seed(0)
    m = build_model(tiny_cfg).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = torch.sigmoid(m(x))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = torch.sigmoid(m(x).float())
    assert torch.isfinite(low).all()
    assert (low - ref).abs().max() < 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_autocast_close_to_fp32(tiny_cfg, dtype):
    torch.manual_seed(0)
    m = build_model(tiny_cfg).cuda().eval()
    x = torch.randn(1, 3, 64, 64, device="cuda")
    with torch.no_grad():
        ref = torch.sigmoid(m(x))
        with torch.autocast("cuda", dtype=dtype):
            low = torch.sigmoid(m(x).float())
    assert torch.isfinite(low).all() and (low - ref).abs().max() < 0.05


def test_checkpoint_round_trip(tmp_path, tiny_cfg):
    torch.manual_seed(1)
    m = build_model(tiny_cfg).eval()
    path = save_checkpoint(tmp_path / "m.pt", m)
    ck = read_checkpoint(path)
    assert ck["format"] == "roadmap-checkpoint" and ck["model_config"]["name"] == "tiny-test"
    m2 = load_model(path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(m(x), m2(x))


def test_full_t_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    m = build_model(load_variant("t")).eval()
    path = save_checkpoint(tmp_path / "t.pt", m)
    m2 = load_model(path)
    for (k, a), (_, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k


def test_checkpoint_for_other_variant_is_clear_error(tmp_path, tiny_ckpt):
    with pytest.raises(UserError, match="is for variant 'tiny-test', not 'roadmap-compact'"):
        load_model("roadmap-compact", tiny_ckpt)


def test_bad_checkpoint_files(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_model(tmp_path / "none.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable PyTorch checkpoint"):
        load_model(junk)
    torch.save({"a": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not a roadmap checkpoint"):
        load_model(tmp_path / "other.pt")


def _fake_sam2(tmp_path, cfg):
    """A SAM2-style checkpoint: {'model': {'image_encoder.trunk.*', 'image_encoder.neck.*', other keys}}."""
    torch.manual_seed(3)
    enc = build_model(cfg).encoder.state_dict()
    sd = {f"image_encoder.{k}": torch.randn_like(v) for k, v in enc.items()}
    sd["memory_attention.layers.0.norm1.weight"] = torch.zeros(4)
    sd["no_obj_embed_spatial"] = torch.zeros(1, 64)
    path = tmp_path / "sam2.1_fake.pt"
    torch.save({"model": sd}, path)
    return path, sd


def test_sam2_checkpoint_loads_encoder(tmp_path, tiny_cfg):
    path, sd = _fake_sam2(tmp_path, tiny_cfg)
    m = build_model(tiny_cfg)
    n = load_sam2_encoder(m, path)
    assert n == len(m.encoder.state_dict())
    assert torch.equal(m.encoder.trunk.pos_embed, sd["image_encoder.trunk.pos_embed"])
    assert torch.equal(m.encoder.neck.convs[0].conv.weight, sd["image_encoder.neck.convs.0.conv.weight"])


def test_sam2_checkpoint_errors(tmp_path, tiny_cfg):
    m = build_model(tiny_cfg)
    with pytest.raises(UserError, match="not found"):
        load_sam2_encoder(m, tmp_path / "missing.pt")
    path, sd = _fake_sam2(tmp_path, tiny_cfg)
    wrong = build_model(tiny_cfg.replace(embed_dim=32, d_model=32))
    with pytest.raises(UserError, match="another Hiera size"):
        load_sam2_encoder(wrong, path)
    del sd["image_encoder.trunk.blocks.0.attn.qkv.weight"]
    torch.save({"model": sd}, tmp_path / "partial.pt")
    with pytest.raises(UserError, match="lacks 1 encoder keys"):
        load_sam2_encoder(m, tmp_path / "partial.pt")
    torch.save({"model": {"foo": torch.zeros(1)}}, tmp_path / "nosam.pt")
    with pytest.raises(UserError, match="not a SAM2 checkpoint"):
        load_sam2_encoder(m, tmp_path / "nosam.pt")


# ---------------------------------------------------------------- attention and the trunk's position embedding

attention_cases = st.tuples(
    st.integers(1, 3),  # batch (windows)
    st.integers(1, 4),  # heads
    st.integers(1, 70),  # queries
    st.integers(1, 70),  # keys
    st.sampled_from([8, 16, 32, 64]),  # head width
    st.booleans(),  # additive bias (Swin's relative positions and shift mask)
    st.sampled_from([0.5, 3.0, 12.0]),  # logit scale: 12 makes the softmax nearly one-hot
    st.integers(0, 2**16),
)


@settings(max_examples=150, deadline=None)
@given(attention_cases)
def test_attention_matches_sdpa(case):
    """``layers.attention``'s bf16 CPU path (matmul-softmax-matmul) against float32 SDPA on the same bf16 inputs,
    and its float32 / autograd calls are SDPA itself."""
    import torch.nn.functional as F

    from roadmap_cli.nn.layers import attention
    b, h, lq, lk, d, with_bias, spread, seed = case
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, h, n, d, generator=gen) for n in (lq, lk, lk))
    q = q * spread / d ** 0.25
    k = k * spread / d ** 0.25
    bias = torch.randn(1, h, lq, lk, generator=gen) * 2 if with_bias else None
    q16, k16, v16 = q.bfloat16(), k.bfloat16(), v.bfloat16()
    b16 = bias.bfloat16() if with_bias else None
    want = F.scaled_dot_product_attention(q16.float(), k16.float(), v16.float(),
                                          attn_mask=None if bias is None else b16.float())
    with torch.no_grad():
        got = attention(q16, k16, v16, b16)
    assert got.dtype == torch.bfloat16 and got.shape == want.shape
    # bf16 scores, probabilities and output: each a relative rounding of 2^-8, on values up to max |v|
    tol = 2 ** -6 * (1 + spread ** 2 / 4) * v16.float().abs().max().item()
    torch.testing.assert_close(got.float(), want, rtol=0, atol=tol)
    assert torch.equal(attention(q, k, v, bias), F.scaled_dot_product_attention(q, k, v, attn_mask=bias))


def test_attention_takes_sdpa_for_long_keys_and_under_autograd(monkeypatch):
    import torch.nn.functional as F

    from roadmap_cli.nn import layers
    calls = []
    orig = F.scaled_dot_product_attention
    monkeypatch.setattr(layers.F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or orig(*a, **k))
    short = [torch.randn(1, 2, 16, 8).bfloat16() for _ in range(3)]
    long = [torch.randn(1, 1, 4, 8).bfloat16(), *(torch.randn(1, 1, layers.SHORT_KEYS + 1, 8).bfloat16()
                                                   for _ in range(2))]
    with torch.no_grad():
        layers.attention(*short)
        assert not calls
        layers.attention(*long)
        assert len(calls) == 1
    q = short[0].clone().requires_grad_()
    layers.attention(q, *short[1:]).float().sum().backward()
    assert len(calls) == 2 and q.grad is not None


def test_trunk_position_embedding_is_cached_only_while_valid(tiny_cfg):
    """The position embedding (a bicubic resize of the 7 x 7 grid) is computed once per token grid in inference,
    recomputed when the size or the parameters change, and never cached when a gradient is wanted."""
    torch.manual_seed(3)
    m = build_model(tiny_cfg).eval()
    trunk = m.encoder.trunk
    fresh = lambda hw: type(trunk).__mro__[1]._get_pos_embed(trunk, hw)  # noqa: E731  sam2's own, uncached
    with torch.no_grad():
        a = trunk._get_pos_embed((16, 16))
        assert trunk._get_pos_embed((16, 16)) is a
        assert torch.equal(a, fresh((16, 16)))
        b = trunk._get_pos_embed((8, 24))
        assert b.shape[1:3] == (8, 24) and torch.equal(b, fresh((8, 24)))
        x = torch.rand(1, 3, 64, 64)
        y1 = m(x)
        trunk.pos_embed.add_(0.5)  # new weights, same tensor
        changed = trunk._get_pos_embed((16, 16))
        assert not torch.equal(changed, a) and torch.equal(changed, fresh((16, 16)))
        y2 = m(x)
        assert not torch.equal(y1, y2)
        other = build_model(tiny_cfg).eval()
        other.load_state_dict(m.state_dict())
        torch.testing.assert_close(other(x), y2, rtol=0, atol=0)
        import pickle
        copied = pickle.loads(pickle.dumps(m))  # the trunk's classes are importable; the cache is not carried
        assert copied.encoder.trunk._pos_cache is None and torch.equal(copied(x), y2)
    pos = trunk._get_pos_embed((16, 16))
    assert pos.requires_grad  # computed afresh, part of the graph
    pos.sum().backward()
    assert trunk.pos_embed.grad is not None and trunk.pos_embed.grad.abs().sum() > 0


def test_forward_on_the_meta_device_for_counting(tiny_cfg):
    """``benchmarks/bench_model.py`` counts FLOPs on the meta device: no weights, no compute, shapes only."""
    m = build_model(tiny_cfg, "meta").eval()
    with torch.no_grad():
        y = m(torch.empty(1, 3, 64, 64, device="meta"))
    assert y.device.type == "meta" and y.shape == (1, 1, 64, 64)
