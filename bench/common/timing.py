"""Event timing shared by the GPU benchmarks."""
import torch


def median_ms(fn, iters=30, warmup=5, back_to_back=1):
    """Median of event-timed runs after warm-up (module loads, autotuning
    and first-touch costs stay out of the numbers). With back_to_back > 1
    each sample times that many calls queued behind each other and divides:
    the host's launch overhead then overlaps the device's work, as in a
    serving loop, instead of counting once per call."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(True), torch.cuda.Event(True)
        start.record()
        for _ in range(back_to_back):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / back_to_back)
    times.sort()
    return times[len(times) // 2]


def copy_bandwidth_gbs(nbytes=4 << 30):
    """Device-to-device copy ceiling, bytes read + written per second."""
    src = torch.empty(nbytes // 2, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src), iters=20)
    return 2 * src.numel() / ms / 1e6


def read_bandwidth_gbs(nbytes=4 << 30):
    """Read-only ceiling: a persistent Triton kernel that streams `nbytes`
    in 16-byte loads per thread and keeps one sum per program, the access
    pattern of decode (reads only). None where Triton is missing."""
    try:
        import triton
        import triton.language as tl
    except ImportError:
        return None

    @triton.jit
    def stream(src, out, n, BLOCK: tl.constexpr):
        pid, programs = tl.program_id(0), tl.num_programs(0)
        acc = tl.zeros([BLOCK], dtype=tl.int32)
        for start in range(pid * BLOCK, n, programs * BLOCK):
            offs = start + tl.arange(0, BLOCK)
            acc += tl.load(src + offs, mask=offs < n, other=0,
                           cache_modifier=".cg")
        tl.store(out + pid, tl.sum(acc, axis=0))

    words = nbytes // 4
    src = torch.empty(words, dtype=torch.int32, device="cuda")
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    best = None
    # Programs per SM and block width: the best of a few, as a ceiling.
    for per_sm, block in ((4, 4096), (8, 2048), (16, 1024)):
        programs = sms * per_sm
        out = torch.empty(programs, dtype=torch.int32, device="cuda")
        ms = median_ms(lambda: stream[(programs,)](src, out, words,
                                                   BLOCK=block,
                                                   num_warps=8), iters=20)
        gbs = nbytes / ms / 1e6
        best = gbs if best is None else max(best, gbs)
    return best
