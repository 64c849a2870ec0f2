/* One FF layer's inference on rows of int8 activations, fused so that a row stays in cache:
 * L2 normalization (int8), FullyConnected with its epilogue, and the raw goodness of the output
 * (mirror of IntLayer.forward_with_goodness in edgeff/ops/dense/runtime.py); and the multi-pass first
 * layer from one shared accumulation per image (mirror of IntFFModel._raw_label_goodness). */
#include "edgeff_kernels.h"
#include "rescale_avx2.h"

void ef_ff_layer_s8(const int8_t *in, int32_t rows, int32_t d_in, int32_t in_zero_point, const int8_t *weight,
                    int32_t d_out, const int32_t *bias, const int32_t *multiplier, const int32_t *shift,
                    int32_t out_zero_point, int32_t act_min, int rounding, int8_t *normalized, int8_t *out,
                    int32_t *goodness)
{
    for (int32_t r = 0; r < rows; ++r) {
        int8_t *n = normalized + (int64_t)r * d_in, *o = out + (int64_t)r * d_out;
        ef_l2_normalize_s8(in + (int64_t)r * d_in, 1, d_in, in_zero_point, rounding, n);
        ef_fully_connected_s8(n, 1, d_in, weight, d_out, bias, multiplier, shift, out_zero_point, act_min, 127,
                              rounding, o);
        ef_goodness(o, 1, d_out, out_zero_point, goodness + r);
    }
}

#define UNIT_BLOCK 64   /* accumulators on the stack at a time */

#if defined(__AVX2__)
/* One label row in the ReLU form, eight units at a time and fused: accumulator, epilogue, goodness. Returns
 * how many units it did (a multiple of eight) and adds their goodness to *goodness. */
static int32_t label_row_relu_x8(const int32_t *shared, int32_t label_pixel, const int32_t *column, int32_t units,
                                 const int32_t *bias, const int32_t *multiplier, const int32_t *shift, int32_t zp,
                                 int32_t act_min, int rounding, int8_t *out, int32_t *goodness)
{
    const __m256i top = _mm256_set1_epi32(127 - zp), zpv = _mm256_set1_epi32(zp), low = _mm256_set1_epi32(act_min);
    const __m256i pixel = _mm256_set1_epi32(label_pixel);
    __m256i sum = _mm256_setzero_si256();
    int32_t j = 0;
    for (; j + 8 <= units; j += 8) {
        __m256i acc = _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(shared + j)),
                                       _mm256_mullo_epi32(pixel, _mm256_loadu_si256((const __m256i *)(column + j))));
        __m256i y = ef_requantize_relu_x8(acc, bias + j, multiplier + j, shift + j, top, zpv, low, rounding);
        ef_store_s8x8(out + j, y);
        __m256i d = _mm256_sub_epi32(y, zpv);          /* in [0, 255]: d * d from one int16 product per lane */
        sum = _mm256_add_epi32(sum, _mm256_madd_epi16(d, d));
    }
    *goodness += ef_sum_s32x8(sum);
    return j;
}
#endif

void ef_ff_label_rows_s8(const int32_t *shared, const int8_t *label_pixel, int32_t images,
                         const int32_t *label_columns, int32_t n_classes, int32_t units, const int32_t *bias,
                         const int32_t *multiplier, const int32_t *shift, int32_t out_zero_point, int32_t act_min,
                         int rounding, int8_t *out, int32_t *goodness)
{
    int32_t acc[UNIT_BLOCK];
    int relu = ef_requantize_relu_form(multiplier, shift, units, out_zero_point, act_min, 127);
    for (int32_t r = 0; r < images; ++r) {
        const int32_t *s = shared + (int64_t)r * units;
        for (int32_t c = 0; c < n_classes; ++c) {
            const int32_t *column = label_columns + (int64_t)c * units;
            int8_t *o = out + ((int64_t)r * n_classes + c) * units;
            int32_t *g = goodness + (int64_t)r * n_classes + c, done = 0;
            *g = 0;
#if defined(__AVX2__)
            if (relu)
                done = label_row_relu_x8(s, label_pixel[r], column, units, bias, multiplier, shift, out_zero_point,
                                         act_min, rounding, o, g);
#endif
            for (int32_t j0 = done; j0 < units; j0 += UNIT_BLOCK) {
                int32_t n = units - j0 < UNIT_BLOCK ? units - j0 : UNIT_BLOCK;
                for (int32_t j = 0; j < n; ++j)
                    acc[j] = s[j0 + j] + label_pixel[r] * column[j0 + j];
                ef_requantize_row_s8(acc, n, bias + j0, multiplier + j0, shift + j0, out_zero_point, act_min, 127,
                                     rounding, relu, o + j0);
            }
            int32_t rest;
            ef_goodness(o + done, 1, units - done, out_zero_point, &rest);
            *g += rest;
        }
    }
}
