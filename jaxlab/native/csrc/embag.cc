// The sparse first layer as XLA FFI handlers for the CPU: an embedding bag with per-entry values,
// reading a batch's rows in place from the dataset stored row-compressed (CSR: row r's entries
// are columns/values[offsets[r]:offsets[r+1]]), so no batch is ever gathered.
// Models first: the kernel is (K, V, H) and rows (G, B), with K and G each 1 or N; model m uses
// kernel m (or the one kernel) and reads rows[m] (or the one row list). A row number out of
// [0, n) (padding: -1) is an empty row, and an entry whose column is out of [0, V) is skipped.
// Each model's work touches only its own kernel (V x H, e.g. 640 KB for the lesson's model),
// which stays in cache while its rows are summed.
//
//   csr forward:  out[m, b] = sum over row rows[m, b]'s entries n of values[n] * kernel[m, columns[n]]
//   csr backward: dkernel[m, v] = sum of values[n] * grad[m, b] over the entries n of column v
//   csr update:   the backward pass with the optimizer's step fused in, kernel and slot updated
//                 in place (see CsrUpdate below)
#ifdef _OPENMP
#include <omp.h>
#else  // built without OpenMP (a compiler that rejects -fopenmp): one thread, pragmas ignored
inline int omp_get_thread_num() { return 0; }
inline int omp_get_num_threads() { return 1; }
inline int omp_get_max_threads() { return 1; }
#endif

#include <algorithm>
#include <cstdint>
#include <cmath>
#include <cstring>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using F32 = ffi::Buffer<ffi::F32>;
using S32 = ffi::Buffer<ffi::S32>;

namespace {

// Thread t's share [begin, end) of the feature columns, in multiples of 16 floats.
void column_range(int64_t features, int t, int threads, int64_t& begin, int64_t& end) {
  begin = (features * t / threads) & ~int64_t{15};
  end = (t == threads - 1) ? features : ((features * (t + 1) / threads) & ~int64_t{15});
}

// Row `row`'s entries [begin, end) in a CSR dataset of `num_rows` rows; empty if out of range.
inline void row_span(const int32_t* offsets, int64_t num_rows, int32_t row, int64_t& begin,
                     int64_t& end) {
  if (static_cast<uint32_t>(row) >= static_cast<uint64_t>(num_rows)) {
    begin = end = 0;
    return;
  }
  begin = offsets[row];
  end = offsets[row + 1];
}

// The CSR dataset, shared by every model.
struct Csr {
  const int32_t* columns;
  const float* values;
  const int32_t* offsets;
  int64_t num_rows;
  int64_t vocab;

  int64_t mean_row_length() const { return num_rows ? offsets[num_rows] / num_rows + 1 : 1; }
};

Csr csr(S32 columns, F32 values, S32 offsets, int64_t vocab) {
  return Csr{columns.typed_data(), values.typed_data(), offsets.typed_data(),
             static_cast<int64_t>(offsets.element_count()) - 1, vocab};
}

// d[c0:c1] += v * s[c0:c1]; W > 0 is the width known at compile time (c0 = 0, c1 = W).
template <int W>
inline void axpy(float* __restrict__ d, const float* __restrict__ s, float v, int64_t c0,
                 int64_t c1) {
  if constexpr (W > 0) {
#pragma omp simd
    for (int64_t f = 0; f < W; ++f) d[f] += v * s[f];
  } else {
#pragma omp simd
    for (int64_t f = c0; f < c1; ++f) d[f] += v * s[f];
  }
}

// A row read many times: copied into `held` (registers) when its width W is known at compile
// time, else read in place.
template <int W>
inline const float* hold(const float* row, float* held) {
  if constexpr (W > 0) {
    for (int f = 0; f < W; ++f) held[f] = row[f];
    return held;
  }
  return row;
}

// Starts loading batch row b's entries while the row before it is summed: rows come in random
// order, and waiting for each one's first entries from memory cost about half the time.
inline void prefetch_row(const Csr& data, const int32_t* rows, int64_t b, int64_t batch) {
  if (b >= batch) return;
  int64_t first, last;
  row_span(data.offsets, data.num_rows, rows[b], first, last);
  for (int64_t n = first; n < last; n += 16) {
    __builtin_prefetch(data.columns + n);
    __builtin_prefetch(data.values + n);
  }
}

// out = sum of values[n] * k[columns[n]] over [first, last), for a width W known at compile
// time: two accumulators in registers (two independent chains of multiply-adds).
template <int W>
inline void sum_rows(const Csr& data, const float* k, int64_t first, int64_t last, float* out) {
  float a[W], b[W];
  for (int f = 0; f < W; ++f) a[f] = b[f] = 0.0f;
  const uint64_t vocab = static_cast<uint64_t>(data.vocab);
  int64_t n = first;
  for (; n + 1 < last; n += 2) {
    const uint32_t c0 = static_cast<uint32_t>(data.columns[n]);
    const uint32_t c1 = static_cast<uint32_t>(data.columns[n + 1]);
    if (c0 < vocab) axpy<W>(a, k + static_cast<int64_t>(c0) * W, data.values[n], 0, W);
    if (c1 < vocab) axpy<W>(b, k + static_cast<int64_t>(c1) * W, data.values[n + 1], 0, W);
  }
  if (n < last) {
    const uint32_t c = static_cast<uint32_t>(data.columns[n]);
    if (c < vocab) axpy<W>(a, k + static_cast<int64_t>(c) * W, data.values[n], 0, W);
  }
  for (int f = 0; f < W; ++f) out[f] = a[f] + b[f];
}

// One model's out[b, c0:c1] for its batch rows `rows` (B), its kernel k (V x width); W > 0:
// width W, all columns.
template <int W>
void forward_model(const Csr& data, const float* k, int64_t width, const int32_t* rows,
                   int64_t batch, int64_t c0, int64_t c1, float* out) {
  for (int64_t b = 0; b < batch; ++b) {
    prefetch_row(data, rows, b + 1, batch);
    int64_t first, last;
    row_span(data.offsets, data.num_rows, rows[b], first, last);
    float* __restrict__ d = out + b * width;
    if constexpr (W > 0) {
      sum_rows<W>(data, k, first, last, d);
    } else {
      for (int64_t f = c0; f < c1; ++f) d[f] = 0.0f;
      for (int64_t n = first; n < last; ++n) {
        const uint32_t c = static_cast<uint32_t>(data.columns[n]);
        if (c >= static_cast<uint64_t>(data.vocab)) continue;
        axpy<0>(d, k + static_cast<int64_t>(c) * width, data.values[n], c0, c1);
      }
    }
  }
}

// One model's dkernel (V x width, zeroed here) for its batch rows, each entry added in place:
// for a kernel that fits in cache. W > 0: width W, the row's gradient held in registers.
template <int W>
void backward_model_direct(const Csr& data, const float* grad, int64_t width, const int32_t* rows,
                           int64_t batch, float* out) {
  std::memset(out, 0, data.vocab * width * sizeof(float));
  for (int64_t b = 0; b < batch; ++b) {
    prefetch_row(data, rows, b + 1, batch);
    int64_t first, last;
    row_span(data.offsets, data.num_rows, rows[b], first, last);
    float held[W > 0 ? W : 1];
    const float* __restrict__ g = hold<W>(grad + b * width, held);
    for (int64_t n = first; n < last; ++n) {
      const uint32_t c = static_cast<uint32_t>(data.columns[n]);
      if (c >= static_cast<uint64_t>(data.vocab)) continue;
      axpy<W>(out + static_cast<int64_t>(c) * width, g, data.values[n], 0, width);
    }
  }
}

// A batch's entries bucketed by column (a counting sort): column v's entries are
// [starts[v], starts[v+1]), each with its batch row and value. Walking the kernel in this order
// reads (forward) or writes (backward) each kernel row once, in sequence, while the batch's
// rows (B x width) stay in cache; many models share one such order.
struct ByColumn {
  std::vector<int32_t> starts, row;
  std::vector<float> value;
};

// The order is built in storage kept by the calling thread between calls: fresh pages for
// these arrays on every call cost about as much as filling them.
const ByColumn& by_column(const Csr& data, const int32_t* rows, int64_t batch) {
  thread_local ByColumn order;
  thread_local std::vector<int32_t> next;
  const int64_t vocab = data.vocab;
  const uint64_t limit = static_cast<uint64_t>(vocab);
  order.starts.assign(vocab + 1, 0);
  for (int64_t b = 0; b < batch; ++b) {
    prefetch_row(data, rows, b + 1, batch);
    int64_t first, last;
    row_span(data.offsets, data.num_rows, rows[b], first, last);
    for (int64_t n = first; n < last; ++n) {
      const uint32_t c = static_cast<uint32_t>(data.columns[n]);
      if (c < limit) ++order.starts[c + 1];
    }
  }
  for (int64_t v = 0; v < vocab; ++v) order.starts[v + 1] += order.starts[v];
  order.row.resize(order.starts[vocab]);
  order.value.resize(order.starts[vocab]);
  next.assign(order.starts.begin(), order.starts.end() - 1);
  for (int64_t b = 0; b < batch; ++b) {
    int64_t first, last;
    row_span(data.offsets, data.num_rows, rows[b], first, last);
    for (int64_t n = first; n < last; ++n) {
      const uint32_t c = static_cast<uint32_t>(data.columns[n]);
      if (c < limit) {
        const int32_t at = next[c]++;
        order.row[at] = static_cast<int32_t>(b);
        order.value[at] = data.values[n];
      }
    }
  }
  return order;
}

// out = sum of order.value[i] * table[order.row[i]] over column v's entries (rows of `width`
// floats). For a width W known at compile time, A accumulators in registers, so that a frequent
// word's long list of multiply-adds runs as A independent chains.
template <int W, int A = 4>
inline void sum_column(const ByColumn& order, int64_t v, const float* table, int64_t width,
                       float* out) {
  const int32_t first = order.starts[v], last = order.starts[v + 1];
  if (W == 0 || last - first < 2 * A) {  // most columns: a word in few of the batch's reviews
    const int64_t n = W > 0 ? W : width;
    for (int64_t f = 0; f < n; ++f) out[f] = 0.0f;
    for (int32_t i = first; i < last; ++i) {
      axpy<W>(out, table + static_cast<int64_t>(order.row[i]) * n, order.value[i], 0, n);
    }
    return;
  }
  constexpr int w = W > 0 ? W : 1;
  float acc[A][w];
  for (int a = 0; a < A; ++a) {
    for (int f = 0; f < w; ++f) acc[a][f] = 0.0f;
  }
  int32_t i = first;
  for (; i + A <= last; i += A) {
    for (int a = 0; a < A; ++a) {
      axpy<W>(acc[a], table + static_cast<int64_t>(order.row[i + a]) * W, order.value[i + a], 0, W);
    }
  }
  for (int a = 0; i < last; ++i, ++a) {
    axpy<W>(acc[a], table + static_cast<int64_t>(order.row[i]) * W, order.value[i], 0, W);
  }
  for (int f = 0; f < w; ++f) {
    float total = 0.0f;
    for (int a = 0; a < A; ++a) total += acc[a][f];
    out[f] = total;
  }
}

// One model's out (B x width, zeroed here) from its kernel k, column by column.
template <int W>
void forward_model_by_column(const ByColumn& order, const float* k, int64_t vocab, int64_t width,
                             int64_t batch, float* out) {
  std::memset(out, 0, batch * width * sizeof(float));
  for (int64_t v = 0; v < vocab; ++v) {
    const int32_t first = order.starts[v], last = order.starts[v + 1];
    if (first == last) continue;
    float held[W > 0 ? W : 1];
    const float* __restrict__ s = hold<W>(k + v * width, held);
    for (int32_t i = first; i < last; ++i) {
      axpy<W>(out + static_cast<int64_t>(order.row[i]) * width, s, order.value[i], 0, width);
    }
  }
}

// One model's dkernel rows [v0, v1) from its batch gradient (B x width): each row summed, then
// written once.
template <int W>
void backward_model_by_column(const ByColumn& order, const float* grad, int64_t width,
                              int64_t v0, int64_t v1, float* out) {
  for (int64_t v = v0; v < v1; ++v) sum_column<W>(order, v, grad, width, out + v * width);
}

// One model's dkernel for a kernel larger than cache: column by column, the vocabulary split
// over `threads` threads.
void backward_model_sorted(const Csr& data, const float* grad, int64_t width, const int32_t* rows,
                           int64_t batch, float* out, int threads) {
  const ByColumn& order = by_column(data, rows, batch);
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), n = omp_get_num_threads();
    backward_model_by_column<0>(order, grad, width, data.vocab * t / n, data.vocab * (t + 1) / n,
                                out);
  }
}

// Many models reading the same rows (G = 1) can walk one shared column order, streaming their
// kernels in sequence instead of fetching rows at random. Measured on a 2-core Xeon (lesson's
// model, ms per epoch): the backward pass gains from 4 models on (8 models 58 -> 38, 64 models
// 490 -> 305); the forward pass only once the models' kernels together outgrow the cache
// (64 models, 40 MB: 650 -> 405; 8 models, 5 MB: 61 -> 79), so its threshold is in bytes and
// comes from the caller (by_column_bytes).
constexpr int64_t kByColumnModels = 4;

// Threads for `models` models of `work` multiply-adds each: models are spread over the threads;
// a single model with wide rows splits its feature columns instead; small work stays on one.
int threads_for_models(int64_t models, int64_t width, int64_t work) {
  const int available = omp_get_max_threads();
  if (models * work < (int64_t{1} << 20)) return 1;
  if (models > 1) return static_cast<int>(std::min<int64_t>(available, models));
  return width >= 128 ? available : 1;
}

ffi::Error CsrForward(F32 kernel, S32 columns, F32 values, S32 offsets, S32 rows,
                      int64_t by_column_bytes, ffi::ResultBuffer<ffi::F32> out) {
  const auto kdims = kernel.dimensions();
  const int64_t kernels = kdims[0], vocab = kdims[1], width = kdims[2];
  const int64_t groups = rows.dimensions()[0], batch = rows.dimensions()[1];
  const int64_t models = out->dimensions()[0];
  float* o = out->typed_data();
  if (vocab == 0 || batch == 0 || width == 0) {
    std::memset(o, 0, out->element_count() * sizeof(float));
    return ffi::Error::Success();
  }
  const Csr data = csr(columns, values, offsets, vocab);
  const int threads = threads_for_models(models, width, data.mean_row_length() * batch * width);
  const float* k = kernel.typed_data();
  const int32_t* r = rows.typed_data();
  if (models == 1 && threads > 1) {  // one wide model: feature columns over the threads
#pragma omp parallel num_threads(threads)
    {
      int64_t c0, c1;
      column_range(width, omp_get_thread_num(), omp_get_num_threads(), c0, c1);
      if (c0 < c1) forward_model<0>(data, k, width, r, batch, c0, c1, o);
    }
    return ffi::Error::Success();
  }
  const int64_t kernel_bytes = models * vocab * width * static_cast<int64_t>(sizeof(float));
  if (groups == 1 && models > 1 && kernel_bytes >= by_column_bytes) {
    const ByColumn& order = by_column(data, r, batch);
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t m = 0; m < models; ++m) {
      const float* km = k + (kernels == 1 ? 0 : m) * vocab * width;
      float* om = o + m * batch * width;
      switch (width) {
        case 16: forward_model_by_column<16>(order, km, vocab, width, batch, om); break;
        case 32: forward_model_by_column<32>(order, km, vocab, width, batch, om); break;
        default: forward_model_by_column<0>(order, km, vocab, width, batch, om);
      }
    }
    return ffi::Error::Success();
  }
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t m = 0; m < models; ++m) {
    const float* km = k + (kernels == 1 ? 0 : m) * vocab * width;
    const int32_t* rm = r + (groups == 1 ? 0 : m) * batch;
    float* om = o + m * batch * width;
    switch (width) {
      case 16: forward_model<16>(data, km, width, rm, batch, 0, width, om); break;
      case 32: forward_model<32>(data, km, width, rm, batch, 0, width, om); break;
      case 64: forward_model<64>(data, km, width, rm, batch, 0, width, om); break;
      default: forward_model<0>(data, km, width, rm, batch, 0, width, om);
    }
  }
  return ffi::Error::Success();
}

ffi::Error CsrBackward(F32 grad, S32 columns, F32 values, S32 offsets, S32 rows,
                       ffi::ResultBuffer<ffi::F32> dkernel) {
  const auto dims = dkernel->dimensions();
  const int64_t models = dims[0], vocab = dims[1], width = dims[2];
  const int64_t groups = rows.dimensions()[0], batch = rows.dimensions()[1];
  float* out = dkernel->typed_data();
  if (vocab == 0 || batch == 0 || width == 0) {
    std::memset(out, 0, dkernel->element_count() * sizeof(float));
    return ffi::Error::Success();
  }
  const Csr data = csr(columns, values, offsets, vocab);
  const int threads = threads_for_models(models, width, data.mean_row_length() * batch * width);
  const bool fits = vocab * width * sizeof(float) <= (int64_t{2} << 20);
  const float* g = grad.typed_data();
  const int32_t* r = rows.typed_data();
  if (groups == 1 && models >= kByColumnModels) {
    const ByColumn& order = by_column(data, r, batch);
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t m = 0; m < models; ++m) {
      const float* gm = g + m * batch * width;
      float* dm = out + m * vocab * width;
      switch (width) {
        case 16: backward_model_by_column<16>(order, gm, width, 0, vocab, dm); break;
        case 32: backward_model_by_column<32>(order, gm, width, 0, vocab, dm); break;
        default: backward_model_by_column<0>(order, gm, width, 0, vocab, dm);
      }
    }
    return ffi::Error::Success();
  }
#pragma omp parallel for schedule(static) num_threads(models > 1 ? threads : 1)
  for (int64_t m = 0; m < models; ++m) {
    const float* gm = g + m * batch * width;
    const int32_t* rm = r + (groups == 1 ? 0 : m) * batch;
    float* dm = out + m * vocab * width;
    if (!fits) {
      backward_model_sorted(data, gm, width, rm, batch, dm, models > 1 ? 1 : threads);
    } else if (width == 16) {
      backward_model_direct<16>(data, gm, width, rm, batch, dm);
    } else if (width == 32) {
      backward_model_direct<32>(data, gm, width, rm, batch, dm);
    } else {
      backward_model_direct<0>(data, gm, width, rm, batch, dm);
    }
  }
  return ffi::Error::Success();
}


// The first layer's optimizer step fused into its backward pass. Instead of writing dkernel
// (M x V x H) for XLA to read back twice in the optimizer's update, each kernel row's gradient
// is summed (in registers, column by column, or in a cached per-model buffer) and the update
// applied to the kernel row and its optimizer slot at once, both in place: one pass over the
// kernels and slots per step instead of three. jaxlab/fused.py names the rules; with g the row's
// gradient plus 2 l2 k (the L2 penalty's):
//   kRmsprop:        s = (1 - rho) g^2 + rho s;  k += -lr (g / sqrt(s + eps))     (Keras 3)
//   kRmspropOutside: s likewise;                 k += -lr (g / (sqrt(s) + eps))   (Keras 2)
enum Rule : int64_t { kRmsprop = 0, kRmspropOutside = 1 };

// One model's hyperparameters, in the order jaxlab/fused.py passes them.
struct Hyper {
  float learning_rate, rho, epsilon, l2;
};

template <int64_t R, bool Penalized>
inline void step_row(float* __restrict__ k, float* __restrict__ s, const float* __restrict__ g,
                     int64_t width, const Hyper& h) {
  const float keep = h.rho, mix = 1.0f - h.rho, step = -h.learning_rate, decay = 2.0f * h.l2;
#pragma omp simd
  for (int64_t f = 0; f < width; ++f) {
    const float grad = Penalized ? g[f] + decay * k[f] : g[f];
    const float slot = mix * (grad * grad) + keep * s[f];
    const float scale = R == kRmsprop ? 1.0f / std::sqrt(slot + h.epsilon)
                                      : 1.0f / (std::sqrt(slot) + h.epsilon);
    s[f] = slot;
    k[f] += step * (scale * grad);
  }
}

template <int64_t R>
inline void step_row(float* k, float* s, const float* g, int64_t width, const Hyper& h) {
  if (h.l2 != 0.0f) {
    step_row<R, true>(k, s, g, width, h);
  } else {
    step_row<R, false>(k, s, g, width, h);
  }
}

// One model's step, rows walked in a shared column order: each row's gradient summed in
// registers (W > 0: width W), then applied.
template <int64_t R, int W>
void update_model_by_column(const ByColumn& order, const float* grad, int64_t vocab,
                            int64_t width, const Hyper& h, float* k, float* s) {
  float held[W > 0 ? W : 1];
  std::vector<float> wide(W > 0 ? 0 : width);
  float* row = W > 0 ? held : wide.data();
  for (int64_t v = 0; v < vocab; ++v) {
    sum_column<W>(order, v, grad, width, row);
    step_row<R>(k + v * width, s + v * width, row, width, h);
  }
}

// One model's step from its own rows: the gradient summed in place into a buffer the size of
// the kernel (which stays in cache), then applied row by row.
template <int64_t R, int W>
void update_model_direct(const Csr& data, const float* grad, int64_t width, const int32_t* rows,
                         int64_t batch, const Hyper& h, float* k, float* s) {
  thread_local std::vector<float> dkernel;  // kept between calls: no fresh pages each step
  dkernel.resize(data.vocab * width);
  backward_model_direct<W>(data, grad, width, rows, batch, dkernel.data());
  for (int64_t v = 0; v < data.vocab; ++v) {
    step_row<R>(k + v * width, s + v * width, dkernel.data() + v * width, width, h);
  }
}

template <int64_t R, int W>
void update_models(const Csr& data, const float* g, const int32_t* r, int64_t models,
                   int64_t groups, int64_t batch, int64_t width, const float* hyper, int threads,
                   float* k, float* s) {
  const int64_t vocab = data.vocab;
  const bool shared_order = groups == 1 && models >= kByColumnModels;
  static const ByColumn none;
  const ByColumn& order = shared_order ? by_column(data, r, batch) : none;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t m = 0; m < models; ++m) {
    const float* p = hyper + 4 * m;
    const Hyper h{p[0], p[1], p[2], p[3]};
    const float* gm = g + m * batch * width;
    float* km = k + m * vocab * width;
    float* sm = s + m * vocab * width;
    if (shared_order) {
      update_model_by_column<R, W>(order, gm, vocab, width, h, km, sm);
    } else {
      const int32_t* rm = r + (groups == 1 ? 0 : m) * batch;
      update_model_direct<R, W>(data, gm, width, rm, batch, h, km, sm);
    }
  }
}

template <int64_t R>
void update_width(const Csr& data, const float* g, const int32_t* r, int64_t models,
                  int64_t groups, int64_t batch, int64_t width, const float* hyper, int threads,
                  float* k, float* s) {
  switch (width) {
    case 16: return update_models<R, 16>(data, g, r, models, groups, batch, width, hyper, threads, k, s);
    case 32: return update_models<R, 32>(data, g, r, models, groups, batch, width, hyper, threads, k, s);
    default: return update_models<R, 0>(data, g, r, models, groups, batch, width, hyper, threads, k, s);
  }
}

// kernel, slot (N, V, H) -> updated in place (aliased to the results); grad (N, B, H) is the
// gradient at the layer's output, hyper (N, 4) and rows (G, B).
ffi::Error CsrUpdate(F32 kernel, F32 slot, F32 grad, F32 hyper, S32 columns, F32 values,
                     S32 offsets, S32 rows, int64_t rule, ffi::ResultBuffer<ffi::F32> kernel_out,
                     ffi::ResultBuffer<ffi::F32> slot_out) {
  const auto dims = kernel.dimensions();
  const int64_t models = dims[0], vocab = dims[1], width = dims[2];
  const int64_t groups = rows.dimensions()[0], batch = rows.dimensions()[1];
  float* k = kernel_out->typed_data();
  float* s = slot_out->typed_data();
  if (rule != kRmsprop && rule != kRmspropOutside) {
    return ffi::Error::InvalidArgument("jaxlab_csr_update: unknown rule");
  }
  const size_t bytes = kernel.element_count() * sizeof(float);
  if (k != kernel.typed_data()) std::memcpy(k, kernel.typed_data(), bytes);
  if (s != slot.typed_data()) std::memcpy(s, slot.typed_data(), bytes);
  if (models == 0 || vocab == 0 || width == 0) return ffi::Error::Success();
  const Csr data = csr(columns, values, offsets, vocab);
  const int threads = threads_for_models(models, width, data.mean_row_length() * batch * width);
  const float* g = grad.typed_data();
  const int32_t* r = rows.typed_data();
  const float* p = hyper.typed_data();
  if (rule == kRmsprop) {
    update_width<kRmsprop>(data, g, r, models, groups, batch, width, p, threads, k, s);
  } else {
    update_width<kRmspropOutside>(data, g, r, models, groups, batch, width, p, threads, k, s);
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(
    JaxlabCsrForward, CsrForward,
    ffi::Ffi::Bind()
        .Arg<F32>()
        .Arg<S32>()
        .Arg<F32>()
        .Arg<S32>()
        .Arg<S32>()
        .Attr<int64_t>("by_column_bytes")
        .Ret<F32>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(
    JaxlabCsrBackward, CsrBackward,
    ffi::Ffi::Bind().Arg<F32>().Arg<S32>().Arg<F32>().Arg<S32>().Arg<S32>().Ret<F32>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxlabCsrUpdate, CsrUpdate,
                              ffi::Ffi::Bind()
                                  .Arg<F32>()
                                  .Arg<F32>()
                                  .Arg<F32>()
                                  .Arg<F32>()
                                  .Arg<S32>()
                                  .Arg<F32>()
                                  .Arg<S32>()
                                  .Arg<S32>()
                                  .Attr<int64_t>("rule")
                                  .Ret<F32>()
                                  .Ret<F32>());
