"""AttentionConfig: canonical text, typed fields, defaults, validation."""
import copy
import pickle
import subprocess

import pytest

import fijit
from fijit import AttentionConfig
from conftest import tool

KNOWN_KEYS = ("kind, head_dim_qk, head_dim_vo, num_qo_heads, num_kv_heads, "
              "dtype_q, dtype_kv, dtype_o, kv_layout, page_size, mask, "
              "window_left, logits_soft_cap, pos_encoding, sinks, rotary_dim, "
              "interleave, rope_freq, sm_scale, return_lse, cuda_graph, "
              "target, tile_q, tile_kv, num_warps, stages")

GQA_CAUSAL = ("kind=single_prefill,head_dim_qk=128,head_dim_vo=128,"
              "num_qo_heads=32,num_kv_heads=8,dtype_q=bf16,dtype_kv=bf16,"
              "dtype_o=bf16,kv_layout=NHD,page_size=1,mask=causal,"
              "window_left=-1,logits_soft_cap=0,pos_encoding=none,"
              "sinks=false,rotary_dim=0,interleave=false,rope_freq=computed,"
              "sm_scale=0,return_lse=false,cuda_graph=false,target=sm_90a,"
              "tile_q=128,tile_kv=128,num_warps=12,stages=2")


def gqa():
    return AttentionConfig(head_dim_qk=128, head_dim_vo=128, num_qo_heads=32,
                           num_kv_heads=8, mask="causal")


def test_canonical_text():
    cfg = gqa()
    assert str(cfg) == GQA_CAUSAL
    assert repr(cfg) == f"AttentionConfig.from_string({GQA_CAUSAL!r})"


def test_keyword_order_does_not_matter():
    a = AttentionConfig(mask="causal", num_kv_heads=8, head_dim_vo=128,
                        num_qo_heads=32, head_dim_qk=128)
    assert str(a) == GQA_CAUSAL


def test_attribute_types():
    cfg = AttentionConfig(head_dim_qk=64, head_dim_vo=64, sm_scale=0.125,
                          logits_soft_cap=30, return_lse=True,
                          dtype_q="f16", dtype_kv="f16", dtype_o="f16")
    expected = {
        "kind": "single_prefill", "head_dim_qk": 64, "head_dim_vo": 64,
        "num_qo_heads": 32, "num_kv_heads": 32, "dtype_q": "f16",
        "dtype_kv": "f16", "dtype_o": "f16", "kv_layout": "NHD",
        "page_size": 1, "mask": "none", "window_left": -1,
        "logits_soft_cap": 30.0, "pos_encoding": "none", "sinks": False,
        "rotary_dim": 0, "interleave": False, "rope_freq": "computed",
        "sm_scale": 0.125,
        "return_lse": True, "cuda_graph": False, "target": "sm_90a",
        "tile_q": 128,
        "tile_kv": 128, "num_warps": 12, "stages": 2,
    }
    assert cfg.to_dict() == expected
    for key, value in expected.items():
        got = getattr(cfg, key)
        assert got == value, key
        # exact types: bool is not an int here, ints are not floats
        assert type(got) is type(value), (key, type(got))
    assert cfg.return_lse is True
    assert AttentionConfig(return_lse=False).return_lse is False


def test_schema_is_the_parsers_table():
    """Every key in canonical order with its type, default and (enums) the
    values the parser accepts: config.py derives its field types from it."""
    schema = AttentionConfig.schema()
    assert ", ".join(schema) == KNOWN_KEYS
    assert {k: v["type"] for k, v in schema.items()} == {
        "kind": "enum", "head_dim_qk": "int", "head_dim_vo": "int",
        "num_qo_heads": "int", "num_kv_heads": "int", "dtype_q": "enum",
        "dtype_kv": "enum", "dtype_o": "enum", "kv_layout": "enum",
        "page_size": "int", "mask": "enum", "window_left": "int",
        "logits_soft_cap": "float", "pos_encoding": "enum", "sinks": "bool",
        "rotary_dim": "int", "interleave": "bool", "rope_freq": "enum",
        "sm_scale": "float", "return_lse": "bool", "cuda_graph": "bool",
        "target": "enum",
        "tile_q": "int", "tile_kv": "int", "num_warps": "int",
        "stages": "int"}
    assert schema["mask"]["allowed"] == ("none", "causal", "custom")
    assert schema["dtype_kv"]["allowed"] == ("f16", "bf16", "e4m3", "e5m2")
    assert schema["target"]["allowed"] == ("sm_80", "sm_86", "sm_89",
                                           "sm_90a")
    assert schema["rope_freq"]["allowed"] == ("computed", "llama31",
                                              "cos_sin_cache")
    assert schema["head_dim_qk"]["allowed"] == ()
    # The defaults are the default config's values (knobs: 0, resolved
    # later), and every allowed enum value is accepted by the parser.
    default = AttentionConfig().to_dict()
    for key, entry in schema.items():
        if key in ("tile_q", "tile_kv", "num_warps", "stages"):
            assert entry["default"] == "0", key
        else:
            assert str(AttentionConfig.from_string(
                f"{key}={entry['default']}")) == str(AttentionConfig()), key
            assert default[key] == fijit.config._parse(key,
                                                       entry["default"]), key
    for value in schema["kv_layout"]["allowed"]:
        assert AttentionConfig(kv_layout=value).kv_layout == value
    with pytest.raises(TypeError):
        schema["mask"] = {}


def test_unknown_attribute_raises_attribute_error():
    cfg = gqa()
    with pytest.raises(AttributeError):
        cfg.no_such_field
    assert not hasattr(cfg, "head_dim")


def test_float_fields_round_trip_exactly():
    third = 1 / 3
    cfg = AttentionConfig(sm_scale=third, logits_soft_cap=50.5)
    assert cfg.sm_scale == third
    assert cfg.logits_soft_cap == 50.5
    assert AttentionConfig.from_string(str(cfg)).sm_scale == third


# (tile_q, num_warps, tile_kv, stages) on sm_90a, where single_prefill
# takes the warp-specialised kernel for head dims that are multiples of 64
# (num_warps=12: a TMA producer warpgroup and two wgmma consumer warpgroups
# of 64 rows), and on sm_80.
@pytest.mark.parametrize("dims, sm90a, sm80", [
    (64, (128, 12, 128, 2), (64, 4, 64, 3)),
    (96, (64, 4, 64, 2), (64, 4, 64, 2)),
    (128, (128, 12, 128, 2), (64, 4, 64, 2)),
    (192, (128, 12, 64, 2), (64, 4, 32, 2)),
    (256, (128, 12, 64, 2), (64, 4, 32, 2))])
def test_tuning_defaults_resolved(dims, sm90a, sm80):
    for target, want in (("sm_90a", sm90a), ("sm_80", sm80)):
        cfg = AttentionConfig(head_dim_qk=dims, head_dim_vo=dims,
                              target=target)
        assert (cfg.tile_q, cfg.num_warps, cfg.tile_kv,
                cfg.stages) == want, target


def test_cp_async_big_tiles_by_their_warps():
    """The cp.async engine's big tiles (the sm_90a defaults before
    num_warps=12) follow from its warps: one warpgroup with 128-key tiles at
    head_dim 64, two with 128-key tiles up to head_dim 128, 64 above."""
    def knobs(**fields):
        cfg = AttentionConfig(**fields)
        return (cfg.tile_q, cfg.num_warps, cfg.tile_kv, cfg.stages)
    assert knobs(head_dim_qk=64, head_dim_vo=64, num_warps=4) == \
        (64, 4, 128, 2)
    assert knobs(num_warps=8) == (128, 8, 128, 2)
    assert knobs(head_dim_qk=256, head_dim_vo=256, num_warps=8) == \
        (128, 8, 64, 2)


def test_batch_prefill_keeps_small_tiles():
    cfg = AttentionConfig(kind="batch_prefill_ragged")
    assert (cfg.tile_q, cfg.num_warps, cfg.tile_kv, cfg.stages) == \
        (64, 4, 64, 2)


def test_tile_q_and_num_warps_derive_each_other():
    assert AttentionConfig(num_warps=2).tile_q == 32
    # tile_q=128 alone names 8 warps, not the warp-specialised 12.
    assert AttentionConfig(tile_q=128).num_warps == 8
    assert AttentionConfig(num_warps=1).tile_q == 16


def test_explicit_knobs_are_kept():
    cfg = AttentionConfig(head_dim_qk=64, head_dim_vo=64, tile_kv=16,
                          stages=4)
    assert (cfg.tile_kv, cfg.stages) == (16, 4)
    assert "tile_kv=16" in str(cfg) and "stages=4" in str(cfg)


def test_zero_knobs_mean_default():
    assert AttentionConfig(tile_kv=0, stages=0, num_warps=0, tile_q=0) == \
        AttentionConfig()


def test_from_string_round_trip():
    cfg = gqa()
    again = AttentionConfig.from_string(str(cfg))
    assert again == cfg and str(again) == str(cfg)
    assert again.to_dict() == cfg.to_dict()
    assert eval(repr(cfg), {"AttentionConfig": AttentionConfig}) == cfg


def test_from_string_subset_with_spaces():
    cfg = AttentionConfig.from_string(
        " head_dim_qk = 128, head_dim_vo=128 ,num_kv_heads=8, mask=causal,")
    assert str(cfg) == GQA_CAUSAL


def test_from_string_empty_is_default():
    assert AttentionConfig.from_string("") == AttentionConfig()


def test_from_string_malformed_item():
    with pytest.raises(ValueError) as e:
        AttentionConfig.from_string("head_dim_qk=128,causal")
    assert str(e.value) == "malformed config item 'causal': expected key=value"


def test_replace():
    cfg = gqa()
    other = cfg.replace(mask="none", num_kv_heads=32)
    assert other is not cfg
    assert (other.mask, other.num_kv_heads) == ("none", 32)
    assert other.head_dim_qk == 128 and other.num_qo_heads == 32
    assert str(other) == GQA_CAUSAL.replace("num_kv_heads=8", "num_kv_heads=32"
                                            ).replace("mask=causal",
                                                      "mask=none")
    # the original is untouched
    assert str(cfg) == GQA_CAUSAL


def test_replace_validates():
    with pytest.raises(ValueError) as e:
        gqa().replace(num_kv_heads=5)
    assert str(e.value) == "invalid num_kv_heads=5: must divide num_qo_heads=32"


def test_replace_re_resolves_default_knobs():
    small = AttentionConfig(head_dim_qk=64, head_dim_vo=64)
    big = small.replace(head_dim_qk=256, head_dim_vo=256)
    assert big == AttentionConfig(head_dim_qk=256, head_dim_vo=256)
    assert (big.num_warps, big.tile_kv, big.stages) == (12, 64, 2)


def test_immutable():
    cfg = gqa()
    with pytest.raises(AttributeError, match="immutable"):
        cfg.mask = "none"
    with pytest.raises(AttributeError, match="immutable"):
        cfg.new_field = 1
    d = cfg.to_dict()
    d["mask"] = "none"
    assert cfg.mask == "causal" and str(cfg) == GQA_CAUSAL


def test_equality_and_hash():
    a = gqa()
    # Spelling out defaults gives the same config.
    b = AttentionConfig(kind="single_prefill", head_dim_qk=128,
                        head_dim_vo=128, num_qo_heads=32, num_kv_heads=8,
                        mask="causal", tile_kv=128, stages=2, tile_q=128,
                        num_warps=12, dtype_q="bf16", return_lse=False)
    assert a == b and not (a != b)
    # The same tiles on the two-warpgroup cp.async kernel are another one.
    assert a != a.replace(num_warps=8)
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    assert {a: 1}[b] == 1
    c = a.replace(num_kv_heads=4)
    assert a != c
    assert len({a, b, c}) == 2
    assert a != str(a)
    assert a != a.to_dict()


# Exact messages of the C++ validation (the same text fi-opt prints).
BAD = [
    (dict(head_dim_qk=100),
     "invalid head_dim_qk=100: allowed values are 64, 96, 128, 192, 256"),
    (dict(head_dim_vo=512),
     "invalid head_dim_vo=512: allowed values are 64, 96, 128, 192, 256"),
    (dict(num_qo_heads=6, num_kv_heads=4),
     "invalid num_kv_heads=4: must divide num_qo_heads=6"),
    (dict(num_kv_heads=0), "invalid num_kv_heads=0: must be at least 1"),
    (dict(foo=1), f"unknown config key 'foo'; known keys: {KNOWN_KEYS}"),
    (dict(stages=5), "invalid stages=5: must be 0 (default) or in [2, 4]"),
    (dict(num_warps=3),
     "invalid num_warps=3: allowed values are 0 (default), 1, 2, 4, 8, "
     "12"),
    (dict(tile_kv=20), "invalid tile_kv=20: must be 0 (default) or a "
     "multiple of 16 in [16, 256]"),
    (dict(tile_q=48), "invalid tile_q=48: must be 16 * num_warps = 64 (one "
     "16-row MMA tile per warp)"),
    (dict(mask="sliding"),
     "invalid mask 'sliding': expected one of none, causal, custom"),
    (dict(dtype_q="f32"),
     "invalid dtype_q 'f32': expected one of f16, bf16, e4m3, e5m2"),
    (dict(dtype_q="f16"),
     "invalid dtype_kv=bf16: must match dtype_q=f16 (or be e4m3/e5m2)"),
    (dict(target="sm_75"),
     "invalid target 'sm_75': expected one of sm_80, sm_86, sm_89, sm_90a"),
    (dict(head_dim_qk="abc"), "invalid head_dim_qk 'abc': expected an integer"),
    (dict(return_lse="maybe"),
     "invalid return_lse 'maybe': expected true or false"),
    (dict(sm_scale=-1.0), "invalid sm_scale=-1: must be finite and at least "
     "0 (0 means 1/sqrt(head_dim_qk))"),
    (dict(logits_soft_cap=float("inf")), "invalid logits_soft_cap=inf: must "
     "be finite and at least 0 (0 disables it)"),
    (dict(window_left=-2),
     "invalid window_left=-2: must be at least -1 (-1 disables the window)"),
    (dict(page_size=16), "invalid page_size=16: only paged kinds "
     "(batch_prefill_paged, batch_decode_paged) take a page size"),
    (dict(kind="single_decode", mask="causal"),
     "invalid mask=causal: decode kinds take mask=none"),
    (dict(logits_soft_cap=1e300), "invalid logits_soft_cap=1e+300: must be "
     "0 (disables it) or in [2^-126, 2^126], where float32 holds it and its "
     "reciprocal"),
    (dict(num_qo_heads=2 ** 40, num_kv_heads=1), "invalid num_qo_heads="
     "1099511627776: must be at most 65535 (query heads index the launch "
     "grid's y dimension)"),
    # num_warps=12 (the default here) adds its ring's mbarriers: 8 bytes x
    # (2 + 4 x stages).
    (dict(head_dim_qk=256, head_dim_vo=256, tile_kv=64, stages=4),
     "invalid tiling tile_q=128,tile_kv=64,stages=4: needs 327824 bytes of "
     "shared memory, sm_90a allows 232448; lower tile_kv or stages"),
    (dict(head_dim_qk=256, head_dim_vo=256, tile_kv=64, stages=4,
          num_warps=8),
     "invalid tiling tile_q=128,tile_kv=64,stages=4: needs 327680 bytes of "
     "shared memory, sm_90a allows 232448; lower tile_kv or stages"),
    (dict(kind="single_decode", num_warps=1, tile_kv=128),
     "invalid tile_kv=128: with num_warps=1 and tile_q=16 each warp scores "
     "128 keys of a tile at once, more than its 255 registers hold at "
     "head_dim 128 (32 at most); use tile_kv <= 32 or more warps"),
]


@pytest.mark.parametrize("fields, message", BAD,
                         ids=[",".join(f) for f, _ in BAD])
def test_invalid_values_raise_exact_message(fields, message):
    with pytest.raises(ValueError) as e:
        AttentionConfig(**fields)
    assert str(e.value) == message
    # from_string and the native canonicalizer report the same text
    text = ",".join(f"{k}={v}" for k, v in fields.items())
    with pytest.raises(ValueError) as e2:
        AttentionConfig.from_string(text)
    assert str(e2.value) == message
    with pytest.raises(ValueError) as e3:
        fijit.compile_attention(text)
    assert str(e3.value) == message


FI_OPT = tool("fi-opt")


@pytest.mark.skipif(FI_OPT is None, reason="fi-opt not found next to the "
                    "package")
@pytest.mark.parametrize("fields, message", [BAD[0], BAD[2], BAD[4], BAD[9]],
                         ids=["head_dim", "gqa", "unknown", "enum"])
def test_same_message_as_fi_opt(fields, message):
    text = ",".join(f"{k}={v}" for k, v in fields.items())
    r = subprocess.run([str(FI_OPT), f"--fi-build={text}"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert r.stderr.strip() == f"fi-opt: error: {message}"


@pytest.mark.parametrize("kind", ["single_prefill", "batch_prefill_ragged",
                                  "single_decode", "batch_decode_paged"])
@pytest.mark.parametrize("target", ["sm_80", "sm_86", "sm_90a"])
def test_default_tiles_are_never_refused(kind, target):
    # A tile_kv left at 0 shrinks to what a warp's registers hold, at every
    # head dim, GQA group and warp count, rather than being refused for it.
    # (Shared memory still refuses the biggest Q tiles at head_dim 256 on
    # sm_86, 8 warps or group 128, whatever tile_kv.)
    paged = dict(page_size=16) if kind.endswith("paged") else {}
    for d in (64, 96, 128, 192, 256):
        for group in (1, 2, 4, 8, 16, 32, 48, 64, 128):
            heads = dict(num_qo_heads=max(group, 32),
                         num_kv_heads=max(group, 32) // group)
            for knobs in ({}, dict(num_warps=1), dict(num_warps=2),
                          dict(num_warps=4), dict(num_warps=8),
                          dict(tile_q=16)):
                if "prefill" not in kind and (
                        16 * knobs.get("num_warps", 8) < group or
                        16 * knobs.get("num_warps", 8) <
                        knobs.get("tile_q", 0) or "tile_q" in knobs and
                        group > 16):
                    continue  # tile_q must hold the group
                try:
                    AttentionConfig(kind=kind, head_dim_qk=d, head_dim_vo=d,
                                    target=target, **heads, **paged,
                                    **knobs)
                except ValueError as e:
                    assert "shared memory" in str(e), (d, group, knobs,
                                                       str(e))


def test_from_string_repeated_key():
    with pytest.raises(ValueError) as e:
        AttentionConfig.from_string("head_dim_qk=64,head_dim_qk=128")
    assert str(e.value) == "config key 'head_dim_qk' given twice"


@pytest.mark.parametrize("clone", [
    copy.copy, copy.deepcopy, lambda c: pickle.loads(pickle.dumps(c))],
    ids=["copy", "deepcopy", "pickle"])
def test_copy_and_pickle(clone):
    cfg = gqa()
    assert clone(cfg) == cfg


@pytest.mark.parametrize("kind", ["batch_prefill_ragged",
                                  "batch_prefill_paged"])
def test_batch_prefill_plans_big_tiles_for_long_requests(kind):
    """From a mean of 128 query rows (causal: 1024), sm_90a head_dim 128
    batch prefill plans two warpgroups of 128-key tiles; shorter requests,
    set knobs, other head dims and targets keep the config."""
    cfg = AttentionConfig(kind=kind, num_qo_heads=32, num_kv_heads=8,
                          page_size=16 if kind.endswith("paged") else 1)
    big = cfg.for_batch_of(128)
    assert (big.num_warps, big.tile_q, big.tile_kv, big.stages) == \
        (8, 128, 128, 2)
    assert big.replace(num_warps=4, tile_q=64, tile_kv=64) == cfg
    assert cfg.for_batch_of(127) == cfg
    causal = cfg.replace(mask="causal")
    assert causal.for_batch_of(1023) == causal
    assert causal.for_batch_of(1024) == big.replace(mask="causal")
    assert cfg.replace(num_warps=8).for_batch_of(4096).tile_kv == 64
    assert cfg.replace(stages=3).for_batch_of(4096) == cfg.replace(stages=3)
    for other in (dict(head_dim_qk=64, head_dim_vo=64),
                  dict(head_dim_qk=256, head_dim_vo=256),
                  dict(target="sm_80")):
        assert cfg.replace(**other).for_batch_of(4096) == cfg.replace(**other)
    # The knobs spelled out with their default values plan alike.
    assert cfg.replace(num_warps=4, tile_kv=64).for_batch_of(512) == big


@pytest.mark.parametrize("kind", ["single_prefill", "single_decode",
                                  "batch_decode_paged"])
def test_other_kinds_plan_their_own_config(kind):
    cfg = AttentionConfig(kind=kind, num_qo_heads=32, num_kv_heads=8)
    assert cfg.for_batch_of(4096) == cfg


# Keyword values are parsed field by field: a separator inside one is part of
# a bad value, never a second field.
SMUGGLED = [
    (dict(mask="causal,head_dim_qk=64"), "invalid mask "
     "'causal,head_dim_qk=64': expected one of none, causal, custom"),
    (dict(target="sm_80,num_warps=8"), "invalid target 'sm_80,num_warps=8': "
     "expected one of sm_80, sm_86, sm_89, sm_90a"),
    (dict(head_dim_qk="64,head_dim_vo=64"),
     "invalid head_dim_qk '64,head_dim_vo=64': expected an integer"),
    (dict(sm_scale="0.5,logits_soft_cap=30"),
     "invalid sm_scale '0.5,logits_soft_cap=30': expected a number"),
    ({"mask=causal,head_dim_qk": 64},
     f"unknown config key 'mask=causal,head_dim_qk'; known keys: {KNOWN_KEYS}"),
]


@pytest.mark.parametrize("fields, message", SMUGGLED,
                         ids=[",".join(f) for f, _ in SMUGGLED])
def test_keyword_values_cannot_carry_other_fields(fields, message):
    with pytest.raises(ValueError) as e:
        AttentionConfig(**fields)
    assert str(e.value) == message
    with pytest.raises(ValueError) as e:
        fijit.compile_attention(**fields)
    assert str(e.value) == message
