/* The FF master-weight update of integer training (mirror of round_shift and
 * weights_from_masters in edgeff/runtime/master_weights.py). */
#include "edgeff_kernels.h"

int64_t ef_round_shift(int64_t v, int32_t shift, int stochastic, uint32_t noise)
{
    if (shift <= 0)
        return (int64_t)((uint64_t)v << -shift);
    if (stochastic) {
        /* floor after adding a uniform integer below 2^shift: unbiased */
        int64_t n = shift >= 32 ? (int64_t)noise << (shift - 32)
                                : (int64_t)(noise & (((uint32_t)1 << shift) - 1));
        return (v + n) >> shift;
    }
    if (shift > 62)
        return 0;
    int64_t mask = ((int64_t)1 << shift) - 1;
    int64_t threshold = (mask >> 1) + (v < 0);
    return (v >> shift) + ((v & mask) > threshold);
}

#if defined(__ARM_FEATURE_SAT)
#include <arm_acle.h>
#endif

/* m clamped to int16: one SSAT on the Cortex-M4 */
static inline int32_t clamp_s16(int32_t m)
{
#if defined(__ARM_FEATURE_SAT)
    return __ssat(m, 16);
#else
    return m > 32767 ? 32767 : m < -32768 ? -32768 : m;
#endif
}

/* an int16 master and its int8 weight: RoundingDivideByPOT(m, 8) of an int16 is (m + 128 - [m < 0]) >> 8 (the
 * form of weights_from_masters, tested against rounding_divide_by_pot on every int16), then clamped */
static inline void store_master(int16_t *master, int8_t *weight, int32_t m)
{
    *master = (int16_t)m;
    int32_t w = (m + (1 << (EF_MASTER_FRAC_BITS - 1)) + (m >> 15)) >> EF_MASTER_FRAC_BITS;
    *weight = (int8_t)(w > EF_WEIGHT_MAX ? EF_WEIGHT_MAX : w < -EF_WEIGHT_MAX ? -EF_WEIGHT_MAX : w);
}

void ef_update_weight(int16_t *master, int8_t *weight, int64_t grad, int32_t lr_shift, int stochastic,
                      uint32_t noise)
{
    int64_t m = *master + ef_round_shift(grad, lr_shift, stochastic, noise);
    store_master(master, weight, (int32_t)(m > 32767 ? 32767 : m < -32768 ? -32768 : m));
}

/* Below this learning-rate shift a stochastic step stays in int32: |grad| <= 2 * 2^15 * 255 * 128 and the noise
 * is below 2^shift, so |grad| + noise <= 2,139,095,040 + 2^23 - 1 = INT32_MAX. */
#define INT32_STEP_MAX_SHIFT 23

void ef_update_weight_row_pair(int16_t *master, int8_t *weight, int32_t row0, int32_t row1, const int8_t *n0,
                               const int8_t *n1, const uint8_t *inputs, int32_t count, int32_t lr_shift,
                               int stochastic, uint32_t key, uint32_t index0)
{
    key += index0;
    if (stochastic && lr_shift >= 1 && lr_shift <= INT32_STEP_MAX_SHIFT) {
        /* ef_round_shift's stochastic form in int32; |step| < 2^30, so master + step cannot overflow either */
        uint32_t mask = (1u << lr_shift) - 1u;
        for (int32_t i = 0; i < count; ++i) {
            int32_t k = inputs[i], grad = row0 * n0[k] + row1 * n1[k];
            if (grad == 0)
                continue;
            int32_t m = master[k] + ((grad + (int32_t)(ef_hash_mix(key + (uint32_t)k) & mask)) >> lr_shift);
            store_master(master + k, weight + k, clamp_s16(m));
        }
        return;
    }
    for (int32_t i = 0; i < count; ++i) {
        int32_t k = inputs[i], grad = row0 * n0[k] + row1 * n1[k];
        if (grad != 0)
            ef_update_weight(master + k, weight + k, grad, lr_shift, stochastic,
                             stochastic ? ef_hash_mix(key + (uint32_t)k) : 0);
    }
}

void ef_update_weight_rows(int16_t *master, int8_t *weight, int32_t depth, const int32_t *rows, int32_t n_rows,
                           const int64_t *grad, int32_t lr_shift, int stochastic, uint32_t seed, uint32_t stream)
{
    for (int32_t r = 0; r < n_rows; ++r) {
        int64_t base = (int64_t)rows[r] * depth;
        for (int32_t k = 0; k < depth; ++k)
            ef_update_weight(master + base + k, weight + base + k, grad[(int64_t)r * depth + k], lr_shift,
                             stochastic, stochastic ? ef_hash32(seed, stream, (uint32_t)(base + k)) : 0);
    }
}
