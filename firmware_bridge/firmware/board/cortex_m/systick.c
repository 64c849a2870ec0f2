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
    while (SYST_CVR == 0) {
        /* until the first reload: a count read at 0 before it would run 2^24 ticks ahead of every later one */
    }
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

#define CALIBRATION_LOOPS 1000000u   /* two instructions each: subs, bne */

void systick_calibrate(void)
{
    uint32_t n = CALIBRATION_LOOPS, start = systick_ticks();
    __asm__ volatile("1: subs %0, %0, #1\n bne 1b" : "+r"(n));
    uint32_t ticks = systick_ticks() - start;
    uart_puts("EDGEFF-CALIBRATION instructions=");
    uart_put_u32(2u * CALIBRATION_LOOPS);
    uart_puts(" ticks=");
    uart_put_u32(ticks);
    uart_puts("\n");
}
