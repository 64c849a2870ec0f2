/* int8 CONV_2D per output channel (mirror of edgeff/runtime/conv2d.py, TFLM's ConvPerChannel, dilation 1):
 * NHWC input and output, OHWI filters, exact int32 sums, then the FullyConnected epilogue per pixel. Two
 * paths, chosen when the library is built, with the same bits:
 *
 * - portable (the host, any core without the Arm DSP extension): a direct convolution with no scratch. In
 *   NHWC / OHWI one filter row (ky) meets the input in one contiguous run of (kx, c) values on both sides,
 *   so the inner loop is a plain dot product: that run, minus the input zero point, widened once to int16
 *   on the stack, then against four output channels' filter rows at a time. Taps outside the input are
 *   skipped (a padded input's zero-point terms are 0).
 * - Cortex-M4 / M7 (EF_ARM_DSP): im2col of four output pixels into the caller's scratch, then SMLAD, as
 *   CMSIS-NN's arm_convolve_s8 (see conv_dsp below).
 *
 * The accumulator is int32 as on the board: exact while kernel_h * kernel_w * in_c <= INT32_MAX / (128 * 255)
 * = 65793 (the runtime hands larger windows to its reference kernel). */
#include "arm_dsp.h"
#include "edgeff_kernels.h"

static inline int32_t max_i32(int32_t a, int32_t b)
{
    return a > b ? a : b;
}

static inline int32_t min_i32(int32_t a, int32_t b)
{
    return a < b ? a : b;
}

#if EF_ARM_DSP
/* ---- The Cortex-M4 / M7 path, after CMSIS-NN's arm_convolve_s8.
 * Per output row, its kernel_h input rows are copied into the scratch with the padding filled in (the row
 * buffer: every window then lies inside it). Four output pixels at a time, each one's window is widened from
 * there into the im2col block, then every output channel's filter meets all four: one filter word, widened by
 * two SXTB16, feeds eight SMLADs (two products each), 15 instructions per 16 MACs with the loop (CHANNEL_LOOP).
 * A window row of kernel_w * in_c values is read as row4 = that rounded up to 4 values, each group of four
 * (x0, x1, x2, x3) widened to the int16 pairs (x0, x2), (x1, x3) that SXTB16 of the raw bytes gives (CMSIS-NN's
 * reordered q7-to-q15), pixel after pixel within a group: one LDM fetches a group of two pixels. Where row4 >
 * kernel_w * in_c (not a multiple of 4: a first layer's filter, small), the filter is widened once into
 * the scratch in the same pairs, its rows padded with zero weights, which meet the values read past a window
 * row: one LDRD a group instead of LDR and two SXTB16. The windows hold the raw int8 values: sum w * (x - zp)
 * = sum w * x - zp * sum w, the second term worked out once per channel, and the padding holds zp, which that
 * term cancels. */
#define PIXELS 4

typedef struct {              /* one output channel's constants, worked out once per call (32 bytes) */
    int32_t init[PIXELS];     /* the sum's start, -zp * sum of its filter (+ bias in the short epilogue), once
                               * per pixel so that one LDM starts all four sums */
    int32_t multiplier;
    int32_t rsh;              /* the short epilogue's shift of the high word: -shift - 1 */
    int64_t rounding;         /* the short epilogue's rounding and zero-point term (rounding_term) */
} channel_consts;

typedef struct {              /* the scratch, carved out as ef_conv2d_s8_scratch_bytes sizes it */
    channel_consts *consts;   /* out_c */
    int32_t *cols;            /* the im2col block: taps4 / 4 groups of PIXELS x (x0 x2, x1 x3) */
    int32_t *acc;             /* PIXELS x out_c sums for the general epilogue, or a short block's outputs */
    int8_t *rows;             /* the row buffer: kernel_h rows of row_bytes, padded with zp */
    int32_t *filter;          /* out_c x taps4 / 2 pairs: the widened filter, where row4 > kernel_w * in_c */
} scratch_parts;

static int32_t row4_of(const ef_conv2d_shape *s)
{
    return (s->kernel_w * s->in_c + 3) & ~3;
}

/* the row buffer's rows: from the first window's first value to the last's row4-th */
static int32_t row_bytes(const ef_conv2d_shape *s)
{
    return (s->out_w - 1) * s->stride_w * s->in_c + row4_of(s);
}

static int32_t align8(int32_t bytes)
{
    return (bytes + 7) & ~7;
}

/* the parts' sizes in bytes, in scratch order; the last is 0 where the filter is read in place */
static void part_sizes(const ef_conv2d_shape *s, int32_t sizes[5])
{
    int32_t row4 = row4_of(s), taps4 = s->kernel_h * row4;
    sizes[0] = s->out_c * (int32_t)sizeof(channel_consts);
    sizes[1] = PIXELS * taps4 * 2;
    sizes[2] = PIXELS * s->out_c * 4;
    sizes[3] = align8(s->kernel_h * row_bytes(s));
    sizes[4] = row4 == s->kernel_w * s->in_c ? 0 : s->out_c * taps4 * 2;
}

static scratch_parts carve(const ef_conv2d_shape *s, void *scratch)
{
    int32_t sizes[5];
    int8_t *at = scratch;
    part_sizes(s, sizes);
    scratch_parts parts;
    parts.consts = (channel_consts *)(void *)at;
    parts.cols = (int32_t *)(void *)(at += sizes[0]);
    parts.acc = (int32_t *)(void *)(at += sizes[1]);
    parts.rows = at += sizes[2];
    parts.filter = (int32_t *)(void *)(at + sizes[3]);
    return parts;
}

/* The short epilogue applies to every channel of the call: int8 output over [-128, 127], right shifts of 1 to
 * 23 and non-negative multipliers, and either single rounding or a zero point of -128 (the usual ReLU output),
 * where a negative sum, whatever the double rounding makes of it, ends at -128. */
static int short_epilogue(const int32_t *multiplier, const int32_t *shift, int32_t n, int32_t zp, int32_t act_min,
                          int32_t act_max, int rounding)
{
    if (act_min != -128 || act_max != 127 || (rounding == EF_ROUNDING_DOUBLE && zp != -128))
        return 0;
    for (int32_t c = 0; c < n; ++c)
        if (multiplier[c] < 0 || shift[c] > -1 || shift[c] < -23)
            return 0;
    return 1;
}

/* With r = -shift in [1, 23] and a = sum + bias, MultiplyByQuantizedMultiplier plus the zero point is one
 * rounding of the 64-bit a * multiplier: double rounding's SaturatingRoundingDoublingHighMul adds 2^30 and
 * drops 31 bits, RoundingDivideByPOT adds 2^(r-1) and drops r more; for a >= 0 the two floors make one,
 * floor((a * m + 2^30 + 2^(30+r)) / 2^(31+r)); single rounding is floor((a * m + 2^(30+r)) / 2^(31+r)) for
 * every a. The zero point joins the added term as zp * 2^(31+r) (|term| < 2^62: no overflow), and the
 * 31 + r >= 32 bits dropped leave the high word shifted right by r - 1: SMLAL, ASR, then SSAT clamps. */
static int64_t rounding_term(int32_t shift, int32_t zp, int rounding)
{
    int32_t r = -shift;
    int64_t half = (int64_t)1 << (30 + r);
    return (rounding == EF_ROUNDING_DOUBLE ? half + ((int64_t)1 << 30) : half) + (int64_t)zp * 2 * half;
}

/* Per channel: its sum's start (-zp * its filter's sum, + bias in the short epilogue; int32 wraps as on the
 * board) and the short epilogue's constants. */
static void channel_constants(const ef_conv2d_shape *s, const int8_t *filter, int32_t zp, const int32_t *bias,
                              const int32_t *multiplier, const int32_t *shift, int32_t out_zp, int rounding,
                              int short_form, channel_consts *consts)
{
    int32_t taps = s->kernel_h * s->kernel_w * s->in_c;
    for (int32_t c = 0; c < s->out_c; ++c) {
        int32_t sum = 0;
        for (int32_t k = 0; k < taps; ++k)
            sum += filter[c * taps + k];
        uint32_t init = 0u - (uint32_t)zp * (uint32_t)sum;
        for (int32_t p = 0; p < PIXELS; ++p)
            consts[c].init[p] = (int32_t)(short_form ? init + (uint32_t)bias[c] : init);
        consts[c].multiplier = multiplier[c];
        consts[c].rsh = short_form ? -shift[c] - 1 : 0;
        consts[c].rounding = short_form ? rounding_term(shift[c], out_zp, rounding) : 0;
    }
}

/* The filter widened to the pairs (w0, w2), (w1, w3) of each group of four, its rows padded to row4 with zero
 * weights (where the windows' rows read past kernel_w * in_c values) */
static void widen_filter(const ef_conv2d_shape *s, const int8_t *filter, int32_t *widened)
{
    int32_t run = s->kernel_w * s->in_c, row4 = row4_of(s);
    for (int32_t r = 0; r < s->out_c * s->kernel_h; ++r)
        for (int32_t j = 0; j < row4; j += 4, widened += 2) {
            int8_t w[4];
            for (int32_t i = 0; i < 4; ++i)
                w[i] = j + i < run ? filter[r * run + j + i] : 0;
            widened[0] = (int32_t)((uint32_t)(uint16_t)w[0] | (uint32_t)(uint16_t)w[2] << 16);
            widened[1] = (int32_t)((uint32_t)(uint16_t)w[1] | (uint32_t)(uint16_t)w[3] << 16);
        }
}

/* The row buffer of output row oy of `image`: its kernel_h input rows from the first window's first value on,
 * row_bytes each, with zp above, below, left and right of the image */
static void fill_rows(const ef_conv2d_shape *s, const int8_t *image, int32_t oy, int32_t zp, int8_t *rows)
{
    int32_t bytes = row_bytes(s), row = s->in_w * s->in_c, left = s->pad_w * s->in_c;
    for (int32_t ky = 0; ky < s->kernel_h; ++ky, rows += bytes) {
        int32_t iy = oy * s->stride_h - s->pad_h + ky;
        int32_t j0 = iy >= 0 && iy < s->in_h ? min_i32(left, bytes) : bytes, j1 = min_i32(left + row, bytes);
        int32_t at = iy * row - left;   /* where rows[j] is in the image */
        for (int32_t j = 0; j < j0; ++j)
            rows[j] = (int8_t)zp;
        for (int32_t j = j0; j < j1; ++j)
            rows[j] = image[at + j];
        for (int32_t j = max_i32(j0, j1); j < bytes; ++j)
            rows[j] = (int8_t)zp;
    }
}

/* The window at `x` (kernel_h rows, `stride` bytes apart) into the im2col block as pixel p: group g of it at
 * cols[8 g + 2 p], the pairs (x0, x2), (x1, x3) of its four values. In assembly, 6 instructions a group and
 * 3 a row: the compiler's loops cost three times that on a 3x3 window of one channel (3 groups). */
static inline void widen_window(const int8_t *x, int32_t stride, int32_t kh, int32_t row4, int32_t p, int32_t *cols)
{
    int32_t *dst = cols + 2 * p, skip = stride - row4, words = row4 / 4, n, lo, hi;
    __asm__ volatile("1:\n"
                     "mov %[n], %[words]\n"
                     "2:\n"
                     "ldr %[hi], [%[x]], #4\n"
                     "sxtb16 %[lo], %[hi]\n"
                     "sxtb16 %[hi], %[hi], ror #8\n"
                     "strd %[lo], %[hi], [%[dst]], #32\n"
                     "subs %[n], %[n], #1\n"
                     "bne 2b\n"
                     "add %[x], %[x], %[skip]\n"
                     "subs %[kh], %[kh], #1\n"
                     "bne 1b\n"
                     : [x] "+r"(x), [dst] "+r"(dst), [kh] "+r"(kh), [n] "=&r"(n), [lo] "=&r"(lo), [hi] "=&r"(hi)
                     : [words] "r"(words), [skip] "r"(skip)
                     : "cc", "memory");
}

typedef struct {              /* what channel_loop keeps on its stack, in this order */
    int32_t short_form;       /* 1: the short epilogue, int8 outputs; 0: the sums, for the general one */
    void *out;                /* pixel 0's output (or sum) of channel 0; pixel p's is `stride` bytes on */
    int32_t stride;
    const int32_t *cols;      /* the im2col block */
    const channel_consts *consts_end;
    const int32_t *cols_end;
} block_run;

/* Every channel of one block of four pixels, from filter row f and its constants k on: the four sums (started
 * by one LDM of init), group by group (the group's widened filter pairs, two LDMs of the window words, eight
 * SMLADs), then either the short epilogue (per output: LDRD of the rounding term, SMLAL, ASR, SSAT, STRB) or
 * the four sums stored. In assembly, all of it: the loop keeps 13 registers live (4 sums, 2 widened weights,
 * 4 window words, 3 pointers), which the compiler spills, and its epilogue and channel loop cost more in C
 * than the 36 MACs of a 3x3 window on one input channel. LOAD_FILTER is how the group's pairs reach r9 (w0, w2)
 * and r8 (w1, w3) from r10: from the int8 filter or from the widened one. */
#define IN_R0_R2 __attribute__((unused))   /* a naked function's arguments, read by its assembly alone */
#define CHANNEL_LOOP(name, LOAD_FILTER)                                                                        \
    __attribute__((naked, noinline)) static void name(IN_R0_R2 const void *f, IN_R0_R2 const channel_consts *k, \
                                                      IN_R0_R2 const block_run *run)                          \
    {                                                                                                         \
        __asm__("push {r4-r11, lr}\n"                                                                         \
                "mov r10, r0\n"                     /* f */                                                   \
                "mov lr, r1\n"                      /* k */                                                   \
                "ldm r2, {r4-r9}\n"                                                                           \
                "push {r4-r8}\n"                    /* [sp]: short_form, out, stride, cols, consts_end */     \
                "mov r12, r9\n"                     /* cols_end */                                            \
                "2:\n"                                                                                        \
                "ldm lr!, {r0-r3}\n"                /* the sums' start; lr: multiplier */                     \
                "ldr r11, [sp, #12]\n"                                                                        \
                "1:\n" LOAD_FILTER                                                                            \
                "ldm r11!, {r4-r7}\n"                                                                         \
                "smlad r0, r9, r4, r0\n"                                                                      \
                "smlad r0, r8, r5, r0\n"                                                                      \
                "smlad r1, r9, r6, r1\n"                                                                      \
                "smlad r1, r8, r7, r1\n"                                                                      \
                "ldm r11!, {r4-r7}\n"                                                                         \
                "smlad r2, r9, r4, r2\n"                                                                      \
                "smlad r2, r8, r5, r2\n"                                                                      \
                "smlad r3, r9, r6, r3\n"                                                                      \
                "smlad r3, r8, r7, r3\n"                                                                      \
                "cmp r11, r12\n"                                                                              \
                "bne 1b\n"                                                                                    \
                "ldm sp, {r6, r8, r9}\n"            /* short_form, out, stride */                             \
                "add r11, r8, r9, lsl #1\n"         /* pixel 2's */                                           \
                "cbz r6, 3f\n"                                                                                \
                "ldrd r4, r5, [lr], #8\n"           /* multiplier, rsh; lr: rounding */                       \
                "ldrd r6, r7, [lr]\n"                                                                         \
                "smlal r6, r7, r3, r4\n"                                                                      \
                "asr r7, r7, r5\n"                                                                            \
                "ssat r7, #8, r7\n"                                                                           \
                "strb r7, [r11, r9]\n"                                                                        \
                "ldrd r6, r7, [lr]\n"                                                                         \
                "smlal r6, r7, r2, r4\n"                                                                      \
                "asr r7, r7, r5\n"                                                                            \
                "ssat r7, #8, r7\n"                                                                           \
                "strb r7, [r11]\n"                                                                            \
                "ldrd r6, r7, [lr]\n"                                                                         \
                "smlal r6, r7, r1, r4\n"                                                                      \
                "asr r7, r7, r5\n"                                                                            \
                "ssat r7, #8, r7\n"                                                                           \
                "strb r7, [r8, r9]\n"                                                                         \
                "ldrd r6, r7, [lr], #8\n"           /* lr: the next channel's */                              \
                "smlal r6, r7, r0, r4\n"                                                                      \
                "asr r7, r7, r5\n"                                                                            \
                "ssat r7, #8, r7\n"                                                                           \
                "strb r7, [r8], #1\n"                                                                         \
                "4:\n"                                                                                        \
                "ldr r6, [sp, #16]\n"                                                                         \
                "str r8, [sp, #4]\n"                                                                          \
                "cmp lr, r6\n"                                                                                \
                "bne 2b\n"                                                                                    \
                "add sp, sp, #20\n"                                                                           \
                "pop {r4-r11, pc}\n"                                                                          \
                "3:\n"                              /* the sums, for the general epilogue */                  \
                "str r3, [r11, r9]\n"                                                                         \
                "str r2, [r11]\n"                                                                             \
                "str r1, [r8, r9]\n"                                                                          \
                "str r0, [r8], #4\n"                                                                          \
                "add lr, lr, #16\n"                                                                           \
                "b 4b\n");                                                                                    \
    }
CHANNEL_LOOP(channel_loop_s8, "ldr r8, [r10], #4\n"
                              "sxtb16 r9, r8\n"
                              "sxtb16 r8, r8, ror #8\n")
CHANNEL_LOOP(channel_loop_s16, "ldrd r9, r8, [r10], #8\n")

static void conv_dsp(const int8_t *in, int32_t batch, const ef_conv2d_shape *s, int32_t in_zero_point,
                     const int8_t *filter, const int32_t *bias, const int32_t *multiplier, const int32_t *shift,
                     int32_t out_zero_point, int32_t act_min, int32_t act_max, int rounding, void *scratch,
                     int8_t *out)
{
    scratch_parts sp = carve(s, scratch);
    int32_t row4 = row4_of(s), taps4 = s->kernel_h * row4, out_c = s->out_c, bytes = row_bytes(s);
    int32_t step = s->stride_w * s->in_c;   /* from one window to the next in the row buffer */
    int short_form = short_epilogue(multiplier, shift, out_c, out_zero_point, act_min, act_max, rounding);
    int relu = ef_requantize_relu_form(multiplier, shift, out_c, out_zero_point, act_min, act_max);
    int widened = row4 != s->kernel_w * s->in_c;
    if (widened)
        widen_filter(s, filter, sp.filter);
    channel_constants(s, filter, in_zero_point, bias, multiplier, shift, out_zero_point, rounding, short_form,
                      sp.consts);
    for (int32_t b = 0; b < batch; ++b)
        for (int32_t oy = 0; oy < s->out_h; ++oy) {
            fill_rows(s, in + b * s->in_h * s->in_w * s->in_c, oy, in_zero_point, sp.rows);
            for (int32_t ox = 0; ox < s->out_w; ox += PIXELS) {
                int8_t *o = out + ((b * s->out_h + oy) * s->out_w + ox) * out_c;
                /* a row's last block of fewer pixels repeats its last one, its outputs staged in the scratch */
                int32_t n = min_i32(PIXELS, s->out_w - ox);
                for (int32_t p = 0; p < PIXELS; ++p)
                    widen_window(sp.rows + (ox + min_i32(p, n - 1)) * step, bytes, s->kernel_h, row4, p, sp.cols);
                int staged = !short_form || n < PIXELS;
                block_run run = {short_form, staged ? (void *)sp.acc : (void *)o, short_form ? out_c : 4 * out_c,
                                 sp.cols, sp.consts + out_c, sp.cols + 2 * PIXELS * (taps4 / 4)};
                if (widened)
                    channel_loop_s16(sp.filter, sp.consts, &run);
                else
                    channel_loop_s8(filter, sp.consts, &run);
                for (int32_t p = 0; short_form && staged && p < n * out_c; ++p)
                    o[p] = ((const int8_t *)sp.acc)[p];
                for (int32_t p = 0; !short_form && p < n; ++p)
                    ef_requantize_row_s8(sp.acc + p * out_c, out_c, bias, multiplier, shift, out_zero_point,
                                         act_min, act_max, rounding, relu, o + p * out_c);
            }
        }
}
#else
#define CHANNEL_BLOCK 64   /* int32 accumulators a pixel keeps on the stack at a time */
#define RUN_BLOCK 256      /* input values a filter row widens to int16 on the stack at a time */

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

static void conv_portable(const int8_t *in, int32_t batch, const ef_conv2d_shape *s, int32_t in_zero_point,
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
#endif

int32_t ef_conv2d_s8_scratch_bytes(const ef_conv2d_shape *s)
{
#if EF_ARM_DSP
    int32_t sizes[5];
    part_sizes(s, sizes);
    return sizes[0] + sizes[1] + sizes[2] + sizes[3] + sizes[4];
#else
    (void)s;
    return 0;
#endif
}

void ef_conv2d_s8(const int8_t *in, int32_t batch, const ef_conv2d_shape *s, int32_t in_zero_point,
                  const int8_t *filter, const int32_t *bias, const int32_t *multiplier, const int32_t *shift,
                  int32_t out_zero_point, int32_t act_min, int32_t act_max, int rounding, void *scratch, int8_t *out)
{
#if EF_ARM_DSP
    conv_dsp(in, batch, s, in_zero_point, filter, bias, multiplier, shift, out_zero_point, act_min, act_max,
             rounding, scratch, out);
#else
    (void)scratch;
    conv_portable(in, batch, s, in_zero_point, filter, bias, multiplier, shift, out_zero_point, act_min, act_max,
                  rounding, out);
#endif
}
