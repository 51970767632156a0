// A stable argsort of 32-bit keys, as an XLA FFI handler for the CPU: the sort inside
// jax.random.permutation (each round sorts the rows by fresh random bits, keeping ties in
// order), which XLA's CPU sort does several times slower than this radix sort.
//
//   keys (..., n) uint32 -> order (..., n) int32: keys[order] ascending, equal keys in order.
#ifdef _OPENMP
#include <omp.h>
#else  // built without OpenMP (a compiler that rejects -fopenmp): one thread, pragmas ignored
inline int omp_get_thread_num() { return 0; }
inline int omp_get_num_threads() { return 1; }
inline int omp_get_max_threads() { return 1; }
#endif

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

// A plain C function jaxlab.native calls once after loading the library, before XLA may call
// into it: the stable order of eight fixed keys as octal digits, 0o47130652 (PROBE_VALUE), so
// a library that loads but does not run as built is caught.
extern "C" int64_t JaxlabProbe() {
  const uint32_t keys[8] = {7, 3, 0xFFFFFFFFu, 3, 0, 1u << 20, 7, 2};
  int32_t order[8];
  stable_argsort(keys, 8, order);
  int64_t code = 0;
  for (int i = 0; i < 8; ++i) code = code * 8 + order[i];
  return code;
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxlabStableArgsort, StableArgsort,
                              ffi::Ffi::Bind().Arg<ffi::Buffer<ffi::U32>>().Ret<ffi::Buffer<ffi::S32>>());
