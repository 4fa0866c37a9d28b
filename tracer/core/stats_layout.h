/* The one layout of a float statistics vector (tracer/core/stats_layout.py names the same
 * indices as tracer.core.stats_layout.Stat; the tests check that both agree).
 *
 * Every sum, norm, count and extreme is over the finite values; SPREAD is
 * sqrt(sum((x - mean)^2)) over them; MIN and MAX are read only when FINITE is not 0 (this
 * kernel leaves NaN there). NEAR_ZERO counts |x| <= TRACER_NEAR_BAND, NEAR_ONE
 * TRACER_NEAR_ONE_LOW <= |x| <= TRACER_NEAR_ONE_HIGH (bounds included; the Python module
 * documents why and how a float32 value is compared). */
#ifndef TRACER_STATS_LAYOUT_H
#define TRACER_STATS_LAYOUT_H

enum tracer_stat {
    TRACER_STAT_NUMEL = 0,   /* elements, NaN and Inf included */
    TRACER_STAT_FINITE = 1,  /* finite elements */
    TRACER_STAT_NAN = 2,     /* NaN elements */
    TRACER_STAT_SUM = 3,
    TRACER_STAT_SPREAD = 4,
    TRACER_STAT_L2 = 5,
    TRACER_STAT_L1 = 6,
    TRACER_STAT_NONZERO = 7,
    TRACER_STAT_MIN = 8,
    TRACER_STAT_MAX = 9,
    TRACER_STAT_NEAR_ZERO = 10, /* finite values with |x| <= TRACER_NEAR_BAND */
    TRACER_STAT_NEAR_ONE = 11,  /* finite values with |x| in [NEAR_ONE_LOW, NEAR_ONE_HIGH] */
    TRACER_STAT_SIZE = 12 /* numbers per vector */
};

/* The bands of NEAR_ZERO and NEAR_ONE (stats_layout.py's NEAR_BAND, NEAR_ONE_LOW, NEAR_ONE_HIGH). */
#define TRACER_NEAR_BAND 0.01
#define TRACER_NEAR_ONE_LOW 0.99
#define TRACER_NEAR_ONE_HIGH 1.01

/* The name of index i (lower case, as the Python enum's member name), or NULL: what the
 * compiled modules export as LAYOUT. */
static inline const char *tracer_stat_name(int i)
{
    switch (i) {
    case TRACER_STAT_NUMEL: return "numel";
    case TRACER_STAT_FINITE: return "finite";
    case TRACER_STAT_NAN: return "nan";
    case TRACER_STAT_SUM: return "sum";
    case TRACER_STAT_SPREAD: return "spread";
    case TRACER_STAT_L2: return "l2";
    case TRACER_STAT_L1: return "l1";
    case TRACER_STAT_NONZERO: return "nonzero";
    case TRACER_STAT_MIN: return "min";
    case TRACER_STAT_MAX: return "max";
    case TRACER_STAT_NEAR_ZERO: return "near_zero";
    case TRACER_STAT_NEAR_ONE: return "near_one";
    default: return 0;
    }
}

/* The integer pass (tracer.core._speedups.int_stats, and its reduce_ints capsule): the kinds
 * it reads and what it gives back. 64-bit values are summed as doubles, narrower ones exactly. */
enum tracer_int_kind {
    TRACER_INT_I64 = 0,
    TRACER_INT_I32 = 1,
    TRACER_INT_I16 = 2,
    TRACER_INT_I8 = 3,
    TRACER_INT_U8 = 4,
    TRACER_INT_BOOL = 5 /* read as uint8: its nonzero count is the count of True */
};

/* What the compiled request packs into a vector's space for an empty tensor, or an integer or
 * bool one (tracer/core/stats_layout.py's Packed and IntStat name the same positions): the
 * element count, the kind (a tracer_int_kind, or TRACER_PACKED_EMPTY), then an integer vector
 * from TRACER_PACKED_INTS on: sum, min, max, nonzero count. */
enum tracer_packed_slot {
    TRACER_PACKED_NUMEL = 0,
    TRACER_PACKED_KIND = 1,
    TRACER_PACKED_INTS = 2,
    TRACER_PACKED_SUM = TRACER_PACKED_INTS,
    TRACER_PACKED_MIN = TRACER_PACKED_INTS + 1,
    TRACER_PACKED_MAX = TRACER_PACKED_INTS + 2,
    TRACER_PACKED_NONZERO = TRACER_PACKED_INTS + 3
};
#define TRACER_PACKED_EMPTY (-1)

struct tracer_int_result {
    double sum;
    long long lo, hi, nonzero;
};

#endif
