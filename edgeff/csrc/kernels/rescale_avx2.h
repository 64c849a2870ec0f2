/* AVX2 forms of ef_multiply_non_negative, eight int32 lanes at a time, for the host build of the
 * kernels (c_kernels.py compiles with -march=native). The board never defines __AVX2__, and neither does
 * a host without it: both take the scalar loops, which give the same bits (tests/test_c_kernels.py).
 *
 * Compilers vectorize the scalar form too, but widen its 64-bit product lane by lane; here the even and
 * odd lanes each take one unsigned 32x32->64 multiply and meet again in one blend, about twice as fast. */
#ifndef EDGEFF_RESCALE_AVX2_H
#define EDGEFF_RESCALE_AVX2_H

#if defined(__AVX2__)
#include <immintrin.h>

#include "edgeff_kernels.h"

/* (x[i] * multiplier[i]) rescaled by 2^-(31 + right[i]) as ef_multiply_non_negative, for 0 <= x < 2^31,
 * 0 <= multiplier < 2^31 and 0 <= right <= 31 in every lane */
static inline __m256i ef_multiply_non_negative_x8(__m256i x, __m256i multiplier, __m256i right, int rounding)
{
    __m256i even = _mm256_mul_epu32(x, multiplier);   /* lanes 0, 2, 4, 6 as uint64 */
    __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(x, 32), _mm256_srli_epi64(multiplier, 32));
    if (rounding == EF_ROUNDING_SINGLE) {
        const __m256i one = _mm256_set1_epi64x(1), thirty = _mm256_set1_epi64x(30);
        __m256i right_even = _mm256_and_si256(right, _mm256_set1_epi64x(0xFFFFFFFF));
        __m256i right_odd = _mm256_srli_epi64(right, 32);
        even = _mm256_srlv_epi64(_mm256_add_epi64(even, _mm256_sllv_epi64(one, _mm256_add_epi64(right_even, thirty))),
                                 _mm256_add_epi64(right_even, _mm256_add_epi64(thirty, one)));
        odd = _mm256_srlv_epi64(_mm256_add_epi64(odd, _mm256_sllv_epi64(one, _mm256_add_epi64(right_odd, thirty))),
                                _mm256_add_epi64(right_odd, _mm256_add_epi64(thirty, one)));
        return _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
    }
    /* SRDHM: (p + 2^30) >> 31 fits 31 bits; the odd lanes' result lands in their high halves by << 1 */
    const __m256i nudge = _mm256_set1_epi64x((int64_t)1 << 30);
    __m256i v = _mm256_blend_epi32(_mm256_srli_epi64(_mm256_add_epi64(even, nudge), 31),
                                   _mm256_slli_epi64(_mm256_add_epi64(odd, nudge), 1), 0xAA);
    __m256i half = _mm256_srli_epi32(_mm256_sllv_epi32(_mm256_set1_epi32(1), right), 1);
    return _mm256_srlv_epi32(_mm256_add_epi32(v, half), right);
}

/* SaturatingRoundingDoublingHighMul of non-negative lanes (nothing saturates there) */
static inline __m256i ef_srdhm_non_negative_x8(__m256i a, __m256i b)
{
    return ef_multiply_non_negative_x8(a, b, _mm256_setzero_si256(), EF_ROUNDING_DOUBLE);
}

/* The ReLU form of the FC epilogue (fully_connected.c) on eight accumulators of consecutive units: + bias
 * (wrapping), the non-negative rescale of the positive part, clamped to the headroom act_max - zp, + zp,
 * then no lower than act_min. */
static inline __m256i ef_requantize_relu_x8(__m256i acc, const int32_t *bias, const int32_t *multiplier,
                                            const int32_t *shift, __m256i headroom, __m256i zp, __m256i act_min,
                                            int rounding)
{
    const __m256i zero = _mm256_setzero_si256();
    __m256i a = _mm256_max_epi32(_mm256_add_epi32(acc, _mm256_loadu_si256((const __m256i *)bias)), zero);
    __m256i right = _mm256_sub_epi32(zero, _mm256_loadu_si256((const __m256i *)shift));
    __m256i r = ef_multiply_non_negative_x8(a, _mm256_loadu_si256((const __m256i *)multiplier), right, rounding);
    return _mm256_max_epi32(_mm256_add_epi32(_mm256_min_epu32(r, headroom), zp), act_min);
}

/* eight int32 lanes, each already within the output type's range, stored as int8 / int16 */
static inline void ef_store_s8x8(int8_t *out, __m256i y)
{
    __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(y), _mm256_extracti128_si256(y, 1));
    _mm_storel_epi64((__m128i *)out, _mm_packs_epi16(w, w));
}

static inline void ef_store_s16x8(int16_t *out, __m256i y)
{
    _mm_storeu_si128((__m128i *)out, _mm_packs_epi32(_mm256_castsi256_si128(y), _mm256_extracti128_si256(y, 1)));
}

/* the wrapping int32 sum of eight lanes */
static inline int32_t ef_sum_s32x8(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    return _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1))));
}
#endif

#endif
