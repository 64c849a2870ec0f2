/* What both board-image formats' C code reads and writes the same way (board_image.c: format 1, cwc_image.c:
 * format 2): little-endian fields at any offset, the arrays' 8-byte boundary, an int8 weight from its master. */
#ifndef EDGEFF_IMAGE_BYTES_H
#define EDGEFF_IMAGE_BYTES_H

#include <stdint.h>

#include "edgeff_kernels.h"
#include "wire_generated.h"

static inline uint32_t ef_get_u16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static inline uint32_t ef_get_u32(const uint8_t *p) { return ef_get_u16(p) | ef_get_u16(p + 2) << 16; }
static inline int32_t ef_get_i32(const uint8_t *p) { return (int32_t)ef_get_u32(p); }

static inline void ef_put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; ++i)
        p[i] = (uint8_t)(v >> 8 * i);
}

static inline uint32_t ef_image_align(uint32_t n) { return (n + EF_IMAGE_ALIGN - 1u) & ~(EF_IMAGE_ALIGN - 1u); }

/* The int8 weight a master stands for: RoundingDivideByPOT(master, 8) clamped to [-127, 127]
 * (edgeff.runtime.master_weights.weights_from_masters). */
static inline int32_t ef_weight_from_master(int32_t master)
{
    int32_t w = ef_rounding_divide_by_pot(master, EF_MASTER_FRAC_BITS);
    return w > EF_WEIGHT_MAX ? EF_WEIGHT_MAX : w < -EF_WEIGHT_MAX ? -EF_WEIGHT_MAX : w;
}

/* Whether n requantization multipliers and shifts (int32 arrays in the image) are what
 * MultiplyByQuantizedMultiplier takes: a multiplier 0 or in [2^30, 2^31), a shift in [-31, 30]
 * (edgeff.runtime.int_fully_connected.check_requantization). */
static inline int ef_requantization_valid(const uint8_t *multiplier, const uint8_t *shift, int32_t n)
{
    for (int32_t i = 0; i < n; ++i) {
        int32_t m = ef_get_i32(multiplier + 4 * i), s = ef_get_i32(shift + 4 * i);
        if ((m != 0 && m < (1 << 30)) || s < -31 || s > 30)
            return 0;
    }
    return 1;
}

#endif
