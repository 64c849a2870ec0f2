/* Counter-based random words, the same bits as edgeff/runtime/integer_hash.py: murmur3's 32-bit
 * finalizer over a mix of (seed, step, index). uint32 arithmetic wraps, as in NumPy. The key and the finalizer
 * are inline in edgeff_kernels.h, for loops that draw one word per index. */
#include "edgeff_kernels.h"

uint32_t ef_hash32(uint32_t seed, uint32_t step, uint32_t index)
{
    return ef_hash_mix(ef_hash_key(seed, step) + index);
}
