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
