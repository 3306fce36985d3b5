// Embeds fijit through its public header only: compiles one config to PTX,
// checks that an invalid config is refused with a message naming the
// field, the value and what is allowed, and uses the runtime's cache and
// batch prefill plan.
#include "fijit/fijit.h"

#include <cstdio>
#include <string>

static int fail(const std::string &what) {
  std::fprintf(stderr, "fijit-embed: FAIL: %s\n", what.c_str());
  return 1;
}

int main() {
  std::printf("fijit %s (LLVM %s)\n", fijit::version(), fijit::llvmVersion());

  fijit::CompiledKernel kernel;
  std::string error;
  if (!fijit::compileAttention(
          "head_dim_qk=128,head_dim_vo=128,mask=causal,target=sm_90a", kernel,
          error))
    return fail("compileAttention: " + error);
  std::printf("kernel %s: %zu bytes of PTX, %d threads, tile_q %d, %ld bytes "
              "of shared memory\n",
              kernel.kernelName.c_str(), kernel.ptx.size(),
              kernel.threadsPerBlock, kernel.tileQ, kernel.sharedMemoryBytes);
  if (kernel.kernelName.empty() || kernel.threadsPerBlock <= 0)
    return fail("empty kernel name or thread count");
  if (kernel.ptx.find(".entry " + kernel.kernelName) == std::string::npos)
    return fail("PTX has no .entry " + kernel.kernelName);
  if (kernel.ptx.find(".target sm_90a") == std::string::npos)
    return fail("PTX is not for sm_90a");

  fijit::CompiledKernel bad;
  error.clear();
  if (fijit::compileAttention("head_dim_qk=100", bad, error))
    return fail("head_dim_qk=100 was accepted");
  if (error.rfind("invalid head_dim_qk=100: ", 0) != 0)
    return fail("unexpected error text: " + error);
  std::printf("invalid config refused: %s\n", error.c_str());

  // The runtime API: a cached kernel (no GPU needed to compile it, and no
  // stand-in without a CUDA context), and a batch prefill plan.
  auto cached = fijit::getAttentionKernel("head_dim_qk=64,head_dim_vo=64",
                                          error);
  if (!cached)
    return fail("getAttentionKernel: " + error);
  fijit::waitForBackgroundCompiles();
  if (cached->provisional() || cached->ptx().empty())
    return fail("getAttentionKernel gave a provisional or empty kernel");
  std::string planned;
  if (!fijit::planBatchPrefillConfig("kind=batch_prefill_ragged", 4096,
                                     planned, error))
    return fail("planBatchPrefillConfig: " + error);
  // Long ragged batches on sm_90a take the warp-specialised kernel.
  if (planned.find("num_warps=12") == std::string::npos)
    return fail("long requests planned without the warp-specialised "
                "kernel: " + planned);
  std::printf("kernel %s from tier %s; long batches plan %s\n",
              cached->key().substr(0, 12).c_str(), cached->tier(),
              planned.c_str());

  std::printf("embed OK\n");
  return 0;
}
