/* FF goodness: sum over a row of (q - zp)^2 in int32 (mirror of edgeff/runtime/goodness.py). */
#include "edgeff_kernels.h"

void ef_goodness(const int8_t *a, int32_t rows, int32_t depth, int32_t zero_point, int32_t *out)
{
    for (int32_t r = 0; r < rows; ++r) {
        const int8_t *row = a + (int64_t)r * depth;
        int32_t g = 0;
        for (int32_t k = 0; k < depth; ++k) {
            int32_t d = row[k] - zero_point;
            g += d * d;
        }
        out[r] = g;
    }
}
