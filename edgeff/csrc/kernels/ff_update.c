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

void ef_update_weight(int16_t *master, int8_t *weight, int64_t grad, int32_t lr_shift, int stochastic,
                      uint32_t noise)
{
    int64_t m = *master + ef_round_shift(grad, lr_shift, stochastic, noise);
    *master = (int16_t)(m > 32767 ? 32767 : m < -32768 ? -32768 : m);
    int32_t w = ef_rounding_divide_by_pot(*master, EF_MASTER_FRAC_BITS);
    *weight = (int8_t)(w > EF_WEIGHT_MAX ? EF_WEIGHT_MAX : w < -EF_WEIGHT_MAX ? -EF_WEIGHT_MAX : w);
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
