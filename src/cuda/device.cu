#include <cuda_runtime.h>

#include <sstream>

#include "core/error.h"
#include "cuda/device.h"

namespace ignis::cuda {

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

std::string device_description(int dev) {
  cudaDeviceProp p{};
  const cudaError_t e = cudaGetDeviceProperties(&p, dev);
  if (e != cudaSuccess) fail("CUDA device ", dev, ": ", cudaGetErrorString(e));
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(1);
  os << p.name << ", " << double(p.totalGlobalMem) / (1 << 30) << " GiB, sm_" << p.major << p.minor;
  return os.str();
}

}  // namespace ignis::cuda
