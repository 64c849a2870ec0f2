/* Integer rescaling as TFLite / gemmlowp compute it (mirror of edgeff/runtime/requantize.py). */
#include "edgeff_kernels.h"

int32_t ef_saturating_rounding_doubling_high_mul(int32_t a, int32_t b)
{
    if (a == b && a == INT32_MIN)
        return INT32_MAX;                      /* the only product whose doubled high half leaves int32 */
    int64_t ab = (int64_t)a * b;
    int64_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));   /* C division truncates toward zero */
}

int32_t ef_rounding_divide_by_pot(int32_t x, int exponent)
{
    int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    int32_t remainder = x & mask;
    int32_t threshold = (mask >> 1) + (x < 0);
    return (x >> exponent) + (remainder > threshold);
}

int32_t ef_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int shift, int rounding)
{
    if (rounding == EF_ROUNDING_SINGLE) {
        int total = 31 - shift;
        return (int32_t)(((int64_t)x * multiplier + ((int64_t)1 << (total - 1))) >> total);
    }
    int left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
    /* x * 2^left wraps in int32 as on the board; through uint32 so C sees no signed overflow */
    int32_t scaled = (int32_t)((uint32_t)x << left);
    return ef_rounding_divide_by_pot(ef_saturating_rounding_doubling_high_mul(scaled, multiplier), right);
}

int32_t ef_multiply_by_quantized_multiplier_int64(int64_t x, int32_t multiplier, int shift)
{
    /* the 16x8 kernels' reduced 16-bit multiplier; needs shift <= 14 as TFLite does */
    int32_t reduced = multiplier < 0x7FFF0000 ? (multiplier + (1 << 15)) >> 16 : 0x7FFF;
    int total = 15 - shift;
    return (int32_t)((x * reduced + ((int64_t)1 << (total - 1))) >> total);
}

void ef_multiply_by_quantized_multiplier_n(const int32_t *x, const int32_t *multiplier, const int32_t *shift,
                                           int32_t n, int rounding, int32_t *out)
{
    for (int32_t i = 0; i < n; ++i)
        out[i] = ef_multiply_by_quantized_multiplier(x[i], multiplier[i], shift[i], rounding);
}
