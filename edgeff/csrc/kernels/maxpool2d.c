/* int8 MAX_POOL_2D over non-overlapping size x size windows, VALID (mirror of edgeff/runtime/pooling.py,
 * TFLM's reference MaxPool with filter = stride = size): NHWC, one running maximum per channel. */
#include "edgeff_kernels.h"

void ef_max_pool2d_s8(const int8_t *in, int32_t batch, int32_t in_h, int32_t in_w, int32_t channels, int32_t size,
                      int32_t act_min, int32_t act_max, int8_t *out)
{
    int32_t out_h = in_h / size, out_w = in_w / size;
    for (int32_t b = 0; b < batch; ++b)
        for (int32_t oy = 0; oy < out_h; ++oy)
            for (int32_t ox = 0; ox < out_w; ++ox) {
                int8_t *o = out + (((int64_t)b * out_h + oy) * out_w + ox) * channels;
                for (int32_t c = 0; c < channels; ++c) {
                    int32_t m = INT8_MIN;
                    for (int32_t i = 0; i < size; ++i) {
                        const int8_t *x = in + (((int64_t)b * in_h + oy * size + i) * in_w + ox * size) * channels;
                        for (int32_t j = 0; j < size; ++j)
                            m = x[(int64_t)j * channels + c] > m ? x[(int64_t)j * channels + c] : m;
                    }
                    o[c] = (int8_t)(m < act_min ? act_min : m > act_max ? act_max : m);
                }
            }
}
