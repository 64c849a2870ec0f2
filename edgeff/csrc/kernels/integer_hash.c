/* Counter-based random words, the same bits as edgeff/runtime/integer_hash.py: murmur3's 32-bit
 * finalizer over a mix of (seed, step, index). uint32 arithmetic wraps, as in NumPy. */
#include "edgeff_kernels.h"

uint32_t ef_hash32(uint32_t seed, uint32_t step, uint32_t index)
{
    uint32_t h = seed * 0x9E3779B1u + step * 0x85EBCA77u + index;
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return h;
}
