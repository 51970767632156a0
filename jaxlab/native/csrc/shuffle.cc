// A stable argsort of 32-bit keys, as an XLA FFI handler for the CPU: the sort inside
// jax.random.permutation (each round sorts the rows by fresh random bits, keeping ties in
// order), which XLA's CPU sort does several times slower than this radix sort.
//
//   keys (..., n) uint32 -> order (..., n) int32: keys[order] ascending, equal keys in order.
#include <omp.h>

#include <cstdint>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// order = the stable ascending order of keys[0:n]: four passes of a least-significant-digit
// radix sort on 8 bits each, carrying (key, index) pairs.
void stable_argsort(const uint32_t* keys, int64_t n, int32_t* order) {
  std::vector<uint32_t> key(keys, keys + n), key_next(n);
  std::vector<int32_t> index(n), index_next(n);
  for (int64_t i = 0; i < n; ++i) index[i] = static_cast<int32_t>(i);
  for (int shift = 0; shift < 32; shift += 8) {
    int64_t starts[257] = {0};
    for (int64_t i = 0; i < n; ++i) ++starts[((key[i] >> shift) & 255) + 1];
    for (int d = 0; d < 256; ++d) starts[d + 1] += starts[d];
    for (int64_t i = 0; i < n; ++i) {
      const int64_t at = starts[(key[i] >> shift) & 255]++;
      key_next[at] = key[i];
      index_next[at] = index[i];
    }
    key.swap(key_next);
    index.swap(index_next);
  }
  for (int64_t i = 0; i < n; ++i) order[i] = index[i];
}

ffi::Error StableArgsort(ffi::Buffer<ffi::U32> keys, ffi::ResultBuffer<ffi::S32> order) {
  const auto dims = keys.dimensions();
  const int64_t n = dims.size() == 0 ? 1 : dims[dims.size() - 1];
  const int64_t rows = n ? keys.element_count() / n : 0;
  const uint32_t* k = keys.typed_data();
  int32_t* o = order->typed_data();
#pragma omp parallel for schedule(static) num_threads(rows > 1 ? omp_get_max_threads() : 1)
  for (int64_t r = 0; r < rows; ++r) stable_argsort(k + r * n, n, o + r * n);
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxlabStableArgsort, StableArgsort,
                              ffi::Ffi::Bind().Arg<ffi::Buffer<ffi::U32>>().Ret<ffi::Buffer<ffi::S32>>());
