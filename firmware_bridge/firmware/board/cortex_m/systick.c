/* SysTick (in every Cortex-M core) as a free-running counter of core clock ticks: 24 bits counted down,
 * their wraps counted by its interrupt. */
#include "uart.h"

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)

static volatile uint32_t wraps;

void systick_start(void)
{
    SYST_RVR = 0x00FFFFFFu;
    SYST_CVR = 0;
    SYST_CSR = 7u;   /* core clock, interrupt on wrap, enabled */
}

void systick_handler(void) { ++wraps; }

uint32_t systick_ticks(void)
{
    uint32_t w, v;
    do {
        w = wraps;
        v = SYST_CVR;
    } while (w != wraps);
    return (w << 24) + (0x00FFFFFFu - v);
}
