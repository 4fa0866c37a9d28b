/* Compiled fast paths of tracer (optional: the package falls back to torch without them).
 *
 * float_stats: one pass over a float32 or float64 array for every built-in statistic.
 * int_stats: one pass over an integer array for its sum, extremes and nonzero count.
 * build_records: a step's frozen records from its pending calls.
 * lay_out, table_text: the summary's table, laid out and written.
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
 * double totals. It sums x - k, where k is one of the values (reduce: the middle one of the
 * first, middle and last), so that the spread does not cancel away when |mean| >> std; where
 * k lies far from the mean, it sums again with k the mean it found. If a NaN or Inf
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

/* The fast pass around the shift k: returns 0 when a sum is not finite (the careful pass
 * must decide), FAR when k lay so far from the mean that the spread lost precision (the sums
 * of squared distances to k exceed RESHIFT times the spread's square: the float32 lanes'
 * rounding, about 1e-6 of those sums, is then no longer small against it), else 1. */
#define FAR 2
#define RESHIFT 64.0
#define FAST_PASS(ATTR, NAME, T, ACC, ABS, UPPER, LOWER, L, CNT, COUNT)                           \
    ATTR static int NAME(const T *x, int64_t n, T k, double *out)                          \
    {                                                                                      \
        double s = 0, s2 = 0, q = 0, a = 0, z = 0, nz = 0, no = 0;                         \
        const ACC band = UPPER(TRACER_NEAR_BAND), one_lo = LOWER(TRACER_NEAR_ONE_LOW);     \
        const ACC one_hi = UPPER(TRACER_NEAR_ONE_HIGH);                                    \
        T mn[L], mx[L];                                                            \
        for (int j = 0; j < L; j++) {                                                  \
            mn[j] = x[0]; /* (k need not be one of the values) */                          \
            mx[j] = x[0];                                                                  \
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
        double lo = x[0], hi = x[0];                                                       \
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
        return s2 > RESHIFT * m2 ? FAR : 1;                                                \
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

typedef int (*pass_f32)(const float *, int64_t, float, double *);
typedef int (*pass_f64)(const double *, int64_t, double, double *);
/* The fast passes in use: set once at import (choose_width). */
static pass_f32 pass32 = fast_f32;
static pass_f64 pass64 = fast_f64;
static int width_bits = 256;

/* The middle one of three values (one NaN among them: some value or NaN, either way the
 * sums it shifts are NaN and the careful pass decides). */
#define MIDDLE(a, b, c) ((a) < (b) ? ((b) < (c) ? (b) : ((a) < (c) ? (c) : (a))) \
                                   : ((a) < (c) ? (a) : ((b) < (c) ? (c) : (b))))

/* The fast pass shifts by a value of the tensor, the middle one of its first, middle and last:
 * the spread of values close to each other but far from zero keeps its digits, and a single
 * outlier at one end (a first token's activations) is not the shift. Where the shift lay far
 * from the mean all the same (two far clusters), the pass runs again shifted by the mean it
 * found; the careful pass takes what is not finite, or what the second pass could not
 * settle. */
static void reduce(const void *data, int64_t n, int itemsize, double *out)
{
    out[TRACER_STAT_NUMEL] = (double)n;
    if (itemsize == 4) {
        const float *x = (const float *)data;
        const float a = x[0], b = x[n / 2], c = x[n - 1];
        int done = pass32(x, n, MIDDLE(a, b, c), out);
        if (done == FAR)
            done = pass32(x, n, (float)(out[TRACER_STAT_SUM] / (double)n), out);
        if (done != 1)
            careful_f32(x, n, out);
    }
    else {
        const double *x = (const double *)data;
        const double a = x[0], b = x[n / 2], c = x[n - 1];
        int done = pass64(x, n, MIDDLE(a, b, c), out);
        if (done == FAR)
            done = pass64(x, n, out[TRACER_STAT_SUM] / (double)n, out);
        if (done != 1)
            careful_f64(x, n, out);
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

/* numbers(fallback, digits, whole_below, *values) -> [str]: each statistic as
 * tracer.formatting.number() writes it ("" for None): nan, inf and -inf by name, a whole value
 * below whole_below in digits, anything else with ``digits`` significant digits (what
 * float.__format__ writes for ".<digits>g"). A value that is neither a float nor an int is
 * handed to fallback(value). A summary prints four per call: formatted one by one in Python,
 * they were most of the time its table took to lay out. */
static PyObject *number_text(PyObject *value, int digits, double whole_below, PyObject *fallback)
{
    double v;
    if (value == Py_None)
        return PyUnicode_FromStringAndSize("", 0);
    if (PyFloat_CheckExact(value)) {
        v = PyFloat_AS_DOUBLE(value);
    } else if (PyLong_CheckExact(value)) {
        v = PyLong_AsDouble(value);
        if (v == -1.0 && PyErr_Occurred())
            return NULL;
    } else {
        return PyObject_CallOneArg(fallback, value);
    }
    if (isnan(v))
        return PyUnicode_FromString("nan");
    if (isinf(v))
        return PyUnicode_FromString(v > 0 ? "inf" : "-inf");
    /* (below 9e18 as well: a long long holds it; formatting.number's limits are far lower) */
    if (v == trunc(v) && fabs(v) < whole_below && fabs(v) < 9e18) {
        char whole[32];
        snprintf(whole, sizeof whole, "%lld", (long long)v);
        return PyUnicode_FromString(whole);
    }
    char *text = PyOS_double_to_string(v, 'g', digits, 0, NULL);
    if (text == NULL)
        return NULL;
    PyObject *result = PyUnicode_FromString(text);
    PyMem_Free(text);
    return result;
}

/* The significant digits of formatting.number's style, 1 to 17 (-1 with an error raised). */
static int digits_of(PyObject *value, const char *who, int *digits)
{
    const long n = PyLong_AsLong(value);
    if (n == -1 && PyErr_Occurred())
        return -1;
    if (n < 1 || n > 17) {
        PyErr_Format(PyExc_ValueError, "%s: digits must be 1 to 17", who);
        return -1;
    }
    *digits = (int)n;
    return 0;
}

static PyObject *numbers(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 3) {
        PyErr_SetString(PyExc_TypeError,
                        "numbers(fallback, digits, whole_below, *values) takes 3 or more arguments");
        return NULL;
    }
    int digits;
    if (digits_of(args[1], "numbers", &digits) < 0)
        return NULL;
    const double whole_below = PyFloat_AsDouble(args[2]);
    if (whole_below == -1.0 && PyErr_Occurred())
        return NULL;
    PyObject *out = PyList_New(nargs - 3);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 3; i < nargs; i++) {
        PyObject *text = number_text(args[i], digits, whole_below, args[0]);
        if (text == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i - 3, text);
    }
    return out;
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

/* The address and element count of a (address, numel, third) call; -1 with a TypeError for
 * another number of arguments, or the conversion's error. */
static int address_and_count(const char *call, PyObject *const *args, Py_ssize_t nargs,
                             void **data, long long *n)
{
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "%s takes 3 arguments", call);
        return -1;
    }
    *data = PyLong_AsVoidPtr(args[0]);
    if (*data == NULL && PyErr_Occurred())
        return -1;
    *n = PyLong_AsLongLong(args[1]);
    if (*n == -1 && PyErr_Occurred())
        return -1;
    return 0;
}

static PyObject *float_stats(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    void *data = NULL;
    long long n = 0;
    if (address_and_count("float_stats(address, numel, itemsize)", args, nargs, &data, &n) < 0)
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
    static void NAME(const T *x, int64_t n, struct tracer_int_result *r)                   \
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
        r->sum = (double)sum;                                                              \
        r->lo = (long long)lo[0];                                                          \
        r->hi = (long long)hi[0];                                                          \
        r->nonzero = (long long)count;                                                     \
    }

INT_PASS(int_pass_i64, int64_t, double)
INT_PASS(int_pass_i32, int32_t, int64_t)
INT_PASS(int_pass_i16, int16_t, int64_t)
INT_PASS(int_pass_i8, int8_t, int64_t)
INT_PASS(int_pass_u8, uint8_t, int64_t)

/* The integer pass of one kind (TRACER_INT_*; a bool is read as its bytes, uint8) over n > 0
 * contiguous values at data: 0, or -1 for a kind it has no pass for. Touches no Python object:
 * tracer.core._probe calls it through the reduce_ints capsule. */
static int reduce_ints(const void *data, int64_t n, int kind, struct tracer_int_result *r)
{
    switch (kind) {
    case TRACER_INT_I64: int_pass_i64((const int64_t *)data, n, r); return 0;
    case TRACER_INT_I32: int_pass_i32((const int32_t *)data, n, r); return 0;
    case TRACER_INT_I16: int_pass_i16((const int16_t *)data, n, r); return 0;
    case TRACER_INT_I8: int_pass_i8((const int8_t *)data, n, r); return 0;
    case TRACER_INT_U8:
    case TRACER_INT_BOOL: int_pass_u8((const uint8_t *)data, n, r); return 0;
    default: return -1;
    }
}

static PyObject *int_stats(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    void *data = NULL;
    long long n = 0;
    if (address_and_count("int_stats(address, numel, kind)", args, nargs, &data, &n) < 0)
        return NULL;
    const char *kind = PyUnicode_AsUTF8(args[2]);
    if (kind == NULL)
        return NULL;
    if (n <= 0 || data == NULL) {
        PyErr_SetString(PyExc_ValueError, "int_stats needs a non-null address and numel > 0");
        return NULL;
    }
    static const char *const names[] = {"int64", "int32", "int16", "int8", "uint8"};
    static const int kinds[] = {TRACER_INT_I64, TRACER_INT_I32, TRACER_INT_I16, TRACER_INT_I8,
                                TRACER_INT_U8};
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        if (strcmp(kind, names[k]) == 0) {
            /* The GIL stays held, as in float_stats. */
            struct tracer_int_result r;
            reduce_ints(data, (int64_t)n, kinds[k], &r);
            return Py_BuildValue("(dLLL)", r.sum, r.lo, r.hi, r.nonzero);
        }
    }
    PyErr_Format(PyExc_ValueError, "int_stats: no pass for %s", kind);
    return NULL;
}

/* build_records(calls, step, stats, param_grads, ctx): the frozen records of one step's pending
 * calls, exactly as tracer.core.step_state._records builds them in Python (that function says
 * what each field is; this one is its compiled twin, held to it by tests/core/test_records_built.py).
 * ctx, made once by step_state: (TensorRecord, CallRecord, the 8 TensorRecord slot descriptors,
 * the 12 CallRecord ones, dtype names, device names, dtype_name, device_name, the interned
 * single records by role {"input": {}, "output": {}}, the intern limit, the empty statistics,
 * freeze_grads(grads, stats), param_grad_records(path)). */
typedef struct {
    PyTypeObject *tensor_cls, *call_cls;
    PyObject *tensor_set[8], *call_set[12];
    PyObject *dtype_names, *device_names, *dtype_name, *device_name;
    PyObject *interned_in, *interned_out;
    Py_ssize_t intern_limit;
    PyObject *no_stats, *freeze_grads, *param_grad_records;
    PyObject *stats;
    PyObject *role_in, *role_out, *kind_module, *kind_op;
} Builder;

/* Set slot ``d`` (a member descriptor) of a new frozen record: the descriptor's own setter,
 * which a frozen dataclass's __setattr__ does not stand in front of. Steals ``value``. */
static int set_slot(PyObject *d, PyObject *obj, PyObject *value)
{
    if (value == NULL)
        return -1;
    const int rc = Py_TYPE(d)->tp_descr_set(d, obj, value);
    Py_DECREF(value);
    return rc;
}

static PyObject *new_record(PyTypeObject *cls, PyObject *const *set, PyObject **values, int n)
{
    PyObject *obj = cls->tp_alloc(cls, 0);
    if (obj == NULL) {
        for (int i = 0; i < n; i++)
            Py_XDECREF(values[i]);
        return NULL;
    }
    int failed = 0;
    for (int i = 0; i < n; i++) {
        if (failed) {
            Py_XDECREF(values[i]);
        }
        else if (set_slot(set[i], obj, values[i]) < 0) {
            failed = 1;
        }
    }
    if (failed) {
        Py_DECREF(obj);
        return NULL;
    }
    return obj;
}

/* names[key], else name(key) (which caches it there); a new reference. */
static PyObject *name_of(PyObject *names, PyObject *name, PyObject *key)
{
    PyObject *found = PyDict_GetItemWithError(names, key);
    if (found != NULL) {
        Py_INCREF(found);
        return found;
    }
    if (PyErr_Occurred())
        return NULL;
    return PyObject_CallOneArg(name, key);
}

static PyObject *with_stats(Builder *b, PyObject *p, PyObject *role, PyObject *values)
{
    if (!PyTuple_CheckExact(p) || PyTuple_GET_SIZE(p) != 7) {
        PyErr_SetString(PyExc_TypeError, "build_records: a pending tensor is a 7-tuple");
        return NULL;
    }
    PyObject *shape = PyTuple_GET_ITEM(p, 1);
    PyObject *v[8];
    v[0] = Py_NewRef(PyTuple_GET_ITEM(p, 0));
    v[1] = PyTuple_CheckExact(shape) ? Py_NewRef(shape) : PySequence_Tuple(shape);
    v[2] = name_of(b->dtype_names, b->dtype_name, PyTuple_GET_ITEM(p, 2));
    v[3] = name_of(b->device_names, b->device_name, PyTuple_GET_ITEM(p, 3));
    v[4] = Py_NewRef(PyTuple_GET_ITEM(p, 4));
    v[5] = Py_NewRef(role);
    v[6] = Py_NewRef(PyTuple_GET_ITEM(p, 5));
    v[7] = Py_NewRef(values);
    if (v[1] == NULL || v[2] == NULL || v[3] == NULL) {
        for (int i = 0; i < 8; i++)
            Py_XDECREF(v[i]);
        return NULL;
    }
    return new_record(b->tensor_cls, b->tensor_set, v, 8);
}

/* stats(ref) as the record's statistics; a new reference. */
static PyObject *read_stats(Builder *b, PyObject *ref)
{
    return PyObject_CallOneArg(b->stats, ref);
}

static PyObject *interned_table(Builder *b, PyObject *role)
{
    return role == b->role_in ? b->interned_in : b->interned_out;
}

/* _tensor: one pending tensor's record. */
static PyObject *one_tensor(Builder *b, PyObject *p, PyObject *role)
{
    if (!PyTuple_CheckExact(p) || PyTuple_GET_SIZE(p) != 7) {
        PyErr_SetString(PyExc_TypeError, "build_records: a pending tensor is a 7-tuple");
        return NULL;
    }
    PyObject *ref = PyTuple_GET_ITEM(p, 6);
    if (ref != Py_None) {
        PyObject *values = read_stats(b, ref);
        if (values == NULL)
            return NULL;
        PyObject *record = with_stats(b, p, role, values);
        Py_DECREF(values);
        return record;
    }
    PyObject *single = PyDict_GetItemWithError(interned_table(b, role), p);
    if (single != NULL)
        return Py_NewRef(PyTuple_GET_ITEM(single, 0));
    if (PyErr_Occurred())
        return NULL;
    return with_stats(b, p, role, b->no_stats);
}

/* (item,): steals ``item`` (NULL passes through). */
static PyObject *tuple_of(PyObject *item)
{
    if (item == NULL)
        return NULL;
    PyObject *t = PyTuple_New(1);
    if (t == NULL) {
        Py_DECREF(item);
        return NULL;
    }
    PyTuple_SET_ITEM(t, 0, item);
    return t;
}

/* _freeze: the records of a call's inputs or outputs. */
static PyObject *freeze(Builder *b, PyObject *pending, PyObject *role, PyObject *ref)
{
    const int truth = PyObject_IsTrue(pending);
    if (truth < 0)
        return NULL;
    if (!truth)
        return PyTuple_New(0);
    if (PyTuple_CheckExact(pending)) { /* a single pending tensor */
        if (ref != Py_None) {
            PyObject *values = read_stats(b, ref);
            if (values == NULL)
                return NULL;
            PyObject *record = with_stats(b, pending, role, values);
            Py_DECREF(values);
            return tuple_of(record);
        }
        if (PyTuple_GET_SIZE(pending) == 7 && PyTuple_GET_ITEM(pending, 6) != Py_None)
            return tuple_of(one_tensor(b, pending, role));
        PyObject *table = interned_table(b, role);
        PyObject *single = PyDict_GetItemWithError(table, pending);
        if (single != NULL)
            return Py_NewRef(single);
        if (PyErr_Occurred())
            return NULL;
        single = tuple_of(with_stats(b, pending, role, b->no_stats));
        if (single == NULL)
            return NULL;
        if (PyDict_GET_SIZE(table) < b->intern_limit && PyDict_SetItem(table, pending, single) < 0) {
            Py_DECREF(single);
            return NULL;
        }
        return single;
    }
    PyObject *items = PySequence_Fast(pending, "build_records: pending tensors are a list");
    if (items == NULL)
        return NULL;
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(items);
    PyObject *out = PyTuple_New(n);
    if (out == NULL) {
        Py_DECREF(items);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *record = one_tensor(b, PySequence_Fast_GET_ITEM(items, i), role);
        if (record == NULL) {
            Py_DECREF(items);
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(out, i, record);
    }
    Py_DECREF(items);
    return out;
}

static int builder_from(Builder *b, PyObject *ctx, PyObject *stats)
{
    if (!PyTuple_CheckExact(ctx) || PyTuple_GET_SIZE(ctx) != 18) {
        PyErr_SetString(PyExc_TypeError, "build_records: ctx is step_state's 18-tuple");
        return -1;
    }
    PyObject *tcls = PyTuple_GET_ITEM(ctx, 0), *ccls = PyTuple_GET_ITEM(ctx, 1);
    PyObject *tset = PyTuple_GET_ITEM(ctx, 2), *cset = PyTuple_GET_ITEM(ctx, 3);
    if (!PyType_Check(tcls) || !PyType_Check(ccls) || !PyTuple_CheckExact(tset) ||
        PyTuple_GET_SIZE(tset) != 8 || !PyTuple_CheckExact(cset) || PyTuple_GET_SIZE(cset) != 12) {
        PyErr_SetString(PyExc_TypeError, "build_records: bad record classes or slots");
        return -1;
    }
    b->tensor_cls = (PyTypeObject *)tcls;
    b->call_cls = (PyTypeObject *)ccls;
    for (int i = 0; i < 8; i++) {
        b->tensor_set[i] = PyTuple_GET_ITEM(tset, i);
        if (Py_TYPE(b->tensor_set[i])->tp_descr_set == NULL)
            goto bad_slot;
    }
    for (int i = 0; i < 12; i++) {
        b->call_set[i] = PyTuple_GET_ITEM(cset, i);
        if (Py_TYPE(b->call_set[i])->tp_descr_set == NULL)
            goto bad_slot;
    }
    b->dtype_names = PyTuple_GET_ITEM(ctx, 4);
    b->device_names = PyTuple_GET_ITEM(ctx, 5);
    b->dtype_name = PyTuple_GET_ITEM(ctx, 6);
    b->device_name = PyTuple_GET_ITEM(ctx, 7);
    b->interned_in = PyTuple_GET_ITEM(ctx, 8);
    b->interned_out = PyTuple_GET_ITEM(ctx, 9);
    b->intern_limit = PyLong_AsSsize_t(PyTuple_GET_ITEM(ctx, 10));
    if (b->intern_limit == -1 && PyErr_Occurred())
        return -1;
    b->no_stats = PyTuple_GET_ITEM(ctx, 11);
    b->freeze_grads = PyTuple_GET_ITEM(ctx, 12);
    b->param_grad_records = PyTuple_GET_ITEM(ctx, 13);
    b->role_in = PyTuple_GET_ITEM(ctx, 14);
    b->role_out = PyTuple_GET_ITEM(ctx, 15);
    b->kind_module = PyTuple_GET_ITEM(ctx, 16);
    b->kind_op = PyTuple_GET_ITEM(ctx, 17);
    if (!PyDict_CheckExact(b->dtype_names) || !PyDict_CheckExact(b->device_names) ||
        !PyDict_CheckExact(b->interned_in) || !PyDict_CheckExact(b->interned_out)) {
        PyErr_SetString(PyExc_TypeError, "build_records: names and interned tables are dicts");
        return -1;
    }
    b->stats = stats;
    return 0;
bad_slot:
    PyErr_SetString(PyExc_TypeError, "build_records: a record slot has no setter");
    return -1;
}

static PyObject *build_call(Builder *b, PyObject *call, Py_ssize_t seq, PyObject *step,
                            PyObject *counts, PyObject *param_grads)
{
    if (!PyList_CheckExact(call) || PyList_GET_SIZE(call) != 9) {
        PyErr_SetString(PyExc_TypeError, "build_records: a pending call is a 9-item list");
        return NULL;
    }
    PyObject *info = PyList_GET_ITEM(call, 0);
    if (!PyTuple_CheckExact(info) || PyTuple_GET_SIZE(info) != 3) {
        PyErr_SetString(PyExc_TypeError, "build_records: a call's info is (path, type, depth)");
        return NULL;
    }
    PyObject *path = PyTuple_GET_ITEM(info, 0);
    PyObject *op = PyList_GET_ITEM(call, 6);
    PyObject *key = op == Py_None ? Py_NewRef(path) : PyTuple_Pack(2, path, op);
    if (key == NULL)
        return NULL;
    PyObject *seen = PyDict_GetItemWithError(counts, key);
    Py_ssize_t index = 0;
    if (seen != NULL) {
        index = PyLong_AsSsize_t(seen);
    }
    else if (PyErr_Occurred()) {
        Py_DECREF(key);
        return NULL;
    }
    PyObject *next = PyLong_FromSsize_t(index + 1);
    if (next == NULL || PyDict_SetItem(counts, key, next) < 0) {
        Py_XDECREF(next);
        Py_DECREF(key);
        return NULL;
    }
    Py_DECREF(next);
    Py_DECREF(key);
    PyObject *grads = PyList_GET_ITEM(call, 5);
    const int has_grads = grads == Py_None ? 0 : PyObject_IsTrue(grads);
    if (has_grads < 0)
        return NULL;
    PyObject *frozen;
    if (has_grads) {
        frozen = PyObject_CallFunctionObjArgs(b->freeze_grads, grads, b->stats, NULL);
    }
    else {
        frozen = PyTuple_New(0);
    }
    if (frozen == NULL)
        return NULL;
    if (index == 0 && op == Py_None && PyDict_GET_SIZE(param_grads) > 0) {
        const int has = PyDict_Contains(param_grads, path);
        if (has < 0) {
            Py_DECREF(frozen);
            return NULL;
        }
        if (has) {
            PyObject *more = PyObject_CallOneArg(b->param_grad_records, path);
            PyObject *joined = more == NULL ? NULL : PySequence_Concat(frozen, more);
            Py_XDECREF(more);
            Py_DECREF(frozen);
            if (joined == NULL)
                return NULL;
            frozen = joined;
        }
    }
    PyObject *v[12];
    v[0] = Py_NewRef(step);
    v[1] = PyLong_FromSsize_t(seq);
    v[2] = Py_NewRef(path);
    v[3] = Py_NewRef(PyTuple_GET_ITEM(info, 1));
    v[4] = PyLong_FromSsize_t(index);
    v[5] = Py_NewRef(op == Py_None ? b->kind_module : b->kind_op);
    v[6] = Py_NewRef(op);
    v[7] = freeze(b, PyList_GET_ITEM(call, 1), b->role_in, PyList_GET_ITEM(call, 7));
    v[8] = v[7] == NULL ? NULL : freeze(b, PyList_GET_ITEM(call, 2), b->role_out,
                                        PyList_GET_ITEM(call, 8));
    v[9] = frozen;
    v[10] = Py_NewRef(PyList_GET_ITEM(call, 4));
    v[11] = Py_NewRef(PyTuple_GET_ITEM(info, 2));
    for (int i = 0; i < 12; i++) {
        if (v[i] == NULL) {
            for (int j = 0; j < 12; j++)
                Py_XDECREF(v[j]);
            return NULL;
        }
    }
    return new_record(b->call_cls, b->call_set, v, 12);
}

static PyObject *build_records(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "build_records(calls, step, stats, param_grads, ctx) takes 5 arguments");
        return NULL;
    }
    PyObject *calls = args[0], *step = args[1], *param_grads = args[3];
    if (!PyList_CheckExact(calls) || !PyDict_Check(param_grads)) {
        PyErr_SetString(PyExc_TypeError, "build_records: calls is a list, param_grads a dict");
        return NULL;
    }
    Builder b;
    if (builder_from(&b, args[4], args[2]) < 0)
        return NULL;
    PyObject *counts = PyDict_New();
    if (counts == NULL)
        return NULL;
    const Py_ssize_t n = PyList_GET_SIZE(calls);
    PyObject *out = PyList_New(n);
    if (out == NULL) {
        Py_DECREF(counts);
        return NULL;
    }
    for (Py_ssize_t seq = 0; seq < n; seq++) {
        PyObject *record = build_call(&b, PyList_GET_ITEM(calls, seq), seq, step, counts,
                                      param_grads);
        if (record == NULL) {
            Py_DECREF(out);
            Py_DECREF(counts);
            return NULL;
        }
        PyList_SET_ITEM(out, seq, record);
    }
    Py_DECREF(counts);
    return out;
}

/* kernel_stats(vector, at): tracer.core.stats.stats_from_kernel compiled, the same dict from
 * the same arithmetic (each value a double, every operation the one Python makes, in its order).
 * ``vector`` is an array('d') (read through its buffer) or any sequence of floats. */
static int read_vector(PyObject *v, Py_ssize_t at, double *out)
{
    if (at < 0) {
        PyErr_SetString(PyExc_IndexError, "kernel_stats: a negative position");
        return -1;
    }
    if (PyObject_CheckBuffer(v) && !PyBytes_Check(v) && !PyByteArray_Check(v)) {
        Py_buffer view;
        if (PyObject_GetBuffer(v, &view, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0)
            return -1;
        const int fits = view.itemsize == (Py_ssize_t)sizeof(double) && view.format != NULL &&
                         strcmp(view.format, "d") == 0 &&
                         (at + TRACER_STAT_SIZE) * (Py_ssize_t)sizeof(double) <= view.len;
        if (fits)
            memcpy(out, (const double *)view.buf + at, sizeof(double) * TRACER_STAT_SIZE);
        PyBuffer_Release(&view);
        if (fits)
            return 0;
        PyErr_SetString(PyExc_ValueError, "kernel_stats: not a double buffer holding the vector");
        return -1;
    }
    PyObject *items = PySequence_Fast(v, "kernel_stats: the vector is a sequence of floats");
    if (items == NULL)
        return -1;
    if (at + TRACER_STAT_SIZE > PySequence_Fast_GET_SIZE(items)) {
        Py_DECREF(items);
        PyErr_SetString(PyExc_IndexError, "kernel_stats: the vector ends too early");
        return -1;
    }
    for (int i = 0; i < TRACER_STAT_SIZE; i++) {
        out[i] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(items, at + i));
        if (out[i] == -1.0 && PyErr_Occurred()) {
            Py_DECREF(items);
            return -1;
        }
    }
    Py_DECREF(items);
    return 0;
}

/* Python's int(x) of a double count (finite, exact: counts are whole numbers below 2**53). */
static PyObject *count_of(double x) { return PyLong_FromDouble(x); }

static int put(PyObject *d, const char *key, PyObject *value)
{
    if (value == NULL)
        return -1;
    const int rc = PyDict_SetItemString(d, key, value);
    Py_DECREF(value);
    return rc;
}

static PyObject *kernel_stats(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "kernel_stats(vector, at=0) takes 1 or 2 arguments");
        return NULL;
    }
    Py_ssize_t at = 0;
    if (nargs == 2) {
        at = PyLong_AsSsize_t(args[1]);
        if (at == -1 && PyErr_Occurred())
            return NULL;
    }
    double v[TRACER_STAT_SIZE];
    if (read_vector(args[0], at, v) < 0)
        return NULL;
    const double numel = v[TRACER_STAT_NUMEL], finite = v[TRACER_STAT_FINITE];
    const double nans = v[TRACER_STAT_NAN];
    if (!isfinite(numel) || !isfinite(finite) || !isfinite(nans)) {
        PyErr_SetString(PyExc_ValueError, "kernel_stats: a count is not finite");
        return NULL;
    }
    /* n, m, nans as Python ints, then every expression as Python evaluates it */
    const double n = trunc(numel), m = trunc(finite), k = trunc(nans);
    PyObject *d = PyDict_New();
    if (d == NULL)
        return NULL;
    if (m == 0) {
        if (put(d, "numel", count_of(n)) < 0 || put(d, "nan_count", count_of(k)) < 0 ||
            put(d, "inf_count", count_of(n - k)) < 0) {
            Py_DECREF(d);
            return NULL;
        }
        return d;
    }
    const double std = m > 1 ? v[TRACER_STAT_SPREAD] / sqrt(m - 1) : 0.0;
    if (put(d, "numel", count_of(n)) < 0 || put(d, "nan_count", count_of(k)) < 0 ||
        put(d, "inf_count", count_of(n - m - k)) < 0 ||
        put(d, "mean", PyFloat_FromDouble(v[TRACER_STAT_SUM] / m)) < 0 ||
        put(d, "std", PyFloat_FromDouble(std)) < 0 ||
        put(d, "min", PyFloat_FromDouble(v[TRACER_STAT_MIN])) < 0 ||
        put(d, "max", PyFloat_FromDouble(v[TRACER_STAT_MAX])) < 0 ||
        put(d, "abs_mean", PyFloat_FromDouble(v[TRACER_STAT_L1] / m)) < 0 ||
        put(d, "l2", PyFloat_FromDouble(v[TRACER_STAT_L2])) < 0 ||
        put(d, "zero_frac", PyFloat_FromDouble((m - v[TRACER_STAT_NONZERO]) / m)) < 0 ||
        put(d, "near_zero_frac", PyFloat_FromDouble(v[TRACER_STAT_NEAR_ZERO] / m)) < 0 ||
        put(d, "near_one_frac", PyFloat_FromDouble(v[TRACER_STAT_NEAR_ONE] / m)) < 0) {
        Py_DECREF(d);
        return NULL;
    }
    return d;
}

/* plain_state(state): tracer.core.module_records._plain_state compiled. The entries of a
 * module's __dict__ whose values are plain (exactly int, float, bool, str or None, or a tuple of
 * exactly ints), and "_parameters" as a new dict of which parameters are set (None or True). */
static int plain_value(PyObject *v)
{
    if (v == Py_None || PyLong_CheckExact(v) || PyFloat_CheckExact(v) || PyBool_Check(v) ||
        PyUnicode_CheckExact(v))
        return 1;
    if (!PyTuple_CheckExact(v))
        return 0;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(v); i++) {
        if (!PyLong_CheckExact(PyTuple_GET_ITEM(v, i)))
            return 0;
    }
    return 1;
}

static PyObject *plain_state(PyObject *module, PyObject *state)
{
    (void)module;
    if (!PyDict_CheckExact(state)) {
        PyErr_SetString(PyExc_TypeError, "plain_state: a module's __dict__");
        return NULL;
    }
    PyObject *params = PyDict_GetItemString(state, "_parameters"); /* borrowed */
    if (params == NULL || !PyDict_Check(params)) {
        PyErr_SetString(PyExc_TypeError, "plain_state: no _parameters dict");
        return NULL;
    }
    PyObject *plain = PyDict_New();
    PyObject *set = PyDict_New();
    if (plain == NULL || set == NULL)
        goto fail;
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(state, &pos, &key, &value)) {
        if (plain_value(value) && PyDict_SetItem(plain, key, value) < 0)
            goto fail;
    }
    pos = 0;
    while (PyDict_Next(params, &pos, &key, &value)) {
        if (PyDict_SetItem(set, key, value == Py_None ? Py_None : Py_True) < 0)
            goto fail;
    }
    if (PyDict_SetItemString(plain, "_parameters", set) < 0)
        goto fail;
    Py_DECREF(set);
    return plain;
fail:
    Py_XDECREF(plain);
    Py_XDECREF(set);
    return NULL;
}

/* For tracer.core._probe, which reads the address from the C++ tensor itself (and may split a big
 * tensor over torch's threads): the reduction behind float_stats, through a capsule (the C API
 * of this module). It touches no Python object; the caller guarantees data != NULL, n > 0,
 * itemsize 4 or 8, and keeps the memory alive. */
typedef void (*reduce_fn)(const void *, int64_t, int, double *);
/* And the integer pass behind int_stats (reduce_ints above), through a second one. */
typedef int (*reduce_ints_fn)(const void *, int64_t, int, struct tracer_int_result *);

/* walk_modules(model, named_modules) -> list(model.named_modules()) where every class has
 * nn.Module's own named_modules (``named_modules``, that function), else None (the caller then
 * asks the model itself): tracer.core.trace.named_modules compiled. Depth first, children in
 * their ``_modules`` order, each module once (where first met; membership as a set decides it,
 * as torch's memo does), None entries skipped. Also None where a ``_modules`` is not a dict. */
struct walk_frame {
    PyObject *prefix; /* the children's path so far ("<path>."), or NULL at the root */
    PyObject *children;
    Py_ssize_t pos;
};

static void pop_frame(struct walk_frame *frame)
{
    Py_XDECREF(frame->prefix);
    Py_DECREF(frame->children);
}

static PyObject *child_modules(PyObject *module, PyObject *name_attr)
{
    PyObject *children = PyObject_GetAttr(module, name_attr);
    if (children != NULL && !PyDict_CheckExact(children)) {
        Py_DECREF(children);
        return Py_NewRef(Py_None);
    }
    return children;
}

static int own_named_modules(PyObject *module, PyObject *expected, PyObject *name_attr)
{
    PyObject *found = PyObject_GetAttr((PyObject *)Py_TYPE(module), name_attr);
    if (found == NULL)
        return -1;
    const int same = found == expected;
    Py_DECREF(found);
    return same;
}

static PyObject *walk_modules(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    static PyObject *modules_attr = NULL, *named_attr = NULL, *empty = NULL, *dot = NULL;
    if (modules_attr == NULL) {
        modules_attr = PyUnicode_InternFromString("_modules");
        named_attr = PyUnicode_InternFromString("named_modules");
        empty = PyUnicode_InternFromString("");
        dot = PyUnicode_InternFromString(".");
        if (modules_attr == NULL || named_attr == NULL || empty == NULL || dot == NULL)
            return NULL;
    }
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "walk_modules(model, named_modules)");
        return NULL;
    }
    PyObject *model = args[0], *expected = args[1];
    PyObject *found = PyList_New(0), *memo = PySet_New(NULL);
    struct walk_frame *stack = NULL;
    Py_ssize_t depth = 0, room = 0;
    PyObject *result = NULL;
    if (found == NULL || memo == NULL)
        goto done;
    int own = own_named_modules(model, expected, named_attr);
    if (own <= 0) {
        result = own < 0 ? NULL : Py_NewRef(Py_None);
        goto done;
    }
    PyObject *root = PyTuple_Pack(2, empty, model);
    if (root == NULL || PyList_Append(found, root) < 0) {
        Py_XDECREF(root);
        goto done;
    }
    Py_DECREF(root);
    PyObject *children = child_modules(model, modules_attr);
    if (children == NULL)
        goto done;
    if (children == Py_None) {
        Py_DECREF(children);
        result = Py_NewRef(Py_None);
        goto done;
    }
    if (PyDict_GET_SIZE(children) == 0) {
        Py_DECREF(children);
        result = Py_NewRef(found);
        goto done;
    }
    if (PySet_Add(memo, model) < 0) {
        Py_DECREF(children);
        goto done;
    }
    room = 16;
    stack = PyMem_Malloc(room * sizeof *stack);
    if (stack == NULL) {
        Py_DECREF(children);
        PyErr_NoMemory();
        goto done;
    }
    stack[depth++] = (struct walk_frame){NULL, children, 0};
    while (depth > 0) {
        struct walk_frame *top = &stack[depth - 1];
        PyObject *name, *child;
        int descended = 0;
        while (!descended && PyDict_Next(top->children, &top->pos, &name, &child)) {
            if (child == Py_None)
                continue;
            Py_INCREF(child); /* held while Python code (a hash, an attribute) may run */
            Py_INCREF(name);
            PyObject *path = NULL, *pair = NULL, *grand = NULL;
            int ok = 0, skip = 0;
            own = own_named_modules(child, expected, named_attr);
            if (own == 0) { /* a class of its own: the model is asked */
                Py_DECREF(child);
                Py_DECREF(name);
                result = Py_NewRef(Py_None);
                goto done;
            }
            int seen = own < 0 ? -1 : PySet_Contains(memo, child);
            if (seen > 0) {
                skip = 1;
            }
            else if (seen == 0 && PySet_Add(memo, child) == 0) {
                path = top->prefix == NULL ? Py_NewRef(name) : PyUnicode_Concat(top->prefix, name);
                pair = path != NULL ? PyTuple_Pack(2, path, child) : NULL;
                grand = pair != NULL && PyList_Append(found, pair) == 0
                            ? child_modules(child, modules_attr)
                            : NULL;
                ok = grand != NULL;
            }
            Py_DECREF(child);
            Py_DECREF(name);
            Py_XDECREF(pair);
            if (skip)
                continue;
            if (!ok) {
                Py_XDECREF(path);
                goto done;
            }
            if (grand == Py_None) {
                Py_DECREF(grand);
                Py_DECREF(path);
                result = Py_NewRef(Py_None);
                goto done;
            }
            if (PyDict_GET_SIZE(grand) == 0) {
                Py_DECREF(grand);
                Py_DECREF(path);
                continue;
            }
            if (depth == room) { /* its subtree next, then the rest of these children */
                struct walk_frame *grown = PyMem_Realloc(stack, 2 * room * sizeof *stack);
                if (grown == NULL) {
                    Py_DECREF(grand);
                    Py_DECREF(path);
                    PyErr_NoMemory();
                    goto done;
                }
                stack = grown, room *= 2;
                top = &stack[depth - 1];
            }
            PyObject *prefix = PyUnicode_Concat(path, dot);
            Py_DECREF(path);
            if (prefix == NULL) {
                Py_DECREF(grand);
                goto done;
            }
            stack[depth++] = (struct walk_frame){prefix, grand, 0};
            descended = 1;
        }
        if (!descended)
            pop_frame(&stack[--depth]);
    }
    result = Py_NewRef(found);
done:
    while (depth > 0)
        pop_frame(&stack[--depth]);
    PyMem_Free(stack);
    Py_XDECREF(found);
    Py_XDECREF(memo);
    return result;
}

/* ---- The summary's table: tracer.summary_table._lay_out and _text, compiled ----------------
 *
 * A summary is printed once, mostly for small models, where laying out and writing its table in
 * Python cost as much as the traced forward. These are the two functions' compiled twins, held to
 * them by tests/core/test_summary.py (the same text for any records, hostile ones included):
 * every text that is escaped, measured in terminal cells or formatted in an unusual way is still
 * made by the Python functions they are handed (a text or shape not cached yet, a count, a line
 * of wide characters; table_text leaves a table with a line beyond ASCII to _text), so the two
 * cannot drift apart in what they show. */

static PyObject *t_kind, *t_depth, *t_op, *t_module, *t_type, *t_call_index, *t_inputs,
    *t_outputs, *t_slot, *t_dtype, *t_shape, *t_stats, *t_type_name, *t_device, *t_get, *t_mean,
    *t_std, *t_min, *t_max, *t_true_frac, *t_kind_op, *t_kind_module, *t_slot_zero, *t_empty,
    *t_indent, *t_newline, *t_zero, *t_rpartition, *t_dot, *t_is_tensor;

static int intern_table_names(void)
{
    static const char *const names[] = {
        "kind", "depth", "op", "module", "type", "call_index", "inputs", "outputs", "slot",
        "dtype", "shape", "stats", "type_name", "device", "get", "mean", "std", "min", "max",
        "true_frac", "op", "module", "0", "", "  ", "\n", NULL, "rpartition", ".", "is_tensor"};
    PyObject **slots[] = {
        &t_kind, &t_depth, &t_op, &t_module, &t_type, &t_call_index, &t_inputs, &t_outputs,
        &t_slot, &t_dtype, &t_shape, &t_stats, &t_type_name, &t_device, &t_get, &t_mean, &t_std,
        &t_min, &t_max, &t_true_frac, &t_kind_op, &t_kind_module, &t_slot_zero, &t_empty,
        &t_indent, &t_newline, &t_zero, &t_rpartition, &t_dot, &t_is_tensor};
    for (size_t i = 0; i < sizeof slots / sizeof slots[0]; i++) {
        *slots[i] = names[i] == NULL ? PyLong_FromLong(0) : PyUnicode_InternFromString(names[i]);
        if (*slots[i] == NULL)
            return -1;
    }
    return 0;
}

/* What _lay_out is handed once (summary_table._TABLE_CONTEXT). */
typedef struct {
    PyObject *literals, *literal, *shape_texts, *shape_label, *count, *cells_of;
    PyObject *fallback, *head_widths;
    int digits;
    double whole_below;
} TableContext;

static int table_context(PyObject *ctx, TableContext *c)
{
    if (!PyTuple_Check(ctx) || PyTuple_GET_SIZE(ctx) != 10) {
        PyErr_SetString(PyExc_TypeError, "lay_out: the context is a tuple of 10");
        return -1;
    }
    c->literals = PyTuple_GET_ITEM(ctx, 0);
    c->literal = PyTuple_GET_ITEM(ctx, 1);
    c->shape_texts = PyTuple_GET_ITEM(ctx, 2);
    c->shape_label = PyTuple_GET_ITEM(ctx, 3);
    c->count = PyTuple_GET_ITEM(ctx, 4);
    c->cells_of = PyTuple_GET_ITEM(ctx, 5);
    c->fallback = PyTuple_GET_ITEM(ctx, 6);
    if (digits_of(PyTuple_GET_ITEM(ctx, 7), "lay_out", &c->digits) < 0)
        return -1;
    c->whole_below = PyFloat_AsDouble(PyTuple_GET_ITEM(ctx, 8));
    if (c->whole_below == -1.0 && PyErr_Occurred())
        return -1;
    c->head_widths = PyTuple_GET_ITEM(ctx, 9);
    if (!PyDict_CheckExact(c->literals) || !PyDict_CheckExact(c->shape_texts) ||
        !PyTuple_Check(c->head_widths)) {
        PyErr_SetString(PyExc_TypeError, "lay_out: the caches are dicts, the widths a tuple");
        return -1;
    }
    return 0;
}

/* _literal(value): the cached text where there is one, else the Python function's. */
static PyObject *shown(TableContext *c, PyObject *value)
{
    if (PyUnicode_CheckExact(value)) {
        PyObject *found = PyDict_GetItemWithError(c->literals, value);
        if (found != NULL)
            return Py_NewRef(found);
        if (PyErr_Occurred())
            return NULL;
    }
    return PyObject_CallOneArg(c->literal, value);
}

/* _literal(obj.<name>). */
static PyObject *shown_attr(TableContext *c, PyObject *obj, PyObject *name)
{
    PyObject *value = PyObject_GetAttr(obj, name);
    PyObject *text = value == NULL ? NULL : shown(c, value);
    Py_XDECREF(value);
    return text;
}

/* _literal(record.dtype or record.type_name), ``dtype`` being the record's. */
static PyObject *dtype_text(TableContext *c, PyObject *record, PyObject *dtype)
{
    const int typed = PyObject_IsTrue(dtype);
    if (typed < 0)
        return NULL;
    return typed ? shown(c, dtype) : shown_attr(c, record, t_type_name);
}

/* ``mapping.get(key)`` of a dict, or of anything else through its own ``get``. */
static PyObject *get_of(PyObject *mapping, PyObject *get, PyObject *key)
{
    if (PyDict_CheckExact(mapping)) {
        PyObject *found = PyDict_GetItemWithError(mapping, key);
        if (found != NULL)
            return Py_NewRef(found);
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    }
    return PyObject_CallOneArg(get, key);
}

/* ``a == b`` as Python answers it (-1 on error). */
static int same(PyObject *a, PyObject *b) { return PyObject_RichCompareBool(a, b, Py_EQ); }

/* A row's label: indent, then the op, the module's last name and type (and call), or the type. */
static PyObject *row_label(TableContext *c, PyObject *call, PyObject *module,
                           PyObject *call_index, int is_op)
{
    PyObject *label = NULL, *indent = NULL, *depth = PyObject_GetAttr(call, t_depth);
    if (depth == NULL)
        return NULL;
    indent = PyNumber_Multiply(t_indent, depth);
    Py_DECREF(depth);
    if (indent == NULL)
        return NULL;
    if (is_op) {
        PyObject *op = PyObject_GetAttr(call, t_op), *text = NULL;
        int truthy = op == NULL ? -1 : PyObject_IsTrue(op);
        if (truthy >= 0)
            text = shown(c, truthy ? op : t_empty);
        Py_XDECREF(op);
        if (text != NULL)
            label = PyUnicode_Concat(indent, text);
        Py_XDECREF(text);
        Py_DECREF(indent);
        return label;
    }
    PyObject *type_text = shown_attr(c, call, t_type);
    int named = type_text == NULL ? -1 : PyObject_IsTrue(module);
    if (named == 0) {
        label = PyUnicode_Concat(indent, type_text);
    }
    else if (named > 0) {
        PyObject *parts = PyObject_CallMethodOneArg(module, t_rpartition, t_dot), *name = NULL;
        if (parts != NULL && PyTuple_Check(parts) && PyTuple_GET_SIZE(parts) == 3)
            name = shown(c, PyTuple_GET_ITEM(parts, 2));
        else if (parts != NULL)
            PyErr_SetString(PyExc_TypeError, "lay_out: rpartition gave no triple");
        Py_XDECREF(parts);
        if (name != NULL) {
            int numbered = PyObject_IsTrue(call_index);
            if (numbered > 0)
                label = PyUnicode_FromFormat("%U%U (%U) #%S", indent, name, type_text, call_index);
            else if (numbered == 0)
                label = PyUnicode_FromFormat("%U%U (%U)", indent, name, type_text);
            Py_DECREF(name);
        }
    }
    Py_XDECREF(type_text);
    Py_DECREF(indent);
    return label;
}

/* _shapes(records, usual_dtype): one line per record, "slot: shape" (a tensor's shape, with
 * its dtype where that differs from ``usual``; an object's type name), or the shape alone for
 * one unnamed record. ``usual``: NULL for None. */
static PyObject *shapes_text(TableContext *c, PyObject *records, PyObject *usual)
{
    PyObject *seq = PySequence_Fast(records, "lay_out: records are a sequence");
    if (seq == NULL)
        return NULL;
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *lines = PyList_New(0), *result = NULL;
    if (lines == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *r = PySequence_Fast_GET_ITEM(seq, i), *label = NULL;
        PyObject *dtype = PyObject_GetAttr(r, t_dtype);
        if (dtype == NULL)
            goto done;
        int tensor = PyObject_RichCompareBool(dtype, t_empty, Py_NE);
        if (tensor > 0) {
            PyObject *shape = PyObject_GetAttr(r, t_shape);
            if (shape != NULL) {
                label = PyDict_GetItemWithError(c->shape_texts, shape);
                if (label != NULL)
                    Py_INCREF(label);
                else if (!PyErr_Occurred())
                    label = PyObject_CallOneArg(c->shape_label, shape);
                Py_DECREF(shape);
            }
            int differs = label == NULL || usual == NULL ? 0
                                                           : PyObject_RichCompareBool(dtype, usual, Py_NE);
            if (differs < 0) {
                Py_CLEAR(label);
            }
            else if (differs > 0) {
                PyObject *named = shown(c, dtype);
                Py_SETREF(label, named == NULL ? NULL : PyUnicode_FromFormat("%U %U", label, named));
                Py_XDECREF(named);
            }
        }
        else if (tensor == 0) {
            label = shown_attr(c, r, t_type_name);
        }
        Py_DECREF(dtype);
        if (label == NULL)
            goto done;
        PyObject *slot = PyObject_GetAttr(r, t_slot);
        if (slot == NULL) {
            Py_DECREF(label);
            goto done;
        }
        int alone = n == 1 ? same(slot, t_slot_zero) : 0;
        if (alone != 0) {
            Py_DECREF(slot);
            if (alone > 0)
                result = label;
            else
                Py_DECREF(label);
            goto done;
        }
        PyObject *slot_text = shown(c, slot);
        Py_DECREF(slot);
        PyObject *line = slot_text == NULL ? NULL : PyUnicode_FromFormat("%U: %U", slot_text, label);
        Py_XDECREF(slot_text);
        Py_DECREF(label);
        if (line == NULL || PyList_Append(lines, line) < 0) {
            Py_XDECREF(line);
            goto done;
        }
        Py_DECREF(line);
    }
    result = PyUnicode_Join(t_newline, lines);
done:
    Py_XDECREF(lines);
    Py_DECREF(seq);
    return result;
}

/* known.get(shape) where it is a non-empty text, else shapes(records[, dtype]). */
static PyObject *shape_cell(TableContext *c, PyObject *record, PyObject *records, PyObject *dtype)
{
    if (record != NULL) {
        PyObject *shape = PyObject_GetAttr(record, t_shape);
        if (shape == NULL)
            return NULL;
        PyObject *found = PyDict_GetItemWithError(c->shape_texts, shape);
        Py_DECREF(shape);
        if (found != NULL) {
            int truthy = PyObject_IsTrue(found);
            if (truthy < 0)
                return NULL;
            if (truthy)
                return Py_NewRef(found);
        }
        else if (PyErr_Occurred()) {
            return NULL;
        }
    }
    return shapes_text(c, records, dtype);
}

/* A record's mean (a bool tensor's share of True), std, min and max cells, into cells[0..3]. */
static int stat_cells(TableContext *c, PyObject *record, PyObject **cells)
{
    int ok = -1;
    PyObject *get = NULL, *values[4] = {NULL, NULL, NULL, NULL};
    PyObject *stats = PyObject_GetAttr(record, t_stats);
    if (stats == NULL)
        return -1;
    if (!PyDict_CheckExact(stats)) {
        get = PyObject_GetAttr(stats, t_get);
        if (get == NULL)
            goto done;
    }
    PyObject *keys[4] = {t_mean, t_std, t_min, t_max};
    for (int i = 0; i < 4; i++) {
        values[i] = get_of(stats, get, keys[i]);
        if (values[i] == NULL)
            goto done;
    }
    if (values[0] == Py_None) {  /* bool tensors: the share of True */
        Py_DECREF(values[0]);
        values[0] = get_of(stats, get, t_true_frac);
        if (values[0] == NULL)
            goto done;
    }
    for (int i = 0; i < 4; i++) {
        cells[i] = number_text(values[i], c->digits, c->whole_below, c->fallback);
        if (cells[i] == NULL)
            goto done;
    }
    ok = 0;
done:
    for (int i = 0; i < 4; i++)
        Py_XDECREF(values[i]);
    Py_DECREF(stats);
    Py_XDECREF(get);
    return ok;
}

/* The cells after label and params of a call of several outputs (or none): the tensors among
 * them (all of them where none is a tensor), one line each. */
static int other_cells(TableContext *c, PyObject *inputs, PyObject *outputs, PyObject **cells)
{
    int ok = -1;
    PyObject *all = PySequence_Fast(outputs, "lay_out: outputs are a sequence");
    if (all == NULL)
        return -1;
    PyObject *shown_list = PyList_New(0), *columns[6] = {NULL};
    if (shown_list == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(all); i++) {
        PyObject *r = PySequence_Fast_GET_ITEM(all, i);
        PyObject *is_tensor = PyObject_GetAttr(r, t_is_tensor);
        int yes = is_tensor == NULL ? -1 : PyObject_IsTrue(is_tensor);
        Py_XDECREF(is_tensor);
        if (yes < 0 || (yes && PyList_Append(shown_list, r) < 0))
            goto done;
    }
    if (PyList_GET_SIZE(shown_list) == 0)
        Py_SETREF(shown_list, PySequence_List(all));
    if (shown_list == NULL)
        goto done;
    const Py_ssize_t n = PyList_GET_SIZE(shown_list);
    PyObject *usual = t_empty;
    PyObject *first_dtype = NULL;
    if (n > 0) {
        first_dtype = PyObject_GetAttr(PyList_GET_ITEM(shown_list, 0), t_dtype);
        if (first_dtype == NULL)
            goto done;
        usual = first_dtype;
    }
    cells[0] = shapes_text(c, inputs, usual);
    Py_XDECREF(first_dtype);
    if (cells[0] == NULL)
        goto done;
    cells[1] = shapes_text(c, outputs, NULL);
    if (cells[1] == NULL)
        goto done;
    /* per column (dtype, device, mean, std, min, max): one line per shown record */
    for (int k = 0; k < 6; k++) {
        columns[k] = PyList_New(n);
        if (columns[k] == NULL)
            goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *r = PyList_GET_ITEM(shown_list, i), *dtype = PyObject_GetAttr(r, t_dtype);
        PyObject *named = dtype == NULL ? NULL : dtype_text(c, r, dtype);
        Py_XDECREF(dtype);
        if (named == NULL)
            goto done;
        PyList_SET_ITEM(columns[0], i, named);
        PyObject *where = shown_attr(c, r, t_device);
        if (where == NULL)
            goto done;
        PyList_SET_ITEM(columns[1], i, where);
        PyObject *numbers[4] = {NULL, NULL, NULL, NULL};
        if (stat_cells(c, r, numbers) < 0) {
            for (int k = 0; k < 4; k++)
                Py_XDECREF(numbers[k]);
            goto done;
        }
        for (int k = 0; k < 4; k++)
            PyList_SET_ITEM(columns[2 + k], i, numbers[k]);
    }
    for (int k = 0; k < 6; k++) {
        /* cells[4] is the params cell, filled by the caller */
        PyObject *joined = PyUnicode_Join(t_newline, columns[k]);
        if (joined == NULL)
            goto done;
        cells[k < 2 ? 2 + k : 3 + k] = joined;
    }
    ok = 0;
done:
    for (int k = 0; k < 6; k++)
        Py_XDECREF(columns[k]);
    Py_XDECREF(shown_list);
    Py_DECREF(all);
    return ok;
}

/* The usual row's cells after label and params: one output (and its statistics). */
static int one_output_cells(TableContext *c, PyObject *inputs, PyObject *outputs, PyObject *out,
                            PyObject **cells)
{
    int ok = -1;
    PyObject *dtype = NULL, *slot = NULL, *first = NULL;
    dtype = PyObject_GetAttr(out, t_dtype);
    if (dtype == NULL)
        goto done;
    const int tensor = PyObject_RichCompareBool(dtype, t_empty, Py_NE);
    if (tensor < 0)
        goto done;
    /* the input: one, unnamed, of the output's dtype: its shape's cached text */
    Py_ssize_t n_in = PyObject_Length(inputs);
    if (n_in < 0)
        goto done;
    int usual = 0;
    if (n_in == 1) {
        first = PySequence_GetItem(inputs, 0);
        PyObject *first_slot = first == NULL ? NULL : PyObject_GetAttr(first, t_slot);
        if (first_slot == NULL)
            goto done;
        usual = same(first_slot, t_slot_zero);
        Py_DECREF(first_slot);
        if (usual > 0) {
            PyObject *first_dtype = PyObject_GetAttr(first, t_dtype);
            if (first_dtype == NULL)
                goto done;
            usual = same(first_dtype, dtype);
            Py_DECREF(first_dtype);
            if (usual > 0)
                usual = tensor;
        }
        if (usual < 0)
            goto done;
    }
    cells[0] = shape_cell(c, usual ? first : NULL, inputs, dtype);
    if (cells[0] == NULL)
        goto done;
    slot = PyObject_GetAttr(out, t_slot);
    if (slot == NULL)
        goto done;
    int alone = same(slot, t_slot_zero);
    if (alone < 0)
        goto done;
    cells[1] = shape_cell(c, alone && tensor ? out : NULL, outputs, NULL);
    if (cells[1] == NULL)
        goto done;
    cells[2] = dtype_text(c, out, dtype);
    if (cells[2] == NULL)
        goto done;
    cells[3] = shown_attr(c, out, t_device);
    if (cells[3] == NULL)
        goto done;
    if (stat_cells(c, out, cells + 5) < 0)
        goto done;
    ok = 0;
done:
    Py_XDECREF(dtype);
    Py_XDECREF(slot);
    Py_XDECREF(first);
    return ok;
}

/* The widest line of a cell, in terminal cells: its length where it is ASCII, else cells_of()
 * of each line (-1 on error). */
static Py_ssize_t cell_width(TableContext *c, PyObject *cell)
{
    if (PyUnicode_IS_ASCII(cell)) {
        const char *text = (const char *)PyUnicode_DATA(cell);
        Py_ssize_t n = PyUnicode_GET_LENGTH(cell), widest = 0, start = 0;
        for (Py_ssize_t i = 0; i <= n; i++) {
            if (i == n || text[i] == '\n') {
                if (i - start > widest)
                    widest = i - start;
                start = i + 1;
            }
        }
        return widest;
    }
    PyObject *lines = PyUnicode_Split(cell, t_newline, -1);
    if (lines == NULL)
        return -1;
    Py_ssize_t widest = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(lines); i++) {
        PyObject *w = PyObject_CallOneArg(c->cells_of, PyList_GET_ITEM(lines, i));
        Py_ssize_t width = w == NULL ? -1 : PyLong_AsSsize_t(w);
        Py_XDECREF(w);
        if (width < 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "lay_out: a negative width");
            Py_DECREF(lines);
            return -1;
        }
        if (width > widest)
            widest = width;
    }
    Py_DECREF(lines);
    return widest;
}

/* One call's row: a new list of the table's cells, or NULL. */
static PyObject *table_row(TableContext *c, PyObject *call, PyObject *own)
{
    PyObject *row = NULL, *kind = NULL, *module = NULL, *call_index = NULL, *label = NULL;
    PyObject *params = NULL, *inputs = NULL, *outputs = NULL, *out = NULL;
    kind = PyObject_GetAttr(call, t_kind);
    module = kind == NULL ? NULL : PyObject_GetAttr(call, t_module);
    call_index = module == NULL ? NULL : PyObject_GetAttr(call, t_call_index);
    if (call_index == NULL)
        goto done;
    const int is_op = same(kind, t_kind_op);
    if (is_op < 0)
        goto done;
    label = row_label(c, call, module, call_index, is_op);
    if (label == NULL)
        goto done;
    /* params: a module's own parameter count, on its first call */
    int counted = same(kind, t_kind_module);
    if (counted > 0)
        counted = same(call_index, t_zero);
    if (counted < 0)
        goto done;
    if (counted) {
        PyObject *count;
        if (PyDict_CheckExact(own)) {
            count = PyDict_GetItemWithError(own, module);
            if (count == NULL && PyErr_Occurred())
                goto done;
            Py_XINCREF(count);
        }
        else {
            count = PyObject_CallMethodOneArg(own, t_get, module);
            if (count == NULL)
                goto done;
        }
        int some = count == NULL ? 0 : PyObject_IsTrue(count);
        if (some > 0)
            params = PyObject_CallOneArg(c->count, count);
        Py_XDECREF(count);
        if (some < 0 || (some > 0 && params == NULL))
            goto done;
    }
    if (params == NULL)
        params = Py_NewRef(t_empty);
    inputs = PyObject_GetAttr(call, t_inputs);
    outputs = inputs == NULL ? NULL : PyObject_GetAttr(call, t_outputs);
    if (outputs == NULL)
        goto done;
    Py_ssize_t n_out = PyObject_Length(outputs);
    if (n_out < 0)
        goto done;
    PyObject *cells[9] = {NULL};
    int filled;
    if (n_out == 1) {
        out = PySequence_GetItem(outputs, 0);
        filled = out == NULL ? -1 : one_output_cells(c, inputs, outputs, out, cells);
    }
    else {
        filled = other_cells(c, inputs, outputs, cells);
    }
    if (filled < 0) {
        for (int i = 0; i < 9; i++)
            Py_XDECREF(cells[i]);
        goto done;
    }
    row = PyList_New(10);
    if (row == NULL) {
        for (int i = 0; i < 9; i++)
            Py_XDECREF(cells[i]);
        goto done;
    }
    PyList_SET_ITEM(row, 0, Py_NewRef(label));
    cells[4] = Py_NewRef(params);
    for (int i = 0; i < 9; i++)
        PyList_SET_ITEM(row, i + 1, cells[i]);
done:
    Py_XDECREF(kind);
    Py_XDECREF(module);
    Py_XDECREF(call_index);
    Py_XDECREF(label);
    Py_XDECREF(params);
    Py_XDECREF(inputs);
    Py_XDECREF(outputs);
    Py_XDECREF(out);
    return row;
}

/* lay_out(calls, own, ctx) -> (rows, plain, widths, width): summary_table._lay_out. */
static PyObject *lay_out(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    TableContext c;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "lay_out(calls, own, ctx) takes 3 arguments");
        return NULL;
    }
    if (table_context(args[2], &c) < 0)
        return NULL;
    const Py_ssize_t columns = PyTuple_GET_SIZE(c.head_widths);
    PyObject *calls = PySequence_Fast(args[0], "lay_out: calls is a sequence");
    if (calls == NULL)
        return NULL;
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(calls);
    PyObject *rows = PyList_New(n), *plain = PyList_New(n), *result = NULL;
    Py_ssize_t *widths = PyMem_Calloc(columns > 0 ? columns : 1, sizeof(Py_ssize_t));
    if (rows == NULL || plain == NULL || widths == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < columns; i++) {
        widths[i] = PyLong_AsSsize_t(PyTuple_GET_ITEM(c.head_widths, i));
        if (widths[i] == -1 && PyErr_Occurred())
            goto done;
    }
    for (Py_ssize_t r = 0; r < n; r++) {
        PyObject *row = table_row(&c, PySequence_Fast_GET_ITEM(calls, r), args[1]);
        if (row == NULL)
            goto done;
        PyList_SET_ITEM(rows, r, row);
        if (PyList_GET_SIZE(row) != columns) {
            PyErr_Format(PyExc_ValueError, "lay_out: a row of %zd cells, not %zd",
                         PyList_GET_SIZE(row), columns);
            goto done;
        }
        int one = 1;  /* a single line of ASCII text */
        for (Py_ssize_t i = 0; i < columns; i++) {
            PyObject *cell = PyList_GET_ITEM(row, i);
            if (!PyUnicode_Check(cell)) {
                PyErr_Format(PyExc_TypeError, "sequence item %zd: expected str instance, %.80s found",
                             i, Py_TYPE(cell)->tp_name);
                goto done;
            }
            if (!PyUnicode_IS_ASCII(cell) ||
                memchr(PyUnicode_DATA(cell), '\n', PyUnicode_GET_LENGTH(cell)) != NULL)
                one = 0;
        }
        PyList_SET_ITEM(plain, r, Py_NewRef(one ? Py_True : Py_False));
        for (Py_ssize_t i = 0; i < columns; i++) {
            PyObject *cell = PyList_GET_ITEM(row, i);
            Py_ssize_t w = one ? PyUnicode_GET_LENGTH(cell) : cell_width(&c, cell);
            if (w < 0)
                goto done;
            if (w > widths[i])
                widths[i] = w;
        }
    }
    PyObject *width_list = PyList_New(columns);
    if (width_list == NULL)
        goto done;
    Py_ssize_t total = 3 * columns + 1;  /* a space either side and a border per column */
    for (Py_ssize_t i = 0; i < columns; i++) {
        PyObject *w = PyLong_FromSsize_t(widths[i]);
        if (w == NULL) {
            Py_DECREF(width_list);
            goto done;
        }
        PyList_SET_ITEM(width_list, i, w);
        total += widths[i];
    }
    result = Py_BuildValue("(OON" "n)", rows, plain, width_list, total);
done:
    /* rows already set are owned by the list; unset items are NULL, which list_dealloc skips */
    Py_DECREF(calls);
    Py_XDECREF(rows);
    Py_XDECREF(plain);
    PyMem_Free(widths);
    return result;
}

/* One line of ASCII cells between the table's borders, each padded to its column's width on the
 * side ``right`` says (what the frame's str.format pattern writes): "│ a   │   1 │"; from
 * column ``from`` on, after one border. */
static PyObject *ascii_line(const char *const *values, const Py_ssize_t *lengths,
                            const Py_ssize_t *widths, const char *right, Py_ssize_t columns,
                            Py_ssize_t from)
{
    Py_ssize_t n = 1;
    for (Py_ssize_t i = from; i < columns; i++)
        n += (lengths[i] > widths[i] ? lengths[i] : widths[i]) + 3;
    PyObject *line = PyUnicode_New(n, 0x2502);
    if (line == NULL)
        return NULL;
    Py_UCS2 *out = PyUnicode_2BYTE_DATA(line);
    Py_ssize_t at = 0;
    out[at++] = 0x2502; /* │ */
    for (Py_ssize_t i = from; i < columns; i++) {
        const Py_ssize_t gap = widths[i] > lengths[i] ? widths[i] - lengths[i] : 0;
        out[at++] = ' ';
        if (right[i])
            for (Py_ssize_t k = 0; k < gap; k++)
                out[at++] = ' ';
        for (Py_ssize_t k = 0; k < lengths[i]; k++)
            out[at++] = (Py_UCS2)(unsigned char)values[i][k];
        if (!right[i])
            for (Py_ssize_t k = 0; k < gap; k++)
                out[at++] = ' ';
        out[at++] = ' ';
        out[at++] = 0x2502;
    }
    return line;
}

/* "│" + render(" label ") + the rest of the line: an op's first line in the op style. */
static PyObject *styled_line(const char *const *values, const Py_ssize_t *lengths,
                             const Py_ssize_t *widths, const char *right, Py_ssize_t columns,
                             PyObject *render)
{
    const Py_ssize_t gap = widths[0] > lengths[0] ? widths[0] - lengths[0] : 0;
    char stack_buffer[256];
    const Py_ssize_t n = lengths[0] + gap + 2;
    char *text = n <= (Py_ssize_t)sizeof stack_buffer ? stack_buffer : PyMem_Malloc(n);
    if (text == NULL)
        return PyErr_NoMemory();
    Py_ssize_t at = 0;
    text[at++] = ' ';
    if (right[0])
        for (Py_ssize_t k = 0; k < gap; k++)
            text[at++] = ' ';
    memcpy(text + at, values[0], lengths[0]);
    at += lengths[0];
    if (!right[0])
        for (Py_ssize_t k = 0; k < gap; k++)
            text[at++] = ' ';
    text[at++] = ' ';
    PyObject *cell = PyUnicode_FromStringAndSize(text, n);
    if (text != stack_buffer)
        PyMem_Free(text);
    if (cell == NULL)
        return NULL;
    PyObject *styled = PyObject_CallOneArg(render, cell);
    Py_DECREF(cell);
    if (styled == NULL)
        return NULL;
    PyObject *rest = ascii_line(values, lengths, widths, right, columns, 1);
    PyObject *line = NULL;
    if (rest != NULL && PyUnicode_Check(styled)) {
        /* "│" + styled + rest, where rest begins with its own "│": rest's first character */
        PyObject *border = PyUnicode_Substring(rest, 0, 1);
        PyObject *left = border == NULL ? NULL : PyUnicode_Concat(border, styled);
        line = left == NULL ? NULL : PyUnicode_Concat(left, rest);
        Py_XDECREF(border);
        Py_XDECREF(left);
    }
    else if (rest != NULL) {
        PyErr_SetString(PyExc_TypeError, "table_text: a style renders to str");
    }
    Py_DECREF(styled);
    Py_XDECREF(rest);
    return line;
}

/* table_text(rows, widths, right, top, head, head_rule, bottom, footer, ops, render) ->
 * the table and its footer as summary_table._text writes them, or None where a row holds
 * anything but ASCII (then _text writes it). ``ops``: None (no style) or each row's "is an op"
 * (its label, on its first line, rendered by ``render``). */
static PyObject *table_text(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 10) {
        PyErr_SetString(PyExc_TypeError, "table_text takes 10 arguments");
        return NULL;
    }
    PyObject *rows = args[0], *width_seq = args[1], *right_seq = args[2];
    PyObject *ops = args[8], *render = args[9];
    if (!PyList_CheckExact(rows) || !PyTuple_Check(right_seq) ||
        (ops != Py_None && (!PyList_CheckExact(ops) ||
                            PyList_GET_SIZE(ops) != PyList_GET_SIZE(rows)))) {
        PyErr_SetString(PyExc_TypeError, "table_text: rows (and ops) are lists alike");
        return NULL;
    }
    const Py_ssize_t columns = PyTuple_GET_SIZE(right_seq);
    if (PyObject_Length(width_seq) != columns) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    PyObject *result = NULL, *lines = PyList_New(0);
    Py_ssize_t *widths = PyMem_Calloc(columns + 1, sizeof(Py_ssize_t));
    Py_ssize_t *lengths = PyMem_Calloc(columns + 1, sizeof(Py_ssize_t));
    Py_ssize_t *left = PyMem_Calloc(columns + 1, sizeof(Py_ssize_t));
    const char **values = PyMem_Calloc(columns + 1, sizeof(char *));
    char *right = PyMem_Calloc(columns + 1, 1);
    if (lines == NULL || widths == NULL || lengths == NULL || left == NULL || values == NULL ||
        right == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < columns; i++) {
        PyObject *w = PySequence_GetItem(width_seq, i);
        widths[i] = w == NULL ? -1 : PyLong_AsSsize_t(w);
        Py_XDECREF(w);
        if (widths[i] < 0 && PyErr_Occurred())
            goto done;
        const int r = PyObject_IsTrue(PyTuple_GET_ITEM(right_seq, i));
        if (r < 0)
            goto done;
        right[i] = (char)r;
    }
    for (int i = 3; i <= 5; i++)  /* top, head, head_rule */
        if (PyList_Append(lines, args[i]) < 0)
            goto done;
    for (Py_ssize_t r = 0; r < PyList_GET_SIZE(rows); r++) {
        PyObject *row = PyList_GET_ITEM(rows, r);
        if (!PyList_Check(row) || PyList_GET_SIZE(row) != columns)
            goto fallback;
        int is_op = 0;
        if (ops != Py_None && (is_op = PyObject_IsTrue(PyList_GET_ITEM(ops, r))) < 0)
            goto done;
        Py_ssize_t count = 1;  /* the row's lines: its tallest cell's */
        for (Py_ssize_t i = 0; i < columns; i++) {
            PyObject *cell = PyList_GET_ITEM(row, i);
            if (!PyUnicode_Check(cell) || !PyUnicode_IS_ASCII(cell))
                goto fallback;
            values[i] = (const char *)PyUnicode_DATA(cell);
            left[i] = PyUnicode_GET_LENGTH(cell);
            Py_ssize_t breaks = 1;
            for (Py_ssize_t k = 0; k < left[i]; k++)
                breaks += values[i][k] == '\n';
            if (breaks > count)
                count = breaks;
        }
        for (Py_ssize_t j = 0; j < count; j++) {
            for (Py_ssize_t i = 0; i < columns; i++) {  /* each cell's line j ("" past its end) */
                if (left[i] < 0) {
                    lengths[i] = 0;
                    continue;
                }
                const char *end = memchr(values[i], '\n', left[i]);
                lengths[i] = end == NULL ? left[i] : end - values[i];
            }
            PyObject *line = is_op && j == 0
                                 ? styled_line(values, lengths, widths, right, columns, render)
                                 : ascii_line(values, lengths, widths, right, columns, 0);
            if (line == NULL)
                goto done;
            const int added = PyList_Append(lines, line);
            Py_DECREF(line);
            if (added < 0)
                goto done;
            for (Py_ssize_t i = 0; i < columns; i++) {  /* on to each cell's next line */
                if (left[i] < 0)
                    continue;
                if (lengths[i] < left[i]) {
                    left[i] -= lengths[i] + 1;
                    values[i] += lengths[i] + 1;
                }
                else {
                    left[i] = -1;
                }
            }
        }
    }
    if (PyList_Append(lines, args[6]) < 0 || PyList_Append(lines, args[7]) < 0 ||
        PyList_Append(lines, t_empty) < 0)
        goto done;
    result = PyUnicode_Join(t_newline, lines);
    goto done;
fallback:
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(lines);
    PyMem_Free(widths);
    PyMem_Free(lengths);
    PyMem_Free(left);
    PyMem_Free(values);
    PyMem_Free(right);
    return result;
}

static PyMethodDef methods[] = {
    {"float_stats", (PyCFunction)(void (*)(void))float_stats, METH_FASTCALL,
     "float_stats(address, numel, itemsize) -> the statistics vector (its positions named "
     "by LAYOUT) of contiguous float32 (itemsize 4) or float64 (8) values."},
    {"build_records", (PyCFunction)(void (*)(void))build_records, METH_FASTCALL,
     "build_records(calls, step, stats, param_grads, ctx) -> the frozen records of one step's "
     "pending calls (tracer.core.step_state._records, compiled)."},
    {"walk_modules", (PyCFunction)(void (*)(void))walk_modules, METH_FASTCALL,
     "walk_modules(model, named_modules) -> list(model.named_modules()), or None where a class "
     "has its own named_modules (tracer.core.trace.named_modules, compiled)."},
    {"plain_state", plain_state, METH_O,
     "plain_state(state) -> a module __dict__'s plain values and which parameters are set "
     "(tracer.core.module_records._plain_state, compiled)."},
    {"kernel_stats", (PyCFunction)(void (*)(void))kernel_stats, METH_FASTCALL,
     "kernel_stats(vector, at=0) -> the statistics dict of the vector at ``at`` "
     "(tracer.core.stats.stats_from_kernel, compiled)."},
    {"int_stats", (PyCFunction)(void (*)(void))int_stats, METH_FASTCALL,
     "int_stats(address, numel, kind) -> (sum as a double, min, max, nonzero count) of "
     "contiguous integers of kind 'int64', 'int32', 'int16', 'int8' or 'uint8'."},
    {"numbers", (PyCFunction)(void (*)(void))numbers, METH_FASTCALL,
     "numbers(fallback, digits, whole_below, *values) -> each value as "
     "tracer.formatting.number() writes it, '' for None (fallback(value) for a value that is "
     "neither a float nor an int)."},
    {"lay_out", (PyCFunction)(void (*)(void))lay_out, METH_FASTCALL,
     "lay_out(calls, own, ctx) -> (rows, plain, widths, width): the summary's cells and column "
     "widths (tracer.summary_table._lay_out, compiled)."},
    {"table_text", (PyCFunction)(void (*)(void))table_text, METH_FASTCALL,
     "table_text(rows, widths, right, top, head, head_rule, bottom, footer, ops, render) "
     "-> the summary's text, or None where a row is not ASCII (tracer.summary_table._text, "
     "compiled)."},
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
    if (intern_table_names() < 0)
        return NULL;
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
    reduce_ints_fn api_ints = reduce_ints;
    PyObject *api = PyCapsule_New((void *)api_reduce, "tracer.core._speedups.reduce", NULL);
    if (api == NULL || PyModule_AddObject(module, "reduce", api) < 0) {
        Py_XDECREF(api);
        Py_DECREF(module);
        return NULL;
    }
    api = PyCapsule_New((void *)api_ints, "tracer.core._speedups.reduce_ints", NULL);
    if (api == NULL || PyModule_AddObject(module, "reduce_ints", api) < 0) {
        Py_XDECREF(api);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
