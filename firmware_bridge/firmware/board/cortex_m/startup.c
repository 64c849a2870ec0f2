/* Reset and vector table of every Armv7-M board (Cortex-M4, Cortex-M7): copy .data from flash, zero .bss, run
 * main(); every fault parks the core. The UART's receive interrupt is the descriptor's uart_rx_irq, served by
 * the board's UART driver (uart_rx_handler). */
#include <stdint.h>

#include "board_config.h"

extern uint32_t __data_start, __data_end, __data_load, __bss_start, __bss_end, __stack_top;
int main(void);
void uart_rx_handler(void);
void systick_handler(void);

void reset_handler(void)
{
    uint32_t *src = &__data_load, *dst = &__data_start;
    while (dst < &__data_end)
        *dst++ = *src++;
    for (dst = &__bss_start; dst < &__bss_end;)
        *dst++ = 0;
    main();
    for (;;)
        __asm__ volatile("wfi");
}

/* Ends the emulation (Arm semihosting SYS_EXIT: QEMU runs with -semihosting); a real board would reset. */
void board_exit(void)
{
    register uint32_t reason __asm__("r0") = 0x18u;      /* angel_SWIreason_ReportException */
    register uint32_t code __asm__("r1") = 0x20026u;     /* ADP_Stopped_ApplicationExit */
    __asm__ volatile("bkpt 0xab" : : "r"(reason), "r"(code) : "memory");
    for (;;)
        __asm__ volatile("wfi");
}

/* A system reset (SCB AIRCR SYSRESETREQ): RAM is initialized again, the storage area is kept. */
void board_reboot(void)
{
    __asm__ volatile("dsb" ::: "memory");
    *(volatile uint32_t *)0xE000ED0Cu = 0x05FA0004u;
    __asm__ volatile("dsb" ::: "memory");
    for (;;)
        ;
}

static void fault_handler(void)
{
    for (;;)
        __asm__ volatile("wfi");
}

typedef void (*vector)(void);

__attribute__((section(".vectors"), used)) static const vector vectors[16 + EF_BOARD_UART_RX_IRQ + 1] = {
    (vector)(uintptr_t)&__stack_top,   /* initial stack pointer */
    reset_handler,
    fault_handler,                     /* NMI */
    fault_handler,                     /* HardFault */
    fault_handler,                     /* MemManage */
    fault_handler,                     /* BusFault */
    fault_handler,                     /* UsageFault */
    0, 0, 0, 0,
    fault_handler,                     /* SVCall */
    fault_handler,                     /* DebugMonitor */
    0,
    fault_handler,                     /* PendSV */
    systick_handler,                   /* SysTick */
    [16 + EF_BOARD_UART_RX_IRQ] = uart_rx_handler,    /* the UART's receive */
};
