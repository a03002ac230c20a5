// CUDA device discovery and error checking shared by the CUDA backend.
#pragma once
#include <string>

namespace ignis::cuda {

// Number of usable CUDA devices (0 if there is no driver or no GPU; never throws).
int device_count();
// "NVIDIA H100 80GB HBM3, 79.1 GiB, sm_90" for device `dev`; throws if it does not exist.
std::string device_description(int dev = 0);

}  // namespace ignis::cuda
