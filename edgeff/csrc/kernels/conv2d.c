/* int8 CONV_2D per output channel (mirror of edgeff/runtime/conv2d.py, TFLM's ConvPerChannel, dilation 1):
 * a direct convolution, NHWC input and output, OHWI filters, then the FullyConnected epilogue per pixel.
 *
 * Direct rather than im2col: it needs no scratch at all (im2col's column buffer is RAM a training board
 * does not have to spare), and in NHWC / OHWI one filter row (ky) meets the input in one contiguous run
 * of (kx, c) values on both sides, so the inner loop is a plain dot product: that run, minus the input
 * zero point, widened once to int16 on the stack, then against four output channels' filter rows at a
 * time. Taps outside the input are skipped (a padded input's zero-point terms are 0). The accumulator is
 * int32 as on the board: exact while kernel_h * kernel_w * in_c <= INT32_MAX / (128 * 255) = 65793 (the
 * runtime hands larger windows to its reference kernel). */
#include "edgeff_kernels.h"

#define CHANNEL_BLOCK 64   /* int32 accumulators a pixel keeps on the stack at a time */
#define RUN_BLOCK 256      /* input values a filter row widens to int16 on the stack at a time */

static inline int32_t max_i32(int32_t a, int32_t b)
{
    return a > b ? a : b;
}

static inline int32_t min_i32(int32_t a, int32_t b)
{
    return a < b ? a : b;
}

/* xs[i] = x[i] - zp, widened once for every output channel that meets it (|x - zp| <= 255 fits int16) */
static inline void widen_run(const int8_t *x, int32_t n, int32_t zp, int16_t *xs)
{
    for (int32_t i = 0; i < n; ++i)
        xs[i] = (int16_t)((int32_t)x[i] - zp);
}

/* acc[c] += sum_k w[c * stride + k] * xs[k] for n channels, four at a time sharing each input load
 * (int16 products summed into int32: what compilers turn into vpmaddwd on x86) */
static void dot_channels(const int8_t *w, int32_t stride, int32_t n, const int16_t *xs, int32_t kn, int32_t *acc)
{
    int32_t c = 0;
    for (; c + 4 <= n; c += 4) {
        const int8_t *w0 = w + (int64_t)c * stride, *w1 = w0 + stride, *w2 = w1 + stride, *w3 = w2 + stride;
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        for (int32_t k = 0; k < kn; ++k) {
            int16_t xv = xs[k];
            a0 += (int16_t)w0[k] * xv;
            a1 += (int16_t)w1[k] * xv;
            a2 += (int16_t)w2[k] * xv;
            a3 += (int16_t)w3[k] * xv;
        }
        acc[c] += a0, acc[c + 1] += a1, acc[c + 2] += a2, acc[c + 3] += a3;
    }
    for (; c < n; ++c) {
        const int8_t *wc = w + (int64_t)c * stride;
        int32_t a = 0;
        for (int32_t k = 0; k < kn; ++k)
            a += (int16_t)wc[k] * xs[k];
        acc[c] += a;
    }
}

void ef_conv2d_s8(const int8_t *in, int32_t batch, const ef_conv2d_shape *s, int32_t in_zero_point,
                  const int8_t *filter, const int32_t *bias, const int32_t *multiplier, const int32_t *shift,
                  int32_t out_zero_point, int32_t act_min, int32_t act_max, int rounding, int8_t *out)
{
    int relu = ef_requantize_relu_form(multiplier, shift, s->out_c, out_zero_point, act_min, act_max);
    int32_t tap = s->kernel_w * s->in_c, row = s->in_w * s->in_c;   /* one filter row; one input row */
    int32_t filter_stride = s->kernel_h * tap;                        /* one output channel's filter */
    int32_t acc[CHANNEL_BLOCK];
    int16_t xs[RUN_BLOCK];
    for (int32_t b = 0; b < batch; ++b) {
        const int8_t *image = in + (int64_t)b * s->in_h * row;
        for (int32_t oy = 0; oy < s->out_h; ++oy) {
            int32_t iy = oy * s->stride_h - s->pad_h;
            int32_t ky0 = max_i32(0, -iy), ky1 = min_i32(s->kernel_h, s->in_h - iy);
            for (int32_t ox = 0; ox < s->out_w; ++ox) {
                int32_t ix = ox * s->stride_w - s->pad_w;
                int32_t kx0 = max_i32(0, -ix), kx1 = min_i32(s->kernel_w, s->in_w - ix);
                int32_t run = (kx1 - kx0) * s->in_c;   /* a filter row's taps inside the input: contiguous */
                int8_t *o = out + (((int64_t)b * s->out_h + oy) * s->out_w + ox) * s->out_c;
                for (int32_t c0 = 0; c0 < s->out_c; c0 += CHANNEL_BLOCK) {
                    int32_t n = min_i32(s->out_c - c0, CHANNEL_BLOCK);
                    for (int32_t c = 0; c < n; ++c)
                        acc[c] = 0;
                    for (int32_t ky = ky0; ky < ky1; ++ky) {
                        const int8_t *x = image + (int64_t)(iy + ky) * row + (ix + kx0) * s->in_c;
                        const int8_t *f = filter + (int64_t)c0 * filter_stride + ky * tap + kx0 * s->in_c;
                        for (int32_t j0 = 0; j0 < run; j0 += RUN_BLOCK) {
                            int32_t jn = min_i32(run - j0, RUN_BLOCK);
                            widen_run(x + j0, jn, in_zero_point, xs);
                            dot_channels(f + j0, filter_stride, n, xs, jn, acc);
                        }
                    }
                    ef_requantize_row_s8(acc, n, bias + c0, multiplier + c0, shift + c0, out_zero_point, act_min,
                                         act_max, rounding, relu, o + c0);
                }
            }
        }
    }
}
