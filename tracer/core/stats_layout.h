/* The one layout of a float statistics vector (tracer/core/stats_layout.py names the same
 * indices as tracer.core.stats_layout.Stat; the tests check that both agree).
 *
 * Every sum, norm and extreme is over the finite values; SPREAD is sqrt(sum((x - mean)^2))
 * over them; MIN and MAX are read only when FINITE is not 0 (this kernel leaves NaN there). */
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
    TRACER_STAT_SIZE = 10 /* numbers per vector */
};

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
    default: return 0;
    }
}

#endif
