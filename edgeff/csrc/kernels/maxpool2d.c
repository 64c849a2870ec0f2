/* int8 MAX_POOL_2D over non-overlapping size x size windows, VALID (mirror of edgeff/runtime/pooling.py,
 * TFLM's reference MaxPool with filter = stride = size): NHWC, one running maximum per channel. On a core with
 * the Arm DSP extension (EF_ARM_DSP) four channels at a time: SSUB8 sets each byte lane's GE flag where the
 * first operand is the larger, SEL takes it there, so two instructions are the maximum of four int8 pairs. */
#include "arm_dsp.h"
#include "edgeff_kernels.h"

static inline int8_t clamp_s8(int32_t m, int32_t act_min, int32_t act_max)
{
    return (int8_t)(m < act_min ? act_min : m > act_max ? act_max : m);
}

#if EF_ARM_DSP
static inline uint32_t max_s8x4(uint32_t a, uint32_t b)
{
    uint32_t ge;   /* SSUB8's differences: only its GE flags are wanted */
    __asm__("ssub8 %1, %0, %2\n"
            "sel %0, %0, %2"
            : "+r"(a), "=&r"(ge)
            : "r"(b)
            : "cc");
    return a;
}

static inline uint32_t load_word(const int8_t *x)
{
    uint32_t v;
    __builtin_memcpy(&v, x, 4);
    return v;
}

/* channels [0, channels & ~3) of one window at x (rows `row` bytes apart), four lanes a word; the 2x2 window,
 * the usual one, unrolled (its loops would cost twice its four loads and three maxima) */
static void pool_words(const int8_t *x, int32_t row, int32_t channels, int32_t size, uint32_t lo, uint32_t hi,
                       int8_t *o)
{
    for (int32_t c = 0; c + 4 <= channels; c += 4) {
        const int8_t *r = x + c;
        uint32_t m;
        if (size == 2) {
            m = max_s8x4(max_s8x4(load_word(r), load_word(r + channels)),
                         max_s8x4(load_word(r + row), load_word(r + row + channels)));
        } else {
            m = 0x80808080u;   /* -128 in every lane */
            for (const int8_t *end = r + size * row; r != end; r += row)
                for (const int8_t *t = r, *row_end = r + size * channels; t != row_end; t += channels)
                    m = max_s8x4(m, load_word(t));
        }
        m = max_s8x4(max_s8x4(hi, m) ^ hi ^ m, lo);   /* min(m, hi): the lanes max(hi, m) did not take from m */
        __builtin_memcpy(o + c, &m, 4);
    }
}
#endif

void ef_max_pool2d_s8(const int8_t *in, int32_t batch, int32_t in_h, int32_t in_w, int32_t channels, int32_t size,
                      int32_t act_min, int32_t act_max, int8_t *out)
{
    int32_t out_h = in_h / size, out_w = in_w / size, first = 0;
#if EF_ARM_DSP
    uint32_t lo = (uint8_t)act_min * 0x01010101u, hi = (uint8_t)act_max * 0x01010101u;
    first = channels & ~3;
#endif
    int8_t *o = out;   /* NHWC: the outputs one after the other */
    for (int32_t b = 0; b < batch; ++b)
        for (int32_t oy = 0; oy < out_h; ++oy) {
            const int8_t *window = in + (((int64_t)b * in_h + oy * size) * in_w) * channels;
            for (int32_t ox = 0; ox < out_w; ++ox, window += size * channels, o += channels) {
#if EF_ARM_DSP
                pool_words(window, in_w * channels, channels, size, lo, hi, o);
#endif
                for (int32_t c = first; c < channels; ++c) {
                    int32_t m = INT8_MIN;
                    for (int32_t i = 0; i < size; ++i) {
                        const int8_t *x = window + (int64_t)i * in_w * channels;
                        for (int32_t j = 0; j < size; ++j)
                            m = x[(int64_t)j * channels + c] > m ? x[(int64_t)j * channels + c] : m;
                    }
                    o[c] = clamp_s8(m, act_min, act_max);
                }
            }
        }
}
