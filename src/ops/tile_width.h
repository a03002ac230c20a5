// Kernels templated on the number of activation rows they take at once (NC = 1..4) are
// chosen at run time through this one switch: with_tile_width(nc, [&]<int NC>() { ... }).
#pragma once
#include "core/error.h"

namespace ignis::quant::detail {

template <typename F>
inline void with_tile_width(int nc, F&& f) {
  switch (nc) {
    case 1: return f.template operator()<1>();
    case 2: return f.template operator()<2>();
    case 3: return f.template operator()<3>();
    case 4: return f.template operator()<4>();
    default: fail("quant kernel: bad tile width ", nc, " (1 to 4 activation rows)");
  }
}

}  // namespace ignis::quant::detail
