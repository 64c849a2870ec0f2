/* The Arm DSP extension (Cortex-M4, M7: SMLAD, SXTB16, SSAT, ...) for the kernels that have a path for it.
 * EF_ARM_DSP is 1 where the core has the extension, unless the build defines EDGEFF_PORTABLE_C, which asks
 * for the portable loops on the same core (to measure one against the other: benchmarks/conv_icount.py). */
#ifndef EDGEFF_ARM_DSP_H
#define EDGEFF_ARM_DSP_H

#include <stdint.h>

#if defined(__ARM_FEATURE_DSP) && !defined(EDGEFF_PORTABLE_C)
#define EF_ARM_DSP 1
#include <arm_acle.h>

static inline int32_t ef_sxtb16_ror8(int32_t x)   /* SXTB16 with its rotation, which ACLE does not expose */
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
#else
#define EF_ARM_DSP 0
#endif

#endif
