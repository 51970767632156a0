// The sparse first layer as XLA FFI handlers for the CPU: an embedding bag with per-entry values.
//
// A batch is (columns, row_ids, values) triplets, N of each: x[row_ids[n], columns[n]] += values[n].
// Entries whose row is out of [0, B) (padding: row_ids == B) or whose column is out of [0, V) are
// skipped. The kernel is (V, D) with D any number of features (e.g. M models x H units side by
// side, so that M models share one pass over the batch).
//
//   forward:  out[B, D] = x @ kernel          out[row_ids[n]] += values[n] * kernel[columns[n]]
//   backward: dkernel[V, D] = x^T @ grad      dkernel[columns[n]] += values[n] * grad[row_ids[n]]
//
// The same layer reading a batch's rows in place from the dataset stored row-compressed (CSR:
// row r's entries are columns/values[offsets[r]:offsets[r+1]]), so no batch is ever gathered.
// rows is (G, B): G = 1, every feature column reads the same rows; G > 1, the D features are
// G groups of D / G (e.g. models) and group g reads rows[g] (each model its own data order).
// A row number out of [0, n) (padding: -1) is an empty row.
//
//   csr forward:  out[b, group g] = sum over row rows[g, b] of values[n] * kernel[columns[n], g]
//   csr backward: dkernel[v, group g] = sum of values[n] * grad[b, g] over entries of column v
#include <omp.h>

#include <algorithm>
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


// Row rows[i]'s entries [begin, end) in a CSR dataset of `num_rows` rows; empty if out of range.
inline void row_span(const int32_t* offsets, int64_t num_rows, int32_t row, int64_t& begin,
                     int64_t& end) {
  if (static_cast<uint32_t>(row) >= static_cast<uint64_t>(num_rows)) {
    begin = end = 0;
    return;
  }
  begin = offsets[row];
  end = offsets[row + 1];
}

ffi::Error CsrForward(F32 kernel, S32 columns, F32 values, S32 offsets, S32 rows,
                      ffi::ResultBuffer<ffi::F32> out) {
  const int64_t vocab = kernel.dimensions()[0];
  const int64_t groups = rows.dimensions()[0];
  const int64_t batch = rows.dimensions()[1];
  const int64_t num_rows = offsets.element_count() - 1;
  float* o = out->typed_data();
  if (vocab == 0 || batch == 0) {
    std::memset(o, 0, out->element_count() * sizeof(float));
    return ffi::Error::Success();
  }
  const int64_t features = kernel.element_count() / vocab;
  const int64_t width = features / groups;
  const int32_t* col = columns.typed_data();
  const float* val = values.typed_data();
  const int32_t* off = offsets.typed_data();
  const int32_t* row = rows.typed_data();
  const float* k = kernel.typed_data();
  const int64_t entries = batch * (num_rows ? off[num_rows] / num_rows + 1 : 1);
#pragma omp parallel num_threads(threads_for(features, entries))
  {
    int64_t begin, end;
    column_range(features, omp_get_thread_num(), omp_get_num_threads(), begin, end);
    for (int64_t b = 0; b < batch; ++b) {
      float* __restrict__ d = o + b * features;
      std::memset(d + begin, 0, (end - begin) * sizeof(float));
      if (begin >= end) continue;
      for (int64_t g = begin / width; g < groups && g * width < end; ++g) {
        const int64_t c0 = std::max(begin, g * width), c1 = std::min(end, (g + 1) * width);
        int64_t first, last;
        row_span(off, num_rows, row[g * batch + b], first, last);
        for (int64_t n = first; n < last; ++n) {
          const uint32_t c = static_cast<uint32_t>(col[n]);
          if (c >= static_cast<uint64_t>(vocab)) continue;
          const float v = val[n];
          const float* __restrict__ s = k + static_cast<int64_t>(c) * features;
#pragma omp simd
          for (int64_t f = c0; f < c1; ++f) d[f] += v * s[f];
        }
      }
    }
  }
  return ffi::Error::Success();
}

// Group g's columns [c0, c1) of dkernel when dkernel fits in cache: zeroed, then every entry
// added into its row in place.
void csr_backward_direct(const float* grad, const int32_t* col, const float* val,
                         const int32_t* off, int64_t num_rows, const int32_t* group_rows,
                         int64_t batch, int64_t vocab, int64_t features, int64_t c0, int64_t c1,
                         float* out) {
  for (int64_t v = 0; v < vocab; ++v) {
    for (int64_t f = c0; f < c1; ++f) out[v * features + f] = 0.0f;
  }
  for (int64_t b = 0; b < batch; ++b) {
    int64_t first, last;
    row_span(off, num_rows, group_rows[b], first, last);
    const float* __restrict__ s = grad + b * features;
    for (int64_t n = first; n < last; ++n) {
      const uint32_t c = static_cast<uint32_t>(col[n]);
      if (c >= static_cast<uint64_t>(vocab)) continue;
      const float scale = val[n];
      float* __restrict__ d = out + static_cast<int64_t>(c) * features;
#pragma omp simd
      for (int64_t f = c0; f < c1; ++f) d[f] += scale * s[f];
    }
  }
}

// Group g's columns of dkernel: its batch's entries bucketed by column (a counting sort), then
// each kernel row written once (a large dkernel is written sequentially, not at random).
void csr_backward_group(const float* grad, const int32_t* col, const float* val,
                        const int32_t* off, int64_t num_rows, const int32_t* group_rows,
                        int64_t batch, int64_t vocab, int64_t features, int64_t c0, int64_t c1,
                        float* out, int threads) {
  std::vector<int32_t> starts(vocab + 1, 0);
  int64_t total = 0;
  for (int64_t b = 0; b < batch; ++b) {
    int64_t first, last;
    row_span(off, num_rows, group_rows[b], first, last);
    for (int64_t n = first; n < last; ++n) {
      const uint32_t c = static_cast<uint32_t>(col[n]);
      if (c < static_cast<uint64_t>(vocab)) ++starts[c + 1], ++total;
    }
  }
  for (int64_t v = 0; v < vocab; ++v) starts[v + 1] += starts[v];
  std::vector<int32_t> entry(total), source(total);  // the entry and its batch row
  {
    std::vector<int32_t> next(starts.begin(), starts.end() - 1);
    for (int64_t b = 0; b < batch; ++b) {
      int64_t first, last;
      row_span(off, num_rows, group_rows[b], first, last);
      for (int64_t n = first; n < last; ++n) {
        const uint32_t c = static_cast<uint32_t>(col[n]);
        if (c < static_cast<uint64_t>(vocab)) {
          const int32_t at = next[c]++;
          entry[at] = static_cast<int32_t>(n);
          source[at] = static_cast<int32_t>(b);
        }
      }
    }
  }
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t v = 0; v < vocab; ++v) {
    float* __restrict__ d = out + v * features;
    for (int64_t f = c0; f < c1; ++f) d[f] = 0.0f;
    for (int32_t k = starts[v]; k < starts[v + 1]; ++k) {
      const float scale = val[entry[k]];
      const float* __restrict__ s = grad + static_cast<int64_t>(source[k]) * features;
#pragma omp simd
      for (int64_t f = c0; f < c1; ++f) d[f] += scale * s[f];
    }
  }
}

ffi::Error CsrBackward(F32 grad, S32 columns, F32 values, S32 offsets, S32 rows,
                       ffi::ResultBuffer<ffi::F32> dkernel) {
  const int64_t vocab = dkernel->dimensions()[0];
  const int64_t groups = rows.dimensions()[0];
  const int64_t batch = rows.dimensions()[1];
  float* out = dkernel->typed_data();
  if (vocab == 0 || batch == 0) {
    std::memset(out, 0, dkernel->element_count() * sizeof(float));
    return ffi::Error::Success();
  }
  const int64_t features = dkernel->element_count() / vocab;
  const int64_t width = features / groups;
  const int64_t num_rows = offsets.element_count() - 1;
  const int threads = threads_for(features, batch * 64);
  if (vocab * features * sizeof(float) <= (int64_t{2} << 20)) {  // fits in cache: in place
    csr_backward_direct(grad.typed_data(), columns.typed_data(), values.typed_data(),
                        offsets.typed_data(), num_rows, rows.typed_data(), batch, vocab,
                        features, 0, groups > 1 ? width : features, out);
    for (int64_t g = 1; g < groups; ++g) {
      csr_backward_direct(grad.typed_data(), columns.typed_data(), values.typed_data(),
                          offsets.typed_data(), num_rows, rows.typed_data() + g * batch, batch,
                          vocab, features, g * width, (g + 1) * width, out);
    }
    return ffi::Error::Success();
  }
  // One group: its vocabulary rows over the threads; many: whole groups over the threads.
#pragma omp parallel for schedule(static) num_threads(groups > 1 ? threads : 1)
  for (int64_t g = 0; g < groups; ++g) {
    csr_backward_group(grad.typed_data(), columns.typed_data(), values.typed_data(),
                       offsets.typed_data(), num_rows, rows.typed_data() + g * batch, batch,
                       vocab, features, g * width, (g + 1) * width, out,
                       groups > 1 ? 1 : threads);
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxlabEmbagForward, Forward,
                              ffi::Ffi::Bind().Arg<F32>().Arg<S32>().Arg<S32>().Arg<F32>().Ret<F32>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxlabEmbagBackward, Backward,
                              ffi::Ffi::Bind().Arg<F32>().Arg<S32>().Arg<S32>().Arg<F32>().Ret<F32>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(
    JaxlabCsrForward, CsrForward,
    ffi::Ffi::Bind().Arg<F32>().Arg<S32>().Arg<F32>().Arg<S32>().Arg<S32>().Ret<F32>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(
    JaxlabCsrBackward, CsrBackward,
    ffi::Ffi::Bind().Arg<F32>().Arg<S32>().Arg<F32>().Arg<S32>().Arg<S32>().Ret<F32>());
