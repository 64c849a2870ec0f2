/* TFLite's integer L2_NORMALIZATION (mirror of edgeff/runtime/l2_normalization.py): the row's sum of
 * squares, its inverse square root as a quantized multiplier (5 Newton-Raphson steps in Q3.28, as
 * GetInvSqrtQuantizedMultiplierExp), then every element rescaled to 2^-7 (int8) or 2^-15 (int16). */
#include "edgeff_kernels.h"
#include "rescale_avx2.h"

#define HALF_THREE_Q3 ((1 << 28) + (1 << 27))   /* 1.5 in Q3.28 */
#define ONE_Q3 (1 << 28)
#define HALF_SQRT2_Q0 1518500250                 /* sqrt(2)/2 in Q0.31 */

/* SaturatingRoundingDoublingHighMul of non-negative operands: the product is non-negative, so the
 * nudge is 2^30 and the division a shift, with nothing to saturate. Every operand of the Newton steps
 * below is positive (l2_normalization.py says why; tests compare with the general form). */
static int32_t srdhm(int32_t a, int32_t b) { return (int32_t)(((int64_t)a * b + (1 << 30)) >> 31); }

/* gemmlowp SaturatingRoundingMultiplyByPOT for a positive exponent: saturating left shift */
static int32_t saturating_shift_left(int32_t x, int exponent)
{
    int32_t threshold = (int32_t)(((int64_t)1 << (31 - exponent)) - 1);
    if (x > threshold)
        return INT32_MAX;
    if (x < -threshold)
        return INT32_MIN;
    return (int32_t)((uint32_t)x << exponent);
}

static int count_leading_zeros32(uint32_t x)   /* x > 0 */
{
#if defined(__GNUC__)
    return __builtin_clz(x);                  /* one instruction on Cortex-M4 (CLZ) and x86 */
#endif
    int n = 0;
    while (n < 32 && !(x & 0x80000000u)) {
        x <<= 1;
        ++n;
    }
    return n;
}

void ef_inv_sqrt_quantized_multiplier(int32_t acc, int32_t *multiplier, int32_t *shift)
{
    if (acc <= 1) {            /* TFLite treats 0 and 1 alike */
        *multiplier = INT32_MAX;
        *shift = 0;
        return;
    }
    int32_t s = 11;
    while (acc >= (1 << 29)) {
        acc /= 4;
        ++s;
    }
    int pairs = (count_leading_zeros32((uint32_t)acc) - 1) / 2 - 1;
    s -= pairs;
    acc <<= 2 * pairs;
    int32_t half_input = ef_rounding_divide_by_pot(acc >> 1, 1);
    int32_t x = ONE_Q3;
    for (int i = 0; i < 5; ++i) {
        int32_t x3 = saturating_shift_left(srdhm(srdhm(x, x), x), 6);    /* Q9 -> Q3 */
        int32_t t1 = srdhm(HALF_THREE_Q3, x);
        int32_t t2 = srdhm(half_input, x3);
        x = saturating_shift_left((int32_t)((uint32_t)t1 - (uint32_t)t2), 3);  /* Q6 -> Q3 */
    }
    x = srdhm(x, HALF_SQRT2_Q0);
    if (s < 0) {
        x = (int32_t)((uint32_t)x << -s);
        s = 0;
    }
    *multiplier = x;
    *shift = -s;
}

#if defined(__AVX2__)
/* gemmlowp SaturatingRoundingMultiplyByPOT for a positive exponent, eight lanes */
static __m256i saturating_shift_left_x8(__m256i x, int exponent)
{
    __m256i threshold = _mm256_set1_epi32((int32_t)(((int64_t)1 << (31 - exponent)) - 1));
    __m256i shifted = _mm256_sll_epi32(x, _mm_cvtsi32_si128(exponent));
    shifted = _mm256_blendv_epi8(shifted, _mm256_set1_epi32(INT32_MAX), _mm256_cmpgt_epi32(x, threshold));
    return _mm256_blendv_epi8(shifted, _mm256_set1_epi32(INT32_MIN),
                              _mm256_cmpgt_epi32(_mm256_sub_epi32(_mm256_setzero_si256(), threshold), x));
}

/* ef_inv_sqrt_quantized_multiplier of eight accumulators at once, step for step */
static void inv_sqrt_x8(const int32_t *accs, int32_t *multipliers, int32_t *shifts)
{
    const __m256i one = _mm256_set1_epi32(1);
    __m256i acc = _mm256_loadu_si256((const __m256i *)accs);
    __m256i tiny = _mm256_cmpgt_epi32(_mm256_set1_epi32(2), acc);               /* acc <= 1 */
    __m256i big = _mm256_cmpgt_epi32(acc, _mm256_set1_epi32((1 << 29) - 1));  /* one division by 4 */
    acc = _mm256_blendv_epi8(acc, _mm256_srli_epi32(acc, 2), big);
    __m256i s = _mm256_sub_epi32(_mm256_set1_epi32(11), big);
    acc = _mm256_max_epi32(acc, _mm256_set1_epi32(2));                         /* tiny lanes: any valid value */
    /* floor(log2(acc)) from the exponent of acc converted to float, less one where rounding reached the
     * next power of two: a leading-zero count (AVX2 has none), exact for every acc; no float value
     * enters the result, and the board's scalar path uses CLZ */
    __m256i e = _mm256_sub_epi32(_mm256_srli_epi32(_mm256_castps_si256(_mm256_cvtepi32_ps(acc)), 23),
                                 _mm256_set1_epi32(127));
    e = _mm256_add_epi32(e, _mm256_cmpgt_epi32(_mm256_sllv_epi32(one, e), acc));
    __m256i pairs = _mm256_sub_epi32(_mm256_srli_epi32(_mm256_sub_epi32(_mm256_set1_epi32(30), e), 1), one);
    s = _mm256_sub_epi32(s, pairs);
    acc = _mm256_sllv_epi32(acc, _mm256_add_epi32(pairs, pairs));
    __m256i half_input = _mm256_srli_epi32(_mm256_add_epi32(_mm256_srli_epi32(acc, 1), one), 1);
    __m256i x = _mm256_set1_epi32(ONE_Q3), half_three = _mm256_set1_epi32(HALF_THREE_Q3);
    for (int i = 0; i < 5; ++i) {
        __m256i x3 = saturating_shift_left_x8(ef_srdhm_non_negative_x8(ef_srdhm_non_negative_x8(x, x), x), 6);
        __m256i t1 = ef_srdhm_non_negative_x8(half_three, x);
        __m256i t2 = ef_srdhm_non_negative_x8(half_input, x3);
        x = saturating_shift_left_x8(_mm256_sub_epi32(t1, t2), 3);
    }
    x = ef_srdhm_non_negative_x8(x, _mm256_set1_epi32(HALF_SQRT2_Q0));
    __m256i negative = _mm256_cmpgt_epi32(_mm256_setzero_si256(), s);
    x = _mm256_blendv_epi8(x, _mm256_sllv_epi32(x, _mm256_sub_epi32(_mm256_setzero_si256(), s)), negative);
    s = _mm256_andnot_si256(negative, s);
    x = _mm256_blendv_epi8(x, _mm256_set1_epi32(INT32_MAX), tiny);
    s = _mm256_andnot_si256(tiny, s);
    _mm256_storeu_si256((__m256i *)multipliers, x);
    _mm256_storeu_si256((__m256i *)shifts, _mm256_sub_epi32(_mm256_setzero_si256(), s));
}
#endif

void ef_inv_sqrt_quantized_multiplier_n(const int32_t *acc, int32_t n, int32_t *multiplier, int32_t *shift)
{
    int32_t i = 0;
#if defined(__AVX2__)
    for (; i + 8 <= n; i += 8)
        inv_sqrt_x8(acc + i, multiplier + i, shift + i);
#endif
    for (; i < n; ++i)
        ef_inv_sqrt_quantized_multiplier(acc[i], multiplier + i, shift + i);
}

/* a row's wrapping int32 sum of squares of its centred values; returns whether they all lie in [0, 255] */
static int sum_of_squares(const int8_t *in, int32_t depth, int32_t zero_point, int32_t *sum_out)
{
    int32_t acc = 0, small = 1, k = 0;
#if defined(__AVX2__)
    /* sixteen int16 lanes: d in [-255, 255], d * d pairs summed into int32 lanes that wrap as acc does;
     * d in [0, 255] exactly when its uint16 has a zero high byte */
    __m256i sum = _mm256_setzero_si256(), high = _mm256_setzero_si256(), zp = _mm256_set1_epi16((int16_t)zero_point);
    for (; k + 16 <= depth; k += 16) {
        __m256i d = _mm256_sub_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(in + k))), zp);
        sum = _mm256_add_epi32(sum, _mm256_madd_epi16(d, d));
        high = _mm256_or_si256(high, d);
    }
    acc = ef_sum_s32x8(sum);
    small = _mm256_testz_si256(high, _mm256_set1_epi16((int16_t)0xFF00));
#endif
    for (; k < depth; ++k) {
        int32_t d = in[k] - zero_point;
        acc = (int32_t)((uint32_t)acc + (uint32_t)(d * d));
        small &= (uint32_t)d <= 255u;
    }
    *sum_out = acc;
    return small;
}

/* Centred values in [0, 255] (ReLU outputs, image pixels) with a positive multiplier and a left shift
 * of at most 23 never leave int32: the non-negative form applies, after the left shift; with AVX2 eight
 * values at a time (store8 writes eight clamped lanes). */
#if defined(__AVX2__)
#define NON_NEGATIVE_X8(hi, store8)                                                                  \
    {                                                                                                        \
        __m256i m = _mm256_set1_epi32(multiplier), r = _mm256_set1_epi32(right), top = _mm256_set1_epi32(hi); \
        __m256i zp = _mm256_set1_epi32(zero_point);                                                          \
        __m128i l = _mm_cvtsi32_si128(left);                                                                 \
        for (; k + 8 <= depth; k += 8) {                                                                     \
            __m256i d = _mm256_sub_epi32(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(row + k))), zp); \
            __m256i y = ef_multiply_non_negative_x8(_mm256_sll_epi32(d, l), m, r, rounding);                 \
            store8(o + k, _mm256_min_epu32(y, top));                                                         \
        }                                                                                                    \
    }
#else
#define NON_NEGATIVE_X8(hi, store8)
#endif

#define ROW_BLOCK 8   /* rows whose inverse square roots are taken together (eight AVX2 lanes) */

#define DEFINE_L2_NORMALIZE(name, out_t, bits, lo, hi, store8)                                               \
    void name(const int8_t *in, int32_t rows, int32_t depth, int32_t zero_point, int rounding, out_t *out)   \
    {                                                                                                        \
        int32_t sums[ROW_BLOCK], multipliers[ROW_BLOCK], shifts[ROW_BLOCK], small[ROW_BLOCK];                \
        for (int32_t r0 = 0; r0 < rows; r0 += ROW_BLOCK) {                                                   \
            int32_t n = rows - r0 < ROW_BLOCK ? rows - r0 : ROW_BLOCK;                                       \
            for (int32_t i = 0; i < n; ++i)                                                                  \
                small[i] = sum_of_squares(in + (int64_t)(r0 + i) * depth, depth, zero_point, sums + i);      \
            ef_inv_sqrt_quantized_multiplier_n(sums, n, multipliers, shifts);                                \
            for (int32_t i = 0; i < n; ++i) {                                                                \
                const int8_t *row = in + (int64_t)(r0 + i) * depth;                                          \
                out_t *o = out + (int64_t)(r0 + i) * depth;                                                  \
                int32_t multiplier = multipliers[i], total = shifts[i] + bits, k = 0;                        \
                int32_t left = total > 0 ? total : 0, right = total > 0 ? 0 : -total;                        \
                if (small[i] && multiplier >= 0 && left <= 23) {                                             \
                    NON_NEGATIVE_X8(hi, store8)                                                              \
                    for (; k < depth; ++k) {                                                                 \
                        uint32_t y = ef_multiply_non_negative((uint32_t)(row[k] - zero_point) << left,       \
                                                              (uint32_t)multiplier, (uint32_t)right, rounding); \
                        o[k] = (out_t)(y > (uint32_t)hi ? (uint32_t)hi : y);                                 \
                    }                                                                                        \
                    continue;                                                                                \
                }                                                                                            \
                for (; k < depth; ++k) {                                                                     \
                    int32_t y = ef_multiply_by_quantized_multiplier(row[k] - zero_point, multiplier, total,  \
                                                                    rounding);                                \
                    o[k] = (out_t)(y < lo ? lo : y > hi ? hi : y);                                           \
                }                                                                                            \
            }                                                                                                \
        }                                                                                                    \
    }

DEFINE_L2_NORMALIZE(ef_l2_normalize_s8, int8_t, 7, -128, 127, ef_store_s8x8)
DEFINE_L2_NORMALIZE(ef_l2_normalize_s16, int16_t, 15, -32768, 32767, ef_store_s16x8)
