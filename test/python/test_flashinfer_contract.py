"""fijit's FlashInfer-compatible entry points against FlashInfer 0.7's own
signatures, parsed (ast, nothing imported) from the trimmed FlashInfer
source kept beside the checkout ($FIJIT_FLASHINFER_PACK, default
../shared/flashinfer). A call an engine writes for FlashInfer, positional
or by keyword, must bind the same way to fijit: every FlashInfer parameter
exists in fijit with its position, kind and default. fijit may add
keyword arguments of its own (tuning knobs, kv_chunk, out) and defaults
where FlashInfer has none. No GPU needed."""
import ast
import functools
import inspect
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import fijit
import fijit.flashinfer as fi
from conftest import PACKAGE_DIR, REPO, child_env

PACK = Path(os.environ.get("FIJIT_FLASHINFER_PACK")
            or REPO.parent / "shared" / "flashinfer")


def _tarball():
    found = sorted((PACK / "pack").glob("flashinfer-*-trim.tar.gz"))
    if not found:
        pytest.skip(f"no trimmed FlashInfer source under {PACK}/pack (set "
                    "FIJIT_FLASHINFER_PACK)")
    return found[-1]


@functools.lru_cache(maxsize=None)
def flashinfer_module(name):
    with tarfile.open(_tarball()) as tar:
        return ast.parse(tar.extractfile(f"flashinfer/{name}.py").read())


def definitions(tree):
    """qualname -> the last FunctionDef of that name (FlashInfer's
    implementation follows its @overload stubs), class-level aliases
    (name -> source of the assigned value) per class, and module-level
    assignments."""
    funcs, aliases, assigns = {}, {}, {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            funcs[node.name] = node
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                isinstance(node.targets[0], ast.Name):
            assigns[node.targets[0].id] = node.value
        elif isinstance(node, ast.ClassDef):
            aliases[node.name] = {}
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    funcs[f"{node.name}.{item.name}"] = item
                elif isinstance(item, ast.Assign):
                    for target in item.targets:
                        aliases[node.name][target.id] = item.value
    return funcs, aliases, assigns


def literal(node):
    try:
        return ast.literal_eval(node)
    except ValueError:
        return inspect.Parameter.empty  # an expression: not compared


def flashinfer_params(func):
    """[(name, kind, default)] of a FunctionDef, self excluded."""
    a = func.args
    positional = a.posonlyargs + a.args
    defaults = [inspect.Parameter.empty] * (
        len(positional) - len(a.defaults)) + [literal(d) for d in a.defaults]
    out = [(p.arg, inspect.Parameter.POSITIONAL_OR_KEYWORD, d)
           for p, d in zip(positional, defaults)]
    if a.vararg:
        out.append((a.vararg.arg, inspect.Parameter.VAR_POSITIONAL,
                    inspect.Parameter.empty))
    for p, d in zip(a.kwonlyargs, a.kw_defaults):
        out.append((p.arg, inspect.Parameter.KEYWORD_ONLY,
                    inspect.Parameter.empty if d is None else literal(d)))
    if a.kwarg:
        out.append((a.kwarg.arg, inspect.Parameter.VAR_KEYWORD,
                    inspect.Parameter.empty))
    return [p for p in out if p[0] != "self"]


def check_binds_like(fijit_callable, params, where):
    """Every FlashInfer parameter binds the same way in fijit."""
    sig = inspect.signature(fijit_callable)
    ours = [p for p in sig.parameters.values() if p.name != "self"]
    by_name = {p.name: p for p in ours}
    ours_positional = [p.name for p in ours if p.kind ==
                       inspect.Parameter.POSITIONAL_OR_KEYWORD]
    theirs_positional = [n for n, k, _ in params
                         if k == inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert ours_positional[:len(theirs_positional)] == theirs_positional, \
        f"{where}: positional order"
    for name, kind, default in params:
        if kind == inspect.Parameter.VAR_POSITIONAL:
            assert any(p.kind == kind for p in ours), f"{where}: *{name}"
            continue
        if kind == inspect.Parameter.VAR_KEYWORD:
            continue
        assert name in by_name, f"{where}: no parameter {name}"
        p = by_name[name]
        if kind == inspect.Parameter.KEYWORD_ONLY:
            assert p.kind in (inspect.Parameter.KEYWORD_ONLY,
                              inspect.Parameter.POSITIONAL_OR_KEYWORD), \
                f"{where}: {name} must be accepted by keyword"
        if default is not inspect.Parameter.empty:
            assert p.default is not inspect.Parameter.empty and \
                p.default == default and type(p.default) is type(default), \
                f"{where}: {name} defaults to {p.default!r}, FlashInfer's " \
                f"to {default!r}"


# (FlashInfer module, qualname) -> fijit's callable.
ENTRY_POINTS = {
    ("decode", "single_decode_with_kv_cache"):
        fi.decode.single_decode_with_kv_cache,
    ("decode", "fast_decode_plan"): fi.decode.fast_decode_plan,
    ("prefill", "single_prefill_with_kv_cache"):
        fi.prefill.single_prefill_with_kv_cache,
}
WRAPPERS = {
    ("decode", "BatchDecodeWithPagedKVCacheWrapper"):
        fi.BatchDecodeWithPagedKVCacheWrapper,
    ("decode", "CUDAGraphBatchDecodeWithPagedKVCacheWrapper"):
        fi.CUDAGraphBatchDecodeWithPagedKVCacheWrapper,
    ("prefill", "BatchPrefillWithPagedKVCacheWrapper"):
        fi.BatchPrefillWithPagedKVCacheWrapper,
    ("prefill", "BatchPrefillWithRaggedKVCacheWrapper"):
        fi.BatchPrefillWithRaggedKVCacheWrapper,
}
METHODS = ("__init__", "plan", "run", "forward", "forward_return_lse")


@pytest.mark.parametrize("module,name", list(ENTRY_POINTS),
                         ids=[n for _, n in ENTRY_POINTS])
def test_functions_bind_like_flashinfer(module, name):
    funcs, _, _ = definitions(flashinfer_module(module))
    check_binds_like(ENTRY_POINTS[module, name],
                     flashinfer_params(funcs[name]), name)


@pytest.mark.parametrize("module,cls", list(WRAPPERS),
                         ids=[n for _, n in WRAPPERS])
def test_wrapper_methods_bind_like_flashinfer(module, cls):
    funcs, aliases, assigns = definitions(flashinfer_module(module))
    ours = WRAPPERS[module, cls]
    checked = 0
    for method in METHODS:
        func = funcs.get(f"{cls}.{method}")
        if func is None:
            continue
        params = flashinfer_params(func)
        if cls == "BatchDecodeWithPagedKVCacheWrapper" and method == "plan":
            # FlashInfer's decode plan takes its optional arguments as
            # *deprecated_positional_args (in the order of a module-level
            # tuple) and **kwargs (those of _plan_impl).
            legacy = literal(assigns["_BATCH_DECODE_PLAN_LEGACY_POS_ARGS"])
            impl = flashinfer_params(funcs[f"{cls}._plan_impl"])
            defaults = {n: d for n, _, d in impl}
            params = ([p for p in params if p[1] ==
                       inspect.Parameter.POSITIONAL_OR_KEYWORD] +
                      [(n, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                        defaults[n]) for n in legacy] +
                      [p for p in impl if p[1] ==
                       inspect.Parameter.KEYWORD_ONLY and p[0] not in legacy])
        check_binds_like(getattr(ours, method), params, f"{cls}.{method}")
        checked += 1
    assert checked
    # Aliases: `begin_forward = plan`, `run_return_lse =
    # functools.partialmethod(run, return_lse=True)`, ...
    for alias, value in aliases.get(cls, {}).items():
        assert alias in vars(ours) or hasattr(ours, alias), \
            f"{cls}.{alias}"
        if isinstance(value, ast.Name):
            assert getattr(ours, alias) is getattr(ours, value.id), alias
        elif isinstance(value, ast.Call) and ast.unparse(
                value.func).endswith("partialmethod"):
            ours_alias = vars(ours)[alias]
            assert isinstance(ours_alias, functools.partialmethod), alias
            assert ours_alias.func is vars(ours)[value.args[0].id]
            assert ours_alias.keywords == {
                k.arg: literal(k.value) for k in value.keywords}


def test_the_namespace_has_what_flashinfer_exports():
    """The names the trimmed FlashInfer's __init__ exports from its
    attention modules."""
    tree = flashinfer_module("__init__")
    names = [(node.module, alias.asname or alias.name) for node in tree.body
             if isinstance(node, ast.ImportFrom) and node.module in (
                 "decode", "prefill") for alias in node.names]
    assert len(names) >= 6
    for module, name in names:
        assert getattr(fi, name) is getattr(getattr(fi, module), name), name


# FlashInfer 0.7's cascade.py is not in the trimmed source: its
# signatures, as written there.
CASCADE = {
    "merge_state": "(v_a, s_a, v_b, s_b)",
    "merge_state_in_place": "(v, s, v_other, s_other, mask=None)",
    "merge_states": "(v, s)",
    "MultiLevelCascadeAttentionWrapper.__init__":
        "(self, num_levels, float_workspace_buffer, kv_layout='NHD', "
        "use_cuda_graph=False, qo_indptr_buf_arr=None, "
        "paged_kv_indptr_buf_arr=None, paged_kv_indices_buf_arr=None, "
        "paged_kv_last_page_len_buf_arr=None)",
    "MultiLevelCascadeAttentionWrapper.plan":
        "(self, qo_indptr_arr, paged_kv_indptr_arr, paged_kv_indices_arr, "
        "paged_kv_last_page_len, num_qo_heads, num_kv_heads, head_dim, "
        "page_size, causal=False, pos_encoding_mode='NONE', "
        "use_fp16_qk_reduction=False, sm_scale=None, window_left=-1, "
        "logits_soft_cap=None, rope_scale=None, rope_theta=None, "
        "q_data_type='float16', kv_data_type=None)",
    "MultiLevelCascadeAttentionWrapper.run": "(self, q, paged_kv_cache)",
}


@pytest.mark.parametrize("name", list(CASCADE))
def test_cascade_binds_like_flashinfer(name):
    func = ast.parse(f"def f{CASCADE[name]}: pass").body[0]
    target = fi.cascade
    for part in name.split("."):
        target = getattr(target, part)
    check_binds_like(target, flashinfer_params(func), name)
    cls = fi.MultiLevelCascadeAttentionWrapper
    assert cls.begin_forward is cls.plan and cls.forward is cls.run


# FlashInfer 0.7's rope.py is not in the trimmed source either: the
# signatures of its standalone RoPE functions, as written there.
_ROPE_RAGGED = ("(q, k, indptr, offsets, rotary_dim=None, interleave=False, "
                "rope_scale=1, rope_theta=1e4)")
_ROPE_POS = ("(q, k, pos_ids, rotary_dim=None, interleave=False, "
             "rope_scale=1, rope_theta=1e4)")
_LLAMA31 = ("rotary_dim=None, interleave=False, rope_scale=8, "
            "rope_theta=5e5, low_freq_factor=1, high_freq_factor=4, "
            "old_context_len=8192)")
_CACHE = "(positions, query, key, head_size, cos_sin_cache, is_neox=True)"
ROPE = {
    "apply_rope": _ROPE_RAGGED, "apply_rope_inplace": _ROPE_RAGGED,
    "apply_rope_pos_ids": _ROPE_POS, "apply_rope_pos_ids_inplace": _ROPE_POS,
    "apply_llama31_rope": "(q, k, indptr, offsets, " + _LLAMA31,
    "apply_llama31_rope_inplace": "(q, k, indptr, offsets, " + _LLAMA31,
    "apply_llama31_rope_pos_ids": "(q, k, pos_ids, " + _LLAMA31,
    "apply_llama31_rope_pos_ids_inplace": "(q, k, pos_ids, " + _LLAMA31,
    "apply_rope_with_cos_sin_cache": _CACHE,
    "apply_rope_with_cos_sin_cache_inplace": _CACHE,
}


@pytest.mark.parametrize("name", list(ROPE))
def test_rope_binds_like_flashinfer(name):
    func = ast.parse(f"def f{ROPE[name]}: pass").body[0]
    check_binds_like(getattr(fi.rope, name), flashinfer_params(func), name)
    # flashinfer.apply_rope is flashinfer.rope.apply_rope.
    assert getattr(fi, name) is getattr(fi.rope, name)
    assert getattr(fijit, name) is getattr(fi.rope, name)


# --- what fijit does not support is refused, naming FlashInfer's argument --

@pytest.mark.parametrize("make,message", [
    (lambda: fi.BatchDecodeWithPagedKVCacheWrapper(None, backend="cudnn"),
     "fijit's BatchDecodeWithPagedKVCacheWrapper does not support "
     "backend='cudnn': supported: 'auto', 'fa2', 'fa3'"),
    (lambda: fi.BatchPrefillWithPagedKVCacheWrapper(None, jit_args=[1]),
     "fijit's BatchPrefillWithPagedKVCacheWrapper does not support "
     "jit_args='list': only None is supported"),
    (lambda: fi.BatchDecodeWithPagedKVCacheWrapper(None).plan(
        None, None, None, 32, 8, 128, 16, "ROPE"),
     "fijit's BatchDecodeWithPagedKVCacheWrapper.plan does not support "
     "pos_encoding_mode='ROPE': supported: 'NONE', 'ALIBI', 'ROPE_LLAMA'"),
    (lambda: fi.BatchDecodeWithPagedKVCacheWrapper(None).plan(
        None, None, None, 32, 8, 128, 16, q_len_per_req=2),
     "fijit's BatchDecodeWithPagedKVCacheWrapper.plan does not support "
     "q_len_per_req=2: supported: 1"),
    (lambda: fi.BatchPrefillWithRaggedKVCacheWrapper(None).plan(
        None, None, 32, 8, 128, use_fp16_qk_reduction=True),
     "fijit's BatchPrefillWithRaggedKVCacheWrapper.plan does not support "
     "use_fp16_qk_reduction=True: supported: False"),
    (lambda: fi.single_decode_with_kv_cache(None, None, None, q_scale=0.0),
     "fijit's single_decode_with_kv_cache does not support q_scale=0.0: "
     "a positive finite float"),
    # FlashInfer multiplies its float sm_scale by k_scale.
    (lambda: fi.single_decode_with_kv_cache(None, None, None,
                                            k_scale=[0.5]),
     "fijit's single_decode_with_kv_cache does not support k_scale='list': "
     "a Python float (FlashInfer folds k_scale into its float sm_scale)"),
    (lambda: fi.single_prefill_with_kv_cache(None, None, None, k_scale=0.0),
     "fijit's single_prefill_with_kv_cache does not support k_scale=0.0: "
     "a positive finite float"),
    (lambda: fi.single_prefill_with_kv_cache(None, None, None,
                                             v_scale=float("nan")),
     "fijit's single_prefill_with_kv_cache does not support v_scale=nan: "
     "a finite float"),
])
def test_unsupported_values_raise_naming_the_argument(make, message):
    with pytest.raises(NotImplementedError) as e:
        make()
    assert str(e.value) == message


def test_plan_takes_tuning_knobs_but_no_unknown_keywords():
    w = fi.BatchDecodeWithPagedKVCacheWrapper(None)
    with pytest.raises(TypeError, match="unexpected keyword argument "
                                        "'use_fp16_qk_reduction'"):
        w.plan(None, None, None, 32, 8, 128, 16,
               use_fp16_qk_reduction=True)


# --- `import flashinfer` resolving to fijit --------------------------------

IMPORTS = """
import flashinfer
from flashinfer import (BatchDecodeWithPagedKVCacheWrapper,
                        BatchPrefillWithPagedKVCacheWrapper,
                        BatchPrefillWithRaggedKVCacheWrapper,
                        MultiLevelCascadeAttentionWrapper, fast_decode_plan)
from flashinfer.cascade import merge_state
from flashinfer.decode import fast_decode_plan as fdp
from flashinfer.decode import trtllm_batch_decode_with_kv_cache
from flashinfer.prefill import trtllm_batch_context_with_kv_cache
from flashinfer.utils import FP4Tensor
import fijit
assert flashinfer.__fijit__ and fdp is fijit.fast_decode_plan
assert BatchDecodeWithPagedKVCacheWrapper is \\
    fijit.BatchDecodeWithPagedKVCacheWrapper
assert merge_state is fijit.merge_state
print("ok", flashinfer.__version__)
"""


def _python(code, pythonpath):
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    return subprocess.run([sys.executable, "-c", code], env=env,
                          capture_output=True, text=True, timeout=60)


def test_install_makes_import_flashinfer_resolve_to_fijit():
    r = _python("import fijit.flashinfer; fijit.flashinfer.install()\n" +
                IMPORTS, [PACKAGE_DIR])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ok", "0.7.2"]


def test_shim_folder_on_pythonpath_gives_fijit_in_every_process():
    path = _python("import runpy; runpy.run_module('fijit.flashinfer', "
                   "run_name='__main__')", [PACKAGE_DIR])
    assert path.returncode == 2  # no argument: usage
    r = subprocess.run([sys.executable, "-m", "fijit.flashinfer", "path"],
                       env={**child_env(), "PYTHONPATH": str(PACKAGE_DIR)},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    shim = r.stdout.strip()
    r = _python(IMPORTS, [shim, PACKAGE_DIR])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ok", "0.7.2"]
