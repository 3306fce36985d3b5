"""PTX of a representative config set, against recorded SHA-256 hashes.

    ptx_identity.py check FI_OPT HASHES   exit 1 naming every config whose
                                          PTX hash differs or is missing
    ptx_identity.py record FI_OPT HASHES  (re)write HASHES from FI_OPT

The hashes in ptx-identity.sha256 were recorded with `record` by the build
of the commit before the kernel argument tables (KernelSpec) replaced the
builders' positional arguments, so `check` shows that restructurings of
how kernels are described leave the emitted code byte for byte as it was.
A change that means to alter code generation records the file again and
says why in its commit.

The set: every kind at head dims 64, 128 and 256 on sm_80 and sm_90a, plain
and with LSE, window and soft-cap together (causal for the prefill kinds);
at head dim 128 each of those variants alone; the warp-specialised sm_90a
prefill (num_warps=12) of single, ragged and paged kinds; the sm_90a tile
engine with one and two warpgroups; HND and GQA; the merge kernel
(kind=merge_states) at head dims 64, 96, 128 and 256; the RoPE kernel
(kind=rope) at head dims 64, 80, 128 and 256.
"""
import hashlib
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

KINDS = ["single_prefill", "batch_prefill_ragged", "batch_prefill_paged",
         "single_decode", "batch_decode_paged"]


def kind_fields(kind):
    return f"kind={kind}" + (",page_size=16" if "paged" in kind else "")


def configs():
    out = []
    for kind in KINDS:
        prefill = "prefill" in kind
        causal = ",mask=causal" if prefill else ""
        for d in (64, 128, 256):
            for target in ("sm_80", "sm_90a"):
                base = (f"{kind_fields(kind)},head_dim_qk={d},head_dim_vo={d},"
                        f"num_qo_heads=8,num_kv_heads=2,target={target}")
                out.append(base)
                out.append(base + causal + ",return_lse=true,window_left=100,"
                           "logits_soft_cap=30")
                if d == 128:
                    out += [base + ",return_lse=true",
                            base + ",window_left=37",
                            base + ",logits_soft_cap=30"]
                    if prefill:
                        out.append(base + ",mask=causal")
    for kind in KINDS[:3]:
        for d in (64, 128, 256):
            base = (f"{kind_fields(kind)},head_dim_qk={d},head_dim_vo={d},"
                    "num_qo_heads=8,num_kv_heads=2,target=sm_90a,num_warps=12")
            out.append(base)
            out.append(base + ",mask=causal,return_lse=true,window_left=100,"
                       "logits_soft_cap=30")
    for warps in (4, 8):
        out.append(f"head_dim_qk=128,head_dim_vo=128,target=sm_90a,"
                   f"num_warps={warps},mask=causal")
    out += ["head_dim_qk=128,head_dim_vo=128,kv_layout=HND,target=sm_80",
            "kind=batch_decode_paged,page_size=16,head_dim_qk=128,"
            "head_dim_vo=128,kv_layout=HND,num_qo_heads=32,num_kv_heads=4",
            "kind=single_decode,head_dim_qk=64,head_dim_vo=64,"
            "dtype_q=f16,dtype_kv=f16,dtype_o=f16,num_qo_heads=4,"
            "num_kv_heads=4"]
    # The merge kernel: head dims 64/128/256 (and 96's partial CTA rows) on
    # both targets, f16 and bf16, with and without the merged LSE.
    for d in (64, 96, 128, 256):
        for target in ("sm_80", "sm_90a"):
            for dtype in ("f16", "bf16"):
                base = (f"kind=merge_states,head_dim_qk={d},head_dim_vo={d},"
                        f"num_qo_heads=8,num_kv_heads=8,dtype_q={dtype},"
                        f"dtype_kv={dtype},dtype_o={dtype},target={target}")
                out.append(base + ",return_lse=true")
                if d == 128:
                    out.append(base)
    # The RoPE kernel: each frequency source, interleaved or not, whole and
    # partial rotary dims (80's five-thread tokens), GQA head counts, both
    # targets and dtypes.
    for d, rot in ((64, 64), (80, 32), (128, 128), (128, 64), (256, 128)):
        for target in ("sm_80", "sm_90a"):
            for dtype in ("f16", "bf16"):
                base = (f"kind=rope,head_dim_qk={d},head_dim_vo={d},"
                        f"num_qo_heads=32,num_kv_heads=8,rotary_dim={rot},"
                        f"dtype_q={dtype},dtype_kv={dtype},dtype_o={dtype},"
                        f"target={target}")
                out.append(base)
                if d == 128:
                    out += [base + ",interleave=true",
                            base + ",rope_freq=llama31",
                            base + ",rope_freq=cos_sin_cache,interleave=true"]
    return out


def ptx_hash(fi_opt, config):
    r = subprocess.run([fi_opt, f"--fi-build={config}", "--fi-emit=ptx"],
                       capture_output=True)
    if r.returncode != 0:
        return "error: " + r.stderr.decode(errors="replace").strip()
    return hashlib.sha256(r.stdout).hexdigest()


def hashes(fi_opt):
    cfgs = configs()
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(cfgs, pool.map(lambda c: ptx_hash(fi_opt, c), cfgs)))


def main(argv):
    if len(argv) != 4 or argv[1] not in ("check", "record"):
        sys.exit(__doc__)
    mode, fi_opt, path = argv[1:]
    got = hashes(fi_opt)
    if mode == "record":
        bad = {c: h for c, h in got.items() if h.startswith("error")}
        if bad:
            sys.exit("\n".join(f"{c}: {h}" for c, h in bad.items()))
        with open(path, "w") as f:
            f.writelines(f"{h} {c}\n" for c, h in got.items())
        return 0
    want = {}
    with open(path) as f:
        for line in f:
            h, c = line.split()
            want[c] = h
    diffs = [f"{c}: {got.get(c, 'not in the set')} (recorded {want.get(c)})"
             for c in sorted(set(want) | set(got))
             if want.get(c) != got.get(c)]
    print(f"{len(got)} configs, {len(diffs)} differ")
    for d in diffs:
        print("PTX differs: " + d)
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
