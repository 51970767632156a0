// The sparse first layer as XLA FFI handlers for the CPU: an embedding bag with per-entry values.
//
// A batch is (columns, row_ids, values) triplets, N of each: x[row_ids[n], columns[n]] += values[n].
// Entries whose row is out of [0, B) (padding: row_ids == B) or whose column is out of [0, V) are
// skipped. The kernel is (V, D) with D any number of features (e.g. M models x H units side by
// side, so that M models share one pass over the batch).
//
//   forward:  out[B, D] = x @ kernel          out[row_ids[n]] += values[n] * kernel[columns[n]]
//   backward: dkernel[V, D] = x^T @ grad      dkernel[columns[n]] += values[n] * grad[row_ids[n]]
#include <omp.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using F32 = ffi::Buffer<ffi::F32>;
using S32 = ffi::Buffer<ffi::S32>;

namespace {

// Wide rows (many models side by side) are split by feature columns over threads; narrow ones
// run on one thread, where a thread team costs more than it saves.
int threads_for(int64_t features, int64_t entries) {
  return (features >= 128 && features * entries >= (int64_t{1} << 20)) ? omp_get_max_threads() : 1;
}

// Thread t's share [begin, end) of the feature columns, in multiples of 16 floats.
void column_range(int64_t features, int t, int threads, int64_t& begin, int64_t& end) {
  begin = (features * t / threads) & ~int64_t{15};
  end = (t == threads - 1) ? features : ((features * (t + 1) / threads) & ~int64_t{15});
}

// dst[to[n]] += values[n] * src[from[n]] for every entry with both indices in range; dst zeroed.
void scatter_rows(const float* src, int64_t src_rows, float* dst, int64_t dst_rows,
                  int64_t features, const int32_t* from, const int32_t* to, const float* values,
                  int64_t entries) {
#pragma omp parallel num_threads(threads_for(features, entries))
  {
    int64_t begin, end;
    column_range(features, omp_get_thread_num(), omp_get_num_threads(), begin, end);
    const int64_t width = end - begin;
    for (int64_t r = 0; r < dst_rows; ++r) {
      std::memset(dst + r * features + begin, 0, width * sizeof(float));
    }
    for (int64_t n = 0; n < entries; ++n) {
      const uint32_t i = static_cast<uint32_t>(from[n]);
      const uint32_t o = static_cast<uint32_t>(to[n]);
      if (i >= static_cast<uint64_t>(src_rows) || o >= static_cast<uint64_t>(dst_rows)) continue;
      const float v = values[n];
      const float* __restrict__ s = src + static_cast<int64_t>(i) * features;
      float* __restrict__ d = dst + static_cast<int64_t>(o) * features;
      if (v == 1.0f) {
#pragma omp simd
        for (int64_t c = begin; c < end; ++c) d[c] += s[c];
      } else {
#pragma omp simd
        for (int64_t c = begin; c < end; ++c) d[c] += v * s[c];
      }
    }
  }
}

ffi::Error Forward(F32 kernel, S32 columns, S32 row_ids, F32 values, ffi::ResultBuffer<ffi::F32> out) {
  const int64_t vocab = kernel.dimensions()[0];
  if (vocab == 0) {
    std::memset(out->typed_data(), 0, out->element_count() * sizeof(float));
    return ffi::Error::Success();
  }
  const int64_t features = kernel.element_count() / vocab;
  const int64_t rows = features ? out->element_count() / features : 0;
  scatter_rows(kernel.typed_data(), vocab, out->typed_data(), rows, features,
               columns.typed_data(), row_ids.typed_data(), values.typed_data(),
               columns.element_count());
  return ffi::Error::Success();
}

// dkernel[v] = sum of values[n] * grad[row_ids[n]] over the entries of column v, each kernel row
// written once: the entries are bucketed by column first (a counting sort), so the scattered
// read-modify-writes of a large kernel become sequential writes.
ffi::Error Backward(F32 grad, S32 columns, S32 row_ids, F32 values,
                    ffi::ResultBuffer<ffi::F32> dkernel) {
  const int64_t rows = grad.dimensions()[0];
  const int64_t vocab = dkernel->dimensions()[0];
  const int64_t entries = columns.element_count();
  float* out = dkernel->typed_data();
  if (rows == 0 || vocab == 0) {
    std::memset(out, 0, dkernel->element_count() * sizeof(float));
    return ffi::Error::Success();
  }
  const int64_t features = grad.element_count() / rows;
  const int32_t* col = columns.typed_data();
  const int32_t* row = row_ids.typed_data();
  const float* val = values.typed_data();
  const float* g = grad.typed_data();
  std::vector<int32_t> starts(vocab + 1, 0), order(entries);
  for (int64_t n = 0; n < entries; ++n) {
    const uint32_t c = static_cast<uint32_t>(col[n]);
    if (c < static_cast<uint64_t>(vocab) && static_cast<uint32_t>(row[n]) < static_cast<uint64_t>(rows)) {
      ++starts[c + 1];
    }
  }
  for (int64_t v = 0; v < vocab; ++v) starts[v + 1] += starts[v];
  {
    std::vector<int32_t> next(starts.begin(), starts.end() - 1);
    for (int64_t n = 0; n < entries; ++n) {
      const uint32_t c = static_cast<uint32_t>(col[n]);
      if (c < static_cast<uint64_t>(vocab) && static_cast<uint32_t>(row[n]) < static_cast<uint64_t>(rows)) {
        order[next[c]++] = static_cast<int32_t>(n);
      }
    }
  }
#pragma omp parallel for schedule(static) num_threads(threads_for(features, entries))
  for (int64_t v = 0; v < vocab; ++v) {
    float* __restrict__ d = out + v * features;
    const int32_t begin = starts[v], end = starts[v + 1];
    if (begin == end) {
      std::memset(d, 0, features * sizeof(float));
      continue;
    }
    {
      const int32_t n = order[begin];
      const float scale = val[n];
      const float* __restrict__ s = g + static_cast<int64_t>(row[n]) * features;
#pragma omp simd
      for (int64_t c = 0; c < features; ++c) d[c] = scale * s[c];
    }
    for (int32_t k = begin + 1; k < end; ++k) {
      const int32_t n = order[k];
      const float scale = val[n];
      const float* __restrict__ s = g + static_cast<int64_t>(row[n]) * features;
#pragma omp simd
      for (int64_t c = 0; c < features; ++c) d[c] += scale * s[c];
    }
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxlabEmbagForward, Forward,
                              ffi::Ffi::Bind().Arg<F32>().Arg<S32>().Arg<S32>().Arg<F32>().Ret<F32>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxlabEmbagBackward, Backward,
                              ffi::Ffi::Bind().Arg<F32>().Arg<S32>().Arg<S32>().Arg<F32>().Ret<F32>());
