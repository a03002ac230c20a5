// The CLI's bridge to the CUDA backend (src/cuda/), compiled in when the build has CUDA.
#include "cli_common.h"
#include "core/error.h"

namespace ignis::cli {

std::unique_ptr<LlamaModel> make_cuda_model(const ModelSource& src, int ctx) {
  fail("--device cuda: the CUDA backend for models is not available in this build yet");
}

int bench_synthetic(const BenchArgs& a) {
  fail("--synthetic needs the CUDA backend, which is not available in this build yet");
}

}  // namespace ignis::cli
