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
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/python_variable.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
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

// float_stats(tensor): the statistics kernel's tuple for a plain, non-empty CPU float32/float64
// tensor whose elements fill one block of memory (contiguous in some order: a transposed
// output is read as it lies, the statistics do not depend on order), read through its C++ data
// pointer; None for any other tensor (the collector's general path takes those).
PyObject* float_stats(PyObject*, PyObject* tensor) {
  c10::TensorImpl* impl = plain_impl(tensor);
  if (impl == nullptr || reduce == nullptr) {
    Py_RETURN_NONE;
  }
  const void* data = nullptr;
  int64_t numel = 0;
  int itemsize = 0;
  try {
    if (impl->is_python_dispatch() || impl->is_nested() || impl->layout() != c10::kStrided ||
        impl->device_type() != c10::DeviceType::CPU || !impl->has_storage()) {
      Py_RETURN_NONE;
    }
    const auto dtype = impl->dtype().toScalarType();
    if (dtype == c10::ScalarType::Float) {
      itemsize = 4;
    } else if (dtype == c10::ScalarType::Double) {
      itemsize = 8;
    } else {
      Py_RETURN_NONE;
    }
    numel = impl->numel();
    if (numel <= 0 || impl->is_neg() || !impl->is_non_overlapping_and_dense()) {
      Py_RETURN_NONE;
    }
    for (const int64_t stride : impl->strides()) {
      if (stride < 0) {  // the block would not start at the first element
        Py_RETURN_NONE;
      }
    }
    data = impl->data();
  } catch (const std::exception&) {
    Py_RETURN_NONE;
  }
  if (data == nullptr) {
    Py_RETURN_NONE;
  }
  // The GIL stays held while the kernel reads the tensor's memory (see tracer/core/_speedups.c).
  double out[kStats];
  reduce_all(static_cast<const char*>(data), numel, itemsize, out);
  return vector_tuple(out);
}

PyMethodDef module_functions[] = {
    {"float_stats", float_stats, METH_O,
     "float_stats(tensor): the kernel's statistics tuple of a plain contiguous CPU float "
     "tensor, or None"},
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

PyTypeObject ProbeType = {PyVarObject_HEAD_INIT(nullptr, 0)};

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
  // The statistics kernel is optional here too: without it float_stats answers None.
  PyObject* speedups = PyImport_ImportModule("tracer.core._speedups");
  if (speedups == nullptr) {
    PyErr_Clear();
  } else {
    PyObject* api = PyObject_GetAttrString(speedups, "reduce");
    Py_DECREF(speedups);
    if (api == nullptr) {
      PyErr_Clear();
    } else {
      reduce = reinterpret_cast<ReduceFn>(PyCapsule_GetPointer(api, "tracer.core._speedups.reduce"));
      Py_DECREF(api);
      if (reduce == nullptr) {
        PyErr_Clear();
      }
    }
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
  PyObject* layout = layout_tuple();
  if (layout == nullptr || PyModule_AddObject(module, "LAYOUT", layout) < 0) {
    Py_XDECREF(layout);
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
