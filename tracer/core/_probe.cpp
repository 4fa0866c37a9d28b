// tracer.core._probe: the hooks' fast path reads a tensor's metadata straight from its TensorImpl.
//
// A traced call of a one-tensor layer needs the output's (shape, dtype, device,
// requires_grad) as a shared metadata tuple, and needs to know whether its input is the
// previous call's output, unchanged. Through torch's Python getters that is five attribute
// reads, a torch.Size and a torch.device allocated, a tuple hashed: about 0.65 us per tensor
// inside a forward here. This module answers both questions from the C++ tensor and a small
// table, and falls back to the Python callable it was given for anything unusual. It is built
// only when torch is importable at build time (pip install --no-build-isolation); the Python
// version of the same interface is tracer.core.probe.PyProbe. Every entry point runs with the GIL.
//
// The statistics collector's request for a plain CPU float tensor is here too (StatsRequest):
// version counter, identity key (the view base read with is_view/_base, as Tensor._base does),
// dedup against the collector's tables and the kernel's vector, in one call (about 0.9 us for
// a (32, 64) float32 tensor, of which the kernel is 0.8, against 1.8 through the Python request).
//
// And the traced forward itself (WrapCore, RecorderCore, at the end of this file): the common
// call of a traced module, one plain tensor in, is recorded here without running Python code,
// through the probe and the request above as C calls; every other call goes to
// tracer.core.wrapping's Python functions.
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <ATen/Parallel.h>
#include <ATen/PythonTorchFunctionTLS.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/DynamicTypes.h>
#include <torch/csrc/autograd/python_variable.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <ctime>
#include <exception>
#include <unordered_map>
#include <vector>

#include "stats_layout.h"

#ifndef TRACER_TORCH_VERSION
#error "TRACER_TORCH_VERSION (the torch version built against) must be defined"
#endif

namespace {

constexpr int kMaxDims = 8;        // deeper tensors take the Python path (not cached)
constexpr size_t kLimit = 100000;  // distinct metadata kept, as tracer.core.step_state's SHARED

using StrongImpl = c10::intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl>;
using WeakImpl = c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl>;

struct Key {
  int64_t sizes[kMaxDims];
  int32_t ndim;
  int32_t dtype;
  int32_t device_type;
  int32_t device_index;
  bool requires_grad;

  bool operator==(const Key& o) const {
    return ndim == o.ndim && dtype == o.dtype && device_type == o.device_type &&
        device_index == o.device_index && requires_grad == o.requires_grad &&
        std::memcmp(sizes, o.sizes, sizeof(int64_t) * ndim) == 0;
  }
};

struct KeyHash {
  size_t operator()(const Key& k) const {
    size_t h = static_cast<size_t>(k.dtype) * 0x9E3779B97F4A7C15ULL;
    h ^= static_cast<size_t>(k.device_type) << 8 ^ static_cast<size_t>(k.device_index) << 16;
    h ^= static_cast<size_t>(k.requires_grad) << 24 ^ static_cast<size_t>(k.ndim) << 28;
    for (int i = 0; i < k.ndim; ++i) {
      h = (h ^ static_cast<size_t>(k.sizes[i])) * 0x100000001B3ULL;
    }
    return h;
  }
};

struct State {
  std::unordered_map<Key, PyObject*, KeyHash> table;  // key -> the shared metadata tuple
  // The last remembered output: a weak reference keeps its TensorImpl's memory (not its data)
  // allocated, so no other tensor can have the same address while it is remembered.
  WeakImpl last{WeakImpl(StrongImpl())};
  int64_t last_version = 0;
  bool last_requires_grad = false;
  PyObject* last_pair = nullptr;  // (metadata, statistics index)
};

struct Probe {
  PyObject_HEAD
  PyObject* make;  // tensor -> shared metadata tuple, the Python way
  State* state;
};

// The C++ tensor of an exact torch.Tensor, or nullptr (subclasses go the Python way).
c10::TensorImpl* plain_impl(PyObject* obj) {
  if (Py_TYPE(obj) != reinterpret_cast<PyTypeObject*>(THPVariableClass)) {
    return nullptr;
  }
  return THPVariable_Unpack(obj).unsafeGetTensorImpl();
}

// Fill ``key`` from ``impl``; false where the Python getters must decide (symbolic or
// unavailable sizes, too many dimensions, an unusual dtype or device).
bool fill_key(c10::TensorImpl* impl, Key* key) {
  try {
    if (impl->is_python_dispatch()) {
      return false;
    }
    const auto sizes = impl->sizes();
    if (sizes.size() > static_cast<size_t>(kMaxDims)) {
      return false;
    }
    key->ndim = static_cast<int32_t>(sizes.size());
    for (size_t i = 0; i < sizes.size(); ++i) {
      key->sizes[i] = sizes[i];
    }
    key->dtype = static_cast<int32_t>(impl->dtype().toScalarType());
    const c10::Device device = impl->device();
    key->device_type = static_cast<int32_t>(device.type());
    key->device_index = device.index();
    key->requires_grad = impl->requires_grad();
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

PyObject* probe_meta(PyObject* self_obj, PyObject* tensor) {
  auto* self = reinterpret_cast<Probe*>(self_obj);
  c10::TensorImpl* impl = plain_impl(tensor);
  Key key;
  if (impl == nullptr || !fill_key(impl, &key)) {
    return PyObject_CallOneArg(self->make, tensor);
  }
  auto& table = self->state->table;
  auto found = table.find(key);
  if (found != table.end()) {
    Py_INCREF(found->second);
    return found->second;
  }
  PyObject* meta = PyObject_CallOneArg(self->make, tensor);
  if (meta != nullptr && table.size() < kLimit) {
    Py_INCREF(meta);
    table.emplace(key, meta);
  }
  return meta;
}

// The version counter of a tensor that has one (inference tensors have none).
bool version_of(c10::TensorImpl* impl, int64_t* version) {
  if (impl->is_inference()) {
    return false;
  }
  try {
    *version = static_cast<int64_t>(impl->version_counter().current_version());
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

PyObject* probe_chained(PyObject* self_obj, PyObject* tensor) {
  auto* self = reinterpret_cast<Probe*>(self_obj);
  State* st = self->state;
  c10::TensorImpl* impl = plain_impl(tensor);
  int64_t version = 0;
  if (impl == nullptr || impl != st->last._unsafe_get_target() || st->last_pair == nullptr ||
      !version_of(impl, &version) || version != st->last_version ||
      impl->requires_grad() != st->last_requires_grad) {
    Py_RETURN_NONE;
  }
  Py_INCREF(st->last_pair);
  return st->last_pair;
}

void forget(State* st) {
  st->last = WeakImpl(StrongImpl());
  Py_CLEAR(st->last_pair);
}

PyObject* probe_remember(PyObject* self_obj, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 3) {
    PyErr_SetString(PyExc_TypeError, "remember(tensor, meta, index) takes 3 arguments");
    return nullptr;
  }
  auto* self = reinterpret_cast<Probe*>(self_obj);
  State* st = self->state;
  c10::TensorImpl* impl = plain_impl(args[0]);
  int64_t version = 0;
  if (impl == nullptr || !version_of(impl, &version)) {
    forget(st);  // nothing proves such a tensor unchanged later
    Py_RETURN_NONE;
  }
  PyObject* pair = PyTuple_Pack(2, args[1], args[2]);
  if (pair == nullptr) {
    return nullptr;
  }
  st->last = WeakImpl(THPVariable_Unpack(args[0]).getIntrusivePtr());
  st->last_version = version;
  st->last_requires_grad = impl->requires_grad();
  Py_XSETREF(st->last_pair, pair);
  Py_RETURN_NONE;
}

PyObject* probe_forget(PyObject* self_obj, PyObject*) {
  forget(reinterpret_cast<Probe*>(self_obj)->state);
  Py_RETURN_NONE;
}

PyObject* probe_new(PyTypeObject* type, PyObject* args, PyObject* kwargs) {
  PyObject* make = nullptr;
  static const char* names[] = {"make", nullptr};
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O", const_cast<char**>(names), &make)) {
    return nullptr;
  }
  if (!PyCallable_Check(make)) {
    PyErr_SetString(PyExc_TypeError, "make must be callable");
    return nullptr;
  }
  auto* self = reinterpret_cast<Probe*>(type->tp_alloc(type, 0));
  if (self == nullptr) {
    return nullptr;
  }
  self->state = new (std::nothrow) State();
  if (self->state == nullptr) {
    Py_DECREF(self);
    return PyErr_NoMemory();
  }
  Py_INCREF(make);
  self->make = make;
  return reinterpret_cast<PyObject*>(self);
}

void probe_dealloc(PyObject* self_obj) {
  auto* self = reinterpret_cast<Probe*>(self_obj);
  if (self->state != nullptr) {
    forget(self->state);
    for (auto& item : self->state->table) {
      Py_DECREF(item.second);
    }
    delete self->state;
  }
  Py_XDECREF(self->make);
  Py_TYPE(self_obj)->tp_free(self_obj);
}

// tracer.core._speedups' reduction (through its capsule), or nullptr where it was not built:
// reduce(data, numel, itemsize, out) fills a statistics vector in the layout of
// stats_layout.h, as float_stats returns it.
using ReduceFn = void (*)(const void*, int64_t, int, double*);
ReduceFn reduce = nullptr;
// Its integer pass (the reduce_ints capsule), or nullptr: fills a tracer_int_result.
using ReduceIntsFn = int (*)(const void*, int64_t, int, tracer_int_result*);
ReduceIntsFn reduce_ints = nullptr;
constexpr int kStats = TRACER_STAT_SIZE;
using Vector = std::array<double, kStats>;
// A tensor this big is split over torch's intra-op threads: one thread reads memory at about
// 8 GB/s here, and right after a parallel op torch's threads are still spinning, ready.
constexpr int64_t kParallelNumel = int64_t{1} << 20;

// Merge the statistics of consecutive chunks: counts (the near-value counts too) and sums add,
// extremes compare, the spread (sqrt of the sum of squared deviations) combines through each
// chunk's mean.
void merge(const std::vector<Vector>& parts, double* out) {
  double numel = 0, finite = 0, nans = 0, sum = 0, l2 = 0, l1 = 0, nonzero = 0;
  double near_zero = 0, near_one = 0;
  double lo = NAN, hi = NAN;
  for (const auto& p : parts) {
    numel += p[TRACER_STAT_NUMEL];
    finite += p[TRACER_STAT_FINITE];
    nans += p[TRACER_STAT_NAN];
    sum += p[TRACER_STAT_SUM];
    l2 += p[TRACER_STAT_L2] * p[TRACER_STAT_L2];
    l1 += p[TRACER_STAT_L1];
    nonzero += p[TRACER_STAT_NONZERO];
    near_zero += p[TRACER_STAT_NEAR_ZERO];
    near_one += p[TRACER_STAT_NEAR_ONE];
    if (p[TRACER_STAT_FINITE] > 0) {
      lo = std::isnan(lo) || p[TRACER_STAT_MIN] < lo ? p[TRACER_STAT_MIN] : lo;
      hi = std::isnan(hi) || p[TRACER_STAT_MAX] > hi ? p[TRACER_STAT_MAX] : hi;
    }
  }
  const double mean = finite > 0 ? sum / finite : 0;
  double m2 = 0;
  for (const auto& p : parts) {
    if (p[TRACER_STAT_FINITE] > 0) {
      const double d = p[TRACER_STAT_SUM] / p[TRACER_STAT_FINITE] - mean;
      m2 += p[TRACER_STAT_SPREAD] * p[TRACER_STAT_SPREAD] + p[TRACER_STAT_FINITE] * d * d;
    }
  }
  out[TRACER_STAT_NUMEL] = numel;
  out[TRACER_STAT_FINITE] = finite;
  out[TRACER_STAT_NAN] = nans;
  out[TRACER_STAT_SUM] = sum;
  out[TRACER_STAT_SPREAD] = std::sqrt(m2);
  out[TRACER_STAT_L2] = std::sqrt(l2);
  out[TRACER_STAT_L1] = l1;
  out[TRACER_STAT_NONZERO] = nonzero;
  out[TRACER_STAT_MIN] = lo;
  out[TRACER_STAT_MAX] = hi;
  out[TRACER_STAT_NEAR_ZERO] = near_zero;
  out[TRACER_STAT_NEAR_ONE] = near_one;
}

void reduce_all(const char* data, int64_t numel, int itemsize, double* out) {
  const int threads = at::get_num_threads();
  if (numel < kParallelNumel || threads < 2 || at::in_parallel_region()) {
    reduce(data, numel, itemsize, out);
    return;
  }
  const int64_t chunks = std::min<int64_t>(threads, numel / (kParallelNumel / 2));
  const int64_t step = (numel + chunks - 1) / chunks;
  std::vector<Vector> parts(chunks);
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const int64_t first = c * step;
      const int64_t count = std::min(step, numel - first);
      reduce(data + first * itemsize, count, itemsize, parts[c].data());
    }
  });
  merge(parts, out);
}

// The statistics vector as a tuple of floats (as tracer.core._speedups.float_stats returns it).
PyObject* vector_tuple(const double* out) {
  PyObject* result = PyTuple_New(kStats);
  if (result == nullptr) {
    return nullptr;
  }
  for (int i = 0; i < kStats; ++i) {
    PyObject* value = PyFloat_FromDouble(out[i]);
    if (value == nullptr) {
      Py_DECREF(result);
      return nullptr;
    }
    PyTuple_SET_ITEM(result, i, value);
  }
  return result;
}

// The names of the vector's positions (stats_layout.h), exported as LAYOUT for the tests.
PyObject* layout_tuple() {
  PyObject* result = PyTuple_New(kStats);
  if (result == nullptr) {
    return nullptr;
  }
  for (int i = 0; i < kStats; ++i) {
    PyObject* name = PyUnicode_FromString(tracer_stat_name(i));
    if (name == nullptr) {
      Py_DECREF(result);
      return nullptr;
    }
    PyTuple_SET_ITEM(result, i, name);
  }
  return result;
}

// Where a plain, non-empty CPU float32/float64 tensor's elements fill one block of memory
// (contiguous in some order: a transposed output is read as it lies, the statistics do not
// depend on order): its data pointer, element count and item size. False for any other tensor
// (the collector's general path takes those).
bool kernel_readable(c10::TensorImpl* impl, const void** data, int64_t* numel, int* itemsize) {
  try {
    if (impl->is_python_dispatch() || impl->is_nested() || impl->layout() != c10::kStrided ||
        impl->device_type() != c10::DeviceType::CPU || !impl->has_storage()) {
      return false;
    }
    const auto dtype = impl->dtype().toScalarType();
    if (dtype == c10::ScalarType::Float) {
      *itemsize = 4;
    } else if (dtype == c10::ScalarType::Double) {
      *itemsize = 8;
    } else {
      return false;
    }
    *numel = impl->numel();
    if (*numel <= 0 || impl->is_neg() || !impl->is_non_overlapping_and_dense()) {
      return false;
    }
    for (const int64_t stride : impl->strides()) {
      if (stride < 0) {  // the block would not start at the first element
        return false;
      }
    }
    *data = impl->data();
  } catch (const std::exception&) {
    return false;
  }
  return *data != nullptr;
}

// The statistics of a plain CPU tensor that the float kernel does not read but that are as quick
// to give here, as the collector's Python path gives them (tracer.core.stats.tensor_stats): an
// empty tensor of any dtype (its element count alone), and a contiguous integer or bool tensor
// of at most kSmallLimit elements (stats.BIG_NUMEL: bigger ones are read in chunks there), read
// by _speedups' integer pass. Packed in a statistics vector's space at the TRACER_PACKED_*
// positions (the collector's StepStats unpacks them); false for any other tensor.
constexpr int64_t kSmallLimit = int64_t{1} << 20;

bool small_stats(c10::TensorImpl* impl, double* out) {
  const void* data = nullptr;
  int64_t numel = 0;
  int kind = -1;
  try {
    if (impl->is_python_dispatch() || impl->is_nested() || impl->layout() != c10::kStrided ||
        impl->device_type() != c10::DeviceType::CPU || impl->is_neg() ||
        impl->_is_zerotensor()) {
      return false;
    }
    numel = impl->numel();
    std::fill(out, out + kStats, 0.0);
    if (numel == 0) {
      out[TRACER_PACKED_KIND] = TRACER_PACKED_EMPTY;
      return true;
    }
    switch (impl->dtype().toScalarType()) {
      case c10::ScalarType::Long: kind = TRACER_INT_I64; break;
      case c10::ScalarType::Int: kind = TRACER_INT_I32; break;
      case c10::ScalarType::Short: kind = TRACER_INT_I16; break;
      case c10::ScalarType::Char: kind = TRACER_INT_I8; break;
      case c10::ScalarType::Byte: kind = TRACER_INT_U8; break;
      case c10::ScalarType::Bool: kind = TRACER_INT_BOOL; break;
      default: return false;
    }
    if (reduce_ints == nullptr || numel > kSmallLimit || !impl->has_storage() ||
        !impl->is_contiguous()) {
      return false;
    }
    data = impl->data();
  } catch (const std::exception&) {
    return false;
  }
  tracer_int_result r{};
  if (data == nullptr || reduce_ints(data, numel, kind, &r) != 0) {
    return false;
  }
  out[TRACER_PACKED_NUMEL] = static_cast<double>(numel);
  out[TRACER_PACKED_KIND] = kind;
  out[TRACER_PACKED_SUM] = r.sum;
  out[TRACER_PACKED_MIN] = static_cast<double>(r.lo);
  out[TRACER_PACKED_MAX] = static_cast<double>(r.hi);
  out[TRACER_PACKED_NONZERO] = static_cast<double>(r.nonzero);
  return true;
}

// A plain, non-empty CPU float32/float64 tensor whose elements do not overlap but do not fill one
// block either (a slice, one part of a split, a view of one): reduced run by run, each run the
// contiguous stretch along its innermost dimensions, and the runs' statistics merged (the
// statistics do not depend on order). strided_runs() plans the runs (false, with nothing read,
// for a tensor with a negative or zero stride, overlapping elements, runs shorter than kMinRun
// elements or more than kMaxRuns of them: the general path copies those, or anything
// kernel_readable() refuses for another reason than its layout); reduce_runs() reads them.
constexpr int64_t kMinRun = 8;
constexpr int64_t kMaxRuns = int64_t{1} << 16;
constexpr size_t kMaxRunDims = 64;

struct Runs {
  const char* base = nullptr;  // the first element
  int itemsize = 0;
  int64_t run = 0;    // elements per run
  int64_t count = 0;  // runs
  size_t outer = 0;   // dimensions stepped over between runs, outermost first in dims
  std::array<std::pair<int64_t, int64_t>, kMaxRunDims> dims{};  // (stride, size), in elements
};

bool strided_runs(c10::TensorImpl* impl, Runs* plan) {
  try {
    if (impl->is_python_dispatch() || impl->is_nested() || impl->layout() != c10::kStrided ||
        impl->device_type() != c10::DeviceType::CPU || !impl->has_storage() || impl->is_neg()) {
      return false;
    }
    const auto dtype = impl->dtype().toScalarType();
    if (dtype == c10::ScalarType::Float) {
      plan->itemsize = 4;
    } else if (dtype == c10::ScalarType::Double) {
      plan->itemsize = 8;
    } else {
      return false;
    }
    const int64_t numel = impl->numel();
    const auto sizes = impl->sizes();
    const auto strides = impl->strides();
    if (numel <= 0 || sizes.size() > kMaxRunDims) {
      return false;
    }
    // The dimensions that count (size above 1), outermost (largest stride) first.
    auto& dims = plan->dims;
    size_t count = 0;
    for (size_t d = 0; d < sizes.size(); ++d) {
      if (sizes[d] > 1) {
        if (strides[d] <= 0) {
          return false;
        }
        dims[count++] = {strides[d], sizes[d]};
      }
    }
    std::sort(dims.begin(), dims.begin() + count,
              [](const auto& a, const auto& b) { return a.first > b.first; });
    // No overlap: each dimension steps past everything inside it.
    for (size_t d = 0; d + 1 < count; ++d) {
      if (dims[d].first < dims[d + 1].first * dims[d + 1].second) {
        return false;
      }
    }
    // A run: the innermost dimension (stride 1) and the outer ones that continue it.
    if (count == 0 || dims[count - 1].first != 1) {
      return false;
    }
    int64_t run = 1;
    size_t outer = count;
    while (outer > 0 && dims[outer - 1].first == run) {
      run *= dims[outer - 1].second;
      --outer;
    }
    plan->run = run;
    plan->count = numel / run;
    plan->outer = outer;
    if (run < kMinRun || plan->count > kMaxRuns) {
      return false;
    }
    plan->base = static_cast<const char*>(impl->data());
  } catch (const std::exception&) {
    return false;
  }
  return plan->base != nullptr;
}

// Runs shorter than this many bytes are copied, back to back, into one block of this size and
// reduced a block at a time: the kernel's fixed cost per call (its lanes set up, flushed and
// merged) is paid per block instead of per run. A query's head slice of an attention tensor,
// (64, 3, 49, 32) float32 from a (3, 64, 3, 49, 32) permutation, is 9,408 runs of 32 values:
// reduced run by run it read 0.57 values per ns, against the kernel's 5.7 on one block.
constexpr int64_t kGatherBytes = int64_t{1} << 16;

// Step the odometer over the outer dimensions to the next run; ``offset`` is in elements.
inline void next_run(const Runs& plan, std::array<int64_t, kMaxRunDims>& index, int64_t& offset) {
  for (size_t d = plan.outer; d-- > 0;) {
    offset += plan.dims[d].first;
    if (++index[d] < plan.dims[d].second) {
      return;
    }
    offset -= plan.dims[d].first * plan.dims[d].second;
    index[d] = 0;
  }
}

void reduce_runs(const Runs& plan, double* out) {
  std::array<int64_t, kMaxRunDims> index{};  // the odometer over the outer dimensions
  int64_t offset = 0;                        // in elements, from the first one
  const int64_t run_bytes = plan.run * plan.itemsize;
  std::vector<Vector> parts;
  if (run_bytes * 4 > kGatherBytes) {  // long runs: each read where it lies
    parts.resize(static_cast<size_t>(plan.count));
    for (auto& part : parts) {
      reduce(plan.base + offset * plan.itemsize, plan.run, plan.itemsize, part.data());
      next_run(plan, index, offset);
    }
  } else {
    alignas(64) static thread_local char block[kGatherBytes];
    const int64_t per_block = kGatherBytes / run_bytes;  // runs per block, 4 or more
    parts.reserve(static_cast<size_t>((plan.count + per_block - 1) / per_block));
    int64_t filled = 0;
    for (int64_t r = 0; r < plan.count; ++r) {
      std::memcpy(block + filled * run_bytes, plan.base + offset * plan.itemsize,
                  static_cast<size_t>(run_bytes));
      next_run(plan, index, offset);
      if (++filled == per_block || r + 1 == plan.count) {
        parts.emplace_back();
        reduce(block, filled * plan.run, plan.itemsize, parts.back().data());
        filled = 0;
      }
    }
  }
  merge(parts, out);
}

// float_stats(tensor): the statistics kernel's tuple for a tensor kernel_readable() takes, read
// through its C++ data pointer; None for any other tensor.
PyObject* float_stats(PyObject*, PyObject* tensor) {
  c10::TensorImpl* impl = plain_impl(tensor);
  const void* data = nullptr;
  int64_t numel = 0;
  int itemsize = 0;
  if (impl == nullptr || reduce == nullptr) {
    Py_RETURN_NONE;
  }
  // The GIL stays held while the kernel reads the tensor's memory (see tracer/core/_speedups.c).
  double out[kStats];
  if (kernel_readable(impl, &data, &numel, &itemsize)) {
    reduce_all(static_cast<const char*>(data), numel, itemsize, out);
  } else {
    Runs plan;
    if (!strided_runs(impl, &plan)) {
      Py_RETURN_NONE;
    }
    reduce_runs(plan, out);
  }
  return vector_tuple(out);
}

// StatsRequest: tracer.core.collector.StatsCollector's request for the common tensor, in one
// call. It works on the collector's own per-step tables (bound by bind() at each step's start):
// per index the row buffer number, the row, the owner's weak reference and the version, the
// dict from identity key to index, and the step's kernel vectors as the bytes of a bytearray
// (kStats doubles each). The identity key is the one tracer.core.collector._identity builds,
// from the same objects (the id of the tensor or of its view base, the base's offset, size and
// dtype), so that both paths share one dedup table. Anything else (subclasses, other dtypes or
// devices, inference tensors, an active torch function mode, extra statistics, any error) is
// handed, untouched, to the collector's Python request.
struct Request {
  PyObject_HEAD
  PyObject* slow;    // the collector's Python request
  PyObject* bases;   // the types a view's base may have for its metadata to be read here
  PyObject* vector;  // the row buffer number of a kernel vector (-2)
  PyObject* small;   // the row buffer number of a small_stats() vector (None: not taken here)
  PyObject* group;
  PyObject* row;
  PyObject* owner;
  PyObject* version;
  PyObject* seen;
  PyObject* vectors;
  bool on;  // false: every tensor goes the Python way (the collector has extra statistics)
};

// The tables of one request, held for its duration (an allocation may run a finalizer, and
// nothing then may take them away halfway through).
struct Tables {
  PyObject* group;
  PyObject* row;
  PyObject* owner;
  PyObject* version;
  PyObject* seen;
  PyObject* vectors;
  PyObject* vector;
  PyObject* small;

  explicit Tables(const Request* r)
      : group(r->group), row(r->row), owner(r->owner), version(r->version), seen(r->seen),
        vectors(r->vectors), vector(r->vector), small(r->small) {
    for (PyObject* obj : {group, row, owner, version, seen, vectors, vector, small}) {
      Py_INCREF(obj);
    }
  }
  ~Tables() {
    for (PyObject* obj : {group, row, owner, version, seen, vectors, vector, small}) {
      Py_DECREF(obj);
    }
  }
  Tables(const Tables&) = delete;
  Tables& operator=(const Tables&) = delete;
};

PyObject* request_slow(Request* self, PyObject* tensor) {
  if (self->slow == nullptr) {
    PyErr_SetString(PyExc_RuntimeError, "StatsRequest has no collector");
    return nullptr;
  }
  return PyObject_CallOneArg(self->slow, tensor);
}

bool base_type_ok(Request* self, PyObject* obj) {
  const Py_ssize_t n = PyTuple_GET_SIZE(self->bases);
  for (Py_ssize_t i = 0; i < n; ++i) {
    if (reinterpret_cast<PyObject*>(Py_TYPE(obj)) == PyTuple_GET_ITEM(self->bases, i)) {
      return true;
    }
  }
  return false;
}

// The owner whose lifetime vouches for the entry (a new reference) and the key (a new
// reference), as _identity builds them; false (no Python error set) where the Python way must
// decide.
bool identity(Request* self, PyObject* tensor, c10::TensorImpl* impl, PyObject** owner,
              PyObject** key) {
  PyObject* base_obj = nullptr;
  int64_t offset = 0, numel = 0;
  bool whole = false;
  c10::ScalarType dtype;
  try {
    const at::Tensor& var = THPVariable_Unpack(tensor);
    if (!var.is_view() || !impl->is_contiguous()) {
      *key = PyLong_FromVoidPtr(tensor);
      if (*key == nullptr) {
        PyErr_Clear();
        return false;
      }
      Py_INCREF(tensor);
      *owner = tensor;
      return true;
    }
    const at::TensorBase& base = var._base();
    c10::TensorImpl* base_impl = base.unsafeGetTensorImpl();
    if (base_impl->is_python_dispatch()) {
      return false;
    }
    offset = impl->storage_offset();
    numel = impl->numel();
    dtype = impl->dtype().toScalarType();
    whole = offset == base_impl->storage_offset() && numel == base_impl->numel() &&
        dtype == base_impl->dtype().toScalarType() && base_impl->is_contiguous();
    base_obj = THPVariable_Wrap(base);
  } catch (const std::exception&) {
    return false;
  }
  if (base_obj == nullptr) {
    PyErr_Clear();
    return false;
  }
  if (!base_type_ok(self, base_obj)) {  // a subclass may answer its getters its own way
    Py_DECREF(base_obj);
    return false;
  }
  PyObject* id = PyLong_FromVoidPtr(base_obj);
  if (id != nullptr && !whole) {
    PyObject* dtype_obj = reinterpret_cast<PyObject*>(torch::getTHPDtype(dtype));  // borrowed
    PyObject* at = PyLong_FromLongLong(offset);
    PyObject* n = PyLong_FromLongLong(numel);
    PyObject* tuple = at != nullptr && n != nullptr ? PyTuple_Pack(4, id, at, n, dtype_obj) : nullptr;
    Py_XDECREF(at);
    Py_XDECREF(n);
    Py_DECREF(id);
    id = tuple;
  }
  if (id == nullptr) {
    PyErr_Clear();
    Py_DECREF(base_obj);
    return false;
  }
  *owner = base_obj;
  *key = id;
  return true;
}

// The object a weak reference points to (borrowed; nullptr when dead).
PyObject* referent(PyObject* ref) {
#if PY_VERSION_HEX >= 0x030D0000
  PyObject* obj = nullptr;
  if (PyWeakref_GetRef(ref, &obj) <= 0) {
    PyErr_Clear();
    return nullptr;
  }
  Py_DECREF(obj);  // still alive: the caller holds the object it compares against
  return obj;
#else
  PyObject* obj = PyWeakref_GetObject(ref);
  return obj == Py_None ? nullptr : obj;
#endif
}

// The index already given to this key for this owner at this version (a new reference), or
// nullptr (no Python error set).
PyObject* seen_index(const Tables& self, PyObject* key, PyObject* owner, int64_t version) {
  PyObject* index = PyDict_GetItemWithError(self.seen, key);
  if (index == nullptr) {
    PyErr_Clear();
    return nullptr;
  }
  const Py_ssize_t i = PyLong_AsSsize_t(index);
  if (i < 0 || i >= PyList_GET_SIZE(self.owner) || i >= PyList_GET_SIZE(self.version)) {
    PyErr_Clear();
    return nullptr;
  }
  PyObject* ref = PyList_GET_ITEM(self.owner, i);
  if (ref == Py_None || !PyWeakref_Check(ref) || referent(ref) != owner) {
    return nullptr;
  }
  int overflow = 0;
  const long long known = PyLong_AsLongLongAndOverflow(PyList_GET_ITEM(self.version, i), &overflow);
  if (known == -1 && PyErr_Occurred()) {
    PyErr_Clear();
    return nullptr;
  }
  if (overflow != 0 || known != version) {
    return nullptr;
  }
  Py_INCREF(index);
  return index;
}

// Append one new index's entries to the tables (the vector's doubles to the bytearray); false,
// with everything as it was and no Python error set, where that failed.
bool append_index(const Tables& self, PyObject* key, PyObject* index, PyObject* ref, PyObject* version,
                  PyObject* group, const double* values) {
  PyObject* lists[4] = {self.group, self.row, self.owner, self.version};
  Py_ssize_t sizes[4];
  for (int k = 0; k < 4; ++k) {
    sizes[k] = PyList_GET_SIZE(lists[k]);
  }
  const Py_ssize_t bytes = PyByteArray_GET_SIZE(self.vectors);
  PyObject* row = PyLong_FromSsize_t(bytes / static_cast<Py_ssize_t>(sizeof(double)));
  if (row == nullptr || PyByteArray_Resize(self.vectors, bytes + sizeof(double) * kStats) < 0) {
    Py_XDECREF(row);
    PyErr_Clear();
    return false;
  }
  std::memcpy(PyByteArray_AS_STRING(self.vectors) + bytes, values, sizeof(double) * kStats);
  PyObject* items[4] = {group, row, ref, version};
  bool ok = true;
  int done = 0;
  for (; done < 4 && ok; ++done) {
    ok = PyList_Append(lists[done], items[done]) == 0;
  }
  ok = ok && PyDict_SetItem(self.seen, key, index) == 0;
  Py_DECREF(row);
  if (!ok) {
    PyErr_Clear();
    for (int k = 0; k < 4; ++k) {
      if (PyList_GET_SIZE(lists[k]) > sizes[k]) {
        PyList_SetSlice(lists[k], sizes[k], PyList_GET_SIZE(lists[k]), nullptr);
      }
    }
    PyByteArray_Resize(self.vectors, bytes);
    PyErr_Clear();
  }
  return ok;
}

PyObject* request_call(PyObject* self_obj, PyObject* tensor) {
  auto* self = reinterpret_cast<Request*>(self_obj);
  c10::TensorImpl* impl = plain_impl(tensor);
  if (impl == nullptr && self->bases != nullptr && THPVariable_Check(tensor) &&
      base_type_ok(self, tensor)) {  // an nn.Parameter: its memory is its values
    impl = THPVariable_Unpack(tensor).unsafeGetTensorImpl();
  }
  const void* data = nullptr;
  int64_t numel = 0;
  int itemsize = 0;
  int64_t version = 0;
  if (!self->on || self->seen == nullptr || impl == nullptr || reduce == nullptr ||
      at::impl::torch_function_mode_enabled()) {
    return request_slow(self, tensor);
  }
  Runs plan;  // a tensor that does not fill one block: read run by run
  double small[kStats];  // or an empty, integer or bool tensor's small_stats()
  const bool dense = kernel_readable(impl, &data, &numel, &itemsize);
  const bool runs = !dense && strided_runs(impl, &plan);
  const bool is_small = !dense && !runs && self->small != Py_None && small_stats(impl, small);
  if ((!dense && !runs && !is_small) || !version_of(impl, &version)) {
    return request_slow(self, tensor);
  }
  const Tables tables(self);
  PyObject* owner = nullptr;
  PyObject* key = nullptr;
  if (!identity(self, tensor, impl, &owner, &key)) {
    return request_slow(self, tensor);
  }
  PyObject* index = seen_index(tables, key, owner, version);
  if (index != nullptr) {
    Py_DECREF(owner);
    Py_DECREF(key);
    return index;
  }
  PyObject* ref = PyWeakref_NewRef(owner, nullptr);
  Py_DECREF(owner);
  PyObject* version_obj = ref != nullptr ? PyLong_FromLongLong(version) : nullptr;
  index = version_obj != nullptr ? PyLong_FromSsize_t(PyList_GET_SIZE(tables.group)) : nullptr;
  bool ok = index != nullptr;
  if (ok) {
    double out[kStats];
    try {
      if (dense) {
        reduce_all(static_cast<const char*>(data), numel, itemsize, out);
      } else if (runs) {
        reduce_runs(plan, out);
      }
    } catch (const std::exception&) {
      ok = false;
    }
    ok = ok && append_index(tables, key, index, ref, version_obj,
                            is_small ? tables.small : tables.vector, is_small ? small : out);
  }
  PyErr_Clear();
  Py_XDECREF(ref);
  Py_XDECREF(version_obj);
  Py_DECREF(key);
  if (!ok) {
    Py_XDECREF(index);
    return request_slow(self, tensor);
  }
  return index;
}

PyObject* request_bind(PyObject* self_obj, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 7) {
    PyErr_SetString(PyExc_TypeError,
                    "bind(group, row, owner, version, seen, vectors, on) takes 7 arguments");
    return nullptr;
  }
  for (int k = 0; k < 4; ++k) {
    if (!PyList_CheckExact(args[k])) {
      PyErr_SetString(PyExc_TypeError, "bind: group, row, owner and version must be lists");
      return nullptr;
    }
  }
  if (!PyDict_CheckExact(args[4]) || !PyByteArray_CheckExact(args[5])) {
    PyErr_SetString(PyExc_TypeError, "bind: seen must be a dict, vectors a bytearray");
    return nullptr;
  }
  const int on = PyObject_IsTrue(args[6]);
  if (on < 0) {
    return nullptr;
  }
  auto* self = reinterpret_cast<Request*>(self_obj);
  PyObject** slots[6] = {&self->group, &self->row,  &self->owner,
                         &self->version, &self->seen, &self->vectors};
  for (int k = 0; k < 6; ++k) {
    Py_INCREF(args[k]);
    Py_XSETREF(*slots[k], args[k]);
  }
  self->on = on != 0;
  Py_RETURN_NONE;
}

int request_traverse(PyObject* self_obj, visitproc visit, void* arg) {
  auto* self = reinterpret_cast<Request*>(self_obj);
  Py_VISIT(self->slow);
  Py_VISIT(self->bases);
  Py_VISIT(self->vector);
  Py_VISIT(self->small);
  Py_VISIT(self->group);
  Py_VISIT(self->row);
  Py_VISIT(self->owner);
  Py_VISIT(self->version);
  Py_VISIT(self->seen);
  Py_VISIT(self->vectors);
  return 0;
}

int request_clear(PyObject* self_obj) {
  auto* self = reinterpret_cast<Request*>(self_obj);
  Py_CLEAR(self->slow);
  Py_CLEAR(self->bases);
  Py_CLEAR(self->vector);
  Py_CLEAR(self->small);
  Py_CLEAR(self->group);
  Py_CLEAR(self->row);
  Py_CLEAR(self->owner);
  Py_CLEAR(self->version);
  Py_CLEAR(self->seen);
  Py_CLEAR(self->vectors);
  self->on = false;
  return 0;
}

void request_dealloc(PyObject* self_obj) {
  PyObject_GC_UnTrack(self_obj);
  request_clear(self_obj);
  Py_TYPE(self_obj)->tp_free(self_obj);
}

PyObject* request_new(PyTypeObject* type, PyObject* args, PyObject* kwargs) {
  PyObject *slow = nullptr, *bases = nullptr;
  PyObject* vector = nullptr;
  PyObject* small = Py_None;
  static const char* names[] = {"slow", "bases", "vector", "small", nullptr};
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO!O!|O", const_cast<char**>(names), &slow,
                                   &PyTuple_Type, &bases, &PyLong_Type, &vector, &small)) {
    return nullptr;
  }
  if (small != Py_None && !PyLong_CheckExact(small)) {
    PyErr_SetString(PyExc_TypeError, "small must be an int or None");
    return nullptr;
  }
  if (!PyCallable_Check(slow)) {
    PyErr_SetString(PyExc_TypeError, "slow must be callable");
    return nullptr;
  }
  auto* self = reinterpret_cast<Request*>(type->tp_alloc(type, 0));
  if (self == nullptr) {
    return nullptr;
  }
  PyObject* given[4] = {slow, bases, vector, small};
  PyObject** slots[4] = {&self->slow, &self->bases, &self->vector, &self->small};
  for (int k = 0; k < 4; ++k) {
    Py_INCREF(given[k]);
    *slots[k] = given[k];
  }
  self->on = false;  // until bind()
  return reinterpret_cast<PyObject*>(self);
}

// A module's pass over its ``_parameters`` dict, for capture_pass below. Each parameter not yet
// in ``facts`` (by id) gets its facts tuple (numel, requires_grad, shape, dtype name, trainable
// numel): read here for an exact ``parameter_type`` or torch.Tensor, from ``py_facts(param)``
// for any other (a lazy module's uninitialised parameter, a subclass). ``own`` becomes
// [name, id, name, id, ...] (left nullptr where there is none), ``repeated`` true where one of
// them was in ``facts`` already.
PyObject* tensor_facts(PyObject* param, PyObject* dtype_names) {
  c10::TensorImpl* impl = THPVariable_Unpack(param).unsafeGetTensorImpl();
  PyObject* shape = nullptr;
  int64_t numel = 0;
  bool requires_grad = false;
  c10::ScalarType scalar = c10::ScalarType::Undefined;
  try {
    if (impl->is_python_dispatch()) {
      return nullptr;  // no error set: the Python way
    }
    const auto sizes = impl->sizes();
    shape = PyTuple_New(static_cast<Py_ssize_t>(sizes.size()));
    if (shape == nullptr) {
      return nullptr;
    }
    numel = 1;
    for (size_t i = 0; i < sizes.size(); ++i) {
      PyObject* size = PyLong_FromLongLong(sizes[i]);
      if (size == nullptr) {
        Py_DECREF(shape);
        return nullptr;
      }
      PyTuple_SET_ITEM(shape, static_cast<Py_ssize_t>(i), size);
      numel *= sizes[i];
    }
    requires_grad = impl->requires_grad();
    scalar = impl->dtype().toScalarType();
  } catch (const std::exception&) {
    Py_XDECREF(shape);
    return nullptr;
  }
  // The dtype's name as the Python way wrote it into ``dtype_names``; not there yet: the Python
  // way (which puts it there).
  PyObject* dtype = reinterpret_cast<PyObject*>(torch::getTHPDtype(scalar));
  PyObject* name = dtype != nullptr ? PyDict_GetItemWithError(dtype_names, dtype) : nullptr;
  if (name == nullptr) {
    Py_DECREF(shape);
    return nullptr;  // an error only if the lookup raised
  }
  PyObject* result = Py_BuildValue("(LOOOL)", static_cast<long long>(numel),
                                   requires_grad ? Py_True : Py_False, shape, name,
                                   static_cast<long long>(requires_grad ? numel : 0));
  Py_DECREF(shape);
  return result;
}

// One parameter of that pass: its facts (once per id) and its entry in ``own``; nullptr on
// an error, else Py_None (borrowed).
PyObject* own_parameter(PyObject* name, PyObject* param, PyObject* facts, PyObject* names,
                        PyObject* parameter_type, PyObject* py_facts, PyObject** own_out,
                        bool* repeated) {
  PyObject* key = PyLong_FromVoidPtr(param);  // id(param)
  if (key == nullptr) {
    return nullptr;
  }
  const int known = PyDict_Contains(facts, key);
  if (known < 0) {
    Py_DECREF(key);
    return nullptr;
  }
  if (known) {
    *repeated = true;
  } else {
    PyObject* fact = nullptr;
    PyTypeObject* type = Py_TYPE(param);
    if (type == reinterpret_cast<PyTypeObject*>(parameter_type) ||
        type == reinterpret_cast<PyTypeObject*>(THPVariableClass)) {
      fact = tensor_facts(param, names);
    }
    if (fact == nullptr && !PyErr_Occurred()) {
      fact = PyObject_CallOneArg(py_facts, param);
    }
    if (fact == nullptr || PyDict_SetItem(facts, key, fact) < 0) {
      Py_XDECREF(fact);
      Py_DECREF(key);
      return nullptr;
    }
    Py_DECREF(fact);
  }
  if (*own_out == nullptr && (*own_out = PyList_New(0)) == nullptr) {
    Py_DECREF(key);
    return nullptr;
  }
  const bool ok = PyList_Append(*own_out, name) == 0 && PyList_Append(*own_out, key) == 0;
  Py_DECREF(key);
  return ok ? Py_None : nullptr;
}

// Every parameter of one module's ``_parameters`` dict (an exact dict): own_parameter of each.
// False on an error.
bool own_of_table(PyObject* params, PyObject* facts, PyObject* names, PyObject* parameter_type,
                  PyObject* py_facts, PyObject** own, bool* repeated) {
  Py_ssize_t pos = 0;
  PyObject *name = nullptr, *param = nullptr;
  while (PyDict_Next(params, &pos, &name, &param)) {
    if (param == Py_None) {
      continue;
    }
    // Held while Python code (py_facts) runs: it could change the dict under the loop.
    Py_INCREF(name);
    Py_INCREF(param);
    PyObject* result =
        own_parameter(name, param, facts, names, parameter_type, py_facts, own, repeated);
    Py_DECREF(name);
    Py_DECREF(param);
    if (result == nullptr) {
      return false;
    }
  }
  return true;
}

// capture_pass(named, facts, context): the per-module loop of
// tracer.core.module_records.capture_modules, compiled (it is that loop's Python body, step by
// step, with each step's Python fallback called where that body would take it). ``named`` is the
// list of (path, module) pairs; ``context`` the tuple _CONTEXT of module_records:
//   (dtype_names, parameter_type, py_facts, deferred, snapshot, make_deferred, no_extra_repr,
//    py_repr, named_parameters, children, named_children, py_own).
// Returns (paths, types, reprs, owns, kids, repeated, plain), the lists and flags that loop
// builds.
enum CaptureContext {
  kDtypeNames, kParameterType, kPyFacts, kDeferred, kSnapshot, kMakeDeferred, kNoExtraRepr,
  kPyRepr, kNamedParameters, kChildren, kNamedChildren, kPyOwn, kContextSize
};

PyObject* str_name = nullptr;            // "__name__"
PyObject* str_extra_repr = nullptr;      // "extra_repr"
PyObject* str_named_parameters = nullptr;
PyObject* str_parameters = nullptr;      // "_parameters"
PyObject* str_children = nullptr;
PyObject* str_named_children = nullptr;
PyObject* str_modules = nullptr;         // "_modules"
PyObject* str_empty = nullptr;

// Whether ``cls.<attr>`` is ``expected`` (-1: the lookup raised).
int class_attr_is(PyObject* cls, PyObject* attr, PyObject* expected) {
  PyObject* found = PyObject_GetAttr(cls, attr);
  if (found == nullptr) {
    return -1;
  }
  const int same = found == expected;
  Py_DECREF(found);
  return same;
}

// One module's extra_repr entry (a new reference), as capture_modules decides it.
PyObject* capture_repr(PyObject* module, PyObject* cls, PyObject* state, PyObject* const* ctx) {
  const int own_repr = PyDict_Contains(state, str_extra_repr);
  if (own_repr < 0) {
    return nullptr;
  }
  PyObject* cls_repr = PyObject_GetAttr(cls, str_extra_repr);
  if (cls_repr == nullptr) {
    return nullptr;
  }
  PyObject* deferred = PyDict_GetItemWithError(ctx[kDeferred], cls);
  if (deferred == nullptr && PyErr_Occurred()) {
    Py_DECREF(cls_repr);
    return nullptr;
  }
  PyObject* result = nullptr;
  if (deferred == cls_repr && !own_repr) {  // its text when the records are built
    PyObject* snapshot = PyObject_CallOneArg(ctx[kSnapshot], state);
    if (snapshot != nullptr) {
      PyObject* call_args[2] = {cls, snapshot};
      result = PyObject_Vectorcall(ctx[kMakeDeferred], call_args, 2, nullptr);
      Py_DECREF(snapshot);
    }
  } else if (cls_repr == ctx[kNoExtraRepr] && !own_repr) {
    result = Py_NewRef(str_empty);
  } else {
    result = PyObject_CallOneArg(ctx[kPyRepr], module);  // the module's own, guarded
  }
  Py_DECREF(cls_repr);
  return result;
}

// One module's own parameters (own and repeated), as capture_modules reads them; false on an
// error.
bool capture_own(PyObject* module, PyObject* cls, PyObject* facts, PyObject* const* ctx,
                 PyObject** own, bool* repeated) {
  const int plain_params = class_attr_is(cls, str_named_parameters, ctx[kNamedParameters]);
  if (plain_params < 0) {
    return false;
  }
  PyObject* table = plain_params ? PyObject_GetAttr(module, str_parameters) : nullptr;
  if (plain_params && table == nullptr) {
    return false;
  }
  if (table != nullptr && PyDict_CheckExact(table)) {
    const bool ok = own_of_table(table, facts, ctx[kDtypeNames], ctx[kParameterType],
                                 ctx[kPyFacts], own, repeated);
    Py_DECREF(table);
    return ok;
  }
  Py_XDECREF(table);
  // A TorchScript module's table, or a class's own named_parameters: the Python way.
  PyObject* call_args[2] = {module, facts};
  PyObject* pair = PyObject_Vectorcall(ctx[kPyOwn], call_args, 2, nullptr);
  if (pair == nullptr) {
    return false;
  }
  if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2) {
    Py_DECREF(pair);
    PyErr_SetString(PyExc_TypeError, "capture_pass: py_own must return (own, repeated)");
    return false;
  }
  PyObject* found = PyTuple_GET_ITEM(pair, 0);
  if (found != Py_None) {
    *own = Py_NewRef(found);
  }
  const int again = PyObject_IsTrue(PyTuple_GET_ITEM(pair, 1));
  Py_DECREF(pair);
  if (again < 0) {
    return false;
  }
  *repeated = *repeated || again;
  return true;
}

// One (path, module) pair into slot i of the lists; false on an error.
bool capture_one(PyObject* item, Py_ssize_t i, PyObject* facts, PyObject* const* ctx,
                 PyObject* const* lists, bool* repeated, bool* plain) {
  if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2) {
    PyErr_SetString(PyExc_TypeError, "capture_pass: named holds (path, module) pairs");
    return false;
  }
  PyObject* path = PyTuple_GET_ITEM(item, 0);
  PyObject* module = PyTuple_GET_ITEM(item, 1);
  PyObject* cls = reinterpret_cast<PyObject*>(Py_TYPE(module));
  PyList_SET_ITEM(lists[0], i, Py_NewRef(path));
  PyObject* type_name = PyObject_GetAttr(cls, str_name);
  if (type_name == nullptr) {
    return false;
  }
  PyList_SET_ITEM(lists[1], i, type_name);
  PyObject* state = PyObject_GenericGetDict(module, nullptr);
  if (state == nullptr) {
    return false;
  }
  PyObject* text = capture_repr(module, cls, state, ctx);
  Py_DECREF(state);
  if (text == nullptr) {
    return false;
  }
  PyList_SET_ITEM(lists[2], i, text);
  PyObject* own = nullptr;
  if (!capture_own(module, cls, facts, ctx, &own, repeated)) {
    Py_XDECREF(own);
    return false;
  }
  PyList_SET_ITEM(lists[3], i, own != nullptr ? own : Py_NewRef(Py_None));
  const int children = class_attr_is(cls, str_children, ctx[kChildren]);
  const int named_children = children < 0 ? -1 : class_attr_is(cls, str_named_children,
                                                               ctx[kNamedChildren]);
  if (named_children < 0) {
    return false;
  }
  if (!children || !named_children) {
    *plain = false;
  }
  PyObject* modules = PyObject_GetAttr(module, str_modules);
  if (modules == nullptr) {
    return false;
  }
  const Py_ssize_t count = PyObject_Size(modules);
  Py_DECREF(modules);
  PyObject* kids = count < 0 ? nullptr : PyLong_FromSsize_t(count);
  if (kids == nullptr) {
    return false;
  }
  PyList_SET_ITEM(lists[4], i, kids);
  return true;
}

PyObject* capture_pass(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 3 || !PyList_CheckExact(args[0]) || !PyDict_CheckExact(args[1]) ||
      !PyTuple_CheckExact(args[2]) || PyTuple_GET_SIZE(args[2]) != kContextSize ||
      !PyDict_CheckExact(PyTuple_GET_ITEM(args[2], kDtypeNames)) ||
      !PyDict_CheckExact(PyTuple_GET_ITEM(args[2], kDeferred))) {
    PyErr_SetString(PyExc_TypeError, "capture_pass(named, facts, context)");
    return nullptr;
  }
  // A copy: Python code called below (a module's extra_repr) cannot change what is walked.
  PyObject* named = PyList_GetSlice(args[0], 0, PyList_GET_SIZE(args[0]));
  if (named == nullptr) {
    return nullptr;
  }
  PyObject* facts = args[1];
  PyObject* const* ctx = &PyTuple_GET_ITEM(args[2], 0);
  const Py_ssize_t n = PyList_GET_SIZE(named);
  PyObject* lists[5] = {nullptr, nullptr, nullptr, nullptr, nullptr};
  bool ok = true;
  for (auto& list : lists) {
    // Each slot is filled below before the list is seen; a failure leaves NULL slots, which
    // a list's deallocation skips.
    list = PyList_New(n);
    ok = ok && list != nullptr;
  }
  bool repeated = false, plain = true;
  for (Py_ssize_t i = 0; ok && i < n; ++i) {
    ok = capture_one(PyList_GET_ITEM(named, i), i, facts, ctx, lists, &repeated, &plain);
  }
  Py_DECREF(named);
  PyObject* result = nullptr;
  if (ok) {
    result = Py_BuildValue("(OOOOOOO)", lists[0], lists[1], lists[2], lists[3], lists[4],
                           repeated ? Py_True : Py_False, plain ? Py_True : Py_False);
  }
  for (auto* list : lists) {
    Py_XDECREF(list);
  }
  return result;
}

PyMethodDef module_functions[] = {
    {"float_stats", float_stats, METH_O,
     "float_stats(tensor): the kernel's statistics tuple of a plain contiguous CPU float "
     "tensor, or None"},
    {"capture_pass", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(capture_pass)),
     METH_FASTCALL,
     "capture_pass(named, facts, context) -> (paths, types, reprs, owns, kids, repeated, plain): "
     "the per-module loop of capture_modules"},
    {nullptr, nullptr, 0, nullptr}};

PyMethodDef probe_methods[] = {
    {"meta", probe_meta, METH_O,
     "meta(tensor): the shared metadata tuple of one output tensor (see tracer.core.step_state)"},
    {"chained", probe_chained, METH_O,
     "chained(tensor): (metadata, index) if tensor is the remembered one, unchanged; else None"},
    {"remember", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(probe_remember)),
     METH_FASTCALL, "remember(tensor, metadata, index): the output the next call may take in"},
    {"forget", probe_forget, METH_NOARGS, "forget(): remember nothing (a step ended)"},
    {nullptr, nullptr, 0, nullptr}};

PyMethodDef request_methods[] = {
    {"request", request_call, METH_O,
     "request(tensor): the index of the tensor's statistics in the bound tables (the Python "
     "request decides the uncommon tensors)"},
    {"bind", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(request_bind)),
     METH_FASTCALL,
     "bind(group, row, owner, version, seen, vectors, on): the step's tables; on: False sends "
     "every tensor the Python way"},
    {nullptr, nullptr, 0, nullptr}};

PyTypeObject ProbeType = {PyVarObject_HEAD_INIT(nullptr, 0)};
PyTypeObject RequestType = {PyVarObject_HEAD_INIT(nullptr, 0)};

// ---------------------------------------------------------------------------------------------
// The traced forward's common call, compiled (tracer.core.wrapping).
//
// WrapCore is the base of tracer.core.wrapping.Wrap, the object installed as a traced module's
// instance ``forward``: calling it IS the fast path. RecorderCore is the base of
// tracer.core.step_state.Recorder and holds what that path reads (calls, stack, probe, request,
// on_outermost, ops_on) as struct fields, which Python reads and writes as ordinary attributes.
// The call of one plain torch.Tensor, no keywords, the op layer off, this module's compiled
// Probe and either no statistics or this module's StatsRequest, is recorded here exactly as
// wrapping._traced_forward records it (the same pending-call list, the same clock); every other
// call, and every unusual turn (an error, a non-tensor result, gradient hooks, a call left on the
// stack) goes to the Python functions wrapping.py hands over with bind_wrapping().

struct RecorderCore {
  PyObject_HEAD
  PyObject* calls;
  PyObject* stack;
  PyObject* probe;
  PyObject* request;
  PyObject* on_outermost;
  PyObject* ops_on;
};

struct WrapCore {
  PyObject_HEAD
  PyObject* info;
  PyObject* inner;
  PyObject* rec;
  PyObject* live;
  PyObject* grads;
};

PyTypeObject RecorderCoreType = {PyVarObject_HEAD_INIT(nullptr, 0)};
PyTypeObject WrapCoreType = {PyVarObject_HEAD_INIT(nullptr, 0)};

// wrapping._traced_forward, _close and _watch_grads (bind_wrapping), and interned names.
PyObject* py_traced_forward = nullptr;
PyObject* py_close = nullptr;
PyObject* py_watch_grads = nullptr;
PyObject* str_fail = nullptr;
PyObject* str_pop = nullptr;
PyObject* str_slot = nullptr;  // "0": the slot of a single output
PyObject* float_zero = nullptr;

#if PY_VERSION_HEX < 0x030D0000 && !defined(__linux__)
PyObject* py_perf_counter = nullptr;  // time.perf_counter, where no C clock is known to match
#endif

// The clock of time.perf_counter(), as a double of seconds (START values are compared with
// Python-side ones). Python 3.13+ has it in its C API; on Linux before that perf_counter is
// clock_gettime(CLOCK_MONOTONIC), converted to seconds as CPython converts it; elsewhere the
// Python function is called.
double perf_counter_now() {
#if PY_VERSION_HEX >= 0x030D0000
  PyTime_t t = 0;
  if (PyTime_PerfCounterRaw(&t) < 0) {
    PyErr_Clear();
  }
  return PyTime_AsSecondsDouble(t);
#elif defined(__linux__)
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const int64_t ns = static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
  if (ns % 1000000000 == 0) {
    return static_cast<double>(ns / 1000000000);
  }
  return static_cast<double>(ns) / 1e9;
#else
  PyObject* now = PyObject_CallNoArgs(py_perf_counter);
  if (now == nullptr) {
    PyErr_Clear();
    return 0.0;
  }
  const double value = PyFloat_AsDouble(now);
  Py_DECREF(now);
  if (value == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
  }
  return value;
#endif
}

PyObject* perf_counter(PyObject*, PyObject*) { return PyFloat_FromDouble(perf_counter_now()); }

// --- RecorderCore ---

int recorder_traverse(PyObject* self_obj, visitproc visit, void* arg) {
  auto* self = reinterpret_cast<RecorderCore*>(self_obj);
  Py_VISIT(self->calls);
  Py_VISIT(self->stack);
  Py_VISIT(self->probe);
  Py_VISIT(self->request);
  Py_VISIT(self->on_outermost);
  Py_VISIT(self->ops_on);
  return 0;
}

int recorder_clear(PyObject* self_obj) {
  auto* self = reinterpret_cast<RecorderCore*>(self_obj);
  Py_CLEAR(self->calls);
  Py_CLEAR(self->stack);
  Py_CLEAR(self->probe);
  Py_CLEAR(self->request);
  Py_CLEAR(self->on_outermost);
  Py_CLEAR(self->ops_on);
  return 0;
}

void recorder_dealloc(PyObject* self_obj) {
  PyObject_GC_UnTrack(self_obj);
  recorder_clear(self_obj);
  Py_TYPE(self_obj)->tp_free(self_obj);
}

PyObject* empty_args = nullptr;  // ()

PyObject* recorder_new(PyTypeObject* type, PyObject*, PyObject*) {
  // Made by object's own tp_new: a Python subclass (Recorder) then gets its instance
  // attributes in CPython's inline values, which its attribute reads are specialised for (about
  // 4x faster than a dict made on the first assignment, as type->tp_alloc alone leaves it).
  auto* self = reinterpret_cast<RecorderCore*>(PyBaseObject_Type.tp_new(type, empty_args, nullptr));
  if (self == nullptr) {
    return nullptr;
  }
  // As Recorder.__init__ starts (it sets every field again).
  self->calls = PyList_New(0);
  self->stack = PyList_New(0);
  if (self->calls == nullptr || self->stack == nullptr) {
    Py_DECREF(self);
    return nullptr;
  }
  PyObject** nones[3] = {&self->probe, &self->request, &self->on_outermost};
  for (PyObject** slot : nones) {
    Py_INCREF(Py_None);
    *slot = Py_None;
  }
  Py_INCREF(Py_False);
  self->ops_on = Py_False;
  return reinterpret_cast<PyObject*>(self);
}

PyMemberDef recorder_members[] = {
    {"calls", T_OBJECT_EX, offsetof(RecorderCore, calls), 0,
     "the step's pending calls, in pre-order"},
    {"stack", T_OBJECT_EX, offsetof(RecorderCore, stack), 0, "the module calls now running"},
    {"probe", T_OBJECT_EX, offsetof(RecorderCore, probe), 0, "the tensor probe"},
    {"request", T_OBJECT_EX, offsetof(RecorderCore, request), 0,
     "the statistics request of the fast path (None: shapes only)"},
    {"on_outermost", T_OBJECT_EX, offsetof(RecorderCore, on_outermost), 0,
     "the op layer's switch, or None"},
    {"ops_on", T_OBJECT_EX, offsetof(RecorderCore, ops_on), 0,
     "True while the op layer's mode is pushed"},
    {nullptr, 0, 0, 0, nullptr}};

// --- WrapCore ---

int wrap_traverse(PyObject* self_obj, visitproc visit, void* arg) {
  auto* self = reinterpret_cast<WrapCore*>(self_obj);
  Py_VISIT(self->info);
  Py_VISIT(self->inner);
  Py_VISIT(self->rec);
  Py_VISIT(self->live);
  Py_VISIT(self->grads);
  return 0;
}

int wrap_clear(PyObject* self_obj) {
  auto* self = reinterpret_cast<WrapCore*>(self_obj);
  Py_CLEAR(self->info);
  Py_CLEAR(self->inner);
  Py_CLEAR(self->rec);
  Py_CLEAR(self->live);
  Py_CLEAR(self->grads);
  return 0;
}

void wrap_dealloc(PyObject* self_obj) {
  PyObject_GC_UnTrack(self_obj);
  wrap_clear(self_obj);
  Py_TYPE(self_obj)->tp_free(self_obj);
}

PyObject* wrap_new(PyTypeObject* type, PyObject*, PyObject*) {
  auto* self = reinterpret_cast<WrapCore*>(type->tp_alloc(type, 0));
  if (self == nullptr) {
    return nullptr;
  }
  PyObject** nones[3] = {&self->info, &self->inner, &self->rec};
  for (PyObject** slot : nones) {
    Py_INCREF(Py_None);
    *slot = Py_None;
  }
  Py_INCREF(Py_False);
  self->live = Py_False;
  Py_INCREF(Py_False);
  self->grads = Py_False;
  return reinterpret_cast<PyObject*>(self);
}

PyMemberDef wrap_members[] = {
    {"info", T_OBJECT_EX, offsetof(WrapCore, info), 0, "(path, type name, depth)"},
    {"inner", T_OBJECT_EX, offsetof(WrapCore, inner), 0, "the forward being wrapped"},
    {"rec", T_OBJECT_EX, offsetof(WrapCore, rec), 0, "the Recorder, None for a dead wrapper"},
    {"live", T_OBJECT_EX, offsetof(WrapCore, live), 0, "False: a plain pass-through"},
    {"grads", T_OBJECT_EX, offsetof(WrapCore, grads), 0, "watch the outputs' gradients"},
    {nullptr, 0, 0, 0, nullptr}};

// The call handed, unchanged, to wrapping._traced_forward(wrap, *args, **kwargs).
PyObject* traced_python(PyObject* self, PyObject* args, PyObject* kwargs) {
  if (py_traced_forward == nullptr) {
    PyErr_SetString(PyExc_RuntimeError, "tracer.core._probe: bind_wrapping() was not called");
    return nullptr;
  }
  const Py_ssize_t n = PyTuple_GET_SIZE(args);
  PyObject* full = PyTuple_New(n + 1);
  if (full == nullptr) {
    return nullptr;
  }
  Py_INCREF(self);
  PyTuple_SET_ITEM(full, 0, self);
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* item = PyTuple_GET_ITEM(args, i);
    Py_INCREF(item);
    PyTuple_SET_ITEM(full, i + 1, item);
  }
  PyObject* result = PyObject_Call(py_traced_forward, full, kwargs);
  Py_DECREF(full);
  return result;
}

// The raised exception, normalized, with its traceback (a new reference); clears it.
PyObject* take_exception() {
#if PY_VERSION_HEX >= 0x030C0000
  return PyErr_GetRaisedException();
#else
  PyObject *type = nullptr, *value = nullptr, *tb = nullptr;
  PyErr_Fetch(&type, &value, &tb);
  PyErr_NormalizeException(&type, &value, &tb);
  if (value != nullptr && tb != nullptr) {
    PyException_SetTraceback(value, tb);
  }
  Py_XDECREF(type);
  Py_XDECREF(tb);
  return value;
#endif
}

void restore_exception(PyObject* exc) {
#if PY_VERSION_HEX >= 0x030C0000
  PyErr_SetRaisedException(exc);
#else
  PyObject* tb = PyException_GetTraceback(exc);
  PyErr_Restore(reinterpret_cast<PyObject*>(Py_TYPE(exc)), exc, tb);
  Py_INCREF(Py_TYPE(exc));
#endif
}

// ``except Exception as exc: rec.fail(exc)``: true where the raised error was an Exception and
// rec.fail took it; false (the error still raised) for any other BaseException, or where
// rec.fail raised.
bool absorb(PyObject* rec) {
  if (!PyErr_ExceptionMatches(PyExc_Exception)) {
    return false;
  }
  PyObject* exc = take_exception();
  if (exc == nullptr) {
    return true;
  }
  PyObject* done = PyObject_CallMethodOneArg(rec, str_fail, exc);
  Py_DECREF(exc);
  Py_XDECREF(done);
  return done != nullptr;
}

// wrapping._close(w, rec, call, result, end): a new reference to its result, or nullptr.
PyObject* close_call(PyObject* w, PyObject* rec, PyObject* call, PyObject* result, double end) {
  PyObject* end_obj = PyFloat_FromDouble(end);
  if (end_obj == nullptr) {
    return nullptr;
  }
  PyObject* argv[5] = {w, rec, call, result, end_obj};
  PyObject* done = PyObject_Vectorcall(py_close, argv, 5, nullptr);
  Py_DECREF(end_obj);
  return done;
}

// Holds the objects one call works with: Python code runs in between (the probe's make, the
// statistics' Python request, the op layer's switch, the forward itself) and may rebind them.
struct Held {
  PyObject* objs[6] = {nullptr, nullptr, nullptr, nullptr, nullptr, nullptr};
  int n = 0;
  void hold(PyObject* obj) {
    Py_INCREF(obj);
    objs[n++] = obj;
  }
  ~Held() {
    for (int i = 0; i < n; ++i) {
      Py_DECREF(objs[i]);
    }
  }
};

PyObject* str_op_free = nullptr;  // "op_free" (made with make_wraps' names)

// Whether a call of the one plain tensor ``x`` to the wrapper ``w`` runs no recorded op:
// tracer.core.op_layer.op_free_call of the wrapper's ``op_free`` (True, or the number of
// dimensions ``x`` must have). No wrapper field: not op-free.
bool op_free_call(PyObject* w, PyObject* x) {
  PyObject* free = str_op_free == nullptr ? nullptr : PyObject_GetAttr(w, str_op_free);
  if (free == nullptr) {
    PyErr_Clear();
    return false;
  }
  bool yes = free == Py_True;
  if (!yes && PyLong_CheckExact(free)) {
    const long dims = PyLong_AsLong(free);
    if (dims == -1 && PyErr_Occurred()) {
      PyErr_Clear();
    } else {
      yes = THPVariable_Unpack(x).dim() == dims;
    }
  }
  Py_DECREF(free);
  return yes;
}

// The part of the fast path before the forward (its ``try`` block): the inputs and the op
// layer's switch, which an op-free call of the outermost module leaves off. False with an
// error raised where the error is to propagate.
bool record_input(PyObject* w, RecorderCore* rec, Probe* probe, Request* req, PyObject* call,
                  PyObject* stack, PyObject* x) {
  PyObject* self_rec = reinterpret_cast<PyObject*>(rec);
  PyObject* same = probe_chained(reinterpret_cast<PyObject*>(probe), x);
  if (same == nullptr) {
    return absorb(self_rec);
  }
  if (same != Py_None && PyTuple_CheckExact(same) && PyTuple_GET_SIZE(same) == 2) {
    PyObject* meta = PyTuple_GET_ITEM(same, 0);
    PyObject* index = PyTuple_GET_ITEM(same, 1);
    Py_INCREF(meta);
    PyList_SetItem(call, 1, meta);
    Py_INCREF(index);
    PyList_SetItem(call, 7, index);
    Py_DECREF(same);
  } else {
    Py_DECREF(same);
    PyObject* meta = probe_meta(reinterpret_cast<PyObject*>(probe), x);
    if (meta == nullptr) {
      return absorb(self_rec);
    }
    PyList_SetItem(call, 1, meta);
    if (req != nullptr) {
      PyObject* index = request_call(reinterpret_cast<PyObject*>(req), x);
      if (index == nullptr) {
        return absorb(self_rec);
      }
      PyList_SetItem(call, 7, index);
    }
  }
  PyObject* outermost = rec->on_outermost;
  if (outermost == nullptr) {
    PyErr_SetString(PyExc_AttributeError, "on_outermost");
    return absorb(self_rec);
  }
  if (outermost != Py_None && PyList_GET_SIZE(stack) == 1 && !op_free_call(w, x)) {
    Py_INCREF(outermost);
    PyObject* done = PyObject_CallOneArg(outermost, Py_True);
    Py_DECREF(outermost);
    if (done == nullptr) {
      return absorb(self_rec);
    }
    Py_DECREF(done);
  }
  return true;
}

// The part after the forward (its second ``try`` block): the output's record, the chain's
// memory, the gradient hook. False with an error raised where the error is to propagate.
bool record_output(WrapCore* w, RecorderCore* rec, Probe* probe, Request* req, PyObject* call,
                   PyObject* result) {
  PyObject* self_rec = reinterpret_cast<PyObject*>(rec);
  PyObject* meta = probe_meta(reinterpret_cast<PyObject*>(probe), result);
  if (meta == nullptr) {
    return absorb(self_rec);
  }
  Py_INCREF(meta);
  PyList_SetItem(call, 2, meta);
  PyObject* index = Py_None;
  Py_INCREF(index);
  if (req != nullptr) {
    Py_DECREF(index);
    index = request_call(reinterpret_cast<PyObject*>(req), result);
    if (index == nullptr) {
      Py_DECREF(meta);
      return absorb(self_rec);
    }
  }
  Py_INCREF(index);
  PyList_SetItem(call, 8, index);
  PyObject* argv[3] = {result, meta, index};
  PyObject* done = probe_remember(reinterpret_cast<PyObject*>(probe), argv, 3);
  Py_DECREF(index);
  if (done == nullptr) {
    Py_DECREF(meta);
    return absorb(self_rec);
  }
  Py_DECREF(done);
  // meta[REQUIRES_GRAD] and w.grads and torch.is_grad_enabled()
  int watch = 0;
  PyObject* rg = PySequence_GetItem(meta, 4);
  Py_DECREF(meta);
  if (rg == nullptr) {
    return absorb(self_rec);
  }
  watch = PyObject_IsTrue(rg);
  Py_DECREF(rg);
  if (watch > 0) {
    PyObject* grads = w->grads;
    if (grads == nullptr) {
      PyErr_SetString(PyExc_AttributeError, "grads");
      return absorb(self_rec);
    }
    watch = PyObject_IsTrue(grads);
  }
  if (watch < 0) {
    return absorb(self_rec);
  }
  if (watch > 0 && c10::GradMode::is_enabled()) {
    PyObject* pair = PyTuple_Pack(2, str_slot, result);
    PyObject* leaves = pair != nullptr ? PyList_New(1) : nullptr;
    if (leaves == nullptr) {
      Py_XDECREF(pair);
      return absorb(self_rec);
    }
    PyList_SET_ITEM(leaves, 0, pair);
    PyObject* args[3] = {self_rec, call, leaves};
    PyObject* hooked = PyObject_Vectorcall(py_watch_grads, args, 3, nullptr);
    Py_DECREF(leaves);
    if (hooked == nullptr) {
      return absorb(self_rec);
    }
    Py_DECREF(hooked);
  }
  return true;
}

PyObject* wrap_call(PyObject* self, PyObject* args, PyObject* kwargs) {
  auto* w = reinterpret_cast<WrapCore*>(self);
  PyObject* live = w->live;
  PyObject* rec_obj = w->rec;
  if (live == Py_False || rec_obj == Py_None) {  // a plain pass-through
    if (w->inner == nullptr) {
      return traced_python(self, args, kwargs);
    }
    PyObject* inner = w->inner;
    Py_INCREF(inner);
    PyObject* result = PyObject_Call(inner, args, kwargs);
    Py_DECREF(inner);
    return result;
  }
  // Only the common case below; everything else as wrapping._traced_forward decides.
  if (live != Py_True || rec_obj == nullptr || w->inner == nullptr || w->info == nullptr ||
      (kwargs != nullptr && PyDict_GET_SIZE(kwargs) != 0) || PyTuple_GET_SIZE(args) != 1 ||
      Py_TYPE(PyTuple_GET_ITEM(args, 0)) != reinterpret_cast<PyTypeObject*>(THPVariableClass) ||
      !PyObject_TypeCheck(rec_obj, &RecorderCoreType) || py_close == nullptr) {
    return traced_python(self, args, kwargs);
  }
  auto* rec = reinterpret_cast<RecorderCore*>(rec_obj);
  PyObject* probe = rec->probe;
  PyObject* request = rec->request;
  PyObject* req = nullptr;
  if (rec->ops_on != Py_False || probe == nullptr || Py_TYPE(probe) != &ProbeType ||
      request == nullptr || rec->calls == nullptr || !PyList_CheckExact(rec->calls) ||
      rec->stack == nullptr || !PyList_CheckExact(rec->stack)) {
    return traced_python(self, args, kwargs);
  }
  if (request != Py_None) {
    if (!PyCFunction_Check(request) ||
        PyCFunction_GET_FUNCTION(request) != reinterpret_cast<PyCFunction>(request_call)) {
      return traced_python(self, args, kwargs);
    }
    req = PyCFunction_GET_SELF(request);
    if (req == nullptr || Py_TYPE(req) != &RequestType) {
      return traced_python(self, args, kwargs);
    }
  }
  PyObject* x = PyTuple_GET_ITEM(args, 0);
  PyObject* stack = rec->stack;
  Held held;
  held.hold(w->inner);
  held.hold(rec_obj);
  held.hold(probe);
  held.hold(stack);
  if (req != nullptr) {
    held.hold(req);
  }
  PyObject* inner = w->inner;
  // new_call()'s list: INFO, INPUTS, OUTPUTS, START, DURATION, GRADS, OP, IN_REF, OUT_REF
  PyObject* call = PyList_New(9);
  if (call == nullptr) {
    return nullptr;
  }
  held.hold(call);
  Py_DECREF(call);  // held
  PyObject* empty = PyTuple_New(0);
  if (empty == nullptr) {
    return nullptr;
  }
  Py_INCREF(w->info);
  PyList_SET_ITEM(call, 0, w->info);
  Py_INCREF(Py_None);
  PyList_SET_ITEM(call, 1, Py_None);
  PyList_SET_ITEM(call, 2, empty);
  Py_INCREF(float_zero);
  PyList_SET_ITEM(call, 3, float_zero);
  for (int i = 4; i < 9; ++i) {
    Py_INCREF(Py_None);
    PyList_SET_ITEM(call, i, Py_None);
  }
  if (PyList_Append(rec->calls, call) < 0 || PyList_Append(stack, call) < 0) {
    return nullptr;
  }
  if (!record_input(self, rec, reinterpret_cast<Probe*>(probe), reinterpret_cast<Request*>(req),
                    call, stack, x)) {
    return nullptr;
  }
  const double start = perf_counter_now();
  PyObject* start_obj = PyFloat_FromDouble(start);
  if (start_obj == nullptr) {
    return nullptr;
  }
  PyList_SetItem(call, 3, start_obj);
  PyObject* result = PyObject_CallOneArg(inner, x);
  if (result == nullptr) {  // the forward raised: recorded without outputs, raised unchanged
    PyObject* exc = take_exception();
    PyObject* done = close_call(self, rec_obj, call, Py_None, perf_counter_now());
    if (done == nullptr) {
      if (exc != nullptr) {
        PyObject* now = take_exception();
        if (now != nullptr) {
          PyException_SetContext(now, exc);  // steals exc
          restore_exception(now);
        } else {
          restore_exception(exc);
        }
      }
      return nullptr;
    }
    Py_DECREF(done);
    if (exc != nullptr) {
      restore_exception(exc);
    }
    return nullptr;
  }
  const double end = perf_counter_now();
  if (Py_TYPE(result) != reinterpret_cast<PyTypeObject*>(THPVariableClass) ||
      rec->ops_on != Py_False) {
    PyObject* done = close_call(self, rec_obj, call, result, end);
    if (done == nullptr) {
      Py_DECREF(result);
      return nullptr;
    }
    Py_DECREF(done);
    return result;
  }
  PyObject* duration = PyFloat_FromDouble(end - start);
  if (duration == nullptr) {
    Py_DECREF(result);
    return nullptr;
  }
  PyList_SetItem(call, 4, duration);
  const Py_ssize_t depth = PyList_GET_SIZE(stack);
  if (depth > 0 && PyList_GET_ITEM(stack, depth - 1) == call) {
    if (PyList_SetSlice(stack, depth - 1, depth, nullptr) < 0) {
      Py_DECREF(result);
      return nullptr;
    }
  } else {
    PyObject* done = PyObject_CallMethodOneArg(rec_obj, str_pop, call);
    if (done == nullptr) {
      Py_DECREF(result);
      return nullptr;
    }
    Py_DECREF(done);
  }
  if (!record_output(w, rec, reinterpret_cast<Probe*>(probe), reinterpret_cast<Request*>(req),
                     call, result)) {
    Py_DECREF(result);
    return nullptr;
  }
  return result;
}

PyObject* bind_wrapping(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 3) {
    PyErr_SetString(PyExc_TypeError,
                    "bind_wrapping(traced_forward, close, watch_grads) takes 3 arguments");
    return nullptr;
  }
  for (Py_ssize_t i = 0; i < 3; ++i) {
    if (!PyCallable_Check(args[i])) {
      PyErr_SetString(PyExc_TypeError, "bind_wrapping: every argument must be callable");
      return nullptr;
    }
  }
  PyObject** slots[3] = {&py_traced_forward, &py_close, &py_watch_grads};
  for (int i = 0; i < 3; ++i) {
    Py_INCREF(args[i]);
    Py_XSETREF(*slots[i], args[i]);
  }
  Py_RETURN_NONE;
}

// make_wraps(wrap_type, named, rec, grads, missing, replicate) -> (entries, paths): the
// wrappers of tracer.core.wrapping.HookSet, one per (path, module) of ``named``, each made as
// ``Wrap(rec, (path, type name, depth), grads, module)`` makes it (its fields set, ``module``
// a weak reference, ``saved`` the ``missing`` sentinel), with its bound ``_replicate``
// (``replicate``, the class's function); ``entries`` holds (module, wrap, bound replicate)
// tuples, ``paths`` the paths.
PyObject* str_module = nullptr;
PyObject* str_ops = nullptr;
PyObject* str_saved = nullptr;
PyObject* str_dot = nullptr;

// One wrapper's entry (a new reference), or nullptr on an error.
PyObject* make_wrap(PyTypeObject* type, PyObject* path, PyObject* module, PyObject* const* args) {
  Py_ssize_t depth = 0;
  if (PyUnicode_GET_LENGTH(path) > 0) {
    depth = PyUnicode_Count(path, str_dot, 0, PY_SSIZE_T_MAX);
    if (depth < 0) {
      return nullptr;
    }
    ++depth;
  }
  PyObject* type_name = PyObject_GetAttr(reinterpret_cast<PyObject*>(Py_TYPE(module)), str_name);
  PyObject* level = type_name != nullptr ? PyLong_FromSsize_t(depth) : nullptr;
  PyObject* info = level != nullptr ? PyTuple_Pack(3, path, type_name, level) : nullptr;
  Py_XDECREF(type_name);
  Py_XDECREF(level);
  if (info == nullptr) {
    return nullptr;
  }
  PyObject* wrap_obj = wrap_new(type, nullptr, nullptr);
  if (wrap_obj == nullptr) {
    Py_DECREF(info);
    return nullptr;
  }
  auto* wrap = reinterpret_cast<WrapCore*>(wrap_obj);
  Py_SETREF(wrap->info, info);
  Py_SETREF(wrap->rec, Py_NewRef(args[2]));
  Py_SETREF(wrap->grads, Py_NewRef(args[3]));
  PyObject* ref = PyWeakref_NewRef(module, nullptr);
  PyObject* replicate = ref != nullptr ? PyMethod_New(args[5], wrap_obj) : nullptr;
  PyObject* entry = nullptr;
  if (replicate != nullptr && PyObject_SetAttr(wrap_obj, str_module, ref) == 0 &&
      PyObject_SetAttr(wrap_obj, str_op_free, Py_False) == 0 &&
      PyObject_SetAttr(wrap_obj, str_ops, Py_None) == 0 &&
      PyObject_SetAttr(wrap_obj, str_saved, args[4]) == 0) {
    entry = PyTuple_Pack(3, module, wrap_obj, replicate);
  }
  Py_XDECREF(ref);
  Py_XDECREF(replicate);
  Py_DECREF(wrap_obj);
  return entry;
}

PyObject* make_wraps(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 6 || !PyType_Check(args[0]) ||
      !PyType_IsSubtype(reinterpret_cast<PyTypeObject*>(args[0]), &WrapCoreType) ||
      !PyList_CheckExact(args[1])) {
    PyErr_SetString(PyExc_TypeError,
                    "make_wraps(wrap_type, named, rec, grads, missing, replicate)");
    return nullptr;
  }
  auto* type = reinterpret_cast<PyTypeObject*>(args[0]);
  PyObject* named = args[1];
  const Py_ssize_t n = PyList_GET_SIZE(named);
  PyObject* entries = PyList_New(n);
  PyObject* paths = entries != nullptr ? PyList_New(n) : nullptr;
  if (paths == nullptr) {
    Py_XDECREF(entries);
    return nullptr;
  }
  for (Py_ssize_t i = 0; i < n; ++i) {
    // Nothing called below runs Python code that could change ``named`` (a weak reference
    // without callback, slot descriptors, a type's name).
    PyObject* item = PyList_GET_ITEM(named, i);
    if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2 ||
        !PyUnicode_Check(PyTuple_GET_ITEM(item, 0))) {
      PyErr_SetString(PyExc_TypeError, "make_wraps: named holds (path, module) pairs");
      Py_DECREF(entries);
      Py_DECREF(paths);
      return nullptr;
    }
    PyObject* path = PyTuple_GET_ITEM(item, 0);
    PyObject* entry = make_wrap(type, path, PyTuple_GET_ITEM(item, 1), args);
    if (entry == nullptr) {
      Py_DECREF(entries);
      Py_DECREF(paths);
      return nullptr;
    }
    PyList_SET_ITEM(entries, i, entry);
    PyList_SET_ITEM(paths, i, Py_NewRef(path));
  }
  PyObject* result = PyTuple_Pack(2, entries, paths);
  Py_DECREF(entries);
  Py_DECREF(paths);
  return result;
}

PyMethodDef fastpath_functions[] = {
    {"bind_wrapping", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(bind_wrapping)),
     METH_FASTCALL,
     "bind_wrapping(traced_forward, close, watch_grads): the Python functions WrapCore hands "
     "every other call and turn to (tracer.core.wrapping)"},
    {"perf_counter", perf_counter, METH_NOARGS,
     "perf_counter(): the clock WrapCore reads, the same as time.perf_counter()"},
    {"make_wraps", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(make_wraps)),
     METH_FASTCALL,
     "make_wraps(wrap_type, named, rec, grads, missing, replicate) -> (entries, paths): "
     "HookSet's wrappers"},
    {nullptr, nullptr, 0, nullptr}};

bool ready_fastpath_types(PyObject* module) {
  str_fail = PyUnicode_InternFromString("fail");
  str_pop = PyUnicode_InternFromString("pop");
  str_slot = PyUnicode_InternFromString("0");
  str_name = PyUnicode_InternFromString("__name__");
  str_extra_repr = PyUnicode_InternFromString("extra_repr");
  str_named_parameters = PyUnicode_InternFromString("named_parameters");
  str_parameters = PyUnicode_InternFromString("_parameters");
  str_children = PyUnicode_InternFromString("children");
  str_named_children = PyUnicode_InternFromString("named_children");
  str_modules = PyUnicode_InternFromString("_modules");
  str_empty = PyUnicode_InternFromString("");
  str_module = PyUnicode_InternFromString("module");
  str_op_free = PyUnicode_InternFromString("op_free");
  str_ops = PyUnicode_InternFromString("ops");
  str_saved = PyUnicode_InternFromString("saved");
  str_dot = PyUnicode_InternFromString(".");
  if (str_module == nullptr || str_op_free == nullptr || str_ops == nullptr ||
      str_saved == nullptr || str_dot == nullptr) {
    return false;
  }
  if (str_name == nullptr || str_extra_repr == nullptr || str_named_parameters == nullptr ||
      str_parameters == nullptr || str_children == nullptr || str_named_children == nullptr ||
      str_modules == nullptr || str_empty == nullptr) {
    return false;
  }
  float_zero = PyFloat_FromDouble(0.0);
  empty_args = PyTuple_New(0);
  if (empty_args == nullptr || str_fail == nullptr || str_pop == nullptr || str_slot == nullptr || float_zero == nullptr) {
    return false;
  }
#if PY_VERSION_HEX < 0x030D0000 && !defined(__linux__)
  PyObject* time_module = PyImport_ImportModule("time");
  if (time_module == nullptr) {
    return false;
  }
  py_perf_counter = PyObject_GetAttrString(time_module, "perf_counter");
  Py_DECREF(time_module);
  if (py_perf_counter == nullptr) {
    return false;
  }
#endif
  RecorderCoreType.tp_name = "tracer.core._probe.RecorderCore";
  RecorderCoreType.tp_basicsize = sizeof(RecorderCore);
  RecorderCoreType.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC;
  RecorderCoreType.tp_doc =
      "The fields of tracer.core.step_state.Recorder that the compiled fast path reads";
  RecorderCoreType.tp_new = recorder_new;
  RecorderCoreType.tp_dealloc = recorder_dealloc;
  RecorderCoreType.tp_traverse = recorder_traverse;
  RecorderCoreType.tp_clear = recorder_clear;
  RecorderCoreType.tp_members = recorder_members;
  if (PyType_Ready(&RecorderCoreType) < 0) {
    return false;
  }
  WrapCoreType.tp_name = "tracer.core._probe.WrapCore";
  WrapCoreType.tp_basicsize = sizeof(WrapCore);
  WrapCoreType.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC;
  WrapCoreType.tp_doc =
      "The base of tracer.core.wrapping.Wrap: calling it records one module call (the common "
      "call here, any other through wrapping._traced_forward)";
  WrapCoreType.tp_new = wrap_new;
  WrapCoreType.tp_dealloc = wrap_dealloc;
  WrapCoreType.tp_traverse = wrap_traverse;
  WrapCoreType.tp_clear = wrap_clear;
  WrapCoreType.tp_members = wrap_members;
  WrapCoreType.tp_call = wrap_call;
  if (PyType_Ready(&WrapCoreType) < 0) {
    return false;
  }
  if (PyModule_AddFunctions(module, fastpath_functions) < 0) {
    return false;
  }
  Py_INCREF(&RecorderCoreType);
  if (PyModule_AddObject(module, "RecorderCore", reinterpret_cast<PyObject*>(&RecorderCoreType)) <
      0) {
    Py_DECREF(&RecorderCoreType);
    return false;
  }
  Py_INCREF(&WrapCoreType);
  if (PyModule_AddObject(module, "WrapCore", reinterpret_cast<PyObject*>(&WrapCoreType)) < 0) {
    Py_DECREF(&WrapCoreType);
    return false;
  }
  return true;
}

PyModuleDef probe_module = {
    PyModuleDef_HEAD_INIT, "tracer.core._probe",
    "Tensor metadata read from the C++ tensor for the hooks' fast path.", -1, module_functions};

}  // namespace

PyMODINIT_FUNC PyInit__probe() {
  // Built against one torch: another one may lay out its tensors differently.
  PyObject* torch = PyImport_ImportModule("torch");
  if (torch == nullptr) {
    return nullptr;
  }
  PyObject* version = PyObject_GetAttrString(torch, "__version__");
  Py_DECREF(torch);
  if (version == nullptr) {
    return nullptr;
  }
  PyObject* text = PyObject_Str(version);
  Py_DECREF(version);
  if (text == nullptr) {
    return nullptr;
  }
  const char* running = PyUnicode_AsUTF8(text);
  if (running == nullptr || std::strcmp(running, TRACER_TORCH_VERSION) != 0) {
    PyErr_Format(PyExc_ImportError,
                 "tracer.core._probe was built against torch %s, this is torch %s; "
                 "reinstall layer-tracer (pip install --no-build-isolation)",
                 TRACER_TORCH_VERSION, running != nullptr ? running : "?");
    Py_DECREF(text);
    return nullptr;
  }
  Py_DECREF(text);
  ProbeType.tp_name = "tracer.core._probe.Probe";
  ProbeType.tp_basicsize = sizeof(Probe);
  ProbeType.tp_flags = Py_TPFLAGS_DEFAULT;
  ProbeType.tp_doc = "Probe(make): metadata and chain identity of plain tensors";
  ProbeType.tp_new = probe_new;
  ProbeType.tp_dealloc = probe_dealloc;
  ProbeType.tp_methods = probe_methods;
  if (PyType_Ready(&ProbeType) < 0) {
    return nullptr;
  }
  RequestType.tp_name = "tracer.core._probe.StatsRequest";
  RequestType.tp_basicsize = sizeof(Request);
  RequestType.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC;
  RequestType.tp_doc =
      "StatsRequest(slow, bases, vector, small=None): a statistics collector's request for "
      "plain CPU tensors (floats read by the kernel; with small, empty, integer and bool ones)";
  RequestType.tp_new = request_new;
  RequestType.tp_dealloc = request_dealloc;
  RequestType.tp_traverse = request_traverse;
  RequestType.tp_clear = request_clear;
  RequestType.tp_methods = request_methods;
  if (PyType_Ready(&RequestType) < 0) {
    return nullptr;
  }
  // The statistics kernel is optional here too: without it float_stats answers None.
  PyObject* speedups = PyImport_ImportModule("tracer.core._speedups");
  if (speedups == nullptr) {
    PyErr_Clear();
  } else {
    PyObject* api = PyObject_GetAttrString(speedups, "reduce");
    if (api == nullptr) {
      PyErr_Clear();
    } else {
      reduce = reinterpret_cast<ReduceFn>(PyCapsule_GetPointer(api, "tracer.core._speedups.reduce"));
      Py_DECREF(api);
      if (reduce == nullptr) {
        PyErr_Clear();
      }
    }
    // An older build of _speedups has no integer pass to give: integers go the Python way.
    api = PyObject_GetAttrString(speedups, "reduce_ints");
    if (api == nullptr) {
      PyErr_Clear();
    } else {
      reduce_ints = reinterpret_cast<ReduceIntsFn>(
          PyCapsule_GetPointer(api, "tracer.core._speedups.reduce_ints"));
      Py_DECREF(api);
      if (reduce_ints == nullptr) {
        PyErr_Clear();
      }
    }
    Py_DECREF(speedups);
  }
  PyObject* module = PyModule_Create(&probe_module);
  if (module == nullptr) {
    return nullptr;
  }
  Py_INCREF(&ProbeType);
  if (PyModule_AddObject(module, "Probe", reinterpret_cast<PyObject*>(&ProbeType)) < 0) {
    Py_DECREF(&ProbeType);
    Py_DECREF(module);
    return nullptr;
  }
  Py_INCREF(&RequestType);
  if (PyModule_AddObject(module, "StatsRequest", reinterpret_cast<PyObject*>(&RequestType)) < 0) {
    Py_DECREF(&RequestType);
    Py_DECREF(module);
    return nullptr;
  }
  if (!ready_fastpath_types(module)) {
    Py_DECREF(module);
    return nullptr;
  }
  PyObject* layout = layout_tuple();
  if (layout == nullptr || PyModule_AddObject(module, "LAYOUT", layout) < 0) {
    Py_XDECREF(layout);
    Py_DECREF(module);
    return nullptr;
  }
  // The most elements of an integer tensor that small_stats() reads (the tests hold it to
  // tracer.core.stats.BIG_NUMEL).
  if (PyModule_AddIntConstant(module, "SMALL_LIMIT", static_cast<long>(kSmallLimit)) < 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
