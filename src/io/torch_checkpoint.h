// A safe reader for PyTorch checkpoints written by torch.save (>= 1.6): a zip archive (usually
// stored, uncompressed) holding ARCHIVE/data.pkl, a pickle of the state_dict, and one file
// ARCHIVE/data/KEY per tensor storage.
//
// The pickle is never executed. A small pickle machine understands only the opcodes a state_dict
// of tensors needs (dicts, tuples, lists, strings, numbers, GLOBAL + REDUCE/BUILD and persistent ids)
// and only these callables: collections.OrderedDict, torch._utils._rebuild_tensor_v2,
// torch._utils._rebuild_parameter, and the torch.*Storage types as storage tags. Anything else (an
// arbitrary class, os.system, ...) is an ignis::Error naming it. Every size, stride and offset is
// checked against the storage it reads.
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include "core/tensor.h"

namespace ignis {

// The floating-point tensors (F32, F16, BF16; F64 converted to F32) of a state_dict, by name, as
// contiguous CPU tensors that own their memory. Tensors of other types (int64 buffers such as
// position_ids, bool masks) are left out. Throws ignis::Error naming `what` on any problem.
std::map<std::string, Tensor> parse_torch_state_dict(const uint8_t* data, size_t size, const std::string& what);
std::map<std::string, Tensor> read_torch_state_dict(const std::string& path);

// The pickle machine alone (for the fuzzer and the tests): parses a data.pkl and returns the
// tensors it describes as "name -> storage key" lines, without reading any storage.
std::string describe_torch_pickle(const uint8_t* data, size_t size, const std::string& what);

}  // namespace ignis
