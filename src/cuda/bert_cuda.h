// The CUDA backend of the encoder models (BERT, RoBERTa / XLM-R, MiniLM; see models/bert.h).
//
// Weights live on the GPU in the compute dtype (fp16 by default; bf16; fp32 for parity), q/k/v
// fused into one [3H, H] matrix; LayerNorm gamma/beta in fp32. A batch is ragged: sequences are
// packed one after the other with no padding, and every kernel works on the real tokens only.
//
// One forward pass, per layer (7 launches):
//   cuBLASLt  qkv  = x Wqkv^T + bqkv                  (bias epilogue)
//   flash attention over the packed sequences         (encoder_attention.cu, 1 kernel)
//   cuBLASLt  tmp  = ctx Wo^T + bo                    (bias epilogue)
//   x = LayerNorm(tmp + x)                            (encoder_norm.cu)
//   cuBLASLt  ffn  = GELU(x W1^T + b1)                (bias + GELU epilogue; see exact_gelu)
//   cuBLASLt  tmp  = ffn W2^T + b2                    (bias epilogue; small buckets: split-K slices that
//   x = LayerNorm(tmp + x)                             the LayerNorm sums with b2 and x)
// plus one embedding-gather + LayerNorm kernel in front. The head (pooling / classifier) runs
// after, eagerly, with the real batch size.
//
// CUDA graphs: the total token count n is rounded up to a bucket (64, 128, ... then steps of 1/16
// of the power of two below n: at most ~6% of padded rows, which only the GEMMs see). The layers
// of a bucket are captured once, the first time the bucket is seen (after one eager pass, so
// cuBLASLt's algorithm choice and module loading happen outside the capture), and replayed for
// every later batch whose total falls in that bucket, whatever its sequence count and lengths:
// token ids, positions, sequence offsets and the attention tile list are copied to fixed device
// addresses before each replay, and the kernels read the sizes from there.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <memory>
#include <string>

#include "core/dtype.h"
#include "models/bert.h"

namespace ignis {

struct EncoderCudaOptions {
  DType dtype = DType::F16;     // F16 (default), BF16, or F32 (parity: fp32 GEMMs, no TF32, exact GELU)
  int max_tokens = 16384;       // most tokens of one pass (activations are sized by it); larger batches
                                // are split by sequences into several passes
  int device = 0;
  bool cuda_graphs = true;      // false: every pass launches its kernels eagerly (debugging)
  bool exact_gelu = false;      // F16/BF16: erf GELU as a separate kernel instead of cuBLASLt's
                                // GELU epilogue (tanh approximation, |error| < 5e-4); F32: always exact
  bool generic_attention = false;  // the simple attention kernel instead of the tensor-core one (tests)
  bool split_k = true;          // F16/BF16, small buckets: FFN2 as fp32 k slices that the add + LayerNorm
                                // sums (one kernel fewer; bert_cuda.cpp, split_k); false: plain products
};

class CudaEncoder : public EncoderModel {
 public:
  // Runs the embeddings and the layers of a batch of at most max_tokens tokens on the model's
  // stream and returns without waiting (the last hidden states stay on the GPU; the next call
  // waits for the input copy of this one). For the benchmark; forward() / hidden_states() are
  // the API.
  virtual void run(const EncoderBatch& batch) = 0;
  virtual void synchronize() = 0;
  virtual cudaStream_t stream() const = 0;

  virtual DType dtype() const = 0;
  virtual int max_tokens() const = 0;
  virtual int bucket_of(int tokens) const = 0;  // rows the pass of `tokens` tokens runs on
  virtual int graph_count() const = 0;          // buckets captured so far
  virtual int launches_per_layer() const = 0;   // kernels of one layer by our count (cuBLASLt may add)
  virtual int launches_per_pass() const = 0;    // embeddings + layers
  virtual double last_capture_ms() const = 0;   // time to capture + instantiate the newest graph
  virtual size_t weight_bytes() const = 0;
  virtual double load_seconds() const = 0;      // weights in host memory -> ready (incl. one warm pass)
  virtual std::string describe() const = 0;     // "bert, 12 layers, hidden 768, f16, flash attention, ..."
};

// Uploads the weights of `src` (F32 / F16 / BF16 tensors) to the GPU. Throws ignis::Error for a
// missing or mis-shaped tensor, an unsupported activation, or no GPU.
std::unique_ptr<CudaEncoder> make_cuda_encoder_model(const EncoderSource& src, const EncoderCudaOptions& opt = {});
// The same, as the backend-neutral interface.
std::unique_ptr<EncoderModel> make_cuda_encoder(const EncoderSource& src, const EncoderCudaOptions& opt = {});

}  // namespace ignis
