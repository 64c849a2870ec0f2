/* int8 and 16x8 FullyConnected (mirror of edgeff/runtime/fully_connected.py): an exact integer dot
 * product per unit, then the shared epilogue: + bias, rescale, + output zero point, clamp. The input
 * zero point is 0 (inputs are L2-normalized), the weights symmetric. */
#include "arm_dsp.h"
#include "edgeff_kernels.h"
#include "rescale_avx2.h"

static inline int8_t clamp_s8(int32_t v, int32_t lo, int32_t hi)
{
    return (int8_t)(v < lo ? lo : v > hi ? hi : v);
}

static inline int8_t epilogue_s8(int32_t acc, int32_t multiplier, int32_t shift, int32_t zp, int32_t lo,
                                 int32_t hi, int rounding)
{
    return clamp_s8(ef_multiply_by_quantized_multiplier(acc, multiplier, shift, rounding) + zp, lo, hi);
}

static inline int8_t epilogue_s16(int64_t acc, int32_t multiplier, int32_t shift, int32_t zp, int32_t lo,
                                  int32_t hi)
{
    return clamp_s8(ef_multiply_by_quantized_multiplier_int64(acc, multiplier, shift) + zp, lo, hi);
}

#define UNIT_BLOCK 64    /* int32 accumulators a row keeps on the stack at a time */
#define DEPTH_BLOCK 256  /* input values a row widens to int16 on the stack at a time */

#if EF_ARM_DSP
/* Arm DSP extension (Cortex-M4, M7): SMLAD adds two int16 x int16 products to an int32 in one
 * instruction. The widened input holds every four values as x0, x2, x1, x3 (CMSIS-NN's reordered
 * q7-to-q15), so that SXTB16 of four packed weights (w0, w2) and of them rotated by 8 (w1, w3) pair up
 * with two loaded words. */
#define REORDERED_INPUT 1

static inline int32_t mac4(const int8_t *w, int32_t x02, int32_t x13, int32_t acc)
{
    int32_t packed;
    __builtin_memcpy(&packed, w, 4);
    return __smlad(ef_sxtb16_ror8(packed), x13, __smlad(__sxtb16(packed), x02, acc));
}

/* One group of four inputs for two units, at w and w + depth (the second first, so that the load of the
 * first can step w on): one word of four weights each, SXTB16 to two pairs, two SMLADs. */
#define MAC_2x4(acc_near, acc_far, w)                                                                       \
    "ldr %[t0], [%[" w "], %[depth]]\n"                                                                     \
    "sxtb16 %[t1], %[t0]\n"                                                                                 \
    "smlad %[" acc_far "], %[t1], %[x02], %[" acc_far "]\n"                                                 \
    "sxtb16 %[t0], %[t0], ror #8\n"                                                                         \
    "smlad %[" acc_far "], %[t0], %[x13], %[" acc_far "]\n"                                                 \
    "ldr %[t0], [%[" w "]], #4\n"                                                                           \
    "sxtb16 %[t1], %[t0]\n"                                                                                 \
    "smlad %[" acc_near "], %[t1], %[x02], %[" acc_near "]\n"                                               \
    "sxtb16 %[t0], %[t0], ror #8\n"                                                                         \
    "smlad %[" acc_near "], %[t0], %[x13], %[" acc_near "]\n"
#define MAC_4x4 "ldrd %[x02], %[x13], [%[x]], #8\n" MAC_2x4("a0", "a1", "w0") MAC_2x4("a2", "a3", "w2")

/* For `blocks` blocks of four units (rows w, w + depth, ..., the next block 4 depth further on), acc[4b + i]
 * (+)= unit 4b + i's dot product with xs[0 .. 8 groups) (from 0 when first), groups >= 1: eight inputs a turn
 * for four units, 44 instructions for 32 MACs. In assembly because the compiler spills the thirteen live
 * registers of the loop (4 sums, 2 weight pointers, the row stride, the input pointer and its end, 2 input
 * words, 2 temporaries) and doubles the count. xs is 8-byte aligned (LDRD). */
static void mac_blocks(const int8_t *w, int32_t depth, const int16_t *xs, int32_t groups, int32_t blocks, int first,
                       int32_t *acc)
{
    const int16_t *end = xs + 8 * groups;
    for (int32_t *last = acc + 4 * blocks; acc != last; acc += 4, w += 4 * depth) {
        const int8_t *w0 = w, *w2 = w + 2 * depth;
        const int16_t *x = xs;
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, x02, x13, t0, t1;
        if (!first)
            a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
        __asm__("1:\n" MAC_4x4 MAC_4x4
                "cmp %[x], %[end]\n"
                "bne 1b\n"
                : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [w0] "+r"(w0), [w2] "+r"(w2),
                  [x] "+r"(x), [x02] "=&r"(x02), [x13] "=&r"(x13), [t0] "=&r"(t0), [t1] "=&r"(t1)
                : [depth] "r"(depth), [end] "r"(end)
                : "cc", "memory");
        acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
    }
}
#else
#define REORDERED_INPUT 0
#endif

/* acc[c] (+)= sum_k weight[c0 + c, k0 + k] * x[k] for n units, four at a time (k0 = 0 starts the sums),
 * x widened to int16 in xs. Products of int16 operands summed into int32 are what compilers turn into
 * vpmaddwd on x86; on the Cortex-M4 the DSP path above does two per SMLAD, eight inputs at a time for every
 * block of four units first (mac_blocks), the C loops the inputs left. Four units share each load. */
static void dot_units(const int8_t *weight, int32_t depth, int32_t c0, int32_t n, int32_t k0, const int16_t *xs,
                      int32_t kn, int32_t *acc)
{
    int32_t c = 0, done = 0;   /* inputs [0, done) of every block of four units are summed */
#if REORDERED_INPUT
    if (kn >= 8) {
        mac_blocks(weight + (int64_t)c0 * depth + k0, depth, xs, kn / 8, n / 4, k0 == 0, acc);
        done = kn & ~7;
    }
#endif
    for (; c + 4 <= n && done < kn; c += 4) {
        const int8_t *w0 = weight + (int64_t)(c0 + c) * depth + k0, *w1 = w0 + depth, *w2 = w1 + depth,
                     *w3 = w2 + depth;
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, k = done;
#if REORDERED_INPUT
        if (k + 4 <= kn) {     /* at most one group of four is left */
            int32_t x02, x13;
            __builtin_memcpy(&x02, xs + k, 4);
            __builtin_memcpy(&x13, xs + k + 2, 4);
            a0 = mac4(w0 + k, x02, x13, a0);
            a1 = mac4(w1 + k, x02, x13, a1);
            a2 = mac4(w2 + k, x02, x13, a2);
            a3 = mac4(w3 + k, x02, x13, a3);
            k += 4;
        }
#endif
        for (; k < kn; ++k) {
            int16_t xv = xs[k];
            a0 += (int16_t)w0[k] * xv;
            a1 += (int16_t)w1[k] * xv;
            a2 += (int16_t)w2[k] * xv;
            a3 += (int16_t)w3[k] * xv;
        }
        acc[c] = (k0 || done ? acc[c] : 0) + a0;
        acc[c + 1] = (k0 || done ? acc[c + 1] : 0) + a1;
        acc[c + 2] = (k0 || done ? acc[c + 2] : 0) + a2;
        acc[c + 3] = (k0 || done ? acc[c + 3] : 0) + a3;
    }
    c = n & ~3;
    for (; c < n; ++c) {
        const int8_t *w = weight + (int64_t)(c0 + c) * depth + k0;
        int32_t a = 0, k = 0;
#if REORDERED_INPUT
        for (; k + 4 <= kn; k += 4) {
            int32_t x02, x13;
            __builtin_memcpy(&x02, xs + k, 4);
            __builtin_memcpy(&x13, xs + k + 2, 4);
            a = mac4(w + k, x02, x13, a);
        }
#endif
        for (; k < kn; ++k)
            a += (int16_t)w[k] * xs[k];
        acc[c] = (k0 ? acc[c] : 0) + a;
    }
}

/* x widened to int16 (in the DSP path's order: see REORDERED_INPUT) */
static void widen(const int8_t *x, int32_t kn, int16_t *xs)
{
    int32_t k = 0;
#if REORDERED_INPUT
    for (; k + 4 <= kn; k += 4) {
        int32_t packed, pair[2];
        __builtin_memcpy(&packed, x + k, 4);
        pair[0] = __sxtb16(packed);            /* x0, x2 */
        pair[1] = ef_sxtb16_ror8(packed);      /* x1, x3 */
        __builtin_memcpy(xs + k, pair, 8);
    }
#endif
    for (; k < kn; ++k)
        xs[k] = x[k];
}

#if REORDERED_INPUT
/* The ReLU form's epilogue with double rounding for the usual ReLU output (zero point -128, so the clamp is
 * [0, 255] before it), from unit 0 until one whose shift or multiplier rules the form out; returns the
 * units done. Per unit: a = max(acc + bias, 0), P = a * multiplier (UMULL), q = P >> 30, so that SRDHM's
 * (P + 2^30) >> 31 is (q + 1) >> 1, and rounding that by 2^right is (((q + 1) >> right) + [right > 0]) >> 1;
 * USAT clamps, - 128 is the zero point. 21 instructions a unit in assembly, against 35 for the C form and
 * its scan of every unit beforehand. */
static int32_t relu_run_zp128(const int32_t *acc, const int32_t *bias, const int32_t *multiplier, const int32_t *shift,
                              int32_t units, int8_t *out)
{
    const int32_t *start = acc;
    const int8_t *end = out + units;
    int32_t a, m, right, sh, lo, hi;
    if (units <= 0)
        return 0;
    __asm__("1:\n"
            "ldr %[sh], [%[shift]], #4\n"
            "ldr %[m], [%[mult]], #4\n"
            "rsb %[right], %[sh], #0\n"
            "orrs %[a], %[m], %[right]\n"          /* multiplier < 0 or shift > 0: not this form */
            "bmi 2f\n"
            "ldr %[a], [%[acc]], #4\n"
            "ldr %[lo], [%[bias]], #4\n"
            "add %[a], %[a], %[lo]\n"
            "bic %[a], %[a], %[a], asr #31\n"
            "umull %[lo], %[hi], %[a], %[m]\n"
            "lsl %[hi], %[hi], #2\n"
            "orr %[a], %[hi], %[lo], lsr #30\n"
            "add %[a], %[a], #1\n"
            "lsr %[a], %[a], %[right]\n"
            "add %[a], %[a], %[sh], lsr #31\n"
            "lsr %[a], %[a], #1\n"
            "usat %[a], #8, %[a]\n"
            "sub %[a], %[a], #128\n"
            "strb %[a], [%[out]], #1\n"
            "cmp %[out], %[end]\n"
            "bne 1b\n"
            "2:\n"
            : [acc] "+r"(acc), [bias] "+r"(bias), [mult] "+r"(multiplier), [shift] "+r"(shift), [out] "+r"(out),
              [a] "=&r"(a), [m] "=&r"(m), [right] "=&r"(right), [sh] "=&r"(sh), [lo] "=&r"(lo), [hi] "=&r"(hi)
            : [end] "r"(end)
            : "cc", "memory");
    return (int32_t)(acc - start);
}
#endif

/* One block's epilogue. The board's usual case runs relu_run_zp128 with a unit it leaves in the general form;
 * every other case the shared row epilogue, with the ReLU form decided over the block. */
static void requantize_block(const int32_t *acc, int32_t n, const int32_t *bias, const int32_t *multiplier,
                             const int32_t *shift, int32_t zp, int32_t act_min, int32_t act_max, int rounding,
                             int8_t *out)
{
#if REORDERED_INPUT
    if (rounding == EF_ROUNDING_DOUBLE && zp == -128 && act_min == -128 && act_max == 127) {
        for (int32_t c = relu_run_zp128(acc, bias, multiplier, shift, n, out); c < n;
             c += 1 + relu_run_zp128(acc + c + 1, bias + c + 1, multiplier + c + 1, shift + c + 1, n - c - 1,
                                     out + c + 1))
            out[c] = epilogue_s8((int32_t)((uint32_t)acc[c] + (uint32_t)bias[c]), multiplier[c], shift[c], zp,
                                 act_min, act_max, rounding);
        return;
    }
#endif
    ef_requantize_row_s8(acc, n, bias, multiplier, shift, zp, act_min, act_max, rounding,
                         ef_requantize_relu_form(multiplier, shift, n, zp, act_min, act_max), out);
}

/* Per row and block of units: the exact int32 dot products, then the epilogue over the block (its
 * vectorized ReLU form when it applies; the bias add wraps, as on the board). */
void ef_fully_connected_s8(const int8_t *x, int32_t rows, int32_t depth, const int8_t *weight, int32_t units,
                           const int32_t *bias, const int32_t *multiplier, const int32_t *shift,
                           int32_t out_zero_point, int32_t act_min, int32_t act_max, int rounding, int8_t *out)
{
    int32_t acc[UNIT_BLOCK];
    int16_t xs[DEPTH_BLOCK] __attribute__((aligned(8)));
    for (int32_t r = 0; r < rows; ++r) {
        const int8_t *xr = x + (int64_t)r * depth;
        for (int32_t c0 = 0; c0 < units; c0 += UNIT_BLOCK) {
            int32_t n = units - c0 < UNIT_BLOCK ? units - c0 : UNIT_BLOCK;
            for (int32_t k0 = 0; k0 < depth; k0 += DEPTH_BLOCK) {
                int32_t kn = depth - k0 < DEPTH_BLOCK ? depth - k0 : DEPTH_BLOCK;
                widen(xr + k0, kn, xs);
                dot_units(weight, depth, c0, n, k0, xs, kn, acc);
            }
            requantize_block(acc, n, bias + c0, multiplier + c0, shift + c0, out_zero_point, act_min, act_max,
                             rounding, out + (int64_t)r * units + c0);
        }
    }
}

/* 16x8: int16 inputs, an int64 accumulator and bias per row and unit */
void ef_fully_connected_s16(const int16_t *x, int32_t rows, int32_t depth, const int8_t *weight, int32_t units,
                            const int64_t *bias, const int32_t *multiplier, const int32_t *shift,
                            int32_t out_zero_point, int32_t act_min, int32_t act_max, int8_t *out)
{
    for (int32_t r = 0; r < rows; ++r) {
        for (int32_t c = 0; c < units; ++c) {
            const int8_t *wc = weight + (int64_t)c * depth;
            int64_t acc = 0;
            for (int32_t k = 0; k < depth; ++k)
                acc += (int32_t)wc[k] * x[(int64_t)r * depth + k];
            out[(int64_t)r * units + c] = epilogue_s16(acc + bias[c], multiplier[c], shift[c], out_zero_point,
                                                       act_min, act_max);
        }
    }
}

/* Fused ReLU (act_min >= zero point) with right shifts only: a non-positive accumulator rescales to
 * <= 0 and clamps to act_min, a positive one takes the non-negative form, clamped before the zero point
 * is added so nothing can overflow. Branch-free, so it vectorizes; with AVX2 eight units at a time. */

#define REQUANTIZE_RELU_TAIL(rounding)                                                                       \
    for (; c < units; ++c) {                                                                                 \
        int32_t a = (int32_t)((uint32_t)acc[c] + (uint32_t)bias[c]);                                         \
        uint32_t r = ef_multiply_non_negative(a > 0 ? (uint32_t)a : 0, (uint32_t)multiplier[c],              \
                                              (uint32_t)-shift[c], rounding);                                 \
        int32_t y = (int32_t)(r < headroom ? r : headroom) + zp;                                             \
        out[c] = (int8_t)(y < act_min ? act_min : y);                                                        \
    }

static void requantize_relu_row(const int32_t *acc, int32_t units, const int32_t *bias, const int32_t *multiplier,
                                const int32_t *shift, int32_t zp, int32_t act_min, int32_t act_max, int rounding,
                                int8_t *out)
{
    uint32_t headroom = (uint32_t)(act_max - zp);
    int32_t c = 0;
#if defined(__AVX2__)
    const __m256i top = _mm256_set1_epi32((int32_t)headroom), zpv = _mm256_set1_epi32(zp);
    const __m256i low = _mm256_set1_epi32(act_min);
    for (; c + 8 <= units; c += 8)
        ef_store_s8x8(out + c, ef_requantize_relu_x8(_mm256_loadu_si256((const __m256i *)(acc + c)), bias + c,
                                                     multiplier + c, shift + c, top, zpv, low, rounding));
#endif
    if (rounding == EF_ROUNDING_SINGLE) {
        REQUANTIZE_RELU_TAIL(EF_ROUNDING_SINGLE)
    } else {
        REQUANTIZE_RELU_TAIL(EF_ROUNDING_DOUBLE)
    }
}

int ef_requantize_relu_form(const int32_t *multiplier, const int32_t *shift, int32_t units, int32_t zp,
                            int32_t act_min, int32_t act_max)
{
    if (act_min < zp || act_max < zp)
        return 0;
    /* a sign bit set in some multiplier or negated shift (shift > 0; INT32_MIN, never a shift, is refused
     * too): a branch-free scan, as every layer passes it */
    uint32_t sign = 0;
    for (int32_t c = 0; c < units; ++c)
        sign |= (uint32_t)multiplier[c] | (0u - (uint32_t)shift[c]);
    return !(sign >> 31);
}

void ef_requantize_row_s8(const int32_t *acc, int32_t units, const int32_t *bias, const int32_t *multiplier,
                          const int32_t *shift, int32_t out_zero_point, int32_t act_min, int32_t act_max,
                          int rounding, int relu, int8_t *out)
{
    if (relu) {
        requantize_relu_row(acc, units, bias, multiplier, shift, out_zero_point, act_min, act_max, rounding, out);
        return;
    }
    for (int32_t c = 0; c < units; ++c) {
        int32_t a = (int32_t)((uint32_t)acc[c] + (uint32_t)bias[c]);
        out[c] = epilogue_s8(a, multiplier[c], shift[c], out_zero_point, act_min, act_max, rounding);
    }
}

void ef_requantize_s8(const int32_t *acc, int32_t rows, int32_t units, const int32_t *bias,
                      const int32_t *multiplier, const int32_t *shift, int32_t out_zero_point,
                      int32_t act_min, int32_t act_max, int rounding, int8_t *out)
{
    int relu = ef_requantize_relu_form(multiplier, shift, units, out_zero_point, act_min, act_max);
    for (int32_t r = 0; r < rows; ++r)
        ef_requantize_row_s8(acc + (int64_t)r * units, units, bias, multiplier, shift, out_zero_point, act_min,
                             act_max, rounding, relu, out + (int64_t)r * units);
}

void ef_requantize_s16(const int64_t *acc, int32_t rows, int32_t units, const int64_t *bias,
                       const int32_t *multiplier, const int32_t *shift, int32_t out_zero_point,
                       int32_t act_min, int32_t act_max, int8_t *out)
{
    for (int32_t r = 0; r < rows; ++r) {
        const int64_t *ar = acc + (int64_t)r * units;
        int8_t *o = out + (int64_t)r * units;
        for (int32_t c = 0; c < units; ++c)
            o[c] = epilogue_s16(ar[c] + bias[c], multiplier[c], shift[c], out_zero_point, act_min, act_max);
    }
}
