/* Compiled fast paths of tracer (optional: the package falls back to torch without them).
 *
 * float_stats: one pass over a float32 or float64 array for every built-in statistic.
 * int_stats: one pass over an integer array for its sum, extremes and nonzero count.
 *
 * tracer.core._speedups.float_stats(address, numel, itemsize) reads ``numel`` contiguous values at
 * ``address`` (a CPU tensor's data_ptr(), owned and kept alive by the caller) and returns the
 * statistics vector in the layout of stats_layout.h (tracer.core.stats_layout.Stat):
 *
 *     (numel, finite count, NaN count, sum, spread, L2 norm, L1 norm, nonzero count, min, max,
 *      near-zero count, near-one count)
 *
 * where spread = sqrt(sum((x - mean)^2)) and every sum, norm, count and extreme is over the
 * finite values; the near counts are of |x| <= 0.01 and 0.99 <= |x| <= 1.01 (the bands of
 * stats_layout.h, bounds included, compared in the values' own type against bounds rounded
 * to the right side). The module's LAYOUT tuple names the positions. The fast pass keeps independent
 * lanes (which the compiler turns into vector instructions) and adds each block of lanes into
 * double totals. It sums x - k, where k is the first value, so that the spread does not cancel
 * away when |mean| >> std. If a NaN or Inf
 * poisons the fast sums (or a float32 lane overflows), a careful scalar double pass counts the
 * non-finite values and reduces the others in two passes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>

#include "stats_layout.h"

/* Lanes per accumulator, the fastest measured once the near-value counters came in (16 float
 * lanes for both, as before, ran out of registers: benchmarks/README.md). The counters are
 * integers: a compare's mask is added as it is, with no conversion to floating point. */
#define F32_LANES 8
#define F64_LANES 8
#define BLOCK 256 /* iterations per lane between flushes into double totals */

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
/* Where the CPU has AVX-512, a second build of the fast pass in 512-bit registers (32 of them:
 * the accumulators fit), chosen at import. The pass is bound by arithmetic, not memory: with
 * 256-bit vectors it ran at 3.8-4.3 G float32 values/s whether the tensor was in cache or
 * not; the wide pass runs at 5.6-6.2 (float64: 1.6-1.8 against 2.8-3.5). */
#define WIDE_PASS 1
#define WIDE_TARGET                                                                        \
    __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,prefer-vector-width=512")))
#define F32_WIDE_LANES 16
#define F64_WIDE_LANES 8
#else
#define VECTOR_CLONES
#define WIDE_PASS 0
#endif

/* A band's bound in float32, on the right side of the real bound c (the largest float32 <= c
 * for an upper bound, the smallest >= c for a lower one): a float32 value then compares against
 * it exactly as against c. In float64 the bounds are the doubles themselves. */
static float upper_f32(double c)
{
    const float f = (float)c;
    return (double)f > c ? nextafterf(f, -INFINITY) : f;
}

static float lower_f32(double c)
{
    const float f = (float)c;
    return (double)f < c ? nextafterf(f, INFINITY) : f;
}

static double same_f64(double c) { return c; }

/* A counter lane counting a condition: the compare's mask added as it is (AVX2: an integer
 * subtract of the all-ones mask), or a masked increment (AVX-512: one instruction; as a plain
 * add it took a zeroing move and a subtract, and the wide pass ran at 4.5 G values/s instead of
 * 6.0-6.6; written this way in the narrow pass, it became a blend and ran at 3.0 instead of 3.8). */
#define COUNT_ADD(acc, cond) ((acc) += (cond))
#define COUNT_MASKED(acc, cond) ((acc) = (cond) ? (acc) + 1 : (acc))

/* The fast pass; returns 0 when a sum is not finite (the careful pass must decide). */
#define FAST_PASS(ATTR, NAME, T, ACC, ABS, UPPER, LOWER, L, CNT, COUNT)                           \
    ATTR static int NAME(const T *x, int64_t n, double *out)                               \
    {                                                                                      \
        double s = 0, s2 = 0, q = 0, a = 0, z = 0, nz = 0, no = 0;                         \
        const T k = x[0];                                                                  \
        const ACC band = UPPER(TRACER_NEAR_BAND), one_lo = LOWER(TRACER_NEAR_ONE_LOW);     \
        const ACC one_hi = UPPER(TRACER_NEAR_ONE_HIGH);                                    \
        T mn[L], mx[L];                                                            \
        for (int j = 0; j < L; j++) {                                                  \
            mn[j] = k;                                                                     \
            mx[j] = k;                                                                     \
        }                                                                                  \
        int64_t i = 0;                                                                     \
        const int64_t full = n - n % L;                                                \
        while (i < full) {                                                                 \
            ACC ls[L] = {0}, ls2[L] = {0}, lq[L] = {0};                        \
            ACC la[L] = {0};                                           \
            CNT lz[L] = {0}, lnz[L] = {0}, lno[L] = {0};    \
            int64_t end = i + (int64_t)BLOCK * L;                                      \
            if (end > full)                                                                \
                end = full;                                                                \
            for (; i < end; i += L) {                                                  \
                for (int j = 0; j < L; j++) {                                          \
                    const ACC v = x[i + j];                                                \
                    const ACC d = v - k;                                                   \
                    ls[j] += d;                                                            \
                    ls2[j] += d * d;                                                       \
                    lq[j] += v * v;                                                        \
                    const ACC av = ABS(v); /* not v<0?-v:v */                              \
                    la[j] += av;                                                           \
                    COUNT(lz[j], v == 0);                                                  \
                    COUNT(lnz[j], av <= band);                                             \
                    COUNT(lno[j], (av >= one_lo) & (av <= one_hi));                        \
                    mn[j] = x[i + j] < mn[j] ? x[i + j] : mn[j];                           \
                    mx[j] = x[i + j] > mx[j] ? x[i + j] : mx[j];                           \
                }                                                                          \
            }                                                                              \
            for (int j = 0; j < L; j++) {                                              \
                s += ls[j];                                                                \
                s2 += ls2[j];                                                              \
                q += lq[j];                                                                \
                a += la[j];                                                                \
                z += lz[j];                                                                \
                nz += lnz[j];                                                              \
                no += lno[j];                                                              \
            }                                                                              \
        }                                                                                  \
        double lo = k, hi = k;                                                             \
        for (int j = 0; j < L; j++) {                                                  \
            lo = mn[j] < lo ? mn[j] : lo;                                                  \
            hi = mx[j] > hi ? mx[j] : hi;                                                  \
        }                                                                                  \
        for (; i < n; i++) {                                                               \
            const double v = x[i], d = v - (double)k;                                      \
            s += d;                                                                        \
            s2 += d * d;                                                                   \
            q += v * v;                                                                    \
            const double av = fabs(v);                                                     \
            a += av;                                                                       \
            z += v == 0;                                                                   \
            nz += av <= TRACER_NEAR_BAND;                                                  \
            no += av >= TRACER_NEAR_ONE_LOW && av <= TRACER_NEAR_ONE_HIGH;                 \
            lo = v < lo ? v : lo;                                                          \
            hi = v > hi ? v : hi;                                                          \
        }                                                                                  \
        if (!isfinite(s) || !isfinite(s2) || !isfinite(q) || !isfinite(a))                \
            return 0;                                                                      \
        const double shift = s / (double)n, m2 = s2 - s * shift;                           \
        out[TRACER_STAT_FINITE] = (double)n;                                               \
        out[TRACER_STAT_NAN] = 0;                                                          \
        out[TRACER_STAT_SUM] = s + (double)k * (double)n;                                  \
        out[TRACER_STAT_SPREAD] = sqrt(m2 > 0 ? m2 : 0);                                   \
        out[TRACER_STAT_L2] = sqrt(q);                                                     \
        out[TRACER_STAT_L1] = a;                                                           \
        out[TRACER_STAT_NONZERO] = (double)n - z;                                          \
        out[TRACER_STAT_MIN] = lo;                                                         \
        out[TRACER_STAT_MAX] = hi;                                                         \
        out[TRACER_STAT_NEAR_ZERO] = nz;                                                   \
        out[TRACER_STAT_NEAR_ONE] = no;                                                    \
        return 1;                                                                          \
    }

/* The careful pass: NaN/Inf counted and left out, everything else in double, two passes. */
#define CAREFUL_PASS(NAME, T)                                                               \
    static void NAME(const T *x, int64_t n, double *out)                                   \
    {                                                                                      \
        double m = 0, nans = 0, s = 0, q = 0, a = 0, nz = 0, near0 = 0, near1 = 0;         \
        double lo = INFINITY, hi = -INFINITY;                                              \
        for (int64_t i = 0; i < n; i++) {                                                  \
            const double v = x[i];                                                         \
            if (isnan(v)) {                                                                \
                nans += 1;                                                                 \
                continue;                                                                  \
            }                                                                              \
            if (isinf(v))                                                                  \
                continue;                                                                  \
            m += 1;                                                                        \
            s += v;                                                                        \
            q += v * v;                                                                    \
            const double av = fabs(v);                                                     \
            a += av;                                                                       \
            nz += v != 0;                                                                  \
            near0 += av <= TRACER_NEAR_BAND;                                               \
            near1 += av >= TRACER_NEAR_ONE_LOW && av <= TRACER_NEAR_ONE_HIGH;              \
            lo = v < lo ? v : lo;                                                          \
            hi = v > hi ? v : hi;                                                          \
        }                                                                                  \
        const double mean = m > 0 ? s / m : 0;                                             \
        double m2 = 0;                                                                     \
        for (int64_t i = 0; i < n; i++) {                                                  \
            const double v = x[i];                                                         \
            if (isfinite(v))                                                               \
                m2 += (v - mean) * (v - mean);                                             \
        }                                                                                  \
        out[TRACER_STAT_FINITE] = m;                                                       \
        out[TRACER_STAT_NAN] = nans;                                                       \
        out[TRACER_STAT_SUM] = s;                                                          \
        out[TRACER_STAT_SPREAD] = sqrt(m2);                                                \
        out[TRACER_STAT_L2] = sqrt(q);                                                     \
        out[TRACER_STAT_L1] = a;                                                           \
        out[TRACER_STAT_NONZERO] = nz;                                                     \
        out[TRACER_STAT_MIN] = m > 0 ? lo : NAN;                                           \
        out[TRACER_STAT_MAX] = m > 0 ? hi : NAN;                                           \
        out[TRACER_STAT_NEAR_ZERO] = near0;                                                \
        out[TRACER_STAT_NEAR_ONE] = near1;                                                 \
    }

FAST_PASS(VECTOR_CLONES, fast_f32, float, float, fabsf, upper_f32, lower_f32, F32_LANES, int32_t,
          COUNT_ADD)
FAST_PASS(VECTOR_CLONES, fast_f64, double, double, fabs, same_f64, same_f64, F64_LANES, int64_t,
          COUNT_ADD)
#if WIDE_PASS
FAST_PASS(WIDE_TARGET, wide_f32, float, float, fabsf, upper_f32, lower_f32, F32_WIDE_LANES,
          int32_t, COUNT_MASKED)
FAST_PASS(WIDE_TARGET, wide_f64, double, double, fabs, same_f64, same_f64, F64_WIDE_LANES,
          int64_t, COUNT_MASKED)
#endif
CAREFUL_PASS(careful_f32, float)
CAREFUL_PASS(careful_f64, double)

typedef int (*pass_f32)(const float *, int64_t, double *);
typedef int (*pass_f64)(const double *, int64_t, double *);
/* The fast passes in use: set once at import (choose_width). */
static pass_f32 pass32 = fast_f32;
static pass_f64 pass64 = fast_f64;
static int width_bits = 256;

static void reduce(const void *data, int64_t n, int itemsize, double *out)
{
    out[TRACER_STAT_NUMEL] = (double)n;
    if (itemsize == 4) {
        if (!pass32((const float *)data, n, out))
            careful_f32((const float *)data, n, out);
    }
    else if (!pass64((const double *)data, n, out)) {
        careful_f64((const double *)data, n, out);
    }
}

/* Whether this CPU has every AVX-512 part the wide pass uses. */
static int wide_supported(void)
{
#if WIDE_PASS
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#else
    return 0;
#endif
}

/* Use the fast pass of this vector width (512: the wide pass; 256: the narrow one, whose
 * "default" clone runs on a CPU without AVX2); 0 where the width cannot be used here. */
static int use_width(int bits)
{
    if (bits == 256) {
        pass32 = fast_f32;
        pass64 = fast_f64;
        width_bits = 256;
        return 1;
    }
#if WIDE_PASS
    if (bits == 512 && wide_supported()) {
        pass32 = wide_f32;
        pass64 = wide_f64;
        width_bits = 512;
        return 1;
    }
#endif
    return 0;
}

static PyObject *width(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return PyLong_FromLong(width_bits);
}

static PyObject *set_width(PyObject *module, PyObject *arg)
{
    (void)module;
    const long bits = PyLong_AsLong(arg);
    if (bits == -1 && PyErr_Occurred())
        return NULL;
    if (!use_width((int)bits)) {
        PyErr_Format(PyExc_ValueError, "no %ld-bit statistics pass on this CPU", bits);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* The statistics vector as the tuple that float_stats returns. */
static PyObject *stats_tuple(const double *out)
{
    PyObject *result = PyTuple_New(TRACER_STAT_SIZE);
    if (result == NULL)
        return NULL;
    for (int i = 0; i < TRACER_STAT_SIZE; i++) {
        PyObject *value = PyFloat_FromDouble(out[i]);
        if (value == NULL) {
            Py_DECREF(result);
            return NULL;
        }
        PyTuple_SET_ITEM(result, i, value);
    }
    return result;
}

static PyObject *float_stats(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "float_stats(address, numel, itemsize) takes 3 arguments");
        return NULL;
    }
    void *data = PyLong_AsVoidPtr(args[0]);
    if (data == NULL && PyErr_Occurred())
        return NULL;
    const long long n = PyLong_AsLongLong(args[1]);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    const long itemsize = PyLong_AsLong(args[2]);
    if (itemsize == -1 && PyErr_Occurred())
        return NULL;
    if (n <= 0 || data == NULL || (itemsize != 4 && itemsize != 8)) {
        PyErr_SetString(PyExc_ValueError,
                        "float_stats needs a non-null address, numel > 0 and itemsize 4 or 8");
        return NULL;
    }
    /* The GIL stays held: no other Python thread can resize or free the tensor's storage
     * while this reads it through a bare address (a big tensor takes ~2 ms). */
    double out[TRACER_STAT_SIZE];
    reduce(data, (int64_t)n, (int)itemsize, out);
    return stats_tuple(out);
}

/* The integer statistics of contiguous values of one integer type: the sum as a double, the
 * extremes and the nonzero count, in 8 independent lanes. 64-bit values are summed as doubles
 * (each value converted, then added, as torch's sum(dtype=float64) does: exact while the partial
 * sums stay within 2**53), narrower ones exactly in 64-bit integers. */
#define INT_PASS(NAME, T, ACC)                                                             \
    static PyObject *NAME(const T *x, int64_t n)                                           \
    {                                                                                      \
        ACC total[8] = {0};                                                                \
        T lo[8], hi[8];                                                                    \
        int64_t nonzero[8] = {0};                                                          \
        for (int k = 0; k < 8; k++)                                                        \
            lo[k] = hi[k] = x[0];                                                          \
        int64_t i = 0;                                                                     \
        for (; i + 8 <= n; i += 8) {                                                       \
            for (int k = 0; k < 8; k++) {                                                  \
                const T v = x[i + k];                                                      \
                total[k] += (ACC)v;                                                        \
                lo[k] = v < lo[k] ? v : lo[k];                                             \
                hi[k] = v > hi[k] ? v : hi[k];                                             \
                nonzero[k] += v != 0;                                                      \
            }                                                                              \
        }                                                                                  \
        for (; i < n; i++) {                                                               \
            const T v = x[i];                                                              \
            total[0] += (ACC)v;                                                            \
            lo[0] = v < lo[0] ? v : lo[0];                                                 \
            hi[0] = v > hi[0] ? v : hi[0];                                                 \
            nonzero[0] += v != 0;                                                          \
        }                                                                                  \
        ACC sum = 0;                                                                       \
        int64_t count = 0;                                                                 \
        for (int k = 0; k < 8; k++) {                                                      \
            sum += total[k];                                                               \
            count += nonzero[k];                                                           \
            lo[0] = lo[k] < lo[0] ? lo[k] : lo[0];                                         \
            hi[0] = hi[k] > hi[0] ? hi[k] : hi[0];                                         \
        }                                                                                  \
        return Py_BuildValue("(dLLL)", (double)sum, (long long)lo[0], (long long)hi[0],    \
                             (long long)count);                                            \
    }

INT_PASS(int_pass_i64, int64_t, double)
INT_PASS(int_pass_i32, int32_t, int64_t)
INT_PASS(int_pass_i16, int16_t, int64_t)
INT_PASS(int_pass_i8, int8_t, int64_t)
INT_PASS(int_pass_u8, uint8_t, int64_t)

static PyObject *int_stats(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "int_stats(address, numel, kind) takes 3 arguments");
        return NULL;
    }
    void *data = PyLong_AsVoidPtr(args[0]);
    if (data == NULL && PyErr_Occurred())
        return NULL;
    const long long n = PyLong_AsLongLong(args[1]);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    const char *kind = PyUnicode_AsUTF8(args[2]);
    if (kind == NULL)
        return NULL;
    if (n <= 0 || data == NULL) {
        PyErr_SetString(PyExc_ValueError, "int_stats needs a non-null address and numel > 0");
        return NULL;
    }
    /* The GIL stays held, as in float_stats. */
    if (strcmp(kind, "int64") == 0)
        return int_pass_i64((const int64_t *)data, (int64_t)n);
    if (strcmp(kind, "int32") == 0)
        return int_pass_i32((const int32_t *)data, (int64_t)n);
    if (strcmp(kind, "int16") == 0)
        return int_pass_i16((const int16_t *)data, (int64_t)n);
    if (strcmp(kind, "int8") == 0)
        return int_pass_i8((const int8_t *)data, (int64_t)n);
    if (strcmp(kind, "uint8") == 0)
        return int_pass_u8((const uint8_t *)data, (int64_t)n);
    PyErr_Format(PyExc_ValueError, "int_stats: no pass for %s", kind);
    return NULL;
}

/* For tracer.core._probe, which reads the address from the C++ tensor itself (and may split a big
 * tensor over torch's threads): the reduction behind float_stats, through a capsule (the C API
 * of this module). It touches no Python object; the caller guarantees data != NULL, n > 0,
 * itemsize 4 or 8, and keeps the memory alive. */
typedef void (*reduce_fn)(const void *, int64_t, int, double *);

static PyMethodDef methods[] = {
    {"float_stats", (PyCFunction)(void (*)(void))float_stats, METH_FASTCALL,
     "float_stats(address, numel, itemsize) -> the statistics vector (its positions named "
     "by LAYOUT) of contiguous float32 (itemsize 4) or float64 (8) values."},
    {"int_stats", (PyCFunction)(void (*)(void))int_stats, METH_FASTCALL,
     "int_stats(address, numel, kind) -> (sum as a double, min, max, nonzero count) of "
     "contiguous integers of kind 'int64', 'int32', 'int16', 'int8' or 'uint8'."},
    {"width", width, METH_NOARGS,
     "width() -> the vector width in bits (512 or 256) of the fast pass in use."},
    {"set_width", set_width, METH_O,
     "set_width(bits): use the 512-bit (AVX-512) or the 256-bit fast pass; ValueError where "
     "this CPU has no such pass. Not thread-safe: for tests and benchmarks."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT, "tracer.core._speedups",
    "Compiled fast paths (optional: tracer falls back to torch without them).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__speedups(void)
{
    PyObject *module = PyModule_Create(&speedups_module);
    if (module == NULL)
        return NULL;
    /* The names of the vector's positions (stats_layout.h), checked against Python's. */
    PyObject *layout = PyTuple_New(TRACER_STAT_SIZE);
    if (layout == NULL) {
        Py_DECREF(module);
        return NULL;
    }
    for (int i = 0; i < TRACER_STAT_SIZE; i++) {
        PyObject *name = PyUnicode_FromString(tracer_stat_name(i));
        if (name == NULL) {
            Py_DECREF(layout);
            Py_DECREF(module);
            return NULL;
        }
        PyTuple_SET_ITEM(layout, i, name);
    }
    if (PyModule_AddObject(module, "LAYOUT", layout) < 0) {
        Py_DECREF(layout);
        Py_DECREF(module);
        return NULL;
    }
    /* The wide pass where the CPU has it, unless TRACER_KERNEL_WIDTH=256 asks for the narrow
     * one (to compare the two: their sums differ in the last bits, counts and extremes never). */
    const char *asked = getenv("TRACER_KERNEL_WIDTH");
    if (asked == NULL || strcmp(asked, "256") != 0)
        use_width(512);
    reduce_fn api_reduce = reduce;
    PyObject *api = PyCapsule_New((void *)api_reduce, "tracer.core._speedups.reduce", NULL);
    if (api == NULL || PyModule_AddObject(module, "reduce", api) < 0) {
        Py_XDECREF(api);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
